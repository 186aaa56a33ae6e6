use proptest::prelude::*;

use super::*;

#[test]
fn plain_paths_are_their_own_normal_form() {
    for p in [
        "/",
        "/a/b/c",
        "/a/b/",
        "/api/v1/users;jsessionid=1",
        "/a.b/c..d/.x/x.",
        "/~user/x-y_z",
        "/a%20b",
        "/%C3%A9t%C3%A9",
        "/a%3Bb",
        "/x:y@z!$&'()*+,=",
        "/~/-/_/..a/a../",
        "/x.../...x/.x.",
    ] {
        assert_eq!(normalize(p), Ok(Cow::Borrowed(p)), "{p}");
    }
}

#[test]
fn paths_are_normalised_without_changing_their_meaning() {
    let table = [
        ("/%41%62c", "/Abc"),
        ("/%7euser", "/~user"),
        ("/a%2db%5f", "/a-b_"),
        ("/a%3bb", "/a%3Bb"),
        ("/%c3%a9", "/%C3%A9"),
        ("//a///b//", "/a/b/"),
        ("/a%2e%2e%2eb", "/a...b"),
        ("/%2e%2e%2ex", "/...x"),
        ("/%25", "/%25"),
        ("/%2541", "/%2541"),
    ];
    for (raw, normal) in table {
        assert_eq!(normalize(raw).as_deref(), Ok(normal), "{raw}");
        assert_eq!(normalize(normal).as_deref(), Ok(normal), "{normal}");
    }
}

#[test]
fn paths_that_servers_could_read_differently_are_refused() {
    use PathError::*;
    let table = [
        ("", NotAbsolute),
        ("*", NotAbsolute),
        ("a/b", NotAbsolute),
        ("/..", DotSegment),
        ("/.", DotSegment),
        ("/a/../b", DotSegment),
        ("/a/./b", DotSegment),
        ("/a/..", DotSegment),
        ("/a/%2e%2e/b", DotSegment),
        ("/a/%2E%2e/b", DotSegment),
        ("/a/.%2E/b", DotSegment),
        ("/a/%2e/b", DotSegment),
        ("/a//..//b", DotSegment),
        ("/a%2fb", EncodedSeparator),
        ("/a%2Fb", EncodedSeparator),
        ("/a%5cb", EncodedSeparator),
        ("/a%5C..%5Cb", EncodedSeparator),
        ("/a\\b", EncodedSeparator),
        ("/a%00b", ControlCharacter),
        ("/a%0d%0ab", ControlCharacter),
        ("/a%7f", ControlCharacter),
        ("/a b", ControlCharacter),
        ("/a\tb", ControlCharacter),
        ("/\u{e9}", ControlCharacter),
        ("/..;/admin", HiddenSegment),
        ("/.;x/admin", HiddenSegment),
        ("/;x/admin", HiddenSegment),
        ("/a/%2e%2e;x/b", HiddenSegment),
        ("/.%3b/admin", HiddenSegment),
        ("/..%3Bx/admin", HiddenSegment),
        ("/%3b/admin", HiddenSegment),
        ("/%", BadEncoding),
        ("/%4", BadEncoding),
        ("/%zz", BadEncoding),
        ("/%%41", BadEncoding),
        ("/%252e%252e/x", BadEncoding),
        ("/a%252fb", BadEncoding),
        ("/a%255cb", BadEncoding),
        ("/a%2500", BadEncoding),
        // double encoding spelled with escapes of its digits
        ("/%25%32%65%25%32%65/admin", BadEncoding),
        ("/%252%65%252%65/x", BadEncoding),
        ("/%25%32%66etc", BadEncoding),
        ("/a%25%35%63b", BadEncoding),
        ("/%25%30%30", BadEncoding),
        ("/%25252e%25252e/x", BadEncoding),
        // overlong UTF-8 for `.`
        ("/%C0%AE%C0%AE/x", BadEncoding),
        ("/%c1%9c", BadEncoding),
        // Windows drops trailing dots and spaces
        ("/..%20/x", DotSegment),
        ("/...", DotSegment),
        // plain paths (nothing to decode) take a shorter check: the same
        // dot segments refused there
        ("/a/.../b", DotSegment),
        ("/a/../", DotSegment),
        ("/..../x", DotSegment),
        ("/a/.", DotSegment),
        ("/./", DotSegment),
        ("/a/.%20./b", DotSegment),
        ("/%2e%2e%2e", DotSegment),
    ];
    for (raw, why) in table {
        assert_eq!(normalize(raw), Err(why), "{raw:?}");
        assert_eq!(check(raw), Err(why), "{raw:?}");
        assert!(!why.message().is_empty());
    }
}

/// Path-ish text: the characters that matter for normalisation, escapes of
/// them in both cases, and some plain ones.
fn pathish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("%".to_owned()),
        Just("a".to_owned()),
        Just("~".to_owned()),
        Just("%25".to_owned()),
        Just("%3".to_owned()),
        Just("%6".to_owned()),
        Just("2".to_owned()),
        Just("e".to_owned()),
        Just("%20".to_owned()),
        (0u8..=255).prop_map(|b| format!("%{b:02x}")),
        (0u8..=255).prop_map(|b| format!("%{b:02X}")),
        (0u8..=127).prop_map(|b| char::from(b).to_string()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

/// Paths of unreserved characters and `/`, dense in dots and slashes.
fn plain_pathish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/"),
        Just("."),
        Just(".."),
        Just("a"),
        Just("~"),
        Just("-"),
        Just("_"),
        Just("9"),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
}

/// What the path means after one percent-decoding, the way most
/// applications read it.
fn decoded(path: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(path).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn normalising_any_path_never_panics_and_an_accepted_path_is_safe(raw in pathish()) {
        if let Ok(normal) = normalize(&raw) {
            // idempotent
            let again = normalize(&normal);
            prop_assert_eq!(again.as_deref(), Ok(&*normal));
            // no dot segment, no encoded or raw separator, no control
            // character, once decoded as an application would
            let d = decoded(&normal);
            prop_assert!(!d.contains(&b'\\'));
            prop_assert!(!d.iter().any(|&b| b < 0x20 || b == 0x7f));
            let text = String::from_utf8_lossy(&d).into_owned();
            prop_assert_eq!(text.matches('/').count(), normal.matches('/').count());
            for seg in text.split('/') {
                let name = seg.split(';').next().unwrap_or(seg);
                prop_assert!(name != "." && name != "..", "{:?} -> {:?}", raw, normal);
            }
            prop_assert!(!normal.contains("//"));
            // and still none after a second decoding (a framework behind
            // the application decoding again)
            let dd = decoded(&text);
            prop_assert!(!dd.contains(&b'\\'), "{:?} -> {:?}", raw, normal);
            prop_assert!(!dd.iter().any(|&b| b < 0x20 || b == 0x7f));
            let text2 = String::from_utf8_lossy(&dd).into_owned();
            prop_assert_eq!(text2.matches('/').count(), normal.matches('/').count());
            for seg in text2.split('/') {
                prop_assert!(seg != "." && seg != "..", "{:?} -> {:?}", raw, normal);
            }
            // the same meaning: decoding both gives the same bytes, up to
            // collapsed slashes
            let mut raw_d = decoded(&raw);
            raw_d.dedup_by(|a, b| *a == b'/' && *b == b'/');
            prop_assert_eq!(raw_d, d);
        }
    }

    #[test]
    fn the_plain_path_check_is_the_full_one_on_plain_paths(raw in plain_pathish()) {
        if super::is_plain(raw.as_bytes()) {
            prop_assert_eq!(
                super::has_dot_segment(raw.as_bytes()),
                super::check_segments(&raw).is_err(),
                "{:?}", raw
            );
        }
    }

    #[test]
    fn a_plain_path_is_judged_as_the_full_check_judges_it(raw in pathish()) {
        if super::is_plain(raw.as_bytes()) {
            prop_assert_eq!(
                normalize(&raw).map(|_| ()),
                super::check_segments(&raw),
                "{:?}", raw
            );
        }
    }

    #[test]
    fn normalising_arbitrary_text_never_panics(raw in "\\PC{0,40}") {
        let _ = normalize(&raw);
        let _ = normalize(&format!("/{raw}"));
    }
}
