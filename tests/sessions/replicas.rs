//! Two gatehouse replicas sharing one Redis (issue 8, "sign-out revokes"):
//! a sign-out on one, and the old cookie is refused by the other within 1 s,
//! in proxy mode, at `/oauth2/auth` and at `/oauth2/forward-auth`, with
//! each store type.

use std::time::{Duration, Instant};

use crate::support::proxy::TestProxy;
use crate::support::redis::{RedisServer, redis_available};
use crate::{
    Backend, Store, VIAS, World, assert_allowed_everywhere, assert_refused_everywhere, sign_out,
    signed_in, status,
};

/// The longest a revocation may take to reach another replica.
const LAG: Duration = Duration::from_secs(1);
/// How long the test looks before giving up.
const LOOK: Duration = Duration::from_secs(2);

async fn sign_out_on_one_is_refused_by_the_other(store: Store, test: &str) {
    if !redis_available(test) {
        return;
    }
    let redis = RedisServer::start().await;
    let world = World::start().await;
    let one = world.gatehouse(store, Backend::Standalone(&redis)).await;
    let two = world.gatehouse(store, Backend::Standalone(&redis)).await;
    assert_sign_out_crosses_replicas(&one, &two).await;
}

/// Signs in at `one`, signs out there, and asserts `two` refuses the old
/// cookie through every way in within [`LAG`], while another session of
/// the same user stays signed in at both.
pub(crate) async fn assert_sign_out_crosses_replicas(one: &TestProxy, two: &TestProxy) {
    let (browser, cookie) = signed_in(one).await;
    assert_allowed_everywhere(one, &cookie, "signed in, at the replica that signed in").await;
    assert_allowed_everywhere(two, &cookie, "signed in, at the other replica").await;
    // a second session of the same user stays signed in
    let (_other_browser, other_cookie) = signed_in(two).await;

    sign_out(&browser, one).await;
    let signed_out = Instant::now();
    assert_refused_everywhere(one, &cookie, "replayed at the replica that signed out").await;
    // the other replica: every way in refuses the old cookie within LAG
    let mut refused_at = Vec::new();
    for via in VIAS {
        loop {
            let s = status(two, via, &cookie).await;
            if !s.is_success() {
                assert_eq!(s, http::StatusCode::UNAUTHORIZED, "{via:?} after sign-out");
                refused_at.push((via, signed_out.elapsed()));
                break;
            }
            assert!(
                signed_out.elapsed() < LOOK,
                "{via:?}: the other replica still answers {s} {:?} after the sign-out",
                signed_out.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (via, took) in &refused_at {
        assert!(
            *took <= LAG,
            "{via:?}: the other replica refused the old cookie only after {took:?} \
             (at most {LAG:?}): {refused_at:?}"
        );
    }
    // ... and keeps refusing it, while the other session is untouched
    assert_refused_everywhere(two, &cookie, "replayed at the other replica").await;
    assert_allowed_everywhere(one, &other_cookie, "another session of the same user").await;
    assert_allowed_everywhere(two, &other_cookie, "another session of the same user").await;
}

#[tokio::test]
async fn with_the_cookie_store_a_sign_out_on_one_replica_is_refused_by_the_other_within_a_second() {
    sign_out_on_one_is_refused_by_the_other(
        Store::Cookie,
        "with_the_cookie_store_a_sign_out_on_one_replica_is_refused_by_the_other_within_a_second",
    )
    .await;
}

#[tokio::test]
async fn with_the_redis_store_a_sign_out_on_one_replica_is_refused_by_the_other_within_a_second() {
    sign_out_on_one_is_refused_by_the_other(
        Store::Redis,
        "with_the_redis_store_a_sign_out_on_one_replica_is_refused_by_the_other_within_a_second",
    )
    .await;
}
