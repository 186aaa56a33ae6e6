//! The browser login through gatehouse against the mock provider, the
//! session it leaves, and every way a login or a cookie can be hostile.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use crate::support::SESSION_COOKIE;
use std::time::Duration;

use http::StatusCode;
use support::client::TestClient;
use support::idp::{IdpOptions, LogoutTokenMutation, MockIdp, TokenMutation, pkce_challenge};
use support::proxy::{TestProxy, login, login_as, start_login};
use support::upstream::Recorder;

struct Stack {
    idp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
}

async fn stack(extra: &str) -> Stack {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(extra, &idp, &upstream).await;
    Stack {
        idp,
        upstream,
        proxy,
    }
}

fn alice_sub(idp: &MockIdp) -> String {
    idp.options()
        .users
        .iter()
        .find(|u| u.username == "alice")
        .unwrap()
        .sub
        .clone()
}

/// Drives a login up to the callback URL (not fetched).
async fn callback_url(client: &TestClient, proxy: &TestProxy, path: &str) -> String {
    let authorize = start_login(client, proxy, path).await;
    let resp = client.get(authorize.as_str()).await;
    assert!(
        resp.status.is_redirection(),
        "idp answered {}: {}",
        resp.status,
        resp.text()
    );
    resp.location().unwrap()
}

fn has_session_cookie(resp: &support::client::TestResponse) -> bool {
    resp.set_cookies().iter().any(|c| {
        c.name().starts_with(SESSION_COOKIE) && !c.name().contains("csrf") && !c.value().is_empty()
    })
}

#[tokio::test]
async fn full_login_lands_on_the_page_first_asked_for_with_identity_headers() {
    let s = stack("").await;
    let client = TestClient::new();
    let callback = login(&client, &s.proxy, "/reports/q3?year=2026").await;

    let session = callback
        .set_cookies()
        .into_iter()
        .find(|c| c.name() == SESSION_COOKIE)
        .expect("session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.same_site(), Some(cookie::SameSite::Lax));
    assert_eq!(session.path(), Some("/"));

    let page = client.get(&s.proxy.url("/reports/q3?year=2026")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        "/reports/q3?year=2026"
    );
    assert_eq!(
        seen.header("x-forwarded-user"),
        Some(alice_sub(&s.idp).as_str())
    );
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-preferred-username"), Some("alice"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(s.proxy.host().as_str())
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen.header("x-forwarded-access-token").is_none());
    assert!(seen.header("authorization").is_none());

    // PKCE S256, state and nonce were all sent, and the verifier matched
    let auth = &s.idp.authorize_requests()[0];
    assert_eq!(auth.get("code_challenge_method"), Some("S256"));
    assert!(auth.get("state").is_some_and(|v| v.len() >= 32));
    assert!(auth.get("nonce").is_some_and(|v| v.len() >= 32));
    let token = &s.idp.token_requests()[0];
    let verifier = token.params.get("code_verifier").expect("verifier sent");
    assert_eq!(
        Some(pkce_challenge(verifier).as_str()),
        auth.get("code_challenge")
    );
    assert_eq!(
        token.basic_auth(),
        Some(("gatehouse".into(), "s3cret".into()))
    );
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_in_any_case_or_spelling() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let spoofs = [
        ("X-Forwarded-User", "mallory"),
        ("x_forwarded_user", "mallory"),
        ("X_FORWARDED_EMAIL", "mallory@evil.example"),
        ("x-forwarded-preferred_username", "mallory"),
        ("X-Forwarded-Groups", "admins,root"),
        ("X-Forwarded-Access-Token", "forged"),
        ("X-Auth-Request-User", "mallory"),
        ("x_auth_request_email", "mallory@evil.example"),
        ("Remote-User", "mallory"),
    ];
    let resp = client.get_with(&s.proxy.url("/"), &spoofs).await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        seen.header_all("x-forwarded-user"),
        [alice_sub(&s.idp).as_str()]
    );
    assert_eq!(seen.header_all("x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(seen.header_all("x-forwarded-groups"), ["admins,staff"]);
    assert_eq!(seen.header_all("x-forwarded-preferred-username"), ["alice"]);
    for (name, _) in seen.headers.iter() {
        let n = name.as_str();
        assert!(
            !n.contains('_'),
            "underscore variant {n} reached the upstream"
        );
        assert!(!n.starts_with("x-auth-request"), "{n} reached the upstream");
        assert_ne!(n, "remote-user");
        assert_ne!(n, "x-forwarded-access-token");
    }
    assert!(
        !seen
            .headers
            .values()
            .any(|v| v.as_bytes().windows(7).any(|w| w == b"mallory"))
    );
}

#[tokio::test]
async fn gatehouse_cookies_are_not_sent_upstream() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let host = "127.0.0.1";
    client.set_cookie(host, "app_pref", "dark");
    let resp = client.get(&s.proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.header_all("cookie"), ["app_pref=dark"]);
}

#[tokio::test]
async fn no_session_sends_browsers_to_the_provider_and_others_get_401() {
    let s = stack("").await;
    let client = TestClient::new();
    let browser = client.get(&s.proxy.url("/app")).await;
    assert_eq!(browser.status, StatusCode::FOUND);
    assert!(
        browser
            .location()
            .unwrap()
            .starts_with(&format!("{}/authorize?", s.idp.base_url()))
    );
    let api = client.get_api(&s.proxy.url("/app")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["error"], "unauthenticated");
    let xhr = client
        .get_with(
            &s.proxy.url("/app"),
            &[
                ("accept", "text/html"),
                ("x-requested-with", "XMLHttpRequest"),
            ],
        )
        .await;
    assert_eq!(xhr.status, StatusCode::UNAUTHORIZED);
    let post = client
        .request(
            http::Method::POST,
            &s.proxy.url("/app"),
            &[("accept", "text/html")],
            None,
        )
        .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.upstream.count(),
        0,
        "nothing reaches the upstream without a session"
    );
}

#[tokio::test]
async fn tampered_truncated_and_foreign_cookies_are_challenged() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let good = client.cookie("127.0.0.1", SESSION_COOKIE).unwrap();
    let mut flipped = good.clone().into_bytes();
    let i = flipped.len() / 2;
    flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
    let oversized = "A".repeat(20_000);
    let bad_values = [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() / 2].to_owned(),
        "garbage".to_owned(),
        oversized,
    ];
    for bad in &bad_values {
        client.set_cookie("127.0.0.1", SESSION_COOKIE, bad);
        let resp = client.get_api(&s.proxy.url("/")).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "cookie {bad:.20}...");
        let resp = client.get(&s.proxy.url("/")).await;
        assert_eq!(resp.status, StatusCode::FOUND);
    }

    // a cookie sealed by another gatehouse (another secret) is no session here
    let other = TestProxy::start(
        r#"cookie_secret = ["6SgT5rw2ciTQTsDnei1F9xs0LU4mrEIPZig4O5mP9lw="]"#,
        &s.idp,
        &s.upstream,
    )
    .await;
    let other_client = TestClient::new();
    login(&other_client, &other, "/").await;
    let foreign = other_client.cookie("127.0.0.1", SESSION_COOKIE).unwrap();
    client.set_cookie("127.0.0.1", SESSION_COOKIE, &foreign);
    assert_eq!(
        client.get_api(&s.proxy.url("/")).await.status,
        StatusCode::UNAUTHORIZED
    );
    client.set_cookie("127.0.0.1", SESSION_COOKIE, &good);
    assert_eq!(
        client.get_api(&s.proxy.url("/")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn callback_with_a_foreign_state_gets_a_clear_page_with_a_way_back() {
    let s = stack("").await;
    let client = TestClient::new();
    let page = client
        .get(&s.proxy.url("/oauth2/callback?code=abc&state=not-ours"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().contains("/oauth2/start"), "{}", page.text());
    let api = client
        .get_api(&s.proxy.url("/oauth2/callback?code=abc&state=not-ours"))
        .await;
    assert_eq!(api.status, StatusCode::BAD_REQUEST);
    assert_eq!(api.json()["error"], "login_failed");
    let text = page.text();
    assert!(text.contains("Sign-in could not be completed"), "{text}");
    assert!(text.contains("Please sign in again"), "{text}");
    assert_no_internals(&text);
    let missing = client.get(&s.proxy.url("/oauth2/callback")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let text = missing.text();
    // a bare callback says what it is and offers a way out, in plain words
    assert!(text.contains("No sign-in in progress"), "{text}");
    assert!(text.contains("href=\"/\""), "{text}");
    assert!(text.contains("href=\"/oauth2/start\""), "{text}");
    assert_no_internals(&text);
    assert!(
        s.idp.token_requests().is_empty(),
        "a foreign state must not reach the token endpoint"
    );
}

#[tokio::test]
async fn a_replayed_callback_is_refused_unless_the_browser_is_signed_in_and_then_goes_to_the_app() {
    let s = stack("").await;
    let client = TestClient::new();
    let url = callback_url(&client, &s.proxy, "/").await;
    assert_eq!(client.get(&url).await.status, StatusCode::FOUND);
    // another browser replaying it is refused
    let other = TestClient::new();
    let again = other.get(&url).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(!has_session_cookie(&again));
    // the signed-in browser replaying it goes on to the app
    let back = client.get(&url).await;
    assert_eq!(back.status, StatusCode::FOUND, "{}", back.text());
    assert_eq!(back.location().as_deref(), Some("/"));
    // gatehouse never asked the provider to redeem the code a second time
    assert_eq!(
        s.idp.token_requests().len(),
        1,
        "the replayed code reached the token endpoint"
    );
}

#[tokio::test]
async fn signing_in_again_after_back_into_the_provider_goes_to_the_app_without_a_second_token_request()
 {
    let s = stack("").await;
    let client = TestClient::new();
    let authorize = start_login(&client, &s.proxy, "/deep/page?x=1").await;
    let first = client.get(authorize.as_str()).await.location().unwrap();
    let landed = client.get(&first).await;
    assert_eq!(landed.status, StatusCode::FOUND);
    assert_eq!(landed.location().as_deref(), Some("/deep/page?x=1"));
    assert_eq!(s.idp.token_requests().len(), 1);
    // Back into the provider, which signs the user in again: a new code
    // for the same, already spent, state
    let second = client.get(authorize.as_str()).await.location().unwrap();
    assert_ne!(first, second, "the provider issued a new code");
    let resp = client.get(&second).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let to = resp.location().unwrap();
    assert!(
        to == "/" || to == "/deep/page?x=1",
        "not to the app but to {to}"
    );
    assert_eq!(
        s.idp.token_requests().len(),
        1,
        "the second code was redeemed"
    );
    // and the app answers there
    assert_eq!(client.get(&s.proxy.url(&to)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_provider_error_is_shown_escaped() {
    let s = stack("").await;
    s.idp
        .set_knobs(|k| k.authorize_error = Some("<script>alert(1)</script>".into()));
    let client = TestClient::new();
    let url = callback_url(&client, &s.proxy, "/").await;
    let page = client.get(&url).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let body = page.text();
    assert!(!body.contains("<script>alert(1)"), "{body}");
    assert!(body.contains("&lt;script&gt;"), "{body}");
    assert!(body.contains("/oauth2/start"));
}

#[tokio::test]
async fn bad_id_tokens_are_rejected() {
    let s = stack("").await;
    let mutations = [
        TokenMutation::WrongNonce,
        TokenMutation::MissingNonce,
        TokenMutation::BadSignature,
        TokenMutation::WrongIssuer,
        TokenMutation::WrongAudience,
        TokenMutation::Expired,
        TokenMutation::AlgNone,
        TokenMutation::Hs256WithPublicKey,
        TokenMutation::IatInFuture,
    ];
    for m in mutations {
        s.idp.set_knobs(|k| k.id_token_mutation = Some(m));
        let client = TestClient::new();
        let url = callback_url(&client, &s.proxy, "/").await;
        let resp = client.get(&url).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{m:?} must be rejected: {}",
            resp.text()
        );
        assert!(
            !has_session_cookie(&resp),
            "{m:?} must not create a session"
        );
        assert_eq!(
            client.get_api(&s.proxy.url("/")).await.status,
            StatusCode::UNAUTHORIZED,
            "{m:?}"
        );
    }
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn a_code_from_another_login_fails_pkce() {
    let s = stack("").await;
    let client = TestClient::new();
    // two logins in the same browser; A's code comes back with B's state
    let url_a = callback_url(&client, &s.proxy, "/a").await;
    let url_b = callback_url(&client, &s.proxy, "/b").await;
    let code_a = url::Url::parse(&url_a)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut crossed = url::Url::parse(&url_b).unwrap();
    let state_b = crossed
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    crossed
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code_a)
        .append_pair("state", &state_b);
    let resp = client.get(crossed.as_str()).await;
    // only the provider can tell that a code was issued for another
    // challenge: gatehouse sends B's verifier, the provider refuses the code
    // (invalid_grant) and gatehouse reports a failed exchange at the
    // provider as 502, never a session
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
    assert!(!has_session_cookie(&resp));
    let tokens = s.idp.token_requests();
    assert_eq!(tokens.len(), 1);
    let verifier = tokens[0].params.get("code_verifier").unwrap();
    let challenges: Vec<String> = s
        .idp
        .authorize_requests()
        .iter()
        .map(|a| a.get("code_challenge").unwrap().to_owned())
        .collect();
    assert_eq!(
        challenges.len(),
        2,
        "two logins, two challenges: {challenges:?}"
    );
    assert_ne!(challenges[0], challenges[1]);
    assert_eq!(
        pkce_challenge(verifier),
        challenges[1],
        "gatehouse sent the verifier of the login whose state came back (B)"
    );
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn logins_started_in_several_tabs_all_complete() {
    let s = stack("").await;
    let client = TestClient::new();
    let first = callback_url(&client, &s.proxy, "/tab-one").await;
    let second = callback_url(&client, &s.proxy, "/tab-two").await;
    let r2 = client.get(&second).await;
    assert_eq!(r2.status, StatusCode::FOUND, "{}", r2.text());
    assert_eq!(r2.location().as_deref(), Some("/tab-two"));
    let r1 = client.get(&first).await;
    assert_eq!(r1.status, StatusCode::FOUND, "{}", r1.text());
    assert_eq!(r1.location().as_deref(), Some("/tab-one"));
}

#[tokio::test]
async fn rotated_provider_keys_are_accepted_after_one_jwks_refetch() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let before = s.idp.jwks_fetches();
    s.idp.set_knobs(|k| {
        k.publish_keys = vec!["key1", "key2"];
        k.signing_kid = "key2";
    });
    let fresh = TestClient::new();
    login(&fresh, &s.proxy, "/").await;
    assert_eq!(
        s.idp.jwks_fetches(),
        before + 1,
        "exactly one refetch for the new kid"
    );

    // a flood of unknown kids from the token endpoint: the callbacks wait
    // for the next allowed refetch and share it
    s.idp.set_knobs(|k| k.signing_kid = "key9");
    let clients: Vec<TestClient> = (0..5).map(|_| TestClient::new()).collect();
    let mut urls = Vec::new();
    for c in &clients {
        urls.push(callback_url(c, &s.proxy, "/").await);
    }
    let answers =
        futures_util::future::join_all(clients.iter().zip(&urls).map(|(c, u)| c.get(u))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        s.idp.jwks_fetches(),
        before + 2,
        "refetches are rate limited and shared"
    );
}

#[tokio::test]
async fn sign_out_clears_the_session_and_ends_the_provider_session() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let out = client.get(&s.proxy.url("/oauth2/sign_out?rd=%2Fbye")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let loc = out.location_url().unwrap();
    assert_eq!(loc.path(), "/logout");
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert!(
        q.get("id_token_hint")
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some(s.proxy.url("/bye").as_str())
    );
    assert_eq!(q.get("client_id").map(String::as_str), Some("gatehouse"));
    let cleared = out
        .set_cookie(SESSION_COOKIE)
        .expect("session cookie cleared");
    assert_eq!(cleared.value(), "");
    assert_eq!(
        client.get_api(&s.proxy.url("/")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // a hostile rd on sign-out falls back to this host's root
    let out = client
        .get(
            &s.proxy
                .url("/oauth2/sign_out?rd=https%3A%2F%2Fevil.example%2F"),
        )
        .await;
    let q: std::collections::HashMap<String, String> = out
        .location_url()
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some(s.proxy.url("/").as_str())
    );
}

#[tokio::test]
async fn userinfo_shows_the_identity_and_never_tokens() {
    let s = stack("pass_access_token = true\npass_authorization_header = true").await;
    let client = TestClient::new();
    assert_eq!(
        client
            .get_api(&s.proxy.url("/oauth2/userinfo"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    login(&client, &s.proxy, "/").await;
    let info = client.get_api(&s.proxy.url("/oauth2/userinfo")).await;
    assert_eq!(info.status, StatusCode::OK);
    let v = info.json();
    assert_eq!(v["user"], alice_sub(&s.idp));
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["preferredUsername"], "alice");
    assert_eq!(v["groups"], serde_json::json!(["admins", "staff"]));
    assert!(
        !info.text().contains("eyJ"),
        "no JWT in userinfo: {}",
        info.text()
    );
}

#[tokio::test]
async fn tokens_are_forwarded_only_when_asked_and_client_authorization_is_replaced() {
    let s = stack("pass_access_token = true\npass_authorization_header = true").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let resp = client
        .get_with(&s.proxy.url("/"), &[("authorization", "Bearer forged")])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    // the very tokens the provider issued, each in its own place: a
    // swapped access and ID token fails here
    let issued = s.idp.issued_tokens();
    assert_eq!(issued.len(), 1);
    let access = issued[0]["access_token"].as_str().unwrap();
    let id = issued[0]["id_token"].as_str().unwrap();
    assert_ne!(access, id);
    assert_eq!(seen.header("x-forwarded-access-token"), Some(access));
    assert_eq!(
        seen.header_all("authorization"),
        [format!("Bearer {id}").as_str()],
        "the client's Authorization is replaced by the ID token"
    );
}

#[tokio::test]
async fn users_outside_the_email_domains_get_403_and_no_session() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(r#"email_domain = ["example.com"]"#, &idp, &upstream).await;
    let client = TestClient::new();
    let mut authorize = start_login(&client, &proxy, "/").await;
    authorize.set_path("/authorize/approve");
    authorize.query_pairs_mut().append_pair("user", "carol");
    let back = client.get(authorize.as_str()).await.location().unwrap();
    let resp = client.get(&back).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    let text = resp.text();
    // what happened, who they are signed in as, and the next step
    assert!(text.contains("You do not have access"), "{text}");
    assert!(
        text.contains("not in one of the domains allowed on this site"),
        "{text}"
    );
    assert!(text.contains("You are signed in as"), "{text}");
    assert!(text.contains("carol@"), "{text}");
    assert!(text.contains("contact the administrator"), "{text}");
    assert!(text.contains("href=\"/oauth2/sign_out\""), "{text}");
    assert_no_internals(&text);
    assert!(!has_session_cookie(&resp));
    // and someone inside the domain gets in
    let ok = TestClient::new();
    login_as(&ok, &proxy, "/", "bob").await;
    assert_eq!(ok.get(&proxy.url("/")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn readiness_waits_for_discovery_and_retries() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    idp.set_knobs(|k| k.discovery_status = Some(500));
    let upstream = Recorder::start().await;
    let proxy = TestProxy::builder(&idp, &upstream).no_wait().start().await;
    let client = TestClient::new();
    assert_eq!(client.get(&proxy.url("/ping")).await.status, StatusCode::OK);
    assert_eq!(
        client.get(&proxy.url("/ready")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let login_now = client.get(&proxy.url("/")).await;
    assert_eq!(login_now.status, StatusCode::SERVICE_UNAVAILABLE);
    idp.set_knobs(|k| k.discovery_status = None);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client.get(&proxy.url("/ready")).await.status != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    login(&client, &proxy, "/").await;
}

#[tokio::test]
async fn hostile_return_urls_end_on_this_hosts_root() {
    let s = stack("").await;
    let hostile = [
        "//evil.example",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "https://evil.example/",
        "https://127.0.0.1.evil.example/",
        "https://127.0.0.1@evil.example/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "/\t/evil.example",
    ];
    for rd in hostile {
        let client = TestClient::new();
        let enc: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
        let start = client
            .get(&s.proxy.url(&format!("/oauth2/start?rd={enc}")))
            .await;
        assert_eq!(start.status, StatusCode::FOUND);
        let back = client
            .get(&start.location().unwrap())
            .await
            .location()
            .unwrap();
        let done = client.get(&back).await;
        assert_eq!(done.status, StatusCode::FOUND, "{rd}");
        assert_eq!(
            done.location().as_deref(),
            Some("/"),
            "{rd} must fall back to /"
        );
    }
    // and a good one on this host is kept
    let client = TestClient::new();
    let good = s.proxy.url("/ok?x=1");
    let enc: String = url::form_urlencoded::byte_serialize(good.as_bytes()).collect();
    let start = client
        .get(&s.proxy.url(&format!("/oauth2/start?rd={enc}")))
        .await;
    let back = client
        .get(&start.location().unwrap())
        .await
        .location()
        .unwrap();
    assert_eq!(
        client.get(&back).await.location().as_deref(),
        Some(good.as_str())
    );
}

#[tokio::test]
async fn a_session_too_big_for_one_cookie_is_chunked() {
    let s = stack("").await;
    let groups: Vec<String> = (0..300).map(|i| format!("team-{i:04}")).collect();
    s.idp.set_knobs(|k| {
        k.extra_id_token_claims
            .insert("groups".into(), serde_json::json!(groups));
    });
    let client = TestClient::new();
    let cb = login(&client, &s.proxy, "/").await;
    let names: Vec<String> = cb
        .set_cookies()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert!(
        names.contains(&format!("{SESSION_COOKIE}_0"))
            && names.contains(&format!("{SESSION_COOKIE}_1")),
        "{names:?}"
    );
    assert_eq!(client.get(&s.proxy.url("/")).await.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        seen.header("x-forwarded-groups")
            .unwrap()
            .split(',')
            .count(),
        300
    );
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_client_do_not_reach_the_upstream() {
    let s = stack("trusted_proxy = [\"10.0.0.0/8\"]").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let spoofs = [
        ("Forwarded", "for=1.2.3.4;proto=https"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Original-URL", "https://evil.example/"),
    ];
    assert_eq!(
        client.get_with(&s.proxy.url("/"), &spoofs).await.status,
        StatusCode::OK
    );
    let seen = s.upstream.last().unwrap();
    for (name, _) in spoofs {
        assert!(
            seen.header(name).is_none(),
            "{name} from an untrusted client reached the upstream"
        );
    }
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// Login-state cookies the jar holds for the proxy, name → value.
fn login_cookies(client: &TestClient, proxy: &TestProxy) -> Vec<(String, String)> {
    client
        .cookies_for(&proxy.host())
        .into_iter()
        .filter(|(n, _)| n.contains("_csrf_"))
        .collect()
}

#[tokio::test]
async fn a_callback_replayed_with_its_cookies_makes_no_second_token_request() {
    let s = stack("").await;
    let client = TestClient::new();
    let url = callback_url(&client, &s.proxy, "/").await;
    let cookies = login_cookies(&client, &s.proxy);
    assert_eq!(cookies.len(), 1, "one login in flight");
    assert_eq!(client.get(&url).await.status, StatusCode::FOUND);
    assert_eq!(s.idp.token_requests().len(), 1);

    // the attacker (or a double submit) brings the login-state cookie back
    let replay = TestClient::new();
    for (name, value) in &cookies {
        replay.set_cookie(&s.proxy.host(), name, value);
    }
    let again = replay.get(&url).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text());
    assert!(!has_session_cookie(&again));
    assert_eq!(
        s.idp.token_requests().len(),
        1,
        "a redeemed state must not reach the token endpoint again"
    );
}

#[tokio::test]
async fn a_callback_with_a_repeated_code_state_or_iss_is_refused_before_the_token_request() {
    let s = stack("").await;
    let client = TestClient::new();
    let url = callback_url(&client, &s.proxy, "/").await;
    let cookies = login_cookies(&client, &s.proxy);
    let state = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let issuer = s.idp.issuer();
    for extra in [
        "code=other".to_owned(),
        format!("state={state}"),
        format!(
            "iss={i}&iss={i}",
            i = url::form_urlencoded::byte_serialize(issuer.as_bytes()).collect::<String>()
        ),
    ] {
        let c = TestClient::new();
        for (name, value) in &cookies {
            c.set_cookie(&s.proxy.host(), name, value);
        }
        let resp = c.get(&format!("{url}&{extra}")).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{extra}: {}",
            resp.text()
        );
        assert!(!has_session_cookie(&resp), "{extra}");
    }
    assert!(
        s.idp.token_requests().is_empty(),
        "no repeated parameter may reach the token endpoint"
    );
    // the untouched callback still works: the refusals redeemed nothing
    assert_eq!(client.get(&url).await.status, StatusCode::FOUND);
}

async fn iss_stack(advertise: bool, iss: support::idp::ResponseIss) -> Stack {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    idp.set_knobs(|k| {
        k.advertise_iss_parameter = advertise;
        k.response_iss = iss;
    });
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    Stack {
        idp,
        upstream,
        proxy,
    }
}

#[tokio::test]
async fn an_advertised_iss_must_come_back_equal_to_the_issuer_before_the_code_is_redeemed() {
    use support::idp::ResponseIss;
    let s = iss_stack(true, ResponseIss::Issuer).await;
    let client = TestClient::new();
    let ok = login(&client, &s.proxy, "/").await;
    assert_eq!(ok.status, StatusCode::FOUND);
    assert!(has_session_cookie(&ok));
    assert_eq!(s.idp.token_requests().len(), 1);

    for bad in [
        ResponseIss::Omit,
        ResponseIss::Other("https://attacker.example".to_owned()),
        ResponseIss::Other(format!("{}/", s.idp.issuer().trim_end_matches('/'))),
    ] {
        s.idp.set_knobs(|k| k.response_iss = bad.clone());
        let c = TestClient::new();
        let url = callback_url(&c, &s.proxy, "/").await;
        let resp = c.get(&url).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            resp.text()
        );
        assert!(!has_session_cookie(&resp), "{bad:?}");
    }
    assert_eq!(
        s.idp.token_requests().len(),
        1,
        "a mixed-up answer must not reach the token endpoint"
    );
}

#[tokio::test]
async fn an_iss_sent_without_being_advertised_must_still_match() {
    use support::idp::ResponseIss;
    let s = iss_stack(
        false,
        ResponseIss::Other("https://attacker.example".to_owned()),
    )
    .await;
    let c = TestClient::new();
    let url = callback_url(&c, &s.proxy, "/").await;
    let resp = c.get(&url).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(s.idp.token_requests().is_empty());
    // the right one, unadvertised, is accepted
    s.idp.set_knobs(|k| k.response_iss = ResponseIss::Issuer);
    let ok = login(&TestClient::new(), &s.proxy, "/").await;
    assert!(has_session_cookie(&ok), "{}", ok.text());
}

#[tokio::test]
async fn a_provider_error_without_this_browsers_login_state_shows_a_generic_page() {
    let s = stack("").await;
    let client = TestClient::new();
    let planted = "Call+0900-SCAM+to+restore+your+account";
    for state in ["&state=forged", ""] {
        let resp = client
            .get(&s.proxy.url(&format!(
                "/oauth2/callback?error=access_denied&error_description={planted}{state}"
            )))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST);
        let text = resp.text();
        assert!(!text.contains("0900-SCAM"), "{text}");
        assert!(!text.contains("access_denied"), "{text}");
    }
}

#[tokio::test]
async fn an_id_token_not_valid_yet_or_with_a_non_numeric_time_is_refused() {
    let s = stack("").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases = [
        ("nbf", serde_json::json!(now + 3600)),
        ("nbf", serde_json::json!(now.to_string())),
        ("iat", serde_json::json!(now.to_string())),
        ("exp", serde_json::json!((now + 300).to_string())),
    ];
    for (claim, value) in cases {
        s.idp.set_knobs(|k| {
            k.extra_id_token_claims =
                serde_json::Map::from_iter([(claim.to_owned(), value.clone())]);
        });
        let c = TestClient::new();
        let url = callback_url(&c, &s.proxy, "/").await;
        let resp = c.get(&url).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{claim}={value}: {}",
            resp.text()
        );
        assert!(!has_session_cookie(&resp), "{claim}={value}");
    }
    // an nbf already reached is fine
    s.idp.set_knobs(|k| {
        k.extra_id_token_claims =
            serde_json::Map::from_iter([("nbf".to_owned(), serde_json::json!(now - 5))]);
    });
    let ok = login(&TestClient::new(), &s.proxy, "/").await;
    assert!(has_session_cookie(&ok), "{}", ok.text());
}

#[tokio::test]
async fn twenty_starts_leave_a_bounded_number_of_login_cookies_and_the_newest_login_works() {
    let s = stack("").await;
    let client = TestClient::new();
    let mut last = None;
    for _ in 0..20 {
        let resp = client.get(&s.proxy.url("/oauth2/start?rd=/x")).await;
        assert_eq!(resp.status, StatusCode::FOUND);
        last = resp.location();
    }
    let in_flight = login_cookies(&client, &s.proxy);
    assert!(
        in_flight.len() <= 4,
        "{} login-state cookies kept",
        in_flight.len()
    );
    let header = client
        .cookie_header_for(&s.proxy.url("/"))
        .unwrap_or_default();
    assert!(
        header.len() <= 2048,
        "Cookie header grew to {} bytes",
        header.len()
    );
    // the newest login still completes
    let authorize = client.get(&last.unwrap()).await;
    let callback = client.get(&authorize.location().unwrap()).await;
    assert_eq!(callback.status, StatusCode::FOUND, "{}", callback.text());
    assert!(has_session_cookie(&callback));
}

#[tokio::test]
async fn concurrent_logins_right_after_a_key_rotation_share_one_jwks_fetch_and_all_succeed() {
    let s = stack("").await;
    let before = s.idp.jwks_fetches();
    s.idp.set_knobs(|k| {
        k.publish_keys = vec!["key1", "key2"];
        k.signing_kid = "key2";
    });
    let clients: Vec<TestClient> = (0..4).map(|_| TestClient::new()).collect();
    let mut urls = Vec::new();
    for c in &clients {
        urls.push(callback_url(c, &s.proxy, "/").await);
    }
    let answers =
        futures_util::future::join_all(clients.iter().zip(&urls).map(|(c, u)| c.get(u))).await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::FOUND, "{}", a.text());
        assert!(has_session_cookie(a));
    }
    assert_eq!(s.idp.jwks_fetches(), before + 1, "one shared refetch");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_about_once_and_a_rotation_right_after_still_signs_in()
 {
    let s = stack("").await;
    let before = s.idp.jwks_fetches();
    // anyone can post logout tokens: kids the provider never published
    // (key2 is not published yet), all at once
    let tokens: Vec<String> = (0..30)
        .map(|_| {
            s.idp
                .mint_logout_token(None, Some("someone"), Some(LogoutTokenMutation::UnknownKid))
        })
        .collect();
    let url = s.proxy.url("/oauth2/backchannel-logout");
    let answers = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| s.idp.send_backchannel_logout(&url, t)),
    )
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 400, "{body}");
    }
    let after_flood = s.idp.jwks_fetches();
    assert!(
        after_flood <= before + 1,
        "{} fetches for one flood",
        after_flood - before
    );

    // the provider really rotates now: the next user must still get in
    s.idp.set_knobs(|k| {
        k.publish_keys = vec!["key1", "key2"];
        k.signing_kid = "key2";
    });
    let started = std::time::Instant::now();
    let ok = login(&TestClient::new(), &s.proxy, "/").await;
    assert!(has_session_cookie(&ok), "{}", ok.text());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(s.idp.jwks_fetches() <= after_flood + 1);
}

#[tokio::test]
async fn a_logout_token_not_valid_yet_or_with_a_non_numeric_time_is_refused() {
    let s = stack("").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = s.proxy.url("/oauth2/backchannel-logout");
    for (claim, value) in [
        ("nbf", serde_json::json!(now + 3600)),
        ("nbf", serde_json::json!(now.to_string())),
        ("exp", serde_json::json!((now + 120).to_string())),
    ] {
        let extra = serde_json::Map::from_iter([(claim.to_owned(), value.clone())]);
        let token = s.idp.mint_logout_token(
            None,
            Some("someone"),
            Some(LogoutTokenMutation::Claims(extra)),
        );
        let (status, body) = s.idp.send_backchannel_logout(&url, &token).await;
        assert_eq!(status, 400, "{claim}={value}: {body}");
    }
    let fine = serde_json::Map::from_iter([("nbf".to_owned(), serde_json::json!(now - 5))]);
    let token = s.idp.mint_logout_token(
        None,
        Some("someone"),
        Some(LogoutTokenMutation::Claims(fine)),
    );
    let (status, body) = s.idp.send_backchannel_logout(&url, &token).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn with_the_shared_replay_guard_unreachable_a_callback_fails_closed_and_redeems_nothing() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    // a "Redis" that accepts connections and never answers
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redis = format!("redis://{}", silent.local_addr().unwrap());
    let proxy = TestProxy::builder(&idp, &upstream)
        .set("redis_connection_url", redis)
        .no_wait()
        .start()
        .await;
    let client = TestClient::new();
    // discovery runs in the background; the store never gets ready
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let authorize = loop {
        let r = client.get(&proxy.url("/oauth2/start?rd=/")).await;
        if r.status == StatusCode::FOUND {
            break r.location().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "provider never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let callback = client.get(&authorize).await.location().unwrap();
    let resp = client.get(&callback).await;
    assert_eq!(
        resp.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        resp.text()
    );
    assert!(!has_session_cookie(&resp));
    assert!(
        idp.token_requests().is_empty(),
        "an unconfirmed state must not be redeemed"
    );
    drop(silent);
}

/// Panics when a user page shows a config key, Markdown backticks or a Rust
/// name.
fn assert_no_internals(text: &str) {
    for internal in [
        "`",
        "email_domain",
        "allowed_group",
        "allowed_role",
        "whitelist_domain",
        "client_secret",
        "LoginState",
        "Error::",
        "IdpError",
        "Missing",
        "_",
    ] {
        let visible = text
            .split('<')
            .filter_map(|t| t.split_once('>').map(|(_, v)| v))
            .collect::<String>();
        assert!(
            !visible.contains(internal),
            "{internal:?} shown to the user: {visible}"
        );
    }
}

#[tokio::test]
async fn a_wrong_client_secret_says_it_is_a_configuration_problem_and_not_to_retry() {
    let s = stack("").await;
    s.idp
        .set_knobs(|k| k.token_endpoint_error = Some("invalid_client"));
    let client = TestClient::new();
    let url = callback_url(&client, &s.proxy, "/").await;
    let page = client.get(&url).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY);
    let text = page.text();
    assert!(text.contains("configuration problem"), "{text}");
    assert!(text.contains("contact the administrator"), "{text}");
    assert!(text.contains("will not help"), "{text}");
    assert!(!text.contains("Please try again"), "{text}");
    assert!(!text.contains("/oauth2/start"), "{text}");
    assert_no_internals(&text);
    // an API client gets the same verdict as JSON, without a retry link
    let api = TestClient::new();
    let url = callback_url(&api, &s.proxy, "/").await;
    let json = api.get_api(&url).await.json();
    assert_eq!(json["error"], "misconfigured", "{json}");
    assert!(json.get("start").is_none(), "{json}");
}

#[tokio::test]
async fn unknown_oauth2_paths_give_browsers_a_page_and_api_clients_json() {
    let s = stack("").await;
    let client = TestClient::new();
    for path in ["/oauth2/nope", "/oauth2/start/extra"] {
        let page = client.get(&s.proxy.url(path)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            page.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{path}: {:?}",
            page.headers
        );
        let text = page.text();
        assert!(text.contains("Page not found"), "{text}");
        assert!(text.contains("href=\"/\""), "{text}");
        assert_no_internals(&text);
        let api = client.get_api(&s.proxy.url(path)).await;
        assert_eq!(api.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(api.json()["error"], "not_found", "{path}");
    }
    // a known endpoint asked with the wrong method: the same two answers
    let page = client
        .post_form(&s.proxy.url("/oauth2/userinfo"), &[("a", "b")])
        .await;
    assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn sign_out_without_rd_ends_on_a_signed_out_page_with_a_way_back_in() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    idp.set_knobs(|k| k.advertise_end_session = false);
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    let out = client.get(&proxy.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(out.location().as_deref(), Some("/oauth2/signed_out"));
    let page = client.get(&proxy.url("/oauth2/signed_out")).await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(text.contains("You are signed out"), "{text}");
    assert!(text.contains("href=\"/oauth2/start\""), "{text}");
    assert_no_internals(&text);
    // with an rd, sign-out goes there instead
    login(&client, &proxy, "/").await;
    let out = client.get(&proxy.url("/oauth2/sign_out?rd=%2Fbye")).await;
    assert_eq!(out.location().as_deref(), Some("/bye"));
}

#[tokio::test]
async fn sign_out_without_rd_asks_the_provider_to_return_to_the_signed_out_page() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let out = client.get(&s.proxy.url("/oauth2/sign_out")).await;
    let q: std::collections::HashMap<String, String> = out
        .location_url()
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some(s.proxy.url("/oauth2/signed_out").as_str())
    );
}

/// Issue 11: every page gatehouse renders says who the browser is signed
/// in as when it is, not only the 403: an unknown `/oauth2/` path, a
/// method an endpoint does not answer, a bare callback. A browser without
/// a session gets the same pages without it.
#[tokio::test]
async fn pages_under_oauth2_say_who_a_signed_in_browser_is() {
    let s = stack("").await;
    let client = TestClient::new();
    login(&client, &s.proxy, "/").await;
    let stranger = TestClient::new();
    for (path, status) in [
        ("/oauth2/nope", StatusCode::NOT_FOUND),
        ("/oauth2/callback", StatusCode::BAD_REQUEST),
    ] {
        let page = client.get(&s.proxy.url(path)).await;
        assert_eq!(page.status, status, "{path}: {}", page.text());
        let text = page.text();
        assert!(
            text.contains("You are signed in as <strong>alice@example.com</strong>"),
            "{path}: {text}"
        );
        let anonymous = stranger.get(&s.proxy.url(path)).await;
        assert_eq!(anonymous.status, status, "{path}");
        assert!(
            !anonymous.text().contains("signed in as"),
            "{path}: {}",
            anonymous.text()
        );
    }
    // an API client gets JSON, as before
    let api = client.get_api(&s.proxy.url("/oauth2/nope")).await;
    assert!(api.text().starts_with('{'), "{}", api.text());
}
