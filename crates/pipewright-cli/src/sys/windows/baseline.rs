//! Raw overlapped pipe I/O without any runtime: the baseline `bench stream` compares against.
//! Two threads, `in_flight` reads and `in_flight` writes outstanding, each waited on with an
//! event, buffers of `chunk` bytes.
//!
//! Soundness on every path, errors and panics included:
//! - a [`Pump`] owns its slots (buffer + `OVERLAPPED`); dropping it first cancels each
//!   operation still pending and waits for its completion (`CancelIoEx` +
//!   `GetOverlappedResult(wait = TRUE)`), and only then frees the memory;
//! - the pipe handles are created before, and closed after, a `thread::scope` in which both
//!   sides run, so no thread ever uses a closed handle;
//! - when one side fails it makes the other end (the writer closes the client handle it owns;
//!   the reader disconnects the server end), so the scope's join cannot wait forever.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_BROKEN_PIPE, ERROR_IO_PENDING, ERROR_MORE_DATA, ERROR_NO_DATA,
    ERROR_PIPE_CONNECTED, ERROR_PIPE_NOT_CONNECTED, GENERIC_READ, GENERIC_WRITE, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, ReadFile, WriteFile, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED,
    OPEN_EXISTING, PIPE_ACCESS_DUPLEX, SECURITY_ANONYMOUS, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, SetNamedPipeHandleState,
    PIPE_READMODE_BYTE, PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE,
    PIPE_TYPE_MESSAGE, PIPE_WAIT,
};
use windows_sys::Win32::System::Threading::CreateEventW;
use windows_sys::Win32::System::IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED};

/// Moves `total` bytes from a client to a server over a fresh byte pipe at `path` with raw
/// overlapped I/O (`in_flight` reads and writes outstanding, `chunk` bytes each); returns the
/// elapsed time of the transfer.
pub fn raw_transfer(
    path: &str,
    total: usize,
    chunk: usize,
    in_flight: usize,
) -> io::Result<Duration> {
    transfer(
        path,
        total,
        chunk,
        in_flight.max(1),
        None,
        &Tracker::default(),
    )
}

/// Counts operations, so tests can check that none was pending when its memory was freed.
#[derive(Debug, Default)]
struct Tracker {
    started: AtomicUsize,
    finished: AtomicUsize,
    /// Slots dropped with an operation still pending (their memory is leaked, not freed).
    dropped_pending: AtomicUsize,
}

fn transfer(
    path: &str,
    total: usize,
    chunk: usize,
    in_flight: usize,
    fail_writer_after: Option<usize>,
    tracker: &Tracker,
) -> io::Result<Duration> {
    let path_w: Vec<u16> = path.encode_utf16().chain(std::iter::once(0)).collect();
    let server = create_server(&path_w)?;
    let client = open_client(&path_w)?;
    wait_connected(&server, tracker)?;
    let start = Instant::now();
    let (written, read) = std::thread::scope(|s| {
        let server = &server;
        let reader = s.spawn(move || {
            let read = pump(server, false, total, chunk, in_flight, None, tracker);
            if read.is_err() {
                // Fail the writer's pending and future writes, so it returns too.
                // SAFETY: `server` is open for the whole scope.
                unsafe { DisconnectNamedPipe(raw(server)) };
            }
            read
        });
        let mut client = Some(client);
        let c = client.as_ref().expect("the client is open");
        let written = pump(c, true, total, chunk, in_flight, fail_writer_after, tracker);
        if written.is_err() {
            // End the reader: its pending reads complete with ERROR_BROKEN_PIPE.
            drop(client.take());
        }
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        drop(client);
        (written, read)
    });
    let elapsed = start.elapsed();
    let (written, read) = (written?, read?);
    if written != total || read != total {
        return Err(io::Error::other(format!(
            "moved {written}/{read} of {total} bytes"
        )));
    }
    Ok(elapsed)
}

fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle == INVALID_HANDLE_VALUE || handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid handle that nobody else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

fn create_server(path: &[u16]) -> io::Result<OwnedHandle> {
    // SAFETY: `path` is NUL-terminated UTF-16; default security.
    owned(unsafe {
        CreateNamedPipeW(
            path.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            64 * 1024,
            64 * 1024,
            0,
            std::ptr::null(),
        )
    })
}

fn open_client(path: &[u16]) -> io::Result<OwnedHandle> {
    // SAFETY: `path` is NUL-terminated UTF-16; no security attributes or template.
    owned(unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS,
            std::ptr::null_mut(),
        )
    })
}

/// Completes the server's `ConnectNamedPipe` (the client has already opened the pipe).
fn wait_connected(server: &OwnedHandle, tracker: &Tracker) -> io::Result<()> {
    let mut pump = Pump {
        handle: raw(server),
        slots: vec![Slot::new(0)?],
        tracker,
    };
    let slot = &mut pump.slots[0];
    // SAFETY: the OVERLAPPED lives in `pump`, whose Drop waits for the operation.
    let ok = unsafe { ConnectNamedPipe(pump.handle, &mut *slot.ov) };
    if ok != 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error().map(|c| c as u32) {
        Some(ERROR_PIPE_CONNECTED) => Ok(()),
        Some(ERROR_IO_PENDING) => {
            slot.pending = true;
            tracker.started.fetch_add(1, Ordering::Relaxed);
            slot.finish(pump.handle, tracker).map(|_| ())
        }
        _ => Err(err),
    }
}

/// One `OVERLAPPED` with its own manual-reset event and buffer.
struct Slot {
    ov: Box<OVERLAPPED>,
    buf: Vec<u8>,
    event: OwnedHandle,
    pending: bool,
}

impl Slot {
    fn new(chunk: usize) -> io::Result<Slot> {
        // SAFETY: creates an unnamed manual-reset event, owned below.
        let event = owned(unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) })?;
        // SAFETY: OVERLAPPED is plain data; zero is its initial state.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = raw(&event);
        Ok(Slot {
            ov,
            buf: vec![0x5a; chunk],
            event,
            pending: false,
        })
    }

    fn start(&mut self, h: HANDLE, write: bool, len: usize, tracker: &Tracker) -> io::Result<()> {
        debug_assert!(!self.pending);
        // SAFETY: not pending, so the kernel holds no pointer to it: reset the plain-data
        // OVERLAPPED, keeping its event.
        *self.ov = unsafe { std::mem::zeroed() };
        self.ov.hEvent = raw(&self.event);
        // SAFETY: buffer and OVERLAPPED stay allocated until the operation completes: the
        // owning Pump waits for every pending operation before it frees them.
        let ok = unsafe {
            if write {
                WriteFile(
                    h,
                    self.buf.as_ptr(),
                    len as u32,
                    std::ptr::null_mut(),
                    &mut *self.ov,
                )
            } else {
                ReadFile(
                    h,
                    self.buf.as_mut_ptr(),
                    len as u32,
                    std::ptr::null_mut(),
                    &mut *self.ov,
                )
            }
        };
        // SAFETY: reads this thread's last error.
        if ok == 0 && unsafe { GetLastError() } != ERROR_IO_PENDING {
            return Err(io::Error::last_os_error());
        }
        self.pending = true;
        tracker.started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the pending operation and returns its byte count.
    fn finish(&mut self, h: HANDLE, tracker: &Tracker) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: the operation was started on `h` with this OVERLAPPED; wait for it.
        let ok = unsafe { GetOverlappedResult(h, &*self.ov, &mut n, 1) };
        self.pending = false;
        tracker.finished.fetch_add(1, Ordering::Relaxed);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.pending {
            // Never reached through a Pump (it waits first); if it were, the kernel may
            // still write here, so leak the memory rather than free it.
            // SAFETY: OVERLAPPED is plain data; zero is a valid value.
            let ov = std::mem::replace(&mut self.ov, Box::new(unsafe { std::mem::zeroed() }));
            Box::leak(ov);
            std::mem::forget(std::mem::take(&mut self.buf));
        }
    }
}

/// The slots of one side; on drop, cancels and waits for whatever is still pending.
struct Pump<'t> {
    handle: HANDLE,
    slots: Vec<Slot>,
    tracker: &'t Tracker,
}

impl Drop for Pump<'_> {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.pending) {
            // SAFETY: the handle is open (it outlives the scope the pump runs in) and the
            // OVERLAPPED is this slot's pending operation.
            unsafe { CancelIoEx(self.handle, &*slot.ov) };
            // Cancelled or completed meanwhile: either way it is finished after this.
            let _ = slot.finish(self.handle, self.tracker);
        }
        let left = self.slots.iter().filter(|s| s.pending).count();
        self.tracker
            .dropped_pending
            .fetch_add(left, Ordering::Relaxed);
    }
}

fn pump(
    h: &OwnedHandle,
    write: bool,
    total: usize,
    chunk: usize,
    in_flight: usize,
    fail_after: Option<usize>,
    tracker: &Tracker,
) -> io::Result<usize> {
    let slots = (0..in_flight)
        .map(|_| Slot::new(chunk))
        .collect::<io::Result<Vec<_>>>()?;
    let mut pump = Pump {
        handle: raw(h),
        slots,
        tracker,
    };
    let h = pump.handle;
    let (mut issued, mut done, mut i) = (0usize, 0usize, 0usize);
    loop {
        let slot = &mut pump.slots[i % in_flight];
        if slot.pending {
            match slot.finish(h, tracker) {
                Ok(0) if !write => return Ok(done),
                Ok(n) => done += n,
                Err(e) if !write && e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) => {
                    return Ok(done)
                }
                Err(e) => return Err(e),
            }
        }
        if write {
            if fail_after.is_some_and(|limit| issued >= limit) {
                return Err(io::Error::other("injected writer failure"));
            }
            if issued < total {
                let len = chunk.min(total - issued);
                slot.start(h, true, len, tracker)?;
                issued += len;
            } else if pump.slots.iter().all(|s| !s.pending) {
                return Ok(done);
            }
        } else if done >= total {
            // The pump's Drop cancels and waits for the reads still pending.
            return Ok(done);
        } else {
            slot.start(h, false, chunk, tracker)?;
        }
        i += 1;
    }
}

/// Small-message ping-pong over a fresh pipe at `path` (a message pipe when `message`), with
/// synchronous `ReadFile`/`WriteFile` on non-overlapped handles, one thread per side, no
/// runtime: the client writes `size` bytes, the server reads them whole and writes them back,
/// the client reads them whole and checks them, for `run_for`.
///
/// The server handle outlives the scope both sides run in; the client's is closed by the
/// client when it is done or fails (the server's blocked read then ends with
/// `ERROR_BROKEN_PIPE`), and a failing server disconnects its end (the client's blocked read
/// then fails), so neither side waits forever.
pub fn raw_ping_pong(
    path: &str,
    size: usize,
    message: bool,
    run_for: Duration,
) -> io::Result<crate::cmd::bench::RoundTrips> {
    let path_w: Vec<u16> = path.encode_utf16().chain(std::iter::once(0)).collect();
    let kind = if message {
        PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE
    } else {
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE
    };
    // SAFETY: `path_w` is NUL-terminated UTF-16; default security.
    let server = owned(unsafe {
        CreateNamedPipeW(
            path_w.as_ptr(),
            PIPE_ACCESS_DUPLEX | FILE_FLAG_FIRST_PIPE_INSTANCE,
            kind | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            1,
            64 * 1024,
            64 * 1024,
            0,
            std::ptr::null(),
        )
    })?;
    // SAFETY: `path_w` is NUL-terminated UTF-16; no security attributes or template.
    let client = owned(unsafe {
        CreateFileW(
            path_w.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            SECURITY_SQOS_PRESENT | SECURITY_ANONYMOUS,
            std::ptr::null_mut(),
        )
    })?;
    if message {
        let mode = PIPE_READMODE_MESSAGE;
        // SAFETY: an open client handle and a valid pointer to the mode; the other two
        // settings are left as they are.
        let ok = unsafe {
            SetNamedPipeHandleState(raw(&client), &mode, std::ptr::null(), std::ptr::null())
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // The client has opened the pipe: this returns at once (ERROR_PIPE_CONNECTED).
    // SAFETY: a synchronous server handle, no OVERLAPPED.
    if unsafe { ConnectNamedPipe(raw(&server), std::ptr::null_mut()) } == 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(ERROR_PIPE_CONNECTED as i32) {
            return Err(err);
        }
    }
    std::thread::scope(|s| {
        let server = &server;
        let echo = s.spawn(move || -> io::Result<u64> {
            let h = raw(server);
            let mut buf = vec![0u8; size];
            let mut echoed = 0u64;
            let result = loop {
                match read_whole(h, &mut buf, message) {
                    Ok(false) => break Ok(echoed),
                    Ok(true) => {}
                    Err(e) => break Err(e),
                }
                if let Err(e) = write_whole(h, &buf) {
                    break Err(e);
                }
                echoed += 1;
            };
            if result.is_err() {
                // Fail the client's blocked read instead of leaving it waiting.
                // SAFETY: `server` is open for the whole scope.
                unsafe { DisconnectNamedPipe(h) };
            }
            result
        });
        let h = raw(&client);
        let driven = crate::cmd::bench::drive(size, run_for, |msg, reply| {
            write_whole(h, msg)?;
            if !read_whole(h, reply, message)? {
                return Err(io::Error::from_raw_os_error(ERROR_BROKEN_PIPE as i32));
            }
            Ok(())
        });
        // Closing the client ends the echo thread's read (on success and failure alike).
        drop(client);
        crate::cmd::bench::with_echoed(driven, echo)
    })
}

/// Fills `buf` with synchronous reads (one read of a whole message on a message pipe);
/// `Ok(false)` when the peer closed before the first byte.
fn read_whole(h: HANDLE, buf: &mut [u8], message: bool) -> io::Result<bool> {
    let mut got = 0usize;
    while got < buf.len() {
        let mut n = 0u32;
        // SAFETY: a synchronous handle; the buffer is valid for the length given.
        let ok = unsafe {
            ReadFile(
                h,
                buf[got..].as_mut_ptr(),
                (buf.len() - got) as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error().map(|c| c as u32) {
                Some(ERROR_BROKEN_PIPE | ERROR_PIPE_NOT_CONNECTED | ERROR_NO_DATA) if got == 0 => {
                    Ok(false)
                }
                Some(ERROR_MORE_DATA) => Err(io::Error::other(format!(
                    "a message longer than the {} bytes expected",
                    buf.len()
                ))),
                _ => Err(err),
            };
        }
        if n == 0 && !message {
            return Ok(false);
        }
        got += n as usize;
        if message && got != buf.len() {
            return Err(io::Error::other(format!(
                "a {got}-byte message where {} bytes were expected",
                buf.len()
            )));
        }
    }
    Ok(true)
}

/// Writes all of `buf` with synchronous writes (one write on a message pipe).
fn write_whole(h: HANDLE, buf: &[u8]) -> io::Result<()> {
    let mut sent = 0usize;
    while sent < buf.len() {
        let mut n = 0u32;
        // SAFETY: a synchronous handle; the buffer is valid for the length given.
        let ok = unsafe {
            WriteFile(
                h,
                buf[sent..].as_ptr(),
                (buf.len() - sent) as u32,
                &mut n,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        sent += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!(r"\\.\pipe\pw-cli-baseline-{tag}-{}", std::process::id())
    }

    /// Both pipe kinds: every request the client timed was answered, by the server's count.
    #[test]
    fn a_blocking_ping_pong_answers_every_request_on_byte_and_message_pipes() {
        for (tag, message, size) in [("pp-byte", false, 1000), ("pp-msg", true, 40)] {
            let t = raw_ping_pong(&name(tag), size, message, Duration::from_millis(50)).unwrap();
            let measured = t.latencies.len() as u64;
            assert!(measured > 0, "{tag}");
            assert_eq!(t.echoed, measured + t.warm_up, "{tag}");
            assert_eq!(t.bytes, measured * size as u64, "{tag}");
        }
    }

    #[test]
    fn a_transfer_moves_every_byte_and_leaves_nothing_pending() {
        let tracker = Tracker::default();
        transfer(&name("ok"), 4 << 20, 256 << 10, 2, None, &tracker).unwrap();
        let (started, finished) = (
            tracker.started.load(Ordering::Relaxed),
            tracker.finished.load(Ordering::Relaxed),
        );
        assert!(started > 0);
        assert_eq!(started, finished, "operations left pending");
        assert_eq!(tracker.dropped_pending.load(Ordering::Relaxed), 0);
    }

    /// The writer fails after the reader has posted its reads (and with writes of its own
    /// in flight): the transfer returns the error, every operation completed before its
    /// memory was freed, and the reader thread was joined before the handles closed.
    #[test]
    fn a_failing_client_side_frees_nothing_while_pending() {
        let tracker = Tracker::default();
        let chunk = 256 << 10;
        let err =
            transfer(&name("fail"), 64 << 20, chunk, 2, Some(3 * chunk), &tracker).unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(
            tracker.started.load(Ordering::Relaxed),
            tracker.finished.load(Ordering::Relaxed),
            "operations left pending"
        );
        assert_eq!(tracker.dropped_pending.load(Ordering::Relaxed), 0);
    }
}
