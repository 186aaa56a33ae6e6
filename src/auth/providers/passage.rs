//! `passage`: Passage by 1Password, issuer `https://SUBDOMAIN.withpassage.com`.
//!
//! The ID token's `aud` is an array: accepted when it holds the client id,
//! and with more than one entry `azp` must equal the client id. The token
//! endpoint takes `client_secret_basic`. Its reference document names the
//! phone claim `phone` and its API docs `phone_number`: both are accepted.

use super::{OtherAudiences, Preset, Provider, TokenAuthMethod};

/// Passage by 1Password.
pub(super) struct Passage;

impl Provider for Passage {
    fn names(&self) -> &'static [&'static str] {
        &["passage"]
    }

    fn preset(&self) -> Preset {
        Preset {
            auth_method: Some(TokenAuthMethod::Basic),
            other_audiences: OtherAudiences::AnyWithAzp,
            claim_aliases: &[("phone_number", "phone"), ("phone", "phone_number")],
            ..Preset::oidc()
        }
    }
}
