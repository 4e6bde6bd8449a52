//! Which server receives mail for a domain: the `domains` lists of the
//! `[[server]]` blocks, exact names and `.parent` entries (which match
//! subdomains only; an exact name wins). The router's routing table looks
//! domains up here, and so does the validation of `[[alias]]` targets
//! (`crate::alias`), so both agree on every domain.

use std::collections::HashMap;

use crate::config::{normalize_domain, Server};

/// Domain → index of the server (from 0, in configuration order).
#[derive(Debug, Default, Clone)]
pub struct DomainIndex {
    exact: HashMap<String, usize>,
    /// `.example.com` entries, stored without the leading dot.
    parents: HashMap<String, usize>,
}

impl DomainIndex {
    /// The index of these servers' `domains` lists. A domain listed by two
    /// servers goes to the later one, as it always has.
    pub fn new(servers: &[Server]) -> DomainIndex {
        let mut t = DomainIndex::default();
        for (i, s) in servers.iter().enumerate() {
            for d in &s.domains {
                let d = normalize_domain(d);
                match d.strip_prefix('.') {
                    Some(parent) => t.parents.insert(parent.to_string(), i),
                    None => t.exact.insert(d, i),
                };
            }
        }
        t
    }

    /// The server receiving mail for `domain` (lower-cased, no trailing dot).
    pub fn server_of(&self, domain: &str) -> Option<usize> {
        self.exact.get(domain).copied().or_else(|| {
            let mut rest = domain;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(&i) = self.parents.get(rest) {
                    return Some(i);
                }
            }
            None
        })
    }
}
