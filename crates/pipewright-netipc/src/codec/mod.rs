//! Service payload codecs (method-level layouts carried inside L1 messages).
//!
//! All decoders are strict and return [`CodecError`] for any malformed input.
//!
//! ```
//! use pipewright_netipc::codec::increment;
//! assert_eq!(increment::decode(&increment::encode(41)).unwrap(), 41);
//! ```

pub mod apps_lookup;
pub mod cgroups_lookup;
pub mod cgroups_snapshot;
pub mod increment;
pub mod lookup;
pub mod string_reverse;

/// Why a service payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The payload is shorter than its layout requires.
    #[error("{what} truncated: need {needed} bytes, have {actual}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
    /// A layout version, flag, reserved field or size is wrong.
    #[error("{what}: {field} is {found}, expected {expected}")]
    BadLayout {
        /// What was being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// The value found.
        found: u64,
        /// The value required.
        expected: u64,
    },
    /// An offset/length pair points outside its container.
    #[error("{what}: {field} at offset {offset} with length {length} exceeds {limit} bytes")]
    OutOfBounds {
        /// What was being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Offset.
        offset: u64,
        /// Length.
        length: u64,
        /// Container size.
        limit: u64,
    },
    /// A string lacks its trailing NUL.
    #[error("{what}: {field} is not NUL-terminated")]
    MissingNul {
        /// What was being decoded.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// An item does not start 8-aligned.
    #[error("{what}: item {index} offset {offset} is not 8-byte aligned")]
    BadAlignment {
        /// What was being decoded.
        what: &'static str,
        /// Item index.
        index: usize,
        /// Offset.
        offset: u32,
    },
    /// Two regions of one item overlap.
    #[error("{what}: {first} and {second} overlap")]
    Overlap {
        /// What was being decoded.
        what: &'static str,
        /// First region.
        first: &'static str,
        /// Second region.
        second: &'static str,
    },
    /// The value does not fit the wire format.
    #[error("{what}: {field} of {value} does not fit the wire format")]
    TooLarge {
        /// What was being encoded.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

pub(crate) fn need(what: &'static str, buf: &[u8], needed: usize) -> Result<(), CodecError> {
    if buf.len() < needed {
        Err(CodecError::Truncated {
            what,
            needed,
            actual: buf.len(),
        })
    } else {
        Ok(())
    }
}

pub(crate) fn expect(
    what: &'static str,
    field: &'static str,
    found: u64,
    expected: u64,
) -> Result<(), CodecError> {
    if found == expected {
        Ok(())
    } else {
        Err(CodecError::BadLayout {
            what,
            field,
            found,
            expected,
        })
    }
}

/// Returns `buf[offset..offset + length]` after checking that it ends in a NUL
/// at `offset + length`.
pub(crate) fn nul_terminated<'a>(
    what: &'static str,
    field: &'static str,
    buf: &'a [u8],
    offset: u32,
    length: u32,
) -> Result<&'a [u8], CodecError> {
    let start = offset as usize;
    let oob = CodecError::OutOfBounds {
        what,
        field,
        offset: offset.into(),
        length: u64::from(length) + 1,
        limit: buf.len() as u64,
    };
    let Some(end) = start.checked_add(length as usize) else {
        return Err(oob);
    };
    let Some(nul) = buf.get(end) else {
        return Err(oob);
    };
    if *nul != 0 {
        return Err(CodecError::MissingNul { what, field });
    }
    buf.get(start..end).ok_or(oob)
}
