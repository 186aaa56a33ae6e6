//! Routes through forward-auth, over real HTTP: `/oauth2/auth` (nginx,
//! the original URL in `X-Original-URL`) and `/oauth2/forward-auth`
//! (Traefik and Caddy, `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`)
//! decide on the original method, host and path exactly as proxy mode does:
//! public answers 2xx with every identity header empty, refused 403, not
//! signed in 401 (or the sign-in redirect for a browser at
//! `/oauth2/forward-auth`), an api route never redirects, the narrowing
//! query only narrows, and a request that cannot be placed (hostile path,
//! untrusted peer, method unknown where a route names methods) is 400.

use http::StatusCode;
use serde_json::json;

use super::{assert_identity, assert_not_allowed, get};
use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login_as};
use crate::support::upstream::Recorder;
use crate::support::{ROUTES_OF_EACH_KIND as ROUTES, SESSION_COOKIE};

const APP: &str = "app.gatehouse.test";

/// Which forward-auth endpoint, as which front proxy asks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    /// nginx `auth_request`: `/oauth2/auth` with `X-Original-URL` (and
    /// `X-Forwarded-Method`, which the deploy file sends).
    Nginx,
    /// Traefik and Caddy: `/oauth2/forward-auth` with `X-Forwarded-*`.
    Traefik,
}

const FRONTS: [Front; 2] = [Front::Nginx, Front::Traefik];

impl Front {
    fn allowed(self) -> StatusCode {
        match self {
            Self::Nginx => StatusCode::ACCEPTED,
            Self::Traefik => StatusCode::OK,
        }
    }
}

/// What the front proxy reports about the browser's request.
#[derive(Clone, Copy, Debug)]
struct Original<'a> {
    method: Option<&'a str>,
    host: &'a str,
    uri: &'a str,
}

fn original(uri: &str) -> Original<'_> {
    Original {
        method: Some("GET"),
        host: APP,
        uri,
    }
}

struct Routed {
    idp: MockIdp,
    _upstream: Recorder,
    proxy: TestProxy,
    /// Each user's `Cookie` header, by name.
    cookies: Vec<(&'static str, String)>,
}

impl Routed {
    fn cookie(&self, user: &str) -> &str {
        &self.cookies.iter().find(|(u, _)| *u == user).unwrap().1
    }

    /// Asks `front`'s endpoint (with `query` on it) about `o`, with
    /// `cookie` and `accept`, from loopback (a trusted proxy by default).
    async fn ask(
        &self,
        front: Front,
        query: &str,
        o: Original<'_>,
        cookie: Option<&str>,
        accept: &str,
    ) -> TestResponse {
        let path = match front {
            Front::Nginx => "/oauth2/auth",
            Front::Traefik => "/oauth2/forward-auth",
        };
        let url = if query.is_empty() {
            self.proxy.url(path)
        } else {
            self.proxy.url(&format!("{path}?{query}"))
        };
        let full = format!("http://{}{}", o.host, o.uri);
        let mut headers = vec![("accept", accept), ("x-forwarded-for", "203.0.113.7")];
        match front {
            Front::Nginx => headers.push(("x-original-url", &full)),
            Front::Traefik => headers.extend([
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", o.host),
                ("x-forwarded-uri", o.uri),
            ]),
        }
        if let Some(m) = o.method {
            headers.push(("x-forwarded-method", m));
        }
        if let Some(c) = cookie {
            headers.push(("cookie", c));
        }
        get(&TestClient::new(), &url, &headers).await
    }
}

/// Sets (or with `None` removes) Keycloak-shaped realm roles in every token
/// the provider mints from now on.
fn realm_roles(idp: &MockIdp, roles: Option<&[&str]>) {
    let v = roles.map_or(serde_json::Value::Null, |r| json!({ "roles": r }));
    idp.set_knobs(|k| {
        k.extra_id_token_claims
            .insert("realm_access".into(), v.clone());
        k.extra_access_token_claims.insert("realm_access".into(), v);
    });
}

/// gatehouse with [`ROUTES`] and `extra`; alice (admins, staff), bob
/// (staff) and carol (contractors, realm role `auditor`) signed in.
async fn routed(extra: &str) -> Routed {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(&format!("{extra}\n{ROUTES}"), &idp, &upstream).await;
    let mut cookies = Vec::new();
    for user in ["alice", "bob", "carol"] {
        realm_roles(&idp, (user == "carol").then_some(&["auditor"][..]));
        let client = TestClient::new();
        login_as(&client, &proxy, "/", user).await;
        cookies.push((user, client.cookie_header_for(&proxy.url("/")).unwrap()));
    }
    realm_roles(&idp, None);
    Routed {
        idp,
        _upstream: upstream,
        proxy,
        cookies,
    }
}

/// Asserts an allow answer for a public route: 2xx, every identity header
/// there and empty (so the front proxy overwrites what the client sent).
fn assert_public(resp: &TestResponse, front: Front, what: &str) {
    assert_eq!(resp.status, front.allowed(), "{what}: {}", resp.text());
    assert!(resp.location().is_none(), "{what}: redirected");
    for suffix in ["user", "email", "preferred-username", "groups"] {
        let name = format!("x-auth-request-{suffix}");
        assert_eq!(resp.header(&name), Some(""), "{what}: {name}");
        let fwd = format!("x-forwarded-{suffix}");
        if front == Front::Traefik {
            assert_eq!(resp.header(&fwd), Some(""), "{what}: {fwd}");
        }
    }
}

#[tokio::test]
async fn each_policy_kind_decides_the_same_through_both_forward_auth_endpoints() {
    let r = routed("").await;
    // (path, alice, bob, carol): true = allowed
    let table: &[(&str, bool, bool, bool)] = &[
        ("/groups/x", true, false, false),
        ("/roles/x", false, false, true),
        ("/emails/x", false, true, false),
        ("/domains/x", false, false, true),
        ("/anything", true, true, true),
        ("/api/x", true, true, true),
        ("/groupsx", true, true, true),
        ("/groups?/public", true, false, false),
    ];
    for front in FRONTS {
        for (path, a, b, c) in table {
            for (user, allowed) in [("alice", a), ("bob", b), ("carol", c)] {
                let what = format!("{front:?} {user} {path}");
                let resp = r
                    .ask(
                        front,
                        "",
                        original(path),
                        Some(r.cookie(user)),
                        "application/json",
                    )
                    .await;
                if *allowed {
                    assert_eq!(resp.status, front.allowed(), "{what}: {}", resp.text());
                    assert_identity(&resp, &r.idp, user, front == Front::Traefik);
                } else {
                    assert_not_allowed(&resp, StatusCode::FORBIDDEN, &what);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_public_route_answers_2xx_with_empty_identity_and_without_the_session_cookie() {
    let r = routed("").await;
    let signed_in = format!("{}; app=1", r.cookie("alice"));
    for front in FRONTS {
        for cookie in [None, Some(signed_in.as_str())] {
            let what = format!("{front:?} signed in: {}", cookie.is_some());
            let resp = r
                .ask(front, "", original("/public/x?y=1"), cookie, ACCEPT_HTML)
                .await;
            assert_public(&resp, front, &what);
            // the application's cookies pass on, gatehouse's never
            let app_cookies = resp.header("x-auth-request-cookie").unwrap();
            assert!(!app_cookies.contains(SESSION_COOKIE), "{what}");
            if cookie.is_some() {
                assert_eq!(app_cookies, "app=1", "{what}");
            }
            if front == Front::Traefik {
                assert_eq!(resp.header("cookie"), Some(app_cookies), "{what}");
            }
            assert!(resp.set_cookie(SESSION_COOKIE).is_none(), "{what}");
        }
        // control: the same session on a protected path is alice
        let resp = r
            .ask(
                front,
                "",
                original("/x"),
                Some(&signed_in),
                "application/json",
            )
            .await;
        assert_identity(&resp, &r.idp, "alice", front == Front::Traefik);
    }
}

#[tokio::test]
async fn signed_out_on_a_protected_route_is_401_or_the_sign_in_and_never_on_an_api_route() {
    let r = routed("").await;
    for front in FRONTS {
        for path in ["/groups/x", "/anything", "/api/x"] {
            let what = format!("{front:?} {path}");
            let api = r
                .ask(front, "", original(path), None, "application/json")
                .await;
            assert_not_allowed(&api, StatusCode::UNAUTHORIZED, &what);
            let browser = r.ask(front, "", original(path), None, ACCEPT_HTML).await;
            match (front, path.starts_with("/api")) {
                (Front::Traefik, false) => {
                    assert_eq!(browser.status, StatusCode::FOUND, "{what}");
                    let to = browser.location_url().unwrap();
                    assert!(to.as_str().starts_with(&r.idp.base_url()), "{what}: {to}");
                }
                // nginx turns the 401 into its sign-in page itself
                _ => assert_not_allowed(&browser, StatusCode::UNAUTHORIZED, &what),
            }
        }
    }
}

#[tokio::test]
async fn the_narrowing_query_only_narrows_even_on_a_public_route() {
    let r = routed("").await;
    for front in FRONTS {
        let q = "allowed_groups=admins";
        let o = original("/public/x");
        let what = format!("{front:?} ?{q} on /public");
        let out = r.ask(front, q, o, None, "application/json").await;
        assert_not_allowed(&out, StatusCode::UNAUTHORIZED, &what);
        let bob = r.ask(front, q, o, Some(r.cookie("bob")), "").await;
        assert_not_allowed(&bob, StatusCode::FORBIDDEN, &what);
        let alice = r.ask(front, q, o, Some(r.cookie("alice")), "").await;
        assert_eq!(alice.status, front.allowed(), "{what}: {}", alice.text());
        assert_identity(&alice, &r.idp, "alice", front == Front::Traefik);
        // on an allow-list route: both must hold
        let o = original("/emails/x");
        let q = "allowed_groups=admins";
        let bob = r.ask(front, q, o, Some(r.cookie("bob")), "").await;
        assert_not_allowed(&bob, StatusCode::FORBIDDEN, &format!("{what} /emails"));
        let alice = r.ask(front, q, o, Some(r.cookie("alice")), "").await;
        assert_not_allowed(&alice, StatusCode::FORBIDDEN, &format!("{what} /emails"));
    }
}

#[tokio::test]
async fn host_and_method_routes_decide_on_the_original_host_and_method() {
    let r = routed("").await;
    let json = "application/json";
    for front in FRONTS {
        for host in [
            "status.gatehouse.test",
            "STATUS.Gatehouse.TEST",
            "status.gatehouse.test.",
            "status.gatehouse.test:8443",
        ] {
            let o = Original {
                method: Some("GET"),
                host,
                uri: "/x",
            };
            let what = format!("{front:?} {host}");
            assert_public(&r.ask(front, "", o, None, json).await, front, &what);
        }
        for host in ["xstatus.gatehouse.test", "a.status.gatehouse.test", APP] {
            let o = Original {
                method: Some("GET"),
                host,
                uri: "/x",
            };
            let what = format!("{front:?} {host}");
            let resp = r.ask(front, "", o, None, json).await;
            assert_not_allowed(&resp, StatusCode::UNAUTHORIZED, &what);
        }
        // spellings a URL parser would turn into the public host, which the
        // front proxy (nginx's default server) may route to the application
        for host in [
            "st%61tus.gatehouse.test",
            "%73tatus.gatehouse.test",
            "status%2egatehouse.test",
        ] {
            let o = Original {
                method: Some("GET"),
                host,
                uri: "/x",
            };
            let what = format!("{front:?} {host}");
            let resp = r.ask(front, "", o, None, json).await;
            assert!(
                !resp.status.is_success(),
                "{what}: {} {:?}",
                resp.status,
                resp.headers
            );
        }
        let with = |method| Original {
            method,
            host: APP,
            uri: "/hooks/in",
        };
        let post = r.ask(front, "", with(Some("POST")), None, json).await;
        assert_public(&post, front, &format!("{front:?} POST /hooks"));
        for m in ["GET", "PUT"] {
            let resp = r.ask(front, "", with(Some(m)), None, json).await;
            let what = format!("{front:?} {m} /hooks");
            assert_not_allowed(&resp, StatusCode::UNAUTHORIZED, &what);
        }
        // `post` is another method to HTTP and POST to many frameworks:
        // refused, never placed on a later route
        let resp = r.ask(front, "", with(Some("post")), None, json).await;
        assert_not_allowed(
            &resp,
            StatusCode::BAD_REQUEST,
            &format!("{front:?} post /hooks"),
        );
        // the method unknown where a route names methods: not guessed,
        // even for a signed-in user the later routes would allow
        let resp = r
            .ask(front, "", with(None), Some(r.cookie("alice")), json)
            .await;
        let what = format!("{front:?} no X-Forwarded-Method on /hooks");
        assert_not_allowed(&resp, StatusCode::BAD_REQUEST, &what);
        // elsewhere the method is not needed
        let o = Original {
            method: None,
            ..original("/public/x")
        };
        let resp = r.ask(front, "", o, None, json).await;
        assert_public(&resp, front, &format!("{front:?} no method on /public"));
    }
}

#[tokio::test]
async fn with_routes_an_untrusted_peer_is_refused_with_400_never_2xx() {
    // the test client, on loopback, is not a trusted proxy here
    let r = routed("trusted_proxy = [\"10.0.0.0/8\"]").await;
    for front in FRONTS {
        for path in ["/public/x", "/anything", "/groups/x"] {
            for user in [None, Some("alice")] {
                let cookie = user.map(|u| r.cookie(u));
                let what = format!("{front:?} {path} as {user:?}");
                let resp = r
                    .ask(front, "", original(path), cookie, "application/json")
                    .await;
                assert_not_allowed(&resp, StatusCode::BAD_REQUEST, &what);
            }
        }
    }
}

/// The proxy-mode table of `tests/proxy_passthrough/routes.rs`, as a front
/// proxy reports it.
const HOSTILE: &[&str] = &[
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
async fn hostile_original_paths_are_400_through_both_endpoints_never_2xx() {
    let idp = MockIdp::start(IdpOptions::default()).await;
    let upstream = Recorder::start().await;
    let routes = "[[routes]]\npath = \"/public\"\npolicy = \"public\"\n\n\
                  [[routes]]\npath = \"/\"\nallowed_groups = [\"admins\"]\n";
    let proxy = TestProxy::start(routes, &idp, &upstream).await;
    let bob = TestClient::new();
    login_as(&bob, &proxy, "/", "bob").await;
    let r = Routed {
        idp,
        _upstream: upstream,
        proxy,
        cookies: vec![("bob", bob.cookie_header_for("http://127.0.0.1/").unwrap())],
    };
    let json = "application/json";
    for front in FRONTS {
        for cookie in [None, Some(r.cookie("bob"))] {
            let what = |uri: &str| format!("{front:?} {uri} signed in: {}", cookie.is_some());
            // controls
            let resp = r.ask(front, "", original("/public/x"), cookie, json).await;
            assert_public(&resp, front, &what("/public/x"));
            let refused = if cookie.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            for uri in ["/admin", "/admin?/public", "/admin#/public", "/%61dmin"] {
                let resp = r.ask(front, "", original(uri), cookie, json).await;
                assert_not_allowed(&resp, refused, &what(uri));
            }
            for uri in HOSTILE {
                let resp = r.ask(front, "", original(uri), cookie, json).await;
                assert_not_allowed(&resp, StatusCode::BAD_REQUEST, &what(uri));
            }
            // the same path after normalisation is the public route
            let resp = r
                .ask(front, "", original("/%70ublic/x"), cookie, json)
                .await;
            assert_public(&resp, front, &what("/%70ublic/x"));
            // `//public/x`: the public route in X-Original-URL; Traefik and
            // Caddy never send an X-Forwarded-Uri starting `//`, refused
            let resp = r.ask(front, "", original("//public/x"), cookie, json).await;
            match front {
                Front::Nginx => assert_public(&resp, front, &what("//public/x")),
                Front::Traefik => {
                    assert_not_allowed(&resp, StatusCode::BAD_REQUEST, &what("//public/x"));
                }
            }
        }
    }
}
