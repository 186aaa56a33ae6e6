//! Forward-auth: front proxies ask gatehouse about each request.
//!
//! - `/oauth2/auth`: nginx `auth_request`. 202 with `X-Auth-Request-*`
//!   identity headers when allowed, 401 when not signed in, 403 when refused.
//!   Never a redirect: nginx accepts only 2xx, 401 and 403 there.
//!   The allow answer's `X-Auth-Request-Cookie` is the request's `Cookie`
//!   header without gatehouse's own cookies, for nginx to pass on instead.
//! - `/oauth2/forward-auth`: Traefik ForwardAuth and Caddy `forward_auth`,
//!   which hand a non-2xx answer straight to the browser. 200 with identity
//!   headers when allowed; not signed in, a browser navigation gets a 302 to
//!   the provider with the original URL remembered, anything else 401;
//!   refused, 403. The allow answer carries the cleaned cookies as `Cookie`
//!   too, a name Traefik's `authResponseHeaders` and Caddy's `copy_headers`
//!   put in the request as is (empty when no cookie is left).
//! - `/oauth2/ext-authz/<original path>`: Envoy's HTTP `ext_authz` filter
//!   (`path_prefix: /oauth2/ext-authz`), answered as `/oauth2/forward-auth`
//!   with the original request read from the check itself.
//!
//! Invariants: no path here answers 2xx unless the gate said `Allow` and
//! every narrowing rule held. The original URL is rebuilt from forwarded
//! headers only for trusted peers; malformed ones get a 400.

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::auth::endpoints::{RequestInfo, begin_login_among, forbidden, served, with_cookies};
use crate::auth::identity::Identity;
use crate::auth::policy::Narrowing;
use crate::auth::return_to::ReturnTo;
use crate::auth::session::now_secs;
use crate::auth::{Decided, Decision, bearer};
use crate::config::ClaimHeader;
use crate::error::{Error, Mode, error_response};
use crate::http::body::{ProxyBody, empty};
use crate::http::forwarded::{Origin, OriginalRequest, original_request};
use crate::http::headers::{
    X_AUTH_REQUEST_ACCESS_TOKEN, X_AUTH_REQUEST_COOKIE, X_AUTH_REQUEST_EMAIL,
    X_AUTH_REQUEST_GROUPS, X_AUTH_REQUEST_PREFERRED_USERNAME, X_AUTH_REQUEST_USER,
    X_FORWARDED_ACCESS_TOKEN, X_FORWARDED_EMAIL, X_FORWARDED_GROUPS,
    X_FORWARDED_PREFERRED_USERNAME, X_FORWARDED_USER,
};
use crate::http::path::normalize;
use crate::routes::{Placed, Target};
use crate::state::AppState;
use crate::telemetry::AccessNote;

/// `/oauth2/auth` for nginx `auth_request`.
pub async fn auth_request(
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    note: &mut AccessNote,
) -> Response<ProxyBody> {
    let original = if state.config.routes.is_default_only() {
        None
    } else {
        match original_request(&parts.headers, info.origin.trusted) {
            Ok(o) => o,
            Err(bad) => {
                tracing::debug!(reason = bad.0, "auth request: bad original request");
                return error_response(&Error::BadRequest(bad.0), Mode::Json);
            }
        }
    };
    let placed = match place(state, original.as_ref(), note) {
        Ok(p) => p,
        Err(why) => return error_response(&Error::BadRequest(why), Mode::Json),
    };
    let route = placed.route;
    let narrowing = Narrowing::from_query(parts.uri.query());
    if route.is_public() && narrowing.is_empty() {
        return public(StatusCode::ACCEPTED, state, parts, info, false);
    }
    let Decided {
        decision,
        set_cookies,
    } = state.decide(&parts.headers, route).await;
    let resp = match decision {
        Decision::Allow(id) => {
            let answer = Answer {
                status: StatusCode::ACCEPTED,
                forwarded_too: false,
                mode: Mode::Json,
            };
            signed_in(state, parts, info, note, id, &narrowing, &answer)
        }
        Decision::Deny(reason, id) => refused(reason, *id, note, Mode::Json),
        // nginx turns a 401 into its error_page (the sign-in redirect)
        Decision::Challenge => bearer_challenge(state, info, route),
        // the same: its /oauth2/start?rd= adds the route's step-up
        Decision::StepUp(id, _) => {
            note.identity = Some((*id).into());
            error_response(&Error::StepUpRequired, Mode::Json)
        }
        Decision::InvalidToken => {
            note.token_refused = true;
            bearer::invalid_token(&info.origin)
        }
        Decision::Unavailable(cause) => error_response(&cause.error(), Mode::Json),
    };
    // a refreshed session goes back to the browser through the front proxy
    with_cookies(resp, set_cookies)
}

/// `/oauth2/forward-auth` for Traefik and Caddy.
pub async fn forward_auth(
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    note: &mut AccessNote,
) -> Response<ProxyBody> {
    let original = match original_request(&parts.headers, info.origin.trusted) {
        Ok(o) => o,
        Err(bad) => {
            tracing::debug!(reason = bad.0, "forward-auth: bad original request");
            return error_response(&Error::BadRequest(bad.0), Mode::Json);
        }
    };
    let narrowing = Narrowing::from_query(parts.uri.query());
    answer_original(state, parts, info, note, original, &narrowing).await
}

/// Where Envoy's `ext_authz` HTTP service sends its checks: its
/// `path_prefix`, followed by the original request's path and query.
pub const EXT_AUTHZ_PREFIX: &str = "/oauth2/ext-authz";

/// True for a path under [`EXT_AUTHZ_PREFIX`] (the prefix itself, or the
/// prefix and a `/...`; never `/oauth2/ext-authzX`).
pub fn is_ext_authz(path: &str) -> bool {
    path.strip_prefix(EXT_AUTHZ_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// True for the paths a front proxy asks about requests on: their answers
/// carry `X-Request-Id`, and are not pages for a person.
pub fn is_endpoint(path: &str) -> bool {
    matches!(path, "/oauth2/auth" | "/oauth2/forward-auth") || is_ext_authz(path)
}

/// `/oauth2/ext-authz/...` for Envoy's HTTP `ext_authz` filter, which asks
/// with the original method, the original path and query after its
/// `path_prefix`, the original `Host` and the headers it is allowed to pass
/// (`allowed_headers`). Answers as `/oauth2/forward-auth` does, since Envoy
/// too hands every non-2xx answer to the client: 200 with the identity
/// headers (its `allowed_upstream_headers` add them upstream), a sign-in
/// redirect for a browser, 401 for an API client, 403 when refused.
///
/// The original request is the one this request describes, believed (like
/// `X-Forwarded-*`) only from a trusted proxy; headers a client sent to
/// name another (`X-Original-URL`, `X-Forwarded-Uri`) are never read here.
pub async fn ext_authz(
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    note: &mut AccessNote,
) -> Response<ProxyBody> {
    let original = match envoy_original(parts, info.origin.trusted) {
        Ok(o) => o,
        Err(bad) => {
            tracing::debug!(reason = bad.0, "ext_authz: bad original request");
            return error_response(&Error::BadRequest(bad.0), Mode::Json);
        }
    };
    // the query is the original request's: nothing in it narrows the check
    let mut r = answer_original(state, parts, info, note, original, &Narrowing::default()).await;
    if r.status().is_success() {
        clear_for_envoy(r.headers_mut(), &state.config.claim_headers);
    }
    r
}

/// Envoy's `x-envoy-auth-headers-to-remove`: on an OK answer its HTTP
/// `ext_authz` client removes the headers it names from the request.
const ENVOY_AUTH_HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// Envoy's `allowed_upstream_headers` only replaces the headers an answer
/// carries: a client's own copy of one the answer leaves out would reach
/// the application. So every identity header the application could trust
/// is in the allow answer (empty when there is no value: the access token
/// without `pass_access_token`, a claim the user lacks), and those without
/// a value are named in `x-envoy-auth-headers-to-remove` for Envoy to
/// remove the client's copy (with `X-Forwarded-Access-Token`, which only
/// the proxy mode sets).
fn clear_for_envoy(h: &mut HeaderMap, claim_headers: &[ClaimHeader]) {
    let fixed = [
        X_FORWARDED_USER,
        X_FORWARDED_EMAIL,
        X_FORWARDED_PREFERRED_USERNAME,
        X_FORWARDED_GROUPS,
        X_AUTH_REQUEST_USER,
        X_AUTH_REQUEST_EMAIL,
        X_AUTH_REQUEST_PREFERRED_USERNAME,
        X_AUTH_REQUEST_GROUPS,
        X_AUTH_REQUEST_ACCESS_TOKEN,
    ];
    let mut remove = vec![X_FORWARDED_ACCESS_TOKEN.as_str().to_owned()];
    for name in fixed.iter().chain(claim_headers.iter().map(|c| &c.header)) {
        if h.get(name).is_none_or(HeaderValue::is_empty) {
            h.insert(name.clone(), HeaderValue::from_static(""));
            remove.push(name.as_str().to_owned());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&remove.join(",")) {
        h.insert(ENVOY_AUTH_HEADERS_TO_REMOVE, v);
    }
}

/// The original request of an Envoy check: its method, its path after the
/// prefix, its `Host` and `X-Forwarded-Proto` (Envoy sets the latter itself
/// at the edge), through the same checks as the other endpoints' headers.
fn envoy_original(
    parts: &Parts,
    trusted: bool,
) -> Result<Option<OriginalRequest>, crate::http::forwarded::BadOriginal> {
    use crate::http::forwarded::BadOriginal;
    use crate::http::headers::{X_FORWARDED_METHOD, X_FORWARDED_PROTO, X_FORWARDED_URI};
    if !trusted {
        return Ok(None);
    }
    let target = parts
        .uri
        .path_and_query()
        .map_or("", http::uri::PathAndQuery::as_str);
    let rest = target
        .strip_prefix(EXT_AUTHZ_PREFIX)
        .filter(|r| r.starts_with('/'))
        .ok_or(BadOriginal(
            "the original path must follow the ext_authz path_prefix /oauth2/ext-authz",
        ))?;
    let mut h = HeaderMap::new();
    let method = HeaderValue::from_str(parts.method.as_str())
        .map_err(|_e| BadOriginal("bad original method"))?;
    h.insert(X_FORWARDED_METHOD, method);
    let uri = HeaderValue::from_str(rest).map_err(|_e| BadOriginal("bad original path"))?;
    h.insert(X_FORWARDED_URI, uri);
    // HTTP/1: `Host`; HTTP/2 (an ext_authz cluster speaking h2): `:authority`
    let host = match parts.headers.get(http::header::HOST) {
        Some(h) => h.clone(),
        None => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .ok_or(BadOriginal("no Host: Envoy sends the original one"))?,
    };
    h.insert(http::header::HOST, host);
    for v in parts.headers.get_all(&X_FORWARDED_PROTO) {
        h.append(X_FORWARDED_PROTO, v.clone());
    }
    crate::http::forwarded::original_request(&h, true)
}

/// The answer of `/oauth2/forward-auth` and `/oauth2/ext-authz` about
/// `original` (`None`: not known, see [`route_of`]).
async fn answer_original(
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    note: &mut AccessNote,
    original: Option<OriginalRequest>,
    narrowing: &Narrowing,
) -> Response<ProxyBody> {
    let placed = match place(state, original.as_ref(), note) {
        Ok(p) => p,
        Err(why) => return error_response(&Error::BadRequest(why), Mode::Json),
    };
    let route = placed.route;
    if route.is_public() && narrowing.is_empty() {
        return public(StatusCode::OK, state, parts, info, true);
    }
    let Decided {
        decision,
        set_cookies,
    } = state.decide(&parts.headers, route).await;
    let resp = match decision {
        Decision::Allow(id) => {
            let answer = Answer {
                status: StatusCode::OK,
                forwarded_too: true,
                mode: info.mode,
            };
            signed_in(state, parts, info, note, id, narrowing, &answer)
        }
        Decision::Deny(reason, id) => refused(reason, *id, note, info.mode),
        Decision::Challenge | Decision::StepUp(..) => {
            // a step-up is a new login at the session's own provider, asking
            // for the route's acr_values and max_age
            let (step_up, at) = match &decision {
                Decision::StepUp(_, at) => (route.step_up.as_ref(), Some(*at)),
                _ => (None, None),
            };
            let method = original.as_ref().map_or(&parts.method, |o| &o.method);
            let navigation = (method == Method::GET || method == Method::HEAD)
                && info.mode == Mode::Html
                && !placed.api;
            if !navigation {
                // a value, not a return: the clearing of a dead session
                // still goes back with it
                let r = if step_up.is_some() {
                    error_response(&Error::StepUpRequired, Mode::Json)
                } else {
                    bearer_challenge(state, info, route)
                };
                return with_cookies(r, set_cookies);
            }
            // the original URL is the front proxy's report of what the
            // browser asked for: its host is a forwarded one, believed as a
            // place to return to only when gatehouse serves it
            let return_to = original.as_ref().map_or_else(ReturnTo::root, |o| {
                let origin = Origin {
                    proto: if o.url.scheme() == "https" {
                        "https"
                    } else {
                        "http"
                    },
                    host: None,
                    trusted: info.origin.trusted,
                    host_forwarded: true,
                };
                ReturnTo::parse(o.url.as_str(), &origin, &served(&state.config))
            });
            let among = at.map_or_else(
                || {
                    route
                        .providers
                        .unwrap_or_else(|| state.config.all_providers())
                },
                crate::config::ProviderSet::only,
            );
            begin_login_among(state, among, &return_to, info, &parts.headers, step_up)
        }
        // a refused bearer token is never sent to sign in
        Decision::InvalidToken => {
            note.token_refused = true;
            bearer::invalid_token(&info.origin)
        }
        Decision::Unavailable(cause) => error_response(&cause.error(), info.mode),
    };
    with_cookies(resp, set_cookies)
}

/// 401 for a request with neither session nor token; where bearer tokens
/// are accepted it says so (`WWW-Authenticate` with the metadata URL).
fn bearer_challenge(
    state: &AppState,
    info: &RequestInfo,
    route: &crate::routes::Route,
) -> Response<ProxyBody> {
    let mut r = error_response(&Error::Unauthenticated, Mode::Json);
    if state.bearer.enabled_on(route) {
        bearer::add_challenge(&mut r, &info.origin);
    }
    r
}

/// [`route_of`], noted for the access record; why not, for a 400.
fn place<'s>(
    state: &'s AppState,
    original: Option<&OriginalRequest>,
    note: &mut AccessNote,
) -> Result<Placed<'s>, &'static str> {
    let placed = route_of(state, original).inspect_err(|why| {
        tracing::debug!(reason = why, "forward-auth: request not placed on a route");
    })?;
    note.route = Some(placed.route.index);
    Ok(placed)
}

/// How an endpoint words its answers: nginx's `auth_request` reads 202 and
/// JSON; Traefik and Caddy pass 200 and a page to the browser.
struct Answer {
    status: StatusCode,
    /// Also `X-Forwarded-*` and `Cookie` on the allow answer.
    forwarded_too: bool,
    /// How a refusal is rendered.
    mode: Mode,
}

/// A signed-in user the gate allowed: the allow answer when every
/// narrowing rule of the query holds too, else 403.
fn signed_in(
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    note: &mut AccessNote,
    id: crate::auth::Allowed,
    narrowing: &Narrowing,
    answer: &Answer,
) -> Response<ProxyBody> {
    let r = match narrowing.check(&id) {
        Ok(()) => allowed(
            answer.status,
            &id,
            token_allowed(state, info),
            app_cookie(&parts.headers, &state.config.cookie.name, info),
            answer.forwarded_too,
            &state.config.claim_headers,
        ),
        Err(reason) => {
            note.denied = Some(reason);
            forbidden(reason, &id, answer.mode)
        }
    };
    note.identity = Some(id);
    r
}

/// A signed-in user refused by policy: 403, noted.
fn refused(
    reason: crate::auth::policy::DenyReason,
    id: Identity,
    note: &mut AccessNote,
    mode: Mode,
) -> Response<ProxyBody> {
    note.denied = Some(reason);
    let r = forbidden(reason, &id, mode);
    note.identity = Some(id.into());
    r
}

/// The route the front proxy's request is on. With no routes configured
/// that is the default route, whatever was sent (as before routes). With
/// routes, a request that cannot be placed is refused, never guessed: the
/// original URL unknown (the peer is not a trusted proxy, or sent neither
/// `X-Original-URL` nor `X-Forwarded-Uri`), its path refused, or its method
/// unknown where a route depends on it.
fn route_of<'s>(
    state: &'s AppState,
    original: Option<&OriginalRequest>,
) -> Result<Placed<'s>, &'static str> {
    let table = &state.config.routes;
    if table.is_default_only() {
        return Ok(Placed {
            route: table.fallback(),
            api: false,
        });
    }
    let Some(o) = original else {
        return Err(
            "routes are configured: the front proxy must be a trusted_proxy and send the original URL",
        );
    };
    // the path as the front proxy sent it, normalised as in proxy mode (the
    // URL parser's reading would differ: it escapes `{`, `"`, ...)
    let path = normalize(&o.path).map_err(crate::http::path::PathError::message)?;
    table
        .find(&Target {
            host: o.url.host_str(),
            method: o.method_given.then_some(&o.method),
            path: &path,
        })
        .map_err(|why| why.0)
}

/// The answer for a public route: allowed, with every identity header
/// present and empty, so a front proxy that copies them overwrites what the
/// client sent, and no session looked at.
fn public(
    status: StatusCode,
    state: &AppState,
    parts: &Parts,
    info: &RequestInfo,
    forwarded_too: bool,
) -> Response<ProxyBody> {
    allowed(
        status,
        &Identity::default(),
        false,
        app_cookie(&parts.headers, &state.config.cookie.name, info),
        forwarded_too,
        &state.config.claim_headers,
    )
}

/// The access token goes on an answer only with `pass_access_token` and
/// only to a trusted front proxy: these endpoints are reachable from the
/// page's own origin, and a script there must not read the token the
/// HttpOnly cookie keeps from it.
fn token_allowed(state: &AppState, info: &RequestInfo) -> bool {
    state.config.pass_access_token && info.origin.trusted
}

/// The request's cookies without gatehouse's own (session, chunks, login
/// state), as one `Cookie` value; `None` when nothing is left. Only for a
/// trusted front proxy, like the access token: echoed to a script on the
/// page's origin, the answer would reveal the application's HttpOnly cookies.
fn app_cookie(headers: &HeaderMap, base: &str, info: &RequestInfo) -> Option<HeaderValue> {
    if !info.origin.trusted {
        return None;
    }
    let mut only = HeaderMap::new();
    for v in headers.get_all(http::header::COOKIE) {
        only.append(http::header::COOKIE, v.clone());
    }
    crate::auth::strip_own_cookies(&mut only, base);
    only.remove(http::header::COOKIE)
}

/// The allow answer with the identity headers. Every header is present
/// (empty when unknown), every configured claim header included, so a
/// front proxy that copies them overwrites any value the client sent. `app_cookie` goes in `X-Auth-Request-Cookie`
/// (and `Cookie` with `forwarded_too`), empty when there is none.
fn allowed(
    status: StatusCode,
    id: &Identity,
    pass_access_token: bool,
    app_cookie: Option<HeaderValue>,
    forwarded_too: bool,
    claim_headers: &[ClaimHeader],
) -> Response<ProxyBody> {
    let values = id.header_values();
    if values.user.is_none() {
        // never an allow without the user id the front proxy will pass on
        return error_response(
            &Error::Internal("user id cannot be sent as a header"),
            Mode::Json,
        );
    }
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    let h = r.headers_mut();
    let named = [
        (X_AUTH_REQUEST_USER, X_FORWARDED_USER, &values.user),
        (X_AUTH_REQUEST_EMAIL, X_FORWARDED_EMAIL, &values.email),
        (
            X_AUTH_REQUEST_PREFERRED_USERNAME,
            X_FORWARDED_PREFERRED_USERNAME,
            &values.preferred_username,
        ),
        (X_AUTH_REQUEST_GROUPS, X_FORWARDED_GROUPS, &values.groups),
    ];
    for (auth_name, fwd_name, value) in named {
        let v = value.clone().unwrap_or(HeaderValue::from_static(""));
        if forwarded_too {
            h.insert(fwd_name, v.clone());
        }
        h.insert(auth_name, v);
    }
    if pass_access_token
        && let Some(v) = id
            .tokens
            .live_access_token(now_secs())
            .and_then(|t| HeaderValue::from_str(t.expose()).ok())
    {
        h.insert(X_AUTH_REQUEST_ACCESS_TOKEN, v);
    }
    for (name, value) in &values.extra {
        h.insert(name.clone(), value.clone());
    }
    for c in claim_headers {
        if !h.contains_key(&c.header) {
            h.insert(c.header.clone(), HeaderValue::from_static(""));
        }
    }
    // present even when empty: Caddy 2.6's copy_headers would otherwise
    // pass its own placeholder text on as the cookie
    let c = app_cookie.unwrap_or(HeaderValue::from_static(""));
    if forwarded_too {
        h.insert(http::header::COOKIE, c.clone());
    }
    h.insert(X_AUTH_REQUEST_COOKIE, c);
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}

#[cfg(test)]
mod tests;
