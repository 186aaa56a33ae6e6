//! `auth0`: issuer `https://TENANT.REGION.auth0.com/`, with the slash.
//!
//! `audience` is sent on the authorize request to get a JWT access token,
//! which is then verified; without it the access token is opaque and never
//! parsed. Roles and groups usually arrive as namespaced claims
//! (`https://example.com/roles`), for `oidc_groups_claim`. Sign-out uses the
//! discovered `end_session_endpoint` when present, else `/v2/logout`.
//! Auth0 sends no `preferred_username`: its `nickname` stands in.

use super::{IssuerSlash, LogoutStyle, Preset, Provider};

/// Auth0.
pub(super) struct Auth0;

impl Provider for Auth0 {
    fn names(&self) -> &'static [&'static str] {
        &["auth0"]
    }

    fn preset(&self) -> Preset {
        Preset {
            issuer_slash: IssuerSlash::Add,
            logout: LogoutStyle::Auth0,
            // Auth0 sends no preferred_username; its nickname is the handle
            claim_aliases: &[("preferred_username", "nickname")],
            ..Preset::oidc()
        }
    }
}
