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
pub use crate::http::pages::PageKind;

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

/// One page gatehouse renders for a person: what happened, who they are
/// signed in as (when they are), what to do next, and links for it. Every
/// field is escaped by [`render`]. The one layout for every page.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// Status of the answer.
    pub status: StatusCode,
    /// Heading, also the `<title>`.
    pub title: &'a str,
    /// What happened, in plain words.
    pub what: &'a str,
    /// Who the browser is signed in as, when it is.
    pub signed_in_as: Option<&'a str>,
    /// The next step, in plain words (empty for none).
    pub next: &'a str,
    /// Links for the next step: `(href, text)`.
    pub links: &'a [(&'a str, &'a str)],
    /// A reference the administrator can find in the log.
    pub reference: Option<&'a str>,
}

/// Renders a [`Page`] as HTML through the error template (see
/// [`render_as`]).
pub fn render(p: &Page<'_>) -> Response<ProxyBody> {
    render_as(PageKind::Error, p)
}

/// Renders a [`Page`] as HTML through the `kind` template of the current
/// request's pages (`crate::http::pages`), which escapes every field. An
/// error or 403 page without a reference shows the request's id.
pub fn render_as(kind: PageKind, p: &Page<'_>) -> Response<ProxyBody> {
    let current = match (p.reference, kind) {
        (None, PageKind::Error | PageKind::Forbidden) => crate::telemetry::current_request_id(),
        _ => None,
    };
    let page = Page {
        reference: p
            .reference
            .or(current.as_ref().map(crate::telemetry::RequestId::as_str)),
        ..*p
    };
    let html = crate::http::pages::render_current(kind, &page);
    let mut r = with_type(p.status, "text/html; charset=utf-8", html);
    harden(&mut r, true);
    r
}

/// A short HTML page: a title, a message and an optional link, in the
/// [`render`] layout.
pub fn page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response<ProxyBody> {
    let links: Vec<(&str, &str)> = link.into_iter().collect();
    render(&Page {
        status,
        title,
        what: message,
        signed_in_as: None,
        next: "",
        links: &links,
        reference: None,
    })
}

/// A JSON body.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    with_type(status, "application/json", value.to_string())
}

/// A plain-text body.
pub fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
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
