//! `LimitsConfig`: the settings that bound slow and many clients (README,
//! "Limits"). Every value has a safe default; tests use short ones.

use std::time::Duration;

use super::{Problems, RawConfig, parse_duration};

/// Limits on connections, timeouts and login rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Time a client has to send a whole request head (and to finish a TLS
    /// handshake, and to start its first request at all).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut off; the
    /// upstream sees an aborted body.
    pub request_body_idle_timeout: Duration,
    /// Open connections at most, from everyone.
    pub max_connections: usize,
    /// Open connections at most from one client address (IPv6: one /64).
    pub max_connections_per_ip: usize,
    /// Largest request head (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// Concurrent streams on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 keep-alive ping interval.
    pub http2_keepalive_interval: Duration,
    /// Time an HTTP/2 ping has to be answered before the connection closes.
    pub http2_keepalive_timeout: Duration,
    /// Per-client rate limit on `/oauth2/start` and `/oauth2/callback`;
    /// `None`: off.
    pub login_rate_limit: Option<RateLimit>,
}

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed back to back.
    pub burst: u32,
    /// Requests allowed per minute, sustained.
    pub per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_header_bytes: 64 * 1024,
            http2_max_concurrent_streams: 100,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            login_rate_limit: Some(RateLimit {
                burst: DEFAULT_LOGIN_BURST,
                per_minute: DEFAULT_LOGIN_PER_MINUTE,
            }),
        }
    }
}

/// Login requests one client may send back to back, and per minute: far
/// above what a browser sends (two per sign-in), low enough to slow a flood.
const DEFAULT_LOGIN_BURST: u32 = 120;
const DEFAULT_LOGIN_PER_MINUTE: u32 = 120;

/// Smallest `max_header_bytes`: hyper's HTTP/1 read buffer cannot be smaller.
const MIN_HEADER_BYTES: u64 = 8 * 1024;

/// Reads the limits keys; problems are recorded in `p` (the defaults stand
/// in for a bad value, and `p` makes the whole configuration fail).
pub(super) fn build(p: &mut Problems, raw: &RawConfig) -> LimitsConfig {
    let d = LimitsConfig::default();
    let duration = |p: &mut Problems, key: &str, v: Option<&str>, default: Duration| match v {
        None => default,
        Some(s) => p.check(key, parse_duration(s)).unwrap_or(default),
    };
    let count = |p: &mut Problems, key: &str, v: Option<u64>, min: u64, default: usize| match v {
        None => default,
        Some(n) if n < min => {
            p.add(key, format!("must be at least {min}, got {n}"));
            default
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let login_rate_limit = match (
        raw.login_rate_limit_burst.unwrap_or(DEFAULT_LOGIN_BURST),
        raw.login_rate_limit_per_minute
            .unwrap_or(DEFAULT_LOGIN_PER_MINUTE),
    ) {
        (0, _) | (_, 0) => None,
        (burst, per_minute) => Some(RateLimit { burst, per_minute }),
    };
    LimitsConfig {
        header_read_timeout: duration(
            p,
            "header_read_timeout",
            raw.header_read_timeout.as_deref(),
            d.header_read_timeout,
        ),
        idle_timeout: duration(
            p,
            "idle_timeout",
            raw.idle_timeout.as_deref(),
            d.idle_timeout,
        ),
        request_body_idle_timeout: duration(
            p,
            "request_body_idle_timeout",
            raw.request_body_idle_timeout.as_deref(),
            d.request_body_idle_timeout,
        ),
        max_connections: count(
            p,
            "max_connections",
            raw.max_connections,
            1,
            d.max_connections,
        ),
        max_connections_per_ip: count(
            p,
            "max_connections_per_ip",
            raw.max_connections_per_ip,
            1,
            d.max_connections_per_ip,
        ),
        max_header_bytes: count(
            p,
            "max_header_bytes",
            raw.max_header_bytes,
            MIN_HEADER_BYTES,
            d.max_header_bytes,
        ),
        http2_max_concurrent_streams: match raw.http2_max_concurrent_streams {
            None => d.http2_max_concurrent_streams,
            Some(0) => {
                p.add("http2_max_concurrent_streams", "must be at least 1, got 0");
                d.http2_max_concurrent_streams
            }
            Some(n) => n,
        },
        http2_keepalive_interval: duration(
            p,
            "http2_keepalive_interval",
            raw.http2_keepalive_interval.as_deref(),
            d.http2_keepalive_interval,
        ),
        http2_keepalive_timeout: duration(
            p,
            "http2_keepalive_timeout",
            raw.http2_keepalive_timeout.as_deref(),
            d.http2_keepalive_timeout,
        ),
        login_rate_limit,
    }
}
