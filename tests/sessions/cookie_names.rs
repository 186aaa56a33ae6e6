//! Whose cookie is the session (issue 9, item 10): by default it is
//! `__Host-` prefixed (so the browser refuses one planted by a sibling
//! subdomain or over plain http), and a session cookie sent twice, or
//! whole beside chunks, is no session at all: never "first wins" or "last
//! wins", with the cookie store and with the Redis store's ticket.

use http::StatusCode;

use crate::support::client::TestClient;
use crate::support::proxy::{TestProxy, login};
use crate::support::redis::{RedisServer, redis_available};
use crate::{
    Backend, COOKIE, Store, VIAS, World, assert_allowed_everywhere, assert_refused_everywhere,
    signed_in, status,
};

#[tokio::test]
async fn by_default_the_session_cookie_is_host_prefixed_with_path_root_and_no_domain() {
    let world = World::start().await;
    let proxy = TestProxy::builder(&world.idp, &world.upstream)
        .set("cookie_secure", true)
        .start()
        .await;
    let client = TestClient::new();
    let start = client.get(&proxy.url("/oauth2/start?rd=/")).await;
    assert_eq!(start.status, StatusCode::FOUND);
    let callback = login(&client, &proxy, "/").await;
    for (what, resp) in [("login state", &start), ("session", &callback)] {
        let set = resp.set_cookies();
        let ours: Vec<_> = set.iter().filter(|c| !c.value().is_empty()).collect();
        assert!(!ours.is_empty(), "{what}: no cookie set");
        for c in ours {
            assert!(
                c.name().starts_with("__Host-gatehouse"),
                "{what}: {} is not __Host- prefixed",
                c.name()
            );
            assert_eq!(c.path(), Some("/"), "{what}: {c}");
            assert_eq!(c.domain(), None, "{what}: {c}");
            assert_eq!(c.secure(), Some(true), "{what}: {c}");
        }
    }
    assert!(callback.set_cookie("__Host-gatehouse").is_some());
    // and the session works under that name
    let cookie = format!(
        "__Host-gatehouse={}",
        client.cookie(&proxy.host(), "__Host-gatehouse").unwrap()
    );
    assert_allowed_everywhere(&proxy, &cookie, "the __Host- session").await;
}

/// The ways a session cookie can be planted beside a valid `cookie`
/// (`COOKIE=value`): each must be refused everywhere.
fn planted_variants(cookie: &str) -> Vec<(&'static str, String)> {
    vec![
        ("planted after", format!("{cookie}; {COOKIE}=planted")),
        ("planted before", format!("{COOKIE}=planted; {cookie}")),
        ("the same pair twice", format!("{cookie}; {cookie}")),
        (
            "a chunk beside the whole",
            format!("{cookie}; {COOKIE}_0=x"),
        ),
        (
            "chunk 1 beside the whole",
            format!("{cookie}; {COOKIE}_1=x"),
        ),
    ]
}

async fn assert_duplicates_refused(proxy: &TestProxy, what: &str) {
    let (_browser, cookie) = signed_in(proxy).await;
    assert!(
        cookie.starts_with(&format!("{COOKIE}=")),
        "expected one whole session cookie: {cookie}"
    );
    assert_allowed_everywhere(proxy, &cookie, &format!("{what}: the valid cookie alone")).await;
    for (how, header) in planted_variants(&cookie) {
        assert_refused_everywhere(proxy, &header, &format!("{what}: {how}")).await;
    }
    // a planted cookie that is not a canonical chunk name changes nothing
    for stray in ["_01", "_+1", "_8", "x"] {
        let header = format!("{cookie}; {COOKIE}{stray}=x");
        assert_allowed_everywhere(proxy, &header, &format!("{what}: {COOKIE}{stray}")).await;
    }
    // a browser navigation with a duplicate is sent to sign in again
    let nav = TestClient::new()
        .get_with(
            &proxy.url("/app"),
            &[("cookie", &format!("{cookie}; {COOKIE}=planted"))],
        )
        .await;
    assert_eq!(nav.status, StatusCode::FOUND, "{what}");
    assert!(
        nav.location().unwrap().contains("/authorize"),
        "{what}: {:?}",
        nav.location()
    );
}

#[tokio::test]
async fn a_duplicated_session_cookie_gives_no_session() {
    let world = World::start().await;
    let proxy = TestProxy::start("", &world.idp, &world.upstream).await;
    assert_duplicates_refused(&proxy, "cookie store").await;
    // for completeness: every way in answers 401, not 503 or 200
    for via in VIAS {
        let s = status(&proxy, via, &format!("{COOKIE}=a; {COOKIE}=b")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{via:?}");
    }
}

#[tokio::test]
async fn a_duplicated_redis_ticket_cookie_gives_no_session() {
    if !redis_available("a_duplicated_redis_ticket_cookie_gives_no_session") {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let proxy = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    assert_duplicates_refused(&proxy, "redis store").await;
}
