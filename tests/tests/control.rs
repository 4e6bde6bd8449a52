//! Reload (SIGHUP and `postern reload`), systemd notifications, and the CLI.

use std::os::unix::net::UnixDatagram;

use nix::sys::signal::Signal;
use postern_tests::*;

fn send_ok(p: &Postern, rcpt: &str) -> String {
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", rcpt]);
    assert!(ok, "mail to {rcpt} failed:\n{out}");
    out
}

#[test]
fn sighup_with_an_added_domain_routes_it_and_a_broken_file_changes_nothing() {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let dir = TempDir::new("ctl-hup");
    let first = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let p = Postern::start(dir, &first);
    let (out, _) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@two.test"]);
    assert!(
        out.contains("554 5.7.1"),
        "two.test unknown before the reload:\n{out}"
    );

    let second = first.clone() + &server_block("Two", two.port(), &["two.test"]);
    std::fs::write(p.config_path(), &second).expect("rewrite");
    p.signal(Signal::SIGHUP);
    p.wait_log("configuration reloaded");
    p.wait_log("ready to serve server 2/2 'Two'");
    send_ok(&p, "u@two.test");
    assert_eq!(two.wait_messages(1).len(), 1);

    // A broken file: logged, and the running table stays.
    std::fs::write(p.config_path(), second.replace("port = ", "prot = ")).expect("break");
    p.signal(Signal::SIGHUP);
    let refused = p.wait_log("reload refused");
    assert!(refused.contains("unknown field `prot`"), "{refused}");
    send_ok(&p, "v@two.test");
    send_ok(&p, "w@one.test");
    assert_eq!(two.wait_messages(2).len(), 2);
    assert_eq!(one.wait_messages(1).len(), 1);
    assert_eq!(p.log().matches("configuration reloaded").count(), 1);
}

#[test]
fn postern_reload_reports_the_outcome() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-cli-reload");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let p = Postern::start(dir, &conf);
    let ok = p.cli(&["reload"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "postern: configuration reloaded"
    );

    std::fs::write(
        p.config_path(),
        conf.replace("domains = [\"one.test\"]", "domains = []"),
    )
    .expect("break");
    let bad = p.cli(&["reload"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("server[1].domains: at least one domain is required"),
        "{err}"
    );
    send_ok(&p, "still@one.test");
}

#[test]
fn notify_socket_gets_ready_reloading_stopping_and_watchdog() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-notify");
    let sock_path = dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(DEADLINE)).expect("timeout");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let mut p = Postern::start_with(
        dir,
        &conf,
        &[
            ("NOTIFY_SOCKET", sock_path.display().to_string()),
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );
    let mut seen = Vec::<String>::new();
    let expect = |what: &str, seen: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {what}: {e}; got {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.lines().any(|l| l == what) {
                return msg;
            }
        }
    };
    let ready = expect("READY=1", &mut seen);
    assert!(ready.contains("STATUS="), "{ready}");
    expect("WATCHDOG=1", &mut seen);
    p.signal(Signal::SIGHUP);
    expect("RELOADING=1", &mut seen);
    expect("READY=1", &mut seen);
    let status = p.stop();
    assert!(status.success());
    expect("STOPPING=1", &mut seen);
    // No worker ever wrote to the socket: it was not passed on.
    assert!(seen.iter().all(|m| !m.contains("MAINPID")));
}

#[test]
fn status_lists_every_worker() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-status");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("[process]\n", "[process]\nsmtpd_processes = 3\n");
    let p = Postern::start(dir, &conf);
    let out = p.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("master pid {}", p.pid())),
        "{text}"
    );
    let w = p.workers();
    assert_eq!(
        w.iter().filter(|w| w.0 == "postern-smtpd").count(),
        3,
        "{text}"
    );
    assert_eq!(
        w.iter().filter(|w| w.0 == "postern-router").count(),
        1,
        "{text}"
    );
    for (_, pid, restarts) in &w {
        assert!(alive(*pid));
        assert_eq!(*restarts, 0);
    }
}

#[test]
fn postern_stop_waits_for_the_master_to_exit() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-stop");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let mut p = Postern::start(dir, &conf);
    let out = p.cli(&["stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "postern: stopped"
    );
    let mut child = p.child.take().expect("running");
    let status = wait_for("exit", || child.try_wait().expect("wait"));
    assert!(status.success());
    let again = p.cli(&["status"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not running"));
}

#[test]
fn a_second_master_refuses_to_start() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-twice");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let p = Postern::start(dir, &conf);
    let out = p.cli(&["start"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("already running (pid {},", p.pid())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    send_ok(&p, "u@one.test");
}

#[test]
fn check_prints_every_problem_with_its_key() {
    let dir = TempDir::new("ctl-check");
    let path = dir.path("bad.toml");
    std::fs::write(
        &path,
        "[proxy]\nlisten = [\"nowhere\"]\nmax_recipients = 0\n\n[[server]]\nhost = \"\"\nport = 0\ndomains = [\"a.test\"]\n\n[[server]]\nhost = \"h\"\nport = 25\ndomains = [\"A.TEST.\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", path.to_str().expect("utf8"), "check"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "proxy.listen[0]: \"nowhere\" is not an address:port",
        "proxy.max_recipients: must be at least 1",
        "server[1].host: is required",
        "server[1].port: must be between 1 and 65535",
        "server[2].domains[0]: \"A.TEST.\" is also a domain of server[1]",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert_eq!(err.lines().count(), 5, "one line per problem:\n{err}");

    std::fs::write(&path, "[proxy]\nbanner = \"x\"\ncolour = \"blue\"\n").expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", path.to_str().expect("utf8"), "check"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("line 3, column 1") && err.contains("unknown field `colour`"),
        "{err}"
    );
    // An unknown key does not hide the other problems.
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.lines()
            .nth(1)
            .is_some_and(|l| l.ends_with(": server: at least one [[server]] is needed: without one every recipient gets 554 5.7.1 Relaying denied")),
        "{err}"
    );

    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/postern.toml");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", example.to_str().expect("utf8"), "check"])
        .output()
        .expect("run");
    // Its process.user, postern, is the package's (sysusers): a machine
    // without it may say so, and nothing else.
    let has_user = nix::unistd::User::from_name("postern")
        .ok()
        .flatten()
        .is_some();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            || (!has_user
                && err.trim()
                    == format!(
                        "{}: process.user: user \"postern\" does not exist",
                        example.display()
                    )),
        "conf/postern.toml must be valid: {err}"
    );
}

/// A configuration `start` refuses on this machine for every reason `check`
/// must see too: a port out of range, a worker program missing, TLS files
/// missing or not PEM, a user that does not exist, a log directory that
/// cannot be created.
fn refused_everywhere(dir: &TempDir, port: u16) -> (String, Vec<String>) {
    let not_pem = dir.path("key.pem");
    std::fs::write(&not_pem, "not a key\n").expect("write");
    let blocker = dir.path("blocker");
    std::fs::write(&blocker, "a file, not a directory\n").expect("write");
    let daemons = dir.path("daemons");
    std::fs::create_dir_all(&daemons).expect("dir");
    std::os::unix::fs::symlink(bin("postern-router"), daemons.join("postern-router"))
        .expect("link");
    let conf = config_text(dir, &server_block("One", 2525, &["one.test"]))
        .replace("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"127.0.0.1:{port}\"]"))
        .replace("port = 2525", "port = 70000")
        .replace(
            "[process]\n",
            &format!(
                "[tls]\ncert = \"{missing}\"\nkey = \"{key}\"\n\n[log]\nfile = \"{log}\"\n\n[process]\nuser = \"no-such-user-postern\"\ndaemon_dir = \"{daemons}\"\n",
                missing = dir.path("missing.pem").display(),
                key = not_pem.display(),
                log = blocker.join("postern.log").display(),
                daemons = daemons.display(),
            ),
        );
    let lines = vec![
        format!("server[1].port: must be between 1 and 65535, not 70000 (line 24)"),
        format!("process.daemon_dir: worker program {}/postern-updater is missing (process.daemon_dir is {})", daemons.display(), daemons.display()),
        format!("process.daemon_dir: worker program {}/postern-smtpd is missing (process.daemon_dir is {})", daemons.display(), daemons.display()),
        format!("tls.cert: cannot read {}: No such file or directory (os error 2)", dir.path("missing.pem").display()),
        format!("tls.key: {} holds no PEM private key", not_pem.display()),
        "process.user: user \"no-such-user-postern\" does not exist".to_string(),
        format!("log.file: {} is not a directory", blocker.display()),
    ];
    (conf, lines)
}

#[test]
fn check_runs_every_check_of_start_and_lists_every_problem_at_once() {
    let dir = TempDir::new("ctl-preflight");
    let port = closed_port();
    let (conf, lines) = refused_everywhere(&dir, port);
    let path = dir.path("postern.toml");
    std::fs::write(&path, &conf).expect("write");
    let expected: String = lines
        .iter()
        .map(|l| format!("{}: {l}\n", path.display()))
        .collect();
    for cmd in ["check", "start"] {
        let out = std::process::Command::new(bin("postern"))
            .args(["-c", path.to_str().expect("utf8"), cmd])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            expected,
            "{cmd}:\n{conf}"
        );
    }
    // start stopped before binding or creating anything.
    assert!(!dir.path("run").exists(), "run_dir was created");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the port was bound"
    );
}

#[test]
fn config_prints_the_effective_configuration_with_passwords_masked() {
    let dir = TempDir::new("ctl-config");
    let conf = config_text(&dir, &server_block("One", 2525, &["one.test"])).replace(
        "hostname = ",
        "admin_user = \"admin\"\nadmin_password = \"s3cret\"\nhostname = ",
    );
    let path = dir.path("p.toml");
    std::fs::write(&path, conf).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", path.to_str().expect("utf8"), "config"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("admin_password = \"********\""), "{text}");
    assert!(
        text.contains("max_connections = 2000"),
        "defaults shown: {text}"
    );
    assert!(text.contains("client_identity = \"ipaddr\""), "{text}");
}

#[test]
fn help_works_on_every_command() {
    for cmd in ["start", "stop", "reload", "status", "check", "config"] {
        let out = std::process::Command::new(bin("postern"))
            .args([cmd, "--help"])
            .output()
            .expect("run");
        assert!(out.status.success(), "{cmd} --help");
        assert!(String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("usage: postern [-c FILE] {cmd}")));
    }
    let out = std::process::Command::new(bin("postern"))
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn every_command_has_help_and_a_usage_mistake_is_one_line() {
    let postern = |args: &[&str]| {
        std::process::Command::new(bin("postern"))
            .args(args)
            .output()
            .expect("run")
    };
    for cmd in [
        "restart",
        "log",
        "convert",
        "queue",
        "restarts",
        "stats",
        "access",
        "completions",
        "man",
    ] {
        let out = postern(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.starts_with("usage: postern "), "{cmd}: {help}");
        assert!(help.contains(&format!(" {cmd}")), "{cmd}: {help}");
    }
    let out = postern(&["-V"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("postern {}", env!("CARGO_PKG_VERSION"))
    );
    for (args, names) in [
        (&["stats", "--csv"][..], "postern: stats: "),
        (&["access", "add", "reject"], "postern: access add: "),
        (&["queue", "delete"], "postern: queue delete: "),
        (&["log"], "postern: log: "),
        (&["restart"], "postern: restart: "),
        (&["check", "extra"], "postern: check: "),
        (&["completions", "tcsh"], "postern: completions: "),
    ] {
        let out = postern(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with(names), "{args:?}: {err}");
        assert!(err.trim_end().ends_with(" --help"), "{args:?}: {err}");
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line() {
    let postern = |args: &[&str]| {
        let out = std::process::Command::new(bin("postern"))
            .args(args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = postern(&["completions", shell]);
        for word in ["access", "restarts", "weeks", "keep-until"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let page = postern(&["man"]);
    assert!(page.contains(".TH postern 8"), "{page}");
    assert!(page.contains("postern\\-stats(8)"), "{page}");
    let page = postern(&["man", "access", "add"]);
    assert!(page.contains(".TH postern-access-add 8"), "{page}");
    assert!(page.contains("\\-\\-keep\\-until"), "{page}");
}

#[test]
fn status_shows_sessions_in_progress_and_backend_health() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-health");
    let conf = config_text(
        &dir,
        &(server_block("One", one.port(), &["one.test"])
            + &server_block("Down", closed_port(), &["down.test"])),
    )
    .replace("[process]\n", "[process]\nsmtpd_processes = 1\n");
    let p = Postern::start(dir, &conf);
    let status = || String::from_utf8_lossy(&p.cli(&["status"]).stdout).into_owned();
    let mut held = Raw::connect(p.addr);
    held.cmd("EHLO client.example");
    wait_for("one session in progress", || {
        status().contains("sessions in progress: 1").then_some(())
    });
    held.cmd("MAIL FROM:<a@example.org>");
    for i in 0..3 {
        assert!(held
            .cmd(&format!("RCPT TO:<u{i}@down.test>"))
            .starts_with("451 4.4.1"));
    }
    let text = wait_for("the failing backend in status", || {
        let t = status();
        t.contains("(3 failures in a row), skipped for")
            .then_some(t)
    });
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("One").contains("reachable"), "{text}");
    assert!(line("Down").contains("failing since"), "{text}");
    held.cmd("QUIT");
    wait_for("no session in progress", || {
        status().contains("sessions in progress: 0").then_some(())
    });
}

#[test]
fn a_configuration_without_servers_is_refused_by_check_and_reload() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-noserver");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let p = Postern::start(dir, &conf);
    let empty = config_text(&p.dir, "");
    let lone = p.dir.path("empty.toml");
    std::fs::write(&lone, &empty).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", lone.to_str().expect("utf8"), "check"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let want = format!(
        "{}: server: at least one [[server]] is needed: without one every recipient gets 554 5.7.1 Relaying denied",
        lone.display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), want);

    std::fs::write(p.config_path(), &empty).expect("rewrite");
    let bad = p.cli(&["reload"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("server: at least one [[server]] is needed"),
        "{err}"
    );
    send_ok(&p, "still@one.test");
}

#[test]
fn start_creates_the_log_directory_and_warns_when_workers_run_as_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks the warning of a root master and must run as root (CI does)"
    );
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-logdir");
    let file = dir.path("logs/deeper/postern.log");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"])).replace(
        "[process]\n",
        &format!(
            "[log]\nfile = {:?}\n\n[process]\n",
            file.display().to_string()
        ),
    );
    let p = Postern::start(dir, &conf);
    assert!(file.is_file(), "{} was not created", file.display());
    let warning = p.wait_log("process.user: not set");
    assert!(
        warning.contains("WARN") && warning.contains("the workers run as root"),
        "{warning}"
    );
    let in_file = std::fs::read_to_string(&file).expect("log file");
    assert!(in_file.contains("listening on"), "{in_file}");
}

#[test]
fn status_and_stop_by_another_user_say_permission_denied_not_not_running() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test runs the CLI as nobody against a root master and must run as root (CI does)"
    );
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-eperm");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let p = Postern::start(dir, &conf);
    for cmd in ["status", "stop", "reload"] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(bin("postern"))
            .arg("-c")
            .arg(p.config_path())
            .arg(cmd)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("setpriv (util-linux) runs the CLI as nobody");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert!(
            err.starts_with(&format!("postern: {cmd}: permission denied: ")),
            "{cmd}: {err}"
        );
    }
    assert!(alive(p.pid()), "the master still runs");
    send_ok(&p, "u@one.test");
}

#[test]
fn status_reload_and_stop_reach_the_master_when_its_file_no_longer_parses() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-broken");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]));
    let mut p = Postern::start(dir, &conf);
    // Not TOML any more: an unclosed table header above [process].
    std::fs::write(p.config_path(), conf.replace("[proxy]", "[proxy")).expect("break");
    let warned = |out: &std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let first = err.lines().next().unwrap_or("").to_string();
        assert!(
            first.starts_with(&format!(
                "warning: {}: does not load, the running master keeps its configuration (line 1",
                p.config_path().display()
            )) && first.ends_with("is from the file"),
            "{err}"
        );
        err
    };

    let status = p.cli(&["status"]);
    warned(&status);
    assert!(status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).starts_with(&format!("master pid {}", p.pid())),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let reload = p.cli(&["reload"]);
    let err = warned(&reload);
    assert_eq!(reload.status.code(), Some(1), "{err}");
    assert!(
        err.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("postern: reload failed: ")),
        "the master refused it and said why:\n{err}"
    );
    send_ok(&p, "still@one.test");

    let stop = p.cli(&["stop"]);
    warned(&stop);
    assert!(stop.status.success());
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout).trim(),
        "postern: stopped"
    );
    let mut child = p.child.take().expect("running");
    let exit = wait_for("the master to exit", || child.try_wait().expect("wait"));
    assert!(exit.success());
}

#[test]
fn wide_relay_and_admin_networks_warn_in_check_at_start_and_at_reload() {
    let one = RecordingBackend::start();
    let dir = TempDir::new("ctl-wide");
    let conf = config_text(
        &dir,
        &server_block("One", one.port(), &["one.test"]).replace(
            "domains = ",
            "relay = [\"10.0.0.0/8\", \"*.*.*.*\"]\ndomains = ",
        ),
    )
    .replace(
        "hostname = ",
        "admin_networks = [\"127.0.0.0/8\", \"::/0\"]\nhostname = ",
    )
    .replace("[process]\n", "[process]\nuser = \"nobody\"\n");
    let path = dir.path("wide.toml");
    std::fs::write(&path, &conf).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", path.to_str().expect("utf8"), "check"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "warnings do not fail a check");
    let relay = "server[1].relay[1]: \"*.*.*.*\" covers every IPv4 address: every client in it may relay mail to any domain through One (an open relay)";
    let admin = "proxy.admin_networks[1]: \"::/0\" covers every IPv6 address: every client in it may send RELOAD and update mails";
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("warning: {admin}\nwarning: {relay}\n")
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("configuration is valid\n"));

    let p = Postern::start(dir, &conf);
    p.wait_log(relay);
    p.wait_log(admin);
    let reload = p.cli(&["reload"]);
    assert!(reload.status.success());
    assert_eq!(
        String::from_utf8_lossy(&reload.stderr),
        format!("warning: {admin}\nwarning: {relay}\n")
    );
    p.wait_log_count(relay, 2);
    p.wait_log_count(admin, 2);
}

#[test]
fn start_with_a_worker_program_missing_stops_before_binding_and_names_where_it_looked() {
    let dir = TempDir::new("ctl-nodaemon");
    let port = closed_port();
    let daemons = dir.path("empty");
    std::fs::create_dir_all(&daemons).expect("dir");
    let conf = config_text(&dir, &server_block("One", 2525, &["one.test"]))
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:{port}\"]"),
        )
        .replace(
            "[process]\n",
            &format!("[process]\ndaemon_dir = \"{}\"\n", daemons.display()),
        );
    let path = dir.path("postern.toml");
    std::fs::write(&path, &conf).expect("write");
    // Without the check, the master would serve on and on, restarting the
    // missing workers: a deadline, and the guard stops it.
    let mut master = ChildGuard(
        std::process::Command::new(bin("postern"))
            .args(["-c", path.to_str().expect("utf8"), "start"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run"),
    );
    let status = wait_for("start to refuse", || master.0.try_wait().expect("wait"));
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut master.0.stderr.take().expect("piped"), &mut stderr)
        .expect("read stderr");
    let expected: String = ["postern-router", "postern-updater", "postern-smtpd"]
        .iter()
        .map(|w| {
            format!(
                "{}: process.daemon_dir: worker program {}/{w} is missing (process.daemon_dir is {})\n",
                path.display(),
                daemons.display(),
                daemons.display()
            )
        })
        .collect();
    assert_eq!(stderr, expected);
    assert!(!dir.path("run").exists(), "run_dir was created");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the port was bound"
    );
}
