//! Keep-alive connections parked between requests (issue 13: memory per
//! idle connection): a quiet HTTP/1 connection is taken out of hyper, and
//! its next request is served as if it had never left; the wait for that
//! request keeps hyper's deadline; a head trickled into a parked connection
//! is cut off as before; a request with a body never lets its connection
//! be parked, so body bytes are never read as a request.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::limits::trickle_a_head;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::TestProxy;
use crate::support::upstream::Recorder;
use crate::{SHORT, signed_in, sub_of_alice};

/// A proxy (with its IdP and upstream) whose config is the base plus
/// `extra`, and no connection open to it.
async fn start_proxy(extra: &str) -> (MockIdp, Recorder, TestProxy) {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start(extra, &idp, &upstream).await;
    parked(&proxy, 0).await;
    (idp, upstream, proxy)
}

/// Reads one answer to a request whose body ends with `end`: everything up
/// to and including it.
async fn read_answer(s: &mut TcpStream, end: &[u8]) -> String {
    let mut got = Vec::new();
    let mut buf = [0_u8; 4096];
    while !got.windows(end.len()).any(|w| w == end) {
        let n = tokio::time::timeout(SHORT, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("the connection stays open");
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// `GET /ping`, the one request the parking tests repeat.
const PING: &[u8] = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";

/// A proxy whose config is the base plus `extra`, and a connection to it
/// that had one `GET /ping` answered and is now parked: the connection,
/// and when the answer arrived.
async fn one_ping_then_parked(extra: &str) -> (MockIdp, Recorder, TestProxy, TcpStream, Instant) {
    let (idp, up, proxy) = start_proxy(extra).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(PING).await.unwrap();
    let answer = read_answer(&mut s, b"OK").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answered = Instant::now();
    parked(&proxy, 1).await;
    (idp, up, proxy, s, answered)
}

/// Waits until `proxy` has `n` parked connections; panics after `SHORT`.
async fn parked(proxy: &TestProxy, n: usize) {
    let deadline = Instant::now() + SHORT;
    while proxy.server().parked_connections() != n {
        assert!(
            Instant::now() < deadline,
            "parked connections: {}, wanted {n}",
            proxy.server().parked_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long after `since` the peer closed `s` (reading and dropping
/// whatever it sent), or panics after `SHORT`.
async fn closed_after(s: &mut TcpStream, since: Instant) -> (Duration, Vec<u8>) {
    let mut out = Vec::new();
    let mut buf = [0_u8; 1024];
    loop {
        match tokio::time::timeout(SHORT, s.read(&mut buf)).await {
            Err(_) => panic!("not closed within {SHORT:?}"),
            Ok(Ok(0) | Err(_)) => return (since.elapsed(), out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `body` (the rest of a request body, itself a whole request) and
/// checks that nothing answers it: the body is a body, whether hyper reads
/// it or closes the connection.
async fn late_body_is_never_answered(s: &mut TcpStream, body: &[u8]) {
    s.write_all(body).await.unwrap();
    let mut buf = [0_u8; 4096];
    match tokio::time::timeout(Duration::from_millis(800), s.read(&mut buf)).await {
        Err(_) | Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(n)) => panic!(
            "the body was answered as a request: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

#[tokio::test]
async fn a_quiet_keep_alive_connection_is_parked_and_its_next_requests_are_served_with_identity() {
    let stack = signed_in("header_read_timeout = \"5s\"").await;
    let cookie = stack
        .client
        .cookie_header_for(&stack.proxy.url("/"))
        .unwrap();
    // the sign-in's own connections closed: only ours is counted below
    drop(stack.client);
    parked(&stack.proxy, 0).await;
    let mut s = TcpStream::connect(stack.proxy.addr()).await.unwrap();
    for i in 0..3 {
        // hostile extras on every request: they must be replaced, parked
        // or not
        let req = format!(
            "GET /app/{i} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nX-Forwarded-User: mallory\r\n\r\n",
            stack.proxy.host()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let answer = read_answer(&mut s, b"</html>\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let seen = stack.upstream.last().unwrap();
        assert_eq!(seen.path(), format!("/app/{i}"));
        assert_eq!(
            seen.header_all("x-forwarded-user"),
            [sub_of_alice(&stack.idp).as_str()]
        );
        // quiet: taken out of hyper, the socket kept
        parked(&stack.proxy, 1).await;
    }
    drop(s);
    parked(&stack.proxy, 0).await;
}

#[tokio::test]
async fn a_parked_connection_waits_for_its_next_head_as_long_as_hyper_would() {
    let (_idp, _up, proxy, mut s, answered) =
        one_ping_then_parked("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    // closed at the keep-alive deadline (header_read_timeout after the
    // answer, as hyper has it), not later because it was parked
    let (took, rest) = closed_after(&mut s, answered).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
        "closed {took:?} after the answer; header_read_timeout is 1s"
    );
    parked(&proxy, 0).await;
}

#[tokio::test]
async fn a_head_trickled_into_a_parked_connection_is_cut_off_at_the_same_deadline() {
    let (_idp, _up, _proxy, s, answered) =
        one_ping_then_parked("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"").await;
    // one header line every 200 ms, never a whole head
    let (out, closed) = trickle_a_head(s).await;
    let took = closed - answered;
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 408"),
        "a trickled head got an answer: {out}"
    );
    // the deadline is the one the wait began with, not a new one
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
        "closed {took:?} after the first answer; header_read_timeout is 1s"
    );
}

#[tokio::test]
async fn bytes_of_the_next_request_read_before_the_park_are_not_lost() {
    let (_idp, _up, proxy) = start_proxy("header_read_timeout = \"5s\"").await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    // a whole request and the start of the next in one write: hyper reads
    // both, answers the first and keeps the start of the second
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let first = read_answer(&mut s, b"OK").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // long past the park delay
    tokio::time::sleep(Duration::from_millis(800)).await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let second = read_answer(&mut s, b"OK").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // and the connection goes on
    parked(&proxy, 1).await;
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let third = read_answer(&mut s, b"OK").await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
}

#[tokio::test]
async fn a_request_whose_body_was_not_read_never_has_its_body_taken_for_a_request() {
    // signed out: gatehouse answers a POST before reading its body; the
    // body, sent late, is a whole request of its own
    let (_idp, _up, proxy) = start_proxy("header_read_timeout = \"5s\"").await;
    let smuggled = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let head = format!(
        "POST /app/form HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n",
        proxy.host(),
        smuggled.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0_u8; 4096];
    let n = tokio::time::timeout(SHORT, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // long past the park delay, with the body still owed
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(proxy.server().parked_connections(), 0);
    late_body_is_never_answered(&mut s, smuggled).await;
}

#[tokio::test]
async fn a_body_still_streaming_after_its_answer_keeps_the_connection_in_hyper() {
    // the upstream answers before it reads the body; the rest of the body,
    // sent late, is a whole request of its own: parked now, it would be
    // read as one (whether the proxy forwards the rest or drops the
    // connection, it must never be answered)
    let stack = signed_in("header_read_timeout = \"5s\"").await;
    let cookie = stack
        .client
        .cookie_header_for(&stack.proxy.url("/"))
        .unwrap();
    let smuggled = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let first = b"0123456789";
    let mut s = TcpStream::connect(stack.proxy.addr()).await.unwrap();
    let head = format!(
        "POST /__early HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nContent-Length: {}\r\n\r\n",
        stack.proxy.host(),
        first.len() + smuggled.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(first).await.unwrap();
    let answer = read_answer(&mut s, b"early\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // long past the park delay, with the body still owed
    tokio::time::sleep(Duration::from_millis(800)).await;
    late_body_is_never_answered(&mut s, smuggled).await;
}

#[tokio::test]
async fn a_resumed_connection_gives_its_later_heads_the_whole_header_timeout() {
    let (_idp, _up, proxy, mut s, answered) =
        one_ping_then_parked("header_read_timeout = \"3s\"\nidle_timeout = \"60s\"").await;
    // late in the keep-alive wait: the resumed connection has about 200 ms
    // of it left for this head, which has a body (one byte), so the
    // connection is not parked again and stays with this hyper
    // connection...
    tokio::time::sleep_until((answered + Duration::from_millis(2800)).into()).await;
    s.write_all(b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        .await
        .unwrap();
    let second = read_answer(&mut s, b"OK").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // ...whose next wait, longer than what was left, is a whole one again
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.server().parked_connections(), 0);
    s.write_all(PING).await.unwrap();
    let third = read_answer(&mut s, b"OK").await;
    assert!(third.starts_with("HTTP/1.1 200"), "{third}");
}
