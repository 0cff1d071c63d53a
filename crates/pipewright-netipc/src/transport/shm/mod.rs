//! Shared-memory profiles: a per-session region with one request area and
//! one response area, each carrying one complete message (32-byte header +
//! payload, never chunked) at a time. The baseline connection stays open for
//! the session's lifetime and is used for liveness only.
//!
//! The regions themselves (mappings, waits, stale-region cleanup) are the
//! `pipewright-shm` crate's; this module names them after the session
//! (`RegionParams`: run directory, service, session id, auth token) and
//! hands the session layer a [`ShmPeer`]. Every platform module provides the
//! same entry points, so the session layer is platform-neutral:
//! - `ServerRegions::create(&RegionParams, shm_profiles) -> Result<ServerRegions, ShmError>`
//!   creates the objects for each SHM profile bit in `shm_profiles` (before
//!   the handshake), and `ServerRegions::select(profile) -> Option<Box<dyn ShmPeer>>`
//!   keeps the one the handshake selected and releases the others;
//! - `attach_client(&RegionParams, profile, timeout) -> Result<Box<dyn ShmPeer>, ShmError>`
//!   opens the server's region, retrying while it is not ready yet;
//! - `remove_stale_regions(run_dir, service) -> Result<usize, ShmError>`, the
//!   startup scan a server runs at bind (`Ok(0)` on Windows, where kernel
//!   objects die with their handles).
//!
//! ```
//! use pipewright_netipc::shm::RegionParams;
//! let p = RegionParams {
//!     run_dir: "/run/netdata".into(),
//!     service: "cgroups-snapshot".into(),
//!     session_id: 1,
//!     auth_token: 0,
//!     max_request_payload: 4096,
//!     max_response_payload: 65536,
//! };
//! assert_eq!(p.session_id, 1);
//! ```

use std::io;

pub use pipewright_shm::{regions_created, AreaLimits, ShmError, ShmPeer, REQUEST_AREA_ALLOWANCE};

pub(crate) mod link;
#[cfg(target_os = "linux")]
pub mod posix;
#[cfg(target_os = "linux")]
pub use posix as platform;
#[cfg(not(any(target_os = "linux", windows)))]
pub mod unsupported;
#[cfg(not(any(target_os = "linux", windows)))]
pub use unsupported as platform;

#[cfg(windows)]
pub mod windows;
pub use pipewright_shm::windows_layout;
#[cfg(windows)]
pub use windows as platform;

/// What identifies and sizes one session's region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionParams {
    /// The run directory, byte-exact as given by the user (part of the names).
    pub run_dir: String,
    /// The validated service name.
    pub service: String,
    /// The session id the server assigned (from 1).
    pub session_id: u64,
    /// The auth token (part of the Windows object names).
    pub auth_token: u64,
    /// The server's configured/learned request payload limit; the request
    /// area holds `32 + max_request_payload` bytes (rounded up to 64).
    pub max_request_payload: u32,
    /// The server's configured/learned response payload limit.
    pub max_response_payload: u32,
}

impl RegionParams {
    /// The payload limits the region is sized by (server) or checked
    /// against (client).
    pub fn limits(&self) -> AreaLimits {
        AreaLimits {
            max_request_payload: self.max_request_payload,
            max_response_payload: self.max_response_payload,
        }
    }
}

/// A naming error as the shared-memory layer reports it.
fn invalid_input(e: impl ToString) -> ShmError {
    ShmError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}
