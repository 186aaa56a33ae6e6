use super::*;

fn who(email: Option<&str>) -> Identity {
    Identity {
        subject: "u1".into(),
        email: email.map(Into::into),
        ..Identity::default()
    }
}

#[test]
fn email_domains_match_whole_domain_only() {
    let rule = EmailDomains::List(vec!["example.com".into()]);
    assert_eq!(
        check_email_domain(&rule, &who(Some("a@example.com"))),
        Ok(())
    );
    assert_eq!(
        check_email_domain(&rule, &who(Some("a@EXAMPLE.com"))),
        Ok(())
    );
    for bad in [
        "a@evilexample.com",
        "a@example.com.evil.com",
        "a@sub.example.com",
        "example.com",
        "a@example.com@evil.com",
        "a@b@example.com",
        "a@example.com.evil",
        "\"a@example.com\"@evil",
        "@example.com",
        "a@example.com.",
        "a@.example.com",
        "a@",
        "a b@example.com",
        "a\n@example.com",
    ] {
        assert_eq!(
            check_email_domain(&rule, &who(Some(bad))),
            Err(DenyReason::EmailDomain),
            "{bad}"
        );
    }
    assert_eq!(
        check_email_domain(&rule, &who(None)),
        Err(DenyReason::NoEmail)
    );
    assert_eq!(check_email_domain(&EmailDomains::Any, &who(None)), Ok(()));
}

#[test]
fn narrowing_only_narrows() {
    let mut id = who(Some("a@example.com"));
    id.groups = vec!["staff".into()];
    assert_eq!(Narrowing::from_query(None).check(&id), Ok(()));
    assert_eq!(
        Narrowing::from_query(Some("allowed_groups=admins,staff")).check(&id),
        Ok(())
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_groups=admins")).check(&id),
        Err(DenyReason::Group)
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_emails=A%40example.com")).check(&id),
        Ok(())
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_emails=b@example.com")).check(&id),
        Err(DenyReason::LocationEmail)
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_email_domains=example.com")).check(&id),
        Ok(())
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_email_domains=evilexample.com")).check(&id),
        Err(DenyReason::LocationEmail)
    );
    // both rules must hold
    assert_eq!(
        Narrowing::from_query(Some("allowed_groups=staff&allowed_emails=b@example.com")).check(&id),
        Err(DenyReason::LocationEmail)
    );
    assert_eq!(
        Narrowing::from_query(Some("allowed_email_domains=example.com")).check(&who(None)),
        Err(DenyReason::LocationEmail)
    );
}

fn config(extra: &str) -> Config {
    Config::from_toml_str(&format!(
        r#"
        upstream = "http://127.0.0.1:9"
        oidc_issuer_url = "https://idp.example.com"
        client_id = "gatehouse"
        client_secret = "s3cret"
        redirect_url = "https://app.example.com/oauth2/callback"
        cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
        {extra}
        "#
    ))
    .unwrap()
}

fn member(email: &str, verified: Option<bool>, groups: &[&str], roles: &[&str]) -> Identity {
    Identity {
        subject: "u1".into(),
        email: Some(email.into()),
        email_verified: verified,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..Identity::default()
    }
}

#[test]
fn site_wide_rules_each_refuse_with_their_own_reason() {
    let strict = config(
        r#"
        email_domain = "example.com"
        allowed_group = ["staff", "ops"]
        allowed_role = ["editor"]
        "#,
    );
    let table: &[(Identity, Result<(), DenyReason>)] = &[
        (
            member("a@example.com", Some(true), &["ops"], &["editor"]),
            Ok(()),
        ),
        (
            member("a@example.com", None, &["staff"], &["x", "editor"]),
            Ok(()),
        ),
        (
            member("a@example.com", Some(false), &["ops"], &["editor"]),
            Err(DenyReason::UnverifiedEmail),
        ),
        (
            member("a@evil.com", Some(true), &["ops"], &["editor"]),
            Err(DenyReason::EmailDomain),
        ),
        (
            member("a@example.com", Some(true), &["guests"], &["editor"]),
            Err(DenyReason::ConfiguredGroup),
        ),
        (
            member("a@example.com", Some(true), &[], &["editor"]),
            Err(DenyReason::ConfiguredGroup),
        ),
        (
            member("a@example.com", Some(true), &["ops"], &["viewer"]),
            Err(DenyReason::Role),
        ),
        (
            member("a@example.com", Some(true), &["ops"], &[]),
            Err(DenyReason::Role),
        ),
    ];
    for (id, expected) in table {
        assert_eq!(check(&strict, id), *expected, "{id:?}");
    }
}

#[test]
fn without_rules_every_verified_or_silent_user_passes() {
    let open = config(r#"email_domain = "*""#);
    assert_eq!(
        check(&open, &member("a@any.org", Some(true), &[], &[])),
        Ok(())
    );
    assert_eq!(check(&open, &member("a@any.org", None, &[], &[])), Ok(()));
    assert_eq!(
        check(&open, &member("a@any.org", Some(false), &[], &[])),
        Err(DenyReason::UnverifiedEmail)
    );
    let lenient = config(
        r#"
        email_domain = "*"
        allow_unverified_email = true
        "#,
    );
    assert_eq!(
        check(&lenient, &member("a@any.org", Some(false), &[], &[])),
        Ok(())
    );
}

#[test]
fn every_refusal_explains_itself_and_names_its_setting() {
    let all = [
        (DenyReason::EmailDomain, "email_domain"),
        (DenyReason::NoEmail, "email_domain"),
        (DenyReason::UnverifiedEmail, "allow_unverified_email"),
        (DenyReason::Role, "allowed_role"),
        (DenyReason::ConfiguredGroup, "allowed_group)"),
        (DenyReason::Group, "allowed_groups"),
        (DenyReason::LocationEmail, "allowed_emails"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (reason, setting) in all {
        let m = reason.message();
        assert!(m.contains(setting), "{reason:?}: {m}");
        assert!(seen.insert(m), "{reason:?} shares its message");
    }
}

#[test]
fn narrowing_reads_repeated_and_comma_separated_values() {
    let n = Narrowing::from_query(Some(
        "allowed_groups=a,+b+&allowed_groups=c&allowed_emails=x%40y.z,&allowed_email_domains=@d.e&other=1&allowed_groups=",
    ));
    assert_eq!(
        n,
        Narrowing {
            groups: vec!["a".into(), "b".into(), "c".into()],
            emails: vec!["x@y.z".into()],
            email_domains: vec!["@d.e".into()],
        }
    );
    assert_eq!(Narrowing::from_query(Some("")), Narrowing::default());
    assert_eq!(
        Narrowing::from_query(Some("rd=/x&allowed_groups")),
        Narrowing::default()
    );
}

#[test]
fn narrowing_by_email_domain_accepts_a_star_or_an_at_sign() {
    let id = who(Some("a@Example.com"));
    for (query, ok) in [
        ("allowed_email_domains=*", true),
        ("allowed_email_domains=@example.com", true),
        ("allowed_email_domains=other.org,EXAMPLE.COM", true),
        ("allowed_email_domains=ample.com", false),
        ("allowed_email_domains=a@example.com", false),
    ] {
        let got = Narrowing::from_query(Some(query)).check(&id);
        assert_eq!(got.is_ok(), ok, "{query}");
        if !ok {
            assert_eq!(got, Err(DenyReason::LocationEmail));
        }
    }
    // `*` still needs an address with a domain
    for email in [None, Some("no-at-sign"), Some("trailing@")] {
        assert_eq!(
            Narrowing::from_query(Some("allowed_email_domains=*")).check(&who(email)),
            Err(DenyReason::LocationEmail),
            "{email:?}"
        );
    }
}

#[test]
fn narrowing_by_email_is_exact_and_needs_an_email() {
    let q = Some("allowed_emails=a@example.com");
    assert_eq!(
        Narrowing::from_query(q).check(&who(Some("A@Example.com"))),
        Ok(())
    );
    assert_eq!(
        Narrowing::from_query(q).check(&who(Some("a@example.com.evil"))),
        Err(DenyReason::LocationEmail)
    );
    assert_eq!(
        Narrowing::from_query(q).check(&who(None)),
        Err(DenyReason::LocationEmail)
    );
    // groups are compared exactly
    let mut id = who(Some("a@example.com"));
    id.groups = vec!["Staff".into()];
    assert_eq!(
        Narrowing::from_query(Some("allowed_groups=staff")).check(&id),
        Err(DenyReason::Group)
    );
}

#[test]
fn location_email_rules_refuse_addresses_that_are_not_one_plain_address() {
    let domains = Narrowing::from_query(Some("allowed_email_domains=example.com"));
    let wildcard = Narrowing::from_query(Some("allowed_email_domains=*"));
    for bad in [
        "a@b@example.com",
        "\"a@example.com\"@example.com",
        "@example.com",
        "a@example.com.",
    ] {
        assert_eq!(
            domains.check(&who(Some(bad))),
            Err(DenyReason::LocationEmail),
            "{bad}"
        );
        assert_eq!(
            wildcard.check(&who(Some(bad))),
            Err(DenyReason::LocationEmail),
            "* {bad}"
        );
    }
    // an allowed_emails entry naming a malformed address never matches it
    let exact = Narrowing::from_query(Some("allowed_emails=%40example.com"));
    assert_eq!(
        exact.check(&who(Some("@example.com"))),
        Err(DenyReason::LocationEmail)
    );
    assert_eq!(
        domains.check(&who(Some("a@example.com.evil"))),
        Err(DenyReason::LocationEmail)
    );
    assert_eq!(domains.check(&who(Some("a@EXAMPLE.com"))), Ok(()));
}

#[test]
fn split_email_takes_exactly_one_at() {
    assert_eq!(split_email("a@example.com"), Some(("a", "example.com")));
    assert_eq!(
        split_email("a+tag@sub.example.com"),
        Some(("a+tag", "sub.example.com"))
    );
    for bad in [
        "a@b@c.com",
        "a",
        "@c.com",
        "a@",
        "a@c..com",
        "a@c.com.",
        "\"a\"@c.com",
    ] {
        assert_eq!(split_email(bad), None, "{bad}");
    }
}
