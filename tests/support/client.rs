//! `TestClient`: a browser stand-in for the integration tests.
//!
//! HTTP/1.1 (or h2c with [`TestClient::h2c`]) over plain TCP, redirects OFF
//! so every 302 is asserted, and a cookie jar. Like a browser, the jar
//! ignores ports (cookies for `127.0.0.1` go to every port on it) and honours
//! `Path`, `Max-Age`, `Expires` and `Domain` (a `Domain=.gatehouse.test`
//! cookie goes to every subdomain; one without `Domain` only to the host that
//! set it); unlike one it ignores `Secure` (tests run over http on loopback).
//!
//! Several host names on one machine: [`TestClient::with_resolve`] sends
//! requests for the names given to `127.0.0.1` (same port), keeping the
//! `Host` header and the jar's host from the URL, as a browser would with an
//! `/etc/hosts` entry. Use the reserved `.test` names, e.g.
//! `app1.gatehouse.test`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cookie::Cookie;
use cookie::time::OffsetDateTime;
use http::uri::{Authority, Uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use url::Url;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request body type: [`full`] for buffers, or any streaming body boxed.
pub type ClientBody = BoxBody<Bytes, BoxError>;

/// What a browser sends when navigating.
pub const ACCEPT_HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A client with redirects off and a cookie jar.
pub struct TestClient {
    client: Client<HttpConnector, ClientBody>,
    jar: Mutex<Vec<StoredCookie>>,
    /// Host names (lowercase) connected to on `127.0.0.1`.
    resolve: HashSet<String>,
    timeout: Duration,
}

/// A fully read response.
#[derive(Clone, Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that was requested (to resolve relative `Location`s).
    pub url: Url,
}

#[derive(Clone, Debug)]
struct StoredCookie {
    name: String,
    value: String,
    /// The host that set it (host-only) or its `Domain`, lowercase, no dot.
    domain: String,
    /// No `Domain` attribute: sent only to `domain` itself (RFC 6265 5.3).
    host_only: bool,
    path: String,
    expires: Option<OffsetDateTime>,
}

// === impl TestClient ===

impl Default for TestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClient {
    /// HTTP/1.1 client; each request (body included) times out after 30 s.
    pub fn new() -> Self {
        Self::with_client(Client::builder(TokioExecutor::new()).build_http())
    }

    /// HTTP/2 over cleartext with prior knowledge (h2c).
    pub fn h2c() -> Self {
        Self::with_client(
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        )
    }

    fn with_client(client: Client<HttpConnector, ClientBody>) -> Self {
        Self {
            client,
            jar: Mutex::default(),
            resolve: HashSet::new(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Connects to `127.0.0.1` (the URL's port) for requests to any of
    /// `names`, sending `Host` and keeping cookies as for the URL's host.
    pub fn with_resolve(mut self, names: &[&str]) -> Self {
        self.resolve
            .extend(names.iter().map(|n| n.to_ascii_lowercase()));
        self
    }

    /// Per-request timeout (headers and body).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A browser navigation: `GET` with `Accept: text/html…`.
    pub async fn get(&self, url: &str) -> TestResponse {
        self.request(Method::GET, url, &[("accept", ACCEPT_HTML)], None)
            .await
    }

    /// An API call: `GET` with `Accept: application/json`.
    pub async fn get_api(&self, url: &str) -> TestResponse {
        self.request(Method::GET, url, &[("accept", "application/json")], None)
            .await
    }

    /// `GET` with extra headers; `Accept: text/html…` unless one is given.
    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut all = headers.to_vec();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            all.push(("accept", ACCEPT_HTML));
        }
        self.request(Method::GET, url, &all, None).await
    }

    /// `POST` an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> TestResponse {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        self.request(Method::POST, url, &headers, Some(Bytes::from(body)))
            .await
    }

    /// Any request. Jar cookies are added unless `headers` has a `cookie`
    /// (then only the given one is sent); `Set-Cookie` answers update the jar.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> TestResponse {
        let parsed = Url::parse(url)
            .map_err(|e| format!("bad test url {url}: {e}"))
            .unwrap();
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = body.map_or_else(empty, full);
        let req = req
            .body(body)
            .map_err(|e| format!("bad test request {url}: {e}"))
            .unwrap();
        let fetch = async {
            let resp = self.send(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(TestResponse {
                status: parts.status,
                headers: parts.headers,
                body,
                url: parsed,
            })
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_elapsed| format!("{method} {url}: timed out after {:?}", self.timeout))
            .unwrap()
            .map_err(|e| format!("{method} {url}: {e}"))
            .unwrap()
    }

    /// Sends `req` with jar cookies and returns the streaming response (no
    /// timeout). `Set-Cookie` headers update the jar.
    pub async fn send(&self, mut req: Request<ClientBody>) -> Result<Response<Incoming>, BoxError> {
        let url = Url::parse(&req.uri().to_string())?;
        let host = host_key(&url);
        if !req.headers().contains_key(header::COOKIE)
            && let Some(cookie) = self.jar_header(&host, url.path())
        {
            req.headers_mut()
                .insert(header::COOKIE, HeaderValue::from_str(&cookie)?);
        }
        req.headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static("gatehouse-tests"));
        if self.resolve.contains(&host) {
            self.connect_to_loopback(&mut req)?;
        }
        let resp = self.client.request(req).await?;
        self.store(&host, &url, resp.headers());
        Ok(resp)
    }

    /// Points `req` at `127.0.0.1` on the same port, with `Host` (unless
    /// given) still naming the URL's host: what `/etc/hosts` would do.
    fn connect_to_loopback(&self, req: &mut Request<ClientBody>) -> Result<(), BoxError> {
        let authority = req
            .uri()
            .authority()
            .ok_or("request URL without a host")?
            .clone();
        let port = authority
            .port_u16()
            .unwrap_or(if req.uri().scheme_str() == Some("https") {
                443
            } else {
                80
            });
        req.headers_mut()
            .entry(header::HOST)
            .or_insert(HeaderValue::from_str(authority.as_str())?);
        let mut parts = req.uri().clone().into_parts();
        parts.authority = Some(Authority::try_from(format!("127.0.0.1:{port}"))?);
        *req.uri_mut() = Uri::from_parts(parts)?;
        Ok(())
    }

    /// The `Cookie` header the jar would send with a request to `url`
    /// (e.g. to replay what a browser sent through a front proxy).
    pub fn cookie_header_for(&self, url: &str) -> Option<String> {
        let url = Url::parse(url)
            .map_err(|e| format!("bad test url {url}: {e}"))
            .unwrap();
        self.jar_header(&host_key(&url), url.path())
    }

    /// Applies the `Set-Cookie` headers in `headers` as if they came in a
    /// response to `url` (e.g. a forward-auth answer a front proxy relayed).
    pub fn store_cookies(&self, url: &str, headers: &HeaderMap) {
        let url = Url::parse(url)
            .map_err(|e| format!("bad test url {url}: {e}"))
            .unwrap();
        self.store(&host_key(&url), &url, headers);
    }

    /// Cookies the jar would send to `host`, any path, name → value. `host`
    /// may be `127.0.0.1`, `127.0.0.1:PORT`, `app1.gatehouse.test` or a URL;
    /// `Domain` cookies covering it are included.
    pub fn cookies_for(&self, host: &str) -> BTreeMap<String, String> {
        let now = OffsetDateTime::now_utc();
        let host = normalise_host(host);
        let jar = self.jar.lock().unwrap();
        jar.iter()
            .filter(|c| c.sent_to(&host) && c.expires.is_none_or(|e| e > now))
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect()
    }

    /// One cookie's value for `host`, any path.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies_for(host).remove(name)
    }

    /// Sets (or overwrites) a host-only cookie with `Path=/`, as a tampering
    /// browser would.
    pub fn set_cookie(&self, host: &str, name: &str, value: &str) {
        let host = normalise_host(host);
        let cookie = StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            domain: host.clone(),
            host_only: true,
            path: "/".into(),
            expires: None,
        };
        let mut jar = self.jar.lock().unwrap();
        jar.retain(|c| !(c.name == name && c.path == "/" && c.domain == host));
        jar.push(cookie);
    }

    /// Removes every cookie called `name` that would be sent to `host`,
    /// whatever its path (`Domain` cookies covering `host` included).
    pub fn remove_cookie(&self, host: &str, name: &str) {
        let host = normalise_host(host);
        self.jar
            .lock()
            .unwrap()
            .retain(|c| !(c.name == name && c.sent_to(&host)));
    }

    pub fn clear_cookies(&self) {
        self.jar.lock().unwrap().clear();
    }

    /// `name=value; …` for a request to `host` at `path`, longest paths first.
    fn jar_header(&self, host: &str, path: &str) -> Option<String> {
        let now = OffsetDateTime::now_utc();
        let jar = self.jar.lock().unwrap();
        let mut matching: Vec<&StoredCookie> = jar
            .iter()
            .filter(|c| {
                c.sent_to(host) && c.expires.is_none_or(|e| e > now) && path_matches(path, &c.path)
            })
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        Some(pairs.join("; "))
    }

    /// Applies `Set-Cookie` headers from a response to a request for `url`.
    /// A `Domain` that does not cover `host` makes the browser drop the
    /// cookie, and so does this jar.
    fn store(&self, host: &str, url: &Url, headers: &HeaderMap) {
        let now = OffsetDateTime::now_utc();
        let mut jar = self.jar.lock().unwrap();
        for value in headers.get_all(header::SET_COOKIE) {
            let Some(parsed) = value
                .to_str()
                .ok()
                .and_then(|v| Cookie::parse(v.to_owned()).ok())
            else {
                continue;
            };
            let (domain, host_only) = match parsed
                .domain()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
            {
                None => (host.to_owned(), true),
                Some(d) if domain_matches(host, &d) => (d, false),
                Some(_) => continue,
            };
            let path = parsed
                .path()
                .map_or_else(|| default_path(url.path()), str::to_owned);
            let expires = match (parsed.max_age(), parsed.expires_datetime()) {
                (Some(max_age), _) => Some(now + max_age),
                (None, expires) => expires,
            };
            jar.retain(|c| !(c.name == parsed.name() && c.path == path && c.domain == domain));
            if expires.is_none_or(|e| e > now) {
                let (name, value) = (parsed.name().to_owned(), parsed.value().to_owned());
                jar.push(StoredCookie {
                    name,
                    value,
                    domain,
                    host_only,
                    path,
                    expires,
                });
            }
        }
    }
}

// === impl StoredCookie ===

impl StoredCookie {
    /// Whether a browser sends this cookie to `host` (lowercase, no port).
    fn sent_to(&self, host: &str) -> bool {
        if self.host_only {
            host == self.domain
        } else {
            domain_matches(host, &self.domain)
        }
    }
}

// === impl TestResponse ===

impl TestResponse {
    /// The raw `Location` header.
    pub fn location(&self) -> Option<String> {
        self.header("location").map(str::to_owned)
    }

    /// `Location` resolved against the request URL.
    pub fn location_url(&self) -> Option<Url> {
        self.location().and_then(|l| self.url.join(&l).ok())
    }

    /// First value of `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Body as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .map_err(|e| {
                format!(
                    "{} response is not JSON ({e}): {}",
                    self.status,
                    self.text()
                )
            })
            .unwrap()
    }

    /// Every `Set-Cookie` header, parsed (unparseable ones skipped).
    pub fn set_cookies(&self) -> Vec<Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_owned()).ok())
            .collect()
    }

    /// The `Set-Cookie` for `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<Cookie<'static>> {
        self.set_cookies().into_iter().find(|c| c.name() == name)
    }
}

// === helpers ===

/// A buffered request body.
pub fn full(bytes: impl Into<Bytes>) -> ClientBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> ClientBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Builds a header list value from `(name, value)` pairs (for `send`).
pub fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    headers
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::try_from(*v).unwrap(),
            )
        })
        .collect()
}

/// The jar key: host without port, lowercase.
fn host_key(url: &Url) -> String {
    url.host_str().unwrap_or_default().to_ascii_lowercase()
}

fn normalise_host(host: &str) -> String {
    if let Ok(url) = Url::parse(host)
        && url.has_host()
    {
        return host_key(&url);
    }
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    bare.to_ascii_lowercase()
}

/// RFC 6265 5.1.3 domain-match, plus the browsers' refusal of a `Domain`
/// with no inner dot (a stand-in for the public suffix list) and of any
/// `Domain` on an IP address other than the address itself.
fn domain_matches(host: &str, domain: &str) -> bool {
    if host == domain {
        return true;
    }
    let is_ip = host.parse::<std::net::IpAddr>().is_ok()
        || host.starts_with('[')
        || domain.parse::<std::net::IpAddr>().is_ok();
    !is_ip
        && domain.contains('.')
        && host.len() > domain.len()
        && host.ends_with(domain)
        && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

/// RFC 6265 5.1.4 default-path.
fn default_path(request_path: &str) -> String {
    match request_path.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => request_path[..i].to_owned(),
    }
}

/// RFC 6265 5.1.4 path-match.
fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path[cookie_path.len()..].starts_with('/')))
}
