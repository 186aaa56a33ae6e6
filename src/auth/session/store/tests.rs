use super::*;
use crate::auth::identity::Identity;
use crate::auth::session::now_secs;
use crate::auth::session::revocations::sub_key;
use crate::config::Secret;
use crate::redis_conn::testing::dead_conn;

const ISSUER: &str = "https://idp.example.com";

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
            expires_at: now_secs() + 3600,
            ..Identity::default()
        },
    }
}

/// The revocation of the session `session(id, ..)` makes, for a minute.
fn session_revoked(id: u8) -> Revocation {
    Revocation::Session {
        id: SessionId::from_bytes([id; 16]),
        until: now_secs() + 60,
    }
}

fn cookie_store(revocations: Arc<Revocations>) -> Store {
    Store::Cookie(CookieStore::new(codec(), "_gatehouse", revocations))
}

#[tokio::test]
async fn the_cookie_store_loads_what_it_saved_and_names_its_id() {
    let revocations = Arc::new(Revocations::local());
    let store = cookie_store(Arc::clone(&revocations));
    let s = session(1, "alice");
    let value = store.save(&s).await.unwrap();
    let loaded = store.load(&value).await.unwrap().unwrap();
    assert_eq!(*loaded, s);
    // shared with the opened-session cache, not copied per request
    let again = store.load(&value).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&loaded, &again));
    assert_eq!(store.session_id(&value), Some(s.id));
    assert!(Arc::ptr_eq(store.revocations(), &revocations));
    // the value is the sealed session, for this cookie name only
    assert_eq!(
        codec()
            .open("_gatehouse", &value)
            .and_then(|p| Session::from_bytes(&p)),
        Some(s)
    );
    let other = Store::Cookie(CookieStore::new(
        codec(),
        "_other",
        Arc::new(Revocations::local()),
    ));
    assert_eq!(other.load(&value).await.unwrap(), None);
    assert_eq!(other.session_id(&value), None);
    assert_eq!(store.load("garbage").await.unwrap(), None);
    assert_eq!(store.session_id("garbage"), None);
}

#[tokio::test]
async fn a_revoked_cookie_session_loads_as_none_and_others_still_load() {
    let store = cookie_store(Arc::new(Revocations::local()));
    let a = store.save(&session(1, "alice")).await.unwrap();
    let b = store.save(&session(2, "bob")).await.unwrap();
    store.revoke(session_revoked(1)).await.unwrap();
    assert_eq!(store.load(&a).await.unwrap(), None);
    assert!(store.load(&b).await.unwrap().is_some());
    store
        .revoke(Revocation::Subject {
            key: sub_key(ISSUER, "bob"),
            at_ms: 2_000,
            until: now_secs() + 60,
        })
        .await
        .unwrap();
    assert_eq!(store.load(&b).await.unwrap(), None);
}

#[tokio::test]
async fn revocations_not_in_sync_make_the_cookie_store_unavailable_but_a_revocation_still_applies()
{
    // shared through a Redis that never answered: not vouched for
    let revocations = Arc::new(Revocations::shared(
        dead_conn(),
        "gh:t:revocations".into(),
        std::time::Duration::from_secs(3600),
    ));
    let store = cookie_store(Arc::clone(&revocations));
    let value = store.save(&session(3, "carol")).await.unwrap();
    assert!(matches!(
        store.load(&value).await,
        Err(StoreError::Unavailable(_))
    ));
    // a revocation is applied here even though it cannot be published,
    // and a revoked session is refused before the freshness check
    store.revoke(session_revoked(3)).await.unwrap();
    assert_eq!(store.load(&value).await.unwrap(), None);
    // garbage is no session, whatever the feed says
    assert_eq!(store.load("garbage").await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_session_is_not_loaded() {
    let store = cookie_store(Arc::new(Revocations::local()));
    let mut s = session(4, "dave");
    s.identity.expires_at = now_secs() - 1;
    let value = store.save(&s).await.unwrap();
    assert_eq!(store.load(&value).await.unwrap(), None);
}

#[tokio::test]
async fn a_cookie_session_loaded_once_is_still_refused_once_revoked() {
    let store = cookie_store(Arc::new(Revocations::local()));
    let s = session(1, "alice");
    let value = store.save(&s).await.unwrap();
    // loaded twice: the second answer comes from the opened-session cache
    assert_eq!(store.load(&value).await.unwrap(), Some(Arc::new(s.clone())));
    assert_eq!(store.load(&value).await.unwrap(), Some(Arc::new(s)));
    store.revoke(session_revoked(1)).await.unwrap();
    assert_eq!(store.load(&value).await.unwrap(), None);
}

#[tokio::test]
async fn an_opened_cookie_session_past_its_expiry_loads_as_none() {
    let store = CookieStore::new(codec(), "_gatehouse", Arc::new(Revocations::local()));
    let value = store.save(&session(1, "alice")).await.unwrap();
    assert!(store.load(&value).await.unwrap().is_some());
    // the cached copy as it will be once its time is up (no clock to fake)
    let mut expired = session(1, "alice");
    expired.identity.expires_at = now_secs() - 1;
    let expired = Arc::new(expired);
    store
        .opened
        .insert(value.clone().into_bytes(), Arc::clone(&expired))
        .await;
    // this thread's front slot answered the load above: expired too, then
    // found in the shared cache alone
    front::put(store.front_id, value.as_bytes(), &expired);
    assert_eq!(store.load(&value).await.unwrap(), None);
    assert!(front::get(store.front_id, value.as_bytes()).is_none());
    assert_eq!(store.opened.get(value.as_bytes()).await, None);
    store
        .opened
        .insert(value.clone().into_bytes(), expired)
        .await;
    assert_eq!(store.load(&value).await.unwrap(), None);
    assert_eq!(store.opened.get(value.as_bytes()).await, None);
}

#[tokio::test]
async fn a_session_in_this_threads_front_slot_still_answers_to_revocations_and_other_secrets() {
    let revocations = Arc::new(Revocations::local());
    let store = CookieStore::new(codec(), "_gatehouse", Arc::clone(&revocations));
    let value = store.save(&session(1, "alice")).await.unwrap();
    assert!(store.load(&value).await.unwrap().is_some());
    assert!(front::get(store.front_id, value.as_bytes()).is_some());
    // a store built again (a reload, the same secret) has slots of its own
    let again = CookieStore::new(codec(), "_gatehouse", Arc::clone(&revocations));
    assert!(front::get(again.front_id, value.as_bytes()).is_none());
    assert!(again.load(&value).await.unwrap().is_some());
    // another secret opens nothing, though this thread holds the session
    let other = CookieStore::new(
        Arc::new(
            CookieCodec::new(
                &[Secret::new("fedcba9876543210fedcba9876543210")],
                ISSUER,
                "gatehouse",
            )
            .unwrap(),
        ),
        "_gatehouse",
        Arc::clone(&revocations),
    );
    assert_eq!(other.load(&value).await.unwrap(), None);
    // revoked: refused while its slot still holds it (one slot per value:
    // the loads above took it over)
    assert!(store.load(&value).await.unwrap().is_some());
    assert!(front::get(store.front_id, value.as_bytes()).is_some());
    store.revoke(session_revoked(1)).await.unwrap();
    assert!(front::get(store.front_id, value.as_bytes()).is_some());
    assert_eq!(store.load(&value).await.unwrap(), None);
    assert_eq!(again.load(&value).await.unwrap(), None);
}

#[tokio::test]
async fn only_the_exact_cookie_value_finds_an_opened_session() {
    let store = CookieStore::new(codec(), "_gatehouse", Arc::new(Revocations::local()));
    let value = store.save(&session(1, "alice")).await.unwrap();
    assert!(store.load(&value).await.unwrap().is_some());
    // a value that does not open is neither answered nor remembered
    for forged in [
        format!("{value}A"),
        value[..value.len() - 1].to_owned(),
        format!("A{}", &value[1..]),
    ] {
        assert_eq!(store.load(&forged).await.unwrap(), None, "{forged}");
        assert_eq!(store.opened.get(forged.as_bytes()).await, None);
    }
    assert!(store.opened.get(value.as_bytes()).await.is_some());
}

#[tokio::test]
async fn an_unchecked_value_is_found_by_its_very_bytes_and_bad_bytes_are_never_kept() {
    let store = CookieStore::new(codec(), "_gatehouse", Arc::new(Revocations::local()));
    let value = store.save(&session(1, "alice")).await.unwrap();
    let unchecked = |b: &[u8]| UncheckedValue::new(b.to_vec());
    // a miss: checked, opened, then kept under its bytes
    let first = store.load_unchecked(&unchecked(value.as_bytes())).await;
    assert_eq!(first.unwrap().unwrap().identity.subject, "alice");
    assert!(store.opened.get(value.as_bytes()).await.is_some());
    let hit = store.load_unchecked(&unchecked(value.as_bytes())).await;
    assert_eq!(hit.unwrap().unwrap().identity.subject, "alice");
    // bytes no cookie value may hold, beside or instead of the kept value:
    // missed, refused by the check, never kept
    for bad in [
        [value.as_bytes(), b"\x01"].concat(),
        [value.as_bytes(), "\u{e9}".as_bytes()].concat(),
        [b"\xff".as_slice(), value.as_bytes()].concat(),
        [value.as_bytes(), b" "].concat(),
    ] {
        assert_eq!(store.load_unchecked(&unchecked(&bad)).await.unwrap(), None);
        assert_eq!(store.opened.get(&bad).await, None);
    }
    // a hit still answers to revocation
    store.revoke(session_revoked(1)).await.unwrap();
    let revoked = store.load_unchecked(&unchecked(value.as_bytes())).await;
    assert_eq!(revoked.unwrap(), None);
}
