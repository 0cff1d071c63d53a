//! Platform code: one module per platform, the only place with `unsafe`.
//!
//! Each platform provides the same items: `Stream`, `Listener`, `connect_once`, `classify`,
//! `is_wine`, `wine_version`, `current_user`, `process_cpu_time` and `process_cpu_time_of`.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
