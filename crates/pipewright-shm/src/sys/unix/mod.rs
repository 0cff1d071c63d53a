//! Linux system calls behind the POSIX region: a shared file mapping with
//! bounds-checked atomic access, shared futex wait and wake, `fallocate`,
//! process liveness and the owner generation. Every `unsafe` block of the
//! crate's Unix side is here.

use std::io;
use std::os::fd::AsRawFd;

/// A read-write `MAP_SHARED` mapping of a whole file (a shared-memory
/// region). Accessors are bounds-checked; the mapping is unmapped on drop.
#[derive(Debug)]
pub(crate) struct SharedMapping {
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
    pub(crate) fn map(file: &std::fs::File, len: usize) -> io::Result<SharedMapping> {
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

    fn check(&self, off: usize, size: usize, align: usize) {
        let end = off.checked_add(size).expect("offset overflow");
        assert!(
            end <= self.len && off.is_multiple_of(align),
            "shared-memory access {off}+{size} outside the {}-byte mapping or misaligned",
            self.len
        );
    }

    /// The 32-bit word at `off` (4-aligned, inside the mapping).
    pub(crate) fn u32_at(&self, off: usize) -> &std::sync::atomic::AtomicU32 {
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
    pub(crate) fn u64_at(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
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
    pub(crate) fn write(&self, off: usize, data: &[u8]) {
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
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) {
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
pub(crate) fn futex_wait(
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
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a live, 4-aligned u32; FUTEX_WAKE does not access
    // memory besides looking up waiters keyed by the word's address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

/// `fallocate(fd, 0, 0, len)`, retried on EINTR.
pub(crate) fn fallocate(file: &std::fs::File, len: u64) -> io::Result<()> {
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
pub(crate) fn process_exists(pid: i32) -> bool {
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
pub(crate) fn monotonic_generation() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec the call fills.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let g = (ts.tv_sec as u64 ^ (ts.tv_nsec as u64 >> 10)) as u32;
    g.max(1)
}
