//! `AppState`: everything a request needs, built at start and again at each
//! reload (see [`AppState::reloaded`] for what a reload keeps).
//!
//! Per request the cost is one load of the live `Arc` (`server.rs`); nothing
//! here is rebuilt on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::proxy::websocket::Tunnels;
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
    /// Back-channel logout tokens already used (kept across reloads).
    pub logout_replays: Arc<OnceGuard>,
    /// Login `state` values already redeemed at the callback (kept across
    /// reloads).
    pub login_states: Arc<OnceGuard>,
    /// Per-client rate limit on `/oauth2/start` and `/oauth2/callback`.
    pub login_limiter: Arc<crate::limits::LoginRateLimiter>,
    /// API bearer tokens.
    pub bearer: BearerAuth,
    /// Draining and open tunnels: one for the process, kept across reloads.
    pub lifecycle: Arc<Lifecycle>,
    /// Redis, when configured (kept across reloads while its settings are).
    redis: Option<RedisConn>,
    /// What Redis, the key prefix and the revocations' retention were built
    /// from: a reload keeps them when this is unchanged.
    store_fingerprint: [u8; 32],
    /// OpenTelemetry spans; off unless `otlp_endpoint` is set (kept
    /// across reloads while `otlp` is unchanged).
    pub tracing: Arc<crate::telemetry::otel::Tracing>,
    /// Where the hooks record metrics (a no-op when metrics are off).
    pub metrics: crate::metrics::Recorder,
}

/// The process's state that outlives every reload.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// Set at SIGTERM: `/ready` answers 503 from then on.
    draining: AtomicBool,
    /// The open WebSocket tunnels.
    pub tunnels: Arc<Tunnels>,
}

impl Lifecycle {
    /// Whether gatehouse is shutting down.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks gatehouse as shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// What a reload kept from the running state (for the log).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Ids of the providers whose discovery was reused.
    pub providers: Vec<String>,
    /// Ids of the providers to be discovered anew (new or changed).
    pub rediscover: Vec<String>,
    /// The session store connection, revocations and replay guards.
    pub store: bool,
    /// The login rate limiter and its counts.
    pub login_limiter: bool,
}

impl AppState {
    /// The gate's decision for a request's headers on `route`.
    pub async fn decide(
        &self,
        headers: &http::HeaderMap,
        route: &crate::routes::Route,
    ) -> crate::auth::Decided {
        // one span for every endpoint that decides: the proxy and the three
        // forward-auth endpoints
        let span = crate::telemetry::otel::Child::start(
            self.tracing.enabled(),
            "auth decision",
            opentelemetry::trace::SpanKind::Internal,
        );
        // a bearer token where tokens are accepted decides alone
        let decided = if let Some(token) = self.bearer.token(headers, route) {
            let decision = self.bearer.decide(&self.config, token, route).await;
            self.metrics.decision(&decision, true);
            crate::auth::Decided {
                decision,
                set_cookies: Vec::new(),
            }
        } else {
            let decided = self
                .gate
                .decide(&self.config, &self.provider, headers, route)
                .await;
            self.metrics.decision(&decided.decision, false);
            decided
        };
        span.set("gatehouse.decision", decision_name(&decided.decision));
        span.end();
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
        Self::build(config, None, metrics).map(|(state, _carried)| state)
    }

    /// Builds the state for a reload to `config`, keeping from `old` what
    /// must survive: discovered providers whose settings are unchanged, the
    /// Redis connection, revocations and replay guards while their settings
    /// are unchanged, the login rate limiter while its limit is, and always
    /// the draining flag, the open tunnels and the metrics. No network is
    /// touched here; the providers not carried over are to be discovered by
    /// the caller.
    pub fn reloaded(config: Config, old: &Self) -> Result<(Self, Carried), StartupError> {
        let metrics = old.metrics.metrics().cloned();
        Self::build(config, Some(old), metrics.as_ref())
    }

    fn build(
        config: Config,
        old: Option<&Self>,
        metrics: Option<&Arc<crate::metrics::Metrics>>,
    ) -> Result<(Self, Carried), StartupError> {
        let mut carried = Carried::default();
        let recorder = metrics.map(|m| m.recorder(&config)).unwrap_or_default();
        let codec = Arc::new(
            CookieCodec::new(
                &config.cookie.secrets,
                &config.provider.issuer,
                &config.client_id,
            )
            .map_err(|e| StartupError::Cookie(e.to_string()))?,
        );
        let idp_http = match old {
            Some(old) => old.idp_http.clone(),
            None => IdpHttp::new(Duration::from_secs(10)).map_err(StartupError::Tls)?,
        }
        .with_metrics(recorder.clone());
        let cookie_name = config.cookie.name.clone();
        let upstreams = Upstreams::new(
            &config,
            Arc::new(move |n: &str| crate::auth::session::is_own_cookie(n, &cookie_name)),
        )
        .map_err(StartupError::Tls)?;
        let prefix = key_prefix(&config.provider.issuer, &config.client_id);
        // revocations must outlive every session they can hit
        let retention = config.cookie.expire + Duration::from_secs(60);
        let store_fingerprint = store_fingerprint(&config, &prefix, retention);
        let kept = old.filter(|o| o.store_fingerprint == store_fingerprint);
        carried.store = kept.is_some();
        let redis = match kept {
            Some(old) => old.redis.clone(),
            None => config
                .session_store
                .redis
                .as_ref()
                .map(RedisConn::new)
                .transpose()
                .map_err(StartupError::Redis)?,
        };
        let revocations = match kept {
            Some(old) => old.revocations(),
            None => Arc::new(match &redis {
                Some(conn) => {
                    Revocations::shared(conn.clone(), format!("{prefix}revocations"), retention)
                }
                None => Revocations::local(),
            }),
        };
        // rebuilt for the same deployment: sign-outs known or queued (Redis
        // down) before the reload still hold
        if let Some(old) = old.filter(|o| {
            kept.is_none() && key_prefix(&o.config.provider.issuer, &o.config.client_id) == prefix
        }) {
            revocations.take_over(&old.revocations());
        }
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
        let (logout_replays, login_states) = match kept {
            Some(old) => (old.logout_replays.clone(), old.login_states.clone()),
            None => (
                Arc::new(OnceGuard::new(redis.clone(), &prefix, "jti", JTI_TTL)),
                // a state is acceptable for LOGIN_TTL_SECS: remember it a little longer
                Arc::new(OnceGuard::new(
                    redis.clone(),
                    &prefix,
                    "state",
                    Duration::from_secs(LOGIN_TTL_SECS + 60),
                )),
            ),
        };
        let refresh = config.cookie.refresh;
        let login_limiter = match old {
            Some(old) if old.config.limits.login_rate_limit == config.limits.login_rate_limit => {
                carried.login_limiter = true;
                old.login_limiter.clone()
            }
            _ => Arc::new(crate::limits::LoginRateLimiter::new(
                config.limits.login_rate_limit,
                crate::limits::LOGIN_LIMITER_CAPACITY,
            )),
        };
        let bearer = BearerAuth::new(&config, idp_http.clone());
        let provider = Providers::new(config.providers.len());
        for (i, entry) in config.providers.iter().enumerate() {
            let found = old.and_then(|old| {
                let j = old.config.providers.iter().position(|e| e.id == entry.id)?;
                same_provider(&old.config, j, &config, i)
                    .then(|| old.provider.at(j))
                    .flatten()
            });
            match found {
                Some(p) => {
                    provider.adopt(i, p);
                    carried.providers.push(entry.id.clone());
                }
                None => carried.rediscover.push(entry.id.clone()),
            }
        }
        let tracing = match old {
            Some(old) if old.config.otlp == config.otlp => old.tracing.clone(),
            _ => Arc::new(
                crate::telemetry::otel::Tracing::new(config.otlp.as_ref())
                    .map_err(StartupError::Tracing)?,
            ),
        };
        let lifecycle = old.map(|o| o.lifecycle.clone()).unwrap_or_default();
        let upstreams = upstreams.with_tunnels(lifecycle.tunnels.clone());
        Ok((
            Self {
                bearer,
                tracing,
                login_limiter,
                config: Arc::new(config),
                gate: match old {
                    Some(old) => {
                        Gate::new(codec, store, shared_refresh, refresh).reloading(&old.gate)
                    }
                    None => Gate::new(codec, store, shared_refresh, refresh),
                },
                provider,
                idp_http,
                upstreams,
                logout_replays,
                login_states,
                lifecycle,
                redis,
                store_fingerprint,
                metrics: recorder,
            },
            carried,
        ))
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

/// What the Redis connection, the key prefix and the revocations' retention
/// are built from, hashed (the password included, so a new one reconnects).
fn store_fingerprint(config: &Config, prefix: &str, retention: Duration) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    if let Some(redis) = &config.session_store.redis {
        ctx.update(format!("{:?}", redis.topology).as_bytes());
        ctx.update(&[0]);
        if let Some(password) = &redis.password {
            ctx.update(password.expose().as_bytes());
        }
        ctx.update(&[0]);
        // without Redis, the revocations are in memory whatever the
        // retention: keep them
        ctx.update(&retention.as_millis().to_be_bytes());
    }
    ctx.update(&[1]);
    ctx.update(prefix.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Whether what discovery of provider `j` of `old` was built from (its
/// settings, client id and secret, the claim headers) is unchanged as
/// provider `i` of `new`: then its discovered metadata and keys are reused.
fn same_provider(old: &Config, j: usize, new: &Config, i: usize) -> bool {
    let (Some(a), Some(b)) = (old.providers.get(j), new.providers.get(i)) else {
        return false;
    };
    let secret =
        |e: &crate::config::ProviderEntry| e.client_secret.as_ref().map(|s| s.expose().to_owned());
    format!("{:?}", a.provider) == format!("{:?}", b.provider)
        && a.client_id == b.client_id
        && secret(a) == secret(b)
        && format!("{:?}", old.claim_headers) == format!("{:?}", new.claim_headers)
}

/// The decision's name on the auth decision span.
fn decision_name(d: &crate::auth::Decision) -> &'static str {
    use crate::auth::Decision;
    match d {
        Decision::Allow(_) => "allow",
        Decision::Challenge => "challenge",
        Decision::Deny(..) => "deny",
        Decision::InvalidToken => "invalid_token",
        Decision::StepUp(..) => "step_up",
        Decision::Unavailable(_) => "unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
upstream = "http://127.0.0.1:9"
oidc_issuer_url = "http://127.0.0.1:9"
client_id = "gatehouse"
client_secret = "super-secret-value"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
cookie_secure = false
email_domain = "*"
"#;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(&format!("{BASE}{extra}")).unwrap()
    }

    #[tokio::test]
    async fn a_reload_keeps_replay_guards_revocations_and_the_limiter_while_their_settings_hold() {
        let old = AppState::new(config("")).unwrap();
        let (new, carried) =
            AppState::reloaded(config("pass_access_token = true\n"), &old).unwrap();
        assert!(carried.store && carried.login_limiter, "{carried:?}");
        assert!(Arc::ptr_eq(&old.login_states, &new.login_states));
        assert!(Arc::ptr_eq(&old.logout_replays, &new.logout_replays));
        assert!(Arc::ptr_eq(&old.revocations(), &new.revocations()));
        assert!(Arc::ptr_eq(&old.login_limiter, &new.login_limiter));
        assert!(Arc::ptr_eq(&old.lifecycle, &new.lifecycle));
        assert_eq!(
            carried.rediscover,
            ["default"],
            "never discovered: nothing to keep"
        );

        // another client id: another key prefix, so all anew (but the
        // process's lifecycle)
        let other = BASE.replace("client_id = \"gatehouse\"", "client_id = \"other\"");
        let limit = "login_rate_limit_burst = 3\n";
        let (newer, carried) = AppState::reloaded(
            Config::from_toml_str(&format!("{other}{limit}")).unwrap(),
            &new,
        )
        .unwrap();
        assert!(!carried.store && !carried.login_limiter, "{carried:?}");
        assert!(!Arc::ptr_eq(&new.login_states, &newer.login_states));
        assert!(!Arc::ptr_eq(&new.logout_replays, &newer.logout_replays));
        assert!(!Arc::ptr_eq(&new.revocations(), &newer.revocations()));
        assert!(!Arc::ptr_eq(&new.login_limiter, &newer.login_limiter));
        assert!(Arc::ptr_eq(&new.lifecycle, &newer.lifecycle));
    }

    // review of issue 12, finding 3: a reload that rebuilt the revocations
    // (here: another cookie_expire, so another retention) lost the sign-outs
    // known or queued during a Redis outage
    #[tokio::test]
    async fn a_reload_that_rebuilds_the_revocations_keeps_what_the_old_ones_knew() {
        use crate::auth::session::SessionId;
        use crate::auth::session::revocations::Revocation;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let redis = format!("redis_connection_url = \"redis://127.0.0.1:{port}/\"\n");
        let old = AppState::new(config(&redis)).unwrap();
        let id = SessionId::from_bytes([7; 16]);
        let until = crate::auth::session::now_secs() + 3600;
        let queued = old
            .revocations()
            .revoke(Revocation::Session { id, until })
            .await;
        assert!(queued.is_err(), "Redis is down: the sign-out is queued");

        let (new, carried) =
            AppState::reloaded(config(&format!("{redis}cookie_expire = \"2h\"\n")), &old).unwrap();
        assert!(!carried.store, "rebuilt: {carried:?}");
        assert!(!Arc::ptr_eq(&old.revocations(), &new.revocations()));
        let s = crate::auth::session::Session {
            id,
            provider_sid: None,
            provider: None,
            issuer: "http://127.0.0.1:9".into(),
            issued_at_ms: 1,
            identity: crate::auth::identity::Identity::default(),
            secret: None,
        };
        assert!(new.revocations().is_revoked(&s), "the sign-out still holds");

        // another deployment (client id): nothing of the old one applies
        let other = BASE.replace("client_id = \"gatehouse\"", "client_id = \"other\"");
        let (newer, _) = AppState::reloaded(
            Config::from_toml_str(&format!("{other}{redis}")).unwrap(),
            &new,
        )
        .unwrap();
        assert!(!newer.revocations().is_revoked(&s));
    }

    #[test]
    fn a_provider_is_the_same_only_while_everything_its_discovery_used_is() {
        let base = config("");
        for (what, changed, same) in [
            (
                "another setting",
                config("pass_access_token = true\n"),
                true,
            ),
            ("scope", config("scope = \"openid email\"\n"), false),
            (
                "client secret",
                Config::from_toml_str(&BASE.replace("super-secret-value", "another-secret-value"))
                    .unwrap(),
                false,
            ),
            (
                "claim header",
                config("claim_header = [\"X-Team=team\"]\n"),
                false,
            ),
        ] {
            assert_eq!(same_provider(&base, 0, &changed, 0), same, "{what}");
        }
    }
}
