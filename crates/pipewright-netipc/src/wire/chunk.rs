//! Chunking of messages larger than the negotiated packet size: the 32-byte
//! continuation header, the sender-side split and the receiver-side reassembly
//! with every consistency check.
//!
//! ```
//! use pipewright_netipc::chunk::{split_message, Reassembler, Progress};
//! use pipewright_netipc::header::Header;
//! let payload = vec![7u8; 300];
//! let header = Header::request(3, 1, 300);
//! let packets: Vec<Vec<u8>> = split_message(&header, &payload, 100)
//!     .unwrap()
//!     .map(|p| p.to_vec())
//!     .collect();
//! assert_eq!(packets.len(), 5);
//! let mut r = match Reassembler::start(header, &packets[0], 100).unwrap() {
//!     Progress::Partial(r) => r,
//!     Progress::Complete(_) => unreachable!(),
//! };
//! let mut done = None;
//! for p in &packets[1..] {
//!     done = r.push(p).unwrap();
//! }
//! assert_eq!(done.unwrap().payload, payload);
//! ```

use crate::wire::bytes::{get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};
use crate::wire::header::{Header, HEADER_LEN};

/// `"NCHK"` as a native-endian u32.
pub const CHUNK_MAGIC: u32 = 0x4e43_484b;
/// Continuation header version.
pub const CHUNK_VERSION: u16 = 1;
/// Size of the continuation header.
pub const CHUNK_HEADER_LEN: usize = 32;

/// Why a continuation header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkHeaderError {
    /// Fewer than 32 bytes.
    #[error("chunk header truncated: {len} bytes, need 32")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// Magic is not `NCHK`.
    #[error("bad chunk magic {0:#010x}, expected 0x4e43484b (\"NCHK\")")]
    BadMagic(u32),
    /// Version is not 1.
    #[error("unsupported chunk header version {0}, expected 1")]
    BadVersion(u16),
    /// Flags are not 0.
    #[error("chunk header flags are {0:#06x}, expected 0")]
    NonZeroFlags(u16),
    /// chunk_payload_len is 0.
    #[error("chunk_payload_len is 0")]
    EmptyChunk,
}

/// A decoded continuation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkHeader {
    /// The first packet's message id.
    pub message_id: u64,
    /// 32 + payload_len of the whole message.
    pub total_message_len: u32,
    /// 1..count-1 (the first packet is index 0).
    pub chunk_index: u32,
    /// Packets in the message, including the first.
    pub chunk_count: u32,
    /// Bytes after this header in this packet.
    pub chunk_payload_len: u32,
}

impl ChunkHeader {
    /// Encodes the header (flags are always 0).
    pub fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut b = [0u8; CHUNK_HEADER_LEN];
        put_u32(&mut b, 0, CHUNK_MAGIC);
        put_u16(&mut b, 4, CHUNK_VERSION);
        put_u16(&mut b, 6, 0);
        put_u64(&mut b, 8, self.message_id);
        put_u32(&mut b, 16, self.total_message_len);
        put_u32(&mut b, 20, self.chunk_index);
        put_u32(&mut b, 24, self.chunk_count);
        put_u32(&mut b, 28, self.chunk_payload_len);
        b
    }

    /// Decodes the first 32 bytes: length, magic, version, flags == 0,
    /// chunk_payload_len > 0.
    pub fn decode(buf: &[u8]) -> Result<ChunkHeader, ChunkHeaderError> {
        if buf.len() < CHUNK_HEADER_LEN {
            return Err(ChunkHeaderError::Truncated { len: buf.len() });
        }
        let magic = get_u32(buf, 0);
        if magic != CHUNK_MAGIC {
            return Err(ChunkHeaderError::BadMagic(magic));
        }
        let version = get_u16(buf, 4);
        if version != CHUNK_VERSION {
            return Err(ChunkHeaderError::BadVersion(version));
        }
        let flags = get_u16(buf, 6);
        if flags != 0 {
            return Err(ChunkHeaderError::NonZeroFlags(flags));
        }
        let h = ChunkHeader {
            message_id: get_u64(buf, 8),
            total_message_len: get_u32(buf, 16),
            chunk_index: get_u32(buf, 20),
            chunk_count: get_u32(buf, 24),
            chunk_payload_len: get_u32(buf, 28),
        };
        if h.chunk_payload_len == 0 {
            return Err(ChunkHeaderError::EmptyChunk);
        }
        Ok(h)
    }
}

/// Why a message could not be split or reassembled. Any of these breaks the
/// session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Packet size cannot carry a header plus one byte.
    #[error("packet size {0} is too small; it must exceed 32")]
    PacketSizeTooSmall(usize),
    /// The header's payload_len does not describe the payload given.
    #[error("header payload_len {header} does not match the {actual}-byte payload")]
    PayloadLenMismatch {
        /// Value in the header.
        header: u32,
        /// Actual payload length.
        actual: usize,
    },
    /// The message cannot be described with u32 lengths.
    #[error("message of {0} payload bytes is too large for the wire format")]
    MessageTooLarge(usize),
    /// The first packet is longer than the message it announces.
    #[error("first packet is {packet} bytes but the message is only {total}")]
    FirstPacketTooLong {
        /// Packet length.
        packet: usize,
        /// 32 + payload_len.
        total: usize,
    },
    /// A packet is shorter than a header.
    #[error("chunk {index}: packet of {len} bytes is shorter than a chunk header")]
    Truncated {
        /// Expected chunk index.
        index: u32,
        /// Packet length.
        len: usize,
    },
    /// A packet exceeds the negotiated packet size.
    #[error("packet of {len} bytes exceeds the negotiated packet size {packet_size}")]
    PacketTooLarge {
        /// Packet length.
        len: usize,
        /// Negotiated packet size.
        packet_size: usize,
    },
    /// The continuation header is malformed.
    #[error("chunk {index}: {source}")]
    BadHeader {
        /// Expected chunk index.
        index: u32,
        /// The decode error.
        source: ChunkHeaderError,
    },
    /// A field of the continuation header does not match the message.
    #[error("chunk {index}: {field} is {found}, expected {expected}")]
    Mismatch {
        /// Expected chunk index.
        index: u32,
        /// Field name.
        field: &'static str,
        /// Value in the chunk.
        found: u64,
        /// Value required.
        expected: u64,
    },
    /// More data than the header announced.
    #[error("chunk {index}: {len} more bytes would overflow the {payload_len}-byte payload ({assembled} already assembled)")]
    Overflow {
        /// Chunk index.
        index: u32,
        /// Chunk length.
        len: usize,
        /// Bytes already assembled.
        assembled: usize,
        /// Announced payload length.
        payload_len: usize,
    },
    /// More chunks than announced.
    #[error("chunk {index} is beyond the announced chunk count {count}")]
    TooManyChunks {
        /// Chunk index.
        index: u32,
        /// Announced count.
        count: u32,
    },
}

/// A complete logical message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The outer header (payload_len = full payload).
    pub header: Header,
    /// The whole payload.
    pub payload: Vec<u8>,
}

/// One outgoing packet: a 32-byte prefix (outer header or continuation header)
/// followed by a slice of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Outer header (first packet) or continuation header.
    pub prefix: [u8; 32],
    /// The payload bytes in this packet.
    pub body: &'a [u8],
}

impl Packet<'_> {
    /// The packet as one contiguous buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32 + self.body.len());
        v.extend_from_slice(&self.prefix);
        v.extend_from_slice(self.body);
        v
    }

    /// Total packet length.
    pub fn len(&self) -> usize {
        32 + self.body.len()
    }

    /// Always false: a packet has at least its 32-byte prefix.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn div_ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// Number of packets a message of `payload_len` bytes needs at `packet_size`.
///
/// ```
/// assert_eq!(pipewright_netipc::chunk::packet_count(300, 100), Some(5));
/// assert_eq!(pipewright_netipc::chunk::packet_count(68, 100), Some(1));
/// ```
pub fn packet_count(payload_len: usize, packet_size: usize) -> Option<usize> {
    if packet_size <= HEADER_LEN {
        return None;
    }
    if HEADER_LEN.checked_add(payload_len)? <= packet_size {
        return Some(1);
    }
    let budget = packet_size - HEADER_LEN;
    Some(1 + div_ceil(payload_len - budget.min(payload_len), budget))
}

/// Iterator over the packets of one message, see [`split_message`].
#[derive(Debug, Clone)]
pub struct Chunker<'a> {
    header: Header,
    payload: &'a [u8],
    budget: usize,
    single: bool,
    offset: usize,
    index: u32,
    count: u32,
}

impl<'a> Iterator for Chunker<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        if self.index >= self.count {
            return None;
        }
        let index = self.index;
        self.index += 1;
        if self.single {
            self.offset = self.payload.len();
            return Some(Packet {
                prefix: self.header.encode(),
                body: self.payload,
            });
        }
        let rest = self.payload.get(self.offset..).unwrap_or_default();
        let body = &rest[..rest.len().min(self.budget)];
        self.offset += body.len();
        let prefix = if index == 0 {
            self.header.encode()
        } else {
            ChunkHeader {
                message_id: self.header.message_id,
                total_message_len: self.header.payload_len.wrapping_add(HEADER_LEN as u32),
                chunk_index: index,
                chunk_count: self.count,
                chunk_payload_len: body.len() as u32,
            }
            .encode()
        };
        Some(Packet { prefix, body })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.count - self.index) as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Chunker<'_> {}

/// Splits a message into packets of at most `packet_size` bytes: one packet
/// when `32 + payload_len <= packet_size`, otherwise the outer header with the
/// first `packet_size - 32` bytes followed by continuation packets, every packet
/// but the last filled to exactly `packet_size`.
pub fn split_message<'a>(
    header: &Header,
    payload: &'a [u8],
    packet_size: usize,
) -> Result<Chunker<'a>, ChunkError> {
    if packet_size <= HEADER_LEN {
        return Err(ChunkError::PacketSizeTooSmall(packet_size));
    }
    if payload.len() > (u32::MAX as usize) - HEADER_LEN {
        return Err(ChunkError::MessageTooLarge(payload.len()));
    }
    if header.payload_len as usize != payload.len() {
        return Err(ChunkError::PayloadLenMismatch {
            header: header.payload_len,
            actual: payload.len(),
        });
    }
    let count = packet_count(payload.len(), packet_size)
        .ok_or(ChunkError::PacketSizeTooSmall(packet_size))?;
    let count = u32::try_from(count).map_err(|_| ChunkError::MessageTooLarge(payload.len()))?;
    Ok(Chunker {
        header: *header,
        payload,
        budget: packet_size - HEADER_LEN,
        single: count == 1,
        offset: 0,
        index: 0,
        count,
    })
}

/// Result of feeding the first packet of a message.
#[derive(Debug)]
pub enum Progress {
    /// The message fit in one packet.
    Complete(Message),
    /// More continuation packets are needed.
    Partial(Reassembler),
}

/// Receiver-side reassembly state of one chunked message.
#[derive(Debug)]
pub struct Reassembler {
    header: Header,
    packet_size: usize,
    total: u32,
    expected_count: u32,
    next_index: u32,
    payload: Vec<u8>,
}

impl Reassembler {
    /// Starts a message from its first packet (`packet` includes the 32-byte
    /// header already decoded into `header`; directional limits must have been
    /// checked by the caller, since this allocates `payload_len` bytes).
    pub fn start(
        header: Header,
        packet: &[u8],
        packet_size: usize,
    ) -> Result<Progress, ChunkError> {
        if packet_size <= HEADER_LEN {
            return Err(ChunkError::PacketSizeTooSmall(packet_size));
        }
        let payload_len = header.payload_len as usize;
        let total = HEADER_LEN + payload_len;
        if packet.len() > total {
            return Err(ChunkError::FirstPacketTooLong {
                packet: packet.len(),
                total,
            });
        }
        if packet.len() < HEADER_LEN {
            return Err(ChunkError::Truncated {
                index: 0,
                len: packet.len(),
            });
        }
        let first = &packet[HEADER_LEN..];
        if packet.len() == total {
            return Ok(Progress::Complete(Message {
                header,
                payload: first.to_vec(),
            }));
        }
        if packet.len() > packet_size {
            return Err(ChunkError::PacketTooLarge {
                len: packet.len(),
                packet_size,
            });
        }
        let total32 = u32::try_from(total).map_err(|_| ChunkError::MessageTooLarge(payload_len))?;
        let budget = packet_size - HEADER_LEN;
        let expected = 1 + div_ceil(payload_len - first.len(), budget);
        let expected_count =
            u32::try_from(expected).map_err(|_| ChunkError::MessageTooLarge(payload_len))?;
        let mut payload = Vec::with_capacity(payload_len);
        payload.extend_from_slice(first);
        Ok(Progress::Partial(Reassembler {
            header,
            packet_size,
            total: total32,
            expected_count,
            next_index: 1,
            payload,
        }))
    }

    /// The outer header of the message being assembled.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The chunk count the receiver expects.
    pub fn expected_count(&self) -> u32 {
        self.expected_count
    }

    /// Feeds one continuation packet; returns the message once complete.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<Message>, ChunkError> {
        let index = self.next_index;
        if packet.len() < CHUNK_HEADER_LEN {
            return Err(ChunkError::Truncated {
                index,
                len: packet.len(),
            });
        }
        if packet.len() > self.packet_size {
            return Err(ChunkError::PacketTooLarge {
                len: packet.len(),
                packet_size: self.packet_size,
            });
        }
        let ch = ChunkHeader::decode(packet)
            .map_err(|source| ChunkError::BadHeader { index, source })?;
        if index >= self.expected_count {
            return Err(ChunkError::TooManyChunks {
                index,
                count: self.expected_count,
            });
        }
        let checks: [(&'static str, u64, u64); 4] = [
            ("message_id", ch.message_id, self.header.message_id),
            ("chunk_index", ch.chunk_index.into(), index.into()),
            (
                "chunk_count",
                ch.chunk_count.into(),
                self.expected_count.into(),
            ),
            (
                "total_message_len",
                ch.total_message_len.into(),
                self.total.into(),
            ),
        ];
        for (field, found, expected) in checks {
            if found != expected {
                return Err(ChunkError::Mismatch {
                    index,
                    field,
                    found,
                    expected,
                });
            }
        }
        let body = &packet[CHUNK_HEADER_LEN..];
        if body.len() as u64 != u64::from(ch.chunk_payload_len) {
            return Err(ChunkError::Mismatch {
                index,
                field: "chunk_payload_len",
                found: ch.chunk_payload_len.into(),
                expected: body.len() as u64,
            });
        }
        let payload_len = self.header.payload_len as usize;
        if self.payload.len() + body.len() > payload_len {
            return Err(ChunkError::Overflow {
                index,
                len: body.len(),
                assembled: self.payload.len(),
                payload_len,
            });
        }
        self.payload.extend_from_slice(body);
        self.next_index += 1;
        if self.payload.len() == payload_len {
            Ok(Some(Message {
                header: self.header,
                payload: std::mem::take(&mut self.payload),
            }))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(payload: &[u8], id: u64, packet_size: usize) -> (Header, Vec<Vec<u8>>) {
        let h = Header::request(1, id, payload.len() as u32);
        let v = split_message(&h, payload, packet_size)
            .unwrap()
            .map(|p| p.to_vec())
            .collect();
        (h, v)
    }

    fn reassemble(h: Header, pk: &[Vec<u8>], packet_size: usize) -> Result<Message, ChunkError> {
        match Reassembler::start(h, &pk[0], packet_size)? {
            Progress::Complete(m) => Ok(m),
            Progress::Partial(mut r) => {
                for p in &pk[1..] {
                    if let Some(m) = r.push(p)? {
                        return Ok(m);
                    }
                }
                panic!("not complete")
            }
        }
    }

    #[test]
    fn example_300_bytes_at_100() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let (h, pk) = packets(&payload, 77, 100);
        let lens: Vec<usize> = pk.iter().map(Vec::len).collect();
        assert_eq!(lens, [100, 100, 100, 100, 60]);
        for (i, p) in pk.iter().enumerate().skip(1) {
            let ch = ChunkHeader::decode(p).unwrap();
            assert_eq!(ch.message_id, 77);
            assert_eq!(ch.total_message_len, 332);
            assert_eq!(ch.chunk_index, i as u32);
            assert_eq!(ch.chunk_count, 5);
            assert_eq!(ch.chunk_payload_len as usize, p.len() - 32);
        }
        assert_eq!(reassemble(h, &pk, 100).unwrap().payload, payload);
    }

    #[test]
    fn boundaries() {
        for (len, size, count) in [
            (0, 33, 1),
            (1, 33, 1),
            (2, 33, 2),
            (68, 100, 1),
            (69, 100, 2),
            (136, 100, 2),
            (137, 100, 3),
        ] {
            let payload = vec![0xa5u8; len];
            let (h, pk) = packets(&payload, 1, size);
            assert_eq!(pk.len(), count, "len {len} size {size}");
            assert_eq!(packet_count(len, size), Some(count));
            assert!(pk.iter().all(|p| p.len() <= size));
            assert_eq!(reassemble(h, &pk, size).unwrap().payload, payload);
        }
        assert_eq!(packet_count(1, 32), None);
    }

    #[test]
    fn split_rejects_bad_input() {
        let h = Header::request(1, 1, 5);
        assert!(matches!(
            split_message(&h, &[0; 5], 32),
            Err(ChunkError::PacketSizeTooSmall(32))
        ));
        assert!(matches!(
            split_message(&h, &[0; 4], 64),
            Err(ChunkError::PayloadLenMismatch {
                header: 5,
                actual: 4
            })
        ));
    }

    #[test]
    fn chunk_header_decode_errors() {
        let good = ChunkHeader {
            message_id: 1,
            total_message_len: 100,
            chunk_index: 1,
            chunk_count: 2,
            chunk_payload_len: 4,
        }
        .encode();
        assert_eq!(
            ChunkHeader::decode(&good[..31]),
            Err(ChunkHeaderError::Truncated { len: 31 })
        );
        let mut b = good;
        b[3] = 0;
        assert!(matches!(
            ChunkHeader::decode(&b),
            Err(ChunkHeaderError::BadMagic(_))
        ));
        let mut b = good;
        put_u16(&mut b, 4, 2);
        assert_eq!(
            ChunkHeader::decode(&b),
            Err(ChunkHeaderError::BadVersion(2))
        );
        let mut b = good;
        put_u16(&mut b, 6, 1);
        assert_eq!(
            ChunkHeader::decode(&b),
            Err(ChunkHeaderError::NonZeroFlags(1))
        );
        let mut b = good;
        put_u32(&mut b, 28, 0);
        assert_eq!(ChunkHeader::decode(&b), Err(ChunkHeaderError::EmptyChunk));
    }

    /// Builds the 5-packet example, lets `f` corrupt packet `i`, and returns
    /// the reassembly error.
    fn corrupt(i: usize, f: impl FnOnce(&mut Vec<u8>)) -> ChunkError {
        let payload = vec![1u8; 300];
        let (h, mut pk) = packets(&payload, 9, 100);
        f(&mut pk[i]);
        reassemble(h, &pk, 100).unwrap_err()
    }

    #[test]
    fn receiver_checks() {
        assert!(matches!(
            corrupt(1, |p| put_u64(p, 8, 10)),
            ChunkError::Mismatch {
                field: "message_id",
                ..
            }
        ));
        assert!(matches!(
            corrupt(2, |p| put_u32(p, 20, 3)),
            ChunkError::Mismatch {
                field: "chunk_index",
                index: 2,
                ..
            }
        ));
        assert!(matches!(
            corrupt(1, |p| put_u32(p, 24, 6)),
            ChunkError::Mismatch {
                field: "chunk_count",
                ..
            }
        ));
        assert!(matches!(
            corrupt(1, |p| put_u32(p, 16, 331)),
            ChunkError::Mismatch {
                field: "total_message_len",
                ..
            }
        ));
        assert!(matches!(
            corrupt(1, |p| put_u32(p, 28, 67)),
            ChunkError::Mismatch {
                field: "chunk_payload_len",
                ..
            }
        ));
        assert!(matches!(
            corrupt(1, |p| p.truncate(31)),
            ChunkError::Truncated { index: 1, len: 31 }
        ));
        assert!(matches!(
            corrupt(1, |p| p.push(0)),
            ChunkError::PacketTooLarge { len: 101, .. }
        ));
        assert!(matches!(
            corrupt(3, |p| p[0] = 0),
            ChunkError::BadHeader {
                index: 3,
                source: ChunkHeaderError::BadMagic(_)
            }
        ));
        assert!(matches!(
            corrupt(1, |p| put_u16(p, 6, 4)),
            ChunkError::BadHeader {
                source: ChunkHeaderError::NonZeroFlags(4),
                ..
            }
        ));
        // Last chunk longer than what remains.
        assert!(matches!(
            corrupt(4, |p| {
                p.extend_from_slice(&[0; 8]);
                put_u32(p, 28, 36);
            }),
            ChunkError::Overflow { index: 4, .. }
        ));
        // First packet longer than the announced message.
        let h = Header::request(1, 1, 4);
        let mut p = h.encode().to_vec();
        p.extend_from_slice(&[0; 5]);
        assert!(matches!(
            Reassembler::start(h, &p, 100),
            Err(ChunkError::FirstPacketTooLong {
                packet: 37,
                total: 36
            })
        ));
    }

    #[test]
    fn short_chunks_cannot_exceed_count() {
        // A sender that under-fills chunks runs past the expected count.
        let payload = [3u8; 100];
        let h = Header::request(1, 4, 100);
        let mut first = h.encode().to_vec();
        first.extend_from_slice(&payload[..68]);
        let Progress::Partial(mut r) = Reassembler::start(h, &first, 100).unwrap() else {
            panic!()
        };
        assert_eq!(r.expected_count(), 2);
        let mut c = ChunkHeader {
            message_id: 4,
            total_message_len: 132,
            chunk_index: 1,
            chunk_count: 2,
            chunk_payload_len: 10,
        }
        .encode()
        .to_vec();
        c.extend_from_slice(&[3; 10]);
        assert_eq!(r.push(&c).unwrap(), None);
        let mut c2 = ChunkHeader {
            message_id: 4,
            total_message_len: 132,
            chunk_index: 2,
            chunk_count: 2,
            chunk_payload_len: 22,
        }
        .encode()
        .to_vec();
        c2.extend_from_slice(&[3; 22]);
        assert!(matches!(
            r.push(&c2),
            Err(ChunkError::TooManyChunks { index: 2, count: 2 })
        ));
    }
}
