//! Top-level dispatch, one request at a time.
//!
//! Phases, in order: refuse a request target that servers could read
//! differently ([`check_target`]), classify the request (reserved path or
//! gated), work out
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
use crate::auth::step_up::StepUp;
use crate::auth::{Decided, Decision, strip_own_cookies};
use crate::auth::{backchannel, bearer, forward_auth};
use crate::error::{Error, Mode, error_response};
use crate::http::body::ProxyBody;
use crate::http::forwarded::{IpText, client_ip, is_trusted, origin};
use crate::http::headers::is_websocket_upgrade;
use crate::http::response::{json, text};
use crate::proxy::ForwardContext;
use crate::routes::Target;
use crate::state::AppState;
use crate::telemetry::{AccessNote, RequestId, otel, with_request};
use opentelemetry::trace::SpanKind;

/// The request id header, from a trusted proxy, to the upstream and on
/// forward-auth answers.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The peer's address as text, formatted once for the connection.
    pub peer_text: IpText,
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
    let trusted = is_trusted(conn.peer.ip(), &state.config.trusted_proxies);
    // a trusted proxy's id ties our lines to its own; anyone else's is replaced
    let id = trusted
        .then(|| req.headers().get(X_REQUEST_ID))
        .flatten()
        .and_then(|v| RequestId::from_header(v.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    // tracing off: no span, no context, no header read
    let trace = if state.tracing.enabled() {
        state.tracing.request(&otel::RequestFacts {
            headers: req.headers(),
            trusted,
            method: req.method(),
            uri: req.uri(),
            peer: conn.peer.ip(),
            tls: conn.tls,
        })
    } else {
        None
    };
    // boxed once here: the three task-local scopes around it, and hyper,
    // then move a pointer, not the whole request future (a few KiB, which
    // was copied several times per request)
    let handled = crate::error::with_page_context(Box::pin(handle_as(
        state, req, conn, trusted, id, started,
    )));
    let handled = crate::http::pages::scope(&state.config.pages, handled);
    with_request(id, trace, handled).await
}

/// [`handle`] for a request whose id is `id`, with the id current (error
/// pages show it); ends with the request's one access record.
async fn handle_as(
    state: &AppState,
    req: Request<Incoming>,
    conn: ConnInfo,
    trusted: bool,
    id: RequestId,
    started: Instant,
) -> Response<ProxyBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut note = AccessNote::default();
    let mut resp = dispatch(state, req, conn, trusted, id, &mut note).await;
    crate::http::response::add_hsts(&mut resp, conn.tls);
    if forward_auth::is_endpoint(&path)
        && let Ok(v) = http::HeaderValue::from_str(id.as_str())
    {
        // for the front proxy to log or pass on with the request it allows
        resp.headers_mut().insert(X_REQUEST_ID, v);
    }
    let status = resp.status();
    if state.metrics.enabled() {
        // off, not even the clock is read
        state
            .metrics
            .request(note.route, &method, status, started.elapsed());
    }
    let (reason, rule) = note.refusal(status);
    let who = note.identity.as_ref();
    let route = note
        .route
        .filter(|_| !state.config.routes.is_default_only())
        .and_then(|i| state.config.routes.routes().get(i))
        .map(|r| r.name.as_str());
    let traced = if state.tracing.enabled() {
        otel::finish_request(&method, status, route);
        otel::current_ids()
    } else {
        None
    };
    crate::telemetry::access::log(|| crate::telemetry::access::AccessLine {
        request_id: id.as_str(),
        method: method.as_str(),
        path: &path,
        status: status.as_u16(),
        latency_micros: latency_micros(started),
        user: who.map_or("-", |i| i.subject.as_str()),
        email: who.and_then(|i| i.email.as_deref()).unwrap_or("-"),
        upstream: note.upstream,
        route,
        peer: conn.peer_text.as_str(),
        reason,
        rule,
        trace: traced,
    });
    resp
}

/// Whole microseconds: the log writes milliseconds with microsecond
/// precision (`0.077`, never `0.07685499999999999`).
fn latency_micros(started: Instant) -> u32 {
    u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX)
}

async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    conn: ConnInfo,
    trusted: bool,
    id: RequestId,
    note: &mut AccessNote,
) -> Response<ProxyBody> {
    if let Some(resp) = check_target(&req) {
        return resp;
    }
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
            let missing = state.provider.undiscovered(&state.config);
            return if state.lifecycle.draining() {
                // load balancers stop sending new requests (SIGTERM)
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else if !missing.is_empty() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    not_discovered(&state.config, &missing),
                )
            } else if !state.store_ready() {
                text(StatusCode::SERVICE_UNAVAILABLE, "session store unreachable")
            } else {
                text(StatusCode::OK, "OK")
            };
        }
        // the rare endpoints' futures are boxed: inline, the largest of them
        // (a token exchange, a logout token's check) sized this future, which
        // every proxied request builds and moves (7.2 KiB before, most of it
        // theirs)
        "/oauth2/backchannel-logout" => return Box::pin(backchannel::logout(state, req)).await,
        bearer::METADATA_PATH if state.bearer.enabled() => {
            return state.bearer.metadata(&info.origin);
        }
        p if p.starts_with("/oauth2/") || p == "/oauth2" => {
            if (p == "/oauth2/start" || endpoints::is_callback(p))
                && let Err(wait) = Box::pin(state.login_limiter.check(client_ip(
                    req.headers(),
                    conn.peer.ip(),
                    &state.config.trusted_proxies,
                )))
                .await
            {
                return rate_limited(wait, info.mode);
            }
            let (parts, _body) = req.into_parts(); // endpoints read no body
            if info.mode == Mode::Html && !forward_auth::is_endpoint(parts.uri.path()) {
                // a page rendered here says who the browser is signed in as
                let session = Box::pin(state.gate.session(&state.config, &parts.headers)).await;
                let who = session.ok().flatten();
                crate::error::set_signed_in_as(who.map(|s| endpoints::signed_in_as(&s.identity)));
            }
            return match (parts.method.clone(), parts.uri.path()) {
                (Method::GET, "/oauth2/start") => endpoints::start(state, &parts, &info),
                (Method::GET, endpoints::SIGN_IN_PATH) => endpoints::sign_in(state, &parts, &info),
                (Method::GET, p) if endpoints::is_callback(p) => {
                    Box::pin(endpoints::callback(state, &parts, &info)).await
                }
                (Method::GET | Method::POST, "/oauth2/sign_out") => {
                    Box::pin(endpoints::sign_out(state, &parts, &info)).await
                }
                (Method::GET, "/oauth2/userinfo") => {
                    Box::pin(endpoints::userinfo(state, &parts, &info)).await
                }
                // front proxies ask with the original method (nginx) or GET
                // boxed too, though hot in forward-auth mode: one allocation
                // here costs less than their 1.6-1.9 KiB in every proxied
                // request's future
                (_, "/oauth2/auth") => {
                    Box::pin(forward_auth::auth_request(state, &parts, &info, note)).await
                }
                (_, "/oauth2/forward-auth") => {
                    Box::pin(forward_auth::forward_auth(state, &parts, &info, note)).await
                }
                (_, p) if forward_auth::is_ext_authz(p) => {
                    Box::pin(forward_auth::ext_authz(state, &parts, &info, note)).await
                }
                (Method::GET | Method::HEAD, endpoints::SIGNED_OUT_PATH) => endpoints::signed_out(),
                (
                    _,
                    "/oauth2/start"
                    | "/oauth2/callback"
                    | "/oauth2/sign_out"
                    | "/oauth2/userinfo"
                    | endpoints::SIGNED_OUT_PATH
                    | endpoints::SIGN_IN_PATH,
                ) => error_response(&Error::MethodNotAllowed, info.mode),
                (_, p) if endpoints::is_callback(p) => {
                    error_response(&Error::MethodNotAllowed, info.mode)
                }
                // a browser gets a page, an API client JSON
                _ => error_response(&Error::NotFound, info.mode),
            };
        }
        _ => {}
    }
    let Ok(path) = crate::http::path::normalize(req.uri().path()) else {
        // check_target refused these already
        return error_response(&Error::BadRequest("bad request path"), Mode::Json);
    };
    let placed = state.config.routes.find(&Target {
        host: info.origin.host.as_deref(),
        method: Some(req.method()),
        path: &path,
    });
    drop(path);
    let (route, api) = match placed {
        Ok(p) => (p.route, p.api),
        Err(why) => return error_response(&Error::BadRequest(why.0), Mode::Json),
    };
    note.route = Some(route.index);
    if !state.upstreams.serves(route.index) {
        // forward-auth mode: nothing to sign in to here, say so plainly
        return error_response(&Error::NoUpstream, info.mode);
    }
    // a public route looks at no session: nothing about the user goes
    // upstream. One forward call serves both: each await of it would add the
    // whole forwarding future to this one.
    let by_token = !route.is_public() && state.bearer.token(req.headers(), route).is_some();
    let (allowed, set_cookies) = if route.is_public() {
        (Ok(None), Vec::new())
    } else {
        let Decided {
            decision,
            set_cookies,
        } = state.decide(req.headers(), route).await;
        match decision {
            Decision::Allow(identity) => (Ok(Some(identity)), set_cookies),
            other => (Err(other), set_cookies),
        }
    };
    let resp = match allowed {
        Ok(identity) => {
            note.upstream = true;
            let mut req = req;
            // a tunnel lives as long as its session (or token), not just as
            // its request
            let tunnel_end = identity
                .as_ref()
                .filter(|_| is_websocket_upgrade(req.headers()))
                .map(|identity| {
                    if by_token {
                        bearer::watch_until(identity.expires_at)
                    } else {
                        state
                            .gate
                            .watch_session(&state.config, req.headers(), identity.expires_at)
                    }
                });
            if by_token {
                // the client's token goes on only as a setting forwards it
                req.headers_mut().remove(http::header::AUTHORIZATION);
            }
            strip_own_cookies(req.headers_mut(), &state.config.cookie.name);
            let ctx = ForwardContext {
                identity: identity.as_deref(),
                route: route.index,
                peer: conn.peer_text,
                origin: &info.origin,
                tunnel_end,
                request_id: id.as_str(),
            };
            let upstream_started = state.metrics.enabled().then(Instant::now);
            let span = otel::Child::start(state.tracing.enabled(), "upstream", SpanKind::Client);
            // off: the client's traceparent passes on untouched, as before
            span.inject(req.headers_mut());
            let r = match state.upstreams.forward(req, &ctx).await {
                Ok(r) => {
                    span.set("http.response.status_code", i64::from(r.status().as_u16()));
                    r
                }
                Err(e) => {
                    span.fail("upstream failed");
                    error_response(&e, info.mode)
                }
            };
            span.end();
            if let Some(t) = upstream_started {
                state.metrics.upstream(route.index, t.elapsed());
            }
            note.identity = identity;
            r
        }
        Err(Decision::Deny(reason, identity)) => {
            note.denied = Some(reason);
            let r = endpoints::forbidden(reason, &identity, info.mode);
            note.identity = Some((*identity).into());
            r
        }
        Err(Decision::Challenge) => {
            let mut r = if api {
                error_response(&Error::Unauthenticated, Mode::Json)
            } else {
                let among = route
                    .providers
                    .unwrap_or_else(|| state.config.all_providers());
                challenge(state, &req, &info, among, None)
            };
            if state.bearer.enabled_on(route) {
                bearer::add_challenge(&mut r, &info.origin);
            }
            r
        }
        // a refused bearer token is never sent to sign in
        Err(Decision::InvalidToken) => {
            note.token_refused = true;
            bearer::invalid_token(&info.origin)
        }
        Err(Decision::StepUp(identity, at)) => {
            // a new login at the session's own provider, asking for the
            // route's strength; an API route never redirects
            let r = if api {
                error_response(&Error::StepUpRequired, Mode::Json)
            } else {
                let same = crate::config::ProviderSet::only(at);
                challenge(state, &req, &info, same, route.step_up.as_ref())
            };
            note.identity = Some((*identity).into());
            r
        }
        Err(Decision::Unavailable(cause)) => error_response(&cause.error(), info.mode),
        // moved into `Ok` above
        Err(Decision::Allow(_)) => error_response(&Error::Internal("unreachable"), Mode::Json),
    };
    endpoints::with_cookies(resp, set_cookies)
}

/// Refuses, before anything reads it, a request whose target could mean
/// one thing here and another to the application or a proxy between:
/// `CONNECT` and `TRACE` (405: gatehouse tunnels nothing and echoes no
/// request, cookies included), two `Host` headers or one that disagrees
/// with an absolute-form target (400), and a path that
/// [`crate::http::path::check`] refuses (400: dot segments, encoded `/`,
/// ...), so no such path is ever joined to an upstream's base path.
fn check_target<B>(req: &Request<B>) -> Option<Response<ProxyBody>> {
    let bad = |why: &'static str| {
        tracing::debug!(reason = why, "refused request target");
        Some(error_response(&Error::BadRequest(why), Mode::Json))
    };
    if req.method() == Method::CONNECT || req.method() == Method::TRACE {
        let mut r = json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "method_not_allowed"}),
        );
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        return Some(r);
    }
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return bad("more than one Host header");
    }
    // `user@host` parses as an authority, and would be matched (and passed
    // on) as something other than the host it names
    if host.is_some_and(|h| h.as_bytes().contains(&b'@'))
        || req
            .uri()
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
    {
        return bad("the Host has user information");
    }
    if let (Some(target), Some(host)) = (req.uri().authority(), host) {
        // a port left out is the target scheme's default
        let default = if req.uri().scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let same = host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|h| {
                h.host().eq_ignore_ascii_case(target.host())
                    && h.port_u16().unwrap_or(default) == target.port_u16().unwrap_or(default)
            });
        if !same || host.as_bytes().contains(&b'@') || target.as_str().contains('@') {
            return bad("the Host header disagrees with the request target");
        }
    }
    if let Err(e) = crate::http::path::check(req.uri().path()) {
        return bad(e.message());
    }
    None
}

/// `/ready`'s reason while providers are not discovered: with one
/// provider as before, with several naming each one missing.
fn not_discovered(config: &crate::config::Config, missing: &[&str]) -> String {
    if config.providers.len() == 1 {
        "provider not discovered yet".to_owned()
    } else {
        format!("providers not discovered yet: {}", missing.join(", "))
    }
}

/// 429 with `Retry-After` in whole seconds (at least 1); a page for a
/// browser.
fn rate_limited(wait: std::time::Duration, mode: Mode) -> Response<ProxyBody> {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = error_response(&Error::TooManyRequests, mode);
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(secs.max(1)),
    );
    resp
}

/// Not signed in, or not strongly enough for the route (`step_up`):
/// browsers go to the provider; everyone else gets a 401.
fn challenge(
    state: &AppState,
    req: &Request<Incoming>,
    info: &RequestInfo,
    among: crate::config::ProviderSet,
    step_up: Option<&StepUp>,
) -> Response<ProxyBody> {
    if !is_browser_navigation(req.method(), req.headers()) {
        let why = if step_up.is_some() {
            Error::StepUpRequired
        } else {
            Error::Unauthenticated
        };
        return error_response(&why, Mode::Json);
    }
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let return_to = endpoints::remembered(&state.config, &info.origin, target);
    endpoints::begin_login_among(state, among, &return_to, info, req.headers(), step_up)
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

#[cfg(test)]
mod target_tests {
    use super::*;

    fn status(method: &str, target: &str, hosts: &[&str]) -> Option<StatusCode> {
        let mut b = Request::builder().method(method).uri(target);
        for h in hosts {
            b = b.header(http::header::HOST, *h);
        }
        check_target(&b.body(()).unwrap()).map(|r| r.status())
    }

    #[test]
    fn request_targets_servers_could_read_differently_are_refused() {
        let bad = Some(StatusCode::BAD_REQUEST);
        let table: &[(&str, &str, &[&str], Option<StatusCode>)] = &[
            ("GET", "/a/b?x=1", &["app.example"], None),
            ("GET", "/a/b", &[], None),
            ("GET", "http://app.example/a", &["app.example"], None),
            ("GET", "http://app.example/a", &["APP.example:80"], None),
            ("GET", "https://app.example:443/a", &["app.example"], None),
            ("GET", "http://app.example/a", &[], None),
            ("GET", "/a", &["app.example", "app.example"], bad),
            ("GET", "/a", &["app.example", "evil.test"], bad),
            ("GET", "http://evil.test/a", &["app.example"], bad),
            ("GET", "http://app.example:8080/a", &["app.example"], bad),
            ("GET", "http://app.example/a", &["u@app.example"], bad),
            ("GET", "/a", &["u@app.example"], bad),
            ("GET", "/a", &["u:p@app.example:80"], bad),
            ("GET", "/a/../b", &["app.example"], bad),
            ("GET", "/a/%2E%2e/b", &["app.example"], bad),
            ("GET", "/a%2fb", &["app.example"], bad),
            ("OPTIONS", "*", &["app.example"], bad),
            (
                "TRACE",
                "/",
                &["app.example"],
                Some(StatusCode::METHOD_NOT_ALLOWED),
            ),
            (
                "CONNECT",
                "app.example:443",
                &["app.example:443"],
                Some(StatusCode::METHOD_NOT_ALLOWED),
            ),
        ];
        for (method, target, hosts, want) in table {
            assert_eq!(
                status(method, target, hosts),
                *want,
                "{method} {target} {hosts:?}"
            );
        }
        let mut connect = Request::builder()
            .method(Method::CONNECT)
            .uri("app.example:443")
            .body(())
            .unwrap();
        connect.headers_mut().clear();
        let r = check_target(&connect).unwrap();
        assert!(r.headers().contains_key(http::header::ALLOW));
    }
}
