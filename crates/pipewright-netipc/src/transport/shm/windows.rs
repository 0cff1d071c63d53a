//! Windows shared-memory profiles 0x02 (SHM_HYBRID: spin, then auto-reset
//! kernel events) and 0x04 (SHM_BUSYWAIT: spin, then polls with short
//! sleeps while idle).
//!
//! Per session and profile the server creates a pagefile-backed mapping
//! `Local\netipc-{h}-{service}-p{profile}-s{session}-mapping` holding the
//! 128-byte "NSWH" header and the two areas, plus (HYBRID) the events
//! `...-req_event` and `...-resp_event` (see [`windows_shm_names`]). The
//! region itself is [`pipewright_shm::windows`]; this module names it.
//! Dropping a peer marks the region closed, so the other side's receive ends
//! with [`ShmError::PeerClosed`].
//!
//! ```no_run
//! use std::time::Duration;
//! use pipewright_netipc::shm::{RegionParams, windows};
//! let params = RegionParams {
//!     run_dir: r"C:\netipc-run".into(),
//!     service: "svc".into(),
//!     session_id: 1,
//!     auth_token: 7,
//!     max_request_payload: 1024,
//!     max_response_payload: 1024,
//! };
//! let regions = windows::ServerRegions::create(&params, windows::SUPPORTED_PROFILES)?;
//! let mut server = regions.select(0x02).expect("created above");
//! let mut client = windows::attach_client(&params, 0x02, Duration::from_secs(5))?;
//! client.send(&[1u8; 40])?;
//! let mut buf = Vec::new();
//! server.receive(&mut buf, Duration::from_secs(1))?;
//! assert_eq!(buf, [1u8; 40]);
//! # Ok::<(), pipewright_netipc::shm::ShmError>(())
//! ```

use super::{invalid_input, RegionParams, ShmError, ShmPeer};
use crate::wire::naming::windows_shm_names;
use pipewright_shm::windows::{self as region, RegionNames};
use std::time::Duration;

pub use pipewright_shm::windows::{test_support, SUPPORTED_PROFILES};

fn names(params: &RegionParams, profile: u32) -> Result<RegionNames, ShmError> {
    let n = windows_shm_names(
        &params.run_dir,
        &params.service,
        params.auth_token,
        profile,
        params.session_id,
    )
    .map_err(invalid_input)?;
    Ok(RegionNames {
        mapping: n.mapping,
        request_event: n.request_event,
        response_event: n.response_event,
    })
}

/// The shared-memory objects a server created for one session, one set per
/// SHM profile, before the handshake.
///
/// ```no_run
/// use pipewright_netipc::shm::{RegionParams, ShmPeer, windows::ServerRegions};
/// # let params = RegionParams { run_dir: "r".into(), service: "s".into(), session_id: 1,
/// #     auth_token: 0, max_request_payload: 64, max_response_payload: 64 };
/// let regions = ServerRegions::create(&params, 0x02 | 0x04)?;
/// assert_eq!(regions.profiles(), 0x06);
/// let peer = regions.select(0x04).unwrap(); // the 0x02 set is closed
/// assert_eq!(peer.profile(), 0x04);
/// # Ok::<(), pipewright_netipc::shm::ShmError>(())
/// ```
#[derive(Debug)]
pub struct ServerRegions(region::ServerRegions);

impl ServerRegions {
    /// Creates the mapping (and, for HYBRID, the two events) for each bit of
    /// `shm_profiles` that Windows supports (0x02, 0x04; other bits are
    /// ignored), sized from the server's payload limits. An object name that
    /// already exists fails with [`ShmError::InUse`].
    pub fn create(params: &RegionParams, shm_profiles: u32) -> Result<ServerRegions, ShmError> {
        let mut sets = Vec::new();
        for profile in [0x02, 0x04] {
            if shm_profiles & profile != 0 {
                sets.push((profile, names(params, profile)?));
            }
        }
        region::ServerRegions::create(&sets, &params.limits()).map(ServerRegions)
    }

    /// The profile bits whose objects exist.
    pub fn profiles(&self) -> u32 {
        self.0.profiles()
    }

    /// Keeps the region of `profile` as the server's peer and closes the
    /// others; `None` when no region of that profile was created.
    pub fn select(self, profile: u32) -> Option<Box<dyn ShmPeer>> {
        self.0.select(profile)
    }
}

/// Opens the server's region for `profile` (the handshake's selected
/// profile), retrying every 5 ms while the objects do not exist yet, for up
/// to `timeout`; validation failures (version, layout, profile mismatch,
/// areas over the negotiated limits in `params`) fail at once.
///
/// ```no_run
/// use std::time::Duration;
/// use pipewright_netipc::shm::{RegionParams, ShmPeer, windows::attach_client};
/// # let params = RegionParams { run_dir: "r".into(), service: "s".into(), session_id: 1,
/// #     auth_token: 0, max_request_payload: 64, max_response_payload: 64 };
/// let peer = attach_client(&params, 0x02, Duration::from_secs(5))?;
/// assert!(peer.send_capacity() >= 32 + 64);
/// # Ok::<(), pipewright_netipc::shm::ShmError>(())
/// ```
pub fn attach_client(
    params: &RegionParams,
    profile: u32,
    timeout: Duration,
) -> Result<Box<dyn ShmPeer>, ShmError> {
    if profile.count_ones() != 1 || profile & SUPPORTED_PROFILES == 0 {
        // The region's own check (and error), before a name is built.
        let none = RegionNames {
            mapping: String::new(),
            request_event: String::new(),
            response_event: String::new(),
        };
        return region::attach_client(&none, &params.limits(), profile, timeout);
    }
    region::attach_client(&names(params, profile)?, &params.limits(), profile, timeout)
}

/// The startup scan a server runs at bind. Windows kernel objects die with
/// their last handle, so nothing stale can remain: this only validates the
/// service name and returns `Ok(0)`.
///
/// ```
/// assert_eq!(pipewright_netipc::shm::windows::remove_stale_regions(r"C:\run", "svc").unwrap(), 0);
/// ```
pub fn remove_stale_regions(_run_dir: &str, service: &str) -> Result<usize, ShmError> {
    crate::wire::naming::validate_service_name(service).map_err(invalid_input)?;
    Ok(0)
}
