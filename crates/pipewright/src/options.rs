//! Options for listeners and clients: plain builders whose defaults are the safe choice.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// How data is framed on the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PipeMode {
    /// A byte stream, like TCP.
    #[default]
    Byte,
    /// Each write is one message and each [`recv_message`](crate::PipeStream::recv_message)
    /// returns one whole message. On Windows this is a message-mode pipe; on Unix, messages
    /// travel as frames of a 4-byte little-endian length and the payload over a stream socket
    /// (both ends must use message mode).
    Message,
}

/// Who may open a pipe created by a listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Security {
    /// Only the current user, SYSTEM and Administrators (Windows); socket file mode 0600 (Unix).
    #[default]
    CurrentUser,
    /// A Windows security descriptor in SDDL, e.g. `D:P(A;;GA;;;AU)`. Windows only: a listener
    /// on Unix refuses it and points to [`ListenerOptions::unix_mode`].
    Sddl(String),
}

/// How much the client lets a server impersonate it (Windows `SECURITY_SQOS_PRESENT` levels).
/// Ignored on Unix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImpersonationLevel {
    /// The server cannot learn or use the client's identity through impersonation (default).
    #[default]
    Anonymous,
    /// The server can read the client's identity but not act as it.
    Identification,
    /// The server can act as the client on this machine.
    Impersonation,
    /// The server can act as the client on other machines.
    Delegation,
}

/// Default size of each read and write the stream issues (bytes).
pub const DEFAULT_IO_BUFFER_SIZE: usize = 1024 * 1024;
/// Default limit for one message in message mode (bytes).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Default number of pending server instances a listener keeps.
pub const DEFAULT_BACKLOG: usize = 4;
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default linger limit: how long closing a stream waits for the peer to take what was
/// written (see [`ListenerOptions::linger`]).
pub(crate) const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// Stream settings shared by listeners and clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamConfig {
    pub mode: PipeMode,
    pub io_buffer_size: usize,
    pub max_message_size: usize,
    /// How long drop, `shutdown` and `close_write` wait for our own outstanding writes
    /// (Windows; a Unix socket keeps written bytes in the kernel).
    #[cfg_attr(not(windows), allow(dead_code))]
    pub linger: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            mode: PipeMode::Byte,
            io_buffer_size: DEFAULT_IO_BUFFER_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            linger: DEFAULT_LINGER,
        }
    }
}

impl StreamConfig {
    fn validate(&self) -> Result<()> {
        if self.io_buffer_size < 512 || self.io_buffer_size > 64 * 1024 * 1024 {
            return Err(Error::new(
                ErrorKind::InvalidOption,
                format!(
                    "io_buffer_size {} is out of range; use 512 bytes to 64 MiB",
                    self.io_buffer_size
                ),
            ));
        }
        if self.max_message_size == 0 || self.max_message_size > u32::MAX as usize {
            return Err(Error::new(
                ErrorKind::InvalidOption,
                format!(
                    "max_message_size {} is out of range; use 1 byte to 4 GiB - 1",
                    self.max_message_size
                ),
            ));
        }
        Ok(())
    }
}

/// How a [`Listener`](crate::Listener) creates and serves its pipe.
///
/// ```
/// use pipewright::{ListenerOptions, PipeMode};
/// let opts = ListenerOptions::new().mode(PipeMode::Message).backlog(8);
/// assert_eq!(opts.get_backlog(), 8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOptions {
    pub(crate) stream: StreamConfig,
    pub(crate) backlog: usize,
    pub(crate) max_instances: Option<u32>,
    pub(crate) in_buffer_size: u32,
    pub(crate) out_buffer_size: u32,
    pub(crate) first_instance: bool,
    pub(crate) reject_remote: bool,
    pub(crate) security: Security,
    pub(crate) unix_mode: u32,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            stream: StreamConfig::default(),
            backlog: DEFAULT_BACKLOG,
            max_instances: None,
            in_buffer_size: 64 * 1024,
            out_buffer_size: 64 * 1024,
            first_instance: true,
            reject_remote: true,
            security: Security::CurrentUser,
            unix_mode: 0o600,
        }
    }
}

impl ListenerOptions {
    /// The defaults: byte mode, backlog 4, current user only, first-instance guard and
    /// remote rejection on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Byte or message mode (default byte).
    pub fn mode(mut self, mode: PipeMode) -> Self {
        self.stream.mode = mode;
        self
    }

    /// How many clients can be waiting to be accepted (default 4): connected but not yet
    /// returned by [`accept`](crate::Listener::accept), plus (Windows) the free instances
    /// waiting for them. On Windows the listener keeps pending + not-yet-accepted instances
    /// at `backlog`; clients beyond it see a busy pipe and retry within their connect timeout,
    /// so a flood against a slow acceptor holds at most `backlog` instances. On Unix it is the
    /// kernel's listen queue, never below 128 (common Unix clients such as curl and ssh do not
    /// retry a busy socket); the kernel bounds it either way.
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog;
        self
    }

    /// The most instances the pipe may have, 1 to 254; default unlimited. Windows only.
    /// The listener counts its own: pending, connected-not-yet-accepted and accepted streams
    /// not yet closed. At the limit, [`accept`](crate::Listener::accept) waits until an
    /// accepted stream closes (it does not fail) and new clients see a busy pipe.
    pub fn max_instances(mut self, max: u32) -> Self {
        self.max_instances = Some(max);
        self
    }

    /// The pipe's input and output buffer sizes as given to `CreateNamedPipe` (default 64 KiB
    /// each). Windows only.
    pub fn pipe_buffer_sizes(mut self, in_size: u32, out_size: u32) -> Self {
        self.in_buffer_size = in_size;
        self.out_buffer_size = out_size;
        self
    }

    /// Size of each read and write the stream issues (default 1 MiB; reads start at 16 KiB and grow only while they fill).
    pub fn io_buffer_size(mut self, size: usize) -> Self {
        self.stream.io_buffer_size = size;
        self
    }

    /// Largest message [`recv_message`](crate::PipeStream::recv_message) accepts (default 16 MiB).
    pub fn max_message_size(mut self, size: usize) -> Self {
        self.stream.max_message_size = size;
        self
    }

    /// How long closing an accepted stream waits for the client to take the bytes already
    /// reported written (default 30 s). Dropping a stream delivers every byte a write reported
    /// as written, then (message mode) the end-of-stream message, then closes, in the
    /// background, without blocking the dropping thread; `shutdown()` and `close_write()` wait
    /// for our own writes. Past the linger limit the remaining writes are cancelled and the
    /// pipe is closed (`shutdown()` then fails with [`TimedOut`](crate::ErrorKind::TimedOut)).
    /// Windows only: a Unix socket keeps written bytes in the kernel.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = pipewright::ListenerOptions::new().linger(Duration::from_secs(2));
    /// # let _ = opts;
    /// ```
    pub fn linger(mut self, limit: Duration) -> Self {
        self.stream.linger = limit;
        self
    }

    /// Refuse to bind a name another server already serves (default on).
    pub fn first_instance(mut self, on: bool) -> Self {
        self.first_instance = on;
        self
    }

    /// Refuse clients from other machines (default on). Windows only.
    pub fn reject_remote_clients(mut self, on: bool) -> Self {
        self.reject_remote = on;
        self
    }

    /// Who may connect (default: the current user only).
    pub fn security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Shorthand for `security(Security::Sddl(sddl))`.
    pub fn sddl(self, sddl: impl Into<String>) -> Self {
        self.security(Security::Sddl(sddl.into()))
    }

    /// File mode of the socket on Unix (default `0o600`). Ignored on Windows.
    pub fn unix_mode(mut self, mode: u32) -> Self {
        self.unix_mode = mode;
        self
    }

    /// The configured backlog.
    pub fn get_backlog(&self) -> usize {
        self.backlog
    }

    /// The configured mode.
    pub fn get_mode(&self) -> PipeMode {
        self.stream.mode
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.stream.validate()?;
        if self.backlog == 0 || self.backlog > 254 {
            return Err(Error::new(
                ErrorKind::InvalidOption,
                format!("backlog {} is out of range; use 1 to 254", self.backlog),
            ));
        }
        if let Some(max) = self.max_instances {
            if max == 0 || max > 254 {
                return Err(Error::new(
                    ErrorKind::InvalidOption,
                    format!("max_instances {max} is out of range; use 1 to 254"),
                ));
            }
            if (max as usize) < self.backlog {
                return Err(Error::new(
                    ErrorKind::InvalidOption,
                    format!(
                        "max_instances {max} is below the backlog {}; lower the backlog or raise max_instances",
                        self.backlog
                    ),
                ));
            }
        }
        if self.unix_mode & !0o777 != 0 {
            return Err(Error::new(
                ErrorKind::InvalidOption,
                format!("unix_mode {:o} has bits beyond 0o777", self.unix_mode),
            ));
        }
        Ok(())
    }
}

/// How [`connect_with`](crate::connect_with) opens a pipe.
///
/// ```
/// use std::time::Duration;
/// use pipewright::{ConnectOptions, PipeMode};
/// let opts = ConnectOptions::new().timeout(Duration::from_millis(500)).mode(PipeMode::Message);
/// assert_eq!(opts.get_timeout(), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub(crate) stream: StreamConfig,
    pub(crate) timeout: Duration,
    pub(crate) retry_busy: bool,
    pub(crate) retry_not_found: bool,
    pub(crate) impersonation: ImpersonationLevel,
    pub(crate) mode_from_server: bool,
    pub(crate) allow_remote: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            stream: StreamConfig::default(),
            timeout: DEFAULT_CONNECT_TIMEOUT,
            retry_busy: true,
            retry_not_found: true,
            impersonation: ImpersonationLevel::Anonymous,
            mode_from_server: false,
            allow_remote: false,
        }
    }
}

impl ConnectOptions {
    /// The defaults: byte mode, 5 s timeout, retry busy and not-found, anonymous impersonation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Byte or message mode (default byte). On Windows, message mode sets the client's read
    /// mode; the server's pipe must be a message pipe.
    pub fn mode(mut self, mode: PipeMode) -> Self {
        self.stream.mode = mode;
        self
    }

    /// Windows: open the pipe in the mode its server created it with (message read mode for a
    /// message pipe, byte mode otherwise), on the same connection, instead of the configured
    /// [`mode`](Self::mode). [`PipeStream::mode`](crate::PipeStream::mode) tells which one it
    /// got. Unix sockets carry no pipe type, so on Unix the configured mode is used.
    ///
    /// ```
    /// let opts = pipewright::ConnectOptions::new().mode_from_server(true);
    /// # let _ = opts;
    /// ```
    pub fn mode_from_server(mut self, on: bool) -> Self {
        self.mode_from_server = on;
        self
    }

    /// How long to keep retrying a busy or missing pipe (default 5 s). Zero tries once.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allow a remote `\\HOST\pipe\NAME` (a [`PipeName::parse_remote`](crate::PipeName::parse_remote)
    /// name; default off: such a name fails with [`InvalidName`](crate::ErrorKind::InvalidName)).
    /// Windows only. Opening a remote pipe goes over SMB and can block for the network's
    /// own timeout, so it runs on tokio's blocking pool and the connect
    /// [`timeout`](Self::timeout) abandons it; an open that finishes later is closed.
    ///
    /// ```
    /// let opts = pipewright::ConnectOptions::new().allow_remote(true);
    /// # let _ = opts;
    /// ```
    pub fn allow_remote(mut self, on: bool) -> Self {
        self.allow_remote = on;
        self
    }

    /// Retry while every instance is busy (default on).
    pub fn retry_busy(mut self, on: bool) -> Self {
        self.retry_busy = on;
        self
    }

    /// Retry while no server exists yet (default on).
    pub fn retry_not_found(mut self, on: bool) -> Self {
        self.retry_not_found = on;
        self
    }

    /// The impersonation level granted to the server (default anonymous). Windows only.
    pub fn impersonation(mut self, level: ImpersonationLevel) -> Self {
        self.impersonation = level;
        self
    }

    /// Size of each read and write the stream issues (default 1 MiB; reads start at 16 KiB and grow only while they fill).
    pub fn io_buffer_size(mut self, size: usize) -> Self {
        self.stream.io_buffer_size = size;
        self
    }

    /// Largest message accepted in message mode (default 16 MiB).
    pub fn max_message_size(mut self, size: usize) -> Self {
        self.stream.max_message_size = size;
        self
    }

    /// How long closing the stream waits for the server to take the bytes already reported
    /// written (default 30 s); see [`ListenerOptions::linger`]. Windows only.
    ///
    /// ```
    /// use std::time::Duration;
    /// let opts = pipewright::ConnectOptions::new().linger(Duration::from_millis(500));
    /// # let _ = opts;
    /// ```
    pub fn linger(mut self, limit: Duration) -> Self {
        self.stream.linger = limit;
        self
    }

    /// The configured timeout.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured mode.
    pub fn get_mode(&self) -> PipeMode {
        self.stream.mode
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.stream.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_choice() {
        let o = ListenerOptions::new();
        assert_eq!(o.backlog, 4);
        assert!(o.first_instance);
        assert!(o.reject_remote);
        assert_eq!(o.security, Security::CurrentUser);
        assert_eq!(o.unix_mode, 0o600);
        assert!(o.validate().is_ok());
        let c = ConnectOptions::new();
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.impersonation, ImpersonationLevel::Anonymous);
    }

    #[test]
    fn bad_options_name_the_option_and_the_range() {
        let cases = [
            (ListenerOptions::new().backlog(0), "backlog 0"),
            (ListenerOptions::new().backlog(300), "backlog 300"),
            (ListenerOptions::new().max_instances(0), "max_instances 0"),
            (
                ListenerOptions::new().backlog(8).max_instances(4),
                "below the backlog",
            ),
            (
                ListenerOptions::new().io_buffer_size(10),
                "io_buffer_size 10",
            ),
            (
                ListenerOptions::new().max_message_size(0),
                "max_message_size 0",
            ),
            (ListenerOptions::new().unix_mode(0o4777), "unix_mode"),
        ];
        for (opts, needle) in cases {
            let err = opts.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOption);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
