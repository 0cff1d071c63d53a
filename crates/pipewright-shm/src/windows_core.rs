//! The part of a Windows region that touches only the shared bytes: the
//! header a server writes, the client's attach checks against a view of a
//! given length, the two lanes, receiving (`consume`) and publishing.
//!
//! It is generic over [`SharedView`], the bounds-checked access a mapped
//! section offers (`sys::View` on Windows), so the same code also runs over
//! a heap buffer (`fuzzing::HeapView`, feature `fuzzing`), where the reader of
//! peer-written bytes is fuzzed on every platform. Section creation, events
//! and waiting stay in `windows.rs`.

use std::sync::atomic::Ordering;

use crate::layout::RegionLayout;
use crate::windows_layout::{
    offset, WinShmHeaderError, WindowsShmHeader, WIN_SHM_HEADER_LEN, WIN_SHM_MAGIC,
};
use crate::{AreaLimits, ShmError};

/// Bounds-checked access to the bytes of a region. Byte copies report a
/// range outside the view with `false`; the word accessors take internal
/// constant offsets only (aligned, inside the header), so a violation is a
/// bug and panics.
pub(crate) trait SharedView {
    /// Length of the view in bytes.
    fn len(&self) -> usize;
    /// Appends `len` bytes at `offset` to `out`; false (nothing copied) when
    /// the range is outside the view.
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool;
    /// Copies `bytes` to `offset`; false (nothing copied) when the range is
    /// outside the view.
    fn write(&self, offset: usize, bytes: &[u8]) -> bool;
    /// Atomic load of the u32 at `offset` (4-aligned).
    fn load_u32(&self, offset: usize, order: Ordering) -> u32;
    /// Atomic store of the u32 at `offset`.
    fn store_u32(&self, offset: usize, value: u32, order: Ordering);
    /// Atomic load of the i32 at `offset` (4-aligned).
    fn load_i32(&self, offset: usize, order: Ordering) -> i32;
    /// Atomic store of the i32 at `offset`.
    fn store_i32(&self, offset: usize, value: i32, order: Ordering);
    /// Atomic swap of the i32 at `offset`; returns the previous value.
    fn swap_i32(&self, offset: usize, value: i32, order: Ordering) -> i32;
    /// Atomic load of the i64 at `offset` (8-aligned).
    fn load_i64(&self, offset: usize, order: Ordering) -> i64;
    /// Atomic wrapping add to the i64 at `offset`; returns the previous value.
    fn fetch_add_i64(&self, offset: usize, value: i64, order: Ordering) -> i64;
}

/// Why an attach attempt failed: worth retrying (not created or not
/// initialised yet) or not.
pub(crate) enum Attach {
    Retry(ShmError),
    Fatal(ShmError),
}

impl Attach {
    #[cfg_attr(not(any(feature = "fuzzing", test)), allow(dead_code))]
    pub(crate) fn into_error(self) -> ShmError {
        match self {
            Attach::Retry(e) | Attach::Fatal(e) => e,
        }
    }
}

fn bad(name: &str, reason: String) -> ShmError {
    ShmError::BadRegion {
        name: name.to_owned(),
        reason,
    }
}

/// Writes a fresh header for `profile` and `layout` into a zero-filled
/// view, the magic last, so a client never sees a valid magic before the
/// rest of the header.
pub(crate) fn write_header<V: SharedView>(
    view: &V,
    profile: u32,
    layout: RegionLayout,
) -> Result<(), ShmError> {
    let header = WindowsShmHeader::new(profile, layout).encode();
    if !view.write(4, &header[4..]) {
        return Err(ShmError::Corrupt("the header does not fit the mapping"));
    }
    view.store_u32(0, WIN_SHM_MAGIC, Ordering::SeqCst);
    Ok(())
}

/// The client's first attach step, over a view of (at least) the header of
/// region `name`: the view holds a header, the magic is set, the header
/// decodes, runs `profile` and its areas fit `limits`. Returns the header
/// and the byte where the areas end (the length the second view needs).
pub(crate) fn check_header<V: SharedView>(
    view: &V,
    name: &str,
    profile: u32,
    limits: &AreaLimits,
) -> Result<(WindowsShmHeader, usize), Attach> {
    if view.len() < WIN_SHM_HEADER_LEN {
        return Err(Attach::Retry(bad(
            name,
            format!(
                "the mapping is {} bytes, smaller than the 128-byte header",
                view.len()
            ),
        )));
    }
    // The server stores the magic last: read it first, then the rest.
    if view.load_u32(0, Ordering::Acquire) == 0 {
        return Err(Attach::Retry(ShmError::NotReady(name.to_owned())));
    }
    let mut raw = Vec::with_capacity(WIN_SHM_HEADER_LEN);
    view.read_into(0, WIN_SHM_HEADER_LEN, &mut raw);
    let header = match WindowsShmHeader::decode(&raw) {
        Ok(h) => h,
        Err(WinShmHeaderError::Uninitialised) => {
            return Err(Attach::Retry(ShmError::NotReady(name.to_owned())))
        }
        Err(e @ WinShmHeaderError::BadMagic(_)) => {
            return Err(Attach::Retry(bad(name, e.to_string())))
        }
        Err(e) => return Err(Attach::Fatal(bad(name, e.to_string()))),
    };
    if header.profile != profile {
        return Err(Attach::Fatal(bad(
            name,
            format!(
                "the region runs profile {:#x}, but the handshake selected {profile:#x}",
                header.profile
            ),
        )));
    }
    crate::check_capacities(name, &header.layout, limits).map_err(Attach::Fatal)?;
    let end = header.layout.file_size();
    let end_len = usize::try_from(end)
        .map_err(|_| Attach::Fatal(bad(name, format!("the areas end at byte {end}"))))?;
    Ok((header, end_len))
}

/// The client's second attach step, over the view of the header and the
/// areas: the areas lie inside the view and the header's layout has not
/// changed since [`check_header`] read it.
pub(crate) fn recheck_header<V: SharedView>(
    view: &V,
    name: &str,
    header: &WindowsShmHeader,
) -> Result<(), Attach> {
    let end = header.layout.file_size();
    if end > view.len() as u64 {
        return Err(Attach::Fatal(bad(
            name,
            format!(
                "the areas end at byte {end}, beyond the {} committed bytes of the mapping",
                view.len()
            ),
        )));
    }
    let mut again = Vec::with_capacity(WIN_SHM_HEADER_LEN);
    view.read_into(0, WIN_SHM_HEADER_LEN, &mut again);
    if WindowsShmHeader::decode(&again).map(|h| h.layout) != Ok(header.layout) {
        return Err(Attach::Fatal(bad(
            name,
            "the header changed while attaching".into(),
        )));
    }
    Ok(())
}

/// Which side of the region this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// Which header words and area one side uses in one direction.
pub(crate) struct Lane {
    pub(crate) area_offset: usize,
    pub(crate) capacity: usize,
    pub(crate) len: usize,
    pub(crate) seq: usize,
}

/// One side's view of a region and its receive position.
pub(crate) struct Core<V> {
    pub(crate) role: Role,
    pub(crate) view: V,
    pub(crate) layout: RegionLayout,
    /// Sequence number of the last message received.
    pub(crate) local_seq: i64,
}

impl<V: SharedView> Core<V> {
    /// The server's side of a region it has just initialised.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn server(view: V, layout: RegionLayout) -> Core<V> {
        Core {
            role: Role::Server,
            view,
            layout,
            local_seq: 0,
        }
    }

    /// The client's side of a checked region: it starts from the response
    /// counter it finds now.
    pub(crate) fn client(view: V, layout: RegionLayout) -> Core<V> {
        let local_seq = view.load_i64(offset::RESP_SEQ, Ordering::Acquire);
        Core {
            role: Role::Client,
            view,
            layout,
            local_seq,
        }
    }

    pub(crate) fn request_lane(&self) -> Lane {
        Lane {
            area_offset: self.layout.request_offset as usize,
            capacity: self.layout.request_capacity as usize,
            len: offset::REQ_LEN,
            seq: offset::REQ_SEQ,
        }
    }

    pub(crate) fn response_lane(&self) -> Lane {
        Lane {
            area_offset: self.layout.response_offset as usize,
            capacity: self.layout.response_capacity as usize,
            len: offset::RESP_LEN,
            seq: offset::RESP_SEQ,
        }
    }

    pub(crate) fn outgoing(&self) -> Lane {
        match self.role {
            Role::Server => self.response_lane(),
            Role::Client => self.request_lane(),
        }
    }

    pub(crate) fn incoming(&self) -> Lane {
        match self.role {
            Role::Server => self.request_lane(),
            Role::Client => self.response_lane(),
        }
    }

    /// (own closed flag, peer closed flag, own waiting flag, peer waiting flag)
    pub(crate) fn flags(&self) -> (usize, usize, usize, usize) {
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

    pub(crate) fn peer_closed(&self) -> bool {
        self.view.load_i32(self.flags().1, Ordering::SeqCst) != 0
    }

    /// Whether the peer announced that it sleeps on its event.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn peer_waiting(&self) -> bool {
        self.view.load_i32(self.flags().3, Ordering::SeqCst) != 0
    }

    /// Sets or clears this side's waiting flag.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn set_waiting(&self, waiting: bool) {
        self.view
            .store_i32(self.flags().2, i32::from(waiting), Ordering::SeqCst);
    }

    /// Sets this side's closed flag.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub(crate) fn mark_closed(&self) {
        self.view.store_i32(self.flags().0, 1, Ordering::SeqCst);
    }

    pub(crate) fn published(&self, lane: &Lane) -> bool {
        self.view.load_i64(lane.seq, Ordering::Acquire) != self.local_seq
    }

    /// One check of a wait loop: the published message (consumed into
    /// `buf`), else [`ShmError::PeerClosed`] when the peer has left, else
    /// `None`.
    pub(crate) fn poll(&mut self, lane: &Lane, buf: &mut Vec<u8>) -> Option<Result<(), ShmError>> {
        if self.published(lane) {
            return Some(self.consume(lane, buf));
        }
        if self.peer_closed() {
            return Some(Err(ShmError::PeerClosed));
        }
        None
    }

    /// Copies the published message out, checking that neither the counter
    /// nor the length changed during the copy. The message counts as
    /// consumed whatever the outcome.
    pub(crate) fn consume(&mut self, lane: &Lane, buf: &mut Vec<u8>) -> Result<(), ShmError> {
        let seq_before = self.view.load_i64(lane.seq, Ordering::Acquire);
        let len = self.view.load_i32(lane.len, Ordering::Acquire);
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
        if self.view.load_i64(lane.seq, Ordering::Acquire) != seq_before
            || self.view.load_i32(lane.len, Ordering::Acquire) != len
        {
            buf.clear();
            return Err(ShmError::Corrupt(
                "the peer published again while a message was being copied",
            ));
        }
        Ok(())
    }

    /// Publishes `message` into the outgoing area: copies it, exchanges the
    /// length word, increments the counter. Signalling the peer is the
    /// caller's.
    pub(crate) fn publish(&mut self, message: &[u8]) -> Result<(), ShmError> {
        let lane = self.outgoing();
        if message.is_empty() {
            return Err(ShmError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
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
            .swap_i32(lane.len, message.len() as i32, Ordering::SeqCst);
        self.view.fetch_add_i64(lane.seq, 1, Ordering::SeqCst);
        Ok(())
    }
}
