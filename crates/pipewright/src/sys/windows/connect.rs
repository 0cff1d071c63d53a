//! One client connect attempt. A local open never blocks for long and runs inline; a remote
//! `\\HOST\pipe\NAME` goes over SMB, where `CreateFileW` can block for the network's own
//! timeout, so it runs on tokio's blocking pool: the caller's connect timeout abandons the
//! wait, and an open that finishes later has its handle closed when the task's result is
//! dropped.

use std::os::windows::io::OwnedHandle;

use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;

use super::iocp::associate;
use super::pipe::{self, raw, wide};
use super::stream::Stream;
use crate::error::{Error, ErrorKind, Result};
use crate::name::PipeName;
use crate::options::{ConnectOptions, PipeMode, StreamConfig};

/// One connect attempt: open the client end, set the read mode, join the completion port.
pub(crate) async fn connect_once(name: &PipeName, options: &ConnectOptions) -> Result<Stream> {
    let path = name.windows_path();
    let (handle, config) = if name.host().is_none() {
        open(&path, options)?
    } else {
        let (path2, options2) = (path.clone(), options.clone());
        tokio::task::spawn_blocking(move || open(&path2, &options2))
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    format!("connect: the blocking open of a remote pipe failed: {e}"),
                )
                .with_pipe(path.clone())
            })??
    };
    associate(raw(&handle))
        .map_err(|e| Error::from_io(e, &path, "associate with completion port"))?;
    Ok(Stream::new(handle, config, false, path, None))
}

/// Opens the client end and sets its read mode; for a remote pipe each call may wait on the
/// network.
fn open(path: &str, options: &ConnectOptions) -> Result<(OwnedHandle, StreamConfig)> {
    let handle = pipe::open_client(&wide(path), options.impersonation)
        .map_err(|e| Error::from_io(e, path, "connect"))?;
    let mut config = options.stream.clone();
    if options.mode_from_server {
        let message = pipe::is_message_pipe(&handle)
            .map_err(|e| Error::from_io(e, path, "query the pipe's type"))?;
        config.mode = if message {
            PipeMode::Message
        } else {
            PipeMode::Byte
        };
    }
    if config.mode == PipeMode::Message {
        pipe::set_message_read_mode(&handle).map_err(|e| {
            if e.raw_os_error() == Some(ERROR_INVALID_PARAMETER as i32) {
                Error::new(
                    ErrorKind::InvalidOption,
                    "connect: the server's pipe is a byte pipe; connect in byte mode",
                )
                .with_pipe(path)
                .with_source(e)
            } else {
                Error::from_io(e, path, "set message read mode")
            }
        })?;
    }
    Ok((handle, config))
}
