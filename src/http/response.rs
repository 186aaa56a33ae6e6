//! Small responses gatehouse writes itself: redirects, pages, JSON.
//!
//! Every text that came from outside is HTML-escaped before it lands in a page.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Response, StatusCode};

use crate::http::body::{ProxyBody, empty, full};

/// A 302 to `location`; a location that is not a valid header value becomes `/`.
pub fn redirect(location: &str) -> Response<ProxyBody> {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::FOUND;
    let loc = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    r.headers_mut().insert(LOCATION, loc);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
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
    with_type(status, "text/html; charset=utf-8", html)
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
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests;
