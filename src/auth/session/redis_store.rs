//! Sessions in Redis, sealed with a key that only the browser holds.
//!
//! Owns: the ticket (what the cookie carries: the session id and a random
//! per-session key, sealed by the cookie codec, under 200 bytes in all), the
//! record (the session sealed with AES-256-GCM under that key, at
//! `gatehouse:<deployment>:s:<sha256(id)>`, expiring with the session), and
//! a local cache of opened records.
//! Must not: keep the per-session key anywhere but in the ticket and memory:
//! a Redis dump holds only sealed records under hashed names, which neither
//! reveal a session nor can be replayed as one.
//!
//! The cache is safe because every change to a record (refresh, revocation)
//! is announced on the revocation feed and evicts the copy on every replica
//! within [`FRESH_WINDOW`](super::revocations::FRESH_WINDOW); a replica that
//! cannot hear the feed does not answer from its cache.

use std::sync::Arc;
use std::time::Duration;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};

use crate::auth::session::revocations::{Revocation, Revocations};
use crate::auth::session::store::{SessionStore, StoreError};
use crate::auth::session::{
    CookieCodec, Session, SessionId, SessionSecret, constant_time_eq, hex, now_secs, open_with,
    seal_with,
};
use crate::redis_conn::RedisConn;

/// Ticket format tag (first byte of the sealed plaintext).
const TICKET_V1: u8 = 0x52;
/// Tag + id + key.
const TICKET_LEN: usize = 1 + 16 + 32;
/// Most records kept opened in memory.
const CACHE_CAPACITY: u64 = 100_000;
/// A cached record is read again at least this often.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Associated data of a record: binds it to its id.
const RECORD_AAD: &[u8] = b"gatehouse session record v1";

/// The Redis session store.
pub struct RedisStore {
    codec: Arc<CookieCodec>,
    purpose: String,
    conn: RedisConn,
    prefix: String,
    revocations: Arc<Revocations>,
    cache: moka::future::Cache<SessionId, Arc<Session>>,
    /// Counts this store's operations (set by `Store::with_metrics`).
    pub(super) metrics: crate::metrics::Recorder,
}

impl RedisStore {
    /// A store whose keys start with `prefix` (e.g. `gatehouse:ab12cd34:`).
    /// Registers itself for evictions on the revocation feed.
    pub fn new(
        codec: Arc<CookieCodec>,
        cookie_name: &str,
        conn: RedisConn,
        prefix: String,
        revocations: Arc<Revocations>,
    ) -> Self {
        let cache: moka::future::Cache<SessionId, Arc<Session>> = moka::future::Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .time_to_live(CACHE_TTL)
            .build();
        let evict = cache.clone();
        revocations.on_evict(Box::new(move |id| {
            // moka's sync invalidation from the feed task
            let evict = evict.clone();
            tokio::spawn(async move { evict.invalidate(&id).await });
        }));
        Self {
            codec,
            purpose: cookie_name.to_owned(),
            conn,
            prefix,
            revocations,
            cache,
            metrics: crate::metrics::Recorder::default(),
        }
    }

    /// The record's key: the id is hashed, never used raw.
    fn record_key(&self, id: &SessionId) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut key = String::with_capacity(self.prefix.len() + 2 + 64);
        key.push_str(&self.prefix);
        key.push_str("s:");
        key.push_str(&hex(digest.as_ref()));
        key
    }

    fn ticket(&self, id: &SessionId, secret: &SessionSecret) -> Option<String> {
        let mut plain = Vec::with_capacity(TICKET_LEN);
        plain.push(TICKET_V1);
        plain.extend_from_slice(id.as_bytes());
        plain.extend_from_slice(&secret.0);
        self.codec.seal(&self.purpose, &plain)
    }

    /// The session id a ticket names.
    pub fn session_id(&self, value: &str) -> Option<SessionId> {
        self.open_ticket(value).map(|(id, _)| id)
    }

    fn open_ticket(&self, value: &str) -> Option<(SessionId, SessionSecret)> {
        let plain = self.codec.open(&self.purpose, value)?;
        if plain.len() != TICKET_LEN || plain.first() != Some(&TICKET_V1) {
            return None;
        }
        let id: [u8; 16] = plain.get(1..17)?.try_into().ok()?;
        let key: [u8; 32] = plain.get(17..)?.try_into().ok()?;
        Some((SessionId::from_bytes(id), SessionSecret(key)))
    }

    fn seal_record(&self, session: &Session, secret: &SessionSecret) -> Option<Vec<u8>> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret.0).ok()?);
        seal_with(
            &key,
            self.codec.rng(),
            &record_aad(&session.id),
            &session.to_bytes()?,
        )
    }

    fn open_record(id: &SessionId, secret: &SessionSecret, sealed: &[u8]) -> Option<Session> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret.0).ok()?);
        let plain = open_with(&key, &record_aad(id), sealed)?;
        let mut session = Session::from_bytes(&plain)?;
        // a record is only ever found under its own id
        if session.id != *id {
            return None;
        }
        session.secret = Some(secret.clone());
        Some(session)
    }

    /// The live session for a ticket, from the cache or Redis.
    async fn fetch(
        &self,
        id: SessionId,
        secret: &SessionSecret,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(cached) = self.cache.get(&id).await {
            let same_key = cached
                .secret
                .as_ref()
                .is_some_and(|s| constant_time_eq(&s.0, &secret.0));
            if same_key && cached.identity.expires_at > now_secs() {
                return Ok(Some(cached));
            }
        }
        // boxed: the Redis round trip's future is 3.7 KiB, and inline it
        // would size every request's future, cache hit or not
        Box::pin(self.fetch_record(id, secret)).await
    }

    /// [`Self::fetch`] past the cache: the record from Redis, opened and
    /// cached.
    async fn fetch_record(
        &self,
        id: SessionId,
        secret: &SessionSecret,
    ) -> Result<Option<Arc<Session>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query(redis::cmd("GET").arg(self.record_key(&id)))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Some(session) = Self::open_record(&id, secret, &sealed) else {
            return Ok(None);
        };
        let session = Arc::new(session);
        self.cache.insert(id, Arc::clone(&session)).await;
        Ok(Some(session))
    }
}

fn record_aad(id: &SessionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_AAD.len() + 16);
    aad.extend_from_slice(RECORD_AAD);
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl SessionStore for RedisStore {
    async fn save(&self, session: &Session) -> Result<String, StoreError> {
        let secret = match &session.secret {
            Some(s) => s.clone(),
            None => {
                let mut k = [0u8; 32];
                self.codec
                    .fill_random(&mut k)
                    .ok_or(StoreError::Unstorable("random number generator failed"))?;
                SessionSecret(k)
            }
        };
        let ttl_secs = session.identity.expires_at.saturating_sub(now_secs());
        if ttl_secs == 0 {
            return Err(StoreError::Unstorable("the session has expired"));
        }
        let record = self
            .seal_record(session, &secret)
            .ok_or(StoreError::Unstorable("cannot seal the session"))?;
        let () = self
            .conn
            .query(
                redis::cmd("SET")
                    .arg(self.record_key(&session.id))
                    .arg(record)
                    .arg("EX")
                    .arg(ttl_secs),
            )
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut stored = session.clone();
        stored.secret = Some(secret.clone());
        self.cache.insert(session.id, Arc::new(stored)).await;
        // an update (a refresh): other replicas drop their cached copy; a new
        // session is in no cache yet, so a login adds nothing to the feed
        if session.secret.is_some()
            && let Err(e) = self
                .revocations
                .revoke(Revocation::Updated(session.id))
                .await
        {
            tracing::warn!(error = %e, "session update not announced: redis unreachable");
        }
        self.ticket(&session.id, &secret)
            .ok_or(StoreError::Unstorable("cannot seal the ticket"))
    }

    async fn load(&self, value: &str) -> Result<Option<Arc<Session>>, StoreError> {
        let Some((id, secret)) = self.open_ticket(value) else {
            return Ok(None);
        };
        if !self.revocations.fresh() {
            return Err(StoreError::Unavailable(
                "revocations are not in sync with redis".to_owned(),
            ));
        }
        let Some(session) = self.fetch(id, &secret).await? else {
            return Ok(None);
        };
        if self.revocations.is_revoked(&session) {
            tracing::debug!(user = %crate::telemetry::escape_log(&session.identity.subject), "revoked session refused");
            return Ok(None);
        }
        Ok(Some(session))
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        if let Revocation::Session { id, .. } = &revocation {
            self.cache.invalidate(id).await;
            // the record goes too; the revocation entry covers a failure here
            if let Err(e) = self
                .conn
                .query::<()>(redis::cmd("DEL").arg(self.record_key(id)))
                .await
            {
                tracing::warn!(error = %e, "revoked session's record not deleted");
            }
        }
        if let Err(e) = self.revocations.revoke(revocation).await {
            tracing::warn!(error = %e, "revocation queued: redis unreachable");
        }
        Ok(())
    }

    fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }
}

#[cfg(test)]
mod tests;
