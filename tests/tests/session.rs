//! The SMTP session's edges (issue 18): bodies with NUL, the update address
//! in its other spellings, ESMTP parameters and trailing white space that
//! real clients send, when AUTH is advertised, and clients that pipeline
//! without end and never read.

use postern_tests::*;

/// One customer behind postern, with extra `[proxy]` lines.
fn one_customer(tag: &str, proxy_extra: &str) -> (Postern, RecordingBackend) {
    let backend = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block("One", backend.port(), &["one.test"]))
        .replace("hostname = ", &format!("{proxy_extra}\nhostname = "));
    (Postern::start(dir, &conf), backend)
}

/// `CRLF NUL . CRLF` (an SMTP-smuggling scanner's sequence) and a NUL
/// anywhere else: the message is refused, the backend transaction aborted,
/// nothing delivered, no NUL byte ever reaches the backend, and the refusal
/// counts as smuggling.
#[test]
fn a_body_with_nul_is_refused_and_never_reaches_the_backend() {
    let (p, backend) = one_customer("ses-nul", "");
    let smuggled = b"MAIL FROM:<s@x.test>\r\nRCPT TO:<v@one.test>\r\nDATA\r\nsmuggled\r\n";
    for (name, seq) in [
        ("CRLF NUL . CRLF", &b"body\r\n\x00.\r\n"[..]),
        ("NUL in a line", b"a\x00b\r\n"),
    ] {
        let mut raw = Raw::connect(p.addr);
        raw.cmd("EHLO client.example");
        raw.cmd("MAIL FROM:<a@example.org>");
        assert!(raw.cmd("RCPT TO:<u@one.test>").starts_with("250"));
        assert!(raw.cmd("DATA").starts_with("354"));
        let mut body = b"Subject: nul\r\n\r\n".to_vec();
        body.extend_from_slice(seq);
        body.extend_from_slice(smuggled);
        body.extend_from_slice(b"\r\n.\r\n");
        raw.send(&body);
        let r = raw.reply();
        assert!(
            r.starts_with("550 5.5.2") && r.contains("NUL"),
            "{name}: {r}"
        );
        assert!(raw.cmd("NOOP").starts_with("250"), "{name}: out of sync");
        assert!(raw.cmd("QUIT").starts_with("221"));
    }
    p.wait_log_count("refused message from <a@example.org>: NUL character", 2);
    // A proper message afterwards is the only one the backend got.
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "{out}");
    assert_eq!(backend.wait_messages(1).len(), 1);
    let bytes = backend.all_bytes();
    assert!(!bytes.contains(&0), "a NUL reached the backend");
    assert!(
        !String::from_utf8_lossy(&bytes).contains("smuggled"),
        "smuggled content reached the backend"
    );
    wait_for("two smuggling refusals in the statistics", || {
        let out = p.cli(&["stats", "--json"]);
        let json = String::from_utf8_lossy(&out.stdout).into_owned();
        json.contains("\"smuggling\": 2").then_some(())
    });
}

/// The update address written otherwise — quoted local part, trailing dot,
/// other case — is still the update address: refused from a relay client
/// outside `admin_networks` (never forwarded to its server as ordinary
/// mail), queued from an admin network.
#[test]
fn the_update_address_is_recognised_in_every_spelling() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("ses-update");
    let server = server_block("One", backend.port(), &["one.test"])
        .replace("domains = ", "relay = [\"127.0.0.2\"]\ndomains = ");
    let conf = config_text(&dir, &server).replace(
        "hostname = ",
        "update_address = \"update@mx.postern.test\"\nadmin_networks = [\"127.0.0.1/32\"]\nhostname = ",
    );
    let p = Postern::start(dir, &conf);
    let spellings = [
        "\"update\"@mx.postern.test",
        "update@mx.postern.test.",
        "Update@MX.Postern.Test",
        "\"up\\date\"@mx.postern.test.",
    ];
    let mut relay = Raw::connect_from("127.0.0.2", p.addr);
    relay.cmd("EHLO relay.example");
    assert!(relay.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    for to in spellings {
        let r = relay.cmd(&format!("RCPT TO:<{to}>"));
        assert!(r.starts_with("550 5.7.1"), "{to}: {r}");
    }
    // An ordinary recipient still goes to the relay client's server.
    assert!(relay.cmd("RCPT TO:<x@elsewhere.test>").starts_with("250"));
    relay.cmd("QUIT");
    for to in spellings {
        let mut admin = Raw::connect(p.addr);
        admin.cmd("EHLO admin.example");
        assert!(admin
            .cmd("MAIL FROM:<admin@example.org>")
            .starts_with("250"));
        let r = admin.cmd(&format!("RCPT TO:<{to}>"));
        assert!(r.starts_with("250 2.1.5"), "{to}: {r}");
        assert!(admin.cmd("DATA").starts_with("354"));
        let r = admin.cmd("Subject: update\r\n\r\nnothing to restart\r\n.");
        assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{to}: {r}");
        admin.cmd("QUIT");
    }
    let said = String::from_utf8_lossy(&backend.all_bytes()).into_owned();
    for to in spellings {
        assert!(
            !said.contains(&format!("RCPT TO:<{to}>")),
            "{to} was forwarded: {said}"
        );
    }
}

/// RFC 4954 §5: after AUTH, `MAIL FROM:<…> AUTH=<>` is accepted (Python's
/// smtplib, a real client, sends it so); the parameter is not passed on.
#[test]
fn mail_with_auth_parameter_is_accepted_after_auth() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("ses-auth-param");
    let server = server_block("One", backend.port(), &["one.test"]).replace(
        "domains = ",
        "user = \"alice\"\npassword = \"wonderland\"\ndomains = ",
    );
    let conf = config_text(&dir, &server);
    let p = Postern::start(dir, &conf);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
s.ehlo("client.example")
s.login("alice", "wonderland")
print(s.mail("sender@example.org", ["AUTH=<>"]))
print(s.rcpt("far@elsewhere.test"))
print(s.data(b"Subject: auth param\r\n\r\nhello\r\n"))
print(s.mail("sender@example.org", ["AUTH=sender+40example.org"]))
print(s.rset())
print(s.mail("sender@example.org", ["AUTH=bad=value"]))
s.quit()
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("(250"), "{out}");
    assert!(lines[1].starts_with("(250"), "{out}");
    assert!(lines[2].starts_with("(250"), "{out}");
    assert!(lines[3].starts_with("(250"), "{out}");
    assert!(lines[5].starts_with("(501"), "{out}");
    let m = backend.wait_messages(1);
    let mail = m[0].position("MAIL FROM:").expect("MAIL");
    assert_eq!(m[0].commands[mail], "MAIL FROM:<sender@example.org>");
}

/// White space after a command without arguments is no argument (as
/// Postfix reads it): `DATA␠␠`, `DATA<TAB>`, `RSET␠␠`, `QUIT␠␠`.
#[test]
fn trailing_white_space_after_a_command_is_accepted() {
    let (p, backend) = one_customer("ses-trailing", "");
    let mut raw = Raw::connect(p.addr);
    assert!(raw.cmd("EHLO client.example ").starts_with("250"));
    for data in ["DATA  ", "DATA\t"] {
        assert!(raw.cmd("MAIL FROM:<a@example.org>  ").starts_with("250"));
        assert!(raw.cmd("RCPT TO:<u@one.test> ").starts_with("250"));
        let r = raw.cmd(data);
        assert!(r.starts_with("354"), "{data:?}: {r}");
        let r = raw.cmd("Subject: padded\r\n\r\nhello\r\n.");
        assert!(r.starts_with("250 2.0.0"), "{data:?}: {r}");
    }
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    let r = raw.cmd("RSET  ");
    assert!(r.starts_with("250"), "{r}");
    assert!(
        raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"),
        "RSET ended the transaction"
    );
    let r = raw.cmd("QUIT  ");
    assert!(r.starts_with("221"), "{r}");
    assert!(raw.closed());
    assert_eq!(backend.wait_messages(2).len(), 2);
}
