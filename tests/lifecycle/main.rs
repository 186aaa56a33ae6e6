//! A session's life against the mock provider: refresh (`cookie_refresh`),
//! expiry, and the provider going away during sign-in and refresh. One test
//! binary (folder form) for the three, to save links on small machines.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod provider_outage;
mod session_expiry;
mod session_refresh;
