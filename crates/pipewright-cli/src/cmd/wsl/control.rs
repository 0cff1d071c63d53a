//! The daemon's control socket (`control.sock` in the state directory, mode 0600): one JSON
//! request line, one JSON reply line. `status`, `down` and the shortcuts use it, and it is
//! how a second shell finds the daemon the first one started.
//!
//! ```ignore
//! let reply = control::request(&dir, &Request::Status).await?;
//! ```

use std::path::Path;
use std::time::Duration;

use pipewright::{Listener, PipeName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::config::SocketSpec;
use super::daemon::{Daemon, Status};
use super::paths;

/// The longest request or reply line.
const MAX_LINE: usize = 256 * 1024;
/// How long a client or the daemon waits for the other's line.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A request to the daemon.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// What it serves and how it is doing.
    Status,
    /// Serve one more socket (a no-op when it is served already).
    Serve {
        /// The socket.
        socket: SocketSpec,
    },
    /// Stop: close every socket, end the Windows host, exit.
    Down,
}

/// The daemon's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    /// Done.
    Ok,
    /// The status.
    Status(Box<Status>),
    /// Refused, with the reason.
    Error {
        /// Why.
        message: String,
    },
}

fn control_name(dir: &Path) -> Result<PipeName, String> {
    PipeName::from_path(dir.join(paths::CONTROL)).map_err(|e| e.to_string())
}

/// Binds the control socket. This is also what keeps a second daemon out: binding fails
/// with `AlreadyInUse` while a daemon serves `dir` (a stale socket file is replaced).
pub fn bind(dir: &Path) -> Result<Listener, BindError> {
    let name = control_name(dir).map_err(BindError::Other)?;
    Listener::bind(name).map_err(|e| match e.kind() {
        pipewright::ErrorKind::AlreadyInUse => BindError::Running,
        _ => BindError::Other(format!(
            "cannot listen on {}: {e}",
            dir.join(paths::CONTROL).display()
        )),
    })
}

/// Why [`bind`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindError {
    /// A daemon already serves the directory.
    Running,
    /// Anything else, with the reason.
    Other(String),
}

/// Sends one request to the daemon serving `dir`. Fails with `NotFound`-like text when no
/// daemon runs there.
pub async fn request(dir: &Path, req: &Request) -> Result<Reply, ControlError> {
    let name = control_name(dir).map_err(ControlError::Other)?;
    let options = pipewright::ConnectOptions::new()
        .timeout(Duration::from_secs(2))
        .retry_not_found(false);
    let stream = pipewright::connect_with(&name, &options)
        .await
        .map_err(|e| match e.kind() {
            pipewright::ErrorKind::NotFound => ControlError::NoDaemon,
            _ => ControlError::Other(format!("cannot reach the daemon: {e}")),
        })?;
    let exchange = async {
        let mut stream = BufReader::new(stream);
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        stream
            .get_mut()
            .write_all(&line)
            .await
            .map_err(|e| e.to_string())?;
        let reply = read_line(&mut stream).await?;
        serde_json::from_slice(&reply).map_err(|e| {
            format!("the daemon's reply is not understood ({e}): is it another pipewright version?")
        })
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Other("the daemon did not answer within 10 s".into()))?
        .map_err(ControlError::Other)
}

/// Why a control request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the control socket.
    #[error("no pipewright wsl daemon is running")]
    NoDaemon,
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut limited = tokio::io::AsyncReadExt::take(r, MAX_LINE as u64);
    limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| e.to_string())?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() >= MAX_LINE {
            "control line longer than 256 KiB".into()
        } else {
            "the connection ended before a whole line".into()
        });
    }
    line.pop();
    Ok(line)
}

/// Serves control requests until the daemon stops.
pub async fn serve(listener: Listener, daemon: Daemon) {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let line = match tokio::time::timeout(TIMEOUT, read_line(&mut stream)).await {
                Ok(Ok(line)) => line,
                Ok(Err(e)) => {
                    tracing::info!("control socket: {e}");
                    return;
                }
                Err(_) => return,
            };
            let mut stop = false;
            let reply = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Status) => Reply::Status(Box::new(daemon.status())),
                Ok(Request::Serve { socket }) => {
                    match socket
                        .checked()
                        .map_err(|m| m.to_string())
                        .and_then(|s| daemon.serve(s).map_err(|e| e.message))
                    {
                        Ok(()) => Reply::Ok,
                        Err(message) => Reply::Error { message },
                    }
                }
                Ok(Request::Down) => {
                    stop = true;
                    Reply::Ok
                }
                Err(e) => Reply::Error {
                    message: format!("request not understood: {e}"),
                },
            };
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let _ = stream.get_mut().write_all(&out).await;
            let _ = stream.get_mut().shutdown().await;
            if stop {
                daemon.stop();
            }
        });
    }
}
