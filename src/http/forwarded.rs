//! `X-Forwarded-*`: believed only from trusted peers.
//!
//! Owns: deciding whether a peer is a trusted proxy (`trusted_proxy` CIDRs)
//! and reading the original scheme, host, and client chain from its headers.
//! From any other peer those headers are ignored: the connection itself is
//! the truth.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue, Uri};
use ipnet::IpNet;

use crate::http::headers::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

/// What the request looked like before any trusted proxy in front of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub proto: &'static str,
    /// Host (with port if any) the client asked for.
    pub host: Option<String>,
    /// True when the peer is a trusted proxy.
    pub trusted: bool,
    /// True when `host` came from `X-Forwarded-Host` (or an original URL)
    /// rather than from the connection's own request target or `Host`: a
    /// trusted proxy may pass on whatever host a client named.
    pub host_forwarded: bool,
}

/// True when `peer` is inside one of `trusted`.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    trusted.iter().any(|n| n.contains(&peer))
}

/// The first value of a header as text, if it is a clean token list.
fn first_value<'a>(headers: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    let v = headers.get(name)?.to_str().ok()?;
    let first = v.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// Works out scheme and host as the client saw them.
pub fn origin(headers: &HeaderMap, uri: &Uri, tls: bool, trusted: bool) -> Origin {
    let own_proto = if tls { "https" } else { "http" };
    let proto = if trusted {
        match first_value(headers, &X_FORWARDED_PROTO)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("https") => "https",
            Some("http") => "http",
            _ => own_proto,
        }
    } else {
        own_proto
    };
    let forwarded_host = trusted
        .then(|| first_value(headers, &X_FORWARDED_HOST))
        .flatten();
    let host = forwarded_host
        .or_else(|| uri.authority().map(http::uri::Authority::as_str))
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .map(str::to_owned);
    Origin {
        proto,
        host_forwarded: forwarded_host.is_some() && host.is_some(),
        host,
        trusted,
    }
}

/// An IP address as text, formatted once per connection rather than per
/// request (`Ipv4Addr`'s `Display` goes through `core::fmt`: some 2,800
/// instructions, twice a request with the access log on). Inline and `Copy`.
#[derive(Clone, Copy)]
pub struct IpText {
    len: u8,
    /// The longest form is an IPv4-mapped IPv6 address: 45 bytes.
    buf: [u8; 48],
}

impl IpText {
    /// `ip`'s usual text form (`192.0.2.1`, `2001:db8::1`).
    pub fn new(ip: IpAddr) -> Self {
        use std::io::Write as _;
        let mut buf = [0u8; 48];
        let mut rest = &mut buf[..];
        // cannot fail: 48 bytes hold every address's text
        let _ = write!(rest, "{ip}");
        let left = rest.len();
        Self {
            len: u8::try_from(48 - left).unwrap_or(0),
            buf,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `X-Forwarded-For` to send on: the trusted chain plus the peer, or the
/// peer alone when the peer is not trusted.
pub fn forwarded_for(headers: &HeaderMap, peer: IpAddr, trusted: bool) -> Option<HeaderValue> {
    forwarded_for_text(headers, &IpText::new(peer), trusted)
}

/// [`forwarded_for`] with the peer already as text.
pub fn forwarded_for_text(
    headers: &HeaderMap,
    peer: &IpText,
    trusted: bool,
) -> Option<HeaderValue> {
    let peer = peer.as_str();
    if !trusted {
        // the common case for a public listener: the peer alone, no chain
        return HeaderValue::from_str(peer).ok();
    }
    let chain: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| s.parse::<IpAddr>().is_ok())
        .collect();
    let mut out = chain.join(", ");
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str(peer);
    HeaderValue::from_str(&out).ok()
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the nearest `X-Forwarded-For` entry that is not itself a trusted proxy
/// (read right to left: only the entries our own proxies added are
/// believed). An entry that is not an IP address ends the walk.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &[IpNet]) -> IpAddr {
    let mut client = peer;
    if !is_trusted(peer, trusted) {
        return client;
    }
    'walk: for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            break;
        };
        for entry in value.rsplit(',') {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                break 'walk;
            };
            client = ip;
            if !is_trusted(ip, trusted) {
                break 'walk;
            }
        }
    }
    client
}

/// The request a front proxy is asking about (forward-auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// The original method (`GET` when the front proxy did not say).
    pub method: http::Method,
    /// Whether the front proxy said the method (`X-Forwarded-Method`):
    /// route matching on methods must not rely on the `GET` guess.
    pub method_given: bool,
    /// The original absolute URL.
    pub url: url::Url,
    /// Its path as the front proxy sent it (checked, not normalised).
    pub path: String,
}

/// The original request could not be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOriginal(pub &'static str);

/// Rebuilds the original request from `X-Original-URL`, or from
/// `X-Forwarded-Proto`, `-Host`, `-Uri` and `-Method`. Only a trusted peer is
/// believed: from anyone else the headers are ignored (`Ok(None)`). Headers
/// that are present but malformed are an error, never a guess.
pub fn original_request(
    headers: &HeaderMap,
    trusted: bool,
) -> Result<Option<OriginalRequest>, BadOriginal> {
    use crate::http::headers::{X_FORWARDED_METHOD, X_FORWARDED_URI, X_ORIGINAL_URL};
    if !trusted {
        return Ok(None);
    }
    let text = |name: &http::HeaderName| -> Result<Option<&str>, BadOriginal> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(Some)
                .map_err(|_e| BadOriginal("original request header is not text")),
        }
    };
    let method_given = headers.contains_key(&X_FORWARDED_METHOD);
    let method = match text(&X_FORWARDED_METHOD)? {
        None => http::Method::GET,
        Some(m) => http::Method::from_bytes(m.trim().as_bytes())
            .map_err(|_e| BadOriginal("bad X-Forwarded-Method"))?,
    };
    let raw = if let Some(u) = text(&X_ORIGINAL_URL)? {
        // both given and at odds: one of them is a client's, passed on by a
        // front proxy that set the other (nginx sets X-Original-URL and
        // passes a client's X-Forwarded-Uri; Caddy and Traefik the reverse)
        if let Some(uri) = text(&X_FORWARDED_URI)?
            && uri != raw_path_and_query(u)
        {
            return Err(BadOriginal(
                "X-Original-URL and X-Forwarded-Uri name different paths",
            ));
        }
        u.to_owned()
    } else if let Some(uri) = text(&X_FORWARDED_URI)? {
        if !uri.starts_with('/') || uri.starts_with("//") {
            return Err(BadOriginal(
                "X-Forwarded-Uri must be a path starting with one /",
            ));
        }
        let proto = match first_value(headers, &X_FORWARDED_PROTO)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("http") => "http",
            Some("https") => "https",
            Some(_) => return Err(BadOriginal("bad X-Forwarded-Proto")),
        };
        let host = first_value(headers, &X_FORWARDED_HOST)
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .ok_or(BadOriginal("no X-Forwarded-Host"))?;
        if host.parse::<http::uri::Authority>().is_err() || host.contains('@') {
            return Err(BadOriginal("bad X-Forwarded-Host"));
        }
        format!("{proto}://{host}{uri}")
    } else {
        return Ok(None);
    };
    if raw.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
        return Err(BadOriginal(
            "original URL has control characters, spaces or backslashes",
        ));
    }
    // judged as sent, before the URL parser resolves `..` and `%2e`: the
    // application sees the path the front proxy sends, not our reading of it
    crate::http::path::check(raw_path(&raw)).map_err(|e| BadOriginal(e.message()))?;
    let url = url::Url::parse(&raw).map_err(|_e| BadOriginal("original URL does not parse"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(BadOriginal(
            "original URL must be http(s) with a host and no credentials",
        ));
    }
    // the host as sent, too: the URL parser decodes `st%61tus` and numeric
    // IPv4 forms, which the front proxy routed on as written (nginx's
    // default server takes any Host), so routes must not see its reading
    if !url
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(raw_host(&raw)))
    {
        return Err(BadOriginal("original URL's host is not in plain form"));
    }
    Ok(Some(OriginalRequest {
        method,
        method_given,
        path: raw_path(&raw).to_owned(),
        url,
    }))
}

/// The path and query of an absolute URL as written (`/` when it has no
/// path), without the fragment.
fn raw_path_and_query(absolute: &str) -> &str {
    let after_scheme = absolute
        .split_once("://")
        .map_or(absolute, |(_, rest)| rest);
    let end = after_scheme.find('#').unwrap_or(after_scheme.len());
    let before_fragment = &after_scheme[..end];
    before_fragment
        .find(['/', '?'])
        .map_or("/", |i| &before_fragment[i..])
}

/// The host of an absolute URL as written, without the port.
fn raw_host(absolute: &str) -> &str {
    let after_scheme = absolute
        .split_once("://")
        .map_or(absolute, |(_, rest)| rest);
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..end];
    if authority.starts_with('[') {
        authority.find(']').map_or(authority, |i| &authority[..=i])
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _port)| h)
    }
}

/// The path of an absolute URL as written (`/` when it has none), without
/// query or fragment.
fn raw_path(absolute: &str) -> &str {
    let after_scheme = absolute
        .split_once("://")
        .map_or(absolute, |(_, rest)| rest);
    let end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
    let before_query = &after_scheme[..end];
    before_query.find('/').map_or("/", |i| &before_query[i..])
}

#[cfg(test)]
mod tests;
