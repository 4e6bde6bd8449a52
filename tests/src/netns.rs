//! Clients that are not on loopback: a host of its own in a network
//! namespace, joined to this one by a veth pair (iproute2's `ip netns`,
//! `ip link`), so that what postern decides by the client's address
//! (admin_networks, relay lists, per-address limits, IPv6 and IPv4-mapped
//! addresses) meets real remote addresses.
//!
//! [`RemoteHost::new`] creates namespace `pt<pid>n<k>` with a veth pair:
//! this side `10.<a>.<b>.1/24` and `fd00:<a>:<b>::1/64`, the namespace's
//! side `10.<a>.<b>.2/24` and `fd00:<a>:<b>::2/64` (more addresses with
//! [`RemoteHost::add_address`]). Dropping it deletes the namespace, which
//! takes the pair with it. Needs root (tests/run runs as root).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A host in a network namespace of its own, one veth away.
pub struct RemoteHost {
    /// The namespace's name.
    pub name: String,
    /// This side's addresses (where postern listens for it).
    pub near4: Ipv4Addr,
    /// This side's IPv6 address.
    pub near6: Ipv6Addr,
    /// The host's own addresses, as postern sees its client.
    pub addr4: Ipv4Addr,
    /// The host's IPv6 address.
    pub addr6: Ipv6Addr,
    veth: String,
}

/// Runs `ip ARGS…`, panicking with its output when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ip (iproute2; tests/run installs it)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl RemoteHost {
    /// A new host; `tag` only names it in failures.
    pub fn new(tag: &str) -> RemoteHost {
        static N: AtomicU32 = AtomicU32::new(0);
        let k = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("pt{pid}n{k}");
        // Interface names: 15 bytes at most.
        let veth = format!("pv{}{k}", pid % 100_000);
        let (a, b) = ((pid % 200 + 20) as u8, (k % 250 + 1) as u8);
        let host = RemoteHost {
            near4: Ipv4Addr::new(10, a, b, 1),
            addr4: Ipv4Addr::new(10, a, b, 2),
            near6: format!("fd00:{a}:{b}::1").parse().expect("v6"),
            addr6: format!("fd00:{a}:{b}::2").parse().expect("v6"),
            name,
            veth,
        };
        let (h, n) = (format!("{}h", host.veth), format!("{}n", host.veth));
        ip(&["netns", "add", &host.name]);
        ip(&["link", "add", &h, "type", "veth", "peer", "name", &n]);
        ip(&["link", "set", &n, "netns", &host.name]);
        ip(&["addr", "add", &format!("{}/24", host.near4), "dev", &h]);
        ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", host.near6),
            "dev",
            &h,
            "nodad",
        ]);
        ip(&["link", "set", &h, "up"]);
        let ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &host.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        ns(&["addr", "add", &format!("{}/24", host.addr4), "dev", &n]);
        ns(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", host.addr6),
            "dev",
            &n,
            "nodad",
        ]);
        ns(&["link", "set", &n, "up"]);
        ns(&["link", "set", "lo", "up"]);
        let _ = tag;
        host
    }

    /// Gives the host one more address (IPv4 `10.<a>.<b>.<last>`); returns it.
    pub fn add_address(&self, last: u8) -> IpAddr {
        let o = self.addr4.octets();
        let a = Ipv4Addr::new(o[0], o[1], o[2], last);
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "addr",
            "add",
            &format!("{a}/24"),
            "dev",
            &format!("{}n", self.veth),
        ]);
        IpAddr::V4(a)
    }

    /// Runs `program ARGS…` on the host (inside its namespace).
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ip netns exec")
    }

    /// Runs a Python script on the host; returns its stdout, panicking on failure.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let mut all = vec!["-c", script];
        all.extend_from_slice(args);
        let out = self.run("python3", &all);
        assert!(
            out.status.success(),
            "python on {}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}
