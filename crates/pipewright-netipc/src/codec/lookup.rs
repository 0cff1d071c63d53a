//! The envelope shared by CGROUPS_LOOKUP (method 4) and APPS_LOOKUP (method 5),
//! and the string + label section their items share.
//!
//! Request: a 16-byte header (`u16 layout_version = 1, u16 flags = 0, u32
//! item_count, u32 reserved0 = 0, u32 reserved1 = 0`), `item_count × {u32
//! offset, u32 length}`, then the keys, each 8-aligned, offsets relative to the
//! packed area at `16 + 8 × item_count`. Response: the same with `u64
//! generation` in place of the two reserved words; one item per key, in order.
//!
//! An item is a fixed header, its NUL-terminated strings, zero padding to the
//! next 8-byte boundary, a labels table of `label_count × {u32 key_off, u32
//! key_len, u32 value_off, u32 value_len}` and the label strings (keys
//! non-empty). Every offset is relative to the item's start.
//!
//! ```
//! use pipewright_netipc::codec::lookup::Label;
//! let l = Label::new("io.kubernetes.pod.name", "web-0");
//! assert_eq!(l.key, b"io.kubernetes.pod.name");
//! ```

use super::{expect, need, CodecError};
use crate::wire::bytes::{align8, get_u16, get_u32, get_u64, put_u16, put_u32, put_u64};

/// Layout version of every lookup structure.
pub const LAYOUT_VERSION: u16 = 1;
/// Request and response header size.
pub const HEADER_LEN: usize = 16;
/// Size of one labels-table entry.
pub const LABEL_ENTRY_LEN: usize = 16;

/// One `key=value` label of an item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    /// Key bytes (non-empty, no NUL).
    pub key: Vec<u8>,
    /// Value bytes (no NUL).
    pub value: Vec<u8>,
}

impl Label {
    /// A label from anything byte-like.
    pub fn new(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Label {
        Label {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }
}

/// A lookup response item: how it travels, and whether it marks the suffix
/// the server could not fit.
pub trait LookupItem: Sized {
    /// Names the response in errors, e.g. `"CGROUPS_LOOKUP response"`.
    const RESPONSE: &'static str;
    /// Encodes the item (header, strings, labels).
    fn encode_item(&self) -> Result<Vec<u8>, CodecError>;
    /// Strictly decodes one item.
    fn decode_item(item: &[u8]) -> Result<Self, CodecError>;
    /// Whether the item is a `PAYLOAD_EXCEEDED` placeholder.
    fn is_payload_exceeded(&self) -> bool;
}

/// A lookup response: one item per requested key, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResponse<I> {
    /// The provider's generation; sub-responses stitched together must match.
    pub generation: u64,
    /// The items.
    pub items: Vec<I>,
}

impl<I> Default for LookupResponse<I> {
    fn default() -> Self {
        LookupResponse {
            generation: 0,
            items: Vec::new(),
        }
    }
}

impl<I: LookupItem> LookupResponse<I> {
    /// Encodes the response.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let items = self
            .items
            .iter()
            .map(I::encode_item)
            .collect::<Result<Vec<_>, _>>()?;
        encode_envelope(I::RESPONSE, generation_tail(self.generation), &items)
    }

    /// Strict decode.
    pub fn decode(payload: &[u8]) -> Result<LookupResponse<I>, CodecError> {
        let env = decode_envelope(I::RESPONSE, payload)?;
        let items = env
            .items
            .into_iter()
            .map(I::decode_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LookupResponse {
            generation: tail_generation(env.tail),
            items,
        })
    }

    /// The index of the first item the server could not fit
    /// (`PAYLOAD_EXCEEDED`): the client asks again for the keys from there on.
    pub fn exceeded_from(&self) -> Option<usize> {
        self.items.iter().position(I::is_payload_exceeded)
    }
}

fn too_large(what: &'static str, field: &'static str, value: usize) -> CodecError {
    CodecError::TooLarge {
        what,
        field,
        value: value as u64,
    }
}

/// Builds an envelope: `header_tail` fills bytes 8..16; `items` are the encoded
/// keys or items, each placed 8-aligned.
pub(crate) fn encode_envelope(
    what: &'static str,
    header_tail: [u8; 8],
    items: &[Vec<u8>],
) -> Result<Vec<u8>, CodecError> {
    let n = items.len();
    let dir_end = n
        .checked_mul(8)
        .and_then(|d| d.checked_add(HEADER_LEN))
        .ok_or(too_large(what, "item_count", n))?;
    let mut offsets = Vec::with_capacity(n);
    let mut area = 0usize;
    for it in items {
        area = align8(area).ok_or(too_large(what, "payload", area))?;
        offsets.push(area);
        area = area
            .checked_add(it.len())
            .ok_or(too_large(what, "payload", area))?;
    }
    let total = dir_end
        .checked_add(area)
        .filter(|&t| t <= u32::MAX as usize)
        .ok_or(too_large(what, "payload", area))?;
    let mut out = vec![0u8; total];
    put_u16(&mut out, 0, LAYOUT_VERSION);
    put_u32(&mut out, 4, n as u32);
    out[8..16].copy_from_slice(&header_tail);
    for (i, (it, &off)) in items.iter().zip(&offsets).enumerate() {
        put_u32(&mut out, HEADER_LEN + 8 * i, off as u32);
        put_u32(&mut out, HEADER_LEN + 8 * i + 4, it.len() as u32);
        out[dir_end + off..dir_end + off + it.len()].copy_from_slice(it);
    }
    Ok(out)
}

/// A decoded envelope: bytes 8..16 of the header and each item's bytes.
pub(crate) struct Envelope<'a> {
    pub tail: [u8; 8],
    pub items: Vec<&'a [u8]>,
}

/// Checks the header and the directory and slices out every item.
pub(crate) fn decode_envelope<'a>(
    what: &'static str,
    payload: &'a [u8],
) -> Result<Envelope<'a>, CodecError> {
    need(what, payload, HEADER_LEN)?;
    expect(
        what,
        "layout_version",
        get_u16(payload, 0).into(),
        LAYOUT_VERSION.into(),
    )?;
    expect(what, "flags", get_u16(payload, 2).into(), 0)?;
    let count = get_u32(payload, 4) as usize;
    let dir_end = count
        .checked_mul(8)
        .and_then(|d| d.checked_add(HEADER_LEN))
        .unwrap_or(usize::MAX);
    need(what, payload, dir_end)?;
    let area = &payload[dir_end..];
    let mut items = Vec::with_capacity(count);
    for index in 0..count {
        let off = get_u32(payload, HEADER_LEN + 8 * index);
        let len = get_u32(payload, HEADER_LEN + 8 * index + 4);
        if off & 7 != 0 {
            return Err(CodecError::BadAlignment {
                what,
                index,
                offset: off,
            });
        }
        let item = (off as usize)
            .checked_add(len as usize)
            .and_then(|end| area.get(off as usize..end))
            .ok_or(CodecError::OutOfBounds {
                what,
                field: "item",
                offset: off.into(),
                length: len.into(),
                limit: area.len() as u64,
            })?;
        items.push(item);
    }
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&payload[8..16]);
    Ok(Envelope { tail, items })
}

/// The request header's reserved words, checked to be zero.
pub(crate) fn request_tail_ok(what: &'static str, tail: [u8; 8]) -> Result<(), CodecError> {
    expect(what, "reserved0", get_u32(&tail, 0).into(), 0)?;
    expect(what, "reserved1", get_u32(&tail, 4).into(), 0)
}

/// The response header's generation.
fn generation_tail(generation: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    put_u64(&mut t, 0, generation);
    t
}

/// The generation in a response header tail.
fn tail_generation(tail: [u8; 8]) -> u64 {
    get_u64(&tail, 0)
}

/// Appends `header_len` bytes of header space (filled by the caller), the
/// strings with their NULs, padding, the labels table and label strings.
/// Returns the item and each string's offset.
pub(crate) fn encode_item_body(
    what: &'static str,
    header_len: usize,
    strings: &[&[u8]],
    labels: &[Label],
) -> Result<(Vec<u8>, Vec<u32>), CodecError> {
    if labels.len() > u16::MAX as usize {
        return Err(too_large(what, "label_count", labels.len()));
    }
    if let Some(i) = labels.iter().position(|l| l.key.is_empty()) {
        return Err(CodecError::BadLayout {
            what,
            field: "label key length",
            found: 0,
            expected: i as u64,
        });
    }
    let mut out = vec![0u8; header_len];
    let mut offsets = Vec::with_capacity(strings.len());
    let push = |out: &mut Vec<u8>, s: &[u8]| -> Result<u32, CodecError> {
        let off = u32::try_from(out.len()).map_err(|_| too_large(what, "item", out.len()))?;
        u32::try_from(s.len()).map_err(|_| too_large(what, "string", s.len()))?;
        out.extend_from_slice(s);
        out.push(0);
        Ok(off)
    };
    for s in strings {
        offsets.push(push(&mut out, s)?);
    }
    let table = align8(out.len()).ok_or(too_large(what, "item", out.len()))?;
    out.resize(table + LABEL_ENTRY_LEN * labels.len(), 0);
    for (i, l) in labels.iter().enumerate() {
        let key_off = push(&mut out, &l.key)?;
        let value_off = push(&mut out, &l.value)?;
        let e = table + LABEL_ENTRY_LEN * i;
        put_u32(&mut out, e, key_off);
        put_u32(&mut out, e + 4, l.key.len() as u32);
        put_u32(&mut out, e + 8, value_off);
        put_u32(&mut out, e + 12, l.value.len() as u32);
    }
    if out.len() > u32::MAX as usize {
        return Err(too_large(what, "item", out.len()));
    }
    Ok((out, offsets))
}

/// Checks and extracts an item's strings (`(field, offset, length)` read from
/// its header) and its `label_count` labels. Strings lie after the header,
/// carry their NUL and do not overlap; the labels table sits at the first
/// 8-aligned offset after the strings with zero padding before it; label
/// strings follow the table; label keys are non-empty.
pub(crate) fn decode_item_body<'a>(
    what: &'static str,
    item: &'a [u8],
    header_len: usize,
    strings: &[(&'static str, u32, u32)],
    label_count: u16,
) -> Result<(Vec<&'a [u8]>, Vec<Label>), CodecError> {
    let oob = |field, offset: u32, length: u64| CodecError::OutOfBounds {
        what,
        field,
        offset: offset.into(),
        length,
        limit: item.len() as u64,
    };
    // Each region with its NUL: [start, end).
    let mut regions: Vec<(u64, u64, &'static str)> = Vec::new();
    let mut out = Vec::with_capacity(strings.len());
    let mut strings_end = header_len as u64;
    for &(field, off, len) in strings {
        if (off as usize) < header_len {
            return Err(oob(field, off, u64::from(len) + 1));
        }
        let s = super::nul_terminated(what, field, item, off, len)?;
        if s.contains(&0) {
            return Err(CodecError::BadLayout {
                what,
                field,
                found: 0,
                expected: 1,
            });
        }
        let end = u64::from(off) + u64::from(len) + 1;
        strings_end = strings_end.max(end);
        regions.push((off.into(), end, field));
        out.push(s);
    }
    let table = align8(strings_end as usize).ok_or(oob("labels table", 0, 0))?;
    let table_end = table + LABEL_ENTRY_LEN * usize::from(label_count);
    if label_count > 0 {
        if table_end > item.len() {
            return Err(oob(
                "labels table",
                table as u32,
                (LABEL_ENTRY_LEN * usize::from(label_count)) as u64,
            ));
        }
        if item[strings_end as usize..table].iter().any(|&b| b != 0) {
            return Err(CodecError::BadLayout {
                what,
                field: "padding before the labels table",
                found: 1,
                expected: 0,
            });
        }
    }
    let mut labels = Vec::with_capacity(label_count.into());
    for i in 0..usize::from(label_count) {
        let e = table + LABEL_ENTRY_LEN * i;
        let pairs = [
            ("label key", get_u32(item, e), get_u32(item, e + 4)),
            ("label value", get_u32(item, e + 8), get_u32(item, e + 12)),
        ];
        let mut kv = Vec::with_capacity(2);
        for (field, off, len) in pairs {
            if (off as usize) < table_end {
                return Err(oob(field, off, u64::from(len) + 1));
            }
            let s = super::nul_terminated(what, field, item, off, len)?;
            if s.contains(&0) {
                return Err(CodecError::BadLayout {
                    what,
                    field,
                    found: 0,
                    expected: 1,
                });
            }
            regions.push((off.into(), u64::from(off) + u64::from(len) + 1, field));
            kv.push(s);
        }
        if kv[0].is_empty() {
            return Err(CodecError::BadLayout {
                what,
                field: "label key length",
                found: 0,
                expected: 1,
            });
        }
        labels.push(Label::new(kv[0], kv[1]));
    }
    regions.sort_unstable();
    for w in regions.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(CodecError::Overlap {
                what,
                first: w[0].2,
                second: w[1].2,
            });
        }
    }
    Ok((out, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip_and_layout() {
        let labels = [Label::new("k", "v"), Label::new("key2", "")];
        let (body, offs) = encode_item_body("t", 28, &[b"/a/b".as_slice(), b"n"], &labels).unwrap();
        assert_eq!(offs, [28, 33]);
        // strings end at 35; the table starts at 40 with zero padding.
        assert_eq!(&body[35..40], &[0; 5]);
        assert_eq!(get_u32(&body, 40), 72);
        let (s, l) = decode_item_body("t", &body, 28, &[("a", 28, 4), ("b", 33, 1)], 2).unwrap();
        assert_eq!(s, [b"/a/b".as_slice(), b"n"]);
        assert_eq!(l, labels);
    }

    #[test]
    fn body_rejections() {
        let labels = [Label::new("k", "v")];
        let (body, _) = encode_item_body("t", 28, &[b"ab".as_slice()], &labels).unwrap();
        let strings = [("s", 28, 2)];
        // string inside the header
        assert!(matches!(
            decode_item_body("t", &body, 28, &[("s", 27, 2)], 1),
            Err(CodecError::OutOfBounds { .. })
        ));
        // missing NUL
        assert!(matches!(
            decode_item_body("t", &body, 28, &[("s", 28, 1)], 1),
            Err(CodecError::MissingNul { .. })
        ));
        // padding not zero
        let mut bad = body.clone();
        bad[31] = 9;
        assert!(matches!(
            decode_item_body("t", &bad, 28, &strings, 1),
            Err(CodecError::BadLayout { .. })
        ));
        // labels table beyond the item
        assert!(matches!(
            decode_item_body("t", &body, 28, &strings, 9),
            Err(CodecError::OutOfBounds { .. })
        ));
        // empty key
        let mut bad = body.clone();
        put_u32(&mut bad, 32 + 4, 0);
        bad[48] = 0;
        assert!(decode_item_body("t", &bad, 28, &strings, 1).is_err());
        // label string pointing into the string section
        let mut bad = body.clone();
        put_u32(&mut bad, 32 + 8, 28);
        assert!(matches!(
            decode_item_body("t", &bad, 28, &strings, 1),
            Err(CodecError::OutOfBounds { .. })
        ));
        // key and value overlapping
        let mut bad = body;
        let key_off = get_u32(&bad, 32);
        put_u32(&mut bad, 32 + 8, key_off);
        put_u32(&mut bad, 32 + 12, 1);
        assert!(matches!(
            decode_item_body("t", &bad, 28, &strings, 1),
            Err(CodecError::Overlap { .. })
        ));
        assert!(encode_item_body("t", 28, &[], &[Label::new("", "v")]).is_err());
    }

    #[test]
    fn envelope_rejections() {
        let env = encode_envelope("t", [0; 8], &[vec![1, 2, 3], vec![4]]).unwrap();
        assert_eq!(get_u32(&env, HEADER_LEN + 8), 8, "second item 8-aligned");
        let d = decode_envelope("t", &env).unwrap();
        assert_eq!(d.items, [&[1u8, 2, 3][..], &[4][..]]);
        let mut bad = env.clone();
        put_u32(&mut bad, HEADER_LEN + 8, 4);
        assert!(matches!(
            decode_envelope("t", &bad),
            Err(CodecError::BadAlignment { index: 1, .. })
        ));
        let mut bad = env.clone();
        put_u32(&mut bad, 4, 1000);
        assert!(matches!(
            decode_envelope("t", &bad),
            Err(CodecError::Truncated { .. })
        ));
        let mut bad = env.clone();
        put_u32(&mut bad, HEADER_LEN + 12, 2);
        assert!(matches!(
            decode_envelope("t", &bad),
            Err(CodecError::OutOfBounds { .. })
        ));
        let mut bad = env;
        bad[2] = 1;
        assert!(matches!(
            decode_envelope("t", &bad),
            Err(CodecError::BadLayout { .. })
        ));
    }
}
