//! The release check of `cargo xtask test`: `cargo publish --workspace --dry-run`.
//!
//! Nothing is uploaded. Cargo packages every publishable crate (`pipewright-soak` and `xtask`
//! say `publish = false`; the fuzz crates are workspaces of their own and are never packaged)
//! and builds each package alone, as a user's build from crates.io would. The step fails on
//! what would stop a release or break such a build: a missing description, license or readme
//! (a dry run only warns; crates.io refuses them), a path dependency without a version, a
//! dependency that does not resolve from the registry (crates of this workspace resolve to
//! their packaged versions), a file read at compile time but left out of the package, or a
//! feature a crate uses but only another workspace member enables.
//!
//! Cost: `--no-verify` (packaging only) takes some 6 s. The verify builds run after the tests
//! with the workspace's `profile.dev.package."*"` setting passed on (a packaged manifest loses
//! the workspace's profiles), so they reuse the dependencies the tests compiled: measured on 2
//! cores, 70 CPU seconds when only this workspace's crates compile again, 165 CPU seconds when
//! every dependency does (a cold machine lies between), about a minute or two of wall time
//! against the 20 of `cargo xtask test`. They are kept for the defects only they find;
//! `cargo xtask publish-check --no-verify` is the quick form.

use std::process::Stdio;
use std::time::Instant;

/// Runs the dry run; `verify` builds each packaged crate too. A run that fails on the
/// registry's network (the packaged crates' builds resolve against crates.io) is tried once
/// more before it counts.
pub fn dry_run(verify: bool) -> Result<(), String> {
    match dry_run_once(verify) {
        Err(failure) if failure.network => {
            eprintln!(
                "xtask: the publish dry run failed on the network ({}); trying once more",
                failure.message
            );
            dry_run_once(verify).map_err(|f| f.message)
        }
        result => result.map_err(|f| f.message),
    }
}

/// Why one dry run failed, and whether cargo blamed the network.
struct Failure {
    message: String,
    network: bool,
}

fn dry_run_once(verify: bool) -> Result<(), Failure> {
    let started = Instant::now();
    let mut c = crate::cargo();
    c.args(["publish", "--workspace", "--dry-run", "--allow-dirty"]);
    if verify {
        // The root Cargo.toml's dependency profile, so the builds reuse what the tests compiled.
        c.args(["--config", "profile.dev.package.\"*\".opt-level=1"]);
    } else {
        c.arg("--no-verify");
    }
    let what = if verify {
        "cargo publish --workspace --dry-run (verify: builds every packaged crate)"
    } else {
        "cargo publish --workspace --dry-run --no-verify"
    };
    eprintln!("xtask: {what}");
    let out = c.stderr(Stdio::piped()).output().map_err(|e| Failure {
        message: format!("{what}: cannot start cargo: {e}"),
        network: false,
    })?;
    let log = String::from_utf8_lossy(&out.stderr);
    eprint!("{log}");
    if !out.status.success() {
        // The cause is repeated here: the summary line is what a shortened CI log keeps.
        return Err(Failure {
            message: format!(
                "{what}: {}: {}; fix what cargo names (nothing was uploaded)",
                out.status,
                cargo_errors(&log)
            ),
            network: is_network_failure(&log),
        });
    }
    // A missing description or license is only a warning in a dry run, but crates.io
    // refuses the upload: count it as a failure here.
    let refused = missing_fields(&log);
    if !refused.is_empty() {
        return Err(Failure {
            message: format!(
                "{what}: {} (crates.io refuses such a crate); add the field to the crate's [package]",
                refused.join("; ")
            ),
            network: false,
        });
    }
    eprintln!(
        "xtask: publish dry run passed ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Cargo's `error` lines and the lines that explain them (up to 12), joined with " | ".
fn cargo_errors(log: &str) -> String {
    let mut picked = Vec::new();
    let mut in_error = false;
    for line in log.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("error") {
            in_error = true;
        } else if trimmed.is_empty() || trimmed.starts_with("warning") {
            in_error = false;
        }
        if in_error && !trimmed.is_empty() && picked.len() < 12 {
            picked.push(trimmed);
        }
    }
    if picked.is_empty() {
        "cargo printed no error line".to_owned()
    } else {
        picked.join(" | ")
    }
}

/// Whether cargo's log blames the network or the registry rather than the crates.
fn is_network_failure(log: &str) -> bool {
    const SIGNS: [&str; 8] = [
        "spurious network error",
        "failed to download",
        "failed to query replaced source registry",
        "failed to get successful HTTP response",
        "Couldn't resolve host",
        "Could not resolve host",
        "Connection timed out",
        "[28] Timeout was reached",
    ];
    SIGNS.iter().any(|sign| log.contains(sign))
}

/// The "manifest has no ..." warnings of cargo's log, each with its package (cargo prints
/// them without the package's name, just before that package's "Packaging" line).
fn missing_fields(log: &str) -> Vec<String> {
    let mut pending = Vec::new();
    let mut found = Vec::new();
    for line in log.lines().map(str::trim) {
        if let Some(w) = line.strip_prefix("warning: manifest has no") {
            pending.push(format!("manifest has no{w}"));
        } else if let Some(package) = line.strip_prefix("Packaging ") {
            found.extend(pending.drain(..).map(|w| format!("{package}: {w}")));
        }
    }
    found.extend(pending);
    found
}

/// `cargo xtask publish-check [--no-verify]`.
pub fn run(args: &[String]) -> Result<(), String> {
    let mut verify = true;
    for a in args {
        match a.as_str() {
            "--no-verify" => verify = false,
            other => {
                return Err(format!(
                    "publish-check: unknown argument {other:?}; the only option is --no-verify"
                ))
            }
        }
    }
    dry_run(verify)
}

#[cfg(test)]
mod tests {
    use super::{cargo_errors, is_network_failure, missing_fields};

    #[test]
    fn the_failure_names_cargos_errors_and_tells_the_network_apart() {
        let log =
            "   Verifying a v0.1.0\nerror[E0425]: cannot find value `x`\n  --> src/lib.rs:1:1\n\n\
                   warning: unused\nerror: could not compile `a`\n";
        assert_eq!(
            cargo_errors(log),
            "error[E0425]: cannot find value `x` | --> src/lib.rs:1:1 | error: could not compile `a`"
        );
        assert!(!is_network_failure(log));
        let net = "error: failed to download from `https://static.crates.io/x`\n\nCaused by:\n  [28] Timeout was reached\n";
        assert!(is_network_failure(net));
        assert_eq!(cargo_errors("all fine\n"), "cargo printed no error line");
    }

    #[test]
    fn a_missing_field_is_named_with_its_package() {
        let log = "   Packaging a v0.1.0 (/w/a)\n    Packaged 3 files\n\
                   warning: manifest has no description\n  |\n   Packaging b v0.1.0 (/w/b)\n\
                   warning: manifest has no license\n   Packaging c v0.1.0 (/w/c)\n";
        assert_eq!(
            missing_fields(log),
            [
                "b v0.1.0 (/w/b): manifest has no description",
                "c v0.1.0 (/w/c): manifest has no license"
            ]
        );
        assert!(missing_fields("   Packaging a v0.1.0 (/w/a)\n").is_empty());
    }
}
