//! `keycloak` / `ztrust`: Keycloak and Ztrust, which is built on it.
//!
//! Issuer `https://HOST/realms/REALM`, no trailing slash. Groups come from a
//! `groups` claim when the realm has a group mapper (values are full paths
//! like `/admins`). Realm roles (`realm_access.roles`) and client roles
//! (`resource_access.<client>.roles`) are only in the access token: a JWT
//! whose `aud` is usually `account` and whose `azp` is the client id, so it
//! is verified against the JWKS and accepted on `azp`.

use super::{IssuerSlash, Preset, Provider};

/// Keycloak / Ztrust.
pub(super) struct Keycloak;

impl Provider for Keycloak {
    fn names(&self) -> &'static [&'static str] {
        &["keycloak", "ztrust"]
    }

    fn preset(&self) -> Preset {
        Preset {
            issuer_slash: IssuerSlash::Strip,
            verify_access_token: true,
            access_token_azp_audience: true,
            ..Preset::oidc()
        }
    }
}
