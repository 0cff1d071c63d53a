//! INCREMENT (method 1): the payload is one u64 in both directions.
//!
//! ```
//! use pipewright_netipc::codec::increment;
//! let bytes = increment::encode(7);
//! assert_eq!(bytes.len(), 8);
//! assert_eq!(increment::decode(&bytes).unwrap(), 7);
//! ```

use super::{expect, need, CodecError};
use crate::wire::bytes::get_u64;

/// Payload size.
pub const LEN: usize = 8;

/// Encodes the value.
pub fn encode(value: u64) -> [u8; LEN] {
    value.to_ne_bytes()
}

/// Decodes a payload of exactly 8 bytes.
pub fn decode(payload: &[u8]) -> Result<u64, CodecError> {
    need("INCREMENT payload", payload, LEN)?;
    expect(
        "INCREMENT payload",
        "length",
        payload.len() as u64,
        LEN as u64,
    )?;
    Ok(get_u64(payload, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        for v in [0, 1, u64::MAX] {
            assert_eq!(decode(&encode(v)), Ok(v));
        }
        assert!(matches!(
            decode(&[0; 7]),
            Err(CodecError::Truncated {
                needed: 8,
                actual: 7,
                ..
            })
        ));
        assert!(matches!(
            decode(&[0; 9]),
            Err(CodecError::BadLayout {
                field: "length",
                found: 9,
                ..
            })
        ));
        assert!(matches!(decode(&[]), Err(CodecError::Truncated { .. })));
    }
}
