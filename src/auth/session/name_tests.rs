//! Session cookie names and the rules for joining a value: one strict
//! parser, and duplicates or mixes mean no session (issue 9, item 10).

use super::*;

const BASE: &str = "__Host-gatehouse";

#[test]
fn session_part_accepts_only_the_name_and_canonical_chunk_numbers_in_range() {
    let cases: &[(&str, Option<SessionPart>)] = &[
        ("__Host-gatehouse", Some(SessionPart::Whole)),
        ("__Host-gatehouse_0", Some(SessionPart::Chunk(0))),
        ("__Host-gatehouse_1", Some(SessionPart::Chunk(1))),
        (
            "__Host-gatehouse_7",
            Some(SessionPart::Chunk(MAX_CHUNKS - 1)),
        ),
        // out of range, not canonical, or not a number at all
        ("__Host-gatehouse_8", None),
        ("__Host-gatehouse_10", None),
        ("__Host-gatehouse_00", None),
        ("__Host-gatehouse_01", None),
        ("__Host-gatehouse_+1", None),
        ("__Host-gatehouse_-1", None),
        ("__Host-gatehouse_ 1", None),
        ("__Host-gatehouse_1 ", None),
        ("__Host-gatehouse_", None),
        ("__Host-gatehouse__1", None),
        ("__Host-gatehouse_1_", None),
        ("__Host-gatehouse_x", None),
        ("__Host-gatehouse_\u{661}", None),
        ("__Host-gatehouse_99999999999999999999999", None),
        ("__Host-gatehouse_csrf_abc", None),
        ("__Host-gatehousex", None),
        ("__host-gatehouse", None),
        ("_gatehouse", None),
        ("", None),
    ];
    for (name, want) in cases {
        assert_eq!(session_part(name, BASE), *want, "{name:?}");
        assert_eq!(is_session_cookie(name, BASE), want.is_some(), "{name:?}");
    }
}

fn join(pairs: &[(&str, &str)]) -> Option<String> {
    join_session_value(pairs.iter().copied(), BASE).map(std::borrow::Cow::into_owned)
}

#[test]
fn a_whole_cookie_or_gapless_chunks_make_a_value() {
    assert_eq!(join(&[("__Host-gatehouse", "V")]).as_deref(), Some("V"));
    assert_eq!(
        join(&[("a", "1"), ("__Host-gatehouse", "V"), ("b", "2")]).as_deref(),
        Some("V")
    );
    // in any order
    assert_eq!(
        join(&[
            ("__Host-gatehouse_2", "C"),
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_1", "B"),
        ])
        .as_deref(),
        Some("ABC")
    );
    // names that are not ours do not count, however close
    assert_eq!(
        join(&[
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_01", "X"),
            ("__Host-gatehouse_+1", "X"),
            ("__Host-gatehouse_8", "X"),
            ("__Host-gatehouse_csrf_1", "X"),
        ])
        .as_deref(),
        Some("A")
    );
}

#[test]
fn duplicate_session_cookies_mean_no_session() {
    let cases: &[&[(&str, &str)]] = &[
        // the same whole cookie twice: a planted one beside ours
        &[
            ("__Host-gatehouse", "good"),
            ("__Host-gatehouse", "planted"),
        ],
        &[
            ("__Host-gatehouse", "planted"),
            ("__Host-gatehouse", "good"),
        ],
        // even with the same value: never pick one
        &[("__Host-gatehouse", "V"), ("__Host-gatehouse", "V")],
        // a chunk twice
        &[
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_1", "B"),
            ("__Host-gatehouse_1", "X"),
        ],
        &[
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_1", "B"),
        ],
    ];
    for pairs in cases {
        assert_eq!(join(pairs), None, "{pairs:?}");
    }
}

#[test]
fn a_whole_cookie_mixed_with_chunks_means_no_session() {
    for pairs in [
        &[("__Host-gatehouse", "V"), ("__Host-gatehouse_0", "A")][..],
        &[("__Host-gatehouse_0", "A"), ("__Host-gatehouse", "V")],
        &[
            ("__Host-gatehouse_0", "A"),
            ("__Host-gatehouse_1", "B"),
            ("__Host-gatehouse", "V"),
        ],
        // a stray chunk beside a whole cookie
        &[("__Host-gatehouse", "V"), ("__Host-gatehouse_5", "A")],
    ] {
        assert_eq!(join(pairs), None, "{pairs:?}");
    }
}

#[test]
fn chunks_with_a_gap_or_not_from_zero_or_empty_mean_no_session() {
    for pairs in [
        &[("__Host-gatehouse_0", "A"), ("__Host-gatehouse_2", "C")][..],
        &[("__Host-gatehouse_1", "B")],
        &[("__Host-gatehouse_1", "B"), ("__Host-gatehouse_2", "C")],
        &[("__Host-gatehouse_0", "A"), ("__Host-gatehouse_1", "")],
        &[("__Host-gatehouse", "")],
        &[],
    ] {
        assert_eq!(join(pairs), None, "{pairs:?}");
    }
}

#[test]
fn a_session_cookie_sent_twice_in_the_cookie_header_is_no_session() {
    let c = CookieCodec::new(
        &[Secret::new("0123456789abcdef0123456789abcdef")],
        "https://idp.example.com",
        "gatehouse",
    )
    .unwrap();
    let cfg = CookieConfig {
        name: BASE.to_owned(),
        domain: None,
        secure: true,
        expire: std::time::Duration::from_secs(3600),
        refresh: None,
        secrets: Vec::new(),
    };
    let session = Session {
        id: SessionId::from_bytes([3; 16]),
        provider_sid: None,
        provider: None,
        issuer: "https://idp.example.com".to_owned(),
        issued_at_ms: 0,
        secret: None,
        identity: Identity {
            subject: "user-1".to_owned(),
            expires_at: now_secs() + 3600,
            ..Identity::default()
        },
    };
    let sealed = c.seal(BASE, &session.to_bytes().unwrap()).unwrap();
    let mut one = HeaderMap::new();
    one.insert(
        http::header::COOKIE,
        format!("{BASE}={sealed}").parse().unwrap(),
    );
    assert!(read_session(&c, &cfg, &one).is_some());
    // the same pair again, in the same header or a second one
    let mut twice = HeaderMap::new();
    twice.insert(
        http::header::COOKIE,
        format!("{BASE}={sealed}; {BASE}=planted").parse().unwrap(),
    );
    assert!(read_session(&c, &cfg, &twice).is_none());
    let mut two_headers = one.clone();
    two_headers.append(
        http::header::COOKIE,
        format!("{BASE}={sealed}").parse().unwrap(),
    );
    assert!(read_session(&c, &cfg, &two_headers).is_none());
}

#[test]
fn a_login_state_cookie_sent_twice_is_refused() {
    let c = CookieCodec::new(
        &[Secret::new("0123456789abcdef0123456789abcdef")],
        "https://idp.example.com",
        "gatehouse",
    )
    .unwrap();
    let cfg = CookieConfig {
        name: BASE.to_owned(),
        domain: None,
        secure: true,
        expire: std::time::Duration::from_secs(3600),
        refresh: None,
        secrets: Vec::new(),
    };
    let login = LoginState {
        state: "state-1".to_owned(),
        nonce: "n".to_owned(),
        pkce_verifier: "v".to_owned(),
        return_to: "/".to_owned(),
        redirect_uri: "https://app.example.com/oauth2/callback".to_owned(),
        provider: None,
        exp: now_secs() + 60,
        acr_values: None,
        max_age: None,
    };
    let set = write_login_state(&c, &cfg, &login).unwrap();
    let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
    let mut once = HeaderMap::new();
    once.insert(http::header::COOKIE, pair.parse().unwrap());
    assert!(read_login_state(&c, &cfg, &once, "state-1").is_ok());
    let name = login_cookie_name(BASE, "state-1");
    let mut twice = HeaderMap::new();
    twice.insert(
        http::header::COOKIE,
        format!("{pair}; {name}=planted").parse().unwrap(),
    );
    assert_eq!(
        read_login_state(&c, &cfg, &twice, "state-1").err(),
        Some(LoginStateError::Invalid)
    );
}

#[test]
fn own_cookies_under_the_host_prefix_are_stripped_before_the_upstream_and_others_kept() {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        "a=1; __Host-gatehouse=S; __Host-gatehouse_0=c; __Host-gatehouse_csrf_x=l; \
         __Host-gatehousex=keep; __Host-gatehouse_01=keep; _gatehouse=keep; b=2"
            .parse()
            .unwrap(),
    );
    crate::auth::strip_own_cookies(&mut h, BASE);
    assert_eq!(
        h["cookie"],
        "a=1; __Host-gatehousex=keep; __Host-gatehouse_01=keep; _gatehouse=keep; b=2"
    );
    for own in [
        "__Host-gatehouse",
        "__Host-gatehouse_7",
        "__Host-gatehouse_csrf_abc",
    ] {
        assert!(is_own_cookie(own, BASE), "{own}");
    }
    for other in [
        "__Host-gatehouse_8",
        "__Host-gatehousex",
        "_gatehouse",
        "__host-gatehouse",
    ] {
        assert!(!is_own_cookie(other, BASE), "{other}");
    }
}
