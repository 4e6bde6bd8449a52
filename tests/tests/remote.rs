//! Clients that are not on loopback, for real: hosts in network namespaces
//! one veth away (`postern_tests::netns`), so that what postern decides by
//! the client's address — admin commands, relay lists, per-address limits,
//! IPv6 — is tested with remote addresses.

use std::net::{IpAddr, SocketAddr};

use postern_tests::netns::RemoteHost;
use postern_tests::*;

/// An SMTP dialogue from `host` (its address `from`) to `to`: EHLO, then
/// each line; one printed line per reply, `CODE first-line`.
const DIALOGUE: &str = r#"
import smtplib, sys
host, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP(host, port, source_address=(src, 0), timeout=20)
code, _ = s.ehlo("remote.example")
print(code)
for line in sys.argv[4:]:
    code, msg = s.docmd(line)
    print(code, msg.decode().splitlines()[0] if msg else "")
    if code == 221 or code == 421:
        break
"#;

fn dialogue(host: &RemoteHost, from: IpAddr, to: SocketAddr, lines: &[&str]) -> Vec<String> {
    let (ip, port, src) = (to.ip().to_string(), to.port().to_string(), from.to_string());
    let mut args = vec![ip.as_str(), port.as_str(), src.as_str()];
    args.extend_from_slice(lines);
    host.python(DIALOGUE, &args)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Postern listening on `listen` (addresses on this side of the veth
/// pairs), with `extra` lines in `[proxy]`, `servers` as its servers.
fn postern(tag: &str, listen: &[SocketAddr], proxy: &str, servers: &str) -> Postern {
    let dir = TempDir::new(tag);
    let listen: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    let conf = config_text(&dir, servers)
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [{}]", listen.join(", ")),
        )
        .replace("[proxy]\n", &format!("[proxy]\n{proxy}"));
    Postern::start(dir, &conf)
}

const ADMIN: &str = "admin_user = \"admin\"\nadmin_password = \"secret\"\n";

#[test]
fn admin_commands_follow_admin_networks_and_shutdown_stays_on_loopback() {
    let a = RemoteHost::new("admin");
    let one = RecordingBackend::start();
    let at = SocketAddr::new(IpAddr::V4(a.near4), closed_port());
    let proxy = format!(
        "{ADMIN}admin_networks = [\"127.0.0.0/8\"]\nupdate_address = \"update@mx.postern.test\"\n"
    );
    let p = postern(
        "remote-admin",
        &[at],
        &proxy,
        &server_block("One", one.port(), &["one.test"]),
    );
    let from = IpAddr::V4(a.addr4);
    let got = dialogue(
        &a,
        from,
        at,
        &[
            "RELOAD admin secret",
            "SHUTDOWN admin secret",
            "MAIL FROM:<admin@example.org>",
            "RCPT TO:<update@mx.postern.test>",
        ],
    );
    assert_eq!(
        got,
        [
            "250".to_string(),
            format!("550 5.7.1 Error: RELOAD is not allowed from {from}"),
            format!("550 5.7.1 Error: SHUTDOWN is not allowed from {from}"),
            "250 2.1.0 Ok".to_string(),
            "550 5.7.1 <update@mx.postern.test>: update mails are not accepted from this client"
                .to_string(),
        ]
    );
    // Its network in admin_networks: RELOAD from there works; SHUTDOWN
    // stays a loopback command.
    let conf = std::fs::read_to_string(p.config_path()).expect("config");
    let wider = conf.replace(
        "admin_networks = [\"127.0.0.0/8\"]",
        &format!("admin_networks = [\"127.0.0.0/8\", \"{}/24\"]", a.addr4),
    );
    std::fs::write(p.config_path(), wider).expect("write");
    assert!(p.cli(&["reload"]).status.success());
    let got = dialogue(
        &a,
        from,
        at,
        &["RELOAD admin secret", "SHUTDOWN admin secret"],
    );
    assert_eq!(got[1], "250 2.0.0 Configuration reloaded");
    assert_eq!(
        got[2],
        format!("550 5.7.1 Error: SHUTDOWN is not allowed from {from}")
    );
}

#[test]
fn a_relay_list_relays_for_its_remote_clients_only_and_the_backend_learns_their_address() {
    let (a, b) = (RemoteHost::new("relay-a"), RemoteHost::new("relay-b"));
    let one = RecordingBackend::start();
    let port = closed_port();
    let (at_a, at_a6, at_b) = (
        SocketAddr::new(IpAddr::V4(a.near4), port),
        SocketAddr::new(IpAddr::V6(a.near6), port),
        SocketAddr::new(IpAddr::V6(b.near6), port),
    );
    // A's IPv4 address and A's IPv6 network; B is in neither.
    let servers = server_block("One", one.port(), &["one.test"]).replace(
        "domains = ",
        &format!("relay = [\"{}\", \"{}/64\"]\ndomains = ", a.addr4, a.addr6),
    );
    let p = postern("remote-relay", &[at_a, at_a6, at_b], "", &servers);
    let mail = [
        "MAIL FROM:<s@customer.example>",
        "RCPT TO:<someone@elsewhere.test>",
    ];
    // A, in the list: relayed through One, whatever the domain.
    let got = dialogue(&a, IpAddr::V4(a.addr4), at_a, &mail);
    assert_eq!(
        got[1..].iter().map(|l| &l[..3]).collect::<Vec<_>>(),
        ["250", "250"],
        "{got:?}"
    );
    // A over IPv6, from its network in the list: relayed too.
    let got = dialogue(&a, IpAddr::V6(a.addr6), at_a6, &mail);
    assert_eq!(
        got[1..].iter().map(|l| &l[..3]).collect::<Vec<_>>(),
        ["250", "250"],
        "{got:?}"
    );
    // B, over IPv6 from an address outside the list: relaying denied.
    let got = dialogue(&b, IpAddr::V6(b.addr6), at_b, &mail);
    assert_eq!(
        got[2], "554 5.7.1 <someone@elsewhere.test>: Relaying denied",
        "{got:?}"
    );
    // A whole message from A: the backend learns A's address.
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=(sys.argv[3], 0), timeout=20)
print("refused:", s.sendmail("s@customer.example", ["someone@elsewhere.test"], "Subject: out\r\n\r\nhi\r\n"))
s.quit()
"#;
    let out = a.python(
        script,
        &[
            &a.near4.to_string(),
            &port.to_string(),
            &a.addr4.to_string(),
        ],
    );
    assert!(out.contains("refused: {}"), "{out}");
    let m = one.wait_messages(1);
    assert!(
        m[0].position(&format!("IPADDR FROM {}", a.addr4)).is_some(),
        "{:?}",
        m[0].commands
    );
    p.wait_log(&format!(
        "smtp connection forwarded from {} to One using ip-addr",
        a.addr4
    ));
}

#[test]
fn connection_limits_count_each_remote_address_apart() {
    let a = RemoteHost::new("limits");
    let second = a.add_address(3);
    let one = RecordingBackend::start();
    let at = SocketAddr::new(IpAddr::V4(a.near4), closed_port());
    let p = postern(
        "remote-limits",
        &[at],
        "max_connections_per_ip = 2\n",
        &server_block("One", one.port(), &["one.test"]),
    );
    // Three sessions at once from the first address, two from the second:
    // the third of the first is refused, the second address has its own count.
    let script = r#"
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
socks = []
for src in sys.argv[3:]:
    s = socket.create_connection((host, port), timeout=20, source_address=(src, 0))
    f = s.makefile("rb")
    greeting = f.readline().decode().strip()
    s.sendall(b"EHLO remote.example\r\n")
    reply = ""
    while True:
        line = f.readline().decode()
        reply = line.strip()
        if not line or line[3:4] != "-":
            break
    # The refusal comes as soon as the router has counted: after the
    # greeting or after the EHLO reply; the next line says it.
    if reply.startswith("250"):
        s.sendall(b"NOOP\r\n")
        reply = f.readline().decode().strip()
    print(src, reply)
    socks.append((s, f))
"#;
    let first = a.addr4.to_string();
    let second = second.to_string();
    let out = a.python(
        script,
        &[
            &a.near4.to_string(),
            &at.port().to_string(),
            &first,
            &first,
            &first,
            &second,
            &second,
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    for (i, l) in lines.iter().enumerate() {
        if i == 2 {
            assert!(
                l.contains(&format!(
                    "421 4.7.0 mx.postern.test Error: too many connections from {first} (2)"
                )),
                "{out}"
            );
        } else {
            assert!(
                l.split(' ').nth(1).is_some_and(|c| c.starts_with("250")),
                "{out}"
            );
        }
    }
    p.wait_log(&format!("refusing a connection from {first}"));
}
