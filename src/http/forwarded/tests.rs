use super::*;

fn nets() -> Vec<IpNet> {
    vec!["10.0.0.0/8".parse().unwrap()]
}

#[test]
fn untrusted_peers_cannot_set_proto_host_or_chain() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "evil.example".parse().unwrap());
    h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
    h.insert("host", "app.example".parse().unwrap());
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let trusted = is_trusted(peer, &nets());
    assert!(!trusted);
    let o = origin(&h, &Uri::from_static("/"), false, trusted);
    assert_eq!(o.proto, "http");
    assert_eq!(o.host.as_deref(), Some("app.example"));
    assert_eq!(forwarded_for(&h, peer, trusted).unwrap(), "192.0.2.1");
}

#[test]
fn trusted_peers_pass_their_view_on() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-proto", "HTTPS".parse().unwrap());
    h.insert("x-forwarded-host", "app.example".parse().unwrap());
    h.insert("x-forwarded-for", "1.2.3.4, junk".parse().unwrap());
    let peer: IpAddr = "10.1.1.1".parse().unwrap();
    assert!(is_trusted(peer, &nets()));
    assert!(is_trusted("::ffff:10.1.1.1".parse().unwrap(), &nets()));
    let o = origin(&h, &Uri::from_static("/"), false, true);
    assert_eq!(o.proto, "https");
    assert_eq!(o.host.as_deref(), Some("app.example"));
    assert_eq!(forwarded_for(&h, peer, true).unwrap(), "1.2.3.4, 10.1.1.1");
}

#[test]
fn original_request_is_rebuilt_only_from_trusted_peers() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-proto", "https".parse().unwrap());
    h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
    h.insert("x-forwarded-uri", "/a/b?c=1".parse().unwrap());
    h.insert("x-forwarded-method", "POST".parse().unwrap());
    assert_eq!(original_request(&h, false), Ok(None));
    let o = original_request(&h, true).unwrap().unwrap();
    assert_eq!(o.url.as_str(), "https://app.example.com/a/b?c=1");
    assert_eq!(o.method, http::Method::POST);
    let mut n = HeaderMap::new();
    n.insert(
        "x-original-url",
        "https://app.example.com/x".parse().unwrap(),
    );
    assert_eq!(
        original_request(&n, true).unwrap().unwrap().url.path(),
        "/x"
    );
}

#[test]
fn malformed_original_requests_are_errors() {
    let bad: &[(&str, &str)] = &[
        ("x-forwarded-uri", "no-slash"),
        ("x-forwarded-uri", "//evil.example/x"),
        ("x-forwarded-uri", "/a b"),
        ("x-forwarded-uri", "/a\\b"),
        ("x-original-url", "javascript:alert(1)"),
        ("x-original-url", "/relative"),
        ("x-original-url", "https://user@app.example.com/"),
        ("x-forwarded-method", "BAD METHOD"),
    ];
    for (name, value) in bad {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
        h.insert(*name, value.parse().unwrap());
        if *name == "x-forwarded-method" {
            h.insert("x-forwarded-uri", "/".parse().unwrap());
        }
        assert!(original_request(&h, true).is_err(), "{name}: {value}");
    }
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-uri", "/".parse().unwrap());
    h.insert("x-forwarded-host", "bad host".parse().unwrap());
    assert!(original_request(&h, true).is_err());
}

#[test]
fn a_malformed_host_is_no_host() {
    let mut h = HeaderMap::new();
    h.insert("host", "bad host/x".parse().unwrap());
    assert_eq!(origin(&h, &Uri::from_static("/"), false, false).host, None);
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn trust_is_decided_by_the_peer_address_alone() {
    let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    for (peer, trusted) in [
        ("10.0.0.1", true),
        ("10.255.255.255", true),
        ("11.0.0.1", false),
        ("127.0.0.1", false),
        ("::ffff:10.9.9.9", true),
        ("::ffff:192.0.2.1", false),
        ("fd00::1", true),
        ("fe80::1", false),
        ("::1", false),
    ] {
        let ip: IpAddr = peer.parse().unwrap();
        assert_eq!(is_trusted(ip, &nets), trusted, "{peer}");
    }
    assert!(!is_trusted("10.0.0.1".parse().unwrap(), &[]));
}

#[test]
fn a_trusted_proto_is_only_http_or_https() {
    let uri = Uri::from_static("/");
    let table: &[(Option<&str>, bool, &str)] = &[
        (Some("https"), false, "https"),
        (Some("http"), true, "http"),
        (Some("HTTP, https"), true, "http"),
        (Some("https , http"), false, "https"),
        (Some("ftp"), false, "http"),
        (Some("ftp"), true, "https"),
        (Some(" , https"), false, "http"),
        (Some(""), true, "https"),
        (None, true, "https"),
        (None, false, "http"),
    ];
    for (proto, tls, expected) in table {
        let mut h = HeaderMap::new();
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", p.parse().unwrap());
        }
        assert_eq!(
            origin(&h, &uri, *tls, true).proto,
            *expected,
            "{proto:?} tls={tls}"
        );
    }
}

#[test]
fn the_host_comes_from_a_trusted_forwarded_host_then_the_uri_then_host() {
    let h = headers(&[
        ("x-forwarded-host", "front.example, other.example"),
        ("host", "back.example"),
    ]);
    let plain = Uri::from_static("/");
    let absolute = Uri::from_static("http://uri.example:8080/");
    let o = origin(&h, &absolute, false, true);
    assert_eq!(o.host.as_deref(), Some("front.example"));
    assert!(o.trusted);
    let o = origin(&h, &absolute, false, false);
    assert_eq!(o.host.as_deref(), Some("uri.example:8080"));
    assert!(!o.trusted);
    assert_eq!(
        origin(&h, &plain, false, false).host.as_deref(),
        Some("back.example")
    );
    assert_eq!(origin(&HeaderMap::new(), &plain, false, true).host, None);
    // a forged forwarded host that is not an authority is no host at all
    let bad = headers(&[("x-forwarded-host", "evil.example/path")]);
    assert_eq!(origin(&bad, &plain, false, true).host, None);
}

#[test]
fn forwarded_for_keeps_only_addresses_from_a_trusted_chain() {
    let peer: IpAddr = "10.0.0.7".parse().unwrap();
    let h = headers(&[
        ("x-forwarded-for", "203.0.113.1, not-an-ip"),
        ("x-forwarded-for", " 2001:db8::1 ,198.51.100.2"),
    ]);
    assert_eq!(
        forwarded_for(&h, peer, true).unwrap(),
        "203.0.113.1, 2001:db8::1, 198.51.100.2, 10.0.0.7"
    );
    assert_eq!(forwarded_for(&h, peer, false).unwrap(), "10.0.0.7");
    assert_eq!(
        forwarded_for(&HeaderMap::new(), peer, true).unwrap(),
        "10.0.0.7"
    );
    let junk = headers(&[("x-forwarded-for", "junk, more junk")]);
    assert_eq!(forwarded_for(&junk, peer, true).unwrap(), "10.0.0.7");
}

#[test]
fn original_request_defaults_to_get_http_and_the_host_header() {
    let h = headers(&[("x-forwarded-uri", "/p?q=1"), ("host", "app.example:8080")]);
    let o = original_request(&h, true).unwrap().unwrap();
    assert_eq!(o.method, http::Method::GET);
    assert_eq!(o.url.as_str(), "http://app.example:8080/p?q=1");
    let h = headers(&[
        ("x-forwarded-uri", "/"),
        ("x-forwarded-proto", "HTTP"),
        ("x-forwarded-host", "app.example"),
        ("x-forwarded-method", " delete "),
    ]);
    let o = original_request(&h, true).unwrap().unwrap();
    assert_eq!(o.url.as_str(), "http://app.example/");
    // methods are case-sensitive tokens: kept as sent, never upper-cased
    assert_eq!(o.method.as_str(), "delete");
}

#[test]
fn original_url_wins_over_the_forwarded_parts() {
    let h = headers(&[
        ("x-original-url", "https://orig.example/o?q"),
        ("x-forwarded-uri", "/o?q"),
        ("x-forwarded-host", "fwd.example"),
        ("x-forwarded-method", "PUT"),
    ]);
    let o = original_request(&h, true).unwrap().unwrap();
    assert_eq!(o.url.as_str(), "https://orig.example/o?q");
    assert_eq!(o.method, http::Method::PUT);
    assert!(o.method_given);
    assert_eq!(o.path, "/o");
}

#[test]
fn an_original_url_and_a_forwarded_uri_at_odds_are_refused() {
    // one of them is a client's, passed on by a front proxy that set the
    // other: neither can be believed
    for (url, uri) in [
        ("https://app.example/health", "/admin"),
        ("https://app.example/a?x=1", "/a"),
        ("https://app.example/a", "/a?x=1"),
    ] {
        let h = headers(&[("x-original-url", url), ("x-forwarded-uri", uri)]);
        assert_eq!(
            original_request(&h, true),
            Err(BadOriginal(
                "X-Original-URL and X-Forwarded-Uri name different paths"
            )),
            "{url} {uri}"
        );
    }
    let h = headers(&[("x-original-url", "https://app.example/a{b}")]);
    let o = original_request(&h, true).unwrap().unwrap();
    // the path as sent, not the URL parser's escaped reading
    assert_eq!(o.path, "/a{b}");
    assert!(!o.method_given);
}

#[test]
fn no_original_headers_means_no_original_request() {
    assert_eq!(original_request(&HeaderMap::new(), true), Ok(None));
    // a method alone says nothing about the URL
    let h = headers(&[("x-forwarded-method", "POST"), ("host", "app.example")]);
    assert_eq!(original_request(&h, true), Ok(None));
    // untrusted: even a malformed header is ignored, not an error
    let h = headers(&[("x-forwarded-uri", "no-slash")]);
    assert_eq!(original_request(&h, false), Ok(None));
}

#[test]
fn hostile_original_requests_are_refused_with_a_reason() {
    let table: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("x-forwarded-uri", "/"),
                ("x-forwarded-proto", "ftp"),
                ("x-forwarded-host", "a.example"),
            ],
            "bad X-Forwarded-Proto",
        ),
        (&[("x-forwarded-uri", "/")], "no X-Forwarded-Host"),
        (
            &[
                ("x-forwarded-uri", "/"),
                ("x-forwarded-host", "user@evil.example"),
            ],
            "bad X-Forwarded-Host",
        ),
        (
            &[
                ("x-forwarded-uri", "/"),
                ("x-forwarded-host", "a.example/evil"),
            ],
            "bad X-Forwarded-Host",
        ),
        (
            &[
                ("x-forwarded-uri", "//evil.example/"),
                ("x-forwarded-host", "a.example"),
            ],
            "X-Forwarded-Uri must be a path starting with one /",
        ),
        (
            &[
                ("x-forwarded-uri", "evil"),
                ("x-forwarded-host", "a.example"),
            ],
            "X-Forwarded-Uri must be a path starting with one /",
        ),
        (
            &[
                ("x-forwarded-uri", "/a\tb"),
                ("x-forwarded-host", "a.example"),
            ],
            "original URL has control characters, spaces or backslashes",
        ),
        (
            &[("x-original-url", "https://a.example/\\evil")],
            "original URL has control characters, spaces or backslashes",
        ),
        (
            &[("x-original-url", "https://a.example/ x")],
            "original URL has control characters, spaces or backslashes",
        ),
        (
            &[("x-original-url", "https://")],
            "original URL does not parse",
        ),
        (
            &[("x-original-url", "file:///etc/passwd")],
            "original URL must be http(s) with a host and no credentials",
        ),
        (
            &[("x-original-url", "ftp://a.example/")],
            "original URL must be http(s) with a host and no credentials",
        ),
        (
            &[("x-original-url", "https://u@a.example/")],
            "original URL must be http(s) with a host and no credentials",
        ),
        (
            &[
                ("x-forwarded-uri", "/"),
                ("x-forwarded-host", "a.example"),
                ("x-forwarded-method", "GE T"),
            ],
            "bad X-Forwarded-Method",
        ),
        (
            &[("x-original-url", "https://st%61tus.example/")],
            "original URL's host is not in plain form",
        ),
        (
            &[
                ("x-forwarded-uri", "/"),
                ("x-forwarded-host", "0x7f.1:8443"),
            ],
            "original URL's host is not in plain form",
        ),
        (
            &[("x-original-url", "http://0x7f.1/")],
            "original URL's host is not in plain form",
        ),
    ];
    for (pairs, reason) in table {
        assert_eq!(
            original_request(&headers(pairs), true),
            Err(BadOriginal(reason)),
            "{pairs:?}"
        );
    }
}

#[test]
fn original_request_headers_that_are_not_text_are_refused() {
    for name in ["x-original-url", "x-forwarded-uri", "x-forwarded-method"] {
        let mut h = headers(&[("x-forwarded-host", "a.example")]);
        h.insert(
            http::HeaderName::from_static(name),
            HeaderValue::from_bytes(b"/caf\xe9").unwrap(),
        );
        assert_eq!(
            original_request(&h, true),
            Err(BadOriginal("original request header is not text")),
            "{name}"
        );
    }
}

#[test]
fn an_original_url_with_dot_segments_or_encoded_slashes_is_refused_before_parsing() {
    // the URL parser would resolve these to another path than the app sees
    for uri in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin?x=1",
        "/./admin",
        "/public%2f..%2fadmin",
        "/public%5c..%5cadmin",
        "/..;/admin",
        "/a%00",
    ] {
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-uri", uri),
        ]);
        assert!(original_request(&h, true).is_err(), "X-Forwarded-Uri {uri}");
        let h = headers(&[("x-original-url", &format!("https://app.example{uri}"))]);
        assert!(original_request(&h, true).is_err(), "X-Original-URL {uri}");
    }
    // dots in a query or elsewhere in a name are fine
    let h = headers(&[("x-original-url", "https://app.example/a.b/c?next=/../x")]);
    assert_eq!(
        original_request(&h, true).unwrap().unwrap().url.path(),
        "/a.b/c"
    );
    let h = headers(&[("x-original-url", "https://app.example?x=/../")]);
    assert!(original_request(&h, true).unwrap().is_some());
}

#[test]
fn an_original_url_with_only_a_password_is_refused_like_any_credentials() {
    // found by the property test: `https::1@host` is a password, no user
    for url in [
        "https::1@app.example/",
        "https://:pw@app.example/",
        "https://u@app.example/",
    ] {
        let h = headers(&[("x-original-url", url)]);
        assert!(original_request(&h, true).is_err(), "{url}");
    }
}

#[test]
fn the_raw_path_of_an_absolute_url_is_what_follows_the_authority() {
    for (url, path) in [
        ("https://a.example/x/y?q=1#f", "/x/y"),
        ("https://a.example", "/"),
        ("https://a.example?q=/x", "/"),
        ("https://a.example#/x", "/"),
        ("https://a.example:8443/%2e%2e", "/%2e%2e"),
        ("/only/a/path", "/only/a/path"),
    ] {
        assert_eq!(raw_path(url), path, "{url}");
    }
}

#[test]
fn a_forwarded_host_is_marked_as_forwarded() {
    let h = headers(&[("x-forwarded-host", "app.example"), ("host", "gh:4180")]);
    let o = origin(&h, &Uri::from_static("/"), false, true);
    assert_eq!(o.host.as_deref(), Some("app.example"));
    assert!(o.host_forwarded);
    let o = origin(&h, &Uri::from_static("/"), false, false);
    assert_eq!(o.host.as_deref(), Some("gh:4180"));
    assert!(!o.host_forwarded);
    let h = headers(&[("host", "gh:4180")]);
    assert!(!origin(&h, &Uri::from_static("/"), false, true).host_forwarded);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Forwarding header values built from the pieces that matter.
    fn value() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("https"),
            Just("http"),
            Just("HTTPS"),
            Just("ftp"),
            Just("://"),
            Just("/"),
            Just(".."),
            Just("%2e"),
            Just("%2f"),
            Just("@"),
            Just(":"),
            Just(","),
            Just(" "),
            Just("?"),
            Just("#"),
            Just("app.example"),
            Just("evil.test"),
            Just("10.0.0.1"),
            Just("::1"),
            Just("8443"),
            Just("GET"),
            Just("x"),
        ];
        let uri = prop_oneof![
            Just("/a/../b"),
            Just("/a/%2e%2E/b"),
            Just("/a%2fb"),
            Just("/..;/b"),
            Just("/a/b"),
            Just("/"),
        ];
        prop_oneof![
            proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat()),
            "[ -~]{0,20}",
            (
                prop_oneof![
                    Just(""),
                    Just("http://app.example"),
                    Just("https://evil.test:8443")
                ],
                uri
            )
                .prop_map(|(a, u)| format!("{a}{u}")),
        ]
    }

    const NAMES: &[&str] = &[
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-for",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-original-url",
        "host",
    ];

    fn header_map() -> impl Strategy<Value = HeaderMap> {
        proptest::collection::vec((proptest::sample::select(NAMES), value()), 0..8).prop_map(
            |pairs| {
                let mut h = HeaderMap::new();
                for (n, v) in pairs {
                    if let Ok(v) = HeaderValue::from_str(&v) {
                        h.append(n, v);
                    }
                }
                h
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// From a peer that is not trusted, no forwarded header is believed:
        /// scheme from the connection, host from the request itself, the
        /// client chain is the peer alone, no original request.
        #[test]
        fn nothing_forwarded_is_believed_from_an_untrusted_peer(h in header_map(), tls in any::<bool>()) {
            let peer: IpAddr = "192.0.2.7".parse().unwrap();
            let o = origin(&h, &Uri::from_static("/"), tls, false);
            prop_assert_eq!(o.proto, if tls { "https" } else { "http" });
            prop_assert!(!o.host_forwarded && !o.trusted);
            let own_host = h.get("host").and_then(|v| v.to_str().ok());
            prop_assert!(o.host.is_none() || o.host.as_deref() == own_host);
            prop_assert_eq!(forwarded_for(&h, peer, false).unwrap(), "192.0.2.7");
            prop_assert_eq!(original_request(&h, false), Ok(None));
        }

        /// From a trusted peer anything may come, but whatever is accepted
        /// is well formed: http(s), a host, no credentials, a path that
        /// passes the path check as it was sent, a chain of addresses.
        #[test]
        fn what_a_trusted_peer_says_is_accepted_only_well_formed(h in header_map(), tls in any::<bool>()) {
            let peer: IpAddr = "10.0.0.9".parse().unwrap();
            let o = origin(&h, &Uri::from_static("/"), tls, true);
            prop_assert!(matches!(o.proto, "http" | "https"));
            if let Some(host) = &o.host {
                prop_assert!(host.parse::<http::uri::Authority>().is_ok());
            }
            let chain = forwarded_for(&h, peer, true).unwrap();
            for hop in chain.to_str().unwrap().split(", ") {
                prop_assert!(hop.parse::<IpAddr>().is_ok(), "{}", hop);
            }
            if let Ok(Some(req)) = original_request(&h, true) {
                prop_assert!(matches!(req.url.scheme(), "http" | "https"));
                prop_assert!(req.url.host_str().is_some());
                prop_assert!(req.url.username().is_empty() && req.url.password().is_none());
                prop_assert!(crate::http::path::check(req.url.path()).is_ok(), "{}", req.url);
                // and the path as the front proxy sent it, before the URL
                // parser resolved anything, passes the path check too
                let text = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
                let sent = match (text("x-original-url"), text("x-forwarded-uri")) {
                    (Some(u), _) => raw_path(u),
                    (None, Some(u)) => u.split(['?', '#']).next().unwrap_or(u),
                    (None, None) => "/",
                };
                prop_assert!(crate::http::path::check(sent).is_ok(), "{:?} sent as {:?}", req.url, sent);
            }
        }
    }
}

#[test]
fn ip_text_is_the_usual_form_of_every_address_even_the_longest() {
    for ip in [
        "192.0.2.1",
        "255.255.255.255",
        "2001:db8::1",
        "::",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:255.255.255.255",
        "0:0:0:0:0:ffff:255.255.255.255",
    ] {
        let addr: std::net::IpAddr = ip.parse().unwrap();
        assert_eq!(IpText::new(addr).as_str(), addr.to_string(), "{ip}");
    }
}
