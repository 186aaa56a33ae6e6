use super::*;

fn wl(list: &[&str]) -> Vec<WhitelistDomain> {
    list.iter().map(|d| d.parse().unwrap()).collect()
}

const HOST: Option<&str> = Some("app.example.com");

/// An http request on `host`, named by the connection itself.
fn on(host: Option<&str>) -> Origin {
    Origin {
        proto: "http",
        host: host.map(str::to_owned),
        trusted: false,
        host_forwarded: false,
    }
}

fn only(whitelist: &[WhitelistDomain]) -> Served<'_> {
    Served {
        whitelist,
        ..Served::default()
    }
}

fn parse(raw: &str, host: Option<&str>, whitelist: &[WhitelistDomain]) -> ReturnTo {
    ReturnTo::parse(raw, &on(host), &only(whitelist))
}

fn try_parse(raw: &str, host: Option<&str>, whitelist: &[WhitelistDomain]) -> Option<ReturnTo> {
    ReturnTo::try_parse(raw, &on(host), &only(whitelist))
}

#[test]
fn safe_paths_are_kept() {
    for ok in [
        "/",
        "/a/b?c=d#e",
        "/%41bc",
        "/path/with%20space",
        "/a//b",
        "/a/%2F%2Fb",
    ] {
        assert_eq!(parse(ok, HOST, &[]).as_str(), ok, "{ok}");
    }
}

#[test]
fn hostile_return_urls_fall_back_to_root() {
    let hostile = [
        "//evil.com",
        "//evil.com/path",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "/\\/evil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r\n/evil.com",
        "/ /evil.com",
        " /evil",
        "/%2F/evil.com",
        "/%2f%2fevil.com",
        "/%5Cevil.com",
        "/%5c%5cevil.com",
        "/%09/evil.com",
        "/%0a/evil.com",
        "%2F%2Fevil.com",
        "https://evil.com/",
        "http://evil.com",
        "https://app.example.com@evil.com/",
        "https://user:pw@app.example.com/",
        "https://app.example.com.evil.com/",
        "https://evilapp.example.com/",
        "https://app.example.com:8443/",
        "https:evil.com",
        "https:/evil.com",
        "https:\\\\evil.com",
        "http:/\\evil.com",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://app.example.com/",
        "evil.com",
        "",
        "https://app.example.com\t.evil.com/",
        "https://évil.com/",
        "/\u{0}evil",
    ];
    for bad in hostile {
        assert_eq!(
            parse(bad, HOST, &[]),
            ReturnTo::root(),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn same_host_absolute_urls_are_allowed_with_the_same_port_only() {
    assert_eq!(
        parse("https://app.example.com/x?y=1", HOST, &[]).as_str(),
        "https://app.example.com/x?y=1"
    );
    assert!(try_parse("https://APP.example.com/", HOST, &[]).is_some());
    assert!(try_parse("http://127.0.0.1:4180/x", Some("127.0.0.1:4180"), &[]).is_some());
    assert!(try_parse("http://127.0.0.1:4181/x", Some("127.0.0.1:4180"), &[]).is_none());
    assert!(try_parse("http://127.0.0.1/x", Some("127.0.0.1:4180"), &[]).is_none());
    assert!(try_parse("https://app.example.com/", None, &[]).is_none());
}

#[test]
fn whitelist_matches_on_a_dot_boundary() {
    let list = wl(&[".example.com", "exact.org", "ported.net:8443", "any.io:*"]);
    for ok in [
        "https://example.com/",
        "https://a.example.com/",
        "https://a.b.example.com/x",
        "https://exact.org/",
        "https://ported.net:8443/",
        "https://any.io:9999/",
    ] {
        assert!(try_parse(ok, None, &list).is_some(), "{ok}");
    }
    for bad in [
        "https://evilexample.com/",
        "https://example.com.evil.com/",
        "https://sub.exact.org/",
        "https://exact.org:444/",
        "https://ported.net/",
        "https://ported.net:8444/",
        "https://a.example.com:8443/",
        "https://user@a.example.com/",
    ] {
        assert!(try_parse(bad, None, &list).is_none(), "{bad}");
    }
}

#[test]
fn whitelist_entries_are_validated() {
    for bad in [
        "",
        ".",
        "..example.com",
        "exa mple.com",
        "example.com:port",
        "*.example.com",
        "https://example.com",
    ] {
        assert!(bad.parse::<WhitelistDomain>().is_err(), "{bad}");
    }
}

#[test]
fn overlong_urls_are_refused() {
    let long = format!("/{}", "a".repeat(MAX_LEN));
    assert_eq!(parse(&long, HOST, &[]), ReturnTo::root());
}

#[test]
fn host_allowed_needs_a_whitelisted_host_and_port() {
    let list = wl(&[".example.com", "exact.org", "ported.net:8443", "any.io:*"]);
    let table: &[(&str, &str, bool)] = &[
        ("https", "example.com", true),
        ("https", "a.example.com", true),
        ("https", "A.Example.COM", true),
        ("https", "a.example.com:443", true),
        ("http", "a.example.com:80", true),
        ("http", "a.example.com:443", false),
        ("https", "a.example.com:80", false),
        ("https", "a.example.com:8443", false),
        ("https", "evilexample.com", false),
        ("https", "example.com.evil.com", false),
        ("https", "exact.org", true),
        ("https", "www.exact.org", false),
        ("https", "ported.net:8443", true),
        ("http", "ported.net:8443", true),
        ("https", "ported.net", false),
        ("https", "any.io:1", true),
        ("https", "any.io", true),
        ("https", "evil.com", false),
        ("https", "", false),
        ("https", "bad host", false),
    ];
    for (scheme, authority, allowed) in table {
        assert_eq!(
            host_allowed(scheme, authority, &list),
            *allowed,
            "{scheme}://{authority}"
        );
    }
    assert!(!host_allowed("https", "example.com", &[]));
}

#[test]
fn whitelist_entries_are_read_as_written() {
    let table: &[(&str, &str, bool, PortRule)] = &[
        ("example.com", "example.com", false, PortRule::Default),
        (" Example.COM ", "example.com", false, PortRule::Default),
        (".example.com", "example.com", true, PortRule::Default),
        (
            "my-host.example.com:8443",
            "my-host.example.com",
            false,
            PortRule::Exact(8443),
        ),
        (".any.io:*", "any.io", true, PortRule::Any),
        ("localhost", "localhost", false, PortRule::Default),
    ];
    for (text, host, subdomains, port) in table {
        let w: WhitelistDomain = text.parse().unwrap();
        assert_eq!(
            w,
            WhitelistDomain {
                host: (*host).to_owned(),
                subdomains: *subdomains,
                port: *port,
            },
            "{text}"
        );
    }
    for bad in [
        "example.com.",
        ".example.com.",
        "exa_mple.com",
        "example.com:99999",
        "example.com:",
        ":*",
        "example.com/",
        "ex@mple.com",
    ] {
        assert!(bad.parse::<WhitelistDomain>().is_err(), "{bad}");
    }
}

#[test]
fn a_return_url_of_exactly_the_longest_length_is_kept() {
    let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
    assert_eq!(parse(&longest, HOST, &[]).as_str(), longest);
}

#[test]
fn more_hostile_return_urls_fall_back_to_root() {
    for bad in [
        "https://:pw@app.example.com/",
        "/\u{7f}/evil.com",
        "/%7f/evil.com",
        "/%00",
        "/%1F",
        "https://app.example.com/\u{7f}",
        "https://app.example.com\\.evil.com/",
        "https://app.example.com/é",
    ] {
        assert_eq!(
            parse(bad, HOST, &[]),
            ReturnTo::root(),
            "{bad:?} must be refused"
        );
    }
    // a whitelist does not let credentials through either
    assert!(try_parse("https://:pw@a.example.com/", None, &wl(&[".example.com"])).is_none());
}

#[test]
fn the_request_host_port_defaults_to_the_url_scheme_port() {
    let table: &[(&str, &str, bool)] = &[
        ("http://app.example.com/", "app.example.com:80", true),
        ("https://app.example.com/", "app.example.com:443", true),
        ("https://app.example.com:443/", "app.example.com", true),
        ("https://app.example.com/", "app.example.com:80", false),
        ("http://app.example.com/", "app.example.com:443", false),
        ("http://app.example.com:8080/", "app.example.com:8080", true),
        ("http://app.example.com:8080/", "app.example.com", false),
        ("http://app.example.com:8080/", "APP.EXAMPLE.COM:8080", true),
        (
            "http://other.example.com:8080/",
            "app.example.com:8080",
            false,
        ),
        ("https://app.example.com/", "bad host", false),
    ];
    for (url, request_host, same) in table {
        assert_eq!(
            try_parse(url, Some(request_host), &[]).is_some(),
            *same,
            "{url} on {request_host}"
        );
    }
}

#[test]
fn a_return_to_says_whether_it_is_absolute_and_prints_as_its_url() {
    let path = parse("/a?b=1", HOST, &[]);
    assert!(!path.is_absolute());
    assert_eq!(path.to_string(), "/a?b=1");
    let abs = parse("HTTPS://App.Example.com/x", HOST, &[]);
    assert!(abs.is_absolute());
    // the URL as parsed: scheme and host normalised
    assert_eq!(abs.to_string(), "https://app.example.com/x");
    assert_eq!(abs.as_str(), "https://app.example.com/x");
    assert_eq!(ReturnTo::root().as_str(), "/");
    assert!(!ReturnTo::root().is_absolute());
}

#[test]
fn a_host_with_user_information_is_not_an_allowed_host() {
    let list = wl(&[".example.com"]);
    for authority in [
        "user@a.example.com",
        "user:pw@a.example.com",
        "@a.example.com",
        "evil.test@a.example.com",
    ] {
        assert!(!host_allowed("https", authority, &list), "{authority}");
    }
    assert!(host_allowed("https", "a.example.com", &list));
}

/// A request for `host` as a trusted proxy reported it.
fn forwarded(proto: &'static str, host: &str) -> Origin {
    Origin {
        proto,
        host: Some(host.to_owned()),
        trusted: true,
        host_forwarded: true,
    }
}

#[test]
fn a_forwarded_host_is_a_return_target_only_when_gatehouse_serves_it() {
    let callback: Url = "https://auth.example.com/oauth2/callback".parse().unwrap();
    let list = wl(&["app.example.org"]);
    let served = Served {
        callback: Some(&callback),
        whitelist: &list,
        cookie_domain: Some(".example.net"),
    };
    // (forwarded host, return URL, accepted)
    let table: &[(&str, &str, bool)] = &[
        ("evil.test", "https://evil.test/x", false),
        ("evil.test:8443", "https://evil.test:8443/", false),
        ("auth.example.com", "https://auth.example.com/x", true),
        (
            "auth.example.com:8443",
            "https://auth.example.com:8443/",
            false,
        ),
        ("app.example.org", "https://app.example.org/x", true),
        ("www.app.example.org", "https://www.app.example.org/", false),
        ("example.net", "https://example.net/", true),
        ("a.b.example.net:444", "https://a.b.example.net:444/", true),
        ("badexample.net", "https://badexample.net/", false),
    ];
    for (host, url, ok) in table {
        let origin = forwarded("https", host);
        assert_eq!(
            ReturnTo::try_parse(url, &origin, &served).is_some(),
            *ok,
            "{url} forwarded as {host}"
        );
        // a path is always fine: it stays on whatever host the browser is on
        assert_eq!(ReturnTo::parse("/x", &origin, &served).as_str(), "/x");
    }
    // the same host named by the connection itself is the browser's own
    assert!(ReturnTo::try_parse("http://evil.test/x", &on(Some("evil.test")), &served).is_some());
}

#[test]
fn a_return_url_never_takes_an_https_request_to_http() {
    let list = wl(&[".example.com"]);
    let https = Origin {
        proto: "https",
        ..on(Some("app.example.com"))
    };
    for url in ["http://app.example.com/", "http://a.example.com/x"] {
        assert!(
            ReturnTo::try_parse(url, &https, &only(&list)).is_none(),
            "{url}"
        );
        // the same URL from an http request is fine
        assert!(
            ReturnTo::try_parse(url, &on(Some("app.example.com")), &only(&list)).is_some(),
            "{url}"
        );
    }
    assert!(ReturnTo::try_parse("http://app.example.com:443/", &https, &only(&list)).is_none());
    assert!(ReturnTo::try_parse("https://app.example.com/", &https, &only(&list)).is_some());
}

mod properties {
    use proptest::prelude::*;
    use url::Url;

    use super::*;

    /// Return URLs built from the pieces an attacker plays with.
    fn hostile_url() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("//"),
            Just("\\"),
            Just("\\"),
            Just("http:"),
            Just("https:"),
            Just("HTTPS:"),
            Just("javascript:"),
            Just("@"),
            Just(":"),
            Just("."),
            Just("%2f"),
            Just("%5c"),
            Just("%2e"),
            Just("%09"),
            Just("\t"),
            Just("?"),
            Just("#"),
            Just("app.example.com"),
            Just("a.example.com"),
            Just("evil.test"),
            Just("example.com"),
            Just("443"),
            Just("80"),
            Just("8443"),
            Just("x"),
        ];
        proptest::collection::vec(piece, 1..10).prop_map(|v| v.concat())
    }

    /// Absolute URLs shaped like real ones: a scheme, slashes, maybe
    /// credentials, a host (ours, a subdomain, a look-alike, another), maybe
    /// a port, a path.
    fn absolute_url() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just("http:"),
                Just("https:"),
                Just("HTTP:"),
                Just("javascript:")
            ],
            prop_oneof![Just("//"), Just("/"), Just(""), Just("/\\"), Just("///")],
            prop_oneof![
                Just(""),
                Just("user@"),
                Just("app.example.com@"),
                Just(":pw@")
            ],
            prop_oneof![
                Just("app.example.com"),
                Just("a.example.com"),
                Just("example.com"),
                Just("evil.test"),
                Just("app.example.com.evil.test"),
                Just("evilexample.com"),
            ],
            prop_oneof![
                Just(""),
                Just(":443"),
                Just(":80"),
                Just(":8443"),
                Just(":"),
                Just(":x")
            ],
            prop_oneof![
                Just(""),
                Just("/"),
                Just("/x?y=1"),
                Just("/%2e%2e/x"),
                Just("#f")
            ],
        )
            .prop_map(|(a, b, c, d, e, f)| format!("{a}{b}{c}{d}{e}{f}"))
    }

    fn origin_strategy() -> impl Strategy<Value = Origin> {
        (
            prop_oneof![Just("http"), Just("https")],
            prop_oneof![
                Just("app.example.com"),
                Just("evil.test"),
                Just("app.example.com:8443")
            ],
            any::<bool>(),
        )
            .prop_map(|(proto, host, host_forwarded)| Origin {
                proto,
                host: Some(host.to_owned()),
                trusted: host_forwarded,
                host_forwarded,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Every accepted return URL, resolved against the request's origin
        /// the way a browser (WHATWG URL parser) does, lands on the origin
        /// the browser is on (a path, or the connection's own host) or on a
        /// host gatehouse serves, and never takes https to http.
        #[test]
        fn an_accepted_return_url_lands_on_an_allowed_host_without_a_downgrade(
            raw in prop_oneof![hostile_url(), absolute_url(), "\\PC{0,30}"],
            origin in origin_strategy(),
        ) {
            let list = wl(&[".example.com:*"]);
            let served = only(&list);
            let Some(rt) = ReturnTo::try_parse(&raw, &origin, &served) else {
                return Ok(());
            };
            let base = Url::parse(&format!(
                "{}://{}/some/page",
                origin.proto,
                origin.host.as_deref().unwrap_or("unknown.invalid"),
            )).unwrap();
            let landed = base.join(rt.as_str()).unwrap();
            let browser_raw = base.join(&raw).unwrap();
            // what we hand back means what the browser would make of the raw value
            prop_assert_eq!(&landed, &browser_raw, "{:?}", raw);
            prop_assert!(!(origin.proto == "https" && landed.scheme() == "http"), "{:?} downgrades", raw);
            prop_assert!(matches!(landed.scheme(), "http" | "https"));
            prop_assert!(landed.username().is_empty() && landed.password().is_none());
            let host = landed.host_str().unwrap_or_default();
            // the connection's own host and port (a scheme upgrade allowed)
            let own_host = landed.host_str() == base.host_str() && landed.port() == base.port();
            let own_origin = !rt.is_absolute() || (own_host && !origin.host_forwarded);
            let allowed = served.serves(landed.scheme(), host, landed.port());
            prop_assert!(own_origin || allowed, "{:?} from {:?} lands on {}", raw, origin, landed);
            if !rt.is_absolute() {
                prop_assert_eq!(landed.origin(), base.origin(), "a path left the origin: {:?}", raw);
            }
        }
    }
}
