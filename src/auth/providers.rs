//! Provider presets: what each identity provider needs, as defaults for the
//! generic settings.
//!
//! Owns: one small [`Provider`] implementation per `provider` value. A preset
//! only chooses defaults and quirks from the building blocks below; every
//! building block a user of another provider might need is also a setting
//! (`oidc_groups_claim`, `token_request_encoding`, `identity_source`, ...),
//! and a setting given by the operator always wins over the preset.
//! Must not: perform I/O. The login engine (`auth::oidc`) reads the resolved
//! `config::ProviderConfig` and nothing here at request time.

mod auth0;
mod authentik;
mod generic;
mod keycloak;
mod passage;
mod zkauth;

use jsonwebtoken::Algorithm;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAuthMethod {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    Basic,
    /// Client id and secret in the request body (`client_secret_post`).
    Post,
    /// A public client: the client id in the body, no secret (`none`).
    None,
}

/// How the token request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEncoding {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// `application/json` (ZKAuth).
    Json,
}

/// Where the user's identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The verified ID token (OpenID Connect).
    IdToken,
    /// The access token, verified as a JWT against the JWKS (plain OAuth 2.0).
    AccessToken,
    /// The userinfo endpoint, called with the access token.
    Userinfo,
}

/// Which audiences besides the client id an ID token may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherAudiences {
    /// Only those in `oidc_extra_audience`.
    Listed,
    /// Any, provided `azp` names the client (Passage sends several).
    AnyWithAzp,
}

/// How sign-out reaches the provider when discovery names no
/// `end_session_endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutStyle {
    /// RP-initiated logout only when advertised.
    Oidc,
    /// Auth0's `/v2/logout?client_id=..&returnTo=..` on the issuer.
    Auth0,
}

/// How a configured issuer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerSlash {
    /// As the operator wrote it.
    AsGiven,
    /// Without a trailing slash (Keycloak: `https://host/realms/NAME`).
    Strip,
    /// With a trailing slash (Auth0: `https://TENANT.auth0.com/`).
    Add,
}

/// A preset's defaults. Everything here is either a setting of its own or a
/// quirk the provider's documentation or source demands.
#[derive(Debug, Clone)]
pub struct Preset {
    /// OpenID Connect (ID token, nonce, discovery) rather than plain OAuth 2.0.
    pub oidc: bool,
    /// Issuer when none is configured.
    pub issuer: Option<&'static str>,
    /// How to write the issuer.
    pub issuer_slash: IssuerSlash,
    /// Fetch the discovery document.
    pub discovery: bool,
    /// Endpoints when there is no discovery.
    pub authorize_url: Option<&'static str>,
    /// Token endpoint when there is no discovery.
    pub token_url: Option<&'static str>,
    /// JWKS when there is no discovery.
    pub jwks_url: Option<&'static str>,
    /// Token endpoint auth; `None`: basic with a secret, none without.
    pub auth_method: Option<TokenAuthMethod>,
    /// Token request encoding.
    pub encoding: TokenEncoding,
    /// Identity source.
    pub identity_source: IdentitySource,
    /// Verify the access token as a JWT and read claims (roles) from it.
    pub verify_access_token: bool,
    /// Accept an access token whose `azp` is the client id whatever its
    /// `aud` (Keycloak issues `aud: account`).
    pub access_token_azp_audience: bool,
    /// Other ID token audiences.
    pub other_audiences: OtherAudiences,
    /// Algorithms accepted on access tokens.
    pub access_token_algs: &'static [Algorithm],
    /// Default scopes.
    pub scope: &'static str,
    /// Sign-out fallback.
    pub logout: LogoutStyle,
    /// Claim names that stand for each other (`phone` and `phone_number`).
    pub claim_aliases: &'static [(&'static str, &'static str)],
}

/// Asymmetric algorithms: never `none`, never HMAC.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Preset {
    /// Generic OpenID Connect.
    pub const fn oidc() -> Self {
        Self {
            oidc: true,
            issuer: None,
            issuer_slash: IssuerSlash::AsGiven,
            discovery: true,
            authorize_url: None,
            token_url: None,
            jwks_url: None,
            auth_method: None,
            encoding: TokenEncoding::Form,
            identity_source: IdentitySource::IdToken,
            verify_access_token: false,
            access_token_azp_audience: false,
            other_audiences: OtherAudiences::Listed,
            access_token_algs: ASYMMETRIC,
            scope: "openid email profile",
            logout: LogoutStyle::Oidc,
            claim_aliases: &[],
        }
    }
}

/// One identity provider: its names and its preset.
pub trait Provider: Sync {
    /// The `provider` values that select it.
    fn names(&self) -> &'static [&'static str];
    /// Its defaults and quirks.
    fn preset(&self) -> Preset;
}

static PROVIDERS: &[&dyn Provider] = &[
    &generic::Generic,
    &keycloak::Keycloak,
    &authentik::Authentik,
    &auth0::Auth0,
    &passage::Passage,
    &zkauth::ZkAuth,
];

/// The provider for a `provider` value.
pub fn lookup(name: &str) -> Option<&'static dyn Provider> {
    PROVIDERS
        .iter()
        .copied()
        .find(|p| p.names().contains(&name))
}

/// Every accepted `provider` value, for error messages.
pub fn all_names() -> Vec<&'static str> {
    PROVIDERS
        .iter()
        .flat_map(|p| p.names().iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_presets_are_safe() {
        for name in [
            "oidc",
            "keycloak",
            "ztrust",
            "authentik",
            "auth0",
            "passage",
            "zkauth",
        ] {
            let p = lookup(name).unwrap_or_else(|| panic!("{name}")).preset();
            assert!(
                p.access_token_algs.iter().all(|a| ASYMMETRIC.contains(a)),
                "{name} allows a symmetric algorithm"
            );
        }
        assert!(lookup("okta").is_none());
        assert!(lookup("").is_none());
        assert!(lookup("OIDC").is_none());
        assert_eq!(
            lookup("ztrust").map(|p| p.names()),
            lookup("keycloak").map(|p| p.names())
        );
    }

    #[test]
    fn every_provider_value_is_listed_once() {
        assert_eq!(
            all_names(),
            [
                "oidc",
                "keycloak",
                "ztrust",
                "authentik",
                "auth0",
                "passage",
                "zkauth"
            ]
        );
    }

    /// Everything a preset sets, as text, so two presets compare whole.
    fn shape(name: &str) -> String {
        let p = lookup(name).unwrap_or_else(|| panic!("{name}")).preset();
        format!("{p:?}")
    }

    #[test]
    fn presets_differ_from_generic_oidc_only_in_their_documented_quirks() {
        let generic = Preset::oidc();
        assert_eq!(shape("oidc"), format!("{generic:?}"));
        assert_eq!(shape("authentik"), format!("{generic:?}"));
        let table: &[(&str, Preset)] = &[
            (
                "keycloak",
                Preset {
                    issuer_slash: IssuerSlash::Strip,
                    verify_access_token: true,
                    access_token_azp_audience: true,
                    ..Preset::oidc()
                },
            ),
            (
                "auth0",
                Preset {
                    issuer_slash: IssuerSlash::Add,
                    logout: LogoutStyle::Auth0,
                    claim_aliases: &[("preferred_username", "nickname")],
                    ..Preset::oidc()
                },
            ),
            (
                "passage",
                Preset {
                    auth_method: Some(TokenAuthMethod::Basic),
                    other_audiences: OtherAudiences::AnyWithAzp,
                    claim_aliases: &[("phone_number", "phone"), ("phone", "phone_number")],
                    ..Preset::oidc()
                },
            ),
            (
                "zkauth",
                Preset {
                    oidc: false,
                    issuer: Some("https://api.zkauth.tech"),
                    discovery: false,
                    authorize_url: Some("https://auth.zkauth.tech/api/oauth/authorize"),
                    token_url: Some("https://api.zkauth.tech/api/oauth/token"),
                    jwks_url: Some("https://api.zkauth.tech/.well-known/jwks.json"),
                    auth_method: Some(TokenAuthMethod::Post),
                    encoding: TokenEncoding::Json,
                    identity_source: IdentitySource::AccessToken,
                    verify_access_token: true,
                    access_token_algs: &[Algorithm::RS256],
                    scope: "",
                    ..Preset::oidc()
                },
            ),
        ];
        for (name, expected) in table {
            assert_eq!(shape(name), format!("{expected:?}"), "{name}");
        }
        assert_eq!(shape("ztrust"), shape("keycloak"));
    }

    #[test]
    fn the_generic_preset_is_oidc_with_discovery() {
        let p = Preset::oidc();
        assert!(p.oidc && p.discovery);
        assert_eq!(p.issuer, None);
        assert_eq!(p.issuer_slash, IssuerSlash::AsGiven);
        assert_eq!(p.auth_method, None);
        assert_eq!(p.encoding, TokenEncoding::Form);
        assert_eq!(p.identity_source, IdentitySource::IdToken);
        assert!(!p.verify_access_token && !p.access_token_azp_audience);
        assert_eq!(p.other_audiences, OtherAudiences::Listed);
        assert_eq!(p.access_token_algs, ASYMMETRIC);
        assert_eq!(p.scope, "openid email profile");
        assert_eq!(p.logout, LogoutStyle::Oidc);
        assert!(p.claim_aliases.is_empty());
    }
}
