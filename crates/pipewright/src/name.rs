//! Pipe names: one type for `\\.\pipe\NAME`, `//./pipe/NAME` and bare `NAME`, and the rule
//! that maps a name to a Unix socket path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, ErrorKind, Result};

/// The longest full pipe path Windows accepts (`\\.\pipe\` included).
pub const MAX_PIPE_PATH_LEN: usize = 256;

/// Environment variable that overrides the directory bare names map into on Unix.
pub const RUNTIME_DIR_ENV: &str = "PIPEWRIGHT_RUNTIME_DIR";

/// The name of a pipe, valid on every platform.
///
/// Accepted forms:
/// - `\\.\pipe\NAME` and `//./pipe/NAME` (any mix of slashes; `pipe` in any case);
/// - bare `NAME`;
/// - `\\HOST\pipe\NAME` for a remote server, only through [`PipeName::parse_remote`];
/// - on Unix, an explicit socket path: anything starting with `/`, `./` or `../`.
///
/// On Windows the pipe is `\\.\pipe\NAME`. On Unix a name maps to the socket
/// `{dir}/NAME.sock`, where `dir` is `$PIPEWRIGHT_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR`,
/// else `/tmp`; an explicit path is used as it is.
///
/// ```
/// use pipewright::PipeName;
/// let a = PipeName::parse(r"\\.\pipe\docker_engine").unwrap();
/// let b = PipeName::parse("//./pipe/docker_engine").unwrap();
/// let c = PipeName::parse("docker_engine").unwrap();
/// assert_eq!(a, b);
/// assert_eq!(b, c);
/// assert_eq!(a.name(), "docker_engine");
/// assert_eq!(a.windows_path(), r"\\.\pipe\docker_engine");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PipeName {
    /// `None` for the local machine.
    host: Option<String>,
    /// The NAME part; for an explicit Unix path, the path's file name.
    name: String,
    /// Set when the caller gave an explicit socket path.
    path: Option<PathBuf>,
}

impl PipeName {
    /// Parses a local pipe name in any accepted form. A remote `\\HOST\pipe\NAME` is refused:
    /// use [`PipeName::parse_remote`] to allow it.
    pub fn parse(input: &str) -> Result<Self> {
        Self::parse_inner(input, false)
    }

    /// Like [`PipeName::parse`], but also accepts `\\HOST\pipe\NAME` for a pipe on another
    /// machine (Windows only; connecting to one fails on Unix).
    pub fn parse_remote(input: &str) -> Result<Self> {
        Self::parse_inner(input, true)
    }

    /// A name for an explicit Unix socket path. On Windows the path's file name is used as
    /// the pipe name.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                invalid(
                    &path.display().to_string(),
                    "a socket path must end in a file name",
                )
            })?
            .to_string();
        Ok(PipeName {
            host: None,
            name,
            path: Some(path.to_path_buf()),
        })
    }

    fn parse_inner(input: &str, allow_remote: bool) -> Result<Self> {
        if input.is_empty() {
            return Err(invalid(
                input,
                "the name is empty; give NAME, \\\\.\\pipe\\NAME or //./pipe/NAME",
            ));
        }
        if input.contains('\0') {
            return Err(invalid(input, "the name contains a NUL character"));
        }
        let is_sep = |c: char| c == '\\' || c == '/';
        if input.starts_with("\\\\") || input.starts_with("//") {
            let rest = &input[2..];
            let (host, rest) = rest
                .split_once(is_sep)
                .ok_or_else(|| invalid(input, "expected \\\\.\\pipe\\NAME or //./pipe/NAME"))?;
            let (prefix, name) = rest
                .split_once(is_sep)
                .ok_or_else(|| invalid(input, "expected \\\\.\\pipe\\NAME or //./pipe/NAME"))?;
            if !prefix.eq_ignore_ascii_case("pipe") {
                return Err(invalid(
                    input,
                    &format!("'{prefix}' is not 'pipe'; a pipe path is \\\\.\\pipe\\NAME"),
                ));
            }
            if host.is_empty() {
                return Err(invalid(
                    input,
                    "the server part is empty; use '.' for this machine",
                ));
            }
            let host = if host == "." {
                None
            } else if allow_remote {
                Some(host.to_string())
            } else {
                return Err(invalid(
                    input,
                    &format!("'{host}' is a remote server, and remote pipes are not allowed here; use \\\\.\\pipe\\NAME for a local pipe"),
                ));
            };
            let pipe = PipeName {
                host,
                name: name.to_string(),
                path: None,
            };
            pipe.validate(input)?;
            return Ok(pipe);
        }
        #[cfg(unix)]
        if input.starts_with('/') || input.starts_with("./") || input.starts_with("../") {
            return Self::from_path(input);
        }
        let pipe = PipeName {
            host: None,
            name: input.to_string(),
            path: None,
        };
        pipe.validate(input)?;
        Ok(pipe)
    }

    fn validate(&self, input: &str) -> Result<()> {
        let name = &self.name;
        if name.is_empty() {
            return Err(invalid(input, "the pipe name after \\pipe\\ is empty"));
        }
        if let Some(c) = name.chars().find(|c| *c == '\\' || *c == '/') {
            return Err(invalid(
                input,
                &format!("the name contains '{c}'; pipe names cannot contain path separators"),
            ));
        }
        if let Some(c) = name.chars().find(|c| c.is_control()) {
            return Err(invalid(
                input,
                &format!("the name contains the control character {:?}", c),
            ));
        }
        let full = self.windows_path();
        let len = full.encode_utf16().count();
        if len > MAX_PIPE_PATH_LEN {
            return Err(invalid(
                input,
                &format!("the pipe path is {len} characters long; Windows allows at most {MAX_PIPE_PATH_LEN}"),
            ));
        }
        Ok(())
    }

    /// The NAME part (for an explicit Unix path, its file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The remote server, when the name is `\\HOST\pipe\NAME`.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The Windows path, `\\.\pipe\NAME` (or `\\HOST\pipe\NAME`).
    pub fn windows_path(&self) -> String {
        format!(
            r"\\{}\pipe\{}",
            self.host.as_deref().unwrap_or("."),
            self.name
        )
    }

    /// The Unix socket path: the explicit path if one was given, otherwise
    /// `{dir}/NAME.sock` with `dir` from `$PIPEWRIGHT_RUNTIME_DIR`, `$XDG_RUNTIME_DIR`, or `/tmp`.
    pub fn unix_path(&self) -> PathBuf {
        if let Some(path) = &self.path {
            return path.clone();
        }
        let dir = std::env::var_os(RUNTIME_DIR_ENV)
            .filter(|d| !d.is_empty())
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        dir.join(format!("{}.sock", self.name))
    }

    /// The path this platform opens: [`windows_path`](Self::windows_path) on Windows,
    /// [`unix_path`](Self::unix_path) on Unix.
    pub fn platform_path(&self) -> String {
        #[cfg(windows)]
        {
            self.windows_path()
        }
        #[cfg(not(windows))]
        {
            self.unix_path().display().to_string()
        }
    }
}

fn invalid(input: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidName, format!("invalid pipe name: {why}"))
        .with_pipe(format!("{input:?}"))
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.platform_path())
    }
}

impl fmt::Debug for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PipeName({:?})", self.platform_path())
    }
}

impl FromStr for PipeName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PipeName::parse(s)
    }
}

/// Anything that names a pipe: `&str`, `String`, or a [`PipeName`].
pub trait ToPipeName {
    /// Parses or clones into a [`PipeName`].
    fn to_pipe_name(&self) -> Result<PipeName>;
}

impl ToPipeName for PipeName {
    fn to_pipe_name(&self) -> Result<PipeName> {
        Ok(self.clone())
    }
}
impl ToPipeName for &PipeName {
    fn to_pipe_name(&self) -> Result<PipeName> {
        Ok((*self).clone())
    }
}
impl ToPipeName for str {
    fn to_pipe_name(&self) -> Result<PipeName> {
        PipeName::parse(self)
    }
}
impl ToPipeName for &str {
    fn to_pipe_name(&self) -> Result<PipeName> {
        PipeName::parse(self)
    }
}
impl ToPipeName for String {
    fn to_pipe_name(&self) -> Result<PipeName> {
        PipeName::parse(self)
    }
}
impl ToPipeName for &String {
    fn to_pipe_name(&self) -> Result<PipeName> {
        PipeName::parse(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(input: &str) -> ErrorKind {
        PipeName::parse(input).unwrap_err().kind()
    }

    #[test]
    fn all_local_forms_give_the_same_name() {
        for form in [
            r"\\.\pipe\a.b-c",
            "//./pipe/a.b-c",
            r"\\.\PIPE\a.b-c",
            r"//.\pipe/a.b-c",
            "a.b-c",
        ] {
            let p = PipeName::parse(form).unwrap();
            assert_eq!(p.name(), "a.b-c", "{form}");
            assert_eq!(p.host(), None);
            assert_eq!(p.windows_path(), r"\\.\pipe\a.b-c");
        }
    }

    #[test]
    fn rejects_empty_nul_separators_and_control_characters() {
        assert_eq!(kind_of(""), ErrorKind::InvalidName);
        assert_eq!(kind_of(r"\\.\pipe\"), ErrorKind::InvalidName);
        assert_eq!(kind_of("a\0b"), ErrorKind::InvalidName);
        assert_eq!(kind_of(r"\\.\pipe\a\b"), ErrorKind::InvalidName);
        assert_eq!(kind_of("a\\b"), ErrorKind::InvalidName);
        assert_eq!(kind_of("a\nb"), ErrorKind::InvalidName);
        assert_eq!(kind_of(r"\\.\file\x"), ErrorKind::InvalidName);
        assert_eq!(kind_of(r"\\.\pipe"), ErrorKind::InvalidName);
        assert_eq!(kind_of(r"\\\pipe\x"), ErrorKind::InvalidName);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let msg = PipeName::parse(r"\\.\file\x").unwrap_err().to_string();
        assert!(msg.contains("'file' is not 'pipe'"), "{msg}");
        let msg = PipeName::parse("a\0b").unwrap_err().to_string();
        assert!(msg.contains("NUL"), "{msg}");
    }

    #[test]
    fn length_limit_counts_the_whole_path() {
        let prefix = r"\\.\pipe\".len();
        let ok = "x".repeat(MAX_PIPE_PATH_LEN - prefix);
        assert!(PipeName::parse(&ok).is_ok());
        let long = "x".repeat(MAX_PIPE_PATH_LEN - prefix + 1);
        let err = PipeName::parse(&long).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(err.to_string().contains("at most 256"), "{err}");
    }

    #[test]
    fn remote_names_only_when_allowed() {
        let err = PipeName::parse(r"\\server\pipe\x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName);
        assert!(err.to_string().contains("remote"), "{err}");
        let remote = PipeName::parse_remote(r"\\server\pipe\x").unwrap();
        assert_eq!(remote.host(), Some("server"));
        assert_eq!(remote.windows_path(), r"\\server\pipe\x");
    }

    #[cfg(unix)]
    #[test]
    fn unix_explicit_paths_are_kept() {
        let p = PipeName::parse("/run/user/1/agent.sock").unwrap();
        assert_eq!(p.unix_path(), PathBuf::from("/run/user/1/agent.sock"));
        assert_eq!(p.name(), "agent.sock");
        let p = PipeName::parse("./x.sock").unwrap();
        assert_eq!(p.unix_path(), PathBuf::from("./x.sock"));
    }

    #[test]
    fn bare_names_map_under_the_runtime_dir() {
        let p = PipeName::parse("svc").unwrap();
        let path = p.unix_path();
        assert_eq!(path.file_name().unwrap(), "svc.sock");
    }
}
