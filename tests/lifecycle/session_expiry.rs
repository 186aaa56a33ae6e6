//! Session expiry end to end: a session lasts `session_lifetime` (or
//! `cookie_expire` when that is not set), the session cookie's `Max-Age`
//! says so, and once it has passed the cookie is no session anywhere: a
//! browser is sent to sign in again, API clients and both check endpoints
//! get a 401, and nothing reaches the upstream.

use crate::support::SESSION_COOKIE;
use std::time::{Duration, Instant};

use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login};
use crate::support::upstream::Recorder;
use http::{Method, StatusCode};

/// Longest a 2 s session may take to be refused (whole-second clocks).
const EXPIRY_DEADLINE: Duration = Duration::from_secs(5);

/// Logs in through `proxy`; returns the session cookie as set.
async fn session_cookie(proxy: &TestProxy) -> cookie::Cookie<'static> {
    let client = TestClient::new();
    let callback = login(&client, proxy, "/").await;
    callback
        .set_cookie(SESSION_COOKIE)
        .expect("the callback sets the session")
}

/// `GET url` with exactly `cookie` (a browser that kept it, or an attacker
/// who copied it), as a browser or as an API client.
async fn get_with_cookie(url: &str, cookie: &str, accept: &str) -> TestResponse {
    TestClient::new()
        .request(
            Method::GET,
            url,
            &[("cookie", cookie), ("accept", accept)],
            None,
        )
        .await
}

fn max_age_secs(c: &cookie::Cookie<'_>) -> i64 {
    c.max_age().expect("a Max-Age").whole_seconds()
}

#[tokio::test]
async fn session_cookies_carry_the_configured_lifetime_as_max_age() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    for (extra, want) in [
        ("", 168 * 3600),
        ("cookie_expire = \"90m\"", 90 * 60),
        // session_lifetime wins over cookie_expire
        (
            "cookie_expire = \"90m\"\nsession_lifetime = \"2h\"",
            2 * 3600,
        ),
    ] {
        let proxy = TestProxy::start(extra, &idp, &upstream).await;
        let c = session_cookie(&proxy).await;
        let age = max_age_secs(&c);
        assert!(
            (want - 2..=want).contains(&age),
            "{extra:?}: Max-Age {age}, want {want}"
        );
        // plain http test config: cookie_secure = false, so no Secure
        assert_eq!(c.secure(), None, "{extra:?}");
        assert_eq!(c.http_only(), Some(true), "{extra:?}");
    }
}

#[tokio::test]
async fn an_expired_session_sends_the_browser_to_sign_in_and_both_checks_answer_401() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    // the same 2 s lifetime, from either setting
    let by_cookie_expire = TestProxy::start("cookie_expire = \"2s\"", &idp, &upstream).await;
    let by_session_lifetime = TestProxy::start(
        "cookie_expire = \"1h\"\nsession_lifetime = \"2s\"",
        &idp,
        &upstream,
    )
    .await;

    for proxy in [&by_cookie_expire, &by_session_lifetime] {
        let what = proxy
            .config_toml()
            .lines()
            .find(|l| l.contains("2s"))
            .unwrap();
        let started = Instant::now();
        let session = session_cookie(proxy).await;
        assert!(
            (1..=2).contains(&max_age_secs(&session)),
            "{what}: {session}"
        );
        let cookie = format!("{SESSION_COOKIE}={}", session.value());
        let page = get_with_cookie(&proxy.url("/page"), &cookie, ACCEPT_HTML).await;
        assert_eq!(page.status, StatusCode::OK, "{what}: fresh session");

        // the cookie is kept and sent after its lifetime: poll the check
        // until it refuses, then every way in must refuse it too
        loop {
            let auth = get_with_cookie(&proxy.url("/oauth2/auth"), &cookie, ACCEPT_HTML).await;
            if auth.status == StatusCode::UNAUTHORIZED {
                break;
            }
            assert_eq!(auth.status, StatusCode::ACCEPTED, "{what}");
            assert!(
                started.elapsed() < EXPIRY_DEADLINE,
                "{what}: the session outlived its 2 s lifetime"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{what}: the session expired early"
        );
        let seen = upstream.count();

        // a browser is sent to the provider to sign in again
        let browser = get_with_cookie(&proxy.url("/page"), &cookie, ACCEPT_HTML).await;
        assert_eq!(browser.status, StatusCode::FOUND, "{what}");
        let to = browser.location().unwrap();
        assert!(
            to.starts_with(&format!("{}/authorize?", idp.base_url())),
            "{what}: {to}"
        );
        // API clients and both check endpoints: 401
        let api = get_with_cookie(&proxy.url("/page"), &cookie, "application/json").await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{what}");
        for path in ["/oauth2/auth", "/oauth2/forward-auth"] {
            let resp = get_with_cookie(&proxy.url(path), &cookie, "application/json").await;
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}: {path}");
            assert!(resp.header("x-auth-request-user").is_none(), "{what}");
        }
        let nginx = get_with_cookie(&proxy.url("/oauth2/auth"), &cookie, ACCEPT_HTML).await;
        assert_eq!(
            nginx.status,
            StatusCode::UNAUTHORIZED,
            "{what}: never a redirect"
        );
        // README: forward-auth sends a signed-out browser navigation to the
        // provider, with a 302, never a 2xx
        let traefik =
            get_with_cookie(&proxy.url("/oauth2/forward-auth"), &cookie, ACCEPT_HTML).await;
        assert_eq!(traefik.status, StatusCode::FOUND, "{what}");
        assert!(
            traefik
                .location()
                .unwrap()
                .starts_with(&format!("{}/authorize?", idp.base_url())),
            "{what}"
        );
        assert_eq!(upstream.count(), seen, "{what}: reached the upstream");

        // and signing in again gives a working session
        let fresh = session_cookie(proxy).await;
        let cookie = format!("{SESSION_COOKIE}={}", fresh.value());
        let page = get_with_cookie(&proxy.url("/page"), &cookie, ACCEPT_HTML).await;
        assert_eq!(page.status, StatusCode::OK, "{what}");
    }
}

#[tokio::test]
async fn refreshing_a_session_does_not_extend_its_lifetime() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(
        "cookie_refresh = \"1s\"\nsession_lifetime = \"3s\"",
        &idp,
        &upstream,
    )
    .await;
    let started = Instant::now();
    let mut cookie = format!("{SESSION_COOKIE}={}", session_cookie(&proxy).await.value());
    let mut refreshed = 0;
    // the browser keeps every refreshed cookie, and sends the last one even
    // past its Max-Age (a browser's jar would drop it; a copy would not)
    loop {
        let resp = get_with_cookie(&proxy.url("/page"), &cookie, "application/json").await;
        if resp.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        if let Some(c) = resp.set_cookie(SESSION_COOKIE) {
            refreshed += 1;
            let age = max_age_secs(&c);
            assert!(age <= 2, "a refresh reset the lifetime: Max-Age {age}");
            cookie = format!("{SESSION_COOKIE}={}", c.value());
        }
        assert!(
            started.elapsed() < Duration::from_secs(3) + EXPIRY_DEADLINE,
            "the refreshed session outlived its 3 s lifetime"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the session expired early"
    );
    assert!(refreshed >= 1, "never refreshed: the test proved nothing");
}
