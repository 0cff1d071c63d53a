//! Batch payloads: an `N × {u32 offset, u32 length}` directory, zero padding to
//! 8, then the packed items, each starting 8-aligned; offsets are relative to
//! the packed area (which starts at `align8(N * 8) = N * 8`).
//!
//! Directory rule: whenever the BATCH flag is set, the directory is present,
//! even for a single item.
//!
//! ```
//! use pipewright_netipc::batch::{encode_batch, decode_batch};
//! let payload = encode_batch(&[b"abc".as_slice(), b"".as_slice(), b"0123456789".as_slice()]).unwrap();
//! let items = decode_batch(&payload, 3).unwrap();
//! assert_eq!(items, [b"abc".as_slice(), b"".as_slice(), b"0123456789".as_slice()]);
//! ```

use crate::wire::bytes::{align8, get_u32, put_u32};

/// Size of one directory entry.
pub const DIR_ENTRY_LEN: usize = 8;

/// Why a batch payload was rejected (or could not be built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// item_count is 0 (a batch carries at least one item).
    #[error("batch item_count is 0")]
    BadItemCount,
    /// The payload cannot hold the directory.
    #[error(
        "batch directory truncated: {item_count} entries need {needed} bytes, payload has {actual}"
    )]
    Truncated {
        /// Announced item count.
        item_count: u32,
        /// Bytes the directory needs.
        needed: usize,
        /// Payload length.
        actual: usize,
    },
    /// An item offset is not 8-aligned.
    #[error("batch item {index}: offset {offset} is not 8-byte aligned")]
    BadAlignment {
        /// Item index.
        index: usize,
        /// Its offset.
        offset: u32,
    },
    /// An item extends past the packed area.
    #[error(
        "batch item {index}: offset {offset} + length {length} exceeds the {area}-byte packed area"
    )]
    OutOfBounds {
        /// Item index.
        index: usize,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
        /// Packed area length.
        area: usize,
    },
    /// The batch would not fit u32 offsets.
    #[error("batch too large for u32 offsets")]
    TooLarge,
}

/// Builds a batch payload; padding is zeroed and the tail padded to 8.
pub fn encode_batch(items: &[&[u8]]) -> Result<Vec<u8>, BatchError> {
    if items.is_empty() {
        return Err(BatchError::BadItemCount);
    }
    let dir_len = items
        .len()
        .checked_mul(DIR_ENTRY_LEN)
        .ok_or(BatchError::TooLarge)?;
    let mut area_len = 0usize;
    for it in items {
        area_len = align8(area_len.checked_add(it.len()).ok_or(BatchError::TooLarge)?)
            .ok_or(BatchError::TooLarge)?;
    }
    let total = dir_len.checked_add(area_len).ok_or(BatchError::TooLarge)?;
    if total > u32::MAX as usize || u32::try_from(items.len()).is_err() {
        return Err(BatchError::TooLarge);
    }
    let mut out = vec![0u8; total];
    let mut off = 0usize;
    for (i, it) in items.iter().enumerate() {
        put_u32(&mut out, i * DIR_ENTRY_LEN, off as u32);
        put_u32(&mut out, i * DIR_ENTRY_LEN + 4, it.len() as u32);
        out[dir_len + off..dir_len + off + it.len()].copy_from_slice(it);
        off = align8(off + it.len()).ok_or(BatchError::TooLarge)?;
    }
    Ok(out)
}

/// Decodes a batch payload of `item_count` items, returning slices of each.
/// Checks: item_count > 0, directory fits, each offset 8-aligned, each item
/// inside the packed area.
pub fn decode_batch(payload: &[u8], item_count: u32) -> Result<Vec<&[u8]>, BatchError> {
    if item_count == 0 {
        return Err(BatchError::BadItemCount);
    }
    let n = item_count as usize;
    let needed = n.checked_mul(DIR_ENTRY_LEN).ok_or(BatchError::Truncated {
        item_count,
        needed: usize::MAX,
        actual: payload.len(),
    })?;
    if payload.len() < needed {
        return Err(BatchError::Truncated {
            item_count,
            needed,
            actual: payload.len(),
        });
    }
    let area = &payload[needed..];
    let mut items = Vec::with_capacity(n);
    for index in 0..n {
        let offset = get_u32(payload, index * DIR_ENTRY_LEN);
        let length = get_u32(payload, index * DIR_ENTRY_LEN + 4);
        if offset & 7 != 0 {
            return Err(BatchError::BadAlignment { index, offset });
        }
        let start = offset as usize;
        let end = start.checked_add(length as usize);
        match end.and_then(|end| area.get(start..end)) {
            Some(item) => items.push(item),
            None => {
                return Err(BatchError::OutOfBounds {
                    index,
                    offset,
                    length,
                    area: area.len(),
                })
            }
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::bytes::get_u32;

    #[test]
    fn layout_is_exact() {
        let p = encode_batch(&[b"abc", b"", b"0123456789"]).unwrap();
        // dir 24 + "abc"+5 pad + "" + 10 + 6 pad = 24 + 8 + 0 + 16
        assert_eq!(p.len(), 48);
        let dir: Vec<u32> = (0..6).map(|i| get_u32(&p, i * 4)).collect();
        assert_eq!(dir, [0, 3, 8, 0, 8, 10]);
        assert_eq!(&p[24..27], b"abc");
        assert!(p[27..32].iter().all(|&b| b == 0));
        assert_eq!(&p[32..42], b"0123456789");
        assert!(p[42..].iter().all(|&b| b == 0));
    }

    #[test]
    fn single_item_batch_has_directory() {
        let p = encode_batch(&[b"x"]).unwrap();
        assert_eq!(p.len(), 16);
        assert_eq!((get_u32(&p, 0), get_u32(&p, 4)), (0, 1));
        assert_eq!(decode_batch(&p, 1).unwrap(), [b"x".as_slice()]);
    }

    #[test]
    fn malformed() {
        assert_eq!(encode_batch(&[]), Err(BatchError::BadItemCount));
        assert_eq!(decode_batch(&[], 0), Err(BatchError::BadItemCount));
        let p = encode_batch(&[b"abc", b"def"]).unwrap();
        assert_eq!(
            decode_batch(&p[..15], 2),
            Err(BatchError::Truncated {
                item_count: 2,
                needed: 16,
                actual: 15
            })
        );
        assert_eq!(
            decode_batch(&p, 5).unwrap_err(),
            BatchError::Truncated {
                item_count: 5,
                needed: 40,
                actual: 32
            }
        );
        assert_eq!(
            decode_batch(&p, 3).unwrap_err(),
            BatchError::OutOfBounds {
                index: 1,
                offset: 8,
                length: 3,
                area: 8
            }
        );
        let mut b = p.clone();
        put_u32(&mut b, 8, 4);
        assert_eq!(
            decode_batch(&b, 2),
            Err(BatchError::BadAlignment {
                index: 1,
                offset: 4
            })
        );
        let mut b = p.clone();
        put_u32(&mut b, 12, 9);
        assert_eq!(
            decode_batch(&b, 2),
            Err(BatchError::OutOfBounds {
                index: 1,
                offset: 8,
                length: 9,
                area: 16
            })
        );
        let mut b = p.clone();
        put_u32(&mut b, 8, 0xffff_fff8);
        put_u32(&mut b, 12, 0xffff_ffff);
        assert!(matches!(
            decode_batch(&b, 2),
            Err(BatchError::OutOfBounds { index: 1, .. })
        ));
        assert!(matches!(
            decode_batch(&p, u32::MAX),
            Err(BatchError::Truncated { .. })
        ));
    }
}
