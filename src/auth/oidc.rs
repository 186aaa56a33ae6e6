//! OpenID Connect: discovery, the authorize URL, the code exchange and ID
//! token verification (built on the `openidconnect` crate).
//!
//! Owns: the provider's metadata and keys, the HTTP client that talks to the
//! provider, and turning a verified ID token into an [`Identity`].
//! Must not: touch cookies or the upstream.
//!
//! Security choices, each on purpose:
//! - PKCE S256, `state` and `nonce` on every login; all three are checked.
//! - ID tokens: signature against the JWKS, `iss`, `aud` (other audiences
//!   refused; several audiences need `azp` = client id), `exp`, `iat` (not in
//!   the future), `nonce`. Only asymmetric algorithms are allowed, so `none`
//!   and an HMAC keyed with a public key never verify.
//! - An unknown `kid` refetches the JWKS, at most once per
//!   [`JWKS_REFETCH_INTERVAL`], so a flood of made-up kids cannot make us
//!   hammer the provider.
//! - The provider client never follows redirects (SSRF) and reads at most
//!   [`MAX_IDP_BODY`] of any answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, IssuerUrl, JsonWebKeySetUrl, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde_json::Value;
use url::Url;

use crate::auth::identity::{Identity, Tokens};
use crate::auth::session::now_secs;
use crate::config::{Config, Secret};

/// Longest answer read from the provider.
pub const MAX_IDP_BODY: usize = 1024 * 1024;
/// Least time between two JWKS refetches caused by an unknown `kid`.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Clock skew allowed on `iat`.
const IAT_SKEW_SECS: u64 = 60;

/// The client type once discovery has set both endpoints.
type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

/// Something went wrong talking to the provider.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// Transport: connection refused, timeout, TLS.
    #[error("provider request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    /// Discovery document missing, malformed or for another issuer.
    #[error("discovery at {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    /// The token endpoint refused the code or answered garbage.
    #[error("token exchange failed: {0}")]
    TokenExchange(String),
    /// The ID token did not verify.
    #[error("id token rejected: {0}")]
    IdToken(String),
}

/// HTTP client for the provider: no redirects, bounded bodies, timeouts.
#[derive(Clone)]
pub struct IdpHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
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
        })
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, IdpHttpError> {
        let (parts, body) = req.into_parts();
        let uri = parts.uri.clone();
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        // redirects are never followed: a provider answer is taken as it is
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_elapsed| IdpHttpError(format!("{uri}: timed out after {:?}", self.timeout)))?
            .map_err(|e| IdpHttpError(format!("{uri}: {e}")))?;
        let (parts, body) = resp.into_parts();
        let bytes = tokio::time::timeout(self.timeout, Limited::new(body, MAX_IDP_BODY).collect())
            .await
            .map_err(|_elapsed| IdpHttpError(format!("{uri}: body timed out")))?
            .map_err(|e| IdpHttpError(format!("{uri}: body: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, bytes.to_vec()))
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttp {
    type Error = IdpHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// A discovered provider, ready for logins.
pub struct Provider {
    client: OidcClient,
    client_id: ClientId,
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    jwks: ArcSwap<CoreJsonWebKeySet>,
    last_refetch: Mutex<Option<Instant>>,
    end_session: Option<Url>,
    scopes: Vec<String>,
    http: IdpHttp,
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
}

/// The outcome of a successful callback.
#[derive(Debug)]
pub struct LoginResult {
    /// Who signed in (session expiry not yet set).
    pub identity: Identity,
}

impl Provider {
    /// Fetches discovery and the JWKS.
    pub async fn discover(config: &Config, http: IdpHttp) -> Result<Self, IdpError> {
        let issuer_str = config.issuer_url.as_str().to_owned();
        let err = |reason: String| IdpError::Discovery {
            issuer: issuer_str.clone(),
            reason,
        };
        let issuer = IssuerUrl::new(issuer_str.trim_end_matches('/').to_owned())
            .map_err(|e| err(e.to_string()))?;
        let meta = ProviderMetadataWithLogout::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| err(error_chain(&e)))?;
        let token_url = meta
            .token_endpoint()
            .cloned()
            .ok_or_else(|| err("the discovery document has no token_endpoint".to_owned()))?;
        let client_id = ClientId::new(config.client_id.clone());
        let mut client = CoreClient::new(
            client_id.clone(),
            meta.issuer().clone(),
            meta.jwks().clone(),
        )
        .set_auth_uri(meta.authorization_endpoint().clone())
        .set_token_uri(token_url);
        if let Some(secret) = &config.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
            // client_secret_basic unless the provider only takes client_secret_post
            let methods = meta.token_endpoint_auth_methods_supported();
            let basic = methods.is_none_or(|m| {
                m.iter().any(|x| {
                    matches!(
                        x,
                        openidconnect::core::CoreClientAuthMethod::ClientSecretBasic
                    )
                })
            });
            if !basic {
                client = client.set_auth_type(AuthType::RequestBody);
            }
        }
        Ok(Self {
            client,
            client_id,
            issuer: meta.issuer().clone(),
            jwks_uri: meta.jwks_uri().clone(),
            jwks: ArcSwap::from_pointee(meta.jwks().clone()),
            last_refetch: Mutex::new(None),
            end_session: meta
                .additional_metadata()
                .end_session_endpoint
                .as_ref()
                .map(|u| u.url().clone()),
            scopes: config.scopes.clone(),
            http,
        })
    }

    /// The provider's `end_session_endpoint`, if it has one.
    pub fn end_session_endpoint(&self) -> Option<&Url> {
        self.end_session.as_ref()
    }

    /// The client id (for sign-out).
    pub fn client_id(&self) -> &str {
        self.client_id.as_str()
    }

    /// Builds the authorize URL for a login with these secrets.
    pub fn authorize_url(&self, login: &LoginParams<'_>) -> Result<AuthorizeRequest, IdpError> {
        let LoginParams {
            state,
            nonce,
            pkce_verifier,
            redirect_uri,
        } = *login;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| IdpError::TokenExchange(format!("bad redirect_uri: {e}")))?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.to_owned(),
        ));
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect));
        // the crate adds `openid` itself
        for s in self.scopes.iter().filter(|s| *s != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, _, _) = req.url();
        Ok(AuthorizeRequest { url })
    }

    /// Exchanges the code and verifies the ID token.
    pub async fn exchange(
        &self,
        code: &str,
        login: &LoginParams<'_>,
        keep_access_token: bool,
    ) -> Result<LoginResult, IdpError> {
        let LoginParams {
            nonce,
            pkce_verifier,
            redirect_uri,
            ..
        } = *login;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| IdpError::TokenExchange(format!("bad redirect_uri: {e}")))?;
        let resp = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| IdpError::TokenExchange(token_error(&e)))?;
        let id_token = resp.id_token().ok_or_else(|| {
            IdpError::TokenExchange("the token response has no id_token".to_owned())
        })?;
        let nonce = Nonce::new(nonce.to_owned());
        if let Err(e) = id_token.claims(&self.verifier(), &nonce) {
            if !is_unknown_key(&e) || !self.refetch_jwks().await {
                return Err(IdpError::IdToken(error_chain(&e)));
            }
            // the provider rotated its keys: try once more with the new set
            id_token
                .claims(&self.verifier(), &nonce)
                .map_err(|e| IdpError::IdToken(error_chain(&e)))?;
        }
        let raw = id_token.to_string();
        let claims =
            jwt_payload(&raw).ok_or_else(|| IdpError::IdToken("payload is not JSON".to_owned()))?;
        check_iat(&claims)?;
        let mut identity = identity_from_claims(&claims)?;
        identity.tokens = Tokens {
            id_token: Some(Secret::new(raw)),
            access_token: keep_access_token
                .then(|| Secret::new(resp.access_token().secret().clone())),
        };
        Ok(LoginResult { identity })
    }

    fn verifier(&self) -> CoreIdTokenVerifier<'static> {
        CoreIdTokenVerifier::new_public_client(
            self.client_id.clone(),
            self.issuer.clone(),
            (**self.jwks.load()).clone(),
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
    }

    /// Refetches the JWKS unless one was refetched recently. True when a new
    /// set was loaded.
    async fn refetch_jwks(&self) -> bool {
        {
            let Ok(mut last) = self.last_refetch.lock() else {
                return false;
            };
            if last.is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL) {
                tracing::debug!("unknown kid, jwks refetched recently: not fetching again");
                return false;
            }
            *last = Some(Instant::now());
        } // lock released before the await
        match CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http).await {
            Ok(set) => {
                tracing::info!(jwks_uri = %self.jwks_uri.as_str(), keys = set.keys().len(), "jwks refetched");
                self.jwks.store(Arc::new(set));
                true
            }
            Err(e) => {
                tracing::warn!(jwks_uri = %self.jwks_uri.as_str(), error = %error_chain(&e), "jwks refetch failed");
                false
            }
        }
    }
}

fn is_unknown_key(e: &openidconnect::ClaimsVerificationError) -> bool {
    matches!(
        e,
        openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey
        )
    )
}

/// The error and its sources, joined: what went wrong, without secrets.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn token_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<
        RE,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            format!("provider said {}", r.error().as_ref())
        }
        openidconnect::RequestTokenError::Parse(_, body) => {
            format!("unparseable token response ({} bytes)", body.len())
        }
        other => error_chain(other),
    }
}

/// The JSON payload of a JWT already verified by the caller.
pub fn jwt_payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn check_iat(claims: &Value) -> Result<(), IdpError> {
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now_secs() + IAT_SKEW_SECS => Ok(()),
        Some(_) => Err(IdpError::IdToken("iat is in the future".to_owned())),
        None => Err(IdpError::IdToken("iat is missing".to_owned())),
    }
}

/// Maps standard claims to an identity. `groups` may be a list or a string.
pub fn identity_from_claims(claims: &Value) -> Result<Identity, IdpError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let subject = text("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| IdpError::IdToken("sub is missing".to_owned()))?;
    let groups = match claims.get("groups") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let email_verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => Some(s == "true"),
        _ => None,
    };
    Ok(Identity {
        subject,
        email: text("email"),
        email_verified,
        preferred_username: text("preferred_username"),
        name: text("name"),
        groups,
        expires_at: 0,
        tokens: Tokens::default(),
    })
}

/// Holds the provider once discovery has succeeded; until then logins
/// answer 503 and `/ready` says not ready.
#[derive(Default)]
pub struct ProviderSlot {
    inner: ArcSwapOption<Provider>,
}

impl ProviderSlot {
    /// The provider, if discovered.
    pub fn get(&self) -> Option<Arc<Provider>> {
        self.inner.load_full()
    }

    /// Runs discovery until it succeeds, backing off from 1 s to 30 s.
    pub async fn discover_until_ready(&self, config: &Config, http: IdpHttp) {
        let mut delay = Duration::from_secs(1);
        loop {
            match Provider::discover(config, http.clone()).await {
                Ok(p) => {
                    tracing::info!(issuer = %p.issuer.as_str(), "provider discovered");
                    self.inner.store(Some(Arc::new(p)));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "provider discovery failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_map_to_identity() {
        let c = serde_json::json!({"sub":"u1","email":"a@b.c","email_verified":"true","groups":"admins","name":"A"});
        let id = identity_from_claims(&c).unwrap();
        assert_eq!(id.subject, "u1");
        assert_eq!(id.groups, vec!["admins"]);
        assert_eq!(id.email_verified, Some(true));
        assert!(identity_from_claims(&serde_json::json!({"email":"x"})).is_err());
    }

    #[test]
    fn iat_must_not_be_in_the_future() {
        assert!(check_iat(&serde_json::json!({"iat": now_secs()})).is_ok());
        assert!(check_iat(&serde_json::json!({"iat": now_secs() + 3600})).is_err());
        assert!(check_iat(&serde_json::json!({})).is_err());
    }

    #[test]
    fn jwt_payload_rejects_garbage() {
        assert!(jwt_payload("a.b.c").is_none());
        assert!(jwt_payload("nodots").is_none());
    }
}
