//! `MockIdp`: an in-process OpenID Connect provider for the integration tests
//! and `examples/demo.rs`.
//!
//! It speaks the real protocol over HTTP on an ephemeral loopback port:
//! discovery, JWKS, `/authorize` (login page or auto-approve), `/token`
//! (authorization code with PKCE S256, refresh token rotation, client auth by
//! HTTP Basic or form body), `/userinfo` and `/logout`. Tokens are RS256 JWTs
//! signed with the committed test-only keys in `keys/`.
//!
//! Knobs (`MockIdp::knobs`) change its behaviour at runtime so tests can
//! simulate a misbehaving or hostile provider: mutated tokens, key rotation,
//! error redirects, failing endpoints.
//!
//! Invariants: nothing here panics on network input (malformed requests get a
//! 400 or an OAuth error redirect), no lock is held across an `.await`, and it
//! depends only on the crate's regular dependencies so the demo can include it.
//!
//! Layout: this file holds the options, knobs, state and the endpoints except
//! `/token`, which is in `idp/token_endpoint.rs`; keys, claims and token
//! mutations are in `idp/tokens.rs`; response builders in `idp/web.rs`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use url::Url;

// explicit paths: this file is also compiled from examples/demo.rs via
// `#[path]`, where implicit nested module lookup would differ
#[path = "idp/token_endpoint.rs"]
mod token_endpoint;
#[path = "idp/tokens.rs"]
mod tokens;
#[path = "idp/web.rs"]
mod web;

pub use tokens::{TokenMutation, pkce_challenge};
pub use web::escape_html;

use tokens::Minter;
use web::{
    Resp, html_page, json_response, oauth_error, parse_basic, redirect_with, respond, status_from,
};

/// PEM of the public half of `key1` (SPKI), e.g. for static-key bearer configs.
pub const KEY1_PUBLIC_PEM: &str = include_str!("keys/key1.pub.pem");
/// PEM of the public half of `key2`.
pub const KEY2_PUBLIC_PEM: &str = include_str!("keys/key2.pub.pem");
/// Public JWK of `key1` (kid "key1").
pub const KEY1_JWK: &str = include_str!("keys/key1.jwk.json");
/// Public JWK of `key2` (kid "key2").
pub const KEY2_JWK: &str = include_str!("keys/key2.jwk.json");

/// A user that can sign in at the mock provider.
#[derive(Clone, Debug)]
pub struct DemoUser {
    /// Login name; also `preferred_username`.
    pub username: String,
    /// Stable subject identifier (`sub`), deliberately not the username.
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    pub groups: Vec<String>,
}

/// Startup options. Runtime behaviour lives in [`Knobs`].
#[derive(Clone, Debug)]
pub struct IdpOptions {
    pub client_id: String,
    /// `None` makes a public client: only `client_id` is checked.
    pub client_secret: Option<String>,
    pub users: Vec<DemoUser>,
    /// Username: `/authorize` redirects straight back as that user instead
    /// of showing the login page. Copied into [`Knobs::auto_approve`].
    pub auto_approve: Option<String>,
    /// Advertise the issuer as `http://127.0.0.1:PORT/` (with a slash).
    pub issuer_trailing_slash: bool,
}

/// Runtime behaviour, changed through [`MockIdp::knobs`].
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Username to approve without showing the login page.
    pub auto_approve: Option<String>,
    /// `/authorize` redirects back with `error=<this>` instead of a code.
    pub authorize_error: Option<String>,
    pub id_token_mutation: Option<TokenMutation>,
    pub access_token_mutation: Option<TokenMutation>,
    /// `/token` answers this status with an error JSON body.
    pub token_endpoint_status: Option<u16>,
    /// `/.well-known/openid-configuration` answers this status instead.
    pub discovery_status: Option<u16>,
    /// `/jwks` answers this status instead.
    pub jwks_status: Option<u16>,
    /// Key ids published at `/jwks` ("key1", "key2"); default `["key1"]`.
    pub publish_keys: Vec<&'static str>,
    /// Key id that signs tokens: "key2" signs with key2, anything else with
    /// key1 (so an unpublished name also makes an unknown kid).
    pub signing_kid: &'static str,
    pub id_token_ttl_secs: i64,
    /// Access token lifetime, also the `expires_in` of the token response.
    pub access_token_ttl_secs: i64,
    /// Include a `refresh_token` in token responses.
    pub issue_refresh_tokens: bool,
    /// Merged into ID token claims; a `null` value removes the claim.
    pub extra_id_token_claims: Map<String, Value>,
    /// Merged into access token claims; a `null` value removes the claim.
    pub extra_access_token_claims: Map<String, Value>,
    /// Sleep this long before answering any request (timeout tests).
    pub response_delay: Option<Duration>,
}

/// Query or form parameters in the order received.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

/// One request to `/token`, recorded before any validation.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub headers: HeaderMap,
    pub body: String,
    pub params: Params,
}

/// One request to `/logout`.
#[derive(Clone, Debug)]
pub struct LogoutRequest {
    /// Raw query string (empty if none).
    pub query: String,
    pub params: Params,
}

/// The running provider. Dropping it stops the server and every connection.
pub struct MockIdp {
    state: Arc<State>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

struct State {
    issuer: String,
    base: String,
    opts: IdpOptions,
    minter: Minter,
    rng: SystemRandom,
    knobs: Mutex<Knobs>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    /// access token → username, for `/userinfo`
    access_tokens: Mutex<HashMap<String, String>>,
    authorize_requests: Mutex<Vec<Params>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    logout_requests: Mutex<Vec<LogoutRequest>>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    userinfo_requests: AtomicUsize,
}

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    username: String,
    scope: String,
    issued: Instant,
}

struct RefreshGrant {
    client_id: String,
    username: String,
    nonce: Option<String>,
    scope: String,
}

// === impl DemoUser ===

impl DemoUser {
    pub fn new(username: &str, email: &str, name: &str, groups: &[&str]) -> Self {
        Self {
            username: username.to_owned(),
            sub: format!("uid-{username}-0001"),
            email: email.to_owned(),
            email_verified: true,
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    /// The profile claims shared by ID tokens, access tokens and userinfo.
    fn profile_claims(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("sub".into(), json!(self.sub));
        m.insert("email".into(), json!(self.email));
        m.insert("email_verified".into(), json!(self.email_verified));
        m.insert("name".into(), json!(self.name));
        m.insert("preferred_username".into(), json!(self.username));
        m.insert("groups".into(), json!(self.groups));
        m
    }
}

// === impl IdpOptions ===

impl Default for IdpOptions {
    fn default() -> Self {
        Self {
            client_id: "gatehouse".into(),
            client_secret: Some("s3cret".into()),
            users: vec![
                DemoUser::new(
                    "alice",
                    "alice@example.com",
                    "Alice Admin",
                    &["admins", "staff"],
                ),
                DemoUser::new("bob", "bob@example.com", "Bob Builder", &["staff"]),
                DemoUser::new(
                    "carol",
                    "carol@other.example",
                    "Carol Contractor",
                    &["contractors"],
                ),
            ],
            auto_approve: None,
            issuer_trailing_slash: false,
        }
    }
}

impl IdpOptions {
    /// Default options, auto-approving as `username`.
    pub fn auto_approving(username: &str) -> Self {
        Self {
            auto_approve: Some(username.to_owned()),
            ..Self::default()
        }
    }
}

// === impl Knobs ===

impl Knobs {
    fn new(auto_approve: Option<String>) -> Self {
        Self {
            auto_approve,
            authorize_error: None,
            id_token_mutation: None,
            access_token_mutation: None,
            token_endpoint_status: None,
            discovery_status: None,
            jwks_status: None,
            publish_keys: vec!["key1"],
            signing_kid: "key1",
            id_token_ttl_secs: 300,
            access_token_ttl_secs: 300,
            issue_refresh_tokens: true,
            extra_id_token_claims: Map::new(),
            extra_access_token_claims: Map::new(),
            response_delay: None,
        }
    }
}

// === impl Params ===

impl Params {
    fn parse(s: &str) -> Self {
        Self(
            url::form_urlencoded::parse(s.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// First value of `name`; `None` if absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// OAuth forbids repeating a parameter; returns the first repeated name.
    fn repeated(&self) -> Option<&str> {
        self.0
            .iter()
            .enumerate()
            .find(|(i, (k, _))| self.0[..*i].iter().any(|(seen, _)| seen == k))
            .map(|(_, (k, _))| k.as_str())
    }
}

// === impl TokenRequest ===

impl TokenRequest {
    /// `(client_id, client_secret)` from an `Authorization: Basic` header.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        parse_basic(&self.headers)
    }
}

// === impl MockIdp ===

impl MockIdp {
    /// Starts the provider on `127.0.0.1:0`. Panics if it cannot bind.
    #[cfg(test)]
    pub async fn start(opts: IdpOptions) -> Self {
        Self::try_start(opts)
            .await
            .expect("mock idp failed to start")
    }

    /// Starts the provider on `127.0.0.1:0`.
    pub async fn try_start(opts: IdpOptions) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let issuer = if opts.issuer_trailing_slash {
            format!("{base}/")
        } else {
            base.clone()
        };
        let minter = Minter::load(issuer.clone(), opts.client_id.clone())?;
        let state = Arc::new(State {
            issuer,
            base,
            minter,
            rng: SystemRandom::new(),
            knobs: Mutex::new(Knobs::new(opts.auto_approve.clone())),
            opts,
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
            authorize_requests: Mutex::default(),
            token_requests: Mutex::default(),
            logout_requests: Mutex::default(),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            userinfo_requests: AtomicUsize::new(0),
        });
        let task = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(Self { state, addr, task })
    }

    /// The issuer exactly as advertised in discovery.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// `http://127.0.0.1:PORT` (never a trailing slash).
    pub fn base_url(&self) -> String {
        self.state.base.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn options(&self) -> &IdpOptions {
        &self.state.opts
    }

    /// Runtime knobs. Do not hold the guard across an `.await`.
    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.state.knobs)
    }

    /// Changes knobs inside a closure, so no guard can leak into async code.
    pub fn set_knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.knobs());
    }

    /// Every `/authorize` and `/authorize/approve` query, in order.
    pub fn authorize_requests(&self) -> Vec<Params> {
        lock(&self.state.authorize_requests).clone()
    }

    /// Every `/token` request (headers and form body), in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.token_requests).clone()
    }

    pub fn logout_requests(&self) -> Vec<LogoutRequest> {
        lock(&self.state.logout_requests).clone()
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn userinfo_requests(&self) -> usize {
        self.state.userinfo_requests.load(Ordering::SeqCst)
    }

    /// Forgets every refresh token: the next refresh gets `invalid_grant`
    /// (a session revoked at the provider).
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.state.refresh_tokens).clear();
    }

    /// Mints an access token for `username` as `/token` would (also valid at
    /// `/userinfo`), applying `mutation` instead of the knob.
    pub fn try_mint_access_token(
        &self,
        username: &str,
        mutation: Option<TokenMutation>,
    ) -> Result<String, String> {
        let user = self.state.user(username).ok_or("unknown user")?;
        let knobs = Knobs {
            access_token_mutation: mutation,
            ..self.knobs().clone()
        };
        let jti = self.state.random_token()?;
        let token = self
            .state
            .minter
            .access_token(&knobs, user, "openid email profile", &jti)?;
        lock(&self.state.access_tokens).insert(token.clone(), user.username.clone());
        Ok(token)
    }

    /// Mints an ID token for `username` with `nonce`, applying `mutation`.
    pub fn try_mint_id_token(
        &self,
        username: &str,
        nonce: Option<&str>,
        mutation: Option<TokenMutation>,
    ) -> Result<String, String> {
        let user = self.state.user(username).ok_or("unknown user")?;
        let knobs = Knobs {
            id_token_mutation: mutation,
            ..self.knobs().clone()
        };
        self.state.minter.id_token(&knobs, user, nonce)
    }

    #[cfg(test)]
    pub fn mint_access_token(&self, username: &str, mutation: Option<TokenMutation>) -> String {
        self.try_mint_access_token(username, mutation)
            .expect("mint access token")
    }

    #[cfg(test)]
    pub fn mint_id_token(
        &self,
        username: &str,
        nonce: Option<&str>,
        mutation: Option<TokenMutation>,
    ) -> String {
        self.try_mint_id_token(username, nonce, mutation)
            .expect("mint id token")
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        // aborting the accept loop drops its JoinSet, which aborts every
        // connection, so keep-alive clients see the provider go away too
        self.task.abort();
    }
}

// === impl State ===

impl State {
    fn knobs(&self) -> Knobs {
        lock(&self.knobs).clone()
    }

    fn user(&self, username: &str) -> Option<&DemoUser> {
        self.opts.users.iter().find(|u| u.username == username)
    }

    fn random_token(&self) -> Result<String, String> {
        let mut buf = [0_u8; 32];
        self.rng.fill(&mut buf).map_err(|e| format!("rng: {e}"))?;
        Ok(URL_SAFE_NO_PAD.encode(buf))
    }

    /// Mints the token response for `user` and stores the refresh token.
    fn issue_tokens(
        &self,
        user: &DemoUser,
        client_id: &str,
        nonce: Option<&str>,
        scope: &str,
    ) -> Result<Value, String> {
        let knobs = self.knobs();
        let id_token = self.minter.id_token(&knobs, user, nonce)?;
        let access_token = self
            .minter
            .access_token(&knobs, user, scope, &self.random_token()?)?;
        lock(&self.access_tokens).insert(access_token.clone(), user.username.clone());
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": knobs.access_token_ttl_secs,
            "id_token": id_token,
            "scope": scope,
        });
        if knobs.issue_refresh_tokens {
            let refresh_token = self.random_token()?;
            let grant = RefreshGrant {
                client_id: client_id.to_owned(),
                username: user.username.clone(),
                nonce: nonce.map(str::to_owned),
                scope: scope.to_owned(),
            };
            lock(&self.refresh_tokens).insert(refresh_token.clone(), grant);
            body["refresh_token"] = json!(refresh_token);
        }
        Ok(body)
    }
}

// === server ===

async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // e.g. out of file descriptors: back off instead of spinning
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = Arc::clone(&state);
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(Arc::clone(&state), req));
                    // an error here is a client going away; nothing to report
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let delay = state.knobs().response_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let query = req.uri().query().unwrap_or_default().to_owned();
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/.well-known/openid-configuration") => discovery(&state),
        (&Method::GET, "/jwks") => jwks(&state),
        (&Method::GET, "/authorize") => authorize(&state, &query, false),
        (&Method::GET, "/authorize/approve") => authorize(&state, &query, true),
        (&Method::POST, "/token") => token_endpoint::token(&state, req).await,
        (&Method::GET | &Method::POST, "/userinfo") => userinfo(&state, req.headers()),
        (&Method::GET, "/logout") => logout(&state, &query),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
    };
    Ok(resp)
}

fn discovery(state: &State) -> Resp {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = state.knobs().discovery_status {
        return json_response(
            status_from(status),
            &json!({ "error": "discovery disabled" }),
        );
    }
    let base = &state.base;
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": state.issuer,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "end_session_endpoint": format!("{base}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "email",
                "email_verified", "name", "preferred_username", "groups",
            ],
        }),
    )
}

fn jwks(state: &State) -> Resp {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let knobs = state.knobs();
    if let Some(status) = knobs.jwks_status {
        return json_response(status_from(status), &json!({ "error": "jwks disabled" }));
    }
    json_response(StatusCode::OK, &state.minter.jwks(&knobs.publish_keys))
}

/// `/authorize`, and `/authorize/approve` (`approve`: the login page's links).
fn authorize(state: &State, query: &str, approve: bool) -> Resp {
    let params = Params::parse(query);
    lock(&state.authorize_requests).push(params.clone());
    // without a valid client and redirect_uri there is nowhere safe to
    // redirect an error to, so these are plain 400 pages (RFC 6749 4.1.2.1)
    if params.get("client_id") != Some(state.opts.client_id.as_str()) {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>unknown or missing client_id</p>",
        );
    }
    let raw_redirect = params.get("redirect_uri").unwrap_or_default();
    let Ok(redirect) = Url::parse(raw_redirect) else {
        return html_page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>missing or invalid redirect_uri</p>",
        );
    };
    let state_param = params.get("state");
    let fail = |error: &str, description: &str| {
        redirect_with(
            &redirect,
            &[("error", error), ("error_description", description)],
            state_param,
        )
    };
    if let Some(name) = params.repeated() {
        return fail("invalid_request", &format!("parameter {name} repeated"));
    }
    if state_param.is_none_or(str::is_empty) {
        return fail("invalid_request", "state is required");
    }
    if params.get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if params.get("code_challenge").is_none_or(str::is_empty) {
        return fail("invalid_request", "code_challenge is required");
    }
    if params.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if !params
        .get("scope")
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == "openid")
    {
        return fail("invalid_scope", "scope must include openid");
    }
    let knobs = state.knobs();
    if let Some(error) = &knobs.authorize_error {
        return fail(error, "the mock provider was told to refuse this request");
    }
    let username = if approve {
        params.get("user").map(str::to_owned)
    } else {
        knobs.auto_approve
    };
    let Some(username) = username else {
        return login_page(state, &params);
    };
    let Some(user) = state.user(&username) else {
        return html_page(StatusCode::BAD_REQUEST, "Error", "<p>unknown user</p>");
    };
    let Ok(code) = state.random_token() else {
        return fail("server_error", "no randomness");
    };
    let grant = CodeGrant {
        client_id: state.opts.client_id.clone(),
        // compared byte for byte at the token endpoint (RFC 6749 4.1.3)
        redirect_uri: raw_redirect.to_owned(),
        code_challenge: params.get("code_challenge").unwrap_or_default().to_owned(),
        nonce: params.get("nonce").map(str::to_owned),
        username: user.username.clone(),
        scope: params.get("scope").unwrap_or_default().to_owned(),
        issued: Instant::now(),
    };
    lock(&state.codes).insert(code.clone(), grant);
    redirect_with(&redirect, &[("code", &code)], state_param)
}

fn login_page(state: &State, params: &Params) -> Resp {
    let mut items = String::new();
    for user in &state.opts.users {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        link.append_pair("user", &user.username);
        for (k, v) in params.0.iter().filter(|(k, _)| k != "user") {
            link.append_pair(k, v);
        }
        items.push_str(&format!(
            "<li><a href=\"/authorize/approve?{}\">Sign in as <b>{}</b></a> \
             <small>{} &middot; groups: {}</small></li>\n",
            escape_html(&link.finish()),
            escape_html(&user.username),
            escape_html(&user.email),
            escape_html(&user.groups.join(", ")),
        ));
    }
    let body = format!(
        "<p>Mock identity provider. Client <code>{}</code> asks you to sign in.</p>\n\
         <ul class=\"users\">\n{items}</ul>\n<p><small>No passwords: pick a user.</small></p>",
        escape_html(&state.opts.client_id)
    );
    html_page(StatusCode::OK, "Sign in", &body)
}

fn userinfo(state: &State, headers: &HeaderMap) -> Resp {
    state.userinfo_requests.fetch_add(1, Ordering::SeqCst);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let username = token.and_then(|t| lock(&state.access_tokens).get(t).cloned());
    match username.as_deref().and_then(|u| state.user(u)) {
        Some(user) => json_response(StatusCode::OK, &Value::Object(user.profile_claims())),
        None => {
            let mut resp = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "unknown access token",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            resp
        }
    }
}

fn logout(state: &State, query: &str) -> Resp {
    let params = Params::parse(query);
    lock(&state.logout_requests).push(LogoutRequest {
        query: query.to_owned(),
        params: params.clone(),
    });
    match params.get("post_logout_redirect_uri").map(Url::parse) {
        Some(Ok(target)) => redirect_with(&target, &[], params.get("state")),
        Some(Err(_)) => html_page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>invalid post_logout_redirect_uri</p>",
        ),
        None => html_page(
            StatusCode::OK,
            "Signed out",
            "<p>You are signed out of the mock provider.</p>",
        ),
    }
}

// === helpers ===

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking test thread must not wedge the provider for the others
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
