//! Statistics (SPEC §9, seed 001 §7): what is counted, per local day, and the
//! file that keeps it.
//!
//! smtpd tallies each session's events in a [`Counts`] and sends them to the
//! router in one `request=count` when the session ends
//! ([`crate::ipc::route::RouterClient::count`]); the router adds them to the
//! current local day ([`Day::today`]) and keeps the days in
//! `process.state_dir/stats` ([`FILE`]). `postern stats` reads them back and
//! sums them per ISO week ([`Day::iso_week`]).
//!
//! The counters ([`Counter`], stable names used on the wire, in the file, in
//! `postern stats --json` and in the metrics):
//!
//! | name | counts |
//! |---|---|
//! | `connections` | client TCP connections accepted (refused ones too) |
//! | `forwarded.domain`, `forwarded.ip-addr`, `forwarded.auth` | backend connections opened for a client, by route cause (the seed's `smtp connection forwarded … using …` line) |
//! | `relay_denied` | recipients refused with `554 5.7.1 Relaying denied` |
//! | `rejected.<kind>` | refusals by kind ([`Rejection`]): `limit`, `syntax`, `smuggling`; `access`, `dnsbl`, `restriction` are reserved for the anti-spam policy and stay 0 until it exists |
//! | `greylisted`, `greylist_passed` | reserved for greylisting; 0 until it exists |
//! | `messages`, `bytes` | messages a backend accepted (2xx after DATA), and their body sizes |
//!
//! The spam rate ([`Counts::spam_rate`]) is `refused / (refused + messages)`,
//! where `refused` is `relay_denied` plus every `rejected.<kind>`: each refused
//! recipient or connection stands for one refused mail, as in Postfix log
//! summaries. Greylisting is left out: a greylisted sender that comes back is
//! counted in `messages`.
//!
//! File format (text, one line per local day, sorted; counters that are 0 are
//! left out; names are kept even when this version does not know them):
//!
//! ```text
//! postern-stats 1
//! 2026-01-05 connections=12 forwarded.domain=3 relay_denied=1 messages=3 bytes=4567
//! 2026-01-06 connections=2 rejected.limit=1
//! ```
//!
//! It is written durably (temporary file, fsync, rename, directory fsync);
//! days older than [`KEEP_DAYS`] are pruned. The router's `request=stats`
//! answers with the same text as its body.

use std::collections::BTreeMap;
use std::path::Path;

use crate::ipc::route::Cause;
pub use crate::runtime::time::{Day, Week};

/// Name of the statistics file in `process.state_dir`.
pub const FILE: &str = "stats";
/// First line of the file.
pub const HEADER: &str = "postern-stats 1";
/// Days kept: a little over a year, so that a week can be compared with the
/// same week a year before.
pub const KEEP_DAYS: i64 = 400;

/// Why a client, a recipient or a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Over a connection limit (`421 4.7.0`).
    Limit,
    /// Closed for protocol violations: too many errors (`421 4.7.0`), content
    /// pipelined behind DATA (`554 5.5.0`).
    Syntax,
    /// A message with a bare CR or LF, or a NUL, in its body (`550 5.5.2`,
    /// SMTP smuggling).
    Smuggling,
    /// A recipient refused by a reject entry of the access lists (`554 5.7.1`).
    Access,
    /// A recipient refused because the client or the sender's domain is in a DNS blocklist.
    Dnsbl,
    /// A recipient refused by a Postfix-style restriction (HELO, FQDN, unknown domain, pipelining).
    Restriction,
}

impl Rejection {
    /// Every kind, in display order.
    pub const ALL: [Rejection; 6] = [
        Rejection::Limit,
        Rejection::Syntax,
        Rejection::Smuggling,
        Rejection::Access,
        Rejection::Dnsbl,
        Rejection::Restriction,
    ];

    /// The kind's name (`rejected.<name>`, the metrics' `kind` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Limit => "limit",
            Rejection::Syntax => "syntax",
            Rejection::Smuggling => "smuggling",
            Rejection::Access => "access",
            Rejection::Dnsbl => "dnsbl",
            Rejection::Restriction => "restriction",
        }
    }

    /// The kind of a name ([`Rejection::as_str`]).
    pub fn parse(name: &str) -> Option<Rejection> {
        Rejection::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Every route cause, in display order.
pub const CAUSES: [Cause; 3] = [Cause::Domain, Cause::IpAddr, Cause::Auth];

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Client connections accepted.
    Connections,
    /// Backend connections opened for a client, by cause.
    Forwarded(Cause),
    /// Recipients refused: relaying denied.
    RelayDenied,
    /// Refusals by kind.
    Rejected(Rejection),
    /// Recipients greylisted (`451 4.7.1`).
    Greylisted,
    /// Passed greylisting (reserved).
    GreylistPassed,
    /// Messages a backend accepted.
    Messages,
    /// Bytes of the messages a backend accepted.
    Bytes,
}

impl Counter {
    /// Every counter, in display order.
    pub const ALL: [Counter; 15] = [
        Counter::Connections,
        Counter::Forwarded(CAUSES[0]),
        Counter::Forwarded(CAUSES[1]),
        Counter::Forwarded(CAUSES[2]),
        Counter::RelayDenied,
        Counter::Rejected(Rejection::ALL[0]),
        Counter::Rejected(Rejection::ALL[1]),
        Counter::Rejected(Rejection::ALL[2]),
        Counter::Rejected(Rejection::ALL[3]),
        Counter::Rejected(Rejection::ALL[4]),
        Counter::Rejected(Rejection::ALL[5]),
        Counter::Greylisted,
        Counter::GreylistPassed,
        Counter::Messages,
        Counter::Bytes,
    ];

    /// The stable name (wire, file, JSON keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Connections => "connections",
            Counter::Forwarded(Cause::Domain) => "forwarded.domain",
            Counter::Forwarded(Cause::IpAddr) => "forwarded.ip-addr",
            Counter::Forwarded(Cause::Auth) => "forwarded.auth",
            Counter::RelayDenied => "relay_denied",
            Counter::Rejected(Rejection::Limit) => "rejected.limit",
            Counter::Rejected(Rejection::Syntax) => "rejected.syntax",
            Counter::Rejected(Rejection::Smuggling) => "rejected.smuggling",
            Counter::Rejected(Rejection::Access) => "rejected.access",
            Counter::Rejected(Rejection::Dnsbl) => "rejected.dnsbl",
            Counter::Rejected(Rejection::Restriction) => "rejected.restriction",
            Counter::Greylisted => "greylisted",
            Counter::GreylistPassed => "greylist_passed",
            Counter::Messages => "messages",
            Counter::Bytes => "bytes",
        }
    }

    /// Its place in [`Counter::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Counter::Connections => 0,
            Counter::Forwarded(Cause::Domain) => 1,
            Counter::Forwarded(Cause::IpAddr) => 2,
            Counter::Forwarded(Cause::Auth) => 3,
            Counter::RelayDenied => 4,
            Counter::Rejected(Rejection::Limit) => 5,
            Counter::Rejected(Rejection::Syntax) => 6,
            Counter::Rejected(Rejection::Smuggling) => 7,
            Counter::Rejected(Rejection::Access) => 8,
            Counter::Rejected(Rejection::Dnsbl) => 9,
            Counter::Rejected(Rejection::Restriction) => 10,
            Counter::Greylisted => 11,
            Counter::GreylistPassed => 12,
            Counter::Messages => 13,
            Counter::Bytes => 14,
        }
    }

    /// The counter of a known name (the router parses every session's
    /// goodbye with this: no allocation).
    pub fn parse(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

/// The size of greylisting's pending list on a day (at its last purge,
/// hourly): a level kept per day (seed 001 §7.3), not summed into weeks.
pub const PENDING_SIZE: &str = "greylist.pending_size";
/// Likewise for the auto-whitelist.
pub const PASSED_SIZE: &str = "greylist.passed_size";

/// Counter values by name; absent means 0.
///
/// The known counters ([`Counter::ALL`]) are an array: a session counts
/// without allocating (a map's first node was 368 bytes in every idle
/// session). Other names — the greylist's levels — go in a map, boxed
/// (8 bytes where there is none, not an empty map's 24).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    known: [u64; Counter::ALL.len()],
    #[allow(clippy::box_collection)] // 8 bytes in every session, not 24
    other: Option<Box<BTreeMap<String, u64>>>,
}

/// Indexes into [`Counter::ALL`] in the order of the counters' names.
const BY_NAME: [usize; Counter::ALL.len()] = [14, 0, 3, 1, 2, 12, 11, 13, 8, 9, 5, 10, 7, 6, 4];

impl Counts {
    /// Adds `n` to a counter.
    pub fn add(&mut self, c: Counter, n: u64) {
        let v = &mut self.known[c.index()];
        *v = v.saturating_add(n);
    }

    /// Sets a value by name, replacing what it was (the greylist's list
    /// sizes, [`PENDING_SIZE`] and [`PASSED_SIZE`], which are levels, not
    /// counts).
    pub fn set_named(&mut self, name: &str, n: u64) {
        match Counter::parse(name) {
            Some(c) => self.known[c.index()] = n,
            None => {
                self.other
                    .get_or_insert_with(Default::default)
                    .insert(name.to_string(), n);
            }
        }
    }

    /// A value by name (0 when absent).
    pub fn get_named(&self, name: &str) -> u64 {
        match Counter::parse(name) {
            Some(c) => self.get(c),
            None => self
                .other
                .as_ref()
                .and_then(|o| o.get(name))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Adds `n` to a counter by name (the name is not checked).
    pub fn add_named(&mut self, name: &str, n: u64) {
        if n == 0 {
            return;
        }
        match Counter::parse(name) {
            Some(c) => self.add(c, n),
            None => {
                let v = self
                    .other
                    .get_or_insert_with(Default::default)
                    .entry(name.to_string())
                    .or_insert(0);
                *v = v.saturating_add(n);
            }
        }
    }

    /// A counter's value.
    pub fn get(&self, c: Counter) -> u64 {
        self.known[c.index()]
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (mine, theirs) in self.known.iter_mut().zip(other.known) {
            *mine = mine.saturating_add(theirs);
        }
        for (name, n) in other.other.iter().flat_map(|o| o.iter()) {
            self.add_named(name, *n);
        }
    }

    /// True when every counter is 0.
    pub fn is_empty(&self) -> bool {
        self.known.iter().all(|&v| v == 0) && self.other.as_ref().is_none_or(|o| o.is_empty())
    }

    /// Every non-zero counter by name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        let mut known = BY_NAME
            .iter()
            .filter(|&&i| self.known[i] != 0)
            .map(|&i| (Counter::ALL[i].as_str(), self.known[i]))
            .peekable();
        let mut other = self
            .other
            .iter()
            .flat_map(|o| o.iter())
            .map(|(k, v)| (k.as_str(), *v))
            .peekable();
        std::iter::from_fn(move || match (known.peek(), other.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => other.next(),
            (Some(_), _) => known.next(),
            (None, _) => other.next(),
        })
    }

    /// Every rejection, whatever its kind.
    pub fn rejected(&self) -> u64 {
        Rejection::ALL
            .iter()
            .map(|r| self.get(Counter::Rejected(*r)))
            .fold(0, u64::saturating_add)
    }

    /// Refused mails: relaying denied plus every rejection.
    pub fn refused(&self) -> u64 {
        self.get(Counter::RelayDenied)
            .saturating_add(self.rejected())
    }

    /// `refused / (refused + messages)`, or `None` when both are 0.
    pub fn spam_rate(&self) -> Option<f64> {
        let refused = self.refused();
        let total = refused.saturating_add(self.get(Counter::Messages));
        (total > 0).then(|| refused as f64 / total as f64)
    }
}

/// Why a statistics file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// The text is not in the format above.
    #[error("line {0}: {1}")]
    Format(usize, String),
}

/// Counts per local day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// The days that have counts.
    pub days: BTreeMap<Day, Counts>,
}

impl Stats {
    /// Adds `counts` to `day`.
    pub fn add(&mut self, day: Day, counts: &Counts) {
        if !counts.is_empty() {
            self.days.entry(day).or_default().merge(counts);
        }
    }

    /// Forgets the days more than [`KEEP_DAYS`] before `today`; returns how many.
    pub fn prune(&mut self, today: Day) -> usize {
        let oldest = today.plus(-KEEP_DAYS);
        let before = self.days.len();
        self.days.retain(|d, _| *d >= oldest);
        before - self.days.len()
    }

    /// The sum of the days from `first` to `last`, both included.
    pub fn sum(&self, first: Day, last: Day) -> Counts {
        let mut total = Counts::default();
        for (_, c) in self.days.range(first..=last) {
            total.merge(c);
        }
        total
    }

    /// The sum of every day kept.
    pub fn total(&self) -> Counts {
        let mut total = Counts::default();
        for c in self.days.values() {
            total.merge(c);
        }
        total
    }

    /// The file's text.
    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for (day, counts) in &self.days {
            if counts.is_empty() {
                continue;
            }
            out.push_str(&day.to_string());
            for (name, n) in counts.iter() {
                out.push_str(&format!(" {name}={n}"));
            }
            out.push('\n');
        }
        out
    }

    /// Parses the file's text. Blank lines and `#` comments are ignored; a
    /// date given twice is summed.
    pub fn decode(text: &str) -> Result<Stats, StatsError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, first)) if first.trim_end() == HEADER => {}
            _ => {
                return Err(StatsError::Format(
                    1,
                    format!("not a statistics file: the first line must be {HEADER:?}"),
                ))
            }
        }
        let mut stats = Stats::default();
        for (i, line) in lines {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_ascii_whitespace();
            let date = words.next().unwrap_or("");
            let day = Day::parse(date).ok_or_else(|| {
                StatsError::Format(n, format!("{date:?} is not a YYYY-MM-DD date"))
            })?;
            let mut counts = Counts::default();
            for w in words {
                let (name, value) = w
                    .split_once('=')
                    .ok_or_else(|| StatsError::Format(n, format!("{w:?} is not name=value")))?;
                let good_name = !name.is_empty()
                    && name.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    });
                let value: u64 =
                    value.parse().ok().filter(|_| good_name).ok_or_else(|| {
                        StatsError::Format(n, format!("{w:?} is not name=number"))
                    })?;
                counts.add_named(name, value);
            }
            stats.add(day, &counts);
        }
        Ok(stats)
    }

    /// Reads `state_dir/stats`; a missing file is empty statistics.
    pub fn load(state_dir: &Path) -> Result<Stats, StatsError> {
        let path = state_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Stats::decode(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stats::default()),
            Err(e) => Err(StatsError::Io(path.display().to_string(), e)),
        }
    }

    /// Writes `state_dir/stats` durably ([`crate::runtime::durable::write`]): a crash
    /// leaves either the old file or the new one, never half of one.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        crate::runtime::durable::write(&state_dir.join(FILE), self.encode().as_bytes())
    }
}

/// One row of the synthesis: a week, a day, or the total.
pub struct Row {
    /// The ISO week (`2026-W49`), the date, or `total`.
    pub label: String,
    /// Its first day.
    pub from: Day,
    /// Its last day.
    pub to: Day,
    /// The counts of those days.
    pub counts: Counts,
}

/// The weeks asked for, their total, and the days with counts among them.
pub struct Report {
    /// The local day it was made.
    pub today: Day,
    /// The weeks, oldest first; the last is the current week.
    pub weeks: Vec<Row>,
    /// The weeks' total.
    pub total: Row,
    /// The days with counts among them, oldest first.
    pub days: Vec<Row>,
}

impl Report {
    /// The last `weeks` ISO weeks of `stats` (the current one last), as of `today`.
    pub fn new(stats: &Stats, today: Day, weeks: i64) -> Report {
        let this_monday = today.monday();
        let rows: Vec<Row> = (0..weeks)
            .rev()
            .map(|i| {
                let from = this_monday.plus(-7 * i);
                let to = from.plus(6);
                Row {
                    label: from.iso_week().to_string(),
                    from,
                    to,
                    counts: stats.sum(from, to),
                }
            })
            .collect();
        let first = this_monday.plus(-7 * (weeks - 1));
        let last = this_monday.plus(6);
        let days = stats
            .days
            .range(first..=last)
            .map(|(d, c)| Row {
                label: d.to_string(),
                from: *d,
                to: *d,
                counts: c.clone(),
            })
            .collect();
        Report {
            today,
            total: Row {
                label: "total".into(),
                from: first,
                to: last,
                counts: stats.sum(first, last),
            },
            weeks: rows,
            days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Day {
        Day::parse(s).expect("valid date")
    }

    #[test]
    fn counter_names_follow_their_kind_and_parse_back() {
        for c in Counter::ALL {
            let expected = match c {
                Counter::Forwarded(cause) => format!("forwarded.{}", cause.as_str()),
                Counter::Rejected(r) => format!("rejected.{}", r.as_str()),
                _ => c.as_str().to_string(),
            };
            assert_eq!(c.as_str(), expected);
            assert_eq!(Counter::parse(c.as_str()), Some(c));
            assert_eq!(Counter::ALL[c.index()], c, "index() is the place in ALL");
        }
        // BY_NAME: every counter once, in the order of the names.
        let names: Vec<&str> = BY_NAME.iter().map(|&i| Counter::ALL[i].as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn counts_iterate_by_name_with_the_other_names_merged_in() {
        let mut c = Counts::default();
        c.add(Counter::Bytes, 10);
        c.add(Counter::Messages, 1);
        c.add_named("rejected.dnsbl", 2);
        c.set_named(PENDING_SIZE, 4);
        c.set_named(PASSED_SIZE, 0);
        c.add_named("zz.other", 3);
        let got: Vec<(&str, u64)> = c.iter().collect();
        assert_eq!(
            got,
            [
                ("bytes", 10),
                (PASSED_SIZE, 0),
                (PENDING_SIZE, 4),
                ("messages", 1),
                ("rejected.dnsbl", 2),
                ("zz.other", 3)
            ]
        );
        assert_eq!(c.get_named("rejected.dnsbl"), 2);
        assert_eq!(c.get_named(PENDING_SIZE), 4);
        let mut twice = c.clone();
        twice.merge(&c);
        assert_eq!(twice.get(Counter::Bytes), 20);
        assert_eq!(twice.get_named("zz.other"), 6);
        assert!(!c.is_empty());
        assert!(Counts::default().is_empty());
    }

    #[test]
    fn counts_and_spam_rate() {
        let mut c = Counts::default();
        assert_eq!(c.spam_rate(), None);
        c.add(Counter::Messages, 5);
        c.add(Counter::RelayDenied, 1);
        c.add(Counter::Rejected(Rejection::Limit), 1);
        c.add(Counter::Rejected(Rejection::Smuggling), 1);
        c.add(Counter::Greylisted, 7);
        c.add(Counter::Bytes, 0);
        assert_eq!(c.refused(), 3);
        assert_eq!(c.spam_rate(), Some(3.0 / 8.0));
        assert_eq!(c.iter().count(), 5, "zeros are not kept");
        for counter in Counter::ALL {
            assert_eq!(Counter::parse(counter.as_str()), Some(counter));
        }
        assert_eq!(Counter::ALL.len(), 15);
        assert_eq!(Counter::parse("nonsense"), None);
    }

    /// Golden text: what the file looks like, and that it reads back.
    #[test]
    fn file_format() {
        let mut s = Stats::default();
        let mut a = Counts::default();
        a.add(Counter::Connections, 12);
        a.add(Counter::Forwarded(Cause::Domain), 3);
        a.add(Counter::Forwarded(Cause::IpAddr), 1);
        a.add(Counter::RelayDenied, 1);
        a.add(Counter::Messages, 4);
        a.add(Counter::Bytes, 4567);
        s.add(d("2026-01-05"), &a);
        let mut b = Counts::default();
        b.add(Counter::Connections, 2);
        b.add(Counter::Rejected(Rejection::Limit), 1);
        s.add(d("2026-01-06"), &b);
        s.add(d("2026-01-07"), &Counts::default());
        let text = s.encode();
        assert_eq!(
            text,
            "postern-stats 1\n\
             2026-01-05 bytes=4567 connections=12 forwarded.domain=3 forwarded.ip-addr=1 messages=4 relay_denied=1\n\
             2026-01-06 connections=2 rejected.limit=1\n"
        );
        assert_eq!(Stats::decode(&text).expect("decodes"), s);
        // Comments, blank lines, a repeated date (summed), a future counter (kept).
        let more = format!("{text}\n# note\n2026-01-06 connections=1 rejected.future=2\n");
        let back = Stats::decode(&more).expect("decodes");
        let day = &back.days[&d("2026-01-06")];
        assert_eq!(day.get(Counter::Connections), 3);
        assert!(day.iter().any(|(n, v)| n == "rejected.future" && v == 2));
        assert_eq!(
            back.sum(d("2026-01-01"), d("2026-01-31"))
                .get(Counter::Connections),
            15
        );
        assert_eq!(
            back.sum(d("2026-01-06"), d("2026-01-06"))
                .get(Counter::Messages),
            0
        );
        for (bad, line) in [
            ("2026-01-05 connections=1\n", 1),
            ("postern-stats 1\n2026-13-05 connections=1\n", 2),
            ("postern-stats 1\n2026-01-05 connections\n", 2),
            ("postern-stats 1\n\n2026-01-05 connections=-1\n", 3),
            ("postern-stats 1\n2026-01-05 Conn=1\n", 2),
        ] {
            match Stats::decode(bad) {
                Err(StatsError::Format(n, _)) => assert_eq!(n, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prune_and_durable_save() {
        let dir = std::env::temp_dir().join(format!("postern-stats-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert_eq!(Stats::load(&dir).expect("no file yet"), Stats::default());
        let today = d("2026-06-01");
        let mut s = Stats::default();
        let mut one = Counts::default();
        one.add(Counter::Connections, 1);
        s.add(today.plus(-KEEP_DAYS - 1), &one);
        s.add(today.plus(-KEEP_DAYS), &one);
        s.add(today, &one);
        assert_eq!(s.prune(today), 1);
        assert_eq!(s.days.len(), 2);
        s.save(&dir).expect("save");
        assert_eq!(Stats::load(&dir).expect("load"), s);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from(FILE)],
            "no temporary file left"
        );
        std::fs::write(dir.join(FILE), "garbage\n").expect("write");
        assert!(matches!(Stats::load(&dir), Err(StatsError::Format(1, _))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
