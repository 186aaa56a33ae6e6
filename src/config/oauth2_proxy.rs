//! oauth2-proxy's config-file names, read as aliases of gatehouse's own so
//! an existing `oauth2-proxy.cfg` (which is TOML) runs unchanged where the
//! feature exists.
//!
//! Owns: the table of oauth2-proxy keys and what each becomes here: another
//! key (with the value rewritten where oauth2-proxy spells it differently),
//! accepted and ignored (gatehouse does that anyway, with a note saying
//! so), or refused with a plain "not supported yet". Also the "did you mean"
//! suggestion for a key nobody knows.
//! Must not: validate values; `Config::from_raw` does that under the
//! gatehouse key.

/// What an oauth2-proxy key becomes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Translation {
    /// The gatehouse key and the value to give it.
    Rename(&'static str, toml::Value),
    /// Accepted and ignored; the note says why (printed as a warning).
    Ignored(String),
    /// A feature gatehouse does not have; the reason says so plainly.
    Unsupported(String),
}

/// What a key in [`TABLE`] is.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The same setting under gatehouse's name.
    Rename(&'static str),
    /// Accepted whatever its value; the text says why nothing changes.
    Ignored(&'static str),
    /// Accepted when it says what gatehouse always does (the value given),
    /// refused otherwise; the text says what gatehouse does.
    OnlyIf(bool, &'static str),
    /// Not there yet; the text is what to do instead (may be empty).
    Unsupported(&'static str),
}

const LOGS: &str = "gatehouse writes one access line per request and its own events to stderr; choose with log_format and log_level";
const PROVIDER_SPECIFIC: &str = "a setting of one of oauth2-proxy's own providers; gatehouse speaks OpenID Connect: use provider = \"oidc\" and allowed_group or allowed_role";

/// oauth2-proxy's config-file keys (v7) that gatehouse does not spell the
/// same way. Keys spelt the same (`client_id`, `cookie_secret`, ...) are
/// gatehouse's own and need no entry.
const TABLE: &[(&str, Kind)] = &[
    // --- same setting, another name
    ("email_domains", Kind::Rename("email_domain")),
    ("skip_auth_routes", Kind::Rename("skip_auth_route")),
    ("api_routes", Kind::Rename("api_route")),
    ("upstreams", Kind::Rename("upstream")),
    ("whitelist_domains", Kind::Rename("whitelist_domain")),
    ("cookie_domains", Kind::Rename("cookie_domain")),
    ("allowed_groups", Kind::Rename("allowed_group")),
    ("allowed_roles", Kind::Rename("allowed_role")),
    ("login_url", Kind::Rename("oidc_authorize_url")),
    ("redeem_url", Kind::Rename("oidc_token_url")),
    ("profile_url", Kind::Rename("oidc_userinfo_url")),
    ("oidc_extra_audiences", Kind::Rename("oidc_extra_audience")),
    (
        "insecure_oidc_allow_unverified_email",
        Kind::Rename("allow_unverified_email"),
    ),
    // --- what gatehouse does anyway
    (
        "skip_provider_button",
        Kind::Ignored(
            "gatehouse has no sign-in button page: it always sends the browser straight to the provider",
        ),
    ),
    (
        "reverse_proxy",
        Kind::Ignored(
            "gatehouse believes X-Forwarded-* headers only from trusted_proxy addresses (default: loopback); list your front proxy there",
        ),
    ),
    (
        "set_xauthrequest",
        Kind::Ignored(
            "gatehouse always answers /oauth2/auth with X-Auth-Request-User, -Email, -Preferred-Username and -Groups",
        ),
    ),
    (
        "provider_display_name",
        Kind::Ignored("gatehouse shows no provider name"),
    ),
    (
        "flush_interval",
        Kind::Ignored("gatehouse streams responses as they come"),
    ),
    (
        "approval_prompt",
        Kind::Ignored("gatehouse sends no prompt parameter; the provider decides"),
    ),
    ("request_logging", Kind::Ignored(LOGS)),
    ("auth_logging", Kind::Ignored(LOGS)),
    ("standard_logging", Kind::Ignored(LOGS)),
    ("request_logging_format", Kind::Ignored(LOGS)),
    ("auth_logging_format", Kind::Ignored(LOGS)),
    ("standard_logging_format", Kind::Ignored(LOGS)),
    ("silence_ping_logging", Kind::Ignored(LOGS)),
    ("errors_to_info_log", Kind::Ignored(LOGS)),
    ("exclude_logging_paths", Kind::Ignored(LOGS)),
    ("logging_local_time", Kind::Ignored(LOGS)),
    (
        "pass_user_headers",
        Kind::OnlyIf(
            true,
            "gatehouse always sends X-Forwarded-User, -Email, -Preferred-Username and -Groups upstream",
        ),
    ),
    (
        "skip_auth_strip_headers",
        Kind::OnlyIf(
            true,
            "gatehouse always strips identity headers sent by clients",
        ),
    ),
    (
        "proxy_websockets",
        Kind::OnlyIf(true, "gatehouse always proxies WebSockets"),
    ),
    (
        "cookie_httponly",
        Kind::OnlyIf(true, "gatehouse's cookies are always HttpOnly"),
    ),
    (
        "pass_basic_auth",
        Kind::OnlyIf(false, "gatehouse sends no Basic credentials upstream"),
    ),
    (
        "set_basic_auth",
        Kind::OnlyIf(false, "gatehouse sends no Basic credentials"),
    ),
    (
        "ssl_insecure_skip_verify",
        Kind::OnlyIf(
            false,
            "gatehouse always verifies the provider's certificate",
        ),
    ),
    (
        "ssl_upstream_insecure_skip_verify",
        Kind::OnlyIf(false, "gatehouse always verifies upstream certificates"),
    ),
    (
        "force_https",
        Kind::OnlyIf(false, "gatehouse does not redirect http to https"),
    ),
    // --- not there (yet)
    (
        "trusted_ips",
        Kind::Unsupported(
            "gatehouse lets no address past sign-in (trusted_proxy only says whose X-Forwarded-* headers to believe)",
        ),
    ),
    (
        "https_address",
        Kind::Unsupported(
            "gatehouse listens on one address: set http_address, and tls_cert_file and tls_key_file to serve HTTPS there",
        ),
    ),
    (
        "authenticated_emails_file",
        Kind::Unsupported("use email_domain, allowed_group or allowed_role"),
    ),
    ("htpasswd_file", Kind::Unsupported("")),
    ("htpasswd_user_groups", Kind::Unsupported("")),
    ("display_htpasswd_form", Kind::Unsupported("")),
    ("custom_sign_in_logo", Kind::Unsupported("")),
    ("show_debug_on_error", Kind::Unsupported("")),
    (
        "proxy_prefix",
        Kind::Unsupported("gatehouse's endpoints are always under /oauth2"),
    ),
    (
        "cookie_path",
        Kind::Unsupported("the cookie's path is always /"),
    ),
    (
        "cookie_samesite",
        Kind::Unsupported("gatehouse's cookies are always SameSite=Lax"),
    ),
    ("cookie_csrf_per_request", Kind::Unsupported("")),
    ("cookie_csrf_expire", Kind::Unsupported("")),
    ("session_cookie_minimal", Kind::Unsupported("")),
    ("set_authorization_header", Kind::Unsupported("")),
    ("basic_auth_password", Kind::Unsupported("")),
    (
        "prefer_email_to_user",
        Kind::Unsupported("use user_id_claim = \"email\""),
    ),
    ("real_client_ip_header", Kind::Unsupported("")),
    ("request_id_header", Kind::Unsupported("")),
    (
        "logging_filename",
        Kind::Unsupported("gatehouse logs to stderr: let the service manager keep the file"),
    ),
    (
        "logging_max_size",
        Kind::Unsupported("gatehouse logs to stderr: let the service manager rotate"),
    ),
    (
        "logging_max_age",
        Kind::Unsupported("gatehouse logs to stderr: let the service manager rotate"),
    ),
    (
        "logging_max_backups",
        Kind::Unsupported("gatehouse logs to stderr: let the service manager rotate"),
    ),
    (
        "logging_compress",
        Kind::Unsupported("gatehouse logs to stderr: let the service manager rotate"),
    ),
    (
        "ping_path",
        Kind::Unsupported("the health check is always /ping"),
    ),
    (
        "ready_path",
        Kind::Unsupported("the readiness check is always /ready"),
    ),
    ("ping_user_agent", Kind::Unsupported("")),
    ("gcp_healthchecks", Kind::Unsupported("")),
    ("metrics_secure_address", Kind::Unsupported("")),
    (
        "tls_min_version",
        Kind::Unsupported("gatehouse serves TLS 1.2 and 1.3"),
    ),
    ("tls_cipher_suites", Kind::Unsupported("")),
    ("validate_url", Kind::Unsupported("")),
    ("pubjwk_url", Kind::Unsupported("use oidc_jwks_url")),
    ("oidc_audience_claims", Kind::Unsupported("")),
    (
        "insecure_oidc_skip_issuer_verification",
        Kind::Unsupported("gatehouse always checks the issuer"),
    ),
    (
        "insecure_oidc_skip_nonce",
        Kind::Unsupported("gatehouse always checks the nonce"),
    ),
    (
        "code_challenge_method",
        Kind::Unsupported("gatehouse always uses PKCE with S256"),
    ),
    (
        "force_code_challenge_method",
        Kind::Unsupported("gatehouse always uses PKCE with S256"),
    ),
    ("acr_values", Kind::Unsupported("")),
    ("prompt", Kind::Unsupported("")),
    ("jwt_key", Kind::Unsupported("")),
    ("jwt_key_file", Kind::Unsupported("")),
    (
        "provider_ca_files",
        // the webpki roots are built in: the system's store is not read
        // either, so a private CA cannot be added there
        Kind::Unsupported(
            "gatehouse trusts the webpki roots (Mozilla's CA list) only: a provider behind a private CA is not supported",
        ),
    ),
    ("use_system_trust_store", Kind::Unsupported("")),
    ("backend_logout_url", Kind::Unsupported("")),
    ("encode_state", Kind::Unsupported("")),
    ("relative_redirect_url", Kind::Unsupported("")),
    ("allow_query_semicolons", Kind::Unsupported("")),
    ("bearer_token_login_fallback", Kind::Unsupported("")),
    ("force_json_errors", Kind::Unsupported("")),
    ("signature_key", Kind::Unsupported("")),
    ("redis_sentinel_password", Kind::Unsupported("")),
    ("redis_username", Kind::Unsupported("")),
    ("redis_ca_path", Kind::Unsupported("")),
    ("redis_insecure_skip_tls_verify", Kind::Unsupported("")),
    ("redis_connection_idle_timeout", Kind::Unsupported("")),
    ("azure_tenant", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("github_org", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("github_team", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("github_repo", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("github_token", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("github_users", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("gitlab_groups", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("gitlab_projects", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("google_group", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("google_groups", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("google_admin_email", Kind::Unsupported(PROVIDER_SPECIFIC)),
    (
        "google_service_account_json",
        Kind::Unsupported(PROVIDER_SPECIFIC),
    ),
    ("keycloak_groups", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("bitbucket_team", Kind::Unsupported(PROVIDER_SPECIFIC)),
    ("bitbucket_repository", Kind::Unsupported(PROVIDER_SPECIFIC)),
];

/// Every oauth2-proxy key the table knows (for "did you mean").
pub(super) fn names<'a>() -> impl Iterator<Item = &'a str> {
    TABLE.iter().map(|(k, _)| *k)
}

/// The gatehouse key an oauth2-proxy key stands for, when there is one.
pub(super) fn target(key: &str) -> Option<&'static str> {
    TABLE.iter().find_map(|(k, kind)| match kind {
        Kind::Rename(ours) if *k == key => Some(*ours),
        _ => None,
    })
}

/// What `key` (not a gatehouse key) means as an oauth2-proxy setting with
/// `value`; `None` when it is no oauth2-proxy key either.
pub(super) fn translate(key: &str, value: &toml::Value) -> Option<Translation> {
    let (_, kind) = TABLE.iter().find(|(k, _)| *k == key)?;
    Some(match *kind {
        Kind::Rename("upstream") => upstreams(value),
        Kind::Rename("cookie_domain") => cookie_domains(value),
        Kind::Rename(ours) => Translation::Rename(ours, value.clone()),
        Kind::Ignored(why) => {
            Translation::Ignored(format!("oauth2-proxy setting accepted and ignored: {why}"))
        }
        Kind::OnlyIf(expected, what) => {
            if value.as_bool() == Some(expected) {
                Translation::Ignored(format!("oauth2-proxy setting accepted and ignored: {what}"))
            } else {
                Translation::Unsupported(format!(
                    "the oauth2-proxy setting `{key} = {value}` is not supported yet: {what}"
                ))
            }
        }
        Kind::Unsupported(instead) => {
            let mut reason = format!("the oauth2-proxy setting `{key}` is not supported yet");
            if !instead.is_empty() {
                reason.push_str(": ");
                reason.push_str(instead);
            }
            Translation::Unsupported(reason)
        }
    })
}

/// oauth2-proxy routes by the upstream URL's path and sends the request
/// path unchanged (`http://app:8080/api/` serves `/api/...`); gatehouse says
/// that as `/api/=http://app:8080`. Static and file upstreams do not exist
/// here.
fn upstreams(value: &toml::Value) -> Translation {
    let items: Vec<&toml::Value> = match value {
        toml::Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some(s) = item.as_str() else {
            // leave it to the type check under `upstream`
            return Translation::Rename("upstream", value.clone());
        };
        if s.starts_with("file://") || s.starts_with("static://") {
            return Translation::Unsupported(format!(
                "`{s}`: file:// and static:// upstreams are not supported yet; gatehouse proxies to http(s) URLs"
            ));
        }
        let rewritten = match url::Url::parse(s) {
            Ok(u) if u.host_str().is_some() && !matches!(u.path(), "" | "/") => {
                let path = u.path().to_owned();
                let mut base = u;
                base.set_path("");
                format!("{path}={}", base.as_str().trim_end_matches('/'))
            }
            _ => s.to_owned(),
        };
        out.push(toml::Value::String(rewritten));
    }
    Translation::Rename("upstream", toml::Value::Array(out))
}

/// oauth2-proxy takes a list of cookie domains (the longest matching the
/// request wins); gatehouse takes one.
fn cookie_domains(value: &toml::Value) -> Translation {
    match value {
        toml::Value::Array(a) if a.len() == 1 => Translation::Rename("cookie_domain", a[0].clone()),
        toml::Value::Array(a) if a.len() > 1 => Translation::Unsupported(
            "several cookie domains are not supported yet: give the one that covers every host gatehouse serves".to_owned(),
        ),
        other => Translation::Rename("cookie_domain", other.clone()),
    }
}

/// The candidate nearest to `key` by edit distance, when near enough to be
/// a likely typo.
pub(super) fn did_you_mean<'a>(
    key: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counting an adjacent swap as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0_usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}
