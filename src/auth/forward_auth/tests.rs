//! Both check endpoints, driven in process with a real session cookie and
//! the loopback provider from the login engine's tests.

use http::{HeaderMap, Request};

use super::*;
use crate::auth::identity::Tokens;
use crate::auth::oidc::tests::engine::{Idp, http};
use crate::auth::session::{read_login_state, write_session};
use crate::config::Secret;
use crate::http::forwarded::Origin;
use crate::telemetry::AccessNote;

async fn state(idp: &Idp, extra: &str) -> AppState {
    let config = idp.config(&format!(
        r#"client_secret = "s3cret"
        whitelist_domain = ".example.com"
        {extra}"#
    ));
    let state = AppState::new(config).unwrap();
    // bounded: a provider that never becomes ready fails the test, not hangs it
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.provider.discover_until_ready(&state.config, http()),
    )
    .await
    .unwrap();
    state
}

fn alice() -> Identity {
    let now = now_secs();
    Identity {
        subject: "alice".into(),
        email: Some("alice@example.com".into()),
        preferred_username: Some("al".into()),
        groups: vec!["staff".into(), "ops".into()],
        extra_headers: vec![("x-dept".into(), "R&D".into())],
        expires_at: now + 3600,
        refreshed_at: now,
        tokens: Tokens {
            access_token: Some(Secret::new("at-live")),
            access_token_expires_at: Some(now + 600),
            ..Tokens::default()
        },
        ..Identity::default()
    }
}

/// The `Cookie` header a browser holding `id`'s session sends.
fn session_cookie(state: &AppState, id: &Identity) -> String {
    let session = crate::auth::session::Session {
        id: crate::auth::session::SessionId::from_bytes([1; 16]),
        provider_sid: None,
        provider: None,
        issuer: state.config.provider.issuer.clone(),
        issued_at_ms: crate::auth::session::now_millis(),
        identity: id.clone(),
        secret: None,
    };
    let set = write_session(
        state.gate.codec(),
        &state.config.cookie,
        &session,
        &HeaderMap::new(),
    )
    .unwrap();
    set.iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

fn parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn info(trusted: bool, mode: Mode) -> RequestInfo {
    RequestInfo {
        origin: Origin {
            proto: "https",
            host: Some("auth.example.com".into()),
            trusted,
            host_forwarded: false,
        },
        mode,
    }
}

fn header<'a>(r: &'a Response<ProxyBody>, name: &str) -> Option<&'a str> {
    r.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn auth_request_allows_with_its_own_identity_headers_only() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let cookie = session_cookie(&state, &alice());
    let p = parts("GET", "/oauth2/auth", &[("cookie", &cookie)]);
    let r = auth_request(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "x-auth-request-user"), Some("alice"));
    assert_eq!(
        header(&r, "x-auth-request-email"),
        Some("alice@example.com")
    );
    assert_eq!(header(&r, "x-auth-request-preferred-username"), Some("al"));
    assert_eq!(header(&r, "x-auth-request-groups"), Some("staff,ops"));
    assert_eq!(header(&r, "x-dept"), Some("R&D"));
    assert_eq!(header(&r, "cache-control"), Some("no-store"));
    // nginx copies X-Auth-Request-*; the X-Forwarded-* set is forward-auth's
    assert_eq!(header(&r, "x-forwarded-user"), None);
    // pass_access_token is off
    assert_eq!(header(&r, "x-auth-request-access-token"), None);
}

#[tokio::test]
async fn unknown_identity_fields_are_sent_empty_so_a_client_value_is_overwritten() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let bare = Identity {
        subject: "bob".into(),
        expires_at: now_secs() + 3600,
        ..Identity::default()
    };
    let cookie = session_cookie(&state, &bare);
    let p = parts("GET", "/oauth2/forward-auth", &[("cookie", &cookie)]);
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    for name in [
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-forwarded-email",
        "x-forwarded-preferred-username",
        "x-forwarded-groups",
    ] {
        assert_eq!(header(&r, name), Some(""), "{name}");
    }
    assert_eq!(header(&r, "x-forwarded-user"), Some("bob"));
}

#[tokio::test]
async fn the_access_token_goes_only_to_a_trusted_proxy_with_pass_access_token() {
    let idp = Idp::start().await;
    let passing = state(&idp, "pass_access_token = true").await;
    let silent = state(&idp, "").await;
    for (state, trusted, expected) in [
        (&passing, true, Some("at-live")),
        (&passing, false, None),
        (&silent, true, None),
        (&silent, false, None),
    ] {
        let cookie = session_cookie(state, &alice());
        let p = parts("GET", "/oauth2/auth", &[("cookie", &cookie)]);
        let r = auth_request(
            state,
            &p,
            &info(trusted, Mode::Json),
            &mut AccessNote::default(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            header(&r, "x-auth-request-access-token"),
            expected,
            "trusted={trusted} pass={}",
            state.config.pass_access_token
        );
        let p = parts("GET", "/oauth2/forward-auth", &[("cookie", &cookie)]);
        let r = forward_auth(
            state,
            &p,
            &info(trusted, Mode::Json),
            &mut AccessNote::default(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-auth-request-access-token"), expected);
    }
    // an expired access token is never passed on
    let mut stale = alice();
    stale.tokens.access_token_expires_at = Some(now_secs() - 1);
    let cookie = session_cookie(&passing, &stale);
    let p = parts("GET", "/oauth2/auth", &[("cookie", &cookie)]);
    let r = auth_request(
        &passing,
        &p,
        &info(true, Mode::Json),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "x-auth-request-access-token"), None);
}

#[tokio::test]
async fn auth_request_answers_401_without_a_session_and_403_when_narrowed_out() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let r = auth_request(
        &state,
        &parts("GET", "/oauth2/auth", &[]),
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&r, "location"), None);
    assert_eq!(header(&r, "x-auth-request-user"), None);
    let cookie = session_cookie(&state, &alice());
    for (query, status) in [
        ("allowed_groups=ops", StatusCode::ACCEPTED),
        ("allowed_groups=admins", StatusCode::FORBIDDEN),
        ("allowed_emails=bob@example.com", StatusCode::FORBIDDEN),
        ("allowed_email_domains=example.com", StatusCode::ACCEPTED),
    ] {
        let p = parts(
            "GET",
            &format!("/oauth2/auth?{query}"),
            &[("cookie", &cookie)],
        );
        let r = auth_request(
            &state,
            &p,
            &info(true, Mode::Html),
            &mut AccessNote::default(),
        )
        .await;
        assert_eq!(r.status(), status, "{query}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(header(&r, "x-auth-request-user"), None);
            assert_eq!(header(&r, "content-type"), Some("application/json"));
        }
    }
}

#[tokio::test]
async fn a_policy_refusal_is_403_on_both_endpoints() {
    let idp = Idp::start().await;
    let state = state(&idp, r#"allowed_group = ["admins"]"#).await;
    let cookie = session_cookie(&state, &alice());
    let p = parts("GET", "/oauth2/auth", &[("cookie", &cookie)]);
    let r = auth_request(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&r, "x-forwarded-user"), None);
    assert_eq!(header(&r, "content-type"), Some("text/html; charset=utf-8"));
    let p = parts(
        "GET",
        "/oauth2/forward-auth?allowed_groups=nobody",
        &[(
            "cookie",
            &session_cookie(
                &state,
                &Identity {
                    groups: vec!["admins".into()],
                    ..alice()
                },
            ),
        )],
    );
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Json),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&r, "content-type"), Some("application/json"));
}

#[tokio::test]
async fn forward_auth_allows_with_both_header_sets() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let cookie = session_cookie(&state, &alice());
    let p = parts(
        "GET",
        "/oauth2/forward-auth?allowed_groups=staff",
        &[("cookie", &cookie)],
    );
    let r = forward_auth(
        &state,
        &p,
        &info(false, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    for (a, f, v) in [
        ("x-auth-request-user", "x-forwarded-user", "alice"),
        (
            "x-auth-request-email",
            "x-forwarded-email",
            "alice@example.com",
        ),
        (
            "x-auth-request-preferred-username",
            "x-forwarded-preferred-username",
            "al",
        ),
        ("x-auth-request-groups", "x-forwarded-groups", "staff,ops"),
    ] {
        assert_eq!(header(&r, a), Some(v), "{a}");
        assert_eq!(header(&r, f), Some(v), "{f}");
    }
}

/// Where a 302 from forward-auth sends the browser back after login.
fn remembered_return(state: &AppState, r: &Response<ProxyBody>) -> String {
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = url::Url::parse(header(r, "location").unwrap()).unwrap();
    let login_state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let cookie = header(r, "set-cookie").unwrap().split(';').next().unwrap();
    let mut h = HeaderMap::new();
    h.insert("cookie", cookie.parse().unwrap());
    read_login_state(state.gate.codec(), &state.config.cookie, &h, &login_state)
        .unwrap()
        .return_to
}

#[tokio::test]
async fn a_signed_out_navigation_is_sent_to_sign_in_and_back_to_the_original_url() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let original = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "app.example.com"),
        ("x-forwarded-uri", "/private?x=1"),
    ];
    for method in ["GET", "HEAD"] {
        let mut h = original.to_vec();
        h.push(("x-forwarded-method", method));
        let p = parts("GET", "/oauth2/forward-auth", &h);
        let r = forward_auth(
            &state,
            &p,
            &info(true, Mode::Html),
            &mut AccessNote::default(),
        )
        .await;
        assert!(
            header(&r, "location")
                .unwrap()
                .starts_with(&format!("{}/authorize?", idp.base)),
            "{method}"
        );
        assert_eq!(
            remembered_return(&state, &r),
            "https://app.example.com/private?x=1",
            "{method}"
        );
    }
    // without original headers, the request's own method decides
    let p = parts("HEAD", "/oauth2/forward-auth", &[]);
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(remembered_return(&state, &r), "/");
}

#[tokio::test]
async fn only_a_browser_navigation_is_redirected_to_sign_in() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let original = |method: &'static str| {
        vec![
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/api"),
            ("x-forwarded-method", method),
        ]
    };
    for (method, mode, own_method) in [
        ("POST", Mode::Html, "GET"),
        ("DELETE", Mode::Html, "GET"),
        ("GET", Mode::Json, "GET"),
        ("HEAD", Mode::Json, "GET"),
    ] {
        let p = parts(own_method, "/oauth2/forward-auth", &original(method));
        let r = forward_auth(&state, &p, &info(true, mode), &mut AccessNote::default()).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {mode:?}");
        assert_eq!(header(&r, "location"), None);
    }
    // untrusted: the forwarded method is not believed, the request's is
    let p = parts("POST", "/oauth2/forward-auth", &original("GET"));
    let r = forward_auth(
        &state,
        &p,
        &info(false, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_untrusted_or_foreign_original_url_is_never_remembered() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let headers = |host: &'static str| {
        vec![
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", host),
            ("x-forwarded-uri", "/steal"),
        ]
    };
    // a host neither the request's nor whitelisted
    let p = parts("GET", "/oauth2/forward-auth", &headers("evil.com"));
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(remembered_return(&state, &r), "/");
    // from an untrusted peer the forwarded headers are ignored
    let p = parts("GET", "/oauth2/forward-auth", &headers("app.example.com"));
    let r = forward_auth(
        &state,
        &p,
        &info(false, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(remembered_return(&state, &r), "/");
    // the request's own host is allowed without a whitelist entry
    let p = parts("GET", "/oauth2/forward-auth", &headers("auth.example.com"));
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(
        remembered_return(&state, &r),
        "https://auth.example.com/steal"
    );
}

#[tokio::test]
async fn a_malformed_original_request_from_a_trusted_proxy_is_a_400() {
    let idp = Idp::start().await;
    let state = state(&idp, "").await;
    let cookie = session_cookie(&state, &alice());
    let p = parts(
        "GET",
        "/oauth2/forward-auth",
        &[
            ("cookie", &cookie),
            ("x-forwarded-uri", "//evil.com/"),
            ("x-forwarded-host", "a.example.com"),
        ],
    );
    let r = forward_auth(
        &state,
        &p,
        &info(true, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&r, "x-forwarded-user"), None);
    // the same headers from an untrusted peer are ignored
    let r = forward_auth(
        &state,
        &p,
        &info(false, Mode::Html),
        &mut AccessNote::default(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[test]
fn a_user_id_that_cannot_be_a_header_is_never_allowed() {
    let weird = Identity {
        subject: "bad\u{1}id".into(),
        ..alice()
    };
    let r = allowed(StatusCode::OK, &weird, false, None, true, &[]);
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(header(&r, "x-forwarded-user"), None);
    // a cleanly encodable subject passes
    let r = allowed(StatusCode::ACCEPTED, &alice(), false, None, false, &[]);
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[test]
fn a_group_containing_a_comma_is_not_joined_into_the_allow_answer() {
    let id = Identity {
        subject: "u1".into(),
        groups: vec!["staff".into(), "admins,x".into()],
        ..Identity::default()
    };
    let r = allowed(StatusCode::ACCEPTED, &id, false, None, true, &[]);
    assert_eq!(r.headers()[X_AUTH_REQUEST_GROUPS], "staff");
    assert_eq!(r.headers()[X_FORWARDED_GROUPS], "staff");
}

#[test]
fn an_envoy_check_names_its_original_request_by_path_host_or_authority() {
    let parts = |uri: &str, host: Option<&str>| {
        let mut b = Request::builder().method("DELETE").uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap().into_parts().0
    };
    // HTTP/1: the Host header; HTTP/2: the request's :authority
    for (p, want) in [
        (
            parts("/oauth2/ext-authz/a/b?c=1", Some("app.example.com")),
            "http://app.example.com/a/b?c=1",
        ),
        (
            parts("http://app.example.com:8443/oauth2/ext-authz/x", None),
            "http://app.example.com:8443/x",
        ),
    ] {
        let o = envoy_original(&p, true).unwrap().unwrap();
        assert_eq!(o.url.as_str(), want);
        assert_eq!(o.method, Method::DELETE);
        assert!(o.method_given);
    }
    // not believed from an untrusted peer; nothing after the prefix; no host
    assert_eq!(
        envoy_original(
            &parts("/oauth2/ext-authz/a", Some("app.example.com")),
            false
        ),
        Ok(None)
    );
    assert!(envoy_original(&parts("/oauth2/ext-authz", Some("app.example.com")), true).is_err());
    assert!(envoy_original(&parts("/oauth2/ext-authz/a", None), true).is_err());
}
