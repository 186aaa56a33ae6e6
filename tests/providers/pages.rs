//! The pages a person meets, over real HTTP (issue 12, item 7): the
//! sign-in chooser, an error page, the 403 page and the signed-out page each
//! answer with their status through the templates, show the `banner` and
//! `footer` escaped, and the error pages the request id; a template in
//! `custom_templates_dir` replaces the built-in one of its name; API clients
//! still get JSON.

use super::*;
use support::proxy::login_as;

const BANNER: &str = "<b>Acme</b> staging";
const BANNER_ESCAPED: &str = "&lt;b&gt;Acme&lt;/b&gt; staging";
const FOOTER: &str = "Help: it@acme.example & \"desk\"";
const FOOTER_ESCAPED: &str = "Help: it@acme.example &amp; &quot;desk&quot;";

/// Two providers (so `/oauth2/sign_in` is a chooser), a banner and a
/// footer, and `/staff` for nobody.
async fn branded() -> (MockIdp, MockIdp, Recorder, TestProxy) {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let corp = MockIdp::start(IdpOptions {
        redirect_uris: vec!["http://127.0.0.1/oauth2/callback/corp".to_owned()],
        ..IdpOptions::auto_approving("bob")
    })
    .await;
    let upstream = Recorder::start().await;
    let toml = format!(
        r#"
        banner = '{BANNER}'
        footer = '{FOOTER}'

        [[providers]]
        id = "corp"
        name = "Corp <SSO>"
        oidc_issuer_url = "{}"
        client_id = "gatehouse"
        client_secret = "s3cret-corp-client"
        "#,
        corp.issuer()
    );
    let proxy = TestProxy::start(&toml, &idp, &upstream).await;
    (idp, corp, upstream, proxy)
}

fn assert_branded_page(r: &TestResponse, status: StatusCode, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    let html = r.text();
    assert!(html.contains(BANNER_ESCAPED), "{what}: banner: {html}");
    assert!(html.contains(FOOTER_ESCAPED), "{what}: footer: {html}");
    assert!(!html.contains("<b>Acme"), "{what}: banner markup");
    html
}

#[tokio::test]
async fn every_page_answers_with_its_status_and_shows_the_banner_and_footer_escaped() {
    let (_idp, _corp, _up, proxy) = branded().await;
    let browser = TestClient::new();

    let chooser = browser.get(&proxy.url("/oauth2/sign_in?rd=/x")).await;
    let html = assert_branded_page(&chooser, StatusCode::OK, "chooser");
    assert!(html.contains("Corp &lt;SSO&gt;"), "{html}");
    assert_eq!(
        html.matches("href=\"/oauth2/start?provider=").count(),
        2,
        "{html}"
    );

    let out = browser.get(&proxy.url("/oauth2/signed_out")).await;
    let html = assert_branded_page(&out, StatusCode::OK, "signed out");
    assert!(html.contains("You are signed out"), "{html}");

    let missing = browser.get(&proxy.url("/oauth2/no-such-page")).await;
    let html = assert_branded_page(&missing, StatusCode::NOT_FOUND, "404");
    // the request id, as in the log, for the administrator
    assert!(
        html.contains("Reference: <code>"),
        "404 without a reference: {html}"
    );

    let stale = browser
        .get(&proxy.url("/oauth2/callback?state=forged&code=x"))
        .await;
    let html = assert_branded_page(&stale, StatusCode::BAD_REQUEST, "callback without login");
    assert!(
        html.contains("href=\"/oauth2/start\""),
        "a way to try again: {html}"
    );

    // API clients: JSON as before, no page
    let api = TestClient::new()
        .get_with(
            &proxy.url("/oauth2/no-such-page"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert_eq!(api.json()["error"], "not_found", "{}", api.text());
    assert!(!api.text().contains("Acme"), "{}", api.text());
}

#[tokio::test]
async fn a_custom_forbidden_template_replaces_the_403_page_and_the_rest_stay_built_in() {
    let dir = std::env::temp_dir().join(format!("gatehouse-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("forbidden.html"),
        "<!doctype html><title>Acme</title><h1>No entry, {{ signed_in_as }}</h1>\
         <p>{{ what }}</p><p>ref {{ reference }}</p>",
    )
    .unwrap();
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let toml = format!(
        r#"
        custom_templates_dir = "{}"

        [[routes]]
        path = "/staff"
        allowed_groups = ["nobody-has-this"]
        "#,
        dir.display()
    );
    let proxy = TestProxy::start(&toml, &idp, &upstream).await;
    let alice = TestClient::new();
    login_as(&alice, &proxy, "/", "alice").await;

    let refused = alice.get(&proxy.url("/staff")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let html = refused.text();
    assert!(
        html.starts_with("<!doctype html><title>Acme</title><h1>No entry, "),
        "{html}"
    );
    assert!(
        html.contains("<p>Your account is not among those allowed on this part of the site.</p>"),
        "{html}"
    );
    // the request id, for the administrator
    let reference = html
        .split("<p>ref ")
        .nth(1)
        .unwrap()
        .trim_end_matches("</p>");
    assert!(
        reference.len() >= 16 && reference.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{html}"
    );
    // the security headers of every page still apply
    assert_eq!(refused.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        refused.header("content-security-policy"),
        Some("frame-ancestors 'none'")
    );

    // the other pages are the built-in ones
    let out = alice.get(&proxy.url("/oauth2/signed_out")).await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(
        out.text().contains("<h1>You are signed out</h1>"),
        "{}",
        out.text()
    );

    // API clients: the same JSON as without templates
    let api = alice
        .get_with(&proxy.url("/staff"), &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert_eq!(api.json()["error"], "forbidden", "{}", api.text());
    std::fs::remove_dir_all(&dir).unwrap();
}
