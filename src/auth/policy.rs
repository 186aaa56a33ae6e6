//! Who may pass once signed in.
//!
//! Owns: the email-domain rule (`email_domain`). Pure and cheap: the domain
//! list is lower-cased at start, so a check is one comparison per domain.
//! Must not: look at anything but the [`Identity`].

use crate::auth::identity::Identity;
use crate::config::{Config, EmailDomains};

/// Why a signed-in user was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The email's domain is not in `email_domain`.
    EmailDomain,
    /// The provider gave no email but `email_domain` needs one.
    NoEmail,
    /// The provider says the email is not verified (`allow_unverified_email`).
    UnverifiedEmail,
    /// None of the roles in `allowed_role`.
    Role,
    /// None of the groups in `allowed_group`.
    ConfiguredGroup,
    /// Not in any of the groups a location allows (`allowed_groups`).
    Group,
    /// Not one of the addresses a location allows (`allowed_emails`,
    /// `allowed_email_domains`).
    LocationEmail,
    /// Not in any of the allow lists of the route the request is on.
    Route,
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
            Self::Group => "you are not in a group allowed here (allowed_groups)",
            Self::UnverifiedEmail => {
                "your identity provider says your email address is not verified; an operator can allow unverified addresses with allow_unverified_email"
            }
            Self::Role => "you do not have a role allowed here (allowed_role)",
            Self::ConfiguredGroup => "you are not in a group allowed here (allowed_group)",
            Self::LocationEmail => {
                "your email address is not allowed here (allowed_emails / allowed_email_domains)"
            }
            Self::Route => "your account is not among those allowed on this part of the site",
        }
    }
}

impl DenyReason {
    /// Why, in a few words, for the access record (not a page).
    pub fn log_reason(self) -> &'static str {
        match self {
            Self::EmailDomain => "email domain not allowed",
            Self::NoEmail => "no email address",
            Self::UnverifiedEmail => "email address not verified",
            Self::Role => "no allowed role",
            Self::ConfiguredGroup | Self::Group => "not in an allowed group",
            Self::LocationEmail => "email address not allowed here",
            Self::Route => "not in the route's allow lists",
        }
    }

    /// The setting (or forward-auth parameter) that refused, for the
    /// access record.
    pub fn rule(self) -> &'static str {
        match self {
            Self::EmailDomain | Self::NoEmail => "email_domain",
            Self::UnverifiedEmail => "allow_unverified_email",
            Self::Role => "allowed_role",
            Self::ConfiguredGroup => "allowed_group",
            Self::Group => "allowed_groups",
            Self::LocationEmail => "allowed_emails/allowed_email_domains",
            Self::Route => "route",
        }
    }
}

/// Every site-wide rule: verified email (unless `allow_unverified_email`),
/// `email_domain`, `allowed_group`, `allowed_role`.
pub fn check(config: &Config, identity: &Identity) -> Result<(), DenyReason> {
    if identity.email_verified == Some(false) && !config.allow_unverified_email {
        return Err(DenyReason::UnverifiedEmail);
    }
    check_email_domain(&config.email_domains, identity)?;
    if !config.allowed_groups.is_empty()
        && !identity
            .groups
            .iter()
            .any(|g| config.allowed_groups.contains(g))
    {
        return Err(DenyReason::ConfiguredGroup);
    }
    if !config.allowed_roles.is_empty()
        && !identity
            .roles
            .iter()
            .any(|r| config.allowed_roles.contains(r))
    {
        return Err(DenyReason::Role);
    }
    Ok(())
}

/// Checks an identity against `email_domain`.
pub fn check_email_domain(rule: &EmailDomains, identity: &Identity) -> Result<(), DenyReason> {
    let EmailDomains::List(domains) = rule else {
        return Ok(());
    };
    let email = identity.email.as_deref().ok_or(DenyReason::NoEmail)?;
    let (_, domain) = split_email(email).ok_or(DenyReason::EmailDomain)?;
    if domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        Ok(())
    } else {
        Err(DenyReason::EmailDomain)
    }
}

/// Splits an address into local part and domain, or `None` when it is not
/// one plain address: exactly one `@`, a non-empty local part, a domain
/// without a leading or trailing dot or empty label, and no quotes,
/// whitespace or control characters anywhere (so `a@b@example.com`,
/// `"a@example.com"@evil`, `@example.com` and `a@example.com.` all fail).
pub fn split_email(email: &str) -> Option<(&str, &str)> {
    let (local, domain) = email.split_once('@')?;
    let plain = |c: char| !(c.is_whitespace() || c.is_control() || c == '"' || c == '@');
    let ok = !local.is_empty()
        && local.chars().all(plain)
        && !domain.is_empty()
        && domain.chars().all(plain)
        && domain.split('.').all(|label| !label.is_empty());
    ok.then_some((local, domain))
}

/// Per-location narrowing from a forward-auth query string, as
/// oauth2-proxy's `allowed_groups`, `allowed_emails` and
/// `allowed_email_domains`: each is comma-separated and may repeat; each one
/// given must be satisfied. They only ever narrow, never widen.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Narrowing {
    groups: Vec<String>,
    emails: Vec<String>,
    email_domains: Vec<String>,
}

impl Narrowing {
    /// Reads the narrowing parameters from a query string.
    pub fn from_query(query: Option<&str>) -> Self {
        let mut n = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let list = match k.as_ref() {
                "allowed_groups" => &mut n.groups,
                "allowed_emails" => &mut n.emails,
                "allowed_email_domains" => &mut n.email_domains,
                _ => continue,
            };
            list.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
        }
        n
    }

    /// True when no parameter narrows anything.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.emails.is_empty() && self.email_domains.is_empty()
    }

    /// Checks the identity against every rule given.
    pub fn check(&self, id: &Identity) -> Result<(), DenyReason> {
        if !self.groups.is_empty() && !id.groups.iter().any(|g| self.groups.contains(g)) {
            return Err(DenyReason::Group);
        }
        let email = id.email.as_deref().unwrap_or("");
        let parts = split_email(email);
        if !self.emails.is_empty()
            && (parts.is_none() || !self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)))
        {
            return Err(DenyReason::LocationEmail);
        }
        if !self.email_domains.is_empty() {
            let ok = parts.is_some_and(|(_, domain)| {
                self.email_domains
                    .iter()
                    .any(|d| d == "*" || d.trim_start_matches('@').eq_ignore_ascii_case(domain))
            });
            if !ok {
                return Err(DenyReason::LocationEmail);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
