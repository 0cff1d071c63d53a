//! Who is on the other end of a pipe.

use std::fmt;

/// A user as the platform identifies one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerUser {
    /// A Windows security identifier, e.g. `S-1-5-21-...-1001`.
    Sid(String),
    /// A Unix user id.
    Uid(u32),
}

impl fmt::Display for PeerUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerUser::Sid(sid) => f.write_str(sid),
            PeerUser::Uid(uid) => write!(f, "uid {uid}"),
        }
    }
}

/// The identity of a connected peer, as [`PipeStream::peer`](crate::PipeStream::peer) reports it.
///
/// ```no_run
/// # async fn demo(conn: pipewright::PipeStream) -> pipewright::Result<()> {
/// let peer = conn.peer()?;
/// println!("client pid {:?}, user {:?}", peer.pid, peer.user);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's process id, when the platform reports it.
    pub pid: Option<u32>,
    /// The peer's user, when it can be read (on Windows this needs the right to query the
    /// peer process; it is `None` when that is denied).
    pub user: Option<PeerUser>,
}
