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
//! use pipewright_shm::{windows, AreaLimits, ShmPeer};
//! let names = windows::RegionNames {
//!     mapping: r"Local\demo-p2-s1-mapping".into(),
//!     request_event: r"Local\demo-p2-s1-req_event".into(),
//!     response_event: r"Local\demo-p2-s1-resp_event".into(),
//! };
//! let limits = AreaLimits { max_request_payload: 1024, max_response_payload: 1024 };
//! let regions = windows::ServerRegions::create(&[(0x02, names.clone())], &limits)?;
//! let mut server = regions.select(0x02).expect("created above");
//! let mut client = windows::attach_client(&names, &limits, 0x02, Duration::from_secs(5))?;
//! client.send(&[1u8; 40])?;
//! let mut buf = Vec::new();
//! server.receive(&mut buf, Duration::from_secs(1))?;
//! assert_eq!(buf, [1u8; 40]);
//! # Ok::<(), pipewright_shm::ShmError>(())
//! ```

use std::fmt;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use crate::layout::RegionLayout;
use crate::sys::{self, Created};
use crate::windows_core::{self, Attach, Core, Lane, Role, SharedView};
use crate::windows_layout::{
    layout_for_limits, DEFAULT_SPIN_TRIES, PROFILE_BUSYWAIT, PROFILE_HYBRID, WIN_SHM_HEADER_LEN,
};
use crate::{AreaLimits, ShmError, ShmPeer};

/// The SHM profiles this platform implements: 0x02 HYBRID and 0x04 BUSYWAIT.
///
/// ```
/// assert_eq!(pipewright_shm::windows::SUPPORTED_PROFILES, 0x06);
/// ```
pub const SUPPORTED_PROFILES: u32 = PROFILE_HYBRID | PROFILE_BUSYWAIT;

/// The kernel object names of one profile's region: the mapping and, for
/// HYBRID, the two events (the server waits on the request event, the
/// client on the response event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionNames {
    /// The file mapping.
    pub mapping: String,
    /// The event the client signals after publishing a request.
    pub request_event: String,
    /// The event the server signals after publishing a response.
    pub response_event: String,
}

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
/// use pipewright_shm::{windows::{RegionNames, ServerRegions}, AreaLimits, ShmPeer};
/// # let n = |p: u32| RegionNames { mapping: format!("m{p}"), request_event: format!("q{p}"), response_event: format!("r{p}") };
/// let limits = AreaLimits { max_request_payload: 64, max_response_payload: 64 };
/// let regions = ServerRegions::create(&[(0x02, n(2)), (0x04, n(4))], &limits)?;
/// assert_eq!(regions.profiles(), 0x06);
/// let peer = regions.select(0x04).unwrap(); // the 0x02 set is closed
/// assert_eq!(peer.profile(), 0x04);
/// # Ok::<(), pipewright_shm::ShmError>(())
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
    /// Creates the mapping (and, for HYBRID, the two events) for each
    /// `(profile, names)` in `sets` whose profile Windows supports (0x02,
    /// 0x04; others are ignored), in the order 0x02, 0x04, sized from the
    /// server's payload limits. An object name that already exists fails with
    /// [`ShmError::InUse`].
    pub fn create(
        sets: &[(u32, RegionNames)],
        limits: &AreaLimits,
    ) -> Result<ServerRegions, ShmError> {
        let layout = layout_for_limits(limits.max_request_payload, limits.max_response_payload)
            .ok_or_else(|| ShmError::BadRegion {
                name: sets
                    .first()
                    .map_or_else(String::new, |(_, n)| n.mapping.clone()),
                reason: format!(
                    "payload limits {} / {} make the region larger than 4 GiB; lower them",
                    limits.max_request_payload, limits.max_response_payload
                ),
            })?;
        let mut regions = Vec::new();
        for profile in [PROFILE_HYBRID, PROFILE_BUSYWAIT] {
            if let Some((_, names)) = sets.iter().find(|(p, _)| *p == profile) {
                regions.push(Region::create(names, profile, layout)?);
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

/// Opens the server's region named `names` for `profile` (the handshake's
/// selected profile), retrying every 5 ms while the objects do not exist
/// yet, the header is not written yet or its magic is wrong, for up to
/// `timeout`; then the last such error is returned. Other validation
/// failures (version, layout, profile mismatch, areas larger than `limits`
/// allow) fail at once.
///
/// The client starts from the response counter it finds at attach, so it
/// receives the responses published after it attached; the client speaks
/// first.
///
/// ```no_run
/// use std::time::Duration;
/// use pipewright_shm::{windows::{attach_client, RegionNames}, AreaLimits, ShmPeer};
/// # let names = RegionNames { mapping: "m".into(), request_event: "q".into(), response_event: "r".into() };
/// let limits = AreaLimits { max_request_payload: 64, max_response_payload: 64 };
/// let peer = attach_client(&names, &limits, 0x02, Duration::from_secs(5))?;
/// assert!(peer.send_capacity() >= 32 + 64);
/// # Ok::<(), pipewright_shm::ShmError>(())
/// ```
pub fn attach_client(
    names: &RegionNames,
    limits: &AreaLimits,
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
    let deadline = Instant::now().checked_add(timeout);
    loop {
        match Region::attach(names, profile, limits) {
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

/// A mapped section is the view the region code (`windows_core`) runs on.
impl SharedView for sys::View {
    fn len(&self) -> usize {
        sys::View::len(self)
    }
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        sys::View::read_into(self, offset, len, out)
    }
    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        sys::View::write(self, offset, bytes)
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.u32_at(offset).load(order)
    }
    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.u32_at(offset).store(value, order)
    }
    fn load_i32(&self, offset: usize, order: Ordering) -> i32 {
        self.i32_at(offset).load(order)
    }
    fn store_i32(&self, offset: usize, value: i32, order: Ordering) {
        self.i32_at(offset).store(value, order)
    }
    fn swap_i32(&self, offset: usize, value: i32, order: Ordering) -> i32 {
        self.i32_at(offset).swap(value, order)
    }
    fn load_i64(&self, offset: usize, order: Ordering) -> i64 {
        self.i64_at(offset).load(order)
    }
    fn fetch_add_i64(&self, offset: usize, value: i64, order: Ordering) -> i64 {
        self.i64_at(offset).fetch_add(value, order)
    }
}

/// The HYBRID events: the server waits on `request`, the client on
/// `response`.
struct Events {
    request: sys::Event,
    response: sys::Event,
}

/// One side of one profile's region.
struct Region {
    profile: u32,
    name: String,
    /// The view, the lanes and the receive position (unmapped before the
    /// mapping handle closes).
    core: Core<sys::View>,
    _mapping: OwnedHandle,
    events: Option<Events>,
    spin_tries: u32,
}

impl Region {
    fn create(names: &RegionNames, profile: u32, layout: RegionLayout) -> Result<Region, ShmError> {
        let size = layout.file_size();
        let mapping = match sys::create_mapping(&names.mapping, size)? {
            Created::New(h) => h,
            Created::AlreadyExists => return Err(ShmError::InUse(names.mapping.clone())),
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
                name: names.mapping.clone(),
                reason: format!("mapped {} bytes, asked for {size}", view.len()),
            });
        }
        // A new pagefile-backed section is zero-filled.
        windows_core::write_header(&view, profile, layout)?;
        crate::count_created_region();
        Ok(Region {
            profile,
            name: names.mapping.clone(),
            core: Core::server(view, layout),
            _mapping: mapping,
            events,
            spin_tries: DEFAULT_SPIN_TRIES,
        })
    }

    /// Opens the region: maps the header only, checks it (including the
    /// capacities against the negotiated `limits`), then maps just the
    /// header and the areas, all committed.
    fn attach(names: &RegionNames, profile: u32, limits: &AreaLimits) -> Result<Region, Attach> {
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
        let (header, end_len) = windows_core::check_header(&view, &names.mapping, profile, limits)?;
        drop(view);
        let view = sys::View::map_len(&mapping, end_len).map_err(|e| {
            Attach::Fatal(ShmError::BadRegion {
                name: names.mapping.clone(),
                reason: format!(
                    "the areas end at byte {}, beyond the mapping: {e}",
                    header.layout.file_size()
                ),
            })
        })?;
        windows_core::recheck_header(&view, &names.mapping, &header)?;
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
        Ok(Region {
            profile,
            name: names.mapping.clone(),
            core: Core::client(view, header.layout),
            _mapping: mapping,
            events,
            spin_tries: header.spin_tries.min(MAX_SPIN_TRIES),
        })
    }

    /// (the event this side signals, the event this side waits on)
    fn events(&self) -> Option<(&sys::Event, &sys::Event)> {
        let e = self.events.as_ref()?;
        Some(match self.core.role {
            Role::Server => (&e.response, &e.request),
            Role::Client => (&e.request, &e.response),
        })
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
        loop {
            if let Some(done) = self.core.poll(lane, buf) {
                return done;
            }
            let remaining = Self::remaining(deadline, timeout)?;
            self.core.set_waiting(true);
            fence(Ordering::SeqCst);
            if self.core.published(lane) || self.core.peer_closed() {
                self.core.set_waiting(false);
                continue;
            }
            let Some((_, wait_on)) = self.events() else {
                self.core.set_waiting(false);
                return Err(ShmError::Corrupt("a HYBRID region without events"));
            };
            let outcome = wait_on.wait(remaining);
            self.core.set_waiting(false);
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
            if let Some(done) = self.core.poll(lane, buf) {
                return done;
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
        self.core.outgoing().capacity
    }

    fn receive_capacity(&self) -> usize {
        self.core.incoming().capacity
    }

    fn send(&mut self, message: &[u8]) -> Result<(), ShmError> {
        self.core.publish(message)?;
        if let Some((signal, _)) = self.events() {
            if self.core.peer_waiting() {
                signal.set()?;
            }
        }
        Ok(())
    }

    fn receive(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), ShmError> {
        buf.clear();
        let lane = self.core.incoming();
        for _ in 0..self.spin_tries {
            if self.core.published(&lane) {
                return self.core.consume(&lane, buf);
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
            .field("role", &self.core.role)
            .field("profile", &self.profile)
            .field("name", &self.name)
            .finish()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        self.core.mark_closed();
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
