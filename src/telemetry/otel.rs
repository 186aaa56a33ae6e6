//! OpenTelemetry traces over OTLP/HTTP (protobuf), off unless
//! `otlp_endpoint` is set.
//!
//! Off costs nothing on the request path: [`Tracing::enabled`] is a field
//! read, and every hook in the router is behind it, so no span, context or
//! header work happens. This module uses the OpenTelemetry API directly
//! rather than `tracing` spans bridged to it: the log subscriber stays as it
//! is (a `tracing` span would cost a registry lookup per request even when
//! no layer wants it), and the span of a request is exactly what is
//! exported, with the semantic-convention attribute names.
//!
//! When on, a request gets a server span (a child of the caller's
//! `traceparent` only when the peer is a trusted proxy), with children for
//! the auth decision, each provider call (discovery, JWKS, token, refresh,
//! userinfo) made while handling it, and the upstream call, whose span is
//! the parent named in the `traceparent` sent upstream. Spans go to a
//! bounded queue; a background thread batches them to the collector over a
//! client that runs on its own small runtime, so a slow or down collector
//! never holds a request: when the queue is full, spans are dropped and the
//! SDK reports how many.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use crate::telemetry::with_current_trace;

/// The OTLP/HTTP path of traces, added to an endpoint given as a base URL.
const TRACES_PATH: &str = "/v1/traces";
/// Time one export may take, connection included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the spans still queued get at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);
/// A collector's answer is read up to this size (only its status matters).
const MAX_ANSWER: usize = 64 * 1024;
/// The `traceparent` and `tracestate` headers (W3C Trace Context).
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Where and as what spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP traces URL (`.../v1/traces`).
    pub endpoint: http::Uri,
    /// `service.name` of the exported spans.
    pub service_name: String,
}

/// Checks `otlp_endpoint`: an `http` or `https` URL with a host, without
/// credentials, query or fragment. A base URL (`http://collector:4318`)
/// gets [`TRACES_PATH`] added, as `OTEL_EXPORTER_OTLP_ENDPOINT` does; one
/// already ending in it is taken as it is.
pub fn parse_endpoint(value: &str) -> Result<http::Uri, String> {
    let shown = crate::telemetry::escape_log(value);
    // the URL parser would quietly drop a tab or a line break
    if value.chars().any(char::is_control) {
        return Err(format!("`{shown}` has a control character"));
    }
    let url = url::Url::parse(value.trim())
        .map_err(|e| format!("`{shown}` is not a URL like http://collector:4318 ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "`{shown}`: expected an http or https URL (OTLP over HTTP; gRPC is not supported)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials in the URL would be logged: put them in OTEL_EXPORTER_OTLP_HEADERS"
                .to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{shown}`: a query or fragment is not allowed"));
    }
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with(TRACES_PATH) {
        path.to_owned()
    } else {
        format!("{path}{TRACES_PATH}")
    };
    let mut full = url.clone();
    full.set_path(&path);
    full.as_str()
        .parse()
        .map_err(|e| format!("`{shown}` is not a usable URL ({e})"))
}

/// Checks `otlp_service_name` [default: gatehouse]: 1 to 255 visible
/// characters.
pub fn check_service_name(value: Option<&str>) -> Result<String, String> {
    let name = value.unwrap_or("gatehouse").trim();
    if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
        return Err(format!(
            "`{}`: expected 1 to 255 characters without control characters",
            crate::telemetry::escape_log(name)
        ));
    }
    Ok(name.to_owned())
}

/// One server's tracing: nothing when off.
pub struct Tracing {
    inner: Option<Inner>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// The tracer a request's context carries, so that code without the state
/// (the provider client) can add child spans.
#[derive(Clone)]
struct Carried(SdkTracer);

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl Tracing {
    /// No tracing.
    pub fn off() -> Self {
        Self { inner: None }
    }

    /// Starts the exporter when `config` is given. Needs no runtime: the
    /// exporter has its own.
    pub fn new(config: Option<&OtlpConfig>) -> Result<Self, String> {
        let Some(config) = config else {
            return Ok(Self::off());
        };
        let client = ExportClient::new().map_err(|e| format!("otlp client: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.endpoint.to_string())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("otlp exporter: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION").to_owned(),
            ))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("gatehouse");
        tracing::info!(endpoint = %config.endpoint, "exporting traces over OTLP");
        Ok(Self {
            inner: Some(Inner { provider, tracer }),
        })
    }

    /// Whether spans are made at all.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The context of a new request's server span, or `None` when off. The
    /// caller's `traceparent` is continued only from a trusted proxy.
    pub fn request(&self, req: &RequestFacts<'_>) -> Option<Context> {
        let inner = self.inner.as_ref()?;
        let parent = if req.trusted {
            TraceContextPropagator::new().extract(&HeaderExtractor(req.headers))
        } else {
            Context::new()
        };
        let mut attrs = Vec::with_capacity(6);
        attrs.push(KeyValue::new(
            "http.request.method",
            req.method.as_str().to_owned(),
        ));
        if let Ok(path) = crate::http::path::normalize(req.uri.path()) {
            attrs.push(KeyValue::new("url.path", path.into_owned()));
        }
        attrs.push(KeyValue::new(
            "url.scheme",
            if req.tls { "https" } else { "http" },
        ));
        if let Some(host) = server_address(req.uri, req.headers) {
            attrs.push(KeyValue::new("server.address", host.to_owned()));
        }
        attrs.push(KeyValue::new("client.address", req.peer.to_string()));
        let span = inner
            .tracer
            .span_builder(req.method.as_str().to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(&inner.tracer, &parent);
        Some(
            parent
                .with_span(span)
                .with_value(Carried(inner.tracer.clone())),
        )
    }

    /// Exports what is queued and stops the exporter, within
    /// [`SHUTDOWN_FLUSH`]. Runs on a blocking thread: the SDK waits.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        let provider = inner.provider.clone();
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_FLUSH));
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "trace export did not finish at shutdown"),
            Err(e) => tracing::warn!(error = %e, "trace export shutdown failed"),
        }
    }
}

impl Drop for Tracing {
    /// Dropped without [`Tracing::shutdown`]: the SDK would flush on
    /// whichever thread drops the last handle, maybe a runtime's; flush on
    /// a thread of its own instead.
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let provider = inner.provider.clone();
            drop(inner);
            let spawned = std::thread::Builder::new()
                .name("gatehouse-otlp-stop".to_owned())
                .spawn(move || provider.shutdown_with_timeout(SHUTDOWN_FLUSH));
            if let Err(e) = spawned {
                tracing::debug!(error = %e, "cannot start the trace export stop");
            }
        }
    }
}

/// What a request's server span says at its start.
#[derive(Debug)]
pub struct RequestFacts<'a> {
    /// The request's headers (for `traceparent`).
    pub headers: &'a HeaderMap,
    /// The peer is a trusted proxy.
    pub trusted: bool,
    /// The method.
    pub method: &'a http::Method,
    /// The request target (its path is normalised for the span; the
    /// query is left out).
    pub uri: &'a http::Uri,
    /// The TCP peer.
    pub peer: std::net::IpAddr,
    /// TLS connection.
    pub tls: bool,
}

/// The host the client named (target or `Host`), without its port.
fn server_address<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    let named = match uri.host() {
        Some(h) => h,
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = match named.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => named,
    };
    (!host.is_empty()).then_some(host)
}

/// The current request span's trace and span ids, for the access record.
/// Call only when tracing is on (it reads the current context).
pub fn current_ids() -> Option<(opentelemetry::TraceId, opentelemetry::SpanId)> {
    with_current_trace(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    })
    .flatten()
}

/// Ends the current request span with its status and route. Call only when
/// tracing is on.
pub fn finish_request(method: &http::Method, status: http::StatusCode, route: Option<&str>) {
    with_current_trace(|cx| {
        let span = cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if let Some(route) = route {
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
            span.update_name(format!("{} {route}", method.as_str()));
        }
        if status.is_server_error() {
            span.set_status(Status::error(status.as_u16().to_string()));
        }
    });
}

/// A child span of the current request's, or nothing (tracing off, or no
/// request being handled).
pub struct Child(Option<Context>);

impl Child {
    /// Starts a child span named `name` when `enabled` and a request span
    /// is current.
    pub fn start(enabled: bool, name: &'static str, kind: SpanKind) -> Self {
        if !enabled {
            return Self(None);
        }
        Self(
            with_current_trace(|cx| {
                let Carried(tracer) = cx.get::<Carried>()?;
                let span = tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .start_with_context(tracer, cx);
                Some(cx.with_span(span))
            })
            .flatten(),
        )
    }

    /// Adds an attribute.
    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(cx) = &self.0 {
            cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with a short reason.
    pub fn fail(&self, reason: impl Into<std::borrow::Cow<'static, str>>) {
        if let Some(cx) = &self.0 {
            cx.span().set_status(Status::error(reason));
        }
    }

    /// Puts this span in `traceparent` (and the trace's `tracestate`) of
    /// an outgoing request, replacing what the client sent. Does nothing
    /// when there is no span: the client's headers then pass as before.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(cx) = &self.0 {
            headers.remove(TRACEPARENT);
            headers.remove(TRACESTATE);
            TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
            if headers
                .get(TRACESTATE)
                .is_some_and(|v| v.as_bytes().is_empty())
            {
                headers.remove(TRACESTATE);
            }
        }
    }

    /// Ends the span, marked failed when `r` is an error.
    pub fn finish<T, E>(self, r: &Result<T, E>) {
        if r.is_err()
            && let Some(cx) = &self.0
        {
            cx.span().set_status(Status::error("failed"));
        }
        self.end();
    }

    /// Ends the span (it also ends when dropped).
    pub fn end(self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

/// The span of one provider call (`discovery`, `jwks`, `token`,
/// `refresh`, `userinfo`) when a traced request is being handled; end it
/// with [`Child::finish`]. A guard rather than a wrapping `async fn`: a
/// wrapper would add a second copy of the call's future to every future
/// that holds it, tracing on or off.
pub fn provider_span(what: &'static str) -> Child {
    let child = Child::start(true, what, SpanKind::Client);
    child.set("gatehouse.provider.call", what);
    child
}

/// The exporter's HTTP client: hyper with rustls (the same connector as
/// the provider client), on a one-thread runtime of its own, so exports
/// neither need nor load the server's runtime and still work while it
/// shuts down.
#[derive(Clone)]
struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: Arc<OwnRuntime>,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportClient")
    }
}

/// A runtime that may be dropped anywhere (even inside another runtime).
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl ExportClient {
    fn new() -> Result<Self, String> {
        let connector =
            crate::http::client::https_connector(EXPORT_TIMEOUT).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gatehouse-otlp")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            runtime: Arc::new(OwnRuntime(Some(runtime))),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let Some(rt) = &self.runtime.0 else {
            return Err("the export runtime is gone".into());
        };
        let client = self.client.clone();
        let sent = rt.spawn(async move {
            let resp = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request.map(Full::new)))
                .await
                .map_err(|_elapsed| HttpError::from("timed out"))??;
            let (parts, body) = resp.into_parts();
            let bytes =
                tokio::time::timeout(EXPORT_TIMEOUT, Limited::new(body, MAX_ANSWER).collect())
                    .await
                    .map_err(|_elapsed| HttpError::from("answer timed out"))??
                    .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, bytes))
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_otlp_endpoint_is_a_plain_http_url_and_gets_the_traces_path() {
        let ok = [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/v1/traces",
                "https://otel.example/v1/traces",
            ),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
        ];
        for (given, want) in ok {
            assert_eq!(parse_endpoint(given).unwrap().to_string(), want, "{given}");
        }
        let bad = [
            ("", "not a URL"),
            ("collector:4318", "expected an http or https URL"),
            ("grpc://collector:4317", "expected an http or https URL"),
            ("http://user:pw@collector:4318", "credentials"),
            ("http://collector:4318/?x=1", "query"),
            ("http://collector:4318/#f", "fragment"),
            ("file:///etc/passwd", "expected an http or https URL"),
            ("http://\ncollector", "control character"),
            ("http://collector:4318\t", "control character"),
        ];
        for (given, want) in bad {
            let err = parse_endpoint(given).expect_err(given);
            assert!(err.contains(want), "{given}: {err}");
            assert!(!err.contains('\n'), "{given}: {err}");
        }
    }

    #[test]
    fn the_service_name_defaults_to_gatehouse_and_refuses_empty_or_control_characters() {
        assert_eq!(check_service_name(None).unwrap(), "gatehouse");
        assert_eq!(check_service_name(Some(" edge ")).unwrap(), "edge");
        for bad in ["", "  ", "a\nb", &"x".repeat(256)] {
            assert!(check_service_name(Some(bad)).is_err(), "{bad:?}");
        }
    }

    const MINIMAL: &str = r#"
upstream = "http://127.0.0.1:8080"
oidc_issuer_url = "https://idp.example.com/realms/main"
client_id = "gatehouse"
client_secret = "s3cret-but-long-enough"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
email_domain = ["*"]
"#;

    #[test]
    fn tracing_is_off_by_default_and_a_bad_otlp_setting_fails_at_start_naming_its_key() {
        use crate::config::Config;
        assert_eq!(Config::from_toml_str(MINIMAL).unwrap().otlp, None);
        let on = Config::from_toml_str(&format!(
            "{MINIMAL}otlp_endpoint = \"http://127.0.0.1:4318\"\n"
        ))
        .unwrap();
        let otlp = on.otlp.unwrap();
        assert_eq!(otlp.endpoint.to_string(), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(otlp.service_name, "gatehouse");
        for (extra, key) in [
            ("otlp_endpoint = \"grpc://c:4317\"", "otlp_endpoint"),
            (
                "otlp_endpoint = \"http://c:4318\"\notlp_service_name = \"\"",
                "otlp_service_name",
            ),
        ] {
            let err = Config::from_toml_str(&format!("{MINIMAL}{extra}\n")).unwrap_err();
            assert!(err.problems.iter().any(|p| p.key == key), "{extra}: {err}");
        }
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "gatehouse",
            "--otlp-endpoint",
            "http://c:4318",
            "--otlp-service-name",
            "edge",
        ])
        .unwrap();
        assert_eq!(cli.settings.otlp_endpoint.as_deref(), Some("http://c:4318"));
        assert_eq!(cli.settings.otlp_service_name.as_deref(), Some("edge"));
    }

    #[test]
    fn with_tracing_off_nothing_is_made_and_no_header_is_touched() {
        let off = Tracing::off();
        assert!(!off.enabled());
        let headers = HeaderMap::new();
        let facts = RequestFacts {
            headers: &headers,
            trusted: true,
            method: &http::Method::GET,
            uri: &http::Uri::from_static("/"),
            peer: std::net::Ipv4Addr::LOCALHOST.into(),
            tls: false,
        };
        assert!(off.request(&facts).is_none());
        let child = Child::start(false, "upstream", SpanKind::Client);
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, http::HeaderValue::from_static("x"));
        child.inject(&mut h);
        assert_eq!(h.get(TRACEPARENT).unwrap(), "x");
    }
}
