//! Logging setup: text or JSON lines through `tracing` (the JSON access
//! line is written directly, see [`access`]).
//!
//! Secrets never reach a log line: they are [`Secret`](crate::config::Secret)s,
//! whose `Debug`/`Display` print `[redacted]`, and no handler logs a cookie,
//! token or `Authorization` value.
//!
//! Lines are written by a dedicated thread from a bounded buffer
//! ([`writer`]): a request formats its access line and moves on, it never
//! waits on a slow terminal, pipe or disk. When the buffer is full, lines are
//! dropped rather than requests blocked, and the number dropped is reported
//! in a warning.

pub mod access;
pub mod otel;
pub mod writer;

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::time::Duration;

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::auth::policy::DenyReason;
use crate::config::LogFormat;

/// How often dropped lines are counted and reported.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Keeps the log writer thread alive; dropping it flushes the queued lines.
/// Hold it until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: writer::WriterGuard,
}

/// Set once [`init`] installed the global subscriber.
static GLOBAL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`init`] installed the process's subscriber: every thread logs
/// through it, and none needs a subscriber of its own.
pub(crate) fn installed() -> bool {
    GLOBAL.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the global subscriber writing to stderr. Calling it twice is
/// harmless (the second subscriber is not installed).
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_e| EnvFilter::new("info"));
    // colour codes only for a person at a terminal, never into a file or pipe
    let ansi = std::io::stderr().is_terminal();
    let (writer, worker) = writer::spawn(std::io::stderr(), writer::CAPACITY);
    let dropped = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        GLOBAL.store(true, std::sync::atomic::Ordering::Relaxed);
        if format == LogFormat::Json {
            // the format installed now stays until a restart, whatever a
            // reload's config says
            access::install_json(dropped.clone());
        }
        spawn_drop_reporter(dropped);
    }
    LogGuard { _worker: worker }
}

/// One flat JSON object per event: `timestamp`, `level`, the event's fields
/// with its message as `msg`, then `target`. tracing-subscriber's own JSON
/// calls the message `message` and cannot rename it. Strings are escaped by
/// [`JsonStr`], so a control character in a value stays on its line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        w.write_str("{\"timestamp\":\"")?;
        timestamp(&mut w, std::time::SystemTime::now())?;
        write!(w, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = JsonFields {
            w: &mut w,
            result: Ok(()),
            log_target: None,
        };
        event.record(&mut fields);
        let JsonFields {
            result, log_target, ..
        } = fields;
        result?;
        w.write_str(",\"target\":")?;
        // a `log` record's own target, as the text format shows it
        json_str(&mut w, log_target.as_deref().unwrap_or(meta.target()))?;
        w.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`; `message` is written as `msg`.
struct JsonFields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
    log_target: Option<String>,
}

impl JsonFields<'_, '_> {
    fn key(&mut self, field: &Field) -> Option<()> {
        let name = match field.name() {
            "message" => "msg",
            n if n.starts_with("log.") => return None,
            n => n,
        };
        // a name is nearly always an identifier, written as it is; anything
        // else (a quoted name in a macro) is escaped
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        self.result = self.result.and_then(|()| {
            if plain {
                self.w.write_str(",\"")?;
                self.w.write_str(name)?;
                self.w.write_str("\":")
            } else {
                self.w.write_char(',')?;
                json_str(self.w, name)?;
                self.w.write_char(':')
            }
        });
        self.result.ok()
    }
}

impl Visit for JsonFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.log_target = Some(value.to_owned());
        }
        if self.key(field).is_some() {
            self.result = json_str(self.w, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.key(field).is_some() {
            self.result = write!(self.w, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.key(field).is_some() {
            self.result = write!(self.w, "{value}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.key(field).is_some() {
            self.result = write!(self.w, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.key(field).is_some() {
            self.result = if value.is_finite() {
                write!(self.w, "{value}")
            } else {
                json_str(self.w, &value.to_string())
            };
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.key(field).is_some() {
            self.result = self
                .w
                .write_char('"')
                .and_then(|()| write!(JsonStr(&mut *self.w), "{value:?}"))
                .and_then(|()| self.w.write_char('"'));
        }
    }
}

/// Writes `s` as a quoted JSON string.
fn json_str(w: &mut dyn fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    JsonStr(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// `2026-11-30T08:48:21.033969Z` (UTC, microseconds), as
/// tracing-subscriber's `SystemTime` writes it. The part up to the second
/// is kept per thread and made again only when the second changes: through
/// `core::fmt` it cost some 2,000 instructions per access line.
fn timestamp(w: &mut dyn fmt::Write, now: std::time::SystemTime) -> fmt::Result {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let text = civil_second(secs);
            *cached = (secs, text);
        }
        w.write_str(&cached.1)
    })?;
    let mut micros = since.subsec_micros();
    let mut digits = [b'0'; 8];
    digits[0] = b'.';
    digits[7] = b'Z';
    for d in digits[1..7].iter_mut().rev() {
        *d = b'0' + u8::try_from(micros % 10).unwrap_or(0);
        micros /= 10;
    }
    w.write_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"))
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` after the Unix epoch, UTC (the proleptic
/// Gregorian calendar; Howard Hinnant's days-to-civil).
fn civil_second(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Escapes what it is given for the inside of a JSON string: quotes,
/// backslashes and every control character.
struct JsonStr<'a>(&'a mut dyn fmt::Write);

/// Whether `s` goes into a JSON string as it is: printable ASCII without a
/// quote or backslash, which it nearly always is (one pass the compiler
/// vectorises).
fn json_plain(s: &str) -> bool {
    s.bytes().fold(true, |ok, b| {
        ok & ((0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\'))
    })
}

impl fmt::Write for JsonStr<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if json_plain(s) {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let esc = match c {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                // line separators to readers that split lines as Unicode
                // does (JavaScript, Python's splitlines): one record, one line
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{:04x}", u32::from(c))?;
            } else {
                self.0.write_str(esc)?;
            }
            plain = i + c.len_utf8();
        }
        self.0.write_str(&s[plain..])
    }
}

/// Reports, at most every [`DROP_REPORT_EVERY`], how many lines the full
/// queue dropped since the last report. A plain thread: it must work before
/// and after the runtime, and costs one wake-up per interval.
fn spawn_drop_reporter(counter: writer::LogWriter) {
    let spawned = std::thread::Builder::new()
        .name("gatehouse-log-drops".to_owned())
        .spawn(move || {
            let mut reported = 0;
            loop {
                std::thread::sleep(DROP_REPORT_EVERY);
                if let Some(n) = newly_dropped(counter.dropped(), &mut reported) {
                    tracing::warn!(dropped = n, "log queue full: lines dropped");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log drop reporter");
    }
}

/// Lines dropped since the last report, if any; updates `reported`.
fn newly_dropped(total: u64, reported: &mut u64) -> Option<u64> {
    let n = total.saturating_sub(*reported);
    *reported = total;
    (n > 0).then_some(n)
}

/// Longest `X-Request-Id` taken from a trusted proxy, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

/// A request's id, in its access record, its error page and upstream as
/// `X-Request-Id`. Kept inline (no allocation): at most
/// [`MAX_REQUEST_ID`] visible ASCII bytes.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    buf: [u8; MAX_REQUEST_ID],
}

impl RequestId {
    /// A proxy's `X-Request-Id`, when it is sane: 1 to [`MAX_REQUEST_ID`]
    /// bytes of visible ASCII (no space, no control character).
    pub fn from_header(value: &[u8]) -> Option<Self> {
        let len = u8::try_from(value.len()).ok()?;
        if value.is_empty()
            || value.len() > MAX_REQUEST_ID
            || !value.iter().all(|b| (0x21..=0x7e).contains(b))
        {
            return None;
        }
        let mut buf = [0; MAX_REQUEST_ID];
        buf[..value.len()].copy_from_slice(value);
        Some(Self { len, buf })
    }

    /// A new id: a random per-process prefix (12 hex digits, drawn once)
    /// and a counter (16 hex digits). No system call per request.
    pub fn generate() -> Self {
        static PREFIX: std::sync::OnceLock<[u8; 12]> = std::sync::OnceLock::new();
        let prefix = PREFIX.get_or_init(|| {
            let mut raw = [0u8; 6];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).is_err() {
                // no randomness: the start time still tells processes apart
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                raw.copy_from_slice(&nanos.to_le_bytes()[..6]);
            }
            let mut hex = [0u8; 12];
            for (i, b) in raw.iter().enumerate() {
                hex[2 * i] = HEX[usize::from(b >> 4)];
                hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
            }
            hex
        });
        let n = next_request_number();
        let mut buf = [0; MAX_REQUEST_ID];
        buf[..12].copy_from_slice(prefix);
        for (i, slot) in buf[12..28].iter_mut().enumerate() {
            *slot = HEX[usize::try_from((n >> (60 - 4 * i)) & 0xf).unwrap_or(0)];
        }
        Self { len: 28, buf }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("-")
    }
}

/// Request ids are numbered from blocks each thread takes from one
/// counter: one shared counter for every request made its cache line go
/// back and forth between the worker threads' cores.
const ID_BLOCK: u64 = 4096;

/// The next request number: unique in the process, rising per thread.
fn next_request_number() -> u64 {
    static NEXT_BLOCK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        /// (next number, end of this thread's block)
        static BLOCK: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    BLOCK.with(|b| {
        let (mut next, mut end) = b.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(ID_BLOCK, std::sync::atomic::Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        b.set((next + 1, end));
        next
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What is current while a request is handled: its id, and its trace
/// context when tracing is on (one task-local for both, so tracing adds no
/// future wrapper of its own to the request path).
struct Current {
    id: RequestId,
    trace: Option<opentelemetry::Context>,
}

tokio::task_local! {
    static REQUEST_ID: Current;
}

/// Runs `f` (one request's handling) with `id` as the current request id.
pub fn with_request_id<F: std::future::Future>(
    id: RequestId,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    with_request(id, None, f)
}

/// Runs `f` with `id` as the current request id and `trace` (the
/// request span's context, when tracing is on) as its trace context.
pub fn with_request<F: std::future::Future>(
    id: RequestId,
    trace: Option<opentelemetry::Context>,
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    REQUEST_ID.scope(Current { id, trace }, f)
}

/// The id of the request being handled, if any (for error pages and logs).
pub fn current_request_id() -> Option<RequestId> {
    REQUEST_ID.try_with(|c| c.id).ok()
}

/// Runs `f` on the trace context of the request being handled, if it has
/// one (tracing on).
pub(crate) fn with_current_trace<T>(f: impl FnOnce(&opentelemetry::Context) -> T) -> Option<T> {
    REQUEST_ID
        .try_with(|c| c.trace.as_ref().map(f))
        .ok()
        .flatten()
}

/// What the access record says about a request beyond its method, path and
/// status: who (moved in, not copied), whether it went upstream, and why
/// it was refused.
#[derive(Debug, Default)]
pub struct AccessNote {
    /// The signed-in user, allowed or refused.
    pub identity: Option<crate::auth::Allowed>,
    /// The request was forwarded to the upstream.
    pub upstream: bool,
    /// The policy rule that refused the user.
    pub denied: Option<DenyReason>,
    /// The index of the route the request was placed on (`crate::routes`).
    pub route: Option<usize>,
    /// A bearer token was presented and refused.
    pub token_refused: bool,
}

impl AccessNote {
    /// A human reason and the rule that refused, for a 401 or 403.
    pub fn refusal(
        &self,
        status: http::StatusCode,
    ) -> (Option<&'static str>, Option<&'static str>) {
        match (self.denied, status) {
            (Some(r), _) => (Some(r.log_reason()), Some(r.rule())),
            (None, http::StatusCode::UNAUTHORIZED) if self.token_refused => {
                (Some("bearer token refused"), Some("bearer"))
            }
            (None, http::StatusCode::UNAUTHORIZED) => (Some("not signed in"), Some("session")),
            _ => (None, None),
        }
    }
}

/// Crates whose events a `log_level` directive may name besides gatehouse's
/// own (`gatehouse`, `gatehouse::access`, ...): the ones that log.
const LOG_TARGETS: &[&str] = &[
    "gatehouse",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_rustls",
    "redis",
    "openidconnect",
];

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `log_level` value: a level (`info`) or a comma-separated list of
/// directives, each a level or `target=level` naming one of our targets
/// (`info,gatehouse=debug,gatehouse::access=warn`): no field or span
/// directives, which [`access::log`]'s field-less `enabled!` check could
/// not match as the event would. `EnvFilter` itself reads
/// a bare word as a target, so a typo such as `verbose` would otherwise
/// silence every line. Returns the value without its spaces, as
/// `EnvFilter` wants it.
pub fn check_log_level(value: &str) -> Result<String, String> {
    let accepted = || {
        format!(
            "`{}`: expected a level (error, warn, info, debug, trace, off) or directives like \
             `info,gatehouse=debug,gatehouse::access=warn` naming {}",
            escape_log(value),
            LOG_TARGETS.join(", ")
        )
    };
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err(accepted());
    }
    for d in directives {
        let level = match d.split_once('=') {
            None => d,
            Some((target, level)) => {
                let crate_name = target.split("::").next().unwrap_or("");
                let path_ok = target.split("::").all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !path_ok || !LOG_TARGETS.contains(&crate_name) {
                    return Err(accepted());
                }
                level
            }
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(accepted());
        }
    }
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    EnvFilter::try_new(&compact).map_err(|e| format!("{}: {e}", accepted()))?;
    Ok(compact)
}

/// Escapes control characters in a value from a request or a provider
/// before it becomes a log field, so the text log cannot be given forged
/// lines: `\n`, `\r`, `\t` and `\` become `\\n`, `\\r`, `\\t` and `\\\\`;
/// every other control character becomes `\\u{..}`. Borrows when there is
/// nothing to escape.
pub fn escape_log(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_timestamps_are_utc_with_microseconds_across_leap_days_and_centuries() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_164_800, "2024-02-29T00:00:00"),
            (1_796_027_301, "2026-11-30T08:28:21"),
            (4_102_444_799, "2099-12-31T23:59:59"),
        ] {
            assert_eq!(civil_second(secs), want, "{secs}");
            let at = std::time::UNIX_EPOCH + Duration::new(secs, 33_969_123);
            let mut out = String::new();
            timestamp(&mut out, at).unwrap();
            assert_eq!(out, format!("{want}.033969Z"));
        }
        // the cached second is not reused for another second
        let mut a = String::new();
        timestamp(&mut a, std::time::UNIX_EPOCH + Duration::from_micros(5)).unwrap();
        assert_eq!(a, "1970-01-01T00:00:00.000005Z");
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls_but_pass_plain_text_whole() {
        for (raw, want) in [
            ("GET /a/b?c=d", "GET /a/b?c=d"),
            ("say \"hi\"", "say \\\"hi\\\""),
            ("back\\slash", "back\\\\slash"),
            ("line\nbreak\ttab\u{7f}del", "line\\nbreak\\ttab\\u007fdel"),
            ("c1 \u{85} next line", "c1 \\u0085 next line"),
            ("ls \u{2028} ps \u{2029}", "ls \\u2028 ps \\u2029"),
            ("héllo ✓", "héllo ✓"),
        ] {
            let mut out = String::new();
            json_str(&mut out, raw).unwrap();
            assert_eq!(out, format!("\"{want}\""), "{raw:?}");
        }
    }

    #[test]
    fn a_refused_bearer_token_is_logged_as_such_not_as_no_session() {
        let refused = AccessNote {
            token_refused: true,
            ..AccessNote::default()
        };
        assert_eq!(
            refused.refusal(http::StatusCode::UNAUTHORIZED),
            (Some("bearer token refused"), Some("bearer"))
        );
        assert_eq!(
            AccessNote::default().refusal(http::StatusCode::UNAUTHORIZED),
            (Some("not signed in"), Some("session"))
        );
    }

    #[test]
    fn log_level_accepts_levels_and_directives_naming_our_targets_and_refuses_typos() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,gatehouse=debug",
            "gatehouse=debug,gatehouse::access=info",
            "warn, gatehouse::auth::oidc=trace, hyper=info",
        ] {
            assert_eq!(check_log_level(ok), Ok(ok.replace(' ', "")), "{ok}");
        }
        for bad in [
            "verbose",
            "",
            " , ",
            "gatehouse=verbose",
            "info,gatehose=debug",
            "gatehouse=",
            "=debug",
            "gatehouse::=debug",
            "gatehouse[span]=debug",
            "info,\nINFO forged",
        ] {
            let err = check_log_level(bad).expect_err(bad);
            assert!(err.contains("expected a level"), "{bad}: {err}");
            assert!(!err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn a_request_id_from_a_proxy_is_taken_only_when_sane() {
        let id = RequestId::from_header(b"f3a9-42_x.Y:z").unwrap();
        assert_eq!(id.as_str(), "f3a9-42_x.Y:z");
        let longest = "a".repeat(MAX_REQUEST_ID);
        assert_eq!(
            RequestId::from_header(longest.as_bytes()).unwrap().as_str(),
            longest
        );
        let too_long = "a".repeat(MAX_REQUEST_ID + 1);
        let bad: [&[u8]; 7] = [
            b"",
            b"a b",
            b"a\nINFO forged",
            b"\x1b[31m",
            b"caf\xc3\xa9",
            b"a\x7f",
            too_long.as_bytes(),
        ];
        for v in bad {
            assert!(RequestId::from_header(v).is_none(), "{v:?}");
        }
        let long = "b".repeat(300);
        assert!(RequestId::from_header(long.as_bytes()).is_none());
    }

    #[test]
    fn generated_request_ids_are_distinct_hex_with_a_shared_prefix() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 28);
        assert_eq!(a.as_str()[..12], b.as_str()[..12]);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert!(RequestId::from_header(a.as_str().as_bytes()).is_some());
    }

    #[test]
    fn request_ids_from_many_threads_never_repeat() {
        // each thread crosses into a second block of numbers
        let per_thread = usize::try_from(ID_BLOCK).unwrap() + 10;
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|_| RequestId::generate().as_str().to_owned())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn the_current_request_id_is_the_one_its_handling_runs_with() {
        assert!(current_request_id().is_none());
        let id = RequestId::from_header(b"req-1").unwrap();
        let seen = futures_util::FutureExt::now_or_never(with_request_id(id, async {
            current_request_id().map(|i| i.as_str().to_owned())
        }));
        assert_eq!(seen, Some(Some("req-1".to_owned())));
    }

    /// What one event looks like through [`JsonLines`].
    pub(super) fn json_line(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || buf.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn json_records_carry_msg_and_flat_fields_with_control_characters_escaped() {
        let line = json_line(|| {
            tracing::warn!(
                target: "gatehouse::test",
                path = "/a\n{\"forged\":1}\u{1b}[31m",
                status = 403_u64,
                delta = -2_i64,
                ok = true,
                latency_ms = 0.077,
                debugged = ?"q\"\r",
                "it \"went\" wrong\n"
            );
        });
        assert_eq!(line.lines().count(), 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "it \"went\" wrong\n");
        assert!(v.get("message").is_none() && v.get("fields").is_none());
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], "gatehouse::test");
        assert_eq!(v["path"], "/a\n{\"forged\":1}\u{1b}[31m");
        assert_eq!(v["status"], 403);
        assert_eq!(v["delta"], -2);
        assert_eq!(v["ok"], true);
        assert_eq!(v["latency_ms"], 0.077);
        assert_eq!(v["debugged"], "\"q\\\"\\r\"");
        assert!(v["timestamp"].as_str().is_some_and(|t| t.len() > 19));
        assert!(
            !line.trim_end().contains(|c: char| c.is_control()),
            "{line}"
        );
    }

    #[test]
    fn dropped_lines_are_reported_once_each_and_only_when_there_are_new_ones() {
        let mut reported = 0;
        assert_eq!(newly_dropped(0, &mut reported), None);
        assert_eq!(newly_dropped(5, &mut reported), Some(5));
        assert_eq!(newly_dropped(5, &mut reported), None);
        assert_eq!(newly_dropped(12, &mut reported), Some(7));
        assert_eq!(reported, 12);
    }

    #[test]
    fn escape_log_escapes_every_control_character_and_borrows_plain_text() {
        assert!(matches!(escape_log("/plain/path?q=1"), Cow::Borrowed(_)));
        assert_eq!(escape_log("a\nb"), "a\\nb");
        assert_eq!(escape_log("a\r\nINFO forged"), "a\\r\\nINFO forged");
        assert_eq!(escape_log("\t"), "\\t");
        assert_eq!(escape_log("\u{1b}[31m"), "\\u{1b}[31m");
        assert_eq!(escape_log("\u{7f}\u{85}"), "\\u{7f}\\u{85}");
        assert_eq!(escape_log("a\\nb"), "a\\\\nb");
        assert_eq!(escape_log("ünïcode"), "ünïcode");
        for hostile in ["x\ny", "\u{0}", "\u{2028}\r", "\u{9b}"] {
            assert!(
                !escape_log(hostile).chars().any(char::is_control),
                "{hostile:?}"
            );
        }
    }
}
