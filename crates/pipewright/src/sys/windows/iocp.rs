//! One process-wide I/O completion port, drained by one thread that wakes the futures.
//!
//! Every overlapped operation is an [`Op`]: the `OVERLAPPED` and the data buffer live in one
//! heap block shared by an `Arc`. While the kernel owns the operation, one strong reference is
//! parked in the `OVERLAPPED` pointer and is released only when the completion packet arrives
//! (or, on a stream handle set to skip the port on success, when the call returns having
//! finished at once: then no packet comes and [`Op::start`] completes the operation in place),
//! so neither the `OVERLAPPED` nor the buffer can be freed while Windows may still write to
//! them, even when the stream that started the operation is dropped (the drop cancels its
//! reads with `CancelIoEx` and the cancelled packets free the blocks; its writes go to the
//! lingering set of `linger.rs`, which this thread serves after every batch of packets and
//! whose nearest deadline bounds the wait).

use std::cell::UnsafeCell;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use windows_sys::Win32::Foundation::{
    GetLastError, RtlNtStatusToDosError, ERROR_IO_PENDING, ERROR_MORE_DATA, HANDLE,
    INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::Storage::FileSystem::SetFileCompletionNotificationModes;
use windows_sys::Win32::System::Threading::{CreateEventW, WaitForMultipleObjects, INFINITE};
use windows_sys::Win32::System::IO::{
    CancelIoEx, CreateIoCompletionPort, GetOverlappedResult, GetQueuedCompletionStatusEx,
    PostQueuedCompletionStatus, OVERLAPPED, OVERLAPPED_ENTRY,
};

use super::linger;

/// A raw handle that may cross threads.
#[derive(Clone, Copy, Debug)]
struct PortHandle(HANDLE);
// SAFETY: a completion port handle is a kernel object usable from any thread.
unsafe impl Send for PortHandle {}
// SAFETY: as above; the port is never closed.
unsafe impl Sync for PortHandle {}

static PORT: OnceLock<Result<PortHandle, i32>> = OnceLock::new();

fn port() -> io::Result<HANDLE> {
    let port = PORT.get_or_init(|| {
        // SAFETY: creating a new port; no handle is associated yet.
        let port =
            unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, std::ptr::null_mut(), 0, 1) };
        if port.is_null() {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        let handle = PortHandle(port);
        let spawned = std::thread::Builder::new()
            .name("pipewright-iocp".into())
            .spawn(move || completion_loop(handle));
        match spawned {
            Ok(_) => Ok(handle),
            Err(e) => Err(e.raw_os_error().unwrap_or(0)),
        }
    });
    match port {
        Ok(p) => Ok(p.0),
        Err(code) => Err(io::Error::from_raw_os_error(*code)),
    }
}

/// Associates `handle` (opened with `FILE_FLAG_OVERLAPPED`) with the port, so its overlapped
/// operations complete through [`Op`].
pub(crate) fn associate(handle: HANDLE) -> io::Result<()> {
    let port = port()?;
    // SAFETY: `handle` is a valid open handle owned by the caller; `port` is our port.
    let res = unsafe { CreateIoCompletionPort(handle, port, 0, 0) };
    if res.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `FILE_SKIP_COMPLETION_PORT_ON_SUCCESS` (winbase.h).
const SKIP_COMPLETION_PORT_ON_SUCCESS: u8 = 1;

/// Asks Windows not to queue a packet for an operation on `handle` that finishes at once
/// (success, or a warning such as `ERROR_MORE_DATA`); [`Op::start`] then completes it in
/// place, without a trip through the completion thread. `false` when the handle does not
/// support it: every operation then completes through the port, as before.
pub(crate) fn skip_port_on_success(handle: HANDLE) -> bool {
    // SAFETY: `handle` is a valid open handle owned by the caller, associated with our port.
    unsafe { SetFileCompletionNotificationModes(handle, SKIP_COMPLETION_PORT_ON_SUCCESS) != 0 }
}

/// Wakes the completion thread (a packet without an operation), so it serves the lingering
/// set and the deadlines at once.
pub(crate) fn wake_completion_thread() {
    if let Ok(port) = port() {
        // SAFETY: our port; a null OVERLAPPED is a plain wake-up the loop skips.
        unsafe {
            PostQueuedCompletionStatus(port, 0, 0, std::ptr::null());
        }
    }
}

fn completion_loop(port: PortHandle) {
    let mut entries: Vec<OVERLAPPED_ENTRY> = vec![OVERLAPPED_ENTRY::default(); 64];
    loop {
        let mut removed = 0u32;
        // The nearest linger deadline bounds the wait (INFINITE when there is none).
        let timeout = linger::timeout_ms();
        // SAFETY: `entries` has room for `entries.len()` entries and outlives the call.
        let ok = unsafe {
            GetQueuedCompletionStatusEx(
                port.0,
                entries.as_mut_ptr(),
                entries.len() as u32,
                &mut removed,
                timeout,
                0,
            )
        };
        if ok == 0 {
            // SAFETY: reads this thread's last-error value.
            if unsafe { GetLastError() } == WAIT_TIMEOUT {
                linger::service();
                continue;
            }
            tracing::error!(error = %io::Error::last_os_error(), "GetQueuedCompletionStatusEx failed");
            std::thread::sleep(std::time::Duration::from_millis(10));
            linger::service();
            continue;
        }
        for entry in &entries[..removed as usize] {
            if entry.lpOverlapped.is_null() {
                continue;
            }
            // SAFETY: every OVERLAPPED we hand to Windows is the first field of an `Op`
            // (repr(C)) whose strong reference was leaked with `Arc::into_raw` when the
            // operation started; the packet returns that reference to us exactly once.
            let op = unsafe { Arc::from_raw(entry.lpOverlapped as *const Op) };
            // SAFETY: the kernel is done with the OVERLAPPED; reading its status is sound.
            let status = unsafe { (*op.overlapped.get()).Internal } as i32;
            let error = if status == 0 {
                0
            } else {
                // SAFETY: pure conversion of a status code.
                unsafe { RtlNtStatusToDosError(status) }
            };
            op.complete(error, entry.dwNumberOfBytesTransferred as usize);
        }
        linger::service();
    }
}

/// The state of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Not started, or its result was taken.
    Idle,
    /// Owned by the kernel.
    Pending,
    /// Finished: a Win32 error code (0 for success) and the bytes transferred.
    Done { error: u32, bytes: usize },
}

struct OpState {
    status: Status,
    waker: Option<Waker>,
}

/// Called on the completion thread when an operation finishes (used by the listener to
/// replace a connected instance at once).
pub(crate) type Hook = Box<dyn Fn(u32) + Send + Sync>;

/// One overlapped operation and its buffer.
#[repr(C)]
pub(crate) struct Op {
    /// Must stay the first field: the completion packet gives back its address.
    overlapped: UnsafeCell<OVERLAPPED>,
    buf: UnsafeCell<Vec<u8>>,
    state: Mutex<OpState>,
    hook: Option<Hook>,
    /// The manual-reset event of operations started with [`Op::start_evented`], made on
    /// first use.
    event: OnceLock<OwnedHandle>,
}

// SAFETY: `overlapped` and `buf` are touched by the kernel only while the status is
// `Pending`, and by the owner thread only while it is not (`start` and `buf_mut` check);
// every other field is behind a Mutex or immutable.
unsafe impl Send for Op {}
// SAFETY: as above.
unsafe impl Sync for Op {}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Op")
            .field("status", &self.status())
            .finish()
    }
}

impl Op {
    /// A new idle operation with an empty buffer.
    pub(crate) fn new() -> Arc<Op> {
        Self::build(None)
    }

    /// A new idle operation that calls `hook` on completion.
    pub(crate) fn with_hook(hook: Hook) -> Arc<Op> {
        Self::build(Some(hook))
    }

    fn build(hook: Option<Hook>) -> Arc<Op> {
        Arc::new(Op {
            // SAFETY: OVERLAPPED is plain data; all zero is its documented initial state.
            overlapped: UnsafeCell::new(unsafe { std::mem::zeroed() }),
            buf: UnsafeCell::new(Vec::new()),
            state: Mutex::new(OpState {
                status: Status::Idle,
                waker: None,
            }),
            hook,
            event: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, OpState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current status.
    pub(crate) fn status(&self) -> Status {
        self.lock().status
    }

    /// Runs `f` on the buffer, for filling before a write or reading after a read. `None`
    /// while the kernel owns it.
    pub(crate) fn with_buf<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> Option<R> {
        let st = self.lock();
        if st.status == Status::Pending {
            return None;
        }
        // SAFETY: not pending, so the kernel holds no pointer into the buffer, and the held
        // lock keeps `start` (the only other user) out until `f` returns.
        let result = f(unsafe { &mut *self.buf.get() });
        drop(st);
        Some(result)
    }

    /// Starts an operation: `call` receives the buffer and the `OVERLAPPED` and returns the
    /// Win32 call's result (`Ok(())` for success or pending). On an immediate failure the
    /// operation is `Done` with that error and no packet will come.
    ///
    /// `skips_port` says the handle was set up with [`skip_port_on_success`]: an operation that
    /// finishes at once (success or `ERROR_MORE_DATA`) is then `Done` on return, with no packet
    /// and no wake-up. Without it the packet still comes and the status stays `Pending` until
    /// then, although the data has already been moved.
    ///
    /// Returns `true` when the call finished at once with success.
    pub(crate) fn start(
        self: &Arc<Self>,
        skips_port: bool,
        call: impl FnOnce(&mut Vec<u8>, *mut OVERLAPPED) -> Result<(), u32>,
    ) -> bool {
        let (raw, overlapped) = self.begin(std::ptr::null_mut());
        // SAFETY: we set Pending above; the buffer is handed to the kernel from here on.
        let buf = unsafe { &mut *self.buf.get() };
        match call(buf, overlapped) {
            Ok(()) if skips_port => self.complete_in_place(raw, overlapped, 0),
            Err(ERROR_MORE_DATA) if skips_port => {
                self.complete_in_place(raw, overlapped, ERROR_MORE_DATA)
            }
            Ok(()) => true,
            Err(code) if code == ERROR_IO_PENDING || code == ERROR_MORE_DATA => {
                // A packet is queued for pending operations and for warnings such as
                // ERROR_MORE_DATA (the status is not an error status).
                false
            }
            Err(code) => {
                // Failed at once: no packet will come, so take the kernel's reference back.
                // SAFETY: `raw` came from `Arc::into_raw` above and was not handed over.
                drop(unsafe { Arc::from_raw(raw) });
                let mut st = self.lock();
                st.status = Status::Done {
                    error: code,
                    bytes: 0,
                };
                false
            }
        }
    }

    /// Marks the operation pending, parks the kernel's reference and prepares the
    /// `OVERLAPPED` (zeroed, naming `event`, which may be null); returns both pointers.
    fn begin(self: &Arc<Self>, event: HANDLE) -> (*const Op, *mut OVERLAPPED) {
        {
            let mut st = self.lock();
            debug_assert!(st.status != Status::Pending, "operation already pending");
            st.status = Status::Pending;
        }
        let raw = Arc::into_raw(self.clone());
        // SAFETY: status is Pending and nothing else touches the OVERLAPPED until the
        // operation is finished (its packet, or its owner for an evented one); zeroing it is
        // the documented preparation.
        let overlapped = unsafe {
            let ov = self.overlapped.get();
            std::ptr::write(ov, std::mem::zeroed());
            (*ov).hEvent = event;
            ov
        };
        (raw, overlapped)
    }

    /// Completes an operation that finished at once on a handle that skips the port on
    /// success (no packet will come); `true` for success.
    fn complete_in_place(&self, raw: *const Op, overlapped: *mut OVERLAPPED, error: u32) -> bool {
        // SAFETY: `raw` came from `Arc::into_raw` in `start`; with no packet coming, nobody
        // else will turn it back into an `Arc`.
        drop(unsafe { Arc::from_raw(raw) });
        // SAFETY: the operation finished synchronously, so the kernel has written its final
        // status and byte count and no longer touches the OVERLAPPED.
        let bytes = unsafe { (*overlapped).InternalHigh };
        self.complete(error, bytes);
        error == 0
    }

    /// Starts an operation that completes through its own event instead of the port: the
    /// `OVERLAPPED` names the event with its low bit set, which tells Windows never to queue
    /// a packet for it, whatever the handle's association. It finishes in place when the
    /// call finishes at once; otherwise the owner finishes it with [`wait_evented`]
    /// (or [`cancel_evented`]), on its own thread, without the completion thread.
    ///
    /// [`wait_evented`]: Self::wait_evented
    /// [`cancel_evented`]: Self::cancel_evented
    pub(crate) fn start_evented(
        self: &Arc<Self>,
        call: impl FnOnce(&mut Vec<u8>, *mut OVERLAPPED) -> Result<(), u32>,
    ) -> io::Result<()> {
        // The low bit set: no completion packet. The event stays open as long as `self`.
        let event = (self.event()? as usize | 1) as HANDLE;
        let (raw, overlapped) = self.begin(event);
        // SAFETY: we set Pending above; the buffer is handed to the kernel from here on.
        let buf = unsafe { &mut *self.buf.get() };
        match call(buf, overlapped) {
            Ok(()) => {
                self.complete_in_place(raw, overlapped, 0);
            }
            Err(ERROR_MORE_DATA) => {
                self.complete_in_place(raw, overlapped, ERROR_MORE_DATA);
            }
            Err(ERROR_IO_PENDING) => {}
            Err(code) => {
                // SAFETY: `raw` came from `Arc::into_raw` above and was not handed over.
                drop(unsafe { Arc::from_raw(raw) });
                self.lock().status = Status::Done {
                    error: code,
                    bytes: 0,
                };
            }
        }
        Ok(())
    }

    /// Starts an evented operation ([`start_evented`](Self::start_evented)) and waits for
    /// it ([`wait_evented`](Self::wait_evented)); returns its Win32 error (0 for success)
    /// and the bytes moved. The kernel is done with the operation, and with any memory
    /// `call` handed it, when this returns.
    pub(crate) fn run_evented(
        self: &Arc<Self>,
        handle: HANDLE,
        stop: HANDLE,
        until: Option<Instant>,
        call: impl FnOnce(&mut Vec<u8>, *mut OVERLAPPED) -> Result<(), u32>,
    ) -> io::Result<(u32, usize)> {
        self.start_evented(call)?;
        self.wait_evented(handle, stop, until);
        match self.status() {
            Status::Done { error, bytes } => Ok((error, bytes)),
            // Not reached: `wait_evented` returns only once the operation is finished.
            _ => Err(io::Error::other("an evented operation did not finish")),
        }
    }

    fn event(&self) -> io::Result<HANDLE> {
        if let Some(e) = self.event.get() {
            return Ok(e.as_raw_handle() as HANDLE);
        }
        // Windows resets the event again when each operation starts.
        let owned = manual_reset_event()?;
        Ok(self.event.get_or_init(|| owned).as_raw_handle() as HANDLE)
    }

    /// Waits for an operation started with [`start_evented`](Self::start_evented) on
    /// `handle` to finish, or for `stop` to be signalled, or for `until`. On `stop` or
    /// `until` the operation is cancelled and then finished all the same (with
    /// `ERROR_OPERATION_ABORTED`, or with its result if it finished meanwhile): either way it
    /// is `Done` on return and the kernel no longer owns its buffer. Returns `false` when it
    /// was cancelled that way.
    pub(crate) fn wait_evented(
        &self,
        handle: HANDLE,
        stop: HANDLE,
        until: Option<Instant>,
    ) -> bool {
        let Some(event) = self.event.get().map(|e| e.as_raw_handle() as HANDLE) else {
            return true;
        };
        if self.status() != Status::Pending {
            return true;
        }
        let waits = [event, stop];
        let timeout = match until {
            None => INFINITE,
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(u128::from(INFINITE - 1)) as u32,
        };
        // SAFETY: both handles are open events owned by `self` and the caller.
        let woke = unsafe { WaitForMultipleObjects(2, waits.as_ptr(), 0, timeout) };
        if woke == WAIT_OBJECT_0 {
            self.finish_evented(handle);
            true
        } else {
            self.cancel_evented(handle);
            false
        }
    }

    /// Cancels an operation started with [`start_evented`](Self::start_evented) if it is
    /// still pending on `handle`, and waits for the kernel to be done with it.
    pub(crate) fn cancel_evented(&self, handle: HANDLE) {
        if self.event.get().is_none() || self.status() != Status::Pending {
            return;
        }
        // SAFETY: `handle` is the open handle the operation was started on; the OVERLAPPED
        // is the one handed to the kernel. If it has just finished, this does nothing.
        unsafe {
            CancelIoEx(handle, self.overlapped.get());
        }
        self.finish_evented(handle);
    }

    /// Waits for a pending evented operation's result and completes it.
    fn finish_evented(&self, handle: HANDLE) {
        let mut bytes = 0u32;
        // SAFETY: `handle` is the handle the operation was started on and the OVERLAPPED is
        // the one handed to the kernel, alive while we hold `self`; waiting (`TRUE`) returns
        // only once the kernel is done with it.
        let ok = unsafe { GetOverlappedResult(handle, self.overlapped.get(), &mut bytes, 1) };
        let error = if ok != 0 {
            0
        } else {
            // SAFETY: reads this thread's last-error value.
            unsafe { GetLastError() }
        };
        // SAFETY: the reference `start_evented` parked; no packet comes for an evented
        // operation, so this is the only place it is taken back, once (the status leaves
        // Pending right after).
        drop(unsafe { Arc::from_raw(self as *const Op) });
        self.complete(error, bytes as usize);
    }

    fn complete(&self, error: u32, bytes: usize) {
        let waker = {
            let mut st = self.lock();
            st.status = Status::Done { error, bytes };
            st.waker.take()
        };
        if let Some(hook) = &self.hook {
            hook(error);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Polls for completion; registers the task's waker while pending. On `Ready` the status
    /// stays `Done` until [`reset`](Self::reset).
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<(u32, usize)> {
        let mut st = self.lock();
        match st.status {
            Status::Done { error, bytes } => Poll::Ready((error, bytes)),
            Status::Idle => Poll::Ready((0, 0)),
            Status::Pending => {
                match &st.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => st.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// Cancels this operation alone (`CancelIoEx` with its `OVERLAPPED`) if it is still
    /// pending on `handle`; its packet then arrives with `ERROR_OPERATION_ABORTED`. Other
    /// operations on the handle are not touched.
    pub(crate) fn cancel(&self, handle: HANDLE) {
        let st = self.lock();
        if st.status != Status::Pending {
            return;
        }
        // SAFETY: `handle` is the open handle the operation was started on; the OVERLAPPED
        // address is the one handed to the kernel, alive while we hold `self`. Holding the
        // lock keeps the operation from being restarted meanwhile; if it has just finished,
        // CancelIoEx fails with ERROR_NOT_FOUND and does nothing.
        unsafe {
            CancelIoEx(handle, self.overlapped.get());
        }
        drop(st);
    }

    /// Makes a finished operation reusable.
    pub(crate) fn reset(&self) {
        let mut st = self.lock();
        if st.status != Status::Pending {
            st.status = Status::Idle;
            st.waker = None;
        }
    }
}

/// A new unnamed manual-reset event, not signalled.
pub(crate) fn manual_reset_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes and no name; the result is checked below.
    let handle = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
    if handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh handle nobody else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as _) })
}

/// Win32 `BOOL` result to `Result<(), code>` for [`Op::start`].
pub(crate) fn win32_result(ok: i32) -> Result<(), u32> {
    if ok != 0 {
        Ok(())
    } else {
        // SAFETY: reads the calling thread's last-error value.
        Err(unsafe { GetLastError() })
    }
}
