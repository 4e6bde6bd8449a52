//! The routing table: which server receives a session, by the seed's three
//! rules — the client's address in a server's `relay` list (`ip-addr`), the
//! client's SMTP AUTH credentials (`auth`), the recipient's domain (`domain`).
//!
//! A recipient's route is its domain's, after its aliases (SPEC §12):
//! [`Table::by_recipient`].
//!
//! Built once per configuration and never changed: a reload builds a new
//! table and swaps it in whole, so a lookup sees either the old table or the
//! new one, never a mix.

use std::net::IpAddr;

use postern_shared::alias::Aliases;
use postern_shared::config::Config;
use postern_shared::domains::DomainIndex;
use postern_shared::ipc::route::{Cause, Route};
use postern_shared::net::IpPattern;
use postern_shared::smtp::secret_eq;

/// One server's routing facts.
#[derive(Debug, Clone)]
struct Entry {
    /// What smtpd is told (cause filled in per lookup).
    route: Route,
    relay: Vec<IpPattern>,
    credentials: Option<(String, String)>,
}

/// The servers, domain → server (exact names and `.suffix` entries), and
/// the aliases (SPEC §12).
#[derive(Debug, Default)]
pub struct Table {
    servers: Vec<Entry>,
    domains: DomainIndex,
    /// The `[[alias]]` table.
    pub aliases: Aliases,
}

impl Table {
    /// Builds the table of a validated configuration.
    pub fn new(config: &Config) -> Table {
        let mut t = Table {
            domains: DomainIndex::new(&config.servers),
            // Validated with the configuration: nothing is left out here.
            aliases: Aliases::build(&config.aliases).0,
            ..Table::default()
        };
        for (i, s) in config.servers.iter().enumerate() {
            t.servers.push(Entry {
                route: Route {
                    server: (i + 1) as u32,
                    name: s.display_name().into(),
                    host: s.host.as_str().into(),
                    port: s.port,
                    timeout: s.timeout.0,
                    identity: s.client_identity,
                    cause: Cause::Domain,
                },
                relay: s.relay.iter().map(|r| r.value().clone()).collect(),
                credentials: s.user.clone().zip(s.password.clone()),
            });
        }
        t
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// The servers' display names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|e| &*e.route.name)
    }

    /// The server receiving mail for `domain` (already lower-cased, no trailing dot).
    pub fn by_domain(&self, domain: &str) -> Option<Route> {
        let i = self.domains.server_of(domain)?;
        Some(self.route(i, Cause::Domain))
    }

    /// The route of recipient `local@domain` (domain lower-cased, no
    /// trailing dot) after its aliases: [`Recipient::Plain`] for a domain
    /// without aliases (its answer holds for every local part).
    pub fn by_recipient(&self, local: &str, domain: &str) -> Recipient {
        if !self.aliases.is_alias_domain(domain) {
            return Recipient::Plain(self.by_domain(domain));
        }
        match self.aliases.expand(local, domain) {
            Ok(None) => match self.by_domain(domain) {
                Some(r) => Recipient::Aliased(r, Vec::new()),
                None => Recipient::Unknown,
            },
            Ok(Some(targets)) => {
                // One server for every target: checked when the table was loaded.
                let servers: Vec<Option<Route>> = targets
                    .iter()
                    .map(|t| self.by_domain(t.rsplit_once('@').map_or("", |(_, d)| d)))
                    .collect();
                match servers.first() {
                    Some(Some(r)) if servers.iter().all(|s| s.as_ref() == Some(r)) => {
                        Recipient::Aliased(r.clone(), targets)
                    }
                    _ => Recipient::Broken(format!(
                        "the aliases of {local}@{domain} do not lead to one server"
                    )),
                }
            }
            Err(e) => Recipient::Broken(format!("the alias {local}@{domain} {e}")),
        }
    }

    /// The first server (in configuration order) whose `relay` list holds `ip`.
    pub fn by_client(&self, ip: IpAddr) -> Option<Route> {
        let i = self
            .servers
            .iter()
            .position(|e| e.relay.iter().any(|p| p.matches(ip)))?;
        Some(self.route(i, Cause::IpAddr))
    }

    /// The server whose `user`/`password` are these. The user name is compared
    /// case-sensitively, as SASL does; both comparisons take the same time
    /// whatever the first differing byte.
    pub fn by_credentials(&self, user: &str, password: &str) -> Option<Route> {
        let i = self.servers.iter().position(|e| {
            e.credentials.as_ref().is_some_and(|(u, p)| {
                // `&` and not `&&`: check the password even when the user differs.
                secret_eq(u, user) & secret_eq(p, password)
            })
        })?;
        Some(self.route(i, Cause::Auth))
    }

    fn route(&self, i: usize, cause: Cause) -> Route {
        let mut r = self.servers[i].route.clone();
        r.cause = cause;
        r
    }
}

/// Where a recipient goes ([`Table::by_recipient`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Not an alias domain: its domain's server, or none (relaying denied).
    Plain(Option<Route>),
    /// In an alias domain: the server, and the addresses an alias made of
    /// it (empty when no alias takes it and a server lists the domain).
    Aliased(Route, Vec<String>),
    /// In an alias domain that no server lists, and no alias takes it.
    Unknown,
    /// The table cannot expand it (never, for a table that loaded).
    Broken(String),
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

    #[test]
    fn client_and_credential_routes() {
        let c = Config::parse(
            r#"
[[server]]
name = "one"
host = "localhost"
port = 1025
relay = ["193.56.147.87", "172.16.*.*"]
user = "spamwars"
password = "secret"
domains = ["one.test"]
[[server]]
name = "two"
host = "localhost"
port = 2025
relay = ["10.1.0.0/16", "::1"]
domains = ["two.test"]
"#,
        )
        .expect("parses");
        let t = Table::new(&c);
        let by_ip = |ip: &str| {
            t.by_client(ip.parse().expect("ip"))
                .map(|r| (r.name, r.cause))
        };
        assert_eq!(by_ip("193.56.147.87"), Some(("one".into(), Cause::IpAddr)));
        assert_eq!(by_ip("172.16.9.9"), Some(("one".into(), Cause::IpAddr)));
        assert_eq!(by_ip("10.1.2.3"), Some(("two".into(), Cause::IpAddr)));
        assert_eq!(by_ip("::1"), Some(("two".into(), Cause::IpAddr)));
        assert_eq!(
            by_ip("::ffff:172.16.0.1"),
            Some(("one".into(), Cause::IpAddr))
        );
        assert_eq!(by_ip("10.2.0.1"), None);
        assert_eq!(
            t.by_credentials("spamwars", "secret").map(|r| r.cause),
            Some(Cause::Auth)
        );
        assert_eq!(t.by_credentials("spamwars", "Secret"), None);
        assert_eq!(t.by_credentials("SPAMWARS", "secret"), None);
        assert_eq!(t.by_credentials("", ""), None);
        assert_eq!(
            t.by_domain("one.test").map(|r| r.cause),
            Some(Cause::Domain)
        );
    }
}
