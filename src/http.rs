//! Protocol helpers with no knowledge of users, sessions or providers.
//!
//! Owns: body types, header name constants and hop-by-hop rules,
//! `X-Forwarded-*` handling for trusted peers, request-path checks and
//! normalisation, small response builders, the page templates, and
//! the outbound HTTPS client builder shared by the proxy and the IdP client.
//! Must not: keep state or know what a cookie means.

pub mod body;
pub mod client;
pub mod forwarded;
pub mod headers;
pub mod pages;
pub mod path;
pub mod response;
