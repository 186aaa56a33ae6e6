//! `zkauth`: ZKAuth, plain OAuth 2.0 (not OpenID Connect).
//!
//! No discovery: fixed endpoints, each overridable. PKCE S256 always. The
//! token request is a JSON body `{grant_type, code, redirect_uri, client_id,
//! client_secret, code_verifier}`; the answer has no id_token and no refresh
//! token. The identity is the access token: an RS256 JWT verified against the
//! JWKS, `iss`, `aud` equal to the client id and `exp`. A public client (no
//! secret) works. The access token lives 900 s; the gatehouse session may
//! outlive it (`session_lifetime`), but an expired token is never forwarded.

use jsonwebtoken::Algorithm;

use super::{IdentitySource, Preset, Provider, TokenAuthMethod, TokenEncoding};

/// ZKAuth.
pub(super) struct ZkAuth;

impl Provider for ZkAuth {
    fn names(&self) -> &'static [&'static str] {
        &["zkauth"]
    }

    fn preset(&self) -> Preset {
        Preset {
            oidc: false,
            issuer: Some("https://api.zkauth.tech"),
            discovery: false,
            authorize_url: Some("https://auth.zkauth.tech/api/oauth/authorize"),
            token_url: Some("https://api.zkauth.tech/api/oauth/token"),
            jwks_url: Some("https://api.zkauth.tech/.well-known/jwks.json"),
            // the secret travels in the JSON body; a public client sends none
            auth_method: Some(TokenAuthMethod::Post),
            encoding: TokenEncoding::Json,
            identity_source: IdentitySource::AccessToken,
            verify_access_token: true,
            access_token_algs: &[Algorithm::RS256],
            scope: "",
            ..Preset::oidc()
        }
    }
}
