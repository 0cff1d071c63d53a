//! The platform's baseline transport (profile 0x01): UDS SEQPACKET on Linux,
//! named pipes on Windows (and pipewright's framed sockets elsewhere, which
//! are not the netipc wire).
//!
//! ```no_run
//! # async fn demo() -> Result<(), pipewright_netipc::session::SessionError> {
//! use pipewright_netipc::endpoint;
//! let dir = std::path::Path::new("/run/netdata");
//! println!("serving at {}", endpoint::address(dir, "cgroups-snapshot")?);
//! let listener = endpoint::bind(dir, "cgroups-snapshot", 0)?;
//! # Ok(()) }
//! ```

use super::TransportError;
use crate::wire::naming::NamingError;
use std::path::Path;

/// The listener type of the platform's baseline transport.
#[cfg(target_os = "linux")]
pub type DefaultListener = crate::transport::uds::UdsListener;
/// The connected transport type of the platform's baseline transport.
#[cfg(target_os = "linux")]
pub type DefaultTransport = crate::transport::uds::UdsTransport;
/// The listener type of the platform's baseline transport.
#[cfg(not(target_os = "linux"))]
pub type DefaultListener = crate::transport::pipe::PipeListener;
/// The connected transport type of the platform's baseline transport.
#[cfg(not(target_os = "linux"))]
pub type DefaultTransport = crate::transport::pipe::PipeTransport;

/// The run directory as the string the pipe name hashes, byte for byte.
pub fn run_dir_str(run_dir: &Path) -> Result<&str, NamingError> {
    run_dir
        .to_str()
        .ok_or_else(|| NamingError::RunDirNotUnicode(run_dir.to_owned()))
}

/// Where `service` of `run_dir` is served: the socket path on Linux, the pipe
/// name elsewhere.
pub fn address(run_dir: &Path, service: &str) -> Result<String, NamingError> {
    #[cfg(target_os = "linux")]
    {
        Ok(crate::wire::naming::uds_path(run_dir, service)?
            .display()
            .to_string())
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::wire::naming::pipe_name(run_dir_str(run_dir)?, service)
    }
}

/// Creates the service's listener. `packet_size` (0 = automatic) sizes the
/// pipe buffers on Windows; on Linux the socket decides.
pub fn bind(
    run_dir: &Path,
    service: &str,
    packet_size: u32,
) -> Result<DefaultListener, TransportError> {
    #[cfg(target_os = "linux")]
    {
        let _ = packet_size;
        let path = crate::wire::naming::uds_path(run_dir, service)?;
        Ok(crate::transport::uds::UdsListener::bind(&path)?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::wire::naming::validate_service_name(service)?;
        Ok(crate::transport::pipe::PipeListener::bind(
            run_dir_str(run_dir)?,
            service,
            packet_size,
        )?)
    }
}

/// Connects to the service's listener. `packet_size` (0 = automatic) is the
/// largest packet this end will advertise on Windows; on Linux the socket
/// decides (`SO_SNDBUF - 32`).
pub async fn connect(
    run_dir: &Path,
    service: &str,
    packet_size: u32,
) -> Result<DefaultTransport, TransportError> {
    #[cfg(target_os = "linux")]
    {
        let _ = packet_size;
        let path = crate::wire::naming::uds_path(run_dir, service)?;
        Ok(crate::transport::uds::UdsTransport::connect(&path).await?)
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::wire::naming::validate_service_name(service)?;
        Ok(crate::transport::pipe::PipeTransport::connect(
            run_dir_str(run_dir)?,
            service,
            packet_size,
        )
        .await?)
    }
}
