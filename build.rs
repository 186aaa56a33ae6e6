//! Build information for `--version` (read by `src/build_info.rs`): the git
//! commit, the compiler, the target and the profile. Cheap: one `rustc
//! --version`, and `git` only when the commit is not given.
//!
//! The commit comes from `GATEHOUSE_GIT_COMMIT` when set (a container or
//! package build without `.git`), else from `git rev-parse` in release
//! builds (which then rebuild when HEAD moves); debug builds say `unknown`
//! rather than keep a commit that goes stale at the next one.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty() && !text.contains('\n')).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_GIT_COMMIT");
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_owned());
    let commit = std::env::var("GATEHOUSE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            if profile != "release" {
                return None;
            }
            let head = run("git", &["rev-parse", "--git-path", "HEAD"])?;
            println!("cargo:rerun-if-changed={head}");
            if let Some(r) = run("git", &["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = run("git", &["rev-parse", "--git-path", &r])
            {
                println!("cargo:rerun-if-changed={path}");
            }
            run("git", &["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=GATEHOUSE_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=GATEHOUSE_BUILD_RUSTC={rustc_version}");
    println!("cargo:rustc-env=GATEHOUSE_BUILD_TARGET={target}");
    println!("cargo:rustc-env=GATEHOUSE_BUILD_PROFILE={profile}");
    symbol_order(&profile, &rustc, &target);
}

/// Release builds link the functions named in `src/symbol-order.txt` first,
/// in its order: the code that starting, signing in and serving a signed-in
/// request run, about 2.8 of the 12 MB of text. Laid out as the compiler
/// leaves it, that code is spread over the whole text, and the kernel maps
/// a binary's pages 64 KiB at a time around each one touched: 9 MB of it
/// was resident in an idle process, 3 MB is now (see the README's Code
/// layout section, which also says how to make the list again).
///
/// Only where the linker takes the option: `lld`, rustc's own linker for
/// this target since Rust 1.90 in rust-lang's builds (a distribution's
/// rustc, or a configured GNU ld, gold or mold, may not). Rather than guess
/// from the flags, a tiny program is linked with it first, with the same
/// rustc, flags and linker; the option is used only if that succeeds.
/// `GATEHOUSE_SYMBOL_ORDER=0` turns it off. A name the binary no longer has
/// is skipped without a word: a stale list costs memory, never a build.
fn symbol_order(profile: &str, rustc: &str, target: &str) {
    const FILE: &str = "src/symbol-order.txt";
    println!("cargo:rerun-if-changed={FILE}");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_SYMBOL_ORDER");
    let off = std::env::var("GATEHOUSE_SYMBOL_ORDER")
        .is_ok_and(|v| matches!(v.trim(), "0" | "off" | "false" | "no"));
    if off || profile != "release" || target != "x86_64-unknown-linux-gnu" {
        return;
    }
    let (Ok(dir), Ok(out)) = (
        std::env::var("CARGO_MANIFEST_DIR"),
        std::env::var("OUT_DIR"),
    ) else {
        return;
    };
    let path = std::path::Path::new(&dir).join(FILE);
    if !path.is_file() {
        return;
    }
    // `-Xlinker` pairs: `-Wl,` would split a path holding a comma
    let args = [
        "-Xlinker".to_owned(),
        format!("--symbol-ordering-file={}", path.display()),
        "-Xlinker".to_owned(),
        "--no-warn-symbol-ordering".to_owned(),
    ];
    if !links_with(rustc, target, &out, &args) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: \
             code not laid out by {FILE} (idle RSS about 5 MiB more)"
        );
        return;
    }
    for arg in args {
        println!("cargo:rustc-link-arg-bin=gatehouse={arg}");
    }
}

/// Whether an empty program links for `target` with `link_args` added, by
/// the same rustc with the build's flags and linker.
fn links_with(rustc: &str, target: &str, out: &str, link_args: &[String]) -> bool {
    let dir = std::path::Path::new(out).join("symbol-order-probe");
    let source = dir.join("probe.rs");
    if std::fs::create_dir_all(&dir).is_err() || std::fs::write(&source, "fn main() {}\n").is_err()
    {
        return false;
    }
    let mut cmd = Command::new(rustc);
    cmd.arg("--target")
        .arg(target)
        .arg("--crate-name")
        .arg("probe")
        .arg("-o")
        .arg(dir.join("probe"))
        .arg(&source);
    // the build's own flags (a linker or -fuse-ld among them)
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\u{1f}').filter(|f| !f.is_empty()));
    }
    // a linker named in cargo's config reaches a build script only here
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    for arg in link_args {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    cmd.output().is_ok_and(|o| o.status.success())
}
