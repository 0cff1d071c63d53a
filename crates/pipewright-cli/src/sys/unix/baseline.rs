//! Plain blocking Unix-socket I/O in two threads: the baseline `bench stream` compares against.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Moves `total` bytes from a client to a server over a fresh socket at `path` with blocking
/// reads and writes of `chunk` bytes; returns the elapsed time of the transfer.
pub fn raw_transfer(
    path: &str,
    total: usize,
    chunk: usize,
    _in_flight: usize,
) -> io::Result<Duration> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let client = UnixStream::connect(path);
    let accepted = listener.accept();
    let _ = std::fs::remove_file(path);
    let (mut client, (mut server, _)) = (client?, accepted?);
    let start = Instant::now();
    let (written, read) = std::thread::scope(|s| {
        let reader = s.spawn(|| -> io::Result<usize> {
            let mut buf = vec![0u8; chunk];
            let mut got = 0;
            while got < total {
                match server.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) => {
                        // Fail the writer instead of leaving it blocked on a full socket.
                        let _ = server.shutdown(Shutdown::Both);
                        return Err(e);
                    }
                }
            }
            Ok(got)
        });
        let buf = vec![0x5au8; chunk];
        let mut sent = 0;
        let mut written = Ok(());
        while sent < total {
            let len = chunk.min(total - sent);
            if let Err(e) = client.write_all(&buf[..len]) {
                written = Err(e);
                // Let the reader see the end instead of waiting for bytes that never come.
                let _ = client.shutdown(Shutdown::Both);
                break;
            }
            sent += len;
        }
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("reader thread panicked")));
        (written, read)
    });
    let elapsed = start.elapsed();
    written?;
    let got = read?;
    if got != total {
        return Err(io::Error::other(format!("moved {got} of {total} bytes")));
    }
    Ok(elapsed)
}
