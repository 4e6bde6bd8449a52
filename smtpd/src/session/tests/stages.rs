//! A transcript per stage: what a client says, what it gets back, and what
//! reached the backend.

use super::*;

/// A router with two backends (`one.test`, `two.test`), both started.
async fn two_backends(mode: Mode) -> (RouterStub, BackendStub, BackendStub) {
    let (one, two) = (
        BackendStub::start(mode).await,
        BackendStub::start(mode).await,
    );
    let ports = [one.port, two.port];
    let router = RouterStub::start(move |req| usual(req, &ports)).await;
    (router, one, two)
}

#[tokio::test]
async fn the_greeting_and_ehlo_say_what_postern_offers() {
    let (router, _one, _two) = two_backends(Mode::Normal).await;
    let (mut d, greeting) = Setup::with(&router).start().await;
    assert_eq!(greeting, "220 mx.test ESMTP postern");
    let ehlo = d.cmd("EHLO client.test").await;
    let max = config("").proxy.max_message_size.0;
    assert_eq!(
        ehlo,
        format!(
            "250-mx.test\n250-PIPELINING\n250-SIZE {max}\n250-8BITMIME\n\
             250-ENHANCEDSTATUSCODES\n250 AUTH PLAIN LOGIN"
        )
    );
    d.play(&[
        ("HELO client.test", "250 mx.test"),
        ("NOOP", "250 2.0.0 Ok"),
        ("RSET", "250 2.0.0 Ok"),
        ("VRFY someone", "252 2.0.0"),
        ("EXPN list", "502 5.5.1"),
        ("HELP", "214 2.0.0"),
        ("FROB", "502 5.5.2 Error: command not recognized"),
        ("QUIT", "221 2.0.0 Bye"),
    ])
    .await;
    d.ends().await;
    // Counted at connect; the goodbye carries the statistics.
    assert_eq!(router.verbs().first().map(String::as_str), Some("connect"));
}

#[tokio::test]
async fn mail_is_checked_by_postern_alone() {
    let (router, one, _two) = two_backends(Mode::Normal).await;
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[
        (
            "MAIL FROM:<s@x.test>",
            "503 5.5.1 Error: send HELO/EHLO first",
        ),
        ("EHLO client.test", "250 "),
        ("MAIL FROM:<s@x.test> SIZE=999999999999", "552 5.3.4"),
        (
            "MAIL FROM:<s@x.test> SIZE=many",
            "501 5.5.4 Bad SIZE parameter",
        ),
        (
            "MAIL FROM:<s@x.test> FROB=1",
            "555 5.5.4 Unsupported option: FROB",
        ),
        (
            "MAIL FROM:<s@x.test> AUTH=a=b",
            "501 5.5.4 Bad AUTH parameter syntax",
        ),
        ("MAIL FROM:<s@x.test> BODY=8BITMIME AUTH=<>", "250 2.1.0 Ok"),
        (
            "MAIL FROM:<t@x.test>",
            "503 5.5.1 Error: nested MAIL command",
        ),
        ("RSET", "250 2.0.0 Ok"),
    ])
    .await;
    assert_eq!(one.received(), "", "MAIL alone never reaches a backend");
}

#[tokio::test]
async fn rcpt_goes_through_check_route_policy_forward() {
    let (router, one, _two) = two_backends(Mode::Normal).await;
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[
        ("EHLO client.test", "250 "),
        // check
        ("RCPT TO:<u@one.test>", "503 5.5.1 Error: need MAIL command"),
        ("MAIL FROM:<s@x.test>", "250 2.1.0"),
        ("RCPT TO:<u@one.test> NOTIFY=NEVER", "555 5.5.4"),
        // route
        (
            "RCPT TO:<u@elsewhere.test>",
            "554 5.7.1 <u@elsewhere.test>: Relaying denied",
        ),
        (
            "RCPT TO:<Postmaster>",
            "550 5.1.1 <Postmaster>: Recipient address rejected",
        ),
        // forward: the backend's replies, verbatim
        ("RCPT TO:<u@one.test>", "250 2.1.5 Ok"),
        (
            "RCPT TO:<refused@one.test>",
            "550 5.1.1 <refused@one.test>: no such user",
        ),
        // The transaction has a server now.
        ("RCPT TO:<Postmaster>", "250 2.1.5 Ok"),
    ])
    .await;
    let got = one.received();
    assert!(
        got.starts_with("EHLO mx.test\r\nIPADDR FROM 127.0.0.1\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<u@one.test>\r\n"),
        "{got}"
    );
    assert!(!got.contains("elsewhere"), "{got}");
    // Each routed recipient asked the policy once.
    let verbs = router.verbs();
    assert_eq!(
        verbs.iter().filter(|v| *v == "policy").count(),
        3,
        "{verbs:?}"
    );
}

#[tokio::test]
async fn a_policy_refusal_is_the_recipients_reply_and_never_reaches_the_backend() {
    let one = BackendStub::start(Mode::Normal).await;
    let ports = [one.port];
    let router = RouterStub::start(move |req| match req.get("request") {
        Some("policy") if req.get("recipient") == Some("spam@one.test") => Some(
            answer(req, "ok")
                .with("action", "reject")
                .with("code", 554)
                .with("enhanced", "5.7.1")
                .with(
                    "text",
                    "<spam@one.test>: Recipient address rejected: Access denied",
                )
                .with("kind", "access")
                .with("rule", "reject to spam@one.test"),
        ),
        _ => usual(req, &ports),
    })
    .await;
    let mut d = in_transaction(Setup::with(&router)).await;
    d.play(&[
        (
            "RCPT TO:<spam@one.test>",
            "554 5.7.1 <spam@one.test>: Recipient address rejected: Access denied",
        ),
        ("RCPT TO:<ham@one.test>", "250 2.1.5"),
    ])
    .await;
    let got = one.received();
    assert!(!got.contains("spam@"), "{got}");
    assert!(got.contains("RCPT TO:<ham@one.test>"), "{got}");
}

#[tokio::test]
async fn a_second_servers_recipient_gets_452_and_the_message_goes_to_the_first() {
    let (router, one, two) = two_backends(Mode::Normal).await;
    let mut d = in_transaction(Setup::with(&router)).await;
    d.play(&[
        ("RCPT TO:<a@one.test>", "250 2.1.5"),
        ("RCPT TO:<b@two.test>", "452 4.5.3 Too many recipients"),
        ("RCPT TO:<c@one.test>", "250 2.1.5"),
        ("DATA", "354 "),
        (
            "Subject: split\r\n\r\nhi\r\n.",
            "250 2.0.0 Ok: queued as B1",
        ),
        // The next transaction may go to the other server.
        ("MAIL FROM:<s@x.test>", "250 2.1.0"),
        ("RCPT TO:<b@two.test>", "250 2.1.5"),
    ])
    .await;
    let got = one.received();
    assert!(
        got.contains("RCPT TO:<a@one.test>\r\nRCPT TO:<c@one.test>\r\n"),
        "{got}"
    );
    assert!(!got.contains("two.test"), "{got}");
    assert!(two.received().contains("RCPT TO:<b@two.test>"));
}

#[tokio::test]
async fn a_pipelined_group_gets_its_replies_in_order_and_data_travels_with_the_last_rcpt() {
    let (router, one, _two) = two_backends(Mode::Normal).await;
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[("EHLO client.test", "250 ")]).await;
    d.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<a@one.test>\r\nRCPT TO:<b@one.test>\r\nDATA\r\n")
        .await;
    for expected in ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354 go ahead"] {
        let got = d.reply().await;
        assert!(got.starts_with(expected), "{expected}: {got}");
    }
    d.send(b"Subject: p\r\n\r\n..dot-stuffed\r\n.\r\n").await;
    assert!(d.reply().await.starts_with("250 2.0.0"));
    let got = one.received();
    // MAIL with the first RCPT, DATA with the last, once; the body byte for byte.
    assert!(
        got.contains(
            "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@one.test>\r\nRCPT TO:<b@one.test>\r\nDATA\r\n\
             Subject: p\r\n\r\n..dot-stuffed\r\n.\r\n"
        ),
        "{got}"
    );
    assert_eq!(got.matches("DATA").count(), 1, "{got}");
}

#[tokio::test]
async fn a_backend_without_pipelining_gets_one_command_at_a_time() {
    let (router, one, _two) = two_backends(Mode::NoPipelining).await;
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[("EHLO client.test", "250 ")]).await;
    d.send(b"MAIL FROM:<s@x.test>\r\nRCPT TO:<a@one.test>\r\nDATA\r\n")
        .await;
    for expected in ["250 2.1.0", "250 2.1.5", "354 go ahead"] {
        let got = d.reply().await;
        assert!(got.starts_with(expected), "{expected}: {got}");
    }
    d.send(b"hi\r\n.\r\n").await;
    assert!(d.reply().await.starts_with("250 2.0.0"));
    assert!(one
        .received()
        .contains("IPADDR FROM 127.0.0.1\r\nMAIL FROM:<s@x.test>\r\n"));
}

#[tokio::test]
async fn content_pipelined_behind_data_is_refused_and_ends_the_session() {
    let (router, one, _two) = two_backends(Mode::Normal).await;
    let mut d = in_transaction(Setup::with(&router)).await;
    d.play(&[("RCPT TO:<a@one.test>", "250 2.1.5")]).await;
    d.send(b"DATA\r\nSubject: early\r\n\r\nhi\r\n.\r\n").await;
    assert!(d
        .reply()
        .await
        .starts_with("554 5.5.0 Error: SMTP protocol synchronization"));
    d.ends().await;
    assert!(!one.received().contains("early"));
}

/// Sends `body` after a 354; the reply to its end.
async fn body_reply(body: &[u8]) -> (String, String) {
    let (router, one, _two) = two_backends(Mode::Normal).await;
    let mut d = in_transaction(Setup::with(&router)).await;
    d.play(&[("RCPT TO:<a@one.test>", "250 2.1.5"), ("DATA", "354 ")])
        .await;
    d.send(body).await;
    let reply = d.reply().await;
    // The session goes on.
    d.play(&[("NOOP", "250 2.0.0")]).await;
    (reply, one.received())
}

#[tokio::test]
async fn smuggled_line_ends_and_nul_refuse_the_message_before_the_backend_sees_them() {
    let smuggled = b"Subject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@x.test>\r\n.\r\n";
    let (reply, got) = body_reply(smuggled).await;
    assert!(
        reply.starts_with("550 5.5.2 Error: bare <CR> or <LF> in message"),
        "{reply}"
    );
    assert!(!got.contains("hello\n") && !got.contains("evil"), "{got}");
    let (reply, got) = body_reply(b"Subject: s\r\n\r\nhello\r.\r\nevil\r\n.\r\n").await;
    assert!(
        reply.starts_with("550 5.5.2 Error: bare <CR> or <LF>"),
        "{reply}"
    );
    assert!(!got.contains("hello\r.") && !got.contains("evil"), "{got}");
    let (reply, got) = body_reply(b"Subject: s\r\n\r\nhel\0lo\r\n.\r\n").await;
    assert!(
        reply.starts_with("550 5.5.2 Error: NUL character in message"),
        "{reply}"
    );
    assert!(!got.contains('\0'), "{got:?}");
}

#[tokio::test]
async fn bad_command_lines_get_500_and_the_session_goes_on() {
    let (mut d, _) = Setup::without_router().start().await;
    d.send(b"NOOP\n").await;
    assert!(d
        .reply()
        .await
        .starts_with("500 5.5.2 Error: bare <CR> or <LF> received"));
    d.send(b"NOOP\rRSET\r\n").await;
    assert!(d
        .reply()
        .await
        .starts_with("500 5.5.2 Error: bare <CR> or <LF> received"));
    d.send(format!("NOOP {}\r\n", "x".repeat(3000)).as_bytes())
        .await;
    assert!(d
        .reply()
        .await
        .starts_with("500 5.5.2 Error: command line too long"));
    d.send(b"NOOP \xff\r\n").await;
    assert!(d
        .reply()
        .await
        .starts_with("500 5.5.2 Error: command is not valid UTF-8"));
    d.play(&[("NOOP", "250 2.0.0"), ("QUIT", "221 2.0.0")])
        .await;
    d.ends().await;
}

/// The usual router, and `alias.test` an alias domain that no server
/// lists: `list@` stands for ann@ and bob@one.test, `half@` for ann@ and
/// refused@one.test, `gone@` for refused@one.test alone; no other alias.
fn with_aliases(req: &Attrs, ports: &[u16]) -> Option<Attrs> {
    if req.get("request")? != "route" || req.get("domain")? != "alias.test" {
        return usual(req, ports);
    }
    let targets: &[&str] = match req.get("local")? {
        "list" => &["ann@one.test", "bob@one.test"],
        "half" => &["ann@one.test", "refused@one.test"],
        "gone" => &["refused@one.test"],
        "busy" => &["refused@one.test", "full@one.test"],
        "trio" => &["t1@one.test", "t2@one.test", "t3@one.test"],
        "duo" => &["d1@one.test", "d2@one.test"],
        _ => return Some(answer(req, "notfound").with("alias", "yes")),
    };
    let mut a = route_to(req, 1, ports[0], Duration::from_secs(5)).with("alias", "yes");
    for t in targets {
        a.push("to", t);
    }
    Some(a)
}

#[tokio::test]
async fn an_alias_sends_each_address_once_and_the_client_gets_one_reply_per_rcpt() {
    for mode in [Mode::Normal, Mode::NoPipelining] {
        let (one, two) = (
            BackendStub::start(mode).await,
            BackendStub::start(mode).await,
        );
        let ports = [one.port, two.port];
        let router = RouterStub::start(move |req| with_aliases(req, &ports)).await;
        let (mut d, _) = Setup::with(&router).start().await;
        d.play(&[
            ("EHLO client.test", "250 "),
            ("MAIL FROM:<s@x.test>", "250 2.1.0"),
            ("RCPT TO:<ann@one.test>", "250 2.1.5 Ok"),
            // ann@ went already: bob@ only.
            ("RCPT TO:<list@alias.test>", "250 2.1.5 Ok"),
            // One of two accepted: 250 (the mix is logged).
            ("RCPT TO:<half@alias.test>", "250 2.1.5 Ok"),
            // Refused before: asked again, refused again, in the client's words.
            (
                "RCPT TO:<gone@alias.test>",
                "550 5.1.1 <gone@alias.test>: no such user",
            ),
            (
                "RCPT TO:<nobody@alias.test>",
                "550 5.1.1 <nobody@alias.test>: Recipient address rejected: User unknown in virtual alias table",
            ),
            ("RCPT TO:<bob@one.test>", "250 2.1.5 Ok"),
            ("DATA", "354 "),
            ("hi\r\n.", "250 2.0.0"),
        ])
        .await;
        let got = one.received();
        for (rcpt, times) in [
            ("ann@one.test", 1),
            ("bob@one.test", 1),
            ("refused@one.test", 2),
        ] {
            assert_eq!(
                got.matches(&format!("RCPT TO:<{rcpt}>\r\n")).count(),
                times,
                "{rcpt}: {got}"
            );
        }
        assert!(
            !got.contains("alias.test"),
            "the backend sees only the addresses: {got}"
        );
        assert!(two.received().is_empty());
    }
}

#[tokio::test]
async fn auth_takes_canonical_base64_only() {
    let (router, _one, _two) = two_backends(Mode::Normal).await;
    let (mut d, _) = Setup::with(&router).start().await;
    d.play(&[("EHLO client.test", "250 ")]).await;
    // Unpadded, bad padding, a character outside the alphabet, padding
    // in the middle: refused before any credential is looked at.
    for bad in ["AHUAcA", "AHUAcA=a", "AHUA!A==", "Zg==Zg=="] {
        d.play(&[(
            &format!("AUTH PLAIN {bad}"),
            "501 5.5.2 Error: invalid base64 data",
        )])
        .await;
    }
    // \0u\0p, canonical: decoded, then checked (no server has it).
    let r = d.cmd("AUTH PLAIN AHUAcA==").await;
    assert!(r.starts_with("535 5.7.8"), "{r}");
}

#[tokio::test]
async fn an_alias_refused_by_all_gets_a_temporary_refusal_first_and_stays_within_max_recipients() {
    let one = BackendStub::start(Mode::Normal).await;
    let ports = [one.port, 0];
    let router = RouterStub::start(move |req| with_aliases(req, &ports)).await;
    let setup = Setup {
        proxy: "max_recipients = 5".into(),
        ..Setup::with(&router)
    };
    let (mut d, _) = setup.start().await;
    d.play(&[
        ("EHLO client.test", "250 "),
        ("MAIL FROM:<s@x.test>", "250 2.1.0"),
        // 550 for one, 452 for the other: the sender retries rather than bounces.
        (
            "RCPT TO:<busy@alias.test>",
            "452 4.2.2 <busy@alias.test>: mailbox full",
        ),
        ("RCPT TO:<ann@one.test>", "250 2.1.5 Ok"),
        ("RCPT TO:<Ann@One.test.>", "250 2.1.5 Ok"),
        // 1 accepted + 3: within 5.
        ("RCPT TO:<trio@alias.test>", "250 2.1.5 Ok"),
        // 4 accepted + 2 would pass 5: the list waits for the next
        // transaction, whole (the client's own RCPTs are 5, within 5).
        ("RCPT TO:<duo@alias.test>", "452 4.5.3 Too many recipients"),
    ])
    .await;
    let got = one.received();
    assert_eq!(got.matches("RCPT TO:<").count(), 1 + 1 + 1 + 3, "{got}");
    assert_eq!(
        got.matches("<ann@one.test>").count(),
        1,
        "one spelling, sent once: {got}"
    );
    assert!(!got.contains("<d1@"), "{got}");
}
