//! End-to-end helpers: real front proxies started from the `deploy/` configs,
//! and a stand-in for Traefik's ForwardAuth.
//!
//! - [`find_binary`]: the one place that decides whether a front proxy test
//!   runs, is skipped (with one loud line saying how to install it), or fails
//!   (`GATEHOUSE_REQUIRE_E2E=1`, set by `.ci/run`).
//! - [`Nginx`] and [`Caddy`]: the real binaries as children, each in a temp
//!   directory of its own (config, logs, pid and temp files), on an ephemeral
//!   loopback port, killed and cleaned up on drop.
//! - [`deploy_file`] and [`render`]: the configs users copy, with the
//!   literal default addresses replaced by the test's ones. `render` insists
//!   each default is still there, so a deploy file that drifts from the tests
//!   fails them instead of silently testing something else.
//! - [`TraefikSim`]: Traefik cannot be installed here, so this server does
//!   what its ForwardAuth middleware does, driven by `deploy/traefik/dynamic.yml`.
//!
//! Every wait is bounded; nothing is left behind (no pid files outside the
//! temp directory, which is removed on drop).

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;

/// The env var that turns a missing binary into a failure.
pub const REQUIRE_E2E: &str = "GATEHOUSE_REQUIRE_E2E";
/// How long a front proxy may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A front proxy binary the e2e tests need.
#[derive(Clone, Copy, Debug)]
pub struct Binary {
    /// Command name, looked up on `PATH`.
    pub name: &'static str,
    /// Places to look besides `PATH` (`/usr/sbin` is not on every `PATH`).
    pub also: &'static [&'static str],
    /// How to install it.
    pub install: &'static str,
}

pub const NGINX: Binary = Binary {
    name: "nginx",
    also: &[
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ],
    install: "apt-get install -y nginx (Debian/Ubuntu), or see https://nginx.org/en/linux_packages.html",
};

pub const CADDY: Binary = Binary {
    name: "caddy",
    also: &["/usr/bin/caddy", "/usr/local/bin/caddy"],
    install: "apt-get install -y caddy (Debian 12+/Ubuntu 23.04+), or see https://caddyserver.com/docs/install",
};

/// Finds `bin`. When it is missing: with `GATEHOUSE_REQUIRE_E2E=1` this
/// panics (a CI run must not skip); otherwise it prints one loud line saying
/// what `test` skipped and how to install the binary, and returns `None`.
pub fn find_binary(bin: Binary, test: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(bin.name));
    let found = on_path
        .chain(bin.also.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if found.is_none() {
        let required = std::env::var(REQUIRE_E2E).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{REQUIRE_E2E}=1 but `{}` is not installed, so {test} cannot run; install it: {}",
            bin.name, bin.install
        );
        // straight to stderr, not `eprintln!`: libtest hides what the print
        // macros write in a passing test, and a skip must be seen
        let _ignored = writeln!(
            io::stderr(),
            "\n!!! SKIPPED {test}: `{}` not found on PATH or in {:?}. Install it to run this \
             end-to-end test: {} (set {REQUIRE_E2E}=1 to make this a failure) !!!\n",
            bin.name,
            bin.also,
            bin.install
        );
    }
    found
}

// === deploy files ===

/// A file under `deploy/`, e.g. `nginx/gatehouse.conf`.
pub fn deploy_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel);
    std::fs::read_to_string(&path)
        .map_err(|e| format!("read {}: {e}", path.display()))
        .unwrap()
}

/// Replaces every occurrence of each `from` with its `to`, in order. Panics
/// when a `from` does not occur: the deploy file changed, and the test must
/// change with it.
pub fn render(template: &str, replacements: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (from, to) in replacements {
        assert!(
            out.contains(from),
            "deploy config no longer contains `{from}`; update the e2e test with it"
        );
        out = out.replace(from, to);
    }
    out
}

/// The text of the block that starts with `opening` (which must end with
/// `{`), up to its matching `}`, e.g. `location / {` in an nginx config.
pub fn config_block<'a>(config: &'a str, opening: &str) -> &'a str {
    let start = config
        .find(opening)
        .unwrap_or_else(|| panic!("no `{opening}` block in the config"));
    let mut depth = 0usize;
    for (i, c) in config[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &config[start..=start + i];
                }
            }
            _ => {}
        }
    }
    panic!("`{opening}` block is not closed")
}

// === processes ===

/// A directory of its own under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-e2e-{label}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("create {}: {e}", dir.display()))
            .unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("write {}: {e}", path.display()))
            .unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ignored = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process, killed (and reaped) on drop, with its output in files.
pub struct Daemon {
    name: &'static str,
    child: Child,
    port: u16,
    logs: Vec<PathBuf>,
    /// Dropped after the child is killed (fields drop in order).
    dir: TempDir,
}

/// Why a front proxy did not start.
#[derive(Debug)]
pub enum StartError {
    /// The port was taken between choosing it and the proxy binding it.
    PortTaken(String),
    Failed(String),
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr to files in `dir` and waits until
    /// `127.0.0.1:port` accepts connections.
    async fn spawn(
        name: &'static str,
        mut cmd: Command,
        dir: TempDir,
        port: u16,
        extra_logs: &[&str],
    ) -> Result<Self, StartError> {
        let out = dir.path().join("stdout.log");
        let err = dir.path().join("stderr.log");
        let file = |p: &Path| {
            std::fs::File::create(p)
                .map_err(|e| format!("create {}: {e}", p.display()))
                .unwrap()
        };
        cmd.stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .current_dir(dir.path());
        let child = cmd
            .spawn()
            .map_err(|e| StartError::Failed(format!("spawn {name}: {e}")))?;
        let mut logs = vec![out, err];
        logs.extend(extra_logs.iter().map(|l| dir.path().join(l)));
        let mut daemon = Self {
            name,
            child,
            port,
            logs,
            dir,
        };
        daemon.wait_listening().await?;
        Ok(daemon)
    }

    async fn wait_listening(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let logs = self.logs();
                let msg = format!(
                    "{} exited with {status} before listening:\n{logs}",
                    self.name
                );
                return Err(if logs.contains("in use") {
                    StartError::PortTaken(msg)
                } else {
                    StartError::Failed(msg)
                });
            }
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", self.port));
            if let Ok(Ok(_stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "{} not listening on 127.0.0.1:{} after {START_TIMEOUT:?}:\n{}",
                    self.name,
                    self.port,
                    self.logs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the process logged so far, for assertion messages.
    pub fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).unwrap_or_default();
                format!("--- {} ---\n{text}", p.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The temp directory holding the config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// A port that was free a moment ago (bound to `127.0.0.1:0`, then released).
/// Another process may take it before ours binds it: starters report that as
/// [`StartError::PortTaken`] so the caller can try again.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// nginx 1.19.5+ from a server-block config (`deploy/nginx/gatehouse.conf`
/// rendered), inside a generated minimal `nginx.conf`: no daemon, one
/// process, every path in its own temp dir.
pub struct Nginx;

impl Nginx {
    /// Starts nginx with `server_conf` included in `http {}`; it must listen
    /// on `127.0.0.1:port`.
    pub async fn start(bin: &Path, server_conf: &str, port: u16) -> Result<Daemon, StartError> {
        let dir = TempDir::new("nginx");
        let d = dir.path().display().to_string();
        let server = dir.write("gatehouse.conf", server_conf);
        let main = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   include {};\n\
             }}\n",
            server.display()
        );
        let conf = dir.write("nginx.conf", &main);
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(format!("{d}/"))
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(format!("{d}/error.log"));
        Daemon::spawn("nginx", cmd, dir, port, &["error.log"]).await
    }
}

/// Caddy 2 from a Caddyfile (`deploy/caddy/Caddyfile` rendered), with a
/// global block prepended: no admin endpoint, no automatic HTTPS, storage,
/// `HOME` and XDG dirs in its own temp dir.
pub struct Caddy;

impl Caddy {
    /// Starts Caddy with `caddyfile` (which must not have a global options
    /// block of its own); it must listen on `127.0.0.1:port`.
    pub async fn start(bin: &Path, caddyfile: &str, port: u16) -> Result<Daemon, StartError> {
        let dir = TempDir::new("caddy");
        let d = dir.path().display().to_string();
        let full = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\n\n{caddyfile}"
        );
        let conf = dir.write("Caddyfile", &full);
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&conf)
            .arg("--adapter")
            .arg("caddyfile")
            .env("HOME", &d)
            .env("XDG_DATA_HOME", format!("{d}/xdg-data"))
            .env("XDG_CONFIG_HOME", format!("{d}/xdg-config"));
        Daemon::spawn("caddy", cmd, dir, port, &[]).await
    }
}

// === Traefik ForwardAuth stand-in ===

/// What the stand-in reads from `deploy/traefik/dynamic.yml`.
#[derive(Clone, Debug)]
pub struct TraefikConfig {
    /// `forwardAuth.address`, e.g. `http://127.0.0.1:4180/oauth2/forward-auth`.
    pub address: String,
    /// `forwardAuth.authResponseHeaders`.
    pub auth_response_headers: Vec<String>,
    /// `headers.customRequestHeaders` names set to `""` (removed).
    pub strip: Vec<String>,
    /// Path prefix routed straight to gatehouse (`PathPrefix(`/oauth2/`)`).
    pub gatehouse_prefix: String,
    /// Paths under the prefix the gatehouse router leaves out
    /// (`!Path(`...`)`): they go to the application router.
    pub gatehouse_excluded: Vec<String>,
    /// The gatehouse service URL.
    pub gatehouse_url: String,
    /// The application service URL.
    pub app_url: String,
}

impl TraefikConfig {
    /// Reads the parts of a rendered `dynamic.yml` the stand-in needs, by
    /// line (no YAML parser in the dependencies; the file is ours).
    pub fn from_dynamic_yml(yml: &str) -> Self {
        let value = |line: &str| {
            line.split_once(':')
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        let lines: Vec<&str> = yml.lines().collect();
        let find = |key: &str| {
            lines
                .iter()
                .position(|l| l.trim_start().starts_with(key))
                .unwrap_or_else(|| panic!("dynamic.yml has no `{key}`"))
        };
        let address = value(lines[find("address:")]);
        // `- Name` items directly under a key, skipping comments
        let items_under = |key: &str| -> Vec<String> {
            let start = find(key);
            let indent = lines[start].len() - lines[start].trim_start().len();
            lines[start + 1..]
                .iter()
                .filter(|l| !l.trim_start().starts_with('#'))
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .filter_map(|l| l.trim().strip_prefix("- "))
                .map(|s| s.trim().to_owned())
                .collect()
        };
        let auth_response_headers = items_under("authResponseHeaders:");
        let strip_start = find("customRequestHeaders:");
        let indent = lines[strip_start].len() - lines[strip_start].trim_start().len();
        let strip = lines[strip_start + 1..]
            .iter()
            .filter(|l| !l.trim_start().starts_with('#'))
            .take_while(|l| l.len() - l.trim_start().len() > indent)
            .filter_map(|l| l.trim().strip_suffix(": \"\""))
            .map(str::to_owned)
            .collect();
        let rule = value(lines[find("rule: \"Host(`app")]);
        let gatehouse_prefix = rule
            .split("PathPrefix(`")
            .nth(1)
            .and_then(|r| r.split('`').next())
            .expect("the gatehouse router has a PathPrefix")
            .to_owned();
        let gatehouse_excluded = rule
            .split("!Path(`")
            .skip(1)
            .filter_map(|r| r.split('`').next())
            .map(str::to_owned)
            .collect();
        let urls: Vec<String> = lines
            .iter()
            .filter_map(|l| l.trim().strip_prefix("- url:"))
            .map(|u| u.trim().trim_matches('"').to_owned())
            .collect();
        assert_eq!(urls.len(), 2, "dynamic.yml: expected two service URLs");
        Self {
            address,
            auth_response_headers,
            strip,
            gatehouse_prefix,
            gatehouse_excluded,
            gatehouse_url: urls[0].clone(),
            app_url: urls[1].clone(),
        }
    }
}

/// An HTTP server that behaves as Traefik does with the `deploy/traefik`
/// config (entry point without trusted IPs, `gatehouse` router for
/// `/oauth2/`, `app` router with `gatehouse-strip` then `gatehouse`
/// ForwardAuth with `trustForwardHeader: true`). Dropping it stops it.
pub struct TraefikSim {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

type SimBody = BoxBody<Bytes, hyper::Error>;

struct SimState {
    config: TraefikConfig,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The X-Forwarded-* headers Traefik's entry point removes from untrusted
/// clients (and then sets itself).
const ENTRYPOINT_STRIPPED: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-real-ip",
];

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl TraefikSim {
    /// Listens on `127.0.0.1:port` (0 for any).
    pub async fn start(config: TraefikConfig, port: u16) -> io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(SimState {
            config,
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle_sim(&state, req, peer).await) }
                    });
                    let _closed = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TraefikSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle_sim(
    state: &SimState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<SimBody> {
    match sim_route(state, req, peer).await {
        Ok(r) => r,
        Err(e) => text_response(StatusCode::BAD_GATEWAY, &format!("traefik sim: {e}")),
    }
}

async fn sim_route(
    state: &SimState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<SimBody>, Box<dyn std::error::Error + Send + Sync>> {
    let cfg = &state.config;
    let (mut parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // entry point: the client is not in forwardedHeaders.trustedIPs
    for name in ENTRYPOINT_STRIPPED {
        parts.headers.remove(*name);
    }
    let h = &mut parts.headers;
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    h.insert("x-forwarded-host", HeaderValue::from_str(&host)?);
    h.insert("x-real-ip", HeaderValue::from_str(&peer.ip().to_string())?);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    if parts.uri.path().starts_with(&cfg.gatehouse_prefix)
        && !cfg.gatehouse_excluded.iter().any(|p| p == parts.uri.path())
    {
        return forward(state, &cfg.gatehouse_url, parts, body, peer).await;
    }
    // middleware gatehouse-strip
    for name in &cfg.strip {
        parts.headers.remove(name.to_ascii_lowercase().as_str());
    }
    // middleware gatehouse: ForwardAuth
    let mut auth = Request::get(&cfg.address).body(Full::new(Bytes::new()))?;
    let ah = auth.headers_mut();
    for (name, value) in &parts.headers {
        // a GET without a body: Go sends no Content-Length either
        if !HOP_BY_HOP.contains(&name.as_str())
            && name != header::HOST
            && name != header::CONTENT_LENGTH
        {
            ah.append(name.clone(), value.clone());
        }
    }
    // trustForwardHeader: the entry point's values (the client's are gone)
    ah.insert(
        "x-forwarded-for",
        HeaderValue::from_str(&peer.ip().to_string())?,
    );
    ah.insert(
        "x-forwarded-method",
        HeaderValue::from_str(parts.method.as_str())?,
    );
    ah.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    ah.insert("x-forwarded-host", HeaderValue::from_str(&host)?);
    ah.insert("x-forwarded-uri", HeaderValue::from_str(&path_and_query)?);
    let answer = state.client.request(auth).await?;
    let (aparts, abody) = answer.into_parts();
    let abody = abody.collect().await?.to_bytes();
    if !aparts.status.is_success() {
        // the auth server's answer goes to the client as is
        let mut r = Response::new(full_body(abody));
        *r.status_mut() = aparts.status;
        for (name, value) in &aparts.headers {
            if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
                r.headers_mut().append(name.clone(), value.clone());
            }
        }
        return Ok(r);
    }
    for name in &cfg.auth_response_headers {
        let name = HeaderName::try_from(name.as_str())?;
        parts.headers.remove(&name);
        for v in aparts.headers.get_all(&name) {
            parts.headers.append(name.clone(), v.clone());
        }
    }
    forward(state, &cfg.app_url, parts, body, peer).await
}

/// Proxies the request to `base` as Traefik's load balancer does: same Host,
/// X-Forwarded-For set to the client.
async fn forward(
    state: &SimState,
    base: &str,
    mut parts: http::request::Parts,
    body: Bytes,
    peer: SocketAddr,
) -> Result<Response<SimBody>, Box<dyn std::error::Error + Send + Sync>> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = format!("{base}{path_and_query}").parse()?;
    for name in HOP_BY_HOP {
        parts.headers.remove(*name);
    }
    parts.headers.insert(
        "x-forwarded-for",
        HeaderValue::from_str(&peer.ip().to_string())?,
    );
    let resp = state
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await?;
    Ok(resp.map(http_body_util::BodyExt::boxed))
}

fn full_body(bytes: Bytes) -> SimBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn text_response(status: StatusCode, text: &str) -> Response<SimBody> {
    let mut r = Response::new(full_body(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r
}

/// Lower-cased header names of `headers`, for assertion messages.
pub fn header_names(headers: &HeaderMap) -> Vec<String> {
    headers.keys().map(|k| k.as_str().to_owned()).collect()
}

// === a stand-in auth server ===

/// A server that answers every request with `status` and `headers`, to test
/// what a front proxy does with an auth answer gatehouse does not give today
/// (e.g. a re-issued session cookie on a 2xx). Dropping it stops it.
pub struct StubServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl StubServer {
    pub async fn start(status: StatusCode, headers: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let headers: Arc<HeaderMap> = Arc::new(
            headers
                .iter()
                .map(|(k, v)| {
                    (
                        HeaderName::try_from(*k).unwrap(),
                        HeaderValue::try_from(*v).unwrap(),
                    )
                })
                .collect(),
        );
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _peer)) = listener.accept().await else {
                    continue;
                };
                let headers = Arc::clone(&headers);
                conns.spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let mut r = Response::new(full_body(Bytes::new()));
                        *r.status_mut() = status;
                        for (k, v) in headers.iter() {
                            r.headers_mut().append(k.clone(), v.clone());
                        }
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _closed = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
