use http::HeaderMap;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt as _, StreamBody};

use super::*;

fn no_extra() -> std::sync::Arc<[String]> {
    std::sync::Arc::from(Vec::new())
}

type Frames = Vec<Result<Frame<Bytes>, std::convert::Infallible>>;

fn frames_body(
    frames: Frames,
) -> StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>,
> {
    StreamBody::new(futures_util::stream::iter(frames))
}

#[tokio::test]
async fn empty_and_full_bodies_hold_what_they_say() {
    let e = empty();
    assert!(e.is_end_stream());
    assert_eq!(e.collect().await.unwrap().to_bytes(), "");
    let f = full("hello");
    assert_eq!(f.size_hint().exact(), Some(5));
    assert_eq!(f.collect().await.unwrap().to_bytes(), "hello");
    let s = stream(Full::new(Bytes::from_static(b"streamed")));
    assert_eq!(s.collect().await.unwrap().to_bytes(), "streamed");
}

#[tokio::test]
async fn notify_on_end_fires_once_the_body_is_sent() {
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let body = NotifyOnEnd::new(
        frames_body(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]),
        tx,
        no_extra(),
    );
    let mut body = std::pin::pin!(body);
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "a");
    // still streaming: the upstream timeout has not started
    assert!(rx.try_recv().is_err());
    assert!(body.frame().await.unwrap().is_ok());
    assert!(rx.try_recv().is_err());
    assert!(body.frame().await.is_none());
    assert_eq!(rx.try_recv(), Ok(()));
}

#[tokio::test]
async fn notify_on_end_fires_when_the_body_fails() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let failing = StreamBody::new(futures_util::stream::iter(vec![Err::<Frame<Bytes>, &str>(
        "broken",
    )]));
    let body = NotifyOnEnd::new(failing, tx, no_extra());
    assert!(body.collect().await.is_err());
    assert_eq!(rx.await, Ok(()));
}

#[tokio::test]
async fn identity_headers_in_request_trailers_are_stripped() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-forwarded-user", "mallory".parse().unwrap());
    trailers.insert("X_Auth_Request_Email", "m@evil".parse().unwrap());
    trailers.insert("x-checksum", "abc".parse().unwrap());
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let body = NotifyOnEnd::new(
        frames_body(vec![
            Ok(Frame::data(Bytes::from_static(b"data"))),
            Ok(Frame::trailers(trailers)),
        ]),
        tx,
        no_extra(),
    );
    let collected = body.collect().await.unwrap();
    let seen = collected.trailers().cloned().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen["x-checksum"], "abc");
    assert_eq!(collected.to_bytes(), "data");
}

#[test]
fn notify_on_end_reports_the_inner_size_and_end() {
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let body = NotifyOnEnd::new(Full::new(Bytes::from_static(b"12345")), tx, no_extra());
    assert_eq!(body.size_hint().exact(), Some(5));
    assert!(!body.is_end_stream());
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let done = NotifyOnEnd::new(Full::new(Bytes::new()), tx, no_extra());
    assert!(done.is_end_stream());
    assert_eq!(done.size_hint().exact(), Some(0));
}

#[tokio::test]
async fn request_trailers_lose_claim_headers_and_the_forwarding_family_in_every_spelling() {
    let mut trailers = HeaderMap::new();
    for n in [
        "x.forwarded.user",
        "gap-auth",
        "x-dept",
        "X_DEPT",
        "authorization",
        "x-forwarded-for",
        "x_real_ip",
        "forwarded",
        "x-checksum",
    ] {
        trailers.insert(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            "forged".parse().unwrap(),
        );
    }
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let body = NotifyOnEnd::new(
        frames_body(vec![Ok(Frame::trailers(trailers))]),
        tx,
        std::sync::Arc::from(vec!["X-Dept".to_owned(), "authorization".to_owned()]),
    );
    let seen = body.collect().await.unwrap().trailers().cloned().unwrap();
    let left: Vec<&str> = seen.keys().map(http::HeaderName::as_str).collect();
    assert_eq!(left, ["x-checksum"]);
}

#[tokio::test]
async fn an_ended_body_passes_its_data_and_no_trailer() {
    // `ended` is for bodies that cannot send more; should one send
    // trailers anyway, none reach the upstream
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "1".parse().unwrap());
    trailers.insert("x-forwarded-user", "forged".parse().unwrap());
    let body = NotifyOnEnd::ended(frames_body(vec![
        Ok(Frame::data(Bytes::from_static(b"a"))),
        Ok(Frame::trailers(trailers)),
    ]));
    let seen = body.collect().await.unwrap();
    assert_eq!(seen.trailers().map(HeaderMap::len), Some(0));
    assert_eq!(seen.to_bytes(), "a");
    let empty = NotifyOnEnd::ended(Full::new(Bytes::new()));
    assert!(empty.is_end_stream());
}
