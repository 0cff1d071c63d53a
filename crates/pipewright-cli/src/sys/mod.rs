//! The CLI's few operating-system calls. All `unsafe` code of the crate lives below here.
//!
//! ```ignore
//! sys::hide_console_window(); // -bg: a no-op where there is no console window
//! ```

#[cfg(windows)]
mod windows;

#[cfg(windows)]
pub use windows::{baseline, hide_console_window, list_pipes};

/// Raw platform I/O with no runtime and no pipewright stream in the way: the baseline that
/// `bench stream` reports its figures against, measured in the same run.
#[cfg(unix)]
#[path = "unix/baseline.rs"]
pub mod baseline;

/// An entry of the named-pipe namespace (`\\.\pipe\`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(windows), allow(dead_code))]
pub struct PipeEntry {
    /// The pipe's name, without `\\.\pipe\`.
    pub name: String,
    /// Instances that exist now (connected and waiting), when the system says.
    pub instances: Option<u32>,
    /// The most instances the pipe may have; `None` when unlimited or not reported.
    pub max_instances: Option<u32>,
}

/// Hides the console window (`-bg`). Off Windows there is none: nothing to do.
#[cfg(not(windows))]
pub fn hide_console_window() {}
