//! Authentication: who is asking, and may they pass.
//!
//! Owns: the [`Gate`], which decides from the request head alone (no body,
//! no provider call) whether a request is allowed, and the `/oauth2/*`
//! endpoints that sign users in and out.
//! Must not: talk to the upstream or build upstream URLs. It reaches the
//! provider only through the client held in the app state.
//!
//! Not being signed in is a [`Decision`], not an error: the router renders a
//! challenge as a redirect to the provider or as a 401, depending on who asked.

pub mod endpoints;
pub mod forward_auth;
pub mod identity;
pub mod oidc;
pub mod policy;
pub mod providers;
pub mod return_to;
pub mod session;

use http::HeaderMap;

use crate::auth::identity::Identity;
use crate::auth::policy::DenyReason;
use crate::auth::session::{CookieCodec, read_session};
use crate::config::Config;

/// What the gate decided about one request.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "Allow is the common case on the hot path; boxing it would add an allocation per request"
)]
pub enum Decision {
    /// Signed in and allowed.
    Allow(Identity),
    /// Not signed in (no cookie, or one that did not decode or has expired).
    Challenge,
    /// Signed in but refused by policy.
    Deny(DenyReason),
}

/// Decides requests. Built once at start.
pub struct Gate {
    codec: CookieCodec,
}

impl Gate {
    /// Builds the gate around the cookie codec.
    pub fn new(codec: CookieCodec) -> Self {
        Self { codec }
    }

    /// The cookie codec (shared with the endpoints).
    pub fn codec(&self) -> &CookieCodec {
        &self.codec
    }

    /// Decides from the request's headers alone.
    pub fn decide(&self, config: &Config, headers: &HeaderMap) -> Decision {
        let Some(identity) = read_session(&self.codec, &config.cookie, headers) else {
            if session::request_cookies(headers)
                .any(|(n, _)| session::is_session_cookie(n, &config.cookie.name))
            {
                tracing::debug!("session cookie present but not valid: challenging");
            }
            return Decision::Challenge;
        };
        match policy::check(config, &identity) {
            Ok(()) => Decision::Allow(identity),
            Err(reason) => Decision::Deny(reason),
        }
    }
}

/// Removes gatehouse's own cookies from the `Cookie` headers, keeping the
/// rest byte for byte. Drops the header when nothing is left.
pub fn strip_own_cookies(headers: &mut HeaderMap, base: &str) {
    let values: Vec<http::HeaderValue> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .cloned()
        .collect();
    if values.is_empty() {
        return;
    }
    headers.remove(http::header::COOKIE);
    let kept: Vec<&str> = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !session::is_own_cookie(pair.split('=').next().unwrap_or("").trim(), base))
        .collect();
    if !kept.is_empty()
        && let Ok(v) = http::HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(http::header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            "a=1; _gatehouse=xyz; _gatehouse_0=c0".parse().unwrap(),
        );
        h.append(
            "cookie",
            "_gatehouse_csrf_abc=1; b=2; _gatehousex=keep"
                .parse()
                .unwrap(),
        );
        strip_own_cookies(&mut h, "_gatehouse");
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2; _gatehousex=keep");
        let mut only = HeaderMap::new();
        only.insert("cookie", "_gatehouse=1".parse().unwrap());
        strip_own_cookies(&mut only, "_gatehouse");
        assert!(!only.contains_key("cookie"));
    }
}
