//! Logs (SPEC §9): every line about a session carries its id in every
//! process; `postern log session ID` shows a session's whole path and
//! `postern log search PATTERN` finds sessions by client address, sender or
//! recipient, from the log file (`log.file`, rotated daily) and from
//! journald; AUTH data never reaches the log.
//!
//! The journald test runs a real, private `systemd-journald`: `unshare
//! --mount` gives it a tmpfs of its own on `/run` (so its sockets and its
//! volatile journal in `/run/log/journal` are invisible to the machine),
//! postern and `journalctl` join that mount namespace with `nsenter`, and the
//! network stays shared, so clients reach postern on loopback. It needs root,
//! as CI has.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use postern_tests::*;

/// `config_text` plus a `[log]` section writing `dir/proxy.log`.
fn with_log_file(dir: &TempDir, servers: &str, log_extra: &str) -> String {
    format!(
        "{}\n[log]\nfile = \"{}\"\n{log_extra}",
        config_text(dir, servers),
        dir.path("proxy.log").display()
    )
}

/// swaks from `ip`, sender `from`, recipient `to`.
fn send(p: &Postern, ip: &str, from: &str, to: &str) -> (String, bool) {
    swaks(
        p.addr,
        &["--local-interface", ip, "--from", from, "--to", to],
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The `sid=` of the first line of `text` containing `needle`.
fn sid_of(text: &str, needle: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"));
    line.split(" sid=")
        .nth(1)
        .and_then(|rest| rest.split([' ', ':']).next())
        .unwrap_or_else(|| panic!("no sid in {line}"))
        .to_string()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `lines` hold, in this order, a line containing all of each
/// group of needles.
fn assert_in_order(lines: &[&str], steps: &[&[&str]]) {
    let mut at = 0;
    for step in steps {
        match lines[at..]
            .iter()
            .position(|l| step.iter().all(|n| l.contains(n)))
        {
            Some(i) => at += i + 1,
            None => panic!(
                "no line with {step:?} after line {at} in:\n{}",
                lines.join("\n")
            ),
        }
    }
}

#[test]
fn a_sessions_path_and_searches_come_from_the_log_file() {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let dir = TempDir::new("logs-file");
    let servers = server_block("One", one.port(), &["one.test"])
        + &server_block("Two", two.port(), &["two.test"]);
    let conf = with_log_file(&dir, &servers, "");
    let p = Postern::start(dir, &conf);
    let file = p.dir.path("proxy.log");

    assert!(send(&p, "127.0.0.2", "alice@example.org", "u@one.test").1);
    assert!(send(&p, "127.0.0.3", "bob@example.net", "v@two.test").1);
    let (o, ok) = send(&p, "127.0.0.4", "carol@example.com", "x@nowhere.test");
    assert!(!ok && o.contains("554 5.7.1"), "{o}");
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        wait_for(&format!("the disconnect of {ip} in the file"), || {
            read(&file)
                .contains(&format!("disconnect from {ip}"))
                .then_some(())
        });
    }
    let text = read(&file);
    let sid1 = sid_of(&text, "accepted connection from 127.0.0.2");
    let sid2 = sid_of(&text, "accepted connection from 127.0.0.3");
    let sid3 = sid_of(&text, "accepted connection from 127.0.0.4");
    assert!(sid1 != sid2 && sid2 != sid3 && sid1 != sid3);

    // One session's whole path, across smtpd and the router, in order.
    let o = p.cli(&["log", "session", &sid1]);
    assert!(o.status.success(), "{}", err(&o));
    let shown = out(&o);
    let lines: Vec<&str> = shown.lines().collect();
    assert_in_order(
        &lines,
        &[
            &["postern-smtpd[", "accepted connection from 127.0.0.2"],
            &["postern-router[", "cause=domain", "route one.test -> One"],
            &["smtp connection forwarded from 127.0.0.2 to One using domain"],
            &[
                "sender=alice@example.org",
                "recipient=u@one.test",
                "message from <alice@example.org>",
                "forwarded to One: 250 2.0.0 Ok: queued as 1",
            ],
            &["disconnect from 127.0.0.2"],
        ],
    );
    // Exactly the file's lines of that session, as they are, in file order.
    let expected: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("sid={sid1} ")) || l.contains(&format!("sid={sid1}:")))
        .collect();
    assert_eq!(lines, expected);

    // Search: one line per session, by recipient, client address, sender.
    let o = p.cli(&["log", "search", "v@two.test"]);
    assert!(o.status.success(), "{}", err(&o));
    let found = out(&o);
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.starts_with(&format!("{sid2} ")), "{found}");
    for field in [
        "client=127.0.0.3",
        "sender=bob@example.net",
        "recipient=v@two.test",
        "server=Two",
        "reply=\"250 2.0.0 Ok: queued as 1\"",
    ] {
        assert!(found.contains(field), "{field} missing: {found}");
    }
    let o = p.cli(&["log", "search", "127.0.0.4"]);
    let found = out(&o);
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.starts_with(&format!("{sid3} ")), "{found}");
    assert!(
        found.contains("recipient=x@nowhere.test")
            && found.contains("reply=\"554 5.7.1 <x@nowhere.test>: Relaying denied\""),
        "{found}"
    );
    let o = p.cli(&["log", "search", "ONE.TEST"]);
    let found = out(&o);
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.starts_with(&format!("{sid1} ")), "{found}");
    // Every sender is at example.*, the oldest session first.
    let o = p.cli(&["log", "search", "@Example."]);
    let found = out(&o);
    let sids: Vec<&str> = found.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(sids, [sid1.as_str(), sid2.as_str(), sid3.as_str()]);

    // Nothing found: exit status 1 and a line on stderr, after the one that
    // says where the search looked.
    let o = p.cli(&["log", "search", "127.0.0.99"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).is_empty() && err(&o).contains("no session matches"),
        "{}",
        err(&o)
    );
    assert_eq!(
        err(&o).lines().next(),
        Some(format!("postern: searched {}", file.display()).as_str()),
        "{}",
        err(&o)
    );
    let o = p.cli(&["log", "session", "000000000000"]);
    assert_eq!(o.status.code(), Some(1));
    // Usage mistakes: exit status 2; --help works.
    assert_eq!(p.cli(&["log", "search"]).status.code(), Some(2));
    assert_eq!(p.cli(&["log", "grep", "x"]).status.code(), Some(2));
    let o = p.cli(&["log", "--help"]);
    assert!(
        o.status.success() && out(&o).contains("log session ID"),
        "{}",
        out(&o)
    );
}

#[test]
fn auth_data_never_reaches_the_log() {
    let b = RecordingBackend::start();
    let dir = TempDir::new("logs-auth");
    let servers = server_block("Customer B", b.port(), &["b.test"]).replace(
        "domains = ",
        "user = \"bob\"\npassword = \"builder\"\ndomains = ",
    );
    // Debug: even the most talkative level must not show a credential.
    let conf = with_log_file(&dir, &servers, "level = \"debug\"\n").replace(
        "hostname = ",
        "admin_user = \"admin\"\nadmin_password = \"s3cret\"\nhostname = ",
    );
    let p = Postern::start(dir, &conf);
    let file = p.dir.path("proxy.log");
    for mech in ["PLAIN", "LOGIN"] {
        let (o, ok) = swaks(
            p.addr,
            &[
                "--local-interface",
                "127.0.0.3",
                "--from",
                "me@example.org",
                "--to",
                "far@elsewhere.test",
                "--auth",
                mech,
                "--auth-user",
                "bob",
                "--auth-password",
                "builder",
            ],
        );
        assert!(ok && o.contains("235 2.7.0"), "{mech}: {o}");
    }
    let (o, ok) = swaks(
        p.addr,
        &[
            "--local-interface",
            "127.0.0.3",
            "--to",
            "far@elsewhere.test",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "nope",
        ],
    );
    assert!(!ok && o.contains("535 5.7.8"), "{o}");
    // The admin password travels in the RELOAD command itself.
    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO admin.test");
    let r = raw.cmd("RELOAD admin s3cret");
    assert!(r.starts_with("250 "), "{r}");
    raw.cmd("QUIT");
    p.wait_log("configuration reloaded");
    wait_for("four sessions in the file", || {
        (read(&file).matches("disconnect from 127.0.0.").count() >= 4).then_some(())
    });

    let text = read(&file);
    for secret in [
        "builder",
        "nope",
        "s3cret",
        "AGJvYgBidWlsZGVy", // AUTH PLAIN \0bob\0builder
        "YnVpbGRlcg==",     // AUTH LOGIN builder
        "Ym9i",             // AUTH LOGIN bob
        "AGJvYgBub3Bl",     // AUTH PLAIN \0bob\0nope
        "bm9wZQ==",         // nope
    ] {
        assert!(!text.contains(secret), "{secret} reached the log file");
        assert!(!p.log().contains(secret), "{secret} reached stderr");
    }

    // The authenticated sessions are found, and their route is auth.
    let o = p.cli(&["log", "search", "127.0.0.3"]);
    assert_eq!(out(&o).lines().count(), 3, "{}", out(&o));
    let sid = sid_of(&text, "authenticated: routed to Customer B");
    let o = p.cli(&["log", "session", &sid]);
    let shown = out(&o);
    let lines: Vec<&str> = shown.lines().collect();
    assert_in_order(
        &lines,
        &[
            &["accepted connection from 127.0.0.3"],
            &["postern-router[", "route auth -> Customer B"],
            &["authenticated: routed to Customer B"],
            &["smtp connection forwarded from 127.0.0.3 to Customer B using auth"],
            &["disconnect from 127.0.0.3"],
        ],
    );
    // The master's line about the RELOAD carries the session's id too.
    let sid = sid_of(&text, "RELOAD accepted from 127.0.0.1");
    let o = p.cli(&["log", "session", &sid]);
    let shown = out(&o);
    let lines: Vec<&str> = shown.lines().collect();
    assert_in_order(
        &lines,
        &[
            &["postern-smtpd[", "RELOAD accepted from 127.0.0.1"],
            &[
                "postern[",
                "reload requested by postern-smtpd (SMTP RELOAD)",
            ],
            &["postern-smtpd[", "disconnect from 127.0.0.1"],
        ],
    );
}

/// `date` for `secs` since the epoch, in `format` (local time unless `-u`).
fn date(secs: u64, args: &[&str]) -> String {
    let o = Command::new("date")
        .args(args)
        .arg("-d")
        .arg(format!("@{secs}"))
        .output()
        .expect("date");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn an_old_file_is_rotated_and_still_searched() {
    let root = nix::unistd::geteuid().is_root();
    let one = RecordingBackend::start();
    let dir = TempDir::new("logs-rotate");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let then = now - 3 * 86_400;
    let stamp = date(then, &["-u", "+%Y-%m-%dT%H:%M:%S.000Z"]);
    let old_sid = "0123456789AB";
    std::fs::write(
        dir.path("proxy.log"),
        format!(
            "{stamp} postern-smtpd[4242]: INFO sid={old_sid} client_ip=127.0.0.9: accepted connection from 127.0.0.9\n\
             {stamp} postern-smtpd[4242]: INFO sid={old_sid} client_ip=127.0.0.9: sender=old@example.org recipient=old@one.test server=One reply=\"250 2.0.0 Ok\" message from <old@example.org> (10 bytes) forwarded to One: 250 2.0.0 Ok\n"
        ),
    )
    .expect("old log");
    let mut conf = with_log_file(&dir, &server_block("One", one.port(), &["one.test"]), "");
    if root {
        // Workers drop to nobody: the new file must stay theirs to reopen.
        conf = conf.replace("[process]\n", "[process]\nuser = \"nobody\"\n");
    }
    let p = Postern::start(dir, &conf);
    let file = p.dir.path("proxy.log");
    // The master's first line rotated the old file, named by the local date
    // of its first line (give or take the minute a line may take to be
    // written, which postern adds).
    let rotated = p
        .dir
        .path(&format!("proxy.log.{}", date(then + 60, &["+%Y-%m-%d"])));
    let old = read(&rotated);
    assert!(
        old.contains(&format!("sid={old_sid}")),
        "{rotated:?}: {old}"
    );
    assert!(!old.contains("listening on"), "{old}");
    assert!(read(&file).contains("listening on"));
    assert!(!read(&file).contains(old_sid));

    assert!(send(&p, "127.0.0.5", "new@example.org", "u@one.test").1);
    wait_for("the new session in the file", || {
        read(&file)
            .contains("disconnect from 127.0.0.5")
            .then_some(())
    });
    let new_sid = sid_of(&read(&file), "accepted connection from 127.0.0.5");
    if root {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&file).expect("stat");
        let nobody = nix::unistd::User::from_name("nobody")
            .expect("lookup")
            .expect("user nobody exists");
        assert_eq!(
            (m.gid(), m.mode() & 0o777),
            (nobody.gid.as_raw(), 0o660),
            "the workers' group may write the log file"
        );
        assert!(read(&file).contains("postern-smtpd["));
    }

    // Without --since only the current file is searched; with it, the rotated one too.
    let o = p.cli(&["log", "search", "127.0.0.9"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let o = p.cli(&["log", "search", "127.0.0.9", "--since", "4d"]);
    assert!(
        out(&o).starts_with(&format!("{old_sid} ")),
        "{}{}",
        out(&o),
        err(&o)
    );
    assert_eq!(
        err(&o).trim(),
        format!("postern: searched {} and 1 rotated file", file.display()),
    );
    let day = date(then - 86_400, &["+%Y-%m-%d"]);
    let o = p.cli(&["log", "search", "old@one", "--since", &day]);
    assert!(
        out(&o).starts_with(&format!("{old_sid} ")),
        "{}{}",
        out(&o),
        err(&o)
    );
    let o = p.cli(&["log", "search", "example.org", "--since", "4d"]);
    let sids: Vec<String> = out(&o)
        .lines()
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    assert_eq!(sids, [old_sid.to_string(), new_sid.clone()]);
    // A session is looked for in the rotated files too.
    let o = p.cli(&["log", "session", old_sid]);
    assert_eq!(out(&o).lines().count(), 2, "{}", out(&o));
    let o = p.cli(&["log", "session", &new_sid]);
    assert!(out(&o).contains("disconnect from 127.0.0.5"), "{}", out(&o));
}

#[test]
fn check_takes_the_log_keys_and_journald_yes_needs_a_journal() {
    let dir = TempDir::new("logs-check");
    let conf = dir.path("postern.toml");
    let check = |text: &str| {
        std::fs::write(&conf, text).expect("write");
        Command::new(bin("postern"))
            .arg("-c")
            .arg(&conf)
            .arg("check")
            .output()
            .expect("postern check")
    };
    let base = config_text(&dir, &server_block("One", 2525, &["one.test"]));
    let o = check(&format!("{base}\n[log]\nfile = \"relative.log\"\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("log.file"), "{}", err(&o));
    let o = check(&format!(
        "{base}\n[log]\njournald = \"yes\"\nfile = \"{}\"\n",
        dir.path("proxy.log").display()
    ));
    // check runs start's checks: "yes" needs the journal's socket here.
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        assert!(o.status.success(), "{}", err(&o));
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(
            err(&o),
            format!(
                "{}: log.journald: cannot write to the journal (/run/systemd/journal/socket): no such socket (\"auto\" logs to stderr then)\n",
                conf.display()
            )
        );
    }

    // journald = "yes" without a journal socket: postern refuses to start.
    // A private /run guarantees there is none.
    assert!(root(), "a private /run needs root (CI runs as root)");
    std::fs::write(&conf, format!("{base}\n[log]\njournald = \"yes\"\n")).expect("write");
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" "$@""#)
        .arg(bin("postern"))
        .arg("-c")
        .arg(&conf)
        .arg("start")
        .stdin(Stdio::null())
        .output()
        .expect("unshare");
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("log.journald: cannot write to the journal"),
        "{}",
        err(&o)
    );
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A systemd-journald of our own, in a mount namespace of its own.
struct PrivateJournal {
    journald: ChildGuard,
}

impl PrivateJournal {
    fn start() -> PrivateJournal {
        assert!(root(), "a private journald needs root (CI runs as root)");
        let journald = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -p /run/systemd/journal && \
                 { [ ! -d /var/log/journal ] || mount -t tmpfs tmpfs /var/log/journal; } && \
                 exec /lib/systemd/systemd-journald",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("unshare and systemd-journald (tests/run installs systemd)");
        let j = PrivateJournal {
            journald: ChildGuard(journald),
        };
        let socket = format!("/proc/{}/root/run/systemd/journal/socket", j.pid());
        wait_for("the private journald's socket", || {
            Path::new(&socket).exists().then_some(())
        });
        j
    }

    fn pid(&self) -> u32 {
        self.journald.0.id()
    }

    /// A command run in the journal's mount namespace.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid().to_string(), "-m", "--"])
            .arg(program);
        c
    }

    /// `journalctl -o json MATCHES…`: one JSON object per line.
    fn json(&self, matches: &[&str]) -> Vec<String> {
        let o = self
            .command(Path::new("journalctl"))
            .args(["-o", "json", "--no-pager", "-q"])
            .args(matches)
            .stdin(Stdio::null())
            .output()
            .expect("journalctl");
        out(&o).lines().map(str::to_string).collect()
    }
}

/// `"KEY":"value"` as journalctl -o json writes a plain string field.
fn has(entry: &str, key: &str, value: &str) -> bool {
    entry.contains(&format!("\"{key}\":\"{value}\""))
}

#[test]
fn a_session_in_a_private_journal() {
    let journal = PrivateJournal::start();
    let one = RecordingBackend::start();
    let dir = TempDir::new("logs-journald");
    let port = closed_port();
    let conf = format!(
        "{}\n[log]\njournald = \"yes\"\n",
        config_text(&dir, &server_block("One", one.port(), &["one.test"]))
    )
    .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let conf_path = dir.path("postern.toml");
    std::fs::write(&conf_path, conf).expect("write config");
    let stderr = std::fs::File::create(dir.path("stderr")).expect("stderr file");
    let _postern = ChildGuard(
        journal
            .command(&bin("postern"))
            .arg("-c")
            .arg(&conf_path)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone"))
            .stderr(stderr)
            .spawn()
            .expect("nsenter postern"),
    );
    wait_for("postern ready, in the journal", || {
        journal
            .json(&["SYSLOG_IDENTIFIER=postern"])
            .iter()
            .any(|e| e.contains("ready: router and"))
            .then_some(())
    });
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let (o, ok) = swaks(
        addr,
        &[
            "--local-interface",
            "127.0.0.2",
            "--from",
            "alice@example.org",
            "--to",
            "u@one.test",
        ],
    );
    assert!(ok, "{o}");
    let smtpd = wait_for("the session's end in the journal", || {
        let e = journal.json(&["SYSLOG_IDENTIFIER=postern-smtpd"]);
        e.iter()
            .any(|l| l.contains("disconnect from 127.0.0.2"))
            .then_some(e)
    });
    let accepted = smtpd
        .iter()
        .find(|e| has(e, "MESSAGE", "accepted connection from 127.0.0.2"))
        .expect("the accept line");
    assert!(has(accepted, "CLIENT_IP", "127.0.0.2"), "{accepted}");
    let sid = accepted
        .split("\"SID\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("SID field")
        .to_string();

    // journalctl's own field matches find the session in every process.
    let entries = journal.json(&[&format!("SID={sid}")]);
    let find = |what: &str, pairs: &[(&str, &str)]| {
        entries
            .iter()
            .find(|e| pairs.iter().all(|(k, v)| has(e, k, v)))
            .unwrap_or_else(|| panic!("no {what} entry in:\n{}", entries.join("\n")))
            .clone()
    };
    find(
        "router",
        &[
            ("SYSLOG_IDENTIFIER", "postern-router"),
            ("CAUSE", "domain"),
            ("SERVER", "One"),
        ],
    );
    find(
        "forward",
        &[
            ("SYSLOG_IDENTIFIER", "postern-smtpd"),
            ("CAUSE", "domain"),
            (
                "MESSAGE",
                "smtp connection forwarded from 127.0.0.2 to One using domain",
            ),
        ],
    );
    let message = find(
        "message",
        &[
            ("SYSLOG_IDENTIFIER", "postern-smtpd"),
            ("CLIENT_IP", "127.0.0.2"),
            ("SENDER", "alice@example.org"),
            ("RECIPIENT", "u@one.test"),
            ("SERVER", "One"),
            ("REPLY", "250 2.0.0 Ok: queued as 1"),
        ],
    );
    // The same entry (its cursor; field order varies) by a field match.
    let cursor = |e: &str| {
        e.split("\"__CURSOR\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let by_sender = journal.json(&["SENDER=alice@example.org"]);
    assert!(
        by_sender.iter().any(|e| cursor(e) == cursor(&message)),
        "a structured field is a journal match: {by_sender:?}"
    );

    // postern log reads the journal (log.journald = "yes").
    let o = journal
        .command(&bin("postern"))
        .arg("-c")
        .arg(&conf_path)
        .args(["log", "session", &sid])
        .output()
        .expect("postern log session");
    assert!(o.status.success(), "{}", err(&o));
    let shown = out(&o);
    let lines: Vec<&str> = shown.lines().collect();
    assert!(
        lines.iter().all(|l| l.contains(&format!("sid={sid} "))),
        "{shown}"
    );
    assert_in_order(
        &lines,
        &[
            &["postern-smtpd[", "accepted connection from 127.0.0.2"],
            &["postern-router[", "route one.test -> One"],
            &["smtp connection forwarded from 127.0.0.2 to One using domain"],
            &[
                "sender=alice@example.org",
                "forwarded to One: 250 2.0.0 Ok: queued as 1",
            ],
            &["disconnect from 127.0.0.2"],
        ],
    );
    let o = journal
        .command(&bin("postern"))
        .arg("-c")
        .arg(&conf_path)
        .args(["log", "search", "U@ONE.TEST"])
        .output()
        .expect("postern log search");
    let found = out(&o);
    assert_eq!(found.lines().count(), 1, "{found}{}", err(&o));
    assert!(
        found.starts_with(&format!("{sid} ")) && found.contains("client=127.0.0.2"),
        "{found}"
    );
    assert_eq!(err(&o).trim(), "postern: searched the journal");
    // With journald, nothing goes to stderr: systemd would store it twice.
    assert_eq!(read(&dir.path("stderr")), "");
}

/// `journald = "auto"` (the default): the journal when started by systemd
/// (`INVOCATION_ID`, as systemd sets it, and the journal's socket exists),
/// stderr otherwise, each line in one place only.
#[test]
fn journald_auto_logs_to_the_journal_only_under_systemd() {
    let journal = PrivateJournal::start();
    let one = RecordingBackend::start();
    let start = |tag: &str, under_systemd: bool| {
        let dir = TempDir::new(tag);
        let port = closed_port();
        let conf = format!(
            "{}\n[log]\njournald = \"auto\"\n",
            config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        )
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
        let conf_path = dir.path("postern.toml");
        std::fs::write(&conf_path, conf).expect("write config");
        let stderr = std::fs::File::create(dir.path("stderr")).expect("stderr file");
        let mut cmd = journal.command(&bin("postern"));
        cmd.arg("-c")
            .arg(&conf_path)
            .arg("start")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone"))
            .stderr(stderr);
        if under_systemd {
            cmd.env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
        }
        let child = ChildGuard(cmd.spawn().expect("nsenter postern"));
        (child, dir, format!("listening on 127.0.0.1:{port}"))
    };
    let in_journal = |needle: &str| {
        journal
            .json(&["SYSLOG_IDENTIFIER=postern"])
            .iter()
            .any(|e| e.contains(needle))
    };

    let (_a, a_dir, a_line) = start("logs-auto-systemd", true);
    wait_for("postern under systemd, in the journal", || {
        in_journal("ready: router and").then_some(())
    });
    assert!(in_journal(&a_line), "{a_line}");
    assert_eq!(read(&a_dir.path("stderr")), "");

    let (_b, b_dir, b_line) = start("logs-auto-shell", false);
    wait_for("postern from a shell, on stderr", || {
        read(&b_dir.path("stderr"))
            .contains("ready: router and")
            .then_some(())
    });
    assert!(read(&b_dir.path("stderr")).contains(&b_line));
    assert!(!in_journal(&b_line), "{b_line} reached the journal");
}
