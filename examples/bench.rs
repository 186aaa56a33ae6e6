//! `make bench`: requests/s, p99 latency and memory of a signed-in GET
//! through gatehouse, next to the same upstream reached directly, in one run.
//!
//! Run it with `make bench` (needs `wrk`: `apt-get install -y wrk`). It starts
//! a small upstream (a 1 KiB page) and the mock OpenID provider in this
//! process, starts the release `gatehouse` binary as a child process, signs
//! in once to get a session cookie, then runs `wrk` against the upstream
//! directly and against gatehouse with that cookie, sampling gatehouse's RSS
//! while it is under load. It prints one Markdown table. Knobs (env vars):
//! `BENCH_DURATION` (seconds, default 10), `BENCH_CONNECTIONS` (default 64),
//! `BENCH_THREADS` (default 2), `GATEHOUSE_BIN` (default
//! `target/release/gatehouse`).

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
    let bin = std::env::var("GATEHOUSE_BIN").unwrap_or_else(|_e| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/gatehouse").to_owned()
    });
    if Command::new("wrk").arg("--version").output().is_err() {
        return Err("wrk not found: install it with `apt-get install -y wrk`".into());
    }

    let upstream = start_upstream().await?;
    let idp = idp::MockIdp::try_start(idp::IdpOptions::auto_approving("alice")).await?;
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(&bin)
        .args(["--http-address", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("http://{upstream}")])
        .args(["--oidc-issuer-url", &idp.issuer()])
        .args(["--client-id", "gatehouse", "--client-secret", "s3cret"])
        .args(["--redirect-url", &format!("{base}/oauth2/callback")])
        .args([
            "--cookie-secret",
            "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtMzI=",
        ])
        .args([
            "--cookie-secure=false",
            "--email-domain",
            "*",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e} (run `cargo build --release` first)"))?;
    let child = ChildGuard(child);
    let pid = child.0.id();
    wait_ready(&base).await?;
    let cookie = sign_in(&base).await?;
    let idle_rss = rss_kib(pid, "VmRSS:");

    let direct = wrk(
        &format!("http://{upstream}/"),
        None,
        threads,
        connections,
        duration,
    )?;
    let sampler = tokio::spawn(sample_rss(pid, Duration::from_secs(duration)));
    let proxied = wrk(
        &format!("{base}/"),
        Some(&cookie),
        threads,
        connections,
        duration,
    )?;
    let peak_under_load = sampler.await.unwrap_or(0);
    let hwm = rss_kib(pid, "VmHWM:");
    let mut rows = vec![
        ("upstream direct", direct),
        ("through gatehouse (signed in)", proxied),
    ];
    let auth = wrk(
        &format!("{base}/oauth2/auth"),
        Some(&cookie),
        threads,
        connections,
        duration,
    )?;
    rows.push(("gatehouse /oauth2/auth asked directly", auth));
    match nginx_rows(port, upstream, &cookie, threads, connections, duration) {
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
        "{table}\ngatehouse RSS: idle {idle_rss} KiB, under load (max sampled) {peak_under_load} KiB, \
         peak (VmHWM) {hwm} KiB\nwrk -t{threads} -c{connections} -d{duration}s, 1 KiB upstream page, \
         log level warn, on {} cores\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    ));
    drop(child);
    if rows.iter().any(|(_, r)| r.non_2xx > 0) {
        return Err("some requests were not 2xx: the session did not hold".into());
    }
    Ok(())
}

/// Runs nginx from `deploy/nginx/gatehouse.conf` (auth_request in front of
/// the upstream) next to a plain nginx server block proxying to the same
/// upstream without auth, and measures both.
fn nginx_rows(
    gatehouse_port: u16,
    upstream: SocketAddr,
    cookie: &str,
    threads: u64,
    connections: u64,
    duration: u64,
) -> BoxResult<Vec<(&'static str, WrkResult)>> {
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
    let plain = wrk(
        &format!("http://127.0.0.1:{plain_port}/"),
        None,
        threads,
        connections,
        duration,
    )?;
    let through = wrk(
        &format!("http://127.0.0.1:{auth_port}/"),
        Some(cookie),
        threads,
        connections,
        duration,
    )?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![
        ("nginx, no auth", plain),
        ("nginx auth_request + gatehouse /oauth2/auth", through),
    ])
}

#[expect(clippy::print_stdout, reason = "the benchmark's report is its output")]
fn emit(s: &str) {
    println!("{s}");
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
/// that carries the session.
async fn sign_in(base: &str) -> BoxResult<String> {
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
                return Ok(session.join("; "));
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

fn wrk(
    url: &str,
    cookie: Option<&str>,
    threads: u64,
    connections: u64,
    secs: u64,
) -> BoxResult<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t",
        &threads.to_string(),
        "-c",
        &connections.to_string(),
        "-d",
        &format!("{secs}s"),
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
