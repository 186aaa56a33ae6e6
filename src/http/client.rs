//! Outbound HTTP(S) connections: rustls with the webpki roots, plain HTTP
//! allowed (loopback upstreams, tests).

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::builderstates::WantsProtocols1;
use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;

/// Builds the connector the IdP client and the exporters use: HTTP/1.1 and
/// HTTP/2 by ALPN.
pub fn https_connector(
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    Ok(builder()?
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp(connect_timeout)))
}

/// Builds the upstreams' connector: HTTP/1.1 only. Over TLS it offers no
/// ALPN, so the server speaks HTTP/1.1 (see `crate::proxy::pool` for why).
pub fn upstream_connector(
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    Ok(builder()?
        .enable_http1()
        .wrap_connector(tcp(connect_timeout)))
}

/// The part both connectors share: TLS, and plain HTTP allowed.
fn builder() -> Result<HttpsConnectorBuilder<WantsProtocols1>, rustls::Error> {
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls()?)
        .https_or_http())
}

/// TLS with the webpki roots. No ALPN: the connector builder sets it when
/// it offers HTTP/2 (and refuses a config that has it).
fn tls() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_webpki_roots()
    .with_no_client_auth())
}

fn tcp(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}
