//! The Redis harness answers as real Redis does, so the session tests can
//! trust it: talked to directly (raw RESP and `redis-cli`), without gatehouse.

use std::time::Duration;

use crate::support::redis::{
    RedisCluster, RedisSentinel, RedisServer, Reply, Resp, info_field, redis_available,
};

#[tokio::test]
async fn a_standalone_server_answers_ping_and_keeps_nothing_on_disk() {
    if !redis_available("a_standalone_server_answers_ping_and_keeps_nothing_on_disk") {
        return;
    }
    let redis = RedisServer::start().await;
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(
        redis.cmd(&["PING"]).await.unwrap(),
        Reply::Simple("PONG".into())
    );
    assert_eq!(redis.cli(&["PING"]).await.trim(), "PONG");
    let config = redis.cmd(&["CONFIG", "GET", "save"]).await.unwrap().items();
    assert_eq!(config[1].text(), "", "no RDB snapshots");
    let config = redis
        .cmd(&["CONFIG", "GET", "appendonly"])
        .await
        .unwrap()
        .items();
    assert_eq!(config[1].text(), "no", "no AOF");
    let config = redis.cmd(&["CONFIG", "GET", "bind"]).await.unwrap().items();
    assert_eq!(config[1].text(), "127.0.0.1", "loopback only");
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_restarts_empty_on_the_same_port() {
    if !redis_available("a_stopped_server_refuses_connections_and_restarts_empty_on_the_same_port")
    {
        return;
    }
    let mut redis = RedisServer::start().await;
    let port = redis.port();
    redis.cmd(&["SET", "k", "v"]).await.unwrap();
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        Resp::connect(port, None).await.is_err(),
        "a stopped server must refuse connections"
    );
    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cmd(&["GET", "k"]).await.unwrap(), Reply::Bulk(None));

    redis.cmd(&["SET", "k", "v2"]).await.unwrap();
    redis.restart_keeping_data().await;
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cmd(&["GET", "k"]).await.unwrap().text(), "v2");
}

#[tokio::test]
async fn dropping_a_server_kills_it_and_removes_its_directory() {
    if !redis_available("dropping_a_server_kills_it_and_removes_its_directory") {
        return;
    }
    let redis = RedisServer::start().await;
    let port = redis.port();
    let dir = redis.dir().to_owned();
    assert!(dir.is_dir());
    drop(redis);
    assert!(Resp::connect(port, None).await.is_err(), "still listening");
    assert!(!dir.exists(), "temp dir left behind: {}", dir.display());
}

#[tokio::test]
async fn a_password_server_refuses_commands_without_auth() {
    if !redis_available("a_password_server_refuses_commands_without_auth") {
        return;
    }
    let redis = RedisServer::start_with_password("hunter2-redis").await;
    let mut anonymous = Resp::connect(redis.port(), None).await.unwrap();
    let reply = anonymous.cmd(&["GET", "k"]).await.unwrap();
    assert!(
        matches!(&reply, Reply::Error(e) if e.starts_with("NOAUTH")),
        "{reply:?}"
    );
    assert!(Resp::connect(redis.port(), Some("wrong")).await.is_err());
    assert_eq!(
        redis.cmd(&["PING"]).await.unwrap(),
        Reply::Simple("PONG".into())
    );
    assert_eq!(redis.cli(&["PING"]).await.trim(), "PONG");
}

#[tokio::test]
async fn a_sentinel_failover_promotes_the_replica_with_the_data() {
    if !redis_available("a_sentinel_failover_promotes_the_replica_with_the_data") {
        return;
    }
    let mut set = RedisSentinel::start().await;
    assert_eq!(
        set.current_master_port().await.unwrap(),
        set.master().port()
    );
    set.master().cmd(&["SET", "k", "before"]).await.unwrap();
    // WAIT 1 replica: the write reached the replica before the crash
    let acked = set.master().cmd(&["WAIT", "1", "2000"]).await.unwrap();
    assert_eq!(acked, Reply::Int(1));
    let readonly = set.replica().cmd(&["SET", "k", "x"]).await.unwrap();
    assert!(
        readonly.is_error(),
        "a replica refuses writes: {readonly:?}"
    );

    set.kill_master();
    let took = set.wait_for_promotion().await;
    assert!(
        took < Duration::from_secs(15),
        "failover took {took:?}:\n{}",
        set.logs()
    );
    assert_eq!(
        set.current_master_port().await.unwrap(),
        set.replica().port()
    );
    assert_eq!(
        set.replica().cmd(&["GET", "k"]).await.unwrap().text(),
        "before"
    );
    let written = set.replica().cmd(&["SET", "k", "after"]).await.unwrap();
    assert_eq!(
        written,
        Reply::Simple("OK".into()),
        "the new master takes writes"
    );
}

#[tokio::test]
async fn a_cluster_serves_every_slot_and_spreads_keys_over_its_three_masters() {
    if !redis_available("a_cluster_serves_every_slot_and_spreads_keys_over_its_three_masters") {
        return;
    }
    let cluster = RedisCluster::start().await;
    assert_eq!(cluster.urls().len(), 3);
    for node in cluster.nodes() {
        let info = node.cmd(&["CLUSTER", "INFO"]).await.unwrap().text();
        assert_eq!(info_field(&info, "cluster_state").as_deref(), Some("ok"));
        assert_eq!(
            info_field(&info, "cluster_slots_assigned").as_deref(),
            Some("16384")
        );
        assert_eq!(info_field(&info, "cluster_size").as_deref(), Some("3"));
    }
    // keys land on the node that serves their slot (MOVED followed) ...
    for i in 0..60 {
        let key = format!("key:{i}");
        let reply = cluster.cmd(&["SET", &key, "v"]).await.unwrap();
        assert_eq!(reply, Reply::Simple("OK".into()), "SET {key}");
    }
    // ... which is every one of them, and redis-cli -c reads them back
    for node in cluster.nodes() {
        let n = node.cmd(&["DBSIZE"]).await.unwrap().int();
        assert!(n > 0, "node {} holds no key", node.port());
    }
    assert_eq!(cluster.keys().await.len(), 60);
    let got = cluster.nodes()[0].cli(&["-c", "GET", "key:59"]).await;
    assert_eq!(got.trim(), "v");
}
