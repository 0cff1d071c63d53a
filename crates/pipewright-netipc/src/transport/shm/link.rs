//! Running a session over a shared-memory region, platform-neutral (only the
//! [`ShmPeer`] trait is used).
//!
//! Messages travel whole through the region. The baseline connection is
//! handed to a watcher task that only waits for it to end: nothing travels on
//! it after the handshake, so any packet, end or error means the session is
//! over. Waits on the region run in [`WAIT_SLICE`] slices and check the end
//! flag between slices, so a dead peer is noticed within one slice.
//!
//! Waiting blocks the calling thread. The async API first checks the region
//! with the short spin only (no sleep), which catches quick answers without
//! a thread hop, and otherwise runs the wait on the blocking pool (the region
//! moves there and back); the blocking client waits inline on the caller's
//! thread.

use super::{ShmError, ShmPeer};
use crate::transport::{PacketTransport, TransportError};
use crate::wire::header::{Header, HEADER_LEN};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one wait on the region lasts before the end flag and the
/// deadline are checked (`NIPC_CLIENT_ABORT_POLL_MS`, `SERVER_POLL_TIMEOUT_MS`).
pub(crate) const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The watcher's receive buffer: the size of a handshake packet (nothing
/// is expected on the baseline connection after the handshake).
const WATCH_BUF_LEN: usize = 128;

/// Set once the session must end: the baseline connection closed, or the
/// session's owner dropped it.
#[derive(Debug, Clone, Default)]
pub(crate) struct EndFlag(Arc<AtomicBool>);

impl EndFlag {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A session's region plus the watcher of its baseline connection.
pub(crate) struct ShmLink {
    /// `None` while a wait runs on the blocking pool (or after it was lost to
    /// a cancelled operation).
    pub(crate) peer: Option<Box<dyn ShmPeer>>,
    pub(crate) ended: EndFlag,
    /// Wait on the calling thread instead of the blocking pool.
    pub(crate) inline: bool,
    out: Vec<u8>,
    watcher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLink")
            .field("profile", &self.peer.as_ref().map(|p| p.profile()))
            .field("ended", &self.ended.is_set())
            .field("inline", &self.inline)
            .finish_non_exhaustive()
    }
}

impl ShmLink {
    /// Takes over the baseline `transport` (liveness only) and the region.
    /// Must run inside a tokio runtime.
    pub(crate) fn start<T: PacketTransport + 'static>(
        peer: Box<dyn ShmPeer>,
        mut transport: T,
        inline: bool,
    ) -> ShmLink {
        let ended = EndFlag::default();
        let flag = ended.clone();
        let watcher = tokio::spawn(async move {
            let mut buf = [0u8; WATCH_BUF_LEN];
            let _ = transport.recv_packet(&mut buf).await;
            flag.set();
        });
        ShmLink {
            peer: Some(peer),
            ended,
            inline,
            out: Vec::new(),
            watcher,
        }
    }

    /// The selected profile.
    pub(crate) fn profile(&self) -> Option<u32> {
        self.peer.as_ref().map(|p| p.profile())
    }

    /// Publishes one message (never blocks on the peer).
    pub(crate) fn send(&mut self, header: &Header, payload: &[u8]) -> Result<(), TransportError> {
        let peer = self.peer.as_deref_mut().ok_or(TransportError::Broken)?;
        send_message(peer, &mut self.out, header, payload)
    }

    /// Waits for the next message (into `buf`) until `deadline`, the end
    /// flag, or forever.
    pub(crate) async fn receive(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<Header, TransportError> {
        if self.inline {
            let peer = self.peer.as_deref_mut().ok_or(TransportError::Broken)?;
            return receive_message(peer, buf, &self.ended, deadline);
        }
        // A quick answer is usually there after the region's short spin:
        // take it without a thread hop (a zero timeout never sleeps).
        {
            let peer = self.peer.as_deref_mut().ok_or(TransportError::Broken)?;
            match peer.receive(buf, Duration::ZERO) {
                Ok(()) => return check_message(buf),
                Err(ShmError::TimedOut(_)) => {}
                Err(ShmError::PeerClosed) => return Err(TransportError::Closed),
                Err(e) => return Err(TransportError::Shm(e)),
            }
        }
        let mut peer = self.peer.take().ok_or(TransportError::Broken)?;
        let mut b = std::mem::take(buf);
        let ended = self.ended.clone();
        let (peer, b, r) = tokio::task::spawn_blocking(move || {
            let r = receive_message(&mut *peer, &mut b, &ended, deadline);
            (peer, b, r)
        })
        .await
        .map_err(|e| io::Error::other(format!("shared-memory wait failed: {e}")))?;
        self.peer = Some(peer);
        *buf = b;
        r
    }
}

impl Drop for ShmLink {
    fn drop(&mut self) {
        self.ended.set();
        self.watcher.abort();
    }
}

/// Publishes `header` + `payload` as one message; a message larger than the
/// area is [`ShmError::TooLarge`] and nothing is published.
pub(crate) fn send_message(
    peer: &mut dyn ShmPeer,
    out: &mut Vec<u8>,
    header: &Header,
    payload: &[u8],
) -> Result<(), TransportError> {
    let len = HEADER_LEN + payload.len();
    let capacity = peer.send_capacity();
    if len > capacity {
        return Err(TransportError::Shm(ShmError::TooLarge { len, capacity }));
    }
    out.clear();
    out.reserve(len);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    peer.send(out).map_err(|e| match e {
        // As on a baseline connection: a closed peer ends the session, and
        // the client reconnects once.
        ShmError::PeerClosed => TransportError::Closed,
        e => TransportError::Shm(e),
    })
}

/// Waits for the next message in [`WAIT_SLICE`] slices, giving up when
/// `ended` is set ([`TransportError::Closed`]) or `deadline` passes
/// ([`TransportError::DeadlineExceeded`]). The message is left in `buf`; its
/// decoded header is returned.
pub(crate) fn receive_message(
    peer: &mut dyn ShmPeer,
    buf: &mut Vec<u8>,
    ended: &EndFlag,
    deadline: Option<Instant>,
) -> Result<Header, TransportError> {
    // A quick answer is caught by the region's spin: try that first, without
    // reading the clock for the deadline.
    let mut spin_only = deadline.is_some();
    loop {
        let slice = match deadline {
            None => WAIT_SLICE,
            Some(_) if std::mem::take(&mut spin_only) => Duration::ZERO,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TransportError::DeadlineExceeded);
                }
                left.min(WAIT_SLICE)
            }
        };
        match peer.receive(buf, slice) {
            Ok(()) => break,
            Err(ShmError::TimedOut(_)) if ended.is_set() => return Err(TransportError::Closed),
            Err(ShmError::TimedOut(_)) => {}
            Err(ShmError::PeerClosed) => return Err(TransportError::Closed),
            Err(e) => return Err(TransportError::Shm(e)),
        }
    }
    check_message(buf)
}

/// Decodes a received message's header and checks it covers the message.
fn check_message(buf: &[u8]) -> Result<Header, TransportError> {
    let header = Header::decode(buf)?;
    if buf.len() - HEADER_LEN != header.payload_len as usize {
        return Err(TransportError::Shm(ShmError::Corrupt(
            "the message length does not match its header's payload_len",
        )));
    }
    Ok(header)
}
