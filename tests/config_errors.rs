//! The binary's start-up: bad configuration fails before listening, naming
//! the key and the reason; precedence flag > env > file; `--check-config`;
//! every example config loads.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::idp::{IdpOptions, MockIdp};

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

/// Runs the binary with a clean `GATEHOUSE_*` environment plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("GATEHOUSE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
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
cookie_secret = "0123456789abcdef0123456789abcdef"
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
        err.contains("cookie_secert") && err.contains("unknown field"),
        "{err}"
    );
}

#[test]
fn missing_settings_are_all_named_and_secrets_never_printed() {
    let out = run(&["--client-secret", "super-secret-value"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    let err = stderr(&out);
    for key in [
        "upstream",
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

#[test]
fn every_setting_can_come_from_the_environment() {
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
            "0123456789abcdef0123456789abcdef",
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
fn check_config_fetches_discovery() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let idp = rt.block_on(MockIdp::start(IdpOptions::default()));
    let path = write_config(
        "check-ok.toml",
        &VALID.replace(
            "oidc_issuer_url = \"http://127.0.0.1:9\"",
            &format!("oidc_issuer_url = \"{}\"", idp.issuer()),
        ),
    );
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(idp.discovery_fetches() >= 1);

    // the provider is unreachable: named, non-zero
    let path = write_config("check-down.toml", VALID);
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(EX_CONFIG));
    assert!(stderr(&out).contains("oidc_issuer_url"), "{}", stderr(&out));
    drop(idp);
}

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = gatehouse::Config::from_toml_str(&text) {
                panic!("{} does not load: {e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example configs found in {}", dir.display());
}
