//! The login engine: discovery, the authorize URL, the code exchange, and
//! turning verified tokens into an [`Identity`], for every provider preset.
//!
//! Owns: the provider's metadata and keys, the HTTP client that talks to the
//! provider, token verification and claim mapping.
//! Must not: touch cookies or the upstream.
//!
//! Security choices, each on purpose:
//! - PKCE S256 and `state` on every login, plus `nonce` for OpenID Connect;
//!   all are checked.
//! - ID tokens are verified with the `openidconnect` crate: signature against
//!   the JWKS, `iss` (exactly the discovered issuer), `aud` (other audiences
//!   refused unless listed; several audiences need `azp` = client id), `exp`,
//!   `iat` (not in the future), `nonce`.
//! - JWT access tokens (Keycloak roles, Auth0 with an audience, ZKAuth's
//!   identity) are verified with `jsonwebtoken`: signature, `iss`, `aud`,
//!   `exp`. An opaque access token is never parsed.
//! - Only asymmetric algorithms are allowed, so `none` and an HMAC keyed with
//!   a public key never verify.
//! - An unknown `kid` refetches the JWKS, at most once per
//!   [`JWKS_REFETCH_INTERVAL`], so a flood of made-up kids cannot make us
//!   hammer the provider. The refetch is single-flight: concurrent
//!   verifications share one fetch. Tokens from the token endpoint (a login
//!   or refresh) wait, up to [`JWKS_REFETCH_WAIT`], for the next allowed
//!   fetch, so a genuine key rotation right after a flood still signs the
//!   next user in; tokens anyone can send (logout tokens) never wait.
//! - The provider client never follows redirects (SSRF) and reads at most
//!   [`MAX_IDP_BODY`] of any answer.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClientId, HttpRequest, HttpResponse, IssuerUrl, Nonce, ProviderMetadataWithLogout,
};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::auth::identity::{Identity, Tokens};
use crate::auth::providers::{
    IdentitySource, LogoutStyle, OtherAudiences, TokenAuthMethod, TokenEncoding,
};
use crate::auth::session::now_secs;
use crate::config::{ClaimHeader, ClaimNames, Config, ProviderConfig, Secret};
use crate::error::error_chain;

/// Longest answer read from the provider.
pub const MAX_IDP_BODY: usize = 1024 * 1024;
/// Least time between two JWKS refetches caused by an unknown `kid`.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a token from the token endpoint waits for the next allowed
/// refetch (a little over the interval, so one wait always reaches it).
pub const JWKS_REFETCH_WAIT: Duration = Duration::from_secs(6);
/// Clock skew allowed on `iat` and on JWT access tokens.
pub(crate) const SKEW_SECS: u64 = 60;
/// Longest value a mapped claim header carries.
const MAX_HEADER_VALUE: usize = 1024;

/// Something went wrong talking to the provider.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// Transport: connection refused, timeout, TLS.
    #[error("provider request failed: {0}")]
    Transport(String),
    /// Discovery document missing, malformed or for another issuer.
    #[error("discovery at {issuer} failed: {reason}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The token endpoint refused the code or answered garbage.
    #[error("token exchange failed: {0}")]
    TokenExchange(String),
    /// A token did not verify.
    #[error("token rejected: {0}")]
    IdToken(String),
}

/// HTTP client for the provider: no redirects, bounded bodies, timeouts.
#[derive(Clone)]
pub struct IdpHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// Counts the provider calls made through this client.
    metrics: crate::metrics::Recorder,
}

/// Transport error seen by `openidconnect`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IdpHttpError(String);

impl IdpHttp {
    /// Builds the client.
    pub fn new(timeout: Duration) -> Result<Self, rustls::Error> {
        let connector = crate::http::client::https_connector(timeout)?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
            metrics: crate::metrics::Recorder::default(),
        })
    }

    /// This client, counting provider calls into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Recorder) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sends a request and reads the bounded answer.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, IdpHttpError> {
        let (parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        // redirects are never followed: a provider answer is taken as it is
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_elapsed| IdpHttpError(format!("{uri}: timed out after {:?}", self.timeout)))?
            .map_err(|e| IdpHttpError(format!("{uri}: {}", error_chain(&e))))?;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(self.timeout, Limited::new(body, MAX_IDP_BODY).collect())
            .await
            .map_err(|_elapsed| IdpHttpError(format!("{uri}: body timed out")))?
            .map_err(|e| IdpHttpError(format!("{uri}: body: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, bytes.to_vec()))
    }

    pub(crate) async fn get_json(
        &self,
        url: &Url,
        bearer: Option<&str>,
    ) -> Result<(http::StatusCode, Vec<u8>), IdpError> {
        let mut req = http::Request::get(url.as_str()).header(ACCEPT, "application/json");
        if let Some(t) = bearer {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Vec::new())
            .map_err(|e| IdpError::Transport(format!("{url}: {e}")))?;
        let resp = self.send(req).await.map_err(|e| IdpError::Transport(e.0))?;
        Ok((resp.status(), resp.into_body()))
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttp {
    type Error = IdpHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The provider's keys, in the two shapes the two verifiers read.
struct Keys {
    oidc: CoreJsonWebKeySet,
    jwt: Vec<jsonwebtoken::jwk::Jwk>,
}

impl Keys {
    /// Parses a JWKS document; keys of unknown types are skipped.
    fn parse(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<Value>,
        }
        let raw: Raw =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let oidc = serde_json::from_slice(body).map_err(|e| format!("bad JWKS: {e}"))?;
        let jwt = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        Ok(Self { oidc, jwt })
    }
}

/// The endpoints in use, from discovery or settings.
#[derive(Debug, Clone)]
struct Endpoints {
    authorize: Url,
    token: Url,
    jwks: Url,
    userinfo: Option<Url>,
    end_session: Option<Url>,
    /// The provider sends `iss` on its authorization responses (RFC 9207
    /// `authorization_response_iss_parameter_supported`).
    iss_parameter: bool,
}

/// A ready provider: endpoints known, keys loaded.
pub struct Provider {
    cfg: ProviderConfig,
    client_id: String,
    client_secret: Option<Secret>,
    issuer: String,
    endpoints: Endpoints,
    keys: ArcSwap<Keys>,
    /// When the JWKS was last refetched; held across the fetch, so
    /// concurrent refetches queue and then share its result.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    claim_headers: Vec<ClaimHeader>,
    http: IdpHttp,
    /// Its place in `config.providers` (the metrics' provider label).
    index: usize,
}

/// What a browser is sent to the provider with.
#[derive(Debug)]
pub struct AuthorizeRequest {
    /// The provider's authorize URL with every parameter.
    pub url: Url,
}

/// The secrets and return address of one login.
#[derive(Debug, Clone, Copy)]
pub struct LoginParams<'a> {
    /// `state`.
    pub state: &'a str,
    /// `nonce`.
    pub nonce: &'a str,
    /// PKCE code verifier.
    pub pkce_verifier: &'a str,
    /// The callback URL for this login.
    pub redirect_uri: &'a str,
    /// When the login started, Unix seconds.
    pub started_at: u64,
    /// Step-up: the `acr_values` to ask for, space-separated.
    pub acr_values: Option<&'a str>,
    /// Step-up: the `max_age` to ask for, seconds (sent with `prompt=login`).
    pub max_age: Option<u64>,
}

/// The outcome of a successful callback.
#[derive(Debug)]
pub struct LoginResult {
    /// Who signed in (session expiry not yet set).
    pub identity: Identity,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// A grant at the token endpoint.
#[derive(Debug, Clone, Copy)]
enum Grant<'a> {
    /// The authorization code, with the PKCE verifier and callback URL.
    Code(&'a str, &'a LoginParams<'a>),
    /// A refresh token.
    Refresh(&'a str),
}

/// Why a refresh did not give a new session.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused it (revoked, expired, another user): sign in again.
    #[error("refresh refused: {0}")]
    Rejected(String),
    /// The provider could not be reached or answered garbage.
    #[error("refresh failed: {0}")]
    Unavailable(String),
}

/// The token endpoint's error answer (RFC 6749 5.2).
#[derive(Debug, Deserialize)]
struct TokenErrorAnswer {
    error: String,
}

impl Provider {
    /// Fetches discovery (when on) and the JWKS of the primary provider.
    pub async fn discover(config: &Config, http: IdpHttp) -> Result<Self, IdpError> {
        Self::discover_at(config, 0, http).await
    }

    /// Fetches discovery (when on) and the JWKS of `config.providers[index]`.
    pub async fn discover_at(
        config: &Config,
        index: usize,
        http: IdpHttp,
    ) -> Result<Self, IdpError> {
        let entry = config
            .providers
            .get(index)
            .ok_or_else(|| IdpError::Discovery {
                issuer: String::new(),
                reason: format!("no provider number {index}"),
            })?;
        let cfg = entry.provider.clone();
        let (issuer, endpoints) = if cfg.discovery {
            let started = Instant::now();
            let found = discover_endpoints(&cfg, &http).await;
            let call = crate::metrics::ProviderCall::Discovery;
            http.metrics
                .provider_call(index, call, found.is_ok(), started.elapsed());
            found?
        } else {
            let missing = |what: &str| IdpError::Discovery {
                issuer: cfg.issuer.clone(),
                reason: format!("no {what} configured and discovery is off"),
            };
            let endpoints = Endpoints {
                authorize: cfg
                    .authorize_url
                    .clone()
                    .ok_or_else(|| missing("authorize URL"))?,
                token: cfg.token_url.clone().ok_or_else(|| missing("token URL"))?,
                jwks: cfg.jwks_url.clone().ok_or_else(|| missing("JWKS URL"))?,
                userinfo: cfg.userinfo_url.clone(),
                end_session: cfg.end_session_url.clone(),
                iss_parameter: false,
            };
            (cfg.issuer.clone(), endpoints)
        };
        let started = Instant::now();
        let keys = fetch_keys(&http, &endpoints.jwks).await;
        let call = crate::metrics::ProviderCall::Jwks;
        http.metrics
            .provider_call(index, call, keys.is_ok(), started.elapsed());
        let keys = keys?;
        Ok(Self {
            client_id: entry.client_id.clone(),
            client_secret: entry.client_secret.clone(),
            issuer,
            endpoints,
            keys: ArcSwap::from_pointee(keys),
            last_refetch: tokio::sync::Mutex::new(None),
            claim_headers: config.claim_headers.clone(),
            http,
            cfg,
            index,
        })
    }

    /// The issuer tokens must carry.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id (for sign-out).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Where sign-out continues at the provider, if anywhere: the
    /// end-session endpoint, or the preset's fallback.
    pub fn logout_target(&self) -> Option<LogoutTarget> {
        if let Some(end) = &self.endpoints.end_session {
            return Some(LogoutTarget::Oidc(end.clone()));
        }
        match self.cfg.logout {
            LogoutStyle::Auth0 => Url::parse(&self.issuer)
                .ok()?
                .join("v2/logout")
                .ok()
                .map(LogoutTarget::Auth0),
            LogoutStyle::Oidc => None,
        }
    }

    /// RFC 9207 mix-up defence: true when the callback's `iss` (if any) may
    /// be accepted. A given `iss` must be exactly the issuer; a missing one
    /// is refused when the provider advertises that it sends one.
    pub fn response_issuer_ok(&self, iss: Option<&str>) -> bool {
        match iss {
            Some(iss) => iss == self.issuer,
            None => !self.endpoints.iss_parameter,
        }
    }

    /// Builds the authorize URL for a login.
    pub fn authorize_url(&self, login: &LoginParams<'_>) -> Result<AuthorizeRequest, IdpError> {
        let mut url = self.endpoints.authorize.clone();
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            ring::digest::digest(&ring::digest::SHA256, login.pkce_verifier.as_bytes()),
        );
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.client_id);
            q.append_pair("redirect_uri", login.redirect_uri);
            if !self.cfg.scopes.is_empty() {
                q.append_pair("scope", &self.cfg.scopes.join(" "));
            }
            q.append_pair("state", login.state);
            if self.cfg.oidc {
                q.append_pair("nonce", login.nonce);
            }
            q.append_pair("code_challenge", &challenge);
            q.append_pair("code_challenge_method", "S256");
            if let Some(aud) = &self.cfg.audience {
                q.append_pair("audience", aud);
            }
            // step-up (OIDC Core 3.1.2.1): prompt=login makes the provider
            // authenticate again even when its own session is younger
            if let Some(acr) = login.acr_values {
                q.append_pair("acr_values", acr);
            }
            if let Some(max_age) = login.max_age {
                q.append_pair("max_age", &max_age.to_string());
                q.append_pair("prompt", "login");
            }
        }
        Ok(AuthorizeRequest { url })
    }

    /// Exchanges the code and verifies whatever carries the identity.
    pub async fn exchange(
        &self,
        code: &str,
        login: &LoginParams<'_>,
        keep_access_token: bool,
    ) -> Result<LoginResult, IdpError> {
        let answer = self.token_request(Grant::Code(code, login)).await?;
        let identity = self
            .identity_from_answer(answer, Some(login), keep_access_token, None)
            .await?;
        Ok(LoginResult { identity })
    }

    /// Redeems the session's refresh token. The new identity keeps the old
    /// one's fields the provider did not send again, must have the same
    /// subject, and carries the rotated refresh token (or the old one).
    pub async fn refresh(
        &self,
        previous: &Identity,
        keep_access_token: bool,
    ) -> Result<Identity, RefreshError> {
        let Some(refresh_token) = previous.tokens.refresh_token.as_ref() else {
            return Err(RefreshError::Rejected("no refresh token".to_owned()));
        };
        let answer = match self
            .token_request(Grant::Refresh(refresh_token.expose()))
            .await
        {
            Ok(a) => a,
            // a 4xx from the token endpoint: revoked, expired, or not ours
            // the provider refused the grant itself (revoked, expired, not ours);
            // anything else (429, 5xx, garbage) is the provider being unwell
            Err(IdpError::TokenExchange(why))
                if (why.starts_with("status 400") || why.starts_with("status 401"))
                    && (why.contains("invalid_grant") || why.contains("invalid_client")) =>
            {
                return Err(RefreshError::Rejected(why));
            }
            Err(e) => return Err(RefreshError::Unavailable(e.to_string())),
        };
        let mut identity = self
            .identity_from_answer(answer, None, keep_access_token, Some(previous))
            .await
            .map_err(|e| RefreshError::Rejected(e.to_string()))?;
        if identity.subject != previous.subject {
            return Err(RefreshError::Rejected(
                "the refreshed tokens name another user".to_owned(),
            ));
        }
        if identity.tokens.refresh_token.is_none() {
            identity.tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(identity)
    }

    /// Verifies what the token endpoint sent and maps it to an identity.
    /// `login`'s nonce is checked at login; a refreshed ID token carries
    /// none to check. On refresh, `previous` fills in what was not sent
    /// again.
    async fn identity_from_answer(
        &self,
        answer: TokenAnswer,
        login: Option<&LoginParams<'_>>,
        keep_access_token: bool,
        previous: Option<&Identity>,
    ) -> Result<Identity, IdpError> {
        let source = self.cfg.identity_source;
        let nonce = login.map(|l| l.nonce);
        let id_claims = match (&answer.id_token, self.cfg.oidc) {
            (Some(raw), true) => Some(self.verify_id_token(raw, nonce).await?),
            (None, true) if source == IdentitySource::IdToken && previous.is_none() => {
                return Err(IdpError::TokenExchange(
                    "the token response has no id_token".to_owned(),
                ));
            }
            _ => None,
        };
        let access_claims = if self.cfg.verify_access_token {
            Some(self.verify_access_token(&answer.access_token).await?)
        } else {
            None
        };
        if let (Some(login), Some(claims), IdentitySource::AccessToken) =
            (login, &access_claims, source)
        {
            // an access token carries no nonce: its iat ties it to this login
            check_issued_since(claims, login.started_at)?;
        }
        let mut identity = match (previous, &id_claims, source) {
            // a refresh without a new ID token: the identity stands as it was
            (Some(prev), None, IdentitySource::IdToken | IdentitySource::Userinfo) => prev.clone(),
            _ => {
                self.identity_from_claims(
                    &answer,
                    id_claims.as_ref(),
                    access_claims.as_ref(),
                    previous,
                )
                .await?
            }
        };
        // roles come from whichever verified token was just received; a
        // refresh that sent neither keeps the old ones
        if access_claims.is_some() || id_claims.is_some() || previous.is_none() {
            identity.roles = roles(
                access_claims
                    .as_ref()
                    .or(id_claims.as_ref())
                    .unwrap_or(&Value::Null),
            );
        }
        let access_exp = expires_at(answer.expires_in.as_ref()).or_else(|| {
            access_claims
                .as_ref()
                .and_then(|c| c.get("exp"))
                .and_then(Value::as_u64)
        });
        identity.refreshed_at = now_secs();
        // how and when the user authenticated is a fact of the login; a
        // refresh authenticates nobody, so it keeps the login's
        (identity.acr, identity.auth_time) = match previous {
            Some(prev) => (prev.acr.clone(), prev.auth_time),
            None => id_claims.as_ref().map_or((None, None), authentication),
        };
        identity.tokens = Tokens {
            id_token: answer
                .id_token
                .map(Secret::new)
                .or_else(|| previous.and_then(|p| p.tokens.id_token.clone())),
            access_token: keep_access_token.then(|| Secret::new(answer.access_token)),
            refresh_token: answer.refresh_token.map(Secret::new),
            access_token_expires_at: access_exp,
        };
        Ok(identity)
    }

    /// Builds the identity from verified claims (plus userinfo at login when
    /// the ID token has no email).
    async fn identity_from_claims(
        &self,
        answer: &TokenAnswer,
        id_claims: Option<&Value>,
        access_claims: Option<&Value>,
        previous: Option<&Identity>,
    ) -> Result<Identity, IdpError> {
        let source = self.cfg.identity_source;
        let mut claims = match source {
            IdentitySource::IdToken => id_claims.cloned().unwrap_or(Value::Null),
            IdentitySource::AccessToken => access_claims.cloned().unwrap_or(Value::Null),
            IdentitySource::Userinfo => Value::Object(serde_json::Map::new()),
        };
        let needs_userinfo = source == IdentitySource::Userinfo
            || (source == IdentitySource::IdToken
                && previous.is_none()
                && lookup(&claims, &self.cfg.claims.email, &[]).is_none());
        if needs_userinfo {
            if let Some(info) = self.userinfo(&answer.access_token, id_claims).await? {
                merge_missing(&mut claims, &info);
            } else if source == IdentitySource::Userinfo {
                return Err(IdpError::TokenExchange(
                    "identity_source is userinfo but there is no userinfo endpoint".to_owned(),
                ));
            }
        }
        if let Some(id) = id_claims {
            merge_missing(&mut claims, id);
        }
        let mut identity = identity_from_claims(&claims, &self.cfg.claims)?;
        identity.extra_headers =
            mapped_headers(&claims, &self.claim_headers, &self.cfg.claims.aliases);
        if let Some(prev) = previous {
            identity.email = identity.email.or_else(|| prev.email.clone());
            identity.email_verified = identity.email_verified.or(prev.email_verified);
            identity.preferred_username = identity
                .preferred_username
                .or_else(|| prev.preferred_username.clone());
            identity.name = identity.name.or_else(|| prev.name.clone());
            identity.expires_at = prev.expires_at;
        }
        Ok(identity)
    }

    /// The token request: form or JSON, client auth basic, post or none.
    /// [`Provider::token_request_uncounted`], counted as a `token` call
    /// (a code) or a `refresh` call.
    async fn token_request(&self, grant: Grant<'_>) -> Result<TokenAnswer, IdpError> {
        let call = match grant {
            Grant::Code(..) => crate::metrics::ProviderCall::Token,
            Grant::Refresh(_) => crate::metrics::ProviderCall::Refresh,
        };
        let started = Instant::now();
        let answer = self.token_request_uncounted(grant).await;
        self.count(call, answer.is_ok(), started);
        answer
    }

    /// Counts a call to this provider that began at `started`.
    fn count(&self, call: crate::metrics::ProviderCall, ok: bool, started: Instant) {
        self.http
            .metrics
            .provider_call(self.index, call, ok, started.elapsed());
    }

    async fn token_request_uncounted(&self, grant: Grant<'_>) -> Result<TokenAnswer, IdpError> {
        let method = self.cfg.auth_method;
        let secret = self.client_secret.as_ref().map(Secret::expose);
        let call = match grant {
            Grant::Code(..) => "token",
            Grant::Refresh(_) => "refresh",
        };
        let mut fields: Vec<(&str, &str)> = match grant {
            Grant::Code(code, login) => vec![
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", login.redirect_uri),
                ("code_verifier", login.pkce_verifier),
            ],
            Grant::Refresh(token) => {
                vec![("grant_type", "refresh_token"), ("refresh_token", token)]
            }
        };
        if method != TokenAuthMethod::Basic {
            fields.push(("client_id", &self.client_id));
        }
        if let (TokenAuthMethod::Post, Some(s)) = (method, secret) {
            fields.push(("client_secret", s));
        }
        let (content_type, body) = match self.cfg.encoding {
            TokenEncoding::Form => {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &fields {
                    ser.append_pair(k, v);
                }
                (
                    "application/x-www-form-urlencoded",
                    ser.finish().into_bytes(),
                )
            }
            TokenEncoding::Json => {
                let map: serde_json::Map<String, Value> = fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                    .collect();
                (
                    "application/json",
                    Value::Object(map).to_string().into_bytes(),
                )
            }
        };
        let mut req = http::Request::post(self.endpoints.token.as_str())
            .header(CONTENT_TYPE, content_type)
            .header(ACCEPT, "application/json");
        if let (TokenAuthMethod::Basic, Some(s)) = (method, secret) {
            // RFC 6749 2.3.1: id and secret are form-encoded before base64
            let enc =
                |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            let creds = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.client_id),
                enc(s)
            ));
            req = req.header(AUTHORIZATION, format!("Basic {creds}"));
        }
        let req = req
            .body(body)
            .map_err(|e| IdpError::TokenExchange(e.to_string()))?;
        let span = crate::telemetry::otel::provider_span(call);
        let answer = self.http.send(req).await;
        span.finish(&answer);
        let resp = answer.map_err(|e| IdpError::Transport(e.0))?;
        let status = resp.status();
        let body = resp.into_body();
        if !status.is_success() {
            let reason = serde_json::from_slice::<TokenErrorAnswer>(&body).map_or_else(
                |_e| format!("status {status}"),
                |e| format!("status {status}, provider said {}", e.error),
            );
            return Err(IdpError::TokenExchange(reason));
        }
        serde_json::from_slice(&body).map_err(|e| {
            IdpError::TokenExchange(format!(
                "unparseable token response ({} bytes): {e}",
                body.len()
            ))
        })
    }

    /// Verifies an ID token; returns its claims. `nonce: None` is for a
    /// refreshed ID token, which carries no nonce to check (OIDC Core 12.2).
    async fn verify_id_token(&self, raw: &str, nonce: Option<&str>) -> Result<Value, IdpError> {
        let token = CoreIdToken::from_str(raw)
            .map_err(|e| IdpError::IdToken(format!("id token does not parse: {e}")))?;
        let nonce = nonce.map(|n| Nonce::new(n.to_owned()));
        let check = |verifier: &CoreIdTokenVerifier<'static>| match &nonce {
            Some(n) => token.claims(verifier, n).map(|_c| ()),
            None => token
                .claims(verifier, |_n: Option<&Nonce>| Ok(()))
                .map(|_c| ()),
        };
        let seen = self.keys.load_full();
        if let Err(e) = check(&self.id_verifier()?) {
            // a JWKS that cannot be fetched is the provider's failure (503/502),
            // not the token's
            if !is_unknown_key(&e) || !self.refetch_jwks(&seen, Wait::ForNextFetch).await? {
                return Err(IdpError::IdToken(error_chain(&e)));
            }
            // the provider rotated its keys: try once more with the new set
            check(&self.id_verifier()?).map_err(|e| IdpError::IdToken(error_chain(&e)))?;
        }
        let claims =
            jwt_payload(raw).ok_or_else(|| IdpError::IdToken("payload is not JSON".to_owned()))?;
        // openidconnect reads exp and iat but not nbf
        check_time_claims(&claims, now_secs()).map_err(IdpError::IdToken)?;
        check_iat(&claims)?;
        self.check_azp(&claims)?;
        Ok(claims)
    }

    fn id_verifier(&self) -> Result<CoreIdTokenVerifier<'static>, IdpError> {
        let issuer = IssuerUrl::new(self.issuer.clone())
            .map_err(|e| IdpError::IdToken(format!("issuer: {e}")))?;
        let extra = self.cfg.extra_audiences.clone();
        let any_with_azp = self.cfg.other_audiences == OtherAudiences::AnyWithAzp;
        Ok(CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            issuer,
            self.keys.load().oidc.clone(),
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            CoreJwsSigningAlgorithm::EdDsa,
        ])
        // several audiences always need azp = client id (checked by the crate)
        .set_other_audience_verifier_fn(move |aud| {
            any_with_azp || extra.iter().any(|e| e == aud.as_str())
        }))
    }

    /// Verifies a JWT access token; returns its claims.
    async fn verify_access_token(&self, raw: &str) -> Result<Value, IdpError> {
        let reject = |why: String| IdpError::IdToken(format!("access token: {why}"));
        let header =
            jsonwebtoken::decode_header(raw).map_err(|e| reject(format!("not a JWT ({e})")))?;
        if !self.cfg.access_token_algs.contains(&header.alg) {
            return Err(reject(format!("algorithm {:?} is not allowed", header.alg)));
        }
        let seen = self.keys.load_full();
        let key = match self.find_jwk(header.kid.as_deref()) {
            Some(k) => k,
            None if self.refetch_jwks(&seen, Wait::ForNextFetch).await? => self
                .find_jwk(header.kid.as_deref())
                .ok_or_else(|| reject("unknown key id".to_owned()))?,
            None => return Err(reject("unknown key id".to_owned())),
        };
        key_fits(&key, header.alg).map_err(reject)?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&key)
            .map_err(|e| reject(format!("bad key: {e}")))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        // header.alg is on the allow-list (checked above); jsonwebtoken wants
        // every listed algorithm to fit the key's family, so list just it
        v.algorithms = vec![header.alg];
        v.leeway = SKEW_SECS;
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        v.validate_nbf = true;
        let expected = self.expected_access_audiences();
        if self.cfg.access_token_azp_audience {
            v.validate_aud = false;
        } else {
            v.set_audience(&expected);
        }
        let claims = jsonwebtoken::decode::<Value>(raw, &key, &v)
            .map_err(|e| reject(e.to_string()))?
            .claims;
        check_time_claims(&claims, now_secs()).map_err(reject)?;
        if self.cfg.access_token_azp_audience {
            let aud_ok = audiences(&claims)
                .iter()
                .any(|a| expected.iter().any(|e| e == a));
            let azp_ok = claims.get("azp").and_then(Value::as_str) == Some(self.client_id.as_str());
            if !aud_ok && !azp_ok {
                return Err(reject("neither aud nor azp names this client".to_owned()));
            }
        }
        Ok(claims)
    }

    /// Verifies a back-channel logout token (OpenID Connect Back-Channel
    /// Logout 1.0, 2.6) as an ID token is verified: signature against the
    /// provider's keys with the ID-token algorithm allow-list, `iss`, `aud`,
    /// `iat` within [`LOGOUT_TOKEN_MAX_AGE_SECS`], `exp` when present; then the
    /// logout event, a `sid` or `sub`, no `nonce`, and a `jti`.
    pub async fn verify_logout_token(&self, raw: &str) -> Result<LogoutClaims, IdpError> {
        let reject = |why: &str| IdpError::IdToken(format!("logout token: {why}"));
        let header = jsonwebtoken::decode_header(raw).map_err(|_e| reject("not a JWT"))?;
        if !LOGOUT_TOKEN_ALGS.contains(&header.alg) {
            return Err(reject("algorithm not allowed"));
        }
        let seen = self.keys.load_full();
        let key = match self.find_jwk(header.kid.as_deref()) {
            Some(k) => k,
            // anyone can post a logout token: it never waits for a refetch
            None if self.refetch_jwks(&seen, Wait::No).await? => self
                .find_jwk(header.kid.as_deref())
                .ok_or_else(|| reject("unknown key id"))?,
            None => return Err(reject("unknown key id")),
        };
        key_fits(&key, header.alg).map_err(|e| reject(&e))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&key).map_err(|_e| reject("unusable key"))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = SKEW_SECS;
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_audience(&[self.client_id.as_str()]);
        v.set_required_spec_claims(&["iss", "aud"]);
        v.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Value>(raw, &key, &v)
            .map_err(|e| reject(&e.to_string()))?
            .claims;
        check_time_claims(&claims, now_secs()).map_err(|e| reject(&e))?;
        let now = now_secs();
        match claims.get("iat").and_then(Value::as_u64) {
            Some(iat) if iat > now + SKEW_SECS => return Err(reject("iat is in the future")),
            Some(iat) if now.saturating_sub(iat) > LOGOUT_TOKEN_MAX_AGE_SECS => {
                return Err(reject("iat is too old"));
            }
            Some(_) => {}
            None => return Err(reject("no numeric iat")),
        }
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT));
        if !event.is_some_and(Value::is_object) {
            return Err(reject("no back-channel logout event"));
        }
        if claims.get("nonce").is_some() {
            return Err(reject("a logout token must not carry a nonce"));
        }
        let text = |name: &str| -> Result<Option<String>, IdpError> {
            match claims.get(name) {
                None => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && s.len() <= 1024 => Ok(Some(s.clone())),
                Some(_) => Err(reject(&format!("{name} is not a non-empty string"))),
            }
        };
        let sid = text("sid")?;
        let sub = text("sub")?;
        if sid.is_none() && sub.is_none() {
            return Err(reject("neither sid nor sub"));
        }
        let jti = text("jti")?.ok_or_else(|| reject("no jti"))?;
        // a logout token names this client when it has several audiences
        self.check_azp(&claims)
            .map_err(|_e| reject("azp names another client"))?;
        Ok(LogoutClaims { sid, sub, jti })
    }

    /// OpenID Connect Core 3.1.3.7 steps 4-5, which `openidconnect` 4.1
    /// leaves to the caller: with several audiences `azp` is required, and
    /// when present it must be this client.
    fn check_azp(&self, claims: &Value) -> Result<(), IdpError> {
        match claims.get("azp").map(Value::as_str) {
            Some(Some(azp)) if azp == self.client_id => Ok(()),
            Some(_) => Err(IdpError::IdToken("azp names another client".to_owned())),
            None if audiences(claims).len() > 1 => {
                Err(IdpError::IdToken("several audiences and no azp".to_owned()))
            }
            None => Ok(()),
        }
    }

    fn expected_access_audiences(&self) -> Vec<String> {
        let mut v = vec![self.client_id.clone()];
        v.extend(self.cfg.extra_audiences.iter().cloned());
        v.extend(self.cfg.audience.iter().cloned());
        v
    }

    fn find_jwk(&self, kid: Option<&str>) -> Option<jsonwebtoken::jwk::Jwk> {
        let keys = self.keys.load();
        match kid {
            Some(kid) => keys
                .jwt
                .iter()
                .find(|k| k.common.key_id.as_deref() == Some(kid))
                .cloned(),
            // no kid: only unambiguous with a single key
            None if keys.jwt.len() == 1 => keys.jwt.first().cloned(),
            None => None,
        }
    }

    /// [`Provider::userinfo_uncounted`], counted when there is an endpoint.
    async fn userinfo(
        &self,
        access_token: &str,
        id_claims: Option<&Value>,
    ) -> Result<Option<Value>, IdpError> {
        let started = Instant::now();
        let info = self.userinfo_uncounted(access_token, id_claims).await;
        if self.endpoints.userinfo.is_some() {
            self.count(
                crate::metrics::ProviderCall::Userinfo,
                info.is_ok(),
                started,
            );
        }
        info
    }

    /// Calls the userinfo endpoint; its `sub` must be the ID token's.
    async fn userinfo_uncounted(
        &self,
        access_token: &str,
        id_claims: Option<&Value>,
    ) -> Result<Option<Value>, IdpError> {
        let Some(url) = &self.endpoints.userinfo else {
            return Ok(None);
        };
        let span = crate::telemetry::otel::provider_span("userinfo");
        let answer = self.http.get_json(url, Some(access_token)).await;
        span.finish(&answer);
        let (status, body) = answer?;
        if !status.is_success() {
            return Err(IdpError::TokenExchange(format!(
                "userinfo answered {status}"
            )));
        }
        let info: Value = serde_json::from_slice(&body)
            .map_err(|e| IdpError::TokenExchange(format!("userinfo is not JSON: {e}")))?;
        if let Some(id) = id_claims
            && id.get("sub") != info.get("sub")
        {
            return Err(IdpError::IdToken(
                "userinfo sub differs from the id token's".to_owned(),
            ));
        }
        Ok(Some(info))
    }

    /// Refetches the JWKS after a verification against `seen` found no
    /// key. True when a set newer than `seen` is loaded: by this call, or by
    /// a concurrent one this call queued behind (single flight). Within
    /// [`JWKS_REFETCH_INTERVAL`] of the last fetch, `Wait::No` gives up and
    /// `Wait::ForNextFetch` sleeps until the next allowed one. A fetch that
    /// fails is the provider's error, returned as such.
    async fn refetch_jwks(&self, seen: &Arc<Keys>, wait: Wait) -> Result<bool, IdpError> {
        // an async lock, held across the fetch on purpose: whoever queues
        // behind it finds the new set instead of fetching again
        let mut last = self.last_refetch.lock().await;
        if !Arc::ptr_eq(&self.keys.load(), seen) {
            return Ok(true);
        }
        if let Some(since) = last.map(|t| t.elapsed())
            && since < JWKS_REFETCH_INTERVAL
        {
            let left = JWKS_REFETCH_INTERVAL.saturating_sub(since);
            if wait == Wait::No || left > JWKS_REFETCH_WAIT {
                tracing::debug!("unknown kid, jwks refetched recently: not fetching again");
                return Ok(false);
            }
            tracing::debug!(
                ?left,
                "unknown kid: waiting for the next allowed jwks refetch"
            );
            tokio::time::sleep(left).await;
        }
        *last = Some(Instant::now());
        let started = Instant::now();
        let fetched = fetch_keys(&self.http, &self.endpoints.jwks).await;
        self.count(crate::metrics::ProviderCall::Jwks, fetched.is_ok(), started);
        match fetched {
            Ok(keys) => {
                tracing::info!(jwks_uri = %self.endpoints.jwks, keys = keys.jwt.len(), "jwks refetched");
                self.keys.store(Arc::new(keys));
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(error = %crate::telemetry::escape_log(&e.to_string()), "jwks refetch failed");
                Err(e)
            }
        }
    }
}

/// Whether a verification may wait for the next allowed JWKS refetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Give up at once when a refetch is not allowed yet.
    No,
    /// Wait for it, up to [`JWKS_REFETCH_WAIT`].
    ForNextFetch,
}

/// What a verified logout token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The provider session to end.
    pub sid: Option<String>,
    /// The user whose sessions to end (all of them when there is no `sid`).
    pub sub: Option<String>,
    /// The token's id, redeemable once.
    pub jti: String,
}

/// The `events` member a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Oldest `iat` a logout token may carry.
pub const LOGOUT_TOKEN_MAX_AGE_SECS: u64 = 300;
/// Signature algorithms accepted on logout tokens: the ID-token list.
pub(crate) const LOGOUT_TOKEN_ALGS: [jsonwebtoken::Algorithm; 9] = [
    jsonwebtoken::Algorithm::RS256,
    jsonwebtoken::Algorithm::RS384,
    jsonwebtoken::Algorithm::RS512,
    jsonwebtoken::Algorithm::PS256,
    jsonwebtoken::Algorithm::PS384,
    jsonwebtoken::Algorithm::PS512,
    jsonwebtoken::Algorithm::ES256,
    jsonwebtoken::Algorithm::ES384,
    jsonwebtoken::Algorithm::EdDSA,
];

/// Where sign-out continues at the provider.
#[derive(Debug, Clone)]
pub enum LogoutTarget {
    /// RP-initiated logout: `id_token_hint`, `post_logout_redirect_uri`, `client_id`.
    Oidc(Url),
    /// Auth0's `/v2/logout`: `client_id`, `returnTo`.
    Auth0(Url),
}

async fn discover_endpoints(
    cfg: &ProviderConfig,
    http: &IdpHttp,
) -> Result<(String, Endpoints), IdpError> {
    let err = |reason: String| IdpError::Discovery {
        issuer: cfg.issuer.clone(),
        reason,
    };
    let base = cfg.issuer.trim_end_matches('/');
    let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
        .map_err(|e| err(e.to_string()))?;
    let span = crate::telemetry::otel::provider_span("discovery");
    let answer = http.get_json(&url, None).await;
    span.finish(&answer);
    let (status, body) = answer.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("{url} answered {status}")));
    }
    let meta: ProviderMetadataWithLogout =
        serde_json::from_slice(&body).map_err(|e| err(format!("bad discovery document: {e}")))?;
    let discovered = meta.issuer().as_str().to_owned();
    // one trailing slash of difference is tolerated (Authentik, Auth0); the
    // tokens are then checked against the discovered issuer exactly
    if discovered.trim_end_matches('/') != base {
        return Err(err(format!("the document names issuer `{discovered}`")));
    }
    let token = meta.token_endpoint().map(|t| t.url().clone());
    let endpoints = Endpoints {
        authorize: cfg
            .authorize_url
            .clone()
            .unwrap_or_else(|| meta.authorization_endpoint().url().clone()),
        token: cfg
            .token_url
            .clone()
            .or(token)
            .ok_or_else(|| err("the discovery document has no token_endpoint".to_owned()))?,
        jwks: cfg
            .jwks_url
            .clone()
            .unwrap_or_else(|| meta.jwks_uri().url().clone()),
        userinfo: cfg
            .userinfo_url
            .clone()
            .or_else(|| meta.userinfo_endpoint().map(|u| u.url().clone())),
        end_session: cfg.end_session_url.clone().or_else(|| {
            meta.additional_metadata()
                .end_session_endpoint
                .as_ref()
                .map(|u| u.url().clone())
        }),
        iss_parameter: serde_json::from_slice::<Value>(&body).is_ok_and(|doc| {
            doc.get("authorization_response_iss_parameter_supported") == Some(&Value::Bool(true))
        }),
    };
    // what discovery taught must be as safe as what may be configured
    if !cfg.allow_http {
        let learnt = [
            ("authorization_endpoint", Some(&endpoints.authorize)),
            ("token_endpoint", Some(&endpoints.token)),
            ("jwks_uri", Some(&endpoints.jwks)),
            ("userinfo_endpoint", endpoints.userinfo.as_ref()),
            ("end_session_endpoint", endpoints.end_session.as_ref()),
        ];
        for (member, url) in learnt {
            if let Some(reason) = url.and_then(crate::config::insecure_http_reason) {
                return Err(err(format!("the document's {member}: {reason}")));
            }
        }
    }
    Ok((discovered, endpoints))
}

async fn fetch_keys(http: &IdpHttp, url: &Url) -> Result<Keys, IdpError> {
    let err = |reason: String| IdpError::Discovery {
        issuer: url.to_string(),
        reason,
    };
    let span = crate::telemetry::otel::provider_span("jwks");
    let answer = http.get_json(url, None).await;
    span.finish(&answer);
    let (status, body) = answer?;
    if !status.is_success() {
        return Err(err(format!("JWKS {url} answered {status}")));
    }
    Keys::parse(&body).map_err(err)
}

/// The JWKS and token URLs of `config.providers[index]`, as gatehouse will
/// use them: from discovery (checked as at start: issuer, plain http) or
/// from the settings. What `--check-config` probes.
pub async fn probe_endpoints(
    config: &Config,
    index: usize,
    http: &IdpHttp,
) -> Result<(Url, Url), IdpError> {
    let cfg = &config
        .providers
        .get(index)
        .ok_or_else(|| IdpError::Discovery {
            issuer: String::new(),
            reason: format!("no provider number {index}"),
        })?
        .provider;
    if cfg.discovery {
        let (_issuer, e) = discover_endpoints(cfg, http).await?;
        return Ok((e.jwks, e.token));
    }
    let missing = |what: &str| IdpError::Discovery {
        issuer: cfg.issuer.clone(),
        reason: format!("no {what} configured and discovery is off"),
    };
    let jwks = cfg.jwks_url.clone().ok_or_else(|| missing("JWKS URL"))?;
    let token = cfg.token_url.clone().ok_or_else(|| missing("token URL"))?;
    Ok((jwks, token))
}

/// Fetches and parses the JWKS at `url` as discovery does; the number of
/// keys gatehouse can use.
pub async fn probe_jwks(http: &IdpHttp, url: &Url) -> Result<usize, IdpError> {
    fetch_keys(http, url).await.map(|k| k.jwt.len())
}

/// A key is for the one algorithm its JWK names, and only for signatures
/// (RFC 7517 4.2, 4.4), as `openidconnect` holds ID tokens to; the key's
/// family is checked by `jsonwebtoken` when it verifies.
pub(crate) fn key_fits(
    key: &jsonwebtoken::jwk::Jwk,
    alg: jsonwebtoken::Algorithm,
) -> Result<(), String> {
    if let Some(key_alg) = key.common.key_algorithm
        && key_alg.to_string() != format!("{alg:?}")
    {
        return Err(format!("the key is for {key_alg}, the token says {alg:?}"));
    }
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return Err("the key is not a signing key".to_owned());
    }
    Ok(())
}

fn is_unknown_key(e: &openidconnect::ClaimsVerificationError) -> bool {
    matches!(
        e,
        openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey
        )
    )
}

/// The JSON payload of a JWT already verified by the caller.
pub fn jwt_payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The registered time claims of verified claims: each of `exp`, `iat`
/// and `nbf` that is present must be a non-negative number (RFC 7519
/// NumericDate); `nbf` may not be later than now and `exp` not earlier, each
/// with [`SKEW_SECS`] of leeway. Presence is the caller's rule.
pub(crate) fn check_time_claims(claims: &Value, now: u64) -> Result<(), String> {
    let mut at = [None; 3];
    for (slot, name) in at.iter_mut().zip(["exp", "iat", "nbf"]) {
        *slot = match claims.get(name) {
            None => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Some(f),
                _ => return Err(format!("{name} is not a valid time")),
            },
            Some(_) => return Err(format!("{name} is not a number")),
        };
    }
    let [exp, _iat, nbf] = at;
    let now = now as f64;
    let skew = SKEW_SECS as f64;
    if nbf.is_some_and(|nbf| nbf > now + skew) {
        return Err("not valid yet (nbf is in the future)".to_owned());
    }
    if exp.is_some_and(|exp| exp + skew <= now) {
        return Err("expired".to_owned());
    }
    Ok(())
}

fn check_iat(claims: &Value) -> Result<(), IdpError> {
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now_secs() + SKEW_SECS => Ok(()),
        Some(_) => Err(IdpError::IdToken("iat is in the future".to_owned())),
        None => Err(IdpError::IdToken("iat is missing".to_owned())),
    }
}

/// An identity-carrying access token must be issued no earlier than the
/// login started (less [`SKEW_SECS`]): an older one was not minted for it.
fn check_issued_since(claims: &Value, started_at: u64) -> Result<(), IdpError> {
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat.saturating_add(SKEW_SECS) >= started_at => Ok(()),
        Some(_) => Err(IdpError::IdToken(
            "access token: issued before this login started".to_owned(),
        )),
        None => Err(IdpError::IdToken("access token: no numeric iat".to_owned())),
    }
}

fn expires_at(expires_in: Option<&Value>) -> Option<u64> {
    let secs = match expires_in? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some(now_secs().saturating_add(secs))
}

pub(crate) fn audiences(claims: &Value) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Adds to `into` every top-level claim of `from` it does not have.
fn merge_missing(into: &mut Value, from: &Value) {
    if !into.is_object() {
        *into = Value::Object(serde_json::Map::new());
    }
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (k, v) in from {
            into.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// Finds a claim: by its exact name first (names may be URLs with dots),
/// then as a dotted path, then under an alias.
pub fn lookup<'a>(
    claims: &'a Value,
    name: &str,
    aliases: &[(String, String)],
) -> Option<&'a Value> {
    let direct = |n: &str| -> Option<&'a Value> {
        if let Some(v) = claims.get(n) {
            return Some(v);
        }
        if !n.contains("://") && n.contains('.') {
            return n.split('.').try_fold(claims, |cur, part| cur.get(part));
        }
        None
    };
    direct(name).filter(|v| !v.is_null()).or_else(|| {
        aliases
            .iter()
            .filter(|(a, _)| a == name)
            .find_map(|(_, b)| direct(b))
            .filter(|v| !v.is_null())
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(text).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Maps claims to an identity with the configured claim names.
pub fn identity_from_claims(claims: &Value, names: &ClaimNames) -> Result<Identity, IdpError> {
    let get = |n: &str| lookup(claims, n, &names.aliases);
    // a user id that cannot travel in a header would mean an allowed request
    // with no identity upstream: refuse the login instead
    let subject = get(&names.user_id)
        .and_then(text)
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .ok_or_else(|| {
            IdpError::IdToken(format!(
                "claim `{}` (the user id) is missing",
                names.user_id
            ))
        })?;
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => Some(s == "true"),
        _ => None,
    };
    Ok(Identity {
        subject,
        email: get(&names.email).and_then(text),
        email_verified,
        preferred_username: get("preferred_username").and_then(text),
        name: claims.get("name").and_then(text),
        groups: strings(get(&names.groups)),
        ..Identity::default()
    })
}

/// The ID token's `acr` and `auth_time` (OIDC Core 2), each when present
/// and of the right type: a string, a non-negative whole number.
fn authentication(claims: &Value) -> (Option<String>, Option<u64>) {
    let acr = claims
        .get("acr")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    (acr, claims.get("auth_time").and_then(Value::as_u64))
}

/// Keycloak-shaped roles: `realm_access.roles` as `role`,
/// `resource_access.<client>.roles` as `client:role`.
pub(crate) fn roles(claims: &Value) -> Vec<String> {
    let mut out = strings(claims.pointer("/realm_access/roles"));
    if let Some(Value::Object(clients)) = claims.get("resource_access") {
        for (client, v) in clients {
            out.extend(
                strings(v.get("roles"))
                    .into_iter()
                    .map(|r| format!("{client}:{r}")),
            );
        }
    }
    out
}

/// Values for `claim_header`: control characters dropped, length bounded.
pub(crate) fn mapped_headers(
    claims: &Value,
    map: &[ClaimHeader],
    aliases: &[(String, String)],
) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|m| {
            let v = lookup(claims, &m.claim, aliases)?;
            let raw = match v {
                Value::Array(_) => strings(Some(v)).join(","),
                other => text(other)?,
            };
            let mut clean = String::with_capacity(raw.len().min(MAX_HEADER_VALUE));
            for c in raw.chars().filter(|c| !c.is_control()) {
                if clean.len() + c.len_utf8() > MAX_HEADER_VALUE {
                    break;
                }
                clean.push(c);
            }
            Some((m.header.as_str().to_owned(), clean))
        })
        .collect()
}

/// Holds the provider once discovery has succeeded; until then logins
/// answer 503 and `/ready` says not ready.
#[derive(Default)]
pub struct ProviderSlot {
    inner: ArcSwapOption<Provider>,
    /// The last discovery failure, while not discovered.
    failure: ArcSwapOption<IdpError>,
}

impl ProviderSlot {
    /// The provider, if discovered.
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.inner.load_full()
    }

    /// The error for a sign-in while the provider is not discovered: the
    /// last discovery failure when it says the configuration is wrong (a
    /// wrong issuer URL, a 404 for the discovery document), so the page
    /// says so; otherwise "not ready", which passes.
    pub fn not_ready(&self) -> crate::error::Error {
        match self.failure.load().as_deref() {
            Some(IdpError::Discovery { issuer, reason })
                if crate::error::discovery_misconfigured(reason) =>
            {
                crate::error::Error::DiscoveryFailed(IdpError::Discovery {
                    issuer: issuer.clone(),
                    reason: reason.clone(),
                })
            }
            _ => crate::error::Error::IdpNotReady,
        }
    }

    /// Runs discovery of the primary provider until it succeeds, backing
    /// off from 1 s to 30 s.
    pub async fn discover_until_ready(&self, config: &Config, http: IdpHttp) {
        self.discover_at_until_ready(config, 0, http).await;
    }

    /// Runs discovery of `config.providers[index]` until it succeeds,
    /// backing off from 1 s to 30 s.
    pub async fn discover_at_until_ready(&self, config: &Config, index: usize, http: IdpHttp) {
        let id = config.providers.get(index).map_or("", |e| e.id.as_str());
        let mut delay = Duration::from_secs(1);
        loop {
            match Provider::discover_at(config, index, http.clone()).await {
                Ok(p) => {
                    tracing::info!(issuer = %p.issuer, provider = %p.cfg.name, id = %id, "provider ready");
                    self.inner.store(Some(Arc::new(p)));
                    self.failure.store(None);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::escape_log(&e.to_string()), id = %id, retry_in = ?delay, "provider discovery failed");
                    self.failure.store(Some(Arc::new(e)));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Every configured provider, each in its slot, by index into
/// `Config::providers`. Index 0 is the primary provider.
pub struct Providers {
    slots: Box<[ProviderSlot]>,
}

impl Default for Providers {
    fn default() -> Self {
        Self::new(1)
    }
}

impl Providers {
    /// `n` empty slots (at least one).
    pub fn new(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| ProviderSlot::default()).collect(),
        }
    }

    /// The primary provider, if discovered.
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.at(0)
    }

    /// The provider at `index`, if discovered.
    pub fn at(&self, index: usize) -> Option<Arc<Provider>> {
        self.slots.get(index).and_then(ProviderSlot::get)
    }

    /// The discovered providers whose issuer is `iss`, with their index.
    pub fn by_issuer(&self, iss: &str) -> Vec<(usize, Arc<Provider>)> {
        (0..self.slots.len())
            .filter_map(|i| self.at(i).map(|p| (i, p)))
            .filter(|(_, p)| p.issuer() == iss)
            .collect()
    }

    /// The error for a sign-in at the primary provider while it is not
    /// discovered (see [`ProviderSlot::not_ready`]).
    pub fn not_ready(&self) -> crate::error::Error {
        self.not_ready_at(0)
    }

    /// The error for a sign-in at the provider at `index` while it is not
    /// discovered.
    pub fn not_ready_at(&self, index: usize) -> crate::error::Error {
        self.slots
            .get(index)
            .map_or(crate::error::Error::IdpNotReady, ProviderSlot::not_ready)
    }

    /// The ids of the providers not discovered yet, in order.
    pub fn undiscovered<'c>(&self, config: &'c Config) -> Vec<&'c str> {
        config
            .providers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.at(*i).is_none())
            .map(|(_, e)| e.id.as_str())
            .collect()
    }

    /// Whether every provider has been discovered.
    pub fn all_ready(&self) -> bool {
        self.slots.iter().all(|s| s.get().is_some())
    }

    /// Puts a provider already discovered into slot `index` (a reload
    /// keeps what it has).
    pub fn adopt(&self, index: usize, provider: Arc<Provider>) {
        if let Some(slot) = self.slots.get(index) {
            slot.inner.store(Some(provider));
        }
    }

    /// Runs discovery of every provider not discovered yet at once, until
    /// each succeeds.
    pub async fn discover_until_ready(&self, config: &Config, http: IdpHttp) {
        futures_util::future::join_all(
            self.slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.get().is_none())
                .map(|(i, slot)| slot.discover_at_until_ready(config, i, http.clone())),
        )
        .await;
    }
}

#[cfg(test)]
pub(crate) mod tests;
