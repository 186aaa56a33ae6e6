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
    let mut seen = Seen::new(source.fingerprint());
    let server = Server::start(config, listener).await?;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Reload) => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let now = source.fingerprint();
                    let outcome = reload(&server, &source).await;
                    seen.record(now, matches!(outcome, ReloadOutcome::Applied { .. }));
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
                if seen.should_reload(now) {
                    tracing::info!("the configuration file changed: reloading");
                    let outcome = reload(&server, &source).await;
                    seen.record(now, matches!(outcome, ReloadOutcome::Applied { .. }));
                }
            }
        }
    }
}

/// Times a refused reload of the same file content is tried before the
/// poll waits for the next change (a file caught mid-write, or a file it
/// names not there yet, succeeds on a later try; a broken one is not
/// logged every poll forever).
const TRIES: u32 = 3;

/// What the poll knows of the file: the content last applied, and a
/// content whose reload was refused and how often.
#[derive(Debug, Clone, Copy)]
struct Seen {
    applied: Option<[u8; 32]>,
    refused: Option<([u8; 32], u32)>,
}

impl Seen {
    fn new(applied: Option<[u8; 32]>) -> Self {
        Self {
            applied,
            refused: None,
        }
    }

    /// Whether the file, now `now`, is to be reloaded: its content is not
    /// the one applied and has not been refused [`TRIES`] times.
    fn should_reload(&self, now: Option<[u8; 32]>) -> bool {
        let Some(now) = now else { return false };
        Some(now) != self.applied && !matches!(self.refused, Some((r, n)) if r == now && n >= TRIES)
    }

    /// Records the outcome of a reload of the content `now`.
    fn record(&mut self, now: Option<[u8; 32]>, applied: bool) {
        if applied {
            self.applied = now;
            self.refused = None;
        } else if let Some(now) = now {
            let n = match self.refused {
                Some((r, n)) if r == now => n + 1,
                _ => 1,
            };
            self.refused = Some((now, n));
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];
    const C: [u8; 32] = [3; 32];

    // review of issue 12, finding 5: a refused reload was not tried again
    // until the file changed once more
    #[test]
    fn a_refused_reload_is_tried_again_on_the_next_poll_then_left_until_a_change() {
        let mut seen = Seen::new(Some(A));
        assert!(!seen.should_reload(Some(A)), "the content at start");
        assert!(!seen.should_reload(None), "a file that cannot be read");
        for _ in 0..TRIES {
            assert!(
                seen.should_reload(Some(B)),
                "refused content is tried again"
            );
            seen.record(Some(B), false);
        }
        assert!(!seen.should_reload(Some(B)), "not tried forever");
        assert!(!seen.should_reload(Some(A)), "back to the applied content");
        assert!(seen.should_reload(Some(C)), "a change is tried");
        seen.record(Some(C), false);
        assert!(seen.should_reload(Some(B)), "so is a change back");
    }

    #[test]
    fn an_applied_reload_is_not_repeated_until_the_content_changes() {
        let mut seen = Seen::new(Some(A));
        seen.record(Some(B), false);
        seen.record(Some(B), true);
        assert!(!seen.should_reload(Some(B)));
        assert!(seen.should_reload(Some(A)));
        seen.record(None, true);
        assert!(
            seen.should_reload(Some(B)),
            "applied without a file: unknown"
        );
    }
}
