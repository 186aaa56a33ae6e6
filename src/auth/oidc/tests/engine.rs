//! The login engine against a small provider on loopback that speaks the
//! real protocol: discovery, JWKS, token and userinfo endpoints, with RS256
//! tokens signed by the committed test keys. It records what gatehouse sent,
//! so each test asserts on gatehouse's own behaviour.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use http_body_util::BodyExt as _;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::super::*;

const KEY1_PEM: &str = include_str!("../../../../tests/support/keys/key1.pem");
const KEY2_PEM: &str = include_str!("../../../../tests/support/keys/key2.pem");
const KEY1_JWK: &str = include_str!("../../../../tests/support/keys/key1.jwk.json");
const KEY2_JWK: &str = include_str!("../../../../tests/support/keys/key2.jwk.json");
pub(crate) const CLIENT: &str = "gatehouse";
const NONCE: &str = "nonce-1";
/// The RFC 7636 appendix B example.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// One request the provider received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

/// What the provider answers; each field can be changed mid-test.
pub(crate) struct Answers {
    /// `issuer` in the discovery document; `None`: the base URL.
    pub(crate) issuer: Option<String>,
    pub(crate) discovery_status: u16,
    pub(crate) end_session: bool,
    pub(crate) userinfo_endpoint: bool,
    pub(crate) jwks: Vec<&'static str>,
    pub(crate) jwks_status: u16,
    pub(crate) token: (u16, String),
    pub(crate) userinfo: (u16, String),
    /// Seconds to wait before answering the token endpoint.
    pub(crate) token_delay: u64,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            issuer: None,
            discovery_status: 200,
            end_session: false,
            userinfo_endpoint: true,
            jwks: vec![KEY1_JWK],
            jwks_status: 200,
            token: (500, "{}".to_owned()),
            userinfo: (404, String::new()),
            token_delay: 0,
        }
    }
}

pub(crate) struct Idp {
    pub(crate) base: String,
    answers: Arc<Mutex<Answers>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let answers = Arc::new(Mutex::new(Answers::default()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s, b) = (answers.clone(), seen.clone(), base.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (a, s, b) = (a.clone(), s.clone(), b.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, a.clone(), s.clone(), b.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            base,
            answers,
            seen,
            task,
        }
    }

    pub(crate) fn set(&self, f: impl FnOnce(&mut Answers)) {
        f(&mut self.answers.lock().unwrap());
    }

    pub(crate) fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    pub(crate) fn answer_tokens(&self, answer: &Value) {
        let body = answer.to_string();
        self.set(|a| a.token = (200, body));
    }

    /// Claims of a good ID token from this provider.
    pub(crate) fn id_claims(&self, sub: &str) -> Value {
        let now = now_secs();
        json!({
            "iss": self.base,
            "sub": sub,
            "aud": CLIENT,
            "iat": now, "exp": now + 300,
            "iat": now,
            "nonce": NONCE,
        })
    }

    /// A config for this provider; `extra` is more TOML.
    pub(crate) fn config(&self, extra: &str) -> Config {
        Config::from_toml_str(&format!(
            r#"
            upstream = "http://127.0.0.1:9"
            oidc_issuer_url = "{base}"
            client_id = "{CLIENT}"
            redirect_url = "https://app.example.com/oauth2/callback"
            cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
            email_domain = "*"
            {extra}
            "#,
            base = self.base
        ))
        .unwrap()
    }

    pub(crate) async fn provider(&self, extra: &str) -> Provider {
        Provider::discover(&self.config(extra), http())
            .await
            .unwrap()
    }
}

pub(crate) fn http() -> IdpHttp {
    IdpHttp::new(Duration::from_secs(5)).unwrap()
}

async fn serve(
    req: http::Request<hyper::body::Incoming>,
    answers: Arc<Mutex<Answers>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    base: String,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, text, delay) = {
        let a = answers.lock().unwrap();
        match path.as_str() {
            "/.well-known/openid-configuration" => {
                let mut doc = json!({
                    "issuer": a.issuer.clone().unwrap_or_else(|| base.clone()),
                    "authorization_endpoint": format!("{base}/authorize"),
                    "token_endpoint": format!("{base}/token"),
                    "jwks_uri": format!("{base}/jwks"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                });
                if a.userinfo_endpoint {
                    doc["userinfo_endpoint"] = json!(format!("{base}/userinfo"));
                }
                if a.end_session {
                    doc["end_session_endpoint"] = json!(format!("{base}/logout"));
                }
                (a.discovery_status, doc.to_string(), 0)
            }
            "/jwks" => (
                a.jwks_status,
                format!("{{\"keys\":[{}]}}", a.jwks.join(",")),
                0,
            ),
            "/token" => (a.token.0, a.token.1.clone(), a.token_delay),
            "/userinfo" => (a.userinfo.0, a.userinfo.1.clone(), 0),
            _ => (404, String::new(), 0),
        }
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_secs(delay)).await;
    }
    Ok(http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}

/// Signs `claims` with the test key `kid` (`key1` or `key2`).
pub(crate) fn sign(claims: &Value, kid: &str) -> String {
    let pem = if kid == "key2" { KEY2_PEM } else { KEY1_PEM };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn login() -> LoginParams<'static> {
    LoginParams {
        state: "state-1",
        nonce: NONCE,
        pkce_verifier: VERIFIER,
        redirect_uri: "https://app.example.com/oauth2/callback",
        started_at: 0,
        acr_values: None,
        max_age: None,
    }
}

fn form(body: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn discovery_finds_the_endpoints_and_keys() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    assert_eq!(p.issuer(), idp.base);
    assert_eq!(p.client_id(), CLIENT);
    assert_eq!(p.endpoints.token.as_str(), format!("{}/token", idp.base));
    assert_eq!(
        p.endpoints.userinfo.as_ref().map(Url::as_str),
        Some(format!("{}/userinfo", idp.base).as_str())
    );
    assert_eq!(p.keys.load().jwt.len(), 1);
    assert_eq!(idp.seen("/.well-known/openid-configuration").len(), 1);
    assert_eq!(idp.seen("/jwks").len(), 1);
    // no end_session_endpoint and a plain OIDC preset: nowhere to go
    assert!(p.logout_target().is_none());
}

#[tokio::test]
async fn sign_out_continues_at_the_advertised_end_session_endpoint() {
    let idp = Idp::start().await;
    idp.set(|a| a.end_session = true);
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    match p.logout_target() {
        Some(LogoutTarget::Oidc(u)) => assert_eq!(u.as_str(), format!("{}/logout", idp.base)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn auth0_sign_out_falls_back_to_v2_logout_on_the_issuer() {
    let idp = Idp::start().await;
    // the auth0 preset writes the issuer with a slash; discovery agrees
    idp.set(|a| a.issuer = Some(format!("{}/", idp.base)));
    let p = idp
        .provider(
            r#"provider = "auth0"
            client_secret = "s3cret""#,
        )
        .await;
    assert_eq!(p.issuer(), format!("{}/", idp.base));
    match p.logout_target() {
        Some(LogoutTarget::Auth0(u)) => {
            assert_eq!(u.as_str(), format!("{}/v2/logout", idp.base));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn discovery_for_another_issuer_or_a_failed_fetch_is_refused() {
    let idp = Idp::start().await;
    let cfg = idp.config(r#"client_secret = "s3cret""#);
    idp.set(|a| a.issuer = Some("https://evil.example".to_owned()));
    let e = Provider::discover(&cfg, http()).await.err().unwrap();
    assert!(
        e.to_string()
            .contains("names issuer `https://evil.example`"),
        "{e}"
    );
    // one trailing slash of difference is tolerated; the discovered one is kept
    idp.set(|a| a.issuer = Some(format!("{}/", idp.base)));
    let p = Provider::discover(&cfg, http()).await.unwrap();
    assert_eq!(p.issuer(), format!("{}/", idp.base));
    idp.set(|a| {
        a.issuer = None;
        a.discovery_status = 503;
    });
    let e = Provider::discover(&cfg, http()).await.err().unwrap();
    assert!(e.to_string().contains("503"), "{e}");
    idp.set(|a| {
        a.discovery_status = 200;
        a.jwks_status = 500;
    });
    let e = Provider::discover(&cfg, http()).await.err().unwrap();
    assert!(e.to_string().contains("JWKS"), "{e}");
    idp.set(|a| {
        a.jwks_status = 200;
        a.jwks = vec!["not json"];
    });
    assert!(Provider::discover(&cfg, http()).await.is_err());
}

#[tokio::test]
async fn the_authorize_url_carries_every_login_parameter() {
    let idp = Idp::start().await;
    let p = idp
        .provider(
            r#"client_secret = "s3cret"
            audience = "https://api.example.com""#,
        )
        .await;
    let url = p.authorize_url(&login()).unwrap().url;
    assert_eq!(url.path(), "/authorize");
    assert_eq!(
        form(url.query().unwrap()),
        pairs(&[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", "https://app.example.com/oauth2/callback"),
            ("scope", "openid email profile"),
            ("state", "state-1"),
            ("nonce", NONCE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("audience", "https://api.example.com"),
        ])
    );
}

#[tokio::test]
async fn plain_oauth_sends_no_nonce_and_no_empty_scope() {
    let idp = Idp::start().await;
    let p = idp
        .provider(&format!(
            r#"provider = "zkauth"
            oidc_authorize_url = "{b}/authorize"
            oidc_token_url = "{b}/token"
            oidc_jwks_url = "{b}/jwks""#,
            b = idp.base
        ))
        .await;
    // no discovery for this preset
    assert!(idp.seen("/.well-known/openid-configuration").is_empty());
    let url = p.authorize_url(&login()).unwrap().url;
    let q = form(url.query().unwrap());
    assert!(
        !q.iter().any(|(k, _)| k == "nonce" || k == "scope"),
        "{q:?}"
    );
    assert!(q.contains(&("code_challenge".to_owned(), CHALLENGE.to_owned())));
}

#[tokio::test]
async fn a_login_sends_the_code_with_basic_auth_and_reads_the_id_token() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3:cret&""#).await;
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("alice@example.com");
    claims["groups"] = json!(["staff"]);
    claims["realm_access"] = json!({"roles": ["from-id-token"]});
    let id_token = sign(&claims, "key1");
    idp.answer_tokens(&json!({
        "access_token": "at-1",
        "id_token": id_token,
        "refresh_token": "rt-1",
        "expires_in": 120,
        "token_type": "Bearer"
    }));
    let id = p.exchange("code-1", &login(), true).await.unwrap().identity;
    assert_eq!(id.subject, "alice");
    assert_eq!(id.email.as_deref(), Some("alice@example.com"));
    assert_eq!(id.groups, ["staff"]);
    assert_eq!(id.roles, ["from-id-token"]);
    assert_eq!(
        id.tokens.access_token.as_ref().map(Secret::expose),
        Some("at-1")
    );
    assert_eq!(
        id.tokens.id_token.as_ref().map(Secret::expose),
        Some(id_token.as_str())
    );
    assert_eq!(
        id.tokens.refresh_token.as_ref().map(Secret::expose),
        Some("rt-1")
    );
    let exp = id.tokens.access_token_expires_at.unwrap();
    assert!(
        (now_secs() + 110..=now_secs() + 120).contains(&exp),
        "{exp}"
    );
    assert!(id.refreshed_at >= now_secs() - 5);
    let sent = idp.seen("/token");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        form(&sent[0].body),
        pairs(&[
            ("grant_type", "authorization_code"),
            ("code", "code-1"),
            ("redirect_uri", "https://app.example.com/oauth2/callback"),
            ("code_verifier", VERIFIER),
        ])
    );
    // RFC 6749 2.3.1: form-encoded before base64
    let expected = base64::engine::general_purpose::STANDARD.encode("gatehouse:s3%3Acret%26");
    assert_eq!(
        sent[0].headers["authorization"],
        format!("Basic {expected}")
    );
    assert_eq!(
        sent[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    // the email came in the ID token: userinfo was not needed
    assert!(idp.seen("/userinfo").is_empty());
}

#[tokio::test]
async fn the_access_token_is_kept_only_when_asked() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    idp.answer_tokens(&json!({"access_token": "at-1", "id_token": sign(&claims, "key1")}));
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert!(id.tokens.access_token.is_none());
    assert!(id.tokens.refresh_token.is_none());
    assert_eq!(id.tokens.access_token_expires_at, None);
}

#[tokio::test]
async fn client_secret_post_and_public_clients_send_the_client_id_in_the_body() {
    let idp = Idp::start().await;
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    idp.answer_tokens(&json!({"access_token": "at", "id_token": sign(&claims, "key1")}));
    let post = idp
        .provider(
            r#"client_secret = "s3cret"
            token_endpoint_auth_method = "client_secret_post""#,
        )
        .await;
    post.exchange("c", &login(), false).await.unwrap();
    let public = idp.provider("").await;
    public.exchange("c", &login(), false).await.unwrap();
    let sent = idp.seen("/token");
    let post_form = form(&sent[0].body);
    assert!(post_form.contains(&("client_id".to_owned(), CLIENT.to_owned())));
    assert!(post_form.contains(&("client_secret".to_owned(), "s3cret".to_owned())));
    assert!(!sent[0].headers.contains_key("authorization"));
    let public_form = form(&sent[1].body);
    assert!(public_form.contains(&("client_id".to_owned(), CLIENT.to_owned())));
    assert!(!public_form.iter().any(|(k, _)| k == "client_secret"));
    assert!(!sent[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn a_json_token_request_has_exactly_the_json_fields() {
    let idp = Idp::start().await;
    let p = idp
        .provider(&format!(
            r#"provider = "zkauth"
            client_secret = "s3cret"
            oidc_authorize_url = "{b}/authorize"
            oidc_token_url = "{b}/token"
            oidc_jwks_url = "{b}/jwks""#,
            b = idp.base
        ))
        .await;
    let now = now_secs();
    let at = sign(
        &json!({"iss": idp.base, "aud": CLIENT, "sub": "zk-user", "iat": now, "exp": now + 900, "email": "z@example.com"}),
        "key1",
    );
    idp.answer_tokens(&json!({"access_token": at, "expires_in": "900"}));
    let id = p.exchange("code-9", &login(), true).await.unwrap().identity;
    assert_eq!(id.subject, "zk-user");
    assert_eq!(id.email.as_deref(), Some("z@example.com"));
    let exp = id.tokens.access_token_expires_at.unwrap();
    assert!((now + 890..=now + 905).contains(&exp), "{exp}");
    let sent = idp.seen("/token");
    assert_eq!(sent[0].headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "grant_type": "authorization_code",
            "code": "code-9",
            "redirect_uri": "https://app.example.com/oauth2/callback",
            "code_verifier": VERIFIER,
            "client_id": CLIENT,
            "client_secret": "s3cret"
        })
    );
}

#[tokio::test]
async fn token_endpoint_errors_say_what_the_provider_said() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    idp.set(|a| a.token = (400, r#"{"error":"invalid_grant"}"#.to_owned()));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "token exchange failed: status 400 Bad Request, provider said invalid_grant"
    );
    idp.set(|a| a.token = (502, "<html>".to_owned()));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "token exchange failed: status 502 Bad Gateway"
    );
    idp.set(|a| a.token = (200, "not json".to_owned()));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(
        e.to_string()
            .contains("unparseable token response (8 bytes)"),
        "{e}"
    );
    // OIDC without an ID token is no login
    idp.answer_tokens(&json!({"access_token": "at"}));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(e.to_string().contains("no id_token"), "{e}");
}

/// Claims edited by `f`, signed with key1, answered by the token endpoint;
/// the login's outcome.
async fn login_with(
    idp: &Idp,
    p: &Provider,
    f: impl FnOnce(&mut Value),
) -> Result<Identity, IdpError> {
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    f(&mut claims);
    idp.answer_tokens(&json!({"access_token": "at", "id_token": sign(&claims, "key1")}));
    p.exchange("c", &login(), false).await.map(|r| r.identity)
}

#[tokio::test]
async fn id_tokens_that_do_not_verify_are_refused() {
    let idp = Idp::start().await;
    let p = idp
        .provider(
            r#"client_secret = "s3cret"
            oidc_extra_audience = "listed""#,
        )
        .await;
    assert!(login_with(&idp, &p, |_c| ()).await.is_ok());
    let refused: Vec<(&str, Box<dyn FnOnce(&mut Value)>)> = vec![
        ("nonce", Box::new(|c| c["nonce"] = json!("other"))),
        (
            "no nonce",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("nonce"))),
        ),
        (
            "issuer",
            Box::new(|c| c["iss"] = json!("https://evil.example")),
        ),
        ("audience", Box::new(|c| c["aud"] = json!("other-client"))),
        ("expired", Box::new(|c| c["exp"] = json!(now_secs() - 3600))),
        (
            "iat future",
            Box::new(|c| c["iat"] = json!(now_secs() + 3600)),
        ),
        (
            "no iat",
            Box::new(|c| drop(c.as_object_mut().unwrap().remove("iat"))),
        ),
        (
            "unlisted aud",
            Box::new(|c| {
                c["aud"] = json!([CLIENT, "unlisted"]);
                c["azp"] = json!(CLIENT);
            }),
        ),
        (
            "several aud no azp",
            Box::new(|c| c["aud"] = json!([CLIENT, "listed"])),
        ),
        ("azp other", Box::new(|c| c["azp"] = json!("other-client"))),
        ("azp not text", Box::new(|c| c["azp"] = json!(7))),
        ("empty sub", Box::new(|c| c["sub"] = json!(""))),
        ("control in sub", Box::new(|c| c["sub"] = json!("a\nb"))),
    ];
    for (what, edit) in refused {
        let got = login_with(&idp, &p, edit).await;
        assert!(got.is_err(), "{what}: {got:?}");
    }
    // a listed extra audience passes, with azp naming us
    let ok = login_with(&idp, &p, |c| {
        c["aud"] = json!([CLIENT, "listed"]);
        c["azp"] = json!(CLIENT);
    })
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    let ok = login_with(&idp, &p, |c| c["azp"] = json!(CLIENT)).await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn passage_accepts_other_audiences_when_azp_is_the_client() {
    let idp = Idp::start().await;
    let p = idp
        .provider(
            r#"provider = "passage"
            client_secret = "s3cret""#,
        )
        .await;
    let ok = login_with(&idp, &p, |c| {
        c["aud"] = json!([CLIENT, "https://api.passage.id"]);
        c["azp"] = json!(CLIENT);
    })
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    let no_azp = login_with(&idp, &p, |c| c["aud"] = json!([CLIENT, "x"])).await;
    assert!(no_azp.is_err());
    // the generic preset refuses the same token
    let generic = idp.provider(r#"client_secret = "s3cret""#).await;
    let refused = login_with(&idp, &generic, |c| {
        c["aud"] = json!([CLIENT, "https://api.passage.id"]);
        c["azp"] = json!(CLIENT);
    })
    .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_then_trusted() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    assert_eq!(idp.seen("/jwks").len(), 1);
    idp.set(|a| a.jwks = vec![KEY1_JWK, KEY2_JWK]);
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    idp.answer_tokens(&json!({"access_token": "at", "id_token": sign(&claims, "key2")}));
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert_eq!(id.subject, "alice");
    assert_eq!(idp.seen("/jwks").len(), 2);
    assert_eq!(p.keys.load().jwt.len(), 2);
}

#[tokio::test]
async fn userinfo_fills_in_a_missing_email_for_the_same_subject_only() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let mut claims = idp.id_claims("alice");
    claims["name"] = json!("From Id");
    let id_token = sign(&claims, "key1");
    idp.answer_tokens(&json!({"access_token": "at-u", "id_token": id_token}));
    idp.set(|a| {
        a.userinfo = (
            200,
            json!({"sub": "alice", "email": "from-userinfo@example.com", "name": "Userinfo"})
                .to_string(),
        );
    });
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert_eq!(id.email.as_deref(), Some("from-userinfo@example.com"));
    // the ID token's own claims win over userinfo's
    assert_eq!(id.name.as_deref(), Some("From Id"));
    let calls = idp.seen("/userinfo");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].headers["authorization"], "Bearer at-u");
    // another subject: refused
    idp.set(|a| {
        a.userinfo = (
            200,
            json!({"sub": "mallory", "email": "m@example.com"}).to_string(),
        )
    });
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(e.to_string().contains("userinfo sub differs"), "{e}");
    // userinfo failing fails the login
    idp.set(|a| a.userinfo = (500, String::new()));
    assert!(p.exchange("c", &login(), false).await.is_err());
    idp.set(|a| a.userinfo = (200, "not json".to_owned()));
    assert!(p.exchange("c", &login(), false).await.is_err());
}

#[tokio::test]
async fn without_a_userinfo_endpoint_an_id_token_without_email_still_signs_in() {
    let idp = Idp::start().await;
    idp.set(|a| a.userinfo_endpoint = false);
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    idp.answer_tokens(
        &json!({"access_token": "at", "id_token": sign(&idp.id_claims("bob"), "key1")}),
    );
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert_eq!(id.subject, "bob");
    assert_eq!(id.email, None);
    // identity_source = userinfo needs the endpoint
    let p = idp
        .provider(
            r#"client_secret = "s3cret"
            identity_source = "userinfo""#,
        )
        .await;
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(e.to_string().contains("no userinfo endpoint"), "{e}");
}

#[tokio::test]
async fn identity_source_userinfo_reads_the_user_from_userinfo() {
    let idp = Idp::start().await;
    let p = idp
        .provider(
            r#"client_secret = "s3cret"
            identity_source = "userinfo""#,
        )
        .await;
    let mut claims = idp.id_claims("carol");
    claims["email"] = json!("id-token@example.com");
    idp.answer_tokens(&json!({"access_token": "at", "id_token": sign(&claims, "key1")}));
    idp.set(|a| {
        a.userinfo = (
            200,
            json!({"sub": "carol", "email": "userinfo@example.com", "groups": ["u"]}).to_string(),
        );
    });
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert_eq!(id.subject, "carol");
    // userinfo wins where both say something
    assert_eq!(id.email.as_deref(), Some("userinfo@example.com"));
    assert_eq!(id.groups, ["u"]);
    assert_eq!(idp.seen("/userinfo").len(), 1);
}

#[tokio::test]
async fn keycloak_roles_come_from_a_verified_access_token() {
    let idp = Idp::start().await;
    let p = idp
        .provider(
            r#"provider = "keycloak"
            client_secret = "s3cret"
            claim_header = ["X-Dept=dept"]"#,
        )
        .await;
    let now = now_secs();
    let access = |aud: Value, azp: Option<&str>| {
        let mut c = json!({
            "iss": idp.base, "sub": "alice", "aud": aud, "iat": now, "exp": now + 300,
            "realm_access": {"roles": ["user"]},
            "resource_access": {"gatehouse": {"roles": ["editor"]}},
        });
        if let Some(a) = azp {
            c["azp"] = json!(a);
        }
        sign(&c, "key1")
    };
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    claims["dept"] = json!("R&D");
    let id_token = sign(&claims, "key1");
    // Keycloak: aud is `account`, azp is the client
    idp.answer_tokens(
        &json!({"access_token": access(json!("account"), Some(CLIENT)), "id_token": id_token}),
    );
    let id = p.exchange("c", &login(), true).await.unwrap().identity;
    let mut roles = id.roles.clone();
    roles.sort();
    assert_eq!(roles, ["gatehouse:editor", "user"]);
    assert_eq!(id.extra_headers, [("x-dept".to_owned(), "R&D".to_owned())]);
    // the access token's exp is used when there is no expires_in
    assert_eq!(id.tokens.access_token_expires_at, Some(now + 300));
    // aud naming the client is enough too
    idp.answer_tokens(
        &json!({"access_token": access(json!([CLIENT]), None), "id_token": id_token}),
    );
    assert!(p.exchange("c", &login(), true).await.is_ok());
    // neither aud nor azp names us: refused
    idp.answer_tokens(
        &json!({"access_token": access(json!("account"), Some("other")), "id_token": id_token}),
    );
    let e = p.exchange("c", &login(), true).await.err().unwrap();
    assert!(e.to_string().contains("neither aud nor azp"), "{e}");
    // an opaque or HMAC access token is refused before any key is looked at
    idp.answer_tokens(&json!({"access_token": "opaque", "id_token": id_token}));
    assert!(p.exchange("c", &login(), true).await.is_err());
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": idp.base, "sub": "alice", "aud": CLIENT, "iat": now, "exp": now + 300}),
        &EncodingKey::from_secret(b"k"),
    )
    .unwrap();
    idp.answer_tokens(&json!({"access_token": hs, "id_token": id_token}));
    let e = p.exchange("c", &login(), true).await.err().unwrap();
    assert!(e.to_string().contains("is not allowed"), "{e}");
}

#[tokio::test]
async fn access_tokens_must_name_the_client_in_aud_without_the_azp_rule() {
    let idp = Idp::start().await;
    let p = idp
        .provider(&format!(
            r#"provider = "zkauth"
            oidc_authorize_url = "{b}/authorize"
            oidc_token_url = "{b}/token"
            oidc_jwks_url = "{b}/jwks""#,
            b = idp.base
        ))
        .await;
    let now = now_secs();
    let token = |c: Value, kid: &str| json!({"access_token": sign(&c, kid)});
    let good = json!({"iss": idp.base, "aud": CLIENT, "sub": "z", "iat": now, "exp": now + 60});
    idp.answer_tokens(&token(good.clone(), "key1"));
    assert!(p.exchange("c", &login(), false).await.is_ok());
    for (what, bad) in [
        (
            "aud",
            json!({"iss": idp.base, "aud": "account", "azp": CLIENT, "sub": "z", "iat": now, "exp": now + 60}),
        ),
        (
            "iss",
            json!({"iss": "https://evil.example", "aud": CLIENT, "sub": "z", "iat": now, "exp": now + 60}),
        ),
        (
            "exp",
            json!({"iss": idp.base, "aud": CLIENT, "sub": "z", "iat": now, "exp": now - 600}),
        ),
        (
            "sub",
            json!({"iss": idp.base, "aud": CLIENT, "iat": now, "exp": now + 60}),
        ),
    ] {
        idp.answer_tokens(&token(bad, "key1"));
        assert!(p.exchange("c", &login(), false).await.is_err(), "{what}");
    }
    // an unknown kid is looked for once in a refetched set, then refused
    idp.answer_tokens(&token(good, "key2"));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(e.to_string().contains("unknown key id"), "{e}");
    assert_eq!(idp.seen("/jwks").len(), 2);
}

#[tokio::test]
async fn an_access_token_without_kid_is_verified_only_against_a_single_key() {
    let idp = Idp::start().await;
    let cfg = format!(
        r#"provider = "zkauth"
        oidc_authorize_url = "{b}/authorize"
        oidc_token_url = "{b}/token"
        oidc_jwks_url = "{b}/jwks""#,
        b = idp.base
    );
    let p = idp.provider(&cfg).await;
    let now = now_secs();
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &json!({"iss": idp.base, "aud": CLIENT, "sub": "z", "iat": now, "exp": now + 60}),
        &EncodingKey::from_rsa_pem(KEY1_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    idp.answer_tokens(&json!({"access_token": no_kid}));
    assert!(p.exchange("c", &login(), false).await.is_ok());
    idp.set(|a| a.jwks = vec![KEY2_JWK, KEY1_JWK]);
    let two = idp.provider(&cfg).await;
    assert!(two.exchange("c", &login(), false).await.is_err());
    assert_eq!(
        two.find_jwk(Some("key1")).and_then(|k| k.common.key_id),
        Some("key1".to_owned())
    );
    assert!(two.find_jwk(Some("key3")).is_none());
    assert!(two.find_jwk(None).is_none());
    assert_eq!(
        p.find_jwk(None).and_then(|k| k.common.key_id),
        Some("key1".to_owned())
    );
}

/// A signed-in identity as a login would leave it, with a refresh token.
fn signed_in(sub: &str) -> Identity {
    Identity {
        subject: sub.to_owned(),
        email: Some("old@example.com".into()),
        email_verified: Some(true),
        preferred_username: Some("old-name".into()),
        name: Some("Old Name".into()),
        groups: vec!["old-group".into()],
        expires_at: 12345,
        tokens: Tokens {
            id_token: Some(Secret::new("old-id-token")),
            access_token: Some(Secret::new("old-at")),
            refresh_token: Some(Secret::new("rt-old")),
            access_token_expires_at: Some(1),
        },
        ..Identity::default()
    }
}

#[tokio::test]
async fn a_refresh_redeems_the_refresh_token_and_keeps_what_was_not_sent_again() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    idp.answer_tokens(&json!({"access_token": "at-new", "expires_in": 60}));
    let prev = signed_in("alice");
    let id = p.refresh(&prev, true).await.unwrap();
    assert_eq!(id.subject, "alice");
    assert_eq!(id.email, prev.email);
    assert_eq!(id.groups, prev.groups);
    assert_eq!(id.expires_at, 12345);
    assert_eq!(
        id.tokens.access_token.as_ref().map(Secret::expose),
        Some("at-new")
    );
    // not rotated: the old refresh token stays; the old ID token too
    assert_eq!(
        id.tokens.refresh_token.as_ref().map(Secret::expose),
        Some("rt-old")
    );
    assert_eq!(
        id.tokens.id_token.as_ref().map(Secret::expose),
        Some("old-id-token")
    );
    assert!(id.refreshed_at >= now_secs() - 5);
    let sent = idp.seen("/token");
    assert_eq!(
        form(&sent[0].body),
        pairs(&[("grant_type", "refresh_token"), ("refresh_token", "rt-old")])
    );
}

#[tokio::test]
async fn a_refreshed_id_token_updates_the_identity_and_must_name_the_same_user() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    // a refreshed ID token carries no nonce (OIDC Core 12.2)
    let mut claims = idp.id_claims("alice");
    claims.as_object_mut().unwrap().remove("nonce");
    claims["groups"] = json!(["new-group"]);
    let new_id_token = sign(&claims, "key1");
    idp.answer_tokens(
        &json!({"access_token": "at2", "id_token": new_id_token, "refresh_token": "rt-new"}),
    );
    let id = p.refresh(&signed_in("alice"), false).await.unwrap();
    assert_eq!(id.groups, ["new-group"]);
    // what the new token lacks is kept from the old identity
    assert_eq!(id.email.as_deref(), Some("old@example.com"));
    assert_eq!(id.email_verified, Some(true));
    assert_eq!(id.preferred_username.as_deref(), Some("old-name"));
    assert_eq!(id.name.as_deref(), Some("Old Name"));
    assert_eq!(id.expires_at, 12345);
    assert_eq!(
        id.tokens.refresh_token.as_ref().map(Secret::expose),
        Some("rt-new")
    );
    assert_eq!(
        id.tokens.id_token.as_ref().map(Secret::expose),
        Some(new_id_token.as_str())
    );
    assert!(id.tokens.access_token.is_none());
    // the userinfo endpoint is not asked again on refresh
    assert!(idp.seen("/userinfo").is_empty());
    // another user's tokens are refused
    claims["sub"] = json!("mallory");
    idp.answer_tokens(&json!({"access_token": "at3", "id_token": sign(&claims, "key1")}));
    match p.refresh(&signed_in("alice"), false).await {
        Err(RefreshError::Rejected(why)) => assert!(why.contains("another user"), "{why}"),
        other => panic!("{other:?}"),
    }
    // a refreshed ID token that does not verify: signed out
    claims["sub"] = json!("alice");
    claims["iss"] = json!("https://evil.example");
    idp.answer_tokens(&json!({"access_token": "at4", "id_token": sign(&claims, "key1")}));
    assert!(matches!(
        p.refresh(&signed_in("alice"), false).await,
        Err(RefreshError::Rejected(_))
    ));
}

#[tokio::test]
async fn refresh_errors_sign_out_only_when_the_provider_refused_the_grant() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let table: &[(u16, &str, bool)] = &[
        (400, r#"{"error":"invalid_grant"}"#, true),
        (401, r#"{"error":"invalid_client"}"#, true),
        (400, r#"{"error":"invalid_client"}"#, true),
        (401, r#"{"error":"invalid_grant"}"#, true),
        (400, r#"{"error":"invalid_request"}"#, false),
        (403, r#"{"error":"invalid_grant"}"#, false),
        (429, r#"{"error":"invalid_grant"}"#, false),
        (500, r#"{"error":"invalid_grant"}"#, false),
        (400, "garbage", false),
        (503, "", false),
    ];
    for (status, body, rejected) in table {
        idp.set(|a| a.token = (*status, (*body).to_owned()));
        match p.refresh(&signed_in("alice"), false).await {
            Err(RefreshError::Rejected(_)) if *rejected => {}
            Err(RefreshError::Unavailable(_)) if !rejected => {}
            other => panic!("{status} {body}: {other:?}"),
        }
    }
    // nothing to redeem: signed out without asking the provider
    let before = idp.seen("/token").len();
    let mut no_token = signed_in("alice");
    no_token.tokens.refresh_token = None;
    assert!(matches!(
        p.refresh(&no_token, false).await,
        Err(RefreshError::Rejected(_))
    ));
    assert_eq!(idp.seen("/token").len(), before);
}

#[tokio::test]
async fn a_provider_that_does_not_answer_in_time_is_a_transport_error() {
    let idp = Idp::start().await;
    let cfg = idp.config(r#"client_secret = "s3cret""#);
    let p = Provider::discover(&cfg, IdpHttp::new(Duration::from_millis(300)).unwrap())
        .await
        .unwrap();
    idp.set(|a| {
        a.token = (200, "{}".to_owned());
        a.token_delay = 2;
    });
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(matches!(e, IdpError::Transport(_)), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(matches!(
        p.refresh(&signed_in("alice"), false).await,
        Err(RefreshError::Unavailable(_))
    ));
}

#[tokio::test]
async fn answers_up_to_the_body_limit_are_read_and_larger_ones_refused() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    let id_token = sign(&claims, "key1");
    let padded = |n: usize| {
        json!({"access_token": "at", "id_token": id_token, "padding": "x".repeat(n)}).to_string()
    };
    idp.set(|a| a.token = (200, padded(64 * 1024)));
    assert!(p.exchange("c", &login(), false).await.is_ok());
    idp.set(|a| a.token = (200, padded(MAX_IDP_BODY)));
    let e = p.exchange("c", &login(), false).await.err().unwrap();
    assert!(matches!(e, IdpError::Transport(_)), "{e:?}");
}

#[tokio::test]
async fn the_slot_holds_the_provider_once_discovery_succeeds() {
    let idp = Idp::start().await;
    let cfg = idp.config(r#"client_secret = "s3cret""#);
    let slot = ProviderSlot::default();
    assert!(slot.get().is_none());
    tokio::time::timeout(
        Duration::from_secs(10),
        slot.discover_until_ready(&cfg, http()),
    )
    .await
    .unwrap();
    assert_eq!(
        slot.get().map(|p| p.issuer().to_owned()),
        Some(idp.base.clone())
    );
}

#[tokio::test]
async fn roles_in_a_refreshed_id_token_replace_the_old_ones() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let mut claims = idp.id_claims("alice");
    claims.as_object_mut().unwrap().remove("nonce");
    claims["realm_access"] = json!({"roles": ["new-role"]});
    idp.answer_tokens(&json!({"access_token": "at2", "id_token": sign(&claims, "key1")}));
    let mut prev = signed_in("alice");
    prev.roles = vec!["old-role".into()];
    let id = p.refresh(&prev, false).await.unwrap();
    assert_eq!(id.roles, ["new-role"]);
    // no new ID token: the roles stand as they were
    idp.answer_tokens(&json!({"access_token": "at3"}));
    let id = p.refresh(&prev, false).await.unwrap();
    assert_eq!(id.roles, ["old-role"]);
}

#[tokio::test]
async fn a_step_up_login_asks_acr_values_and_max_age_with_prompt_login() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let query = |acr_values: Option<&str>, max_age: Option<u64>| {
        let url = p
            .authorize_url(&LoginParams {
                acr_values,
                max_age,
                ..login()
            })
            .unwrap()
            .url;
        form(url.query().unwrap())
    };
    let step_up_params = |q: Vec<(String, String)>| {
        q.into_iter()
            .filter(|(k, _)| matches!(k.as_str(), "acr_values" | "max_age" | "prompt"))
            .collect::<Vec<_>>()
    };
    assert_eq!(step_up_params(query(None, None)), pairs(&[]));
    assert_eq!(
        step_up_params(query(Some("urn:a urn:b"), None)),
        pairs(&[("acr_values", "urn:a urn:b")])
    );
    assert_eq!(
        step_up_params(query(None, Some(600))),
        pairs(&[("max_age", "600"), ("prompt", "login")])
    );
    assert_eq!(
        step_up_params(query(Some("urn:a"), Some(60))),
        pairs(&[
            ("acr_values", "urn:a"),
            ("max_age", "60"),
            ("prompt", "login")
        ])
    );
}

#[tokio::test]
async fn a_login_keeps_the_id_tokens_acr_and_auth_time_and_a_refresh_keeps_the_logins() {
    let idp = Idp::start().await;
    let p = idp.provider(r#"client_secret = "s3cret""#).await;
    let mut claims = idp.id_claims("alice");
    claims["email"] = json!("a@example.com");
    claims["acr"] = json!("urn:example:mfa");
    claims["auth_time"] = json!(1_700_000_000u64);
    idp.answer_tokens(&json!({"access_token": "at-1", "id_token": sign(&claims, "key1")}));
    let id = p.exchange("c", &login(), false).await.unwrap().identity;
    assert_eq!(id.acr.as_deref(), Some("urn:example:mfa"));
    assert_eq!(id.auth_time, Some(1_700_000_000));
    // a refresh authenticates nobody: a new ID token's acr and auth_time
    // (or none) do not change how and when the user signed in
    claims.as_object_mut().unwrap().remove("nonce");
    claims["acr"] = json!("urn:example:other");
    claims["auth_time"] = json!(now_secs());
    let prev = Identity {
        refreshed_at: 0,
        ..signed_in("alice")
    };
    let prev = Identity {
        acr: id.acr.clone(),
        auth_time: id.auth_time,
        ..prev
    };
    idp.answer_tokens(&json!({"access_token": "at-2", "id_token": sign(&claims, "key1")}));
    let refreshed = p.refresh(&prev, false).await.unwrap();
    assert_eq!(refreshed.acr.as_deref(), Some("urn:example:mfa"));
    assert_eq!(refreshed.auth_time, Some(1_700_000_000));
    idp.answer_tokens(&json!({"access_token": "at-3"}));
    let refreshed = p.refresh(&prev, false).await.unwrap();
    assert_eq!(refreshed.acr.as_deref(), Some("urn:example:mfa"));
    assert_eq!(refreshed.auth_time, Some(1_700_000_000));
    // claims of the wrong type make an ID token that does not verify
    claims["nonce"] = json!(NONCE);
    for (acr, auth_time) in [(json!(2), json!(1)), (json!("x"), json!("yesterday"))] {
        claims["acr"] = acr;
        claims["auth_time"] = auth_time;
        idp.answer_tokens(&json!({"access_token": "at-4", "id_token": sign(&claims, "key1")}));
        let r = p.exchange("c", &login(), false).await;
        assert!(matches!(r, Err(IdpError::IdToken(_))), "{r:?}");
    }
}
