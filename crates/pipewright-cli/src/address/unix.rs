//! `unix:PATH` and `unix-listen:PATH[,mode=0600][,unlink-early]` (Unix only; Windows builds
//! refuse them with a message).
//!
//! ```ignore
//! let side = unix::connect(Path::new("/run/user/1000/agent.sock")).await?;
//! ```

use std::path::{Path, PathBuf};

use crate::failure::Failure;
use crate::join::Side;

/// `unix-listen:` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Socket path.
    pub path: PathBuf,
    /// File mode of the socket.
    pub mode: u32,
    /// Remove whatever is at the path before binding.
    pub unlink_early: bool,
}

#[cfg(unix)]
fn name(path: &Path) -> Result<pipewright::PipeName, Failure> {
    pipewright::PipeName::from_path(path).map_err(|e| Failure::from_pipe(&e))
}

/// Connects to the socket at `path`.
#[cfg(unix)]
pub async fn connect(path: &Path) -> Result<Side, Failure> {
    let options = pipewright::ConnectOptions::new().retry_not_found(false);
    let stream = pipewright::connect_with(name(path)?, &options)
        .await
        .map_err(|e| Failure::from_pipe(&e))?;
    Ok(Side::from_pipe(path.display().to_string(), stream))
}

#[cfg(unix)]
impl Listen {
    /// Binds the socket.
    pub fn bind(&self) -> Result<pipewright::Listener, Failure> {
        if self.unlink_early {
            match std::fs::remove_file(&self.path) {
                Ok(()) => tracing::debug!(path = %self.path.display(), "removed before binding"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Failure::from_io(
                        &format!("unlink-early {}", self.path.display()),
                        &e,
                    ))
                }
            }
        }
        let options = pipewright::ListenerOptions::new().unix_mode(self.mode);
        pipewright::Listener::bind_with(name(&self.path)?, &options)
            .map_err(|e| Failure::from_pipe(&e))
    }
}

#[cfg(not(unix))]
fn unsupported() -> Failure {
    Failure::usage(
        "unix: and unix-listen: work on Unix only; on Windows use npipe: and npipe-listen:",
    )
}

/// Connects to the socket at `path`.
#[cfg(not(unix))]
pub async fn connect(_path: &Path) -> Result<Side, Failure> {
    Err(unsupported())
}

#[cfg(not(unix))]
impl Listen {
    /// Binds the socket.
    pub fn bind(&self) -> Result<pipewright::Listener, Failure> {
        Err(unsupported())
    }
}
