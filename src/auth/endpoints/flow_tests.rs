//! The `/oauth2/*` endpoints driven in process against the loopback
//! provider of the login engine's tests: what each answers, which cookies
//! it sets and clears, and every refusal of the callback.

use http::{HeaderMap, Request};
use http_body_util::BodyExt as _;
use serde_json::json;

use super::*;
use crate::auth::oidc::tests::engine::{Idp, http, sign};
use crate::auth::session::read_session;
use crate::error::Mode;

async fn state(idp: &Idp, extra: &str) -> AppState {
    let config = idp.config(&format!(
        r#"client_secret = "s3cret"
        whitelist_domain = ".example.com"
        {extra}"#
    ));
    let state = AppState::new(config).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.provider.discover_until_ready(&state.config, http()),
    )
    .await
    .unwrap();
    state
}

fn parts(uri: &str, cookie: Option<&str>) -> Parts {
    let mut b = Request::builder().uri(uri);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(()).unwrap().into_parts().0
}

fn info(host: Option<&str>, mode: Mode) -> RequestInfo {
    RequestInfo {
        origin: Origin {
            proto: "https",
            host: host.map(str::to_owned),
            trusted: false,
            host_forwarded: false,
        },
        mode,
    }
}

fn html() -> RequestInfo {
    info(Some("app.example.com"), Mode::Html)
}

fn location(r: &Response<ProxyBody>) -> String {
    r.headers()["location"].to_str().unwrap().to_owned()
}

fn set_cookies(r: &Response<ProxyBody>) -> Vec<cookie::Cookie<'static>> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap())
        .collect()
}

/// The `Cookie` header a browser sends back after `r`.
fn cookie_header(r: &Response<ProxyBody>) -> String {
    set_cookies(r)
        .iter()
        .filter(|c| !c.value().is_empty())
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ")
}

async fn body(r: Response<ProxyBody>) -> String {
    let b = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

fn query(url: &str, key: &str) -> Option<String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Starts a login; the response, its state and the login-state cookie.
fn begin(state: &AppState, uri: &str) -> (Response<ProxyBody>, String, String) {
    let r = start(state, &parts(uri, None), &html());
    assert_eq!(r.status(), StatusCode::FOUND);
    let csrf = query(&location(&r), "state").unwrap();
    let cookie = cookie_header(&r);
    (r, csrf, cookie)
}

fn login_of(state: &AppState, csrf: &str, cookie: &str) -> LoginState {
    let mut h = HeaderMap::new();
    h.insert("cookie", cookie.parse().unwrap());
    read_login_state(state.gate.codec(), &state.config.cookie, &h, csrf).unwrap()
}

/// Makes the provider answer the next code with an ID token for `sub`
/// carrying the login's nonce.
fn answer_login(idp: &Idp, login: &LoginState, sub: &str, extra: &serde_json::Value) {
    let mut claims = idp.id_claims(sub);
    claims["nonce"] = json!(login.nonce);
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    idp.answer_tokens(&json!({
        "access_token": "at-1",
        "refresh_token": "rt-1",
        "id_token": sign(&claims, "key1"),
    }));
}

#[tokio::test]
async fn start_sends_the_browser_to_the_provider_with_a_login_state_for_ten_minutes() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let (r, csrf, cookie) = begin(&state, "/oauth2/start?x=1&rd=%2Fback%3Fy%3D2");
    let to = location(&r);
    assert!(to.starts_with(&format!("{}/authorize?", idp.base)), "{to}");
    let login = login_of(&state, &csrf, &cookie);
    assert_eq!(login.return_to, "/back?y=2");
    assert_eq!(
        login.redirect_uri,
        "https://app.example.com/oauth2/callback"
    );
    assert_eq!(
        query(&to, "redirect_uri").as_deref(),
        Some(login.redirect_uri.as_str())
    );
    assert_eq!(query(&to, "nonce").as_deref(), Some(login.nonce.as_str()));
    let now = now_secs();
    assert!(
        (now + 599..=now + 600).contains(&login.exp),
        "{}",
        login.exp
    );
    // state, nonce and verifier are three different random tokens
    assert_eq!(login.state.len(), 43);
    assert_ne!(login.state, login.nonce);
    assert_ne!(login.nonce, login.pkce_verifier);
    let c = &set_cookies(&r)[0];
    assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(600)));
    // no rd: back to the root
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    assert_eq!(login_of(&state, &csrf, &cookie).return_to, "/");
}

#[tokio::test]
async fn start_is_503_until_the_provider_is_discovered() {
    let idp = Idp::start().await;
    let state = AppState::new(idp.config("client_secret = \"s3cret\"")).unwrap();
    let r = start(&state, &parts("/oauth2/start", None), &html());
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_per_host_callback_is_on_the_starting_host_and_only_for_allowed_hosts() {
    let idp = Idp::start().await;
    let config = Config::from_toml_str(&format!(
        r#"
        upstream = "http://127.0.0.1:9"
        oidc_issuer_url = "{}"
        client_id = "gatehouse"
        client_secret = "s3cret"
        redirect_url = "/oauth2/callback"
        cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
        email_domain = "*"
        whitelist_domain = ".example.com"
        "#,
        idp.base
    ))
    .unwrap();
    let state = AppState::new(config).unwrap();
    state
        .provider
        .discover_until_ready(&state.config, http())
        .await;
    let r = start(
        &state,
        &parts("/oauth2/start", None),
        &info(Some("app1.example.com"), Mode::Html),
    );
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        query(&location(&r), "redirect_uri").as_deref(),
        Some("https://app1.example.com/oauth2/callback")
    );
    for host in [Some("evil.test"), None] {
        let r = start(
            &state,
            &parts("/oauth2/start", None),
            &info(host, Mode::Json),
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{host:?}");
    }
}

#[test]
fn same_authority_compares_host_and_port_with_defaults() {
    let cb = Url::parse("https://auth.example.com/oauth2/callback").unwrap();
    assert!(same_authority(&cb, "auth.example.com"));
    assert!(same_authority(&cb, "AUTH.example.com:443"));
    assert!(!same_authority(&cb, "auth.example.com:8443"));
    assert!(!same_authority(&cb, "app.example.com"));
    assert!(!same_authority(&cb, "bad host"));
    let with_port = Url::parse("https://auth.example.com:8443/cb").unwrap();
    assert!(same_authority(&with_port, "auth.example.com:8443"));
}

#[test]
fn query_params_are_found_by_exact_name_and_given_once() {
    let p = parts("/cb?codex=1&code=a%20b&state=s&state=t", None);
    assert_eq!(query_param(&p, "code").as_deref(), Some("a b"));
    assert_eq!(query_param(&p, "nope"), None);
    assert_eq!(single_param(&p, "code").unwrap().as_deref(), Some("a b"));
    assert_eq!(single_param(&p, "nope").unwrap(), None);
    assert!(single_param(&p, "state").is_err());
    assert_eq!(single_param(&parts("/cb", None), "code").unwrap(), None);
}

#[tokio::test]
async fn a_callback_signs_in_once_and_clears_its_login_state() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start?rd=/home");
    let login = login_of(&state, &csrf, &cookie);
    answer_login(
        &idp,
        &login,
        "alice",
        &json!({"email": "alice@example.com", "sid": "op-1"}),
    );
    let uri = format!("/oauth2/callback?code=c1&state={csrf}");
    let r = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/home");
    let cookies = set_cookies(&r);
    let login_name = login_cookie_name(&state.config.cookie.name, &csrf);
    let names: Vec<&str> = cookies.iter().map(|c| c.name()).collect();
    assert!(names.contains(&login_name.as_str()), "{names:?}");
    assert!(
        cookies
            .iter()
            .any(|c| c.name() == login_name && c.value().is_empty()),
        "the login state is cleared"
    );
    let mut h = HeaderMap::new();
    h.insert("cookie", cookie_header(&r).parse().unwrap());
    let session = read_session(state.gate.codec(), &state.config.cookie, &h).unwrap();
    assert_eq!(session.identity.subject, "alice");
    assert_eq!(session.provider_sid.as_deref(), Some("op-1"));
    assert_eq!(session.issuer, idp.base);
    let exp = now_secs() + state.config.cookie.expire.as_secs();
    assert!((exp - 1..=exp).contains(&session.identity.expires_at));
    // no refresh configured: the refresh token is not kept; no logout
    // endpoint and no Authorization header: nor is the id token
    assert!(session.identity.tokens.refresh_token.is_none());
    assert!(session.identity.tokens.id_token.is_none());
    // nor the access token, unless it is forwarded
    assert!(session.identity.tokens.access_token.is_none());
    // the same state again: refused, exactly one code exchanged
    let again = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(idp.seen("/token").len(), 1);
}

#[tokio::test]
async fn a_callback_keeps_the_tokens_that_something_needs() {
    let idp = Idp::start().await;
    let state = state(
        &idp,
        "cookie_refresh = \"1h\"\npass_authorization_header = true",
    )
    .await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    answer_login(
        &idp,
        &login_of(&state, &csrf, &cookie),
        "alice",
        &json!({"email": "alice@example.com"}),
    );
    let uri = format!("/oauth2/callback?code=c1&state={csrf}");
    let r = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let mut h = HeaderMap::new();
    h.insert("cookie", cookie_header(&r).parse().unwrap());
    let session = read_session(state.gate.codec(), &state.config.cookie, &h).unwrap();
    assert!(session.identity.tokens.id_token.is_some());
    assert_eq!(
        session
            .identity
            .tokens
            .refresh_token
            .as_ref()
            .map(|s| s.expose()),
        Some("rt-1")
    );
}

#[tokio::test]
async fn every_refused_callback_says_why_and_still_clears_its_login_state() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    let cb = |q: String| format!("/oauth2/callback?{q}");
    let cases: Vec<(String, Option<&str>, StatusCode, &str)> = vec![
        (
            cb(format!("code=c&state={csrf}&state={csrf}")),
            Some(&cookie),
            StatusCode::BAD_REQUEST,
            "more than once",
        ),
        (
            cb("code=c".into()),
            Some(&cookie),
            StatusCode::BAD_REQUEST,
            "opened without one",
        ),
        (
            cb(format!("code=c&state={csrf}")),
            None,
            StatusCode::BAD_REQUEST,
            "cannot be finished here",
        ),
        (
            cb(format!("code=c&state={csrf}&iss=https%3A%2F%2Fevil.test")),
            Some(&cookie),
            StatusCode::BAD_REQUEST,
            "did not come back",
        ),
        (
            cb(format!("state={csrf}")),
            Some(&cookie),
            StatusCode::BAD_REQUEST,
            "opened without one",
        ),
        (
            cb(format!(
                "state={csrf}&error=access_denied&error_description=no%20{}",
                "x".repeat(300)
            )),
            Some(&cookie),
            StatusCode::BAD_REQUEST,
            "access_denied: no xxx",
        ),
    ];
    for (uri, c, status, says) in cases {
        let r = callback(&state, &parts(&uri, c), &info(None, Mode::Json)).await;
        assert_eq!(r.status(), status, "{uri}");
        let cleared = set_cookies(&r).iter().any(|k| {
            k.name() == login_cookie_name(&state.config.cookie.name, &csrf) && k.value().is_empty()
        });
        assert_eq!(cleared, uri.contains("state="), "{uri}");
        let text = body(r).await;
        assert!(text.contains(says), "{uri}: {text}");
        assert!(
            !text.contains(&"x".repeat(MAX_PROVIDER_TEXT)),
            "clipped: {text}"
        );
    }
    assert!(idp.seen("/token").is_empty(), "no code was exchanged");
    // a state too long to be ours clears nothing
    let long = "s".repeat(513);
    let r = callback(
        &state,
        &parts(&cb(format!("code=c&state={long}")), None),
        &html(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(SET_COOKIE).is_none());
    let edge = "s".repeat(512);
    let r = callback(
        &state,
        &parts(&cb(format!("code=c&state={edge}")), None),
        &html(),
    )
    .await;
    assert_eq!(r.headers().get_all(SET_COOKIE).iter().count(), 1);
}

#[tokio::test]
async fn a_user_refused_by_policy_gets_a_403_and_no_session() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    answer_login(
        &idp,
        &login_of(&state, &csrf, &cookie),
        "alice",
        &json!({"email": "alice@example.com", "email_verified": false}),
    );
    let uri = format!("/oauth2/callback?code=c1&state={csrf}");
    let r = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(&r).iter().all(|c| c.value().is_empty()));
    assert!(body(r).await.contains("/oauth2/sign_out"));
    let who = crate::auth::identity::Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        ..Default::default()
    };
    let j = forbidden(DenyReason::EmailDomain, &who, Mode::Json);
    assert_eq!(j.status(), StatusCode::FORBIDDEN);
    let text = body(j).await;
    assert!(text.contains("\"error\":\"forbidden\""), "{text}");
    assert!(text.contains("alice@example.com"), "{text}");
}

/// Signs `sub` in through the endpoints; the session cookie header.
async fn signed_in(idp: &Idp, state: &AppState, sub: &str) -> String {
    let (_, csrf, cookie) = begin(state, "/oauth2/start");
    answer_login(
        idp,
        &login_of(state, &csrf, &cookie),
        sub,
        &json!({"email": format!("{sub}@example.com")}),
    );
    let uri = format!("/oauth2/callback?code=c&state={csrf}");
    let r = callback(state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    cookie_header(&r)
}

#[tokio::test]
async fn userinfo_answers_the_identity_or_401() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let cookie = signed_in(&idp, &state, "alice").await;
    let r = userinfo(&state, &parts("/oauth2/userinfo", Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
    assert_eq!(v["email"], "alice@example.com");
    let r = userinfo(&state, &parts("/oauth2/userinfo", None), &html()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_out_revokes_the_session_and_clears_its_cookies() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let cookie = signed_in(&idp, &state, "alice").await;
    let p = parts("/oauth2/sign_out?rd=%2Fbye", Some(&cookie));
    let r = sign_out(&state, &p, &html()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/bye");
    let cleared = set_cookies(&r);
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].name(), state.config.cookie.name);
    assert_eq!(cleared[0].value(), "");
    // the old cookie no longer signs in
    let r = userinfo(&state, &parts("/oauth2/userinfo", Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // no rd: the signed-out page
    let r = sign_out(&state, &parts("/oauth2/sign_out", None), &html()).await;
    assert_eq!(location(&r), "/oauth2/signed_out");
}

#[tokio::test]
async fn sign_out_ends_the_provider_session_with_a_hint_and_an_absolute_return() {
    let idp = Idp::start().await;
    idp.set(|a| a.end_session = true);
    let state = state(&idp, "").await;
    let cookie = signed_in(&idp, &state, "alice").await;
    let p = parts("/oauth2/sign_out?rd=%2Fbye", Some(&cookie));
    let r = sign_out(&state, &p, &html()).await;
    let to = location(&r);
    assert!(to.starts_with(&format!("{}/logout?", idp.base)), "{to}");
    assert!(query(&to, "id_token_hint").is_some(), "{to}");
    assert_eq!(
        query(&to, "post_logout_redirect_uri").as_deref(),
        Some("https://app.example.com/bye")
    );
    assert_eq!(query(&to, "client_id").as_deref(), Some("gatehouse"));
    assert_eq!(query(&to, "state").map(|s| s.len()), Some(43));
}

#[test]
fn the_end_session_url_is_absolute_or_left_to_the_provider() {
    let end = || LogoutTarget::Oidc(Url::parse("https://idp.test/logout").unwrap());
    let no_host = Origin {
        proto: "https",
        host: None,
        trusted: false,
        host_forwarded: false,
    };
    let fixed = CallbackUrl::Fixed(Url::parse("https://auth.example.com/oauth2/callback").unwrap());
    let same = CallbackUrl::SameHost("/oauth2/callback".into());
    let root = ReturnTo::root();
    let u = end_session_url(end(), &root, &no_host, &fixed, "cid", None, None);
    assert_eq!(
        u,
        "https://idp.test/logout?post_logout_redirect_uri=https%3A%2F%2Fauth.example.com%2F&client_id=cid"
    );
    let u = end_session_url(end(), &root, &no_host, &same, "cid", None, Some("st"));
    assert_eq!(u, "https://idp.test/logout?client_id=cid&state=st");
    let auth0 = |u: &str| LogoutTarget::Auth0(Url::parse(u).unwrap());
    let u = end_session_url(
        auth0("https://t.auth0.com/v2/logout"),
        &root,
        &no_host,
        &same,
        "cid",
        None,
        None,
    );
    assert_eq!(u, "https://t.auth0.com/v2/logout?client_id=cid");
    let u = end_session_url(
        auth0("https://t.auth0.com/v2/logout"),
        &root,
        &no_host,
        &fixed,
        "cid",
        None,
        None,
    );
    assert_eq!(
        u,
        "https://t.auth0.com/v2/logout?client_id=cid&returnTo=https%3A%2F%2Fauth.example.com%2F"
    );
}

#[tokio::test]
async fn a_session_too_large_for_its_cookies_gives_up_the_id_token_hint_first() {
    let idp = Idp::start().await;
    idp.set(|a| a.end_session = true);
    let big = json!({"email": "alice@example.com", "pad": "x".repeat(24_000)});
    let state = state(&idp, "").await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    answer_login(&idp, &login_of(&state, &csrf, &cookie), "alice", &big);
    let uri = format!("/oauth2/callback?code=c1&state={csrf}");
    let r = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let mut h = HeaderMap::new();
    h.insert("cookie", cookie_header(&r).parse().unwrap());
    let session = read_session(state.gate.codec(), &state.config.cookie, &h).unwrap();
    assert_eq!(session.identity.subject, "alice");
    assert!(session.identity.tokens.id_token.is_none());
    // where the id token is forwarded it cannot be given up: refused
    let state = self::state(&idp, "pass_authorization_header = true").await;
    let (_, csrf, cookie) = begin(&state, "/oauth2/start");
    answer_login(&idp, &login_of(&state, &csrf, &cookie), "alice", &big);
    let uri = format!("/oauth2/callback?code=c1&state={csrf}");
    let r = callback(&state, &parts(&uri, Some(&cookie)), &html()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
