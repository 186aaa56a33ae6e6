//! Sessions that end when they should (issue 8), against real `redis-server`
//! processes on ephemeral loopback ports (`support::redis`) and gatehouse in
//! process (`support::proxy`).
//!
//! - [`harness`]: the Redis harness itself: a standalone server answers,
//!   a Sentinel failover promotes the replica, a Cluster serves every slot.
//! - [`replicas`]: two gatehouse instances sharing one Redis, with each
//!   store type: a sign-out on one is refused by the other within 1 s, in
//!   proxy mode, at `/oauth2/auth` and at `/oauth2/forward-auth`.
//! - [`redis_store`]: the Redis store's cookie is a small ticket, its
//!   sessions survive a gatehouse restart, a Redis dump reveals nothing, and
//!   `redis_password` / `redis_password_file` work (a wrong one lets
//!   nothing through).
//! - [`topologies`]: sessions through Sentinel survive a failover; sessions
//!   through a Cluster work and spread over its masters; sign-outs cross
//!   replicas through both (after a failover, too).
//! - [`contract`]: the store contract, one suite run against the cookie
//!   store (alone and sharing revocations through Redis) and the Redis store.
//! - [`revocation`]: sign-out and back-channel logout revoke sessions
//!   server-side, with no Redis at all; hostile logout tokens revoke nothing.
//! - [`refresh_race`]: two replicas redeem a rotating refresh token once.
//! - [`cookie_names`]: the session cookie is `__Host-` by default; a
//!   duplicated one, or a whole one beside chunks, is no session.
//! - [`tunnels`]: a WebSocket closes when its session ends (sign-out,
//!   back-channel logout, another replica, expiry) and not before.
//! - [`outage`]: Redis stopped and started again under load, or frozen:
//!   closed while it is away, answers in bounded time, recovered without a
//!   restart, nobody signed out; a sign-out made during an outage reaches
//!   the other replica when Redis is back.
//!
//! A missing `redis-server`/`redis-cli` skips these tests with one loud line
//! saying how to install them; under `GATEHOUSE_REQUIRE_E2E=1` (CI) it fails
//! them.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod contract;
mod cookie_names;
mod harness;
mod outage;
mod redis_store;
mod refresh_race;
mod replicas;
mod revocation;
mod topologies;
mod tunnels;

use std::time::Duration;

use http::{Method, StatusCode};
use support::client::TestClient;
use support::idp::{IdpOptions, MockIdp};
use support::proxy::{ProxyBuilder, TestProxy};
use support::redis::{RedisCluster, RedisSentinel, RedisServer};
use support::upstream::Recorder;

/// The session cookie's name (longer sessions are split into `<name>_0`,
/// `<name>_1`, ...).
pub const COOKIE: &str = crate::support::SESSION_COOKIE;

/// Where sessions live (`session_store_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Cookie,
    Redis,
}

impl Store {
    pub fn setting(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Redis => "redis",
        }
    }
}

/// Which Redis gatehouse talks to, and how.
#[derive(Clone, Copy)]
pub enum Backend<'a> {
    Standalone(&'a RedisServer),
    Sentinel(&'a RedisSentinel),
    Cluster(&'a RedisCluster),
}

/// The mock provider (signing in `alice` without asking) and the upstream,
/// shared by every gatehouse instance of a test.
pub struct World {
    pub idp: MockIdp,
    pub upstream: Recorder,
}

impl World {
    pub async fn start() -> Self {
        Self {
            idp: MockIdp::start(IdpOptions::auto_approving("alice")).await,
            upstream: Recorder::start().await,
        }
    }

    /// A gatehouse config with `store`, talking to `backend`.
    pub fn builder(&self, store: Store, backend: Backend<'_>) -> ProxyBuilder {
        let b = TestProxy::builder(&self.idp, &self.upstream)
            .set("session_store_type", store.setting());
        with_redis(b, backend)
    }

    /// A started gatehouse instance with `store`, talking to `backend`.
    pub async fn gatehouse(&self, store: Store, backend: Backend<'_>) -> TestProxy {
        self.builder(store, backend).start().await
    }
}

/// `builder` with the Redis settings for `backend`.
pub fn with_redis(b: ProxyBuilder, backend: Backend<'_>) -> ProxyBuilder {
    let list = |urls: Vec<String>| -> toml::Value {
        urls.into_iter()
            .map(toml::Value::from)
            .collect::<Vec<_>>()
            .into()
    };
    match backend {
        Backend::Standalone(redis) => {
            let b = b.set("redis_connection_url", redis.url());
            match redis.password() {
                Some(pw) => b.set("redis_password", pw),
                None => b,
            }
        }
        Backend::Sentinel(set) => b
            .set("redis_use_sentinel", true)
            .set("redis_sentinel_master_name", set.master_name())
            .set(
                "redis_sentinel_connection_urls",
                list(vec![set.sentinel_url()]),
            ),
        Backend::Cluster(cluster) => b
            .set("redis_use_cluster", true)
            .set("redis_cluster_connection_urls", list(cluster.urls())),
    }
}

/// Whether `name` is a session cookie (not a CSRF cookie).
pub fn is_session_cookie(name: &str) -> bool {
    name == COOKIE
        || name
            .strip_prefix(COOKIE)
            .and_then(|rest| rest.strip_prefix('_'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The session cookie(s) in `client`'s jar, as a `Cookie` header value, to
/// replay later (as a thief or another replica's user would).
pub fn session_cookie(client: &TestClient) -> String {
    let pairs: Vec<String> = client
        .cookies_for("127.0.0.1")
        .into_iter()
        .filter(|(name, _)| is_session_cookie(name))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    assert!(!pairs.is_empty(), "no session cookie in the jar");
    pairs.join("; ")
}

/// The three ways a request meets a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// Reverse-proxy mode: `GET /` is proxied to the upstream.
    Proxy,
    /// nginx `auth_request`: `GET /oauth2/auth`.
    Auth,
    /// Traefik / Caddy: `GET /oauth2/forward-auth`.
    ForwardAuth,
}

pub const VIAS: [Via; 3] = [Via::Proxy, Via::Auth, Via::ForwardAuth];

impl Via {
    pub fn path(self) -> &'static str {
        match self {
            Self::Proxy => "/",
            Self::Auth => "/oauth2/auth",
            Self::ForwardAuth => "/oauth2/forward-auth",
        }
    }
}

/// The status `proxy` answers an API client (`Accept: application/json`)
/// that sends `cookie` (none when empty) through `via`. The request must be
/// answered within 5 s.
pub async fn status(proxy: &TestProxy, via: Via, cookie: &str) -> StatusCode {
    let client = TestClient::new().with_timeout(Duration::from_secs(5));
    let mut headers = vec![("accept", "application/json")];
    if !cookie.is_empty() {
        headers.push(("cookie", cookie));
    }
    client
        .request(Method::GET, &proxy.url(via.path()), &headers, None)
        .await
        .status
}

/// Asserts `cookie` is allowed through every [`Via`] of `proxy`.
pub async fn assert_allowed_everywhere(proxy: &TestProxy, cookie: &str, what: &str) {
    for via in VIAS {
        let s = status(proxy, via, cookie).await;
        assert!(s.is_success(), "{what}: {via:?} answered {s}, expected 2xx");
    }
}

/// Asserts `cookie` is refused (401) through every [`Via`] of `proxy`.
pub async fn assert_refused_everywhere(proxy: &TestProxy, cookie: &str, what: &str) {
    for via in VIAS {
        let s = status(proxy, via, cookie).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {via:?}");
    }
}

/// A new browser signed in at `proxy` (as `alice`); returns it and its
/// session cookie header.
pub async fn signed_in(proxy: &TestProxy) -> (TestClient, String) {
    let client = TestClient::new();
    support::proxy::login(&client, proxy, "/").await;
    let cookie = session_cookie(&client);
    (client, cookie)
}

/// Signs `client` out at `proxy` (`GET /oauth2/sign_out`, which redirects).
pub async fn sign_out(client: &TestClient, proxy: &TestProxy) {
    let out = client.get(&proxy.url("/oauth2/sign_out")).await;
    assert!(
        out.status.is_redirection(),
        "sign-out answered {}: {}",
        out.status,
        out.text()
    );
}
