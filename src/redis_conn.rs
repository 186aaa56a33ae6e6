//! The connection to Redis: standalone, Sentinel or Cluster, one shape.
//!
//! Owns: building the `redis` crate's clients from [`RedisConfig`], the
//! bounded timeout every command runs under, and following a Sentinel
//! failover (on an error the master is looked up again).
//! Must not: know what is stored. Keys are built by the callers, which never
//! put request data into a key unhashed.
//!
//! Every command either answers within [`COMMAND_TIMEOUT`] or fails: callers
//! turn a failure into "store unavailable" (closed), never into an allow.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, FromRedisValue, RedisConnectionInfo};

use crate::config::{RedisConfig, RedisTopology};

/// Longest wait for one command, connecting included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a Redis command did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// No answer within [`COMMAND_TIMEOUT`].
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The client or server reported an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A shared, cheaply cloned handle to Redis.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").finish_non_exhaustive()
    }
}

enum Inner {
    /// Reconnects by itself.
    Single(ConnectionManager),
    /// Connected on first use; the cluster connection follows slot moves.
    Cluster {
        client: redis::cluster::ClusterClient,
        conn: ArcSwapOption<ClusterConnection>,
        connecting: tokio::sync::Mutex<()>,
    },
    /// The master named by the sentinels; looked up again after an error.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        conn: ArcSwapOption<MultiplexedConnection>,
    },
}

impl RedisConn {
    /// Builds the client; no connection is made until the first command.
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let password = cfg.password.as_ref().map(|p| p.expose().to_owned());
        let inner = match &cfg.topology {
            RedisTopology::Single(url) => {
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| format!("redis_connection_url: {e}"))?;
                if let Some(p) = &password {
                    let redis = info.redis_settings().clone().set_password(p);
                    info = info.set_redis_settings(redis);
                }
                let client =
                    redis::Client::open(info).map_err(|e| format!("redis_connection_url: {e}"))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(COMMAND_TIMEOUT))
                    .set_response_timeout(Some(COMMAND_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Inner::Single(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(|e| format!("redis_connection_url: {e}"))?,
                )
            }
            RedisTopology::Cluster(urls) => {
                let mut b = redis::cluster::ClusterClient::builder(
                    urls.iter().map(url::Url::as_str).collect::<Vec<_>>(),
                )
                .connection_timeout(COMMAND_TIMEOUT)
                .response_timeout(COMMAND_TIMEOUT);
                if let Some(p) = &password {
                    b = b.password(p.clone());
                }
                Inner::Cluster {
                    client: b
                        .build()
                        .map_err(|e| format!("redis_cluster_connection_urls: {e}"))?,
                    conn: ArcSwapOption::empty(),
                    connecting: tokio::sync::Mutex::new(()),
                }
            }
            RedisTopology::Sentinel { master, urls } => {
                let mut node = SentinelNodeConnectionInfo::default();
                if let Some(p) = &password {
                    node = node
                        .set_redis_connection_info(RedisConnectionInfo::default().set_password(p));
                }
                let client = SentinelClient::build(
                    urls.iter().map(url::Url::as_str).collect::<Vec<_>>(),
                    master.as_str(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|e| format!("redis_sentinel_connection_urls: {e}"))?;
                Inner::Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    conn: ArcSwapOption::empty(),
                }
            }
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Runs one command under [`COMMAND_TIMEOUT`].
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.query_inner(cmd)).await {
            Ok(r) => r,
            Err(_elapsed) => {
                self.forget_connection();
                Err(RedisError::Timeout(COMMAND_TIMEOUT))
            }
        }
    }

    async fn query_inner<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        match &*self.inner {
            Inner::Single(m) => {
                let mut m = m.clone();
                Ok(cmd.query_async(&mut m).await?)
            }
            Inner::Cluster {
                client,
                conn,
                connecting,
            } => {
                let mut c = match conn.load_full() {
                    Some(c) => (*c).clone(),
                    None => {
                        let _one = connecting.lock().await;
                        match conn.load_full() {
                            Some(c) => (*c).clone(),
                            None => {
                                let c = client.get_async_connection().await?;
                                conn.store(Some(Arc::new(c.clone())));
                                c
                            }
                        }
                    }
                };
                Ok(cmd.query_async(&mut c).await?)
            }
            Inner::Sentinel { client, conn } => {
                let mut c = match conn.load_full() {
                    Some(c) => (*c).clone(),
                    None => {
                        let mut client = client.lock().await;
                        match conn.load_full() {
                            Some(c) => (*c).clone(),
                            None => {
                                let c = client.get_async_connection().await?;
                                conn.store(Some(Arc::new(c.clone())));
                                c
                            }
                        }
                    }
                };
                let r = cmd.query_async(&mut c).await;
                if let Err(e) = &r
                    && (e.is_io_error()
                        || e.is_connection_dropped()
                        || e.is_timeout()
                        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
                {
                    // the master moved or went away: ask the sentinels again
                    conn.store(None);
                }
                Ok(r?)
            }
        }
    }

    /// Drops a connection that timed out, so the next command makes a new
    /// one (the connection manager reconnects by itself).
    fn forget_connection(&self) {
        match &*self.inner {
            Inner::Single(_) => {}
            Inner::Cluster { conn, .. } => conn.store(None),
            Inner::Sentinel { conn, .. } => conn.store(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
