use super::*;

#[test]
fn identity_headers_match_any_case_and_underscores() {
    for n in [
        "X-Forwarded-User",
        "x_forwarded_user",
        "X_FORWARDED-EMAIL",
        "x-auth-request-user",
        "X_Auth_Request_Groups",
        "x-forwarded-preferred_username",
        "X-Forwarded-Access-Token",
    ] {
        assert!(is_identity_header(n), "{n}");
    }
    for n in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "accept",
        "x-forwarded-userx",
    ] {
        assert!(!is_identity_header(n), "{n}");
    }
}

#[test]
fn strip_removes_spoofed_and_extra_headers() {
    let mut h = HeaderMap::new();
    h.insert("x_forwarded_user", "mallory".parse().unwrap());
    h.insert("x-auth-request-email", "m@evil".parse().unwrap());
    h.insert("authorization", "Bearer forged".parse().unwrap());
    h.insert("accept", "*/*".parse().unwrap());
    strip_identity_headers(&mut h, &["Authorization"]);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut h = HeaderMap::new();
    h.insert("connection", "keep-alive, x-secret".parse().unwrap());
    h.insert("x-secret", "1".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    h.insert("accept", "*/*".parse().unwrap());
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1);
}

#[test]
fn websocket_upgrade_keeps_upgrade_headers() {
    let mut h = HeaderMap::new();
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    assert!(is_websocket_upgrade(&h));
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h.get("upgrade").unwrap(), "websocket");
    assert_eq!(h.get("connection").unwrap(), "upgrade");
}

#[test]
fn identity_header_prefixes_match_only_whole_prefixes() {
    for (name, identity) in [
        ("x-auth-request-", true),
        ("X_AUTH_REQUEST_ANYTHING", true),
        ("x-auth-request", false),
        ("x-auth-requestx-user", false),
        ("x", false),
        ("", false),
        ("remote-user", true),
        ("Remote_User", true),
        ("x-remote-user", true),
        ("x-forwarded-email-verified", true),
        ("x-forwarded-name", true),
        ("remote-userx", false),
    ] {
        assert_eq!(is_identity_header(name), identity, "{name:?}");
    }
}

#[test]
fn same_header_reads_underscore_and_dot_as_dash_and_ignores_case() {
    let table: &[(&str, &str, bool)] = &[
        ("x-a", "x-a", true),
        ("X_A", "x-a", true),
        ("x-a", "X_A", true),
        ("x_a", "x_a", true),
        ("x-a", "x-b", false),
        ("x-a", "x-ab", false),
        ("x-ab", "x-a", false),
        ("", "", true),
        ("", "x", false),
        // `_` and `.` mean `-`; no other punctuation is folded
        ("x.a", "x-a", true),
        ("X.A", "x_a", true),
        ("x~a", "x-a", false),
        ("x:a", "x-a", false),
        ("xaa", "x-a", false),
    ];
    for (a, b, same) in table {
        assert_eq!(same_header(a, b), *same, "{a:?} vs {b:?}");
    }
}

#[test]
fn gatehouse_headers_are_identity_and_forwarding_headers() {
    for n in [
        "x-forwarded-user",
        "X_Auth_Request_Email",
        "x-forwarded-for",
        "X-Forwarded-Proto",
        "x_forwarded_host",
        "x-forwarded-port",
        "x-forwarded-uri",
        "X.Real.IP",
        "forwarded",
    ] {
        assert!(is_gatehouse_header(n), "{n}");
    }
    for n in ["x-forwarded-userx", "authorization", "host"] {
        assert!(!is_gatehouse_header(n), "{n}");
    }
}

#[test]
fn strip_identity_headers_keeps_everything_else() {
    let mut h = HeaderMap::new();
    h.append("x-forwarded-groups", "admins".parse().unwrap());
    h.append("x-forwarded-groups", "root".parse().unwrap());
    h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
    h.insert("x-custom", "1".parse().unwrap());
    h.insert("x-custom-2", "2".parse().unwrap());
    strip_identity_headers(&mut h, &["X_Custom"]);
    assert!(!h.contains_key("x-forwarded-groups"));
    assert!(!h.contains_key("x-custom"));
    assert_eq!(h["x-forwarded-for"], "1.2.3.4");
    assert_eq!(h["x-custom-2"], "2");
    assert_eq!(h.len(), 2);
}

#[test]
fn each_hop_by_hop_header_alone_is_removed() {
    for n in &HOP_BY_HOP {
        for keep_upgrade in [false, true] {
            let mut h = HeaderMap::new();
            h.insert(n.clone(), "x".parse().unwrap());
            h.insert("accept", "*/*".parse().unwrap());
            strip_hop_by_hop(&mut h, keep_upgrade);
            let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            left.sort_unstable();
            // a lone Upgrade (no Connection: upgrade) is no handshake
            let want = if keep_upgrade && n == header::UPGRADE {
                vec!["accept", "connection", "upgrade"]
            } else {
                vec!["accept"]
            };
            assert_eq!(left, want, "{n} keep_upgrade={keep_upgrade}");
        }
    }
}

#[test]
fn only_connection_names_headers_to_strip() {
    let mut h = HeaderMap::new();
    h.insert("proxy-connection", "keep-alive, x-secret".parse().unwrap());
    h.insert("x-secret", "1".parse().unwrap());
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("x-secret"));
}

#[test]
fn a_message_without_hop_by_hop_headers_is_left_as_it_is() {
    for keep_upgrade in [false, true] {
        let mut h = HeaderMap::new();
        h.append("accept", "*/*".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        h.append("x-custom", "v".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, keep_upgrade);
        assert_eq!(h, before, "keep_upgrade={keep_upgrade}");
    }
}

#[test]
fn every_hop_by_hop_header_is_removed() {
    let mut h = HeaderMap::new();
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        h.insert(n, "x".parse().unwrap());
    }
    h.insert("accept", "*/*".parse().unwrap());
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("accept"));
}

#[test]
fn connection_named_headers_are_removed_from_every_connection_header() {
    let mut h = HeaderMap::new();
    h.append("connection", "x-one , x-two".parse().unwrap());
    h.append("connection", "x-three".parse().unwrap());
    for n in ["x-one", "x-two", "x-three", "x-kept"] {
        h.insert(n, "1".parse().unwrap());
    }
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h.contains_key("x-kept"));
}

#[test]
fn upgrade_is_dropped_unless_kept_for_a_websocket() {
    // not kept: Upgrade goes, even when Connection names it
    let mut h = HeaderMap::new();
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    strip_hop_by_hop(&mut h, false);
    assert!(h.is_empty(), "{h:?}");
    // kept: only Connection: upgrade and Upgrade survive; other names in
    // Connection are still removed
    let mut h = HeaderMap::new();
    h.insert(
        "connection",
        "keep-alive, Upgrade, x-secret".parse().unwrap(),
    );
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("x-secret", "1".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    // kept, but there was no Upgrade header: no Connection is invented
    let mut h = HeaderMap::new();
    h.insert("connection", "close".parse().unwrap());
    strip_hop_by_hop(&mut h, true);
    assert!(h.is_empty(), "{h:?}");
}

#[test]
fn only_a_connection_upgrade_to_websocket_is_a_websocket_upgrade() {
    let table: &[(Option<&str>, Option<&str>, bool)] = &[
        (Some("Upgrade"), Some("websocket"), true),
        (Some("keep-alive, upgrade"), Some("WebSocket"), true),
        (Some("keep-alive"), Some("websocket"), false),
        (None, Some("websocket"), false),
        (Some("upgrade"), None, false),
        (Some("upgrade"), Some("h2c"), false),
        (Some("upgrades"), Some("websocket"), false),
    ];
    for (connection, upgrade, expected) in table {
        let mut h = HeaderMap::new();
        if let Some(c) = connection {
            h.insert("connection", c.parse().unwrap());
        }
        if let Some(u) = upgrade {
            h.insert("upgrade", u.parse().unwrap());
        }
        assert_eq!(
            is_websocket_upgrade(&h),
            *expected,
            "{connection:?} {upgrade:?}"
        );
    }
}

/// Every name gatehouse or oauth2-proxy can emit towards an application.
const EMITTED: &[&str] = &[
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Preferred-Username",
    "X-Forwarded-Groups",
    "X-Forwarded-Name",
    "X-Forwarded-Email-Verified",
    "X-Forwarded-Access-Token",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Access-Token",
    "X-Auth-Request-Redirect",
    "GAP-Auth",
    "X-Id-Token",
];

/// The forwarding family only a trusted proxy may state.
const FORWARDING: &[&str] = &[
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Uri",
    "X-Real-IP",
    "Forwarded",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Client-IP",
    "X-Cluster-Client-IP",
    "X-Forwarded-Client-Cert",
    "X-SSL-Client-Cert",
    "X-SSL-Client-Verify",
];

#[test]
fn url_override_headers_never_go_upstream_not_even_from_a_trusted_proxy() {
    for name in ["X-Original-URL", "X-Original-URI", "X-Rewrite-URL"] {
        for sep in ['-', '_', '.'] {
            for trusted in [false, true] {
                let n = spelled(name, sep, false);
                let mut h = HeaderMap::new();
                h.insert(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    "/admin".parse().unwrap(),
                );
                strip_client_headers(&mut h, &[] as &[&str], trusted);
                assert!(h.is_empty(), "{n} (trusted: {trusted}) survived");
            }
        }
    }
}

/// `name` with each `-` replaced by `sep`, in upper or lower case.
fn spelled(name: &str, sep: char, upper: bool) -> String {
    let s = name.replace('-', &sep.to_string());
    if upper {
        s.to_ascii_uppercase()
    } else {
        s.to_ascii_lowercase()
    }
}

#[test]
fn every_emitted_identity_name_is_stripped_in_every_spelling_from_anyone() {
    for name in EMITTED {
        for sep in ['-', '_', '.'] {
            for upper in [false, true] {
                let n = spelled(name, sep, upper);
                for trusted in [false, true] {
                    let mut h = HeaderMap::new();
                    h.insert(
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        "forged".parse().unwrap(),
                    );
                    h.insert("accept", "*/*".parse().unwrap());
                    strip_client_headers(&mut h, &[] as &[&str], trusted);
                    assert_eq!(h.len(), 1, "{n} (trusted: {trusted}) survived");
                }
            }
        }
    }
}

#[test]
fn the_forwarding_family_is_stripped_from_untrusted_peers_and_only_its_aliases_from_trusted_ones() {
    for name in FORWARDING {
        for sep in ['-', '_', '.'] {
            let n = spelled(name, sep, false);
            let header = HeaderName::from_bytes(n.as_bytes()).unwrap();
            let mut h = HeaderMap::new();
            h.insert(header.clone(), "1.2.3.4".parse().unwrap());
            strip_client_headers(&mut h, &[] as &[&str], false);
            assert!(h.is_empty(), "{n} from an untrusted peer survived");
            let mut h = HeaderMap::new();
            h.insert(header, "1.2.3.4".parse().unwrap());
            strip_client_headers(&mut h, &[] as &[&str], true);
            // a trusted proxy's own spelling is kept; `_`/`.` aliases are not
            let canonical = sep == '-' || !name.contains('-');
            assert_eq!(h.len(), usize::from(canonical), "{n} from a trusted peer");
        }
    }
}

#[test]
fn configured_extra_headers_are_stripped_in_every_spelling_and_others_survive() {
    let mut h = HeaderMap::new();
    for n in [
        "x-dept",
        "X_DEPT",
        "x.dept",
        "authorization",
        "x-deptx",
        "accept",
    ] {
        h.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            "v".parse().unwrap(),
        );
    }
    strip_client_headers(&mut h, &["X-Dept", "Authorization"], true);
    let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "x-deptx"]);
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;
    use super::{EMITTED, FORWARDING};

    /// A protected name in a random spelling: each `-` as `-`, `_` or `.`,
    /// each letter in either case.
    fn alias_of(names: &'static [&'static str]) -> impl Strategy<Value = String> {
        (
            proptest::sample::select(names),
            proptest::collection::vec((0u8..3, any::<bool>()), 64),
        )
            .prop_map(|(name, choices)| {
                name.bytes()
                    .zip(choices)
                    .map(|(b, (sep, upper))| match b {
                        b'-' => char::from([b'-', b'_', b'.'][usize::from(sep)]),
                        _ if upper => char::from(b.to_ascii_uppercase()),
                        _ => char::from(b.to_ascii_lowercase()),
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn every_alias_of_an_identity_name_is_stripped(n in alias_of(EMITTED), trusted in any::<bool>()) {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(n.as_bytes()).unwrap(), "x".parse().unwrap());
            strip_client_headers(&mut h, &[] as &[&str], trusted);
            prop_assert!(h.is_empty(), "{} survived", n);
        }

        #[test]
        fn every_alias_of_a_forwarding_name_is_stripped_from_an_untrusted_peer(n in alias_of(FORWARDING)) {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(n.as_bytes()).unwrap(), "x".parse().unwrap());
            strip_client_headers(&mut h, &[] as &[&str], false);
            prop_assert!(h.is_empty(), "{} survived", n);
        }

        #[test]
        fn every_alias_of_a_claim_header_is_stripped(n in alias_of(&["X-Dept-Code"])) {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(n.as_bytes()).unwrap(), "x".parse().unwrap());
            strip_client_headers(&mut h, &["x-dept-code"], true);
            prop_assert!(h.is_empty(), "{} survived", n);
        }

        #[test]
        fn names_that_are_not_protected_survive(n in "[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,6}){0,3}", trusted in any::<bool>()) {
            let protected = is_identity_header(&n)
                || is_forwarding_header(&n)
                || same_header(&n, "x-dept");
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(n.as_bytes()).unwrap(), "x".parse().unwrap());
            strip_client_headers(&mut h, &["x-dept"], trusted);
            prop_assert_eq!(h.is_empty(), protected, "{}", n);
        }

        #[test]
        fn similar_but_different_names_survive(n in alias_of(EMITTED), suffix in "[a-z0-9]{1,3}") {
            // a longer name is another header (the x-auth-request- family
            // aside, which is a prefix)
            let longer = format!("{n}{suffix}");
            prop_assume!(!longer.to_ascii_lowercase().replace(['_', '.'], "-").starts_with("x-auth-request-"));
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_bytes(longer.as_bytes()).unwrap(), "x".parse().unwrap());
            strip_client_headers(&mut h, &[] as &[&str], false);
            prop_assert_eq!(h.len(), 1, "{}", longer);
        }
    }
}

#[test]
fn hop_by_hop_is_exactly_the_list() {
    for n in &HOP_BY_HOP {
        assert!(is_hop_by_hop(n), "{n}");
    }
    for n in [
        "host",
        "cookie",
        "x-connection",
        "connections",
        "tee",
        "upgrade-insecure-requests",
    ] {
        assert!(!is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
    }
}
