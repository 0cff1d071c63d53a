//! The POSIX region header ("NSHM", 64 bytes) and region sizing, as pure
//! codecs that build and test on every platform: the region code uses them,
//! and tools use them to inspect and validate a region.
//!
//! ```
//! use pipewright_shm::layout::RegionLayout;
//! let l = RegionLayout::for_limits(4096, 65536).unwrap();
//! assert_eq!((l.request_offset, l.request_capacity, l.response_offset, l.response_capacity), (64, 4160, 4224, 65600));
//! assert_eq!(l.file_size(), 69824);
//! ```

use crate::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

/// `"NSHM"` as a native-endian u32.
pub const SHM_MAGIC: u32 = 0x4e53_484d;
/// Region format version.
pub const SHM_VERSION: u16 = 3;
/// Header size and first-area alignment base.
pub const SHM_HEADER_LEN: usize = 64;
/// Area alignment.
pub const SHM_ALIGN: u32 = 64;

fn align64(v: u32) -> Option<u32> {
    v.checked_add(SHM_ALIGN - 1).map(|x| x & !(SHM_ALIGN - 1))
}

/// Where the request and response areas live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegionLayout {
    /// Request area offset.
    pub request_offset: u32,
    /// Request area capacity.
    pub request_capacity: u32,
    /// Response area offset.
    pub response_offset: u32,
    /// Response area capacity.
    pub response_capacity: u32,
}

impl RegionLayout {
    /// Layout for the server's payload limits: capacities `align64(32 + max)`.
    pub fn for_limits(max_request_payload: u32, max_response_payload: u32) -> Option<RegionLayout> {
        Self::after_header(
            SHM_HEADER_LEN as u32,
            max_request_payload,
            max_response_payload,
        )
    }

    /// Layout for the payload limits with the request area right after a
    /// header of `header_len` bytes (64 for POSIX regions, 128 for Windows
    /// ones), or `None` when the sizes overflow 32 bits.
    pub(crate) fn after_header(
        header_len: u32,
        max_request_payload: u32,
        max_response_payload: u32,
    ) -> Option<RegionLayout> {
        let request_capacity = align64(max_request_payload.checked_add(32)?)?;
        let response_capacity = align64(max_response_payload.checked_add(32)?)?;
        let request_offset = header_len;
        let response_offset = align64(request_offset.checked_add(request_capacity)?)?;
        response_offset.checked_add(response_capacity)?;
        Some(RegionLayout {
            request_offset,
            request_capacity,
            response_offset,
            response_capacity,
        })
    }

    /// Total file size.
    pub fn file_size(&self) -> u64 {
        u64::from(self.response_offset) + u64::from(self.response_capacity)
    }

    /// The checks both region formats make of their areas: neither capacity
    /// is zero and every offset and capacity is a multiple of [`SHM_ALIGN`];
    /// the error is the reason.
    pub(crate) fn check_areas(&self) -> Result<(), &'static str> {
        if self.request_capacity == 0 || self.response_capacity == 0 {
            return Err("zero capacity");
        }
        if [
            self.request_offset,
            self.request_capacity,
            self.response_offset,
            self.response_capacity,
        ]
        .iter()
        .any(|v| v % SHM_ALIGN != 0)
        {
            return Err("offset or capacity not 64-aligned");
        }
        Ok(())
    }
}

/// Why a region header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShmHeaderError {
    /// Fewer than 64 bytes.
    #[error("SHM header truncated: {0} bytes, need 64")]
    Truncated(usize),
    /// Magic is not `NSHM`.
    #[error("bad SHM magic {0:#010x}, expected 0x4e53484d (\"NSHM\")")]
    BadMagic(u32),
    /// Version is not 3.
    #[error("unsupported SHM version {0}, expected 3")]
    BadVersion(u16),
    /// header_len is not 64.
    #[error("bad SHM header_len {0}, expected 64")]
    BadHeaderLen(u16),
    /// Offsets or capacities are invalid.
    #[error("bad SHM area layout: {0}")]
    BadLayout(&'static str),
}

/// The 64-byte POSIX region header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PosixShmHeader {
    /// Server process id.
    pub owner_pid: i32,
    /// Server generation (0 = legacy/uninitialised).
    pub owner_generation: u32,
    /// Area layout.
    pub layout: RegionLayout,
    /// Request publication counter.
    pub req_seq: u64,
    /// Response publication counter.
    pub resp_seq: u64,
    /// Request message length (header included).
    pub req_len: u32,
    /// Response message length (header included).
    pub resp_len: u32,
    /// Request futex word.
    pub req_signal: u32,
    /// Response futex word.
    pub resp_signal: u32,
}

impl PosixShmHeader {
    /// A fresh header of a region owned by `owner_pid` at `owner_generation`:
    /// nothing published yet (all counters, lengths and futex words zero).
    ///
    /// ```
    /// use pipewright_shm::layout::{PosixShmHeader, RegionLayout};
    /// let h = PosixShmHeader::new(42, 1, RegionLayout::for_limits(64, 64).unwrap());
    /// assert_eq!(PosixShmHeader::decode(&h.encode()), Ok(h));
    /// ```
    pub fn new(owner_pid: i32, owner_generation: u32, layout: RegionLayout) -> PosixShmHeader {
        PosixShmHeader {
            owner_pid,
            owner_generation,
            layout,
            req_seq: 0,
            resp_seq: 0,
            req_len: 0,
            resp_len: 0,
            req_signal: 0,
            resp_signal: 0,
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; SHM_HEADER_LEN] {
        let mut b = [0u8; SHM_HEADER_LEN];
        put_u32(&mut b, 0, SHM_MAGIC);
        put_u16(&mut b, 4, SHM_VERSION);
        put_u16(&mut b, 6, SHM_HEADER_LEN as u16);
        put_u32(&mut b, 8, self.owner_pid as u32);
        put_u32(&mut b, 12, self.owner_generation);
        put_u32(&mut b, 16, self.layout.request_offset);
        put_u32(&mut b, 20, self.layout.request_capacity);
        put_u32(&mut b, 24, self.layout.response_offset);
        put_u32(&mut b, 28, self.layout.response_capacity);
        put_u64(&mut b, 32, self.req_seq);
        put_u64(&mut b, 40, self.resp_seq);
        put_u32(&mut b, 48, self.req_len);
        put_u32(&mut b, 52, self.resp_len);
        put_u32(&mut b, 56, self.req_signal);
        put_u32(&mut b, 60, self.resp_signal);
        b
    }

    /// Decodes and validates the header the way a client checks it at attach
    /// (the file-size check is the caller's).
    pub fn decode(b: &[u8]) -> Result<PosixShmHeader, ShmHeaderError> {
        if b.len() < SHM_HEADER_LEN {
            return Err(ShmHeaderError::Truncated(b.len()));
        }
        let magic = get_u32(b, 0);
        if magic != SHM_MAGIC {
            return Err(ShmHeaderError::BadMagic(magic));
        }
        let version = get_u16(b, 4);
        if version != SHM_VERSION {
            return Err(ShmHeaderError::BadVersion(version));
        }
        let hl = get_u16(b, 6);
        if usize::from(hl) != SHM_HEADER_LEN {
            return Err(ShmHeaderError::BadHeaderLen(hl));
        }
        let layout = RegionLayout {
            request_offset: get_u32(b, 16),
            request_capacity: get_u32(b, 20),
            response_offset: get_u32(b, 24),
            response_capacity: get_u32(b, 28),
        };
        let l = &layout;
        if (l.request_offset as usize) < SHM_HEADER_LEN
            || (l.response_offset as usize) < SHM_HEADER_LEN
        {
            return Err(ShmHeaderError::BadLayout("area offset below the header"));
        }
        l.check_areas().map_err(ShmHeaderError::BadLayout)?;
        match l
            .request_offset
            .checked_add(l.request_capacity)
            .and_then(align64)
        {
            Some(end) if l.response_offset >= end => {}
            _ => {
                return Err(ShmHeaderError::BadLayout(
                    "response area overlaps the request area",
                ))
            }
        }
        Ok(PosixShmHeader {
            owner_pid: get_u32(b, 8) as i32,
            owner_generation: get_u32(b, 12),
            layout,
            req_seq: get_u64(b, 32),
            resp_seq: get_u64(b, 40),
            req_len: get_u32(b, 48),
            resp_len: get_u32(b, 52),
            req_signal: get_u32(b, 56),
            resp_signal: get_u32(b, 60),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed() {
        let good =
            PosixShmHeader::new(1, 2, RegionLayout::for_limits(1024, 1024).unwrap()).encode();
        assert_eq!(
            PosixShmHeader::decode(&good[..63]),
            Err(ShmHeaderError::Truncated(63))
        );
        let e = |off: usize, v: u32| {
            let mut b = good;
            put_u32(&mut b, off, v);
            PosixShmHeader::decode(&b).unwrap_err()
        };
        assert!(matches!(e(0, 1), ShmHeaderError::BadMagic(1)));
        assert!(matches!(e(4, 0x0040_0002), ShmHeaderError::BadVersion(2)));
        assert!(matches!(
            e(4, 0x0020_0003),
            ShmHeaderError::BadHeaderLen(32)
        ));
        assert!(matches!(e(16, 0), ShmHeaderError::BadLayout(_)));
        assert!(matches!(e(20, 0), ShmHeaderError::BadLayout(_)));
        assert!(matches!(e(20, 100), ShmHeaderError::BadLayout(_)));
        assert!(matches!(e(24, 128), ShmHeaderError::BadLayout(_)));
        assert!(matches!(e(20, 0xffff_ffc0), ShmHeaderError::BadLayout(_)));
        assert!(RegionLayout::for_limits(u32::MAX, 1).is_none());
    }
}
