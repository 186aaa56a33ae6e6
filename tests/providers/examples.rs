//! Every `examples/*.toml`, started as written against the mock provider
//! behaving as the example's provider, used for one full login through the
//! proxy to a recording upstream. Only what points at the real world is
//! replaced: the listen address, upstream and provider URLs (for ZKAuth,
//! whose endpoints are fixed, its endpoint URLs too) and the callback URL;
//! and the placeholders gatehouse refuses to start with: the cookie secret
//! (a fresh random one, as `openssl rand -base64 32` makes) and the client
//! secret (the mock is registered with the client id and that secret).

use std::path::Path;

use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};

use super::*;

/// What the example's provider is, for the mock.
fn profile_for(provider: &str) -> Profile {
    match provider {
        "oidc" => Profile::Generic,
        // the realm and slug of the examples' issuer URLs
        "keycloak" | "ztrust" => Profile::keycloak("main"),
        "authentik" => Profile::authentik("gatehouse"),
        "auth0" => Profile::Auth0,
        "passage" => Profile::Passage,
        "zkauth" => Profile::ZkAuth,
        other => panic!("no mock profile for provider {other:?}: add one here"),
    }
}

/// The client secret the mock registers and the localised example sends.
const CLIENT_SECRET: &str = "example-client-secret-for-tests";

/// A fresh random cookie secret, as `openssl rand -base64 32` makes.
fn random_cookie_secret() -> String {
    let mut key = [0_u8; 32];
    SystemRandom::new().fill(&mut key).unwrap();
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn string(table: &toml::Table, key: &str) -> String {
    table
        .get(key)
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| panic!("the example has no string `{key}`"))
        .to_owned()
}

/// The example with its real-world addresses pointed at the mock, the
/// upstreams (`upstreams[0]` for `/`, then one per path route) and the
/// proxy's `{PORT}`. Returns the TOML and what was replaced.
fn localise(example: &toml::Table, idp: &MockIdp, upstreams: &[Recorder]) -> (String, Vec<String>) {
    let mut t = example.clone();
    let mut replaced = Vec::new();
    let mut set = |t: &mut toml::Table, key: &str, value: toml::Value| {
        assert!(
            t.contains_key(key) || (key.starts_with("oidc_") && key.ends_with("_url")),
            "{key}"
        );
        replaced.push(key.to_owned());
        t.insert(key.to_owned(), value);
    };
    set(&mut t, "http_address", "127.0.0.1:{PORT}".into());
    let routes = t["upstream"].as_array().unwrap().clone();
    assert!(
        routes.len() <= upstreams.len(),
        "more upstreams than recorders"
    );
    let local: Vec<toml::Value> = routes
        .iter()
        .zip(upstreams)
        .map(|(route, rec)| {
            let route = route.as_str().unwrap();
            // `URL` or `/path=URL`: keep the path, swap the URL
            match route.split_once('=') {
                Some((path, _)) => format!("{path}={}", rec.url()).into(),
                None => rec.url().into(),
            }
        })
        .collect();
    set(&mut t, "upstream", local.into());
    let zkauth = string(example, "provider") == "zkauth";
    let issuer = if zkauth { idp.base_url() } else { idp.issuer() };
    set(&mut t, "oidc_issuer_url", issuer.into());
    if zkauth {
        set(
            &mut t,
            "oidc_authorize_url",
            idp.authorize_endpoint().into(),
        );
        set(&mut t, "oidc_token_url", idp.token_endpoint().into());
        set(&mut t, "oidc_jwks_url", idp.jwks_uri().into());
    }
    set(
        &mut t,
        "redirect_url",
        "http://127.0.0.1:{PORT}/oauth2/callback".into(),
    );
    set(
        &mut t,
        "cookie_secret",
        vec![toml::Value::from(random_cookie_secret())].into(),
    );
    set(&mut t, "client_secret", CLIENT_SECRET.into());
    (toml::to_string(&t).unwrap(), replaced)
}

#[tokio::test]
async fn every_example_signs_in_through_the_proxy_against_its_provider() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // two providers, a chooser in front: its own test below
        .filter(|p| !p.ends_with("routes.toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 6, "examples: {names:?}");
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let example: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        // as written, the example refuses to start on its placeholders
        let text = std::fs::read_to_string(&path).unwrap();
        let err = gatehouse::Config::from_toml_str(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["client_secret", "cookie_secret"], "{name}: {err}");
        assert!(err.to_string().contains("placeholder"), "{name}: {err}");
        let provider = string(&example, "provider");
        let profile = profile_for(&provider);
        let idp = MockIdp::start(IdpOptions {
            client_id: string(&example, "client_id"),
            client_secret: Some(CLIENT_SECRET.to_owned()),
            ..IdpOptions::provider(profile.clone(), "alice")
        })
        .await;
        if matches!(profile, Profile::Authentik { .. }) {
            // an instance whose users have verified their addresses
            idp.set_knobs(|k| k.email_verified = Some(true));
        }
        let upstreams = [Recorder::start().await, Recorder::start().await];
        let (toml, replaced) = localise(&example, &idp, &upstreams);
        let proxy = TestProxy::start_raw(&toml).await;
        let [upstream, second] = upstreams;
        let env = Env {
            idp,
            upstream,
            proxy,
        };
        let client = TestClient::new();
        login(&client, &env, "/welcome").await;
        let resp = client.get(&env.proxy.url("/welcome")).await;
        assert_eq!(resp.status, StatusCode::OK, "{name}: {}", resp.text());
        let seen = env.upstream.last().unwrap();
        assert_eq!(seen.path(), "/welcome", "{name}");
        assert_eq!(seen.header("x-forwarded-user"), Some(ALICE), "{name}");
        assert_eq!(
            seen.header("x-forwarded-email"),
            Some("alice@example.com"),
            "{name}"
        );
        // the example's own claim header mapping reaches the upstream
        for mapping in example
            .get("claim_header")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let header = mapping.as_str().unwrap().split('=').next().unwrap();
            assert!(
                seen.header(&header.to_ascii_lowercase())
                    .is_some_and(|v| !v.is_empty()),
                "{name}: {header} not seen upstream"
            );
        }
        if example
            .get("pass_access_token")
            .and_then(toml::Value::as_bool)
            == Some(true)
        {
            assert!(seen.header("x-forwarded-access-token").is_some(), "{name}");
        }
        // a path route goes to its own upstream
        if toml.contains("\"/api=") {
            let resp = client.get(&env.proxy.url("/api/items")).await;
            assert_eq!(resp.status, StatusCode::OK, "{name}: {}", resp.text());
            let seen = second.last().expect("the /api upstream was reached");
            assert_eq!(seen.header("x-forwarded-user"), Some(ALICE), "{name}");
        }
        assert_eq!(env.idp.token_requests().len(), 1, "{name}");
        eprintln!(
            "{name}: signed in as alice (replaced: {})",
            replaced.join(", ")
        );
    }
}

/// `examples/oauth2-proxy.cfg`, an oauth2-proxy config file with its
/// oauth2-proxy names (`upstreams` with a path route, `email_domains`,
/// `allowed_roles`, `provider = "keycloak-oidc"`, ...), started as written
/// but for its real-world addresses and secrets, signs in through the proxy.
/// The cookie domain is dropped with the addresses (the test runs on
/// 127.0.0.1); the upstreams stay in oauth2-proxy's form.
#[tokio::test]
async fn the_oauth2_proxy_example_config_signs_in_unchanged_but_for_addresses_and_secrets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/oauth2-proxy.cfg");
    let text = std::fs::read_to_string(&path).unwrap();
    // as written it stops on the placeholders only: every other key is known
    let err = gatehouse::Config::from_toml_str(&text).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["client_secret", "cookie_secret"], "{err}");
    let example: toml::Table = text.parse().unwrap();
    let idp = MockIdp::start(IdpOptions {
        client_id: string(&example, "client_id"),
        client_secret: Some(CLIENT_SECRET.to_owned()),
        ..IdpOptions::provider(Profile::keycloak("main"), "alice")
    })
    .await;
    let [root, api] = [Recorder::start().await, Recorder::start().await];
    let mut t = example.clone();
    for (key, value) in [
        ("http_address", toml::Value::from("127.0.0.1:{PORT}")),
        (
            "upstreams",
            toml::Value::from(vec![
                format!("{}/", root.url()),
                format!("{}/api/", api.url()),
            ]),
        ),
        ("oidc_issuer_url", idp.issuer().into()),
        (
            "redirect_url",
            "http://127.0.0.1:{PORT}/oauth2/callback".into(),
        ),
        ("cookie_secret", random_cookie_secret().into()),
        ("client_secret", CLIENT_SECRET.into()),
    ] {
        assert!(t.contains_key(key), "{key}");
        t.insert(key.to_owned(), value);
    }
    assert!(t.remove("cookie_domains").is_some());
    let toml = toml::to_string(&t).unwrap();
    let config = gatehouse::Config::from_toml_str(&toml.replace("{PORT}", "1")).unwrap();
    let noted: Vec<&str> = config.notes.iter().map(|n| n.key.as_str()).collect();
    assert!(
        noted.contains(&"skip_provider_button") && noted.contains(&"reverse_proxy"),
        "{noted:?}"
    );
    let proxy = TestProxy::start_raw(&toml).await;
    let env = Env {
        idp,
        upstream: root,
        proxy,
    };
    let client = TestClient::new();
    login(&client, &env, "/welcome").await;
    let resp = client.get(&env.proxy.url("/welcome")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = env.upstream.last().unwrap();
    assert_eq!(seen.path(), "/welcome");
    assert_eq!(seen.header("x-forwarded-email"), Some("alice@example.com"));
    assert!(seen.header("x-forwarded-access-token").is_some());
    // oauth2-proxy's `http://host/api/` upstream serves /api/..., path kept
    let resp = client.get(&env.proxy.url("/api/items")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = api.last().expect("the /api/ upstream was reached");
    assert_eq!(seen.path(), "/api/items");
    assert_eq!(seen.header("x-forwarded-user"), Some(ALICE));
}

/// `examples/routes.toml`, started as written but for its addresses and
/// secrets: the paths its comments call public need no session (and only
/// with the methods they name), its API paths answer 401 and never
/// redirect, and its admin area is for the admins group only.
#[tokio::test]
async fn the_routes_example_opens_and_closes_the_paths_its_comments_name() {
    use http::Method;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/routes.toml");
    let example: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let idp = MockIdp::start(IdpOptions {
        client_id: string(&example, "client_id"),
        client_secret: Some(CLIENT_SECRET.to_owned()),
        ..IdpOptions::provider(Profile::Generic, "alice")
    })
    .await;
    // as written, it refuses to start on its placeholders, both providers'
    let text = std::fs::read_to_string(&path).unwrap();
    let err = gatehouse::Config::from_toml_str(&text).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "client_secret",
            "providers[0].client_secret",
            "cookie_secret"
        ],
        "{err}"
    );
    // the second provider: partners, signing in as pat
    let partners_table = &example["providers"].as_array().unwrap()[0];
    let partners = MockIdp::start(IdpOptions {
        client_id: partners_table["client_id"].as_str().unwrap().to_owned(),
        client_secret: Some(CLIENT_SECRET.to_owned()),
        // a provider after the first comes back at its own callback address
        redirect_uris: vec!["http://127.0.0.1/oauth2/callback/partners".to_owned()],
        users: vec![crate::support::idp::DemoUser::new(
            "pat",
            "pat@partner.example",
            "Pat Partner",
            &["partners"],
        )],
        ..IdpOptions::provider(Profile::Generic, "pat")
    })
    .await;
    let upstreams = [Recorder::start().await, Recorder::start().await];
    let (toml, _) = localise(&example, &idp, &upstreams);
    let mut localised: toml::Table = toml.parse().unwrap();
    let table = localised["providers"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    table.insert("oidc_issuer_url".into(), partners.issuer().into());
    table.insert("client_secret".into(), CLIENT_SECRET.into());
    let proxy = TestProxy::start_raw(&toml::to_string(&localised).unwrap()).await;
    let [app, _] = upstreams;
    let out = TestClient::new();
    let json = [("accept", "application/json")];
    for (method, p) in [
        (Method::GET, "/healthz"),
        (Method::GET, "/favicon.ico"),
        (Method::GET, "/static/app.css"),
        (Method::HEAD, "/static/app.css"),
        (Method::POST, "/webhooks/github"),
        (Method::OPTIONS, "/admin/anything"),
    ] {
        app.clear();
        let r = out
            .request(method.clone(), &proxy.url(p), &json, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{method} {p}: {}", r.text());
        let seen = app.last().unwrap();
        assert_eq!((&seen.method, seen.path()), (&method, p));
        assert!(seen.header("x-forwarded-user").is_none(), "{method} {p}");
    }
    app.clear();
    for (method, p) in [
        (Method::POST, "/healthz"),
        (Method::POST, "/static/app.css"),
        (Method::GET, "/webhooks/github"),
        (Method::GET, "/admin/users"),
        (Method::GET, "/reports/q3"),
    ] {
        let r = out
            .request(method.clone(), &proxy.url(p), &json, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {p}");
    }
    // a browser is sent to sign in (to choose a provider, where the route
    // takes either), except on the API paths
    let to_sign_in = out.get(&proxy.url("/admin/users")).await;
    assert_eq!(to_sign_in.status, StatusCode::FOUND);
    assert!(
        to_sign_in
            .location()
            .is_some_and(|l| l.contains("/oauth2/sign_in")),
        "{:?}",
        to_sign_in.location()
    );
    // the partner portal goes straight to the partners' provider
    let portal = out.get(&proxy.url("/partners/home")).await;
    assert_eq!(portal.status, StatusCode::FOUND);
    assert!(
        portal
            .location()
            .is_some_and(|l| l.starts_with(&partners.base_url())),
        "{:?}",
        portal.location()
    );
    for p in ["/api/items", "/graphql"] {
        let r = out.get(&proxy.url(p)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{p}");
        assert!(r.location().is_none(), "{p}");
    }
    assert_eq!(app.count(), 0);
    // bob (staff, example.com): the reports, not the admin area
    let bob = TestClient::new();
    staff_login(&bob, &proxy, "bob").await;
    assert_eq!(
        bob.get(&proxy.url("/reports/q3")).await.status,
        StatusCode::OK
    );
    let admin = bob.get(&proxy.url("/admin/users")).await;
    assert_eq!(admin.status, StatusCode::FORBIDDEN, "{}", admin.text());
    assert!(app.requests_to("/admin/users").is_empty());
    // alice (admins)
    let alice = TestClient::new();
    staff_login(&alice, &proxy, "alice").await;
    assert_eq!(
        alice.get(&proxy.url("/admin/users")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.last().unwrap().header("x-forwarded-email"),
        Some("alice@example.com")
    );
    // a staff session is no partner sign-in: the portal sends alice to the
    // partners' provider rather than letting her in
    app.clear();
    let portal = alice.get(&proxy.url("/partners/home")).await;
    assert_eq!(portal.status, StatusCode::FOUND, "{}", portal.text());
    assert!(app.requests_to("/partners/home").is_empty());
    // pat signs in at the partners' provider and reaches the portal
    let pat = TestClient::new();
    let start = "/oauth2/start?provider=partners&rd=/partners/home";
    let authorize = crate::support::proxy::start_login(&pat, &proxy, start).await;
    assert!(authorize.as_str().starts_with(&partners.base_url()));
    let callback =
        crate::support::proxy::authorize_at_idp(&pat, &proxy, &authorize, Some("pat")).await;
    crate::support::proxy::finish_login(&pat, &proxy, &callback, "/partners/home").await;
    assert_eq!(
        pat.get(&proxy.url("/partners/home")).await.status,
        StatusCode::OK
    );
    assert_eq!(partners.token_requests().len(), 1);
}

/// Signs `user` in at the staff provider (`default`), as the chooser's link
/// does, and lands on /welcome.
async fn staff_login(client: &TestClient, proxy: &TestProxy, user: &str) {
    let start = "/oauth2/start?provider=default&rd=/welcome";
    let authorize = crate::support::proxy::start_login(client, proxy, start).await;
    let callback =
        crate::support::proxy::authorize_at_idp(client, proxy, &authorize, Some(user)).await;
    crate::support::proxy::finish_login(client, proxy, &callback, "/welcome").await;
}
