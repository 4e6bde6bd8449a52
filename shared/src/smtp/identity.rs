//! Forwarding the client's identity to a backend (SPEC §5), per the
//! server's `client_identity`:
//!
//! - `proxy-v1`, `proxy-v2`: the HAProxy PROXY header ([`proxy_v1`],
//!   [`proxy_v2`]), the connection's first bytes, before the greeting;
//! - `ipaddr`: `IPADDR FROM <ip>` after EHLO, whose reply is read and
//!   ignored (the seed's rule: other servers answer 500);
//! - `xclient`: Postfix's `XCLIENT` after EHLO, with only the attributes
//!   the backend advertised, values in xtext ([`xclient_command`]),
//!   expecting 220, then EHLO again;
//! - `none`: nothing.
//!
//! Sans-IO: smtpd's backend connection sends what is built here.

use std::net::{IpAddr, SocketAddr};

use crate::net::unmap;
use crate::smtp::xtext;

/// What a backend may learn about the client (SPEC §5).
pub struct ClientInfo<'a> {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The address and port the client connected to.
    pub local: SocketAddr,
    /// The client's HELO/EHLO argument.
    pub helo: Option<&'a str>,
    /// The client said EHLO.
    pub esmtp: bool,
    /// AUTH credentials to replay (auth-routed sessions).
    pub login: Option<(&'a str, &'a str)>,
}

/// Longest XCLIENT command line sent, CRLF excluded: RFC 5321's 512-octet
/// command line (§4.5.3.1.4). Postfix accepts up to its `line_length_limit`
/// (2048) and drops the connection beyond it; a client's own HELO must never
/// bring a line there.
pub const MAX_XCLIENT_LINE: usize = 510;

/// Longest HELO name forwarded: a domain has at most 255 octets (RFC 1035),
/// so a longer argument is no name, and the backend learns `[UNAVAILABLE]`.
const MAX_HELO_NAME: usize = 255;

/// `XCLIENT` with the advertised attributes only, HELO and PROTO first, ADDR
/// last. The client's own words (HELO, LOGIN) are sent as `[UNAVAILABLE]`
/// (the value Postfix defines for "not known") when they would take the
/// line past [`MAX_XCLIENT_LINE`], so the line always fits whatever the
/// client said; PROTO, NAME, PORT and ADDR are short and always sent whole
/// (ADDR is why XCLIENT is sent at all: no HELO may push it out).
pub fn xclient_command(advertised: &[String], c: &ClientInfo<'_>) -> String {
    const UNAVAILABLE: &str = "[UNAVAILABLE]";
    let ip = unmap(c.peer.ip());
    let addr = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPV6:{v6}"),
    };
    let helo = c.helo.map(|h| {
        if h.len() > MAX_HELO_NAME {
            UNAVAILABLE.to_string()
        } else {
            xtext(h)
        }
    });
    let candidates = [
        ("HELO", helo),
        (
            "PROTO",
            Some(if c.esmtp { "ESMTP" } else { "SMTP" }.to_string()),
        ),
        ("LOGIN", c.login.map(|(u, _)| xtext(u))),
        ("NAME", Some(UNAVAILABLE.to_string())),
        ("PORT", Some(c.peer.port().to_string())),
        ("ADDR", Some(addr)),
    ];
    let sent: Vec<(&str, String)> = candidates
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .filter(|(name, _)| advertised.iter().any(|a| a == name))
        .collect();
    // Room for every attribute — HELO and LOGIN at their shortest, the
    // others whole (at most 138 octets in all) — then HELO and LOGIN in
    // order while they fit.
    let shrinks = |name: &str| matches!(name, "HELO" | "LOGIN");
    let least = |name: &str, v: &str| {
        2 + name.len()
            + if shrinks(name) {
                v.len().min(UNAVAILABLE.len())
            } else {
                v.len()
            }
    };
    let mut room = MAX_XCLIENT_LINE
        .saturating_sub("XCLIENT".len() + sent.iter().map(|(n, v)| least(n, v)).sum::<usize>());
    let mut line = String::from("XCLIENT");
    for (name, value) in sent {
        let extra = value.len().saturating_sub(UNAVAILABLE.len());
        let value = if !shrinks(name) {
            value
        } else if extra <= room {
            room -= extra;
            value
        } else {
            UNAVAILABLE.to_string()
        };
        line.push(' ');
        line.push_str(name);
        line.push('=');
        line.push_str(&value);
    }
    line
}

/// Both endpoints in one address family (IPv4 when both can be).
fn same_family(peer: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (p, l) = (unmap(peer.ip()), unmap(local.ip()));
    let to_v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let (p, l) = if p.is_ipv4() == l.is_ipv4() {
        (p, l)
    } else {
        (to_v6(p), to_v6(l))
    };
    (
        SocketAddr::new(p, peer.port()),
        SocketAddr::new(l, local.port()),
    )
}

/// The PROXY protocol v1 line.
pub fn proxy_v1(peer: SocketAddr, local: SocketAddr) -> String {
    let (p, l) = same_family(peer, local);
    let fam = if p.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        p.ip(),
        l.ip(),
        p.port(),
        l.port()
    )
}

/// The PROXY protocol v2 header (command PROXY, TCP over IPv4 or IPv6, no TLVs).
pub fn proxy_v2(peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (p, l) = same_family(peer, local);
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x21);
    match (p.ip(), l.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&b.octets());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&b.octets());
        }
        _ => unreachable!("same_family returns one family"),
    }
    out.extend_from_slice(&p.port().to_be_bytes());
    out.extend_from_slice(&l.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn proxy_headers() {
        assert_eq!(
            proxy_v1(sa("203.0.113.5:40000"), sa("192.0.2.10:25")),
            "PROXY TCP4 203.0.113.5 192.0.2.10 40000 25\r\n"
        );
        assert_eq!(
            proxy_v1(
                sa("[::ffff:203.0.113.5]:40000"),
                sa("[::ffff:192.0.2.10]:25")
            ),
            "PROXY TCP4 203.0.113.5 192.0.2.10 40000 25\r\n"
        );
        assert_eq!(
            proxy_v1(sa("[2001:db8::5]:1"), sa("[::1]:25")),
            "PROXY TCP6 2001:db8::5 ::1 1 25\r\n"
        );
        // The worked example of research §4.5.
        let v2 = proxy_v2(sa("203.0.113.5:40000"), sa("192.0.2.10:25"));
        let expected: Vec<u8> = vec![
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11,
            0x00, 0x0C, 0xCB, 0x00, 0x71, 0x05, 0xC0, 0x00, 0x02, 0x0A, 0x9C, 0x40, 0x00, 0x19,
        ];
        assert_eq!(v2, expected);
        assert_eq!(
            proxy_v2(sa("[2001:db8::5]:1"), sa("127.0.0.1:25")).len(),
            52
        );
    }

    #[test]
    fn xclient_sends_only_advertised_attributes() {
        let c = ClientInfo {
            peer: sa("127.0.0.3:5555"),
            local: sa("127.0.0.1:25"),
            helo: Some("client host"),
            esmtp: true,
            login: None,
        };
        let adv: Vec<String> = ["NAME", "ADDR", "HELO"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            xclient_command(&adv, &c),
            "XCLIENT HELO=client+20host NAME=[UNAVAILABLE] ADDR=127.0.0.3"
        );
        let all: Vec<String> = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v6 = ClientInfo {
            peer: sa("[2001:db8::5]:7"),
            login: Some(("joe", "pw")),
            ..c
        };
        assert_eq!(
            xclient_command(&all, &v6),
            "XCLIENT HELO=client+20host PROTO=ESMTP LOGIN=joe NAME=[UNAVAILABLE] PORT=7 ADDR=IPV6:2001:db8::5"
        );
    }

    #[test]
    fn an_xclient_line_fits_whatever_the_client_said() {
        let all: Vec<String> = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let long = "a".repeat(2000);
        let c = ClientInfo {
            peer: sa("127.0.0.3:5555"),
            local: sa("127.0.0.1:25"),
            helo: Some(&long),
            esmtp: true,
            login: None,
        };
        // Longer than a domain can be: no name at all.
        assert_eq!(
            xclient_command(&all, &c),
            "XCLIENT HELO=[UNAVAILABLE] PROTO=ESMTP NAME=[UNAVAILABLE] PORT=5555 ADDR=127.0.0.3"
        );
        // 255 octets that xtext triples: the name does not fit, the rest does.
        let specials = "+".repeat(255);
        let login = "l".repeat(300);
        let c = ClientInfo {
            helo: Some(&specials),
            login: Some((&login, "pw")),
            ..c
        };
        let line = xclient_command(&all, &c);
        assert!(line.len() <= MAX_XCLIENT_LINE, "{} octets", line.len());
        assert!(
            line.starts_with("XCLIENT HELO=[UNAVAILABLE] PROTO=ESMTP LOGIN=lll"),
            "{line}"
        );
        assert!(line.ends_with(" ADDR=127.0.0.3"), "{line}");
        // A name that fits is sent as it is.
        let name = format!("{}.example", "h".repeat(240));
        let c = ClientInfo {
            helo: Some(&name),
            login: None,
            ..c
        };
        assert!(xclient_command(&all, &c).starts_with(&format!("XCLIENT HELO={name} ")));
        // An IPv6 client whose HELO and login nearly fill the line still has
        // its address sent whole (found by fuzz/identity).
        let helo = "h".repeat(255);
        let login = "l".repeat(170);
        let c = ClientInfo {
            peer: sa("[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            helo: Some(&helo),
            login: Some((&login, "pw")),
            ..c
        };
        let line = xclient_command(&all, &c);
        assert!(line.len() <= MAX_XCLIENT_LINE, "{} octets", line.len());
        assert!(
            line.ends_with(" PORT=65535 ADDR=IPV6:2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
            "{line}"
        );
    }
}
