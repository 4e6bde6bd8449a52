//! The router's policy protocol, typed (SPEC §8): what smtpd asks once per
//! recipient of a domain-routed session, and the access-list management of
//! `postern access`.
//!
//! ```text
//! smtpd → router                     router → smtpd
//! request=policy                     id=9
//! id=9                               status=ok
//! sid=4F2A9C01                       action=reject
//! client=203.0.113.9                 code=554
//! helo=mail.example.org              enhanced=5.7.1
//! client_name=mail.example.org
//! sender=a@example.org               text=<a@example.org>: Sender address rejected: Access denied
//! recipient=u@one.test               kind=access
//!                                    rule=reject from a@example.org
//! ```
//!
//! `client_name` (the forward-confirmed reverse name, when the asker knows
//! it) and `pipelining=improper` (the client broke the pipelining rules)
//! are optional. `action` is `dunno` (nothing against it: go on), `accept` (an accept
//! entry: the rest of the checks is skipped) or `reject` (with the reply
//! to give). `dry=yes` asks for the verdict only (`postern access test`):
//! nothing is counted or stored. A router that cannot decide answers
//! `status=tempfail`; smtpd then answers `451 4.3.0`, never 5xx.
//!
//! Management (`postern access …`, one request per connection):
//! `request=access-list` answers `status=ok` with the access file's text as
//! body; `request=access-add action= method= pattern= [comment=]
//! [keep_until=] [by=]` and `request=access-remove action= method=
//! pattern=` answer `status=ok`, `status=notfound` (remove: no such entry)
//! or `status=reject reason=` (a bad pattern, a duplicate, a file that
//! cannot be written).

use std::net::IpAddr;

use crate::access::{AccessIndex, Address, Client, Entry, Method, Verdict as Access};
use crate::ipc;
use crate::ipc::proto::Attrs;
use crate::stats::Rejection;

/// One recipient's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The session, for the log.
    pub sid: String,
    /// The client's address.
    pub client: IpAddr,
    /// Its forward-confirmed reverse name, when known.
    pub client_name: Option<String>,
    /// Its HELO/EHLO argument.
    pub helo: Option<String>,
    /// The envelope sender, without angle brackets; empty for `<>`.
    pub sender: String,
    /// The recipient, without angle brackets.
    pub recipient: String,
    /// The client sent a command ahead of a reply where pipelining is not
    /// allowed (before the greeting, after HELO, before EHLO's reply).
    pub improper_pipelining: bool,
    /// Only the verdict: count nothing, store nothing.
    pub dry: bool,
}

/// A [`Query`] made of borrowed parts: what smtpd asks with for each
/// recipient, without copying its session's strings first.
#[derive(Debug, Clone, Copy)]
pub struct QueryRef<'a> {
    /// See [`Query::sid`].
    pub sid: &'a str,
    /// See [`Query::client`].
    pub client: IpAddr,
    /// See [`Query::client_name`].
    pub client_name: Option<&'a str>,
    /// See [`Query::helo`].
    pub helo: Option<&'a str>,
    /// See [`Query::sender`].
    pub sender: &'a str,
    /// See [`Query::recipient`].
    pub recipient: &'a str,
    /// See [`Query::improper_pipelining`].
    pub improper_pipelining: bool,
    /// See [`Query::dry`].
    pub dry: bool,
}

impl QueryRef<'_> {
    /// The request attributes.
    pub fn to_attrs(&self) -> Attrs {
        let mut a = ipc::request(ipc::RouterVerb::Policy)
            .with_str("sid", self.sid)
            .with("client", crate::net::DisplayIp(self.client))
            .with_str("sender", self.sender)
            .with_str("recipient", self.recipient);
        if let Some(n) = self.client_name {
            a = a.with_str("client_name", n);
        }
        if let Some(h) = self.helo {
            a = a.with_str("helo", h);
        }
        if self.improper_pipelining {
            a = a.with_str("pipelining", "improper");
        }
        if self.dry {
            a = a.with_str("dry", "yes");
        }
        a
    }
}

impl Query {
    /// The same question, borrowed.
    pub fn as_ref(&self) -> QueryRef<'_> {
        QueryRef {
            sid: &self.sid,
            client: self.client,
            client_name: self.client_name.as_deref(),
            helo: self.helo.as_deref(),
            sender: &self.sender,
            recipient: &self.recipient,
            improper_pipelining: self.improper_pipelining,
            dry: self.dry,
        }
    }

    /// The request attributes.
    pub fn to_attrs(&self) -> Attrs {
        self.as_ref().to_attrs()
    }

    /// Reads a request; `Err` names what is missing or malformed.
    pub fn from_attrs(a: &Attrs) -> Result<Query, &'static str> {
        // One pass over the attributes (the router reads one per
        // recipient); the first of a name counts, as with `Attrs::get`.
        let mut v: [Option<&str>; 8] = [None; 8];
        const NAMES: [&str; 8] = [
            "sid",
            "client",
            "client_name",
            "helo",
            "sender",
            "recipient",
            "pipelining",
            "dry",
        ];
        for (name, value) in a.iter() {
            if let Some(i) = NAMES.iter().position(|n| *n == name) {
                v[i].get_or_insert(value);
            }
        }
        let [sid, client, client_name, helo, sender, recipient, pipelining, dry] = v;
        Ok(Query {
            sid: sid.unwrap_or("-").to_string(),
            client: client
                .and_then(|c| c.parse().ok())
                .ok_or("policy request without a valid client address")?,
            client_name: client_name.filter(|n| !n.is_empty()).map(str::to_string),
            helo: helo.map(str::to_string),
            sender: sender.ok_or("policy request without sender")?.to_string(),
            recipient: recipient
                .filter(|r| !r.is_empty())
                .ok_or("policy request without recipient")?
                .to_string(),
            improper_pipelining: pipelining == Some("improper"),
            dry: dry == Some("yes"),
        })
    }
}

/// The enhanced status codes a policy refusal may carry (SPEC §8): access
/// lists and blocklists `5.7.1`, HELO and address syntax `5.5.2`, unknown
/// domains `4.1.8`/`4.1.2`, pipelining `5.5.0`, greylisting `4.7.1`, a store
/// or lookup failure `4.3.0`. A verdict with another one is not a verdict.
pub const ENHANCED: [&str; 7] = [
    "5.7.1", "5.5.2", "4.1.8", "4.1.2", "5.5.0", "4.7.1", "4.3.0",
];

/// The router's answer for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing against it: go on.
    Dunno,
    /// An accept entry: the remaining checks are skipped. `rule` says which.
    Accept {
        /// The entry, as `postern access list` shows it.
        rule: String,
    },
    /// Refused, with the reply to give.
    Refuse(Refusal),
}

/// Which statistics counter a refusal counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `rejected.<kind>`: access lists, blocklists, restrictions.
    Rejected(Rejection),
    /// `greylisted`: a temporary refusal the sender's retry will pass.
    Greylisted,
}

impl Kind {
    /// The wire name: the rejection's kind, or `greylist`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rejected(r) => r.as_str(),
            Kind::Greylisted => "greylist",
        }
    }

    /// The kind of a wire name.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "greylist" => Some(Kind::Greylisted),
            other => Rejection::parse(other).map(Kind::Rejected),
        }
    }

    /// The counter a refusal of this kind adds to.
    pub fn counter(self) -> crate::stats::Counter {
        match self {
            Kind::Rejected(r) => crate::stats::Counter::Rejected(r),
            Kind::Greylisted => crate::stats::Counter::Greylisted,
        }
    }
}

/// A refusal: the SMTP reply and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Reply code (554, 504, 450, 451…).
    pub code: u16,
    /// Enhanced status code (`5.7.1`), one of [`ENHANCED`].
    pub enhanced: &'static str,
    /// Reply text.
    pub text: String,
    /// Which statistics counter it counts in.
    pub kind: Kind,
    /// What decided, for the log.
    pub rule: String,
}

impl Verdict {
    /// The verdict in words, as `postern access test` prints it and the
    /// console's "test an address" shows it (lines ending in LF).
    pub fn describe(&self) -> String {
        match self {
            Verdict::Dunno => {
                "verdict: dunno (no access entry, restriction or blocklist refuses it: the mail goes on to the server)\n".into()
            }
            Verdict::Accept { rule } => {
                format!("verdict: accept (the other checks are skipped)\nrule: {rule}\n")
            }
            Verdict::Refuse(r) => format!(
                "verdict: reject\nreply: {} {} {}\nrule: {}\n",
                r.code, r.enhanced, r.text, r.rule
            ),
        }
    }

    /// The reply attributes.
    pub fn to_attrs(&self, id: &str) -> Attrs {
        let a = crate::ipc::Outcome::Ok.reply(Some(id));
        match self {
            Verdict::Dunno => a.with("action", "dunno"),
            Verdict::Accept { rule } => a.with("action", "accept").with("rule", rule),
            Verdict::Refuse(r) => a
                .with("action", "reject")
                .with("code", r.code)
                .with("enhanced", r.enhanced)
                .with("text", &r.text)
                .with("kind", r.kind.as_str())
                .with("rule", &r.rule),
        }
    }

    /// Reads a reply with `status=ok`; `None` when it is not a verdict.
    pub fn from_attrs(a: &Attrs) -> Option<Verdict> {
        match a.get("action")? {
            "dunno" => Some(Verdict::Dunno),
            "accept" => Some(Verdict::Accept {
                rule: a.get("rule").unwrap_or_default().to_string(),
            }),
            "reject" => {
                let code: u16 = a.get("code")?.parse().ok()?;
                let enhanced = ENHANCED
                    .into_iter()
                    .find(|e| Some(*e) == a.get("enhanced"))?;
                // A refusal is 4xx or 5xx with a matching enhanced class.
                if !(400..600).contains(&code) || enhanced[..1] != (code / 100).to_string() {
                    return None;
                }
                Some(Verdict::Refuse(Refusal {
                    code,
                    enhanced,
                    text: a.get("text")?.to_string(),
                    kind: Kind::parse(a.get("kind")?)?,
                    rule: a.get("rule").unwrap_or_default().to_string(),
                }))
            }
            _ => None,
        }
    }
}

/// The access entry as `postern access list` words it: `reject from a@b.test`.
pub fn rule(e: &Entry) -> String {
    format!("{} {} {}", e.action.as_str(), e.method.as_str(), e.pattern)
}

/// The access lists' verdict for one recipient, with Postfix's reply texts:
/// `554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied`,
/// `… <a@b.test>: Sender address rejected: …`, `… Recipient address rejected: …`.
pub fn access_verdict(index: &AccessIndex, q: &Query) -> Verdict {
    let client = Client {
        ip: crate::net::unmap(q.client),
        verified_name: q.client_name.as_ref().map(|n| n.to_lowercase()),
    };
    let sender = Address::parse(&q.sender);
    let recipient = Address::parse(&q.recipient);
    match index.decide(&client, &sender, &recipient) {
        Access::None => Verdict::Dunno,
        Access::Accept(e) => Verdict::Accept { rule: rule(e) },
        Access::Reject(e) => {
            let text = match e.method {
                Method::Connect => format!(
                    "<{}[{}]>: Client host rejected: Access denied",
                    client.verified_name.as_deref().unwrap_or("unknown"),
                    client.ip
                ),
                Method::From => format!("<{}>: Sender address rejected: Access denied", q.sender),
                Method::To => format!(
                    "<{}>: Recipient address rejected: Access denied",
                    q.recipient
                ),
            };
            Verdict::Refuse(Refusal {
                code: 554,
                enhanced: "5.7.1",
                text,
                kind: Kind::Rejected(Rejection::Access),
                rule: rule(e),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_verdicts_round_trip() {
        let q = Query {
            sid: "S1".into(),
            client: "::ffff:192.0.2.1".parse().expect("ip"),
            client_name: Some("mail.example.org".into()),
            helo: Some("mail.example.org".into()),
            sender: String::new(),
            recipient: "u@one.test".into(),
            improper_pipelining: true,
            dry: true,
        };
        let wire = q.to_attrs().encode().expect("encodes");
        let back = crate::ipc::proto::decode(&wire)
            .expect("decodes")
            .expect("one message");
        assert_eq!(Query::from_attrs(&back), Ok(q));
        for v in [
            Verdict::Dunno,
            Verdict::Accept {
                rule: "accept connect 192.0.2.0/24".into(),
            },
            Verdict::Refuse(Refusal {
                code: 554,
                enhanced: "5.7.1",
                text: "<a@b.test>: Sender address rejected: Access denied".into(),
                kind: Kind::Rejected(Rejection::Access),
                rule: "reject from a@b.test".into(),
            }),
        ] {
            let wire = v.to_attrs("7").encode().expect("encodes");
            let back = crate::ipc::proto::decode(&wire)
                .expect("decodes")
                .expect("one message");
            assert_eq!(back.get("id"), Some("7"));
            assert_eq!(Verdict::from_attrs(&back), Some(v));
        }
    }

    #[test]
    fn a_refusal_must_be_a_refusal() {
        let reply = |code: &str, enhanced: &str| {
            Attrs::new()
                .with("action", "reject")
                .with("code", code)
                .with("enhanced", enhanced)
                .with("text", "no")
                .with("kind", "access")
        };
        assert!(Verdict::from_attrs(&reply("554", "5.7.1")).is_some());
        assert!(Verdict::from_attrs(&reply("250", "2.0.0")).is_none());
        assert!(Verdict::from_attrs(&reply("451", "5.7.1")).is_none());
        assert!(Verdict::from_attrs(&reply("554", "5.9.9")).is_none());
        assert!(Verdict::from_attrs(&Attrs::new().with("action", "maybe")).is_none());
        assert!(Query::from_attrs(&Attrs::new().with("client", "x")).is_err());
    }

    #[test]
    fn a_request_is_read_by_its_first_values() {
        let base = || {
            Attrs::new()
                .with("request", "policy")
                .with("client", "192.0.2.1")
                .with("sender", "a@b.test")
        };
        let q = Query::from_attrs(
            &base()
                .with("recipient", "first@one.test")
                .with("recipient", "second@one.test")
                .with("dry", "yes")
                .with("dry", "no")
                .with("client_name", ""),
        )
        .expect("a request");
        assert_eq!(q.recipient, "first@one.test");
        assert!(q.dry);
        assert_eq!(q.sid, "-");
        assert_eq!((q.client_name, q.helo), (None, None));
        assert_eq!(
            Query::from_attrs(&base()),
            Err("policy request without recipient")
        );
        assert_eq!(
            Query::from_attrs(&base().with("recipient", "")),
            Err("policy request without recipient")
        );
        assert_eq!(
            Query::from_attrs(
                &Attrs::new()
                    .with("client", "192.0.2.1")
                    .with("recipient", "u@x")
            ),
            Err("policy request without sender")
        );
    }
}
