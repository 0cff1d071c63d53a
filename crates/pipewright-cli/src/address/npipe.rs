//! `npipe:` and `npipe-listen:`: a pipe client and a pipe server (Unix sockets off Windows).
//!
//! ```ignore
//! let side = npipe::Connect { name, mode: PipeMode::Message, timeout, poll: true }.connect().await?;
//! ```

use std::time::Duration;

use pipewright::{ConnectOptions, ListenerOptions, PipeMode, PipeName};

use crate::failure::Failure;
use crate::join::Side;

/// `npipe:NAME[,mode=message][,timeout=D][,poll]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The pipe.
    pub name: PipeName,
    /// Byte or message mode.
    pub mode: PipeMode,
    /// How long to retry a busy pipe (and, with `poll`, a missing one).
    pub timeout: Duration,
    /// Wait for a pipe that does not exist yet.
    pub poll: bool,
}

impl Connect {
    /// Connects.
    pub async fn connect(&self) -> Result<Side, Failure> {
        let options = ConnectOptions::new()
            .mode(self.mode)
            .timeout(self.timeout)
            .retry_not_found(self.poll);
        let stream = pipewright::connect_with(&self.name, &options)
            .await
            .map_err(|e| Failure::from_pipe(&e))?;
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
