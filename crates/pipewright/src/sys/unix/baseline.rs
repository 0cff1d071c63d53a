//! Plain blocking Unix-socket I/O in two threads: the baseline benchmarks compare against.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Moves `total` bytes from a client to a server over a fresh socket at `path` with blocking
/// reads and writes of `chunk` bytes; returns the elapsed time of the transfer.
pub(crate) fn raw_transfer(
    path: &str,
    total: usize,
    chunk: usize,
    _in_flight: usize,
) -> io::Result<Duration> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let mut client = UnixStream::connect(path)?;
    let (mut server, _) = listener.accept()?;
    let _ = std::fs::remove_file(path);
    let start = Instant::now();
    let reader = std::thread::spawn(move || -> io::Result<usize> {
        let mut buf = vec![0u8; chunk];
        let mut got = 0;
        while got < total {
            let n = server.read(&mut buf)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    });
    let buf = vec![0x5au8; chunk];
    let mut sent = 0;
    while sent < total {
        let len = chunk.min(total - sent);
        client.write_all(&buf[..len])?;
        sent += len;
    }
    let got = reader
        .join()
        .map_err(|_| io::Error::other("reader thread panicked"))??;
    let elapsed = start.elapsed();
    if got != total {
        return Err(io::Error::other(format!("moved {got} of {total} bytes")));
    }
    Ok(elapsed)
}
