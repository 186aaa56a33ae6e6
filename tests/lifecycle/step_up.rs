//! Step-up (issue 10 item 6): a route with `acr_values` and/or `max_age`
//! admits a session only when its sign-in was strong and recent enough;
//! otherwise a new login at the provider asks for exactly that
//! (`acr_values`, `max_age` with `prompt=login`), the ID token that comes
//! back is checked against what was asked (an error page when it falls
//! short, never another login), and the upgraded session replaces the old
//! one everywhere. The mock provider grants the first `acr_values` asked
//! and reports every sign-in as just now, unless its `acr_answer` and
//! `auth_age_secs` knobs make it answer a weaker `acr` or an old
//! `auth_time`.

use http::StatusCode;
use url::Url;

use crate::support::SESSION_COOKIE;
use crate::support::client::{ACCEPT_HTML, TestClient, TestResponse};
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, authorize_at_idp, finish_login, login};
use crate::support::upstream::Recorder;

const ROUTES: &str = r#"
[[routes]]
path = "/admin"
acr_values = "urn:example:mfa urn:example:hwk"

[[routes]]
path = "/recent"
max_age = "10m"

[[routes]]
path = "/api/admin"
acr_values = "urn:example:mfa"
api = true
"#;

struct Stack {
    idp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
}

async fn stack() -> Stack {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(ROUTES, &idp, &upstream).await;
    Stack {
        idp,
        upstream,
        proxy,
    }
}

/// A browser signed in the plain way, at `/`.
async fn signed_in(s: &Stack) -> TestClient {
    let browser = TestClient::new();
    login(&browser, &s.proxy, "/").await;
    browser
}

fn session(browser: &TestClient, s: &Stack) -> String {
    browser
        .cookie(&s.proxy.host(), SESSION_COOKIE)
        .expect("a session cookie")
}

/// The query of a redirect to the provider's authorize endpoint.
fn authorize_query(resp: &TestResponse) -> Vec<(String, String)> {
    assert_eq!(
        resp.status,
        StatusCode::FOUND,
        "expected a login: {}",
        resp.text()
    );
    let url = resp.location_url().expect("a Location");
    assert!(
        url.path().ends_with("/authorize"),
        "not the provider: {url}"
    );
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A step-up login from `resp` (a redirect to the provider) to the
/// callback's answer, not yet followed.
async fn through_provider(s: &Stack, browser: &TestClient, resp: &TestResponse) -> TestResponse {
    let authorize = resp.location_url().expect("a redirect to the provider");
    let callback = authorize_at_idp(browser, &s.proxy, &authorize, None).await;
    browser.get(callback.as_str()).await
}

#[tokio::test]
async fn a_session_without_the_asked_acr_signs_in_again_asking_for_it_and_then_passes_everywhere() {
    let s = stack().await;
    let browser = signed_in(&s).await;
    let before = session(&browser, &s);
    s.upstream.clear();

    // the plain session: asked for the acr, nothing reaches the upstream
    let resp = browser.get(&s.proxy.url("/admin/users?page=2")).await;
    let q = authorize_query(&resp);
    assert_eq!(
        param(&q, "acr_values"),
        Some("urn:example:mfa urn:example:hwk")
    );
    assert_eq!(param(&q, "max_age"), None);
    assert_eq!(param(&q, "prompt"), None);
    assert_eq!(s.upstream.count(), 0);
    // an API client with the same session is told, not redirected
    let api = TestClient::new()
        .get_with(
            &s.proxy.url("/admin/users"),
            &[
                ("accept", "application/json"),
                ("cookie", &format!("{SESSION_COOKIE}={before}")),
            ],
        )
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());
    assert_eq!(api.json()["error"], "step_up_required", "{}", api.text());
    // so is any client on an api route
    let on_api_route = browser.get(&s.proxy.url("/api/admin/x")).await;
    assert_eq!(on_api_route.status, StatusCode::UNAUTHORIZED);
    assert_eq!(on_api_route.json()["error"], "step_up_required");
    assert_eq!(s.upstream.count(), 0);

    // the step-up login: back where it started, with a new session
    let authorize = resp.location_url().unwrap();
    let callback = authorize_at_idp(&browser, &s.proxy, &authorize, None).await;
    finish_login(&browser, &s.proxy, &callback, "/admin/users?page=2").await;
    let after = session(&browser, &s);
    assert_ne!(after, before, "the upgraded session replaces the old one");
    let admin = browser.get(&s.proxy.url("/admin/users?page=2")).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text());
    assert_eq!(s.upstream.last().unwrap().path(), "/admin/users");
    // and it still works on the plain routes and on the api route
    for path in ["/", "/other", "/api/admin/x"] {
        let r = browser.get(&s.proxy.url(path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
    }
    assert_eq!(
        s.idp.authorize_requests().len(),
        2,
        "one plain login, one step-up"
    );
}

#[tokio::test]
async fn a_provider_that_answers_a_weaker_acr_ends_on_an_error_page_not_in_a_loop() {
    let s = stack().await;
    let browser = signed_in(&s).await;
    let before = session(&browser, &s);
    s.idp
        .set_knobs(|k| k.acr_answer = Some("urn:example:pwd".to_owned()));
    let resp = browser.get(&s.proxy.url("/admin")).await;
    assert_eq!(
        param(&authorize_query(&resp), "acr_values"),
        Some("urn:example:mfa urn:example:hwk")
    );
    let callback = through_provider(&s, &browser, &resp).await;
    assert_eq!(
        callback.status,
        StatusCode::BAD_REQUEST,
        "{}",
        callback.text()
    );
    assert!(callback.location().is_none(), "no redirect: no loop");
    assert!(
        callback.text().contains("not strong enough"),
        "{}",
        callback.text()
    );
    assert!(
        callback.set_cookie(SESSION_COOKIE).is_none(),
        "the weaker sign-in makes no session"
    );
    // the old session is as it was: fine on plain routes, still not on /admin
    assert_eq!(session(&browser, &s), before);
    let plain = browser.get(&s.proxy.url("/")).await;
    assert_eq!(plain.status, StatusCode::OK);
    let again = browser.get(&s.proxy.url("/admin")).await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert_eq!(s.upstream.requests_to("/admin").len(), 0);
}

#[tokio::test]
async fn a_sign_in_older_than_max_age_signs_in_again_with_prompt_login() {
    let s = stack().await;
    // the first sign-in happened an hour ago at the provider
    s.idp.set_knobs(|k| k.auth_age_secs = Some(3600));
    let browser = signed_in(&s).await;
    s.upstream.clear();
    let resp = browser.get(&s.proxy.url("/recent")).await;
    let q = authorize_query(&resp);
    assert_eq!(param(&q, "max_age"), Some("600"));
    assert_eq!(param(&q, "prompt"), Some("login"));
    assert_eq!(param(&q, "acr_values"), None);
    assert_eq!(s.upstream.count(), 0);
    // the provider makes the user authenticate again, as prompt=login asks
    s.idp.set_knobs(|k| k.auth_age_secs = None);
    let authorize = resp.location_url().unwrap();
    let callback = authorize_at_idp(&browser, &s.proxy, &authorize, None).await;
    finish_login(&browser, &s.proxy, &callback, "/recent").await;
    let recent = browser.get(&s.proxy.url("/recent")).await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text());
    assert_eq!(browser.get(&s.proxy.url("/")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_step_up_login_that_comes_back_with_an_old_auth_time_is_an_error_page() {
    let s = stack().await;
    // a provider that ignores prompt=login and max_age
    s.idp.set_knobs(|k| k.auth_age_secs = Some(3600));
    let browser = signed_in(&s).await;
    let resp = browser.get(&s.proxy.url("/recent")).await;
    assert_eq!(param(&authorize_query(&resp), "prompt"), Some("login"));
    let callback = through_provider(&s, &browser, &resp).await;
    assert_eq!(
        callback.status,
        StatusCode::BAD_REQUEST,
        "{}",
        callback.text()
    );
    assert!(callback.location().is_none(), "no redirect: no loop");
    assert!(
        callback.text().contains("recent sign-in"),
        "{}",
        callback.text()
    );
    assert!(callback.set_cookie(SESSION_COOKIE).is_none());
    assert_eq!(s.upstream.requests_to("/recent").len(), 0);
}

#[tokio::test]
async fn a_step_up_login_whose_id_token_has_no_auth_time_is_an_error_page() {
    let s = stack().await;
    s.idp.set_knobs(|k| k.auth_age_secs = Some(3600));
    let browser = signed_in(&s).await;
    // OIDC Core 3.1.3.7: auth_time is required when max_age was asked
    s.idp.set_knobs(|k| {
        k.auth_age_secs = None;
        k.extra_id_token_claims
            .insert("auth_time".into(), serde_json::Value::Null);
    });
    let resp = browser.get(&s.proxy.url("/recent")).await;
    assert_eq!(param(&authorize_query(&resp), "max_age"), Some("600"));
    let callback = through_provider(&s, &browser, &resp).await;
    assert_eq!(
        callback.status,
        StatusCode::BAD_REQUEST,
        "{}",
        callback.text()
    );
    assert!(
        callback.text().contains("recent sign-in"),
        "{}",
        callback.text()
    );
    assert!(callback.set_cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn through_oauth2_auth_a_step_up_is_a_401_and_start_with_rd_asks_for_the_routes_acr() {
    let s = stack().await;
    let browser = signed_in(&s).await;
    let cookie = format!("{SESSION_COOKIE}={}", session(&browser, &s));
    let auth = |path: &'static str, cookie: String| {
        let url = s.proxy.url("/oauth2/auth");
        let original = s.proxy.url(path);
        async move {
            TestClient::new()
                .get_with(
                    &url,
                    &[
                        ("x-original-url", original.as_str()),
                        ("cookie", cookie.as_str()),
                        ("accept", ACCEPT_HTML),
                    ],
                )
                .await
        }
    };
    // nginx asks: plain paths pass, the step-up path is a 401 (its
    // error_page then sends the browser to /oauth2/start?rd=...)
    assert_eq!(auth("/", cookie.clone()).await.status, StatusCode::ACCEPTED);
    let need = auth("/admin/x", cookie.clone()).await;
    assert_eq!(need.status, StatusCode::UNAUTHORIZED, "{}", need.text());
    assert!(need.location().is_none());

    // Traefik and Caddy ask /oauth2/forward-auth: a browser is sent on to
    // the provider asking for the acr, an API client gets the 401
    let forward = |accept: &'static str| {
        let url = s.proxy.url("/oauth2/forward-auth");
        let original = s.proxy.url("/admin/x");
        let cookie = cookie.clone();
        async move {
            TestClient::new()
                .get_with(
                    &url,
                    &[
                        ("x-original-url", original.as_str()),
                        ("cookie", cookie.as_str()),
                        ("accept", accept),
                    ],
                )
                .await
        }
    };
    let q = authorize_query(&forward(ACCEPT_HTML).await);
    assert_eq!(
        param(&q, "acr_values"),
        Some("urn:example:mfa urn:example:hwk")
    );
    let api = forward("application/json").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["error"], "step_up_required");

    // /oauth2/start works the step-up out from rd's route; what the client
    // adds to the query asks for nothing
    let rd = s.proxy.url("/admin/x?y=1");
    let start = |query: String| {
        let url = s.proxy.url(&format!("/oauth2/start?{query}"));
        let browser = &browser;
        async move { browser.get(&url).await }
    };
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let q = authorize_query(&start(format!("rd={}", enc(&rd))).await);
    assert_eq!(
        param(&q, "acr_values"),
        Some("urn:example:mfa urn:example:hwk")
    );
    let q = authorize_query(&start(format!("rd={}", enc("/recent/y"))).await);
    assert_eq!(param(&q, "max_age"), Some("600"));
    assert_eq!(param(&q, "prompt"), Some("login"));
    let q = authorize_query(&start("rd=%2F&acr_values=weak&max_age=99999".to_owned()).await);
    assert_eq!(param(&q, "acr_values"), None);
    assert_eq!(param(&q, "max_age"), None);
    assert_eq!(param(&q, "prompt"), None);

    // the login started there upgrades the session for /oauth2/auth too
    let resp = start(format!("rd={}", enc(&rd))).await;
    let authorize: Url = resp.location_url().unwrap();
    let callback = authorize_at_idp(&browser, &s.proxy, &authorize, None).await;
    finish_login(&browser, &s.proxy, &callback, "/admin/x?y=1").await;
    let upgraded = format!("{SESSION_COOKIE}={}", session(&browser, &s));
    assert_eq!(
        auth("/admin/x", upgraded.clone()).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(auth("/", upgraded).await.status, StatusCode::ACCEPTED);
}
