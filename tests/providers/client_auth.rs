//! Client authentication at the token endpoint, and the userinfo fallback,
//! against a mock that accepts only the method registered for the client.

use super::*;
use support::idp::ClientAuth as Registered;

/// What the token request carried: the method gatehouse used.
fn method_sent(token: &support::idp::TokenRequest) -> Registered {
    let json = token.json();
    let body = |k: &str| {
        token.params.get(k).is_some() || json.as_ref().is_some_and(|j| j.get(k).is_some())
    };
    match (
        token.headers.contains_key("authorization"),
        body("client_secret"),
    ) {
        (true, false) => Registered::Basic,
        (false, true) => Registered::Post,
        (false, false) => Registered::None,
        (true, true) => panic!("two client authentication methods at once"),
    }
}

#[tokio::test]
async fn every_preset_authenticates_with_the_method_its_provider_registers() {
    let public = IdpOptions {
        client_secret: None,
        ..IdpOptions::provider(Profile::Generic, "alice")
    };
    let post = IdpOptions {
        client_auth: Some(Registered::Post),
        ..IdpOptions::provider(Profile::Generic, "alice")
    };
    // (preset, its mock, gatehouse's extra TOML, keys removed, the method)
    let cases = [
        (oidc(), None, "", &[][..], Registered::Basic),
        (keycloak("keycloak"), None, "", &[], Registered::Basic),
        (authentik(), None, "", &[], Registered::Basic),
        (auth0(), None, "", &[], Registered::Basic),
        (passage(), None, "", &[], Registered::Basic),
        (zkauth(), None, "", &[], Registered::Post),
        (
            oidc(),
            Some(post),
            "token_endpoint_auth_method = \"client_secret_post\"",
            &[],
            Registered::Post,
        ),
        (
            oidc(),
            Some(public),
            "",
            &["client_secret"],
            Registered::None,
        ),
    ];
    for (preset, opts, extra, remove, method) in cases {
        let opts = opts.unwrap_or_else(|| IdpOptions::provider(preset.profile.clone(), "alice"));
        let env = start_with(opts, &preset, extra, remove).await;
        assert_eq!(env.idp.client_auth(), method, "{}", preset.name);
        let client = TestClient::new();
        login(&client, &env, "/").await;
        let requests = env.idp.token_requests();
        assert_eq!(requests.len(), 1, "{}", preset.name);
        assert_eq!(method_sent(&requests[0]), method, "{}", preset.name);
    }
}

#[tokio::test]
async fn a_provider_that_registered_another_method_refuses_and_gatehouse_says_so() {
    for (registered, extra, remove) in [
        // gatehouse sends client_secret_basic
        (Registered::Post, "", &[][..]),
        // gatehouse sends client_secret_post
        (
            Registered::Basic,
            "token_endpoint_auth_method = \"client_secret_post\"",
            &[],
        ),
        // a client registered as public, configured with a secret
        (Registered::None, "", &[]),
        // a confidential client, configured without its secret
        (Registered::Basic, "", &["client_secret"]),
    ] {
        let opts = IdpOptions {
            client_auth: Some(registered),
            ..IdpOptions::provider(Profile::Generic, "alice")
        };
        let env = start_with(opts, &oidc(), extra, remove).await;
        let resp = refused_login(&TestClient::new(), &env, None).await;
        let what = format!("registered {registered:?}, config {extra:?} {remove:?}");
        assert_eq!(
            resp.status,
            StatusCode::BAD_GATEWAY,
            "{what}: {}",
            resp.text()
        );
        assert!(
            resp.text()
                .contains("This is a configuration problem on the server"),
            "{what}: {}",
            resp.text()
        );
        // one attempt, with the configured method, and no other tried
        let requests = env.idp.token_requests();
        assert_eq!(requests.len(), 1, "{what}");
        assert_ne!(method_sent(&requests[0]), registered, "{what}");
        assert_eq!(env.upstream.count(), 0);
    }
}

/// The generic preset against a provider whose ID token carries no email.
async fn without_email_in_the_id_token() -> Env {
    let env = start(&oidc(), "").await;
    env.idp.set_knobs(|k| {
        k.extra_id_token_claims
            .insert("email".into(), serde_json::Value::Null);
        k.extra_id_token_claims
            .insert("email_verified".into(), serde_json::Value::Null);
    });
    let id = support::idp::jwt_claims(&env.idp.mint_id_token("alice", None, None));
    assert!(id.get("email").is_none(), "{id}");
    env
}

#[tokio::test]
async fn userinfo_email_reaches_the_upstream_when_the_id_token_has_none() {
    // an ID token with the email: no userinfo call
    let env = start(&oidc(), "").await;
    login(&TestClient::new(), &env, "/").await;
    assert_eq!(env.idp.userinfo_requests(), 0);

    let env = without_email_in_the_id_token().await;
    let client = TestClient::new();
    login(&client, &env, "/").await;
    assert_eq!(
        env.idp.userinfo_requests(),
        1,
        "one userinfo call per login"
    );
    let resp = client.get(&env.proxy.url("/page")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert_eq!(seen.header("x-forwarded-user"), Some(ALICE));
    // the session carries it: no further userinfo calls
    client.get(&env.proxy.url("/again")).await;
    assert_eq!(env.idp.userinfo_requests(), 1);
}

#[tokio::test]
async fn a_userinfo_sub_other_than_the_id_tokens_refuses_the_login() {
    let env = without_email_in_the_id_token().await;
    env.idp
        .set_knobs(|k| k.userinfo_sub = Some("uid-mallory-0666".into()));
    let resp = refused_login(&TestClient::new(), &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert_eq!(env.idp.userinfo_requests(), 1);
    assert_eq!(env.upstream.count(), 0);

    // the same provider with matching subjects signs in
    env.idp.set_knobs(|k| k.userinfo_sub = None);
    login(&TestClient::new(), &env, "/").await;
}
