//! One refresh per session across replicas that share Redis.
//!
//! Owns: the lock and the result a replica leaves for the others when it
//! redeems a session's refresh token. A rotating provider accepts a refresh
//! token once: two replicas that see the same stale session at the same
//! moment must not both redeem it. The first takes a lock
//! (`SET NX PX`), redeems, and leaves the outcome; the others wait for it
//! and use it.
//! Must not: leave anything in Redis that a dump could use. Lock and result
//! names are hashes of the refresh token; the result is sealed with a key
//! derived from the refresh token too, which only holders of the old session
//! know.

use std::future::Future;
use std::time::Duration;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::auth::oidc::RefreshError;
use crate::auth::session::{Session, hex, open_with, seal_with};
use crate::redis_conn::RedisConn;

/// Longest a lock is held: above the provider client's timeout.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How long a result is kept for latecomers with the old cookie.
const RESULT_TTL: Duration = Duration::from_secs(120);
/// How often a waiting replica looks for the result.
const WAIT_STEP: Duration = Duration::from_millis(50);

const OK_TAG: u8 = 1;
const REJECTED_TAG: u8 = 0;

/// Refresh coordination through Redis.
pub struct SharedRefresh {
    conn: RedisConn,
    prefix: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SharedRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRefresh").finish_non_exhaustive()
    }
}

struct Names {
    lock: String,
    result: String,
    key: [u8; 32],
}

impl SharedRefresh {
    /// Coordination under keys starting with `prefix`.
    pub fn new(conn: RedisConn, prefix: String) -> Self {
        Self {
            conn,
            prefix,
            rng: SystemRandom::new(),
        }
    }

    fn names(&self, refresh_token: &str) -> Names {
        let derive = |label: &[u8]| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(label);
            ctx.update(&[0]);
            ctx.update(refresh_token.as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        };
        let id = derive(b"gatehouse refresh id");
        let hex = hex(&id);
        Names {
            lock: format!("{}rl:{hex}", self.prefix),
            result: format!("{}rr:{hex}", self.prefix),
            key: derive(b"gatehouse refresh key"),
        }
    }

    /// Refreshes `session` once across replicas: `redeem` runs here only if
    /// no other replica is redeeming or has redeemed the same refresh token.
    pub async fn refresh<F, Fut>(
        &self,
        session: &Session,
        redeem: F,
    ) -> Result<Session, RefreshError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Session, RefreshError>>,
    {
        let Some(token) = session.identity.tokens.refresh_token.as_ref() else {
            return Err(RefreshError::Rejected("no refresh token".to_owned()));
        };
        let names = self.names(token.expose());
        if let Some(done) = self.result(&names, session).await? {
            return done;
        }
        let mut mark = [0u8; 16];
        self.rng
            .fill(&mut mark)
            .map_err(|_e| RefreshError::Unavailable("random number generator failed".to_owned()))?;
        let took: Option<String> = self
            .conn
            .query(
                redis::cmd("SET")
                    .arg(&names.lock)
                    .arg(&mark[..])
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(LOCK_TTL)),
            )
            .await
            .map_err(unavailable)?;
        if took.is_some() {
            // the winner may have finished between our look and our lock
            let outcome = match self.result(&names, session).await {
                Ok(Some(done)) => done,
                Ok(None) => redeem().await,
                Err(e) => Err(e),
            };
            let sealed = match &outcome {
                Ok(fresh) => fresh.to_bytes().and_then(|b| self.seal(&names, OK_TAG, &b)),
                Err(RefreshError::Rejected(why)) => self.seal(&names, REJECTED_TAG, why.as_bytes()),
                // nothing to share: the next one to try redeems again
                Err(RefreshError::Unavailable(_)) => None,
            };
            if let Some(sealed) = sealed
                && let Err(e) = self
                    .conn
                    .query::<()>(
                        redis::cmd("SET")
                            .arg(&names.result)
                            .arg(sealed)
                            .arg("PX")
                            .arg(millis(RESULT_TTL)),
                    )
                    .await
            {
                tracing::warn!(error = %e, "refresh result not shared: redis unreachable");
            }
            if let Err(e) = self
                .conn
                .query::<()>(redis::cmd("DEL").arg(&names.lock))
                .await
            {
                tracing::debug!(error = %e, "refresh lock left to expire");
            }
            return outcome;
        }
        // another replica is redeeming: wait for its outcome
        let deadline = tokio::time::Instant::now() + LOCK_TTL;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(WAIT_STEP).await;
            if let Some(done) = self.result(&names, session).await? {
                return done;
            }
            let held: bool = self
                .conn
                .query(redis::cmd("EXISTS").arg(&names.lock))
                .await
                .map_err(unavailable)?;
            if !held {
                if let Some(done) = self.result(&names, session).await? {
                    return done;
                }
                break;
            }
        }
        Err(RefreshError::Unavailable(
            "the refresh made by another replica gave no result".to_owned(),
        ))
    }

    /// The outcome another replica left, if any.
    async fn result(
        &self,
        names: &Names,
        session: &Session,
    ) -> Result<Option<Result<Session, RefreshError>>, RefreshError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .query(redis::cmd("GET").arg(&names.result))
            .await
            .map_err(unavailable)?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Some((tag, plain)) = open(&names.key, &sealed) else {
            return Ok(None);
        };
        Ok(Some(match tag {
            OK_TAG => match Session::from_bytes(&plain) {
                Some(mut fresh) if fresh.id == session.id => {
                    fresh.secret.clone_from(&session.secret);
                    Ok(fresh)
                }
                _ => Err(RefreshError::Rejected(
                    "the shared refresh result is not this session's".to_owned(),
                )),
            },
            _ => Err(RefreshError::Rejected(
                String::from_utf8_lossy(&plain).into_owned(),
            )),
        }))
    }

    fn seal(&self, names: &Names, tag: u8, plain: &[u8]) -> Option<Vec<u8>> {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &names.key).ok()?);
        let sealed = seal_with(&key, &self.rng, &[tag], plain)?;
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(tag);
        out.extend_from_slice(&sealed);
        Some(out)
    }
}

/// The tag and plaintext of a sealed result; the tag is bound as associated
/// data, so it cannot be flipped.
fn open(key: &[u8; 32], sealed: &[u8]) -> Option<(u8, Vec<u8>)> {
    let (&tag, rest) = sealed.split_first()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    Some((tag, open_with(&key, &[tag], rest)?))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as map_err(unavailable), which passes the error by value"
)]
fn unavailable(e: crate::redis_conn::RedisError) -> RefreshError {
    RefreshError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests;
