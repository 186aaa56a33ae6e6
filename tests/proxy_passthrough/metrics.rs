//! Prometheus metrics over real HTTP: `/metrics` on the `metrics_address`
//! listener, scraped and parsed after real traffic (a signed-in GET proxied,
//! a 403, a challenge, a login through the mock provider, a refused bearer
//! token, a forward-auth deny); never served on the public listener; hostile
//! paths add no series; a bad `metrics_address` fails the start naming it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::{Method, StatusCode};

use crate::support::ROUTES_OF_EACH_KIND;
use crate::support::client::{ACCEPT_HTML, TestClient};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login_as};
use crate::support::upstream::Recorder;

/// Metrics on; bearer tokens taken everywhere; the test client a trusted
/// front proxy (for forward auth's `X-Forwarded-Uri`).
const METRICS_ON: &str = r#"
metrics_address = "127.0.0.1:0"
skip_jwt_bearer_tokens = true
trusted_proxy = ["127.0.0.1/32"]
"#;

struct Metered {
    _idp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
    metrics: SocketAddr,
}

async fn metered() -> Metered {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let toml = format!("{METRICS_ON}{ROUTES_OF_EACH_KIND}");
    let proxy = TestProxy::start(&toml, &idp, &upstream).await;
    let metrics = proxy
        .server()
        .metrics_addr()
        .expect("metrics_address is set: the metrics listener runs");
    assert_ne!(metrics.port(), proxy.addr().port());
    Metered {
        _idp: idp,
        upstream,
        proxy,
        metrics,
    }
}

/// `GET /metrics` on the metrics listener: `series -> value`, every sample
/// line parsed (a line that does not parse fails the test).
async fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let resp = TestClient::new()
        .get(&format!("http://{addr}/metrics"))
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&resp.text())
}

fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        assert!(
            out.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    out
}

/// How much `series` moved from `before` to `after` (absent counts as 0).
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_real_traffic_a_login_a_proxied_get_a_challenge_a_403_a_bad_token_and_a_forward_auth_deny()
 {
    let m = metered().await;
    let before = scrape(m.metrics).await;
    let delta = |after: &BTreeMap<String, f64>, series: &str| moved(&before, after, series);

    // a browser not signed in is challenged (a redirect to sign in)
    let anon = TestClient::new();
    let resp = anon
        .get_with(&m.proxy.url("/"), &[("accept", ACCEPT_HTML)])
        .await;
    assert_eq!(resp.status, StatusCode::FOUND);
    // a login through the mock provider
    let bob = TestClient::new();
    login_as(&bob, &m.proxy, "/", "bob").await;
    m.upstream.clear();
    // a signed-in GET, proxied
    let resp = bob.get(&m.proxy.url("/hello")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(m.upstream.count(), 1);
    // a 403: bob is not in the admins group the route asks for
    let resp = bob.get(&m.proxy.url("/groups")).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    // a bearer token that does not verify
    let resp = anon
        .get_with(
            &m.proxy.url("/hello"),
            &[("authorization", "Bearer not.a.token")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    // forward auth refusing bob the same route
    let resp = bob
        .get_with(
            &m.proxy.url("/oauth2/auth"),
            &[
                ("x-forwarded-uri", "/groups"),
                ("x-forwarded-method", "GET"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());

    let after = scrape(m.metrics).await;
    let req = |route: &str, method: &str, status: &str| {
        format!(
            r#"gatehouse_requests_total{{route="{route}",method="{method}",status="{status}"}}"#
        )
    };
    let decision = |d: &str, reason: &str| {
        format!(r#"gatehouse_auth_decisions_total{{decision="{d}",reason="{reason}"}}"#)
    };
    // the challenge, and the login's own first hop, on the default route
    assert_eq!(delta(&after, &req("default", "GET", "3xx")), 2.0);
    // the proxied GET
    assert_eq!(delta(&after, &req("default", "GET", "2xx")), 1.0);
    // the 403, and forward auth's: counted on the route it decided
    assert_eq!(delta(&after, &req("routes[4]", "GET", "4xx")), 2.0);
    assert_eq!(delta(&after, &req("default", "GET", "4xx")), 1.0);
    // the callback is gatehouse's own endpoint: no route
    assert_eq!(delta(&after, &req("none", "GET", "3xx")), 1.0);
    assert_eq!(delta(&after, &decision("challenge", "no_session")), 2.0);
    assert_eq!(delta(&after, &decision("allow", "session")), 1.0);
    // a route's allow lists refuse as the route
    assert_eq!(delta(&after, &decision("deny", "route")), 2.0);
    assert_eq!(delta(&after, &decision("deny", "invalid_token")), 1.0);
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_upstream_duration_seconds_count{route="default"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_request_duration_seconds_count{route="default"}"#
        ),
        4.0
    );
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_logins_started_total{provider="default"}"#
        ),
        // the anonymous browser was sent to the provider too
        2.0
    );
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_logins_completed_total{provider="default"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_provider_calls_total{provider="default",call="token",outcome="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            r#"gatehouse_session_store_operations_total{store="cookie",op="save"}"#
        ),
        1.0
    );
    assert!(
        delta(
            &after,
            r#"gatehouse_session_store_operations_total{store="cookie",op="load"}"#
        ) >= 3.0
    );
    // discovery and the keys were fetched before the first scrape
    assert!(
        after
            .get(r#"gatehouse_provider_calls_total{provider="default",call="discovery",outcome="ok"}"#)
            .is_some_and(|v| *v >= 1.0),
        "{after:#?}"
    );
    assert!(after["gatehouse_open_connections"] >= 1.0);
    let version = format!(
        r#"gatehouse_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(after.get(&version), Some(&1.0));
}

#[tokio::test]
async fn sign_out_is_counted_as_a_revocation() {
    let m = metered().await;
    let bob = TestClient::new();
    login_as(&bob, &m.proxy, "/", "bob").await;
    let before = scrape(m.metrics).await;
    let resp = bob.get(&m.proxy.url("/oauth2/sign_out")).await;
    assert!(resp.status.is_redirection(), "{}", resp.status);
    let after = scrape(m.metrics).await;
    assert_eq!(
        moved(
            &before,
            &after,
            r#"gatehouse_revocations_total{source="sign_out"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_callback_with_a_forged_state_counts_as_a_failed_login() {
    let m = metered().await;
    let before = scrape(m.metrics).await;
    let resp = TestClient::new()
        .get(&m.proxy.url("/oauth2/callback?state=forged&code=whatever"))
        .await;
    assert!(resp.status.is_client_error(), "{}", resp.status);
    let after = scrape(m.metrics).await;
    assert_eq!(
        moved(
            &before,
            &after,
            r#"gatehouse_logins_failed_total{provider="unknown",reason="state"}"#
        ),
        1.0
    );
    assert_eq!(
        moved(
            &before,
            &after,
            r#"gatehouse_logins_completed_total{provider="default"}"#
        ),
        0.0
    );
}

#[tokio::test]
async fn the_public_listener_does_not_serve_metrics() {
    let m = metered().await;
    // not signed in: /metrics is a path like any other, behind sign-in
    let anon = TestClient::new();
    let resp = anon.get_api(&m.proxy.url("/metrics")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert!(!resp.text().contains("gatehouse_"));
    // signed in, it goes to the upstream
    let bob = TestClient::new();
    login_as(&bob, &m.proxy, "/", "bob").await;
    m.upstream.clear();
    let resp = bob.get(&m.proxy.url("/metrics")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(!resp.text().contains("gatehouse_requests_total"));
    assert_eq!(m.upstream.last().unwrap().uri.path(), "/metrics");
    // and the metrics listener serves nothing else, and only GET
    let client = TestClient::new();
    let other = client.get(&format!("http://{}/", m.metrics)).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let post = client
        .request(
            Method::POST,
            &format!("http://{}/metrics", m.metrics),
            &[],
            None,
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_thousand_hostile_paths_add_no_series() {
    let m = metered().await;
    let anon = TestClient::new();
    let bob = TestClient::new();
    login_as(&bob, &m.proxy, "/", "bob").await;
    // one request of each kind first, so every series a path can touch exists
    for client in [&anon, &bob] {
        client.get(&m.proxy.url("/warm")).await;
        client.get(&m.proxy.url("/oauth2/nope")).await;
        client.get(&m.proxy.url("/a/../b")).await;
    }
    let before = scrape(m.metrics).await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"abcXYZ019-._~%/;:@!$&'()*+,=";
    let mut tokens = Vec::new();
    for i in 0..1000 {
        let len = 1 + (next() % 40) as usize;
        let tail: String = (0..len)
            .map(|_| char::from(alphabet[(next() % alphabet.len() as u64) as usize]))
            .collect();
        let token = format!("h{i}q{}", next() % 100_000);
        let path = match i % 4 {
            0 => format!("/{token}/{tail}"),
            1 => format!("/oauth2/{token}{tail}"),
            2 => format!("/groups/{token}?{tail}"),
            _ => format!("/{token}%2f..%2f{tail}"),
        };
        let client = if i % 2 == 0 { &anon } else { &bob };
        // an unparseable target is the client's problem, not the test's
        if let Ok(uri) = path.parse::<http::Uri>() {
            client.get(&m.proxy.url(&uri.to_string())).await;
        }
        tokens.push(token);
    }
    let after = scrape(m.metrics).await;
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(new.is_empty(), "hostile paths created series: {new:#?}");
    assert_eq!(before.len(), after.len());
    let text = TestClient::new()
        .get(&format!("http://{}/metrics", m.metrics))
        .await
        .text();
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "{t} appears in the metrics");
    }
}

#[tokio::test]
async fn a_bad_metrics_address_fails_at_start_naming_the_key() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    for (value, why) in [
        ("nope", "is not host:port"),
        ("localhost:9090", "is not host:port"),
        ("127.0.0.1:99999", "is not host:port"),
    ] {
        let toml = TestProxy::builder(&idp, &upstream)
            .set("metrics_address", value)
            .render(4180);
        let err = gatehouse::Config::from_toml_str(&toml)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics_address"), "{value}: {err}");
        assert!(err.contains(why), "{value}: {err}");
    }
    // the public address itself: refused, metrics never go there
    let toml = TestProxy::builder(&idp, &upstream)
        .set("metrics_address", "127.0.0.1:4180")
        .render(4180);
    let err = gatehouse::Config::from_toml_str(&toml)
        .unwrap_err()
        .to_string();
    assert!(err.contains("metrics_address"), "{err}");
    assert!(err.contains("http_address"), "{err}");
    // an address already taken fails the start, naming the key
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = TestProxy::builder(&idp, &upstream)
        .set("metrics_address", addr.as_str())
        .no_wait()
        .try_start()
        .await
        .err()
        .expect("a taken metrics_address must fail the start");
    let err = err.to_string();
    assert!(err.contains("metrics_address"), "{err}");
    assert!(err.contains(&addr), "{err}");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    assert!(proxy.server().metrics_addr().is_none());
    assert!(proxy.server().metrics().is_none());
}

#[tokio::test]
async fn a_refused_and_an_applied_reload_are_each_counted() {
    let m = metered().await;
    let before = scrape(m.metrics).await;
    let broken = gatehouse::Config::from_toml_str(&format!(
        "{}\ncookie_expire = \"forever\"\n",
        m.proxy.config_toml()
    ));
    assert!(matches!(
        m.proxy.server().reload(broken),
        gatehouse::server::ReloadOutcome::Refused { .. }
    ));
    let same = gatehouse::Config::from_toml_str(m.proxy.config_toml());
    assert!(matches!(
        m.proxy.server().reload(same),
        gatehouse::server::ReloadOutcome::Applied { .. }
    ));
    let after = scrape(m.metrics).await;
    let failure = r#"gatehouse_config_reloads_total{result="failure"}"#;
    let success = r#"gatehouse_config_reloads_total{result="success"}"#;
    assert_eq!(moved(&before, &after, failure), 1.0, "{after:#?}");
    assert_eq!(moved(&before, &after, success), 1.0, "{after:#?}");
    m.proxy.shutdown().await;
}
