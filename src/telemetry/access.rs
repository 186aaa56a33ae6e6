//! The access log: one line per request, target `gatehouse::access`.
//!
//! With the text log it is a `tracing` event like any other. With the JSON
//! log it is written here directly, to the same writer and in the same
//! bytes [`super::JsonLines`] would give that event (a test holds the two
//! equal): through `tracing`'s dispatch, visitor and `core::fmt` the line
//! cost about 7,400 instructions, some 10% of a proxied request's.
//!
//! Owns: the access line's fields and their JSON form. Must not: write
//! anything the `log_level` filter turned off (the event's own filter is
//! asked first), or escape differently from the rest of the JSON log.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter as _;

use super::writer::LogWriter;

/// One request's access line, as the request gave it: [`log`] escapes the
/// values that come from a request or a provider ([`super::escape_log`]).
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The method.
    pub method: &'a str,
    /// The path.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// From the request's head to its response head, in microseconds.
    pub latency_micros: u32,
    /// The subject, or `-`.
    pub user: &'a str,
    /// The email, or `-`.
    pub email: &'a str,
    /// Whether the request went upstream.
    pub upstream: bool,
    /// The route's name, where routes are configured.
    pub route: Option<&'a str>,
    /// The TCP peer's address.
    pub peer: &'a str,
    /// Why a 401 or 403 was answered.
    pub reason: Option<&'a str>,
    /// The rule that refused.
    pub rule: Option<&'a str>,
    /// The request's trace and span, when tracing is on.
    pub trace: Option<(opentelemetry::TraceId, opentelemetry::SpanId)>,
}

/// The JSON log's writer, when the installed log is JSON.
static JSON_WRITER: OnceLock<LogWriter> = OnceLock::new();

/// Called by [`super::init`] once a JSON log is installed.
pub(super) fn install_json(writer: LogWriter) {
    let _ = JSON_WRITER.set(writer);
}

/// Logs the line `line` makes (called only when the access log is on: off,
/// not even the clock is read): written directly when the log is JSON, else
/// emitted as the `tracing` event the text log formats.
pub fn log<'a>(line: impl FnOnce() -> AccessLine<'a>) {
    if !tracing::enabled!(target: "gatehouse::access", tracing::Level::INFO) {
        return;
    }
    escaped(&line(), |line| match JSON_WRITER.get() {
        Some(writer) => write_json(writer, line),
        None => event(line),
    });
}

/// `line` with the values from a request or a provider escaped: the text
/// log could be handed forged lines, and both formats show the same values.
fn escaped<R>(line: &AccessLine<'_>, then: impl FnOnce(&AccessLine<'_>) -> R) -> R {
    let (path, user, email) = (
        super::escape_log(line.path),
        super::escape_log(line.user),
        super::escape_log(line.email),
    );
    then(&AccessLine {
        path: &path,
        user: &user,
        email: &email,
        ..*line
    })
}

/// The access line as a `tracing` event. Display for the text values: the
/// text log writes `peer=192.0.2.1` where a string would be quoted, and log
/// parsers match that.
fn event(line: &AccessLine<'_>) {
    tracing::info!(
        target: "gatehouse::access",
        request_id = %line.request_id,
        method = %line.method,
        path = %line.path,
        status = line.status,
        latency_ms = f64::from(line.latency_micros) / 1000.0,
        user = %line.user,
        email = %line.email,
        upstream = line.upstream,
        route = line.route,
        peer = %line.peer,
        reason = line.reason,
        rule = line.rule,
        trace_id = line.trace.map(|(t, _)| tracing::field::display(t)),
        span_id = line.trace.map(|(_, s)| tracing::field::display(s)),
        "request"
    );
}

fn write_json(writer: &LogWriter, line: &AccessLine<'_>) {
    thread_local! {
        // kept per worker thread: a line is a few hundred bytes
        static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let write = |buf: &mut String| {
        buf.clear();
        if json_line(buf, line, std::time::SystemTime::now()).is_ok() {
            // the writer takes the line whole, or counts it dropped
            let _ = writer.make_writer().write_all(buf.as_bytes());
        }
    };
    LINE.with(|buf| match buf.try_borrow_mut() {
        Ok(mut buf) => write(&mut buf),
        // never expected (nothing in here logs), but never a lost line
        Err(_) => write(&mut String::new()),
    });
}

/// The line as [`super::JsonLines`] formats [`event`]: its fields in their
/// order, `None`s left out, the message as `msg`, then the target.
fn json_line(w: &mut String, line: &AccessLine<'_>, now: std::time::SystemTime) -> fmt::Result {
    w.push_str("{\"timestamp\":\"");
    super::timestamp(w, now)?;
    w.push_str("\",\"level\":\"INFO\",\"msg\":\"request\"");
    fn text(w: &mut String, key: &str, value: Option<&str>) -> fmt::Result {
        if let Some(v) = value {
            w.push_str(",\"");
            w.push_str(key);
            w.push_str("\":\"");
            // the plain case pushed directly: `json_str` goes through
            // `dyn Write` three times a field
            if super::json_plain(v) {
                w.push_str(v);
            } else {
                fmt::Write::write_str(&mut super::JsonStr(w), v)?;
            }
            w.push('"');
        }
        Ok(())
    }
    text(w, "request_id", Some(line.request_id))?;
    text(w, "method", Some(line.method))?;
    text(w, "path", Some(line.path))?;
    w.push_str(",\"status\":");
    push_u32(w, u32::from(line.status));
    w.push_str(",\"latency_ms\":");
    push_millis(w, line.latency_micros);
    text(w, "user", Some(line.user))?;
    text(w, "email", Some(line.email))?;
    w.push_str(if line.upstream {
        ",\"upstream\":true"
    } else {
        ",\"upstream\":false"
    });
    text(w, "route", line.route)?;
    text(w, "peer", Some(line.peer))?;
    text(w, "reason", line.reason)?;
    text(w, "rule", line.rule)?;
    if let Some((trace, span)) = line.trace {
        write!(w, ",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"")?;
    }
    w.push_str(",\"target\":\"gatehouse::access\"}\n");
    Ok(())
}

/// `n` in decimal.
fn push_u32(w: &mut String, mut n: u32) {
    let mut digits = [0_u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    w.extend(digits[at..].iter().map(|d| char::from(*d)));
}

/// `micros / 1000` as f64's Display writes it: the shortest decimal that
/// reads back as that f64, which for a whole number of microseconds is the
/// milliseconds with up to three decimals, trailing zeros dropped (`10.212`,
/// `0.5`, `2`).
fn push_millis(w: &mut String, micros: u32) {
    push_u32(w, micros / 1000);
    let mut frac = micros % 1000;
    if frac == 0 {
        return;
    }
    let mut places = 3;
    while frac.is_multiple_of(10) {
        frac /= 10;
        places -= 1;
    }
    let mut digits = [b'0'; 3];
    for d in digits[..places].iter_mut().rev() {
        *d = b'0' + u8::try_from(frac % 10).unwrap_or(0);
        frac /= 10;
    }
    w.push('.');
    w.extend(digits[..places].iter().map(|d| char::from(*d)));
}

#[cfg(test)]
mod tests;
