//! API bearer tokens over real HTTP (issue 10, item 5): in proxy mode and
//! through `/oauth2/auth` and `/oauth2/forward-auth`, a valid JWT from the
//! provider or an extra issuer stands for its user; a refused one gets 401
//! `invalid_token` with the RFC 9728 metadata URL, never a redirect; route
//! policies apply to tokens; the metadata document names the issuers.

use http::Method;
use serde_json::json;

use crate::support::client::{TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp, TokenMutation};
use crate::support::proxy::{TestProxy, login};
use crate::support::upstream::Recorder;

const ALICE: &str = "uid-alice-0001";
const BOB: &str = "uid-bob-0001";
/// The audience the extra issuer's tokens are for (the mock's access
/// tokens say `account`).
const EXTRA_AUD: &str = "account";

struct Bearer {
    idp: MockIdp,
    extra: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
}

/// `/api` and `/admin-api` take tokens (the second for `admins` only);
/// every other path is today's session-only default.
async fn bearer_stack(more: &str) -> Bearer {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let extra = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let toml = format!(
        r#"
        extra_jwt_issuers = ["{}={EXTRA_AUD}"]
        {more}
        [[routes]]
        path = "/api"
        bearer = true
        api = true
        [[routes]]
        path = "/admin-api"
        bearer = true
        allowed_groups = ["admins"]
        "#,
        extra.issuer()
    );
    let proxy = TestProxy::start(&toml, &idp, &upstream).await;
    Bearer {
        idp,
        extra,
        upstream,
        proxy,
    }
}

fn id_token(idp: &MockIdp, user: &str, mutation: Option<TokenMutation>) -> String {
    idp.try_mint_id_token(user, None, mutation).unwrap()
}

async fn get_bearer(proxy: &TestProxy, path: &str, token: &str, html: bool) -> TestResponse {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if !html {
        headers.push(("accept", "application/json"));
    }
    TestClient::new().get_with(&proxy.url(path), &headers).await
}

fn metadata_url(proxy: &TestProxy) -> String {
    proxy.url("/.well-known/oauth-protected-resource")
}

fn assert_invalid_token(r: &TestResponse, metadata: &str, what: &str) {
    assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.text());
    assert_eq!(r.location(), None, "{what}: never a redirect");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert_eq!(
        challenge,
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\""),
        "{what}"
    );
    assert_eq!(r.json()["error"], "invalid_token", "{what}");
}

#[tokio::test]
async fn a_valid_bearer_token_reaches_the_upstream_as_its_user_and_the_token_does_not() {
    let s = bearer_stack("").await;
    let token = id_token(&s.idp, "alice", None);
    let r = get_bearer(&s.proxy, "/api/orders", &token, false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/api/orders");
    assert_eq!(seen.header("x-forwarded-user"), Some(ALICE));
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("admins,staff"));
    assert_eq!(seen.header("authorization"), None, "the token stays here");
    // a second use is the cached verification: still alice
    let again = get_bearer(&s.proxy, "/api/orders", &token, false).await;
    assert_eq!(again.status.as_u16(), 200);
    assert_eq!(s.upstream.count(), 2);
}

#[tokio::test]
async fn the_token_goes_upstream_only_with_pass_authorization_header() {
    let s = bearer_stack("pass_authorization_header = true").await;
    let token = id_token(&s.idp, "alice", None);
    let r = get_bearer(&s.proxy, "/api/x", &token, false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let auth = format!("Bearer {token}");
    assert_eq!(
        s.upstream.last().unwrap().header("authorization"),
        Some(auth.as_str())
    );
}

#[tokio::test]
async fn the_token_goes_upstream_as_the_access_token_only_with_pass_access_token() {
    let s = bearer_stack("pass_access_token = true").await;
    let token = id_token(&s.idp, "alice", None);
    let r = get_bearer(&s.proxy, "/api/x", &token, false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        seen.header("x-forwarded-access-token"),
        Some(token.as_str())
    );
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn skip_jwt_bearer_tokens_takes_tokens_everywhere_without_routes() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("skip_jwt_bearer_tokens = true", &idp, &upstream).await;
    let token = id_token(&idp, "alice", None);
    let r = get_bearer(&proxy, "/anything", &token, true).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        upstream.last().unwrap().header("x-forwarded-user"),
        Some(ALICE)
    );
    // nginx asks without the original URL when there are no routes
    let auth = format!("Bearer {token}");
    let ok = TestClient::new()
        .get_with(
            &proxy.url("/oauth2/auth"),
            &[("authorization", auth.as_str())],
        )
        .await;
    assert_eq!(ok.status.as_u16(), 202, "{}", ok.text());
    assert_eq!(ok.header("x-auth-request-user"), Some(ALICE));
    let expired = id_token(&idp, "alice", Some(TokenMutation::Expired));
    let refused = get_bearer(&proxy, "/anything", &expired, true).await;
    assert_invalid_token(&refused, &metadata_url(&proxy), "expired, no routes");
}

#[tokio::test]
async fn refused_bearer_tokens_get_401_invalid_token_and_never_a_redirect() {
    let s = bearer_stack("").await;
    let metadata = metadata_url(&s.proxy);
    let cases = [
        ("expired", TokenMutation::Expired),
        ("wrong aud", TokenMutation::WrongAudience),
        ("wrong issuer", TokenMutation::WrongIssuer),
        ("alg none", TokenMutation::AlgNone),
        ("unknown kid", TokenMutation::UnknownKid),
        ("bad signature", TokenMutation::BadSignature),
        (
            "HS256 with the public key",
            TokenMutation::Hs256WithPublicKey,
        ),
    ];
    for (what, mutation) in cases {
        let token = id_token(&s.idp, "alice", Some(mutation));
        // a browser navigation too: a token's refusal is never a login
        let r = get_bearer(&s.proxy, "/admin-api/x", &token, true).await;
        assert_invalid_token(&r, &metadata, what);
    }
    let garbage = get_bearer(&s.proxy, "/api/x", "not-a-jwt", false).await;
    assert_invalid_token(&garbage, &metadata, "garbage");
    assert_eq!(
        s.upstream.count(),
        0,
        "nothing refused reached the upstream"
    );
}

#[tokio::test]
async fn an_extra_issuer_is_trusted_for_its_audience() {
    let s = bearer_stack("").await;
    let token = s.extra.try_mint_access_token("bob", None).unwrap();
    let r = get_bearer(&s.proxy, "/api/x", &token, false).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        s.upstream.last().unwrap().header("x-forwarded-user"),
        Some(BOB)
    );
    // its ID tokens are for another audience (its client id)
    let other_aud = id_token(&s.extra, "bob", None);
    let r = get_bearer(&s.proxy, "/api/x", &other_aud, false).await;
    assert_invalid_token(&r, &metadata_url(&s.proxy), "extra issuer, wrong aud");
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_answer_503_never_allow() {
    let s = bearer_stack("").await;
    s.extra.set_knobs(|k| k.jwks_status = Some(500));
    let token = s.extra.try_mint_access_token("bob", None).unwrap();
    let r = get_bearer(&s.proxy, "/api/x", &token, false).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text());
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn a_route_group_policy_applies_to_a_token() {
    let s = bearer_stack("").await;
    let bob = get_bearer(
        &s.proxy,
        "/admin-api/x",
        &id_token(&s.idp, "bob", None),
        false,
    )
    .await;
    assert_eq!(bob.status.as_u16(), 403, "{}", bob.text());
    assert_eq!(s.upstream.count(), 0);
    let alice = get_bearer(
        &s.proxy,
        "/admin-api/x",
        &id_token(&s.idp, "alice", None),
        false,
    )
    .await;
    assert_eq!(alice.status.as_u16(), 200, "{}", alice.text());
    assert_eq!(s.upstream.count(), 1);
}

#[tokio::test]
async fn without_a_token_a_bearer_route_takes_the_session_and_says_where_tokens_come_from() {
    let s = bearer_stack("").await;
    let anon = TestClient::new()
        .get_with(&s.proxy.url("/api/x"), &[("accept", "application/json")])
        .await;
    assert_eq!(anon.status.as_u16(), 401);
    assert_eq!(
        anon.header("www-authenticate"),
        Some(format!("Bearer resource_metadata=\"{}\"", metadata_url(&s.proxy)).as_str())
    );
    let browser = TestClient::new();
    login(&browser, &s.proxy, "/").await;
    let r = browser.get_api(&s.proxy.url("/api/x")).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        s.upstream.last().unwrap().header("x-forwarded-user"),
        Some(ALICE)
    );
}

#[tokio::test]
async fn a_token_on_a_route_without_bearer_is_not_looked_at() {
    let s = bearer_stack("").await;
    let token = id_token(&s.idp, "alice", None);
    let r = get_bearer(&s.proxy, "/elsewhere", &token, false).await;
    assert_eq!(r.status.as_u16(), 401, "no session: a challenge");
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(s.upstream.count(), 0);
}

#[tokio::test]
async fn the_protected_resource_metadata_names_the_issuers() {
    let s = bearer_stack("").await;
    let r = TestClient::new().get_api(&metadata_url(&s.proxy)).await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "resource": s.proxy.url(""),
            "authorization_servers": [s.idp.issuer(), s.extra.issuer()],
            "bearer_methods_supported": ["header"],
        })
    );
}

/// What a front proxy sends to `path` about `GET original`.
async fn ask(proxy: &TestProxy, path: &str, original: &str, token: String) -> TestResponse {
    let auth = format!("Bearer {token}");
    let uri = original.trim_start_matches("http://app.gatehouse.test");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-original-url", original),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.gatehouse.test"),
        ("x-forwarded-uri", uri),
        ("x-forwarded-method", "GET"),
        ("accept", "text/html"),
    ];
    TestClient::new()
        .request(Method::GET, &proxy.url(path), &headers, None)
        .await
}

#[tokio::test]
async fn forward_auth_accepts_bearer_tokens_like_the_proxy() {
    let s = bearer_stack("").await;
    let alice = id_token(&s.idp, "alice", None);
    let bob = id_token(&s.idp, "bob", None);
    let expired = id_token(&s.idp, "alice", Some(TokenMutation::Expired));
    let api = "http://app.gatehouse.test/api/orders";
    let admin = "http://app.gatehouse.test/admin-api/x";
    let metadata = "http://app.gatehouse.test/.well-known/oauth-protected-resource";
    for path in ["/oauth2/auth", "/oauth2/forward-auth"] {
        let ok = ask(&s.proxy, path, api, alice.clone()).await;
        assert!(ok.status.is_success(), "{path}: {}", ok.text());
        assert_eq!(ok.header("x-auth-request-user"), Some(ALICE), "{path}");
        assert_eq!(
            ok.header("x-auth-request-groups"),
            Some("admins,staff"),
            "{path}"
        );
        let denied = ask(&s.proxy, path, admin, bob.clone()).await;
        assert_eq!(denied.status.as_u16(), 403, "{path}");
        let refused = ask(&s.proxy, path, api, expired.clone()).await;
        assert_invalid_token(&refused, metadata, path);
    }
}
