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

/// Runs the dry run; `verify` builds each packaged crate too.
pub fn dry_run(verify: bool) -> Result<(), String> {
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
    let out = c
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{what}: cannot start cargo: {e}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    eprint!("{log}");
    if !out.status.success() {
        return Err(format!(
            "{what}: {}; fix what cargo names above (nothing was uploaded)",
            out.status
        ));
    }
    // A missing description or license is only a warning in a dry run, but crates.io
    // refuses the upload: count it as a failure here.
    let refused = missing_fields(&log);
    if !refused.is_empty() {
        return Err(format!(
            "{what}: {} (crates.io refuses such a crate); add the field to the crate's [package]",
            refused.join("; ")
        ));
    }
    eprintln!(
        "xtask: publish dry run passed ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
    use super::missing_fields;

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
