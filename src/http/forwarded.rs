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
        host,
        trusted,
    }
}

/// The `X-Forwarded-For` to send on: the trusted chain plus the peer, or the
/// peer alone when the peer is not trusted.
pub fn forwarded_for(headers: &HeaderMap, peer: IpAddr, trusted: bool) -> Option<HeaderValue> {
    let peer = peer.to_string();
    let chain: Vec<&str> = if trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| s.parse::<IpAddr>().is_ok())
            .collect()
    } else {
        Vec::new()
    };
    let mut out = chain.join(", ");
    if !out.is_empty() {
        out.push_str(", ");
    }
    out.push_str(&peer);
    HeaderValue::from_str(&out).ok()
}

/// The request a front proxy is asking about (forward-auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// The original method.
    pub method: http::Method,
    /// The original absolute URL.
    pub url: url::Url,
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
    let method = match text(&X_FORWARDED_METHOD)? {
        None => http::Method::GET,
        Some(m) => http::Method::from_bytes(m.trim().as_bytes())
            .map_err(|_e| BadOriginal("bad X-Forwarded-Method"))?,
    };
    let raw = if let Some(u) = text(&X_ORIGINAL_URL)? {
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
    let url = url::Url::parse(&raw).map_err(|_e| BadOriginal("original URL does not parse"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || !url.username().is_empty()
    {
        return Err(BadOriginal(
            "original URL must be http(s) with a host and no credentials",
        ));
    }
    Ok(Some(OriginalRequest { method, url }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    #[test]
    fn untrusted_peers_cannot_set_proto_host_or_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "evil.example".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("host", "app.example".parse().unwrap());
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let trusted = is_trusted(peer, &nets());
        assert!(!trusted);
        let o = origin(&h, &Uri::from_static("/"), false, trusted);
        assert_eq!(o.proto, "http");
        assert_eq!(o.host.as_deref(), Some("app.example"));
        assert_eq!(forwarded_for(&h, peer, trusted).unwrap(), "192.0.2.1");
    }

    #[test]
    fn trusted_peers_pass_their_view_on() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "HTTPS".parse().unwrap());
        h.insert("x-forwarded-host", "app.example".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4, junk".parse().unwrap());
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        assert!(is_trusted(peer, &nets()));
        assert!(is_trusted("::ffff:10.1.1.1".parse().unwrap(), &nets()));
        let o = origin(&h, &Uri::from_static("/"), false, true);
        assert_eq!(o.proto, "https");
        assert_eq!(o.host.as_deref(), Some("app.example"));
        assert_eq!(forwarded_for(&h, peer, true).unwrap(), "1.2.3.4, 10.1.1.1");
    }

    #[test]
    fn original_request_is_rebuilt_only_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
        h.insert("x-forwarded-uri", "/a/b?c=1".parse().unwrap());
        h.insert("x-forwarded-method", "POST".parse().unwrap());
        assert_eq!(original_request(&h, false), Ok(None));
        let o = original_request(&h, true).unwrap().unwrap();
        assert_eq!(o.url.as_str(), "https://app.example.com/a/b?c=1");
        assert_eq!(o.method, http::Method::POST);
        let mut n = HeaderMap::new();
        n.insert(
            "x-original-url",
            "https://app.example.com/x".parse().unwrap(),
        );
        assert_eq!(
            original_request(&n, true).unwrap().unwrap().url.path(),
            "/x"
        );
    }

    #[test]
    fn malformed_original_requests_are_errors() {
        let bad: &[(&str, &str)] = &[
            ("x-forwarded-uri", "no-slash"),
            ("x-forwarded-uri", "//evil.example/x"),
            ("x-forwarded-uri", "/a b"),
            ("x-forwarded-uri", "/a\\b"),
            ("x-original-url", "javascript:alert(1)"),
            ("x-original-url", "/relative"),
            ("x-original-url", "https://user@app.example.com/"),
            ("x-forwarded-method", "BAD METHOD"),
        ];
        for (name, value) in bad {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
            h.insert(*name, value.parse().unwrap());
            if *name == "x-forwarded-method" {
                h.insert("x-forwarded-uri", "/".parse().unwrap());
            }
            assert!(original_request(&h, true).is_err(), "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-uri", "/".parse().unwrap());
        h.insert("x-forwarded-host", "bad host".parse().unwrap());
        assert!(original_request(&h, true).is_err());
    }

    #[test]
    fn a_malformed_host_is_no_host() {
        let mut h = HeaderMap::new();
        h.insert("host", "bad host/x".parse().unwrap());
        assert_eq!(origin(&h, &Uri::from_static("/"), false, false).host, None);
    }
}
