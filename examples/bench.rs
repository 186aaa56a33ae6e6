//! `make bench`: requests/s, p99 latency and memory of a signed-in GET
//! through gatehouse, next to the same upstream reached directly, in one run.
//!
//! Run it with `make bench` (needs `wrk`: `apt-get install -y wrk`). It starts
//! a small upstream (a 1 KiB page) and the mock OpenID provider in this
//! process, starts the release `gatehouse` binary as a child process, signs
//! in once to get a session cookie, then runs `wrk` against the upstream
//! directly and against gatehouse with that cookie, sampling gatehouse's RSS
//! while it is under load.
//!
//! With `redis-server` installed (else one line says the rows were skipped)
//! it also starts one on an ephemeral loopback port (no persistence, killed
//! on exit) and measures, each with its own gatehouse child: the cookie store
//! sharing revocations through Redis, the Redis session store, and the cookie
//! store again started after `BENCH_REVOCATIONS` revocations were written to
//! the Redis stream (it checks that child refuses a session signed out before
//! it started, so the whole stream was read before /ready said 200).
//!
//! It prints one Markdown table, then per mode the session cookie's size and
//! gatehouse's RSS. Knobs (env vars): `BENCH_DURATION` (seconds per wrk run,
//! default 10; 8 runs), `BENCH_CONNECTIONS` (default 64), `BENCH_THREADS`
//! (default 2), `BENCH_REVOCATIONS` (default 100000), `GATEHOUSE_BIN`
//! (default `target/release/gatehouse`).

use std::convert::Infallible;
use std::error::Error;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[expect(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "shared with the tests, which use the rest"
)]
#[path = "../tests/support/idp.rs"]
mod idp;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Stops nginx on drop with SIGTERM, so the master takes its workers with it
/// (a SIGKILL would leave them running).
struct NginxGuard(Child);

impl Drop for NginxGuard {
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        if stopped.is_err() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Kills the child process on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> BoxResult<()> {
    let duration: u64 = env_or("BENCH_DURATION", 10);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 64);
    let threads: u64 = env_or("BENCH_THREADS", 2);
    let revocations: u64 = env_or("BENCH_REVOCATIONS", 100_000);
    let bin = std::env::var("GATEHOUSE_BIN").unwrap_or_else(|_e| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gatehouse").to_owned()
    });
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk not found: install it with `apt-get install -y wrk`".into());
    }
    let load = Load {
        threads,
        connections,
        secs: duration,
    };

    let upstream = start_upstream().await?;
    let idp = idp::MockIdp::try_start(idp::IdpOptions::auto_approving("alice")).await?;
    let bench = Bench {
        bin,
        upstream,
        issuer: idp.issuer(),
        cookie_secret: random_cookie_secret()?,
    };
    let mut notes = Vec::new();
    let plain = bench.start(&[]).await?;
    let direct = load.wrk(&format!("http://{upstream}/"), None)?;
    let proxied = plain.measure(&load).await?;
    notes.push(plain.summary("cookie store", &proxied));
    let mut rows = vec![
        ("upstream direct".to_owned(), direct),
        ("through gatehouse (signed in)".to_owned(), proxied.result),
    ];
    {
        // the same with 50 routes that the request walks past to the default
        // route: what matching costs (issue 10)
        let file = std::env::temp_dir().join(format!(
            "gatehouse-bench-routes-{}.toml",
            std::process::id()
        ));
        std::fs::write(&file, fifty_routes())?;
        let routed = bench
            .start(&["--config", &file.display().to_string()])
            .await?;
        let m = routed.measure(&load).await?;
        notes.push(routed.summary("50 routes configured", &m));
        rows.push((
            "through gatehouse, 50 routes configured (none matches)".to_owned(),
            m.result,
        ));
        drop(routed);
        let _ = std::fs::remove_file(&file);
    }
    {
        // the same with one JSON access line per request, written to a file
        let log = std::env::temp_dir().join(format!("gatehouse-bench-{}.log", std::process::id()));
        let logged = bench.start_with(&[], Some(&log)).await?;
        let m = logged.measure(&load).await?;
        let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        notes.push(format!(
            "{}; {lines} log lines written",
            logged.summary("access log on (JSON to a file)", &m)
        ));
        rows.push((
            "through gatehouse, access log on (JSON to a file)".to_owned(),
            m.result,
        ));
        drop(logged);
        let _ = std::fs::remove_file(&log);
    }
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        let (mut more, mut more_notes) = redis_rows(&bench, &load, revocations).await?;
        rows.append(&mut more);
        notes.append(&mut more_notes);
    } else {
        emit("(Redis rows skipped: redis-server not found: apt-get install -y redis-server)");
    }
    let auth = load.wrk(&format!("{}/oauth2/auth", plain.base), Some(&plain.cookie))?;
    rows.push(("gatehouse /oauth2/auth asked directly".to_owned(), auth));
    match nginx_rows(plain.port, upstream, &plain.cookie, &load) {
        Ok(mut more) => rows.append(&mut more),
        Err(e) => emit(&format!("(nginx rows skipped: {e})\n")),
    }

    let mut table =
        String::from("| target | requests/s | p99 latency | non-2xx |\n|---|---|---|---|\n");
    for (name, r) in &rows {
        table.push_str(&format!(
            "| {name} | {:.0} | {} | {} |\n",
            r.rps, r.p99, r.non_2xx
        ));
    }
    emit(&format!(
        "{table}\n{}\nwrk -t{threads} -c{connections} -d{duration}s, 1 KiB upstream page, \
         log level warn, on {} cores\n",
        notes.join("\n"),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    ));
    drop(plain);
    if rows.iter().any(|(_, r)| r.non_2xx > 0) {
        return Err("some requests were not 2xx: the session did not hold".into());
    }
    Ok(())
}

/// Fifty `[[routes]]` a signed-in `GET /` walks past before the default
/// route: hosts, path prefixes and regexes, some with methods and allow
/// lists, as a large real configuration has them.
fn fifty_routes() -> String {
    let mut t = String::new();
    for i in 0..20 {
        t.push_str(&format!(
            "[[routes]]\npath = \"/service-{i}\"\nallowed_groups = [\"team-{i}\"]\n\n"
        ));
    }
    for i in 0..15 {
        t.push_str(&format!(
            "[[routes]]\nhost = \"app-{i}.example.com\"\nupstream = \"http://127.0.0.1:9\"\n\n"
        ));
    }
    for i in 0..10 {
        t.push_str(&format!(
            "[[routes]]\npath_regex = \"^/api/v{i}/[a-z]+/[0-9]+$\"\napi = true\n\n"
        ));
    }
    for i in 0..5 {
        t.push_str(&format!(
            "[[routes]]\nhost = \"*.tenant-{i}.example.com\"\npath = \"/public\"\nmethods = [\"GET\", \"HEAD\"]\npolicy = \"public\"\n\n"
        ));
    }
    t
}

/// What every gatehouse child of the run shares.
struct Bench {
    bin: String,
    upstream: SocketAddr,
    issuer: String,
    /// Random per run (gatehouse refuses a published one), shared by the
    /// children so one's session cookie is read by the next.
    cookie_secret: String,
}

impl Bench {
    /// Starts a gatehouse child with the common settings plus `extra`, waits
    /// for /ready and signs in once.
    async fn start(&self, extra: &[&str]) -> BoxResult<Gatehouse> {
        self.start_with(extra, None).await
    }

    /// [`Self::start`], logging at `info` (one access line per request) as
    /// JSON into `log` when given, else at `warn` to the bench's stderr.
    async fn start_with(
        &self,
        extra: &[&str],
        log: Option<&std::path::Path>,
    ) -> BoxResult<Gatehouse> {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let child = Command::new(&self.bin)
            .args(["--http-address", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("http://{}", self.upstream)])
            .args(["--oidc-issuer-url", &self.issuer])
            .args(["--client-id", "gatehouse"])
            // secrets in the environment, not in `ps`
            .env("GATEHOUSE_CLIENT_SECRET", "s3cret")
            .args(["--redirect-url", &format!("{base}/oauth2/callback")])
            .env("GATEHOUSE_COOKIE_SECRET", &self.cookie_secret)
            .args(["--cookie-secure=false", "--email-domain", "*"])
            .args(match log {
                Some(_) => ["--log-level", "info", "--log-format", "json"],
                None => ["--log-level", "warn", "--log-format", "text"],
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::inherit(),
            })
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (run `cargo build --release` first)",
                    self.bin
                )
            })?;
        let child = ChildGuard(child);
        wait_ready(&base).await?;
        let ready_after = started.elapsed();
        let (cookie, cookie_bytes) = sign_in(&base).await?;
        let idle_rss = rss_kib(child.0.id(), "VmRSS:");
        Ok(Gatehouse {
            child,
            port,
            base,
            cookie,
            cookie_bytes,
            idle_rss,
            ready_after,
        })
    }
}

/// A running gatehouse child, signed in.
struct Gatehouse {
    child: ChildGuard,
    port: u16,
    base: String,
    /// The `Cookie` header value carrying the session.
    cookie: String,
    /// Bytes of the session's Set-Cookie `name=value` parts.
    cookie_bytes: usize,
    idle_rss: u64,
    /// From spawn to the first 200 from /ready.
    ready_after: Duration,
}

/// A measured signed-in GET through one gatehouse.
struct Measured {
    result: WrkResult,
    peak_under_load: u64,
    hwm: u64,
}

impl Gatehouse {
    /// wrk on `/` with the session cookie, sampling RSS meanwhile.
    async fn measure(&self, load: &Load) -> BoxResult<Measured> {
        let pid = self.child.0.id();
        let sampler = tokio::spawn(sample_rss(pid, Duration::from_secs(load.secs)));
        let result = load.wrk(&format!("{}/", self.base), Some(&self.cookie))?;
        let peak_under_load = sampler.await.unwrap_or(0);
        Ok(Measured {
            result,
            peak_under_load,
            hwm: rss_kib(pid, "VmHWM:"),
        })
    }

    fn summary(&self, mode: &str, m: &Measured) -> String {
        format!(
            "{mode}: session cookie {} bytes; RSS idle {} KiB, under load (max sampled) {} KiB, \
             peak (VmHWM) {} KiB",
            self.cookie_bytes, self.idle_rss, m.peak_under_load, m.hwm
        )
    }

    /// The status of a GET / with `cookie`.
    async fn status_with(&self, cookie: &str) -> BoxResult<StatusCode> {
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let req = Request::get(format!("{}/", self.base))
            .header(header::COOKIE, cookie)
            .body(Empty::new())?;
        Ok(client.request(req).await?.status())
    }
}

/// 32 random bytes in base64, as `openssl rand -base64 32` makes.
fn random_cookie_secret() -> BoxResult<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut key = [0_u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|e| format!("rng: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key))
}

/// The cookie store sharing revocations through Redis, the Redis store, and
/// the cookie store again once `revocations` revocations sit in the stream.
async fn redis_rows(
    bench: &Bench,
    load: &Load,
    revocations: u64,
) -> BoxResult<(Vec<(String, WrkResult)>, Vec<String>)> {
    let redis = RedisServer::start()?;
    let url = redis.url();
    let cookie_args = ["--redis-connection-url", &url];
    let redis_args = [
        "--redis-connection-url",
        &url,
        "--session-store-type",
        "redis",
    ];
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    let shared = bench.start(&cookie_args).await?;
    let m = shared.measure(load).await?;
    notes.push(shared.summary("cookie store + Redis", &m));
    rows.push((
        "cookie store + Redis (revocations shared)".to_owned(),
        m.result,
    ));

    let stored = bench.start(&redis_args).await?;
    let m = stored.measure(load).await?;
    notes.push(stored.summary("Redis store", &m));
    rows.push(("Redis store".to_owned(), m.result));
    drop(stored);

    // many revocations, then one made by a replica (a sign-out): a new
    // replica that refuses that session has read the whole stream
    let stream = format!("{}revocations", key_prefix(&bench.issuer, "gatehouse"));
    let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
    let filled = Instant::now();
    fill_revocations(&mut conn, &stream, revocations)?;
    let fill_time = filled.elapsed();
    let (signed_out, _) = sign_in(&shared.base).await?;
    sign_out(&shared.base, &signed_out).await?;
    drop(shared);
    let len: u64 = redis::cmd("XLEN").arg(&stream).query(&mut conn)?;
    if len != revocations + 1 {
        return Err(format!(
            "{stream} holds {len} entries, not {}: is the key gatehouse uses still \
             gatehouse:<hash of issuer and client id>:revocations?",
            revocations + 1
        )
        .into());
    }
    let loaded = bench.start(&cookie_args).await?;
    if loaded.status_with(&signed_out).await? == StatusCode::OK {
        return Err("a session revoked before start was accepted: the stream was not read".into());
    }
    let m = loaded.measure(load).await?;
    notes.push(format!(
        "{} (stream filled in {} ms; ready {} ms after start)",
        loaded.summary(
            &format!(
                "cookie store + Redis, {} revocations",
                thousands(revocations)
            ),
            &m
        ),
        fill_time.as_millis(),
        loaded.ready_after.as_millis(),
    ));
    rows.push((
        format!(
            "cookie store + Redis, {} revocations",
            thousands(revocations)
        ),
        m.result,
    ));
    Ok((rows, notes))
}

/// gatehouse's `key_prefix` (src/state.rs): `gatehouse:<12 hex of
/// SHA-256(issuer 0 client_id)>:`.
fn key_prefix(issuer: &str, client_id: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(issuer.as_bytes());
    ctx.update(&[0]);
    ctx.update(client_id.as_bytes());
    let tag: String = ctx.finish().as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("gatehouse:{tag}:")
}

/// Appends `n` session revocations (`s <id> <until>`, as
/// src/auth/session/revocations.rs encodes them), valid for an hour, in
/// pipelined batches.
fn fill_revocations(conn: &mut redis::Connection, stream: &str, n: u64) -> BoxResult<()> {
    use base64::Engine as _;
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let mut i = 0u64;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..n.min(i + 10_000) {
            // distinct ids no signed-in session has (those are random)
            let id = (u128::from(j) | (0xbe9c_u128 << 112)).to_be_bytes();
            let entry = format!(
                "s {} {until}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
            );
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("r")
                .arg(entry)
                .ignore();
        }
        pipe.query::<()>(conn)?;
        i = n.min(i + 10_000);
    }
    Ok(())
}

async fn sign_out(base: &str, cookie: &str) -> BoxResult<()> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("{base}/oauth2/sign_out"))
        .header(header::COOKIE, cookie)
        .body(Empty::new())?;
    let status = client.request(req).await?.status();
    if status != StatusCode::FOUND {
        return Err(format!("sign-out answered {status}").into());
    }
    Ok(())
}

/// A throwaway `redis-server` on an ephemeral loopback port, no persistence,
/// killed on drop.
struct RedisServer {
    _child: ChildGuard,
    port: u16,
}

impl RedisServer {
    fn start() -> BoxResult<Self> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (apt-get install -y redis-server)"))?;
        let guard = ChildGuard(child);
        let url = format!("redis://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return Ok(Self {
                    _child: guard,
                    port,
                });
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer in 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// Runs nginx from `deploy/nginx/gatehouse.conf` (auth_request in front of
/// the upstream) next to a plain nginx server block proxying to the same
/// upstream without auth, and measures both.
fn nginx_rows(
    gatehouse_port: u16,
    upstream: SocketAddr,
    cookie: &str,
    load: &Load,
) -> BoxResult<Vec<(String, WrkResult)>> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or("nginx not found: apt-get install -y nginx")?;
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    let (auth_port, plain_port) = (free_port()?, free_port()?);
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/nginx/gatehouse.conf"
    ))?;
    // the whole deploy file: its first server block is the protected app
    // (the default server on its port), the second the central sign-in host
    let protected = template
        .replace("listen 80;", &format!("listen 127.0.0.1:{auth_port};"))
        .replace("127.0.0.1:4180", &format!("127.0.0.1:{gatehouse_port}"))
        .replace("127.0.0.1:8080", &upstream.to_string());
    let conf = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
         uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{ listen 127.0.0.1:{plain_port}; location / {{ proxy_pass http://{upstream}; }} }}\n\
         {protected}\n}}\n",
        d = dir.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new(nginx)
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &conf_path.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let _nginx = NginxGuard(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", auth_port)).is_err() {
        if Instant::now() > deadline {
            return Err("nginx did not start".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let plain = load.wrk(&format!("http://127.0.0.1:{plain_port}/"), None)?;
    let through = load.wrk(&format!("http://127.0.0.1:{auth_port}/"), Some(cookie))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![
        ("nginx, no auth".to_owned(), plain),
        (
            "nginx auth_request + gatehouse /oauth2/auth".to_owned(),
            through,
        ),
    ])
}

#[expect(clippy::print_stdout, reason = "the benchmark's report is its output")]
fn emit(s: &str) {
    println!("{s}");
}

/// `100000` -> `100,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> BoxResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A fast upstream: the same 1 KiB page for every request.
async fn start_upstream() -> BoxResult<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let page = Bytes::from(format!("<!doctype html><p>{}</p>", "x".repeat(1000)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let page = page.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let page = page.clone();
                    async move {
                        let mut r = Response::new(Full::new(page));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            "text/html"
                                .parse()
                                .unwrap_or(header::HeaderValue::from_static("text/html")),
                        );
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn wait_ready(base: &str) -> BoxResult<()> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/ready").parse()?).await
            && r.status() == StatusCode::OK
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("gatehouse did not become ready in 20 s".into())
}

/// Follows the login redirects by hand and returns the `Cookie` header value
/// that carries the session, and the bytes of its Set-Cookie `name=value`
/// parts.
async fn sign_in(base: &str) -> BoxResult<(String, usize)> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut url = format!("{base}/");
    let mut cookies: Vec<(String, String)> = Vec::new();
    for _ in 0..6 {
        let header_value = cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut req = Request::get(&url).header(header::ACCEPT, "text/html");
        if !header_value.is_empty() {
            req = req.header(header::COOKIE, header_value);
        }
        let resp = client.request(req.body(Empty::new())?).await?;
        for sc in resp.headers().get_all(header::SET_COOKIE) {
            let c = cookie::Cookie::parse(sc.to_str()?.to_owned())?;
            cookies.retain(|(n, _)| n != c.name());
            if !c.value().is_empty() {
                cookies.push((c.name().to_owned(), c.value().to_owned()));
            }
        }
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().map(str::to_owned));
        let _ = resp.into_body().collect().await?;
        match (status, location) {
            (StatusCode::FOUND, Some(loc)) => {
                let loc = loc?;
                url = if loc.starts_with('/') {
                    format!("{base}{loc}")
                } else {
                    loc
                };
            }
            (StatusCode::OK, _) => {
                let session: Vec<String> = cookies
                    .iter()
                    .filter(|(n, _)| n.starts_with("_gatehouse") && !n.contains("_csrf_"))
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect();
                let bytes = session.iter().map(String::len).sum();
                return Ok((session.join("; "), bytes));
            }
            (s, _) => return Err(format!("sign-in stopped at {url} with {s}").into()),
        }
    }
    Err("sign-in did not finish in 6 redirects".into())
}

struct WrkResult {
    rps: f64,
    p99: String,
    non_2xx: u64,
}

/// The wrk settings of every row.
struct Load {
    threads: u64,
    connections: u64,
    secs: u64,
}

impl Load {
    fn wrk(&self, url: &str, cookie: Option<&str>) -> BoxResult<WrkResult> {
        wrk(url, cookie, self)
    }
}

fn wrk(url: &str, cookie: Option<&str>, load: &Load) -> BoxResult<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &load.threads.to_string(),
        "-c",
        &load.connections.to_string(),
        "-d",
        &format!("{}s", load.secs),
        "--latency",
    ]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    let out = cmd.arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map_or_else(|| "?".to_owned(), |v| v.trim().to_owned());
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(WrkResult { rps, p99, non_2xx })
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn sample_rss(pid: u32, over: Duration) -> u64 {
    let end = Instant::now() + over;
    let mut max = 0;
    while Instant::now() < end {
        max = max.max(rss_kib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    max
}
