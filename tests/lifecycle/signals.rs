//! The binary under signals and file changes (issue 12, items 3 and 4):
//! SIGHUP reloads; a changed config file is reloaded, a broken one logged
//! and ignored; SIGTERM turns `/ready` to 503 at once, keeps serving new
//! connections for the grace period, then closes the listener without
//! cutting the request in flight.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::client::TestClient;
use crate::support::e2e::TempDir;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::upstream::Recorder;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The binary, killed on drop; its log goes to a file read while it runs.
struct Gatehouse {
    child: std::process::Child,
    log: PathBuf,
    port: u16,
}

impl Gatehouse {
    fn start(config: &Path, dir: &TempDir, port: u16) -> Self {
        let log = dir.path().join("gatehouse.log");
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("GATEHOUSE_") || k.starts_with("OAUTH2_PROXY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Polls `check` every 20 ms until it holds; panics after `within`.
    async fn wait_for<F, Fut>(&self, within: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET path` on a new connection: the status, or `None` when the
    /// connection is refused.
    async fn status(&self, path: &str) -> Option<StatusCode> {
        let client = TestClient::new().with_timeout(Duration::from_secs(5));
        let req = http::Request::get(self.url(path))
            .body(crate::support::client::empty())
            .unwrap();
        client.send(req).await.ok().map(|r| r.status())
    }

    async fn wait_ready(&self) {
        self.wait_for(Duration::from_secs(15), "ready", || async {
            self.status("/ready").await == Some(StatusCode::OK)
        })
        .await;
    }
}

impl Drop for Gatehouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config with `upstream` and a public route at `/pub` (and `/__slow`),
/// plus `extra`.
fn config(port: u16, idp: &MockIdp, upstream: &str, extra: &str) -> String {
    format!(
        r#"http_address = "127.0.0.1:{port}"
upstream = "{upstream}"
oidc_issuer_url = "{issuer}"
client_id = "gatehouse"
client_secret = "super-secret-value"
redirect_url = "http://127.0.0.1:{port}/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
cookie_secure = false
email_domain = "*"
{extra}

[[routes]]
path = "/pub"
policy = "public"

[[routes]]
path = "/__slow"
policy = "public"
"#,
        issuer = idp.issuer()
    )
}

/// Replaces `path` as editors do: a new file renamed over the old one.
fn replace(dir: &TempDir, path: &Path, text: &str) {
    let tmp = dir.write("config.toml.tmp", text);
    std::fs::rename(tmp, path).unwrap();
}

async fn upstream_saw(upstream: &Recorder, path: &str) -> bool {
    !upstream.requests_to(path).is_empty()
}

#[tokio::test]
async fn sighup_reloads_the_configuration_file() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let (a, b) = (Recorder::start().await, Recorder::start().await);
    let dir = TempDir::new("reload-sighup");
    let port = free_port();
    let path = dir.write("config.toml", &config(port, &idp, &a.url(), ""));
    let gh = Gatehouse::start(&path, &dir, port);
    gh.wait_ready().await;
    assert_eq!(gh.status("/pub/1").await, Some(StatusCode::OK));
    assert!(upstream_saw(&a, "/pub/1").await);

    std::fs::write(&path, config(port, &idp, &b.url(), "")).unwrap();
    gh.signal("HUP");
    gh.wait_for(Duration::from_secs(5), "SIGHUP reload", || async {
        gh.log().contains("configuration reloaded")
    })
    .await;
    assert!(
        gh.log().contains("SIGHUP: reloading the configuration"),
        "{}",
        gh.log()
    );
    assert_eq!(gh.status("/pub/2").await, Some(StatusCode::OK));
    assert!(upstream_saw(&b, "/pub/2").await, "the new upstream got it");
    assert!(!upstream_saw(&a, "/pub/2").await);
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_a_broken_one_is_logged_with_every_problem_and_ignored() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let (a, b) = (Recorder::start().await, Recorder::start().await);
    let dir = TempDir::new("reload-file");
    let port = free_port();
    let path = dir.write("config.toml", &config(port, &idp, &a.url(), ""));
    let gh = Gatehouse::start(&path, &dir, port);
    gh.wait_ready().await;

    // two problems at once: both are logged, the running config stays
    let broken = config(port, &idp, "ftp://nowhere", "cookie_expire = \"forever\"");
    replace(&dir, &path, &broken);
    gh.wait_for(
        Duration::from_secs(8),
        "the broken file is noticed",
        || async { gh.log().contains("reload refused") },
    )
    .await;
    let log = gh.log();
    for key in ["upstream:", "cookie_expire:"] {
        assert!(log.contains(key), "{key} not logged:\n{log}");
    }
    assert_eq!(gh.status("/pub/old").await, Some(StatusCode::OK));
    assert!(upstream_saw(&a, "/pub/old").await);
    assert_eq!(gh.status("/ready").await, Some(StatusCode::OK));

    // fixed: the new file is live
    replace(&dir, &path, &config(port, &idp, &b.url(), ""));
    gh.wait_for(Duration::from_secs(8), "the fixed file is live", || async {
        gh.status("/pub/new").await == Some(StatusCode::OK) && upstream_saw(&b, "/pub/new").await
    })
    .await;
}

#[tokio::test]
async fn sigterm_drains_ready_turns_503_new_connections_are_served_in_the_grace_period_and_the_slow_request_finishes()
 {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let dir = TempDir::new("drain");
    let port = free_port();
    let extra = "shutdown_grace_period = \"1500ms\"\nshutdown_timeout = \"10s\"";
    let path = dir.write("config.toml", &config(port, &idp, &upstream.url(), extra));
    let mut gh = Gatehouse::start(&path, &dir, port);
    gh.wait_ready().await;

    // a request in flight that outlives the grace period
    let slow = {
        let url = gh.url("/__slow?ms=3000");
        tokio::spawn(async move {
            let client = TestClient::new().with_timeout(Duration::from_secs(15));
            let resp = client.get(&url).await;
            (resp.status, resp.text(), Instant::now())
        })
    };
    gh.wait_for(
        Duration::from_secs(5),
        "the slow request reaches the upstream",
        || async { upstream_saw(&upstream, "/__slow").await },
    )
    .await;
    let term = Instant::now();
    gh.signal("TERM");
    gh.wait_for(
        Duration::from_millis(500),
        "/ready turns 503 at once",
        || async { gh.status("/ready").await == Some(StatusCode::SERVICE_UNAVAILABLE) },
    )
    .await;
    // still served on new connections during the grace period
    assert_eq!(gh.status("/ping").await, Some(StatusCode::OK));
    assert_eq!(gh.status("/pub/grace").await, Some(StatusCode::OK));
    assert!(
        term.elapsed() < Duration::from_millis(1500),
        "checked within the grace"
    );
    // then the listener closes
    gh.wait_for(Duration::from_secs(5), "the listener closes", || async {
        gh.status("/ping").await.is_none()
    })
    .await;
    assert!(
        term.elapsed() >= Duration::from_millis(1400),
        "not before the grace ended"
    );

    let (status, body, done) = slow.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "the request in flight was cut: {body}"
    );
    assert!(
        done > term + Duration::from_millis(1500),
        "it outlived the grace period"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = gh.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", gh.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn a_second_signal_cuts_the_grace_period_short() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let dir = TempDir::new("drain-hurry");
    let port = free_port();
    let extra = "shutdown_grace_period = \"60s\"";
    let path = dir.write("config.toml", &config(port, &idp, &upstream.url(), extra));
    let mut gh = Gatehouse::start(&path, &dir, port);
    gh.wait_ready().await;
    gh.signal("TERM");
    gh.wait_for(Duration::from_secs(2), "/ready turns 503", || async {
        gh.status("/ready").await == Some(StatusCode::SERVICE_UNAVAILABLE)
    })
    .await;
    gh.signal("INT");
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = gh.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "still in its 60 s grace period:\n{}",
                gh.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
}
