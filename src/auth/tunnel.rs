//! Ending a tunnel with the session that opened it.
//!
//! Owns: watching the session behind a WebSocket (any upgraded
//! connection): the watch ends when the session expires (its expiry is
//! known up front) or is no longer live when re-checked every
//! `websocket_session_check` (signed out, revoked by a back-channel logout,
//! revoked on another replica through Redis).
//! Must not: touch the tunnel. It hands out a `watch::Receiver<bool>` that
//! turns `true` when the session has ended; the proxy, which knows nothing
//! about sessions, closes the tunnel on it.
//!
//! Invariants: the check runs on one task per tunnel that stops as soon as
//! every receiver is dropped (the tunnel closed, or the upgrade never
//! happened). Every re-check asks the live state's store (after a reload,
//! the new one: its cookie secrets, its revocations), never the one the
//! tunnel opened under. A store that cannot answer a re-check keeps the
//! tunnel until the next check (a Redis blip does not cut every open
//! WebSocket), but [`UNAVAILABLE_LIMIT`] failed checks in a row end it:
//! an unanswered question is never an answer for long.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::watch;

use crate::auth::Gate;
use crate::auth::session::store::SessionStore as _;
use crate::auth::session::{now_secs, session_cookie_value};
use crate::config::Config;

/// Re-checks in a row the store could not answer before a tunnel ends.
pub const UNAVAILABLE_LIMIT: u32 = 3;

impl Gate {
    /// Watches the session in `headers` (which the gate just allowed, until
    /// `expires_at`, Unix seconds) for a tunnel about to open on it. The
    /// receiver turns `true`, or its sender is dropped, when the tunnel must
    /// close.
    pub fn watch_session(
        &self,
        config: &Config,
        headers: &HeaderMap,
        expires_at: u64,
    ) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let Some(value) = session_cookie_value(headers, &config.cookie.name) else {
            // no cookie to re-check (cannot happen after an allow): closed
            return rx;
        };
        let value = value.into_owned();
        let live = Arc::clone(&self.live_store);
        let every = config.session_store.tunnel_check;
        tokio::spawn(async move {
            let mut unanswered = 0;
            loop {
                let left = Duration::from_secs(expires_at.saturating_sub(now_secs()));
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(every.min(left)) => {}
                }
                if now_secs() >= expires_at {
                    tracing::debug!("session expired: closing its tunnel");
                    break;
                }
                let store = live.load_full();
                match store.load(&value).await {
                    Ok(Some(_)) => unanswered = 0,
                    Ok(None) => {
                        tracing::debug!("session ended: closing its tunnel");
                        break;
                    }
                    Err(e) => {
                        unanswered += 1;
                        if unanswered >= UNAVAILABLE_LIMIT {
                            tracing::info!(error = %e, "tunnel's session not re-checked {UNAVAILABLE_LIMIT} times in a row: closing its tunnel");
                            break;
                        }
                        tracing::debug!(error = %e, "tunnel's session not re-checked: kept until the next check");
                    }
                }
            }
            let _ = tx.send(true);
        });
        rx
    }
}
