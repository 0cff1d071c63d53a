#![doc = include_str!("../README.md")]
//!
//! Shared-memory regions for local request/response traffic: one region per
//! session with a request area and a response area, each carrying one
//! complete message at a time, on Linux (a file mapped shared, futex waits)
//! and on Windows (a pagefile-backed section, kernel events or polling).
//!
//! The API is safe and small; every `unsafe` block lives under `sys/`.
//! - Create: the server creates a region (`posix::ServerRegions::create`,
//!   `windows::ServerRegions::create`) and keeps the profile a handshake
//!   selected (`select`), which yields its side as a [`ShmPeer`].
//! - Attach: the client opens it (`posix::attach_client`,
//!   `windows::attach_client`), retrying while it is not ready yet, and
//!   checks its header and its areas against the agreed [`AreaLimits`]
//!   before mapping them.
//! - Publish and receive: [`ShmPeer::send`] publishes one message and never
//!   blocks on the peer; [`ShmPeer::receive`] spins briefly, then waits in
//!   the OS up to a timeout ([`ShmError::TimedOut`] leaves the region
//!   usable); [`ShmPeer::receive_until`] waits until a deadline.
//! - Peer closed: on Windows a side that drops its peer marks the region
//!   closed and the other side's calls end with [`ShmError::PeerClosed`].
//! - Stale regions: `posix::remove_stale_regions` and
//!   `posix::reclaim_stale` remove the files of servers that are gone.
//!
//! The header formats ([`layout`], [`windows_layout`]) are pure codecs that
//! build on every platform. The feature `fuzzing` adds `fuzzing`: the
//! Windows region's reader over a heap buffer, fuzzed on every platform.
//!
//! ```
//! use pipewright_shm::layout::RegionLayout;
//! let l = RegionLayout::for_limits(4096, 65536).unwrap();
//! assert_eq!(l.file_size(), 69824);
//! ```
#![warn(missing_docs)]

mod bytes;
#[cfg(any(feature = "fuzzing", test))]
pub mod fuzzing;
pub mod layout;
#[cfg(target_os = "linux")]
pub mod posix;
#[cfg(any(target_os = "linux", windows))]
mod sys;
#[cfg(windows)]
pub mod windows;
#[cfg(any(windows, feature = "fuzzing", test))]
mod windows_core;
pub mod windows_layout;

use layout::RegionLayout;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The payload limits a region is sized by (server) or checked against
/// (client): the largest request and response payloads, each message
/// carrying a 32-byte header besides.
///
/// ```
/// let limits = pipewright_shm::AreaLimits { max_request_payload: 4096, max_response_payload: 65536 };
/// assert!(limits.max_request_payload < limits.max_response_payload);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaLimits {
    /// The largest request payload; the request area holds
    /// `32 + max_request_payload` bytes (rounded up to 64).
    pub max_request_payload: u32,
    /// The largest response payload.
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
pub fn regions_created() -> u64 {
    REGIONS_CREATED.load(Ordering::Relaxed)
}

#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
pub(crate) fn count_created_region() {
    REGIONS_CREATED.fetch_add(1, Ordering::Relaxed);
}

/// The largest area the limits of `params` allow: `align64(32 + limit)`.
fn area_limit(payload_limit: u32) -> u64 {
    (32 + u64::from(payload_limit)).div_ceil(64) * 64
}

/// Checks a server's region against the limits the handshake agreed on
/// (`params`, the negotiated request and response payload limits):
/// the response area may hold at most `32 + max_response_payload` bytes and
/// the request area at most `32 + max(max_request_payload,`
/// [`REQUEST_AREA_ALLOWANCE`]`)`, both rounded up to 64. A larger area is a
/// protocol violation ([`ShmError::AreaOverLimit`]), checked before the
/// areas are mapped.
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
pub(crate) fn check_capacities(
    name: &str,
    layout: &RegionLayout,
    params: &AreaLimits,
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
    /// [`receive`](Self::receive) with a deadline instead of a timeout: a
    /// deadline already passed still takes a message that is there.
    fn receive_until(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<(), ShmError> {
        self.receive(buf, deadline.saturating_duration_since(Instant::now()))
    }
}
