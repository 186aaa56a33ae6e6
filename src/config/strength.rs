//! Is a secret good enough to start with? Cookie secrets must be random key
//! material that nobody else has; client secrets must not be a placeholder.
//!
//! Owns: the list of published example values and the low-entropy rules
//! (issue 9, item 1). Must not: read files or the environment.
//!
//! The cookie-secret rules, on the key bytes (after base64 decoding):
//! - not a value published in gatehouse's examples, README, deploy files or
//!   tests' docs, nor a well-known one (compared on the decoded bytes, so
//!   re-encoding does not help);
//! - not one byte repeated; not mostly a run or sequence: over half of the
//!   neighbouring pairs one same step apart (`0x00 0x01 0x02 ...`, `abcd...`,
//!   `aaaa...b`); not a short pattern repeated (a period of at most half the
//!   length);
//! - the same run, sequence and pattern rules on the text as given (a
//!   sequential text such as `abcd...` can be valid base64 of varied bytes);
//! - at least half as many distinct byte values as the key has bytes (16 of
//!   32, 12 of 24, 8 of 16). 32 random bytes have about 30 distinct values;
//!   the chance that `openssl rand -base64 32` has fewer than 16 is about
//!   10^-15 (15^32 / (15! 256^17)), and the other rules are rarer still, so
//!   a real random secret passes.

use super::secret::Secret;

/// Cookie secrets that have been published: by gatehouse (examples, bench,
/// README, unit-test fixtures) or widely copied from other projects' docs.
const KNOWN_COOKIE_SECRETS: &[&str] = &[
    // examples/*.toml until issue 9
    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    // unit-test fixtures and docs (raw form of the one above)
    "0123456789abcdef0123456789abcdef",
    // examples/bench/main.rs until issue 9
    "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMzI=",
    // oauth2-proxy's local-environment compose file
    "OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w=",
];

/// Words that mark a value as a placeholder to be replaced.
const PLACEHOLDER_MARKS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "replace_me",
    "your-client-secret",
    "your_client_secret",
    "client-secret-here",
    "<client",
    "xxxxxxxx",
];

/// Client secrets that are placeholders when they are the whole value.
const PLACEHOLDER_CLIENT_SECRETS: &[&str] = &["secret", "client_secret", "client-secret", "todo"];

/// How to make a cookie secret, for error messages.
pub(super) const MAKE_ONE: &str = "make one with `openssl rand -base64 32`";

/// Why `secret` (as given) with key material `bytes` must not be used as a
/// cookie secret, or `None` when it may.
pub(super) fn weak_cookie_secret(secret: &Secret, bytes: &[u8]) -> Option<String> {
    let given = secret.expose().trim();
    let known = KNOWN_COOKIE_SECRETS.iter().any(|k| {
        *k == given || super::cookie_secret_bytes(&Secret::new(*k)).is_ok_and(|b| b == bytes)
    });
    if known {
        return Some(format!(
            "is a published example value, known to anyone: {MAKE_ONE}"
        ));
    }
    // the text too: `abcd...` is valid base64 whose bytes look varied
    low_entropy(bytes)
        .or_else(|| structure(given.as_bytes()).map(|why| format!("as text, {why}")))
        .map(|why| format!("{why}: not random key material; {MAKE_ONE}"))
}

/// The low-entropy rule `bytes` breaks, if any.
pub(super) fn low_entropy(bytes: &[u8]) -> Option<String> {
    structure(bytes).or_else(|| few_distinct(bytes))
}

/// A run, a sequence or a repeated pattern in `bytes`.
fn structure(bytes: &[u8]) -> Option<String> {
    let n = bytes.len();
    let first = *bytes.first()?;
    if bytes.iter().all(|b| *b == first) {
        return Some(format!("is one byte repeated {n} times"));
    }
    // the most common difference between neighbours: a run (step 0) or a
    // counting sequence (step 1, `abc...`, `0123...`) when over half have it
    let mut steps = [0_usize; 256];
    for w in bytes.windows(2) {
        steps[usize::from(w[1].wrapping_sub(w[0]))] += 1;
    }
    let pairs = n.saturating_sub(1);
    let most = steps.iter().copied().max().unwrap_or(0);
    if most * 2 > pairs {
        return Some(format!(
            "is mostly a run or sequence ({most} of {pairs} neighbouring bytes one same step apart)"
        ));
    }
    if let Some(period) = (1..=n / 2).find(|p| bytes.iter().zip(&bytes[*p..]).all(|(a, b)| a == b))
    {
        return Some(format!("repeats a pattern of {period} bytes"));
    }
    None
}

/// Fewer distinct byte values than half the length.
fn few_distinct(bytes: &[u8]) -> Option<String> {
    let n = bytes.len();
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    let needed = n.div_ceil(2);
    if distinct < needed {
        return Some(format!(
            "has only {distinct} distinct byte values of {n} bytes (at least {needed} needed)"
        ));
    }
    None
}

/// True when `value` reads as a placeholder (`CHANGE-ME: ...`, `replace-me`).
pub(super) fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    PLACEHOLDER_MARKS.iter().any(|m| lower.contains(m))
}

/// Why `secret` must not be used as the client secret, or `None`.
pub(super) fn placeholder_client_secret(secret: &Secret) -> Option<String> {
    let lower = secret.expose().trim().to_ascii_lowercase();
    (is_placeholder(&lower) || PLACEHOLDER_CLIENT_SECRETS.contains(&lower.as_str())).then(|| {
        "is a placeholder, not the secret your provider issued for this client: set it \
         (better with client_secret_file or GATEHOUSE_CLIENT_SECRET)"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ring::rand::{SecureRandom as _, SystemRandom};

    use super::*;
    use crate::config::cookie_secret_bytes;

    fn verdict(given: &str) -> Option<String> {
        let s = Secret::new(given);
        let bytes = cookie_secret_bytes(&s).unwrap();
        weak_cookie_secret(&s, &bytes)
    }

    #[test]
    fn every_published_cookie_secret_is_refused_in_any_encoding() {
        for known in KNOWN_COOKIE_SECRETS {
            let why = verdict(known).unwrap_or_default();
            assert!(why.contains("published example"), "{known}: {why}");
            // the same key bytes written another way
            let bytes = cookie_secret_bytes(&Secret::new(*known)).unwrap();
            let reencoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            assert!(
                verdict(&reencoded).is_some_and(|w| w.contains("published example")),
                "{known} re-encoded as {reencoded}"
            );
        }
    }

    #[test]
    fn low_entropy_cookie_secrets_are_refused_with_the_rule_they_break() {
        let cases: &[(&[u8], &str)] = &[
            (&[0_u8; 32], "one byte repeated"),
            (&[b'a'; 16], "one byte repeated"),
            (&[0xff; 24], "one byte repeated"),
            (b"abcdefghijklmnopqrstuvwxyz012345", "sequence"),
            (b"abcdefghijklmnopqrstuvwxyz{|}~\x7f\x80", "sequence"),
            (b"ponmlkjihgfedcba", "sequence"),
            (b"0123456789abcdef0123456789abcdef", "sequence"),
            (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "run or sequence"),
            (b"k3Xq9Zk3Xq9Zk3Xq9Zk3Xq9Zk3Xq9Zk3", "pattern of 6 bytes"),
            (b"bench-bench-bench-bench-bench-32", "distinct"),
            (b"other-other-other-other-other-32", "distinct"),
        ];
        for (bytes, rule) in cases {
            let why = low_entropy(bytes).unwrap_or_default();
            assert!(
                why.contains(rule),
                "{:?}: {why:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // steps count modulo 256
        let wrapping: Vec<u8> = (0..32_u8)
            .map(|i| i.wrapping_mul(9).wrapping_add(250))
            .collect();
        assert!(low_entropy(&wrapping).is_some_and(|w| w.contains("sequence")));
    }

    #[test]
    fn the_distinct_byte_threshold_is_half_the_key_length() {
        // 16 distinct values in 32 bytes pass, 15 do not (no run, no pattern)
        let v: [u8; 16] = [
            3, 250, 17, 88, 140, 61, 199, 42, 7, 230, 111, 75, 160, 29, 214, 96,
        ];
        let sixteen: Vec<u8> = v.iter().chain(v.iter().rev()).copied().collect();
        assert_eq!(low_entropy(&sixteen), None);
        let fifteen: Vec<u8> = sixteen
            .iter()
            .map(|b| if *b == 96 { 214 } else { *b })
            .collect();
        let why = low_entropy(&fifteen).unwrap_or_default();
        assert!(why.contains("only 15 distinct"), "{why}");
        assert!(why.contains("at least 16"), "{why}");
    }

    #[test]
    fn random_cookie_secrets_always_pass() {
        // what `openssl rand -base64 N` makes, for each accepted key length
        let rng = SystemRandom::new();
        for len in [32_usize, 24, 16] {
            for _ in 0..3000 {
                let mut key = vec![0_u8; len];
                rng.fill(&mut key).unwrap();
                let given = STANDARD.encode(&key);
                assert_eq!(verdict(&given), None, "{given}");
            }
        }
    }

    #[test]
    fn the_examples_placeholder_is_not_a_cookie_secret_and_says_so() {
        let s = Secret::new("CHANGE-ME: openssl rand -base64 32");
        assert!(cookie_secret_bytes(&s).is_err());
        assert!(is_placeholder(s.expose()));
    }

    #[test]
    fn placeholder_client_secrets_are_refused_and_real_ones_pass() {
        for p in [
            "replace-me",
            "CHANGE-ME: the client secret from your provider",
            "changeme",
            "Secret",
            " your-client-secret ",
        ] {
            assert!(placeholder_client_secret(&Secret::new(p)).is_some(), "{p}");
        }
        for real in ["s3cret", "Fh3kP9xQ2mZ7", "secret-rotated-2024-q3-a8f1"] {
            assert_eq!(
                placeholder_client_secret(&Secret::new(real)),
                None,
                "{real}"
            );
        }
    }
}
