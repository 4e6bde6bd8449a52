//! The Postfix policy delegation server (SPEC §8): a real Postfix with
//! `check_policy_service` pointed at postern applies postern's access lists;
//! garbage from a policy client closes its connection and nothing else.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use postern_tests::postfix::PostfixBackend;
use postern_tests::*;

/// postern with no backend at all, only the policy server on a free port.
fn policy_only(tag: &str) -> (Postern, u16) {
    let port = closed_port();
    let dir = TempDir::new(tag);
    let conf =
        config_text(&dir, "") + &format!("\n[policy_server]\nlisten = [\"127.0.0.1:{port}\"]\n");
    let p = Postern::start(dir, &conf);
    p.wait_log(&format!("policy server on 127.0.0.1:{port}"));
    (p, port)
}

#[test]
fn a_real_postfix_applies_the_access_lists_through_the_policy_server() {
    let (p, port) = policy_only("ps-postfix");
    for args in [
        ["add", "reject", "connect", "127.0.0.5"],
        ["add", "reject", "from", "spam@bad.example"],
    ] {
        let mut all = vec!["access"];
        all.extend_from_slice(&args);
        let out = p.cli(&all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pf = PostfixBackend::start_with(&format!(
        "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:{port}, permit\n"
    ));
    let rcpt = format!("user@{}", PostfixBackend::DOMAIN);
    let send = |client: &str, from: &str| {
        swaks(
            pf.xclient_addr(),
            &["--local-interface", client, "--from", from, "--to", &rcpt],
        )
        .0
    };
    let out = send("127.0.0.5", "a@good.example");
    assert!(
        out.contains("<** 554 5.7.1")
            && out.contains("<unknown[127.0.0.5]>: Client host rejected: Access denied"),
        "{out}\n{}",
        pf.log()
    );
    let out = send("127.0.0.6", "spam@bad.example");
    assert!(
        out.contains("<** 554 5.7.1")
            && out.contains("<spam@bad.example>: Sender address rejected: Access denied"),
        "{out}"
    );
    let out = send("127.0.0.6", "a@good.example");
    assert!(
        out.contains("<-  250 2.0.0 Ok: queued as"),
        "{out}\n{}",
        pf.log()
    );
    pf.wait_delivered_from("127.0.0.6");
    // The refusals are postern's: logged and counted by the router.
    p.wait_log("mail from <spam@bad.example> to <user@relay.test> refused via reject from spam@bad.example");
    wait_for("rejected.access = 2 in postern stats", || {
        let out = p.cli(&["stats", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"access\": 2")
            .then_some(())
    });
}

#[test]
fn policy_clients_get_answers_and_garbage_closes_only_its_connection() {
    let (p, port) = policy_only("ps-raw");
    let out = p.cli(&["access", "add", "accept", "to", "postmaster@"]);
    assert!(out.status.success());
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        s
    };
    let ask = |s: &mut TcpStream, r: &mut BufReader<TcpStream>, rcpt: &str| -> String {
        write!(
            s,
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nclient_name=unknown\nsender=a@example.org\nrecipient={rcpt}\n\n"
        )
        .expect("write");
        let mut action = String::new();
        r.read_line(&mut action).expect("read");
        let mut empty = String::new();
        r.read_line(&mut empty).expect("read");
        assert_eq!(empty, "\n");
        action
    };
    // Several requests on one connection.
    let mut s = connect();
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    assert_eq!(ask(&mut s, &mut r, "u@one.test"), "action=DUNNO\n");
    assert_eq!(ask(&mut s, &mut r, "postmaster@one.test"), "action=OK\n");

    // Garbage, a NUL, an overlong line, 10,000 attributes: no answer, the
    // connection closed, a warning logged; the server goes on.
    let bad: Vec<Vec<u8>> = vec![
        b"this is not the protocol\n\n".to_vec(),
        b"request=smtpd_access_policy\nsender=a\0b\n\n".to_vec(),
        format!(
            "request=smtpd_access_policy\nsender={}\n\n",
            "x".repeat(100_000)
        )
        .into_bytes(),
        format!("request=smtpd_access_policy\n{}\n", "a=b\n".repeat(10_000)).into_bytes(),
    ];
    for (i, bytes) in bad.iter().enumerate() {
        let mut g = connect();
        let _ = g.write_all(bytes);
        let mut rest = Vec::new();
        let n = std::io::Read::read_to_end(&mut g, &mut rest);
        assert!(
            rest.is_empty(),
            "case {i}: an answer to garbage: {:?}",
            String::from_utf8_lossy(&rest)
        );
        // Closed by the server, not ended by the read timeout.
        assert!(
            !matches!(&n, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "case {i}: the connection was not closed: {n:?}"
        );
    }
    p.wait_log_count("policy server: malformed request", 4);
    // The first client is still served.
    assert_eq!(ask(&mut s, &mut r, "u@one.test"), "action=DUNNO\n");
}
