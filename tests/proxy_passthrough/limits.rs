//! Limits on slow and many clients (issue 9, items 19 to 21): the header
//! timeout, connection limits at accept, idle connections, a body that stops
//! arriving, oversized heads, and the login rate limit. Hostile clients
//! connect from 127.0.0.2 and good ones from 127.0.0.1 (Linux routes all of
//! 127.0.0.0/8 over loopback).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::ACCEPT;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Frame;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::client::BoxError;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::TestProxy;
use crate::support::upstream::Recorder;
use crate::{SHORT, signed_in};

const GOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const HOSTILE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A proxy (with its IdP and upstream) whose config is the base plus `extra`.
async fn start_proxy(extra: &str) -> (MockIdp, Recorder, TestProxy) {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(extra, &idp, &upstream).await;
    (idp, upstream, proxy)
}

/// A TCP connection to `addr` from the loopback address `from`.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// `GET path` over a fresh connection from `from` (with `Connection:
/// close`): the whole answer as text, or "" when the connection was closed
/// without one.
async fn raw_get(from: IpAddr, addr: SocketAddr, path: &str, headers: &str) -> String {
    let Ok(mut s) = connect_from(from, addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SHORT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` until EOF or a reset; whatever arrived.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0_u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `SHORT`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SHORT;
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// === item 19: the header timeout ===

/// Sends `GET /ping` and then a header line every 200 ms for up to 10 s
/// (never a whole head); what came back, and when the connection was closed.
pub(crate) async fn trickle_a_head(s: TcpStream) -> (String, Instant) {
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr
                .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SHORT, rd.read_to_end(&mut out)).await;
    let closed = Instant::now();
    writer.abort();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test]
async fn a_client_sending_its_header_one_line_at_a_time_is_cut_off_at_the_header_timeout() {
    let (_idp, _up, proxy) = start_proxy("header_read_timeout = \"1s\"").await;
    let s = connect_from(HOSTILE, proxy.addr()).await.unwrap();
    let started = Instant::now();
    let (answer, closed) = trickle_a_head(s).await;
    let took = closed - started;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a slow head got an answer: {answer}"
    );
    // under 1.8 s: cut off at the timeout, not after a graceful second
    // period in which the trickled head could still complete
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "closed after {took:?}; header_read_timeout is 1s"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_trickling_its_next_head_is_cut_off_at_the_header_timeout() {
    let (_idp, _up, proxy) =
        start_proxy("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    let mut s = connect_from(HOSTILE, proxy.addr()).await.unwrap();
    // one whole request and its answer: the connection is kept alive
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = tokio::time::timeout(SHORT, s.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    let answered = Instant::now();
    let (answer, closed) = trickle_a_head(s).await;
    let took = closed - answered;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "a slow second head got an answer: {answer}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "closed {took:?} after the first answer; header_read_timeout is 1s"
    );
}

#[tokio::test]
async fn a_slow_reader_of_a_large_answer_is_not_cut_off_by_the_header_timeout() {
    // the wait for the next head starts once the answer is flushed, never
    // when its body has merely been handed to hyper
    let (_idp, _up, proxy) =
        start_proxy("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    let client = crate::support::client::TestClient::new();
    crate::support::proxy::login(&client, &proxy, "/").await;
    let cookie = client
        .cookie_header_for(&proxy.url("/"))
        .expect("a session cookie");
    let mut s = connect_from(GOOD, proxy.addr()).await.unwrap();
    // more than the socket buffers hold, read over about 6 s: several
    // seconds of it are still buffered when hyper takes the last frame
    const BYTES: usize = 12 << 20;
    s.write_all(
        format!("GET /__download?bytes={BYTES} HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut head_len = None;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the answer stalled")
            .unwrap();
        if n == 0 {
            break;
        }
        got += n;
        if head_len.is_none()
            && let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n")
        {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..n])
            );
            head_len = Some(end + 4);
        }
        if got >= BYTES + head_len.unwrap_or(usize::MAX) {
            break;
        }
        // about 2 MiB/s
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(3),
        "read too fast to test: {took:?}"
    );
    assert_eq!(
        got - head_len.unwrap(),
        BYTES,
        "the answer was cut off after {took:?}"
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_timeout() {
    let (_idp, _up, proxy) =
        start_proxy("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    for h2 in [false, true] {
        let mut s = connect_from(HOSTILE, proxy.addr()).await.unwrap();
        let started = Instant::now();
        if h2 {
            // an HTTP/2 connection that never opens a stream
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .unwrap();
        }
        let _ = tokio::time::timeout(SHORT, read_until_closed(&mut s)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "h2 = {h2}: closed after {took:?}; header_read_timeout is 1s"
        );
    }
    eventually("both connections closed server-side", || {
        proxy.server().open_connections() == 0
    })
    .await;
}

// === item 20: connection limits, idle connections, bodies, heads ===

#[tokio::test]
async fn over_the_per_ip_limit_a_connection_is_closed_at_accept_and_others_are_served() {
    // 127.0.0.0/8, trusted by default, would not be limited per address
    let (_idp, _up, proxy) =
        start_proxy("max_connections_per_ip = 3\ntrusted_proxy = \"10.0.0.0/8\"").await;
    eventually("the ready probe's connections closed", || {
        proxy.server().open_connections() == 0
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(HOSTILE, proxy.addr()).await.unwrap());
    }
    eventually("three connections open", || {
        proxy.server().open_connections() == 3
    })
    .await;
    let refused = raw_get(HOSTILE, proxy.addr(), "/ping", "").await;
    assert_eq!(refused, "", "the fourth from one address was served");
    let ok = raw_get(GOOD, proxy.addr(), "/ping", "").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "another address: {ok}");
    // a place freed is a place again
    drop(held.pop());
    let mut again = String::new();
    let deadline = Instant::now() + SHORT;
    while !again.starts_with("HTTP/1.1 200") && Instant::now() < deadline {
        again = raw_get(HOSTILE, proxy.addr(), "/ping", "").await;
    }
    assert!(
        again.starts_with("HTTP/1.1 200"),
        "after one closed: {again}"
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_ip_limit() {
    // the default trusted_proxy, 127.0.0.0/8: a local nginx, say
    let (_idp, _up, proxy) = start_proxy("max_connections_per_ip = 1").await;
    let _held = connect_from(HOSTILE, proxy.addr()).await.unwrap();
    eventually("one connection open", || {
        proxy.server().open_connections() >= 1
    })
    .await;
    let ok = raw_get(HOSTILE, proxy.addr(), "/ping", "").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test]
async fn an_upgraded_websocket_keeps_its_place_under_the_connection_limit_until_closed() {
    let s = signed_in("max_connections = 3").await;
    let cookie = crate::cookie_header(&s.client, &s.proxy);
    drop(s.client);
    eventually("the login's connections closed", || {
        s.proxy.server().open_connections() == 0
    })
    .await;
    let (mut ws, _) = crate::ws_connect(&s.proxy, "/__ws", &[("cookie", &cookie)])
        .await
        .unwrap();
    // HTTP is over on that connection, the tunnel is not
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.proxy.server().open_connections(), 1);
    ws.close(None).await.unwrap();
    drop(ws);
    eventually("the closed tunnel gave its place back", || {
        s.proxy.server().open_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn over_the_global_limit_every_address_is_closed_at_accept() {
    let (_idp, _up, proxy) = start_proxy("max_connections = 2").await;
    eventually("the ready probe's connections closed", || {
        proxy.server().open_connections() == 0
    })
    .await;
    let _a = connect_from(HOSTILE, proxy.addr()).await.unwrap();
    let _b = connect_from(HOSTILE, proxy.addr()).await.unwrap();
    eventually("two connections open", || {
        proxy.server().open_connections() == 2
    })
    .await;
    assert_eq!(raw_get(GOOD, proxy.addr(), "/ping", "").await, "");
    drop((_a, _b));
    eventually("places freed", || proxy.server().open_connections() == 0).await;
    let ok = raw_get(GOOD, proxy.addr(), "/ping", "").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

/// Raises this process's open-file limit to `want` if it is lower (without
/// unsafe code: `prlimit` from util-linux). Panics if it stays lower.
fn ensure_fd_limit(want: u64) {
    let soft = || -> u64 {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let soft = line.split_whitespace().nth(3).unwrap();
        soft.parse().unwrap_or(u64::MAX) // "unlimited"
    };
    if soft() < want {
        let _ = std::process::Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={want}:"),
            ])
            .status();
    }
    assert!(
        soft() >= want,
        "open-file limit {} < {want}: raise `ulimit -n`",
        soft()
    );
}

#[tokio::test]
async fn a_thousand_idle_http2_connections_from_one_address_do_not_stop_others() {
    ensure_fd_limit(4096);
    // the defaults: 256 per address (127.0.0.2 not trusted as a proxy)
    let (_idp, _up, proxy) = start_proxy("trusted_proxy = \"10.0.0.0/8\"").await;
    let addr = proxy.addr();
    let mut hostile = Vec::new();
    for _ in 0..1000 {
        let Ok(mut s) = connect_from(HOSTILE, addr).await else {
            continue;
        };
        // preface and an empty SETTINGS: an HTTP/2 connection, then nothing
        if s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .is_ok()
        {
            hostile.push(s);
        }
    }
    let started = Instant::now();
    let ok = raw_get(GOOD, addr, "/ping", "").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let client = crate::support::client::TestClient::new();
    let resp = client.get(&proxy.url("/ping")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let open = proxy.server().open_connections();
    assert!(
        open <= 256 + 2,
        "{open} connections open: the per-address limit is 256"
    );
    drop(hostile);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let (_idp, _up, proxy) =
        start_proxy("idle_timeout = \"1s\"\nheader_read_timeout = \"5s\"").await;
    let tcp = connect_from(GOOD, proxy.addr()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    // one request, then nothing: idle from its answer on
    let resp = send
        .send_request(
            Request::get(proxy.url("/ping"))
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answered = Instant::now();
    let ended = tokio::time::timeout(SHORT, conn).await;
    let took = answered.elapsed();
    assert!(ended.is_ok(), "the idle connection was never closed");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "closed {took:?} after its last answer; idle_timeout is 1s"
    );
}

/// The server's first SETTINGS frame on a fresh HTTP/2 connection, as
/// (identifier, value) pairs.
async fn server_settings(addr: SocketAddr) -> Vec<(u16, u32)> {
    let mut s = connect_from(GOOD, addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0_u8; 9];
    tokio::time::timeout(SHORT, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[3], 0x4, "the server's first frame is SETTINGS");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0_u8; len];
    s.read_exact(&mut payload).await.unwrap();
    payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

#[tokio::test]
async fn http2_advertises_the_configured_stream_and_header_list_caps() {
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    let (_idp, _up, proxy) = start_proxy("").await;
    let settings = server_settings(proxy.addr()).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 100)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 65536)),
        "{settings:?}"
    );
    let (_idp, _up, proxy) =
        start_proxy("http2_max_concurrent_streams = 7\nmax_header_bytes = 9000").await;
    let settings = server_settings(proxy.addr()).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 7)),
        "{settings:?}"
    );
    assert!(
        settings.contains(&(MAX_HEADER_LIST_SIZE, 9000)),
        "{settings:?}"
    );
}

#[tokio::test]
async fn a_request_body_that_stops_arriving_is_cut_off_and_the_upstream_sees_it_aborted() {
    let s = signed_in("request_body_idle_timeout = \"500ms\"").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    tx.send(Ok(Frame::data(Bytes::from(vec![7_u8; 1000]))))
        .await
        .unwrap();
    let req = Request::post(s.proxy.url("/__upload"))
        .header(ACCEPT, "application/json")
        .header("content-length", "100000")
        .body(BodyExt::boxed(ChannelBody(rx)))
        .unwrap();
    let started = Instant::now();
    let sent = tokio::time::timeout(SHORT, s.client.send(req)).await;
    let took = started.elapsed();
    assert!(sent.is_ok(), "the stalled upload hung the proxy");
    assert!(took < Duration::from_secs(3), "{took:?}");
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
        "a stalled upload reached the upstream as a complete {}-byte body",
        seen.body_len
    );
    drop(tx);
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_is_refused_with_431() {
    let (_idp, _up, proxy) = start_proxy("max_header_bytes = 16384").await;
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let answer = raw_get(GOOD, proxy.addr(), "/ping", &big).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let small = format!("X-Big: {}\r\n", "a".repeat(8_000));
    let answer = raw_get(GOOD, proxy.addr(), "/ping", &small).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A request body fed frame by frame from a channel.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

// === item 21: login rate limit ===

#[tokio::test]
async fn login_endpoints_answer_429_with_retry_after_past_the_burst_per_client() {
    let (_idp, _up, proxy) =
        start_proxy("login_rate_limit_burst = 3\nlogin_rate_limit_per_minute = 1").await;
    let addr = proxy.addr();
    for i in 0..3 {
        let path = if i == 1 {
            "/oauth2/callback"
        } else {
            "/oauth2/start"
        };
        let a = raw_get(HOSTILE, addr, path, "").await;
        assert!(
            !a.starts_with("HTTP/1.1 429"),
            "request {i} of the burst: {a}"
        );
    }
    let limited = raw_get(HOSTILE, addr, "/oauth2/start", "").await;
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    let retry: u64 = limited
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no Retry-After: {limited}"))
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert!(limited.contains("\"too_many_requests\""), "{limited}");
    // a browser gets a page that says what happened and what to do
    let page = raw_get(HOSTILE, addr, "/oauth2/start", "Accept: text/html\r\n").await;
    assert!(page.starts_with("HTTP/1.1 429"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(page.contains("Too many sign-in attempts"), "{page}");
    assert!(page.contains("wait a minute"), "{page}");
    // other paths are not limited
    assert!(
        raw_get(HOSTILE, addr, "/ping", "")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // another client is not limited
    let other = raw_get(GOOD, addr, "/oauth2/start", "").await;
    assert!(other.starts_with("HTTP/1.1 302"), "{other}");
}

#[tokio::test]
async fn the_login_rate_limit_follows_x_forwarded_for_only_from_a_trusted_proxy() {
    // the default trusted_proxy is 127.0.0.0/8: both test addresses are
    // proxies, each client is the address they forward for
    let (_idp, _up, proxy) =
        start_proxy("login_rate_limit_burst = 1\nlogin_rate_limit_per_minute = 1").await;
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let a = raw_get(GOOD, proxy.addr(), "/oauth2/start", &xff("203.0.113.1")).await;
    assert!(a.starts_with("HTTP/1.1 302"), "{a}");
    let a = raw_get(HOSTILE, proxy.addr(), "/oauth2/start", &xff("203.0.113.1")).await;
    assert!(
        a.starts_with("HTTP/1.1 429"),
        "same client through another proxy: {a}"
    );
    let b = raw_get(GOOD, proxy.addr(), "/oauth2/start", &xff("203.0.113.2")).await;
    assert!(b.starts_with("HTTP/1.1 302"), "another client: {b}");

    // an untrusted peer's X-Forwarded-For changes nothing
    let (_idp2, _up2, untrusted) = start_proxy(
        "login_rate_limit_burst = 1\nlogin_rate_limit_per_minute = 1\ntrusted_proxy = \"10.0.0.0/8\"",
    )
    .await;
    let a = raw_get(
        HOSTILE,
        untrusted.addr(),
        "/oauth2/start",
        &xff("203.0.113.1"),
    )
    .await;
    assert!(a.starts_with("HTTP/1.1 302"), "{a}");
    let b = raw_get(
        HOSTILE,
        untrusted.addr(),
        "/oauth2/start",
        &xff("203.0.113.2"),
    )
    .await;
    assert!(
        b.starts_with("HTTP/1.1 429"),
        "a forged X-Forwarded-For evaded the limit: {b}"
    );
}
