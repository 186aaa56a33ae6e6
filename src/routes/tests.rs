use super::*;

fn route(name: &str, host: HostMatch, path: PathMatch, methods: Option<&[&str]>) -> Route {
    Route {
        name: name.to_owned(),
        index: 0,
        host,
        path,
        methods: methods.map(|ms| {
            ms.iter()
                .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                .collect()
        }),
        policy: Policy::Authenticated,
        api: false,
        upstream: None,
        bearer: false,
        providers: None,
        step_up: None,
    }
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.to_owned())
}

fn regex(r: &str) -> PathMatch {
    PathMatch::Regex(Regex::new(r).unwrap())
}

fn exact(h: &str) -> HostMatch {
    HostMatch::Exact(h.to_owned())
}

fn sub(h: &str) -> HostMatch {
    HostMatch::Subdomain(h.to_owned())
}

fn name_of(t: &RouteTable, host: Option<&str>, method: Option<&str>, path: &str) -> String {
    let m = method.map(|m| Method::from_bytes(m.as_bytes()).unwrap());
    match t.find(&Target {
        host,
        method: m.as_ref(),
        path,
    }) {
        Ok(p) => p.route.name.clone(),
        Err(Unplaced(why)) if why.contains("X-Forwarded-Method") => "method unknown".to_owned(),
        Err(Unplaced(why)) => format!("refused: {why}"),
    }
}

#[test]
fn hosts_match_without_regard_to_case_trailing_dot_or_port() {
    let t = RouteTable::new(
        vec![
            route("app", exact("app.example.com"), PathMatch::Any, None),
            route("v6", exact("[::1]"), PathMatch::Any, None),
        ],
        Vec::new(),
    )
    .unwrap();
    let cases: &[(Option<&str>, &str)] = &[
        (Some("app.example.com"), "app"),
        (Some("APP.Example.COM"), "app"),
        (Some("app.example.com."), "app"),
        (Some("app.example.com:8443"), "app"),
        (Some("app.example.com.:80"), "app"),
        (Some("[::1]:4180"), "v6"),
        (Some("[::1]"), "v6"),
        // not the same host
        (Some("app.example.com.evil.test"), "default"),
        (Some("xapp.example.com"), "default"),
        (Some("a.app.example.com"), "default"),
        (Some("app.example.co"), "default"),
        (Some(""), "refused: the Host header is not a host name"),
        (None, "default"),
    ];
    for (host, want) in cases {
        assert_eq!(name_of(&t, *host, Some("GET"), "/"), *want, "{host:?}");
    }
}

#[test]
fn a_wildcard_host_matches_subdomains_at_any_depth_but_not_the_domain_itself() {
    let t = RouteTable::new(
        vec![route("wild", sub(".example.com"), PathMatch::Any, None)],
        Vec::new(),
    )
    .unwrap();
    for (host, want) in [
        ("a.example.com", "wild"),
        ("A.B.Example.Com.", "wild"),
        ("a.example.com:8080", "wild"),
        ("example.com", "default"),
        (
            ".example.com",
            "refused: the Host header is not a host name",
        ),
        ("evilexample.com", "default"),
        ("a.example.com.evil.test", "default"),
        ("example.com.", "default"),
    ] {
        assert_eq!(name_of(&t, Some(host), Some("GET"), "/"), want, "{host}");
    }
}

#[test]
fn a_path_prefix_matches_on_segment_boundaries_only() {
    let t = RouteTable::new(
        vec![route("api", HostMatch::Any, prefix("/api"), None)],
        Vec::new(),
    )
    .unwrap();
    for (path, want) in [
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/v1/x", "api"),
        ("/apix", "default"),
        ("/ap", "default"),
        ("/", "default"),
        ("/x/api", "default"),
        ("/API", "default"),
    ] {
        assert_eq!(name_of(&t, None, Some("GET"), path), want, "{path}");
    }
}

#[test]
fn a_path_regex_is_searched_anywhere_unless_anchored() {
    let t = RouteTable::new(
        vec![
            route("anchored", HostMatch::Any, regex("^/health$"), None),
            route("loose", HostMatch::Any, regex("/static/"), None),
        ],
        Vec::new(),
    )
    .unwrap();
    for (path, want) in [
        ("/health", "anchored"),
        ("/health/x", "default"),
        ("/x/health", "default"),
        ("/static/app.js", "loose"),
        ("/admin/static/x", "loose"),
    ] {
        assert_eq!(name_of(&t, None, Some("GET"), path), want, "{path}");
    }
}

#[test]
fn methods_match_case_sensitively_and_an_unknown_method_is_never_guessed() {
    let t = RouteTable::new(
        vec![
            route(
                "reads",
                HostMatch::Any,
                prefix("/docs"),
                Some(&["GET", "HEAD"]),
            ),
            route("rest", HostMatch::Any, prefix("/docs"), None),
            route("any", HostMatch::Any, prefix("/other"), None),
        ],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(name_of(&t, None, Some("GET"), "/docs/a"), "reads");
    assert_eq!(name_of(&t, None, Some("HEAD"), "/docs"), "reads");
    assert_eq!(name_of(&t, None, Some("POST"), "/docs/a"), "rest");
    // `get` is another method to HTTP, and `GET` to many frameworks: never
    // placed on a later route as if it were neither
    assert_eq!(
        name_of(&t, None, Some("get"), "/docs/a"),
        "refused: the method is not written in capitals"
    );
    assert_eq!(name_of(&t, None, Some("get"), "/other"), "any");
    // a front proxy that did not say: which route applies depends on it
    assert_eq!(name_of(&t, None, None, "/docs/a"), "method unknown");
    // a route that names no methods needs none
    assert_eq!(name_of(&t, None, None, "/other"), "any");
    assert_eq!(name_of(&t, None, None, "/elsewhere"), "default");
}

#[test]
fn the_first_route_that_matches_wins() {
    let t = RouteTable::new(
        vec![
            route("admin", exact("app.example.com"), prefix("/admin"), None),
            route("app", exact("app.example.com"), PathMatch::Any, None),
            route("admin-anywhere", HostMatch::Any, prefix("/admin"), None),
        ],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(
        name_of(&t, Some("app.example.com"), Some("GET"), "/admin/x"),
        "admin"
    );
    assert_eq!(
        name_of(&t, Some("app.example.com"), Some("GET"), "/x"),
        "app"
    );
    assert_eq!(
        name_of(&t, Some("other.example.com"), Some("GET"), "/admin"),
        "admin-anywhere"
    );
    assert_eq!(t.routes().len(), 4);
    assert_eq!(t.fallback().name, "default");
    assert!(
        t.routes().iter().enumerate().all(|(i, r)| r.index == i),
        "routes are numbered in order"
    );
    assert!(!t.is_default_only());
    assert!(RouteTable::default().is_default_only());
}

#[test]
fn a_route_hidden_behind_an_earlier_one_is_named_with_it() {
    let shadowed =
        |earlier: Route, later: Route| RouteTable::new(vec![earlier, later], Vec::new()).err();
    let pair = Some(("a".to_owned(), "b".to_owned()));
    let any = || PathMatch::Any;
    let cases: Vec<(Route, Route, bool)> = vec![
        // a catch-all hides everything after it
        (
            route("a", HostMatch::Any, any(), None),
            route("b", exact("x.test"), prefix("/p"), Some(&["GET"])),
            true,
        ),
        // a wider prefix hides a narrower one, not the other way round
        (
            route("a", HostMatch::Any, prefix("/api"), None),
            route("b", HostMatch::Any, prefix("/api/v1"), None),
            true,
        ),
        (
            route("a", HostMatch::Any, prefix("/api/v1"), None),
            route("b", HostMatch::Any, prefix("/api"), None),
            false,
        ),
        (
            route("a", HostMatch::Any, prefix("/api"), None),
            route("b", HostMatch::Any, prefix("/apix"), None),
            false,
        ),
        (
            route("a", HostMatch::Any, prefix("/api"), None),
            route("b", HostMatch::Any, prefix("/api"), None),
            true,
        ),
        // hosts
        (
            route("a", sub(".example.com"), any(), None),
            route("b", exact("app.example.com"), any(), None),
            true,
        ),
        (
            route("a", sub(".example.com"), any(), None),
            route("b", sub(".x.example.com"), any(), None),
            true,
        ),
        (
            route("a", sub(".example.com"), any(), None),
            route("b", exact("example.com"), any(), None),
            false,
        ),
        (
            route("a", exact("app.example.com"), any(), None),
            route("b", sub(".example.com"), any(), None),
            false,
        ),
        (
            route("a", exact("a.test"), any(), None),
            route("b", exact("b.test"), any(), None),
            false,
        ),
        // methods: the later one's must all be in the earlier one's
        (
            route("a", HostMatch::Any, prefix("/p"), Some(&["GET", "POST"])),
            route("b", HostMatch::Any, prefix("/p"), Some(&["GET"])),
            true,
        ),
        (
            route("a", HostMatch::Any, prefix("/p"), Some(&["GET"])),
            route("b", HostMatch::Any, prefix("/p"), None),
            false,
        ),
        (
            route("a", HostMatch::Any, prefix("/p"), Some(&["GET"])),
            route("b", HostMatch::Any, prefix("/p"), Some(&["GET", "POST"])),
            false,
        ),
        // a regex is only known to cover itself
        (
            route("a", HostMatch::Any, regex("^/p"), None),
            route("b", HostMatch::Any, regex("^/p"), None),
            true,
        ),
        (
            route("a", HostMatch::Any, regex("^/p"), None),
            route("b", HostMatch::Any, prefix("/p"), None),
            false,
        ),
        (
            route("a", HostMatch::Any, prefix("/p"), None),
            route("b", HostMatch::Any, regex("^/p"), None),
            false,
        ),
    ];
    for (i, (a, b, hidden)) in cases.into_iter().enumerate() {
        let want = if hidden { pair.clone() } else { None };
        assert_eq!(shadowed(a, b), want, "case {i}");
    }
}

#[test]
fn allow_lists_admit_a_user_in_any_one_of_them() {
    let lists = AllowLists {
        groups: vec!["admins".into()],
        roles: vec!["app:editor".into()],
        emails: vec!["Boss@Example.com".into()],
        email_domains: vec!["partner.test".into()],
    };
    let who = |groups: &[&str], roles: &[&str], email: Option<&str>| Identity {
        subject: "u".into(),
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        roles: roles.iter().map(|s| (*s).to_owned()).collect(),
        email: email.map(str::to_owned),
        ..Identity::default()
    };
    assert!(lists.admits(&who(&["admins"], &[], None)));
    assert!(lists.admits(&who(&[], &["app:editor"], None)));
    assert!(lists.admits(&who(&[], &[], Some("boss@example.COM"))));
    assert!(lists.admits(&who(&[], &[], Some("anyone@PARTNER.test"))));
    assert!(!lists.admits(&who(
        &["Admins", "users"],
        &["editor"],
        Some("x@example.com")
    )));
    assert!(!lists.admits(&who(&[], &[], None)));
    // a malformed address is nobody's, even when it ends in an allowed domain
    assert!(!lists.admits(&who(&[], &[], Some("a@b@partner.test"))));
    assert!(!lists.admits(&who(&[], &[], Some("x@evil.test@partner.test"))));
    assert!(!lists.admits(&who(&[], &[], Some("x@sub.partner.test"))));
    let r = Route {
        policy: Policy::Allow(lists),
        ..route("r", HostMatch::Any, PathMatch::Any, None)
    };
    assert_eq!(r.admits(&who(&[], &[], None)), Err(DenyReason::Route));
    assert_eq!(r.admits(&who(&["admins"], &[], None)), Ok(()));
    let open = route("o", HostMatch::Any, PathMatch::Any, None);
    assert_eq!(open.admits(&who(&[], &[], None)), Ok(()));
}

#[test]
fn check_config_lists_each_route_on_one_line() {
    let r = Route {
        methods: Some(vec![Method::GET, Method::HEAD]),
        policy: Policy::Allow(AllowLists {
            groups: vec!["admins".into()],
            email_domains: vec!["example.com".into()],
            ..AllowLists::default()
        }),
        api: true,
        upstream: Some("http://10.0.0.1:8080/".parse().unwrap()),
        ..route("routes[1]", sub(".example.com"), prefix("/admin"), None)
    };
    assert_eq!(
        r.to_string(),
        "routes[1]              host *.example.com, path /admin, GET|HEAD -> signed in and one of \
         groups [admins] email domains [example.com], 401 not redirect, upstream http://10.0.0.1:8080/"
    );
    assert_eq!(
        Route::fallback(3).to_string(),
        "default                host *, any path -> signed in"
    );
}

#[test]
fn head_goes_where_get_does() {
    let t = RouteTable::new(
        vec![
            route("reads", HostMatch::Any, prefix("/p"), Some(&["GET"])),
            route("rest", HostMatch::Any, prefix("/p"), None),
        ],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(name_of(&t, None, Some("HEAD"), "/p"), "reads");
    assert_eq!(name_of(&t, None, Some("POST"), "/p"), "rest");
}

#[test]
fn paths_are_matched_without_their_semicolon_parameters() {
    let t = RouteTable::new(
        vec![
            route("admin", HostMatch::Any, prefix("/admin"), None),
            route("js", HostMatch::Any, regex(r"\.js$"), None),
        ],
        Vec::new(),
    )
    .unwrap();
    for (path, want) in [
        // what Tomcat and Jetty serve as /admin/secret
        ("/admin;x/secret", "admin"),
        ("/admin%3Bx/secret", "admin"),
        ("/admin;jsessionid=1", "admin"),
        ("/admin/users;.js", "admin"),
        ("/app.js;v=1", "js"),
        ("/x/users;.js", "default"),
        ("/adminx;y", "default"),
    ] {
        assert_eq!(name_of(&t, None, Some("GET"), path), want, "{path}");
    }
    assert_eq!(without_parameters("/a;b/c%3Bd/e"), "/a/c/e");
    assert!(matches!(
        without_parameters("/a/b"),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn a_host_that_is_not_a_host_name_is_refused_where_routes_name_hosts() {
    let t = RouteTable::new(
        vec![route(
            "admin",
            exact("admin.example.com"),
            PathMatch::Any,
            None,
        )],
        Vec::new(),
    )
    .unwrap();
    for host in [
        "admin.example.com..",
        "x@admin.example.com",
        "admin..example.com",
        "admin.example.com%00",
        "[not-v6]",
        ":80",
    ] {
        assert!(
            name_of(&t, Some(host), Some("GET"), "/").starts_with("refused"),
            "{host}"
        );
    }
    for host in [
        "admin.example.com.",
        "10.0.0.1:80",
        "[::1]:8080",
        "other.test",
    ] {
        assert!(
            !name_of(&t, Some(host), Some("GET"), "/").starts_with("refused"),
            "{host}"
        );
    }
    // with no host routes, the Host is not looked at
    let t = RouteTable::new(
        vec![route("p", HostMatch::Any, prefix("/p"), None)],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(name_of(&t, Some("a..b"), Some("GET"), "/p"), "p");
}

#[test]
fn an_api_path_answers_401_on_whatever_route_it_is_on() {
    let strict = Route {
        policy: Policy::Allow(AllowLists {
            groups: vec!["admins".into()],
            ..AllowLists::default()
        }),
        ..route("admin", HostMatch::Any, prefix("/api/admin"), None)
    };
    let t = RouteTable::new(vec![strict], vec![Regex::new("^/api/").unwrap()]).unwrap();
    let placed = |path: &str| {
        let p = t
            .find(&Target {
                host: None,
                method: Some(&Method::GET),
                path,
            })
            .unwrap();
        (p.route.name.clone(), p.api)
    };
    // the stricter route still applies to its paths
    assert_eq!(placed("/api/admin/users"), ("admin".to_owned(), true));
    assert_eq!(placed("/api/x"), ("default".to_owned(), true));
    assert_eq!(placed("/x"), ("default".to_owned(), false));
    assert!(!t.is_default_only());
}
