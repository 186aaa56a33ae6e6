//! Checks that the mocks speak the real protocol, so the other tests can
//! trust them: the mock IdP (discovery, JWKS, authorize with PKCE S256, the
//! token endpoint with client authentication, logout, and its failure knobs),
//! the recording upstream (records, downloads, uploads, WebSocket echo, h2c)
//! and the test client's cookie jar, each talked to directly over HTTP,
//! without gatehouse; plus the `login` helpers that drive gatehouse.

// helpers below are not `#[test]` fns, which clippy's allow-*-in-tests skips
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mock_idp/profiles.rs"]
mod profiles;
#[path = "mock_idp/strict.rs"]
mod strict;
mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use support::client::TestClient;
use support::idp::{self, IdpOptions, MockIdp, TokenMutation};
use support::upstream::{self, Recorder};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9x2sWpYP8hbCE3eI0ACMl0o5e1vQ2wN4";

fn authorize_url(idp: &MockIdp, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&format!("{}/authorize", idp.base_url())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "gatehouse")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("state", "st4te")
        .append_pair("nonce", "n0nce");
    let has = |k: &str| extra.iter().any(|(name, _)| *name == k);
    if !has("code_challenge") {
        url.query_pairs_mut()
            .append_pair("code_challenge", &idp::pkce_challenge(VERIFIER));
    }
    if !has("code_challenge_method") {
        url.query_pairs_mut()
            .append_pair("code_challenge_method", "S256");
    }
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.into()
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Authorize (auto-approved) and return the code.
async fn code(client: &TestClient, idp: &MockIdp) -> String {
    let resp = client.get(&authorize_url(idp, &[])).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let back = resp.location_url().unwrap();
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some("st4te"));
    query_param(&back, "code").expect("code in callback")
}

async fn exchange(
    client: &TestClient,
    idp: &MockIdp,
    code: &str,
    verifier: &str,
) -> support::client::TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", verifier)
        .finish();
    client
        .request(
            Method::POST,
            &format!("{}/token", idp.base_url()),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                // base64("gatehouse:s3cret")
                ("authorization", "Basic Z2F0ZWhvdXNlOnMzY3JldA=="),
            ],
            Some(Bytes::from(body)),
        )
        .await
}

/// base64("gatehouse:s3cret")
const BASIC: &str = "Basic Z2F0ZWhvdXNlOnMzY3JldA==";

/// `POST`s `form` to the token endpoint with `authorization` (if not empty).
async fn token_form(
    client: &TestClient,
    idp: &MockIdp,
    authorization: &str,
    form: &[(&str, &str)],
) -> support::client::TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if !authorization.is_empty() {
        headers.push(("authorization", authorization));
    }
    client
        .request(
            Method::POST,
            &idp.token_endpoint(),
            &headers,
            Some(Bytes::from(body)),
        )
        .await
}

fn validation(idp: &MockIdp) -> Validation {
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["gatehouse"]);
    v.set_issuer(&[idp.issuer()]);
    v
}

fn verify(idp: &MockIdp, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let key = DecodingKey::from_rsa_pem(idp::KEY1_PUBLIC_PEM.as_bytes()).unwrap();
    jsonwebtoken::decode::<Value>(token, &key, &validation(idp)).map(|d| d.claims)
}

#[tokio::test]
async fn discovery_advertises_the_endpoints() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let client = TestClient::new();
    let url = format!("{}/.well-known/openid-configuration", idp.issuer());
    let doc = client.get_api(&url).await.json();
    assert_eq!(doc["issuer"], idp.issuer());
    assert!(!idp.issuer().ends_with('/'));
    assert_eq!(doc["token_endpoint"], format!("{}/token", idp.base_url()));
    assert_eq!(doc["jwks_uri"], format!("{}/jwks", idp.base_url()));
    assert_eq!(doc["code_challenge_methods_supported"][0], "S256");
    assert_eq!(idp.discovery_fetches(), 1);

    let slash = MockIdp::start(IdpOptions {
        issuer_trailing_slash: true,
        ..IdpOptions::default()
    })
    .await;
    let doc = client
        .get_api(&format!(
            "{}.well-known/openid-configuration",
            slash.issuer()
        ))
        .await
        .json();
    assert_eq!(doc["issuer"], format!("{}/", slash.base_url()));
}

#[tokio::test]
async fn code_flow_with_pkce_mints_verifiable_tokens() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    let code = code(&client, &idp).await;

    let resp = exchange(&client, &idp, &code, VERIFIER).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let tokens = resp.json();
    assert_eq!(tokens["token_type"], "Bearer");
    let claims = verify(&idp, tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"][0], "admins");
    assert_eq!(claims["azp"], "gatehouse");
    let header = jsonwebtoken::decode_header(tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some("key1"));

    let recorded = &idp.token_requests()[0];
    assert_eq!(recorded.params.get("code_verifier"), Some(VERIFIER));
    assert_eq!(
        recorded.basic_auth(),
        Some(("gatehouse".into(), "s3cret".into()))
    );

    // the code is single use
    let again = exchange(&client, &idp, &code, VERIFIER).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.json()["error"], "invalid_grant");

    // userinfo accepts the access token
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let info = client
        .get_with(
            &format!("{}/userinfo", idp.base_url()),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(info.json()["preferred_username"], "alice");

    // refresh rotates the refresh token
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
    let refreshed = token_form(&client, &idp, BASIC, &form).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    assert_ne!(refreshed.json()["refresh_token"].as_str(), Some(refresh));
    let reused = token_form(&client, &idp, BASIC, &form).await;
    assert_eq!(reused.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn token_endpoint_rejects_bad_verifier_and_bad_secret() {
    let idp = MockIdp::start(IdpOptions::auto_approving("bob")).await;
    let client = TestClient::new();
    let c = code(&client, &idp).await;
    let wrong = "x".repeat(50);
    let resp = exchange(&client, &idp, &c, &wrong).await;
    assert_eq!(
        (resp.status, resp.json()["error"].clone()),
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );

    let c = code(&client, &idp).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // base64("gatehouse:wrong"), with the registered method
    let wrong_secret = "Basic Z2F0ZWhvdXNlOndyb25n";
    let resp = token_form(&client, &idp, wrong_secret, &form).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "invalid_client");
    // the code was not spent by a request from an unauthenticated client
    let resp = token_form(&client, &idp, BASIC, &form).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    idp.set_knobs(|k| k.token_endpoint_status = Some(503));
    let resp = token_form(&client, &idp, BASIC, &form).await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn authorize_rejects_plain_pkce_and_honours_error_knob() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    let resp = client
        .get(&authorize_url(&idp, &[("code_challenge_method", "plain")]))
        .await;
    let back = resp.location_url().unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("st4te"));

    idp.set_knobs(|k| k.authorize_error = Some("access_denied".into()));
    let back = client
        .get(&authorize_url(&idp, &[]))
        .await
        .location_url()
        .unwrap();
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );

    // unknown client: no redirect at all
    let resp = client
        .get(&authorize_url(&idp, &[]).replace("client_id=gatehouse", "client_id=evil"))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn login_page_lists_users_and_approve_link_works() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let client = TestClient::new();
    let page = client.get(&authorize_url(&idp, &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("carol") && html.contains("bob"), "{html}");
    let start = html.find("/authorize/approve?user=carol").unwrap();
    let href = &html[start..start + html[start..].find('"').unwrap()];
    let resp = client
        .get(&format!("{}{}", idp.base_url(), href.replace("&amp;", "&")))
        .await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let code = query_param(&resp.location_url().unwrap(), "code").unwrap();
    let tokens = exchange(&client, &idp, &code, VERIFIER).await.json();
    let claims = verify(&idp, tokens["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["email"], "carol@other.example");
}

#[tokio::test]
async fn jwks_publishes_keys_per_knob_and_counts_fetches() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let client = TestClient::new();
    let jwks = client
        .get_api(&format!("{}/jwks", idp.base_url()))
        .await
        .json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], "key1");
    idp.set_knobs(|k| {
        k.publish_keys = vec!["key1", "key2"];
        k.signing_kid = "key2";
    });
    let jwks = client
        .get_api(&format!("{}/jwks", idp.base_url()))
        .await
        .json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(idp.jwks_fetches(), 2);
    let token = idp.mint_id_token("alice", Some("n"), None);
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
        Some("key2")
    );
}

#[tokio::test]
async fn token_mutations_break_verification() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let mint = |m| idp.mint_id_token("alice", Some("n0nce"), Some(m));
    assert!(verify(&idp, &idp.mint_id_token("alice", Some("n0nce"), None)).is_ok());
    for m in [
        TokenMutation::Expired,
        TokenMutation::WrongIssuer,
        TokenMutation::WrongAudience,
        TokenMutation::BadSignature,
        TokenMutation::AlgNone,
        TokenMutation::Hs256WithPublicKey,
        TokenMutation::UnknownKid,
    ] {
        assert!(verify(&idp, &mint(m)).is_err(), "{m:?} verified");
    }
    assert_eq!(
        jsonwebtoken::decode_header(mint(TokenMutation::Hs256WithPublicKey))
            .unwrap()
            .alg,
        Algorithm::HS256
    );
    assert_eq!(
        verify(&idp, &mint(TokenMutation::WrongNonce)).unwrap()["nonce"],
        "not-the-nonce-you-sent"
    );
    assert!(
        verify(&idp, &mint(TokenMutation::MissingNonce))
            .unwrap()
            .get("nonce")
            .is_none()
    );
    let future = verify(&idp, &mint(TokenMutation::IatInFuture)).unwrap();
    assert!(future["iat"].as_i64().unwrap() > future["exp"].as_i64().unwrap() - 3600);
    let access = idp.mint_access_token("bob", None);
    let mut v = validation(&idp);
    v.set_audience(&["account"]);
    let key = DecodingKey::from_rsa_pem(idp::KEY1_PUBLIC_PEM.as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<Value>(&access, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["realm_access"]["roles"][0], "staff");
}

#[tokio::test]
async fn logout_records_and_redirects() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let client = TestClient::new();
    let url = format!(
        "{}/logout?post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fbye&state=s",
        idp.base_url()
    );
    let resp = client.get(&url).await;
    assert_eq!(
        resp.location().as_deref(),
        Some("http://127.0.0.1:9/bye?state=s")
    );
    assert_eq!(idp.logout_requests()[0].params.get("state"), Some("s"));
}

#[tokio::test]
async fn dropping_the_idp_closes_its_connections() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let client = TestClient::new().with_timeout(Duration::from_secs(5));
    let url = format!("{}/jwks", idp.base_url());
    assert_eq!(client.get_api(&url).await.status, StatusCode::OK);
    drop(idp);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let req = http::Request::get(&url)
        .body(support::client::empty())
        .unwrap();
    assert!(client.send(req).await.is_err());
}

#[tokio::test]
async fn recorder_records_and_renders_headers() {
    let up = Recorder::start().await;
    let client = TestClient::new();
    let resp = client
        .get_with(
            &format!("{}/some/page?q=1", up.url()),
            &[("x-forwarded-user", "<alice>")],
        )
        .await;
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(resp.text().contains("&lt;alice&gt;"));
    assert!(resp.text().contains("class=\"identity\""));
    let last = up.last().unwrap();
    assert_eq!(
        last.uri.path_and_query().unwrap().as_str(),
        "/some/page?q=1"
    );
    assert_eq!(last.header("x-forwarded-user"), Some("<alice>"));

    let json = client
        .get_with(&format!("{}/__json", up.url()), &[("x-test", "1")])
        .await
        .json();
    assert_eq!(json["headers"]["x-test"], "1");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn recorder_streams_downloads_and_uploads() {
    let up = Recorder::start().await;
    let client = TestClient::new();
    let n = 3 * 1024 * 1024 + 7;
    let resp = client
        .get(&format!("{}/__download?bytes={n}", up.url()))
        .await;
    assert_eq!(resp.body.len(), n);
    assert_eq!(
        upstream::sha256_hex(&resp.body),
        upstream::pattern_sha256(n as u64)
    );
    assert_eq!(resp.body[300], upstream::pattern_byte(300));
    let chunked = client
        .get(&format!("{}/__download?bytes=100000&chunked=1", up.url()))
        .await;
    assert!(chunked.header("content-length").is_none());
    assert_eq!(chunked.body.len(), 100_000);

    let body = Bytes::from(vec![7_u8; 2 * 1024 * 1024]);
    let resp = client
        .request(
            Method::POST,
            &format!("{}/__upload", up.url()),
            &[],
            Some(body.clone()),
        )
        .await;
    let json = resp.json();
    assert_eq!(json["bytes"], body.len());
    assert_eq!(json["sha256"], upstream::sha256_hex(&body));
    assert_eq!(up.last().unwrap().body_sha256, upstream::sha256_hex(&body));
}

#[tokio::test]
async fn recorder_echoes_websockets_and_speaks_h2c() {
    let up = Recorder::start().await;
    let ws_url = format!("ws://{}/__ws", up.addr());
    let (mut ws, resp) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1_u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1_u8, 2, 3])
    );
    ws.close(None).await.unwrap();

    let h2 = TestClient::h2c();
    let resp = h2.get(&format!("{}/__slow?ms=20", up.url())).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(up.last().unwrap().version, http::Version::HTTP_2);
}

#[tokio::test]
async fn client_cookie_jar_follows_set_cookie_rules() {
    let up = Recorder::start().await;
    let client = TestClient::new();
    let set = |cookies: &[&str]| {
        let mut url = Url::parse(&format!("{}/__set_cookie", up.url())).unwrap();
        for c in cookies {
            url.query_pairs_mut().append_pair("c", c);
        }
        url.to_string()
    };
    let resp = client
        .get(&set(&[
            "a=1; Path=/",
            "b=2; Path=/oauth2",
            "c=3; Max-Age=3600",
        ]))
        .await;
    assert_eq!(resp.set_cookies().len(), 3);
    assert_eq!(client.cookies_for(&up.url()).len(), 3);

    client.get(&format!("{}/x", up.url())).await;
    assert_eq!(up.last().unwrap().header("cookie"), Some("a=1; c=3"));
    client.get(&format!("{}/oauth2/callback", up.url())).await;
    assert_eq!(up.last().unwrap().header("cookie"), Some("b=2; a=1; c=3"));

    client
        .get(&set(&[
            "a=; Max-Age=0",
            "c=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ]))
        .await;
    assert_eq!(client.cookie("127.0.0.1", "a"), None);
    assert_eq!(client.cookie("127.0.0.1", "c"), None);
    client.set_cookie("127.0.0.1:1234", "t", "tampered");
    client.get(&format!("{}/y", up.url())).await;
    assert_eq!(up.last().unwrap().header("cookie"), Some("t=tampered"));
    client.clear_cookies();
    client.get(&format!("{}/y", up.url())).await;
    assert_eq!(up.last().unwrap().header("cookie"), None);
}

#[tokio::test]
async fn login_helper_signs_in_through_gatehouse() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let up = Recorder::start().await;
    let proxy = support::proxy::TestProxy::start("", &idp, &up).await;
    let client = TestClient::new();
    support::proxy::login(&client, &proxy, "/private/page?x=1").await;
    let resp = client.get(&proxy.url("/private/page?x=1")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = up.last().unwrap();
    assert_eq!(seen.path(), "/private/page");
    assert!(
        seen.header("x-forwarded-email").is_some(),
        "{:?}",
        seen.headers
    );
    let verifier = idp.token_requests()[0]
        .params
        .get("code_verifier")
        .map(str::len);
    assert!(verifier.is_some_and(|n| n >= 43));
    proxy.shutdown().await;
}

#[tokio::test]
async fn login_as_uses_the_login_page_link() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let up = Recorder::start().await;
    let proxy = support::proxy::TestProxy::builder(&idp, &up)
        .toml("email_domain = [\"other.example\"]")
        .start()
        .await;
    let client = TestClient::new();
    support::proxy::login_as(&client, &proxy, "/", "carol").await;
    let resp = client.get(&proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert!(proxy.config_toml().contains("other.example"));
}
