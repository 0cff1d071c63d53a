#![doc = include_str!("../README.md")]
//!
//! Async local IPC over **Windows named pipes** and **Unix domain sockets**, with one API.
//!
//! - [`Listener`] serves a name. On Windows it replaces a connected pipe instance before
//!   anyone calls `accept`, so clients never see a busy pipe while the server keeps up, and it
//!   bounds what waits to `backlog`; on Unix it binds a socket file with mode 0600 and
//!   recovers a stale one.
//! - Bytes a write reported as written arrive even if the stream is dropped next; see
//!   [`PipeStream::close_write`] and [`ListenerOptions::linger`] for how a stream ends.
//! - [`connect`] opens a name with a bounded timeout, retrying a busy or missing server.
//! - [`PipeStream`] is plain [`AsyncRead`](tokio::io::AsyncRead) +
//!   [`AsyncWrite`](tokio::io::AsyncWrite), so hyper, tungstenite and tower plug straight in.
//!   On Windows it does its own overlapped I/O with large buffers and several operations in
//!   flight. It also sends and receives whole messages ([`PipeMode::Message`]) and tells who
//!   the peer is ([`PipeStream::peer`]).
//! - [`PipeStream::into_blocking`] gives a [`BlockingPipeStream`] (`io::Read` + `io::Write`,
//!   whole messages) for a connection that owns a thread: on Windows its reads wait on their
//!   own event, at the cost of a plain blocking program; an [`Interrupter`] stops it.
//! - Security is current-user-only unless you say otherwise.
//!
//! ```no_run
//! use pipewright::{connect, Listener};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # async fn demo() -> pipewright::Result<()> {
//! let listener = Listener::bind("my-service")?;
//! tokio::spawn(async move {
//!     while let Ok(mut conn) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut buf = [0u8; 5];
//!             conn.read_exact(&mut buf).await?;
//!             conn.write_all(&buf).await?;
//!             conn.shutdown().await
//!         });
//!     }
//! });
//! let mut client = connect("my-service").await?;
//! client.write_all(b"hello").await?;
//! let mut reply = Vec::new();
//! client.read_to_end(&mut reply).await?;
//! assert_eq!(reply, b"hello");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod blocking;
mod connect;
mod error;
mod listener;
mod name;
mod options;
mod peer;
mod stream;
mod sys;

pub use blocking::{BlockingPipeStream, Interrupter};
pub use connect::{connect, connect_with, probe};
pub use error::{Error, ErrorKind, Result};
pub use listener::Listener;
pub use name::{PipeName, ToPipeName, MAX_PIPE_PATH_LEN, RUNTIME_DIR_ENV};
pub use options::{
    ConnectOptions, ImpersonationLevel, ListenerOptions, PipeMode, Security, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_BUFFER_SIZE, DEFAULT_MAX_MESSAGE_SIZE,
};
pub use peer::{Peer, PeerUser};
pub use stream::PipeStream;

/// Platform facts useful to tests and tools.
pub mod platform {
    /// Whether this program runs under Wine (always `false` off Windows). Wine 8 does not
    /// enforce pipe DACLs or `FILE_FLAG_FIRST_PIPE_INSTANCE`; tests use this to choose the
    /// form of a check that Wine can run.
    pub fn is_wine() -> bool {
        crate::sys::is_wine()
    }

    /// The version string Wine reports, when running under Wine.
    pub fn wine_version() -> Option<String> {
        crate::sys::wine_version()
    }

    /// The current user as the platform names it: a SID string on Windows, a uid on Unix.
    pub fn current_user() -> crate::Result<crate::PeerUser> {
        crate::sys::current_user()
    }

    /// CPU time (user + system) the whole process has used so far, for tools
    /// and tests that check an idle wait does not keep a core busy.
    ///
    /// ```
    /// let cpu = pipewright::platform::process_cpu_time().unwrap();
    /// assert!(cpu <= pipewright::platform::process_cpu_time().unwrap());
    /// ```
    pub fn process_cpu_time() -> std::io::Result<std::time::Duration> {
        crate::sys::process_cpu_time()
    }

    /// CPU time (user + system) process `pid` has used so far: `/proc/PID/stat` on Linux,
    /// `OpenProcess` + `GetProcessTimes` on Windows; `Unsupported` on other systems, and under
    /// Wine for any process but this one (Wine answers with the caller's own times: docs/wine.md). An error names the cause (no such
    /// process, access denied).
    ///
    /// ```
    /// # #[cfg(any(target_os = "linux", windows))] {
    /// let me = std::process::id();
    /// let cpu = pipewright::platform::process_cpu_time_of(me).unwrap();
    /// assert!(cpu <= pipewright::platform::process_cpu_time_of(me).unwrap());
    /// # }
    /// ```
    pub fn process_cpu_time_of(pid: u32) -> std::io::Result<std::time::Duration> {
        crate::sys::process_cpu_time_of(pid)
    }
}
