//! How the daemon starts the Windows host: `--windows-command`, `--windows-exe`,
//! `$PIPEWRIGHT_WINDOWS_EXE`, the config file, `pipewright.exe` beside this binary, or on `PATH`.
//!
//! ```ignore
//! let launch = Launch::resolve(None, Some("wine64 pipewright.exe wsl-host".into()), &FileConfig::default())?;
//! let child = launch.command().stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::config::FileConfig;

/// The environment variable naming the Windows executable.
pub const WINDOWS_EXE_ENV: &str = "PIPEWRIGHT_WINDOWS_EXE";

/// How to start the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// `EXE wsl-host`.
    Exe(PathBuf),
    /// A whole command line, run by the shell (it must start `pipewright.exe wsl-host`).
    Command(String),
}

impl Launch {
    /// Picks the first of: `--windows-command`, `--windows-exe`, `$PIPEWRIGHT_WINDOWS_EXE`,
    /// the config file's `windows_command` / `windows_exe`, `pipewright.exe` beside this
    /// binary, `pipewright.exe` on `PATH`.
    pub fn resolve(
        exe: Option<PathBuf>,
        command: Option<String>,
        file: &FileConfig,
    ) -> Result<Launch, String> {
        if let Some(c) = command.filter(|c| !c.trim().is_empty()) {
            return Ok(Launch::Command(c));
        }
        if let Some(e) = exe {
            return Ok(Launch::Exe(e));
        }
        if let Some(e) = std::env::var_os(WINDOWS_EXE_ENV).filter(|v| !v.is_empty()) {
            return Ok(Launch::Exe(PathBuf::from(e)));
        }
        if let Some(c) = file
            .windows_command
            .clone()
            .filter(|c| !c.trim().is_empty())
        {
            return Ok(Launch::Command(c));
        }
        if let Some(e) = file.windows_exe.clone() {
            return Ok(Launch::Exe(super::config::expand_home(&e)));
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("pipewright.exe")))
            .filter(|p| p.is_file());
        if let Some(e) = beside {
            return Ok(Launch::Exe(e));
        }
        if let Some(e) = on_path("pipewright.exe") {
            return Ok(Launch::Exe(e));
        }
        Err(format!(
            "no Windows pipewright.exe found: give --windows-exe PATH (e.g. /mnt/c/Tools/pipewright.exe), \
             set ${WINDOWS_EXE_ENV}, put windows_exe in wsl.toml, or put pipewright.exe beside this binary or on PATH"
        ))
    }

    /// The command that starts the host, without its stdio set; an executable gets
    /// `verbose` times `-v` (its log goes to the daemon's stderr).
    pub fn command(&self, verbose: u8) -> tokio::process::Command {
        match self {
            Launch::Exe(exe) => {
                let mut c = tokio::process::Command::new(exe);
                for _ in 0..verbose {
                    c.arg("-v");
                }
                c.arg("wsl-host");
                c
            }
            Launch::Command(line) => shell(line),
        }
    }
}

#[cfg(unix)]
fn shell(line: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("/bin/sh");
    // `exec` makes the host the shell's own process, so its pid is the one `status` shows
    // and the one a kill reaches.
    c.arg("-c").arg(format!("exec {line}"));
    c
}

#[cfg(windows)]
fn shell(line: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("cmd.exe");
    c.arg("/D").arg("/C").arg(line);
    c
}

fn on_path(file: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(file))
        .find(|p| Path::new(p).is_file())
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Launch::Exe(e) => write!(f, "{} wsl-host", e.display()),
            Launch::Command(c) => f.write_str(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_first() {
        let file = FileConfig {
            windows_exe: Some(PathBuf::from("/from/config.exe")),
            ..FileConfig::default()
        };
        assert_eq!(
            Launch::resolve(
                Some("/a.exe".into()),
                Some("wine64 b.exe wsl-host".into()),
                &file
            ),
            Ok(Launch::Command("wine64 b.exe wsl-host".into()))
        );
        assert_eq!(
            Launch::resolve(Some("/a.exe".into()), None, &file),
            Ok(Launch::Exe("/a.exe".into()))
        );
        assert_eq!(Launch::Exe("/a.exe".into()).to_string(), "/a.exe wsl-host");
    }
}
