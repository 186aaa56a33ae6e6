//! Prometheus metrics: the families, and the listener that serves them.
//!
//! Owns: one [`Metrics`] per running server (never a process-wide static:
//! the tests run many servers in one process), created by
//! `Server::start` when `metrics_address` is set and handed to each
//! `AppState` built for it, so a configuration reload keeps counting into
//! the same series. Hooks in the router, the gate, the login endpoints,
//! the provider client and the session store call a [`Recorder`]: a cheap
//! handle, built once per `AppState`, whose series for each route are
//! resolved at start (an index, no label lookup per request). With metrics
//! off the recorder is empty and every hook is a branch on `None`.
//! Must not: take a label from the request (user ids, raw paths, hosts):
//! every label value is a route name or provider id from the configuration,
//! or a fixed word.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Decision;
use crate::auth::policy::DenyReason;
use crate::config::Config;

/// The Content-Type of `/metrics`: Prometheus' text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The method classes requests are counted by.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
/// The status classes requests are counted by.
const STATUSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The `route` label of a request placed on no route: gatehouse's own
/// endpoints (`/oauth2/*`, `/ping`, `/ready`) and refused targets.
pub const NO_ROUTE: &str = "none";

/// Every auth decision, as (`decision`, `reason`); [`decision_index`]
/// maps a [`Decision`] here.
const DECISIONS: [(&str, &str); 15] = [
    ("allow", "session"),
    ("allow", "bearer"),
    ("challenge", "no_session"),
    ("challenge", "step_up"),
    ("deny", "invalid_token"),
    ("deny", "email_domain"),
    ("deny", "no_email"),
    ("deny", "unverified_email"),
    ("deny", "allowed_role"),
    ("deny", "allowed_group"),
    ("deny", "allowed_groups"),
    ("deny", "allowed_emails"),
    ("deny", "route"),
    ("unavailable", "provider"),
    ("unavailable", "store"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginFailedLabels {
    provider: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    provider: String,
    call: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallKindLabels {
    provider: String,
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.5 ms to about 16 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The registry and every family, for one running server (and every
/// configuration it reloads).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabels>,
    upstream_duration: Histograms<RouteLabels>,
    decisions: Family<DecisionLabels, Counter>,
    logins_started: Family<ProviderLabels, Counter>,
    logins_completed: Family<ProviderLabels, Counter>,
    logins_failed: Family<LoginFailedLabels, Counter>,
    provider_calls: Family<CallLabels, Counter>,
    provider_call_duration: Histograms<CallKindLabels>,
    store_operations: Family<StoreLabels, Counter>,
    store_errors: Family<StoreLabels, Counter>,
    revocations: Family<SourceLabels, Counter>,
    open_connections: Gauge,
    parked_connections: Gauge,
    reloads: Family<ResultLabels, Counter>,
    last_reload: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered under `gatehouse_`; the configuration
    /// counts as loaded now.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by route, method class and status class",
            requests.clone(),
        );
        let request_duration: Histograms<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from the request head to the response head, by route",
            Unit::Seconds,
            request_duration.clone(),
        );
        let upstream_duration: Histograms<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "upstream_duration",
            "Time the upstream took to answer (to its response head), by route",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let decisions = Family::default();
        registry.register(
            "auth_decisions",
            "Auth decisions (allow, challenge, deny, unavailable) by reason",
            decisions.clone(),
        );
        let logins_started = Family::default();
        registry.register(
            "logins_started",
            "Logins sent to the provider",
            logins_started.clone(),
        );
        let logins_completed = Family::default();
        registry.register(
            "logins_completed",
            "Logins that ended in a session",
            logins_completed.clone(),
        );
        let logins_failed = Family::default();
        registry.register(
            "logins_failed",
            "Logins that came back to the callback and failed, by reason",
            logins_failed.clone(),
        );
        let provider_calls = Family::default();
        registry.register(
            "provider_calls",
            "Calls to identity providers (discovery, jwks, token, userinfo, refresh) by outcome",
            provider_calls.clone(),
        );
        let provider_call_duration: Histograms<CallKindLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "provider_call_duration",
            "Time identity provider calls took",
            Unit::Seconds,
            provider_call_duration.clone(),
        );
        let store_operations = Family::default();
        registry.register(
            "session_store_operations",
            "Session store operations, by store kind and operation",
            store_operations.clone(),
        );
        let store_errors = Family::default();
        registry.register(
            "session_store_errors",
            "Session store operations that failed, by store kind and operation",
            store_errors.clone(),
        );
        let revocations = Family::default();
        registry.register(
            "revocations",
            "Sessions revoked, by source (sign_out, backchannel)",
            revocations.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open on the public listener",
            open_connections.clone(),
        );
        let parked_connections = Gauge::default();
        registry.register(
            "parked_connections",
            "HTTP/1 keep-alive connections waiting for their next request with no HTTP buffers (taken out of hyper after 50 ms quiet)",
            parked_connections.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (success, failure)",
            reloads.clone(),
        );
        let last_reload = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "config_last_reload_success_timestamp",
            "When the running configuration was loaded (Unix time)",
            Unit::Seconds,
            last_reload.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "gatehouse's version (always 1)", build_info);
        for ok in [true, false] {
            // both series exist from the start, at 0
            drop(reloads.get_or_create(&ResultLabels {
                result: reload_result(ok),
            }));
        }
        last_reload.set(unix_now());
        Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            decisions,
            logins_started,
            logins_completed,
            logins_failed,
            provider_calls,
            provider_call_duration,
            store_operations,
            store_errors,
            revocations,
            open_connections,
            parked_connections,
            reloads,
            last_reload,
        }
    }

    /// Counts a configuration reload; a successful one also sets the
    /// last-success timestamp.
    pub fn config_reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: reload_result(ok),
            })
            .inc();
        if ok {
            self.last_reload.set(unix_now());
        }
    }

    /// The text exposition of every series, with `conns` as the
    /// connections now.
    pub fn encode(&self, conns: ConnCounts) -> String {
        self.open_connections
            .set(i64::try_from(conns.open).unwrap_or(i64::MAX));
        self.parked_connections
            .set(i64::try_from(conns.parked).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // writing to a String does not fail; say so if it ever does
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        out
    }

    /// The hooks' handle for a state built from `config`.
    pub fn recorder(self: &Arc<Self>, config: &Config) -> Recorder {
        let route_names = config
            .routes
            .routes()
            .iter()
            .map(|r| r.name.clone())
            .chain(std::iter::once(NO_ROUTE.to_owned()));
        let routes = route_names
            .map(|name| RouteSeries {
                requests: std::array::from_fn(|m| {
                    std::array::from_fn(|s| {
                        self.requests.get_or_create_owned(&RequestLabels {
                            route: name.clone(),
                            method: METHODS[m],
                            status: STATUSES[s],
                        })
                    })
                }),
                duration: self.request_duration.get_or_create_owned(&RouteLabels {
                    route: name.clone(),
                }),
                upstream: self
                    .upstream_duration
                    .get_or_create_owned(&RouteLabels { route: name }),
            })
            .collect();
        let decisions = DECISIONS.map(|(decision, reason)| {
            self.decisions
                .get_or_create_owned(&DecisionLabels { decision, reason })
        });
        let providers = config.providers.iter().map(|p| p.id.clone()).collect();
        let store = match config.session_store.kind {
            crate::config::SessionStoreKind::Redis if config.session_store.redis.is_some() => {
                "redis"
            }
            _ => "cookie",
        };
        Recorder(Some(Arc::new(Resolved {
            metrics: self.clone(),
            routes,
            decisions,
            providers,
            store,
        })))
    }
}

fn reload_result(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One route's series, resolved at start.
struct RouteSeries {
    requests: [[Counter; STATUSES.len()]; METHODS.len()],
    duration: Histogram,
    upstream: Histogram,
}

struct Resolved {
    metrics: Arc<Metrics>,
    /// By route index; the last is [`NO_ROUTE`].
    routes: Vec<RouteSeries>,
    decisions: [Counter; DECISIONS.len()],
    /// Provider ids, by index into `config.providers`.
    providers: Vec<String>,
    /// `cookie` or `redis`.
    store: &'static str,
}

impl Resolved {
    fn route(&self, index: Option<usize>) -> Option<&RouteSeries> {
        match index.and_then(|i| self.routes.get(i)) {
            Some(r) => Some(r),
            None => self.routes.last(),
        }
    }

    fn provider(&self, index: usize) -> String {
        self.providers
            .get(index)
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// Why a login that came back to the callback failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// No, a spent, an expired or a forged login state.
    State,
    /// The answer came from, or to, another provider than the login's.
    Issuer,
    /// The provider answered with an error (the user declined, ...).
    Provider,
    /// The code could not be redeemed, or the tokens did not verify.
    Exchange,
    /// A step-up login came back without the strength asked for.
    StepUp,
    /// Signed in, but the policy refuses the user.
    Policy,
    /// The session store could not keep the login.
    Store,
    /// Anything else (a bad request, an internal error).
    Other,
}

impl LoginFailure {
    fn label(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Issuer => "issuer",
            Self::Provider => "provider_error",
            Self::Exchange => "exchange",
            Self::StepUp => "step_up",
            Self::Policy => "policy",
            Self::Store => "store",
            Self::Other => "other",
        }
    }
}

/// A call to an identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderCall {
    /// The discovery document.
    Discovery,
    /// The signing keys.
    Jwks,
    /// The token endpoint, redeeming a login's code.
    Token,
    /// The userinfo endpoint.
    Userinfo,
    /// The token endpoint, redeeming a refresh token.
    Refresh,
}

impl ProviderCall {
    fn label(self) -> &'static str {
        match self {
            Self::Discovery => "discovery",
            Self::Jwks => "jwks",
            Self::Token => "token",
            Self::Userinfo => "userinfo",
            Self::Refresh => "refresh",
        }
    }
}

/// A session store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// A session saved.
    Save,
    /// A session looked up from its cookie.
    Load,
    /// A revocation recorded.
    Revoke,
}

impl StoreOp {
    fn label(self) -> &'static str {
        match self {
            Self::Save => "save",
            Self::Load => "load",
            Self::Revoke => "revoke",
        }
    }
}

/// Where a revocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationSource {
    /// `/oauth2/sign_out`.
    SignOut,
    /// The provider's back-channel logout.
    Backchannel,
}

/// The handle hooks record through: a clone is an `Arc` clone; empty (and
/// every call a no-op) when metrics are off.
#[derive(Clone, Default)]
pub struct Recorder(Option<Arc<Resolved>>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Recorder(on)"
        } else {
            "Recorder(off)"
        })
    }
}

impl Recorder {
    /// Whether metrics are on.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// The metrics recorded into, when on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.0.as_ref().map(|r| &r.metrics)
    }

    /// One request answered: on route `route` (an index into the routes, or
    /// `None`), with `method`, `status`, after `elapsed`.
    pub fn request(
        &self,
        route: Option<usize>,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let Some(series) = self.0.as_ref().and_then(|r| r.route(route)) else {
            return;
        };
        let class = usize::from(status.as_u16() / 100).clamp(1, STATUSES.len()) - 1;
        series.requests[method_class(method)][class].inc();
        series.duration.observe(elapsed.as_secs_f64());
    }

    /// The upstream of route `route` answered (or failed) after `elapsed`.
    pub fn upstream(&self, route: usize, elapsed: Duration) {
        if let Some(series) = self.0.as_ref().and_then(|r| r.route(Some(route))) {
            series.upstream.observe(elapsed.as_secs_f64());
        }
    }

    /// The gate decided `decision`; `bearer` when a token decided it.
    pub fn decision(&self, decision: &Decision, bearer: bool) {
        if let Some(r) = &self.0 {
            r.decisions[decision_index(decision, bearer)].inc();
        }
    }

    /// A login was sent to the provider `config.providers[provider]`.
    pub fn login_started(&self, provider: usize) {
        if let Some(r) = &self.0 {
            r.metrics
                .logins_started
                .get_or_create(&ProviderLabels {
                    provider: r.provider(provider),
                })
                .inc();
        }
    }

    /// A login at `provider` ended in a session.
    pub fn login_completed(&self, provider: usize) {
        if let Some(r) = &self.0 {
            r.metrics
                .logins_completed
                .get_or_create(&ProviderLabels {
                    provider: r.provider(provider),
                })
                .inc();
        }
    }

    /// A login came back and failed; `provider` when it is known (the
    /// login state was read).
    pub fn login_failed(&self, provider: Option<usize>, why: LoginFailure) {
        if let Some(r) = &self.0 {
            let provider = provider.map_or_else(|| "unknown".to_owned(), |i| r.provider(i));
            r.metrics
                .logins_failed
                .get_or_create(&LoginFailedLabels {
                    provider,
                    reason: why.label(),
                })
                .inc();
        }
    }

    /// A call to the provider `config.providers[provider]` ended after
    /// `elapsed`.
    pub fn provider_call(&self, provider: usize, call: ProviderCall, ok: bool, elapsed: Duration) {
        if let Some(r) = &self.0 {
            let provider = r.provider(provider);
            r.metrics
                .provider_call_duration
                .get_or_create(&CallKindLabels {
                    provider: provider.clone(),
                    call: call.label(),
                })
                .observe(elapsed.as_secs_f64());
            r.metrics
                .provider_calls
                .get_or_create(&CallLabels {
                    provider,
                    call: call.label(),
                    outcome: if ok { "ok" } else { "error" },
                })
                .inc();
        }
    }

    /// A session store operation ended, `ok` or not.
    pub fn store(&self, op: StoreOp, ok: bool) {
        if let Some(r) = &self.0 {
            let labels = StoreLabels {
                store: r.store,
                op: op.label(),
            };
            r.metrics.store_operations.get_or_create(&labels).inc();
            if !ok {
                r.metrics.store_errors.get_or_create(&labels).inc();
            }
        }
    }

    /// A session (or every session of a user) was revoked.
    pub fn revoked(&self, source: RevocationSource) {
        if let Some(r) = &self.0 {
            let source = match source {
                RevocationSource::SignOut => "sign_out",
                RevocationSource::Backchannel => "backchannel",
            };
            r.metrics
                .revocations
                .get_or_create(&SourceLabels { source })
                .inc();
        }
    }
}

fn method_class(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// `decision`'s place in [`DECISIONS`].
fn decision_index(decision: &Decision, bearer: bool) -> usize {
    match decision {
        Decision::Allow(_) if bearer => 1,
        Decision::Allow(_) => 0,
        Decision::Challenge => 2,
        Decision::StepUp(..) => 3,
        Decision::InvalidToken => 4,
        Decision::Deny(reason, _) => match reason {
            DenyReason::EmailDomain => 5,
            DenyReason::NoEmail => 6,
            DenyReason::UnverifiedEmail => 7,
            DenyReason::Role => 8,
            DenyReason::ConfiguredGroup => 9,
            DenyReason::Group => 10,
            DenyReason::LocationEmail => 11,
            DenyReason::Route => 12,
        },
        Decision::Unavailable(crate::auth::Unavailable::Provider) => 13,
        Decision::Unavailable(crate::auth::Unavailable::Store) => 14,
    }
}

/// The public listener's client connections at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnCounts {
    /// Open (accepted, not yet closed).
    pub open: usize,
    /// Of those, HTTP/1 connections parked between requests.
    pub parked: usize,
}

/// Serves `GET /metrics` on `listener` until `stopped`; `open` counts the
/// public listener's client connections.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    open: Arc<dyn Fn() -> ConnCounts + Send + Sync>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let metrics = metrics.clone();
        let open = open.clone();
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = answer(&req, &metrics, &*open);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "metrics connection ended with an error");
                    }
                }
                _ = stopped.changed() => {}
            }
        });
    }
}

/// `/metrics` for GET, 405 for another method there, 404 elsewhere.
fn answer<B>(
    req: &Request<B>,
    metrics: &Metrics,
    open: &dyn Fn() -> ConnCounts,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(metrics.encode(open()))));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

#[cfg(test)]
mod tests;
