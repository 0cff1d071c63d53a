//! Client-side bookkeeping of pipelined requests (the in-flight id set).
//!
//! ```
//! use pipewright_netipc::inflight::InFlight;
//! let mut f = InFlight::default();
//! f.insert(1).unwrap();
//! assert!(f.insert(1).is_err());
//! f.complete(1).unwrap();
//! assert!(f.complete(1).is_err());
//! ```

use std::collections::HashSet;

/// A correlation failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InFlightError {
    /// The id is already awaiting a response.
    #[error("message id {0} is already in flight")]
    Duplicate(u64),
    /// A response arrived for an id that is not in flight.
    #[error("response for message id {0}, which is not in flight")]
    Unknown(u64),
}

/// The set of request ids awaiting a response.
#[derive(Debug, Default, Clone)]
pub struct InFlight {
    ids: HashSet<u64>,
}

impl InFlight {
    /// Records a sent request.
    pub fn insert(&mut self, id: u64) -> Result<(), InFlightError> {
        if self.ids.insert(id) {
            Ok(())
        } else {
            Err(InFlightError::Duplicate(id))
        }
    }

    /// Records a received response.
    pub fn complete(&mut self, id: u64) -> Result<(), InFlightError> {
        if self.ids.remove(&id) {
            Ok(())
        } else {
            Err(InFlightError::Unknown(id))
        }
    }

    /// Whether `id` is awaiting a response.
    pub fn contains(&self, id: u64) -> bool {
        self.ids.contains(&id)
    }

    /// Number of requests awaiting a response.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Fails every outstanding request (after a transport error), returning
    /// their ids in ascending order.
    pub fn fail_all(&mut self) -> Vec<u64> {
        let mut v: Vec<u64> = self.ids.drain().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_completion() {
        let mut f = InFlight::default();
        for id in 1..=20 {
            f.insert(id).unwrap();
        }
        assert_eq!(f.insert(7), Err(InFlightError::Duplicate(7)));
        for id in (1..=20).rev().step_by(2) {
            f.complete(id).unwrap();
        }
        assert_eq!(f.len(), 10);
        assert_eq!(f.complete(21), Err(InFlightError::Unknown(21)));
        assert_eq!(f.fail_all(), (1..=19).step_by(2).collect::<Vec<u64>>());
        assert!(f.is_empty());
    }
}
