//! Issue 12: what ships in `deploy/` is checked here, offline. Every YAML
//! file parses; the Kubernetes manifests and the Helm chart's rendered
//! objects validate against the Kubernetes JSON schemas (strict: an unknown
//! field fails); `helm lint --strict` is clean; the configuration they carry
//! loads; the systemd unit passes `systemd-analyze verify` and keeps a low
//! exposure score; the Dockerfile, the manifests and the chart agree on the
//! user and the port.
//!
//! The tools: `python3` with PyYAML, `kubernetes-validate` (bundles the
//! schemas) and `helm-python-sdk` (Helm's Go code as a library), installed
//! by `.ci/run` into `target/ci-tools/python`; `systemd-analyze` (Debian's
//! `systemd`). A missing tool fails the test under `CI=true` or
//! `GATEHOUSE_REQUIRE_E2E=1`, and is skipped with one loud line otherwise.
//! `deploy/docker/build.sh` (the Dockerfile's build without Docker) is a
//! release build, so `.ci/run` runs it after the tests rather than here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
const INSTALL: &str = "run .ci/run, or: pip install --target target/ci-tools/python \
                       kubernetes-validate==1.37.0 helm-python-sdk==0.2.2, and \
                       apt-get install -y systemd python3";

/// Whether a missing tool is a failure rather than a skip.
fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("GATEHOUSE_REQUIRE_E2E").is_ok_and(|v| v == "1")
}

/// A tool is missing: fail under CI, else say loudly what was skipped.
fn missing(test: &str, what: &str) {
    assert!(
        !tools_required(),
        "{test}: {what} is missing (CI requires it): {INSTALL}"
    );
    eprintln!("SKIPPED {test}: {what} is missing; {INSTALL}");
}

/// Runs `python3 deploy/check.py args` with the CI tools on the path;
/// `None` when a tool is missing (and the test may skip).
fn deploy_check(test: &str, args: &[&str]) -> Option<Output> {
    let tools = Path::new(ROOT).join("target/ci-tools/python");
    let path = match std::env::var_os("PYTHONPATH") {
        Some(p) => {
            std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(&p))).unwrap()
        }
        None => tools.into_os_string(),
    };
    let out = match Command::new("python3")
        .arg(Path::new(ROOT).join("deploy/check.py"))
        .args(args)
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            missing(test, &format!("python3 ({e})"));
            return None;
        }
    };
    if out.status.code() == Some(3) {
        missing(test, String::from_utf8_lossy(&out.stderr).trim());
        return None;
    }
    Some(out)
}

/// `deploy/check.py cmd` exits 0; its report is printed either way.
fn assert_check_passes(test: &str, cmd: &str) {
    let Some(out) = deploy_check(test, &[cmd]) else {
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "deploy/check.py {cmd}:\n{text}");
    assert!(text.contains("deploy-check: "), "{text}");
}

#[test]
fn every_yaml_file_in_deploy_parses() {
    assert_check_passes("every_yaml_file_in_deploy_parses", "yaml");
}

#[test]
fn the_kubernetes_manifests_validate_against_the_kubernetes_schemas_offline() {
    assert_check_passes(
        "the_kubernetes_manifests_validate_against_the_kubernetes_schemas_offline",
        "kubernetes",
    );
}

#[test]
fn the_helm_chart_is_clean_under_helm_lint_strict() {
    assert_check_passes(
        "the_helm_chart_is_clean_under_helm_lint_strict",
        "helm-lint",
    );
}

#[test]
fn the_helm_chart_renders_schema_valid_objects_for_every_value_set() {
    assert_check_passes(
        "the_helm_chart_renders_schema_valid_objects_for_every_value_set",
        "helm-template",
    );
}

/// A temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gatehouse-deploy-{label}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The gatehouse.toml the manifests and the chart ship is a configuration
/// gatehouse accepts once the Secret's two values come in (as the
/// Deployment passes them, through the environment: here appended).
#[test]
fn the_configuration_the_manifests_and_the_chart_ship_loads() {
    let test = "the_configuration_the_manifests_and_the_chart_ship_loads";
    let dir = TempDir::new("configs");
    let Some(out) = deploy_check(test, &["configs", dir.0.to_str().unwrap()]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["kubernetes.toml", "helm.toml"] {
        let text = std::fs::read_to_string(dir.0.join(name)).unwrap();
        let text = format!(
            "{text}\nclient_secret = \"a-client-secret-from-the-secret\"\n\
             cookie_secret = \"ztMii7aLbqi39JgIWAbEhptnH3zxY8b/68Vs3r8bfZI=\"\n"
        );
        if let Err(e) = gatehouse::Config::from_toml_str(&text) {
            panic!("{name} as shipped does not load: {e}\n{text}");
        }
        // the container listens where the probes and the Service look
        assert!(text.contains("http_address = \"0.0.0.0:4180\""), "{name}");
    }
}

/// `systemd-analyze`, or `None` (after the skip note) when it is missing.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    for p in ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    missing(test, "systemd-analyze (Debian package `systemd`)");
    None
}

/// The unit as shipped, its `ExecStart` binary pointed at the one built
/// (verify needs it to exist), in a temp dir.
fn unit_copy(dir: &TempDir) -> PathBuf {
    let unit =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/systemd/gatehouse.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/gatehouse "),
        "the unit's ExecStart moved: update this test"
    );
    let path = dir.0.join("gatehouse.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/gatehouse", BIN)).unwrap();
    path
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify_without_a_word() {
    let test = "the_systemd_unit_passes_systemd_analyze_verify_without_a_word";
    let Some(analyze) = systemd_analyze(test) else {
        return;
    };
    let dir = TempDir::new("unit");
    let unit = unit_copy(&dir);
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // an unknown key or a bad value is only a warning to verify: any word
    // at all is a failure here
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{text}",
        out.status
    );
}

/// `systemd-analyze security` rates what the service could do if taken
/// over, from 0 (nothing) to 10; 2 or less is what the hardening is for.
#[test]
fn the_systemd_unit_exposure_score_is_at_most_2() {
    let test = "the_systemd_unit_exposure_score_is_at_most_2";
    let Some(analyze) = systemd_analyze(test) else {
        return;
    };
    let dir = TempDir::new("security");
    let unit = unit_copy(&dir);
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line}"));
    eprintln!("{line}");
    assert!(score <= 2.0, "{line}\n{text}");
}

/// One `KEY VALUE` line of the Dockerfile's runtime stage (the last `FROM`).
fn runtime_stage(instruction: &str) -> Vec<String> {
    let dockerfile =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/docker/Dockerfile")).unwrap();
    let last_from = dockerfile.rfind("\nFROM ").unwrap();
    dockerfile[last_from..]
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{instruction} ")))
        .map(str::to_owned)
        .collect()
}

/// The image's user and port are what the manifests, the chart and the
/// unit's notes count on: a change to one is a change to all.
#[test]
fn the_image_manifests_and_chart_agree_on_the_non_root_user_and_the_port() {
    let user = runtime_stage("USER");
    assert_eq!(user, ["65532:65532"], "a fixed numeric non-root uid");
    assert_eq!(runtime_stage("EXPOSE"), ["4180"]);
    let env = runtime_stage("ENV");
    assert!(
        env.iter()
            .any(|e| e == "GATEHOUSE_HTTP_ADDRESS=0.0.0.0:4180"),
        "{env:?}"
    );
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).unwrap();
    for (file, want) in [
        ("deploy/kubernetes/deployment.yaml", "runAsUser: 65532"),
        ("deploy/kubernetes/deployment.yaml", "containerPort: 4180"),
        (
            "deploy/kubernetes/deployment.yaml",
            "readOnlyRootFilesystem: true",
        ),
        ("deploy/helm/gatehouse/values.yaml", "runAsUser: 65532"),
        ("deploy/helm/gatehouse/values.yaml", "targetPort: 4180"),
        (
            "deploy/helm/gatehouse/values.yaml",
            "readOnlyRootFilesystem: true",
        ),
    ] {
        assert!(read(file).contains(want), "{file} lacks `{want}`");
    }
    // what build.sh needs of .dockerignore: it lets the build's inputs in
    let ignore = read(".dockerignore");
    for keep in ["!Cargo.toml", "!Cargo.lock", "!build.rs", "!src/"] {
        assert!(ignore.lines().any(|l| l == keep), "{keep}");
    }
    // cargo runs build.rs (the --version facts): the builder must copy it
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.starts_with("COPY ") && l.split_whitespace().any(|w| w == "build.rs")),
        "the Dockerfile's builder does not COPY build.rs"
    );
}

/// Every `proxy_pass` in `deploy/nginx/gatehouse.conf` (gatehouse's pages,
/// the auth subrequest, the application) goes to an `upstream` block with
/// `keepalive`, over HTTP/1.1 with `Connection ""`: without them nginx opens
/// a TCP connection per request, which halved the whole chain's throughput
/// (`make bench`, the nginx auth_request row).
#[test]
fn the_nginx_deploy_file_keeps_every_upstream_connection_alive() {
    let conf =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/nginx/gatehouse.conf")).unwrap();
    let lines: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let mut kept_alive = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l
            .strip_prefix("upstream ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            let body: Vec<&&str> = lines[i + 1..].iter().take_while(|l| **l != "}").collect();
            if body.iter().any(|l| l.starts_with("keepalive ")) {
                kept_alive.push(name.to_owned());
            }
        }
    }
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(target) = l.strip_prefix("proxy_pass http://") else {
            continue;
        };
        let name: String = target
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            kept_alive.contains(&name),
            "`{l}`: not an upstream block with keepalive (upstreams kept alive: {kept_alive:?})"
        );
        // the location around it: back to its opening line, on to its `}`
        let start = lines[..i].iter().rposition(|l| l.ends_with('{')).unwrap();
        let end = i + lines[i..].iter().position(|l| *l == "}").unwrap();
        let block = &lines[start..end];
        for needed in ["proxy_http_version 1.1;", "proxy_set_header Connection"] {
            assert!(
                block.iter().any(|l| l.starts_with(needed)),
                "the location of `{l}` ({}) lacks `{needed}`",
                lines[start]
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} proxy_pass lines found");
}
