//! Sessions in encrypted, authenticated cookies.
//!
//! Owns: the cookie codec (AES-256-GCM from `ring`, a fresh random nonce per
//! cookie, the cookie's purpose as associated data), splitting a long value
//! into numbered chunks and joining them back, the session payload, and the
//! short-lived login-state cookie that carries state, nonce and PKCE verifier
//! from `/oauth2/start` to `/oauth2/callback`.
//! Must not: talk to the provider or decide policy.
//!
//! Invariants: anything that fails to decode (tampered, truncated, oversized,
//! expired, sealed with an unknown key or for another purpose) is `None`,
//! never an error the client can see. Keys are derived once at start with
//! HKDF-SHA256 from each configured secret; the first key seals, all open.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use http::HeaderMap;
use http::HeaderValue;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

pub mod redis_store;
pub mod revocations;
pub mod store;

use crate::auth::identity::{HeaderValuesCell, Identity, Tokens};
use crate::config::{CookieConfig, Secret, cookie_secret_bytes};

/// Longest cookie value sent in one piece; longer values are chunked.
const CHUNK_LEN: usize = 3800;
/// Most chunks read back: bounds the work an oversized cookie can cause.
pub const MAX_CHUNKS: usize = 8;
/// Lifetime of a login-state cookie: a login must finish within this.
pub const LOGIN_TTL_SECS: u64 = 600;
const KDF_INFO: &[u8] = b"gatehouse cookie v1";

/// Seals and opens cookie values.
pub struct CookieCodec {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
    /// Issuer and client id, bound into every value's associated data: a
    /// cookie sealed by another deployment that shares the secret (another
    /// provider or client) does not open here.
    binding: Vec<u8>,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieCodec")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Failed to build a codec from the configured secrets.
#[derive(Debug, thiserror::Error)]
#[error("cookie_secret: {0}")]
pub struct CodecError(String);

struct KeyLen;
impl ring::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl CookieCodec {
    /// Derives one key per secret. The first secret seals. `issuer` and
    /// `client_id` are bound into every sealed value.
    pub fn new(secrets: &[Secret], issuer: &str, client_id: &str) -> Result<Self, CodecError> {
        if secrets.is_empty() {
            return Err(CodecError("no secret configured".to_owned()));
        }
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"gatehouse");
        let mut keys = Vec::with_capacity(secrets.len());
        for s in secrets {
            let ikm = cookie_secret_bytes(s).map_err(CodecError)?;
            let mut okm = [0u8; 32];
            salt.extract(&ikm)
                .expand(&[KDF_INFO], KeyLen)
                .and_then(|o| o.fill(&mut okm))
                .map_err(|e| CodecError(format!("key derivation failed: {e}")))?;
            let key = UnboundKey::new(&AES_256_GCM, &okm)
                .map_err(|e| CodecError(format!("bad key: {e}")))?;
            keys.push(LessSafeKey::new(key));
        }
        let mut binding = Vec::with_capacity(issuer.len() + client_id.len() + 1);
        binding.extend_from_slice(issuer.as_bytes());
        binding.push(0);
        binding.extend_from_slice(client_id.as_bytes());
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
            binding,
        })
    }

    /// The associated data for `purpose`: the purpose, then the deployment.
    fn aad(&self, purpose: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(purpose.len() + 1 + self.binding.len());
        aad.extend_from_slice(purpose.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.binding);
        aad
    }

    /// The system RNG (for the other sealers).
    pub(crate) fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    /// Fills `buf` with random bytes; `None` if the system RNG failed.
    pub fn fill_random(&self, buf: &mut [u8]) -> Option<()> {
        self.rng.fill(buf).ok()
    }

    /// Encrypts `plain` for `purpose` (the cookie name). URL-safe base64.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Option<String> {
        let sealed = seal_with(self.keys.first()?, &self.rng, &self.aad(purpose), plain)?;
        Some(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Decrypts a value sealed for `purpose` with any configured key.
    pub fn open(&self, purpose: &str, value: &str) -> Option<Vec<u8>> {
        if value.len() > CHUNK_LEN * MAX_CHUNKS {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        let aad = self.aad(purpose);
        self.keys.iter().find_map(|key| open_with(key, &aad, &raw))
    }

    /// 32 random bytes, URL-safe base64: for state, nonce and PKCE verifier.
    pub fn random_token(&self) -> Option<String> {
        let mut b = [0u8; 32];
        self.rng.fill(&mut b).ok()?;
        Some(URL_SAFE_NO_PAD.encode(b))
    }
}

/// AES-256-GCM under `key` with a fresh random nonce: `nonce || ciphertext
/// || tag`. The one sealing routine: cookies, Redis records and shared
/// refresh results all use it. `None` only if the RNG fails.
pub(crate) fn seal_with(
    key: &LessSafeKey,
    rng: &dyn ring::rand::SecureRandom,
    aad: &[u8],
    plain: &[u8],
) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).ok()?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .ok()?;
    let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    Some(out)
}

/// Opens what [`seal_with`] made; `None` for anything short, tampered, or
/// sealed under another key or associated data.
pub(crate) fn open_with(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let mut buf = body.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .ok()?;
    Some(plain.to_vec())
}

/// Lower-case hex of `bytes`: how hashed values become Redis key parts.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A session's random id: 128 bits from the system RNG, made at login and
/// kept across refreshes. Revocation by id ends exactly one session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id; `None` if the system RNG failed.
    pub fn random(codec: &CookieCodec) -> Option<Self> {
        let mut b = [0u8; 16];
        codec.fill_random(&mut b)?;
        Some(Self(b))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Wraps raw bytes (tests, stores that kept them).
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(b)
    }

    /// URL-safe base64, as stored in the payload.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses [`SessionId::encode`]'s form.
    pub fn decode(s: &str) -> Option<Self> {
        let raw = URL_SAFE_NO_PAD.decode(s).ok()?;
        Some(Self(raw.try_into().ok()?))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the id is a bearer-free handle, but keep logs short and uniform
        write!(f, "SessionId({}..)", &self.encode()[..6])
    }
}

/// A signed-in session: who (the identity) plus what identifies the session
/// itself, for revocation (by id, by the provider's `sid`, by `sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random id, made at login.
    pub id: SessionId,
    /// The provider's session id (`sid` claim of the ID token), if sent.
    pub provider_sid: Option<String>,
    /// The id of the provider that signed the user in; `None` for the
    /// primary one (`Config::providers[0]`), so a single-provider session
    /// carries nothing more than before.
    pub provider: Option<String>,
    /// The issuer that signed the user in.
    pub issuer: String,
    /// When the login happened, Unix milliseconds.
    pub issued_at_ms: u64,
    /// The user.
    pub identity: Identity,
    /// The key that seals this session's record in Redis; it travels only
    /// in the browser's ticket (`None` until a Redis store saved it).
    pub secret: Option<SessionSecret>,
}

/// A per-session key for the Redis store. Never logged, never stored server-side.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(pub [u8; 32]);

impl std::fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The session as stored (in the cookie, or sealed in Redis). Short field
/// names keep it small.
#[derive(Debug, Serialize, Deserialize)]
struct SessionPayload {
    v: u8,
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pv: Option<String>,
    iat: u64,
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    em: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ev: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nm: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gr: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rl: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    xh: Vec<(String, String)>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    it: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ax: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    #[serde(default)]
    ra: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    au: Option<u64>,
}

/// The payload format's version; anything else is no session.
const PAYLOAD_VERSION: u8 = 2;

impl Session {
    /// The session as JSON bytes (to be sealed before it leaves memory).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let identity = &self.identity;
        let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
        let payload = SessionPayload {
            v: PAYLOAD_VERSION,
            id: self.id.encode(),
            sid: self.provider_sid.clone(),
            iss: self.issuer.clone(),
            pv: self.provider.clone(),
            iat: self.issued_at_ms,
            sub: identity.subject.clone(),
            em: identity.email.clone(),
            ev: identity.email_verified,
            pu: identity.preferred_username.clone(),
            nm: identity.name.clone(),
            gr: identity.groups.clone(),
            rl: identity.roles.clone(),
            xh: identity.extra_headers.clone(),
            exp: identity.expires_at,
            it: expose(&identity.tokens.id_token),
            at: expose(&identity.tokens.access_token),
            ax: identity.tokens.access_token_expires_at,
            rt: expose(&identity.tokens.refresh_token),
            ra: identity.refreshed_at,
            ac: identity.acr.clone(),
            au: identity.auth_time,
        };
        serde_json::to_vec(&payload).ok()
    }

    /// Parses [`Session::to_bytes`]; `None` for another version, a
    /// malformed payload, or an expired session.
    pub fn from_bytes(plain: &[u8]) -> Option<Self> {
        let p: SessionPayload = serde_json::from_slice(plain).ok()?;
        if p.v != PAYLOAD_VERSION || p.exp <= now_secs() {
            return None;
        }
        Some(Self {
            id: SessionId::decode(&p.id)?,
            provider_sid: p.sid,
            provider: p.pv,
            issuer: p.iss,
            issued_at_ms: p.iat,
            secret: None,
            identity: Identity {
                subject: p.sub,
                email: p.em,
                email_verified: p.ev,
                preferred_username: p.pu,
                name: p.nm,
                groups: p.gr,
                roles: p.rl,
                extra_headers: p.xh,
                expires_at: p.exp,
                refreshed_at: p.ra,
                acr: p.ac,
                auth_time: p.au,
                tokens: Tokens {
                    id_token: p.it.map(Secret::new),
                    access_token: p.at.map(Secret::new),
                    refresh_token: p.rt.map(Secret::new),
                    access_token_expires_at: p.ax,
                },
                header_values: HeaderValuesCell::default(),
            },
        })
    }
}

/// Reads a session sealed whole into the request's cookies. `None` for
/// anything that is not a valid, unexpired session sealed by us.
pub fn read_session(
    codec: &CookieCodec,
    cfg: &CookieConfig,
    headers: &HeaderMap,
) -> Option<Session> {
    let value = session_cookie_value(headers, &cfg.name)?;
    Session::from_bytes(&codec.open(&cfg.name, &value)?)
}

/// Seals `session` whole into `Set-Cookie` values (chunked when long).
pub fn write_session(
    codec: &CookieCodec,
    cfg: &CookieConfig,
    session: &Session,
    request: &HeaderMap,
) -> Option<Vec<HeaderValue>> {
    let sealed = codec.seal(&cfg.name, &session.to_bytes()?)?;
    session_cookies(cfg, &sealed, session.identity.expires_at, request)
}

/// `Set-Cookie` values carrying `value` (chunked when long) until
/// `expires_at`, clearing any chunk or whole cookie in `request` that the new
/// layout does not use. `None` when the value needs more than
/// [`MAX_CHUNKS`] chunks.
pub fn session_cookies(
    cfg: &CookieConfig,
    value: &str,
    expires_at: u64,
    request: &HeaderMap,
) -> Option<Vec<HeaderValue>> {
    let max_age = expires_at.saturating_sub(now_secs());
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    if value.len() <= CHUNK_LEN {
        names.push(cfg.name.clone());
        out.push(set_cookie(cfg, &cfg.name, value, Some(max_age))?);
    } else {
        let chunks: Vec<&str> = value
            .as_bytes()
            .chunks(CHUNK_LEN)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect();
        if chunks.len() > MAX_CHUNKS {
            return None;
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let name = format!("{}_{i}", cfg.name);
            out.push(set_cookie(cfg, &name, chunk, Some(max_age))?);
            names.push(name);
        }
    }
    for stale in session_cookie_names(request, &cfg.name) {
        if !names.contains(&stale) {
            out.push(set_cookie(cfg, &stale, "", None)?);
        }
    }
    Some(out)
}

/// `Set-Cookie` values that delete every session cookie in `request`.
pub fn clear_session(cfg: &CookieConfig, request: &HeaderMap) -> Vec<HeaderValue> {
    let mut names = session_cookie_names(request, &cfg.name);
    if names.is_empty() {
        names.push(cfg.name.clone());
    }
    names
        .iter()
        .filter_map(|n| set_cookie(cfg, n, "", None))
        .collect()
}

/// Builds one `Set-Cookie` value; `max_age: None` deletes the cookie.
pub fn set_cookie(
    cfg: &CookieConfig,
    name: &str,
    value: &str,
    max_age: Option<u64>,
) -> Option<HeaderValue> {
    let mut c = Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .secure(cfg.secure)
        .same_site(SameSite::Lax);
    if let Some(d) = &cfg.domain {
        c = c.domain(d.clone());
    }
    let age = max_age.unwrap_or(0).min(i64::MAX as u64) as i64;
    c = c.max_age(cookie::time::Duration::seconds(age));
    if max_age.is_none() {
        c = c.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    }
    HeaderValue::from_str(&c.build().to_string()).ok()
}

/// Every cookie in the request, as (name, value) pairs, quotes around the
/// value removed. A malformed or non-ASCII pair is skipped alone: the rest of
/// its header still counts (see [`cookie_pairs`]).
pub fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    cookie_pairs(headers).map(|p| (p.name, p.value.trim_matches('"')))
}

/// One well-formed `name=value` pair of a `Cookie` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePair<'a> {
    /// The name, a non-empty RFC 9110 token.
    pub name: &'a str,
    /// The value as sent (quotes kept): visible ASCII and inner spaces.
    pub value: &'a str,
    /// The whole pair as sent, without the whitespace around it.
    pub pair: &'a str,
}

/// The well-formed pairs of every `Cookie` header, in order. Works on the
/// header's bytes, so one pair that is malformed (no `=`, an empty or
/// non-token name, a control character) or not ASCII is skipped alone
/// instead of losing the whole header.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = CookiePair<'_>> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| split_cookie_header(v.as_bytes()).filter_map(parse_cookie_pair))
}

/// The `;`-separated pieces of one `Cookie` header, as sent. A SIMD search:
/// the session pair is kilobytes, and every request has it split twice.
pub fn split_cookie_header(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b';', r) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Whether the piece of a `Cookie` header is one of gatehouse's own
/// cookies (see [`is_own_cookie`]), by its name alone: its value is not
/// looked at (the session's is kilobytes), as it is dropped either way.
pub fn names_own_cookie(raw: &[u8], base: &str) -> bool {
    let Some(eq) = raw.iter().position(|b| *b == b'=') else {
        return false;
    };
    let name = raw
        .get(..eq)
        .unwrap_or_default()
        .trim_ascii_start()
        .trim_ascii_end();
    std::str::from_utf8(name).is_ok_and(|n| is_own_cookie(n, base))
}

/// One pair of a `Cookie` header, or `None` if it is malformed: a name that
/// is not a non-empty RFC 9110 token, no `=`, or a value with a byte that
/// is not visible ASCII or a space (a tab, a control, non-ASCII). Spaces and
/// tabs around the pair and around its `=` are dropped.
///
/// One pass over the value, which is kilobytes for the session cookie and
/// read on every request; then `from_utf8` (its ASCII fast path) for the
/// `&str`.
pub fn parse_cookie_pair(raw: &[u8]) -> Option<CookiePair<'_>> {
    let (name, value, pair) = split_pair(raw)?;
    if !visible(value) {
        return None;
    }
    // every byte is ASCII now: these cannot fail, and the slices are whole
    // chars
    let pair = std::str::from_utf8(pair).ok()?;
    let name = pair.get(..name.len())?;
    let value = pair.get(pair.len() - value.len()..)?;
    Some(CookiePair { name, value, pair })
}

/// One pair of a `Cookie` header as (name, value, pair) with the blanks
/// around them dropped, or `None` when there is no `=` or the name is not a
/// non-empty RFC 9110 token. The value is not looked at.
fn split_pair(raw: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = raw.iter().position(|b| !blank(b))?;
    let end = raw.iter().rposition(|b| !blank(b))? + 1;
    let pair = raw.get(start..end)?;
    // the name comes first and is short: a byte scan beats a string search
    let eq = pair.iter().position(|b| *b == b'=')?;
    let name = pair.get(..eq)?;
    let name = name.get(..name.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1))?;
    let value = pair.get(eq + 1..)?;
    let value = value.get(value.iter().position(|b| !blank(b)).unwrap_or(value.len())..)?;
    // RFC 9110 tchar: `!#$%&'*+-.^_`|~`, digits, letters, as ranges (a
    // search of the 15 symbols per byte cost ~300 instructions a request)
    let token = |b: &u8| {
        matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
            | b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~')
    };
    if name.is_empty() || !name.iter().all(token) {
        return None;
    }
    Some((name, value, pair))
}

/// Only visible ASCII and spaces. A fold without early exit: the compiler
/// turns it into a vector loop.
fn visible(value: &[u8]) -> bool {
    !value
        .iter()
        .fold(false, |bad, &b| bad | !(0x20..=0x7e).contains(&b))
}

/// What a cookie name is to the session cookie named `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPart {
    /// `base` itself: the whole value in one cookie.
    Whole,
    /// `base_<n>`: chunk `n` of a chunked value, `n < MAX_CHUNKS`.
    Chunk(usize),
}

/// The one parser of session cookie names: `base` is [`SessionPart::Whole`],
/// `base_<n>` is [`SessionPart::Chunk`] when `n` is a canonical decimal (no
/// sign, no leading zero, ASCII digits only) below [`MAX_CHUNKS`]. Anything
/// else (`base_01`, `base_+1`, `base_8`, `base_x`) is not a session cookie.
pub fn session_part(name: &str, base: &str) -> Option<SessionPart> {
    let rest = name.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(SessionPart::Whole);
    }
    let digits = rest.strip_prefix('_')?;
    let canonical = match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', tail @ ..] => tail.len() < 4 && tail.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !canonical {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (n < MAX_CHUNKS).then_some(SessionPart::Chunk(n))
}

/// True when `name` is the session cookie or one of its chunks.
pub fn is_session_cookie(name: &str, base: &str) -> bool {
    session_part(name, base).is_some()
}

/// True for any cookie gatehouse sets: session, chunks and login state.
pub fn is_own_cookie(name: &str, base: &str) -> bool {
    is_session_cookie(name, base)
        || name
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with("_csrf_"))
}

fn session_cookie_names(headers: &HeaderMap, base: &str) -> Vec<String> {
    let mut names: Vec<String> = request_cookies(headers)
        .filter(|(n, _)| is_session_cookie(n, base))
        .map(|(n, _)| n.to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The session cookie's value in the request: the whole cookie, or chunks
/// `_0`, `_1`, ... joined (see [`join_session_value`] for what is refused).
/// A whole cookie is borrowed from the header, not copied: it is kilobytes
/// and read on every request.
pub fn session_cookie_value<'h>(headers: &'h HeaderMap, base: &str) -> Option<Cow<'h, str>> {
    join_session_value(request_cookies(headers), base)
}

/// A session cookie value as the request sent it, its bytes not yet checked
/// to be a cookie value (visible ASCII, so UTF-8). Checking kilobytes costs
/// about 2,300 instructions a request; the cookie store's cache holds only
/// values that passed the check and opened, so a value found there byte for
/// byte needs no check, and only a miss pays for [`Self::checked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedValue<'h>(Cow<'h, [u8]>);

impl<'h> UncheckedValue<'h> {
    /// `value`, whose bytes are checked when [`Self::checked`] is asked.
    pub fn new(value: impl Into<Cow<'h, [u8]>>) -> Self {
        Self(value.into())
    }

    /// The bytes as sent, to compare with values that were checked.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value, if it is one a well-formed cookie pair could carry (what
    /// [`cookie_pairs`] lets through).
    pub fn checked(&self) -> Option<&str> {
        if !visible(&self.0) {
            return None;
        }
        std::str::from_utf8(&self.0).ok()
    }
}

/// [`session_cookie_value`] with the whole cookie's value unchecked. The
/// same answer: what passes [`UncheckedValue::checked`] is what
/// [`session_cookie_value`] gives. A whole session cookie whose value is
/// not visible ASCII is looked at here, where the checked parse skips it;
/// when that makes the set ambiguous, the checked parse answers instead
/// (a rare path: a planted cookie), so such a cookie neither ends a session
/// nor locks one out that the rest of gatehouse, which reads cookies
/// checked (sign-out, stale-chunk cleanup), would not.
pub fn session_cookie_unchecked<'h>(
    headers: &'h HeaderMap,
    base: &str,
) -> Option<UncheckedValue<'h>> {
    let pairs = headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| split_cookie_header(v.as_bytes()))
        .filter_map(|raw| {
            let (name, value, _) = split_pair(raw)?;
            // token bytes: ASCII, so this cannot fail
            let name = std::str::from_utf8(name).ok()?;
            match session_part(name, base)? {
                // checked once the store misses
                SessionPart::Whole => Some((name, value)),
                // other pairs skipped as `cookie_pairs` skips them
                SessionPart::Chunk(_) => visible(value).then_some((name, value)),
            }
        })
        .map(|(name, value)| (name, trim_quotes(value)));
    Some(UncheckedValue(match join_parts(pairs, base) {
        Some(Joined::Whole(w)) => Cow::Borrowed(w),
        Some(Joined::Chunks(chunks)) => Cow::Owned(chunks.concat()),
        None => match session_cookie_value(headers, base)? {
            Cow::Borrowed(v) => Cow::Borrowed(v.as_bytes()),
            Cow::Owned(v) => Cow::Owned(v.into_bytes()),
        },
    }))
}

/// `value` without the quotes around it, as `trim_matches('"')` drops them.
fn trim_quotes(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|b| *b != b'"').unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| *b != b'"')
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// Joins the session value from `(name, value)` cookie pairs. `None` (no
/// session, never "first wins" or "last wins") when a name repeats, when the
/// whole cookie and chunks are both present, when the chunks do not run
/// `0..k` without a gap, or when a part is empty: a browser holding our
/// cookies never sends such a set, a cookie planted beside ours does.
pub fn join_session_value<'a>(
    cookies: impl IntoIterator<Item = (&'a str, &'a str)>,
    base: &str,
) -> Option<Cow<'a, str>> {
    Some(match join_parts(cookies, base)? {
        Joined::Whole(w) => Cow::Borrowed(w),
        Joined::Chunks(chunks) => Cow::Owned(chunks.concat()),
    })
}

/// What [`join_parts`] found: the whole cookie, or the chunks in order.
enum Joined<V> {
    Whole(V),
    Chunks(Vec<V>),
}

/// The rules of [`join_session_value`], for values as text or as bytes.
fn join_parts<'a, V: AsRef<[u8]> + Copy + 'a>(
    cookies: impl IntoIterator<Item = (&'a str, V)>,
    base: &str,
) -> Option<Joined<V>> {
    let mut whole: Option<V> = None;
    let mut chunks: [Option<V>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    let mut any_chunk = false;
    for (name, value) in cookies {
        let repeated = match session_part(name, base) {
            None => continue,
            Some(SessionPart::Whole) => whole.replace(value).is_some(),
            Some(SessionPart::Chunk(i)) => {
                any_chunk = true;
                chunks.get_mut(i)?.replace(value).is_some()
            }
        };
        if repeated {
            tracing::debug!("session cookie sent twice: no session");
            return None;
        }
    }
    if let Some(w) = whole {
        if any_chunk {
            tracing::debug!("whole session cookie mixed with chunks: no session");
            return None;
        }
        return (!w.as_ref().is_empty()).then_some(Joined::Whole(w));
    }
    let count = chunks.iter().take_while(|c| c.is_some()).count();
    if count == 0 || chunks.iter().skip(count).any(Option::is_some) {
        return None;
    }
    let parts: Vec<V> = chunks.iter().take(count).flatten().copied().collect();
    if parts.iter().any(|c| c.as_ref().is_empty()) {
        return None;
    }
    Some(Joined::Chunks(parts))
}

/// What travels from `/oauth2/start` to `/oauth2/callback`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginState {
    /// The `state` parameter sent to the provider.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
    /// Where to go once signed in (already validated).
    pub return_to: String,
    /// The `redirect_uri` sent to the provider (the token request repeats it).
    pub redirect_uri: String,
    /// The id of the provider the browser was sent to; `None` for the
    /// primary one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Unix seconds after which the login is stale.
    pub exp: u64,
    /// The `acr_values` asked of the provider (a step-up login): the ID
    /// token's `acr` must be one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr_values: Option<String>,
    /// The `max_age` asked of the provider, seconds: the ID token's
    /// `auth_time` must be at most this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// The login-state cookie's name for a given `state`. Each login gets its
/// own cookie, so logins started in several tabs do not overwrite each other.
pub fn login_cookie_name(base: &str, state: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, state.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..9]);
    format!("{base}_csrf_{tag}")
}

/// Seals a login state into a `Set-Cookie` value.
pub fn write_login_state(
    codec: &CookieCodec,
    cfg: &CookieConfig,
    login: &LoginState,
) -> Option<HeaderValue> {
    let name = login_cookie_name(&cfg.name, &login.state);
    let sealed = codec.seal(&name, &serde_json::to_vec(login).ok()?)?;
    set_cookie(cfg, &name, &sealed, Some(LOGIN_TTL_SECS))
}

/// Most logins one browser has in flight; starting another drops the
/// oldest, so login-state cookies never pile up in the `Cookie` header.
pub const MAX_LOGINS_IN_FLIGHT: usize = 4;

/// `Set-Cookie` values that expire the request's login-state cookies beyond
/// the newest `MAX_LOGINS_IN_FLIGHT - 1` (room for the one being started):
/// unreadable or stale ones first, then the oldest.
pub fn prune_login_states(
    codec: &CookieCodec,
    cfg: &CookieConfig,
    headers: &HeaderMap,
) -> Vec<HeaderValue> {
    let prefix = format!("{}_csrf_", cfg.name);
    let now = now_secs();
    let mut found: Vec<(u64, &str)> = request_cookies(headers)
        .filter(|(n, _)| n.starts_with(&prefix))
        .map(|(name, value)| {
            // 0 sorts unreadable and expired cookies first
            let exp = codec
                .open(name, value)
                .and_then(|plain| serde_json::from_slice::<LoginState>(&plain).ok())
                .map_or(0, |l| if l.exp <= now { 0 } else { l.exp });
            (exp, name)
        })
        .collect();
    found.sort_unstable();
    found.dedup_by(|a, b| a.1 == b.1);
    let keep = MAX_LOGINS_IN_FLIGHT.saturating_sub(1);
    let drop = found.len().saturating_sub(keep);
    found
        .iter()
        .take(drop)
        .filter_map(|(_, name)| set_cookie(cfg, name, "", None))
        .collect()
}

/// Why a callback's login state could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStateError {
    /// No cookie for this state: foreign state, a replay, or cookies lost.
    Missing,
    /// The cookie did not decrypt or did not match the state.
    Invalid,
    /// The login took longer than [`LOGIN_TTL_SECS`].
    Expired,
    /// The state was already redeemed (a replayed callback).
    Used,
}

/// Finds and opens the login state for `state`.
pub fn read_login_state(
    codec: &CookieCodec,
    cfg: &CookieConfig,
    headers: &HeaderMap,
    state: &str,
) -> Result<LoginState, LoginStateError> {
    let name = login_cookie_name(&cfg.name, state);
    let mut values = request_cookies(headers).filter(|(n, _)| *n == name);
    let (_, value) = values.next().ok_or(LoginStateError::Missing)?;
    if values.next().is_some() {
        // one planted beside ours: never pick one of the two
        return Err(LoginStateError::Invalid);
    }
    let plain = codec.open(&name, value).ok_or(LoginStateError::Invalid)?;
    let login: LoginState =
        serde_json::from_slice(&plain).map_err(|_e| LoginStateError::Invalid)?;
    if !constant_time_eq(login.state.as_bytes(), state.as_bytes()) {
        return Err(LoginStateError::Invalid);
    }
    if login.exp <= now_secs() {
        return Err(LoginStateError::Expired);
    }
    Ok(login)
}

/// Compares without stopping at the first difference.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod name_tests;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_codec;
