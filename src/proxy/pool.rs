//! One upstream's connections: HTTP/1.1, kept open between requests.
//!
//! Why not hyper-util's pooled client: it keys one shared pool by scheme
//! and authority, so every request hashed both (SipHash) twice, took a
//! checkout future through a waiter queue and a connection wrapper, and
//! moved the request through several layers of futures: about 5,000
//! instructions a request, a tenth of a signed-in GET. Here each upstream
//! has its own pool (known when the config is read), and a request pops a
//! ready connection off a short list.
//!
//! What it keeps of that client's behaviour:
//! - a connection the upstream closed while idle is skipped, and a request
//!   that a reused connection did not start to send (it was closed under
//!   it) is sent again on another: the request was not sent, so this is
//!   safe for any method;
//! - a connection goes back to the pool only once hyper says it is ready
//!   for the next request (its response read to the end); one whose
//!   response is still streaming goes back when it ends;
//! - at most [`MAX_IDLE`] idle connections are kept, each for at most
//!   [`IDLE_TIMEOUT`] (a task closes older ones);
//! - HTTP/1 upgrades (WebSocket) work.
//!
//! HTTP/1.1 only, over TLS too (the connector offers no ALPN, so the server
//! speaks HTTP/1.1), as nginx does: an upgrade (WebSocket) needs HTTP/1.1,
//! and one kind of connection keeps the pool one list. hyper-util's client
//! spoke HTTP/2 to a TLS upstream that offered it, where a WebSocket
//! upgrade failed.
//!
//! Owns: upstream connections. Must not: look at requests or responses
//! beyond sending them.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::time::Instant;
use tower_service::Service as _;

/// Idle connections kept per upstream.
pub(super) const MAX_IDLE: usize = 64;

/// How long an idle connection is kept (below the 2 minutes many load
/// balancers keep one, above the 60-75 s of nginx and Node).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request did not get a response head.
pub(super) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// One upstream's idle connections and how to open a new one.
pub(super) struct Pool<B> {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector is asked for.
    target: Uri,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Idle<B>>>,
    /// Whether the task that closes stale idle connections runs.
    reaper: std::sync::Once,
}

struct Idle<B> {
    tx: http1::SendRequest<B>,
    since: Instant,
}

impl<B> std::fmt::Debug for Pool<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .finish()
    }
}

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<SendError>,
{
    /// A pool reaching `target` (`scheme://authority/`) through `connector`.
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, target: Uri) -> Arc<Self> {
        Arc::new(Self {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
            reaper: std::sync::Once::new(),
        })
    }

    /// Sends `req` (origin-form, its `Host` set) on an idle connection or a
    /// new one, and gives the connection back once it is ready again.
    /// Dropping the future before the response head closes the connection
    /// (HTTP/1 cannot abort one request otherwise).
    pub(super) async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> Result<Response<Incoming>, SendError> {
        loop {
            let (mut tx, reused) = match self.take() {
                Some(tx) => (tx, true),
                None => (self.connect().await?, false),
            };
            match tx.try_send_request(req).await {
                Ok(resp) => {
                    self.release(tx);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // not sent: the idle connection was closed under us
                    Some(unsent) if reused => {
                        tracing::debug!(error = %e.error(), "idle upstream connection closed; trying another");
                        req = unsent;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// The most recently used idle connection still open, if any.
    fn take(&self) -> Option<http1::SendRequest<B>> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(i) = idle.pop() {
            if i.tx.is_ready() {
                return Some(i.tx);
            }
            // closed by the upstream while idle: dropped
        }
        None
    }

    async fn connect(&self) -> Result<http1::SendRequest<B>, SendError> {
        let io = self.connector.clone().call(self.target.clone()).await?;
        let (tx, conn) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }

    /// Puts `tx` back once it is ready for another request: at once when
    /// the response was read whole, else when its body ends.
    fn release(self: &Arc<Self>, mut tx: http1::SendRequest<B>) {
        if tx.is_ready() {
            self.put(tx);
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            // an error: the connection closed (an upgrade, an error, a
            // body dropped unread)
            if tx.ready().await.is_ok()
                && let Some(pool) = pool.upgrade()
            {
                pool.put(tx);
            }
        });
    }

    fn put(self: &Arc<Self>, tx: http1::SendRequest<B>) {
        self.reaper.call_once(|| {
            tokio::spawn(reap(Arc::downgrade(self)));
        });
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            // the least recently used goes
            idle.remove(0);
        }
        idle.push(Idle {
            tx,
            since: Instant::now(),
        });
    }

    /// Drops the connections idle longer than `max` or closed.
    fn evict(&self, max: Duration) {
        let now = Instant::now();
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.retain(|i| now.duration_since(i.since) < max && !i.tx.is_closed());
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |i| i.len())
    }
}

/// Closes a pool's stale idle connections now and then, until the pool is
/// gone.
async fn reap<B>(pool: Weak<Pool<B>>)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<SendError>,
{
    let mut tick = tokio::time::interval(IDLE_TIMEOUT / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.evict(IDLE_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    type Body = Empty<bytes::Bytes>;

    fn pool(port: u16) -> Arc<Pool<Body>> {
        let connector = crate::http::client::upstream_connector(Duration::from_secs(2)).unwrap();
        Pool::new(
            connector,
            format!("http://127.0.0.1:{port}/").parse().unwrap(),
        )
    }

    fn get() -> Request<Body> {
        Request::builder()
            .uri("/")
            .header("host", "u")
            .body(Empty::new())
            .unwrap()
    }

    /// An upstream answering each request head with `204`, counting the
    /// connections it accepted; each connection closes after `per_conn`
    /// requests (without a `Connection: close`, as an idle timeout does).
    async fn upstream(per_conn: usize) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        if s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_is_read() {
        let (port, accepted) = upstream(usize::MAX).await;
        let p = pool(port);
        for _ in 0..5 {
            let resp = p.send(get()).await.unwrap();
            assert_eq!(resp.status(), 204);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(p.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
        let (port, accepted) = upstream(1).await;
        let p = pool(port);
        for _ in 0..3 {
            let resp = p.send(get()).await.unwrap();
            assert_eq!(resp.status(), 204);
            // the upstream's close reaches hyper's connection task
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_are_capped_and_stale_ones_evicted() {
        let (port, _accepted) = upstream(usize::MAX).await;
        let p = pool(port);
        let sends: Vec<_> = (0..MAX_IDLE + 8).map(|_| p.send(get())).collect();
        for r in futures_util::future::join_all(sends).await {
            assert_eq!(r.unwrap().status(), 204);
        }
        assert!(p.idle_count() <= MAX_IDLE, "{}", p.idle_count());
        assert!(p.idle_count() > 0);
        p.evict(Duration::from_secs(3600));
        assert!(p.idle_count() > 0);
        p.evict(Duration::ZERO);
        assert_eq!(p.idle_count(), 0);
    }

    #[tokio::test]
    async fn an_upstream_that_refuses_is_an_error_not_a_hang() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        assert!(pool(port).send(get()).await.is_err());
    }
}
