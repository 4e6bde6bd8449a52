//! Statistics and the metrics endpoint (SPEC §9, seed 001 §7): a known mix of
//! sessions shows up, exactly, in `postern stats --json`, in the weekly text
//! synthesis with its spam rate, and at `GET /metrics`; the counts survive a
//! restart of postern and can be read while it is stopped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use postern_tests::*;

/// A server block with extra lines (relay, user…).
fn server(name: &str, port: u16, domains: &[&str], extra: &str) -> String {
    server_block(name, port, domains).replace("domains = ", &format!("{extra}\ndomains = "))
}

/// Customer A: a.test, relay client 127.0.0.2. Customer B: b.test, AUTH
/// bob/builder. One connection per client address; metrics on a free port.
fn config(dir: &TempDir, a: &RecordingBackend, b: &RecordingBackend) -> String {
    let servers = server(
        "Customer A",
        a.port(),
        &["a.test"],
        "relay = [\"127.0.0.2\"]",
    ) + &server(
        "Customer B",
        b.port(),
        &["b.test"],
        "user = \"bob\"\npassword = \"builder\"",
    ) + "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    config_text(dir, &servers).replace(
        "hostname = ",
        "max_connections_per_ip = 1\nauth_requires_tls = false\nhostname = ",
    )
}

/// The address of the metrics endpoint, from the master's log.
fn metrics_addr(p: &Postern) -> SocketAddr {
    let line = p.wait_log("metrics endpoint on http://");
    line.rsplit("http://")
        .next()
        .and_then(|a| a.trim().strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// One raw HTTP exchange: the whole response.
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    // Whatever came before an error (a reset) is the response.
    let _ = s.read_to_end(&mut out);
    String::from_utf8(out).expect("UTF-8 response")
}

/// `postern stats ARGS`: stdout, after checking the exit status.
fn stats(p: &Postern, args: &[&str]) -> String {
    let mut all = vec!["stats"];
    all.extend_from_slice(args);
    let out = p.cli(&all);
    assert!(
        out.status.success(),
        "postern stats {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Flattens `postern stats --json` with Python's json module (which also
/// checks that it is JSON): `total.connections`, `total.forwarded.domain`…,
/// `source`, `today`, `weeks` (how many), `week` (the last one's label),
/// `days` (how many), `day0.date`, `day0.connections`….
fn flat(json: &str) -> BTreeMap<String, String> {
    let script = r#"
import json, sys
d = json.loads(sys.argv[1])
def walk(prefix, v):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(prefix + "." + k if prefix else k, x)
    elif isinstance(v, list):
        print(prefix + "=" + str(len(v)))
    else:
        print(prefix + "=" + ("null" if v is None else str(v)))
walk("", {k: v for k, v in d.items() if k not in ("weeks", "days")})
walk("weeks", d["weeks"])
walk("week", d["weeks"][-1]["week"])
walk("days", d["days"])
for i, day in enumerate(d["days"]):
    walk("day%d" % i, day)
"#;
    python(script, &[json])
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What the test's mix of sessions must have counted, as `total.<name>` pairs.
fn expected(connections: u64, messages: u64, bytes: u64, domain: u64) -> Vec<(String, String)> {
    [
        ("connections", connections.to_string()),
        ("forwarded.domain", domain.to_string()),
        ("forwarded.ip-addr", "1".into()),
        ("forwarded.auth", "1".into()),
        ("relay_denied", "1".into()),
        ("rejected.limit", "1".into()),
        ("rejected.syntax", "0".into()),
        ("rejected.smuggling", "1".into()),
        ("rejected.access", "0".into()),
        ("rejected.dnsbl", "0".into()),
        ("rejected.restriction", "0".into()),
        ("greylisted", "0".into()),
        ("greylist_passed", "0".into()),
        ("messages", messages.to_string()),
        ("bytes", bytes.to_string()),
        ("refused", "3".into()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("total.{k}"), v))
    .collect()
}

fn check(got: &BTreeMap<String, String>, want: &[(String, String)]) {
    for (k, v) in want {
        assert_eq!(got.get(k), Some(v), "{k} in {got:#?}");
    }
}

/// Sends one mail with swaks from `ip`; panics unless it was accepted.
fn send(p: &Postern, ip: &str, to: &str, extra: &[&str]) {
    let mut args = vec![
        "--local-interface",
        ip,
        "--from",
        "s@example.org",
        "--to",
        to,
    ];
    args.extend_from_slice(extra);
    let (out, ok) = swaks(p.addr, &args);
    assert!(ok, "{ip} -> {to}: {out}");
}

#[test]
fn counts_match_the_sessions_sent_and_survive_a_restart() {
    let a = RecordingBackend::start();
    let b = RecordingBackend::start();
    let dir = TempDir::new("stats-mix");
    let conf = config(&dir, &a, &b);
    let mut p = Postern::start(dir, &conf);

    // Three domain-routed mails.
    send(&p, "127.0.0.10", "u@a.test", &[]);
    send(&p, "127.0.0.11", "u@b.test", &[]);
    send(&p, "127.0.0.12", "v@a.test", &[]);
    // Relaying denied.
    let (out, ok) = swaks(
        p.addr,
        &[
            "--local-interface",
            "127.0.0.13",
            "--from",
            "s@example.org",
            "--to",
            "x@elsewhere.test",
        ],
    );
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
    // A relay client by address, and one by AUTH.
    send(&p, "127.0.0.2", "far@elsewhere.test", &[]);
    send(
        &p,
        "127.0.0.14",
        "far@elsewhere.test",
        &[
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "builder",
        ],
    );
    // A smuggling attempt: forwarded to A (the backend is opened at RCPT), then refused.
    let mut raw = Raw::connect_from("127.0.0.15", p.addr);
    raw.cmd("EHLO client.example");
    raw.cmd("MAIL FROM:<s@example.org>");
    assert!(raw.cmd("RCPT TO:<u@a.test>").starts_with("250"));
    assert!(raw.cmd("DATA").starts_with("354"));
    raw.send(b"Subject: smuggle\r\n\r\nbare\nLF\r\n.\r\n");
    let r = raw.reply();
    assert!(r.starts_with("550 5.5.2"), "{r}");
    assert!(raw.cmd("QUIT").starts_with("221"));
    // Over the per-address limit: two connections, one refused.
    let mut held = Raw::connect_from("127.0.0.16", p.addr);
    // Counted once a command other than HELO/EHLO is answered.
    assert!(held.cmd("NOOP").starts_with("250"));
    let refused = Raw::connect_raw_from("127.0.0.16", p.addr);
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    assert!(held.cmd("QUIT").starts_with("221"));

    let accepted: Vec<Received> = a
        .wait_messages(3)
        .into_iter()
        .chain(b.wait_messages(2))
        .collect();
    let bytes: u64 = accepted.iter().map(|m| m.data.len() as u64).sum();
    // 9 connections: 3 domain, 1 denied, 1 ip-addr, 1 auth, 1 smuggling, 2 at the limit.
    let want = expected(9, 5, bytes, 4);

    // Counting is asynchronous (each session reports when it has ended):
    // wait until all nine are in, then every number must be exact.
    let got = wait_for("the nine sessions in postern stats --json", || {
        let f = flat(&stats(&p, &["--json"]));
        (f.get("total.connections").map(String::as_str) == Some("9")).then_some(f)
    });
    check(&got, &want);
    assert_eq!(got["source"], "router");
    assert_eq!(got["weeks"], "4", "four weeks by default");
    assert_eq!(
        got["total.spam_rate"], "0.375",
        "3 refused / (3 + 5 accepted)"
    );
    // Per day: today's line holds them (unless the test ran across midnight).
    let days: usize = got["days"].parse().expect("number");
    assert!((1..=2).contains(&days), "{got:#?}");
    if days == 1 {
        assert_eq!(got["day0.date"], got["today"]);
        for (k, v) in &want {
            assert_eq!(&got[&k.replace("total.", "day0.")], v, "{k}");
        }
    }
    let week = got["week"].clone();

    // The weekly text synthesis: the current week's row, with its spam rate.
    let text = stats(&p, &["--weeks", "2"]);
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with(&format!("{week} ")))
        .unwrap_or_else(|| panic!("no {week} row in\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[2], "9", "connections: {row:?}");
    assert_eq!(row.last(), Some(&"37.5%"), "spam rate: {row:?}\n{text}");
    assert!(
        text.contains("spam rate = refused / (refused + messages)"),
        "{text}"
    );
    assert!(text.contains("Refusals by kind"), "{text}");

    // The metrics endpoint answers with the same numbers and the worker states.
    let addr = metrics_addr(&p);
    let resp = http(addr, b"GET /metrics HTTP/1.0\r\nHost: postern\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.0 200 OK\r\n"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("\r\ncontent-type: text/plain; version=0.0.4"),
        "{resp}"
    );
    for line in [
        "postern_up 1".to_string(),
        "postern_connections_total 9".into(),
        "postern_forwarded_total{cause=\"domain\"} 4".into(),
        "postern_forwarded_total{cause=\"ip-addr\"} 1".into(),
        "postern_forwarded_total{cause=\"auth\"} 1".into(),
        "postern_relay_denied_total 1".into(),
        "postern_rejected_total{kind=\"limit\"} 1".into(),
        "postern_rejected_total{kind=\"smuggling\"} 1".into(),
        "postern_rejected_total{kind=\"syntax\"} 0".into(),
        "postern_rejected_total{kind=\"dnsbl\"} 0".into(),
        "postern_greylisted_total 0".into(),
        "postern_messages_total 5".into(),
        format!("postern_bytes_total {bytes}"),
        "postern_master_answered 1".into(),
        "postern_worker_up{worker=\"postern-router\",slot=\"0\"} 1".into(),
        "postern_worker_up{worker=\"postern-updater\",slot=\"1\"} 1".into(),
        "postern_worker_up{worker=\"postern-web\",slot=\"2\"} 1".into(),
        "postern_worker_up{worker=\"postern-smtpd\",slot=\"3\"} 1".into(),
        "postern_worker_up{worker=\"postern-smtpd\",slot=\"4\"} 1".into(),
    ] {
        assert!(
            resp.lines().any(|l| l == line),
            "{line} missing from\n{resp}"
        );
    }
    let resp = http(addr, b"HEAD /metrics HTTP/1.1\r\nHost: postern\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("\r\n\r\n"),
        "{resp}"
    );
    let resp = http(addr, b"GET /nothing HTTP/1.1\r\nHost: postern\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 404 "), "{resp}");
    let resp = http(addr, b"POST /metrics HTTP/1.1\r\nHost: postern\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 405 "), "{resp}");
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let resp = http(addr, &huge);
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");

    // Stopped: the file written at stop has every count.
    assert!(p.stop().success());
    let got = flat(&stats(&p, &["--json"]));
    assert_eq!(got["source"], "file");
    check(&got, &want);

    // Started again on the same state_dir: the counts are still there, and
    // new sessions add to them.
    let dir = TempDir(p.dir.0.clone());
    std::mem::forget(std::mem::replace(
        &mut p.dir,
        TempDir::new("stats-placeholder"),
    ));
    let p = Postern::start(dir, &conf);
    let got = flat(&stats(&p, &["--json"]));
    assert_eq!(got["source"], "router");
    check(&got, &want);
    send(&p, "127.0.0.17", "w@b.test", &[]);
    let last = b.wait_messages(3)[2].data.len() as u64;
    let got = wait_for("the tenth session", || {
        let f = flat(&stats(&p, &["--json"]));
        (f.get("total.connections").map(String::as_str) == Some("10")).then_some(f)
    });
    check(&got, &expected(10, 6, bytes + last, 5));
    let resp = http(
        metrics_addr(&p),
        b"GET /metrics HTTP/1.1\r\nHost: postern\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(
        resp.lines().any(|l| l == "postern_connections_total 10"),
        "{resp}"
    );

    // A session just before a graceful stop: its goodbye (a notice that
    // would otherwise wait for company) is sent as smtpd stops, and the file
    // written at stop counts it.
    send(&p, "127.0.0.18", "z@b.test", &[]);
    let eleventh = b.wait_messages(4)[3].data.len() as u64;
    let mut p = p;
    assert!(p.stop().success());
    let got = flat(&stats(&p, &["--json"]));
    assert_eq!(got["source"], "file");
    check(&got, &expected(11, 7, bytes + last + eleventh, 6));
}

/// Without a running postern, `postern stats` reads `state_dir/stats` (here
/// written by hand in the documented format); the arguments are checked.
#[test]
fn stats_read_the_file_when_postern_is_stopped() {
    let dir = TempDir::new("stats-file");
    let conf = dir.path("postern.toml");
    std::fs::write(&conf, config_text(&dir, &server_block("A", 2, &["a.test"]))).expect("config");
    let cli = |args: &[&str]| {
        std::process::Command::new(bin("postern"))
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .expect("run postern")
    };
    // No file yet: zeros, no spam rate.
    let out = cli(&["stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = flat(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got["total.connections"], "0");
    assert_eq!(got["total.spam_rate"], "null");

    let state = dir.path("run/state");
    std::fs::create_dir_all(&state).expect("state dir");
    let got = wait_for("a run that does not cross midnight", || {
        let today = String::from_utf8(
            std::process::Command::new("date")
                .arg("+%F")
                .output()
                .expect("date")
                .stdout,
        )
        .expect("date")
        .trim()
        .to_string();
        std::fs::write(
            state.join("stats"),
            format!(
                "postern-stats 1\n\
                 2001-01-01 connections=1000\n\
                 {today} connections=4 forwarded.domain=2 relay_denied=1 rejected.syntax=1 messages=2 bytes=99\n"
            ),
        )
        .expect("write stats");
        let out = cli(&["stats", "--json", "--weeks", "1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = flat(&String::from_utf8_lossy(&out.stdout));
        (got["today"] == today).then_some(got)
    });
    assert_eq!(got["source"], "file");
    assert_eq!(got["weeks"], "1");
    assert_eq!(got["total.connections"], "4", "2001 is outside the week");
    assert_eq!(got["total.forwarded.domain"], "2");
    assert_eq!(got["total.rejected.syntax"], "1");
    assert_eq!(got["total.bytes"], "99");
    assert_eq!(got["total.spam_rate"], "0.5");
    let text = String::from_utf8_lossy(&cli(&["stats"]).stdout).into_owned();
    assert!(text.contains("postern is not running"), "{text}");
    assert!(text.lines().any(|l| l.ends_with(" 50.0%")), "{text}");

    for bad in [
        &["stats", "--weeks", "0"][..],
        &["stats", "--weeks", "many"],
        &["stats", "--weeks"],
        &["stats", "--csv"],
    ] {
        let out = cli(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("postern stats --help"));
    }
    let help = cli(&["stats", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("spam rate = refused / (refused + messages)"),
        "{help}"
    );

    // A corrupt file is an error, not zeros.
    std::fs::write(state.join("stats"), "garbage\n").expect("write");
    let out = cli(&["stats"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{:?}",
        out
    );

    // The endpoint has no authentication: loopback only.
    std::fs::write(
        &conf,
        config_text(&dir, &server_block("A", 2, &["a.test"]))
            + "[metrics]\nlisten = \"0.0.0.0:9125\"\n",
    )
    .expect("config");
    let out = cli(&["check"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("metrics.listen"),
        "{:?}",
        out
    );
}

#[test]
fn a_session_of_errors_open_connections_and_a_worker_restart_show_in_stats_and_metrics() {
    let (a, b) = (RecordingBackend::start(), RecordingBackend::start());
    let dir = TempDir::new("stats-live");
    let conf = config(&dir, &a, &b);
    let p = Postern::start(dir, &conf);
    let addr = metrics_addr(&p);
    let metric = |name: &str| -> Option<String> {
        let resp = http(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        resp.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
    };

    // Twenty errors: 421 4.7.0, counted as a syntax refusal.
    let mut c = Raw::connect_from("127.0.0.5", p.addr);
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    for _ in 0..20 {
        assert!(c.cmd("FROB").starts_with("502"));
    }
    let last = c.reply();
    assert!(
        last.starts_with("421 4.7.0 mx.postern.test Error: too many errors"),
        "{last}"
    );
    assert!(c.closed());
    wait_for("the syntax refusal in the metrics", || {
        (metric("postern_rejected_total{kind=\"syntax\"}").as_deref() == Some("1")).then_some(())
    });
    assert_eq!(
        flat(&stats(&p, &["--json"]))
            .get("total.rejected.syntax")
            .map(String::as_str),
        Some("1")
    );

    // Two sessions open now, from two addresses (one per address here).
    let x = Raw::connect_from("127.0.0.6", p.addr);
    let y = Raw::connect_from("127.0.0.7", p.addr);
    wait_for("two open connections", || {
        (metric("postern_connections_open").as_deref() == Some("2")).then_some(())
    });
    drop((x, y));
    wait_for("no open connection", || {
        (metric("postern_connections_open").as_deref() == Some("0")).then_some(())
    });

    // A killed smtpd is restarted, and its slot's restarts count it.
    let smtpd = p.pids_of("postern-smtpd");
    assert!(!smtpd.is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(smtpd[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    wait_for("the restart in the metrics", || {
        let resp = http(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        resp.lines()
            .any(|l| {
                l.starts_with("postern_worker_restarts_total{worker=\"postern-smtpd\"")
                    && l.ends_with(" 1")
            })
            .then_some(())
    });
}

#[test]
fn counts_reach_the_file_within_five_seconds_and_survive_a_killed_router() {
    let (a, b) = (RecordingBackend::start(), RecordingBackend::start());
    let dir = TempDir::new("stats-save");
    let conf = config(&dir, &a, &b);
    let p = Postern::start(dir, &conf);
    let file = p.dir.path("run/state/stats");
    let messages_in_file = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .flat_map(|l| l.split(' '))
            .filter_map(|w| w.strip_prefix("messages="))
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert_eq!(messages_in_file(), 0);
    let sent = std::time::Instant::now();
    send(&p, "127.0.0.3", "u@a.test", &[]);
    wait_for("the count in state_dir/stats", || {
        (messages_in_file() == 1).then_some(())
    });
    // Saved by the 5 s timer (plus the session's goodbye, within 50 ms).
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(7),
        "{:?}",
        sent.elapsed()
    );
    // A router killed outright comes back with the count.
    let router = p.pids_of("postern-router")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(router),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    wait_for("a new router", || {
        let now = p.pids_of("postern-router");
        (now.len() == 1 && now[0] != router).then_some(())
    });
    assert_eq!(
        flat(&stats(&p, &["--json"]))
            .get("total.messages")
            .map(String::as_str),
        Some("1")
    );
}

/// `/metrics` read by Prometheus's own Python client parser (Debian's
/// python3-prometheus-client): every family parses with its type; with the
/// router stopped (SIGSTOP), the scrape still answers within its second,
/// `postern_up 0` and the worker states.
#[test]
fn the_metrics_parse_as_prometheus_text_and_say_when_the_router_is_silent() {
    let (a, b) = (RecordingBackend::start(), RecordingBackend::start());
    let dir = TempDir::new("stats-prom");
    let conf = config(&dir, &a, &b);
    let p = Postern::start(dir, &conf);
    send(&p, "127.0.0.2", "u@a.test", &[]);
    a.wait_messages(1);
    let addr = metrics_addr(&p);
    let script = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10).read().decode()
for f in text_string_to_metric_families(text):
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print(f.type, s.name, labels, s.value)
"#;
    let scrape = || debian_python(script, &[&addr.to_string()]);
    let parsed = wait_for("the session counted", || {
        let out = scrape();
        out.lines()
            .any(|l| l == "counter postern_messages_total  1.0")
            .then_some(out)
    });
    for line in [
        "gauge postern_up  1.0",
        "counter postern_connections_total  1.0",
        "counter postern_forwarded_total cause=ip-addr 1.0",
        "counter postern_rejected_total kind=smuggling 0.0",
        "gauge postern_connections_open  0.0",
        "gauge postern_master_answered  1.0",
        "gauge postern_worker_up slot=0,worker=postern-router 1.0",
        "gauge postern_worker_up slot=2,worker=postern-web 1.0",
        "counter postern_worker_restarts_total slot=3,worker=postern-smtpd 0.0",
    ] {
        assert!(parsed.lines().any(|l| l == line), "{line} not in\n{parsed}");
    }
    let router = p.pids_of("postern-router");
    assert_eq!(router.len(), 1);
    let pid = nix::unistd::Pid::from_raw(router[0]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let start = std::time::Instant::now();
    let silent = scrape();
    let took = start.elapsed();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(
        silent.lines().any(|l| l == "gauge postern_up  0.0"),
        "{silent}"
    );
    assert!(!silent.contains("postern_connections_total"), "{silent}");
    assert!(
        silent
            .lines()
            .any(|l| l == "gauge postern_worker_up slot=0,worker=postern-router 1.0"),
        "{silent}"
    );
}
