//! `cookie_refresh` across replicas (issue 8): two gatehouse instances that
//! share Redis and get the same stale session at the same moment redeem its
//! rotating refresh token once; the other uses the winner's result.

use crate::support::SESSION_COOKIE;
use std::time::Duration;

use http::StatusCode;

use crate::support::client::TestClient;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{TestProxy, login};
use crate::support::redis::{RedisServer, redis_available};
use crate::support::upstream::Recorder;

fn refresh_grants(idp: &MockIdp) -> usize {
    idp.token_requests()
        .iter()
        .filter(|t| t.params.get("grant_type") == Some("refresh_token"))
        .count()
}

async fn race(store_type: &str) {
    let redis = RedisServer::start().await;
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let replica = || {
        TestProxy::builder(&idp, &upstream)
            .set("cookie_refresh", "1s")
            .set("session_store_type", store_type)
            .set("redis_connection_url", redis.url())
            .start()
    };
    let (a, b) = (replica().await, replica().await);
    let client = TestClient::new();
    login(&client, &a, "/").await;
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        client.cookie("127.0.0.1", SESSION_COOKIE).unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = if i % 2 == 0 {
            a.url("/oauth2/auth")
        } else {
            b.url("/")
        };
        let cookie = cookie.clone();
        tasks.push(tokio::spawn(async move {
            TestClient::new()
                .get_with(&url, &[("cookie", &cookie), ("accept", "application/json")])
                .await
                .status
        }));
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::ACCEPTED,
            "{store_type}: {status}"
        );
    }
    assert_eq!(
        refresh_grants(&idp),
        1,
        "{store_type}: one refresh for eight requests on two replicas"
    );
}

#[tokio::test]
async fn two_replicas_redeem_a_rotating_refresh_token_once_with_the_cookie_store() {
    if redis_available("two_replicas_redeem_a_rotating_refresh_token_once_with_the_cookie_store") {
        race("cookie").await;
    }
}

#[tokio::test]
async fn two_replicas_redeem_a_rotating_refresh_token_once_with_the_redis_store() {
    if redis_available("two_replicas_redeem_a_rotating_refresh_token_once_with_the_redis_store") {
        race("redis").await;
    }
}
