use crate::config::Config;
use crate::routes::{HostMatch, PathMatch, Policy, Target};

const BASE: &str = r#"
upstream = "http://127.0.0.1:9"
client_id = "gatehouse"
client_secret = "s3cr3t-for-the-route-tests"
oidc_issuer_url = "https://idp.example.com/realms/x"
redirect_url = "https://app.example.com/oauth2/callback"
cookie_secret = "ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI="
email_domain = "*"
"#;

fn load(extra: &str) -> Result<Config, Vec<(String, String)>> {
    Config::from_toml_str(&format!("{BASE}\n{extra}"))
        .map_err(|e| e.problems.into_iter().map(|p| (p.key, p.reason)).collect())
}

fn problem(extra: &str, key: &str) -> String {
    let problems = load(extra).expect_err("the config should be refused");
    problems
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("no problem under {key}: {problems:?}"))
}

fn placed(c: &Config, host: &str, method: &str, path: &str) -> String {
    let m = http::Method::from_bytes(method.as_bytes()).unwrap();
    c.routes
        .find(&Target {
            host: Some(host),
            method: Some(&m),
            path,
        })
        .map(|p| p.route.name.clone())
        .unwrap()
}

#[test]
fn no_routes_leaves_only_the_default_route() {
    let c = load("").unwrap();
    assert!(c.routes.is_default_only());
}

#[test]
fn routes_are_read_in_file_order_with_what_each_says() {
    let c = load(
        r#"
[[routes]]
host = "*.Example.com."
path = "/health/"
policy = "public"

[[routes]]
path_regex = "^/api/"
methods = ["GET", "POST"]
api = true
allowed_groups = ["devs"]
upstream = "http://127.0.0.1:8081/base"

[[routes]]
host = "admin.example.com"
allowed_emails = ["boss@example.com"]
allowed_email_domains = ["@ops.example.com"]
"#,
    )
    .unwrap();
    let r = c.routes.routes();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].name, "routes[0]");
    assert_eq!(r[0].host, HostMatch::Subdomain(".example.com".into()));
    assert!(matches!(&r[0].path, PathMatch::Prefix(p) if p == "/health"));
    assert_eq!(r[0].policy, Policy::Public);
    assert!(matches!(&r[1].path, PathMatch::Regex(re) if re.as_str() == "^/api/"));
    assert_eq!(r[1].methods.as_ref().unwrap().len(), 2);
    assert!(r[1].api);
    assert!(matches!(&r[1].policy, Policy::Allow(l) if l.groups == ["devs"]));
    assert_eq!(
        r[1].upstream.as_ref().unwrap().as_str(),
        "http://127.0.0.1:8081/base"
    );
    assert!(
        matches!(&r[2].policy, Policy::Allow(l) if l.email_domains == ["ops.example.com"] && l.emails == ["boss@example.com"])
    );
    assert_eq!(r[3].name, "default");
    assert_eq!(placed(&c, "a.example.com", "GET", "/health"), "routes[0]");
    assert_eq!(placed(&c, "example.com", "GET", "/health"), "default");
    assert_eq!(placed(&c, "x", "DELETE", "/api/x"), "default");
    assert_eq!(placed(&c, "admin.example.com", "GET", "/"), "routes[2]");
}

#[test]
fn a_bad_route_is_refused_naming_its_key_and_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[routes]]\npath = \"api\"",
            "routes[0].path",
            "must start with /",
        ),
        (
            "[[routes]]\npath = \"/a/../b\"",
            "routes[0].path",
            ". or ..",
        ),
        ("[[routes]]\npath = \"/a%2fb\"", "routes[0].path", "/"),
        (
            "[[routes]]\npath = \"//a\"",
            "routes[0].path",
            "normal form: `/a`",
        ),
        ("[[routes]]\npath = \"/%61pi\"", "routes[0].path", "`/api`"),
        ("[[routes]]\npath = \"/a?x=1\"", "routes[0].path", "query"),
        (
            "[[routes]]\npath = \"/a\"\npath_regex = \"^/a\"",
            "routes[0].path_regex",
            "not both",
        ),
        (
            "[[routes]]\npath_regex = \"^/(a\"",
            "routes[0].path_regex",
            "not a valid regex",
        ),
        (
            "[[routes]]\npath_regex = \"\"",
            "routes[0].path_regex",
            "empty",
        ),
        (
            "[[routes]]\nhost = \"https://a.example.com\"",
            "routes[0].host",
            "without scheme",
        ),
        (
            "[[routes]]\nhost = \"a.example.com:443\"",
            "routes[0].host",
            "port",
        ),
        ("[[routes]]\nhost = \"*\"", "routes[0].host", "host name"),
        (
            "[[routes]]\nhost = \"a.*.example.com\"",
            "routes[0].host",
            "host name",
        ),
        (
            "[[routes]]\nmethods = [\"get\"]",
            "routes[0].methods",
            "capitals",
        ),
        (
            "[[routes]]\nmethods = []",
            "routes[0].methods",
            "matches nothing",
        ),
        (
            "[[routes]]\npolicy = \"open\"",
            "routes[0].policy",
            "`open`",
        ),
        (
            "[[routes]]\npolicy = \"public\"\nallowed_groups = [\"a\"]",
            "routes[0].policy",
            "signed-in",
        ),
        (
            "[[routes]]\npolicy = \"public\"\napi = true",
            "routes[0].api",
            "no effect",
        ),
        (
            "[[routes]]\nallowed_emails = [\"not-an-address\"]",
            "routes[0].allowed_emails",
            "not an email",
        ),
        (
            "[[routes]]\nallowed_email_domains = [\"a@b\"]",
            "routes[0].allowed_email_domains",
            "not a domain",
        ),
        (
            "[[routes]]\nallowed_groups = [\"\"]",
            "routes[0].allowed_groups",
            "empty",
        ),
        (
            "[[routes]]\nupstream = \"ftp://x\"",
            "routes[0].upstream",
            "",
        ),
        ("[[routes]]\npathh = \"/x\"", "routes[0]", "pathh"),
        (
            "[[routes]]\npath = \"/a\"\n[[routes]]\npath = 3",
            "routes[1]",
            "string",
        ),
        ("routes = \"/a\"", "routes", "[[routes]]"),
        (
            "skip_auth_route = [\"GET=^/(\"]",
            "skip_auth_route[0]",
            "not a valid regex",
        ),
        (
            "skip_auth_route = [\"get=^/x\"]",
            "skip_auth_route[0]",
            "capitals",
        ),
        ("api_route = [\"\"]", "api_route[0]", "empty"),
    ];
    for (extra, key, says) in cases {
        let why = problem(extra, key);
        assert!(why.contains(says), "{extra}: {key}: {why}");
    }
}

#[test]
fn a_route_that_can_never_match_is_a_start_up_error_naming_both() {
    let why = problem(
        "[[routes]]\npath = \"/api\"\n\n[[routes]]\npath = \"/api/admin\"\nallowed_groups = [\"admins\"]",
        "routes[1]",
    );
    assert!(why.contains("routes[0]"), "{why}");
    let why = problem(
        "skip_auth_route = [\"^/public\"]\n[[routes]]\npath_regex = \"^/public\"",
        "routes[0]",
    );
    assert!(why.contains("skip_auth_route[0]"), "{why}");
    // the narrower one first is the fix
    load("[[routes]]\npath = \"/api/admin\"\nallowed_groups = [\"admins\"]\n\n[[routes]]\npath = \"/api\"")
        .unwrap();
}

#[test]
fn oauth2_proxy_shorthands_become_routes_before_the_tables() {
    let c = load(
        r#"
skip_auth_preflight = true
skip_auth_routes = ["GET=^/health$", "^/static/", "POST=^/hook=x"]
skip_auth_regex = ["^/favicon"]
api_routes = ["^/api/"]

[[routes]]
path = "/"
allowed_groups = ["staff"]
"#,
    )
    .unwrap();
    let names: Vec<&str> = c.routes.routes().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "skip_auth_preflight",
            "skip_auth_route[0]",
            "skip_auth_route[1]",
            "skip_auth_route[2]",
            "skip_auth_regex[0]",
            "routes[0]",
            "default"
        ]
    );
    assert_eq!(
        placed(&c, "h", "OPTIONS", "/anything"),
        "skip_auth_preflight"
    );
    assert_eq!(placed(&c, "h", "GET", "/health"), "skip_auth_route[0]");
    // the method is part of the rule
    assert_eq!(placed(&c, "h", "POST", "/health"), "routes[0]");
    assert_eq!(placed(&c, "h", "POST", "/hook=x"), "skip_auth_route[2]");
    assert_eq!(placed(&c, "h", "GET", "/favicon.ico"), "skip_auth_regex[0]");
    // api_route marks paths; it is not a route that could take them
    assert_eq!(c.routes.api_paths().len(), 1);
    assert_eq!(placed(&c, "h", "GET", "/api/x"), "routes[0]");
    assert_eq!(placed(&c, "h", "GET", "/x"), "routes[0]");
    assert!(c.routes.routes()[..5].iter().all(|r| r.is_public()));
}

#[test]
fn check_config_warns_about_a_public_regex_that_is_not_anchored() {
    let c = load("skip_auth_route = [\"GET=/static/\", \"^/health$\"]\napi_route = [\"/api/\"]")
        .unwrap();
    let warnings = c.advisories();
    let keys: Vec<&str> = warnings.iter().map(|p| p.key.as_str()).collect();
    // the anchored one and the non-public one are fine
    assert_eq!(keys, ["skip_auth_route[0]"], "{warnings:?}");
    assert!(warnings[0].reason.contains("start it with ^"));
}

#[test]
fn a_regex_is_anchored_only_when_every_match_starts_at_the_start() {
    use super::anchored;
    for re in ["^/a", "(?i)^/x", "^(/a|/b)", "^/a|^/b", r"\A/a"] {
        assert!(anchored(re), "{re}");
    }
    for re in ["/a", "^/a|/b", "x^", ".*^/a|/b", "(^/a)?/b"] {
        assert!(!anchored(re), "{re}");
    }
}

#[test]
fn check_config_warns_when_an_earlier_public_regex_takes_part_of_a_later_route() {
    let c = load(
        "skip_auth_route = [\"^/api\", \"^/health$\"]\n[[routes]]\npath = \"/api/admin\"\nallowed_groups = [\"admins\"]\n[[routes]]\npath = \"/healthz\"\nallowed_groups = [\"ops\"]",
    )
    .unwrap();
    let warnings = c.advisories();
    let keys: Vec<&str> = warnings.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["routes[0]"], "{warnings:?}");
    assert!(
        warnings[0].reason.contains("skip_auth_route[0]"),
        "{warnings:?}"
    );
}
