//! `authentik`: issuer `https://HOST/application/o/SLUG/`.
//!
//! Its discovery document's issuer ends with a slash while many users (and
//! its reference document) configure it without; the engine accepts both and
//! still compares the token's `iss` exactly with the discovered issuer.
//! Groups are in `groups` (with the `profile` scope). Recent versions send
//! `email_verified: false` by default: whether that passes is the explicit
//! `allow_unverified_email` setting. Its endpoint paths end with `/`, which
//! discovery carries as they are.

use super::{Preset, Provider};

/// Authentik.
pub(super) struct Authentik;

impl Provider for Authentik {
    fn names(&self) -> &'static [&'static str] {
        &["authentik"]
    }

    fn preset(&self) -> Preset {
        Preset::oidc()
    }
}
