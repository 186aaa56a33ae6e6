use super::*;
use std::time::Duration;

fn cfg() -> CookieConfig {
    CookieConfig {
        name: "_gatehouse".into(),
        domain: None,
        secure: true,
        expire: Duration::from_secs(3600),
        refresh: None,
        secrets: vec![Secret::new("0123456789abcdef0123456789abcdef")],
    }
}

const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "gatehouse";

fn codec(secret: &str) -> CookieCodec {
    CookieCodec::new(&[Secret::new(secret)], ISSUER, CLIENT).unwrap()
}

fn identity(groups: usize) -> Session {
    Session {
        id: SessionId::from_bytes([7; 16]),
        provider_sid: Some("op-session-1".into()),
        provider: None,
        issuer: ISSUER.into(),
        issued_at_ms: 1_700_000_000_000,
        secret: None,
        identity: user(groups),
    }
}

fn user(groups: usize) -> Identity {
    Identity {
        subject: "user-1".into(),
        email: Some("a@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("alice".into()),
        name: Some("Alice".into()),
        groups: (0..groups).map(|i| format!("group-{i}")).collect(),
        roles: vec!["user".into(), "gatehouse:editor".into()],
        extra_headers: vec![("x-forwarded-phone".into(), "+15555550100".into())],
        expires_at: now_secs() + 3600,
        refreshed_at: now_secs(),
        acr: Some("urn:example:loa:2".into()),
        auth_time: Some(now_secs() - 30),
        tokens: Tokens {
            access_token_expires_at: Some(now_secs() + 900),
            refresh_token: Some(Secret::new("rt-1")),
            ..Tokens::default()
        },
        header_values: Default::default(),
    }
}

/// Turns Set-Cookie values into the Cookie header a browser would send.
fn as_request(set: &[HeaderValue]) -> HeaderMap {
    let pairs: Vec<String> = set
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .filter(|p| !p.ends_with('='))
        .collect();
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, pairs.join("; ").parse().unwrap());
    h
}

#[test]
fn a_session_round_trips() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let set = write_session(&c, &cfg(), &identity(2), &HeaderMap::new()).unwrap();
    assert_eq!(set.len(), 1);
    let v = set[0].to_str().unwrap();
    assert!(
        v.contains("HttpOnly")
            && v.contains("Secure")
            && v.contains("SameSite=Lax")
            && v.contains("Path=/")
    );
    assert_eq!(
        read_session(&c, &cfg(), &as_request(&set)).unwrap(),
        identity(2)
    );
}

#[test]
fn a_large_session_is_chunked_and_read_back() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let big = identity(300);
    let set = write_session(&c, &cfg(), &big, &HeaderMap::new()).unwrap();
    assert!(set.len() > 1, "expected chunks");
    assert!(set.iter().all(|v| v.len() < 4096));
    assert!(set[0].to_str().unwrap().starts_with("_gatehouse_0="));
    assert_eq!(read_session(&c, &cfg(), &as_request(&set)).unwrap(), big);
}

#[test]
fn stale_chunks_are_cleared_when_the_session_shrinks() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let mut old = HeaderMap::new();
    old.insert(
        http::header::COOKIE,
        "_gatehouse_0=a; _gatehouse_1=b".parse().unwrap(),
    );
    let set = write_session(&c, &cfg(), &identity(1), &old).unwrap();
    let text: Vec<&str> = set.iter().map(|v| v.to_str().unwrap()).collect();
    assert!(
        text.iter()
            .any(|v| v.starts_with("_gatehouse=") && !v.starts_with("_gatehouse=;"))
    );
    assert!(
        text.iter()
            .any(|v| v.starts_with("_gatehouse_0=;") && v.contains("Max-Age=0"))
    );
    assert!(text.iter().any(|v| v.starts_with("_gatehouse_1=;")));
}

#[test]
fn tampered_truncated_foreign_and_expired_cookies_are_no_session() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let set = write_session(&c, &cfg(), &identity(1), &HeaderMap::new()).unwrap();
    let good = set[0]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let mut flipped = good.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases = [
        flipped,
        good[..good.len() - 4].to_owned(),
        "".to_owned(),
        "!!!not base64!!!".to_owned(),
        "A".repeat(CHUNK_LEN * MAX_CHUNKS + 1),
        "AAAA".to_owned(),
    ];
    for value in cases {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            format!("_gatehouse={value}").parse().unwrap(),
        );
        assert!(read_session(&c, &cfg(), &h).is_none(), "{value:.40}");
    }
    // sealed with another key
    let foreign = codec("ffffffffffffffffffffffffffffffff");
    assert!(read_session(&foreign, &cfg(), &as_request(&set)).is_none());
    // sealed for another purpose (a login-state cookie replayed as a session)
    let sealed = c.seal("_gatehouse_csrf_x", b"{}").unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("_gatehouse={sealed}").parse().unwrap(),
    );
    assert!(read_session(&c, &cfg(), &h).is_none());
    // expired
    let mut old = identity(1);
    old.identity.expires_at = now_secs() - 1;
    let set = write_session(&c, &cfg(), &old, &HeaderMap::new()).unwrap();
    assert!(read_session(&c, &cfg(), &as_request(&set)).is_none());
}

#[test]
fn a_cookie_sealed_for_another_issuer_or_client_is_refused() {
    let secret = [Secret::new("0123456789abcdef0123456789abcdef")];
    let here = codec("0123456789abcdef0123456789abcdef");
    let set = write_session(&here, &cfg(), &identity(1), &HeaderMap::new()).unwrap();
    assert!(read_session(&here, &cfg(), &as_request(&set)).is_some());
    // same secret, another deployment: another issuer, or another client
    let other_issuer = CookieCodec::new(&secret, "https://other.example.com", CLIENT).unwrap();
    let other_client = CookieCodec::new(&secret, ISSUER, "another-client").unwrap();
    assert!(read_session(&other_issuer, &cfg(), &as_request(&set)).is_none());
    assert!(read_session(&other_client, &cfg(), &as_request(&set)).is_none());
    // the binding cannot be shifted between issuer and client id
    let shifted = CookieCodec::new(&secret, "https://idp.example.comg", "atehouse").unwrap();
    assert!(read_session(&shifted, &cfg(), &as_request(&set)).is_none());
}

#[test]
fn session_ids_are_random_and_round_trip() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let a = SessionId::random(&c).unwrap();
    let b = SessionId::random(&c).unwrap();
    assert_ne!(a, b);
    assert_eq!(SessionId::decode(&a.encode()), Some(a));
    for bad in ["", "AAAA", "!!!", &"A".repeat(40)] {
        assert_eq!(SessionId::decode(bad), None, "{bad}");
    }
    // the payload keeps id, provider sid, issuer and login time
    let s = identity(0);
    let back = Session::from_bytes(&s.to_bytes().unwrap()).unwrap();
    assert_eq!(back, s);
    // another payload version is no session
    let v1 = String::from_utf8(s.to_bytes().unwrap())
        .unwrap()
        .replace("\"v\":2", "\"v\":1");
    assert!(Session::from_bytes(v1.as_bytes()).is_none());
}

#[test]
fn more_chunks_than_the_bound_are_not_read() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let cookie: Vec<String> = (0..MAX_CHUNKS + 5)
        .map(|i| format!("_gatehouse_{i}=AAAA"))
        .collect();
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, cookie.join("; ").parse().unwrap());
    assert!(read_session(&c, &cfg(), &h).is_none());
}

#[test]
fn rotated_secrets_still_open_old_cookies() {
    let old = codec("old-secret-old-secret-old-secret");
    let rotated = CookieCodec::new(
        &[
            Secret::new("new-secret-new-secret-new-secret"),
            Secret::new("old-secret-old-secret-old-secret"),
        ],
        ISSUER,
        CLIENT,
    )
    .unwrap();
    let set = write_session(&old, &cfg(), &identity(1), &HeaderMap::new()).unwrap();
    assert!(read_session(&rotated, &cfg(), &as_request(&set)).is_some());
    // and the new key seals: the old codec cannot read the rotated cookie
    let set = write_session(&rotated, &cfg(), &identity(1), &HeaderMap::new()).unwrap();
    assert!(read_session(&old, &cfg(), &as_request(&set)).is_none());
}

#[test]
fn login_state_is_per_state_and_checked() {
    let c = codec("0123456789abcdef0123456789abcdef");
    let login = |state: &str, exp: u64| LoginState {
        state: state.into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        return_to: "/".into(),
        redirect_uri: "https://app.example.com/oauth2/callback".into(),
        provider: None,
        exp,
        acr_values: None,
        max_age: None,
    };
    let a = write_login_state(&c, &cfg(), &login("state-a", now_secs() + 60)).unwrap();
    let b = write_login_state(&c, &cfg(), &login("state-b", now_secs() + 60)).unwrap();
    let h = as_request(&[a, b]);
    assert_eq!(
        read_login_state(&c, &cfg(), &h, "state-a").unwrap().state,
        "state-a"
    );
    assert_eq!(
        read_login_state(&c, &cfg(), &h, "state-b").unwrap().state,
        "state-b"
    );
    assert_eq!(
        read_login_state(&c, &cfg(), &h, "state-c").unwrap_err(),
        LoginStateError::Missing
    );
    let stale = write_login_state(&c, &cfg(), &login("state-d", now_secs() - 1)).unwrap();
    assert_eq!(
        read_login_state(&c, &cfg(), &as_request(&[stale]), "state-d").unwrap_err(),
        LoginStateError::Expired
    );
    // a cookie moved to another state's name does not open
    let moved = format!(
        "{}={}",
        login_cookie_name("_gatehouse", "state-e"),
        h.get(http::header::COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
    );
    let mut m = HeaderMap::new();
    m.insert(http::header::COOKIE, moved.parse().unwrap());
    assert_eq!(
        read_login_state(&c, &cfg(), &m, "state-e").unwrap_err(),
        LoginStateError::Invalid
    );
}

#[test]
fn own_cookie_names() {
    assert!(is_session_cookie("_gatehouse", "_gatehouse"));
    assert!(is_session_cookie("_gatehouse_3", "_gatehouse"));
    assert!(!is_session_cookie("_gatehouse_x", "_gatehouse"));
    assert!(!is_session_cookie("_gatehousex", "_gatehouse"));
    assert!(is_own_cookie("_gatehouse_csrf_abc", "_gatehouse"));
}

/// A `Cookie` header from raw bytes, as a client may send it.
fn cookie_header(raw: &[u8]) -> HeaderMap {
    let mut m = HeaderMap::new();
    m.append(http::header::COOKIE, HeaderValue::from_bytes(raw).unwrap());
    m
}

#[test]
fn one_malformed_or_non_ascii_cookie_pair_loses_only_that_pair() {
    // (header, the session value read from it)
    let cases: &[(&[u8], Option<&str>)] = &[
        (b"a=1; _gatehouse=S", Some("S")),
        (
            "a=1; caf\u{e9}=cr\u{e8}me; _gatehouse=S".as_bytes(),
            Some("S"),
        ),
        (b"x=\xff\xfe; _gatehouse=S; y=\x80", Some("S")),
        (b"\xff=1; _gatehouse=S", Some("S")),
        (b"novalue; _gatehouse=S", Some("S")),
        (b"=x; _gatehouse=S", Some("S")),
        (b"a b=1; _gatehouse=S", Some("S")),
        (b";;; ; _gatehouse=S;", Some("S")),
        (b"a=1\t2; _gatehouse=S", Some("S")),
        (b"  _gatehouse =  S  ", Some("S")),
        (b"_gatehouse=\"S\"", Some("S")),
        (
            "_gatehouse_0=AB; z=\u{fc}; _gatehouse_1=CD".as_bytes(),
            Some("ABCD"),
        ),
        // the session pair itself is the bad one: it is lost, nothing else
        ("_gatehouse=S\u{e9}".as_bytes(), None),
        (b"\"_gatehouse\"=S", None),
        (b"_gatehouse\xff=S", None),
        (b"_gate house=S", None),
    ];
    for (raw, want) in cases {
        let h = cookie_header(raw);
        assert_eq!(
            session_cookie_value(&h, "_gatehouse").as_deref(),
            *want,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    // and the other pairs of such a header all survive
    let h = cookie_header(b"a=1; x=\xff; b=2; c d=3; e=\"q\"; =4; f");
    let got: Vec<(&str, &str)> = request_cookies(&h).collect();
    assert_eq!(got, [("a", "1"), ("b", "2"), ("e", "q")]);
}

#[test]
fn starting_a_login_expires_the_oldest_login_states_beyond_the_bound() {
    let codec = codec("0123456789abcdef0123456789abcdef");
    let cfg = cfg();
    let now = now_secs();
    let mut pairs = Vec::new();
    // six logins in flight, started one second apart, plus one garbage cookie
    for i in 0..6u64 {
        let login = LoginState {
            state: format!("state-{i}"),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            redirect_uri: "https://app.example.com/oauth2/callback".into(),
            provider: None,
            exp: now + LOGIN_TTL_SECS - 10 + i,
            acr_values: None,
            max_age: None,
        };
        let set = write_login_state(&codec, &cfg, &login).unwrap();
        let c = cookie::Cookie::parse(set.to_str().unwrap().to_owned()).unwrap();
        pairs.push(format!("{}={}", c.name(), c.value()));
    }
    pairs.push(format!("{}_csrf_garbage=xyz", cfg.name));
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&pairs.join("; ")).unwrap(),
    );
    let cleared: Vec<String> = prune_login_states(&codec, &cfg, &headers)
        .iter()
        .map(|v| {
            let c = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
            assert_eq!(c.value(), "", "a clearing cookie carries no value");
            c.name().to_owned()
        })
        .collect();
    // 7 present, room for the new one: keep the newest MAX - 1
    assert_eq!(cleared.len(), 7 - (MAX_LOGINS_IN_FLIGHT - 1));
    assert!(cleared.contains(&format!("{}_csrf_garbage", cfg.name)));
    for i in 0..(6 - (MAX_LOGINS_IN_FLIGHT - 1)) {
        assert!(cleared.contains(&login_cookie_name(&cfg.name, &format!("state-{i}"))));
    }
    // below the bound nothing is cleared
    assert!(prune_login_states(&codec, &cfg, &HeaderMap::new()).is_empty());
}

#[test]
fn hex_is_lower_case_two_digits_per_byte() {
    assert_eq!(hex(&[]), "");
    assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
}
