//! The session store contract (tower-sessions' habit): one suite, run
//! against every store. The cookie store runs without Redis and with Redis
//! sharing its revocations; the Redis store against a real `redis-server`.

use crate::support::SESSION_COOKIE;
use std::sync::Arc;
use std::time::Duration;

use gatehouse::auth::identity::{Identity, Tokens};
use gatehouse::auth::session::redis_store::RedisStore;
use gatehouse::auth::session::revocations::{Revocation, Revocations, sid_key, sub_key};
use gatehouse::auth::session::store::{CookieStore, SessionStore};
use gatehouse::auth::session::{CookieCodec, Session, SessionId, now_millis, now_secs};
use gatehouse::config::{RedisConfig, RedisTopology, Secret};
use gatehouse::redis_conn::RedisConn;

use crate::support::redis::{RedisServer, redis_available};

const ISSUER: &str = "https://idp.contract.test";
const SECRET: &str = "contract-secret-contract-secret!";

fn codec(issuer: &str) -> Arc<CookieCodec> {
    Arc::new(CookieCodec::new(&[Secret::new(SECRET)], issuer, "gatehouse").unwrap())
}

fn session(n: u8, sid: Option<&str>, sub: &str) -> Session {
    Session {
        id: SessionId::from_bytes([n; 16]),
        provider_sid: sid.map(str::to_owned),
        provider: None,
        issuer: ISSUER.to_owned(),
        issued_at_ms: now_millis() - 1_000,
        identity: Identity {
            subject: sub.to_owned(),
            email: Some(format!("{sub}@example.com")),
            groups: vec!["staff".to_owned()],
            expires_at: now_secs() + 3600,
            refreshed_at: now_secs(),
            tokens: Tokens {
                refresh_token: Some(Secret::new(format!("rt-{n}"))),
                ..Tokens::default()
            },
            ..Identity::default()
        },
        secret: None,
    }
}

fn same(a: &Session, b: &Session) -> bool {
    a.to_bytes() == b.to_bytes()
}

/// Every store must pass this. `foreign` is the same kind of store for
/// another deployment (another issuer) sharing the cookie secret.
async fn contract<S: SessionStore>(store: &S, foreign: &S) {
    // round trip
    let alice = session(1, Some("op-a"), "alice");
    let value = store.save(&alice).await.unwrap();
    let back = store
        .load(&value)
        .await
        .unwrap()
        .expect("saved session loads");
    assert!(same(&back, &alice));

    // tampered, truncated, garbage, foreign: no session (and no error)
    let mut flipped = value.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        flipped.as_str(),
        &value[..value.len() - 3],
        "",
        "garbage",
        &"A".repeat(500),
    ] {
        assert!(store.load(bad).await.unwrap().is_none(), "{bad:.30}");
    }
    let theirs = foreign.save(&session(9, None, "mallory")).await.unwrap();
    assert!(
        store.load(&theirs).await.unwrap().is_none(),
        "foreign deployment"
    );

    // expired: refused at save or at load
    let mut old = session(2, None, "alice");
    old.identity.expires_at = now_secs() - 1;
    if let Ok(v) = store.save(&old).await {
        assert!(store.load(&v).await.unwrap().is_none(), "expired");
    }

    // revoke by id: that session only
    let bob1 = session(3, Some("op-b1"), "bob");
    let bob2 = session(4, Some("op-b2"), "bob");
    let (v1, v2) = (
        store.save(&bob1).await.unwrap(),
        store.save(&bob2).await.unwrap(),
    );
    store
        .revoke(Revocation::Session {
            id: bob1.id,
            until: bob1.identity.expires_at,
        })
        .await
        .unwrap();
    assert!(store.load(&v1).await.unwrap().is_none(), "revoked by id");
    assert!(
        store.load(&v2).await.unwrap().is_some(),
        "other session kept"
    );

    // revoke by sid: that provider session only
    store
        .revoke(Revocation::ProviderSession {
            key: sid_key(ISSUER, "op-b2"),
            at_ms: now_millis(),
            until: now_secs() + 3600,
        })
        .await
        .unwrap();
    assert!(store.load(&v2).await.unwrap().is_none(), "revoked by sid");
    assert!(store.load(&value).await.unwrap().is_some(), "alice kept");

    // revoke by sub: every earlier session of that user, not later ones
    let carol1 = session(5, None, "carol");
    let carol2 = session(6, Some("op-c"), "carol");
    let (c1, c2) = (
        store.save(&carol1).await.unwrap(),
        store.save(&carol2).await.unwrap(),
    );
    store
        .revoke(Revocation::Subject {
            key: sub_key(ISSUER, "carol"),
            at_ms: now_millis(),
            until: now_secs() + 3600,
        })
        .await
        .unwrap();
    assert!(store.load(&c1).await.unwrap().is_none(), "revoked by sub");
    assert!(store.load(&c2).await.unwrap().is_none(), "revoked by sub");
    let mut later = session(7, None, "carol");
    later.issued_at_ms = now_millis() + 5;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let c3 = store.save(&later).await.unwrap();
    assert!(
        store.load(&c3).await.unwrap().is_some(),
        "a later login works"
    );
    assert!(store.load(&value).await.unwrap().is_some(), "alice kept");

    // an update (refresh) keeps the id: the new value loads the new data
    let mut refreshed = std::sync::Arc::unwrap_or_clone(store.load(&value).await.unwrap().unwrap());
    refreshed.identity.groups = vec!["staff".to_owned(), "admins".to_owned()];
    let new_value = store.save(&refreshed).await.unwrap();
    let got = store.load(&new_value).await.unwrap().unwrap();
    assert_eq!(got.identity.groups, refreshed.identity.groups);
    assert_eq!(got.id, alice.id);
}

#[tokio::test]
async fn the_cookie_store_keeps_the_contract() {
    let revocations = Arc::new(Revocations::local());
    let store = CookieStore::new(codec(ISSUER), SESSION_COOKIE, revocations);
    let foreign = CookieStore::new(
        codec("https://other.test"),
        SESSION_COOKIE,
        Arc::new(Revocations::local()),
    );
    contract(&store, &foreign).await;
}

fn conn(redis: &RedisServer) -> RedisConn {
    RedisConn::new(&RedisConfig {
        topology: RedisTopology::Single(redis.url().parse().unwrap()),
        password: None,
    })
    .unwrap()
}

/// Revocations shared through `redis`, polled until in sync.
async fn shared(redis: &RedisServer, prefix: &str) -> Arc<Revocations> {
    let r = Arc::new(Revocations::shared(
        conn(redis),
        format!("{prefix}revocations"),
        Duration::from_secs(3600),
    ));
    sync(&r).await;
    r
}

/// Polls the feed until it is in sync (a reconnect can take a few tries).
async fn sync(r: &Revocations) {
    for _ in 0..50 {
        r.poll().await;
        if r.fresh() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("revocations not in sync with redis within 5 s");
}

#[tokio::test]
async fn the_cookie_store_sharing_revocations_through_redis_keeps_the_contract() {
    if !redis_available("the_cookie_store_sharing_revocations_through_redis_keeps_the_contract") {
        return;
    }
    let redis = RedisServer::start().await;
    let store = CookieStore::new(codec(ISSUER), SESSION_COOKIE, shared(&redis, "c1:").await);
    let foreign = CookieStore::new(
        codec("https://other.test"),
        SESSION_COOKIE,
        shared(&redis, "c2:").await,
    );
    contract(&store, &foreign).await;
}

#[tokio::test]
async fn the_redis_store_keeps_the_contract() {
    if !redis_available("the_redis_store_keeps_the_contract") {
        return;
    }
    let redis = RedisServer::start().await;
    let store = RedisStore::new(
        codec(ISSUER),
        SESSION_COOKIE,
        conn(&redis),
        "t1:".to_owned(),
        shared(&redis, "t1:").await,
    );
    let foreign = RedisStore::new(
        codec("https://other.test"),
        SESSION_COOKIE,
        conn(&redis),
        "t2:".to_owned(),
        shared(&redis, "t2:").await,
    );
    contract(&store, &foreign).await;

    // Redis-only: the ticket is small, an update reaches holders of the old
    // ticket, and a store that cannot reach Redis fails closed
    let s = session(20, None, "dave");
    let ticket = store.save(&s).await.unwrap();
    assert!(
        ticket.len() + SESSION_COOKIE.len() + 1 < 200,
        "{} bytes",
        ticket.len()
    );
    let mut loaded = std::sync::Arc::unwrap_or_clone(store.load(&ticket).await.unwrap().unwrap());
    loaded.identity.email = Some("new@example.com".to_owned());
    store.save(&loaded).await.unwrap();
    let seen = store.load(&ticket).await.unwrap().unwrap();
    assert_eq!(seen.identity.email.as_deref(), Some("new@example.com"));
}

#[tokio::test]
async fn a_store_that_cannot_reach_redis_fails_closed_and_recovers() {
    if !redis_available("a_store_that_cannot_reach_redis_fails_closed_and_recovers") {
        return;
    }
    let mut redis = RedisServer::start().await;
    let revocations = shared(&redis, "o:").await;
    let store = RedisStore::new(
        codec(ISSUER),
        SESSION_COOKIE,
        conn(&redis),
        "o:".to_owned(),
        revocations.clone(),
    );
    let cookie_store = CookieStore::new(codec(ISSUER), SESSION_COOKIE, revocations.clone());
    let s = session(30, None, "erin");
    let ticket = store.save(&s).await.unwrap();
    let cookie = cookie_store.save(&s).await.unwrap();
    redis.stop();
    revocations.poll().await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(!revocations.fresh());
    assert!(
        store.load(&ticket).await.is_err(),
        "no answer from stale knowledge"
    );
    assert!(
        cookie_store.load(&cookie).await.is_err(),
        "cookie store closed too"
    );
    // a sign-out during the outage applies here at once and is sent later
    let gone = session(31, None, "frank");
    let gone_cookie = cookie_store.save(&gone).await.unwrap();
    cookie_store
        .revoke(Revocation::Session {
            id: gone.id,
            until: gone.identity.expires_at,
        })
        .await
        .unwrap();
    redis.start_again().await;
    sync(&revocations).await; // in sync again without a restart
    assert!(
        cookie_store.load(&cookie).await.unwrap().is_some(),
        "nobody signed out"
    );
    assert!(cookie_store.load(&gone_cookie).await.unwrap().is_none());
    // the queued revocation reached Redis: a fresh replica sees it
    let other = shared(&redis, "o:").await;
    let other_store = CookieStore::new(codec(ISSUER), SESSION_COOKIE, other);
    assert!(other_store.load(&gone_cookie).await.unwrap().is_none());
}
