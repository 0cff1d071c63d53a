//! The Windows shared-memory region header ("NSWH", 128 bytes) and region
//! sizing, as pure codecs that build and test on every platform.
//!
//! Layout: `[header 128][request area @ 128][response area @ align64(req_off + req_cap)]`,
//! capacities `align64(32 + max_payload)`.
//!
//! ```
//! use pipewright_shm::windows_layout::{layout_for_limits, WindowsShmHeader, PROFILE_HYBRID};
//! let layout = layout_for_limits(4096, 65536).unwrap();
//! assert_eq!((layout.request_offset, layout.request_capacity), (128, 4160));
//! assert_eq!((layout.response_offset, layout.response_capacity), (4288, 65600));
//! let h = WindowsShmHeader::new(PROFILE_HYBRID, layout);
//! assert_eq!(WindowsShmHeader::decode(&h.encode()), Ok(h));
//! ```

use crate::bytes::{get_u32, get_u64, put_u32, put_u64};
use crate::layout::RegionLayout;

/// `"NSWH"` as a native-endian u32.
pub const WIN_SHM_MAGIC: u32 = 0x4e53_5748;
/// Region format version.
pub const WIN_SHM_VERSION: u32 = 3;
/// Header size; the request area starts right after it.
pub const WIN_SHM_HEADER_LEN: usize = 128;
/// Area alignment (one cache line).
pub const WIN_SHM_ALIGN: u32 = 64;
/// Spin iterations the server writes into `spin_tries`.
pub const DEFAULT_SPIN_TRIES: u32 = 1024;
/// Profile 0x02: spin, then wait on auto-reset kernel events.
pub const PROFILE_HYBRID: u32 = 0x02;
/// Profile 0x04: spin only, yielding the thread every 1024 polls.
pub const PROFILE_BUSYWAIT: u32 = 0x04;
/// Profile 0x08: reserved, never created.
pub const PROFILE_WAITADDR: u32 = 0x08;

/// Byte offsets of the header fields that both sides update atomically.
pub mod offset {
    /// `spin_tries` (u32).
    pub const SPIN_TRIES: usize = 32;
    /// `req_len` (LONG): request message length, header included.
    pub const REQ_LEN: usize = 36;
    /// `resp_len` (LONG).
    pub const RESP_LEN: usize = 40;
    /// `req_client_closed` (LONG): the client has left.
    pub const REQ_CLIENT_CLOSED: usize = 44;
    /// `req_server_waiting` (LONG): the server sleeps on the request event.
    pub const REQ_SERVER_WAITING: usize = 48;
    /// `resp_server_closed` (LONG): the server has left.
    pub const RESP_SERVER_CLOSED: usize = 52;
    /// `resp_client_waiting` (LONG): the client sleeps on the response event.
    pub const RESP_CLIENT_WAITING: usize = 56;
    /// `req_seq` (LONG64): request publication counter.
    pub const REQ_SEQ: usize = 64;
    /// `resp_seq` (LONG64): response publication counter.
    pub const RESP_SEQ: usize = 72;
}

/// Area layout for the server's payload limits, or `None` when the sizes
/// overflow 32 bits.
///
/// ```
/// let l = pipewright_shm::windows_layout::layout_for_limits(1024, 1024).unwrap();
/// assert_eq!(l.file_size(), 128 + 1088 + 1088);
/// ```
pub fn layout_for_limits(
    max_request_payload: u32,
    max_response_payload: u32,
) -> Option<RegionLayout> {
    RegionLayout::after_header(
        WIN_SHM_HEADER_LEN as u32,
        max_request_payload,
        max_response_payload,
    )
}

/// Why a Windows region header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WinShmHeaderError {
    /// Fewer than 128 bytes.
    #[error("Windows SHM header truncated: {0} bytes, need 128")]
    Truncated(usize),
    /// Magic is 0: the server has not written the header yet.
    #[error("Windows SHM header not initialised yet (magic is 0)")]
    Uninitialised,
    /// Magic is not `NSWH`.
    #[error("bad Windows SHM magic {0:#010x}, expected 0x4e535748 (\"NSWH\")")]
    BadMagic(u32),
    /// Version is not 3.
    #[error("unsupported Windows SHM version {0}, expected 3")]
    BadVersion(u32),
    /// header_len is not 128.
    #[error("bad Windows SHM header_len {0}, expected 128")]
    BadHeaderLen(u32),
    /// Offsets or capacities are invalid.
    #[error("bad Windows SHM area layout: {0}")]
    BadLayout(&'static str),
}

/// The 128-byte Windows region header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowsShmHeader {
    /// Profile the region runs (2 HYBRID, 4 BUSYWAIT; checked by the client
    /// against the selected profile, not by the decoder).
    pub profile: u32,
    /// Area layout.
    pub layout: RegionLayout,
    /// Spin iterations before waiting.
    pub spin_tries: u32,
    /// Request message length.
    pub req_len: i32,
    /// Response message length.
    pub resp_len: i32,
    /// The client has closed.
    pub req_client_closed: i32,
    /// The server waits on the request event.
    pub req_server_waiting: i32,
    /// The server has closed.
    pub resp_server_closed: i32,
    /// The client waits on the response event.
    pub resp_client_waiting: i32,
    /// Request publication counter.
    pub req_seq: i64,
    /// Response publication counter.
    pub resp_seq: i64,
}

impl WindowsShmHeader {
    /// A fresh header as the server writes it: counters and flags zero,
    /// `spin_tries` = [`DEFAULT_SPIN_TRIES`].
    pub fn new(profile: u32, layout: RegionLayout) -> WindowsShmHeader {
        WindowsShmHeader {
            profile,
            layout,
            spin_tries: DEFAULT_SPIN_TRIES,
            req_len: 0,
            resp_len: 0,
            req_client_closed: 0,
            req_server_waiting: 0,
            resp_server_closed: 0,
            resp_client_waiting: 0,
            req_seq: 0,
            resp_seq: 0,
        }
    }

    /// Encodes the header (padding and reserved bytes zero).
    pub fn encode(&self) -> [u8; WIN_SHM_HEADER_LEN] {
        let mut b = [0u8; WIN_SHM_HEADER_LEN];
        put_u32(&mut b, 0, WIN_SHM_MAGIC);
        put_u32(&mut b, 4, WIN_SHM_VERSION);
        put_u32(&mut b, 8, WIN_SHM_HEADER_LEN as u32);
        put_u32(&mut b, 12, self.profile);
        put_u32(&mut b, 16, self.layout.request_offset);
        put_u32(&mut b, 20, self.layout.request_capacity);
        put_u32(&mut b, 24, self.layout.response_offset);
        put_u32(&mut b, 28, self.layout.response_capacity);
        put_u32(&mut b, offset::SPIN_TRIES, self.spin_tries);
        put_u32(&mut b, offset::REQ_LEN, self.req_len as u32);
        put_u32(&mut b, offset::RESP_LEN, self.resp_len as u32);
        put_u32(
            &mut b,
            offset::REQ_CLIENT_CLOSED,
            self.req_client_closed as u32,
        );
        put_u32(
            &mut b,
            offset::REQ_SERVER_WAITING,
            self.req_server_waiting as u32,
        );
        put_u32(
            &mut b,
            offset::RESP_SERVER_CLOSED,
            self.resp_server_closed as u32,
        );
        put_u32(
            &mut b,
            offset::RESP_CLIENT_WAITING,
            self.resp_client_waiting as u32,
        );
        put_u64(&mut b, offset::REQ_SEQ, self.req_seq as u64);
        put_u64(&mut b, offset::RESP_SEQ, self.resp_seq as u64);
        b
    }

    /// Decodes and validates the header the way a client checks it at
    /// attach: magic, version, header_len, and the area layout (non-zero
    /// capacities, offsets at or after the header, everything 64-aligned,
    /// areas not overlapping). The profile and the mapping-size checks are
    /// the caller's.
    pub fn decode(b: &[u8]) -> Result<WindowsShmHeader, WinShmHeaderError> {
        if b.len() < WIN_SHM_HEADER_LEN {
            return Err(WinShmHeaderError::Truncated(b.len()));
        }
        match get_u32(b, 0) {
            WIN_SHM_MAGIC => {}
            0 => return Err(WinShmHeaderError::Uninitialised),
            other => return Err(WinShmHeaderError::BadMagic(other)),
        }
        let version = get_u32(b, 4);
        if version != WIN_SHM_VERSION {
            return Err(WinShmHeaderError::BadVersion(version));
        }
        let header_len = get_u32(b, 8);
        if header_len as usize != WIN_SHM_HEADER_LEN {
            return Err(WinShmHeaderError::BadHeaderLen(header_len));
        }
        let layout = RegionLayout {
            request_offset: get_u32(b, 16),
            request_capacity: get_u32(b, 20),
            response_offset: get_u32(b, 24),
            response_capacity: get_u32(b, 28),
        };
        validate_layout(&layout)?;
        Ok(WindowsShmHeader {
            profile: get_u32(b, 12),
            layout,
            spin_tries: get_u32(b, offset::SPIN_TRIES),
            req_len: get_u32(b, offset::REQ_LEN) as i32,
            resp_len: get_u32(b, offset::RESP_LEN) as i32,
            req_client_closed: get_u32(b, offset::REQ_CLIENT_CLOSED) as i32,
            req_server_waiting: get_u32(b, offset::REQ_SERVER_WAITING) as i32,
            resp_server_closed: get_u32(b, offset::RESP_SERVER_CLOSED) as i32,
            resp_client_waiting: get_u32(b, offset::RESP_CLIENT_WAITING) as i32,
            req_seq: get_u64(b, offset::REQ_SEQ) as i64,
            resp_seq: get_u64(b, offset::RESP_SEQ) as i64,
        })
    }
}

fn validate_layout(l: &RegionLayout) -> Result<(), WinShmHeaderError> {
    let header = WIN_SHM_HEADER_LEN as u32;
    if l.request_offset < header || l.response_offset < header {
        return Err(WinShmHeaderError::BadLayout(
            "area offset below the 128-byte header",
        ));
    }
    l.check_areas().map_err(WinShmHeaderError::BadLayout)?;
    let request_end = l.request_offset.checked_add(l.request_capacity);
    let response_end = l.response_offset.checked_add(l.response_capacity);
    match (request_end, response_end) {
        (Some(req_end), Some(_)) if l.response_offset >= req_end => Ok(()),
        (Some(_), Some(_)) => Err(WinShmHeaderError::BadLayout(
            "response area overlaps the request area",
        )),
        _ => Err(WinShmHeaderError::BadLayout("area end overflows 32 bits")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WindowsShmHeader {
        WindowsShmHeader {
            profile: PROFILE_BUSYWAIT,
            layout: layout_for_limits(1024, 65536).unwrap(),
            spin_tries: 1024,
            req_len: 36,
            resp_len: -5,
            req_client_closed: 1,
            req_server_waiting: 2,
            resp_server_closed: 3,
            resp_client_waiting: 4,
            req_seq: 0x0102_0304_0506_0708,
            resp_seq: -2,
        }
    }

    #[test]
    fn exact_offsets() {
        let h = sample();
        let b = h.encode();
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!(&b[0..4], &0x4e53_5748u32.to_ne_bytes());
        if cfg!(target_endian = "little") {
            assert_eq!(&b[0..4], b"HWSN");
        }
        assert_eq!(u32_at(4), 3);
        assert_eq!(u32_at(8), 128);
        assert_eq!(u32_at(12), 4);
        assert_eq!(u32_at(16), 128);
        assert_eq!(u32_at(20), 1088);
        assert_eq!(u32_at(24), 128 + 1088);
        assert_eq!(u32_at(28), 65600);
        assert_eq!(u32_at(32), 1024);
        assert_eq!(u32_at(36), 36);
        assert_eq!(u32_at(40) as i32, -5);
        assert_eq!(u32_at(44), 1);
        assert_eq!(u32_at(48), 2);
        assert_eq!(u32_at(52), 3);
        assert_eq!(u32_at(56), 4);
        assert_eq!(u32_at(60), 0, "padding");
        assert_eq!(u64_at(64), 0x0102_0304_0506_0708);
        assert_eq!(u64_at(72) as i64, -2);
        assert!(b[80..128].iter().all(|&x| x == 0), "reserved");
        assert_eq!(WindowsShmHeader::decode(&b), Ok(h));
        // Trailing bytes after the header are ignored.
        let mut longer = b.to_vec();
        longer.extend_from_slice(&[0xff; 64]);
        assert_eq!(WindowsShmHeader::decode(&longer), Ok(h));
    }

    #[test]
    fn sizing() {
        let l = layout_for_limits(4096, 65536).unwrap();
        assert_eq!(l.request_offset, 128);
        assert_eq!(l.request_capacity, 4160);
        assert_eq!(l.response_offset, 4288);
        assert_eq!(l.response_capacity, 65600);
        assert_eq!(l.file_size(), 69888);
        let l = layout_for_limits(0, 1).unwrap();
        assert_eq!(
            (l.request_capacity, l.response_offset, l.response_capacity),
            (64, 192, 64)
        );
        assert!(layout_for_limits(u32::MAX, 1).is_none());
        assert!(layout_for_limits(1, u32::MAX - 40).is_none());
        assert!(layout_for_limits(u32::MAX - 4096, u32::MAX - 4096).is_none());
    }

    #[test]
    fn malformed() {
        let good = sample().encode();
        assert_eq!(
            WindowsShmHeader::decode(&good[..127]),
            Err(WinShmHeaderError::Truncated(127))
        );
        assert_eq!(
            WindowsShmHeader::decode(&[]),
            Err(WinShmHeaderError::Truncated(0))
        );
        let e = |off: usize, v: u32| {
            let mut b = good;
            put_u32(&mut b, off, v);
            WindowsShmHeader::decode(&b).unwrap_err()
        };
        assert_eq!(e(0, 0), WinShmHeaderError::Uninitialised);
        assert_eq!(e(0, 0x4e53_484d), WinShmHeaderError::BadMagic(0x4e53_484d));
        assert_eq!(e(4, 2), WinShmHeaderError::BadVersion(2));
        assert_eq!(e(8, 64), WinShmHeaderError::BadHeaderLen(64));
        assert!(matches!(e(16, 64), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(e(16, 0), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(e(20, 0), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(e(28, 0), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(e(20, 100), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(e(24, 130), WinShmHeaderError::BadLayout(_)));
        // Response area starting inside the request area.
        assert!(matches!(e(24, 192), WinShmHeaderError::BadLayout(_)));
        assert!(matches!(
            e(20, 0xffff_ffc0),
            WinShmHeaderError::BadLayout(_)
        ));
        assert!(matches!(
            e(28, 0xffff_ffc0),
            WinShmHeaderError::BadLayout(_)
        ));
        // Every error message names the problem.
        for err in [e(0, 1), e(4, 9), e(8, 1), e(20, 0)] {
            assert!(err.to_string().contains("Windows SHM"), "{err}");
        }
        // The profile is not the decoder's business.
        let mut b = good;
        put_u32(&mut b, 12, 0x7777);
        assert_eq!(WindowsShmHeader::decode(&b).unwrap().profile, 0x7777);
    }
}
