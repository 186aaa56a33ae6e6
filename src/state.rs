//! `AppState`: everything a request needs, built once at start.
//!
//! Per request the cost is an `Arc` clone; nothing here is rebuilt on the
//! request path.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Gate;
use crate::auth::oidc::{IdpHttp, ProviderSlot};
use crate::auth::session::CookieCodec;
use crate::config::Config;
use crate::proxy::Upstreams;
use crate::server::StartupError;

/// Shared state.
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Decides requests.
    pub gate: Gate,
    /// The provider, once discovered.
    pub provider: ProviderSlot,
    /// HTTP client for the provider.
    pub idp_http: IdpHttp,
    /// Upstreams and their client.
    pub upstreams: Upstreams,
}

impl AppState {
    /// The gate's decision for a request's headers.
    pub async fn decide(&self, headers: &http::HeaderMap) -> crate::auth::Decided {
        self.gate
            .decide(&self.config, &self.provider, headers)
            .await
    }

    /// Builds the state; no network is touched here.
    pub fn new(config: Config) -> Result<Self, StartupError> {
        let codec = CookieCodec::new(&config.cookie.secrets)
            .map_err(|e| StartupError::Cookie(e.to_string()))?;
        let idp_http = IdpHttp::new(Duration::from_secs(10)).map_err(StartupError::Tls)?;
        let upstreams = Upstreams::new(&config).map_err(StartupError::Tls)?;
        let refresh = config.cookie.refresh;
        Ok(Self {
            config: Arc::new(config),
            gate: Gate::new(codec, refresh),
            provider: ProviderSlot::default(),
            idp_http,
            upstreams,
        })
    }
}
