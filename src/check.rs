//! `--check-config`'s probes: what gatehouse will talk to, asked once
//! whether it answers. Every provider's discovery (or configured endpoints),
//! its JWKS (fetched and parsed) and its token endpoint (reachable: a
//! request without credentials, answered 400 or 401); every upstream (a
//! connection and a `GET /`, any status); Redis when configured (`PING`).
//!
//! Each probe gives one row of a table: what was checked, `ok` or `FAILED`,
//! and the reason. Nothing secret is sent or printed: the token endpoint
//! gets no client credentials, and Redis addresses lose their password.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use url::Url;

use crate::auth::oidc::{self, IdpHttp};
use crate::config::{Config, RedisTopology};
use crate::error::error_chain;

/// Longest one probe may take, connecting included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of the token endpoint probe: a grant no provider knows, and no
/// client credentials, so a live endpoint refuses it (RFC 6749 5.2).
const TOKEN_PROBE_BODY: &str = "grant_type=urn%3Agatehouse%3Acheck-config";

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What was checked, with its address.
    pub what: String,
    /// `Ok(detail)` or `Err(reason)`.
    pub outcome: Result<String, String>,
}

impl Probe {
    fn new(what: String, outcome: Result<String, String>) -> Self {
        Self { what, outcome }
    }

    /// True when the probe found the thing answering.
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Probes everything the configuration names; rows in a stable order
/// (providers, upstreams, Redis). The probes run concurrently.
pub async fn probe(config: &Config) -> Vec<Probe> {
    let http = match IdpHttp::new(PROBE_TIMEOUT) {
        Ok(h) => h,
        Err(e) => {
            return vec![Probe::new(
                "TLS client".to_owned(),
                Err(format!("cannot be built: {e}")),
            )];
        }
    };
    let providers = futures_util::future::join_all(
        (0..config.providers.len()).map(|i| probe_provider(config, i, &http)),
    );
    let upstreams =
        futures_util::future::join_all(upstream_urls(config).into_iter().map(|u| async move {
            let outcome = probe_upstream(&u).await;
            Probe::new(format!("upstream {u}"), outcome)
        }));
    let redis = probe_redis(config);
    let (providers, upstreams, redis) = tokio::join!(providers, upstreams, redis);
    providers
        .into_iter()
        .flatten()
        .chain(upstreams)
        .chain(redis)
        .collect()
}

/// The table, one row a line, each indented by two spaces.
pub fn table(probes: &[Probe]) -> String {
    let width = probes.iter().map(|p| p.what.len()).max().unwrap_or(0);
    let mut out = String::new();
    for p in probes {
        let (status, detail) = match &p.outcome {
            Ok(d) => ("ok", d),
            Err(r) => ("FAILED", r),
        };
        // one line a row, whatever a server put in its answer
        let detail: String = detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        out.push_str(&format!("  {:<width$}  {status:<6}  {detail}\n", p.what));
    }
    out
}

/// The provider's endpoints, then its JWKS and token endpoint.
async fn probe_provider(config: &Config, index: usize, http: &IdpHttp) -> Vec<Probe> {
    let Some(entry) = config.providers.get(index) else {
        return Vec::new();
    };
    let name = format!("provider {}", entry.id);
    let (jwks, token) = match oidc::probe_endpoints(config, index, http).await {
        Ok(urls) => urls,
        Err(e) => {
            let what = if entry.provider.discovery {
                format!("{name} discovery (oidc_issuer_url)")
            } else {
                format!("{name} endpoints")
            };
            return vec![Probe::new(what, Err(e.to_string()))];
        }
    };
    let mut rows = Vec::new();
    if entry.provider.discovery {
        rows.push(Probe::new(
            format!("{name} discovery (oidc_issuer_url)"),
            Ok(format!("{} answered for itself", entry.provider.issuer)),
        ));
    }
    let (keys, tok) = tokio::join!(oidc::probe_jwks(http, &jwks), probe_token(http, &token));
    rows.push(Probe::new(
        format!("{name} JWKS {jwks}"),
        keys.map(|n| format!("{n} usable key(s)"))
            .map_err(|e| e.to_string()),
    ));
    rows.push(Probe::new(format!("{name} token endpoint {token}"), tok));
    rows
}

/// Reachable: the endpoint answers a credential-less request with 400 or
/// 401 (or, oddly, 2xx). A 404, 405 or 5xx is not a token endpoint at work.
async fn probe_token(http: &IdpHttp, url: &Url) -> Result<String, String> {
    let req = http::Request::post(url.as_str())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(TOKEN_PROBE_BODY.as_bytes().to_vec())
        .map_err(|e| e.to_string())?;
    let resp = http.send(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success()
        || status == http::StatusCode::BAD_REQUEST
        || status == http::StatusCode::UNAUTHORIZED
    {
        Ok(format!(
            "answered {status} to a request without credentials"
        ))
    } else {
        Err(format!(
            "answered {status}; a token endpoint answers 400 or 401 to a request without credentials"
        ))
    }
}

/// Every distinct upstream base URL: the global ones, then the routes'.
fn upstream_urls(config: &Config) -> Vec<Url> {
    let mut urls: Vec<Url> = Vec::new();
    let all = config.upstreams.iter().map(|u| &u.url).chain(
        config
            .routes
            .routes()
            .iter()
            .filter_map(|r| r.upstream.as_ref()),
    );
    for u in all {
        let mut root = u.clone();
        root.set_path("/");
        root.set_query(None);
        root.set_fragment(None);
        if !urls.contains(&root) {
            urls.push(root);
        }
    }
    urls
}

/// A connection and a `GET /`: any HTTP answer is a live upstream.
async fn probe_upstream(url: &Url) -> Result<String, String> {
    // as the proxy reaches it: HTTP/1.1
    let connector =
        crate::http::client::upstream_connector(PROBE_TIMEOUT).map_err(|e| format!("tls: {e}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let req = http::Request::get(url.as_str())
        .header(http::header::USER_AGENT, "gatehouse-check-config")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        // the head is enough; the body is dropped unread
        drop(resp.into_body().boxed());
        Ok::<_, String>(status)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
        Ok(Ok(status)) => Ok(format!("answered {status}")),
        Ok(Err(e)) => Err(e),
        Err(_elapsed) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// `PING` when Redis is configured; no row otherwise.
async fn probe_redis(config: &Config) -> Option<Probe> {
    let cfg = config.session_store.redis.as_ref()?;
    let what = match &cfg.topology {
        RedisTopology::Single(u) => format!("redis {}", address(u)),
        RedisTopology::Sentinel { master, urls } => format!(
            "redis master `{master}` via sentinel {}",
            urls.iter().map(address).collect::<Vec<_>>().join(", ")
        ),
        RedisTopology::Cluster(urls) => format!(
            "redis cluster {}",
            urls.iter().map(address).collect::<Vec<_>>().join(", ")
        ),
    };
    let outcome = match crate::redis_conn::RedisConn::new(cfg) {
        Err(e) => Err(e),
        Ok(conn) => conn
            .query::<String>(&redis::cmd("PING"))
            .await
            .map(|pong| format!("answered {pong}"))
            .map_err(|e| e.to_string()),
    };
    Some(Probe::new(what, outcome))
}

/// `scheme://host:port`: no user or password.
fn address(u: &Url) -> String {
    let host = u.host_str().unwrap_or("?");
    match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_address_never_carries_its_password() {
        let u = Url::parse("redis://user:hunter2-secret@cache.internal:6380/0").unwrap();
        assert_eq!(address(&u), "redis://cache.internal:6380");
        let u = Url::parse("rediss://:hunter2-secret@cache.internal").unwrap();
        assert_eq!(address(&u), "rediss://cache.internal");
    }

    #[test]
    fn a_table_row_stays_on_one_line_whatever_the_reason_holds() {
        let rows = [
            Probe::new(
                "upstream http://a/".to_owned(),
                Ok("answered 200 OK".to_owned()),
            ),
            Probe::new(
                "redis redis://b:1".to_owned(),
                Err("refused\r\nfake-row  ok".to_owned()),
            ),
        ];
        let t = table(&rows);
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.lines().next().unwrap().contains(" ok "), "{t}");
        assert!(t.lines().nth(1).unwrap().contains(" FAILED "), "{t}");
    }
}
