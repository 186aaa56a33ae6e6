//! The token endpoint: client authentication, the authorization code grant
//! with PKCE S256, and refresh token rotation.
//!
//! Per profile: a form body with HTTP Basic or form-body client credentials
//! (most); HTTP Basic only (Passage: a secret in the body is refused); a JSON
//! body with the credentials in it and no refresh grant (ZKAuth).
//!
//! Every request is recorded before validation so tests can inspect what the
//! proxy sent. Failures follow RFC 6749 5.2 (`invalid_client` is a 401).

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::tokens::Grant;
use super::web::{Resp, json_response, oauth_error, parse_basic, status_from};
use super::{Params, Profile, State, TokenRequest, lock, pkce_challenge};

/// Authorization codes older than this are rejected, as real providers do.
const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// The token endpoint never reads more than this.
const MAX_TOKEN_BODY: usize = 64 * 1024;

pub(super) async fn token(state: &State, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_TOKEN_BODY).collect().await else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unreadable body",
        );
    };
    let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    let profile = &state.opts.profile;
    let json = *profile == Profile::ZkAuth;
    let parsed = if json {
        Params::from_json(&body)
    } else {
        Some(Params::parse(&body))
    };
    let params = parsed.clone().unwrap_or_default();
    let record = TokenRequest {
        headers: parts.headers.clone(),
        body,
        params: params.clone(),
    };
    lock(&state.token_requests).push(record);

    if let Some(status) = state.knobs().token_endpoint_status {
        return oauth_error(
            status_from(status),
            "server_error",
            "token endpoint told to fail",
        );
    }
    if let Some(error) = state.knobs().token_endpoint_error {
        if error == "invalid_client" {
            return invalid_client();
        }
        return oauth_error(
            StatusCode::BAD_REQUEST,
            error,
            "token endpoint told to refuse",
        );
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (expected, description) = if json {
        ("application/json", "expected a JSON body")
    } else {
        ("application/x-www-form-urlencoded", "expected a form body")
    };
    if !content_type.is_some_and(|ct| ct.starts_with(expected)) || parsed.is_none() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    }
    if let Some(name) = params.repeated() {
        let description = format!("parameter {name} repeated");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &description);
    }
    let client_id = match authenticate_client(state, &parts.headers, &params) {
        Ok(client_id) => client_id,
        Err(resp) => return *resp,
    };
    let result = match params.get("grant_type") {
        Some("authorization_code") => code_grant(state, &client_id, &params),
        Some("refresh_token") if !json => refresh_grant(state, &client_id, &params),
        _ => Err(("unsupported_grant_type", "grant_type not supported")),
    };
    match result {
        Ok(Ok(body)) => json_response(StatusCode::OK, &body),
        Ok(Err(e)) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e),
        Err((error, description)) => oauth_error(StatusCode::BAD_REQUEST, error, description),
    }
}

/// Returns the authenticated client id, or the error response to send.
fn authenticate_client(
    state: &State,
    headers: &HeaderMap,
    params: &Params,
) -> Result<String, Box<Resp>> {
    let basic = match state.opts.profile {
        // ZKAuth reads the credentials from the JSON body only
        Profile::ZkAuth => None,
        _ => parse_basic(headers),
    };
    let post = params.get("client_secret");
    // Passage registers every client as client_secret_basic: a secret in
    // the body, or none in the header, is a failed client authentication
    if state.opts.profile == Profile::Passage && (basic.is_none() || post.is_some()) {
        return Err(Box::new(invalid_client()));
    }
    if basic.is_some() && post.is_some() {
        let description = "use one client authentication method";
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            description,
        )));
    }
    let (client_id, secret) = match basic {
        Some((id, secret)) => (Some(id), Some(secret)),
        None => (
            params.get("client_id").map(str::to_owned),
            post.map(str::to_owned),
        ),
    };
    let id_ok = client_id.as_deref() == Some(state.opts.client_id.as_str());
    let secret_ok = match &state.opts.client_secret {
        Some(expected) => secret.as_deref() == Some(expected.as_str()),
        None => true,
    };
    match client_id {
        Some(client_id) if id_ok && secret_ok => Ok(client_id),
        _ => Err(Box::new(invalid_client())),
    }
}

fn invalid_client() -> Resp {
    let mut resp = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mock-idp\""),
    );
    resp
}

type GrantResult = Result<Result<Value, String>, (&'static str, &'static str)>;

fn code_grant(state: &State, client_id: &str, params: &Params) -> GrantResult {
    let code = params
        .get("code")
        .ok_or(("invalid_request", "code is required"))?;
    // single use: removed before any check, so a failed attempt burns it too
    let grant = lock(&state.codes)
        .remove(code)
        .ok_or(("invalid_grant", "code unknown or already used"))?;
    if grant.issued.elapsed() > CODE_LIFETIME {
        return Err(("invalid_grant", "code expired"));
    }
    if grant.client_id != client_id {
        return Err(("invalid_grant", "code was issued to another client"));
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err((
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = params
        .get("code_verifier")
        .ok_or(("invalid_grant", "code_verifier is required"))?;
    if !(43..=128).contains(&verifier.len()) {
        return Err((
            "invalid_grant",
            "code_verifier must be 43 to 128 characters",
        ));
    }
    if pkce_challenge(verifier) != grant.code_challenge {
        return Err((
            "invalid_grant",
            "code_verifier does not match code_challenge",
        ));
    }
    let user = state
        .user(&grant.username)
        .ok_or(("invalid_grant", "user gone"))?;
    let grant = Grant {
        user,
        nonce: grant.nonce.as_deref(),
        scope: &grant.scope,
        audience: grant.audience.as_deref(),
        sid: &grant.sid,
    };
    Ok(state.issue_tokens(&grant, client_id))
}

fn refresh_grant(state: &State, client_id: &str, params: &Params) -> GrantResult {
    let token = params
        .get("refresh_token")
        .ok_or(("invalid_request", "refresh_token is required"))?;
    // rotation: the old refresh token is spent
    let grant = lock(&state.refresh_tokens)
        .remove(token)
        .ok_or(("invalid_grant", "refresh token unknown or used"))?;
    if grant.client_id != client_id {
        return Err((
            "invalid_grant",
            "refresh token was issued to another client",
        ));
    }
    let user = state
        .user(&grant.username)
        .ok_or(("invalid_grant", "user gone"))?;
    let grant = Grant {
        user,
        nonce: grant.nonce.as_deref(),
        scope: &grant.scope,
        audience: grant.audience.as_deref(),
        sid: &grant.sid,
    };
    Ok(state.issue_tokens(&grant, client_id))
}
