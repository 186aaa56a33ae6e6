use super::*;

const MINIMAL: &str = r#"
upstream = "http://127.0.0.1:8080"
oidc_issuer_url = "https://idp.example.com/realms/main"
client_id = "gatehouse"
client_secret = "s3cret"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "0123456789abcdef0123456789abcdef"
email_domain = ["*"]
"#;

fn keys(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn a_minimal_config_gets_the_defaults() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.http_address.to_string(), "127.0.0.1:4180");
    assert_eq!(c.cookie.name, "_gatehouse");
    assert!(c.cookie.secure);
    assert_eq!(c.cookie.expire, Duration::from_secs(168 * 3600));
    assert_eq!(c.scopes, ["openid", "email", "profile"]);
    assert_eq!(c.email_domains, EmailDomains::Any);
    assert_eq!(c.upstreams[0].prefix, "/");
    assert!(!c.pass_access_token);
    assert_eq!(c.trusted_proxies.len(), 2);
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "secrets must not show in Debug"
    );
}

#[test]
fn unknown_keys_fail_naming_the_key() {
    let err = Config::from_toml_str(&format!("{MINIMAL}\ncookie_secert = \"x\"\n")).unwrap_err();
    assert_eq!(keys(&err), ["cookie_secert"]);
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = Config::from_toml_str(
        r#"
        http_address = "nope"
        upstream = ["ftp://x"]
        redirect_url = "http://app.example.com/wrong"
        cookie_secret = "short"
        cookie_expire = "forever"
        log_format = "xml"
        "#,
    )
    .unwrap_err();
    let k = keys(&err);
    for key in [
        "http_address",
        "upstream",
        "oidc_issuer_url",
        "client_id",
        "redirect_url",
        "cookie_secret",
        "cookie_expire",
        "email_domain",
        "log_format",
    ] {
        assert!(k.contains(&key), "{key} missing from {k:?}");
    }
}

#[test]
fn type_errors_name_the_key() {
    let err = Config::from_toml_str(&format!("{MINIMAL}\ncookie_secure = \"yes\"\n")).unwrap_err();
    assert_eq!(keys(&err), ["cookie_secure"], "{err}");
}

#[test]
fn plain_http_redirect_needs_cookie_secure_off_unless_loopback() {
    let cfg = MINIMAL.replace(
        "https://app.example.com/oauth2/callback",
        "http://app.example.com/oauth2/callback",
    );
    let err = Config::from_toml_str(&cfg).unwrap_err();
    assert_eq!(keys(&err), ["redirect_url"]);
    assert!(Config::from_toml_str(&format!("{cfg}\ncookie_secure = false\n")).is_ok());
    let lo = MINIMAL.replace(
        "https://app.example.com/oauth2/callback",
        "http://127.0.0.1:4180/oauth2/callback",
    );
    assert!(Config::from_toml_str(&lo).is_ok());
}

#[test]
fn upstreams_route_by_longest_prefix() {
    let cfg = MINIMAL.replace(
        "upstream = \"http://127.0.0.1:8080\"",
        "upstream = [\"http://127.0.0.1:8080\", \"/api=http://127.0.0.1:9090\", \"/api/v2=http://127.0.0.1:9191\"]",
    );
    let c = Config::from_toml_str(&cfg).unwrap();
    let prefixes: Vec<&str> = c.upstreams.iter().map(|u| u.prefix.as_str()).collect();
    assert_eq!(prefixes, ["/api/v2", "/api", "/"]);
    for bad in ["\"api=http://x\"", "\"/a=notaurl\"", "\"http://x/?q=1\""] {
        let cfg = MINIMAL.replace("\"http://127.0.0.1:8080\"", bad);
        assert_eq!(
            keys(&Config::from_toml_str(&cfg).unwrap_err()),
            ["upstream"],
            "{bad}"
        );
    }
}

#[test]
fn cookie_secrets_accept_raw_and_base64_of_the_right_length() {
    for ok in [
        "0123456789abcdef0123456789abcdef",
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "0123456789abcdef",
    ] {
        assert!(cookie_secret_bytes(&Secret::new(ok)).is_ok(), "{ok}");
    }
    for bad in ["", "short", "0123456789abcdef0123456789abcdef0"] {
        assert!(cookie_secret_bytes(&Secret::new(bad)).is_err(), "{bad}");
    }
}

#[test]
fn higher_sources_override_lower_ones() {
    let file: RawConfig = toml::from_str(MINIMAL).unwrap();
    let cli = RawConfig {
        client_id: Some("from-flag".into()),
        email_domain: vec!["example.com".into()],
        ..RawConfig::default()
    };
    let c = Config::from_raw(file.overlay(cli)).unwrap();
    assert_eq!(c.client_id, "from-flag");
    assert_eq!(
        c.email_domains,
        EmailDomains::List(vec!["example.com".into()])
    );
    assert_eq!(
        c.upstreams.len(),
        1,
        "lists not given on the higher source stay"
    );
}

#[test]
fn flags_beat_env_vars_and_env_vars_beat_the_file() {
    use clap::Parser as _;
    // clap reads env vars itself; here the env is given through a flag-less
    // parse of an explicit argument list, never by mutating the process env
    let cli = crate::cli::Cli::try_parse_from([
        "gatehouse",
        "--client-id",
        "flag",
        "--cookie-secure=false",
    ])
    .unwrap();
    assert_eq!(cli.settings.client_id.as_deref(), Some("flag"));
    assert_eq!(cli.settings.cookie_secure, Some(false));
    let cli = crate::cli::Cli::try_parse_from(["gatehouse", "--cookie-secure"]).unwrap();
    assert_eq!(cli.settings.cookie_secure, Some(true));
}

#[test]
fn secrets_from_files() {
    let dir = std::env::temp_dir().join(format!("gatehouse-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("client-secret");
    std::fs::write(&secret, "from-file\n").unwrap();
    let cfg = MINIMAL.replace(
        "client_secret = \"s3cret\"",
        &format!("client_secret_file = {:?}", secret.display().to_string()),
    );
    let c = Config::from_toml_str(&cfg).unwrap();
    assert_eq!(c.client_secret.unwrap().expose(), "from-file");
    let missing = MINIMAL.replace(
        "client_secret = \"s3cret\"",
        "client_secret_file = \"/nonexistent/x\"",
    );
    assert_eq!(
        keys(&Config::from_toml_str(&missing).unwrap_err()),
        ["client_secret_file"]
    );
}

#[test]
fn durations_parse() {
    assert_eq!(
        parse_duration("168h").unwrap(),
        Duration::from_secs(168 * 3600)
    );
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    for bad in ["", "0s", "h", "10", "10x", "-5s", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}
