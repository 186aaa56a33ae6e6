//! The token endpoint: client authentication, the authorization code grant
//! with PKCE S256, and refresh token rotation.
//!
//! The client authenticates only with its registered method
//! ([`ClientAuth`]): HTTP Basic, the body, or not at all for a public client,
//! which is refused if it sends a secret anyway. The body is a form, except
//! for ZKAuth: a JSON object of exactly the expected string members (unknown,
//! missing or non-string members are refused, nothing is coerced), with the
//! credentials in it and no refresh grant.
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
use super::{ClientAuth, Params, Profile, State, TokenRequest, lock, pkce_challenge};

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
        Ok(Params::parse(&body))
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
    if !content_type.is_some_and(|ct| ct.starts_with(expected)) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    }
    if let Err(why) = parsed {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &why);
    }
    if let Some(name) = params.repeated() {
        let description = format!("parameter {name} repeated");
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &description);
    }
    if json && let Err(why) = exact_json_members(state, &params) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &why);
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

/// ZKAuth's token request: exactly these members, each a string (checked by
/// `Params::from_json`); `client_secret` only for a confidential client.
fn exact_json_members(state: &State, params: &Params) -> Result<(), String> {
    let mut expected = vec![
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "client_id",
    ];
    if state.opts.effective_client_auth() == ClientAuth::Post {
        expected.push("client_secret");
    }
    let names = params.names();
    if let Some(unknown) = names.iter().find(|n| !expected.contains(n)) {
        return Err(format!("unknown member {unknown}"));
    }
    if let Some(missing) = expected.iter().find(|e| !names.contains(e)) {
        return Err(format!("missing member {missing}"));
    }
    Ok(())
}

/// Authenticates the client with its registered method only; returns the
/// client id, or the error response to send.
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
    let authorization = headers.contains_key(header::AUTHORIZATION);
    let post = params.get("client_secret");
    let body_id = params.get("client_id");
    let registered_id = state.opts.client_id.as_str();
    let secret_ok = |secret: &str| state.opts.client_secret.as_deref() == Some(secret);
    let ok = match state.opts.effective_client_auth() {
        // a secret in the body too is a second method: refused
        ClientAuth::Basic => basic.as_ref().is_some_and(|(id, secret)| {
            id == registered_id
                && secret_ok(secret)
                && post.is_none()
                && body_id.is_none_or(|b| b == registered_id)
        }),
        ClientAuth::Post => {
            (!authorization || state.opts.profile == Profile::ZkAuth)
                && body_id == Some(registered_id)
                && post.is_some_and(secret_ok)
        }
        // a public client has no secret to send: one that sends any is
        // refused, as a real provider refuses an unexpected credential
        ClientAuth::None => basic.is_none() && post.is_none() && body_id == Some(registered_id),
    };
    if ok {
        Ok(registered_id.to_owned())
    } else {
        Err(Box::new(invalid_client()))
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
    // RFC 7636 4.1: 43-128 characters of [A-Za-z0-9-._~]
    if !(43..=128).contains(&verifier.len()) {
        return Err((
            "invalid_grant",
            "code_verifier must be 43 to 128 characters",
        ));
    }
    if !verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        return Err((
            "invalid_grant",
            "code_verifier has a character outside [A-Za-z0-9-._~]",
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
        acr: grant.acr.as_deref(),
        auth_time: grant.auth_time,
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
        acr: grant.acr.as_deref(),
        auth_time: grant.auth_time,
    };
    Ok(state.issue_tokens(&grant, client_id))
}
