//! The `gatehouse` binary: parse, load config, log, run until a signal.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use gatehouse::cli::{Cli, secrets_on_command_line};
use gatehouse::{Config, telemetry};

/// sysexits EX_CONFIG: the configuration is wrong.
const EX_CONFIG: u8 = 78;
/// sysexits EX_SOFTWARE.
const EX_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let exposed = secrets_on_command_line(&matches, &cli.settings);
    let source = gatehouse::reload::ConfigSource::new(cli.config.clone(), cli.settings.clone());
    let config = match Config::load(cli.config.as_deref(), cli.settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    // one thread: connections are served by the workers, one per CPU, each
    // with its own runtime (server::workers); this one accepts them and
    // runs the background work (discovery, reload, the revocation feed)
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let exposed_warning = |w: &gatehouse::cli::SecretOnCommandLine| {
        format!(
            "{} puts a secret on the command line, where every local user sees it (ps, /proc); use {} instead",
            w.flag, w.instead
        )
    };
    if cli.check_config {
        for w in &exposed {
            eprintln!("gatehouse: warning: {}", exposed_warning(w));
        }
        for n in &config.notes {
            eprintln!("gatehouse: note: {}: {}", n.key, n.reason);
        }
        let advisories = config.advisories();
        for a in &advisories {
            eprintln!("gatehouse: warning: {}: {}", a.key, a.reason);
        }
        let probes = runtime.block_on(gatehouse::check::probe(&config));
        let warned = |key: &str| {
            if advisories.iter().any(|a| a.key == key) {
                "warning (above)"
            } else {
                "ok"
            }
        };
        eprintln!("gatehouse: checked:");
        for (what, result) in [
            ("every setting and its value", "ok"),
            ("redirect_url against cookie_secure", "ok"),
            (
                "redirect_url host is where gatehouse is",
                if warned("redirect_url") == "ok" {
                    warned("cookie_domain")
                } else {
                    "warning (above)"
                },
            ),
            ("client secret for the provider", warned("client_secret")),
            ("allowed_role clients", warned("allowed_role")),
        ] {
            eprintln!("  {what:<38} {result}");
        }
        eprintln!("gatehouse: probed:");
        eprint!("{}", gatehouse::check::table(&probes));
        eprintln!("gatehouse: mode: {}", mode(&config));
        if !config.routes.is_default_only() {
            eprintln!("gatehouse: routes, first match wins:");
            for r in config.routes.routes() {
                match r.providers {
                    // the providers by id: the route itself knows their indexes
                    Some(set) => {
                        let ids: Vec<&str> = set
                            .iter()
                            .filter_map(|i| config.providers.get(i))
                            .map(|e| e.id.as_str())
                            .collect();
                        eprintln!("  {r}, provider {}", ids.join(" or "));
                    }
                    None => eprintln!("  {r}"),
                }
            }
        }
        let failed = probes.iter().filter(|p| !p.ok()).count();
        return if failed == 0 {
            eprintln!("gatehouse: configuration OK, everything it names answered");
            ExitCode::SUCCESS
        } else {
            eprintln!("gatehouse: {failed} probe(s) FAILED (above)");
            ExitCode::from(EX_CONFIG)
        };
    }
    let log = telemetry::init(config.log_format, &config.log_level);
    for w in &exposed {
        tracing::warn!(flag = w.flag, "{}", exposed_warning(w));
    }
    for n in &config.notes {
        tracing::warn!(key = %n.key, "{}", n.reason);
    }
    let served = runtime.block_on(async {
        let events = signals();
        gatehouse::reload::serve(config, source, events, gatehouse::reload::POLL_INTERVAL).await
    });
    let code = match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "gatehouse stopped");
            eprintln!("gatehouse: {e}");
            ExitCode::from(EX_CONFIG)
        }
    };
    drop(log); // flush the queued lines before exit
    code
}

/// What `--check-config` says gatehouse will be: a reverse proxy, or a
/// forward-auth server only (no `upstream`).
fn mode(config: &Config) -> String {
    let own = config
        .routes
        .routes()
        .iter()
        .filter(|r| r.upstream.is_some())
        .count();
    match (config.upstreams.len(), own) {
        (0, 0) => "forward-auth server only: no upstream is configured, so gatehouse answers \
                   /oauth2/* (forward-auth, sign-in) and /ping, /ready; any other request gets 404"
            .to_owned(),
        (0, n) => format!(
            "forward-auth server, and reverse proxy for {n} route(s) with an upstream of their \
             own; requests on other routes get 404 (no global upstream)"
        ),
        (n, _) => format!(
            "reverse proxy to {n} upstream(s), and forward-auth server (/oauth2/auth, \
             /oauth2/forward-auth)"
        ),
    }
}

/// SIGHUP, SIGTERM and SIGINT (Ctrl-C) as events; a signal that cannot be
/// listened for is logged and never arrives.
fn signals() -> tokio::sync::mpsc::Receiver<gatehouse::reload::Event> {
    use gatehouse::reload::Event;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(Event::Interrupt).await.is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, event) in [
            (SignalKind::hangup(), Event::Reload),
            (SignalKind::terminate(), Event::Terminate),
        ] {
            let tx = tx.clone();
            match signal(kind) {
                Ok(mut s) => {
                    tokio::spawn(async move {
                        while s.recv().await.is_some() {
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, ?event, "cannot listen for the signal"),
            }
        }
    }
    // one sender kept for good: the receiver never sees the channel end
    tokio::spawn(async move { tx.closed().await });
    rx
}

/// mimalloc, not glibc's malloc: a request's buffers are often freed on
/// another worker thread than the one that allocated them, and glibc then
/// takes the owning arena's lock. Measured per signed-in GET: futex calls
/// 0.29 -> 0.03, instructions 92,700 -> 85,700 (README, Performance).
/// `no_thp`: with transparent huge pages on ("always", as on many hosts)
/// mimalloc's eagerly committed arenas were backed by 2 MiB pages, +11 MiB
/// idle RSS; without them it is within ~1 MiB of glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
