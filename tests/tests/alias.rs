//! Virtual aliases (SPEC §12) end to end: real clients (swaks, smtplib, a
//! real Postfix) → postern → recording backends, and the checks at load.

use postern_tests::postfix::PostfixBackend;
use postern_tests::*;

/// Seed 004's story: hebergee.test moved to one.test (a list, abuse@
/// forwarded, a catch-all translating the rest), and lists.test an alias
/// domain that no server lists (team@ only).
const ALIASES: &str = r#"
[[alias]]
address = "social@hebergee.test"
to = ["pomme@one.test", "poire@one.test"]

[[alias]]
address = "abuse@hebergee.test"
to = ["postmaster@one.test"]

[[alias]]
address = "@hebergee.test"
to = ["@one.test"]

[[alias]]
address = "team@lists.test"
to = ["ann@two.test", "bob@two.test"]
"#;

/// Postern with two servers (One: one.test, Two: two.test) and [`ALIASES`].
fn with_aliases(tag: &str) -> (Postern, RecordingBackend, RecordingBackend) {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let servers = server_block("One", one.port(), &["one.test"])
        + &server_block("Two", two.port(), &["two.test"]);
    // The log file too, for `postern log search`.
    let conf = format!(
        "{}{ALIASES}\n[log]\nfile = \"{}\"\n",
        config_text(&dir, &servers),
        dir.path("proxy.log").display()
    );
    (Postern::start(dir, &conf), one, two)
}

/// The RCPT lines a message reached its backend with.
fn rcpts(m: &Received) -> Vec<String> {
    m.commands
        .iter()
        .filter(|c| c.starts_with("RCPT TO:"))
        .cloned()
        .collect()
}

#[test]
fn a_list_reaches_both_mailboxes_in_one_transaction_and_the_log_names_both() {
    let (p, one, two) = with_aliases("alias-list");
    let (out, ok) = swaks(
        p.addr,
        &[
            "--from",
            "sender@example.org",
            "--to",
            "social@hebergee.test",
        ],
    );
    assert!(ok, "{out}");
    let got = one.wait_messages(1);
    assert_eq!(got.len(), 1);
    assert_eq!(
        rcpts(&got[0]),
        ["RCPT TO:<pomme@one.test>", "RCPT TO:<poire@one.test>"]
    );
    assert_eq!(two.connections(), 0);
    let line = p.wait_log("rcpt <social@hebergee.test> expanded to");
    assert!(
        line.contains("recipient=social@hebergee.test expanded=pomme@one.test,poire@one.test"),
        "{line}"
    );
    // A search for a mailbox finds the mail its alias brought.
    let found = p.cli(&["log", "search", "poire@one.test"]);
    let text = String::from_utf8_lossy(&found.stdout);
    assert!(
        text.contains("social@hebergee.test") && text.contains("server=One"),
        "{text}"
    );
}

#[test]
fn a_translation_keeps_local_parts_and_explicit_aliases_win() {
    let (p, one, _two) = with_aliases("alias-domain");
    let out = smtplib_sendmail(
        "127.0.0.2",
        p.addr,
        "a@example.org",
        &["Jean.Dupont@hebergee.test", "abuse@hebergee.test"],
    );
    assert!(out.contains("refused: {}"), "{out}");
    let got = one.wait_messages(1);
    assert_eq!(
        rcpts(&got[0]),
        [
            "RCPT TO:<Jean.Dupont@one.test>",
            "RCPT TO:<postmaster@one.test>"
        ]
    );
}

#[test]
fn a_recipient_given_directly_and_through_aliases_arrives_once() {
    let (p, one, _two) = with_aliases("alias-once");
    // pomme@ directly, through the list, and through the catch-all (in
    // another case): one RCPT for it; poire@ once.
    let out = smtplib_sendmail(
        "127.0.0.3",
        p.addr,
        "a@example.org",
        &[
            "pomme@one.test",
            "social@hebergee.test",
            "POMME@hebergee.test",
        ],
    );
    assert!(out.contains("refused: {}"), "{out}");
    let got = one.wait_messages(1);
    assert_eq!(
        rcpts(&got[0]),
        ["RCPT TO:<pomme@one.test>", "RCPT TO:<poire@one.test>"]
    );
}

#[test]
fn an_alias_domain_is_served_and_its_unknown_users_get_550() {
    let (p, _one, two) = with_aliases("alias-unknown");
    let mut c = Raw::connect(p.addr);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<team@lists.test>").starts_with("250 "));
    assert_eq!(
        c.cmd("RCPT TO:<nobody@lists.test>").trim_end(),
        "550 5.1.1 <nobody@lists.test>: Recipient address rejected: User unknown in virtual alias table"
    );
    assert_eq!(
        c.cmd("RCPT TO:<u@elsewhere.test>").trim_end(),
        "554 5.7.1 <u@elsewhere.test>: Relaying denied"
    );
    // The transaction goes to Two; the list's server is One: later.
    assert!(c
        .cmd("RCPT TO:<social@hebergee.test>")
        .starts_with("452 4.5.3"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: team\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let got = two.wait_messages(1);
    assert_eq!(
        rcpts(&got[0]),
        ["RCPT TO:<ann@two.test>", "RCPT TO:<bob@two.test>"]
    );
}

#[test]
fn aliases_that_cannot_work_are_refused_at_load_with_the_line_of_each() {
    let dir = TempDir::new("alias-check");
    let servers =
        server_block("One", 2501, &["one.test"]) + &server_block("Two", 2502, &["two.test"]);
    let base = config_text(&dir, &servers);
    let bad = base.clone()
        + r#"
[[alias]]
address = "mixed@one.test"
to = ["a@one.test", "b@two.test"]

[[alias]]
address = "ping@one.test"
to = ["pong@one.test"]

[[alias]]
address = "pong@one.test"
to = ["ping@one.test"]

[[alias]]
address = "Ping@one.test"
to = ["x@one.test"]
"#;
    let line_of = |needle: &str| {
        bad.lines()
            .position(|l| l.contains(needle))
            .expect("in the file")
    };
    // The [[alias]] header is the line before `address = …`.
    let (mixed, pong, dup) = (
        line_of("\"mixed@one.test\""),
        line_of("address = \"pong@one.test\""),
        line_of("\"Ping@one.test\""),
    );
    let file = dir.path("bad.toml");
    std::fs::write(&file, &bad).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .arg("-c")
        .arg(&file)
        .arg("check")
        .output()
        .expect("postern check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let server_line = |n: usize| {
        bad.lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == "[[server]]")
            .nth(n - 1)
            .map(|(i, _)| i + 1)
            .expect("a server block")
    };
    assert!(
        err.contains(&format!(
            "alias[4].address: \"Ping@one.test\" is also the address of alias[2], at line {} (line {dup})",
            line_of("address = \"ping@one.test\"")
        )),
        "a duplicate names both places: {err}"
    );
    // Once the duplicate is gone, the table as a whole.
    let fixed = bad.replace(
        "address = \"Ping@one.test\"",
        "address = \"other@one.test\"",
    );
    std::fs::write(&file, &fixed).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .arg("-c")
        .arg(&file)
        .arg("check")
        .output()
        .expect("postern check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "targets on two servers: a@one.test on server[1], at line {} (One), b@two.test on server[2], at line {} (Two)",
            server_line(1),
            server_line(2)
        )) && err.contains(&format!("(line {mixed})")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "ping@one.test loops: ping@one.test (alias[2], at line {}) → pong@one.test (alias[3], at line {pong}) → ping@one.test",
            line_of("address = \"ping@one.test\"")
        )),
        "{err}"
    );
    assert_eq!(
        err.matches("loops").count(),
        1,
        "one loop, said once: {err}"
    );
}

#[test]
fn a_reload_changes_the_aliases_of_new_transactions_and_refuses_a_loop() {
    let (p, one, _two) = with_aliases("alias-reload");
    let mut c = Raw::connect(p.addr);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<social@hebergee.test>").starts_with("250"));

    let conf = std::fs::read_to_string(p.config_path()).expect("config");
    let changed = conf.replace(
        "to = [\"pomme@one.test\", \"poire@one.test\"]",
        "to = [\"pomme@one.test\", \"cerise@one.test\"]",
    );
    std::fs::write(p.config_path(), &changed).expect("write");
    let r = p.cli(&["reload"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // The transaction under way keeps what its RCPT was given.
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: one\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    // The next one gets the new list.
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<social@hebergee.test>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: two\r\n\r\nhi\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    let got = one.wait_messages(2);
    assert_eq!(
        rcpts(&got[0]),
        ["RCPT TO:<pomme@one.test>", "RCPT TO:<poire@one.test>"]
    );
    assert_eq!(
        rcpts(&got[1]),
        ["RCPT TO:<pomme@one.test>", "RCPT TO:<cerise@one.test>"]
    );

    // A loop is refused by reload; the running table stays.
    let looped =
        changed + "\n[[alias]]\naddress = \"pomme@one.test\"\nto = [\"social@hebergee.test\"]\n";
    std::fs::write(p.config_path(), looped).expect("write");
    let r = p.cli(&["reload"]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("loops"), "{err}");
    let out = smtplib_sendmail(
        "127.0.0.4",
        p.addr,
        "a@example.org",
        &["social@hebergee.test"],
    );
    assert!(out.contains("refused: {}"), "{out}");
    let got = one.wait_messages(3);
    assert_eq!(
        rcpts(&got[2]),
        ["RCPT TO:<pomme@one.test>", "RCPT TO:<cerise@one.test>"]
    );
}

#[test]
fn status_config_and_alias_test_show_the_alias_domains() {
    let (p, _one, _two) = with_aliases("alias-cli");
    let status = p.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    let line = |d: &str| {
        text.lines()
            .find(|l| l.starts_with(d))
            .unwrap_or_else(|| panic!("{d} in:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("hebergee.test"),
        "hebergee.test 3 aliases, catch-all served by its aliases"
    );
    assert_eq!(
        line("lists.test"),
        "lists.test 1 alias served: other addresses get 550 5.1.1"
    );

    let config = p.cli(&["config"]);
    let text = String::from_utf8_lossy(&config.stdout);
    assert_eq!(text.matches("[[alias]]").count(), 4, "{text}");
    assert!(text.contains("# Alias domains"), "{text}");

    let test = |address: &str| {
        let o = p.cli(&["alias", "test", address]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = test("Social@Hebergee.test");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "is an alias of:\n  pomme@one.test\n  poire@one.test\nserver: One (127.0.0.1:"
        ),
        "{out}"
    );
    let (code, out) = test("<u@one.test>");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("u@one.test: no alias\nserver: One"),
        "{out}"
    );
    let (code, out) = test("nobody@lists.test");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("550 5.1.1 User unknown in virtual alias table"),
        "{out}"
    );
    let (code, out) = test("u@elsewhere.test");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("554 5.7.1 Relaying denied"), "{out}");
    let o = p.cli(&["alias", "test", "not an address"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_real_postfix_sending_to_an_alias_list_delivers_once_per_mailbox() {
    let (p, one, _two) = with_aliases("alias-postfix");
    let pf = PostfixBackend::start_sender(p.addr, "hebergee.test");
    let (out, ok) = swaks(
        pf.xclient_addr(),
        &[
            "--from",
            "a@sender.example",
            "--to",
            "social@hebergee.test,pomme@one.test",
        ],
    );
    assert!(ok, "{out}\n{}", pf.log());
    let sent = pf.wait_log("status=sent");
    assert!(sent.contains("relay=127.0.0.1"), "{sent}");
    let got = one.wait_messages(1);
    let mut r = rcpts(&got[0]);
    r.sort();
    assert_eq!(r, ["RCPT TO:<poire@one.test>", "RCPT TO:<pomme@one.test>"]);
    // Both of Postfix's recipients were delivered (one 250 each).
    wait_for("both recipients sent", || {
        (pf.log().matches("status=sent").count() == 2).then_some(())
    });
}
