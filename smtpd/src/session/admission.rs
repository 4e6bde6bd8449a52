//! Admission: the greeting, the router's connection count, and whether the
//! client is a relay client.
//!
//! In order: `request=connect` goes to the router in a task of its own and,
//! without waiting for its answer, the client gets its `220` greeting
//! ([`Session::greet_and_admit`]). HELO, EHLO and QUIT do not wait for the
//! answer; any other command does ([`Session::settle_admission`]), and a
//! client that says nothing (or half a line) gets it as soon as it comes
//! (`Session::read_line`). Over a limit: `421 4.7.0` and the connection
//! closes. Otherwise the answer carries the client's `ip-addr` route, if it
//! is a relay client. A router that does not answer in time lets the
//! session go on uncounted (accounting never refuses service); the relay
//! lists are then asked at the first RCPT or AUTH
//! ([`Session::check_client`], `request=client`).

use std::time::Duration;

use postern_shared::ipc::route::{Admission, Lookup, RouterError};
use postern_shared::smtp::Reply;
use postern_shared::stats::{Counter, Rejection};
use tracing::{debug, info, warn};

use super::{End, Session};

/// How long connection accounting may take before the session goes on uncounted.
pub(super) const ACCOUNTING_TIMEOUT: Duration = Duration::from_secs(2);

/// The router's answer to the connection count. A task of its own, not a
/// future the session polls: the request may wait for the router
/// connection's lock (while it is reopened), and a waiter that is not polled
/// — its session blocked writing to a client that does not read — would
/// hold that lock for every session of the process.
pub(super) type Pending = tokio::task::JoinHandle<Result<Admission, RouterError>>;

impl Session {
    /// Greets the client while the router counts the connection (limits
    /// across every smtpd process); see the module's description. `false`:
    /// the client is gone already.
    pub(super) async fn greet_and_admit(&mut self) -> bool {
        let router = self.ctx.router.clone();
        let (sid, ip) = (self.sid, self.ip());
        self.admission = Some(tokio::spawn(async move {
            router
                .connect(
                    &sid,
                    ip,
                    postern_shared::runtime::logging::pid(),
                    ACCOUNTING_TIMEOUT,
                )
                .await
        }));
        let greeting = [self.hostname(), " ", &self.ctx.config.proxy.banner].concat();
        self.reply(Reply::plain(220, &greeting));
        self.flush().await.is_ok()
    }

    /// Waits for the router's count if it has not come yet, and applies it.
    pub(super) async fn settle_admission(&mut self) -> Result<(), End> {
        match self.admission.take() {
            Some(pending) => self.admit(pending.await),
            None => Ok(()),
        }
    }

    /// Applies the router's count: the client's `ip-addr` route, or over a
    /// limit a 421 and the end. No answer in time: the session goes on
    /// uncounted (accounting never refuses service).
    pub(super) fn admit(
        &mut self,
        verdict: Result<Result<Admission, RouterError>, tokio::task::JoinError>,
    ) -> Result<(), End> {
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                debug!("connection not counted: the request failed: {e}");
                return Ok(());
            }
        };
        match verdict {
            Ok(Admission::Allowed {
                relay,
                policy,
                stress,
            }) => {
                self.relay = relay.map(Box::new);
                self.policy_on = policy;
                self.client_checked = true;
                if stress {
                    self.stress = true;
                    info!(
                        "stress mode for the session of {}: postern is near max_connections",
                        self.ip()
                    );
                }
                Ok(())
            }
            Ok(Admission::Refused(why)) => {
                self.refused = true;
                warn!("refused connection from {}: {why}", self.ip());
                self.counts.add(Counter::Rejected(Rejection::Limit), 1);
                let text = format!("{} Error: {why}", self.hostname());
                self.reply(Reply::new(421, "4.7.0", &text));
                Err(End::Closed)
            }
            Err(e) => {
                debug!("connection not counted: {e}");
                Ok(())
            }
        }
    }

    /// Looks the client's address up in the relay lists, once per session
    /// (the `ip-addr` route, which comes before `auth` and `domain`), unless
    /// the connection count's answer said already.
    pub(super) async fn check_client(&mut self) -> Result<(), RouterError> {
        if self.client_checked {
            return Ok(());
        }
        if let Lookup::Found(r) = self.ctx.router.route_client(&self.sid, self.ip()).await? {
            self.relay = Some(Box::new(r));
        }
        self.client_checked = true;
        Ok(())
    }
}
