use super::*;

/// A line's JSON with its timestamp's value blanked (the two are made at
/// different instants).
fn untimed(line: &str) -> String {
    let start = line.find("\"timestamp\":\"").unwrap() + "\"timestamp\":\"".len();
    let end = start + line[start..].find('"').unwrap();
    format!("{}{}", &line[..start], &line[end..])
}

fn direct(line: &AccessLine<'_>) -> String {
    let mut out = String::new();
    json_line(&mut out, line, std::time::SystemTime::now()).unwrap();
    out
}

fn through_tracing(line: &AccessLine<'_>) -> String {
    crate::telemetry::tests::json_line(|| event(line))
}

const PLAIN: AccessLine<'static> = AccessLine {
    request_id: "952db98722b20000000000000001",
    method: "GET",
    path: "/",
    status: 200,
    latency_micros: 663,
    user: "alice",
    email: "alice@example.com",
    upstream: true,
    route: None,
    peer: "127.0.0.1",
    reason: None,
    rule: None,
    trace: None,
};

#[test]
fn the_direct_json_line_is_the_one_tracing_would_write() {
    let trace = (
        opentelemetry::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
    );
    let hostile = "/a\n{\"forged\":1}\u{1b}[31m\\ \u{2028} j\u{f6}rg \"q\"";
    let lines = [
        PLAIN,
        AccessLine {
            status: 403,
            latency_micros: 0,
            upstream: false,
            route: Some("admin \"area\""),
            reason: Some("not in an allowed group"),
            rule: Some("allowed_groups"),
            trace: Some(trace),
            ..PLAIN
        },
        AccessLine {
            path: hostile,
            user: hostile,
            email: hostile,
            method: "PURGE",
            peer: "2001:db8::1",
            latency_micros: u32::MAX,
            ..PLAIN
        },
    ];
    for line in &lines {
        let (ours, theirs) = (direct(line), through_tracing(line));
        assert_eq!(untimed(&ours), untimed(&theirs));
        assert_eq!(ours.lines().count(), 1, "{ours}");
        let v: serde_json::Value = serde_json::from_str(&ours).unwrap();
        assert_eq!(v["path"], line.path);
        assert_eq!(v["target"], "gatehouse::access");
    }
}

#[test]
fn what_came_from_a_request_or_a_provider_is_logged_escaped() {
    let forged = AccessLine {
        path: "/a\n{\"forged\":1}",
        user: "eve\r\nlevel=INFO",
        email: "a\\b\u{1b}[31m",
        ..PLAIN
    };
    let line = escaped(&forged, direct);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    // the values as escape_log writes them, the same in the text log
    assert_eq!(v["path"], "/a\\n{\"forged\":1}");
    assert_eq!(v["user"], "eve\\r\\nlevel=INFO");
    assert_eq!(v["email"], "a\\\\b\\u{1b}[31m");
    assert_eq!(v["request_id"], PLAIN.request_id, "ids are not escaped");
}

#[test]
fn milliseconds_are_written_as_f64_display_writes_them() {
    let check = |micros: u32| {
        let mut ours = String::new();
        push_millis(&mut ours, micros);
        assert_eq!(ours, (f64::from(micros) / 1000.0).to_string(), "{micros}");
    };
    for micros in 0..=20_000 {
        check(micros);
    }
    for micros in [
        100_000,
        100_001,
        123_450,
        999_999,
        1_000_000,
        4_294_967,
        u32::MAX - 1,
        u32::MAX,
    ] {
        check(micros);
    }
}

#[test]
fn numbers_are_written_in_decimal() {
    for n in [0, 7, 10, 200, 503, 65_535, u32::MAX] {
        let mut ours = String::new();
        push_u32(&mut ours, n);
        assert_eq!(ours, n.to_string());
    }
}
