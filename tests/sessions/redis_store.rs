//! `session_store_type = "redis"` (issue 8): the cookie is a small ticket,
//! sessions survive a gatehouse restart, and what Redis holds reveals
//! nothing about who is signed in.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::StatusCode;

use crate::support::redis::{RedisServer, Reply, redis_available};
use crate::{
    Backend, Store, World, assert_allowed_everywhere, assert_refused_everywhere, is_session_cookie,
    sign_out, signed_in, status,
};

#[tokio::test]
async fn the_redis_store_cookie_is_a_ticket_under_200_bytes() {
    if !redis_available("the_redis_store_cookie_is_a_ticket_under_200_bytes") {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let gatehouse = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    let (browser, cookie) = signed_in(&gatehouse).await;
    let sessions: Vec<(String, String)> = browser
        .cookies_for("127.0.0.1")
        .into_iter()
        .filter(|(name, _)| is_session_cookie(name))
        .collect();
    assert_eq!(sessions.len(), 1, "one cookie, not split: {sessions:?}");
    assert!(
        cookie.len() < 200,
        "the cookie is {} bytes: {cookie}",
        cookie.len()
    );
    assert_allowed_everywhere(&gatehouse, &cookie, "the ticket").await;

    // for comparison, the cookie store's cookie carries the whole session
    let cookie_mode = world
        .gatehouse(Store::Cookie, Backend::Standalone(&redis))
        .await;
    let (_browser, whole) = signed_in(&cookie_mode).await;
    assert!(
        whole.len() > cookie.len(),
        "the cookie store's cookie ({} bytes) should be larger than the ticket ({} bytes)",
        whole.len(),
        cookie.len()
    );
}

#[tokio::test]
async fn a_redis_session_survives_a_gatehouse_restart() {
    if !redis_available("a_redis_session_survives_a_gatehouse_restart") {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let first = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    let (_browser, cookie) = signed_in(&first).await;
    assert_allowed_everywhere(&first, &cookie, "before the restart").await;
    let logins = world.idp.token_requests().len();
    first.shutdown().await;

    let second = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    assert_allowed_everywhere(&second, &cookie, "after the restart").await;
    assert_eq!(
        world.idp.token_requests().len(),
        logins,
        "the restarted gatehouse asked the provider again"
    );
    let upstream_saw = world.upstream.last().unwrap();
    assert_eq!(
        upstream_saw.header("x-forwarded-email"),
        Some("alice@example.com"),
        "the session's identity survived"
    );
}

#[tokio::test]
async fn a_signed_out_redis_session_stays_refused_after_a_gatehouse_restart() {
    if !redis_available("a_signed_out_redis_session_stays_refused_after_a_gatehouse_restart") {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let first = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    let (browser, cookie) = signed_in(&first).await;
    sign_out(&browser, &first).await;
    first.shutdown().await;
    let second = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    assert_refused_everywhere(&second, &cookie, "signed out before the restart").await;
}

/// Every key and value Redis holds, as `redis-cli --scan` and a read of
/// each key (whatever its type) show it.
async fn dump(redis: &RedisServer) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for key in redis.cli_scan().await {
        let kind = redis.cmd(&["TYPE", &key]).await.unwrap().text();
        let read: Vec<&str> = match kind.as_str() {
            "string" => vec!["GET"],
            "hash" => vec!["HGETALL"],
            "list" => vec!["LRANGE", "0", "-1"],
            "set" => vec!["SMEMBERS"],
            "zset" => vec!["ZRANGE", "0", "-1", "WITHSCORES"],
            "stream" => vec!["XRANGE", "-", "+"],
            "none" => continue, // expired meanwhile
            other => panic!("key {key:?} of unexpected type {other}"),
        };
        let mut args = vec![read[0], key.as_str()];
        args.extend(&read[1..]);
        let value = flatten(&redis.cmd(&args).await.unwrap());
        out.push((key, value));
    }
    out
}

fn flatten(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Simple(s) | Reply::Error(s) => s.as_bytes().to_vec(),
        Reply::Int(i) => i.to_string().into_bytes(),
        Reply::Bulk(b) => b.clone().unwrap_or_default(),
        Reply::Array(items) => items
            .iter()
            .flatten()
            .flat_map(|r| {
                let mut v = flatten(r);
                v.push(b'\n');
                v
            })
            .collect(),
    }
}

/// `bytes` itself, and what it decodes to when it (or a line of it) is
/// base64 of any flavour: plaintext hidden in base64 is still plaintext.
fn readings(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![bytes.to_vec()];
    let text = String::from_utf8_lossy(bytes);
    for part in text.split(|c: char| c.is_whitespace() || c == ':' || c == '.' || c == ',') {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(decoded) = engine.decode(part) {
                out.push(decoded);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_redis_dump_shows_no_identity_no_token_and_no_cookie() {
    if !redis_available("a_redis_dump_shows_no_identity_no_token_and_no_cookie") {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let gatehouse = world
        .builder(Store::Redis, Backend::Standalone(&redis))
        .set("pass_access_token", true)
        .set("pass_authorization_header", true)
        .set("cookie_refresh", "1s")
        .start()
        .await;
    let (_browser, cookie) = signed_in(&gatehouse).await;
    assert_eq!(
        status(&gatehouse, crate::Via::Proxy, &cookie).await,
        StatusCode::OK
    );
    let seen = world.upstream.last().unwrap();
    let access_token = seen.header("x-forwarded-access-token").unwrap().to_owned();
    let id_token = seen
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap()
        .to_owned();
    let before_refresh = dump(&redis).await;
    assert!(!before_refresh.is_empty(), "the session is in Redis");

    // the refresh token the session held is the one the refresh redeems
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&gatehouse, crate::Via::Proxy, &cookie).await,
        StatusCode::OK
    );
    let refresh_token = world
        .idp
        .token_requests()
        .iter()
        .find(|t| t.params.get("grant_type") == Some("refresh_token"))
        .and_then(|t| t.params.get("refresh_token").map(str::to_owned))
        .expect("the session was refreshed");
    let after_refresh = dump(&redis).await;

    let user = &world.idp.options().users[0];
    assert_eq!(user.username, "alice");
    let cookie_value = cookie.split_once('=').unwrap().1.to_owned();
    // the parts of a JWT are base64url of JSON: each is checked on its own
    let mut needles: Vec<(&str, String)> = vec![
        ("email", user.email.clone()),
        ("sub", user.sub.clone()),
        ("name", user.name.clone()),
        ("access token", access_token.clone()),
        ("refresh token", refresh_token),
        ("cookie", cookie_value),
    ];
    for (i, part) in id_token.split('.').enumerate().take(3) {
        needles.push((
            ["id token header", "id token claims", "id token signature"][i],
            part.to_owned(),
        ));
    }
    for (i, part) in access_token.split('.').enumerate().take(3).skip(1) {
        needles.push((
            ["", "access token claims", "access token signature"][i],
            part.to_owned(),
        ));
    }
    for (when, dumped) in [
        ("after login", &before_refresh),
        ("after a refresh", &after_refresh),
    ] {
        for (key, value) in dumped {
            for reading in readings(key.as_bytes()).iter().chain(&readings(value)) {
                for (what, needle) in &needles {
                    assert!(
                        !contains(reading, needle.as_bytes()),
                        "{when}: Redis key {key:?} reveals the {what} ({needle}) in \
                         {:?}",
                        String::from_utf8_lossy(reading)
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_password_protected_redis_works_with_redis_password_and_with_redis_password_file() {
    if !redis_available(
        "a_password_protected_redis_works_with_redis_password_and_with_redis_password_file",
    ) {
        return;
    }
    let redis = RedisServer::start_with_password("s3cret-for-redis").await;
    let world = World::start().await;
    // `with_redis` sets `redis_password` for a server that has one
    let by_value = world
        .gatehouse(Store::Redis, Backend::Standalone(&redis))
        .await;
    let (_browser, cookie) = signed_in(&by_value).await;
    assert_allowed_everywhere(&by_value, &cookie, "redis_password").await;

    let dir = crate::support::e2e::TempDir::new("redis-password");
    let file = dir.write("redis-password", "s3cret-for-redis\n");
    let by_file = world
        .builder(Store::Redis, Backend::Standalone(&redis))
        .remove("redis_password")
        .set("redis_password_file", file.display().to_string())
        .start()
        .await;
    assert_allowed_everywhere(&by_file, &cookie, "redis_password_file, same session").await;
    let (_browser, other) = signed_in(&by_file).await;
    assert_allowed_everywhere(&by_file, &other, "redis_password_file, new session").await;
    assert!(
        redis.keys().await.len() >= 2,
        "both sessions are in the password-protected Redis"
    );
}

#[tokio::test]
async fn a_wrong_redis_password_never_lets_a_request_through() {
    if !redis_available("a_wrong_redis_password_never_lets_a_request_through") {
        return;
    }
    let redis = RedisServer::start_with_password("the-right-one").await;
    let world = World::start().await;
    let started = world
        .builder(Store::Cookie, Backend::Standalone(&redis))
        .set("redis_password", "a-wrong-one")
        .no_wait()
        .try_start()
        .await;
    // refusing to start is fine; starting is fine only if never ready
    let Ok(gatehouse) = started else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < deadline {
        let ready = crate::support::client::TestClient::new()
            .get_api(&gatehouse.url("/ready"))
            .await
            .status;
        assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE, "/ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // a login cannot complete into an allowed session either
    let browser = crate::support::client::TestClient::new();
    let first = browser.get(&gatehouse.url("/")).await;
    assert!(!first.status.is_success(), "{}", first.status);
    for via in crate::VIAS {
        let s = status(&gatehouse, via, "").await;
        assert!(!s.is_success(), "{via:?} answered {s} without a session");
    }
}
