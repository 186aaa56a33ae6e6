//! What this binary is: version and build facts, fixed at compile time
//! (`build.rs`), for `--version` and for anything that reports the build
//! (a metrics `build_info`, the start-up log line).

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit built (12 hex digits), or `unknown`: debug builds and
/// builds without `.git` that were not given `GATEHOUSE_GIT_COMMIT`.
pub const GIT_COMMIT: &str = env!("GATEHOUSE_BUILD_COMMIT");

/// `rustc --version` of the compiler that built it.
pub const RUSTC_VERSION: &str = env!("GATEHOUSE_BUILD_RUSTC");

/// The target triple, e.g. `x86_64-unknown-linux-gnu`.
pub const TARGET: &str = env!("GATEHOUSE_BUILD_TARGET");

/// The Cargo profile: `release` or `debug`.
pub const PROFILE: &str = env!("GATEHOUSE_BUILD_PROFILE");

/// `gatehouse --version`: the version, then one `key: value` line each.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("GATEHOUSE_BUILD_COMMIT"),
    "\nrustc: ",
    env!("GATEHOUSE_BUILD_RUSTC"),
    "\ntarget: ",
    env!("GATEHOUSE_BUILD_TARGET"),
    "\nprofile: ",
    env!("GATEHOUSE_BUILD_PROFILE"),
);
