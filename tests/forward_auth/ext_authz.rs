//! Envoy's HTTP `ext_authz` filter over real HTTP, asking exactly as Envoy
//! does (`http_service` with `path_prefix: /oauth2/ext-authz`, see
//! `deploy/envoy/envoy.yaml`): the original method, the original path and
//! query after the prefix, the original `Host`, and the headers in
//! `allowed_headers` (`Cookie`, `Accept`, `Authorization`,
//! `X-Forwarded-Proto`, ...). A 2xx allows (its `allowed_upstream_headers`
//! go upstream); anything else goes to the client with its body and its
//! `allowed_client_headers` (`Location`, `Set-Cookie`, `WWW-Authenticate`).
//! Allow, challenge (browser redirect, API 401), deny (403), public route,
//! bearer token, and the hostile cases: a path not under the prefix, `..`
//! and encoded tricks, an off-site original host, spoofed original-URL
//! headers, an untrusted peer.

use http::{Method, StatusCode};

use super::{APP1, assert_identity, assert_not_allowed, stack, through_provider};
use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::proxy::login_as;

const PREFIX: &str = "/oauth2/ext-authz";

/// `[[routes]]` for the route tests: a public path, an api path, an
/// admins-only path; everything else the default (any signed-in user).
const ROUTES: &str = r#"
[[routes]]
path = "/public"
policy = "public"

[[routes]]
path = "/api"
api = true

[[routes]]
path = "/admin"
allowed_groups = ["nobody-has-this"]
"#;

/// One check as Envoy's filter sends it for the browser's `method
/// original`: the same method, `PREFIX` + the original path and query, the
/// original authority as `Host`, the browser's `Cookie` (from its jar for
/// `original`), `Accept` and any `extra` allowed headers. Envoy's own client
/// sends it; `Set-Cookie` in the answer goes back to the browser (it is in
/// `allowed_client_headers` and `allowed_client_headers_on_success`).
async fn envoy_check(
    browser: &TestClient,
    gatehouse: std::net::SocketAddr,
    method: &str,
    original: &str,
    accept: &str,
    extra: &[(&str, &str)],
) -> TestResponse {
    let url = url::Url::parse(original).unwrap();
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap()),
        None => url.host_str().unwrap().to_owned(),
    };
    let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let check = format!("http://{gatehouse}{PREFIX}{path_and_query}");
    let cookie = browser.cookie_header_for(original);
    let mut headers = vec![
        ("host", authority.as_str()),
        ("accept", accept),
        ("x-forwarded-proto", url.scheme()),
        ("x-request-id", "3c9f2a4e-envoy-check"),
    ];
    if let Some(c) = &cookie {
        headers.push(("cookie", c));
    }
    headers.extend_from_slice(extra);
    let envoy = TestClient::new();
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let resp = envoy.request(m, &check, &headers, None).await;
    browser.store_cookies(original, &resp.headers);
    resp
}

/// A raw check at `target` (path and query as sent, after the host), for
/// the hostile cases, with `Host` naming `APP1` and the `extra` headers.
async fn raw_check(
    gatehouse: std::net::SocketAddr,
    target: &str,
    extra: &[(&str, &str)],
) -> TestResponse {
    let mut headers = vec![("host", APP1)];
    headers.extend_from_slice(extra);
    TestClient::new()
        .request(
            Method::GET,
            &format!("http://{gatehouse}{target}"),
            &headers,
            None,
        )
        .await
}

#[tokio::test]
async fn envoy_check_from_a_signed_in_browser_is_200_with_the_identity_headers_for_upstream() {
    let s = stack("").await;
    let alice = TestClient::new();
    login_as(&alice, &s.proxy, "/", "alice").await;
    // the session cookie was set for 127.0.0.1: Envoy passes the browser's
    let original = "http://127.0.0.1/dashboard?tab=1&x=2";
    for (method, accept) in [
        ("GET", ACCEPT_HTML),
        ("DELETE", "application/json"),
        ("POST", "*/*"),
    ] {
        let resp = envoy_check(&alice, s.proxy.addr(), method, original, accept, &[]).await;
        assert_eq!(resp.status, StatusCode::OK, "{method}: {}", resp.text());
        assert_identity(&resp, &s.idp, "alice", true);
        // the front proxy's request id comes back for its log
        assert_eq!(resp.header("x-request-id"), Some("3c9f2a4e-envoy-check"));
    }
}

#[tokio::test]
async fn envoy_check_from_a_signed_out_browser_redirects_to_sign_in_and_lands_on_the_original_url()
{
    let s = stack(
        "redirect_url = \"/oauth2/callback\"\n\
         whitelist_domain = [\".gatehouse.test:*\"]",
    )
    .await;
    // Envoy routes app1's /oauth2/ to gatehouse (ext_authz off there): the
    // browser reaches gatehouse's port under app1's name
    let browser = TestClient::new().with_resolve(&[APP1]);
    let port = s.proxy.addr().port();
    let original = format!("http://{APP1}:{port}/dashboard?tab=1&x=2");

    let resp = envoy_check(&browser, s.proxy.addr(), "GET", &original, ACCEPT_HTML, &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    let authorize = resp.location_url().unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/authorize", s.idp.base_url())),
        "{authorize}"
    );
    let callback = through_provider(&browser, &resp).await;
    assert_eq!(callback.status, StatusCode::FOUND, "{}", callback.text());
    assert_eq!(
        callback.location_url().unwrap().as_str(),
        original,
        "the callback must land on the original URL"
    );
    let resp = envoy_check(&browser, s.proxy.addr(), "GET", &original, ACCEPT_HTML, &[]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_identity(&resp, &s.idp, "alice", true);
}

#[tokio::test]
async fn envoy_check_from_a_signed_out_api_client_or_a_non_get_is_401_json() {
    let s = stack(ROUTES).await;
    let browser = TestClient::new();
    for (method, original, accept) in [
        ("GET", "http://127.0.0.1/items", "application/json"),
        ("POST", "http://127.0.0.1/items", ACCEPT_HTML),
        ("DELETE", "http://127.0.0.1/items", "*/*"),
        // an api route never redirects, a browser's GET included
        ("GET", "http://127.0.0.1/api/items", ACCEPT_HTML),
    ] {
        let what = format!("{method} {original} {accept}");
        let resp = envoy_check(&browser, s.proxy.addr(), method, original, accept, &[]).await;
        assert_not_allowed(&resp, StatusCode::UNAUTHORIZED, &what);
        assert_eq!(resp.json()["error"], "unauthenticated", "{what}");
        assert!(resp.set_cookies().is_empty(), "{what}: a login started");
    }
    assert!(s.idp.authorize_requests().is_empty());
}

#[tokio::test]
async fn envoy_check_refused_by_policy_is_403_a_page_for_a_browser_and_json_for_an_api_client() {
    let s = stack(ROUTES).await;
    let alice = TestClient::new();
    login_as(&alice, &s.proxy, "/", "alice").await;
    let original = "http://127.0.0.1/admin/users";
    let page = envoy_check(&alice, s.proxy.addr(), "GET", original, ACCEPT_HTML, &[]).await;
    assert_not_allowed(&page, StatusCode::FORBIDDEN, "browser");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    let api = envoy_check(
        &alice,
        s.proxy.addr(),
        "GET",
        original,
        "application/json",
        &[],
    )
    .await;
    assert_not_allowed(&api, StatusCode::FORBIDDEN, "api");
    assert_eq!(api.json()["error"], "forbidden", "{}", api.text());
}

#[tokio::test]
async fn envoy_check_on_a_public_route_is_200_with_every_identity_header_empty() {
    let s = stack(ROUTES).await;
    let anyone = TestClient::new();
    let resp = envoy_check(
        &anyone,
        s.proxy.addr(),
        "POST",
        "http://127.0.0.1/public/hook",
        "*/*",
        &[("x-forwarded-user", "admin")],
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    for name in [
        "x-forwarded-user",
        "x-auth-request-user",
        "x-forwarded-email",
    ] {
        assert_eq!(resp.header(name), Some(""), "{name}");
    }
}

/// The request Envoy sends to the application after an allow `answer` to
/// a browser's request with `sent` headers, both ways round: the answer's
/// headers in `allowed_upstream_headers` replace the client's (Envoy's
/// `setCopy`, never a removal), and the ones the answer names in
/// `x-envoy-auth-headers-to-remove` are removed.
fn envoy_upstream(sent: &[(&str, &str)], answer: &TestResponse) -> [http::HeaderMap; 2] {
    // deploy/envoy/envoy.yaml's allowed_upstream_headers (the deploy tests
    // keep it equal to the answer's identity headers); no claim header
    const ALLOWED: [&str; 10] = [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "cookie",
    ];
    let mut base = http::HeaderMap::new();
    for (n, v) in sent {
        base.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let set = |h: &mut http::HeaderMap| {
        for name in ALLOWED {
            if let Some(v) = answer.headers.get(name) {
                h.insert(name, v.clone());
            }
        }
    };
    let remove = |h: &mut http::HeaderMap| {
        for name in answer
            .header("x-envoy-auth-headers-to-remove")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            h.remove(name);
        }
    };
    let (mut a, mut b) = (base.clone(), base);
    set(&mut a);
    remove(&mut a);
    remove(&mut b);
    set(&mut b);
    [a, b]
}

// review of issue 12, finding 1: a client's own access token and claim
// headers went through Envoy to the application
#[tokio::test]
async fn envoy_check_never_lets_a_clients_own_access_token_or_claim_header_reach_the_app() {
    let s = stack("claim_header = [\"X-Dept=department\"]").await;
    let alice = TestClient::new();
    login_as(&alice, &s.proxy, "/", "alice").await;
    let forged = [
        ("x-auth-request-access-token", "forged"),
        ("x-forwarded-access-token", "forged"),
        ("x-dept", "forged"),
        ("x-auth-request-email", "forged"),
        ("x-forwarded-preferred-username", "forged"),
    ];
    let resp = envoy_check(
        &alice,
        s.proxy.addr(),
        "GET",
        "http://127.0.0.1/x",
        ACCEPT_HTML,
        &forged,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    // no pass_access_token and no department claim: present, empty
    assert_eq!(resp.header("x-auth-request-access-token"), Some(""));
    assert_eq!(resp.header("x-dept"), Some(""));
    for upstream in envoy_upstream(&forged, &resp) {
        for (name, _) in forged {
            assert!(
                upstream.get_all(name).iter().all(|v| v != "forged"),
                "the client's {name} reached the app: {:?} (answer {:?})",
                upstream,
                resp.headers
            );
        }
    }
    // a header with a value is never removed
    let named = resp.header("x-envoy-auth-headers-to-remove").unwrap();
    assert!(!named.contains("x-forwarded-user"), "{named}");
    assert!(!named.contains("x-auth-request-user"), "{named}");
}

#[tokio::test]
async fn envoy_check_with_a_bearer_token_is_allowed_on_a_bearer_route() {
    let s = stack(
        r#"
        [[routes]]
        path = "/api"
        bearer = true
        api = true
        "#,
    )
    .await;
    let token = s.idp.try_mint_id_token("alice", None, None).unwrap();
    let auth = format!("Bearer {token}");
    let client = TestClient::new();
    let original = "http://127.0.0.1/api/orders";
    let ok = envoy_check(
        &client,
        s.proxy.addr(),
        "GET",
        original,
        "application/json",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_identity(&ok, &s.idp, "alice", true);
    let bad = format!("Bearer {token}x");
    let refused = envoy_check(
        &client,
        s.proxy.addr(),
        "GET",
        original,
        "application/json",
        &[("authorization", &bad)],
    )
    .await;
    assert_not_allowed(&refused, StatusCode::UNAUTHORIZED, "bad token");
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.contains("invalid_token")),
        "{:?}",
        refused.header("www-authenticate")
    );
}

#[tokio::test]
async fn envoy_check_with_a_hostile_path_is_refused_never_allowed() {
    let s = stack(ROUTES).await;
    let alice = TestClient::new();
    login_as(&alice, &s.proxy, "/", "alice").await;
    let cookie = alice
        .cookie_header_for(&s.proxy.url("/"))
        .expect("signed in");
    for (target, status) in [
        // not under the prefix: gatehouse has no such endpoint
        ("/oauth2/ext-authzX/public", StatusCode::NOT_FOUND),
        ("/oauth2/ext-authz.public", StatusCode::NOT_FOUND),
        // the prefix without an original path
        (PREFIX, StatusCode::BAD_REQUEST),
        ("/oauth2/ext-authz?x=/public", StatusCode::BAD_REQUEST),
        // a path that climbs out of the prefix or hides a route
        ("/oauth2/ext-authz/public/../admin", StatusCode::BAD_REQUEST),
        (
            "/oauth2/ext-authz/public/%2e%2e/admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/oauth2/ext-authz/public%2f..%2fadmin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/oauth2/ext-authz/public/%252e%252e/admin",
            StatusCode::BAD_REQUEST,
        ),
        // a scheme-relative original path, and a backslash
        (
            "/oauth2/ext-authz//evil.example/admin",
            StatusCode::BAD_REQUEST,
        ),
        ("/oauth2/ext-authz/%5cevil.example", StatusCode::BAD_REQUEST),
    ] {
        let resp = raw_check(
            s.proxy.addr(),
            target,
            &[("cookie", &cookie), ("accept", ACCEPT_HTML)],
        )
        .await;
        assert_not_allowed(&resp, status, target);
    }
}

#[tokio::test]
async fn envoy_check_ignores_original_url_headers_a_client_sent() {
    let s = stack(ROUTES).await;
    // the check is about /admin; the client named a public path in the
    // headers the other endpoints read: never believed here
    let resp = raw_check(
        s.proxy.addr(),
        "/oauth2/ext-authz/admin",
        &[
            ("x-original-url", "http://127.0.0.1/public"),
            ("x-forwarded-uri", "/public"),
            ("x-forwarded-method", "POST"),
            ("accept", "application/json"),
        ],
    )
    .await;
    assert_not_allowed(&resp, StatusCode::UNAUTHORIZED, "spoofed original URL");
}

#[tokio::test]
async fn envoy_check_from_an_off_site_host_never_returns_the_browser_there() {
    // no whitelist_domain: a host gatehouse does not serve is no place to
    // return to, whatever the (trusted) front proxy says was asked for
    let s = stack("").await;
    let browser = TestClient::new();
    let original = "http://evil.example/steal?x=1";
    let resp = envoy_check(&browser, s.proxy.addr(), "GET", original, ACCEPT_HTML, &[]).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    // the login-state cookie reaches the callback host (as a cookie_domain
    // covering both would make it), so the login completes
    browser.store_cookies(&s.proxy.url("/"), &resp.headers);
    let callback = through_provider(&browser, &resp).await;
    assert_eq!(callback.status, StatusCode::FOUND, "{}", callback.text());
    let landed = callback.location().unwrap();
    assert!(!landed.contains("evil.example"), "landed on {landed}");
}

#[tokio::test]
async fn envoy_check_from_an_untrusted_peer_is_not_placed_on_a_route() {
    // 127.0.0.1 is not a trusted proxy here: the original request the
    // check describes is not believed, and with routes nothing is guessed
    let s = stack(&format!("trusted_proxy = [\"192.0.2.1\"]\n{ROUTES}")).await;
    let resp = raw_check(
        s.proxy.addr(),
        "/oauth2/ext-authz/public",
        &[("accept", "application/json")],
    )
    .await;
    assert_not_allowed(&resp, StatusCode::BAD_REQUEST, "untrusted peer");
}

// === deploy/envoy agrees with the endpoint ===

/// Every YAML document of `deploy/envoy/<file>`, as JSON, read with
/// python3's yaml (Debian's python3-yaml); `None` (said loudly) where that
/// is missing, unless `GATEHOUSE_REQUIRE_E2E=1`.
fn deploy_yaml(file: &str) -> Option<Vec<serde_json::Value>> {
    let path = format!("{}/deploy/envoy/{file}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
            &path,
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if !String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            panic!(
                "{file} does not parse: {}",
                String::from_utf8_lossy(&o.stderr)
            )
        }
        _ => {
            assert!(
                std::env::var("GATEHOUSE_REQUIRE_E2E").as_deref() != Ok("1"),
                "python3 with yaml is needed to check {file}"
            );
            eprintln!("SKIPPED: checking {file} needs python3-yaml (apt-get install python3-yaml)");
            None
        }
    }
}

/// Headers gatehouse reads from a trusted proxy (Envoy) that a client
/// could send on the route to gatehouse's pages, where no check rewrites
/// them.
const CLIENT_FORWARDED: [&str; 6] = [
    "x-forwarded-host",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-url",
    "traceparent",
    "tracestate",
];

/// The first object anywhere in `v` that has `key`.
fn find_with<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match v {
        serde_json::Value::Object(m) if m.contains_key(key) => Some(v),
        serde_json::Value::Object(m) => m.values().find_map(|x| find_with(x, key)),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find_with(x, key)),
        _ => None,
    }
}

/// The `exact` names of an Envoy `ListStringMatcher`.
fn exact_names(matcher: &serde_json::Value) -> Vec<String> {
    matcher["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["exact"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The identity headers of a real allow answer (with `pass_access_token`,
/// so the token's header is one of them): what the deploy files must copy
/// upstream, no more, no less.
async fn allow_answer_headers() -> Vec<String> {
    let s = stack("pass_access_token = true").await;
    let alice = TestClient::new();
    login_as(&alice, &s.proxy, "/", "alice").await;
    let resp = envoy_check(
        &alice,
        s.proxy.addr(),
        "GET",
        "http://127.0.0.1/x",
        ACCEPT_HTML,
        &[],
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let mut names: Vec<String> = resp
        .headers
        .keys()
        .map(|n| n.as_str().to_owned())
        .filter(|n| {
            n.starts_with("x-forwarded-") || n.starts_with("x-auth-request-") || n == "cookie"
        })
        // the front proxy's own cookie header for nginx is not for Envoy
        .filter(|n| n != "x-auth-request-cookie")
        .collect();
    names.sort();
    assert!(
        names.contains(&"x-auth-request-access-token".to_owned()),
        "{names:?}"
    );
    names
}

#[tokio::test]
async fn deploy_envoy_yaml_asks_the_endpoint_and_copies_exactly_its_identity_headers() {
    let Some(docs) = deploy_yaml("envoy.yaml") else {
        return;
    };
    let filter = find_with(&docs[0], "http_service").expect("an ext_authz filter");
    assert_eq!(filter["failure_mode_allow"], false, "must fail closed");
    let http = &filter["http_service"];
    assert_eq!(http["path_prefix"], PREFIX);
    let asked = exact_names(&filter["allowed_headers"]);
    for needed in ["cookie", "accept", "x-forwarded-proto"] {
        assert!(
            asked.contains(&needed.to_owned()),
            "{needed} not sent: {asked:?}"
        );
    }
    let response = &http["authorization_response"];
    let mut upstream = exact_names(&response["allowed_upstream_headers"]);
    upstream.sort();
    assert_eq!(upstream, allow_answer_headers().await);
    let client = exact_names(&response["allowed_client_headers"]);
    for needed in ["location", "set-cookie", "www-authenticate", "content-type"] {
        assert!(client.contains(&needed.to_owned()), "{needed}: {client:?}");
    }
    let on_success = exact_names(&response["allowed_client_headers_on_success"]);
    assert_eq!(on_success, ["set-cookie"], "a refreshed session's cookie");
    // gatehouse's pages are routed to it unchecked; the checks answer 404
    let routes = find_with(&docs[0], "routes").unwrap()["routes"]
        .as_array()
        .unwrap();
    let path_of = |r: &serde_json::Value| {
        let m = &r["match"];
        m["prefix"]
            .as_str()
            .or(m["path"].as_str())
            .unwrap()
            .to_owned()
    };
    let pages = routes.iter().find(|r| path_of(r) == "/oauth2/").unwrap();
    assert_eq!(pages["route"]["cluster"], "gatehouse");
    // gatehouse trusts Envoy: a client's forwarded headers never reach it
    // on the unchecked route (review of issue 12, finding 4)
    let removed = strings(&pages["request_headers_to_remove"]);
    for spoofable in CLIENT_FORWARDED {
        assert!(
            removed.contains(&spoofable.to_owned()),
            "{spoofable}: {removed:?}"
        );
    }
    let mut unchecked = vec![pages];
    for check in [PREFIX, "/oauth2/auth", "/oauth2/forward-auth"] {
        let r = routes.iter().find(|r| path_of(r) == check).unwrap();
        assert_eq!(r["direct_response"]["status"], 404, "{check}");
        unchecked.push(r);
    }
    for r in unchecked {
        let per_route = &r["typed_per_filter_config"]["envoy.filters.http.ext_authz"];
        assert_eq!(per_route["disabled"], true, "{r}");
    }
    let first = |p: &str| routes.iter().position(|r| path_of(r) == p).unwrap();
    for check in [PREFIX, "/oauth2/auth", "/oauth2/forward-auth"] {
        assert!(first(check) < first("/oauth2/"), "{check} after /oauth2/");
    }
    assert!(first("/oauth2/") < first("/"));
}

#[tokio::test]
async fn deploy_gateway_api_security_policy_asks_the_endpoint_and_copies_its_identity_headers() {
    let Some(docs) = deploy_yaml("gateway-api.yaml") else {
        return;
    };
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "SecurityPolicy")
        .expect("a SecurityPolicy");
    let ext = &policy["spec"]["extAuth"];
    assert_eq!(ext["failOpen"], false, "must fail closed");
    assert_eq!(ext["http"]["path"], PREFIX);
    let asked = strings(&ext["headersToExtAuth"]);
    for needed in ["cookie", "accept", "x-forwarded-proto"] {
        assert!(
            asked.contains(&needed.to_owned()),
            "{needed} not sent: {asked:?}"
        );
    }
    let mut upstream = strings(&ext["http"]["headersToBackend"]);
    upstream.sort();
    assert_eq!(upstream, allow_answer_headers().await);
    // the policy covers the application's route, not gatehouse's pages
    let target = &policy["spec"]["targetRefs"][0];
    assert_eq!(target["kind"], "HTTPRoute");
    let app = docs
        .iter()
        .find(|d| d["kind"] == "HTTPRoute" && d["metadata"]["name"] == target["name"])
        .expect("the policy's HTTPRoute");
    let pages = docs
        .iter()
        .find(|d| d["kind"] == "HTTPRoute" && d["metadata"]["name"] != target["name"])
        .expect("gatehouse's own HTTPRoute");
    assert_eq!(
        pages["spec"]["rules"][0]["backendRefs"][0]["name"],
        "gatehouse"
    );
    let modifier = pages["spec"]["rules"][0]["filters"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["type"] == "RequestHeaderModifier"))
        .expect("the pages route removes the client's forwarded headers");
    let removed = strings(&modifier["requestHeaderModifier"]["remove"]);
    for spoofable in CLIENT_FORWARDED {
        assert!(
            removed.contains(&spoofable.to_owned()),
            "{spoofable}: {removed:?}"
        );
    }
    // the checks themselves stay on the checked route (the longer prefix)
    let app_paths = app["spec"]["rules"][0]["matches"].to_string();
    for check in [PREFIX, "/oauth2/auth", "/oauth2/forward-auth"] {
        assert!(app_paths.contains(check), "{check}: {app_paths}");
    }
}
