//! The fault suite (issue 9): the provider answering garbage or huge
//! bodies, the JWKS down when a new key appears, the upstream refusing
//! connections or too slow; and a provider whose discovery advertises
//! plain-http endpoints off loopback (issue 9, item 2).
//!
//! Each case checks what the browser gets (a status and a page a person
//! understands: no raw parser error, no provider URL), what `/oauth2/auth`
//! gets (never a 2xx for a request the working part would not allow), and
//! that gatehouse recovers once the fault ends, without a restart.
//!
//! Already covered elsewhere, so not repeated here: the provider
//! unreachable or slower than the provider timeout during sign-in and
//! refresh (`provider_outage.rs`), and Redis down, frozen or back
//! (`tests/sessions/outage.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::support::client::{TestClient, TestResponse};
use crate::support::idp::{Endpoint, Fault, IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, authorize_at_idp, login, start_login};
use crate::support::upstream::Recorder;

/// Past gatehouse's 1 MiB cap on a provider answer.
const HUGE: usize = 4 * 1024 * 1024;

/// Answers no relying party can use, by name.
fn garbage() -> [(&'static str, Fault); 4] {
    [
        (
            "invalid JSON",
            Fault::Garbage {
                content_type: "application/json",
                body: "{\"issuer\": \"http://x\", \"keys\": [",
            },
        ),
        (
            "an HTML error page",
            Fault::Garbage {
                content_type: "text/html",
                body: "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
            },
        ),
        (
            "the wrong content type",
            Fault::Garbage {
                content_type: "text/plain",
                body: "issuer=http://x&keys=none",
            },
        ),
        ("a body over the 1 MiB cap", Fault::Huge(HUGE)),
    ]
}

/// Asserts `resp` is a page a person can read, with one of `statuses`:
/// HTML, one of `sentences`, and none of the raw failure (parser errors,
/// the provider's body or address, a panic or a debug dump), and no session.
fn assert_clear_page(resp: &TestResponse, statuses: &[StatusCode], sentences: &[&str], what: &str) {
    let body = resp.text();
    assert!(
        statuses.contains(&resp.status),
        "{what}: {}: {body}",
        resp.status
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{what}: {:?}",
        resp.header("content-type")
    );
    assert!(sentences.iter().any(|s| body.contains(s)), "{what}: {body}");
    for raw in [
        "line 1 column",
        "expected",
        "EOF",
        "nginx",
        "xxxxxxxx",
        "idp.test",
        "127.0.0.1:",
        "panicked",
        "Error {",
        "Transport(",
        "hyper",
    ] {
        assert!(
            !body.contains(raw),
            "{what}: the page shows {raw:?}: {body}"
        );
    }
    assert!(
        resp.set_cookie(crate::support::SESSION_COOKIE).is_none(),
        "{what}: a session cookie was set"
    );
}

/// Waits until `count()` (a mock provider's counter) passes `before` (up to
/// 5 s), then a little for gatehouse to take the answer in.
async fn until_fetched(count: impl Fn() -> usize, before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count() <= before {
        assert!(Instant::now() < deadline, "{what}: never fetched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Polls `/ready` until 200 (up to `within`).
async fn until_ready(proxy: &TestProxy, within: Duration, what: &str) {
    let client = TestClient::new();
    let deadline = Instant::now() + within;
    loop {
        let status = client.get(&proxy.url("/ready")).await.status;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not ready again after {within:?} ({status})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A browser with no session, while discovery fails: a 503 page, `/ready`
/// 503, `/oauth2/start` 503 without going to the provider, `/oauth2/auth`
/// 401.
async fn assert_not_ready(proxy: &TestProxy, idp: &MockIdp, what: &str) {
    assert_unready_as(proxy, idp, what, Verdict::TryLater).await;
}

/// What the sign-in page says while discovery fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The provider cannot be reached: 503, try again later.
    TryLater,
    /// The issuer URL is wrong (issue 11): 502, misconfigured, contact the
    /// administrator with the reference, no retry link.
    Misconfigured,
}

/// [`assert_not_ready`] with the page's verdict.
async fn assert_unready_as(proxy: &TestProxy, idp: &MockIdp, what: &str, verdict: Verdict) {
    let client = TestClient::new();
    let ready = client.get(&proxy.url("/ready")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
    for path in ["/page", "/oauth2/start?rd=/page"] {
        let resp = client.get(&proxy.url(path)).await;
        let what = format!("{what}: {path}");
        match verdict {
            Verdict::TryLater => {
                assert_clear_page(
                    &resp,
                    &[StatusCode::SERVICE_UNAVAILABLE],
                    &["The identity provider cannot be reached"],
                    &what,
                );
                assert!(resp.text().contains("try again"), "{what}: {}", resp.text());
            }
            Verdict::Misconfigured => {
                assert_clear_page(
                    &resp,
                    &[StatusCode::BAD_GATEWAY],
                    &["configuration problem"],
                    &what,
                );
                let body = resp.text();
                assert!(body.contains("contact the administrator"), "{what}: {body}");
                assert!(body.contains("Reference"), "{what}: {body}");
                assert!(!body.contains("/oauth2/start"), "{what}: {body}");
                assert!(
                    !body.to_lowercase().contains("try again in"),
                    "{what}: {body}"
                );
            }
        }
    }
    let auth = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(
        auth.status,
        StatusCode::UNAUTHORIZED,
        "{what}: /oauth2/auth"
    );
    assert!(
        idp.authorize_requests().is_empty(),
        "{what}: sent to the provider"
    );
}

#[tokio::test]
async fn discovery_or_jwks_answering_garbage_keeps_gatehouse_unready_and_it_recovers() {
    let mut cases: Vec<(Endpoint, &str, Fault)> = garbage()
        .into_iter()
        .map(|(name, f)| (Endpoint::Discovery, name, f))
        .collect();
    cases.extend(
        garbage()
            .into_iter()
            .map(|(name, f)| (Endpoint::Jwks, name, f)),
    );
    for (endpoint, name, fault) in cases {
        let what = format!("{endpoint:?} answering {name}");
        let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
        idp.set_knobs(|k| k.faults = vec![(endpoint, fault.clone())]);
        let upstream = Recorder::start().await;
        let proxy = TestProxy::builder(&idp, &upstream).no_wait().start().await;
        match endpoint {
            Endpoint::Discovery => until_fetched(|| idp.discovery_fetches(), 0, &what).await,
            _ => until_fetched(|| idp.jwks_fetches(), 0, &what).await,
        }
        assert_not_ready(&proxy, &idp, &what).await;
        assert_eq!(upstream.count(), 0, "{what}");

        // the fault ends: the next discovery attempt (1 s later) succeeds
        idp.set_knobs(|k| k.faults.clear());
        until_ready(&proxy, Duration::from_secs(5), &what).await;
        let client = TestClient::new();
        login(&client, &proxy, "/page").await;
        let auth = client.get(&proxy.url("/oauth2/auth")).await;
        assert_eq!(auth.status, StatusCode::ACCEPTED, "{what}: after recovery");
    }
}

#[tokio::test]
async fn token_or_userinfo_answering_garbage_fails_the_login_closed_and_the_next_one_works() {
    let mut cases: Vec<(Endpoint, &str, Fault, &str)> = garbage()
        .into_iter()
        .map(|(name, f)| (Endpoint::Token, name, f, ""))
        .collect();
    cases.extend(garbage().into_iter().map(|(name, f)| {
        (
            Endpoint::Userinfo,
            name,
            f,
            "identity_source = \"userinfo\"",
        )
    }));
    for (endpoint, name, fault, toml) in cases {
        let what = format!("{endpoint:?} answering {name}");
        let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
        let upstream = Recorder::start().await;
        let proxy = TestProxy::start(toml, &idp, &upstream).await;
        idp.set_knobs(|k| k.faults = vec![(endpoint, fault.clone())]);
        let client = TestClient::new();
        let authorize = start_login(&client, &proxy, "/page").await;
        let callback = authorize_at_idp(&client, &proxy, &authorize, None).await;
        let resp = client.get(callback.as_str()).await;
        // 502: it answered, but nothing usable; 503 where the answer could
        // not even be read (over the cap)
        assert_clear_page(
            &resp,
            &[StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE],
            &[
                "The identity provider could not complete the sign-in",
                "answer could not be verified",
                "The identity provider did not answer",
            ],
            &what,
        );
        assert!(resp.text().contains("/oauth2/start"), "{what}: no way on");
        let auth = client.get(&proxy.url("/oauth2/auth")).await;
        assert_eq!(
            auth.status,
            StatusCode::UNAUTHORIZED,
            "{what}: /oauth2/auth"
        );
        let page = client.get_api(&proxy.url("/page")).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{what}: /page");
        assert_eq!(upstream.count(), 0, "{what}: the upstream was reached");

        // the fault ends: the same browser signs in
        idp.set_knobs(|k| k.faults.clear());
        login(&client, &proxy, "/page").await;
        let auth = client.get(&proxy.url("/oauth2/auth")).await;
        assert_eq!(auth.status, StatusCode::ACCEPTED, "{what}: after recovery");
    }
}

#[tokio::test]
async fn jwks_down_when_a_new_key_appears_refuses_its_logins_until_it_is_back() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let before = TestClient::new();
    login(&before, &proxy, "/").await;

    // the provider rotates to key2, and its JWKS goes down at that moment
    idp.set_knobs(|k| {
        k.publish_keys = vec!["key1", "key2"];
        k.signing_kid = "key2";
        k.jwks_status = Some(503);
    });
    let client = TestClient::new();
    let authorize = start_login(&client, &proxy, "/page").await;
    let callback = authorize_at_idp(&client, &proxy, &authorize, None).await;
    let resp = client.get(callback.as_str()).await;
    // the token names a key gatehouse cannot get because the provider's
    // JWKS fails: the provider's fault (502), not a bad token (400)
    assert_clear_page(
        &resp,
        &[StatusCode::BAD_GATEWAY],
        &["The identity provider could not complete the sign-in"],
        "new kid, JWKS down",
    );
    assert!(resp.text().contains("/oauth2/start"), "no way on");
    let auth = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(auth.status, StatusCode::UNAUTHORIZED);
    // sessions made before keep working: their tokens were checked at login
    let auth = before.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(auth.status, StatusCode::ACCEPTED);

    // the JWKS is back: the next login gets the new key (after waiting, at
    // most the refetch interval, for its turn to fetch)
    idp.set_knobs(|k| k.jwks_status = None);
    login(&client, &proxy, "/page").await;
    let auth = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(auth.status, StatusCode::ACCEPTED, "{}", auth.text());
}

/// Binds a recorder on `addr` once the old one has let go of it.
async fn recorder_on(addr: SocketAddr) -> Recorder {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match Recorder::try_start_on(addr).await {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn an_upstream_down_or_slow_gets_a_502_or_504_page_and_is_used_again_when_back() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let addr = upstream.addr();
    let proxy = TestProxy::start("upstream_timeout = \"1s\"", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/page").await;

    // down: connections refused
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = client.get(&proxy.url("/page")).await;
    assert_clear_page(
        &resp,
        &[StatusCode::BAD_GATEWAY],
        &["the application behind it is not answering"],
        "upstream down",
    );
    let api = client.get_api(&proxy.url("/page")).await;
    assert_eq!(api.status, StatusCode::BAD_GATEWAY, "{}", api.text());
    assert!(
        api.json()["error"] == json!("upstream_unavailable"),
        "{}",
        api.text()
    );
    // the check endpoint does not involve the upstream: the session is good
    let auth = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(auth.status, StatusCode::ACCEPTED);

    // back, on the same address: served again, no restart
    let upstream = recorder_on(addr).await;
    let resp = client.get(&proxy.url("/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(upstream.last().unwrap().path(), "/page");

    // slow: past upstream_timeout, a 504 page after about that long
    let started = Instant::now();
    let resp = client.get(&proxy.url("/__slow?ms=5000")).await;
    let waited = started.elapsed();
    assert_clear_page(
        &resp,
        &[StatusCode::GATEWAY_TIMEOUT],
        &["the application behind it took too long to answer"],
        "upstream slow",
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "answered after {waited:?}"
    );
    // and fast again: the next request is served
    let resp = client.get(&proxy.url("/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

/// `idp`'s discovery with `member` advertised as plain http on a host that
/// is not loopback (never resolved: gatehouse must refuse it unfetched).
fn advertise_off_loopback(idp: &MockIdp, member: &str, path: &str) {
    let url = format!("http://idp.test:{}{path}", idp.addr().port());
    idp.set_knobs(|k| {
        k.discovery_overrides.insert(member.to_owned(), json!(url));
    });
}

#[tokio::test]
async fn discovery_advertising_plain_http_endpoints_off_loopback_is_refused_unless_allowed() {
    let upstream = Recorder::start().await;
    for (member, path) in [
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/userinfo"),
        ("authorization_endpoint", "/authorize"),
    ] {
        let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
        advertise_off_loopback(&idp, member, path);

        // what --check-config says: the member and the setting
        let toml = TestProxy::builder(&idp, &upstream).render(0);
        let config = gatehouse::Config::from_toml_str(&toml).unwrap();
        let err = gatehouse::check_provider(&config).await.unwrap_err();
        assert!(err.contains(member), "{member}: {err}");
        assert!(err.contains("insecure_oidc_allow_http"), "{member}: {err}");
        assert!(err.contains("plain http"), "{member}: {err}");

        // a running gatehouse stays unready and sends nobody to sign in
        let proxy = TestProxy::builder(&idp, &upstream).no_wait().start().await;
        until_fetched(|| idp.discovery_fetches(), 1, member).await;
        // the operator must decide: a configuration problem, not "try again"
        assert_unready_as(&proxy, &idp, member, Verdict::Misconfigured).await;
        assert!(idp.token_requests().is_empty(), "{member}");

        // the operator's explicit choice lets it through (the JWKS is
        // fetched at discovery, from a name that does not resolve here: the
        // other members show it)
        if member != "jwks_uri" {
            let allowed = TestProxy::builder(&idp, &upstream)
                .set("insecure_oidc_allow_http", true)
                .no_wait()
                .start()
                .await;
            until_ready(&allowed, Duration::from_secs(5), member).await;
        }
    }
}

/// Issue 11: a wrong issuer URL (the discovery document or the keys answer
/// 404) is a misconfiguration the page names, with the reference; a
/// provider that is down stays "try again later". Either way gatehouse
/// becomes ready once the provider answers properly.
#[tokio::test]
async fn a_wrong_issuer_url_is_shown_as_misconfigured_and_an_outage_as_try_again() {
    let upstream = Recorder::start().await;
    for (what, verdict) in [
        ("discovery answering 404", Verdict::Misconfigured),
        ("jwks answering 404", Verdict::Misconfigured),
        ("discovery answering 503", Verdict::TryLater),
    ] {
        let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
        let status = if what.contains("404") { 404 } else { 503 };
        if what.starts_with("jwks") {
            idp.set_knobs(|k| k.jwks_status = Some(status));
        } else {
            idp.set_knobs(|k| k.discovery_status = Some(status));
        }
        let proxy = TestProxy::builder(&idp, &upstream).no_wait().start().await;
        if what.starts_with("jwks") {
            until_fetched(|| idp.jwks_fetches(), 0, what).await;
        } else {
            until_fetched(|| idp.discovery_fetches(), 0, what).await;
        }
        assert_unready_as(&proxy, &idp, what, verdict).await;
        idp.set_knobs(|k| {
            k.discovery_status = None;
            k.jwks_status = None;
        });
        until_ready(&proxy, Duration::from_secs(5), what).await;
    }
}
