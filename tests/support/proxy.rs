//! `TestProxy`: the whole gatehouse server, in process, on `127.0.0.1:0`,
//! configured against a [`MockIdp`] and a [`Recorder`]; plus [`login`], the
//! browser login flow with every redirect asserted.
//!
//! Config is TOML built from a base table (see [`base_config`]) that tests
//! override key by key: TOML forbids duplicate keys, so extra TOML *replaces*
//! base keys (tables merge recursively) instead of being appended.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gatehouse::{Config, Server, StartupError};
use url::{Position, Url};

use super::client::{TestClient, TestResponse, empty};
use super::idp::MockIdp;
use super::upstream::Recorder;

/// A fixed 32-byte cookie secret, standard base64.
pub const TEST_COOKIE_SECRET: &str = "Z2F0ZWhvdXNlLXRlc3QtY29va2llLXNlY3JldC0zMmI=";
/// How long `start` waits for the proxy to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy. Dropping it drops the [`Server`]; call
/// [`TestProxy::shutdown`] for a graceful stop.
pub struct TestProxy {
    server: Server,
    addr: SocketAddr,
    toml: String,
    /// `http://127.0.0.1:PORT` of the mock IdP, when known (not for `start_raw`).
    idp_base: Option<String>,
}

/// Builds the config of a [`TestProxy`]; see [`TestProxy::builder`].
#[derive(Clone, Debug)]
pub struct ProxyBuilder {
    idp_issuer: String,
    idp_base: String,
    upstream_url: String,
    overrides: toml::Table,
    removed: Vec<String>,
    wait_ready: bool,
}

// === impl TestProxy ===

impl TestProxy {
    /// Base config plus `extra_toml` (whose keys replace base keys), started
    /// and ready. Panics if the config is invalid or startup fails.
    pub async fn start(extra_toml: &str, idp: &MockIdp, upstream: &Recorder) -> Self {
        Self::builder(idp, upstream).toml(extra_toml).start().await
    }

    /// A builder for configs that must remove base keys or skip the ready wait.
    pub fn builder(idp: &MockIdp, upstream: &Recorder) -> ProxyBuilder {
        ProxyBuilder {
            idp_issuer: idp.issuer(),
            idp_base: idp.base_url(),
            upstream_url: upstream.url(),
            overrides: toml::Table::new(),
            removed: Vec::new(),
            wait_ready: true,
        }
    }

    /// Starts from a complete TOML config in which `{PORT}` is replaced by
    /// the proxy's port, and waits until ready.
    pub async fn start_raw(toml_with_port: &str) -> Self {
        Self::try_start_raw(toml_with_port)
            .await
            .map_err(|e| format!("gatehouse failed to start: {}", error_chain(&e)))
            .unwrap()
    }

    /// Like [`TestProxy::start_raw`], but returns startup errors (config
    /// errors still panic: test `Config::from_toml_str` directly for those).
    pub async fn try_start_raw(toml_with_port: &str) -> Result<Self, StartupError> {
        let listener = bind();
        let port = listener.local_addr().unwrap().port();
        let toml = toml_with_port.replace("{PORT}", &port.to_string());
        let proxy = launch(listener, toml, None).await?;
        proxy.wait_ready().await;
        Ok(proxy)
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `127.0.0.1:PORT`, e.g. for a `Host` header or the cookie jar.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The exact TOML the proxy was started with.
    pub fn config_toml(&self) -> &str {
        &self.toml
    }

    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Graceful shutdown.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// Polls until the server reports ready and `GET /ready` answers 200.
    /// Panics after 10 s, saying what it saw.
    pub async fn wait_ready(&self) {
        let client = TestClient::new().with_timeout(Duration::from_secs(2));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let probe = self.probe(&client).await;
            if self.server.ready() && probe.as_deref() == Ok("200 OK") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse at {} not ready after {READY_TIMEOUT:?}: Server::ready() = {}, \
                 GET /ready -> {probe:?}; config:\n{}",
                self.addr,
                self.server.ready(),
                self.toml
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /ready`: the status, or the connection error.
    async fn probe(&self, client: &TestClient) -> Result<String, String> {
        let req = http::Request::get(self.url("/ready"))
            .body(empty())
            .unwrap();
        match client.send(req).await {
            Ok(resp) => Ok(resp.status().to_string()),
            Err(e) => Err(error_chain(&*e)),
        }
    }
}

// === impl ProxyBuilder ===

impl ProxyBuilder {
    /// Merges `extra` (a TOML document) over the config: its keys replace
    /// base keys and earlier overrides; tables merge recursively.
    pub fn toml(mut self, extra: &str) -> Self {
        let extra: toml::Table = extra
            .parse()
            .map_err(|e| format!("bad extra TOML: {e}\n{extra}"))
            .unwrap();
        merge(&mut self.overrides, extra);
        self
    }

    /// Sets one top-level key, e.g. `.set("pass_access_token", true)`.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.overrides.insert(key.to_owned(), value.into());
        self
    }

    /// Removes a top-level key from the final config (base or override).
    pub fn remove(mut self, key: &str) -> Self {
        self.removed.push(key.to_owned());
        self
    }

    /// Do not wait for readiness (e.g. the IdP is down on purpose).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// The config TOML for a proxy listening on `port`.
    pub fn render(&self, port: u16) -> String {
        let mut table = base_config(port, &self.idp_issuer, &self.upstream_url);
        merge(&mut table, self.overrides.clone());
        for key in &self.removed {
            table.remove(key);
        }
        let toml = toml::to_string(&table)
            .map_err(|e| format!("render config: {e}"))
            .unwrap();
        toml.replace("{PORT}", &port.to_string())
    }

    /// Starts the proxy; panics on any error.
    pub async fn start(self) -> TestProxy {
        self.try_start()
            .await
            .map_err(|e| format!("gatehouse failed to start: {}", error_chain(&e)))
            .unwrap()
    }

    /// Starts the proxy, returning startup errors (config errors panic).
    pub async fn try_start(self) -> Result<TestProxy, StartupError> {
        let listener = bind();
        let port = listener.local_addr().unwrap().port();
        let toml = self.render(port);
        let proxy = launch(listener, toml, Some(self.idp_base.clone())).await?;
        if self.wait_ready {
            proxy.wait_ready().await;
        }
        Ok(proxy)
    }
}

// === login ===

/// The browser login flow through a [`MockIdp`] that auto-approves: `GET
/// start_path` (→ IdP `/authorize`, via `/oauth2/start` if the proxy goes
/// there first), `GET` the authorize URL (→ `/oauth2/callback`), `GET` the
/// callback (→ `start_path`). Returns the callback response (its
/// `Set-Cookie`s are already in `client`'s jar). Panics on any deviation.
pub async fn login(client: &TestClient, proxy: &TestProxy, start_path: &str) -> TestResponse {
    let authorize = start_login(client, proxy, start_path).await;
    let callback = authorize_at_idp(client, proxy, &authorize, None).await;
    finish_login(client, proxy, &callback, start_path).await
}

/// [`login`], signing in as `user` through the IdP's login page link
/// (`/authorize/approve`), so the IdP need not auto-approve.
pub async fn login_as(
    client: &TestClient,
    proxy: &TestProxy,
    start_path: &str,
    user: &str,
) -> TestResponse {
    let authorize = start_login(client, proxy, start_path).await;
    let callback = authorize_at_idp(client, proxy, &authorize, Some(user)).await;
    finish_login(client, proxy, &callback, start_path).await
}

/// Login step 1: `GET start_path` and follow the proxy's own redirects until
/// one leaves for the IdP. Returns that authorize URL.
pub async fn start_login(client: &TestClient, proxy: &TestProxy, start_path: &str) -> Url {
    let proxy_origin = proxy_origin(proxy);
    let mut resp = client.get(&proxy.url(start_path)).await;
    for hop in 1..=4 {
        assert!(
            resp.status.is_redirection(),
            "login step 1 (hop {hop}): GET {} should redirect towards the IdP, got {}: {}",
            resp.url,
            resp.status,
            resp.text()
        );
        let next = resp
            .location_url()
            .expect("redirect without a usable Location");
        if next.origin() != proxy_origin {
            if let Some(idp) = &proxy.idp_base {
                assert!(
                    next.as_str().starts_with(&format!("{idp}/authorize")),
                    "login step 1: expected a redirect to the IdP's /authorize, got {next}"
                );
            }
            assert!(
                next.path().ends_with("/authorize"),
                "login step 1: not an authorize URL: {next}"
            );
            return next;
        }
        resp = client.get(next.as_str()).await;
    }
    panic!(
        "login step 1: too many proxy-local redirects, last at {}",
        resp.url
    )
}

/// Login step 2: `GET` the authorize URL at the IdP, which approves (as
/// `user` through the login page link, or by auto-approve when `None`) and
/// redirects back. Returns the proxy callback URL (with `code` and `state`),
/// not yet visited.
pub async fn authorize_at_idp(
    client: &TestClient,
    proxy: &TestProxy,
    authorize: &Url,
    user: Option<&str>,
) -> Url {
    let mut authorize = authorize.clone();
    if let Some(user) = user {
        authorize.set_path("/authorize/approve");
        authorize.query_pairs_mut().append_pair("user", user);
    }
    let resp = client.get(authorize.as_str()).await;
    assert!(
        resp.status != http::StatusCode::OK || !resp.text().contains("/authorize/approve"),
        "login step 2: the IdP showed its login page; \
         use IdpOptions::auto_approving(..) or login_as"
    );
    assert!(
        resp.status.is_redirection(),
        "login step 2: GET {authorize} should redirect to the callback, got {}: {}",
        resp.status,
        resp.text()
    );
    let callback = resp.location_url().expect("IdP redirect without Location");
    let has = |name: &str| callback.query_pairs().any(|(k, _)| k == name);
    assert!(
        !has("error"),
        "login step 2: the IdP returned an error: {callback}"
    );
    assert!(
        has("code") && has("state"),
        "login step 2: callback lacks code/state: {callback}"
    );
    assert_eq!(
        callback.origin(),
        proxy_origin(proxy),
        "login step 2: the IdP redirected somewhere other than the proxy: {callback}"
    );
    callback
}

/// Login step 3: `GET` the callback; the proxy exchanges the code, sets its
/// session cookie and redirects to `start_path`. Returns that response.
pub async fn finish_login(
    client: &TestClient,
    proxy: &TestProxy,
    callback: &Url,
    start_path: &str,
) -> TestResponse {
    let resp = client.get(callback.as_str()).await;
    assert!(
        resp.status.is_redirection(),
        "login step 3: GET {callback} should redirect to {start_path}, got {}: {}",
        resp.status,
        resp.text()
    );
    let back = resp
        .location_url()
        .expect("callback redirect without Location");
    let expected = Url::parse(&proxy.url(start_path)).unwrap();
    assert_eq!(
        &back[Position::BeforePath..],
        &expected[Position::BeforePath..],
        "login step 3: callback should return to the original path (got {back})"
    );
    assert_eq!(
        back.origin(),
        expected.origin(),
        "login step 3: callback left the proxy: {back}"
    );
    resp
}

fn proxy_origin(proxy: &TestProxy) -> url::Origin {
    Url::parse(&proxy.url("/")).unwrap().origin()
}

// === helpers ===

/// The base config: every key a test proxy needs.
pub fn base_config(port: u16, idp_issuer: &str, upstream_url: &str) -> toml::Table {
    let mut t = toml::Table::new();
    let mut set = |k: &str, v: toml::Value| {
        t.insert(k.to_owned(), v);
    };
    set("http_address", format!("127.0.0.1:{port}").into());
    set("upstream", vec![toml::Value::from(upstream_url)].into());
    set("provider", "oidc".into());
    set("oidc_issuer_url", idp_issuer.into());
    set("client_id", "gatehouse".into());
    set("client_secret", "s3cret".into());
    set(
        "redirect_url",
        format!("http://127.0.0.1:{port}/oauth2/callback").into(),
    );
    set(
        "cookie_secret",
        vec![toml::Value::from(TEST_COOKIE_SECRET)].into(),
    );
    set("cookie_secure", false.into());
    set("email_domain", vec![toml::Value::from("*")].into());
    t
}

fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (key, value) in extra {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => merge(existing, new),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn bind() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

async fn launch(
    listener: std::net::TcpListener,
    toml: String,
    idp_base: Option<String>,
) -> Result<TestProxy, StartupError> {
    let addr = listener.local_addr().unwrap();
    let config = Config::from_toml_str(&toml)
        .map_err(|e| format!("test config rejected: {}\n{toml}", error_chain(&e)))
        .unwrap();
    let server = Server::start(config, listener).await?;
    Ok(TestProxy {
        server,
        addr,
        toml,
        idp_base,
    })
}

/// `error: cause: cause…` for assertion messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
