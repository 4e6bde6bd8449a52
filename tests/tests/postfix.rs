//! A real Postfix as the backend: the client's address that postern forwards
//! (XCLIENT, PROXY v2) must be the address Postfix logs for the message.
//!
//! These tests prove the harness alone, with swaks speaking XCLIENT or PROXY
//! v2 straight to Postfix.

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
