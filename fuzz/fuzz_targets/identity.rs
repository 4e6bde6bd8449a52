//! What a backend learns of the client, for any addresses, ports, HELO
//! name and login: the PROXY v1 line and the v2 header read back (by the
//! protocol's rules, written out here) as the client's and the local
//! address, in one family; the XCLIENT line stays within 510 octets, holds
//! printable US-ASCII only, sends only what the backend advertised, and
//! names the client's address last.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use postern_shared::net::unmap;
use postern_shared::smtp::identity::{proxy_v1, proxy_v2, xclient_command, ClientInfo};

/// An address from 17 bytes: the first says the family.
fn addr(b: &[u8]) -> Option<IpAddr> {
    let (&kind, rest) = b.split_first()?;
    Some(if kind % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&rest[..16]).ok()?))
    })
}

/// The PROXY v1 line, read as a receiver does.
fn read_v1(line: &str) -> (SocketAddr, SocketAddr) {
    let body = line.strip_suffix("\r\n").expect("CRLF at the end");
    assert!(line.len() <= 107, "a v1 line is at most 107 bytes");
    let f: Vec<&str> = body.split(' ').collect();
    assert_eq!(f.len(), 6, "{line:?}");
    assert_eq!(f[0], "PROXY");
    let (src, dst): (IpAddr, IpAddr) = (f[2].parse().expect("src"), f[3].parse().expect("dst"));
    match f[1] {
        "TCP4" => assert!(src.is_ipv4() && dst.is_ipv4()),
        "TCP6" => assert!(src.is_ipv6() && dst.is_ipv6()),
        other => panic!("family {other}"),
    }
    (
        SocketAddr::new(src, f[4].parse().expect("sport")),
        SocketAddr::new(dst, f[5].parse().expect("dport")),
    )
}

/// The PROXY v2 header, read as a receiver does.
fn read_v2(h: &[u8]) -> (SocketAddr, SocketAddr) {
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n", "signature");
    assert_eq!(h[12], 0x21, "version 2, PROXY");
    let len = usize::from(u16::from_be_bytes([h[14], h[15]]));
    assert_eq!(h.len(), 16 + len, "length");
    let a = &h[16..];
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    match h[13] {
        0x11 => {
            assert_eq!(len, 12);
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            (
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        0x21 => {
            assert_eq!(len, 36);
            let ip = |i: usize| {
                IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(&a[i..i + 16]).expect("16"),
                ))
            };
            (
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        other => panic!("family byte {other:#x}"),
    }
}

/// Two endpoints are the same client (an IPv4 address may come mapped into IPv6).
fn same(a: SocketAddr, b: SocketAddr) {
    assert_eq!(unmap(a.ip()), unmap(b.ip()));
    assert_eq!(a.port(), b.port());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 40 {
        return;
    }
    let (Some(p), Some(l)) = (addr(&data[..17]), addr(&data[17..34])) else {
        return;
    };
    let peer = SocketAddr::new(p, u16::from_be_bytes([data[34], data[35]]));
    let local = SocketAddr::new(l, u16::from_be_bytes([data[36], data[37]]));
    let advertised_bits = data[38];
    let rest = String::from_utf8_lossy(&data[39..]).into_owned();
    let (helo, login) = rest.split_once('\u{1}').unwrap_or((&rest, ""));

    let (s, d) = read_v1(&proxy_v1(peer, local));
    same(s, peer);
    same(d, local);
    let (s, d) = read_v2(&proxy_v2(peer, local));
    same(s, peer);
    same(d, local);

    let names = ["HELO", "PROTO", "LOGIN", "NAME", "PORT", "ADDR"];
    let advertised: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| advertised_bits & (1 << i) != 0)
        .map(|(_, n)| n.to_string())
        .collect();
    let info = ClientInfo {
        peer,
        local,
        helo: Some(helo),
        esmtp: advertised_bits & 0x80 != 0,
        login: (!login.is_empty()).then_some((login, "secret")),
    };
    let line = xclient_command(&advertised, &info);
    assert!(line.len() <= 510, "{} octets", line.len());
    assert!(line.bytes().all(|b| (0x20..0x7f).contains(&b)), "{line:?}");
    for attr in line.split(' ').skip(1) {
        let (name, _) = attr.split_once('=').expect("NAME=value");
        assert!(
            advertised.iter().any(|a| a == name),
            "{name} was not advertised"
        );
    }
    if advertised.iter().any(|a| a == "ADDR") {
        let want = match unmap(peer.ip()) {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPV6:{v6}"),
        };
        assert!(line.ends_with(&format!(" ADDR={want}")), "{line}");
    }
});
