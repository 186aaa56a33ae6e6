//! The route table: which rules apply to a request, chosen from its head.
//!
//! Owns: the routes built once at start (from `[[routes]]` and the
//! oauth2-proxy shorthands), matching a request's host, method and
//! normalised path to the first route that fits, the per-route allow lists,
//! and the start-up check that no route is hidden behind an earlier one.
//! Must not: read cookies, sessions or tokens (that is `auth/`), or forward
//! anything (that is `proxy/`). Matching never sees the query or fragment:
//! callers pass the path alone, after [`crate::http::path::normalize`].
//!
//! Matching is a linear scan with byte comparisons, no allocation: a table
//! of a few dozen routes costs less than the header parsing before it.

use http::Method;
use regex::Regex;

use crate::auth::identity::Identity;
use crate::auth::policy::{DenyReason, split_email};

/// How a route matches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// This host (lower case, no trailing dot, no port).
    Exact(String),
    /// Any subdomain of this one (`*.example.com`: stored as `.example.com`),
    /// at any depth, not the domain itself.
    Subdomain(String),
}

/// How a route matches the path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Any path.
    Any,
    /// A prefix on segment boundaries, without a trailing `/` (never `/`
    /// itself, which is [`PathMatch::Any`]): `/api` matches `/api`, `/api/`
    /// and `/api/x`, not `/apix`.
    Prefix(String),
    /// A regular expression, searched anywhere in the path unless anchored
    /// (as oauth2-proxy's `--skip-auth-route` does).
    Regex(Regex),
}

/// Who may pass a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone: no session needed and none looked at; no identity headers go
    /// upstream (clients' are still stripped).
    Public,
    /// Any signed-in user who passes the site-wide rules.
    Authenticated,
    /// A signed-in user who passes the site-wide rules and is in one of the
    /// lists.
    Allow(AllowLists),
}

/// A route's allow lists: being in any one of them suffices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowLists {
    /// Groups, compared exactly.
    pub groups: Vec<String>,
    /// Roles, compared exactly.
    pub roles: Vec<String>,
    /// Addresses, compared without regard to case.
    pub emails: Vec<String>,
    /// Email domains, compared without regard to case.
    pub email_domains: Vec<String>,
}

impl AllowLists {
    /// True when no list has an entry.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.roles.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty()
    }

    /// Whether `id` is in one of the lists.
    pub fn admits(&self, id: &Identity) -> bool {
        if id.groups.iter().any(|g| self.groups.contains(g))
            || id.roles.iter().any(|r| self.roles.contains(r))
        {
            return true;
        }
        // only a well-formed address counts: `a@b@example.com` is nobody's
        let Some(email) = id.email.as_deref() else {
            return false;
        };
        let Some((_, domain)) = split_email(email) else {
            return false;
        };
        self.emails.iter().any(|e| e.eq_ignore_ascii_case(email))
            || self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// One route: where it applies and what it says.
#[derive(Debug, Clone)]
pub struct Route {
    /// How the route is named in logs and errors: `routes[2]`, or
    /// `skip_auth_route[0]` for a shorthand, or `default`.
    pub name: String,
    /// Its place in the table (the default route is last).
    pub index: usize,
    /// The host it applies to.
    pub host: HostMatch,
    /// The paths it applies to.
    pub path: PathMatch,
    /// The methods it applies to; `None` for every method.
    pub methods: Option<Vec<Method>>,
    /// Who may pass.
    pub policy: Policy,
    /// Never redirect to sign in: answer 401 (oauth2-proxy's `--api-route`).
    pub api: bool,
    /// The upstream for this route, instead of the global `upstream`.
    pub upstream: Option<url::Url>,
    /// Accept `Authorization: Bearer <JWT>` here (also everywhere with
    /// `skip_jwt_bearer_tokens`).
    pub bearer: bool,
    /// The providers whose sessions this route takes (`provider` /
    /// `providers`); `None` for every configured one.
    pub providers: Option<crate::config::ProviderSet>,
    /// A stronger or more recent sign-in this route asks for
    /// (`acr_values`, `max_age`).
    pub step_up: Option<crate::auth::step_up::StepUp>,
}

impl Route {
    /// The route that applies when no other does: today's behaviour, any
    /// signed-in user who passes the site-wide rules.
    pub fn fallback(index: usize) -> Self {
        Self {
            name: "default".to_owned(),
            index,
            host: HostMatch::Any,
            path: PathMatch::Any,
            methods: None,
            policy: Policy::Authenticated,
            api: false,
            upstream: None,
            bearer: false,
            providers: None,
            step_up: None,
        }
    }

    /// Whether the signed-in `id` may pass this route's own lists (the
    /// site-wide rules are checked before, by the gate).
    pub fn admits(&self, id: &Identity) -> Result<(), DenyReason> {
        match &self.policy {
            Policy::Allow(lists) if !lists.admits(id) => Err(DenyReason::Route),
            _ => Ok(()),
        }
    }

    /// True for a route that needs no session.
    pub fn is_public(&self) -> bool {
        self.policy == Policy::Public
    }

    fn matches_host(&self, host: Option<&str>) -> bool {
        let want = match &self.host {
            HostMatch::Any => return true,
            HostMatch::Exact(h) | HostMatch::Subdomain(h) => h,
        };
        let Some(host) = host.map(bare_host) else {
            return false;
        };
        match &self.host {
            HostMatch::Exact(_) => host.eq_ignore_ascii_case(want),
            _ => {
                host.len() > want.len()
                    && host.is_char_boundary(host.len() - want.len())
                    && host[host.len() - want.len()..].eq_ignore_ascii_case(want)
            }
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        match &self.path {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }
}

/// One line for `--check-config`: where the route applies and what it says.
impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<22}", self.name)?;
        match &self.host {
            HostMatch::Any => write!(f, " host *")?,
            HostMatch::Exact(h) => write!(f, " host {h}")?,
            HostMatch::Subdomain(h) => write!(f, " host *{h}")?,
        }
        match &self.path {
            PathMatch::Any => write!(f, ", any path")?,
            PathMatch::Prefix(p) => write!(f, ", path {p}")?,
            PathMatch::Regex(r) => write!(f, ", path_regex {}", r.as_str())?,
        }
        if let Some(ms) = &self.methods {
            let ms: Vec<&str> = ms.iter().map(Method::as_str).collect();
            write!(f, ", {}", ms.join("|"))?;
        }
        match &self.policy {
            Policy::Public => write!(f, " -> public")?,
            Policy::Authenticated => write!(f, " -> signed in")?,
            Policy::Allow(l) => {
                write!(f, " -> signed in and one of")?;
                for (what, list) in [
                    ("groups", &l.groups),
                    ("roles", &l.roles),
                    ("emails", &l.emails),
                    ("email domains", &l.email_domains),
                ] {
                    if !list.is_empty() {
                        write!(f, " {what} [{}]", list.join(", "))?;
                    }
                }
            }
        }
        if let Some(s) = &self.step_up {
            if let Some(acr) = s.acr_param() {
                write!(f, ", acr one of [{acr}]")?;
            }
            if let Some(age) = s.max_age_secs() {
                write!(f, ", signed in within {age}s")?;
            }
        }
        if self.api {
            write!(f, ", 401 not redirect")?;
        }
        if self.bearer {
            write!(f, ", bearer tokens")?;
        }
        if let Some(u) = &self.upstream {
            write!(f, ", upstream {u}")?;
        }
        Ok(())
    }
}

/// A host as compared: without the port and a trailing dot. An IPv6
/// literal keeps its brackets.
fn bare_host(host: &str) -> &str {
    let host = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _port)| h)
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// What a request looks like to the route table.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The host the client asked for, port and all, if known.
    pub host: Option<&'a str>,
    /// The method; `None` when a front proxy did not say (forward-auth).
    pub method: Option<&'a Method>,
    /// The path, normalised, without the query.
    pub path: &'a str,
}

/// The request could not be placed on a route without guessing; the text
/// says why (for a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unplaced(pub &'static str);

/// Where a request was placed.
#[derive(Debug, Clone, Copy)]
pub struct Placed<'a> {
    /// The route.
    pub route: &'a Route,
    /// Never redirect to sign in: the route says so, or an `api_route`
    /// regex matches the path.
    pub api: bool,
}

/// The routes in order, and the default route after them.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Every route, the default last.
    routes: Vec<Route>,
    /// `api_route`: paths that answer 401 rather than redirect, whatever
    /// route they are on (a modifier, as in oauth2-proxy, not a route: as a
    /// route it would take requests from the routes after it).
    api_paths: Vec<Regex>,
    /// Some route names a host: a Host that is not a host name is refused
    /// rather than matched by none of them.
    names_hosts: bool,
    /// Some route names methods.
    names_methods: bool,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            routes: vec![Route::fallback(0)],
            api_paths: Vec::new(),
            names_hosts: false,
            names_methods: false,
        }
    }
}

impl RouteTable {
    /// Builds the table from routes in order; renumbers them and appends the
    /// default route. Errs when a route can never match because an earlier
    /// one takes every request it would: `(earlier, later)` names.
    pub fn new(mut routes: Vec<Route>, api_paths: Vec<Regex>) -> Result<Self, (String, String)> {
        for (i, later) in routes.iter().enumerate() {
            if let Some(earlier) = routes[..i].iter().find(|e| shadows(e, later)) {
                return Err((earlier.name.clone(), later.name.clone()));
            }
        }
        let n = routes.len();
        routes.push(Route::fallback(n));
        for (i, r) in routes.iter_mut().enumerate() {
            r.index = i;
        }
        Ok(Self {
            names_hosts: routes.iter().any(|r| r.host != HostMatch::Any),
            names_methods: routes.iter().any(|r| r.methods.is_some()),
            routes,
            api_paths,
        })
    }

    /// True when only the default route is there (and no `api_route`):
    /// behaviour is as before routes existed.
    pub fn is_default_only(&self) -> bool {
        self.routes.len() == 1 && self.api_paths.is_empty()
    }

    /// True when some route names methods: the upstream must then not be
    /// told another method in a header (`X-HTTP-Method-Override`).
    pub fn names_methods(&self) -> bool {
        self.names_methods
    }

    /// The `api_route` regexes.
    pub fn api_paths(&self) -> &[Regex] {
        &self.api_paths
    }

    /// The default route: the site-wide rules alone.
    pub fn fallback(&self) -> &Route {
        // `new` and `default` always put it there
        &self.routes[self.routes.len() - 1]
    }

    /// Every route, the default last.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route that fits `target`; the default route when none
    /// does. Paths are compared without `;` parameters (`/admin;x/y` is
    /// `/admin/y` to Tomcat and Jetty, so it is to the routes). A request
    /// that cannot be placed without guessing is refused: the method unknown
    /// (forward-auth) or not in capitals (`delete` is not `DELETE` to HTTP,
    /// but is to many frameworks) where a route names methods, or a Host
    /// that is not a host name where a route names hosts. `HEAD` goes where
    /// `GET` does: servers answer it as a `GET`.
    pub fn find(&self, target: &Target<'_>) -> Result<Placed<'_>, Unplaced> {
        if self.names_hosts
            && let Some(h) = target.host
            && !is_host_name(bare_host(h))
        {
            return Err(Unplaced("the Host header is not a host name"));
        }
        let path = without_parameters(target.path);
        let api = self.api_paths.iter().any(|r| r.is_match(&path));
        for r in &self.routes {
            if !r.matches_host(target.host) || !r.matches_path(&path) {
                continue;
            }
            let Some(ms) = &r.methods else {
                return Ok(Placed {
                    route: r,
                    api: api || r.api,
                });
            };
            let Some(m) = target.method else {
                return Err(Unplaced(
                    "a route depends on the method: the front proxy must send X-Forwarded-Method",
                ));
            };
            if m.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
                return Err(Unplaced("the method is not written in capitals"));
            }
            if ms.contains(m) || (m == Method::HEAD && ms.contains(&Method::GET)) {
                return Ok(Placed {
                    route: r,
                    api: api || r.api,
                });
            }
        }
        // the default route has no condition; this is not reached
        Ok(Placed {
            route: self.fallback(),
            api,
        })
    }
}

/// `path` with each segment's `;` parameters (raw or `%3B`, as the normal
/// form spells it) removed; borrowed when there are none.
fn without_parameters(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains(';') && !path.contains("%3B") {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let end = segment
            .find(';')
            .into_iter()
            .chain(segment.find("%3B"))
            .min()
            .unwrap_or(segment.len());
        out.push_str(&segment[..end]);
    }
    std::borrow::Cow::Owned(out)
}

/// A DNS name (letters, digits, `-`, single dots) or a bracketed IPv6
/// literal; an IPv4 literal passes as a name.
fn is_host_name(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !h.is_empty()
        && h.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Whether `earlier` takes every request `later` would: same or wider host,
/// path and methods. A regex is only known to cover the same regex.
fn shadows(earlier: &Route, later: &Route) -> bool {
    let host = match (&earlier.host, &later.host) {
        (HostMatch::Any, _) => true,
        (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
        // `.example.com` ends `app.example.com`, `.x.example.com` and itself
        (HostMatch::Subdomain(a), HostMatch::Exact(b) | HostMatch::Subdomain(b)) => {
            b.ends_with(a.as_str())
        }
        _ => false,
    };
    let path = match (&earlier.path, &later.path) {
        (PathMatch::Any, _) => true,
        (PathMatch::Prefix(a), PathMatch::Prefix(b)) => b
            .strip_prefix(a.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
        _ => false,
    };
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
    };
    host && path && methods
}

#[cfg(test)]
mod tests;
