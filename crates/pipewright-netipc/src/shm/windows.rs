//! Windows shared-memory profiles 0x02 (SHM_HYBRID: spin, then auto-reset
//! kernel events) and 0x04 (SHM_BUSYWAIT: spin, yielding every 1024 polls,
//! for 2 ms; then short sleeps of up to 1 ms between polls while idle).
//!
//! Per session and profile the server creates a pagefile-backed mapping
//! `Local\netipc-{h}-{service}-p{profile}-s{session}-mapping` holding the
//! 128-byte "NSWH" header and the two areas, plus (HYBRID) the events
//! `...-req_event` and `...-resp_event`. A message is published by copying
//! it into the area, exchanging its length, incrementing the sequence
//! counter and, for HYBRID, signalling the peer's event when the peer has
//! announced that it sleeps. Dropping a peer sets its closed flag and
//! signals, so the other side's receive ends with [`ShmError::PeerClosed`].
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

use std::fmt;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use super::windows_layout::{
    layout_for_limits, offset, WinShmHeaderError, WindowsShmHeader, DEFAULT_SPIN_TRIES,
    PROFILE_BUSYWAIT, PROFILE_HYBRID, WIN_SHM_HEADER_LEN, WIN_SHM_MAGIC,
};
use super::{RegionParams, ShmError, ShmPeer};
use crate::naming::{windows_shm_names, WindowsShmNames};
use crate::shm_layout::RegionLayout;
use pipewright::os::{self as sys, Created};

/// The SHM profiles this platform implements: 0x02 HYBRID and 0x04 BUSYWAIT.
///
/// ```
/// assert_eq!(pipewright_netipc::shm::windows::SUPPORTED_PROFILES, 0x06);
/// ```
pub const SUPPORTED_PROFILES: u32 = PROFILE_HYBRID | PROFILE_BUSYWAIT;

/// Client attach retry interval.
const ATTACH_RETRY_INTERVAL: Duration = Duration::from_millis(5);
/// Upper bound on a header's `spin_tries` (a peer cannot make us spin for
/// seconds before the first timeout check).
const MAX_SPIN_TRIES: u32 = 1 << 20;
/// BUSYWAIT yields the thread (and checks the deadline) every 1024 polls.
const BUSYWAIT_POLL_MASK: u32 = 1023;
/// How long a BUSYWAIT receive polls without sleeping. A peer that is
/// talking answers well within it; an idle session then backs off.
const BUSYWAIT_SPIN_WINDOW: Duration = Duration::from_millis(2);
/// The longest sleep between two BUSYWAIT polls once the session is idle
/// (the sleeps grow from [`BUSYWAIT_FIRST_SLEEP`] to this).
const BUSYWAIT_MAX_SLEEP: Duration = Duration::from_millis(1);
/// The first sleep of an idle BUSYWAIT receive.
const BUSYWAIT_FIRST_SLEEP: Duration = Duration::from_micros(50);

/// The shared-memory objects a server created for one session, one set per
/// SHM profile, before the handshake.
///
/// ```no_run
/// use pipewright_netipc::shm::{RegionParams, windows::ServerRegions};
/// # let params = RegionParams { run_dir: "r".into(), service: "s".into(), session_id: 1,
/// #     auth_token: 0, max_request_payload: 64, max_response_payload: 64 };
/// let regions = ServerRegions::create(&params, 0x02 | 0x04)?;
/// assert_eq!(regions.profiles(), 0x06);
/// let peer = regions.select(0x04).unwrap(); // the 0x02 set is closed
/// assert_eq!(peer.profile(), 0x04);
/// # Ok::<(), pipewright_netipc::shm::ShmError>(())
/// ```
pub struct ServerRegions {
    regions: Vec<Region>,
}

impl fmt::Debug for ServerRegions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerRegions")
            .field("profiles", &format_args!("{:#x}", self.profiles()))
            .finish()
    }
}

impl ServerRegions {
    /// Creates the mapping (and, for HYBRID, the two events) for each bit of
    /// `shm_profiles` that Windows supports (0x02, 0x04; other bits are
    /// ignored), sized from the server's payload limits. An object name that
    /// already exists fails with [`ShmError::InUse`].
    pub fn create(params: &RegionParams, shm_profiles: u32) -> Result<ServerRegions, ShmError> {
        let layout = layout_for_limits(params.max_request_payload, params.max_response_payload)
            .ok_or_else(|| ShmError::BadRegion {
                name: params.service.clone(),
                reason: format!(
                    "payload limits {} / {} make the region larger than 4 GiB; lower them",
                    params.max_request_payload, params.max_response_payload
                ),
            })?;
        let mut regions = Vec::new();
        for profile in [PROFILE_HYBRID, PROFILE_BUSYWAIT] {
            if shm_profiles & profile != 0 {
                regions.push(Region::create(params, profile, layout)?);
            }
        }
        Ok(ServerRegions { regions })
    }

    /// The profile bits whose objects exist.
    pub fn profiles(&self) -> u32 {
        self.regions.iter().fold(0, |acc, r| acc | r.profile)
    }

    /// Keeps the region of `profile` as the server's peer and closes the
    /// others; `None` when no region of that profile was created.
    pub fn select(self, profile: u32) -> Option<Box<dyn ShmPeer>> {
        let region = self.regions.into_iter().find(|r| r.profile == profile)?;
        Some(Box::new(region))
    }
}

/// Opens the server's region for `profile` (the handshake's selected
/// profile), retrying every 5 ms while the objects do not exist yet, the
/// header is not written yet or its magic is wrong, for up to `timeout`;
/// then the last such error is returned. Other validation failures
/// (version, layout, profile mismatch) fail at once.
///
/// The client starts from the response counter it finds at attach, so it
/// receives the responses published after it attached; as in every netipc
/// session, the client speaks first.
///
/// ```no_run
/// use std::time::Duration;
/// use pipewright_netipc::shm::{RegionParams, windows::attach_client};
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
        return Err(ShmError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "profile {profile:#x} is not a Windows shared-memory profile; \
                 use 0x02 (SHM_HYBRID) or 0x04 (SHM_BUSYWAIT)"
            ),
        )));
    }
    let names = names(params, profile)?;
    let deadline = Instant::now().checked_add(timeout);
    loop {
        match Region::attach(&names, profile, params) {
            Ok(region) => return Ok(Box::new(region)),
            Err(Attach::Fatal(e)) => return Err(e),
            Err(Attach::Retry(e)) => {
                let remaining = match deadline {
                    Some(d) => d.saturating_duration_since(Instant::now()),
                    None => ATTACH_RETRY_INTERVAL,
                };
                if remaining.is_zero() {
                    return Err(e);
                }
                std::thread::sleep(remaining.min(ATTACH_RETRY_INTERVAL));
            }
        }
    }
}

/// The startup scan a server runs at bind. Windows kernel objects die with
/// their last handle, so nothing stale can remain: this only validates the
/// service name and returns `Ok(0)`.
///
/// ```
/// assert_eq!(pipewright_netipc::shm::windows::remove_stale_regions(r"C:\run", "svc").unwrap(), 0);
/// ```
pub fn remove_stale_regions(_run_dir: &str, service: &str) -> Result<usize, ShmError> {
    crate::naming::validate_service_name(service)
        .map_err(|e| ShmError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    Ok(0)
}

fn names(params: &RegionParams, profile: u32) -> Result<WindowsShmNames, ShmError> {
    windows_shm_names(
        &params.run_dir,
        &params.service,
        params.auth_token,
        profile,
        params.session_id,
    )
    .map_err(|e| ShmError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Server,
    Client,
}

/// Which header words and area one side uses in one direction.
struct Lane {
    area_offset: usize,
    capacity: usize,
    len: usize,
    seq: usize,
}

enum Attach {
    Retry(ShmError),
    Fatal(ShmError),
}

/// The HYBRID events: the server waits on `request`, the client on
/// `response`.
struct Events {
    request: sys::Event,
    response: sys::Event,
}

/// One side of one profile's region.
struct Region {
    role: Role,
    profile: u32,
    name: String,
    view: sys::View,
    _mapping: OwnedHandle,
    events: Option<Events>,
    layout: RegionLayout,
    spin_tries: u32,
    /// Sequence number of the last message received.
    local_seq: i64,
}

impl Region {
    fn create(
        params: &RegionParams,
        profile: u32,
        layout: RegionLayout,
    ) -> Result<Region, ShmError> {
        let names = names(params, profile)?;
        let size = layout.file_size();
        let mapping = match sys::create_mapping(&names.mapping, size)? {
            Created::New(h) => h,
            Created::AlreadyExists => return Err(ShmError::InUse(names.mapping)),
        };
        let events = if profile == PROFILE_HYBRID {
            Some(Events {
                request: create_event(&names.request_event)?,
                response: create_event(&names.response_event)?,
            })
        } else {
            None
        };
        let view = sys::View::map(&mapping)?;
        if (view.len() as u64) < size {
            return Err(ShmError::BadRegion {
                name: names.mapping,
                reason: format!("mapped {} bytes, asked for {size}", view.len()),
            });
        }
        // A new pagefile-backed section is zero-filled. Write the header with
        // the magic last, so a client never sees a valid magic before the
        // rest of the header.
        let header = WindowsShmHeader::new(profile, layout).encode();
        if !view.write(4, &header[4..]) {
            return Err(ShmError::Corrupt("the header does not fit the mapping"));
        }
        view.u32_at(0).store(WIN_SHM_MAGIC, Ordering::SeqCst);
        super::count_created_region();
        Ok(Region {
            role: Role::Server,
            profile,
            name: names.mapping,
            view,
            _mapping: mapping,
            events,
            layout,
            spin_tries: DEFAULT_SPIN_TRIES,
            local_seq: 0,
        })
    }

    /// Opens the region: maps the header only, checks it (including the
    /// capacities against the negotiated limits in `params`), then maps just
    /// the header and the areas, all committed.
    fn attach(
        names: &WindowsShmNames,
        profile: u32,
        params: &RegionParams,
    ) -> Result<Region, Attach> {
        let bad = |reason: String| ShmError::BadRegion {
            name: names.mapping.clone(),
            reason,
        };
        let mapping = match sys::open_mapping(&names.mapping) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Attach::Retry(ShmError::NotReady(names.mapping.clone())))
            }
            Err(e) => return Err(Attach::Retry(ShmError::Io(e))),
        };
        let view = match sys::View::map_len(&mapping, WIN_SHM_HEADER_LEN) {
            Ok(v) => v,
            // A section smaller than the header cannot be mapped that long.
            Err(_) => sys::View::map(&mapping).map_err(|e| Attach::Fatal(e.into()))?,
        };
        if view.len() < WIN_SHM_HEADER_LEN {
            return Err(Attach::Retry(bad(format!(
                "the mapping is {} bytes, smaller than the 128-byte header",
                view.len()
            ))));
        }
        // The server stores the magic last: read it first, then the rest.
        if view.u32_at(0).load(Ordering::Acquire) == 0 {
            return Err(Attach::Retry(ShmError::NotReady(names.mapping.clone())));
        }
        let mut raw = Vec::with_capacity(WIN_SHM_HEADER_LEN);
        view.read_into(0, WIN_SHM_HEADER_LEN, &mut raw);
        let header = match WindowsShmHeader::decode(&raw) {
            Ok(h) => h,
            Err(WinShmHeaderError::Uninitialised) => {
                return Err(Attach::Retry(ShmError::NotReady(names.mapping.clone())))
            }
            Err(e @ WinShmHeaderError::BadMagic(_)) => {
                return Err(Attach::Retry(bad(e.to_string())))
            }
            Err(e) => return Err(Attach::Fatal(bad(e.to_string()))),
        };
        if header.profile != profile {
            return Err(Attach::Fatal(bad(format!(
                "the region runs profile {:#x}, but the handshake selected {profile:#x}",
                header.profile
            ))));
        }
        super::check_capacities(&names.mapping, &header.layout, params).map_err(Attach::Fatal)?;
        let end = header.layout.file_size();
        let end_len = usize::try_from(end)
            .map_err(|_| Attach::Fatal(bad(format!("the areas end at byte {end}"))))?;
        drop(view);
        let view = sys::View::map_len(&mapping, end_len).map_err(|e| {
            Attach::Fatal(bad(format!(
                "the areas end at byte {end}, beyond the mapping: {e}"
            )))
        })?;
        if end > view.len() as u64 {
            return Err(Attach::Fatal(bad(format!(
                "the areas end at byte {end}, beyond the {} committed bytes of the mapping",
                view.len()
            ))));
        }
        let mut again = Vec::with_capacity(WIN_SHM_HEADER_LEN);
        view.read_into(0, WIN_SHM_HEADER_LEN, &mut again);
        if WindowsShmHeader::decode(&again).map(|h| h.layout) != Ok(header.layout) {
            return Err(Attach::Fatal(bad(
                "the header changed while attaching".into()
            )));
        }
        let events = if profile == PROFILE_HYBRID {
            let open = |name: &str| {
                sys::open_event(name).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Attach::Retry(ShmError::NotReady(name.to_owned()))
                    } else {
                        Attach::Fatal(ShmError::Io(e))
                    }
                })
            };
            Some(Events {
                request: open(&names.request_event)?,
                response: open(&names.response_event)?,
            })
        } else {
            None
        };
        let local_seq = view.i64_at(offset::RESP_SEQ).load(Ordering::Acquire);
        Ok(Region {
            role: Role::Client,
            profile,
            name: names.mapping.clone(),
            view,
            _mapping: mapping,
            events,
            layout: header.layout,
            spin_tries: header.spin_tries.min(MAX_SPIN_TRIES),
            local_seq,
        })
    }

    fn request_lane(&self) -> Lane {
        Lane {
            area_offset: self.layout.request_offset as usize,
            capacity: self.layout.request_capacity as usize,
            len: offset::REQ_LEN,
            seq: offset::REQ_SEQ,
        }
    }

    fn response_lane(&self) -> Lane {
        Lane {
            area_offset: self.layout.response_offset as usize,
            capacity: self.layout.response_capacity as usize,
            len: offset::RESP_LEN,
            seq: offset::RESP_SEQ,
        }
    }

    fn outgoing(&self) -> Lane {
        match self.role {
            Role::Server => self.response_lane(),
            Role::Client => self.request_lane(),
        }
    }

    fn incoming(&self) -> Lane {
        match self.role {
            Role::Server => self.request_lane(),
            Role::Client => self.response_lane(),
        }
    }

    /// (own closed flag, peer closed flag, own waiting flag, peer waiting flag)
    fn flags(&self) -> (usize, usize, usize, usize) {
        match self.role {
            Role::Server => (
                offset::RESP_SERVER_CLOSED,
                offset::REQ_CLIENT_CLOSED,
                offset::REQ_SERVER_WAITING,
                offset::RESP_CLIENT_WAITING,
            ),
            Role::Client => (
                offset::REQ_CLIENT_CLOSED,
                offset::RESP_SERVER_CLOSED,
                offset::RESP_CLIENT_WAITING,
                offset::REQ_SERVER_WAITING,
            ),
        }
    }

    /// (the event this side signals, the event this side waits on)
    fn events(&self) -> Option<(&sys::Event, &sys::Event)> {
        let e = self.events.as_ref()?;
        Some(match self.role {
            Role::Server => (&e.response, &e.request),
            Role::Client => (&e.request, &e.response),
        })
    }

    fn peer_closed(&self) -> bool {
        self.view.i32_at(self.flags().1).load(Ordering::SeqCst) != 0
    }

    fn published(&self, lane: &Lane) -> bool {
        self.view.i64_at(lane.seq).load(Ordering::Acquire) != self.local_seq
    }

    /// Copies the published message out, checking that neither the counter
    /// nor the length changed during the copy. The message counts as
    /// consumed whatever the outcome.
    fn consume(&mut self, lane: &Lane, buf: &mut Vec<u8>) -> Result<(), ShmError> {
        let seq = self.view.i64_at(lane.seq);
        let len_word = self.view.i32_at(lane.len);
        let seq_before = seq.load(Ordering::Acquire);
        let len = len_word.load(Ordering::Acquire);
        self.local_seq = seq_before;
        if len <= 0 {
            return Err(ShmError::Corrupt(
                "a published message has a zero or negative length",
            ));
        }
        let len_bytes = len as usize;
        if len_bytes > lane.capacity {
            return Err(ShmError::TooLarge {
                len: len_bytes,
                capacity: lane.capacity,
            });
        }
        if !self.view.read_into(lane.area_offset, len_bytes, buf) {
            return Err(ShmError::Corrupt("a message area lies outside the mapping"));
        }
        if seq.load(Ordering::Acquire) != seq_before || len_word.load(Ordering::Acquire) != len {
            buf.clear();
            return Err(ShmError::Corrupt(
                "the peer published again while a message was being copied",
            ));
        }
        Ok(())
    }

    fn remaining(
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<Option<Duration>, ShmError> {
        match deadline {
            None => Ok(None),
            Some(d) => {
                let r = d.saturating_duration_since(Instant::now());
                if r.is_zero() {
                    Err(ShmError::TimedOut(timeout))
                } else {
                    Ok(Some(r))
                }
            }
        }
    }

    fn wait_hybrid(
        &mut self,
        lane: &Lane,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<(), ShmError> {
        let (_, _, own_waiting, _) = self.flags();
        loop {
            if self.published(lane) {
                return self.consume(lane, buf);
            }
            if self.peer_closed() {
                return Err(ShmError::PeerClosed);
            }
            let remaining = Self::remaining(deadline, timeout)?;
            let waiting = self.view.i32_at(own_waiting);
            waiting.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.published(lane) || self.peer_closed() {
                waiting.store(0, Ordering::SeqCst);
                continue;
            }
            let Some((_, wait_on)) = self.events() else {
                waiting.store(0, Ordering::SeqCst);
                return Err(ShmError::Corrupt("a HYBRID region without events"));
            };
            let outcome = wait_on.wait(remaining);
            waiting.store(0, Ordering::SeqCst);
            // Signalled, spurious or timed out: the loop re-checks the
            // counter, the closed flag and the deadline, in that order.
            outcome?;
        }
    }

    fn wait_busy(
        &mut self,
        lane: &Lane,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
        timeout: Duration,
    ) -> Result<(), ShmError> {
        // The profile has no events: the peer publishes without signalling,
        // so the receiver polls. It polls flat out (yielding every 1024
        // polls) for BUSYWAIT_SPIN_WINDOW, then sleeps between polls with a
        // growing pause, so an idle session does not keep a core busy.
        let spin_until = Instant::now() + BUSYWAIT_SPIN_WINDOW;
        let mut polls: u32 = 0;
        let mut sleep = Duration::ZERO;
        loop {
            if self.published(lane) {
                return self.consume(lane, buf);
            }
            if self.peer_closed() {
                return Err(ShmError::PeerClosed);
            }
            if !sleep.is_zero() {
                let left = Self::remaining(deadline, timeout)?;
                std::thread::sleep(left.map_or(sleep, |l| l.min(sleep)));
                sleep = (sleep * 2).min(BUSYWAIT_MAX_SLEEP);
                continue;
            }
            polls = polls.wrapping_add(1);
            if polls & BUSYWAIT_POLL_MASK == 0 {
                Self::remaining(deadline, timeout)?;
                if Instant::now() >= spin_until {
                    sleep = BUSYWAIT_FIRST_SLEEP;
                }
                // SwitchToThread.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

fn create_event(name: &str) -> Result<sys::Event, ShmError> {
    match sys::create_event(name)? {
        Created::New(e) => Ok(e),
        Created::AlreadyExists => Err(ShmError::InUse(name.to_owned())),
    }
}

impl ShmPeer for Region {
    fn profile(&self) -> u32 {
        self.profile
    }

    fn send_capacity(&self) -> usize {
        self.outgoing().capacity
    }

    fn receive_capacity(&self) -> usize {
        self.incoming().capacity
    }

    fn send(&mut self, message: &[u8]) -> Result<(), ShmError> {
        let lane = self.outgoing();
        if message.is_empty() {
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot publish an empty message: every netipc message starts with its 32-byte header",
            )));
        }
        if message.len() > lane.capacity || message.len() > i32::MAX as usize {
            return Err(ShmError::TooLarge {
                len: message.len(),
                capacity: lane.capacity,
            });
        }
        if self.peer_closed() {
            return Err(ShmError::PeerClosed);
        }
        if !self.view.write(lane.area_offset, message) {
            return Err(ShmError::Corrupt("a message area lies outside the mapping"));
        }
        self.view
            .i32_at(lane.len)
            .swap(message.len() as i32, Ordering::SeqCst);
        self.view.i64_at(lane.seq).fetch_add(1, Ordering::SeqCst);
        if let Some((signal, _)) = self.events() {
            let (_, _, _, peer_waiting) = self.flags();
            if self.view.i32_at(peer_waiting).load(Ordering::SeqCst) != 0 {
                signal.set()?;
            }
        }
        Ok(())
    }

    fn receive(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), ShmError> {
        buf.clear();
        let lane = self.incoming();
        for _ in 0..self.spin_tries {
            if self.published(&lane) {
                return self.consume(&lane, buf);
            }
            std::hint::spin_loop();
        }
        // The clock is read only once the spin has not caught the message.
        let deadline = Instant::now().checked_add(timeout);
        if self.profile == PROFILE_HYBRID {
            self.wait_hybrid(&lane, buf, deadline, timeout)
        } else {
            self.wait_busy(&lane, buf, deadline, timeout)
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("role", &self.role)
            .field("profile", &self.profile)
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let (own_closed, ..) = self.flags();
        self.view.i32_at(own_closed).store(1, Ordering::SeqCst);
        if let Some((signal, _)) = self.events() {
            // Nothing useful to do if signalling fails while closing: the
            // peer still sees the flag at its next check.
            let _ = signal.set();
        }
    }
}

/// Test support: creates a named mapping holding `contents`, to check how
/// attach treats foreign or damaged objects. Not part of the protocol.
#[doc(hidden)]
pub mod test_support {
    use super::*;

    /// A named mapping that lives until dropped.
    pub struct RawMapping {
        _view: sys::View,
        _mapping: OwnedHandle,
    }

    impl fmt::Debug for RawMapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RawMapping").finish_non_exhaustive()
        }
    }

    /// Creates mapping `name` of `size` bytes (at least `contents.len()`)
    /// starting with `contents`.
    pub fn create_named_mapping(
        name: &str,
        size: u64,
        contents: &[u8],
    ) -> Result<RawMapping, ShmError> {
        let size = size.max(contents.len() as u64).max(1);
        let mapping = match sys::create_mapping(name, size)? {
            Created::New(h) => h,
            Created::AlreadyExists => return Err(ShmError::InUse(name.to_owned())),
        };
        let view = sys::View::map(&mapping)?;
        if !view.write(0, contents) {
            return Err(ShmError::Corrupt("contents larger than the mapping"));
        }
        Ok(RawMapping {
            _view: view,
            _mapping: mapping,
        })
    }

    /// Reads the first `len` bytes of the existing mapping `name`.
    pub fn read_named_mapping(name: &str, len: usize) -> Result<Vec<u8>, ShmError> {
        let mapping = sys::open_mapping(name)?;
        let view = sys::View::map(&mapping)?;
        let mut out = Vec::with_capacity(len);
        if !view.read_into(0, len, &mut out) {
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is only {} bytes long", view.len()),
            )));
        }
        Ok(out)
    }
}
