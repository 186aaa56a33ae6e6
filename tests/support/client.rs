//! `TestClient`: a browser stand-in for the integration tests.
//!
//! HTTP/1.1 (or h2c with [`TestClient::h2c`]) over plain TCP, redirects OFF
//! so every 302 is asserted, and a cookie jar keyed by host. Like a browser,
//! the jar ignores ports (cookies for `127.0.0.1` go to every port on it) and
//! honours `Path`, `Max-Age` and `Expires`; unlike one it ignores `Secure`
//! and `Domain` (tests run over http on loopback).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use cookie::Cookie;
use cookie::time::OffsetDateTime;
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
    jar: Mutex<HashMap<String, Vec<StoredCookie>>>,
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
            timeout: Duration::from_secs(30),
        }
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
            && let Some(cookie) = self.cookie_header(&host, url.path())
        {
            req.headers_mut()
                .insert(header::COOKIE, HeaderValue::from_str(&cookie)?);
        }
        req.headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static("gatehouse-tests"));
        let resp = self.client.request(req).await?;
        self.store(&host, &url, resp.headers());
        Ok(resp)
    }

    /// Cookies the jar would send to `host` at path `/` and below, name →
    /// value. `host` may be `127.0.0.1`, `127.0.0.1:PORT` or a URL.
    pub fn cookies_for(&self, host: &str) -> BTreeMap<String, String> {
        let now = OffsetDateTime::now_utc();
        let jar = self.jar.lock().unwrap();
        jar.get(&normalise_host(host))
            .into_iter()
            .flatten()
            .filter(|c| c.expires.is_none_or(|e| e > now))
            .map(|c| (c.name.clone(), c.value.clone()))
            .collect()
    }

    /// One cookie's value for `host`, any path.
    pub fn cookie(&self, host: &str, name: &str) -> Option<String> {
        self.cookies_for(host).remove(name)
    }

    /// Sets (or overwrites) a cookie with `Path=/`, as a tampering browser would.
    pub fn set_cookie(&self, host: &str, name: &str, value: &str) {
        let cookie = StoredCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            path: "/".into(),
            expires: None,
        };
        let mut jar = self.jar.lock().unwrap();
        let cookies = jar.entry(normalise_host(host)).or_default();
        cookies.retain(|c| !(c.name == name && c.path == "/"));
        cookies.push(cookie);
    }

    /// Removes every cookie called `name` for `host`, whatever its path.
    pub fn remove_cookie(&self, host: &str, name: &str) {
        if let Some(cookies) = self.jar.lock().unwrap().get_mut(&normalise_host(host)) {
            cookies.retain(|c| c.name != name);
        }
    }

    pub fn clear_cookies(&self) {
        self.jar.lock().unwrap().clear();
    }

    /// `name=value; …` for a request to `path`, longest paths first.
    fn cookie_header(&self, host: &str, path: &str) -> Option<String> {
        let now = OffsetDateTime::now_utc();
        let jar = self.jar.lock().unwrap();
        let mut matching: Vec<&StoredCookie> = jar
            .get(host)?
            .iter()
            .filter(|c| c.expires.is_none_or(|e| e > now) && path_matches(path, &c.path))
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
    fn store(&self, host: &str, url: &Url, headers: &HeaderMap) {
        let now = OffsetDateTime::now_utc();
        let mut jar = self.jar.lock().unwrap();
        let cookies = jar.entry(host.to_owned()).or_default();
        for value in headers.get_all(header::SET_COOKIE) {
            let Some(parsed) = value
                .to_str()
                .ok()
                .and_then(|v| Cookie::parse(v.to_owned()).ok())
            else {
                continue;
            };
            let path = parsed
                .path()
                .map_or_else(|| default_path(url.path()), str::to_owned);
            let expires = match (parsed.max_age(), parsed.expires_datetime()) {
                (Some(max_age), _) => Some(now + max_age),
                (None, expires) => expires,
            };
            cookies.retain(|c| !(c.name == parsed.name() && c.path == path));
            if expires.is_none_or(|e| e > now) {
                let (name, value) = (parsed.name().to_owned(), parsed.value().to_owned());
                cookies.push(StoredCookie {
                    name,
                    value,
                    path,
                    expires,
                });
            }
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
