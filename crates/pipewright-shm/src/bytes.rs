//! Native-endian field access for the region headers.
//!
//! The regions are shared on one host and use host byte order for every
//! multi-byte field. Every reader here is called only after the caller has checked that the
//! buffer is long enough; the slice `get` keeps even a wrong caller from panicking
//! (it yields zero instead, which a later check rejects).

pub(crate) fn get_u16(buf: &[u8], off: usize) -> u16 {
    match buf.get(off..off.wrapping_add(2)) {
        Some(&[a, b]) => u16::from_ne_bytes([a, b]),
        _ => 0,
    }
}

pub(crate) fn get_u32(buf: &[u8], off: usize) -> u32 {
    match buf.get(off..off.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_ne_bytes([a, b, c, d]),
        _ => 0,
    }
}

pub(crate) fn get_u64(buf: &[u8], off: usize) -> u64 {
    match buf.get(off..off.wrapping_add(8)) {
        Some(s) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_ne_bytes(a)
        }
        None => 0,
    }
}

pub(crate) fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    if let Some(s) = buf.get_mut(off..off.wrapping_add(2)) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

pub(crate) fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(s) = buf.get_mut(off..off.wrapping_add(4)) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}

pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    if let Some(s) = buf.get_mut(off..off.wrapping_add(8)) {
        s.copy_from_slice(&v.to_ne_bytes());
    }
}
