//! `MockIdp`: an in-process OpenID Connect provider for the integration tests
//! and `examples/demo.rs`.
//!
//! It speaks the real protocol over HTTP on an ephemeral loopback port:
//! discovery, JWKS, `/authorize` (login page or auto-approve), `/token`
//! (authorization code with PKCE S256, refresh token rotation, client auth by
//! the client's registered method), `/userinfo` and `/logout`. Tokens are
//! JWTs signed with the committed test-only keys in `keys/` (RS256 by
//! default; PS256, ES256, ES384 and EdDSA keys too, see [`KEY_IDS`]).
//!
//! As strict as a real provider where a relying party could get it wrong:
//! `/authorize` only redirects to a registered `redirect_uri` (an error page
//! otherwise); the token endpoint takes only the client's registered
//! authentication method ([`ClientAuth`]) and refuses a public client that
//! sends a secret; the ZKAuth JSON token request must have exactly the
//! expected string members; a `code_verifier` must be 43-128 characters of
//! the RFC 7636 unreserved set.
//!
//! [`IdpOptions::profile`] makes it behave like a particular provider
//! (Keycloak, Authentik, Auth0, Passage, ZKAuth): its issuer form, endpoint
//! paths, discovery document, token shapes and claims, client authentication
//! and token request encoding; see [`Profile`] and `idp/profiles.rs`. The
//! default, [`Profile::Generic`], is the endpoints listed above.
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
//! `/token`, which is in `idp/token_endpoint.rs`; keys, token claims and
//! mutations are in `idp/tokens.rs`; each profile's paths, discovery document
//! and profile claims in `idp/profiles.rs`; response builders in `idp/web.rs`.

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
#[path = "idp/profiles.rs"]
mod profiles;
#[path = "idp/token_endpoint.rs"]
mod token_endpoint;
#[path = "idp/tokens.rs"]
mod tokens;
#[path = "idp/web.rs"]
mod web;

pub use profiles::Profile;
pub use tokens::{
    BACKCHANNEL_LOGOUT_EVENT, KEY_IDS, LogoutTokenMutation, TokenMutation, key_alg, pkce_challenge,
    public_jwk, public_pem,
};
pub use web::escape_html;

use profiles::{Route, Routes};
use tokens::{Grant, Minter};
use web::{
    Resp, html_page, json_response, oauth_error, parse_basic, redirect_with, respond, status_from,
};

/// Second audience Passage puts in every ID token (see [`Knobs::extra_audiences`]).
pub const PASSAGE_OTHER_AUDIENCE: &str = "https://passage.example/other";
/// The namespaced claim an Auth0 Action adds with the user's app roles.
pub const AUTH0_ROLES_CLAIM: &str = "https://example.com/roles";
/// Realm roles every Keycloak user has (`realm_access.roles`).
pub const KEYCLOAK_REALM_ROLES: [&str; 2] = ["offline_access", "user"];

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
    /// Phone number (Passage's `phone` claim).
    pub phone: Option<String>,
    /// Roles of our client: Keycloak `resource_access.<client_id>.roles`,
    /// Auth0 `permissions`.
    pub client_roles: Vec<String>,
    /// Application roles: Auth0's namespaced [`AUTH0_ROLES_CLAIM`].
    pub app_roles: Vec<String>,
}

/// How the client authenticates at the token endpoint: its registered
/// `token_endpoint_auth_method`, the only one the mock accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic, nothing in the body.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body
    /// (ZKAuth: in its JSON body).
    Post,
    /// `none`: a public client; `client_id` in the body and no secret
    /// anywhere.
    None,
}

/// The redirect URI registered by default: the loopback callback, any port
/// (RFC 8252 7.3), which is what the test proxies and the demo use.
pub const DEFAULT_REDIRECT_URI: &str = "http://127.0.0.1/oauth2/callback";

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
    /// Advertise the issuer as `http://127.0.0.1:PORT/` (with a slash);
    /// only for [`Profile::Generic`], the others have their own issuer form.
    pub issuer_trailing_slash: bool,
    /// Which provider to behave like.
    pub profile: Profile,
    /// Registered redirect URIs, compared exactly (RFC 6749 3.1.2.2), except
    /// that one on a loopback IP literal without a port matches any port
    /// (RFC 8252 7.3). Default: [`DEFAULT_REDIRECT_URI`]. More can be added
    /// at runtime with [`MockIdp::register_redirect_uri`].
    pub redirect_uris: Vec<String>,
    /// The registered client authentication method; `None` picks the one
    /// gatehouse's preset for the profile uses: `ClientAuth::None` without a
    /// secret, else `Basic` (Passage, Generic, Keycloak, Authentik, Auth0) or
    /// `Post` (ZKAuth). Stricter than Keycloak and Authentik, which take
    /// either secret method: every profile holds the client to one, so each
    /// method gatehouse can send is really exercised.
    pub client_auth: Option<ClientAuth>,
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
    /// `/token` answers every valid-looking request with this OAuth error
    /// (RFC 6749 5.2: 401 for `invalid_client`, else 400), after recording
    /// it; `token_endpoint_status` wins when both are set.
    pub token_endpoint_error: Option<&'static str>,
    /// `/.well-known/openid-configuration` answers this status instead.
    pub discovery_status: Option<u16>,
    /// `/jwks` answers this status instead.
    pub jwks_status: Option<u16>,
    /// Key ids published at `/jwks` (see [`KEY_IDS`]); default `["key1"]`.
    pub publish_keys: Vec<&'static str>,
    /// Key id that signs tokens, with its key's algorithm (see [`KEY_IDS`]);
    /// a name not in [`KEY_IDS`] signs with key1 under that kid (so an
    /// unpublished name also makes an unknown kid).
    pub signing_kid: &'static str,
    pub id_token_ttl_secs: i64,
    /// Access token lifetime, also the `expires_in` of the token response;
    /// 300, or 900 for ZKAuth.
    pub access_token_ttl_secs: i64,
    /// Include a `refresh_token` in token responses (never for ZKAuth).
    pub issue_refresh_tokens: bool,
    /// Merged into ID token claims; a `null` value removes the claim.
    pub extra_id_token_claims: Map<String, Value>,
    /// Merged into access token claims; a `null` value removes the claim.
    pub extra_access_token_claims: Map<String, Value>,
    /// Sleep this long before answering any request (timeout tests).
    pub response_delay: Option<Duration>,
    /// Overrides every user's `email_verified`; Authentik starts at
    /// `Some(false)` (it does not verify addresses by default).
    pub email_verified: Option<bool>,
    /// Advertise (and serve) the profile's `end_session_endpoint`; starts
    /// false only for Auth0, whose `/oidc/logout` is opt-in (its
    /// `/v2/logout` is always served).
    pub advertise_end_session: bool,
    /// Audiences after the client id in ID tokens' `aud`, which is an array
    /// when there are any (Passage: always an array; starts with
    /// [`PASSAGE_OTHER_AUDIENCE`]; empty makes a one-element array).
    pub extra_audiences: Vec<String>,
    /// Leave `azp` out of ID tokens.
    pub omit_azp: bool,
    /// The `iss` claim of every token minted, instead of the issuer
    /// (discovery still advertises the real one).
    pub issuer_claim: Option<String>,
    /// `/userinfo` answers this `sub` instead of the user's.
    pub userinfo_sub: Option<String>,
    /// Discovery advertises `authorization_response_iss_parameter_supported`
    /// (RFC 9207); read by a relying party at its discovery.
    pub advertise_iss_parameter: bool,
    /// The `iss` parameter `/authorize` adds to its redirects back.
    pub response_iss: ResponseIss,
    /// Members merged into the discovery document (a `null` value removes
    /// one), e.g. an endpoint advertised on another host.
    pub discovery_overrides: Map<String, Value>,
    /// The `acr` of every sign-in, whatever `acr_values` asked (a provider
    /// that cannot meet a step-up); `None`: the first value asked, else the
    /// profile's own.
    pub acr_answer: Option<String>,
    /// Every sign-in's `auth_time` is this many seconds ago, whatever
    /// `prompt=login` or `max_age` asked (an old provider session); `None`:
    /// now, a fresh authentication.
    pub auth_age_secs: Option<i64>,
    /// Endpoints that answer a [`Fault`] instead of their real answer (the
    /// fault suite, `tests/lifecycle/faults.rs`); the first match wins.
    pub faults: Vec<(Endpoint, Fault)>,
}

/// An endpoint a [`Fault`] can be set on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Discovery,
    Jwks,
    Token,
    Userinfo,
}

/// A broken answer: status 200 with a body no relying party can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This content type and body (invalid JSON, an HTML error page, JSON
    /// under another content type...).
    Garbage {
        content_type: &'static str,
        body: &'static str,
    },
    /// A valid-looking JSON object of this many bytes (one long string
    /// member), for body size caps.
    Huge(usize),
}

impl Fault {
    fn respond(&self) -> Resp {
        match self {
            Self::Garbage { content_type, body } => respond(StatusCode::OK, content_type, *body),
            Self::Huge(bytes) => {
                let mut body = Vec::with_capacity(*bytes);
                body.extend_from_slice(b"{\"pad\":\"");
                body.resize(bytes.saturating_sub(2).max(body.len()), b'x');
                body.extend_from_slice(b"\"}");
                respond(StatusCode::OK, "application/json", body)
            }
        }
    }
}

/// What `/authorize` sends as `iss` on its redirects (RFC 9207).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ResponseIss {
    /// No `iss` parameter.
    #[default]
    Omit,
    /// The issuer, as a provider supporting RFC 9207 does.
    Issuer,
    /// This value instead (a mix-up attack).
    Other(String),
}

/// Query or form parameters in the order received.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

/// One request to the token endpoint, recorded before any validation.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub headers: HeaderMap,
    /// The raw body.
    pub body: String,
    /// The form fields, or for ZKAuth the JSON body's string members.
    pub params: Params,
}

/// One request to a logout endpoint.
#[derive(Clone, Debug)]
pub struct LogoutRequest {
    /// The path (e.g. `/logout`, Auth0's `/v2/logout` or `/oidc/logout`).
    pub path: String,
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
    routes: Routes,
    opts: IdpOptions,
    minter: Minter,
    rng: SystemRandom,
    knobs: Mutex<Knobs>,
    codes: Mutex<HashMap<String, CodeGrant>>,
    refresh_tokens: Mutex<HashMap<String, RefreshGrant>>,
    /// access token → username, for `/userinfo`
    access_tokens: Mutex<HashMap<String, String>>,
    authorize_requests: Mutex<Vec<Params>>,
    /// [`IdpOptions::redirect_uris`] plus those registered at runtime.
    redirect_uris: Mutex<Vec<String>>,
    /// The provider session (`sid`) of the latest code issued.
    last_sid: Mutex<Option<String>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    /// Every successful token response body, in order.
    issued_tokens: Mutex<Vec<Value>>,
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
    /// Auth0: the API the access token is for.
    audience: Option<String>,
    sid: String,
    issued: Instant,
    /// The sign-in's `acr` (what `acr_values` asked, or the knob's).
    acr: Option<String>,
    /// When the user authenticated, Unix seconds.
    auth_time: Option<i64>,
}

struct RefreshGrant {
    client_id: String,
    username: String,
    nonce: Option<String>,
    scope: String,
    audience: Option<String>,
    sid: String,
    /// A refreshed ID token repeats the login's `acr` and `auth_time`.
    acr: Option<String>,
    auth_time: Option<i64>,
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
            phone: None,
            client_roles: Vec::new(),
            app_roles: Vec::new(),
        }
    }

    pub fn with_phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.to_owned());
        self
    }

    pub fn with_client_roles(mut self, roles: &[&str]) -> Self {
        self.client_roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
    }

    pub fn with_app_roles(mut self, roles: &[&str]) -> Self {
        self.app_roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self
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
                )
                .with_phone("+15555550100")
                .with_client_roles(&["editor"])
                .with_app_roles(&["admin"]),
                DemoUser::new("bob", "bob@example.com", "Bob Builder", &["staff"])
                    .with_phone("+15555550101"),
                DemoUser::new(
                    "carol",
                    "carol@other.example",
                    "Carol Contractor",
                    &["contractors"],
                ),
            ],
            auto_approve: None,
            issuer_trailing_slash: false,
            profile: Profile::Generic,
            redirect_uris: vec![DEFAULT_REDIRECT_URI.to_owned()],
            client_auth: None,
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

    /// The client authentication method the token endpoint accepts.
    pub fn effective_client_auth(&self) -> ClientAuth {
        match (self.client_auth, &self.client_secret, &self.profile) {
            (Some(auth), _, _) => auth,
            (None, None, _) => ClientAuth::None,
            (None, Some(_), Profile::ZkAuth) => ClientAuth::Post,
            (None, Some(_), _) => ClientAuth::Basic,
        }
    }

    /// Default options behaving like `profile`, auto-approving as `username`.
    pub fn provider(profile: Profile, username: &str) -> Self {
        Self {
            profile,
            ..Self::auto_approving(username)
        }
    }
}

// === impl Knobs ===

impl Knobs {
    fn new(profile: &Profile, auto_approve: Option<String>) -> Self {
        let zkauth = *profile == Profile::ZkAuth;
        Self {
            auto_approve,
            authorize_error: None,
            id_token_mutation: None,
            access_token_mutation: None,
            token_endpoint_status: None,
            token_endpoint_error: None,
            discovery_status: None,
            jwks_status: None,
            publish_keys: vec!["key1"],
            signing_kid: "key1",
            id_token_ttl_secs: 300,
            // ZKAuth: `expires_in: 900`, and no refresh tokens at all
            access_token_ttl_secs: if zkauth { 900 } else { 300 },
            issue_refresh_tokens: !zkauth,
            extra_id_token_claims: Map::new(),
            extra_access_token_claims: Map::new(),
            response_delay: None,
            email_verified: matches!(profile, Profile::Authentik { .. }).then_some(false),
            advertise_end_session: *profile != Profile::Auth0,
            extra_audiences: if *profile == Profile::Passage {
                vec![PASSAGE_OTHER_AUDIENCE.to_owned()]
            } else {
                Vec::new()
            },
            omit_azp: false,
            issuer_claim: None,
            userinfo_sub: None,
            advertise_iss_parameter: false,
            response_iss: ResponseIss::Omit,
            discovery_overrides: Map::new(),
            faults: Vec::new(),
            acr_answer: None,
            auth_age_secs: None,
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

    /// The members of a JSON object whose every member is a string, in
    /// order; an error (the `error_description`) for anything else: nothing
    /// is coerced. (`serde_json` keeps the last of repeated names, so a
    /// repeated member is caught by the exact-members check instead.)
    fn from_json(s: &str) -> Result<Self, String> {
        let Ok(Value::Object(members)) = serde_json::from_str::<Value>(s) else {
            return Err("the body is not a JSON object".to_owned());
        };
        members
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Err(format!("member {k} must be a string, not {other}")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The names, in order.
    fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
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

    /// The `content-type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
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
        let issuer = opts.profile.issuer(&base, opts.issuer_trailing_slash);
        let minter = Minter::load(opts.profile.clone(), issuer.clone(), opts.client_id.clone())?;
        let redirect_uris = Mutex::new(opts.redirect_uris.clone());
        let state = Arc::new(State {
            issuer,
            base,
            routes: opts.profile.routes(),
            minter,
            rng: SystemRandom::new(),
            knobs: Mutex::new(Knobs::new(&opts.profile, opts.auto_approve.clone())),
            opts,
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            access_tokens: Mutex::default(),
            authorize_requests: Mutex::default(),
            redirect_uris,
            last_sid: Mutex::default(),
            token_requests: Mutex::default(),
            issued_tokens: Mutex::default(),
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

    pub fn profile(&self) -> &Profile {
        &self.state.opts.profile
    }

    /// Where discovery is (ZKAuth answers 404 there).
    pub fn discovery_url(&self) -> String {
        self.url(&self.state.routes.discovery)
    }

    pub fn authorize_endpoint(&self) -> String {
        self.url(&self.state.routes.authorize)
    }

    pub fn token_endpoint(&self) -> String {
        self.url(&self.state.routes.token)
    }

    pub fn jwks_uri(&self) -> String {
        self.url(&self.state.routes.jwks)
    }

    /// `None` for ZKAuth.
    pub fn userinfo_endpoint(&self) -> Option<String> {
        self.state.routes.userinfo.as_deref().map(|p| self.url(p))
    }

    /// The profile's RP-initiated logout endpoint, advertised in discovery
    /// only while [`Knobs::advertise_end_session`] is set. `None` for
    /// Passage and ZKAuth.
    pub fn end_session_endpoint(&self) -> Option<String> {
        self.state
            .routes
            .end_session
            .as_deref()
            .map(|p| self.url(p))
    }

    /// Auth0's `/v2/logout`; `None` for the other profiles.
    pub fn auth0_logout_endpoint(&self) -> Option<String> {
        self.state
            .routes
            .auth0_logout
            .as_deref()
            .map(|p| self.url(p))
    }

    /// `authorize` (an authorize URL the proxy built) turned into the login
    /// page's "sign in as `user`" link, which approves without auto-approve.
    pub fn approve_url(&self, authorize: &Url, user: &str) -> Url {
        let mut url = authorize.clone();
        url.set_path(&self.state.routes.approve());
        url.query_pairs_mut().append_pair("user", user);
        url
    }

    /// Sets `mutation` on whichever token carries the identity: the access
    /// token for ZKAuth (it has no ID token), else the ID token.
    pub fn set_identity_token_mutation(&self, mutation: Option<TokenMutation>) {
        let zkauth = !self.profile().is_oidc();
        self.set_knobs(|k| {
            if zkauth {
                k.access_token_mutation = mutation;
            } else {
                k.id_token_mutation = mutation;
            }
        });
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.state.base)
    }

    /// Runtime knobs. Do not hold the guard across an `.await`.
    pub fn knobs(&self) -> MutexGuard<'_, Knobs> {
        lock(&self.state.knobs)
    }

    /// Changes knobs inside a closure, so no guard can leak into async code.
    pub fn set_knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.knobs());
    }

    /// Registers one more redirect URI (e.g. once a proxy's port is known).
    pub fn register_redirect_uri(&self, uri: &str) {
        lock(&self.state.redirect_uris).push(uri.to_owned());
    }

    /// The registered redirect URIs.
    pub fn redirect_uris(&self) -> Vec<String> {
        lock(&self.state.redirect_uris).clone()
    }

    /// The client authentication method the token endpoint accepts.
    pub fn client_auth(&self) -> ClientAuth {
        self.state.opts.effective_client_auth()
    }

    /// The provider session id (`sid` claim) of the latest login, i.e. of the
    /// latest code issued; kept through refreshes of that login.
    pub fn last_sid(&self) -> Option<String> {
        lock(&self.state.last_sid).clone()
    }

    /// A back-channel logout token (OpenID Connect Back-Channel Logout 1.0,
    /// 2.4) for `sid` and/or `sub`: `iss`, `aud` = client id, `iat`, `exp`,
    /// a random `jti` and the back-channel logout `events` member, signed
    /// like the other tokens (the `signing_kid` knob) with `typ`
    /// "logout+jwt"; then spoilt by `mutation`.
    pub fn try_mint_logout_token(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        mutation: Option<LogoutTokenMutation>,
    ) -> Result<String, String> {
        let kid = self.knobs().signing_kid;
        let jti = self.state.random_token()?;
        self.state
            .minter
            .logout_token(kid, sid, sub, &jti, mutation)
    }

    /// POSTs `logout_token=<token>` as `application/x-www-form-urlencoded`
    /// to a relying party's back-channel logout `url` (plain HTTP), as an
    /// OP does. Returns the status and body; status 0 and the error when the
    /// request failed.
    pub async fn send_backchannel_logout(&self, url: &str, token: &str) -> (u16, String) {
        match post_form(url, &[("logout_token", token)]).await {
            Ok(answer) => answer,
            Err(e) => (0, e),
        }
    }

    /// Every authorize and approve query, in order.
    pub fn authorize_requests(&self) -> Vec<Params> {
        lock(&self.state.authorize_requests).clone()
    }

    /// Every token endpoint request (headers and body), in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.token_requests).clone()
    }

    /// Every successful token response (the JSON body: `access_token`,
    /// `id_token`, `refresh_token`, ...), in order, so tests can check that
    /// exactly these values were forwarded.
    pub fn issued_tokens(&self) -> Vec<Value> {
        lock(&self.state.issued_tokens).clone()
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

    /// Mints an access token for `username` as the token endpoint would
    /// (also valid at `/userinfo`), applying `mutation` instead of the knob.
    /// For Auth0 this is the opaque kind; see
    /// [`MockIdp::try_mint_access_token_for`].
    pub fn try_mint_access_token(
        &self,
        username: &str,
        mutation: Option<TokenMutation>,
    ) -> Result<String, String> {
        self.try_mint_access_token_for(username, None, mutation)
    }

    /// [`MockIdp::try_mint_access_token`] for an authorize request that
    /// carried `audience` (Auth0: then the token is a JWT for that API).
    pub fn try_mint_access_token_for(
        &self,
        username: &str,
        audience: Option<&str>,
        mutation: Option<TokenMutation>,
    ) -> Result<String, String> {
        let user = self.state.user(username).ok_or("unknown user")?;
        let knobs = Knobs {
            access_token_mutation: mutation,
            ..self.knobs().clone()
        };
        let sid = self.state.random_token()?;
        let grant = Grant {
            user,
            nonce: None,
            scope: "openid email profile",
            audience,
            sid: &sid,
            acr: None,
            auth_time: None,
        };
        let jti = self.state.random_token()?;
        let token = self.state.minter.access_token(&knobs, &grant, &jti)?;
        lock(&self.state.access_tokens).insert(token.clone(), user.username.clone());
        Ok(token)
    }

    /// Mints an ID token for `username` with `nonce`, applying `mutation`.
    /// An error for ZKAuth, which has no ID tokens.
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
        let sid = self.state.random_token()?;
        let grant = Grant {
            user,
            nonce,
            scope: "openid email profile",
            audience: None,
            sid: &sid,
            acr: None,
            auth_time: None,
        };
        self.state.minter.id_token(&knobs, &grant)
    }

    /// [`MockIdp::try_mint_logout_token`]; panics if signing fails.
    #[cfg(test)]
    pub fn mint_logout_token(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        mutation: Option<LogoutTokenMutation>,
    ) -> String {
        self.try_mint_logout_token(sid, sub, mutation)
            .expect("mint logout token")
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

    /// Mints the token response for `grant` and stores the refresh token.
    fn issue_tokens(&self, grant: &Grant<'_>, client_id: &str) -> Result<Value, String> {
        let knobs = self.knobs();
        let access_token = self
            .minter
            .access_token(&knobs, grant, &self.random_token()?)?;
        lock(&self.access_tokens).insert(access_token.clone(), grant.user.username.clone());
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": knobs.access_token_ttl_secs,
        });
        if !self.opts.profile.is_oidc() {
            // ZKAuth answers exactly these three members
            lock(&self.issued_tokens).push(body.clone());
            return Ok(body);
        }
        body["id_token"] = json!(self.minter.id_token(&knobs, grant)?);
        body["scope"] = json!(grant.scope);
        if knobs.issue_refresh_tokens {
            let refresh_token = self.random_token()?;
            let refresh = RefreshGrant {
                client_id: client_id.to_owned(),
                username: grant.user.username.clone(),
                nonce: grant.nonce.map(str::to_owned),
                scope: grant.scope.to_owned(),
                audience: grant.audience.map(str::to_owned),
                sid: grant.sid.to_owned(),
                acr: grant.acr.map(str::to_owned),
                auth_time: grant.auth_time,
            };
            lock(&self.refresh_tokens).insert(refresh_token.clone(), refresh);
            body["refresh_token"] = json!(refresh_token);
        }
        lock(&self.issued_tokens).push(body.clone());
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
    let path = req.uri().path().to_owned();
    let endpoint = match state.routes.route(&path) {
        Some(Route::Discovery) => Some(Endpoint::Discovery),
        Some(Route::Jwks) => Some(Endpoint::Jwks),
        Some(Route::Token) => Some(Endpoint::Token),
        Some(Route::Userinfo) => Some(Endpoint::Userinfo),
        _ => None,
    };
    let fault = endpoint.and_then(|e| {
        state
            .knobs()
            .faults
            .into_iter()
            .find(|(at, _)| *at == e)
            .map(|(_, f)| f)
    });
    if let Some(fault) = fault {
        // counted like a real answer, so tests can wait for the attempt
        match endpoint {
            Some(Endpoint::Discovery) => state.discovery_fetches.fetch_add(1, Ordering::SeqCst),
            Some(Endpoint::Jwks) => state.jwks_fetches.fetch_add(1, Ordering::SeqCst),
            Some(Endpoint::Userinfo) => state.userinfo_requests.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        return Ok(fault.respond());
    }
    let resp = match (req.method(), state.routes.route(&path)) {
        (&Method::GET, Some(Route::Discovery)) => discovery(&state),
        (&Method::GET, Some(Route::Jwks)) => jwks(&state),
        (&Method::GET, Some(Route::Authorize)) => authorize(&state, &query, false),
        (&Method::GET, Some(Route::Approve)) => authorize(&state, &query, true),
        (&Method::POST, Some(Route::Token)) => token_endpoint::token(&state, req).await,
        (&Method::GET | &Method::POST, Some(Route::Userinfo)) => userinfo(&state, req.headers()),
        (&Method::GET, Some(Route::EndSession)) if state.knobs().advertise_end_session => {
            logout(&state, &path, &query, "post_logout_redirect_uri")
        }
        (&Method::GET, Some(Route::Auth0Logout)) => logout(&state, &path, &query, "returnTo"),
        _ => not_found(),
    };
    Ok(resp)
}

fn not_found() -> Resp {
    respond(StatusCode::NOT_FOUND, "text/plain", "not found")
}

fn discovery(state: &State) -> Resp {
    state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if !state.opts.profile.is_oidc() {
        return not_found();
    }
    let knobs = state.knobs();
    if let Some(status) = knobs.discovery_status {
        return json_response(
            status_from(status),
            &json!({ "error": "discovery disabled" }),
        );
    }
    let mut doc = state
        .opts
        .profile
        .discovery(&state.issuer, &state.base, &knobs);
    for (member, value) in &knobs.discovery_overrides {
        match (value, doc.as_object_mut()) {
            (Value::Null, Some(doc)) => {
                doc.remove(member);
            }
            (value, Some(doc)) => {
                doc.insert(member.clone(), value.clone());
            }
            (_, None) => {}
        }
    }
    json_response(StatusCode::OK, &doc)
}

fn jwks(state: &State) -> Resp {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let knobs = state.knobs();
    if let Some(status) = knobs.jwks_status {
        return json_response(status_from(status), &json!({ "error": "jwks disabled" }));
    }
    json_response(StatusCode::OK, &state.minter.jwks(&knobs.publish_keys))
}

/// The authorize endpoint, and its `/approve` (`approve`: the login page's
/// links).
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
            "<p>invalid_request: missing or invalid redirect_uri</p>",
        );
    };
    if !lock(&state.redirect_uris)
        .iter()
        .any(|registered| redirect_uri_matches(registered, raw_redirect))
    {
        // never redirect to an unregistered address (RFC 6749 3.1.2.4):
        // the page Keycloak shows is "Invalid parameter: redirect_uri"
        return html_page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>invalid_request: Invalid parameter: redirect_uri</p>",
        );
    }
    let state_param = params.get("state");
    // RFC 9207: on every answer, error or code
    let iss = match state.knobs().response_iss {
        ResponseIss::Omit => None,
        ResponseIss::Issuer => Some(state.issuer.clone()),
        ResponseIss::Other(v) => Some(v),
    };
    let iss_pair: Vec<(&str, &str)> = iss.as_deref().map(|i| ("iss", i)).into_iter().collect();
    let fail = |error: &str, description: &str| {
        let mut extra = vec![("error", error), ("error_description", description)];
        extra.extend(&iss_pair);
        redirect_with(&redirect, &extra, state_param)
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
    let openid = params
        .get("scope")
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == "openid");
    // OAuth-only ZKAuth takes any scope (or none)
    if !openid && state.opts.profile.is_oidc() {
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
    let (Ok(code), Ok(sid)) = (state.random_token(), state.random_token()) else {
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
        audience: params.get("audience").map(str::to_owned),
        sid,
        issued: Instant::now(),
        // step-up (OIDC Core 3.1.2.1): every sign-in here is a fresh
        // authentication, so `prompt=login` and `max_age` are met unless a
        // knob says otherwise; the first `acr_values` is granted
        acr: knobs.acr_answer.clone().or_else(|| {
            params
                .get("acr_values")
                .and_then(|v| v.split(' ').find(|a| !a.is_empty()))
                .map(str::to_owned)
        }),
        auth_time: knobs.auth_age_secs.map(|age| tokens::unix_now() - age),
    };
    *lock(&state.last_sid) = Some(grant.sid.clone());
    lock(&state.codes).insert(code.clone(), grant);
    let mut extra = vec![("code", code.as_str())];
    extra.extend(&iss_pair);
    redirect_with(&redirect, &extra, state_param)
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
            "<li><a href=\"{}?{}\">Sign in as <b>{}</b></a> \
             <small>{} &middot; groups: {}</small></li>\n",
            escape_html(&state.routes.approve()),
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
        Some(user) => {
            let knobs = state.knobs();
            let mut claims = state.opts.profile.user_claims(user, &knobs);
            if let Some(sub) = knobs.userinfo_sub {
                claims.insert("sub".into(), json!(sub));
            }
            json_response(StatusCode::OK, &Value::Object(claims))
        }
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

/// A logout endpoint; `return_param` names where to send the browser after
/// (`post_logout_redirect_uri`, or Auth0 `/v2/logout`'s `returnTo`).
fn logout(state: &State, path: &str, query: &str, return_param: &str) -> Resp {
    let params = Params::parse(query);
    lock(&state.logout_requests).push(LogoutRequest {
        path: path.to_owned(),
        query: query.to_owned(),
        params: params.clone(),
    });
    match params.get(return_param).map(Url::parse) {
        Some(Ok(target)) => redirect_with(&target, &[], params.get("state")),
        Some(Err(_)) => html_page(
            StatusCode::BAD_REQUEST,
            "Error",
            "<p>invalid logout return address</p>",
        ),
        None => html_page(
            StatusCode::OK,
            "Signed out",
            "<p>You are signed out of the mock provider.</p>",
        ),
    }
}

// === helpers ===

/// The claims of a JWT, unverified (`Value::Null` if it is not one): for
/// tests that check what a token says, not whether it verifies.
pub fn jwt_claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Whether `requested` is the `registered` redirect URI: byte for byte, or,
/// for a registered loopback IP literal without a port, with any port
/// (RFC 8252 7.3).
fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(mut reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let loopback = match reg.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    };
    if !loopback || reg.port().is_some() || req.port().is_none() {
        return false;
    }
    // the registered URI with the requested port, against what was sent
    reg.set_port(req.port()).is_ok() && reg.as_str() == requested
}

/// A plain-HTTP form POST; `(status, body)`.
async fn post_form(url: &str, fields: &[(&str, &str)]) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt as _, Full};
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let send = client.request(req);
    let resp = tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .map_err(|_elapsed| "timed out".to_owned())?
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a panicking test thread must not wedge the provider for the others
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
