//! Limits on slow and many clients.
//!
//! Owns: how many connections are open (in all and per client address),
//! when a connection has been idle too long, when a request body has stopped
//! arriving, and the per-client rate of login requests.
//! Must not: look at cookies or users. Everything here is decided at accept
//! time or costs a few atomic operations per request; the only per-request
//! allocation is a timer for a body that actually makes the server wait.
//!
//! A client address is the connection's peer, with IPv4-mapped IPv6 taken as
//! IPv4 and IPv6 cut to its /64 (one host usually owns a whole /64, so
//! counting single IPv6 addresses would count nothing).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::config::RateLimit;
use crate::http::body::BoxError;

/// The address limits are counted under: IPv4 as is (also when mapped into
/// IPv6), IPv6 cut to its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

// === connection counts ===

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from this address.
    PerIp,
}

/// Open connections, in all and per client address.
pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    open: AtomicUsize,
    /// Only addresses with a connection open: never more entries than
    /// `max_total`.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connections still being served as HTTP (not upgraded): what a
    /// shutdown waits for.
    serving: AtomicUsize,
    /// Woken when the last connection being served ends (shutdown drain).
    drained: Notify,
    /// HTTP/1 connections waiting for their next request outside hyper.
    parked: AtomicUsize,
    refusals: RateLimitedLog,
}

/// One open connection's place in [`ConnLimits`]; given back on drop.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    key: IpAddr,
}

impl ConnLimits {
    /// Limits of `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_ip,
            open: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            drained: Notify::new(),
            parked: AtomicUsize::new(0),
            refusals: RateLimitedLog::new(Duration::from_secs(10)),
        })
    }

    /// A place for a new connection from `peer`, or why there is none;
    /// `per_ip`: whether the per-address limit applies (not to a trusted
    /// proxy, whose address every client behind it shares).
    pub fn try_acquire(
        self: &Arc<Self>,
        peer: IpAddr,
        per_ip: bool,
    ) -> Result<ConnPermit, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.release_one();
            return Err(Refused::Total);
        }
        let key = client_key(peer);
        {
            let mut map = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = map.entry(key).or_insert(0);
            if per_ip && *n >= self.max_per_ip {
                drop(map);
                self.release_one();
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        Ok(ConnPermit {
            limits: self.clone(),
            key,
        })
    }

    /// Counts a refused connection; logs at warn at most every 10 s, with
    /// how many were refused since the last line.
    pub fn refused(&self, why: Refused, peer: IpAddr) {
        if let Some(count) = self.refusals.hit() {
            tracing::warn!(
                refused = count,
                last_peer = %peer,
                reason = match why {
                    Refused::Total => "max_connections",
                    Refused::PerIp => "max_connections_per_ip",
                },
                "connections closed at accept: over the connection limit (logged at most every 10 s)"
            );
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// HTTP/1 connections waiting for their next request outside hyper
    /// (holding no HTTP buffers) now.
    pub fn parked(&self) -> usize {
        self.parked.load(Ordering::Acquire)
    }

    /// Counts a connection as parked until the guard drops.
    pub fn park(self: &Arc<Self>) -> ParkedGuard {
        self.parked.fetch_add(1, Ordering::AcqRel);
        ParkedGuard(self.clone())
    }

    /// Marks a connection as being served as HTTP until the guard drops.
    pub fn serving(self: &Arc<Self>) -> ServingGuard {
        self.serving.fetch_add(1, Ordering::AcqRel);
        ServingGuard(self.clone())
    }

    /// Waits until no connection is being served as HTTP (upgraded ones,
    /// such as WebSockets, are not waited for), or `timeout`; true when
    /// drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.serving.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.serving.load(Ordering::Acquire) == 0;
            }
        }
    }

    fn release_one(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A parked connection; see [`ConnLimits::park`].
pub struct ParkedGuard(Arc<ConnLimits>);

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection being served as HTTP; see [`ConnLimits::serving`].
pub struct ServingGuard(Arc<ConnLimits>);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        if self.0.serving.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        {
            let mut map = self
                .limits
                .per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = map.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.key);
                }
            }
        }
        self.limits.release_one();
    }
}

/// Says when to log: at most once per `every`, with the count of hits since.
struct RateLimitedLog {
    every_ms: u64,
    epoch: Instant,
    hits: AtomicU64,
    next_ms: AtomicU64,
}

impl RateLimitedLog {
    fn new(every: Duration) -> Self {
        Self {
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            hits: AtomicU64::new(0),
            next_ms: AtomicU64::new(0),
        }
    }

    /// Counts a hit; `Some(hits since the last log)` when it is time to log.
    fn hit(&self) -> Option<u64> {
        self.hits.fetch_add(1, Ordering::AcqRel);
        let now = millis_since(self.epoch);
        let next = self.next_ms.load(Ordering::Acquire);
        (now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.every_ms),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok())
        .then(|| self.hits.swap(0, Ordering::AcqRel))
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// === idle connections ===

/// What one connection is doing: requests in flight (until their response
/// body is sent or dropped) and since when it has had none.
///
/// One timer per quiet spell, not one per request: requests that come and
/// go between two wakes of the timer only move `idle_since_ms` on, which the
/// timer reads when it wakes (before, every request's end woke the
/// connection and armed a new sleep).
pub struct ConnActivity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far (0: still waiting for the first).
    begun: AtomicU64,
    /// Milliseconds after `start` when the last request ended.
    idle_since_ms: AtomicU64,
    /// Notified when the first request begins and when the last request in
    /// flight ends. Nothing waits on it while requests come and go between
    /// two wakes of the timers. Two wait (the idle timeout, the park), so
    /// it wakes all: each enables its wait before it reads the counts.
    changed: Notify,
    /// False once a request made it unsafe to take the connection out of
    /// hyper between requests (see [`Self::keep_in_hyper`]).
    parkable: AtomicBool,
    /// The server wrote since its last completed flush: hyper may still
    /// hold bytes of a response.
    unflushed: AtomicBool,
    /// Milliseconds after `start` when a flush last completed what had been
    /// written: where hyper starts a keep-alive connection's wait for its
    /// next head.
    flushed_ms: AtomicU64,
}

/// One request in flight on a connection; ends when dropped.
pub struct RequestGuard(Arc<ConnActivity>);

impl ConnActivity {
    /// A new connection's activity, idle since now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
            parkable: AtomicBool::new(true),
            unflushed: AtomicBool::new(false),
            flushed_ms: AtomicU64::new(0),
        })
    }

    /// A request begins; it is in flight until the guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.begun.fetch_add(1, Ordering::AcqRel) == 0 {
            // the deadline is now another one
            self.changed.notify_waiters();
        }
        RequestGuard(self.clone())
    }

    /// Resolves when the connection should be closed: no request begun
    /// within `first_request` of the accept, or none in flight for `idle`.
    pub async fn idle(&self, first_request: Duration, idle: Duration) {
        if self.begun.load(Ordering::Acquire) == 0 {
            let begun = self.changed.notified();
            tokio::pin!(begun);
            begun.as_mut().enable();
            if self.begun.load(Ordering::Acquire) == 0 {
                let left = first_request.saturating_sub(self.start.elapsed());
                tokio::select! {
                    () = tokio::time::sleep(left) => {
                        if self.begun.load(Ordering::Acquire) == 0 {
                            return;
                        }
                    }
                    () = begun => {}
                }
            }
        }
        self.quiet_for(idle).await;
    }

    /// Resolves once no request has been in flight for `quiet`.
    pub async fn quiet_for(&self, quiet: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                let ended = self.changed.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if self.in_flight.load(Ordering::Acquire) > 0 {
                    ended.await;
                    continue;
                }
            }
            // read after in_flight: a request that just ended stored its
            // end before it left (see RequestGuard's drop)
            let deadline =
                Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)) + quiet;
            let now = self.start.elapsed();
            if deadline <= now {
                return;
            }
            tokio::time::sleep(deadline - now).await;
        }
    }

    /// When the last request ended (when the connection opened, if none
    /// has).
    pub fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire))
    }

    /// When hyper began to wait for the next head: the last response's
    /// end, or, when hyper was still writing it to a slow reader then, the
    /// flush that completed it.
    pub fn head_wait_began(&self) -> Instant {
        let ended = self.idle_since_ms.load(Ordering::Acquire);
        let flushed = self.flushed_ms.load(Ordering::Relaxed);
        self.start + Duration::from_millis(ended.max(flushed))
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests begun on the connection so far.
    pub fn requests_begun(&self) -> u64 {
        self.begun.load(Ordering::Acquire)
    }

    /// Resolves once a request after the first `begun` has begun and no
    /// request is in flight.
    pub async fn request_ended_since(&self, begun: u64) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.begun.load(Ordering::Acquire) > begun
                && self.in_flight.load(Ordering::Acquire) == 0
            {
                return;
            }
            changed.await;
        }
    }

    /// From now on the connection stays in hyper between requests: a
    /// request had a body (hyper may not have read all of it, and what it
    /// did not read must never be taken for the next head), was not
    /// HTTP/1.1, or was answered 101 (the bytes that follow are not HTTP).
    pub fn keep_in_hyper(&self) {
        self.parkable.store(false, Ordering::Relaxed);
    }

    /// Whether the connection may still be taken out of hyper.
    pub fn parkable(&self) -> bool {
        self.parkable.load(Ordering::Relaxed)
    }

    /// Whether hyper holds nothing of this connection that would be lost
    /// if it were taken back now: no request in flight, every response
    /// byte handed to the socket, and no request made it unsafe.
    pub fn may_park(&self) -> bool {
        self.parkable()
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.unflushed.load(Ordering::Relaxed)
    }

    /// The server wrote (or tried to) to the connection.
    pub fn wrote(&self) {
        self.unflushed.store(true, Ordering::Relaxed);
    }

    /// A flush of the connection completed. Only a flush that completed
    /// writes reads the clock (hyper also flushes with nothing written).
    pub fn flushed(&self) {
        if self.unflushed.swap(false, Ordering::Relaxed) {
            self.flushed_ms
                .store(millis_since(self.start), Ordering::Relaxed);
        }
    }
}

impl RequestGuard {
    /// The connection the request is on.
    pub fn activity(&self) -> &ConnActivity {
        &self.0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        // stored before in_flight drops, so whoever sees no request in
        // flight also sees this end (never an older one)
        a.idle_since_ms
            .store(millis_since(a.start), Ordering::Release);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request in flight until it is sent in
/// full or dropped.
pub struct Tracked<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    /// Ties `guard` to `inner`.
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === request bodies that stop ===

/// The request body sent nothing for `request_body_idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body idle for {0:?}: cut off")]
pub struct BodyIdle(pub Duration);

/// A request body that fails with [`BodyIdle`] once it has made the reader
/// wait `timeout` without a frame. The timer exists only once the body has
/// made someone wait (a body that arrives with its head needs none).
pub struct IdleTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    failed: bool,
}

impl<B> IdleTimeoutBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            timer: None,
            armed: false,
            failed: false,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let this = &mut *self;
        if !this.armed {
            let deadline = tokio::time::Instant::now() + this.timeout;
            match &mut this.timer {
                Some(t) => t.as_mut().reset(deadline),
                None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            this.armed = true;
        }
        if let Some(t) = &mut this.timer
            && t.as_mut().poll(cx).is_ready()
        {
            this.failed = true;
            tracing::info!(timeout = ?this.timeout, "request body stopped arriving: cut off");
            return Poll::Ready(Some(Err(BodyIdle(this.timeout).into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === login rate limit ===

/// Per-client token buckets (GCRA) for the login endpoints, in a bounded
/// cache: at most `capacity` clients are remembered, and a client unseen
/// for as long as its bucket takes to refill is forgotten (a forgotten
/// client and a full bucket are the same thing).
pub struct LoginRateLimiter {
    /// `None`: the limit is off.
    buckets: Option<moka::future::Cache<IpAddr, Arc<AtomicU64>>>,
    /// Nanoseconds between two requests at the sustained rate.
    interval_ns: u64,
    /// `burst * interval_ns`.
    tolerance_ns: u64,
    epoch: Instant,
}

/// Clients remembered at most by [`LoginRateLimiter`]: a few MiB.
pub const LOGIN_LIMITER_CAPACITY: u64 = 100_000;

impl LoginRateLimiter {
    /// A limiter for `limit` (`None`: off) remembering `capacity` clients.
    pub fn new(limit: Option<RateLimit>, capacity: u64) -> Self {
        let Some(limit) = limit else {
            return Self {
                buckets: None,
                interval_ns: 0,
                tolerance_ns: 0,
                epoch: Instant::now(),
            };
        };
        let interval_ns = 60_000_000_000 / u64::from(limit.per_minute.max(1));
        let tolerance_ns = interval_ns.saturating_mul(u64::from(limit.burst));
        Self {
            buckets: Some(
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_idle(Duration::from_nanos(tolerance_ns))
                    .build(),
            ),
            interval_ns,
            tolerance_ns,
            epoch: Instant::now(),
        }
    }

    /// `Ok` when `client` may send one more login request now; otherwise
    /// how long until it may (for `Retry-After`).
    pub async fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        let key = client_key(client);
        let tat = buckets
            .get_with(key, async { Arc::new(AtomicU64::new(0)) })
            .await;
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut current = tat.load(Ordering::Acquire);
        loop {
            let next = current.max(now).saturating_add(self.interval_ns);
            let ahead = next - now;
            if ahead > self.tolerance_ns {
                return Err(Duration::from_nanos(ahead - self.tolerance_ns));
            }
            match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }

    /// Clients remembered now (after pending evictions are applied).
    pub async fn remembered(&self) -> u64 {
        match &self.buckets {
            Some(b) => {
                b.run_pending_tasks().await;
                b.entry_count()
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests;
