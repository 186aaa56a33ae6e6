//! Several providers at once (issue 10, item 4): a ZKAuth-style provider
//! from the flat settings (`default`) and an OpenID Connect one from a
//! `[[providers]]` table (`corp`), both mocks running, one gatehouse. Each
//! signs its own users in; a session remembers its provider, so a route
//! that takes only the other one challenges it (a sign-in there, not a
//! 403), and its refresh, sign-out and back-channel logout go to its own
//! provider. The chooser lists both; `/ready` waits for both.

use super::*;
use support::proxy::authorize_at_idp;

/// alice signs in at the ZKAuth mock, bob at the OIDC one.
const BOB: &str = "uid-bob-0001";

/// Both mocks, a recording upstream and gatehouse with two routes that
/// each take one provider (everything else takes either).
struct Two {
    zk: MockIdp,
    corp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
}

async fn two(extra_toml: &str) -> Two {
    two_with(extra_toml, |_| {}, true).await
}

async fn two_with(extra_toml: &str, corp_knobs: fn(&mut Knobs), wait: bool) -> Two {
    let zk = MockIdp::start(IdpOptions::provider(Profile::ZkAuth, "alice")).await;
    // a provider after the first comes back at its own callback address
    let corp = MockIdp::start(IdpOptions {
        redirect_uris: vec!["http://127.0.0.1/oauth2/callback/corp".to_owned()],
        ..IdpOptions::auto_approving("bob")
    })
    .await;
    corp.set_knobs(corp_knobs);
    let upstream = Recorder::start().await;
    let mut builder = TestProxy::builder(&zk, &upstream)
        .set("provider", "zkauth")
        .toml(&format!(
            r#"oidc_issuer_url = "{}"
            oidc_authorize_url = "{}"
            oidc_token_url = "{}"
            oidc_jwks_url = "{}"

            [[providers]]
            id = "corp"
            name = "Corp SSO"
            oidc_issuer_url = "{}"
            client_id = "gatehouse"
            client_secret = "s3cret"

            [[routes]]
            path = "/zk-only"
            provider = "default"

            [[routes]]
            path = "/corp-only"
            providers = ["corp"]
            "#,
            zk.base_url(),
            zk.authorize_endpoint(),
            zk.token_endpoint(),
            zk.jwks_uri(),
            corp.issuer(),
        ))
        .toml(extra_toml);
    if !wait {
        builder = builder.no_wait();
    }
    let proxy = builder.start().await;
    Two {
        zk,
        corp,
        upstream,
        proxy,
    }
}

/// `GET path`, following gatehouse's own redirects until one leaves for a
/// provider: that authorize URL.
async fn start_login(client: &TestClient, proxy: &TestProxy, path: &str) -> Url {
    let origin = Url::parse(&proxy.url("/")).unwrap().origin();
    let mut resp = client.get(&proxy.url(path)).await;
    for _ in 0..4 {
        assert_eq!(resp.status, StatusCode::FOUND, "{path}: {}", resp.text());
        let next = resp.location_url().unwrap();
        if next.origin() != origin {
            return next;
        }
        resp = client.get(next.as_str()).await;
    }
    panic!("{path}: too many redirects within gatehouse")
}

/// Signs `client` in through `path`, a route that takes one provider, so
/// the browser goes straight to it; returns where it was sent to sign in.
async fn sign_in_via(client: &TestClient, env: &Two, path: &str) -> Url {
    let authorize = start_login(client, &env.proxy, path).await;
    let callback = authorize_at_idp(client, &env.proxy, &authorize, None).await;
    finish_login(client, &env.proxy, &callback, path).await;
    authorize
}

/// The authorize endpoint a browser sent to sign in for `path` is sent to,
/// or `None` when it was let through.
async fn sent_to_sign_in(client: &TestClient, env: &Two, path: &str) -> Option<String> {
    let resp = client.get(&env.proxy.url(path)).await;
    if resp.status == StatusCode::OK {
        return None;
    }
    assert_eq!(resp.status, StatusCode::FOUND, "{path}: {}", resp.text());
    let to = resp.location_url().unwrap();
    Some(to[..Position::AfterPath].to_owned())
}

#[tokio::test]
async fn each_provider_signs_its_users_in_and_a_session_does_not_satisfy_the_other_providers_route()
{
    let env = two("").await;
    let zk_authorize = Some(env.zk.authorize_endpoint());
    let corp_authorize = Some(env.corp.authorize_endpoint());

    let a = TestClient::new();
    let sent = sign_in_via(&a, &env, "/zk-only").await;
    assert_eq!(Some(sent[..Position::AfterPath].to_owned()), zk_authorize);
    let b = TestClient::new();
    let sent = sign_in_via(&b, &env, "/corp-only").await;
    assert_eq!(Some(sent[..Position::AfterPath].to_owned()), corp_authorize);

    // each session passes its own provider's route and the shared ones
    for (client, own, user) in [(&a, "/zk-only/x", ALICE), (&b, "/corp-only/x", BOB)] {
        for path in [own, "/shared"] {
            assert_eq!(sent_to_sign_in(client, &env, path).await, None, "{path}");
            let seen = env.upstream.last().unwrap();
            assert_eq!(
                (seen.path(), seen.header("x-forwarded-user")),
                (path, Some(user))
            );
        }
    }
    // ... and the other provider's route asks for a sign-in there: not a 403
    assert_eq!(
        sent_to_sign_in(&a, &env, "/corp-only").await,
        corp_authorize
    );
    assert_eq!(sent_to_sign_in(&b, &env, "/zk-only").await, zk_authorize);
    // an API client gets a 401 for it, like any missing session
    assert_eq!(
        a.get_api(&env.proxy.url("/corp-only")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // signing in at the other provider moves the browser over to it
    sign_in_via(&a, &env, "/corp-only").await;
    assert_eq!(sent_to_sign_in(&a, &env, "/corp-only").await, None);
    assert_eq!(
        env.upstream.last().unwrap().header("x-forwarded-user"),
        Some(BOB)
    );
    assert_eq!(sent_to_sign_in(&a, &env, "/zk-only").await, zk_authorize);
    // each code went to the token endpoint of the provider that issued it
    assert_eq!(env.zk.token_requests().len(), 1);
    assert_eq!(env.corp.token_requests().len(), 2);
}

#[tokio::test]
async fn a_route_open_to_both_offers_a_chooser_that_starts_a_login_at_each() {
    let env = two("").await;
    let client = TestClient::new();
    let resp = client.get(&env.proxy.url("/shared?q=1")).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let chooser = resp.location_url().unwrap();
    assert_eq!(chooser.path(), "/oauth2/sign_in");
    assert_eq!(
        chooser.query_pairs().collect::<Vec<_>>(),
        [("rd".into(), "/shared?q=1".into())]
    );

    let page = client.get(chooser.as_str()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    for (id, name) in [("default", "zkauth"), ("corp", "Corp SSO")] {
        let href = format!("/oauth2/start?provider={id}&amp;rd=%2Fshared%3Fq%3D1");
        assert!(
            html.contains(&format!("<a href=\"{href}\">{name}</a>")),
            "{html}"
        );
    }
    assert!(
        !html.contains("client_id") && !html.contains("oidc_"),
        "{html}"
    );
    let listed = client.get_api(chooser.as_str()).await.json();
    let ids: Vec<&str> = listed["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["default", "corp"]);
    assert_eq!(
        listed["providers"][1]["sign_in"],
        "/oauth2/start?provider=corp&rd=%2Fshared%3Fq%3D1"
    );

    // the chooser can be narrowed to some providers (unknown ids left out);
    // narrowed to one, it sends the browser straight there
    let narrowed = client
        .get_api(
            &env.proxy
                .url("/oauth2/sign_in?rd=/&providers=corp,nope,default"),
        )
        .await
        .json();
    assert_eq!(narrowed["providers"].as_array().unwrap().len(), 2);
    let one = client
        .get(&env.proxy.url("/oauth2/sign_in?rd=/&providers=corp,nope"))
        .await;
    assert_eq!(
        &one.location_url().unwrap()[..Position::AfterPath],
        env.corp.authorize_endpoint()
    );

    // a sign-in started without naming a provider (a front proxy's
    // redirect) offers the providers of the route it returns to
    for (path, to) in [
        (
            "/oauth2/start?rd=%2Fcorp-only%2Fpage",
            env.corp.authorize_endpoint(),
        ),
        ("/oauth2/sign_in?rd=%2Fzk-only", env.zk.authorize_endpoint()),
        ("/oauth2/start?rd=%2Fshared", "/oauth2/sign_in".to_owned()),
    ] {
        let resp = client.get(&env.proxy.url(path)).await;
        let location = resp.location_url().unwrap();
        let at = if location.origin() == chooser.origin() {
            location.path().to_owned()
        } else {
            location[..Position::AfterPath].to_owned()
        };
        assert_eq!(at, to, "{path}");
    }

    // following a choice signs in at that provider and comes back
    for (id, idp, user) in [("corp", &env.corp, BOB), ("default", &env.zk, ALICE)] {
        let start = format!("/oauth2/start?provider={id}&rd=%2Fshared%3Fq%3D1");
        let authorize = start_login(&client, &env.proxy, &start).await;
        assert_eq!(&authorize[..Position::AfterPath], idp.authorize_endpoint());
        let callback = authorize_at_idp(&client, &env.proxy, &authorize, None).await;
        finish_login(&client, &env.proxy, &callback, "/shared?q=1").await;
        assert_eq!(
            sent_to_sign_in(&client, &env, "/shared?q=1").await,
            None,
            "{id}"
        );
        assert_eq!(
            env.upstream.last().unwrap().header("x-forwarded-user"),
            Some(user)
        );
    }
}

#[tokio::test]
async fn start_with_an_unknown_provider_id_is_a_400_for_browsers_and_api_clients() {
    let env = two("").await;
    let client = TestClient::new();
    for id in ["nope", "", "corp%00", "DEFAULT"] {
        let url = env.proxy.url(&format!("/oauth2/start?provider={id}&rd=/"));
        let page = client.get(&url).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{id}: {}",
            page.text()
        );
        let api = client.get_api(&url).await;
        assert_eq!(api.status, StatusCode::BAD_REQUEST, "{id}");
        assert!(
            page.header("set-cookie").is_none(),
            "{id}: no login started"
        );
    }
    assert!(env.zk.authorize_requests().is_empty());
    assert!(env.corp.authorize_requests().is_empty());
}

#[tokio::test]
async fn refresh_and_sign_out_go_to_the_provider_that_signed_the_session_in() {
    let env = two("cookie_refresh = \"1s\"").await;
    let b = TestClient::new();
    sign_in_via(&b, &env, "/corp-only").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sent_to_sign_in(&b, &env, "/shared").await, None);
    let grants: Vec<String> = env
        .corp
        .token_requests()
        .iter()
        .filter_map(|t| t.params.get("grant_type").map(str::to_owned))
        .collect();
    assert_eq!(grants, ["authorization_code", "refresh_token"]);
    assert!(
        env.zk.token_requests().is_empty(),
        "nothing went to the other provider"
    );

    // bob's sign-out continues at his provider's end-session endpoint
    let out = b.get(&env.proxy.url("/oauth2/sign_out")).await;
    let to = out.location_url().unwrap();
    assert_eq!(
        Some(to[..Position::AfterPath].to_owned()),
        env.corp.end_session_endpoint()
    );
    assert!(
        to.query_pairs()
            .any(|(k, v)| k == "client_id" && v == "gatehouse")
    );
    // alice's provider has none: her sign-out ends here
    let a = TestClient::new();
    sign_in_via(&a, &env, "/zk-only").await;
    let out = a.get(&env.proxy.url("/oauth2/sign_out")).await;
    assert_eq!(out.location().as_deref(), Some("/oauth2/signed_out"));
}

#[tokio::test]
async fn a_back_channel_logout_is_verified_by_the_provider_its_issuer_names() {
    let env = two("").await;
    let a = TestClient::new();
    sign_in_via(&a, &env, "/zk-only").await;
    let b = TestClient::new();
    sign_in_via(&b, &env, "/corp-only").await;
    let sid = env
        .corp
        .last_sid()
        .expect("the OIDC mock's ID tokens carry sid");
    let token = env.corp.mint_logout_token(Some(&sid), None, None);
    let url = env.proxy.url("/oauth2/backchannel-logout");
    assert_eq!(env.corp.send_backchannel_logout(&url, &token).await.0, 200);
    assert!(
        sent_to_sign_in(&b, &env, "/shared").await.is_some(),
        "bob's session ended"
    );
    assert_eq!(
        sent_to_sign_in(&a, &env, "/shared").await,
        None,
        "alice's did not"
    );
}

#[tokio::test]
async fn ready_waits_for_every_provider_and_names_the_one_not_discovered() {
    let env = two_with("", |k| k.discovery_status = Some(500), false).await;
    let probe = TestClient::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // the ZKAuth provider needs no discovery document and is ready soon;
    // corp is not, and /ready says so by name
    let mut said = String::new();
    while std::time::Instant::now() < deadline {
        let resp = probe.get_api(&env.proxy.url("/ready")).await;
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            resp.text()
        );
        said = resp.text();
        if said == "providers not discovered yet: corp" {
            break;
        }
        assert_eq!(said, "providers not discovered yet: default, corp");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(said, "providers not discovered yet: corp");
    assert!(!env.proxy.server().ready());
    // a browser sent to corp meanwhile is told to come back later
    let page = TestClient::new()
        .get(&env.proxy.url("/oauth2/start?provider=corp"))
        .await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);

    env.corp.set_knobs(|k| k.discovery_status = None);
    env.proxy.wait_ready().await;
    assert_eq!(probe.get(&env.proxy.url("/ready")).await.text(), "OK");
}

#[tokio::test]
async fn forward_auth_keeps_a_session_to_the_routes_of_its_provider_too() {
    let env = two("").await;
    let a = TestClient::new();
    sign_in_via(&a, &env, "/zk-only").await;
    let host = env.proxy.host();
    let ask = |uri: &'static str, accept: &'static str| {
        let host = host.clone();
        let a = &a;
        let url = env.proxy.url("/oauth2/forward-auth");
        async move {
            a.get_with(
                &url,
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-host", &host),
                    ("x-forwarded-uri", uri),
                    ("accept", accept),
                ],
            )
            .await
        }
    };
    let json = "application/json";
    let own = ask("/zk-only/page", json).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert_eq!(own.header("x-auth-request-user"), Some(ALICE));
    assert_eq!(ask("/shared", json).await.status, StatusCode::OK);
    assert_eq!(
        ask("/corp-only/page", json).await.status,
        StatusCode::UNAUTHORIZED
    );
    // a browser is sent to sign in at the route's provider, not refused
    let page = ask("/corp-only/page", "text/html").await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.text());
    assert_eq!(
        &page.location_url().unwrap()[..Position::AfterPath],
        env.corp.authorize_endpoint()
    );
}

/// RFC 9207 section 1's mix-up, with a distinct callback per provider as the
/// defence: an answer for a login started at corp that comes back at the
/// first provider's callback (a provider relayed it) is refused and spends
/// the login, and nothing is redeemed at corp.
#[tokio::test]
async fn an_answer_at_another_providers_callback_is_refused_as_a_mix_up() {
    let env = two("").await;
    let client = TestClient::new();
    let authorize = start_login(&client, &env.proxy, "/corp-only").await;
    assert!(
        authorize
            .query_pairs()
            .any(|(k, v)| k == "redirect_uri" && v.ends_with("/oauth2/callback/corp")),
        "{authorize}"
    );
    let callback = authorize_at_idp(&client, &env.proxy, &authorize, None).await;
    assert_eq!(callback.path(), "/oauth2/callback/corp");
    let mut elsewhere = callback.clone();
    elsewhere.set_path("/oauth2/callback");
    let resp = client.get(elsewhere.as_str()).await;
    assert_eq!(resp.status.as_u16() / 100, 4, "{}", resp.text());
    assert!(resp.location().is_none());
    assert!(env.corp.token_requests().is_empty(), "a code was redeemed");
    // and the login it carried is spent: its state cookie was cleared
    let again = client.get(callback.as_str()).await;
    assert_eq!(again.status.as_u16() / 100, 4, "{}", again.text());
    assert!(env.corp.token_requests().is_empty());
    // a login at corp that comes back at its own address completes
    let fresh = TestClient::new();
    sign_in_via(&fresh, &env, "/corp-only").await;
    assert_eq!(env.corp.token_requests().len(), 1);
}
