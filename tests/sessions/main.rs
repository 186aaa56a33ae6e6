//! Sessions that end when they should (issue 8), against real `redis-server`
//! processes on ephemeral loopback ports (`support::redis`).
//!
//! - [`harness`]: the Redis harness itself: a standalone server answers,
//!   a Sentinel failover promotes the replica, a Cluster serves every slot.
//!
//! A missing `redis-server`/`redis-cli` skips these tests with one loud line
//! saying how to install them; under `GATEHOUSE_REQUIRE_E2E=1` (CI) it fails
//! them.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod harness;
