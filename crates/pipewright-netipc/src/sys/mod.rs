//! Thin wrappers over system calls that have no safe equivalent in the
//! dependencies, one module per platform. All `unsafe` code of the crate
//! lives under this folder.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub(crate) use windows::*;
