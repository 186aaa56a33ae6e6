//! API bearer tokens: `Authorization: Bearer <JWT>` in place of a session.
//!
//! Owns: the issuers whose tokens are accepted (the provider, and each of
//! `extra_jwt_issuers` with its audience), their keys, the verification of
//! a token, the cache of verified tokens, the `401` a refused token gets and
//! the OAuth 2.0 Protected Resource Metadata (RFC 9728) document.
//! Must not: let a request that carried a bearer token where tokens are
//! accepted fall back to anything else (its answer is the token's), or allow
//! a token it did not verify.
//!
//! Security choices, each on purpose:
//! - Signature against the issuer's JWKS (found through its discovery
//!   document, or the provider's configured `jwks_url`), with the asymmetric
//!   algorithms only: `none` and an HMAC keyed with a public key never verify.
//! - `iss` exactly the discovered issuer, `aud` one of the expected audiences
//!   (the provider: client id, extra audiences, API audience; an extra
//!   issuer: its own), `exp` required, `nbf` checked, with the provider's
//!   clock skew.
//! - An unknown `kid` refetches the JWKS at most once per
//!   [`JWKS_REFETCH_INTERVAL`] and never waits for the next allowed fetch:
//!   anyone can send a token. A discovery that failed is retried no sooner.
//! - Fails closed: keys that cannot be fetched answer 503, never an allow.
//! - Verified tokens are remembered until their `exp` under a SHA-256 of the
//!   token (bounded), so a known token costs a hash and a lookup.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::auth::identity::{Identity, Tokens};
use crate::auth::oidc::{
    IdpHttp, JWKS_REFETCH_INTERVAL, LOGOUT_TOKEN_ALGS, SKEW_SECS, audiences, check_time_claims,
    identity_from_claims, jwt_payload, key_fits, mapped_headers, roles,
};
use crate::auth::session::now_secs;
use crate::auth::{Decision, Unavailable, policy};
use crate::config::{Config, Secret};
use crate::http::body::ProxyBody;
use crate::http::forwarded::Origin;
use crate::http::response::json;
use crate::routes::Route;

/// Where the RFC 9728 metadata is served.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// Most verified tokens remembered at once.
const CACHE_CAPACITY: u64 = 10_000;
/// Longest token looked at; anything longer is refused unread.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Signature algorithms accepted: the ID-token list, asymmetric only.
const ALGS: [jsonwebtoken::Algorithm; 9] = LOGOUT_TOKEN_ALGS;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// The token is not valid: 401.
    #[error("bearer token refused: {0}")]
    Invalid(String),
    /// The issuer's keys could not be had: 503, never an allow.
    #[error("bearer token not checked: {0}")]
    Unavailable(String),
}

fn invalid(why: impl Into<String>) -> BearerError {
    BearerError::Invalid(why.into())
}

fn unavailable(why: impl Into<String>) -> BearerError {
    BearerError::Unavailable(why.into())
}

/// One issuer's discovered endpoints and keys.
struct Keys {
    /// The issuer its tokens carry, exactly as its discovery document says.
    issuer: String,
    jwks: Url,
    keys: Vec<jsonwebtoken::jwk::Jwk>,
}

/// When an issuer's discovery and key refetch last ran.
#[derive(Default)]
struct Fetches {
    discovery: Option<Instant>,
    refetch: Option<Instant>,
}

/// An issuer whose bearer tokens are accepted.
struct Issuer {
    /// As configured (the metadata names it so until discovered).
    configured: String,
    /// Discovery is off: these are the issuer and the keys' URL.
    fixed: Option<(String, Url)>,
    /// Audiences of which a token must name one.
    audiences: Vec<String>,
    /// With `access_token_azp_audience`: a token whose `azp` is this client
    /// passes without naming an audience (Keycloak's `aud: account`).
    azp: Option<String>,
    allow_http: bool,
    /// The `[[providers]]` entry it is (its index), or `None` for an extra
    /// issuer: a route that names providers takes only their tokens.
    provider: Option<usize>,
    /// How its tokens name the user and groups.
    claim_names: crate::config::ClaimNames,
    keys: ArcSwapOption<Keys>,
    /// Held across a fetch, so concurrent ones queue and share its result.
    fetches: tokio::sync::Mutex<Fetches>,
}

impl Issuer {
    fn new(
        configured: &str,
        audiences: Vec<String>,
        allow_http: bool,
        claim_names: crate::config::ClaimNames,
    ) -> Self {
        Self {
            configured: configured.to_owned(),
            fixed: None,
            audiences,
            azp: None,
            allow_http,
            provider: None,
            claim_names,
            keys: ArcSwapOption::empty(),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    /// Whether a token naming `iss` is this issuer's to verify (one trailing
    /// slash of difference tolerated here; `iss` is then checked exactly).
    fn claims(&self, iss: &str) -> bool {
        iss.trim_end_matches('/') == self.configured.trim_end_matches('/')
    }

    /// The keys, discovering them the first time. A failed discovery is
    /// retried at most once per [`JWKS_REFETCH_INTERVAL`].
    async fn keys(&self, http: &IdpHttp) -> Result<Arc<Keys>, BearerError> {
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        let mut fetches = self.fetches.lock().await;
        if let Some(k) = self.keys.load_full() {
            return Ok(k);
        }
        if fetches
            .discovery
            .is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL)
        {
            return Err(unavailable(format!(
                "the keys of {} could not be fetched; retrying shortly",
                self.configured
            )));
        }
        fetches.discovery = Some(Instant::now());
        let keys = Arc::new(self.discover(http).await?);
        tracing::info!(issuer = %keys.issuer, keys = keys.keys.len(), "bearer token issuer discovered");
        self.keys.store(Some(keys.clone()));
        Ok(keys)
    }

    async fn discover(&self, http: &IdpHttp) -> Result<Keys, BearerError> {
        let (issuer, jwks) = match &self.fixed {
            Some((issuer, jwks)) => (issuer.clone(), jwks.clone()),
            None => {
                #[derive(Deserialize)]
                struct Doc {
                    issuer: String,
                    jwks_uri: Url,
                }
                let base = self.configured.trim_end_matches('/');
                let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
                    .map_err(|e| unavailable(format!("{base}: {e}")))?;
                let (status, body) = http
                    .get_json(&url, None)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if !status.is_success() {
                    return Err(unavailable(format!("{url} answered {status}")));
                }
                let doc: Doc = serde_json::from_slice(&body)
                    .map_err(|e| unavailable(format!("{url}: bad discovery document: {e}")))?;
                if doc.issuer.trim_end_matches('/') != base {
                    return Err(unavailable(format!("{url} names issuer `{}`", doc.issuer)));
                }
                if !self.allow_http
                    && let Some(reason) = crate::config::insecure_http_reason(&doc.jwks_uri)
                {
                    return Err(unavailable(format!("{url}: jwks_uri: {reason}")));
                }
                (doc.issuer, doc.jwks_uri)
            }
        };
        let keys = fetch_jwks(http, &jwks).await?;
        Ok(Keys { issuer, jwks, keys })
    }

    /// After `seen` had no key for a token: the newer set, fetched now or by
    /// a concurrent call; `None` when a refetch ran less than
    /// [`JWKS_REFETCH_INTERVAL`] ago (never waited for).
    async fn refetch(
        &self,
        http: &IdpHttp,
        seen: &Arc<Keys>,
    ) -> Result<Option<Arc<Keys>>, BearerError> {
        let mut fetches = self.fetches.lock().await;
        if let Some(current) = self.keys.load_full()
            && !Arc::ptr_eq(&current, seen)
        {
            return Ok(Some(current));
        }
        if fetches
            .refetch
            .is_some_and(|t| t.elapsed() < JWKS_REFETCH_INTERVAL)
        {
            tracing::debug!("unknown kid on a bearer token, jwks refetched recently: not again");
            return Ok(None);
        }
        fetches.refetch = Some(Instant::now());
        let keys = fetch_jwks(http, &seen.jwks).await?;
        tracing::info!(jwks_uri = %seen.jwks, keys = keys.len(), "jwks refetched for a bearer token");
        let fresh = Arc::new(Keys {
            issuer: seen.issuer.clone(),
            jwks: seen.jwks.clone(),
            keys,
        });
        self.keys.store(Some(fresh.clone()));
        Ok(Some(fresh))
    }
}

async fn fetch_jwks(http: &IdpHttp, url: &Url) -> Result<Vec<jsonwebtoken::jwk::Jwk>, BearerError> {
    #[derive(Deserialize)]
    struct Raw {
        keys: Vec<Value>,
    }
    let (status, body) = http
        .get_json(url, None)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if !status.is_success() {
        return Err(unavailable(format!("JWKS {url} answered {status}")));
    }
    let raw: Raw = serde_json::from_slice(&body)
        .map_err(|e| unavailable(format!("JWKS {url} is not a key set: {e}")))?;
    // keys of unknown types are skipped
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value(k).ok())
        .collect())
}

fn find_jwk<'k>(keys: &'k Keys, kid: Option<&str>) -> Option<&'k jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys
            .keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid)),
        // no kid: only unambiguous with a single key
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

/// A cached token lives until its `exp`.
struct UntilExp;

/// A verified token: who, and which provider issued it.
#[derive(Debug)]
pub struct Verified {
    /// The identity its claims give.
    pub identity: Identity,
    /// The `[[providers]]` entry that issued it; `None` for an extra issuer.
    pub provider: Option<usize>,
}

impl std::ops::Deref for Verified {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        &self.identity
    }
}

impl moka::Expiry<[u8; 32], Arc<Verified>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Verified>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.expires_at.saturating_sub(now_secs()),
        ))
    }
}

/// Verifies bearer tokens. Built once at start.
pub struct BearerAuth {
    everywhere: bool,
    /// Some route has `bearer = true`.
    on_some_route: bool,
    issuers: Vec<Issuer>,
    cache: moka::future::Cache<[u8; 32], Arc<Verified>>,
    http: IdpHttp,
}

impl BearerAuth {
    /// The issuers from the config: the provider, then `extra_jwt_issuers`.
    /// No network is touched here.
    pub fn new(config: &Config, http: IdpHttp) -> Self {
        // every OpenID provider's tokens, each for its own client
        let mut issuers = Vec::with_capacity(config.providers.len() + 1);
        for (index, entry) in config.providers.iter().enumerate() {
            let p = &entry.provider;
            if !p.oidc || p.issuer.is_empty() {
                continue;
            }
            let mut audiences = vec![entry.client_id.clone()];
            audiences.extend(p.extra_audiences.iter().cloned());
            audiences.extend(p.audience.iter().cloned());
            let mut issuer = Issuer::new(&p.issuer, audiences, p.allow_http, p.claims.clone());
            if !p.discovery
                && let Some(jwks) = &p.jwks_url
            {
                issuer.fixed = Some((p.issuer.clone(), jwks.clone()));
            }
            issuer.azp = p.access_token_azp_audience.then(|| entry.client_id.clone());
            issuer.provider = Some(index);
            issuers.push(issuer);
        }
        for extra in &config.bearer.extra_issuers {
            issuers.push(Issuer::new(
                &extra.issuer,
                vec![extra.audience.clone()],
                config.provider.allow_http,
                config.provider.claims.clone(),
            ));
        }
        Self {
            everywhere: config.bearer.everywhere,
            on_some_route: config.routes.routes().iter().any(|r| r.bearer),
            issuers,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilExp)
                .build(),
            http,
        }
    }

    /// Whether bearer tokens are accepted anywhere (the metadata is served
    /// then).
    pub fn enabled(&self) -> bool {
        self.everywhere || self.on_some_route
    }

    /// Whether bearer tokens are accepted on `route`.
    pub fn enabled_on(&self, route: &Route) -> bool {
        // never on a step-up route (`skip_jwt_bearer_tokens` included): a
        // token does not say how strongly its holder signed in
        (self.everywhere || route.bearer) && route.step_up.is_none()
    }

    /// The token of a request on `route`, if bearer tokens are accepted
    /// there and it carries one (`Authorization: Bearer ...`). Two
    /// `Authorization` headers with a bearer token among them give an empty
    /// token, which is refused: which one counts would be a guess.
    pub fn token<'h>(&self, headers: &'h HeaderMap, route: &Route) -> Option<&'h str> {
        if !self.enabled_on(route) {
            return None;
        }
        presented(headers)
    }

    /// The decision for a request on `route` that carried `token`: the
    /// site-wide rules, then the route's lists, as for a session.
    pub async fn decide(&self, config: &Config, token: &str, route: &Route) -> Decision {
        match self.verify(config, token).await {
            // a route that names providers takes only their tokens (as
            // only their sessions): an extra issuer's are not theirs
            Ok(v)
                if route
                    .providers
                    .is_some_and(|allowed| !v.provider.is_some_and(|i| allowed.contains(i))) =>
            {
                tracing::info!("bearer token refused: from a provider this route does not take");
                Decision::InvalidToken
            }
            Ok(v) => {
                match policy::check(config, &v.identity).and_then(|()| route.admits(&v.identity)) {
                    Ok(()) => Decision::Allow(crate::auth::Allowed::Token(v)),
                    Err(reason) => Decision::Deny(reason, Box::new(v.identity.clone())),
                }
            }
            Err(BearerError::Invalid(why)) => {
                tracing::info!(reason = %crate::telemetry::escape_log(&why), "bearer token refused");
                Decision::InvalidToken
            }
            Err(e @ BearerError::Unavailable(_)) => {
                tracing::warn!(error = %crate::telemetry::escape_log(&e.to_string()), "bearer token not checked");
                Decision::Unavailable(Unavailable::Provider)
            }
        }
    }

    /// The identity `raw` stands for: from the cache, or verified now.
    pub async fn verify(&self, config: &Config, raw: &str) -> Result<Arc<Verified>, BearerError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, raw.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = now_secs();
        if let Some(hit) = self.cache.get(&key).await {
            if hit.expires_at > now {
                return Ok(hit);
            }
            self.cache.invalidate(&key).await;
        }
        // boxed: a miss may fetch keys, and that future inline would size
        // every request's, hit or not
        let id = Arc::new(Box::pin(self.verify_uncached(config, raw, now)).await?);
        self.cache.insert(key, id.clone()).await;
        Ok(id)
    }

    async fn verify_uncached(
        &self,
        config: &Config,
        raw: &str,
        now: u64,
    ) -> Result<Verified, BearerError> {
        if raw.len() > MAX_TOKEN_LEN {
            return Err(invalid("too long"));
        }
        let header =
            jsonwebtoken::decode_header(raw).map_err(|e| invalid(format!("not a JWT ({e})")))?;
        if !ALGS.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let unverified = jwt_payload(raw).ok_or_else(|| invalid("payload is not JSON"))?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no iss"))?;
        // the provider and an extra issuer may share an `iss` with other
        // audiences: each is tried; keys unreachable for one that could
        // have verified it is an outage, not a refusal
        let mut last = invalid("not from a trusted issuer");
        for issuer in self.issuers.iter().filter(|i| i.claims(iss)) {
            match self.verify_with(config, issuer, raw, &header, now).await {
                Ok(v) => return Ok(v),
                Err(e @ BearerError::Unavailable(_)) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn verify_with(
        &self,
        config: &Config,
        issuer: &Issuer,
        raw: &str,
        header: &jsonwebtoken::Header,
        now: u64,
    ) -> Result<Verified, BearerError> {
        let keys = issuer.keys(&self.http).await?;
        let kid = header.kid.as_deref();
        let jwk = match find_jwk(&keys, kid) {
            Some(k) => k.clone(),
            None => match issuer.refetch(&self.http, &keys).await? {
                Some(fresh) => find_jwk(&fresh, kid)
                    .cloned()
                    .ok_or_else(|| invalid("unknown key id"))?,
                None => return Err(invalid("unknown key id")),
            },
        };
        key_fits(&jwk, header.alg).map_err(invalid)?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)
            .map_err(|e| invalid(format!("unusable key: {e}")))?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        // header.alg is on the allow-list; jsonwebtoken wants every listed
        // algorithm to fit the key's family, so list just it
        v.algorithms = vec![header.alg];
        v.leeway = SKEW_SECS;
        v.set_issuer(&[keys.issuer.as_str()]);
        // `aud` is checked only when present: it must be (a token the
        // issuer made for another client often has none)
        if issuer.azp.is_some() {
            v.set_required_spec_claims(&["exp", "iss"]);
        } else {
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
        }
        v.validate_nbf = true;
        if issuer.azp.is_some() {
            v.validate_aud = false;
        } else {
            v.set_audience(&issuer.audiences);
        }
        let claims = jsonwebtoken::decode::<Value>(raw, &key, &v)
            .map_err(|e| invalid(e.to_string()))?
            .claims;
        check_time_claims(&claims, now).map_err(invalid)?;
        // an ID token names the client as its audience too, but stands for a
        // sign-in, not for API access (Keycloak marks it `typ: ID`)
        if claims.get("typ").and_then(Value::as_str) == Some("ID") {
            return Err(invalid("an ID token is not an access token"));
        }
        if issuer.azp.is_none()
            && !audiences(&claims)
                .iter()
                .any(|a| issuer.audiences.iter().any(|e| e == a))
        {
            return Err(invalid("aud names no audience accepted here"));
        }
        if let Some(client) = &issuer.azp {
            let aud_ok = audiences(&claims)
                .iter()
                .any(|a| issuer.audiences.iter().any(|e| e == a));
            let azp_ok = claims.get("azp").and_then(Value::as_str) == Some(client.as_str());
            if !aud_ok && !azp_ok {
                return Err(invalid("neither aud nor azp names this client"));
            }
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("exp is not a whole number"))?;
        let names = &issuer.claim_names;
        let mut id = identity_from_claims(&claims, names).map_err(|e| invalid(e.to_string()))?;
        id.roles = roles(&claims);
        id.extra_headers = mapped_headers(&claims, &config.claim_headers, &names.aliases);
        id.expires_at = exp;
        id.refreshed_at = now;
        // the token goes on only where a setting forwards tokens
        id.tokens = Tokens {
            id_token: config
                .pass_authorization_header
                .then(|| Secret::new(raw.to_owned())),
            access_token: config
                .pass_access_token
                .then(|| Secret::new(raw.to_owned())),
            refresh_token: None,
            access_token_expires_at: Some(exp),
        };
        Ok(Verified {
            identity: id,
            provider: issuer.provider,
        })
    }

    /// The RFC 9728 document for the resource at `origin`.
    pub fn metadata(&self, origin: &Origin) -> Response<ProxyBody> {
        let Some(resource) = resource(origin) else {
            return crate::error::error_response(
                &crate::error::Error::BadRequest("no host to describe"),
                crate::error::Mode::Json,
            );
        };
        let servers: Vec<String> = self
            .issuers
            .iter()
            .map(|i| {
                i.keys
                    .load()
                    .as_ref()
                    .map_or_else(|| i.configured.clone(), |k| k.issuer.clone())
            })
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "resource": resource,
                "authorization_servers": servers,
                "bearer_methods_supported": ["header"],
            }),
        )
    }
}

/// The bearer token in `headers`, if any (see [`BearerAuth::token`]).
pub fn presented(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let first = all.next()?;
    fn token(v: &HeaderValue) -> Option<&str> {
        let v = v.to_str().unwrap_or("");
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    }
    let mine = token(first);
    let others: Vec<&HeaderValue> = all.collect();
    if others.is_empty() {
        return mine;
    }
    (mine.is_some() || others.iter().any(|v| token(v).is_some())).then_some("")
}

/// `https://host`: the resource the metadata describes.
fn resource(origin: &Origin) -> Option<String> {
    let host = origin.host.as_deref()?;
    Some(format!("{}://{host}", origin.proto))
}

/// `WWW-Authenticate` for a bearer challenge at `origin`: with
/// `error="invalid_token"` when a token was refused, and the metadata URL
/// when the host is known.
pub fn www_authenticate(origin: &Origin, refused: bool) -> HeaderValue {
    let mut v = "Bearer".to_owned();
    if refused {
        v.push_str(" error=\"invalid_token\"");
    }
    // a host that parsed as an authority has no quote or space to escape
    if let Some(resource) = resource(origin) {
        if refused {
            v.push(',');
        }
        v.push_str(&format!(" resource_metadata=\"{resource}{METADATA_PATH}\""));
    }
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer"))
}

/// 401 for a refused bearer token: JSON, never a redirect.
pub fn invalid_token(origin: &Origin) -> Response<ProxyBody> {
    let mut r = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "invalid_token",
            "error_description": "the bearer token was not accepted",
        }),
    );
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, www_authenticate(origin, true));
    r
}

/// Adds the bearer challenge to a 401 where bearer tokens are accepted, so
/// an API client learns where to get one.
pub fn add_challenge(r: &mut Response<ProxyBody>, origin: &Origin) {
    if r.status() == StatusCode::UNAUTHORIZED && !r.headers().contains_key(WWW_AUTHENTICATE) {
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, www_authenticate(origin, false));
    }
}

/// A tunnel opened with a bearer token: it closes when the token expires.
pub fn watch_until(expires_at: u64) -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let left = Duration::from_secs(expires_at.saturating_sub(now_secs()));
        tokio::select! {
            () = tx.closed() => {}
            () = tokio::time::sleep(left) => {
                tracing::debug!("bearer token expired: closing its tunnel");
                let _ = tx.send(true);
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests;
