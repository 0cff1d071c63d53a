//! The SSH agent filter of `pipewright wsl`: connections to a socket of kind `ssh-agent` go
//! through [`proxy`], which reads the agent protocol's framing (one request, one reply) and,
//! in [`ExtensionMode::Fail`], answers extension requests (`SSH_AGENTC_EXTENSION`, type 27)
//! itself with `SSH_AGENT_FAILURE` instead of forwarding them.
//!
//! Since OpenSSH 8.9 `ssh` sends `session-bind@openssh.com` extension requests; older
//! Windows agents close the connection on an extension request instead of answering
//! `SSH_AGENT_FAILURE`, and `ssh` fails. An extension the agent does not carry out is
//! harmless to `ssh` as long as it is refused, so answering `SSH_AGENT_FAILURE` for the agent
//! is the fix; a fake success never is. [`probe`] finds out which kind of agent there is.
//!
//! The byte handling is in [`frame`] (`agent_frame.rs`: std only, fuzzed by
//! `crates/pipewright-cli/fuzz`).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use super::agent_frame as frame;
use frame::{FrameError, SSH_AGENTC_EXTENSION};

/// How long [`probe`] waits for the agent's answer to the `query` extension.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`proxy`] does with extension requests (`SSH_AGENTC_EXTENSION`, type 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionMode {
    /// Forward them to the agent like any other request.
    Forward,
    /// Answer them with `SSH_AGENT_FAILURE` without forwarding: for agents that close the
    /// connection on an extension request.
    Fail,
}

impl ExtensionMode {
    /// The mode's name in flags and `status` output: `forward` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionMode::Forward => "forward",
            ExtensionMode::Fail => "fail",
        }
    }
}

impl std::fmt::Display for ExtensionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one [`proxy`] connection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyTotals {
    /// Requests read from the client.
    pub requests: u64,
    /// Requests answered here with `SSH_AGENT_FAILURE` instead of being forwarded.
    pub answered_locally: u64,
    /// Bytes written to the agent, length prefixes included.
    pub bytes_to_agent: u64,
    /// Bytes written to the client (the agent's replies and the local answers), length
    /// prefixes included.
    pub bytes_to_client: u64,
}

/// Why a [`proxy`] connection ended early. Each message names the side at fault.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The client sent bytes that are not an agent message.
    #[error("the ssh client sent an invalid agent message: {0}")]
    ClientFrame(FrameError),
    /// The client closed the connection in the middle of a message.
    #[error(
        "the ssh client closed the connection in the middle of a message ({got} of {expected} bytes)"
    )]
    ClientTruncated {
        /// The bytes of the message that arrived, length prefix included.
        got: usize,
        /// The message's size, length prefix included (4 while the prefix is incomplete).
        expected: usize,
    },
    /// The agent answered with bytes that are not an agent message.
    #[error("the agent sent an invalid reply: {0}")]
    AgentFrame(FrameError),
    /// The agent closed the connection in the middle of its reply.
    #[error(
        "the agent closed the connection in the middle of its reply ({got} of {expected} bytes)"
    )]
    AgentTruncated {
        /// The bytes of the reply that arrived, length prefix included.
        got: usize,
        /// The reply's size, length prefix included (4 while the prefix is incomplete).
        expected: usize,
    },
    /// The agent closed the connection instead of answering a request.
    #[error("the agent closed the connection instead of answering {}", describe(*.request_type))]
    AgentClosed {
        /// The type of the request left unanswered.
        request_type: u8,
    },
    /// Reading from or writing to the client failed.
    #[error("ssh client connection: {0}")]
    ClientIo(#[source] io::Error),
    /// Reading from or writing to the agent failed.
    #[error("agent connection: {0}")]
    AgentIo(#[source] io::Error),
}

/// `SSH_AGENT_FAILURE (type 5)`, or `message type 200` for types without a name here.
fn describe(message_type: u8) -> String {
    match frame::type_name(message_type) {
        Some(name) => format!("{name} (type {message_type})"),
        None => format!("message type {message_type}"),
    }
}

/// Why [`read_frame`] found no message.
#[derive(Debug)]
enum ReadError {
    Frame(FrameError),
    Truncated { got: usize, expected: usize },
    Io(io::Error),
}

/// Reads one whole message (length prefix and body) into `buf`, replacing its contents.
/// `Ok(false)` on end of stream before the first byte of a message. `buf` grows to the
/// largest message seen and keeps that capacity, so a connection allocates once per new
/// maximum rather than per message, and never more than [`frame::MAX_FRAME`] plus 4.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, ReadError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = reader
            .read(&mut prefix[got..])
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(ReadError::Truncated { got, expected: 4 })
            };
        }
        got += n;
    }
    let len = frame::frame_len(prefix).map_err(ReadError::Frame)?;
    buf.clear();
    buf.extend_from_slice(&prefix);
    buf.resize(4 + len, 0);
    let mut filled = 4;
    while filled < buf.len() {
        let n = reader
            .read(&mut buf[filled..])
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Truncated {
                got: filled,
                expected: buf.len(),
            });
        }
        filled += n;
    }
    Ok(true)
}

/// Whether an I/O error on the agent side means that the agent closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Carries one ssh client connection to the agent, one request and one reply at a time.
///
/// Each request is read whole from `client` (at most [`frame::MAX_FRAME`] bytes; an empty
/// or larger message ends the connection with [`AgentError::ClientFrame`]). In
/// [`ExtensionMode::Fail`] an extension request is answered with `SSH_AGENT_FAILURE` and
/// never reaches the agent; every other request is written to `agent`, whose reply is read
/// whole (same limits) and written to `client`. When the client ends the connection between
/// two messages, both write halves are shut down and the totals returned. When the agent
/// closes the connection instead of answering, the result is [`AgentError::AgentClosed`];
/// on every error both connections are dropped, which closes them, and the caller logs the
/// error. `label` names the connection in logs.
///
/// Not cancel-safe in the middle of a message: dropping the future drops both connections,
/// and with them any half-read request or reply.
pub async fn proxy<C, A>(
    mut client: C,
    mut agent: A,
    mode: ExtensionMode,
    label: &str,
) -> Result<ProxyTotals, AgentError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    let mut totals = ProxyTotals::default();
    let mut buf = Vec::new();
    loop {
        match read_frame(&mut client, &mut buf).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(ReadError::Frame(e)) => return Err(AgentError::ClientFrame(e)),
            Err(ReadError::Truncated { got, expected }) => {
                return Err(AgentError::ClientTruncated { got, expected })
            }
            Err(ReadError::Io(e)) => return Err(AgentError::ClientIo(e)),
        }
        totals.requests += 1;
        let body = &buf[4..];
        // A body is never empty: frame_len rejects length 0.
        let request_type = frame::message_type(body).unwrap_or_default();
        if mode == ExtensionMode::Fail && request_type == SSH_AGENTC_EXTENSION {
            match frame::extension_name(body) {
                Ok(name) => tracing::debug!(
                    socket = label,
                    extension = name,
                    "answered an extension request with SSH_AGENT_FAILURE"
                ),
                Err(e) => tracing::debug!(
                    socket = label,
                    error = %e,
                    "answered a malformed extension request with SSH_AGENT_FAILURE"
                ),
            }
            let failure = frame::failure_frame();
            client
                .write_all(&failure)
                .await
                .map_err(AgentError::ClientIo)?;
            client.flush().await.map_err(AgentError::ClientIo)?;
            totals.answered_locally += 1;
            totals.bytes_to_client += failure.len() as u64;
            continue;
        }
        let closed = |e: io::Error| {
            if is_closed(&e) {
                AgentError::AgentClosed { request_type }
            } else {
                AgentError::AgentIo(e)
            }
        };
        agent.write_all(&buf).await.map_err(closed)?;
        agent.flush().await.map_err(closed)?;
        totals.bytes_to_agent += buf.len() as u64;
        match read_frame(&mut agent, &mut buf).await {
            Ok(true) => {}
            Ok(false) => return Err(AgentError::AgentClosed { request_type }),
            Err(ReadError::Frame(e)) => return Err(AgentError::AgentFrame(e)),
            Err(ReadError::Truncated { got, expected }) => {
                return Err(AgentError::AgentTruncated { got, expected })
            }
            Err(ReadError::Io(e)) => return Err(closed(e)),
        }
        client.write_all(&buf).await.map_err(AgentError::ClientIo)?;
        client.flush().await.map_err(AgentError::ClientIo)?;
        totals.bytes_to_client += buf.len() as u64;
    }
    // The client is done: pass its end of stream on. Failures here lose nothing (every
    // request was answered), so they are only logged.
    if let Err(e) = agent.shutdown().await {
        tracing::debug!(socket = label, error = %e, "shutting down the agent connection");
    }
    if let Err(e) = client.shutdown().await {
        tracing::debug!(socket = label, error = %e, "shutting down the client connection");
    }
    tracing::debug!(
        socket = label,
        requests = totals.requests,
        answered_locally = totals.answered_locally,
        "ssh client done"
    );
    Ok(totals)
}

/// Finds out whether the agent on `agent` (a fresh connection, used for nothing else) copes
/// with extension requests: sends the `query` extension and waits up to [`PROBE_TIMEOUT`]
/// for one reply. Any well-formed reply, failure or not, means the agent answers extension
/// requests: [`ExtensionMode::Forward`]. A closed connection, a malformed reply or no reply
/// in time means it does not: [`ExtensionMode::Fail`]. The text is one sentence for
/// `status` output saying why.
pub async fn probe<A>(agent: A) -> (ExtensionMode, String)
where
    A: AsyncRead + AsyncWrite + Unpin,
{
    probe_within(agent, PROBE_TIMEOUT).await
}

async fn probe_within<A>(mut agent: A, timeout: Duration) -> (ExtensionMode, String)
where
    A: AsyncRead + AsyncWrite + Unpin,
{
    const HANDLED_HERE: &str = "extension requests are answered with SSH_AGENT_FAILURE here";
    let exchange = async {
        let mut buf = Vec::new();
        agent
            .write_all(&frame::query_request())
            .await
            .map_err(ReadError::Io)?;
        agent.flush().await.map_err(ReadError::Io)?;
        if read_frame(&mut agent, &mut buf).await? {
            // The reply's type: read_frame saw a body of at least one byte.
            Ok(Some(buf.get(4).copied().unwrap_or_default()))
        } else {
            Ok(None)
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(Some(reply))) => (
            ExtensionMode::Forward,
            format!(
                "the agent answered the query extension with {}",
                describe(reply)
            ),
        ),
        Ok(Ok(None)) | Ok(Err(ReadError::Truncated { .. })) => (
            ExtensionMode::Fail,
            format!(
                "the agent dropped the connection on the query extension (message 27); {HANDLED_HERE}"
            ),
        ),
        Ok(Err(ReadError::Io(e))) if is_closed(&e) => (
            ExtensionMode::Fail,
            format!(
                "the agent dropped the connection on the query extension (message 27); {HANDLED_HERE}"
            ),
        ),
        Ok(Err(ReadError::Io(e))) => (
            ExtensionMode::Fail,
            format!(
                "the connection to the agent failed during the query extension (message 27): {e}; {HANDLED_HERE}"
            ),
        ),
        Ok(Err(ReadError::Frame(e))) => (
            ExtensionMode::Fail,
            format!(
                "the agent answered the query extension (message 27) with an invalid message ({e}); {HANDLED_HERE}"
            ),
        ),
        Err(_) => (
            ExtensionMode::Fail,
            format!(
                "the agent did not answer the query extension (message 27) within {} s; {HANDLED_HERE}",
                timeout.as_secs_f32()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::frame::*;
    use super::*;
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    const IDENTITIES_NONE: [u8; 9] = [0, 0, 0, 5, SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0];

    /// How the in-test agent treats extension requests.
    #[derive(Clone, Copy, PartialEq)]
    enum Agent {
        /// Answers `SSH_AGENT_FAILURE`, as current agents do for extensions they do not know.
        Normal,
        /// Closes the connection, as old Windows agents do.
        Old,
        /// Reads requests and never answers.
        Silent,
        /// Answers with a zero-length message.
        Broken,
    }

    /// Reads one message the plain way; `None` at end of stream.
    async fn read_message(s: &mut DuplexStream) -> Option<Vec<u8>> {
        let mut prefix = [0u8; 4];
        s.read_exact(&mut prefix).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        s.read_exact(&mut body).await.ok()?;
        Some(body)
    }

    /// Runs an agent on `s`; the task's result is the types of the requests it received.
    fn spawn_agent(mut s: DuplexStream, kind: Agent) -> JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(body) = read_message(&mut s).await {
                let t = body[0];
                seen.push(t);
                let reply = match (kind, t) {
                    (Agent::Silent, _) => continue,
                    (Agent::Broken, _) => vec![0, 0, 0, 0],
                    (Agent::Old, SSH_AGENTC_EXTENSION) => return seen,
                    (_, SSH_AGENTC_REQUEST_IDENTITIES) => IDENTITIES_NONE.to_vec(),
                    _ => failure_frame().to_vec(),
                };
                s.write_all(&reply).await.unwrap();
            }
            seen
        })
    }

    /// A proxy between a test client and an agent of `kind`: the client's stream, the
    /// proxy's task and the agent's task.
    fn setup(
        kind: Agent,
        mode: ExtensionMode,
    ) -> (
        DuplexStream,
        JoinHandle<Result<ProxyTotals, AgentError>>,
        JoinHandle<Vec<u8>>,
    ) {
        let (client, client_far) = tokio::io::duplex(1 << 20);
        let (agent_near, agent_far) = tokio::io::duplex(1 << 20);
        let agent = spawn_agent(agent_far, kind);
        let proxy = tokio::spawn(proxy(client_far, agent_near, mode, "test"));
        (client, proxy, agent)
    }

    fn session_bind() -> Vec<u8> {
        let mut body = vec![SSH_AGENTC_EXTENSION];
        for field in [
            &b"session-bind@openssh.com"[..],
            b"\x00\x00\x00\x0bssh-ed25519",
            b"session identifier",
            b"signature",
        ] {
            body.extend_from_slice(&(field.len() as u32).to_be_bytes());
            body.extend_from_slice(field);
        }
        body.push(0);
        encode_frame(&body)
    }

    /// Reads until end of stream; the bytes read.
    async fn read_to_end(s: &mut DuplexStream) -> Vec<u8> {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        rest
    }

    #[test]
    fn mode_names() {
        assert_eq!(ExtensionMode::Forward.as_str(), "forward");
        assert_eq!(ExtensionMode::Fail.to_string(), "fail");
    }

    #[tokio::test]
    async fn fail_mode_keeps_an_old_agent_connection_alive() {
        let (mut client, proxy, agent) = setup(Agent::Old, ExtensionMode::Fail);
        client.write_all(&session_bind()).await.unwrap();
        assert_eq!(
            read_message(&mut client).await.unwrap(),
            [SSH_AGENT_FAILURE]
        );
        client
            .write_all(&encode_frame(&[SSH_AGENTC_REQUEST_IDENTITIES]))
            .await
            .unwrap();
        assert_eq!(
            read_message(&mut client).await.unwrap(),
            IDENTITIES_NONE[4..]
        );
        client.shutdown().await.unwrap();
        // The proxy shuts the client's side down too.
        assert!(read_to_end(&mut client).await.is_empty());
        let totals = proxy.await.unwrap().unwrap();
        assert_eq!(
            totals,
            ProxyTotals {
                requests: 2,
                answered_locally: 1,
                bytes_to_agent: 5,
                bytes_to_client: 5 + 9,
            }
        );
        // The agent never saw the extension request, and saw the end of stream.
        assert_eq!(agent.await.unwrap(), [SSH_AGENTC_REQUEST_IDENTITIES]);
    }

    #[tokio::test]
    async fn forward_mode_passes_extension_requests_on() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Forward);
        client.write_all(&session_bind()).await.unwrap();
        assert_eq!(
            read_message(&mut client).await.unwrap(),
            [SSH_AGENT_FAILURE]
        );
        client.shutdown().await.unwrap();
        let totals = proxy.await.unwrap().unwrap();
        assert_eq!(totals.requests, 1);
        assert_eq!(totals.answered_locally, 0);
        assert_eq!(totals.bytes_to_agent, session_bind().len() as u64);
        assert_eq!(agent.await.unwrap(), [SSH_AGENTC_EXTENSION]);
    }

    #[tokio::test]
    async fn forward_mode_on_an_old_agent_ends_the_connection() {
        let (mut client, proxy, agent) = setup(Agent::Old, ExtensionMode::Forward);
        client.write_all(&session_bind()).await.unwrap();
        assert!(read_to_end(&mut client).await.is_empty());
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(e, AgentError::AgentClosed { request_type: 27 }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the agent closed the connection instead of answering SSH_AGENTC_EXTENSION (type 27)"
        );
        assert_eq!(agent.await.unwrap(), [SSH_AGENTC_EXTENSION]);
    }

    #[tokio::test]
    async fn probe_tells_the_agents_apart() {
        let (near, far) = tokio::io::duplex(4096);
        let agent = spawn_agent(far, Agent::Normal);
        let (mode, why) = probe(near).await;
        assert_eq!(mode, ExtensionMode::Forward);
        assert_eq!(
            why,
            "the agent answered the query extension with SSH_AGENT_FAILURE (type 5)"
        );
        assert_eq!(agent.await.unwrap(), [SSH_AGENTC_EXTENSION]);

        let (near, far) = tokio::io::duplex(4096);
        let agent = spawn_agent(far, Agent::Old);
        let (mode, why) = probe(near).await;
        assert_eq!(mode, ExtensionMode::Fail);
        assert_eq!(
            why,
            "the agent dropped the connection on the query extension (message 27); \
             extension requests are answered with SSH_AGENT_FAILURE here"
        );
        assert_eq!(agent.await.unwrap(), [SSH_AGENTC_EXTENSION]);
    }

    #[tokio::test]
    async fn probe_fails_on_silence_and_on_malformed_replies() {
        let (near, far) = tokio::io::duplex(4096);
        let _agent = spawn_agent(far, Agent::Silent);
        let (mode, why) = probe_within(near, Duration::from_millis(50)).await;
        assert_eq!(mode, ExtensionMode::Fail);
        assert!(why.contains("did not answer"), "{why}");

        let (near, far) = tokio::io::duplex(4096);
        let _agent = spawn_agent(far, Agent::Broken);
        let (mode, why) = probe(near).await;
        assert_eq!(mode, ExtensionMode::Fail);
        assert!(why.contains("length 0"), "{why}");

        let (near, far) = tokio::io::duplex(4096);
        drop(far);
        let (mode, why) = probe(near).await;
        assert_eq!(mode, ExtensionMode::Fail);
        assert!(why.contains("dropped the connection"), "{why}");
    }

    #[tokio::test]
    async fn oversized_request_ends_the_connection_unforwarded() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Fail);
        client
            .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                AgentError::ClientFrame(FrameError::TooLarge { len: 262_145 })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the ssh client sent an invalid agent message: \
             agent message of 262145 bytes exceeds the limit of 262144 bytes"
        );
        assert!(read_to_end(&mut client).await.is_empty());
        assert!(agent.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn largest_request_goes_through() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Fail);
        let mut body = vec![0u8; MAX_FRAME];
        body[0] = 200;
        client.write_all(&encode_frame(&body)).await.unwrap();
        assert_eq!(
            read_message(&mut client).await.unwrap(),
            [SSH_AGENT_FAILURE]
        );
        client.shutdown().await.unwrap();
        let totals = proxy.await.unwrap().unwrap();
        assert_eq!(totals.bytes_to_agent, 4 + MAX_FRAME as u64);
        assert_eq!(agent.await.unwrap(), [200]);
    }

    #[tokio::test]
    async fn zero_length_request_ends_the_connection_unforwarded() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Fail);
        client.write_all(&[0, 0, 0, 0, 11]).await.unwrap();
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(e, AgentError::ClientFrame(FrameError::Empty)),
            "{e:?}"
        );
        assert!(read_to_end(&mut client).await.is_empty());
        assert!(agent.await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn end_of_stream_inside_a_request_is_an_error() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Fail);
        client.write_all(&[0, 0, 0, 9, 11, 1]).await.unwrap();
        client.shutdown().await.unwrap();
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                AgentError::ClientTruncated {
                    got: 6,
                    expected: 13
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("6 of 13 bytes"), "{e}");
        assert!(agent.await.unwrap().is_empty());

        let (mut client, proxy, _agent) = setup(Agent::Normal, ExtensionMode::Fail);
        client.write_all(&[0, 0]).await.unwrap();
        client.shutdown().await.unwrap();
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(
                e,
                AgentError::ClientTruncated {
                    got: 2,
                    expected: 4
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn malformed_agent_reply_is_an_agent_error() {
        let (mut client, proxy, _agent) = setup(Agent::Broken, ExtensionMode::Fail);
        client
            .write_all(&encode_frame(&[SSH_AGENTC_REQUEST_IDENTITIES]))
            .await
            .unwrap();
        let e = proxy.await.unwrap().unwrap_err();
        assert!(
            matches!(e, AgentError::AgentFrame(FrameError::Empty)),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("the agent sent an invalid reply"),
            "{e}"
        );
        assert!(read_to_end(&mut client).await.is_empty());
    }

    #[tokio::test]
    async fn clean_end_without_requests() {
        let (mut client, proxy, agent) = setup(Agent::Normal, ExtensionMode::Fail);
        client.shutdown().await.unwrap();
        assert_eq!(proxy.await.unwrap().unwrap(), ProxyTotals::default());
        assert!(agent.await.unwrap().is_empty());
    }
}
