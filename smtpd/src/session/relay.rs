//! The session's backend connection: opened at the first routed recipient,
//! kept for the session, replaced when a recipient's server differs.
//!
//! [`Session::ensure_backend`] takes a connection prepared ahead (see
//! `crate::backend::pool`) or connects one (PROXY header, greeting, EHLO,
//! `IPADDR FROM` or XCLIENT, AUTH replay: `crate::backend`), and
//! logs the seed's `smtp connection forwarded` line once per server.
//! [`Session::send_rcpt`] replays MAIL once per transaction and sends RCPT
//! (and DATA, when the client pipelined it right behind) in one group to a
//! PIPELINING backend. Every error here is a `ClientError`, which the
//! session answers with `451 4.4.1` (`reply.rs`).

use crate::backend::{Backend, ClientError, ClientInfo, ServerReply};
use postern_shared::ipc::route::{Cause, Route};
use postern_shared::net::DisplayIp;
use postern_shared::stats::Counter;
use tracing::{debug, info};

use super::rcpt::same_server;
use super::Session;

/// What one recipient's group to the backend was, and its replies in order.
pub(super) struct Exchange {
    /// MAIL went first (the transaction's first recipient for this backend).
    pub(super) mail: bool,
    /// DATA went last (pipelined by the client right behind this RCPT).
    pub(super) data: bool,
    /// The backend's replies, one per command sent (fewer when a backend
    /// without PIPELINING refused MAIL: the rest was not sent).
    pub(super) replies: Vec<ServerReply>,
}

impl Session {
    /// Makes sure the backend of `route` is connected, replacing another
    /// one; `fresh`: never a prepared connection.
    pub(super) async fn ensure_backend(
        &mut self,
        route: &Route,
        fresh: bool,
    ) -> Result<(), ClientError> {
        if let Some(b) = &self.backend {
            if same_server(&b.route, route) {
                return Ok(());
            }
        }
        let hostname = self.hostname().to_string();
        if let Some(old) = self.backend.take() {
            tokio::spawn(self.ctx.prepared.clone().give_back(*old, hostname.clone()));
        }
        let login = match route.cause {
            Cause::Auth => self.login.as_deref().map(|(u, p)| (u.as_str(), p.as_str())),
            _ => None,
        };
        let client = ClientInfo {
            peer: self.peer,
            local: self.local,
            helo: self.helo.as_deref(),
            esmtp: self.esmtp,
            login,
        };
        let health = &*self.ctx.health;
        let prepared = if fresh {
            None
        } else {
            self.ctx.prepared.take(route)
        };
        self.adopted = prepared.is_some();
        let b = match prepared {
            Some(mut b) => match b.adopt(route, &hostname, &client).await {
                Ok(()) => b,
                // It went stale between the check and now: a connection of
                // its own, as if there had been none.
                Err(e @ (ClientError::Io(_) | ClientError::Protocol(_))) => {
                    debug!("prepared connection to {} failed: {e}", route.name);
                    self.adopted = false;
                    Backend::connect(route, &hostname, &client, health).await?
                }
                Err(e) => return Err(e),
            },
            None => Backend::connect(route, &hostname, &client, health).await?,
        };
        // This server receives mail: have a connection ready for the next
        // session — once this RCPT is answered (see rcpt), so that preparing
        // it does not compete with this session's own exchange.
        self.refill_due = Some(Box::new(route.clone()));
        if self.forwarded_to != Some(route.server) {
            info!(
                server = %route.name,
                cause = route.cause.as_str(),
                "smtp connection forwarded from {} to {} using {}",
                DisplayIp(self.ip()),
                route.name,
                route.cause.as_str()
            );
            self.forwarded_to = Some(route.server);
            self.counts.add(Counter::Forwarded(route.cause), 1);
        }
        self.backend = Some(Box::new(b));
        Ok(())
    }

    /// Sends the RCPT of each of `targets` (a recipient, or the addresses
    /// its alias stands for) to the connected backend, with MAIL first
    /// when the backend has not had it in this transaction, and with DATA
    /// when the client pipelined its DATA right behind this RCPT (and
    /// nothing after it): it travels in the same group, as Postfix's smtp
    /// client sends it, saving the backend a round trip; its reply waits in
    /// the transaction for the client's DATA, which comes next.
    ///
    /// A prepared connection that went stale after it was taken fails at
    /// its first exchange: the group goes once more, on a connection of the
    /// session's own (nothing of it was accepted on the old one).
    pub(super) async fn send_rcpt(
        &mut self,
        targets: &[String],
        route: &Route,
    ) -> Result<Exchange, ClientError> {
        let mut retried = false;
        let exchange = loop {
            let mail = !self.tx.as_ref().is_some_and(|t| t.backend_mail);
            let mut lines: Vec<String> = Vec::with_capacity(targets.len() + 2);
            if mail {
                lines.push(self.mail_line());
            }
            lines.extend(targets.iter().map(|t| ["RCPT TO:<", t, ">"].concat()));
            let data = self.backend.as_ref().is_some_and(|b| b.caps().pipelining)
                && self.client.buffer().eq_ignore_ascii_case(b"DATA\r\n");
            if data {
                lines.push("DATA".into());
            }
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let replies = match self.backend.as_mut() {
                Some(b) => b.pipeline(&lines).await,
                None => Err(ClientError::Protocol("no backend connection")),
            };
            match replies {
                Err(ClientError::Io(_) | ClientError::Protocol(_)) if self.adopted && !retried => {
                    debug!(
                        "prepared connection to {} went stale: connecting anew",
                        route.name
                    );
                    retried = true;
                    self.backend = None;
                    self.ensure_backend(route, true).await?;
                }
                replies => {
                    break replies.map(|replies| Exchange {
                        mail,
                        data,
                        replies,
                    })
                }
            }
        };
        self.adopted = false;
        exchange
    }

    /// The MAIL command replayed to the backend, with the parameters it supports.
    fn mail_line(&self) -> String {
        let Some(tx) = &self.tx else {
            return "MAIL FROM:<>".into();
        };
        // Read in place: the capabilities hold the XCLIENT attributes,
        // whose copy would cost an allocation each.
        let (size, eightbit) = self
            .backend
            .as_ref()
            .map_or((false, false), |b| (b.caps().size, b.caps().eightbit));
        let mut line = String::with_capacity(64);
        line.push_str("MAIL FROM:<");
        tx.from.push_to(&mut line);
        line.push('>');
        for p in &tx.params {
            let keep = match p.name.as_str() {
                "SIZE" => size,
                "BODY" => eightbit,
                _ => false,
            };
            if keep {
                line.push(' ');
                line.push_str(&p.name);
                if let Some(v) = &p.value {
                    line.push('=');
                    line.push_str(v);
                }
            }
        }
        line
    }

    /// One command to the connected backend.
    pub(super) async fn backend_command(&mut self, line: &str) -> Result<ServerReply, ClientError> {
        match self.backend.as_mut() {
            Some(b) => b.command(line).await,
            None => Err(ClientError::Protocol("no backend connection")),
        }
    }

    /// Drops the backend connection; whatever it accepted of the current
    /// transaction is gone with it (see `Tx::lost`).
    pub(super) fn lose_backend(&mut self) {
        self.backend = None;
        if let Some(tx) = self.tx.as_mut() {
            tx.lost |= tx.accepted > 0;
            tx.backend_mail = false;
            tx.accepted = 0;
            tx.recipients.clear();
            tx.sent.clear();
        }
    }
}
