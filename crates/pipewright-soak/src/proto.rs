//! The soak's byte protocol on plain streams (the listener server and the `bridge` chain in
//! front of it), its pseudo-random data and its checksums.
//!
//! A request is 17 bytes: an operation byte, the length `N` (u64 LE) and a data seed (u64 LE).
//! - `S` sink: the client sends `N` bytes; the server answers the SHA-256 of what it read.
//! - `E` echo: the server sends back each byte it reads, `N` in all.
//! - `D` drop: the server sends `N` bytes of the seed's data with `write_all` and drops the
//!   stream at once (no shutdown): every byte must still arrive, then end of stream.
//! - `H` shutdown: as `D`, but the server calls `shutdown()` before dropping.
//!
//! After `S` and `E` the server calls `shutdown()` and drops the stream.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const HEADER_LEN: usize = 17;
pub const OP_SINK: u8 = b'S';
pub const OP_ECHO: u8 = b'E';
pub const OP_DROP: u8 = b'D';
pub const OP_SHUTDOWN: u8 = b'H';

/// A small, seeded generator (xorshift64*): the same seed gives the same stream on both
/// sides and on both platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, never zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let w = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&w[..rest.len()]);
        }
    }
}

/// The bytes of the data stream `seed`, `len` long, produced block by block (the block
/// boundaries do not change the stream: blocks are multiples of 8 bytes but the last).
#[derive(Debug)]
pub struct DataStream {
    rng: Rng,
    left: u64,
    block: Vec<u8>,
}

pub const BLOCK: usize = 64 * 1024;

impl DataStream {
    pub fn new(seed: u64, len: u64) -> DataStream {
        DataStream {
            rng: Rng::new(seed ^ 0x5eed_da7a),
            left: len,
            block: vec![0; BLOCK],
        }
    }

    /// The next block, empty at the end.
    pub fn next_block(&mut self) -> &[u8] {
        let n = (self.left as usize).min(BLOCK);
        self.rng.fill(&mut self.block[..n]);
        self.left -= n as u64;
        &self.block[..n]
    }
}

/// The SHA-256 of the data stream `seed`, `len` long.
pub fn expected_digest(seed: u64, len: u64) -> [u8; 32] {
    let mut d = DataStream::new(seed, len);
    let mut h = Sha256::new();
    loop {
        let b = d.next_block();
        if b.is_empty() {
            return h.finalize().into();
        }
        h.update(b);
    }
}

pub fn header(op: u8, len: u64, seed: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = op;
    h[1..9].copy_from_slice(&len.to_le_bytes());
    h[9..17].copy_from_slice(&seed.to_le_bytes());
    h
}

/// Writes the data stream `seed` (`len` bytes); returns its digest.
pub async fn write_data<W: AsyncWrite + Unpin>(
    w: &mut W,
    seed: u64,
    len: u64,
) -> std::io::Result<[u8; 32]> {
    let mut d = DataStream::new(seed, len);
    let mut h = Sha256::new();
    loop {
        let b = d.next_block();
        if b.is_empty() {
            return Ok(h.finalize().into());
        }
        h.update(b);
        w.write_all(b).await?;
    }
}

/// Reads up to `len` bytes (stops early at end of stream); returns the count and digest.
pub async fn read_digest<R: AsyncRead + Unpin>(
    r: &mut R,
    len: u64,
) -> std::io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    let mut got = 0u64;
    while got < len {
        let want = ((len - got) as usize).min(buf.len());
        let n = r.read(&mut buf[..want]).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    Ok((got, h.finalize().into()))
}

/// Serves one connection of the protocol. Errors end the connection only.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) -> std::io::Result<()> {
    let mut hdr = [0u8; HEADER_LEN];
    s.read_exact(&mut hdr).await?;
    let op = hdr[0];
    let len = u64::from_le_bytes(hdr[1..9].try_into().unwrap_or_default());
    let seed = u64::from_le_bytes(hdr[9..17].try_into().unwrap_or_default());
    match op {
        OP_SINK => {
            let (got, digest) = read_digest(&mut s, len).await?;
            if got == len {
                s.write_all(&digest).await?;
            }
            s.shutdown().await
        }
        OP_ECHO => {
            let mut buf = vec![0u8; BLOCK];
            let mut done = 0u64;
            while done < len {
                let want = ((len - done) as usize).min(buf.len());
                let n = s.read(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await?;
                done += n as u64;
            }
            s.shutdown().await
        }
        OP_DROP => {
            write_data(&mut s, seed, len).await?;
            drop(s);
            Ok(())
        }
        OP_SHUTDOWN => {
            write_data(&mut s, seed, len).await?;
            s.shutdown().await
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unknown soak operation {other:#x}"),
        )),
    }
}

pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_stream_does_not_depend_on_how_it_is_read() {
        let len = 3 * BLOCK as u64 + 13;
        let mut whole = Vec::new();
        let mut d = DataStream::new(7, len);
        loop {
            let b = d.next_block();
            if b.is_empty() {
                break;
            }
            whole.extend_from_slice(b);
        }
        assert_eq!(whole.len() as u64, len);
        let direct: [u8; 32] = Sha256::digest(&whole).into();
        assert_eq!(direct, expected_digest(7, len));
        assert_ne!(expected_digest(7, len), expected_digest(8, len));
    }

    #[tokio::test]
    async fn the_protocol_round_trips_over_a_duplex() {
        for op in [OP_SINK, OP_ECHO, OP_DROP, OP_SHUTDOWN] {
            let (mut c, s) = tokio::io::duplex(4096);
            let server = tokio::spawn(serve(s));
            let len = 100_000;
            c.write_all(&header(op, len, 5)).await.unwrap();
            let ok = match op {
                OP_SINK => {
                    let sent = write_data(&mut c, 5, len).await.unwrap();
                    let mut got = [0u8; 32];
                    c.read_exact(&mut got).await.unwrap();
                    got == sent
                }
                OP_ECHO => {
                    let (mut r, mut w) = tokio::io::split(c);
                    let (sent, got) =
                        tokio::join!(write_data(&mut w, 5, len), read_digest(&mut r, len));
                    got.unwrap() == (len, sent.unwrap())
                }
                _ => read_digest(&mut c, len + 1).await.unwrap() == (len, expected_digest(5, len)),
            };
            assert!(ok, "op {}", op as char);
            server.await.unwrap().unwrap();
        }
    }
}
