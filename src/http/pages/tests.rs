use super::*;
use http::StatusCode;

fn page<'a>(links: &'a [(&'a str, &'a str)]) -> Page<'a> {
    Page {
        status: StatusCode::BAD_REQUEST,
        title: "Sign-in expired",
        what: "This sign-in took too long.",
        signed_in_as: Some("alice@example.com"),
        next: "Please sign in again.",
        links,
        reference: Some("req-1234"),
    }
}

/// A fresh directory under the system temp dir for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-pages-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_built_in_page_says_what_happened_what_next_and_links_on() {
    let pages = Pages::load(None, None, None).unwrap();
    assert!(!pages.is_custom());
    let links = [("/oauth2/start", "Sign in again")];
    for kind in [
        PageKind::Error,
        PageKind::Forbidden,
        PageKind::SignIn,
        PageKind::SignedOut,
    ] {
        let html = pages.render(kind, &page(&links));
        assert!(html.starts_with("<!doctype html>"), "{kind:?}: {html}");
        assert!(html.contains("<title>Sign-in expired</title>"), "{kind:?}");
        assert!(html.contains("<h1>Sign-in expired</h1>"), "{kind:?}");
        assert!(
            html.contains("<p>This sign-in took too long.</p>"),
            "{kind:?}"
        );
        assert!(html.contains("<p>Please sign in again.</p>"), "{kind:?}");
        assert!(
            html.contains("<a href=\"/oauth2/start\">Sign in again</a>"),
            "{kind:?}: {html}"
        );
        // no banner or footer unless configured
        assert!(!html.contains("class=\"banner\""), "{kind:?}");
        assert!(!html.contains("<footer"), "{kind:?}");
    }
    // the error and 403 pages show the reference and who is signed in
    for kind in [PageKind::Error, PageKind::Forbidden] {
        let html = pages.render(kind, &page(&links));
        assert!(html.contains("<code>req-1234</code>"), "{kind:?}: {html}");
        assert!(
            html.contains("signed in as <strong>alice@example.com</strong>"),
            "{kind:?}: {html}"
        );
    }
}

#[test]
fn nothing_from_a_request_or_the_banner_can_add_markup() {
    let pages = Pages::load(
        None,
        Some("<b>Staging</b> & \"test\"".to_owned()),
        Some("<script>alert(1)</script>".to_owned()),
    )
    .unwrap();
    let links = [("javascript:\"><img src=x>", "<i>go</i>")];
    let p = Page {
        status: StatusCode::BAD_REQUEST,
        title: "<script>t()</script>",
        what: "refused (<img src=x onerror=alert(1)>)",
        signed_in_as: Some("\"><svg onload=x>"),
        next: "a & b",
        links: &links,
        reference: Some("<ref>"),
    };
    for kind in [
        PageKind::Error,
        PageKind::Forbidden,
        PageKind::SignIn,
        PageKind::SignedOut,
    ] {
        let html = pages.render(kind, &p);
        for raw in [
            "<script>",
            "<img",
            "<svg",
            "<b>",
            "<i>",
            "<ref>",
            "javascript:\"><",
        ] {
            assert!(!html.contains(raw), "{kind:?}: {raw} in {html}");
        }
        assert!(
            html.contains("&lt;b&gt;Staging&lt;/b&gt; &amp; &quot;test&quot;"),
            "{kind:?}: {html}"
        );
        assert!(
            html.contains("<footer>&lt;script&gt;alert(1)&lt;/script&gt;</footer>"),
            "{kind:?}: {html}"
        );
    }
}

#[test]
fn a_template_in_the_custom_dir_replaces_the_built_in_one_of_its_name() {
    let dir = temp_dir("override");
    std::fs::write(
        dir.join("forbidden.html"),
        "<html><body><h2>Acme says no: {{ what }}</h2>{% for l in links %}[{{ l.text }}]{% endfor %}\
         {{ banner }}|{{ footer }}|{{ status }}|{{ signed_in_as }}|{{ reference }}</body></html>",
    )
    .unwrap();
    // an override escapes too, whatever its file is called
    std::fs::write(dir.join("unrelated.txt"), "{{ not a template").unwrap();
    let pages = Pages::load(
        Some(&dir),
        Some("<Acme>".to_owned()),
        Some("(c) Acme".to_owned()),
    )
    .unwrap();
    assert!(pages.is_custom());
    let links = [("/oauth2/sign_out", "Sign out")];
    let mut p = page(&links);
    p.what = "<not in group>";
    p.status = StatusCode::FORBIDDEN;
    let html = pages.render(PageKind::Forbidden, &p);
    assert_eq!(
        html,
        "<html><body><h2>Acme says no: &lt;not in group&gt;</h2>[Sign out]\
         &lt;Acme&gt;|(c) Acme|403|alice@example.com|req-1234</body></html>"
    );
    // the others are still the built-in ones, with the banner
    let html = pages.render(PageKind::Error, &page(&links));
    assert!(html.contains("<h1>Sign-in expired</h1>"), "{html}");
    assert!(html.contains("&lt;Acme&gt;"), "{html}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_layout_can_be_replaced_alone() {
    let dir = temp_dir("layout");
    std::fs::write(
        dir.join(LAYOUT),
        "<main class=\"acme\">{% block content %}{% endblock %}</main>",
    )
    .unwrap();
    let pages = Pages::load(Some(&dir), None, None).unwrap();
    let html = pages.render(PageKind::SignedOut, &page(&[]));
    assert!(html.starts_with("<main class=\"acme\">"), "{html}");
    assert!(
        html.contains("<p>This sign-in took too long.</p>"),
        "{html}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_template_that_does_not_parse_is_refused_naming_the_file_and_line() {
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("sign_in.html"),
        "<h1>{{ title }}</h1>\n\n{% for l in links %}{{ l.text }}\n",
    )
    .unwrap();
    let err = Pages::load(Some(&dir), None, None).unwrap_err();
    let file = dir.join("sign_in.html");
    assert!(
        err.starts_with(&format!("{}, line ", file.display())),
        "{err}"
    );
    assert!(err.contains("syntax error"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    // a directory that is not there, or a file where the directory should be
    let err = Pages::load(Some(Path::new("/nonexistent/gatehouse")), None, None).unwrap_err();
    assert!(err.contains("/nonexistent/gatehouse"), "{err}");
    let err = Pages::load(Some(Path::new("/etc/hostname")), None, None).unwrap_err();
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn a_custom_template_failing_at_render_time_falls_back_to_the_built_in_page() {
    let dir = temp_dir("runtime");
    // parses, but calls something that does not exist
    std::fs::write(dir.join("error.html"), "{{ nothing_here() }}").unwrap();
    let pages = Pages::load(Some(&dir), None, None).unwrap();
    let html = pages.render(PageKind::Error, &page(&[]));
    assert!(html.contains("<h1>Sign-in expired</h1>"), "{html}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_blank_banner_or_footer_shows_nothing() {
    let pages = Pages::load(None, Some("  ".to_owned()), Some(String::new())).unwrap();
    let html = pages.render(PageKind::Error, &page(&[]));
    assert!(!html.contains("class=\"banner\""), "{html}");
    assert!(!html.contains("<footer"), "{html}");
}

#[tokio::test]
async fn the_current_request_renders_with_its_own_pages() {
    let branded = Pages::load(None, Some("Branded".to_owned()), None).unwrap();
    let inside = scope(&branded, async {
        render_current(PageKind::SignedOut, &page(&[]))
    })
    .await;
    assert!(inside.contains(">Branded<"), "{inside}");
    let outside = render_current(PageKind::SignedOut, &page(&[]));
    assert!(!outside.contains("Branded"), "{outside}");
}

#[test]
fn plain_pages_are_the_built_in_ones_compiled_once() {
    // a request's scope leaves plain pages out and renders the built-in
    // ones: loading plain pages must be those, not a second copy
    let plain = Pages::load(None, Some("  ".to_owned()), None).unwrap();
    assert!(Arc::ptr_eq(&plain.0, &Pages::built_in().0));
    let branded = Pages::load(None, Some("Branded".to_owned()), None).unwrap();
    assert!(!Arc::ptr_eq(&branded.0, &Pages::built_in().0));
}
