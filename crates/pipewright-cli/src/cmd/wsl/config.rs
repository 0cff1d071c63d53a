//! What the daemon serves: sockets from `--socket` flags and from
//! `~/.config/pipewright/wsl.toml`, and how it starts the Windows host.
//!
//! ```toml
//! # ~/.config/pipewright/wsl.toml
//! windows_exe = "/mnt/c/Tools/pipewright.exe"
//! ssh_extensions = "auto"          # auto | forward | fail
//!
//! [[socket]]
//! path = "~/.ssh/agent.sock"
//! target = "npipe:openssh-ssh-agent"
//! kind = "ssh-agent"               # raw (default) | ssh-agent
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::wire;
use crate::address::Address;

/// How the daemon treats a socket's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Bytes pass unchanged (Docker, gpg-agent, any service).
    #[default]
    Raw,
    /// The ssh-agent protocol: frames are checked, extension requests handled per
    /// `--ssh-extensions`.
    SshAgent,
}

impl Kind {
    /// The name used in flags, config and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::SshAgent => "ssh-agent",
        }
    }
}

/// What the daemon does with ssh-agent extension requests (message 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ExtensionSetting {
    /// Ask the agent once per Windows host start; forward if it answers, else fail.
    #[default]
    Auto,
    /// Pass extension requests to the agent.
    Forward,
    /// Answer extension requests with SSH_AGENT_FAILURE here.
    Fail,
}

/// One socket the daemon listens on and the target its connections go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSpec {
    /// The Unix socket's path.
    pub path: PathBuf,
    /// The Windows-side target: `npipe:NAME[,options]` or `assuan:FILE`.
    pub target: String,
    /// How bytes are treated.
    #[serde(default)]
    pub kind: Kind,
}

impl SocketSpec {
    /// Parses `PATH=TARGET[;kind=ssh-agent]` as `--socket` takes it.
    ///
    /// ```ignore
    /// let spec = SocketSpec::parse_flag("/run/user/1000/agent.sock=npipe:openssh-ssh-agent;kind=ssh-agent")?;
    /// ```
    pub fn parse_flag(text: &str) -> Result<SocketSpec, String> {
        let (path, rest) = text.split_once('=').ok_or_else(|| {
            format!("`{text}`: write PATH=TARGET[;kind=raw|ssh-agent], e.g. /tmp/agent.sock=npipe:openssh-ssh-agent;kind=ssh-agent")
        })?;
        let (target, kind) = match rest.rsplit_once(";kind=") {
            Some((target, "raw")) => (target, Kind::Raw),
            Some((target, "ssh-agent")) => (target, Kind::SshAgent),
            Some((_, other)) => {
                return Err(format!(
                    "`{text}`: kind `{other}` is unknown; use kind=raw or kind=ssh-agent"
                ))
            }
            None => (rest, Kind::Raw),
        };
        SocketSpec {
            path: expand_home(Path::new(path)),
            target: target.to_string(),
            kind,
        }
        .checked()
    }

    /// Checks the path and the target's syntax.
    pub fn checked(mut self) -> Result<SocketSpec, String> {
        self.path = expand_home(&self.path);
        if self.path.as_os_str().is_empty() {
            return Err("a socket needs a path".into());
        }
        if !self.path.is_absolute() {
            return Err(format!(
                "socket path `{}` is relative; give an absolute path (or one starting with ~/)",
                self.path.display()
            ));
        }
        wire::encode_request(&self.target).map_err(|e| format!("target `{}`: {e}", self.target))?;
        match Address::parse(&self.target) {
            Ok(Address::Npipe(_) | Address::Assuan { .. }) => Ok(self),
            Ok(_) => Err(format!(
                "target `{}`: the Windows side opens npipe:NAME or assuan:FILE only",
                self.target
            )),
            Err(e) => Err(format!("target {e}")),
        }
    }
}

/// The contents of `wsl.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The Windows executable (`pipewright.exe`).
    pub windows_exe: Option<PathBuf>,
    /// A whole command line that starts the host (e.g. `wine64 pipewright.exe wsl-host`).
    pub windows_command: Option<String>,
    /// The ssh-agent extension setting.
    pub ssh_extensions: Option<ExtensionSetting>,
    /// The sockets.
    #[serde(default)]
    pub socket: Vec<SocketSpec>,
}

impl FileConfig {
    /// Parses a config file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<FileConfig, String> {
        let config: FileConfig = toml::from_str(text)
            .map_err(|e| format!("{}: {}", origin.display(), e.to_string().trim_end()))?;
        let socket = config
            .socket
            .into_iter()
            .map(|s| {
                s.checked()
                    .map_err(|e| format!("{}: {e}", origin.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(FileConfig { socket, ..config })
    }

    /// Reads `path`; with `required` false a missing file is an empty config.
    pub fn load(path: &Path, required: bool) -> Result<FileConfig, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => FileConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(FileConfig::default())
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// `$XDG_CONFIG_HOME/pipewright/wsl.toml`, else `~/.config/pipewright/wsl.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))?;
    Some(base.join("pipewright").join("wsl.toml"))
}

/// The user's home directory.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `~/x` becomes `$HOME/x`.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), home()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An absolute directory on this platform (`/tmp` is relative on Windows).
    const ROOT: &str = if cfg!(windows) { "C:/tmp" } else { "/tmp" };

    #[test]
    fn socket_flags_parse() {
        let spec = SocketSpec::parse_flag(&format!(
            "{ROOT}/a.sock=npipe:openssh-ssh-agent;kind=ssh-agent"
        ))
        .unwrap();
        assert_eq!(spec.path, PathBuf::from(format!("{ROOT}/a.sock")));
        assert_eq!(spec.target, "npipe:openssh-ssh-agent");
        assert_eq!(spec.kind, Kind::SshAgent);
        let spec = SocketSpec::parse_flag(&format!("{ROOT}/d.sock=npipe:docker_engine,mode=byte"))
            .unwrap();
        assert_eq!(spec.target, "npipe:docker_engine,mode=byte");
        assert_eq!(spec.kind, Kind::Raw);
    }

    #[test]
    fn bad_socket_flags_name_the_fix() {
        let cases = [
            ("/a.sock", "PATH=TARGET"),
            ("rel.sock=npipe:x", "relative"),
            ("/a.sock=tcp:1.2.3.4:5", "npipe:NAME or assuan:FILE"),
            ("/a.sock=npipe:x;kind=gpg", "kind `gpg` is unknown"),
            ("/a.sock=", "no target"),
        ];
        for (input, needle) in cases {
            let input = input.replacen("/a.sock", &format!("{ROOT}/a.sock"), 1);
            let err = SocketSpec::parse_flag(&input).unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn config_files_parse_and_errors_name_the_file() {
        let text = format!(
            r#"
windows_command = "wine64 pipewright.exe wsl-host"
ssh_extensions = "fail"
[[socket]]
path = "{ROOT}/agent.sock"
target = "npipe:openssh-ssh-agent"
kind = "ssh-agent"
[[socket]]
path = "{ROOT}/docker.sock"
target = "npipe:docker_engine"
"#
        );
        let c = FileConfig::parse(&text, Path::new("wsl.toml")).unwrap();
        assert_eq!(c.ssh_extensions, Some(ExtensionSetting::Fail));
        assert_eq!(c.socket.len(), 2);
        assert_eq!(c.socket[1].kind, Kind::Raw);
        for (bad, needle) in [
            ("[[socket]]\npath = \"/a\"\n", "target"),
            (
                "[[socket]]\npath = \"/a\"\ntarget = \"npipe:x\"\nkind = \"gpg\"\n",
                "kind",
            ),
            ("colour = 1\n", "colour"),
            (
                "[[socket]]\npath = \"/a\"\ntarget = \"unix:/x\"\n",
                "npipe:NAME or assuan:FILE",
            ),
            ("this is not toml", "wsl.toml"),
        ] {
            let bad = bad.replacen("\"/a\"", &format!("\"{ROOT}/a\""), 1);
            let err = FileConfig::parse(&bad, Path::new("wsl.toml")).unwrap_err();
            assert!(
                err.contains("wsl.toml") && err.contains(needle),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_missing_optional_file_is_empty() {
        let c = FileConfig::load(Path::new("/nonexistent/pipewright/wsl.toml"), false).unwrap();
        assert!(c.socket.is_empty());
        assert!(FileConfig::load(Path::new("/nonexistent/wsl.toml"), true).is_err());
    }
}
