//! Access lists (SPEC §8, seed 001 §8): entries that accept or reject mail
//! from the internet whatever the other policy checks say, by the client
//! (`connect`), the sender (`from`) or the recipient (`to`).
//!
//! This module is the data and its file; the router indexes the entries and
//! decides (`router/src/policy/access.rs`), the CLI and `postern check` read
//! and write the file through it.
//!
//! # Patterns
//! | method | pattern | matches |
//! |---|---|---|
//! | `connect` | `192.0.2.7`, `2001:db8::7` | that address |
//! | `connect` | `123.45` | an IPv4 prefix on octet boundaries (`123.45.0.0/16`) |
//! | `connect` | `192.0.2.0/24`, `2001:db8::/32` | a network |
//! | `connect` | `host.example.com` | the client's forward-confirmed reverse name, exactly |
//! | `connect` | `.example.com` | a forward-confirmed reverse name under `example.com` |
//! | `from`, `to` | `user@example.com` | that address |
//! | `from`, `to` | `user@` | that local part in any domain |
//! | `from`, `to` | `example.com` | any address of that domain |
//! | `from`, `to` | `.example.com` | any address of a domain under `example.com` |
//! | `from` | `<>` | the null sender |
//!
//! Addresses and names are compared without case, a trailing dot on a
//! domain ignored, a quoted local part unquoted; IPv4-mapped IPv6 clients
//! (`::ffff:192.0.2.7`) are their IPv4 address. A host pattern never
//! matches an unverified name: a client chooses its own reverse DNS.
//!
//! # The file
//! TOML, `[[accept]]` and `[[reject]]` tables with `method`, `pattern` and
//! the optional `comment`, `keep_until` (`YYYY-MM-DD`, a reminder: nothing
//! expires by itself), `added` (RFC 3339 time) and `added_by`. postern
//! writes it whole and atomically ([`AccessFile::save`]); an administrator
//! may edit it by hand, then reload. A bad entry is reported with its line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::{is_hostname, normalize_domain};
use crate::net::{unmap, IpNet};

/// What an entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Accept whatever blocklists and greylisting say (never past relay control).
    Accept,
    /// Refuse with `554 5.7.1`.
    Reject,
}

impl Action {
    /// The configuration and CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Reject => "reject",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "accept" => Ok(Action::Accept),
            "reject" => Ok(Action::Reject),
            _ => Err(format!("{s:?} is not accept or reject")),
        }
    }
}

/// What an entry looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// The client: its address or its forward-confirmed reverse name.
    Connect,
    /// The envelope sender.
    From,
    /// The envelope recipient.
    To,
}

impl Method {
    /// The configuration and CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::From => "from",
            Method::To => "to",
        }
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "connect" => Ok(Method::Connect),
            "from" => Ok(Method::From),
            "to" => Ok(Method::To),
            _ => Err(format!("{s:?} is not connect, from or to")),
        }
    }
}

/// A parsed pattern, normalised (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// An address or a network (octet prefixes become networks).
    Net(IpNet),
    /// A host name, matched against the verified client name exactly.
    Host(String),
    /// `.example.com`: names (connect) or address domains (from/to) under it.
    Under(String),
    /// `user@example.com`.
    Address(String),
    /// `user@`: that local part, any domain.
    Local(String),
    /// `example.com`: every address of that domain.
    Domain(String),
    /// `<>`: the null sender.
    Null,
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPattern(pub String);

impl Pattern {
    /// Parses `text` as a pattern of `method`; a pattern that could never
    /// match for that method (a network in a `from` entry, `<>` as a
    /// recipient) is refused.
    pub fn parse(method: Method, text: &str) -> Result<Pattern, BadPattern> {
        let t = text.trim();
        let bad = |why: &str| Err(BadPattern(format!("{text:?}: {why}")));
        if t.is_empty() {
            return bad("empty pattern");
        }
        if t.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return bad("a pattern has no spaces");
        }
        match method {
            Method::Connect => {
                if let Some(net) = ip_pattern(t) {
                    return Ok(Pattern::Net(net));
                }
                if t.contains(['@', '<', '>']) {
                    return bad("a connect entry takes an address, a network or a host name");
                }
                if t.contains(['/', ':']) || t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    return bad("not an IP address, an octet prefix such as 123.45, or a network");
                }
                let name = normalize_domain(t);
                match name.strip_prefix('.') {
                    Some(under) if is_hostname(under) => Ok(Pattern::Under(under.into())),
                    None if is_hostname(&name) => Ok(Pattern::Host(name)),
                    _ => bad("not a host name such as host.example.com or .example.com"),
                }
            }
            Method::From | Method::To => {
                if t == "<>" {
                    return if method == Method::From {
                        Ok(Pattern::Null)
                    } else {
                        bad("<> is the null sender: a recipient is never empty")
                    };
                }
                let t = t
                    .strip_prefix('<')
                    .and_then(|s| s.strip_suffix('>'))
                    .unwrap_or(t);
                match t.rsplit_once('@') {
                    Some((local, "")) => match local_key(local) {
                        Some(l) => Ok(Pattern::Local(l)),
                        None => bad("not a local part such as user@"),
                    },
                    Some((local, domain)) => match (local_key(local), domain_key(domain)) {
                        (Some(l), Some(d)) => Ok(Pattern::Address(format!("{l}@{d}"))),
                        _ => bad("not an address such as user@example.com"),
                    },
                    None => {
                        let name = normalize_domain(t);
                        match name.strip_prefix('.') {
                            Some(under) if is_hostname(under) => Ok(Pattern::Under(under.into())),
                            None if is_hostname(&name) && !is_dotted_number(&name) => {
                                Ok(Pattern::Domain(name))
                            }
                            _ => bad("not an address, user@, a domain or .domain"),
                        }
                    }
                }
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Net(n) if n.is_host() => write!(f, "{}", n.addr()),
            Pattern::Net(n) => write!(f, "{n}"),
            Pattern::Host(h) | Pattern::Domain(h) | Pattern::Address(h) => f.write_str(h),
            Pattern::Under(d) => write!(f, ".{d}"),
            Pattern::Local(l) => write!(f, "{l}@"),
            Pattern::Null => f.write_str("<>"),
        }
    }
}

/// An address, an octet prefix (`123.45` → `123.45.0.0/16`) or a network.
fn ip_pattern(t: &str) -> Option<IpNet> {
    if let Ok(net) = t.parse::<IpNet>() {
        return Some(net.normalized());
    }
    let octets: Vec<&str> = t.strip_suffix('.').unwrap_or(t).split('.').collect();
    if octets.is_empty() || octets.len() > 3 {
        return None;
    }
    let mut addr = [0u8; 4];
    for (slot, o) in addr.iter_mut().zip(&octets) {
        if o.is_empty() || o.len() > 3 || !o.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = o.parse().ok()?;
    }
    let prefix = 8 * octets.len() as u8;
    format!("{}/{prefix}", Ipv4Addr::from(addr)).parse().ok()
}

fn is_dotted_number(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// A local part as a key: unquoted when quoted, lower case. `None` for what
/// cannot be a local part (empty, `@` or spaces outside quotes).
pub fn local_key(local: &str) -> Option<String> {
    let unquoted = match local.strip_prefix('"').and_then(|q| q.strip_suffix('"')) {
        Some(body) => {
            let mut out = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next()? } else { c });
            }
            out
        }
        None if local.contains(['"', '\\', ' ', '@', '<', '>']) => return None,
        // The usual case: one copy, lower-cased as it is made.
        None => return (!local.is_empty() && local.len() <= 64).then(|| local.to_lowercase()),
    };
    (!unquoted.is_empty() && unquoted.len() <= 64).then(|| unquoted.to_lowercase())
}

/// A domain as a key: lower case, no trailing dot; `None` for what is not a
/// host name (address literals included: they never match a domain entry).
pub fn domain_key(domain: &str) -> Option<String> {
    let d = normalize_domain(domain);
    (is_hostname(&d) && !is_dotted_number(&d)).then_some(d)
}

/// One list entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Accept or reject.
    pub action: Action,
    /// What it looks at.
    pub method: Method,
    /// What it matches.
    pub pattern: Pattern,
    /// Why it is there (free text, one line).
    pub comment: String,
    /// A reminder: the entry may go after this date (`YYYY-MM-DD`); nothing
    /// removes it by itself.
    pub keep_until: Option<String>,
    /// When it was added (RFC 3339, UTC), if known.
    pub added: Option<String>,
    /// Who added it (`postern access add` records the user; the console its login).
    pub added_by: Option<String>,
}

impl Entry {
    /// Whether `keep_until` is before `today` (`YYYY-MM-DD`): due for review.
    pub fn expired(&self, today: &str) -> bool {
        self.keep_until.as_deref().is_some_and(|d| d < today)
    }

    /// The key that identifies an entry: no two share it.
    pub fn key(&self) -> (Action, Method, Pattern) {
        (self.action, self.method, self.pattern.clone())
    }
}

/// Whether `s` is a calendar date `YYYY-MM-DD` ([`crate::runtime::time::Day::parse`]).
pub fn is_date(s: &str) -> bool {
    crate::runtime::time::Day::parse(s).is_some()
}

/// The access file: every entry, accept list first, each in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessFile {
    /// The entries.
    pub entries: Vec<Entry>,
}

/// One entry as written in the file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    method: toml::Spanned<String>,
    pattern: toml::Spanned<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_until: Option<toml::Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    added_by: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    accept: Vec<RawEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reject: Vec<RawEntry>,
}

/// What was wrong with an access file: every problem, `line N: text`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct FileError(pub Vec<String>);

/// The header postern writes at the top of the file.
const HEADER: &str = "\
# postern access lists (postern access list|add|remove; `postern reload`
# after editing by hand). [[accept]] entries skip every other policy check
# (never relay control), [[reject]] entries refuse with 554; method =
# connect, from or to. keep_until is a reminder only: nothing expires by itself.
";

impl AccessFile {
    /// Parses the file's text; every bad entry is reported with its line.
    pub fn parse(text: &str) -> Result<AccessFile, FileError> {
        // Where each line starts: a span's line is a binary search, not a
        // count of the newlines before it (quadratic: 10,000 entries took
        // seconds of the router's time at each load).
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let line_of = |span: std::ops::Range<usize>| {
            line_starts.partition_point(|&start| start <= span.start.min(text.len()))
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(line_of)
                .map_or(String::new(), |l| format!("line {l}: "));
            FileError(vec![format!(
                "{line}{}",
                e.message().trim().replace('\n', " ")
            )])
        })?;
        let mut problems = Vec::new();
        let mut out = AccessFile::default();
        let mut seen = std::collections::HashMap::new();
        for (action, list) in [(Action::Accept, raw.accept), (Action::Reject, raw.reject)] {
            for r in list {
                let line = line_of(r.pattern.span());
                let method = match r.method.get_ref().parse::<Method>() {
                    Ok(m) => m,
                    Err(e) => {
                        problems.push(format!("line {}: method {e}", line_of(r.method.span())));
                        continue;
                    }
                };
                let pattern = match Pattern::parse(method, r.pattern.get_ref()) {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(format!("line {line}: pattern {e}"));
                        continue;
                    }
                };
                if let Some(k) = &r.keep_until {
                    if !is_date(k.get_ref()) {
                        problems.push(format!(
                            "line {}: keep_until {:?} is not a date such as 2027-01-31",
                            line_of(k.span()),
                            k.get_ref()
                        ));
                        continue;
                    }
                }
                if r.comment.contains(['\r', '\n']) {
                    problems.push(format!("line {line}: comment must be one line"));
                    continue;
                }
                let entry = Entry {
                    action,
                    method,
                    pattern,
                    comment: r.comment,
                    keep_until: r.keep_until.map(|k| k.into_inner()),
                    added: r.added,
                    added_by: r.added_by,
                };
                if let Some(first) = seen.insert(entry.key(), line) {
                    problems.push(format!(
                        "line {line}: {} {} {} is already at line {first}",
                        action.as_str(),
                        method.as_str(),
                        entry.pattern
                    ));
                    continue;
                }
                out.entries.push(entry);
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(FileError(problems))
        }
    }

    /// Reads `path`; a missing file is empty lists.
    pub fn load(path: &Path) -> Result<AccessFile, FileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => AccessFile::parse(&text).map_err(|e| {
                FileError(
                    e.0.into_iter()
                        .map(|p| format!("{}: {p}", path.display()))
                        .collect(),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccessFile::default()),
            Err(e) => Err(FileError(vec![format!(
                "{}: cannot read: {e}",
                path.display()
            )])),
        }
    }

    /// The file's text: the header, then `[[accept]]` and `[[reject]]` tables.
    pub fn to_text(&self) -> String {
        let raw = |e: &Entry| RawEntry {
            method: toml::Spanned::new(0..0, e.method.as_str().to_string()),
            pattern: toml::Spanned::new(0..0, e.pattern.to_string()),
            comment: e.comment.clone(),
            keep_until: e.keep_until.clone().map(|k| toml::Spanned::new(0..0, k)),
            added: e.added.clone(),
            added_by: e.added_by.clone(),
        };
        let of = |a: Action| {
            self.entries
                .iter()
                .filter(|e| e.action == a)
                .map(raw)
                .collect()
        };
        let file = RawFile {
            accept: of(Action::Accept),
            reject: of(Action::Reject),
        };
        let body = toml::to_string(&file).expect("an access file always serializes: plain strings");
        format!("{HEADER}\n{body}")
    }

    /// Writes the file atomically (temporary file, fsync, rename, fsync of
    /// the directory): a crash leaves the old lists or the new ones.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::runtime::durable::write(path, self.to_text().as_bytes())
    }

    /// Adds an entry; refused when the same action, method and pattern exist.
    pub fn add(&mut self, entry: Entry) -> Result<(), String> {
        if self.entries.iter().any(|e| e.key() == entry.key()) {
            return Err(format!(
                "{} {} {} is already listed",
                entry.action.as_str(),
                entry.method.as_str(),
                entry.pattern
            ));
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Removes an entry; `false` when there was none.
    pub fn remove(&mut self, action: Action, method: Method, pattern: &Pattern) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.action == action && e.method == method && &e.pattern == pattern));
        self.entries.len() != before
    }
}

/// The client of a policy question, as access lists see it.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its address, IPv4-mapped addresses un-mapped.
    pub ip: IpAddr,
    /// Its forward-confirmed reverse name, lower case, if it has one.
    pub verified_name: Option<String>,
}

impl Client {
    /// A client by address, without a verified name.
    pub fn new(ip: IpAddr) -> Client {
        Client {
            ip: unmap(ip),
            verified_name: None,
        }
    }
}

/// The entries of one action, indexed so that a lookup costs a few hash
/// probes whatever the number of entries: networks by prefix length,
/// names and domains by each parent domain, addresses exactly.
#[derive(Debug, Default)]
struct Side {
    /// (prefix length, masked network → entry), longest prefixes first.
    nets: Vec<(u8, std::collections::HashMap<IpAddr, usize>)>,
    hosts: std::collections::HashMap<String, usize>,
    hosts_under: std::collections::HashMap<String, usize>,
    from: AddressIndex,
    to: AddressIndex,
}

#[derive(Debug, Default)]
struct AddressIndex {
    address: std::collections::HashMap<String, usize>,
    domain: std::collections::HashMap<String, usize>,
    under: std::collections::HashMap<String, usize>,
    local: std::collections::HashMap<String, usize>,
    null: Option<usize>,
}

/// An envelope address as access lists see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `<>`.
    Null,
    /// Local part and domain as keys ([`local_key`], [`domain_key`]);
    /// `domain` is `None` for an address literal or no domain at all.
    Mailbox {
        /// The local part, unquoted, lower case.
        local: String,
        /// The domain, lower case, no trailing dot.
        domain: Option<String>,
    },
}

impl Address {
    /// From the text between `<` and `>` (empty: the null sender).
    pub fn parse(text: &str) -> Address {
        if text.is_empty() {
            return Address::Null;
        }
        let (local, domain) = text.rsplit_once('@').unwrap_or((text, ""));
        Address::Mailbox {
            local: local_key(local).unwrap_or_else(|| local.to_lowercase()),
            domain: domain_key(domain),
        }
    }
}

impl AddressIndex {
    fn insert(&mut self, pattern: &Pattern, at: usize) {
        let slot = match pattern {
            Pattern::Address(a) => self.address.entry(a.clone()),
            Pattern::Domain(d) => self.domain.entry(d.clone()),
            Pattern::Under(d) => self.under.entry(d.clone()),
            Pattern::Local(l) => self.local.entry(l.clone()),
            Pattern::Null => {
                self.null.get_or_insert(at);
                return;
            }
            Pattern::Net(_) | Pattern::Host(_) => return,
        };
        slot.or_insert(at);
    }

    /// Postfix's order: the address, its domain, each parent domain, then
    /// the local part.
    fn find(&self, a: &Address) -> Option<usize> {
        let Address::Mailbox { local, domain } = a else {
            return self.null;
        };
        if let Some(d) = domain {
            // The key is made only when there are addresses to look it up in.
            if !self.address.is_empty() {
                let mut key = String::with_capacity(local.len() + 1 + d.len());
                key.push_str(local);
                key.push('@');
                key.push_str(d);
                if let Some(&i) = self.address.get(&key) {
                    return Some(i);
                }
            }
            if let Some(&i) = self.domain.get(d) {
                return Some(i);
            }
            if let Some(i) = find_under(&self.under, d) {
                return Some(i);
            }
        }
        self.local.get(local).copied()
    }
}

/// The entry of the nearest parent domain of `name` (not `name` itself).
fn find_under(under: &std::collections::HashMap<String, usize>, name: &str) -> Option<usize> {
    if under.is_empty() {
        return None;
    }
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if let Some(&i) = under.get(parent) {
            return Some(i);
        }
        rest = parent;
    }
    None
}

impl Side {
    fn insert(&mut self, e: &Entry, at: usize) {
        match (e.method, &e.pattern) {
            (Method::Connect, Pattern::Net(n)) => {
                let n = n.normalized();
                let len = n.prefix() + if n.addr().is_ipv4() { 0 } else { 128 };
                let pos = match self.nets.iter().position(|(l, _)| *l <= len) {
                    Some(p) if self.nets[p].0 == len => p,
                    Some(p) => {
                        self.nets.insert(p, (len, Default::default()));
                        p
                    }
                    None => {
                        self.nets.push((len, Default::default()));
                        self.nets.len() - 1
                    }
                };
                self.nets[pos].1.entry(n.addr()).or_insert(at);
            }
            (Method::Connect, Pattern::Host(h)) => {
                self.hosts.entry(h.clone()).or_insert(at);
            }
            (Method::Connect, Pattern::Under(d)) => {
                self.hosts_under.entry(d.clone()).or_insert(at);
            }
            (Method::From, p) => self.from.insert(p, at),
            (Method::To, p) => self.to.insert(p, at),
            _ => {}
        }
    }

    fn connect(&self, c: &Client) -> Option<usize> {
        let ip = unmap(c.ip);
        for (len, nets) in &self.nets {
            // IPv6 lengths are stored past 128 so that both families sort in one list.
            let hit = match ip {
                IpAddr::V4(_) if *len <= 32 => nets.get(&crate::net::mask(ip, *len)),
                IpAddr::V6(_) if *len >= 128 => nets.get(&crate::net::mask(ip, len - 128)),
                _ => None,
            };
            if let Some(&i) = hit {
                return Some(i);
            }
        }
        let name = c.verified_name.as_deref()?;
        self.hosts
            .get(name)
            .copied()
            .or_else(|| find_under(&self.hosts_under, name))
    }
}

/// Access lists ready for lookups: built once per file, shared by every
/// question (a rebuild replaces the whole index).
#[derive(Debug, Default)]
pub struct AccessIndex {
    entries: Vec<Entry>,
    accept: Side,
    reject: Side,
}

/// What the access lists say about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No entry matches: the other checks decide.
    None,
    /// An accept entry matches: blocklists and greylisting are skipped.
    Accept(&'a Entry),
    /// A reject entry matches: `554 5.7.1`.
    Reject(&'a Entry),
}

impl AccessIndex {
    /// Indexes `file`'s entries.
    pub fn new(file: &AccessFile) -> AccessIndex {
        let mut ix = AccessIndex {
            entries: file.entries.clone(),
            ..AccessIndex::default()
        };
        for (at, e) in file.entries.iter().enumerate() {
            match e.action {
                Action::Accept => ix.accept.insert(e, at),
                Action::Reject => ix.reject.insert(e, at),
            }
        }
        ix
    }

    /// Whether some connect entry names a host (`host.example.com`,
    /// `.example.com`): only then is the client's verified name needed.
    pub fn has_host_patterns(&self) -> bool {
        [&self.accept, &self.reject]
            .iter()
            .any(|s| !s.hosts.is_empty() || !s.hosts_under.is_empty())
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verdict for one recipient: the accept list first (connect, from,
    /// to), then the reject list in the same order, first match wins.
    pub fn decide(&self, client: &Client, sender: &Address, recipient: &Address) -> Verdict<'_> {
        let hit = |side: &Side| {
            side.connect(client)
                .or_else(|| side.from.find(sender))
                .or_else(|| side.to.find(recipient))
        };
        if let Some(i) = hit(&self.accept) {
            return Verdict::Accept(&self.entries[i]);
        }
        if let Some(i) = hit(&self.reject) {
            return Verdict::Reject(&self.entries[i]);
        }
        Verdict::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(m: Method, s: &str) -> Result<String, String> {
        Pattern::parse(m, s)
            .map(|p| format!("{p:?}"))
            .map_err(|e| e.0)
    }

    #[test]
    fn patterns_of_each_kind() {
        use Method::*;
        assert_eq!(
            p(Connect, "192.0.2.7").as_deref(),
            Ok("Net(IpNet { addr: 192.0.2.7, prefix: 32 })")
        );
        assert_eq!(
            p(Connect, "123.45").as_deref(),
            Ok("Net(IpNet { addr: 123.45.0.0, prefix: 16 })")
        );
        assert_eq!(
            p(Connect, "10.1.2.3/8").as_deref(),
            Ok("Net(IpNet { addr: 10.0.0.0, prefix: 8 })")
        );
        assert_eq!(
            p(Connect, "2001:DB8::/32").as_deref(),
            Ok("Net(IpNet { addr: 2001:db8::, prefix: 32 })")
        );
        assert_eq!(
            p(Connect, "Mail.Example.COM.").as_deref(),
            Ok("Host(\"mail.example.com\")")
        );
        assert_eq!(
            p(Connect, ".example.com").as_deref(),
            Ok("Under(\"example.com\")")
        );
        assert_eq!(p(From, "<>").as_deref(), Ok("Null"));
        assert_eq!(
            p(From, "User@Example.com").as_deref(),
            Ok("Address(\"user@example.com\")")
        );
        assert_eq!(
            p(To, "<\"postmaster\"@example.com>").as_deref(),
            Ok("Address(\"postmaster@example.com\")")
        );
        assert_eq!(p(To, "abuse@").as_deref(), Ok("Local(\"abuse\")"));
        assert_eq!(
            p(From, "example.com").as_deref(),
            Ok("Domain(\"example.com\")")
        );
        assert_eq!(
            p(From, ".example.com").as_deref(),
            Ok("Under(\"example.com\")")
        );
    }

    #[test]
    fn patterns_that_can_never_match_are_refused() {
        use Method::*;
        for (m, s) in [
            (Connect, ""),
            (Connect, "user@example.com"),
            (Connect, "1.2.3.4.5"),
            (Connect, "300.1"),
            (Connect, "10.0.0.0/33"),
            (Connect, "bad_host!"),
            (Connect, "a b"),
            (To, "<>"),
            (From, "10.0.0.0/8"),
            (From, "1.2.3.4"),
            (From, "@example.com"),
            (From, "us er@example.com"),
            (To, "user@[192.0.2.1]"),
            (To, "."),
        ] {
            assert!(p(m, s).is_err(), "{m:?} {s:?} accepted: {:?}", p(m, s));
        }
    }

    #[test]
    fn display_is_what_parses_back() {
        for (m, s) in [
            (Method::Connect, "192.0.2.7"),
            (Method::Connect, "123.45.0.0/16"),
            (Method::Connect, "2001:db8::/32"),
            (Method::Connect, ".example.com"),
            (Method::From, "<>"),
            (Method::From, "user@"),
            (Method::To, "user@example.com"),
        ] {
            let pat = Pattern::parse(m, s).expect("parses");
            assert_eq!(pat.to_string(), s);
            assert_eq!(Pattern::parse(m, &pat.to_string()), Ok(pat));
        }
    }

    #[test]
    fn dates() {
        assert!(is_date("2027-01-31"));
        assert!(is_date("2028-02-29"));
        assert!(!is_date("2027-02-29"));
        assert!(!is_date("2027-13-01"));
        assert!(!is_date("27-01-31"));
        assert!(!is_date("2027/01/31"));
    }

    const FILE: &str = r#"
[[accept]]
method = "connect"
pattern = "193.252.22.0/24"
comment = "France Telecom relay, listed by mistake"
keep_until = "2027-01-31"
added = "2026-12-06T14:50:00Z"
added_by = "root"

[[reject]]
method = "from"
pattern = "spammer@example.net"

[[reject]]
method = "connect"
pattern = ".dynamic.example.org"
"#;

    #[test]
    fn the_file_round_trips() {
        let f = AccessFile::parse(FILE).expect("parses");
        assert_eq!(f.entries.len(), 3);
        assert_eq!(f.entries[0].action, Action::Accept);
        assert_eq!(f.entries[0].keep_until.as_deref(), Some("2027-01-31"));
        assert!(f.entries[0].expired("2027-02-01"));
        assert!(!f.entries[0].expired("2027-01-31"));
        let again = AccessFile::parse(&f.to_text()).expect("re-parses");
        assert_eq!(again, f);
        assert!(f.to_text().starts_with("# postern access lists"));
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_line() {
        let text = r#"[[accept]]
method = "connect"
pattern = "not a host"

[[reject]]
method = "sideways"
pattern = "x@example.com"

[[reject]]
method = "to"
pattern = "x@example.com"
keep_until = "tomorrow"

[[reject]]
method = "from"
pattern = "x@example.com"

[[reject]]
method = "from"
pattern = "X@Example.com."
"#;
        let err = AccessFile::parse(text).expect_err("bad");
        assert_eq!(
            err.0,
            [
                "line 3: pattern \"not a host\": a pattern has no spaces",
                "line 6: method \"sideways\" is not connect, from or to",
                "line 12: keep_until \"tomorrow\" is not a date such as 2027-01-31",
                "line 20: reject from x@example.com is already at line 16",
            ]
        );
        let err =
            AccessFile::parse("[[reject]]\nmethod = \"to\"\npattern = \"a@b.test\"\ncolour = 1\n")
                .expect_err("unknown key");
        assert_eq!(err.0.len(), 1);
        assert!(
            err.0[0].starts_with("line 4: unknown field `colour`"),
            "{:?}",
            err.0
        );
    }

    fn client(ip: &str, name: Option<&str>) -> Client {
        Client {
            ip: unmap(ip.parse().expect("ip")),
            verified_name: name.map(str::to_string),
        }
    }

    fn index(lines: &[(&str, &str, &str)]) -> AccessIndex {
        let mut f = AccessFile::default();
        for (a, m, pat) in lines {
            let method: Method = m.parse().expect("method");
            f.add(Entry {
                action: a.parse().expect("action"),
                method,
                pattern: Pattern::parse(method, pat).expect("pattern"),
                comment: String::new(),
                keep_until: None,
                added: None,
                added_by: None,
            })
            .expect("add");
        }
        AccessIndex::new(&f)
    }

    fn says(ix: &AccessIndex, c: &Client, from: &str, to: &str) -> String {
        match ix.decide(c, &Address::parse(from), &Address::parse(to)) {
            Verdict::None => "none".into(),
            Verdict::Accept(e) => format!("accept {} {}", e.method.as_str(), e.pattern),
            Verdict::Reject(e) => format!("reject {} {}", e.method.as_str(), e.pattern),
        }
    }

    #[test]
    fn lookups_follow_each_pattern_kind() {
        let ix = index(&[
            ("reject", "connect", "192.0.2.0/24"),
            ("reject", "connect", "123.45"),
            ("reject", "connect", "2001:db8::/32"),
            ("reject", "connect", "bad.example.net"),
            ("reject", "connect", ".dyn.example.org"),
            ("reject", "from", "<>"),
            ("reject", "from", "spam@example.com"),
            ("reject", "from", "spammers.example"),
            ("reject", "from", ".bulk.example"),
            ("reject", "to", "nobody@"),
        ]);
        let plain = client("198.51.100.1", None);
        let ok = "a@ok.test";
        assert_eq!(
            says(&ix, &client("192.0.2.77", None), ok, ok),
            "reject connect 192.0.2.0/24"
        );
        assert_eq!(
            says(&ix, &client("::ffff:192.0.2.77", None), ok, ok),
            "reject connect 192.0.2.0/24"
        );
        assert_eq!(
            says(&ix, &client("123.45.6.7", None), ok, ok),
            "reject connect 123.45.0.0/16"
        );
        assert_eq!(says(&ix, &client("123.46.6.7", None), ok, ok), "none");
        assert_eq!(
            says(&ix, &client("2001:db8:1::9", None), ok, ok),
            "reject connect 2001:db8::/32"
        );
        assert_eq!(
            says(
                &ix,
                &client("198.51.100.1", Some("bad.example.net")),
                ok,
                ok
            ),
            "reject connect bad.example.net"
        );
        assert_eq!(
            says(
                &ix,
                &client("198.51.100.1", Some("h1.dyn.example.org")),
                ok,
                ok
            ),
            "reject connect .dyn.example.org"
        );
        // `.domain` is for names under it, not the domain itself.
        assert_eq!(
            says(
                &ix,
                &client("198.51.100.1", Some("dyn.example.org")),
                ok,
                ok
            ),
            "none"
        );
        assert_eq!(says(&ix, &plain, "", ok), "reject from <>");
        assert_eq!(
            says(&ix, &plain, "Spam@EXAMPLE.com.", ok),
            "reject from spam@example.com"
        );
        assert_eq!(
            says(&ix, &plain, "\"spam\"@example.com", ok),
            "reject from spam@example.com"
        );
        assert_eq!(says(&ix, &plain, "ham@example.com", ok), "none");
        assert_eq!(
            says(&ix, &plain, "x@spammers.example", ok),
            "reject from spammers.example"
        );
        assert_eq!(says(&ix, &plain, "x@sub.spammers.example", ok), "none");
        assert_eq!(
            says(&ix, &plain, "x@a.b.bulk.example", ok),
            "reject from .bulk.example"
        );
        assert_eq!(
            says(&ix, &plain, ok, "Nobody@any.test"),
            "reject to nobody@"
        );
        // A literal domain never matches a domain entry.
        assert_eq!(says(&ix, &plain, "x@[192.0.2.1]", ok), "none");
    }

    #[test]
    fn accept_wins_over_reject_and_longest_network_first() {
        let ix = index(&[
            ("reject", "connect", "10.0.0.0/8"),
            ("accept", "to", "postmaster@example.com"),
            ("reject", "connect", "10.1.0.0/16"),
            ("accept", "connect", "10.1.2.3"),
        ]);
        let rejected = client("10.1.9.9", None);
        assert_eq!(
            says(&ix, &rejected, "a@x.test", "u@example.com"),
            "reject connect 10.1.0.0/16"
        );
        assert_eq!(
            says(&ix, &rejected, "a@x.test", "postmaster@example.com"),
            "accept to postmaster@example.com"
        );
        assert_eq!(
            says(&ix, &client("10.1.2.3", None), "a@x.test", "u@example.com"),
            "accept connect 10.1.2.3"
        );
        assert_eq!(
            says(
                &ix,
                &client("10.200.0.1", None),
                "a@x.test",
                "u@example.com"
            ),
            "reject connect 10.0.0.0/8"
        );
    }

    #[test]
    fn a_large_index_answers_without_scanning() {
        let mut f = AccessFile::default();
        for i in 0..20_000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i * 7);
            f.entries.push(Entry {
                action: Action::Reject,
                method: Method::Connect,
                pattern: Pattern::Net(ip.to_string().parse().expect("ip")),
                comment: String::new(),
                keep_until: None,
                added: None,
                added_by: None,
            });
        }
        let ix = AccessIndex::new(&f);
        assert_eq!(ix.len(), 20_000);
        assert_eq!(
            ix.accept.nets.len() + ix.reject.nets.len(),
            1,
            "one prefix length, one table"
        );
        let hit = client(&Ipv4Addr::from(0x0a00_0000 + 7 * 1234).to_string(), None);
        assert!(matches!(
            ix.decide(&hit, &Address::Null, &Address::parse("a@b.test")),
            Verdict::Reject(_)
        ));
        let miss = client(
            &Ipv4Addr::from(0x0a00_0000 + 7 * 1234 + 1).to_string(),
            None,
        );
        assert_eq!(
            ix.decide(&miss, &Address::Null, &Address::parse("a@b.test")),
            Verdict::None
        );
    }
}
