//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `demo`: builds and runs `pipewright demo` here (Unix sockets on Linux, named pipes on
//!   Windows).
//! - `test`: every test, Linux natively and the Windows target under Wine, installing the
//!   Debian packages the Windows build needs; prints the counts of both platforms.
//! - `setup`: only the installation step of `test`.
//! - `lint`: `cargo fmt --check` and clippy with `-D warnings` for both targets.
//! - `bench`: the benchmarks on both platforms (release builds).
//!
//! Options of `test`: `--linux-only`, `--windows-only`, `--no-fuzz` (the fuzz targets run
//! `PIPEWRIGHT_FUZZ_SECONDS`, default 5, seconds each with the Linux tests).

mod libtest;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use libtest::Counts;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn cargo_win() -> Command {
    let mut c = Command::new(root().join("scripts/cargo-win"));
    c.current_dir(root());
    c
}

/// WINEPREFIX and WINEDEBUG as scripts/cargo-win sets them.
fn wine_env() -> [(&'static str, String); 2] {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    [
        (
            "WINEPREFIX",
            std::env::var("WINEPREFIX").unwrap_or(format!("{home}/.wine-pipewright")),
        ),
        (
            "WINEDEBUG",
            std::env::var("WINEDEBUG").unwrap_or("-all".into()),
        ),
    ]
}

/// The debug `pipewright.exe` that the Windows test run builds.
fn windows_debug_exe() -> PathBuf {
    let dir = std::env::var("PIPEWRIGHT_WIN_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/windows"));
    dir.join("x86_64-win7-windows-gnu/debug/pipewright.exe")
}

fn wine() -> Command {
    let mut c = Command::new("/usr/lib/wine/wine64");
    for (k, v) in wine_env() {
        c.env(k, v);
    }
    c.current_dir(root());
    c
}

fn status(mut c: Command, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let st = c
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{what}: {st}"))
    }
}

fn setup() -> Result<(), String> {
    status(
        {
            let mut c = Command::new("bash");
            c.arg(root().join("scripts/setup-windows-target.sh"));
            c
        },
        "setup: packages for the Windows target (Debian's rustc with std source, mingw-w64, Wine)",
    )
}

/// The packages whose tests run for the Windows target (the host-only xtask is left out).
const WINDOWS_EXCLUDES: [&str; 1] = ["xtask"];

fn test(args: &[String]) -> Result<(), String> {
    let linux = !args.iter().any(|a| a == "--windows-only");
    let windows = !args.iter().any(|a| a == "--linux-only");
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut linux_counts = None;
    let mut windows_counts = None;
    let mut cross_counts = None;
    let mut reruns = Vec::new();

    fmt_check().unwrap_or_else(|e| failures.push(e));

    if linux {
        let mut c = cargo();
        c.args(["test", "--workspace", "--no-fail-fast"]);
        let (counts, ok) = libtest::run_counted(c, "linux: cargo test --workspace")?;
        if !ok {
            failures.push("linux tests failed".into());
        }
        linux_counts = Some(counts);
    }
    if linux && !args.iter().any(|a| a == "--no-fuzz") {
        fuzz(FUZZ_SECONDS).unwrap_or_else(|e| failures.push(e));
    }
    if windows {
        setup()?;
        let mut c = cargo_win();
        c.args(["test", "--workspace", "--no-fail-fast"]);
        for p in WINDOWS_EXCLUDES {
            c.args(["--exclude", p]);
        }
        // --show-output prints what passing tests wrote, so the Wine skips can be counted.
        c.args(["--", "--show-output"]);
        let (mut counts, mut ok) = libtest::run_counted(
            c,
            "windows: scripts/cargo-win test --workspace (under Wine)",
        )?;
        if !ok && rerun_lost_to_wine(&mut counts, &mut reruns)? {
            ok = true;
        }
        if !ok {
            failures.push("windows tests under Wine failed".into());
        }
        windows_counts = Some(counts);
        if linux {
            // The WSL topology: a Linux socat/bridge starts pipewright.exe under Wine per
            // connection, and a Linux client reaches a Windows pipe server through it.
            let mut c = cargo();
            c.args(["test", "-p", "pipewright-cli", "--test", "bridge", "--"]);
            c.args(["--ignored", "wsl_topology_through_wine"]);
            c.env("PIPEWRIGHT_WIN_EXE", windows_debug_exe());
            for (k, v) in wine_env() {
                c.env(k, v);
            }
            let (counts, ok) = libtest::run_counted(c, "linux to windows: the WSL topology test")?;
            if !ok || counts.passed == 0 {
                failures.push("the WSL topology test failed".into());
            }
            cross_counts = Some(counts);
        }
    }

    println!();
    println!("== summary ({:.0} s) ==", started.elapsed().as_secs_f64());
    let mut total = Counts::default();
    if let Some(c) = &linux_counts {
        println!("linux:               {}", c.describe());
        total.add(c);
    }
    if let Some(c) = &windows_counts {
        println!("windows (under Wine): {}", c.describe());
        for s in &c.skip_reasons {
            println!("  skipped under Wine: {s}");
        }
        for r in &reruns {
            println!("  {r}");
        }
        total.add(c);
    }
    if let Some(c) = &cross_counts {
        println!("linux to windows:    {}", c.describe());
        total.add(c);
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    // A failed step that is not a failed test (build, fmt) still counts as one failure.
    let failed = total.failed.max(u64::from(!failures.is_empty()));
    println!(
        "{} passed, {} failed, {} skipped",
        total.passed,
        failed,
        total.ignored + total.skipped
    );
    if failures.is_empty() && total.failed == 0 {
        Ok(())
    } else {
        Err("some tests failed".into())
    }
}

/// When every failed Windows test binary failed because of Wine itself (its process lost the
/// wineserver, or Wine could not create a child process), runs each of them once more and
/// counts that run instead; returns whether all of those runs passed. Each rerun is listed in
/// the summary.
fn rerun_lost_to_wine(counts: &mut Counts, reruns: &mut Vec<String>) -> Result<bool, String> {
    let lost = std::mem::take(&mut counts.lost_to_wine);
    if lost.is_empty() || lost.len() != counts.failed_binaries.len() {
        counts.lost_to_wine = lost;
        return Ok(false);
    }
    counts.failed_binaries.clear();
    let mut all_ok = true;
    for binary in lost {
        counts.forget(&binary);
        let args = binary.args;
        let mut c = cargo_win();
        c.arg("test").args(args.split_whitespace());
        c.args(["--", "--show-output"]);
        let what = format!("windows: rerun of `{args}`, which Wine itself failed");
        let (again, ok) = libtest::run_counted(c, &what)?;
        counts.add(&again);
        for reason in again.skip_reasons {
            if !counts.skip_reasons.contains(&reason) {
                counts.skip_reasons.push(reason);
            }
        }
        all_ok &= ok && again.failed == 0;
        let outcome = if ok { "passed" } else { "failed" };
        reruns.push(format!(
            "rerun once, {outcome}: `{args}` (Wine itself failed it; docs/wine.md)"
        ));
    }
    Ok(all_ok)
}

/// Seconds each fuzz target runs in `test` (override with `PIPEWRIGHT_FUZZ_SECONDS`).
const FUZZ_SECONDS: u64 = 5;

/// Runs every crate's fuzz targets (`crates/*/fuzz/run.sh`) for a bounded time each,
/// installing cargo-fuzz first when it is missing.
fn fuzz(default_secs: u64) -> Result<(), String> {
    let secs = std::env::var("PIPEWRIGHT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .map_err(|e| format!("read crates/: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("fuzz/run.sh"))
        .filter(|p| p.exists())
        .collect();
    scripts.sort();
    if scripts.is_empty() {
        return Ok(());
    }
    let have = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let mut c = cargo();
        c.args(["install", "cargo-fuzz", "--locked"]);
        status(c, "install cargo-fuzz")?;
    }
    for script in scripts {
        let mut c = Command::new("bash");
        c.arg(&script).arg(secs.to_string());
        status(
            c,
            &format!("fuzz {} ({secs} s per target)", script.display()),
        )?;
    }
    Ok(())
}

/// Builds the release `pipewright.exe` (installing the Windows toolchain first) and returns its path.
fn build_windows_cli() -> Result<PathBuf, String> {
    setup()?;
    status(
        {
            let mut c = cargo_win();
            c.args(["build", "--release", "-p", "pipewright-cli"]);
            c
        },
        "build pipewright.exe",
    )?;
    Ok(root().join("target/windows/x86_64-win7-windows-gnu/release/pipewright.exe"))
}

fn demo(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "--windows") {
        let exe = build_windows_cli()?;
        let mut c = wine();
        c.arg(exe).arg("demo");
        return status(c, "pipewright.exe demo (under Wine)");
    }
    run_cli(&["demo"], "pipewright demo")
}

/// Runs the release `pipewright` built for this machine with `args`.
fn run_cli(args: &[&str], what: &str) -> Result<(), String> {
    let mut c = cargo();
    c.args(["run", "--quiet", "--release", "-p", "pipewright-cli", "--"]);
    c.args(args);
    status(c, what)
}

/// `cargo fmt --all --check`.
fn fmt_check() -> Result<(), String> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    status(c, "cargo fmt --check")
}

fn lint() -> Result<(), String> {
    fmt_check()?;
    status(
        {
            let mut c = cargo();
            c.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]);
            c
        },
        "clippy (linux)",
    )?;
    setup()?;
    status(
        {
            let mut c = cargo_win();
            c.args(["clippy", "--workspace", "--all-targets"]);
            for p in WINDOWS_EXCLUDES {
                c.args(["--exclude", p]);
            }
            c.args(["--", "-D", "warnings"]);
            c
        },
        "clippy (windows target)",
    )
}

fn bench() -> Result<(), String> {
    run_cli(
        &["bench", "stream", "--rounds", "5", "--size", "1GiB"],
        "bench stream (linux)",
    )?;
    let exe = build_windows_cli()?;
    for chunk in ["1MiB", "64KiB"] {
        let mut c = wine();
        c.arg(&exe)
            .args([
                "bench", "stream", "--rounds", "5", "--size", "256MiB", "--chunk", chunk, "--tokio",
            ])
            .stdin(Stdio::null());
        status(
            c,
            &format!("bench stream, {chunk} writes (windows, under Wine)"),
        )?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("usage: cargo xtask <demo|test|setup|lint|bench> [options]");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "demo" => demo(rest),
        "test" => test(rest),
        "setup" => setup(),
        "lint" => lint(),
        "bench" => bench(),
        other => Err(format!(
            "unknown task {other:?}; tasks: demo, test, setup, lint, bench"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
