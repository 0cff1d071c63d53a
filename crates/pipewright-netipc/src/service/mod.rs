//! L2 service handlers: what a managed server answers for one method.
//!
//! Each endpoint serves exactly one method ([`Service::method`]); the
//! managed server answers any other method with UNSUPPORTED. A handler error
//! becomes a status response ([`ServiceError::status`]).
//!
//! ```
//! use pipewright_netipc::codec::increment;
//! use pipewright_netipc::header::method;
//! use pipewright_netipc::service::{Increment, Service};
//! let reply = Increment.handle(method::INCREMENT, &increment::encode(41)).unwrap();
//! assert_eq!(increment::decode(&reply).unwrap(), 42);
//! ```

pub mod blocking;
pub mod client;
pub mod lookups;
pub mod managed;
mod on_thread;

use crate::codec::cgroups_snapshot::{self, Snapshot};
use crate::codec::{increment, string_reverse, CodecError};
use crate::wire::header::{method, TransportStatus};
use std::fmt;

/// Why a handler could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request payload failed to decode (BAD_ENVELOPE; the session ends).
    #[error("malformed request: {0}")]
    BadRequest(#[from] CodecError),
    /// The handler failed (INTERNAL_ERROR; the session ends).
    #[error("handler failed: {0}")]
    Failed(String),
}

impl ServiceError {
    /// The transport status the client receives.
    pub fn status(&self) -> TransportStatus {
        match self {
            ServiceError::BadRequest(_) => TransportStatus::BAD_ENVELOPE,
            ServiceError::Failed(_) => TransportStatus::INTERNAL_ERROR,
        }
    }
}

/// A request handler for one endpoint.
pub trait Service: Send + Sync + 'static {
    /// The one method code this endpoint serves, or `None` to answer every
    /// method (the raw echo).
    fn method(&self) -> Option<u16>;

    /// Answers one request item (one message, or one item of a batch).
    fn handle(&self, code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError>;

    /// Answers a single (non-batch) request into `out`, replacing its contents. The managed
    /// server reuses `out` from request to request, so a service that writes into it answers
    /// without allocating; by default this calls [`handle`](Self::handle).
    fn handle_into(
        &self,
        code: u16,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ServiceError> {
        *out = self.handle(code, request)?;
        Ok(())
    }
}

/// INCREMENT: answers `n + 1` (wrapping).
#[derive(Debug, Clone, Copy, Default)]
pub struct Increment;

impl Service for Increment {
    fn method(&self) -> Option<u16> {
        Some(method::INCREMENT)
    }

    fn handle(&self, _code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let v = increment::decode(request)?;
        Ok(increment::encode(v.wrapping_add(1)).to_vec())
    }

    fn handle_into(
        &self,
        _code: u16,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ServiceError> {
        let v = increment::decode(request)?;
        out.clear();
        out.extend_from_slice(&increment::encode(v.wrapping_add(1)));
        Ok(())
    }
}

/// STRING_REVERSE: answers the bytes reversed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringReverse;

impl Service for StringReverse {
    fn method(&self) -> Option<u16> {
        Some(method::STRING_REVERSE)
    }

    fn handle(&self, _code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let mut s = string_reverse::decode(request)?.to_vec();
        s.reverse();
        Ok(string_reverse::encode(&s)?)
    }
}

/// Raw L1 echo: answers any method with the request payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Service for Echo {
    fn method(&self) -> Option<u16> {
        None
    }

    fn handle(&self, _code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        Ok(request.to_vec())
    }

    fn handle_into(
        &self,
        _code: u16,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), ServiceError> {
        out.clear();
        out.extend_from_slice(request);
        Ok(())
    }
}

/// CGROUPS_SNAPSHOT: answers the snapshot a provider builds per request.
///
/// ```
/// use pipewright_netipc::codec::cgroups_snapshot::{CgroupItem, Snapshot};
/// use pipewright_netipc::service::CgroupsSnapshot;
/// let svc = CgroupsSnapshot::new(|| Ok(Snapshot { systemd_enabled: 1, generation: 1,
///     items: vec![CgroupItem::new(b"system.slice".to_vec(), b"/sys/fs/cgroup/system.slice".to_vec())] }));
/// # let _ = svc;
/// ```
pub struct CgroupsSnapshot<F> {
    provider: F,
}

impl<F> CgroupsSnapshot<F>
where
    F: Fn() -> Result<Snapshot, String> + Send + Sync + 'static,
{
    /// A service calling `provider` for every request.
    pub fn new(provider: F) -> CgroupsSnapshot<F> {
        CgroupsSnapshot { provider }
    }
}

impl<F> fmt::Debug for CgroupsSnapshot<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CgroupsSnapshot").finish_non_exhaustive()
    }
}

impl<F> Service for CgroupsSnapshot<F>
where
    F: Fn() -> Result<Snapshot, String> + Send + Sync + 'static,
{
    fn method(&self) -> Option<u16> {
        Some(method::CGROUPS_SNAPSHOT)
    }

    fn handle(&self, _code: u16, request: &[u8]) -> Result<Vec<u8>, ServiceError> {
        cgroups_snapshot::decode_request(request)?;
        let snapshot = (self.provider)().map_err(ServiceError::Failed)?;
        snapshot
            .encode()
            .map_err(|e| ServiceError::Failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_into_a_reused_buffer_match_the_plain_answers() {
        let mut out = b"left over from an earlier, longer answer".to_vec();
        let services: [&dyn Service; 3] = [&Increment, &Echo, &StringReverse];
        let requests = [
            increment::encode(41).to_vec(),
            b"echo me".to_vec(),
            string_reverse::encode(b"abc").unwrap(),
        ];
        for (svc, req) in services.iter().zip(&requests) {
            let code = svc.method().unwrap_or(9);
            svc.handle_into(code, req, &mut out).unwrap();
            assert_eq!(out, svc.handle(code, req).unwrap());
        }
        let e = Increment.handle_into(1, b"short", &mut out).unwrap_err();
        assert_eq!(e.status(), TransportStatus::BAD_ENVELOPE);
    }

    #[test]
    fn handlers_answer_and_reject() {
        assert_eq!(
            increment::decode(&Increment.handle(1, &increment::encode(u64::MAX)).unwrap()).unwrap(),
            0
        );
        let e = Increment.handle(1, b"short").unwrap_err();
        assert_eq!(e.status(), TransportStatus::BAD_ENVELOPE);
        let r = StringReverse
            .handle(3, &string_reverse::encode(b"abc").unwrap())
            .unwrap();
        assert_eq!(string_reverse::decode(&r).unwrap(), b"cba");
        assert!(StringReverse.handle(3, &[0; 3]).is_err());
        assert_eq!(Echo.handle(9, b"xyz").unwrap(), b"xyz");
        assert_eq!(Echo.method(), None);
        let svc = CgroupsSnapshot::new(|| Err("no cgroups".to_string()));
        let e = svc
            .handle(2, &cgroups_snapshot::encode_request())
            .unwrap_err();
        assert_eq!(e.status(), TransportStatus::INTERNAL_ERROR);
        let e = svc.handle(2, &[1, 0, 1, 0]).unwrap_err();
        assert_eq!(e.status(), TransportStatus::BAD_ENVELOPE);
    }
}
