use super::*;

#[test]
fn pages_escape_everything_from_outside() {
    assert_eq!(
        escape_html("<script>\"'&"),
        "&lt;script&gt;&quot;&#39;&amp;"
    );
}

#[test]
fn a_bad_location_becomes_root() {
    let r = redirect("/a\nb");
    assert_eq!(r.headers()[LOCATION], "/");
}

async fn body_text(r: Response<ProxyBody>) -> String {
    use http_body_util::BodyExt as _;
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn escape_html_leaves_other_text_alone() {
    assert_eq!(escape_html(""), "");
    assert_eq!(escape_html("plain é text/?=;"), "plain é text/?=;");
    assert_eq!(escape_html("a<b>c"), "a&lt;b&gt;c");
}

#[test]
fn a_redirect_is_a_302_that_is_never_cached() {
    let r = redirect("https://app.example.com/x?y=1");
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()[LOCATION], "https://app.example.com/x?y=1");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn pages_escape_title_message_and_link() {
    let r = page(
        StatusCode::FORBIDDEN,
        "<T>",
        "m&m",
        Some(("/x?a=1&b=\"2\"", "<go>")),
    );
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let html = body_text(r).await;
    assert!(html.contains("<title>&lt;T&gt;</title>"), "{html}");
    assert!(html.contains("<h1>&lt;T&gt;</h1>"), "{html}");
    assert!(html.contains("<p>m&amp;m</p>"), "{html}");
    assert!(
        html.contains(
            "<div class=\"actions\"><a href=\"/x?a=1&amp;b=&quot;2&quot;\">&lt;go&gt;</a></div>"
        ),
        "{html}"
    );
    let plain = body_text(page(StatusCode::OK, "t", "m", None)).await;
    assert!(!plain.contains("<a "), "{plain}");
    assert!(plain.contains("<p>m</p>"), "{plain}");
    assert!(plain.trim_end().ends_with("</html>"), "{plain}");
}

#[tokio::test]
async fn json_and_text_bodies_say_their_type() {
    let r = json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": "x"}));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(body_text(r).await, r#"{"error":"x"}"#);
    let r = text(StatusCode::SERVICE_UNAVAILABLE, "not ready");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(body_text(r).await, "not ready");
}

#[test]
fn own_answers_carry_nosniff_deny_framing_and_no_store() {
    let answers = [
        ("page", page(StatusCode::BAD_REQUEST, "t", "m", None), true),
        ("json", json(StatusCode::OK, &serde_json::json!({})), false),
        ("text", text(StatusCode::OK, "OK"), false),
        ("redirect", redirect("/x"), false),
    ];
    for (what, r, is_page) in answers {
        let h = r.headers();
        assert_eq!(h[X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
        assert_eq!(h[X_FRAME_OPTIONS], "DENY", "{what}");
        assert_eq!(h[CACHE_CONTROL], "no-store", "{what}");
        assert_eq!(
            h.get(CONTENT_SECURITY_POLICY)
                .is_some_and(|v| v == "frame-ancestors 'none'"),
            is_page,
            "{what}"
        );
        assert!(!h.contains_key(STRICT_TRANSPORT_SECURITY), "{what}");
    }
}

#[test]
fn hsts_is_added_to_own_answers_over_tls_only() {
    let mut own = text(StatusCode::OK, "OK");
    add_hsts(&mut own, false);
    assert!(!own.headers().contains_key(STRICT_TRANSPORT_SECURITY));
    add_hsts(&mut own, true);
    assert_eq!(own.headers()[STRICT_TRANSPORT_SECURITY], "max-age=31536000");
    // a proxied answer is not marked, so it is left alone
    let mut proxied = Response::new(empty());
    add_hsts(&mut proxied, true);
    assert!(proxied.headers().is_empty());
}

#[tokio::test]
async fn a_rendered_page_escapes_who_next_step_links_and_reference() {
    let r = render(&Page {
        status: StatusCode::FORBIDDEN,
        title: "t",
        what: "w",
        signed_in_as: Some("<b>eve</b>@x"),
        next: "n<i>",
        links: &[("/a", "A"), ("/b?c=\"", "<B>")],
        reference: Some("r<1>"),
    });
    let html = body_text(r).await;
    assert!(
        html.contains("You are signed in as <strong>&lt;b&gt;eve&lt;/b&gt;@x</strong>."),
        "{html}"
    );
    assert!(html.contains("<p>n&lt;i&gt;</p>"), "{html}");
    assert!(
        html.contains("<a href=\"/a\">A</a><a href=\"/b?c=&quot;\">&lt;B&gt;</a>"),
        "{html}"
    );
    assert!(
        html.contains("Reference: <code>r&lt;1&gt;</code>"),
        "{html}"
    );
    assert!(!html.contains("<b>eve"), "{html}");
}
