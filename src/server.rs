//! Listeners, TLS, HTTP/1.1 and HTTP/2 (h2c and ALPN), graceful shutdown.
//!
//! Owns: sockets and connections. Knows nothing about cookies or users:
//! every request goes to `router::handle`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, LimitsConfig, TlsConfig};
use crate::http::forwarded::is_trusted;
use crate::limits::{ConnActivity, ConnLimits, CountedIo, Tracked};
use crate::router::{ConnInfo, handle};
use crate::state::AppState;

/// HTTP/2 streams opened and reset by the client before we answered, at
/// most, before the connection is closed (hyper's default, made explicit).
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2 streams we reset for the client's protocol errors, at most.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// Time in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    conns: Arc<ConnLimits>,
    task: Option<JoinHandle<()>>,
    discovery: JoinHandle<()>,
    /// Keeps revocations in sync (and swept) in the background.
    revocations: JoinHandle<()>,
    /// The metrics listener's address, when metrics are on.
    metrics_addr: Option<SocketAddr>,
    /// The server's metrics, when on (kept across configuration reloads).
    metrics: Option<Arc<crate::metrics::Metrics>>,
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
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
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
        let discovery = {
            let state = state.clone();
            tokio::spawn(async move {
                state
                    .provider
                    .discover_until_ready(&state.config, state.idp_http.clone())
                    .await;
            })
        };
        let revocations = tokio::spawn(state.revocations().run());
        let (stop, stopped) = watch::channel(false);
        let limits = &state.config.limits;
        let conns = ConnLimits::new(limits.max_connections, limits.max_connections_per_ip);
        let mut metrics_addr = None;
        if let (Some(listener), Some(metrics)) = (metrics_listener, &metrics) {
            let addr = listener.local_addr().ok();
            let open = {
                let conns = conns.clone();
                Arc::new(move || conns.open())
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
            tls,
            state.clone(),
            conns.clone(),
            stopped,
        ));
        tracing::info!(address = %local_addr, tls = state.config.tls.is_some(), "listening");
        Ok(Self {
            local_addr,
            state,
            stop,
            conns,
            task: Some(task),
            discovery,
            revocations,
            metrics_addr,
            metrics,
        })
    }

    /// Where `/metrics` is served, when `metrics_address` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The server's metrics, when on: a reloaded configuration's state
    /// records into the same ones (`AppState::with_metrics`).
    pub fn metrics(&self) -> Option<&Arc<crate::metrics::Metrics>> {
        self.metrics.as_ref()
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

    /// True once every provider has been discovered and the session store
    /// can vouch for sessions.
    pub fn ready(&self) -> bool {
        self.state.provider.all_ready() && self.state.store_ready()
    }

    /// Stops accepting, lets in-flight requests finish (bounded), returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.discovery.abort();
        self.revocations.abort();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "accept loop ended abnormally");
        }
    }
}

impl Drop for Server {
    /// Dropped without `shutdown`: stop accepting and stop discovery; open
    /// connections are left to finish on their own.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.discovery.abort();
        self.revocations.abort();
    }
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

fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, StartupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(tls.cert_chain.clone(), tls.key.clone_key())?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<AppState>,
    conns: Arc<ConnLimits>,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(http_builder(&state.config.limits));
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
        let state = state.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let stopped = stopped.clone();
        let serving = conns.serving();
        tokio::spawn(async move {
            let _serving = serving;
            let conn = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            let header_timeout = state.config.limits.header_read_timeout;
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            let io = CountedIo::new(TokioIo::new(tls_stream), permit);
                            serve(io, &builder, state, conn, stopped).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_elapsed) => return,
                    }
                }
                None => {
                    let io = CountedIo::new(TokioIo::new(stream), permit);
                    serve(io, &builder, state, conn, stopped).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if !conns.drained(DRAIN_TIMEOUT).await {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// The HTTP/1 and HTTP/2 settings, from `limits`.
fn http_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // the timer is what makes header_read_timeout take effect; it also
        // bounds a keep-alive connection's wait for its next request head
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // a head that does not fit is answered 431
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // CVE-2023-44487 (rapid reset): streams the client opens and resets
        // before we answer, and streams we reset for its errors, are capped
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    builder
}

/// Serves one connection until it ends, is idle too long (no request begun
/// within the header timeout, or none in flight for `idle_timeout`), or the
/// server stops (graceful: in-flight requests finish).
async fn serve<I>(
    io: I,
    builder: &auto::Builder<TokioExecutor>,
    state: Arc<AppState>,
    conn: ConnInfo,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let limits = &state.config.limits;
    let (first_request, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
    let activity = ConnActivity::new();
    let svc = {
        let activity = activity.clone();
        service_fn(move |req| {
            let state = state.clone();
            let guard = activity.begin();
            async move {
                let resp = handle(&state, req, conn).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, guard)))
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(connection);
    let idle = activity.idle(first_request, idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            r = connection.as_mut() => return r,
            () = &mut idle, if !closing => {
                connection.as_mut().graceful_shutdown();
                // nothing is in flight: a peer that will not even take
                // the GOAWAY gets little more time
                return match tokio::time::timeout(first_request, connection.as_mut()).await {
                    Ok(r) => r,
                    Err(_elapsed) => Ok(()),
                };
            }
            _ = stopped.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
