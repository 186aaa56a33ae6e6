//! Redis Sentinel and Redis Cluster behind the session store (issue 8):
//! sessions made through Sentinel outlive a failover, and sessions made
//! through a Cluster work and spread over its masters.

use std::time::{Duration, Instant};

use crate::replicas::assert_sign_out_crosses_replicas;
use crate::support::redis::{RedisCluster, RedisSentinel, redis_available};
use crate::{Backend, Store, Via, World, assert_allowed_everywhere, signed_in, status};

#[tokio::test]
async fn a_redis_session_made_through_sentinel_still_works_after_a_failover() {
    if !redis_available("a_redis_session_made_through_sentinel_still_works_after_a_failover") {
        return;
    }
    let mut set = RedisSentinel::start().await;
    let world = World::start().await;
    let gatehouse = world.gatehouse(Store::Redis, Backend::Sentinel(&set)).await;
    let (_browser, cookie) = signed_in(&gatehouse).await;
    assert_allowed_everywhere(&gatehouse, &cookie, "before the failover").await;
    assert!(
        !set.master().keys().await.is_empty(),
        "the session is not on the master the sentinel names"
    );
    // the replica has everything before the master dies
    let acked = set.master().cmd(&["WAIT", "1", "2000"]).await.unwrap();
    assert_eq!(acked.int(), 1, "the replica did not acknowledge the writes");

    set.kill_master();
    set.wait_for_promotion().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&gatehouse, Via::Auth, &cookie).await;
        if s.is_success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session does not work 20 s after the failover: /oauth2/auth answers {s}\n{}",
            set.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_allowed_everywhere(&gatehouse, &cookie, "after the failover").await;
    // and new sessions go to the new master
    let (_browser, fresh) = signed_in(&gatehouse).await;
    assert_allowed_everywhere(&gatehouse, &fresh, "a login after the failover").await;
}

#[tokio::test]
async fn redis_sessions_made_through_a_cluster_work_and_spread_over_its_masters() {
    if !redis_available("redis_sessions_made_through_a_cluster_work_and_spread_over_its_masters") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let world = World::start().await;
    let one = world
        .gatehouse(Store::Redis, Backend::Cluster(&cluster))
        .await;
    let two = world
        .gatehouse(Store::Redis, Backend::Cluster(&cluster))
        .await;
    let mut cookies = Vec::new();
    for i in 0..12 {
        let at = if i % 2 == 0 { &one } else { &two };
        let (_browser, cookie) = signed_in(at).await;
        cookies.push(cookie);
    }
    for cookie in &cookies {
        assert_allowed_everywhere(&one, cookie, "a cluster session at replica one").await;
        assert_allowed_everywhere(&two, cookie, "a cluster session at replica two").await;
    }
    // session records are strings (the revocation feed is one other key)
    let mut per_node = Vec::new();
    for node in cluster.nodes() {
        let mut strings = 0;
        for key in node.keys().await {
            let key = String::from_utf8(key).unwrap();
            if node.cmd(&["TYPE", &key]).await.unwrap().text() == "string" {
                strings += 1;
            }
        }
        per_node.push(strings);
    }
    let total: usize = per_node.iter().sum();
    assert!(
        total >= cookies.len(),
        "session records per node: {per_node:?}"
    );
    let holding = per_node.iter().filter(|&&n| n > 0).count();
    // 12 random session ids all on one of three masters: odds 1 in 177,147
    assert!(
        holding >= 2,
        "sessions are not spread over the cluster: session records per node {per_node:?}"
    );
}

#[tokio::test]
async fn through_sentinel_a_sign_out_after_a_failover_is_refused_by_the_other_replica() {
    if !redis_available(
        "through_sentinel_a_sign_out_after_a_failover_is_refused_by_the_other_replica",
    ) {
        return;
    }
    let mut set = RedisSentinel::start().await;
    let world = World::start().await;
    let one = world
        .gatehouse(Store::Cookie, Backend::Sentinel(&set))
        .await;
    let two = world
        .gatehouse(Store::Cookie, Backend::Sentinel(&set))
        .await;
    set.kill_master();
    set.wait_for_promotion().await;
    // both replicas follow the new master by themselves
    one.wait_ready().await;
    two.wait_ready().await;
    assert_sign_out_crosses_replicas(&one, &two).await;
}

#[tokio::test]
async fn through_a_cluster_a_sign_out_on_one_replica_is_refused_by_the_other() {
    if !redis_available("through_a_cluster_a_sign_out_on_one_replica_is_refused_by_the_other") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let world = World::start().await;
    for store in [Store::Cookie, Store::Redis] {
        let one = world.gatehouse(store, Backend::Cluster(&cluster)).await;
        let two = world.gatehouse(store, Backend::Cluster(&cluster)).await;
        assert_sign_out_crosses_replicas(&one, &two).await;
    }
}
