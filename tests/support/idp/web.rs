//! HTTP plumbing for the mock provider: response builders, OAuth error
//! bodies and redirects, HTML pages, and request parsing helpers. Nothing
//! here panics on malformed input.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use url::Url;

pub(super) type Resp = Response<Full<Bytes>>;

/// `(id, secret)` from `Authorization: Basic`, each form-urlencoded per
/// RFC 6749 2.3.1.
pub(super) fn parse_basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub(super) fn status_from(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(super) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Resp {
    respond(status, "application/json", body.to_string())
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

pub(super) fn html_page(status: StatusCode, title: &str, body: &str) -> Resp {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title} - mock IdP</title>\n\
         <style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;}}\
         .users li{{margin:.6em 0}} a{{font-size:1.1em}}</style></head>\n\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape_html(title),
    );
    respond(status, "text/html; charset=utf-8", page)
}

/// 302 to `target` with `extra` query parameters and `state` appended.
pub(super) fn redirect_with(target: &Url, extra: &[(&str, &str)], state: Option<&str>) -> Resp {
    let mut url = target.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        if let Some(state) = state {
            q.append_pair("state", state);
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            let mut resp = respond(StatusCode::FOUND, "text/plain", "redirecting");
            resp.headers_mut().insert(header::LOCATION, location);
            resp
        }
        Err(_) => respond(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "unusable redirect target",
        ),
    }
}
