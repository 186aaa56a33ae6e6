//! Revoked sessions, checked in memory on every request.
//!
//! Owns: the set of revocations (one session by id, a provider session by
//! `sid`, every session of a subject by `sub`), each kept until the sessions
//! it can hit have expired anyway; and, when Redis is configured, the feed
//! that shares them between replicas.
//! Must not: touch the network on the request path. [`Revocations::is_revoked`]
//! and [`Revocations::fresh`] read memory only.
//!
//! The feed is a Redis stream: a revocation is appended (`XADD`, trimmed by
//! age with `MINID`), and every replica reads what is new every
//! [`POLL_INTERVAL`]. A replica that has not heard from Redis for
//! [`FRESH_WINDOW`] is not [`fresh`](Revocations::fresh): its stores then
//! refuse to vouch for a session (closed), since a revocation made elsewhere
//! may be missing. Revocations that could not be published are kept and sent
//! again once Redis answers; they apply locally at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use redis::streams::StreamRangeReply;

use crate::auth::session::{Session, SessionId, hex, now_millis, now_secs};
use crate::redis_conn::{RedisConn, RedisError};

/// How often the feed is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest time without news from Redis before sessions are not vouched for.
pub const FRESH_WINDOW: Duration = Duration::from_secs(1);
/// Entries read from the stream per call.
const PAGE: usize = 5_000;
/// After an outage (or at start), how long reads must succeed before this
/// replica vouches again: longer than every replica's next poll, which is
/// when each publishes the revocations it queued during the outage.
const RECOVERY_GRACE: Duration = Duration::from_millis(3 * 200);
/// How often the loop wakes without Redis (sweeps only).
const LOCAL_SWEEP_TICK: Duration = Duration::from_secs(10);
/// How often expired entries are dropped from memory.
const SWEEP_EVERY_MS: u64 = 60_000;

/// A hashed (issuer, claim) pair: what `sid` and `sub` revocations are keyed
/// by, so a claim value from a token is never used raw.
pub type ClaimKey = [u8; 32];

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session (sign-out). Kept until `until` (Unix seconds), its expiry.
    Session {
        /// The session.
        id: SessionId,
        /// When the session would have expired anyway.
        until: u64,
    },
    /// Every session of one provider session (back-channel logout with
    /// `sid`) that began at or before `at_ms`.
    ProviderSession {
        /// [`sid_key`] of the issuer and `sid`.
        key: ClaimKey,
        /// Unix milliseconds of the revocation.
        at_ms: u64,
        /// Unix seconds after which no session it can hit is alive.
        until: u64,
    },
    /// Every session of one subject that began at or before `at_ms`
    /// (back-channel logout with only `sub`).
    Subject {
        /// [`sub_key`] of the issuer and `sub`.
        key: ClaimKey,
        /// Unix milliseconds of the revocation.
        at_ms: u64,
        /// Unix seconds after which no session it can hit is alive.
        until: u64,
    },
    /// Not a revocation: the session was updated (refreshed) elsewhere, so
    /// a cached copy must be dropped.
    Updated(SessionId),
}

/// The key `sid` revocations use.
pub fn sid_key(issuer: &str, sid: &str) -> ClaimKey {
    claim_key(b"sid", issuer, sid)
}

/// The key `sub` revocations use.
pub fn sub_key(issuer: &str, sub: &str) -> ClaimKey {
    claim_key(b"sub", issuer, sub)
}

fn claim_key(kind: &[u8], issuer: &str, value: &str) -> ClaimKey {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(kind);
    ctx.update(&[0]);
    ctx.update(issuer.as_bytes());
    ctx.update(&[0]);
    ctx.update(value.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl Revocation {
    /// The stream entry for this revocation.
    fn encode(&self) -> String {
        match self {
            Self::Session { id, until } => format!("s {} {until}", id.encode()),
            Self::ProviderSession { key, at_ms, until } => {
                format!("p {} {at_ms} {until}", hex(key))
            }
            Self::Subject { key, at_ms, until } => format!("u {} {at_ms} {until}", hex(key)),
            Self::Updated(id) => format!("x {}", id.encode()),
        }
    }

    /// Parses [`Revocation::encode`]'s form strictly; `None` otherwise.
    fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(' ');
        let kind = parts.next()?;
        let r = match kind {
            "s" => Self::Session {
                id: SessionId::decode(parts.next()?)?,
                until: parts.next()?.parse().ok()?,
            },
            "p" | "u" => {
                let key = unhex(parts.next()?)?;
                let at_ms = parts.next()?.parse().ok()?;
                let until = parts.next()?.parse().ok()?;
                if kind == "p" {
                    Self::ProviderSession { key, at_ms, until }
                } else {
                    Self::Subject { key, at_ms, until }
                }
            }
            "x" => Self::Updated(SessionId::decode(parts.next()?)?),
            _ => return None,
        };
        parts.next().is_none().then_some(r)
    }
}

fn unhex(s: &str) -> Option<ClaimKey> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What is revoked, in memory.
#[derive(Default)]
struct Set {
    /// Session id -> until.
    ids: HashMap<SessionId, u64>,
    /// sid key -> (latest revocation time ms, until).
    sids: HashMap<ClaimKey, (u64, u64)>,
    /// sub key -> (latest revocation time ms, until).
    subs: HashMap<ClaimKey, (u64, u64)>,
}

impl Set {
    fn apply(&mut self, r: &Revocation) {
        let merge = |m: &mut HashMap<ClaimKey, (u64, u64)>, key: ClaimKey, at: u64, until: u64| {
            let e = m.entry(key).or_insert((at, until));
            e.0 = e.0.max(at);
            e.1 = e.1.max(until);
        };
        match *r {
            Revocation::Session { id, until } => {
                let e = self.ids.entry(id).or_insert(until);
                *e = (*e).max(until);
            }
            Revocation::ProviderSession { key, at_ms, until } => {
                merge(&mut self.sids, key, at_ms, until);
            }
            Revocation::Subject { key, at_ms, until } => merge(&mut self.subs, key, at_ms, until),
            Revocation::Updated(_) => {}
        }
    }

    /// Adds every entry of `other` (the later time and expiry of each).
    fn merge_from(&mut self, other: &Self) {
        for (id, until) in &other.ids {
            let e = self.ids.entry(*id).or_insert(*until);
            *e = (*e).max(*until);
        }
        for (mine, theirs) in [(&mut self.sids, &other.sids), (&mut self.subs, &other.subs)] {
            for (key, (at, until)) in theirs {
                let e = mine.entry(*key).or_insert((*at, *until));
                e.0 = e.0.max(*at);
                e.1 = e.1.max(*until);
            }
        }
    }

    fn sweep(&mut self, now: u64) {
        self.ids.retain(|_, until| *until > now);
        self.sids.retain(|_, (_, until)| *until > now);
        self.subs.retain(|_, (_, until)| *until > now);
    }

    fn hits(&self, s: &Session) -> bool {
        if self.ids.contains_key(&s.id) {
            return true;
        }
        let began = s.issued_at_ms;
        if !self.sids.is_empty()
            && let Some(sid) = &s.provider_sid
            && self
                .sids
                .get(&sid_key(&s.issuer, sid))
                .is_some_and(|(at, _)| began <= *at)
        {
            return true;
        }
        !self.subs.is_empty()
            && self
                .subs
                .get(&sub_key(&s.issuer, &s.identity.subject))
                .is_some_and(|(at, _)| began <= *at)
    }
}

/// Called for every session id the feed says changed or was revoked (the
/// Redis store drops its cached copy).
pub type EvictHook = Box<dyn Fn(SessionId) + Send + Sync>;

/// The Redis side of [`Revocations`].
struct Feed {
    conn: RedisConn,
    stream: String,
    /// How long entries are kept in the stream.
    retention: Duration,
    /// The last stream id applied; `None` reads the whole stream again.
    last_id: Mutex<Option<String>>,
    /// Unix ms of the last successful read.
    heard_at_ms: AtomicU64,
    /// Published locally, not yet in Redis.
    pending: Mutex<Vec<Revocation>>,
    /// Whether the last read failed (to log an outage once).
    failing: std::sync::atomic::AtomicBool,
    /// Unix ms of the first good read after an outage (0: not recovering).
    recovering_since_ms: AtomicU64,
}

/// The revocations, shared by the stores and the endpoints.
pub struct Revocations {
    set: RwLock<Set>,
    swept_at_ms: AtomicU64,
    feed: Option<Feed>,
    evict: RwLock<Option<EvictHook>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("shared", &self.feed.is_some())
            .finish_non_exhaustive()
    }
}

impl Revocations {
    /// Revocations kept by this process only (forgotten on restart).
    pub fn local() -> Self {
        Self {
            set: RwLock::new(Set::default()),
            swept_at_ms: AtomicU64::new(now_millis()),
            feed: None,
            evict: RwLock::new(None),
        }
    }

    /// Revocations shared through the Redis stream `stream`, whose entries
    /// are kept for `retention` (the longest session lifetime).
    pub fn shared(conn: RedisConn, stream: String, retention: Duration) -> Self {
        Self {
            feed: Some(Feed {
                conn,
                stream,
                retention,
                last_id: Mutex::new(None),
                heard_at_ms: AtomicU64::new(0),
                pending: Mutex::new(Vec::new()),
                failing: std::sync::atomic::AtomicBool::new(false),
                recovering_since_ms: AtomicU64::new(0),
            }),
            ..Self::local()
        }
    }

    /// Sets the hook told about changed and revoked session ids.
    /// Takes over what `old` (the revocations of the same deployment, same
    /// issuer and client id, before a reload rebuilt them) knows: its set,
    /// and the revocations it could not publish yet, which this one sends
    /// (`old`'s feed stops with the reload: they would be lost). Without a
    /// feed here they still apply locally, being in the set.
    pub fn take_over(&self, old: &Self) {
        if let (Ok(mut mine), Ok(theirs)) = (self.set.write(), old.set.read()) {
            mine.merge_from(&theirs);
        }
        let queued = old
            .feed
            .as_ref()
            .and_then(|f| f.pending.lock().ok().map(|mut p| std::mem::take(&mut *p)))
            .unwrap_or_default();
        if let Some(feed) = &self.feed
            && let Ok(mut p) = feed.pending.lock()
        {
            p.extend(queued);
        }
    }

    pub fn on_evict(&self, hook: EvictHook) {
        if let Ok(mut h) = self.evict.write() {
            *h = Some(hook);
        }
    }

    /// True when `session` is revoked. Memory only.
    pub fn is_revoked(&self, session: &Session) -> bool {
        // a poisoned lock means a panic elsewhere: refuse rather than allow
        self.set.read().map_or(true, |s| s.hits(session))
    }

    /// True when this replica has heard from the feed within
    /// [`FRESH_WINDOW`] (always true without Redis). Memory only.
    pub fn fresh(&self) -> bool {
        match &self.feed {
            None => true,
            Some(f) => {
                let heard = f.heard_at_ms.load(Ordering::Acquire);
                heard != 0
                    && now_millis().saturating_sub(heard)
                        <= u64::try_from(FRESH_WINDOW.as_millis()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Whether revocations are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.feed.is_some()
    }

    /// Revokes here at once, and everywhere once published. A publish that
    /// fails is kept and retried by [`Revocations::poll`]; the error is
    /// returned so the caller can log it.
    pub async fn revoke(&self, r: Revocation) -> Result<(), RedisError> {
        self.apply(&r);
        let Some(feed) = &self.feed else {
            return Ok(());
        };
        if let Err(e) = feed.publish(&r).await {
            if let Ok(mut p) = feed.pending.lock() {
                p.push(r);
            }
            return Err(e);
        }
        Ok(())
    }

    fn apply(&self, r: &Revocation) {
        if let Ok(mut s) = self.set.write() {
            s.apply(r);
        }
        let id = match r {
            Revocation::Session { id, .. } | Revocation::Updated(id) => Some(*id),
            _ => None,
        };
        if let (Some(id), Ok(hook)) = (id, self.evict.read())
            && let Some(hook) = hook.as_ref()
        {
            hook(id);
        }
    }

    /// One round of the feed: send what is pending, then read what is new.
    /// Without Redis it only sweeps expired entries.
    pub async fn poll(&self) {
        let now_ms = now_millis();
        if now_ms.saturating_sub(self.swept_at_ms.load(Ordering::Relaxed)) >= SWEEP_EVERY_MS {
            self.swept_at_ms.store(now_ms, Ordering::Relaxed);
            if let Ok(mut s) = self.set.write() {
                s.sweep(now_secs());
            }
        }
        let Some(feed) = &self.feed else {
            return;
        };
        match self.poll_feed(feed).await {
            Ok(()) => {
                let now = now_millis();
                if feed.heard_at_ms.load(Ordering::Acquire) == 0
                    || feed.failing.load(Ordering::Relaxed)
                {
                    // back after an outage (or just started): other replicas
                    // publish what they queued meanwhile on their next poll,
                    // so vouch again only after reading once more past that
                    let since = feed.recovering_since_ms.load(Ordering::Relaxed);
                    if since == 0 {
                        feed.recovering_since_ms.store(now, Ordering::Relaxed);
                        return;
                    }
                    if now.saturating_sub(since) < millis(RECOVERY_GRACE) {
                        return;
                    }
                    feed.recovering_since_ms.store(0, Ordering::Relaxed);
                    if feed.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("redis reachable again: revocations in sync");
                    }
                }
                feed.heard_at_ms.store(now, Ordering::Release);
            }
            Err(e) => {
                feed.recovering_since_ms.store(0, Ordering::Relaxed);
                if !feed.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "redis unreachable: sessions are not vouched for until it answers");
                }
                // read everything again once it answers: a restarted Redis
                // may have lost entries we had not seen
                if let Ok(mut last) = feed.last_id.lock() {
                    *last = None;
                }
            }
        }
    }

    async fn poll_feed(&self, feed: &Feed) -> Result<(), RedisError> {
        let pending = feed
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for (i, r) in pending.iter().enumerate() {
            if let Err(e) = feed.publish(r).await {
                if let Ok(mut p) = feed.pending.lock() {
                    p.extend(pending.into_iter().skip(i));
                }
                return Err(e);
            }
        }
        loop {
            let from = feed
                .last_id
                .lock()
                .ok()
                .and_then(|l| l.clone())
                .map_or_else(|| "-".to_owned(), |id| format!("({id}"));
            let reply: StreamRangeReply = feed
                .conn
                .query(
                    redis::cmd("XRANGE")
                        .arg(&feed.stream)
                        .arg(&from)
                        .arg("+")
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await?;
            let n = reply.ids.len();
            let now = now_secs();
            for entry in &reply.ids {
                let Some(text) = entry.get::<String>("r") else {
                    continue;
                };
                match Revocation::decode(&text) {
                    Some(r) if !expired(&r, now) => self.apply(&r),
                    Some(_) => {}
                    None => {
                        tracing::debug!(entry = %entry.id, "unreadable revocation entry skipped")
                    }
                }
            }
            if let (Some(last), Ok(mut l)) = (reply.ids.last(), feed.last_id.lock()) {
                *l = Some(last.id.clone());
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Polls every [`POLL_INTERVAL`] until dropped (spawned at start);
    /// without Redis only the sweep is left, so it wakes rarely.
    pub async fn run(self: std::sync::Arc<Self>) {
        let every = if self.feed.is_some() {
            POLL_INTERVAL
        } else {
            LOCAL_SWEEP_TICK
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.poll().await;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn expired(r: &Revocation, now: u64) -> bool {
    match r {
        Revocation::Session { until, .. }
        | Revocation::ProviderSession { until, .. }
        | Revocation::Subject { until, .. } => *until <= now,
        Revocation::Updated(_) => false,
    }
}

impl Feed {
    async fn publish(&self, r: &Revocation) -> Result<(), RedisError> {
        let min_id = now_millis()
            .saturating_sub(u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX));
        let _id: String = self
            .conn
            .query(
                redis::cmd("XADD")
                    .arg(&self.stream)
                    .arg("MINID")
                    .arg("~")
                    .arg(min_id)
                    .arg("*")
                    .arg("r")
                    .arg(r.encode()),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
