//! Property tests for the cookie codec and the session cookie names and
//! chunks (issue 9): bounded case counts, so they take seconds in debug.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "gatehouse";
const BASE: &str = "__Host-gatehouse";

fn codec() -> CookieCodec {
    CookieCodec::new(&[Secret::new(SECRET)], ISSUER, CLIENT).unwrap()
}

fn cfg() -> CookieConfig {
    CookieConfig {
        name: BASE.to_owned(),
        domain: None,
        secure: true,
        expire: std::time::Duration::from_secs(3600),
        refresh: None,
        secrets: Vec::new(),
    }
}

/// The `Cookie` header a browser would send back for `set`.
fn as_pairs(set: &[HeaderValue]) -> Vec<(String, String)> {
    set.iter()
        .filter_map(|v| {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (n, v) = pair.split_once('=').unwrap();
            (!v.is_empty()).then(|| (n.to_owned(), v.to_owned()))
        })
        .collect()
}

fn join_owned(pairs: &[(String, String)]) -> Option<String> {
    join_session_value(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())), BASE)
        .map(std::borrow::Cow::into_owned)
}

/// A cookie value as the codec makes them: URL-safe base64 characters.
fn value(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_-]{{1,{max}}}")).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sealed_values_open_to_what_was_sealed(
        plain in vec(any::<u8>(), 0..2048),
        purpose in "[ -~]{0,40}",
    ) {
        let c = codec();
        let sealed = c.seal(&purpose, &plain).unwrap();
        prop_assert_eq!(c.open(&purpose, &sealed), Some(plain));
    }

    #[test]
    fn any_flipped_bit_or_truncation_fails_to_open(
        plain in vec(any::<u8>(), 0..512),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let c = codec();
        let sealed = c.seal(BASE, &plain).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let i = at.index(raw.len());
        raw[i] ^= 1 << bit;
        prop_assert_eq!(c.open(BASE, &URL_SAFE_NO_PAD.encode(&raw)), None);
        let short = &sealed[..cut.index(sealed.len())];
        prop_assert_eq!(c.open(BASE, short), None);
    }

    #[test]
    fn a_value_opens_only_for_its_own_name_issuer_and_client(
        plain in vec(any::<u8>(), 0..256),
        other in "[ -~]{0,24}",
    ) {
        let c = codec();
        let sealed = c.seal(BASE, &plain).unwrap();
        if other != BASE {
            prop_assert_eq!(c.open(&other, &sealed), None);
        }
        if other != ISSUER {
            let elsewhere = CookieCodec::new(&[Secret::new(SECRET)], &other, CLIENT).unwrap();
            prop_assert_eq!(elsewhere.open(BASE, &sealed), None);
        }
        if other != CLIENT {
            let elsewhere = CookieCodec::new(&[Secret::new(SECRET)], ISSUER, &other).unwrap();
            prop_assert_eq!(elsewhere.open(BASE, &sealed), None);
        }
        // the issuer/client split is bound too, not just their concatenation
        let shifted = CookieCodec::new(&[Secret::new(SECRET)], "https://idp.example.co", "mgatehouse").unwrap();
        prop_assert_eq!(shifted.open(BASE, &sealed), None);
    }

    #[test]
    fn opening_arbitrary_strings_never_panics_nor_succeeds(s in any::<String>(), b in "[A-Za-z0-9_-]{0,200}") {
        let c = codec();
        prop_assert_eq!(c.open(BASE, &s), None);
        prop_assert_eq!(c.open(BASE, &b), None);
    }

    #[test]
    fn session_part_never_panics_and_accepts_only_canonical_names(name in "\\PC{0,30}", n in 0usize..100) {
        match session_part(&name, BASE) {
            None => {}
            Some(SessionPart::Whole) => prop_assert_eq!(name.as_str(), BASE),
            Some(SessionPart::Chunk(i)) => {
                prop_assert!(i < MAX_CHUNKS);
                prop_assert_eq!(name, format!("{BASE}_{i}"));
            }
        }
        let chunk = format!("{BASE}_{n}");
        let want = (n < MAX_CHUNKS).then_some(SessionPart::Chunk(n));
        prop_assert_eq!(session_part(&chunk, BASE), want);
        // any other spelling of the same number is not a chunk name
        for other in [format!("{BASE}_0{n}"), format!("{BASE}_+{n}"), format!("{BASE}_{n} ")] {
            prop_assert_eq!(session_part(&other, BASE), None);
        }
    }

    #[test]
    fn what_is_split_into_cookies_is_joined_back_exactly(v in value(CHUNK_LEN * MAX_CHUNKS)) {
        let set = session_cookies(&cfg(), &v, now_secs() + 60, &HeaderMap::new()).unwrap();
        let pairs = as_pairs(&set);
        prop_assert_eq!(pairs.len(), v.len().div_ceil(CHUNK_LEN));
        prop_assert_eq!(join_owned(&pairs), Some(v.clone()));
        // and in any order
        let mut reversed = pairs;
        reversed.reverse();
        prop_assert_eq!(join_owned(&reversed), Some(v));
    }

    #[test]
    fn any_duplicate_or_mix_is_refused(
        v in value(CHUNK_LEN * 3),
        dup in any::<prop::sample::Index>(),
        planted in value(64),
        whole_too in any::<bool>(),
    ) {
        let set = session_cookies(&cfg(), &v, now_secs() + 60, &HeaderMap::new()).unwrap();
        let mut pairs = as_pairs(&set);
        let (name, _) = pairs[dup.index(pairs.len())].clone();
        pairs.insert(dup.index(pairs.len() + 1), (name, planted.clone()));
        prop_assert_eq!(join_owned(&pairs), None);
        // a whole cookie beside chunks
        let mut chunks = as_pairs(&set);
        if chunks.len() > 1 || whole_too {
            let name = if chunks.len() > 1 { BASE.to_owned() } else { format!("{BASE}_0") };
            chunks.push((name, planted));
            prop_assert_eq!(join_owned(&chunks), None);
        }
    }

    #[test]
    fn joining_arbitrary_pairs_never_panics_and_keeps_the_invariant(
        pairs in vec((prop_oneof![
            Just(BASE.to_owned()),
            (0usize..10).prop_map(|i| format!("{BASE}_{i}")),
            "[_a-zA-Z0-9+-]{0,4}".prop_map(|s| format!("{BASE}{s}")),
            "\\PC{0,8}",
        ], "[A-Z]{0,3}"), 0..10),
    ) {
        let Some(joined) = join_owned(&pairs) else { return Ok(()); };
        let ours: Vec<(SessionPart, &str)> = pairs
            .iter()
            .filter_map(|(n, v)| Some((session_part(n, BASE)?, v.as_str())))
            .collect();
        if let [(SessionPart::Whole, v)] = ours.as_slice() {
            prop_assert_eq!(&joined, v);
        } else {
            // chunks only, each of 0..k exactly once, joined in order
            let mut sorted = ours.clone();
            sorted.sort_by_key(|(p, _)| match p { SessionPart::Chunk(i) => *i, SessionPart::Whole => usize::MAX });
            for (k, (p, v)) in sorted.iter().enumerate() {
                prop_assert_eq!(*p, SessionPart::Chunk(k));
                prop_assert!(!v.is_empty());
            }
            let want: String = sorted.iter().map(|(_, v)| *v).collect();
            prop_assert_eq!(joined, want);
        }
    }
}

/// A piece of a `Cookie` header: one of our names or near misses, an `=`
/// or not, any visible ASCII or tab value.
fn cookie_piece() -> impl Strategy<Value = String> {
    let names = prop_oneof![
        Just(BASE.to_owned()),
        Just(format!("{BASE}_0")),
        Just(format!("{BASE}_1")),
        Just(format!("{BASE}_01")),
        Just(format!("{BASE}_csrf_ab")),
        Just(format!(" \t{BASE} ")),
        Just(format!("{BASE}x")),
        "[ -~]{0,6}",
    ];
    (names, any::<bool>(), "[\t -:<-~]{0,12}")
        .prop_map(|(n, eq, v)| format!("{n}{}{v}", if eq { "=" } else { "" }))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Own cookies are dropped by name alone, their values unread: what is
    /// kept must be exactly what parsing every pair and dropping ours kept.
    #[test]
    fn stripping_by_name_keeps_what_a_full_parse_keeps(pieces in vec(cookie_piece(), 0..8)) {
        let value = pieces.join(";");
        let Ok(header) = HeaderValue::from_str(&value) else {
            return Ok(());
        };
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, header);
        let want = cookie_pairs(&h)
            .filter(|p| !is_own_cookie(p.name, BASE))
            .map(|p| p.pair)
            .collect::<Vec<&str>>()
            .join("; ");
        let mut stripped = h.clone();
        crate::auth::strip_own_cookies(&mut stripped, BASE);
        let got = stripped
            .get(http::header::COOKIE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        prop_assert_eq!(got, want);
    }
}

/// The pair parser as it was before it became one pass (three: the whole
/// pair's bytes, `from_utf8`, the value's tabs): the one-pass parser must
/// give the same answer for every input.
fn reference_pair(raw: &[u8]) -> Option<CookiePair<'_>> {
    let visible_ascii = !raw
        .iter()
        .any(|&b| b != b'\t' && !(0x20..=0x7e).contains(&b));
    if !visible_ascii {
        return None;
    }
    let pair = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    let eq = pair.bytes().position(|b| b == b'=')?;
    let name = pair.get(..eq)?.trim_end_matches([' ', '\t']);
    let value = pair.get(eq + 1..)?.trim_start_matches([' ', '\t']);
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) || value.contains('\t') {
        return None;
    }
    Some(CookiePair { name, value, pair })
}

/// Bytes a cookie pair is made of, the delimiters and the hostile ones
/// (controls, DEL, non-ASCII, quotes) weighted up.
fn pair_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"ab_-.~0=\" \t".to_vec()),
        1 => any::<u8>(),
        1 => prop::sample::select(vec![0_u8, b'\r', b'\n', 0x7f, 0x80, 0xff, b';', b',']),
    ];
    vec(byte, 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_one_pass_pair_parser_agrees_with_the_reference(raw in pair_bytes()) {
        prop_assert_eq!(parse_cookie_pair(&raw), reference_pair(&raw));
    }
}

/// A `Cookie` header of our names and near misses, with values that are
/// valid, quoted, empty or hostile (non-ASCII, tabs, DEL).
fn session_header() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just(BASE.to_owned()),
        Just(format!(" {BASE}")),
        Just(format!("{BASE}_0")),
        Just(format!("{BASE}_1")),
        Just(format!("{BASE}_2")),
        Just("other".to_owned()),
    ];
    let value_byte = prop_oneof![
        6 => prop::sample::select(b"AZaz09_-".to_vec()),
        1 => prop::sample::select(vec![b'"', b' ', b'\t', 0x7f, 0x80, 0xc3, 0xa9, 0xff]),
    ];
    vec((name, vec(value_byte, 0..6)), 0..5).prop_map(|pairs| {
        let mut out = Vec::new();
        for (i, (n, v)) in pairs.into_iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(&v);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The unchecked session value gives what the checked one gives, once
    /// checked: a whole cookie with a bad value beside good ones is
    /// skipped by both, never an answer of its own.
    #[test]
    fn the_unchecked_session_value_agrees_with_the_checked_one(raw in session_header()) {
        let Ok(header) = HeaderValue::from_bytes(&raw) else {
            return Ok(());
        };
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, header);
        let want = session_cookie_value(&h, BASE).map(std::borrow::Cow::into_owned);
        let got = session_cookie_unchecked(&h, BASE);
        prop_assert_eq!(got.as_ref().and_then(|v| v.checked().map(str::to_owned)), want);
    }
}

#[test]
fn every_byte_is_a_name_byte_exactly_when_the_reference_says_so() {
    for b in 0..=u8::MAX {
        let raw = [b'a', b, b'=', b'1'];
        assert_eq!(
            parse_cookie_pair(&raw),
            reference_pair(&raw),
            "byte {b:#04x}"
        );
    }
}
