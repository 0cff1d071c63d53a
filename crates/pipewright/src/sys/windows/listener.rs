//! The backlog listener: `backlog` server instances wait for clients at every moment.
//!
//! Each pending instance has an overlapped `ConnectNamedPipe` in flight. When a client
//! connects, the completion thread moves that instance to the ready queue and creates and
//! arms its replacement right away, before anyone calls `accept`, so the number of waiting
//! instances never drops. `accept` only takes from the ready queue, which makes it cancel-safe.

use std::collections::{HashMap, VecDeque};
use std::os::windows::io::OwnedHandle;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::Notify;
use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_NO_DATA, ERROR_OPERATION_ABORTED, ERROR_PIPE_CONNECTED,
};
use windows_sys::Win32::System::Pipes::ConnectNamedPipe;

use super::iocp::{associate, win32_result, Op, Status};
use super::pipe::{self, raw, wide, InstanceSpec};
use super::security::{current_user_sddl, current_user_sid, read_sddl, SecurityDescriptor};
use super::stream::Stream;
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ListenerOptions, Security};

#[derive(Debug)]
pub(crate) struct Listener {
    shared: Arc<Shared>,
}

struct Shared {
    path: String,
    path_w: Vec<u16>,
    options: ListenerOptions,
    security: SecurityDescriptor,
    state: Mutex<State>,
    ready_notify: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("path", &self.path)
            .finish()
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Instances waiting for a client, each with its `ConnectNamedPipe` operation.
    pending: HashMap<u64, (OwnedHandle, Arc<Op>)>,
    /// Connected instances not yet accepted.
    ready: VecDeque<OwnedHandle>,
    /// The last failure to create an instance, reported by `accept` when nothing is pending.
    last_error: Option<Error>,
    closed: bool,
}

impl Listener {
    pub(crate) fn bind(name: &PipeName, options: &ListenerOptions) -> Result<Self> {
        let path = name.windows_path();
        if name.host().is_some() {
            return Err(
                Error::new(ErrorKind::InvalidName, "cannot serve a remote pipe name")
                    .with_pipe(path),
            );
        }
        let path_w = wide(&path);
        let sddl = match &options.security {
            Security::CurrentUser => {
                let sid = current_user_sid()
                    .map_err(|e| Error::from_io(e, &path, "read the current user's SID"))?;
                current_user_sddl(&sid)
            }
            Security::Sddl(s) => s.clone(),
        };
        let security = SecurityDescriptor::from_sddl(&sddl).map_err(|e| {
            Error::new(
                ErrorKind::InvalidOption,
                format!("security: {sddl:?} is not a valid SDDL security descriptor"),
            )
            .with_pipe(path.clone())
            .with_source(e)
        })?;
        if options.first_instance {
            // FILE_FLAG_FIRST_PIPE_INSTANCE below is the real guard; this check also catches
            // a live server where that flag is not enforced (Wine).
            let served = pipe::is_served(&path_w)
                .map_err(|e| Error::from_io(e, &path, "check for an existing server"))?;
            if served {
                return Err(already_in_use(&path));
            }
        }
        let shared = Arc::new(Shared {
            path,
            path_w,
            options: options.clone(),
            security,
            state: Mutex::new(State::default()),
            ready_notify: Notify::new(),
        });
        {
            let mut st = shared.lock();
            for i in 0..options.backlog {
                let first = i == 0 && options.first_instance;
                shared.add_instance(&mut st, first).map_err(|e| {
                    if first && e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) {
                        already_in_use(&shared.path)
                    } else {
                        e
                    }
                })?;
            }
        }
        tracing::debug!(pipe = %shared.path, backlog = options.backlog, "listening");
        Ok(Listener { shared })
    }

    pub(crate) async fn accept(&self) -> Result<Stream> {
        let shared = &self.shared;
        loop {
            let notified = shared.ready_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = shared.lock();
                if st.closed {
                    return Err(
                        Error::new(ErrorKind::Closed, "accept: the listener was closed")
                            .with_pipe(shared.path.clone()),
                    );
                }
                if let Some(handle) = st.ready.pop_front() {
                    let weak = Arc::downgrade(shared);
                    let on_close = Box::new(move || {
                        if let Some(shared) = weak.upgrade() {
                            let mut st = shared.lock();
                            shared.top_up(&mut st);
                        }
                    });
                    return Ok(Stream::new(
                        handle,
                        shared.options.stream.clone(),
                        true,
                        shared.path.clone(),
                        Some(on_close),
                    ));
                }
                shared.top_up(&mut st);
                if st.pending.is_empty() && st.ready.is_empty() {
                    if let Some(err) = st.last_error.take() {
                        return Err(err);
                    }
                }
            }
            notified.await;
        }
    }

    pub(crate) fn close(&self) {
        self.shared.close();
    }

    pub(crate) fn security_sddl(&self) -> Result<String> {
        let st = self.shared.lock();
        let handle = st.pending.values().map(|(h, _)| h).next().ok_or_else(|| {
            Error::new(
                ErrorKind::Closed,
                "no pending instance to read the security from",
            )
            .with_pipe(self.shared.path.clone())
        })?;
        read_sddl(handle).map_err(|e| Error::from_io(e, &self.shared.path, "read security"))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.close();
    }
}

fn already_in_use(path: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyInUse,
        "bind: another server already serves this pipe; stop it or choose another name",
    )
    .with_pipe(path)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates, associates and arms one instance.
    fn add_instance(self: &Arc<Self>, st: &mut State, first: bool) -> Result<()> {
        let spec = InstanceSpec {
            path: &self.path_w,
            mode: self.options.stream.mode,
            first,
            reject_remote: self.options.reject_remote,
            max_instances: self.options.max_instances,
            in_buffer: self.options.in_buffer_size,
            out_buffer: self.options.out_buffer_size,
            security: Some(self.security.attributes()),
        };
        let handle = pipe::create_instance(&spec)
            .map_err(|e| Error::from_io(e, &self.path, "create pipe instance"))?;
        associate(raw(&handle))
            .map_err(|e| Error::from_io(e, &self.path, "associate with completion port"))?;
        let id = st.next_id;
        st.next_id += 1;
        self.arm(st, id, handle);
        Ok(())
    }

    /// Starts `ConnectNamedPipe` on an instance; a client that is already there makes it
    /// ready at once.
    fn arm(self: &Arc<Self>, st: &mut State, id: u64, handle: OwnedHandle) {
        let weak: Weak<Shared> = Arc::downgrade(self);
        let op = Op::with_hook(Box::new(move |error| {
            if let Some(shared) = weak.upgrade() {
                shared.on_connect(id, error);
            }
        }));
        let raw_handle = raw(&handle);
        op.start(|_, overlapped| {
            // SAFETY: the OVERLAPPED lives in `op` until its packet; the handle is an open,
            // overlapped server instance.
            win32_result(unsafe { ConnectNamedPipe(raw_handle, overlapped) })
        });
        match op.status() {
            Status::Done { error, .. } if error == ERROR_PIPE_CONNECTED => {
                // A client connected between create and connect: no packet will come.
                st.ready.push_back(handle);
                self.ready_notify.notify_waiters();
            }
            Status::Done { error, .. } if error == ERROR_NO_DATA => {
                // A client came and left already: recycle the instance.
                if pipe::disconnect(&handle).is_ok() {
                    self.arm(st, id, handle);
                }
            }
            Status::Done { error, .. } if error != 0 => {
                st.last_error = Some(Error::from_io(
                    std::io::Error::from_raw_os_error(error as i32),
                    &self.path,
                    "wait for a client",
                ));
                self.ready_notify.notify_waiters();
            }
            _ => {
                st.pending.insert(id, (handle, op));
            }
        }
    }

    /// Runs on the completion thread when a `ConnectNamedPipe` finishes.
    fn on_connect(self: &Arc<Self>, id: u64, error: u32) {
        let mut st = self.lock();
        let Some((handle, _op)) = st.pending.remove(&id) else {
            return;
        };
        if st.closed || error == ERROR_OPERATION_ABORTED {
            return;
        }
        match error {
            0 | ERROR_PIPE_CONNECTED => st.ready.push_back(handle),
            ERROR_NO_DATA => {
                if pipe::disconnect(&handle).is_ok() {
                    let id = st.next_id;
                    st.next_id += 1;
                    self.arm(&mut st, id, handle);
                    return;
                }
            }
            other => {
                tracing::debug!(pipe = %self.path, error = other, "instance failed; replacing it");
            }
        }
        self.top_up(&mut st);
        drop(st);
        self.ready_notify.notify_waiters();
    }

    /// Creates instances until `backlog` are pending. A failure (for example `max_instances`
    /// reached) is kept for `accept` to report and retried when a connection closes.
    fn top_up(self: &Arc<Self>, st: &mut State) {
        while !st.closed && st.pending.len() < self.options.backlog {
            if let Err(e) = self.add_instance(st, false) {
                tracing::debug!(pipe = %self.path, error = %e, "cannot add a pipe instance now");
                st.last_error = Some(e);
                break;
            }
        }
    }

    fn close(&self) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        for (_, (handle, _op)) in st.pending.drain() {
            pipe::cancel_all(&handle);
        }
        st.ready.clear();
        drop(st);
        self.ready_notify.notify_waiters();
    }
}
