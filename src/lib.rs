//! gatehouse: an authenticating reverse proxy and forward-auth server.
//!
//! A request flows like this: `server` accepts the connection (TLS and
//! HTTP/1.1 or HTTP/2) and hands each request to `router`. Requests under
//! `/oauth2/` go to `auth::endpoints` (start, callback, sign-out, userinfo);
//! `/ping` and `/ready` answer directly; every other request goes through
//! `auth::Gate::decide`, which looks only at the request head and returns
//! `Allow` (who, shared with the session or token cache), `Challenge` or
//! `Deny`. On `Allow`, `proxy` strips spoofable and hop-by-hop headers,
//! adds `X-Forwarded-*` and the identity headers, and streams the request
//! to the upstream and the answer back.
//! A challenge becomes a redirect to the provider for a browser, or a 401.

// the per-request future (server, router, request-id scope, forward) nests
// deeper than rustc's default layout query depth of 128
#![recursion_limit = "256"]

pub mod auth;
pub mod build_info;
pub mod check;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod redis_conn;
pub mod reload;
pub mod router;
pub mod routes;
pub mod server;
pub mod state;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use server::{Server, StartupError, run};

/// What `--check-config` found beyond the static checks.
pub async fn check_provider(config: &Config) -> Result<(), String> {
    let http = auth::oidc::IdpHttp::new(std::time::Duration::from_secs(10))
        .map_err(|e| format!("tls: {e}"))?;
    if config.providers.len() == 1 {
        return auth::oidc::Provider::discover(config, http)
            .await
            .map(|_p| ())
            .map_err(|e| format!("oidc_issuer_url: {e}"));
    }
    let mut failed = Vec::new();
    for (i, entry) in config.providers.iter().enumerate() {
        if let Err(e) = auth::oidc::Provider::discover_at(config, i, http.clone()).await {
            failed.push(format!("oidc_issuer_url of provider `{}`: {e}", entry.id));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n  "))
    }
}
