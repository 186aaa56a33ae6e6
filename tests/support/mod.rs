//! Shared helpers for the integration tests: a mock OpenID Connect provider
//! ([`idp`]), a recording upstream ([`upstream`]), a browser-like client with
//! redirects off and a cookie jar ([`client`]), the in-process proxy with
//! the login flow ([`proxy`]), and real front proxies for the end-to-end
//! tests ([`e2e`]).
//!
//! `idp` and `upstream` are also compiled into `examples/demo.rs`, so they use
//! only the crate's regular dependencies and never panic on network input.

// Each test crate uses a different subset of these helpers, so unused items
// are expected; and `pub` here is the helpers' API, not the crate's. An
// `#[expect]` would fail in whichever test crate happens to use everything.
// clippy's `allow-*-in-tests` covers only `#[test]` fns and `#[cfg(test)]`
// items, not plain helper fns in a test crate, so the helpers' panics (which
// are their assertions) are allowed here, and so are the re-exports
// (`idp::KEY_IDS`, ...) some test crates leave unused. `idp` and `upstream`
// are still held to the full lints when `examples/demo.rs` compiles them.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod client;
pub mod e2e;
pub mod idp;
pub mod proxy;
pub mod redis;
pub mod upstream;

/// The session cookie's name under the test config ([`proxy::base_config`]:
/// `cookie_secure = false`, no `cookie_domain`). Chunks add `_0`, `_1`, ...;
/// login-state cookies `_csrf_<tag>`. Look cookies up through this, never
/// by a literal, so a change of the default name is one line here.
pub const SESSION_COOKIE: &str = "_gatehouse";

/// `[[routes]]` of each policy kind, for the route tests in proxy mode and
/// through forward-auth (which must decide alike).
pub const ROUTES_OF_EACH_KIND: &str = r#"
[[routes]]
path = "/public"
policy = "public"

[[routes]]
host = "status.gatehouse.test"
policy = "public"

[[routes]]
path = "/hooks"
methods = ["POST"]
policy = "public"

[[routes]]
path = "/api"
api = true

[[routes]]
path = "/groups"
allowed_groups = ["admins"]

[[routes]]
path = "/roles"
allowed_roles = ["auditor"]

[[routes]]
path = "/emails"
allowed_emails = ["BOB@example.com"]

[[routes]]
path = "/domains"
allowed_email_domains = ["other.example"]
"#;
