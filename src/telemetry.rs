//! Logging setup: text or JSON lines through `tracing`.
//!
//! Secrets never reach a log line: they are [`Secret`](crate::config::Secret)s,
//! whose `Debug`/`Display` print `[redacted]`, and no handler logs a cookie,
//! token or `Authorization` value.

use std::borrow::Cow;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Calling it twice is harmless.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_e| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
