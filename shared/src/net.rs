//! Address matching: networks in CIDR form ([`IpNet`]) and the seed's relay
//! patterns ([`IpPattern`]: an exact address, `*` octets such as `172.16.*.*`,
//! or a network).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network, `10.1.0.0/16` or `::1/128`; a bare address is a host network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A relay pattern failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an address, pattern or network")]
pub struct BadPattern;

impl IpNet {
    /// The network's address as written (see [`IpNet::normalized`]).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for a single address (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// The same network with its host bits cleared, an IPv4-mapped IPv6
    /// network (`::ffff:10.0.0.0/104`) written as IPv4 (`10.0.0.0/8`).
    pub fn normalized(self) -> IpNet {
        let (addr, prefix) = match self.addr {
            IpAddr::V6(v6) if self.prefix >= 96 && v6.to_ipv4_mapped().is_some() => (
                IpAddr::V4(v6.to_ipv4_mapped().expect("checked just above")),
                self.prefix - 96,
            ),
            a => (a, self.prefix),
        };
        IpNet {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    /// True when `ip` is inside this network. IPv4-mapped IPv6 clients match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Networks shorter than these prefixes are *wide* ([`IpNet::wide`]): more
/// than a /8 of IPv4 (16.7 million addresses, as much as the largest
/// private range, 10/8), more than a /16 of IPv6 (outside the unique-local
/// fc00::/7 and link-local fe80::/10, which are never wide).
pub const WIDE_V4_PREFIX: u8 = 8;
/// See [`WIDE_V4_PREFIX`].
pub const WIDE_V6_PREFIX: u8 = 16;

impl IpNet {
    /// Why this network is too wide to trust (relay clients, admin
    /// networks), or `None`: see [`WIDE_V4_PREFIX`].
    pub fn wide(&self) -> Option<String> {
        match self.addr {
            IpAddr::V4(_) if self.prefix < WIDE_V4_PREFIX => Some(if self.prefix == 0 {
                "covers every IPv4 address".into()
            } else {
                format!(
                    "is wider than a /{WIDE_V4_PREFIX}: it covers 2^{} IPv4 addresses",
                    32 - self.prefix
                )
            }),
            IpAddr::V6(a) if self.prefix < WIDE_V6_PREFIX => {
                let first = a.segments()[0];
                let private = (self.prefix >= 7 && first & 0xfe00 == 0xfc00)
                    || (self.prefix >= 10 && first & 0xffc0 == 0xfe80);
                (!private).then(|| {
                    if self.prefix == 0 {
                        "covers every IPv6 address".into()
                    } else {
                        format!("is wider than a /{WIDE_V6_PREFIX} of IPv6")
                    }
                })
            }
            _ => None,
        }
    }
}

impl FromStr for IpNet {
    type Err = BadPattern;
    fn from_str(s: &str) -> Result<Self, BadPattern> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| BadPattern)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or(BadPattern)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A relay-list entry: a network, or an IPv4 address with `*` octets (the seed's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpPattern {
    /// Address or CIDR network.
    Net(IpNet),
    /// Four octets, each a number or `*`.
    Wildcard([Option<u8>; 4]),
}

impl IpPattern {
    /// True when `ip` matches.
    pub fn matches(&self, ip: IpAddr) -> bool {
        match self {
            IpPattern::Net(n) => n.contains(ip),
            IpPattern::Wildcard(octets) => match unmap(ip) {
                IpAddr::V4(v4) => octets
                    .iter()
                    .zip(v4.octets())
                    .all(|(want, got)| want.is_none_or(|w| w == got)),
                IpAddr::V6(_) => false,
            },
        }
    }
}

impl IpPattern {
    /// Why this pattern is too wide to trust, or `None`: a network as
    /// [`IpNet::wide`]; a `*` pattern when it matches more than a /8, that
    /// is when its first octet is `*` (`*.*.*.*`, `*.1.*.*`: every /8 of
    /// the internet) or it has three `*`s.
    pub fn wide(&self) -> Option<String> {
        match self {
            IpPattern::Net(n) => n.wide(),
            IpPattern::Wildcard(octets) => {
                let stars = octets.iter().filter(|o| o.is_none()).count();
                if stars == 4 {
                    Some("covers every IPv4 address".into())
                } else if octets[0].is_none() {
                    Some("matches addresses in every /8 of the IPv4 internet".into())
                } else {
                    // Three stars behind a fixed first octet is exactly a /8.
                    None
                }
            }
        }
    }
}

impl FromStr for IpPattern {
    type Err = BadPattern;
    fn from_str(s: &str) -> Result<Self, BadPattern> {
        let s = s.trim();
        if s.contains('*') {
            let parts: Vec<&str> = s.split('.').collect();
            if parts.len() != 4 {
                return Err(BadPattern);
            }
            let mut octets = [None; 4];
            for (o, p) in octets.iter_mut().zip(parts) {
                *o = match p {
                    "*" => None,
                    n => Some(n.parse::<u8>().map_err(|_| BadPattern)?),
                };
            }
            return Ok(IpPattern::Wildcard(octets));
        }
        s.parse().map(IpPattern::Net)
    }
}

/// `ip` with every bit after the first `prefix` cleared (IPv4 prefixes
/// count from 32, IPv6 from 128; longer ones change nothing).
pub fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v4) & m).into())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & m).into())
        }
    }
}

/// An address for display, IPv4 written without `core::fmt`'s number
/// formatting (a session writes its client's address some eight times:
/// its log lines and its router requests; `Ipv4Addr`'s own `Display` costs
/// about a thousand instructions each time). IPv6 as `Ipv6Addr` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayIp(pub IpAddr);

impl std::fmt::Display for DisplayIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let IpAddr::V4(v4) = self.0 else {
            return std::fmt::Display::fmt(&self.0, f);
        };
        let mut buf = [0u8; 15];
        let mut n = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[n] = b'.';
                n += 1;
            }
            if octet >= 100 {
                buf[n] = b'0' + octet / 100;
                n += 1;
            }
            if octet >= 10 {
                buf[n] = b'0' + octet / 10 % 10;
                n += 1;
            }
            buf[n] = b'0' + octet % 10;
            n += 1;
        }
        f.pad(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)
    }
}

/// `::ffff:1.2.3.4` → `1.2.3.4`, so that IPv4 rules apply to clients of a dual-stack socket.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_display_as_std_does() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "127.0.0.1",
            "192.168.255.250",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(DisplayIp(ip).to_string(), ip.to_string());
            assert_eq!(format!("{:>17}", DisplayIp(ip)), format!("{ip:>17}"));
        }
        for a in 0..=255u8 {
            let ip = IpAddr::from([a, 255 - a, a / 3, 7]);
            assert_eq!(DisplayIp(ip).to_string(), ip.to_string());
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn networks() {
        let n: IpNet = "10.1.0.0/16".parse().expect("net");
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")));
        let all: IpNet = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains(ip("8.8.8.8")));
        let v6: IpNet = "::1/128".parse().expect("net");
        assert!(v6.contains(ip("::1")) && !v6.contains(ip("::2")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("host.example".parse::<IpNet>().is_err());
        let mapped: IpNet = "::ffff:10.1.2.3/104".parse().expect("net");
        assert_eq!(mapped.normalized().to_string(), "10.0.0.0/8");
        let loose: IpNet = "2001:db8::1/32".parse().expect("net");
        assert_eq!(loose.normalized().to_string(), "2001:db8::/32");
        assert!(!loose.is_host() && "::1".parse::<IpNet>().expect("net").is_host());
    }

    #[test]
    fn wide_networks_and_patterns() {
        let wide = |s: &str| s.parse::<IpPattern>().expect("pattern").wide().is_some();
        for w in [
            "0.0.0.0/0",
            "*.*.*.*",
            "*.1.2.3",
            "128.0.0.0/1",
            "10.0.0.0/7",
            "::/0",
            "2000::/3",
            "2001::/15",
        ] {
            assert!(wide(w), "{w} is wide");
        }
        for n in [
            "10.0.0.0/8",
            "10.*.*.*",
            "172.16.0.0/12",
            "193.56.147.87",
            "172.16.*.*",
            "2001:db8::/32",
            "2001::/16",
            "fc00::/7",
            "fe80::/10",
            "::1/128",
        ] {
            assert!(!wide(n), "{n} is not wide");
        }
        let all: IpNet = "0.0.0.0/0".parse().expect("net");
        assert_eq!(all.wide().as_deref(), Some("covers every IPv4 address"));
    }

    #[test]
    fn wildcard_patterns() {
        let p: IpPattern = "172.16.*.*".parse().expect("pattern");
        assert!(p.matches(ip("172.16.4.5")));
        assert!(!p.matches(ip("172.17.4.5")));
        assert!(!p.matches(ip("::1")));
        assert!("172.16.*".parse::<IpPattern>().is_err());
        assert!("172.300.*.*".parse::<IpPattern>().is_err());
        let exact: IpPattern = "193.56.147.87".parse().expect("pattern");
        assert!(exact.matches(ip("193.56.147.87")) && !exact.matches(ip("193.56.147.88")));
    }
}
