//! `make demo`: gatehouse in front of a demo app, signing in at a mock
//! OpenID Connect provider, all on 127.0.0.1 and all in this one process.
//!
//! Run it with `make demo` or `cargo run --example demo` (`DEMO_PORT=8080`
//! picks the port; default 4180, or a free one if that is taken). It prints
//!
//! ```text
//! gatehouse demo: open http://127.0.0.1:4180/ in a browser
//! ```
//!
//! and the demo users. Open that URL: gatehouse redirects you to the mock
//! provider's sign-in page, which lists the users (no passwords). Pick one and
//! you land back on the upstream app, a page showing the request headers it
//! received, with the identity headers gatehouse added (`X-Forwarded-User`,
//! `X-Forwarded-Email`, `X-Forwarded-Groups`, ...) highlighted. Sign in as
//! carol (not in `example.com`) to see the 403 page, or open `/admin/` as bob
//! (not in the `admins` group). Prometheus metrics are on, on a listener of
//! their own: the banner prints their URL (`.../metrics`). "Sign out"
//! ends the session server-side: a copy of the old cookie is refused from then
//! on (the demo keeps revocations in memory; no Redis needed). Stop it with
//! Ctrl-C.
//!
//! The mock provider and the upstream are the ones the integration tests use
//! (`tests/support/`), so they are not part of the gatehouse binary.

use std::error::Error;
use std::io::Write as _;
use std::net::TcpListener;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom as _, SystemRandom};

#[expect(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "shared with the tests, which use the rest"
)]
#[path = "../tests/support/idp.rs"]
mod idp;
#[expect(
    dead_code,
    unreachable_pub,
    reason = "shared with the tests, which use the rest"
)]
#[path = "../tests/support/upstream.rs"]
mod upstream;

use idp::{IdpOptions, MockIdp};
use upstream::Recorder;

const DEFAULT_PORT: u16 = 4180;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // gatehouse's own log setup: colour only on a terminal, lines written off
    // the request path
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let _log = gatehouse::telemetry::init(gatehouse::config::LogFormat::Text, &filter);

    let listener = bind_listener()?;
    let port = listener.local_addr()?.port();
    // no auto-approve: the provider shows its sign-in page listing the
    // users; like a real one it only sends browsers back to the callback
    // registered for this client
    let idp = MockIdp::try_start(IdpOptions {
        redirect_uris: vec![format!("http://127.0.0.1:{port}/oauth2/callback")],
        ..IdpOptions::default()
    })
    .await?;
    let app = Recorder::try_start().await?;

    let config = gatehouse::Config::from_toml_str(&demo_config(port, &idp, &app)?)?;
    let server = gatehouse::Server::start(config, listener).await?;
    // discovery runs in the background; announce the URL once it can log in
    for _ in 0..100 {
        if server.ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !server.ready() {
        tracing::warn!("provider discovery not finished yet; sign-in may fail for a moment");
    }
    print_banner(port, &idp, server.metrics_addr())?;

    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// `DEMO_PORT` (default 4180) on 127.0.0.1, or any free port if it is taken.
fn bind_listener() -> Result<TcpListener, Box<dyn Error>> {
    let port = match std::env::var("DEMO_PORT") {
        Ok(p) => p
            .parse::<u16>()
            .map_err(|e| format!("DEMO_PORT={p}: {e}"))?,
        Err(_) => DEFAULT_PORT,
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(port, error = %e, "port unavailable, using a free one");
            TcpListener::bind(("127.0.0.1", 0))?
        }
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn demo_config(port: u16, idp: &MockIdp, app: &Recorder) -> Result<String, Box<dyn Error>> {
    // a fresh cookie secret per run: sessions do not outlive the demo
    let mut secret = [0_u8; 32];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|e| format!("no randomness: {e}"))?;
    let options = idp.options();
    Ok(format!(
        r#"
http_address = "127.0.0.1:{port}"
upstream = ["{upstream}"]
provider = "oidc"
oidc_issuer_url = "{issuer}"
client_id = "{client_id}"
client_secret = "{client_secret}"
redirect_url = "http://127.0.0.1:{port}/oauth2/callback"
cookie_secret = ["{secret}"]
cookie_secure = false
# Prometheus metrics on a port of their own (any free one)
metrics_address = "127.0.0.1:0"
# carol (other.example) is signed in and refused: the 403 page
email_domain = ["example.com"]

# /admin/ is for the admins group only: bob gets the 403 page there
[[routes]]
path = "/admin/"
allowed_groups = ["admins"]
"#,
        upstream = app.url(),
        issuer = idp.issuer(),
        client_id = options.client_id,
        client_secret = options.client_secret.as_deref().unwrap_or_default(),
        secret = STANDARD.encode(secret),
    ))
}

fn print_banner(
    port: u16,
    idp: &MockIdp,
    metrics: Option<std::net::SocketAddr>,
) -> std::io::Result<()> {
    // stdout, not tracing: this is the demo's user interface
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    writeln!(
        out,
        "gatehouse demo: open http://127.0.0.1:{port}/ in a browser"
    )?;
    writeln!(
        out,
        "  mock OpenID provider at {} (sign-in page, no passwords)",
        idp.issuer()
    )?;
    writeln!(out, "  demo users:")?;
    for user in &idp.options().users {
        let groups = user.groups.join(", ");
        let note = if user.email.ends_with("@example.com") {
            ""
        } else {
            "  <- not in example.com: gets the 403 page"
        };
        writeln!(
            out,
            "    {:<6} {:<22} groups: {groups}{note}",
            user.username, user.email
        )?;
    }
    writeln!(
        out,
        "  http://127.0.0.1:{port}/admin/ is for the admins group: alice gets in, bob gets the 403 page"
    )?;
    writeln!(
        out,
        "  sign-out is server-side: copy the _gatehouse cookie, sign out at /oauth2/sign_out,"
    )?;
    writeln!(
        out,
        "  and the copied cookie is refused from then on (try: curl -H 'Cookie: _gatehouse=...' http://127.0.0.1:{port}/)"
    )?;
    if let Some(addr) = metrics {
        writeln!(
            out,
            "  Prometheus metrics at http://{addr}/metrics (a listener of its own)"
        )?;
    }
    writeln!(out, "  press Ctrl-C to stop")?;
    writeln!(out)?;
    out.flush()
}
