//! Top-level dispatch, one request at a time.
//!
//! Phases, in order: classify the request (reserved path or gated), work out
//! the origin (`X-Forwarded-*` only from trusted peers), decide (gate), then
//! forward or render the decision. One access-log event per request.
//!
//! Must not: parse cookies or tokens itself (that is `auth/`) or rewrite
//! upstream requests (that is `proxy/`).

use std::net::SocketAddr;
use std::time::Instant;

use http::header::ACCEPT;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::endpoints::{self, RequestInfo};
use crate::auth::{Decided, Decision, strip_own_cookies};
use crate::auth::{backchannel, forward_auth};
use crate::error::{Error, Mode, error_response};
use crate::http::body::ProxyBody;
use crate::http::forwarded::{client_ip, is_trusted, origin};
use crate::http::response::{json, text};
use crate::proxy::ForwardContext;
use crate::state::AppState;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Handles one request; never fails (errors become responses).
pub async fn handle(
    state: &AppState,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut user: Option<String> = None;
    let mut upstream = false;
    let mut resp = dispatch(state, req, conn, &mut user, &mut upstream).await;
    crate::http::response::add_hsts(&mut resp, conn.tls);
    tracing::info!(
        target: "gatehouse::access",
        method = %method,
        path = %crate::telemetry::escape_log(&path),
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        user = %crate::telemetry::escape_log(user.as_deref().unwrap_or("-")),
        upstream,
        peer = %conn.peer.ip(),
    );
    resp
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    conn: ConnInfo,
    user: &mut Option<String>,
    upstream: &mut bool,
) -> Response<ProxyBody> {
    let trusted = is_trusted(conn.peer.ip(), &state.config.trusted_proxies);
    let info = RequestInfo {
        origin: origin(req.headers(), req.uri(), conn.tls, trusted),
        mode: if wants_html(req.headers()) {
            Mode::Html
        } else {
            Mode::Json
        },
    };
    match req.uri().path() {
        "/ping" => return text(StatusCode::OK, "OK"),
        "/ready" => {
            return if state.provider.get().is_none() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provider not discovered yet",
                )
            } else if !state.store_ready() {
                text(StatusCode::SERVICE_UNAVAILABLE, "session store unreachable")
            } else {
                text(StatusCode::OK, "OK")
            };
        }
        "/oauth2/backchannel-logout" => return backchannel::logout(state, req).await,
        p if p.starts_with("/oauth2/") || p == "/oauth2" => {
            if matches!(p, "/oauth2/start" | "/oauth2/callback")
                && let Err(wait) = state
                    .login_limiter
                    .check(client_ip(
                        req.headers(),
                        conn.peer.ip(),
                        &state.config.trusted_proxies,
                    ))
                    .await
            {
                return rate_limited(wait);
            }
            let (parts, _body) = req.into_parts(); // endpoints read no body
            return match (parts.method.clone(), parts.uri.path()) {
                (Method::GET, "/oauth2/start") => endpoints::start(state, &parts, &info),
                (Method::GET, "/oauth2/callback") => {
                    endpoints::callback(state, &parts, &info).await
                }
                (Method::GET | Method::POST, "/oauth2/sign_out") => {
                    endpoints::sign_out(state, &parts, &info).await
                }
                (Method::GET, "/oauth2/userinfo") => endpoints::userinfo(state, &parts).await,
                // front proxies ask with the original method (nginx) or GET
                (_, "/oauth2/auth") => forward_auth::auth_request(state, &parts, &info).await,
                (_, "/oauth2/forward-auth") => {
                    forward_auth::forward_auth(state, &parts, &info).await
                }
                (
                    _,
                    "/oauth2/start" | "/oauth2/callback" | "/oauth2/sign_out" | "/oauth2/userinfo",
                ) => json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &serde_json::json!({"error": "method_not_allowed"}),
                ),
                _ => json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({"error": "not_found"}),
                ),
            };
        }
        _ => {}
    }
    let Decided {
        decision,
        set_cookies,
    } = state.decide(req.headers()).await;
    let resp = match decision {
        Decision::Allow(identity) => {
            *user = Some(identity.subject.clone());
            *upstream = true;
            let mut req = req;
            strip_own_cookies(req.headers_mut(), &state.config.cookie.name);
            let ctx = ForwardContext {
                identity: &identity,
                peer: conn.peer.ip(),
                origin: &info.origin,
            };
            match state.upstreams.forward(req, &ctx).await {
                Ok(r) => r,
                Err(e) => error_response(&e, info.mode),
            }
        }
        Decision::Deny(reason) => endpoints::forbidden(reason, info.mode),
        Decision::Challenge => challenge(state, &req, &info),
        Decision::Unavailable(cause) => error_response(&cause.error(), info.mode),
    };
    endpoints::with_cookies(resp, set_cookies)
}

/// 429 with `Retry-After` in whole seconds (at least 1).
fn rate_limited(wait: std::time::Duration) -> Response<ProxyBody> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": "too_many_requests"}),
    );
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(secs.max(1)),
    );
    resp
}

/// Not signed in: browsers go to the provider; everyone else gets a 401.
fn challenge(state: &AppState, req: &Request<Incoming>, info: &RequestInfo) -> Response<ProxyBody> {
    if !is_browser_navigation(req.method(), req.headers()) {
        return error_response(&Error::Unauthenticated, Mode::Json);
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let return_to = endpoints::remembered(&state.config, &info.origin, target);
    endpoints::begin_login(state, &return_to, info, req.headers())
}

/// A GET or HEAD from a browser that wants a page, not an API call.
fn is_browser_navigation(method: &Method, headers: &HeaderMap) -> bool {
    let xhr = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    (method == Method::GET || method == Method::HEAD) && !xhr && wants_html(headers)
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}
