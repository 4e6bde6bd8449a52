//! Policy for mail from the internet (SPEC §8): the router decides, smtpd
//! asks once per recipient of a domain-routed session
//! ([`postern_shared::policy`]) and turns the verdict into its reply.
//!
//! Order of evaluation, first decision wins (relay control has already
//! happened in smtpd: a recipient that no server takes never gets here, so
//! no entry can open the relay):
//! 1. accept list (connect, from, to): `accept`, the rest is skipped;
//! 2. reject list (connect, from, to): `554 5.7.1 … Access denied`;
//! 3. nothing else yet: `dunno`. Restrictions, DNS blocklists and
//!    greylisting come here, in that order, with the policy issue's next
//!    parts.
//!
//! Every decision other than `dunno` is logged at info with the session id,
//! the client, the sender, the recipient, the entry that decided and the
//! reply.

pub mod access;
pub mod dns;

use postern_shared::access::Client;
use postern_shared::policy::{access_verdict, Query, Verdict};

/// Decides for one recipient.
pub async fn decide(lists: &access::Lists, q: &Query) -> Verdict {
    let verdict = access_verdict(&lists.index(), q);
    if !q.dry {
        let client = Client::new(q.client);
        log(q, &client, &verdict);
    }
    verdict
}

fn log(q: &Query, client: &Client, v: &Verdict) {
    let sid = q.sid.as_str();
    let sender = format!("<{}>", q.sender);
    match v {
        Verdict::Dunno => {}
        Verdict::Accept { rule } => tracing::info!(
            sid,
            client_ip = %client.ip,
            sender,
            recipient = %q.recipient,
            "mail from {sender} to <{}> accepted by the access lists ({rule})",
            q.recipient
        ),
        Verdict::Refuse(r) => tracing::info!(
            sid,
            client_ip = %client.ip,
            sender,
            recipient = %q.recipient,
            reply = %format!("{} {} {}", r.code, r.enhanced, r.text),
            "mail from {sender} to <{}> refused via the access lists ({})",
            q.recipient,
            r.rule
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(text: &str) -> access::Lists {
        let dir = std::env::temp_dir().join(format!(
            "postern-policy-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.toml");
        std::fs::write(&path, text).expect("write");
        let l = access::Lists::load(path);
        std::fs::remove_dir_all(&dir).expect("clean");
        l
    }

    fn decide_now(l: &access::Lists, q: &Query) -> Verdict {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(decide(l, q))
    }

    fn query(client: &str, sender: &str, recipient: &str) -> Query {
        Query {
            sid: "S".into(),
            client: client.parse().expect("ip"),
            client_name: None,
            helo: None,
            sender: sender.into(),
            recipient: recipient.into(),
            dry: true,
        }
    }

    #[test]
    fn replies_name_what_was_refused() {
        let l = lists(
            "[[reject]]\nmethod = \"connect\"\npattern = \"192.0.2.0/24\"\n\
             [[reject]]\nmethod = \"from\"\npattern = \"<>\"\n\
             [[reject]]\nmethod = \"to\"\npattern = \"closed@one.test\"\n\
             [[accept]]\nmethod = \"to\"\npattern = \"postmaster@one.test\"\n",
        );
        let text = |v: Verdict| match v {
            Verdict::Refuse(r) => format!("{} {} {}", r.code, r.enhanced, r.text),
            other => format!("{other:?}"),
        };
        assert_eq!(
            text(decide_now(
                &l,
                &query("::ffff:192.0.2.9", "a@b.test", "u@one.test")
            )),
            "554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied"
        );
        assert_eq!(
            text(decide_now(&l, &query("198.51.100.1", "", "u@one.test"))),
            "554 5.7.1 <>: Sender address rejected: Access denied"
        );
        assert_eq!(
            text(decide_now(
                &l,
                &query("198.51.100.1", "a@b.test", "Closed@one.test")
            )),
            "554 5.7.1 <Closed@one.test>: Recipient address rejected: Access denied"
        );
        assert_eq!(
            decide_now(&l, &query("192.0.2.9", "", "postmaster@one.test")),
            Verdict::Accept {
                rule: "accept to postmaster@one.test".into()
            }
        );
        assert_eq!(
            decide_now(&l, &query("198.51.100.1", "a@b.test", "u@one.test")),
            Verdict::Dunno
        );
    }
}
