//! Windows: named pipes with the crate's own overlapped I/O on one completion port.

mod connect;
mod interrupt;
mod iocp;
mod linger;
mod listener;
mod pipe;
mod security;
mod stream;

use std::io;

pub(crate) use connect::connect_once;
pub(crate) use interrupt::Interrupt;
pub(crate) use listener::Listener;
pub(crate) use stream::Stream;

use windows_sys::Win32::Foundation::{
    ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS, ERROR_BAD_PATHNAME, ERROR_BROKEN_PIPE,
    ERROR_FILE_NOT_FOUND, ERROR_INVALID_NAME, ERROR_NOT_SUPPORTED, ERROR_NO_DATA,
    ERROR_PATH_NOT_FOUND, ERROR_PIPE_BUSY, ERROR_PIPE_NOT_CONNECTED, ERROR_SEM_TIMEOUT,
    WAIT_TIMEOUT,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};

use crate::error::{ErrorKind, Result};
use crate::peer::PeerUser;

/// Maps an OS error to the crate's kinds.
pub(crate) fn classify(err: &io::Error) -> ErrorKind {
    match err.raw_os_error().map(|c| c as u32) {
        Some(ERROR_FILE_NOT_FOUND) | Some(ERROR_PATH_NOT_FOUND) => ErrorKind::NotFound,
        Some(ERROR_PIPE_BUSY) => ErrorKind::Busy,
        Some(ERROR_ACCESS_DENIED) => ErrorKind::AccessDenied,
        Some(ERROR_ALREADY_EXISTS) => ErrorKind::AlreadyInUse,
        Some(ERROR_SEM_TIMEOUT) | Some(WAIT_TIMEOUT) => ErrorKind::TimedOut,
        Some(ERROR_BROKEN_PIPE) | Some(ERROR_PIPE_NOT_CONNECTED) | Some(ERROR_NO_DATA) => {
            ErrorKind::Disconnected
        }
        Some(ERROR_INVALID_NAME) | Some(ERROR_BAD_PATHNAME) => ErrorKind::InvalidName,
        Some(ERROR_NOT_SUPPORTED) => ErrorKind::Unsupported,
        _ => match err.kind() {
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => ErrorKind::Disconnected,
            _ => ErrorKind::Other,
        },
    }
}

type WineGetVersion = unsafe extern "C" fn() -> *const std::ffi::c_char;

fn wine_get_version() -> Option<WineGetVersion> {
    let ntdll = pipe::wide("ntdll.dll");
    // SAFETY: ntdll is always loaded; the name is NUL-terminated.
    let module = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    if module.is_null() {
        return None;
    }
    // SAFETY: valid module handle and NUL-terminated symbol name.
    let proc = unsafe { GetProcAddress(module, c"wine_get_version".as_ptr().cast()) }?;
    // SAFETY: Wine documents `const char *wine_get_version(void)`.
    Some(unsafe {
        std::mem::transmute::<unsafe extern "system" fn() -> isize, WineGetVersion>(proc)
    })
}

pub(crate) fn is_wine() -> bool {
    wine_get_version().is_some()
}

pub(crate) fn wine_version() -> Option<String> {
    let f = wine_get_version()?;
    // SAFETY: returns a static NUL-terminated string.
    let p = unsafe { f() };
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, static.
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

pub(crate) fn current_user() -> Result<PeerUser> {
    security::current_user_sid()
        .map(PeerUser::Sid)
        .map_err(crate::Error::from)
}

/// CPU time (user + kernel) the whole process has used so far, from
/// `GetProcessTimes`.
pub(crate) fn process_cpu_time() -> io::Result<std::time::Duration> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, GetProcessTimes};
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no
    // closing; the four pointers are distinct writable FILETIMEs alive for
    // the call.
    let ok = unsafe {
        GetProcessTimes(
            GetCurrentProcess(),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // FILETIME counts 100 ns units.
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Ok(std::time::Duration::from_nanos(
        (ticks(kernel) + ticks(user)).saturating_mul(100),
    ))
}

/// CPU time (user + kernel) process `pid` has used so far, from `OpenProcess`
/// (query-limited access) and `GetProcessTimes`.
pub(crate) fn process_cpu_time_of(pid: u32) -> io::Result<std::time::Duration> {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: OpenProcess takes plain values; a null result is checked below.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    if pid != std::process::id() && is_wine() {
        // SAFETY: `process` is ours, closed exactly once and not used afterwards.
        unsafe { CloseHandle(process) };
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Wine reports the calling process's own CPU time for every process handle, so \
             another process's cannot be read under Wine",
        ));
    }
    // SAFETY: `process` is a live handle we own; the four pointers are distinct writable
    // FILETIMEs alive for the call.
    let ok = unsafe { GetProcessTimes(process, &mut created, &mut exited, &mut kernel, &mut user) };
    let error = io::Error::last_os_error();
    // SAFETY: `process` is ours, closed exactly once and not used afterwards.
    unsafe { CloseHandle(process) };
    if ok == 0 {
        return Err(error);
    }
    // FILETIME counts 100 ns units.
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Ok(std::time::Duration::from_nanos(
        (ticks(kernel) + ticks(user)).saturating_mul(100),
    ))
}
