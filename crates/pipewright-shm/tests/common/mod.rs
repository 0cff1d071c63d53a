//! Helpers shared by the region tests of both platforms: the limits they
//! run with and the echo exchanges between a server and a client peer.

use pipewright_shm::{AreaLimits, ShmError, ShmPeer};
use std::time::Duration;

/// Generous bound for one receive that expects a message.
pub const LONG: Duration = Duration::from_secs(30);
/// The limits every test region is created and attached with.
pub const LIMITS: AreaLimits = AreaLimits {
    max_request_payload: 1024,
    max_response_payload: 4096,
};
/// Set in a child test process: names the region it attaches to.
pub const CHILD_ENV: &str = "PIPEWRIGHT_SHM_TEST_CHILD";

/// The server echoes 200 messages reversed from a thread while the client
/// sends them and checks each echo; `label` prefixes the failure message.
/// Both peers are dropped at the end.
pub fn echo_between_threads(
    mut server: Box<dyn ShmPeer>,
    mut client: Box<dyn ShmPeer>,
    label: &str,
) {
    let echo = std::thread::spawn(move || {
        let mut buf = Vec::new();
        for _ in 0..200 {
            server.receive(&mut buf, LONG).unwrap();
            buf.reverse();
            server.send(&buf).unwrap();
        }
        server
    });
    let mut buf = Vec::new();
    for i in 0..200u32 {
        let msg: Vec<u8> = (0..40 + i).map(|b| b as u8).collect();
        client.send(&msg).unwrap();
        client.receive(&mut buf, LONG).unwrap();
        let mut want = msg.clone();
        want.reverse();
        assert_eq!(buf, want, "{label}round trip {i}");
    }
    drop(echo.join().unwrap());
}

/// Panics unless `r` is [`ShmError::TimedOut`].
pub fn expect_timed_out(r: Result<(), ShmError>) {
    match r {
        Err(ShmError::TimedOut(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// The child process's side: sends 50 messages, checks each echo, then
/// sends a single byte 0.
pub fn child_round_trips(mut peer: Box<dyn ShmPeer>) {
    let mut buf = Vec::new();
    for i in 0..50u8 {
        let msg = vec![i.wrapping_add(1); 40 + usize::from(i)];
        peer.send(&msg).unwrap();
        peer.receive(&mut buf, LONG).unwrap();
        let mut want = msg;
        want.reverse();
        assert_eq!(buf, want, "round trip {i}");
    }
    peer.send(&[0]).unwrap();
}

/// The server's side of [`child_round_trips`]: echoes every message
/// reversed until the single byte 0 and returns how many it echoed.
pub fn echo_until_zero(server: &mut dyn ShmPeer) -> usize {
    let mut buf = Vec::new();
    let mut echoed = 0;
    loop {
        server.receive(&mut buf, LONG).unwrap();
        if buf == [0] {
            return echoed;
        }
        buf.reverse();
        server.send(&buf).unwrap();
        echoed += 1;
    }
}

/// Runs this test binary's `child_client` test in a child process with
/// [`CHILD_ENV`] set to `spec`.
pub fn spawn_child_client(spec: impl AsRef<std::ffi::OsStr>) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
