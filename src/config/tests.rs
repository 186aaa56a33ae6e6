use super::*;
use crate::auth::providers::{IdentitySource, OtherAudiences, TokenAuthMethod, TokenEncoding};

const MINIMAL: &str = r#"
upstream = "http://127.0.0.1:8080"
oidc_issuer_url = "https://idp.example.com/realms/main"
client_id = "gatehouse"
client_secret = "s3cret"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg="
email_domain = ["*"]
"#;

fn keys(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn a_minimal_config_gets_the_defaults() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.http_address.to_string(), "127.0.0.1:4180");
    assert_eq!(c.cookie.name, "__Host-gatehouse");
    assert!(c.cookie.secure);
    assert_eq!(c.cookie.expire, Duration::from_secs(168 * 3600));
    assert_eq!(c.provider.scopes, ["openid", "email", "profile"]);
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
    assert!(err.to_string().contains("unknown key"), "{err}");
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
fn flags_fill_the_settings_and_a_bare_bool_flag_means_true() {
    use clap::Parser as _;
    // flags only: the precedence flag > env > file is checked end to end
    // against the binary in tests/binary.rs, without mutating this
    // process's environment
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

    // cookie secrets: one per line, blank lines skipped, after any given inline
    let cookie = dir.join("cookie-secrets");
    std::fs::write(
        &cookie,
        "\nLh1Y6uQ+3v0wK8ZrJm5tQ2c9XbNfPa7sDg4eR1iHyWo=\n  \nq7Vw3FJ0yTnS5bXkP2mHcA8LrZdE6uGQo1iN4sKvYfM=\n",
    )
    .unwrap();
    let cfg = format!(
        "{MINIMAL}\ncookie_secret_file = {:?}\n",
        cookie.display().to_string()
    );
    let c = Config::from_toml_str(&cfg).unwrap();
    let secrets: Vec<&str> = c.cookie.secrets.iter().map(Secret::expose).collect();
    assert_eq!(
        secrets,
        [
            "2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=",
            "Lh1Y6uQ+3v0wK8ZrJm5tQ2c9XbNfPa7sDg4eR1iHyWo=",
            "q7Vw3FJ0yTnS5bXkP2mHcA8LrZdE6uGQo1iN4sKvYfM=",
        ]
    );
    let only_file = MINIMAL.replace(
        "cookie_secret = \"2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=\"",
        &format!("cookie_secret_file = {:?}", cookie.display().to_string()),
    );
    assert_eq!(
        Config::from_toml_str(&only_file)
            .unwrap()
            .cookie
            .secrets
            .len(),
        2
    );
    let bad = dir.join("cookie-bad");
    std::fs::write(&bad, "too-short\n").unwrap();
    let cfg = MINIMAL.replace(
        "cookie_secret = \"2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=\"",
        &format!("cookie_secret_file = {:?}", bad.display().to_string()),
    );
    assert_eq!(
        keys(&Config::from_toml_str(&cfg).unwrap_err()),
        ["cookie_secret"]
    );
    let missing = MINIMAL.replace(
        "cookie_secret = \"2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=\"",
        "cookie_secret_file = \"/nonexistent/y\"",
    );
    let k = keys(&Config::from_toml_str(&missing).unwrap_err()).join(",");
    assert!(k.contains("cookie_secret_file"), "{k}");
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

#[test]
fn provider_presets_fill_defaults_and_settings_win() {
    let zk = MINIMAL.replace(
        "oidc_issuer_url = \"https://idp.example.com/realms/main\"\n",
        "provider = \"zkauth\"\n",
    );
    let c = Config::from_toml_str(&zk).unwrap();
    assert_eq!(c.provider.issuer, "https://api.zkauth.tech");
    assert!(!c.provider.discovery && !c.provider.oidc);
    assert_eq!(c.provider.encoding, TokenEncoding::Json);
    assert_eq!(c.provider.identity_source, IdentitySource::AccessToken);
    assert_eq!(
        c.provider.token_url.as_ref().unwrap().as_str(),
        "https://api.zkauth.tech/api/oauth/token"
    );
    assert!(c.provider.scopes.is_empty());
    // a public client: no secret means no client auth
    let public = zk.replace("client_secret = \"s3cret\"\n", "");
    assert_eq!(
        Config::from_toml_str(&public).unwrap().provider.auth_method,
        TokenAuthMethod::None
    );

    let kc = MINIMAL.replace(
        "issuer_url = \"https://idp.example.com/realms/main\"",
        "issuer_url = \"https://kc.example.com/realms/main/\"\nprovider = \"ztrust\"",
    );
    let c = Config::from_toml_str(&kc).unwrap();
    assert_eq!(
        c.provider.issuer, "https://kc.example.com/realms/main",
        "keycloak issuers have no trailing slash"
    );
    assert!(c.provider.verify_access_token && c.provider.access_token_azp_audience);

    let a0 = MINIMAL.replace("issuer_url = \"https://idp.example.com/realms/main\"", "issuer_url = \"https://t.eu.auth0.com\"\nprovider = \"auth0\"\naudience = \"https://api.example.com\"");
    let c = Config::from_toml_str(&a0).unwrap();
    assert_eq!(
        c.provider.issuer, "https://t.eu.auth0.com/",
        "auth0 issuers end with a slash"
    );
    assert!(
        c.provider.verify_access_token,
        "an audience makes the access token a JWT to verify"
    );

    let pa = MINIMAL.replace("issuer_url = \"https://idp.example.com/realms/main\"", "issuer_url = \"https://x.withpassage.com\"\nprovider = \"passage\"\ntoken_endpoint_auth_method = \"client_secret_post\"");
    let c = Config::from_toml_str(&pa).unwrap();
    assert_eq!(
        c.provider.auth_method,
        TokenAuthMethod::Post,
        "the operator's setting wins"
    );
    assert_eq!(c.provider.other_audiences, OtherAudiences::AnyWithAzp);
}

#[test]
fn provider_settings_are_validated() {
    let bad = [
        ("provider = \"okta\"", "provider"),
        (
            "token_endpoint_auth_method = \"magic\"",
            "token_endpoint_auth_method",
        ),
        ("token_request_encoding = \"xml\"", "token_request_encoding"),
        ("identity_source = \"cookie\"", "identity_source"),
        ("claim_header = \"X-Forwarded-User=email\"", "claim_header"),
        ("claim_header = \"no-equals\"", "claim_header"),
        ("claim_header = \"Upgrade=email\"", "claim_header"),
        ("claim_header = \"TE=email\"", "claim_header"),
        ("claim_header = \"Trailer=email\"", "claim_header"),
        ("claim_header = \"Expect=email\"", "claim_header"),
        (
            "claim_header = \"Proxy-Authorization=email\"",
            "claim_header",
        ),
        ("claim_header = \"X-Client-IP=email\"", "claim_header"),
        ("skip_oidc_discovery = true", "oidc_authorize_url"),
        ("scope = \"email\"", "scope"),
    ];
    for (line, key) in bad {
        let err = Config::from_toml_str(&format!("{MINIMAL}\n{line}\n")).unwrap_err();
        assert!(keys(&err).contains(&key), "{line}: {err}");
    }
    let public = MINIMAL.replace("client_secret = \"s3cret\"\n", "");
    let err = Config::from_toml_str(&format!(
        "{public}\ntoken_endpoint_auth_method = \"client_secret_basic\"\n"
    ))
    .unwrap_err();
    assert_eq!(keys(&err), ["token_endpoint_auth_method"]);
    let ok = Config::from_toml_str(&format!(
        "{MINIMAL}\nclaim_header = [\"X-Forwarded-Phone=phone_number\"]\n"
    ))
    .unwrap();
    assert_eq!(ok.claim_headers[0].header.as_str(), "x-forwarded-phone");
}

#[test]
fn the_session_store_defaults_to_cookies_without_redis() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.session_store.kind, SessionStoreKind::Cookie);
    assert!(c.session_store.redis.is_none());
}

#[test]
fn redis_settings_build_each_topology() {
    let single = Config::from_toml_str(&format!(
        "{MINIMAL}\nsession_store_type = \"redis\"\nredis_connection_url = \"rediss://cache.internal:6380/2\"\nredis_password = \"pw\"\n"
    ))
    .unwrap();
    assert_eq!(single.session_store.kind, SessionStoreKind::Redis);
    let redis = single.session_store.redis.as_ref().unwrap();
    assert!(
        matches!(&redis.topology, RedisTopology::Single(u) if u.as_str() == "rediss://cache.internal:6380/2")
    );
    assert_eq!(redis.password.as_ref().map(Secret::expose), Some("pw"));
    assert!(
        !format!("{single:?}").contains("\"pw\""),
        "password not in Debug"
    );

    let sentinel = Config::from_toml_str(&format!(
        "{MINIMAL}\nredis_use_sentinel = true\nredis_sentinel_master_name = \"mymaster\"\nredis_sentinel_connection_urls = [\"redis://s1:26379\", \"redis://s2:26379\"]\n"
    ))
    .unwrap();
    assert_eq!(sentinel.session_store.kind, SessionStoreKind::Cookie);
    assert!(matches!(
        &sentinel.session_store.redis.as_ref().unwrap().topology,
        RedisTopology::Sentinel { master, urls } if master == "mymaster" && urls.len() == 2
    ));

    let cluster = Config::from_toml_str(&format!(
        "{MINIMAL}\nsession_store_type = \"redis\"\nredis_use_cluster = true\nredis_cluster_connection_urls = \"redis://n1:7000\"\n"
    ))
    .unwrap();
    assert!(matches!(
        &cluster.session_store.redis.as_ref().unwrap().topology,
        RedisTopology::Cluster(urls) if urls.len() == 1
    ));
}

#[test]
fn bad_session_store_settings_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "session_store_type = \"memcached\"",
            "session_store_type",
            "expected `cookie` or `redis`",
        ),
        (
            "session_store_type = \"redis\"",
            "session_store_type",
            "needs redis_connection_url",
        ),
        (
            "redis_connection_url = \"http://cache:6379\"",
            "redis_connection_url",
            "scheme `http`",
        ),
        (
            "redis_connection_url = \"not a url\"",
            "redis_connection_url",
            "not a URL",
        ),
        (
            "redis_use_sentinel = true\nredis_sentinel_connection_urls = [\"redis://s:26379\"]",
            "redis_sentinel_master_name",
            "required",
        ),
        (
            "redis_use_sentinel = true\nredis_sentinel_master_name = \"m\"",
            "redis_sentinel_connection_urls",
            "required",
        ),
        (
            "redis_use_cluster = true",
            "redis_cluster_connection_urls",
            "required",
        ),
        (
            "redis_use_cluster = true\nredis_use_sentinel = true",
            "redis_use_cluster",
            "exclude each other",
        ),
        (
            "redis_connection_url = \"redis://c:6379\"\nredis_password = \"a\"\nredis_password_file = \"/nonexistent\"",
            "redis_password_file",
            "not both",
        ),
    ];
    for (extra, key, reason) in cases {
        let err = Config::from_toml_str(&format!("{MINIMAL}\n{extra}\n")).unwrap_err();
        let p = err
            .problems
            .iter()
            .find(|p| p.key == *key)
            .unwrap_or_else(|| panic!("{extra}: no problem for {key}: {err}"));
        assert!(p.reason.contains(reason), "{extra}: {}", p.reason);
    }
}

#[test]
fn the_cookie_name_takes_the_host_prefix_only_where_browsers_honour_it() {
    // (extra settings, the name chosen, or the problem's key)
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("", Ok("__Host-gatehouse")),
        ("cookie_secure = false", Ok("_gatehouse")),
        ("cookie_domain = \".example.com\"", Ok("_gatehouse")),
        ("cookie_name = \"sid\"", Ok("sid")),
        ("cookie_name = \"__Host-x\"", Ok("__Host-x")),
        ("cookie_name = \"__Secure-x\"", Ok("__Secure-x")),
        (
            "cookie_name = \"__Secure-x\"\ncookie_domain = \".example.com\"",
            Ok("__Secure-x"),
        ),
        (
            "cookie_name = \"__Host-x\"\ncookie_secure = false",
            Err("cookie_name"),
        ),
        (
            "cookie_name = \"__host-x\"\ncookie_secure = false",
            Err("cookie_name"),
        ),
        (
            "cookie_name = \"__Host-x\"\ncookie_domain = \".example.com\"",
            Err("cookie_name"),
        ),
        (
            "cookie_name = \"__Secure-x\"\ncookie_secure = false",
            Err("cookie_name"),
        ),
        (
            "cookie_name = \"__SECURE-x\"\ncookie_secure = false",
            Err("cookie_name"),
        ),
    ];
    for (extra, want) in cases {
        let toml = format!("{MINIMAL}\n{extra}\n");
        match (Config::from_toml_str(&toml), want) {
            (Ok(c), Ok(name)) => assert_eq!(c.cookie.name, *name, "{extra}"),
            (Err(e), Err(key)) => {
                assert_eq!(keys(&e), [*key], "{extra}");
                assert!(
                    e.to_string().contains("cookie_secure")
                        || e.to_string().contains("cookie_domain"),
                    "{e}"
                );
            }
            (got, _) => panic!("{extra}: got {got:?}, want {want:?}"),
        }
    }
}

/// `MINIMAL` with its cookie secret replaced by `secrets` (TOML list items).
fn with_cookie_secrets(secrets: &[&str]) -> String {
    let list: Vec<String> = secrets.iter().map(|s| format!("{s:?}")).collect();
    MINIMAL.replace(
        "cookie_secret = \"2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=\"",
        &format!("cookie_secret = [{}]", list.join(", ")),
    )
}

fn only_problem(cfg: &str) -> Problem {
    let err = Config::from_toml_str(cfg).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    err.problems[0].clone()
}

#[test]
fn published_and_low_entropy_cookie_secrets_refuse_to_start_naming_the_key() {
    for (secret, why) in [
        (
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            "published example",
        ),
        ("0123456789abcdef0123456789abcdef", "published example"),
        (
            "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMzI=",
            "published example",
        ),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "repeated"),
        // valid base64 too: 24 bytes repeating 3
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "pattern"),
        ("abcdefghijklmnopqrstuvwxyzABCDEF", "sequence"),
        ("b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItMzI=", "distinct"),
        ("CHANGE-ME: openssl rand -base64 32", "placeholder"),
    ] {
        let p = only_problem(&with_cookie_secrets(&[secret]));
        assert_eq!(p.key, "cookie_secret", "{secret}");
        assert!(p.reason.contains(why), "{secret}: {}", p.reason);
        assert!(
            p.reason.contains("openssl rand -base64 32"),
            "{secret}: says how to make one: {}",
            p.reason
        );
        assert!(!p.reason.contains(secret), "the reason echoes the secret");
    }
}

#[test]
fn every_secret_of_a_rotation_list_is_checked() {
    let good = "2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg=";
    let p = only_problem(&with_cookie_secrets(&[
        good,
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ]));
    assert!(p.reason.starts_with("secret #2:"), "{}", p.reason);
    assert!(
        Config::from_toml_str(&with_cookie_secrets(&[
            good,
            "Lh1Y6uQ+3v0wK8ZrJm5tQ2c9XbNfPa7sDg4eR1iHyWo="
        ]))
        .is_ok()
    );
}

#[test]
fn a_weak_cookie_secret_in_a_secret_file_is_refused_too() {
    let dir = std::env::temp_dir().join(format!("gatehouse-weak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cookie");
    std::fs::write(&file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let cfg = format!(
        "{MINIMAL}\ncookie_secret_file = {:?}\n",
        file.display().to_string()
    );
    let p = only_problem(&cfg);
    assert_eq!(p.key, "cookie_secret");
    assert!(p.reason.starts_with("secret #2:"), "{}", p.reason);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_placeholder_client_secret_refuses_to_start() {
    for placeholder in ["replace-me", "CHANGE-ME: from your provider", "changeme"] {
        let cfg = MINIMAL.replace(
            "client_secret = \"s3cret\"",
            &format!("client_secret = {placeholder:?}"),
        );
        let p = only_problem(&cfg);
        assert_eq!(p.key, "client_secret", "{placeholder}");
        assert!(p.reason.contains("placeholder"), "{}", p.reason);
    }
}

/// `MINIMAL` with `key = url` added (or the issuer replaced).
fn with_provider_url(key: &str, url: &str) -> String {
    if key == "oidc_issuer_url" {
        MINIMAL.replace("https://idp.example.com/realms/main", url)
    } else {
        format!("{MINIMAL}\n{key} = {url:?}\n")
    }
}

const PROVIDER_URL_KEYS: [&str; 6] = [
    "oidc_issuer_url",
    "oidc_authorize_url",
    "oidc_token_url",
    "oidc_jwks_url",
    "oidc_userinfo_url",
    "oidc_end_session_url",
];

#[test]
fn plain_http_provider_urls_off_loopback_are_refused_naming_key_and_setting() {
    for key in PROVIDER_URL_KEYS {
        for url in [
            "http://idp.example.com/realms/main",
            "http://keycloak:8080/realms/main",
            "http://10.0.0.5/x",
            "http://[2001:db8::1]/x",
            "http://localhost.example.com/x",
            "http://128.0.0.1/x",
        ] {
            let p = only_problem(&with_provider_url(key, url));
            assert_eq!(p.key, key, "{url}");
            assert!(
                p.reason.contains("insecure_oidc_allow_http"),
                "{}",
                p.reason
            );
            assert!(p.reason.contains("plain http"), "{}", p.reason);
        }
    }
}

#[test]
fn the_websocket_session_check_defaults_to_5s_and_must_be_a_positive_duration() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.session_store.tunnel_check, Duration::from_secs(5));
    let c = Config::from_toml_str(&format!("{MINIMAL}\nwebsocket_session_check = \"250ms\"\n"))
        .unwrap();
    assert_eq!(c.session_store.tunnel_check, Duration::from_millis(250));
    for bad in ["0s", "soon", ""] {
        let err =
            Config::from_toml_str(&format!("{MINIMAL}\nwebsocket_session_check = \"{bad}\"\n"))
                .unwrap_err();
        assert_eq!(keys(&err), ["websocket_session_check"], "{bad:?}");
    }
}

#[test]
fn plain_http_provider_urls_on_loopback_are_accepted() {
    for key in PROVIDER_URL_KEYS {
        for url in [
            "http://127.0.0.1:8080/realms/main",
            "http://127.9.8.7/realms/main",
            "http://localhost:8080/realms/main",
            "http://LOCALHOST/realms/main",
            "http://[::1]:8080/realms/main",
            "http://[::ffff:127.0.0.1]/realms/main",
            "https://idp.example.com/realms/main",
        ] {
            let cfg = with_provider_url(key, url);
            assert!(Config::from_toml_str(&cfg).is_ok(), "{key} = {url}");
        }
    }
}

#[test]
fn insecure_oidc_allow_http_lets_plain_http_providers_through() {
    for key in PROVIDER_URL_KEYS {
        let cfg = format!(
            "{}\ninsecure_oidc_allow_http = true\n",
            with_provider_url(key, "http://keycloak:8080/realms/main")
        );
        let c = Config::from_toml_str(&cfg).unwrap();
        assert!(c.provider.allow_http, "{key}");
    }
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert!(!c.provider.allow_http, "off by default");
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from(["gatehouse", "--insecure-oidc-allow-http"]).unwrap();
    assert_eq!(cli.settings.insecure_oidc_allow_http, Some(true));
}

#[test]
fn an_unknown_key_gets_a_did_you_mean_instead_of_the_list_of_keys() {
    for (typo, meant) in [
        ("cookie_secert", "cookie_secret"),
        ("upstreem", "upstream"),
        ("oidc_isuer_url", "oidc_issuer_url"),
        ("email_domian", "email_domain"),
        ("skip_auth_rout", "skip_auth_route"),
    ] {
        let err = Config::from_toml_str(&format!("{MINIMAL}\n{typo} = \"x\"\n")).unwrap_err();
        assert_eq!(keys(&err), [typo], "{err}");
        let reason = &err.problems[0].reason;
        assert!(
            reason.contains(&format!("did you mean `{meant}`?")),
            "{typo}: {reason}"
        );
        assert!(
            !reason.contains("client_secret_file"),
            "no list of keys: {reason}"
        );
    }
    // nothing near: no guess
    let err = Config::from_toml_str(&format!("{MINIMAL}\nzzz = 1\n")).unwrap_err();
    assert!(!err.problems[0].reason.contains("did you mean"), "{err}");
}

#[test]
fn a_misspelt_required_key_is_reported_once_not_also_as_missing() {
    let cfg = MINIMAL.replace("client_id =", "cliend_id =");
    let err = Config::from_toml_str(&cfg).unwrap_err();
    assert_eq!(keys(&err), ["cliend_id"], "{err}");
}

#[test]
fn unknown_keys_do_not_hide_the_other_problems() {
    let cfg = format!("{MINIMAL}\ncookie_secert = \"x\"\n").replace(
        "https://idp.example.com/realms/main",
        "ftp://idp.example.com",
    );
    let err = Config::from_toml_str(&cfg).unwrap_err();
    assert_eq!(keys(&err), ["cookie_secert", "oidc_issuer_url"], "{err}");
}

#[test]
fn oauth2_proxy_names_are_read_as_gatehouse_settings() {
    let cfg = r#"
        upstreams = ["http://127.0.0.1:8080/", "http://127.0.0.1:9090/api/"]
        provider = "keycloak-oidc"
        oidc_issuer_url = "https://idp.example.com/realms/main"
        client_id = "gatehouse"
        client_secret = "s3cret"
        redirect_url = "https://app.example.com/oauth2/callback"
        cookie_secret = "2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg="
        email_domains = ["Example.com"]
        whitelist_domains = [".example.com"]
        cookie_domains = [".example.com"]
        allowed_groups = ["/staff"]
        allowed_roles = ["gatehouse:editor"]
        login_url = "https://idp.example.com/auth"
        redeem_url = "https://idp.example.com/token"
        profile_url = "https://idp.example.com/userinfo"
        oidc_extra_audiences = ["api"]
        insecure_oidc_allow_unverified_email = true
        http_address = ":4180"
        cookie_expire = "168h0m0s"
    "#;
    let c = Config::from_toml_str(cfg).unwrap();
    let routes: Vec<(&str, &str)> = c
        .upstreams
        .iter()
        .map(|u| (u.prefix.as_str(), u.url.as_str()))
        .collect();
    // oauth2-proxy routes by the URL's path and keeps the request's path
    assert_eq!(
        routes,
        [
            ("/api/", "http://127.0.0.1:9090/"),
            ("/", "http://127.0.0.1:8080/")
        ]
    );
    assert_eq!(c.provider.name, "keycloak");
    assert_eq!(
        c.email_domains,
        EmailDomains::List(vec!["example.com".into()])
    );
    assert_eq!(c.whitelist_domains.len(), 1);
    assert_eq!(c.cookie.domain.as_deref(), Some(".example.com"));
    assert_eq!(c.allowed_groups, ["/staff"]);
    assert_eq!(c.allowed_roles, ["gatehouse:editor"]);
    let url = |u: &Option<Url>| u.as_ref().map(Url::to_string);
    assert_eq!(
        url(&c.provider.authorize_url).as_deref(),
        Some("https://idp.example.com/auth")
    );
    assert_eq!(
        url(&c.provider.token_url).as_deref(),
        Some("https://idp.example.com/token")
    );
    assert_eq!(
        url(&c.provider.userinfo_url).as_deref(),
        Some("https://idp.example.com/userinfo")
    );
    assert_eq!(c.provider.extra_audiences, ["api"]);
    assert!(c.allow_unverified_email);
    assert_eq!(c.http_address.to_string(), "0.0.0.0:4180");
    assert!(c.notes.is_empty(), "{:?}", c.notes);
}

#[test]
fn oauth2_proxy_settings_gatehouse_does_anyway_are_accepted_with_a_note() {
    let c = Config::from_toml_str(&format!(
        "{MINIMAL}\nskip_provider_button = true\nreverse_proxy = true\npass_user_headers = true\nrequest_logging = false\n"
    ))
    .unwrap();
    let noted: Vec<&str> = c.notes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(
        noted,
        [
            "pass_user_headers",
            "request_logging",
            "reverse_proxy",
            "skip_provider_button"
        ]
    );
    let button = &c.notes[3].reason;
    assert!(
        button.contains("ignored") && button.contains("straight to the provider"),
        "{button}"
    );
}

#[test]
fn oauth2_proxy_features_gatehouse_lacks_are_refused_saying_so_plainly() {
    for (line, key, says) in [
        (
            "trusted_ips = [\"10.0.0.0/8\"]",
            "trusted_ips",
            "past sign-in",
        ),
        ("https_address = \":443\"", "https_address", "tls_cert_file"),
        (
            "pass_user_headers = false",
            "pass_user_headers",
            "always sends",
        ),
        (
            "cookie_domains = [\"a.example.com\", \"b.example.com\"]",
            "cookie_domains",
            "several cookie domains",
        ),
    ] {
        let err = Config::from_toml_str(&format!("{MINIMAL}\n{line}\n")).unwrap_err();
        assert_eq!(keys(&err), [key], "{err}");
        let reason = &err.problems[0].reason;
        assert!(reason.contains("not supported yet"), "{key}: {reason}");
        assert!(reason.contains(says), "{key}: {reason}");
        assert!(!reason.contains("unknown"), "{key}: {reason}");
    }
    let err = Config::from_toml_str(&MINIMAL.replace(
        "upstream = \"http://127.0.0.1:8080\"",
        "upstreams = [\"static://202\"]",
    ))
    .unwrap_err();
    assert_eq!(keys(&err), ["upstreams"], "{err}");
    assert!(
        err.problems[0].reason.contains("not supported yet"),
        "{err}"
    );
}

#[test]
fn a_setting_given_under_both_names_is_refused() {
    let err = Config::from_toml_str(&format!("{MINIMAL}\nemail_domains = [\"example.com\"]\n"))
        .unwrap_err();
    assert_eq!(keys(&err), ["email_domains"], "{err}");
    assert!(err.problems[0].reason.contains("`email_domain`"), "{err}");
}

#[test]
fn oauth2_proxy_flag_names_are_aliases_of_gatehouse_flags() {
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from([
        "gatehouse",
        "--login-url",
        "https://idp.example.com/auth",
        "--redeem-url",
        "https://idp.example.com/token",
        "--profile-url",
        "https://idp.example.com/userinfo",
        "--insecure-oidc-allow-unverified-email",
    ])
    .unwrap();
    let s = &cli.settings;
    assert_eq!(
        s.oidc_authorize_url.as_deref(),
        Some("https://idp.example.com/auth")
    );
    assert_eq!(
        s.oidc_token_url.as_deref(),
        Some("https://idp.example.com/token")
    );
    assert_eq!(
        s.oidc_userinfo_url.as_deref(),
        Some("https://idp.example.com/userinfo")
    );
    assert_eq!(s.allow_unverified_email, Some(true));
}

#[test]
fn an_unknown_provider_does_not_hide_a_bad_issuer() {
    let cfg = format!("{MINIMAL}\nprovider = \"keycloack\"\n").replace(
        "https://idp.example.com/realms/main",
        "http://idp.example.com/realms/main",
    );
    let err = Config::from_toml_str(&cfg).unwrap_err();
    assert_eq!(keys(&err), ["provider", "oidc_issuer_url"], "{err}");
}

#[test]
fn advisories_name_a_missing_secret_for_a_confidential_preset_and_roles_of_another_client() {
    let public = MINIMAL.replace("client_secret = \"s3cret\"\n", "");
    let c = Config::from_toml_str(&format!("{public}\nprovider = \"keycloak\"\n")).unwrap();
    let a = c.advisories();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].key, "client_secret");
    assert!(a[0].reason.contains("invalid_client"), "{a:?}");
    // generic oidc: a public client is ordinary
    assert!(
        Config::from_toml_str(&public)
            .unwrap()
            .advisories()
            .is_empty()
    );
    let c = Config::from_toml_str(&format!(
        "{MINIMAL}\nprovider = \"keycloak\"\nallowed_role = [\"user\", \"gatehouse:editor\", \"otherclient:admin\"]\n"
    ))
    .unwrap();
    let a = c.advisories();
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].key, "allowed_role");
    assert!(
        a[0].reason.contains("`otherclient:admin`") && a[0].reason.contains("`gatehouse:admin`"),
        "{a:?}"
    );
}

#[test]
fn a_log_level_typo_fails_naming_log_level_and_the_accepted_forms() {
    let err = Config::from_toml_str(&format!("{MINIMAL}\nlog_level = \"verbose\"\n")).unwrap_err();
    assert_eq!(keys(&err), ["log_level"], "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`verbose`"), "{msg}");
    assert!(msg.contains("error, warn, info, debug, trace"), "{msg}");
    assert!(msg.contains("gatehouse=debug"), "{msg}");
}

#[test]
fn a_log_level_may_be_a_level_or_directives_naming_our_targets() {
    for level in ["debug", "info,gatehouse=debug,gatehouse::access=info"] {
        let c = Config::from_toml_str(&format!("{MINIMAL}\nlog_level = \"{level}\"\n")).unwrap();
        assert_eq!(c.log_level, level);
    }
    assert_eq!(Config::from_toml_str(MINIMAL).unwrap().log_level, "info");
}

#[test]
fn extra_jwt_issuers_are_issuer_equals_audience_with_provider_url_rules() {
    let c = Config::from_toml_str(&format!(
        "{MINIMAL}\nskip_jwt_bearer_tokens = true\nextra_jwt_issuers = [\"https://login.partner.test/=api://orders\", \" http://127.0.0.1:9000 = aud=x \"]\n"
    ))
    .unwrap();
    assert!(c.bearer.everywhere);
    assert_eq!(
        c.bearer.extra_issuers,
        [
            JwtIssuer {
                issuer: "https://login.partner.test/".into(),
                audience: "api://orders".into(),
            },
            JwtIssuer {
                issuer: "http://127.0.0.1:9000".into(),
                audience: "aud=x".into(),
            },
        ]
    );
    assert!(!Config::from_toml_str(MINIMAL).unwrap().bearer.everywhere);
    for bad in [
        "https://login.partner.test",
        "https://login.partner.test=",
        "=aud",
        "not a url=aud",
        "ftp://login.partner.test=aud",
        "https://user:pw@login.partner.test=aud",
        "http://login.partner.test=aud",
    ] {
        let err = Config::from_toml_str(&format!("{MINIMAL}\nextra_jwt_issuers = [\"{bad}\"]\n"))
            .unwrap_err();
        assert_eq!(keys(&err), ["extra_jwt_issuers"], "{bad}");
    }
    // plain http to a network host only with insecure_oidc_allow_http
    Config::from_toml_str(&format!(
        "{MINIMAL}\ninsecure_oidc_allow_http = true\nextra_jwt_issuers = [\"http://login.partner.test=aud\"]\n"
    ))
    .unwrap();
}

#[test]
fn the_shutdown_grace_period_defaults_to_5s_may_be_zero_and_the_timeout_must_be_positive() {
    let c = Config::from_toml_str(MINIMAL).unwrap();
    assert_eq!(c.shutdown.grace_period, Duration::from_secs(5));
    assert_eq!(c.shutdown.timeout, Duration::from_secs(10));
    for (zero, want) in [
        ("0", 0),
        ("0s", 0),
        ("0ms", 0),
        ("250ms", 250),
        ("1m", 60_000),
    ] {
        let c = Config::from_toml_str(&format!("{MINIMAL}\nshutdown_grace_period = \"{zero}\"\n"))
            .unwrap();
        assert_eq!(
            c.shutdown.grace_period,
            Duration::from_millis(want),
            "{zero:?}"
        );
    }
    for bad in ["soon", "", "-1s", "5x"] {
        let err = Config::from_toml_str(&format!("{MINIMAL}\nshutdown_grace_period = \"{bad}\"\n"))
            .unwrap_err();
        assert_eq!(keys(&err), ["shutdown_grace_period"], "{bad:?}");
    }
    for bad in ["0s", "soon", ""] {
        let err = Config::from_toml_str(&format!("{MINIMAL}\nshutdown_timeout = \"{bad}\"\n"))
            .unwrap_err();
        assert_eq!(keys(&err), ["shutdown_timeout"], "{bad:?}");
    }
}
