//! The routing table: which server receives mail for which domain.
//!
//! Built once per configuration and never changed: a reload builds a new
//! table and swaps it in whole, so a lookup sees either the old table or the
//! new one, never a mix.

use std::collections::HashMap;

use postern_shared::config::{normalize_domain, Config};
use postern_shared::route::{Cause, Route};

/// One server's routing facts, as sent to smtpd.
#[derive(Debug, Clone)]
struct Entry {
    route: Route,
}

/// Domain → server, exact names and `.suffix` entries.
#[derive(Debug, Default)]
pub struct Table {
    servers: Vec<Entry>,
    exact: HashMap<String, usize>,
    /// `.example.com` entries, stored without the leading dot; they match subdomains only.
    parents: HashMap<String, usize>,
}

impl Table {
    /// Builds the table of a validated configuration.
    pub fn new(config: &Config) -> Table {
        let mut t = Table::default();
        for (i, s) in config.servers.iter().enumerate() {
            t.servers.push(Entry {
                route: Route {
                    server: (i + 1) as u32,
                    name: s.display_name(),
                    host: s.host.clone(),
                    port: s.port,
                    timeout: s.timeout.0,
                    identity: s.client_identity,
                    cause: Cause::Domain,
                },
            });
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

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// The servers' display names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|e| e.route.name.as_str())
    }

    /// The server receiving mail for `domain` (already lower-cased, no trailing dot).
    pub fn by_domain(&self, domain: &str) -> Option<&Route> {
        if let Some(&i) = self.exact.get(domain) {
            return Some(&self.servers[i].route);
        }
        let mut rest = domain;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(&i) = self.parents.get(rest) {
                return Some(&self.servers[i].route);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_parent_domains() {
        let c = Config::parse(
            r#"
[[server]]
name = "one"
host = "localhost"
port = 1025
domains = ["One.test.", ".sub.test"]
[[server]]
host = "localhost"
port = 2025
domains = ["two.test", "deep.sub.test"]
"#,
        )
        .expect("parses");
        let t = Table::new(&c);
        let name = |d: &str| t.by_domain(d).map(|r| r.name.clone());
        assert_eq!(name("one.test"), Some("one".into()));
        assert_eq!(name("a.sub.test"), Some("one".into()));
        assert_eq!(name("x.y.sub.test"), Some("one".into()));
        assert_eq!(
            name("sub.test"),
            None,
            "a .parent entry matches subdomains only"
        );
        assert_eq!(
            name("deep.sub.test"),
            Some("localhost:2025".into()),
            "exact wins"
        );
        assert_eq!(name("evilone.test"), None);
        assert_eq!(name("one.test.evil"), None);
        assert_eq!(t.by_domain("two.test").map(|r| r.server), Some(2));
    }
}
