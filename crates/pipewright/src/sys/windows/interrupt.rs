//! Stopping a blocking stream from another thread: a manual-reset event that every blocking
//! wait of the stream also waits on, and a flag that refuses later operations.

use std::io;
use std::os::windows::io::{AsRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Threading::SetEvent;

use super::iocp::manual_reset_event;

/// Shared by a blocking stream and its interrupters.
#[derive(Debug)]
pub(crate) struct Interrupt {
    event: OwnedHandle,
    set: AtomicBool,
}

impl Interrupt {
    pub(crate) fn new() -> io::Result<Arc<Interrupt>> {
        Ok(Arc::new(Interrupt {
            event: manual_reset_event()?,
            set: AtomicBool::new(false),
        }))
    }

    /// Ends the wait in progress (its operation is cancelled) and every later one.
    pub(crate) fn interrupt(&self) {
        self.set.store(true, Ordering::SeqCst);
        // SAFETY: our own open event handle.
        unsafe {
            SetEvent(self.handle());
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    pub(crate) fn handle(&self) -> HANDLE {
        self.event.as_raw_handle() as HANDLE
    }
}
