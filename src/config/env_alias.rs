//! oauth2-proxy's environment variables (`OAUTH2_PROXY_*`) read as aliases
//! of gatehouse's settings, so a deployment's existing environment keeps
//! working: `OAUTH2_PROXY_COOKIE_SECRET`, `OAUTH2_PROXY_UPSTREAMS`,
//! `OAUTH2_PROXY_EMAIL_DOMAINS`, ...
//!
//! Owns: turning those variables into one more settings layer, between the
//! file and clap's (flags and `GATEHOUSE_*`), so a `GATEHOUSE_*` variable
//! wins over its `OAUTH2_PROXY_*` alias. Each name goes through the same
//! table as oauth2-proxy's file keys (`oauth2_proxy`): renamed, accepted and
//! ignored with a note, or refused as "not supported yet".
//! Must not: validate values (`Config::from_raw` does), or show a secret's
//! value in a problem.

use super::{FileSettings, Problem, RawConfig, oauth2_proxy, our_keys};

/// The prefix oauth2-proxy reads its environment with.
const PREFIX: &str = "OAUTH2_PROXY_";

/// The `OAUTH2_PROXY_*` variables of this process (the only place
/// gatehouse reads them), in name order.
pub(super) fn process_vars() -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(PREFIX))
        .collect();
    vars.sort();
    vars
}

/// The settings `vars` (`OAUTH2_PROXY_*` names and values) stand for.
/// Problems are named after the variable.
pub(super) fn settings(vars: &[(String, String)]) -> FileSettings {
    let ours = our_keys();
    let mut out = FileSettings {
        raw: RawConfig::default(),
        problems: Vec::new(),
        notes: Vec::new(),
        covered: Vec::new(),
    };
    let mut problem = |var: &str, reason: String| {
        out.problems.push(Problem {
            key: var.to_owned(),
            reason,
        });
    };
    let mut layers = Vec::new();
    for (var, value) in vars {
        let Some(name) = var.strip_prefix(PREFIX) else {
            continue;
        };
        let key = name.to_ascii_lowercase();
        if value.is_empty() {
            // oauth2-proxy treats an empty variable as unset
            continue;
        }
        let guess = typed(value);
        let (target, value) = if ours.contains(&key) {
            (key.clone(), guess)
        } else {
            match oauth2_proxy::translate(&key, &guess) {
                Some(oauth2_proxy::Translation::Rename(to, v)) => (to.to_owned(), v),
                Some(oauth2_proxy::Translation::Ignored(note)) => {
                    out.notes.push(Problem {
                        key: var.clone(),
                        reason: note,
                    });
                    continue;
                }
                Some(oauth2_proxy::Translation::Unsupported(reason)) => {
                    problem(var, reason);
                    out.covered
                        .extend(oauth2_proxy::target(&key).map(str::to_owned));
                    continue;
                }
                None => {
                    let hint = oauth2_proxy::did_you_mean(
                        &key,
                        ours.iter().map(String::as_str).chain(oauth2_proxy::names()),
                    )
                    .map_or_else(
                        || {
                            "; the settings are listed in the README's Configuration section"
                                .to_owned()
                        },
                        |s| format!("; did you mean {PREFIX}{}?", s.to_ascii_uppercase()),
                    );
                    problem(
                        var,
                        format!("not a gatehouse or oauth2-proxy setting{hint}"),
                    );
                    continue;
                }
            }
        };
        match deserialize(&target, value) {
            Some(raw) => layers.push((target, raw)),
            None => {
                let secret = target.contains("secret") || target.contains("password");
                let shown = if secret {
                    "the value"
                } else {
                    value_str(vars, var)
                };
                problem(var, format!("`{shown}` is not a valid value for {target}"));
                out.covered.push(target);
            }
        }
    }
    for (_, raw) in layers {
        out.raw = std::mem::take(&mut out.raw).overlay(raw);
    }
    out
}

fn value_str<'a>(vars: &'a [(String, String)], var: &str) -> &'a str {
    vars.iter()
        .find(|(k, _)| k == var)
        .map_or("", |(_, v)| v.as_str())
}

/// An environment value as TOML: `true`/`false` a boolean, a whole number
/// an integer, a comma-separated list an array (oauth2-proxy's spelling of
/// a list in one variable), anything else a string.
fn typed(value: &str) -> toml::Value {
    match value {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        v if v.contains(',') => toml::Value::Array(
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        v => v
            .parse::<i64>()
            .map_or_else(|_| toml::Value::String(v.to_owned()), toml::Value::Integer),
    }
}

/// `value` under `key` as a settings layer; when the guessed type does not
/// fit the setting, the plain string (and a one-item list) are tried.
fn deserialize(key: &str, value: toml::Value) -> Option<RawConfig> {
    let plain = match &value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        _ => None,
    };
    let mut tries = vec![value];
    if let Some(s) = plain {
        tries.push(toml::Value::String(s.clone()));
        tries.push(toml::Value::Array(vec![toml::Value::String(s)]));
    }
    tries.into_iter().find_map(|v| {
        let mut one = toml::Table::new();
        one.insert(key.to_owned(), v);
        one.try_into::<RawConfig>().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn oauth2_proxy_variables_become_gatehouse_settings() {
        let s = settings(&vars(&[
            ("OAUTH2_PROXY_CLIENT_ID", "app"),
            ("OAUTH2_PROXY_EMAIL_DOMAINS", "example.com,example.org"),
            ("OAUTH2_PROXY_UPSTREAMS", "http://app:8080/api/"),
            ("OAUTH2_PROXY_COOKIE_SECURE", "false"),
            ("OAUTH2_PROXY_COOKIE_EXPIRE", "168h"),
            ("OAUTH2_PROXY_SKIP_PROVIDER_BUTTON", "true"),
        ]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.raw.client_id.as_deref(), Some("app"));
        assert_eq!(s.raw.email_domain, ["example.com", "example.org"]);
        assert_eq!(s.raw.upstream, ["/api/=http://app:8080"]);
        assert_eq!(s.raw.cookie_secure, Some(false));
        assert_eq!(s.raw.cookie_expire.as_deref(), Some("168h"));
        assert_eq!(s.notes.len(), 1);
        assert_eq!(s.notes[0].key, "OAUTH2_PROXY_SKIP_PROVIDER_BUTTON");
    }

    #[test]
    fn oauth2_proxy_metrics_address_variable_sets_metrics_address() {
        let s = settings(&vars(&[("OAUTH2_PROXY_METRICS_ADDRESS", "127.0.0.1:9180")]));
        assert!(s.problems.is_empty(), "{:?}", s.problems);
        assert_eq!(s.raw.metrics_address.as_deref(), Some("127.0.0.1:9180"));
    }

    #[test]
    fn a_missing_feature_or_unknown_name_is_refused_naming_the_variable() {
        let s = settings(&vars(&[
            ("OAUTH2_PROXY_GITHUB_ORG", "acme"),
            ("OAUTH2_PROXY_COOKIE_SECERT", "x"),
            ("OAUTH2_PROXY_HTPASSWD_FILE", "/etc/htpasswd"),
        ]));
        let keys: Vec<&str> = s.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"OAUTH2_PROXY_GITHUB_ORG"),
            "{:?}",
            s.problems
        );
        let typo = s
            .problems
            .iter()
            .find(|p| p.key == "OAUTH2_PROXY_COOKIE_SECERT")
            .unwrap();
        assert!(
            typo.reason
                .contains("did you mean OAUTH2_PROXY_COOKIE_SECRET?"),
            "{typo:?}"
        );
        for p in &s.problems {
            if p.key != "OAUTH2_PROXY_COOKIE_SECERT" {
                assert!(p.reason.contains("not supported yet"), "{p:?}");
            }
        }
    }

    #[test]
    fn a_bad_secret_value_is_not_echoed() {
        // a list where one value is expected: the value must not be shown
        let s = settings(&vars(&[("OAUTH2_PROXY_CLIENT_SECRET", "s3cret,part")]));
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(!s.problems[0].reason.contains("s3cret"), "{:?}", s.problems);
    }
}
