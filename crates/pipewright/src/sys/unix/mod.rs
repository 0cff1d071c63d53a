//! Unix: the same API over Unix domain stream sockets.

mod framing;
mod listener;
mod socket;
mod stream;

use std::io;

pub(crate) use listener::Listener;
pub(crate) use socket::Interrupt;
pub(crate) use stream::{connect_once, Stream};

use crate::error::{ErrorKind, Result};
use crate::peer::PeerUser;

/// Maps an OS error to the crate's kinds.
pub(crate) fn classify(err: &io::Error) -> ErrorKind {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => ErrorKind::NotFound,
        Some(libc::EAGAIN) => ErrorKind::Busy,
        Some(libc::EACCES) | Some(libc::EPERM) => ErrorKind::AccessDenied,
        Some(libc::EADDRINUSE) => ErrorKind::AlreadyInUse,
        Some(libc::ETIMEDOUT) => ErrorKind::TimedOut,
        Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => {
            ErrorKind::Disconnected
        }
        Some(libc::ENAMETOOLONG) => ErrorKind::InvalidName,
        _ => match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => ErrorKind::Disconnected,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Other,
        },
    }
}

pub(crate) fn is_wine() -> bool {
    false
}

pub(crate) fn wine_version() -> Option<String> {
    None
}

pub(crate) fn current_user() -> Result<PeerUser> {
    // SAFETY: getuid has no preconditions and cannot fail.
    Ok(PeerUser::Uid(unsafe { libc::getuid() }))
}

/// CPU time (user + system) the whole process has used so far, from
/// `getrusage(RUSAGE_SELF)`.
pub(crate) fn process_cpu_time() -> io::Result<std::time::Duration> {
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

/// CPU time (user + system) process `pid` has used so far, from the `utime` and
/// `stime` fields of `/proc/PID/stat` (every thread, living or ended).
#[cfg(target_os = "linux")]
pub(crate) fn process_cpu_time_of(pid: u32) -> io::Result<std::time::Duration> {
    // `/proc` counts in USER_HZ, 100 on every architecture Rust targets (only Alpha differs).
    const USER_HZ: u64 = 100;
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)?;
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: unexpected format"),
        )
    };
    // The command name (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields 14 and 15 are utime and stime; `rest` starts at field 3.
    let utime: u64 = fields
        .nth(11)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    let stime: u64 = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let ticks = utime.saturating_add(stime);
    Ok(std::time::Duration::from_secs(ticks / USER_HZ)
        + std::time::Duration::from_nanos((ticks % USER_HZ) * (1_000_000_000 / USER_HZ)))
}

/// Other Unix systems have no `/proc/PID/stat` to read.
#[cfg(not(target_os = "linux"))]
pub(crate) fn process_cpu_time_of(_pid: u32) -> io::Result<std::time::Duration> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the CPU time of another process is read from /proc/PID/stat, which only Linux has",
    ))
}
