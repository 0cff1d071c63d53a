//! A blocking client, for a program (or a thread) that makes one call at a time and has no
//! runtime to run the async [`Client`](crate::Client) on.
//!
//! Each call writes its request and waits for the answer on the caller's thread, through the
//! core's blocking stream ([`pipewright::BlockingPipeStream`]): no task, no hop to another
//! thread. Against a server that serves the connection on a thread of its own
//! ([`Server::connection_threads`](crate::Server::connection_threads)) a call costs what a
//! plain blocking program's write and read cost.
//!
//! ```no_run
//! use pipewright_rpc::{blocking, demo};
//! let mut client = blocking::Client::connect("rpc_demo")?;
//! let answer: demo::Response = client.request(&demo::Request::Factorial { n: 5 })?;
//! assert_eq!(answer, demo::Response::Number(120));
//! let sum: i64 = client.call("Add", &serde_json::json!({"a": 2, "b": 3}))?;
//! # Ok::<(), pipewright_rpc::RpcError>(())
//! ```

use std::io::{self, Write};
use std::time::{Duration, Instant};

use pipewright::{BlockingPipeStream, ConnectOptions, ErrorKind, PipeName, ToPipeName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::runtime::Builder;

use crate::client::{call_frame, decode, request_frame, ClientOptions};
use crate::error::RpcError;
use crate::frame::FrameBuf;
use crate::frame_buffer::{FrameBuffer, Front};
use crate::wire;

/// A read timeout this close to the one wanted is left as it is: setting it costs a system
/// call on Unix. A read that times out before the call's deadline just waits again, so the
/// call ends at most this much late.
const TIMEOUT_SLACK: Duration = Duration::from_millis(1);

/// A blocking RPC client: one call at a time on one connection, made on the caller's thread.
///
/// Calls carry ids and are matched to their answers like the async client's, so it talks to
/// any server of this crate and to pipe-rpc's. A call that times out, or whose connection
/// fails, drops the connection (a late answer can never be taken for the next call's), and
/// the next call connects again. The call timeout covers waiting for the answer; a request
/// the server does not read blocks its write, as over TCP.
///
/// Every call blocks its thread: in async code, make calls from a thread of your own or
/// tokio's `spawn_blocking`, not from a task. Connecting runs a short-lived runtime on a
/// helper thread, so it works from any thread.
#[derive(Debug)]
pub struct Client {
    name: PipeName,
    options: ClientOptions,
    conn: Option<Connection>,
    next_id: u64,
}

#[derive(Debug)]
struct Connection {
    stream: BlockingPipeStream,
    frames: FrameBuffer,
    /// The read timeout the stream has now.
    read_timeout: Option<Duration>,
}

/// Why an exchange failed.
enum Failure {
    TimedOut,
    Closed(String),
}

impl Client {
    /// Connects to `name` with the default options.
    pub fn connect(name: impl ToPipeName) -> Result<Client, RpcError> {
        Self::connect_with(name, ClientOptions::default())
    }

    /// Connects to `name` with `options`, retrying a busy or missing server until the
    /// connect timeout.
    pub fn connect_with(name: impl ToPipeName, options: ClientOptions) -> Result<Client, RpcError> {
        let mut client = Client {
            name: name.to_pipe_name()?,
            options,
            conn: None,
            next_id: 1,
        };
        client.connection()?;
        Ok(client)
    }

    /// The name this client connects to.
    pub fn name(&self) -> &PipeName {
        &self.name
    }

    /// Calls `method` with `params` and decodes the Ok answer as `R`, within the default
    /// call timeout.
    pub fn call<P, R>(&mut self, method: &str, params: &P) -> Result<R, RpcError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with_timeout(method, params, self.options.call_timeout)
    }

    /// Like [`call`](Self::call), with its own timeout.
    pub fn call_with_timeout<P, R>(
        &mut self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, RpcError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let id = self.take_id();
        let frame = call_frame(method, params, id, self.options.max_frame_size)?;
        let method = || method.to_owned();
        self.exchange(id, &frame, timeout, &method)
    }

    /// Sends a request value that serializes as `{"method": ..., "params": ...}` (a
    /// `#[serde(tag = "method", content = "params")]` enum) and decodes the Ok answer as `R`.
    pub fn request<Q, R>(&mut self, request: &Q) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_with_timeout(request, self.options.call_timeout)
    }

    /// Like [`request`](Self::request), with its own timeout.
    pub fn request_with_timeout<Q, R>(
        &mut self,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let id = self.take_id();
        let frame = request_frame(request, id, self.options.max_frame_size)?;
        let method = || wire::method_of(frame.body());
        self.exchange(id, &frame, timeout, &method)
    }

    /// Drops the current connection and connects again.
    pub fn reconnect(&mut self) -> Result<(), RpcError> {
        self.conn = None;
        self.connection().map(drop)
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The connection, connecting first when there is none.
    fn connection(&mut self) -> Result<&mut Connection, RpcError> {
        if self.conn.is_none() {
            let stream = open(&self.name, &self.options.connect)?;
            self.conn = Some(Connection {
                stream,
                frames: FrameBuffer::new(self.options.max_frame_size),
                read_timeout: None,
            });
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Sends request `id` (a sealed frame), waits for its answer and decodes the Ok params
    /// as `R`; drops the connection when the call fails other than by the server's Err.
    fn exchange<R: DeserializeOwned>(
        &mut self,
        id: u64,
        frame: &FrameBuf,
        timeout: Duration,
        method: &(dyn Fn() -> String + Sync),
    ) -> Result<R, RpcError> {
        let deadline = Instant::now().checked_add(timeout);
        let conn = self.connection()?;
        let outcome = conn.exchange(id, frame.frame(), deadline, |answer| match answer {
            Ok(params) => decode(method, params),
            Err(message) => Err(RpcError::Remote(message)),
        });
        match outcome {
            Ok(result) => result,
            Err(failure) => {
                self.conn = None;
                Err(match failure {
                    Failure::TimedOut => RpcError::TimedOut {
                        method: method(),
                        timeout,
                    },
                    Failure::Closed(reason) => RpcError::Disconnected {
                        method: method(),
                        reason,
                    },
                })
            }
        }
    }
}

/// Connects to `name` and makes the stream blocking, with the core's async connect (and
/// its retry of busy and missing servers) run on a helper thread: a thread without a
/// runtime of its own, so this works whatever runtime the caller's thread belongs to.
fn open(name: &PipeName, options: &ConnectOptions) -> pipewright::Result<BlockingPipeStream> {
    let connect = || {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            pipewright::connect_with(name, options)
                .await?
                .into_blocking()
                .await
        })
    };
    std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("rpc-connect".to_owned())
            .spawn_scoped(scope, connect)?;
        helper.join().unwrap_or_else(|_| {
            Err(pipewright::Error::new(
                ErrorKind::Other,
                "connecting panicked; see the panic message above",
            ))
        })
    })
}

impl Connection {
    /// Writes `frame` (request `id`) and reads until its answer, which `take` gets (the Ok
    /// params borrowed from the read buffer, or the Err message).
    fn exchange<T>(
        &mut self,
        id: u64,
        frame: &[u8],
        deadline: Option<Instant>,
        take: impl FnOnce(Result<&RawValue, String>) -> T,
    ) -> Result<T, Failure> {
        self.stream
            .write_all(frame)
            .map_err(|e| Failure::Closed(format!("sending the request: {e}")))?;
        loop {
            match self.frames.front() {
                Front::Partial => {}
                Front::Oversize(len) => {
                    return Err(Failure::Closed(format!(
                        "the server sent a {len}-byte answer, over the {}-byte frame limit; raise the client's max_frame_size",
                        self.frames.max_frame()
                    )))
                }
                Front::Whole(body) => {
                    let len = body.len();
                    let (answer_id, answer) =
                        wire::decode_answer_borrowed(body).map_err(Failure::Closed)?;
                    // An answer without an id answers the oldest call: this one. Any other id
                    // cannot come (one call at a time, and a call that fails drops the
                    // connection), and is skipped.
                    if answer_id.is_none_or(|a| a == id) {
                        let taken = take(answer);
                        self.frames.consume_frame(len);
                        return Ok(taken);
                    }
                    self.frames.consume_frame(len);
                    tracing::debug!(answer_id, id, "skipping an answer to another call");
                    continue;
                }
            }
            self.wait_until(deadline)?;
            match self.frames.read_from(&mut self.stream) {
                Ok(0) => {
                    return Err(Failure::Closed(match self.frames.unhandled_len() {
                        0 => "the server closed the connection".to_owned(),
                        got => format!(
                            "truncated frame: the server closed the connection after {got} bytes of a frame"
                        ),
                    }))
                }
                Ok(_) => {}
                // Timed out by a read timeout set a little short: the next turn waits again.
                Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                Err(e) => return Err(Failure::Closed(format!("reading the answer: {e}"))),
            }
        }
    }

    /// Sets the stream's read timeout to what is left until `deadline`, unless it is that
    /// already (within [`TIMEOUT_SLACK`] either way); fails when the deadline has passed.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), Failure> {
        let left = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(Failure::TimedOut),
            },
        };
        let close_enough = match (self.read_timeout, left) {
            (None, None) => true,
            (Some(set), Some(left)) => set.abs_diff(left) <= TIMEOUT_SLACK,
            _ => false,
        };
        if !close_enough {
            self.stream.set_read_timeout(left);
            self.read_timeout = left;
        }
        Ok(())
    }
}
