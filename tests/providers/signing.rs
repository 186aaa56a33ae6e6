//! Keys, algorithms and audiences, through gatehouse: logins with a key of
//! every family the presets allow, tokens whose `alg` is not their key's,
//! and extra audiences on the generic preset.

use super::*;

/// Publishes only `kid` and signs every token with it.
fn only_key(idp: &MockIdp, kid: &'static str) {
    idp.set_knobs(|k| {
        k.publish_keys = vec![kid];
        k.signing_kid = kid;
    });
}

#[tokio::test]
async fn logins_with_es256_es384_eddsa_and_ps256_keys_work() {
    // the generic preset verifies the ID token; Keycloak's the access token too
    for preset in [oidc, || keycloak("keycloak")] {
        let preset = preset();
        for kid in ["ec256", "ec384", "ed25519", "pss"] {
            let env = start(&preset, "").await;
            // the only key published: no other key could verify the tokens
            only_key(&env.idp, kid);
            let client = TestClient::new();
            login(&client, &env, "/").await;
            let resp = client.get(&env.proxy.url("/")).await;
            assert_eq!(resp.status, StatusCode::OK, "{} {kid}", preset.name);
            let seen = env.upstream.last().unwrap();
            assert_eq!(seen.header("x-forwarded-user"), Some(ALICE), "{kid}");
            let token = env.idp.mint_id_token("alice", None, None);
            let alg = jsonwebtoken::decode_header(&token).unwrap().alg;
            assert_eq!(Some(alg), support::idp::key_alg(kid));
        }
    }
}

#[tokio::test]
async fn an_id_token_whose_alg_is_not_its_keys_is_refused() {
    for (kid, mutation) in [
        // key1's JWK says RS256; the token is a valid PS256 signature by it
        ("key1", TokenMutation::AlgMismatch),
        // the "pss" JWK says PS256; the token is a valid RS256 signature
        ("pss", TokenMutation::AlgMismatch),
        // a valid ES256 signature, under the kid of an RSA key
        ("key1", TokenMutation::KidOfOtherFamily),
    ] {
        let env = start(&oidc(), "").await;
        env.idp.set_knobs(|k| {
            k.publish_keys = vec!["key1", "pss", "ec256"];
            k.signing_kid = kid;
        });
        // the same keys sign a good login
        login(&TestClient::new(), &env, "/").await;
        env.idp.set_identity_token_mutation(Some(mutation));
        let resp = refused_login(&TestClient::new(), &env, None).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{kid} {mutation:?}: {}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn an_access_token_whose_alg_is_not_its_keys_is_refused() {
    // Keycloak: the roles come from the access token, verified as a JWT
    for (kid, mutation) in [
        ("key1", TokenMutation::AlgMismatch),
        ("pss", TokenMutation::AlgMismatch),
        ("key1", TokenMutation::KidOfOtherFamily),
    ] {
        let env = start(&keycloak("keycloak"), "").await;
        env.idp.set_knobs(|k| {
            k.publish_keys = vec!["key1", "pss", "ec256"];
            k.signing_kid = kid;
        });
        login(&TestClient::new(), &env, "/").await;
        env.idp
            .set_knobs(|k| k.access_token_mutation = Some(mutation));
        let resp = refused_login(&TestClient::new(), &env, None).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{kid} {mutation:?}: {}",
            resp.text()
        );
    }
}

#[tokio::test]
async fn generic_preset_refuses_another_audience_until_it_is_listed() {
    let other = "https://other.example/api";
    let env = start(&oidc(), "").await;
    env.idp
        .set_knobs(|k| k.extra_audiences = vec![other.to_owned()]);
    let resp = refused_login(&TestClient::new(), &env, None).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert_eq!(env.idp.token_requests().len(), 1);
    assert_eq!(env.upstream.count(), 0);

    // listing another audience is not listing this one
    let listed = "oidc_extra_audience = [\"https://else.example\"]";
    let env = start(&oidc(), listed).await;
    env.idp
        .set_knobs(|k| k.extra_audiences = vec![other.to_owned()]);
    refused_login(&TestClient::new(), &env, None).await;

    let listed = format!("oidc_extra_audience = [\"{other}\"]");
    let env = start(&oidc(), &listed).await;
    env.idp
        .set_knobs(|k| k.extra_audiences = vec![other.to_owned()]);
    let client = TestClient::new();
    login(&client, &env, "/").await;
    let id = support::idp::jwt_claims(&env.idp.mint_id_token("alice", None, None));
    assert_eq!(id["aud"], serde_json::json!(["gatehouse", other]));
    let resp = client.get(&env.proxy.url("/")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(
        env.upstream.last().unwrap().header("x-forwarded-user"),
        Some(ALICE)
    );
}
