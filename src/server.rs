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
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};
use crate::router::{ConnInfo, handle};
use crate::state::AppState;

/// Time a client has to send a request head, and to finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
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
}

/// A running gatehouse.
pub struct Server {
    local_addr: SocketAddr,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    discovery: JoinHandle<()>,
    /// Keeps revocations in sync (and swept) in the background.
    revocations: JoinHandle<()>,
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
        let state = Arc::new(AppState::new(config)?);
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
        let task = tokio::spawn(accept_loop(listener, tls, state.clone(), stopped));
        tracing::info!(address = %local_addr, tls = state.config.tls.is_some(), "listening");
        Ok(Self {
            local_addr,
            state,
            stop,
            task: Some(task),
            discovery,
            revocations,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// True once the provider has been discovered and the session store
    /// can vouch for sessions.
    pub fn ready(&self) -> bool {
        self.state.provider.get().is_some() && self.state.store_ready()
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
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
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
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = ConnInfo {
                peer,
                tls: tls.is_some(),
            };
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, conn).await) }
            });
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            watcher
                                .watch(
                                    builder
                                        .serve_connection_with_upgrades(
                                            TokioIo::new(tls_stream),
                                            svc,
                                        )
                                        .into_owned(),
                                )
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
                    watcher
                        .watch(
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                                .into_owned(),
                        )
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}");
    }
}
