//! `master.sock`: the admin CLI's requests to the master, one per connection.

use super::{request, required, verb, ControlVerb, DecodeError};
use crate::ipc::proto::Attrs;

/// A request of the admin CLI (`postern status|reload|stop|restart`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlRequest {
    /// The status text, as the reply's body.
    Status,
    /// Reload the configuration; answered when every worker acknowledged.
    Reload,
    /// Stop postern; answered before the stop begins.
    Stop,
    /// Replace a worker's processes; answered when they are replaced.
    Restart {
        /// `smtpd`, `router` or `updater`.
        worker: String,
    },
}

impl ControlRequest {
    /// The request's verb.
    pub fn verb(&self) -> ControlVerb {
        match self {
            ControlRequest::Status => ControlVerb::Status,
            ControlRequest::Reload => ControlVerb::Reload,
            ControlRequest::Stop => ControlVerb::Stop,
            ControlRequest::Restart { .. } => ControlVerb::Restart,
        }
    }

    /// The attribute list to send.
    pub fn encode(&self) -> Attrs {
        let msg = request(self.verb());
        match self {
            ControlRequest::Restart { worker } => msg.with("worker", worker),
            _ => msg,
        }
    }

    /// The request a message holds, strictly.
    pub fn decode(msg: &Attrs) -> Result<Self, DecodeError> {
        Ok(match verb::<ControlVerb>(msg)? {
            ControlVerb::Status => ControlRequest::Status,
            ControlVerb::Reload => ControlRequest::Reload,
            ControlVerb::Stop => ControlRequest::Stop,
            ControlVerb::Restart => ControlRequest::Restart {
                worker: required(msg, ControlVerb::Restart, "worker")?.to_string(),
            },
        })
    }
}
