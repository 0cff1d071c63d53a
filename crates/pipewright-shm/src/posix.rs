//! POSIX shared memory (Linux), profiles 0x02 SHM_HYBRID and 0x04 SHM_FUTEX:
//! both run the same region, one file per session holding the 64-byte
//! `NSHM` header ([`PosixShmHeader`]) and the request and response areas.
//!
//! * Publish: copy the message into the area, store `len` (release),
//!   `seq += 1`, `signal += 1`, then `FUTEX_WAKE` the signal word (a shared
//!   futex, so the peer process is woken).
//! * Receive: spin [`SPIN_TRIES`] times on `seq` (then poll for up to
//!   [`SPIN_WINDOW`]), then `FUTEX_WAIT` on the
//!   signal word until `seq` advances or the timeout passes.
//! * The server creates the file (`O_EXCL`, mode 0600, `fallocate`) and
//!   unlinks it when its peer is dropped; stale files of dead servers are
//!   removed before creating and by [`remove_stale_regions`].
//!
//! The POSIX region has no closed flag: a peer that goes away is noticed by
//! whatever carries the session besides the region (netipc keeps its
//! baseline connection open for that), so [`ShmError::PeerClosed`] does not
//! occur here.
//!
//! ```no_run
//! use pipewright_shm::{posix, AreaLimits, ShmPeer};
//! use std::path::Path;
//! use std::time::Duration;
//! let path = Path::new("/tmp/demo-0000000000000001.ipcshm");
//! let limits = AreaLimits { max_request_payload: 1024, max_response_payload: 1024 };
//! let regions = posix::ServerRegions::create(path, &limits, posix::SUPPORTED_PROFILES).unwrap();
//! let mut server = regions.select(posix::PROFILE_FUTEX).unwrap();
//! let mut client = posix::attach_client(path, &limits, posix::PROFILE_FUTEX, Duration::from_secs(5)).unwrap();
//! client.send(&[1u8; 40]).unwrap();
//! let mut buf = Vec::new();
//! server.receive(&mut buf, Duration::from_secs(1)).unwrap();
//! assert_eq!(buf, [1u8; 40]);
//! ```

use crate::layout::{PosixShmHeader, RegionLayout, ShmHeaderError, SHM_HEADER_LEN, SHM_MAGIC};
use crate::sys::{self, SharedMapping};
use crate::{AreaLimits, ShmError, ShmPeer};
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// Profile 0x02 SHM_HYBRID (spin, then a futex wait).
pub const PROFILE_HYBRID: u32 = 0x02;
/// Profile 0x04 SHM_FUTEX (the same region and waits as 0x02).
pub const PROFILE_FUTEX: u32 = 0x04;
/// The SHM profile bits this platform serves: 0x02 and 0x04, one region.
pub const SUPPORTED_PROFILES: u32 = PROFILE_HYBRID | PROFILE_FUTEX;
/// Spin iterations before sleeping on the futex (`NIPC_SHM_DEFAULT_SPIN`).
pub const SPIN_TRIES: u32 = 128;
/// How long a receive keeps polling after the first [`SPIN_TRIES`] before it
/// sleeps on the futex. A peer answers within a few microseconds, while a
/// futex sleep and wake costs tens of microseconds on small virtual machines;
/// the wire does not see how long a side spins.
pub const SPIN_WINDOW: Duration = Duration::from_micros(50);
/// Pause between client attach attempts.
pub const ATTACH_RETRY_INTERVAL: Duration = Duration::from_millis(5);

const OFF_REQ_SEQ: usize = 32;
const OFF_RESP_SEQ: usize = 40;
const OFF_REQ_LEN: usize = 48;
const OFF_RESP_LEN: usize = 52;
const OFF_REQ_SIGNAL: usize = 56;
const OFF_RESP_SIGNAL: usize = 60;

/// One direction of the region: its area and its three control words.
#[derive(Debug, Clone, Copy)]
struct Area {
    offset: usize,
    capacity: usize,
    seq: usize,
    len: usize,
    signal: usize,
}

impl Area {
    fn request(l: &RegionLayout) -> Area {
        Area {
            offset: l.request_offset as usize,
            capacity: l.request_capacity as usize,
            seq: OFF_REQ_SEQ,
            len: OFF_REQ_LEN,
            signal: OFF_REQ_SIGNAL,
        }
    }

    fn response(l: &RegionLayout) -> Area {
        Area {
            offset: l.response_offset as usize,
            capacity: l.response_capacity as usize,
            seq: OFF_RESP_SEQ,
            len: OFF_RESP_LEN,
            signal: OFF_RESP_SIGNAL,
        }
    }
}

/// The file a server created, unlinked on drop if it is still that file.
#[derive(Debug)]
struct OwnedFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for OwnedFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A mapped region. Field order matters: the mapping is released before the
/// file is unlinked.
#[derive(Debug)]
struct Region {
    map: SharedMapping,
    layout: RegionLayout,
    _owned: Option<OwnedFile>,
}

impl Region {
    /// Publishes one complete message into `area`.
    fn publish(&self, area: &Area, message: &[u8]) -> Result<(), ShmError> {
        if message.is_empty() {
            return Err(ShmError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty message cannot be published",
            )));
        }
        if message.len() > area.capacity {
            return Err(ShmError::TooLarge {
                len: message.len(),
                capacity: area.capacity,
            });
        }
        self.map.write(area.offset, message);
        self.map
            .u32_at(area.len)
            .store(message.len() as u32, Ordering::Release);
        self.map.u64_at(area.seq).fetch_add(1, Ordering::Release);
        let signal = self.map.u32_at(area.signal);
        signal.fetch_add(1, Ordering::Release);
        sys::futex_wake(signal, 1);
        Ok(())
    }

    /// Waits for publication `*local_seq + 1` in `area` and copies it.
    fn receive(
        &self,
        area: &Area,
        local_seq: &mut u64,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), ShmError> {
        let expected = local_seq.wrapping_add(1);
        let seq = self.map.u64_at(area.seq);
        let arrived = || seq.load(Ordering::Acquire) >= expected;
        let mut ready = false;
        for _ in 0..SPIN_TRIES {
            if arrived() {
                ready = true;
                break;
            }
            std::hint::spin_loop();
        }
        if !ready {
            let started = Instant::now();
            'window: while started.elapsed() < SPIN_WINDOW {
                for _ in 0..32 {
                    if arrived() {
                        ready = true;
                        break 'window;
                    }
                    std::hint::spin_loop();
                }
            }
        }
        if !ready {
            let deadline = Instant::now() + timeout;
            let signal = self.map.u32_at(area.signal);
            loop {
                let v = signal.load(Ordering::Acquire);
                if arrived() {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ShmError::TimedOut(timeout));
                }
                if !sys::futex_wait(signal, v, left)? && !arrived() {
                    return Err(ShmError::TimedOut(timeout));
                }
            }
        }
        let len = self.map.u32_at(area.len).load(Ordering::Acquire) as usize;
        *local_seq = expected;
        if len == 0 {
            return Err(ShmError::Corrupt("a message of length 0 was published"));
        }
        if len > area.capacity {
            return Err(ShmError::TooLarge {
                len,
                capacity: area.capacity,
            });
        }
        buf.clear();
        buf.resize(len, 0);
        self.map.read(area.offset, buf);
        Ok(())
    }
}

/// One side of a POSIX region: the server publishes responses and receives
/// requests, the client the other way round.
#[derive(Debug)]
pub struct PosixPeer {
    region: Region,
    profile: u32,
    outgoing: Area,
    incoming: Area,
    local_seq: u64,
}

impl PosixPeer {
    /// The region's area layout.
    pub fn layout(&self) -> RegionLayout {
        self.region.layout
    }
}

impl ShmPeer for PosixPeer {
    fn profile(&self) -> u32 {
        self.profile
    }

    fn send_capacity(&self) -> usize {
        self.outgoing.capacity
    }

    fn receive_capacity(&self) -> usize {
        self.incoming.capacity
    }

    fn send(&mut self, message: &[u8]) -> Result<(), ShmError> {
        self.region.publish(&self.outgoing, message)
    }

    fn receive(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<(), ShmError> {
        self.region
            .receive(&self.incoming, &mut self.local_seq, buf, timeout)
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ShmError {
    ShmError::BadRegion {
        name: path.display().to_string(),
        reason: reason.into(),
    }
}

fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

fn unlink(path: &Path) -> Result<bool, ShmError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(bad(path, format!("cannot remove the stale region: {e}"))),
    }
}

/// Removes the region file at `path` unless a live server owns it. Returns
/// whether a file was removed; [`ShmError::InUse`] when the owner is alive.
///
/// Dead means: unopenable, not a regular file, shorter than the header, a
/// foreign magic, generation 0, or an owner pid that no longer exists.
pub fn reclaim_stale(path: &Path) -> Result<bool, ShmError> {
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            return Err(ShmError::InUse(format!(
                "{} (cannot check it: {e})",
                path.display()
            )))
        }
        Err(_) => return unlink(path),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(_) => return unlink(path),
    };
    if !meta.is_file() || meta.len() < SHM_HEADER_LEN as u64 {
        return unlink(path);
    }
    let mut header = [0u8; SHM_HEADER_LEN];
    if file.read_exact(&mut header).is_err() {
        return unlink(path);
    }
    let word = |off: usize| {
        u32::from_ne_bytes([
            header[off],
            header[off + 1],
            header[off + 2],
            header[off + 3],
        ])
    };
    if word(0) != SHM_MAGIC {
        return unlink(path);
    }
    let (pid, generation) = (word(8) as i32, word(12));
    if generation != 0 && sys::process_exists(pid) {
        return Err(ShmError::InUse(format!(
            "{} (owner pid {pid} is alive)",
            path.display()
        )));
    }
    unlink(path)
}

/// Startup scan: removes every `{prefix}-{16 hex digits}.ipcshm` in `dir`
/// whose owner is gone; returns how many were removed. Files of live
/// servers are kept.
///
/// ```no_run
/// let removed = pipewright_shm::posix::remove_stale_regions("/run/netdata".as_ref(), "cgroups-snapshot").unwrap();
/// println!("{removed} stale regions removed");
/// ```
pub fn remove_stale_regions(dir: &Path, prefix: &str) -> Result<usize, ShmError> {
    let prefix = format!("{prefix}-");
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(id) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".ipcshm"))
        else {
            continue;
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if let Ok(true) = reclaim_stale(&entry.path()) {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The regions a server created for one session before its handshake: on
/// POSIX one file serves both 0x02 and 0x04.
#[derive(Debug)]
pub struct ServerRegions {
    region: Option<Region>,
    profiles: u32,
}

impl ServerRegions {
    /// Creates the session's region file at `path` for the SHM bits in
    /// `shm_profiles` that this platform serves (nothing when there are
    /// none), sized by the server's limits. A file left by a dead server is
    /// replaced; one of a live server is [`ShmError::InUse`].
    pub fn create(
        path: &Path,
        limits: &AreaLimits,
        shm_profiles: u32,
    ) -> Result<ServerRegions, ShmError> {
        let profiles = shm_profiles & SUPPORTED_PROFILES;
        if profiles == 0 {
            return Ok(ServerRegions {
                region: None,
                profiles: 0,
            });
        }
        let layout =
            RegionLayout::for_limits(limits.max_request_payload, limits.max_response_payload)
                .ok_or_else(|| bad(path, "the payload limits are too large for a region"))?;
        let file = match create_exclusive(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                reclaim_stale(path)?;
                create_exclusive(path).map_err(|e| bad(path, format!("cannot create: {e}")))?
            }
            Err(e) => return Err(bad(path, format!("cannot create: {e}"))),
        };
        let meta = file.metadata()?;
        let owned = OwnedFile {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
        };
        // From here on, dropping `owned` unlinks the file on any failure.
        sys::fallocate(&file, layout.file_size()).map_err(|e| {
            bad(
                path,
                format!("cannot allocate {} bytes: {e}", layout.file_size()),
            )
        })?;
        let len = usize::try_from(layout.file_size())
            .map_err(|_| bad(path, "region larger than the address space"))?;
        let map =
            SharedMapping::map(&file, len).map_err(|e| bad(path, format!("cannot map: {e}")))?;
        // A new O_EXCL file allocated by fallocate reads as zeros, so only the
        // header needs writing.
        let header = PosixShmHeader::new(
            std::process::id() as i32,
            sys::monotonic_generation(),
            layout,
        );
        map.write(0, &header.encode());
        fence(Ordering::Release);
        crate::count_created_region();
        Ok(ServerRegions {
            region: Some(Region {
                map,
                layout,
                _owned: Some(owned),
            }),
            profiles,
        })
    }

    /// The SHM profile bits a handshake may select.
    pub fn profiles(&self) -> u32 {
        self.profiles
    }

    /// Keeps the region for the selected profile as the server's peer; `None`
    /// (and the file removed) when `profile` is not available.
    pub fn select(self, profile: u32) -> Option<Box<dyn ShmPeer>> {
        if profile & self.profiles == 0 || profile.count_ones() != 1 {
            return None;
        }
        let region = self.region?;
        let layout = region.layout;
        Some(Box::new(PosixPeer {
            region,
            profile,
            outgoing: Area::response(&layout),
            incoming: Area::request(&layout),
            local_seq: 0,
        }))
    }
}

enum Attach {
    Retry(ShmError),
    Fail(ShmError),
}

/// Opens and checks the region at `path`: the header is read and checked
/// (including the capacities against the negotiated `limits`)
/// before anything is mapped, and only the header and the two areas are
/// mapped, whatever the file's size.
fn try_attach(path: &Path, limits: &AreaLimits) -> Result<Region, Attach> {
    let mut file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Attach::Retry(ShmError::NotReady(
                path.display().to_string(),
            )))
        }
        Err(e) => return Err(Attach::Retry(bad(path, format!("cannot open: {e}")))),
    };
    let size = file
        .metadata()
        .map_err(|e| Attach::Fail(bad(path, format!("cannot stat: {e}"))))?
        .len();
    if size < SHM_HEADER_LEN as u64 {
        return Err(Attach::Retry(ShmError::NotReady(
            path.display().to_string(),
        )));
    }
    let mut raw = [0u8; SHM_HEADER_LEN];
    file.read_exact(&mut raw)
        .map_err(|e| Attach::Fail(bad(path, format!("cannot read the header: {e}"))))?;
    let header = match PosixShmHeader::decode(&raw) {
        Ok(h) => h,
        Err(e @ ShmHeaderError::BadMagic(_)) => {
            return Err(Attach::Retry(bad(path, e.to_string())))
        }
        Err(e) => return Err(Attach::Fail(bad(path, e.to_string()))),
    };
    crate::check_capacities(&path.display().to_string(), &header.layout, limits)
        .map_err(Attach::Fail)?;
    let end = header.layout.file_size();
    if size < end {
        return Err(Attach::Fail(bad(
            path,
            format!("file is {size} bytes but its areas end at byte {end}"),
        )));
    }
    let len = usize::try_from(end)
        .map_err(|_| Attach::Fail(bad(path, "region larger than the address space")))?;
    let map = SharedMapping::map(&file, len)
        .map_err(|e| Attach::Fail(bad(path, format!("cannot map: {e}"))))?;
    // The mapping is authoritative from here on: the server wrote the header
    // before the handshake's ACK, and it does not change its layout.
    let mut mapped = [0u8; SHM_HEADER_LEN];
    map.read(0, &mut mapped);
    if PosixShmHeader::decode(&mapped).map(|h| h.layout) != Ok(header.layout) {
        return Err(Attach::Fail(bad(
            path,
            "the header changed while attaching",
        )));
    }
    Ok(Region {
        map,
        layout: header.layout,
        _owned: None,
    })
}

/// Opens the server's region at `path` for `profile` (0x02 or 0x04), retrying every
/// [`ATTACH_RETRY_INTERVAL`] while it is missing, shorter than its header or
/// has a foreign magic, for up to `timeout`. A malformed header (version,
/// header length, offsets, capacities, file size) fails at once, and so do
/// areas larger than the negotiated `limits`
/// ([`ShmError::AreaOverLimit`], checked before mapping).
pub fn attach_client(
    path: &Path,
    limits: &AreaLimits,
    profile: u32,
    timeout: Duration,
) -> Result<Box<dyn ShmPeer>, ShmError> {
    if profile & SUPPORTED_PROFILES == 0 || profile.count_ones() != 1 {
        return Err(ShmError::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("profile {profile:#x} is not a POSIX shared-memory profile (0x02 or 0x04)"),
        )));
    }
    let deadline = Instant::now() + timeout;
    let region = loop {
        match try_attach(path, limits) {
            Ok(r) => break r,
            Err(Attach::Fail(e)) => return Err(e),
            Err(Attach::Retry(e)) => {
                if Instant::now() >= deadline {
                    return Err(e);
                }
                std::thread::sleep(ATTACH_RETRY_INTERVAL);
            }
        }
    };
    let layout = region.layout;
    let local_seq = region.map.u64_at(OFF_RESP_SEQ).load(Ordering::Acquire);
    Ok(Box::new(PosixPeer {
        region,
        profile,
        outgoing: Area::request(&layout),
        incoming: Area::response(&layout),
        local_seq,
    }))
}
