//! Request-path errors and the one function that turns them into responses.
//!
//! Owns: [`Error`], its [`ErrorKind`], and [`error_response`]. Classifying an
//! error has no side effects; [`error_response`] logs it once.
//! Must not: echo anything from the provider or the client unescaped. Pages
//! are built by `http::response::page`, which escapes.

use http::{Response, StatusCode};

use crate::auth::oidc::IdpError;
use crate::auth::session::LoginStateError;
use crate::http::body::ProxyBody;
use crate::http::response::{json, page};
use crate::telemetry::escape_log;

/// Who a failure is down to, and so which status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The client sent something we refuse (400).
    BadRequest,
    /// A login that cannot be completed; start again (400).
    LoginFailed,
    /// Not signed in (401).
    Unauthenticated,
    /// The upstream could not be reached (502).
    UpstreamUnavailable,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The provider is down or not yet discovered (503), or answered badly (502).
    IdpUnavailable,
    /// Our own fault (500).
    Internal,
}

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The callback's login state was missing, invalid or stale.
    #[error("login state: {0:?}")]
    LoginState(LoginStateError),
    /// The provider sent the browser back with `error=`.
    #[error("provider returned error `{error}`")]
    ProviderDenied {
        /// The `error` parameter.
        error: String,
        /// The `error_description` parameter.
        description: Option<String>,
    },
    /// The callback's `iss` is not the provider's issuer, or is missing
    /// where the provider promises it (RFC 9207).
    #[error("authorization response from another issuer")]
    IssuerMismatch,
    /// A required query parameter was missing.
    #[error("missing query parameter `{0}`")]
    MissingParam(&'static str),
    /// The provider is not discovered yet.
    #[error("provider not ready")]
    IdpNotReady,
    /// The session store cannot vouch for sessions (Redis unreachable).
    #[error("session store unavailable")]
    StoreUnavailable,
    /// The code exchange failed at the provider.
    #[error(transparent)]
    Idp(IdpError),
    /// The upstream could not be reached.
    #[error("upstream {upstream} unavailable: {reason}")]
    UpstreamUnavailable {
        /// Upstream base URL.
        upstream: String,
        /// What failed.
        reason: String,
    },
    /// The upstream was too slow.
    #[error("upstream {0} timed out")]
    UpstreamTimeout(String),
    /// A malformed request.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Not signed in where a session is required.
    #[error("not signed in")]
    Unauthenticated,
    /// Our own fault.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::LoginState(_) | Self::ProviderDenied { .. } | Self::IssuerMismatch => {
                ErrorKind::LoginFailed
            }
            Self::Idp(IdpError::IdToken(_)) => ErrorKind::LoginFailed,
            Self::MissingParam(_) | Self::BadRequest(_) => ErrorKind::BadRequest,
            Self::IdpNotReady | Self::Idp(_) | Self::StoreUnavailable => ErrorKind::IdpUnavailable,
            Self::UpstreamUnavailable { .. } => ErrorKind::UpstreamUnavailable,
            Self::UpstreamTimeout(_) => ErrorKind::UpstreamTimeout,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A sentence a user can act on. Never includes tokens or cookie values.
    fn public_message(&self) -> String {
        match self {
            Self::LoginState(LoginStateError::Expired) => {
                "This sign-in took too long and has expired. Please start again.".to_owned()
            }
            Self::LoginState(_) => "This sign-in link is not valid here: it was already used, \
                 belongs to another browser, or your cookies were cleared. Please start again."
                .to_owned(),
            Self::ProviderDenied { error, description } => match description {
                Some(d) => format!("The identity provider refused the sign-in ({error}: {d})."),
                None => format!("The identity provider refused the sign-in ({error})."),
            },
            Self::IssuerMismatch => "This sign-in did not come back from the identity provider \
                 it was sent to. Please start again."
                .to_owned(),
            Self::MissingParam(p) => format!("The request is missing the `{p}` parameter."),
            Self::IdpNotReady => {
                "The identity provider is not reachable yet. Please try again shortly.".to_owned()
            }
            Self::StoreUnavailable => {
                "The session store is not reachable right now. Please try again shortly.".to_owned()
            }
            Self::Idp(IdpError::IdToken(_)) => {
                "The sign-in could not be verified. Please start again.".to_owned()
            }
            Self::Idp(_) => {
                "The identity provider could not complete the sign-in. Please try again.".to_owned()
            }
            Self::UpstreamUnavailable { .. } => {
                "The application behind this proxy is not reachable.".to_owned()
            }
            Self::UpstreamTimeout(_) => {
                "The application behind this proxy did not answer in time.".to_owned()
            }
            Self::BadRequest(m) => format!("Bad request: {m}."),
            Self::Unauthenticated => "You are not signed in.".to_owned(),
            Self::Internal(_) => "Something went wrong on our side.".to_owned(),
        }
    }
}

/// An error and its sources joined with `: `, for log lines. Callers pass
/// errors that carry no secrets (transport and protocol errors).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How the client wants errors: a page for browsers, JSON for API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTML page.
    Html,
    /// JSON object.
    Json,
}

/// The one place an error becomes a response, logged once here.
pub fn error_response(err: &Error, mode: Mode) -> Response<ProxyBody> {
    let kind = err.kind();
    let status = match kind {
        ErrorKind::BadRequest | ErrorKind::LoginFailed => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
        ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::IdpUnavailable => match err {
            // unreachable or too slow: the provider is down, try again later
            Error::Idp(IdpError::Transport(_)) => StatusCode::SERVICE_UNAVAILABLE,
            // it answered, but not with what a sign-in needs
            Error::Idp(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // the reference a user can quote, matching the request's log lines
    let reference = crate::telemetry::current_request_id();
    let request_id = reference.as_ref().map(crate::telemetry::RequestId::as_str);
    match kind {
        ErrorKind::BadRequest | ErrorKind::LoginFailed | ErrorKind::Unauthenticated => {
            tracing::debug!(error = %escape_log(&err.to_string()), request_id, "request refused");
        }
        _ => tracing::warn!(error = %escape_log(&err.to_string()), request_id, "request failed"),
    }
    let mut message = err.public_message();
    if let (Mode::Html, Some(r)) = (mode, request_id) {
        message = format!("{message} (reference {r})");
    }
    let retry = matches!(kind, ErrorKind::LoginFailed | ErrorKind::IdpUnavailable);
    match mode {
        Mode::Json => {
            let mut body = serde_json::json!({ "error": error_code(kind), "message": message });
            if retry {
                body["start"] = serde_json::Value::from("/oauth2/start");
            }
            if let Some(r) = request_id {
                body["reference"] = serde_json::Value::from(r);
            }
            json(status, &body)
        }
        Mode::Html => {
            let title = status.canonical_reason().unwrap_or("Error");
            page(
                status,
                title,
                &message,
                retry.then_some(("/oauth2/start", "Sign in again")),
            )
        }
    }
}

fn error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::LoginFailed => "login_failed",
        ErrorKind::Unauthenticated => "unauthenticated",
        ErrorKind::UpstreamUnavailable => "upstream_unavailable",
        ErrorKind::UpstreamTimeout => "upstream_timeout",
        ErrorKind::IdpUnavailable => "idp_unavailable",
        ErrorKind::Internal => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_text_is_escaped_in_pages() {
        let err = Error::ProviderDenied {
            error: "<script>x</script>".into(),
            description: Some("\"><img>".into()),
        };
        let r = error_response(&err, Mode::Html);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body =
            futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>x"));
        assert!(body.contains("&lt;script&gt;"));
        assert!(body.contains("/oauth2/start"));
    }

    #[test]
    fn statuses_by_kind() {
        assert_eq!(
            error_response(&Error::UpstreamTimeout("u".into()), Mode::Json).status(),
            504
        );
        assert_eq!(
            error_response(&Error::IdpNotReady, Mode::Json).status(),
            503
        );
        assert_eq!(
            error_response(
                &Error::Idp(IdpError::Transport("refused".into())),
                Mode::Html
            )
            .status(),
            503
        );
        assert_eq!(
            error_response(
                &Error::Idp(IdpError::TokenExchange("status 500".into())),
                Mode::Html
            )
            .status(),
            502
        );
        assert_eq!(
            error_response(
                &Error::UpstreamUnavailable {
                    upstream: "u".into(),
                    reason: "r".into()
                },
                Mode::Html
            )
            .status(),
            502
        );
    }
}
