//! RCPT, in named phases: check → route → policy → forward.
//!
//! 1. **check** ([`Session::rcpt_check`]): a transaction is open (503), the
//!    recipient limit (`452 4.5.3`), a transaction whose backend was lost
//!    (`451 4.4.1`), no parameters (555); the update address goes to
//!    `update.rs` and travels alone (`452 4.5.3`).
//! 2. **route** ([`Session::rcpt_route`]): the client's relay lists first
//!    (`request=client`, once); a relay client's recipients all go to its
//!    server; anyone else's by domain (`request=route`, kept 5 s by
//!    `RouterClient::route_recipient`): `554 5.7.1 … Relaying denied` when no
//!    server takes it, `452 4.5.3` when it is another server than the
//!    transaction's, `451 4.3.0` when the router cannot tell. The router
//!    expands the recipient's aliases (SPEC §12) in the same answer: the
//!    route is then the aliases' server, and an address in an alias domain
//!    that no alias takes and no server lists gets `550 5.1.1 … User
//!    unknown in virtual alias table` (Postfix's words).
//! 3. **policy** (`policy.rs`, `request=policy`): for domain-routed
//!    sessions only; a refusal is the recipient's reply and the backend
//!    never sees it.
//! 4. **forward** ([`Session::rcpt_forward`], with `relay.rs`): connect the
//!    backend if needed, replay MAIL once, send RCPT — one per address of
//!    an alias, an address the backend accepted once per transaction (DATA too when the
//!    client pipelined it right behind), relay the backend's reply
//!    verbatim; backend trouble is `451 4.4.1`. For an alias the client
//!    gets one reply: the backend's first acceptance if it accepted at
//!    least one address, else its first refusal, the address in its text
//!    replaced by the client's (an alias does not show where it leads);
//!    a mix is logged.
//!
//! Policy (phase 3) and the client's replies are about the address the
//! client gave; the backend sees only what its aliases make of it. Relay
//! clients (ip-addr, auth) send their recipients to their server as they
//! are: aliases apply to mail routed by domain.

use std::sync::Arc;

use crate::backend::{ClientError, ServerReply};
use postern_shared::alias::address_key;
use postern_shared::ipc::route::{RcptRoute, Route};
use postern_shared::smtp::{Param, Path, Reply};
use postern_shared::stats::Counter;
use tracing::{debug, info, warn};

use super::reply::Failure;
use super::Session;

impl Session {
    /// RCPT TO: each phase answers the recipient itself when it stops it.
    pub(super) async fn rcpt(&mut self, to: Path, params: Vec<Param>) {
        if !self.rcpt_check(&to, &params) {
            return;
        }
        let Some((route, aliased)) = self.rcpt_route(&to).await else {
            return;
        };
        // Policy (SPEC §8) for mail from the internet only: relay clients
        // chose their server themselves.
        if self.relay.is_none() && self.policy_on && !self.policy_check(&to).await {
            return;
        }
        self.rcpt_forward(&to, route, aliased).await;
    }

    /// Phase 1: whether the recipient may be looked at. `false`: answered
    /// (an update address included).
    fn rcpt_check(&mut self, to: &Path, params: &[Param]) -> bool {
        let max_rcpts = self.ctx.config.proxy.max_recipients;
        let is_update = self.is_update_address(to);
        let Some(tx) = self.tx.as_mut() else {
            self.syntax_error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
            return false;
        };
        if tx.rcpts >= max_rcpts {
            self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
            return false;
        }
        tx.rcpts += 1;
        if tx.lost {
            self.fail(Failure::Lost);
            return false;
        }
        if let Some(p) = params.first() {
            let text = format!("Unsupported option: {}", p.name);
            self.syntax_error(Reply::new(555, "5.5.4", &text));
            return false;
        }
        if is_update {
            self.update_rcpt(to);
            return false;
        }
        if tx.update {
            // An update mail travels alone (SPEC §7): this one waits for the next transaction.
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return false;
        }
        true
    }

    /// Phase 2: the recipient's server, which must be the transaction's,
    /// and the addresses its alias stands for, if any. `None`: answered.
    async fn rcpt_route(&mut self, to: &Path) -> Option<(Route, Option<Arc<[String]>>)> {
        let tx_route = self.tx.as_ref().and_then(|t| t.route.clone());
        if let Err(e) = self.check_client().await {
            warn!("cannot look up the relay lists for {}: {e}", self.ip());
            self.fail(Failure::Lookup(to.clone()));
            return None;
        }
        let mut aliased = None;
        let route = match to {
            // A relay client's recipients all go to its server, whatever the domain.
            _ if self.relay.is_some() => {
                Route::clone(self.relay.as_deref().expect("checked just above"))
            }
            Path::Mailbox(m) => {
                let Some(domain) = m.routing_domain() else {
                    self.relay_denied(to);
                    return None;
                };
                match self
                    .ctx
                    .router
                    .route_recipient(&self.sid, self.ip(), &m.local, &domain)
                    .await
                {
                    Ok(RcptRoute::Found(r, targets)) => {
                        aliased = targets;
                        r
                    }
                    Ok(RcptRoute::NotFound) => {
                        self.relay_denied(to);
                        return None;
                    }
                    Ok(RcptRoute::Unknown) => {
                        let text = format!(
                            "<{to}>: Recipient address rejected: User unknown in virtual alias table"
                        );
                        info!(
                            sender = %self.sender(),
                            recipient = %to,
                            reply = %format!("550 5.1.1 {text}"),
                            "rcpt <{to}>: no alias takes it in its alias domain"
                        );
                        self.reply(Reply::new(550, "5.1.1", &text));
                        return None;
                    }
                    Err(e) => {
                        warn!("cannot route <{to}>: {e}");
                        self.fail(Failure::Lookup(to.clone()));
                        return None;
                    }
                }
            }
            Path::Postmaster => match tx_route.clone() {
                Some(r) => r,
                None => {
                    let text = "<Postmaster>: Recipient address rejected: give a domain (postmaster@domain)";
                    self.reply(Reply::new(550, "5.1.1", text));
                    return None;
                }
            },
            Path::Null => {
                self.relay_denied(to);
                return None;
            }
        };
        if let Some(current) = &tx_route {
            if !same_server(current, &route) {
                // RFC 5321 §4.5.3.1.10: the sender retries this one in a later transaction.
                debug!(
                    "<{to}> belongs to {}, transaction goes to {}",
                    route.name, current.name
                );
                self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
                return None;
            }
        }
        Some((route, aliased))
    }

    /// Phase 4: the recipient goes to its backend (see `relay.rs`) — the
    /// addresses of its alias when it has one, those the backend has not
    /// accepted in this transaction yet — and the client gets the
    /// backend's reply.
    async fn rcpt_forward(&mut self, to: &Path, route: Route, aliased: Option<Arc<[String]>>) {
        let given = to.to_string();
        let targets: Vec<String> = match &aliased {
            Some(t) => t.to_vec(),
            None => vec![given.clone()],
        };
        // Addresses the backend accepted in this transaction already are
        // not sent again; a refused one is (its answer may change).
        let fresh: Vec<String> = match &self.tx {
            Some(tx) => targets
                .iter()
                .filter(|t| !tx.sent.contains_key(&address_key(t)))
                .cloned()
                .collect(),
            None => targets.clone(),
        };
        if fresh.is_empty() {
            // A recipient given twice, or through an alias and directly:
            // the backend's acceptance again.
            let earlier: Vec<ServerReply> = self
                .tx
                .as_ref()
                .map(|tx| {
                    targets
                        .iter()
                        .filter_map(|t| tx.sent.get(&address_key(t)).cloned())
                        .collect()
                })
                .unwrap_or_default();
            debug!("<{to}>: every address was accepted in this transaction already");
            return self.answer_rcpt(to, &targets, &aliased, &earlier);
        }
        // A transaction's addresses stay within max_recipients, as the
        // backend's own limit would have them (Postfix's default is the
        // same 1000): an alias that would pass it waits for the next
        // transaction, whole, rather than be cut by the backend.
        let accepted = self.tx.as_ref().map_or(0, |tx| tx.accepted);
        let max = self.ctx.config.proxy.max_recipients;
        if accepted > 0 && accepted as usize + fresh.len() > max as usize {
            debug!(
                "<{to}>: {} more addresses would pass {max} in this transaction",
                fresh.len()
            );
            return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        if let Err(e) = self.ensure_backend(&route, false).await {
            return self.fail(Failure::Backend(route, e));
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.route = Some(route.clone());
        }
        let exchange = match self.send_rcpt(&fresh, &route).await {
            Ok(x) => x,
            Err(e) => return self.fail(Failure::Backend(route, e)),
        };
        let mut replies = exchange.replies.into_iter();
        if exchange.mail {
            let Some(r) = replies.next() else {
                return self.fail(Failure::Backend(
                    route,
                    ClientError::Protocol("no reply to MAIL"),
                ));
            };
            if !r.is_ok() {
                info!(
                    sender = %self.sender(),
                    server = %route.name,
                    reply = %r.summary(),
                    "backend {} refused MAIL: {}",
                    route.name,
                    r.summary()
                );
                // A pipelined RCPT's reply (a 503, surely) is dropped with it.
                return self.relay(&r);
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.backend_mail = true;
            }
        }
        let got: Vec<ServerReply> = replies.by_ref().take(fresh.len()).collect();
        if got.len() < fresh.len() {
            return self.fail(Failure::Backend(
                route,
                ClientError::Protocol("no reply to RCPT"),
            ));
        }
        // Each target's reply: this exchange's, or the acceptance of an
        // earlier one.
        let mut all: Vec<ServerReply> = Vec::with_capacity(targets.len());
        let mut now = fresh.iter().zip(got);
        let mut next_now = now.next();
        for t in &targets {
            match (&next_now, self.tx.as_ref()) {
                (Some((f, _)), _) if *f == t => {
                    let (_, r) = next_now.take().expect("matched just above");
                    all.push(r);
                    next_now = now.next();
                }
                (_, Some(tx)) => all.extend(tx.sent.get(&address_key(t)).cloned()),
                (_, None) => {}
            }
        }
        if let Some(tx) = self.tx.as_mut() {
            for (t, r) in targets.iter().zip(&all) {
                let key = address_key(t);
                if r.is_ok() && !tx.sent.contains_key(&key) {
                    tx.accepted += 1;
                    tx.sent.insert(key, r.clone());
                }
            }
        }
        self.answer_rcpt(to, &targets, &aliased, &all);
        if exchange.data {
            match (replies.next(), self.tx.as_mut()) {
                (Some(r), Some(tx)) => tx.data_ahead = Some(r),
                _ => self.fail(Failure::Backend(
                    route,
                    ClientError::Protocol("no reply to DATA"),
                )),
            }
        }
        // The task starts once this session waits for its client again.
        if let Some(route) = self.refill_due.take() {
            let hostname = self.hostname().to_string();
            self.ctx.prepared.refill(&route, &hostname);
        }
    }

    /// The client's one reply to its RCPT `to`, from the backend's replies
    /// to `targets` (the addresses `to` stands for, in order): the first
    /// acceptance, else the first temporary refusal, else the first one. For an alias the log line
    /// names both the recipient and its addresses, and a refusal's text
    /// names the recipient, not the address it was for.
    fn answer_rcpt(
        &mut self,
        to: &Path,
        targets: &[String],
        aliased: &Option<Arc<[String]>>,
        replies: &[ServerReply],
    ) {
        // Accepted by one: accepted. Refused by all: a temporary refusal
        // first (the client retries, and may reach them all then).
        let accepted = replies.iter().position(ServerReply::is_ok);
        let temporary = replies.iter().position(|r| (400..500).contains(&r.code));
        let Some(at) = accepted
            .or(temporary)
            .or((!replies.is_empty()).then_some(0))
        else {
            return self.fail(Failure::Lookup(to.clone()));
        };
        let first = &replies[at];
        if accepted.is_some() {
            if let Some(tx) = self.tx.as_mut() {
                let given = to.to_string();
                if !tx.recipients.contains(&given) {
                    tx.recipients.push(given);
                }
            }
        }
        let Some(aliased) = aliased else {
            return self.relay(first);
        };
        let refused: Vec<String> = targets
            .iter()
            .zip(replies)
            .filter(|(_, r)| !r.is_ok())
            .map(|(t, r)| format!("<{t}>: {}", r.summary()))
            .collect();
        let expanded = aliased.join(",");
        if accepted.is_some() && !refused.is_empty() {
            warn!(
                sender = %self.sender(),
                recipient = %to,
                expanded = %expanded,
                reply = %first.summary(),
                "rcpt <{to}> expanded to {expanded}: the backend refused {}",
                refused.join("; ")
            );
        } else {
            info!(
                sender = %self.sender(),
                recipient = %to,
                expanded = %expanded,
                reply = %first.summary(),
                "rcpt <{to}> expanded to {expanded}: {}",
                first.summary()
            );
        }
        if first.is_ok() {
            return self.relay(first);
        }
        // The refused address is the alias's business: the client reads its own.
        let text = match targets.get(at) {
            Some(t) => String::from_utf8_lossy(&first.raw).replace(t.as_str(), &to.to_string()),
            None => String::from_utf8_lossy(&first.raw).into_owned(),
        };
        self.relay(&ServerReply {
            code: first.code,
            raw: text.into_bytes(),
        });
    }

    /// A recipient no server takes: `554 5.7.1`, never overridden.
    fn relay_denied(&mut self, to: &Path) {
        let text = format!("<{to}>: Relaying denied");
        warn!(
            sender = %self.sender(),
            recipient = %to,
            reply = %format!("554 5.7.1 {text}"),
            "no server found for rcpt {to}"
        );
        self.counts.add(Counter::RelayDenied, 1);
        self.reply(Reply::new(554, "5.7.1", &text));
    }
}

/// Whether two routes lead to the same backend server.
pub(super) fn same_server(a: &Route, b: &Route) -> bool {
    a.server == b.server && a.host == b.host && a.port == b.port
}
