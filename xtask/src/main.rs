//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `demo`: builds and runs `pipewright demo` here (Unix sockets on Linux, named pipes on
//!   Windows).
//! - `test`: every test, Linux natively and the Windows target under Wine, installing the
//!   Debian packages the Windows build needs; prints the counts of both platforms.
//! - `setup`: only the installation step of `test`.
//! - `lint`: `cargo fmt --check` and clippy with `-D warnings` for both targets.
//! - `bench`: the benchmarks on both platforms (release builds).
//! - `soak [SECONDS]`: the soak run (`crates/pipewright-soak`, default 60 s) on Linux and
//!   under Wine: many clients with hostile behaviours against every server at once, checked
//!   with checksums, connect-failure counts and the server process's handles at start and end.
//! - `man [DIR]`: the man pages of `pipewright` into `DIR` (default `target/man`).
//! - `publish-check [--no-verify]`: `cargo publish --workspace --dry-run`, which `test` runs
//!   after the Linux tests (see `publish.rs`).
//!
//! Options of `test`: `--linux-only`, `--windows-only`, `--no-fuzz` (the fuzz targets run
//! `PIPEWRIGHT_FUZZ_SECONDS`, default 5, seconds each with the Linux tests). `test` ends each
//! platform with a 20-second soak run, counted as one passed or failed line.
//!
//! Options of `soak`: `--linux-only`, `--windows-only`; `--clients N` and `--seed N` go to
//! the soak binary.

mod libtest;
mod man;
mod publish;

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

/// On CI (`CI` set) a build happens once: no incremental caches, which would double the
/// target directory's size for nothing (a user's own `CARGO_INCREMENTAL` wins).
fn ci_build_settings(c: &mut Command) {
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        c.env("CARGO_INCREMENTAL", "0");
    }
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    ci_build_settings(&mut c);
    c
}

fn cargo_win() -> Command {
    let mut c = Command::new(root().join("scripts/cargo-win"));
    c.current_dir(root());
    ci_build_settings(&mut c);
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

/// Ends every Wine process of the project's prefix. A test binary that Wine lost (see
/// docs/wine.md) cannot kill its children; they would hold pipes, names and ports into the
/// next step.
fn end_wine_leftovers() {
    let mut c = Command::new("/usr/lib/wine/wineserver64");
    c.arg("-k");
    for (k, v) in wine_env() {
        c.env(k, v);
    }
    let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
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
    let mut soaks: Vec<(&str, Result<(), String>)> = Vec::new();

    fmt_check().unwrap_or_else(|e| failures.push(e));

    if linux {
        let mut c = cargo();
        c.args(["test", "--workspace", "--no-fail-fast"]);
        let (counts, ok) = libtest::run_counted(c, "linux: cargo test --workspace")?;
        if !ok {
            failures.push("linux tests failed".into());
        }
        linux_counts = Some(counts);
        // After the tests, whose compiled dependencies the packaged crates' builds reuse.
        publish::dry_run(true).unwrap_or_else(|e| failures.push(e));
    }
    if linux && !args.iter().any(|a| a == "--no-fuzz") {
        fuzz(FUZZ_SECONDS).unwrap_or_else(|e| failures.push(e));
    }
    if linux {
        soaks.push(("linux", soak_linux(TEST_SOAK_SECONDS, &[])));
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
        end_wine_leftovers();
        if !ok && rerun_lost_to_wine(&mut counts, &mut reruns)? {
            ok = true;
        }
        end_wine_leftovers();
        if !ok {
            failures.push("windows tests under Wine failed".into());
        }
        windows_counts = Some(counts);
        soaks.push(("windows (under Wine)", soak_windows(TEST_SOAK_SECONDS, &[])));
        if linux {
            // The WSL topologies: a Linux socat/bridge that starts pipewright.exe under Wine
            // per connection (tests/bridge.rs), and `pipewright wsl` with its Windows host
            // under Wine (tests/wsl.rs); Linux clients reach Windows pipe servers through them.
            let mut c = cargo();
            c.args([
                "test",
                "-p",
                "pipewright-cli",
                "--test",
                "bridge",
                "--test",
                "wsl",
            ]);
            c.args(["--", "--ignored", "through_wine", "--test-threads", "2"]);
            c.env("PIPEWRIGHT_WIN_EXE", windows_debug_exe());
            for (k, v) in wine_env() {
                c.env(k, v);
            }
            let (counts, ok) = libtest::run_counted(c, "linux to windows: the WSL topology tests")?;
            if !ok || counts.passed == 0 {
                failures.push("the WSL topology tests failed".into());
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
    for (platform, result) in &soaks {
        match result {
            Ok(()) => {
                println!("soak, {platform} ({TEST_SOAK_SECONDS} s): passed");
                total.passed += 1;
            }
            Err(e) => {
                println!("soak, {platform} ({TEST_SOAK_SECONDS} s): FAILED: {e}");
                total.failed += 1;
            }
        }
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

/// When every failed Windows test binary failed because of Wine itself (see `libtest` for the
/// rule: a process that lost the wineserver before printing its result, or failed tests that
/// all show Wine's `ERROR_INTERNAL_ERROR` when creating a process), runs each of those exact
/// executables once more under Wine, as cargo ran it (the package's directory as working
/// directory, `--show-output`), and counts that run instead; returns whether all of those runs
/// passed. Each rerun is listed in the summary.
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
        let package = binary.package().unwrap_or_default();
        let dir = package_dir(package).ok_or_else(|| {
            format!(
                "rerun of {}: no package {package:?} in this workspace",
                binary.exe
            )
        })?;
        let mut c = wine();
        c.arg(root().join(&binary.exe))
            .arg("--show-output")
            .current_dir(&dir)
            .env("CARGO_MANIFEST_DIR", &dir)
            .env("CARGO_PKG_NAME", package)
            .stdin(Stdio::null());
        let what = format!(
            "windows: rerun of {} (`{}`), which Wine itself failed: {}",
            binary.exe, binary.args, binary.why
        );
        let (again, ok) = libtest::run_binary(c, &what, &binary.exe)?;
        counts.add(&again);
        for reason in again.skip_reasons {
            if !counts.skip_reasons.contains(&reason) {
                counts.skip_reasons.push(reason);
            }
        }
        all_ok &= ok && again.failed == 0 && again.binaries == 1;
        let outcome = if ok { "passed" } else { "failed" };
        reruns.push(format!(
            "rerun once, {outcome}: {} (`{}`; {}; docs/wine.md)",
            binary.exe, binary.args, binary.why
        ));
    }
    Ok(all_ok)
}

/// The directory of workspace package `name` (`crates/*` or `xtask`): the one whose
/// `[package]` section names it.
fn package_dir(name: &str) -> Option<PathBuf> {
    let crates = std::fs::read_dir(root().join("crates")).ok()?;
    let mut dirs: Vec<PathBuf> = crates.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.push(root().join("xtask"));
    dirs.into_iter().find(|d| {
        std::fs::read_to_string(d.join("Cargo.toml"))
            .is_ok_and(|m| manifest_package_name(&m).is_some_and(|n| n == name))
    })
}

/// The `name` of a manifest's `[package]` section.
fn manifest_package_name(manifest: &str) -> Option<&str> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some((key, value)) = line.split_once('=') {
                if key.trim() == "name" {
                    return Some(value.trim().trim_matches('"'));
                }
            }
        }
    }
    None
}

/// Seconds of each soak run (Linux, Wine) at the end of `test`.
const TEST_SOAK_SECONDS: u64 = 20;

/// Where this machine's cargo builds (`CARGO_TARGET_DIR`, else `target/`).
fn linux_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root().join(d))
        .unwrap_or_else(|| root().join("target"))
}

/// The Windows target's debug directory (`PIPEWRIGHT_WIN_TARGET_DIR` as in scripts/cargo-win).
fn windows_debug_dir() -> PathBuf {
    windows_debug_exe()
        .parent()
        .expect("the exe has a directory")
        .to_path_buf()
}

/// Builds the soak binary and `pipewright` for Linux as `cargo test --workspace` does (same
/// profile and features, so after the test run nothing is rebuilt), runs the soak for
/// `secs`, and passes when every check did.
fn soak_linux(secs: u64, extra: &[String]) -> Result<(), String> {
    let mut c = cargo();
    c.args(["test", "--workspace", "--no-run", "--quiet"]);
    status(
        c,
        "linux: build the soak binary (cargo test --workspace --no-run)",
    )?;
    let mut c = Command::new(linux_target_dir().join("debug/pipewright-soak"));
    c.current_dir(root()).arg(secs.to_string()).args(extra);
    run_soak(c, &format!("linux: soak {secs} s"))
}

/// The same under Wine (after [`setup`]): built with scripts/cargo-win as the Windows tests
/// are (shared target/windows), the .exe run with wine64.
fn soak_windows(secs: u64, extra: &[String]) -> Result<(), String> {
    let mut c = cargo_win();
    c.args(["test", "--workspace", "--no-run", "--quiet"]);
    for p in WINDOWS_EXCLUDES {
        c.args(["--exclude", p]);
    }
    status(
        c,
        "windows: build the soak binary (scripts/cargo-win test --workspace --no-run)",
    )?;
    let mut c = wine();
    c.arg(windows_debug_dir().join("pipewright-soak.exe"))
        .arg(secs.to_string())
        .args(extra)
        .stdin(Stdio::null());
    run_soak(c, &format!("windows: soak {secs} s (under Wine)"))
}

/// Runs a soak binary, echoing its output, and reads its last line `soak: N passed, N failed`.
/// The output is read on a thread and the end of the pipe is not awaited once the binary has
/// exited: Wine's service processes, started by the first Wine process, inherit the pipe and
/// outlive the run.
fn run_soak(mut c: Command, what: &str) -> Result<(), String> {
    eprintln!("xtask: {what}");
    let mut child = c
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            // The failed checks (printed before the summary line), repeated in the error:
            // the summary is what a shortened CI log keeps.
            let mut failed_checks = Vec::new();
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                println!("{line}");
                if let Some(check) = line.strip_prefix("FAIL ") {
                    failed_checks.push(check.to_owned());
                }
                if let Some(counts) = parse_soak_line(&line) {
                    let _ = tx.send((counts, failed_checks.join("; ")));
                }
            }
        });
    }
    let st = child.wait().map_err(|e| format!("{what}: {e}"))?;
    // The summary line was written before the exit; give the reader time to reach it.
    let counts = rx.recv_timeout(std::time::Duration::from_secs(5)).ok();
    match counts {
        Some(((passed, 0), _)) if st.success() => {
            eprintln!("xtask: {what}: {passed} checks passed");
            Ok(())
        }
        Some(((passed, failed), named)) => Err(format!(
            "{what}: {failed} checks failed, {passed} passed ({st}): {named}"
        )),
        None => Err(format!("{what}: ended without its summary line ({st})")),
    }
}

/// `soak: N passed, N failed` as (passed, failed).
fn parse_soak_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("soak: ")?;
    let (p, f) = rest.split_once(" passed, ")?;
    Some((p.parse().ok()?, f.strip_suffix(" failed")?.parse().ok()?))
}

fn soak(args: &[String]) -> Result<(), String> {
    let linux = !args.iter().any(|a| a == "--windows-only");
    let windows = !args.iter().any(|a| a == "--linux-only");
    let mut secs = 60;
    let mut extra = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--linux-only" | "--windows-only" => {}
            "--clients" | "--seed" => {
                let v = it.next().ok_or(format!("{a} needs a value"))?;
                extra.extend([a.clone(), v.clone()]);
            }
            s => {
                secs = s
                    .parse()
                    .map_err(|_| format!("soak: unknown argument {s:?}; usage: cargo xtask soak [SECONDS] [--linux-only|--windows-only] [--clients N] [--seed N]"))?;
            }
        }
    }
    let mut results = Vec::new();
    if linux {
        results.push(("linux", soak_linux(secs, &extra)));
    }
    if windows {
        setup()?;
        results.push(("windows (under Wine)", soak_windows(secs, &extra)));
    }
    println!();
    let mut failed = false;
    for (platform, r) in &results {
        match r {
            Ok(()) => println!("soak, {platform} ({secs} s): passed"),
            Err(e) => {
                failed = true;
                println!("soak, {platform} ({secs} s): FAILED: {e}");
            }
        }
    }
    if failed {
        Err("the soak run failed".into())
    } else {
        Ok(())
    }
}

/// Seconds each fuzz target runs in `test` (override with `PIPEWRIGHT_FUZZ_SECONDS`).
const FUZZ_SECONDS: u64 = 5;

/// Runs every fuzz crate's targets (`crates/*/fuzz`, each a cargo-fuzz crate) for a bounded
/// time each through the one shared runner, `scripts/fuzz.sh run DIR SECONDS` (which fails
/// when a crate lists no target), installing cargo-fuzz first when it is missing. Fails when
/// there is no fuzz crate at all.
fn fuzz(default_secs: u64) -> Result<(), String> {
    let secs = std::env::var("PIPEWRIGHT_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .map_err(|e| format!("read crates/: {e}"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("fuzz"))
        .filter(|d| d.join("Cargo.toml").exists())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err("fuzz: no fuzz crate (crates/*/fuzz/Cargo.toml) found".into());
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
    for dir in dirs {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/fuzz.sh"))
            .arg("run")
            .arg(&dir)
            .arg(secs.to_string());
        status(c, &format!("fuzz {} ({secs} s per target)", dir.display()))?;
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
    run_cli(
        &["bench", "pingpong", "--rounds", "5", "--time", "1s"],
        "bench pingpong (linux)",
    )?;
    let exe = build_windows_cli()?;
    let mut c = wine();
    c.arg(&exe)
        .args(["bench", "pingpong", "--rounds", "5", "--time", "1s"])
        .stdin(Stdio::null());
    status(c, "bench pingpong (windows, under Wine)")?;
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
        eprintln!(
            "usage: cargo xtask <demo|test|setup|lint|bench|soak|man|publish-check> [options]"
        );
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "demo" => demo(rest),
        "test" => test(rest),
        "setup" => setup(),
        "lint" => lint(),
        "bench" => bench(),
        "soak" => soak(rest),
        "man" => man::run(rest),
        "publish-check" => publish::run(rest),
        other => Err(format!(
            "unknown task {other:?}; tasks: demo, test, setup, lint, bench, soak, man, publish-check"
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

#[cfg(test)]
mod tests {
    use super::{manifest_package_name, package_dir, parse_soak_line, root};

    #[test]
    fn finds_a_package_by_its_package_name_not_a_target_name() {
        let m = "[package]\nname = \"pipewright-cli\"\n\n[[bin]]\nname = \"pipewright\"\n";
        assert_eq!(manifest_package_name(m), Some("pipewright-cli"));
        assert_eq!(
            package_dir("pipewright"),
            Some(root().join("crates/pipewright"))
        );
        assert_eq!(
            package_dir("pipewright-cli"),
            Some(root().join("crates/pipewright-cli"))
        );
        assert_eq!(package_dir("xtask"), Some(root().join("xtask")));
        assert_eq!(package_dir("no-such-package"), None);
    }

    #[test]
    fn reads_the_soak_summary_line() {
        assert_eq!(parse_soak_line("soak: 10 passed, 0 failed"), Some((10, 0)));
        assert_eq!(parse_soak_line("soak: 7 passed, 3 failed\n"), Some((7, 3)));
        assert_eq!(parse_soak_line("soak: linux, 20 s, 24 clients"), None);
        assert_eq!(parse_soak_line("PASS soak: 1 passed, 0 failed"), None);
    }
}
