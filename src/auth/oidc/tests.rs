use super::*;

fn names() -> ClaimNames {
    ClaimNames {
        user_id: "sub".into(),
        email: "email".into(),
        groups: "groups".into(),
        aliases: Vec::new(),
    }
}

#[test]
fn claims_map_to_identity() {
    let c = serde_json::json!({"sub":"u1","email":"a@b.c","email_verified":"true","groups":"admins","name":"A"});
    let id = identity_from_claims(&c, &names()).unwrap();
    assert_eq!(id.subject, "u1");
    assert_eq!(id.groups, vec!["admins"]);
    assert_eq!(id.email_verified, Some(true));
    assert!(identity_from_claims(&serde_json::json!({"email":"x"}), &names()).is_err());
}

#[test]
fn claims_are_found_by_url_name_dotted_path_or_alias() {
    let c = serde_json::json!({
        "https://example.com/roles": ["admin"],
        "realm_access": {"roles": ["user"]},
        "phone": "+1555",
        "a.b": "flat"
    });
    assert_eq!(
        lookup(&c, "https://example.com/roles", &[]),
        Some(&serde_json::json!(["admin"]))
    );
    assert_eq!(
        lookup(&c, "realm_access.roles", &[]),
        Some(&serde_json::json!(["user"]))
    );
    assert_eq!(lookup(&c, "a.b", &[]), Some(&serde_json::json!("flat")));
    let aliases = vec![("phone_number".to_owned(), "phone".to_owned())];
    assert_eq!(
        lookup(&c, "phone_number", &aliases),
        Some(&serde_json::json!("+1555"))
    );
    assert_eq!(lookup(&c, "missing.path", &[]), None);
}

#[test]
fn keycloak_roles_are_read_from_realm_and_client_access() {
    let c = serde_json::json!({
        "realm_access": {"roles": ["user"]},
        "resource_access": {"gatehouse": {"roles": ["editor"]}, "account": {"roles": ["view"]}}
    });
    let mut r = roles(&c);
    r.sort();
    assert_eq!(r, ["account:view", "gatehouse:editor", "user"]);
}

#[test]
fn mapped_header_values_are_cleaned_and_bounded() {
    let c = serde_json::json!({"phone_number": "+1\r\nX-Evil: 1", "long": "x".repeat(5000), "list": ["a", "b"]});
    let map = vec![
        ClaimHeader {
            header: http::HeaderName::from_static("x-phone"),
            claim: "phone_number".into(),
        },
        ClaimHeader {
            header: http::HeaderName::from_static("x-long"),
            claim: "long".into(),
        },
        ClaimHeader {
            header: http::HeaderName::from_static("x-list"),
            claim: "list".into(),
        },
        ClaimHeader {
            header: http::HeaderName::from_static("x-none"),
            claim: "absent".into(),
        },
    ];
    let h = mapped_headers(&c, &map, &[]);
    assert_eq!(h[0], ("x-phone".to_owned(), "+1X-Evil: 1".to_owned()));
    assert_eq!(h[1].1.len(), MAX_HEADER_VALUE);
    assert_eq!(h[2].1, "a,b");
    assert_eq!(h.len(), 3);
}

#[test]
fn iat_must_not_be_in_the_future() {
    assert!(check_iat(&serde_json::json!({"iat": now_secs()})).is_ok());
    assert!(check_iat(&serde_json::json!({"iat": now_secs() + 3600})).is_err());
    assert!(check_iat(&serde_json::json!({})).is_err());
}

#[test]
fn jwt_payload_rejects_garbage() {
    assert!(jwt_payload("a.b.c").is_none());
    assert!(jwt_payload("nodots").is_none());
}

#[test]
fn jwks_with_unknown_key_types_still_parse() {
    let jwks = br#"{"keys":[{"kty":"weird","kid":"w"},{"kty":"RSA","kid":"k","n":"sXch","e":"AQAB","alg":"RS256","use":"sig"}]}"#;
    let keys = Keys::parse(jwks).unwrap();
    assert_eq!(keys.jwt.len(), 1);
}

pub(crate) mod engine;

#[test]
fn every_identity_field_is_read_from_its_claim() {
    let c = serde_json::json!({
        "sub": 42,
        "email": "a@b.c",
        "email_verified": "false",
        "preferred_username": "al",
        "name": "Al",
        "groups": ["x", 7, true, {"no": 1}]
    });
    let id = identity_from_claims(&c, &names()).unwrap();
    assert_eq!(id.subject, "42");
    assert_eq!(id.email.as_deref(), Some("a@b.c"));
    assert_eq!(id.email_verified, Some(false));
    assert_eq!(id.preferred_username.as_deref(), Some("al"));
    assert_eq!(id.name.as_deref(), Some("Al"));
    assert_eq!(id.groups, ["x", "7", "true"]);
    let c = serde_json::json!({"sub": "u", "email_verified": true});
    let id = identity_from_claims(&c, &names()).unwrap();
    assert_eq!(id.email_verified, Some(true));
    assert_eq!(id.email, None);
    assert!(id.groups.is_empty());
    let c = serde_json::json!({"sub": "u", "email_verified": 1, "groups": {"a": 1}});
    let id = identity_from_claims(&c, &names()).unwrap();
    assert_eq!(id.email_verified, None);
    assert!(id.groups.is_empty());
    for bad in [
        serde_json::json!({"sub": ""}),
        serde_json::json!({"sub": "a\u{0}b"}),
        serde_json::json!({"sub": null}),
        serde_json::json!({"sub": ["u"]}),
    ] {
        assert!(identity_from_claims(&bad, &names()).is_err(), "{bad}");
    }
}

#[test]
fn claim_names_with_a_scheme_are_never_read_as_dotted_paths() {
    let c = serde_json::json!({"https://example": {"com/roles": ["nested"]}, "a": {"b": null}, "mail": "m@x"});
    assert_eq!(lookup(&c, "https://example.com/roles", &[]), None);
    // a null claim counts as absent, and an alias is tried instead
    let aliases = vec![("a.b".to_owned(), "mail".to_owned())];
    assert_eq!(lookup(&c, "a.b", &aliases), Some(&serde_json::json!("m@x")));
    assert_eq!(lookup(&c, "a.b", &[]), None);
    let null_alias = vec![("email".to_owned(), "a.b".to_owned())];
    assert_eq!(lookup(&c, "email", &null_alias), None);
}

#[test]
fn text_and_string_lists_take_only_scalars() {
    assert_eq!(text(&serde_json::json!("s")), Some("s".to_owned()));
    assert_eq!(text(&serde_json::json!(1.5)), Some("1.5".to_owned()));
    assert_eq!(text(&serde_json::json!(false)), Some("false".to_owned()));
    assert_eq!(text(&serde_json::json!(null)), None);
    assert_eq!(text(&serde_json::json!([1])), None);
    assert_eq!(strings(Some(&serde_json::json!("one"))), ["one"]);
    assert_eq!(
        strings(Some(&serde_json::json!(["a", null, 2]))),
        ["a", "2"]
    );
    assert!(strings(Some(&serde_json::json!(3))).is_empty());
    assert!(strings(None).is_empty());
}

#[test]
fn no_role_claims_mean_no_roles() {
    assert!(roles(&serde_json::json!({})).is_empty());
    assert!(roles(&serde_json::json!({"resource_access": {"app": {}}})).is_empty());
    assert_eq!(
        roles(&serde_json::json!({"resource_access": {"app": {"roles": "one"}}})),
        ["app:one"]
    );
}

#[test]
fn expires_in_is_read_as_a_number_or_a_numeric_string() {
    let now = now_secs();
    let within =
        |v: Option<u64>, secs: u64| v.is_some_and(|e| (now + secs..=now + secs + 5).contains(&e));
    assert!(within(expires_at(Some(&serde_json::json!(300))), 300));
    assert!(within(expires_at(Some(&serde_json::json!("300"))), 300));
    assert_eq!(
        expires_at(Some(&serde_json::json!(u64::MAX))),
        Some(u64::MAX)
    );
    for bad in [
        serde_json::json!(-1),
        serde_json::json!(1.5),
        serde_json::json!("soon"),
        serde_json::json!(true),
        serde_json::json!(null),
    ] {
        assert_eq!(expires_at(Some(&bad)), None, "{bad}");
    }
    assert_eq!(expires_at(None), None);
}

#[test]
fn audiences_are_a_string_or_the_strings_of_a_list() {
    assert_eq!(audiences(&serde_json::json!({"aud": "a"})), ["a"]);
    assert_eq!(
        audiences(&serde_json::json!({"aud": ["a", 1, "b"]})),
        ["a", "b"]
    );
    assert!(audiences(&serde_json::json!({"aud": 1})).is_empty());
    assert!(audiences(&serde_json::json!({})).is_empty());
}

#[test]
fn merging_fills_only_missing_claims() {
    let mut into = serde_json::json!({"sub": "id", "name": "From Id"});
    merge_missing(
        &mut into,
        &serde_json::json!({"sub": "other", "name": "Other", "email": "e@x"}),
    );
    assert_eq!(
        into,
        serde_json::json!({"sub": "id", "name": "From Id", "email": "e@x"})
    );
    let mut null = Value::Null;
    merge_missing(&mut null, &serde_json::json!({"a": 1}));
    assert_eq!(null, serde_json::json!({"a": 1}));
    let mut untouched = serde_json::json!({"a": 1});
    merge_missing(&mut untouched, &serde_json::json!("not an object"));
    assert_eq!(untouched, serde_json::json!({"a": 1}));
}

#[test]
fn iat_may_be_ahead_by_the_allowed_skew_only() {
    let now = now_secs();
    assert!(check_iat(&serde_json::json!({"iat": now + SKEW_SECS - 2})).is_ok());
    assert!(check_iat(&serde_json::json!({"iat": now + SKEW_SECS + 30})).is_err());
    assert!(check_iat(&serde_json::json!({"iat": 0})).is_ok());
    assert!(check_iat(&serde_json::json!({"iat": "now"})).is_err());
}

#[test]
fn jwt_payload_reads_the_middle_part_with_or_without_padding() {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"u"}"#);
    assert_eq!(
        jwt_payload(&format!("h.{payload}.s")),
        Some(serde_json::json!({"sub": "u"}))
    );
    assert_eq!(
        jwt_payload(&format!("h.{payload}==.s")),
        Some(serde_json::json!({"sub": "u"}))
    );
}

#[test]
fn only_a_missing_key_counts_as_an_unknown_key() {
    use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
    assert!(is_unknown_key(
        &ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)
    ));
    assert!(!is_unknown_key(
        &ClaimsVerificationError::SignatureVerification(SignatureVerificationError::CryptoError(
            "bad".to_owned()
        ))
    ));
    assert!(!is_unknown_key(&ClaimsVerificationError::Expired(
        "old".to_owned()
    )));
}

#[test]
fn an_alias_fills_the_preferred_username_only_when_it_is_missing() {
    // the auth0 preset: nickname stands in for preferred_username
    let mut n = names();
    n.aliases = vec![("preferred_username".into(), "nickname".into())];
    let from_nickname = identity_from_claims(
        &serde_json::json!({"sub": "auth0|1", "nickname": "jdoe"}),
        &n,
    )
    .unwrap();
    assert_eq!(from_nickname.preferred_username.as_deref(), Some("jdoe"));
    let both = identity_from_claims(
        &serde_json::json!({"sub": "1", "nickname": "jdoe", "preferred_username": "john"}),
        &n,
    )
    .unwrap();
    assert_eq!(both.preferred_username.as_deref(), Some("john"));
    // without the alias a nickname is not a username
    let plain = identity_from_claims(
        &serde_json::json!({"sub": "1", "nickname": "jdoe"}),
        &names(),
    )
    .unwrap();
    assert_eq!(plain.preferred_username, None);
}

#[test]
fn a_key_fits_only_the_algorithm_and_use_its_jwk_names() {
    use jsonwebtoken::Algorithm::{ES256, PS256, RS256};
    let jwk = |extra: &str| -> jsonwebtoken::jwk::Jwk {
        serde_json::from_str(&format!(
            r#"{{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"k"{extra}}}"#
        ))
        .unwrap()
    };
    let rs256 = jwk(r#","alg":"RS256","use":"sig""#);
    assert!(key_fits(&rs256, RS256).is_ok());
    assert!(key_fits(&rs256, PS256).is_err());
    assert!(key_fits(&rs256, ES256).is_err());
    // no alg: any algorithm of the family (jsonwebtoken checks the family)
    assert!(key_fits(&jwk(""), PS256).is_ok());
    assert!(key_fits(&jwk(r#","use":"enc""#), RS256).is_err());
    assert!(key_fits(&jwk(r#","alg":"PS256""#), PS256).is_ok());
}

#[test]
fn time_claims_must_be_numbers_and_nbf_and_exp_hold_with_the_leeway() {
    let now = 1_800_000_000u64;
    let ok = |c: serde_json::Value| check_time_claims(&c, now);
    let n = |v: u64| serde_json::json!(v);
    assert!(
        ok(serde_json::json!({})).is_ok(),
        "presence is the caller's rule"
    );
    assert!(ok(serde_json::json!({"exp": n(now + 300), "iat": n(now), "nbf": n(now)})).is_ok());
    // inside the leeway both ways
    assert!(ok(serde_json::json!({"nbf": n(now + SKEW_SECS - 1)})).is_ok());
    assert!(ok(serde_json::json!({"exp": n(now - SKEW_SECS + 1)})).is_ok());
    // NumericDate may carry a fraction
    assert!(ok(serde_json::json!({"exp": (now + 300) as f64 + 0.5})).is_ok());
    // hostile: beyond the leeway, or not a number at all
    for bad in [
        serde_json::json!({"nbf": n(now + SKEW_SECS + 1)}),
        serde_json::json!({"exp": n(now - SKEW_SECS)}),
        serde_json::json!({"exp": (now + 300).to_string()}),
        serde_json::json!({"iat": now.to_string()}),
        serde_json::json!({"nbf": now.to_string()}),
        serde_json::json!({"nbf": null}),
        serde_json::json!({"iat": true}),
        serde_json::json!({"exp": [now + 300]}),
        serde_json::json!({"nbf": -1}),
    ] {
        assert!(ok(bad.clone()).is_err(), "{bad} accepted");
    }
}

#[test]
fn an_identity_access_token_must_be_issued_after_the_login_started() {
    let started = 1_800_000_000u64;
    let at = |iat: serde_json::Value| check_issued_since(&serde_json::json!({"iat": iat}), started);
    assert!(at(serde_json::json!(started)).is_ok());
    assert!(at(serde_json::json!(started - SKEW_SECS)).is_ok());
    assert!(at(serde_json::json!(started - SKEW_SECS - 1)).is_err());
    assert!(at(serde_json::json!(started.to_string())).is_err());
    assert!(check_issued_since(&serde_json::json!({}), started).is_err());
}
