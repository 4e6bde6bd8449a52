//! A real Postfix as the backend: the client's address that postern forwards
//! (XCLIENT, PROXY v2) must be the address Postfix logs for the message.
//!
//! The first two tests prove the harness alone, with swaks speaking XCLIENT
//! or PROXY v2 straight to Postfix; the others put postern in front.

use std::process::{Command, Stdio};

use postern_tests::postfix::PostfixBackend;
use postern_tests::*;

/// A recipient in the domain the Postfix instance accepts.
fn rcpt() -> String {
    format!("user@{}", PostfixBackend::DOMAIN)
}

/// Asserts that every message Postfix accepted came from `ip`, by its `client=` lines.
fn assert_all_clients_are(pf: &PostfixBackend, ip: &str) {
    let clients = pf.clients();
    assert!(!clients.is_empty(), "no message in:\n{}", pf.log());
    assert!(
        clients.iter().all(|(_, c)| c.ends_with(&format!("[{ip}]"))),
        "Postfix saw another client than {ip}: {clients:?}\n{}",
        pf.log()
    );
}

#[test]
fn postfix_harness_takes_the_client_address_from_xclient() {
    let pf = PostfixBackend::start();
    let rcpt = rcpt();
    let (out, ok) = swaks(
        pf.xclient_addr(),
        &[
            "--from",
            "sender@example.org",
            "--to",
            &rcpt,
            "--xclient-addr",
            "127.0.0.9",
        ],
    );
    assert!(ok, "swaks failed:\n{out}\nPostfix log:\n{}", pf.log());
    assert!(out.contains("XCLIENT ADDR=127.0.0.9"), "{out}");
    let line = pf.wait_delivered_from("127.0.0.9");
    assert!(line.contains(": client=unknown[127.0.0.9]"), "{line}");
    // The TCP peer was swaks on 127.0.0.1: the address above came from XCLIENT.
    pf.wait_log("connect from unknown[127.0.0.1]");
    assert_all_clients_are(&pf, "127.0.0.9");
}

#[test]
fn postfix_harness_takes_the_client_address_from_proxy_v2() {
    let pf = PostfixBackend::start();
    let rcpt = rcpt();
    let dest_port = pf.proxy_port.to_string();
    let (out, ok) = swaks(
        pf.proxy_addr(),
        &[
            "--from",
            "sender@example.org",
            "--to",
            &rcpt,
            "--proxy-version",
            "2",
            "--proxy-family",
            "AF_INET",
            "--proxy-source",
            "127.0.0.8",
            "--proxy-source-port",
            "40000",
            "--proxy-dest",
            "127.0.0.1",
            "--proxy-dest-port",
            &dest_port,
        ],
    );
    assert!(ok, "swaks failed:\n{out}\nPostfix log:\n{}", pf.log());
    let line = pf.wait_delivered_from("127.0.0.8");
    assert!(line.contains(": client=unknown[127.0.0.8]"), "{line}");
    // Postfix took the address from the header for the whole connection.
    pf.wait_log("connect from unknown[127.0.0.8]");
    assert_all_clients_are(&pf, "127.0.0.8");
}

/// Starts postern with one server, the Postfix instance at `port`, using
/// `client_identity`. Runs `postern check` first, so that a refused
/// configuration fails the test at once with postern's own words.
fn postern_in_front(tag: &str, port: u16, client_identity: &str) -> Postern {
    let dir = TempDir::new(tag);
    let servers = server_block("Postfix", port, &[PostfixBackend::DOMAIN])
        + &format!("client_identity = \"{client_identity}\"\n");
    let conf = config_text(&dir, &servers);
    std::fs::write(dir.path("postern.toml"), &conf).expect("write config");
    let check = Command::new(bin("postern"))
        .arg("-c")
        .arg(dir.path("postern.toml"))
        .arg("check")
        .stdin(Stdio::null())
        .output()
        .expect("run postern check");
    assert!(
        check.status.success(),
        "postern check refuses client_identity = {client_identity:?}:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    Postern::start(dir, &conf)
}

/// Sends one message through postern from `client_ip`; returns swaks's output.
fn send_from(p: &Postern, pf: &PostfixBackend, client_ip: &str) -> String {
    let rcpt = rcpt();
    let (out, ok) = swaks(
        p.addr,
        &[
            "--local-interface",
            client_ip,
            "--from",
            "sender@example.org",
            "--to",
            &rcpt,
        ],
    );
    assert!(
        ok,
        "swaks through postern failed:\n{out}\npostern log:\n{}\nPostfix log:\n{}",
        p.log(),
        pf.log()
    );
    out
}

#[test]
fn postfix_logs_the_original_client_behind_postern_with_xclient() {
    let pf = PostfixBackend::start();
    let p = postern_in_front("pf-xclient", pf.xclient_port, "xclient");
    send_from(&p, &pf, "127.0.0.3");
    let line = pf.wait_delivered_from("127.0.0.3");
    assert!(line.contains("[127.0.0.3]"), "{line}");
    // Not postern's own address (127.0.0.1), for any message.
    assert_all_clients_are(&pf, "127.0.0.3");
}

#[test]
fn postfix_logs_the_original_client_behind_postern_with_proxy_v2() {
    let pf = PostfixBackend::start();
    let p = postern_in_front("pf-proxy2", pf.proxy_port, "proxy-v2");
    send_from(&p, &pf, "127.0.0.4");
    let line = pf.wait_delivered_from("127.0.0.4");
    assert!(line.contains("[127.0.0.4]"), "{line}");
    // The header described the client, not postern's side of the connection.
    pf.wait_log("connect from unknown[127.0.0.4]");
    assert_all_clients_are(&pf, "127.0.0.4");
}

/// With the default `ipaddr` identity a real Postfix answers each IPADDR FROM
/// with an error (it does not know the seed's command); a connection reused
/// by session after session must keep delivering all the same: EHLO again
/// resets the session, and Postfix forgives the errors of a client that
/// delivers mail.
#[test]
fn a_real_postfix_takes_session_after_session_on_one_reused_connection() {
    let pf = PostfixBackend::start();
    let dir = TempDir::new("pf-reuse");
    let servers = server_block("Postfix", pf.xclient_port, &[PostfixBackend::DOMAIN]);
    let conf = config_text(&dir, &servers)
        .replace("[process]\n", "[process]\nsmtpd_processes = 1\n")
        .replace("[proxy]\n", "[proxy]\nprepared_connections = 0\n")
        + "\n[log]\nlevel = \"debug\"\n";
    let p = Postern::start(dir, &conf);
    // More sessions than Postfix's smtpd_hard_error_limit (20): were the
    // 502s to IPADDR FROM counted against the connection, it would be
    // closed before the last one.
    let sessions = 25;
    for i in 0..sessions {
        send_from(&p, &pf, if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" });
        // The next session comes once the connection is ready again.
        p.wait_log_count("kept for another session", i + 1);
    }
    wait_for("Postfix to take every message", || {
        (pf.clients().len() == sessions).then_some(())
    });
    let log = pf.log();
    assert_eq!(
        log.matches("connect from").count() - log.matches("disconnect from").count(),
        1,
        "one connection for every session:\n{log}"
    );
    // No backend trouble on the way (postern warns of each); the warning
    // of a root master without process.user is not about backends.
    let log = p.log();
    let trouble: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && !l.contains("WARN process.user: not set"))
        .collect();
    assert!(trouble.is_empty(), "{trouble:?}\n{log}");
}

/// A client's 2,000-character EHLO once made an XCLIENT line longer than
/// Postfix takes (2,048 octets): Postfix dropped the connection, postern
/// counted a backend failure, and after three such sessions the customer's
/// server was skipped for everybody. The name is no domain: Postfix must
/// learn `HELO=[UNAVAILABLE]`, take the mail, and the server stay in use.
#[test]
fn an_overlong_ehlo_never_takes_an_xclient_backend_out() {
    let pf = PostfixBackend::start();
    let p = postern_in_front("pf-long-helo", pf.xclient_port, "xclient");
    let script = r#"
import smtplib, sys
host, port, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(6):
    s = smtplib.SMTP(host, port, source_address=("127.0.0.5", 0), timeout=20)
    code, _ = s.ehlo("h" * 2000)
    refused = s.sendmail("sender@example.org", [rcpt], "Subject: long helo\r\n\r\nhi\r\n")
    print("session", i, code, refused)
    s.quit()
"#;
    let out = python(
        script,
        &[
            &p.addr.ip().to_string(),
            &p.addr.port().to_string(),
            &rcpt(),
        ],
    );
    assert_eq!(out.matches(" 250 {}").count(), 6, "{out}\n{}", p.log());
    // Everyone else still reaches the server.
    send_from(&p, &pf, "127.0.0.3");
    pf.wait_delivered_from("127.0.0.3");
    wait_for("Postfix to take the 6 long-EHLO messages", || {
        let from_long = pf
            .clients()
            .iter()
            .filter(|(_, c)| c.ends_with("[127.0.0.5]"))
            .count();
        (from_long == 6).then_some(())
    });
    let log = p.log();
    assert!(!log.contains("skipping it"), "{log}");
    assert!(!log.contains("451 4."), "{log}");
}
