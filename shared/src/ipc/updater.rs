//! `updater.sock`: requests to the updater, one per connection.

use super::reply::REASON;
use super::{request, required, verb, DecodeError, Outcome, UpdaterVerb};
use crate::ipc::proto::Attrs;

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

/// The updater's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdaterReply {
    /// The mail is on disk (`status=ok queue_id=`).
    Queued {
        /// Its queue id.
        queue_id: String,
    },
    /// The queue's or the schedule's text (`status=ok` and a body).
    Text(Vec<u8>),
    /// Deferred copies to try now (`status=ok count=`).
    Flushed {
        /// How many.
        count: u64,
    },
    /// Done (`status=ok`).
    Done,
    /// No such update or restart (`status=notfound reason=`).
    NotFound(String),
    /// Not in a state that allows it (`status=reject reason=`).
    Reject(String),
    /// Could not do it now (`status=tempfail reason=`).
    TempFail(String),
}

impl UpdaterReply {
    /// The attribute list to send.
    pub fn encode(self) -> Attrs {
        let ok = Outcome::Ok.reply(None);
        match self {
            UpdaterReply::Queued { queue_id } => ok.with("queue_id", queue_id),
            UpdaterReply::Text(text) => ok.with_body(text),
            UpdaterReply::Flushed { count } => ok.with("count", count),
            UpdaterReply::Done => ok,
            // `notfound` with a reason: the updater's words for a missing id.
            UpdaterReply::NotFound(why) => Outcome::NotFound.reply(None).with(REASON, why),
            UpdaterReply::Reject(why) => Outcome::Reject(why).reply(None),
            UpdaterReply::TempFail(why) => Outcome::TempFail(why).reply(None),
        }
    }

    /// The reply a message holds; `None` for one without a valid status.
    pub fn decode(msg: &Attrs) -> Option<Self> {
        let reason = || msg.get(REASON).unwrap_or("refused").to_string();
        Some(match Outcome::of(msg)? {
            Outcome::Ok => {
                if let Some(queue_id) = msg.get("queue_id") {
                    UpdaterReply::Queued {
                        queue_id: queue_id.to_string(),
                    }
                } else if let Some(body) = &msg.body {
                    UpdaterReply::Text(body.clone())
                } else if let Some(count) = msg.get("count") {
                    UpdaterReply::Flushed {
                        count: count.parse().ok()?,
                    }
                } else {
                    UpdaterReply::Done
                }
            }
            Outcome::NotFound => UpdaterReply::NotFound(reason()),
            Outcome::Reject(_) => UpdaterReply::Reject(reason()),
            Outcome::TempFail(_) => UpdaterReply::TempFail(reason()),
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
            let back = crate::ipc::proto::decode(&bytes)
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

    #[test]
    fn replies_round_trip() {
        for r in [
            UpdaterReply::Queued {
                queue_id: "Q1".into(),
            },
            UpdaterReply::Text(b"Q1 one pending\n".to_vec()),
            UpdaterReply::Flushed { count: 3 },
            UpdaterReply::Done,
            UpdaterReply::NotFound("no update Q2 in the queue".into()),
            UpdaterReply::Reject("restart R1 is done, not scheduled".into()),
            UpdaterReply::TempFail("disk full".into()),
        ] {
            assert_eq!(UpdaterReply::decode(&r.clone().encode()), Some(r));
        }
    }
}
