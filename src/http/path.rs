//! Request paths: the one place a path is checked and normalised.
//!
//! Owns: deciding whether a request path means one thing to every server
//! that may read it (gatehouse, a front proxy, the application), and its
//! normal form. A path that different servers could read differently is
//! refused, never guessed at: a dot segment (`.`, `..`, raw or
//! `%2e`-encoded in any case), an encoded `/` or `\` (`%2f`, `%5c`), a raw
//! `\`, a NUL or other control character (raw or encoded), a `;` parameter,
//! raw or `%3b`, that hides a segment (`/..;/x`, `/.%3b/x`, `/;x/`), a
//! double-encoded dot, slash or backslash (`%252e`), and broken
//! percent-encoding.
//!
//! What is accepted is normalised without changing its meaning: escapes of
//! unreserved characters are decoded (`%41` is `A`), the other escapes get
//! upper-case hex, and repeated slashes are collapsed. The normal form is
//! what route matching compares; [`normalize`] of a normal form is itself.
//! Must not: look at the query: it is not part of the path.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// It does not start with `/` (`*`, empty, or a relative path).
    NotAbsolute,
    /// A `.` or `..` segment, raw or percent-encoded.
    DotSegment,
    /// `%2f`, `%5c` or a raw `\`: a separator some servers decode.
    EncodedSeparator,
    /// A control character, space or non-ASCII byte, raw or encoded NUL or
    /// control character.
    ControlCharacter,
    /// A `;` parameter that hides a segment (`..;`, `.;`, or `;` first).
    HiddenSegment,
    /// A `%` not followed by two hex digits, or a double-encoded `.`,
    /// `/` or `\`.
    BadEncoding,
}

impl PathError {
    /// A short reason, for a 400 page and the log.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotAbsolute => "the request path must start with /",
            Self::DotSegment => "the request path has a . or .. segment",
            Self::EncodedSeparator => "the request path has an encoded / or a \\",
            Self::ControlCharacter => "the request path has a control character",
            Self::HiddenSegment => "the request path has a ; parameter hiding a segment",
            Self::BadEncoding => "the request path has bad or double percent-encoding",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks `path` (no query) and returns its normal form, borrowed when it
/// already is one. See the module documentation for what is refused.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // the common case, on every request: nothing to decode or collapse, so
    // the path is its own normal form and only its segments need a look
    // (no copy made)
    if is_plain(bytes) {
        if has_dot_segment(bytes) {
            return Err(PathError::DotSegment);
        }
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEncoding);
                };
                let d = h * 16 + l;
                match d {
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    // checked on the normal form below, where `%25%32%65`
                    // has become `%252e` too
                    b'%' => out.push_str("%25"),
                    // never valid UTF-8: only an overlong encoding of ASCII
                    // (`%C0%AE` is a `.` to a lax decoder)
                    0xc0 | 0xc1 => return Err(PathError::BadEncoding),
                    d if is_unreserved(d) => out.push(char::from(d)),
                    d => {
                        out.push('%');
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(d >> 4)]));
                        out.push(char::from(b"0123456789ABCDEF"[usize::from(d & 15)]));
                    }
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::EncodedSeparator),
            0..=0x20 | 0x7f..=0xff => return Err(PathError::ControlCharacter),
            b'/' if out.ends_with('/') => {} // repeated slashes collapse
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    // `%25` followed by the escape of a dot, separator or control character
    // becomes one after a second decoding (by a framework behind the app)
    let ob = out.as_bytes();
    for (at, _) in out.match_indices("%25") {
        if let (Some(h), Some(l)) = (
            ob.get(at + 3).copied().and_then(hex),
            ob.get(at + 4).copied().and_then(hex),
        ) && matches!(h * 16 + l, b'.' | b'/' | b'\\' | b'%' | 0..=0x1f | 0x7f)
        {
            return Err(PathError::BadEncoding);
        }
    }
    check_segments(&out)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// The segment rules of [`normalize`], on a path already in normal form.
fn check_segments(out: &str) -> Result<(), PathError> {
    for segment in out.split('/') {
        if segment == "." || segment == ".." {
            return Err(PathError::DotSegment);
        }
        // Windows servers drop trailing dots and spaces: `..%20` and `...`
        // would be read as `..`
        if only_dots_and_spaces(segment) {
            return Err(PathError::DotSegment);
        }
        // `;` starts parameters (Tomcat, Jetty strip them); a server that
        // decodes first reads `%3B` the same way
        let name = segment
            .find(';')
            .into_iter()
            .chain(segment.find("%3B"))
            .min()
            .map_or(segment, |i| &segment[..i]);
        if name.len() < segment.len() && matches!(name, "" | "." | "..") {
            return Err(PathError::HiddenSegment);
        }
    }
    Ok(())
}

/// Only unreserved characters and single `/`s: nothing to decode, collapse
/// or strip. Byte loops: this runs three times a request, and `str`'s
/// substring search set up a searcher per call.
fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| is_unreserved(b) || b == b'/') && !bytes.windows(2).any(|w| w == b"//")
}

/// [`check_segments`] for an [`is_plain`] path, where no `%` or `;` can
/// occur: a segment is refused only for being dots alone (`.`, `..`, and
/// `...`, which Windows servers read as `..`).
fn has_dot_segment(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'/')
        .any(|s| !s.is_empty() && s.iter().all(|&b| b == b'.'))
}

/// A segment of dots and (`%20`-encoded) spaces with at least one dot.
fn only_dots_and_spaces(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dot = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b".") {
            dot = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"%20") {
            rest = r;
        } else {
            return false;
        }
    }
    dot
}

/// Checks `path` without keeping the normal form.
pub fn check(path: &str) -> Result<(), PathError> {
    normalize(path).map(|_| ())
}

#[cfg(test)]
mod tests;
