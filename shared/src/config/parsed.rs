//! Values parsed once, when the configuration is read: parse, don't
//! validate. A list of networks is a list of [`IpNet`] from then on, and a
//! check at every connection (`admin_networks`) compares addresses instead
//! of parsing text.
//!
//! [`Parsed<T>`] keeps the text as written beside its value: messages quote
//! it (`"::/0" covers every IPv6 address`), and the configuration the master
//! sends its workers, or prints, writes it unchanged. Text that does not
//! parse is refused while the file is read, in the words `validate()` used
//! to say it; `explain.rs` names the key and adds the line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::dnsbl::{Kind, Zone};
use crate::net::{IpNet, IpPattern};

use super::PolicyListen;

/// A value that a configuration string stands for.
pub trait FromText: Sized {
    /// The value of `text`, or what is wrong with it, in one line that
    /// quotes it.
    fn from_text(text: &str) -> Result<Self, String>;
}

/// A value parsed from its configuration text, which it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    text: String,
    value: T,
}

impl<T: FromText> Parsed<T> {
    /// Parses `text`.
    pub fn new(text: &str) -> Result<Parsed<T>, String> {
        Ok(Parsed {
            value: T::from_text(text)?,
            text: text.to_string(),
        })
    }

    /// A value written in the code (a default), which parses.
    pub(super) fn known(text: &str) -> Parsed<T> {
        Parsed::new(text).expect("the defaults of the code parse")
    }
}

impl<T> Parsed<T> {
    /// The text as written in the file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }
}

impl<T> Deref for Parsed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Display for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A value equals the text it was written as.
impl<T> PartialEq<&str> for Parsed<T> {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl<'de, T: FromText> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Parsed::new(&text).map_err(serde::de::Error::custom)
    }
}

impl<T> Serialize for Parsed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// `proxy.admin_networks`, `policy.skip_networks`.
impl FromText for IpNet {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not an address or network such as \"127.0.0.0/8\""))
    }
}

/// `server.relay`.
impl FromText for IpPattern {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse().map_err(|_| {
            format!("{text:?} is not an address, a pattern such as \"172.16.*.*\" or a network")
        })
    }
}

/// `policy_server.listen`: `"127.0.0.1:10023"`, `"[::1]:10023"` or
/// `"unix:/absolute/path"`.
impl FromText for PolicyListen {
    fn from_text(text: &str) -> Result<Self, String> {
        let listen = match text.strip_prefix("unix:") {
            Some(p) if Path::new(p).is_absolute() => Some(PolicyListen::Unix(p.into())),
            Some(_) => None,
            None => text.parse().ok().map(PolicyListen::Tcp),
        };
        listen.ok_or_else(|| {
            format!("{text:?} is not an address:port such as \"127.0.0.1:10023\" nor \"unix:/run/postern/policy.sock\"")
        })
    }
}

/// A DNS server of `policy.resolvers`: `"127.0.0.1:53"`, `"[::1]:5353"`, or
/// a bare address for port 53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolver(pub SocketAddr);

impl FromText for Resolver {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse::<SocketAddr>()
            .ok()
            .or_else(|| {
                text.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map(Resolver)
            .ok_or_else(|| {
                format!("{text:?} is not an address such as \"127.0.0.1\" or \"127.0.0.1:53\"")
            })
    }
}

/// A zone of `policy.dnsbl`: `zone[=filter[=reply-name]]`, looked up by
/// client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientZone(pub Zone);

impl FromText for ClientZone {
    fn from_text(text: &str) -> Result<Self, String> {
        Zone::parse(text, Kind::Client).map(ClientZone)
    }
}

/// A zone of `policy.rhsbl`: `zone[=filter[=reply-name]]`, looked up by
/// sender domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainZone(pub Zone);

impl FromText for DomainZone {
    fn from_text(text: &str) -> Result<Self, String> {
        Zone::parse(text, Kind::SenderDomain).map(DomainZone)
    }
}

/// The address of `metrics.listen` (whether it is a loopback one is
/// `validate()`'s question).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub SocketAddr);

impl FromText for MetricsAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        text.parse()
            .map(MetricsAddr)
            .map_err(|_| format!("{text:?} is not an address:port such as \"127.0.0.1:9125\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_text_and_refuses_in_validate_s_words() {
        let n: Parsed<IpNet> = Parsed::new(" 10.1.2.3/8").expect("a network");
        assert_eq!(n.text(), " 10.1.2.3/8");
        assert!(n.contains("10.9.9.9".parse().expect("ip")));
        assert_eq!(
            Parsed::<IpNet>::new("ten").map(|_| ()),
            Err("\"ten\" is not an address or network such as \"127.0.0.0/8\"".into())
        );
        let r: Parsed<Resolver> = Parsed::new("::1").expect("an address");
        assert_eq!(r.0, "[::1]:53".parse().expect("socket address"));
        assert!(Parsed::<PolicyListen>::new("unix:relative").is_err());
        assert!(Parsed::<IpPattern>::new("172.16.*.*").is_ok());
        assert!(Parsed::<MetricsAddr>::new("localhost:9125").is_err());
    }
}
