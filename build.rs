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
    symbol_order(&profile, &rustc_version, &target);
}

/// Release builds link the functions named in `src/symbol-order.txt` first,
/// in its order: the code that starting, signing in and serving a signed-in
/// request run, about 2.8 of the 12 MB of text. Laid out as the compiler
/// leaves it, that code is spread over the whole text, and the kernel maps
/// a binary's pages 64 KiB at a time around each one touched: 9 MB of it
/// was resident in an idle process, 3 MB is now (see the README's
/// Performance section, which also says how to make the list again).
///
/// Only where the linker is rustc's own `lld` (the default for this target
/// since Rust 1.90), which knows the option; `GATEHOUSE_SYMBOL_ORDER=0`
/// turns it off (another linker set in `RUSTFLAGS` or cargo's config
/// turns it off too). A name the binary no longer has is skipped without a
/// word: a stale list costs memory, never a failed build.
fn symbol_order(profile: &str, rustc_version: &str, target: &str) {
    const FILE: &str = "src/symbol-order.txt";
    println!("cargo:rerun-if-changed={FILE}");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let off = std::env::var("GATEHOUSE_SYMBOL_ORDER").is_ok_and(|v| v.trim() == "0");
    let other_linker = std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS")
            .is_ok_and(|f| f.contains("linker") || f.contains("link-self-contained"));
    // "rustc 1.95.0 (...)": the minor version
    let minor = rustc_version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    if off
        || other_linker
        || profile != "release"
        || target != "x86_64-unknown-linux-gnu"
        || minor.is_none_or(|m| m < 90)
    {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(FILE);
    if !path.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=gatehouse=-Wl,--symbol-ordering-file={}",
        path.display()
    );
    println!("cargo:rustc-link-arg-bin=gatehouse=-Wl,--no-warn-symbol-ordering");
}
