//! The codec's exact promises: bounds (value length, chunk count, the
//! shortest sealed value), the exact cookie attributes, ids and their
//! encodings, and every refusal of the login-state check.

use std::time::Duration;

use super::*;

const ISSUER: &str = "https://idp.example.com";
const CLIENT: &str = "gatehouse";

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

fn codec() -> CookieCodec {
    CookieCodec::new(
        &[Secret::new("0123456789abcdef0123456789abcdef")],
        ISSUER,
        CLIENT,
    )
    .unwrap()
}

fn headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(http::header::COOKIE, cookie.parse().unwrap());
    h
}

fn names(set: &[HeaderValue]) -> Vec<String> {
    set.iter()
        .map(|v| {
            cookie::Cookie::parse(v.to_str().unwrap().to_owned())
                .unwrap()
                .name()
                .to_owned()
        })
        .collect()
}

#[test]
fn debug_output_shows_no_key_material() {
    assert_eq!(format!("{:?}", codec()), "CookieCodec { keys: 1 }");
    assert_eq!(
        format!("{:?}", SessionSecret([7; 32])),
        "SessionSecret([redacted])"
    );
    assert_eq!(
        format!("{:?}", SessionId::from_bytes([7; 16])),
        "SessionId(BwcHBw..)"
    );
}

#[test]
fn no_secret_is_an_error() {
    assert!(CookieCodec::new(&[], ISSUER, CLIENT).is_err());
}

#[test]
fn a_sealed_value_opens_only_for_its_purpose_and_up_to_the_length_bound() {
    let c = codec();
    let sealed = c.seal("a", b"plain").unwrap();
    assert_eq!(c.open("a", &sealed), Some(b"plain".to_vec()));
    assert_eq!(c.open("b", &sealed), None);
    assert_eq!(c.open("", &sealed), None);
    // the longest value read is exactly MAX_CHUNKS full chunks: 30400
    // base64 characters are 22800 bytes, of which 28 are nonce and tag
    let bound = CHUNK_LEN * MAX_CHUNKS;
    let plain = vec![b'x'; bound * 3 / 4 - NONCE_LEN - AES_256_GCM.tag_len()];
    let at_bound = c.seal("a", &plain).unwrap();
    assert_eq!(at_bound.len(), bound);
    assert_eq!(c.open("a", &at_bound), Some(plain.clone()));
    let over = c.seal("a", &[plain.as_slice(), b"x"].concat()).unwrap();
    assert!(over.len() > bound);
    assert_eq!(c.open("a", &over), None);
    // not base64, or too short to hold nonce and tag
    assert_eq!(c.open("a", "!!!!"), None);
    assert_eq!(c.open("a", ""), None);
}

#[test]
fn the_shortest_sealed_value_is_nonce_and_tag_and_opens_to_nothing() {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[3; 32]).unwrap());
    let rng = SystemRandom::new();
    let sealed = seal_with(&key, &rng, b"aad", b"").unwrap();
    assert_eq!(sealed.len(), NONCE_LEN + AES_256_GCM.tag_len());
    assert_eq!(open_with(&key, b"aad", &sealed), Some(Vec::new()));
    // nonce first, then ciphertext and tag
    let sealed = seal_with(&key, &rng, b"aad", b"abc").unwrap();
    assert_eq!(sealed.len(), NONCE_LEN + 3 + AES_256_GCM.tag_len());
    assert_eq!(open_with(&key, b"aad", &sealed), Some(b"abc".to_vec()));
    assert_eq!(open_with(&key, b"other", &sealed), None);
    assert_eq!(open_with(&key, b"aad", &sealed[..sealed.len() - 1]), None);
    assert_eq!(open_with(&key, b"aad", &sealed[..NONCE_LEN + 15]), None);
}

#[test]
fn random_tokens_are_32_bytes_of_url_safe_base64_and_differ() {
    let c = codec();
    let a = c.random_token().unwrap();
    let b = c.random_token().unwrap();
    assert_eq!(a.len(), 43);
    assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
    assert_ne!(a, b);
    let mut buf = [0u8; 32];
    assert_eq!(c.fill_random(&mut buf), Some(()));
    assert_ne!(buf, [0u8; 32]);
}

#[test]
fn a_session_id_keeps_its_bytes_and_encodes_as_url_safe_base64() {
    let id = SessionId::from_bytes([0xfb; 16]);
    assert_eq!(id.as_bytes(), &[0xfb; 16]);
    assert_eq!(id.encode(), "-_v7-_v7-_v7-_v7-_v7-w");
    assert_eq!(SessionId::decode("-_v7-_v7-_v7-_v7-_v7-w"), Some(id));
    assert_eq!(SessionId::decode(&URL_SAFE_NO_PAD.encode([1u8; 15])), None);
}

#[test]
fn clocks_read_the_current_time() {
    let secs = now_secs();
    let ms = now_millis();
    assert!(secs > 1_700_000_000, "{secs}");
    assert!(ms / 1000 >= secs && ms / 1000 <= secs + 1, "{ms} vs {secs}");
}

fn session(expires_at: u64) -> Session {
    Session {
        id: SessionId::from_bytes([9; 16]),
        provider_sid: None,
        provider: None,
        issuer: ISSUER.into(),
        issued_at_ms: 1,
        secret: None,
        identity: crate::auth::identity::Identity {
            subject: "alice".into(),
            expires_at,
            ..Default::default()
        },
    }
}

#[test]
fn a_payload_of_another_version_or_expired_is_no_session() {
    let live = session(now_secs() + 60).to_bytes().unwrap();
    assert!(Session::from_bytes(&live).is_some());
    let text = String::from_utf8(live).unwrap();
    // another version alone, with a live expiry
    let v3 = text.replace("\"v\":2", "\"v\":3");
    assert!(Session::from_bytes(v3.as_bytes()).is_none());
    // expiry alone, with the right version: ends at its second
    let now = session(now_secs()).to_bytes().unwrap();
    assert!(Session::from_bytes(&now).is_none());
    assert!(Session::from_bytes(b"{}").is_none());
}

#[test]
fn set_cookie_has_exact_attributes_and_deletion_expires_it() {
    let mut c = cfg();
    let v = set_cookie(&c, "_gatehouse", "abc", Some(60)).unwrap();
    assert_eq!(
        v,
        "_gatehouse=abc; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=60"
    );
    c.secure = false;
    c.domain = Some("example.com".into());
    let d = set_cookie(&c, "_gatehouse_1", "", None).unwrap();
    assert_eq!(
        d,
        "_gatehouse_1=; HttpOnly; SameSite=Lax; Path=/; Domain=example.com; Max-Age=0; \
         Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    );
}

#[test]
fn a_session_value_is_written_in_at_most_max_chunks_and_max_age_counts_down() {
    let c = cfg();
    let exp = now_secs() + 100;
    let one = session_cookies(&c, &"a".repeat(CHUNK_LEN), exp, &HeaderMap::new()).unwrap();
    assert_eq!(names(&one), ["_gatehouse"]);
    let age = one[0].to_str().unwrap();
    assert!(
        age.ends_with("Max-Age=100") || age.ends_with("Max-Age=99"),
        "{age}"
    );
    let two = session_cookies(&c, &"a".repeat(CHUNK_LEN + 1), exp, &HeaderMap::new()).unwrap();
    assert_eq!(names(&two), ["_gatehouse_0", "_gatehouse_1"]);
    let full = session_cookies(
        &c,
        &"a".repeat(CHUNK_LEN * MAX_CHUNKS),
        exp,
        &HeaderMap::new(),
    )
    .unwrap();
    assert_eq!(full.len(), MAX_CHUNKS);
    assert!(
        session_cookies(
            &c,
            &"a".repeat(CHUNK_LEN * MAX_CHUNKS + 1),
            exp,
            &HeaderMap::new()
        )
        .is_none()
    );
    // a whole cookie replaced by chunks is cleared, chunks still in use are not
    let req = headers("_gatehouse=old; _gatehouse_1=old; other=1");
    let set = session_cookies(&c, &"a".repeat(CHUNK_LEN + 1), exp, &req).unwrap();
    assert_eq!(names(&set), ["_gatehouse_0", "_gatehouse_1", "_gatehouse"]);
    assert!(set[2].to_str().unwrap().contains("Max-Age=0"));
}

#[test]
fn clearing_deletes_every_session_cookie_present_or_the_base_name() {
    let c = cfg();
    assert_eq!(names(&clear_session(&c, &HeaderMap::new())), ["_gatehouse"]);
    let req = headers("_gatehouse_1=b; x=1; _gatehouse_0=a; _gatehouse_0=a; _gatehouse_csrf_x=1");
    let cleared = clear_session(&c, &req);
    assert_eq!(names(&cleared), ["_gatehouse_0", "_gatehouse_1"]);
    assert!(
        cleared
            .iter()
            .all(|v| v.to_str().unwrap().contains("Max-Age=0"))
    );
}

#[test]
fn session_cookie_names_are_the_base_or_a_canonical_chunk_below_the_bound() {
    let base = "_gatehouse";
    for yes in ["_gatehouse", "_gatehouse_0", "_gatehouse_7"] {
        assert!(is_session_cookie(yes, base), "{yes}");
        assert!(is_own_cookie(yes, base), "{yes}");
    }
    for no in [
        "_gatehouse_",
        "_gatehouse_8",
        "_gatehouse_12",
        "_gatehouse_01",
        "_gatehouse_+1",
        "_gatehouse_123",
        "_gatehouse_1a",
        "_gatehouse0",
        "_gatehous",
        "x_gatehouse",
        "_gatehouse_csrf_abc",
    ] {
        assert!(!is_session_cookie(no, base), "{no}");
    }
    assert!(is_own_cookie("_gatehouse_csrf_abc", base));
    assert!(!is_own_cookie("_gatehouse_csr", base));
    assert!(!is_own_cookie("other_csrf_abc", base));
    assert!(!is_own_cookie("other", base));
}

#[test]
fn a_session_value_is_the_whole_cookie_or_gapless_chunks_and_nothing_ambiguous() {
    let base = "_gatehouse";
    // a whole cookie is borrowed from the header, not copied
    let h = headers("_gatehouse=W");
    assert!(matches!(
        session_cookie_value(&h, base),
        Some(std::borrow::Cow::Borrowed("W"))
    ));
    let v = |c: &str| session_cookie_value(&headers(c), base).map(std::borrow::Cow::into_owned);
    assert_eq!(v("_gatehouse_1=B; _gatehouse_0=A").as_deref(), Some("AB"));
    // a whole cookie beside chunks, or a gap: no value, never a guess
    assert_eq!(v("_gatehouse_0=A; _gatehouse=W"), None);
    assert_eq!(v("_gatehouse_0=A; _gatehouse_2=C"), None);
    assert_eq!(v("_gatehouse_1=B"), None);
    assert_eq!(v("other=1"), None);
    assert_eq!(v("_gatehouse_0="), None);
    // chunk indexes beyond the bound are ignored, not a panic
    assert_eq!(v("_gatehouse_0=A; _gatehouse_99=Z").as_deref(), Some("A"));
    assert_eq!(v("_gatehousex=1"), None);
}

#[test]
fn cookie_pairs_split_every_header_on_semicolons() {
    let mut h = HeaderMap::new();
    h.append(http::header::COOKIE, "a=1;b=2".parse().unwrap());
    h.append(http::header::COOKIE, "c=\"3\"".parse().unwrap());
    let got: Vec<(&str, &str, &str)> = cookie_pairs(&h)
        .map(|p| (p.name, p.value, p.pair))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "1", "a=1"),
            ("b", "2", "b=2"),
            ("c", "\"3\"", "c=\"3\"")
        ]
    );
    let got: Vec<(&str, &str)> = request_cookies(&h).collect();
    assert_eq!(got, [("a", "1"), ("b", "2"), ("c", "3")]);
    // tabs around a pair are trimmed; a tab inside the value is refused
    let h = headers("\ta=1\t; b=x\ty; ok=2");
    let got: Vec<(&str, &str)> = request_cookies(&h).collect();
    assert_eq!(got, [("a", "1"), ("ok", "2")]);
}

#[test]
fn the_login_cookie_name_is_a_short_digest_of_the_state() {
    let name = login_cookie_name("_gatehouse", "state-a");
    let digest = ring::digest::digest(&ring::digest::SHA256, b"state-a");
    assert_eq!(
        name,
        format!(
            "_gatehouse_csrf_{}",
            URL_SAFE_NO_PAD.encode(&digest.as_ref()[..9])
        )
    );
    assert_eq!(name.len(), "_gatehouse_csrf_".len() + 12);
    assert_ne!(name, login_cookie_name("_gatehouse", "state-b"));
}

fn login(state: &str, exp: u64) -> LoginState {
    LoginState {
        state: state.into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        return_to: "/".into(),
        redirect_uri: "https://app.example.com/oauth2/callback".into(),
        provider: None,
        exp,
        acr_values: None,
        max_age: None,
    }
}

#[test]
fn a_login_state_cookie_lives_login_ttl_and_is_named_for_its_state() {
    let c = codec();
    let v = write_login_state(&c, &cfg(), &login("s1", now_secs() + 60)).unwrap();
    let parsed = cookie::Cookie::parse(v.to_str().unwrap().to_owned()).unwrap();
    assert_eq!(parsed.name(), login_cookie_name("_gatehouse", "s1"));
    assert_eq!(parsed.max_age(), Some(cookie::time::Duration::seconds(600)));
    assert_eq!(parsed.http_only(), Some(true));
}

#[test]
fn a_login_state_is_refused_when_sealed_for_its_name_but_holding_another_state() {
    let c = codec();
    let cfg = cfg();
    let name = login_cookie_name(&cfg.name, "wanted");
    // sealed for the right cookie name, but carrying another state
    let sealed = c
        .seal(
            &name,
            &serde_json::to_vec(&login("other", now_secs() + 60)).unwrap(),
        )
        .unwrap();
    let h = headers(&format!("{name}={sealed}"));
    assert_eq!(
        read_login_state(&c, &cfg, &h, "wanted").unwrap_err(),
        LoginStateError::Invalid
    );
    // not a login state at all
    let junk = c.seal(&name, b"[1,2]").unwrap();
    let h = headers(&format!("{name}={junk}"));
    assert_eq!(
        read_login_state(&c, &cfg, &h, "wanted").unwrap_err(),
        LoginStateError::Invalid
    );
    // expiring this second is expired; another cookie before it is skipped
    let now = c
        .seal(
            &name,
            &serde_json::to_vec(&login("wanted", now_secs())).unwrap(),
        )
        .unwrap();
    let h = headers(&format!("a=1; {name}={now}"));
    assert_eq!(
        read_login_state(&c, &cfg, &h, "wanted").unwrap_err(),
        LoginStateError::Expired
    );
    let live = c
        .seal(
            &name,
            &serde_json::to_vec(&login("wanted", now_secs() + 5)).unwrap(),
        )
        .unwrap();
    let h = headers(&format!("a=1; {name}={live}"));
    assert_eq!(
        read_login_state(&c, &cfg, &h, "wanted").unwrap().state,
        "wanted"
    );
}

#[test]
fn pruning_drops_expired_login_states_before_live_ones_and_counts_duplicates_once() {
    let c = codec();
    let cfg = cfg();
    let now = now_secs();
    let pair = |state: &str, exp: u64| {
        let name = login_cookie_name(&cfg.name, state);
        let sealed = c
            .seal(&name, &serde_json::to_vec(&login(state, exp)).unwrap())
            .unwrap();
        format!("{name}={sealed}")
    };
    // four logins: one expired (this second), three live; the expired one
    // has the latest expiry of all once misread as live. The newest is sent
    // twice: it is one login in flight, not two
    let cookies = [
        pair("expired", now),
        pair("a", now + 100),
        pair("b", now + 200),
        pair("c", now + 300),
        pair("c", now + 300),
    ];
    let cleared = names(&prune_login_states(&c, &cfg, &headers(&cookies.join("; "))));
    assert_eq!(cleared, [login_cookie_name(&cfg.name, "expired")]);
}

#[test]
fn constant_time_eq_is_byte_equality() {
    for (a, b, eq) in [
        (&b""[..], &b""[..], true),
        (b"abc", b"abc", true),
        (b"abc", b"abd", false),
        (b"abc", b"ab", false),
        (b"ab", b"abc", false),
        (b"\x01", b"\x03", false),
        (b"\x03", b"\x01", false),
        (b"\x00", b"\x01", false),
        (b"\x01\x02", b"\x01\x01", false),
        (b"\xff", b"\xff", true),
        // two differences that cancel out when folded with xor
        (b"\x01\x02", b"\x00\x03", false),
    ] {
        assert_eq!(constant_time_eq(a, b), eq, "{a:?} {b:?}");
    }
}

#[test]
fn a_session_keeps_its_provider_and_one_written_before_providers_is_the_primary_providers() {
    let mut corp = session(now_secs() + 60);
    corp.provider = Some("corp".into());
    let bytes = corp.to_bytes().unwrap();
    assert!(String::from_utf8_lossy(&bytes).contains("\"pv\":\"corp\""));
    assert_eq!(
        Session::from_bytes(&bytes).unwrap().provider.as_deref(),
        Some("corp")
    );
    // the primary provider's sessions carry nothing more than before, and
    // one sealed before there were providers is the primary provider's
    let primary = session(now_secs() + 60).to_bytes().unwrap();
    assert!(!String::from_utf8_lossy(&primary).contains("pv"));
    assert_eq!(Session::from_bytes(&primary).unwrap().provider, None);
    // a login state likewise
    let mut l = login("s", now_secs() + 60);
    l.provider = Some("corp".into());
    let json = serde_json::to_string(&l).unwrap();
    let back: LoginState = serde_json::from_str(&json).unwrap();
    assert_eq!(back.provider.as_deref(), Some("corp"));
    let old = serde_json::to_string(&login("s", now_secs() + 60)).unwrap();
    assert!(!old.contains("provider"));
    let back: LoginState = serde_json::from_str(&old).unwrap();
    assert_eq!(back.provider, None);
}

#[test]
fn the_unchecked_session_value_is_borrowed_whole_and_checked_only_when_asked() {
    let base = "_gatehouse";
    let u = |c: &[u8]| {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_bytes(c).unwrap());
        session_cookie_unchecked(&h, base)
            .map(|v| (v.bytes().to_vec(), v.checked().map(str::to_owned)))
    };
    let mut h = HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        HeaderValue::from_static("a=1; _gatehouse=\"W\""),
    );
    let whole = session_cookie_unchecked(&h, base).unwrap();
    assert_eq!(whole, UncheckedValue::new(b"W".as_slice()));
    assert_eq!(whole.checked(), Some("W"));
    assert_eq!(
        u(b"_gatehouse_1=B; _gatehouse_0=A"),
        Some((b"AB".to_vec(), Some("AB".to_owned())))
    );
    // a non-ASCII whole value is handed on, and fails the check, as do
    // valid UTF-8 beyond ASCII and a tab inside
    assert_eq!(u(b"_gatehouse=W\xe9"), Some((b"W\xe9".to_vec(), None)));
    assert_eq!(
        u(b"_gatehouse=W\xc3\xa9"),
        Some((b"W\xc3\xa9".to_vec(), None))
    );
    assert_eq!(u(b"_gatehouse=A\tB"), Some((b"A\tB".to_vec(), None)));
    // beside good ones it is skipped, as the checked parse skips it (what
    // reads cookies checked, sign-out and chunk cleanup, agrees)
    assert_eq!(
        u(b"_gatehouse=W\xe9; _gatehouse=W"),
        Some((b"W".to_vec(), Some("W".to_owned())))
    );
    assert_eq!(
        u(b"_gatehouse=W\xe9; _gatehouse_0=A"),
        Some((b"A".to_vec(), Some("A".to_owned())))
    );
    assert_eq!(u(b"_gatehouse=W\xe9; _gatehouse=V\xe9"), None);
    // a bad chunk is skipped, as the checked parse skips it
    assert_eq!(
        u(b"_gatehouse_0=A; _gatehouse_1=B\xe9"),
        Some((b"A".to_vec(), Some("A".to_owned())))
    );
    assert_eq!(u(b"_gatehouse="), None);
    assert_eq!(u(b"other=1"), None);
}
