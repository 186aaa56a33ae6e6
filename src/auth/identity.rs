//! `Identity`: who a signed-in request belongs to.
//!
//! Owns: the shape of the identity that leaves `auth/`. It is the only thing
//! `proxy/` learns about a user.
//! Must not: carry anything the upstream may not see; tokens are wrapped in
//! [`Secret`] so they never reach a log line.

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
    /// When the session ends (seconds since the Unix epoch).
    pub expires_at: u64,
    /// Tokens, present only where a setting forwards them.
    pub tokens: Tokens,
}

/// Tokens kept for forwarding upstream or for sign-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    /// The raw ID token.
    pub id_token: Option<Secret>,
    /// The raw access token.
    pub access_token: Option<Secret>,
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
    /// Session end, Unix seconds.
    pub expires_at: u64,
}

impl Identity {
    /// The public view for `/oauth2/userinfo`.
    pub fn user_info(&self) -> UserInfo<'_> {
        UserInfo {
            user: &self.subject,
            email: self.email.as_deref(),
            email_verified: self.email_verified,
            preferred_username: self.preferred_username.as_deref(),
            name: self.name.as_deref(),
            groups: &self.groups,
            expires_at: self.expires_at,
        }
    }
}
