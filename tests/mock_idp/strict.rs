//! The mock provider is as strict as a real one where a relying party could
//! get it wrong: registered redirect URIs, the registered client
//! authentication method, ZKAuth's exact JSON token request, the PKCE
//! verifier's alphabet; and it has keys of every family gatehouse accepts,
//! a userinfo `sub` knob, `sid` claims and back-channel logout tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::client::{TestClient, TestResponse};
use crate::support::idp::{
    self, BACKCHANNEL_LOGOUT_EVENT, ClientAuth, IdpOptions, KEY_IDS, LogoutTokenMutation, MockIdp,
    Profile, TokenMutation,
};
use bytes::Bytes;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9x2sWpYP8hbCE3eI0ACMl0o5e1vQ2wN4";
const BASIC: (&str, &str) = ("authorization", "Basic Z2F0ZWhvdXNlOnMzY3JldA=="); // gatehouse:s3cret

fn authorize_url(idp: &MockIdp, redirect: &str, challenge: &str) -> String {
    let mut url = Url::parse(&idp.authorize_endpoint()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "gatehouse")
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("state", "st4te")
        .append_pair("nonce", "n0nce")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    url.into()
}

async fn code_for(client: &TestClient, idp: &MockIdp, verifier: &str) -> String {
    let url = authorize_url(idp, REDIRECT, &idp::pkce_challenge(verifier));
    let resp = client.get(&url).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let back = resp.location_url().unwrap();
    back.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"))
}

async fn post(
    client: &TestClient,
    idp: &MockIdp,
    content_type: &str,
    headers: &[(&str, &str)],
    body: String,
) -> TestResponse {
    let mut all = vec![("content-type", content_type)];
    all.extend_from_slice(headers);
    client
        .request(
            Method::POST,
            &idp.token_endpoint(),
            &all,
            Some(Bytes::from(body)),
        )
        .await
}

async fn token_form(
    client: &TestClient,
    idp: &MockIdp,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let form_type = "application/x-www-form-urlencoded";
    post(client, idp, form_type, headers, body).await
}

fn status_and_error(resp: &TestResponse) -> (StatusCode, String) {
    let error = serde_json::from_slice::<Value>(&resp.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (resp.status, error)
}

#[tokio::test]
async fn authorize_answers_an_unregistered_redirect_uri_with_an_error_page_never_a_redirect() {
    let idp = MockIdp::start(IdpOptions {
        redirect_uris: vec![
            idp::DEFAULT_REDIRECT_URI.to_owned(),
            "http://app.gatehouse.test:8080/oauth2/callback".to_owned(),
        ],
        ..IdpOptions::auto_approving("alice")
    })
    .await;
    let client = TestClient::new();
    let challenge = idp::pkce_challenge(VERIFIER);
    for unregistered in [
        "http://127.0.0.1:9/oauth2/callback/extra",
        "http://127.0.0.1:9/oauth2/callback?x=1",
        "https://127.0.0.1:9/oauth2/callback",
        "http://127.0.0.2:9/oauth2/callback",
        "http://localhost:9/oauth2/callback",
        "http://app.gatehouse.test:8081/oauth2/callback",
        "http://app.gatehouse.test/oauth2/callback",
        "http://evil.example/oauth2/callback",
    ] {
        let resp = client
            .get(&authorize_url(&idp, unregistered, &challenge))
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{unregistered}");
        assert_eq!(resp.location(), None, "{unregistered}");
        assert!(
            resp.text().contains("invalid_request"),
            "{unregistered}: {}",
            resp.text()
        );
    }
    // registered: the loopback one on any port, the other exactly
    for registered in [
        "http://127.0.0.1:9/oauth2/callback",
        "http://127.0.0.1:54321/oauth2/callback",
        "http://app.gatehouse.test:8080/oauth2/callback",
    ] {
        let resp = client
            .get(&authorize_url(&idp, registered, &challenge))
            .await;
        assert_eq!(
            resp.status,
            StatusCode::FOUND,
            "{registered}: {}",
            resp.text()
        );
        assert!(resp.location().unwrap().starts_with(registered));
    }
    // one registered at runtime
    let late = "http://auth.gatehouse.test:4180/oauth2/callback";
    let resp = client.get(&authorize_url(&idp, late, &challenge)).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    idp.register_redirect_uri(late);
    let resp = client.get(&authorize_url(&idp, late, &challenge)).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
}

#[tokio::test]
async fn token_endpoint_takes_only_the_registered_client_authentication_method() {
    let basic: &[(&str, &str)] = &[];
    let post: &[(&str, &str)] = &[("client_id", "gatehouse"), ("client_secret", "s3cret")];
    let none: &[(&str, &str)] = &[("client_id", "gatehouse")];
    // (registered, secret, the request's method)
    for registered in [ClientAuth::Basic, ClientAuth::Post, ClientAuth::None] {
        let secret = (registered != ClientAuth::None).then(|| "s3cret".to_owned());
        let idp = MockIdp::start(IdpOptions {
            client_secret: secret,
            client_auth: Some(registered),
            ..IdpOptions::auto_approving("alice")
        })
        .await;
        assert_eq!(idp.client_auth(), registered);
        let client = TestClient::new();
        // `None` as the method sent: both at once, which no registration takes
        let attempts: [(Option<ClientAuth>, &[(&str, &str)], &[(&str, &str)]); 4] = [
            (Some(ClientAuth::Basic), &[BASIC], basic),
            (Some(ClientAuth::Post), &[], post),
            (Some(ClientAuth::None), &[], none),
            (None, &[BASIC], post),
        ];
        for (method, headers, fields) in attempts {
            let c = code_for(&client, &idp, VERIFIER).await;
            let mut form = vec![
                ("grant_type", "authorization_code"),
                ("code", c.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ];
            form.extend_from_slice(fields);
            let resp = token_form(&client, &idp, headers, &form).await;
            let expected = if method == Some(registered) {
                (StatusCode::OK, String::new())
            } else {
                (StatusCode::UNAUTHORIZED, "invalid_client".to_owned())
            };
            assert_eq!(
                status_and_error(&resp),
                expected,
                "registered {registered:?}, sent {method:?}: {}",
                resp.text()
            );
        }
    }
}

#[tokio::test]
async fn a_public_client_that_sends_a_secret_is_refused() {
    let idp = MockIdp::start(IdpOptions {
        client_secret: None,
        ..IdpOptions::auto_approving("alice")
    })
    .await;
    assert_eq!(idp.client_auth(), ClientAuth::None);
    let client = TestClient::new();
    let c = code_for(&client, &idp, VERIFIER).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "gatehouse"),
    ];
    let mut with_secret = form.to_vec();
    with_secret.push(("client_secret", "anything"));
    let resp = token_form(&client, &idp, &[], &with_secret).await;
    assert_eq!(
        status_and_error(&resp),
        (StatusCode::UNAUTHORIZED, "invalid_client".to_owned())
    );
    let resp = token_form(&client, &idp, &[BASIC], &form).await;
    assert_eq!(
        status_and_error(&resp),
        (StatusCode::UNAUTHORIZED, "invalid_client".to_owned())
    );
    // without: accepted (the refusals did not spend the code)
    let resp = token_form(&client, &idp, &[], &form).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

#[tokio::test]
async fn zkauth_token_request_is_parsed_strictly() {
    let idp = MockIdp::start(IdpOptions::provider(Profile::ZkAuth, "alice")).await;
    let client = TestClient::new();
    let c = code_for_zkauth(&client, &idp).await;
    let good = json!({
        "grant_type": "authorization_code",
        "code": c,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        "client_id": "gatehouse",
        "client_secret": "s3cret",
    });
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let bad: [(&str, String); 9] = [
        (
            "a number for a string",
            with("code_verifier", json!(12345)).to_string(),
        ),
        ("a boolean", with("client_secret", json!(true)).to_string()),
        ("null", with("client_id", Value::Null).to_string()),
        ("an array", with("code", json!([c])).to_string()),
        (
            "an unknown member",
            with("scope", json!("openid")).to_string(),
        ),
        ("a member in another case", {
            let mut b = without("client_id");
            b["Client_Id"] = json!("gatehouse");
            b.to_string()
        }),
        ("a missing member", without("redirect_uri").to_string()),
        ("not an object", json!([good]).to_string()),
        ("not JSON", "grant_type=authorization_code".to_owned()),
    ];
    for (what, body) in bad {
        let resp = post(&client, &idp, "application/json", &[], body).await;
        assert_eq!(
            status_and_error(&resp),
            (StatusCode::BAD_REQUEST, "invalid_request".to_owned()),
            "{what}: {}",
            resp.text()
        );
    }
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .finish();
    let resp = post(
        &client,
        &idp,
        "application/x-www-form-urlencoded",
        &[],
        form,
    )
    .await;
    assert_eq!(status_and_error(&resp).1, "invalid_request");
    // the exact request works (the refusals did not spend the code)
    let resp = post(&client, &idp, "application/json", &[], good.to_string()).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
}

async fn code_for_zkauth(client: &TestClient, idp: &MockIdp) -> String {
    let mut url = Url::parse(&idp.authorize_endpoint()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "gatehouse")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("state", "st4te")
        .append_pair("code_challenge", &idp::pkce_challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    let resp = client.get(url.as_str()).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let back = resp.location_url().unwrap();
    back.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test]
async fn code_verifier_must_be_43_to_128_unreserved_characters() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    let ok_long = "a-b.c_d~".repeat(16); // 128
    let cases: [(String, bool); 8] = [
        (ok_long.clone(), true),
        (format!("{ok_long}x"), false), // 129
        ("A".repeat(43), true),
        ("A".repeat(42), false),
        (format!("{}+", "A".repeat(43)), false),
        (format!("{}/", "A".repeat(43)), false),
        (format!("{}=", "A".repeat(43)), false),
        (format!("{} é", "A".repeat(43)), false),
    ];
    for (verifier, accepted) in cases {
        // the challenge is the verifier's own: only its form can fail
        let c = code_for(&client, &idp, &verifier).await;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", c.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ];
        let resp = token_form(&client, &idp, &[BASIC], &form).await;
        let expected = if accepted {
            (StatusCode::OK, String::new())
        } else {
            (StatusCode::BAD_REQUEST, "invalid_grant".to_owned())
        };
        assert_eq!(status_and_error(&resp), expected, "{verifier:?}");
    }
}

/// Verifies `token` with the key `kid` published at the JWKS (by its JWK),
/// with exactly that key's algorithm.
async fn verify_with_published(
    client: &TestClient,
    idp: &MockIdp,
    token: &str,
    aud: &str,
) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().unwrap();
    let jwks = client.get_api(&idp.jwks_uri()).await.json();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("{kid} not published: {jwks}"));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = Validation::new(idp::key_alg(&kid).unwrap());
    v.set_audience(&[aud]);
    v.set_issuer(&[idp.issuer()]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("{kid}: {e}"))
        .claims
}

#[tokio::test]
async fn keys_of_every_allowed_family_are_published_and_sign() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    let families = [
        ("key1", Algorithm::RS256, "RSA"),
        ("key2", Algorithm::RS256, "RSA"),
        ("pss", Algorithm::PS256, "RSA"),
        ("ec256", Algorithm::ES256, "EC"),
        ("ec384", Algorithm::ES384, "EC"),
        ("ed25519", Algorithm::EdDSA, "OKP"),
    ];
    assert_eq!(KEY_IDS.len(), families.len());
    for (kid, alg, kty) in families {
        assert_eq!(idp::key_alg(kid), Some(alg));
        idp.set_knobs(|k| {
            k.publish_keys = vec![kid];
            k.signing_kid = kid;
        });
        let jwks = client.get_api(&idp.jwks_uri()).await.json();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        assert_eq!(jwks["keys"][0]["kty"], kty, "{kid}");
        assert_eq!(jwks["keys"][0]["alg"], format!("{alg:?}"), "{kid}");
        let token = idp.mint_id_token("alice", Some("n"), None);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (alg, Some(kid)));
        let claims = verify_with_published(&client, &idp, &token, "gatehouse").await;
        assert_eq!(claims["sub"], "uid-alice-0001");
        // the committed public PEM is the same key
        let pem = idp::public_pem(kid).unwrap().as_bytes();
        let key = match kty {
            "RSA" => DecodingKey::from_rsa_pem(pem),
            "EC" => DecodingKey::from_ec_pem(pem),
            _ => DecodingKey::from_ed_pem(pem),
        }
        .unwrap();
        let mut v = Validation::new(alg);
        v.set_audience(&["gatehouse"]);
        jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
    }
}

#[tokio::test]
async fn alg_mutations_sign_validly_under_an_alg_the_key_is_not_for() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    // RSA key1 (JWK alg RS256) signing PS256
    let token = idp.mint_id_token("alice", None, Some(TokenMutation::AlgMismatch));
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::PS256, Some("key1"))
    );
    let key = DecodingKey::from_rsa_pem(idp::KEY1_PUBLIC_PEM.as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::PS256);
    v.set_audience(&["gatehouse"]);
    jsonwebtoken::decode::<Value>(&token, &key, &v).expect("a valid PS256 signature");
    let jwk: Value = serde_json::from_str(idp::KEY1_JWK).unwrap();
    assert_eq!(jwk["alg"], "RS256");

    // the P-256 key signing, under the kid of RSA key1
    let token = idp.mint_id_token("alice", None, Some(TokenMutation::KidOfOtherFamily));
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::ES256, Some("key1"))
    );
    let key = DecodingKey::from_ec_pem(idp::public_pem("ec256").unwrap().as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["gatehouse"]);
    jsonwebtoken::decode::<Value>(&token, &key, &v).expect("a valid ES256 signature");
}

#[tokio::test]
async fn userinfo_sub_knob_changes_only_the_userinfo_sub() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    let access = idp.mint_access_token("alice", None);
    let bearer = format!("Bearer {access}");
    let userinfo = idp.userinfo_endpoint().unwrap();
    let info = client
        .get_with(&userinfo, &[("authorization", &bearer)])
        .await
        .json();
    assert_eq!(info["sub"], "uid-alice-0001");
    idp.set_knobs(|k| k.userinfo_sub = Some("uid-mallory-0666".into()));
    let info = client
        .get_with(&userinfo, &[("authorization", &bearer)])
        .await
        .json();
    assert_eq!(info["sub"], "uid-mallory-0666");
    assert_eq!(info["email"], "alice@example.com");
    let id = idp.mint_id_token("alice", None, None);
    assert_eq!(idp::jwt_claims(&id)["sub"], "uid-alice-0001");
}

#[tokio::test]
async fn id_tokens_carry_the_login_sid_through_refreshes() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let client = TestClient::new();
    assert_eq!(idp.last_sid(), None);
    let c = code_for(&client, &idp, VERIFIER).await;
    let sid = idp.last_sid().expect("a sid once a code is issued");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let tokens = token_form(&client, &idp, &[BASIC], &form).await.json();
    let id = idp::jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["sid"], sid.as_str());
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
    ];
    let refreshed = token_form(&client, &idp, &[BASIC], &refresh).await.json();
    let id = idp::jwt_claims(refreshed["id_token"].as_str().unwrap());
    assert_eq!(id["sid"], sid.as_str());
    // another login, another session
    code_for(&client, &idp, VERIFIER).await;
    assert_ne!(idp.last_sid(), Some(sid));
}

#[tokio::test]
async fn logout_tokens_verify_with_the_published_key_and_carry_the_spec_claims() {
    let idp = MockIdp::start(IdpOptions::provider(Profile::keycloak("demo"), "alice")).await;
    let client = TestClient::new();
    for kid in ["key1", "ec256", "ed25519"] {
        idp.set_knobs(|k| {
            k.publish_keys = vec![kid];
            k.signing_kid = kid;
        });
        let token = idp.mint_logout_token(Some("sid-1"), Some("uid-alice-0001"), None);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
        let claims = verify_with_published(&client, &idp, &token, "gatehouse").await;
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(claims["aud"], "gatehouse");
        assert_eq!(claims["sid"], "sid-1");
        assert_eq!(claims["sub"], "uid-alice-0001");
        assert_eq!(claims["events"], json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        assert!(claims.get("nonce").is_none());
        let iat = claims["iat"].as_i64().unwrap();
        assert!(claims["exp"].as_i64().unwrap() > iat);
        assert!(claims["jti"].as_str().unwrap().len() >= 16);
    }
    let a = idp.mint_logout_token(Some("s"), None, None);
    let b = idp.mint_logout_token(Some("s"), None, None);
    let (a, b) = (idp::jwt_claims(&a), idp::jwt_claims(&b));
    assert_ne!(a["jti"], b["jti"], "jti is random");
    assert!(a.get("sub").is_none());
    let only_sub = idp::jwt_claims(&idp.mint_logout_token(None, Some("u"), None));
    assert!(only_sub.get("sid").is_none());
    assert_eq!(only_sub["sub"], "u");
}

#[tokio::test]
async fn logout_token_mutations_spoil_what_they_name() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let mint = |m: LogoutTokenMutation| idp.mint_logout_token(Some("sid-1"), None, Some(m));
    let claims = |m: LogoutTokenMutation| idp::jwt_claims(&mint(m));
    assert!(
        claims(LogoutTokenMutation::NoEvents)
            .get("events")
            .is_none()
    );
    assert!(
        claims(LogoutTokenMutation::OtherEvent)["events"]
            .get(BACKCHANNEL_LOGOUT_EVENT)
            .is_none()
    );
    assert_eq!(claims(LogoutTokenMutation::WithNonce)["nonce"], "n0nce");
    assert_eq!(
        claims(LogoutTokenMutation::WrongAudience)["aud"],
        "some-other-client"
    );
    assert_ne!(
        claims(LogoutTokenMutation::WrongIssuer)["iss"],
        idp.issuer()
    );
    let expired = claims(LogoutTokenMutation::Expired);
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    assert!(expired["exp"].as_i64().unwrap() < now);
    let mut extra = serde_json::Map::new();
    extra.insert("sid".into(), Value::Null);
    extra.insert("sub".into(), json!("x"));
    let changed = claims(LogoutTokenMutation::Claims(extra));
    assert!(changed.get("sid").is_none());
    assert_eq!(changed["sub"], "x");

    // signature defects: still well-formed, never valid
    let key = DecodingKey::from_rsa_pem(idp::KEY1_PUBLIC_PEM.as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["gatehouse"]);
    let good = mint(LogoutTokenMutation::Claims(serde_json::Map::new()));
    jsonwebtoken::decode::<Value>(&good, &key, &v).expect("unmutated verifies");
    let bad = mint(LogoutTokenMutation::BadSignature);
    assert!(jsonwebtoken::decode::<Value>(&bad, &key, &v).is_err());
    let unknown = mint(LogoutTokenMutation::UnknownKid);
    assert_eq!(
        jsonwebtoken::decode_header(&unknown)
            .unwrap()
            .kid
            .as_deref(),
        Some("key2")
    );
    let none = mint(LogoutTokenMutation::AlgNone);
    assert!(none.ends_with('.'));
}

#[tokio::test]
async fn send_backchannel_logout_posts_the_token_as_a_form() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/oauth2/backchannel-logout",
        listener.local_addr().unwrap()
    );
    let rp = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0_u8; 4096];
        // read the head, then the body its content-length announces
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
            assert!(n > 0, "connection closed early");
        }
        conn.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok",
        )
        .await
        .unwrap();
        String::from_utf8(raw).unwrap()
    });
    let token = idp.mint_logout_token(Some("sid-1"), None, None);
    let (status, body) = idp.send_backchannel_logout(&url, &token).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let raw = rp.await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("POST /oauth2/backchannel-logout HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-www-form-urlencoded"),
        "{head}"
    );
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(fields, [("logout_token".to_owned(), token)]);

    // nobody listening: status 0 and the error
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let (status, error) = idp.send_backchannel_logout(&gone, "t").await;
    assert_eq!(status, 0);
    assert!(!error.is_empty());
}
