//! `Recorder`: the upstream application behind gatehouse in tests and the demo.
//!
//! It records every request it receives (method, URI, headers, peer, body
//! length and SHA-256) so tests assert on what the upstream *saw*, and answers:
//!
//! - `/__json`: the request as JSON (any method)
//! - `GET /__download?bytes=N`: N bytes of [`pattern_byte`], streamed in
//!   64 KiB chunks without allocating N bytes (`&chunked=1`: no
//!   `content-length`)
//! - `POST|PUT /__upload`: `{"bytes":N,"sha256":"hex"}` of the streamed body
//! - `GET /__ws`: WebSocket echo (text and binary)
//! - `/__slow?ms=N`: answers after N ms (at most 60 s)
//! - `/__early`: answers 200 at once and reads the body after (recorded
//!   when it ends)
//! - `/__status?code=N`: answers status N
//! - `/__redirect?to=URL`: 302 to URL
//! - `/__set_cookie?c=SET-COOKIE[&c=..]`: 200 with those `Set-Cookie` headers
//! - anything else: an HTML page listing the request headers, identity headers
//!   highlighted
//!
//! Request bodies are hashed while streaming and never buffered whole. Nothing
//! here panics on network input. Serves HTTP/1.1 and h2c, upgrades enabled.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use ring::digest::{Context, SHA256};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Size of each chunk `/__download` sends.
pub const DOWNLOAD_CHUNK: usize = 64 * 1024;
/// Identity headers the HTML page highlights.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
];
/// Longest header value the HTML page shows in full.
const MAX_SHOWN_VALUE: usize = 200;
const PATTERN_PERIOD: usize = 251;

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    /// The TCP peer (the proxy's address for proxied requests).
    pub peer: SocketAddr,
    pub body_len: u64,
    /// Lowercase hex SHA-256 of the body bytes received.
    pub body_sha256: String,
    /// `false` if the body ended with an error (e.g. the sender aborted).
    pub body_complete: bool,
    /// The request's trailers (chunked HTTP/1.1 or HTTP/2), merged if sent
    /// in several frames; empty when there were none.
    pub trailers: HeaderMap,
}

/// The running upstream. Dropping it stops the server and every connection.
pub struct Recorder {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

struct State {
    requests: Mutex<Vec<RecordedRequest>>,
    /// WebSocket echo tasks; dropped (and so aborted) with the last connection
    websockets: Mutex<JoinSet<()>>,
}

type Body = BoxBody<Bytes, Infallible>;

// === impl RecordedRequest ===

impl RecordedRequest {
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// First value of `name` as text; `None` if absent or not visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }
}

// === impl Recorder ===

impl Recorder {
    /// Starts the upstream on `127.0.0.1:0`. Panics if it cannot bind.
    #[cfg(test)]
    pub async fn start() -> Self {
        Self::try_start()
            .await
            .expect("recorder upstream failed to start")
    }

    /// Starts the upstream on `127.0.0.1:0`.
    pub async fn try_start() -> io::Result<Self> {
        Self::try_start_on("127.0.0.1:0".parse().map_err(io::Error::other)?).await
    }

    /// Starts the upstream on `addr`, e.g. where a stopped one was (an
    /// upstream coming back).
    pub async fn try_start_on(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            requests: Mutex::default(),
            websockets: Mutex::default(),
        });
        let task = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(Self { state, addr, task })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order of completion.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<RecordedRequest> {
        lock(&self.state.requests).last().cloned()
    }

    pub fn count(&self) -> usize {
        lock(&self.state.requests).len()
    }

    /// Requests whose path is exactly `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path() == path)
            .cloned()
            .collect()
    }

    pub fn clear(&self) {
        lock(&self.state.requests).clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // aborting the accept loop drops its JoinSet, aborting every connection
        self.task.abort();
    }
}

/// Byte `i` of the `/__download` body.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PATTERN_PERIOD as u64) as u8
}

/// Hex SHA-256 of the first `n` bytes of the `/__download` pattern.
pub fn pattern_sha256(n: u64) -> String {
    let pattern = pattern_buffer();
    let mut ctx = Context::new(&SHA256);
    for chunk in pattern_chunks(&pattern, n) {
        ctx.update(&chunk);
    }
    hex(ctx.finish().as_ref())
}

/// Hex SHA-256 of `data`, for comparing with recorded bodies.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&SHA256, data).as_ref())
}

// === server ===

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // e.g. out of file descriptors: back off instead of spinning
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&state), peer, req));
                    // an error here is a client going away; nothing to report
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(
    state: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/__ws" {
        let record = record_of(&req, peer, 0, sha256_hex(b""), true);
        lock(&state.requests).push(record);
        return Ok(websocket(&state, &mut req));
    }
    if req.uri().path() == "/__early" {
        let (parts, body) = req.into_parts();
        tokio::spawn(async move {
            let record = recorded(parts, peer, body).await;
            lock(&state.requests).push(record);
        });
        return Ok(text(StatusCode::OK, "early\n"));
    }
    let (parts, body) = req.into_parts();
    let record = recorded(parts, peer, body).await;
    let len = record.body_len;
    lock(&state.requests).push(record.clone());
    let query = Params::parse(record.uri.query().unwrap_or_default());
    let resp = match (&record.method, record.path()) {
        (_, "/__json") => json_response(StatusCode::OK, &request_json(&record)),
        (&Method::GET, "/__download") => download(&query),
        (&Method::POST | &Method::PUT, "/__upload") => json_response(
            StatusCode::OK,
            &json!({ "bytes": len, "sha256": record.body_sha256 }),
        ),
        (_, "/__slow") => {
            let ms = query
                .get("ms")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        (_, "/__status") => {
            let code = query.get("code").and_then(|v| v.parse::<u16>().ok());
            match code.and_then(|c| StatusCode::from_u16(c).ok()) {
                Some(status) => text(status, format!("status {status}\n")),
                None => text(StatusCode::BAD_REQUEST, "code must be a status code\n"),
            }
        }
        (_, "/__redirect") => redirect(query.get("to").unwrap_or("/")),
        (_, "/__set_cookie") => set_cookies(&query),
        _ => html_response(&record),
    };
    Ok(resp)
}

/// The record of a request, once its body has been read.
async fn recorded(
    parts: http::request::Parts,
    peer: SocketAddr,
    body: Incoming,
) -> RecordedRequest {
    let (len, sha, complete, trailers) = consume(body).await;
    RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        peer,
        body_len: len,
        body_sha256: sha,
        body_complete: complete,
        trailers,
    }
}

/// Hashes the body while streaming: `(length, hex sha256, completed,
/// trailers)`.
async fn consume(mut body: Incoming) -> (u64, String, bool, HeaderMap) {
    let mut ctx = Context::new(&SHA256);
    let mut len = 0_u64;
    let mut complete = true;
    let mut trailers = HeaderMap::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    ctx.update(data);
                    len += data.len() as u64;
                }
                if let Ok(more) = frame.into_trailers() {
                    for (name, value) in &more {
                        trailers.append(name, value.clone());
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    (len, hex(ctx.finish().as_ref()), complete, trailers)
}

fn record_of(
    req: &Request<Incoming>,
    peer: SocketAddr,
    body_len: u64,
    body_sha256: String,
    body_complete: bool,
) -> RecordedRequest {
    RecordedRequest {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
        peer,
        body_len,
        body_sha256,
        body_complete,
        trailers: HeaderMap::new(),
    }
}

fn download(query: &Params) -> Response<Body> {
    let Some(n) = query.get("bytes").and_then(|v| v.parse::<u64>().ok()) else {
        return text(StatusCode::BAD_REQUEST, "bytes=N is required\n");
    };
    let chunks = pattern_chunks(&pattern_buffer(), n).map(|c| Ok::<_, Infallible>(Frame::data(c)));
    let body = StreamBody::new(futures_util::stream::iter(chunks));
    let mut resp = Response::new(BodyExt::boxed(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if query.get("chunked") != Some("1") {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    resp
}

/// One chunk's worth of pattern plus a period, so every chunk is a slice.
fn pattern_buffer() -> Bytes {
    (0..(DOWNLOAD_CHUNK + PATTERN_PERIOD) as u64)
        .map(pattern_byte)
        .collect::<Vec<u8>>()
        .into()
}

/// The first `n` pattern bytes as zero-copy slices of `pattern`.
fn pattern_chunks(pattern: &Bytes, n: u64) -> impl Iterator<Item = Bytes> + use<> {
    let pattern = pattern.clone();
    let chunk = DOWNLOAD_CHUNK as u64;
    (0..n.div_ceil(chunk)).map(move |i| {
        let offset = i * chunk;
        let len = chunk.min(n - offset) as usize;
        let start = (offset % PATTERN_PERIOD as u64) as usize;
        pattern.slice(start..start + len)
    })
}

/// Answers the WebSocket handshake and echoes messages on a spawned task.
fn websocket(state: &State, req: &mut Request<Incoming>) -> Response<Body> {
    let headers = req.headers();
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok());
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(key)) = (
        upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        key,
    ) else {
        return text(StatusCode::BAD_REQUEST, "expected a websocket upgrade\n");
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(StatusCode::BAD_REQUEST, "bad websocket key\n");
    };
    let on_upgrade = hyper::upgrade::on(req);
    let mut tasks = lock(&state.websockets);
    while tasks.try_join_next().is_some() {}
    tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // pings and the close handshake are answered by tungstenite itself
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

fn request_json(record: &RecordedRequest) -> Value {
    let mut headers = Map::new();
    let mut list = Vec::new();
    for name in record.headers.keys() {
        let values: Vec<String> = record
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        for v in &values {
            list.push(json!([name.as_str(), v]));
        }
        headers.insert(name.as_str().to_owned(), json!(values.join(", ")));
    }
    json!({
        "method": record.method.as_str(),
        "uri": record.uri.to_string(),
        "path": record.path(),
        "version": format!("{:?}", record.version),
        "peer": record.peer.to_string(),
        "headers": headers,
        "header_list": list,
        "body_bytes": record.body_len,
        "body_sha256": record.body_sha256,
    })
}

fn html_response(record: &RecordedRequest) -> Response<Body> {
    let user = record
        .header("x-forwarded-preferred-username")
        .or_else(|| record.header("x-forwarded-user"));
    let banner = match user {
        Some(user) => format!(
            "<p class=\"ok\">Signed in as <b>{}</b> ({}), groups: {}</p>",
            escape_html(user),
            escape_html(record.header("x-forwarded-email").unwrap_or("no email")),
            escape_html(record.header("x-forwarded-groups").unwrap_or("none")),
        ),
        None => "<p class=\"warn\">No <code>X-Forwarded-User</code> header: this request \
                 did not come through gatehouse.</p>"
            .to_owned(),
    };
    let mut rows = String::new();
    for (name, value) in &record.headers {
        let mut shown = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some((cut, _)) = shown.char_indices().nth(MAX_SHOWN_VALUE) {
            shown.truncate(cut);
            shown.push_str(" …");
        }
        let class = if IDENTITY_HEADERS.contains(&name.as_str()) {
            " class=\"identity\""
        } else {
            ""
        };
        let _ = writeln!(
            rows,
            "<tr{class}><th>{}</th><td><code>{}</code></td></tr>",
            escape_html(name.as_str()),
            escape_html(&shown)
        );
    }
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Upstream app</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.3em .6em;\
         border-bottom:1px solid #ddd;vertical-align:top}}td code{{word-break:break-all}}\
         tr.identity{{background:#fff3b0;font-weight:bold}}.ok{{color:#075}}.warn{{color:#a40}}\
         </style></head>\n<body><h1>Upstream app</h1>\n{banner}\n\
         <p><a href=\"/oauth2/sign_out\">Sign out</a></p>\n\
         <p>This page is served by the upstream behind the proxy and shows the request it \
         received: <code>{} {}</code> ({:?}) from {}.</p>\n\
         <table><tr><th>Header</th><th>Value</th></tr>\n{rows}</table>\n</body></html>\n",
        escape_html(record.method.as_str()),
        escape_html(&record.uri.to_string()),
        record.version,
        record.peer,
    );
    let mut resp = Response::new(full(page));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

// === helpers ===

/// Query parameters in order.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(s: &str) -> Self {
        Self(
            url::form_urlencoded::parse(s.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking test thread must not wedge the upstream for the others
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn full(body: impl Into<Bytes>) -> Body {
    BodyExt::boxed(Full::new(body.into()))
}

fn empty() -> Body {
    full(Bytes::new())
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = text(status, body.to_string());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn set_cookies(query: &Params) -> Response<Body> {
    let mut resp = text(StatusCode::OK, "cookies set\n");
    for (_, value) in query.0.iter().filter(|(k, _)| k == "c") {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                resp.headers_mut().append(header::SET_COOKIE, value);
            }
            Err(_) => return text(StatusCode::BAD_REQUEST, "unusable cookie\n"),
        }
    }
    resp
}

fn redirect(to: &str) -> Response<Body> {
    match HeaderValue::from_str(to) {
        Ok(location) => {
            let mut resp = text(StatusCode::FOUND, "redirecting\n");
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "unusable redirect target\n"),
    }
}
