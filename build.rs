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
}
