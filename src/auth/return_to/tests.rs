use super::*;

fn wl(list: &[&str]) -> Vec<WhitelistDomain> {
    list.iter().map(|d| d.parse().unwrap()).collect()
}

const HOST: Option<&str> = Some("app.example.com");

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
        assert_eq!(ReturnTo::parse(ok, HOST, &[]).as_str(), ok, "{ok}");
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
            ReturnTo::parse(bad, HOST, &[]),
            ReturnTo::root(),
            "{bad:?} must be refused"
        );
    }
}

#[test]
fn same_host_absolute_urls_are_allowed_with_the_same_port_only() {
    assert_eq!(
        ReturnTo::parse("https://app.example.com/x?y=1", HOST, &[]).as_str(),
        "https://app.example.com/x?y=1"
    );
    assert!(ReturnTo::try_parse("https://APP.example.com/", HOST, &[]).is_some());
    assert!(ReturnTo::try_parse("http://127.0.0.1:4180/x", Some("127.0.0.1:4180"), &[]).is_some());
    assert!(ReturnTo::try_parse("http://127.0.0.1:4181/x", Some("127.0.0.1:4180"), &[]).is_none());
    assert!(ReturnTo::try_parse("http://127.0.0.1/x", Some("127.0.0.1:4180"), &[]).is_none());
    assert!(ReturnTo::try_parse("https://app.example.com/", None, &[]).is_none());
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
        assert!(ReturnTo::try_parse(ok, None, &list).is_some(), "{ok}");
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
        assert!(ReturnTo::try_parse(bad, None, &list).is_none(), "{bad}");
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
    assert_eq!(ReturnTo::parse(&long, HOST, &[]), ReturnTo::root());
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
    assert_eq!(ReturnTo::parse(&longest, HOST, &[]).as_str(), longest);
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
            ReturnTo::parse(bad, HOST, &[]),
            ReturnTo::root(),
            "{bad:?} must be refused"
        );
    }
    // a whitelist does not let credentials through either
    assert!(
        ReturnTo::try_parse("https://:pw@a.example.com/", None, &wl(&[".example.com"])).is_none()
    );
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
            ReturnTo::try_parse(url, Some(request_host), &[]).is_some(),
            *same,
            "{url} on {request_host}"
        );
    }
}

#[test]
fn a_return_to_says_whether_it_is_absolute_and_prints_as_its_url() {
    let path = ReturnTo::parse("/a?b=1", HOST, &[]);
    assert!(!path.is_absolute());
    assert_eq!(path.to_string(), "/a?b=1");
    let abs = ReturnTo::parse("HTTPS://App.Example.com/x", HOST, &[]);
    assert!(abs.is_absolute());
    // the URL as parsed: scheme and host normalised
    assert_eq!(abs.to_string(), "https://app.example.com/x");
    assert_eq!(abs.as_str(), "https://app.example.com/x");
    assert_eq!(ReturnTo::root().as_str(), "/");
    assert!(!ReturnTo::root().is_absolute());
}
