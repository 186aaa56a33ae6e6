//! The logout endpoint in process: request shapes, token checks, `jti`
//! replay and the revocation it records, against the loopback provider of
//! the login-engine tests.

use http::Request;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use super::*;
use crate::auth::identity::Identity;
use crate::auth::oidc::tests::engine::{Idp, http, sign};
use crate::auth::session::{Session, SessionId};

async fn state(idp: &Idp) -> AppState {
    let state = AppState::new(idp.config(r#"client_secret = "s3cret""#)).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.provider.discover_until_ready(&state.config, http()),
    )
    .await
    .unwrap();
    state
}

fn token(idp: &Idp, change: impl FnOnce(&mut Value)) -> String {
    let mut claims = json!({
        "iss": idp.base,
        "aud": "gatehouse",
        "iat": now_secs(),
        "jti": format!("jti-{}", now_millis()),
        "sid": "op-1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    });
    change(&mut claims);
    sign(&claims, "key1")
}

fn post(body: &str) -> Request<Full<Bytes>> {
    Request::post("/oauth2/backchannel-logout")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

async fn answer(state: &AppState, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let r = logout(state, req).await;
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn session(sid: &str, issuer: &str) -> Session {
    Session {
        id: SessionId::from_bytes([4; 16]),
        provider_sid: Some(sid.to_owned()),
        provider: None,
        issuer: issuer.to_owned(),
        issued_at_ms: now_millis() - 1_000,
        identity: Identity {
            subject: "alice".into(),
            expires_at: now_secs() + 600,
            ..Identity::default()
        },
        secret: None,
    }
}

use crate::auth::oidc::BACKCHANNEL_LOGOUT_EVENT;

#[tokio::test]
async fn a_valid_token_revokes_its_provider_session_once() {
    let idp = Idp::start().await;
    let s = state(&idp).await;
    let issuer = s.provider.get().unwrap().issuer().to_owned();
    let hit = session("op-1", &issuer);
    let other = session("op-2", &issuer);
    let t = token(&idp, |_| {});
    assert_eq!(
        answer(&s, post(&format!("logout_token={t}"))).await,
        (StatusCode::OK, String::new())
    );
    let revs = s.gate.store().revocations();
    assert!(revs.is_revoked(&hit));
    assert!(!revs.is_revoked(&other));
    // the same token again: its jti is spent
    let (status, body) = answer(&s, post(&format!("logout_token={t}"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
}

#[tokio::test]
async fn a_sub_only_token_revokes_every_session_of_that_user() {
    let idp = Idp::start().await;
    let s = state(&idp).await;
    let issuer = s.provider.get().unwrap().issuer().to_owned();
    let t = token(&idp, |c| {
        c.as_object_mut().unwrap().remove("sid");
        c["sub"] = json!("alice");
    });
    assert_eq!(
        answer(&s, post(&format!("logout_token={t}"))).await.0,
        StatusCode::OK
    );
    let revs = s.gate.store().revocations();
    assert!(revs.is_revoked(&session("any-sid", &issuer)));
}

#[tokio::test]
async fn bad_requests_and_bad_tokens_get_400_and_revoke_nothing() {
    let idp = Idp::start().await;
    let s = state(&idp).await;
    let issuer = s.provider.get().unwrap().issuer().to_owned();
    let good = token(&idp, |_| {});
    let mut cases: Vec<(&str, Request<Full<Bytes>>)> = vec![
        ("no token", post("")),
        ("empty token", post("logout_token=")),
        (
            "two tokens",
            post(&format!("logout_token={good}&logout_token={good}")),
        ),
        ("not a JWT", post("logout_token=abc")),
        (
            "GET",
            Request::get("/oauth2/backchannel-logout")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        ),
        (
            "JSON body",
            Request::post("/oauth2/backchannel-logout")
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(format!(
                    "{{\"logout_token\":\"{good}\"}}"
                ))))
                .unwrap(),
        ),
        (
            "body too large",
            post(&format!("logout_token={}", "a".repeat(MAX_BODY + 1))),
        ),
    ];
    let spoilt: Vec<(&str, Box<dyn FnOnce(&mut Value)>)> = vec![
        (
            "no events",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("events"))),
        ),
        (
            "other event",
            Box::new(|c| c["events"] = json!({"urn:other": {}})),
        ),
        (
            "event not an object",
            Box::new(|c| c["events"] = json!({BACKCHANNEL_LOGOUT_EVENT: 1})),
        ),
        ("nonce", Box::new(|c| c["nonce"] = json!("n"))),
        (
            "no sid nor sub",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("sid"))),
        ),
        (
            "no jti",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("jti"))),
        ),
        ("sid not a string", Box::new(|c| c["sid"] = json!(7))),
        ("empty sid", Box::new(|c| c["sid"] = json!(""))),
        ("wrong aud", Box::new(|c| c["aud"] = json!("other"))),
        (
            "wrong iss",
            Box::new(|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "old iat",
            Box::new(|c| c["iat"] = json!(now_secs() - 3_600)),
        ),
        (
            "future iat",
            Box::new(|c| c["iat"] = json!(now_secs() + 3_600)),
        ),
        (
            "no iat",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("iat"))),
        ),
        (
            "expired",
            Box::new(|c| c["exp"] = json!(now_secs() - 3_600)),
        ),
    ];
    let spoilt_tokens: Vec<(&str, String)> = spoilt
        .into_iter()
        .map(|(what, f)| (what, token(&idp, f)))
        .collect();
    for (what, t) in &spoilt_tokens {
        cases.push((what, post(&format!("logout_token={t}"))));
    }
    for (what, req) in cases {
        let (status, body) = answer(&s, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(body.contains("invalid_request"), "{what}: {body}");
    }
    assert!(
        !s.gate
            .store()
            .revocations()
            .is_revoked(&session("op-1", &issuer))
    );
    // and the good token still works: nothing above spent its jti
    assert_eq!(
        answer(&s, post(&format!("logout_token={good}"))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_new_key_while_the_jwks_cannot_be_fetched_gets_503_so_the_provider_posts_again() {
    let idp = Idp::start().await;
    let s = state(&idp).await;
    let issuer = s.provider.get().unwrap().issuer().to_owned();
    // the provider rotated to key2, but its JWKS answers 500
    idp.set(|a| a.jwks_status = 500);
    let mut claims = None;
    let _ = token(&idp, |c| claims = Some(c.clone()));
    let t = sign(&claims.unwrap(), "key2");
    let (status, body) = answer(&s, post(&format!("logout_token={t}"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        !s.gate
            .store()
            .revocations()
            .is_revoked(&session("op-1", &issuer))
    );
}

#[tokio::test]
async fn an_empty_token_is_missing_and_a_body_up_to_64_kib_is_read_whole() {
    let idp = Idp::start().await;
    let s = state(&idp).await;
    let (status, body) = answer(&s, post("logout_token=")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing logout_token"), "{body}");
    let (status, body) = answer(&s, post("logout_token=a&logout_token=b")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("logout_token given more than once"), "{body}");
    // padding well over 1 KiB but under MAX_BODY: still read and honoured
    let t = token(&idp, |_| {});
    let padded = format!("pad={}&logout_token={t}", "p".repeat(4_000));
    assert_eq!(
        answer(&s, post(&padded)).await,
        (StatusCode::OK, String::new())
    );
}
