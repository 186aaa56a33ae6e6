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

/// The request could not be placed: which route applies depends on the
/// method, which the front proxy did not send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodUnknown;

/// The routes in order, and the default route after them.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Every route, the default last.
    routes: Vec<Route>,
}

impl Default for RouteTable {
    fn default() -> Self {
        Self {
            routes: vec![Route::fallback(0)],
        }
    }
}

impl RouteTable {
    /// Builds the table from routes in order; renumbers them and appends the
    /// default route. Errs when a route can never match because an earlier
    /// one takes every request it would: `(earlier, later)` names.
    pub fn new(mut routes: Vec<Route>) -> Result<Self, (String, String)> {
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
        Ok(Self { routes })
    }

    /// True when only the default route is there: behaviour is as before
    /// routes existed.
    pub fn is_default_only(&self) -> bool {
        self.routes.len() == 1
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
    /// does. With the method unknown, a route that names methods cannot be
    /// decided on, and the request is refused rather than placed on a later,
    /// perhaps weaker, route.
    pub fn find(&self, target: &Target<'_>) -> Result<&Route, MethodUnknown> {
        for r in &self.routes {
            if !r.matches_host(target.host) || !r.matches_path(target.path) {
                continue;
            }
            match (&r.methods, target.method) {
                (None, _) => return Ok(r),
                (Some(_), None) => return Err(MethodUnknown),
                (Some(ms), Some(m)) if ms.contains(m) => return Ok(r),
                (Some(_), Some(_)) => {}
            }
        }
        // the default route has no condition; this is not reached
        Ok(self.fallback())
    }
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
