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
//! (default 2), `BENCH_REVOCATIONS` (default 100000), `BENCH_ONLY=symbol-order`
//! (remakes `src/symbol-order.txt`, see [`symbol_order`]), `BENCH_ONLY=memory`
//! (the memory figures alone), `GATEHOUSE_BIN`
//! (default `target/release/gatehouse`), `BENCH_HOLD` (seconds: measure
//! nothing, hold one signed-in child for a profiler, see [`hold_one`]).

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
#[path = "../../tests/support/idp.rs"]
mod idp;
mod symbol_order;

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
    let rounds: usize = usize::try_from(env_or("BENCH_ROUNDS", 3))
        .unwrap_or(3)
        .max(1);
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
        prefix: Vec::new(),
    };
    let hold = env_or("BENCH_HOLD", 0);
    if hold > 0 {
        return hold_one(&bench, hold).await;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("symbol-order") {
        return symbol_order::write(&bench).await;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("memory") {
        // the memory figures alone (with BENCH_SOAK_SECS=300: the 5-minute
        // soak without the 8 minutes of throughput rows)
        let plain = bench.start(&[]).await?;
        emit(&memory_figures(&plain, &load).await?.describe());
        return Ok(());
    }
    let mut notes = Vec::new();
    let mut skipped = Vec::new();

    // every target of the main comparison runs once per round, in the same
    // order, so drift over the run touches them all alike; the median counts
    let plain = bench.start(&[]).await?;
    let log = std::env::temp_dir().join(format!("gatehouse-bench-{}.log", std::process::id()));
    let logged = bench.start_with(&[], Some(&log)).await?;
    let routes_file = std::env::temp_dir().join(format!(
        "gatehouse-bench-routes-{}.toml",
        std::process::id()
    ));
    std::fs::write(&routes_file, fifty_routes())?;
    let routed = bench
        .start(&["--config", &routes_file.display().to_string()])
        .await?;
    // the signed-in GET again, with Prometheus metrics recorded
    let metered = bench.start(&["--metrics-address", "127.0.0.1:0"]).await?;
    let bare = match BareProxy::start(upstream, "proxy") {
        Ok(b) => Some(b),
        Err(e) => {
            skipped.push(format!("bare proxy: {e}"));
            None
        }
    };
    // the same hop's least possible auth check (a cookie decrypted, 202),
    // behind nginx with the deploy file: what any auth server costs there
    let bare_check = BareProxy::start(upstream, "auth-check")
        .and_then(|b| Ok((b.mint()?, b)))
        .ok();
    let nginx = match Nginx::start(plain.port, bare_check.as_ref().map(|b| b.1.port), upstream) {
        Ok(n) => Some(n),
        Err(e) => {
            skipped.push(format!("nginx rows: {e}"));
            None
        }
    };
    let mut targets: Vec<(&str, String, Option<&str>)> =
        vec![(DIRECT, format!("http://{upstream}/"), None)];
    if let Some(b) = &bare {
        targets.push((BARE, format!("http://127.0.0.1:{}/", b.port), None));
        // the very request gatehouse gets: the bare proxy reads the cookie's
        // kilobytes too (and passes them upstream, where gatehouse strips them)
        targets.push((
            BARE_COOKIE,
            format!("http://127.0.0.1:{}/", b.port),
            Some(&plain.cookie),
        ));
    }
    if let Some(n) = &nginx {
        targets.push((NGINX, format!("http://127.0.0.1:{}/", n.plain), None));
        targets.push((
            NGINX_LOG,
            format!("http://127.0.0.1:{}/", n.plain_logged),
            None,
        ));
        // the very request gatehouse gets, as for the bare proxy: nginx
        // reads the cookie's kilobytes and passes them upstream
        targets.push((
            NGINX_LOG_COOKIE,
            format!("http://127.0.0.1:{}/", n.plain_logged),
            Some(&plain.cookie),
        ));
    }
    targets.push((GH, format!("{}/", plain.base), Some(&plain.cookie)));
    targets.push((
        GH_METRICS,
        format!("{}/", metered.base),
        Some(&metered.cookie),
    ));
    targets.push((GH_LOG, format!("{}/", logged.base), Some(&logged.cookie)));
    targets.push((GH_ROUTES, format!("{}/", routed.base), Some(&routed.cookie)));
    targets.push((
        GH_AUTH,
        format!("{}/oauth2/auth", plain.base),
        Some(&plain.cookie),
    ));
    if let Some(n) = &nginx {
        targets.push((
            NGINX_AUTH_STATIC,
            format!("http://127.0.0.1:{}/", n.auth_static),
            None,
        ));
        targets.push((
            NGINX_AUTH_GH,
            format!("http://127.0.0.1:{}/", n.auth_gatehouse),
            Some(&plain.cookie),
        ));
        if let (Some(port), Some((cookie, _))) = (n.auth_bare, &bare_check) {
            targets.push((
                NGINX_AUTH_BARE,
                format!("http://127.0.0.1:{port}/"),
                Some(cookie.as_str()),
            ));
        }
    }
    let mut runs: Vec<Vec<WrkResult>> = targets.iter().map(|_| Vec::new()).collect();
    let mut rss = Vec::new();
    for round in 0..rounds {
        // every other round backwards: a target's place in the round (what
        // ran just before it, the page cache's writeback of a logging
        // target's file) then weighs on each pair compared alike
        let order: Vec<usize> = if round % 2 == 0 {
            (0..targets.len()).collect()
        } else {
            (0..targets.len()).rev().collect()
        };
        for i in order {
            let Some((name, url, cookie)) = targets.get(i) else {
                continue;
            };
            settle();
            // gatehouse's memory under load, sampled in the first round
            let pid = match *name {
                GH => Some(plain.child.0.id()),
                GH_LOG => Some(logged.child.0.id()),
                GH_ROUTES => Some(routed.child.0.id()),
                _ => None,
            }
            .filter(|_| round == 0);
            let sampler =
                pid.map(|pid| tokio::spawn(sample_rss(pid, Duration::from_secs(load.secs))));
            runs[i].push(load.wrk(url, *cookie)?);
            if let Some(s) = sampler {
                rss.push((*name, s.await.unwrap_or(0)));
            }
        }
    }
    let medians: Vec<(String, Median)> = targets
        .iter()
        .zip(&runs)
        .map(|((name, _, _), r)| ((*name).to_owned(), Median::of(r)))
        .collect();
    let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    notes.push(format!(
        "access log on: {lines} JSON lines written to a file over the run"
    ));
    for (name, kib) in &rss {
        notes.push(format!("{name}: RSS under load (max sampled) {kib} KiB"));
    }
    // idle RSS is mostly the code laid out by this list: a stale one shows
    notes.push(match symbol_order::coverage(&bench.bin) {
        Some((found, listed)) => format!(
            "code layout: {found} of the {listed} functions in src/symbol-order.txt are in the binary \
             (`make symbol-order` remakes the list)"
        ),
        None => "code layout: no src/symbol-order.txt or no `nm`: idle RSS is not representative".to_owned(),
    });
    let get = |name: &str| medians.iter().find(|(n, _)| n == name).map(|(_, m)| m.rps);
    if let (Some(on), Some(off)) = (get(GH_METRICS), get(GH)) {
        notes.push(format!(
            "metrics on / off, signed-in GET: {:.2}x requests/s (informational, no target)",
            on / off.max(1.0)
        ));
    }
    drop(metered);
    drop(routed);
    drop(logged);
    drop(nginx);
    drop(bare);
    drop(bare_check);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&routes_file);

    // memory: idle, per held keep-alive connection, while streaming, soak
    let memory = memory_figures(&plain, &load).await?;

    let mut extra_rows = Vec::new();
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        let (more, mut more_notes) = redis_rows(&bench, &load, revocations).await?;
        extra_rows.extend(more);
        notes.append(&mut more_notes);
    } else {
        skipped.push("Redis rows: redis-server not found: apt-get install -y redis-server".into());
    }

    let mut table = String::from(
        "| target | requests/s (median) | spread (min-max) | p99 (median) | non-2xx |\n|---|---|---|---|---|\n",
    );
    for (name, m) in &medians {
        table.push_str(&format!(
            "| {name} | {:.0} | {:.1}% | {:.2} ms | {} |\n",
            m.rps, m.spread_pct, m.p99_ms, m.non_2xx
        ));
    }
    for (name, r) in &extra_rows {
        table.push_str(&format!(
            "| {name} (one run) | {:.0} | - | {:.2} ms | {} |\n",
            r.rps, r.p99_ms, r.non_2xx
        ));
    }
    let checks = checks(&medians, &memory);
    let mut verdicts = String::from("| target | measured | wanted | |\n|---|---|---|---|\n");
    for c in &checks {
        verdicts.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            c.what,
            c.measured,
            c.wanted,
            match c.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None if c.wanted.starts_with('(') => "",
                None => "not measured",
            }
        ));
    }
    emit(&format!(
        "{table}\n{verdicts}\n{}\n{}\nwrk -t{threads} -c{connections} -d{duration}s, {rounds} rounds, \
         1 KiB upstream page, gatehouse log level warn unless the row says so, on {} cores\n",
        notes.join("\n"),
        memory.describe(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    ));
    for s in &skipped {
        emit(&format!("(skipped: {s})"));
    }
    let json = serde_json::json!({
        "rounds": rounds,
        "wrk": {"threads": threads, "connections": connections, "seconds": duration},
        "rows": medians.iter().map(|(n, m)| serde_json::json!({
            "target": n, "rps_median": m.rps, "spread_pct": m.spread_pct,
            "p99_ms_median": m.p99_ms, "non_2xx": m.non_2xx,
            "rps_rounds": m.all.clone(),
        })).collect::<Vec<_>>(),
        "one_run_rows": extra_rows.iter().map(|(n, r)| serde_json::json!({
            "target": n, "rps": r.rps, "p99_ms": r.p99_ms, "non_2xx": r.non_2xx,
        })).collect::<Vec<_>>(),
        "memory_kib": {
            "idle": memory.idle, "idle_anonymous": memory.idle_anon, "per_idle_connection": memory.per_connection,
            "held_connections": memory.held, "streaming_max": memory.streaming_max,
            "streaming_before": memory.streaming_before, "streamed_mib": memory.streamed_mib,
            "soak_first": memory.soak.map(|s| s.0), "soak_last": memory.soak.map(|s| s.1),
        },
        "checks": checks.iter().map(|c| serde_json::json!({
            "what": c.what, "measured": c.measured, "wanted": c.wanted, "pass": c.pass,
        })).collect::<Vec<_>>(),
        "skipped": skipped,
    });
    let out = std::env::var("BENCH_JSON")
        .unwrap_or_else(|_e| concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench.json").to_owned());
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    emit(&format!("(JSON result written to {out})"));
    drop(plain);
    let bad =
        medians.iter().any(|(_, m)| m.non_2xx > 0) || extra_rows.iter().any(|(_, r)| r.non_2xx > 0);
    if bad {
        return Err("some requests were not 2xx: the session did not hold".into());
    }
    Ok(())
}

const DIRECT: &str = "upstream direct";
const BARE: &str = "bare hyper proxy (no auth)";
const BARE_COOKIE: &str = "bare hyper proxy (no auth), sent gatehouse's session cookie too";
const NGINX: &str = "nginx proxy, no auth, access log off";
const NGINX_LOG: &str = "nginx proxy, no auth, access log on";
const NGINX_LOG_COOKIE: &str =
    "nginx proxy, no auth, access log on, sent gatehouse's session cookie too";
const GH: &str = "gatehouse, signed in, access log off";
const GH_LOG: &str = "gatehouse, signed in, access log on (JSON to a file)";
const GH_ROUTES: &str = "gatehouse, signed in, 50 routes configured (none matches)";
const GH_METRICS: &str = "gatehouse, signed in, access log off, metrics on";
const GH_AUTH: &str = "gatehouse /oauth2/auth asked directly";
const NGINX_AUTH_STATIC: &str = "nginx auth_request to a static 202";
const NGINX_AUTH_GH: &str = "nginx auth_request to gatehouse /oauth2/auth";
const NGINX_AUTH_BARE: &str =
    "nginx auth_request to the bare proxy's auth-check (reference: a minimal auth server)";

/// The median of a target's rounds.
struct Median {
    rps: f64,
    /// (max - min) / median, in percent.
    spread_pct: f64,
    p99_ms: f64,
    non_2xx: u64,
    all: Vec<f64>,
}

impl Median {
    fn of(runs: &[WrkResult]) -> Self {
        let mut rps: Vec<f64> = runs.iter().map(|r| r.rps).collect();
        rps.sort_by(f64::total_cmp);
        let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
        p99.sort_by(f64::total_cmp);
        let mid = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
        let median = mid(&rps);
        let spread = match (rps.first(), rps.last()) {
            (Some(lo), Some(hi)) if median > 0.0 => (hi - lo) / median * 100.0,
            _ => 0.0,
        };
        Self {
            rps: median,
            spread_pct: spread,
            p99_ms: mid(&p99),
            non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
            all: runs.iter().map(|r| r.rps).collect(),
        }
    }
}

/// One target of issue 13 and how the run did against it.
struct Check {
    what: String,
    measured: String,
    wanted: String,
    pass: Option<bool>,
}

fn checks(rows: &[(String, Median)], mem: &Memory) -> Vec<Check> {
    let get = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, m)| m);
    let ratio = |what: &str, a: &str, b: &str, min: f64| {
        let r = match (get(a), get(b)) {
            (Some(a), Some(b)) if b.rps > 0.0 => Some(a.rps / b.rps),
            _ => None,
        };
        Check {
            what: what.to_owned(),
            measured: r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
            wanted: format!(">= {min:.2}x"),
            pass: r.map(|r| r >= min),
        }
    };
    let mut out = vec![
        ratio("gatehouse (log on) / bare hyper proxy", GH_LOG, BARE, 0.95),
        ratio(
            "gatehouse (log on) / nginx (log on)",
            GH_LOG,
            NGINX_LOG,
            1.0,
        ),
        ratio("gatehouse (log off) / bare hyper proxy", GH, BARE, 1.0),
        ratio(
            "nginx auth_request: gatehouse / static 202",
            NGINX_AUTH_GH,
            NGINX_AUTH_STATIC,
            0.9,
        ),
        ratio("gatehouse, 50 routes / no routes", GH_ROUTES, GH, 0.97),
    ];
    // no target: the proxies sent the very request gatehouse gets (its
    // 1.7 KB session cookie), and how far a minimal auth server gets behind
    // the same nginx file, so the rows above can be read against them
    for (what, a, b) in [
        (
            "gatehouse (log off) / bare hyper proxy sent the same request (session cookie)",
            GH,
            BARE_COOKIE,
        ),
        (
            "gatehouse (log on) / nginx (log on) sent the same request (session cookie)",
            GH_LOG,
            NGINX_LOG_COOKIE,
        ),
        (
            "nginx auth_request: bare auth-check / static 202 (reference)",
            NGINX_AUTH_BARE,
            NGINX_AUTH_STATIC,
        ),
        (
            "nginx auth_request: gatehouse / bare auth-check (reference)",
            NGINX_AUTH_GH,
            NGINX_AUTH_BARE,
        ),
    ] {
        let mut c = ratio(what, a, b, 0.0);
        c.wanted = "(informational)".to_owned();
        c.pass = None;
        if c.measured != "-" {
            out.push(c);
        }
    }
    let p99 = match (get(GH_LOG), get(NGINX_LOG)) {
        (Some(g), Some(n)) => Some((g.p99_ms, n.p99_ms)),
        _ => None,
    };
    out.push(Check {
        what: "p99 gatehouse (log on) vs nginx (log on)".to_owned(),
        measured: p99.map_or_else(|| "-".to_owned(), |(g, n)| format!("{g:.2} vs {n:.2} ms")),
        wanted: "no worse".to_owned(),
        pass: p99.map(|(g, n)| g <= n),
    });
    let kib = |what: &str, v: Option<u64>, max: u64| Check {
        what: what.to_owned(),
        measured: v.map_or_else(|| "-".to_owned(), |v| format!("{v} KiB")),
        wanted: format!("<= {max} KiB"),
        pass: v.map(|v| v <= max),
    };
    out.push(kib("RSS idle", Some(mem.idle), 10 * 1024));
    out.push(Check {
        what: "RSS idle, anonymous part (heap, stacks; not the mapped binary)".to_owned(),
        measured: format!("{} KiB", mem.idle_anon),
        wanted: "(informational)".to_owned(),
        pass: None,
    });
    out.push(kib(
        "RSS per idle keep-alive connection",
        mem.per_connection,
        12,
    ));
    out.push(Check {
        what: format!("RSS while streaming {} MiB each way", mem.streamed_mib),
        measured: mem.streaming_max.map_or_else(
            || "-".to_owned(),
            |m| format!("{} -> {m} KiB", mem.streaming_before),
        ),
        wanted: "constant (< +16 MiB)".to_owned(),
        pass: mem
            .streaming_max
            .map(|m| m <= mem.streaming_before + 16 * 1024),
    });
    out.push(Check {
        what: "RSS over a long load (first vs last minute)".to_owned(),
        measured: mem.soak.map_or_else(
            || "- (set BENCH_SOAK_SECS=300)".to_owned(),
            |(a, b)| format!("{a} -> {b} KiB"),
        ),
        wanted: "flat (< +5%)".to_owned(),
        pass: mem.soak.map(|(a, b)| b * 100 <= a * 105),
    });
    out
}

/// gatehouse's memory, measured on one child.
struct Memory {
    idle: u64,
    idle_anon: u64,
    held: usize,
    per_connection: Option<u64>,
    streamed_mib: u64,
    streaming_before: u64,
    streaming_max: Option<u64>,
    /// Max RSS over the first and over the last minute of a long load.
    soak: Option<(u64, u64)>,
}

impl Memory {
    fn describe(&self) -> String {
        format!(
            "memory: RSS idle {} KiB ({} KiB anonymous, the rest the binary's mapped code); {} idle keep-alive connections held: {}; streaming {} MiB \
             each way: {} KiB before, {} max; long load: {}",
            self.idle,
            self.idle_anon,
            self.held,
            self.per_connection
                .map_or_else(|| "not measured".to_owned(), |k| format!("{k} KiB each")),
            self.streamed_mib,
            self.streaming_before,
            self.streaming_max
                .map_or_else(|| "not measured".to_owned(), |k| format!("{k} KiB")),
            self.soak.map_or_else(
                || "not measured (BENCH_SOAK_SECS)".to_owned(),
                |(a, b)| format!("{a} KiB first minute, {b} KiB last minute")
            ),
        )
    }
}

/// Idle RSS, then RSS with `BENCH_IDLE_CONNECTIONS` (1000) keep-alive
/// connections held after one request each, then while streaming
/// `BENCH_STREAM_MIB` (1024) up and down, then over `BENCH_SOAK_SECS` of
/// load (0: skipped).
async fn memory_figures(g: &Gatehouse, load: &Load) -> BoxResult<Memory> {
    use std::io::{Read as _, Write as _};
    let pid = g.child.0.id();
    // idle as started (signed in once), before any load touched it
    let idle = g.idle_rss;
    let idle_anon = g.idle_anon;
    let held = usize::try_from(env_or("BENCH_IDLE_CONNECTIONS", 1000)).unwrap_or(1000);
    let before = rss_kib(pid, "VmRSS:");
    let mut conns = Vec::with_capacity(held);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {}\r\n\r\n",
        g.port, g.cookie
    );
    let mut ok = true;
    for _ in 0..held {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", g.port)) else {
            ok = false;
            break;
        };
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        c.write_all(request.as_bytes())?;
        // read the whole answer (a 1 KiB page): head and body arrive together
        let mut buf = [0_u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"</p>") {
            let n = c.read(&mut buf)?;
            if n == 0 {
                ok = false;
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if !got.starts_with(b"HTTP/1.1 200") {
            ok = false;
        }
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = rss_kib(pid, "VmRSS:");
    let per_connection = (ok && held > 0).then(|| {
        with.saturating_sub(before)
            .div_ceil(u64::try_from(held).unwrap_or(1))
    });
    drop(conns);

    let streamed_mib = env_or("BENCH_STREAM_MIB", 1024);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let streaming_before = rss_kib(pid, "VmRSS:");
    let streaming_max = match stream_peak(&g.base, &g.cookie, streamed_mib, pid).await {
        Ok(max) => Some(max),
        Err(e) => {
            emit(&format!("(streaming not measured: {e})"));
            None
        }
    };

    let soak_secs = env_or("BENCH_SOAK_SECS", 0);
    let soak = if soak_secs >= 120 {
        let samples = tokio::spawn(async move {
            let mut v = Vec::new();
            let end = Instant::now() + Duration::from_secs(soak_secs);
            while Instant::now() < end {
                v.push(rss_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            v
        });
        let soak_load = Load {
            threads: load.threads,
            connections: load.connections,
            secs: soak_secs,
        };
        soak_load.wrk(&format!("{}/", g.base), Some(&g.cookie))?;
        let v = samples.await.unwrap_or_default();
        let first = v.iter().take(60).copied().max().unwrap_or(0);
        let last = v.iter().rev().take(60).copied().max().unwrap_or(0);
        Some((first, last))
    } else {
        None
    };
    Ok(Memory {
        idle,
        idle_anon,
        held,
        per_connection,
        streamed_mib,
        streaming_before,
        streaming_max,
        soak,
    })
}

/// Uploads `mib` MiB to the upstream's sink and downloads as much, through
/// gatehouse; returns the highest RSS sampled meanwhile.
async fn stream_peak(base: &str, cookie: &str, mib: u64, pid: u32) -> BoxResult<u64> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(rss_kib(pid, "VmRSS:"));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        max
    });
    let r = stream_both_ways(base, cookie, mib).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max = sampler.await.unwrap_or(0);
    r.map(|()| max)
}

/// `mib` MiB up (`POST /sink`) and down (`GET /source?mib=N`).
async fn stream_both_ways(base: &str, cookie: &str, mib: u64) -> BoxResult<()> {
    use futures_util::stream;
    let client: Client<HttpConnector, http_body_util::StreamBody<_>> =
        Client::builder(TokioExecutor::new()).build_http();
    let chunk = Bytes::from(vec![b'u'; 1 << 20]);
    let chunks = stream::iter(
        (0..mib).map(move |_| Ok::<_, Infallible>(hyper::body::Frame::data(chunk.clone()))),
    );
    let up = Request::post(format!("{base}/sink"))
        .header(header::COOKIE, cookie)
        .body(http_body_util::StreamBody::new(chunks))?;
    let resp = client.request(up).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK || body.as_ref() != (mib << 20).to_string().as_bytes() {
        return Err(format!("upload answered {status} {body:?}").into());
    }
    let down: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("{base}/source?mib={mib}"))
        .header(header::COOKIE, cookie)
        .body(Empty::new())?;
    let mut body = down.request(req).await?.into_body();
    let mut got = 0_u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            got += d.len() as u64;
        }
    }
    if got != mib << 20 {
        return Err(format!("downloaded {got} bytes, not {}", mib << 20).into());
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

/// `BENCH_HOLD=secs`: one signed-in gatehouse child (with the arguments in
/// `BENCH_HOLD_ARGS`, split on spaces), its pid, address and session cookie
/// printed as `pid base cookie`, kept for `secs` seconds, for a profiler to
/// attach to (`GATEHOUSE_BIN` may name a wrapper such as `valgrind
/// --tool=callgrind .../gatehouse "$@"`).
async fn hold_one(bench: &Bench, secs: u64) -> BoxResult<()> {
    let args = std::env::var("BENCH_HOLD_ARGS").unwrap_or_default();
    let extra: Vec<&str> = args.split_whitespace().collect();
    let g = bench.start(&extra).await?;
    emit(&format!("{} {} {}", g.child.0.id(), g.base, g.cookie));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}

/// What every gatehouse child of the run shares.
struct Bench {
    bin: String,
    upstream: SocketAddr,
    issuer: String,
    /// Random per run (gatehouse refuses a published one), shared by the
    /// children so one's session cookie is read by the next.
    cookie_secret: String,
    /// A program and its arguments that run gatehouse (a tracer); empty:
    /// gatehouse is run itself.
    prefix: Vec<String>,
}

impl Bench {
    /// The same children, each run by `prefix` (a program and its arguments).
    fn wrapped(&self, prefix: Vec<String>) -> Self {
        Self {
            bin: self.bin.clone(),
            upstream: self.upstream,
            issuer: self.issuer.clone(),
            cookie_secret: self.cookie_secret.clone(),
            prefix,
        }
    }

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
        let mut command = match self.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = command
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
        let idle_anon = rss_kib(child.0.id(), "RssAnon:");
        Ok(Gatehouse {
            child,
            port,
            base,
            cookie,
            cookie_bytes,
            idle_rss,
            idle_anon,
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
    /// The anonymous part of `idle_rss` (heap, stacks): the rest is the
    /// binary's code and data mapped from its file (clean, reclaimable,
    /// shared with the page cache).
    idle_anon: u64,
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

/// nginx with four servers: a plain proxy to the upstream with the access
/// log off and one with it on, `deploy/nginx/gatehouse.conf` (auth_request
/// to gatehouse in front of the upstream), and the same auth_request
/// answered by nginx itself with a static 202. One worker per core.
struct Nginx {
    _child: NginxGuard,
    dir: std::path::PathBuf,
    plain: u16,
    plain_logged: u16,
    auth_gatehouse: u16,
    auth_static: u16,
    /// The deploy file again, asking the bare proxy's auth-check.
    auth_bare: Option<u16>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nginx {
    fn start(
        gatehouse_port: u16,
        bare_check_port: Option<u16>,
        upstream: SocketAddr,
    ) -> BoxResult<Self> {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .ok_or("nginx not found: apt-get install -y nginx")?;
        let dir =
            std::env::temp_dir().join(format!("gatehouse-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs"))?;
        let (auth_gatehouse, plain, plain_logged, auth_static) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let auth_bare = match bare_check_port {
            Some(_) => Some(free_port()?),
            None => None,
        };
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/nginx/gatehouse.conf"
        ))?;
        // the whole deploy file: its first server block is the protected app
        // (the default server on its port), the second the central sign-in host
        let protected = template
            .replace("listen 80;", &format!("listen 127.0.0.1:{auth_gatehouse};"))
            .replace("127.0.0.1:4180", &format!("127.0.0.1:{gatehouse_port}"))
            .replace("127.0.0.1:8080", &upstream.to_string());
        // the same file in front of the bare auth-check: its upstream
        // blocks renamed, as nginx wants every name once
        let bare = match (bare_check_port, auth_bare) {
            (Some(check), Some(listen)) => template
                .replace("listen 80;", &format!("listen 127.0.0.1:{listen};"))
                .replace("127.0.0.1:4180", &format!("127.0.0.1:{check}"))
                .replace("127.0.0.1:8080", &upstream.to_string())
                .replace("upstream gatehouse {", "upstream bare_check {")
                .replace("http://gatehouse;", "http://bare_check;")
                .replace("upstream application {", "upstream bare_application {")
                .replace("http://application;", "http://bare_application;"),
            _ => String::new(),
        };
        let conf = format!(
            "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 4096; }}\nhttp {{\n access_log off;\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;\n\
             uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             upstream app {{ server {upstream}; keepalive 64; }}\n\
             server {{ listen 127.0.0.1:{plain}; location / {{ proxy_pass http://app; \
             proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n\
             server {{ listen 127.0.0.1:{plain_logged}; access_log {d}/logs/access.log; \
             location / {{ proxy_pass http://app; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }} }}\n\
             server {{ listen 127.0.0.1:{auth_static}; location = /auth202 {{ internal; return 202; }} \
             location / {{ auth_request /auth202; proxy_pass http://app; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }} }}\n\
             {protected}\n{bare}\n}}\n",
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
        let guard = NginxGuard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in [auth_gatehouse, plain, plain_logged, auth_static]
            .into_iter()
            .chain(auth_bare)
        {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    return Err("nginx did not start".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Self {
            _child: guard,
            dir,
            plain,
            plain_logged,
            auth_gatehouse,
            auth_static,
            auth_bare,
        })
    }
}

/// `../shared/bench/bare-proxy` in mode `proxy`: one Rust proxy hop with no
/// auth. `make bench` builds it into `target/bare-proxy`; `BARE_PROXY_BIN`
/// names another build.
struct BareProxy {
    _child: ChildGuard,
    bin: String,
    port: u16,
}

impl BareProxy {
    /// In `mode` (`proxy`, `auth-check`).
    fn start(upstream: SocketAddr, mode: &str) -> BoxResult<Self> {
        let bin = std::env::var("BARE_PROXY_BIN").unwrap_or_else(|_e| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/bare-proxy/release/bare-proxy"
            )
            .to_owned()
        });
        if !std::path::Path::new(&bin).exists() {
            return Err(format!("{bin} not built (make bench builds it)").into());
        }
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("http://{upstream}")])
            .args(["--mode", mode])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let guard = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("bare-proxy did not start".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            _child: guard,
            bin,
            port,
        })
    }

    /// `bare_session=<a session cookie its auth modes accept>`.
    fn mint(&self) -> BoxResult<String> {
        let out = Command::new(&self.bin).arg("mint").output()?;
        let value = String::from_utf8(out.stdout)?.trim().to_owned();
        if !out.status.success() || value.is_empty() {
            return Err("bare-proxy mint printed no cookie".into());
        }
        Ok(format!("bare_session={value}"))
    }
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
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let page = page.clone();
                    async move {
                        if req.uri().path() == "/sink" {
                            // counts what was streamed up, keeps none of it
                            let mut body = req.into_body();
                            let mut n = 0_u64;
                            while let Some(Ok(f)) = body.frame().await {
                                if let Ok(d) = f.into_data() {
                                    n += d.len() as u64;
                                }
                            }
                            return Ok::<_, Infallible>(Response::new(
                                Full::new(Bytes::from(n.to_string())).boxed(),
                            ));
                        }
                        if req.uri().path() == "/source" {
                            let mib: u64 = req
                                .uri()
                                .query()
                                .and_then(|q| q.strip_prefix("mib="))
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(1);
                            let chunk = Bytes::from(vec![b'd'; 1 << 20]);
                            let frames = futures_util::stream::iter((0..mib).map(move |_| {
                                Ok::<_, Infallible>(hyper::body::Frame::data(chunk.clone()))
                            }));
                            return Ok(Response::new(
                                http_body_util::StreamBody::new(frames).boxed(),
                            ));
                        }
                        let mut r = Response::new(Full::new(page).boxed());
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            "text/html"
                                .parse()
                                .unwrap_or(header::HeaderValue::from_static("text/html")),
                        );
                        Ok(r)
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
    p99_ms: f64,
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

/// Lets the previous target's aftermath pass before the next is measured:
/// the access logs it wrote flushed to disk now (the kernel would write
/// them back within the next target's run, on its CPU time), and its
/// closed connections a moment to go.
fn settle() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
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
    // wrk prints `850.00us`, `1.23ms` or `1.02s`
    let p99_ms = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(str::trim)
        .and_then(|v| {
            let (num, scale) = if let Some(n) = v.strip_suffix("us") {
                (n, 0.001)
            } else if let Some(n) = v.strip_suffix("ms") {
                (n, 1.0)
            } else {
                (v.strip_suffix('s')?, 1000.0)
            };
            num.parse::<f64>().ok().map(|x| x * scale)
        })
        .unwrap_or(f64::NAN);
    let non_2xx = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(WrkResult {
        rps,
        p99_ms,
        non_2xx,
    })
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
