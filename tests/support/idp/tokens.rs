//! Signing keys and token minting for the mock provider, including the
//! deliberate defects of [`TokenMutation`].
//!
//! Keys are the committed test-only keys in `tests/support/keys/`, one of
//! each family gatehouse accepts (see [`KEY_IDS`]); they protect nothing and
//! must never be used outside tests and the demo.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::{AUTH0_ROLES_CLAIM, DemoUser, KEY1_PUBLIC_PEM, KEYCLOAK_REALM_ROLES, Knobs, Profile};

/// Every key the mock can publish and sign with: `(kid, alg, private PEM
/// (PKCS#8), public PEM (SPKI), public JWK)`.
const KEYS: [(&str, Algorithm, &str, &str, &str); 6] = [
    (
        "key1",
        Algorithm::RS256,
        include_str!("../keys/key1.pem"),
        include_str!("../keys/key1.pub.pem"),
        include_str!("../keys/key1.jwk.json"),
    ),
    (
        "key2",
        Algorithm::RS256,
        include_str!("../keys/key2.pem"),
        include_str!("../keys/key2.pub.pem"),
        include_str!("../keys/key2.jwk.json"),
    ),
    (
        "pss",
        Algorithm::PS256,
        include_str!("../keys/pss.pem"),
        include_str!("../keys/pss.pub.pem"),
        include_str!("../keys/pss.jwk.json"),
    ),
    (
        "ec256",
        Algorithm::ES256,
        include_str!("../keys/ec256.pem"),
        include_str!("../keys/ec256.pub.pem"),
        include_str!("../keys/ec256.jwk.json"),
    ),
    (
        "ec384",
        Algorithm::ES384,
        include_str!("../keys/ec384.pem"),
        include_str!("../keys/ec384.pub.pem"),
        include_str!("../keys/ec384.jwk.json"),
    ),
    (
        "ed25519",
        Algorithm::EdDSA,
        include_str!("../keys/ed25519.pem"),
        include_str!("../keys/ed25519.pub.pem"),
        include_str!("../keys/ed25519.jwk.json"),
    ),
];

/// The key ids the mock can publish and sign with, one per algorithm family
/// gatehouse accepts: "key1" and "key2" (RSA PKCS#1 v1.5, RS256), "pss"
/// (RSA-PSS, PS256), "ec256" (P-256, ES256), "ec384" (P-384, ES384) and
/// "ed25519" (Ed25519, EdDSA). Each JWK names its `alg`.
pub const KEY_IDS: [&str; 6] = ["key1", "key2", "pss", "ec256", "ec384", "ed25519"];

/// The algorithm key `kid` signs with; `None` for an unknown kid.
pub fn key_alg(kid: &str) -> Option<Algorithm> {
    KEYS.iter().find(|k| k.0 == kid).map(|k| k.1)
}

/// The public half of key `kid` as a PEM (SPKI); `None` for an unknown kid.
pub fn public_pem(kid: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.0 == kid).map(|k| k.3)
}

/// The public JWK of key `kid` (with `kid`, `alg` and `use`).
pub fn public_jwk(kid: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.0 == kid).map(|k| k.4)
}

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
    /// Header `alg` other than the one the signing key's JWK names, with a
    /// valid signature for that `alg`: an RSA key signs PS256 where its JWK
    /// says RS256 (or RS256 where it says PS256; other families: key1, PS256).
    AlgMismatch,
    /// Validly signed by the P-256 key (ES256), but the header's `kid` names
    /// the RSA key in use: an `alg` of another family than its key's.
    KidOfOtherFamily,
    /// `iat` one hour in the future.
    IatInFuture,
    /// No `nonce` claim at all.
    MissingNonce,
}

/// The `events` member of a back-channel logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Deliberate defects of a back-channel logout token (OpenID Connect
/// Back-Channel Logout 1.0, 2.4 and 2.6 say what a relying party must refuse).
#[derive(Clone, Debug, PartialEq)]
pub enum LogoutTokenMutation {
    /// No `events` claim.
    NoEvents,
    /// `events` without the back-channel logout member.
    OtherEvent,
    /// A `nonce` claim, which a logout token must not have.
    WithNonce,
    /// `aud` is another client.
    WrongAudience,
    /// `iss` is another provider.
    WrongIssuer,
    /// `iat` ten minutes ago, `exp` five minutes ago.
    Expired,
    /// Signature bytes altered after signing.
    BadSignature,
    /// Signed by `key2` with kid "key2" (unknown unless published).
    UnknownKid,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// Sets these claims last; a `null` value removes the claim.
    Claims(Map<String, Value>),
}

/// Mints ID and access tokens for one issuer and client.
pub(super) struct Minter {
    profile: Profile,
    issuer: String,
    client_id: String,
    keys: Vec<SigningKey>,
    /// the public key PEM used as an HMAC secret (alg confusion attack)
    hs_public: EncodingKey,
}

/// One of [`KEYS`], loaded.
struct SigningKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
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
    /// The `acr` of the sign-in, instead of the profile's own.
    pub(super) acr: Option<&'a str>,
    /// When the user authenticated (`auth_time`); `None`: now.
    pub(super) auth_time: Option<i64>,
}

// === impl Minter ===

impl Minter {
    pub(super) fn load(profile: Profile, issuer: String, client_id: String) -> io::Result<Self> {
        let mut keys = Vec::with_capacity(KEYS.len());
        for (kid, alg, private, _public, jwk) in KEYS {
            let pem = private.as_bytes();
            let key = match alg {
                Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                _ => EncodingKey::from_rsa_pem(pem),
            }
            .map_err(|e| io::Error::other(format!("key {kid}: {e}")))?;
            let jwk = serde_json::from_str::<Value>(jwk).map_err(io::Error::other)?;
            keys.push(SigningKey { kid, alg, key, jwk });
        }
        Ok(Self {
            profile,
            issuer,
            client_id,
            keys,
            hs_public: EncodingKey::from_secret(KEY1_PUBLIC_PEM.as_bytes()),
        })
    }

    /// The JWK Set publishing `kids` (see [`KEY_IDS`]; others are ignored).
    pub(super) fn jwks(&self, kids: &[&str]) -> Value {
        let keys: Vec<&Value> = kids
            .iter()
            .filter_map(|kid| self.key(kid).map(|k| &k.jwk))
            .collect();
        json!({ "keys": keys })
    }

    fn key(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
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
        claims.insert("auth_time".into(), json!(grant.auth_time.unwrap_or(now)));
        claims.insert("exp".into(), json!(now + knobs.id_token_ttl_secs));
        if let Some(nonce) = grant.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        // the provider session, as Keycloak and Auth0 send it; back-channel
        // logout tokens name it (see `MockIdp::last_sid`)
        claims.insert("sid".into(), json!(grant.sid));
        match &self.profile {
            Profile::Keycloak { .. } => {
                claims.insert("typ".into(), json!("ID"));
                claims.insert("session_state".into(), json!(grant.sid));
                claims.insert("acr".into(), json!("1"));
            }
            Profile::Authentik { .. } => {
                claims.insert(
                    "acr".into(),
                    json!("goauthentik.io/providers/oauth2/default"),
                );
            }
            Profile::Passage => {
                claims.insert("client_id".into(), json!(self.client_id));
            }
            Profile::Generic | Profile::Auth0 | Profile::ZkAuth => {}
        }
        if let Some(acr) = grant.acr {
            claims.insert("acr".into(), json!(acr));
        }
        merge_claims(&mut claims, &knobs.extra_id_token_claims);
        self.sign(knobs, claims, knobs.id_token_mutation)
    }

    /// A back-channel logout token naming `sid` and/or `sub`, signed by the
    /// key of `kid` (the `signing_kid` knob) with `typ` "logout+jwt", then
    /// spoilt by `mutation`.
    pub(super) fn logout_token(
        &self,
        kid: &str,
        sid: Option<&str>,
        sub: Option<&str>,
        jti: &str,
        mutation: Option<LogoutTokenMutation>,
    ) -> Result<String, String> {
        let now = unix_now();
        let alg_none = mutation == Some(LogoutTokenMutation::AlgNone);
        let unknown_kid = mutation == Some(LogoutTokenMutation::UnknownKid);
        let corrupt = mutation == Some(LogoutTokenMutation::BadSignature);
        let mut claims = Map::new();
        let mut set = |k: &str, v: Value| {
            claims.insert(k.to_owned(), v);
        };
        set("iss", json!(self.issuer));
        set("aud", json!(self.client_id));
        set("iat", json!(now));
        set("exp", json!(now + 120));
        set("jti", json!(jti));
        set("events", json!({ BACKCHANNEL_LOGOUT_EVENT: {} }));
        if let Some(sid) = sid {
            set("sid", json!(sid));
        }
        if let Some(sub) = sub {
            set("sub", json!(sub));
        }
        match mutation {
            Some(LogoutTokenMutation::NoEvents) => {
                claims.remove("events");
            }
            Some(LogoutTokenMutation::OtherEvent) => {
                set(
                    "events",
                    json!({ "http://schemas.openid.net/event/other": {} }),
                );
            }
            Some(LogoutTokenMutation::WithNonce) => set("nonce", json!("n0nce")),
            Some(LogoutTokenMutation::WrongAudience) => set("aud", json!("some-other-client")),
            Some(LogoutTokenMutation::WrongIssuer) => {
                set("iss", json!("https://evil-idp.example"));
            }
            Some(LogoutTokenMutation::Expired) => {
                set("iat", json!(now - 600));
                set("exp", json!(now - 300));
            }
            Some(LogoutTokenMutation::Claims(extra)) => merge_claims(&mut claims, &extra),
            Some(
                LogoutTokenMutation::BadSignature
                | LogoutTokenMutation::UnknownKid
                | LogoutTokenMutation::AlgNone,
            )
            | None => {}
        }
        let claims = Value::Object(claims);
        if alg_none {
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"logout+jwt"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            return Ok(format!("{header}.{payload}."));
        }
        let kid = match kid {
            _ if unknown_kid => "key2",
            // an unknown kid knob signs with key1, as for the other tokens
            kid if self.key(kid).is_none() => "key1",
            kid => kid,
        };
        self.sign_with(kid, &claims, Some("logout+jwt"), corrupt)
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

    pub(super) fn issuer(&self) -> &str {
        &self.issuer
    }

    pub(super) fn client_id(&self) -> &str {
        &self.client_id
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
        if mutation == Some(TokenMutation::AlgNone) {
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
            let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
            return Ok(format!("{header}.{payload}."));
        }
        let key1 = self.key("key1").ok_or("key1 missing")?;
        let signing = self.key(knobs.signing_kid);
        let (key, kid, alg) = match mutation {
            Some(TokenMutation::Hs256WithPublicKey) => (&self.hs_public, "key1", Algorithm::HS256),
            Some(TokenMutation::UnknownKid) => {
                let key2 = self.key("key2").ok_or("key2 missing")?;
                (&key2.key, "key2", Algorithm::RS256)
            }
            Some(TokenMutation::AlgMismatch) => match signing {
                Some(k) if k.alg == Algorithm::RS256 => (&k.key, k.kid, Algorithm::PS256),
                Some(k) if k.alg == Algorithm::PS256 => (&k.key, k.kid, Algorithm::RS256),
                _ => (&key1.key, "key1", Algorithm::PS256),
            },
            Some(TokenMutation::KidOfOtherFamily) => {
                let ec = self.key("ec256").ok_or("ec256 missing")?;
                let kid = match signing {
                    Some(k) if k.alg != Algorithm::ES256 => k.kid,
                    _ => "key1",
                };
                (&ec.key, kid, Algorithm::ES256)
            }
            _ => match signing {
                Some(k) => (&k.key, k.kid, k.alg),
                // any other name signs with key1 under that kid
                None => (&key1.key, knobs.signing_kid, Algorithm::RS256),
            },
        };
        sign_jwt(
            &claims,
            key,
            kid,
            alg,
            None,
            mutation == Some(TokenMutation::BadSignature),
        )
    }

    /// Signs `claims` with the key `kid` (its own algorithm), optionally with
    /// a `typ` header; `corrupt` alters the signature afterwards.
    pub(super) fn sign_with(
        &self,
        kid: &str,
        claims: &Value,
        typ: Option<&str>,
        corrupt: bool,
    ) -> Result<String, String> {
        let key = self.key(kid).ok_or_else(|| format!("no key {kid}"))?;
        sign_jwt(claims, &key.key, key.kid, key.alg, typ, corrupt)
    }
}

fn sign_jwt(
    claims: &Value,
    key: &EncodingKey,
    kid: &str,
    alg: Algorithm,
    typ: Option<&str>,
    corrupt: bool,
) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    if let Some(typ) = typ {
        header.typ = Some(typ.to_owned());
    }
    let token = jsonwebtoken::encode(&header, claims, key).map_err(|e| format!("sign: {e}"))?;
    if corrupt {
        return Ok(corrupt_signature(&token));
    }
    Ok(token)
}

/// RFC 7636 S256: BASE64URL-NOPAD(SHA256(ascii(verifier))).
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

pub(super) fn unix_now() -> i64 {
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
