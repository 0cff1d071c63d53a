//! A Unix socket listener: mode 0600 from the first moment, stale-socket recovery, and the
//! socket file removed on close.
//!
//! Binders of one path are serialised by an advisory lock on `PATH.lock`, held for the
//! listener's life (the system drops it when the process dies). Only the lock holder may treat
//! a socket that refuses connections as stale and remove it; without the lock, a socket caught
//! between another server's `bind` and `listen` would look stale too. The holder removes the
//! lock file on close while it still holds it; a binder that locks a file no longer at the
//! path (same device and inode) drops it and starts over, so only one lock is ever "the" lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::stream::{check_path_len, Stream};
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ListenerOptions, Security, StreamConfig};

/// The smallest listen queue a Unix listener asks the kernel for, whatever `backlog` says:
/// common Unix clients do not retry a busy socket.
const UNIX_MIN_LISTEN_QUEUE: usize = 128;

#[derive(Debug)]
pub(crate) struct Listener {
    io: UnixListener,
    path: PathBuf,
    shown: String,
    /// Device and inode of the socket we bound, so we only ever remove our own file.
    identity: (u64, u64),
    /// Held while the listener lives; see the module docs.
    _lock: File,
    lock_path: PathBuf,
    /// Device and inode of the lock file we hold (it is at `lock_path` while we hold it).
    lock_identity: (u64, u64),
    config: StreamConfig,
    closed: watch::Sender<bool>,
}

impl Listener {
    pub(crate) fn bind(name: &PipeName, options: &ListenerOptions) -> Result<Self> {
        if let Security::Sddl(_) = options.security {
            return Err(Error::new(
                ErrorKind::InvalidOption,
                "an SDDL security descriptor applies to Windows pipes only; on Unix set unix_mode",
            ));
        }
        if name.host().is_some() {
            return Err(
                Error::new(ErrorKind::InvalidName, "cannot serve a remote pipe name")
                    .with_pipe(name.windows_path()),
            );
        }
        let path = name.unix_path();
        let shown = path.display().to_string();
        check_path_len(&shown)?;
        let lock_path = lock_path_for(&path);
        let (lock, lock_identity) = take_lock(&lock_path, &shown)?;
        recover_stale(&path, &shown)?;

        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
            .map_err(|e| Error::from_io(e, &shown, "create socket"))?;
        socket
            .bind(&SockAddr::unix(&path).map_err(|e| Error::from_io(e, &shown, "bind"))?)
            .map_err(|e| Error::from_io(e, &shown, "bind"))?;
        // Before listen(), nobody can connect: the mode is in force from the first client on.
        let meta = fs::metadata(&path).map_err(|e| Error::from_io(e, &shown, "bind"))?;
        let identity = (meta.dev(), meta.ino());
        let cleanup = |e: io::Error, what: &str| {
            let _ = fs::remove_file(&path);
            Error::from_io(e, &shown, what)
        };
        fs::set_permissions(&path, fs::Permissions::from_mode(options.unix_mode))
            .map_err(|e| cleanup(e, "set socket mode"))?;
        // The kernel's listen queue bounds the clients waiting to be accepted; beyond it they
        // see EAGAIN (busy) and retry. It is never below UNIX_MIN_LISTEN_QUEUE, because common
        // Unix clients (curl, ssh, git) do not retry (docs/architecture.md, "Listener limits").
        let queue = options
            .backlog
            .clamp(UNIX_MIN_LISTEN_QUEUE, i32::MAX as usize) as i32;
        socket.listen(queue).map_err(|e| cleanup(e, "listen"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| cleanup(e, "listen"))?;
        let std_listener: std::os::unix::net::UnixListener = socket.into();
        let io = UnixListener::from_std(std_listener).map_err(|e| cleanup(e, "listen"))?;
        tracing::debug!(path = %shown, "listening");
        Ok(Listener {
            io,
            path,
            shown,
            identity,
            _lock: lock,
            lock_path,
            lock_identity,
            config: options.stream.clone(),
            closed: watch::Sender::new(false),
        })
    }

    pub(crate) async fn accept(&self) -> Result<Stream> {
        let mut closed = self.closed.subscribe();
        if *closed.borrow_and_update() {
            return Err(self.closed_error());
        }
        tokio::select! {
            res = self.io.accept() => {
                let (io, _) = res.map_err(|e| Error::from_io(e, &self.shown, "accept"))?;
                Ok(Stream::new(io, self.config.clone(), true, self.shown.clone()))
            }
            _ = closed.wait_for(|c| *c) => Err(self.closed_error()),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
        self.remove_socket_file();
    }

    pub(crate) fn security_sddl(&self) -> Result<String> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "security descriptors exist only on Windows; on Unix the socket file mode applies",
        ))
    }

    fn closed_error(&self) -> Error {
        Error::new(ErrorKind::Closed, "accept: the listener was closed")
            .with_pipe(self.shown.clone())
    }

    fn remove_socket_file(&self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.identity {
                let _ = fs::remove_file(&self.path);
            }
        }
        // Removed while we still hold it: a binder that opened it meanwhile finds, after
        // locking, that it is no longer at the path and starts over (`take_lock`).
        if let Ok(meta) = fs::symlink_metadata(&self.lock_path) {
            if (meta.dev(), meta.ino()) == self.lock_identity {
                let _ = fs::remove_file(&self.lock_path);
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

fn lock_path_for(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// How often `take_lock` retries when the lock file it locked was replaced meanwhile.
const LOCK_ATTEMPTS: usize = 100;

/// Takes the bind lock of a socket path, or fails with `AlreadyInUse` when a live server holds it.
///
/// A holder removes the lock file when it closes (while still holding it), so a binder may
/// open the old file, lose the race, and lock a file that is no longer at the path. After
/// locking, the file we hold must still be the one at the path (same device and inode);
/// otherwise we drop it and start over.
fn take_lock(lock_path: &Path, shown: &str) -> Result<(File, (u64, u64))> {
    for _ in 0..LOCK_ATTEMPTS {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .map_err(|e| Error::from_io(e, shown, "open the bind lock file"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::AlreadyInUse,
                    "bind: another server holds this socket's lock; stop it or choose another name",
                )
                .with_pipe(shown))
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::from_io(e, shown, "lock the socket path"))
            }
        }
        let held = file
            .metadata()
            .map_err(|e| Error::from_io(e, shown, "check the bind lock file"))?;
        let held = (held.dev(), held.ino());
        match fs::symlink_metadata(lock_path) {
            Ok(meta) if (meta.dev(), meta.ino()) == held => return Ok((file, held)),
            // Replaced or removed after we opened it: the lock we hold protects nothing.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::from_io(e, shown, "check the bind lock file")),
        }
    }
    Err(Error::new(
        ErrorKind::Busy,
        "bind: the bind lock file kept being replaced by other servers; retry",
    )
    .with_pipe(shown))
}

/// Removes a socket left by a dead server; refuses a live one or a file that is not a socket.
/// Called with the bind lock held.
fn recover_stale(path: &Path, shown: &str) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::from_io(e, shown, "bind")),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(
            ErrorKind::AlreadyInUse,
            "bind: the path exists and is not a socket; remove it or choose another name",
        )
        .with_pipe(shown));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::new(
            ErrorKind::AlreadyInUse,
            "bind: another server is listening on this socket; stop it or choose another name",
        )
        .with_pipe(shown)),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            tracing::debug!(path = %shown, "removing stale socket");
            fs::remove_file(path).map_err(|e| Error::from_io(e, shown, "remove stale socket"))
        }
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(Error::new(
            ErrorKind::AlreadyInUse,
            "bind: another server is listening on this socket (its queue is full); stop it or choose another name",
        )
        .with_pipe(shown)),
        Err(e) => Err(Error::from_io(e, shown, "probe existing socket")),
    }
}
