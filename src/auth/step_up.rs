//! Step-up authentication: a route that asks for a stronger or more recent
//! sign-in than the session has (`acr_values`, `max_age`; OIDC Core 3.1.2.1).
//!
//! Owns: [`StepUp`], what a route asks for, and [`step_up_needed`], the pure
//! check of a session's `acr` and `auth_time` against it. The same check
//! runs on every request to such a route and once more on the ID token the
//! step-up login brings back, so a provider that does not meet the request
//! ends in an error page, never in a loop of logins.
//! Must not: talk to the provider or read cookies.

use std::time::Duration;

use crate::auth::identity::Identity;

/// How far ahead of our clock a provider's `auth_time` may be (clock skew);
/// one further ahead is not believed to be recent.
const AUTH_TIME_SKEW_SECS: u64 = 60;

/// What a route asks of the sign-in behind a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// Acceptable `acr` values, in order of preference (sent to the
    /// provider as `acr_values`, space-separated); empty: any `acr`.
    pub acr_values: Vec<String>,
    /// Longest time since the user last authenticated at the provider
    /// (sent as `max_age`, with `prompt=login`).
    pub max_age: Option<Duration>,
}

impl StepUp {
    /// `acr_values` as the provider gets it: space-separated, `None` when
    /// the route asks for no `acr`.
    pub fn acr_param(&self) -> Option<String> {
        (!self.acr_values.is_empty()).then(|| self.acr_values.join(" "))
    }

    /// `max_age` in whole seconds, as the provider gets it.
    pub fn max_age_secs(&self) -> Option<u64> {
        self.max_age.map(|d| d.as_secs())
    }

    /// Rebuilds a requirement from its wire form (the login-state cookie):
    /// `None` when it asks for nothing.
    pub fn from_params(acr_values: Option<&str>, max_age: Option<u64>) -> Option<Self> {
        let acr_values: Vec<String> = acr_values
            .unwrap_or_default()
            .split(' ')
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect();
        if acr_values.is_empty() && max_age.is_none() {
            return None;
        }
        Some(Self {
            acr_values,
            max_age: max_age.map(Duration::from_secs),
        })
    }
}

/// Why a session does not meet a [`StepUp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// The session's `acr` is missing or not one of those asked for.
    Acr,
    /// The session has no `auth_time` while `max_age` asks for one.
    NoAuthTime,
    /// The sign-in is older than `max_age` (or claims to be from the future).
    TooOld,
}

/// What `identity` lacks for `step_up` at `now` (Unix seconds), if anything.
pub fn shortfall(identity: &Identity, step_up: &StepUp, now: u64) -> Option<Shortfall> {
    if !step_up.acr_values.is_empty()
        && !identity
            .acr
            .as_deref()
            .is_some_and(|acr| step_up.acr_values.iter().any(|v| v == acr))
    {
        return Some(Shortfall::Acr);
    }
    if let Some(max_age) = step_up.max_age {
        let Some(auth_time) = identity.auth_time else {
            return Some(Shortfall::NoAuthTime);
        };
        let ahead = auth_time > now.saturating_add(AUTH_TIME_SKEW_SECS);
        if ahead || now.saturating_sub(auth_time) > max_age.as_secs() {
            return Some(Shortfall::TooOld);
        }
    }
    None
}

/// True when a session for `identity` must sign in again (more strongly,
/// or more recently) before it may use a route asking for `step_up`.
pub fn step_up_needed(identity: &Identity, step_up: Option<&StepUp>, now: u64) -> bool {
    step_up.is_some_and(|s| shortfall(identity, s, now).is_some())
}

#[cfg(test)]
mod tests;
