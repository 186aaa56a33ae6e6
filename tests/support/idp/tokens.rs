//! Signing keys and token minting for the mock provider, including the
//! deliberate defects of [`TokenMutation`].
//!
//! Keys are the committed test-only RSA keys in `tests/support/keys/`; they
//! protect nothing and must never be used outside tests and the demo.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::{
    AUTH0_ROLES_CLAIM, DemoUser, KEY1_JWK, KEY1_PUBLIC_PEM, KEY2_JWK, KEYCLOAK_REALM_ROLES, Knobs,
    Profile,
};

const KEY1_PRIVATE_PEM: &str = include_str!("../keys/key1.pem");
const KEY2_PRIVATE_PEM: &str = include_str!("../keys/key2.pem");

/// Deliberate defects applied to every token minted while set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenMutation {
    /// `nonce` differs from the one sent to `/authorize`.
    WrongNonce,
    /// `exp` five minutes in the past, `iat` ten minutes ago.
    Expired,
    /// `iss` is another provider.
    WrongIssuer,
    /// `aud` is another client.
    WrongAudience,
    /// Signature bytes altered after signing.
    BadSignature,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// HS256, HMAC keyed with the PEM bytes of `key1.pub.pem` (alg confusion).
    Hs256WithPublicKey,
    /// Signed by `key2` with kid "key2" (unknown unless published).
    UnknownKid,
    /// `iat` one hour in the future.
    IatInFuture,
    /// No `nonce` claim at all.
    MissingNonce,
}

/// Mints ID and access tokens for one issuer and client.
pub(super) struct Minter {
    profile: Profile,
    issuer: String,
    client_id: String,
    key1: EncodingKey,
    key2: EncodingKey,
    /// the public key PEM used as an HMAC secret (alg confusion attack)
    hs_public: EncodingKey,
    jwk1: Value,
    jwk2: Value,
}

/// What one grant's tokens are about.
#[derive(Clone, Copy, Debug)]
pub(super) struct Grant<'a> {
    pub(super) user: &'a DemoUser,
    pub(super) nonce: Option<&'a str>,
    pub(super) scope: &'a str,
    /// Auth0: the `audience` the authorize request asked for.
    pub(super) audience: Option<&'a str>,
    /// The provider session (Keycloak `sid` and `session_state`, Auth0 `sid`).
    pub(super) sid: &'a str,
}

// === impl Minter ===

impl Minter {
    pub(super) fn load(profile: Profile, issuer: String, client_id: String) -> io::Result<Self> {
        let jwk = |s: &str| serde_json::from_str::<Value>(s).map_err(io::Error::other);
        let rsa = |pem: &str| EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(io::Error::other);
        Ok(Self {
            profile,
            issuer,
            client_id,
            key1: rsa(KEY1_PRIVATE_PEM)?,
            key2: rsa(KEY2_PRIVATE_PEM)?,
            hs_public: EncodingKey::from_secret(KEY1_PUBLIC_PEM.as_bytes()),
            jwk1: jwk(KEY1_JWK)?,
            jwk2: jwk(KEY2_JWK)?,
        })
    }

    /// The JWK Set publishing `kids` ("key1", "key2"; others are ignored).
    pub(super) fn jwks(&self, kids: &[&str]) -> Value {
        let keys: Vec<&Value> = kids
            .iter()
            .filter_map(|kid| match *kid {
                "key1" => Some(&self.jwk1),
                "key2" => Some(&self.jwk2),
                _ => None,
            })
            .collect();
        json!({ "keys": keys })
    }

    /// The ID token of `grant`; an error for ZKAuth, which has none.
    pub(super) fn id_token(&self, knobs: &Knobs, grant: &Grant<'_>) -> Result<String, String> {
        if !self.profile.is_oidc() {
            return Err("this provider issues no id token".to_owned());
        }
        let now = unix_now();
        let mut claims = self.profile.user_claims(grant.user, knobs);
        claims.insert("iss".into(), json!(self.iss(knobs)));
        let array_aud = self.profile == Profile::Passage || !knobs.extra_audiences.is_empty();
        let aud = if array_aud {
            let mut aud = vec![self.client_id.clone()];
            aud.extend(knobs.extra_audiences.iter().cloned());
            json!(aud)
        } else {
            json!(self.client_id)
        };
        claims.insert("aud".into(), aud);
        if !knobs.omit_azp {
            claims.insert("azp".into(), json!(self.client_id));
        }
        claims.insert("iat".into(), json!(now));
        claims.insert("auth_time".into(), json!(now));
        claims.insert("exp".into(), json!(now + knobs.id_token_ttl_secs));
        if let Some(nonce) = grant.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        match &self.profile {
            Profile::Keycloak { .. } => {
                claims.insert("typ".into(), json!("ID"));
                claims.insert("sid".into(), json!(grant.sid));
                claims.insert("session_state".into(), json!(grant.sid));
                claims.insert("acr".into(), json!("1"));
            }
            Profile::Authentik { .. } => {
                claims.insert(
                    "acr".into(),
                    json!("goauthentik.io/providers/oauth2/default"),
                );
            }
            Profile::Auth0 => {
                claims.insert("sid".into(), json!(grant.sid));
            }
            Profile::Passage => {
                claims.insert("client_id".into(), json!(self.client_id));
            }
            Profile::Generic | Profile::ZkAuth => {}
        }
        merge_claims(&mut claims, &knobs.extra_id_token_claims);
        self.sign(knobs, claims, knobs.id_token_mutation)
    }

    /// The access token of `grant`, shaped as the profile's provider shapes
    /// it (Generic: Keycloak-like, `aud` "account" and the groups as
    /// `realm_access` roles). Auth0 without an `audience` gets an opaque
    /// string (`jti` itself). `jti` must be unique.
    pub(super) fn access_token(
        &self,
        knobs: &Knobs,
        grant: &Grant<'_>,
        jti: &str,
    ) -> Result<String, String> {
        let now = unix_now();
        let user = grant.user;
        let mut claims = match &self.profile {
            Profile::Generic
            | Profile::Keycloak { .. }
            | Profile::Authentik { .. }
            | Profile::ZkAuth => self.profile.user_claims(user, knobs),
            // an API token, not a profile
            Profile::Auth0 | Profile::Passage => {
                let mut m = Map::new();
                m.insert("sub".into(), json!(user.sub));
                m
            }
        };
        let mut set = |k: &str, v: Value| {
            claims.insert(k.to_owned(), v);
        };
        set("iss", json!(self.iss(knobs)));
        set("iat", json!(now));
        set("exp", json!(now + knobs.access_token_ttl_secs));
        match &self.profile {
            Profile::Generic => {
                set("aud", json!("account"));
                set("azp", json!(self.client_id));
                set("typ", json!("Bearer"));
                set("jti", json!(jti));
                set("scope", json!(grant.scope));
                set("realm_access", json!({ "roles": user.groups }));
            }
            Profile::Keycloak { .. } => {
                set("aud", json!("account"));
                set("azp", json!(self.client_id));
                set("typ", json!("Bearer"));
                set("jti", json!(jti));
                set("auth_time", json!(now));
                set("sid", json!(grant.sid));
                set("session_state", json!(grant.sid));
                set("acr", json!("1"));
                set("scope", json!(grant.scope));
                set("allowed-origins", json!(["/*"]));
                set("realm_access", json!({ "roles": KEYCLOAK_REALM_ROLES }));
                let mut resource = Map::new();
                if !user.client_roles.is_empty() {
                    resource.insert(
                        self.client_id.clone(),
                        json!({ "roles": user.client_roles }),
                    );
                }
                resource.insert(
                    "account".into(),
                    json!({ "roles": ["manage-account", "view-profile"] }),
                );
                set("resource_access", Value::Object(resource));
            }
            Profile::Authentik { .. } => {
                set("aud", json!(self.client_id));
                set("azp", json!(self.client_id));
                set("auth_time", json!(now));
                set("jti", json!(jti));
                set("scope", json!(grant.scope));
            }
            Profile::Auth0 => {
                let Some(audience) = grant.audience else {
                    // no API asked for: Auth0 hands out a token only its
                    // /userinfo understands
                    return Ok(jti.to_owned());
                };
                set("aud", json!([audience, format!("{}userinfo", self.issuer)]));
                set("azp", json!(self.client_id));
                set("scope", json!(grant.scope));
                set("permissions", json!(user.client_roles));
                set(AUTH0_ROLES_CLAIM, json!(user.app_roles));
            }
            Profile::Passage => {
                set("aud", json!([self.client_id]));
                set("client_id", json!(self.client_id));
                set("jti", json!(jti));
                set("scope", json!(grant.scope));
            }
            Profile::ZkAuth => {
                set("aud", json!(self.client_id));
            }
        }
        merge_claims(&mut claims, &knobs.extra_access_token_claims);
        self.sign(knobs, claims, knobs.access_token_mutation)
    }

    /// The `iss` claim: the issuer unless a knob overrides it.
    fn iss(&self, knobs: &Knobs) -> String {
        knobs
            .issuer_claim
            .clone()
            .unwrap_or_else(|| self.issuer.clone())
    }

    /// Applies `mutation` to the claims, then signs (or deliberately mis-signs).
    fn sign(
        &self,
        knobs: &Knobs,
        mut claims: Map<String, Value>,
        mutation: Option<TokenMutation>,
    ) -> Result<String, String> {
        let now = unix_now();
        let mut set = |k: &str, v: Value| claims.insert(k.to_owned(), v);
        match mutation {
            Some(TokenMutation::WrongNonce) => {
                set("nonce", json!("not-the-nonce-you-sent"));
            }
            Some(TokenMutation::Expired) => {
                set("iat", json!(now - 600));
                set("auth_time", json!(now - 600));
                set("exp", json!(now - 300));
            }
            Some(TokenMutation::WrongIssuer) => {
                set("iss", json!("https://evil-idp.example"));
            }
            Some(TokenMutation::WrongAudience) => {
                set("aud", json!("some-other-client"));
            }
            Some(TokenMutation::IatInFuture) => {
                set("iat", json!(now + 3600));
                set("exp", json!(now + 3600 + knobs.id_token_ttl_secs));
            }
            Some(TokenMutation::MissingNonce) => {
                claims.remove("nonce");
            }
            _ => {}
        }
        let claims = Value::Object(claims);
        let (key, kid, alg) = match mutation {
            Some(TokenMutation::AlgNone) => {
                let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
                let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
                return Ok(format!("{header}.{payload}."));
            }
            Some(TokenMutation::Hs256WithPublicKey) => (&self.hs_public, "key1", Algorithm::HS256),
            Some(TokenMutation::UnknownKid) => (&self.key2, "key2", Algorithm::RS256),
            _ if knobs.signing_kid == "key2" => (&self.key2, "key2", Algorithm::RS256),
            // any other name signs with key1 under that kid
            _ => (&self.key1, knobs.signing_kid, Algorithm::RS256),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, key).map_err(|e| format!("sign: {e}"))?;
        if mutation == Some(TokenMutation::BadSignature) {
            return Ok(corrupt_signature(&token));
        }
        Ok(token)
    }
}

/// RFC 7636 S256: BASE64URL-NOPAD(SHA256(ascii(verifier))).
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Merges `extra` into `claims`; a `null` value removes the claim.
fn merge_claims(claims: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (k, v) in extra {
        if v.is_null() {
            claims.remove(k);
        } else {
            claims.insert(k.clone(), v.clone());
        }
    }
}

/// Flips bits in the first signature byte: still well-formed, never valid.
fn corrupt_signature(token: &str) -> String {
    let Some((signed, sig)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    if let Some(first) = bytes.first_mut() {
        *first ^= 0x5a;
    }
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes))
}
