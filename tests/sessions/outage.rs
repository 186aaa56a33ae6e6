//! Redis stopped and started again under load (issue 8, "failure is closed
//! and recovers"): a few tasks keep asking, with a valid session, a
//! signed-out one and none, while Redis goes away and comes back.
//!
//! - never a 2xx without a valid session, before, during or after;
//! - while Redis is away (after the 1 s freshness window) no 2xx at all,
//!   `/ready` answers 503, and every answer comes within a bounded time;
//! - when Redis is back, the valid session works again without restarting
//!   gatehouse: nobody was signed out by the outage.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::client::TestClient;
use crate::support::proxy::TestProxy;
use crate::support::proxy::start_login;
use crate::support::redis::{RedisServer, redis_available};
use crate::{
    Backend, Store, Via, World, assert_allowed_everywhere, is_session_cookie, sign_out, signed_in,
    status,
};

/// How long gatehouse may take to notice Redis is gone (freshness window
/// of 1 s, the poll that finds it, a margin).
const NOTICE: Duration = Duration::from_millis(1500);
/// How long Redis stays away.
const OUTAGE: Duration = Duration::from_secs(3);
/// The longest any one answer may take.
const ANSWER: Duration = Duration::from_secs(3);
/// Load: tasks, and a bound on each one's requests.
const TASKS: usize = 3;
const MAX_ROUNDS: usize = 400;

/// Which cookie a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Valid,
    SignedOut,
    Nobody,
}

#[derive(Debug)]
struct Seen {
    who: Who,
    via: Via,
    sent: Instant,
    took: Duration,
    status: StatusCode,
}

/// `1.2s after` or `300ms before` `mark`.
fn relative(t: Instant, mark: Instant) -> String {
    if t >= mark {
        format!("{:?} after", t - mark)
    } else {
        format!("{:?} before", mark - t)
    }
}

async fn ready(proxy: &TestProxy) -> StatusCode {
    TestClient::new()
        .with_timeout(ANSWER)
        .get_api(&proxy.url("/ready"))
        .await
        .status
}

async fn redis_stopped_under_load(store: Store, test: &str) {
    if !redis_available(test) {
        return;
    }
    let mut redis = RedisServer::start().await;
    let world = World::start().await;
    let gatehouse = Arc::new(world.gatehouse(store, Backend::Standalone(&redis)).await);
    let (_browser, valid) = signed_in(&gatehouse).await;
    let (leaver, signed_out) = signed_in(&gatehouse).await;
    sign_out(&leaver, &gatehouse).await;
    assert_allowed_everywhere(&gatehouse, &valid, "before the outage").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (gatehouse, stop) = (Arc::clone(&gatehouse), Arc::clone(&stop));
        let cookies = [
            (Who::Valid, valid.clone()),
            (Who::SignedOut, signed_out.clone()),
            (Who::Nobody, String::new()),
        ];
        load.spawn(async move {
            let mut seen = Vec::new();
            for round in 0..MAX_ROUNDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (who, cookie) = &cookies[(round + task) % cookies.len()];
                let via = [Via::Proxy, Via::Auth, Via::ForwardAuth][(round / 3 + task) % 3];
                let sent = Instant::now();
                let status = status(&gatehouse, via, cookie).await;
                seen.push(Seen {
                    who: *who,
                    via,
                    sent,
                    took: sent.elapsed(),
                    status,
                });
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            seen
        });
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    // a Redis with persistence comes back with its data
    let saved = redis.cmd(&["SAVE"]).await.unwrap();
    assert_eq!(saved.text(), "OK");
    let killed = Instant::now();
    redis.stop();
    let mut ready_503_after = None;
    while killed.elapsed() < OUTAGE {
        let r = ready(&gatehouse).await;
        if r == StatusCode::SERVICE_UNAVAILABLE && ready_503_after.is_none() {
            ready_503_after = Some(killed.elapsed());
        }
        if killed.elapsed() > NOTICE {
            assert_eq!(
                r,
                StatusCode::SERVICE_UNAVAILABLE,
                "/ready {:?} after Redis went away",
                killed.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_503_after = ready_503_after.expect("/ready never answered 503 during the outage");
    let restarting = Instant::now();
    redis.start_again().await;
    let back = Instant::now();

    // recovery without a restart of gatehouse
    let recovered_after = loop {
        if status(&gatehouse, Via::Auth, &valid).await.is_success() {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "the valid session still refused 10 s after Redis came back; /ready {}",
            ready(&gatehouse).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    while let Some(task) = load.join_next().await {
        seen.extend(task.unwrap());
    }

    // sent after gatehouse had time to notice, answered before Redis was back
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.sent >= killed + NOTICE && s.sent + s.took < restarting)
        .collect();
    assert!(
        during.len() >= 10,
        "too few requests during the outage to tell: {}",
        during.len()
    );
    for s in &seen {
        assert!(s.took <= ANSWER, "an answer took {:?}: {s:?}", s.took);
        if s.who != Who::Valid {
            assert!(
                !s.status.is_success(),
                "{:?} got {} through {:?}, sent {} the kill of Redis",
                s.who,
                s.status,
                s.via,
                relative(s.sent, killed)
            );
        }
    }
    for s in &during {
        assert!(
            !s.status.is_success(),
            "{:?} got {} through {:?} {:?} into the outage (Redis away for {OUTAGE:?})",
            s.who,
            s.status,
            s.via,
            s.sent.duration_since(killed)
        );
    }
    let valid_during: Vec<StatusCode> = during
        .iter()
        .filter(|s| s.who == Who::Valid)
        .map(|s| s.status)
        .collect();
    assert!(
        valid_during
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "a valid session during the outage gets 503 (not signed out): {valid_during:?}"
    );

    assert_eq!(
        ready(&gatehouse).await,
        StatusCode::OK,
        "/ready after recovery"
    );
    assert_allowed_everywhere(&gatehouse, &valid, "after the outage: nobody signed out").await;
    for via in [Via::Proxy, Via::Auth, Via::ForwardAuth] {
        assert_eq!(
            status(&gatehouse, via, &signed_out).await,
            StatusCode::UNAUTHORIZED,
            "the signed-out session after the outage ({via:?})"
        );
    }
    eprintln!(
        "{test}: {} requests, {} during the outage; /ready 503 after {ready_503_after:?}, \
         recovered {recovered_after:?} after Redis came back",
        seen.len(),
        during.len()
    );
}

#[tokio::test]
async fn with_the_cookie_store_a_redis_outage_under_load_fails_closed_and_recovers() {
    redis_stopped_under_load(
        Store::Cookie,
        "with_the_cookie_store_a_redis_outage_under_load_fails_closed_and_recovers",
    )
    .await;
}

#[tokio::test]
async fn with_the_redis_store_a_redis_outage_under_load_fails_closed_and_recovers() {
    redis_stopped_under_load(
        Store::Redis,
        "with_the_redis_store_a_redis_outage_under_load_fails_closed_and_recovers",
    )
    .await;
}

/// A sign-out while Redis is away: refused at once where it happened, and
/// at the other replica once Redis is back (never allowed in between).
async fn sign_out_during_an_outage(store: Store, test: &str) {
    if !redis_available(test) {
        return;
    }
    let mut redis = RedisServer::start().await;
    let world = World::start().await;
    let one = world.gatehouse(store, Backend::Standalone(&redis)).await;
    let two = world.gatehouse(store, Backend::Standalone(&redis)).await;
    let (browser, cookie) = signed_in(&one).await;
    assert_allowed_everywhere(&two, &cookie, "before the outage").await;

    let saved = redis.cmd(&["SAVE"]).await.unwrap();
    assert_eq!(saved.text(), "OK");
    redis.stop();
    tokio::time::sleep(NOTICE).await;
    sign_out(&browser, &one).await;
    for via in [Via::Proxy, Via::Auth, Via::ForwardAuth] {
        for (name, at) in [("one", &one), ("two", &two)] {
            let s = status(at, via, &cookie).await;
            assert!(
                !s.is_success(),
                "replica {name}, {via:?}, during the outage: {s}"
            );
        }
    }
    redis.start_again().await;
    let back = Instant::now();
    // until both replicas are back in sync, the cookie is never allowed;
    // then it is refused as signed out
    let mut statuses = Vec::new();
    loop {
        let s = status(&two, Via::Auth, &cookie).await;
        statuses.push(s);
        assert!(
            !s.is_success(),
            "replica two allowed the signed-out cookie: {statuses:?}"
        );
        if s == StatusCode::UNAUTHORIZED
            && ready(&one).await == StatusCode::OK
            && ready(&two).await == StatusCode::OK
        {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "replicas not both ready, or two not back to 401, 10 s after Redis returned: \
             {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // in sync: the revocation made during the outage reached replica two
    for (name, at) in [("one", &one), ("two", &two)] {
        for via in [Via::Proxy, Via::Auth, Via::ForwardAuth] {
            assert_eq!(
                status(at, via, &cookie).await,
                StatusCode::UNAUTHORIZED,
                "replica {name}, {via:?}, after Redis returned"
            );
        }
    }
    let (_other_browser, other) = signed_in(&two).await;
    assert_allowed_everywhere(&one, &other, "a new session after the outage").await;
}

#[tokio::test]
async fn with_the_cookie_store_a_sign_out_during_an_outage_reaches_the_other_replica_when_redis_returns()
 {
    sign_out_during_an_outage(
        Store::Cookie,
        "with_the_cookie_store_a_sign_out_during_an_outage_reaches_the_other_replica_when_redis_returns",
    )
    .await;
}

#[tokio::test]
async fn with_the_redis_store_a_sign_out_during_an_outage_reaches_the_other_replica_when_redis_returns()
 {
    sign_out_during_an_outage(
        Store::Redis,
        "with_the_redis_store_a_sign_out_during_an_outage_reaches_the_other_replica_when_redis_returns",
    )
    .await;
}

/// Redis frozen (`CLIENT PAUSE ... ALL`: connected, accepting, answering
/// nothing) rather than gone: every answer still comes within a bounded
/// time, a frozen Redis vouches for nobody, and the thaw needs no restart.
async fn redis_frozen(store: Store, test: &str) {
    if !redis_available(test) {
        return;
    }
    const FROZEN: Duration = Duration::from_secs(5);
    // Redis commands time out after about 1 s
    const FROZEN_ANSWER: Duration = Duration::from_millis(2500);
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let gatehouse = world.gatehouse(store, Backend::Standalone(&redis)).await;
    let (_browser, valid) = signed_in(&gatehouse).await;
    assert_allowed_everywhere(&gatehouse, &valid, "before the freeze").await;

    let millis = FROZEN.as_millis().to_string();
    let paused = redis
        .cmd(&["CLIENT", "PAUSE", &millis, "ALL"])
        .await
        .unwrap();
    assert_eq!(paused.text(), "OK");
    let frozen = Instant::now();
    // a login while frozen: every step answers in bounded time, and what it
    // ends with is not a session that gets through while Redis is frozen
    // (checked below, once gatehouse had time to notice)
    let browser = TestClient::new().with_timeout(ANSWER);
    let authorize = start_login(&browser, &gatehouse, "/").await;
    let to_callback = browser.get(authorize.as_str()).await;
    let callback = to_callback
        .location_url()
        .expect("the provider redirects back");
    let sent = Instant::now();
    let answer = browser.get(callback.as_str()).await;
    let took = sent.elapsed();
    assert!(
        took <= FROZEN_ANSWER,
        "the callback took {took:?} while Redis was frozen ({})",
        answer.status
    );
    let mut seen = Vec::new();
    let mut ready_503 = false;
    while frozen.elapsed() < FROZEN - Duration::from_millis(1500) {
        let via = [Via::Auth, Via::Proxy, Via::ForwardAuth][seen.len() % 3];
        let sent = Instant::now();
        let s = status(&gatehouse, via, &valid).await;
        let took = sent.elapsed();
        assert!(
            took <= FROZEN_ANSWER,
            "{via:?} took {took:?} while Redis was frozen"
        );
        seen.push((sent.duration_since(frozen), via, s));
        if sent.duration_since(frozen) > NOTICE {
            assert!(
                !s.is_success(),
                "{via:?} answered {s} {:?} into the freeze: {seen:?}",
                sent.duration_since(frozen)
            );
            ready_503 |= ready(&gatehouse).await == StatusCode::SERVICE_UNAVAILABLE;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ready_503,
        "/ready never answered 503 while Redis was frozen"
    );
    if let Some(cookie) = browser
        .cookies_for("127.0.0.1")
        .into_iter()
        .find(|(name, _)| is_session_cookie(name))
        .map(|(name, value)| format!("{name}={value}"))
        && frozen.elapsed() < FROZEN - Duration::from_millis(300)
    {
        let s = status(&gatehouse, Via::Auth, &cookie).await;
        assert!(!s.is_success(), "a session made while frozen got {s}");
    }
    // the thaw: back by itself
    let deadline = frozen + FROZEN + Duration::from_secs(10);
    while !status(&gatehouse, Via::Auth, &valid).await.is_success() {
        assert!(Instant::now() < deadline, "not back 10 s after the thaw");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_allowed_everywhere(&gatehouse, &valid, "after the thaw: nobody signed out").await;
}

#[tokio::test]
async fn with_the_cookie_store_a_frozen_redis_gets_bounded_answers_and_never_a_2xx() {
    redis_frozen(
        Store::Cookie,
        "with_the_cookie_store_a_frozen_redis_gets_bounded_answers_and_never_a_2xx",
    )
    .await;
}

#[tokio::test]
async fn with_the_redis_store_a_frozen_redis_gets_bounded_answers_and_never_a_2xx() {
    redis_frozen(
        Store::Redis,
        "with_the_redis_store_a_frozen_redis_gets_bounded_answers_and_never_a_2xx",
    )
    .await;
}
