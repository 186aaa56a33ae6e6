use super::*;
use crate::auth::providers::{IdentitySource, TokenEncoding};
use crate::config::{Config, ConfigError};

/// The shared settings, with no provider.
const SHARED: &str = r#"
upstream = "http://127.0.0.1:8080"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "2rxnixDMh8xzE2dnUUs6cN7IqXZzNzYaZwN45gtPueg="
email_domain = ["*"]
"#;

/// The flat provider settings.
const FLAT: &str = r#"
oidc_issuer_url = "https://idp.example.com/realms/main"
client_id = "gatehouse"
client_secret = "s3cret-flat"
"#;

const CORP: &str = r#"
[[providers]]
id = "corp"
name = "Corporate account"
oidc_issuer_url = "https://sso.corp.example"
client_id = "gh-corp"
client_secret = "s3cret-corp"
scope = "openid email"
oidc_groups_claim = "roles"
"#;

const ZK: &str = r#"
[[providers]]
id = "zk"
provider = "zkauth"
client_id = "gh-zk"
client_secret = "s3cret-zk"
"#;

fn load(parts: &[&str]) -> Result<Config, ConfigError> {
    Config::from_toml_str(&parts.concat())
}

fn keys(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn flat_settings_alone_are_the_one_provider_default() {
    let c = load(&[SHARED, FLAT]).unwrap();
    assert_eq!(c.providers.len(), 1);
    let only = &c.providers[0];
    assert_eq!(only.id, DEFAULT_ID);
    assert_eq!(only.client_id, "gatehouse");
    assert_eq!(only.provider.issuer, c.provider.issuer);
    assert_eq!(c.client_id, "gatehouse");
    assert_eq!(c.all_providers().single(), Some(0));
}

#[test]
fn flat_settings_come_first_as_default_then_each_table_in_order() {
    let c = load(&[SHARED, FLAT, CORP, ZK]).unwrap();
    let ids: Vec<&str> = c.providers.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["default", "corp", "zk"]);
    // the primary provider stays the flat one
    assert_eq!(c.client_id, "gatehouse");
    assert_eq!(c.provider.issuer, "https://idp.example.com/realms/main");
    let corp = &c.providers[1];
    assert_eq!(corp.label, "Corporate account");
    assert_eq!(corp.client_id, "gh-corp");
    assert_eq!(corp.client_secret.as_ref().unwrap().expose(), "s3cret-corp");
    assert_eq!(corp.provider.scopes, ["openid", "email"]);
    assert_eq!(corp.provider.claims.groups, "roles");
    // each table gets its preset's defaults, not the flat settings'
    let zk = &c.providers[2];
    assert_eq!(zk.label, "zk");
    assert_eq!(zk.provider.issuer, "https://api.zkauth.tech");
    assert_eq!(zk.provider.encoding, TokenEncoding::Json);
    assert_eq!(zk.provider.identity_source, IdentitySource::AccessToken);
    assert_eq!(c.provider_index(None), Some(0));
    assert_eq!(c.provider_index(Some("default")), Some(0));
    assert_eq!(c.provider_index(Some("zk")), Some(2));
    assert_eq!(c.provider_index(Some("nope")), None);
    assert_eq!(c.provider_tag(0), None);
    assert_eq!(c.provider_tag(2).as_deref(), Some("zk"));
}

#[test]
fn without_flat_settings_the_first_table_is_the_primary_provider() {
    let c = load(&[SHARED, CORP, ZK]).unwrap();
    let ids: Vec<&str> = c.providers.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["corp", "zk"]);
    assert_eq!(c.client_id, "gh-corp");
    assert_eq!(c.provider.issuer, "https://sso.corp.example");
    assert_eq!(c.provider_index(Some("default")), None);
    assert_eq!(c.provider_index(Some("corp")), Some(0));
    assert_eq!(c.provider_tag(0), None);
}

#[test]
fn a_duplicate_id_is_an_error_naming_the_second_table() {
    let err = load(&[SHARED, CORP, CORP]).unwrap_err();
    assert_eq!(keys(&err), ["providers[1].id"], "{err}");
    assert!(
        err.to_string().contains("`corp` is given to two providers"),
        "{err}"
    );
}

#[test]
fn a_table_named_default_next_to_flat_settings_is_an_error() {
    let err = load(&[SHARED, FLAT, &CORP.replace("\"corp\"", "\"default\"")]).unwrap_err();
    assert_eq!(keys(&err), ["providers[0].id"], "{err}");
    // without flat settings, `default` is a name like any other
    let c = load(&[SHARED, &CORP.replace("\"corp\"", "\"default\"")]).unwrap();
    assert_eq!(c.providers[0].id, "default");
}

#[test]
fn flat_provider_settings_without_a_flat_client_id_are_errors_naming_each_key() {
    let err = load(&[
        SHARED,
        "scope = \"openid\"\noidc_issuer_url = \"https://idp.example.com\"\n",
        CORP,
    ])
    .unwrap_err();
    let mut k = keys(&err);
    k.sort_unstable();
    assert_eq!(k, ["oidc_issuer_url", "scope"], "{err}");
    assert!(err.to_string().contains("belongs to no provider"), "{err}");
}

#[test]
fn table_problems_name_the_table_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[[providers]]\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\n",
            "providers[0].id",
        ),
        (
            "[[providers]]\nid = \"a\"\noidc_issuer_url = \"https://a.example\"\n",
            "providers[0].client_id",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\n",
            "providers[0].oidc_issuer_url",
        ),
        (
            "[[providers]]\nid = \"a b\"\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\n",
            "providers[0].id",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\noidc_issuer_url = \"http://a.example\"\n",
            "providers[0].oidc_issuer_url",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\nprovider = \"okta\"\noidc_issuer_url = \"https://a.example\"\n",
            "providers[0].provider",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\nscope = \"email\"\n",
            "providers[0].scope",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\nclient_secret = \"changeme\"\n",
            "providers[0].client_secret",
        ),
        (
            "[[providers]]\nid = \"a\"\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\nclient_secert = \"x\"\n",
            "providers[0].client_secert",
        ),
        (
            "[[providers]]\nid = 7\nclient_id = \"x\"\noidc_issuer_url = \"https://a.example\"\n",
            "providers[0].id",
        ),
        ("providers = \"corp\"\n", "providers"),
    ];
    for (table, key) in cases {
        let err = load(&[SHARED, FLAT, table]).unwrap_err();
        assert!(keys(&err).contains(key), "{table}: {err}");
        assert!(
            err.problems.iter().all(|p| p.key.starts_with("providers")),
            "{table}: {err}"
        );
    }
}

#[test]
fn no_provider_at_all_still_asks_for_client_id() {
    let err = load(&[SHARED]).unwrap_err();
    assert!(keys(&err).contains(&"client_id"), "{err}");
}

#[test]
fn provider_sets_test_membership_by_bit() {
    let all = ProviderSet::all(3);
    assert!(all.contains(0) && all.contains(2) && !all.contains(3));
    assert_eq!(all.single(), None);
    assert_eq!(all.iter().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(ProviderSet::only(2).single(), Some(2));
    assert_eq!(
        ProviderSet::only(1).with(3).iter().collect::<Vec<_>>(),
        [1, 3]
    );
    assert_eq!(
        ProviderSet::all(MAX_PROVIDERS).iter().count(),
        MAX_PROVIDERS
    );
    assert!(!ProviderSet::only(MAX_PROVIDERS).contains(MAX_PROVIDERS));
    assert_eq!(ProviderSet::only(MAX_PROVIDERS + 5), ProviderSet::only(99));
}

#[test]
fn a_route_names_its_providers_by_id_and_keeps_their_indexes() {
    let routes = r#"
[[routes]]
path = "/corp"
provider = "corp"

[[routes]]
path = "/both"
providers = ["zk", "default"]

[[routes]]
path = "/any"
"#;
    let c = load(&[SHARED, FLAT, CORP, ZK, routes]).unwrap();
    let sets: Vec<Option<Vec<usize>>> = c.routes.routes()[..3]
        .iter()
        .map(|r| r.providers.map(|s| s.iter().collect()))
        .collect();
    assert_eq!(sets, [Some(vec![1]), Some(vec![0, 2]), None]);
}

#[test]
fn a_route_naming_an_unknown_provider_or_both_keys_is_an_error_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "provider = \"nope\"",
            "routes[0].provider",
            "no provider has the id `nope`; the ids are: default, corp",
        ),
        (
            "providers = [\"corp\", \"nope\"]",
            "routes[0].providers",
            "`nope`",
        ),
        ("providers = []", "routes[0].providers", "empty list"),
        (
            "provider = \"corp\"\nproviders = [\"corp\"]",
            "routes[0].providers",
            "not both",
        ),
        // ids are compared exactly
        ("provider = \"Corp\"", "routes[0].provider", "`Corp`"),
    ];
    for (keys_toml, key, says) in cases {
        let route = format!("\n[[routes]]\npath = \"/x\"\n{keys_toml}\n");
        let err = load(&[SHARED, FLAT, CORP, &route]).unwrap_err();
        assert_eq!(keys(&err), [*key], "{keys_toml}: {err}");
        assert!(err.to_string().contains(says), "{keys_toml}: {err}");
    }
    // without flat settings there is no `default` to name
    let route = "\n[[routes]]\npath = \"/x\"\nprovider = \"default\"\n";
    let err = load(&[SHARED, CORP, route]).unwrap_err();
    assert_eq!(keys(&err), ["routes[0].provider"], "{err}");
}

#[test]
fn advisories_name_each_providers_public_client_and_know_every_providers_client_roles() {
    let public_zk = ZK.replace("client_secret = \"s3cret-zk\"\n", "");
    let roles = "allowed_role = [\"gh-corp:editor\", \"elsewhere:editor\"]\n";
    let c = load(&[SHARED, roles, FLAT, CORP, &public_zk]).unwrap();
    let advised: Vec<(String, bool)> = c
        .advisories()
        .into_iter()
        .map(|p| (p.key, p.reason.contains("`elsewhere`")))
        .collect();
    assert_eq!(
        advised,
        [
            ("providers[1].client_secret".to_owned(), false),
            ("allowed_role".to_owned(), true),
        ]
    );
}
