//! `oidc`: any OpenID Connect provider with discovery.

use super::{Preset, Provider};

/// Generic OpenID Connect: discovery, ID token identity, every default.
pub(super) struct Generic;

impl Provider for Generic {
    fn names(&self) -> &'static [&'static str] {
        &["oidc"]
    }

    fn preset(&self) -> Preset {
        Preset::oidc()
    }
}
