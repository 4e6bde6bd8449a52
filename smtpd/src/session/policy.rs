//! The policy phase of RCPT (SPEC §8): for a domain-routed session, once a
//! recipient has a server and before the backend sees it, the router's
//! verdict for this (client, sender, recipient). Relay clients (ip-addr,
//! auth) and update mails never get here; relay control came first, so no
//! verdict can open the relay. Verdicts are never cached: the next
//! recipient asks again.

use tracing::{info, warn};

use super::reply::Failure;
use super::Session;
use postern_shared::ipc::policy::{QueryRef, Verdict};
use postern_shared::smtp::{Path, Reply};

impl Session {
    /// The policy phase of RCPT: `true` when the recipient may go on to
    /// the backend; `false` when it was answered: refused (the router's
    /// reply), or `451 4.3.0` when the router cannot decide (a lookup
    /// failure is never a refusal for good).
    pub(super) async fn policy_check(&mut self, to: &Path) -> bool {
        let sender = self.sender();
        let mut recipient = String::with_capacity(64);
        to.push_to(&mut recipient);
        let query = QueryRef {
            sid: &self.sid,
            client: self.ip(),
            client_name: None,
            helo: self.helo.as_deref(),
            sender: &sender,
            recipient: &recipient,
            improper_pipelining: self.improper_pipelining,
            dry: false,
        };
        match self.ctx.router.policy(query).await {
            Ok(Verdict::Dunno | Verdict::Accept { .. }) => true,
            Ok(Verdict::Refuse(r)) => {
                info!(
                    sender = %sender,
                    recipient = %to,
                    reply = %format!("{} {} {}", r.code, r.enhanced, r.text),
                    "rcpt <{to}> refused by policy: {}",
                    r.rule
                );
                self.counts.add(r.kind.counter(), 1);
                self.reply(Reply::new(r.code, r.enhanced, &r.text));
                false
            }
            Err(e) => {
                warn!("cannot ask the policy for <{to}>: {e}");
                self.fail(Failure::Lookup(to.clone()));
                false
            }
        }
    }
}
