//! Header names gatehouse sets or strips, and the hop-by-hop rules.
//!
//! Invariant: an incoming header that could be read as an identity header by
//! some upstream (any case, `_` or `.` for `-`) is removed before
//! forwarding; see [`is_identity_header`]. So is, from a peer that is not a
//! trusted proxy, every spelling of a forwarding header
//! ([`is_forwarding_header`]); see [`strip_client_headers`].

use http::HeaderMap;
use http::header::{self, HeaderName};

/// `X-Forwarded-User`: the subject.
pub const X_FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// `X-Forwarded-Email`.
pub const X_FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// `X-Forwarded-Preferred-Username`.
pub const X_FORWARDED_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-forwarded-preferred-username");
/// `X-Forwarded-Groups`: comma-joined.
pub const X_FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// `X-Forwarded-Access-Token`.
pub const X_FORWARDED_ACCESS_TOKEN: HeaderName =
    HeaderName::from_static("x-forwarded-access-token");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Uri` (Traefik, Caddy): the original path and query.
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Forwarded-Method` (Traefik, Caddy): the original method.
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Original-URL`: the original absolute URL (nginx convention).
pub const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
/// `X-Auth-Request-User`: the subject, on forward-auth answers.
pub const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
/// `X-Auth-Request-Email`.
pub const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
/// `X-Auth-Request-Preferred-Username`.
pub const X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
/// `X-Auth-Request-Groups`.
pub const X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");
/// The request's `Cookie` header without gatehouse's own cookies, on a
/// forward-auth allow answer: the front proxy passes it to the application
/// in place of the browser's.
pub const X_AUTH_REQUEST_COOKIE: HeaderName = HeaderName::from_static("x-auth-request-cookie");
/// `X-Auth-Request-Access-Token`.
pub const X_AUTH_REQUEST_ACCESS_TOKEN: HeaderName =
    HeaderName::from_static("x-auth-request-access-token");

/// Identity headers, normalised (lower case, `-`), that only gatehouse may set.
const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-forwarded-name",
    "x-forwarded-email-verified",
    "x-remote-user",
    "remote-user",
    // oauth2-proxy's names
    "gap-auth",
    "x-id-token",
];

/// Prefixes of header families that are identity headers too.
const IDENTITY_PREFIXES: &[&str] = &["x-auth-request-"];

/// Forwarding headers, normalised: what the client's address, scheme, host,
/// port, path prefix or original URL was. Only a trusted proxy may state
/// them.
const FORWARDING_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-uri",
    "x-forwarded-server",
    "x-forwarded-method",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "forwarded",
    // the client's address as CDNs and balancers state it
    "true-client-ip",
    "cf-connecting-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    // the client's TLS certificate, which applications take as identity
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-ssl-client-cert",
    "x-ssl-client-verify",
    "x-ssl-client-s-dn",
    "x-ssl-client-i-dn",
    "ssl-client-cert",
];

/// Forwarding headers that override the URL an application routes on
/// (Symfony, IIS, Zend). gatehouse checked the request's own path, so these
/// never go upstream, not even from a trusted proxy.
const URL_OVERRIDE_HEADERS: &[&str] = &["x-original-url", "x-original-uri", "x-rewrite-url"];

/// True when `name` could be taken for an identity header by an upstream:
/// compared case-insensitively with `_` or `.` read as `-`.
pub fn is_identity_header(name: &str) -> bool {
    IDENTITY_HEADERS.iter().any(|h| same_header(name, h))
        || IDENTITY_PREFIXES
            .iter()
            .any(|p| name.get(..p.len()).is_some_and(|head| same_header(head, p)))
}

/// True when `name` is a spelling (any case, `_` or `.` for `-`) of a
/// forwarding header such as `X-Forwarded-For`, `X-Real-IP` or `Forwarded`.
pub fn is_forwarding_header(name: &str) -> bool {
    FORWARDING_HEADERS.iter().any(|h| same_header(name, h))
}

/// Header names equal ignoring ASCII case, with `_` and `.` read as `-`
/// (servers and frameworks that fold names this way would read them as one
/// header). Compares byte by byte: no allocation on the request path.
pub fn same_header(a: &str, b: &str) -> bool {
    let norm = |c: u8| {
        if c == b'_' || c == b'.' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// True for a header gatehouse sets itself on the upstream request, or one
/// of the forwarding family it vouches for.
pub fn is_gatehouse_header(name: &str) -> bool {
    is_identity_header(name) || is_forwarding_header(name)
}

/// Removes every header [`is_identity_header`] matches, plus `extra` names
/// (compared the same way).
pub fn strip_identity_headers<S: AsRef<str>>(headers: &mut HeaderMap, extra: &[S]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            is_identity_header(n) || extra.iter().any(|e| same_header(n, e.as_ref()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Removes what a client may not state before a request (or its trailers)
/// goes upstream: every spelling of an identity header and of `extra`
/// (claim headers, `Authorization` when gatehouse sets it); every spelling
/// of a forwarding header when the peer is not `trusted`; and from a trusted
/// peer the spellings of a forwarding header other than its own name
/// (`X_Forwarded_For`, `x.real.ip`), which no proxy sends and some
/// frameworks would read in place of the real one. The URL-override headers
/// (`X-Original-URL`, `X-Rewrite-URL`) go whoever sent them: the path
/// gatehouse checked is the one the application must route on.
pub fn strip_client_headers<S: AsRef<str>>(headers: &mut HeaderMap, extra: &[S], trusted: bool) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let n = k.as_str();
            is_identity_header(n)
                || extra.iter().any(|e| same_header(n, e.as_ref()))
                || (is_forwarding_header(n) && !(trusted && FORWARDING_HEADERS.contains(&n)))
                || URL_OVERRIDE_HEADERS.iter().any(|h| same_header(n, h))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// True for a hop-by-hop header (RFC 9110 7.6.1), which never goes end to
/// end: `Connection`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`, ...
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    // the names of HOP_BY_HOP, matched as text: asked of every header of
    // every message, and a match on the length first rules most out at
    // once (comparing each name with the nine cost ~460 instructions a
    // request)
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Hop-by-hop headers (RFC 9110 7.6.1) never forwarded.
// a static, not a const: a const array of names is built and dropped at
// each use
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    // not standard, but still sent by old clients and never end to end
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and any header named in `Connection`.
/// `keep_upgrade` keeps `Connection: upgrade` and `Upgrade` for a WebSocket
/// handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // one look at the names first: most messages carry none of these (and
    // so no Connection naming others), and each removal below is a hash
    // lookup, twice per proxied request
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for n in named {
        headers.remove(n);
    }
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for n in &HOP_BY_HOP {
        headers.remove(n);
    }
    if let Some(u) = upgrade {
        headers.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
        headers.insert(header::UPGRADE, u);
    }
}

/// True when the request asks to switch to WebSocket (HTTP/1.1 upgrade).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests;
