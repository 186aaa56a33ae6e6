//! `POST /oauth2/backchannel-logout`: the provider ends sessions here.
//!
//! Owns: reading the form (bounded), verifying the logout token (through the
//! provider), refusing a replayed `jti`, and revoking the sessions it names:
//! those of the provider session `sid`, or every session of `sub` when only
//! `sub` is given (OpenID Connect Back-Channel Logout 1.0, 2.7).
//! Must not: reveal why a token was refused beyond a short reason, or revoke
//! anything before the token is verified and its `jti` is new.
//!
//! Answers: 200 when done; 400 `{"error":"invalid_request"}` for anything
//! wrong with the request or the token; 503 when the provider is not
//! discovered or the replay guard cannot be consulted (the provider may try
//! again). Always `Cache-Control: no-store`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};

use crate::auth::oidc::IdpError;
use crate::auth::session::now_millis;
use crate::auth::session::now_secs;
use crate::auth::session::revocations::{Revocation, sid_key, sub_key};
use crate::auth::session::store::SessionStore as _;
use crate::http::body::{ProxyBody, empty};
use crate::http::response::json;
use crate::state::AppState;

/// Largest form body read.
const MAX_BODY: usize = 64 * 1024;
/// How long a `jti` is remembered: longer than a token stays acceptable.
pub const JTI_TTL: Duration = Duration::from_secs(600);

/// Handles the logout request.
pub async fn logout<B>(state: &AppState, req: Request<B>) -> Response<ProxyBody>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    no_store(match handle(state, req).await {
        Ok(()) => {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::OK;
            r
        }
        Err(Refusal::Invalid(why)) => {
            tracing::info!(reason = %crate::telemetry::escape_log(&why), "back-channel logout refused");
            json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "invalid_request", "error_description": why}),
            )
        }
        Err(Refusal::Unavailable(why)) => {
            tracing::warn!(reason = %crate::telemetry::escape_log(&why), "back-channel logout not processed");
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({"error": "temporarily_unavailable"}),
            )
        }
    })
}

enum Refusal {
    Invalid(String),
    Unavailable(String),
}

async fn handle<B>(state: &AppState, req: Request<B>) -> Result<(), Refusal>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let invalid = |s: &str| Refusal::Invalid(s.to_owned());
    if req.method() != http::Method::POST {
        return Err(invalid("POST required"));
    }
    let form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(invalid(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_e| invalid("body unreadable or too large"))?
        .to_bytes();
    let mut tokens = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "logout_token")
        .map(|(_, v)| v);
    let token = match (tokens.next(), tokens.next()) {
        (Some(t), None) if !t.is_empty() => t,
        (Some(_), Some(_)) => return Err(invalid("logout_token given more than once")),
        _ => return Err(invalid("missing logout_token")),
    };
    // the token's `iss` (read unverified) picks the provider; its keys and
    // client id then verify everything, `iss` included
    let iss = crate::auth::oidc::jwt_payload(&token)
        .and_then(|c| c.get("iss").and_then(|v| v.as_str()).map(str::to_owned))
        .ok_or_else(|| invalid("logout token: no iss"))?;
    let candidates = state.provider.by_issuer(&iss);
    if candidates.is_empty() {
        return Err(if state.provider.all_ready() {
            invalid("logout token: no provider has this issuer")
        } else {
            Refusal::Unavailable("provider not discovered".to_owned())
        });
    }
    let mut verified = None;
    let mut refusal = None;
    // one issuer can serve several of our clients: the audience tells them apart
    for (_index, provider) in candidates {
        match provider.verify_logout_token(&token).await {
            Ok(claims) => {
                verified = Some((claims, provider));
                break;
            }
            Err(e) => {
                let this = match e {
                    // the keys could not be fetched: the provider may post again
                    IdpError::Transport(_) | IdpError::Discovery { .. } => {
                        Refusal::Unavailable(e.to_string())
                    }
                    _ => Refusal::Invalid(e.to_string()),
                };
                // a candidate that could not check it outranks one that
                // refused it: it may be the right one, and a 400 would stop
                // the provider from posting again
                if !matches!(refusal, Some(Refusal::Unavailable(_))) {
                    refusal = Some(this);
                }
            }
        }
    }
    let Some((claims, provider)) = verified else {
        return Err(refusal.unwrap_or_else(|| invalid("logout token not verified")));
    };
    let issuer = provider.issuer();
    match state.logout_replays.first_use(&[issuer, &claims.jti]).await {
        Ok(true) => {}
        Ok(false) => return Err(invalid("logout token already used (jti)")),
        Err(e) => return Err(Refusal::Unavailable(e)),
    }
    // sessions that can be hit live at most cookie_expire from now
    let until = now_secs().saturating_add(state.config.cookie.expire.as_secs());
    let at_ms = now_millis();
    let revocation = match (&claims.sid, &claims.sub) {
        (Some(sid), _) => Revocation::ProviderSession {
            key: sid_key(issuer, sid),
            at_ms,
            until,
        },
        (None, Some(sub)) => Revocation::Subject {
            key: sub_key(issuer, sub),
            at_ms,
            until,
        },
        (None, None) => return Err(invalid("neither sid nor sub")),
    };
    state
        .gate
        .store()
        .revoke(revocation)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    state
        .metrics
        .revoked(crate::metrics::RevocationSource::Backchannel);
    tracing::info!(
        by = if claims.sid.is_some() { "sid" } else { "sub" },
        "sessions ended by back-channel logout"
    );
    Ok(())
}

fn no_store(mut r: Response<ProxyBody>) -> Response<ProxyBody> {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests;
