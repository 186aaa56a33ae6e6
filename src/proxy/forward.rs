//! The request rewrite and the upstream call.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, HOST, SET_COOKIE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::auth::identity::Identity;
use crate::config::{Config, Upstream};
use crate::error::Error;
use crate::http::body::{NotifyOnEnd, ProxyBody, stream};
use crate::http::forwarded::{IpText, Origin, forwarded_for_text};
use crate::http::headers::{
    X_FORWARDED_ACCESS_TOKEN, X_FORWARDED_EMAIL, X_FORWARDED_GROUPS, X_FORWARDED_HOST,
    X_FORWARDED_PREFERRED_USERNAME, X_FORWARDED_PROTO, X_FORWARDED_USER, is_websocket_upgrade,
    strip_client_headers, strip_hop_by_hop,
};
use crate::limits::IdleTimeoutBody;
use crate::proxy::pool::{NoAnswerInTime, Pool};

/// What goes upstream as a request's body.
type UpstreamBody = NotifyOnEnd<IdleTimeoutBody<Incoming>>;

/// How long connecting to an upstream (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pools being made for the upstreams, one per `scheme://authority`:
/// routes to the same upstream share its connections.
struct Pools {
    connector: HttpsConnector<HttpConnector>,
    by_target: std::collections::HashMap<Uri, Arc<Pool<UpstreamBody>>>,
}

impl Pools {
    fn get(&mut self, target: Uri) -> Arc<Pool<UpstreamBody>> {
        let connector = &self.connector;
        Arc::clone(
            self.by_target
                .entry(target.clone())
                .or_insert_with(|| Pool::new(connector.clone(), target, CONNECT_TIMEOUT)),
        )
    }
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Headers frameworks read as the request's real method.
const METHOD_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Which identity headers go upstream besides the always-sent ones.
#[derive(Debug, Clone, Copy)]
pub struct IdentityHeaderSettings {
    /// `X-Forwarded-Access-Token`.
    pub pass_access_token: bool,
    /// `Authorization: Bearer <id token>`.
    pub pass_authorization_header: bool,
}

/// Per-request facts the rewrite needs.
#[derive(Debug)]
pub struct ForwardContext<'a> {
    /// Who the user is; `None` on a public route, where no identity
    /// headers are sent (clients' are still stripped).
    pub identity: Option<&'a Identity>,
    /// The index of the route the request is on (see `crate::routes`): a
    /// route with an upstream of its own goes there.
    pub route: usize,
    /// The TCP peer's address.
    pub peer: IpText,
    /// What the client asked for (scheme, host).
    pub origin: &'a Origin,
    /// For a WebSocket upgrade: turns `true` (or loses its sender) when the
    /// tunnel must close. The caller decides why; see [`splice`].
    pub tunnel_end: Option<tokio::sync::watch::Receiver<bool>>,
    /// The request's id, sent as `X-Request-Id` (replacing the client's).
    pub request_id: &'a str,
}

/// Tells whether a cookie name is one of gatehouse's own (the session
/// cookie, its chunks, login state). Given by the caller so that this module
/// needs no knowledge of sessions.
pub type OwnCookie = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A prepared upstream target: the parsed pieces of one `upstream` URL, and
/// its connections.
#[derive(Debug)]
struct Route {
    prefix: String,
    /// The upstream's `host[:port]` as the `Host` header's value, made once.
    host: HeaderValue,
    base_path: String,
    label: String,
    pool: Arc<Pool<UpstreamBody>>,
}

/// The upstreams and their connections. Built once.
pub struct Upstreams {
    routes: Vec<Route>,
    /// By route index: the route's own upstream, if it has one.
    by_route: Vec<Option<Route>>,
    timeout: Duration,
    /// `request_body_idle_timeout`.
    body_idle_timeout: Duration,
    pass_host_header: bool,
    identity: IdentityHeaderSettings,
    /// Headers stripped from clients (and their trailers) besides the
    /// identity family: mapped claim headers, and `Authorization` when we
    /// set it.
    strip_extra: Arc<[String]>,
    /// Every configured claim header: always sent, empty when the claim is
    /// absent.
    claim_headers: Vec<http::HeaderName>,
    /// gatehouse's own cookies, which an upstream may not set or clear.
    own_cookie: OwnCookie,
    /// The open WebSocket tunnels, closed together at shutdown.
    tunnels: Arc<crate::proxy::websocket::Tunnels>,
}

impl Upstreams {
    /// Prepares routes and the client from the config. `own_cookie` names
    /// the cookies whose `Set-Cookie` from an upstream is dropped.
    pub fn new(config: &Config, own_cookie: OwnCookie) -> Result<Self, rustls::Error> {
        let mut pools = Pools {
            connector: crate::http::client::upstream_connector(CONNECT_TIMEOUT)?,
            by_target: std::collections::HashMap::new(),
        };
        let routes = config
            .upstreams
            .iter()
            .filter_map(|u| route(u, &mut pools))
            .collect();
        let by_route = config
            .routes
            .routes()
            .iter()
            .map(|r| {
                r.upstream.as_ref().and_then(|url| {
                    let u = Upstream {
                        prefix: "/".to_owned(),
                        url: url.clone(),
                    };
                    route(&u, &mut pools)
                })
            })
            .collect();
        Ok(Self {
            routes,
            by_route,
            timeout: config.upstream_timeout,
            body_idle_timeout: config.limits.request_body_idle_timeout,
            pass_host_header: config.pass_host_header,
            identity: IdentityHeaderSettings {
                pass_access_token: config.pass_access_token,
                pass_authorization_header: config.pass_authorization_header,
            },
            strip_extra: config
                .claim_headers
                .iter()
                .map(|c| c.header.as_str().to_owned())
                .chain(
                    config
                        .pass_authorization_header
                        .then(|| "authorization".to_owned()),
                )
                // with routes that name methods, the method they matched on
                // is the one the application acts on
                .chain(
                    config
                        .routes
                        .names_methods()
                        .then_some(METHOD_OVERRIDE_HEADERS)
                        .into_iter()
                        .flatten()
                        .map(|h| (*h).to_owned()),
                )
                .collect(),
            claim_headers: config
                .claim_headers
                .iter()
                .map(|c| c.header.clone())
                .collect(),
            own_cookie,
            tunnels: Arc::default(),
        })
    }

    /// Shares `tunnels` (kept across reloads) with the tunnels this opens.
    #[must_use]
    pub fn with_tunnels(mut self, tunnels: Arc<crate::proxy::websocket::Tunnels>) -> Self {
        self.tunnels = tunnels;
        self
    }

    /// Whether a request on route `route` has an upstream to go to: the
    /// route's own, or a global one. `false` in forward-auth mode (no
    /// `upstream`) for a route without one.
    pub fn serves(&self, route: usize) -> bool {
        !self.routes.is_empty() || self.by_route.get(route).is_some_and(Option::is_some)
    }

    /// Forwards `req` as `ctx.identity`, streaming both bodies.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        ctx: &ForwardContext<'_>,
    ) -> Result<Response<ProxyBody>, Error> {
        let route = match self.by_route.get(ctx.route).and_then(Option::as_ref) {
            Some(own) => own,
            None if self.routes.is_empty() => return Err(Error::NoUpstream),
            None => find_route(&self.routes, req.uri().path())?,
        };
        let websocket = req.version() == Version::HTTP_11 && is_websocket_upgrade(req.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let target = upstream_target(route, req.uri())?;
        *req.uri_mut() = target;
        *req.version_mut() = Version::HTTP_11;
        self.rewrite_headers(
            req.headers_mut(),
            ctx,
            route,
            ctx.origin.host.as_deref(),
            websocket,
        );

        // a body that stops arriving fails, so the upstream sees it aborted
        let idle = self.body_idle_timeout;
        let (req, body_sent) = if hyper::body::Body::is_end_stream(req.body()) {
            (
                req.map(|b| NotifyOnEnd::ended(IdleTimeoutBody::new(b, idle))),
                None,
            )
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let strip = Arc::clone(&self.strip_extra);
            let req = req.map(|b| NotifyOnEnd::new(IdleTimeoutBody::new(b, idle), tx, strip));
            (req, Some(rx))
        };
        // the timeout counts from the end of the request body: an upload
        // still streaming is not the upstream being slow. A body that has
        // ended ends when a connection takes it, so the pool starts the
        // clock then (not while connecting, which has its own bound)
        let sent = match body_sent {
            None => route.pool.send(req, Some(self.timeout)).await,
            Some(body_sent) => tokio::select! {
                r = route.pool.send(req, None) => r,
                () = async {
                    let _ = body_sent.await;
                    tokio::time::sleep(self.timeout).await;
                } => Err(NoAnswerInTime.into()),
            },
        };
        let mut resp = match sent {
            Err(e) if e.is::<NoAnswerInTime>() => {
                return Err(Error::UpstreamTimeout(route.label.clone()));
            }
            Err(e) => {
                return Err(Error::UpstreamUnavailable {
                    upstream: route.label.clone(),
                    reason: crate::error::error_chain(&*e),
                });
            }
            Ok(r) => r,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(crate::proxy::websocket::splice(
                client_upgrade,
                upstream_upgrade,
                ctx.tunnel_end.clone(),
                Arc::clone(&self.tunnels),
            ));
            strip_hop_by_hop(resp.headers_mut(), true);
            drop_own_set_cookies(resp.headers_mut(), &*self.own_cookie);
            return Ok(resp.map(|_b| crate::http::body::empty()));
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        drop_own_set_cookies(resp.headers_mut(), &*self.own_cookie);
        Ok(resp.map(stream))
    }

    fn rewrite_headers(
        &self,
        h: &mut HeaderMap,
        ctx: &ForwardContext<'_>,
        route: &Route,
        original_host: Option<&str>,
        websocket: bool,
    ) {
        strip_hop_by_hop(h, websocket);
        let trusted = ctx.origin.trusted;
        // a client's own identity headers never reach the upstream, nor
        // (unless it is a trusted proxy) its forwarding headers, which
        // frameworks read as the client's address, port or path prefix
        strip_client_headers(h, &self.strip_extra, trusted);
        // none on a public route: what was stripped stays away
        if let Some(id) = ctx.identity {
            set_identity_headers(h, id, self.identity, &self.claim_headers);
        }
        match HeaderValue::from_str(ctx.request_id) {
            Ok(v) => h.insert(X_REQUEST_ID, v),
            Err(_) => h.remove(X_REQUEST_ID),
        };
        if let Some(v) = forwarded_for_text(h, &ctx.peer, trusted) {
            h.insert(crate::http::headers::X_FORWARDED_FOR, v);
        }
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(ctx.origin.proto),
        );
        match original_host.and_then(|o| HeaderValue::from_str(o).ok()) {
            Some(v) => {
                h.insert(X_FORWARDED_HOST, v.clone());
                if self.pass_host_header {
                    h.insert(HOST, v);
                } else {
                    h.insert(HOST, route.host.clone());
                }
            }
            None => {
                h.remove(X_FORWARDED_HOST);
                h.insert(HOST, route.host.clone());
            }
        }
    }
}

/// Removes every `Set-Cookie` that names one of gatehouse's own cookies: an
/// upstream may not set, replace or clear the session or a login.
fn drop_own_set_cookies(h: &mut HeaderMap, own: &(dyn Fn(&str) -> bool + Send + Sync)) {
    let is_own = |v: &HeaderValue| {
        set_cookie_names(v)
            .iter()
            .any(|n| std::str::from_utf8(n).is_ok_and(own))
    };
    if !h.get_all(SET_COOKIE).iter().any(is_own) {
        return;
    }
    let kept: Vec<HeaderValue> = h
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let drop = is_own(v);
            if drop {
                let [name, nameless] = set_cookie_names(v);
                tracing::debug!(
                    cookie = ?String::from_utf8_lossy(name),
                    nameless = ?String::from_utf8_lossy(nameless),
                    "dropped the upstream's Set-Cookie for gatehouse's own cookie"
                );
            }
            !drop
        })
        .cloned()
        .collect();
    h.remove(SET_COOKIE);
    for v in kept {
        h.append(SET_COOKIE, v);
    }
}

/// The cookie names a `Set-Cookie` value may set, as browsers differ:
/// - the pair's name, up to the first `=` of the first `;`-part, or the
///   whole part when it has no `=` (Firefox stores `name` as a valueless
///   cookie, which replaces one of that name);
/// - for a nameless cookie (`=name=value`, leading `=` and spaces ignored),
///   the name its value carries: browsers send it back as `name=value`, so
///   it would be read as that cookie.
fn set_cookie_names(v: &HeaderValue) -> [&[u8]; 2] {
    let pair = v
        .as_bytes()
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default();
    fn until_eq(s: &[u8]) -> &[u8] {
        s.iter()
            .position(|b| *b == b'=')
            .map_or(s, |i| &s[..i])
            .trim_ascii()
    }
    let mut rest = pair.trim_ascii_start();
    let mut nameless: &[u8] = &[];
    while let Some(r) = rest.strip_prefix(b"=") {
        rest = r.trim_ascii_start();
        nameless = until_eq(rest);
    }
    [until_eq(pair), nameless]
}

/// Adds the identity headers. Values that cannot be header values (control
/// characters from a hostile provider) are left out rather than mangled.
/// Every header of `claim_headers` is sent, empty when the claim is absent
/// or unusable, so nothing in front of the application can add its own.
fn set_identity_headers(
    h: &mut HeaderMap,
    id: &Identity,
    settings: IdentityHeaderSettings,
    claim_headers: &[http::HeaderName],
) {
    let values = id.header_values();
    let mut put = |name: http::HeaderName, value: Option<HeaderValue>| {
        if let Some(v) = value {
            h.insert(name, v);
        }
    };
    put(X_FORWARDED_USER, values.user.clone());
    put(X_FORWARDED_EMAIL, values.email.clone());
    put(
        X_FORWARDED_PREFERRED_USERNAME,
        values.preferred_username.clone(),
    );
    put(X_FORWARDED_GROUPS, values.groups.clone());
    // an expired access token is never forwarded
    if settings.pass_access_token
        && let Some(t) = id
            .tokens
            .live_access_token(crate::auth::session::now_secs())
    {
        put(
            X_FORWARDED_ACCESS_TOKEN,
            HeaderValue::from_bytes(t.expose().as_bytes()).ok(),
        );
    }
    for (name, value) in &values.extra {
        put(name.clone(), Some(value.clone()));
    }
    if settings.pass_authorization_header
        && let Some(t) = &id.tokens.id_token
    {
        put(
            AUTHORIZATION,
            HeaderValue::from_bytes(format!("Bearer {}", t.expose()).as_bytes()).ok(),
        );
    }
    for name in claim_headers {
        if !h.contains_key(name) {
            h.insert(name.clone(), HeaderValue::from_static(""));
        }
    }
}

fn route(u: &Upstream, pools: &mut Pools) -> Option<Route> {
    let scheme = if u.url.scheme() == "https" {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let host = u.url.host_str()?;
    let authority = match u.url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let authority: Authority = authority.parse().ok()?;
    let target = Uri::builder()
        .scheme(scheme)
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .ok()?;
    Some(Route {
        prefix: u.prefix.clone(),
        host: HeaderValue::from_str(authority.as_str()).ok()?,
        base_path: u.url.path().trim_end_matches('/').to_owned(),
        label: u.url.to_string(),
        pool: pools.get(target),
    })
}

/// The upstream for `path`, chosen on its normal form: `//api/x` and
/// `/%61pi/x` go where `/api/x` goes, as the application will read them.
/// The raw path, already checked, is what is forwarded.
fn find_route<'a>(routes: &'a [Route], path: &str) -> Result<&'a Route, Error> {
    let normal = crate::http::path::normalize(path).map_err(|e| Error::BadRequest(e.message()))?;
    routes
        .iter()
        .find(|r| prefix_matches(&r.prefix, &normal))
        .ok_or(Error::BadRequest("no upstream for this path"))
}

/// `/api` matches `/api` and `/api/x` but not `/apix`; `/api/` matches what
/// starts with it; `/` matches everything.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The request target sent upstream, in origin-form (`/path?query`): the
/// request's under the upstream's base path.
fn upstream_target(route: &Route, original: &Uri) -> Result<Uri, Error> {
    let pq = match original.path_and_query() {
        // shared with the request's target, not copied and parsed again
        Some(pq) if route.base_path.is_empty() => pq.clone(),
        pq => {
            // an empty path (`http://h?x=1`) is `/` under the base too
            let path = pq.map_or("/", PathAndQuery::path);
            let query = pq.and_then(PathAndQuery::query);
            let joined = match query {
                Some(q) => format!("{}{path}?{q}", route.base_path),
                None => format!("{}{path}", route.base_path),
            };
            PathAndQuery::try_from(joined)
                .map_err(|_e| Error::BadRequest("request target cannot be forwarded"))?
        }
    };
    Ok(Uri::from(pq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/v1"));
        assert!(prefix_matches("/api/", "/api"));
    }

    fn pools() -> Pools {
        Pools {
            connector: crate::http::client::upstream_connector(CONNECT_TIMEOUT).unwrap(),
            by_target: std::collections::HashMap::new(),
        }
    }

    fn at(prefix: &str, url: &str) -> Route {
        let u = Upstream {
            prefix: prefix.into(),
            url: url.parse().unwrap(),
        };
        route(&u, &mut pools()).unwrap()
    }

    #[test]
    fn routes_to_one_upstream_share_its_connections() {
        let mut pools = pools();
        let mut at = |prefix: &str, url: &str| {
            let u = Upstream {
                prefix: prefix.into(),
                url: url.parse().unwrap(),
            };
            route(&u, &mut pools).unwrap()
        };
        let (a, b) = (
            at("/a", "http://10.0.0.1/x/"),
            at("/b", "http://10.0.0.1/y/"),
        );
        let (c, d) = (
            at("/c", "http://10.0.0.1:81/"),
            at("/d", "https://10.0.0.1/"),
        );
        assert!(Arc::ptr_eq(&a.pool, &b.pool));
        assert!(!Arc::ptr_eq(&a.pool, &c.pool));
        assert!(!Arc::ptr_eq(&a.pool, &d.pool));
    }

    #[test]
    fn the_upstream_is_chosen_on_the_normal_form_of_the_path() {
        let routes: Vec<Route> = [("/api", "http://10.0.0.1/"), ("/", "http://10.0.0.2/")]
            .into_iter()
            .map(|(prefix, url)| at(prefix, url))
            .collect();
        for path in ["/api/x", "//api/x", "/%61pi/x", "/%61%70%69", "///api"] {
            let r = find_route(&routes, path).unwrap();
            assert_eq!(r.label, "http://10.0.0.1/", "{path}");
        }
        for path in ["/apix", "/x/api", "/%2561pi/x"] {
            let r = find_route(&routes, path).unwrap();
            assert_eq!(r.label, "http://10.0.0.2/", "{path}");
        }
        assert!(find_route(&routes, "/a/../api").is_err());
    }

    #[test]
    fn upstream_target_takes_every_request_target_form() {
        let (plain, based) = (
            at("/", "http://10.0.0.1:8080/"),
            at("/", "http://10.0.0.1/base/"),
        );
        assert_eq!(plain.host, "10.0.0.1:8080");
        for (target, want_plain, want_based) in [
            // absolute-form without a path: the path is `/`
            ("http://h", "/", "/base/"),
            ("http://h?x=1", "/?x=1", "/base/?x=1"),
            ("http://h/a%2Fb?q", "/a%2Fb?q", "/base/a%2Fb?q"),
            // authority-form (CONNECT): no path and query at all
            ("h:443", "/", "/base/"),
            ("/", "/", "/base/"),
        ] {
            let original: Uri = target.parse().unwrap();
            for (r, want) in [(&plain, want_plain), (&based, want_based)] {
                let got = upstream_target(r, &original).unwrap();
                // origin-form: what the request line carries
                assert!(got.scheme().is_none() && got.authority().is_none());
                assert_eq!(got.to_string(), want, "{target}");
            }
        }
    }

    #[test]
    fn upstream_target_keeps_path_and_query_under_the_base() {
        let r = at("/", "http://10.0.0.1:8080/base/");
        let u = upstream_target(&r, &Uri::from_static("/x/y?q=1")).unwrap();
        assert_eq!(u.to_string(), "/base/x/y?q=1");
        let r = at("/", "https://app.internal");
        assert_eq!(r.host, "app.internal");
        assert_eq!(
            upstream_target(&r, &Uri::from_static("/"))
                .unwrap()
                .to_string(),
            "/"
        );
    }

    #[test]
    fn hostile_identity_values_are_dropped_not_mangled() {
        let mut h = HeaderMap::new();
        let id = Identity {
            subject: "u1".into(),
            email: Some("a@b\r\nX-Evil: 1".into()),
            ..Identity::default()
        };
        set_identity_headers(
            &mut h,
            &id,
            IdentityHeaderSettings {
                pass_access_token: false,
                pass_authorization_header: false,
            },
            &[],
        );
        assert_eq!(h["x-forwarded-user"], "u1");
        assert!(!h.contains_key("x-forwarded-email"));
    }

    #[test]
    fn a_group_containing_a_comma_is_not_joined_into_the_groups_header() {
        let mut h = HeaderMap::new();
        let id = Identity {
            subject: "u1".into(),
            groups: vec!["staff".into(), "admins,x".into()],
            ..Identity::default()
        };
        set_identity_headers(
            &mut h,
            &id,
            IdentityHeaderSettings {
                pass_access_token: false,
                pass_authorization_header: false,
            },
            &[],
        );
        assert_eq!(h["x-forwarded-groups"], "staff");
    }

    #[test]
    fn set_cookies_naming_our_cookies_are_dropped_and_others_kept() {
        let own = |n: &str| n == "_gh" || n == "_gh_0";
        // (Set-Cookie value, kept)
        let cases: &[(&[u8], bool)] = &[
            (b"_gh=forged; Path=/", false),
            (b"_gh=; Max-Age=0", false),
            (b"  _gh  =x", false),
            (b"_gh_0=c; Domain=.example.com", false),
            (b"_gh=\xff\xfe; Path=/", false),
            // valueless: Firefox stores a cookie named `_gh`
            (b"_gh", false),
            (b"_gh; Secure; Path=/", false),
            // nameless: browsers send it back as `_gh=x`
            (b"=_gh=x", false),
            (b" = _gh_0=x; Path=/", false),
            (b"==_gh=x", false),
            (b"=_gh", false),
            (b"_gh1=x", true),
            (b"app=1; Path=/; x=_gh=", true),
            (b"_gh\xff=x", true),
            (b"=other=1", true),
            (b"=x", true),
            (b"app=_gh=1", true),
        ];
        for (raw, kept) in cases {
            let mut h = HeaderMap::new();
            h.append(SET_COOKIE, HeaderValue::from_static("a=1"));
            h.append(SET_COOKIE, HeaderValue::from_bytes(raw).unwrap());
            h.append(SET_COOKIE, HeaderValue::from_static("b=2"));
            drop_own_set_cookies(&mut h, &own);
            let got: Vec<&[u8]> = h
                .get_all(SET_COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            let want: Vec<&[u8]> = if *kept {
                vec![b"a=1", raw, b"b=2"]
            } else {
                vec![b"a=1", b"b=2"]
            };
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
    }
}
