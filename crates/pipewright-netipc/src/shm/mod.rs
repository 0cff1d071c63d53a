// CONTRACT CHANGE: every platform module also provides
//   `pub fn remove_stale_regions(run_dir: &str, service: &str) -> Result<usize, ShmError>`
// (the startup scan a server runs at bind; returns how many stale objects it
// removed). On Windows kernel objects die with their handles, so it is
// `Ok(0)`. The session layer calls it through `crate::shm::platform`.
//! Shared-memory profiles: a per-session region with one request area and
//! one response area, each carrying one complete message (32-byte header +
//! payload, never chunked) at a time. The baseline connection stays open for
//! the session's lifetime and is used for liveness only.
//!
//! Every platform module provides the same two entry points, so the session
//! layer is platform-neutral:
//! - `ServerRegions::create(&RegionParams, shm_profiles) -> Result<ServerRegions, ShmError>`
//!   creates the objects for each SHM profile bit in `shm_profiles` (before
//!   the handshake), and `ServerRegions::select(profile) -> Option<Box<dyn ShmPeer>>`
//!   keeps the one the handshake selected and releases the others;
//! - `attach_client(&RegionParams, profile, timeout) -> Result<Box<dyn ShmPeer>, ShmError>`
//!   opens the server's region, retrying while it is not ready yet.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
#[cfg(windows)]
pub use windows as platform;
pub mod windows_layout;

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

/// Why a shared-memory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A system call failed.
    #[error("shared memory: {0}")]
    Io(#[from] io::Error),
    /// The region does not exist yet or is not initialised yet (retryable).
    #[error("shared-memory region {0} is not ready yet")]
    NotReady(String),
    /// The region exists but its header is not a valid netipc region.
    #[error("shared-memory region {name} is invalid: {reason}")]
    BadRegion {
        /// Object or file name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Another live server owns the region name.
    #[error("shared-memory region {0} is in use by a live server")]
    InUse(String),
    /// A message does not fit the area (sender side: nothing was published;
    /// receiver side: the message was consumed).
    #[error("message of {len} bytes does not fit the shared-memory area of {capacity} bytes")]
    TooLarge {
        /// Message length including the 32-byte header.
        len: usize,
        /// Area capacity.
        capacity: usize,
    },
    /// The region's counters are inconsistent.
    #[error("shared-memory region corrupted: {0}")]
    Corrupt(&'static str),
    /// Nothing arrived within the timeout.
    #[error("no shared-memory message within {0:?}")]
    TimedOut(Duration),
    /// Protocol violation: the server's region has an area larger than the
    /// negotiated limits allow (a hostile or broken server); nothing was
    /// mapped beyond the header.
    #[error("protocol error: shared-memory region {name} has {field} {value}, more than the {limit} bytes the handshake allows ({rule}); refusing to map it")]
    AreaOverLimit {
        /// Object or file name.
        name: String,
        /// The header field (`request_capacity` or `response_capacity`).
        field: &'static str,
        /// Its value.
        value: u32,
        /// The largest value the negotiated limits allow.
        limit: u64,
        /// How the limit is derived.
        rule: String,
    },
    /// The peer marked the region closed (Windows) or its process is gone.
    #[error("the peer closed the shared-memory session")]
    PeerClosed,
}

/// How large a request area a client accepts beyond its negotiated request
/// limit: upstream servers size the request area from their own configured
/// limit, which may exceed the client's proposal, and upstream's payload
/// ceiling is 1 MiB (`NIPC_MAX_PAYLOAD_CAP`).
pub const REQUEST_AREA_ALLOWANCE: u32 = 1 << 20;

static REGIONS_CREATED: AtomicU64 = AtomicU64::new(0);

/// How many server regions this process has created so far (one per
/// session and profile): the server's own accounting, used by tests to show
/// that refused handshakes allocate nothing.
#[doc(hidden)]
pub fn regions_created() -> u64 {
    REGIONS_CREATED.load(Ordering::Relaxed)
}

pub(crate) fn count_created_region() {
    REGIONS_CREATED.fetch_add(1, Ordering::Relaxed);
}

/// The largest area the limits of `params` allow: `align64(32 + limit)`.
fn area_limit(payload_limit: u32) -> u64 {
    (32 + u64::from(payload_limit)).div_ceil(64) * 64
}

/// Checks a server's region against the limits the handshake agreed on
/// (`params` carries the negotiated request and response payload limits):
/// the response area may hold at most `32 + max_response_payload` bytes and
/// the request area at most `32 + max(max_request_payload,`
/// [`REQUEST_AREA_ALLOWANCE`]`)`, both rounded up to 64. A larger area is a
/// protocol violation ([`ShmError::AreaOverLimit`]), checked before the
/// areas are mapped.
pub(crate) fn check_capacities(
    name: &str,
    layout: &crate::shm_layout::RegionLayout,
    params: &RegionParams,
) -> Result<(), ShmError> {
    let checks = [
        (
            "request_capacity",
            layout.request_capacity,
            area_limit(params.max_request_payload.max(REQUEST_AREA_ALLOWANCE)),
            "max(agreed max_request_payload_bytes, 1 MiB)",
            params.max_request_payload,
        ),
        (
            "response_capacity",
            layout.response_capacity,
            area_limit(params.max_response_payload),
            "agreed max_response_payload_bytes",
            params.max_response_payload,
        ),
    ];
    for (field, value, limit, rule, agreed) in checks {
        if u64::from(value) > limit {
            return Err(ShmError::AreaOverLimit {
                name: name.to_owned(),
                field,
                value,
                limit,
                rule: format!("32 + {rule} ({agreed}), rounded up to 64"),
            });
        }
    }
    Ok(())
}

/// One side of a session's region: publishes into its outgoing area and
/// receives from the incoming one. Exactly one message is in flight per
/// direction. Calls block the calling thread (spin, then an OS wait).
pub trait ShmPeer: Send {
    /// The SHM profile bit this region runs.
    fn profile(&self) -> u32;
    /// The largest message (header + payload) this side may send.
    fn send_capacity(&self) -> usize;
    /// The largest message this side may receive.
    fn receive_capacity(&self) -> usize;
    /// Publishes one complete message (32-byte header + payload).
    fn send(&mut self, message: &[u8]) -> Result<(), ShmError>;
    /// Waits up to `timeout` for the peer's next message and copies it into
    /// `buf` (cleared first). [`ShmError::TimedOut`] leaves the region usable.
    fn receive(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), ShmError>;
}
