//! `AppState`: everything a request needs, built once at start.
//!
//! Per request the cost is an `Arc` clone; nothing here is rebuilt on the
//! request path.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Gate;
use crate::auth::backchannel::JTI_TTL;
use crate::auth::bearer::BearerAuth;
use crate::auth::oidc::{IdpHttp, Providers};
use crate::auth::once::OnceGuard;
use crate::auth::refresh::SharedRefresh;
use crate::auth::session::redis_store::RedisStore;
use crate::auth::session::revocations::Revocations;
use crate::auth::session::store::{CookieStore, SessionStore as _, Store};
use crate::auth::session::{CookieCodec, LOGIN_TTL_SECS};
use crate::config::{Config, SessionStoreKind};
use crate::proxy::Upstreams;
use crate::redis_conn::RedisConn;
use crate::server::StartupError;

/// Shared state.
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Decides requests.
    pub gate: Gate,
    /// The providers (by index into `config.providers`), once discovered.
    pub provider: Providers,
    /// HTTP client for the provider.
    pub idp_http: IdpHttp,
    /// Upstreams and their client.
    pub upstreams: Upstreams,
    /// Back-channel logout tokens already used.
    pub logout_replays: OnceGuard,
    /// Login `state` values already redeemed at the callback.
    pub login_states: OnceGuard,
    /// Per-client rate limit on `/oauth2/start` and `/oauth2/callback`.
    pub login_limiter: crate::limits::LoginRateLimiter,
    /// API bearer tokens.
    pub bearer: BearerAuth,
    /// Where the hooks record metrics (a no-op when metrics are off).
    pub metrics: crate::metrics::Recorder,
}

impl AppState {
    /// The gate's decision for a request's headers on `route`.
    pub async fn decide(
        &self,
        headers: &http::HeaderMap,
        route: &crate::routes::Route,
    ) -> crate::auth::Decided {
        // a bearer token where tokens are accepted decides alone
        if let Some(token) = self.bearer.token(headers, route) {
            let decision = self.bearer.decide(&self.config, token, route).await;
            self.metrics.decision(&decision, true);
            return crate::auth::Decided {
                decision,
                set_cookies: Vec::new(),
            };
        }
        let decided = self
            .gate
            .decide(&self.config, &self.provider, headers, route)
            .await;
        self.metrics.decision(&decided.decision, false);
        decided
    }

    /// The revocations (to keep in sync in the background).
    pub fn revocations(&self) -> Arc<Revocations> {
        self.gate.store().revocations().clone()
    }

    /// Whether the session store can vouch for sessions now.
    pub fn store_ready(&self) -> bool {
        self.gate.store().revocations().fresh()
    }

    /// Builds the state; no network is touched here.
    pub fn new(config: Config) -> Result<Self, StartupError> {
        Self::with_metrics(config, None)
    }

    /// [`AppState::new`], recording into `metrics` when given (the server's
    /// own, kept across configuration reloads).
    pub fn with_metrics(
        config: Config,
        metrics: Option<&Arc<crate::metrics::Metrics>>,
    ) -> Result<Self, StartupError> {
        let recorder = metrics.map(|m| m.recorder(&config)).unwrap_or_default();
        let codec = Arc::new(
            CookieCodec::new(
                &config.cookie.secrets,
                &config.provider.issuer,
                &config.client_id,
            )
            .map_err(|e| StartupError::Cookie(e.to_string()))?,
        );
        let idp_http = IdpHttp::new(Duration::from_secs(10))
            .map_err(StartupError::Tls)?
            .with_metrics(recorder.clone());
        let cookie_name = config.cookie.name.clone();
        let upstreams = Upstreams::new(
            &config,
            Arc::new(move |n: &str| crate::auth::session::is_own_cookie(n, &cookie_name)),
        )
        .map_err(StartupError::Tls)?;
        let redis = config
            .session_store
            .redis
            .as_ref()
            .map(RedisConn::new)
            .transpose()
            .map_err(StartupError::Redis)?;
        let prefix = key_prefix(&config.provider.issuer, &config.client_id);
        // revocations must outlive every session they can hit
        let retention = config.cookie.expire + Duration::from_secs(60);
        let revocations = Arc::new(match &redis {
            Some(conn) => {
                Revocations::shared(conn.clone(), format!("{prefix}revocations"), retention)
            }
            None => Revocations::local(),
        });
        let name = &config.cookie.name;
        let store = match (&redis, config.session_store.kind) {
            (Some(conn), SessionStoreKind::Redis) => Store::Redis(RedisStore::new(
                codec.clone(),
                name,
                conn.clone(),
                prefix.clone(),
                revocations,
            )),
            _ => Store::Cookie(CookieStore::new(codec.clone(), name, revocations)),
        }
        .with_metrics(recorder.clone());
        let shared_refresh = redis
            .as_ref()
            .map(|conn| SharedRefresh::new(conn.clone(), prefix.clone()));
        let logout_replays = OnceGuard::new(redis.clone(), &prefix, "jti", JTI_TTL);
        // a state is acceptable for LOGIN_TTL_SECS: remember it a little longer
        let login_states = OnceGuard::new(
            redis,
            &prefix,
            "state",
            Duration::from_secs(LOGIN_TTL_SECS + 60),
        );
        let refresh = config.cookie.refresh;
        let login_limiter = crate::limits::LoginRateLimiter::new(
            config.limits.login_rate_limit,
            crate::limits::LOGIN_LIMITER_CAPACITY,
        );
        let bearer = BearerAuth::new(&config, idp_http.clone());
        let provider = Providers::new(config.providers.len());
        Ok(Self {
            bearer,
            login_limiter,
            config: Arc::new(config),
            gate: Gate::new(codec, store, shared_refresh, refresh),
            provider,
            idp_http,
            upstreams,
            logout_replays,
            login_states,
            metrics: recorder,
        })
    }
}

/// `gatehouse:<deployment>:`: every Redis key starts so. The deployment part
/// is a hash of issuer and client id, so deployments sharing a Redis never
/// see each other's sessions or revocations.
fn key_prefix(issuer: &str, client_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(issuer.as_bytes());
    ctx.update(&[0]);
    ctx.update(client_id.as_bytes());
    let digest = ctx.finish();
    let tag = crate::auth::session::hex(&digest.as_ref()[..6]);
    format!("gatehouse:{tag}:")
}
