//! Forwarding to the upstream.
//!
//! Owns: choosing the upstream by longest path prefix, rewriting the request
//! (URI, `Host`, hop-by-hop headers, `X-Forwarded-*`, identity headers),
//! streaming both bodies untouched, WebSocket upgrades, and mapping upstream
//! failures to 502/504.
//! Must not: see sessions, cookies or the provider. It learns who the user
//! is from an [`Identity`](crate::auth::identity::Identity) and nothing else.
//!
//! Invariants: bodies are never collected; every identity header the client
//! sent is removed before ours are added.

mod forward;
mod pool;
pub mod websocket;

pub use forward::{ForwardContext, IdentityHeaderSettings, OwnCookie, Upstreams};
