//! Platforms without a netipc shared-memory transport: no SHM profile is
//! offered, so handshakes always select the baseline.
//!
//! ```
//! # #[cfg(not(any(target_os = "linux", windows)))]
//! assert_eq!(pipewright_netipc::shm::platform::SUPPORTED_PROFILES, 0);
//! ```

use super::{RegionParams, ShmError, ShmPeer};
use std::io;
use std::time::Duration;

/// No SHM profile is served here.
pub const SUPPORTED_PROFILES: u32 = 0;

/// Never holds a region.
#[derive(Debug)]
pub struct ServerRegions;

impl ServerRegions {
    /// Creates nothing.
    pub fn create(_params: &RegionParams, _shm_profiles: u32) -> Result<ServerRegions, ShmError> {
        Ok(ServerRegions)
    }

    /// No profile is available.
    pub fn profiles(&self) -> u32 {
        0
    }

    /// Always `None`.
    pub fn select(self, _profile: u32) -> Option<Box<dyn ShmPeer>> {
        None
    }
}

/// Always fails: this platform has no shared-memory transport.
pub fn attach_client(
    _params: &RegionParams,
    profile: u32,
    _timeout: Duration,
) -> Result<Box<dyn ShmPeer>, ShmError> {
    Err(ShmError::Io(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("shared-memory profile {profile:#x} is not available on this platform"),
    )))
}

/// Nothing to remove.
pub fn remove_stale_regions(_run_dir: &str, _service: &str) -> Result<usize, ShmError> {
    Ok(0)
}
