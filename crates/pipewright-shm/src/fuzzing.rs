//! Fuzzing support (feature `fuzzing`): the Windows region's handling of
//! peer-written bytes (attach checks, receiving, publishing) over a heap
//! buffer instead of a mapped section, so it is fuzzed on every platform.
//! It runs the very code `windows::attach_client` and its peer run; only
//! section creation, events and waiting are left out. Not part of the
//! protocol.
//!
//! ```
//! use pipewright_shm::fuzzing::WindowsRegion;
//! use pipewright_shm::windows_layout::PROFILE_BUSYWAIT;
//! use pipewright_shm::AreaLimits;
//! let limits = AreaLimits { max_request_payload: 64, max_response_payload: 64 };
//! let bytes = WindowsRegion::server_bytes(PROFILE_BUSYWAIT, &limits)?;
//! let mut region = WindowsRegion::attach(&bytes, &limits, PROFILE_BUSYWAIT)?;
//! region.send(&[7u8; 40])?;
//! let mut buf = Vec::new();
//! assert!(region.server_try_receive(&mut buf)?);
//! assert_eq!(buf, [7u8; 40]);
//! assert_eq!(region.view().refused(), 0);
//! # Ok::<(), pipewright_shm::ShmError>(())
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::windows_core::{self, Core, SharedView};
use crate::windows_layout::{layout_for_limits, offset};
use crate::{AreaLimits, ShmError};

/// A region in process memory with the access a mapped view offers:
/// bounds-checked byte copies and atomic header words. The bytes live in
/// `AtomicU64` words (so every access is safe and atomic per word; word
/// accesses are `SeqCst`, at least as strong as the region code asks).
/// Copies outside the view are refused and counted ([`refused`](Self::refused));
/// word accesses outside it or misaligned panic, as on a mapped view.
#[derive(Debug)]
pub struct HeapView {
    words: Vec<AtomicU64>,
    len: usize,
    refused: AtomicUsize,
}

impl HeapView {
    /// A view of exactly `bytes.len()` bytes holding `bytes`.
    pub fn new(bytes: &[u8]) -> HeapView {
        let words = bytes
            .chunks(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                AtomicU64::new(u64::from_ne_bytes(w))
            })
            .collect();
        HeapView {
            words,
            len: bytes.len(),
            refused: AtomicUsize::new(0),
        }
    }

    /// The view's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.copy_out(0, self.len, &mut out);
        out
    }

    /// Writes `bytes` at `offset` as the peer would (for example a new
    /// counter value after the client attached); false (nothing written)
    /// when the range is outside the view. Not counted in
    /// [`refused`](Self::refused).
    pub fn peer_write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        self.copy_in(offset, bytes);
        true
    }

    /// How many byte copies of the region code asked for a range outside
    /// the view (and were refused).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn copy_out(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        let end = offset + len;
        let mut i = offset;
        while i < end {
            let word = self.words[i / 8].load(Ordering::SeqCst).to_ne_bytes();
            let k = i % 8;
            let n = (8 - k).min(end - i);
            out.extend_from_slice(&word[k..k + n]);
            i += n;
        }
    }

    fn copy_in(&self, offset: usize, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let at = offset + i;
            let k = at % 8;
            let n = (8 - k).min(bytes.len() - i);
            self.replace(at / 8, k, &bytes[i..i + n]);
            i += n;
        }
    }

    /// Replaces bytes `k..k + bytes.len()` of word `w` atomically; returns
    /// the word's previous bytes.
    fn replace(&self, w: usize, k: usize, bytes: &[u8]) -> [u8; 8] {
        let update = |old: u64| {
            let mut b = old.to_ne_bytes();
            b[k..k + bytes.len()].copy_from_slice(bytes);
            Some(u64::from_ne_bytes(b))
        };
        match self.words[w].fetch_update(Ordering::SeqCst, Ordering::SeqCst, update) {
            Ok(old) | Err(old) => old.to_ne_bytes(),
        }
    }

    /// The word index and byte index of the `size`-byte word at `offset`,
    /// which must be `size`-aligned and inside the view.
    fn word_at(&self, offset: usize, size: usize) -> (usize, usize) {
        let end = offset.checked_add(size);
        assert!(
            end.is_some_and(|e| e <= self.len) && offset.is_multiple_of(size),
            "shared-memory access at {offset}+{size} outside the {}-byte view",
            self.len
        );
        (offset / 8, offset % 8)
    }

    fn load4(&self, offset: usize) -> [u8; 4] {
        let (w, k) = self.word_at(offset, 4);
        let b = self.words[w].load(Ordering::SeqCst).to_ne_bytes();
        [b[k], b[k + 1], b[k + 2], b[k + 3]]
    }

    fn store4(&self, offset: usize, value: [u8; 4]) -> [u8; 4] {
        let (w, k) = self.word_at(offset, 4);
        let b = self.replace(w, k, &value);
        [b[k], b[k + 1], b[k + 2], b[k + 3]]
    }
}

impl SharedView for HeapView {
    fn len(&self) -> usize {
        self.len
    }

    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if offset.checked_add(len).is_none_or(|e| e > self.len) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        out.reserve(len);
        self.copy_out(offset, len, out);
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset.checked_add(bytes.len()).is_none_or(|e| e > self.len) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        self.copy_in(offset, bytes);
        true
    }

    fn load_u32(&self, offset: usize, _: Ordering) -> u32 {
        u32::from_ne_bytes(self.load4(offset))
    }

    fn store_u32(&self, offset: usize, value: u32, _: Ordering) {
        self.store4(offset, value.to_ne_bytes());
    }

    fn load_i32(&self, offset: usize, _: Ordering) -> i32 {
        i32::from_ne_bytes(self.load4(offset))
    }

    fn store_i32(&self, offset: usize, value: i32, _: Ordering) {
        self.store4(offset, value.to_ne_bytes());
    }

    fn swap_i32(&self, offset: usize, value: i32, _: Ordering) -> i32 {
        i32::from_ne_bytes(self.store4(offset, value.to_ne_bytes()))
    }

    fn load_i64(&self, offset: usize, _: Ordering) -> i64 {
        let (w, _) = self.word_at(offset, 8);
        self.words[w].load(Ordering::SeqCst) as i64
    }

    fn fetch_add_i64(&self, offset: usize, value: i64, _: Ordering) -> i64 {
        let (w, _) = self.word_at(offset, 8);
        self.words[w].fetch_add(value as u64, Ordering::SeqCst) as i64
    }
}

impl<V: SharedView> SharedView for Arc<V> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        (**self).read_into(offset, len, out)
    }
    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        (**self).write(offset, bytes)
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        (**self).load_u32(offset, order)
    }
    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        (**self).store_u32(offset, value, order)
    }
    fn load_i32(&self, offset: usize, order: Ordering) -> i32 {
        (**self).load_i32(offset, order)
    }
    fn store_i32(&self, offset: usize, value: i32, order: Ordering) {
        (**self).store_i32(offset, value, order)
    }
    fn swap_i32(&self, offset: usize, value: i32, order: Ordering) -> i32 {
        (**self).swap_i32(offset, value, order)
    }
    fn load_i64(&self, offset: usize, order: Ordering) -> i64 {
        (**self).load_i64(offset, order)
    }
    fn fetch_add_i64(&self, offset: usize, value: i64, order: Ordering) -> i64 {
        (**self).fetch_add_i64(offset, value, order)
    }
}

/// A Windows region held in a [`HeapView`], attached as a client, with the
/// server's side over the same bytes (positioned at the request counter
/// found at attach).
pub struct WindowsRegion {
    view: Arc<HeapView>,
    client: Core<Arc<HeapView>>,
    server: Core<Arc<HeapView>>,
}

impl std::fmt::Debug for WindowsRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowsRegion")
            .field("len", &self.view.len())
            .finish_non_exhaustive()
    }
}

impl WindowsRegion {
    /// The bytes of a fresh region as `windows::ServerRegions::create`
    /// initialises it for `profile` and the server's `limits`.
    pub fn server_bytes(profile: u32, limits: &AreaLimits) -> Result<Vec<u8>, ShmError> {
        let layout = layout_for_limits(limits.max_request_payload, limits.max_response_payload)
            .ok_or(ShmError::Corrupt(
                "the limits make the region larger than 4 GiB",
            ))?;
        let size = usize::try_from(layout.file_size())
            .map_err(|_| ShmError::Corrupt("the region does not fit the address space"))?;
        let view = HeapView::new(&vec![0; size]);
        windows_core::write_header(&view, profile, layout)?;
        Ok(view.to_vec())
    }

    /// Attaches as a client the way `windows::attach_client` does to a
    /// mapping that holds exactly `bytes`: the header checks (against
    /// `profile` and `limits`), the areas inside the mapping, the header
    /// re-read. Retryable and fatal failures are both returned.
    pub fn attach(
        bytes: &[u8],
        limits: &AreaLimits,
        profile: u32,
    ) -> Result<WindowsRegion, ShmError> {
        const NAME: &str = "heap";
        let view = Arc::new(HeapView::new(bytes));
        let (header, _end) = windows_core::check_header(&view, NAME, profile, limits)
            .map_err(windows_core::Attach::into_error)?;
        windows_core::recheck_header(&view, NAME, &header)
            .map_err(windows_core::Attach::into_error)?;
        let client = Core::client(Arc::clone(&view), header.layout);
        let mut server = Core::server(Arc::clone(&view), header.layout);
        server.local_seq = view.load_i64(offset::REQ_SEQ, Ordering::SeqCst);
        Ok(WindowsRegion {
            view,
            client,
            server,
        })
    }

    /// The region's bytes.
    pub fn view(&self) -> &HeapView {
        &self.view
    }

    /// The largest message the client may send.
    pub fn send_capacity(&self) -> usize {
        self.client.outgoing().capacity
    }

    /// The largest message the client may receive.
    pub fn receive_capacity(&self) -> usize {
        self.client.incoming().capacity
    }

    /// One check of the client's receive loop: `Ok(true)` with the
    /// published response in `buf` (cleared first), `Ok(false)` when none is
    /// published, [`ShmError::PeerClosed`] when the server has left.
    pub fn try_receive(&mut self, buf: &mut Vec<u8>) -> Result<bool, ShmError> {
        buf.clear();
        let lane = self.client.incoming();
        self.client
            .poll(&lane, buf)
            .transpose()
            .map(|r| r.is_some())
    }

    /// Publishes a request as the client (without signalling an event).
    pub fn send(&mut self, message: &[u8]) -> Result<(), ShmError> {
        self.client.publish(message)
    }

    /// One check of the server's receive loop (see
    /// [`try_receive`](Self::try_receive)): takes the published request.
    pub fn server_try_receive(&mut self, buf: &mut Vec<u8>) -> Result<bool, ShmError> {
        buf.clear();
        let lane = self.server.incoming();
        self.server
            .poll(&lane, buf)
            .transpose()
            .map(|r| r.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::windows_layout::{WindowsShmHeader, PROFILE_BUSYWAIT, PROFILE_HYBRID};

    const LIMITS: AreaLimits = AreaLimits {
        max_request_payload: 1024,
        max_response_payload: 4096,
    };

    fn fresh(profile: u32) -> Vec<u8> {
        let bytes = WindowsRegion::server_bytes(profile, &LIMITS).unwrap();
        let h = WindowsShmHeader::decode(&bytes).unwrap();
        assert_eq!(h, WindowsShmHeader::new(profile, h.layout));
        assert_eq!(bytes.len() as u64, h.layout.file_size());
        bytes
    }

    #[test]
    fn heap_view_words_and_bytes_agree() {
        let v = HeapView::new(&[0u8; 20]);
        v.store_u32(4, 0x0102_0304, Ordering::SeqCst);
        assert_eq!(v.to_vec()[4..8], 0x0102_0304u32.to_ne_bytes());
        assert_eq!(v.swap_i32(4, -1, Ordering::SeqCst), 0x0102_0304);
        assert_eq!(v.load_i32(4, Ordering::SeqCst), -1);
        assert_eq!(v.load_u32(0, Ordering::SeqCst), 0);
        v.fetch_add_i64(8, i64::MAX, Ordering::SeqCst);
        v.fetch_add_i64(8, 1, Ordering::SeqCst);
        assert_eq!(v.load_i64(8, Ordering::SeqCst), i64::MIN);
        assert!(v.write(3, &[9; 14]));
        let mut out = Vec::new();
        assert!(v.read_into(2, 16, &mut out));
        assert_eq!(out[1..15], [9; 14]);
        assert_eq!(v.refused(), 0);
        assert!(!v.write(19, &[1, 2]));
        assert!(!v.read_into(usize::MAX, 2, &mut out));
        assert_eq!(v.refused(), 2);
        assert!(std::panic::catch_unwind(|| v.load_u32(16, Ordering::SeqCst)).is_ok());
        assert!(std::panic::catch_unwind(|| v.load_u32(18, Ordering::SeqCst)).is_err());
        assert!(std::panic::catch_unwind(|| v.load_i64(16, Ordering::SeqCst)).is_err());
    }

    #[test]
    fn a_fresh_region_carries_messages_both_ways() {
        for profile in [PROFILE_HYBRID, PROFILE_BUSYWAIT] {
            let bytes = fresh(profile);
            let mut r = WindowsRegion::attach(&bytes, &LIMITS, profile).unwrap();
            let mut buf = Vec::new();
            assert!(!r.try_receive(&mut buf).unwrap());
            r.send(&[3; 1056]).unwrap();
            assert!(r.server_try_receive(&mut buf).unwrap());
            assert_eq!(buf, [3; 1056]);
            assert!(!r.server_try_receive(&mut buf).unwrap());
            // The server's side publishes after the client attached.
            r.server.publish(&[4; 4128]).unwrap();
            assert!(r.try_receive(&mut buf).unwrap());
            assert_eq!(buf, [4; 4128]);
            assert!(matches!(r.send(&[0; 1089]), Err(ShmError::TooLarge { .. })));
            r.server.mark_closed();
            assert!(matches!(r.try_receive(&mut buf), Err(ShmError::PeerClosed)));
            assert_eq!(r.view().refused(), 0);
        }
    }

    #[test]
    fn attach_refuses_what_the_mapping_cannot_hold() {
        let bytes = fresh(PROFILE_BUSYWAIT);
        let attach = |b: &[u8], profile| WindowsRegion::attach(b, &LIMITS, profile).err();
        assert!(matches!(
            attach(&bytes[..100], 4),
            Some(ShmError::BadRegion { .. })
        ));
        assert!(matches!(
            attach(&vec![0; 256], 4),
            Some(ShmError::NotReady(_))
        ));
        let short = &bytes[..bytes.len() - 1];
        match attach(short, 4) {
            Some(ShmError::BadRegion { reason, .. }) => {
                assert!(reason.contains("beyond the"), "{reason}")
            }
            other => panic!("expected BadRegion, got {other:?}"),
        }
        assert!(matches!(
            attach(&bytes, 2),
            Some(ShmError::BadRegion { .. })
        ));
        let small = AreaLimits {
            max_request_payload: 1024,
            max_response_payload: 64,
        };
        assert!(matches!(
            WindowsRegion::attach(&bytes, &small, 4),
            Err(ShmError::AreaOverLimit { .. })
        ));
        // A response length word beyond the area is refused, not copied.
        let mut big = bytes.clone();
        let h = WindowsShmHeader::decode(&big).unwrap();
        big[offset::RESP_LEN..offset::RESP_LEN + 4]
            .copy_from_slice(&(h.layout.response_capacity as i32 + 1).to_ne_bytes());
        big[offset::RESP_SEQ..offset::RESP_SEQ + 8].copy_from_slice(&0i64.to_ne_bytes());
        let mut r = WindowsRegion::attach(&big, &LIMITS, 4).unwrap();
        r.client.local_seq = -1;
        let mut buf = Vec::new();
        assert!(matches!(
            r.try_receive(&mut buf),
            Err(ShmError::TooLarge { .. })
        ));
        assert_eq!(r.view().refused(), 0);
    }
}
