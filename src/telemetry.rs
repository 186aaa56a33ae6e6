//! Logging setup: text or JSON lines through `tracing`.
//!
//! Secrets never reach a log line: they are [`Secret`](crate::config::Secret)s,
//! whose `Debug`/`Display` print `[redacted]`, and no handler logs a cookie,
//! token or `Authorization` value.
//!
//! Lines are written by a dedicated thread through a bounded queue: a request
//! formats its access line and moves on, it never waits on a slow terminal,
//! pipe or disk. When the queue is full, lines are dropped rather than
//! requests blocked, and the number dropped is reported in a warning.

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines the writer thread may have queued before new ones are dropped:
/// a few seconds of a busy proxy's access log, a few MiB at most.
const QUEUE_LINES: usize = 16_384;
/// How often dropped lines are counted and reported.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Keeps the log writer thread alive; dropping it flushes the queued lines.
/// Hold it until the process ends.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Installs the global subscriber writing to stderr. Calling it twice is
/// harmless (the second subscriber is not installed).
pub fn init(format: LogFormat, filter: &str) -> LogGuard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_e| EnvFilter::new("info"));
    // colour codes only for a person at a terminal, never into a file or pipe
    let ansi = std::io::stderr().is_terminal();
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(QUEUE_LINES)
        .lossy(true)
        .thread_name("gatehouse-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_ok() {
        spawn_drop_reporter(dropped);
    }
    LogGuard { _worker: worker }
}

/// Reports, at most every [`DROP_REPORT_EVERY`], how many lines the full
/// queue dropped since the last report. A plain thread: it must work before
/// and after the runtime, and costs one wake-up per interval.
fn spawn_drop_reporter(counter: ErrorCounter) {
    let spawned = std::thread::Builder::new()
        .name("gatehouse-log-drops".to_owned())
        .spawn(move || {
            let mut reported = 0;
            loop {
                std::thread::sleep(DROP_REPORT_EVERY);
                if let Some(n) = newly_dropped(counter.dropped_lines(), &mut reported) {
                    tracing::warn!(dropped = n, "log queue full: lines dropped");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the log drop reporter");
    }
}

/// Lines dropped since the last report, if any; updates `reported`.
fn newly_dropped(total: usize, reported: &mut usize) -> Option<usize> {
    let n = total.saturating_sub(*reported);
    *reported = total;
    (n > 0).then_some(n)
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
