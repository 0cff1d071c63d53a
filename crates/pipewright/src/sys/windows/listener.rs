//! The backlog listener: up to `backlog` server instances wait for clients at every moment.
//!
//! Each pending instance has an overlapped `ConnectNamedPipe` in flight. When a client
//! connects, the completion thread moves that instance to the ready queue; `accept` only
//! takes from the ready queue, which makes it cancel-safe.
//!
//! Limits (docs/architecture.md, "Listener limits"):
//! - pending + ready <= `backlog`: a connected instance is replaced at once while the ready
//!   queue has room, and again when `accept` takes one; beyond that clients see a busy pipe
//!   and retry, so a flood against a slow acceptor cannot create instances without bound;
//! - pending + ready + accepted-and-open <= `max_instances`: the listener never asks for an
//!   instance beyond it; `accept` waits, and a closed connection tops up and wakes it;
//! - while the listener lives it holds at least one instance whenever it can; when it must
//!   create one while it holds none (every connection closed at `max_instances`, or after a
//!   failure), that instance is created with `FILE_FLAG_FIRST_PIPE_INSTANCE`, so it never
//!   joins a pipe another process created under the name in between (`AlreadyInUse`).

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
    /// Accepted streams whose handle is not closed yet (their `on_close` has not run).
    accepted: usize,
    /// The last failure to create an instance, reported by `accept` when the listener holds
    /// no instance at all (nothing would wake it).
    last_error: Option<Error>,
    /// Instances created with `FILE_FLAG_FIRST_PIPE_INSTANCE` because the listener held
    /// none (the bind's first instance not counted).
    reasserted_first: u32,
    /// Another process took the name while the listener held no instance.
    lost: bool,
    closed: bool,
}

impl State {
    /// Instances of ours that exist: pending, ready and accepted-but-open.
    fn instances(&self) -> usize {
        self.pending.len() + self.ready.len() + self.accepted
    }
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
                if st.lost {
                    return Err(name_lost(&shared.path));
                }
                if let Some(handle) = st.ready.pop_front() {
                    st.accepted += 1;
                    // The ready queue has room again: replace the instance it held.
                    shared.top_up(&mut st);
                    let weak = Arc::downgrade(shared);
                    let on_close = Box::new(move || {
                        if let Some(shared) = weak.upgrade() {
                            shared.on_close();
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
                if st.lost {
                    return Err(name_lost(&shared.path));
                }
                if st.instances() == 0 {
                    // Nothing exists that a client could reach or that could close and
                    // make room: waiting would never end.
                    if let Some(err) = st.last_error.take() {
                        return Err(err);
                    }
                }
                // Otherwise wait: for a client, or (at max_instances) for a connection to
                // close and make room.
            }
            notified.await;
        }
    }

    /// Pending, ready and accepted-but-open instance counts (for tests).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let st = self.shared.lock();
        (st.pending.len(), st.ready.len(), st.accepted)
    }

    pub(crate) fn close(&self) {
        self.shared.close();
    }

    pub(crate) fn security_sddl(&self) -> Result<String> {
        let st = self.shared.lock();
        let handle = st
            .pending
            .values()
            .map(|(h, _)| h)
            .chain(st.ready.iter())
            .next()
            .ok_or_else(|| {
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

fn name_lost(path: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyInUse,
        "accept: another process created this pipe name while the listener held no instance \
         (all connections had closed); stop that process and bind again",
    )
    .with_pipe(path)
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
        self.arm(st, id, handle)
    }

    /// Starts `ConnectNamedPipe` on an instance; a client that is already there makes it
    /// ready at once. On failure the instance is closed and the error returned.
    fn arm(self: &Arc<Self>, st: &mut State, id: u64, handle: OwnedHandle) -> Result<()> {
        let weak: Weak<Shared> = Arc::downgrade(self);
        let op = Op::with_hook(Box::new(move |error| {
            if let Some(shared) = weak.upgrade() {
                shared.on_connect(id, error);
            }
        }));
        let raw_handle = raw(&handle);
        // The instance does not skip the port: a connection is always reported by a packet.
        op.start(false, |_, overlapped| {
            // SAFETY: the OVERLAPPED lives in `op` until its packet; the handle is an open,
            // overlapped server instance.
            win32_result(unsafe { ConnectNamedPipe(raw_handle, overlapped) })
        });
        match op.status() {
            Status::Done { error, .. } if error == ERROR_PIPE_CONNECTED => {
                // A client connected between create and connect: no packet will come.
                st.ready.push_back(handle);
                self.ready_notify.notify_waiters();
                Ok(())
            }
            Status::Done { error, .. } if error == ERROR_NO_DATA => {
                // A client came and left already: recycle the instance.
                pipe::disconnect(&handle)
                    .map_err(|e| Error::from_io(e, &self.path, "recycle an abandoned instance"))?;
                self.arm(st, id, handle)
            }
            Status::Done { error, .. } if error != 0 => Err(Error::from_io(
                std::io::Error::from_raw_os_error(error as i32),
                &self.path,
                "wait for a client",
            )),
            _ => {
                st.pending.insert(id, (handle, op));
                Ok(())
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
                // The client left before we saw it: the same instance waits again, so the
                // count of our instances never drops.
                let id = st.next_id;
                st.next_id += 1;
                let rearmed = pipe::disconnect(&handle)
                    .map_err(|e| Error::from_io(e, &self.path, "recycle an abandoned instance"))
                    .and_then(|()| self.arm(&mut st, id, handle));
                if let Err(e) = rearmed {
                    tracing::debug!(pipe = %self.path, error = %e, "instance lost; replacing it");
                    st.last_error = Some(e);
                }
            }
            other => {
                tracing::debug!(pipe = %self.path, error = other, "instance failed; replacing it");
                // Released before its replacement is created, so a listener at
                // max_instances can replace it; top_up re-asserts the first-instance flag if
                // that left us with none.
                drop(handle);
            }
        }
        self.top_up(&mut st);
        drop(st);
        self.ready_notify.notify_waiters();
    }

    /// An accepted stream's handle was closed: make room and wake `accept`.
    fn on_close(self: &Arc<Self>) {
        let mut st = self.lock();
        st.accepted = st.accepted.saturating_sub(1);
        self.top_up(&mut st);
        drop(st);
        self.ready_notify.notify_waiters();
    }

    /// Creates instances while pending + ready < `backlog` and our instances stay within
    /// `max_instances`. A failure is kept for `accept` and retried at the next event (a
    /// client, an accept or a closed connection).
    fn top_up(self: &Arc<Self>, st: &mut State) {
        while !st.closed && !st.lost && st.pending.len() + st.ready.len() < self.options.backlog {
            if let Some(max) = self.options.max_instances {
                if st.instances() >= max as usize {
                    break;
                }
            }
            // Holding no instance, the name may have been taken by another process in the
            // meantime: insist on creating the pipe anew rather than joining someone's.
            let first = self.options.first_instance && st.instances() == 0;
            match self.add_instance(st, first) {
                Ok(()) => {
                    if first {
                        st.reasserted_first += 1;
                    }
                }
                Err(e) if first && e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
                    tracing::warn!(pipe = %self.path, "another process took the pipe name");
                    st.lost = true;
                    self.ready_notify.notify_waiters();
                    break;
                }
                Err(e) => {
                    tracing::debug!(pipe = %self.path, error = %e, "cannot add a pipe instance now");
                    st.last_error = Some(e);
                    break;
                }
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{connect_with, ConnectOptions, PipeMode};

    fn unique(tag: &str) -> PipeName {
        let r: u32 = rand::random();
        PipeName::parse(&format!("pw-unit-{tag}-{}-{r:08x}", std::process::id())).unwrap()
    }

    fn run<F: std::future::Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(120), f)
                .await
                .expect("test timed out after 120 s (watchdog)");
        });
    }

    /// Item: a flood of clients against a listener nobody accepts from creates at most
    /// `backlog` instances; the clients beyond it see a busy pipe, and retrying clients get
    /// through once `accept` runs.
    #[test]
    fn a_flood_against_a_slow_acceptor_stays_within_the_backlog() {
        run(async {
            let name = unique("flood");
            let listener = Listener::bind(&name, &ListenerOptions::new().backlog(4)).unwrap();
            let short = ConnectOptions::new().timeout(Duration::from_millis(300));
            let flood: Vec<_> = (0..64)
                .map(|_| {
                    let (name, short) = (name.clone(), short.clone());
                    tokio::spawn(async move { connect_with(name, &short).await })
                })
                .collect();
            let mut connected = Vec::new();
            for task in flood {
                match task.await.unwrap() {
                    Ok(conn) => connected.push(conn),
                    Err(e) => assert!(
                        matches!(e.kind(), ErrorKind::Busy | ErrorKind::TimedOut),
                        "a client beyond the backlog must see busy or time out: {e}"
                    ),
                }
            }
            let (pending, ready, accepted) = listener.counts();
            assert!(
                pending + ready <= 4,
                "{pending} pending + {ready} ready instances exceed the backlog of 4"
            );
            assert_eq!(accepted, 0);
            assert_eq!(ready, connected.len());
            assert!(connected.len() <= 4, "{} clients got in", connected.len());

            // Clients that keep retrying wait at the full backlog, then get through.
            let patient = ConnectOptions::new().timeout(Duration::from_secs(60));
            let waiting: Vec<_> = (0..16)
                .map(|_| {
                    let (name, patient) = (name.clone(), patient.clone());
                    tokio::spawn(async move { connect_with(name, &patient).await })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (pending, ready, _) = listener.counts();
            assert!(pending + ready <= 4, "{pending} + {ready} > 4");
            let mut served = Vec::new();
            for _ in 0..connected.len() + waiting.len() {
                served.push(listener.accept().await.unwrap());
                let (pending, ready, _) = listener.counts();
                assert!(pending + ready <= 4, "{pending} + {ready} > 4");
            }
            for w in waiting {
                w.await.unwrap().expect("a retrying client gets through");
            }
        });
    }

    /// Item: when the listener must create an instance while it holds none, it sets
    /// `FILE_FLAG_FIRST_PIPE_INSTANCE`, so it never joins a pipe that another process
    /// created under the name meanwhile; on Windows that fails with `AlreadyInUse`.
    #[test]
    fn an_instance_created_while_holding_none_insists_on_being_first() {
        run(async {
            let name = unique("squat");
            let opts = ListenerOptions::new().backlog(1).max_instances(1);
            let listener = Listener::bind(&name, &opts).unwrap();
            let client = connect_with(name.clone(), &ConnectOptions::new())
                .await
                .unwrap();
            let server = listener.accept().await.unwrap();
            assert_eq!(listener.counts(), (0, 0, 1), "at max_instances");
            let path_w = wide(&name.windows_path());
            let (squatter, dropper) = {
                // The listener's top-up waits for this lock while the name is free.
                let _guard = listener.shared.lock();
                let dropper = tokio::task::spawn_blocking(move || {
                    drop(client);
                    drop(server);
                });
                let spec = InstanceSpec {
                    path: &path_w,
                    mode: PipeMode::Byte,
                    first: true,
                    reject_remote: true,
                    max_instances: None,
                    in_buffer: 4096,
                    out_buffer: 4096,
                    security: None,
                };
                let started = Instant::now();
                let squatter = loop {
                    // Succeeds once none of the listener's instances exist any more.
                    match pipe::create_instance(&spec) {
                        Ok(h) => break h,
                        Err(e) if started.elapsed() < Duration::from_secs(20) => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => panic!("the listener's instances never closed: {e}"),
                    }
                };
                (squatter, dropper)
            };
            dropper.await.unwrap();
            let started = Instant::now();
            while listener.counts().2 != 0 {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "on_close never ran"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                listener.shared.lock().reasserted_first,
                1,
                "the instance created while holding none must ask to be the first instance"
            );
            if crate::sys::is_wine() {
                eprintln!(
                    "SKIPPED under Wine (the rest): FILE_FLAG_FIRST_PIPE_INSTANCE is not \
                     enforced, so the re-created instance joins the other pipe (docs/wine.md)"
                );
                drop(squatter);
                return;
            }
            let err = listener.accept().await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::AlreadyInUse, "{err}");
            assert!(err.to_string().contains("another process"), "{err}");
            drop(squatter);
        });
    }
}
