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
