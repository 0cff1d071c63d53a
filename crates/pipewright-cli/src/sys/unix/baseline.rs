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

/// Small-message ping-pong over a fresh Unix stream socket at `path`, one blocking thread per
/// side: the client writes `size` bytes (the first ones stamped with the round-trip number),
/// the server reads them whole and writes them back, the client reads them whole and checks
/// them, for `run_for`. Byte and message mode share this floor (a Unix socket has no message
/// mode; pipewright frames messages on a stream socket), so `_message` changes nothing.
pub fn raw_ping_pong(
    path: &str,
    size: usize,
    _message: bool,
    run_for: Duration,
) -> io::Result<crate::cmd::bench::RoundTrips> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let client = UnixStream::connect(path);
    let accepted = listener.accept();
    let _ = std::fs::remove_file(path);
    let (client, (mut server, _)) = (client?, accepted?);
    std::thread::scope(|s| {
        let echo = s.spawn(move || -> io::Result<u64> {
            let mut buf = vec![0u8; size];
            let mut echoed = 0u64;
            let result = loop {
                match read_whole(&mut server, &mut buf) {
                    Ok(false) => break Ok(echoed),
                    Ok(true) => {}
                    Err(e) => break Err(e),
                }
                if let Err(e) = server.write_all(&buf) {
                    break Err(e);
                }
                echoed += 1;
            };
            if result.is_err() {
                // Fail the client's blocked read instead of leaving it waiting.
                let _ = server.shutdown(Shutdown::Both);
            }
            result
        });
        let mut client = client;
        let driven = crate::cmd::bench::drive(size, run_for, |msg, reply| {
            client.write_all(msg)?;
            if !read_whole(&mut client, reply)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok(())
        });
        // The end of stream ends the echo thread (on success and failure alike).
        let _ = client.shutdown(Shutdown::Both);
        drop(client);
        crate::cmd::bench::with_echoed(driven, echo)
    })
}

/// Fills `buf`; `Ok(false)` at an end of stream before its first byte.
fn read_whole(s: &mut UnixStream, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
