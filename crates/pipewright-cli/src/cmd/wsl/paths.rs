//! Where the daemon keeps its control socket, log and default sockets: `--dir`,
//! `$PIPEWRIGHT_WSL_DIR`, `$XDG_RUNTIME_DIR/pipewright-wsl`, else `/tmp/pipewright-wsl-UID`.
//! The directory is the user's alone (mode 0700).
//!
//! ```ignore
//! let dir = paths::state_dir(None)?;
//! let control = dir.join(paths::CONTROL);
//! ```

use std::path::{Path, PathBuf};

/// The environment variable naming the state directory.
pub const DIR_ENV: &str = "PIPEWRIGHT_WSL_DIR";
/// The control socket's file name.
pub const CONTROL: &str = "control.sock";
/// The log of a daemon started in the background.
pub const LOG: &str = "daemon.log";

/// The state directory, created (mode 0700) if missing.
pub fn state_dir(flag: Option<PathBuf>) -> Result<PathBuf, String> {
    let dir = flag
        .or_else(|| {
            std::env::var_os(DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(|d| PathBuf::from(d).join("pipewright-wsl"))
        })
        .unwrap_or_else(|| std::env::temp_dir().join(format!("pipewright-wsl-{}", user_id())));
    let dir = super::config::expand_home(&dir);
    private_dir(&dir)?;
    restrict(&dir)?;
    Ok(dir)
}

/// Creates `dir` and any missing parents with mode 0700. Existing directories are left as
/// they are (a socket may live in `/tmp` or `~/.gnupg`).
pub fn private_dir(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Makes the state directory the user's alone, refusing one another user owns.
#[cfg(unix)]
fn restrict(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != user_id() {
        return Err(format!(
            "{} belongs to another user (uid {}); give --dir or ${DIR_ENV} a directory of your own",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private (chmod 700): {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(windows)]
fn restrict(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// This process's user id (the owner of `/proc/self` on Linux; 0 where unknown).
#[cfg(unix)]
pub fn user_id() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or_else(
        |_| {
            std::env::var("UID")
                .ok()
                .and_then(|u| u.parse().ok())
                .unwrap_or(0)
        },
        |m| m.uid(),
    )
}

/// This process's user id (not used on Windows).
#[cfg(windows)]
pub fn user_id() -> u32 {
    0
}
