//! POSIX shared memory (Linux), profiles 0x02 SHM_HYBRID and 0x04 SHM_FUTEX,
//! one region file per session `{run_dir}/{service}-{session_id:016x}.ipcshm`
//! (see [`naming::posix_shm_path`]). The region itself (header, futex waits,
//! stale-file cleanup) is [`pipewright_shm::posix`]; this module names it.
//!
//! ```no_run
//! use pipewright_netipc::shm::{platform, RegionParams, ShmPeer};
//! use std::time::Duration;
//! let params = RegionParams {
//!     run_dir: "/tmp".into(), service: "demo".into(), session_id: 1, auth_token: 0,
//!     max_request_payload: 1024, max_response_payload: 1024,
//! };
//! let regions = platform::ServerRegions::create(&params, platform::SUPPORTED_PROFILES).unwrap();
//! let mut server = regions.select(0x04).unwrap();
//! let mut client = platform::attach_client(&params, 0x04, Duration::from_secs(5)).unwrap();
//! client.send(&[1u8; 40]).unwrap();
//! let mut buf = Vec::new();
//! server.receive(&mut buf, Duration::from_secs(1)).unwrap();
//! assert_eq!(buf, [1u8; 40]);
//! ```

use super::{invalid_input, RegionParams, ShmError, ShmPeer};
use crate::wire::naming;
use pipewright_shm::posix;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pipewright_shm::posix::{
    reclaim_stale, PosixPeer, ATTACH_RETRY_INTERVAL, SPIN_TRIES, SPIN_WINDOW, SUPPORTED_PROFILES,
};

fn region_path(params: &RegionParams) -> Result<PathBuf, ShmError> {
    naming::posix_shm_path(
        Path::new(&params.run_dir),
        &params.service,
        params.session_id,
    )
    .map_err(invalid_input)
}

/// Startup scan: removes every `{service}-{16 hex digits}.ipcshm` in
/// `run_dir` whose owner is gone; returns how many were removed. Files of
/// live servers are kept.
///
/// ```no_run
/// let removed = pipewright_netipc::shm::platform::remove_stale_regions("/run/netdata", "cgroups-snapshot").unwrap();
/// println!("{removed} stale regions removed");
/// ```
pub fn remove_stale_regions(run_dir: &str, service: &str) -> Result<usize, ShmError> {
    naming::validate_service_name(service).map_err(invalid_input)?;
    posix::remove_stale_regions(Path::new(run_dir), service)
}

/// The regions a server created for one session before its handshake: on
/// POSIX one file serves both 0x02 and 0x04.
#[derive(Debug)]
pub struct ServerRegions(posix::ServerRegions);

impl ServerRegions {
    /// Creates the session's region file for the SHM bits in `shm_profiles`
    /// that this platform serves (nothing when there are none), sized by the
    /// server's limits.
    pub fn create(params: &RegionParams, shm_profiles: u32) -> Result<ServerRegions, ShmError> {
        if shm_profiles & SUPPORTED_PROFILES == 0 {
            // Nothing is created, so no name is needed (or checked).
            return posix::ServerRegions::create(Path::new(""), &params.limits(), 0)
                .map(ServerRegions);
        }
        let path = region_path(params)?;
        posix::ServerRegions::create(&path, &params.limits(), shm_profiles).map(ServerRegions)
    }

    /// The SHM profile bits a handshake may select.
    pub fn profiles(&self) -> u32 {
        self.0.profiles()
    }

    /// Keeps the region for the selected profile as the server's peer; `None`
    /// (and the file removed) when `profile` is not available.
    pub fn select(self, profile: u32) -> Option<Box<dyn ShmPeer>> {
        self.0.select(profile)
    }
}

/// Opens the server's region for `profile` (0x02 or 0x04), retrying every
/// [`ATTACH_RETRY_INTERVAL`] while it is missing, shorter than its header or
/// has a foreign magic, for up to `timeout`. A malformed header fails at
/// once, and so do areas larger than the negotiated limits in `params`
/// ([`ShmError::AreaOverLimit`], checked before mapping).
pub fn attach_client(
    params: &RegionParams,
    profile: u32,
    timeout: Duration,
) -> Result<Box<dyn ShmPeer>, ShmError> {
    if profile & SUPPORTED_PROFILES == 0 || profile.count_ones() != 1 {
        // The region's own check, before a name is built.
        return posix::attach_client(Path::new(""), &params.limits(), profile, timeout);
    }
    let path = region_path(params)?;
    posix::attach_client(&path, &params.limits(), profile, timeout)
}
