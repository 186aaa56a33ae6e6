//! The forwarding path, once signed in: requests reach the right upstream
//! with their method, body and headers intact, hop-by-hop headers removed and
//! `X-Forwarded-*` set; bodies of hundreds of MiB stream both ways without
//! the proxy's memory growing with them, and a body cut short stays cut
//! short; WebSockets, h2c and HTTP/2 over TLS (ALPN) pass through; an
//! unreachable or slow upstream gets a short 502 or 504, but an upload still
//! streaming is not cut off by the upstream timeout.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "proxy_passthrough/limits.rs"]
mod limits;
#[path = "proxy_passthrough/metrics.rs"]
mod metrics;
#[path = "proxy_passthrough/parked.rs"]
mod parked;
#[path = "proxy_passthrough/routes.rs"]
mod routes;

use crate::support::SESSION_COOKIE;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::digest::{Context, SHA256};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use support::client::{ACCEPT_HTML, BoxError, ClientBody, TestClient, empty, full};
use support::idp::{IdpOptions, MockIdp};
use support::proxy::{TEST_COOKIE_SECRET, TestProxy, login};
use support::upstream::{Recorder, pattern_byte, pattern_sha256, sha256_hex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const TLS_CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/keys/tls-cert.pem"
);
const TLS_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/keys/tls-key.pem"
);

/// Size of each large body.
const LARGE: u64 = 300 * 1024 * 1024;
/// Chunk size of generated upload bodies.
const CHUNK: usize = 64 * 1024;
/// Period of `support::upstream::pattern_byte` (checked through
/// `pattern_sha256`: a wrong period fails the upload hash).
const PATTERN_PERIOD: usize = 251;
/// Most the proxy's peak RSS may grow over its signed-in RSS while the large
/// bodies pass: well under one body.
const MAX_GROWTH_KIB: u64 = 64 * 1024;
/// Bound on each whole large transfer.
const LARGE_TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on everything small: a handshake, a frame, a ready wait.
const SHORT: Duration = Duration::from_secs(10);

/// A mock IdP that approves alice, a recorder, a proxy, and a client signed
/// in through that proxy.
struct Stack {
    idp: MockIdp,
    upstream: Recorder,
    proxy: TestProxy,
    client: TestClient,
}

/// A [`Stack`] whose proxy config is the base plus `extra(&recorder)`.
async fn signed_in_with(extra: impl FnOnce(&Recorder) -> String) -> Stack {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(&extra(&upstream), &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    Stack {
        idp,
        upstream,
        proxy,
        client,
    }
}

async fn signed_in(extra: &str) -> Stack {
    signed_in_with(|_| extra.to_owned()).await
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// === large bodies, through the real binary ===

/// The gatehouse binary as a child process; killed (and reaped) on drop.
struct ChildProxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ChildProxy {
    /// Starts the binary against `idp` and `upstream` and waits until
    /// `/ready` answers 200.
    async fn start(idp: &MockIdp, upstream: &Recorder) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-passthrough-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("gatehouse.log");
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars() {
            if key.starts_with("GATEHOUSE_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        let address = format!("127.0.0.1:{port}");
        let redirect = format!("http://127.0.0.1:{port}/oauth2/callback");
        let (issuer, upstream) = (idp.issuer(), upstream.url());
        cmd.args(["--http-address", &address])
            .args(["--upstream", &upstream])
            .args(["--oidc-issuer-url", &issuer])
            .args(["--client-id", "gatehouse", "--client-secret", "s3cret"])
            .args(["--redirect-url", &redirect])
            .args(["--cookie-secret", TEST_COOKIE_SECRET])
            .args(["--cookie-secure=false", "--email-domain", "*"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().unwrap();
        let mut proxy = Self { child, port, log };
        proxy.wait_ready().await;
        proxy
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let client = TestClient::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "gatehouse exited before it was ready ({status}); its output:\n{}",
                    self.log_text()
                );
            }
            let req = Request::get(format!("{}/ready", self.base()))
                .body(empty())
                .unwrap();
            let ready = matches!(
                tokio::time::timeout(Duration::from_secs(2), client.send(req)).await,
                Ok(Ok(resp)) if resp.status() == StatusCode::OK
            );
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gatehouse on port {} not ready after 20 s; its output:\n{}",
                self.port,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProxy {
    fn drop(&mut self) {
        // both fail only if the child is already gone, which is what we want
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `support::proxy::login` for a proxy known only by its base URL (the
/// child process): `GET {base}/` as a browser and follow every redirect (to
/// the IdP's `/authorize`, back to `/oauth2/callback`) until one points back
/// at `{base}/`.
async fn login_at(client: &TestClient, base: &str) {
    let home = format!("{base}/");
    let mut url = home.clone();
    let mut visited = Vec::new();
    for _ in 0..6 {
        let resp = client.get(&url).await;
        assert!(
            resp.status.is_redirection(),
            "login: GET {url} answered {} after {visited:?}: {}",
            resp.status,
            resp.text()
        );
        visited.push(resp.url.path().to_owned());
        let next = resp.location_url().expect("redirect without Location");
        if next.as_str() == home {
            assert!(
                visited.iter().any(|p| p == "/authorize")
                    && visited.iter().any(|p| p == "/oauth2/callback"),
                "login did not go through the IdP and the callback: {visited:?}"
            );
            return;
        }
        url = next.into();
    }
    panic!("login at {base}: too many redirects: {visited:?}");
}

/// A `kB` field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status:\n{status}"))
}

/// Sets the peak RSS back to the current RSS (Linux 4.0+); if the kernel
/// refuses, the peak stays the lifetime peak, which only makes the memory
/// check stricter.
fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// `n` bytes of the `/__download` pattern as a streaming body of 64 KiB
/// chunks, all slices of one small buffer.
fn pattern_body(n: u64) -> ClientBody {
    let pattern: Bytes = (0..(CHUNK + PATTERN_PERIOD) as u64)
        .map(pattern_byte)
        .collect::<Vec<u8>>()
        .into();
    let chunk = CHUNK as u64;
    let frames = (0..n.div_ceil(chunk)).map(move |i| {
        let offset = i * chunk;
        let len = chunk.min(n - offset) as usize;
        let start = (offset % PATTERN_PERIOD as u64) as usize;
        Ok::<_, BoxError>(Frame::data(pattern.slice(start..start + len)))
    });
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

/// Streams `n` pattern bytes to `/__upload`; returns the upstream's
/// `(bytes, sha256)`.
async fn upload(client: &TestClient, base: &str, n: u64) -> (u64, String) {
    let req = Request::post(format!("{base}/__upload"))
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(pattern_body(n))
        .unwrap();
    let exchange = async {
        let resp = client.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, body))
    };
    let (status, body) = tokio::time::timeout(LARGE_TRANSFER_TIMEOUT, exchange)
        .await
        .expect("upload timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "upload of {n} bytes: {text}");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        json["bytes"].as_u64().unwrap(),
        json["sha256"].as_str().unwrap().to_owned(),
    )
}

/// Downloads `/__download?bytes=n`, hashing each frame as it arrives;
/// returns `(bytes, sha256, largest frame)`.
async fn download(client: &TestClient, base: &str, n: u64) -> (u64, String, usize) {
    let req = Request::get(format!("{base}/__download?bytes={n}"))
        .header(ACCEPT, "application/octet-stream")
        .body(empty())
        .unwrap();
    let exchange = async {
        let resp = client.send(req).await?;
        assert_eq!(resp.status(), StatusCode::OK, "download of {n} bytes");
        assert_eq!(
            resp.headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()),
            Some(n.to_string().as_str()),
            "the upstream's content-length is passed on"
        );
        let mut body = resp.into_body();
        let mut ctx = Context::new(&SHA256);
        let (mut len, mut largest) = (0_u64, 0_usize);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                ctx.update(&data);
                len += data.len() as u64;
                largest = largest.max(data.len());
            }
        }
        Ok::<_, BoxError>((len, hex(ctx.finish().as_ref()), largest))
    };
    tokio::time::timeout(LARGE_TRANSFER_TIMEOUT, exchange)
        .await
        .expect("download timed out")
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_without_the_proxy_growing() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let expected = tokio::task::spawn_blocking(|| pattern_sha256(LARGE));
    let proxy = ChildProxy::start(&idp, &upstream).await;
    let base = proxy.base();
    let client = TestClient::new();
    login_at(&client, &base).await;

    // warm up: connections, pools and buffers exist before the baseline
    let small = 4 * CHUNK as u64 + 7;
    assert_eq!(upload(&client, &base, small).await.0, small);
    assert_eq!(download(&client, &base, small).await.0, small);
    let rss_signed_in = proc_status_kib(proxy.pid(), "VmRSS");
    reset_peak_rss(proxy.pid());

    let expected = expected.await.unwrap();
    let started = Instant::now();
    let (up_len, up_sha) = upload(&client, &base, LARGE).await;
    let upload_time = started.elapsed();
    assert_eq!(up_len, LARGE, "the upstream received every uploaded byte");
    assert_eq!(up_sha, expected, "the upstream received the bytes intact");
    let seen = upstream.last().unwrap();
    assert_eq!((seen.method.as_str(), seen.path()), ("POST", "/__upload"));
    assert!(seen.body_complete);
    assert!(
        seen.header("x-forwarded-user").is_some(),
        "{:?}",
        seen.headers
    );
    let hwm_after_upload = proc_status_kib(proxy.pid(), "VmHWM");

    let started = Instant::now();
    let (down_len, down_sha, largest_frame) = download(&client, &base, LARGE).await;
    let download_time = started.elapsed();
    assert_eq!(down_len, LARGE, "the client received every byte");
    assert_eq!(down_sha, expected, "the client received the bytes intact");
    let hwm_after = proc_status_kib(proxy.pid(), "VmHWM");
    let rss_after = proc_status_kib(proxy.pid(), "VmRSS");

    eprintln!(
        "gatehouse memory (KiB): VmRSS signed in {rss_signed_in}, VmHWM after upload \
         {hwm_after_upload}, VmHWM after download {hwm_after}, VmRSS after {rss_after}; \
         {} MiB up in {upload_time:.2?}, down in {download_time:.2?} (largest frame {largest_frame} B)",
        LARGE >> 20,
    );
    let growth = hwm_after.saturating_sub(rss_signed_in);
    assert!(
        growth < MAX_GROWTH_KIB,
        "gatehouse grew by {growth} KiB (VmRSS {rss_signed_in} KiB signed in, VmHWM \
         {hwm_after} KiB after {} MiB each way): bodies are being buffered",
        LARGE >> 20
    );
}

// === WebSocket ===

/// The `Cookie` header a browser would send to `proxy`.
fn cookie_header(client: &TestClient, proxy: &TestProxy) -> String {
    client
        .cookies_for(&proxy.host())
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Opens a WebSocket to `path` on `proxy` over a fresh TCP connection,
/// with `headers` added to (or replacing those of) the handshake.
async fn ws_connect(
    proxy: &TestProxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<TcpStream>,
        tungstenite::handshake::client::Response,
    ),
    tungstenite::Error,
> {
    let mut req = format!("ws://{}{path}", proxy.host())
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    let stream = TcpStream::connect(proxy.addr()).await.unwrap();
    tokio::time::timeout(SHORT, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("websocket handshake timed out")
}

/// Sends text and binary messages (one of 300 kB) and expects each back.
async fn echo_round_trips(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) {
    let big: Vec<u8> = (0..300_000_u64).map(pattern_byte).collect();
    for msg in [
        Message::text("hello through gatehouse"),
        Message::binary(vec![0_u8, 1, 2, 255]),
        Message::binary(big),
        Message::text("ünïcödé ✓"),
    ] {
        tokio::time::timeout(SHORT, ws.send(msg.clone()))
            .await
            .expect("send timed out")
            .unwrap();
        let echoed = tokio::time::timeout(SHORT, ws.next())
            .await
            .expect("no echo in time")
            .expect("stream ended")
            .unwrap();
        assert_eq!(echoed, msg);
    }
    tokio::time::timeout(SHORT, ws.close(None))
        .await
        .expect("close timed out")
        .unwrap();
}

#[tokio::test]
async fn websocket_echo_passes_through() {
    let s = signed_in("").await;
    let cookie = cookie_header(&s.client, &s.proxy);
    // tungstenite's own handshake, then Firefox's `Connection: keep-alive, Upgrade`
    let styles: [&[(&str, &str)]; 2] = [
        &[("cookie", &cookie)],
        &[
            ("cookie", &cookie),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ],
    ];
    for (i, headers) in styles.into_iter().enumerate() {
        let (mut ws, resp) = ws_connect(&s.proxy, "/__ws", headers)
            .await
            .unwrap_or_else(|e| panic!("signed-in websocket handshake {headers:?}: {e}"));
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        echo_round_trips(&mut ws).await;

        let seen = s.upstream.requests_to("/__ws");
        assert_eq!(seen.len(), i + 1);
        let seen = &seen[i];
        assert_eq!(seen.header("upgrade"), Some("websocket"));
        assert_eq!(seen.header("connection"), Some("upgrade"));
        assert!(!seen.headers.contains_key("keep-alive"));
        assert_eq!(
            seen.header("x-forwarded-user"),
            Some("uid-alice-0001"),
            "{:?}",
            seen.headers
        );
        let upstream_cookie = seen.header("cookie").unwrap_or_default();
        assert!(
            !upstream_cookie.contains(SESSION_COOKIE),
            "the session cookie reached the upstream: {upstream_cookie}"
        );
    }

    // without a session the upgrade is refused, and never reaches the upstream
    match ws_connect(&s.proxy, "/__ws", &[]).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        Err(e) => panic!("expected a 401 answer to the handshake, got {e}"),
        Ok((_, resp)) => panic!("upgraded without a session: {}", resp.status()),
    }
    assert_eq!(s.upstream.requests_to("/__ws").len(), 2);
}

// === HTTP/2 ===

#[tokio::test]
async fn h2c_requests_are_served_and_forwarded() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let client = TestClient::h2c();
    login(&client, &proxy, "/h2c/page?x=1").await;

    let req = Request::get(proxy.url("/h2c/page?x=1"))
        .header(ACCEPT, ACCEPT_HTML)
        .body(empty())
        .unwrap();
    let resp = tokio::time::timeout(SHORT, client.send(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("Signed in as <b>alice</b>"), "{page}");

    let seen = upstream.last().unwrap();
    assert_eq!(seen.uri.to_string(), "/h2c/page?x=1");
    assert_eq!(seen.header("x-forwarded-host"), Some(proxy.host().as_str()));
    assert_eq!(seen.header("host"), Some(proxy.host().as_str()));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-preferred-username"), Some("alice"));

    // a request body over h2c reaches the upstream intact
    let payload: Vec<u8> = (0..1_000_003_u64).map(pattern_byte).collect();
    let req = Request::put(proxy.url("/__upload"))
        .header(ACCEPT, "application/json")
        .body(full(payload.clone()))
        .unwrap();
    let resp = tokio::time::timeout(SHORT, client.send(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = upstream.last().unwrap();
    assert_eq!(seen.method, Method::PUT);
    assert_eq!(seen.body_len, payload.len() as u64);
    assert_eq!(seen.body_sha256, sha256_hex(&payload));
}

/// What a TLS exchange answered.
struct TlsAnswer {
    version: Version,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A TLS client trusting only the committed test certificate, offering
/// `alpn`.
fn tls_connector(alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(TLS_CERT).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// One request over a fresh TLS connection to `addr`, as HTTP/2 when `h2`
/// (ALPN `h2`, which the server must pick) else HTTP/1.1 (ALPN `http/1.1`).
async fn tls_request(
    addr: SocketAddr,
    h2: bool,
    path: &str,
    headers: &[(&str, &str)],
) -> TlsAnswer {
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::from(addr.ip());
        let tls = tls_connector(&[alpn]).connect(name, tcp).await.unwrap();
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(alpn),
            "the server negotiated another protocol"
        );
        let io = TokioIo::new(tls);
        let mut req = if h2 {
            Request::get(format!("https://{addr}{path}"))
        } else {
            Request::get(path).header(HOST, addr.to_string())
        };
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let resp = if h2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            let resp = send.send_request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            conn.abort();
            Response::from_parts(parts, body)
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            let conn = tokio::spawn(conn);
            let resp = send.send_request(req).await.unwrap();
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            conn.abort();
            Response::from_parts(parts, body)
        };
        let (parts, body) = resp.into_parts();
        TlsAnswer {
            version: parts.version,
            status: parts.status,
            headers: parts.headers,
            body,
        }
    };
    tokio::time::timeout(SHORT, exchange)
        .await
        .unwrap_or_else(|_elapsed| panic!("TLS request for {path} timed out"))
}

/// A browser's cookie jar for the one TLS origin: name → value.
fn apply_set_cookies(jar: &mut BTreeMap<String, String>, headers: &HeaderMap) {
    for value in headers.get_all(http::header::SET_COOKIE) {
        let parsed = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
        let removed = parsed.value().is_empty()
            || parsed
                .max_age()
                .is_some_and(|a| a.is_zero() || a.is_negative());
        if removed {
            jar.remove(parsed.name());
        } else {
            jar.insert(parsed.name().to_owned(), parsed.value().to_owned());
        }
    }
}

/// The headers every answer gatehouse writes itself carries over TLS.
fn assert_own_tls_answer(headers: &HeaderMap, what: &str) {
    for (name, value) in [
        ("strict-transport-security", "max-age=31536000"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(
            headers.get(name).map(|v| v.to_str().unwrap()),
            Some(value),
            "{name} on {what}"
        );
    }
}

fn jar_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn tls_with_alpn_h2_serves_http2() {
    let idp = MockIdp::start(IdpOptions {
        redirect_uris: vec!["https://127.0.0.1/oauth2/callback".to_owned()],
        ..IdpOptions::auto_approving("alice")
    })
    .await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::builder(&idp, &upstream)
        .set("tls_cert_file", TLS_CERT)
        .set("tls_key_file", TLS_KEY)
        .set("cookie_secure", true)
        .set("redirect_url", "https://127.0.0.1:{PORT}/oauth2/callback")
        .no_wait() // its ready probe speaks plain HTTP
        .start()
        .await;
    let addr = proxy.addr();
    let deadline = Instant::now() + SHORT;
    while !proxy.server().ready() {
        assert!(Instant::now() < deadline, "provider never discovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let ping = tls_request(addr, true, "/ping", &[]).await;
    assert_eq!(
        (ping.version, ping.status),
        (Version::HTTP_2, StatusCode::OK)
    );
    let ping = tls_request(addr, false, "/ping", &[]).await;
    assert_eq!(
        (ping.version, ping.status),
        (Version::HTTP_11, StatusCode::OK)
    );
    // issue 9 item 17: gatehouse's own answers over TLS carry HSTS and the
    // no-sniff, no-framing, no-store headers; its pages deny framing by CSP too
    assert_own_tls_answer(&ping.headers, "/ping");
    let error_page = tls_request(addr, true, "/oauth2/callback", &[("accept", ACCEPT_HTML)]).await;
    assert_eq!(error_page.status, StatusCode::BAD_REQUEST);
    assert_own_tls_answer(&error_page.headers, "error page");
    assert_eq!(
        error_page.headers["content-security-policy"],
        "frame-ancestors 'none'"
    );

    // the browser login, over h2 at the proxy and plain HTTP at the IdP
    let origin = format!("https://{addr}");
    let idp_client = TestClient::new();
    let mut jar = BTreeMap::new();
    let mut url = Url::parse(&format!("{origin}/tls/page")).unwrap();
    let mut visited = Vec::new();
    let mut set_cookies: Vec<cookie::Cookie<'static>> = Vec::new();
    let page = loop {
        assert!(visited.len() < 8, "too many redirects: {visited:?}");
        visited.push(url.path().to_owned());
        let (status, location) = if url.as_str().starts_with(&origin) {
            let target = &url[url::Position::BeforePath..];
            let cookie = jar_header(&jar);
            let mut headers = vec![("accept", ACCEPT_HTML)];
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.as_str()));
            }
            let resp = tls_request(addr, true, target, &headers).await;
            if resp.status != StatusCode::OK {
                // gatehouse's own redirects
                assert_own_tls_answer(&resp.headers, target);
            }
            apply_set_cookies(&mut jar, &resp.headers);
            for value in resp.headers.get_all(http::header::SET_COOKIE) {
                let c = cookie::Cookie::parse(value.to_str().unwrap().to_owned()).unwrap();
                set_cookies.push(c);
            }
            if resp.status == StatusCode::OK {
                break resp;
            }
            let location = resp.headers.get("location").map(|l| l.to_str().unwrap());
            (resp.status, location.map(str::to_owned))
        } else {
            let resp = idp_client.get(url.as_str()).await;
            (resp.status, resp.location())
        };
        assert!(status.is_redirection(), "{url} answered {status}");
        url = url
            .join(&location.expect("redirect without Location"))
            .unwrap();
    };
    assert!(
        visited.iter().any(|p| p == "/authorize")
            && visited.iter().any(|p| p == "/oauth2/callback"),
        "login went {visited:?}"
    );
    assert_eq!(page.version, Version::HTTP_2);
    // the upstream's answer is passed on as it is: no HSTS or framing
    // headers added by gatehouse
    for name in [
        "strict-transport-security",
        "x-frame-options",
        "content-security-policy",
    ] {
        assert!(
            !page.headers.contains_key(name),
            "{name} on a proxied answer"
        );
    }
    // README: cookies are Secure (the default) and HttpOnly; the login
    // state and the session were both set here, under the `__Host-` name
    // that Secure without a cookie_domain gets by default (issue 9)
    let name = "__Host-gatehouse";
    assert!(
        set_cookies.iter().any(|c| c.name() == name)
            && set_cookies
                .iter()
                .any(|c| c.name().starts_with(&format!("{name}_csrf_"))),
        "{set_cookies:?}"
    );
    for c in &set_cookies {
        assert_eq!(c.secure(), Some(true), "not Secure under TLS: {c}");
        assert_eq!(c.http_only(), Some(true), "{c}");
        assert_eq!(c.path(), Some("/"), "{c}");
        assert_eq!(c.domain(), None, "{c}");
    }
    let text = String::from_utf8_lossy(&page.body);
    assert!(text.contains("Signed in as <b>alice</b>"), "{text}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.path(), "/tls/page");
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(addr.to_string().as_str())
    );

    // the same session over HTTP/1.1 inside TLS
    let cookie = jar_header(&jar);
    let headers = [("accept", "application/json"), ("cookie", cookie.as_str())];
    let resp = tls_request(addr, false, "/__json", &headers).await;
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&resp.body)
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["headers"]["x-forwarded-proto"], "https");
    assert_eq!(json["headers"]["x-forwarded-preferred-username"], "alice");
}

// === failures ===

#[tokio::test]
async fn unreachable_upstream_gets_502_and_slow_upstream_gets_504() {
    let dead = free_port();
    let s = signed_in_with(|up| {
        format!(
            "upstream = [\"{}\", \"/dead=http://127.0.0.1:{dead}\"]\nupstream_timeout = \"300ms\"",
            up.url()
        )
    })
    .await;
    let url = |path: &str| s.proxy.url(path);

    let page = s.client.get(&url("/dead/page")).await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.text());
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    let text = page.text();
    assert!(text.contains("The application is not reachable"), "{text}");
    assert!(page.body.len() < 2048, "not a short page: {text}");
    assert!(
        !text.contains(&dead.to_string()),
        "the page leaks the upstream's address: {text}"
    );
    let api = s.client.get_api(&url("/dead/page")).await;
    assert_eq!(api.status, StatusCode::BAD_GATEWAY);
    assert_eq!(api.json()["error"], "upstream_unavailable");

    let started = Instant::now();
    let page = s.client.get(&url("/__slow?ms=3000")).await;
    let waited = started.elapsed();
    assert_eq!(page.status, StatusCode::GATEWAY_TIMEOUT, "{}", page.text());
    assert!(waited < Duration::from_millis(2500), "504 after {waited:?}");
    assert!(
        page.text()
            .contains("The application did not answer in time"),
        "{}",
        page.text()
    );
    assert!(page.body.len() < 2048, "not a short page: {}", page.text());
    let api = s.client.get_api(&url("/__slow?ms=3000")).await;
    assert_eq!(api.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(api.json()["error"], "upstream_timeout");

    // a prompt upstream is still served under the short timeout
    let ok = s.client.get(&url("/__slow?ms=10")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

// === headers ===

/// An HTTP/1.1 upstream that answers every request with `answer()`.
struct FixedUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FixedUpstream {
    async fn start(answer: fn() -> Response<ClientBody>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // dropped with the accept loop, closing every connection
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| async move {
                        Ok::<_, Infallible>(answer())
                    });
                    // an error here is the proxy or the answer hanging up
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FixedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An answer carrying hop-by-hop headers, and one kept header.
fn hop_by_hop_answer() -> Response<ClientBody> {
    let mut resp = Response::new(full("hop\n"));
    for (name, value) in [
        ("connection", "x-upstream-secret"),
        ("x-upstream-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authenticate", "Basic realm=\"upstream\""),
        ("x-upstream-kept", "yes"),
    ] {
        resp.headers_mut().insert(name, value.parse().unwrap());
    }
    resp
}

/// A chunked answer that breaks off a moment after its first chunk.
fn truncated_answer() -> Response<ClientBody> {
    let frames: [Result<Frame<Bytes>, BoxError>; 2] = [
        Ok(Frame::data(Bytes::from_static(b"the first part"))),
        Err("upstream died".into()),
    ];
    let body = futures_util::stream::iter(frames).then(|frame| async move {
        if frame.is_err() {
            // the head and the first chunk are on their way first
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        frame
    });
    Response::new(BodyExt::boxed(StreamBody::new(body)))
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_set() {
    let hop = FixedUpstream::start(hop_by_hop_answer).await;
    let s =
        signed_in_with(|up| format!("upstream = [\"{}\", \"/hop={}\"]", up.url(), hop.url())).await;
    let host = s.proxy.host();

    let hop_headers = [
        ("connection", "keep-alive, x-drop-me"),
        ("x-drop-me", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("proxy-authorization", "x"),
    ];
    let mut sent = hop_headers.to_vec();
    sent.extend([("x-keep-me", "yes"), ("x-forwarded-for", "1.2.3.4")]);
    // control: the test client really sends them (straight to the upstream)
    s.client
        .get_with(&format!("{}/direct", s.upstream.url()), &sent)
        .await;
    let direct = s.upstream.last().unwrap();
    for (name, value) in hop_headers {
        assert_eq!(direct.header(name), Some(value), "{:?}", direct.headers);
    }

    let resp = s.client.get_with(&s.proxy.url("/page"), &sent).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/page");
    for name in [
        "connection",
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-keep-me"), Some("yes"));
    // the peer (loopback) is trusted by default: the chain it sent is kept
    assert_eq!(seen.header_all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));

    // hop-by-hop headers in the upstream's answer stop at the proxy too
    // (control: the upstream really sends them)
    let direct = s.client.get(&format!("{}/hop/x", hop.url())).await;
    assert_eq!(direct.header("x-upstream-secret"), Some("1"));
    assert_eq!(direct.header("keep-alive"), Some("timeout=5"));
    assert!(direct.headers.contains_key("proxy-authenticate"));
    let resp = s.client.get(&s.proxy.url("/hop/x")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.header("x-upstream-kept"), Some("yes"));
    for name in ["x-upstream-secret", "keep-alive", "proxy-authenticate"] {
        assert!(
            !resp.headers.contains_key(name),
            "{name} reached the client: {:?}",
            resp.headers
        );
    }
    let connection = resp.header("connection").unwrap_or_default();
    assert!(
        !connection.contains("x-upstream-secret"),
        "connection: {connection}"
    );

    // a peer outside trusted_proxy cannot claim a chain, a scheme or a host
    let untrusted = TestProxy::start("trusted_proxy = [\"10.0.0.0/8\"]", &s.idp, &s.upstream).await;
    let client = TestClient::new();
    login(&client, &untrusted, "/").await;
    let resp = client
        .get_with(
            &untrusted.url("/spoof"),
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/spoof");
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), ["http"]);
    let untrusted_host = untrusted.host();
    assert_eq!(
        seen.header_all("x-forwarded-host"),
        [untrusted_host.as_str()]
    );
    assert_eq!(seen.header("host"), Some(untrusted_host.as_str()));
}

/// Identity headers a client tries to slip in as request trailers, and one
/// harmless trailer.
const TRAILERS: [(&str, &str); 5] = [
    ("x-forwarded-user", "admin"),
    ("x-forwarded_email", "admin@example.com"),
    ("x-auth-request-groups", "admins"),
    ("x-forwarded-access-token", "forged"),
    ("x-checksum", "abc123"),
];

/// POSTs a small body to `/__upload` at `addr` with [`TRAILERS`] after it
/// (declared in `Trailer`, as HTTP/1.1 needs), over HTTP/2 with prior
/// knowledge (h2c) when `h2`, else chunked HTTP/1.1. Returns the status.
async fn post_with_trailers(addr: SocketAddr, h2: bool, cookie: &str) -> StatusCode {
    let mut trailers = HeaderMap::new();
    for (name, value) in TRAILERS {
        trailers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let declared = TRAILERS.map(|(n, _)| n).join(", ");
    let frames: [Result<Frame<Bytes>, Infallible>; 2] = [
        Ok(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let mut req = Request::post(format!("http://{addr}/__upload"))
        .header(ACCEPT, "application/json")
        .header("trailer", declared)
        .header("cookie", cookie);
    if !h2 {
        req = req
            .uri("/__upload")
            .header(HOST, addr.to_string())
            .header("transfer-encoding", "chunked");
    }
    let req = req.body(body).unwrap();
    let exchange = async {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        let resp = if h2 {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            let resp = send.send_request(req).await.unwrap();
            conn.abort();
            resp
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            let conn = tokio::spawn(conn);
            let resp = send.send_request(req).await.unwrap();
            conn.abort();
            resp
        };
        resp.status()
    };
    tokio::time::timeout(SHORT, exchange).await.unwrap()
}

#[tokio::test]
async fn identity_headers_sent_as_request_trailers_never_reach_the_upstream() {
    let s = signed_in("").await;
    let cookie = cookie_header(&s.client, &s.proxy);
    for h2 in [false, true] {
        let how = if h2 { "HTTP/2" } else { "chunked HTTP/1.1" };
        // control: sent straight to the upstream, the trailers arrive and
        // are recorded
        let direct = post_with_trailers(s.upstream.addr(), h2, &cookie).await;
        assert_eq!(direct, StatusCode::OK, "{how}");
        let seen = s.upstream.last().unwrap();
        for (name, value) in TRAILERS {
            assert_eq!(
                seen.trailers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{how}: the control lost {name}: {:?}",
                seen.trailers
            );
        }

        let status = post_with_trailers(s.proxy.addr(), h2, &cookie).await;
        assert_eq!(status, StatusCode::OK, "{how}");
        let seen = s.upstream.last().unwrap();
        assert_eq!(seen.body_len, 7, "{how}: the body passed");
        for (name, _) in &TRAILERS[..4] {
            assert!(
                !seen.trailers.contains_key(*name),
                "{how}: trailer {name} reached the upstream: {:?}",
                seen.trailers
            );
        }
        // nor were they folded into the head
        assert_eq!(
            seen.header_all("x-forwarded-user"),
            [sub_of_alice(&s.idp).as_str()],
            "{how}"
        );
        assert!(seen.header("x-forwarded-access-token").is_none(), "{how}");
        assert!(seen.header("x-auth-request-groups").is_none(), "{how}");
    }
}

fn sub_of_alice(idp: &MockIdp) -> String {
    idp.options()
        .users
        .iter()
        .find(|u| u.username == "alice")
        .unwrap()
        .sub
        .clone()
}

// === routing and rewriting ===

#[tokio::test]
async fn longest_prefix_routes_to_the_right_upstream() {
    let api = Recorder::start().await;
    let s =
        signed_in_with(|up| format!("upstream = [\"{}\", \"/api={}\"]", up.url(), api.url())).await;
    for path in ["/api/x?q=1", "/api", "/apix", "/", "/api/"] {
        let resp = s.client.get_api(&s.proxy.url(path)).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}: {}", resp.text());
    }
    let uris =
        |r: &Recorder| -> Vec<String> { r.requests().iter().map(|q| q.uri.to_string()).collect() };
    assert_eq!(uris(&api), ["/api/x?q=1", "/api", "/api/"]);
    assert_eq!(uris(&s.upstream), ["/apix", "/"]);
}

#[tokio::test]
async fn host_header_is_kept_or_replaced_per_setting() {
    let s = signed_in("").await;
    let kept = s.client.get(&s.proxy.url("/kept")).await;
    assert_eq!(kept.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.header("host"), Some(s.proxy.host().as_str()));
    s.client
        .get_with(&s.proxy.url("/kept"), &[("host", "app.example:8443")])
        .await;
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.header("host"), Some("app.example:8443"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example:8443"));

    let replacing = TestProxy::start("pass_host_header = false", &s.idp, &s.upstream).await;
    let client = TestClient::new();
    login(&client, &replacing, "/").await;
    let resp = client
        .get_with(&replacing.url("/replaced"), &[("host", "app.example:8443")])
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/replaced");
    let upstream_authority = s.upstream.addr().to_string();
    assert_eq!(seen.header("host"), Some(upstream_authority.as_str()));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example:8443"));
}

#[tokio::test]
async fn request_bodies_of_other_methods_are_forwarded_intact() {
    let s = signed_in("").await;
    for (method, path) in [
        (Method::POST, "/__upload"),
        (Method::PUT, "/__upload"),
        (Method::PATCH, "/items/7?v=2"),
        (Method::DELETE, "/items/7"),
    ] {
        let mut body = format!("{method} {path} ünïcödé\r\n").into_bytes();
        body.extend([0_u8, 255, 13, 10, 0]);
        let resp = s
            .client
            .request(
                method.clone(),
                &s.proxy.url(path),
                &[
                    ("content-type", "application/octet-stream"),
                    ("accept", "application/json"),
                ],
                Some(Bytes::from(body.clone())),
            )
            .await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "{method} {path}: {}",
            resp.text()
        );
        let seen = s.upstream.last().unwrap();
        assert_eq!(seen.method, method);
        assert_eq!(seen.uri.to_string(), path);
        assert_eq!(
            seen.header("content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(seen.body_len, body.len() as u64, "{method} {path}");
        assert_eq!(seen.body_sha256, sha256_hex(&body), "{method} {path}");
    }

    // the upstream's status, body and headers come back as they were
    for code in [201_u16, 404, 503] {
        let resp = s
            .client
            .request(
                Method::POST,
                &s.proxy.url(&format!("/__status?code={code}")),
                &[("accept", "application/json")],
                Some(Bytes::from_static(b"{}")),
            )
            .await;
        assert_eq!(resp.status.as_u16(), code);
        let status = StatusCode::from_u16(code).unwrap();
        assert_eq!(
            resp.text(),
            format!("status {status}\n"),
            "the upstream's own body"
        );
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("c", "app_theme=dark; Path=/")
        .append_pair("c", "app_lang=en; Path=/")
        .finish();
    let resp = s
        .client
        .get_api(&s.proxy.url(&format!("/__set_cookie?{query}")))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let names: Vec<String> = resp
        .set_cookies()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    assert_eq!(names, ["app_theme", "app_lang"]);
    // and the application's cookies go back to it, the session's never
    s.client.get_api(&s.proxy.url("/after")).await;
    let cookie = s
        .upstream
        .last()
        .unwrap()
        .header("cookie")
        .unwrap_or_default()
        .to_owned();
    assert!(
        cookie.contains("app_theme=dark") && cookie.contains("app_lang=en"),
        "{cookie}"
    );
    assert!(!cookie.contains(SESSION_COOKIE), "{cookie}");
}

#[tokio::test]
async fn truncated_bodies_stay_truncated_in_both_directions() {
    let cut = FixedUpstream::start(truncated_answer).await;
    let s =
        signed_in_with(|up| format!("upstream = [\"{}\", \"/cut={}\"]", up.url(), cut.url())).await;

    // the client gives up mid-upload (chunked, so only the ending tells)
    let frames: [Result<Frame<Bytes>, BoxError>; 2] = [
        Ok(Frame::data(Bytes::from(vec![7_u8; 100_000]))),
        Err("client gave up".into()),
    ];
    let body = futures_util::stream::iter(frames).then(|frame| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        frame
    });
    let req = Request::post(s.proxy.url("/__upload"))
        .header(ACCEPT, "application/json")
        .body(BodyExt::boxed(StreamBody::new(body)))
        .unwrap();
    let sent = tokio::time::timeout(SHORT, s.client.send(req))
        .await
        .unwrap();
    assert!(sent.is_err(), "{:?}", sent.map(|r| r.status()));
    let deadline = Instant::now() + SHORT;
    let seen = loop {
        if let Some(seen) = s.upstream.requests_to("/__upload").pop() {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "the upload never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !seen.body_complete,
        "a truncated upload reached the upstream as a complete {}-byte body",
        seen.body_len
    );

    // the upstream gives up mid-answer: the client must see an error, not an end
    let req = Request::get(s.proxy.url("/cut/x")).body(empty()).unwrap();
    let read = async {
        let resp = s.client.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await
    };
    let body = tokio::time::timeout(SHORT, read).await.unwrap();
    assert!(
        body.is_err(),
        "a truncated answer reached the client as complete: {:?}",
        body.map(|b| b.to_bytes())
    );
}

// === edge cases of the forwarding rules ===

/// RFC 9110 7.6.1: intermediaries remove `Proxy-Connection` even when
/// `Connection` does not name it (it is in `HOP_BY_HOP` in
/// `src/http/headers.rs`).
#[tokio::test]
async fn legacy_proxy_connection_header_is_not_forwarded() {
    let s = signed_in("").await;
    let resp = s
        .client
        .get_with(&s.proxy.url("/p"), &[("proxy-connection", "keep-alive")])
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert!(
        !seen.headers.contains_key("proxy-connection"),
        "{:?}",
        seen.headers
    );
}

/// `upstream_timeout` is for the upstream's answer: the clock must not run
/// while the request body is still streaming, or every upload taking longer
/// than the timeout (30 s by default) would get a 504.
#[tokio::test]
async fn an_upload_still_streaming_is_not_cut_off_by_the_upstream_timeout() {
    let s = signed_in("upstream_timeout = \"1s\"").await;
    // 2 s of upload: a 10 kB chunk every 100 ms
    let frames = (0..20).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![7_u8; 10_000]))));
    let body = futures_util::stream::iter(frames).then(|frame| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        frame
    });
    let req = Request::post(s.proxy.url("/__upload"))
        .header(ACCEPT, "application/json")
        .body(BodyExt::boxed(StreamBody::new(body)))
        .unwrap();
    let resp = tokio::time::timeout(SHORT, s.client.send(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a steady upload was cut off");
    assert_eq!(s.upstream.last().unwrap().body_len, 200_000);
}

// === Cookies (issue 9, items 11 and 12) ===

#[tokio::test]
async fn a_malformed_or_non_ascii_cookie_pair_costs_the_app_only_that_pair() {
    let s = signed_in("").await;
    let jar = cookie_header(&s.client, &s.proxy);
    let mut raw =
        format!("app_theme=dark; {jar}; caf\u{e9}=cr\u{e8}me; broken; app_lang=en").into_bytes();
    raw.extend_from_slice(b"; bin=\xff\xfe; =x; app_id=7");
    let req = Request::get(s.proxy.url("/cookies"))
        .header(ACCEPT, "application/json")
        .header(
            http::header::COOKIE,
            http::HeaderValue::from_bytes(&raw).unwrap(),
        )
        .body(empty())
        .unwrap();
    let resp = s.client.send(req).await.unwrap();
    // the session is still read from the header
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/cookies");
    assert!(
        seen.header("x-forwarded-user")
            .is_some_and(|u| !u.is_empty())
    );
    // and the application's other cookies arrive intact, gatehouse's never
    let cookies: Vec<&[u8]> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    assert_eq!(
        cookies,
        [b"app_theme=dark; app_lang=en; app_id=7".as_slice()]
    );
}

#[tokio::test]
async fn an_upstream_cannot_set_replace_or_clear_gatehouses_cookies() {
    let s = signed_in("").await;
    let before = s.client.cookies_for(&s.proxy.host());
    assert!(before.contains_key(SESSION_COOKIE), "{before:?}");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("c", "_gatehouse=forged; Path=/")
        .append_pair("c", "_gatehouse=; Max-Age=0; Path=/")
        .append_pair("c", " _gatehouse =spaced; Path=/")
        .append_pair("c", "_gatehouse_0=chunk; Path=/")
        .append_pair("c", "_gatehouse_1=chunk; Path=/")
        .append_pair("c", "_gatehouse_csrf_abc=login; Path=/")
        .append_pair("c", "app_theme=dark; Path=/")
        .append_pair("c", "_gatehouse_app=kept; Path=/")
        .finish();
    let resp = s
        .client
        .get_api(&s.proxy.url(&format!("/__set_cookie?{query}")))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let set: Vec<&str> = resp
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        set,
        ["app_theme=dark; Path=/", "_gatehouse_app=kept; Path=/"]
    );
    // the session is untouched and still signs the browser in
    let mut after = s.client.cookies_for(&s.proxy.host());
    assert_eq!(after.remove("app_theme").as_deref(), Some("dark"));
    assert_eq!(after.remove("_gatehouse_app").as_deref(), Some("kept"));
    assert_eq!(after, before);
    let again = s.client.get_api(&s.proxy.url("/after")).await;
    assert_eq!(again.status, StatusCode::OK);
}

// === request hardening (issue 9, items 13 and 15) ===

/// Spellings of protected headers a server or framework might fold into
/// the real name: any case, `_` or `.` for `-`.
const SPOOFED: &[&str] = &[
    "x-forwarded-user",
    "X_Forwarded_User",
    "x.forwarded.email",
    "X-Forwarded-Preferred_Username",
    "x_forwarded_groups",
    "x-forwarded-name",
    "x.forwarded.email.verified",
    "x-forwarded-access-token",
    "x_auth_request_user",
    "X.Auth.Request.Email",
    "gap-auth",
    "GAP_Auth",
    "x-id-token",
    "x.id.token",
    "x-user-mail",
    "X_User_Mail",
    "x.dept",
    "x-dept",
];

/// The forwarding family in several spellings: from a peer outside
/// `trusted_proxy`, none may reach the application.
const FORWARDING: &[&str] = &[
    "x_forwarded_for",
    "x.forwarded.proto",
    "x-forwarded-port",
    "X_Forwarded_Port",
    "x-forwarded-prefix",
    "x.forwarded.prefix",
    "x-forwarded-uri",
    "x-real-ip",
    "X_Real_IP",
    "x.real.ip",
    "x-original-url",
    "x_original_url",
    "forwarded",
];

#[tokio::test]
async fn every_spelling_of_identity_claim_and_forwarding_headers_is_stripped_and_claims_always_sent()
 {
    let s = signed_in(
        "trusted_proxy = [\"10.0.0.0/8\"]\n\
         claim_header = [\"X-User-Mail=email\", \"X-Dept=department\"]",
    )
    .await;
    let headers: Vec<(&str, &str)> = SPOOFED
        .iter()
        .chain(FORWARDING)
        .map(|n| (*n, "forged"))
        .chain([("x-keep-me", "yes")])
        .collect();
    // control: the client really sends every spelling (straight to the
    // upstream)
    s.client
        .get_with(&format!("{}/direct", s.upstream.url()), &headers)
        .await;
    let direct = s.upstream.last().unwrap();
    for (name, _) in &headers {
        assert_eq!(
            direct.header(name),
            Some(if *name == "x-keep-me" {
                "yes"
            } else {
                "forged"
            }),
            "control lost {name}"
        );
    }

    let resp = s.client.get_with(&s.proxy.url("/page"), &headers).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.path(), "/page");
    for (name, value) in seen.headers.iter() {
        assert_ne!(
            value, "forged",
            "{name} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-keep-me"), Some("yes"));
    assert_eq!(seen.header_all("x-forwarded-user"), [sub_of_alice(&s.idp)]);
    // the mapped claim is sent; an absent one is sent empty, not left out
    let mail = seen.header_all("x-user-mail");
    assert_eq!(mail.len(), 1, "{:?}", seen.headers);
    assert!(mail[0].contains('@'), "{mail:?}");
    assert_eq!(seen.header_all("x-dept"), [""], "{:?}", seen.headers);
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn aliases_of_forwarding_headers_are_stripped_even_from_a_trusted_proxy() {
    // loopback is trusted by default: its own X-Forwarded-For is kept, its
    // `_`/`.` spellings (which no proxy sends) are not
    let s = signed_in("").await;
    let resp = s
        .client
        .get_with(
            &s.proxy.url("/page"),
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x_forwarded_for", "6.6.6.6"),
                ("x.real.ip", "6.6.6.6"),
                ("X_Forwarded_Prefix", "/evil"),
            ],
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let seen = s.upstream.last().unwrap();
    assert_eq!(seen.header_all("x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    for name in ["x_forwarded_for", "x.real.ip", "x_forwarded_prefix"] {
        assert!(seen.header(name).is_none(), "{name}: {:?}", seen.headers);
    }
}

/// Sends `request` as raw bytes to `addr` (no client library to tidy it
/// up) and returns the status code of the answer.
async fn raw_status(addr: SocketAddr, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // the status line is enough; the answer closes (Connection: close)
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"))
    };
    tokio::time::timeout(SHORT, exchange).await.unwrap()
}

#[tokio::test]
async fn ambiguous_request_targets_are_refused_before_the_upstream_sees_them() {
    let s = signed_in("").await;
    let cookie = cookie_header(&s.client, &s.proxy);
    let host = s.proxy.host();
    let addr = s.proxy.addr();
    let req = |method: &str, target: &str, extra: &str| {
        format!(
            "{method} {target} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    // control: a plain path over the same raw connection reaches the app
    s.upstream.clear();
    assert_eq!(raw_status(addr, &req("GET", "/a/b", "")).await, 200);
    assert_eq!(s.upstream.last().unwrap().path(), "/a/b");
    let absolute = format!("http://{host}/a/b");
    assert_eq!(raw_status(addr, &req("GET", &absolute, "")).await, 200);
    s.upstream.clear();

    let cases: Vec<(String, u16)> = vec![
        (req("GET", "/a/b", &format!("Host: {host}\r\n")), 400),
        (req("GET", "/a/b", "Host: other.example\r\n"), 400),
        (req("GET", "http://other.example/a/b", ""), 400),
        (req("GET", "/a/../b", ""), 400),
        (req("GET", "/a/%2e%2e/b", ""), 400),
        (req("GET", "/a/%2E%2e/b", ""), 400),
        (req("GET", "/a/.%2e/b?x=1", ""), 400),
        (req("GET", "/a/./b", ""), 400),
        (req("GET", "/a%2fb", ""), 400),
        (req("GET", "/a%2F..%2Fb", ""), 400),
        (req("GET", "/a%5cb", ""), 400),
        (req("GET", "/..;/b", ""), 400),
        (req("GET", "/a%00b", ""), 400),
        (req("TRACE", "/a/b", ""), 405),
        (req("CONNECT", &host, ""), 405),
    ];
    for (request, want) in &cases {
        let got = raw_status(addr, request).await;
        assert_eq!(got, *want, "{request:?}");
    }
    assert_eq!(
        s.upstream.count(),
        0,
        "reached the upstream: {:?}",
        s.upstream
            .requests()
            .iter()
            .map(|r| r.path().to_owned())
            .collect::<Vec<_>>()
    );
}
