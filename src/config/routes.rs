//! `[[routes]]` and the oauth2-proxy shorthands that become routes
//! (`skip_auth_route`, `skip_auth_regex`, `skip_auth_preflight`,
//! `api_route`), checked and turned into a [`RouteTable`].
//!
//! Owns: the TOML shape of a route and every check on it, each problem named
//! `routes[N].key` (or `skip_auth_route[N]`).
//! Must not: match requests; that is [`crate::routes`].
//!
//! Order: the shorthands come first, as in oauth2-proxy, which checks them
//! before anything else (preflight, then `skip_auth_route`, then
//! `skip_auth_regex`), then `[[routes]]` in file order. `api_route` is not a
//! route: it marks paths that answer 401 on whatever route they are on.

use http::Method;
use regex::Regex;
use serde::Deserialize;

use super::Problems;
use crate::auth::step_up::StepUp;
use crate::routes::{AllowLists, HostMatch, PathMatch, Policy, Route, RouteTable};

/// Longest compiled regex accepted, in bytes of the regex crate's program:
/// a route regex runs on every request.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One `[[routes]]` table as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// `app.example.com` or `*.example.com`.
    pub host: Option<String>,
    /// A path prefix, matched on segment boundaries.
    pub path: Option<String>,
    /// A regular expression on the path.
    pub path_regex: Option<String>,
    /// Methods, exactly as HTTP spells them (`GET`).
    pub methods: Option<Vec<String>>,
    /// `public` or `authenticated` (or left out with allow lists).
    pub policy: Option<String>,
    /// Groups allowed (any of).
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Roles allowed (any of).
    #[serde(default)]
    pub allowed_roles: Vec<String>,
    /// Addresses allowed.
    #[serde(default)]
    pub allowed_emails: Vec<String>,
    /// Email domains allowed.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// The upstream for this route.
    pub upstream: Option<String>,
    /// Answer 401, never redirect to sign in.
    pub api: Option<bool>,
    /// Accept API bearer tokens (JWTs) here.
    pub bearer: Option<bool>,
    /// The one provider whose sessions this route takes.
    pub provider: Option<String>,
    /// The providers whose sessions this route takes (a choice at sign-in).
    pub providers: Option<Vec<String>>,
    /// Step-up: `acr` values the sign-in must have (any one), space-separated.
    pub acr_values: Option<String>,
    /// Step-up: longest time since the user signed in at the provider,
    /// `10m` or whole seconds.
    pub max_age: Option<MaxAge>,
}

/// `max_age` as written: a duration (`10m`) or whole seconds (`600`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MaxAge {
    /// Whole seconds, as OIDC's own `max_age`.
    Secs(i64),
    /// A duration like `10m` or `1h30m`.
    Text(String),
}

/// Builds the route table from the shorthands and `[[routes]]`; problems go
/// to `p`. `None` when anything was wrong.
pub(super) fn build(
    p: &mut Problems,
    raw: &super::RawConfig,
    provider_ids: &[String],
) -> Option<RouteTable> {
    let before = p.0.len();
    let mut routes = Vec::new();
    if raw.skip_auth_preflight == Some(true) {
        routes.push(shorthand(
            "skip_auth_preflight".to_owned(),
            PathMatch::Any,
            Some(vec![Method::OPTIONS]),
            Policy::Public,
            false,
        ));
    }
    for (i, item) in raw.skip_auth_route.iter().enumerate() {
        let key = format!("skip_auth_route[{i}]");
        // `GET=^/health`: the method is what comes before the first `=`
        // when it is a method name; a regex may itself hold `=`
        let (methods, regex) = match item.split_once('=') {
            Some((m, rest)) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
                match method(m) {
                    Ok(m) => (Some(vec![m]), rest),
                    Err(why) => {
                        p.add(&key, why);
                        continue;
                    }
                }
            }
            _ => (None, item.as_str()),
        };
        if let Some(r) = p.check(&key, regex_of(regex)) {
            routes.push(shorthand(
                key,
                PathMatch::Regex(r),
                methods,
                Policy::Public,
                false,
            ));
        }
    }
    for (i, item) in raw.skip_auth_regex.iter().enumerate() {
        let key = format!("skip_auth_regex[{i}]");
        if let Some(r) = p.check(&key, regex_of(item)) {
            routes.push(shorthand(
                key,
                PathMatch::Regex(r),
                None,
                Policy::Public,
                false,
            ));
        }
    }
    // not routes: a path they match answers 401 rather than redirect on
    // whatever route it is (as a route, `^/api/` would take `/api/admin`
    // from a stricter `[[routes]]` after it)
    let mut api_paths = Vec::new();
    for (i, item) in raw.api_route.iter().enumerate() {
        if let Some(r) = p.check(&format!("api_route[{i}]"), regex_of(item)) {
            api_paths.push(r);
        }
    }
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(route) = one(p, &format!("routes[{i}]"), r, provider_ids) {
            routes.push(route);
        }
    }
    if p.0.len() > before {
        return None;
    }
    match RouteTable::new(routes, api_paths) {
        Ok(t) => Some(t),
        Err((earlier, later)) => {
            p.add(
                &later,
                format!(
                    "never used: every request it matches is taken by {earlier}, which comes first (first match wins; put the narrower route first)"
                ),
            );
            None
        }
    }
}

fn shorthand(
    name: String,
    path: PathMatch,
    methods: Option<Vec<Method>>,
    policy: Policy,
    api: bool,
) -> Route {
    Route {
        name,
        index: 0,
        host: HostMatch::Any,
        path,
        methods,
        policy,
        api,
        upstream: None,
        bearer: false,
        providers: None,
        step_up: None,
    }
}

/// One `[[routes]]` table; every problem is added under `name.key`.
fn one(p: &mut Problems, name: &str, r: &RawRoute, provider_ids: &[String]) -> Option<Route> {
    let before = p.0.len();
    let key = |k: &str| format!("{name}.{k}");
    let host = match r.host.as_deref() {
        None => HostMatch::Any,
        Some(h) => p
            .check(&key("host"), host_match(h))
            .unwrap_or(HostMatch::Any),
    };
    let path = match (r.path.as_deref(), r.path_regex.as_deref()) {
        (Some(_), Some(_)) => {
            p.add(&key("path_regex"), "give path or path_regex, not both");
            PathMatch::Any
        }
        (Some(prefix), None) => p
            .check(&key("path"), path_prefix(prefix))
            .unwrap_or(PathMatch::Any),
        (None, Some(re)) => p
            .check(&key("path_regex"), regex_of(re))
            .map_or(PathMatch::Any, PathMatch::Regex),
        (None, None) => PathMatch::Any,
    };
    let methods = match &r.methods {
        None => None,
        Some(list) if list.is_empty() => {
            p.add(
                &key("methods"),
                "an empty list matches nothing; leave the key out for every method",
            );
            None
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for m in list {
                if let Some(m) = p.check(&key("methods"), method(m)) {
                    out.push(m);
                }
            }
            Some(out)
        }
    };
    let lists = AllowLists {
        groups: p
            .check(&key("allowed_groups"), entries(&r.allowed_groups))
            .unwrap_or_default(),
        roles: p
            .check(&key("allowed_roles"), entries(&r.allowed_roles))
            .unwrap_or_default(),
        emails: p
            .check(&key("allowed_emails"), emails(&r.allowed_emails))
            .unwrap_or_default(),
        email_domains: p
            .check(
                &key("allowed_email_domains"),
                domains(&r.allowed_email_domains),
            )
            .unwrap_or_default(),
    };
    let policy = match (r.policy.as_deref(), lists.is_empty()) {
        (Some("public"), true) => Policy::Public,
        (Some("authenticated") | None, true) => Policy::Authenticated,
        (None, false) => Policy::Allow(lists),
        (Some("public" | "authenticated"), false) => {
            p.add(
                &key("policy"),
                "allow lists need a signed-in user: leave policy out (or remove the lists)",
            );
            Policy::Authenticated
        }
        (Some(other), _) => {
            p.add(
                &key("policy"),
                format!(
                    "`{other}`: expected `public` or `authenticated` (or leave it out and give allow lists)"
                ),
            );
            Policy::Authenticated
        }
    };
    let api = r.api.unwrap_or(false);
    if api && policy == Policy::Public {
        p.add(
            &key("api"),
            "a public route never asks anyone to sign in: api has no effect there",
        );
    }
    let bearer = r.bearer.unwrap_or(false);
    if bearer && policy == Policy::Public {
        p.add(
            &key("bearer"),
            "a public route looks at no credentials: bearer has no effect there",
        );
    }
    let upstream = match r.upstream.as_deref() {
        None => None,
        Some(u) => p.check(&key("upstream"), super::parse_http_url(u)),
    };
    let providers = super::provider_tables::route_providers(
        p,
        name,
        r.provider.as_deref(),
        r.providers.as_deref(),
        provider_ids,
    );
    let step_up = step_up(p, &key, r, &policy);
    if step_up.is_some() {
        // a token says nothing of how its holder signed in at the provider
        if bearer {
            p.add(
                &key("bearer"),
                "a step-up route (acr_values, max_age) takes sessions only: a bearer token does not carry the sign-in's strength",
            );
        }
        // a front proxy's sign-in works the step-up out from the address the
        // browser returns to, as for a GET
        if methods
            .as_ref()
            .is_some_and(|ms| !ms.contains(&Method::GET))
        {
            p.add(
                &key("methods"),
                "a step-up route must include GET: the sign-in that steps up returns the browser there with a GET",
            );
        }
    }
    if p.0.len() > before {
        return None;
    }
    Some(Route {
        name: name.to_owned(),
        index: 0,
        host,
        path,
        methods,
        policy,
        api,
        upstream,
        bearer,
        providers,
        step_up,
    })
}

/// A route's `acr_values` and `max_age`, checked.
fn step_up(
    p: &mut Problems,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
    policy: &Policy,
) -> Option<StepUp> {
    if r.acr_values.is_none() && r.max_age.is_none() {
        return None;
    }
    if *policy == Policy::Public {
        let k = if r.acr_values.is_some() {
            "acr_values"
        } else {
            "max_age"
        };
        p.add(
            &key(k),
            "a public route asks nobody to sign in: a step-up has no effect there",
        );
        return None;
    }
    let acr_values = match r.acr_values.as_deref() {
        None => Vec::new(),
        Some(v) => p
            .check(&key("acr_values"), acr_values(v))
            .unwrap_or_default(),
    };
    let max_age = match &r.max_age {
        None => None,
        Some(m) => p.check(&key("max_age"), max_age(m)),
    };
    Some(StepUp {
        acr_values,
        max_age,
    })
}

/// Space-separated `acr` values (OIDC Core 3.1.2.1): at least one, each
/// visible ASCII, as they travel in a query parameter and a claim.
fn acr_values(v: &str) -> Result<Vec<String>, String> {
    let values: Vec<String> = v
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if values.is_empty() {
        return Err(
            "no acr value given: write them space-separated, like \"urn:example:mfa\"".to_owned(),
        );
    }
    if let Some(bad) = values.iter().find(|a| {
        !a.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(format!(
            "`{}`: an acr value is printable ASCII without quotes or backslashes",
            bad.escape_debug()
        ));
    }
    Ok(values)
}

/// `max_age`: a duration or whole seconds, at least one second.
fn max_age(m: &MaxAge) -> Result<std::time::Duration, String> {
    let d = match m {
        MaxAge::Secs(n) => u64::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("`{n}` must be greater than zero (seconds)"))?,
        MaxAge::Text(t) => super::parse_duration(t)?,
    };
    if d.as_secs() == 0 {
        return Err("must be at least one second (providers count max_age in seconds)".to_owned());
    }
    Ok(d)
}

fn host_match(h: &str) -> Result<HostMatch, String> {
    let lower = h.trim_end_matches('.').to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || !name.split('.').all(label_ok) {
        return Err(format!(
            "`{h}`: expected a host name like app.example.com or *.example.com, without scheme, port or path (the port is ignored when matching)"
        ));
    }
    Ok(if wild {
        HostMatch::Subdomain(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

fn path_prefix(prefix: &str) -> Result<PathMatch, String> {
    if prefix.contains(['?', '#']) {
        return Err(format!(
            "`{prefix}`: a path has no query or fragment (matching never looks at them)"
        ));
    }
    match crate::http::path::normalize(prefix) {
        Ok(n) if n == prefix => {}
        Ok(n) => {
            return Err(format!(
                "`{prefix}`: write it as requests are matched, in normal form: `{n}`"
            ));
        }
        Err(e) => return Err(format!("`{prefix}`: {}", e.message())),
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        PathMatch::Any
    } else {
        PathMatch::Prefix(trimmed.to_owned())
    })
}

fn regex_of(re: &str) -> Result<Regex, String> {
    if re.is_empty() {
        return Err("an empty regex matches every path; use path = \"/\"".to_owned());
    }
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("`{re}` is not a valid regex: {e}"))
}

fn method(m: &str) -> Result<Method, String> {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "`{m}`: methods are case-sensitive and written in capitals, like GET"
        ));
    }
    Method::from_bytes(m.as_bytes()).map_err(|e| format!("`{m}`: {e}"))
}

fn entries(list: &[String]) -> Result<Vec<String>, String> {
    if list.iter().any(|e| e.trim().is_empty()) {
        return Err("an entry is empty".to_owned());
    }
    Ok(list.to_vec())
}

fn emails(list: &[String]) -> Result<Vec<String>, String> {
    for e in list {
        if crate::auth::policy::split_email(e).is_none() {
            return Err(format!("`{e}` is not an email address"));
        }
    }
    Ok(list.to_vec())
}

fn domains(list: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        let bare = d.trim_start_matches('@');
        if bare.is_empty() || bare.contains(['@', '/', ' ']) {
            return Err(format!("`{d}` is not a domain"));
        }
        out.push(bare.to_owned());
    }
    Ok(out)
}

/// Whether every match of `re` must start at the start of the path (`^`
/// before each alternative, flags allowed).
pub(super) fn anchored(re: &str) -> bool {
    regex_syntax::parse(re).is_ok_and(|hir| {
        hir.properties()
            .look_set_prefix()
            .contains(regex_syntax::hir::Look::Start)
    })
}

/// Earlier public regex routes that take some of a later, signed-in
/// route's requests: the start-up shadow check cannot prove a regex covers
/// a whole prefix, but a regex that matches the prefix itself surely takes
/// part of it. A warning for `--check-config`, naming both.
pub(super) fn overlaps(table: &RouteTable) -> Vec<super::Problem> {
    let routes = table.routes();
    let mut out = Vec::new();
    for (i, later) in routes.iter().enumerate() {
        let PathMatch::Prefix(prefix) = &later.path else {
            continue;
        };
        if later.is_public() {
            continue;
        }
        for earlier in &routes[..i] {
            if let PathMatch::Regex(re) = &earlier.path
                && earlier.is_public()
                && (re.is_match(prefix) || re.is_match(&format!("{prefix}/")))
            {
                out.push(super::Problem {
                    key: later.name.clone(),
                    reason: format!(
                        "{} (public, `{}`) comes first and takes some of its requests, such as \
                         {prefix}/: put the narrower route first or anchor the regex",
                        earlier.name,
                        re.as_str()
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod step_up_tests;
#[cfg(test)]
mod tests;
