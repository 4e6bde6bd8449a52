//! From failure to reply: the one place where trouble becomes a 4xx.
//!
//! A [`Failure`] is trouble that keeps the session from doing what the
//! client asked although the client did nothing wrong: a router, updater,
//! master or backend that cannot answer, or a client that ran out of time.
//! [`reply_for`] is the only function that turns one into an SMTP reply,
//! and every reply it gives is temporary (4xx): the sending MTA keeps the
//! mail and retries, nothing is lost. Refusals for the client's own request
//! (syntax, relaying, policy, limits) are not failures and stay with their
//! stage.
//!
//! | failure | reply |
//! |---|---|
//! | router: a recipient's route, the client's relay lists, its policy | `451 4.3.0 <rcpt>: Temporary lookup failure` |
//! | router: credentials or the brake (AUTH, RELOAD, SHUTDOWN) | `454 4.7.0 Temporary authentication failure` |
//! | updater: an update mail not stored | `451 4.3.0 Error: queue file write error, try again later` |
//! | master: RELOAD or SHUTDOWN not carried out | `451 4.3.5 <why>` |
//! | backend: connect, greeting, EHLO, identity, AUTH replay, timeout, lost | `451 4.4.1 Service unavailable: …` |
//! | backend lost after it accepted recipients of the transaction | `451 4.4.1 Error: the mail server connection was lost …` |
//! | client: no command or body data in time | `421 4.4.2 <host> Error: timeout exceeded` |
//! | client: no message body within `command_timeout` of its first MAIL | `421 4.4.2 <host> Error: timeout exceeded, no message completed` |
//! | the process stops | `421 4.3.2 <host> Service shutting down, …` |
//!
//! The router's trouble gets two replies because RFC 4954 §6 gives AUTH
//! its own (`454 4.7.0`); everywhere else it is `451 4.3.0`.

use crate::backend::ClientError;
use postern_shared::ipc::route::Route;
use postern_shared::smtp::{Path, Reply};
use tracing::{info, warn};

use super::{End, Session};

/// Trouble that is nobody's fault but gets the client a temporary reply.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The router could not answer a lookup about this recipient: its
    /// route, the client's relay lists, or the recipient's policy.
    Lookup(Path),
    /// The router could not check credentials, or the brake before them.
    Credentials,
    /// The updater could not store an update mail.
    Updater,
    /// The master did not carry out RELOAD or SHUTDOWN: why (its reason,
    /// or that it did not answer).
    Master(String),
    /// The backend failed: the connection (whose state is now unknown)
    /// is dropped.
    Backend(Route, ClientError),
    /// The backend connection was lost after it accepted recipients of
    /// this transaction (see `Tx::lost`).
    Lost,
    /// The client sent nothing within its time.
    ClientTimeout,
    /// A transaction began no message body in time (see
    /// `Session::progress_deadline`).
    NoProgress,
    /// The process is stopping and the session is between transactions.
    ShuttingDown,
}

impl Failure {
    /// Whether the session ends after the reply (a 421).
    pub(crate) fn ends_session(&self) -> bool {
        matches!(
            self,
            Failure::ClientTimeout | Failure::NoProgress | Failure::ShuttingDown
        )
    }
}

/// The reply to a failure (see the table above); `hostname` starts the
/// 421s, as Postfix writes them.
pub(crate) fn reply_for(failure: &Failure, hostname: &str) -> Reply {
    match failure {
        Failure::Lookup(to) => Reply::new(
            451,
            "4.3.0",
            &format!("<{to}>: Temporary lookup failure"),
        ),
        Failure::Credentials => Reply::new(454, "4.7.0", "Temporary authentication failure"),
        Failure::Updater => Reply::new(
            451,
            "4.3.0",
            "Error: queue file write error, try again later",
        ),
        Failure::Master(why) => Reply::new(451, "4.3.5", &why.replace(['\r', '\n'], " ")),
        Failure::Backend(..) => Reply::new(
            451,
            "4.4.1",
            "Service unavailable: the mail server is not reachable, try again later",
        ),
        Failure::Lost => Reply::new(
            451,
            "4.4.1",
            "Error: the mail server connection was lost during this transaction, send it again later",
        ),
        Failure::ClientTimeout => Reply::new(
            421,
            "4.4.2",
            &format!("{hostname} Error: timeout exceeded"),
        ),
        Failure::NoProgress => Reply::new(
            421,
            "4.4.2",
            &format!("{hostname} Error: timeout exceeded, no message completed"),
        ),
        Failure::ShuttingDown => Reply::new(
            421,
            "4.3.2",
            &format!("{hostname} Service shutting down, closing transmission channel"),
        ),
    }
}

impl Session {
    /// Answers a failure (the caller logged its cause). Backend trouble is
    /// logged here, with the reply, and drops the backend connection.
    pub(super) fn fail(&mut self, failure: Failure) {
        if let Failure::Backend(route, e) = &failure {
            warn!(
                server = %route.name,
                reply = "451 4.4.1",
                "backend {} ({}:{}): {e}",
                route.name,
                route.host,
                route.port
            );
            self.lose_backend();
        }
        let r = reply_for(&failure, self.hostname());
        self.reply(r);
    }

    /// Answers a failure that ends the session (a 421).
    pub(super) fn close(&mut self, failure: Failure) -> End {
        debug_assert!(failure.ends_session(), "{failure:?} is no 421");
        self.fail(failure);
        End::Closed
    }

    /// The process stops: 421, the end.
    pub(super) fn shutting_down(&mut self) -> End {
        self.close(Failure::ShuttingDown)
    }

    /// The transaction made no progress by its deadline (see
    /// `Session::progress_deadline`): 421, the end.
    pub(super) fn no_progress(&mut self) -> End {
        let timeout = self.command_timeout();
        info!(
            "no message from {} within {timeout:?} of its first MAIL: closing",
            self.ip()
        );
        self.close(Failure::NoProgress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_is_temporary() {
        let route = Route {
            server: 1,
            name: "one".into(),
            host: "localhost".into(),
            port: 25,
            timeout: std::time::Duration::from_secs(1),
            identity: postern_shared::config::ClientIdentity::None,
            cause: postern_shared::ipc::route::Cause::Domain,
        };
        let to = Path::Postmaster;
        let cases = [
            (
                Failure::Lookup(to),
                "451 4.3.0 <Postmaster>: Temporary lookup failure",
            ),
            (
                Failure::Credentials,
                "454 4.7.0 Temporary authentication failure",
            ),
            (Failure::Updater, "451 4.3.0 Error: queue file write error"),
            (Failure::Master("bad\r\nfile".into()), "451 4.3.5 bad  file"),
            (
                Failure::Backend(route, ClientError::Protocol("x")),
                "451 4.4.1 Service unavailable",
            ),
            (
                Failure::Lost,
                "451 4.4.1 Error: the mail server connection was lost",
            ),
            (
                Failure::ClientTimeout,
                "421 4.4.2 mx Error: timeout exceeded",
            ),
            (
                Failure::NoProgress,
                "421 4.4.2 mx Error: timeout exceeded, no message",
            ),
            (Failure::ShuttingDown, "421 4.3.2 mx Service shutting down"),
        ];
        for (failure, expected) in cases {
            let r = reply_for(&failure, "mx");
            let mut line = Vec::new();
            r.write_to(&mut line);
            let line = String::from_utf8(line).expect("replies are text");
            assert!(line.starts_with(expected), "{failure:?}: {line}");
            assert!((400..500).contains(&r.code), "{failure:?}: {line}");
            assert_eq!(failure.ends_session(), r.code == 421, "{failure:?}");
        }
    }
}
