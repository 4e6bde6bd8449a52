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

/// A self-signed certificate for mx.postern.test, made with openssl.
fn certificate(dir: &TempDir) -> (String, String) {
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "2", "-subj", "/CN=mx.postern.test", "-keyout"])
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

/// EHLO's capabilities before and after STARTTLS (when `tls`), and the
/// reply to AUTH PLAIN with `user`/`password` in each, from Python's
/// smtplib (a real client), by name: `plain-ehlo`, `plain-auth`,
/// `tls-ehlo`, `tls-auth`.
fn auth_in_and_out_of_tls(
    p: &Postern,
    user: &str,
    password: &str,
    tls: bool,
) -> std::collections::HashMap<String, String> {
    let script = r#"
import base64, smtplib, ssl, sys
host, port, user, password, tls = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
creds = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
s = smtplib.SMTP(host, port, timeout=20)
s.ehlo("client.example")
print("plain-ehlo", " ".join(sorted(s.esmtp_features)))
print("plain-auth", s.docmd("AUTH", "PLAIN " + creds)[0])
if tls == "yes":
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx)
    s.ehlo("client.example")
    print("tls-ehlo", " ".join(sorted(s.esmtp_features)))
    print("tls-auth", s.docmd("AUTH", "PLAIN " + creds)[0])
s.quit()
"#;
    let (ip, port) = (p.addr.ip().to_string(), p.addr.port().to_string());
    let tls = if tls { "yes" } else { "no" };
    python(script, &[&ip, &port, user, password, tls])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// postern with one server (with `server_extra` lines), `proxy_extra`
/// lines, and `[tls]` when `tls`.
fn auth_postern(tag: &str, server_extra: &str, proxy_extra: &str, tls: bool) -> Postern {
    let backend = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let server = server_block("One", backend.port(), &["one.test"])
        .replace("domains = ", &format!("{server_extra}\ndomains = "));
    let mut conf =
        config_text(&dir, &server).replace("hostname = ", &format!("{proxy_extra}\nhostname = "));
    if tls {
        let (cert, key) = certificate(&dir);
        conf += &format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n");
    }
    // The backend's threads outlive this handle; nothing is sent to it.
    drop(backend);
    Postern::start(dir, &conf)
}

const ADMIN: &str = "admin_user = \"admin\"\nadmin_password = \"s3cret\"";
const CREDS: &str = "user = \"alice\"\npassword = \"wonderland\"";

fn offers_auth(ehlo: &str) -> bool {
    ehlo.split(' ').any(|f| f == "auth")
}

/// SPEC §4, §7 and issue 18: AUTH is advertised only when someone could
/// authenticate, and the admin user authenticates only inside TLS when
/// `[tls]` is set, whatever `auth_requires_tls` says.
#[test]
fn auth_is_offered_only_when_someone_can_authenticate() {
    // Nobody: no server credentials, no admin user.
    let p = auth_postern("ses-auth-nobody", "", "", false);
    let got = auth_in_and_out_of_tls(&p, "alice", "wonderland", false);
    assert!(!offers_auth(&got["plain-ehlo"]), "{got:?}");
    assert_eq!(got["plain-auth"], "503", "{got:?}");
    drop(p);

    // The admin user alone, without [tls]: in plaintext.
    let p = auth_postern("ses-auth-admin", "", ADMIN, false);
    let got = auth_in_and_out_of_tls(&p, "admin", "s3cret", false);
    assert!(offers_auth(&got["plain-ehlo"]), "{got:?}");
    assert_eq!(got["plain-auth"], "235", "{got:?}");
    drop(p);

    // The admin user alone, with [tls] and auth_requires_tls = false: only
    // inside TLS.
    let p = auth_postern(
        "ses-auth-admin-tls",
        "",
        &format!("{ADMIN}\nauth_requires_tls = false"),
        true,
    );
    let got = auth_in_and_out_of_tls(&p, "admin", "s3cret", true);
    assert!(!offers_auth(&got["plain-ehlo"]), "{got:?}");
    assert_eq!(got["plain-auth"], "530", "{got:?}");
    assert!(offers_auth(&got["tls-ehlo"]), "{got:?}");
    assert_eq!(got["tls-auth"], "235", "{got:?}");
    drop(p);

    // A server's credentials too: AUTH is offered in plaintext, where the
    // server's credentials work and the admin's do not.
    let p = auth_postern(
        "ses-auth-both-tls",
        CREDS,
        &format!("{ADMIN}\nauth_requires_tls = false"),
        true,
    );
    let got = auth_in_and_out_of_tls(&p, "alice", "wonderland", false);
    assert!(offers_auth(&got["plain-ehlo"]), "{got:?}");
    assert_eq!(got["plain-auth"], "235", "{got:?}");
    let got = auth_in_and_out_of_tls(&p, "admin", "s3cret", true);
    assert_eq!(got["plain-auth"], "535", "{got:?}");
    assert_eq!(got["tls-auth"], "235", "{got:?}");
    p.wait_log("authentication as the admin user refused from 127.0.0.1: only inside TLS");
}

/// Connects from `from`, writes `bytes` without reading anything, then
/// returns all the server says until it closes the connection.
fn said_after_writing(from: &str, to: std::net::SocketAddr, bytes: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut c = connect_from(from, to);
    c.set_read_timeout(Some(DEADLINE)).expect("timeout");
    c.set_write_timeout(Some(DEADLINE)).expect("timeout");
    c.write_all(bytes).expect("send");
    let mut said = Vec::new();
    let _ = c.read_to_end(&mut said);
    String::from_utf8_lossy(&said).into_owned()
}

/// The probe's client: MAIL, RCPT, RSET pipelined without end, never
/// reading. The 101st junk command (RSET, NOOP, VRFY, HELP; Postfix's
/// `smtpd_junk_command_limit`) gets `421 4.7.0` and the session ends,
/// releasing its backend connection. A delivered message forgives them.
#[test]
fn a_client_that_pipelines_transactions_without_end_is_let_go() {
    let (p, backend) = one_customer(
        "ses-junk",
        "prepared_connections = 0\nreuse_connections = false",
    );
    let group = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<u@one.test>\r\nRSET\r\n";
    let mut bytes = b"EHLO junk.example\r\n".to_vec();
    for _ in 0..150 {
        bytes.extend_from_slice(group);
    }
    let said = said_after_writing("127.0.0.2", p.addr, &bytes);
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("421 4.7.0 mx.postern.test Error: too many junk commands"),
        "{last}"
    );
    assert_eq!(
        said.lines().filter(|l| *l == "250 2.0.0 Ok").count(),
        100,
        "100 RSETs answered"
    );
    p.wait_log("too many junk commands from 127.0.0.2");
    wait_for("the backend connection to be released", || {
        (backend.connections() == 1 && backend.quits() == 1).then_some(())
    });

    // A delivered message starts the count afresh.
    let mut raw = Raw::connect_from("127.0.0.3", p.addr);
    raw.cmd("EHLO patient.example");
    raw.send(&b"NOOP\r\n".repeat(100));
    for _ in 0..100 {
        assert!(raw.reply().starts_with("250"));
    }
    raw.cmd("MAIL FROM:<a@example.org>");
    raw.cmd("RCPT TO:<u@one.test>");
    assert!(raw.cmd("DATA").starts_with("354"));
    assert!(raw.cmd("Subject: x\r\n\r\nx\r\n.").starts_with("250"));
    raw.send(&b"VRFY u\r\nHELP\r\n".repeat(50));
    for _ in 0..100 {
        assert!(raw.reply().starts_with("2"));
    }
    assert!(raw.cmd("NOOP").starts_with("421 4.7.0"));
    assert!(raw.closed());
}

/// A client that keeps opening transactions and never sends a message
/// (MAIL, RCPT, EHLO: no junk command, no error), faster than the command
/// timeout: dropped `command_timeout` after its first MAIL, with its
/// backend connection released.
#[test]
fn a_transaction_that_makes_no_progress_ends_the_session() {
    use std::io::{Read, Write};
    let (p, backend) = one_customer(
        "ses-progress",
        "prepared_connections = 0\nreuse_connections = false",
    );
    let config = std::fs::read_to_string(p.config_path()).expect("config");
    std::fs::write(
        p.config_path(),
        config.replace("command_timeout = \"30s\"", "command_timeout = \"1s\""),
    )
    .expect("config");
    assert!(p.cli(&["reload"]).status.success());
    p.wait_log("configuration reloaded");
    let mut c = connect_from("127.0.0.2", p.addr);
    let mut reader = c.try_clone().expect("clone");
    reader.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let said = std::thread::spawn(move || {
        let mut said = Vec::new();
        let _ = reader.read_to_end(&mut said);
        String::from_utf8_lossy(&said).into_owned()
    });
    let start = std::time::Instant::now();
    // Bounded: 100 groups, 100 ms apart (10 s); the session ends after 1 s.
    for _ in 0..100 {
        let group = b"EHLO busy.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<u@one.test>\r\n";
        if c.write_all(group).is_err() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        if said.is_finished() {
            break;
        }
    }
    let elapsed = start.elapsed();
    let said = said.join().expect("reader");
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("421 4.4.2 mx.postern.test Error: timeout exceeded"),
        "{said}"
    );
    p.wait_log("no message from 127.0.0.2 within 1s of its first MAIL");
    wait_for("the backend connection to be released", || {
        (backend.connections() >= 1 && backend.quits() == backend.connections()).then_some(())
    });
}

#[test]
fn near_max_connections_new_sessions_run_in_stress_mode_until_the_load_falls() {
    let (p, _one) = one_customer("session-stress", "max_connections = 5\n");
    // A session settles its admission at its first command other than
    // EHLO: NOOP.
    let open = |n: usize| -> Vec<Raw> {
        (0..n)
            .map(|_| {
                let mut c = Raw::connect(p.addr);
                assert!(c.cmd("EHLO client.example").starts_with("250"));
                assert!(c.cmd("NOOP").starts_with("250"));
                c
            })
            .collect()
    };
    // 3 of 5: as usual; an error is one of twenty.
    let mut calm = open(3);
    assert!(calm[0].cmd("FROB").starts_with("502 5.5.2"));
    assert!(
        calm[0].cmd("NOOP").starts_with("250"),
        "the session goes on"
    );
    assert!(!p.log().contains("overload"));

    // The fourth (80 %) brings stress mode: one error ends a session, and
    // so does 10 s of silence (not the configured 30 s).
    let mut stressed = open(1);
    p.wait_log("overload: 4 of 5 connections open: stress mode for new sessions");
    assert!(stressed[0].cmd("FROB").starts_with("502 5.5.2"));
    assert!(
        stressed[0]
            .reply()
            .starts_with("421 4.7.0 mx.postern.test Error: too many errors"),
        "one error is enough under stress"
    );
    assert!(stressed[0].closed());
    let mut idle = open(1);
    let since = std::time::Instant::now();
    let bye = idle[0].reply();
    let waited = since.elapsed();
    assert!(bye.starts_with("421 4.4.2"), "{bye}");
    assert!(
        waited >= std::time::Duration::from_secs(8) && waited < std::time::Duration::from_secs(20),
        "stress timeout after {waited:?}"
    );

    // Below 60 %: new sessions are calm again.
    calm.truncate(1);
    drop(stressed);
    drop(idle);
    p.wait_log("load back to");
    let mut after = open(1);
    assert!(after[0].cmd("FROB").starts_with("502 5.5.2"));
    assert!(
        after[0].cmd("NOOP").starts_with("250"),
        "the session goes on"
    );
}
