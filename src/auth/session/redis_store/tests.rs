use std::time::Duration;

use super::*;
use crate::auth::identity::Identity;
use crate::auth::session::revocations::sub_key;
use crate::config::Secret;
use crate::redis_conn::testing::{TestRedis, dead_conn};

const ISSUER: &str = "https://idp.example.com";
const PREFIX: &str = "gh:t:";

fn codec() -> Arc<CookieCodec> {
    Arc::new(
        CookieCodec::new(
            &[Secret::new("0123456789abcdef0123456789abcdef")],
            ISSUER,
            "gatehouse",
        )
        .unwrap(),
    )
}

fn session(id: u8, sub: &str) -> Session {
    Session {
        id: SessionId::from_bytes([id; 16]),
        provider_sid: None,
        provider: None,
        issuer: ISSUER.into(),
        issued_at_ms: 1_000,
        secret: None,
        identity: Identity {
            subject: sub.into(),
            email: Some(format!("{sub}@example.com")),
            expires_at: now_secs() + 3600,
            ..Identity::default()
        },
    }
}

fn store(conn: RedisConn, revocations: Arc<Revocations>) -> RedisStore {
    RedisStore::new(codec(), "_gatehouse", conn, PREFIX.into(), revocations)
}

fn local(conn: RedisConn) -> RedisStore {
    store(conn, Arc::new(Revocations::local()))
}

fn key_of(id: &SessionId) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    format!("{PREFIX}s:{}", hex(digest.as_ref()))
}

async fn record(conn: &RedisConn, id: &SessionId) -> Option<Vec<u8>> {
    conn.query(redis::cmd("GET").arg(key_of(id))).await.unwrap()
}

#[tokio::test]
async fn a_saved_session_loads_on_every_replica_from_a_small_ticket_and_a_sealed_record() {
    let redis = TestRedis::start();
    let a = local(redis.conn());
    let b = local(redis.conn());
    let s = session(1, "alice");
    let ticket = a.save(&s).await.unwrap();
    assert!(ticket.len() < 200, "{}", ticket.len());
    assert_eq!(a.session_id(&ticket), Some(s.id));

    // replica b has nothing cached: it reads the record
    let loaded = b.load(&ticket).await.unwrap().unwrap();
    let secret = loaded.secret.clone().expect("the key from the ticket");
    let mut want = s.clone();
    want.secret = Some(secret.clone());
    assert_eq!(*loaded, want);
    assert_eq!(a.load(&ticket).await.unwrap(), Some(Arc::new(want)));
    // a cache hit shares the cached session, not a copy per request
    let again = b.load(&ticket).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&loaded, &again));

    // the ticket is the tag, the id and the key, sealed for the cookie name
    let plain = codec().open("_gatehouse", &ticket).unwrap();
    assert_eq!(plain.len(), 49);
    assert_eq!(plain[0], 0x52);
    assert_eq!(&plain[1..17], s.id.as_bytes());
    assert_eq!(&plain[17..], &secret.0);

    // the record: under the hashed id, sealed under the ticket's key with
    // the id bound, expiring with the session; nothing readable in it
    let conn = redis.conn();
    let sealed = record(&conn, &s.id).await.expect("record under sha256(id)");
    assert!(!sealed.windows(5).any(|w| w == b"alice"));
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret.0).unwrap());
    let mut aad = b"gatehouse session record v1".to_vec();
    aad.extend_from_slice(s.id.as_bytes());
    let opened = open_with(&key, &aad, &sealed).unwrap();
    assert_eq!(
        Session::from_bytes(&opened).unwrap().identity.subject,
        "alice"
    );
    let ttl: i64 = conn
        .query(redis::cmd("TTL").arg(key_of(&s.id)))
        .await
        .unwrap();
    assert!((3598..=3600).contains(&ttl), "TTL {ttl}");
    let keys: Vec<String> = conn.query(redis::cmd("KEYS").arg("*")).await.unwrap();
    assert_eq!(keys, vec![key_of(&s.id)]);
}

#[tokio::test]
async fn a_ticket_that_is_not_ours_or_malformed_loads_as_none() {
    let redis = TestRedis::start();
    let st = local(redis.conn());
    let ticket = st.save(&session(2, "bob")).await.unwrap();
    let plain = codec().open("_gatehouse", &ticket).unwrap();
    let reseal = |p: &[u8]| codec().seal("_gatehouse", p).unwrap();
    // another format tag
    let mut tag = plain.clone();
    tag[0] = 0x53;
    // one byte more or less
    let long = [plain.as_slice(), &[0]].concat();
    let short = &plain[..48];
    for bad in [
        reseal(&tag),
        reseal(&long),
        reseal(short),
        "garbage".to_owned(),
    ] {
        assert_eq!(st.load(&bad).await.unwrap(), None);
        assert_eq!(st.session_id(&bad), None);
    }
    // a cookie session (not a ticket) sealed for the same name
    let whole = reseal(&session(2, "bob").to_bytes().unwrap());
    assert_eq!(st.load(&whole).await.unwrap(), None);
    // the right id with another key: neither the cache nor the record opens
    let mut forged = plain.clone();
    forged[17] ^= 1;
    assert_eq!(st.load(&reseal(&forged)).await.unwrap(), None);
    assert_eq!(
        local(redis.conn()).load(&reseal(&forged)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn a_record_holding_another_sessions_id_is_refused() {
    let redis = TestRedis::start();
    let st = local(redis.conn());
    let b_id = SessionId::from_bytes([4; 16]);
    let secret = SessionSecret([5; 32]);
    // sealed for b's id and key, but carrying session a
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret.0).unwrap());
    let sealed = seal_with(
        &key,
        codec().rng(),
        &record_aad(&b_id),
        &session(3, "carol").to_bytes().unwrap(),
    )
    .unwrap();
    let () = redis
        .conn()
        .query(redis::cmd("SET").arg(key_of(&b_id)).arg(sealed))
        .await
        .unwrap();
    let ticket = st.ticket(&b_id, &secret).unwrap();
    assert_eq!(st.load(&ticket).await.unwrap(), None);
}

#[tokio::test]
async fn a_cached_session_is_used_while_live_and_never_past_its_expiry() {
    let redis = TestRedis::start();
    let st = local(redis.conn());
    let s = session(6, "dave");
    let ticket = st.save(&s).await.unwrap();
    // the record is gone from Redis, the opened copy is still cached
    let () = redis
        .conn()
        .query(redis::cmd("DEL").arg(key_of(&s.id)))
        .await
        .unwrap();
    assert_eq!(
        st.load(&ticket)
            .await
            .unwrap()
            .map(|l| l.identity.subject.clone()),
        Some("dave".to_owned())
    );
    // a cached copy expiring this second is not used (and Redis has none)
    let (id, secret) = st.open_ticket(&ticket).unwrap();
    let mut ending = s.clone();
    ending.secret = Some(secret);
    ending.identity.expires_at = now_secs();
    st.cache.insert(id, Arc::new(ending)).await;
    assert_eq!(st.load(&ticket).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_session_is_not_stored_and_an_update_is_announced() {
    let redis = TestRedis::start();
    let revocations = Arc::new(Revocations::shared(
        redis.conn(),
        format!("{PREFIX}revocations"),
        Duration::from_secs(3600),
    ));
    let st = store(redis.conn(), Arc::clone(&revocations));
    assert!(Arc::ptr_eq(st.revocations(), &revocations));
    let mut old = session(7, "erin");
    old.identity.expires_at = now_secs();
    assert!(matches!(
        st.save(&old).await,
        Err(StoreError::Unstorable("the session has expired"))
    ));
    let conn = redis.conn();
    let xlen = || async {
        let n: u64 = conn
            .query(redis::cmd("XLEN").arg(format!("{PREFIX}revocations")))
            .await
            .unwrap();
        n
    };
    // a new session is in no cache: nothing announced
    let s = session(8, "frank");
    let ticket = st.save(&s).await.unwrap();
    assert_eq!(xlen().await, 0);
    // an update keeps the session's key (same ticket) and is announced
    let (_, secret) = st.open_ticket(&ticket).unwrap();
    let mut updated = s.clone();
    updated.secret = Some(secret);
    updated.identity.email = Some("new@example.com".into());
    assert_eq!(st.save(&updated).await.unwrap().len(), ticket.len());
    assert_eq!(xlen().await, 1);
    assert_eq!(
        st.open_ticket(&ticket),
        st.open_ticket(&st.save(&updated).await.unwrap())
    );
}

#[tokio::test]
async fn a_revoked_session_is_refused_and_its_record_deleted() {
    let redis = TestRedis::start();
    let st = local(redis.conn());
    let a = session(9, "gina");
    let b = session(10, "hank");
    let ta = st.save(&a).await.unwrap();
    let tb = st.save(&b).await.unwrap();
    st.revoke(Revocation::Session {
        id: a.id,
        until: now_secs() + 60,
    })
    .await
    .unwrap();
    assert_eq!(st.load(&ta).await.unwrap(), None);
    assert_eq!(record(&redis.conn(), &a.id).await, None, "record deleted");
    // a revocation by subject refuses the cached session too, record kept
    assert!(st.load(&tb).await.unwrap().is_some());
    st.revoke(Revocation::Subject {
        key: sub_key(ISSUER, "hank"),
        at_ms: 2_000,
        until: now_secs() + 60,
    })
    .await
    .unwrap();
    assert_eq!(st.load(&tb).await.unwrap(), None);
    assert!(record(&redis.conn(), &b.id).await.is_some());
}

#[tokio::test]
async fn an_unreachable_redis_or_revocations_out_of_sync_fail_closed() {
    let redis = TestRedis::start();
    let ticket = local(redis.conn()).save(&session(11, "ivy")).await.unwrap();
    let dead = local(dead_conn());
    assert!(matches!(
        dead.load(&ticket).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        dead.save(&session(12, "jo")).await,
        Err(StoreError::Unavailable(_))
    ));
    // revoking still succeeds (applied here, queued for the feed)
    dead.revoke(Revocation::Session {
        id: SessionId::from_bytes([11; 16]),
        until: now_secs() + 60,
    })
    .await
    .unwrap();
    // a feed never heard from: not vouched for, even with Redis up
    let unsynced = store(
        redis.conn(),
        Arc::new(Revocations::shared(
            redis.conn(),
            format!("{PREFIX}revocations"),
            Duration::from_secs(3600),
        )),
    );
    assert!(matches!(
        unsynced.load(&ticket).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(unsynced.load("garbage").await.unwrap(), None);
}
