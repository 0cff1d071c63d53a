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
//!
//! A dependency's package is built as a registry crate, and cargo takes registry crates to be
//! immutable: it reuses an unpacked `name-version` directory in `$CARGO_HOME/registry/src`, and
//! a compiled registry crate whose fingerprint names no source file. On a machine that ran an
//! earlier dry run (same version number, older sources) the verify builds would therefore
//! compile today's dependents against yesterday's `pipewright` and fail on what is new. The
//! step first removes this workspace's unpacked copies, cached archives and the fingerprints
//! of their compiled registry builds (the workspace's own builds stay).

use std::path::{Path, PathBuf};
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
    let packages = workspace_packages();
    let removed = forget_earlier_packages(&cargo_home(), &packages)
        + forget_registry_builds(&crate::linux_target_dir().join("debug"), &packages);
    if removed > 0 {
        eprintln!(
            "xtask: removed {removed} copies or builds of this workspace's crates left by an \
             earlier dry run"
        );
    }
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

/// `$CARGO_HOME`, or `~/.cargo` as cargo defaults.
fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    let user = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    PathBuf::from(user.unwrap_or_default()).join(".cargo")
}

/// The package names of the crates under `crates/`.
fn workspace_packages() -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(crate::root().join("crates")) else {
        return Vec::new();
    };
    dirs.flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("Cargo.toml")).ok())
        .filter_map(|manifest| crate::manifest_package_name(&manifest).map(str::to_owned))
        .collect()
}

/// Removes, under every registry of `cargo_home`, the unpacked sources (`src/*/name-version`)
/// and cached archives (`cache/*/name-version.crate`) of `packages`; returns how many.
fn forget_earlier_packages(cargo_home: &Path, packages: &[String]) -> usize {
    let mut removed = 0;
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join(kind)) else {
            continue;
        };
        for entry in registries
            .flatten()
            .flat_map(|r| std::fs::read_dir(r.path()))
            .flatten()
        {
            let Ok(entry) = entry else { continue };
            let file = entry.file_name();
            let name = file.to_string_lossy();
            let name = name.strip_suffix(".crate").unwrap_or(&name);
            if !packages.iter().any(|p| is_version_of(name, p)) {
                continue;
            }
            let path = entry.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => eprintln!("xtask: cannot remove {}: {e}", path.display()),
            }
        }
    }
    removed
}

/// Removes the fingerprints, under a profile directory (`target/debug`), of `packages` built
/// as registry crates: their dep-info names no source file. Returns how many; the next build
/// compiles them again.
fn forget_registry_builds(profile_dir: &Path, packages: &[String]) -> usize {
    let Ok(units) = std::fs::read_dir(profile_dir.join(".fingerprint")) else {
        return 0;
    };
    let mut removed = 0;
    for unit in units.flatten() {
        let file = unit.file_name();
        let name = file.to_string_lossy();
        if !packages.iter().any(|p| is_build_of(&name, p)) || !names_no_source(&unit.path()) {
            continue;
        }
        match std::fs::remove_dir_all(unit.path()) {
            Ok(()) => removed += 1,
            Err(e) => eprintln!("xtask: cannot remove {}: {e}", unit.path().display()),
        }
    }
    removed
}

/// Whether a fingerprint directory has dep-info files and none of them names a `.rs` file.
fn names_no_source(fingerprint: &Path) -> bool {
    let Ok(files) = std::fs::read_dir(fingerprint) else {
        return false;
    };
    let dep_infos: Vec<Vec<u8>> = files
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().starts_with("dep-"))
        .filter_map(|f| std::fs::read(f.path()).ok())
        .collect();
    !dep_infos.is_empty() && dep_infos.iter().all(|d| !d.windows(3).any(|w| w == b".rs"))
}

/// Whether `name` is `package-hash`, a fingerprint directory's name (16 hex digits).
fn is_build_of(name: &str, package: &str) -> bool {
    name.strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hash| hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `name` is `package-version` (a version starts with a digit, so `pipewright-http-0.1.0`
/// is not a version of `pipewright`).
fn is_version_of(name: &str, package: &str) -> bool {
    name.strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
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
    use super::{
        cargo_errors, forget_earlier_packages, forget_registry_builds, is_build_of,
        is_network_failure, is_version_of, missing_fields,
    };

    #[test]
    fn only_registry_builds_of_this_workspace_lose_their_fingerprint() {
        let dir = std::env::temp_dir().join(format!("xtask-profile-{}", std::process::id()));
        let fingerprints = dir.join(".fingerprint");
        let unit = |name: &str, dep_info: &[u8]| {
            std::fs::create_dir_all(fingerprints.join(name)).unwrap();
            std::fs::write(fingerprints.join(name).join("dep-lib-x"), dep_info).unwrap();
        };
        unit("pipewright-00112233445566aa", b"\x01\x00\x00"); // a registry build
        unit("pipewright-00112233445566bb", b"\x01\x00src/lib.rs\x00"); // the workspace's
        unit("pipewright-http-00112233445566cc", b"\x01"); // not listed below
        unit("tokio-00112233445566dd", b"\x01");
        let ours = ["pipewright".to_owned()];
        assert_eq!(forget_registry_builds(&dir, &ours), 1);
        assert!(!fingerprints.join("pipewright-00112233445566aa").exists());
        for kept in [
            "pipewright-00112233445566bb",
            "pipewright-http-00112233445566cc",
            "tokio-00112233445566dd",
        ] {
            assert!(fingerprints.join(kept).exists(), "{kept} was removed");
        }
        assert!(!is_build_of(
            "pipewright-http-00112233445566cc",
            "pipewright"
        ));
        assert_eq!(forget_registry_builds(&dir.join("absent"), &ours), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_this_workspaces_unpacked_crates_are_forgotten() {
        let home = std::env::temp_dir().join(format!("xtask-cargo-home-{}", std::process::id()));
        let src = home.join("registry/src/index.crates.io-1");
        let cache = home.join("registry/cache/index.crates.io-1");
        for dir in ["pipewright-0.1.0", "pipewright-http-0.1.0", "tokio-1.40.0"] {
            std::fs::create_dir_all(src.join(dir)).unwrap();
        }
        std::fs::create_dir_all(&cache).unwrap();
        for file in [
            "pipewright-0.1.0.crate",
            "pipewrightx-0.1.0.crate",
            "tokio-1.40.0.crate",
        ] {
            std::fs::write(cache.join(file), b"").unwrap();
        }
        let ours = ["pipewright".to_owned(), "pipewright-http".to_owned()];
        assert_eq!(forget_earlier_packages(&home, &ours), 3);
        assert!(!src.join("pipewright-0.1.0").exists());
        assert!(!src.join("pipewright-http-0.1.0").exists());
        assert!(!cache.join("pipewright-0.1.0.crate").exists());
        assert!(src.join("tokio-1.40.0").exists());
        assert!(cache.join("pipewrightx-0.1.0.crate").exists());
        assert!(cache.join("tokio-1.40.0.crate").exists());
        assert_eq!(forget_earlier_packages(&home.join("absent"), &ours), 0);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn versions_are_told_from_longer_names() {
        assert!(is_version_of("pipewright-0.1.0", "pipewright"));
        assert!(!is_version_of("pipewright-http-0.1.0", "pipewright"));
        assert!(!is_version_of("pipewright", "pipewright"));
    }

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
