//! STRING_REVERSE (method 3): `u32 str_offset (= 8), u32 str_length, bytes, NUL`.
//!
//! ```
//! use pipewright_netipc::codec::string_reverse;
//! let p = string_reverse::encode(b"abc").unwrap();
//! assert_eq!(p.len(), 8 + 3 + 1);
//! assert_eq!(string_reverse::decode(&p).unwrap(), b"abc");
//! ```

use super::{need, nul_terminated, CodecError};
use crate::wire::bytes::{get_u32, put_u32};

/// Size of the fixed part.
pub const HEADER_LEN: usize = 8;
const WHAT: &str = "STRING_REVERSE payload";

/// Encodes `s` (length excludes the NUL the encoder appends).
pub fn encode(s: &[u8]) -> Result<Vec<u8>, CodecError> {
    let len = u32::try_from(s.len())
        .ok()
        .filter(|&l| l < u32::MAX - HEADER_LEN as u32)
        .ok_or(CodecError::TooLarge {
            what: WHAT,
            field: "str_length",
            value: s.len() as u64,
        })?;
    let mut out = vec![0u8; HEADER_LEN + s.len() + 1];
    put_u32(&mut out, 0, HEADER_LEN as u32);
    put_u32(&mut out, 4, len);
    out[HEADER_LEN..HEADER_LEN + s.len()].copy_from_slice(s);
    Ok(out)
}

/// Decodes the string bytes (without the NUL). The offset must be at least 8
/// and the string plus its NUL must lie inside the payload.
pub fn decode(payload: &[u8]) -> Result<&[u8], CodecError> {
    need(WHAT, payload, HEADER_LEN)?;
    let offset = get_u32(payload, 0);
    let length = get_u32(payload, 4);
    if (offset as usize) < HEADER_LEN {
        return Err(CodecError::OutOfBounds {
            what: WHAT,
            field: "str_offset",
            offset: offset.into(),
            length: length.into(),
            limit: payload.len() as u64,
        });
    }
    nul_terminated(WHAT, "string", payload, offset, length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let p = encode(b"hello").unwrap();
        assert_eq!(get_u32(&p, 0), 8);
        assert_eq!(get_u32(&p, 4), 5);
        assert_eq!(&p[8..], b"hello\0");
        assert_eq!(decode(&encode(b"").unwrap()).unwrap(), b"");
    }

    #[test]
    fn malformed() {
        let good = encode(b"hello").unwrap();
        assert!(matches!(
            decode(&good[..7]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&good[..13]),
            Err(CodecError::OutOfBounds {
                field: "string",
                ..
            })
        ));
        let mut b = good.clone();
        b[13] = b'!';
        assert!(matches!(decode(&b), Err(CodecError::MissingNul { .. })));
        let mut b = good.clone();
        put_u32(&mut b, 0, 4);
        assert!(matches!(
            decode(&b),
            Err(CodecError::OutOfBounds {
                field: "str_offset",
                ..
            })
        ));
        let mut b = good.clone();
        put_u32(&mut b, 4, u32::MAX);
        assert!(matches!(decode(&b), Err(CodecError::OutOfBounds { .. })));
        let mut b = good;
        put_u32(&mut b, 0, u32::MAX);
        assert!(matches!(decode(&b), Err(CodecError::OutOfBounds { .. })));
    }
}
