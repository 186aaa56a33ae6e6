//! Command-line interface: `--config`, `--check-config` and every setting as
//! a flag (each also read from its `GATEHOUSE_*` env var by clap).

use std::path::PathBuf;

use clap::Parser;

use crate::config::RawConfig;

/// gatehouse: an authenticating reverse proxy and forward-auth server.
#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    long_version = crate::build_info::LONG_VERSION,
    about,
    long_about = None
)]
pub struct Cli {
    /// TOML configuration file (keys are the flag names with `_`)
    #[arg(long, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, fetch the provider's discovery document,
    /// print every problem found, and exit (0 only when there are none)
    #[arg(long)]
    pub check_config: bool,

    /// Settings (flag > env > file > default)
    #[command(flatten)]
    pub settings: RawConfig,
}

/// A secret given as a command-line flag, which every local user can read
/// in `ps` and `/proc/PID/cmdline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOnCommandLine {
    /// The flag, e.g. `--cookie-secret`.
    pub flag: &'static str,
    /// Where the secret belongs instead.
    pub instead: &'static str,
}

/// The secrets in `settings` that came from command-line flags (not from
/// their env vars): each deserves a warning at start.
pub fn secrets_on_command_line(
    matches: &clap::ArgMatches,
    settings: &RawConfig,
) -> Vec<SecretOnCommandLine> {
    use clap::parser::ValueSource;
    let from_flag = |id: &str| {
        matches!(
            matches.try_get_raw(id),
            Ok(Some(_)) if matches.value_source(id) == Some(ValueSource::CommandLine)
        )
    };
    let has_password = |u: &String| {
        url::Url::parse(u).is_ok_and(|u| u.password().is_some() || !u.username().is_empty())
    };
    let checks: [(&str, &'static str, &'static str, bool); 6] = [
        (
            "cookie_secret",
            "--cookie-secret",
            "GATEHOUSE_COOKIE_SECRET or cookie_secret_file",
            true,
        ),
        (
            "client_secret",
            "--client-secret",
            "GATEHOUSE_CLIENT_SECRET or client_secret_file",
            true,
        ),
        (
            "redis_password",
            "--redis-password",
            "GATEHOUSE_REDIS_PASSWORD or redis_password_file",
            true,
        ),
        (
            "redis_connection_url",
            "--redis-connection-url",
            "a URL without a password plus GATEHOUSE_REDIS_PASSWORD or redis_password_file",
            settings.redis_connection_url.iter().any(has_password),
        ),
        (
            "redis_sentinel_connection_urls",
            "--redis-sentinel-connection-urls",
            "URLs without a password plus GATEHOUSE_REDIS_PASSWORD or redis_password_file",
            settings
                .redis_sentinel_connection_urls
                .iter()
                .any(has_password),
        ),
        (
            "redis_cluster_connection_urls",
            "--redis-cluster-connection-urls",
            "URLs without a password plus GATEHOUSE_REDIS_PASSWORD or redis_password_file",
            settings
                .redis_cluster_connection_urls
                .iter()
                .any(has_password),
        ),
    ];
    checks
        .into_iter()
        .filter(|(id, _, _, secret)| *secret && from_flag(id))
        .map(|(_, flag, instead, _)| SecretOnCommandLine { flag, instead })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::*;

    fn warned(args: &[&str]) -> Vec<&'static str> {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        secrets_on_command_line(&matches, &cli.settings)
            .into_iter()
            .map(|w| w.flag)
            .collect()
    }

    #[test]
    fn secrets_given_as_flags_are_named_for_a_warning() {
        assert_eq!(
            warned(&[
                "gatehouse",
                "--cookie-secret",
                "x",
                "--client-secret=y",
                "--redis-password",
                "z",
                "--redis-connection-url",
                "redis://:pw@127.0.0.1:6379/0",
                "--redis-cluster-connection-urls",
                "redis://127.0.0.1:7000,redis://user:pw@127.0.0.1:7001",
            ]),
            [
                "--cookie-secret",
                "--client-secret",
                "--redis-password",
                "--redis-connection-url",
                "--redis-cluster-connection-urls",
            ]
        );
    }

    #[test]
    fn help_is_grouped_by_topic_marks_required_settings_and_lists_providers() {
        let help = Cli::command().render_help().to_string();
        for heading in [
            "Listening:",
            "Provider:",
            "Cookies and sessions:",
            "Upstream:",
            "Policy:",
            "Logging:",
            "Limits:",
        ] {
            assert!(
                help.lines().any(|l| l == heading),
                "{heading} missing:\n{help}"
            );
        }
        let section = |flag: &str| {
            let i = help.find(flag).unwrap();
            help[..i].rfind(":\n").map(|end| {
                let start = help[..end].rfind('\n').map_or(0, |s| s + 1);
                help[start..end].to_owned()
            })
        };
        assert_eq!(
            section("--cookie-secret <").as_deref(),
            Some("Cookies and sessions")
        );
        assert_eq!(section("--email-domain <").as_deref(), Some("Policy"));
        assert_eq!(section("--client-id <").as_deref(), Some("Provider"));
        for name in crate::auth::providers::all_names() {
            assert!(help.contains(name), "provider {name} not listed:\n{help}");
        }
        assert!(help.contains("16, 24 or 32 bytes"), "{help}");
        assert_eq!(help.matches("[required").count(), 6, "{help}");
    }

    #[test]
    fn flags_without_secrets_are_not_warned_about() {
        assert!(
            warned(&[
                "gatehouse",
                "--client-id",
                "gatehouse",
                "--cookie-secret-file",
                "/run/secrets/cookie",
                "--redis-connection-url",
                "redis://127.0.0.1:6379/0",
            ])
            .is_empty()
        );
    }
}
