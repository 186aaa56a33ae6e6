use base64::Engine as _;
use serde_json::json;

use super::*;
use crate::auth::oidc::tests::engine::{CLIENT, Idp, http, sign};

const KEY1_PUB_PEM: &str = include_str!("../../../tests/support/keys/key1.pub.pem");
const KEY1_JWK: &str = include_str!("../../../tests/support/keys/key1.jwk.json");
const KEY2_JWK: &str = include_str!("../../../tests/support/keys/key2.jwk.json");

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// Claims of a good bearer token from `iss` for `aud`.
fn claims(iss: &str, aud: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": iss,
        "sub": "alice-sub",
        "aud": aud,
        "iat": now,
        "exp": now + 300,
        "email": "alice@example.com",
        "email_verified": true,
        "groups": ["staff", "ops"],
        "realm_access": {"roles": ["reader"]},
    })
}

async fn auth_for(idp: &Idp, extra: &str) -> (Config, BearerAuth) {
    let config = idp.config(&format!("skip_jwt_bearer_tokens = true\n{extra}"));
    let auth = BearerAuth::new(&config, http());
    (config, auth)
}

fn refused(r: Result<Arc<Verified>, BearerError>) -> String {
    match r {
        Err(BearerError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_stands_for_its_user_with_groups_and_roles() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    let token = sign(&claims(&idp.base, CLIENT), "key1");
    let id = auth.verify(&config, &token).await.unwrap();
    assert_eq!(id.subject, "alice-sub");
    assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    assert_eq!(id.groups, ["staff", "ops"]);
    assert_eq!(id.roles, ["reader"]);
    // nothing forwards tokens: the identity carries none
    assert_eq!(id.tokens.id_token, None);
    assert_eq!(id.tokens.access_token, None);
    assert!(matches!(
        auth.decide(&config, &token, config.routes.fallback()).await,
        Decision::Allow(_)
    ));
}

#[tokio::test]
async fn the_token_is_kept_for_forwarding_only_when_a_setting_asks() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "pass_authorization_header = true").await;
    let token = sign(&claims(&idp.base, CLIENT), "key1");
    let id = auth.verify(&config, &token).await.unwrap();
    assert_eq!(
        id.tokens.id_token.as_ref().map(Secret::expose),
        Some(token.as_str())
    );
    assert_eq!(id.tokens.access_token, None);
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_refused() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    let now = now_secs();
    let good = claims(&idp.base, CLIENT);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    // a token the issuer made for another client often names none
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    let signed = sign(&good, "key1");
    let mut parts: Vec<&str> = signed.split('.').collect();
    let other_sig = sign(&with("sub", json!("mallory")), "key1");
    parts[2] = other_sig.split('.').nth(2).unwrap();
    let bad_signature = parts.join(".");
    let payload = b64(good.to_string().as_bytes());
    let alg_none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("key1".into());
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(KEY1_PUB_PEM.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(&with("exp", json!(now - 2 * SKEW_SECS)), "key1"),
        ),
        (
            "nbf in the future",
            sign(&with("nbf", json!(now + 2 * SKEW_SECS)), "key1"),
        ),
        ("no exp", sign(&no_exp, "key1")),
        ("no aud", sign(&no_aud, "key1")),
        ("aud a number", sign(&with("aud", json!(5)), "key1")),
        (
            "aud a list of numbers",
            sign(&with("aud", json!([5])), "key1"),
        ),
        ("aud an empty list", sign(&with("aud", json!([])), "key1")),
        (
            "an ID token (Keycloak's typ: ID)",
            sign(&with("typ", json!("ID")), "key1"),
        ),
        (
            "wrong aud",
            sign(&with("aud", json!("someone-else")), "key1"),
        ),
        (
            "wrong iss",
            sign(&with("iss", json!("https://evil.example")), "key1"),
        ),
        (
            "iss with a path added",
            sign(&with("iss", json!(format!("{}/x", idp.base))), "key1"),
        ),
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256),
        ("bad signature", bad_signature),
        ("garbage", "not-a-jwt".to_owned()),
        ("empty", String::new()),
        ("three dots of nothing", "..".to_owned()),
        ("too long", "a".repeat(MAX_TOKEN_LEN + 1)),
    ];
    for (name, token) in cases {
        let why = refused(auth.verify(&config, &token).await);
        assert!(!why.is_empty(), "{name}");
        assert!(
            matches!(
                auth.decide(&config, &token, config.routes.fallback()).await,
                Decision::InvalidToken
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_and_is_then_refused() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    let good = sign(&claims(&idp.base, CLIENT), "key1");
    auth.verify(&config, &good).await.unwrap();
    assert_eq!(idp.seen("/jwks").len(), 1);
    let stranger = sign(&claims(&idp.base, CLIENT), "key2");
    assert_eq!(
        refused(auth.verify(&config, &stranger).await),
        "unknown key id"
    );
    assert_eq!(idp.seen("/jwks").len(), 2, "one refetch");
    let mut other = claims(&idp.base, CLIENT);
    other["sub"] = json!("bob");
    let stranger2 = sign(&other, "key2");
    assert_eq!(
        refused(auth.verify(&config, &stranger2).await),
        "unknown key id"
    );
    assert_eq!(idp.seen("/jwks").len(), 2, "no second refetch so soon");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_then_trusted() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    auth.verify(&config, &sign(&claims(&idp.base, CLIENT), "key1"))
        .await
        .unwrap();
    idp.set(|a| a.jwks = vec![KEY1_JWK, KEY2_JWK]);
    let rotated = sign(&claims(&idp.base, CLIENT), "key2");
    assert_eq!(
        auth.verify(&config, &rotated).await.unwrap().subject,
        "alice-sub"
    );
    assert_eq!(idp.seen("/jwks").len(), 2);
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_answer_unavailable_never_allow() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    idp.set(|a| a.jwks_status = 500);
    let token = sign(&claims(&idp.base, CLIENT), "key1");
    assert!(matches!(
        auth.verify(&config, &token).await,
        Err(BearerError::Unavailable(_))
    ));
    assert!(matches!(
        auth.decide(&config, &token, config.routes.fallback()).await,
        Decision::Unavailable(Unavailable::Provider)
    ));
    // a failed discovery is not retried at once: the issuer is not hammered
    let fetches = idp.seen("/.well-known/openid-configuration").len();
    assert!(auth.verify(&config, &token).await.is_err());
    assert_eq!(idp.seen("/.well-known/openid-configuration").len(), fetches);
}

#[tokio::test]
async fn an_extra_issuer_is_trusted_for_its_own_audience_only() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let (config, auth) = auth_for(
        &idp,
        &format!("extra_jwt_issuers = [\"{}=api://orders\"]", other.base),
    )
    .await;
    let ok = sign(&claims(&other.base, "api://orders"), "key1");
    assert_eq!(
        auth.verify(&config, &ok).await.unwrap().subject,
        "alice-sub"
    );
    assert_eq!(other.seen("/.well-known/openid-configuration").len(), 1);
    // the provider's audience is not the extra issuer's
    let wrong_aud = sign(&claims(&other.base, CLIENT), "key1");
    refused(auth.verify(&config, &wrong_aud).await);
    // nor the other way round
    let provider_wrong_aud = sign(&claims(&idp.base, "api://orders"), "key1");
    refused(auth.verify(&config, &provider_wrong_aud).await);
}

#[tokio::test]
async fn a_verified_token_is_remembered_until_its_exp_and_a_refused_one_never() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "").await;
    let key = |t: &str| {
        let d = ring::digest::digest(&ring::digest::SHA256, t.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    };
    let good = sign(&claims(&idp.base, CLIENT), "key1");
    let first = auth.verify(&config, &good).await.unwrap();
    let again = auth.verify(&config, &good).await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second use is the cached one"
    );
    let bad = sign(&claims(&idp.base, "someone-else"), "key1");
    refused(auth.verify(&config, &bad).await);
    auth.cache.run_pending_tasks().await;
    assert!(auth.cache.contains_key(&key(&good)));
    assert!(!auth.cache.contains_key(&key(&bad)));
    // an entry past its exp is not used: the token is verified again
    let stale = Identity {
        subject: "stale".into(),
        expires_at: now_secs() - 1,
        ..Identity::default()
    };
    auth.cache
        .insert(
            key(&good),
            Arc::new(Verified {
                identity: stale,
                provider: Some(0),
            }),
        )
        .await;
    assert_eq!(
        auth.verify(&config, &good).await.unwrap().subject,
        "alice-sub"
    );
}

#[test]
fn only_a_bearer_authorization_is_a_token() {
    let h = |values: &[&str]| {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    };
    let table: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["Bearer abc.def.ghi"], Some("abc.def.ghi")),
        (&["bearer  abc "], Some("abc")),
        (&["Bearer"], Some("")),
        (&["Basic dXNlcjpwYXNz"], None),
        (&["Bearerabc"], None),
        (&["Basic dXNlcjpwYXNz", "Bearer abc"], Some("")),
        (&["Bearer abc", "Bearer abc"], Some("")),
        (&["Basic a", "Basic b"], None),
    ];
    for (values, want) in table {
        assert_eq!(presented(&h(values)), *want, "{values:?}");
    }
}

#[test]
fn the_challenge_names_the_error_and_the_metadata() {
    let origin = Origin {
        proto: "https",
        host: Some("api.example.com".into()),
        trusted: false,
        host_forwarded: false,
    };
    assert_eq!(
        www_authenticate(&origin, true),
        "Bearer error=\"invalid_token\", resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""
    );
    assert_eq!(
        www_authenticate(&origin, false),
        "Bearer resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\""
    );
    let no_host = Origin {
        host: None,
        ..origin
    };
    assert_eq!(
        www_authenticate(&no_host, true),
        "Bearer error=\"invalid_token\""
    );
}

#[tokio::test]
async fn a_tunnel_opened_with_a_token_closes_when_the_token_expires() {
    let mut expired = watch_until(now_secs().saturating_sub(1));
    tokio::time::timeout(Duration::from_secs(2), expired.changed())
        .await
        .expect("closed at once")
        .expect("told, not dropped");
    assert!(*expired.borrow());
    let mut live = watch_until(now_secs() + 1);
    assert!(!*live.borrow(), "open while the token is valid");
    tokio::time::timeout(Duration::from_secs(3), live.changed())
        .await
        .expect("closed by the token's exp")
        .expect("told, not dropped");
    assert!(*live.borrow());
}

#[tokio::test]
async fn with_keycloak_a_token_for_account_passes_only_when_azp_is_this_client() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(&idp, "provider = \"keycloak\"").await;
    assert!(config.provider.access_token_azp_audience);
    let mut ours = claims(&idp.base, "account");
    ours["azp"] = json!(CLIENT);
    let id = auth.verify(&config, &sign(&ours, "key1")).await.unwrap();
    assert_eq!(id.subject, "alice-sub");
    let mut theirs = claims(&idp.base, "account");
    theirs["azp"] = json!("another-client");
    refused(auth.verify(&config, &sign(&theirs, "key1")).await);
    let named = claims(&idp.base, CLIENT);
    auth.verify(&config, &sign(&named, "key1")).await.unwrap();
}

#[tokio::test]
async fn an_extra_issuer_may_share_the_providers_iss_with_an_audience_of_its_own() {
    let idp = Idp::start().await;
    let (config, auth) = auth_for(
        &idp,
        &format!("extra_jwt_issuers = [\"{}=api://orders\"]", idp.base),
    )
    .await;
    // oauth2-proxy's usual set-up: the same issuer, an API's audience
    let api = auth
        .verify(&config, &sign(&claims(&idp.base, "api://orders"), "key1"))
        .await
        .unwrap();
    assert_eq!(api.provider, None, "verified as the extra issuer");
    let own = auth
        .verify(&config, &sign(&claims(&idp.base, CLIENT), "key1"))
        .await
        .unwrap();
    assert_eq!(own.provider, Some(0), "verified as the provider");
    refused(
        auth.verify(&config, &sign(&claims(&idp.base, "api://other"), "key1"))
            .await,
    );
}

#[tokio::test]
async fn a_route_that_names_providers_takes_only_their_tokens() {
    let idp = Idp::start().await;
    let other = Idp::start().await;
    let (config, auth) = auth_for(
        &idp,
        &format!(
            "extra_jwt_issuers = [\"{}=api://orders\"]\n\
             [[routes]]\npath = \"/own\"\nprovider = \"default\"\nbearer = true",
            other.base
        ),
    )
    .await;
    let route = &config.routes.routes()[0];
    let any = config.routes.fallback();
    let provider_token = sign(&claims(&idp.base, CLIENT), "key1");
    let extra_token = sign(&claims(&other.base, "api://orders"), "key1");
    assert!(matches!(
        auth.decide(&config, &provider_token, route).await,
        Decision::Allow(_)
    ));
    // an extra issuer's token is no provider's: not on a route naming one
    assert!(matches!(
        auth.decide(&config, &extra_token, route).await,
        Decision::InvalidToken
    ));
    assert!(matches!(
        auth.decide(&config, &extra_token, any).await,
        Decision::Allow(_)
    ));
}
