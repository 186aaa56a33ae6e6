//! The gatehouse binary itself: bad configuration fails before listening,
//! naming the key and the reason; precedence flag > env > file;
//! `--check-config`; every example config loads; the logs it writes.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use crate::support::SESSION_COOKIE;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::idp::{IdpOptions, MockIdp};
use support::upstream::Recorder;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const EX_CONFIG: i32 = 78;

/// A config file in a per-test temp dir.
fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-config-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// How long a run that should stop at the configuration may take.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the binary with a clean `GATEHOUSE_*` and `OAUTH2_PROXY_*`
/// environment plus `env`. A binary still running after [`RUN_LIMIT`] (it
/// accepted a bad configuration and is serving) is killed and the test
/// fails saying so, rather than hanging.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") || k.starts_with("OAUTH2_PROXY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gatehouse {args:?} was still running after {RUN_LIMIT:?}: it accepted the \
                 configuration and started serving; stderr:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const VALID: &str = r#"
upstream = "http://127.0.0.1:9"
oidc_issuer_url = "http://127.0.0.1:9"
client_id = "gatehouse"
client_secret = "super-secret-value"
redirect_url = "http://127.0.0.1:4180/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
cookie_secure = false
email_domain = "*"
"#;

#[test]
fn unknown_key_fails_at_start_naming_it() {
    let path = write_config("unknown.toml", &format!("{VALID}\ncookie_secert = \"x\"\n"));
    let out = run(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(
        err.contains("cookie_secert")
            && err.contains("unknown key")
            && err.contains("did you mean `cookie_secret`?"),
        "{err}"
    );
}

#[test]
fn missing_settings_are_all_named_and_secrets_never_printed() {
    let out = run(&["--client-secret", "super-secret-value"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    for key in [
        "oidc_issuer_url",
        "client_id",
        "redirect_url",
        "cookie_secret",
        "email_domain",
    ] {
        assert!(
            err.contains(&format!("{key}:")),
            "{key} not named in:\n{err}"
        );
    }
    assert!(!err.contains("super-secret-value"), "secret leaked:\n{err}");
}

#[test]
fn bad_values_name_key_and_reason() {
    let path = write_config(
        "bad-values.toml",
        &VALID.replace(
            "email_domain = \"*\"",
            "email_domain = \"*\"\ncookie_expire = \"soon\"\nlog_format = \"xml\"",
        ),
    );
    let out = run(&["--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(
        err.contains("cookie_expire: `soon` is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("log_format: expected `text` or `json`"),
        "{err}"
    );
}

#[test]
fn a_log_level_typo_stops_the_binary_naming_log_level_and_the_accepted_forms() {
    // issue 11: `verbose` used to start a gatehouse that logged nothing at all
    let path = write_config("log-level-typo.toml", VALID);
    let out = run(
        &["--config", path.to_str().unwrap(), "--log-level", "verbose"],
        &[],
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(err.contains("log_level: `verbose`"), "{err}");
    assert!(err.contains("error, warn, info, debug, trace"), "{err}");
    assert!(err.contains("gatehouse=debug"), "{err}");
}

#[test]
fn a_flag_beats_its_env_var_which_beats_the_file() {
    let path = write_config(
        "precedence.toml",
        &format!("{VALID}\nhttp_address = \"from-file\"\n"),
    );
    let cfg = path.to_str().unwrap();
    let env = [("GATEHOUSE_HTTP_ADDRESS", "from-env")];
    let err = stderr(&run(
        &["--config", cfg, "--http-address", "from-flag"],
        &env,
    ));
    assert!(err.contains("`from-flag`"), "{err}");
    let err = stderr(&run(&["--config", cfg], &env));
    assert!(err.contains("`from-env`"), "{err}");
    let err = stderr(&run(&["--config", cfg], &[]));
    assert!(err.contains("`from-file`"), "{err}");
}

/// Every setting's flag is also read from `GATEHOUSE_` + its key in upper
/// case, as README says; clap reads the variable named here, and
/// [`required_settings_come_from_the_environment`] shows the binary doing it.
#[test]
fn every_setting_can_come_from_the_environment() {
    use clap::CommandFactory as _;
    let cmd = gatehouse::cli::Cli::command();
    let mut settings = 0;
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if ["check_config", "help", "version"].contains(&id) {
            continue;
        }
        let want = format!("GATEHOUSE_{}", id.to_uppercase());
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(want.as_str()),
            "--{id} has no env var of its own"
        );
        assert_eq!(
            arg.get_long(),
            Some(id.replace('_', "-").as_str()),
            "the flag is the key in kebab case"
        );
        settings += 1;
    }
    // every TOML key is a setting: RawConfig fills both from one struct
    assert!(settings >= 40, "only {settings} settings found");
}

/// A bad metrics address from either variable stops the binary, naming
/// `metrics_address`.
#[test]
fn a_bad_metrics_address_from_the_environment_stops_the_binary_naming_it() {
    let base = [
        ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:9"),
        ("GATEHOUSE_OIDC_ISSUER_URL", "http://127.0.0.1:9"),
        ("GATEHOUSE_CLIENT_ID", "gatehouse"),
        ("GATEHOUSE_CLIENT_SECRET", "super-secret-value"),
        (
            "GATEHOUSE_REDIRECT_URL",
            "http://127.0.0.1:4180/oauth2/callback",
        ),
        (
            "GATEHOUSE_COOKIE_SECRET",
            "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=",
        ),
        ("GATEHOUSE_EMAIL_DOMAIN", "example.com"),
    ];
    for var in ["GATEHOUSE_METRICS_ADDRESS", "OAUTH2_PROXY_METRICS_ADDRESS"] {
        let mut env = base.to_vec();
        env.push((var, "not-an-address"));
        let out = run(&[], &env);
        assert!(!out.status.success(), "{var}");
        let err = stderr(&out);
        assert!(
            err.contains("metrics_address:") && err.contains("not-an-address"),
            "{var}: {err}"
        );
    }
}

#[test]
fn required_settings_come_from_the_environment() {
    let env = [
        ("GATEHOUSE_UPSTREAM", "http://127.0.0.1:9"),
        ("GATEHOUSE_OIDC_ISSUER_URL", "http://127.0.0.1:9"),
        ("GATEHOUSE_CLIENT_ID", "gatehouse"),
        ("GATEHOUSE_CLIENT_SECRET", "super-secret-value"),
        (
            "GATEHOUSE_REDIRECT_URL",
            "http://127.0.0.1:4180/oauth2/callback",
        ),
        (
            "GATEHOUSE_COOKIE_SECRET",
            "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=",
        ),
        ("GATEHOUSE_EMAIL_DOMAIN", "example.com,example.org"),
        ("GATEHOUSE_HTTP_ADDRESS", "not-an-address"),
    ];
    let out = run(&[], &env);
    let err = stderr(&out);
    // only the deliberately bad one is reported: the rest were read from env
    assert!(
        err.contains("http_address:") && !err.contains("client_id:"),
        "{err}"
    );
}

#[test]
fn check_config_fetches_discovery_and_jwks() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let path = write_config("check-ok.toml", &valid_at(&idp, Some(&upstream.url())));
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(idp.discovery_fetches(), 1);
    assert_eq!(idp.jwks_fetches(), 1, "README: it fetches the JWKS too");

    // a JWKS that cannot be fetched is a problem found
    idp.set_knobs(|k| k.jwks_status = Some(500));
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{}", stderr(&out));
    assert_eq!(idp.jwks_fetches(), 2);

    // the provider is unreachable: named, non-zero
    let path = write_config("check-down.toml", VALID);
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    assert!(stderr(&out).contains("oidc_issuer_url"), "{}", stderr(&out));
    drop(idp);
}

#[test]
fn every_example_config_loads_once_its_placeholders_are_replaced() {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // what the operator does: a random cookie secret, their client secret
            let mut key = [0_u8; 32];
            ring::rand::SystemRandom::new().fill(&mut key).unwrap();
            let cookie_secret = base64::engine::general_purpose::STANDARD.encode(key);
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("CHANGE-ME: openssl rand -base64 32", &cookie_secret)
                .replace(
                    "CHANGE-ME: the client secret from your provider",
                    "client-secret-from-the-provider",
                )
                // a second provider's ([[providers]] in routes.toml)
                .replace(
                    "CHANGE-ME: the partner client's secret",
                    "partner-client-secret-from-its-provider",
                );
            if let Err(e) = gatehouse::Config::from_toml_str(&text) {
                panic!("{} does not load: {e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example configs found in {}", dir.display());
}

/// Kills the child on drop so a failing test leaves nothing behind.
struct Child(std::process::Child);

impl Child {
    /// Stops the binary as a service manager would (SIGTERM), so it flushes
    /// its queued log lines, and waits for it; SIGKILL after 10 s.
    fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn logs_are_json_with_one_access_event_per_request_and_no_secrets() {
    use support::client::TestClient;
    use support::upstream::Recorder;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::auto_approving("alice")));
    let upstream = rt.block_on(Recorder::start());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let cookie_secret = "xKKF9mB5uR5cJXDEs3yrFHYXF8YDcbBW9NVEeK/AS48=";
    let child = Command::new(BIN)
        .args([
            "--http-address",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &upstream.url(),
        ])
        .args([
            "--oidc-issuer-url",
            &idp.issuer(),
            "--client-id",
            "gatehouse",
        ])
        .args([
            "--redirect-url",
            &format!("{base}/oauth2/callback"),
            "--cookie-secure=false",
        ])
        .args([
            "--email-domain",
            "*",
            "--log-format",
            "json",
            "--log-level",
            "info,gatehouse=debug",
            "--pass-access-token",
        ])
        .env("GATEHOUSE_CLIENT_SECRET", "s3cret")
        .env("GATEHOUSE_COOKIE_SECRET", cookie_secret)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Child(child);

    let client = TestClient::new();
    // every request this test sends to the binary, in order
    let mut sent: Vec<(&str, String)> = Vec::new();
    let (session, code, replaced, refused_id, reference) = rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        // the port answers only once the binary has bound it
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "binary never listened"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        loop {
            sent.push(("GET", "/ready".to_owned()));
            if client.get(&format!("{base}/ready")).await.status == http::StatusCode::OK {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "binary never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        sent.push(("GET", "/private".to_owned()));
        let to_idp = client
            .get(&format!("{base}/private?q=1"))
            .await
            .location()
            .unwrap();
        let callback = client.get(&to_idp).await.location().unwrap();
        let code = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        sent.push(("GET", "/oauth2/callback".to_owned()));
        assert_eq!(client.get(&callback).await.status, http::StatusCode::FOUND);
        sent.push(("GET", "/private".to_owned()));
        assert_eq!(
            client.get(&format!("{base}/private?q=1")).await.status,
            http::StatusCode::OK
        );
        // issue 11: a trusted proxy's request id is kept and passed upstream
        sent.push(("GET", "/private".to_owned()));
        let r = client
            .get_with(
                &format!("{base}/private"),
                &[("x-request-id", "trace-abc-123")],
            )
            .await;
        assert_eq!(r.status, http::StatusCode::OK);
        assert_eq!(
            upstream.last().unwrap().header("x-request-id"),
            Some("trace-abc-123")
        );
        // one that is not sane is replaced, never passed on
        sent.push(("GET", "/private".to_owned()));
        let r = client
            .get_with(
                &format!("{base}/private"),
                &[("x-request-id", "two words\tand a tab")],
            )
            .await;
        assert_eq!(r.status, http::StatusCode::OK);
        let replaced = upstream
            .last()
            .unwrap()
            .header("x-request-id")
            .unwrap()
            .to_owned();
        // a refusal by a forward-auth rule, with the id on the answer
        sent.push(("GET", "/oauth2/auth".to_owned()));
        let r = client
            .get_with(
                &format!("{base}/oauth2/auth?allowed_groups=nobody-has-this"),
                &[("accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, http::StatusCode::FORBIDDEN);
        let refused_id = r.header("x-request-id").unwrap().to_owned();
        // not signed in: the error's reference is the access record's id
        sent.push(("GET", "/private".to_owned()));
        let r = TestClient::new().get_api(&format!("{base}/private")).await;
        assert_eq!(r.status, http::StatusCode::UNAUTHORIZED);
        let reference = r.json()["reference"].as_str().unwrap().to_owned();
        (
            client.cookie("127.0.0.1", SESSION_COOKIE).unwrap(),
            code,
            replaced,
            refused_id,
            reference,
        )
    });
    child.stop();
    let out = child.0.wait_with_output_after_kill();
    let logs = String::from_utf8_lossy(&out).into_owned();

    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["target"] == "gatehouse::access")
        .collect();
    // one access event per request, in the order they were sent
    let logged: Vec<(&str, String)> = access
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap(),
                e["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(logged, sent, "access events:\n{logs}");
    let proxied = access
        .iter()
        .find(|e| e["path"] == "/private" && e["status"] == 200)
        .unwrap_or_else(|| panic!("no access event for the proxied request:\n{logs}"));
    assert!(
        proxied["user"]
            .as_str()
            .is_some_and(|u| u.starts_with("uid-alice"))
    );
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["upstream"], true);
    // milliseconds to the microsecond, not a float's noise (0.07685499999999999)
    let latency = proxied["latency_ms"].as_f64().unwrap();
    let micros = latency * 1000.0;
    assert!(
        (micros - micros.round()).abs() < 1e-6,
        "latency_ms {latency} has more than 3 decimals"
    );
    assert!(access.iter().any(|e| e["path"] == "/oauth2/callback"));

    // issue 11: every record has its message as `msg`
    for e in &events {
        assert!(e["msg"].is_string(), "no msg: {e}");
        assert!(
            e.get("message").is_none() && e.get("fields").is_none(),
            "{e}"
        );
    }
    // every access record has a request id; generated ones are 28 hex digits
    let id_of = |e: &serde_json::Value| e["request_id"].as_str().unwrap().to_owned();
    let generated = id_of(proxied);
    assert_eq!(generated.len(), 28, "{generated}");
    assert!(
        generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    let ids: std::collections::HashSet<String> = access.iter().map(|e| id_of(e)).collect();
    assert_eq!(ids.len(), access.len(), "request ids repeat:\n{logs}");
    assert!(ids.contains("trace-abc-123"), "{logs}");
    assert!(
        ids.contains(&replaced) && replaced.len() == 28,
        "{replaced}"
    );
    // the user's email as well as the subject; no refusal on an allow
    assert!(
        proxied["email"]
            .as_str()
            .is_some_and(|e| e.starts_with("alice@")),
        "{proxied}"
    );
    assert!(proxied.get("reason").is_none() && proxied.get("rule").is_none());
    // a refusal says who, why and which rule
    let refused = access
        .iter()
        .find(|e| e["status"] == 403)
        .unwrap_or_else(|| panic!("no 403 access record:\n{logs}"));
    assert_eq!(refused["path"], "/oauth2/auth");
    assert_eq!(id_of(refused), refused_id);
    assert_eq!(refused["reason"], "not in an allowed group");
    assert_eq!(refused["rule"], "allowed_groups");
    assert_eq!(refused["email"], proxied["email"]);
    assert_eq!(refused["user"], proxied["user"]);
    let unauthenticated = access
        .iter()
        .find(|e| e["status"] == 401)
        .unwrap_or_else(|| panic!("no 401 access record:\n{logs}"));
    assert_eq!(id_of(unauthenticated), reference);
    assert_eq!(unauthenticated["reason"], "not signed in");
    assert_eq!(unauthenticated["user"], "-");
    // the error line and the access line share the id
    assert!(
        events
            .iter()
            .any(|e| e["target"] != "gatehouse::access" && e["request_id"] == reference.as_str()),
        "no error line with the reference:\n{logs}"
    );

    for secret in [
        "s3cret",
        cookie_secret,
        session.as_str(),
        code.as_str(),
        "eyJ",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret ({secret:.12}...) is in the logs:\n{logs}"
        );
    }
}

/// Reads what the child wrote to stderr once it has been killed.
trait WaitAfterKill {
    fn wait_with_output_after_kill(&mut self) -> Vec<u8>;
}

impl WaitAfterKill for std::process::Child {
    fn wait_with_output_after_kill(&mut self) -> Vec<u8> {
        use std::io::Read as _;
        let _ = self.wait();
        let mut buf = Vec::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_end(&mut buf).unwrap();
        }
        buf
    }
}

/// Starts the binary against `idp` and `upstream` with JSON logs at
/// `debug` for every crate, `client_secret` and `cookie_secret` from the
/// environment, plus `args`; waits until it is ready. Returns the child and
/// its base URL.
fn start_logging_binary(
    rt: &tokio::runtime::Runtime,
    idp: &MockIdp,
    upstream: &support::upstream::Recorder,
    client_secret: &str,
    cookie_secret: &str,
    args: &[&str],
) -> (Child, String) {
    start_binary_logging_as(
        "json",
        rt,
        idp,
        upstream,
        client_secret,
        cookie_secret,
        args,
    )
}

/// [`start_logging_binary`] with the log format given (`json` or `text`).
fn start_binary_logging_as(
    log_format: &str,
    rt: &tokio::runtime::Runtime,
    idp: &MockIdp,
    upstream: &support::upstream::Recorder,
    client_secret: &str,
    cookie_secret: &str,
    args: &[&str],
) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--http-address", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &upstream.url()])
        .args([
            "--oidc-issuer-url",
            &idp.issuer(),
            "--client-id",
            "gatehouse",
        ])
        .args(["--redirect-url", &format!("{base}/oauth2/callback")])
        .args(["--cookie-secure=false", "--email-domain", "*"])
        .args(["--log-format", log_format])
        // debug unless the test names its own level
        .args(if args.iter().any(|a| a.starts_with("--log-level")) {
            &[][..]
        } else {
            &["--log-level", "debug"][..]
        })
        .args(args)
        .env("GATEHOUSE_CLIENT_SECRET", client_secret)
        .env("GATEHOUSE_COOKIE_SECRET", cookie_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let child = Child(child);
    let client = support::client::TestClient::new().with_timeout(std::time::Duration::from_secs(2));
    rt.block_on(async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let req = http::Request::get(format!("{base}/ready"))
                .body(support::client::empty())
                .unwrap();
            if let Ok(resp) = client.send(req).await
                && resp.status() == http::StatusCode::OK
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "binary never became ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    (child, base)
}

/// A login up to the callback: `(callback URL, login-state cookie value)`.
async fn login_until_callback(
    client: &support::client::TestClient,
    base: &str,
) -> (String, String) {
    let to_idp = client
        .get(&format!("{base}/private"))
        .await
        .location()
        .unwrap();
    let csrf = client
        .cookies_for("127.0.0.1")
        .into_iter()
        .find(|(name, _)| name.starts_with(&format!("{SESSION_COOKIE}_csrf_")))
        .map(|(name, value)| format!("{name}={value}"))
        .expect("a login-state cookie");
    let callback = client.get(&to_idp).await.location().unwrap();
    (callback, csrf)
}

/// The value of a `name=value` cookie pair.
fn cookie_value(pair: &str) -> String {
    pair.split_once('=').unwrap().1.to_owned()
}

#[test]
fn secrets_never_appear_in_debug_logs_even_when_sign_in_or_refresh_fails() {
    use std::io::Read as _;

    use http::StatusCode;
    use support::client::TestClient;
    use support::idp::TokenMutation;
    use support::upstream::Recorder;

    let client_secret = "client-secret-8f3a9c1e77b2";
    let cookie_secret = "weLj/JdhE6HRhbRE0nvaPIkLl/sD+fLwKePMpdF1fDk=";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions {
        client_secret: Some(client_secret.into()),
        ..IdpOptions::auto_approving("alice")
    }));
    let upstream = rt.block_on(Recorder::start());
    let (mut child, base) = start_logging_binary(
        &rt,
        &idp,
        &upstream,
        client_secret,
        cookie_secret,
        &["--cookie-refresh", "1s", "--pass-access-token"],
    );
    let url = |path: &str| format!("{base}{path}");
    // every value that must never be logged, with what it is
    let mut secrets: Vec<(String, &str)> = vec![
        (client_secret.to_owned(), "client secret"),
        (cookie_secret.to_owned(), "cookie secret"),
    ];

    rt.block_on(async {
        // a good login, whose session later fails to refresh
        let alice = TestClient::new();
        let (callback, csrf) = login_until_callback(&alice, &base).await;
        secrets.push((cookie_value(&csrf), "login-state cookie"));
        assert_eq!(alice.get(&callback).await.status, StatusCode::FOUND);
        assert_eq!(alice.get(&url("/private")).await.status, StatusCode::OK);
        let session = alice.cookie("127.0.0.1", SESSION_COOKIE).unwrap();

        // the callback replayed, without and with its login-state cookie
        let (replayed, csrf) = {
            let c = TestClient::new();
            let (callback, csrf) = login_until_callback(&c, &base).await;
            assert_eq!(c.get(&callback).await.status, StatusCode::FOUND);
            (callback, csrf)
        };
        assert_eq!(
            TestClient::new().get(&replayed).await.status,
            StatusCode::BAD_REQUEST
        );
        let again = TestClient::new()
            .get_with(&replayed, &[("cookie", &csrf)])
            .await;
        // a login's state is redeemed once: the replay is refused before
        // any second token request (issue 9)
        assert_eq!(again.status, StatusCode::BAD_REQUEST);
        secrets.push((cookie_value(&csrf), "login-state cookie"));

        // sign-ins that fail: a bad ID token, a failing token endpoint
        idp.set_knobs(|k| k.id_token_mutation = Some(TokenMutation::WrongNonce));
        let c = TestClient::new();
        let (callback, csrf) = login_until_callback(&c, &base).await;
        assert_eq!(c.get(&callback).await.status, StatusCode::BAD_REQUEST);
        secrets.push((cookie_value(&csrf), "login-state cookie"));
        idp.set_knobs(|k| {
            k.id_token_mutation = None;
            k.token_endpoint_status = Some(500);
        });
        let c = TestClient::new();
        let (callback, csrf) = login_until_callback(&c, &base).await;
        assert_eq!(c.get(&callback).await.status, StatusCode::BAD_GATEWAY);
        secrets.push((cookie_value(&csrf), "login-state cookie"));

        // a refresh that fails, then one that is refused
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let resp = alice.get_api(&url("/private")).await;
        assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
        idp.set_knobs(|k| k.token_endpoint_status = None);
        idp.revoke_refresh_tokens();
        let resp = alice.get_api(&url("/private")).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);

        // a tampered session cookie
        let mut tampered = session.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let resp = TestClient::new()
            .get_with(
                &url("/oauth2/auth"),
                &[("cookie", &format!("{SESSION_COOKIE}={tampered}"))],
            )
            .await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        secrets.push((session, "session cookie"));
        secrets.push((tampered, "tampered session cookie"));
    });
    child.stop();
    let _ = child.0.wait();
    let mut logs = String::new();
    for stream in [
        child
            .0
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
        child
            .0
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read>),
    ]
    .into_iter()
    .flatten()
    {
        let mut stream = stream;
        stream.read_to_string(&mut logs).unwrap();
    }

    for t in idp.token_requests() {
        for name in ["code", "code_verifier", "refresh_token"] {
            if let Some(v) = t.params.get(name) {
                secrets.push((v.to_owned(), name));
            }
        }
    }
    for issued in idp.issued_tokens() {
        for name in ["access_token", "id_token", "refresh_token"] {
            if let Some(v) = issued[name].as_str() {
                secrets.push((v.to_owned(), name));
            }
        }
    }
    let kinds: std::collections::BTreeSet<&str> = secrets.iter().map(|(_, k)| *k).collect();
    for kind in [
        "code_verifier",
        "refresh_token",
        "login-state cookie",
        "id_token",
    ] {
        assert!(kinds.contains(kind), "no {kind} was collected to look for");
    }
    // debug events were written, and failures were logged
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "no debug events:\n{logs}"
    );
    assert!(logs.contains("session refresh refused"), "{logs}");
    assert!(logs.contains("session refresh failed"), "{logs}");
    for (secret, kind) in &secrets {
        assert!(secret.len() >= 16, "{kind} too short to look for");
        assert!(
            !logs.contains(secret.as_str()),
            "a {kind} ({secret:.12}...) is in the debug logs"
        );
    }
}

/// Issue 9, item 18: a provider's error text with a line break cannot forge
/// a line in the text log; it is written escaped, on the line of its event.
#[test]
fn provider_error_text_with_a_line_break_stays_on_one_text_log_line() {
    use std::io::Read as _;

    use http::StatusCode;
    use support::client::TestClient;
    use support::upstream::Recorder;

    let forged = "FORGED-LINE level=INFO user=admin";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::auto_approving("alice")));
    let upstream = rt.block_on(Recorder::start());
    let (mut child, base) = start_binary_logging_as(
        "text",
        &rt,
        &idp,
        &upstream,
        "client-secret-5d0e",
        "Mt2cA3Ywdh7XmHbqjO4uVUaI0L5fAh3y1yBv6rXJZs8=",
        &[],
    );
    idp.set_knobs(|k| k.authorize_error = Some(format!("access_denied\n{forged}")));
    rt.block_on(async {
        let c = TestClient::new();
        let (callback, _csrf) = login_until_callback(&c, &base).await;
        assert!(callback.contains("%0A"), "{callback}");
        assert_eq!(c.get(&callback).await.status, StatusCode::BAD_REQUEST);
    });
    child.stop();
    let _ = child.0.wait();
    let mut logs = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        e.read_to_string(&mut logs).unwrap();
    }
    if let Some(mut o) = child.0.stdout.take() {
        o.read_to_string(&mut logs).unwrap();
    }
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in a log that is not a terminal:\n{logs}"
    );
    assert!(
        logs.contains(&format!("access_denied\\n{forged}")),
        "the provider's error is not logged escaped:\n{logs}"
    );
    for line in logs.lines() {
        assert!(
            !line.starts_with(forged),
            "a forged line is in the text log:\n{logs}"
        );
    }
    // the access line's text fields are written bare, as log parsers match
    // them, not as quoted strings
    let access = logs
        .lines()
        .find(|l| l.contains("gatehouse::access") && l.contains("/oauth2/callback"))
        .unwrap_or_else(|| panic!("no access line for the callback:\n{logs}"));
    for field in [" method=GET", " path=/oauth2/callback", " peer=127.0.0.1"] {
        assert!(access.contains(field), "{field} not in {access}");
    }
}

/// The JSON access line is written without a tracing event, so the
/// `log_level` filter is asked for it explicitly: a directive that turns
/// `gatehouse::access` off leaves it out, and the rest of the log stays.
#[test]
fn a_log_level_directive_turns_the_json_access_line_off() {
    use std::io::Read as _;

    use support::upstream::Recorder;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::auto_approving("alice")));
    let upstream = rt.block_on(Recorder::start());
    let mut logs = String::new();
    for (level, want_access) in [
        ("info,gatehouse::access=off", false),
        ("warn,gatehouse::access=info", true),
    ] {
        let (mut child, base) = start_binary_logging_as(
            "json",
            &rt,
            &idp,
            &upstream,
            "client-secret-a11c",
            "Qm2cA3Ywdh7XmHbqjO4uVUaI0L5fAh3y1yBv6rXJZs8=",
            &["--log-level", level],
        );
        rt.block_on(async {
            let c = support::client::TestClient::new();
            // an anonymous request: redirected to sign in, and logged
            let r = c.get(&format!("{base}/private?probe=1")).await;
            assert!(r.status.is_redirection(), "{}", r.status);
        });
        child.stop();
        let _ = child.0.wait();
        logs.clear();
        if let Some(mut e) = child.0.stderr.take() {
            e.read_to_string(&mut logs).unwrap();
        }
        let access = logs
            .lines()
            .filter(|l| l.contains("\"target\":\"gatehouse::access\""))
            .filter(|l| l.contains("/private"))
            .count();
        assert_eq!(access, usize::from(want_access), "{level}:\n{logs}");
        if !want_access {
            // the log itself is on: the start-up lines are there
            assert!(logs.contains("\"level\":\"INFO\""), "{level}:\n{logs}");
        }
    }
}

/// Issue 9, item 1: a secret on the command line is visible in `ps`.
#[test]
fn a_secret_given_as_a_flag_is_warned_about_and_one_from_the_env_is_not() {
    let path = write_config("flag-secret.toml", VALID);
    let path = path.to_str().unwrap();
    let secret = "Lh1Y6uQ+3v0wK8ZrJm5tQ2c9XbNfPa7sDg4eR1iHyWo=";
    let out = run(
        &[
            "--config",
            path,
            "--check-config",
            "--cookie-secret",
            secret,
            "--client-secret",
            "flag-client-secret-77",
        ],
        &[],
    );
    let err = stderr(&out);
    for flag in ["--cookie-secret", "--client-secret"] {
        assert!(
            err.contains(&format!(
                "warning: {flag} puts a secret on the command line"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains("GATEHOUSE_COOKIE_SECRET or cookie_secret_file"),
        "{err}"
    );
    assert!(
        !err.contains(secret) && !err.contains("flag-client-secret-77"),
        "the warning shows the secret: {err}"
    );
    let out = run(
        &["--config", path, "--check-config"],
        &[("GATEHOUSE_COOKIE_SECRET", secret)],
    );
    assert!(!stderr(&out).contains("warning:"), "{}", stderr(&out));
}

/// Issue 9, item 1: the examples' old secret stops the binary, exit 78.
#[test]
fn a_published_cookie_secret_stops_the_binary_naming_the_key() {
    let path = write_config("published-secret.toml", VALID);
    let out = run(
        &["--config", path.to_str().unwrap()],
        &[(
            "GATEHOUSE_COOKIE_SECRET",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        )],
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(
        err.contains("cookie_secret: secret #1: is a published example value"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_oauth2_proxy_settings_it_accepts_and_ignores() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let path = write_config(
        "oauth2-proxy-notes.toml",
        &format!(
            "{}\nskip_provider_button = true\n",
            valid_at(&idp, Some(&upstream.url()))
        ),
    );
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("note: skip_provider_button: oauth2-proxy setting accepted and ignored"),
        "{err}"
    );
    drop(idp);
}

#[test]
fn check_config_warns_of_a_role_of_another_client_and_prints_what_it_checked() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let path = write_config(
        "check-advisories.toml",
        &format!(
            "{}\nallowed_role = [\"otherclient:admin\"]\n",
            valid_at(&idp, Some(&upstream.url()))
        ),
    );
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    let err = stderr(&out);
    // a warning, not a refusal: the provider may include that client's roles
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: allowed_role: `otherclient:admin` names the client `otherclient`"),
        "{err}"
    );
    assert!(err.contains("checked:"), "{err}");
    for line in ["allowed_role clients", "provider default JWKS"] {
        let row = err
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("{line}: {err}"));
        let want = if line.starts_with("allowed") {
            "warning"
        } else {
            "ok"
        };
        assert!(
            row.trim_end().ends_with(want) || row.contains(want),
            "{row}"
        );
    }
    drop(idp);
}

/// `VALID` with the issuer at `idp` and `upstream` replaced by `upstream`
/// (`None`: no upstream line).
fn valid_at(idp: &MockIdp, upstream: Option<&str>) -> String {
    let upstream = upstream.map_or_else(String::new, |u| format!("upstream = \"{u}\""));
    VALID
        .replace(
            "oidc_issuer_url = \"http://127.0.0.1:9\"",
            &format!("oidc_issuer_url = \"{}\"", idp.issuer()),
        )
        .replace("upstream = \"http://127.0.0.1:9\"", &upstream)
}

/// Issue 11: forward-auth setups need no dummy `upstream`, and
/// `--check-config` says which mode gatehouse will run in.
#[test]
fn check_config_accepts_no_upstream_and_says_it_is_a_forward_auth_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let path = write_config("forward-auth-only.toml", &valid_at(&idp, None));
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mode: forward-auth server only: no upstream is configured"),
        "{err}"
    );
    let upstream = rt.block_on(Recorder::start());
    let path = write_config("reverse-proxy.toml", &valid_at(&idp, Some(&upstream.url())));
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mode: reverse proxy to 1 upstream(s)"),
        "{err}"
    );
    drop(idp);
}

/// Issue 11: an oauth2-proxy deployment's environment works unchanged:
/// `OAUTH2_PROXY_*` variables are aliases (with oauth2-proxy's names), and
/// a `GATEHOUSE_*` variable wins over its alias.
#[test]
fn oauth2_proxy_environment_variables_configure_gatehouse_and_gatehouse_ones_win() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    // the file has none of these: they come from the environment alone
    let file: String = valid_at(&idp, None)
        .lines()
        .filter(|l| {
            !["client_secret", "cookie_secret", "email_domain"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let path = write_config("oauth2-proxy-env.toml", &file);
    let cfg = path.to_str().unwrap();
    let upstream = rt.block_on(Recorder::start());
    let upstreams = format!("{}/api/", upstream.url());
    let env = [
        ("OAUTH2_PROXY_CLIENT_SECRET", "env-client-secret-42"),
        (
            "OAUTH2_PROXY_COOKIE_SECRET",
            "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=",
        ),
        ("OAUTH2_PROXY_EMAIL_DOMAINS", "example.com,example.org"),
        ("OAUTH2_PROXY_UPSTREAMS", upstreams.as_str()),
    ];
    let out = run(&["--config", cfg, "--check-config"], &env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mode: reverse proxy to 1 upstream(s)"),
        "{err}"
    );
    assert!(!err.contains("env-client-secret-42"), "{err}");

    // the oauth2-proxy name is read, and GATEHOUSE_ wins over it
    let alias = [("OAUTH2_PROXY_HTTP_ADDRESS", "from-oauth2-proxy")];
    let err = stderr(&run(&["--config", cfg], &[&env[..], &alias[..]].concat()));
    assert!(err.contains("`from-oauth2-proxy`"), "{err}");
    let both = [
        ("OAUTH2_PROXY_HTTP_ADDRESS", "from-oauth2-proxy"),
        ("GATEHOUSE_HTTP_ADDRESS", "from-gatehouse"),
    ];
    let err = stderr(&run(&["--config", cfg], &[&env[..], &both[..]].concat()));
    assert!(err.contains("`from-gatehouse`"), "{err}");
    assert!(!err.contains("from-oauth2-proxy"), "{err}");

    // a feature gatehouse lacks: refused, naming the variable
    let lacking = [("OAUTH2_PROXY_GITHUB_ORG", "acme")];
    let out = run(&["--config", cfg], &[&env[..], &lacking[..]].concat());
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(
        err.contains(
            "OAUTH2_PROXY_GITHUB_ORG: the oauth2-proxy setting `github_org` is not supported yet"
        ),
        "{err}"
    );
    drop(idp);
}

/// Issue 11: `--check-config` warns when the provider would send browsers
/// back to a host where gatehouse is surely not reached.
#[test]
fn check_config_warns_of_a_loopback_redirect_url_while_listening_for_other_machines() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let text = format!(
        "{}\nhttp_address = \"0.0.0.0:4180\"\n",
        valid_at(&idp, Some(&upstream.url()))
    );
    let path = write_config("redirect-loopback.toml", &text);
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not a refusal: {err}"
    );
    assert!(
        err.contains("warning: redirect_url: its host `127.0.0.1` is the browser's own machine"),
        "{err}"
    );
    let row = err
        .lines()
        .find(|l| l.contains("redirect_url host is where gatehouse is"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(row.contains("warning"), "{row}");
    drop(idp);
}

#[test]
fn check_config_names_each_routes_providers_and_each_provider_not_discovered() {
    let text = format!(
        r#"{VALID}
[[providers]]
id = "partners"
oidc_issuer_url = "http://127.0.0.1:9/partners"
client_id = "gatehouse-partners"
client_secret = "another-secret-value"

[[routes]]
path = "/staff"
provider = "default"

[[routes]]
path = "/shared"
providers = ["partners", "default"]
"#
    );
    let path = write_config("two-providers.toml", &text);
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    assert!(
        err.contains("path /staff -> signed in, provider default\n"),
        "{err}"
    );
    assert!(
        err.contains("path /shared -> signed in, provider default or partners\n"),
        "{err}"
    );
    assert!(err.contains("any path -> signed in\n"), "{err}");
    for id in ["default", "partners"] {
        let row = probe_row(&err, &format!("provider {id} discovery (oidc_issuer_url)"));
        assert!(row.contains(" FAILED "), "{row}");
    }
    assert!(!err.contains("another-secret-value"), "{err}");
}

/// The row of `--check-config`'s probe table that starts with `what`.
fn probe_row(err: &str, what: &str) -> String {
    err.lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no probe row `{what}` in:\n{err}"))
        .to_owned()
}

/// A loopback address where nothing listens.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `VALID` at `idp`, proxying to `upstream`, with Redis at `redis_port`.
fn probed_config(idp: &MockIdp, upstream: &str, redis_port: u16) -> String {
    format!(
        "{}\nredis_connection_url = \"redis://127.0.0.1:{redis_port}/0\"\n",
        valid_at(idp, Some(upstream))
    )
}

/// Issue 12, item 8: `--check-config` asks each thing the configuration
/// names whether it answers, and prints a row for each: all up, all `ok`
/// and exit 0. The token endpoint is reached without any credential.
#[test]
fn check_config_probes_the_provider_endpoints_the_upstream_and_redis_and_all_up_is_ok() {
    if !support::redis::redis_available(
        "check_config_probes_the_provider_endpoints_the_upstream_and_redis_and_all_up_is_ok",
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let redis = rt.block_on(support::redis::RedisServer::start());
    let path = write_config(
        "probes-up.toml",
        &probed_config(&idp, &format!("{}/app/", upstream.url()), redis.port()),
    );
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let issuer = idp.issuer();
    for (what, detail) in [
        (
            "provider default discovery (oidc_issuer_url)".to_owned(),
            "answered".to_owned(),
        ),
        (
            format!("provider default JWKS {issuer}"),
            "usable key(s)".to_owned(),
        ),
        (
            format!("provider default token endpoint {issuer}"),
            "to a request without credentials".to_owned(),
        ),
        (
            format!("upstream {}/ ", upstream.url()),
            "answered 200".to_owned(),
        ),
        (
            format!("redis redis://127.0.0.1:{} ", redis.port()),
            "answered PONG".to_owned(),
        ),
    ] {
        let row = probe_row(&err, &what);
        assert!(
            row.contains(" ok ") && row.contains(&detail),
            "{row}\n{err}"
        );
    }
    assert!(!err.contains("FAILED"), "{err}");
    // the upstream was asked for `/`, not its base path
    assert_eq!(
        upstream.requests_to("/").len(),
        1,
        "{:?}",
        upstream.requests()
    );
    // the token endpoint got no client credential and no grant it knows
    let tokens = idp.token_requests();
    assert_eq!(tokens.len(), 1, "one probe");
    let t = &tokens[0];
    assert!(t.headers.get("authorization").is_none(), "{:?}", t.headers);
    assert!(
        !t.body.contains("client_secret") && !t.body.contains("super-secret-value"),
        "{}",
        t.body
    );
    assert!(!t.body.contains("authorization_code"), "{}", t.body);
    drop(redis);
}

/// Issue 12, item 8: each thing down is its own `FAILED` row naming it and
/// why, and any one of them makes the exit non-zero.
#[test]
fn check_config_names_a_down_upstream_a_down_redis_and_a_jwks_404_as_failed_rows_and_exits_non_zero()
 {
    if !support::redis::redis_available(
        "check_config_names_a_down_upstream_a_down_redis_and_a_jwks_404",
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let upstream = rt.block_on(Recorder::start());
    let redis = rt.block_on(support::redis::RedisServer::start());
    let redis_port = redis.port();
    let live = upstream.url();
    let down = format!("http://127.0.0.1:{}", closed_port());
    let check = |name: &str, upstream: &str, redis_port: u16| {
        let path = write_config(name, &probed_config(&idp, upstream, redis_port));
        run(&["--config", path.to_str().unwrap(), "--check-config"], &[])
    };

    // all up first, so each failure below is its own
    let out = check("probes-baseline.toml", &live, redis_port);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // the upstream is down
    let out = check("probes-upstream-down.toml", &down, redis_port);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    let row = probe_row(&err, &format!("upstream {down}/"));
    assert!(row.contains(" FAILED ") && row.contains("refused"), "{row}");
    assert_eq!(err.matches("  FAILED  ").count(), 1, "only that row: {err}");
    assert!(err.contains("1 probe(s) FAILED"), "{err}");

    // Redis is down
    let redis_down = closed_port();
    let out = check("probes-redis-down.toml", &live, redis_down);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    let row = probe_row(&err, &format!("redis redis://127.0.0.1:{redis_down}"));
    assert!(row.contains(" FAILED "), "{row}");
    assert_eq!(err.matches("  FAILED  ").count(), 1, "only that row: {err}");

    // the JWKS answers 404: its row names the URL and the status
    idp.set_knobs(|k| k.jwks_status = Some(404));
    let out = check("probes-jwks-404.toml", &live, redis_port);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    let row = probe_row(&err, &format!("provider default JWKS {}", idp.issuer()));
    assert!(row.contains(" FAILED ") && row.contains("404"), "{row}");
    assert_eq!(err.matches("  FAILED  ").count(), 1, "only that row: {err}");

    // the token endpoint fails (5xx is not a token endpoint at work)
    idp.set_knobs(|k| {
        k.jwks_status = None;
        k.token_endpoint_status = Some(503);
    });
    let out = check("probes-token-503.toml", &live, redis_port);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    let row = probe_row(
        &err,
        &format!("provider default token endpoint {}", idp.issuer()),
    );
    assert!(row.contains(" FAILED ") && row.contains("503"), "{row}");

    // everything down at once: a row for each, none left out
    idp.set_knobs(|k| {
        k.token_endpoint_status = None;
        k.jwks_status = Some(404);
    });
    let out = check("probes-all-down.toml", &down, redis_down);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{err}");
    assert!(err.contains("3 probe(s) FAILED"), "{err}");
    drop(redis);
    drop(idp);
}

// === --version and the page templates ===

#[test]
fn version_prints_the_version_and_the_build() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("gatehouse {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let facts: Vec<(&str, &str)> = lines.map(|l| l.split_once(": ").unwrap()).collect();
    let keys: Vec<&str> = facts.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["commit", "rustc", "target", "profile"], "{text}");
    let value = |k: &str| facts.iter().find(|(key, _)| *key == k).unwrap().1;
    assert!(value("rustc").starts_with("rustc 1."), "{text}");
    assert_eq!(value("target"), gatehouse::build_info::TARGET);
    assert_ne!(value("target"), "unknown", "{text}");
    assert_eq!(value("profile"), gatehouse::build_info::PROFILE);
    assert_eq!(value("commit"), gatehouse::build_info::GIT_COMMIT);
    assert!(
        value("commit") == "unknown" || value("commit").bytes().all(|b| b.is_ascii_hexdigit()),
        "{text}"
    );
}

#[test]
fn a_template_that_does_not_parse_stops_the_binary_naming_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("gatehouse-bad-templates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("error.html"),
        "<h1>{{ title }}</h1>\n<p>{{ what }}</p>\n{% if reference %}<p>{{ reference }</p>\n",
    )
    .unwrap();
    let cfg = write_config("bad-template.toml", VALID);
    let out = run(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--custom-templates-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("custom_templates_dir"), "{err}");
    assert!(err.contains("error.html, line 3"), "{err}");
    // a directory that is not there is named too
    let out = run(
        &["--config", cfg.to_str().unwrap()],
        &[(
            "GATEHOUSE_CUSTOM_TEMPLATES_DIR",
            "/nonexistent/gatehouse-templates",
        )],
    );
    assert_eq!(out.status.code(), Some(EX_CONFIG), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("custom_templates_dir") && err.contains("/nonexistent/gatehouse-templates"),
        "{err}"
    );
}

/// A loopback listener that answers every connection with `answer` (or,
/// with `None`, accepts and says nothing, holding the connection open).
fn odd_upstream(answer: Option<&'static [u8]>) -> String {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            match answer {
                Some(bytes) => {
                    let _ = s.write_all(bytes);
                }
                None => held.push(s),
            }
        }
    });
    url
}

/// Hostile or broken upstreams make `FAILED` rows, never a panic or a hang:
/// one that answers something other than HTTP, and one that never answers
/// (the probe gives up after its 5 s).
#[test]
fn check_config_fails_an_upstream_that_answers_garbage_or_never_answers_without_hanging() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    for (name, answer, reason) in [
        (
            "garbage",
            Some(&b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\r\n\r\n"[..]),
            "",
        ),
        ("silent", None, "no answer within"),
    ] {
        let url = odd_upstream(answer);
        let path = write_config(&format!("probe-{name}.toml"), &valid_at(&idp, Some(&url)));
        let started = std::time::Instant::now();
        let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(EX_CONFIG), "{name}: {err}");
        let row = probe_row(&err, &format!("upstream {url}/"));
        assert!(
            row.contains("  FAILED  ") && row.contains(reason),
            "{name}: {row}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{name}: took {:?}",
            started.elapsed()
        );
    }
    drop(idp);
}
