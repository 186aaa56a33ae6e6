//! Sign-out and back-channel logout revoke sessions server-side (issue 8),
//! with the default cookie store and no Redis: a copied cookie is refused
//! after sign-out in proxy mode and by both check endpoints.

use crate::support::SESSION_COOKIE;
use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Map, Value, json};

use crate::support::client::TestClient;
use crate::support::idp::{IdpOptions, LogoutTokenMutation, MockIdp};
use crate::support::proxy::{TestProxy, login};
use crate::support::upstream::Recorder;

struct Stack {
    idp: MockIdp,
    _upstream: Recorder,
    proxy: TestProxy,
}

async fn stack() -> Stack {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    Stack {
        idp,
        _upstream: upstream,
        proxy,
    }
}

/// A fresh client carrying only a copy of `from`'s session cookie.
fn copy_of(from: &TestClient, proxy: &TestProxy) -> TestClient {
    let host = proxy.host();
    let value = from
        .cookie(&host, SESSION_COOKIE)
        .expect("a session cookie");
    let copy = TestClient::new();
    copy.set_cookie(&host, SESSION_COOKIE, &value);
    copy
}

/// Status of a proxied API call, of `/oauth2/auth` and of
/// `/oauth2/forward-auth` for this client.
async fn statuses(c: &TestClient, proxy: &TestProxy) -> [StatusCode; 3] {
    [
        c.get_api(&proxy.url("/app")).await.status,
        c.get_api(&proxy.url("/oauth2/auth")).await.status,
        c.get_api(&proxy.url("/oauth2/forward-auth")).await.status,
    ]
}

const SIGNED_IN: [StatusCode; 3] = [StatusCode::OK, StatusCode::ACCEPTED, StatusCode::OK];
const SIGNED_OUT: [StatusCode; 3] = [StatusCode::UNAUTHORIZED; 3];

#[tokio::test]
async fn a_cookie_copied_before_sign_out_is_refused_everywhere_after_it() {
    let s = stack().await;
    let browser = TestClient::new();
    login(&browser, &s.proxy, "/").await;
    let thief = copy_of(&browser, &s.proxy);
    assert_eq!(statuses(&thief, &s.proxy).await, SIGNED_IN);

    let out = browser.get(&s.proxy.url("/oauth2/sign_out")).await;
    assert_eq!(out.status, StatusCode::FOUND);
    let q: HashMap<String, String> = out
        .location_url()
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    // the end-session redirect carries a state (Glewlwyd needs one)
    assert!(q.get("state").is_some_and(|s| s.len() >= 32), "{q:?}");

    assert_eq!(statuses(&thief, &s.proxy).await, SIGNED_OUT);
    // a browser navigation with the copy is sent to sign in again
    let nav = thief.get(&s.proxy.url("/app")).await;
    assert_eq!(nav.status, StatusCode::FOUND);
    assert!(
        nav.location()
            .unwrap()
            .starts_with(&s.idp.authorize_endpoint())
    );
}

#[tokio::test]
async fn signing_in_again_after_sign_out_gives_a_working_session() {
    let s = stack().await;
    let browser = TestClient::new();
    login(&browser, &s.proxy, "/").await;
    let old = copy_of(&browser, &s.proxy);
    browser.get(&s.proxy.url("/oauth2/sign_out")).await;
    login(&browser, &s.proxy, "/").await;
    assert_eq!(statuses(&browser, &s.proxy).await, SIGNED_IN);
    assert_eq!(statuses(&old, &s.proxy).await, SIGNED_OUT);
}

#[tokio::test]
async fn back_channel_logout_by_sid_ends_that_session_only() {
    let s = stack().await;
    let first = TestClient::new();
    login(&first, &s.proxy, "/").await;
    let first_sid = s.idp.last_sid().expect("the mock's ID tokens carry sid");
    let second = TestClient::new();
    login(&second, &s.proxy, "/").await;
    assert_ne!(s.idp.last_sid().as_deref(), Some(first_sid.as_str()));

    let token = s.idp.mint_logout_token(Some(&first_sid), None, None);
    let url = s.proxy.url("/oauth2/backchannel-logout");
    let (status, body) = s.idp.send_backchannel_logout(&url, &token).await;
    assert_eq!((status, body.as_str()), (200, ""));

    assert_eq!(statuses(&first, &s.proxy).await, SIGNED_OUT);
    assert_eq!(statuses(&second, &s.proxy).await, SIGNED_IN);
}

#[tokio::test]
async fn back_channel_logout_by_sub_ends_every_session_of_that_user() {
    let s = stack().await;
    let a = TestClient::new();
    login(&a, &s.proxy, "/").await;
    let b = TestClient::new();
    login(&b, &s.proxy, "/").await;
    let sub = s
        .idp
        .options()
        .users
        .iter()
        .find(|u| u.username == "alice")
        .unwrap()
        .sub
        .clone();
    let token = s.idp.mint_logout_token(None, Some(&sub), None);
    let url = s.proxy.url("/oauth2/backchannel-logout");
    assert_eq!(s.idp.send_backchannel_logout(&url, &token).await.0, 200);
    assert_eq!(statuses(&a, &s.proxy).await, SIGNED_OUT);
    assert_eq!(statuses(&b, &s.proxy).await, SIGNED_OUT);
    // a login after the logout is a new session, and it works
    let c = TestClient::new();
    login(&c, &s.proxy, "/").await;
    assert_eq!(statuses(&c, &s.proxy).await, SIGNED_IN);
}

fn claims(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[tokio::test]
async fn bad_logout_tokens_are_refused_with_400_and_revoke_nothing() {
    let s = stack().await;
    let browser = TestClient::new();
    login(&browser, &s.proxy, "/").await;
    let sid = s.idp.last_sid().unwrap();
    let url = s.proxy.url("/oauth2/backchannel-logout");
    let cases: Vec<(&str, LogoutTokenMutation)> = vec![
        ("bad signature", LogoutTokenMutation::BadSignature),
        ("wrong aud", LogoutTokenMutation::WrongAudience),
        ("wrong iss", LogoutTokenMutation::WrongIssuer),
        ("no events", LogoutTokenMutation::NoEvents),
        ("another event", LogoutTokenMutation::OtherEvent),
        ("with nonce", LogoutTokenMutation::WithNonce),
        ("expired", LogoutTokenMutation::Expired),
        ("alg none", LogoutTokenMutation::AlgNone),
        ("unknown kid", LogoutTokenMutation::UnknownKid),
        (
            "iat too old",
            LogoutTokenMutation::Claims(claims(&[(
                "iat",
                json!(gatehouse::auth::session::now_secs() - 3600),
            )])),
        ),
        (
            "no sid nor sub",
            LogoutTokenMutation::Claims(claims(&[("sid", Value::Null), ("sub", Value::Null)])),
        ),
        (
            "no jti",
            LogoutTokenMutation::Claims(claims(&[("jti", Value::Null)])),
        ),
        (
            "sid not a string",
            LogoutTokenMutation::Claims(claims(&[("sid", json!(42))])),
        ),
    ];
    for (what, mutation) in cases {
        let token = s.idp.mint_logout_token(Some(&sid), None, Some(mutation));
        let resp = TestClient::new()
            .post_form(&url, &[("logout_token", &token)])
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{what}");
        assert_eq!(resp.json()["error"], "invalid_request", "{what}");
    }
    // and the request shapes: no token, two tokens, not a form, not a POST
    let good = s.idp.mint_logout_token(Some(&sid), None, None);
    let c = TestClient::new();
    assert_eq!(c.post_form(&url, &[]).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        c.post_form(&url, &[("logout_token", &good), ("logout_token", &good)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(c.get_api(&url).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        statuses(&browser, &s.proxy).await,
        SIGNED_IN,
        "nothing revoked"
    );

    // a good token works once; its replay is refused
    let (status, _) = s.idp.send_backchannel_logout(&url, &good).await;
    assert_eq!(status, 200);
    let (status, body) = s.idp.send_backchannel_logout(&url, &good).await;
    assert_eq!(status, 400, "replayed jti: {body}");
}
