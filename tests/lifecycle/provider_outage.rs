//! The provider unreachable (connection refused) or too slow (past
//! gatehouse's 10 s provider timeout) while a user signs in or while a
//! session is refreshed: a 503, never a 2xx from a check endpoint, and
//! nobody signed out (no session cookie cleared). And a gatehouse started
//! while the provider is down still lets existing sessions through.

use crate::support::SESSION_COOKIE;
use std::time::Duration;

use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, authorize_at_idp, login, start_login};
use crate::support::upstream::Recorder;
use http::StatusCode;
use url::Url;

/// gatehouse's provider timeout.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Well past [`PROVIDER_TIMEOUT`]; costs nothing, as gatehouse hangs up
/// first and the mock's delayed answers are dropped with the connection.
const TOO_SLOW: Duration = Duration::from_secs(30);

/// Every way a signed-in user's request is decided, while the session is
/// due for a refresh.
const DECIDED: [(&str, &str); 4] = [
    ("/oauth2/auth", ACCEPT_HTML),
    ("/oauth2/forward-auth", ACCEPT_HTML),
    ("/page", "application/json"),
    ("/page", ACCEPT_HTML),
];

/// Asserts `resp` is a 503 that leaves every gatehouse cookie alone.
fn assert_unavailable_keeping_the_session(resp: &TestResponse, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        resp.text()
    );
    assert!(resp.location().is_none(), "{what}: redirected");
    assert!(
        resp.header("x-auth-request-user").is_none(),
        "{what}: identity on a failure"
    );
    let cleared: Vec<String> = resp
        .set_cookies()
        .iter()
        .filter(|c| {
            c.name().starts_with(SESSION_COOKIE)
                && !c.name().starts_with(&format!("{SESSION_COOKIE}_csrf_"))
        })
        .map(ToString::to_string)
        .collect();
    assert!(
        cleared.is_empty(),
        "{what}: session cookie touched: {cleared:?}"
    );
}

/// A signed-in browser that has started a second login (say, for another
/// page) and holds the provider's callback URL, not yet visited.
async fn signed_in_with_a_login_pending(proxy: &TestProxy) -> (TestClient, Url) {
    let client = TestClient::new();
    login(&client, proxy, "/").await;
    let authorize = start_login(&client, proxy, "/oauth2/start?rd=/other").await;
    let callback = authorize_at_idp(&client, proxy, &authorize, None).await;
    (client, callback)
}

/// The session `client` holds is still a valid session: a gatehouse with
/// the same cookie secret and no refreshing lets it through.
async fn still_signed_in(client: &TestClient, checker: &TestProxy, what: &str) {
    let cookie = client.cookie("127.0.0.1", SESSION_COOKIE).expect(what);
    let resp = TestClient::new()
        .get_with(
            &checker.url("/oauth2/auth"),
            &[("cookie", &format!("{SESSION_COOKIE}={cookie}"))],
        )
        .await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{what}: signed out");
}

#[tokio::test]
async fn an_unreachable_provider_during_login_and_refresh_gets_503_and_signs_nobody_out() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("cookie_refresh = \"1s\"", &idp, &upstream).await;
    let checker = TestProxy::start("", &idp, &upstream).await;
    let (client, callback) = signed_in_with_a_login_pending(&proxy).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let seen = upstream.count();

    // the provider goes away: its port refuses connections
    drop(idp);
    let resp = client.get(callback.as_str()).await;
    assert_unavailable_keeping_the_session(&resp, "callback");
    for (path, accept) in DECIDED {
        let resp = client
            .get_with(&proxy.url(path), &[("accept", accept)])
            .await;
        assert_unavailable_keeping_the_session(&resp, &format!("{path} {accept}"));
    }
    assert_eq!(upstream.count(), seen, "a request went through");
    still_signed_in(&client, &checker, "after the outage").await;
}

#[tokio::test]
async fn a_provider_too_slow_during_login_and_refresh_gets_503_and_signs_nobody_out() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("cookie_refresh = \"1s\"", &idp, &upstream).await;
    let checker = TestProxy::start("", &idp, &upstream).await;
    let (client, callback) = signed_in_with_a_login_pending(&proxy).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let seen = upstream.count();
    let tokens_before = idp.token_requests().len();

    // every answer from the provider now comes after the timeout; all the
    // requests wait on it at once, so the test waits about 10 s, not 50
    idp.set_knobs(|k| k.response_delay = Some(TOO_SLOW));
    let url = |path: &str| proxy.url(path);
    let get = |path: &'static str, accept: &'static str| {
        let client = &client;
        async move { client.get_with(&url(path), &[("accept", accept)]).await }
    };
    let started = std::time::Instant::now();
    let (cb, auth, fwd, api, page) = tokio::join!(
        client.get(callback.as_str()),
        get(DECIDED[0].0, DECIDED[0].1),
        get(DECIDED[1].0, DECIDED[1].1),
        get(DECIDED[2].0, DECIDED[2].1),
        get(DECIDED[3].0, DECIDED[3].1),
    );
    // gatehouse waited for the provider (10 s) before giving up
    let waited = started.elapsed();
    assert!(
        waited >= PROVIDER_TIMEOUT - Duration::from_millis(500)
            && waited < PROVIDER_TIMEOUT + Duration::from_secs(5),
        "answered after {waited:?}"
    );
    assert_unavailable_keeping_the_session(&cb, "callback");
    for (resp, (path, accept)) in [auth, fwd, api, page].iter().zip(DECIDED) {
        assert_unavailable_keeping_the_session(resp, &format!("{path} {accept}"));
    }
    assert_eq!(upstream.count(), seen, "a request went through");
    still_signed_in(&client, &checker, "after the outage").await;

    // the provider is back: the session refreshes and lives on (the slow
    // requests were dropped unanswered, so no refresh token was used up)
    idp.set_knobs(|k| k.response_delay = None);
    let resp = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED, "{}", resp.text());
    assert!(resp.set_cookie(SESSION_COOKIE).is_some(), "refreshed");
    let grants: Vec<String> = idp
        .token_requests()
        .iter()
        .filter_map(|t| t.params.get("grant_type").map(str::to_owned))
        .collect();
    assert_eq!(grants[tokens_before..], ["refresh_token".to_owned()]);
}

#[tokio::test]
async fn existing_sessions_keep_working_while_the_provider_is_down_at_start() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let earlier = TestProxy::start("", &idp, &upstream).await;
    // the next gatehouse: the same deployment (cookie secret, provider,
    // client), started once that provider refuses connections
    let later = TestProxy::builder(&idp, &upstream).no_wait();
    let client = TestClient::new();
    login(&client, &earlier, "/").await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        client.cookie("127.0.0.1", SESSION_COOKIE).unwrap()
    );
    drop(earlier);
    drop(idp);
    let proxy = later.start().await;
    let anon = TestClient::new();
    let ready = anon.get(&proxy.url("/ready")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!proxy.server().ready());

    let page = anon
        .get_with(&proxy.url("/page"), &[("cookie", &cookie)])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let seen = upstream.last().unwrap();
    assert_eq!(seen.path(), "/page");
    assert!(
        seen.header("x-forwarded-user")
            .is_some_and(|u| u.starts_with("uid-alice")),
        "{:?}",
        seen.headers
    );
    let auth = anon
        .get_with(&proxy.url("/oauth2/auth"), &[("cookie", &cookie)])
        .await;
    assert_eq!(auth.status, StatusCode::ACCEPTED);
    let fwd = anon
        .get_with(&proxy.url("/oauth2/forward-auth"), &[("cookie", &cookie)])
        .await;
    assert_eq!(fwd.status, StatusCode::OK);

    // while a browser without a session cannot be sent anywhere: 503
    let browser = anon.get(&proxy.url("/page")).await;
    assert_eq!(browser.status, StatusCode::SERVICE_UNAVAILABLE);
    let count = upstream.count();
    let api = anon.get_api(&proxy.url("/page")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream.count(), count);
}
