//! `RawConfig`: every setting as it arrives, unvalidated, from one source.
//!
//! The same struct is filled three times: by clap from flags and
//! `GATEHOUSE_*` environment variables (clap puts a flag above its env var),
//! and by serde from the TOML file. [`RawConfig::overlay`] stacks them; only
//! `config::Config::from_raw` turns the result into typed values.
//! Must not: validate or interpret anything; every field stays a string,
//! number or flag so the validator can name the key that is wrong.

use clap::builder::BoolishValueParser;
use serde::{Deserialize, Deserializer};

use super::secret::Secret;

/// One source's settings. Field names are the TOML keys; flags are the same
/// names in kebab case; env vars are `GATEHOUSE_` + the upper-case key.
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to listen on [default: 127.0.0.1:4180]
    #[arg(help_heading = "Listening", long, env = "GATEHOUSE_HTTP_ADDRESS")]
    pub http_address: Option<String>,

    /// Address of a separate listener serving Prometheus metrics at
    /// /metrics [default: off]
    #[arg(help_heading = "Listening", long, env = "GATEHOUSE_METRICS_ADDRESS")]
    pub metrics_address: Option<String>,

    /// Upstream [required]: `URL` for every path, or `/prefix=URL`; repeatable
    #[arg(
        help_heading = "Upstream",
        long,
        env = "GATEHOUSE_UPSTREAM",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub upstream: Vec<String>,

    /// Identity provider: oidc, keycloak (also ztrust, keycloak-oidc),
    /// authentik, auth0, passage or zkauth [default: oidc]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_PROVIDER")]
    pub provider: Option<String>,

    /// OpenID Connect issuer URL (discovery is fetched from it) [required
    /// unless the provider has a fixed one]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// OAuth client id [required]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_CLIENT_ID")]
    pub client_id: Option<String>,

    /// OAuth client secret (prefer --client-secret-file or the env var)
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,

    /// File holding the OAuth client secret
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<String>,

    /// Absolute URL of /oauth2/callback, as registered with the provider [required]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_REDIRECT_URL")]
    pub redirect_url: Option<String>,

    /// Scopes to request [default: "openid email profile"]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_SCOPE")]
    pub scope: Option<String>,

    /// Cookie encryption secret [required]: 16, 24 or 32 bytes, raw or
    /// base64 (`openssl rand -base64 32`); repeatable: the first encrypts,
    /// every one decrypts (rotation)
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub cookie_secret: Vec<Secret>,

    /// File holding the cookie secret (one per line; first encrypts)
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_SECRET_FILE"
    )]
    pub cookie_secret_file: Option<String>,

    /// Session cookie name [default: __Host-gatehouse when Secure without a
    /// cookie_domain, else _gatehouse]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_NAME"
    )]
    pub cookie_name: Option<String>,

    /// Cookie domain, e.g. `.example.com` to share a session across hosts
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_DOMAIN"
    )]
    pub cookie_domain: Option<String>,

    /// Mark cookies Secure [default: true]
    #[arg(help_heading = "Cookies and sessions", long, env = "GATEHOUSE_COOKIE_SECURE", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub cookie_secure: Option<bool>,

    /// Refresh the session's tokens at the provider this long after the last
    /// refresh (needs a refresh token); unset: never [default: unset]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_REFRESH"
    )]
    pub cookie_refresh: Option<String>,

    /// How often an open WebSocket re-checks that its session is still live
    /// (not signed out or revoked); it also closes at the session's expiry
    /// [default: 5s]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_WEBSOCKET_SESSION_CHECK"
    )]
    pub websocket_session_check: Option<String>,

    /// Session lifetime, e.g. `168h`, `30m`, `1h30m` [default: 168h]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_COOKIE_EXPIRE"
    )]
    pub cookie_expire: Option<String>,

    /// Allowed email domain [required]; `*` for any; repeatable
    #[arg(
        help_heading = "Policy",
        long,
        env = "GATEHOUSE_EMAIL_DOMAIN",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub email_domain: Vec<String>,

    /// Allowed host for post-login/logout redirects (`.example.com` for
    /// subdomains, `host:port`, `host:*`); repeatable
    #[arg(
        help_heading = "Policy",
        long,
        env = "GATEHOUSE_WHITELIST_DOMAIN",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub whitelist_domain: Vec<String>,

    /// Send the access token upstream in X-Forwarded-Access-Token
    #[arg(help_heading = "Upstream", long, env = "GATEHOUSE_PASS_ACCESS_TOKEN", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub pass_access_token: Option<bool>,

    /// Send `Authorization: Bearer <id token>` upstream
    #[arg(help_heading = "Upstream", long, env = "GATEHOUSE_PASS_AUTHORIZATION_HEADER", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub pass_authorization_header: Option<bool>,

    /// PEM certificate chain: serve HTTPS
    #[arg(help_heading = "Listening", long, env = "GATEHOUSE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<String>,

    /// PEM private key for --tls-cert-file
    #[arg(help_heading = "Listening", long, env = "GATEHOUSE_TLS_KEY_FILE")]
    pub tls_key_file: Option<String>,

    /// On SIGTERM, how long to keep serving new connections while `/ready`
    /// answers 503, so load balancers notice (SIGINT skips it) [default: 5s]
    #[arg(
        help_heading = "Listening",
        long,
        env = "GATEHOUSE_SHUTDOWN_GRACE_PERIOD"
    )]
    pub shutdown_grace_period: Option<String>,

    /// At shutdown, how long in-flight requests get to finish once the
    /// listener is closed [default: 10s]
    #[arg(help_heading = "Listening", long, env = "GATEHOUSE_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,

    /// Log format: text or json [default: text]
    #[arg(help_heading = "Logging", long, env = "GATEHOUSE_LOG_FORMAT")]
    pub log_format: Option<String>,

    /// Log filter, tracing syntax [default: info]
    #[arg(help_heading = "Logging", long, env = "GATEHOUSE_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Export traces over OTLP/HTTP to this collector URL (`/v1/traces` is
    /// added to a base URL); unset: no tracing [default: unset]
    #[arg(help_heading = "Logging", long, env = "GATEHOUSE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// `service.name` of the exported traces [default: gatehouse]
    #[arg(help_heading = "Logging", long, env = "GATEHOUSE_OTLP_SERVICE_NAME")]
    pub otlp_service_name: Option<String>,

    /// Address (CIDR) whose X-Forwarded-* headers are believed; repeatable
    /// [default: 127.0.0.1/8 and ::1]
    #[arg(
        help_heading = "Listening",
        long,
        env = "GATEHOUSE_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub trusted_proxy: Vec<String>,

    /// Time to wait for the upstream's response head [default: 30s]
    #[arg(help_heading = "Upstream", long, env = "GATEHOUSE_UPSTREAM_TIMEOUT")]
    pub upstream_timeout: Option<String>,

    /// Send the original Host header upstream (false: the upstream's own) [default: true]
    #[arg(help_heading = "Upstream", long, env = "GATEHOUSE_PASS_HOST_HEADER", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub pass_host_header: Option<bool>,

    /// Directory of page templates replacing the built-in ones by name
    /// (layout.html, sign_in.html, error.html, forbidden.html, signed_out.html)
    #[arg(help_heading = "Pages", long, env = "GATEHOUSE_CUSTOM_TEMPLATES_DIR")]
    pub custom_templates_dir: Option<String>,

    /// Text shown at the top of every page (plain text, escaped)
    #[arg(help_heading = "Pages", long, env = "GATEHOUSE_BANNER")]
    pub banner: Option<String>,

    /// Text shown at the bottom of every page (plain text, escaped)
    #[arg(help_heading = "Pages", long, env = "GATEHOUSE_FOOTER")]
    pub footer: Option<String>,

    /// Claim holding the email [default: email]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_OIDC_EMAIL_CLAIM")]
    pub oidc_email_claim: Option<String>,

    /// Claim holding the groups; a name, a URL or a dotted path [default: groups]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_OIDC_GROUPS_CLAIM")]
    pub oidc_groups_claim: Option<String>,

    /// Claim that identifies the user (X-Forwarded-User) [default: sub]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_USER_ID_CLAIM")]
    pub user_id_claim: Option<String>,

    /// Another audience accepted in ID tokens besides the client id; repeatable
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_OIDC_EXTRA_AUDIENCE",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub oidc_extra_audience: Vec<String>,

    /// Token endpoint client auth: client_secret_basic, client_secret_post or none
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_TOKEN_ENDPOINT_AUTH_METHOD"
    )]
    pub token_endpoint_auth_method: Option<String>,

    /// Token request body: form or json [default: form]
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_TOKEN_REQUEST_ENCODING"
    )]
    pub token_request_encoding: Option<String>,

    /// Where the identity comes from: id_token, access_token (a JWT) or userinfo
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_IDENTITY_SOURCE")]
    pub identity_source: Option<String>,

    /// Do not fetch discovery: give the endpoint, JWKS and issuer URLs instead
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_SKIP_OIDC_DISCOVERY", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub skip_oidc_discovery: Option<bool>,

    /// Authorization endpoint (overrides discovery and presets)
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_OIDC_AUTHORIZE_URL",
        visible_alias = "login-url"
    )]
    pub oidc_authorize_url: Option<String>,

    /// Token endpoint (overrides discovery and presets)
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_OIDC_TOKEN_URL",
        visible_alias = "redeem-url"
    )]
    pub oidc_token_url: Option<String>,

    /// JWKS URL (overrides discovery and presets)
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,

    /// Userinfo endpoint (overrides discovery)
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_OIDC_USERINFO_URL",
        visible_alias = "profile-url"
    )]
    pub oidc_userinfo_url: Option<String>,

    /// End-session (logout) endpoint (overrides discovery)
    #[arg(
        help_heading = "Provider",
        long,
        env = "GATEHOUSE_OIDC_END_SESSION_URL"
    )]
    pub oidc_end_session_url: Option<String>,

    /// Allow plain-http provider URLs (issuer, endpoints, JWKS, also from
    /// discovery) to hosts that are not loopback: tokens and keys then cross
    /// the network unprotected [default: false]
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_INSECURE_OIDC_ALLOW_HTTP", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub insecure_oidc_allow_http: Option<bool>,

    /// API audience sent on the authorize request (Auth0): the access token
    /// becomes a JWT for it and is verified
    #[arg(help_heading = "Provider", long, env = "GATEHOUSE_AUDIENCE")]
    pub audience: Option<String>,

    /// Role required (any of): `role` (realm) or `client:role`; repeatable
    #[arg(
        help_heading = "Policy",
        long,
        env = "GATEHOUSE_ALLOWED_ROLE",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub allowed_role: Vec<String>,

    /// Group required (any of); repeatable
    #[arg(
        help_heading = "Policy",
        long,
        env = "GATEHOUSE_ALLOWED_GROUP",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub allowed_group: Vec<String>,

    /// `[METHOD=]path_regex`: requests that need no sign-in (a public
    /// route); repeatable. Put `^` first: the regex is searched anywhere in
    /// the path
    #[arg(help_heading = "Routes", long, env = "GATEHOUSE_SKIP_AUTH_ROUTE")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub skip_auth_route: Vec<String>,

    /// `path_regex`: requests that need no sign-in, any method (oauth2-proxy's
    /// older form of skip_auth_route); repeatable
    #[arg(help_heading = "Routes", long, env = "GATEHOUSE_SKIP_AUTH_REGEX")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub skip_auth_regex: Vec<String>,

    /// Let CORS preflight requests (OPTIONS) through without sign-in
    /// [default: false]
    #[arg(help_heading = "Routes", long, env = "GATEHOUSE_SKIP_AUTH_PREFLIGHT", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub skip_auth_preflight: Option<bool>,

    /// `path_regex`: API paths that answer 401 instead of redirecting to
    /// sign in; repeatable
    #[arg(help_heading = "Routes", long, env = "GATEHOUSE_API_ROUTE")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub api_route: Vec<String>,

    /// `[[routes]]` tables (file only; see README "Routes")
    #[arg(skip)]
    #[serde(default)]
    pub routes: Vec<super::routes::RawRoute>,

    /// Let in users whose provider says email_verified: false [default: false]
    #[arg(help_heading = "Policy", long, env = "GATEHOUSE_ALLOW_UNVERIFIED_EMAIL", visible_alias = "insecure-oidc-allow-unverified-email", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub allow_unverified_email: Option<bool>,

    /// `Header-Name=claim`: send a claim upstream in a header; repeatable
    #[arg(
        help_heading = "Upstream",
        long,
        env = "GATEHOUSE_CLAIM_HEADER",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub claim_header: Vec<String>,

    /// Session lifetime, independent of the provider's tokens [default: cookie_expire]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_SESSION_LIFETIME"
    )]
    pub session_lifetime: Option<String>,

    /// Where sessions live: `cookie` (in the browser's cookie; revocations
    /// kept server-side) or `redis` (in Redis; the cookie is a ticket) [default: cookie]
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_SESSION_STORE_TYPE"
    )]
    pub session_store_type: Option<String>,

    /// Redis URL (`redis://host:port/db` or `rediss://` for TLS): shares
    /// revocations (and with session_store_type = redis, sessions) between replicas
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_CONNECTION_URL"
    )]
    pub redis_connection_url: Option<String>,

    /// Redis password (prefer --redis-password-file or the env var)
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_PASSWORD",
        hide_env_values = true
    )]
    pub redis_password: Option<Secret>,

    /// File holding the Redis password
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_PASSWORD_FILE"
    )]
    pub redis_password_file: Option<String>,

    /// Find the Redis master through Sentinel [default: false]
    #[arg(help_heading = "Cookies and sessions", long, env = "GATEHOUSE_REDIS_USE_SENTINEL", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub redis_use_sentinel: Option<bool>,

    /// The master name the sentinels monitor
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_SENTINEL_MASTER_NAME"
    )]
    pub redis_sentinel_master_name: Option<String>,

    /// Sentinel URLs (`redis://host:26379`); repeatable
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_SENTINEL_CONNECTION_URLS",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub redis_sentinel_connection_urls: Vec<String>,

    /// Talk to a Redis Cluster [default: false]
    #[arg(help_heading = "Cookies and sessions", long, env = "GATEHOUSE_REDIS_USE_CLUSTER", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub redis_use_cluster: Option<bool>,

    /// Cluster node URLs (any few; the rest are discovered); repeatable
    #[arg(
        help_heading = "Cookies and sessions",
        long,
        env = "GATEHOUSE_REDIS_CLUSTER_CONNECTION_URLS",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub redis_cluster_connection_urls: Vec<String>,

    /// Time a client has to send a request head, or to start its first
    /// request [default: 10s]
    #[arg(help_heading = "Limits", long, env = "GATEHOUSE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,

    /// Close a connection with no request in flight for this long (HTTP/1
    /// keep-alive and HTTP/2) [default: 60s]
    #[arg(help_heading = "Limits", long, env = "GATEHOUSE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,

    /// Cut off a request body that sends nothing for this long [default: 30s]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_REQUEST_BODY_IDLE_TIMEOUT"
    )]
    pub request_body_idle_timeout: Option<String>,

    /// Open connections at most; more are closed at accept [default: 10000]
    #[arg(help_heading = "Limits", long, env = "GATEHOUSE_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,

    /// Open connections at most from one client address (IPv6: one /64) [default: 256]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_MAX_CONNECTIONS_PER_IP"
    )]
    pub max_connections_per_ip: Option<u64>,

    /// Largest request head (HTTP/1) or header list (HTTP/2) in bytes, at
    /// least 8192; larger ones get 431 [default: 65536]
    #[arg(help_heading = "Limits", long, env = "GATEHOUSE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<u64>,

    /// Concurrent streams on one HTTP/2 connection [default: 100]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_HTTP2_MAX_CONCURRENT_STREAMS"
    )]
    pub http2_max_concurrent_streams: Option<u32>,

    /// HTTP/2 keep-alive ping interval [default: 30s]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_HTTP2_KEEPALIVE_INTERVAL"
    )]
    pub http2_keepalive_interval: Option<String>,

    /// Time an HTTP/2 ping has to be answered [default: 20s]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_HTTP2_KEEPALIVE_TIMEOUT"
    )]
    pub http2_keepalive_timeout: Option<String>,

    /// Requests to /oauth2/start and /oauth2/callback one client may send
    /// back to back; 0 turns the limit off [default: 120]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_LOGIN_RATE_LIMIT_BURST"
    )]
    pub login_rate_limit_burst: Option<u32>,

    /// Sustained requests per minute to those endpoints from one client; 0
    /// turns the limit off [default: 120]
    #[arg(
        help_heading = "Limits",
        long,
        env = "GATEHOUSE_LOGIN_RATE_LIMIT_PER_MINUTE"
    )]
    pub login_rate_limit_per_minute: Option<u32>,

    /// Accept `Authorization: Bearer <JWT>` from the provider and the extra
    /// issuers instead of a session, on every path [default: false]
    #[arg(help_heading = "Policy", long, env = "GATEHOUSE_SKIP_JWT_BEARER_TOKENS", num_args = 0..=1, default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub skip_jwt_bearer_tokens: Option<bool>,

    /// Another issuer whose bearer tokens are accepted, as `issuer=audience`;
    /// repeatable
    #[arg(
        help_heading = "Policy",
        long,
        env = "GATEHOUSE_EXTRA_JWT_ISSUERS",
        value_delimiter = ','
    )]
    #[serde(default, deserialize_with = "one_or_many")]
    pub extra_jwt_issuers: Vec<String>,

    /// `[[providers]]` tables (file only; read by `config::parse_toml`).
    #[arg(skip)]
    #[serde(skip)]
    pub providers: Vec<super::provider_tables::RawProvider>,
}

/// Lets a list setting be written `key = "one"` or `key = ["one", "two"]`.
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        One(T),
        Many(Vec<T>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(v) => vec![v],
        OneOrMany::Many(v) => v,
    })
}

macro_rules! overlay_fields {
    ($low:ident, $high:ident; scalars: $($s:ident),*; lists: $($l:ident),*) => {
        RawConfig {
            $($s: $high.$s.or($low.$s),)*
            $($l: if $high.$l.is_empty() { $low.$l } else { $high.$l },)*
        }
    };
}

impl RawConfig {
    /// Stacks `high` over `self`: a setting `high` has wins; a list `high`
    /// has replaces the whole list (lists never merge across sources).
    pub fn overlay(self, high: Self) -> Self {
        let low = self;
        overlay_fields!(low, high;
            scalars: http_address, metrics_address, provider, oidc_issuer_url, client_id, client_secret,
                custom_templates_dir, banner, footer,
                client_secret_file, redirect_url, scope, cookie_secret_file, cookie_name,
                cookie_domain, cookie_secure, cookie_expire, cookie_refresh, websocket_session_check, pass_access_token,
                pass_authorization_header, tls_cert_file, tls_key_file, log_format, log_level,
                upstream_timeout, pass_host_header, oidc_email_claim, oidc_groups_claim,
                user_id_claim, token_endpoint_auth_method, token_request_encoding, identity_source,
                skip_oidc_discovery, oidc_authorize_url, oidc_token_url, oidc_jwks_url,
                oidc_userinfo_url, oidc_end_session_url, insecure_oidc_allow_http, audience, allow_unverified_email,
                session_lifetime, session_store_type, redis_connection_url, redis_password,
                redis_password_file, redis_use_sentinel, redis_sentinel_master_name,
                redis_use_cluster, header_read_timeout, idle_timeout, request_body_idle_timeout,
                max_connections, max_connections_per_ip, max_header_bytes,
                http2_max_concurrent_streams, http2_keepalive_interval, http2_keepalive_timeout,
                login_rate_limit_burst, login_rate_limit_per_minute, skip_auth_preflight,
                skip_jwt_bearer_tokens, shutdown_grace_period, shutdown_timeout,
                otlp_endpoint, otlp_service_name;
            lists: upstream, cookie_secret, email_domain, whitelist_domain, trusted_proxy,
                oidc_extra_audience, allowed_role, allowed_group, claim_header,
                redis_sentinel_connection_urls, redis_cluster_connection_urls,
                skip_auth_route, skip_auth_regex, api_route, routes,
                extra_jwt_issuers, providers)
    }
}
