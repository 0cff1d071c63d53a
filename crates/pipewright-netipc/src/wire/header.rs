//! The 32-byte outer message header carried by every netipc message.
//!
//! ```
//! use pipewright_netipc::header::{Header, Kind, HEADER_LEN};
//! let h = Header::request(1, 7, 8);
//! let bytes = h.encode();
//! assert_eq!(bytes.len(), HEADER_LEN);
//! assert_eq!(Header::decode(&bytes).unwrap(), h);
//! assert_eq!(h.kind, Kind::Request);
//! ```

use crate::wire::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use std::fmt;

/// `"NIPC"` as a native-endian u32.
pub const MAGIC: u32 = 0x4e49_5043;
/// Protocol version.
pub const VERSION: u16 = 1;
/// Size of the outer header.
pub const HEADER_LEN: usize = 32;
/// Header flag: the payload is a batch with a directory.
pub const FLAG_BATCH: u16 = 0x0001;

/// Control opcodes (the `code` of a [`Kind::Control`] message).
pub mod control {
    /// Client HELLO.
    pub const HELLO: u16 = 1;
    /// Server HELLO_ACK.
    pub const HELLO_ACK: u16 = 2;
}

/// Method codes (the `code` of request and response messages).
pub mod method {
    /// u64 increment (test and benchmark).
    pub const INCREMENT: u16 = 1;
    /// cgroups snapshot.
    pub const CGROUPS_SNAPSHOT: u16 = 2;
    /// String reverse (test).
    pub const STRING_REVERSE: u16 = 3;
    /// cgroups lookup.
    pub const CGROUPS_LOOKUP: u16 = 4;
    /// apps lookup.
    pub const APPS_LOOKUP: u16 = 5;
}

/// Message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Kind {
    /// Client request.
    Request = 1,
    /// Server response.
    Response = 2,
    /// Handshake control message.
    Control = 3,
}

impl Kind {
    /// Parses a wire value.
    ///
    /// ```
    /// use pipewright_netipc::header::Kind;
    /// assert_eq!(Kind::from_u16(2), Some(Kind::Response));
    /// assert_eq!(Kind::from_u16(4), None);
    /// ```
    pub fn from_u16(v: u16) -> Option<Kind> {
        match v {
            1 => Some(Kind::Request),
            2 => Some(Kind::Response),
            3 => Some(Kind::Control),
            _ => None,
        }
    }
}

/// Envelope-level status (`transport_status`). Any u16 can appear on the wire,
/// so this is an open set with named constants.
///
/// ```
/// use pipewright_netipc::header::TransportStatus;
/// assert_eq!(TransportStatus::AUTH_FAILED.0, 2);
/// assert_eq!(TransportStatus(5).to_string(), "LIMIT_EXCEEDED");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransportStatus(pub u16);

impl TransportStatus {
    /// Success.
    pub const OK: Self = Self(0);
    /// Malformed envelope or payload.
    pub const BAD_ENVELOPE: Self = Self(1);
    /// Auth token mismatch.
    pub const AUTH_FAILED: Self = Self(2);
    /// Incompatible version, layout or packet size.
    pub const INCOMPATIBLE: Self = Self(3);
    /// No common profile, or method not served.
    pub const UNSUPPORTED: Self = Self(4);
    /// A negotiated limit was exceeded.
    pub const LIMIT_EXCEEDED: Self = Self(5);
    /// The handler failed.
    pub const INTERNAL_ERROR: Self = Self(6);

    /// The upstream name of a known status.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "OK",
            1 => "BAD_ENVELOPE",
            2 => "AUTH_FAILED",
            3 => "INCOMPATIBLE",
            4 => "UNSUPPORTED",
            5 => "LIMIT_EXCEEDED",
            6 => "INTERNAL_ERROR",
            _ => return None,
        })
    }
}

impl fmt::Display for TransportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "status {}", self.0),
        }
    }
}

/// Why an outer header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 32 bytes.
    #[error("message header truncated: {len} bytes, need 32")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Magic is not `NIPC`.
    #[error("bad message magic {0:#010x}, expected 0x4e495043 (\"NIPC\")")]
    BadMagic(u32),
    /// Version is not 1.
    #[error("unsupported message header version {0}, expected 1")]
    BadVersion(u16),
    /// header_len is not 32.
    #[error("bad header_len {0}, expected 32")]
    BadHeaderLen(u16),
    /// kind is not 1, 2 or 3.
    #[error("unknown message kind {0}, expected 1 (request), 2 (response) or 3 (control)")]
    BadKind(u16),
}

/// A decoded outer header. `flags`, `code` and `transport_status` are not
/// validated by the decoder (as upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Message kind.
    pub kind: Kind,
    /// Flags (bit 0 = [`FLAG_BATCH`]).
    pub flags: u16,
    /// Method code or control opcode.
    pub code: u16,
    /// Envelope status.
    pub transport_status: TransportStatus,
    /// Length of the whole logical payload after the header.
    pub payload_len: u32,
    /// 1 for a single message, N for a batch.
    pub item_count: u32,
    /// Request/response correlation id.
    pub message_id: u64,
}

impl Header {
    /// A single-item request header.
    pub fn request(code: u16, message_id: u64, payload_len: u32) -> Header {
        Header {
            kind: Kind::Request,
            flags: 0,
            code,
            transport_status: TransportStatus::OK,
            payload_len,
            item_count: 1,
            message_id,
        }
    }

    /// A single-item response header.
    pub fn response(
        code: u16,
        message_id: u64,
        status: TransportStatus,
        payload_len: u32,
    ) -> Header {
        Header {
            kind: Kind::Response,
            flags: 0,
            code,
            transport_status: status,
            payload_len,
            item_count: 1,
            message_id,
        }
    }

    /// An OK response header for a batch of `item_count` answers whose encoded
    /// envelope is `payload_len` bytes.
    pub fn batch_response(code: u16, message_id: u64, item_count: u32, payload_len: u32) -> Header {
        Header {
            flags: FLAG_BATCH,
            item_count,
            ..Header::response(code, message_id, TransportStatus::OK, payload_len)
        }
    }

    /// Whether the BATCH flag is set.
    pub fn is_batch(&self) -> bool {
        self.flags & FLAG_BATCH != 0
    }

    /// Encodes the header (host byte order).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put_u32(&mut b, 0, MAGIC);
        put_u16(&mut b, 4, VERSION);
        put_u16(&mut b, 6, HEADER_LEN as u16);
        put_u16(&mut b, 8, self.kind as u16);
        put_u16(&mut b, 10, self.flags);
        put_u16(&mut b, 12, self.code);
        put_u16(&mut b, 14, self.transport_status.0);
        put_u32(&mut b, 16, self.payload_len);
        put_u32(&mut b, 20, self.item_count);
        put_u64(&mut b, 24, self.message_id);
        b
    }

    /// Decodes the first 32 bytes of `buf` (extra bytes are ignored). Checks, in
    /// order: length, magic, version, header_len, kind.
    pub fn decode(buf: &[u8]) -> Result<Header, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated { len: buf.len() });
        }
        let magic = get_u32(buf, 0);
        if magic != MAGIC {
            return Err(HeaderError::BadMagic(magic));
        }
        let version = get_u16(buf, 4);
        if version != VERSION {
            return Err(HeaderError::BadVersion(version));
        }
        let header_len = get_u16(buf, 6);
        if usize::from(header_len) != HEADER_LEN {
            return Err(HeaderError::BadHeaderLen(header_len));
        }
        let kind_raw = get_u16(buf, 8);
        let kind = Kind::from_u16(kind_raw).ok_or(HeaderError::BadKind(kind_raw))?;
        Ok(Header {
            kind,
            flags: get_u16(buf, 10),
            code: get_u16(buf, 12),
            transport_status: TransportStatus(get_u16(buf, 14)),
            payload_len: get_u32(buf, 16),
            item_count: get_u32(buf, 20),
            message_id: get_u64(buf, 24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> [u8; 32] {
        Header::request(method::INCREMENT, 9, 8).encode()
    }

    #[test]
    fn roundtrip_all_fields() {
        let h = Header {
            kind: Kind::Control,
            flags: 0xfffe,
            code: 0x1234,
            transport_status: TransportStatus(77),
            payload_len: u32::MAX,
            item_count: 3,
            message_id: u64::MAX - 1,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn rejects_truncated() {
        let b = valid();
        for n in 0..32 {
            assert_eq!(
                Header::decode(&b[..n]),
                Err(HeaderError::Truncated { len: n })
            );
        }
    }

    #[test]
    fn rejects_bad_fields_in_order() {
        let mut b = valid();
        b[0] ^= 0xff;
        assert!(matches!(Header::decode(&b), Err(HeaderError::BadMagic(_))));
        let mut b = valid();
        put_u16(&mut b, 4, 2);
        assert_eq!(Header::decode(&b), Err(HeaderError::BadVersion(2)));
        let mut b = valid();
        put_u16(&mut b, 6, 33);
        assert_eq!(Header::decode(&b), Err(HeaderError::BadHeaderLen(33)));
        for k in [0u16, 4, 0xffff] {
            let mut b = valid();
            put_u16(&mut b, 8, k);
            assert_eq!(Header::decode(&b), Err(HeaderError::BadKind(k)));
        }
        // Version is checked before header_len.
        let mut b = valid();
        put_u16(&mut b, 4, 9);
        put_u16(&mut b, 6, 9);
        assert_eq!(Header::decode(&b), Err(HeaderError::BadVersion(9)));
    }

    #[test]
    fn does_not_validate_flags_code_status() {
        let mut b = valid();
        put_u16(&mut b, 10, 0xffff);
        put_u16(&mut b, 12, 0xffff);
        put_u16(&mut b, 14, 0xffff);
        let h = Header::decode(&b).unwrap();
        assert_eq!(
            (h.flags, h.code, h.transport_status.0),
            (0xffff, 0xffff, 0xffff)
        );
        assert!(h.is_batch());
    }
}
