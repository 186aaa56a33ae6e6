use std::net::{IpAddr, Ipv4Addr};

use http::HeaderMap;
use http_body_util::{BodyExt as _, StreamBody};

use super::*;
use crate::http::forwarded::client_ip;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn client_key_keeps_ipv4_unmaps_mapped_ipv6_and_cuts_ipv6_to_its_64() {
    assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
    assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    assert_eq!(
        client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
        ip("2001:db8:1:2::")
    );
    assert_ne!(
        client_key(ip("2001:db8:1:2::1")),
        client_key(ip("2001:db8:1:3::1"))
    );
}

#[test]
fn per_ip_limit_refuses_one_address_but_not_another_and_frees_on_close() {
    let limits = ConnLimits::new(100, 2);
    let a = ip("10.0.0.1");
    let first = limits.try_acquire(a, true).unwrap();
    let _second = limits.try_acquire(a, true).unwrap();
    assert_eq!(limits.try_acquire(a, true).err(), Some(Refused::PerIp));
    // the same /64 is the same client
    let _v6 = limits.try_acquire(ip("2001:db8::1"), true).unwrap();
    let _v6b = limits.try_acquire(ip("2001:db8::2"), true).unwrap();
    assert_eq!(
        limits.try_acquire(ip("2001:db8::3"), true).err(),
        Some(Refused::PerIp)
    );
    assert!(limits.try_acquire(ip("10.0.0.2"), true).is_ok());
    assert_eq!(
        limits.open(),
        4,
        "refused and dropped permits are not counted"
    );
    let proxy = limits.try_acquire(a, false).unwrap();
    assert_eq!(
        limits.open(),
        5,
        "a trusted proxy is not limited per address"
    );
    drop(proxy);
    drop(first);
    assert!(
        limits.try_acquire(a, true).is_ok(),
        "a closed connection frees its place"
    );
}

#[test]
fn global_limit_refuses_every_address_once_full_and_the_map_empties() {
    let limits = ConnLimits::new(3, 10);
    let permits: Vec<_> = (1..=3)
        .map(|i| {
            limits
                .try_acquire(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)), true)
                .unwrap()
        })
        .collect();
    assert_eq!(
        limits.try_acquire(ip("10.9.9.9"), true).err(),
        Some(Refused::Total)
    );
    assert_eq!(limits.open(), 3);
    drop(permits);
    assert_eq!(limits.open(), 0);
    assert!(
        limits.per_ip.lock().unwrap().is_empty(),
        "addresses with no connection are forgotten"
    );
}

#[tokio::test]
async fn drained_waits_for_the_last_connection() {
    let limits = ConnLimits::new(3, 3);
    let permit = limits.serving();
    assert!(!limits.drained(Duration::from_millis(20)).await);
    let waiter = {
        let limits = limits.clone();
        tokio::spawn(async move { limits.drained(Duration::from_secs(5)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(permit);
    assert!(waiter.await.unwrap());
}

#[test]
fn refusal_log_says_once_per_period_with_the_count_since() {
    let log = RateLimitedLog::new(Duration::from_secs(3600));
    assert_eq!(log.hit(), Some(1));
    for _ in 0..5 {
        assert_eq!(log.hit(), None);
    }
    log.next_ms.store(0, Ordering::Release); // the period is over
    assert_eq!(log.hit(), Some(6));
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test]
async fn a_connection_with_no_request_is_idle_after_the_first_request_timeout() {
    let a = ConnActivity::new();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        a.idle(100 * MS, Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took >= 100 * MS && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_request_in_flight_keeps_the_connection_and_idle_counts_from_its_end() {
    let a = ConnActivity::new();
    let guard = a.begin();
    let idle = a.idle(50 * MS, 100 * MS);
    tokio::pin!(idle);
    assert!(
        tokio::time::timeout(400 * MS, &mut idle).await.is_err(),
        "a request in flight is never idle"
    );
    drop(guard);
    let ended = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .unwrap();
    let took = ended.elapsed();
    assert!(took >= 95 * MS && took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn after_a_quick_first_request_idle_counts_from_its_end_not_from_the_accept() {
    let a = ConnActivity::new();
    let idle = a.idle(Duration::from_secs(5), 100 * MS);
    tokio::pin!(idle);
    let _ = tokio::time::timeout(50 * MS, &mut idle).await;
    drop(a.begin());
    let ended = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(3), idle).await;
    let took = ended.elapsed();
    assert!(took >= 95 * MS && took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_request_during_a_quiet_spell_moves_the_deadline_on() {
    let a = ConnActivity::new();
    let idle = a.idle(Duration::from_secs(5), 300 * MS);
    tokio::pin!(idle);
    drop(a.begin());
    // the timer now runs to 300 ms; a request at 200 ms moves the end to 500
    let _ = tokio::time::timeout(200 * MS, &mut idle).await;
    let guard = a.begin();
    drop(guard);
    let second = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), idle)
        .await
        .unwrap();
    let took = second.elapsed();
    assert!(
        took >= 295 * MS && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_request_in_flight_when_the_timer_fires_is_waited_for() {
    let a = ConnActivity::new();
    let idle = a.idle(Duration::from_secs(5), 100 * MS);
    tokio::pin!(idle);
    drop(a.begin());
    // in flight across the timer's wake (at 100 ms), for 300 ms
    let _ = tokio::time::timeout(50 * MS, &mut idle).await;
    let guard = a.begin();
    assert!(
        tokio::time::timeout(300 * MS, &mut idle).await.is_err(),
        "closed with a request in flight"
    );
    drop(guard);
    let ended = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), idle)
        .await
        .unwrap();
    let took = ended.elapsed();
    assert!(took >= 95 * MS && took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_body_that_stops_sending_fails_after_the_idle_timeout() {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut body = IdleTimeoutBody::new(StreamBody::new(Box::pin(stream)), 300 * MS);
    // a frame every 150 ms, five times: never idle for 300 ms, though the
    // whole body takes longer than that
    for _ in 0..5 {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(150 * MS).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
        });
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "x");
    }
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the stalled body was never cut off")
        .unwrap()
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= 300 * MS && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert!(err.is::<BodyIdle>(), "{err}");
    assert!(body.frame().await.is_none(), "nothing after the cut");
    drop(tx);
}

#[tokio::test]
async fn login_limiter_allows_a_burst_then_refuses_with_the_wait() {
    let limiter = LoginRateLimiter::new(
        Some(RateLimit {
            burst: 5,
            per_minute: 6,
        }),
        1000,
    );
    let a = ip("192.0.2.1");
    for i in 0..5 {
        assert!(limiter.check(a).await.is_ok(), "request {i} of the burst");
    }
    let wait = limiter.check(a).await.expect_err("past the burst");
    assert!(
        wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
        "one request every 10 s: {wait:?}"
    );
    assert!(
        limiter.check(ip("192.0.2.2")).await.is_ok(),
        "another client is not limited"
    );
}

#[tokio::test]
async fn login_limiter_refills_at_the_sustained_rate() {
    // one request per millisecond
    let limiter = LoginRateLimiter::new(
        Some(RateLimit {
            burst: 2,
            per_minute: 60_000,
        }),
        1000,
    );
    let a = ip("192.0.2.1");
    assert!(limiter.check(a).await.is_ok());
    assert!(limiter.check(a).await.is_ok());
    assert!(limiter.check(a).await.is_err());
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(limiter.check(a).await.is_ok());
}

#[tokio::test]
async fn login_limiter_off_allows_everything_and_remembers_nothing() {
    let limiter = LoginRateLimiter::new(None, 1000);
    for _ in 0..1000 {
        assert!(limiter.check(ip("192.0.2.1")).await.is_ok());
    }
    assert_eq!(limiter.remembered().await, 0);
}

#[tokio::test]
async fn login_limiter_memory_is_bounded_by_its_capacity_however_many_clients() {
    let limiter = LoginRateLimiter::new(
        Some(RateLimit {
            burst: 10,
            per_minute: 1,
        }),
        64,
    );
    for i in 0..10_000u32 {
        let _ = limiter
            .check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)))
            .await;
    }
    let n = limiter.remembered().await;
    assert!(n <= 64, "{n} clients remembered, capacity 64");
    assert!(n > 0);
}

#[test]
fn client_ip_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
    let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let mut h = HeaderMap::new();
    h.insert(
        "x-forwarded-for",
        "203.0.113.9, 198.51.100.4, 10.1.1.1".parse().unwrap(),
    );
    // untrusted peer: its header is ignored
    assert_eq!(client_ip(&h, ip("192.0.2.1"), &trusted), ip("192.0.2.1"));
    // trusted peer: the nearest untrusted entry, not the client-chosen first
    assert_eq!(client_ip(&h, ip("10.0.0.2"), &trusted), ip("198.51.100.4"));
    // garbage ends the walk at the last address we could believe
    h.insert(
        "x-forwarded-for",
        "203.0.113.9, nonsense, 10.1.1.1".parse().unwrap(),
    );
    assert_eq!(client_ip(&h, ip("10.0.0.2"), &trusted), ip("10.1.1.1"));
    assert_eq!(
        client_ip(&HeaderMap::new(), ip("10.0.0.2"), &trusted),
        ip("10.0.0.2")
    );
}

#[tokio::test]
async fn the_idle_timer_and_the_park_timer_both_hear_the_last_request_end() {
    let a = ConnActivity::new();
    let guard = a.begin();
    let idle = a.idle(Duration::from_secs(5), 100 * MS);
    let quiet = a.quiet_for(50 * MS);
    tokio::pin!(idle, quiet);
    // both waiting on the request in flight
    let _ = tokio::time::timeout(50 * MS, &mut idle).await;
    let _ = tokio::time::timeout(10 * MS, &mut quiet).await;
    drop(guard);
    // each resolves on its own deadline after the end: neither missed it
    tokio::time::timeout(Duration::from_secs(2), quiet)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), idle)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_park_waits_for_a_request_of_its_own_to_end() {
    let a = ConnActivity::new();
    drop(a.begin());
    let since = a.requests_begun();
    assert_eq!(since, 1);
    let ended = a.request_ended_since(since);
    tokio::pin!(ended);
    assert!(
        tokio::time::timeout(100 * MS, &mut ended).await.is_err(),
        "no request since: not ended"
    );
    let guard = a.begin();
    assert!(
        tokio::time::timeout(50 * MS, &mut ended).await.is_err(),
        "a request in flight: not ended"
    );
    drop(guard);
    tokio::time::timeout(Duration::from_secs(2), ended)
        .await
        .unwrap();
}

#[test]
fn a_connection_may_park_only_with_nothing_in_flight_unflushed_or_unknown() {
    let a = ConnActivity::new();
    assert!(a.may_park());
    let guard = a.begin();
    assert!(!a.may_park(), "a request in flight");
    drop(guard);
    a.wrote();
    assert!(!a.may_park(), "written, not flushed");
    a.flushed();
    assert!(a.may_park());
    a.keep_in_hyper();
    assert!(!a.may_park(), "a request with a body was seen");
    a.wrote();
    a.flushed();
    assert!(!a.may_park(), "for good");
}

#[tokio::test]
async fn the_keep_alive_wait_begins_when_the_answer_is_flushed_not_when_it_ends() {
    let a = ConnActivity::new();
    let guard = a.begin();
    a.wrote();
    // hyper took the body's last frame...
    drop(guard);
    let ended = a.idle_since();
    // ...and wrote it to a slow reader for a while
    tokio::time::sleep(100 * MS).await;
    a.flushed();
    let began = a.head_wait_began();
    assert!(began >= ended + 90 * MS, "{:?}", began - ended);
    // a flush with nothing written (hyper flushes on every poll) does not
    // move it
    tokio::time::sleep(50 * MS).await;
    a.flushed();
    assert_eq!(a.head_wait_began(), began);
}
