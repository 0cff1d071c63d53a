//! Thin, safe wrappers over the Win32 named-pipe calls. The rest of the crate never sees a
//! raw return code.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{
    ERROR_PIPE_BUSY, ERROR_SEM_TIMEOUT, GENERIC_READ, GENERIC_WRITE, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, OPEN_EXISTING,
    PIPE_ACCESS_DUPLEX, SECURITY_ANONYMOUS, SECURITY_DELEGATION, SECURITY_IDENTIFICATION,
    SECURITY_IMPERSONATION, SECURITY_SQOS_PRESENT,
};
use windows_sys::Win32::System::Pipes::{
    CreateNamedPipeW, DisconnectNamedPipe, GetNamedPipeClientProcessId, GetNamedPipeInfo,
    GetNamedPipeServerProcessId, SetNamedPipeHandleState, WaitNamedPipeW, PIPE_READMODE_BYTE,
    PIPE_READMODE_MESSAGE, PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_TYPE_MESSAGE,
    PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
};
use windows_sys::Win32::System::IO::CancelIoEx;

use crate::options::{ImpersonationLevel, PipeMode};

/// A NUL-terminated UTF-16 copy of `s`.
pub(crate) fn wide(s: &str) -> Vec<u16> {
    std::ffi::OsStr::new(s)
        .encode_wide()
        .chain(std::iter::once(0))
        .collect()
}

fn check(ok: i32) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The parameters of one `CreateNamedPipeW` call.
pub(crate) struct InstanceSpec<'a> {
    pub path: &'a [u16],
    pub mode: PipeMode,
    pub first: bool,
    pub reject_remote: bool,
    pub max_instances: Option<u32>,
    pub in_buffer: u32,
    pub out_buffer: u32,
    pub security: Option<&'a SECURITY_ATTRIBUTES>,
}

/// Creates one overlapped server instance.
pub(crate) fn create_instance(spec: &InstanceSpec<'_>) -> io::Result<OwnedHandle> {
    let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if spec.first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    let mut pipe_mode = match spec.mode {
        PipeMode::Byte => PIPE_TYPE_BYTE | PIPE_READMODE_BYTE,
        PipeMode::Message => PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE,
    } | PIPE_WAIT;
    if spec.reject_remote {
        pipe_mode |= PIPE_REJECT_REMOTE_CLIENTS;
    }
    let sa = spec
        .security
        .map_or(std::ptr::null(), |sa| sa as *const SECURITY_ATTRIBUTES);
    // SAFETY: `path` is NUL-terminated UTF-16; `sa` is null or points to attributes whose
    // descriptor outlives the call.
    let handle = unsafe {
        CreateNamedPipeW(
            spec.path.as_ptr(),
            open_mode,
            pipe_mode,
            spec.max_instances.unwrap_or(PIPE_UNLIMITED_INSTANCES),
            spec.out_buffer,
            spec.in_buffer,
            0,
            sa,
        )
    };
    owned(handle)
}

/// Opens the client end of a pipe for overlapped I/O.
pub(crate) fn open_client(path: &[u16], level: ImpersonationLevel) -> io::Result<OwnedHandle> {
    let sqos = SECURITY_SQOS_PRESENT
        | match level {
            ImpersonationLevel::Anonymous => SECURITY_ANONYMOUS,
            ImpersonationLevel::Identification => SECURITY_IDENTIFICATION,
            ImpersonationLevel::Impersonation => SECURITY_IMPERSONATION,
            ImpersonationLevel::Delegation => SECURITY_DELEGATION,
        };
    // SAFETY: `path` is NUL-terminated UTF-16; no security attributes or template.
    let handle = unsafe {
        CreateFileW(
            path.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | sqos,
            std::ptr::null_mut(),
        )
    };
    owned(handle)
}

fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle == INVALID_HANDLE_VALUE || handle.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, valid handle that nobody else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

pub(crate) fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

/// Switches a client handle to message read mode.
pub(crate) fn set_message_read_mode(handle: &OwnedHandle) -> io::Result<()> {
    let mode = PIPE_READMODE_MESSAGE;
    // SAFETY: valid handle; `mode` lives across the call; the other two are optional.
    check(unsafe {
        SetNamedPipeHandleState(raw(handle), &mode, std::ptr::null(), std::ptr::null())
    })
}

/// Whether the server created this pipe as a message pipe (`PIPE_TYPE_MESSAGE`).
pub(crate) fn is_message_pipe(handle: &OwnedHandle) -> io::Result<bool> {
    let mut flags = 0u32;
    // SAFETY: valid handle; `flags` lives across the call; the buffer-size and
    // instance outputs are optional and passed as null.
    check(unsafe {
        GetNamedPipeInfo(
            raw(handle),
            &mut flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    })?;
    Ok(flags & PIPE_TYPE_MESSAGE != 0)
}

/// Whether some server serves `path` now: an instance is free (`Ok(true)`) or all are
/// busy (`Ok(true)` too); `Ok(false)` when no pipe has that name. Does not connect.
pub(crate) fn is_served(path: &[u16]) -> io::Result<bool> {
    // SAFETY: `path` is NUL-terminated UTF-16; 1 ms is the shortest wait.
    let ok = unsafe { WaitNamedPipeW(path.as_ptr(), 1) };
    if ok != 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error().map(|c| c as u32) {
        Some(ERROR_SEM_TIMEOUT) | Some(ERROR_PIPE_BUSY) => Ok(true),
        Some(2) | Some(3) => Ok(false),
        _ => Err(err),
    }
}

/// Process id of the client of a server instance.
pub(crate) fn client_pid(handle: &OwnedHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: valid handle; `pid` is a valid out pointer.
    check(unsafe { GetNamedPipeClientProcessId(raw(handle), &mut pid) })?;
    Ok(pid)
}

/// Process id of the server of a client handle.
pub(crate) fn server_pid(handle: &OwnedHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: valid handle; `pid` is a valid out pointer.
    check(unsafe { GetNamedPipeServerProcessId(raw(handle), &mut pid) })?;
    Ok(pid)
}

/// Disconnects a server instance from its client (unread data is discarded).
pub(crate) fn disconnect(handle: &OwnedHandle) -> io::Result<()> {
    // SAFETY: valid server handle.
    check(unsafe { DisconnectNamedPipe(raw(handle)) })
}

/// Cancels every overlapped operation on the handle, from any thread.
pub(crate) fn cancel_all(handle: &OwnedHandle) {
    cancel_all_handle(raw(handle));
}

/// [`cancel_all`] for a borrowed raw handle.
pub(crate) fn cancel_all_handle(handle: HANDLE) {
    // SAFETY: the caller passes an open handle; a null OVERLAPPED cancels all of its
    // operations.
    unsafe {
        CancelIoEx(handle, std::ptr::null());
    }
}
