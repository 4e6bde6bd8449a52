//! The master's supervision: worker crashes, throttling, graceful stop, privileges.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use postern_tests::*;

fn one_customer(tag: &str) -> (Postern, RecordingBackend) {
    let one = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(
        &dir,
        &server_block(
            "Customer One",
            one.port(),
            &["one.test", "held0.test", "held1.test", "held2.test"],
        ),
    );
    (Postern::start(dir, &conf), one)
}

/// Sends one mail with swaks; returns the reply codes.
fn send(p: &Postern, rcpt: &str) -> (Vec<u16>, String) {
    let (out, _) = swaks(p.addr, &["--from", "a@example.org", "--to", rcpt]);
    (swaks_codes(&out), out)
}

fn kill9(pid: i32) {
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9");
}

#[test]
fn killing_one_smtpd_keeps_the_other_serving_and_a_replacement_appears() {
    let (p, one) = one_customer("sup-smtpd");
    let before = p.pids_of("postern-smtpd");
    assert_eq!(before.len(), 2, "two smtpd processes by default");
    kill9(before[0]);
    // The surviving process keeps accepting on the shared listener meanwhile.
    for i in 0..5 {
        let (codes, out) = send(&p, &format!("u{i}@one.test"));
        assert_eq!(codes.last(), Some(&221), "{out}");
        assert!(codes.iter().all(|c| *c < 400), "{codes:?}\n{out}");
    }
    let after = wait_for("a replacement smtpd", || {
        let pids = p.pids_of("postern-smtpd");
        (pids.len() == 2 && !pids.contains(&before[0])).then_some(pids)
    });
    assert!(
        after.contains(&before[1]),
        "the other smtpd was not disturbed"
    );
    assert!(!alive(before[0]));
    p.wait_log("killed by signal 9");
    let (codes, out) = send(&p, "after@one.test");
    assert!(
        codes.contains(&250) && codes.iter().all(|c| *c < 400),
        "{out}"
    );
    assert_eq!(one.wait_messages(6).len(), 6);
    let restarts: u32 = p
        .workers()
        .iter()
        .filter(|w| w.0 == "postern-smtpd")
        .map(|w| w.2)
        .sum();
    assert_eq!(restarts, 1);
}

#[test]
fn killing_the_router_never_gives_5xx_and_routing_comes_back() {
    let (p, one) = one_customer("sup-router");
    let router = p.pids_of("postern-router")[0];
    kill9(router);
    // While the router restarts (throttled: it died young), lookups wait in the
    // router socket's backlog, which the master keeps open: sessions see a
    // delay or a 4xx, never a 5xx.
    wait_for("routing to work again", || {
        let (codes, out) = send(&p, "back@one.test");
        assert!(
            codes.iter().all(|c| *c < 500),
            "a 5xx while the router restarts: {codes:?}\n{out}"
        );
        codes.contains(&250).then_some(())
    });
    let now = p.pids_of("postern-router");
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], router);
    assert_eq!(one.wait_messages(1).len(), 1);
    p.wait_log("postern-router pid");
}

/// A router that cannot come back: every lookup times out into 451 4.3.0.
#[test]
fn a_router_that_does_not_answer_gives_451() {
    let dir = TempDir::new("sup-norouter");
    let one = RecordingBackend::start();
    let daemons = broken_router_dir(&dir);
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"])).replace(
        "[process]\n",
        &format!("[process]\ndaemon_dir = \"{}\"\n", daemons.display()),
    );
    let mut child = start_unready(&dir, &conf);
    let read = || std::fs::read_to_string(dir.path("postern.log")).unwrap_or_default();
    let line = wait_for("the listener", || {
        read()
            .lines()
            .find(|l| l.contains("listening on "))
            .map(str::to_string)
    });
    let addr: std::net::SocketAddr = line
        .rsplit("listening on ")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .expect("addr");
    wait_for("an smtpd to start", || {
        read().contains("started postern-smtpd").then_some(())
    });
    let (out, _) = swaks(addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    let codes = swaks_codes(&out);
    assert!(
        out.contains("451 4.3.0 <u@one.test>: Temporary lookup failure"),
        "{out}"
    );
    assert!(codes.iter().all(|c| *c < 500), "{codes:?}");
    assert_eq!(one.connections(), 0);
    child.stop();
}

/// A daemon_dir with the real smtpd and updater and a router that exits 3 at once.
fn broken_router_dir(dir: &TempDir) -> std::path::PathBuf {
    let daemons = dir.path("daemons");
    std::fs::create_dir_all(&daemons).expect("mkdir");
    // Every worker program must be there: start refuses a missing one.
    for real in ["postern-smtpd", "postern-updater"] {
        std::os::unix::fs::symlink(bin(real), daemons.join(real)).expect("symlink");
    }
    let router = daemons.join("postern-router");
    std::fs::write(
        &router,
        "#!/bin/sh\necho 'router: cannot start' >&2\nexit 3\n",
    )
    .expect("script");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&router, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    daemons
}

/// Starts a master that will never report ready (its router keeps failing).
fn start_unready(dir: &TempDir, conf: &str) -> ChildGuard {
    std::fs::write(dir.path("postern.toml"), conf).expect("conf");
    let log = std::fs::File::create(dir.path("postern.log")).expect("log");
    std::process::Command::new(bin("postern"))
        .args([
            "-c",
            dir.path("postern.toml").to_str().expect("utf8"),
            "start",
        ])
        .stderr(log)
        .spawn()
        .map(ChildGuard)
        .expect("start")
}

#[test]
fn a_worker_that_keeps_dying_is_throttled_with_a_growing_delay() {
    let dir = TempDir::new("sup-throttle");
    let daemons = broken_router_dir(&dir);
    let conf = config_text(&dir, &server_block("One", closed_port(), &["one.test"])).replace(
        "[process]\n",
        &format!("[process]\ndaemon_dir = \"{}\"\n", daemons.display()),
    );
    let mut child = start_unready(&dir, &conf);
    let read = || std::fs::read_to_string(dir.path("postern.log")).unwrap_or_default();
    wait_for("the first throttle", || {
        read().contains("throttling, restart in 1s").then_some(())
    });
    wait_for("a longer second delay", || {
        read().contains("throttling, restart in 2s").then_some(())
    });
    assert!(
        read().contains("postern-router pid") && read().contains("exit status 3"),
        "{}",
        read()
    );
    let status = child.stop();
    assert!(status.success(), "{}", read());
}

#[test]
fn sigterm_stops_everything_and_leaves_no_process_behind() {
    let (mut p, _one) = one_customer("sup-term");
    let workers: Vec<i32> = p.workers().into_iter().map(|w| w.1).collect();
    assert_eq!(workers.len(), 4, "router, updater and two smtpd");
    let run_dir = p.dir.path("run");
    assert!(run_dir.join("postern.pid").exists());
    let status = p.stop();
    assert!(status.success(), "master exit: {status:?}\n{}", p.log());
    for pid in workers {
        assert!(!alive(pid), "worker {pid} survived the master");
    }
    assert!(!run_dir.join("postern.pid").exists(), "pid file removed");
    assert!(!run_dir.join("router.sock").exists(), "sockets removed");
    // The listener is closed: nothing answers any more.
    assert!(std::net::TcpStream::connect(p.addr).is_err());
}

#[test]
fn a_running_session_finishes_during_a_graceful_stop() {
    let (mut p, one) = one_customer("sup-drain");
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO client.example");
    raw.cmd("MAIL FROM:<a@example.org>");
    assert!(raw.cmd("RCPT TO:<late@one.test>").starts_with("250"));
    p.signal(Signal::SIGTERM);
    p.wait_log("waiting up to");
    // New connections are no longer accepted by smtpd…
    // …but the session in progress completes its mail.
    let r = raw.cmd("DATA");
    assert!(r.starts_with("354"), "{r}\n{}", p.log());
    raw.send(b"Subject: drained\r\n\r\nmade it\r\n.\r\n");
    assert!(raw.reply().starts_with("250 2.0.0"));
    // Between transactions a stopping smtpd closes the session: QUIT gets either
    // its 221 or the 421 of the shutdown, and the connection ends.
    let bye = raw.cmd("QUIT");
    assert!(
        bye.starts_with("221") || bye.starts_with("421 4.3.2"),
        "{bye}"
    );
    assert!(raw.closed());
    let mut child = p.child.take().expect("running");
    let status = wait_for("the master to exit", || child.try_wait().expect("wait"));
    assert!(status.success());
    assert_eq!(
        one.wait_messages(1)[0].data,
        b"Subject: drained\r\n\r\nmade it\r\n"
    );
}

#[test]
fn a_stop_tells_sessions_waiting_for_a_command_421_at_once() {
    let (mut p, one) = one_customer("sup-idle-stop");
    // One session only greeted, one between two commands, one after a
    // whole message: each waits for its client's next line.
    let mut greeted = Raw::connect(p.addr);
    let mut after_ehlo = Raw::connect(p.addr);
    assert!(after_ehlo.cmd("EHLO client.example").starts_with("250"));
    let mut after_mail = Raw::connect(p.addr);
    after_mail.cmd("EHLO client.example");
    after_mail.cmd("MAIL FROM:<a@example.org>");
    assert!(after_mail.cmd("RCPT TO:<kept@one.test>").starts_with("250"));
    assert!(after_mail.cmd("DATA").starts_with("354"));
    after_mail.send(b"Subject: before the stop\r\n\r\nkept\r\n.\r\n");
    assert!(after_mail.reply().starts_with("250 2.0.0"));
    p.signal(Signal::SIGTERM);
    // Told without having said anything more — not left open until the
    // stop timeout (5 s here), which would close them without a reply.
    for raw in [&mut greeted, &mut after_ehlo, &mut after_mail] {
        let r = raw.reply();
        assert!(r.starts_with("421 4.3.2 "), "{r}\n{}", p.log());
        assert!(raw.closed());
    }
    let mut child = p.child.take().expect("running");
    let status = wait_for("the master to exit", || child.try_wait().expect("wait"));
    assert!(status.success());
    assert!(!p.log().contains("still open after"), "{}", p.log());
    assert_eq!(one.messages().len(), 1);
}

#[test]
fn the_master_killed_takes_its_workers_with_it() {
    let (mut p, _one) = one_customer("sup-master9");
    let workers: Vec<i32> = p.workers().into_iter().map(|w| w.1).collect();
    assert_eq!(workers.len(), 4, "router, updater, two smtpd: {workers:?}");
    kill9(p.pid());
    let mut child = p.child.take().expect("running");
    let _ = child.wait();
    for pid in workers {
        wait_for(&format!("worker {pid} to exit after its master"), || {
            (!alive(pid)).then_some(())
        });
    }
}

#[test]
fn workers_drop_to_the_configured_user() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks privilege separation and must run as root (CI does)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("lookup")
        .expect("user nobody exists");
    let one = RecordingBackend::start();
    let dir = TempDir::new("sup-user");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("[process]\n", "[process]\nuser = \"nobody\"\n");
    let p = Postern::start(dir, &conf);
    let workers = p.workers();
    assert!(workers.len() >= 3, "router, updater and smtpd: {workers:?}");
    for (program, pid, _) in workers {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        let uids: Vec<u32> = uid_line
            .split_whitespace()
            .skip(1)
            .filter_map(|u| u.parse().ok())
            .collect();
        assert!(
            uids.iter().all(|u| *u == nobody.uid.as_raw()),
            "{program} runs as {uid_line}"
        );
        let gid_line = status
            .lines()
            .find(|l| l.starts_with("Gid:"))
            .expect("Gid line");
        assert!(
            gid_line
                .split_whitespace()
                .skip(1)
                .all(|g| g == nobody.gid.as_raw().to_string()),
            "{program}: {gid_line}"
        );
        // No capability left, none to be had again, and no program it ran
        // could gain one (setuid bits, file capabilities).
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("{program}: no {name} line"))
        };
        for caps in ["CapBnd", "CapPrm", "CapEff"] {
            assert_eq!(field(caps), "0000000000000000", "{program}: {caps}");
        }
        assert_eq!(field("NoNewPrivs"), "1", "{program}");
    }
    let master_status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).expect("proc");
    assert!(
        master_status.lines().any(|l| l.starts_with("Uid:\t0")),
        "the master stays root"
    );
    // And mail still flows through the unprivileged workers.
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "{out}");
    one.wait_messages(1);
}

#[test]
fn smtpd_can_run_chrooted_and_still_reach_the_router() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "chroot needs root (CI runs as root)"
    );
    let one = RecordingBackend::start();
    let dir = TempDir::new("sup-chroot");
    let jail = dir.0.clone();
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"])).replace(
        "[process]\n",
        &format!(
            "[process]\nuser = \"nobody\"\nchroot = \"{}\"\n",
            jail.display()
        ),
    );
    let p = Postern::start(dir, &conf);
    let (smtpd, router) = (p.pids_of("postern-smtpd"), p.pids_of("postern-router"));
    assert!(!smtpd.is_empty() && router.len() == 1, "{:?}", p.workers());
    for pid in smtpd {
        let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("proc root");
        assert_eq!(root, jail, "smtpd {pid} is chrooted");
    }
    for pid in router {
        let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("proc root");
        assert_eq!(
            root,
            std::path::PathBuf::from("/"),
            "only smtpd is chrooted"
        );
    }
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "{out}\n{}", p.log());
    assert_eq!(one.wait_messages(1).len(), 1);
}

/// `n` sequential smtplib sessions, one mail each to `u<i>@one.test`, in a
/// thread; the thread's result ends with `failures: N`.
fn stream_of_sessions(addr: std::net::SocketAddr, n: usize) -> std::thread::JoinHandle<String> {
    let script = r#"
import smtplib, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failed = 0
for i in range(n):
    try:
        with smtplib.SMTP(host, port, timeout=20) as s:
            s.sendmail("a@example.org", ["u%d@one.test" % i], "Subject: %d\r\n\r\nbody\r\n" % i)
    except Exception as e:
        failed += 1
        print("failed", i, repr(e))
print("failures:", failed)
"#;
    let n = n.to_string();
    std::thread::spawn(move || {
        python(
            script,
            &[&addr.ip().to_string(), &addr.port().to_string(), &n],
        )
    })
}

/// Sessions opened and left in the middle of a transaction (after MAIL).
fn held_sessions(p: &Postern, n: usize) -> Vec<Raw> {
    (0..n)
        .map(|_| {
            let mut s = Raw::connect(p.addr);
            assert!(s.cmd("EHLO held.example").starts_with("250"));
            assert!(s.cmd("MAIL FROM:<held@example.org>").starts_with("250"));
            s
        })
        .collect()
}

/// Finishes a held session: its recipient (a route lookup: smtpd has
/// not seen `held<i>.test` yet), its message.
fn finish(mut s: Raw, i: usize) {
    let rcpt = s.cmd(&format!("RCPT TO:<someone@held{i}.test>"));
    assert!(rcpt.starts_with("250"), "held session {i}: {rcpt}");
    assert!(s.cmd("DATA").starts_with("354"));
    let done = s.cmd(&format!("Subject: held {i}\r\n\r\nbody\r\n."));
    assert!(done.starts_with("250"), "held session {i}: {done}");
    assert!(s.cmd("QUIT").starts_with("221"));
}

/// The recipients the backend received, each once.
fn received_once(one: &RecordingBackend, n: usize) -> Vec<String> {
    let got = one.wait_messages(n);
    let mut rcpts: Vec<String> = got
        .iter()
        .flat_map(|m| {
            m.commands
                .iter()
                .filter(|c| c.starts_with("RCPT TO:"))
                .cloned()
        })
        .collect();
    assert_eq!(rcpts.len(), n, "{rcpts:?}");
    rcpts.sort();
    let before = rcpts.len();
    rcpts.dedup();
    assert_eq!(rcpts.len(), before, "a message delivered twice");
    rcpts
}

/// `postern restart smtpd` in the middle of a stream of sessions, with
/// sessions open inside a transaction: the restart happens while sessions
/// run (the stream has not finished when it returns), the open sessions
/// finish on the old processes, the stream on the new ones; none fails.
#[test]
fn restarting_smtpd_during_a_stream_of_sessions_fails_none() {
    let (p, one) = one_customer("sup-restart");
    let before = p.pids_of("postern-smtpd");
    assert_eq!(before.len(), 2, "two smtpd processes by default");
    let stream = stream_of_sessions(p.addr, 300);
    one.wait_messages(5);
    let held = held_sessions(&p, 3);
    let out = p.cli(&["restart", "smtpd"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("smtpd restarted (2 process(es))"));
    let at_restart = one.messages().len();
    assert!(
        at_restart < 300,
        "the stream ended before the restart: {at_restart} mails"
    );
    // An old process waits for its open sessions (one that held none of
    // the three may be gone already).
    assert!(
        before.iter().any(|pid| alive(*pid)),
        "the old smtpd processes left their sessions"
    );
    for (i, s) in held.into_iter().enumerate() {
        finish(s, i);
    }
    let result = stream.join().expect("client thread");
    assert!(result.contains("failures: 0"), "{result}");
    received_once(&one, 303);
    let after = wait_for("the old smtpd processes to finish", || {
        let now = p.pids_of("postern-smtpd");
        (now.len() == 2 && before.iter().all(|b| !now.contains(b) && !alive(*b))).then_some(now)
    });
    // Sessions after the restart were served by the new processes.
    let log = p.log();
    assert!(
        after
            .iter()
            .any(|pid| log.contains(&format!("postern-smtpd[{pid}]: INFO sid="))),
        "no session on the new processes"
    );
}

/// `postern restart router` while sessions run: those in a transaction
/// ask for their recipient's route after the restart, a stream of sessions
/// runs through it; every recipient is routed and delivered once.
#[test]
fn restarting_the_router_keeps_sessions_and_a_stream_going() {
    let (p, one) = one_customer("sup-restart-router");
    let before = p.pids_of("postern-router");
    let stream = stream_of_sessions(p.addr, 300);
    one.wait_messages(5);
    let held = held_sessions(&p, 3);
    let out = p.cli(&["restart", "router"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at_restart = one.messages().len();
    assert!(
        at_restart < 300,
        "the stream ended before the restart: {at_restart} mails"
    );
    let new = wait_for("the old router to end", || {
        let now = p.pids_of("postern-router");
        (now.len() == 1 && now[0] != before[0] && !alive(before[0])).then_some(now[0])
    });
    for (i, s) in held.into_iter().enumerate() {
        finish(s, i);
    }
    let result = stream.join().expect("client thread");
    assert!(result.contains("failures: 0"), "{result}");
    received_once(&one, 303);
    let log = p.log();
    for i in 0..3 {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("postern-router[{new}]"))
                    && l.contains(&format!("route held{i}.test -> Customer One"))),
            "held{i} was not routed by the new router (pid {new}):\n{}",
            log.lines()
                .filter(|l| l.contains("held") || l.contains("postern-router["))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// `postern restart updater` while an update mail waits for it: the
/// running updater is stopped (SIGSTOP) so that smtpd's request waits in
/// updater.sock's backlog; the restart stops it and starts its successor;
/// the waiting client gets its 250 and every server its copy, once.
#[test]
fn restarting_the_updater_serves_the_request_waiting_in_its_backlog() {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let dir = TempDir::new("sup-restart-updater");
    let conf = config_text(
        &dir,
        &(server_block("One", one.port(), &["one.test"])
            + &server_block("Two", two.port(), &["two.test"])),
    )
    .replace(
        "hostname = ",
        "update_address = \"update@mx.postern.test\"\nhostname = ",
    );
    let p = Postern::start(dir, &conf);
    let old = p.pids_of("postern-updater");
    assert_eq!(old.len(), 1);
    kill(Pid::from_raw(old[0]), Signal::SIGSTOP).expect("SIGSTOP");
    let addr = p.addr;
    let client = std::thread::spawn(move || {
        swaks(
            addr,
            &[
                "--from",
                "admin@example.net",
                "--to",
                "update@mx.postern.test",
                "--header",
                "Subject: patch",
            ],
        )
    });
    let sock = p.dir.path("run/updater.sock");
    wait_for(
        "the update request to wait in updater.sock's backlog",
        || {
            let out = std::process::Command::new("ss")
                .args(["-xlnH", "src"])
                .arg(&sock)
                .output()
                .expect("ss (iproute2)");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // Netid State Recv-Q …: Recv-Q is the backlog of a listener.
            let queued: usize = text
                .split_whitespace()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (queued >= 1).then_some(())
        },
    );
    let out = p.cli(&["restart", "updater"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    kill(Pid::from_raw(old[0]), Signal::SIGCONT).expect("SIGCONT");
    let (said, ok) = client.join().expect("client");
    assert!(ok && said.contains("250 2.0.0"), "{said}\n{}", p.log());
    wait_for("a new updater", || {
        let now = p.pids_of("postern-updater");
        (now.len() == 1 && now[0] != old[0] && !alive(old[0])).then_some(())
    });
    for backend in [&one, &two] {
        assert_eq!(backend.wait_messages(1).len(), 1);
    }
    // Done with: nothing left to send, and nothing was sent twice.
    wait_for("the update queue to empty", || {
        let out = p.cli(&["queue"]);
        (String::from_utf8_lossy(&out.stdout) == "the update queue is empty\n").then_some(())
    });
    assert_eq!(
        (one.messages().len(), two.messages().len()),
        (1, 1),
        "a copy delivered twice"
    );

    let bad = p.cli(&["restart", "everything"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("smtpd, router, updater or web"));
}
