//! Ending a stream without losing what was written: the lingering set and linger deadlines,
//! both served by the completion thread (`iocp.rs`), so neither needs an async runtime nor
//! parks a thread.
//!
//! A dropped stream whose writes are still in flight is handed over here as a [`Linger`]: its
//! handle stays open until the last write's packet arrives, then (message mode) the zero-byte
//! end-of-stream message is sent, then the handle is closed and the listener's `on_close`
//! runs. Past the linger deadline the remaining writes are cancelled and the handle closed.
//! A [`Deadline`] is a one-shot timer for the bounded waits of `shutdown` and `close_write`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::Storage::FileSystem::WriteFile;
use windows_sys::Win32::System::Threading::INFINITE;

use super::iocp::{wake_completion_thread, win32_result, Op, Status};

/// A raw handle that may cross threads; the value is only used while `Linger::keep` keeps
/// the handle open.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendHandle(pub(crate) HANDLE);
// SAFETY: a kernel handle is usable from any thread; ownership stays with `Linger::keep`.
unsafe impl Send for SendHandle {}

/// Starts an overlapped `WriteFile` of `op`'s buffer on `handle`; `true` when it finished at
/// once with success (the bytes are in the pipe). `skips_port` as in [`Op::start`].
pub(crate) fn start_write(handle: HANDLE, skips_port: bool, op: &Arc<Op>) -> bool {
    op.start(skips_port, |buf, overlapped| {
        // SAFETY: the buffer and OVERLAPPED live in `op`, kept alive by the reference `start`
        // parks until the completion packet; the handle is open and overlapped.
        win32_result(unsafe {
            WriteFile(
                handle,
                buf.as_ptr(),
                buf.len() as u32,
                std::ptr::null_mut(),
                overlapped,
            )
        })
    })
}

/// A stream end that is closing: its handle stays open until its writes are done.
pub(crate) struct Linger {
    pub(crate) handle: SendHandle,
    /// The handle completes operations that finish at once in place ([`Op::start`]).
    pub(crate) skips_port: bool,
    /// Owns the handle: dropping it closes the handle.
    pub(crate) keep: Box<dyn Send>,
    /// Writes still in flight, in issue order.
    pub(crate) writes: Vec<Arc<Op>>,
    /// Send the zero-byte end-of-stream message once the writes are done (message mode).
    pub(crate) zero_message: bool,
    pub(crate) deadline: Instant,
    /// Runs once the handle is closed (the listener tops up its instances).
    pub(crate) on_close: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Linger {
    /// Advances this end; `true` when it is finished and must be closed.
    fn step(&mut self, now: Instant) -> bool {
        if now >= self.deadline {
            let pending = self
                .writes
                .iter()
                .filter(|op| op.status() == Status::Pending)
                .count();
            if pending > 0 {
                tracing::debug!(
                    writes = pending,
                    "linger limit reached: cancelling the writes the peer did not read"
                );
            }
            for op in &self.writes {
                op.cancel(self.handle.0);
            }
            return true;
        }
        if self.writes.iter().any(|op| op.status() == Status::Pending) {
            return false;
        }
        let failed = self
            .writes
            .iter()
            .any(|op| matches!(op.status(), Status::Done { error, .. } if error != 0));
        self.writes.clear();
        if failed || !self.zero_message {
            return true;
        }
        self.zero_message = false;
        let op = Op::new();
        start_write(self.handle.0, self.skips_port, &op);
        if matches!(op.status(), Status::Done { error, .. } if error != 0) {
            return true;
        }
        self.writes.push(op);
        false
    }

    fn finish(mut self) {
        drop(self.keep);
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
    }
}

struct TimerShared {
    deadline: Instant,
    state: Mutex<TimerState>,
}

#[derive(Default)]
struct TimerState {
    fired: bool,
    dropped: bool,
    waker: Option<Waker>,
}

impl TimerShared {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A one-shot deadline fired by the completion thread (no async runtime needed).
pub(crate) struct Deadline {
    shared: Arc<TimerShared>,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadline")
            .field("deadline", &self.shared.deadline)
            .finish()
    }
}

impl Deadline {
    /// A deadline `after` from now.
    pub(crate) fn after(after: Duration) -> Deadline {
        let deadline = Instant::now()
            .checked_add(after)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let shared = Arc::new(TimerShared {
            deadline,
            state: Mutex::new(TimerState::default()),
        });
        registry().timers.push(shared.clone());
        wake_completion_thread();
        Deadline { shared }
    }

    /// `Ready` once the deadline has passed; registers the waker otherwise.
    pub(crate) fn poll_expired(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.shared.lock();
        if st.fired || Instant::now() >= self.shared.deadline {
            return Poll::Ready(());
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.dropped = true;
        st.waker = None;
    }
}

#[derive(Default)]
struct Registry {
    lingering: Vec<Linger>,
    timers: Vec<Arc<TimerShared>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    lingering: Vec::new(),
    timers: Vec::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands a closing stream end to the completion thread. Never blocks.
pub(crate) fn hand_over(linger: Linger) {
    registry().lingering.push(linger);
    wake_completion_thread();
}

/// Milliseconds until the nearest deadline, rounded up; `INFINITE` when there is none.
pub(crate) fn timeout_ms() -> u32 {
    let reg = registry();
    let nearest = reg
        .lingering
        .iter()
        .map(|l| l.deadline)
        .chain(reg.timers.iter().map(|t| t.deadline))
        .min();
    drop(reg);
    match nearest {
        None => INFINITE,
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            let ms = left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0);
            ms.min(u128::from(INFINITE - 1)) as u32
        }
    }
}

/// Runs on the completion thread after every batch of packets and at every timeout: fires
/// due deadlines, advances lingering ends, closes the finished ones.
pub(crate) fn service() {
    let mut wakers = Vec::new();
    let mut finished = Vec::new();
    {
        let mut reg = registry();
        if reg.lingering.is_empty() && reg.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        reg.timers.retain(|t| {
            let mut st = t.lock();
            if st.dropped {
                return false;
            }
            if now >= t.deadline {
                st.fired = true;
                wakers.extend(st.waker.take());
                return false;
            }
            true
        });
        let mut i = 0;
        while i < reg.lingering.len() {
            if reg.lingering[i].step(now) {
                finished.push(reg.lingering.swap_remove(i));
            } else {
                i += 1;
            }
        }
    }
    for w in wakers {
        w.wake();
    }
    // Closing and the listener's callback run without the registry's lock held.
    for l in finished {
        l.finish();
    }
}

/// Cancels every operation of `ops` still pending on `handle`.
pub(crate) fn cancel_ops<'a>(handle: HANDLE, ops: impl IntoIterator<Item = &'a Arc<Op>>) {
    for op in ops {
        op.cancel(handle);
    }
}
