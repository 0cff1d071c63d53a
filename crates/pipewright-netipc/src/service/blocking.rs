//! Blocking L2 API: the async [`Client`](crate::service::client::Client) and
//! [`ManagedServer`](crate::service::managed::ManagedServer) on a private tokio
//! runtime, for programs without one. Do not call from inside a runtime.
//!
//! Over shared memory the blocking client is the fast path: each call
//! publishes and waits on the region directly on the caller's thread (no
//! hop to another thread), and a call that completes without waiting on
//! the runtime (every call of a connected SHM session) never enters
//! `Runtime::block_on`. The runtime's single worker thread only watches the
//! baseline connection for the session's end.
//!
//! ```no_run
//! use pipewright_netipc::blocking::{Client, ManagedServer};
//! use pipewright_netipc::client::ClientConfig;
//! use pipewright_netipc::handshake::EndpointConfig;
//! use pipewright_netipc::managed::ManagedConfig;
//! use pipewright_netipc::service::Increment;
//! let dir = std::path::Path::new("/tmp");
//! let endpoint = EndpointConfig { auth_token: 42, ..Default::default() };
//! let server = ManagedServer::start(dir, "inc", ManagedConfig::new(endpoint), Increment).unwrap();
//! let mut client = Client::new(dir, "inc", ClientConfig::new(endpoint)).unwrap();
//! assert_eq!(client.increment(1).unwrap(), 2);
//! server.stop();
//! ```

use crate::codec::cgroups_snapshot::Snapshot;
use crate::service::client::{self, ClientConfig, ClientError};
use crate::service::managed::{self, ManagedConfig, Stopper};
use crate::service::Service;
use crate::session::handshake::Negotiated;
use crate::session::SessionError;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use tokio::runtime::{Builder, Runtime};

fn runtime() -> io::Result<Runtime> {
    Builder::new_current_thread().enable_all().build()
}

/// One worker thread keeps the baseline connection's watcher running while
/// the caller's thread blocks on the region.
fn client_runtime() -> io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("netipc-client-io")
        .enable_all()
        .build()
}

/// A blocking L2 client on its own single-threaded runtime.
#[derive(Debug)]
pub struct Client {
    runtime: Runtime,
    inner: client::Client,
}

/// Runs `future` to completion on the caller's thread: first one poll in
/// place (inside the runtime's context, so tokio resources can be created),
/// and only when that is not enough, `block_on`. Nothing waits on the first
/// poll's waker: a future still pending is polled again at once by
/// `block_on` with its own.
fn run<F: Future>(runtime: &Runtime, future: F) -> F::Output {
    let mut future = pin!(future);
    {
        let _context = runtime.enter();
        if let Poll::Ready(v) = future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            return v;
        }
    }
    runtime.block_on(future)
}

impl Client {
    /// A client of `service` in `run_dir`; connects on first use.
    pub fn new(run_dir: &Path, service: &str, config: ClientConfig) -> io::Result<Client> {
        let mut inner = client::Client::new(run_dir, service, config);
        inner.set_inline_shm(true);
        Ok(Client {
            runtime: client_runtime()?,
            inner,
        })
    }

    /// The values of the current session, if connected.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.inner.negotiated()
    }

    /// The shared-memory profile of the current session, if it runs over SHM.
    pub fn shm_profile(&self) -> Option<u32> {
        self.inner.shm_profile()
    }

    /// Connects now and returns the negotiated values.
    pub fn connect(&mut self) -> Result<Negotiated, ClientError> {
        run(&self.runtime, self.inner.connect())
    }

    /// Sends one request and returns the response payload.
    pub fn call(&mut self, code: u16, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        run(&self.runtime, self.inner.call(code, payload))
    }

    /// INCREMENT.
    pub fn increment(&mut self, value: u64) -> Result<u64, ClientError> {
        run(&self.runtime, self.inner.increment(value))
    }

    /// STRING_REVERSE.
    pub fn string_reverse(&mut self, s: &[u8]) -> Result<Vec<u8>, ClientError> {
        run(&self.runtime, self.inner.string_reverse(s))
    }

    /// CGROUPS_SNAPSHOT.
    pub fn cgroups_snapshot(&mut self) -> Result<Snapshot, ClientError> {
        run(&self.runtime, self.inner.cgroups_snapshot())
    }
}

/// A managed server running on its own thread and runtime.
#[derive(Debug)]
pub struct ManagedServer {
    stopper: Stopper,
    thread: Option<JoinHandle<Result<(), SessionError>>>,
}

impl ManagedServer {
    /// Binds `service_name` in `run_dir` and serves it on a background
    /// thread. Bind errors are returned here.
    pub fn start(
        run_dir: &Path,
        service_name: &str,
        config: ManagedConfig,
        service: impl Service,
    ) -> Result<ManagedServer, SessionError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1); // one message: the bind result
        let run_dir = run_dir.to_owned();
        let name = service_name.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = runtime()?;
            rt.block_on(async move {
                match managed::ManagedServer::bind(&run_dir, &name, config, service) {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.stopper()));
                        server.run().await
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        Ok(())
                    }
                }
            })
        });
        match rx.recv() {
            Ok(Ok(stopper)) => Ok(ManagedServer {
                stopper,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => match thread.join() {
                Ok(Err(e)) => Err(e),
                _ => Err(SessionError::Io(io::Error::other(
                    "the server thread ended before binding",
                ))),
            },
        }
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ManagedServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
