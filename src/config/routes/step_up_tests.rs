use std::time::Duration;

use crate::auth::step_up::StepUp;
use crate::config::Config;

const BASE: &str = r#"
upstream = "http://127.0.0.1:9"
client_id = "gatehouse"
client_secret = "s3cr3t-for-the-route-tests"
oidc_issuer_url = "https://idp.example.com/realms/x"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
email_domain = "*"
"#;

fn load(extra: &str) -> Result<Config, Vec<(String, String)>> {
    Config::from_toml_str(&format!("{BASE}\n[[routes]]\npath = \"/admin\"\n{extra}"))
        .map_err(|e| e.problems.into_iter().map(|p| (p.key, p.reason)).collect())
}

#[test]
fn a_route_reads_acr_values_and_max_age_as_a_duration_or_seconds() {
    let step_up = |extra: &str| load(extra).unwrap().routes.routes()[0].step_up.clone();
    let asks = |acr: &[&str], secs: Option<u64>| {
        Some(StepUp {
            acr_values: acr.iter().map(|a| (*a).to_owned()).collect(),
            max_age: secs.map(Duration::from_secs),
        })
    };
    let table: &[(&str, Option<StepUp>)] = &[
        ("", None),
        (
            "acr_values = \"urn:example:mfa  phr\"",
            asks(&["urn:example:mfa", "phr"], None),
        ),
        ("max_age = \"10m\"", asks(&[], Some(600))),
        ("max_age = 300", asks(&[], Some(300))),
        ("max_age = \"1h30m\"", asks(&[], Some(5400))),
        (
            "acr_values = \"gold\"\nmax_age = 60",
            asks(&["gold"], Some(60)),
        ),
        (
            "allowed_groups = [\"admins\"]\nacr_values = \"gold\"",
            asks(&["gold"], None),
        ),
    ];
    for (extra, want) in table {
        assert_eq!(&step_up(extra), want, "{extra}");
    }
    // --check-config shows it on the route's line
    let c = load("acr_values = \"gold\"\nmax_age = \"10m\"").unwrap();
    let line = c.routes.routes()[0].to_string();
    assert!(
        line.ends_with(", acr one of [gold], signed in within 600s"),
        "{line}"
    );
}

#[test]
fn a_bad_step_up_is_refused_naming_its_key() {
    let table: &[(&str, &str, &str)] = &[
        ("max_age = 0", "routes[0].max_age", "greater than zero"),
        ("max_age = -5", "routes[0].max_age", "greater than zero"),
        ("max_age = \"0s\"", "routes[0].max_age", "greater than zero"),
        (
            "max_age = \"500ms\"",
            "routes[0].max_age",
            "at least one second",
        ),
        ("max_age = \"soon\"", "routes[0].max_age", "not a duration"),
        ("acr_values = \"\"", "routes[0].acr_values", "no acr value"),
        (
            "acr_values = \"   \"",
            "routes[0].acr_values",
            "no acr value",
        ),
        (
            "acr_values = \"gold\\tsilver\"",
            "routes[0].acr_values",
            "printable ASCII",
        ),
        (
            "acr_values = \"go\\\"ld\"",
            "routes[0].acr_values",
            "printable ASCII",
        ),
        (
            "acr_values = \"gold\u{e9}\"",
            "routes[0].acr_values",
            "printable ASCII",
        ),
        (
            "policy = \"public\"\nmax_age = 60",
            "routes[0].max_age",
            "no effect",
        ),
        (
            "policy = \"public\"\nacr_values = \"gold\"",
            "routes[0].acr_values",
            "no effect",
        ),
    ];
    for (extra, key, reason) in table {
        let problems = load(extra).expect_err(extra);
        assert!(
            problems.iter().any(|(k, r)| k == key && r.contains(reason)),
            "{extra}: {problems:?}"
        );
    }
}

#[test]
fn a_step_up_with_a_plain_oauth_provider_is_refused() {
    let toml = format!(
        "{BASE}\nprovider = \"zkauth\"\noidc_authorize_url = \"https://idp.example.com/authorize\"\n\
         oidc_token_url = \"https://idp.example.com/token\"\noidc_jwks_url = \"https://idp.example.com/jwks\"\n\
         [[routes]]\npath = \"/admin\"\nmax_age = 60\n"
    );
    let problems = Config::from_toml_str(&toml).expect_err("refused").problems;
    assert!(
        problems
            .iter()
            .any(|p| p.key == "routes[0]" && p.reason.contains("OpenID Connect")),
        "{problems:?}"
    );
}

#[test]
fn a_step_up_route_takes_no_bearer_tokens_and_must_take_get() {
    let why = |extra: &str, key: &str| {
        load(extra)
            .expect_err(extra)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("{extra}: nothing under {key}"))
    };
    assert!(
        why("acr_values = \"gold\"\nbearer = true", "routes[0].bearer").contains("sessions only")
    );
    assert!(why("max_age = 60\nmethods = [\"POST\"]", "routes[0].methods").contains("include GET"));
    load("max_age = 60\nmethods = [\"GET\", \"POST\"]").unwrap();
    // with bearer tokens accepted everywhere, not on a step-up route
    let c = Config::from_toml_str(&format!(
        "{BASE}\nskip_jwt_bearer_tokens = true\n[[routes]]\npath = \"/admin\"\nacr_values = \"gold\""
    ))
    .unwrap();
    let bearer = crate::auth::bearer::BearerAuth::new(
        &c,
        crate::auth::oidc::IdpHttp::new(Duration::from_secs(1)).unwrap(),
    );
    assert!(!bearer.enabled_on(&c.routes.routes()[0]));
    assert!(bearer.enabled_on(c.routes.fallback()));
}

#[test]
fn a_step_up_route_must_take_only_openid_providers_among_several() {
    // the flat provider (`default`) is OIDC; `plain` is a ZKAuth-style one
    let config = |route: &str| {
        Config::from_toml_str(&format!(
            "{BASE}\n[[routes]]\npath = \"/admin\"\nmax_age = 60\n{route}\n\
             [[providers]]\nid = \"plain\"\nprovider = \"zkauth\"\nclient_id = \"z\"\n\
             client_secret = \"another-real-looking-secret\"\n\
             oidc_authorize_url = \"https://z.example.com/authorize\"\n\
             oidc_token_url = \"https://z.example.com/token\"\n\
             oidc_jwks_url = \"https://z.example.com/jwks\"\n"
        ))
    };
    let problems = config("").expect_err("refused").problems;
    assert!(
        problems
            .iter()
            .any(|p| p.key == "routes[0]" && p.reason.contains("which plain does not give")),
        "{problems:?}"
    );
    config("provider = \"default\"").unwrap();
}
