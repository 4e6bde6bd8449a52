//! Virtual aliases (SPEC §12), as Postfix's `virtual(5)`: an address is
//! looked up as `user@domain`, then as `@domain`; a target `@other` of a
//! domain alias keeps the local part (a domain translation); targets are
//! expanded again, up to [`MAX_DEPTH`] levels; an address listed among its
//! own targets keeps itself (the way to keep a copy) instead of looping.
//!
//! Everything that could go wrong with a table is found when it is loaded
//! ([`Aliases::check`]): loops, expansions deeper than [`MAX_DEPTH`] or
//! wider than [`MAX_EXPANSION`] addresses, a target no server receives
//! mail for, and one alias whose targets are on two servers (a proxy holds
//! one backend transaction at a time). A domain alias is checked for each
//! local part that can take a different path through the table (those of
//! the `user@domain` aliases in the domains it translates to) and for
//! "any other" one, written `<any>` in the problems. A table that loaded
//! thus expands every address without error; [`Aliases::expand`] still
//! answers an error rather than trust it.
//!
//! Lookups are case-insensitive (the local part unquoted and lower-cased,
//! the domain lower-cased); a target keeps the spelling of the
//! configuration, a translated local part the client's. Address extensions
//! (`user+tag@`) are not stripped: write the alias for each address.

use std::collections::{HashMap, HashSet};

use crate::config::{is_hostname, normalize_domain, Alias, Problem, Server};
use crate::domains::DomainIndex;
use crate::smtp::Mailbox;

/// Alias levels an address may go through (SPEC §12).
pub const MAX_DEPTH: usize = 10;
/// Addresses one expansion may give (Postfix's `virtual_alias_expansion_limit`).
pub const MAX_EXPANSION: usize = 1000;
/// Bytes one expansion's addresses may take in the router's answer (one
/// `to=` line each), well within an IPC message's 64 KiB.
pub const MAX_EXPANSION_BYTES: usize = 48 * 1024;

/// The local part that stands for every other in the checks at load: it
/// cannot be written in a configuration.
const ANY: &str = "<any>";

/// One target of an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `user@domain`.
    Address { local: String, domain: String },
    /// `@domain`: the looked-up address's local part in this domain.
    Domain(String),
}

/// One `[[alias]]`, as looked up.
#[derive(Debug, Clone)]
struct Entry {
    /// Its number in the file, from 1 (`alias[N]` in problems).
    number: usize,
    /// Its local part (`None` for a domain alias) and domain, as written.
    local: Option<String>,
    domain: String,
    targets: Vec<Target>,
}

/// Why an address could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// An address comes back among its own expansion's ancestors.
    #[error("loops: {0}")]
    Loop(String),
    /// More alias levels than [`MAX_DEPTH`].
    #[error("goes through more than {MAX_DEPTH} aliases: {0}")]
    TooDeep(String),
    /// More addresses than [`MAX_EXPANSION`].
    #[error("expands to more than {MAX_EXPANSION} addresses")]
    TooMany,
}

/// One alias domain, for `postern status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    /// The domain.
    pub domain: String,
    /// Aliases in it (a domain alias included).
    pub aliases: usize,
    /// It has a domain alias (`@domain`): every local part is taken.
    pub catch_all: bool,
    /// The server that lists the domain itself, if any (from 0).
    pub listed_by: Option<usize>,
}

/// The alias table of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// `user@domain` aliases, by lookup key.
    addresses: HashMap<String, Entry>,
    /// `@domain` aliases, by domain.
    domains: HashMap<String, Entry>,
    /// Every domain with an alias of either kind, and how many.
    served: HashMap<String, usize>,
}

/// The lookup key of an address: local part unquoted and lower-cased.
fn key(local: &str, domain: &str) -> String {
    let m = Mailbox {
        local: local.to_string(),
        domain: String::new(),
    };
    format!("{}@{domain}", m.unquoted_local().to_lowercase())
}

/// The key that tells two spellings of one address apart from two
/// addresses: the local part unquoted and lower-cased, the domain
/// lower-cased without a trailing dot (an address given twice, or by an
/// alias and directly, reaches the backend once: `Tx::sent` in smtpd).
pub fn address_key(address: &str) -> String {
    match address.rsplit_once('@') {
        // The usual address (an unquoted ASCII local part): one allocation,
        // the same key as below (every RCPT asks for it).
        Some((l, d)) if !l.starts_with('"') && l.is_ascii() => {
            let d = d.trim();
            let d = d.strip_suffix('.').unwrap_or(d);
            let mut k = String::with_capacity(l.len() + 1 + d.len());
            k.push_str(l);
            k.push('@');
            k.push_str(d);
            k.make_ascii_lowercase();
            k
        }
        Some((l, d)) => key(l, &normalize_domain(d)),
        None => address.to_lowercase(),
    }
}

/// A local part as the configuration may write it: a dot-atom's characters
/// (no quotes, no routing characters).
fn local_ok(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && !l.starts_with('.')
        && !l.ends_with('.')
        && !l.contains("..")
        && l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"#$&'*+-/=?^_`{|}~.".contains(&b))
}

/// `user@domain` → (Some(user), domain); `@domain` → (None, domain).
fn parse(text: &str) -> Result<(Option<String>, String), String> {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!(
            "{text:?} is not an address such as \"user@example.com\" nor a domain such as \"@example.com\""
        ));
    };
    let domain = normalize_domain(domain);
    if !is_hostname(&domain) {
        return Err(format!("{text:?}: {domain:?} is not a valid domain"));
    }
    if local.is_empty() {
        return Ok((None, domain));
    }
    if !local_ok(local) {
        return Err(format!(
            "{text:?}: the local part may hold letters, digits, dots and -_+=&'*/?^`{{|}}~#$ only"
        ));
    }
    Ok((Some(local.to_string()), domain))
}

impl Aliases {
    /// The table of `aliases`, with the problems of each one alone (its
    /// address, its targets, an address given twice); a faulty alias is
    /// left out of the table.
    pub fn build(aliases: &[Alias]) -> (Aliases, Vec<Problem>) {
        let mut t = Aliases::default();
        let mut problems = Vec::new();
        for (i, a) in aliases.iter().enumerate() {
            let number = i + 1;
            let mut bad = |key: String, message: String| problems.push(Problem { key, message });
            let (local, domain) = match parse(&a.address) {
                Ok(p) => p,
                Err(m) => {
                    bad(format!("alias[{number}].address"), m);
                    continue;
                }
            };
            if a.to.is_empty() {
                bad(
                    format!("alias[{number}].to"),
                    "needs at least one address".into(),
                );
                continue;
            }
            let mut targets: Vec<Target> = Vec::with_capacity(a.to.len());
            let mut bad_targets = 0;
            for (j, to) in a.to.iter().enumerate() {
                match parse(to) {
                    Ok((Some(l), d)) => {
                        let t = Target::Address {
                            local: l,
                            domain: d,
                        };
                        // A target given twice is one target.
                        if !targets.contains(&t) {
                            targets.push(t);
                        }
                    }
                    Ok((None, d)) if local.is_none() => {
                        if !targets.contains(&Target::Domain(d.clone())) {
                            targets.push(Target::Domain(d));
                        }
                    }
                    Ok((None, _)) => {
                        bad_targets += 1;
                        bad(
                            format!("alias[{number}].to[{j}]"),
                            format!("{to:?} is a whole domain: only a domain alias (\"@{domain}\") may have one"),
                        )
                    }
                    Err(m) => {
                        bad_targets += 1;
                        bad(format!("alias[{number}].to[{j}]"), m)
                    }
                }
            }
            if bad_targets > 0 {
                continue;
            }
            let entry = Entry {
                number,
                local: local.clone(),
                domain: domain.clone(),
                targets,
            };
            let earlier = match &local {
                Some(l) => t.addresses.insert(key(l, &domain), entry),
                None => t.domains.insert(domain.clone(), entry),
            };
            match earlier {
                Some(e) => {
                    // The first one stays; this one is the mistake.
                    let first = e.number;
                    match &local {
                        Some(l) => t.addresses.insert(key(l, &domain), e),
                        None => t.domains.insert(domain.clone(), e),
                    };
                    bad(
                        format!("alias[{number}].address"),
                        format!("{:?} is also the address of alias[{first}]", a.address),
                    );
                }
                None => *t.served.entry(domain).or_default() += 1,
            }
        }
        (t, problems)
    }

    /// No alias at all.
    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.addresses.len() + self.domains.len()
    }

    /// Number of alias domains.
    pub fn domains(&self) -> usize {
        self.served.len()
    }

    /// Whether some alias is in `domain` (lower-cased): such a domain is
    /// served even when no server lists it, and its routes depend on the
    /// local part.
    pub fn is_alias_domain(&self, domain: &str) -> bool {
        self.served.contains_key(domain)
    }

    /// The addresses `local@domain` (domain lower-cased, no trailing dot)
    /// stands for, each once, in the order of the table; `None` when no
    /// alias takes it.
    pub fn expand(&self, local: &str, domain: &str) -> Result<Option<Vec<String>>, ExpandError> {
        if !self.is_alias_domain(domain) || self.entry(local, domain).is_none() {
            return Ok(None);
        }
        let mut walk = Walk::default();
        walk.visit(self, local, domain, 0)?;
        if wide(&walk.out, u32::MAX).is_err() {
            return Err(ExpandError::TooMany);
        }
        Ok(Some(
            walk.out
                .into_iter()
                .map(|(l, d)| format!("{l}@{d}"))
                .collect(),
        ))
    }

    /// The alias that takes `local@domain`.
    fn entry(&self, local: &str, domain: &str) -> Option<&Entry> {
        self.addresses
            .get(&key(local, domain))
            .or_else(|| self.domains.get(domain))
    }

    /// The problems of the table as a whole, each under the `alias[N]` it
    /// starts from (see the module header). `servers`, `index` and
    /// `max_recipients` (a transaction's recipients, `proxy.max_recipients`:
    /// one alias's addresses must fit in one) are the configuration's.
    pub fn check(
        &self,
        servers: &[Server],
        index: &DomainIndex,
        max_recipients: u32,
    ) -> Vec<Problem> {
        let mut entries: Vec<&Entry> = self
            .addresses
            .values()
            .chain(self.domains.values())
            .collect();
        entries.sort_by_key(|e| e.number);
        let mut problems = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut loops: HashSet<Vec<usize>> = HashSet::new();
        let mut by_domain: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in self.addresses.values() {
            let l = e.local.as_deref().unwrap_or_default();
            by_domain.entry(e.domain.as_str()).or_default().push(l);
        }
        for e in entries {
            let locals: Vec<String> = match &e.local {
                Some(l) => vec![l.clone()],
                None => self.locals_through(&e.domain, &by_domain),
            };
            for local in locals {
                let mut walk = Walk::default();
                let result = walk.visit(self, &local, &e.domain, 0);
                let key = format!("alias[{}]", e.number);
                let shown = format!("{local}@{}", e.domain);
                let message = match result {
                    Err(ExpandError::Loop(chain)) => {
                        if !loops.insert(walk.loop_members.clone()) {
                            continue;
                        }
                        format!("{shown} loops: {chain}")
                    }
                    Err(err) => format!("{shown} {err}"),
                    Ok(_) => match wide(&walk.out, max_recipients)
                        .and_then(|()| one_server(&walk.out, servers, index))
                    {
                        Ok(()) => continue,
                        Err(m) => format!("{shown}: {m}"),
                    },
                };
                if seen.insert(message.clone()) {
                    problems.push(Problem { key, message });
                }
            }
        }
        problems
    }

    /// The local parts a domain alias of `domain` must be checked with:
    /// those of the `user@` aliases (`locals`, by domain) in every domain
    /// its translations reach (they may take another path there), and
    /// [`ANY`] for the others. A local part with an alias in `domain`
    /// itself never reaches the domain alias.
    fn locals_through(&self, domain: &str, locals: &HashMap<&str, Vec<&str>>) -> Vec<String> {
        let mut reached: HashSet<&str> = HashSet::from([domain]);
        let mut queue = vec![domain];
        while let Some(d) = queue.pop() {
            for t in self
                .domains
                .get(d)
                .map(|e| e.targets.as_slice())
                .unwrap_or(&[])
            {
                if let Target::Domain(next) = t {
                    if reached.insert(next) {
                        queue.push(next);
                    }
                }
            }
        }
        let mut out: HashSet<&str> = HashSet::new();
        for d in reached {
            for l in locals.get(d).map(Vec::as_slice).unwrap_or(&[]) {
                if !self.addresses.contains_key(&key(l, domain)) {
                    out.insert(l);
                }
            }
        }
        let mut out: Vec<String> = out.into_iter().map(str::to_string).collect();
        out.sort();
        out.push(ANY.to_string());
        out
    }

    /// Every alias domain with its count, sorted by name, for `postern status`.
    pub fn summaries(&self, index: &DomainIndex) -> Vec<DomainSummary> {
        let mut out: Vec<DomainSummary> = self
            .served
            .iter()
            .map(|(d, &n)| DomainSummary {
                domain: d.clone(),
                aliases: n,
                catch_all: self.domains.contains_key(d),
                listed_by: index.server_of(d),
            })
            .collect();
        out.sort_by(|a, b| a.domain.cmp(&b.domain));
        out
    }
}

/// Whether one expansion fits in a transaction (`max_recipients`) and in
/// the router's answer ([`MAX_EXPANSION_BYTES`]).
fn wide(out: &[(String, String)], max_recipients: u32) -> Result<(), String> {
    if out.len() > max_recipients as usize {
        return Err(format!(
            "expands to {} addresses, more than proxy.max_recipients ({max_recipients}): a transaction could never take them all",
            out.len()
        ));
    }
    let bytes: usize = out.iter().map(|(l, d)| l.len() + d.len() + 5).sum();
    if bytes > MAX_EXPANSION_BYTES {
        return Err(format!(
            "its {} addresses take {bytes} bytes, more than a route answer carries ({MAX_EXPANSION_BYTES}): split the list",
            out.len()
        ));
    }
    Ok(())
}

/// Whether every address of one expansion goes to one server.
fn one_server(
    out: &[(String, String)],
    servers: &[Server],
    index: &DomainIndex,
) -> Result<(), String> {
    let mut first: Option<(usize, String)> = None;
    for (l, d) in out {
        let Some(s) = index.server_of(d) else {
            return Err(format!(
                "target {l}@{d}: no [[server]] receives mail for {d}"
            ));
        };
        match &first {
            None => first = Some((s, format!("{l}@{d}"))),
            Some((f, addr)) if *f != s => {
                let name = |i: usize| servers.get(i).map(|s| s.display_name()).unwrap_or_default();
                return Err(format!(
                    "targets on two servers: {addr} on server[{}] ({}), {l}@{d} on server[{}] ({}); a session's transaction goes to one server",
                    f + 1,
                    name(*f),
                    s + 1,
                    name(s)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// One expansion under way: a depth-first walk that says a loop when an
/// address comes back on its own path, and goes once through each address
/// (an address met again, through another alias, adds nothing new: only
/// its depth is checked again).
#[derive(Default)]
struct Walk {
    /// The final addresses, (local, domain), each once.
    out: Vec<(String, String)>,
    /// Their keys.
    seen: HashSet<String>,
    /// The addresses being expanded, outermost first: (key, shown, `alias[N]`).
    path: Vec<(String, String, usize)>,
    /// Addresses expanded already, with the alias levels under and at them.
    done: HashMap<String, usize>,
    /// The aliases of the loop found, sorted (a loop is reported once,
    /// whichever alias it is found from).
    loop_members: Vec<usize>,
}

impl Walk {
    /// Expands `local@domain`, met at `depth` alias levels from the start;
    /// returns how many alias levels it goes through itself (0: no alias
    /// takes it).
    fn visit(
        &mut self,
        t: &Aliases,
        local: &str,
        domain: &str,
        depth: usize,
    ) -> Result<usize, ExpandError> {
        let k = key(local, domain);
        let Some(entry) = t.entry(local, domain) else {
            self.keep(k, local, domain)?;
            return Ok(0);
        };
        let shown = format!("{local}@{domain} (alias[{}])", entry.number);
        if let Some(&levels) = self.done.get(&k) {
            if depth + levels > MAX_DEPTH {
                return Err(ExpandError::TooDeep(
                    self.chain(Some(&format!("{shown} → …"))),
                ));
            }
            return Ok(levels);
        }
        self.path.push((k.clone(), shown, entry.number));
        if depth >= MAX_DEPTH {
            return Err(ExpandError::TooDeep(self.chain(None)));
        }
        let mut below = 0;
        for target in &entry.targets {
            let (tl, td) = match target {
                Target::Address { local, domain } => (local.as_str(), domain.as_str()),
                Target::Domain(d) => (local, d.as_str()),
            };
            let tk = key(tl, td);
            if tk == k {
                // Listed among its own targets: keeps itself (virtual(5)).
                self.keep(tk, tl, td)?;
                continue;
            }
            if let Some(at) = self.path.iter().position(|(pk, _, _)| *pk == tk) {
                let mut members: Vec<usize> = self.path[at..].iter().map(|p| p.2).collect();
                members.sort_unstable();
                self.loop_members = members;
                return Err(ExpandError::Loop(self.chain(Some(&format!("{tl}@{td}")))));
            }
            below = below.max(self.visit(t, tl, td, depth + 1)?);
        }
        self.path.pop();
        self.done.insert(k, below + 1);
        Ok(below + 1)
    }

    fn keep(&mut self, k: String, local: &str, domain: &str) -> Result<(), ExpandError> {
        if self.seen.insert(k) {
            if self.out.len() == MAX_EXPANSION {
                return Err(ExpandError::TooMany);
            }
            self.out.push((local.to_string(), domain.to_string()));
        }
        Ok(())
    }

    fn chain(&self, last: Option<&str>) -> String {
        let mut parts: Vec<&str> = self.path.iter().map(|(_, s, _)| s.as_str()).collect();
        if let Some(l) = last {
            parts.push(l);
        }
        parts.join(" → ")
    }
}

#[cfg(test)]
mod tests;
