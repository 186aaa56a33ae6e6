//! `cookie_refresh`: a session's tokens are refreshed at the provider when
//! due, the new session cookie travels on whatever answers the request
//! (proxied page, `/oauth2/auth`), concurrent requests make one refresh, and
//! a refused or failed refresh never lets a request through.

use crate::support::SESSION_COOKIE;
use std::time::Duration;

use crate::support::client::TestClient;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login};
use crate::support::upstream::Recorder;
use http::StatusCode;

async fn stack(extra: &str) -> (MockIdp, Recorder, TestProxy) {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(extra, &idp, &upstream).await;
    (idp, upstream, proxy)
}

fn refresh_grants(idp: &MockIdp) -> usize {
    idp.token_requests()
        .iter()
        .filter(|t| t.params.get("grant_type") == Some("refresh_token"))
        .count()
}

#[tokio::test]
async fn a_due_session_is_refreshed_and_the_new_cookie_comes_back() {
    let (idp, upstream, proxy) = stack("cookie_refresh = \"1s\"\npass_access_token = true").await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    let first_cookie = client.cookie("127.0.0.1", SESSION_COOKIE).unwrap();
    let first_token = {
        assert_eq!(client.get(&proxy.url("/")).await.status, StatusCode::OK);
        upstream
            .last()
            .unwrap()
            .header("x-forwarded-access-token")
            .unwrap()
            .to_owned()
    };
    assert_eq!(refresh_grants(&idp), 0, "not due yet");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = client.get(&proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(refresh_grants(&idp), 1);
    assert!(
        resp.set_cookie(SESSION_COOKIE).is_some(),
        "the refreshed session is set on the proxied answer"
    );
    let second_cookie = client.cookie("127.0.0.1", SESSION_COOKIE).unwrap();
    assert_ne!(first_cookie, second_cookie);
    let second_token = upstream
        .last()
        .unwrap()
        .header("x-forwarded-access-token")
        .unwrap()
        .to_owned();
    let issued = idp.issued_tokens();
    assert_eq!(issued.len(), 2, "one login, one refresh");
    assert_eq!(first_token, issued[0]["access_token"].as_str().unwrap());
    assert_eq!(
        second_token,
        issued[1]["access_token"].as_str().unwrap(),
        "the upstream gets the access token the refresh returned"
    );
    assert_ne!(first_token, second_token);

    // the rotated refresh token is the one used next time
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.get(&proxy.url("/")).await.status, StatusCode::OK);
    assert_eq!(refresh_grants(&idp), 2);
    let used: Vec<String> = idp
        .token_requests()
        .iter()
        .filter_map(|t| t.params.get("refresh_token").map(str::to_owned))
        .collect();
    assert_eq!(
        used,
        [
            issued[0]["refresh_token"].as_str().unwrap(),
            issued[1]["refresh_token"].as_str().unwrap(),
        ],
        "each refresh redeems the newest refresh token"
    );
}

#[tokio::test]
async fn concurrent_requests_with_one_stale_cookie_make_one_refresh() {
    let (idp, _upstream, proxy) = stack("cookie_refresh = \"1s\"").await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        client.cookie("127.0.0.1", SESSION_COOKIE).unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let url = proxy.url("/");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, cookie) = (url.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            TestClient::new()
                .get_with(&url, &[("cookie", &cookie), ("accept", "application/json")])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(refresh_grants(&idp), 1, "one refresh for eight requests");
}

#[tokio::test]
async fn a_refused_refresh_signs_the_user_out() {
    let (idp, upstream, proxy) = stack("cookie_refresh = \"1s\"").await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    idp.revoke_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = upstream.count();
    let resp = client.get_api(&proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh_grants(&idp),
        1,
        "gatehouse asked the provider, which refused"
    );
    assert_eq!(upstream.count(), before, "nothing reaches the upstream");
    let cleared = resp
        .set_cookie(SESSION_COOKIE)
        .expect("the dead session is cleared");
    assert_eq!(cleared.value(), "");
}

#[tokio::test]
async fn a_refused_refresh_through_forward_auth_clears_the_dead_session_too() {
    let (idp, _upstream, proxy) = stack("cookie_refresh = \"1s\"").await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    idp.revoke_refresh_tokens();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // an API call asked about by Traefik or Caddy: a 401, not a redirect,
    // and the clearing goes back with it as with a redirect
    let resp = client.get_api(&proxy.url("/oauth2/forward-auth")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let cleared = resp
        .set_cookie(SESSION_COOKIE)
        .expect("the dead session is cleared");
    assert_eq!(cleared.value(), "");
}

#[tokio::test]
async fn forward_auth_carries_the_refreshed_cookie_and_never_allows_when_the_provider_fails() {
    let (idp, _upstream, proxy) = stack("cookie_refresh = \"1s\"").await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = client.cookie("127.0.0.1", SESSION_COOKIE).unwrap();
    let ok = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    assert_eq!(refresh_grants(&idp), 1);
    let refreshed = ok
        .set_cookie(SESSION_COOKIE)
        .expect("nginx passes this Set-Cookie back");
    assert_ne!(refreshed.value(), before, "the refreshed session is new");

    // due again, and the token endpoint is failing: no 2xx
    tokio::time::sleep(Duration::from_millis(2100)).await;
    idp.set_knobs(|k| k.token_endpoint_status = Some(500));
    let down = client.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    let fwd = client.get(&proxy.url("/oauth2/forward-auth")).await;
    assert_eq!(fwd.status, StatusCode::SERVICE_UNAVAILABLE);
    let page = client.get_api(&proxy.url("/")).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    for resp in [&down, &fwd, &page] {
        assert!(
            resp.set_cookie(SESSION_COOKIE).is_none(),
            "a failing provider signs nobody out"
        );
    }
    assert!(refresh_grants(&idp) >= 2, "each request tried again");
    // and once it is back the session lives on
    idp.set_knobs(|k| k.token_endpoint_status = None);
    assert_eq!(
        client.get(&proxy.url("/oauth2/auth")).await.status,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn without_cookie_refresh_no_refresh_token_is_kept_and_expired_tokens_are_not_forwarded() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    idp.set_knobs(|k| k.access_token_ttl_secs = 1);
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("pass_access_token = true", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    assert_eq!(client.get(&proxy.url("/")).await.status, StatusCode::OK);
    assert!(
        upstream
            .last()
            .unwrap()
            .header("x-forwarded-access-token")
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        client.get(&proxy.url("/")).await.status,
        StatusCode::OK,
        "the session outlives the token"
    );
    // no refresh token in the cookie: a gatehouse with the same secret that
    // does refresh finds nothing to refresh the (2 s old) session with
    let refreshing = TestProxy::start(
        "pass_access_token = true\ncookie_refresh = \"1s\"",
        &idp,
        &upstream,
    )
    .await;
    let resp = client.get(&refreshing.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        resp.set_cookie(SESSION_COOKIE).is_none(),
        "nothing refreshed"
    );
    assert!(
        upstream
            .last()
            .unwrap()
            .header("x-forwarded-access-token")
            .is_none(),
        "an expired token is never forwarded"
    );
    assert_eq!(refresh_grants(&idp), 0);
}

#[tokio::test]
async fn a_stale_access_token_is_refreshed_when_it_is_forwarded() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    // expires inside the refresh margin straight away
    idp.set_knobs(|k| k.access_token_ttl_secs = 5);
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(
        "pass_access_token = true\ncookie_refresh = \"1h\"",
        &idp,
        &upstream,
    )
    .await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    assert_eq!(client.get(&proxy.url("/")).await.status, StatusCode::OK);
    assert_eq!(
        refresh_grants(&idp),
        1,
        "a token about to expire is refreshed before it is forwarded"
    );
    let issued = idp.issued_tokens();
    assert_eq!(issued.len(), 2, "login, then one refresh");
    assert_eq!(
        upstream.last().unwrap().header("x-forwarded-access-token"),
        issued[1]["access_token"].as_str(),
        "the refreshed token is the one forwarded, not the stale one"
    );
}

/// README: a refused refresh signs the user out, a provider that cannot
/// refresh gets a 503. `invalid_grant` and `invalid_client` are refusals
/// (the grant or this client is no longer good: sign in again); any other
/// error answer, such as `invalid_request`, is the provider failing, so the
/// session is kept for the next try.
#[tokio::test]
async fn a_refresh_refused_with_invalid_client_signs_the_user_out_but_invalid_request_does_not() {
    let (idp, upstream, proxy) = stack("cookie_refresh = \"1s\"").await;
    let refused = TestClient::new();
    login(&refused, &proxy, "/").await;
    let failed = TestClient::new();
    login(&failed, &proxy, "/").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = upstream.count();

    idp.set_knobs(|k| k.token_endpoint_error = Some("invalid_client"));
    let resp = refused.get_api(&proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    let cleared = resp
        .set_cookie(SESSION_COOKIE)
        .expect("invalid_client clears the session");
    assert_eq!(cleared.value(), "");
    assert_eq!(refresh_grants(&idp), 1);

    idp.set_knobs(|k| k.token_endpoint_error = Some("invalid_request"));
    for path in ["/", "/oauth2/auth", "/oauth2/forward-auth"] {
        let resp = failed.get_api(&proxy.url(path)).await;
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            resp.text()
        );
        assert!(
            resp.set_cookie(SESSION_COOKIE).is_none(),
            "{path}: invalid_request signed the user out"
        );
    }
    assert_eq!(refresh_grants(&idp), 4, "each request asked again");
    assert_eq!(upstream.count(), before, "nothing reaches the upstream");

    // once the provider answers again, the kept session refreshes
    idp.set_knobs(|k| k.token_endpoint_error = None);
    let resp = failed.get(&proxy.url("/oauth2/auth")).await;
    assert_eq!(resp.status, StatusCode::ACCEPTED);
    assert!(resp.set_cookie(SESSION_COOKIE).is_some());
    // and the refused one stays signed out
    let resp = refused.get_api(&proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
}
