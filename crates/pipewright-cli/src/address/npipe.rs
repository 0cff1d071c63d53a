//! `npipe:` and `npipe-listen:`: a pipe client and a pipe server (Unix sockets off Windows).
//!
//! ```ignore
//! let side = npipe::Connect { name, mode: ConnectMode::Auto, timeout, poll: true }.connect().await?;
//! ```

use std::time::Duration;

use pipewright::{ConnectOptions, ListenerOptions, PipeMode, PipeName};

use crate::failure::Failure;
use crate::join::Side;

/// How `npipe:` opens the pipe: `mode=auto|byte|message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectMode {
    /// The default: on Windows the server's pipe type, learned on the one connection
    /// (message read mode on a message pipe, so a half-close is a zero-byte message and a
    /// server's death is told from its orderly end; byte mode on a byte pipe), as
    /// `relay -mode auto`. On Unix, byte mode (message mode there is pipewright's framing
    /// and must be asked for).
    #[default]
    Auto,
    /// Byte mode.
    Byte,
    /// Message mode (on Windows the server's pipe must be a message pipe).
    Message,
}

/// `npipe:NAME[,mode=auto|byte|message][,timeout=D][,poll]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The pipe.
    pub name: PipeName,
    /// Auto (default), byte or message mode.
    pub mode: ConnectMode,
    /// How long to retry a busy pipe (and, with `poll`, a missing one).
    pub timeout: Duration,
    /// Wait for a pipe that does not exist yet.
    pub poll: bool,
}

impl Connect {
    /// Connects.
    pub async fn connect(&self) -> Result<Side, Failure> {
        let options = ConnectOptions::new()
            .timeout(self.timeout)
            .retry_not_found(self.poll);
        let options = match self.mode {
            ConnectMode::Byte => options.mode(PipeMode::Byte),
            ConnectMode::Message => options.mode(PipeMode::Message),
            // The core reads the pipe's type on Windows and ignores this on Unix.
            ConnectMode::Auto => options.mode_from_server(true),
        };
        let stream = pipewright::connect_with(&self.name, &options)
            .await
            .map_err(|e| Failure::from_pipe(&e))?;
        tracing::info!(pipe = %self.name, mode = ?stream.mode(), "connected");
        Ok(Side::from_pipe(self.name.to_string(), stream))
    }
}

/// `npipe-listen:NAME[,backlog=N][,sddl=S][,mode=message][,max-instances=N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The pipe.
    pub name: PipeName,
    /// How it is served.
    pub options: ListenerOptions,
}

impl Listen {
    /// Binds the pipe.
    pub fn bind(&self) -> Result<pipewright::Listener, Failure> {
        pipewright::Listener::bind_with(&self.name, &self.options)
            .map_err(|e| Failure::from_pipe(&e))
    }
}
