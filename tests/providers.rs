//! Every `provider` preset, signing in through gatehouse against the mock
//! provider set up to behave as that provider does (`IdpOptions::profile`).
//!
//! One contract suite ([`provider_contract!`], after tower-sessions'
//! `route_tests!`) runs against every preset: login works and the upstream
//! sees the identity and a mapped claim header; a wrong `aud`, wrong `iss`,
//! expired, badly signed or unknown-`kid` token (whichever token carries the
//! identity: the ID token, or ZKAuth's access token) is rejected and leaves
//! no session. Each preset's setup is the TOML its user would write, after
//! `examples/<provider>.toml`. Below the suite, each provider's own cases.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "providers/client_auth.rs"]
mod client_auth;
#[path = "providers/examples.rs"]
mod examples;
#[path = "providers/pages.rs"]
mod pages;
#[path = "providers/several.rs"]
mod several;
#[path = "providers/signing.rs"]
mod signing;

use crate::support::SESSION_COOKIE;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use support::client::{TestClient, TestResponse};
use support::idp::{IdpOptions, Knobs, MockIdp, Profile, TokenMutation, pkce_challenge};
use support::proxy::{TestProxy, finish_login};
use support::upstream::Recorder;
use url::{Position, Url};

/// One preset under test.
struct Preset {
    /// The `provider` value.
    name: &'static str,
    profile: Profile,
    /// The TOML its user writes (see `examples/<name>.toml`), pointed at the
    /// mock; `provider` is set from `name`.
    toml: fn(&MockIdp) -> String,
    /// Knobs for a provider configured the way the TOML assumes.
    knobs: fn(&mut Knobs),
    /// What the upstream sees for alice.
    seen: Seen,
}

/// Identity headers for alice; `None`: the header is absent.
struct Seen {
    user: &'static str,
    email: Option<&'static str>,
    preferred_username: Option<&'static str>,
    groups: Option<&'static str>,
    /// The `claim_header` mapping of the TOML and its value.
    mapped: (&'static str, &'static str),
    /// How the client authenticates at the token endpoint.
    client_auth: ClientAuth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientAuth {
    /// `client_secret_basic`, form body.
    Basic,
    /// The secret in a JSON body (ZKAuth).
    JsonBody,
}

/// A mock provider, a recording upstream and gatehouse between them.
struct Env {
    idp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
}

const ALICE: &str = "uid-alice-0001";

// === the presets ===

fn oidc() -> Preset {
    Preset {
        name: "oidc",
        profile: Profile::Generic,
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                claim_header = ["X-Forwarded-Full-Name=name"]"#,
                idp.issuer()
            )
        },
        knobs: |_| {},
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            preferred_username: Some("alice"),
            groups: Some("admins,staff"),
            mapped: ("x-forwarded-full-name", "Alice Admin"),
            client_auth: ClientAuth::Basic,
        },
    }
}

/// Keycloak, under either of its names.
fn keycloak(name: &'static str) -> Preset {
    Preset {
        name,
        profile: Profile::keycloak("main"),
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                allowed_role = ["user", "gatehouse:editor"]
                claim_header = ["X-Forwarded-Full-Name=name"]"#,
                idp.issuer()
            )
        },
        knobs: |_| {},
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            preferred_username: Some("alice"),
            // full group paths, as Keycloak's group mapper sends them
            groups: Some("/admins,/staff"),
            mapped: ("x-forwarded-full-name", "Alice Admin"),
            client_auth: ClientAuth::Basic,
        },
    }
}

fn authentik() -> Preset {
    Preset {
        name: "authentik",
        profile: Profile::authentik("gatehouse"),
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                allowed_group = ["staff"]
                claim_header = ["X-Forwarded-Nickname=nickname"]"#,
                idp.issuer()
            )
        },
        // an instance whose users have verified their addresses
        knobs: |k| k.email_verified = Some(true),
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            preferred_username: Some("alice"),
            groups: Some("admins,staff"),
            mapped: ("x-forwarded-nickname", "alice"),
            client_auth: ClientAuth::Basic,
        },
    }
}

fn auth0() -> Preset {
    Preset {
        name: "auth0",
        profile: Profile::Auth0,
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                oidc_groups_claim = "https://example.com/roles"
                claim_header = ["X-Forwarded-Picture=picture"]"#,
                idp.issuer()
            )
        },
        knobs: |_| {},
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            // Auth0 sends `nickname`, not `preferred_username`: the nickname
            // stands in (issue 8)
            preferred_username: Some("alice"),
            groups: Some("admin"),
            mapped: (
                "x-forwarded-picture",
                "https://s.gravatar.example/avatar/alice.png",
            ),
            client_auth: ClientAuth::Basic,
        },
    }
}

fn passage() -> Preset {
    Preset {
        name: "passage",
        profile: Profile::Passage,
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                scope = "openid email phone"
                claim_header = ["X-Forwarded-Phone=phone_number"]"#,
                idp.issuer()
            )
        },
        knobs: |_| {},
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            preferred_username: None,
            groups: None,
            mapped: ("x-forwarded-phone", "+15555550100"),
            client_auth: ClientAuth::Basic,
        },
    }
}

fn zkauth() -> Preset {
    Preset {
        name: "zkauth",
        profile: Profile::ZkAuth,
        toml: |idp| {
            format!(
                r#"oidc_issuer_url = "{}"
                oidc_authorize_url = "{}"
                oidc_token_url = "{}"
                oidc_jwks_url = "{}"
                session_lifetime = "8h"
                pass_access_token = true
                claim_header = ["X-Forwarded-Full-Name=name"]"#,
                idp.base_url(),
                idp.authorize_endpoint(),
                idp.token_endpoint(),
                idp.jwks_uri(),
            )
        },
        knobs: |_| {},
        seen: Seen {
            user: ALICE,
            email: Some("alice@example.com"),
            preferred_username: None,
            groups: None,
            mapped: ("x-forwarded-full-name", "Alice Admin"),
            client_auth: ClientAuth::JsonBody,
        },
    }
}

// === the contract ===

/// The suite every preset passes, as one module per preset.
macro_rules! provider_contract {
    ($($module:ident => $preset:expr;)+) => {$(
        mod $module {
            use super::*;

            #[tokio::test]
            async fn login_shows_identity_and_mapped_header_upstream() {
                contract_login_works($preset).await;
            }

            #[tokio::test]
            async fn identity_token_with_wrong_aud_is_rejected() {
                contract_rejects($preset, TokenMutation::WrongAudience).await;
            }

            #[tokio::test]
            async fn identity_token_with_wrong_iss_is_rejected() {
                contract_rejects($preset, TokenMutation::WrongIssuer).await;
            }

            #[tokio::test]
            async fn expired_identity_token_is_rejected() {
                contract_rejects($preset, TokenMutation::Expired).await;
            }

            #[tokio::test]
            async fn identity_token_with_bad_signature_is_rejected() {
                contract_rejects($preset, TokenMutation::BadSignature).await;
            }

            #[tokio::test]
            async fn identity_token_with_unknown_kid_is_rejected() {
                contract_rejects($preset, TokenMutation::UnknownKid).await;
            }
        }
    )+};
}

provider_contract! {
    preset_oidc => oidc();
    preset_keycloak => keycloak("keycloak");
    preset_ztrust => keycloak("ztrust");
    preset_authentik => authentik();
    preset_auth0 => auth0();
    preset_passage => passage();
    preset_zkauth => zkauth();
}

async fn contract_login_works(preset: Preset) {
    let env = start(&preset, "").await;
    let client = TestClient::new();
    login(&client, &env, "/app/page?x=1").await;
    let (mapped, value) = preset.seen.mapped;
    // a client's own copy of the mapped header never reaches the upstream
    let resp = client
        .get_with(
            &env.proxy.url("/app/page?x=1"),
            &[(mapped, "forged"), ("x-forwarded-user", "forged")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/app/page?x=1");
    let expect = &preset.seen;
    for (header, want) in [
        ("x-forwarded-user", Some(expect.user)),
        ("x-forwarded-email", expect.email),
        ("x-forwarded-preferred-username", expect.preferred_username),
        ("x-forwarded-groups", expect.groups),
        (mapped, Some(value)),
    ] {
        let got = seen.header_all(header);
        let want: Vec<&str> = want.into_iter().collect();
        assert_eq!(got, want, "{}: upstream saw {header}: {got:?}", preset.name);
    }

    let token = &env.idp.token_requests()[0];
    let verifier = match preset.seen.client_auth {
        ClientAuth::Basic => {
            assert_eq!(
                token.basic_auth(),
                Some(("gatehouse".into(), "s3cret".into())),
                "{}",
                preset.name
            );
            assert!(token.params.get("client_secret").is_none());
            assert_eq!(
                token.content_type(),
                Some("application/x-www-form-urlencoded")
            );
            token.params.get("code_verifier").unwrap().to_owned()
        }
        ClientAuth::JsonBody => {
            let body = token.json().expect("a JSON token request");
            assert_eq!(body["client_secret"], "s3cret");
            body["code_verifier"].as_str().unwrap().to_owned()
        }
    };
    let authorize = &env.idp.authorize_requests()[0];
    assert_eq!(
        authorize.get("code_challenge"),
        Some(pkce_challenge(&verifier).as_str())
    );
}

async fn contract_rejects(preset: Preset, mutation: TokenMutation) {
    let env = start(&preset, "").await;
    env.idp.set_identity_token_mutation(Some(mutation));
    let client = TestClient::new();
    let resp = refused_login(&client, &env, None).await;
    // a token gatehouse does not accept is a failed sign-in: 400
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{}: {mutation:?} must be rejected: {}",
        preset.name,
        resp.text()
    );
    assert_eq!(env.upstream.count(), 0);
}

// === Keycloak ===

#[tokio::test]
async fn keycloak_client_role_from_resource_access_passes_allowed_role() {
    let env = start(
        &keycloak("keycloak"),
        r#"allowed_role = ["gatehouse:editor"]"#,
    )
    .await;
    let alice = TestClient::new();
    login(&alice, &env, "/").await;
    assert_eq!(alice.get(&env.proxy.url("/")).await.status, StatusCode::OK);

    // bob has the realm roles but not the client role
    let bob = TestClient::new();
    let resp = refused_login(&bob, &env, Some("bob")).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
}

#[tokio::test]
async fn keycloak_realm_role_passes_and_an_unknown_role_is_403() {
    let env = start(&keycloak("ztrust"), r#"allowed_role = ["user"]"#).await;
    let bob = TestClient::new();
    login_as(&bob, &env, "/", Some("bob")).await;

    let env = start(&keycloak("keycloak"), r#"allowed_role = ["bogus"]"#).await;
    let alice = TestClient::new();
    let resp = refused_login(&alice, &env, None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn keycloak_access_token_for_account_with_azp_of_this_client_is_accepted() {
    let env = start(&keycloak("keycloak"), "pass_access_token = true").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let token = env.upstream.last().unwrap();
    let token = token.header("x-forwarded-access-token").unwrap();
    let claims = payload(token);
    assert_eq!(claims["aud"], "account");
    assert_eq!(claims["azp"], "gatehouse");

    // the same shape issued to another client is not ours
    env.idp.set_knobs(|k| {
        k.extra_access_token_claims
            .insert("azp".into(), "another-client".into());
    });
    let other = TestClient::new();
    let resp = refused_login(&other, &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
}

// === Authentik ===

#[tokio::test]
async fn authentik_configured_without_the_slash_works() {
    let mut preset = authentik();
    preset.toml = |idp| {
        format!(
            r#"oidc_issuer_url = "{}"
            claim_header = ["X-Forwarded-Nickname=nickname"]"#,
            idp.issuer().trim_end_matches('/')
        )
    };
    let env = start(&preset, "").await;
    assert!(!env.proxy.config_toml().contains("gatehouse/\""));
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.header("x-forwarded-nickname"), Some("alice"));
}

#[tokio::test]
async fn authentik_unverified_email_is_403_saying_the_address_is_not_verified() {
    let mut preset = authentik();
    preset.knobs = |_| {}; // Authentik's default: email_verified false
    let env = start(&preset, "").await;
    let client = TestClient::new();
    let resp = refused_login(&client, &env, None).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.text());
    // plain words for the user; the config key is for the operator's log
    let text = resp.text();
    assert!(
        text.contains("your email address is not verified"),
        "{text}"
    );
    assert!(text.contains("alice@example.com"), "{text}");
    assert!(!text.contains("allow_unverified_email"), "{text}");

    let env = start(&preset, "allow_unverified_email = true").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
}

// === Auth0 ===

#[tokio::test]
async fn auth0_without_audience_never_decodes_the_opaque_access_token() {
    let env = start(&auth0(), "pass_access_token = true").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(env.idp.authorize_requests()[0].get("audience"), None);
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let seen = env.upstream.last().unwrap();
    let token = seen.header("x-forwarded-access-token").unwrap();
    assert!(!token.contains('.'), "not a JWT: {token}");
    assert_eq!(seen.header("x-forwarded-user"), Some(ALICE));
}

#[tokio::test]
async fn auth0_audience_is_sent_and_the_jwt_access_token_is_verified() {
    let api = "https://api.example.com/";
    let extra = format!("audience = \"{api}\"\npass_access_token = true");
    let env = start(&auth0(), &extra).await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(env.idp.authorize_requests()[0].get("audience"), Some(api));
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let token = env.upstream.last().unwrap();
    let token = token.header("x-forwarded-access-token").unwrap();
    assert_eq!(payload(token)["aud"][0], api);

    for bad in [TokenMutation::BadSignature, TokenMutation::WrongAudience] {
        env.idp.set_knobs(|k| k.access_token_mutation = Some(bad));
        let other = TestClient::new();
        let resp = refused_login(&other, &env, None).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn auth0_sign_out_goes_to_v2_logout_without_an_end_session_endpoint() {
    let env = start(&auth0(), "").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    let out = client
        .get(&env.proxy.url("/oauth2/sign_out?rd=%2Fbye"))
        .await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.text());
    let target = out.location_url().unwrap();
    assert_eq!(
        &target[..Position::AfterPath],
        env.idp.auth0_logout_endpoint().unwrap()
    );
    assert_eq!(query(&target, "client_id").as_deref(), Some("gatehouse"));
    assert_eq!(
        query(&target, "returnTo"),
        Some(env.proxy.url("/bye")),
        "{target}"
    );
    let back = client.get(target.as_str()).await;
    assert_eq!(back.location(), Some(env.proxy.url("/bye")));
    assert_eq!(env.idp.logout_requests()[0].path, "/v2/logout");
    assert_eq!(
        client.get_api(&env.proxy.url("/")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn auth0_sign_out_uses_the_advertised_end_session_endpoint() {
    let mut preset = auth0();
    preset.knobs = |k| k.advertise_end_session = true;
    let env = start(&preset, "").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    let out = client
        .get(&env.proxy.url("/oauth2/sign_out?rd=%2Fbye"))
        .await;
    let target = out.location_url().unwrap();
    assert_eq!(
        &target[..Position::AfterPath],
        env.idp.end_session_endpoint().unwrap()
    );
    assert_eq!(
        query(&target, "post_logout_redirect_uri"),
        Some(env.proxy.url("/bye"))
    );
    client.get(target.as_str()).await;
    assert_eq!(env.idp.logout_requests()[0].path, "/oidc/logout");
}

// === Passage ===

#[tokio::test]
async fn passage_several_audiences_without_azp_are_rejected() {
    let env = start(&passage(), "").await;
    env.idp.set_knobs(|k| k.omit_azp = true);
    let client = TestClient::new();
    let resp = refused_login(&client, &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());

    // nor does an azp naming another client
    env.idp.set_knobs(|k| {
        k.omit_azp = false;
        k.extra_id_token_claims
            .insert("azp".into(), "another-client".into());
    });
    let resp = refused_login(&TestClient::new(), &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());

    // one audience needs no azp
    env.idp.set_knobs(|k| {
        k.omit_azp = true;
        k.extra_id_token_claims.clear();
        k.extra_audiences.clear();
    });
    let client = TestClient::new();
    login(&client, &env, "/").await;
}

#[tokio::test]
async fn passage_client_authenticates_with_client_secret_basic() {
    let env = start(&passage(), "").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    let token = &env.idp.token_requests()[0];
    assert_eq!(
        token.basic_auth(),
        Some(("gatehouse".into(), "s3cret".into()))
    );
    assert_eq!(token.params.get("client_secret"), None);
}

#[tokio::test]
async fn passage_phone_claim_maps_under_either_name() {
    let env = start(
        &passage(),
        r#"claim_header = ["X-Phone-A=phone", "X-Phone-B=phone_number"]"#,
    )
    .await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.header("x-phone-a"), Some("+15555550100"));
    assert_eq!(seen.header("x-phone-b"), Some("+15555550100"));
}

// === ZKAuth ===

#[tokio::test]
async fn zkauth_token_request_is_json_and_carries_the_verifier() {
    let env = start(&zkauth(), "").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(env.idp.discovery_fetches(), 0, "ZKAuth has no discovery");
    let token = &env.idp.token_requests()[0];
    assert!(
        token
            .content_type()
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{:?}",
        token.content_type()
    );
    let body = token.json().unwrap();
    assert_eq!(body["grant_type"], "authorization_code");
    assert_eq!(body["client_id"], "gatehouse");
    assert_eq!(body["client_secret"], "s3cret");
    assert_eq!(body["redirect_uri"], env.proxy.url("/oauth2/callback"));
    let verifier = body["code_verifier"].as_str().unwrap();
    let authorize = &env.idp.authorize_requests()[0];
    assert_eq!(authorize.get("code_challenge_method"), Some("S256"));
    assert_eq!(
        authorize.get("code_challenge"),
        Some(pkce_challenge(verifier).as_str())
    );
}

#[tokio::test]
async fn zkauth_token_with_the_wrong_issuer_or_audience_is_refused() {
    let env = start(&zkauth(), "").await;
    // signed by the right key, but issued by ZKAuth's production host
    env.idp
        .set_knobs(|k| k.issuer_claim = Some("https://api.zkauth.tech".into()));
    let resp = refused_login(&TestClient::new(), &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());

    env.idp.set_knobs(|k| {
        k.issuer_claim = None;
        k.extra_access_token_claims
            .insert("aud".into(), "another-client".into());
    });
    let resp = refused_login(&TestClient::new(), &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn zkauth_access_token_issued_before_the_login_or_not_valid_yet_is_refused() {
    let env = start(&zkauth(), "").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (claim, value) in [
        // minted an hour before this login began: not minted for it
        ("iat", serde_json::json!(now - 3600)),
        ("iat", serde_json::json!(now.to_string())),
        ("nbf", serde_json::json!(now + 3600)),
    ] {
        env.idp.set_knobs(|k| {
            k.extra_access_token_claims =
                serde_json::Map::from_iter([(claim.to_owned(), value.clone())]);
        });
        let resp = refused_login(&TestClient::new(), &env, None).await;
        assert!(
            resp.status.is_client_error(),
            "{claim}={value}: {}",
            resp.status
        );
    }
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn zkauth_public_client_without_a_secret_works() {
    let preset = zkauth();
    let opts = IdpOptions {
        client_secret: None,
        ..IdpOptions::provider(preset.profile.clone(), "alice")
    };
    let env = start_with(opts, &preset, "", &["client_secret"]).await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let body = env.idp.token_requests()[0].json().unwrap();
    assert!(body.get("client_secret").is_none(), "{body}");
    assert!(body["code_verifier"].is_string());
}

#[tokio::test]
async fn zkauth_session_outlives_a_short_access_token_which_is_no_longer_forwarded() {
    let mut preset = zkauth();
    preset.knobs = |k| k.access_token_ttl_secs = 2;
    let env = start(&preset, "").await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(client.get(&env.proxy.url("/")).await.status, StatusCode::OK);
    let seen = env.upstream.last().unwrap();
    assert!(seen.header("x-forwarded-access-token").is_some());

    tokio::time::sleep(Duration::from_secs(3)).await;
    let resp = client.get(&env.proxy.url("/later")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.path(), "/later");
    assert_eq!(seen.header("x-forwarded-user"), Some(ALICE));
    assert_eq!(
        seen.header("x-forwarded-access-token"),
        None,
        "an expired access token is never forwarded"
    );
}

// === helpers ===

async fn start(preset: &Preset, extra_toml: &str) -> Env {
    let opts = IdpOptions::provider(preset.profile.clone(), "alice");
    start_with(opts, preset, extra_toml, &[]).await
}

/// Starts the mock with `opts` and the preset's knobs, and gatehouse with
/// the preset's TOML, `extra_toml` over it and `remove`d keys taken out.
async fn start_with(opts: IdpOptions, preset: &Preset, extra_toml: &str, remove: &[&str]) -> Env {
    let idp = MockIdp::start(opts).await;
    idp.set_knobs(preset.knobs);
    let upstream = Recorder::start().await;
    let mut builder = TestProxy::builder(&idp, &upstream)
        .toml(&(preset.toml)(&idp))
        .set("provider", preset.name)
        .toml(extra_toml);
    for key in remove {
        builder = builder.remove(key);
    }
    let proxy = builder.start().await;
    Env {
        idp,
        upstream,
        proxy,
    }
}

/// The whole login as alice (auto-approved); returns the callback response.
async fn login(client: &TestClient, env: &Env, path: &str) -> TestResponse {
    login_as(client, env, path, None).await
}

/// The whole login, as `user` through the login page link when given.
async fn login_as(client: &TestClient, env: &Env, path: &str, user: Option<&str>) -> TestResponse {
    let callback = callback_url(client, env, path, user).await;
    finish_login(client, &env.proxy, &callback, path).await
}

/// Drives a login from `path` through the provider's authorize endpoint
/// and returns the callback URL it redirects to (not fetched).
async fn callback_url(client: &TestClient, env: &Env, path: &str, user: Option<&str>) -> Url {
    let proxy_origin = Url::parse(&env.proxy.url("/")).unwrap().origin();
    let mut resp = client.get(&env.proxy.url(path)).await;
    let authorize = loop {
        assert!(
            resp.status.is_redirection(),
            "GET {} should redirect towards the provider, got {}: {}",
            resp.url,
            resp.status,
            resp.text()
        );
        let next = resp.location_url().unwrap();
        if next.origin() != proxy_origin {
            break next;
        }
        resp = client.get(next.as_str()).await;
    };
    assert_eq!(
        &authorize[..Position::AfterPath],
        env.idp.authorize_endpoint(),
        "gatehouse sent the browser somewhere other than the authorize endpoint"
    );
    let at_idp = match user {
        Some(user) => env.idp.approve_url(&authorize, user),
        None => authorize,
    };
    let resp = client.get(at_idp.as_str()).await;
    assert!(
        resp.status.is_redirection(),
        "the provider should redirect back, got {}: {}",
        resp.status,
        resp.text()
    );
    let callback = resp.location_url().unwrap();
    assert!(
        query(&callback, "error").is_none(),
        "the provider refused: {callback}"
    );
    assert_eq!(callback.origin(), proxy_origin, "{callback}");
    callback
}

/// A login whose callback must be refused: returns the callback response
/// after checking it set no session and that the browser is still signed out.
async fn refused_login(client: &TestClient, env: &Env, user: Option<&str>) -> TestResponse {
    let callback = callback_url(client, env, "/", user).await;
    let resp = client.get(callback.as_str()).await;
    assert!(
        !resp.status.is_redirection() && !resp.status.is_success(),
        "the callback should refuse, got {}: {}",
        resp.status,
        resp.text()
    );
    assert!(!has_session_cookie(&resp), "a refused login set a session");
    assert_eq!(
        client.get_api(&env.proxy.url("/")).await.status,
        StatusCode::UNAUTHORIZED,
        "a refused login left the browser signed in"
    );
    resp
}

fn has_session_cookie(resp: &TestResponse) -> bool {
    resp.set_cookies().iter().any(|c| {
        c.name().starts_with(SESSION_COOKIE) && !c.name().contains("csrf") && !c.value().is_empty()
    })
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The claims of a JWT, unverified.
fn payload(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
