//! A session's life against the mock provider: refresh (`cookie_refresh`),
//! expiry, the provider going away during sign-in and refresh, and the fault
//! suite (garbage and huge answers, JWKS and upstream down or slow). One test
//! binary (folder form) for them all, to save links on small machines.

// Test helpers outside #[test] fns assert by panicking, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod otlp;
mod provider_outage;
mod reload;
mod session_expiry;
mod session_refresh;
mod signals;
mod step_up;
mod websocket_close;
