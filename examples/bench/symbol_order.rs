//! `make symbol-order` (`BENCH_ONLY=symbol-order`): remakes
//! `src/symbol-order.txt`, the functions the release link lays out first
//! (see `build.rs`).
//!
//! It runs the release gatehouse under callgrind (`valgrind`, Debian's
//! package of that name), through what the bench's idle figure covers
//! (start, `/ready`, one sign-in), dumps the instructions run so far, then
//! through the request paths (signed-in GETs as the bench sends them, a
//! forward-auth check, an anonymous request sent to sign in), and dumps
//! again. Each executed address is mapped to its function with `nm`; the
//! file lists the first dump's functions, then the second's new ones, each
//! group in the order the binary had them (the compiler's neighbours stay
//! neighbours).
//!
//! The names are the linker's (mangled). Their hashes come from cargo's
//! metadata for the package (its version, features, profile and
//! dependencies), not from the code: the list stays good across most edits
//! and goes stale as functions are added, renamed or inlined differently.
//! The bench says how many of its names the binary still has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{Bench, BoxResult, Load, emit, wrk};

/// Where the list lives, read by `build.rs`.
pub(crate) const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/symbol-order.txt");

/// A function of the binary: where it starts, its size, its linker name.
struct Symbol {
    start: u64,
    size: u64,
    name: String,
}

/// Writes [`FILE`] from a traced run of `bench`'s gatehouse.
pub(crate) async fn write(bench: &Bench) -> BoxResult<()> {
    for tool in ["valgrind", "callgrind_control", "nm"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Err(format!(
                "{tool} not found: `apt-get install -y valgrind binutils` (symbol-order only)"
            )
            .into());
        }
    }
    let dir = std::env::temp_dir().join(format!("gatehouse-symbol-order-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("callgrind.out");
    let traced = bench.wrapped(vec![
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        "-q".to_owned(),
        // per instruction, not per line: the addresses are what is mapped
        "--dump-instr=yes".to_owned(),
        "--compress-strings=no".to_owned(),
        "--compress-pos=no".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ]);
    let parts = {
        let g = traced.start(&[]).await?;
        let pid = g.child.0.id();
        let idle = dump(pid, &out, 1).await?;
        let load = Load {
            threads: 1,
            connections: 8,
            secs: 3,
        };
        wrk(&format!("{}/", g.base), Some(&g.cookie), &load)?;
        let auth = Load {
            secs: 1,
            connections: 2,
            ..load
        };
        wrk(&format!("{}/oauth2/auth", g.base), Some(&g.cookie), &auth)?;
        wrk(&format!("{}/", g.base), None, &auth)?;
        let busy = dump(pid, &out, 2).await?;
        [idle, busy]
    };
    let symbols = symbols(&bench.bin)?;
    let binary = Path::new(&bench.bin)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("GATEHOUSE_BIN has no file name")?;
    let mut listed = BTreeSet::new();
    let mut order = Vec::new();
    let mut sizes = Vec::new();
    for part in &parts {
        let run = functions_run(part, binary, &symbols)?;
        let new: Vec<usize> = run.into_iter().filter(|i| listed.insert(*i)).collect();
        sizes.push((new.len(), new.iter().map(|i| symbols[*i].size).sum::<u64>()));
        order.extend(new);
    }
    let mut text = String::from(
        "# The functions gatehouse runs to start, sign a user in and serve a\n\
         # signed-in request: the release link lays them out first (build.rs).\n\
         # Made by `make symbol-order`; remake it when the bench says many of\n\
         # these names are missing from the binary.\n",
    );
    for i in &order {
        text.push_str(&symbols[*i].name);
        text.push('\n');
    }
    std::fs::write(FILE, text)?;
    let _ = std::fs::remove_dir_all(&dir);
    emit(&format!(
        "{FILE}: {} functions ({} KiB) to start and sign in, then {} ({} KiB) to serve",
        sizes[0].0,
        sizes[0].1 / 1024,
        sizes[1].0,
        sizes[1].1 / 1024,
    ));
    Ok(())
}

/// Asks callgrind in `pid` to write dump `n` and waits until it is whole.
async fn dump(pid: u32, out: &Path, n: u32) -> BoxResult<PathBuf> {
    let status = Command::new("callgrind_control")
        .args(["-d", &pid.to_string()])
        .output()?;
    if !status.status.success() {
        return Err(format!("callgrind_control -d {pid} failed").into());
    }
    let path = PathBuf::from(format!("{}.{n}", out.display()));
    // the dump is written by the traced process: whole once it holds the
    // totals line, which callgrind writes last
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\ntotals:")) {
            return Ok(path);
        }
    }
    Err(format!("callgrind wrote no {} in 30 s", path.display()).into())
}

/// The binary's functions by address, from `nm`.
fn symbols(bin: &str) -> BoxResult<Vec<Symbol>> {
    let out = Command::new("nm")
        .args(["-S", "--defined-only", bin])
        .output()?;
    if !out.status.success() {
        return Err(format!("nm {bin} failed").into());
    }
    let mut symbols: Vec<Symbol> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let start = u64::from_str_radix(f.next()?, 16).ok()?;
            let size = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            matches!(kind, "t" | "T" | "w" | "W").then(|| Symbol {
                start,
                size,
                name: name.to_owned(),
            })
        })
        .collect();
    symbols.sort_by_key(|s| s.start);
    Ok(symbols)
}

/// The indexes into `symbols` of the functions of `binary` that a callgrind
/// dump saw run, in address order.
fn functions_run(dump: &Path, binary: &str, symbols: &[Symbol]) -> BoxResult<BTreeSet<usize>> {
    let text = std::fs::read_to_string(dump)?;
    let mut ours = false;
    let mut run = BTreeSet::new();
    for line in text.lines() {
        if let Some(object) = line.strip_prefix("ob=") {
            ours = Path::new(object.trim())
                .file_name()
                .and_then(|n| n.to_str())
                == Some(binary);
            continue;
        }
        if !ours {
            continue;
        }
        let Some(hex) = line.strip_prefix("0x") else {
            continue;
        };
        let Some(addr) = hex
            .split_whitespace()
            .next()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        let i = symbols.partition_point(|s| s.start <= addr);
        if let Some(i) = i.checked_sub(1)
            && addr < symbols[i].start + symbols[i].size
        {
            run.insert(i);
        }
    }
    if run.is_empty() {
        return Err(format!("no function of {binary} in {}", dump.display()).into());
    }
    Ok(run)
}

/// How many of [`FILE`]'s names `bin` has: `(found, listed)`; `None` when
/// there is no list or no `nm`.
pub(crate) fn coverage(bin: &str) -> Option<(usize, usize)> {
    let listed: Vec<String> = std::fs::read_to_string(FILE)
        .ok()?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let names: BTreeSet<String> = symbols(bin).ok()?.into_iter().map(|s| s.name).collect();
    let found = listed.iter().filter(|n| names.contains(*n)).count();
    Some((found, listed.len()))
}
