use std::collections::BTreeMap;

use super::*;
use crate::auth::identity::Identity;

fn config(extra: &str) -> Config {
    let toml = format!(
        r#"
upstream = "http://127.0.0.1:9"
oidc_issuer_url = "https://idp.example"
client_id = "gatehouse"
client_secret = "a-real-client-secret-for-tests"
redirect_url = "https://app.example/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
email_domain = "*"
{extra}
"#
    );
    Config::from_toml_str(&toml).unwrap()
}

/// `series -> value` of every sample line.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn requests_are_counted_by_route_method_class_and_status_class() {
    let metrics = Arc::new(Metrics::new());
    let r = metrics.recorder(&config("[[routes]]\npath = \"/api\"\napi = true\n"));
    let ms = Duration::from_millis(3);
    r.request(Some(0), &Method::GET, StatusCode::OK, ms);
    r.request(Some(0), &Method::GET, StatusCode::NO_CONTENT, ms);
    r.request(
        Some(1),
        &Method::from_bytes(b"PROPFIND").unwrap(),
        StatusCode::FORBIDDEN,
        ms,
    );
    r.request(None, &Method::POST, StatusCode::BAD_GATEWAY, ms);
    // a route index from nowhere is counted as no route, never a panic
    r.request(
        Some(99),
        &Method::DELETE,
        StatusCode::from_u16(599).unwrap(),
        ms,
    );
    let s = samples(&metrics.encode(ConnCounts::default()));
    let get = |k: &str| {
        s.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {s:#?}"))
    };
    assert_eq!(
        get(r#"gatehouse_requests_total{route="routes[0]",method="GET",status="2xx"}"#),
        2.0
    );
    assert_eq!(
        get(r#"gatehouse_requests_total{route="default",method="other",status="4xx"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gatehouse_requests_total{route="none",method="POST",status="5xx"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gatehouse_requests_total{route="none",method="DELETE",status="5xx"}"#),
        1.0
    );
    assert_eq!(
        get(r#"gatehouse_request_duration_seconds_count{route="routes[0]"}"#),
        2.0
    );
    assert_eq!(
        get(r#"gatehouse_requests_total{route="routes[0]",method="HEAD",status="1xx"}"#),
        0.0
    );
}

#[test]
fn decisions_are_counted_by_kind_and_reason() {
    let metrics = Arc::new(Metrics::new());
    let r = metrics.recorder(&config(""));
    let who = || Box::new(Identity::default());
    r.decision(&Decision::Allow(Identity::default().into()), false);
    r.decision(&Decision::Allow(Identity::default().into()), true);
    r.decision(&Decision::Challenge, false);
    r.decision(&Decision::Deny(DenyReason::Group, who()), false);
    r.decision(&Decision::InvalidToken, true);
    r.decision(&Decision::StepUp(who(), 0), false);
    r.decision(
        &Decision::Unavailable(crate::auth::Unavailable::Store),
        false,
    );
    let s = samples(&metrics.encode(ConnCounts::default()));
    for (decision, reason) in [
        ("allow", "session"),
        ("allow", "bearer"),
        ("challenge", "no_session"),
        ("challenge", "step_up"),
        ("deny", "allowed_groups"),
        ("deny", "invalid_token"),
        ("unavailable", "store"),
    ] {
        let k =
            format!(r#"gatehouse_auth_decisions_total{{decision="{decision}",reason="{reason}"}}"#);
        assert_eq!(s.get(&k), Some(&1.0), "{k}");
    }
    let k = r#"gatehouse_auth_decisions_total{decision="deny",reason="route"}"#;
    assert_eq!(s.get(k), Some(&0.0));
}

#[test]
fn an_empty_recorder_records_nothing_and_does_not_panic() {
    let r = Recorder::default();
    assert!(!r.enabled());
    r.request(Some(0), &Method::GET, StatusCode::OK, Duration::ZERO);
    r.decision(&Decision::Challenge, false);
    r.login_started(0);
    r.login_failed(None, LoginFailure::State);
    r.provider_call(0, ProviderCall::Jwks, false, Duration::ZERO);
    r.store(StoreOp::Load, false);
    r.revoked(RevocationSource::SignOut);
    assert!(r.metrics().is_none());
}

#[test]
fn logins_provider_calls_store_operations_and_revocations_carry_bounded_labels() {
    let metrics = Arc::new(Metrics::new());
    let r = metrics.recorder(&config(""));
    r.login_started(0);
    r.login_completed(0);
    r.login_failed(Some(0), LoginFailure::Exchange);
    r.login_failed(None, LoginFailure::State);
    // an index past the configured providers is "unknown", never a panic
    r.login_failed(Some(7), LoginFailure::Policy);
    r.provider_call(0, ProviderCall::Token, true, Duration::from_millis(20));
    r.provider_call(0, ProviderCall::Jwks, false, Duration::from_millis(20));
    r.store(StoreOp::Save, true);
    r.store(StoreOp::Load, false);
    r.revoked(RevocationSource::Backchannel);
    let s = samples(&metrics.encode(ConnCounts { open: 3, parked: 2 }));
    for k in [
        r#"gatehouse_logins_started_total{provider="default"}"#,
        r#"gatehouse_logins_completed_total{provider="default"}"#,
        r#"gatehouse_logins_failed_total{provider="default",reason="exchange"}"#,
        r#"gatehouse_logins_failed_total{provider="unknown",reason="state"}"#,
        r#"gatehouse_logins_failed_total{provider="unknown",reason="policy"}"#,
        r#"gatehouse_provider_calls_total{provider="default",call="token",outcome="ok"}"#,
        r#"gatehouse_provider_calls_total{provider="default",call="jwks",outcome="error"}"#,
        r#"gatehouse_provider_call_duration_seconds_count{provider="default",call="token"}"#,
        r#"gatehouse_session_store_operations_total{store="cookie",op="save"}"#,
        r#"gatehouse_session_store_operations_total{store="cookie",op="load"}"#,
        r#"gatehouse_session_store_errors_total{store="cookie",op="load"}"#,
        r#"gatehouse_revocations_total{source="backchannel"}"#,
    ] {
        assert_eq!(s.get(k), Some(&1.0), "{k} in {s:#?}");
    }
    assert_eq!(s.get("gatehouse_open_connections"), Some(&3.0));
    assert_eq!(s.get("gatehouse_parked_connections"), Some(&2.0));
    assert!(!s.contains_key(r#"gatehouse_session_store_errors_total{store="cookie",op="save"}"#));
}

#[test]
fn build_info_and_config_reloads_are_exposed() {
    let metrics = Metrics::new();
    let before = samples(&metrics.encode(ConnCounts::default()));
    let version = format!(
        r#"gatehouse_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(before.get(&version), Some(&1.0), "{before:#?}");
    let success = r#"gatehouse_config_reloads_total{result="success"}"#;
    let failure = r#"gatehouse_config_reloads_total{result="failure"}"#;
    assert_eq!(before.get(success), Some(&0.0));
    assert_eq!(before.get(failure), Some(&0.0));
    let stamp = "gatehouse_config_last_reload_success_timestamp_seconds";
    assert!(before[stamp] > 1.0e9, "{before:#?}");
    metrics.config_reload(false);
    metrics.config_reload(true);
    metrics.config_reload(true);
    let after = samples(&metrics.encode(ConnCounts::default()));
    assert_eq!(after.get(success), Some(&2.0));
    assert_eq!(after.get(failure), Some(&1.0));
    assert!(after[stamp] >= before[stamp]);
}

#[test]
fn metrics_are_answered_only_to_get_at_the_metrics_path() {
    let metrics = Metrics::new();
    let open = ConnCounts::default;
    let req = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    };
    let ok = answer(&req(Method::GET, "/metrics"), &metrics, &open);
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[http::header::CONTENT_TYPE], CONTENT_TYPE);
    for (method, path, want) in [
        (Method::POST, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/", StatusCode::NOT_FOUND),
        (Method::GET, "/metrics/", StatusCode::NOT_FOUND),
        (Method::GET, "/metrics/../metrics", StatusCode::NOT_FOUND),
        (Method::GET, "/%6detrics", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(
            answer(&req(method.clone(), path), &metrics, &open).status(),
            want,
            "{method} {path}"
        );
    }
}

#[test]
fn metrics_address_is_a_flag_and_a_toml_key_and_off_by_default() {
    use clap::Parser as _;
    let cli = crate::cli::Cli::try_parse_from(["gatehouse", "--metrics-address", "127.0.0.1:9180"])
        .unwrap();
    assert_eq!(
        cli.settings.metrics_address.as_deref(),
        Some("127.0.0.1:9180")
    );
    assert_eq!(config("").metrics_address, None);
    assert_eq!(
        config("metrics_address = \":9180\"").metrics_address,
        Some("0.0.0.0:9180".parse().unwrap())
    );
}

#[test]
fn a_state_rebuilt_for_a_reload_counts_into_the_same_series() {
    let metrics = Arc::new(Metrics::new());
    let before = metrics.recorder(&config(""));
    // the reloaded configuration adds a route in front of the default one
    let after = metrics.recorder(&config("[[routes]]\npath = \"/api\"\napi = true\n"));
    let ms = Duration::from_millis(1);
    before.request(Some(0), &Method::GET, StatusCode::OK, ms);
    after.request(Some(1), &Method::GET, StatusCode::OK, ms);
    after.decision(&Decision::Challenge, false);
    before.decision(&Decision::Challenge, false);
    let s = samples(&metrics.encode(ConnCounts::default()));
    let k = r#"gatehouse_requests_total{route="default",method="GET",status="2xx"}"#;
    assert_eq!(s.get(k), Some(&2.0), "{s:#?}");
    let k = r#"gatehouse_auth_decisions_total{decision="challenge",reason="no_session"}"#;
    assert_eq!(s.get(k), Some(&2.0));
}
