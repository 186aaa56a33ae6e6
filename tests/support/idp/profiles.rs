//! Provider profiles: how each emulated provider names its issuer and
//! endpoints, what its discovery document says and which profile claims it
//! puts in tokens and `/userinfo`.
//!
//! The shapes follow the provider references in `/work/shared/seeds/` and
//! the providers' public documentation: Keycloak (and Ztrust, which is
//! Keycloak) puts the realm in the issuer and roles in the access token;
//! Authentik's issuer ends with a slash; Auth0's access token is a JWT only
//! when an `audience` was asked for; Passage sends `aud` as an array and takes
//! only `client_secret_basic`; ZKAuth is plain OAuth 2.0 with a JSON token
//! request and the identity in the access token.
//!
//! Must not: mint or sign (that is `tokens.rs`) or touch the network.

use serde_json::{Map, Value, json};

use super::{AUTH0_ROLES_CLAIM, DemoUser, Knobs};

/// Which real provider the mock behaves like.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// The original mock: `/authorize`, `/token`, `/jwks`, `/userinfo`,
    /// `/logout` at the root, issuer `http://127.0.0.1:PORT`.
    #[default]
    Generic,
    /// Keycloak (and Ztrust): issuer `…/realms/REALM`, endpoints under
    /// `…/realms/REALM/protocol/openid-connect/`.
    Keycloak { realm: String },
    /// Authentik: issuer `…/application/o/SLUG/` (trailing slash), shared
    /// `/application/o/{authorize,token,userinfo}/` endpoints.
    Authentik { slug: String },
    /// Auth0: issuer `…/` (trailing slash), `/oauth/token`, `/v2/logout`.
    Auth0,
    /// Passage by 1Password: `aud` array, `client_secret_basic` only.
    Passage,
    /// ZKAuth: OAuth 2.0 without OIDC: no discovery, no ID token, a JSON
    /// token request, identity in the RS256 access token.
    ZkAuth,
}

/// Paths (no scheme or host) the mock serves for one profile.
#[derive(Clone, Debug)]
pub(super) struct Routes {
    /// Where discovery would be; ZKAuth answers 404 there.
    pub(super) discovery: String,
    /// The authorize endpoint; `<it without a trailing slash>/approve` is
    /// where the login page's "sign in as" links go.
    pub(super) authorize: String,
    pub(super) token: String,
    pub(super) jwks: String,
    pub(super) userinfo: Option<String>,
    /// RP-initiated logout, advertised as `end_session_endpoint` while
    /// [`Knobs::advertise_end_session`] is set.
    pub(super) end_session: Option<String>,
    /// Auth0's own `/v2/logout` (`client_id`, `returnTo`), always served.
    pub(super) auth0_logout: Option<String>,
}

/// What a request path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Discovery,
    Jwks,
    Authorize,
    Approve,
    Token,
    Userinfo,
    EndSession,
    Auth0Logout,
}

// === impl Profile ===

impl Profile {
    pub fn keycloak(realm: &str) -> Self {
        Self::Keycloak {
            realm: realm.to_owned(),
        }
    }

    pub fn authentik(slug: &str) -> Self {
        Self::Authentik {
            slug: slug.to_owned(),
        }
    }

    /// The gatehouse `provider` value for this profile.
    pub fn provider_name(&self) -> &'static str {
        match self {
            Self::Generic => "oidc",
            Self::Keycloak { .. } => "keycloak",
            Self::Authentik { .. } => "authentik",
            Self::Auth0 => "auth0",
            Self::Passage => "passage",
            Self::ZkAuth => "zkauth",
        }
    }

    /// False for ZKAuth: no discovery, no ID token, no userinfo.
    pub fn is_oidc(&self) -> bool {
        *self != Self::ZkAuth
    }

    /// The issuer for a mock at `base` (`http://127.0.0.1:PORT`).
    /// `trailing_slash` only matters for [`Profile::Generic`].
    pub(super) fn issuer(&self, base: &str, trailing_slash: bool) -> String {
        match self {
            Self::Generic if trailing_slash => format!("{base}/"),
            Self::Generic | Self::Passage | Self::ZkAuth => base.to_owned(),
            Self::Keycloak { realm } => format!("{base}/realms/{realm}"),
            Self::Authentik { slug } => format!("{base}/application/o/{slug}/"),
            Self::Auth0 => format!("{base}/"),
        }
    }

    pub(super) fn routes(&self) -> Routes {
        let s = str::to_owned;
        match self {
            Self::Generic => Routes {
                discovery: s("/.well-known/openid-configuration"),
                authorize: s("/authorize"),
                token: s("/token"),
                jwks: s("/jwks"),
                userinfo: Some(s("/userinfo")),
                end_session: Some(s("/logout")),
                auth0_logout: None,
            },
            Self::Keycloak { realm } => {
                let oidc = format!("/realms/{realm}/protocol/openid-connect");
                Routes {
                    discovery: format!("/realms/{realm}/.well-known/openid-configuration"),
                    authorize: format!("{oidc}/auth"),
                    token: format!("{oidc}/token"),
                    jwks: format!("{oidc}/certs"),
                    userinfo: Some(format!("{oidc}/userinfo")),
                    end_session: Some(format!("{oidc}/logout")),
                    auth0_logout: None,
                }
            }
            Self::Authentik { slug } => Routes {
                discovery: format!("/application/o/{slug}/.well-known/openid-configuration"),
                authorize: s("/application/o/authorize/"),
                token: s("/application/o/token/"),
                jwks: format!("/application/o/{slug}/jwks/"),
                userinfo: Some(s("/application/o/userinfo/")),
                end_session: Some(format!("/application/o/{slug}/end-session/")),
                auth0_logout: None,
            },
            Self::Auth0 => Routes {
                discovery: s("/.well-known/openid-configuration"),
                authorize: s("/authorize"),
                token: s("/oauth/token"),
                jwks: s("/.well-known/jwks.json"),
                userinfo: Some(s("/userinfo")),
                end_session: Some(s("/oidc/logout")),
                auth0_logout: Some(s("/v2/logout")),
            },
            Self::Passage => Routes {
                discovery: s("/.well-known/openid-configuration"),
                authorize: s("/authorize"),
                token: s("/token"),
                jwks: s("/.well-known/jwks.json"),
                userinfo: Some(s("/userinfo")),
                end_session: None,
                auth0_logout: None,
            },
            Self::ZkAuth => Routes {
                discovery: s("/.well-known/openid-configuration"),
                authorize: s("/api/oauth/authorize"),
                token: s("/api/oauth/token"),
                jwks: s("/.well-known/jwks.json"),
                userinfo: None,
                end_session: None,
                auth0_logout: None,
            },
        }
    }

    /// The discovery document, for an OIDC profile.
    pub(super) fn discovery(&self, issuer: &str, base: &str, knobs: &Knobs) -> Value {
        let routes = self.routes();
        let url = |path: &str| format!("{base}{path}");
        let mut doc = json!({
            "issuer": issuer,
            "authorization_endpoint": url(&routes.authorize),
            "token_endpoint": url(&routes.token),
            "jwks_uri": url(&routes.jwks),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        });
        if let Some(path) = &routes.userinfo {
            doc["userinfo_endpoint"] = json!(url(path));
        }
        if knobs.advertise_iss_parameter {
            doc["authorization_response_iss_parameter_supported"] = json!(true);
        }
        if let Some(path) = routes
            .end_session
            .as_ref()
            .filter(|_| knobs.advertise_end_session)
        {
            doc["end_session_endpoint"] = json!(url(path));
        }
        let extra = match self {
            Self::Generic => json!({
                // every key family the mock can sign with (`KEY_IDS`)
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384",
                    "EdDSA"],
                "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
                "claims_supported": [
                    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "email",
                    "email_verified", "name", "preferred_username", "groups",
                ],
            }),
            Self::Keycloak { .. } => json!({
                "response_types_supported": ["code", "none", "id_token", "token", "id_token token",
                    "code id_token", "code token", "code id_token token"],
                "id_token_signing_alg_values_supported": ["PS384", "RS384", "EdDSA", "ES384",
                    "HS256", "HS512", "ES256", "RS256", "HS384", "ES512", "PS256", "PS512",
                    "RS512"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "grant_types_supported": ["authorization_code", "implicit", "refresh_token",
                    "password", "client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt",
                    "client_secret_basic", "client_secret_post", "tls_client_auth",
                    "client_secret_jwt"],
                "scopes_supported": ["openid", "roles", "profile", "email", "offline_access",
                    "acr", "web-origins", "microprofile-jwt", "phone", "address"],
                "claims_supported": ["aud", "sub", "iss", "auth_time", "name", "given_name",
                    "family_name", "preferred_username", "email", "acr"],
                "frontchannel_logout_supported": true,
                "backchannel_logout_supported": true,
            }),
            Self::Authentik { .. } => json!({
                "response_types_supported": ["code", "id_token", "id_token token", "code token",
                    "code id_token", "code id_token token"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                    "client_secret_basic"],
                "scopes_supported": ["openid", "email", "profile"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr",
                    "amr", "nonce", "email", "email_verified", "name", "given_name",
                    "preferred_username", "nickname", "groups"],
            }),
            Self::Auth0 => json!({
                "code_challenge_methods_supported": ["S256", "plain"],
                "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                    "client_secret_post", "private_key_jwt"],
                "scopes_supported": ["openid", "profile", "offline_access", "name",
                    "given_name", "family_name", "nickname", "email", "email_verified",
                    "picture", "created_at", "identities", "phone", "address"],
                "claims_supported": ["aud", "auth_time", "created_at", "email",
                    "email_verified", "exp", "family_name", "given_name", "iat", "identities",
                    "iss", "name", "nickname", "phone_number", "picture", "sub"],
                "revocation_endpoint": url("/oauth/revoke"),
                "request_uri_parameter_supported": false,
            }),
            Self::Passage => json!({
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "scopes_supported": ["openid", "email", "phone"],
                "claims_supported": ["sub", "iss", "aud", "azp", "exp", "iat", "auth_time",
                    "email", "email_verified", "phone", "phone_number_verified"],
            }),
            // never served: ZKAuth has no discovery
            Self::ZkAuth => json!({}),
        };
        if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
            doc.extend(extra);
        }
        doc
    }

    /// The profile claims of `user` shared by ID tokens and `/userinfo` (for
    /// ZKAuth: the identity claims of its access token). Empty email and
    /// name are left out.
    pub(super) fn user_claims(&self, user: &DemoUser, knobs: &Knobs) -> Map<String, Value> {
        let mut m = Map::new();
        let mut set = |k: &str, v: Value| {
            m.insert(k.to_owned(), v);
        };
        let email_verified = knobs.email_verified.unwrap_or(user.email_verified);
        set("sub", json!(user.sub));
        let email = (!user.email.is_empty()).then_some(&user.email);
        let name = (!user.name.is_empty()).then_some(&user.name);
        if let Some(email) = email {
            set("email", json!(email));
            if *self != Self::ZkAuth {
                set("email_verified", json!(email_verified));
            }
        }
        let (given, family) = split_name(&user.name);
        match self {
            Self::Generic => {
                if let Some(name) = name {
                    set("name", json!(name));
                }
                set("preferred_username", json!(user.username));
                set("groups", json!(user.groups));
            }
            Self::Keycloak { .. } => {
                if let Some(name) = name {
                    set("name", json!(name));
                    set("given_name", json!(given));
                    set("family_name", json!(family));
                }
                set("preferred_username", json!(user.username));
                let paths: Vec<String> = user.groups.iter().map(|g| format!("/{g}")).collect();
                set("groups", json!(paths));
            }
            Self::Authentik { .. } => {
                if let Some(name) = name {
                    set("name", json!(name));
                    set("given_name", json!(name));
                }
                set("preferred_username", json!(user.username));
                set("nickname", json!(user.username));
                set("groups", json!(user.groups));
            }
            Self::Auth0 => {
                set("nickname", json!(user.username));
                set("name", json!(name.unwrap_or(&user.email)));
                set(
                    "picture",
                    json!(format!(
                        "https://s.gravatar.example/avatar/{}.png",
                        user.username
                    )),
                );
                set("updated_at", json!("2025-01-15T09:30:00.000Z"));
                set(AUTH0_ROLES_CLAIM, json!(user.app_roles));
            }
            Self::Passage => {
                if let Some(phone) = &user.phone {
                    set("phone", json!(phone));
                    set("phone_number_verified", json!(true));
                }
            }
            Self::ZkAuth => {
                if let Some(name) = name {
                    set("name", json!(name));
                }
            }
        }
        m
    }
}

// === impl Routes ===

impl Routes {
    /// The login page's "sign in as" links.
    pub(super) fn approve(&self) -> String {
        format!("{}/approve", self.authorize.trim_end_matches('/'))
    }

    pub(super) fn route(&self, path: &str) -> Option<Route> {
        let is = |p: &str| p == path;
        let approve = path
            .strip_suffix("/approve")
            .is_some_and(|p| p == self.authorize.trim_end_matches('/'));
        let opt = |p: &Option<String>| p.as_deref() == Some(path);
        Some(if is(&self.discovery) {
            Route::Discovery
        } else if is(&self.jwks) {
            Route::Jwks
        } else if is(&self.authorize) {
            Route::Authorize
        } else if approve {
            Route::Approve
        } else if is(&self.token) {
            Route::Token
        } else if opt(&self.userinfo) {
            Route::Userinfo
        } else if opt(&self.end_session) {
            Route::EndSession
        } else if opt(&self.auth0_logout) {
            Route::Auth0Logout
        } else {
            return None;
        })
    }
}

/// "Alice Admin" → ("Alice", "Admin"); one word is the given name.
fn split_name(name: &str) -> (&str, &str) {
    name.split_once(' ').unwrap_or((name, ""))
}
