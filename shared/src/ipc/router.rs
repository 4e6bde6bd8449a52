//! `router.sock`: smtpd's lookups and notices, and the CLI's requests.
//!
//! The lookups and counts are decoded strictly: a request without what its
//! verb needs is answered `status=tempfail` with the reason this module
//! gives (the router's words since the seed). The management requests
//! (`access-*`, `greylist-*`) carry the CLI's words as they were typed: the
//! router checks them and answers `status=reject reason=` for bad ones.

use std::net::IpAddr;

use super::{request, verb, DecodeError, RouterVerb};
use crate::ipc::policy::Query;
use crate::ipc::proto::Attrs;
use crate::net::DisplayIp;
use crate::stats::{Counter, Counts};

/// A request to the router; the `id` (and `reply=no` of a notice) are the
/// connection's, added by whoever sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterRequest {
    /// The server of a recipient (`local@domain`), its aliases expanded.
    Route {
        /// The session asking.
        sid: String,
        /// The client's address, when known.
        client: Option<String>,
        /// The recipient's local part as the client wrote it; without it
        /// (an older smtpd) no alias applies.
        local: Option<String>,
        /// The domain, as the client wrote it.
        domain: String,
    },
    /// The relay client route (`ip-addr`) of an address.
    Client {
        /// The session asking.
        sid: String,
        /// The client's address.
        client: IpAddr,
    },
    /// The server of SMTP AUTH credentials.
    Auth {
        /// The session asking.
        sid: String,
        /// The user name.
        user: String,
        /// The password (never logged).
        password: String,
    },
    /// Count a new connection (and answer its `ip-addr` route).
    Connect {
        /// The session, counted once whatever repeats.
        sid: String,
        /// The client's address.
        client: IpAddr,
        /// The smtpd process serving it.
        pid: u32,
    },
    /// A counted connection's goodbye, with its session's counts (a notice).
    Disconnect {
        /// The session.
        sid: String,
        /// The client's address.
        client: IpAddr,
        /// The smtpd process that served it.
        pid: u32,
        /// The session's statistics.
        counts: Counts,
    },
    /// An uncounted session's statistics (a notice).
    Count {
        /// The session.
        sid: String,
        /// The session's statistics.
        counts: Counts,
    },
    /// The statistics file's text.
    Stats,
    /// Where an address stands with its failed authentications.
    Brake {
        /// The session asking.
        sid: String,
        /// The client's address.
        client: IpAddr,
        /// Record a failure first.
        failed: bool,
    },
    /// A recipient's policy verdict.
    Policy(Query),
    /// The access lists' file text.
    AccessList,
    /// Adds an access-list entry (`postern access add`).
    AccessAdd {
        /// The CLI's words: `accept` or `reject` …
        action: String,
        /// … the method …
        method: String,
        /// … and the pattern, checked by the router.
        pattern: String,
        /// The entry's comment.
        comment: Option<String>,
        /// The date the entry expires.
        keep_until: Option<String>,
        /// Who ran the CLI (`SUDO_USER`).
        by: Option<String>,
    },
    /// Removes an access-list entry.
    AccessRemove {
        /// `accept` or `reject`.
        action: String,
        /// The method.
        method: String,
        /// The pattern.
        pattern: String,
    },
    /// Greylist triplets matching an address, a domain or a network.
    GreylistSearch {
        /// What to look for.
        pattern: String,
    },
    /// Every greylist triplet.
    GreylistList {
        /// `pending` or `passed`, else all.
        which: Option<String>,
        /// `sender` or `recipient`, else by network.
        by: Option<String>,
    },
    /// Both greylist lists and the whitelist, as an export's text.
    GreylistExport,
    /// An export's text to add to the store.
    GreylistImport {
        /// The export, as `postern greylist export` wrote it.
        text: Vec<u8>,
    },
    /// The greylist whitelist: `list`, `add`, `remove`.
    GreylistWhitelist {
        /// The operation (`list` when absent).
        op: String,
        /// What kind of entry.
        kind: String,
        /// The entry.
        pattern: String,
        /// Its comment (add).
        comment: Option<String>,
        /// Who ran the CLI (add).
        by: Option<String>,
    },
    /// A domain's MX records and their addresses. Answered `status=ok`
    /// with one `mx=PREFERENCE HOST ADDRESS,ADDRESS…` per record, or, for a
    /// domain without MX, `implicit=ADDRESS,…` (its own A and AAAA, RFC 5321
    /// §5.1); `status=notfound` when it has neither; `status=tempfail
    /// reason=` when the resolver could not tell.
    Mx {
        /// The domain.
        domain: String,
    },
    /// The counters, open connections, zones and greylist store for a
    /// metrics scrape (postern-web's `/metrics`).
    Metrics,
}

/// Adds the counters of `counts` to `msg`, one attribute each.
fn with_counts(mut msg: Attrs, counts: &Counts) -> Attrs {
    for (name, n) in counts.iter() {
        msg.push(name, n);
    }
    msg
}

/// The counters among a message's attributes.
fn counts_of(msg: &Attrs) -> Counts {
    let mut counts = Counts::default();
    for (name, value) in msg.iter() {
        if let (Some(c), Ok(n)) = (Counter::parse(name), value.parse::<u64>()) {
            counts.add(c, n);
        }
    }
    counts
}

/// Adds `name=value` when there is a value.
fn with_some(msg: Attrs, name: &str, value: &Option<String>) -> Attrs {
    match value {
        Some(v) => msg.with(name, v),
        None => msg,
    }
}

impl RouterRequest {
    /// The request's verb.
    pub fn verb(&self) -> RouterVerb {
        match self {
            RouterRequest::Route { .. } => RouterVerb::Route,
            RouterRequest::Client { .. } => RouterVerb::Client,
            RouterRequest::Auth { .. } => RouterVerb::Auth,
            RouterRequest::Connect { .. } => RouterVerb::Connect,
            RouterRequest::Disconnect { .. } => RouterVerb::Disconnect,
            RouterRequest::Count { .. } => RouterVerb::Count,
            RouterRequest::Stats => RouterVerb::Stats,
            RouterRequest::Brake { .. } => RouterVerb::Brake,
            RouterRequest::Policy(_) => RouterVerb::Policy,
            RouterRequest::AccessList => RouterVerb::AccessList,
            RouterRequest::AccessAdd { .. } => RouterVerb::AccessAdd,
            RouterRequest::AccessRemove { .. } => RouterVerb::AccessRemove,
            RouterRequest::GreylistSearch { .. } => RouterVerb::GreylistSearch,
            RouterRequest::GreylistList { .. } => RouterVerb::GreylistList,
            RouterRequest::GreylistWhitelist { .. } => RouterVerb::GreylistWhitelist,
            RouterRequest::GreylistExport => RouterVerb::GreylistExport,
            RouterRequest::GreylistImport { .. } => RouterVerb::GreylistImport,
            RouterRequest::Mx { .. } => RouterVerb::Mx,
            RouterRequest::Metrics => RouterVerb::Metrics,
        }
    }

    /// The attribute list to send (without `id`).
    pub fn encode(&self) -> Attrs {
        if let RouterRequest::Policy(q) = self {
            return q.to_attrs();
        }
        let msg = request(self.verb());
        match self {
            RouterRequest::Route {
                sid,
                client,
                local,
                domain,
            } => with_some(
                with_some(msg.with_str("sid", sid), "client", client),
                "local",
                local,
            )
            .with_str("domain", domain),
            RouterRequest::Client { sid, client } => {
                msg.with_str("sid", sid).with("client", DisplayIp(*client))
            }
            RouterRequest::Auth {
                sid,
                user,
                password,
            } => msg
                .with_str("sid", sid)
                .with_str("user", user)
                .with_str("password", password),
            RouterRequest::Connect { sid, client, pid } => msg
                .with_str("sid", sid)
                .with("client", DisplayIp(*client))
                .with("pid", pid),
            RouterRequest::Disconnect {
                sid,
                client,
                pid,
                counts,
            } => with_counts(
                msg.with_str("sid", sid)
                    .with("client", DisplayIp(*client))
                    .with("pid", pid),
                counts,
            ),
            RouterRequest::Count { sid, counts } => with_counts(msg.with_str("sid", sid), counts),
            RouterRequest::Brake {
                sid,
                client,
                failed,
            } => msg
                .with_str("sid", sid)
                .with("client", DisplayIp(*client))
                .with("failed", u8::from(*failed)),
            RouterRequest::AccessAdd {
                action,
                method,
                pattern,
                comment,
                keep_until,
                by,
            } => {
                let msg = msg
                    .with("action", action)
                    .with("method", method)
                    .with("pattern", pattern);
                let msg = with_some(msg, "comment", comment);
                let msg = with_some(msg, "keep_until", keep_until);
                with_some(msg, "by", by)
            }
            RouterRequest::AccessRemove {
                action,
                method,
                pattern,
            } => msg
                .with("action", action)
                .with("method", method)
                .with("pattern", pattern),
            RouterRequest::GreylistSearch { pattern } => msg.with("pattern", pattern),
            RouterRequest::GreylistList { which, by } => {
                with_some(with_some(msg, "which", which), "by", by)
            }
            RouterRequest::GreylistWhitelist {
                op,
                kind,
                pattern,
                comment,
                by,
            } => {
                // Absent and empty are one (the decoding is lenient): only
                // what was given is written (fuzz/ipc_decode's round trip).
                let mut msg = msg.with("op", op);
                for (name, value) in [("kind", kind), ("pattern", pattern)] {
                    if !value.is_empty() {
                        msg.push(name, value);
                    }
                }
                with_some(with_some(msg, "comment", comment), "by", by)
            }
            RouterRequest::GreylistImport { text } => msg.with_body(text.clone()),
            RouterRequest::Mx { domain } => msg.with_str("domain", domain),
            RouterRequest::Stats
            | RouterRequest::Metrics
            | RouterRequest::AccessList
            | RouterRequest::GreylistExport
            | RouterRequest::Policy(_) => msg,
        }
    }

    /// The request a message holds: strictly for lookups and counts (the
    /// error is the reason the router answers), leniently for the CLI's
    /// management requests (absent words are empty; the router refuses them).
    pub fn decode(msg: &Attrs) -> Result<Self, DecodeError> {
        let get = |name: &str| msg.get(name).map(str::to_string);
        let text = |name: &str| msg.get(name).unwrap_or_default().to_string();
        let sid = || msg.get("sid").unwrap_or("-").to_string();
        let ip = |name: &str| msg.get(name).and_then(|c| c.parse::<IpAddr>().ok());
        Ok(match verb::<RouterVerb>(msg)? {
            RouterVerb::Route => RouterRequest::Route {
                sid: sid(),
                client: get("client"),
                local: get("local"),
                domain: get("domain")
                    .ok_or(DecodeError::Invalid("route request without domain"))?,
            },
            RouterVerb::Client => RouterRequest::Client {
                sid: sid(),
                client: ip("client").ok_or(DecodeError::Invalid(
                    "client request without a valid client address",
                ))?,
            },
            RouterVerb::Auth => match (msg.get("user"), msg.get("password")) {
                (Some(user), Some(password)) => RouterRequest::Auth {
                    sid: sid(),
                    user: user.to_string(),
                    password: password.to_string(),
                },
                _ => {
                    return Err(DecodeError::Invalid(
                        "auth request without user and password",
                    ))
                }
            },
            v @ (RouterVerb::Connect | RouterVerb::Disconnect) => {
                let (Some(client), Some(pid), Some(sid)) = (
                    ip("client"),
                    msg.get("pid").and_then(|p| p.parse::<u32>().ok()),
                    msg.get("sid").filter(|s| !s.is_empty()),
                ) else {
                    return Err(DecodeError::Invalid(
                        "connection accounting needs client, pid and sid",
                    ));
                };
                let sid = sid.to_string();
                if v == RouterVerb::Connect {
                    RouterRequest::Connect { sid, client, pid }
                } else {
                    RouterRequest::Disconnect {
                        sid,
                        client,
                        pid,
                        counts: counts_of(msg),
                    }
                }
            }
            RouterVerb::Count => RouterRequest::Count {
                sid: sid(),
                counts: counts_of(msg),
            },
            RouterVerb::Stats => RouterRequest::Stats,
            RouterVerb::Brake => {
                let (Some(client), Some(failed)) = (
                    ip("client"),
                    msg.get("failed").filter(|f| matches!(*f, "0" | "1")),
                ) else {
                    return Err(DecodeError::Invalid(
                        "brake request needs client and failed=0|1",
                    ));
                };
                RouterRequest::Brake {
                    sid: sid(),
                    client,
                    failed: failed == "1",
                }
            }
            RouterVerb::Policy => {
                RouterRequest::Policy(Query::from_attrs(msg).map_err(DecodeError::Invalid)?)
            }
            RouterVerb::AccessList => RouterRequest::AccessList,
            RouterVerb::AccessAdd => RouterRequest::AccessAdd {
                action: text("action"),
                method: text("method"),
                pattern: text("pattern"),
                comment: get("comment"),
                keep_until: get("keep_until"),
                by: get("by"),
            },
            RouterVerb::AccessRemove => RouterRequest::AccessRemove {
                action: text("action"),
                method: text("method"),
                pattern: text("pattern"),
            },
            RouterVerb::GreylistSearch => RouterRequest::GreylistSearch {
                pattern: text("pattern"),
            },
            RouterVerb::GreylistList => RouterRequest::GreylistList {
                which: get("which"),
                by: get("by"),
            },
            RouterVerb::GreylistExport => RouterRequest::GreylistExport,
            RouterVerb::Metrics => RouterRequest::Metrics,
            RouterVerb::Mx => RouterRequest::Mx {
                domain: text("domain"),
            },
            RouterVerb::GreylistImport => RouterRequest::GreylistImport {
                text: msg.body.clone().unwrap_or_default(),
            },
            RouterVerb::GreylistWhitelist => RouterRequest::GreylistWhitelist {
                op: msg.get("op").unwrap_or("list").to_string(),
                kind: text("kind"),
                pattern: text("pattern"),
                comment: get("comment"),
                by: get("by"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let mut counts = Counts::default();
        counts.add(Counter::parse("connections").expect("a counter"), 1);
        let client: IpAddr = "192.0.2.7".parse().expect("an address");
        for r in [
            RouterRequest::Route {
                sid: "S".into(),
                client: Some("192.0.2.7".into()),
                local: Some("Jean.Dupont".into()),
                domain: "one.test".into(),
            },
            RouterRequest::Client {
                sid: "S".into(),
                client,
            },
            RouterRequest::Auth {
                sid: "S".into(),
                user: "u".into(),
                password: "p w".into(),
            },
            RouterRequest::Connect {
                sid: "S".into(),
                client,
                pid: 7,
            },
            RouterRequest::Disconnect {
                sid: "S".into(),
                client,
                pid: 7,
                counts: counts.clone(),
            },
            RouterRequest::Count {
                sid: "S".into(),
                counts,
            },
            RouterRequest::Stats,
            RouterRequest::Brake {
                sid: "S".into(),
                client,
                failed: true,
            },
            RouterRequest::AccessList,
            RouterRequest::AccessRemove {
                action: "reject".into(),
                method: "ip".into(),
                pattern: "192.0.2.0/24".into(),
            },
            RouterRequest::GreylistList {
                which: Some("pending".into()),
                by: None,
            },
        ] {
            assert_eq!(RouterRequest::decode(&r.encode()), Ok(r));
        }
    }

    #[test]
    fn a_lookup_without_what_it_needs_is_an_error_with_the_routers_reason() {
        let bad = request(RouterVerb::Brake).with("client", "192.0.2.7");
        assert_eq!(
            RouterRequest::decode(&bad).map_err(|e| e.to_string()),
            Err("brake request needs client and failed=0|1".to_string())
        );
        let bad = request(RouterVerb::Route).with("sid", "S");
        assert_eq!(
            RouterRequest::decode(&bad),
            Err(DecodeError::Invalid("route request without domain"))
        );
    }
}
