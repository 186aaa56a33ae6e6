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
