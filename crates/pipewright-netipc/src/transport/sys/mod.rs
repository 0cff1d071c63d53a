//! Platform code of the transports: the only place in this crate with
//! `unsafe`.

#[cfg(target_os = "linux")]
mod unix;
#[cfg(target_os = "linux")]
pub(crate) use unix::*;
