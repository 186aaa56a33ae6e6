//! Request-path errors and the one function that turns them into responses.
//!
//! Owns: [`Error`], its [`ErrorKind`], and [`error_response`]. Classifying an
//! error has no side effects; [`error_response`] logs it once.
//! Must not: echo anything from the provider or the client unescaped. Pages
//! are built by `http::response::page`, which escapes.

use http::{Response, StatusCode};

use crate::auth::oidc::IdpError;
use crate::auth::session::LoginStateError;
use crate::auth::step_up::Shortfall;
use crate::http::body::ProxyBody;
use crate::http::response::{Page, json, render};
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
    /// No such gatehouse address (404).
    NotFound,
    /// A gatehouse address asked with a method it does not answer (405).
    MethodNotAllowed,
    /// Too many sign-ins from one client (429).
    TooManyRequests,
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
    /// Discovery at start keeps failing in a way retrying cannot mend: the
    /// issuer URL is wrong (see [`discovery_misconfigured`]).
    #[error("provider not discovered: {0}")]
    DiscoveryFailed(IdpError),
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
    /// An `/oauth2/` path gatehouse does not serve.
    #[error("no such endpoint")]
    NotFound,
    /// No upstream for this request: gatehouse runs as a forward-auth
    /// server (no `upstream`) and the request's route has none of its own.
    #[error("no upstream is configured: forward-auth mode")]
    NoUpstream,
    /// An `/oauth2/` endpoint asked with the wrong method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many sign-ins from one client.
    #[error("too many sign-in requests")]
    TooManyRequests,
    /// Signed in, but the route asks for a stronger or more recent sign-in.
    #[error("step-up sign-in required")]
    StepUpRequired,
    /// A step-up login came back without what it asked for.
    #[error("step-up sign-in not met: {0:?}")]
    StepUpFailed(Shortfall),
}

impl Error {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::LoginState(_)
            | Self::ProviderDenied { .. }
            | Self::IssuerMismatch
            | Self::StepUpFailed(_) => ErrorKind::LoginFailed,
            Self::Idp(IdpError::IdToken(_)) => ErrorKind::LoginFailed,
            Self::MissingParam(_) | Self::BadRequest(_) => ErrorKind::BadRequest,
            Self::IdpNotReady
            | Self::Idp(_)
            | Self::StoreUnavailable
            | Self::DiscoveryFailed(_) => ErrorKind::IdpUnavailable,
            Self::UpstreamUnavailable { .. } => ErrorKind::UpstreamUnavailable,
            Self::UpstreamTimeout(_) => ErrorKind::UpstreamTimeout,
            Self::Unauthenticated | Self::StepUpRequired => ErrorKind::Unauthenticated,
            Self::Internal(_) => ErrorKind::Internal,
            Self::NotFound | Self::NoUpstream => ErrorKind::NotFound,
            Self::MethodNotAllowed => ErrorKind::MethodNotAllowed,
            Self::TooManyRequests => ErrorKind::TooManyRequests,
        }
    }

    /// True when the failure is the deployment's configuration, not
    /// something that passes: the provider refused gatehouse itself
    /// (`invalid_client`, `unauthorized_client`: a wrong client id or
    /// secret), or discovery at start found no provider where the issuer
    /// URL points ([`Self::DiscoveryFailed`]). Retrying cannot help. (A key
    /// refetch failing at request time passes.)
    pub fn is_misconfiguration(&self) -> bool {
        match self {
            Self::Idp(IdpError::TokenExchange(why)) => {
                why.contains("invalid_client") || why.contains("unauthorized_client")
            }
            Self::DiscoveryFailed(_) => true,
            _ => false,
        }
    }

    /// What a person is told: plain words, no config keys, no code names,
    /// never a token or a cookie value.
    fn public(&self) -> Public {
        const START: (&str, &str) = ("/oauth2/start", "Sign in again");
        const HOME: (&str, &str) = ("/", "Go to the start page");
        let admin = "If this keeps happening, contact the administrator of this site.";
        let again = |title: &'static str, what: String| Public {
            title,
            what,
            next: "Please sign in again.".to_owned(),
            links: vec![START],
            retry: true,
        };
        if self.is_misconfiguration() {
            let what = if matches!(self, Self::DiscoveryFailed(_)) {
                "The identity provider could not be found where this site's sign-in settings \
                 point."
            } else {
                "The identity provider did not accept this site's sign-in settings."
            };
            return Public {
                title: "Sign-in is not set up correctly",
                what: format!(
                    "{what} This is a configuration problem on the server, not something you did."
                ),
                next: "Trying again will not help. Please contact the administrator of this site \
                       and tell them sign-in is misconfigured."
                    .to_owned(),
                links: Vec::new(),
                retry: false,
            };
        }
        match self {
            Self::LoginState(LoginStateError::Expired) => again(
                "Sign-in expired",
                "This sign-in took too long and has expired.".to_owned(),
            ),
            Self::LoginState(_) => again(
                "Sign-in could not be completed",
                "This sign-in cannot be finished here: it was already used, it was started in \
                 another browser, or your cookies were cleared."
                    .to_owned(),
            ),
            Self::ProviderDenied { error, description } => Public {
                title: "Sign-in was refused",
                what: match description {
                    Some(d) => format!("The identity provider refused the sign-in ({error}: {d})."),
                    None => format!("The identity provider refused the sign-in ({error})."),
                },
                next: format!("You can sign in again, perhaps as someone else. {admin}"),
                links: vec![START],
                retry: true,
            },
            Self::IssuerMismatch => again(
                "Sign-in could not be completed",
                "This sign-in did not come back from the identity provider it was sent to."
                    .to_owned(),
            ),
            Self::MissingParam(_) => Public {
                title: "No sign-in in progress",
                what: "This address finishes a sign-in, but it was opened without one \
                       (for example from a bookmark, or a link that was cut short)."
                    .to_owned(),
                next: "Go to the site and sign in from there.".to_owned(),
                links: vec![HOME, ("/oauth2/start", "Sign in")],
                retry: false,
            },
            Self::IdpNotReady => Public {
                title: "Sign-in is not available",
                what: "The identity provider cannot be reached, so nobody can sign in right now."
                    .to_owned(),
                next: format!("Please try again in a few minutes. {admin}"),
                links: vec![("/oauth2/start", "Try again")],
                retry: true,
            },
            Self::StoreUnavailable => Public {
                title: "Sign-in is not available",
                what: "The place where sign-ins are kept cannot be reached right now.".to_owned(),
                next: format!("Please try again in a few minutes. {admin}"),
                links: vec![("/oauth2/start", "Try again")],
                retry: true,
            },
            Self::Idp(IdpError::IdToken(_)) => again(
                "Sign-in could not be verified",
                "The identity provider's answer could not be verified.".to_owned(),
            ),
            Self::Idp(IdpError::Transport(_)) => Public {
                title: "Sign-in is not available",
                what: "The identity provider did not answer, so the sign-in could not be finished."
                    .to_owned(),
                next: format!("Please try again in a few minutes. {admin}"),
                links: vec![("/oauth2/start", "Try again")],
                retry: true,
            },
            Self::Idp(_) | Self::DiscoveryFailed(_) => Public {
                title: "Sign-in could not be completed",
                what: "The identity provider could not complete the sign-in.".to_owned(),
                next: format!("Please sign in again. {admin}"),
                links: vec![START],
                retry: true,
            },
            Self::UpstreamUnavailable { .. } => Public {
                title: "The application is not reachable",
                what: "You got past sign-in, but the application behind it is not answering."
                    .to_owned(),
                next: format!("Please try again in a moment. {admin}"),
                links: Vec::new(),
                retry: false,
            },
            Self::UpstreamTimeout(_) => Public {
                title: "The application did not answer in time",
                what:
                    "You got past sign-in, but the application behind it took too long to answer."
                        .to_owned(),
                next: format!("Please try again in a moment. {admin}"),
                links: Vec::new(),
                retry: false,
            },
            Self::BadRequest(m) => Public {
                title: "This request cannot be accepted",
                what: format!("The request was refused: {m}."),
                next: "Go back to the site and try from there.".to_owned(),
                links: vec![HOME],
                retry: false,
            },
            Self::Unauthenticated => Public {
                title: "Not signed in",
                what: "You are not signed in.".to_owned(),
                next: "Please sign in.".to_owned(),
                links: vec![("/oauth2/start", "Sign in")],
                retry: false,
            },
            Self::StepUpRequired => Public {
                title: "Sign in again",
                what: "This page needs a stronger or more recent sign-in than yours.".to_owned(),
                next: "Please sign in again.".to_owned(),
                links: vec![("/oauth2/start", "Sign in")],
                retry: true,
            },
            Self::StepUpFailed(short) => Public {
                title: "Sign-in was not strong enough",
                what: match short {
                    Shortfall::Acr => "This page needs a stronger sign-in (for example with a \
                                       second factor), and the identity provider did not \
                                       confirm one."
                        .to_owned(),
                    Shortfall::NoAuthTime | Shortfall::TooOld => {
                        "This page needs a recent sign-in, and the identity provider did not \
                         confirm that you just signed in."
                            .to_owned()
                    }
                },
                next: format!("Going back and trying again will not help by itself. {admin}"),
                links: vec![HOME],
                retry: false,
            },
            Self::NotFound => Public {
                title: "Page not found",
                what: "There is no page at this address.".to_owned(),
                next: "Check the address, or go to the start page.".to_owned(),
                links: vec![HOME],
                retry: false,
            },
            Self::NoUpstream => Public {
                title: "No application is served here",
                what: "gatehouse runs here as a forward-auth server: no upstream is configured, \
                       so it answers sign-in and access checks for other sites but serves no \
                       application itself."
                    .to_owned(),
                next: "Open the application's own address; it sends you here to sign in when \
                       needed."
                    .to_owned(),
                links: Vec::new(),
                retry: false,
            },
            Self::MethodNotAllowed => Public {
                title: "This address cannot be used this way",
                what: "This address exists, but not for this kind of request.".to_owned(),
                next: "Go to the start page and follow the links from there.".to_owned(),
                links: vec![HOME],
                retry: false,
            },
            Self::TooManyRequests => Public {
                title: "Too many sign-in attempts",
                what: "There were too many sign-in attempts from your network in a short time."
                    .to_owned(),
                next: "Please wait a minute, then try again.".to_owned(),
                links: vec![("/oauth2/start", "Try again")],
                retry: false,
            },
            Self::Internal(_) => Public {
                title: "Something went wrong",
                what: "Something went wrong on the server while answering this request.".to_owned(),
                next: format!("Please try again. {admin}"),
                links: vec![HOME],
                retry: false,
            },
        }
    }
}

/// Whether a discovery failure at start is the configuration, so a
/// sign-in page says "misconfigured" rather than "try again": the provider
/// answered 4xx (a wrong issuer URL: 404 for the discovery document or the
/// keys), its document names another issuer, or it advertises plain-http
/// endpoints that are not allowed. Not when it could not be reached, answered
/// 5xx, 408 or 429, or sent something unreadable (an error page from a proxy
/// between): those pass. Reasons are `oidc`'s: `... answered 404 Not Found`,
/// `the document names issuer ...`, `... is plain http ...`.
pub(crate) fn discovery_misconfigured(reason: &str) -> bool {
    if reason.starts_with("provider request failed") {
        return false;
    }
    if reason.starts_with("the document names issuer") || reason.contains("is plain http") {
        return true;
    }
    reason.split_once(" answered ").is_some_and(|(_, status)| {
        let code = status.get(..3).and_then(|c| c.parse::<u16>().ok());
        matches!(code, Some(400..=499)) && !matches!(code, Some(408 | 429))
    })
}

/// What a page or a JSON answer tells a person about an [`Error`].
struct Public {
    /// Heading.
    title: &'static str,
    /// What happened.
    what: String,
    /// What to do next.
    next: String,
    /// Links for the next step.
    links: Vec<(&'static str, &'static str)>,
    /// Whether starting a new sign-in can help (JSON `start`).
    retry: bool,
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

tokio::task_local! {
    /// Who the request's browser is signed in as, for the pages rendered
    /// while answering it (set by the router, read by [`error_response`]).
    static SIGNED_IN_AS: std::cell::RefCell<Option<String>>;
}

/// Runs `f` (one request's handling) with room for [`set_signed_in_as`].
pub fn with_page_context<F: std::future::Future>(
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    SIGNED_IN_AS.scope(std::cell::RefCell::new(None), f)
}

/// Records who the current request's browser is signed in as, so every
/// page rendered for it says so. Outside [`with_page_context`], nothing.
pub fn set_signed_in_as(who: Option<String>) {
    let _ = SIGNED_IN_AS.try_with(|c| *c.borrow_mut() = who);
}

fn current_signed_in_as() -> Option<String> {
    SIGNED_IN_AS.try_with(|c| c.borrow().clone()).ok().flatten()
}

/// The one place an error becomes a response, logged once here.
pub fn error_response(err: &Error, mode: Mode) -> Response<ProxyBody> {
    error_response_with(err, mode, None)
}

/// [`error_response`] with a reference the administrator can find in the
/// log (shown on the page and in the JSON body).
pub fn error_response_with(
    err: &Error,
    mode: Mode,
    reference: Option<&str>,
) -> Response<ProxyBody> {
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
            Error::Idp(_) | Error::DiscoveryFailed(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        },
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
    };
    // the reference a user can quote, matching the request's log lines
    let current = crate::telemetry::current_request_id();
    let request_id = reference.or(current.as_ref().map(crate::telemetry::RequestId::as_str));
    match kind {
        ErrorKind::BadRequest
        | ErrorKind::LoginFailed
        | ErrorKind::Unauthenticated
        | ErrorKind::NotFound
        | ErrorKind::MethodNotAllowed
        | ErrorKind::TooManyRequests => {
            tracing::debug!(error = %escape_log(&err.to_string()), request_id, "request refused");
        }
        _ if err.is_misconfiguration() => tracing::error!(
            error = %escape_log(&err.to_string()),
            request_id,
            "sign-in failed: configuration problem (check the client id, secret and issuer)"
        ),
        _ => tracing::warn!(error = %escape_log(&err.to_string()), request_id, "request failed"),
    }
    let public = err.public();
    match mode {
        Mode::Json => {
            let message = format!("{} {}", public.what, public.next);
            let mut body = serde_json::json!({ "error": error_code(kind), "message": message });
            if err.is_misconfiguration() {
                body["error"] = serde_json::Value::from("misconfigured");
            }
            if matches!(err, Error::StepUpRequired) {
                // signed in, but not strongly or recently enough for this route
                body["error"] = serde_json::Value::from("step_up_required");
            }
            if matches!(err, Error::NoUpstream) {
                body["error"] = serde_json::Value::from("no_upstream");
            }
            if public.retry {
                body["start"] = serde_json::Value::from("/oauth2/start");
            }
            if let Some(r) = request_id {
                body["reference"] = serde_json::Value::from(r);
            }
            json(status, &body)
        }
        Mode::Html => render(&Page {
            status,
            title: public.title,
            what: &public.what,
            signed_in_as: current_signed_in_as().as_deref(),
            next: &public.next,
            links: &public.links,
            reference: request_id,
        }),
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
        ErrorKind::NotFound => "not_found",
        ErrorKind::MethodNotAllowed => "method_not_allowed",
        ErrorKind::TooManyRequests => "too_many_requests",
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

    fn body(r: Response<ProxyBody>) -> String {
        let b =
            futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(r.into_body()))
                .unwrap()
                .unwrap()
                .to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn a_refused_client_is_a_configuration_problem_never_a_retry() {
        let config = [
            Error::Idp(IdpError::TokenExchange(
                "status 401 Unauthorized, provider said invalid_client".into(),
            )),
            Error::Idp(IdpError::TokenExchange(
                "status 400 Bad Request, provider said unauthorized_client".into(),
            )),
            Error::DiscoveryFailed(IdpError::Discovery {
                issuer: "https://idp".into(),
                reason: "https://idp/.well-known/openid-configuration answered 404 Not Found"
                    .into(),
            }),
        ];
        for err in &config {
            assert!(err.is_misconfiguration(), "{err}");
            let page = body(error_response(err, Mode::Html));
            assert!(page.contains("configuration problem"), "{page}");
            assert!(page.contains("contact the administrator"), "{page}");
            assert!(!page.contains("/oauth2/start"), "{page}");
            assert!(!page.to_lowercase().contains("please try again"), "{page}");
            let json = body(error_response(err, Mode::Json));
            assert!(!json.contains("\"start\""), "{json}");
        }
        // a provider having a bad moment is not the configuration
        let passing = [
            Error::Idp(IdpError::TokenExchange("status 500".into())),
            Error::Idp(IdpError::TokenExchange(
                "status 400, provider said invalid_grant".into(),
            )),
            Error::Idp(IdpError::Transport("refused".into())),
            Error::Idp(IdpError::Discovery {
                issuer: "https://idp/jwks".into(),
                reason: "status 503".into(),
            }),
            Error::IdpNotReady,
        ];
        for err in &passing {
            assert!(!err.is_misconfiguration(), "{err}");
            let page = body(error_response(err, Mode::Html));
            assert!(!page.contains("configuration problem"), "{page}");
        }
    }

    #[test]
    fn discovery_failures_that_retrying_cannot_mend_are_told_apart() {
        let wrong = [
            "https://idp/.well-known/openid-configuration answered 404 Not Found",
            "https://idp/.well-known/openid-configuration answered 401 Unauthorized",
            "JWKS https://idp/jwks answered 403 Forbidden",
            "the document names issuer `https://other/`",
            "the document's token_endpoint: `http://idp.example/token` is plain http to a host",
        ];
        for reason in wrong {
            assert!(discovery_misconfigured(reason), "{reason}");
        }
        let passing = [
            "provider request failed: connection refused",
            "provider request failed: timed out after 10s",
            "https://idp/.well-known/openid-configuration answered 503 Service Unavailable",
            "https://idp/.well-known/openid-configuration answered 500 Internal Server Error",
            "https://idp/.well-known/openid-configuration answered 429 Too Many Requests",
            "https://idp/.well-known/openid-configuration answered 408 Request Timeout",
            "bad discovery document: expected value at line 1 column 1",
        ];
        for reason in passing {
            assert!(!discovery_misconfigured(reason), "{reason}");
        }
    }

    #[test]
    fn no_error_page_shows_backticks_config_keys_or_code_names() {
        let all = [
            Error::LoginState(LoginStateError::Missing),
            Error::LoginState(LoginStateError::Expired),
            Error::LoginState(LoginStateError::Used),
            Error::IssuerMismatch,
            Error::MissingParam("state"),
            Error::IdpNotReady,
            Error::StoreUnavailable,
            Error::Idp(IdpError::IdToken("bad aud".into())),
            Error::Idp(IdpError::TokenExchange("status 500".into())),
            Error::UpstreamUnavailable {
                upstream: "http://10.0.0.1".into(),
                reason: "refused".into(),
            },
            Error::UpstreamTimeout("http://10.0.0.1".into()),
            Error::BadRequest("no Host header"),
            Error::Unauthenticated,
            Error::Internal("cannot seal login state"),
            Error::NotFound,
            Error::NoUpstream,
            Error::MethodNotAllowed,
            Error::TooManyRequests,
        ];
        for err in &all {
            let page = body(error_response(err, Mode::Html));
            let visible: String = page
                .split('<')
                .filter_map(|t| t.split_once('>').map(|(_, v)| v))
                .collect();
            for internal in ["`", "_", "Error", "10.0.0.1", "seal", "aud"] {
                assert!(!visible.contains(internal), "{internal:?} in {visible}");
            }
            // and every page says what happened and what to do next
            assert!(page.matches("<p>").count() >= 2, "{page}");
        }
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
