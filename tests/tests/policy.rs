//! Policy for mail from the internet (SPEC §8): access lists, end to end.
//! Real clients (swaks, Python's smtplib) from distinct loopback addresses,
//! `postern access` on the running postern, recording backends that must
//! never see what policy refuses.

use postern_tests::*;

/// One customer (`one.test`) and a relay client at 127.0.0.8 for another
/// server; returns postern and the customer's backend.
fn customer(tag: &str) -> (Postern, RecordingBackend, RecordingBackend) {
    let one = RecordingBackend::start();
    let relay = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let servers = server_block("One", one.port(), &["one.test"])
        + &server_block("Outbound", relay.port(), &["outbound.test"])
            .replace("domains = ", "relay = [\"127.0.0.8\"]\ndomains = ");
    let conf = config_text(&dir, &servers);
    (Postern::start(dir, &conf), one, relay)
}

fn access(p: &Postern, args: &[&str]) -> String {
    let mut all = vec!["access"];
    all.extend_from_slice(args);
    let out = p.cli(&all);
    assert!(
        out.status.success(),
        "postern {all:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// swaks from `client`; returns its output and the last reply line it printed.
fn send(p: &Postern, client: &str, from: &str, to: &str) -> String {
    let (out, _) = swaks(
        p.addr,
        &["--local-interface", client, "--from", from, "--to", to],
    );
    out
}

#[test]
fn reject_entries_refuse_at_rcpt_with_postfix_texts_and_nothing_reaches_the_backend() {
    let (p, one, _) = customer("pol-reject");
    access(
        &p,
        &[
            "add",
            "reject",
            "connect",
            "127.0.0.5",
            "--comment",
            "probe",
        ],
    );
    access(&p, &["add", "reject", "from", "spam@bad.test"]);
    access(&p, &["add", "reject", "to", "closed@one.test"]);

    let out = send(&p, "127.0.0.5", "a@good.test", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 <unknown[127.0.0.5]>: Client host rejected: Access denied"),
        "{out}"
    );
    let out = send(&p, "127.0.0.6", "SPAM@bad.test", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 <SPAM@bad.test>: Sender address rejected: Access denied"),
        "{out}"
    );
    let out = send(&p, "127.0.0.6", "a@good.test", "closed@one.test");
    assert!(
        out.contains("<** 554 5.7.1 <closed@one.test>: Recipient address rejected: Access denied"),
        "{out}"
    );
    // Per recipient: one transaction, one refused and one delivered.
    let out = smtplib_sendmail(
        "127.0.0.6",
        p.addr,
        "a@good.test",
        &["closed@one.test", "open@one.test"],
    );
    assert!(
        out.contains("refused: {'closed@one.test': (554, b'5.7.1 <closed@one.test>: Recipient address rejected: Access denied')}"),
        "{out}"
    );
    let got = one.wait_messages(1);
    assert_eq!(got.len(), 1, "only the smtplib message");
    let m = &got[0];
    assert!(
        m.position("RCPT TO:<open@one.test>").is_some(),
        "{:?}",
        m.commands
    );
    let seen = String::from_utf8_lossy(&one.all_bytes()).into_owned();
    for never in ["closed@one.test", "SPAM@bad.test", "IPADDR FROM 127.0.0.5"] {
        assert!(
            !seen.contains(never),
            "{never} reached the backend:\n{seen}"
        );
    }
    // The log has the decision with the session's fields and the entry.
    let log = p.wait_log("refused via reject from spam@bad.test (the access lists)");
    assert!(
        log.contains("reply=\"554 5.7.1 <SPAM@bad.test>: Sender address rejected: Access denied\""),
        "{log}"
    );
    // And the statistics count the four refusals.
    wait_for("rejected.access = 4 in postern stats", || {
        let out = p.cli(&["stats", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"access\": 4")
            .then_some(())
    });
}

#[test]
fn an_accept_entry_skips_rejects_but_never_opens_the_relay_and_relay_clients_skip_policy() {
    let (p, one, relay) = customer("pol-accept");
    access(&p, &["add", "reject", "connect", "127.0.0.0/8"]);
    access(&p, &["add", "accept", "connect", "127.0.0.7"]);
    // The accept entry wins over the reject entry for its client...
    let out = send(&p, "127.0.0.7", "a@good.test", "u@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    one.wait_messages(1);
    // ...but a domain no server takes stays refused: accept is not relay.
    let out = send(&p, "127.0.0.7", "a@good.test", "x@elsewhere.test");
    assert!(
        out.contains("<** 554 5.7.1 <x@elsewhere.test>: Relaying denied"),
        "{out}"
    );
    // A relay client chose its server itself: no policy, even a reject entry.
    let out = send(&p, "127.0.0.8", "a@good.test", "x@elsewhere.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    relay.wait_messages(1);
    // Everyone else from 127/8 is refused.
    let out = send(&p, "127.0.0.9", "a@good.test", "u@one.test");
    assert!(out.contains("<** 554 5.7.1"), "{out}");
    assert_eq!(one.messages().len(), 1);
}

#[test]
fn access_cli_lists_tests_and_removes_entries_in_the_running_postern() {
    let (p, one, _) = customer("pol-cli");
    let out = access(
        &p,
        &[
            "add",
            "reject",
            "from",
            "Bulk.Example",
            "--comment",
            "newsletter nobody asked for",
            "--keep-until",
            "2020-01-31",
        ],
    );
    assert_eq!(
        out.trim(),
        "postern: access: added reject from bulk.example"
    );
    access(&p, &["add", "accept", "to", "postmaster@"]);

    let list = access(&p, &["list"]);
    let rows: Vec<&str> = list.lines().collect();
    assert!(rows[0].starts_with("ACTION  METHOD  PATTERN"), "{list}");
    let reject = rows
        .iter()
        .find(|r| r.starts_with("reject  from    bulk.example"))
        .unwrap_or_else(|| panic!("no reject row in:\n{list}"));
    assert!(reject.contains("2020-01-31*"), "{reject}");
    assert!(reject.ends_with("newsletter nobody asked for"), "{reject}");
    assert!(
        reject.contains("root"),
        "added_by is the CLI's user: {reject}"
    );
    assert!(list.contains("* keep_until has passed"), "{list}");
    let expired = access(&p, &["list", "--expired"]);
    assert_eq!(
        expired.lines().filter(|l| l.starts_with("reject")).count(),
        1,
        "{expired}"
    );
    assert!(!expired.contains("postmaster@"), "{expired}");
    assert_eq!(access(&p, &["list", "accept"]).lines().count(), 2);

    let test = access(
        &p,
        &[
            "test",
            "--client",
            "192.0.2.1",
            "--from",
            "x@bulk.example",
            "--to",
            "u@one.test",
        ],
    );
    assert_eq!(
        test,
        "verdict: reject\nreply: 554 5.7.1 <x@bulk.example>: Sender address rejected: Access denied\nrule: reject from bulk.example\n"
    );
    let test = access(
        &p,
        &[
            "test",
            "--client",
            "192.0.2.1",
            "--from",
            "x@bulk.example",
            "--to",
            "postmaster@one.test",
        ],
    );
    assert!(test.starts_with("verdict: accept"), "{test}");
    // test stores and counts nothing: no refusal in the log.
    assert!(!p.log().contains("(the access lists)"));

    let out = send(&p, "127.0.0.6", "news@bulk.example", "u@one.test");
    assert!(out.contains("<** 554 5.7.1"), "{out}");
    access(&p, &["remove", "reject", "from", "bulk.example"]);
    let out = send(&p, "127.0.0.6", "news@bulk.example", "u@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    one.wait_messages(1);

    // Bad input: a clear line and a non-zero exit, nothing changed.
    for (args, says) in [
        (
            vec!["add", "reject", "from", "10.0.0.0/8"],
            "not an address, user@, a domain or .domain",
        ),
        (
            vec!["add", "reject", "to", "<>"],
            "a recipient is never empty",
        ),
        (vec!["add", "accept", "to", "postmaster@"], "already listed"),
        (
            vec!["remove", "reject", "connect", "192.0.2.1"],
            "is not listed",
        ),
        (
            vec![
                "add",
                "reject",
                "connect",
                "192.0.2.1",
                "--keep-until",
                "soon",
            ],
            "is not a date",
        ),
    ] {
        let mut all = vec!["access"];
        all.extend_from_slice(&args);
        let out = p.cli(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn the_lists_persist_and_a_broken_file_keeps_the_lists_in_force() {
    let (p, one, _) = customer("pol-file");
    access(&p, &["add", "reject", "connect", "127.0.0.5"]);
    let file = p.dir.path("run/state/access.toml");
    let text = std::fs::read_to_string(&file).expect("the router wrote the file");
    assert!(
        text.contains("[[reject]]\nmethod = \"connect\"\npattern = \"127.0.0.5\""),
        "{text}"
    );

    // A router restarted reads them back.
    let out = p.cli(&["restart", "router"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = send(&p, "127.0.0.5", "a@good.test", "u@one.test");
    assert!(out.contains("<** 554 5.7.1 <unknown[127.0.0.5]>"), "{out}");

    // An edit by hand with a mistake: check names the line, reload is refused,
    // and the lists in force stay.
    std::fs::write(
        &file,
        format!("{text}\n[[reject]]\nmethod = \"connect\"\npattern = \"300.1.2\"\n"),
    )
    .expect("edit");
    let line = text.lines().count() + 4;
    let check = p.cli(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains(&format!(
            "policy.access_file: {}: line {line}: pattern \"300.1.2\"",
            file.display()
        )),
        "{err}"
    );
    let reload = p.cli(&["reload"]);
    assert_eq!(reload.status.code(), Some(1));
    let out = send(&p, "127.0.0.5", "a@good.test", "u@one.test");
    assert!(out.contains("<** 554 5.7.1"), "{out}");
    // Even a router that dies and is restarted on the broken file keeps
    // them: it serves the last good copy and says so.
    let old = p.pids_of("postern-router");
    assert_eq!(old.len(), 1, "{old:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the router");
    p.wait_log("serving the last good copy");
    let out = send(&p, "127.0.0.5", "a@good.test", "u@one.test");
    assert!(out.contains("<** 554 5.7.1"), "{out}");
    let out = send(&p, "127.0.0.6", "a@good.test", "u@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    one.wait_messages(1);

    // Fixed by hand: the reload takes the new lists.
    std::fs::write(
        &file,
        "[[reject]]\nmethod = \"to\"\npattern = \"u@one.test\"\n",
    )
    .expect("edit");
    let reload = p.cli(&["reload"]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let out = send(&p, "127.0.0.5", "a@good.test", "v@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    let out = send(&p, "127.0.0.6", "a@good.test", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 <u@one.test>: Recipient address rejected"),
        "{out}"
    );
}
