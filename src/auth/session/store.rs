//! Where sessions live: the [`SessionStore`] trait and the cookie store.
//!
//! Owns: turning a [`Session`] into the value its cookie carries and back,
//! and revoking sessions. Two stores implement the trait: [`CookieStore`]
//! (the sealed session is the cookie; revocations are kept server-side) and
//! [`RedisStore`](super::redis_store::RedisStore) (the session is sealed in
//! Redis with a key only the cookie's ticket carries). [`Store`] picks one.
//! Must not: write `Set-Cookie` headers (the cookie layer in `session.rs`
//! does) or decide policy.
//!
//! Contract (one test suite runs it against every store): `load(save(s))`
//! is `s`; a revoked, expired, tampered or foreign value loads as `None`;
//! when the store cannot vouch for a session (Redis unreachable, revocations
//! not in sync), `load` fails with [`StoreError::Unavailable`] instead of
//! answering from stale knowledge.

use std::future::Future;
use std::sync::Arc;

use crate::auth::session::redis_store::RedisStore;
use crate::auth::session::revocations::{Revocation, Revocations};
use crate::auth::session::{CookieCodec, Session, SessionId, UncheckedValue};

mod front;

/// A store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, too slow, or revocations are not in sync.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The session could not be sealed (too large, RNG failure).
    #[error("session cannot be stored: {0}")]
    Unstorable(&'static str),
}

/// A place for sessions, in the shape of tower-sessions' store.
pub trait SessionStore: Send + Sync {
    /// Saves a new or updated session; returns the cookie value that finds
    /// it again.
    fn save(&self, session: &Session) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The session a cookie value points at; `Ok(None)` for anything that
    /// is not a live session of ours. Shared with the store's cache: a
    /// request reads it, and copying its tokens per request cost more than
    /// the rest of the lookup.
    fn load(
        &self,
        value: &str,
    ) -> impl Future<Output = Result<Option<Arc<Session>>, StoreError>> + Send;

    /// Ends sessions here at once and, with Redis, on every replica. Fails
    /// only when the revocation could not be recorded at all.
    fn revoke(&self, revocation: Revocation)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The revocations this store consults.
    fn revocations(&self) -> &Arc<Revocations>;
}

/// Bytes of cookie values and sessions [`CookieStore`] keeps opened.
const OPENED_CACHE_BYTES: u64 = 4 << 20;
/// How long an opened session is kept without being presented again.
const OPENED_CACHE_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

/// Sessions sealed whole into the cookie.
pub struct CookieStore {
    codec: Arc<CookieCodec>,
    purpose: String,
    revocations: Arc<Revocations>,
    metrics: crate::metrics::Recorder,
    /// Sessions opened lately, keyed by the whole cookie value (compared
    /// byte for byte, so only the very value that was verified finds its
    /// entry): a hit skips base64, AES-GCM and the payload parse. Only what
    /// opened and verified goes in; expiry, revocations and freshness are
    /// checked on every load, hit or miss. Built with the codec, so other
    /// cookie secrets mean another store and another cache. Each thread
    /// keeps a few of these entries in front of it ([`front`]).
    opened: moka::future::Cache<Vec<u8>, Arc<Session>, TailHash>,
    /// This store's name in each thread's [`front`] slots.
    front_id: u64,
}

/// Hashes a cookie value by its length and last 32 bytes (the end of a
/// sealed value is its AES-GCM tag, which differs from value to value)
/// rather than by all of its kilobytes. Only the bucket depends on it:
/// entries are still told apart by comparing whole values, and only values
/// that opened are ever inserted, so a client cannot flood a bucket.
#[derive(Clone, Default)]
struct TailHash(std::collections::hash_map::RandomState);

impl std::hash::BuildHasher for TailHash {
    type Hasher = TailHasher;
    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::collections::hash_map::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0
            .write(bytes.get(bytes.len().saturating_sub(32)..).unwrap_or(bytes));
    }
    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl CookieStore {
    /// A store sealing with `codec` for the cookie named `cookie_name`.
    pub fn new(codec: Arc<CookieCodec>, cookie_name: &str, revocations: Arc<Revocations>) -> Self {
        let opened = moka::future::Cache::builder()
            .weigher(|value: &Vec<u8>, s: &Arc<Session>| {
                u32::try_from(value.len() + session_weight(s)).unwrap_or(u32::MAX)
            })
            .max_capacity(OPENED_CACHE_BYTES)
            .time_to_idle(OPENED_CACHE_IDLE)
            .build_with_hasher(TailHash::default());
        Self {
            codec,
            purpose: cookie_name.to_owned(),
            revocations,
            metrics: crate::metrics::Recorder::default(),
            opened,
            front_id: front::new_store_id(),
        }
    }

    /// The session `value` seals, from the cache or checked, opened and
    /// verified. A hit is the very bytes of a value that passed all three.
    async fn open(&self, value: &UncheckedValue<'_>) -> Option<Arc<Session>> {
        let front = front::get(self.front_id, value.bytes());
        let in_front = front.is_some();
        let cached = match front {
            Some(s) => Some(s),
            None => self.opened.get(value.bytes()).await,
        };
        if let Some(s) = cached {
            // the payload's own expiry, as `Session::from_bytes` checks it
            if s.identity.expires_at > crate::auth::session::now_secs() {
                if !in_front && !self.revocations.is_revoked(&s) {
                    front::put(self.front_id, value.bytes(), &s);
                }
                return Some(s);
            }
            front::remove(self.front_id, value.bytes());
            self.opened.invalidate(value.bytes()).await;
            return None;
        }
        let session = self
            .codec
            .open(&self.purpose, value.checked()?)
            .and_then(|plain| Session::from_bytes(&plain))?;
        let session = Arc::new(session);
        if !self.revocations.is_revoked(&session) {
            self.opened
                .insert(value.bytes().to_vec(), Arc::clone(&session))
                .await;
            front::put(self.front_id, value.bytes(), &session);
        }
        Some(session)
    }

    /// [`SessionStore::load`] for a value whose bytes are not yet checked.
    async fn load_unchecked(
        &self,
        value: &UncheckedValue<'_>,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(session) = self.open(value).await else {
            return Ok(None);
        };
        if self.revocations.is_revoked(&session) {
            tracing::debug!(user = %crate::telemetry::escape_log(&session.identity.subject), "revoked session refused");
            return Ok(None);
        }
        if !self.revocations.fresh() {
            return Err(StoreError::Unavailable(
                "revocations are not in sync with redis".to_owned(),
            ));
        }
        Ok(Some(session))
    }
}

/// About what a session takes in memory: its strings and a fixed part.
fn session_weight(s: &Session) -> usize {
    let i = &s.identity;
    let tokens = [
        &i.tokens.id_token,
        &i.tokens.access_token,
        &i.tokens.refresh_token,
    ]
    .into_iter()
    .flatten()
    .map(|t| t.expose().len())
    .sum::<usize>();
    let lists = i
        .groups
        .iter()
        .chain(&i.roles)
        .map(String::len)
        .sum::<usize>()
        + i.extra_headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    512 + tokens + lists + i.subject.len() + s.issuer.len()
}

impl SessionStore for CookieStore {
    async fn save(&self, session: &Session) -> Result<String, StoreError> {
        let bytes = session
            .to_bytes()
            .ok_or(StoreError::Unstorable("cannot encode the session"))?;
        self.codec
            .seal(&self.purpose, &bytes)
            .ok_or(StoreError::Unstorable("cannot seal the session"))
    }

    async fn load(&self, value: &str) -> Result<Option<Arc<Session>>, StoreError> {
        self.load_unchecked(&UncheckedValue::new(value.as_bytes()))
            .await
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        if let Err(e) = self.revocations.revoke(revocation).await {
            // applied here and queued: the feed sends it once redis answers
            tracing::warn!(error = %e, "revocation queued: redis unreachable");
        }
        Ok(())
    }

    fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }
}

/// The configured store.
pub enum Store {
    /// `session_store_type = cookie`.
    Cookie(CookieStore),
    /// `session_store_type = redis`.
    Redis(RedisStore),
}

impl Store {
    /// The id of the session a cookie value names, without asking Redis
    /// (sign-out revokes by id even while the store is unreachable).
    pub fn session_id(&self, value: &str) -> Option<SessionId> {
        match self {
            Self::Cookie(s) => s
                .codec
                .open(&s.purpose, value)
                .and_then(|p| Session::from_bytes(&p))
                .map(|s| s.id),
            Self::Redis(s) => s.session_id(value),
        }
    }

    /// This store, counting its operations into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Recorder) -> Self {
        match &mut self {
            Self::Cookie(s) => s.metrics = metrics,
            Self::Redis(s) => s.metrics = metrics,
        }
        self
    }

    /// [`SessionStore::load`] for the session cookie as the request sent
    /// it ([`crate::auth::session::session_cookie_unchecked`]): the cookie
    /// store checks its bytes only when its cache misses; Redis tickets are
    /// short and checked first.
    pub async fn load_unchecked(
        &self,
        value: &UncheckedValue<'_>,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let r = match self {
            Self::Cookie(s) => s.load_unchecked(value).await,
            Self::Redis(s) => match value.checked() {
                Some(v) => s.load(v).await,
                None => Ok(None),
            },
        };
        self.metrics().store(StoreOp::Load, r.is_ok());
        r
    }

    fn metrics(&self) -> &crate::metrics::Recorder {
        match self {
            Self::Cookie(s) => &s.metrics,
            Self::Redis(s) => &s.metrics,
        }
    }
}

use crate::metrics::StoreOp;

impl SessionStore for Store {
    async fn save(&self, session: &Session) -> Result<String, StoreError> {
        let r = match self {
            Self::Cookie(s) => s.save(session).await,
            Self::Redis(s) => s.save(session).await,
        };
        self.metrics().store(StoreOp::Save, r.is_ok());
        r
    }

    async fn load(&self, value: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let r = match self {
            Self::Cookie(s) => s.load(value).await,
            Self::Redis(s) => s.load(value).await,
        };
        self.metrics().store(StoreOp::Load, r.is_ok());
        r
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        let r = match self {
            Self::Cookie(s) => s.revoke(revocation).await,
            Self::Redis(s) => s.revoke(revocation).await,
        };
        self.metrics().store(StoreOp::Revoke, r.is_ok());
        r
    }

    fn revocations(&self) -> &Arc<Revocations> {
        match self {
            Self::Cookie(s) => s.revocations(),
            Self::Redis(s) => s.revocations(),
        }
    }
}

#[cfg(test)]
mod tests;
