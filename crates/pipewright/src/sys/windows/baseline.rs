//! Raw overlapped pipe I/O without any runtime: the baseline benchmarks compare against.
//! Two threads, `in_flight` reads and `in_flight` writes outstanding, each waited on with an
//! event, buffers of `chunk` bytes.

use std::io;
use std::os::windows::io::OwnedHandle;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{CloseHandle, ERROR_IO_PENDING, ERROR_PIPE_CONNECTED, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{ReadFile, WriteFile};
use windows_sys::Win32::System::Pipes::ConnectNamedPipe;
use windows_sys::Win32::System::Threading::CreateEventW;
use windows_sys::Win32::System::IO::{GetOverlappedResult, OVERLAPPED};

use super::pipe::{self, raw, wide, InstanceSpec};
use crate::options::{ImpersonationLevel, PipeMode};

/// One OVERLAPPED with its own manual-reset event and buffer.
struct Slot {
    ov: Box<OVERLAPPED>,
    buf: Vec<u8>,
    busy: bool,
}

impl Slot {
    fn new(chunk: usize, fill: u8) -> io::Result<Slot> {
        // SAFETY: creates an unnamed manual-reset event; closed in Drop.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: OVERLAPPED is plain data; zero is its initial state.
        let mut ov: Box<OVERLAPPED> = Box::new(unsafe { std::mem::zeroed() });
        ov.hEvent = event;
        Ok(Slot {
            ov,
            buf: vec![fill; chunk],
            busy: false,
        })
    }

    fn start(&mut self, h: HANDLE, write: bool, len: usize) -> io::Result<()> {
        let event = self.ov.hEvent;
        // SAFETY: reset the plain-data OVERLAPPED, keeping its event.
        *self.ov = unsafe { std::mem::zeroed() };
        self.ov.hEvent = event;
        // SAFETY: buffer and OVERLAPPED are owned by `self`, which outlives the operation
        // (we always wait for it in `finish` or Drop before they are freed).
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
        // SAFETY: reads the thread's last error.
        if ok == 0 && unsafe { windows_sys::Win32::Foundation::GetLastError() } != ERROR_IO_PENDING
        {
            return Err(io::Error::last_os_error());
        }
        self.busy = true;
        Ok(())
    }

    fn finish(&mut self, h: HANDLE) -> io::Result<usize> {
        let mut n = 0u32;
        // SAFETY: the operation was started on `h` with this OVERLAPPED; wait for it.
        let ok = unsafe { GetOverlappedResult(h, &*self.ov, &mut n, 1) };
        self.busy = false;
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: we created the event; nothing waits on it any more.
        unsafe { CloseHandle(self.ov.hEvent) };
    }
}

fn pump(h: HANDLE, write: bool, total: usize, chunk: usize, in_flight: usize) -> io::Result<usize> {
    let mut slots = (0..in_flight)
        .map(|_| Slot::new(chunk, 0x5a))
        .collect::<io::Result<Vec<_>>>()?;
    let (mut issued, mut done, mut i) = (0usize, 0usize, 0usize);
    loop {
        let slot = &mut slots[i % in_flight];
        if slot.busy {
            match slot.finish(h) {
                Ok(0) if !write => return Ok(done),
                Ok(n) => done += n,
                Err(e) if !write && e.raw_os_error() == Some(109) => return Ok(done),
                Err(e) => return Err(e),
            }
        }
        if write {
            if issued < total {
                let len = chunk.min(total - issued);
                slot.start(h, true, len)?;
                issued += len;
            } else if slots.iter().all(|s| !s.busy) {
                return Ok(done);
            }
        } else if done >= total {
            // Leave no read pending on the buffers we are about to free.
            pipe::cancel_all_handle(h);
            for s in slots.iter_mut().filter(|s| s.busy) {
                let _ = s.finish(h);
            }
            return Ok(done);
        } else {
            slot.start(h, false, chunk)?;
        }
        i += 1;
    }
}

/// Moves `total` bytes from a client to a server over a fresh byte pipe called `path` with
/// raw overlapped I/O; returns the elapsed time of the transfer.
pub(crate) fn raw_transfer(
    path: &str,
    total: usize,
    chunk: usize,
    in_flight: usize,
) -> io::Result<Duration> {
    let w = wide(path);
    let spec = InstanceSpec {
        path: &w,
        mode: PipeMode::Byte,
        first: true,
        reject_remote: true,
        max_instances: Some(1),
        in_buffer: 64 * 1024,
        out_buffer: 64 * 1024,
        security: None,
    };
    let server: OwnedHandle = pipe::create_instance(&spec)?;
    let client = pipe::open_client(&w, ImpersonationLevel::Anonymous)?;
    let mut connect = Slot::new(0, 0)?;
    // SAFETY: the OVERLAPPED lives in `connect` until the wait below.
    let ok = unsafe { ConnectNamedPipe(raw(&server), &mut *connect.ov) };
    if ok == 0 {
        let err = io::Error::last_os_error();
        match err.raw_os_error().map(|c| c as u32) {
            Some(ERROR_PIPE_CONNECTED) => {}
            Some(ERROR_IO_PENDING) => {
                connect.busy = true;
                connect.finish(raw(&server))?;
            }
            _ => return Err(err),
        }
    }
    let start = Instant::now();
    let server_raw = raw(&server) as usize;
    let reader =
        std::thread::spawn(move || pump(server_raw as HANDLE, false, total, chunk, in_flight));
    let written = pump(raw(&client), true, total, chunk, in_flight)?;
    let read = reader
        .join()
        .map_err(|_| io::Error::other("reader thread panicked"))??;
    let elapsed = start.elapsed();
    if written != total || read != total {
        return Err(io::Error::other(format!(
            "moved {written}/{read} of {total} bytes"
        )));
    }
    Ok(elapsed)
}
