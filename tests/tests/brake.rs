//! The brake on password guessing (issue 18): failed AUTH and failed
//! RELOAD / SHUTDOWN credentials are delayed, counted per client address
//! across sessions and smtpd processes by the router's anvil, and lock the
//! address out (`454 4.7.0`) after 5 failures within 10 minutes.

use std::time::{Duration, Instant};

use postern_tests::*;

/// Customer One with credentials alice/wonderland, the admin user
/// admin/s3cret (admin networks: loopback), two smtpd processes.
fn guarded(tag: &str) -> Postern {
    let backend = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let server = server_block("One", backend.port(), &["one.test"]).replace(
        "domains = ",
        "user = \"alice\"\npassword = \"wonderland\"\ndomains = ",
    );
    let conf = config_text(&dir, &server).replace(
        "hostname = ",
        "admin_user = \"admin\"\nadmin_password = \"s3cret\"\nadmin_networks = [\"127.0.0.0/8\"]\nhostname = ",
    );
    Postern::start(dir, &conf)
}

/// `AUTH PLAIN` of `\0user\0password`.
fn auth_plain(user: &str, password: &str) -> String {
    let script = "import base64,sys; print(base64.b64encode(b'\\0' + sys.argv[1].encode() + b'\\0' + sys.argv[2].encode()).decode())";
    format!("AUTH PLAIN {}", python(script, &[user, password]).trim())
}

/// One session from `from`: EHLO, then `command`; returns its reply and
/// how long it took.
fn attempt(p: &Postern, from: &str, command: &str) -> (String, Duration) {
    let mut raw = Raw::connect_from(from, p.addr);
    assert!(raw.cmd("EHLO guesser.example").starts_with("250"));
    let start = Instant::now();
    let r = raw.cmd(command);
    let took = start.elapsed();
    raw.cmd("QUIT");
    (r, took)
}

#[test]
fn failed_authentications_are_delayed_then_lock_the_address_out_across_sessions() {
    let p = guarded("brake-auth");
    let wrong = auth_plain("alice", "guess");
    let mut took = Vec::new();
    // Five failures, each in a session of its own (the two smtpd processes
    // share them): the count is the address's, not the session's.
    for n in 1..=5 {
        let (r, t) = attempt(&p, "127.0.0.5", &wrong);
        assert!(r.starts_with("535 5.7.8"), "failure {n}: {r}");
        took.push(t);
    }
    // Growing: 0.1 s, 0.2 s, 0.4 s, 0.8 s, 1.6 s.
    assert!(took[4] >= Duration::from_millis(1600), "{took:?}");
    assert!(took[4] > took[0] * 4, "{took:?}");
    // Locked out: even the right credentials get 454, and so do the admin's.
    for good in [
        auth_plain("alice", "wonderland"),
        auth_plain("admin", "s3cret"),
    ] {
        let (r, _) = attempt(&p, "127.0.0.5", &good);
        assert!(
            r.starts_with("454 4.7.0")
                && r.contains("too many failed authentications from 127.0.0.5"),
            "{r}"
        );
    }
    // Another address is not.
    let (r, _) = attempt(&p, "127.0.0.6", &auth_plain("alice", "wonderland"));
    assert!(r.starts_with("235"), "{r}");
    let line = p.wait_log("client 127.0.0.5 locked out of authentication");
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(
        p.log().matches("locked out of authentication").count(),
        1,
        "one line per lock-out"
    );
}

#[test]
fn admin_credentials_are_braked_with_the_same_count() {
    let p = guarded("brake-admin");
    // AUTH with the admin user's name, then RELOAD and SHUTDOWN guesses:
    // one count for the address.
    for (n, command) in [
        auth_plain("admin", "guess1"),
        "RELOAD admin guess2".to_string(),
        "SHUTDOWN admin guess3".to_string(),
        "RELOAD admin*guess4".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let (r, _) = attempt(&p, "127.0.0.7", command);
        assert!(r.starts_with("535 5.7.8"), "failure {}: {r}", n + 1);
    }
    // Three in one session still close it, as before.
    let mut raw = Raw::connect_from("127.0.0.7", p.addr);
    raw.cmd("EHLO guesser.example");
    assert!(raw.cmd("RELOAD admin guess5").starts_with("535 5.7.8"));
    for command in ["RELOAD admin s3cret", "SHUTDOWN admin s3cret"] {
        let r = raw.cmd(command);
        assert!(r.starts_with("454 4.7.0"), "{command}: {r}");
    }
    assert!(raw.reply().starts_with("421 4.7.0"));
    assert!(raw.closed());
    let (r, _) = attempt(&p, "127.0.0.7", &auth_plain("admin", "s3cret"));
    assert!(r.starts_with("454 4.7.0"), "{r}");
    p.wait_log("client 127.0.0.7 locked out of authentication");
    // Still running (SHUTDOWN did nothing), and the admin elsewhere may.
    let (r, _) = attempt(&p, "127.0.0.8", "RELOAD admin s3cret");
    assert!(r.starts_with("250 2.0.0"), "{r}");
}
