//! The master channel (a socketpair per worker): the master's requests to
//! a worker, and a worker's requests to the master. Replies carry the
//! request's `id` and `status=ok|tempfail reason=`; events are
//! [`super::Event`]s.

use super::{request, required, verb, DecodeError, MasterVerb, WorkerVerb};
use crate::ipc::proto::Attrs;

/// What the master asks of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterRequest {
    /// The validated configuration, a `WorkerConfig` in TOML; acknowledged
    /// by its `id`.
    Config {
        /// Matches the worker's acknowledgement to this reload.
        id: String,
        /// The configuration's text.
        body: Vec<u8>,
    },
    /// Stop now.
    Stop,
    /// Stop accepting, finish every session, exit (`postern restart`).
    Drain,
}

impl MasterRequest {
    /// The attribute list to send.
    pub fn encode(self) -> Attrs {
        match self {
            MasterRequest::Config { id, body } => {
                request(MasterVerb::Config).with("id", id).with_body(body)
            }
            MasterRequest::Stop => request(MasterVerb::Stop),
            MasterRequest::Drain => request(MasterVerb::Drain),
        }
    }

    /// The request a message holds, strictly: a configuration needs its
    /// `id` and its body.
    pub fn decode(msg: Attrs) -> Result<Self, DecodeError> {
        Ok(match verb::<MasterVerb>(&msg)? {
            MasterVerb::Config => MasterRequest::Config {
                id: required(&msg, MasterVerb::Config, "id")?.to_string(),
                body: msg.body.ok_or(DecodeError::Without("config", "a body"))?,
            },
            MasterVerb::Stop => MasterRequest::Stop,
            MasterVerb::Drain => MasterRequest::Drain,
        })
    }
}

/// What a worker asks of the master; the worker's skeleton adds the `id`
/// the answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerRequest {
    /// Reload the configuration (smtpd: SMTP RELOAD).
    Reload {
        /// The session that asked, for the master's log lines.
        sid: String,
    },
    /// Stop postern (smtpd: SMTP SHUTDOWN).
    Stop {
        /// The session that asked, for the master's log lines.
        sid: String,
    },
    /// Run a server's restart command (the updater).
    Restart {
        /// The server's name.
        server: String,
    },
    /// The worker states (the router, for its metrics).
    Workers,
    /// The text of `postern status` as the body (the console).
    Status,
    /// Each server's health, one `backend=` per server in configuration
    /// order (the console's routing page).
    Backends,
    /// What `postern log search PATTERN` (or, with `session`, `postern
    /// log session ID`) prints, one line each, as the body (the console).
    Log {
        /// `search`, `session` or `refused`.
        what: String,
        /// The pattern, or the session id.
        pattern: String,
        /// `--since` (empty: the current file only, or the whole journal).
        since: String,
    },
}

impl WorkerRequest {
    /// The request's verb.
    pub fn verb(&self) -> WorkerVerb {
        match self {
            WorkerRequest::Reload { .. } => WorkerVerb::Reload,
            WorkerRequest::Stop { .. } => WorkerVerb::Stop,
            WorkerRequest::Restart { .. } => WorkerVerb::Restart,
            WorkerRequest::Workers => WorkerVerb::Workers,
            WorkerRequest::Status => WorkerVerb::Status,
            WorkerRequest::Log { .. } => WorkerVerb::Log,
            WorkerRequest::Backends => WorkerVerb::Backends,
        }
    }

    /// The session the request is about, if any (`-` on log lines otherwise).
    pub fn sid(&self) -> Option<&str> {
        match self {
            WorkerRequest::Reload { sid } | WorkerRequest::Stop { sid } => Some(sid),
            _ => None,
        }
    }

    /// The attribute list to send.
    pub fn encode(&self) -> Attrs {
        let msg = request(self.verb());
        match self {
            WorkerRequest::Reload { sid } | WorkerRequest::Stop { sid } => msg.with("sid", sid),
            WorkerRequest::Restart { server } => msg.with("server", server),
            WorkerRequest::Workers | WorkerRequest::Status | WorkerRequest::Backends => msg,
            WorkerRequest::Log {
                what,
                pattern,
                since,
            } => msg
                .with("what", what)
                .with("pattern", pattern)
                .with("since", since),
        }
    }

    /// The request a message holds, strictly: a restart needs its server.
    pub fn decode(msg: &Attrs) -> Result<Self, DecodeError> {
        let sid = || msg.get("sid").unwrap_or("-").to_string();
        Ok(match verb::<WorkerVerb>(msg)? {
            WorkerVerb::Reload => WorkerRequest::Reload { sid: sid() },
            WorkerVerb::Stop => WorkerRequest::Stop { sid: sid() },
            WorkerVerb::Restart => WorkerRequest::Restart {
                server: required(msg, WorkerVerb::Restart, "server")?.to_string(),
            },
            WorkerVerb::Workers => WorkerRequest::Workers,
            WorkerVerb::Status => WorkerRequest::Status,
            WorkerVerb::Backends => WorkerRequest::Backends,
            WorkerVerb::Log => WorkerRequest::Log {
                what: required(msg, WorkerVerb::Log, "what")?.to_string(),
                pattern: msg.get("pattern").unwrap_or_default().to_string(),
                since: msg.get("since").unwrap_or_default().to_string(),
            },
        })
    }
}
