use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::auth::identity::{Identity, Tokens};
use crate::auth::session::{SessionId, SessionSecret, now_secs};
use crate::config::Secret;
use crate::redis_conn::testing::{TestRedis, dead_conn};

const PREFIX: &str = "gh:t:";

fn session(id: u8, refresh_token: Option<&str>, access: &str) -> Session {
    Session {
        id: SessionId::from_bytes([id; 16]),
        provider_sid: None,
        provider: None,
        issuer: "https://idp.example.com".into(),
        issued_at_ms: 1_700_000_000_000,
        secret: None,
        identity: Identity {
            subject: "alice".into(),
            expires_at: now_secs() + 3600,
            tokens: Tokens {
                access_token: Some(Secret::new(access)),
                refresh_token: refresh_token.map(Secret::new),
                ..Tokens::default()
            },
            ..Identity::default()
        },
    }
}

fn hashed(label: &[u8], token: &str) -> String {
    let mut joined = label.to_vec();
    joined.push(0);
    joined.extend_from_slice(token.as_bytes());
    hex(ring::digest::digest(&ring::digest::SHA256, &joined).as_ref())
}

/// A redeem closure that counts its calls and answers `outcome`.
fn redeem_with(
    calls: &Arc<AtomicUsize>,
    outcome: Result<Session, RefreshError>,
) -> impl FnOnce() -> std::future::Ready<Result<Session, RefreshError>> {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(outcome)
    }
}

fn access(s: &Session) -> &str {
    s.identity.tokens.access_token.as_ref().unwrap().expose()
}

#[tokio::test]
async fn a_refresh_redeems_once_and_a_second_replica_uses_the_shared_result() {
    let redis = TestRedis::start();
    let a = SharedRefresh::new(redis.conn(), PREFIX.into());
    let b = SharedRefresh::new(redis.conn(), PREFIX.into());
    let old = session(1, Some("rt-old"), "at-old");
    let calls = Arc::new(AtomicUsize::new(0));

    let fresh = a
        .refresh(
            &old,
            redeem_with(&calls, Ok(session(1, Some("rt-new"), "at-new"))),
        )
        .await
        .unwrap();
    assert_eq!(access(&fresh), "at-new");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // the other replica, holding the same old cookie (with its Redis key)
    let mut old_b = old.clone();
    old_b.secret = Some(SessionSecret([9; 32]));
    let shared = b
        .refresh(
            &old_b,
            redeem_with(&calls, Err(RefreshError::Rejected("redeemed twice".into()))),
        )
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "redeemed only once");
    assert_eq!(access(&shared), "at-new");
    assert_eq!(
        shared
            .identity
            .tokens
            .refresh_token
            .as_ref()
            .map(Secret::expose),
        Some("rt-new")
    );
    assert_eq!(shared.id, old.id);
    // the caller's own per-session key is kept, not the one of the result
    assert_eq!(shared.secret, Some(SessionSecret([9; 32])));

    // what Redis holds: the result under a hash of the token, kept for
    // RESULT_TTL, sealed (no token in clear); the lock is released
    let conn = redis.conn();
    let id = hashed(b"gatehouse refresh id", "rt-old");
    let result_key = format!("{PREFIX}rr:{id}");
    let pttl: i64 = conn
        .query(redis::cmd("PTTL").arg(&result_key))
        .await
        .unwrap();
    assert!((110_000..=120_000).contains(&pttl), "result PTTL {pttl}");
    let sealed: Vec<u8> = conn
        .query(redis::cmd("GET").arg(&result_key))
        .await
        .unwrap();
    assert_eq!(sealed.first(), Some(&OK_TAG));
    assert!(!sealed.windows(6).any(|w| w == b"at-new"));
    let lock: bool = conn
        .query(redis::cmd("EXISTS").arg(format!("{PREFIX}rl:{id}")))
        .await
        .unwrap();
    assert!(!lock, "lock released");
    let keys: Vec<String> = conn.query(redis::cmd("KEYS").arg("*")).await.unwrap();
    assert_eq!(keys, vec![result_key]);
}

#[tokio::test]
async fn a_rejected_refresh_is_shared_and_an_unavailable_one_is_not() {
    let redis = TestRedis::start();
    let r = SharedRefresh::new(redis.conn(), PREFIX.into());
    let calls = Arc::new(AtomicUsize::new(0));

    // the provider was down: nothing shared, the next try redeems again
    let down = session(2, Some("rt-down"), "at");
    let e = r
        .refresh(
            &down,
            redeem_with(&calls, Err(RefreshError::Unavailable("idp down".into()))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Unavailable(ref m) if m == "idp down"),
        "{e:?}"
    );
    let again = r
        .refresh(
            &down,
            redeem_with(&calls, Ok(session(2, Some("rt-2"), "at-2"))),
        )
        .await
        .unwrap();
    assert_eq!(access(&again), "at-2");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // the provider refused: the refusal is shared, with its reason
    let refused = session(3, Some("rt-refused"), "at");
    let e = r
        .refresh(
            &refused,
            redeem_with(&calls, Err(RefreshError::Rejected("invalid_grant".into()))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Rejected(ref m) if m == "invalid_grant"),
        "{e:?}"
    );
    let e = r
        .refresh(&refused, redeem_with(&calls, Ok(session(3, None, "never"))))
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Rejected(ref m) if m == "invalid_grant"),
        "{e:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "the refusal was not redeemed again"
    );
}

#[tokio::test]
async fn a_shared_result_for_another_session_with_the_same_token_is_refused() {
    let redis = TestRedis::start();
    let r = SharedRefresh::new(redis.conn(), PREFIX.into());
    let calls = Arc::new(AtomicUsize::new(0));
    r.refresh(
        &session(4, Some("rt-same"), "at"),
        redeem_with(&calls, Ok(session(4, Some("rt-next"), "at-4"))),
    )
    .await
    .unwrap();
    let e = r
        .refresh(
            &session(5, Some("rt-same"), "at"),
            redeem_with(&calls, Ok(session(5, None, "never"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Rejected(ref m) if m == "the shared refresh result is not this session's"),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_session_without_a_refresh_token_is_refused_without_redis() {
    let r = SharedRefresh::new(dead_conn(), PREFIX.into());
    let calls = Arc::new(AtomicUsize::new(0));
    let e = r
        .refresh(
            &session(6, None, "at"),
            redeem_with(&calls, Ok(session(6, None, "x"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Rejected(ref m) if m == "no refresh token"),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_refresh_without_redeeming() {
    let r = SharedRefresh::new(dead_conn(), PREFIX.into());
    let calls = Arc::new(AtomicUsize::new(0));
    let e = r
        .refresh(
            &session(7, Some("rt"), "at"),
            redeem_with(&calls, Ok(session(7, None, "x"))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, RefreshError::Unavailable(ref m) if m.starts_with("redis")),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Takes the lock as another replica would, for `ms` milliseconds.
async fn hold_lock(conn: &RedisConn, token: &str, ms: u64) {
    let key = format!("{PREFIX}rl:{}", hashed(b"gatehouse refresh id", token));
    let () = conn
        .query(redis::cmd("SET").arg(key).arg("other").arg("PX").arg(ms))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replica_that_finds_the_lock_taken_waits_for_the_winners_result() {
    let redis = TestRedis::start();
    let winner = SharedRefresh::new(redis.conn(), PREFIX.into());
    let waiter = SharedRefresh::new(redis.conn(), PREFIX.into());
    let old = session(8, Some("rt-busy"), "at-old");
    hold_lock(&redis.conn(), "rt-busy", 10_000).await;

    let calls = Arc::new(AtomicUsize::new(0));
    let waiting = tokio::spawn({
        let calls = Arc::clone(&calls);
        let old = old.clone();
        async move {
            waiter
                .refresh(&old, redeem_with(&calls, Ok(session(8, None, "never"))))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "waits while the lock is held");
    // the winner leaves its result (as it would after redeeming)
    let names = winner.names("rt-busy");
    let sealed = winner
        .seal(
            &names,
            OK_TAG,
            &session(8, Some("rt-won"), "at-won").to_bytes().unwrap(),
        )
        .unwrap();
    let () = redis
        .conn()
        .query(redis::cmd("SET").arg(&names.result).arg(sealed))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the waiter sees the result within a few steps")
        .unwrap()
        .unwrap();
    assert_eq!(access(&got), "at-won");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the waiter never redeems");
}

#[tokio::test]
async fn a_lock_released_without_a_result_ends_the_wait_at_once() {
    let redis = TestRedis::start();
    let r = SharedRefresh::new(redis.conn(), PREFIX.into());
    hold_lock(&redis.conn(), "rt-crashed", 300).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(3),
        r.refresh(
            &session(9, Some("rt-crashed"), "at"),
            redeem_with(&calls, Ok(session(9, None, "x"))),
        ),
    )
    .await
    .expect("does not wait out LOCK_TTL")
    .unwrap_err();
    assert!(
        matches!(e, RefreshError::Unavailable(ref m) if m == "the refresh made by another replica gave no result"),
        "{e:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "waited for the lock"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_result_opens_only_with_its_key_and_tag() {
    let r = SharedRefresh::new(dead_conn(), PREFIX.into());
    let names = r.names("rt");
    let sealed = r.seal(&names, REJECTED_TAG, b"why").unwrap();
    assert_eq!(
        open(&names.key, &sealed),
        Some((REJECTED_TAG, b"why".to_vec()))
    );
    let mut flipped = sealed.clone();
    flipped[0] = OK_TAG;
    assert_eq!(open(&names.key, &flipped), None, "the tag is authenticated");
    assert_eq!(open(&r.names("rt-other").key, &sealed), None);
    assert_eq!(open(&names.key, &[]), None);
    assert_eq!(millis(Duration::from_secs(15)), 15_000);
    assert_eq!(format!("{r:?}"), "SharedRefresh { .. }");
}
