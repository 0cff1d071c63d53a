//! CGROUPS_SNAPSHOT (method 2).
//!
//! Request: `u16 layout_version = 1, u16 flags = 0`.
//! Response: a 24-byte header (`layout_version, flags, item_count,
//! systemd_enabled, reserved, generation`), `item_count × {u32 offset, u32
//! length}` (offsets relative to the packed area at `24 + 8 × item_count`),
//! then 8-aligned items, each a 32-byte item header followed by `name\0path\0`.
//!
//! ```
//! use pipewright_netipc::codec::cgroups_snapshot::{CgroupItem, Snapshot};
//! let snap = Snapshot {
//!     systemd_enabled: 1,
//!     generation: 9,
//!     items: vec![CgroupItem::new(b"system.slice".to_vec(), b"/sys/fs/cgroup/system.slice/cgroup.procs".to_vec())],
//! };
//! let bytes = snap.encode().unwrap();
//! assert_eq!(Snapshot::decode(&bytes).unwrap(), snap);
//! ```

use super::{expect, need, nul_terminated, CodecError};
use crate::wire::bytes::{align8, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

/// Layout version of every structure here.
pub const LAYOUT_VERSION: u16 = 1;
/// Request payload size.
pub const REQUEST_LEN: usize = 4;
/// Response header size.
pub const RESPONSE_HEADER_LEN: usize = 24;
/// Item header size.
pub const ITEM_HEADER_LEN: usize = 32;

const REQ: &str = "CGROUPS_SNAPSHOT request";
const RESP: &str = "CGROUPS_SNAPSHOT response";
const ITEM: &str = "CGROUPS_SNAPSHOT item";

/// Encodes the (fixed) request.
pub fn encode_request() -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    put_u16(&mut b, 0, LAYOUT_VERSION);
    b
}

/// Decodes a request: layout_version 1 and flags 0.
pub fn decode_request(payload: &[u8]) -> Result<(), CodecError> {
    need(REQ, payload, REQUEST_LEN)?;
    expect(
        REQ,
        "layout_version",
        get_u16(payload, 0).into(),
        LAYOUT_VERSION.into(),
    )?;
    expect(REQ, "flags", get_u16(payload, 2).into(), 0)
}

/// Netdata's 32-bit name hash (`simple_hash`): FNV-1 order, multiply then xor.
///
/// ```
/// use pipewright_netipc::codec::cgroups_snapshot::simple_hash;
/// assert_eq!(simple_hash(b""), 0x811c9dc5);
/// ```
pub fn simple_hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &b| {
        h.wrapping_mul(16_777_619) ^ u32::from(b)
    })
}

/// One cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CgroupItem {
    /// `simple_hash(name)` in Netdata.
    pub hash: u32,
    /// Option bits.
    pub options: u32,
    /// Non-zero when enabled.
    pub enabled: u32,
    /// Name bytes (no NUL).
    pub name: Vec<u8>,
    /// `cgroup.procs` path bytes (no NUL; may be empty).
    pub path: Vec<u8>,
}

impl CgroupItem {
    /// An enabled item with Netdata's hash of `name` and no options.
    pub fn new(name: Vec<u8>, path: Vec<u8>) -> CgroupItem {
        CgroupItem {
            hash: simple_hash(&name),
            options: 0,
            enabled: 1,
            name,
            path,
        }
    }

    fn encoded_len(&self) -> usize {
        ITEM_HEADER_LEN + self.name.len() + 1 + self.path.len() + 1
    }

    fn decode(item: &[u8]) -> Result<CgroupItem, CodecError> {
        need(ITEM, item, ITEM_HEADER_LEN)?;
        expect(
            ITEM,
            "layout_version",
            get_u16(item, 0).into(),
            LAYOUT_VERSION.into(),
        )?;
        expect(ITEM, "flags", get_u16(item, 2).into(), 0)?;
        let (name_off, name_len) = (get_u32(item, 16), get_u32(item, 20));
        let (path_off, path_len) = (get_u32(item, 24), get_u32(item, 28));
        for (field, off, len) in [("name", name_off, name_len), ("path", path_off, path_len)] {
            if (off as usize) < ITEM_HEADER_LEN {
                return Err(CodecError::OutOfBounds {
                    what: ITEM,
                    field,
                    offset: off.into(),
                    length: len.into(),
                    limit: item.len() as u64,
                });
            }
        }
        let name = nul_terminated(ITEM, "name", item, name_off, name_len)?;
        let path = nul_terminated(ITEM, "path", item, path_off, path_len)?;
        // Regions including their NUL must not overlap (both fit in the item,
        // so these sums cannot overflow u64).
        let (ns, ne) = (
            u64::from(name_off),
            u64::from(name_off) + u64::from(name_len) + 1,
        );
        let (ps, pe) = (
            u64::from(path_off),
            u64::from(path_off) + u64::from(path_len) + 1,
        );
        if ns < pe && ps < ne {
            return Err(CodecError::Overlap {
                what: ITEM,
                first: "name",
                second: "path",
            });
        }
        Ok(CgroupItem {
            hash: get_u32(item, 4),
            options: get_u32(item, 8),
            enabled: get_u32(item, 12),
            name: name.to_vec(),
            path: path.to_vec(),
        })
    }

    fn encode_into(&self, out: &mut [u8]) {
        let name_off = ITEM_HEADER_LEN;
        let path_off = name_off + self.name.len() + 1;
        put_u16(out, 0, LAYOUT_VERSION);
        put_u16(out, 2, 0);
        put_u32(out, 4, self.hash);
        put_u32(out, 8, self.options);
        put_u32(out, 12, self.enabled);
        put_u32(out, 16, name_off as u32);
        put_u32(out, 20, self.name.len() as u32);
        put_u32(out, 24, path_off as u32);
        put_u32(out, 28, self.path.len() as u32);
        out[name_off..name_off + self.name.len()].copy_from_slice(&self.name);
        out[path_off..path_off + self.path.len()].copy_from_slice(&self.path);
    }
}

/// A snapshot response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Non-zero when systemd is in use.
    pub systemd_enabled: u32,
    /// Incremented by the provider per snapshot.
    pub generation: u64,
    /// The cgroups.
    pub items: Vec<CgroupItem>,
}

impl Snapshot {
    /// Encodes the response; items start 8-aligned, padding is zero.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let too_large = |field, value: usize| CodecError::TooLarge {
            what: RESP,
            field,
            value: value as u64,
        };
        let n = self.items.len();
        let dir_end = n
            .checked_mul(8)
            .and_then(|d| d.checked_add(RESPONSE_HEADER_LEN))
            .ok_or(too_large("item_count", n))?;
        let mut offsets = Vec::with_capacity(n);
        let mut area = 0usize;
        for it in &self.items {
            area = align8(area).ok_or(too_large("payload", area))?;
            offsets.push(area);
            area = area
                .checked_add(it.encoded_len())
                .ok_or(too_large("payload", area))?;
        }
        let total = dir_end
            .checked_add(area)
            .ok_or(too_large("payload", area))?;
        if total > u32::MAX as usize {
            return Err(too_large("payload", total));
        }
        let mut out = vec![0u8; total];
        put_u16(&mut out, 0, LAYOUT_VERSION);
        put_u32(&mut out, 4, n as u32);
        put_u32(&mut out, 8, self.systemd_enabled);
        put_u64(&mut out, 16, self.generation);
        for (i, (it, &off)) in self.items.iter().zip(&offsets).enumerate() {
            put_u32(&mut out, RESPONSE_HEADER_LEN + 8 * i, off as u32);
            put_u32(
                &mut out,
                RESPONSE_HEADER_LEN + 8 * i + 4,
                it.encoded_len() as u32,
            );
            let start = dir_end + off;
            it.encode_into(&mut out[start..start + it.encoded_len()]);
        }
        Ok(out)
    }

    /// Strict decode of a response payload.
    pub fn decode(payload: &[u8]) -> Result<Snapshot, CodecError> {
        need(RESP, payload, RESPONSE_HEADER_LEN)?;
        expect(
            RESP,
            "layout_version",
            get_u16(payload, 0).into(),
            LAYOUT_VERSION.into(),
        )?;
        expect(RESP, "flags", get_u16(payload, 2).into(), 0)?;
        expect(RESP, "reserved", get_u32(payload, 12).into(), 0)?;
        let count = get_u32(payload, 4);
        let dir_end = (count as usize)
            .checked_mul(8)
            .and_then(|d| d.checked_add(RESPONSE_HEADER_LEN))
            .unwrap_or(usize::MAX);
        need(RESP, payload, dir_end)?;
        let area = &payload[dir_end..];
        let mut items = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let off = get_u32(payload, RESPONSE_HEADER_LEN + 8 * index);
            let len = get_u32(payload, RESPONSE_HEADER_LEN + 8 * index + 4);
            if off & 7 != 0 {
                return Err(CodecError::BadAlignment {
                    what: RESP,
                    index,
                    offset: off,
                });
            }
            let item = (off as usize)
                .checked_add(len as usize)
                .and_then(|end| area.get(off as usize..end))
                .ok_or(CodecError::OutOfBounds {
                    what: RESP,
                    field: "item",
                    offset: off.into(),
                    length: len.into(),
                    limit: area.len() as u64,
                })?;
            items.push(CgroupItem::decode(item)?);
        }
        Ok(Snapshot {
            systemd_enabled: get_u32(payload, 8),
            generation: get_u64(payload, 16),
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            systemd_enabled: 1,
            generation: 0x1122_3344_5566_7788,
            items: vec![
                CgroupItem::new(b"a".to_vec(), b"/p".to_vec()),
                CgroupItem {
                    hash: 5,
                    options: 6,
                    enabled: 0,
                    name: b"bb".to_vec(),
                    path: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn request() {
        let r = encode_request();
        assert_eq!(r, [1, 0, 0, 0]);
        assert_eq!(decode_request(&r), Ok(()));
        assert!(matches!(
            decode_request(&r[..3]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode_request(&[2, 0, 0, 0]),
            Err(CodecError::BadLayout {
                field: "layout_version",
                ..
            })
        ));
        assert!(matches!(
            decode_request(&[1, 0, 1, 0]),
            Err(CodecError::BadLayout { field: "flags", .. })
        ));
    }

    #[test]
    fn exact_layout() {
        let b = sample().encode().unwrap();
        // header 24 + dir 16 = 40; item0 = 32+2+3 = 37 at 0; item1 at 40, 32+3+1 = 36
        assert_eq!(b.len(), 40 + 40 + 36);
        assert_eq!((get_u32(&b, 24), get_u32(&b, 28)), (0, 37));
        assert_eq!((get_u32(&b, 32), get_u32(&b, 36)), (40, 36));
        let item0 = &b[40..77];
        assert_eq!(
            (
                get_u32(item0, 16),
                get_u32(item0, 20),
                get_u32(item0, 24),
                get_u32(item0, 28)
            ),
            (32, 1, 34, 2)
        );
        assert_eq!(&item0[32..], b"a\0/p\0");
        assert!(b[77..80].iter().all(|&x| x == 0));
        assert_eq!(Snapshot::decode(&b).unwrap(), sample());
        let empty = Snapshot::default().encode().unwrap();
        assert_eq!(empty.len(), 24);
        assert_eq!(Snapshot::decode(&empty).unwrap(), Snapshot::default());
    }

    #[test]
    fn malformed() {
        let good = sample().encode().unwrap();
        let err = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            Snapshot::decode(&b).unwrap_err()
        };
        assert!(matches!(
            Snapshot::decode(&good[..23]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            err(&|b| put_u16(b, 0, 2)),
            CodecError::BadLayout {
                field: "layout_version",
                ..
            }
        ));
        assert!(matches!(
            err(&|b| put_u16(b, 2, 1)),
            CodecError::BadLayout { field: "flags", .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 12, 1)),
            CodecError::BadLayout {
                field: "reserved",
                ..
            }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 4, 100)),
            CodecError::Truncated { .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 4, u32::MAX)),
            CodecError::Truncated { .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 32, 44)),
            CodecError::BadAlignment {
                index: 1,
                offset: 44,
                ..
            }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 36, 37)),
            CodecError::OutOfBounds { field: "item", .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 28, 20)),
            CodecError::Truncated {
                what: "CGROUPS_SNAPSHOT item",
                ..
            }
        ));
        // Item-level errors (item 0 starts at 40).
        assert!(matches!(
            err(&|b| put_u16(b, 40, 0)),
            CodecError::BadLayout {
                what: "CGROUPS_SNAPSHOT item",
                ..
            }
        ));
        assert!(matches!(
            err(&|b| put_u16(b, 42, 1)),
            CodecError::BadLayout { field: "flags", .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 56, 8)),
            CodecError::OutOfBounds { field: "name", .. }
        ));
        assert!(matches!(
            err(&|b| b[73] = b'x'),
            CodecError::MissingNul { field: "name", .. }
        ));
        assert!(matches!(
            err(&|b| b[76] = b'x'),
            CodecError::MissingNul { field: "path", .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 68, 9)),
            CodecError::OutOfBounds { field: "path", .. }
        ));
        assert!(matches!(
            err(&|b| put_u32(b, 60, 3)),
            CodecError::MissingNul { field: "name", .. }
        ));
        // path placed over the name: "a\0" at 32..34 used as path too.
        assert!(matches!(
            err(&|b| {
                put_u32(b, 64, 32);
                put_u32(b, 68, 1);
            }),
            CodecError::Overlap { .. }
        ));
    }

    #[test]
    fn hash_matches_definition() {
        let mut h = 0x811c_9dc5u32;
        for &b in b"cgroup_x" {
            h = h.wrapping_mul(16_777_619);
            h ^= u32::from(b);
        }
        assert_eq!(simple_hash(b"cgroup_x"), h);
        assert_ne!(simple_hash(b"a"), simple_hash(b"b"));
    }
}
