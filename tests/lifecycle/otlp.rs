//! OpenTelemetry tracing (issue 12): a mock OTLP collector over real HTTP on
//! loopback decodes the real OTLP/HTTP protobuf payload gatehouse sends
//! (with `opentelemetry-proto`'s types) and the tests check the spans of
//! signed-in proxied requests, the `traceparent` the upstream saw, which
//! callers' `traceparent` is continued, the access record's trace id, and
//! that a collector that is down fails no request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use tokio::net::TcpListener;

use crate::support::client::TestClient;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login};
use crate::support::upstream::Recorder;

/// A caller's trace: the id every span of the request must carry when it
/// is continued.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_PARENT: &str = "00f067aa0ba902b7";
const CALLER_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Seen {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attrs: Vec<(String, String)>,
    service: String,
}

impl Seen {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An OTLP/HTTP collector: `POST /v1/traces` with `application/x-protobuf`.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Collector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| receive(kept.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, spans, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Seen> {
        self.spans.lock().unwrap().clone()
    }
}

async fn receive(
    kept: Arc<Mutex<Vec<Seen>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let answer = |status: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        Ok(r)
    };
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        return answer(StatusCode::NOT_FOUND);
    }
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-protobuf");
    let Ok(body) = req.into_body().collect().await else {
        return answer(StatusCode::BAD_REQUEST);
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body.to_bytes()) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    if !protobuf {
        return answer(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let mut out = kept.lock().unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(any_to_string)
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Seen {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name.clone(),
                    kind: s.kind,
                    attrs: s
                        .attributes
                        .iter()
                        .map(|kv| {
                            let v = kv
                                .value
                                .as_ref()
                                .and_then(|v| v.value.as_ref())
                                .map(any_to_string)
                                .unwrap_or_default();
                            (kv.key.clone(), v)
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    answer(StatusCode::OK)
}

fn any_to_string(v: &AnyValue) -> String {
    match v {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The server span of the proxied request to `path`.
fn request_span<'a>(spans: &'a [Seen], path: &str) -> &'a Seen {
    spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.attr("url.path") == Some(path))
        .unwrap_or_else(|| panic!("no server span for {path} in {spans:#?}"))
}

fn children<'a>(spans: &'a [Seen], parent: &Seen) -> Vec<&'a Seen> {
    spans
        .iter()
        .filter(|s| s.parent == parent.span_id && s.trace_id == parent.trace_id)
        .collect()
}

/// A proxy exporting to `collector`, with a route (`routes[0]`) for `/app`; `trusted` says
/// whether the test client (127.0.0.1) is a trusted proxy.
async fn traced_proxy(
    idp: &MockIdp,
    upstream: &Recorder,
    collector: &str,
    trusted: bool,
) -> TestProxy {
    let trusted_proxy = if trusted {
        "127.0.0.1/32"
    } else {
        "192.0.2.1/32"
    };
    TestProxy::builder(idp, upstream)
        .toml(&format!(
            r#"
otlp_endpoint = "{collector}"
otlp_service_name = "edge-test"
trusted_proxy = ["{trusted_proxy}"]
[[routes]]
path = "/app"
"#
        ))
        .start()
        .await
}

#[tokio::test]
async fn a_signed_in_proxied_request_is_one_trace_with_auth_and_upstream_children_and_the_upstream_gets_its_traceparent()
 {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let collector = Collector::start().await;
    let proxy = traced_proxy(&idp, &upstream, &collector.url(), false).await;
    let client = TestClient::new();
    login(&client, &proxy, "/app/start").await;
    // an untrusted caller's trace is not continued
    let r = client
        .get_with(
            &proxy.url("/app/page?secret=q"),
            &[
                ("traceparent", CALLER_TRACEPARENT),
                ("tracestate", "vendor=forged"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = upstream.last().unwrap();
    let traceparent = seen.header("traceparent").unwrap().to_owned();
    assert_eq!(seen.header("tracestate"), None, "{:?}", seen.headers);
    proxy.shutdown().await; // flushes the exporter

    let spans = collector.spans();
    let req = request_span(&spans, "/app/page");
    assert_ne!(
        req.trace_id, CALLER_TRACE,
        "untrusted traceparent continued"
    );
    assert_eq!(req.parent, "", "untrusted caller became the parent");
    assert_eq!(req.attr("http.request.method"), Some("GET"));
    assert_eq!(req.attr("http.route"), Some("routes[0]"));
    assert_eq!(req.attr("http.response.status_code"), Some("200"));
    assert_eq!(req.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(req.name, "GET routes[0]");
    assert_eq!(req.service, "edge-test");
    for s in spans.iter().filter(|s| s.trace_id == req.trace_id) {
        for (k, v) in &s.attrs {
            assert!(
                !v.contains("secret=q") && !v.contains("_gatehouse"),
                "{k}={v} leaks the query or a cookie"
            );
        }
    }
    let kids = children(&spans, req);
    let auth = kids
        .iter()
        .find(|s| s.name == "auth decision")
        .unwrap_or_else(|| panic!("no auth decision child in {kids:#?}"));
    assert_eq!(auth.attr("gatehouse.decision"), Some("allow"));
    let up = kids
        .iter()
        .find(|s| s.name == "upstream")
        .unwrap_or_else(|| panic!("no upstream child in {kids:#?}"));
    assert_eq!(up.kind, SpanKind::Client as i32);
    assert_eq!(up.attr("http.response.status_code"), Some("200"));
    // the upstream's traceparent: this trace, the upstream call as parent
    assert_eq!(
        traceparent,
        format!("00-{}-{}-01", req.trace_id, up.span_id)
    );
    // the callback's token call was a child of the callback's request span
    let callback = spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server as i32 && s.attr("url.path") == Some("/oauth2/callback")
        })
        .unwrap_or_else(|| panic!("no callback span in {spans:#?}"));
    assert!(
        children(&spans, callback).iter().any(|s| s.name == "token"),
        "no token call under the callback: {spans:#?}"
    );
}

#[tokio::test]
async fn a_trusted_proxys_traceparent_is_continued_and_its_tracestate_passed_on() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let collector = Collector::start().await;
    let proxy = traced_proxy(&idp, &upstream, &collector.url(), true).await;
    let client = TestClient::new();
    login(&client, &proxy, "/app/start").await;
    let r = client
        .get_with(
            &proxy.url("/app/page"),
            &[
                ("traceparent", CALLER_TRACEPARENT),
                ("tracestate", "vendor=kept"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = upstream.last().unwrap();
    let traceparent = seen.header("traceparent").unwrap().to_owned();
    assert_eq!(seen.header("tracestate"), Some("vendor=kept"));
    proxy.shutdown().await;

    let spans = collector.spans();
    let req = request_span(&spans, "/app/page");
    assert_eq!(req.trace_id, CALLER_TRACE);
    assert_eq!(req.parent, CALLER_PARENT);
    let up = children(&spans, req)
        .into_iter()
        .find(|s| s.name == "upstream")
        .unwrap_or_else(|| panic!("no upstream child in {spans:#?}"));
    assert_eq!(traceparent, format!("00-{CALLER_TRACE}-{}-01", up.span_id));
}

#[tokio::test]
async fn a_collector_that_never_answers_slows_no_request_and_shutdown_gives_up_in_bounded_time() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    // connections complete (the kernel's backlog) but nothing is ever read
    // or answered: the worst collector, worse than one that refuses
    let hanging = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hanging.local_addr().unwrap());
    let proxy = traced_proxy(&idp, &upstream, &url, false).await;
    let client = TestClient::new();
    login(&client, &proxy, "/app/start").await;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let r = client.get(&proxy.url("/app/page")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "5 requests took {:?} with the collector hanging",
        started.elapsed()
    );
    assert!(upstream.last().unwrap().header("traceparent").is_some());
    let stopped = tokio::time::timeout(Duration::from_secs(15), proxy.shutdown()).await;
    assert!(stopped.is_ok(), "shutdown waited on the hanging collector");
    drop(hanging);
}

#[tokio::test]
async fn with_tracing_off_a_clients_traceparent_passes_upstream_untouched() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    let r = client
        .get_with(&proxy.url("/page"), &[("traceparent", CALLER_TRACEPARENT)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        upstream.last().unwrap().header("traceparent"),
        Some(CALLER_TRACEPARENT)
    );
}

/// Log lines written on this thread (the test's runtime runs the proxy).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_access_record_carries_the_trace_and_span_id_of_the_request_span() {
    let lines = Lines::default();
    let writer = lines.clone();
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let collector = Collector::start().await;
    let proxy = traced_proxy(&idp, &upstream, &collector.url(), false).await;
    let client = TestClient::new();
    login(&client, &proxy, "/app/start").await;
    // another test's thread may have registered the access event's callsite
    // while this subscriber was being set (and cached "nobody listens"):
    // by now it is registered, so recompute who listens
    tracing::callsite::rebuild_interest_cache();
    let r = client.get(&proxy.url("/app/logged")).await;
    assert_eq!(r.status, StatusCode::OK);
    proxy.shutdown().await;

    let spans = collector.spans();
    let req = request_span(&spans, "/app/logged");
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("gatehouse::access") && l.contains("path=/app/logged"))
        .unwrap_or_else(|| panic!("no access record for /app/logged in:\n{text}"));
    assert!(
        line.contains(&format!("trace_id={}", req.trace_id))
            && line.contains(&format!("span_id={}", req.span_id)),
        "{line}\nwant trace {} span {}",
        req.trace_id,
        req.span_id
    );
}

#[tokio::test]
async fn a_forward_auth_check_has_its_auth_decision_child_span_too() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let collector = Collector::start().await;
    let proxy = traced_proxy(&idp, &upstream, &collector.url(), true).await;
    let client = TestClient::new();
    login(&client, &proxy, "/app/start").await;
    let r = client
        .get_with(
            &proxy.url("/oauth2/auth"),
            &[
                ("x-forwarded-uri", "/app/page"),
                ("x-forwarded-host", "127.0.0.1"),
                ("x-forwarded-proto", "http"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    proxy.shutdown().await; // flushes the exporter

    let spans = collector.spans();
    let req = request_span(&spans, "/oauth2/auth");
    let kids = children(&spans, req);
    let auth = kids
        .iter()
        .find(|s| s.name == "auth decision")
        .unwrap_or_else(|| panic!("no auth decision child in {kids:#?}"));
    assert_eq!(auth.attr("gatehouse.decision"), Some("allow"));
}
