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
fn same_header_reads_underscore_as_dash_and_ignores_case() {
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
        // `_` means `-` only: no other punctuation is folded
        ("x.a", "x-a", false),
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
    ] {
        assert!(is_gatehouse_header(n), "{n}");
    }
    for n in [
        "x-forwarded-port",
        "x-forwarded-uri",
        "authorization",
        "host",
    ] {
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
