//! The `/oauth2/*` endpoints: start, callback, sign-out and userinfo.
//!
//! Owns: the login round trip (login-state cookie out, provider, callback,
//! session cookie in) and sign-out.
//! Must not: read a request body, or redirect anywhere but to the provider
//! or to a validated [`ReturnTo`].

use std::borrow::Cow;

use http::header::SET_COOKIE;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use url::Url;

use crate::auth::identity::Identity;
use crate::auth::oidc::{LoginParams, LogoutTarget};
use crate::auth::policy::{self, DenyReason};
use crate::auth::return_to::{ReturnTo, Served, host_allowed};
use crate::auth::session::revocations::Revocation;
use crate::auth::session::store::{SessionStore as _, StoreError};
use crate::auth::session::{
    LOGIN_TTL_SECS, LoginState, LoginStateError, Session, SessionId, clear_session,
    login_cookie_name, now_millis, now_secs, prune_login_states, read_login_state,
    session_cookie_value, session_cookies, set_cookie, write_login_state,
};
use crate::auth::step_up::{self, StepUp};
use crate::auth::{Decided, Decision};
use crate::config::{CallbackUrl, Config, ProviderSet};
use crate::error::{Error, Mode, error_response};
use crate::http::body::ProxyBody;
use crate::http::forwarded::Origin;
use crate::http::response::{Page, PageKind, json, redirect, render_as};
use crate::state::AppState;
use crate::telemetry::escape_log;

/// Longest provider `error` text shown back to the user.
const MAX_PROVIDER_TEXT: usize = 200;

/// What the router learnt about a request before handing it here.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Scheme and host as the client saw them.
    pub origin: Origin,
    /// Page or JSON for errors.
    pub mode: Mode,
}

/// The query's value for `key`, decoded.
pub fn query_param<'a>(parts: &'a Parts, key: &str) -> Option<Cow<'a, str>> {
    let q = parts.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The query's only value for `key`; an error when it is given more than
/// once.
pub fn single_param<'a>(parts: &'a Parts, key: &str) -> Result<Option<Cow<'a, str>>, Error> {
    let Some(q) = parts.uri.query() else {
        return Ok(None);
    };
    let mut values = url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v);
    match (values.next(), values.next()) {
        (first, None) => Ok(first),
        (Some(_), Some(_)) | (None, Some(_)) => Err(Error::BadRequest(
            "a callback parameter is given more than once",
        )),
    }
}

/// `/oauth2/start?rd=URL[&provider=ID]`: begin a login at the provider
/// `ID` (none named: at the one the route at `rd` takes, or the chooser
/// among several), then come back to `rd`. An unknown provider id is a 400.
pub fn start(state: &AppState, parts: &Parts, info: &RequestInfo) -> Response<ProxyBody> {
    let rd = query_param(parts, "rd");
    let target = rd.as_deref().unwrap_or("/");
    let return_to = remembered(&state.config, &info.origin, target);
    // the route `rd` lands on decides the step-up, never the client: a front
    // proxy's sign-in after a step-up 401 asks for what the route needs
    let step_up = step_up_for(&state.config, &info.origin, &return_to);
    match query_param(parts, "provider") {
        Some(id) => match state.config.provider_index(Some(&id)) {
            Some(index) => begin_login_at(state, index, &return_to, info, &parts.headers, step_up),
            None => error_response(&Error::BadRequest("no provider has this id"), info.mode),
        },
        None => {
            let among = providers_at(state, &info.origin, &return_to);
            begin_login_among(state, among, &return_to, info, &parts.headers, step_up)
        }
    }
}

/// The providers the route at `return_to` takes, so a login started without
/// naming one (a front proxy's sign-in redirect) offers only those; every
/// provider when the address cannot be placed on a route.
fn providers_at(state: &AppState, origin: &Origin, return_to: &ReturnTo) -> ProviderSet {
    let config = &state.config;
    let all = config.all_providers();
    if config.providers.len() == 1 {
        return all;
    }
    let (host, path) = if return_to.is_absolute() {
        let Ok(url) = Url::parse(return_to.as_str()) else {
            return all;
        };
        let host = url.host_str().map(|h| match url.port() {
            Some(port) => format!("{h}:{port}"),
            None => h.to_owned(),
        });
        (host, url.path().to_owned())
    } else {
        let path = return_to.as_str().split(['?', '#']).next().unwrap_or("/");
        (origin.host.clone(), path.to_owned())
    };
    let Ok(path) = crate::http::path::normalize(&path) else {
        return all;
    };
    let target = crate::routes::Target {
        host: host.as_deref(),
        method: Some(&http::Method::GET),
        path: &path,
    };
    match config.routes.find(&target) {
        Ok(placed) => placed.route.providers.unwrap_or(all),
        Err(_) => all,
    }
}

/// Where the sign-in chooser lives.
pub const SIGN_IN_PATH: &str = "/oauth2/sign_in";

/// `/oauth2/sign_in?rd=URL`: with one provider, straight to it; with
/// several, a page (JSON for API clients) listing each, every entry a link
/// to `/oauth2/start?provider=ID&rd=URL`.
pub fn sign_in(state: &AppState, parts: &Parts, info: &RequestInfo) -> Response<ProxyBody> {
    let rd = query_param(parts, "rd");
    let return_to = remembered(&state.config, &info.origin, rd.as_deref().unwrap_or("/"));
    let config = &state.config;
    // `providers` narrows the choice (unknown ids left out), else the route
    // at `rd` does; either only shapes the page: the gate decides what a
    // session may do
    let named = query_param(parts, "providers").and_then(|list| {
        list.split(',')
            .filter_map(|id| config.provider_index(Some(id)))
            .fold(None, |set: Option<ProviderSet>, i| {
                Some(set.map_or(ProviderSet::only(i), |s| s.with(i)))
            })
    });
    let among = named.unwrap_or_else(|| providers_at(state, &info.origin, &return_to));
    match among.single() {
        Some(index) => {
            let step_up = step_up_for(config, &info.origin, &return_to);
            begin_login_at(state, index, &return_to, info, &parts.headers, step_up)
        }
        None => chooser(state, among, &return_to, info.mode),
    }
}

/// The chooser's address for a login that returns to `return_to`, among
/// the providers `among` (all of them when it names none).
fn sign_in_url(config: &Config, among: ProviderSet, return_to: &ReturnTo) -> String {
    let mut url = url::form_urlencoded::Serializer::for_suffix(
        format!("{SIGN_IN_PATH}?"),
        SIGN_IN_PATH.len() + 1,
    );
    url.append_pair("rd", return_to.as_str());
    if among != config.all_providers() {
        let ids: Vec<&str> = among
            .iter()
            .filter_map(|i| config.providers.get(i))
            .map(|e| e.id.as_str())
            .collect();
        url.append_pair("providers", &ids.join(","));
    }
    url.finish()
}

/// The chooser: a link to start a login at each provider in `among`.
fn chooser(
    state: &AppState,
    among: ProviderSet,
    return_to: &ReturnTo,
    mode: Mode,
) -> Response<ProxyBody> {
    let choices: Vec<(String, &str, &str)> = among
        .iter()
        .filter_map(|i| state.config.providers.get(i))
        .map(|e| {
            let start = String::from("/oauth2/start?");
            let at = start.len();
            let href = url::form_urlencoded::Serializer::for_suffix(start, at)
                .append_pair("provider", &e.id)
                .append_pair("rd", return_to.as_str())
                .finish();
            (href, e.id.as_str(), e.label.as_str())
        })
        .collect();
    match mode {
        Mode::Json => json(
            StatusCode::OK,
            &serde_json::json!({
                "providers": choices
                    .iter()
                    .map(|(href, id, label)| serde_json::json!({
                        "id": id,
                        "name": label,
                        "sign_in": href,
                    }))
                    .collect::<Vec<_>>(),
            }),
        ),
        Mode::Html => {
            let links: Vec<(&str, &str)> = choices
                .iter()
                .map(|(href, _, label)| (href.as_str(), *label))
                .collect();
            render_as(
                PageKind::SignIn,
                &Page {
                    status: StatusCode::OK,
                    title: "Sign in",
                    what: "This site lets you sign in with more than one account provider.",
                    signed_in_as: None,
                    next: "Choose the one to sign in with:",
                    links: &links,
                    reference: None,
                },
            )
        }
    }
}

/// The step-up asked by the route a browser returns to at `return_to`
/// (with a GET), if any.
fn step_up_for<'c>(
    config: &'c Config,
    origin: &Origin,
    return_to: &ReturnTo,
) -> Option<&'c StepUp> {
    if config.routes.is_default_only() {
        return None;
    }
    let absolute;
    let (host, path) = if return_to.is_absolute() {
        absolute = Url::parse(return_to.as_str()).ok()?;
        (absolute.host_str(), absolute.path())
    } else {
        let raw = return_to.as_str();
        let end = raw.find(['?', '#']).unwrap_or(raw.len());
        (origin.host.as_deref(), &raw[..end])
    };
    let path = crate::http::path::normalize(path).ok()?;
    let placed = config
        .routes
        .find(&crate::routes::Target {
            host,
            method: Some(&http::Method::GET),
            path: &path,
        })
        .ok()?;
    placed.route.step_up.as_ref()
}

/// The URL to come back to after a login started at `target` (a path, or an
/// absolute URL) on `origin`. With a central callback host on another
/// authority, a path is made absolute on the host the browser is on, else it
/// would land on the callback host. Always checked as any return URL.
pub fn remembered(config: &Config, origin: &Origin, target: &str) -> ReturnTo {
    let host = origin.host.as_deref();
    let absolute = match (&config.redirect_url, host) {
        (CallbackUrl::Fixed(cb), Some(h)) if target.starts_with('/') && !same_authority(cb, h) => {
            Some(format!("{}://{h}{target}", origin.proto))
        }
        _ => None,
    };
    ReturnTo::parse(
        absolute.as_deref().unwrap_or(target),
        origin,
        &served(config),
    )
}

/// The hosts `config` serves, where a return URL may point.
pub fn served(config: &Config) -> Served<'_> {
    Served {
        callback: match &config.redirect_url {
            CallbackUrl::Fixed(url) => Some(url),
            CallbackUrl::SameHost(_) => None,
        },
        whitelist: &config.whitelist_domains,
        cookie_domain: config.cookie.domain.as_deref(),
    }
}

/// True when `url` points at `authority` (host and port, default ports
/// filled in).
fn same_authority(url: &Url, authority: &str) -> bool {
    let Ok(a) = authority.parse::<http::uri::Authority>() else {
        return false;
    };
    let port = a.port_u16().or_else(|| url.port_or_known_default());
    url.host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case(a.host()))
        && url.port_or_known_default() == port
}

/// Sends the browser to the provider, remembering `return_to` in a
/// login-state cookie of its own (one per login, so tabs do not collide).
/// The request's oldest login-state cookies beyond
/// [`crate::auth::session::MAX_LOGINS_IN_FLIGHT`] are expired on the way.
pub fn begin_login(
    state: &AppState,
    return_to: &ReturnTo,
    info: &RequestInfo,
    request: &http::HeaderMap,
) -> Response<ProxyBody> {
    begin_login_among(
        state,
        state.config.all_providers(),
        return_to,
        info,
        request,
        None,
    )
}

/// [`begin_login`] at one of the providers in `among`, asking for
/// `step_up`: the only one straight away, else a redirect to the chooser at
/// [`SIGN_IN_PATH`] (never a 2xx: a front proxy would read that as
/// "allowed"; the login started there works the step-up out from `rd`).
pub fn begin_login_among(
    state: &AppState,
    among: ProviderSet,
    return_to: &ReturnTo,
    info: &RequestInfo,
    request: &http::HeaderMap,
    step_up: Option<&StepUp>,
) -> Response<ProxyBody> {
    match among.single() {
        Some(index) => begin_login_at(state, index, return_to, info, request, step_up),
        None => redirect(&sign_in_url(&state.config, among, return_to)),
    }
}

/// [`begin_login`] at the provider `config.providers[index]`, asking for
/// `step_up` (`acr_values`, `max_age` with `prompt=login`); the login state
/// remembers what was asked, so the callback checks the ID token against it.
pub fn begin_login_at(
    state: &AppState,
    index: usize,
    return_to: &ReturnTo,
    info: &RequestInfo,
    request: &http::HeaderMap,
    step_up: Option<&StepUp>,
) -> Response<ProxyBody> {
    match login_redirect(state, index, return_to, &info.origin, step_up) {
        Ok(r) => with_cookies(
            r,
            prune_login_states(state.gate.codec(), &state.config.cookie, request),
        ),
        Err(e) => error_response(&e, info.mode),
    }
}

fn login_redirect(
    state: &AppState,
    index: usize,
    return_to: &ReturnTo,
    origin: &Origin,
    step_up: Option<&StepUp>,
) -> Result<Response<ProxyBody>, Error> {
    let provider = state
        .provider
        .at(index)
        .ok_or_else(|| state.provider.not_ready_at(index))?;
    let mut redirect_uri = callback_url(&state.config, origin)?;
    // each provider but the first comes back at a callback of its own: an
    // answer that a provider relays to another (a mix-up) then lands where
    // the login it carries was not started, and is refused
    if index > 0
        && let Some(entry) = state.config.providers.get(index)
    {
        let path = format!("{}/{}", redirect_uri.path().trim_end_matches('/'), entry.id);
        redirect_uri.set_path(&path);
    }
    let codec = state.gate.codec();
    let token = || {
        codec
            .random_token()
            .ok_or(Error::Internal("random number generator failed"))
    };
    let login = LoginState {
        state: token()?,
        nonce: token()?,
        pkce_verifier: token()?,
        return_to: return_to.as_str().to_owned(),
        redirect_uri: redirect_uri.to_string(),
        provider: state.config.provider_tag(index),
        exp: now_secs() + LOGIN_TTL_SECS,
        acr_values: step_up.and_then(StepUp::acr_param),
        max_age: step_up.and_then(StepUp::max_age_secs),
    };
    let cookie = write_login_state(codec, &state.config.cookie, &login)
        .ok_or(Error::Internal("cannot seal login state"))?;
    let authorize = provider
        .authorize_url(&login_params(&login))
        .map_err(Error::Idp)?;
    let mut r = redirect(authorize.url.as_str());
    r.headers_mut().append(SET_COOKIE, cookie);
    state.metrics.login_started(index);
    Ok(r)
}

fn login_params(login: &LoginState) -> LoginParams<'_> {
    LoginParams {
        state: &login.state,
        nonce: &login.nonce,
        pkce_verifier: &login.pkce_verifier,
        redirect_uri: &login.redirect_uri,
        started_at: login.exp.saturating_sub(LOGIN_TTL_SECS),
        acr_values: login.acr_values.as_deref(),
        max_age: login.max_age,
    }
}

/// The callback URL for a login started on `origin`: the configured one, or
/// `/oauth2/callback` on the request's own host when that host is allowed.
fn callback_url(config: &Config, origin: &Origin) -> Result<Url, Error> {
    match &config.redirect_url {
        CallbackUrl::Fixed(url) => Ok(url.clone()),
        CallbackUrl::SameHost(path) => {
            let host = origin
                .host
                .as_deref()
                .ok_or(Error::BadRequest("no Host header"))?;
            if !host_allowed(origin.proto, host, &config.whitelist_domains) {
                return Err(Error::BadRequest(
                    "sign-in is not offered on this host name",
                ));
            }
            Url::parse(&format!("{}://{host}{path}", origin.proto))
                .map_err(|_e| Error::BadRequest("cannot build a callback URL for this host"))
        }
    }
}

/// `/oauth2/callback`: finish a login.
pub async fn callback(state: &AppState, parts: &Parts, info: &RequestInfo) -> Response<ProxyBody> {
    let cfg = &state.config.cookie;
    // the login-state cookie is single use: cleared whatever the outcome
    let clear_login = query_param(parts, "state")
        .filter(|s| s.len() <= 512)
        .and_then(|s| set_cookie(cfg, &login_cookie_name(&cfg.name, &s), "", None));
    let mut at = None;
    let finished = finish_login(state, parts, &mut at).await;
    count_login(state, at, &finished);
    let mut resp = match finished {
        Ok(r) => r,
        Err(Error::LoginState(why)) => match already_signed_in(state, parts).await {
            Some(r) => r,
            None => error_response(&Error::LoginState(why), info.mode),
        },
        Err(e) => error_response(&e, info.mode),
    };
    if let Some(c) = clear_login {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// A callback whose login state is spent, expired or gone, from a browser
/// that is signed in and allowed (the user went Back into the provider and
/// signed in again): on to the app, the login's return URL when its cookie
/// is still there, else `/`. Nothing is redeemed: the code is never used.
async fn already_signed_in(state: &AppState, parts: &Parts) -> Option<Response<ProxyBody>> {
    let Decided {
        decision,
        set_cookies,
    } = state
        .decide(&parts.headers, state.config.routes.fallback())
        .await;
    let Decision::Allow(identity) = decision else {
        return None;
    };
    let return_to = query_param(parts, "state")
        .and_then(|csrf| {
            read_login_state(
                state.gate.codec(),
                &state.config.cookie,
                &parts.headers,
                &csrf,
            )
            .ok()
        })
        .map_or_else(|| "/".to_owned(), |login| login.return_to);
    tracing::info!(
        user = %escape_log(&identity.subject),
        "callback for a finished sign-in from a signed-in browser: on to the app"
    );
    Some(with_cookies(redirect(&return_to), set_cookies))
}

/// Counts a callback's outcome: a redirect on is a session, a 403 a policy
/// refusal; `at` is the login's provider, once its state was read.
fn count_login(state: &AppState, at: Option<usize>, finished: &Result<Response<ProxyBody>, Error>) {
    use crate::metrics::LoginFailure;
    let why = match finished {
        Ok(r) if r.status() == StatusCode::FORBIDDEN => LoginFailure::Policy,
        Ok(_) => {
            state.metrics.login_completed(at.unwrap_or(0));
            return;
        }
        Err(Error::LoginState(_) | Error::MissingParam(_)) => LoginFailure::State,
        Err(Error::IssuerMismatch) => LoginFailure::Issuer,
        Err(Error::ProviderDenied { .. }) => LoginFailure::Provider,
        Err(Error::Idp(_)) => LoginFailure::Exchange,
        Err(Error::StepUpFailed(_)) => LoginFailure::StepUp,
        Err(Error::StoreUnavailable) => LoginFailure::Store,
        Err(_) => LoginFailure::Other,
    };
    state.metrics.login_failed(at, why);
}

async fn finish_login(
    state: &AppState,
    parts: &Parts,
    at: &mut Option<usize>,
) -> Result<Response<ProxyBody>, Error> {
    // one value each: with two, which one a check saw and which one was
    // used could differ
    let csrf = single_param(parts, "state")?;
    let code = single_param(parts, "code")?;
    let iss = single_param(parts, "iss")?;
    let error = single_param(parts, "error")?;
    let csrf = csrf.ok_or(Error::MissingParam("state"))?;
    let config = &state.config;
    // everything below, the provider's own error text included, is only for
    // a login this browser started
    let login = read_login_state(state.gate.codec(), &config.cookie, &parts.headers, &csrf)
        .map_err(Error::LoginState)?;
    // the login goes on at the provider it started at, whatever else is configured
    let index = config
        .provider_index(login.provider.as_deref())
        .ok_or(Error::LoginState(LoginStateError::Invalid))?;
    *at = Some(index);
    let provider = state
        .provider
        .at(index)
        .ok_or_else(|| state.provider.not_ready_at(index))?;
    // RFC 9207: the answer came from the provider the browser was sent to
    if !provider.response_issuer_ok(iss.as_deref()) {
        return Err(Error::IssuerMismatch);
    }
    // and it came back at that provider's own callback address
    if Url::parse(&login.redirect_uri).map_or(true, |u| u.path() != parts.uri.path()) {
        tracing::info!("callback at another provider's address: refused as a mix-up");
        return Err(Error::IssuerMismatch);
    }
    if let Some(error) = error {
        let clip = |s: &str| s.chars().take(MAX_PROVIDER_TEXT).collect::<String>();
        return Err(Error::ProviderDenied {
            error: clip(&error),
            description: query_param(parts, "error_description").map(|d| clip(&d)),
        });
    }
    let code = code.ok_or(Error::MissingParam("code"))?;
    // a state is redeemed once, whatever cookies come with it; when the
    // shared set cannot be asked, nothing is redeemed
    match state.login_states.first_use(&[&login.state]).await {
        Ok(true) => {}
        Ok(false) => return Err(Error::LoginState(LoginStateError::Used)),
        Err(why) => {
            tracing::warn!(reason = %why, "login state not redeemed: replay guard unavailable");
            return Err(Error::StoreUnavailable);
        }
    }
    let result = provider
        .exchange(&code, &login_params(&login), config.pass_access_token)
        .await
        .map_err(Error::Idp)?;
    let mut identity = result.identity;
    // a step-up login must bring back what it asked for (OIDC Core
    // 3.1.3.7): else an error page, never another login and a loop
    if let Some(asked) = StepUp::from_params(login.acr_values.as_deref(), login.max_age)
        && let Some(short) = step_up::shortfall(&identity, &asked, now_secs())
    {
        tracing::info!(
            user = %escape_log(&identity.subject),
            acr = %escape_log(identity.acr.as_deref().unwrap_or("-")),
            auth_time = identity.auth_time.unwrap_or(0),
            ?short,
            "step-up sign-in did not meet the route's requirement"
        );
        return Err(Error::StepUpFailed(short));
    }
    identity.expires_at = now_secs().saturating_add(config.cookie.expire.as_secs());
    // a refresh token is a long-lived credential: kept only when used
    if config.cookie.refresh.is_none() {
        identity.tokens.refresh_token = None;
    }
    // the provider session id, for back-channel logout by `sid`: read
    // before the id token is dropped below
    let provider_sid = identity
        .tokens
        .id_token
        .as_ref()
        .and_then(|t| crate::auth::oidc::jwt_payload(t.expose()))
        .and_then(|c| c.get("sid").and_then(|v| v.as_str()).map(str::to_owned));
    // keep the id token only where something needs it: it is the bulk of the cookie
    if provider.logout_target().is_none() && !config.pass_authorization_header {
        identity.tokens.id_token = None;
    }
    if let Err(reason) = policy::check(config, &identity) {
        tracing::info!(user = %escape_log(&identity.subject), ?reason, "signed in but not allowed");
        return Ok(forbidden(reason, &identity, Mode::Html));
    }
    let mut session = Session {
        id: SessionId::random(state.gate.codec())
            .ok_or(Error::Internal("random number generator failed"))?,
        provider_sid,
        provider: config.provider_tag(index),
        issuer: provider.issuer().to_owned(),
        issued_at_ms: now_millis(),
        identity,
        secret: None,
    };
    let mut cookies = seal_session(state, &session, &parts.headers).await?;
    if cookies.is_none()
        && session.identity.tokens.id_token.is_some()
        && !config.pass_authorization_header
    {
        // over the chunk bound: the id token, kept only as a sign-out hint,
        // is the part to give up
        tracing::warn!(user = %escape_log(&session.identity.subject), "session too large for cookies: dropping the id token hint");
        session.identity.tokens.id_token = None;
        cookies = seal_session(state, &session, &parts.headers).await?;
    }
    let cookies = cookies.ok_or(Error::Internal(
        "session too large for cookies (too many groups or claims)",
    ))?;
    let identity = session.identity;
    tracing::info!(user = %escape_log(&identity.subject), "signed in");
    let mut r = redirect(&login.return_to);
    for c in cookies {
        r.headers_mut().append(SET_COOKIE, c);
    }
    Ok(r)
}

/// Stores a new session; its cookies, or `None` when it is too large for
/// them.
async fn seal_session(
    state: &AppState,
    session: &Session,
    request: &http::HeaderMap,
) -> Result<Option<Vec<HeaderValue>>, Error> {
    let value = match state.gate.store().save(session).await {
        Ok(v) => v,
        Err(StoreError::Unavailable(why)) => {
            tracing::warn!(reason = %escape_log(&why), "session not stored");
            return Err(Error::StoreUnavailable);
        }
        Err(StoreError::Unstorable(why)) => {
            tracing::warn!(reason = %escape_log(why), "session not stored");
            return Err(Error::Internal("cannot store the session"));
        }
    };
    Ok(session_cookies(
        &state.config.cookie,
        &value,
        session.identity.expires_at,
        request,
    ))
}

/// The 403 answer for a signed-in user refused by policy: why, in plain
/// words, who they are signed in as, and how to sign in as someone else.
pub fn forbidden(reason: DenyReason, who: &Identity, mode: Mode) -> Response<ProxyBody> {
    let what = refusal(reason);
    let as_whom = signed_in_as(who);
    let next = "If you should have access, contact the administrator of this site. \
                To use another account, sign out and sign in as someone else.";
    match mode {
        Mode::Json => json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({
                "error": "forbidden",
                "message": what,
                "signed_in_as": as_whom,
            }),
        ),
        Mode::Html => render_as(
            PageKind::Forbidden,
            &Page {
                status: StatusCode::FORBIDDEN,
                title: "You do not have access",
                what,
                signed_in_as: Some(&as_whom),
                next,
                links: &[("/oauth2/sign_out", "Sign out to sign in as someone else")],
                reference: None,
            },
        ),
    }
}

/// Why a signed-in user was refused, for the person refused: no config
/// keys (the log line names the rule).
fn refusal(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::EmailDomain => {
            "Your email address is not in one of the domains allowed on this site."
        }
        DenyReason::NoEmail => {
            "Your account has no email address, and this site only lets in addresses \
             from certain domains."
        }
        DenyReason::UnverifiedEmail => {
            "Your identity provider says your email address is not verified yet, \
             and this site needs a verified address."
        }
        DenyReason::Role => "Your account does not have a role allowed on this site.",
        DenyReason::ConfiguredGroup => "Your account is not in a group allowed on this site.",
        DenyReason::Group => "Your account is not in a group allowed on this part of the site.",
        DenyReason::LocationEmail => "Your email address is not allowed on this part of the site.",
        DenyReason::Route => "Your account is not among those allowed on this part of the site.",
    }
}

/// How a person recognises their account: the email, else the username,
/// else the name, else the provider's id for them.
pub fn signed_in_as(id: &Identity) -> String {
    id.email
        .as_deref()
        .or(id.preferred_username.as_deref())
        .or(id.name.as_deref())
        .unwrap_or(&id.subject)
        .to_owned()
}

/// `/oauth2/signed_out`: where a sign-out without a return URL ends, also
/// as the provider's post-logout return.
pub fn signed_out() -> Response<ProxyBody> {
    render_as(
        PageKind::SignedOut,
        &Page {
            status: StatusCode::OK,
            title: "You are signed out",
            what: "You have been signed out of this site.",
            signed_in_as: None,
            next: "You can close this window, or sign in again.",
            links: &[("/oauth2/start", "Sign in again")],
            reference: None,
        },
    )
}

/// Where a sign-out without `rd` ends.
pub const SIGNED_OUT_PATH: &str = "/oauth2/signed_out";

/// `/oauth2/sign_out?rd=URL`: revoke the session (here and, with Redis, on
/// every replica), clear its cookies, and end the provider's session too
/// when it advertises an `end_session_endpoint`.
pub async fn sign_out(state: &AppState, parts: &Parts, info: &RequestInfo) -> Response<ProxyBody> {
    let config = &state.config;
    // without `rd`, the sign-out ends on the signed-out page, also when
    // the provider sends the browser back
    let return_to = query_param(parts, "rd").map_or_else(
        || ReturnTo::parse(SIGNED_OUT_PATH, &info.origin, &served(config)),
        |rd| ReturnTo::parse(&rd, &info.origin, &served(config)),
    );
    // the session is read for its id token hint; its id alone is enough to
    // revoke it, so a store outage does not keep the cookie alive
    let session = state
        .gate
        .session(config, &parts.headers)
        .await
        .ok()
        .flatten();
    let cookie_value = session_cookie_value(&parts.headers, &config.cookie.name);
    let id = session
        .as_ref()
        .map(|s| s.id)
        .or_else(|| cookie_value.and_then(|v| state.gate.store().session_id(&v)));
    if let Some(id) = id {
        let until = session.as_ref().map_or_else(
            || now_secs().saturating_add(config.cookie.expire.as_secs()),
            |s| s.identity.expires_at,
        );
        if let Err(e) = state
            .gate
            .store()
            .revoke(Revocation::Session { id, until })
            .await
        {
            tracing::warn!(error = %e, "sign-out: session not revoked");
        } else {
            state
                .metrics
                .revoked(crate::metrics::RevocationSource::SignOut);
        }
        if let Some(s) = &session {
            tracing::info!(user = %escape_log(&s.identity.subject), "signed out");
        }
    }
    // the provider that signed this session in; without a session, the
    // only provider when there is one
    let index = match &session {
        Some(s) => config.provider_index(s.provider.as_deref()),
        None => (config.providers.len() == 1).then_some(0),
    };
    let target = index
        .and_then(|i| state.provider.at(i))
        .and_then(|p| {
            let target = p.logout_target()?;
            Some(end_session_url(
                target,
                &return_to,
                &info.origin,
                &config.redirect_url,
                p.client_id(),
                session.as_ref().map(|s| &s.identity),
                state.gate.codec().random_token().as_deref(),
            ))
        })
        .unwrap_or_else(|| return_to.as_str().to_owned());
    let mut r = redirect(&target);
    for c in clear_session(&config.cookie, &parts.headers) {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}

fn end_session_url(
    target: LogoutTarget,
    return_to: &ReturnTo,
    origin: &Origin,
    redirect_url: &CallbackUrl,
    client_id: &str,
    session: Option<&crate::auth::identity::Identity>,
    state: Option<&str>,
) -> String {
    // the provider needs an absolute URL; a path is made absolute on the
    // host the browser used, or on the callback's host
    let absolute = if return_to.is_absolute() {
        return_to.as_str().to_owned()
    } else {
        match &origin.host {
            Some(h) => format!("{}://{h}{}", origin.proto, return_to),
            None => match redirect_url {
                CallbackUrl::Fixed(u) => u
                    .join(return_to.as_str())
                    .map_or_else(|_e| u.to_string(), |u| u.to_string()),
                // no host to anchor a path on: the provider's own default applies
                CallbackUrl::SameHost(_) => String::new(),
            },
        }
    };
    match target {
        LogoutTarget::Oidc(mut end) => {
            {
                let mut q = end.query_pairs_mut();
                if let Some(hint) = session.and_then(|s| s.tokens.id_token.as_ref()) {
                    q.append_pair("id_token_hint", hint.expose());
                }
                if !absolute.is_empty() {
                    q.append_pair("post_logout_redirect_uri", &absolute);
                }
                q.append_pair("client_id", client_id);
                // some providers (Glewlwyd) return to post_logout_redirect_uri
                // only when a state is sent
                if let Some(state) = state {
                    q.append_pair("state", state);
                }
            }
            end.to_string()
        }
        LogoutTarget::Auth0(mut end) => {
            {
                let mut q = end.query_pairs_mut();
                q.append_pair("client_id", client_id);
                if !absolute.is_empty() {
                    q.append_pair("returnTo", &absolute);
                }
            }
            end.to_string()
        }
    }
}

/// Whether `path` is a callback: `/oauth2/callback`, or
/// `/oauth2/callback/<provider id>` for a provider after the first.
pub fn is_callback(path: &str) -> bool {
    path == "/oauth2/callback"
        || path
            .strip_prefix("/oauth2/callback/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// `/oauth2/userinfo`: the identity as JSON; 401 without a session.
pub async fn userinfo(state: &AppState, parts: &Parts, info: &RequestInfo) -> Response<ProxyBody> {
    let Decided {
        decision,
        set_cookies,
    } = state
        .decide(&parts.headers, state.config.routes.fallback())
        .await;
    let resp = match decision {
        Decision::Allow(id) => match serde_json::to_value(id.user_info()) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(_e) => error_response(&Error::Internal("cannot encode userinfo"), Mode::Json),
        },
        Decision::Deny(reason, who) => forbidden(reason, &who, Mode::Json),
        Decision::Challenge | Decision::StepUp(..) => {
            error_response(&Error::Unauthenticated, Mode::Json)
        }
        // the metadata's address as the client reached it (scheme and host
        // from a trusted front proxy)
        Decision::InvalidToken => crate::auth::bearer::invalid_token(&info.origin),
        Decision::Unavailable(cause) => error_response(&cause.error(), Mode::Json),
    };
    with_cookies(resp, set_cookies)
}

/// Appends `Set-Cookie` values to a response.
pub fn with_cookies(mut r: Response<ProxyBody>, cookies: Vec<HeaderValue>) -> Response<ProxyBody> {
    for c in cookies {
        r.headers_mut().append(SET_COOKIE, c);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(redirect_url: &str) -> Config {
        Config::from_toml_str(&format!(
            r#"
            upstream = "http://127.0.0.1:9"
            oidc_issuer_url = "https://idp.example.com"
            client_id = "gatehouse"
            client_secret = "s3cret"
            redirect_url = "{redirect_url}"
            cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
            email_domain = "*"
            whitelist_domain = ".example.com"
            "#
        ))
        .unwrap()
    }

    fn origin(host: &str) -> Origin {
        Origin {
            proto: "https",
            host: Some(host.to_owned()),
            trusted: false,
            host_forwarded: false,
        }
    }

    #[test]
    fn with_a_central_callback_host_a_path_is_remembered_on_the_starting_host() {
        let central = config("https://auth.example.com/oauth2/callback");
        assert_eq!(
            remembered(&central, &origin("app1.example.com"), "/x?y=1").as_str(),
            "https://app1.example.com/x?y=1"
        );
        // on the callback host itself a path stays a path
        assert_eq!(
            remembered(&central, &origin("auth.example.com"), "/x").as_str(),
            "/x"
        );
        // hostile targets still fall back
        assert_eq!(
            remembered(&central, &origin("app1.example.com"), "https://evil.test/").as_str(),
            "/"
        );
        let per_host = config("/oauth2/callback");
        assert_eq!(
            remembered(&per_host, &origin("app1.example.com"), "/x").as_str(),
            "/x"
        );
    }
}

#[cfg(test)]
mod flow_tests;
