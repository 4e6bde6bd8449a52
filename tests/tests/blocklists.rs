//! Restrictions and DNS blocklists (SPEC §8) against a real DNS server
//! (dnsmasq on a loopback port) serving test zones: listed, listed with
//! error codes, not listed, silent, parked. Real clients (swaks, smtplib,
//! raw sockets) from distinct loopback addresses.

use std::time::{Duration, Instant};

use postern_tests::dns::{DnsServer, Zones};
use postern_tests::*;

fn ptr(ip: &str) -> String {
    let o: Vec<&str> = ip.split('.').collect();
    format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
}

/// The zones of these tests.
fn zones() -> Zones {
    Zones::default()
        // bl.test: a blocklist that passes its self-test; 127.0.0.5 is
        // listed, 127.0.0.7 has an answer outside the filter.
        .local("bl.test")
        .a("2.0.0.127.bl.test", "127.0.0.2")
        .a(&format!("{}.bl.test", ptr("127.0.0.5")), "127.0.0.4")
        .txt(
            &format!("{}.bl.test", ptr("127.0.0.5")),
            "listed: see http://bl.test/5",
        )
        .a(&format!("{}.bl.test", ptr("127.0.0.7")), "127.0.0.100")
        // 127.0.0.12 is listed with a reason holding a NUL and line breaks.
        .a(&format!("{}.bl.test", ptr("127.0.0.12")), "127.0.0.4")
        .txt_bytes(
            &format!("{}.bl.test", ptr("127.0.0.12")),
            b"listed\0here\r\nsince today",
        )
        // key.bl2.test: a zone whose name carries a key, hidden in replies.
        .local("bl2.test")
        .a("2.0.0.127.key123.bl2.test", "127.0.0.2")
        .a(
            &format!("{}.key123.bl2.test", ptr("127.0.0.8")),
            "127.0.0.2",
        )
        // err.test: answers 127.0.0.6 with Spamhaus's "refused" code.
        .local("err.test")
        .a("2.0.0.127.err.test", "127.0.0.2")
        .a(&format!("{}.err.test", ptr("127.0.0.6")), "127.255.255.254")
        // A sender-domain list.
        .local("dbl.test")
        .a("test.dbl.test", "127.0.1.2")
        .a("spammer.example.dbl.test", "127.0.1.2")
        // parked.test: an expired blocklist domain answering everything.
        .parked("parked.test", "192.0.2.80")
        // silent.test: never answers.
        .silent("silent.test")
        // Domains for the restrictions.
        .local("example")
        .mx("known.example", "mx.known.example")
        .a("mx.known.example", "192.0.2.25")
}

fn config(dir: &TempDir, dns: &DnsServer, backend: &RecordingBackend, policy: &str) -> String {
    config_text(dir, &server_block("One", backend.port(), &["one.test"]))
        + &format!(
            "\n[policy]\nresolvers = [\"{}\"]\ndns_timeout = \"1s\"\n{policy}",
            dns.addr
        )
}

fn send(p: &Postern, client: &str, from: &str, to: &str) -> (String, Duration) {
    let start = Instant::now();
    let (out, _) = swaks(
        p.addr,
        &["--local-interface", client, "--from", from, "--to", to],
    );
    (out, start.elapsed())
}

#[test]
fn listed_clients_and_senders_are_refused_and_error_answers_never_list() {
    let dns = DnsServer::start(zones());
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-zones");
    let conf = config(
        &dir,
        &dns,
        &one,
        "skip_networks = []\n\
         dnsbl = [\"bl.test=127.0.0.[2..11]\", \"key123.bl2.test=127.0.0.[2..11]=bl.example\", \"err.test\", \"parked.test\", \"silent.test\"]\n\
         rhsbl = [\"dbl.test=127.0.1.[2..99]\"]\n",
    );
    let p = Postern::start(dir, &conf);
    // The parked zone fails its self-test at start and leaves use.
    p.wait_log("blocklist parked.test: self-test answered 192.0.2.80");

    let (out, _) = send(&p, "127.0.0.5", "a@good.example", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using bl.test; listed: see http://bl.test/5"),
        "{out}"
    );
    // The key in the zone's name stays out of the reply.
    let (out, _) = send(&p, "127.0.0.8", "a@good.example", "u@one.test");
    assert!(
        out.contains(
            "<** 554 5.7.1 Service unavailable; Client host [127.0.0.8] blocked using bl.example"
        ),
        "{out}"
    );
    assert!(!out.contains("key123"), "{out}");
    // postmaster@ and abuse@ of a served domain are never blocklisted.
    let (out, _) = send(&p, "127.0.0.5", "a@good.example", "postmaster@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    // A sender domain in the rhsbl zone.
    let (out, _) = send(&p, "127.0.0.9", "x@spammer.example", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 Service unavailable; Sender address [x@spammer.example] blocked using dbl.test"),
        "{out}"
    );
    // An answer outside the filter, Spamhaus's error code, a silent zone and
    // a parked one: none lists the client, and the RCPT waits at most
    // twice dns_timeout for them.
    for client in ["127.0.0.7", "127.0.0.6"] {
        let (out, took) = send(&p, client, "a@good.example", "u@one.test");
        assert!(
            out.contains("<-  250 2.0.0 Ok: queued as"),
            "{client}: {out}"
        );
        assert!(took < Duration::from_secs(4), "{client}: {took:?}");
    }
    assert_eq!(one.wait_messages(3).len(), 3);
    // Nothing refused reached the backend.
    let seen = String::from_utf8_lossy(&one.all_bytes()).into_owned();
    assert!(!seen.contains("IPADDR FROM 127.0.0.8"), "{seen}");
    assert!(!seen.contains("spammer.example"), "{seen}");

    // The error answer degraded err.test: the log, status and metrics say so.
    p.wait_log("blocklist err.test: degraded: error answer 127.255.255.254");
    let status = wait_for("the zones in postern status", || {
        let out = p.cli(&["status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("err.test").then_some(text)
    });
    let row = |zone: &str| {
        status
            .lines()
            .find(|l| l.starts_with(&format!("{zone} ")))
            .unwrap_or_else(|| panic!("no {zone} row in:\n{status}"))
            .to_string()
    };
    assert!(row("bl.test").ends_with(" in use"), "{status}");
    assert!(
        row("err.test").contains("in use, degraded: error answer 127.255.255.254"),
        "{status}"
    );
    assert!(
        row("parked.test").contains("not in use: self-test answered 192.0.2.80"),
        "{status}"
    );
    // Counted as dnsbl refusals.
    wait_for("rejected.dnsbl = 3 in postern stats", || {
        let out = p.cli(&["stats", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"dnsbl\": 3")
            .then_some(())
    });
    let log = p.log();
    assert!(
        log.contains("mail from <a@good.example> to <u@one.test> refused via bl.test (127.0.0.4)"),
        "{log}"
    );
}

/// A reason that cannot go into a reply as it is (NUL, CR, LF) is given
/// with spaces in their place: every time, the first decision (which waits
/// for DNS) and the next ones (decided from what is known), and the
/// router's connection, shared by every session, stays up.
#[test]
fn a_blocklist_reason_with_a_nul_or_line_breaks_is_given_with_spaces() {
    let dns = DnsServer::start(zones());
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-nul");
    let conf = config(
        &dir,
        &dns,
        &one,
        "skip_networks = []\ndnsbl = [\"bl.test=127.0.0.[2..11]\"]\n",
    );
    let p = Postern::start(dir, &conf);
    for _ in 0..3 {
        let (out, took) = send(&p, "127.0.0.12", "a@good.example", "u@one.test");
        assert!(
            out.contains("<** 554 5.7.1 Service unavailable; Client host [127.0.0.12] blocked using bl.test; listed here  since today"),
            "{out}"
        );
        assert!(took < Duration::from_secs(4), "{took:?}");
    }
    // Other clients' mail goes on.
    let (out, _) = send(&p, "127.0.0.13", "a@good.example", "u@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    assert!(!p.log().contains("dropping router client"), "{}", p.log());
}

#[test]
fn clients_in_skip_networks_are_never_looked_up_but_access_lists_still_apply() {
    let dns = DnsServer::start(zones());
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-skip");
    // The default skip_networks: loopback.
    let conf = config(&dir, &dns, &one, "dnsbl = [\"bl.test=127.0.0.[2..11]\"]\n");
    let p = Postern::start(dir, &conf);
    let (out, _) = send(&p, "127.0.0.5", "a@good.example", "u@one.test");
    assert!(out.contains("<-  250 2.0.0 Ok: queued as"), "{out}");
    let out = p.cli(&["access", "add", "reject", "connect", "127.0.0.5"]);
    assert!(out.status.success());
    let (out, _) = send(&p, "127.0.0.5", "a@good.example", "u@one.test");
    assert!(
        out.contains("<** 554 5.7.1 <unknown[127.0.0.5]>: Client host rejected"),
        "{out}"
    );
}

#[test]
fn restrictions_refuse_with_postfix_codes() {
    let dns = DnsServer::start(zones());
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-restrict");
    let conf = config(
        &dir,
        &dns,
        &one,
        "restrictions = [\"reject_invalid_helo_hostname\", \"reject_non_fqdn_sender\", \"reject_unknown_sender_domain\", \"reject_unauth_pipelining\"]\n",
    );
    let p = Postern::start(dir, &conf);
    let script = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
def attempt(helo, sender):
    s = smtplib.SMTP(host, port, source_address=("127.0.0.6", 0), timeout=20)
    s.ehlo(helo)
    s.mail(sender)
    code, text = s.rcpt("u@one.test")
    print(helo, sender, code, text.decode())
    s.quit()
attempt("bad_name!", "a@known.example")
attempt("mx.client.example", "a@localhost")
attempt("mx.client.example", "a@nowhere.example")
attempt("mx.client.example", "a@deep.silent.test")
attempt("mx.client.example", "a@known.example")
attempt("[192.0.2.1]", "")
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "bad_name! a@known.example 501 5.5.2 <bad_name!>: Helo command rejected: Invalid name",
            "mx.client.example a@localhost 504 5.5.2 <a@localhost>: Sender address rejected: need fully-qualified address",
            "mx.client.example a@nowhere.example 450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found",
            // A DNS failure is a 450 too, never a 5xx.
            "mx.client.example a@deep.silent.test 450 4.1.8 <a@deep.silent.test>: Sender address rejected: Domain not found",
            "mx.client.example a@known.example 250 2.1.5 Ok",
            "[192.0.2.1]  250 2.1.5 Ok",
        ],
        "{out}"
    );
    // Commands sent before EHLO's reply: the client never saw PIPELINING.
    let mut raw = Raw::connect_from("127.0.0.6", p.addr);
    raw.send(b"EHLO mx.client.example\r\nMAIL FROM:<a@known.example>\r\nRCPT TO:<u@one.test>\r\n");
    assert!(raw.reply().starts_with("250"), "EHLO");
    assert!(raw.reply().starts_with("250"), "MAIL");
    assert_eq!(
        raw.reply(),
        "503 5.5.0 Error: improper use of SMTP command pipelining\r\n"
    );
    drop(raw);
    // After EHLO's reply, pipelining is the client's right.
    let mut raw = Raw::connect_from("127.0.0.6", p.addr);
    assert!(raw.cmd("EHLO mx.client.example").starts_with("250"));
    raw.send(b"MAIL FROM:<a@known.example>\r\nRCPT TO:<u@one.test>\r\n");
    assert!(raw.reply().starts_with("250"), "MAIL");
    assert!(raw.reply().starts_with("250 2.1.5"), "RCPT");
    drop(raw);
    wait_for("rejected.restriction = 5 in postern stats", || {
        let out = p.cli(&["stats", "--json"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("\"restriction\": 5")
            .then_some(())
    });
}

/// One smtpd process, so both sessions share its one router connection: a
/// recipient waiting for a silent blocklist must not hold another session's
/// route and policy answers.
#[test]
fn a_slow_lookup_holds_no_other_session() {
    let dns = DnsServer::start(zones());
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-concurrent");
    let conf = config(
        &dir,
        &dns,
        &one,
        "skip_networks = [\"127.0.0.6/32\"]\ndnsbl = [\"silent.test\"]\n",
    )
    .replace("[process]\n", "[process]\nsmtpd_processes = 1\n");
    let p = Postern::start(dir, &conf);
    let script = r#"
import smtplib, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
done = {}
asked = threading.Event()
def session(client, tag):
    s = smtplib.SMTP(host, port, source_address=(client, 0), timeout=20)
    s.ehlo("mx.client.example")
    s.mail("a@known.example")
    if tag == "slow":
        asked.set()  # its RCPT goes now, and waits for the silent zone
    code, _ = s.rcpt("u@one.test")
    done[tag] = (code, time.monotonic() - t0)
    s.quit()
slow = threading.Thread(target=session, args=("127.0.0.9", "slow"))
slow.start()
# The fast session starts (connect, EHLO, MAIL, RCPT) once the slow one's
# RCPT is on its way.
asked.wait(20)
session("127.0.0.6", "fast")
slow.join()
print("fast", done["fast"][0], round(done["fast"][1], 2))
print("slow", done["slow"][0], round(done["slow"][1], 2))
"#;
    let out = python(
        script,
        &[&p.addr.ip().to_string(), &p.addr.port().to_string()],
    );
    let at = |tag: &str| -> (u16, f64) {
        let l = out
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_else(|| panic!("{out}"));
        let f: Vec<&str> = l.split(' ').collect();
        (f[1].parse().expect("code"), f[2].parse().expect("seconds"))
    };
    let (fast, slow) = (at("fast"), at("slow"));
    assert_eq!((fast.0, slow.0), (250, 250), "{out}");
    assert!(
        fast.1 < slow.1,
        "the fast session finished after the slow one: {out}"
    );
    assert!(slow.1 >= 0.9, "the silent zone was not waited for: {out}");
}

/// Host patterns match the forward-confirmed reverse name only: a client
/// whose PTR name does not point back at it is not that host. (Loopback
/// clients are all `localhost` to the resolver, as RFC 6761 has it, so the
/// clients here are documentation addresses asked about with `postern
/// access test`, which goes through the running router's lookups.)
#[test]
fn host_entries_match_forward_confirmed_names_only() {
    let dns = DnsServer::start(
        Zones::default()
            .local("client.example")
            .local("in-addr.arpa")
            // 192.0.2.5 <-> mail.client.example, both ways (host-record makes the PTR too).
            .a("mail.client.example", "192.0.2.5")
            // 192.0.2.6 claims a name whose address is another one.
            .ptr("192.0.2.6", "forged.client.example")
            .a("forged.client.example", "192.0.2.99"),
    );
    let one = RecordingBackend::start();
    let dir = TempDir::new("bl-fcrdns");
    let conf = config(&dir, &dns, &one, "");
    let p = Postern::start(dir, &conf);
    let out = p.cli(&["access", "add", "reject", "connect", ".client.example"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let test = |client: &str| {
        let out = p.cli(&[
            "access",
            "test",
            "--client",
            client,
            "--from",
            "a@good.example",
            "--to",
            "u@one.test",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        test("192.0.2.5"),
        "verdict: reject\nreply: 554 5.7.1 <mail.client.example[192.0.2.5]>: Client host rejected: Access denied\nrule: reject connect .client.example\n"
    );
    assert!(test("192.0.2.6").starts_with("verdict: dunno"));
    // A client without any reverse name is no host either.
    assert!(test("192.0.2.7").starts_with("verdict: dunno"));
}
