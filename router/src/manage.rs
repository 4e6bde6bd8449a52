//! The administrator's requests on the router's socket that change or show
//! policy state: `postern access` (the access lists) and `postern greylist`
//! (the greylisting store and its manual whitelist).

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::{Outcome, RouterRequest};
use postern_shared::runtime::time::{Clock, Timestamp};

use crate::policy;

/// The account name of the socket's peer, when the kernel told it.
fn peer_name(peer_uid: Option<u32>) -> Option<String> {
    peer_uid
        .and_then(|uid| nix::unistd::User::from_uid(uid.into()).ok().flatten())
        .map(|u| u.name)
}

/// `postern access list|add|remove`: the lists in force, or a change that
/// is written to the file before it takes effect.
pub fn access(
    lists: &policy::access::Lists,
    id: &str,
    request: RouterRequest,
    peer_uid: Option<u32>,
    clock: &Clock,
) -> Attrs {
    use policy::access::ChangeError;
    use postern_shared::access::{is_date, Action, Entry, Method, Pattern};
    let reply = |outcome: Outcome| outcome.reply(Some(id));
    let refuse = |why: String| Outcome::Reject(why).reply(Some(id));
    let (words, added) = match request {
        RouterRequest::AccessAdd {
            action,
            method,
            pattern,
            comment,
            keep_until,
            by,
        } => ((action, method, pattern), Some((comment, keep_until, by))),
        RouterRequest::AccessRemove {
            action,
            method,
            pattern,
        } => ((action, method, pattern), None),
        _ => return reply(Outcome::Ok).with_body(lists.text().into_bytes()),
    };
    let (action_word, method_word, pattern_word) = &words;
    let (action, method) = match (action_word.parse::<Action>(), method_word.parse::<Method>()) {
        (Ok(a), Ok(m)) => (a, m),
        (Err(e), _) | (_, Err(e)) => return refuse(e),
    };
    let pattern = match Pattern::parse(method, pattern_word) {
        Ok(p) => p,
        Err(e) => return refuse(e.to_string()),
    };
    let removing = added.is_none();
    let result = if let Some((comment, keep_until, by)) = added {
        let keep_until = keep_until.filter(|k| !k.is_empty());
        if let Some(k) = keep_until.as_ref().filter(|k| !is_date(k)) {
            return refuse(format!("keep-until {k:?} is not a date such as 2027-01-31"));
        }
        let user = peer_name(peer_uid);
        // The CLI says who ran it; the socket's peer says which account did
        // (unless it is postern's own: the console says its login).
        let own = peer_uid == Some(nix::unistd::getuid().as_raw());
        let added_by = match (by.filter(|b| !b.is_empty()), user) {
            (Some(by), Some(u)) if by != u && !own => format!("{by} (as {u})"),
            (Some(by), _) => by,
            (None, Some(u)) => u,
            (None, None) => "unknown".to_string(),
        };
        lists.add(Entry {
            action,
            method,
            pattern,
            comment: comment.unwrap_or_default(),
            keep_until,
            added: Some(Timestamp(clock.now()).to_string()),
            added_by: Some(added_by),
        })
    } else {
        lists.remove(action, method, &pattern)
    };
    match result {
        Ok(()) => {
            tracing::info!(
                "access lists: {} {} {} {}{}",
                if removing { "removed" } else { "added" },
                action_word,
                method_word,
                pattern_word,
                peer_name(peer_uid)
                    .map(|u| format!(" (asked by account {u})"))
                    .unwrap_or_default()
            );
            reply(Outcome::Ok)
        }
        Err(ChangeError::NotFound) => reply(Outcome::NotFound),
        Err(e @ ChangeError::Io(..)) => {
            tracing::error!("access lists: {e}");
            refuse(e.to_string())
        }
        Err(e) => refuse(e.to_string()),
    }
}

/// `postern greylist search|list|whitelist`: the views of seed 001 §10 and
/// the manual whitelist. Answers `status=ok count=N` with one line per
/// entry as body, or `status=reject reason=`.
pub async fn greylist(
    engine: &policy::Engine,
    id: &str,
    request: RouterRequest,
    peer_uid: Option<u32>,
) -> Attrs {
    let refuse = |why: String| Outcome::reject(why).reply(Some(id));
    let ok = |lines: Vec<String>| {
        let mut body = lines.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        Outcome::Ok
            .reply(Some(id))
            .with("count", lines.len())
            .with_body(body.into_bytes())
    };
    let time = |ms: u64| {
        postern_shared::runtime::logging::Timestamp(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string()
    };
    let line = |e: &policy::greylist::Listed| {
        format!(
            "{} {} {} {} {} {} {}",
            if e.passed { "passed" } else { "pending" },
            e.triplet.network,
            e.triplet.sender,
            e.triplet.recipient,
            time(e.first),
            time(e.last),
            e.count
        )
    };
    match request {
        RouterRequest::GreylistExport => {
            let (entries, whitelist) = match (
                engine.greylist_entries().await,
                engine.greylist_whitelist(None).await,
            ) {
                (Ok(e), Ok((_, w))) => (e, w),
                (Err(e), _) | (_, Err(e)) => return refuse(e),
            };
            let mut lines = vec![policy::greylist::EXPORT_HEADER.to_string()];
            lines.extend(entries.iter().map(policy::greylist::export_line));
            lines.extend(
                whitelist
                    .iter()
                    .map(|(k, c)| format!("whitelist\t{k}\t{c}")),
            );
            ok(lines)
        }
        RouterRequest::GreylistImport { text } => {
            let text = String::from_utf8_lossy(&text).into_owned();
            let (entries, whitelist) = match policy::greylist::parse_export(&text) {
                Ok(parsed) => parsed,
                Err(e) => return refuse(e),
            };
            match engine.greylist_import(entries, whitelist).await {
                Ok(n) => {
                    tracing::info!("greylisting: imported {n} entries");
                    ok(vec![format!("imported {n} entries")])
                }
                Err(e) => refuse(e),
            }
        }
        RouterRequest::GreylistWhitelist {
            op,
            kind,
            pattern,
            comment,
            by,
        } => {
            let (op, kind, pattern) = (op.as_str(), kind.as_str(), pattern.as_str());
            let change = match op {
                "list" => None,
                "add" => {
                    let user = peer_name(peer_uid);
                    let by = by.filter(|b| !b.is_empty()).or(user);
                    // Seed 001 §10.8: the comment defaults to date, time and who.
                    let comment = match comment.filter(|c| !c.is_empty()) {
                        Some(c) => c,
                        None => format!(
                            "added {} by {}",
                            postern_shared::runtime::logging::Timestamp(
                                std::time::SystemTime::now()
                            ),
                            by.as_deref().unwrap_or("unknown")
                        ),
                    };
                    Some((kind, pattern, Some(comment)))
                }
                "remove" => Some((kind, pattern, None)),
                other => return refuse(format!("unknown whitelist operation {other:?}")),
            };
            match engine.greylist_whitelist(change).await {
                Ok((changed, all)) => {
                    if op != "list" && !changed {
                        let why = if op == "add" {
                            "is already whitelisted"
                        } else {
                            "is not whitelisted"
                        };
                        return refuse(format!("{kind} {pattern} {why}"));
                    }
                    if op != "list" {
                        tracing::info!("greylisting: whitelist {op} {kind} {pattern}");
                    }
                    ok(all.into_iter().map(|(k, c)| format!("{k} # {c}")).collect())
                }
                Err(e) => refuse(e),
            }
        }
        request => {
            let entries = match engine.greylist_entries().await {
                Ok(e) => e,
                Err(e) => return refuse(e),
            };
            if let RouterRequest::GreylistSearch { pattern } = &request {
                let pattern = pattern.trim().to_lowercase();
                if pattern.is_empty() {
                    return refuse("search needs an address, a domain, or an IP or network".into());
                }
                let net = pattern.parse::<postern_shared::net::IpNet>().ok();
                let found: Vec<String> = entries
                    .iter()
                    .filter(|e| match &net {
                        // The entry's network holds the address, or the
                        // network searched holds the entry's.
                        Some(n) => e
                            .triplet
                            .network
                            .parse::<postern_shared::net::IpNet>()
                            .is_ok_and(|en| en.contains(n.addr()) || n.contains(en.addr())),
                        None => {
                            e.triplet.sender.contains(&pattern)
                                || e.triplet.recipient.contains(&pattern)
                        }
                    })
                    .map(line)
                    .collect();
                return ok(found);
            }
            let (which, by) = match &request {
                RouterRequest::GreylistList { which, by } => {
                    (which.as_deref().unwrap_or(""), by.as_deref().unwrap_or(""))
                }
                _ => ("", ""),
            };
            let mut shown: Vec<&policy::greylist::Listed> = entries
                .iter()
                .filter(|e| match which {
                    "pending" => !e.passed,
                    "passed" => e.passed,
                    _ => true,
                })
                .collect();
            match by {
                "sender" => shown.sort_by(|a, b| {
                    (&a.triplet.sender, a.first).cmp(&(&b.triplet.sender, b.first))
                }),
                "recipient" => shown.sort_by(|a, b| {
                    (&a.triplet.recipient, a.first).cmp(&(&b.triplet.recipient, b.first))
                }),
                _ => shown.sort_by(|a, b| {
                    (&a.triplet.network, a.first).cmp(&(&b.triplet.network, b.first))
                }),
            }
            ok(shown.into_iter().map(line).collect())
        }
    }
}

/// The console's MX check of one domain, through the policy's resolver:
/// its MX records, each with its addresses, or its own addresses when it
/// has no MX (RFC 5321 §5.1's implicit MX).
pub async fn mx(engine: &policy::Engine, id: &str, domain: &str) -> Attrs {
    use policy::dns::Answer;
    let Some(dns) = engine.dns() else {
        return Outcome::tempfail("no resolver: see the log (policy.resolvers)").reply(Some(id));
    };
    let failed = |why: String| Outcome::tempfail(why).reply(Some(id));
    let list = |ips: &[std::net::IpAddr]| {
        ips.iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match dns.mx(domain).await {
        Answer::Found(records) => {
            let mut reply = Outcome::Ok.reply(Some(id));
            for (preference, host) in records {
                let ips = match dns.addresses(&host).await {
                    Answer::Found(ips) => list(&ips),
                    Answer::NotFound => String::new(),
                    Answer::Timeout => "?timeout".into(),
                    Answer::Failed(e) => format!("?{e}"),
                };
                reply.push("mx", format!("{preference} {host} {ips}").trim_end());
            }
            reply
        }
        Answer::NotFound => match dns.addresses(domain).await {
            Answer::Found(ips) => Outcome::Ok.reply(Some(id)).with("implicit", list(&ips)),
            Answer::NotFound => Outcome::NotFound.reply(Some(id)),
            Answer::Timeout => failed(format!("{domain}: the resolver did not answer in time")),
            Answer::Failed(e) => failed(format!("{domain}: {e}")),
        },
        Answer::Timeout => failed(format!("{domain}: the resolver did not answer in time")),
        Answer::Failed(e) => failed(format!("{domain}: {e}")),
    }
}
