//! Opening a pipe as a client, with a bounded timeout and retry of busy or missing servers.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::name::ToPipeName;
use crate::options::ConnectOptions;
use crate::stream::PipeStream;
use crate::sys;

const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);
/// Every attempt may take at least this long, even when the retry deadline has passed: an
/// attempt that is already under way (a Unix connect waits for writability) is not cut short.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

/// Connects to `name` with the default options (byte mode, 5 s timeout, retrying busy and
/// missing servers).
///
/// ```no_run
/// # async fn demo() -> pipewright::Result<()> {
/// let conn = pipewright::connect(r"\\.\pipe\docker_engine").await?;
/// # Ok(()) }
/// ```
pub async fn connect(name: impl ToPipeName) -> Result<PipeStream> {
    connect_with(name, &ConnectOptions::default()).await
}

/// Connects to `name` with `options`. While the server is busy or does not exist yet, retries
/// with backoff (sleeping on the runtime's timer, never blocking a thread) until the timeout;
/// then fails with the last failure's kind ([`NotFound`](ErrorKind::NotFound) or
/// [`Busy`](ErrorKind::Busy)). A single attempt that outlives the deadline fails with
/// [`TimedOut`](ErrorKind::TimedOut). A remote `\\HOST\pipe\NAME` fails with
/// [`InvalidName`](ErrorKind::InvalidName) unless
/// [`ConnectOptions::allow_remote`] is set; its open then runs on tokio's blocking pool, so
/// the timeout applies to it too and no runtime thread waits on the network.
pub async fn connect_with(name: impl ToPipeName, options: &ConnectOptions) -> Result<PipeStream> {
    let name = name.to_pipe_name()?;
    options.validate()?;
    if let (Some(host), false) = (name.host(), options.allow_remote) {
        return Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "connect: '{host}' is another machine, and remote pipes are refused by default; \
                 set ConnectOptions::allow_remote(true) to open it, or use \\\\.\\pipe\\{}",
                name.name()
            ),
        )
        .with_pipe(name.windows_path()));
    }
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let attempt_deadline = deadline.max(Instant::now() + MIN_ATTEMPT);
        let attempt =
            tokio::time::timeout_at(attempt_deadline, sys::connect_once(&name, options)).await;
        let err = match attempt {
            Ok(Ok(stream)) => return Ok(PipeStream::from_sys(stream)),
            Ok(Err(err)) => err,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "connect: no answer within {:?}; is the server stuck?",
                        options.timeout.max(MIN_ATTEMPT)
                    ),
                )
                .with_pipe(name.platform_path()))
            }
        };
        let retry = match err.kind() {
            ErrorKind::NotFound => options.retry_not_found,
            ErrorKind::Busy => options.retry_busy,
            _ => false,
        };
        let now = Instant::now();
        if !retry || now >= deadline {
            if retry && !options.timeout.is_zero() {
                tracing::debug!(pipe = %name, kind = %err.kind(), "connect gave up");
                return Err(err.waited(options.timeout));
            }
            return Err(err);
        }
        tracing::debug!(pipe = %name, kind = %err.kind(), "connect: {err}; retrying");
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Checks that a server is ready by opening a real client connection and closing it at once
/// (never by looking for a file). Retries busy and missing servers until `timeout`.
///
/// ```no_run
/// # async fn demo() {
/// use std::time::Duration;
/// match pipewright::probe("my-service", Duration::from_secs(2)).await {
///     Ok(()) => println!("ready"),
///     Err(e) => println!("not ready: {e} ({:?})", e.kind()),
/// }
/// # }
/// ```
pub async fn probe(name: impl ToPipeName, timeout: Duration) -> Result<()> {
    let options = ConnectOptions::default().timeout(timeout);
    let stream = connect_with(name, &options).await?;
    drop(stream);
    Ok(())
}

impl Error {
    /// Notes in the message how long the caller waited before giving up.
    fn waited(self, timeout: Duration) -> Self {
        let detail = format!("{} (gave up after {:?})", self.detail_text(), timeout);
        self.with_detail(detail)
    }
}
