//! The routing proxy (SPEC §4-6): ip-addr / auth / domain routes and their
//! precedence, AUTH, identity forwarding, STARTTLS, limits, admin commands.

use std::process::Command;

use postern_tests::*;

/// A server block with extra lines (relay, user, client_identity…).
fn server(name: &str, port: u16, domains: &[&str], extra: &str) -> String {
    server_block(name, port, domains).replace("domains = ", &format!("{extra}\ndomains = "))
}

/// Customer A: relay for 127.0.0.2, credentials alice/wonderland, a.test.
/// Customer B: credentials bob/builder, b.test.
fn customers(tag: &str, proxy_extra: &str) -> (Postern, RecordingBackend, RecordingBackend) {
    let a = RecordingBackend::start();
    let b = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let servers = server(
        "Customer A",
        a.port(),
        &["a.test"],
        "relay = [\"127.0.0.2\", \"10.9.*.*\"]\nuser = \"alice\"\npassword = \"wonderland\"",
    ) + &server(
        "Customer B",
        b.port(),
        &["b.test"],
        "user = \"bob\"\npassword = \"builder\"",
    );
    let conf =
        config_text(&dir, &servers).replace("hostname = ", &format!("{proxy_extra}\nhostname = "));
    (Postern::start(dir, &conf), a, b)
}

fn swaks_from(p: &Postern, from_ip: &str, args: &[&str]) -> (String, bool) {
    let mut all = vec!["--local-interface", from_ip, "--from", "sender@example.org"];
    all.extend_from_slice(args);
    swaks(p.addr, &all)
}

#[test]
fn a_relay_client_by_address_may_send_anywhere_through_its_server() {
    let (p, a, b) = customers("px-ipaddr", "");
    let (out, ok) = swaks_from(&p, "127.0.0.2", &["--to", "someone@elsewhere.test"]);
    assert!(ok, "{out}");
    let m = a.wait_messages(1);
    assert!(m[0].position("RCPT TO:<someone@elsewhere.test>").is_some());
    assert!(
        m[0].position("IPADDR FROM 127.0.0.2").is_some(),
        "{:?}",
        m[0].commands
    );
    // Even a recipient of customer B goes to A's server: the whole session is A's.
    let (out, ok) = swaks_from(&p, "127.0.0.2", &["--to", "x@b.test"]);
    assert!(ok, "{out}");
    assert_eq!(a.wait_messages(2).len(), 2);
    assert_eq!(b.connections(), 0);
    p.wait_log("smtp connection forwarded from 127.0.0.2 to Customer A using ip-addr");
    // Another address is not a relay client.
    let (out, ok) = swaks_from(&p, "127.0.0.3", &["--to", "someone@elsewhere.test"]);
    assert!(
        !ok && out.contains("554 5.7.1 <someone@elsewhere.test>: Relaying denied"),
        "{out}"
    );
}

#[test]
fn a_client_authenticated_with_a_servers_credentials_relays_through_it() {
    let (p, a, b) = customers("px-auth", "");
    for mech in ["PLAIN", "LOGIN"] {
        let (out, ok) = swaks_from(
            &p,
            "127.0.0.3",
            &[
                "--to",
                "far@elsewhere.test",
                "--auth",
                mech,
                "--auth-user",
                "bob",
                "--auth-password",
                "builder",
            ],
        );
        assert!(ok, "{mech}: {out}");
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    let got = b.wait_messages(2);
    for m in &got {
        let auth = m
            .position("AUTH PLAIN ")
            .expect("AUTH replayed to the backend");
        let mail = m.position("MAIL FROM:").expect("MAIL");
        assert!(auth < mail);
        assert_eq!(
            m.commands[auth], "AUTH PLAIN AGJvYgBidWlsZGVy",
            "\\0bob\\0builder"
        );
    }
    assert_eq!(a.connections(), 0);
    p.wait_log("smtp connection forwarded from 127.0.0.3 to Customer B using auth");

    let (out, ok) = swaks_from(
        &p,
        "127.0.0.3",
        &[
            "--to",
            "far@elsewhere.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "nope",
        ],
    );
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let log = p.log();
    assert!(
        log.contains("authentication failed from 127.0.0.3"),
        "{log}"
    );
    for secret in ["builder", "nope", "AGJvYgBidWlsZGVy"] {
        assert!(
            !log.contains(secret),
            "a credential reached the log: {secret}"
        );
    }
}

#[test]
fn the_client_address_comes_before_auth_which_comes_before_the_domain() {
    let (p, a, b) = customers("px-precedence", "");
    // 127.0.0.2 is A's relay client; authenticating as B does not move it.
    let (out, ok) = swaks_from(
        &p,
        "127.0.0.2",
        &[
            "--to",
            "u@b.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "builder",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(a.wait_messages(1).len(), 1);
    assert_eq!(b.connections(), 0);
    // AUTH as A, mail for B's domain: auth wins over the domain.
    let (out, ok) = swaks_from(
        &p,
        "127.0.0.4",
        &[
            "--to",
            "u@b.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "wonderland",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(a.wait_messages(2).len(), 2);
    assert_eq!(b.connections(), 0);
    // Neither: the domain decides.
    let (out, ok) = swaks_from(&p, "127.0.0.4", &["--to", "u@b.test"]);
    assert!(ok, "{out}");
    assert_eq!(b.wait_messages(1).len(), 1);
}

/// research §3.5: none of these may be routed for a client that is not a relay client.
#[test]
fn the_relay_test_list_is_denied_for_every_sender() {
    let (p, a, b) = customers("px-relaytests", "");
    let local = "a.test";
    // Each with the reply it must get: relaying denied, or a syntax error
    // (a bare <Postmaster> first in a transaction has no server to go to:
    // it must name its domain).
    let rcpts: Vec<(String, &str)> = vec![
        ("<user@victim.test>".to_string(), "554 5.7.1 "),
        (format!("<user%victim.test@{local}>"), "554 5.7.1 "),
        ("<user%victim.test@[127.0.0.1]>".to_string(), "554 5.7.1 "),
        (
            "<user%victim.test@mx.postern.test>".to_string(),
            "554 5.7.1 ",
        ),
        ("<\"user@victim.test\">".to_string(), "501 5.1.3 "),
        ("<\"user%victim.test\">".to_string(), "501 5.1.3 "),
        (format!("<\"user@victim.test\"@{local}>"), "554 5.7.1 "),
        (
            "<\"user@victim.test\"@[127.0.0.1]>".to_string(),
            "554 5.7.1 ",
        ),
        (format!("<user@victim.test@{local}>"), "501 5.1.3 "),
        ("<user@victim.test@[127.0.0.1]>".to_string(), "501 5.1.3 "),
        (
            "<user@victim.test@mx.postern.test>".to_string(),
            "501 5.1.3 ",
        ),
        (format!("<@{local}:user@victim.test>"), "554 5.7.1 "),
        ("<@[127.0.0.1]:user@victim.test>".to_string(), "554 5.7.1 "),
        (
            "<@mx.postern.test,@relay.test:user@victim.test>".to_string(),
            "554 5.7.1 ",
        ),
        ("<victim.test!user>".to_string(), "501 5.1.3 "),
        (format!("<victim.test!user@{local}>"), "554 5.7.1 "),
        ("<victim.test!user@[127.0.0.1]>".to_string(), "554 5.7.1 "),
        (format!("<[1.2.3.4]!user@{local}>"), "501 5.1.3 "),
        (format!("<user@[1.2.3.4]@{local}>"), "501 5.1.3 "),
        (format!("<user%[1.2.3.4]@{local}>"), "501 5.1.3 "),
        (format!("<user\\@victim.test@{local}>"), "501 5.1.3 "),
        (format!("<user@{local}.victim.test>"), "554 5.7.1 "),
        ("<user@evila.test>".to_string(), "554 5.7.1 "),
        ("<user@sub.a.test>".to_string(), "554 5.7.1 "),
        ("<user@>".to_string(), "501 5.1.3 "),
        ("<user>".to_string(), "501 5.1.3 "),
        ("<@>".to_string(), "501 5.1.3 "),
        ("<@@>".to_string(), "501 5.1.3 "),
        ("<!>".to_string(), "501 5.1.3 "),
        ("<user@[127.0.0.1]>".to_string(), "554 5.7.1 "),
        ("<user@[IPv6:::1]>".to_string(), "554 5.7.1 "),
        ("<user@localhost>".to_string(), "554 5.7.1 "),
        ("<user@127.0.0.1>".to_string(), "501 5.1.3 "),
        ("<user@[321.1.2.3]>".to_string(), "501 5.1.3 "),
        ("<user@1.2.3>".to_string(), "501 5.1.3 "),
        ("<user@host:25>".to_string(), "501 5.1.3 "),
        (format!("<a@{local}> <b@victim.test>"), "501 5.1.3 "),
        ("<user@exa mple.com>".to_string(), "501 5.1.3 "),
        ("<Postmaster>".to_string(), "550 5.1.1 "),
    ];
    // Syntax errors count towards the error limit (20 a session): a few
    // recipients per session keep every session below it.
    for (sender, chunk) in ["<>", "<x@a.test>", "<x@[127.0.0.1]>"]
        .iter()
        .flat_map(|s| rcpts.chunks(8).map(move |c| (s, c)))
    {
        let mut raw = Raw::connect_from("127.0.0.5", p.addr);
        raw.cmd("EHLO relay-tester.example");
        let r = raw.cmd(&format!("MAIL FROM:{sender}"));
        assert!(r.starts_with("250"), "MAIL FROM:{sender} → {r}");
        for (rcpt, want) in chunk {
            let r = raw.cmd(&format!("RCPT TO:{rcpt}"));
            assert!(
                r.starts_with(want),
                "RCPT TO:{rcpt} (from {sender}) → {r}, not {want}"
            );
            if want.starts_with("554") {
                assert!(r.contains("Relaying denied"), "{r}");
            }
        }
        // The positive control: a local recipient in upper case is accepted.
        let r = raw.cmd("RCPT TO:<user@A.TEST>");
        assert!(r.starts_with("250"), "{r}");
        raw.cmd("RSET");
        raw.cmd("QUIT");
    }
    let bytes = String::from_utf8_lossy(&a.all_bytes()).into_owned();
    assert!(
        !bytes.contains("victim"),
        "a relay attempt reached a backend:\n{bytes}"
    );
    assert_eq!(b.connections(), 0);
}

#[test]
fn a_second_servers_recipient_is_deferred_then_delivered_in_a_later_transaction() {
    let (p, a, b) = customers("px-split", "");
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.ehlo("client.example")
msg = "Subject: two customers\r\n\r\nhello both\r\n"
refused = s.sendmail("x@example.org", ["one@a.test", "two@b.test"], msg)
print("refused:", {k: v[0] for k, v in refused.items()})
# What a sending MTA does with a 452: retry the deferred recipients later.
again = s.sendmail("x@example.org", list(refused), msg)
print("again:", again)
s.quit()
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    assert!(out.contains("refused: {'two@b.test': 452}"), "{out}");
    assert!(out.contains("again: {}"), "{out}");
    assert_eq!(
        a.wait_messages(1)[0].data,
        b"Subject: two customers\r\n\r\nhello both\r\n"
    );
    assert_eq!(
        b.wait_messages(1)[0].data,
        b"Subject: two customers\r\n\r\nhello both\r\n"
    );
}

#[test]
fn xclient_sends_the_advertised_attributes_then_ehlo_again() {
    let backend = RecordingBackend::start_with(BackendOpts {
        xclient: true,
        ..Default::default()
    });
    let dir = TempDir::new("px-xclient");
    let conf = config_text(
        &dir,
        &server(
            "X",
            backend.port(),
            &["x.test"],
            "client_identity = \"xclient\"",
        ),
    );
    // One smtpd: the second session below meets the connection it prepared.
    let conf = conf.replace("[process]\n", "[process]\nsmtpd_processes = 1\n");
    let p = Postern::start(dir, &conf);
    let (out, ok) = swaks(
        p.addr,
        &[
            "--local-interface",
            "127.0.0.6",
            "--ehlo",
            "client+one.example",
            "--from",
            "a@example.org",
            "--to",
            "u@x.test",
        ],
    );
    assert!(ok, "{out}");
    let m = &backend.wait_messages(1)[0];
    let x = m.position("XCLIENT ").expect("XCLIENT sent");
    let line = &m.commands[x];
    assert!(
        line.starts_with("XCLIENT HELO=client+2Bone.example PROTO=ESMTP NAME=[UNAVAILABLE] PORT="),
        "{line}"
    );
    assert!(line.ends_with(" ADDR=127.0.0.6"), "{line}");
    assert_eq!(
        m.commands[x + 1],
        "EHLO mx.postern.test",
        "EHLO again after XCLIENT"
    );
    assert!(m.position("IPADDR").is_none());

    // The next session's connection was prepared (greeted, EHLO said) before
    // it came; XCLIENT on it carries this session's client, then EHLO again.
    wait_for("prepared connections", || {
        (backend.connections() >= 3).then_some(())
    });
    let before = std::time::Instant::now();
    let (out, ok) = swaks_from(&p, "127.0.0.8", &["--to", "v@x.test"]);
    assert!(ok, "{out}");
    let m = &backend.wait_messages(2)[1];
    assert!(m.connected_at.expect("recorded") < before);
    assert_eq!(m.commands[0], "EHLO mx.postern.test");
    let x = m.position("XCLIENT ").expect("XCLIENT sent");
    assert!(
        m.commands[x].ends_with(" ADDR=127.0.0.8"),
        "{:?}",
        m.commands
    );
    assert_eq!(m.commands[x + 1], "EHLO mx.postern.test");
}

#[test]
fn proxy_protocol_headers_come_before_anything_else() {
    for (kind, check) in [("proxy-v1", 1), ("proxy-v2", 2)] {
        let backend = RecordingBackend::start_with(BackendOpts {
            proxy_header: true,
            ..Default::default()
        });
        let dir = TempDir::new("px-proxy");
        let conf = config_text(
            &dir,
            &server(
                "P",
                backend.port(),
                &["p.test"],
                &format!("client_identity = \"{kind}\""),
            ),
        );
        let p = Postern::start(dir, &conf);
        let (out, ok) = swaks(
            p.addr,
            &[
                "--local-interface",
                "127.0.0.7",
                "--from",
                "a@example.org",
                "--to",
                "u@p.test",
            ],
        );
        assert!(ok, "{kind}: {out}");
        // A second session: PROXY servers get no prepared connections, every
        // connection starts with its own client's header.
        let (out, ok) = swaks_from(&p, "127.0.0.9", &["--to", "u@p.test"]);
        assert!(ok, "{kind}: {out}");
        backend.wait_messages(2);
        assert_eq!(
            backend.connections(),
            2,
            "{kind}: one connection per session"
        );
        assert_eq!(backend.headers().len(), 2);
        let second = backend.headers()[1].clone();
        if check == 1 {
            assert!(String::from_utf8_lossy(&second).starts_with("PROXY TCP4 127.0.0.9 "));
        } else {
            assert_eq!(&second[16..20], &[127, 0, 0, 9], "source address");
        }
        let h = &backend.headers()[0];
        let port = p.addr.port();
        if check == 1 {
            let text = String::from_utf8_lossy(h);
            assert!(
                text.starts_with("PROXY TCP4 127.0.0.7 127.0.0.1 "),
                "{text}"
            );
            assert!(text.ends_with(&format!(" {port}\r\n")), "{text}");
        } else {
            assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
            assert_eq!(h[12], 0x21, "version 2, PROXY");
            assert_eq!(h[13], 0x11, "TCP over IPv4");
            assert_eq!(&h[16..20], &[127, 0, 0, 7], "source address");
            assert_eq!(&h[20..24], &[127, 0, 0, 1], "destination address");
            assert_eq!(u16::from_be_bytes([h[26], h[27]]), port, "destination port");
        }
    }
}

/// A self-signed certificate for mx.postern.test, made with openssl.
fn certificate(dir: &TempDir) -> (String, String) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=mx.postern.test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

fn tls_customers(tag: &str) -> (Postern, RecordingBackend, RecordingBackend) {
    let a = RecordingBackend::start();
    let b = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let (cert, key) = certificate(&dir);
    let servers = server("Customer A", a.port(), &["a.test"], "")
        + &server(
            "Customer B",
            b.port(),
            &["b.test"],
            "user = \"bob\"\npassword = \"builder\"",
        );
    let conf =
        config_text(&dir, &servers) + &format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n");
    (Postern::start(dir, &conf), a, b)
}

#[test]
fn starttls_then_auth_only_inside_tls() {
    let (p, a, b) = tls_customers("px-tls");
    let mut raw = Raw::connect(p.addr);
    let ehlo = raw.cmd("EHLO client.example");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "AUTH before TLS: {ehlo}");
    assert!(raw
        .cmd("AUTH PLAIN AGJvYgBidWlsZGVy")
        .starts_with("530 5.7.0"));
    raw.cmd("QUIT");

    let (out, ok) = swaks(
        p.addr,
        &["--tls", "--from", "a@example.org", "--to", "u@a.test"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    assert_eq!(a.wait_messages(1).len(), 1);

    let (out, ok) = swaks(
        p.addr,
        &[
            "--tls",
            "--auth",
            "LOGIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "builder",
            "--from",
            "a@example.org",
            "--to",
            "far@elsewhere.test",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(b.wait_messages(1).len(), 1);
}

/// CVE-2011-0411: plaintext pipelined behind STARTTLS must not run inside TLS.
#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let (p, _a, _b) = tls_customers("px-tls-inject");
    let script = r#"
import socket, ssl, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode()
        lines.append(l)
        if l[3:4] != "-":
            return "".join(lines)
reply()
s.sendall(b"EHLO attacker.example\r\n"); reply()
s.sendall(b"STARTTLS\r\nHELP\r\n")          # HELP is the injected plaintext
print("starttls:", reply().strip())
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="mx.postern.test")
t.sendall(b"NOOP\r\n")
print("first inside TLS:", t.recv(4096).decode().strip())
t.sendall(b"QUIT\r\n"); t.recv(4096)
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    assert!(
        out.contains("starttls: 220 2.0.0 Ready to start TLS"),
        "{out}"
    );
    assert!(
        out.contains("first inside TLS: 250 2.0.0 Ok"),
        "the injected HELP ran: {out}"
    );
    assert!(!out.contains("214"), "{out}");
    p.wait_log("pipelined after STARTTLS");
}

#[test]
fn limits_have_clear_replies() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("px-limits");
    let conf = config_text(&dir, &server("L", backend.port(), &["l.test"], "")).replace(
        "command_timeout = \"30s\"",
        "command_timeout = \"1s\"\nmax_recipients = 2",
    );
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO client.example");
    let long = format!("NOOP {}", "x".repeat(3000));
    assert!(
        raw.cmd(&long).starts_with("500 5.5.2"),
        "command line too long"
    );
    assert!(
        raw.cmd("NOOP").starts_with("250"),
        "still in sync after a long line"
    );
    raw.cmd("MAIL FROM:<a@example.org>");
    assert!(raw.cmd("RCPT TO:<1@l.test>").starts_with("250"));
    assert!(raw.cmd("RCPT TO:<2@l.test>").starts_with("250"));
    assert!(raw.cmd("RCPT TO:<3@l.test>").starts_with("452 4.5.3"));
    raw.cmd("RSET");
    // Idle: 421 4.4.2 after command_timeout.
    let r = raw.reply();
    assert!(
        r.starts_with("421 4.4.2 mx.postern.test Error: timeout exceeded"),
        "{r}"
    );
    assert!(raw.closed());

    let mut raw = Raw::connect(p.addr);
    let mut last = String::new();
    for _ in 0..20 {
        last = raw.cmd("BOGUS");
    }
    assert!(last.starts_with("502"), "{last}");
    let r = raw.reply();
    assert!(
        r.starts_with("421 4.7.0 mx.postern.test Error: too many errors"),
        "{r}"
    );
    assert!(raw.closed());
}

#[test]
fn a_backend_that_keeps_failing_is_skipped_for_a_while() {
    // Accepts connections (counted) and never greets: each attempt times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for c in silent.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            keep.push(c);
        }
    });
    let dir = TempDir::new("px-skip");
    let conf = config_text(&dir, &server("Silent", port, &["s.test"], ""))
        .replace("timeout = \"5s\"", "timeout = \"300ms\"")
        .replace("[process]\n", "[process]\nsmtpd_processes = 1\n");
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO client.example");
    raw.cmd("MAIL FROM:<a@example.org>");
    for i in 0..5 {
        let r = raw.cmd(&format!("RCPT TO:<u{i}@s.test>"));
        assert!(r.starts_with("451 4.4.1"), "{r}");
    }
    p.wait_log("backend Silent failed 3 times in a row: skipping it for 30s");
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "attempts 4 and 5 were answered without connecting"
    );
}

fn admin_postern(tag: &str, networks: &str) -> (Postern, RecordingBackend) {
    let backend = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server("One", backend.port(), &["one.test"], "")).replace(
        "hostname = ",
        &format!("admin_user = \"admin\"\nadmin_password = \"s3cret\"\nadmin_networks = [{networks}]\nhostname = "),
    );
    (Postern::start(dir, &conf), backend)
}

#[test]
fn reload_over_smtp_checks_address_and_credentials() {
    let (p, _backend) = admin_postern("px-reload", "\"127.0.0.1/32\"");
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO admin.example");
    assert!(raw.cmd("RELOAD admin s3cret").starts_with("250 2.0.0"));
    p.wait_log("configuration reloaded");
    assert!(
        raw.cmd("RELOAD admin*s3cret").starts_with("250 2.0.0"),
        "the seed's user*password form"
    );
    assert!(raw.cmd("RELOAD admin wrong").starts_with("535 5.7.8"));
    // A broken file: 451 4.3.5 with the reason, old configuration kept.
    let good = std::fs::read_to_string(p.config_path()).expect("read");
    std::fs::write(p.config_path(), good.replace("port = ", "porte = ")).expect("break");
    let r = raw.cmd("RELOAD admin s3cret");
    assert!(
        r.starts_with("451 4.3.5") && r.contains("unknown field `porte`"),
        "{r}"
    );
    raw.cmd("QUIT");
    std::fs::write(p.config_path(), good).expect("restore");

    // From an address outside admin_networks: 550, whatever the credentials.
    let mut other = Raw::connect_from("127.0.0.8", p.addr);
    other.cmd("EHLO elsewhere.example");
    assert!(other.cmd("RELOAD admin s3cret").starts_with("550 5.7.1"));
    assert!(other.cmd("RELOAD admin s3cret").starts_with("550 5.7.1"));
    // A third failure in a row closes the session.
    assert!(other.cmd("RELOAD admin s3cret").starts_with("550 5.7.1"));
    let r = other.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(other.closed());
    p.wait_log("RELOAD refused: 127.0.0.8 is not allowed to send it");
}

#[test]
fn shutdown_over_smtp_stops_the_whole_suite() {
    let (mut p, _backend) = admin_postern("px-shutdown", "\"127.0.0.0/8\"");
    let workers: Vec<i32> = p.workers().into_iter().map(|w| w.1).collect();
    assert_eq!(workers.len(), 4, "router, updater, two smtpd: {workers:?}");
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO admin.example");
    assert!(raw.cmd("SHUTDOWN admin wrong").starts_with("535 5.7.8"));
    assert!(raw.cmd("SHUTDOWN admin s3cret").starts_with("221 2.0.0"));
    let mut child = p.child.take().expect("running");
    let status = wait_for("the master to exit", || child.try_wait().expect("wait"));
    assert!(status.success());
    for pid in workers {
        assert!(!alive(pid));
    }
}

#[test]
fn admin_commands_do_not_exist_without_admin_credentials() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("px-noadmin");
    let conf = config_text(&dir, &server("One", backend.port(), &["one.test"], ""));
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO admin.example");
    assert!(raw.cmd("RELOAD admin s3cret").starts_with("502 5.5.1"));
    assert!(raw.cmd("SHUTDOWN admin s3cret").starts_with("502 5.5.1"));
}

/// Connects from `from`, sends `bytes` at once, and returns all the server
/// says until it closes the connection.
fn everything_said(from: &str, to: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut c = connect_from(from, to);
    c.set_read_timeout(Some(DEADLINE)).expect("timeout");
    std::io::Write::write_all(&mut c, bytes).expect("send");
    let mut said = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut said);
    String::from_utf8_lossy(&said).into_owned()
}

#[test]
fn connection_limits_hold_across_smtpd_processes() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("px-conns");
    let conf = config_text(&dir, &server("One", backend.port(), &["one.test"], "")).replace(
        "hostname = ",
        "max_connections = 4\nmax_connections_per_ip = 2\nhostname = ",
    );
    let p = Postern::start(dir, &conf);
    // Two smtpd processes share the listener: the limits are counted across
    // both. A connection is counted by the time its first command other than
    // HELO/EHLO is answered (the greeting does not wait for the count): among
    // connections opened at the same moment, which ones are refused is
    // arbitrary, as with Postfix's smtpd processes and anvil.
    let counted = |from: &str| {
        let mut c = Raw::connect_from(from, p.addr);
        assert!(
            c.cmd("NOOP").starts_with("250"),
            "{from} counted and allowed"
        );
        c
    };
    // Each of the two held sessions on its own process: the other one is
    // stopped (SIGSTOP) while it connects, so it cannot accept it.
    let smtpd = p.pids_of("postern-smtpd");
    assert_eq!(smtpd.len(), 2, "two smtpd processes by default");
    let on = |pid: i32| {
        let other = nix::unistd::Pid::from_raw(*smtpd.iter().find(|&&o| o != pid).expect("other"));
        nix::sys::signal::kill(other, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        let c = counted("127.0.0.9");
        nix::sys::signal::kill(other, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        c
    };
    let mut held = vec![on(smtpd[0]), on(smtpd[1])];
    let log = p.log();
    for pid in &smtpd {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("postern-smtpd[{pid}]: "))
                    && l.contains("accepted connection from 127.0.0.9")),
            "no session of 127.0.0.9 on smtpd {pid}:\n{log}"
        );
    }
    let refused = Raw::connect_raw_from("127.0.0.9", p.addr);
    assert!(
        refused.starts_with("421 4.7.0") && refused.contains("too many connections from 127.0.0.9"),
        "{refused}"
    );
    // One that talks at once gets no further than EHLO: MAIL waits for the
    // count, and the count says 421.
    let said = everything_said(
        "127.0.0.9",
        p.addr,
        b"EHLO eager.example\r\nMAIL FROM:<a@example.org>\r\n",
    );
    let replies: Vec<&str> = said.lines().collect();
    assert!(replies[0].starts_with("220 "), "{said}");
    assert!(
        replies.last().is_some_and(|l| l.starts_with("421 4.7.0")),
        "{said}"
    );
    assert!(!said.contains("250 2.1.0"), "MAIL was not accepted: {said}");
    // Half a line, then silence: the 421 comes all the same, long before the
    // command timeout (30 s here).
    let said = everything_said("127.0.0.9", p.addr, b"EHL");
    assert!(said.contains("421 4.7.0"), "{said}");
    held.push(counted("127.0.0.10"));
    held.push(counted("127.0.0.11"));
    let refused = Raw::connect_raw_from("127.0.0.12", p.addr);
    assert!(
        refused.starts_with("421 4.7.0") && refused.contains("too many connections"),
        "{refused}"
    );
    // A session that ends frees its place.
    let mut first = held.remove(0);
    assert!(first.cmd("QUIT").starts_with("221"));
    wait_for("a freed place", || {
        Raw::connect_raw_from("127.0.0.9", p.addr)
            .starts_with("220 ")
            .then_some(())
    });
    // An smtpd killed with its sessions: the router drops its counts.
    let smtpd = p.pids_of("postern-smtpd");
    assert!(!smtpd.is_empty());
    for pid in smtpd {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
    }
    drop(held);
    p.wait_log("dropped");
    wait_for("places after the crash", || {
        let a = Raw::connect_raw_from("127.0.0.13", p.addr);
        let b = Raw::connect_raw_from("127.0.0.14", p.addr);
        (a.starts_with("220 ") && b.starts_with("220 ")).then_some(())
    });
}

/// A client that pipelines commands and never reads the replies: postern
/// stops holding replies past 16 KB, and a write that cannot finish within
/// `command_timeout` ends the session. (EHLO: neither a junk command, whose
/// limit would end the session first, nor an error; and a long reply.)
#[test]
fn a_client_that_reads_no_reply_is_dropped_after_the_command_timeout() {
    let (p, _backend) = with_command_timeout_1s("px-no-read");
    let mut c = connect_from("127.0.0.2", p.addr);
    c.set_write_timeout(Some(std::time::Duration::from_millis(500)))
        .expect("write timeout");
    let chunk = b"EHLO x\r\n".repeat(10_000);
    let mut sent = 0;
    // Bounded: at most 200 chunks (12 MB); the buffers fill long before.
    for _ in 0..200 {
        match std::io::Write::write_all(&mut c, &chunk) {
            Ok(()) => sent += 1,
            Err(_) => break,
        }
    }
    assert!(
        sent < 200,
        "postern kept reading without writing its replies"
    );
    p.wait_log("writing to 127.0.0.2: it reads no reply");
}

/// A backend that stops reading in the middle of a message: the session
/// does not hang on it. Once the writes to it have waited the server's
/// `timeout`, the rest of the body is read and the client gets 451 at its
/// end (the sender retries; nothing was accepted).
#[test]
fn a_backend_that_stops_reading_a_body_gives_451_after_its_timeout() {
    let backend = RecordingBackend::start_with(BackendOpts {
        stall_in_data: true,
        ..BackendOpts::default()
    });
    let dir = TempDir::new("px-stall");
    let server = server_block("One", backend.port(), &["one.test"])
        .replace("timeout = \"5s\"", "timeout = \"1s\"");
    let conf = config_text(&dir, &server);
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect_from("127.0.0.2", p.addr);
    assert!(raw.cmd("EHLO client.example").starts_with("250"));
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(raw.cmd("RCPT TO:<u@one.test>").starts_with("250"));
    assert!(raw.cmd("DATA").starts_with("354"));
    // Far more than the loopback buffers hold: the backend's side fills up.
    let line = format!("{}\r\n", "x".repeat(998));
    let block = line.repeat(1024);
    for _ in 0..32 {
        raw.send(block.as_bytes());
    }
    raw.send(b".\r\n");
    let r = raw.reply();
    assert!(r.starts_with("451 4.4.1"), "{r}");
    assert!(raw.cmd("QUIT").starts_with("221"));
    p.wait_log("timed out after 1s");
    assert!(backend.messages().is_empty());
}

/// A command line longer than the limit whose end never comes: the session
/// does not wait for it longer than for any command.
#[test]
fn an_overlong_line_that_never_ends_times_out_like_a_command() {
    let (p, _backend) = with_command_timeout_1s("px-long-silent");
    let mut raw = Raw::connect_from("127.0.0.2", p.addr);
    raw.send(&[b'x'; 4096]);
    let r = raw.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(raw.closed());
    p.wait_log("waiting for the end of a line from 127.0.0.2");
}

/// postern with `command_timeout = "1s"` in front of one recording backend.
fn with_command_timeout_1s(tag: &str) -> (Postern, RecordingBackend) {
    let backend = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block("One", backend.port(), &["one.test"]))
        .replace("command_timeout = \"30s\"", "command_timeout = \"1s\"");
    (Postern::start(dir, &conf), backend)
}

#[test]
fn client_identity_none_sends_the_backend_nothing_about_the_client() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("px-none");
    let conf = config_text(
        &dir,
        &server(
            "N",
            backend.port(),
            &["n.test"],
            "client_identity = \"none\"",
        ),
    );
    let p = Postern::start(dir, &conf);
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@n.test"]);
    assert!(ok, "{out}");
    let m = &backend.wait_messages(1)[0];
    assert_eq!(
        m.commands[..3],
        [
            "EHLO mx.postern.test",
            "MAIL FROM:<a@example.org>",
            "RCPT TO:<u@n.test>"
        ],
        "no PROXY header (it would be the first line), no IPADDR, no XCLIENT: {:?}",
        m.commands
    );
    assert!(
        backend.all_bytes().starts_with(b"EHLO "),
        "no PROXY header before the first command"
    );
}

#[test]
fn xclient_to_a_backend_that_does_not_offer_it_sends_nothing_and_warns() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("px-noxclient");
    let conf = config_text(
        &dir,
        &server(
            "Plain",
            backend.port(),
            &["p.test"],
            "client_identity = \"xclient\"",
        ),
    );
    let p = Postern::start(dir, &conf);
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@p.test"]);
    assert!(ok, "{out}");
    let m = &backend.wait_messages(1)[0];
    assert!(m.position("XCLIENT").is_none(), "{:?}", m.commands);
    assert_eq!(
        m.commands[1], "MAIL FROM:<a@example.org>",
        "{:?}",
        m.commands
    );
    p.wait_log("backend Plain does not offer XCLIENT: the client's identity is not forwarded");
}

#[test]
fn a_multi_line_backend_reply_reaches_the_client_verbatim() {
    let backend = RecordingBackend::start_with(BackendOpts {
        multiline_refusal: Some("moved@m.test"),
        ..Default::default()
    });
    let dir = TempDir::new("px-multiline");
    let conf = config_text(&dir, &server("M", backend.port(), &["m.test"], ""));
    let p = Postern::start(dir, &conf);
    let mut c = Raw::connect(p.addr);
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert_eq!(
        c.cmd("RCPT TO:<moved@m.test>").as_bytes(),
        MULTILINE_REFUSAL,
        "every line, byte for byte"
    );
}

#[test]
fn auth_offered_without_tls_is_said_in_the_log_unless_it_is_refused() {
    let backend = RecordingBackend::start();
    let creds = "user = \"alice\"\npassword = \"wonderland\"";
    let dir = TempDir::new("px-auth-clear");
    let conf = config_text(&dir, &server("A", backend.port(), &["a.test"], creds));
    let p = Postern::start(dir, &conf);
    p.wait_log(
        "SMTP AUTH is offered without TLS: passwords cross the network in clear (set [tls])",
    );
    let mut c = Raw::connect(p.addr);
    assert!(c
        .cmd("EHLO client.example")
        .contains("250 AUTH PLAIN LOGIN"));

    let dir = TempDir::new("px-auth-refused");
    let conf = config_text(&dir, &server("A", backend.port(), &["a.test"], creds))
        .replace("hostname = ", "auth_requires_tls = true\nhostname = ");
    let p = Postern::start(dir, &conf);
    let mut c = Raw::connect(p.addr);
    assert!(!c.cmd("EHLO client.example").contains("AUTH"));
    assert!(!p.log().contains("SMTP AUTH is offered without TLS"));
}
