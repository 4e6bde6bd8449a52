//! `updater.sock`: requests to the updater, one per connection.

use super::{request, required, verb, DecodeError, UpdaterVerb};
use crate::proto::Attrs;

/// A request to the updater.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdaterRequest {
    /// An update mail to store durably and deliver (smtpd); answered
    /// `status=ok queue_id=` once it is on disk.
    Queue {
        /// The session that received it (empty when not given).
        sid: String,
        /// The envelope sender (empty: the null sender, or not given).
        sender: String,
        /// The update address it was sent to.
        recipient: String,
        /// The message, dot-stuffed, without its terminator.
        body: Vec<u8>,
    },
    /// The queue's text (`postern queue`).
    List,
    /// Every deferred copy tried now (`postern queue flush`).
    Flush,
    /// Deletes a queued update.
    Delete {
        /// The update's queue id.
        id: String,
    },
    /// The restart schedule's text (`postern restarts`).
    Restarts,
    /// Cancels a scheduled restart.
    Cancel {
        /// The restart's id.
        id: String,
    },
}

impl UpdaterRequest {
    /// The request's verb.
    pub fn verb(&self) -> UpdaterVerb {
        match self {
            UpdaterRequest::Queue { .. } => UpdaterVerb::Queue,
            UpdaterRequest::List => UpdaterVerb::List,
            UpdaterRequest::Flush => UpdaterVerb::Flush,
            UpdaterRequest::Delete { .. } => UpdaterVerb::Delete,
            UpdaterRequest::Restarts => UpdaterVerb::Restarts,
            UpdaterRequest::Cancel { .. } => UpdaterVerb::Cancel,
        }
    }

    /// The attribute list to send.
    pub fn encode(self) -> Attrs {
        let msg = request(self.verb());
        match self {
            UpdaterRequest::Queue {
                sid,
                sender,
                recipient,
                body,
            } => msg
                .with("sid", sid)
                .with("sender", sender)
                .with("recipient", recipient)
                .with_body(body),
            UpdaterRequest::Delete { id } | UpdaterRequest::Cancel { id } => msg.with("id", id),
            UpdaterRequest::List | UpdaterRequest::Flush | UpdaterRequest::Restarts => msg,
        }
    }

    /// The request a message holds, strictly: a queued mail needs its
    /// recipient and its body, a deletion or cancellation its `id`.
    pub fn decode(msg: Attrs) -> Result<Self, DecodeError> {
        let v = verb::<UpdaterVerb>(&msg)?;
        Ok(match v {
            UpdaterVerb::Queue => UpdaterRequest::Queue {
                recipient: required(&msg, v, "recipient")
                    .map_err(|_| DecodeError::Without("queue", "a recipient"))?
                    .to_string(),
                sid: msg.get("sid").unwrap_or_default().to_string(),
                sender: msg.get("sender").unwrap_or_default().to_string(),
                body: msg.body.ok_or(DecodeError::Without("queue", "a body"))?,
            },
            UpdaterVerb::List => UpdaterRequest::List,
            UpdaterVerb::Flush => UpdaterRequest::Flush,
            UpdaterVerb::Delete => UpdaterRequest::Delete {
                id: required(&msg, v, "id")?.to_string(),
            },
            UpdaterVerb::Restarts => UpdaterRequest::Restarts,
            UpdaterVerb::Cancel => UpdaterRequest::Cancel {
                id: required(&msg, v, "id")?.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_a_missing_attribute_is_an_error() {
        for r in [
            UpdaterRequest::Queue {
                sid: "S1".into(),
                sender: String::new(),
                recipient: "update@x.test".into(),
                body: b"Subject: x\r\n\r\nrestart\r\n".to_vec(),
            },
            UpdaterRequest::List,
            UpdaterRequest::Flush,
            UpdaterRequest::Delete { id: "Q1".into() },
            UpdaterRequest::Restarts,
            UpdaterRequest::Cancel { id: "R1".into() },
        ] {
            let bytes = r.clone().encode().encode().expect("encodes");
            let back = crate::proto::decode(&bytes)
                .expect("decodes")
                .expect("a message");
            assert_eq!(UpdaterRequest::decode(back), Ok(r));
        }
        let no_body = request(UpdaterVerb::Queue).with("recipient", "u@x.test");
        assert_eq!(
            UpdaterRequest::decode(no_body).map_err(|e| e.to_string()),
            Err("queue request without a body".to_string())
        );
        assert_eq!(
            UpdaterRequest::decode(request(UpdaterVerb::Delete)),
            Err(DecodeError::Without("delete", "id"))
        );
    }
}
