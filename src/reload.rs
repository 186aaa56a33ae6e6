//! Reloading the configuration and stopping: what triggers them.
//!
//! Owns: where the configuration comes from at each reload (the file given
//! at start, read again, under the flags and env vars given at start, which
//! are kept as they were), noticing that the file's content changed (a hash
//! of its bytes, polled: this works with editors that write a new file and
//! rename it over the old one, and with Kubernetes ConfigMap symlink swaps),
//! and turning SIGHUP, SIGTERM and SIGINT into a reload or a shutdown.
//! Must not: build or swap state ([`Server::reload`] does), or judge a
//! configuration (`Config::load` does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, RawConfig};
use crate::server::{ReloadOutcome, Server, StartupError};

/// How often the config file is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where the configuration comes from: the file, and the flags and env vars
/// given at start (above the file, as at start).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    cli: RawConfig,
}

impl ConfigSource {
    /// The `--config` file (if any) and the settings from flags and env.
    pub fn new(file: Option<PathBuf>, cli: RawConfig) -> Self {
        Self { file, cli }
    }

    /// Reads and validates the configuration again.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.file.as_deref(), self.cli.clone())
    }

    /// A hash of the file's bytes; `None` without a file, or while it
    /// cannot be read (in the middle of a replace, say).
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        let bytes = std::fs::read(self.file.as_ref()?).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Some(out)
    }
}

/// What the process was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGTERM: drain, with the grace period.
    Terminate,
    /// SIGINT (Ctrl-C): drain without the grace period.
    Interrupt,
}

/// Binds `config.http_address` and serves, reloading from `source` on
/// [`Event::Reload`] and whenever the file's content changes (checked every
/// `poll`), until [`Event::Terminate`] or [`Event::Interrupt`] (or the
/// sender is dropped), then drains.
pub async fn serve(
    config: Config,
    source: ConfigSource,
    mut events: mpsc::Receiver<Event>,
    poll: Duration,
) -> Result<(), StartupError> {
    let addr = config.http_address;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let source = Arc::new(source);
    let mut seen = source.fingerprint();
    let server = Server::start(config, listener).await?;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Reload) => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    seen = source.fingerprint();
                    reload(&server, &source).await;
                }
                Some(Event::Terminate) => {
                    tracing::info!("SIGTERM: shutting down");
                    // a second SIGTERM or a SIGINT ends the grace period
                    let hurry = async {
                        while let Some(Event::Reload) = events.recv().await {}
                    };
                    server.drain_or_hurry(true, hurry).await;
                    return Ok(());
                }
                Some(Event::Interrupt) | None => {
                    tracing::info!("shutting down");
                    server.drain(false).await;
                    return Ok(());
                }
            },
            _ = tick.tick(), if source.file.is_some() => {
                let now = source.fingerprint();
                if now.is_some() && now != seen {
                    seen = now;
                    tracing::info!("the configuration file changed: reloading");
                    reload(&server, &source).await;
                }
            }
        }
    }
}

/// Loads the configuration off the async threads (it reads files) and
/// hands it to the server.
async fn reload(server: &Server, source: &Arc<ConfigSource>) -> ReloadOutcome {
    let source = Arc::clone(source);
    let loaded = match tokio::task::spawn_blocking(move || source.load()).await {
        Ok(loaded) => loaded,
        Err(e) => Err(ConfigError {
            problems: vec![crate::config::Problem {
                key: "config".to_owned(),
                reason: format!("reading the configuration failed: {e}"),
            }],
        }),
    };
    server.reload(loaded)
}
