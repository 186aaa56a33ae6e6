//! Configuration: the one typed, validated [`Config`] built once at start.
//!
//! Sources, highest first: command-line flag, `GATEHOUSE_<KEY>` environment
//! variable, TOML file (`--config`), built-in default. A flag and its env var
//! are read by clap (`cli.rs`); the file by [`Config::load`]; both land in a
//! [`RawConfig`] and are stacked with [`RawConfig::overlay`]. A list setting
//! given by a higher source replaces the lower one's list whole.
//!
//! Owns: reading the config file, secret files and TLS PEM files, and every
//! check on a setting. This is the only module that touches the file system
//! or the environment (clap reads the env vars on its behalf).
//! Must not: be consulted for anything but typed values after start; the
//! `Config` is immutable and shared as `Arc<Config>`.
//!
//! Invariant: a `Config` that exists is valid. Every problem found is reported
//! at once, each naming its key and the reason.

mod env_alias;
mod limits;
mod oauth2_proxy;
mod provider_tables;
mod raw;
mod reach;
mod routes;
mod secret;
mod strength;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

use crate::auth::providers::{
    self, IdentitySource, IssuerSlash, LogoutStyle, OtherAudiences, TokenAuthMethod, TokenEncoding,
};
use crate::auth::return_to::WhitelistDomain;

pub use limits::{LimitsConfig, RateLimit};
pub use provider_tables::{DEFAULT_ID, MAX_PROVIDERS, ProviderEntry, ProviderSet, RawProvider};
pub use raw::RawConfig;
pub use routes::RawRoute;
pub use secret::Secret;

/// Where the upstream for a path prefix lives.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Path prefix, starting with `/`; `/` matches every path.
    pub prefix: String,
    /// Base URL (scheme, authority and optional base path).
    pub url: Url,
}

/// The callback URL registered at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackUrl {
    /// One absolute URL for every host (a central auth host).
    Fixed(Url),
    /// A path: the callback follows the host the browser used, for hosts
    /// that `whitelist_domain` allows.
    SameHost(String),
}

/// The identity provider, resolved from its preset and the settings.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The `provider` value.
    pub name: String,
    /// OpenID Connect (ID token, nonce) rather than plain OAuth 2.0.
    pub oidc: bool,
    /// The issuer as configured, with the preset's slash rule applied. Kept
    /// as text: it is compared with `iss` claims character for character.
    pub issuer: String,
    /// Fetch the discovery document at start.
    pub discovery: bool,
    /// Explicit endpoints; each overrides discovery.
    pub authorize_url: Option<Url>,
    /// Token endpoint.
    pub token_url: Option<Url>,
    /// JWKS.
    pub jwks_url: Option<Url>,
    /// Userinfo endpoint.
    pub userinfo_url: Option<Url>,
    /// End-session endpoint.
    pub end_session_url: Option<Url>,
    /// `insecure_oidc_allow_http`: plain-http provider URLs to hosts that
    /// are not loopback are allowed (else refused, also from discovery).
    pub allow_http: bool,
    /// Token endpoint client auth.
    pub auth_method: TokenAuthMethod,
    /// Token request body encoding.
    pub encoding: TokenEncoding,
    /// Where the identity comes from.
    pub identity_source: IdentitySource,
    /// Verify the access token as a JWT and read claims from it.
    pub verify_access_token: bool,
    /// Accept an access token on `azp` = client id whatever its `aud`.
    pub access_token_azp_audience: bool,
    /// Which other ID-token audiences pass.
    pub other_audiences: OtherAudiences,
    /// `oidc_extra_audience`.
    pub extra_audiences: Vec<String>,
    /// Algorithms accepted on access tokens.
    pub access_token_algs: Vec<jsonwebtoken::Algorithm>,
    /// `audience`, sent on the authorize request.
    pub audience: Option<String>,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Claim names.
    pub claims: ClaimNames,
    /// Sign-out fallback.
    pub logout: LogoutStyle,
}

/// Which claims hold what.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    /// The user id (`X-Forwarded-User`).
    pub user_id: String,
    /// The email.
    pub email: String,
    /// The groups: a name, a URL or a dotted path.
    pub groups: String,
    /// Claims that stand for each other.
    pub aliases: Vec<(String, String)>,
}

/// A claim sent upstream in a header of its own.
#[derive(Debug, Clone)]
pub struct ClaimHeader {
    /// The header.
    pub header: http::HeaderName,
    /// The claim: a name, a URL or a dotted path.
    pub claim: String,
}

/// Which email addresses may pass once signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailDomains {
    /// `*`: any address, verified or not.
    Any,
    /// Lower-case domains; an address passes when its domain is one of them.
    List(Vec<String>),
}

/// Output format of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Cookie settings. The keys are derived from the configured secrets.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Session cookie name; login-state cookies add a suffix.
    pub name: String,
    /// `Domain` attribute, if any.
    pub domain: Option<String>,
    /// `Secure` attribute.
    pub secure: bool,
    /// Session lifetime.
    pub expire: Duration,
    /// Refresh the tokens at the provider this long after the last refresh.
    pub refresh: Option<Duration>,
    /// Secrets as given: the first encrypts, every one decrypts.
    pub secrets: Vec<Secret>,
}

/// Where sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStoreKind {
    /// In the browser's cookie; revocations are kept server-side.
    Cookie,
    /// In Redis, encrypted with a key only the cookie (a ticket) carries.
    Redis,
}

/// How to reach Redis.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server (`redis_connection_url`).
    Single(Url),
    /// The master the sentinels name.
    Sentinel {
        /// `redis_sentinel_master_name`.
        master: String,
        /// `redis_sentinel_connection_urls`.
        urls: Vec<Url>,
    },
    /// A Redis Cluster (`redis_cluster_connection_urls`).
    Cluster(Vec<Url>),
}

/// Redis settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Where it is.
    pub topology: RedisTopology,
    /// `redis_password` / `redis_password_file`, for every node.
    pub password: Option<Secret>,
}

/// API bearer tokens (`skip_jwt_bearer_tokens`, `extra_jwt_issuers`).
#[derive(Debug, Clone, Default)]
pub struct BearerConfig {
    /// Accept bearer tokens on every path.
    pub everywhere: bool,
    /// Issuers besides the provider, each with the audience its tokens
    /// must name.
    pub extra_issuers: Vec<JwtIssuer>,
}

/// One `extra_jwt_issuers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtIssuer {
    /// The issuer URL as given (discovery is fetched from it).
    pub issuer: String,
    /// The audience its tokens must name.
    pub audience: String,
}

/// Parses `extra_jwt_issuers`: `issuer=audience` each, as oauth2-proxy
/// writes them; the issuer is held to the provider URL rules.
fn parse_jwt_issuers(list: &[String], allow_http: bool) -> Result<Vec<JwtIssuer>, String> {
    list.iter()
        .map(|entry| {
            let (issuer, audience) = entry
                .split_once('=')
                .filter(|(i, a)| !i.trim().is_empty() && !a.trim().is_empty())
                .ok_or_else(|| format!("`{entry}` is not issuer=audience"))?;
            let issuer = issuer.trim();
            let url = parse_http_url(issuer)?;
            if let Some(reason) = insecure_http_reason(&url)
                && !allow_http
            {
                return Err(reason);
            }
            Ok(JwtIssuer {
                issuer: issuer.to_owned(),
                audience: audience.trim().to_owned(),
            })
        })
        .collect()
}

/// The session store settings.
#[derive(Debug, Clone)]
pub struct SessionStoreConfig {
    /// `session_store_type`.
    pub kind: SessionStoreKind,
    /// Redis, when configured: it holds the sessions (kind `Redis`) or
    /// shares revocations and refreshes between replicas (kind `Cookie`).
    pub redis: Option<RedisConfig>,
    /// How often an open WebSocket tunnel re-checks its session
    /// (`websocket_session_check`).
    pub tunnel_check: Duration,
}

/// Certificate chain and key to serve HTTPS with.
#[derive(Debug)]
pub struct TlsConfig {
    /// Leaf first.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Listen address.
    pub http_address: SocketAddr,
    /// Upstreams, longest prefix first; empty in forward-auth mode, where
    /// only `/oauth2/*`, the probes and routes with an upstream of their
    /// own are served.
    pub upstreams: Vec<Upstream>,
    /// The primary identity provider (`providers[0]`'s settings): the one
    /// cookies are bound to, and the only one without `[[providers]]`.
    pub provider: ProviderConfig,
    /// The primary provider's OAuth client id.
    pub client_id: String,
    /// The primary provider's OAuth client secret; `None` for a public client.
    pub client_secret: Option<Secret>,
    /// Every provider, in order: the flat settings' (`default`) first when
    /// given, then each `[[providers]]` table. Never empty.
    pub providers: Vec<ProviderEntry>,
    /// Where the provider sends the browser back to.
    pub redirect_url: CallbackUrl,
    /// Cookie settings.
    pub cookie: CookieConfig,
    /// Allowed email domains.
    pub email_domains: EmailDomains,
    /// Roles of which a user needs one (`role` or `client:role`); empty: any.
    pub allowed_roles: Vec<String>,
    /// Groups of which a user needs one; empty: any.
    pub allowed_groups: Vec<String>,
    /// Let in users whose provider says `email_verified: false`.
    pub allow_unverified_email: bool,
    /// Claims sent upstream in headers of their own.
    pub claim_headers: Vec<ClaimHeader>,
    /// Hosts allowed as post-login and post-logout redirect targets.
    pub whitelist_domains: Vec<WhitelistDomain>,
    /// Send `X-Forwarded-Access-Token` upstream.
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <id token>` upstream.
    pub pass_authorization_header: bool,
    /// Keep the client's `Host` header on the upstream request.
    pub pass_host_header: bool,
    /// Serve HTTPS when set.
    pub tls: Option<TlsConfig>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// Where traces are exported (OTLP over HTTP); `None`: tracing off.
    pub otlp: Option<crate::telemetry::otel::OtlpConfig>,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Time allowed for the upstream's response head.
    pub upstream_timeout: Duration,
    /// Where sessions and revocations live.
    pub session_store: SessionStoreConfig,
    /// Which rules apply to which requests (`[[routes]]` and shorthands);
    /// only the default route when none are configured.
    pub routes: crate::routes::RouteTable,
    /// Limits on slow and many clients.
    pub limits: LimitsConfig,
    /// API bearer tokens.
    pub bearer: BearerConfig,
    /// SIGTERM's grace period and drain timeout.
    pub shutdown: ShutdownConfig,
    /// The pages shown to people: templates compiled at start, banner and
    /// footer (`custom_templates_dir`, `banner`, `footer`).
    pub pages: crate::http::pages::Pages,
    /// Where `/metrics` is served (a listener of its own); `None`: off.
    pub metrics_address: Option<SocketAddr>,
    /// Settings accepted and ignored (oauth2-proxy keys for what gatehouse
    /// does anyway), each with why: warned about at start.
    pub notes: Vec<Problem>,
}

/// How gatehouse stops (`shutdown_grace_period`, `shutdown_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After SIGTERM: `/ready` answers 503 and new connections are still
    /// served for this long.
    pub grace_period: Duration,
    /// Then, with the listener closed: time in-flight requests get to finish.
    pub timeout: Duration,
}

/// One problem with one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The TOML key (flags and env vars are named after it).
    pub key: String,
    /// Why the value is refused.
    pub reason: String,
}

/// Every problem found in the configuration. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order the keys are checked.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(key: &str, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                key: key.to_owned(),
                reason: reason.into(),
            }],
        }
    }
}

/// Collects problems while validating, so one run reports them all.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, reason: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_owned(),
            reason: reason.into(),
        });
    }

    /// Records the error of `r` under `key` and returns its value.
    fn check<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|reason| self.add(key, reason)).ok()
    }
}

impl Config {
    /// Builds the configuration from the optional TOML file at `file` under
    /// the flags and env vars in `cli` (which take precedence).
    pub fn load(file: Option<&Path>, cli: RawConfig) -> Result<Self, ConfigError> {
        let from_file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::one("config", format!("cannot read {}: {e}", path.display()))
                })?;
                parse_toml(&text)?
            }
            None => FileSettings {
                raw: RawConfig::default(),
                problems: Vec::new(),
                notes: Vec::new(),
                covered: Vec::new(),
            },
        };
        // oauth2-proxy's OAUTH2_PROXY_* variables: above the file, below
        // flags and GATEHOUSE_* (clap's layer)
        let from_env = env_alias::settings(&env_alias::process_vars());
        Self::from_file_settings(from_file.under(from_env), cli)
    }

    /// Builds the configuration from TOML text alone (tests, examples).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_file_settings(parse_toml(text)?, RawConfig::default())
    }

    /// Validates the file's settings under `cli`; the file's own problems
    /// come first, and validation still runs so none hides another.
    fn from_file_settings(file: FileSettings, cli: RawConfig) -> Result<Self, ConfigError> {
        let validated = Self::from_raw(file.raw.overlay(cli));
        if file.problems.is_empty() {
            return validated.map(|mut c| {
                c.notes = file.notes;
                c
            });
        }
        let mut problems = file.problems;
        if let Err(e) = validated {
            problems.extend(
                e.problems
                    .into_iter()
                    .filter(|p| !file.covered.contains(&p.key)),
            );
        }
        Err(ConfigError { problems })
    }

    /// Validates every setting; reports all problems at once.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut p = Problems::default();
        let http_address = raw.http_address.as_deref().unwrap_or("127.0.0.1:4180");
        let http_address = p.check(
            "http_address",
            parse_listen_address(http_address).map_err(|e| {
                format!("`{http_address}` is not host:port with an IP address, like 127.0.0.1:4180 ({e})")
            }),
        );
        let metrics_address = raw.metrics_address.as_deref().and_then(|a| {
            p.check(
                "metrics_address",
                parse_listen_address(a).map_err(|e| {
                    format!("`{a}` is not host:port with an IP address, like 127.0.0.1:9090 ({e})")
                }),
            )
        });
        if let (Some(m), Some(h)) = (metrics_address, http_address)
            && m == h
            && m.port() != 0
        {
            p.add(
                "metrics_address",
                format!("`{m}` is http_address: metrics are served on a listener of their own, never on the public one"),
            );
        }
        let upstreams = p.check("upstream", parse_upstreams(&raw.upstream));
        let flat = provider_tables::flat_is_used(&mut p, &raw);
        let client_id = match raw.client_id.clone() {
            Some(id) if !id.trim().is_empty() => Some(id),
            _ if !flat => None,
            _ => {
                p.add("client_id", "required");
                None
            }
        };
        let client_secret = p
            .check(
                "client_secret_file",
                read_optional_secret(
                    "client_secret",
                    raw.client_secret.clone(),
                    raw.client_secret_file.as_deref(),
                ),
            )
            .flatten();
        if let Some(reason) = client_secret
            .as_ref()
            .and_then(strength::placeholder_client_secret)
        {
            p.add("client_secret", reason);
        }
        let redirect_url = match raw.redirect_url.as_deref() {
            None => {
                p.add(
                    "redirect_url",
                    "required: the absolute URL of /oauth2/callback",
                );
                None
            }
            Some(s) if s.starts_with('/') => Some(CallbackUrl::SameHost(s.to_owned())),
            Some(s) => p
                .check("redirect_url", parse_http_url(s))
                .map(CallbackUrl::Fixed),
        };
        let provider = flat
            .then(|| build_provider(&mut p, &raw, client_secret.is_some()))
            .flatten();
        let flat_entry = match (&provider, &client_id) {
            (Some(provider), Some(client_id)) => Some(ProviderEntry {
                id: DEFAULT_ID.to_owned(),
                label: provider.name.clone(),
                key_prefix: String::new(),
                provider: provider.clone(),
                client_id: client_id.clone(),
                client_secret,
            }),
            _ => None,
        };
        let providers = provider_tables::build_all(&mut p, &raw, flat, flat_entry);
        let claim_headers = p.check("claim_header", parse_claim_headers(&raw.claim_header));
        let cookie_secure = raw.cookie_secure.unwrap_or(true);
        let cookie = build_cookie_config(&mut p, &raw, cookie_secure);
        match &redirect_url {
            Some(CallbackUrl::Fixed(url)) => check_redirect_scheme(&mut p, url, cookie_secure),
            Some(CallbackUrl::SameHost(path)) => {
                if path != "/oauth2/callback" {
                    p.add(
                        "redirect_url",
                        format!("`{path}`: a path form must be /oauth2/callback"),
                    );
                }
                if raw.whitelist_domain.is_empty() {
                    p.add(
                        "redirect_url",
                        "a path (callback on the request's host) needs whitelist_domain to list the hosts allowed",
                    );
                }
            }
            None => {}
        }
        let email_domains = p.check("email_domain", parse_email_domains(&raw.email_domain));
        let whitelist_domains = p.check(
            "whitelist_domain",
            raw.whitelist_domain
                .iter()
                .map(|d| d.parse::<WhitelistDomain>())
                .collect(),
        );
        let tls = p
            .check(
                "tls_cert_file",
                load_tls(raw.tls_cert_file.as_deref(), raw.tls_key_file.as_deref()),
            )
            .flatten();
        let log_format = p.check(
            "log_format",
            match raw.log_format.as_deref().unwrap_or("text") {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                other => Err(format!("expected `text` or `json`, got `{other}`")),
            },
        );
        let log_level = p
            .check(
                "log_level",
                crate::telemetry::check_log_level(raw.log_level.as_deref().unwrap_or("info")),
            )
            .unwrap_or_default();
        let otlp_service_name = p.check(
            "otlp_service_name",
            crate::telemetry::otel::check_service_name(raw.otlp_service_name.as_deref()),
        );
        let otlp = p
            .check(
                "otlp_endpoint",
                raw.otlp_endpoint
                    .as_deref()
                    .map(crate::telemetry::otel::parse_endpoint)
                    .transpose(),
            )
            .flatten()
            .zip(otlp_service_name)
            .map(
                |(endpoint, service_name)| crate::telemetry::otel::OtlpConfig {
                    endpoint,
                    service_name,
                },
            );
        let trusted_proxies = p.check("trusted_proxy", parse_trusted_proxies(&raw.trusted_proxy));
        let upstream_timeout = p.check(
            "upstream_timeout",
            parse_duration(raw.upstream_timeout.as_deref().unwrap_or("30s")),
        );
        let session_store = build_session_store(&mut p, &raw);
        let limits = limits::build(&mut p, &raw);
        let shutdown = ShutdownConfig {
            grace_period: p
                .check(
                    "shutdown_grace_period",
                    parse_duration_or_zero(raw.shutdown_grace_period.as_deref().unwrap_or("5s")),
                )
                .unwrap_or_default(),
            timeout: p
                .check(
                    "shutdown_timeout",
                    parse_duration(raw.shutdown_timeout.as_deref().unwrap_or("10s")),
                )
                .unwrap_or_default(),
        };
        let pages = p.check(
            "custom_templates_dir",
            crate::http::pages::Pages::load(
                raw.custom_templates_dir
                    .as_deref()
                    .map(std::path::Path::new),
                raw.banner.clone(),
                raw.footer.clone(),
            ),
        );
        let bearer = BearerConfig {
            everywhere: raw.skip_jwt_bearer_tokens.unwrap_or(false),
            extra_issuers: p
                .check(
                    "extra_jwt_issuers",
                    parse_jwt_issuers(
                        &raw.extra_jwt_issuers,
                        raw.insecure_oidc_allow_http.unwrap_or(false),
                    ),
                )
                .unwrap_or_default(),
        };
        let routes = routes::build(&mut p, &raw, &provider_tables::ids(&raw, flat));
        // every provider a step-up route takes must be OpenID Connect: the
        // acr and auth_time come from the ID token
        if let (Some(providers), Some(routes)) = (&providers, &routes) {
            let all = ProviderSet::all(providers.len());
            for r in routes.routes().iter().filter(|r| r.step_up.is_some()) {
                let plain: Vec<&str> = r
                    .providers
                    .unwrap_or(all)
                    .iter()
                    .filter_map(|i| providers.get(i))
                    .filter(|e| !e.provider.oidc)
                    .map(|e| e.id.as_str())
                    .collect();
                if !plain.is_empty() {
                    p.add(
                        &r.name,
                        format!(
                            "acr_values and max_age need OpenID Connect providers: the acr and auth_time come from the ID token, which {} does not give (name the route's providers)",
                            plain.join(", ")
                        ),
                    );
                }
            }
        }

        match (
            http_address,
            upstreams,
            providers,
            redirect_url,
            cookie,
            email_domains,
            whitelist_domains,
            claim_headers,
            log_format,
            trusted_proxies,
            upstream_timeout,
            session_store,
            routes,
            pages,
        ) {
            (
                Some(http_address),
                Some(upstreams),
                Some(providers),
                Some(redirect_url),
                Some(cookie),
                Some(email_domains),
                Some(whitelist_domains),
                Some(claim_headers),
                Some(log_format),
                Some(trusted_proxies),
                Some(upstream_timeout),
                Some(session_store),
                Some(routes),
                Some(pages),
            ) if p.0.is_empty() && !providers.is_empty() => Ok(Self {
                http_address,
                upstreams,
                provider: providers[0].provider.clone(),
                client_id: providers[0].client_id.clone(),
                client_secret: providers[0].client_secret.clone(),
                providers,
                redirect_url,
                cookie,
                email_domains,
                allowed_roles: raw.allowed_role,
                allowed_groups: raw.allowed_group.clone(),
                allow_unverified_email: raw.allow_unverified_email.unwrap_or(false),
                claim_headers,
                whitelist_domains,
                pass_access_token: raw.pass_access_token.unwrap_or(false),
                pass_authorization_header: raw.pass_authorization_header.unwrap_or(false),
                pass_host_header: raw.pass_host_header.unwrap_or(true),
                tls,
                log_format,
                log_level,
                otlp,
                trusted_proxies,
                upstream_timeout,
                session_store,
                limits,
                bearer,
                routes,
                shutdown,
                pages,
                metrics_address,
                notes: Vec::new(),
            }),
            _ => Err(ConfigError { problems: p.0 }),
        }
    }
}

/// The settings of a TOML file and what reading it found: problems (unknown
/// or unsupported keys, wrong types) and notes (oauth2-proxy settings
/// accepted and ignored). `covered` holds the gatehouse keys a problem is
/// already about, so validation does not add "required" for them.
struct FileSettings {
    raw: RawConfig,
    problems: Vec<Problem>,
    notes: Vec<Problem>,
    covered: Vec<String>,
}

impl FileSettings {
    /// `high` stacked over these settings; problems and notes of both.
    fn under(mut self, high: Self) -> Self {
        self.raw = self.raw.overlay(high.raw);
        self.problems.extend(high.problems);
        self.notes.extend(high.notes);
        self.covered.extend(high.covered);
        self
    }
}

/// Every gatehouse key: the `RawConfig` fields, read from clap's ids.
fn our_keys() -> Vec<String> {
    use clap::Args as _;
    RawConfig::augment_args(clap::Command::new("gatehouse"))
        .get_arguments()
        .map(|a| a.get_id().as_str().to_owned())
        .collect()
}

/// The 1-based line where `key` is set in `text`, when it can be found.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let l = l.strip_prefix('"').unwrap_or(l);
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start_matches('"').trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

impl Config {
    /// What a valid configuration still gets wrong for the first login, as
    /// far as can be told without the provider: each a warning for
    /// `--check-config`, naming the key.
    pub fn advisories(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for entry in &self.providers {
            let name = entry.provider.name.as_str();
            let confidential = matches!(
                name,
                "keycloak" | "ztrust" | "authentik" | "auth0" | "passage" | "zkauth"
            );
            if confidential && entry.client_secret.is_none() {
                out.push(Problem {
                    key: format!("{}client_secret", entry.key_prefix),
                    reason: format!(
                        "not set, so gatehouse signs in as a public client; a {name} client is usually \
                         confidential, and then the first login fails with invalid_client: give \
                         client_secret (or client_secret_file), or make the client public at {name}"
                    ),
                });
            }
        }
        for role in &self.allowed_roles {
            // a role of any configured provider's client is one of ours
            if let Some((client, _)) = role.split_once(':')
                && !self.providers.iter().any(|e| e.client_id == client)
            {
                out.push(Problem {
                    key: "allowed_role".to_owned(),
                    reason: format!(
                        "`{role}` names the client `{client}`, not client_id `{}`: its roles \
                         reach gatehouse's tokens only when the provider is set to include them \
                         (Keycloak: full scope allowed, or a scope mapping), else nobody may \
                         pass; for a role of this client write `{}:{}`",
                        self.client_id,
                        self.client_id,
                        role.split_once(':').map_or("", |(_, r)| r)
                    ),
                });
            }
        }
        out.extend(reach::advisories(self));
        // a public regex searched anywhere opens more than it says
        for r in self.routes.routes() {
            if let crate::routes::PathMatch::Regex(re) = &r.path
                && r.is_public()
                && !routes::anchored(re.as_str())
            {
                out.push(Problem {
                    key: r.name.clone(),
                    reason: format!(
                        "the public regex `{}` is not anchored, so it matches anywhere in the \
                         path (`/static/` also lets `/admin/static/x` through): start it with ^",
                        re.as_str()
                    ),
                });
            }
        }
        out.extend(routes::overlaps(&self.routes));
        out
    }
}

fn parse_toml(text: &str) -> Result<FileSettings, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        // a syntax error: toml's message says what is wrong; the key is the
        // one on the line the error points at
        let msg = e.message().trim().to_owned();
        let Some(span) = e.span() else {
            return ConfigError::one("config", msg);
        };
        let start = span.start.min(text.len());
        let line_no = text[..start].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("");
        let key = line
            .split('=')
            .next()
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.starts_with('['));
        ConfigError::one(key.unwrap_or("config"), format!("{msg} (line {line_no})"))
    })?;
    let ours = our_keys();
    let mut p = Problems::default();
    let mut notes = Vec::new();
    let mut covered = Vec::new();
    // gatehouse key -> (key as written, value)
    let mut kept: Vec<(String, String, toml::Value)> = Vec::new();
    let mut providers_raw = Vec::new();
    let mut routes = Vec::new();
    for (key, value) in table {
        if key == "providers" {
            providers_raw = provider_tables::parse_tables(value, &mut p);
            continue;
        }
        if key == "routes" {
            // each table alone, so a problem names its route
            let toml::Value::Array(items) = value else {
                p.add("routes", "expected [[routes]] tables");
                continue;
            };
            for (i, item) in items.into_iter().enumerate() {
                match item.try_into::<RawRoute>() {
                    Ok(r) => routes.push(r),
                    Err(e) => p.add(&format!("routes[{i}]"), e.message().trim().to_owned()),
                }
            }
            continue;
        }
        let at = line_of(text, &key).map_or_else(String::new, |n| format!(" (line {n})"));
        let (target, value) = if ours.contains(&key) {
            (key.clone(), value)
        } else {
            match oauth2_proxy::translate(&key, &value) {
                Some(oauth2_proxy::Translation::Rename(to, v)) => (to.to_owned(), v),
                Some(oauth2_proxy::Translation::Ignored(note)) => {
                    notes.push(Problem { key, reason: note });
                    continue;
                }
                Some(oauth2_proxy::Translation::Unsupported(reason)) => {
                    p.add(&key, format!("{reason}{at}"));
                    covered.extend(oauth2_proxy::target(&key).map(str::to_owned));
                    continue;
                }
                None => {
                    let suggestion = oauth2_proxy::did_you_mean(
                        &key,
                        ours.iter().map(String::as_str).chain(oauth2_proxy::names()),
                    );
                    match suggestion {
                        Some(s) => {
                            p.add(&key, format!("unknown key{at}; did you mean `{s}`?"));
                            covered.push(oauth2_proxy::target(s).unwrap_or(s).to_owned());
                        }
                        None => p.add(
                            &key,
                            format!("unknown key{at}; the keys are listed in the README's Configuration section"),
                        ),
                    }
                    continue;
                }
            }
        };
        if let Some((_, first, _)) = kept.iter().find(|(t, _, _)| *t == target) {
            p.add(
                &key,
                format!("`{key}` and `{first}` are the same setting{at}: give one of them"),
            );
            covered.push(target);
            continue;
        }
        kept.push((target, key, value));
    }
    // deserialize each key alone, so every type error names its key
    let mut raw = RawConfig::default();
    for (target, key, value) in kept {
        let mut one = toml::Table::new();
        one.insert(target.clone(), value);
        match one.try_into::<RawConfig>() {
            Ok(r) => raw = raw.overlay(r),
            Err(e) => {
                let at = line_of(text, &key).map_or_else(String::new, |n| format!(" (line {n})"));
                p.add(&key, format!("{}{at}", e.message().trim()));
                covered.push(target);
            }
        }
    }
    raw.providers = providers_raw;
    raw.routes = routes;
    Ok(FileSettings {
        raw,
        problems: p.0,
        notes,
        covered,
    })
}

/// Resolves the provider: its preset's defaults under the operator's settings.
fn build_provider(p: &mut Problems, raw: &RawConfig, has_secret: bool) -> Option<ProviderConfig> {
    let name = match raw.provider.as_deref().unwrap_or("oidc") {
        // oauth2-proxy's name for the same provider
        "keycloak-oidc" => "keycloak",
        n => n,
    };
    let allow_http = raw.insecure_oidc_allow_http.unwrap_or(false);
    let Some(preset) = providers::lookup(name).map(|pr| pr.preset()) else {
        p.add(
            "provider",
            format!(
                "unknown provider `{name}`; expected one of {}",
                providers::all_names().join(", ")
            ),
        );
        // the issuer is still checked: one mistake must not hide another
        if let Some(s) = raw.oidc_issuer_url.as_deref() {
            let checked = parse_http_url(s).and_then(|url| match insecure_http_reason(&url) {
                Some(reason) if !allow_http => Err(reason),
                _ => Ok(()),
            });
            p.check("oidc_issuer_url", checked);
        }
        return None;
    };
    let provider_url = |s: &str| {
        let url = parse_http_url(s)?;
        match insecure_http_reason(&url) {
            Some(reason) if !allow_http => Err(reason),
            _ => Ok(url),
        }
    };
    let url =
        |p: &mut Problems, key: &str, given: Option<&str>, default: Option<&str>| -> Option<Url> {
            given
                .or(default)
                .and_then(|s| p.check(key, provider_url(s)))
        };
    let issuer = match raw.oidc_issuer_url.as_deref().or(preset.issuer) {
        None => {
            p.add("oidc_issuer_url", format!("required for provider {name}"));
            None
        }
        Some(s) => {
            let s = apply_slash(s, preset.issuer_slash);
            p.check("oidc_issuer_url", provider_url(&s).map(|_url| s))
        }
    };
    let discovery = !raw.skip_oidc_discovery.unwrap_or(!preset.discovery);
    let authorize_url = url(
        p,
        "oidc_authorize_url",
        raw.oidc_authorize_url.as_deref(),
        preset.authorize_url,
    );
    let token_url = url(
        p,
        "oidc_token_url",
        raw.oidc_token_url.as_deref(),
        preset.token_url,
    );
    let jwks_url = url(
        p,
        "oidc_jwks_url",
        raw.oidc_jwks_url.as_deref(),
        preset.jwks_url,
    );
    let userinfo_url = url(
        p,
        "oidc_userinfo_url",
        raw.oidc_userinfo_url.as_deref(),
        None,
    );
    let end_session_url = url(
        p,
        "oidc_end_session_url",
        raw.oidc_end_session_url.as_deref(),
        None,
    );
    if !discovery {
        for (key, missing) in [
            (
                "oidc_authorize_url",
                authorize_url.is_none() && raw.oidc_authorize_url.is_none(),
            ),
            (
                "oidc_token_url",
                token_url.is_none() && raw.oidc_token_url.is_none(),
            ),
            (
                "oidc_jwks_url",
                jwks_url.is_none() && raw.oidc_jwks_url.is_none(),
            ),
        ] {
            if missing {
                p.add(key, "required when discovery is off (skip_oidc_discovery)");
            }
        }
    }
    let auth_method = match raw.token_endpoint_auth_method.as_deref() {
        Some(m) => p.check(
            "token_endpoint_auth_method",
            parse_auth_method(m, has_secret),
        ),
        // a preset's choice needs a secret; without one the client is public
        None if !has_secret => Some(TokenAuthMethod::None),
        None => Some(preset.auth_method.unwrap_or(TokenAuthMethod::Basic)),
    };
    let encoding = match raw.token_request_encoding.as_deref() {
        None => Some(preset.encoding),
        Some("form") => Some(TokenEncoding::Form),
        Some("json") => Some(TokenEncoding::Json),
        Some(other) => {
            p.add(
                "token_request_encoding",
                format!("expected `form` or `json`, got `{other}`"),
            );
            None
        }
    };
    let identity_source = match raw.identity_source.as_deref() {
        None => Some(preset.identity_source),
        Some("id_token") => Some(IdentitySource::IdToken),
        Some("access_token") => Some(IdentitySource::AccessToken),
        Some("userinfo") => Some(IdentitySource::Userinfo),
        Some(other) => {
            p.add(
                "identity_source",
                format!("expected `id_token`, `access_token` or `userinfo`, got `{other}`"),
            );
            None
        }
    };
    let scopes: Vec<String> = raw
        .scope
        .as_deref()
        .unwrap_or(preset.scope)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let oidc = preset.oidc && identity_source != Some(IdentitySource::AccessToken);
    if oidc && !scopes.iter().any(|s| s == "openid") {
        p.add(
            "scope",
            format!("must include `openid` for provider {name}"),
        );
    }
    let audience = raw.audience.clone().filter(|a| !a.is_empty());
    let verify_access_token = preset.verify_access_token
        || audience.is_some()
        || identity_source == Some(IdentitySource::AccessToken)
        || !raw.allowed_role.is_empty();
    Some(ProviderConfig {
        name: name.to_owned(),
        oidc,
        issuer: issuer?,
        discovery,
        authorize_url,
        token_url,
        jwks_url,
        userinfo_url,
        end_session_url,
        allow_http,
        auth_method: auth_method?,
        encoding: encoding?,
        identity_source: identity_source?,
        verify_access_token,
        access_token_azp_audience: preset.access_token_azp_audience,
        other_audiences: preset.other_audiences,
        extra_audiences: raw.oidc_extra_audience.clone(),
        access_token_algs: preset.access_token_algs.to_vec(),
        audience,
        scopes,
        claims: ClaimNames {
            user_id: raw
                .user_id_claim
                .clone()
                .unwrap_or_else(|| "sub".to_owned()),
            email: raw
                .oidc_email_claim
                .clone()
                .unwrap_or_else(|| "email".to_owned()),
            groups: raw
                .oidc_groups_claim
                .clone()
                .unwrap_or_else(|| "groups".to_owned()),
            aliases: preset
                .claim_aliases
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        },
        logout: preset.logout,
    })
}

fn apply_slash(issuer: &str, rule: IssuerSlash) -> String {
    match rule {
        IssuerSlash::AsGiven => issuer.to_owned(),
        IssuerSlash::Strip => issuer.trim_end_matches('/').to_owned(),
        IssuerSlash::Add if issuer.ends_with('/') => issuer.to_owned(),
        IssuerSlash::Add => format!("{issuer}/"),
    }
}

fn parse_auth_method(m: &str, has_secret: bool) -> Result<TokenAuthMethod, String> {
    let method = match m {
        "client_secret_basic" | "basic" => TokenAuthMethod::Basic,
        "client_secret_post" | "post" => TokenAuthMethod::Post,
        "none" => TokenAuthMethod::None,
        other => {
            return Err(format!(
                "expected client_secret_basic, client_secret_post or none, got `{other}`"
            ));
        }
    };
    if method != TokenAuthMethod::None && !has_secret {
        return Err(format!("`{m}` needs client_secret or client_secret_file"));
    }
    Ok(method)
}

/// `Header-Name=claim` pairs. The header may not be one gatehouse sets or a
/// hop-by-hop header.
fn parse_claim_headers(list: &[String]) -> Result<Vec<ClaimHeader>, String> {
    list.iter()
        .map(|item| {
            let (h, claim) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}`: expected Header-Name=claim"))?;
            let header = http::HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_e| format!("`{h}` is not a header name"))?;
            let reserved = [
                "host",
                "cookie",
                "authorization",
                "content-length",
                "expect",
            ];
            if reserved.contains(&header.as_str())
                || crate::http::headers::is_hop_by_hop(&header)
                || crate::http::headers::is_gatehouse_header(header.as_str())
            {
                return Err(format!("`{h}` is a header gatehouse or HTTP reserves"));
            }
            let claim = claim.trim();
            if claim.is_empty() {
                return Err(format!("`{item}`: no claim named"));
            }
            Ok(ClaimHeader {
                header,
                claim: claim.to_owned(),
            })
        })
        .collect()
}

/// True for a loopback host: `localhost`, 127.0.0.0/8, `::1` (also as an
/// IPv4-mapped address).
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Why a provider URL must not be used without `insecure_oidc_allow_http`:
/// plain http to a host that is not loopback. `None` for https or loopback.
pub fn insecure_http_reason(url: &Url) -> Option<String> {
    (url.scheme() == "http" && !is_loopback_host(url)).then(|| {
        format!(
            "`{url}` is plain http to a host that is not loopback: codes, tokens and keys \
             would cross the network unprotected; use https, or set insecure_oidc_allow_http \
             (--insecure-oidc-allow-http) for a provider on a network you trust"
        )
    })
}

/// An absolute http(s) URL with a host and no credentials.
fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{s}` must be an http or https URL"));
    }
    if url.host_str().is_none() {
        return Err(format!("`{s}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{s}` must not carry credentials"));
    }
    Ok(url)
}

/// `host:port` with an IP address; also oauth2-proxy's spellings `:port`
/// (every interface) and `http://host:port`.
fn parse_listen_address(s: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    let s = s.strip_prefix("http://").unwrap_or(s);
    match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}").parse(),
        None => s.parse(),
    }
}

fn parse_upstreams(list: &[String]) -> Result<Vec<Upstream>, String> {
    // none: forward-auth mode (front proxies ask `/oauth2/auth`), or
    // every route names its own upstream
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let (prefix, url) = match item.split_once('=') {
            Some((prefix, url)) if prefix.starts_with('/') => (prefix.to_owned(), url),
            Some(_) => return Err(format!("`{item}`: a prefix must start with `/`")),
            None => ("/".to_owned(), item.as_str()),
        };
        let url = parse_http_url(url)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{item}`: an upstream URL takes no query or fragment"
            ));
        }
        if out.iter().any(|u: &Upstream| u.prefix == prefix) {
            return Err(format!("prefix `{prefix}` is given twice"));
        }
        out.push(Upstream { prefix, url });
    }
    // longest prefix first, so the first match is the most specific
    out.sort_by_key(|u| std::cmp::Reverse(u.prefix.len()));
    Ok(out)
}

fn build_session_store(p: &mut Problems, raw: &RawConfig) -> Option<SessionStoreConfig> {
    let kind = p.check(
        "session_store_type",
        match raw.session_store_type.as_deref().unwrap_or("cookie") {
            "cookie" => Ok(SessionStoreKind::Cookie),
            "redis" => Ok(SessionStoreKind::Redis),
            other => Err(format!("expected `cookie` or `redis`, got `{other}`")),
        },
    );
    let password = p
        .check(
            "redis_password_file",
            read_optional_secret(
                "redis_password",
                raw.redis_password.clone(),
                raw.redis_password_file.as_deref(),
            ),
        )
        .flatten();
    let sentinel = raw.redis_use_sentinel.unwrap_or(false);
    let cluster = raw.redis_use_cluster.unwrap_or(false);
    let urls = |p: &mut Problems, key: &str, list: &[String]| -> Option<Vec<Url>> {
        if list.is_empty() {
            p.add(key, "required: at least one redis:// or rediss:// URL");
            return None;
        }
        p.check(key, list.iter().map(|u| parse_redis_url(u)).collect())
    };
    let topology = match (sentinel, cluster) {
        (true, true) => {
            p.add(
                "redis_use_cluster",
                "redis_use_sentinel and redis_use_cluster exclude each other",
            );
            None
        }
        (true, false) => {
            let master = match raw.redis_sentinel_master_name.as_deref().map(str::trim) {
                Some(m) if !m.is_empty() => Some(m.to_owned()),
                _ => {
                    p.add(
                        "redis_sentinel_master_name",
                        "required with redis_use_sentinel",
                    );
                    None
                }
            };
            let urls = urls(
                p,
                "redis_sentinel_connection_urls",
                &raw.redis_sentinel_connection_urls,
            );
            Some(Some(RedisTopology::Sentinel {
                master: master?,
                urls: urls?,
            }))
        }
        (false, true) => urls(
            p,
            "redis_cluster_connection_urls",
            &raw.redis_cluster_connection_urls,
        )
        .map(|u| Some(RedisTopology::Cluster(u))),
        (false, false) => match raw.redis_connection_url.as_deref() {
            Some(u) => p
                .check("redis_connection_url", parse_redis_url(u))
                .map(|u| Some(RedisTopology::Single(u))),
            None => Some(None),
        },
    }?;
    let kind = kind?;
    if kind == SessionStoreKind::Redis && topology.is_none() {
        p.add(
            "session_store_type",
            "`redis` needs redis_connection_url (or the sentinel or cluster settings)",
        );
        return None;
    }
    let tunnel_check = p.check(
        "websocket_session_check",
        parse_duration(raw.websocket_session_check.as_deref().unwrap_or("5s")),
    )?;
    Some(SessionStoreConfig {
        kind,
        redis: topology.map(|topology| RedisConfig { topology, password }),
        tunnel_check,
    })
}

fn parse_redis_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match url.scheme() {
        "redis" | "rediss" if url.host_str().is_some() => Ok(url),
        "redis" | "rediss" => Err(format!("`{s}` has no host")),
        other => Err(format!(
            "`{s}`: scheme `{other}` is not supported, use redis:// or rediss:// (TLS)"
        )),
    }
}

fn read_optional_secret(
    key: &str,
    inline: Option<Secret>,
    file: Option<&str>,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give {key} or {key}_file, not both")),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let s = text.trim();
            if s.is_empty() {
                return Err(format!("{path} is empty"));
            }
            Ok(Some(Secret::new(s)))
        }
        (None, None) => Ok(None),
    }
}

fn build_cookie_config(p: &mut Problems, raw: &RawConfig, secure: bool) -> Option<CookieConfig> {
    let domain = raw.cookie_domain.clone().filter(|d| !d.is_empty());
    let name = raw
        .cookie_name
        .clone()
        .unwrap_or_else(|| default_cookie_name(secure, domain.is_some()).to_owned());
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !name_ok {
        p.add(
            "cookie_name",
            format!("`{name}`: use 1 to 64 letters, digits, `_`, `-` or `.`"),
        );
    }
    if let Err(why) = check_cookie_prefix(&name, secure, domain.is_some()) {
        p.add("cookie_name", format!("`{name}`: {why}"));
    }
    if let Some(d) = &domain {
        let bare = d.trim_start_matches('.');
        if bare.is_empty()
            || !bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        {
            p.add("cookie_domain", format!("`{d}` is not a domain name"));
        }
    }
    let expire = match raw.session_lifetime.as_deref() {
        Some(s) => p.check("session_lifetime", parse_duration(s)),
        None => p.check(
            "cookie_expire",
            parse_duration(raw.cookie_expire.as_deref().unwrap_or("168h")),
        ),
    };
    let mut secrets = raw.cookie_secret.clone();
    if let Some(path) = &raw.cookie_secret_file {
        match std::fs::read_to_string(path) {
            Ok(text) => secrets.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(Secret::new),
            ),
            Err(e) => p.add("cookie_secret_file", format!("cannot read {path}: {e}")),
        }
    }
    if secrets.is_empty() {
        p.add(
            "cookie_secret",
            "required: 32 random bytes, e.g. `openssl rand -base64 32`",
        );
    }
    for (i, s) in secrets.iter().enumerate() {
        let refused = if strength::is_placeholder(s.expose()) {
            Some(format!(
                "is the examples' placeholder, not a secret: {}",
                strength::MAKE_ONE
            ))
        } else {
            match cookie_secret_bytes(s) {
                Err(reason) => Some(reason),
                Ok(bytes) => strength::weak_cookie_secret(s, &bytes),
            }
        };
        if let Some(reason) = refused {
            p.add("cookie_secret", format!("secret #{}: {reason}", i + 1));
        }
    }
    let refresh = match raw.cookie_refresh.as_deref() {
        None => Some(None),
        Some(r) => p.check("cookie_refresh", parse_duration(r)).map(Some),
    };
    Some(CookieConfig {
        name,
        domain,
        secure,
        expire: expire?,
        refresh: refresh?,
        secrets,
    })
}

/// The session cookie's name when `cookie_name` is not set: `__Host-gatehouse`
/// when cookies are Secure and host-only, so the browser itself refuses a
/// same-named cookie planted by a sibling subdomain or over plain http (it
/// requires Secure, `Path=/` and no `Domain` for that prefix);
/// `_gatehouse` otherwise. Chunks and login-state cookies add suffixes to it
/// and so carry the same prefix.
pub fn default_cookie_name(secure: bool, has_domain: bool) -> &'static str {
    if secure && !has_domain {
        "__Host-gatehouse"
    } else {
        "_gatehouse"
    }
}

/// Checks a cookie name against the rules browsers enforce for its prefix
/// (matched without regard to case, as current browsers do): a name the
/// browser would silently refuse to store is a startup error instead.
fn check_cookie_prefix(name: &str, secure: bool, has_domain: bool) -> Result<(), &'static str> {
    let starts = |prefix: &str| {
        name.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if starts("__Host-") {
        if !secure {
            return Err("a `__Host-` cookie needs cookie_secure = true");
        }
        if has_domain {
            return Err("a `__Host-` cookie cannot have a cookie_domain");
        }
    } else if starts("__Secure-") && !secure {
        return Err("a `__Secure-` cookie needs cookie_secure = true");
    }
    Ok(())
}

/// The key material in a cookie secret: 16, 24 or 32 bytes, given raw or in
/// base64 (standard or URL-safe, padded or not), as oauth2-proxy accepts.
pub fn cookie_secret_bytes(secret: &Secret) -> Result<Vec<u8>, String> {
    let s = secret.expose();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for e in engines {
        if let Ok(bytes) = e.decode(s)
            && matches!(bytes.len(), 16 | 24 | 32)
        {
            return Ok(bytes);
        }
    }
    if matches!(s.len(), 16 | 24 | 32) {
        return Ok(s.as_bytes().to_vec());
    }
    Err(format!(
        "must be 16, 24 or 32 bytes, raw or base64 (got {} characters); make one with `openssl rand -base64 32`",
        s.len()
    ))
}

fn check_redirect_scheme(p: &mut Problems, url: &Url, cookie_secure: bool) {
    if url.path() != "/oauth2/callback" {
        p.add(
            "redirect_url",
            format!("`{url}` must end in /oauth2/callback"),
        );
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.scheme() == "http" && cookie_secure && !loopback {
        p.add(
            "redirect_url",
            format!("`{url}` is plain http while cookie_secure is true: browsers would drop the session cookie"),
        );
    }
}

fn parse_email_domains(list: &[String]) -> Result<EmailDomains, String> {
    if list.is_empty() {
        return Err("required: the email domains allowed in, or `*` for any".to_owned());
    }
    if list.iter().any(|d| d == "*") {
        return Ok(EmailDomains::Any);
    }
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if d.is_empty() || d.contains(['@', '/', ' ', '*']) {
            return Err(format!("`{d}` is not a domain (use `*` alone for any)"));
        }
        out.push(d);
    }
    Ok(EmailDomains::List(out))
}

fn parse_trusted_proxies(list: &[String]) -> Result<Vec<IpNet>, String> {
    if list.is_empty() {
        return Ok(vec![
            IpNet::from(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::LOCALHOST, 8).map_err(|e| e.to_string())?,
            ),
            IpNet::from(
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::LOCALHOST, 128)
                    .map_err(|e| e.to_string())?,
            ),
        ]);
    }
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|e| format!("`{s}` is not an IP address or CIDR ({e})"))
        })
        .collect()
}

fn load_tls(cert: Option<&str>, key: Option<&str>) -> Result<Option<TlsConfig>, String> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err("tls_cert_file and tls_key_file go together".to_owned()),
    };
    let cert_chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {cert}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert}: bad PEM: {e}"))?;
    if cert_chain.is_empty() {
        return Err(format!("{cert} holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tls_key_file {key}: {e}"))?;
    Ok(Some(TlsConfig { cert_chain, key }))
}

/// Like [`parse_duration`], but zero (`0`, `0s`) is allowed: none.
fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    // a zero duration is one that adds nothing to 1ms
    parse_duration(s).or_else(|e| match parse_duration(&format!("1ms{}", s.trim())) {
        _ if s.trim().is_empty() => Err(e),
        Ok(d) if d == Duration::from_millis(1) => Ok(Duration::ZERO),
        _ => Err(e),
    })
}

/// Parses `168h`, `30m`, `45s`, `1h30m`, `500ms`, `2d`. Zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("`{s}` is not a duration like 168h, 30m, 1h30m or 45s");
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_e| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            _ => return Err(err()),
        };
        total = total.saturating_add(unit);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("`{s}` must be greater than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
