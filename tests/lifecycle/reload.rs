//! Hot reload in process (issue 12, item 3): a new configuration swapped in
//! under load with no failed request, what a reload keeps (sessions under
//! rotated cookie secrets, a login in progress, discovered providers), and a
//! broken configuration that keeps the running one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gatehouse::Config;
use gatehouse::server::ReloadOutcome;
use http::StatusCode;

use crate::support::client::TestClient;
use crate::support::idp::{IdpOptions, MockIdp};
use crate::support::proxy::{
    TEST_COOKIE_SECRET, TestProxy, authorize_at_idp, finish_login, login, start_login,
};
use crate::support::upstream::Recorder;

/// A second cookie secret (32 random bytes, base64).
const NEW_COOKIE_SECRET: &str = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=";

const ADMIN_FOR_ALICE: &str = r#"
[[routes]]
path = "/admin"
allowed_emails = ["alice@example.com"]
"#;

/// The proxy's running TOML with `edit` applied to its table.
fn edited(proxy: &TestProxy, edit: impl FnOnce(&mut toml::Table)) -> Config {
    let mut table: toml::Table = proxy.config_toml().parse().unwrap();
    edit(&mut table);
    let text = toml::to_string(&table).unwrap();
    Config::from_toml_str(&text)
        .map_err(|e| format!("{e}\n{text}"))
        .unwrap()
}

fn applied(outcome: &ReloadOutcome) -> &gatehouse::state::Carried {
    match outcome {
        ReloadOutcome::Applied { carried, .. } => carried,
        ReloadOutcome::Refused { problems } => panic!("reload refused: {problems:?}"),
    }
}

fn strings(values: &[&str]) -> toml::Value {
    values
        .iter()
        .map(|v| toml::Value::from(*v))
        .collect::<Vec<_>>()
        .into()
}

#[tokio::test]
async fn a_reload_under_load_moves_to_the_new_upstream_and_policy_with_no_failed_request() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let (old_upstream, new_upstream) = (Recorder::start().await, Recorder::start().await);
    let proxy = TestProxy::start(ADMIN_FOR_ALICE, &idp, &old_upstream).await;
    let client = Arc::new(TestClient::new());
    login(&client, &proxy, "/").await;
    assert_eq!(
        client.get(&proxy.url("/admin")).await.status,
        StatusCode::OK
    );

    // four clients keep sending signed-in requests through the reload
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), proxy.url("/work"));
        let (stop, sent) = (stop.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = client.get(&url).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if resp.status != StatusCode::OK {
                    failed.push(resp.status);
                }
            }
            failed
        }));
    }
    let until = |n: usize| {
        let sent = sent.clone();
        async move {
            while sent.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), until(100))
        .await
        .unwrap();

    let new_url = new_upstream.url();
    let config = edited(&proxy, |t| {
        t.insert("upstream".into(), strings(&[&new_url]));
        let routes = toml::Value::Array(vec![toml::Value::Table(
            "path = \"/admin\"\nallowed_emails = [\"bob@example.com\"]"
                .parse()
                .unwrap(),
        )]);
        t.insert("routes".into(), routes);
    });
    let carried = applied(&proxy.server().reload(Ok(config))).clone();
    assert_eq!(
        carried.providers,
        ["default"],
        "discovery kept: {carried:?}"
    );
    assert!(carried.store && carried.login_limiter, "{carried:?}");
    let at_reload = sent.load(Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(20), until(at_reload + 100))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut failed = Vec::new();
    for task in load {
        failed.extend(task.await.unwrap());
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        sent.load(Ordering::Relaxed)
    );
    assert!(old_upstream.requests_to("/work").len() >= 100);
    assert!(
        new_upstream.requests_to("/work").len() >= 50,
        "the new upstream got {} requests",
        new_upstream.requests_to("/work").len()
    );
    // the new policy holds; the old upstream gets nothing more
    let before = old_upstream.count();
    assert_eq!(
        client.get(&proxy.url("/admin")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(client.get(&proxy.url("/work")).await.status, StatusCode::OK);
    assert_eq!(old_upstream.count(), before);
    assert_eq!(proxy.server().reload_counts(), (1, 0));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_broken_configuration_is_refused_with_every_problem_and_the_running_one_keeps_serving() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;

    let mut table: toml::Table = proxy.config_toml().parse().unwrap();
    table.insert("upstream".into(), strings(&["ftp://nowhere"]));
    table.insert("cookie_expire".into(), "forever".into());
    let broken = Config::from_toml_str(&toml::to_string(&table).unwrap());
    match proxy.server().reload(broken) {
        ReloadOutcome::Refused { problems } => {
            for key in ["upstream", "cookie_expire"] {
                assert!(
                    problems.iter().any(|p| p.starts_with(&format!("{key}:"))),
                    "{key} not among {problems:?}"
                );
            }
        }
        ReloadOutcome::Applied { .. } => panic!("a broken configuration was applied"),
    }
    assert_eq!(proxy.server().reload_counts(), (0, 1));
    let resp = client.get(&proxy.url("/still")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(upstream.last().unwrap().path(), "/still");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_session_stays_valid_while_the_new_cookie_secrets_include_the_old_first_one() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;

    // rotated: a new first secret, the old one still accepted
    let rotated = edited(&proxy, |t| {
        t.insert(
            "cookie_secret".into(),
            strings(&[NEW_COOKIE_SECRET, TEST_COOKIE_SECRET]),
        );
    });
    applied(&proxy.server().reload(Ok(rotated)));
    assert_eq!(
        client.get_api(&proxy.url("/a")).await.status,
        StatusCode::OK
    );

    // the old secret dropped: the session no longer opens
    let dropped = edited(&proxy, |t| {
        t.insert("cookie_secret".into(), strings(&[NEW_COOKIE_SECRET]));
    });
    applied(&proxy.server().reload(Ok(dropped)));
    assert_eq!(
        client.get_api(&proxy.url("/b")).await.status,
        StatusCode::UNAUTHORIZED
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_login_started_before_a_reload_completes_after_it() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let (old_upstream, new_upstream) = (Recorder::start().await, Recorder::start().await);
    let proxy = TestProxy::start("", &idp, &old_upstream).await;
    let client = TestClient::new();
    let authorize = start_login(&client, &proxy, "/after").await;
    let new_url = new_upstream.url();
    let config = edited(&proxy, |t| {
        t.insert("upstream".into(), strings(&[&new_url]));
    });
    applied(&proxy.server().reload(Ok(config)));
    let callback = authorize_at_idp(&client, &proxy, &authorize, None).await;
    finish_login(&client, &proxy, &callback, "/after").await;
    assert_eq!(
        client.get(&proxy.url("/after")).await.status,
        StatusCode::OK
    );
    assert_eq!(new_upstream.last().unwrap().path(), "/after");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_changed_provider_is_discovered_again_and_an_unchanged_one_is_kept() {
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::start("", &idp, &upstream).await;
    let discoveries = idp.discovery_fetches();
    let same = edited(&proxy, |t| {
        t.insert("pass_access_token".into(), true.into());
    });
    let carried = applied(&proxy.server().reload(Ok(same))).clone();
    assert_eq!(carried.providers, ["default"]);
    assert!(carried.rediscover.is_empty());
    // kept: ready at once, and the provider was not asked again
    assert!(proxy.server().ready());
    assert_eq!(idp.discovery_fetches(), discoveries);

    let changed = edited(&proxy, |t| {
        t.insert("scope".into(), "openid email profile groups".into());
    });
    let carried = applied(&proxy.server().reload(Ok(changed))).clone();
    assert_eq!(carried.rediscover, ["default"]);
    proxy.wait_ready().await;
    assert!(idp.discovery_fetches() > discoveries);
    proxy.shutdown().await;
}

const TLS_CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/keys/tls-cert.pem"
);
const TLS_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/keys/tls-key.pem"
);

/// Makes a second self-signed certificate for 127.0.0.1 with the openssl
/// command; `None` (after a loud line) where openssl is missing.
fn second_certificate(dir: &crate::support::e2e::TempDir) -> Option<(String, String)> {
    let cnf = dir.write(
        "ext.cnf",
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n[v3]\n\
         basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
    );
    let (cert, key) = (dir.path().join("b.pem"), dir.path().join("b.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-extensions", "v3", "-config"])
        .arg(&cnf)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    match made {
        Ok(s) if s.success() => Some((
            cert.to_string_lossy().into_owned(),
            key.to_string_lossy().into_owned(),
        )),
        other => {
            assert!(
                std::env::var_os("GATEHOUSE_REQUIRE_E2E").is_none(),
                "openssl could not make a certificate: {other:?}"
            );
            eprintln!(
                "SKIPPED: the TLS reload test needs the openssl command (apt-get install openssl)"
            );
            None
        }
    }
}

/// Whether a TLS handshake with `addr` succeeds for a client trusting only
/// the certificate in `cert_file`.
async fn handshake_trusting(addr: std::net::SocketAddr, cert_file: &str) -> bool {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(cert_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::from(addr.ip());
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .is_ok()
}

#[tokio::test]
async fn a_reload_reads_the_tls_certificate_and_key_again() {
    let dir = crate::support::e2e::TempDir::new("reload-tls");
    let Some((cert_b, key_b)) = second_certificate(&dir) else {
        return;
    };
    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::builder(&idp, &upstream)
        .set("tls_cert_file", TLS_CERT)
        .set("tls_key_file", TLS_KEY)
        .set("cookie_secure", true)
        .set("redirect_url", "https://127.0.0.1:{PORT}/oauth2/callback")
        .no_wait() // its ready probe speaks plain HTTP
        .start()
        .await;
    assert!(handshake_trusting(proxy.addr(), TLS_CERT).await);
    assert!(!handshake_trusting(proxy.addr(), &cert_b).await);
    let config = edited(&proxy, |t| {
        t.insert("tls_cert_file".into(), cert_b.clone().into());
        t.insert("tls_key_file".into(), key_b.clone().into());
    });
    let ReloadOutcome::Applied { not_live, .. } = proxy.server().reload(Ok(config)) else {
        panic!("the reload was refused");
    };
    assert!(not_live.is_empty(), "{not_live:?}");
    assert!(
        handshake_trusting(proxy.addr(), &cert_b).await,
        "new connections get the new certificate"
    );
    assert!(!handshake_trusting(proxy.addr(), TLS_CERT).await);
    proxy.shutdown().await;
}

#[test]
fn settings_that_cannot_change_live_are_named() {
    let base = "upstream = \"http://127.0.0.1:9\"\noidc_issuer_url = \"http://127.0.0.1:9\"\n\
                client_id = \"gatehouse\"\nclient_secret = \"super-secret-value\"\n\
                redirect_url = \"http://127.0.0.1:4180/oauth2/callback\"\n\
                cookie_secret = \"ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=\"\n\
                cookie_secure = false\nemail_domain = \"*\"\n";
    let old = Config::from_toml_str(base).unwrap();
    let new = Config::from_toml_str(&format!(
        "{base}http_address = \"127.0.0.1:4181\"\nmax_connections = 5\nlog_level = \"debug\"\n\
         upstream_timeout = \"5s\"\n"
    ))
    .unwrap();
    assert_eq!(
        gatehouse::server::not_live(&old, &new),
        ["http_address", "max_connections", "log_level"]
    );
}

// review of issue 12, finding 2: a tunnel opened before a reload kept
// re-checking against the old state's store (old cookie secrets, old
// revocations) and outlived the session
#[tokio::test]
async fn a_tunnel_opened_before_a_reload_is_re_checked_against_the_new_state() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let idp = MockIdp::start(IdpOptions::auto_approving("alice")).await;
    let upstream = Recorder::start().await;
    let proxy = TestProxy::builder(&idp, &upstream)
        .set("websocket_session_check", "200ms")
        .start()
        .await;
    let client = TestClient::new();
    login(&client, &proxy, "/").await;
    let cookie = client.cookie_header_for(&proxy.url("/")).unwrap();
    let mut req = format!("ws://{}/__ws", proxy.host())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert(http::header::COOKIE, cookie.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    // the session's cookie secret dropped: the session no longer opens, so
    // the tunnel it opened ends at the next re-check
    let dropped = edited(&proxy, |t| {
        t.insert("cookie_secret".into(), strings(&[NEW_COOKIE_SECRET]));
    });
    applied(&proxy.server().reload(Ok(dropped)));
    match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        Err(_) => panic!("the tunnel is still open 3 s after the reload"),
        Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => {}
        Ok(Some(Ok(other))) => panic!("unexpected message {other:?}"),
    }
    proxy.shutdown().await;
}
