//! The gate's refresh rules: when a session is due, what a refresh gives,
//! and which outcomes are reused for the same old cookie.

use serde_json::json;

use super::*;
use crate::auth::identity::Tokens;
use crate::auth::oidc::tests::engine::{Idp, http};
use crate::auth::session::{SessionId, now_millis, write_session};
use crate::config::Secret;
use crate::state::AppState;

fn id(refreshed_at: u64, access_exp: Option<u64>, refresh_token: bool) -> Identity {
    Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        expires_at: now_secs() + 3600,
        refreshed_at,
        tokens: Tokens {
            access_token: Some(Secret::new("at-old")),
            access_token_expires_at: access_exp,
            refresh_token: refresh_token.then(|| Secret::new("rt-old")),
            ..Tokens::default()
        },
        ..Identity::default()
    }
}

fn config(extra: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
        upstream = "http://127.0.0.1:9"
        oidc_issuer_url = "https://idp.example.com"
        client_id = "gatehouse"
        client_secret = "s3cret"
        redirect_url = "https://app.example.com/oauth2/callback"
        cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
        email_domain = "*"
        {extra}
        "#
    ))
    .unwrap()
}

#[test]
fn a_session_is_due_after_cookie_refresh_or_when_its_forwarded_token_is_about_to_expire() {
    let now = 1_000_000;
    let every = config("cookie_refresh = \"60s\"");
    let passing = config("cookie_refresh = \"60s\"\npass_access_token = true");
    let never = config("pass_access_token = true");
    let cases = [
        // (config, identity, due)
        (&every, id(now - 60, None, true), true),
        (&every, id(now - 59, None, true), false),
        (&every, id(now - 600, None, false), false),
        (&never, id(0, Some(0), true), false),
        // the access token counts only when it is forwarded
        (&every, id(now, Some(now), true), false),
        (&passing, id(now, Some(now + 30), true), true),
        (&passing, id(now, Some(now + 31), true), false),
        (&passing, id(now, None, true), false),
        (&passing, id(now - 60, Some(now + 3600), true), true),
    ];
    for (i, (cfg, identity, due)) in cases.into_iter().enumerate() {
        assert_eq!(due_for_refresh(cfg, &identity, now), due, "case {i}");
    }
}

#[test]
fn an_unavailable_decision_names_its_error() {
    assert!(matches!(
        Unavailable::Provider.error(),
        crate::error::Error::IdpNotReady
    ));
    assert!(matches!(
        Unavailable::Store.error(),
        crate::error::Error::StoreUnavailable
    ));
}

async fn state(idp: &Idp) -> AppState {
    let config = idp
        .config("client_secret = \"s3cret\"\ncookie_refresh = \"60s\"\npass_access_token = true");
    let state = AppState::new(config).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.provider.discover_until_ready(&state.config, http()),
    )
    .await
    .unwrap();
    state
}

/// The `Cookie` header of a session last refreshed `age` seconds ago.
fn cookie(state: &AppState, age: u64) -> HeaderMap {
    let session = Session {
        id: SessionId::from_bytes([1; 16]),
        provider_sid: None,
        issuer: state.config.provider.issuer.clone(),
        issued_at_ms: now_millis(),
        identity: id(now_secs() - age, None, true),
        secret: None,
    };
    let set = write_session(
        state.gate.codec(),
        &state.config.cookie,
        &session,
        &HeaderMap::new(),
    )
    .unwrap();
    let pairs: Vec<String> = set
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, pairs.join("; ").parse().unwrap());
    h
}

#[tokio::test]
async fn a_due_session_is_refreshed_once_and_the_new_tokens_are_used() {
    let idp = Idp::start().await;
    let state = state(&idp).await;
    idp.answer_tokens(&json!({"access_token": "at-new", "refresh_token": "rt-new"}));
    let h = cookie(&state, 120);
    let d = state.decide(&h, state.config.routes.fallback()).await;
    let Decision::Allow(identity) = d.decision else {
        panic!("{:?}", d.decision)
    };
    assert_eq!(
        identity.tokens.access_token.as_ref().map(Secret::expose),
        Some("at-new")
    );
    assert!(identity.refreshed_at + 5 >= now_secs());
    assert!(!d.set_cookies.is_empty(), "the refreshed session is set");
    // the same old cookie again: the outcome is reused, not redeemed twice
    let again = state.decide(&h, state.config.routes.fallback()).await;
    assert!(matches!(again.decision, Decision::Allow(_)));
    assert_eq!(idp.seen("/token").len(), 1);
    // a fresh session is not refreshed and sets nothing
    let fresh = state
        .decide(&cookie(&state, 0), state.config.routes.fallback())
        .await;
    assert!(matches!(fresh.decision, Decision::Allow(_)));
    assert!(fresh.set_cookies.is_empty());
    assert_eq!(idp.seen("/token").len(), 1);
}

#[tokio::test]
async fn a_refused_refresh_signs_out_and_is_remembered() {
    let idp = Idp::start().await;
    let state = state(&idp).await;
    idp.set(|a| a.token = (400, r#"{"error":"invalid_grant"}"#.to_owned()));
    let h = cookie(&state, 120);
    let d = state.decide(&h, state.config.routes.fallback()).await;
    assert!(
        matches!(d.decision, Decision::Challenge),
        "{:?}",
        d.decision
    );
    assert!(!d.set_cookies.is_empty());
    assert!(
        d.set_cookies
            .iter()
            .all(|c| c.to_str().unwrap().contains("Max-Age=0")),
        "the session is cleared"
    );
    let again = state.decide(&h, state.config.routes.fallback()).await;
    assert!(matches!(again.decision, Decision::Challenge));
    assert_eq!(
        idp.seen("/token").len(),
        1,
        "a refusal is not redeemed again"
    );
}

#[tokio::test]
async fn an_unreachable_provider_during_a_refresh_is_unavailable_and_retried() {
    let idp = Idp::start().await;
    let state = state(&idp).await;
    idp.set(|a| a.token = (500, "{}".to_owned()));
    let h = cookie(&state, 120);
    for _ in 0..2 {
        let d = state.decide(&h, state.config.routes.fallback()).await;
        assert!(
            matches!(d.decision, Decision::Unavailable(Unavailable::Provider)),
            "{:?}",
            d.decision
        );
        assert!(d.set_cookies.is_empty(), "nobody is signed out");
    }
    assert_eq!(idp.seen("/token").len(), 2, "an outage is not remembered");
    // no cookie at all: a challenge, nothing asked
    let d = state
        .decide(&HeaderMap::new(), state.config.routes.fallback())
        .await;
    assert!(matches!(d.decision, Decision::Challenge));
    assert_eq!(idp.seen("/token").len(), 2);
}

#[tokio::test]
async fn a_refreshed_session_that_cannot_be_stored_is_not_remembered() {
    use crate::auth::session::redis_store::RedisStore;
    use crate::auth::session::revocations::Revocations;
    use crate::auth::session::store::SessionStore as _;
    use crate::redis_conn::testing::TestRedis;

    let idp = Idp::start().await;
    let state = state(&idp).await;
    idp.answer_tokens(&json!({"access_token": "at-new"}));
    let redis = TestRedis::start();
    let codec = Arc::new(
        CookieCodec::new(
            &[Secret::new("0123456789abcdef0123456789abcdef")],
            "https://idp.example.com",
            "gatehouse",
        )
        .unwrap(),
    );
    let store = RedisStore::new(
        Arc::clone(&codec),
        &state.config.cookie.name,
        redis.conn(),
        "gh:t:".into(),
        Arc::new(Revocations::local()),
    );
    let session = Session {
        id: SessionId::from_bytes([2; 16]),
        provider_sid: None,
        issuer: state.config.provider.issuer.clone(),
        issued_at_ms: now_millis(),
        identity: id(now_secs() - 120, None, true),
        secret: None,
    };
    let ticket = store.save(&session).await.unwrap();
    let gate = Gate::new(
        codec,
        Store::Redis(store),
        None,
        state.config.cookie.refresh,
    );
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("{}={ticket}", state.config.cookie.name)
            .parse()
            .unwrap(),
    );
    // Redis goes away: the session still loads from the cache, the
    // refreshed one cannot be saved
    drop(redis);
    for _ in 0..2 {
        let d = gate
            .decide(
                &state.config,
                &state.provider,
                &h,
                state.config.routes.fallback(),
            )
            .await;
        assert!(
            matches!(d.decision, Decision::Unavailable(Unavailable::Provider)),
            "{:?}",
            d.decision
        );
    }
    assert_eq!(idp.seen("/token").len(), 2, "the next request tries again");
}
