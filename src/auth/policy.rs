//! Who may pass once signed in.
//!
//! Owns: the email-domain rule (`email_domain`). Pure and cheap: the domain
//! list is lower-cased at start, so a check is one comparison per domain.
//! Must not: look at anything but the [`Identity`].

use crate::auth::identity::Identity;
use crate::config::EmailDomains;

/// Why a signed-in user was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The email's domain is not in `email_domain`.
    EmailDomain,
    /// The provider gave no email but `email_domain` needs one.
    NoEmail,
}

impl DenyReason {
    /// A sentence for the 403 page.
    pub fn message(self) -> &'static str {
        match self {
            Self::EmailDomain => {
                "your email address is not in a domain allowed here (email_domain)"
            }
            Self::NoEmail => {
                "your account has no email address, and this site allows only certain email domains (email_domain)"
            }
        }
    }
}

/// Checks an identity against `email_domain`.
pub fn check_email_domain(rule: &EmailDomains, identity: &Identity) -> Result<(), DenyReason> {
    let EmailDomains::List(domains) = rule else {
        return Ok(());
    };
    let email = identity.email.as_deref().ok_or(DenyReason::NoEmail)?;
    let (_, domain) = email.rsplit_once('@').ok_or(DenyReason::EmailDomain)?;
    if domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        Ok(())
    } else {
        Err(DenyReason::EmailDomain)
    }
}

#[cfg(test)]
mod tests {
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
}
