//! End to end through real front proxies: nginx (`auth_request`) and Caddy
//! (`forward_auth`), each started from the config in `deploy/` with the
//! ephemeral ports filled in, in front of gatehouse (in process), the mock
//! provider and the recording upstream, all on loopback. Traefik cannot be
//! installed here, so its ForwardAuth protocol runs through
//! `support::e2e::TraefikSim`, driven by `deploy/traefik/dynamic.yml`.
//!
//! Each front proxy gets the same checks: a browser login ending on the page
//! first asked for (query string intact), the identity the upstream saw, a
//! client's own identity headers (any case, `_` spellings) never reaching the
//! upstream, API calls getting 401, forged forwarding headers not moving the
//! sign-in, a second host sharing the session, and sign-out; with the
//! callback on each host and with a central sign-in host.
//!
//! A missing nginx or Caddy skips its tests with one loud line saying how to
//! install it; under `GATEHOUSE_REQUIRE_E2E=1` (CI) it fails them.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use crate::support::SESSION_COOKIE;
use bytes::Bytes;
use http::{Method, StatusCode};
use support::client::{TestClient, TestResponse};
use support::e2e::{
    CADDY, Caddy, Daemon, NGINX, Nginx, StartError, StubServer, TraefikConfig, TraefikSim,
    config_block, deploy_file, find_binary, free_port, render,
};
use support::idp::{IdpOptions, MockIdp};
use support::proxy::TestProxy;
use support::upstream::Recorder;
use url::Url;

const APP1: &str = "app1.gatehouse.test";
const APP2: &str = "app2.gatehouse.test";
const AUTH: &str = "auth.gatehouse.test";
/// The page first asked for: a query with `&`, which must survive the trip.
const PAGE: &str = "/reports/q3?year=2026&tab=summary";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Front {
    Nginx,
    Caddy,
    Traefik,
}

/// Where the provider sends the browser back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignIn {
    /// `redirect_url = "/oauth2/callback"`: the host the browser was on.
    PerHost,
    /// `redirect_url = "http://auth.gatehouse.test:PORT/oauth2/callback"`.
    Central,
}

enum FrontProcess {
    Real(Daemon),
    Sim(TraefikSim),
}

struct Stack {
    sign_in: SignIn,
    idp: MockIdp,
    upstream: Recorder,
    /// Kept alive for the front proxy.
    _gatehouse: TestProxy,
    front: FrontProcess,
    port: u16,
    client: TestClient,
}

// === impl Stack ===

impl Stack {
    /// Starts everything, or returns `None` when the front proxy's binary is
    /// missing (and that is allowed).
    async fn start(front: Front, sign_in: SignIn, test: &str) -> Option<Self> {
        Self::start_with(front, sign_in, test, str::to_owned).await
    }

    /// [`Stack::start`], with `tweak` editing the rendered front config.
    async fn start_with(
        front: Front,
        sign_in: SignIn,
        test: &str,
        tweak: impl Fn(&str) -> String,
    ) -> Option<Self> {
        Self::start_configured(front, sign_in, test, tweak, "").await
    }

    /// [`Stack::start_with`], with `gatehouse_extra` added to gatehouse's
    /// config.
    async fn start_configured(
        front: Front,
        sign_in: SignIn,
        test: &str,
        tweak: impl Fn(&str) -> String,
        gatehouse_extra: &str,
    ) -> Option<Self> {
        let bin = match front {
            Front::Nginx => Some(find_binary(NGINX, test)?),
            Front::Caddy => Some(find_binary(CADDY, test)?),
            Front::Traefik => None,
        };
        // the front proxy's port goes into gatehouse's config (central
        // callback URL) before the front binds it; retry if it was taken
        for attempt in 1..=3 {
            let port = free_port();
            let idp = MockIdp::start(IdpOptions {
                redirect_uris: redirect_uris(sign_in, port),
                ..IdpOptions::auto_approving("alice")
            })
            .await;
            let upstream = Recorder::start().await;
            let toml = format!("{}{gatehouse_extra}", gatehouse_toml(sign_in, port));
            let gatehouse = TestProxy::start(&toml, &idp, &upstream).await;
            let g = gatehouse.host();
            let u = upstream.addr().to_string();
            let started = match (front, &bin) {
                (Front::Nginx, Some(bin)) => {
                    let conf = tweak(&render_nginx(port, &g, &u));
                    Nginx::start(bin, &conf, port).await.map(FrontProcess::Real)
                }
                (Front::Caddy, Some(bin)) => {
                    let conf = tweak(&render_caddy(port, &g, &u));
                    Caddy::start(bin, &conf, port).await.map(FrontProcess::Real)
                }
                _ => {
                    let yml = tweak(&render_traefik(&g, &u));
                    TraefikSim::start(TraefikConfig::from_dynamic_yml(&yml), port)
                        .await
                        .map(FrontProcess::Sim)
                        .map_err(|e| match e.kind() {
                            std::io::ErrorKind::AddrInUse => StartError::PortTaken(e.to_string()),
                            _ => StartError::Failed(e.to_string()),
                        })
                }
            };
            match started {
                Ok(front) => {
                    return Some(Self {
                        sign_in,
                        idp,
                        upstream,
                        _gatehouse: gatehouse,
                        front,
                        port,
                        client: TestClient::new().with_resolve(&[APP1, APP2, AUTH]),
                    });
                }
                Err(StartError::PortTaken(why)) if attempt < 3 => {
                    eprintln!("{test}: port {port} was taken, trying another: {why}");
                }
                Err(e) => panic!("{front:?} did not start: {e:?}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// `http://{host}:{front port}{path}`
    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    /// The callback URL gatehouse should give the provider for a login
    /// started on `host`.
    fn callback_url(&self, host: &str) -> String {
        match self.sign_in {
            SignIn::PerHost => self.url(host, "/oauth2/callback"),
            SignIn::Central => self.url(AUTH, "/oauth2/callback"),
        }
    }

    /// The front proxy's logs, for assertion messages.
    fn front_logs(&self) -> String {
        match &self.front {
            FrontProcess::Real(d) => d.logs(),
            FrontProcess::Sim(sim) => format!("(Traefik stand-in on port {}, no logs)", sim.port()),
        }
    }

    fn alice_sub(&self) -> String {
        let users = &self.idp.options().users;
        users
            .iter()
            .find(|u| u.username == "alice")
            .unwrap()
            .sub
            .clone()
    }

    /// A browser visit to `path` on `host` while signed out: the redirects
    /// to the provider and back, each asserted, ending on the page itself.
    /// Returns that page.
    async fn browser_login(&self, host: &str, path: &str, extra: &[(&str, &str)]) -> TestResponse {
        let asked = self.url(host, path);
        let authorize = self.until_provider(&asked, extra).await;
        let redirect_uri = query(&authorize, "redirect_uri");
        assert_eq!(
            redirect_uri,
            self.callback_url(host),
            "the provider was given the wrong callback URL"
        );
        let at_idp = self.client.get(authorize.as_str()).await;
        assert!(
            at_idp.status.is_redirection(),
            "provider answered {}: {}",
            at_idp.status,
            at_idp.text()
        );
        let callback = at_idp.location_url().unwrap();
        assert!(
            callback.as_str().starts_with(&self.callback_url(host)),
            "provider sent the browser to {callback}"
        );
        let back = self.client.get(callback.as_str()).await;
        assert!(
            back.status.is_redirection(),
            "callback through the front proxy answered {}: {}\n{}",
            back.status,
            back.text(),
            self.front_logs()
        );
        assert_eq!(
            back.location_url().unwrap(),
            Url::parse(&asked).unwrap(),
            "after login the browser must land on the page first asked for"
        );
        let page = self.client.get(&asked).await;
        assert_eq!(
            page.status,
            StatusCode::OK,
            "signed in, {asked} answered: {}\n{}",
            page.text(),
            self.front_logs()
        );
        page
    }

    /// GETs `url` as a browser and follows front-local redirects until one
    /// leaves for the provider's `/authorize`; returns that URL.
    async fn until_provider(&self, url: &str, extra: &[(&str, &str)]) -> Url {
        let mut resp = self.client.get_with(url, extra).await;
        for _hop in 0..4 {
            assert!(
                resp.status.is_redirection(),
                "signed out, a browser at {} should be redirected, got {}: {}\n{}",
                resp.url,
                resp.status,
                resp.text(),
                self.front_logs()
            );
            let next = resp.location_url().unwrap();
            if next
                .as_str()
                .starts_with(&format!("{}/authorize", self.idp.base_url()))
            {
                return next;
            }
            resp = self.client.get(next.as_str()).await;
        }
        panic!(
            "too many redirects before the provider, last at {}",
            resp.url
        )
    }

    /// Asserts the upstream's last request was `path` on `host` from alice.
    fn assert_upstream_saw_alice(&self, host: &str, path: &str) {
        let seen = self.upstream.last().expect("the upstream saw no request");
        assert_eq!(seen.uri.path_and_query().unwrap().as_str(), path);
        assert_eq!(
            seen.header("host"),
            Some(format!("{host}:{}", self.port).as_str())
        );
        assert_eq!(
            seen.header_all("x-forwarded-user"),
            [self.alice_sub().as_str()]
        );
        assert_eq!(seen.header_all("x-forwarded-email"), ["alice@example.com"]);
        assert_eq!(seen.header_all("x-forwarded-preferred-username"), ["alice"]);
        assert_eq!(seen.header_all("x-forwarded-groups"), ["admins,staff"]);
    }
}

fn query(url: &Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{url} has no `{key}`"))
}

// === rendering the deploy configs ===

/// The callback URLs registered at the provider: those the front proxy's
/// hosts answer on.
fn redirect_uris(sign_in: SignIn, port: u16) -> Vec<String> {
    let hosts = match sign_in {
        SignIn::PerHost => vec![APP1, APP2],
        SignIn::Central => vec![AUTH],
    };
    hosts
        .into_iter()
        .map(|h| format!("http://{h}:{port}/oauth2/callback"))
        .collect()
}

fn gatehouse_toml(sign_in: SignIn, port: u16) -> String {
    let redirect_url = match sign_in {
        SignIn::PerHost => "/oauth2/callback".to_owned(),
        SignIn::Central => format!("http://{AUTH}:{port}/oauth2/callback"),
    };
    format!(
        "redirect_url = \"{redirect_url}\"\n\
         whitelist_domain = [\".gatehouse.test:*\"]\n\
         cookie_domain = \".gatehouse.test\"\n"
    )
}

fn render_nginx(port: u16, gatehouse: &str, upstream: &str) -> String {
    render(
        &deploy_file("nginx/gatehouse.conf"),
        &[
            ("listen 80;", &format!("listen 127.0.0.1:{port};")),
            (
                "server_name app.example.com;",
                &format!("server_name {APP1} {APP2};"),
            ),
            (
                "server_name auth.example.com;",
                &format!("server_name {AUTH};"),
            ),
            ("127.0.0.1:4180", gatehouse),
            ("127.0.0.1:8080", upstream),
        ],
    )
}

fn render_caddy(port: u16, gatehouse: &str, upstream: &str) -> String {
    render(
        &deploy_file("caddy/Caddyfile"),
        &[
            (
                "\napp.example.com {",
                &format!("\nhttp://{APP1}:{port}, http://{APP2}:{port} {{"),
            ),
            (
                "\nauth.example.com {",
                &format!("\nhttp://{AUTH}:{port} {{"),
            ),
            ("127.0.0.1:4180", gatehouse),
            ("127.0.0.1:8080", upstream),
        ],
    )
}

fn render_traefik(gatehouse: &str, upstream: &str) -> String {
    render(
        &deploy_file("traefik/dynamic.yml"),
        &[("127.0.0.1:4180", gatehouse), ("127.0.0.1:8080", upstream)],
    )
}

/// The nginx config plus `/admin/`, open to the `admins` group only, made
/// as the deploy file's comment says: its own internal auth location with
/// the query on `proxy_pass`, and a copy of `location /`.
fn with_nginx_admin_location(conf: &str) -> String {
    let auth = config_block(conf, "location = /oauth2/auth {");
    let proxy_pass = auth
        .lines()
        .find(|l| l.trim_start().starts_with("proxy_pass "))
        .unwrap()
        .trim()
        .trim_end_matches(';')
        .to_owned();
    let admins_auth = render(
        auth,
        &[
            (
                "location = /oauth2/auth {",
                "location = /oauth2/auth/admins {",
            ),
            (
                &proxy_pass,
                &format!("{proxy_pass}/oauth2/auth?allowed_groups=admins"),
            ),
        ],
    );
    let root = config_block(conf, "location / {");
    let admin = render(
        root,
        &[
            ("location / {", "location /admin/ {"),
            (
                "auth_request /oauth2/auth;",
                "auth_request /oauth2/auth/admins;",
            ),
        ],
    );
    conf.replacen(
        root,
        &format!("{root}\n\n    {admins_auth}\n\n    {admin}"),
        1,
    )
}

/// The Caddyfile plus `handle /admin/*`, open to the `admins` group only:
/// a copy of the protected `handle` with the narrowing on the forward_auth
/// `uri`, as the deploy file's comment says.
fn with_caddy_admin_handle(conf: &str) -> String {
    let handle = config_block(conf, "\thandle {");
    let admin = render(
        handle,
        &[
            ("\thandle {", "\thandle /admin/* {"),
            (
                "uri /oauth2/forward-auth",
                "uri /oauth2/forward-auth?allowed_groups=admins",
            ),
        ],
    );
    conf.replacen(handle, &format!("{admin}\n\n{handle}"), 1)
}

// === the checks, each run through every front proxy ===

async fn login_lands_on_the_page_first_asked_for(front: Front, sign_in: SignIn, test: &str) {
    let Some(s) = Stack::start(front, sign_in, test).await else {
        return;
    };
    s.browser_login(APP1, PAGE, &[]).await;
    s.assert_upstream_saw_alice(APP1, PAGE);
    // the session cookie is shared by the whole domain
    let session = s.client.cookie(APP2, SESSION_COOKIE);
    assert!(session.is_some(), "no session cookie for {APP2}");
    assert_eq!(s.idp.token_requests().len(), 1);
}

async fn client_identity_headers_never_reach_the_upstream(front: Front, test: &str) {
    let Some(s) = Stack::start(front, SignIn::PerHost, test).await else {
        return;
    };
    let mut spoofs = vec![
        ("X-Forwarded-User", "mallory"),
        ("x-FORWARDED-user", "mallory"),
        ("X-Forwarded-Email", "mallory@evil.example"),
        ("X-Forwarded-Preferred-Username", "mallory"),
        ("X-Forwarded-Groups", "admins,mallory"),
        ("X-Forwarded-Access-Token", "mallory-token"),
        ("X-Auth-Request-User", "mallory"),
        ("x-auth-request-email", "mallory@evil.example"),
        ("X-Auth-Request-Groups", "mallory"),
        ("X-Auth-Request-Access-Token", "mallory-token"),
        ("Remote-User", "mallory"),
        ("X-Remote-User", "mallory"),
        ("X_Forwarded_User", "mallory"),
        ("x_forwarded_email", "mallory@evil.example"),
        ("X_AUTH_REQUEST_USER", "mallory"),
    ];
    if front != Front::Traefik {
        // Traefik cannot remove headers by pattern (see dynamic.yml)
        spoofs.extend([
            ("X_Forwarded-User", "mallory"),
            ("x-auth_request-user", "mallory"),
        ]);
    }

    // signed out, nothing reaches the upstream at all
    let resp = s.client.get_with(&s.url(APP1, "/"), &spoofs).await;
    assert_eq!(resp.status, StatusCode::FOUND, "{}", resp.text());
    assert_eq!(s.upstream.count(), 0);

    s.browser_login(APP1, "/", &[]).await;
    let resp = s.client.get_with(&s.url(APP1, "/spoof"), &spoofs).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.assert_upstream_saw_alice(APP1, "/spoof");
    let seen = s.upstream.last().unwrap();
    for (name, value) in &seen.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("mallory"),
            "{front:?} let a client's `{name}: {value}` reach the upstream; it saw {:?}",
            seen.headers
        );
    }
    // every value above was refused, not only the ones with an obvious name
    for (name, _) in &spoofs {
        if !name.eq_ignore_ascii_case("x-forwarded-user")
            && !name.eq_ignore_ascii_case("x-forwarded-email")
            && !name.eq_ignore_ascii_case("x-forwarded-preferred-username")
            && !name.eq_ignore_ascii_case("x-forwarded-groups")
        {
            assert!(
                seen.header(name).is_none_or(str::is_empty),
                "{front:?}: the upstream saw `{name}`"
            );
        }
    }
}

/// gatehouse's own cookies (session, chunks, login state) never reach the
/// application, its own cookies do, and a claim header a client sends is
/// cleared (issue 9, item 23).
async fn the_app_gets_its_own_cookies_and_never_gatehouses(front: Front, test: &str) {
    let Some(s) = Stack::start(front, SignIn::PerHost, test).await else {
        return;
    };
    s.browser_login(APP1, "/", &[]).await;
    let jar = s.client.cookie_header_for(&s.url(APP1, "/")).unwrap();
    assert!(jar.contains(SESSION_COOKIE), "{jar}");
    let cookie = format!("app_theme=dark; {jar}; {SESSION_COOKIE}_csrf_abc=old; app_lang=en");
    let spoofs = [
        ("cookie", cookie.as_str()),
        ("X-Forwarded-Name", "mallory"),
        ("X-Forwarded-Email-Verified", "mallory"),
    ];
    let resp = s.client.get_with(&s.url(APP1, "/cookies"), &spoofs).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.assert_upstream_saw_alice(APP1, "/cookies");
    let seen = s.upstream.last().unwrap();
    assert_eq!(
        seen.header_all("cookie"),
        ["app_theme=dark; app_lang=en"],
        "{front:?}: the application's cookies"
    );
    for name in ["x-forwarded-name", "x-forwarded-email-verified"] {
        assert!(
            seen.header(name).is_none_or(str::is_empty),
            "{front:?}: the upstream saw a client's `{name}`"
        );
    }

    // only gatehouse's cookies: the application gets none
    let resp = s
        .client
        .get_with(&s.url(APP1, "/only-ours"), &[("cookie", jar.as_str())])
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    s.assert_upstream_saw_alice(APP1, "/only-ours");
    let seen = s.upstream.last().unwrap();
    assert!(
        seen.header_all("cookie").iter().all(|c| c.is_empty()),
        "{front:?}: the application saw {:?}",
        seen.header_all("cookie")
    );
}

/// The forward-auth checks answer the front proxy only, never a browser
/// (with pass_access_token their answer carries the access token; here the
/// cleaned cookies), while the provider still reaches the back-channel
/// logout endpoint (issue 9, item 23).
async fn browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout(
    front: Front,
    test: &str,
) {
    let Some(s) = Stack::start(front, SignIn::PerHost, test).await else {
        return;
    };
    s.browser_login(APP1, "/", &[]).await;
    for path in ["/oauth2/auth", "/oauth2/forward-auth"] {
        let resp = s.client.get_api(&s.url(APP1, path)).await;
        for name in [
            "x-auth-request-user",
            "x-forwarded-user",
            "x-auth-request-cookie",
            "cookie",
        ] {
            assert!(
                resp.header(name).is_none(),
                "{front:?}: a browser got gatehouse's answer to {path} ({}): {:?}",
                resp.status,
                resp.headers
            );
        }
    }
    let before = s.upstream.count();
    let resp = s
        .client
        .post_form(
            &s.url(APP1, "/oauth2/backchannel-logout"),
            &[("logout_token", "not-a-jwt")],
        )
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(resp.text().contains("invalid_request"), "{}", resp.text());
    assert_eq!(s.upstream.count(), before, "the logout went to the app");
}

async fn api_calls_get_401_and_forged_forwarding_headers_do_not_move_the_sign_in(
    front: Front,
    test: &str,
) {
    let Some(s) = Stack::start(front, SignIn::PerHost, test).await else {
        return;
    };
    // an API call (not a browser navigation) is told, not redirected
    let api = s.client.get_api(&s.url(APP1, "/api/items?x=1")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{}", api.text());
    assert!(api.location().is_none());
    let post = s
        .client
        .post_form(&s.url(APP1, "/api/items"), &[("a", "1")])
        .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED, "{}", post.text());
    assert_eq!(s.upstream.count(), 0);

    // a browser that forges where it came from still signs in on the host
    // it is on and lands on the page it asked for
    let forged = [
        ("X-Forwarded-Host", "evil.gatehouse.test"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Uri", "/elsewhere"),
        ("X-Forwarded-Method", "POST"),
        ("X-Original-URL", "http://evil.gatehouse.test/elsewhere"),
    ];
    s.browser_login(APP1, PAGE, &forged).await;
    s.assert_upstream_saw_alice(APP1, PAGE);
}

async fn second_host_shares_the_session_and_sign_out_ends_it(
    front: Front,
    sign_in: SignIn,
    test: &str,
) {
    let Some(s) = Stack::start(front, sign_in, test).await else {
        return;
    };
    s.browser_login(APP1, "/one", &[]).await;
    let logins = s.idp.authorize_requests().len();

    let two = s.client.get(&s.url(APP2, "/two?b=2")).await;
    assert_eq!(two.status, StatusCode::OK, "{}", two.text());
    assert_eq!(
        s.idp.authorize_requests().len(),
        logins,
        "app2 asked for a login"
    );
    s.assert_upstream_saw_alice(APP2, "/two?b=2");

    let out = s.client.get(&s.url(APP1, "/oauth2/sign_out")).await;
    assert!(
        out.status.is_redirection(),
        "{}: {}",
        out.status,
        out.text()
    );
    let cleared = out
        .set_cookie(SESSION_COOKIE)
        .expect("sign-out clears the cookie");
    assert_eq!(cleared.value(), "");
    assert_eq!(cleared.domain(), Some("gatehouse.test"));
    assert!(s.client.cookie(APP1, SESSION_COOKIE).is_none());
    // the provider's session ends too, and it sends the browser back to app1
    let to_idp = out.location_url().unwrap();
    assert!(
        to_idp
            .as_str()
            .starts_with(&format!("{}/logout", s.idp.base_url()))
    );
    // without `rd`, the provider returns to gatehouse's signed-out page
    assert_eq!(
        query(&to_idp, "post_logout_redirect_uri"),
        s.url(APP1, "/oauth2/signed_out")
    );

    let count = s.upstream.count();
    for host in [APP1, APP2] {
        let again = s.client.get(&s.url(host, "/after")).await;
        assert_eq!(again.status, StatusCode::FOUND, "{host}: {}", again.text());
        let api = s.client.get_api(&s.url(host, "/after")).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{host}");
    }
    assert_eq!(
        s.upstream.count(),
        count,
        "signed out, the upstream was reached"
    );
}

// === nginx ===

#[tokio::test]
async fn nginx_login_lands_on_the_page_first_asked_for() {
    let test = "nginx_login_lands_on_the_page_first_asked_for";
    login_lands_on_the_page_first_asked_for(Front::Nginx, SignIn::PerHost, test).await;
}

#[tokio::test]
async fn nginx_login_through_a_central_sign_in_host() {
    let test = "nginx_login_through_a_central_sign_in_host";
    login_lands_on_the_page_first_asked_for(Front::Nginx, SignIn::Central, test).await;
}

#[tokio::test]
async fn nginx_client_identity_headers_never_reach_the_upstream() {
    let test = "nginx_client_identity_headers_never_reach_the_upstream";
    client_identity_headers_never_reach_the_upstream(Front::Nginx, test).await;
}

#[tokio::test]
async fn nginx_api_calls_get_401_and_forged_forwarding_headers_are_ignored() {
    let test = "nginx_api_calls_get_401_and_forged_forwarding_headers_are_ignored";
    api_calls_get_401_and_forged_forwarding_headers_do_not_move_the_sign_in(Front::Nginx, test)
        .await;
}

#[tokio::test]
async fn nginx_second_host_shares_the_session_and_sign_out_ends_it() {
    let test = "nginx_second_host_shares_the_session_and_sign_out_ends_it";
    second_host_shares_the_session_and_sign_out_ends_it(Front::Nginx, SignIn::PerHost, test).await;
}

#[tokio::test]
async fn nginx_central_sign_in_host_shares_the_session_and_sign_out_ends_it() {
    let test = "nginx_central_sign_in_host_shares_the_session_and_sign_out_ends_it";
    second_host_shares_the_session_and_sign_out_ends_it(Front::Nginx, SignIn::Central, test).await;
}

#[tokio::test]
async fn nginx_location_narrowed_to_a_group_refuses_others_with_403() {
    let test = "nginx_location_narrowed_to_a_group_refuses_others_with_403";
    let Some(s) = Stack::start_with(
        Front::Nginx,
        SignIn::PerHost,
        test,
        with_nginx_admin_location,
    )
    .await
    else {
        return;
    };
    s.idp.set_knobs(|k| k.auto_approve = Some("bob".into()));
    s.browser_login(APP1, "/", &[]).await;
    let admin = s.client.get(&s.url(APP1, "/admin/panel")).await;
    assert_eq!(
        admin.status,
        StatusCode::FORBIDDEN,
        "bob (staff) got {}",
        admin.status
    );
    assert!(s.upstream.requests_to("/admin/panel").is_empty());

    s.client.clear_cookies();
    s.idp.set_knobs(|k| k.auto_approve = Some("alice".into()));
    s.browser_login(APP1, "/admin/panel", &[]).await;
    s.assert_upstream_saw_alice(APP1, "/admin/panel");
}

/// gatehouse does not re-issue cookies on `/oauth2/auth` today; this checks
/// the nginx side of the contract with a stand-in that does.
#[tokio::test]
async fn nginx_passes_a_cookie_reissued_by_the_auth_answer_back_to_the_browser() {
    let Some(bin) = find_binary(
        NGINX,
        "nginx_passes_a_cookie_reissued_by_the_auth_answer_back_to_the_browser",
    ) else {
        return;
    };
    let upstream = Recorder::start().await;
    let stub = StubServer::start(
        StatusCode::ACCEPTED,
        &[
            ("x-auth-request-user", "stub-user"),
            ("x-auth-request-email", "stub@example.com"),
            ("x-auth-request-preferred-username", "stub"),
            ("x-auth-request-groups", "g1,g2"),
            (
                "set-cookie",
                "_gatehouse=reissued; Path=/; HttpOnly; SameSite=Lax",
            ),
        ],
    )
    .await;
    let port = free_port();
    let conf = render_nginx(port, &stub.host(), &upstream.addr().to_string());
    let nginx = Nginx::start(&bin, &conf, port).await.unwrap();
    let client = TestClient::new().with_resolve(&[APP1]);
    let resp = client
        .get(&format!("http://{APP1}:{}/page", nginx.port()))
        .await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{}\n{}",
        resp.text(),
        nginx.logs()
    );
    assert_eq!(
        resp.header("set-cookie"),
        Some("_gatehouse=reissued; Path=/; HttpOnly; SameSite=Lax")
    );
    let seen = upstream.last().unwrap();
    assert_eq!(seen.header("x-forwarded-user"), Some("stub-user"));
    assert_eq!(seen.header("x-forwarded-email"), Some("stub@example.com"));
    assert_eq!(seen.header("x-forwarded-preferred-username"), Some("stub"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("g1,g2"));
    assert!(seen.header("x-auth-request-user").is_none());
}

// === routes: gatehouse decides per path, the front config has no per-path rule ===

/// A public path, a public POST-only path and a path for the admins group,
/// in gatehouse's config only.
const ROUTES: &str = "
[[routes]]
path = \"/public\"
policy = \"public\"

[[routes]]
path = \"/hooks\"
methods = [\"POST\"]
policy = \"public\"

[[routes]]
path = \"/admin\"
allowed_groups = [\"admins\"]
";

/// Identity headers a client sends, which must never reach the app.
const FORGED: [(&str, &str); 5] = [
    ("x-forwarded-user", "forged"),
    ("x-forwarded-email", "forged@example.com"),
    ("x-forwarded-groups", "admins"),
    ("x-forwarded-preferred-username", "forged"),
    ("x-auth-request-user", "forged"),
];

/// Asserts the upstream's last request was `path` (as sent), with no
/// identity and none of gatehouse's cookies.
fn assert_upstream_saw_nobody(s: &Stack, path: &str, what: &str) {
    let seen = s
        .upstream
        .last()
        .unwrap_or_else(|| panic!("{what}: the upstream saw nothing\n{}", s.front_logs()));
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), path, "{what}");
    for (name, value) in &seen.headers {
        let value = value.to_str().unwrap_or("");
        assert!(
            !value.contains("forged") && !value.contains("admins"),
            "{what}: {name}: {value} reached the app: {:?}",
            seen.headers
        );
    }
    for name in [
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
    ] {
        assert!(
            seen.header(name).is_none_or(str::is_empty),
            "{what}: {name} reached the app: {:?}",
            seen.headers
        );
    }
    assert!(
        seen.header_all("cookie")
            .iter()
            .all(|c| !c.contains(SESSION_COOKIE)),
        "{what}: the session cookie reached the app: {:?}",
        seen.headers
    );
}

async fn public_and_group_paths_are_decided_by_gatehouses_routes(front: Front, test: &str) {
    let Some(s) =
        Stack::start_configured(front, SignIn::PerHost, test, str::to_owned, ROUTES).await
    else {
        return;
    };
    // signed out: the public path reaches the app, with no identity
    let page = s
        .client
        .get_with(&s.url(APP1, "/public/page?x=1"), &FORGED)
        .await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "signed out, /public: {}\n{}",
        page.text(),
        s.front_logs()
    );
    assert_upstream_saw_nobody(&s, "/public/page?x=1", "signed out, /public");
    // a public path for POST only: the front proxy must pass the method on
    let post = s
        .client
        .request(
            Method::POST,
            &s.url(APP1, "/hooks/in"),
            &[("content-type", "application/json")],
            Some(Bytes::from_static(b"{}")),
        )
        .await;
    assert_eq!(
        post.status,
        StatusCode::OK,
        "signed out, POST /hooks: {}\n{}",
        post.text(),
        s.front_logs()
    );
    assert_eq!(s.upstream.last().unwrap().method, Method::POST);
    assert_upstream_saw_nobody(&s, "/hooks/in", "POST /hooks");
    s.upstream.clear();
    let get = s.client.get_api(&s.url(APP1, "/hooks/in")).await;
    assert_eq!(get.status, StatusCode::UNAUTHORIZED, "GET /hooks");
    assert_eq!(s.upstream.count(), 0, "GET /hooks reached the app");

    // bob (staff) signs in: the admin area refuses him
    s.idp.set_knobs(|k| k.auto_approve = Some("bob".into()));
    s.browser_login(APP1, "/", &[]).await;
    s.upstream.clear();
    let admin = s.client.get(&s.url(APP1, "/admin/panel")).await;
    assert_eq!(
        admin.status,
        StatusCode::FORBIDDEN,
        "bob at /admin: {}",
        admin.text()
    );
    // signed in, the public path still sends the app nobody
    let page = s.client.get_with(&s.url(APP1, "/public/x"), &FORGED).await;
    assert_eq!(page.status, StatusCode::OK, "bob at /public");
    assert_upstream_saw_nobody(&s, "/public/x", "signed in, /public");
    // paths that could be read as /public by one server and /admin by
    // another: refused, never on the public route
    s.upstream.clear();
    for path in [
        "/public/../admin/panel",
        "/public/%2e%2e/admin/panel",
        "/public/..%2fadmin/panel",
        "/public%2f..%2fadmin/panel",
    ] {
        let resp = s.client.get(&s.url(APP1, path)).await;
        assert!(
            !resp.status.is_success(),
            "{path}: {}\n{}",
            resp.status,
            s.front_logs()
        );
    }
    assert_eq!(
        s.upstream.count(),
        0,
        "reached the app: {:?}",
        s.upstream
            .requests()
            .iter()
            .map(|r| r.uri.to_string())
            .collect::<Vec<_>>()
    );

    // alice (admins), signed out, is sent to sign in and lands on the page
    s.client.clear_cookies();
    s.idp.set_knobs(|k| k.auto_approve = Some("alice".into()));
    s.browser_login(APP1, "/admin/panel", &[]).await;
    s.assert_upstream_saw_alice(APP1, "/admin/panel");
}

#[tokio::test]
async fn nginx_public_and_group_paths_are_decided_by_gatehouses_routes() {
    let test = "nginx_public_and_group_paths_are_decided_by_gatehouses_routes";
    public_and_group_paths_are_decided_by_gatehouses_routes(Front::Nginx, test).await;
}

#[tokio::test]
async fn caddy_public_and_group_paths_are_decided_by_gatehouses_routes() {
    let test = "caddy_public_and_group_paths_are_decided_by_gatehouses_routes";
    public_and_group_paths_are_decided_by_gatehouses_routes(Front::Caddy, test).await;
}

#[tokio::test]
async fn traefik_public_and_group_paths_are_decided_by_gatehouses_routes() {
    let test = "traefik_public_and_group_paths_are_decided_by_gatehouses_routes";
    public_and_group_paths_are_decided_by_gatehouses_routes(Front::Traefik, test).await;
}

// === Caddy ===

#[tokio::test]
async fn caddy_login_lands_on_the_page_first_asked_for() {
    let test = "caddy_login_lands_on_the_page_first_asked_for";
    login_lands_on_the_page_first_asked_for(Front::Caddy, SignIn::PerHost, test).await;
}

#[tokio::test]
async fn caddy_login_through_a_central_sign_in_host() {
    let test = "caddy_login_through_a_central_sign_in_host";
    login_lands_on_the_page_first_asked_for(Front::Caddy, SignIn::Central, test).await;
}

#[tokio::test]
async fn caddy_client_identity_headers_never_reach_the_upstream() {
    let test = "caddy_client_identity_headers_never_reach_the_upstream";
    client_identity_headers_never_reach_the_upstream(Front::Caddy, test).await;
}

#[tokio::test]
async fn caddy_api_calls_get_401_and_forged_forwarding_headers_are_ignored() {
    let test = "caddy_api_calls_get_401_and_forged_forwarding_headers_are_ignored";
    api_calls_get_401_and_forged_forwarding_headers_do_not_move_the_sign_in(Front::Caddy, test)
        .await;
}

#[tokio::test]
async fn caddy_second_host_shares_the_session_and_sign_out_ends_it() {
    let test = "caddy_second_host_shares_the_session_and_sign_out_ends_it";
    second_host_shares_the_session_and_sign_out_ends_it(Front::Caddy, SignIn::PerHost, test).await;
}

#[tokio::test]
async fn caddy_central_sign_in_host_shares_the_session_and_sign_out_ends_it() {
    let test = "caddy_central_sign_in_host_shares_the_session_and_sign_out_ends_it";
    second_host_shares_the_session_and_sign_out_ends_it(Front::Caddy, SignIn::Central, test).await;
}

#[tokio::test]
async fn caddy_route_narrowed_to_a_group_refuses_others_with_403() {
    let test = "caddy_route_narrowed_to_a_group_refuses_others_with_403";
    let Some(s) =
        Stack::start_with(Front::Caddy, SignIn::PerHost, test, with_caddy_admin_handle).await
    else {
        return;
    };
    s.idp.set_knobs(|k| k.auto_approve = Some("bob".into()));
    s.browser_login(APP1, "/", &[]).await;
    let admin = s.client.get(&s.url(APP1, "/admin/panel")).await;
    assert_eq!(
        admin.status,
        StatusCode::FORBIDDEN,
        "bob (staff) got {}",
        admin.status
    );
    assert!(s.upstream.requests_to("/admin/panel").is_empty());

    s.client.clear_cookies();
    s.idp.set_knobs(|k| k.auto_approve = Some("alice".into()));
    s.browser_login(APP1, "/admin/panel", &[]).await;
    s.assert_upstream_saw_alice(APP1, "/admin/panel");
}

// === Traefik (ForwardAuth protocol, stand-in) ===

#[tokio::test]
async fn traefik_login_lands_on_the_page_first_asked_for() {
    let test = "traefik_login_lands_on_the_page_first_asked_for";
    login_lands_on_the_page_first_asked_for(Front::Traefik, SignIn::PerHost, test).await;
}

#[tokio::test]
async fn traefik_login_through_a_central_sign_in_host() {
    let test = "traefik_login_through_a_central_sign_in_host";
    login_lands_on_the_page_first_asked_for(Front::Traefik, SignIn::Central, test).await;
}

#[tokio::test]
async fn traefik_client_identity_headers_never_reach_the_upstream() {
    let test = "traefik_client_identity_headers_never_reach_the_upstream";
    client_identity_headers_never_reach_the_upstream(Front::Traefik, test).await;
}

#[tokio::test]
async fn traefik_api_calls_get_401_and_forged_forwarding_headers_are_ignored() {
    let test = "traefik_api_calls_get_401_and_forged_forwarding_headers_are_ignored";
    api_calls_get_401_and_forged_forwarding_headers_do_not_move_the_sign_in(Front::Traefik, test)
        .await;
}

#[tokio::test]
async fn traefik_second_host_shares_the_session_and_sign_out_ends_it() {
    let test = "traefik_second_host_shares_the_session_and_sign_out_ends_it";
    second_host_shares_the_session_and_sign_out_ends_it(Front::Traefik, SignIn::PerHost, test)
        .await;
}

#[tokio::test]
async fn nginx_app_gets_its_own_cookies_and_never_gatehouses() {
    let test = "nginx_app_gets_its_own_cookies_and_never_gatehouses";
    the_app_gets_its_own_cookies_and_never_gatehouses(Front::Nginx, test).await;
}

#[tokio::test]
async fn nginx_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout() {
    let test = "nginx_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout";
    browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout(Front::Nginx, test)
        .await;
}

#[tokio::test]
async fn caddy_app_gets_its_own_cookies_and_never_gatehouses() {
    let test = "caddy_app_gets_its_own_cookies_and_never_gatehouses";
    the_app_gets_its_own_cookies_and_never_gatehouses(Front::Caddy, test).await;
}

#[tokio::test]
async fn caddy_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout() {
    let test = "caddy_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout";
    browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout(Front::Caddy, test)
        .await;
}

#[tokio::test]
async fn traefik_app_gets_its_own_cookies_and_never_gatehouses() {
    let test = "traefik_app_gets_its_own_cookies_and_never_gatehouses";
    the_app_gets_its_own_cookies_and_never_gatehouses(Front::Traefik, test).await;
}

#[tokio::test]
async fn traefik_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout() {
    let test = "traefik_browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout";
    browsers_cannot_ask_the_checks_but_the_provider_reaches_backchannel_logout(
        Front::Traefik,
        test,
    )
    .await;
}

/// The docker compose labels say what `dynamic.yml` says.
#[test]
fn traefik_compose_labels_match_the_dynamic_config() {
    let yml = deploy_file("traefik/dynamic.yml");
    let compose = deploy_file("traefik/docker-compose.yml");
    let dynamic = TraefikConfig::from_dynamic_yml(&yml);
    let label = |key: &str| -> String {
        compose
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix('='))
            .unwrap_or_else(|| panic!("docker-compose.yml has no label {key}"))
            .to_owned()
    };
    let address = label("traefik.http.middlewares.gatehouse.forwardauth.address");
    assert_eq!(
        Url::parse(&address).unwrap().path(),
        Url::parse(&dynamic.address).unwrap().path()
    );
    assert_eq!(
        label("traefik.http.middlewares.gatehouse.forwardauth.trustForwardHeader"),
        "true"
    );
    assert_eq!(
        label("traefik.http.middlewares.gatehouse.forwardauth.authResponseHeaders"),
        dynamic.auth_response_headers.join(",")
    );
    for name in &dynamic.strip {
        label(&format!(
            "traefik.http.middlewares.gatehouse-strip.headers.customrequestheaders.{name}"
        ));
    }
    let rule = label("traefik.http.routers.gatehouse.rule");
    assert!(rule.contains(&format!("PathPrefix(`{}`)", dynamic.gatehouse_prefix)));
    // the forward-auth checks are never routed to gatehouse for a browser
    for path in ["/oauth2/auth", "/oauth2/forward-auth"] {
        assert!(
            dynamic.gatehouse_excluded.iter().any(|p| p == path),
            "{path}"
        );
    }
    for path in &dynamic.gatehouse_excluded {
        assert!(rule.contains(&format!("!Path(`{path}`)")), "{rule}");
    }
    assert_eq!(
        label("traefik.http.routers.app.middlewares"),
        "gatehouse-strip@docker,gatehouse@docker"
    );
}
