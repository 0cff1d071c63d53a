//! Linux system calls: SEQPACKET receive with truncation reporting, reactor
//! registration, and the shared-memory primitives (shared mappings, shared
//! futexes, fallocate, process liveness, the owner generation).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `recv(fd, buf, len, MSG_TRUNC)` on a SEQPACKET socket: receives one packet
/// into `buf` and returns the packet's real length, which exceeds `buf.len()`
/// when the packet did not fit (Linux reports the full length with MSG_TRUNC).
pub fn recv_packet_reporting_truncation(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice, so the kernel may
    // write up to `buf.len()` bytes at `buf.as_mut_ptr()` (MSG_TRUNC does not
    // make it write more than `len`); `fd` is a valid open descriptor borrowed
    // for the duration of the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n.unsigned_abs())
    }
}

/// Tells what a SEQPACKET receive that returned 0 bytes was: `true` when the
/// connection has ended (the peer closed or shut down its sending side and
/// nothing with a payload is queued), `false` when it was a zero-length packet
/// (a legal datagram that `recv` reports the same way as the end).
///
/// Linux sets `RCV_SHUTDOWN` (poll reports `POLLRDHUP`) before a receive can
/// return the end, and never clears it; while it is not set the 0 was a packet.
/// Once it is set, `FIONREAD` (the bytes queued) tells whether real packets are
/// still waiting behind the zero-length one; when only zero-length packets (or
/// nothing) remain, the connection is over.
pub fn seqpacket_zero_is_end(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid, writable pollfd for the duration of the
    // call, the count passed is 1, and a 0 timeout never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if pfd.revents & (libc::POLLRDHUP | libc::POLLHUP) == 0 {
        return Ok(false);
    }
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to
    // `queued`, alive and writable for the call; `fd` is a valid descriptor.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(queued <= 0)
}

/// CPU time (user + system) the whole process has used so far, from
/// `getrusage(RUSAGE_SELF)`.
pub fn process_cpu_time() -> io::Result<std::time::Duration> {
    // SAFETY: all-zero is a valid `rusage` (plain integers).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a writable `rusage` alive for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// Registers an owned socket with the current tokio reactor. Fails (instead
/// of panicking) when called outside a tokio runtime.
pub fn register_socket(
    sock: socket2::Socket,
) -> io::Result<tokio::io::unix::AsyncFd<socket2::Socket>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "sockets must be registered inside a tokio runtime",
        ));
    }
    // SAFETY: `socket2::Socket` owns its descriptor: `as_raw_fd()` always
    // returns that same open descriptor, which stays open until the socket is
    // dropped, and the `AsyncFd` takes ownership of the socket, so the
    // descriptor outlives the registration.
    unsafe { tokio::io::unix::AsyncFd::register(sock) }.map_err(io::Error::from)
}

/// A read-write `MAP_SHARED` mapping of a whole file (a shared-memory
/// region). Accessors are bounds-checked; the mapping is unmapped on drop.
#[derive(Debug)]
pub struct SharedMapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access goes through atomics or explicit copies whose ordering the region
// protocol establishes (one writer per area at a time), so moving the owner
// to another thread is sound.
unsafe impl Send for SharedMapping {}
// SAFETY: `&SharedMapping` only hands out atomics (`Sync` themselves) and
// copies through raw pointers, never `&mut` references into the mapping.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Maps the first `len` bytes of `file` (opened read-write) shared.
    pub fn map(file: &std::fs::File, len: usize) -> io::Result<SharedMapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty region",
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (null
        // hint), backed by an open descriptor borrowed for the call; no
        // existing Rust object aliases the new pages.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(SharedMapping { ptr, len })
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping has no bytes (never: empty mappings are refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, off: usize, size: usize, align: usize) {
        let end = off.checked_add(size).expect("offset overflow");
        assert!(
            end <= self.len && off.is_multiple_of(align),
            "shared-memory access {off}+{size} outside the {}-byte mapping or misaligned",
            self.len
        );
    }

    /// The 32-bit word at `off` (4-aligned, inside the mapping).
    pub fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: bounds and alignment checked above (the mapping itself is
        // page-aligned); the pointee lives as long as `self` (unmapped only
        // on drop), and AtomicU32 has the layout of u32 and tolerates
        // concurrent access by other threads and processes.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(off)
                .cast::<std::sync::atomic::AtomicU32>()
        }
    }

    /// The 64-bit word at `off` (8-aligned, inside the mapping).
    pub fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: as in `u32_at`, for an 8-aligned 8-byte word.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(off)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// Copies `data` into the mapping at `off`.
    pub fn write(&self, off: usize, data: &[u8]) {
        self.check(off, data.len(), 1);
        // SAFETY: the destination range is inside the mapping (checked) and
        // cannot overlap `data`, which is a Rust-owned slice outside it or a
        // distinct object; the region protocol makes this side the only
        // writer of the range until it publishes.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(off), data.len())
        }
    }

    /// Copies `out.len()` bytes from the mapping at `off` into `out`.
    pub fn read(&self, off: usize, out: &mut [u8]) {
        self.check(off, out.len(), 1);
        // SAFETY: the source range is inside the mapping (checked) and `out`
        // is an exclusively borrowed Rust slice, so the ranges do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), out.len())
        }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe exactly the mapping created in `map`,
        // and no reference into it outlives `self` (accessors borrow self).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// `futex(word, FUTEX_WAIT, expected, timeout)` on a shared (not
/// process-private) futex word: sleeps while `*word == expected`, at most
/// `timeout`. Returns `Ok(true)` when woken or the value had already changed
/// (or on a signal), `Ok(false)` on timeout.
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    timeout: std::time::Duration,
) -> io::Result<bool> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(i32::try_from(timeout.subsec_nanos()).unwrap_or(0)),
    };
    // SAFETY: `word` is a live, 4-aligned u32 (an atomic borrowed for the
    // call); FUTEX_WAIT only reads it and `ts` lives on the stack for the
    // duration of the call; the unused arguments are null/zero.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ETIMEDOUT) => Ok(false),
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(true),
        _ => Err(e),
    }
}

/// `futex(word, FUTEX_WAKE, n)` on a shared futex word.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a live, 4-aligned u32; FUTEX_WAKE does not access
    // memory besides looking up waiters keyed by the word's address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

/// `fallocate(fd, 0, 0, len)`, retried on EINTR.
pub fn fallocate(file: &std::fs::File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
    loop {
        // SAFETY: plain system call on an open descriptor borrowed for the
        // call; no memory is passed.
        let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)` succeeds or fails
/// with EPERM).
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 performs only the existence and permission check;
    // nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// `(u32)(CLOCK_MONOTONIC tv_sec ^ (tv_nsec >> 10))`, the region owner's
/// generation (never 0).
pub fn monotonic_generation() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec the call fills.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let g = (ts.tv_sec as u64 ^ (ts.tv_nsec as u64 >> 10)) as u32;
    g.max(1)
}
