//! `ReturnTo`: the validated URL a browser is sent to after login or logout.
//!
//! Owns: the open-redirect defence. A return URL is accepted only when it is
//! a path starting with exactly one `/`, or an absolute http(s) URL on a
//! host gatehouse serves ([`Served`]: the `redirect_url` host, a
//! `whitelist_domain` matched on a dot boundary, the `cookie_domain`) or on
//! the request's own host. The request's own host counts only when the
//! connection named it: one from `X-Forwarded-Host` (even from a trusted
//! proxy, which may pass on what a client sent) must be a served host. An
//! absolute URL never takes an https request to http. Everything else falls
//! back to `/`.
//! Must not: hand out a raw string: later code only ever sees a `ReturnTo`.
//!
//! The URL is judged as a browser would read it: control characters and
//! backslashes are refused outright (browsers drop tabs and newlines and read
//! `\` as `/`), and a relative path is judged again after percent-decoding,
//! so `/%2F%2Fevil.com` does not slip past a server that decodes before
//! redirecting.

use std::fmt;
use std::str::FromStr;

use url::Url;

use crate::http::forwarded::Origin;

/// The longest return URL kept; longer ones fall back to `/`.
const MAX_LEN: usize = 2048;

/// A host allowed as a redirect target: `example.com` (that host only),
/// `.example.com` (it and every subdomain), with an optional `:port` or `:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistDomain {
    host: String,
    subdomains: bool,
    port: PortRule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRule {
    /// No port given: only the scheme's default port.
    Default,
    Exact(u16),
    Any,
}

/// A return URL that passed validation. Displays as the URL to redirect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnTo(String);

impl FromStr for WhitelistDomain {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let (host, port) = match lower.rsplit_once(':') {
            Some((h, "*")) => (h, PortRule::Any),
            Some((h, p)) => (
                h,
                PortRule::Exact(p.parse().map_err(|_e| format!("`{s}`: bad port `{p}`"))?),
            ),
            None => (lower.as_str(), PortRule::Default),
        };
        let (subdomains, bare) = match host.strip_prefix('.') {
            Some(b) => (true, b),
            None => (false, host),
        };
        if bare.is_empty()
            || bare.starts_with('.')
            || bare.ends_with('.')
            || !bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(format!(
                "`{s}` is not a domain like example.com or .example.com"
            ));
        }
        Ok(Self {
            host: bare.to_owned(),
            subdomains,
            port,
        })
    }
}

/// The hosts gatehouse serves: where a browser may be sent back to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Served<'a> {
    /// The `redirect_url`, when it is an absolute URL: its host and port.
    pub callback: Option<&'a Url>,
    /// `whitelist_domain` entries.
    pub whitelist: &'a [WhitelistDomain],
    /// `cookie_domain`: that domain and its subdomains, any port.
    pub cookie_domain: Option<&'a str>,
}

impl Served<'_> {
    /// True when `host` (lower case) with `port` (`None`: the default port
    /// of `scheme`) is served.
    pub fn serves(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let default = if scheme == "https" { 443 } else { 80 };
        let callback = self.callback.is_some_and(|cb| {
            cb.host_str().is_some_and(|h| h.eq_ignore_ascii_case(host))
                && cb.port_or_known_default() == Some(port.unwrap_or(default))
        });
        let cookie = self.cookie_domain.is_some_and(|d| {
            let d = d.trim_start_matches('.');
            !d.is_empty()
                && (host.eq_ignore_ascii_case(d)
                    || (host.len() > d.len()
                        && host
                            .get(host.len() - d.len()..)
                            .is_some_and(|tail| tail.eq_ignore_ascii_case(d))
                        && host.as_bytes()[host.len() - d.len() - 1] == b'.'))
        });
        callback || cookie || self.whitelist.iter().any(|w| w.allows(host, port))
    }
}

/// True when `authority` (a `Host` value, port included if any) is allowed
/// by `whitelist` for a URL of `scheme`. A `Host` with user information
/// (`user@a.example.com`) is not a host at all: refused.
pub fn host_allowed(scheme: &str, authority: &str, whitelist: &[WhitelistDomain]) -> bool {
    if authority.contains('@') {
        return false;
    }
    let Ok(a) = authority.parse::<http::uri::Authority>() else {
        return false;
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let port = a.port_u16().filter(|p| *p != default);
    let host = a.host().to_ascii_lowercase();
    whitelist.iter().any(|w| w.allows(&host, port))
}

impl WhitelistDomain {
    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = host == self.host
            || (self.subdomains
                && host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.');
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Default => port.is_none(),
            PortRule::Exact(p) => port == Some(p),
        };
        host_ok && port_ok
    }
}

impl ReturnTo {
    /// The fallback target.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Validates `raw` for a request from `origin`; anything not clearly
    /// safe becomes `/`.
    ///
    /// An absolute URL is accepted on a host `served` names, or on the
    /// origin's exact host and port when the connection itself named that
    /// host (not `X-Forwarded-Host`); never with `http` when the origin is
    /// `https`.
    pub fn parse(raw: &str, origin: &Origin, served: &Served<'_>) -> Self {
        Self::try_parse(raw, origin, served).unwrap_or_else(Self::root)
    }

    /// Like [`ReturnTo::parse`] but says `None` instead of falling back.
    pub fn try_parse(raw: &str, origin: &Origin, served: &Served<'_>) -> Option<Self> {
        if raw.is_empty() || raw.len() > MAX_LEN || has_forbidden_chars(raw) {
            return None;
        }
        if raw.starts_with('/') {
            return relative_path_ok(raw).then(|| Self(raw.to_owned()));
        }
        let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return None;
        }
        let url = Url::parse(raw).ok()?;
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        if origin.proto == "https" && url.scheme() != "https" {
            return None; // never a downgrade
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let port = url.port(); // None when absent or the scheme's default
        let scheme_default = url.port_or_known_default().filter(|_| port.is_none());
        let request_host = origin.host.as_deref().filter(|_| !origin.host_forwarded);
        let same_host =
            request_host.is_some_and(|h| host_matches_request(&host, port, scheme_default, h));
        if same_host || served.serves(url.scheme(), &host, port) {
            Some(Self(url.to_string()))
        } else {
            None
        }
    }

    /// The URL as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for an absolute URL (as opposed to a path on this host).
    pub fn is_absolute(&self) -> bool {
        !self.0.starts_with('/')
    }
}

impl fmt::Display for ReturnTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Control characters, spaces, backslashes and non-ASCII are never in a URL
/// we hand back: browsers strip or reinterpret them.
fn has_forbidden_chars(s: &str) -> bool {
    s.bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'\\' || b >= 0x80)
}

/// A path that starts with exactly one `/`, judged raw and once decoded.
fn relative_path_ok(raw: &str) -> bool {
    if !raw.starts_with('/') || raw.starts_with("//") {
        return false;
    }
    // judged again as a server that decodes before redirecting would see it:
    // still one leading slash, and no control character or backslash
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    decoded.first() == Some(&b'/')
        && decoded.get(1) != Some(&b'/')
        && !decoded.iter().any(|&b| b < b' ' || b == 0x7f || b == b'\\')
}

fn host_matches_request(
    host: &str,
    port: Option<u16>,
    scheme_default: Option<u16>,
    request_host: &str,
) -> bool {
    let Ok(authority) = request_host.parse::<http::uri::Authority>() else {
        return false;
    };
    // a request host without a port means the default port of the URL's scheme
    let request_port = authority.port_u16().or(scheme_default);
    authority.host().eq_ignore_ascii_case(host) && port.or(scheme_default) == request_port
}

#[cfg(test)]
mod tests;
