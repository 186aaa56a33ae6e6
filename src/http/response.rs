//! Small responses gatehouse writes itself: redirects, pages, JSON.
//!
//! Every text that came from outside is HTML-escaped before it lands in a page.
//! Every answer built here is marked [`OwnAnswer`] and carries `nosniff`,
//! `X-Frame-Options: DENY` and `Cache-Control: no-store` (pages also
//! `Content-Security-Policy: frame-ancestors 'none'`); the router adds HSTS
//! to marked answers on TLS connections ([`add_hsts`]), never to proxied ones.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Response, StatusCode};

use crate::http::body::{ProxyBody, empty, full};

/// A 302 to `location`; a location that is not a valid header value becomes `/`.
pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    let loc = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(LOCATION, loc);
    harden(&mut r, false);
    r
}

/// Marks a response gatehouse wrote itself, as opposed to a proxied
/// upstream answer.
#[derive(Debug, Clone, Copy)]
pub struct OwnAnswer;

/// Adds the security headers of gatehouse's own answers and marks `r` as one.
fn harden(r: &mut Response<ProxyBody>, page: bool) {
    let h = r.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if page {
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    r.extensions_mut().insert(OwnAnswer);
}

/// Adds `Strict-Transport-Security` to gatehouse's own answers served over
/// TLS; proxied answers and plain-HTTP ones are left alone.
pub fn add_hsts(r: &mut Response<ProxyBody>, tls: bool) {
    if tls && r.extensions().get::<OwnAnswer>().is_some() {
        r.headers_mut().insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A short HTML page: a title, a message and an optional link. All three
/// are escaped here.
pub fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response<ProxyBody> {
    let link = link
        .map(|(href, text)| {
            format!(
                "<p><a href=\"{}\">{}</a></p>",
                escape_html(href),
                escape_html(text)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}}</style>\
         </head><body><h1>{t}</h1><p>{m}</p>{link}</body></html>",
        t = escape_html(title),
        m = escape_html(message),
    );
    let mut r = with_type(status, "text/html; charset=utf-8", html);
    harden(&mut r, true);
    r
}

/// A JSON body.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    with_type(status, "application/json", value.to_string())
}

/// A plain-text body.
pub fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    with_type(status, "text/plain; charset=utf-8", body)
}

fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    harden(&mut r, false);
    r
}

#[cfg(test)]
mod tests;
