//! One real route end to end: real clients → postern → recording backends.

use postern_tests::*;

/// Two customers, each with its own recording backend.
fn two_customers(tag: &str) -> (Postern, RecordingBackend, RecordingBackend) {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let servers = server_block("Customer One", one.port(), &["one.test"])
        + &server_block("Customer Two", two.port(), &["two.test", ".sub.two.test"]);
    let conf = config_text(&dir, &servers);
    (Postern::start(dir, &conf), one, two)
}

#[test]
fn swaks_mail_reaches_the_owner_byte_identical_with_ipaddr_first() {
    let (p, one, two) = two_customers("route-swaks");
    // A body with a dot-stuffed line, 8-bit text, trailing spaces and an empty line.
    let body = "Subject: route test\r\nX-Check: 8bit caf\u{e9}\r\n\r\nline one  \r\n.leading dot\r\n\r\nlast line\r\n";
    let data_file = p.dir.path("body.eml");
    std::fs::write(&data_file, body).expect("body");
    let (out, ok) = swaks(
        p.addr,
        &[
            "--from",
            "sender@example.org",
            "--to",
            "user@ONE.test",
            "--data",
            data_file.to_str().expect("utf8"),
        ],
    );
    assert!(ok, "swaks failed:\n{out}");
    let got = one.wait_messages(1);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    // swaks dot-stuffs ".leading dot" to "..leading dot" and ends the data with an
    // empty line before the final dot; the backend must receive exactly what
    // swaks sent (it unstuffs the dot itself).
    let expected = body.replace("\r\n.leading", "\r\n..leading") + "\r\n";
    assert_eq!(
        String::from_utf8_lossy(&m.data),
        expected,
        "body must be byte-identical"
    );
    let ipaddr = m
        .position("IPADDR FROM 127.0.0.1")
        .expect("IPADDR FROM sent");
    let mail = m
        .position("MAIL FROM:<sender@example.org>")
        .expect("MAIL FROM replayed");
    assert!(
        ipaddr < mail,
        "IPADDR FROM must come before MAIL FROM: {:?}",
        m.commands
    );
    assert!(
        m.position("RCPT TO:<user@ONE.test>").is_some(),
        "{:?}",
        m.commands
    );
    assert_eq!(m.commands[0], "EHLO mx.postern.test");
    assert_eq!(
        two.connections(),
        0,
        "the other customer's backend saw nothing"
    );
    let log = p.log();
    assert!(
        log.contains("smtp connection forwarded from 127.0.0.1 to Customer One using domain"),
        "{log}"
    );
}

#[test]
fn smtplib_routes_each_domain_to_its_server() {
    let (p, one, two) = two_customers("route-smtplib");
    let script = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
for rcpt in ["a@one.test", "b@deep.sub.two.test", "c@two.test."]:
    with smtplib.SMTP(host, port, timeout=20) as s:
        s.ehlo("client.example")
        refused = s.sendmail("x@example.org", [rcpt], "Subject: to %s\r\n\r\nhello\r\n" % rcpt)
        print(rcpt, refused)
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let one_got = one.wait_messages(1);
    let two_got = two.wait_messages(2);
    assert_eq!(one_got.len(), 1);
    assert!(one_got[0].position("RCPT TO:<a@one.test>").is_some());
    let rcpts: Vec<String> = two_got
        .iter()
        .flat_map(|m| m.commands.iter().filter(|c| c.starts_with("RCPT")).cloned())
        .collect();
    assert_eq!(
        rcpts,
        ["RCPT TO:<b@deep.sub.two.test>", "RCPT TO:<c@two.test.>"]
    );
}

#[test]
fn unknown_domain_is_relaying_denied_and_reaches_nobody() {
    let (p, one, two) = two_customers("route-denied");
    let (out, ok) = swaks(
        p.addr,
        &[
            "--from",
            "spammer@example.org",
            "--to",
            "victim@elsewhere.test",
        ],
    );
    assert!(!ok, "swaks should fail:\n{out}");
    assert!(
        out.contains("554 5.7.1 <victim@elsewhere.test>: Relaying denied"),
        "{out}"
    );
    // Relay tricks that hide another destination behind a local domain.
    let mut raw = Raw::connect_from("127.0.0.2", p.addr);
    raw.cmd("EHLO client.example");
    assert!(raw.cmd("MAIL FROM:<x@one.test>").starts_with("250"));
    for trick in [
        "RCPT TO:<user%victim.test@one.test>",
        "RCPT TO:<victim.test!user@one.test>",
        "RCPT TO:<\"user@victim.test\"@one.test>",
        "RCPT TO:<user@[127.0.0.1]>",
        "RCPT TO:<user@one.test.victim.test>",
        "RCPT TO:<user@evilone.test>",
        "RCPT TO:<@one.test:user@victim.test>",
    ] {
        let r = raw.cmd(trick);
        assert!(r.starts_with("554 5.7.1"), "{trick} → {r}");
    }
    for bad in [
        "RCPT TO:<user@victim.test@one.test>",
        "RCPT TO:<user>",
        "RCPT TO:<user@>",
    ] {
        let r = raw.cmd(bad);
        assert!(r.starts_with("501"), "{bad} → {r}");
    }
    assert!(
        raw.cmd("DATA").starts_with("554 5.5.1"),
        "no valid recipients"
    );
    assert!(raw.cmd("QUIT").starts_with("221"));
    assert_eq!(
        one.connections() + two.connections(),
        0,
        "no backend was contacted"
    );
    let log = p.log();
    assert!(
        log.contains("no server found for rcpt victim@elsewhere.test"),
        "{log}"
    );
}

#[test]
fn a_stopped_backend_gives_4xx_never_5xx() {
    let dir = TempDir::new("route-down");
    let conf = config_text(&dir, &server_block("Down", closed_port(), &["down.test"]));
    let p = Postern::start(dir, &conf);
    let (out, ok) = swaks(
        p.addr,
        &["--from", "a@example.org", "--to", "user@down.test"],
    );
    assert!(!ok);
    let codes = swaks_codes(&out);
    assert!(
        codes.contains(&451),
        "expected 451 at RCPT, got {codes:?}\n{out}"
    );
    assert!(out.contains("451 4.4.1"), "{out}");
    assert!(codes.iter().all(|c| *c < 500), "no 5xx: {codes:?}");
}

#[test]
fn a_backend_that_does_not_answer_gives_4xx() {
    // A listener that accepts (kernel backlog) but never greets.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dir = TempDir::new("route-silent");
    let block = server_block(
        "Silent",
        silent.local_addr().expect("addr").port(),
        &["silent.test"],
    )
    .replace("timeout = \"5s\"", "timeout = \"500ms\"");
    let conf = config_text(&dir, &block);
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    raw.cmd("HELO client.example");
    raw.cmd("MAIL FROM:<a@example.org>");
    let r = raw.cmd("RCPT TO:<x@silent.test>");
    assert!(r.starts_with("451 4.4.1"), "{r}");
    drop(silent);
}

#[test]
fn session_dialogue_follows_the_spec() {
    let (p, one, _two) = two_customers("route-dialogue");
    let mut raw = Raw::connect(p.addr);
    assert!(
        raw.cmd("MAIL FROM:<a@example.org>")
            .starts_with("503 5.5.1"),
        "HELO first"
    );
    let ehlo = raw.cmd("EHLO client.example");
    for cap in [
        "250-mx.postern.test",
        "PIPELINING",
        "SIZE 52428800",
        "8BITMIME",
        "250 ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(cap), "{cap} missing from {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    // Nobody could authenticate (no server credentials, no admin user).
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(raw.cmd("NOOP").starts_with("250 2.0.0"));
    assert!(raw.cmd("VRFY user").starts_with("252"));
    assert!(raw.cmd("EXPN list").starts_with("502"));
    assert!(raw.cmd("HELP").starts_with("214"));
    assert!(raw.cmd("XYZZY").starts_with("502 5.5.2"));
    assert!(raw
        .cmd("MAIL FROM:<a@example.org> SIZE=99999999999")
        .starts_with("552 5.3.4"));
    assert!(raw
        .cmd("MAIL FROM:<a@example.org> FOO=1")
        .starts_with("555 5.5.4"));
    assert!(
        raw.cmd("RCPT TO:<a@one.test>").starts_with("503"),
        "RCPT needs MAIL"
    );
    raw.send(b"NOOP\n");
    assert!(raw.reply().starts_with("500 5.5.2"), "bare LF in a command");
    // A pipelined transaction (RFC 2920): replies in order, DATA last in its group.
    raw.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<x@one.test>\r\nRCPT TO:<y@two.test>\r\nDATA\r\n",
    );
    assert!(raw.reply().starts_with("250 2.1.0"));
    assert!(raw.reply().starts_with("250"), "x@one.test accepted");
    assert!(
        raw.reply().starts_with("452 4.5.3"),
        "other server's recipient deferred"
    );
    assert!(raw.reply().starts_with("354"));
    raw.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n");
    assert!(raw.reply().starts_with("250 2.0.0 Ok: queued"));
    // RSET, then a new transaction may go to the other server.
    assert!(raw.cmd("RSET").starts_with("250"));
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(raw.cmd("RCPT TO:<y@two.test>").starts_with("250"));
    assert!(raw.cmd("RSET").starts_with("250"));
    assert!(raw.cmd("QUIT").starts_with("221"));
    assert!(raw.closed());
    let m = one.wait_messages(1);
    assert_eq!(m[0].data, b"Subject: pipelined\r\n\r\nbody\r\n");
}

/// Research §1.5: no byte sequence ends a message early; the backend never
/// receives a bare CR or LF and never receives a complete smuggled message.
#[test]
fn smuggling_sequences_neither_end_a_message_nor_reach_a_backend() {
    let (p, one, _two) = two_customers("route-smuggle");
    let smuggled = b"MAIL FROM:<s@x.test>\r\nRCPT TO:<v@one.test>\r\nDATA\r\nsmuggled\r\n";
    for (name, seq) in [
        ("LF.LF", &b"body\n.\n"[..]),
        ("LF.CRLF", b"body\n.\r\n"),
        ("CRLF.LF", b"body\r\n.\n"),
        ("CR.CRLF", b"body\r.\r\n"),
        ("CR.CR", b"body\r.\r"),
        ("CRLF.CR CRLF", b"body\r\n.\r\r\n"),
        ("bare LF in a header", b"Subject: a\nb\r\n"),
    ] {
        let mut raw = Raw::connect(p.addr);
        raw.cmd("EHLO client.example");
        raw.cmd("MAIL FROM:<a@example.org>");
        assert!(raw.cmd("RCPT TO:<u@one.test>").starts_with("250"));
        assert!(raw.cmd("DATA").starts_with("354"));
        let mut body = b"Subject: smuggle\r\n\r\n".to_vec();
        body.extend_from_slice(seq);
        body.extend_from_slice(smuggled);
        body.extend_from_slice(b"\r\n.\r\n");
        raw.send(&body);
        let r = raw.reply();
        assert!(r.starts_with("550 5.5.2"), "{name}: {r}");
        // The session is still in sync: the next command gets its own reply.
        assert!(raw.cmd("NOOP").starts_with("250"), "{name}: out of sync");
        raw.cmd("QUIT");
    }
    // S10a: the end of one message and the next envelope in one packet, the
    // client then waiting for 354 (legal with PIPELINING): two messages.
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO client.example");
    raw.cmd("MAIL FROM:<a@example.org>");
    raw.cmd("RCPT TO:<first@one.test>");
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(b"Subject: first\r\n\r\none\r\n.\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<second@one.test>\r\nDATA\r\n");
    assert!(raw.reply().starts_with("250 2.0.0"), "message 1");
    assert!(raw.reply().starts_with("250"), "MAIL");
    assert!(raw.reply().starts_with("250"), "RCPT");
    assert!(raw.reply().starts_with("354"), "DATA");
    raw.send(b"Subject: second\r\n\r\ntwo\r\n.\r\n");
    assert!(raw.reply().starts_with("250 2.0.0"), "message 2");
    raw.cmd("QUIT");
    assert_eq!(one.wait_messages(2).len(), 2);

    // S10b: message content pipelined behind DATA before the 354.
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO client.example");
    raw.send(
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<u@one.test>\r\nDATA\r\nSubject: early\r\n\r\n.\r\n",
    );
    assert!(raw.reply().starts_with("250"));
    assert!(raw.reply().starts_with("250"));
    assert!(
        raw.reply().starts_with("554 5.5.0"),
        "protocol synchronization"
    );
    assert!(raw.closed());

    // A proper message afterwards goes through, and is the only one the backend got.
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "{out}");
    let got = one.wait_messages(3);
    assert_eq!(got.len(), 3, "no smuggled or partial message was delivered");
    let bytes = one.all_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            assert!(
                i > 0 && bytes[i - 1] == b'\r',
                "bare LF reached the backend at {i}"
            );
        }
        if *b == b'\r' {
            assert_eq!(
                bytes.get(i + 1),
                Some(&b'\n'),
                "bare CR reached the backend at {i}"
            );
        }
    }
    assert!(
        !String::from_utf8_lossy(&bytes).contains("smuggled"),
        "smuggled content reached the backend"
    );
}

#[test]
fn oversized_message_is_refused_and_not_delivered() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("route-size");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("hostname = ", "max_message_size = \"1KB\"\nhostname = ");
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    let ehlo = raw.cmd("EHLO c.example");
    assert!(ehlo.contains("SIZE 1024"), "{ehlo}");
    raw.cmd("MAIL FROM:<a@example.org>");
    raw.cmd("RCPT TO:<u@one.test>");
    assert!(raw.cmd("DATA").starts_with("354"));
    let mut body = Vec::new();
    for _ in 0..40 {
        body.extend_from_slice(b"0123456789012345678901234567890123456789\r\n");
    }
    body.extend_from_slice(b".\r\n");
    raw.send(&body);
    let r = raw.reply();
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(raw.cmd("QUIT").starts_with("221"));
    assert!(one.messages().is_empty());
}

#[test]
fn a_client_that_stops_sending_its_message_gets_421_and_nothing_is_delivered() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("route-datatimeout");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"])).replace(
        "command_timeout = \"30s\"",
        "command_timeout = \"30s\"\ndata_timeout = \"1s\"",
    );
    let p = Postern::start(dir, &conf);
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO c.example");
    raw.cmd("MAIL FROM:<a@example.org>");
    raw.cmd("RCPT TO:<u@one.test>");
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(b"Subject: never finished\r\n\r\nhalf a mess");
    let r = raw.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert!(raw.closed());
    p.wait_log("during DATA");
    assert!(one.messages().is_empty(), "a partial message was delivered");
}

/// One customer, one smtpd (so that consecutive sessions meet the same
/// process's prepared connections), `proxy_extra` added to `[proxy]`; debug
/// log lines, which say when a connection is kept for another session.
fn one_smtpd(tag: &str, opts: BackendOpts, proxy_extra: &str) -> (Postern, RecordingBackend) {
    let one = RecordingBackend::start_with(opts);
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("[process]\n", "[process]\nsmtpd_processes = 1\n")
        .replace("[proxy]\n", &format!("[proxy]\n{proxy_extra}"))
        + "\n[log]\nlevel = \"debug\"\n";
    (Postern::start(dir, &conf), one)
}

/// A lock-step session from `from` that sends one message to `rcpt`;
/// returns the final reply.
fn one_message(p: &Postern, from: &str, rcpt: &str) -> String {
    let mut raw = Raw::connect_from(from, p.addr);
    assert!(raw.cmd("EHLO client.example").starts_with("250"));
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    let r = raw.cmd(&format!("RCPT TO:<{rcpt}>"));
    if !r.starts_with("250") {
        return r;
    }
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(format!("Subject: from {from}\r\n\r\nhello\r\n.\r\n").as_bytes());
    let done = raw.reply();
    assert!(raw.cmd("QUIT").starts_with("221"));
    done
}

#[test]
fn a_session_finds_its_backend_connection_ready_and_forwards_its_own_client() {
    let (p, one) = one_smtpd("route-prepared", BackendOpts::default(), "");
    assert!(one_message(&p, "127.0.0.2", "u@one.test").starts_with("250 2.0.0"));
    // The server received mail: two connections are made ready for the next sessions.
    wait_for("two prepared connections", || {
        (one.connections() >= 3).then_some(())
    });
    let before = std::time::Instant::now();
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    let m = &one.wait_messages(2)[1];
    assert!(
        m.connected_at.expect("recorded") < before,
        "the second session's backend connection was ready before it came"
    );
    // The dialogue the backend sees is a session's usual one, with the
    // identity of this session's client, and of no other.
    assert_eq!(
        m.commands,
        [
            "EHLO mx.postern.test",
            "IPADDR FROM 127.0.0.3",
            "MAIL FROM:<a@example.org>",
            "RCPT TO:<v@one.test>",
            "DATA"
        ]
    );
    assert_eq!(m.data, b"Subject: from 127.0.0.3\r\n\r\nhello\r\n");
    // Unused, they are closed with QUIT after 2 s.
    wait_for("the unused connections to say QUIT", || {
        (one.quits_without_mail() >= 2).then_some(())
    });
    assert_eq!(one.messages().len(), 2);
}

#[test]
fn prepared_connections_the_backend_closed_are_not_used() {
    let opts = BackendOpts {
        idle_close: Some(std::time::Duration::from_millis(300)),
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-prepared-stale", opts, "");
    assert!(one_message(&p, "127.0.0.2", "u@one.test").starts_with("250 2.0.0"));
    // The backend times the prepared connections out (421, then closes).
    wait_for("the backend to close the idle connections", || {
        (one.idle_closed() >= 2).then_some(())
    });
    let before = std::time::Instant::now();
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    let m = &one.wait_messages(2)[1];
    assert!(
        m.connected_at.expect("recorded") > before,
        "a new connection"
    );
    assert_eq!(m.commands[1], "IPADDR FROM 127.0.0.3");
}

#[test]
fn a_prepared_connection_that_dies_at_its_first_use_is_replaced() {
    let late = std::time::Duration::from_millis(200);
    let opts = BackendOpts {
        close_late_command: Some(late),
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-prepared-dies", opts, "");
    assert!(one_message(&p, "127.0.0.2", "u@one.test").starts_with("250 2.0.0"));
    wait_for("two prepared connections", || {
        (one.connections() >= 3).then_some(())
    });
    // The backend now closes them at their next command (its idle timer
    // "fires" after 200 ms): they look alive until used.
    std::thread::sleep(late * 2);
    let before = std::time::Instant::now();
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    let m = &one.wait_messages(2)[1];
    assert!(
        m.connected_at.expect("recorded") > before,
        "a new connection"
    );
    assert_eq!(m.commands[1], "IPADDR FROM 127.0.0.3");
    // No 451 given (a bare "451" would also match a timestamp's milliseconds).
    assert!(!p.log().contains("reply=\"451"), "{}", p.log());
}

#[test]
fn without_prepared_or_reused_connections_each_session_connects_itself() {
    let (p, one) = one_smtpd(
        "route-prepared-0",
        BackendOpts::default(),
        "prepared_connections = 0\nreuse_connections = false\n",
    );
    for from in ["127.0.0.2", "127.0.0.3"] {
        assert!(one_message(&p, from, "u@one.test").starts_with("250 2.0.0"));
    }
    one.wait_messages(2);
    assert_eq!(one.connections(), 2);
    wait_for("both connections to say QUIT", || {
        (one.quits() == 2).then_some(())
    });
}

/// The messages' dialogues the backend saw, as `(commands, data)`.
fn dialogues(one: &RecordingBackend, n: usize) -> Vec<(Vec<String>, Vec<u8>)> {
    one.wait_messages(n)
        .into_iter()
        .map(|m| (m.commands, m.data))
        .collect()
}

/// EHLO commands the backend received.
fn ehlos(one: &RecordingBackend) -> usize {
    one.all_bytes()
        .windows(b"\nEHLO ".len())
        .filter(|w| w == b"\nEHLO ")
        .count()
        + usize::from(one.all_bytes().starts_with(b"EHLO "))
}

/// A session from `from` that has MAIL and RCPT `rcpt` accepted.
fn open_transaction(p: &Postern, from: &str, rcpt: &str) -> Raw {
    let mut raw = Raw::connect_from(from, p.addr);
    assert!(raw.cmd("EHLO client.example").starts_with("250"));
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(raw.cmd(&format!("RCPT TO:<{rcpt}>")).starts_with("250"));
    raw
}

/// The usual dialogue of one message of `one_message`.
fn usual(from: &str, rcpt: &str) -> (Vec<String>, Vec<u8>) {
    let commands = [
        "EHLO mx.postern.test".to_string(),
        format!("IPADDR FROM {from}"),
        "MAIL FROM:<a@example.org>".to_string(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".to_string(),
    ];
    let data = format!("Subject: from {from}\r\n\r\nhello\r\n");
    (commands.to_vec(), data.into_bytes())
}

#[test]
fn a_finished_sessions_connection_serves_the_next_client_under_its_own_identity() {
    // No connection prepared ahead: only reuse can give the second session
    // a connection it did not open.
    let (p, one) = one_smtpd(
        "route-reuse",
        BackendOpts::default(),
        "prepared_connections = 0\n",
    );
    assert!(one_message(&p, "127.0.0.2", "u@one.test").starts_with("250 2.0.0"));
    // The connection is back among the ready ones once it said EHLO again.
    p.wait_log("kept for another session");
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    assert_eq!(one.connections(), 1, "one connection, two sessions");
    // Each message's dialogue is a session's usual one (EHLO reset what
    // came before), with its own client's address and nothing of the other.
    assert_eq!(
        dialogues(&one, 2),
        [
            usual("127.0.0.2", "u@one.test"),
            usual("127.0.0.3", "v@one.test")
        ]
    );
    // Unused, it is closed with QUIT after 2 s.
    wait_for("the connection to say QUIT", || {
        (one.quits() == 1).then_some(())
    });
}

#[test]
fn a_transaction_left_open_does_not_follow_the_connection_to_the_next_client() {
    let (p, one) = one_smtpd(
        "route-reuse-open",
        BackendOpts::default(),
        "prepared_connections = 0\n",
    );
    // MAIL and RCPT reach the backend, then the client leaves without DATA.
    let mut raw = open_transaction(&p, "127.0.0.2", "left@one.test");
    assert!(raw.cmd("QUIT").starts_with("221"));
    p.wait_log("kept for another session");
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    assert_eq!(one.connections(), 1);
    assert_eq!(dialogues(&one, 1), [usual("127.0.0.3", "v@one.test")]);
}

#[test]
fn a_connection_left_in_a_body_or_tied_to_its_client_is_never_reused() {
    // A client that leaves in the middle of its message: the backend still
    // reads a body, its connection is dropped (the backend discards the
    // part), and the next client gets a connection of its own.
    let (p, one) = one_smtpd(
        "route-reuse-body",
        BackendOpts::default(),
        "prepared_connections = 0\n",
    );
    let mut raw = open_transaction(&p, "127.0.0.2", "u@one.test");
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(b"Subject: cut\r\n\r\npart of a body\r\n");
    drop(raw);
    p.wait_log("during DATA");
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    assert_eq!(one.connections(), 2);
    assert_eq!(dialogues(&one, 1), [usual("127.0.0.3", "v@one.test")]);
    assert_eq!(one.messages().len(), 1, "the cut message was not delivered");

    // XCLIENT servers: a connection carries one client only.
    let opts = BackendOpts {
        xclient: true,
        ..BackendOpts::default()
    };
    let one = RecordingBackend::start_with(opts);
    let dir = TempDir::new("route-reuse-xclient");
    let server = server_block("One", one.port(), &["one.test"]) + "client_identity = \"xclient\"\n";
    let conf = config_text(&dir, &server)
        .replace("[process]\n", "[process]\nsmtpd_processes = 1\n")
        .replace("[proxy]\n", "[proxy]\nprepared_connections = 0\n");
    let p = Postern::start(dir, &conf);
    for from in ["127.0.0.2", "127.0.0.3"] {
        assert!(one_message(&p, from, "u@one.test").starts_with("250 2.0.0"));
    }
    one.wait_messages(2);
    assert_eq!(one.connections(), 2);
    wait_for("both connections to say QUIT", || {
        (one.quits() == 2).then_some(())
    });
}

/// RFC 2920 as Postfix's client does it: MAIL, RCPT and DATA in one write.
/// postern passes DATA on with the RCPT; a refused recipient leaves the
/// backend out of DATA, and the session goes on.
#[test]
fn a_pipelined_data_travels_with_its_rcpt_and_a_refused_one_changes_nothing() {
    let opts = BackendOpts {
        refuse_rcpt: Some("nobody@one.test"),
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-data-ahead", opts, "");
    let mut raw = Raw::connect_from("127.0.0.2", p.addr);
    assert!(raw.cmd("EHLO client.example").starts_with("250"));
    raw.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@one.test>\r\nDATA\r\n");
    assert!(raw.reply().starts_with("250 2.1.0"));
    assert!(
        raw.reply().starts_with("550 5.1.1"),
        "the backend's refusal, relayed"
    );
    assert!(raw.reply().starts_with("554 5.5.1"), "no valid recipients");
    raw.send(b"RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<u@one.test>\r\nDATA\r\n");
    assert!(raw.reply().starts_with("250 2.0.0"), "RSET");
    assert!(raw.reply().starts_with("250 2.1.0"));
    assert!(raw.reply().starts_with("250 2.1.5"));
    assert!(raw.reply().starts_with("354"));
    raw.send(b"Subject: ahead\r\n\r\nbody\r\n.\r\n");
    assert!(raw.reply().starts_with("250 2.0.0 Ok: queued as 1"));
    assert!(raw.cmd("QUIT").starts_with("221"));
    let m = one.wait_messages(1);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].data, b"Subject: ahead\r\n\r\nbody\r\n");
    // The transaction after RSET (the recording backend starts a new
    // record there), MAIL, RCPT and DATA as the client sent them.
    assert_eq!(
        m[0].commands,
        ["MAIL FROM:<a@example.org>", "RCPT TO:<u@one.test>", "DATA"]
    );
}

#[test]
fn recipients_accepted_on_a_lost_backend_connection_fail_the_whole_transaction() {
    let opts = BackendOpts {
        drop_at_rcpt: Some("drop@one.test"),
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-lost-tx", opts, "");
    let mut raw = open_transaction(&p, "127.0.0.2", "first@one.test");
    // The backend connection breaks: first@ was accepted on it and is gone.
    assert!(raw.cmd("RCPT TO:<drop@one.test>").starts_with("451 4.4.1"));
    // So no recipient may be accepted on a new connection, and DATA may not
    // deliver the message without first@: the sender retries it whole.
    assert!(raw.cmd("RCPT TO:<third@one.test>").starts_with("451 4.4.1"));
    assert!(raw.cmd("DATA").starts_with("451 4.4.1"));
    // The next transaction goes through.
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(raw.cmd("RCPT TO:<first@one.test>").starts_with("250"));
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(b"Subject: again\r\n\r\nwhole\r\n.\r\n");
    assert!(raw.reply().starts_with("250"));
    assert!(raw.cmd("QUIT").starts_with("221"));
    let m = one.wait_messages(1);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].position("RCPT TO:<third@one.test>"), None);
    assert_eq!(m[0].data, b"Subject: again\r\n\r\nwhole\r\n");
}

#[test]
fn a_connection_with_errors_of_its_client_is_not_passed_to_the_next() {
    let opts = BackendOpts {
        refuse_rcpt: Some("nobody@one.test"),
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-reuse-errors", opts, "prepared_connections = 0\n");
    // Refused recipients and no message: the backend holds those errors
    // against the connection (as Postfix does until mail is delivered).
    let mut raw = Raw::connect_from("127.0.0.2", p.addr);
    assert!(raw.cmd("EHLO client.example").starts_with("250"));
    assert!(raw.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    for _ in 0..4 {
        assert!(raw.cmd("RCPT TO:<nobody@one.test>").starts_with("550"));
    }
    assert!(raw.cmd("QUIT").starts_with("221"));
    // Its backend connection either says QUIT or EHLO again (readied for
    // another client): QUIT it must be.
    wait_for("the connection to say QUIT or EHLO", || {
        (one.quits() + ehlos(&one) >= 2).then_some(())
    });
    assert_eq!(one.quits(), 1, "closed, not readied for another client");
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    assert_eq!(one.connections(), 2, "a connection of its own");
}

#[test]
fn a_refused_ipaddr_from_on_a_reused_connection_means_a_new_connection() {
    // This backend takes IPADDR FROM once per connection: on a reused one,
    // the previous client's address would stay in force.
    let opts = BackendOpts {
        ipaddr_once: true,
        ..BackendOpts::default()
    };
    let (p, one) = one_smtpd("route-reuse-ipaddr", opts, "prepared_connections = 0\n");
    assert!(one_message(&p, "127.0.0.2", "u@one.test").starts_with("250 2.0.0"));
    p.wait_log("kept for another session");
    assert!(one_message(&p, "127.0.0.3", "v@one.test").starts_with("250 2.0.0"));
    let m = one.wait_messages(2);
    assert_eq!(m.len(), 2, "no message under the other client's address");
    assert_eq!(one.connections(), 2);
    assert_eq!(m[1].commands, usual("127.0.0.3", "v@one.test").0);
    assert!(m[1].connected_at > m[0].connected_at, "a new connection");
}
