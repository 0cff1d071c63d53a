//! Windows system calls behind the Windows regions: named pagefile-backed
//! sections, mapped views with bounds-checked access, and named auto-reset
//! events. Every `unsafe` block of the crate's Windows side is here.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    GetLastError, ERROR_ALREADY_EXISTS, HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, MapViewOfFile, OpenFileMappingW, UnmapViewOfFile, VirtualQuery,
    FILE_MAP_ALL_ACCESS, MEMORY_BASIC_INFORMATION, MEMORY_MAPPED_VIEW_ADDRESS, MEM_COMMIT,
    PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, OpenEventW, SetEvent, WaitForSingleObject, EVENT_MODIFY_STATE, INFINITE,
    SYNCHRONIZATION_SYNCHRONIZE,
};

/// What a create call found.
#[derive(Debug)]
pub(crate) enum Created<T> {
    /// The object is new.
    New(T),
    /// An object of that name already existed (its handle was closed).
    AlreadyExists,
}

fn wide(name: &str) -> io::Result<Vec<u16>> {
    if name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("object name {name:?} contains a NUL character"),
        ));
    }
    Ok(name.encode_utf16().chain(std::iter::once(0)).collect())
}

/// Takes ownership of a handle a create/open call returned, reading the
/// thread's last error right away; a null handle is the call's failure.
fn own_handle(raw: HANDLE) -> io::Result<(OwnedHandle, u32)> {
    // SAFETY: GetLastError only reads the calling thread's last-error value.
    let last = unsafe { GetLastError() };
    if raw.is_null() {
        return Err(io::Error::from_raw_os_error(last as i32));
    }
    // SAFETY: `raw` is a valid, non-null handle just returned to this thread
    // by a create/open call; nothing else owns it, so the `OwnedHandle`
    // becomes its only owner and closes it once.
    Ok((unsafe { OwnedHandle::from_raw_handle(raw) }, last))
}

/// Creates a pagefile-backed named mapping of `size` bytes (no security
/// attributes: the default DACL of the creator).
pub(crate) fn create_mapping(name: &str, size: u64) -> io::Result<Created<OwnedHandle>> {
    let name = wide(name)?;
    // SAFETY: `name` is a NUL-terminated UTF-16 string alive for the call;
    // INVALID_HANDLE_VALUE asks for a pagefile-backed section; a null
    // security-attributes pointer is allowed.
    let raw = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            (size >> 32) as u32,
            size as u32,
            name.as_ptr(),
        )
    };
    let (handle, last) = own_handle(raw)?;
    if last == ERROR_ALREADY_EXISTS {
        return Ok(Created::AlreadyExists);
    }
    Ok(Created::New(handle))
}

/// Opens an existing named mapping for reading and writing. A missing one
/// fails with `ERROR_FILE_NOT_FOUND` (io kind `NotFound`).
pub(crate) fn open_mapping(name: &str) -> io::Result<OwnedHandle> {
    let name = wide(name)?;
    // SAFETY: `name` is a NUL-terminated UTF-16 string alive for the call.
    let raw = unsafe { OpenFileMappingW(FILE_MAP_ALL_ACCESS, 0, name.as_ptr()) };
    own_handle(raw).map(|(h, _)| h)
}

/// A read/write view of a whole mapping, unmapped on drop. All access goes
/// through bounds-checked methods.
#[derive(Debug)]
pub(crate) struct View {
    base: *mut u8,
    len: usize,
}

// SAFETY: the view is plain process memory shared with other processes; the
// pointer is valid until `drop` unmaps it, and every access is either atomic
// or a copy whose ownership the region protocol hands to one side at a time,
// so moving or sharing the `View` between threads is sound.
unsafe impl Send for View {}
// SAFETY: as above; `&View` only offers atomics and copies.
unsafe impl Sync for View {}

impl View {
    /// Maps all of `mapping` (read/write). The length is the size of the
    /// mapped region (the section size rounded up to a page), cut at the
    /// first page that is not committed (a section created with
    /// `SEC_RESERVE` may have reserved pages that fault when touched).
    pub(crate) fn map(mapping: &OwnedHandle) -> io::Result<View> {
        View::map_len(mapping, 0)
    }

    /// Maps the first `len` bytes of `mapping` (all of it when `len` is 0),
    /// so a large section costs no address space beyond what is needed. The
    /// view's length is the committed part from its start: shorter than
    /// `len` when pages are not committed, so bounds-checked access never
    /// touches them. Callers compare [`len`](Self::len) with what they need.
    pub(crate) fn map_len(mapping: &OwnedHandle, len: usize) -> io::Result<View> {
        // SAFETY: `mapping` is an open file-mapping handle; offset 0 and
        // length `len` (0 = the whole section) map from its start; a length
        // beyond the section fails and is reported below.
        let addr =
            unsafe { MapViewOfFile(mapping.as_raw_handle(), FILE_MAP_ALL_ACCESS, 0, 0, len) };
        if addr.Value.is_null() {
            return Err(io::Error::last_os_error());
        }
        // Owned from here on, so every error path below unmaps it.
        let mut view = View {
            base: addr.Value.cast(),
            len: 0,
        };
        let mut committed = 0usize;
        loop {
            // SAFETY: all-zero is a valid MEMORY_BASIC_INFORMATION (integers
            // and raw pointers).
            let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
            // SAFETY: VirtualQuery only reads the address space's bookkeeping
            // for the address (inside or just past the view; no memory is
            // accessed), and `info` is a writable buffer of the size passed.
            let n = unsafe {
                VirtualQuery(
                    view.base.wrapping_add(committed).cast_const().cast(),
                    &mut info,
                    std::mem::size_of::<MEMORY_BASIC_INFORMATION>(),
                )
            };
            if n == 0 {
                if committed == 0 {
                    return Err(io::Error::last_os_error());
                }
                break;
            }
            if info.AllocationBase != view.base.cast() || info.State != MEM_COMMIT {
                break;
            }
            committed = committed.saturating_add(info.RegionSize);
            if info.RegionSize == 0 || (len != 0 && committed >= len) {
                break;
            }
        }
        view.len = if len == 0 {
            committed
        } else {
            committed.min(len)
        };
        Ok(view)
    }

    /// Mapped length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn checked(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        let end = offset.checked_add(len);
        assert!(
            end.is_some_and(|e| e <= self.len) && offset.is_multiple_of(align),
            "shared-memory access at {offset}+{len} outside the {}-byte view",
            self.len
        );
        // SAFETY: `offset + len <= self.len`, checked above, so the result
        // stays inside the mapped view.
        unsafe { self.base.add(offset) }
    }

    /// The 32-bit atomic at `offset` (4-aligned, inside the view; internal
    /// constant offsets only, so a violation is a bug and panics).
    pub(crate) fn i32_at(&self, offset: usize) -> &AtomicI32 {
        let p = self.checked(offset, 4, 4);
        // SAFETY: `p` is 4-aligned (page-aligned base, offset % 4 == 0) and
        // in bounds; the memory lives as long as `&self`, and every side
        // accesses these header words only atomically.
        unsafe { AtomicI32::from_ptr(p.cast()) }
    }

    /// The 32-bit unsigned atomic at `offset`.
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let p = self.checked(offset, 4, 4);
        // SAFETY: as in `i32_at`.
        unsafe { AtomicU32::from_ptr(p.cast()) }
    }

    /// The 64-bit atomic at `offset` (8-aligned).
    pub(crate) fn i64_at(&self, offset: usize) -> &AtomicI64 {
        let p = self.checked(offset, 8, 8);
        // SAFETY: `p` is 8-aligned and in bounds; the memory lives as long
        // as `&self`, and every side accesses these words only atomically.
        unsafe { AtomicI64::from_ptr(p.cast()) }
    }

    /// Copies `bytes` into the view at `offset`; false (nothing copied) when
    /// the range is outside the view.
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // SAFETY: the destination range is inside the view (checked above)
        // and cannot overlap `bytes`, a Rust slice; the region protocol gives
        // this side sole ownership of the area until it publishes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(offset), bytes.len());
        }
        true
    }

    /// Appends `len` bytes of the view at `offset` to `out`; false (nothing
    /// copied) when the range is outside the view.
    pub(crate) fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            return false;
        }
        out.reserve(len);
        let start = out.len();
        // SAFETY: the source range is inside the view (checked above); the
        // destination is `len` bytes of reserved, unused capacity of `out`,
        // which cannot overlap the view; after the copy those bytes are
        // initialised, so the new length is valid. The peer does not write
        // the area while the message is published (the caller re-checks the
        // counters after the copy).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(offset), out.as_mut_ptr().add(start), len);
            out.set_len(start + len);
        }
        true
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: `base` is the address MapViewOfFile returned and the view
        // has not been unmapped; no reference into it outlives `self`.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.base.cast(),
            });
        }
    }
}

/// A named auto-reset event.
#[derive(Debug)]
pub(crate) struct Event {
    handle: OwnedHandle,
}

/// Creates a named auto-reset event, initially not signalled.
pub(crate) fn create_event(name: &str) -> io::Result<Created<Event>> {
    let name = wide(name)?;
    // SAFETY: `name` is a NUL-terminated UTF-16 string alive for the call; a
    // null security-attributes pointer is allowed.
    let raw = unsafe { CreateEventW(std::ptr::null(), 0, 0, name.as_ptr()) };
    let (handle, last) = own_handle(raw)?;
    if last == ERROR_ALREADY_EXISTS {
        return Ok(Created::AlreadyExists);
    }
    Ok(Created::New(Event { handle }))
}

/// Opens an existing named event for signalling and waiting.
pub(crate) fn open_event(name: &str) -> io::Result<Event> {
    let name = wide(name)?;
    // SAFETY: `name` is a NUL-terminated UTF-16 string alive for the call.
    let raw = unsafe {
        OpenEventW(
            EVENT_MODIFY_STATE | SYNCHRONIZATION_SYNCHRONIZE,
            0,
            name.as_ptr(),
        )
    };
    own_handle(raw).map(|(handle, _)| Event { handle })
}

impl Event {
    /// Signals the event (wakes one waiter, or the next wait).
    pub(crate) fn set(&self) -> io::Result<()> {
        // SAFETY: the handle is an open event handle with EVENT_MODIFY_STATE.
        if unsafe { SetEvent(self.handle.as_raw_handle()) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the event is signalled (true) or `timeout` passes
    /// (false). `None` waits without a limit. Timeouts are rounded up to
    /// whole milliseconds.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ms = match timeout {
            None => INFINITE,
            Some(t) => {
                let ms = t.as_nanos().div_ceil(1_000_000);
                u32::try_from(ms).unwrap_or(INFINITE - 1).min(INFINITE - 1)
            }
        };
        // SAFETY: the handle is an open event handle with SYNCHRONIZE access.
        match unsafe { WaitForSingleObject(self.handle.as_raw_handle(), ms) } {
            WAIT_OBJECT_0 => Ok(true),
            WAIT_TIMEOUT => Ok(false),
            other => {
                let e = io::Error::last_os_error();
                Err(io::Error::new(
                    e.kind(),
                    format!("WaitForSingleObject returned {other:#x}: {e}"),
                ))
            }
        }
    }
}
