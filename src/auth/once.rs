//! One-time use: remembers values that may be redeemed once (a login's
//! `state`, a logout token's `jti`), here and, with Redis, on every replica.
//!
//! Owns: the consumed-value set, one namespace per use, each with a TTL
//! longer than the value stays acceptable elsewhere.
//! Must not: store the values themselves. Keys are SHA-256 digests, so
//! request data never reaches Redis unhashed.
//!
//! Invariant: [`OnceGuard::first_use`] answers `Ok(true)` at most once per
//! value and namespace within the TTL. When the shared set cannot be asked
//! it answers `Err`, and callers fail closed (never redeem).

use std::time::Duration;

use crate::redis_conn::RedisConn;

/// Remembers used values of one kind (in Redis when configured, so a value
/// replayed to another replica is refused too).
pub struct OnceGuard {
    local: moka::future::Cache<[u8; 32], ()>,
    redis: Option<(RedisConn, String)>,
    namespace: &'static str,
    ttl: Duration,
}

impl std::fmt::Debug for OnceGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceGuard")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl OnceGuard {
    /// A guard for `namespace` (`jti`, `state`) remembering values for
    /// `ttl`; with Redis, keys are `<prefix><namespace>:<hex digest>`.
    pub fn new(
        redis: Option<RedisConn>,
        prefix: &str,
        namespace: &'static str,
        ttl: Duration,
    ) -> Self {
        Self {
            local: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            redis: redis.map(|c| (c, prefix.to_owned())),
            namespace,
            ttl,
        }
    }

    /// True the first time the value made of `parts` is seen; false for a
    /// replay. Fails when the shared guard cannot be asked.
    pub async fn first_use(&self, parts: &[&str]) -> Result<bool, String> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                ctx.update(&[0]);
            }
            ctx.update(p.as_bytes());
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let entry = self.local.entry(key).or_insert(()).await;
        if !entry.is_fresh() {
            return Ok(false);
        }
        let Some((conn, prefix)) = &self.redis else {
            return Ok(true);
        };
        let hex = crate::auth::session::hex(&key);
        let set: Option<String> = conn
            .query(
                redis::cmd("SET")
                    .arg(format!("{prefix}{}:{hex}", self.namespace))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(self.ttl.as_secs().max(1)),
            )
            .await
            .map_err(|e| {
                // not seen after all: a retry may go through once Redis answers
                let local = self.local.clone();
                tokio::spawn(async move { local.invalidate(&key).await });
                e.to_string()
            })?;
        Ok(set.is_some())
    }
}

#[cfg(test)]
mod tests;
