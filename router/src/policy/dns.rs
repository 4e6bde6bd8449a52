//! DNS for the policy: blocklist queries, forward-confirmed reverse names,
//! whether a domain exists. One resolver (hickory) for the router, with
//! the servers of `policy.resolvers` (or `/etc/resolv.conf`), one attempt
//! per query bounded by `policy.dns_timeout`, and a cache whose TTLs are
//! clamped as postscreen clamps them: positive answers kept 60 s to 1 h,
//! negative ones at most 5 minutes (a newly listed client is not let
//! through for a day).
//!
//! Every lookup has three outcomes, as in Postfix: found, not found
//! (NXDOMAIN or no record of the type), or could not look it up (a timeout,
//! SERVFAIL, REFUSED, a broken reply). The third is never a refusal for
//! good: callers turn it into "not listed" or into a 4xx.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the type asked.
    Found(Vec<T>),
    /// NXDOMAIN, or the name has no record of that type.
    NotFound,
    /// No answer within the timeout.
    Timeout,
    /// SERVFAIL, REFUSED, a network error: could not look it up.
    Failed(String),
}

/// The policy's resolver.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    timeout: Duration,
}

/// Well-known public resolvers: DNS blocklists refuse their queries
/// (Spamhaus answers them `127.255.255.254`).
const PUBLIC_RESOLVERS: [&str; 10] = [
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
    "9.9.9.9",
    "149.112.112.112",
    "208.67.222.222",
    "208.67.220.220",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
];

impl Dns {
    /// A resolver asking `servers` (empty: the system's), each query within
    /// `timeout`. Also returns the servers it asks, for the start-up log.
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
    ) -> Result<(Dns, Vec<SocketAddr>), String> {
        let config = if servers.is_empty() {
            let (config, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read /etc/resolv.conf: {e}"))?;
            config
        } else {
            let mut config = ResolverConfig::from_parts(None, vec![], vec![]);
            for s in servers {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
            }
            config
        };
        let asked: Vec<SocketAddr> = config
            .name_servers()
            .iter()
            .map(|n| SocketAddr::new(n.ip, n.connections.first().map_or(53, |c| c.port)))
            .collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        opts.ndots = 0;
        opts.cache_size = 10_000;
        opts.positive_min_ttl = Some(Duration::from_secs(60));
        opts.positive_max_ttl = Some(Duration::from_secs(3600));
        opts.negative_max_ttl = Some(Duration::from_secs(300));
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        *builder.options_mut() = opts;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the resolver: {e}"))?;
        Ok((Dns { resolver, timeout }, asked))
    }

    /// The servers among `asked` that are well-known public resolvers.
    pub fn public(asked: &[SocketAddr]) -> Vec<SocketAddr> {
        asked
            .iter()
            .filter(|s| {
                PUBLIC_RESOLVERS
                    .iter()
                    .any(|p| p.parse::<IpAddr>().ok() == Some(s.ip()))
            })
            .copied()
            .collect()
    }

    async fn records(&self, name: &str, kind: RecordType) -> Answer<RData> {
        // The resolver has its own timeout; this one bounds everything else
        // (a server pool trying another connection, say) to little more.
        let bound = self.timeout + Duration::from_millis(200);
        let lookup = tokio::time::timeout(bound, self.resolver.lookup(name, kind)).await;
        match lookup {
            Err(_) => Answer::Timeout,
            Ok(Ok(l)) => {
                let found: Vec<RData> = l
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == kind)
                    .map(|r| r.data.clone())
                    .collect();
                if found.is_empty() {
                    Answer::NotFound
                } else {
                    Answer::Found(found)
                }
            }
            Ok(Err(e)) if e.is_no_records_found() => Answer::NotFound,
            Ok(Err(hickory_resolver::net::NetError::Timeout)) => Answer::Timeout,
            Ok(Err(e)) => Answer::Failed(e.to_string()),
        }
    }

    /// The A records of `name` (a fully qualified name, trailing dot).
    pub async fn a(&self, name: &str) -> Answer<Ipv4Addr> {
        map(self.records(name, RecordType::A).await, |d| match d {
            RData::A(a) => Some(a.0),
            _ => None,
        })
    }

    /// The first TXT record of `name`, for a blocklist's reason.
    pub async fn txt(&self, name: &str) -> Option<String> {
        match self.records(name, RecordType::TXT).await {
            Answer::Found(records) => records.into_iter().find_map(|d| match d {
                RData::TXT(t) => Some(t.to_string()),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The client's forward-confirmed reverse name: a PTR name of `ip`
    /// whose A or AAAA records include `ip`. `None` when there is none or
    /// the lookups fail (a host pattern then simply does not match).
    pub async fn verified_name(&self, ip: IpAddr) -> Option<String> {
        let ip = postern_shared::net::unmap(ip);
        let reverse = reverse_name(ip);
        let Answer::Found(ptrs) = self.records(&reverse, RecordType::PTR).await else {
            return None;
        };
        for d in ptrs.into_iter().take(5) {
            let RData::PTR(name) = d else { continue };
            let name = name.0.to_ascii();
            let kind = if ip.is_ipv4() {
                RecordType::A
            } else {
                RecordType::AAAA
            };
            if let Answer::Found(addrs) = self.records(&name, kind).await {
                let confirmed = addrs.iter().any(|a| match a {
                    RData::A(a) => IpAddr::V4(a.0) == ip,
                    RData::AAAA(a) => IpAddr::V6(a.0) == ip,
                    _ => false,
                });
                if confirmed {
                    let n = name.strip_suffix('.').unwrap_or(&name);
                    return Some(n.to_ascii_lowercase());
                }
            }
        }
        None
    }

    /// The MX records of `domain`: (preference, host without its final dot),
    /// lowest preference first.
    pub async fn mx(&self, domain: &str) -> Answer<(u16, String)> {
        let fqdn = format!("{}.", domain.strip_suffix('.').unwrap_or(domain));
        let mut a = map(self.records(&fqdn, RecordType::MX).await, |d| match d {
            RData::MX(mx) => Some((
                mx.preference,
                mx.exchange.to_ascii().trim_end_matches('.').to_string(),
            )),
            _ => None,
        });
        if let Answer::Found(v) = &mut a {
            v.sort();
        }
        a
    }

    /// The A and AAAA addresses of `host`: `Found` if there is one.
    pub async fn addresses(&self, host: &str) -> Answer<IpAddr> {
        let fqdn = format!("{}.", host.strip_suffix('.').unwrap_or(host));
        let (a, aaaa) = tokio::join!(
            self.records(&fqdn, RecordType::A),
            self.records(&fqdn, RecordType::AAAA),
        );
        let mut found = Vec::new();
        let mut worst: Answer<IpAddr> = Answer::NotFound;
        for r in [a, aaaa] {
            match r {
                Answer::Found(v) => found.extend(v.into_iter().filter_map(|d| match d {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Answer::NotFound => {}
                Answer::Timeout => worst = Answer::Timeout,
                Answer::Failed(e) => worst = Answer::Failed(e),
            }
        }
        if found.is_empty() {
            worst
        } else {
            Answer::Found(found)
        }
    }

    /// Whether `domain` has an A, AAAA or MX record (Postfix's
    /// `reject_unknown_*_domain`): `Found` if one of them exists.
    pub async fn domain_exists(&self, domain: &str) -> Answer<()> {
        let fqdn = format!("{}.", domain.strip_suffix('.').unwrap_or(domain));
        let (mx, a, aaaa) = tokio::join!(
            self.records(&fqdn, RecordType::MX),
            self.records(&fqdn, RecordType::A),
            self.records(&fqdn, RecordType::AAAA),
        );
        let all = [mx, a, aaaa];
        if all.iter().any(|r| matches!(r, Answer::Found(_))) {
            return Answer::Found(vec![()]);
        }
        if all.iter().all(|r| matches!(r, Answer::NotFound)) {
            return Answer::NotFound;
        }
        match all.into_iter().find(|r| !matches!(r, Answer::NotFound)) {
            Some(Answer::Failed(e)) => Answer::Failed(e),
            _ => Answer::Timeout,
        }
    }
}

fn map<T>(a: Answer<RData>, f: impl Fn(RData) -> Option<T>) -> Answer<T> {
    match a {
        Answer::Found(v) => {
            let out: Vec<T> = v.into_iter().filter_map(f).collect();
            if out.is_empty() {
                Answer::NotFound
            } else {
                Answer::Found(out)
            }
        }
        Answer::NotFound => Answer::NotFound,
        Answer::Timeout => Answer::Timeout,
        Answer::Failed(e) => Answer::Failed(e),
    }
}

/// `in-addr.arpa.` / `ip6.arpa.` name of an address.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(73);
            for byte in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.5".parse().expect("ip")),
            "5.2.0.192.in-addr.arpa."
        );
        assert!(reverse_name("2001:db8::1".parse().expect("ip")).starts_with("1.0.0.0."));
        assert!(reverse_name("2001:db8::1".parse().expect("ip"))
            .ends_with(".8.b.d.0.1.0.0.2.ip6.arpa."));
    }

    #[test]
    fn public_resolvers_are_recognised() {
        let asked: Vec<SocketAddr> = ["8.8.8.8:53", "127.0.0.1:53"]
            .iter()
            .map(|s| s.parse().expect("addr"))
            .collect();
        assert_eq!(Dns::public(&asked), vec![asked[0]]);
    }
}
