//! Listeners, TLS, HTTP/1.1 and HTTP/2 (h2c and ALPN), the live state and
//! its reload, graceful shutdown.
//!
//! Owns: sockets and connections, and the swap of the live `AppState` (each
//! request loads it once and keeps it to its end). Knows nothing about
//! cookies or users: every request goes to `router::handle`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::http::forwarded::{IpText, is_trusted};
use crate::limits::ConnLimits;
use crate::router::ConnInfo;
use crate::state::{AppState, Carried};

mod conn;
pub(crate) mod workers;

use conn::{ConnIo, Protocols, serve};
use workers::Workers;

/// HTTP/2 streams opened and reset by the client before we answered, at
/// most, before the connection is closed (hyper's default, made explicit).
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2 streams we reset for the client's protocol errors, at most.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// Time the open WebSocket tunnels get, at the end of a shutdown, to end
/// the frame in flight, send their Close frames and hear the peers' replies.
const TUNNEL_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why gatehouse could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The cookie key could not be built.
    #[error("cookie: {0}")]
    Cookie(String),
    /// The Redis client could not be built.
    #[error("{0}")]
    Redis(String),
    /// The trace exporter could not be built.
    #[error("{0}")]
    Tracing(String),
    /// The connection workers' threads or runtimes could not be started.
    #[error("cannot start the connection workers: {0}")]
    Workers(std::io::Error),
    /// The metrics address could not be bound.
    #[error("metrics_address: cannot listen on {addr}: {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running gatehouse.
pub struct Server {
    local_addr: SocketAddr,
    /// The live state: each request loads it once and keeps what it got;
    /// a reload swaps in a new one.
    live: Arc<ArcSwap<AppState>>,
    /// The TLS settings the acceptor uses, re-read at each reload.
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    stop: watch::Sender<bool>,
    conns: Arc<ConnLimits>,
    task: Option<JoinHandle<()>>,
    background: std::sync::Mutex<Background>,
    reloads: ReloadCounts,
    /// The metrics listener's address, when metrics are on.
    metrics_addr: Option<SocketAddr>,
    /// The server's metrics, when on (kept across configuration reloads).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The background tasks of the live state.
struct Background {
    discovery: JoinHandle<()>,
    /// Keeps revocations in sync (and swept) in the background.
    revocations: JoinHandle<()>,
}

impl Background {
    fn abort(&self) {
        self.discovery.abort();
        self.revocations.abort();
    }
}

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is live.
    Applied {
        /// What was kept from the running state.
        carried: Carried,
        /// Changed settings that take effect only at a restart.
        not_live: Vec<&'static str>,
    },
    /// The running configuration is kept; every problem found.
    Refused {
        /// Each as `key: reason`.
        problems: Vec<String>,
    },
}

/// Reloads applied and refused since start (for a metric; see
/// [`Server::reload_counts`]).
#[derive(Debug, Default)]
struct ReloadCounts {
    applied: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
}

impl Server {
    /// Starts serving on an already-bound listener (tests bind port 0 and
    /// learn the port first). Discovery runs in the background.
    pub async fn start(
        config: Config,
        listener: std::net::TcpListener,
    ) -> Result<Self, StartupError> {
        let addr = config.http_address;
        listener
            .set_nonblocking(true)
            .map_err(|source| StartupError::Bind { addr, source })?;
        let listener = TcpListener::from_std(listener)
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let tls = config
            .tls
            .as_ref()
            .map(tls_server_config)
            .transpose()?
            .map(|c| Arc::new(ArcSwap::new(c)));
        // before anything is spawned: a failed start leaves nothing running
        let workers = Workers::start().map_err(StartupError::Workers)?;
        // bound before anything runs: a bad address fails the start
        let metrics_listener = config
            .metrics_address
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        TcpListener::from_std(l)
                    })
                    .map_err(|source| StartupError::MetricsBind { addr, source })
            })
            .transpose()?;
        let metrics = metrics_listener
            .is_some()
            .then(|| Arc::new(crate::metrics::Metrics::new()));
        let state = Arc::new(AppState::with_metrics(config, metrics.as_ref())?);
        let background = Background {
            discovery: spawn_discovery(&state),
            revocations: tokio::spawn(state.revocations().run()),
        };
        let (stop, stopped) = watch::channel(false);
        let limits = &state.config.limits;
        let conns = ConnLimits::new(limits.max_connections, limits.max_connections_per_ip);
        let protocols = Arc::new(Protocols::new(limits));
        let live = Arc::new(ArcSwap::new(state.clone()));
        let mut metrics_addr = None;
        if let (Some(listener), Some(metrics)) = (metrics_listener, &metrics) {
            let addr = listener.local_addr().ok();
            let open = {
                let conns = conns.clone();
                Arc::new(move || crate::metrics::ConnCounts {
                    open: conns.open(),
                    parked: conns.parked(),
                })
            };
            tokio::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
                open,
                stopped.clone(),
            ));
            if let Some(addr) = addr {
                tracing::info!(address = %addr, "serving metrics at /metrics");
            }
            metrics_addr = addr;
        }
        let task = tokio::spawn(accept_loop(
            listener,
            workers,
            tls.clone(),
            live.clone(),
            protocols,
            conns.clone(),
            stopped,
        ));
        tracing::info!(address = %local_addr, tls = state.config.tls.is_some(), "listening");
        Ok(Self {
            local_addr,
            live,
            tls,
            stop,
            conns,
            task: Some(task),
            background: std::sync::Mutex::new(background),
            reloads: ReloadCounts::default(),
            metrics_addr,
            metrics,
        })
    }

    /// Where `/metrics` is served, when `metrics_address` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The server's metrics, when on: a reloaded configuration's state
    /// records into the same ones.
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// The live state (what a request starting now would use).
    pub fn state(&self) -> Arc<AppState> {
        self.live.load_full()
    }

    /// Applies a reloaded configuration: `loaded` is what `Config::load`
    /// gave. A valid one builds a new state, keeping what must survive (see
    /// [`AppState::reloaded`]), and swaps it in at once: requests in flight
    /// finish on the old one. An invalid one is refused and every problem
    /// logged; the running configuration stays. Either way it is counted.
    pub fn reload(&self, loaded: Result<Config, crate::config::ConfigError>) -> ReloadOutcome {
        let outcome = self.try_reload(loaded);
        match &outcome {
            ReloadOutcome::Applied { carried, not_live } => {
                self.reloads.applied.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.config_reload(true);
                }
                tracing::info!(
                    providers_kept = ?carried.providers,
                    providers_to_discover = ?carried.rediscover,
                    session_store_kept = carried.store,
                    login_rate_limiter_kept = carried.login_limiter,
                    "configuration reloaded"
                );
                if !not_live.is_empty() {
                    tracing::warn!(
                        settings = %not_live.join(", "),
                        "configuration reloaded, but these changed settings take effect only at a restart"
                    );
                }
            }
            ReloadOutcome::Refused { problems } => {
                self.reloads.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &self.metrics {
                    m.config_reload(false);
                }
                for p in problems {
                    tracing::error!(
                        problem = %crate::telemetry::escape_log(p),
                        "configuration reload refused: the running configuration is kept"
                    );
                }
            }
        }
        outcome
    }

    fn try_reload(&self, loaded: Result<Config, crate::config::ConfigError>) -> ReloadOutcome {
        let config = match loaded {
            Ok(c) => c,
            Err(e) => {
                return ReloadOutcome::Refused {
                    problems: e
                        .problems
                        .iter()
                        .map(|p| format!("{}: {}", p.key, p.reason))
                        .collect(),
                };
            }
        };
        let refused = |why: String| ReloadOutcome::Refused {
            problems: vec![why],
        };
        let old = self.live.load_full();
        let not_live = not_live(&old.config, &config);
        let tls = match (&self.tls, &config.tls) {
            (Some(live), Some(tls)) => match tls_server_config(tls) {
                Ok(c) => Some((live, c)),
                Err(e) => return refused(format!("tls_cert_file: {e}")),
            },
            _ => None,
        };
        let (state, carried) = match AppState::reloaded(config, &old) {
            Ok(built) => built,
            Err(e) => return refused(e.to_string()),
        };
        let state = Arc::new(state);
        if let Some((live, c)) = tls {
            live.store(c);
        }
        self.live.store(state.clone());
        // tunnels opened before now re-check against the new store
        state.gate.go_live();
        if let Ok(mut bg) = self.background.lock() {
            bg.discovery.abort();
            bg.discovery = spawn_discovery(&state);
            if !Arc::ptr_eq(&old.revocations(), &state.revocations()) {
                bg.revocations.abort();
                bg.revocations = tokio::spawn(state.revocations().run());
            }
        }
        ReloadOutcome::Applied { carried, not_live }
    }

    /// Reloads applied and refused since start: `(applied, refused)`.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads.applied.load(Ordering::Relaxed),
            self.reloads.refused.load(Ordering::Relaxed),
        )
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now (each holds a place under the connection
    /// limits until it is closed).
    pub fn open_connections(&self) -> usize {
        self.conns.open()
    }

    /// Of those, HTTP/1 connections parked between requests (holding no
    /// HTTP buffers).
    pub fn parked_connections(&self) -> usize {
        self.conns.parked()
    }

    /// True once every provider has been discovered and the session store
    /// can vouch for sessions.
    pub fn ready(&self) -> bool {
        let state = self.live.load();
        !state.lifecycle.draining() && state.provider.all_ready() && state.store_ready()
    }

    /// Stops accepting, lets in-flight requests finish (within
    /// `shutdown_timeout`), closes the WebSocket tunnels, returns.
    pub async fn shutdown(self) {
        self.drain(false).await;
    }

    /// Shuts down as at SIGTERM (`grace`) or SIGINT: `/ready` answers 503
    /// at once; with `grace`, new connections are still served for
    /// `shutdown_grace_period`; then the listener closes, idle keep-alive
    /// connections are closed, in-flight requests get `shutdown_timeout` to
    /// finish, and the open WebSocket tunnels are closed with a Close frame.
    pub async fn drain(self, grace: bool) {
        self.drain_or_hurry(grace, std::future::pending()).await;
    }

    /// [`Server::drain`], where `hurry` ending cuts the grace period short
    /// (a second signal).
    pub async fn drain_or_hurry(mut self, grace: bool, hurry: impl Future<Output = ()>) {
        let state = self.live.load_full();
        state.lifecycle.start_draining();
        let shutdown = state.config.shutdown;
        if grace && !shutdown.grace_period.is_zero() {
            tracing::info!(
                grace_period = ?shutdown.grace_period,
                "shutting down: /ready answers 503; still serving during the grace period"
            );
            tokio::select! {
                () = tokio::time::sleep(shutdown.grace_period) => {}
                () = hurry => tracing::info!("grace period cut short"),
            }
        }
        tracing::info!(timeout = ?shutdown.timeout, "shutting down: listener closed, in-flight requests finishing");
        let _ = self.stop.send(true);
        if let Ok(bg) = self.background.lock() {
            bg.abort();
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "accept loop ended abnormally");
        }
        if !self.conns.drained(shutdown.timeout).await {
            tracing::warn!(
                "in-flight requests did not finish within shutdown_timeout ({:?})",
                shutdown.timeout
            );
        }
        let tunnels = &state.lifecycle.tunnels;
        if tunnels.open() > 0 {
            tracing::info!(open = tunnels.open(), "closing WebSocket tunnels");
        }
        tunnels.close_all();
        if !tunnels.closed(TUNNEL_CLOSE_TIMEOUT).await {
            tracing::warn!("WebSocket tunnels did not close within {TUNNEL_CLOSE_TIMEOUT:?}");
        }
        // the spans of the last requests go out before we return
        state.tracing.shutdown().await;
    }
}

impl Drop for Server {
    /// Dropped without `shutdown`: stop accepting and stop discovery; open
    /// connections are left to finish on their own.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Ok(bg) = self.background.lock() {
            bg.abort();
        }
    }
}

/// Discovers, in the background, the providers of `state` not discovered yet.
fn spawn_discovery(state: &Arc<AppState>) -> JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        state
            .provider
            .discover_until_ready(&state.config, state.idp_http.clone())
            .await;
    })
}

/// The settings changed from `old` to `new` that a reload cannot apply:
/// the listener, its connection limits and protocol settings, TLS turned on
/// or off, and logging (set up once at start).
pub fn not_live(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.limits, &new.limits);
    [
        ("http_address", old.http_address != new.http_address),
        (
            "metrics_address",
            old.metrics_address != new.metrics_address,
        ),
        (
            "tls_cert_file (TLS turned on or off)",
            old.tls.is_some() != new.tls.is_some(),
        ),
        ("max_connections", a.max_connections != b.max_connections),
        (
            "max_connections_per_ip",
            a.max_connections_per_ip != b.max_connections_per_ip,
        ),
        (
            "header_read_timeout",
            a.header_read_timeout != b.header_read_timeout,
        ),
        ("max_header_bytes", a.max_header_bytes != b.max_header_bytes),
        (
            "http2_max_concurrent_streams",
            a.http2_max_concurrent_streams != b.http2_max_concurrent_streams,
        ),
        (
            "http2_keepalive_interval",
            a.http2_keepalive_interval != b.http2_keepalive_interval,
        ),
        (
            "http2_keepalive_timeout",
            a.http2_keepalive_timeout != b.http2_keepalive_timeout,
        ),
        ("log_format", old.log_format != new.log_format),
        ("log_level", old.log_level != new.log_level),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// Binds `config.http_address` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartupError> {
    let addr = config.http_address;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let server = Server::start(config, listener).await?;
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

fn tls_server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, StartupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(tls.cert_chain.clone(), tls.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts until `stopped`, handing each connection to a worker. Ends by
/// dropping `workers`: each then finishes the connections it has.
async fn accept_loop(
    listener: TcpListener,
    workers: Workers,
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    live: Arc<ArcSwap<AppState>>,
    protocols: Arc<Protocols>,
    conns: Arc<ConnLimits>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        // the connection's settings are the live state's as it opens
        let state = live.load_full();
        // decided here, before any byte is read: over a limit, the socket
        // is closed at once
        let per_ip = !is_trusted(peer.ip(), &state.config.trusted_proxies);
        let permit = match conns.try_acquire(peer.ip(), per_ip) {
            Ok(permit) => permit,
            Err(why) => {
                conns.refused(why, peer.ip());
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // taken off this runtime's poller, registered with the worker's
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let live = live.clone();
        let protocols = protocols.clone();
        let tls = tls.as_ref().map(|c| TlsAcceptor::from(c.load_full()));
        let stopped = stopped.clone();
        let serving = conns.serving();
        let conns = conns.clone();
        workers.spawn(move |open| async move {
            let _serving = serving;
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot serve the connection on a worker");
                    return;
                }
            };
            let conn = ConnInfo {
                peer,
                peer_text: IpText::new(peer.ip()),
                tls: tls.is_some(),
            };
            let header_timeout = state.config.limits.header_read_timeout;
            // the TLS handshake and a TLS connection's state (rustls's
            // connection, several KiB) are boxed: inline, they sized every
            // connection's task, a plain one's too, at about 12 KiB
            let result = match tls {
                Some(acceptor) => {
                    let handshake = Box::pin(acceptor.accept(stream));
                    match tokio::time::timeout(header_timeout, handshake).await {
                        Ok(Ok(tls_stream)) => {
                            let io = ConnIo::new(TokioIo::new(tls_stream), permit, open);
                            Box::pin(serve(io, &protocols, &state, live, conn, &conns, stopped))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_elapsed) => return,
                    }
                }
                None => {
                    let io = ConnIo::new(TokioIo::new(stream), permit, open);
                    serve(io, &protocols, &state, live, conn, &conns, stopped).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
}
