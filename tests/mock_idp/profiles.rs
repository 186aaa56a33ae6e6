//! The mock provider's profiles (Keycloak, Authentik, Auth0, Passage,
//! ZKAuth), talked to directly over HTTP without gatehouse: each serves its
//! provider's issuer form, endpoint paths, token shapes, claims, client
//! authentication and token request encoding. `tests/providers.rs` then runs
//! gatehouse against them.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::client::{TestClient, TestResponse};
use crate::support::idp::{
    self, AUTH0_ROLES_CLAIM, ClientAuth, DemoUser, IdpOptions, MockIdp, PASSAGE_OTHER_AUDIENCE,
    Profile, TokenMutation,
};
use bytes::Bytes;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K9x2sWpYP8hbCE3eI0ACMl0o5e1vQ2wN4";
const BASIC: (&str, &str) = ("authorization", "Basic Z2F0ZWhvdXNlOnMzY3JldA=="); // gatehouse:s3cret
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn start(profile: Profile) -> MockIdp {
    MockIdp::start(IdpOptions::provider(profile, "alice")).await
}

/// The profile's authorize URL with every parameter gatehouse sends, plus `extra`.
fn authorize_url(idp: &MockIdp, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&idp.authorize_endpoint()).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", "gatehouse")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("response_type", "code")
        .append_pair("state", "st4te")
        .append_pair("code_challenge", &idp::pkce_challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    if idp.profile().is_oidc() {
        url.query_pairs_mut()
            .append_pair("scope", "openid email profile")
            .append_pair("nonce", "n0nce");
    }
    url.query_pairs_mut().extend_pairs(extra);
    url.into()
}

/// Authorizes (auto-approved as alice unless the knob says otherwise) and
/// returns the code.
async fn code(client: &TestClient, idp: &MockIdp, extra: &[(&str, &str)]) -> String {
    let resp = client.get(&authorize_url(idp, extra)).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let back = resp.location_url().unwrap();
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    query(&back, "code").unwrap_or_else(|| panic!("no code in {back}"))
}

fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn code_form<'a>(code: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    form.extend_from_slice(extra);
    form
}

/// `POST`s a form to the token endpoint with `headers`.
async fn token_form(
    client: &TestClient,
    idp: &MockIdp,
    headers: &[(&str, &str)],
    form: &[(&str, &str)],
) -> TestResponse {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut all = vec![FORM];
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

async fn token_json(client: &TestClient, idp: &MockIdp, body: &Value) -> TestResponse {
    client
        .request(
            Method::POST,
            &idp.token_endpoint(),
            &[("content-type", "application/json")],
            Some(Bytes::from(body.to_string())),
        )
        .await
}

/// Verifies an RS256 token signed by key1 for `audience` from the issuer
/// `iss`; returns its claims.
fn verify(token: &str, iss: &str, audience: &str) -> jsonwebtoken::errors::Result<Value> {
    let key = DecodingKey::from_rsa_pem(idp::KEY1_PUBLIC_PEM.as_bytes()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&[iss]);
    jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims)
}

fn string(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[tokio::test]
async fn keycloak_serves_realm_endpoints_and_roles_in_the_access_token() {
    let idp = MockIdp::start(IdpOptions {
        client_auth: Some(ClientAuth::Post),
        ..IdpOptions::provider(Profile::keycloak("demo"), "alice")
    })
    .await;
    let base = idp.base_url();
    let client = TestClient::new();
    assert_eq!(idp.issuer(), format!("{base}/realms/demo"));
    let doc = client
        .get_api(&format!(
            "{}/.well-known/openid-configuration",
            idp.issuer()
        ))
        .await
        .json();
    let oidc = format!("{base}/realms/demo/protocol/openid-connect");
    assert_eq!(doc["issuer"], idp.issuer());
    assert_eq!(doc["authorization_endpoint"], format!("{oidc}/auth"));
    assert_eq!(doc["token_endpoint"], format!("{oidc}/token"));
    assert_eq!(doc["jwks_uri"], format!("{oidc}/certs"));
    assert_eq!(doc["userinfo_endpoint"], format!("{oidc}/userinfo"));
    assert_eq!(doc["end_session_endpoint"], format!("{oidc}/logout"));
    let jwks = client.get_api(&format!("{oidc}/certs")).await.json();
    assert_eq!(jwks["keys"][0]["kid"], "key1");
    // the generic paths are not Keycloak's
    assert_eq!(
        client.get_api(&format!("{base}/jwks")).await.status,
        StatusCode::NOT_FOUND
    );

    // a client registered for client_secret_post
    let c = code(&client, &idp, &[]).await;
    let extra = [("client_id", "gatehouse"), ("client_secret", "s3cret")];
    let resp = token_form(&client, &idp, &[], &code_form(&c, &extra)).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let tokens = resp.json();
    let id = verify(string(&tokens["id_token"]), &idp.issuer(), "gatehouse").unwrap();
    assert_eq!(id["typ"], "ID");
    assert_eq!(id["azp"], "gatehouse");
    assert_eq!(id["acr"], "1");
    assert_eq!(id["nonce"], "n0nce");
    assert_eq!(id["groups"], json!(["/admins", "/staff"]));
    assert_eq!(id["preferred_username"], "alice");
    assert!(string(&id["sid"]).len() > 10);
    assert_eq!(id["session_state"], id["sid"]);
    assert!(id.get("resource_access").is_none(), "{id}");

    let access = verify(string(&tokens["access_token"]), &idp.issuer(), "account").unwrap();
    assert_eq!(access["typ"], "Bearer");
    assert_eq!(access["azp"], "gatehouse");
    assert_eq!(access["sid"], id["sid"]);
    assert_eq!(access["scope"], "openid email profile");
    assert_eq!(
        access["realm_access"]["roles"],
        json!(["offline_access", "user"])
    );
    assert_eq!(
        access["resource_access"]["gatehouse"]["roles"],
        json!(["editor"])
    );

    // each refresh hands out a new refresh token; client_secret_basic is
    // not this client's registered method
    let refresh = string(&tokens["refresh_token"]).to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let refused = token_form(&client, &idp, &[BASIC], &form).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    let form = [&form[..], &extra[..]].concat();
    let refreshed = token_form(&client, &idp, &[], &form).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let next = string(&refreshed.json()["refresh_token"]).to_owned();
    assert_ne!(next, refresh);
    let form = [
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", next.as_str()),
        ][..],
        &extra[..],
    ]
    .concat();
    let again = token_form(&client, &idp, &[], &form).await;
    assert_ne!(string(&again.json()["refresh_token"]), next);

    // bob has no role of our client: no entry for it
    let bob = idp.mint_access_token("bob", None);
    let bob = verify(&bob, &idp.issuer(), "account").unwrap();
    assert!(bob["resource_access"].get("gatehouse").is_none(), "{bob}");
    assert_eq!(
        bob["resource_access"]["account"]["roles"][0],
        "manage-account"
    );
}

#[tokio::test]
async fn authentik_issuer_and_endpoints_end_with_a_slash() {
    let idp = start(Profile::authentik("my-app")).await;
    let base = idp.base_url();
    let client = TestClient::new();
    assert_eq!(idp.issuer(), format!("{base}/application/o/my-app/"));
    let doc = client
        .get_api(&format!(
            "{base}/application/o/my-app/.well-known/openid-configuration"
        ))
        .await
        .json();
    assert_eq!(doc["issuer"], idp.issuer());
    for (key, path) in [
        ("authorization_endpoint", "/application/o/authorize/"),
        ("token_endpoint", "/application/o/token/"),
        ("userinfo_endpoint", "/application/o/userinfo/"),
        ("jwks_uri", "/application/o/my-app/jwks/"),
        ("end_session_endpoint", "/application/o/my-app/end-session/"),
    ] {
        assert_eq!(doc[key], format!("{base}{path}"), "{key}");
    }
    // Authentik does not answer without the slash
    for path in ["/application/o/my-app/jwks", "/authorize"] {
        let resp = client.get_api(&format!("{base}{path}")).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
    }

    let c = code(&client, &idp, &[]).await;
    let tokens = token_form(&client, &idp, &[BASIC], &code_form(&c, &[]))
        .await
        .json();
    let id = verify(string(&tokens["id_token"]), &idp.issuer(), "gatehouse").unwrap();
    assert_eq!(id["iss"], format!("{base}/application/o/my-app/"));
    assert_eq!(id["nickname"], "alice");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"], json!(["admins", "staff"]));
    assert_eq!(id["email_verified"], false);
    let bearer = format!("Bearer {}", string(&tokens["access_token"]));
    let info = client
        .get_with(
            &idp.userinfo_endpoint().unwrap(),
            &[("authorization", &bearer)],
        )
        .await
        .json();
    assert_eq!(info["email_verified"], false);
    assert_eq!(info["nickname"], "alice");

    idp.set_knobs(|k| k.email_verified = Some(true));
    let id = idp.mint_id_token("alice", Some("n"), None);
    let id = verify(&id, &idp.issuer(), "gatehouse").unwrap();
    assert_eq!(id["email_verified"], true);
}

#[tokio::test]
async fn auth0_access_token_is_a_jwt_only_for_an_audience() {
    let idp = start(Profile::Auth0).await;
    let base = idp.base_url();
    let client = TestClient::new();
    assert_eq!(idp.issuer(), format!("{base}/"));
    let discovery = format!("{base}/.well-known/openid-configuration");
    let doc = client.get_api(&discovery).await.json();
    assert_eq!(doc["issuer"], format!("{base}/"));
    assert_eq!(doc["token_endpoint"], format!("{base}/oauth/token"));
    assert_eq!(doc["jwks_uri"], format!("{base}/.well-known/jwks.json"));
    assert!(doc.get("end_session_endpoint").is_none(), "{doc}");
    let oidc_logout = format!("{base}/oidc/logout");
    assert_eq!(client.get(&oidc_logout).await.status, StatusCode::NOT_FOUND);
    idp.set_knobs(|k| k.advertise_end_session = true);
    let doc = client.get_api(&discovery).await.json();
    assert_eq!(doc["end_session_endpoint"], oidc_logout);

    // without an audience: an opaque token that /userinfo understands
    let c = code(&client, &idp, &[]).await;
    let tokens = token_form(&client, &idp, &[BASIC], &code_form(&c, &[]))
        .await
        .json();
    let opaque = string(&tokens["access_token"]);
    assert!(!opaque.contains('.'), "{opaque}");
    let id = verify(string(&tokens["id_token"]), &idp.issuer(), "gatehouse").unwrap();
    assert_eq!(id["nickname"], "alice");
    assert_eq!(id[AUTH0_ROLES_CLAIM], json!(["admin"]));
    assert!(string(&id["picture"]).starts_with("https://"));
    assert!(id["updated_at"].is_string());
    assert!(id.get("groups").is_none(), "{id}");
    let info = client
        .get_with(
            &format!("{base}/userinfo"),
            &[("authorization", &format!("Bearer {opaque}"))],
        )
        .await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json()["sub"], "uid-alice-0001");

    // with one: a JWT for that API and for /userinfo
    let api = "https://api.example.com/";
    let c = code(&client, &idp, &[("audience", api)]).await;
    assert_eq!(idp.authorize_requests()[1].get("audience"), Some(api));
    let tokens = token_form(&client, &idp, &[BASIC], &code_form(&c, &[]))
        .await
        .json();
    let access = verify(string(&tokens["access_token"]), &idp.issuer(), api).unwrap();
    assert_eq!(access["aud"], json!([api, format!("{base}/userinfo")]));
    assert_eq!(access["azp"], "gatehouse");
    assert_eq!(access["permissions"], json!(["editor"]));
    assert_eq!(access["scope"], "openid email profile");

    // /v2/logout is always there
    let resp = client
        .get(&format!(
            "{base}/v2/logout?client_id=gatehouse&returnTo=http%3A%2F%2F127.0.0.1%3A9%2Fbye"
        ))
        .await;
    assert_eq!(resp.location().as_deref(), Some("http://127.0.0.1:9/bye"));
    let logout = &idp.logout_requests()[0];
    assert_eq!(logout.path, "/v2/logout");
    assert_eq!(logout.params.get("client_id"), Some("gatehouse"));
}

#[tokio::test]
async fn passage_takes_only_client_secret_basic_and_sends_aud_as_an_array() {
    let idp = start(Profile::Passage).await;
    let base = idp.base_url();
    let client = TestClient::new();
    assert_eq!(idp.issuer(), base);
    let doc = client
        .get_api(&format!("{base}/.well-known/openid-configuration"))
        .await
        .json();
    assert_eq!(
        doc["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic"])
    );
    assert_eq!(doc["token_endpoint"], format!("{base}/token"));
    assert_eq!(doc["jwks_uri"], format!("{base}/.well-known/jwks.json"));

    let c = code(&client, &idp, &[]).await;
    let post = [("client_id", "gatehouse"), ("client_secret", "s3cret")];
    let resp = token_form(&client, &idp, &[], &code_form(&c, &post)).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.json()["error"], "invalid_client");
    let c = code(&client, &idp, &[]).await;
    let resp = token_form(&client, &idp, &[BASIC], &code_form(&c, &post)).await;
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "a secret in the body too"
    );

    let c = code(&client, &idp, &[]).await;
    let resp = token_form(&client, &idp, &[BASIC], &code_form(&c, &[])).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let id = verify(string(&resp.json()["id_token"]), &base, "gatehouse").unwrap();
    assert_eq!(id["aud"], json!(["gatehouse", PASSAGE_OTHER_AUDIENCE]));
    assert_eq!(id["azp"], "gatehouse");
    assert_eq!(id["phone"], "+15555550100");
    assert_eq!(id["phone_number_verified"], true);
    assert_eq!(id["email_verified"], true);
    assert!(
        id.get("name").is_none() && id.get("picture").is_none(),
        "{id}"
    );

    idp.set_knobs(|k| {
        k.omit_azp = true;
        k.extra_audiences.clear();
    });
    let id = verify(&idp.mint_id_token("alice", None, None), &base, "gatehouse").unwrap();
    assert_eq!(id["aud"], json!(["gatehouse"]));
    assert!(id.get("azp").is_none(), "{id}");
}

#[tokio::test]
async fn zkauth_is_oauth_with_a_json_token_request_and_no_id_token() {
    let idp = start(Profile::ZkAuth).await;
    let base = idp.base_url();
    let client = TestClient::new();
    let discovery = client.get_api(&idp.discovery_url()).await;
    assert_eq!(discovery.status, StatusCode::NOT_FOUND);
    assert_eq!(
        idp.authorize_endpoint(),
        format!("{base}/api/oauth/authorize")
    );
    assert_eq!(idp.token_endpoint(), format!("{base}/api/oauth/token"));
    assert_eq!(idp.jwks_uri(), format!("{base}/.well-known/jwks.json"));
    assert_eq!(idp.userinfo_endpoint(), None);

    // PKCE is required
    let resp = client
        .get(&authorize_url(&idp, &[]).replace("code_challenge_method=S256", "x=y"))
        .await;
    let back = resp.location_url().unwrap();
    assert_eq!(query(&back, "error").as_deref(), Some("invalid_request"));

    // a form body is refused
    let c = code(&client, &idp, &[]).await;
    let post = [("client_id", "gatehouse"), ("client_secret", "s3cret")];
    let resp = token_form(&client, &idp, &[], &code_form(&c, &post)).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.json()["error"], "invalid_request");

    let c = code(&client, &idp, &[]).await;
    let mut body = json!({
        "grant_type": "authorization_code",
        "code": c,
        "redirect_uri": REDIRECT,
        "client_id": "gatehouse",
        "client_secret": "wrong",
        "code_verifier": VERIFIER,
    });
    let resp = token_json(&client, &idp, &body).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

    let c = code(&client, &idp, &[]).await;
    body["code"] = json!(c);
    body["client_secret"] = json!("s3cret");
    let resp = token_json(&client, &idp, &body).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let tokens = resp.json();
    let members: Vec<&str> = tokens
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(members, ["access_token", "expires_in", "token_type"]);
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["token_type"], "Bearer");
    let access = verify(string(&tokens["access_token"]), &base, "gatehouse").unwrap();
    assert_eq!(access["sub"], "uid-alice-0001");
    assert_eq!(access["email"], "alice@example.com");
    assert_eq!(access["name"], "Alice Admin");
    let lifetime = access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900);

    let recorded = idp.token_requests().pop().unwrap();
    assert_eq!(recorded.content_type(), Some("application/json"));
    assert_eq!(recorded.json().unwrap()["code_verifier"], VERIFIER);
    assert_eq!(recorded.params.get("code_verifier"), Some(VERIFIER));
    assert!(idp.try_mint_id_token("alice", None, None).is_err());

    // the identity token is the access token, for mutations and the issuer knob
    idp.set_identity_token_mutation(Some(TokenMutation::WrongAudience));
    assert!(idp.knobs().id_token_mutation.is_none());
    // (a knobs guard must not live into the mint, which locks them too)
    let mutation = idp.knobs().access_token_mutation;
    let wrong = idp.mint_access_token("alice", mutation);
    assert!(verify(&wrong, &base, "gatehouse").is_err());
    idp.set_identity_token_mutation(None);
    idp.set_knobs(|k| k.issuer_claim = Some("https://api.zkauth.tech".into()));
    let other = idp.mint_access_token("alice", None);
    assert!(verify(&other, "https://api.zkauth.tech", "gatehouse").is_ok());
}

#[tokio::test]
async fn zkauth_public_client_needs_no_secret_and_users_without_email_get_none() {
    let mut opts = IdpOptions::provider(Profile::ZkAuth, "zed");
    opts.client_secret = None;
    opts.users.push(DemoUser::new("zed", "", "", &[]));
    let idp = MockIdp::start(opts).await;
    let client = TestClient::new();
    let c = code(&client, &idp, &[]).await;
    let body = json!({
        "grant_type": "authorization_code",
        "code": c,
        "redirect_uri": REDIRECT,
        "client_id": "gatehouse",
        "code_verifier": VERIFIER,
    });
    let resp = token_json(&client, &idp, &body).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let access = verify(
        string(&resp.json()["access_token"]),
        &idp.base_url(),
        "gatehouse",
    )
    .unwrap();
    assert_eq!(access["sub"], "uid-zed-0001");
    assert!(access.get("email").is_none() && access.get("name").is_none());
}

#[tokio::test]
async fn every_profile_applies_mutations_and_key_knobs_to_its_identity_token() {
    let profiles = [
        Profile::Generic,
        Profile::keycloak("demo"),
        Profile::authentik("app"),
        Profile::Auth0,
        Profile::Passage,
        Profile::ZkAuth,
    ];
    for profile in profiles {
        let idp = start(profile.clone()).await;
        let iss = if profile == Profile::ZkAuth {
            idp.base_url()
        } else {
            idp.issuer()
        };
        // minted with the knob the token endpoint would apply
        let mint = |m: Option<TokenMutation>| {
            idp.set_identity_token_mutation(m);
            let knobs = idp.knobs().clone();
            if profile.is_oidc() {
                idp.mint_id_token("alice", Some("n"), knobs.id_token_mutation)
            } else {
                idp.mint_access_token("alice", knobs.access_token_mutation)
            }
        };
        assert!(
            verify(&mint(None), &iss, "gatehouse").is_ok(),
            "{profile:?}"
        );
        for m in [
            TokenMutation::WrongAudience,
            TokenMutation::WrongIssuer,
            TokenMutation::Expired,
            TokenMutation::BadSignature,
            TokenMutation::UnknownKid,
        ] {
            assert!(
                verify(&mint(Some(m)), &iss, "gatehouse").is_err(),
                "{profile:?}: {m:?} verified"
            );
        }
    }
}

#[tokio::test]
async fn login_page_links_to_the_profiles_approve_path() {
    let idp = MockIdp::start(IdpOptions {
        profile: Profile::keycloak("demo"),
        ..IdpOptions::default()
    })
    .await;
    let client = TestClient::new();
    let url = authorize_url(&idp, &[]);
    let page = client.get(&url).await.text();
    let link = "/realms/demo/protocol/openid-connect/auth/approve?user=bob";
    assert!(page.contains(link), "{page}");
    let approve = idp.approve_url(&Url::parse(&url).unwrap(), "bob");
    let resp = client.get(approve.as_str()).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let c = query(&resp.location_url().unwrap(), "code").unwrap();
    let tokens = token_form(&client, &idp, &[BASIC], &code_form(&c, &[]))
        .await
        .json();
    let id = verify(string(&tokens["id_token"]), &idp.issuer(), "gatehouse").unwrap();
    assert_eq!(id["preferred_username"], "bob");
}
