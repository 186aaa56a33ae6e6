use super::*;
use crate::redis_conn::testing::{TestRedis, dead_conn};

#[tokio::test]
async fn a_value_is_new_once_per_namespace_and_parts_do_not_run_together() {
    let g = OnceGuard::new(None, "p:", "state", Duration::from_secs(60));
    assert_eq!(g.first_use(&["iss", "a"]).await, Ok(true));
    assert_eq!(g.first_use(&["iss", "a"]).await, Ok(false));
    // "iss" + "a" and "is" + "sa" are different values
    assert_eq!(g.first_use(&["is", "sa"]).await, Ok(true));
    let other = OnceGuard::new(None, "p:", "jti", Duration::from_secs(60));
    assert_eq!(other.first_use(&["iss", "a"]).await, Ok(true));
}

#[test]
fn debug_output_names_the_namespace() {
    let g = OnceGuard::new(None, "p:", "state", Duration::from_secs(60));
    assert_eq!(format!("{g:?}"), r#"OnceGuard { namespace: "state", .. }"#);
}

fn digest_hex(joined: &[u8]) -> String {
    crate::auth::session::hex(ring::digest::digest(&ring::digest::SHA256, joined).as_ref())
}

#[tokio::test]
async fn with_redis_a_value_used_on_one_replica_is_refused_on_another() {
    let redis = TestRedis::start();
    let ttl = Duration::from_secs(90);
    let a = OnceGuard::new(Some(redis.conn()), "gh:t:", "jti", ttl);
    let b = OnceGuard::new(Some(redis.conn()), "gh:t:", "jti", ttl);
    assert_eq!(a.first_use(&["iss", "a"]).await, Ok(true));
    assert_eq!(b.first_use(&["iss", "a"]).await, Ok(false), "replayed to b");
    assert_eq!(b.first_use(&["iss", "b"]).await, Ok(true));

    // the key is the prefix, the namespace and the hex SHA-256 of the parts
    // joined by a zero byte: never the value itself; it expires with the TTL
    let key = format!("gh:t:jti:{}", digest_hex(b"iss\0a"));
    let conn = redis.conn();
    let exists: bool = conn.query(redis::cmd("EXISTS").arg(&key)).await.unwrap();
    assert!(exists, "{key} is set");
    let ttl_left: i64 = conn.query(redis::cmd("TTL").arg(&key)).await.unwrap();
    assert!((89..=90).contains(&ttl_left), "TTL {ttl_left}");
    let keys: Vec<String> = conn.query(redis::cmd("KEYS").arg("*")).await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| !k.contains("iss")), "{keys:?}");
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_and_the_value_stays_unused() {
    let g = OnceGuard::new(Some(dead_conn()), "p:", "state", Duration::from_secs(60));
    assert!(g.first_use(&["iss", "s"]).await.is_err());
    // the local mark is dropped, so the retry asks Redis again (and fails
    // again) instead of answering "replay"
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(g.first_use(&["iss", "s"]).await.is_err());
}
