//! The listener: serves a name and hands out connected streams.

use crate::error::Result;
use crate::name::{PipeName, ToPipeName};
use crate::options::ListenerOptions;
use crate::stream::PipeStream;
use crate::sys;

/// Serves a pipe name and accepts clients.
///
/// On Windows the listener keeps pending instances ready for clients: when a client
/// connects, a fresh instance replaces it at once, even before [`accept`](Self::accept) is
/// called, so clients never see a busy or missing pipe between accepts, as long as fewer
/// than `backlog` clients wait to be accepted. Beyond that (a flood against a slow acceptor)
/// clients see a busy server and retry; at
/// [`max_instances`](crate::ListenerOptions::max_instances), `accept` waits until an
/// accepted stream closes. On Unix it binds the socket file (mode 0600 by default), replaces
/// a stale socket left by a dead server, and removes the file when closed or dropped; its
/// listen queue is `backlog` long.
///
/// ```no_run
/// use pipewright::{Listener, ListenerOptions, PipeMode};
/// # async fn demo() -> pipewright::Result<()> {
/// let listener = Listener::bind_with("tray-app", &ListenerOptions::new().mode(PipeMode::Message))?;
/// loop {
///     let conn = listener.accept().await?;
///     println!("client pid {:?}", conn.peer()?.pid);
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    inner: sys::Listener,
    name: PipeName,
}

impl Listener {
    /// Binds `name` with the default options (byte mode, current user only). Needs a tokio
    /// runtime.
    pub fn bind(name: impl ToPipeName) -> Result<Self> {
        Self::bind_with(name, &ListenerOptions::default())
    }

    /// Binds `name` with `options`. Fails with [`AlreadyInUse`](crate::ErrorKind::AlreadyInUse)
    /// when another server serves the name (with the first-instance guard on, the default).
    pub fn bind_with(name: impl ToPipeName, options: &ListenerOptions) -> Result<Self> {
        let name = name.to_pipe_name()?;
        options.validate()?;
        let inner = sys::Listener::bind(&name, options)?;
        Ok(Listener { inner, name })
    }

    /// Waits for the next client. Cancel-safe: dropping the future loses no client.
    /// After [`close`](Self::close) it fails with [`Closed`](crate::ErrorKind::Closed). At
    /// `max_instances` it waits for an accepted stream to close rather than failing. On
    /// Windows it fails with [`AlreadyInUse`](crate::ErrorKind::AlreadyInUse) if another
    /// process created the name at a moment the listener held no instance.
    pub async fn accept(&self) -> Result<PipeStream> {
        self.inner.accept().await.map(PipeStream::from_sys)
    }

    /// Stops accepting: pending and future `accept` calls fail with
    /// [`Closed`](crate::ErrorKind::Closed), and new clients find no server. Connections
    /// already accepted are not affected.
    pub fn close(&self) {
        self.inner.close()
    }

    /// The name being served.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// The security descriptor of the pipe, read back from the system as SDDL (owner, group
    /// and DACL). Windows only; on Unix it fails with
    /// [`Unsupported`](crate::ErrorKind::Unsupported).
    pub fn security_sddl(&self) -> Result<String> {
        self.inner.security_sddl()
    }
}
