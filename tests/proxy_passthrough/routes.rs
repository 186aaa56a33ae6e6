//! Routes in proxy mode, over real HTTP: each policy kind (public,
//! authenticated, allow lists of groups, roles, emails and email domains),
//! `api = true`, a route's own upstream, methods and hosts; a route's lists
//! only narrowing the site-wide ones; and the hostile paths that must never
//! be placed on a public route (400, and the upstream sees nothing).

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::ROUTES_OF_EACH_KIND;
use crate::support::SESSION_COOKIE;
use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login_as};
use crate::support::upstream::Recorder;

/// One route of each kind ([`ROUTES_OF_EACH_KIND`]) and one with its own
/// upstream, in front of the default route (any signed-in user). `{OTHER}`
/// is the second upstream's URL.
fn routes() -> String {
    format!("{ROUTES_OF_EACH_KIND}\n[[routes]]\npath = \"/other\"\nupstream = \"{{OTHER}}\"\n")
}

/// alice (admins, staff), bob (staff) and carol (contractors, the only one
/// with the realm role `auditor`), each signed in with a client of their
/// own, in front of `upstream` and `other`.
struct Routed {
    idp: MockIdp,
    upstream: Recorder,
    other: Recorder,
    proxy: TestProxy,
    alice: TestClient,
    bob: TestClient,
    carol: TestClient,
}

fn sub(idp: &MockIdp, user: &str) -> String {
    let users = &idp.options().users;
    users
        .iter()
        .find(|u| u.username == user)
        .unwrap()
        .sub
        .clone()
}

/// Sets (or with `None` removes) the Keycloak-shaped realm roles in every
/// token the provider mints from now on.
fn realm_roles(idp: &MockIdp, roles: Option<&[&str]>) {
    let v = roles.map_or(serde_json::Value::Null, |r| json!({ "roles": r }));
    idp.set_knobs(|k| {
        k.extra_id_token_claims
            .insert("realm_access".into(), v.clone());
        k.extra_access_token_claims.insert("realm_access".into(), v);
    });
}

async fn routed(extra: &str) -> Routed {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let other = Recorder::start().await;
    // top-level keys before the tables
    let toml = format!("{extra}\n{}", routes().replace("{OTHER}", &other.url()));
    let proxy = TestProxy::start(&toml, &idp, &upstream).await;
    let alice = TestClient::new();
    login_as(&alice, &proxy, "/", "alice").await;
    let bob = TestClient::new();
    login_as(&bob, &proxy, "/", "bob").await;
    realm_roles(&idp, Some(&["auditor"]));
    let carol = TestClient::new();
    login_as(&carol, &proxy, "/", "carol").await;
    realm_roles(&idp, None);
    upstream.clear();
    Routed {
        idp,
        upstream,
        other,
        proxy,
        alice,
        bob,
        carol,
    }
}

fn assert_reached_as(
    resp: &TestResponse,
    upstream: &Recorder,
    path: &str,
    who: Option<&str>,
    what: &str,
) {
    assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
    let seen = upstream
        .last()
        .unwrap_or_else(|| panic!("{what}: the upstream saw nothing"));
    assert_eq!(
        seen.uri.path_and_query().unwrap().as_str(),
        path,
        "{what}: wrong request upstream"
    );
    match who {
        Some(sub) => assert_eq!(seen.header_all("x-forwarded-user"), [sub], "{what}"),
        None => {
            for name in [
                "x-forwarded-user",
                "x-forwarded-email",
                "x-forwarded-preferred-username",
                "x-forwarded-groups",
                "x-auth-request-user",
                "x-auth-request-email",
            ] {
                assert!(
                    seen.header(name).is_none_or(str::is_empty),
                    "{what}: {name} reached the upstream: {:?}",
                    seen.headers
                );
            }
        }
    }
}

fn assert_refused(resp: &TestResponse, upstream: &Recorder, status: StatusCode, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    assert_eq!(upstream.count(), 0, "{what}: the upstream saw it");
}

#[tokio::test]
async fn each_policy_kind_admits_exactly_its_users_in_proxy_mode() {
    let r = routed("").await;
    let (alice, bob, carol) = (
        sub(&r.idp, "alice"),
        sub(&r.idp, "bob"),
        sub(&r.idp, "carol"),
    );
    let forbidden = StatusCode::FORBIDDEN;
    // (who, path, the user the upstream sees, or None for refused 403)
    let table: &[(&TestClient, &str, &str, Option<&str>)] = &[
        (&r.alice, "alice", "/groups/x", Some(&alice)),
        (&r.bob, "bob", "/groups/x", None),
        (&r.carol, "carol", "/groups/x", None),
        (&r.alice, "alice", "/roles/x", None),
        (&r.bob, "bob", "/roles/x", None),
        (&r.carol, "carol", "/roles/x", Some(&carol)),
        // compared without regard to case
        (&r.alice, "alice", "/emails/x", None),
        (&r.bob, "bob", "/emails/x", Some(&bob)),
        (&r.carol, "carol", "/emails/x", None),
        (&r.alice, "alice", "/domains/x", None),
        (&r.bob, "bob", "/domains/x", None),
        (&r.carol, "carol", "/domains/x", Some(&carol)),
        // the default route: anyone signed in
        (&r.bob, "bob", "/anything", Some(&bob)),
        (&r.carol, "carol", "/anything", Some(&carol)),
        (&r.carol, "carol", "/api/x", Some(&carol)),
        // segment boundaries: `/groupsx` is not under `/groups`
        (&r.bob, "bob", "/groupsx", Some(&bob)),
    ];
    for (client, name, path, who) in table {
        r.upstream.clear();
        let what = format!("{name} GET {path}");
        let resp = client.get(&r.proxy.url(path)).await;
        match who {
            Some(sub) => assert_reached_as(&resp, &r.upstream, path, Some(sub), &what),
            None => {
                assert_refused(&resp, &r.upstream, forbidden, &what);
                assert!(resp.location().is_none(), "{what}: redirected");
            }
        }
    }
    assert_eq!(r.other.count(), 0);
}

#[tokio::test]
async fn a_public_route_sends_no_identity_and_no_session_cookie_upstream() {
    let r = routed("").await;
    let cookie = format!(
        "{SESSION_COOKIE}={}; app=1",
        r.alice.cookie(&r.proxy.host(), SESSION_COOKIE).unwrap()
    );
    let forged = [
        ("x-forwarded-user", "forged"),
        ("X-Forwarded-Email", "forged@example.com"),
        ("x-forwarded-groups", "admins"),
        ("x-forwarded-preferred-username", "forged"),
        ("x-auth-request-user", "forged"),
        ("x-auth-request-email", "forged@example.com"),
        ("cookie", cookie.as_str()),
    ];
    // signed out, and signed in with a valid session cookie: the same
    for signed_in in [false, true] {
        let headers = if signed_in {
            &forged[..]
        } else {
            &forged[..forged.len() - 1]
        };
        r.upstream.clear();
        let resp = TestClient::new()
            .get_with(&r.proxy.url("/public/page?x=1"), headers)
            .await;
        let what = format!("public, signed in: {signed_in}");
        assert_reached_as(&resp, &r.upstream, "/public/page?x=1", None, &what);
        let seen = r.upstream.last().unwrap();
        for (_, v) in &seen.headers {
            let v = v.to_str().unwrap_or("");
            assert!(!v.contains("forged"), "{what}: {:?}", seen.headers);
            assert!(!v.contains(SESSION_COOKIE), "{what}: {:?}", seen.headers);
        }
        if signed_in {
            assert_eq!(seen.header_all("cookie"), ["app=1"], "{what}");
        }
        // nothing about a session goes back either
        assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{what}");
    }
    // control: the same session on a protected path is alice
    r.upstream.clear();
    let resp = TestClient::new()
        .get_with(&r.proxy.url("/page"), &[("cookie", cookie.as_str())])
        .await;
    assert_reached_as(
        &resp,
        &r.upstream,
        "/page",
        Some(&sub(&r.idp, "alice")),
        "control",
    );
}

#[tokio::test]
async fn signed_out_a_browser_is_sent_to_sign_in_an_api_client_and_an_api_route_get_401() {
    let r = routed("").await;
    let client = TestClient::new();
    for path in ["/groups/x", "/emails/x", "/anything"] {
        let browser = client.get(&r.proxy.url(path)).await;
        assert_eq!(browser.status, StatusCode::FOUND, "{path}");
        let to = browser.location().unwrap();
        assert!(
            to.contains("/oauth2/start") || to.starts_with(&r.idp.base_url()),
            "{path}: went to {to}"
        );
        let api = client.get_api(&r.proxy.url(path)).await;
        assert_refused(&api, &r.upstream, StatusCode::UNAUTHORIZED, path);
    }
    // an api route never redirects, whatever the client accepts
    for accept in [ACCEPT_HTML, "application/json", "*/*"] {
        let resp = client
            .get_with(&r.proxy.url("/api/x"), &[("accept", accept)])
            .await;
        assert_refused(&resp, &r.upstream, StatusCode::UNAUTHORIZED, accept);
        assert!(resp.location().is_none(), "{accept}: redirected");
        assert!(
            resp.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{accept}: {:?}",
            resp.headers
        );
        resp.json();
    }
}

#[tokio::test]
async fn a_route_with_its_own_upstream_is_forwarded_there_only() {
    let r = routed("").await;
    let resp = r.bob.get(&r.proxy.url("/other/x?y=1")).await;
    assert_reached_as(
        &resp,
        &r.other,
        "/other/x?y=1",
        Some(&sub(&r.idp, "bob")),
        "/other",
    );
    assert_eq!(r.upstream.count(), 0);
    // control: next to it, the global upstream
    let resp = r.bob.get(&r.proxy.url("/otherx")).await;
    assert_reached_as(
        &resp,
        &r.upstream,
        "/otherx",
        Some(&sub(&r.idp, "bob")),
        "/otherx",
    );
    assert_eq!(r.other.count(), 1);
}

#[tokio::test]
async fn a_route_with_methods_takes_only_those_methods_spelled_exactly() {
    let r = routed("").await;
    let client = TestClient::new();
    let api = [("accept", "application/json")];
    let post = client
        .request(Method::POST, &r.proxy.url("/hooks/in"), &api, None)
        .await;
    assert_reached_as(&post, &r.upstream, "/hooks/in", None, "POST /hooks");
    assert_eq!(r.upstream.last().unwrap().method, Method::POST);
    r.upstream.clear();
    for method in [Method::GET, Method::PUT] {
        let resp = client
            .request(method.clone(), &r.proxy.url("/hooks/in"), &api, None)
            .await;
        assert_refused(
            &resp,
            &r.upstream,
            StatusCode::UNAUTHORIZED,
            method.as_str(),
        );
    }
    // `post` is another method to HTTP and POST to many frameworks: refused,
    // never placed on a later route
    let lower = Method::from_bytes(b"post").unwrap();
    let resp = client
        .request(lower, &r.proxy.url("/hooks/in"), &api, None)
        .await;
    assert_refused(&resp, &r.upstream, StatusCode::BAD_REQUEST, "post");
}

#[tokio::test]
async fn a_host_route_matches_without_regard_to_case_trailing_dot_or_port() {
    // loopback is not a trusted proxy here: its X-Forwarded-Host is ignored
    let r = routed("trusted_proxy = [\"10.0.0.0/8\"]").await;
    let client = TestClient::new();
    for host in [
        "status.gatehouse.test",
        "STATUS.Gatehouse.TEST",
        "status.gatehouse.test.",
        "status.gatehouse.test:8443",
        "Status.Gatehouse.Test.:8443",
    ] {
        r.upstream.clear();
        let resp = client
            .get_with(
                &r.proxy.url("/x"),
                &[("host", host), ("accept", "application/json")],
            )
            .await;
        assert_reached_as(&resp, &r.upstream, "/x", None, host);
    }
    r.upstream.clear();
    for (host, forwarded) in [
        ("xstatus.gatehouse.test", ""),
        ("status.gatehouse.test.evil", ""),
        ("a.status.gatehouse.test", ""),
        ("status.gatehouse.tes", ""),
        // an untrusted peer cannot pick the host route
        ("app.gatehouse.test", "status.gatehouse.test"),
    ] {
        let mut headers = vec![("host", host), ("accept", "application/json")];
        if !forwarded.is_empty() {
            headers.push(("x-forwarded-host", forwarded));
        }
        let resp = client.get_with(&r.proxy.url("/x"), &headers).await;
        assert_refused(&resp, &r.upstream, StatusCode::UNAUTHORIZED, host);
    }
}

#[tokio::test]
async fn a_routes_allow_list_only_narrows_the_site_wide_rules() {
    // carol signs in where nothing site-wide restricts her ...
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let route = "[[routes]]\npath = \"/contractors\"\nallowed_groups = [\"contractors\"]\n";
    let open = TestProxy::start(route, &idp, &upstream).await;
    let carol = TestClient::new();
    login_as(&carol, &open, "/", "carol").await;
    upstream.clear();
    let resp = carol.get(&open.url("/contractors/x")).await;
    assert_reached_as(
        &resp,
        &upstream,
        "/contractors/x",
        Some(&sub(&idp, "carol")),
        "control",
    );
    // ... and her session (same secret, same provider) goes to a gatehouse
    // whose site-wide rule is the staff group: the route listing her
    // contractors group does not let her in
    upstream.clear();
    let narrowed = TestProxy::start(
        &format!("allowed_group = [\"staff\"]\n{route}"),
        &idp,
        &upstream,
    )
    .await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        carol.cookie(&open.host(), SESSION_COOKIE).unwrap()
    );
    for path in ["/contractors/x", "/x"] {
        let resp = TestClient::new()
            .get_with(
                &narrowed.url(path),
                &[("cookie", cookie.as_str()), ("accept", "application/json")],
            )
            .await;
        assert_refused(&resp, &upstream, StatusCode::FORBIDDEN, path);
    }
    // bob passes the site-wide rule but not the route's list
    let bob = TestClient::new();
    login_as(&bob, &narrowed, "/", "bob").await;
    upstream.clear();
    let resp = bob.get_api(&narrowed.url("/contractors/x")).await;
    assert_refused(&resp, &upstream, StatusCode::FORBIDDEN, "bob");
}

// === hostile paths ===

/// A public `/public` in front of a default open to the admins group only.
const PUBLIC_BEFORE_ADMINS: &str = r#"
[[routes]]
path = "/public"
policy = "public"

[[routes]]
path = "/"
allowed_groups = ["admins"]
"#;

/// Paths that could be read as `/public/...` by one server and as
/// something else by another: each is refused before any route is chosen.
pub(crate) const HOSTILE: &[&str] = &[
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public%2fadmin",
    "/public/..%2fadmin",
    "/public;/../admin",
    "/public/%2E%2E/admin",
    "/public\\..\\admin",
    "/public/%00",
    "/public/..;/admin",
    "/public/%252e%252e/admin",
    "/public/%25%32%65%25%32%65/admin",
    "/public/.%2e/admin",
    "/public/%2e/admin",
];

#[tokio::test]
async fn hostile_paths_are_refused_and_never_reach_the_upstream_or_a_public_route() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(PUBLIC_BEFORE_ADMINS, &idp, &upstream).await;
    // bob is signed in, but not an admin
    let bob = TestClient::new();
    login_as(&bob, &proxy, "/", "bob").await;
    let cookie = super::cookie_header(&bob, &proxy);
    let host = proxy.host();
    let addr = proxy.addr();
    let req = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
    };
    // controls over the same raw connection
    upstream.clear();
    assert_eq!(super::raw_status(addr, &req("/public/x")).await, 200);
    assert_eq!(upstream.last().unwrap().path(), "/public/x");
    upstream.clear();
    for target in ["/admin", "/admin?/public", "/admin?x=/public/../"] {
        assert_eq!(super::raw_status(addr, &req(target)).await, 403, "{target}");
    }
    for target in HOSTILE {
        assert_eq!(super::raw_status(addr, &req(target)).await, 400, "{target}");
    }
    // a fragment is no part of the path (no client sends one)
    let fragment = super::raw_status(addr, &req("/admin#/public")).await;
    assert!(
        fragment == 400 || fragment == 403,
        "/admin#/public: {fragment}"
    );
    assert_eq!(
        upstream.count(),
        0,
        "reached the upstream: {:?}",
        upstream
            .requests()
            .iter()
            .map(|r| r.uri.to_string())
            .collect::<Vec<_>>()
    );
    // the same path after normalisation is the same route; the upstream
    // gets the path as the client sent it
    for (target, upstream_sees) in [
        ("//public/x", "//public/x"),
        ("/%70ublic/x", "/%70ublic/x"),
        ("/public//x", "/public//x"),
    ] {
        upstream.clear();
        assert_eq!(super::raw_status(addr, &req(target)).await, 200, "{target}");
        let seen = upstream.last().unwrap();
        assert_eq!(seen.path(), upstream_sees, "{target}");
        assert!(seen.header("x-forwarded-user").is_none(), "{target}");
    }
    // and the same route's refusal for the admin area
    upstream.clear();
    for target in ["//admin", "/%61dmin", "/admin/"] {
        assert_eq!(super::raw_status(addr, &req(target)).await, 403, "{target}");
    }
    assert_eq!(upstream.count(), 0);
}
