//! What the operating system says about this process: resident memory and open handles.

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{describe, sample};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{describe, sample};

/// One look at this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Resident memory in bytes (Linux `VmRSS`; Windows working set).
    pub rss: u64,
    /// Committed private memory in bytes (Windows `PagefileUsage`; 0 elsewhere).
    pub private: u64,
    /// Open file descriptors (Unix) or handles (Windows).
    pub handles: u64,
}
