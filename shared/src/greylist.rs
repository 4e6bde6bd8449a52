//! Greylisting (SPEC §8, seed 001 §10), sans-IO: the triplet a delivery
//! attempt is known by, and what a store's record of it decides. The stores
//! (embedded, Redis) live in the router; this is what both share.
//!
//! A triplet is (client network, normalised sender, recipient):
//! - the client's address un-mapped (`::ffff:a.b.c.d` is IPv4) and cut to
//!   `ipv4_prefix` / `ipv6_prefix` bits, because big senders retry from
//!   another address of their pool;
//! - the sender lower-cased, with what changes between two attempts of one
//!   message taken out: BATV (`prvs=TAG=user`), SRS (`SRS0=HASH=TT=domain=user`
//!   keeps `domain=user`), `+extension`, and runs of digits (VERP) replaced
//!   by `#`; the null sender is `<>`;
//! - the recipient lower-cased, without a trailing dot on its domain.
//!
//! A new triplet, or a retry before `delay` has passed since its **first**
//! attempt (early retries never move it), is refused with `451 4.7.1
//! Greylisting in action, please come back in HH:MM:SS`, the time left. A
//! retry at the first attempt plus `delay` or later, within `retry_window`,
//! passes: the triplet leaves the pending list for the auto-whitelist, where
//! each accepted mail renews it for `auto_whitelist`. A retry after the
//! window starts again. Times are Unix milliseconds, given by the caller
//! (the store's clock), so tests move time by hand.

use std::net::IpAddr;

use crate::net::{mask, unmap};

/// A delivery attempt's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triplet {
    /// `192.0.2.0/24`, `2001:db8:1:2::/64`.
    pub network: String,
    /// The normalised sender (`<>` for the null sender).
    pub sender: String,
    /// The recipient, lower case.
    pub recipient: String,
}

impl Triplet {
    /// The triplet of an attempt.
    pub fn new(client: IpAddr, sender: &str, recipient: &str, v4: u8, v6: u8) -> Triplet {
        Triplet {
            network: network(client, v4, v6),
            sender: normalize_sender(sender),
            recipient: normalize_recipient(recipient),
        }
    }

    /// One string for a store's key: the three parts separated by a
    /// character none of them can hold.
    pub fn key(&self) -> String {
        format!(
            "{}\u{1}{}\u{1}{}",
            self.network, self.sender, self.recipient
        )
    }

    /// The inverse of [`Triplet::key`].
    pub fn from_key(key: &str) -> Option<Triplet> {
        let mut parts = key.split('\u{1}');
        let t = Triplet {
            network: parts.next()?.to_string(),
            sender: parts.next()?.to_string(),
            recipient: parts.next()?.to_string(),
        };
        parts.next().is_none().then_some(t)
    }
}

/// The client's network, `address/prefix` with the host bits cleared.
pub fn network(client: IpAddr, v4: u8, v6: u8) -> String {
    let ip = unmap(client);
    let prefix = if ip.is_ipv4() {
        v4.min(32)
    } else {
        v6.min(128)
    };
    format!("{}/{prefix}", mask(ip, prefix))
}

/// The sender as greylisting compares it (see the module description).
pub fn normalize_sender(sender: &str) -> String {
    if sender.is_empty() || sender == "<>" {
        return "<>".into();
    }
    let lower = sender.to_lowercase();
    let (local, domain) = match lower.rsplit_once('@') {
        Some((l, d)) => (l.to_string(), d.trim_end_matches('.').to_string()),
        None => (lower.clone(), String::new()),
    };
    let mut local = local;
    // BATV: prvs=TAG=user (RFC draft) or prvs=user=TAG (some signers).
    if let Some(rest) = local
        .strip_prefix("prvs=")
        .or_else(|| local.strip_prefix("msprvs1="))
    {
        let parts: Vec<&str> = rest.splitn(2, '=').collect();
        if let [a, b] = parts.as_slice() {
            let tag_like = |s: &str| s.len() >= 8 && s.bytes().all(|c| c.is_ascii_alphanumeric());
            local = if tag_like(a) && !tag_like(b) {
                b.to_string()
            } else if tag_like(b) && !tag_like(a) {
                a.to_string()
            } else {
                b.to_string()
            };
        }
    }
    // SRS: srs0=HASH=TT=domain=user, srs1=HASH=forwarder==HASH=TT=domain=user.
    if local.starts_with("srs0=") || local.starts_with("srs1=") {
        let fields: Vec<&str> = local.split('=').collect();
        if fields.len() >= 5 {
            let n = fields.len();
            local = format!("srs={}={}", fields[n - 2], fields[n - 1]);
        }
    }
    // +extension.
    if let Some(i) = local.find('+') {
        if i > 0 {
            local.truncate(i);
        }
    }
    // VERP and other per-message numbers: every run of digits is one `#`.
    let mut out = String::with_capacity(local.len() + domain.len() + 1);
    let mut in_digits = false;
    for c in local.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    if !domain.is_empty() {
        out.push('@');
        out.push_str(&domain);
    }
    out
}

/// The recipient as greylisting compares it.
pub fn normalize_recipient(r: &str) -> String {
    let lower = r.to_lowercase();
    match lower.rsplit_once('@') {
        Some((l, d)) => format!("{l}@{}", d.trim_end_matches('.')),
        None => lower,
    }
}

/// The timings of `[greylist]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// The least time between the first attempt and a retry that passes.
    pub delay: u64,
    /// How long after the first attempt a retry may come.
    pub retry_window: u64,
    /// How long a passed triplet stays whitelisted after its last mail.
    pub auto_whitelist: u64,
}

/// A pending triplet's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The first attempt (never moved by retries).
    pub first: u64,
    /// The latest attempt.
    pub last: u64,
    /// Attempts so far.
    pub count: u64,
}

/// A whitelisted triplet's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// When it passed.
    pub first: u64,
    /// The latest accepted mail.
    pub last: u64,
    /// Mails accepted since it passed.
    pub count: u64,
}

/// What a store holds of a triplet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Greylisted, waiting for a retry.
    Pending(Pending),
    /// In the auto-whitelist.
    Passed(Passed),
}

/// What the store must do, and what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A first attempt (or one after the window): store this record, refuse.
    Greylist {
        /// The record to store.
        record: Pending,
        /// Milliseconds until a retry passes.
        left: u64,
    },
    /// An early retry: store this record (same first attempt), refuse.
    TooEarly {
        /// The record to store.
        record: Pending,
        /// Milliseconds until a retry passes.
        left: u64,
    },
    /// A retry in time: the triplet moves to the auto-whitelist; accept.
    Pass(Passed),
    /// Whitelisted already: renew it; accept.
    Renew(Passed),
}

impl Step {
    /// Whether the attempt is accepted.
    pub fn accepted(&self) -> bool {
        matches!(self, Step::Pass(_) | Step::Renew(_))
    }
}

/// What an attempt at `now` does to a triplet whose record is `record`.
pub fn step(record: Option<Record>, now: u64, t: &Timings) -> Step {
    match record {
        Some(Record::Passed(p)) if now < p.last.saturating_add(t.auto_whitelist) => {
            Step::Renew(Passed {
                last: now.max(p.last),
                count: p.count + 1,
                ..p
            })
        }
        // A first attempt in the future (clocks that disagree): it starts now.
        Some(Record::Pending(p))
            if p.first <= now && now <= p.first.saturating_add(t.retry_window) =>
        {
            let due = p.first.saturating_add(t.delay);
            if now >= due {
                Step::Pass(Passed {
                    first: now,
                    last: now,
                    count: 1,
                })
            } else {
                Step::TooEarly {
                    record: Pending {
                        last: now,
                        count: p.count + 1,
                        ..p
                    },
                    left: due - now,
                }
            }
        }
        _ => Step::Greylist {
            record: Pending {
                first: now,
                last: now,
                count: 1,
            },
            left: t.delay,
        },
    }
}

/// Whether a record has expired at `now` (the purge's test).
pub fn expired(record: &Record, now: u64, t: &Timings) -> bool {
    match record {
        Record::Pending(p) => now > p.first.saturating_add(t.retry_window),
        Record::Passed(p) => now >= p.last.saturating_add(t.auto_whitelist),
    }
}

/// `HH:MM:SS` of a duration in milliseconds, rounded up to the second (a
/// client told "00:00:00" would come back too early).
pub fn hms(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_of_one_message_normalise_alike() {
        for (a, b) in [
            (
                "prvs=1234abcdef=bounce@example.com",
                "prvs=9876fedcba=bounce@example.com",
            ),
            (
                "SRS0=HHH=TT=orig.example=alice@forwarder.example",
                "SRS0=GGG=UU=orig.example=alice@forwarder.example",
            ),
            (
                "SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example",
                "srs1=xyz=fwd1.example==abc=tt=orig.example=alice@fwd2.example",
            ),
            (
                "list+bounces-123@lists.example",
                "list+bounces-456@lists.example",
            ),
            ("bounce-8812-77@news.example", "bounce-9913-12@news.example"),
            ("Alice@Example.COM.", "alice@example.com"),
        ] {
            assert_eq!(normalize_sender(a), normalize_sender(b), "{a} / {b}");
        }
        assert_ne!(
            normalize_sender("alice@example.com"),
            normalize_sender("bob@example.com")
        );
        assert_eq!(normalize_sender(""), "<>");
        assert_eq!(
            normalize_sender("prvs=1234abcdef=bounce@example.com"),
            "bounce@example.com"
        );
        assert_eq!(
            normalize_sender("bounce-8812-77@news.example"),
            "bounce-#-#@news.example"
        );
    }

    #[test]
    fn networks_after_unmapping() {
        assert_eq!(
            network("192.0.2.77".parse().expect("ip"), 24, 64),
            "192.0.2.0/24"
        );
        assert_eq!(
            network("::ffff:192.0.2.77".parse().expect("ip"), 24, 64),
            "192.0.2.0/24"
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().expect("ip"), 24, 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network("192.0.2.77".parse().expect("ip"), 32, 64),
            "192.0.2.77/32"
        );
        let t = Triplet::new(
            "192.0.2.1".parse().expect("ip"),
            "A@b.test",
            "U@One.test.",
            24,
            64,
        );
        assert_eq!(Triplet::from_key(&t.key()), Some(t));
    }

    const T: Timings = Timings {
        delay: 120_000,
        retry_window: 2 * 86_400_000,
        auto_whitelist: 32 * 86_400_000,
    };

    fn apply(record: &mut Option<Record>, now: u64) -> Step {
        let s = step(*record, now, &T);
        *record = Some(match s {
            Step::Greylist { record, .. } | Step::TooEarly { record, .. } => {
                Record::Pending(record)
            }
            Step::Pass(p) | Step::Renew(p) => Record::Passed(p),
        });
        s
    }

    #[test]
    fn early_retries_never_move_the_first_attempt() {
        let mut r = None;
        assert!(matches!(
            apply(&mut r, 1_000),
            Step::Greylist { left: 120_000, .. }
        ));
        // Retries every 30 s: each told the time left from the first attempt.
        for (at, left) in [
            (31_000, 90_000),
            (61_000, 60_000),
            (91_000, 30_000),
            (120_999, 1),
        ] {
            assert_eq!(
                apply(&mut r, at),
                Step::TooEarly {
                    record: Pending {
                        first: 1_000,
                        last: at,
                        count: match at {
                            31_000 => 2,
                            61_000 => 3,
                            91_000 => 4,
                            _ => 5,
                        }
                    },
                    left
                }
            );
        }
        assert!(
            matches!(apply(&mut r, 121_000), Step::Pass(_)),
            "at first + delay exactly"
        );
        // Whitelisted: accepted and renewed by each mail.
        assert!(matches!(
            apply(&mut r, 10 * 86_400_000),
            Step::Renew(Passed { count: 2, .. })
        ));
        assert!(
            matches!(apply(&mut r, 41 * 86_400_000), Step::Renew(_)),
            "32 days after the last mail, not the first"
        );
        // Unused for 32 days: greylisted again.
        assert!(matches!(
            apply(&mut r, 74 * 86_400_000),
            Step::Greylist { .. }
        ));
    }

    #[test]
    fn a_retry_after_the_window_starts_again_and_purges_drop_old_records() {
        let mut r = None;
        apply(&mut r, 0);
        let late = 2 * 86_400_000 + 1;
        assert!(expired(&r.expect("pending"), late, &T));
        assert!(matches!(
            apply(&mut r, late),
            Step::Greylist { left: 120_000, .. }
        ));
        // A first attempt recorded in the future (another host's clock) starts now.
        let future = Some(Record::Pending(Pending {
            first: 500_000,
            last: 500_000,
            count: 1,
        }));
        assert!(matches!(step(future, 100_000, &T), Step::Greylist { .. }));
    }

    #[test]
    fn time_left_is_rounded_up() {
        assert_eq!(hms(120_000), "00:02:00");
        assert_eq!(hms(1), "00:00:01");
        assert_eq!(hms(3_600_000 + 61_500), "01:01:02");
    }
}
