//! `Identity`: who a signed-in request belongs to.
//!
//! Owns: the shape of the identity that leaves `auth/`. It is the only thing
//! `proxy/` learns about a user.
//! Must not: carry anything the upstream may not see; tokens are wrapped in
//! [`Secret`] so they never reach a log line.

use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::config::Secret;

/// A signed-in user, as decided by the gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The provider's subject (`sub`).
    pub subject: String,
    /// Email address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider vouches for the email.
    pub email_verified: Option<bool>,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
    /// Roles: realm roles as `role`, client roles as `client:role`.
    pub roles: Vec<String>,
    /// Mapped claims for `claim_header`: header name and cleaned value.
    pub extra_headers: Vec<(String, String)>,
    /// When the session ends (seconds since the Unix epoch).
    pub expires_at: u64,
    /// When the tokens were last obtained (login or refresh), Unix seconds.
    pub refreshed_at: u64,
    /// The ID token's `acr` at login: how strongly the user authenticated.
    pub acr: Option<String>,
    /// The ID token's `auth_time` at login: when the user last
    /// authenticated at the provider (Unix seconds). A refresh keeps both.
    pub auth_time: Option<u64>,
    /// Tokens, present only where a setting forwards them.
    pub tokens: Tokens,
    /// The identity headers' values, made from the fields above on first
    /// use (see [`Identity::header_values`]).
    pub header_values: HeaderValuesCell,
}

/// The values of the identity headers every allowed request carries, made
/// once per identity: a cached session's identity serves every request of
/// that session, and making them (validating and copying each value,
/// joining the groups) cost more than the rest of the header rewrite.
/// A value that may not be sent in a header is `None`, as is an absent one.
#[derive(Debug)]
pub struct HeaderValues {
    /// The subject (`X-Forwarded-User`, `X-Auth-Request-User`).
    pub user: Option<HeaderValue>,
    /// The email.
    pub email: Option<HeaderValue>,
    /// `preferred_username`.
    pub preferred_username: Option<HeaderValue>,
    /// [`Identity::groups_header`]; `None` when it is empty.
    pub groups: Option<HeaderValue>,
    /// The mapped claim headers whose name and value are both valid.
    pub extra: Vec<(HeaderName, HeaderValue)>,
}

/// Holds an identity's [`HeaderValues`] once made. A clone of the identity
/// starts empty (a clone is what gets changed, by a refresh or a merge, and
/// must not keep its original's values), and the cell is no part of an
/// identity's equality.
#[derive(Default)]
pub struct HeaderValuesCell(OnceLock<HeaderValues>);

impl Clone for HeaderValuesCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for HeaderValuesCell {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for HeaderValuesCell {}

impl std::fmt::Debug for HeaderValuesCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "HeaderValuesCell(made)"
        } else {
            "HeaderValuesCell(empty)"
        })
    }
}

/// Tokens kept for forwarding upstream or for sign-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    /// The raw ID token.
    pub id_token: Option<Secret>,
    /// The raw access token.
    pub access_token: Option<Secret>,
    /// The refresh token, kept only when `cookie_refresh` is set.
    pub refresh_token: Option<Secret>,
    /// When the access token expires (Unix seconds), if known.
    pub access_token_expires_at: Option<u64>,
}

impl Tokens {
    /// The access token while it is still valid: an expired one is never
    /// forwarded.
    pub fn live_access_token(&self, now: u64) -> Option<&Secret> {
        match self.access_token_expires_at {
            Some(exp) if exp <= now => None,
            _ => self.access_token.as_ref(),
        }
    }
}

/// What `/oauth2/userinfo` shows: the identity, never tokens.
#[derive(Debug, Serialize)]
pub struct UserInfo<'a> {
    /// Subject.
    pub user: &'a str,
    /// Email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    /// Email verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Preferred username.
    #[serde(rename = "preferredUsername", skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<&'a str>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// Groups.
    pub groups: &'a [String],
    /// Roles.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub roles: &'a [String],
    /// Session end, Unix seconds.
    pub expires_at: u64,
}

impl Identity {
    /// The identity headers' values, made on the first call. An identity
    /// must not be changed after it was sent (nothing does: one is built,
    /// then served; changes are made to a clone).
    pub fn header_values(&self) -> &HeaderValues {
        self.header_values.0.get_or_init(|| {
            // obs-text allowed, as for any header value; control bytes not
            let value = |s: &str| HeaderValue::from_bytes(s.as_bytes()).ok();
            let groups = self.groups_header();
            HeaderValues {
                user: value(&self.subject),
                email: self.email.as_deref().and_then(value),
                preferred_username: self.preferred_username.as_deref().and_then(value),
                groups: if groups.is_empty() {
                    None
                } else {
                    value(&groups)
                },
                extra: self
                    .extra_headers
                    .iter()
                    .filter_map(|(name, v)| {
                        Some((HeaderName::from_bytes(name.as_bytes()).ok()?, value(v)?))
                    })
                    .collect(),
            }
        })
    }

    /// The groups as one `X-Forwarded-Groups` / `X-Auth-Request-Groups`
    /// value, joined with `,`. A group whose name contains `,` is left out
    /// (with a debug log): joined, it would read as two groups upstream.
    pub fn groups_header(&self) -> String {
        let mut out = String::new();
        for g in &self.groups {
            if g.contains(',') {
                tracing::debug!(
                    group = %crate::telemetry::escape_log(g),
                    "group name contains ',' and is left out of the groups header"
                );
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(g);
        }
        out
    }

    /// The public view for `/oauth2/userinfo`.
    pub fn user_info(&self) -> UserInfo<'_> {
        UserInfo {
            user: &self.subject,
            email: self.email.as_deref(),
            email_verified: self.email_verified,
            preferred_username: self.preferred_username.as_deref(),
            name: self.name.as_deref(),
            groups: &self.groups,
            roles: &self.roles,
            expires_at: self.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_header_leaves_out_groups_containing_the_separator() {
        let id = Identity {
            groups: vec!["staff".into(), "admins,ops".into(), "dev".into()],
            ..Identity::default()
        };
        assert_eq!(id.groups_header(), "staff,dev");
        let only_bad = Identity {
            groups: vec!["a,b".into()],
            ..Identity::default()
        };
        assert_eq!(only_bad.groups_header(), "");
    }

    #[test]
    fn header_values_are_made_once_and_say_what_may_be_sent() {
        let id = Identity {
            subject: "user\n1".into(),
            email: Some("a@example.com".into()),
            preferred_username: Some("j\u{f6}rg".into()),
            groups: vec!["a,b".into()],
            extra_headers: vec![
                ("x-forwarded-phone".into(), "+1".into()),
                ("bad name".into(), "v".into()),
                ("x-forwarded-bad".into(), "v\u{7f}".into()),
            ],
            ..Identity::default()
        };
        let v = id.header_values();
        assert!(std::ptr::eq(v, id.header_values()), "made once");
        assert!(v.user.is_none(), "a control byte cannot be sent");
        assert_eq!(v.email.as_ref().unwrap(), "a@example.com");
        // obs-text: the UTF-8 bytes, as the header rewrite always sent them
        assert_eq!(
            v.preferred_username.as_ref().unwrap().as_bytes(),
            "j\u{f6}rg".as_bytes()
        );
        assert!(v.groups.is_none(), "nothing left to join");
        assert_eq!(v.extra.len(), 1);
        assert_eq!(v.extra[0].0, "x-forwarded-phone");
        assert_eq!(v.extra[0].1, "+1");
        assert!(Identity::default().header_values().email.is_none());
    }

    #[test]
    fn a_clone_makes_its_own_header_values() {
        let id = Identity {
            subject: "u".into(),
            groups: vec!["staff".into()],
            ..Identity::default()
        };
        assert_eq!(id.header_values().groups.as_ref().unwrap(), "staff");
        let mut changed = id.clone();
        assert_eq!(changed, id, "the cell is no part of equality");
        changed.groups.push("ops".into());
        assert_eq!(
            changed.header_values().groups.as_ref().unwrap(),
            "staff,ops"
        );
        assert_eq!(id.header_values().groups.as_ref().unwrap(), "staff");
        assert!(format!("{:?}", id.header_values).contains("made"));
    }

    fn tokens(expires_at: Option<u64>) -> Tokens {
        Tokens {
            access_token: Some(Secret::new("at".to_owned())),
            access_token_expires_at: expires_at,
            ..Tokens::default()
        }
    }

    #[test]
    fn an_access_token_is_live_until_the_second_it_expires() {
        assert_eq!(
            tokens(Some(101)).live_access_token(100).map(Secret::expose),
            Some("at")
        );
        assert_eq!(tokens(Some(100)).live_access_token(100), None);
        assert_eq!(tokens(Some(99)).live_access_token(100), None);
        assert_eq!(
            tokens(None).live_access_token(u64::MAX).map(Secret::expose),
            Some("at")
        );
        assert_eq!(Tokens::default().live_access_token(0), None);
    }

    #[test]
    fn user_info_shows_the_identity_and_never_a_token() {
        let id = Identity {
            subject: "u1".into(),
            email: Some("a@example.com".into()),
            email_verified: Some(true),
            preferred_username: Some("alice".into()),
            name: Some("Alice".into()),
            groups: vec!["staff".into()],
            roles: vec!["editor".into()],
            expires_at: 42,
            tokens: Tokens {
                id_token: Some(Secret::new("secret-id-token".to_owned())),
                ..tokens(None)
            },
            ..Identity::default()
        };
        let v = serde_json::to_value(id.user_info()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "user": "u1",
                "email": "a@example.com",
                "email_verified": true,
                "preferredUsername": "alice",
                "name": "Alice",
                "groups": ["staff"],
                "roles": ["editor"],
                "expires_at": 42
            })
        );
        let bare = serde_json::to_value(
            Identity {
                subject: "u2".into(),
                ..Identity::default()
            }
            .user_info(),
        )
        .unwrap();
        assert_eq!(
            bare,
            serde_json::json!({"user": "u2", "groups": [], "expires_at": 0})
        );
    }
}
