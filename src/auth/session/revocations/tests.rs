use super::*;
use crate::auth::identity::Identity;

fn session(id: u8, sid: Option<&str>, sub: &str, issued_at_ms: u64) -> Session {
    Session {
        id: SessionId::from_bytes([id; 16]),
        provider_sid: sid.map(str::to_owned),
        provider: None,
        issuer: "https://idp.example.com".into(),
        issued_at_ms,
        identity: Identity {
            subject: sub.into(),
            expires_at: now_secs() + 3600,
            ..Identity::default()
        },
        secret: None,
    }
}

fn later() -> u64 {
    now_secs() + 3600
}

#[tokio::test]
async fn a_session_revoked_by_id_is_refused_and_others_are_not() {
    let r = Revocations::local();
    let a = session(1, None, "alice", 10);
    let b = session(2, None, "alice", 10);
    assert!(!r.is_revoked(&a));
    r.revoke(Revocation::Session {
        id: a.id,
        until: later(),
    })
    .await
    .unwrap();
    assert!(r.is_revoked(&a));
    assert!(!r.is_revoked(&b));
    assert!(r.fresh(), "without redis the set is always in sync");
}

#[tokio::test]
async fn a_sid_revocation_ends_that_provider_session_only_up_to_its_time() {
    let r = Revocations::local();
    let iss = "https://idp.example.com";
    r.revoke(Revocation::ProviderSession {
        key: sid_key(iss, "op-1"),
        at_ms: 1_000,
        until: later(),
    })
    .await
    .unwrap();
    assert!(r.is_revoked(&session(1, Some("op-1"), "alice", 999)));
    assert!(r.is_revoked(&session(1, Some("op-1"), "alice", 1_000)));
    // a later login (a new provider session could reuse nothing, but a
    // session begun after the logout is not hit)
    assert!(!r.is_revoked(&session(1, Some("op-1"), "alice", 1_001)));
    assert!(!r.is_revoked(&session(1, Some("op-2"), "alice", 999)));
    assert!(!r.is_revoked(&session(1, None, "alice", 999)));
    // another issuer's sid of the same value is another key
    let mut foreign = session(1, Some("op-1"), "alice", 999);
    foreign.issuer = "https://other.example.com".into();
    assert!(!r.is_revoked(&foreign));
}

#[tokio::test]
async fn a_sub_revocation_ends_every_earlier_session_of_that_user() {
    let r = Revocations::local();
    r.revoke(Revocation::Subject {
        key: sub_key("https://idp.example.com", "alice"),
        at_ms: 5_000,
        until: later(),
    })
    .await
    .unwrap();
    assert!(r.is_revoked(&session(1, Some("x"), "alice", 4_000)));
    assert!(r.is_revoked(&session(2, None, "alice", 5_000)));
    assert!(!r.is_revoked(&session(3, None, "alice", 5_001)));
    assert!(!r.is_revoked(&session(4, None, "bob", 4_000)));
}

#[test]
fn entries_round_trip_and_hostile_ones_are_refused() {
    let all = [
        Revocation::Session {
            id: SessionId::from_bytes([9; 16]),
            until: 42,
        },
        Revocation::ProviderSession {
            key: [0xab; 32],
            at_ms: 7,
            until: 8,
        },
        Revocation::Subject {
            key: [0x01; 32],
            at_ms: 9,
            until: 10,
        },
        Revocation::Updated(SessionId::from_bytes([3; 16])),
    ];
    for r in all {
        assert_eq!(Revocation::decode(&r.encode()), Some(r.clone()));
    }
    let bad = [
        "",
        "s",
        "s AAAA 1",
        "q CQkJCQkJCQkJCQkJCQkJCQ 1",
        "s CQkJCQkJCQkJCQkJCQkJCQ notanumber",
        "s CQkJCQkJCQkJCQkJCQkJCQ 1 extra",
        "p zz 1 2",
        &format!("p {} 1", "ab".repeat(32)),
        &format!("u {} 1 2 3", "ab".repeat(32)),
        &format!("p {} 1 2", "g".repeat(64)),
    ];
    for b in bad {
        assert_eq!(Revocation::decode(b), None, "{b:?}");
    }
}

#[tokio::test]
async fn expired_revocations_are_swept() {
    let r = Revocations::local();
    let a = session(1, None, "alice", 10);
    r.revoke(Revocation::Session {
        id: a.id,
        until: now_secs() - 1,
    })
    .await
    .unwrap();
    assert!(r.is_revoked(&a), "kept until swept");
    r.swept_at_ms.store(0, Ordering::Relaxed);
    r.poll().await;
    assert!(!r.is_revoked(&a), "an expired entry is dropped");
    assert!(expired(&Revocation::Session { id: a.id, until: 5 }, 5));
    assert!(!expired(&Revocation::Updated(a.id), u64::MAX));
}

#[tokio::test]
async fn an_evict_hook_hears_revoked_and_updated_ids() {
    let r = Revocations::local();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    r.on_evict(Box::new(move |id| sink.lock().unwrap().push(id)));
    let a = SessionId::from_bytes([1; 16]);
    r.revoke(Revocation::Updated(a)).await.unwrap();
    r.revoke(Revocation::Session {
        id: a,
        until: later(),
    })
    .await
    .unwrap();
    r.revoke(Revocation::Subject {
        key: [0; 32],
        at_ms: 1,
        until: later(),
    })
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![a, a]);
}

#[test]
fn the_sweep_keeps_each_kind_of_revocation_until_its_second_and_drops_it_then() {
    let by_id = session(1, None, "alice", 10);
    let by_sid = session(2, Some("op-1"), "bob", 10);
    let by_sub = session(3, None, "carol", 10);
    let set_at = |now: u64| {
        let mut set = Set::default();
        set.apply(&Revocation::Session {
            id: by_id.id,
            until: 100,
        });
        set.apply(&Revocation::ProviderSession {
            key: sid_key(&by_sid.issuer, "op-1"),
            at_ms: 20,
            until: 100,
        });
        set.apply(&Revocation::Subject {
            key: sub_key(&by_sub.issuer, "carol"),
            at_ms: 20,
            until: 100,
        });
        set.sweep(now);
        set
    };
    let kept = set_at(99);
    for s in [&by_id, &by_sid, &by_sub] {
        assert!(
            kept.hits(s),
            "{:?} dropped before its time",
            s.identity.subject
        );
    }
    let swept = set_at(100);
    for s in [&by_id, &by_sid, &by_sub] {
        assert!(
            !swept.hits(s),
            "{:?} kept past its time",
            s.identity.subject
        );
    }
}

// review of issue 12, finding 3: sign-outs queued during a Redis outage
// were lost when a reload rebuilt the revocations
#[tokio::test]
async fn rebuilt_revocations_take_over_the_old_set_and_publish_its_queued_sign_outs() {
    use crate::redis_conn::testing::{TestRedis, dead_conn};
    let old = Revocations::shared(dead_conn(), "old".into(), Duration::from_secs(3600));
    let a = session(1, None, "alice", 10);
    let b = session(2, Some("op-1"), "bob", 10);
    let down = old
        .revoke(Revocation::Session {
            id: a.id,
            until: later(),
        })
        .await;
    assert!(down.is_err(), "Redis is down: queued");
    old.apply(&Revocation::ProviderSession {
        key: sid_key(&b.issuer, "op-1"),
        at_ms: 1_000,
        until: later(),
    });

    // the reload's new settings: a Redis that answers
    let redis = TestRedis::start();
    let stream = "gatehouse:test:revocations".to_owned();
    let new = Revocations::shared(redis.conn(), stream.clone(), Duration::from_secs(3600));
    new.take_over(&old);
    assert!(new.is_revoked(&a), "the old set holds here");
    assert!(new.is_revoked(&b), "the old set holds here");
    new.poll().await;

    // another replica on that Redis hears the queued sign-out
    let other = Revocations::shared(redis.conn(), stream, Duration::from_secs(3600));
    other.poll().await;
    assert!(other.is_revoked(&a), "the queued sign-out was published");
    assert!(!other.is_revoked(&b), "only the queue is published");
}
