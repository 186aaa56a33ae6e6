//! Interop: a browser signs in through gatehouse at a real, certified OpenID
//! provider that nobody here wrote: the npm package `oidc-provider`, pinned in
//! `tests/interop/package.json` (+ `package-lock.json`) and configured by
//! `tests/interop/provider.js`.
//!
//! The tests install the package (`npm ci`, once, only when `node_modules`
//! lacks the pinned version); each starts its own provider with `node` on an
//! ephemeral loopback port, starts gatehouse in process against it, and fills
//! in the provider's own sign-in and consent forms. The provider requires PKCE
//! (S256) and `client_secret_basic` for this client, so a completed login
//! shows gatehouse speaks both.
//!
//! Needs Node.js >= 18 and npm (`apt-get install -y nodejs npm`). Without
//! them it prints one `SKIPPED` line and passes, unless
//! `GATEHOUSE_REQUIRE_E2E=1` (set by `.ci/run`), where it fails.
//!
//! With the provider's back-channel logout enabled, the tests also end the
//! session at the provider (its `end_session_endpoint` and confirm form) and
//! check that gatehouse refuses the old cookie once oidc-provider has POSTed
//! its logout token to `/oauth2/backchannel-logout` (issue 8), and that
//! gatehouse's sign-out continues at that endpoint in a way it accepts.
//!
//! Run: `cargo test --test interop -- --nocapture`; `RUST_LOG=gatehouse=debug`
//! adds gatehouse's log.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gatehouse::{Config, Server};
use http::StatusCode;
use serde_json::Value;
use url::{Origin, Url};

use support::client::{TestClient, TestResponse, empty};
use support::proxy::{base_config, error_chain};
use support::upstream::Recorder;

/// The provider's one account; keep in step with `ACCOUNTS` in provider.js.
/// The dev sign-in form takes the account id (= `sub`) as its login.
const SUB: &str = "248289761001";
const EMAIL: &str = "alice@interop.example";
const USERNAME: &str = "alice";

/// oidc-provider 8 and its dependencies need Node.js 18 or later.
const MIN_NODE_MAJOR: u64 = 18;
const NPM_CI_TIMEOUT: Duration = Duration::from_secs(300);
const PROVIDER_START_TIMEOUT: Duration = Duration::from_secs(20);
const READY_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects and forms at the provider before giving up (a login takes ~6).
const MAX_PROVIDER_STEPS: usize = 16;
/// How long a back-channel logout may take to refuse the old cookie.
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);

/// One `npm ci` at a time: the tests in this file start together.
static INSTALL: Mutex<()> = Mutex::new(());

#[tokio::test]
async fn logs_in_against_oidc_provider() {
    let Some(stack) = Stack::start().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let Stack {
        client,
        proxy_base,
        redirect_uri,
        issuer,
        upstream,
        ..
    } = &stack;

    // 1. the protected page sends the browser (via the proxy) to the provider
    let page = format!("{proxy_base}/private/page?x=1");
    let authorize = leave_proxy(client, &page)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        authorize.origin(),
        Url::parse(issuer).unwrap().origin(),
        "gatehouse should redirect to the provider's authorization endpoint"
    );
    let params = query(&authorize);
    for (name, want) in [
        ("client_id", Some("gatehouse")),
        ("response_type", Some("code")),
        ("code_challenge_method", Some("S256")),
        ("redirect_uri", Some(redirect_uri.as_str())),
    ] {
        assert_eq!(param(&params, name), want, "{name} in {authorize}");
    }
    for name in ["state", "nonce", "code_challenge"] {
        assert!(
            param(&params, name).is_some(),
            "{name} missing: {authorize}"
        );
    }

    // 2. the provider's own sign-in and consent forms, until it redirects back
    let proxy_origin = Url::parse(proxy_base).unwrap().origin();
    let signed_in = sign_in_at_provider(client, authorize, &proxy_origin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        signed_in.prompts,
        ["login", "consent"],
        "the provider should ask to sign in, then to consent: {:#?}",
        signed_in.trail
    );
    let callback = signed_in.callback;
    assert_eq!(callback.path(), "/oauth2/callback", "{callback}");
    let params = query(&callback);
    assert_eq!(param(&params, "error"), None, "provider error: {callback}");
    assert!(param(&params, "code").is_some(), "no code: {callback}");
    // RFC 9207: oidc-provider names itself in the authorization response
    assert_eq!(param(&params, "iss"), Some(issuer.as_str()), "{callback}");

    // 3. gatehouse exchanges the code (PKCE, client_secret_basic), verifies
    // the RS256 ID token and returns the browser to the page
    let resp = client.get(callback.as_str()).await;
    assert!(
        resp.status.is_redirection(),
        "callback should redirect back to the page, got {}: {}\nfrom {callback}",
        resp.status,
        resp.text()
    );
    assert_eq!(
        resp.location_url().as_ref().map(Url::as_str),
        Some(page.as_str())
    );

    // 4. signed in: the upstream sees the provider's identity
    let resp = client.get(&page).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = upstream.last().unwrap();
    assert_eq!(seen.path(), "/private/page");
    assert_eq!(
        seen.header("x-forwarded-user"),
        Some(SUB),
        "{:?}",
        seen.headers
    );
    assert_eq!(
        seen.header("x-forwarded-email"),
        Some(EMAIL),
        "{:?}",
        seen.headers
    );
    assert_eq!(
        seen.header("x-forwarded-preferred-username"),
        Some(USERNAME),
        "{:?}",
        seen.headers
    );

    stack.stop().await;
}

/// Issue 8: the user signs out at the provider (RP-initiated logout at its
/// `end_session_endpoint`, confirmed in its own form); oidc-provider POSTs
/// a logout token (with `sid`) to `/oauth2/backchannel-logout`, and the
/// gatehouse cookie the browser still holds stops working.
#[tokio::test]
async fn logout_at_the_provider_ends_the_gatehouse_session_by_back_channel() {
    let Some(stack) = Stack::start().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let client = &stack.client;
    let page = format!("{}/private/page", stack.proxy_base);
    let auth = format!("{}/oauth2/auth", stack.proxy_base);
    stack.sign_in(&page).await.unwrap_or_else(|e| panic!("{e}"));
    let cookie = client
        .cookie_header_for(&page)
        .expect("signed in, but no cookie for gatehouse");
    let with_cookie = [("cookie", cookie.as_str()), ("accept", "application/json")];
    for url in [&page, &auth] {
        let resp = client.get_with(url, &with_cookie).await;
        assert!(
            resp.status.is_success(),
            "{url} before the provider logout: {} {}",
            resp.status,
            resp.text()
        );
    }

    // the user ends the session at the provider, not at gatehouse
    let end_session = stack
        .end_session_endpoint()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let done = end_session_at_provider(client, &end_session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        done.as_str(),
        format!("{}/session/end/success", stack.issuer),
        "the provider should end its session"
    );
    // oidc-provider awaits the back-channel POST before redirecting, so
    // this is immediate; a short poll tolerates a slow revocation write
    let deadline = Instant::now() + BACKCHANNEL_TIMEOUT;
    let statuses = loop {
        let mut statuses = Vec::new();
        for url in [&page, &auth] {
            statuses.push(client.get_with(url, &with_cookie).await.status);
        }
        if statuses == [StatusCode::UNAUTHORIZED; 2] || Instant::now() >= deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        statuses,
        [StatusCode::UNAUTHORIZED; 2],
        "the old cookie still works at {page} and {auth} after the provider's \
         logout; provider log:\n{}",
        stack.provider.stderr()
    );
    // its log line comes through a pipe and a reader thread: wait for it
    let delivered = "backchannel.success client=gatehouse";
    let deadline = Instant::now() + BACKCHANNEL_TIMEOUT;
    while !stack.provider.stderr().contains(delivered) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = stack.provider.stderr();
    assert!(
        log.contains(delivered),
        "the provider should report the logout token delivered:\n{log}"
    );

    stack.stop().await;
}

/// gatehouse's own sign-out continues at the provider's discovered
/// `end_session_endpoint` with a `state`, which the provider accepts: it
/// confirms, ends its session, and returns to gatehouse with that `state`.
#[tokio::test]
async fn sign_out_redirects_to_the_providers_end_session_endpoint_with_state() {
    let Some(stack) = Stack::start().await.unwrap_or_else(|e| panic!("{e}")) else {
        return;
    };
    let client = &stack.client;
    let page = format!("{}/private/page", stack.proxy_base);
    stack.sign_in(&page).await.unwrap_or_else(|e| panic!("{e}"));

    let resp = client
        .get(&format!("{}/oauth2/sign_out", stack.proxy_base))
        .await;
    let end_session = redirect_target(&resp).unwrap_or_else(|e| panic!("{e}"));
    let want = stack
        .end_session_endpoint()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (end_session.origin(), end_session.path()),
        (want.origin(), want.path()),
        "sign-out should continue at the discovered end_session_endpoint"
    );
    let params = query(&end_session);
    let state = param(&params, "state")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no state: {end_session}"))
        .to_owned();
    // without `rd`, the sign-out ends on gatehouse's signed-out page
    let home = format!("{}/oauth2/signed_out", stack.proxy_base);
    for (name, want) in [
        ("client_id", Some("gatehouse")),
        ("post_logout_redirect_uri", Some(home.as_str())),
    ] {
        assert_eq!(param(&params, name), want, "{name} in {end_session}");
    }
    assert!(
        param(&params, "id_token_hint").is_some(),
        "no id_token_hint: {end_session}"
    );

    // the provider validates the hint and the registered return address,
    // asks to confirm, and returns to gatehouse with the same state
    let back = end_session_at_provider(client, &end_session)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (back.origin(), back.path()),
        (Url::parse(&home).unwrap().origin(), "/oauth2/signed_out"),
        "the provider should return to post_logout_redirect_uri: {back}"
    );
    assert_eq!(
        param(&query(&back), "state"),
        Some(state.as_str()),
        "{back}"
    );
    // and the return lands on a page that says so, with a way back in
    let landed = client.get(back.as_str()).await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.text());
    let text = landed.text();
    assert!(text.contains("You are signed out"), "{text}");
    assert!(text.contains("href=\"/oauth2/start\""), "{text}");

    // the provider's session is over: the next visit signs in again
    let authorize = leave_proxy(client, &page)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let proxy_origin = Url::parse(&stack.proxy_base).unwrap().origin();
    let again = sign_in_at_provider(client, authorize, &proxy_origin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        again.prompts.first().map(String::as_str),
        Some("login"),
        "the provider should ask to sign in again: {:#?}",
        again.trail
    );

    stack.stop().await;
}

// === the stack ===

/// oidc-provider, gatehouse in front of a recording upstream, and a browser.
struct Stack {
    provider: OidcProvider,
    server: Server,
    upstream: Recorder,
    client: TestClient,
    /// `http://127.0.0.1:PORT` of gatehouse.
    proxy_base: String,
    redirect_uri: String,
    issuer: String,
}

impl Stack {
    /// Everything started and ready; `None` when node is missing and the
    /// test is skipped.
    async fn start() -> Result<Option<Self>, String> {
        if let Ok(filter) = std::env::var("RUST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let node = match find_node() {
            Ok(node) => node,
            Err(why) => {
                if std::env::var("GATEHOUSE_REQUIRE_E2E").as_deref() == Ok("1") {
                    return Err(format!(
                        "GATEHOUSE_REQUIRE_E2E=1 but the interop test cannot run: {why} \
                         (install with apt-get install -y nodejs npm)"
                    ));
                }
                // straight to stderr, not `eprintln!`: libtest hides what the
                // print macros write in a passing test, and a skip must be seen
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED interop test: {why}; install with apt-get install -y nodejs npm"
                );
                return Ok(None);
            }
        };
        install_oidc_provider(&node.npm)?;

        // The provider must know gatehouse's addresses before gatehouse can
        // start (gatehouse discovers the provider at startup), so bind
        // gatehouse's listener first and hand it over later: no port is
        // ever guessed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let proxy_base = format!("http://{addr}");
        let redirect_uri = format!("{proxy_base}/oauth2/callback");
        let provider = OidcProvider::spawn(
            &node.node,
            &[
                &redirect_uri,
                &format!("{proxy_base}/oauth2/backchannel-logout"),
                // where sign-out returns without `rd`
                &format!("{proxy_base}/oauth2/signed_out"),
            ],
        )?;
        let issuer = provider.issuer.clone();
        eprintln!("interop: oidc-provider at {issuer} (node {})", node.version);

        let upstream = Recorder::start().await;
        // the provider is dropped without a panic on these errors: keep its log
        let with_log = |e: String| format!("{e}\noidc-provider stderr:\n{}", provider.stderr());
        let server = start_gatehouse(listener, &issuer, &upstream)
            .await
            .map_err(with_log)?;
        let client = TestClient::new().with_timeout(REQUEST_TIMEOUT);
        wait_ready(&client, &proxy_base, &server)
            .await
            .map_err(with_log)?;
        Ok(Some(Self {
            provider,
            server,
            upstream,
            client,
            proxy_base,
            redirect_uri,
            issuer,
        }))
    }

    /// Signs in through gatehouse at the provider, starting at `page`,
    /// until the page answers 200 from the upstream.
    async fn sign_in(&self, page: &str) -> Result<(), String> {
        let authorize = leave_proxy(&self.client, page).await?;
        let proxy_origin = Url::parse(&self.proxy_base)
            .map_err(|e| e.to_string())?
            .origin();
        let signed_in = sign_in_at_provider(&self.client, authorize, &proxy_origin).await?;
        let resp = self.client.get(signed_in.callback.as_str()).await;
        let back = redirect_target(&resp)?;
        if back.as_str() != page {
            return Err(format!("the callback returned to {back}, not {page}"));
        }
        let resp = self.client.get(page).await;
        if resp.status != StatusCode::OK {
            return Err(format!(
                "{page} after signing in: {} {}",
                resp.status,
                resp.text()
            ));
        }
        Ok(())
    }

    /// The provider's discovered `end_session_endpoint`.
    async fn end_session_endpoint(&self) -> Result<Url, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let resp = self.client.get_api(&url).await;
        if resp.status != StatusCode::OK {
            return Err(format!("{url}: {} {}", resp.status, resp.text()));
        }
        let end = resp.json()["end_session_endpoint"]
            .as_str()
            .map(Url::parse)
            .ok_or_else(|| format!("no end_session_endpoint in {}", resp.text()))?;
        end.map_err(|e| format!("bad end_session_endpoint: {e}"))
    }

    async fn stop(self) {
        self.server.shutdown().await;
        drop(self.provider);
    }
}

// === node and npm ===

struct NodeTools {
    node: PathBuf,
    npm: PathBuf,
    version: String,
}

/// `node` (>= 18) and `npm` on `PATH`, or why not.
fn find_node() -> Result<NodeTools, String> {
    let (Some(node), Some(npm)) = (on_path("node"), on_path("npm")) else {
        return Err("node/npm not found".to_owned());
    };
    let version = run_bounded(Command::new(&node).arg("--version"), REQUEST_TIMEOUT)
        .map_err(|e| format!("node --version failed: {e}"))?;
    let version = version.trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u64>().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(NodeTools { node, npm, version }),
        _ => Err(format!(
            "node {version} is too old (oidc-provider needs {MIN_NODE_MAJOR} or later)"
        )),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Runs `npm ci` unless `node_modules` already holds the pinned version.
/// Network: the npm registry only; the lockfile pins every package's hash.
fn install_oidc_provider(npm: &Path) -> Result<(), String> {
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = interop_dir();
    let read_json =
        |p: PathBuf| -> Option<Value> { serde_json::from_slice(&std::fs::read(p).ok()?).ok() };
    let pinned = read_json(dir.join("package.json"))
        .and_then(|v| {
            v["dependencies"]["oidc-provider"]
                .as_str()
                .map(str::to_owned)
        })
        .ok_or("tests/interop/package.json does not pin oidc-provider")?;
    let installed = read_json(dir.join("node_modules/oidc-provider/package.json"))
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if installed.as_deref() == Some(pinned.as_str()) {
        return Ok(());
    }
    eprintln!(
        "interop: npm ci in {} (oidc-provider {pinned})",
        dir.display()
    );
    run_bounded(
        Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir),
        NPM_CI_TIMEOUT,
    )
    .map(drop)
    .map_err(|e| format!("npm ci in {} failed: {e}", dir.display()))
}

/// Runs a command to completion within `timeout`; its stdout, or an error
/// with its status and output. Kills it on timeout.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => break Err(format!("timed out after {timeout:?}")),
            Err(e) => break Err(format!("wait failed: {e}")),
        }
    };
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (join(stdout), join(stderr));
    match status {
        Ok(s) if s.success() => Ok(stdout),
        Ok(s) => Err(format!("{cmd:?}: {s}\n{stdout}{stderr}")),
        Err(e) => Err(format!("{cmd:?}: {e}\n{stdout}{stderr}")),
    }
}

/// Reads a pipe to its end on a thread.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> Option<JoinHandle<String>> {
    let mut pipe = pipe?;
    Some(std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }))
}

fn join(reader: Option<JoinHandle<String>>) -> String {
    reader.and_then(|r| r.join().ok()).unwrap_or_default()
}

// === the provider process ===

/// `node provider.js`, killed (and reaped) on drop; its stderr is printed
/// if the test fails. It also exits by itself when its stdin closes, so it
/// cannot outlive a test process that is killed.
struct OidcProvider {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    issuer: String,
}

impl OidcProvider {
    /// Starts the provider with `args` (see provider.js) and waits for its
    /// `{"issuer": …}` line.
    fn spawn(node: &Path, args: &[&str]) -> Result<Self, String> {
        let dir = interop_dir();
        let mut child = Command::new(node)
            .arg("provider.js")
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start node provider.js: {e}"))?;
        let (tx, rx) = mpsc::channel();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(std::thread::spawn(move || {
                let mut lines = BufReader::new(out).lines();
                let _ = tx.send(lines.next());
                lines.for_each(drop); // keep the pipe drained
            }));
        }
        if let Some(err) = child.stderr.take() {
            let log = stderr.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            }));
        }
        let mut provider = Self {
            stdin: child.stdin.take(),
            stderr,
            readers,
            child,
            issuer: String::new(),
        };
        let line = match rx.recv_timeout(PROVIDER_START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(other) => {
                let out = provider.stop();
                return Err(format!(
                    "provider.js exited before listening ({other:?}):\n{out}"
                ));
            }
            Err(e) => {
                let out = provider.stop();
                return Err(format!(
                    "provider.js did not report its issuer within {PROVIDER_START_TIMEOUT:?} ({e}):\n{out}"
                ));
            }
        };
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .filter(|i| i.starts_with("http://127.0.0.1:"));
        match issuer {
            Some(issuer) => {
                provider.issuer = issuer;
                Ok(provider)
            }
            None => {
                let out = provider.stop();
                Err(format!(
                    "provider.js printed {line:?}, not {{\"issuer\":…}}:\n{out}"
                ))
            }
        }
    }

    /// What it has written to stderr so far.
    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Kills and reaps the process; returns all it wrote to stderr.
    fn stop(&mut self) -> String {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let stderr = self.stop();
        if std::thread::panicking() && !stderr.is_empty() {
            eprintln!("oidc-provider stderr:\n{stderr}");
        }
    }
}

// === gatehouse ===

/// gatehouse on `listener` with the test base config against `issuer`.
async fn start_gatehouse(
    listener: std::net::TcpListener,
    issuer: &str,
    upstream: &Recorder,
) -> Result<Server, String> {
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let toml =
        toml::to_string(&base_config(port, issuer, &upstream.url())).map_err(|e| e.to_string())?;
    let config = Config::from_toml_str(&toml)
        .map_err(|e| format!("config rejected: {}\n{toml}", error_chain(&e)))?;
    Server::start(config, listener)
        .await
        .map_err(|e| format!("gatehouse failed to start: {}", error_chain(&e)))
}

/// Until gatehouse has discovered the provider and `/ready` answers 200.
async fn wait_ready(client: &TestClient, base: &str, server: &Server) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let req = http::Request::get(format!("{base}/ready"))
            .body(empty())
            .map_err(|e| e.to_string())?;
        let probe = tokio::time::timeout(REQUEST_TIMEOUT, client.send(req)).await;
        let status = match probe {
            Ok(Ok(resp)) => Ok(resp.status()),
            Ok(Err(e)) => Err(error_chain(&*e)),
            Err(_elapsed) => Err("timed out".to_owned()),
        };
        if server.ready() && status == Ok(StatusCode::OK) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "gatehouse not ready after {READY_TIMEOUT:?} (discovery of the provider): \
                 ready() = {}, GET /ready -> {status:?}",
                server.ready()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// === the browser ===

/// Follows gatehouse's redirects from `page` until one leaves the proxy;
/// returns that URL (the provider's authorization request).
async fn leave_proxy(client: &TestClient, page: &str) -> Result<Url, String> {
    let origin = Url::parse(page).map_err(|e| e.to_string())?.origin();
    let mut url = page.to_owned();
    for _ in 0..4 {
        let resp = client.get(&url).await;
        let next = redirect_target(&resp)?;
        if next.origin() != origin {
            return Ok(next);
        }
        url = next.into();
    }
    Err(format!("too many redirects inside the proxy, last {url}"))
}

struct SignedIn {
    /// The provider's redirect back to gatehouse.
    callback: Url,
    /// The `prompt` of each form filled in, in order.
    prompts: Vec<String>,
    /// Every step, for failure messages.
    trail: Vec<String>,
}

/// Walks the provider's pages like a browser: follows redirects, fills in
/// the sign-in form (as [`SUB`]) and the consent form, until the provider
/// redirects to `proxy_origin`.
async fn sign_in_at_provider(
    client: &TestClient,
    authorize: Url,
    proxy_origin: &Origin,
) -> Result<SignedIn, String> {
    let mut trail = Vec::new();
    let mut prompts = Vec::new();
    let mut resp = client.get(authorize.as_str()).await;
    for _ in 0..MAX_PROVIDER_STEPS {
        trail.push(format!("{} {}", resp.status, resp.url));
        if resp.status.is_redirection() {
            let next = redirect_target(&resp)?;
            if &next.origin() == proxy_origin {
                return Ok(SignedIn {
                    callback: next,
                    prompts,
                    trail,
                });
            }
            resp = client.get(next.as_str()).await;
            continue;
        }
        let html = resp.text();
        let form = (resp.status == StatusCode::OK)
            .then(|| Form::parse(&html))
            .flatten()
            .ok_or_else(|| {
                format!(
                    "expected a redirect or a form, got {}: {html}\nsteps: {trail:#?}",
                    resp.status
                )
            })?;
        let action = resp
            .url
            .join(&form.action)
            .map_err(|e| format!("bad form action {:?}: {e}", form.action))?;
        let prompt = form.hidden("prompt").unwrap_or_default().to_owned();
        let mut fields: Vec<(&str, &str)> = form
            .hidden
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match prompt.as_str() {
            "login" => fields.extend([("login", SUB), ("password", "any")]),
            "consent" => {}
            other => return Err(format!("unexpected form (prompt {other:?}): {html}")),
        }
        trail.push(format!("POST {action} ({prompt})"));
        prompts.push(prompt);
        resp = client.post_form(action.as_str(), &fields).await;
    }
    Err(format!(
        "no redirect back to gatehouse after {MAX_PROVIDER_STEPS} steps: {trail:#?}"
    ))
}

/// RP-initiated logout at the provider: opens `end_session` (its
/// `end_session_endpoint`, with or without parameters), confirms in its
/// sign-out form ("Yes, sign me out") and returns where it redirects.
async fn end_session_at_provider(client: &TestClient, end_session: &Url) -> Result<Url, String> {
    let resp = client.get(end_session.as_str()).await;
    let html = resp.text();
    let form = (resp.status == StatusCode::OK)
        .then(|| Form::parse(&html))
        .flatten()
        .ok_or_else(|| {
            format!(
                "the provider should ask to confirm the logout, got {}: {html}\nfrom {end_session}",
                resp.status
            )
        })?;
    if form.hidden("xsrf").is_none() {
        return Err(format!("not the provider's logout form: {html}"));
    }
    let action = resp
        .url
        .join(&form.action)
        .map_err(|e| format!("bad form action {:?}: {e}", form.action))?;
    let mut fields: Vec<(&str, &str)> = form
        .hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // the "Yes, sign me out" button
    fields.push(("logout", "yes"));
    let resp = client.post_form(action.as_str(), &fields).await;
    redirect_target(&resp)
}

fn redirect_target(resp: &TestResponse) -> Result<Url, String> {
    if !resp.status.is_redirection() {
        return Err(format!(
            "GET {} should redirect, got {}: {}",
            resp.url,
            resp.status,
            resp.text()
        ));
    }
    resp.location_url().ok_or_else(|| {
        format!(
            "{} from {} without a usable Location",
            resp.status, resp.url
        )
    })
}

/// The first `<form>` of a page: its action and hidden inputs. Enough HTML
/// for oidc-provider's dev interaction pages, not a general parser.
struct Form {
    action: String,
    hidden: Vec<(String, String)>,
}

impl Form {
    fn parse(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let body = &html[start..];
        let body = &body[..body.find("</form>")?];
        let action = attr(tag_at(body, 0)?, "action")?;
        let mut hidden = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find("<input") {
            let tag = tag_at(rest, i)?;
            if attr(tag, "type").as_deref() == Some("hidden")
                && let Some(name) = attr(tag, "name")
            {
                hidden.push((name, attr(tag, "value").unwrap_or_default()));
            }
            rest = &rest[i + tag.len()..];
        }
        Some(Self { action, hidden })
    }

    fn hidden(&self, name: &str) -> Option<&str> {
        self.hidden
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The tag starting at `at`, up to and including `>`.
fn tag_at(html: &str, at: usize) -> Option<&str> {
    let tag = &html[at..];
    Some(&tag[..=tag.find('>')?])
}

/// A double-quoted attribute's value, entity-decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs().into_owned().collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
