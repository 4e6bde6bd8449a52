//! The soak: bounded load from several loopback addresses while every kind
//! of worker is killed (SIGKILL) and replaced (`postern restart`), the
//! master reloads every second (SIGHUP), a backend goes down and comes
//! back, and update mails are queued. Then, from the clients' replies and
//! the backends' records:
//!
//! - no 5xx to any client;
//! - every message a client got 250 for reached its backend exactly once;
//! - no message reached a backend without a 250 at its client, except when
//!   the client lost its connection after its end of data (the window of
//!   RFC 1047 that no SMTP relay closes: it retries, and may deliver twice);
//! - every update mail reached every server exactly once;
//! - the processes' descriptors and memory come back to their level before
//!   the load.
//!
//! `SOAK_SECONDS` sets the load's length (default 20 s: the short form,
//! which `bash tests/run` runs); `bash bench/soak` runs the long form and
//! prints its figures (docs/soak.md).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use postern_tests::*;

/// The load: `threads` clients, each from its own loopback address, one
/// message per connection until the deadline (or `max` messages in all);
/// one line per message: `ID OUTCOME CODE SECONDS`, where OUTCOME is `accepted`,
/// `temporary` (a 4xx), `permanent` (a 5xx), `lost` (the connection broke
/// before the end of data) or `unknown` (it broke after the end of data:
/// the message may have been delivered), written to the file named last
/// (a pipe would fill up before anyone reads it).
const CLIENT: &str = r#"
import socket, sys, threading, time
host, port, seconds, threads, max_msgs, report = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
deadline = time.time() + seconds
lock = threading.Lock()
count = [0]
out = []

def reply(f):
    code = None
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        code = int(line[:3])
        if line[3:4] != b"-":
            return code

def one(src, n):
    t0 = time.time()
    r = attempt(src, n)
    return r + (time.time() - t0,)

def attempt(src, n):
    mid = "%s-%d" % (src, n)
    rcpt = "u%d@%s" % (n, "one.test" if n % 2 == 0 else "two.test")
    state = "before"
    try:
        s = socket.create_connection((host, port), timeout=30, source_address=(src, 0))
        f = s.makefile("rb")
        steps = [None, b"EHLO soak.example\r\n", b"MAIL FROM:<soak@example.org>\r\n",
                 ("RCPT TO:<%s>\r\n" % rcpt).encode(), b"DATA\r\n"]
        for i, cmd in enumerate(steps):
            if cmd:
                s.sendall(cmd)
            code = reply(f)
            want = 354 if i == 4 else (220 if i == 0 else 250)
            if code != want:
                s.close()
                return (mid, "temporary" if code < 500 else "permanent", code)
        state = "data"
        s.sendall(("Subject: soak %s\r\n\r\nhello\r\n.\r\n" % mid).encode())
        state = "after"
        code = reply(f)
        try:
            s.sendall(b"QUIT\r\n")
            s.close()
        except OSError:
            pass
        if code == 250:
            return (mid, "accepted", code)
        return (mid, "temporary" if code < 500 else "permanent", code)
    except (OSError, ValueError):
        return (mid, "unknown" if state == "after" else "lost", 0)

def run(src):
    n = 0
    while time.time() < deadline:
        with lock:
            if count[0] >= max_msgs:
                return
            count[0] += 1
        r = one(src, n)
        n += 1
        with lock:
            out.append(r)
        if r[1] != "accepted":
            time.sleep(0.05)

ts = [threading.Thread(target=run, args=("127.0.0.%d" % (i + 2),)) for i in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
with open(report, "w") as f:
    for r in out:
        f.write("%s %s %d %.3f\n" % r)
"#;

/// Descriptors and resident memory (kB) of the master and its workers.
fn footprint(p: &Postern) -> (usize, u64) {
    let mut pids = vec![p.pid()];
    pids.extend(p.workers().into_iter().map(|w| w.1));
    let mut fds = 0;
    let mut rss = 0;
    for pid in pids {
        fds += std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        rss += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    (fds, rss)
}

/// The soak id in a received message's subject.
fn soak_id(m: &Received) -> Option<String> {
    let text = String::from_utf8_lossy(&m.data);
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: soak "))
        .map(|s| s.trim().to_string())
}

#[test]
fn under_kills_restarts_reloads_and_a_flapping_backend_no_mail_is_lost_or_doubled() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let one = RecordingBackend::start();
    let mut two = vec![RecordingBackend::start()];
    let two_port = two[0].port();
    let dir = TempDir::new("soak");
    let conf = config_text(
        &dir,
        &(server_block("One", one.port(), &["one.test"])
            + &server_block("Two", two_port, &["two.test"])),
    )
    .replace(
        "hostname = ",
        "update_address = \"update@mx.postern.test\"\nadmin_networks = [\"127.0.0.1/32\"]\nmax_connections_per_ip = 200\nhostname = ",
    )
    .replace("[process]\n", "[process]\nsmtpd_processes = 2\n")
        + "\n[update]\nretry_min = \"1s\"\nretry_max = \"2s\"\n";
    let p = Postern::start(dir, &conf);

    // Warm up, then the baseline.
    let warm = smtplib_sendmail("127.0.0.2", p.addr, "soak@example.org", &["w@one.test"]);
    assert!(warm.contains("refused: {}"), "{warm}");
    let (base_fds, base_rss) = footprint(&p);

    let client = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .args([
            p.addr.ip().to_string(),
            p.addr.port().to_string(),
            seconds.to_string(),
            "4".into(),
            (seconds * 400).to_string(),
            p.dir.path("soak-report").display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut client = ChildGuard(client);

    // The chaos, one step a second, in this order, round after round.
    let start = Instant::now();
    let mut updates = Vec::new();
    let mut step = 0u32;
    let mut two_down = false;
    let mut update_tries = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        p.signal(Signal::SIGHUP);
        let kill_one = |program: &str| {
            if let Some(pid) = p.pids_of(program).first() {
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
        };
        match step % 10 {
            0 => kill_one("postern-smtpd"),
            1 => {
                two[two.len() - 1].stop();
                two_down = true;
            }
            2 => kill_one("postern-router"),
            3 => {
                two.push(RecordingBackend::start_on(two_port));
                two_down = false;
            }
            4 => kill_one("postern-updater"),
            5 => {
                let _ = p.cli(&["restart", "smtpd"]);
            }
            6 => {
                update_tries += 1;
                let n = updates.len();
                let subject = format!("Subject: soak update-{n}\r\n\r\nupdate\r\n");
                let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=("127.0.0.1", 0), timeout=30)
s.sendmail("admin@example.org", ["update@mx.postern.test"], sys.argv[3])
s.quit()
print("queued")
"#;
                let out = Command::new("python3")
                    .args([
                        "-c",
                        script,
                        &p.addr.ip().to_string(),
                        &p.addr.port().to_string(),
                        &subject,
                    ])
                    .output()
                    .expect("python3");
                if String::from_utf8_lossy(&out.stdout).contains("queued") {
                    updates.push(format!("update-{n}"));
                }
            }
            7 => {
                let _ = p.cli(&["restart", "router"]);
            }
            8 => {
                let _ = p.cli(&["restart", "updater"]);
            }
            _ => {}
        }
        step += 1;
    }
    if two_down {
        two.push(RecordingBackend::start_on(two_port));
    }
    assert!(
        update_tries == 0 || !updates.is_empty(),
        "none of {update_tries} update mails was queued"
    );
    // A message under way at the deadline finishes first: each of its
    // replies may take up to the client's 30 s.
    let ended = Instant::now();
    let out = loop {
        if let Some(status) = client.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(200),
            "the load did not end"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.success(), "the client failed");
    let text = std::fs::read_to_string(p.dir.path("soak-report")).expect("the client's report");

    // The clients' outcomes.
    let mut outcome: HashMap<String, (String, i32)> = HashMap::new();
    let mut tally: HashMap<String, usize> = HashMap::new();
    let mut slowest = 0f64;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [id, what, code, seconds] = f[..] else {
            panic!("client line {line:?}")
        };
        slowest = slowest.max(seconds.parse().expect("seconds"));
        *tally.entry(what.to_string()).or_default() += 1;
        outcome.insert(
            id.to_string(),
            (what.to_string(), code.parse().expect("code")),
        );
    }
    println!(
        "soak {seconds}s: {} messages, {tally:?}, the slowest took {slowest:.1}s, {} update mails",
        outcome.len(),
        updates.len()
    );
    let permanent: Vec<_> = outcome
        .iter()
        .filter(|(_, (w, _))| w == "permanent")
        .collect();
    assert!(permanent.is_empty(), "5xx under the soak: {permanent:?}");
    assert!(tally.get("accepted").copied().unwrap_or(0) > 0, "{tally:?}");

    // Every update mail, once per server (the updater retries Two).
    let all_two = |two: &[RecordingBackend]| -> Vec<Received> {
        two.iter().flat_map(|b| b.messages()).collect()
    };
    for u in &updates {
        wait_for(&format!("{u} on both servers"), || {
            let n1 = one
                .messages()
                .iter()
                .filter(|m| soak_id(m).as_deref() == Some(u))
                .count();
            let n2 = all_two(&two)
                .iter()
                .filter(|m| soak_id(m).as_deref() == Some(u))
                .count();
            (n1 >= 1 && n2 >= 1).then_some(())
        });
    }

    // What the backends got, against what the clients were told.
    let mut got: HashMap<String, usize> = HashMap::new();
    for m in one.messages().iter().chain(all_two(&two).iter()) {
        if let Some(id) = soak_id(m) {
            *got.entry(id).or_default() += 1;
        }
    }
    for u in &updates {
        assert_eq!(got.remove(u), Some(2), "{u}: once on each server");
    }
    for (id, (what, _)) in &outcome {
        let n = got.get(id).copied().unwrap_or(0);
        match what.as_str() {
            "accepted" => assert_eq!(n, 1, "{id}: told 250, delivered {n} times"),
            "unknown" => assert!(n <= 1, "{id}: delivered {n} times"),
            _ => assert_eq!(n, 0, "{id}: {what}, yet delivered {n} times"),
        }
    }
    let strays: Vec<_> = got.keys().filter(|id| !outcome.contains_key(*id)).collect();
    assert!(strays.is_empty(), "delivered, never sent: {strays:?}");

    // Back to the level before the load, once the last sessions and
    // backend connections have closed (within 20 s).
    let mut last = (0, 0);
    let back = wait_until(Duration::from_secs(20), || {
        last = footprint(&p);
        last.0 <= base_fds + 10 && last.1 <= base_rss * 3 / 2 + 20_000
    });
    let (fds, rss) = last;
    println!("descriptors {base_fds} → {fds}, memory {base_rss} kB → {rss} kB");
    assert!(
        back,
        "descriptors {base_fds} → {fds}, memory {base_rss} kB → {rss} kB"
    );
}
