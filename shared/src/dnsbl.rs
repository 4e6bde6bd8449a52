//! DNS blocklists (SPEC §8): zones, their filters, query names, what an
//! answer means, and when a zone is trusted. Sans-IO: the resolver is
//! elsewhere, so everything here is tested with answers written by hand.
//!
//! A zone is written as Postfix writes it, `zone[=filter[=reply-name]]`:
//! `zen.spamhaus.org=127.0.0.[2..11]`, or with a key hidden from replies,
//! `KEY.zen.dq.spamhaus.net=127.0.0.[2..11]=zen.spamhaus.org`. A filter has
//! four octets, each a number or a bracketed list of numbers and `a..b`
//! ranges separated by `;` (`127.0.[0..1].[2;4..11]`); the default is
//! `127.0.0.[2..254]`.
//!
//! An answer counts as a listing only when it passes the filter. Some
//! answers are not about the client at all but about the query: Spamhaus
//! answers `127.255.255.0/24` to refused or excessive queries and
//! `127.0.1.255` to an IP asked of a domain list, and a zone whose domain
//! has expired answers everything with some public address. Such an *error
//! answer* never lists anyone and makes the zone degraded; so do timeouts
//! and SERVFAIL. A zone leaves use only when its RFC 5782 self-test fails
//! (`127.0.0.2` must be listed, `127.0.0.1` must not, every answer in
//! 127/8; `TEST` and `INVALID` for domain zones), or for 20 minutes after
//! 10 timeouts within 20 minutes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use crate::net::unmap;

/// What a zone is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The client's address (`dnsbl`).
    Client,
    /// The sender's domain (`rhsbl`).
    SenderDomain,
}

/// One octet of a filter: the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Octet(Vec<(u8, u8)>);

impl Octet {
    fn parse(s: &str) -> Option<Octet> {
        let list = match s.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']')?,
            None => {
                let n = s.parse().ok()?;
                return Some(Octet(vec![(n, n)]));
            }
        };
        let mut ranges = Vec::new();
        for item in list.split(';') {
            let (a, b) = match item.split_once("..") {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let n = item.parse().ok()?;
                    (n, n)
                }
            };
            if a > b {
                return None;
            }
            ranges.push((a, b));
        }
        (!ranges.is_empty()).then_some(Octet(ranges))
    }

    fn allows(&self, v: u8) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&v))
    }
}

/// Which answers count as a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter([Octet; 4]);

impl Filter {
    /// Parses Postfix's filter syntax.
    pub fn parse(s: &str) -> Option<Filter> {
        // Octets are separated by dots outside brackets (`[2..11]` has its own).
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0u8, 0);
        for (i, c) in s.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.checked_sub(1)?,
                '.' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        let [a, b, c, d] = parts.as_slice() else {
            return None;
        };
        Some(Filter([
            Octet::parse(a)?,
            Octet::parse(b)?,
            Octet::parse(c)?,
            Octet::parse(d)?,
        ]))
    }

    /// `127.0.0.[2..254]`: every RFC 5782 listing code.
    pub fn default_listing() -> Filter {
        Filter::parse("127.0.0.[2..254]").expect("a valid filter")
    }

    /// Whether `a` passes.
    pub fn matches(&self, a: Ipv4Addr) -> bool {
        self.0.iter().zip(a.octets()).all(|(o, v)| o.allows(v))
    }
}

/// One configured zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone asked, lower case, without a trailing dot.
    pub name: String,
    /// The answers that list.
    pub filter: Filter,
    /// The name replies and logs give (the zone's own unless hidden).
    pub reply_name: String,
    /// Client addresses or sender domains.
    pub kind: Kind,
}

impl Zone {
    /// Parses `zone[=filter[=reply-name]]`.
    pub fn parse(spec: &str, kind: Kind) -> Result<Zone, String> {
        let mut parts = spec.trim().splitn(3, '=');
        let name = parts.next().unwrap_or_default();
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        if !crate::config::is_hostname(&name) || !name.contains('.') {
            return Err(format!(
                "{spec:?}: {name:?} is not a zone name such as zen.spamhaus.org"
            ));
        }
        let filter = match parts.next() {
            None | Some("") => Filter::default_listing(),
            Some(f) => Filter::parse(f).ok_or_else(|| {
                format!("{spec:?}: {f:?} is not a filter such as 127.0.0.[2..11]")
            })?,
        };
        let reply_name = match parts.next() {
            None | Some("") => name.clone(),
            Some(r) if !crate::config::is_hostname(r.strip_suffix('.').unwrap_or(r)) => {
                return Err(format!(
                    "{spec:?}: the reply name {r:?} is not a name such as zen.spamhaus.org"
                ));
            }
            Some(r) => r.to_string(),
        };
        Ok(Zone {
            name,
            filter,
            reply_name,
            kind,
        })
    }

    /// The name to look up for a client address: reversed octets, or
    /// 32 reversed nibbles for IPv6, always fully qualified (a trailing
    /// dot: no search domain may be appended). IPv4-mapped addresses are
    /// looked up as IPv4.
    pub fn client_query(&self, ip: IpAddr) -> String {
        let mut q = String::with_capacity(80);
        match unmap(ip) {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                let _ = write!(q, "{d}.{c}.{b}.{a}.");
            }
            IpAddr::V6(v6) => {
                for byte in v6.octets().iter().rev() {
                    let _ = write!(q, "{:x}.{:x}.", byte & 0xf, byte >> 4);
                }
            }
        }
        q.push_str(&self.name);
        q.push('.');
        q
    }

    /// The name to look up for a sender domain, or `None` when there is
    /// nothing to ask (no domain, an address literal).
    pub fn domain_query(&self, domain: &str) -> Option<String> {
        let d = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        if d.is_empty() || d.starts_with('[') || !crate::config::is_hostname(&d) {
            return None;
        }
        Some(format!("{d}.{}.", self.name))
    }

    /// What the A records of a query say.
    pub fn classify(&self, answers: &[Ipv4Addr]) -> Outcome {
        if let Some(&bad) = answers.iter().find(|a| is_error_answer(**a)) {
            return Outcome::ErrorAnswer(bad);
        }
        match answers.iter().find(|a| self.filter.matches(**a)) {
            Some(&a) => Outcome::Listed(a),
            None => Outcome::NotListed,
        }
    }
}

/// An answer about the query rather than the client: Spamhaus's error range
/// `127.255.255.0/24`, its `127.0.1.255`, or anything outside 127/8 (a
/// parked or hijacked zone, a rewriting resolver).
pub fn is_error_answer(a: Ipv4Addr) -> bool {
    let [o1, o2, o3, o4] = a.octets();
    o1 != 127 || (o2 == 255 && o3 == 255) || (o2, o3, o4) == (0, 1, 255)
}

/// What one lookup says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Listed: the answer that passed the filter.
    Listed(Ipv4Addr),
    /// Not listed (NXDOMAIN, or answers outside the filter).
    NotListed,
    /// An error answer: not listed, the zone is degraded.
    ErrorAnswer(Ipv4Addr),
    /// No answer in time: not listed.
    Timeout,
    /// SERVFAIL or any other failure: not listed.
    Failed,
}

/// Timeouts within [`TIMEOUT_WINDOW`] that take a zone out of use.
pub const TIMEOUTS_TO_DISABLE: usize = 10;
/// The window in which timeouts add up.
pub const TIMEOUT_WINDOW: Duration = Duration::from_secs(20 * 60);
/// How long a zone that keeps timing out is left alone.
pub const DISABLED_FOR: Duration = Duration::from_secs(20 * 60);
/// How often a zone's self-test runs.
pub const SELF_TEST_EVERY: Duration = Duration::from_secs(30 * 60);
/// How long a zone stays degraded after its last error.
pub const DEGRADED_FOR: Duration = Duration::from_secs(10 * 60);
/// Degraded zones are logged at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a zone is out of use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disabled {
    /// Its last self-test failed (the reason), until one passes.
    SelfTest(String),
    /// It timed out too often, until then.
    Timeouts(Instant),
}

/// A zone's standing: in use or not, degraded or not.
#[derive(Debug, Default)]
pub struct Health {
    disabled: Option<Disabled>,
    timeouts: VecDeque<Instant>,
    /// The last error (error answer, timeout, failure) and what it was.
    last_error: Option<(Instant, String)>,
    last_warning: Option<Instant>,
}

impl Health {
    /// Whether lookups are made in this zone at `now`.
    pub fn in_use(&mut self, now: Instant) -> bool {
        if let Some(Disabled::Timeouts(until)) = self.disabled {
            if now >= until {
                self.disabled = None;
                self.timeouts.clear();
            }
        }
        self.disabled.is_none()
    }

    /// Why the zone is out of use, if it is.
    pub fn disabled(&self) -> Option<&Disabled> {
        self.disabled.as_ref()
    }

    /// The last error when it is recent enough to call the zone degraded.
    pub fn degraded(&self, now: Instant) -> Option<&str> {
        self.last_error
            .as_ref()
            .filter(|(at, _)| now.duration_since(*at) < DEGRADED_FOR)
            .map(|(_, why)| why.as_str())
    }

    /// Records a lookup's outcome. Returns a warning to log (at most one
    /// per [`WARN_EVERY`]) when the outcome degrades the zone.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> Option<String> {
        let why = match outcome {
            Outcome::Listed(_) | Outcome::NotListed => return None,
            Outcome::ErrorAnswer(a) => format!(
                "error answer {a} (not a listing: the query was refused, or the zone is broken)"
            ),
            Outcome::Failed => "lookup failed (SERVFAIL or unreachable)".to_string(),
            Outcome::Timeout => {
                self.timeouts.push_back(now);
                while self
                    .timeouts
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > TIMEOUT_WINDOW)
                {
                    self.timeouts.pop_front();
                }
                if self.timeouts.len() >= TIMEOUTS_TO_DISABLE && self.disabled.is_none() {
                    self.disabled = Some(Disabled::Timeouts(now + DISABLED_FOR));
                    self.last_error = Some((now, "timed out too often".into()));
                    self.last_warning = Some(now);
                    return Some(format!(
                        "{TIMEOUTS_TO_DISABLE} timeouts within {} minutes: not used for {} minutes",
                        TIMEOUT_WINDOW.as_secs() / 60,
                        DISABLED_FOR.as_secs() / 60
                    ));
                }
                "lookup timed out".to_string()
            }
        };
        self.last_error = Some((now, why.clone()));
        let due = self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            self.last_warning = Some(now);
            Some(format!("degraded: {why}; never counted as a listing"))
        } else {
            None
        }
    }

    /// Records a self-test: `Ok` puts the zone (back) in use, `Err(why)`
    /// takes it out until one passes. Inconclusive tests (timeouts) should
    /// not be recorded: a resolver's hiccup is not a broken zone.
    pub fn self_tested(&mut self, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if matches!(self.disabled, Some(Disabled::SelfTest(_))) {
                    self.disabled = None;
                }
            }
            Err(why) => self.disabled = Some(Disabled::SelfTest(why)),
        }
    }
}

/// The RFC 5782 self-test's verdict from the outcomes of its two queries
/// (the test entry that must be listed, the one that must not). `None`:
/// inconclusive (a timeout or failure), try again later.
pub fn self_test(listed: Outcome, not_listed: Outcome) -> Option<Result<(), String>> {
    match (listed, not_listed) {
        (Outcome::Timeout | Outcome::Failed, _) | (_, Outcome::Timeout | Outcome::Failed) => None,
        (Outcome::ErrorAnswer(a), _) | (_, Outcome::ErrorAnswer(a)) => Some(Err(format!(
            "self-test answered {a}: the zone refuses this resolver or is not a blocklist"
        ))),
        (Outcome::Listed(_), Outcome::NotListed) => Some(Ok(())),
        (Outcome::NotListed, _) => Some(Err(
            "self-test: the test entry is not listed (a dead or mistyped zone)".into(),
        )),
        (_, Outcome::Listed(a)) => Some(Err(format!(
            "self-test: the entry that must never be listed is ({a}): the zone lists everything"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn zones_and_filters_parse_as_postfix_writes_them() {
        let z = Zone::parse("zen.spamhaus.org=127.0.0.[2..11]", Kind::Client).expect("zone");
        assert!(z.filter.matches(ip("127.0.0.2")) && z.filter.matches(ip("127.0.0.11")));
        assert!(!z.filter.matches(ip("127.0.0.12")) && !z.filter.matches(ip("127.0.1.2")));
        let z = Zone::parse(
            "Key123.ZEN.dq.spamhaus.net.=127.0.[0..1].[2;4..6]=zen.spamhaus.org",
            Kind::Client,
        )
        .expect("zone");
        assert_eq!(z.name, "key123.zen.dq.spamhaus.net");
        assert_eq!(z.reply_name, "zen.spamhaus.org");
        assert!(z.filter.matches(ip("127.0.1.5")) && !z.filter.matches(ip("127.0.1.3")));
        let z = Zone::parse("bl.example.net", Kind::Client).expect("zone");
        assert_eq!(z.filter, Filter::default_listing());
        assert_eq!(z.reply_name, "bl.example.net");
        for bad in [
            "",
            "nodots",
            "bl.example.net=127.0.0",
            "bl.example.net=127.0.0.[11..2]",
            "bl.example.net=127.0.0.[x]",
            "bl .example.net",
        ] {
            assert!(Zone::parse(bad, Kind::Client).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_names_are_fully_qualified() {
        let z = Zone::parse("zen.spamhaus.org", Kind::Client).expect("zone");
        assert_eq!(
            z.client_query("192.0.2.99".parse().expect("ip")),
            "99.2.0.192.zen.spamhaus.org."
        );
        assert_eq!(
            z.client_query("::ffff:192.0.2.99".parse().expect("ip")),
            "99.2.0.192.zen.spamhaus.org."
        );
        assert_eq!(
            z.client_query("2001:db8::1".parse().expect("ip")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org."
        );
        let d = Zone::parse("dbl.spamhaus.org=127.0.1.[2..99]", Kind::SenderDomain).expect("zone");
        assert_eq!(
            d.domain_query("Example.COM.").as_deref(),
            Some("example.com.dbl.spamhaus.org.")
        );
        assert_eq!(d.domain_query("[192.0.2.1]"), None);
        assert_eq!(d.domain_query(""), None);
    }

    #[test]
    fn error_answers_never_list() {
        let z = Zone::parse("zen.spamhaus.org=127.0.0.[2..11]", Kind::Client).expect("zone");
        assert_eq!(
            z.classify(&[ip("127.0.0.4"), ip("127.0.0.2")]),
            Outcome::Listed(ip("127.0.0.4"))
        );
        assert_eq!(z.classify(&[]), Outcome::NotListed);
        assert_eq!(z.classify(&[ip("127.0.0.100")]), Outcome::NotListed);
        for e in [
            "127.255.255.254",
            "127.255.255.255",
            "127.255.255.252",
            "127.0.1.255",
            "192.0.2.1",
            "8.8.8.8",
        ] {
            assert_eq!(z.classify(&[ip(e)]), Outcome::ErrorAnswer(ip(e)), "{e}");
            assert_eq!(
                z.classify(&[ip("127.0.0.2"), ip(e)]),
                Outcome::ErrorAnswer(ip(e)),
                "{e}"
            );
        }
        // Even a filter written to take everything keeps error answers out.
        let loose = Zone::parse(
            "bl.example.net=[0..255].[0..255].[0..255].[0..255]",
            Kind::Client,
        )
        .expect("zone");
        assert_eq!(
            loose.classify(&[ip("127.255.255.254")]),
            Outcome::ErrorAnswer(ip("127.255.255.254"))
        );
    }

    #[test]
    fn ten_timeouts_in_twenty_minutes_take_a_zone_out_for_twenty() {
        let t0 = Instant::now();
        let min = |m: u64| t0 + Duration::from_secs(60 * m);
        let mut spread = Health::default();
        for m in 0..9 {
            spread.record(Outcome::Timeout, min(m));
        }
        // The nine earlier ones have left the window: one timeout, in use.
        spread.record(Outcome::Timeout, min(30));
        assert!(spread.in_use(min(30)));

        let mut h = Health::default();
        for m in 0..9 {
            h.record(Outcome::Timeout, min(m));
            assert!(h.in_use(min(m)));
        }
        let warning = h.record(Outcome::Timeout, min(19));
        assert!(
            warning.is_some_and(|w| w.contains("not used for 20 minutes")),
            "the tenth within 20 minutes"
        );
        assert!(!h.in_use(min(20)));
        assert!(matches!(h.disabled(), Some(Disabled::Timeouts(_))));
        assert!(h.in_use(min(19) + DISABLED_FOR));
    }

    #[test]
    fn degraded_zones_stay_in_use_and_warn_once_a_minute() {
        let t0 = Instant::now();
        let mut h = Health::default();
        assert!(h
            .record(Outcome::ErrorAnswer(ip("127.255.255.254")), t0)
            .is_some());
        assert!(h
            .record(
                Outcome::ErrorAnswer(ip("127.255.255.254")),
                t0 + Duration::from_secs(30)
            )
            .is_none());
        assert!(h
            .record(Outcome::Failed, t0 + Duration::from_secs(61))
            .is_some());
        assert!(h.in_use(t0 + Duration::from_secs(61)));
        assert!(h.degraded(t0 + Duration::from_secs(62)).is_some());
        assert!(h
            .degraded(t0 + Duration::from_secs(61) + DEGRADED_FOR)
            .is_none());
        assert!(h.record(Outcome::NotListed, t0).is_none());
    }

    #[test]
    fn the_self_test_takes_a_broken_zone_out_until_it_passes() {
        let listed = Outcome::Listed(ip("127.0.0.2"));
        assert_eq!(self_test(listed, Outcome::NotListed), Some(Ok(())));
        assert_eq!(self_test(Outcome::Timeout, Outcome::NotListed), None);
        // A parked zone answers everything with a public address.
        let parked = Outcome::ErrorAnswer(ip("192.0.2.80"));
        assert!(matches!(self_test(parked, parked), Some(Err(_))));
        assert!(matches!(
            self_test(Outcome::NotListed, Outcome::NotListed),
            Some(Err(_))
        ));
        assert!(matches!(self_test(listed, listed), Some(Err(_))));
        let mut h = Health::default();
        let now = Instant::now();
        h.self_tested(Err("dead".into()));
        assert!(!h.in_use(now));
        h.self_tested(Ok(()));
        assert!(h.in_use(now));
    }
}
