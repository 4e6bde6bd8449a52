//! A real DNS server for the policy tests: dnsmasq (Debian's
//! `dnsmasq-base`), started on a free loopback port with only the records a
//! test gives it, and stopped by its pid when the test ends.
//!
//! Names under a domain given as *local* are answered by dnsmasq alone:
//! NXDOMAIN unless a record is listed. A *parked* domain answers every name
//! under it with one address (as an expired blocklist domain does). A
//! *silent* domain is forwarded to a loopback port where nothing answers,
//! so its queries time out; a name outside every domain given is REFUSED
//! (no upstream server), which a resolver reports as a failure.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{closed_port, ChildGuard, DEADLINE};

/// What the server answers.
#[derive(Default)]
pub struct Zones {
    args: Vec<String>,
}

impl Zones {
    /// Names under `domain` are answered here (NXDOMAIN unless listed).
    pub fn local(mut self, domain: &str) -> Self {
        self.args.push(format!("--local=/{domain}/"));
        self
    }

    /// `name` has the A record `ip` (several calls: several records).
    pub fn a(mut self, name: &str, ip: &str) -> Self {
        self.args.push(format!("--host-record={name},{ip}"));
        self
    }

    /// `ip`'s reverse name (PTR) is `name`, without an address record.
    pub fn ptr(mut self, ip: &str, name: &str) -> Self {
        let o: Vec<&str> = ip.split('.').collect();
        self.args.push(format!(
            "--ptr-record={}.{}.{}.{}.in-addr.arpa,{name}",
            o[3], o[2], o[1], o[0]
        ));
        self
    }

    /// `name` has a TXT record.
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.args.push(format!("--txt-record={name},{text}"));
        self
    }

    /// `name` has a TXT record of exactly these bytes (one string of at
    /// most 255: dnsmasq's raw record, so that it may hold a NUL or a line
    /// break, as a hostile or broken zone's may).
    pub fn txt_bytes(mut self, name: &str, text: &[u8]) -> Self {
        let len = u8::try_from(text.len()).expect("a TXT string holds at most 255 bytes");
        let hex: String = std::iter::once(len)
            .chain(text.iter().copied())
            .map(|b| format!("{b:02x}"))
            .collect();
        self.args.push(format!("--dns-rr={name},16,{hex}"));
        self
    }

    /// `name` has an MX record pointing at `host`.
    pub fn mx(mut self, name: &str, host: &str) -> Self {
        self.args.push(format!("--mx-host={name},{host},10"));
        self
    }

    /// Every name under `domain` answers `ip`.
    pub fn parked(mut self, domain: &str, ip: &str) -> Self {
        self.args.push(format!("--address=/{domain}/{ip}"));
        self
    }

    /// Queries under `domain` are never answered.
    pub fn silent(mut self, domain: &str) -> Self {
        // A UDP port below the ephemeral range that nothing listens on.
        self.args
            .push(format!("--server=/{domain}/127.0.0.1#{}", closed_port()));
        self
    }
}

/// A running dnsmasq.
pub struct DnsServer {
    /// Where it listens (UDP and TCP).
    pub addr: SocketAddr,
    _child: ChildGuard,
}

impl DnsServer {
    /// Starts dnsmasq with `zones` and waits until it answers.
    pub fn start(zones: Zones) -> DnsServer {
        let port = closed_port();
        let child = Command::new("/usr/sbin/dnsmasq")
            .args([
                "--keep-in-foreground",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--no-negcache",
                "--conf-file=/dev/null",
                "--pid-file=",
                "--user=nobody",
            ])
            .arg(format!("--port={port}"))
            .args(&zones.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (tests/run installs dnsmasq-base)");
        let server = DnsServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: ChildGuard(child),
        };
        server.wait_ready();
        server
    }

    /// Asks for a name nobody has until an answer (any answer) comes back.
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let query: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x04test\x00\x00\x01\x00\x01";
        let start = Instant::now();
        let mut buf = [0u8; 512];
        while start.elapsed() < DEADLINE {
            let _ = sock.send_to(query, self.addr);
            if sock.recv(&mut buf).is_ok() {
                return;
            }
        }
        panic!("dnsmasq on {} did not answer", self.addr);
    }
}
