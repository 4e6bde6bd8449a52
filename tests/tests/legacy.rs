//! The legacy XML configuration (seed 000 §IV, §VIII.2): `postern convert`, and
//! a master started, reloaded and routing with `-c smtp-proxy.xml`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::sys::signal::Signal;
use postern_tests::*;

/// The embedded-mode file of seed 000 §VIII.2, as printed there.
const FRAGMENT: &str = "<servers>
  <name>My SpamWars</name>
  <host>localhost</host>
  <port>1025</port>
  <domain>yourdomain.net</domain>
</servers>
";

/// `conf/smtp-proxy.xml`, the shipped legacy example.
fn shipped_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/smtp-proxy.xml")
}

/// Runs `postern ARGS…` with no `-c` and no usable `$POSTERN_CONFIG`.
fn postern(args: &[&str]) -> Output {
    Command::new(bin("postern"))
        .args(args)
        .env("POSTERN_CONFIG", "/nonexistent/postern.toml")
        .stdin(Stdio::null())
        .output()
        .expect("run postern")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `postern convert FILE` into `dir/NAME`; panics unless it succeeds silently.
fn convert_to(file: &Path, dir: &TempDir, name: &str) -> (PathBuf, String) {
    let out = postern(&["convert", file.to_str().expect("utf8 path")]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "convert {}: {}",
        file.display(),
        text(&out.stderr)
    );
    let toml = text(&out.stdout);
    let path = dir.path(name);
    std::fs::write(&path, &toml).expect("write converted file");
    (path, toml)
}

/// `postern -c FILE COMMAND`, with the file's name taken out of the output.
fn with_config(file: &Path, command: &str) -> (Option<i32>, String, String) {
    let name = file.to_str().expect("utf8 path");
    let out = postern(&["-c", name, command]);
    (
        out.status.code(),
        text(&out.stdout).replace(name, "FILE"),
        text(&out.stderr).replace(name, "FILE"),
    )
}

#[test]
fn convert_prints_the_shipped_example_as_equivalent_toml() {
    let dir = TempDir::new("legacy-convert");
    let xml = shipped_example();
    let (toml_path, toml) = convert_to(&xml, &dir, "converted.toml");
    assert_eq!(toml.matches("[[server]]").count(), 2, "{toml}");
    for needle in [
        "listen = [\"0.0.0.0:25\", \"[::]:25\"]",
        "admin_user = \"admin\"",
        "admin_password = \"secret\"",
        "level = \"info\"",
        "name = \"Customer One\"",
        "port = 1025",
        "timeout = \"10s\"",
        "relay = [\"193.56.147.87\"]",
        "user = \"spamwars\"",
        "domains = [\"mydomain.com\", \"mydomain.org\"]",
        "name = \"Customer Two\"",
        "port = 2025",
        "domains = [\"yourdomain.net\"]",
        "client_identity = \"ipaddr\"",
    ] {
        assert!(toml.contains(needle), "missing {needle:?} in:\n{toml}");
    }
    assert!(
        toml.find("Customer One") < toml.find("Customer Two"),
        "file order kept"
    );
    assert!(
        !toml.lines().any(|l| l.starts_with("hostname")),
        "hostname left out:\n{toml}"
    );

    // The XML and its conversion are the same configuration to `check`,
    // whatever it thinks of the keys that are not supported yet, but for
    // the workers' user, which the conversion adds.
    let plain = without_process_user(&toml_path, &dir);
    assert_eq!(with_config(&xml, "check"), with_config(&plain, "check"));
}

/// The converted file at `path` without the `process.user` that `convert`
/// adds (the legacy proxy had no workers to drop); its new path.
fn without_process_user(path: &Path, dir: &TempDir) -> PathBuf {
    let toml = std::fs::read_to_string(path).expect("read converted file");
    let (head, tail) = toml.split_once("[process]\n").expect("a [process] table");
    let tail = tail.replacen("user = \"postern\"\n", "", 1);
    let plain = dir.path("without-user.toml");
    std::fs::write(&plain, format!("{head}[process]\n{tail}")).expect("write");
    plain
}

#[test]
fn convert_adds_process_user_with_a_comment_so_that_workers_do_not_run_as_root() {
    let dir = TempDir::new("legacy-user");
    let (_, toml) = convert_to(&shipped_example(), &dir, "converted.toml");
    let process = toml
        .split_once("[process]\n")
        .map(|(_, t)| t)
        .expect("a [process] table");
    let lines: Vec<&str> = process
        .lines()
        .take_while(|l| !l.starts_with('['))
        .collect();
    let at = lines
        .iter()
        .position(|l| *l == "user = \"postern\"")
        .unwrap_or_else(|| panic!("no process.user in:\n{toml}"));
    assert!(
        at > 0 && lines[at - 1].starts_with('#') && lines[..at].join(" ").contains("root"),
        "process.user comes with a comment saying why:\n{toml}"
    );
}

#[test]
fn a_converted_bare_fragment_checks_and_loads_as_the_xml_does() {
    let dir = TempDir::new("legacy-fragment");
    let xml = dir.path("smtp-proxy.xml");
    std::fs::write(&xml, FRAGMENT).expect("write fragment");
    let (toml_path, toml) = convert_to(&xml, &dir, "postern.toml");
    assert!(toml.contains("name = \"My SpamWars\""), "{toml}");
    assert!(
        toml.contains("listen = [\"0.0.0.0:25\", \"[::]:25\"]"),
        "{toml}"
    );
    assert!(
        toml.contains("timeout = \"20s\""),
        "default timeout: {toml}"
    );

    // Without the process.user that the conversion adds (a user this
    // machine may not have), the two are the same configuration.
    let toml_path = without_process_user(&toml_path, &dir);
    let (code, stdout, stderr) = with_config(&toml_path, "check");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "FILE: configuration is valid");
    let (code, _, stderr) = with_config(&xml, "check");
    assert_eq!(code, Some(0), "the XML itself checks: {stderr}");
    // The effective configurations are identical.
    let from_xml = with_config(&xml, "config");
    assert_eq!(from_xml.0, Some(0), "{}", from_xml.2);
    assert_eq!(from_xml, with_config(&toml_path, "config"));
}

#[test]
fn convert_and_check_report_a_bad_file_in_one_line_with_its_line() {
    let dir = TempDir::new("legacy-errors");
    let bad = dir.path("bad.xml");
    std::fs::write(
        &bad,
        "<spamwars-servers>\n  <port>25</port>\n  <colour>blue</colour>\n</spamwars-servers>\n",
    )
    .expect("write");
    let name = bad.to_str().expect("utf8");
    let out = postern(&["convert", name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing printed on stdout");
    let err = text(&out.stderr);
    assert_eq!(
        err,
        format!("{name}: line 3, column 3: unknown element <colour> in <spamwars-servers>, expected one of: port, debug, user, password, update-email-address, servers, server\n")
    );
    let (code, _, check_err) = with_config(&bad, "check");
    assert_eq!(code, Some(1));
    assert_eq!(check_err, err.replace(name, "FILE"));

    std::fs::write(&bad, "<servers>\n  <host>h</host>\n  <port>25</prot>\n").expect("write");
    let out = postern(&["convert", name]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("{name}: line 3, column ")) && err.contains("malformed XML"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let out = postern(&["convert", dir.path("missing.xml").to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read"));
    assert_eq!(text(&out.stderr).lines().count(), 1);

    let out = postern(&["convert"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    assert_eq!(text(&out.stderr).lines().count(), 1);
    let out = postern(&["convert", "--help"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("usage: postern convert FILE.xml"));
}

/// A legacy file as the old proxy had it: ISO-8859-1 (a server named
/// "Société One"), the listening port at the root, debug on.
fn legacy_file(port: u16, servers: &[(&str, u16, &str)]) -> Vec<u8> {
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" standalone=\"yes\" ?>\n\
         <spamwars-servers>\n  <port>{port}</port>\n  <debug>true</debug>\n"
    );
    for (name, backend, domain) in servers {
        xml += &format!(
            "  <servers>\n    <name>{name}</name>\n    <host>127.0.0.1</host>\n    \
             <port>{backend}</port>\n    <timeout>5000</timeout>\n    \
             <domain>{domain}</domain>\n  </servers>\n"
        );
    }
    xml += "</spamwars-servers>\n";
    // Latin-1: every character of this text is below U+0100.
    xml.chars()
        .map(|c| u8::try_from(c).expect("Latin-1"))
        .collect()
}

/// Starts `postern -c dir/smtp-proxy.xml start`.
///
/// The legacy format cannot set `process.run_dir`, so the master uses
/// `/run/postern`. To leave the machine's `/run` alone (and never meet a real
/// postern there), it runs in a mount namespace of its own with a tmpfs on
/// `/run`; the network is shared, so clients reach it on loopback. The root
/// `<port>` means every address: the master listens on `0.0.0.0:port` and
/// `[::]:port`, and the test connects to `127.0.0.1:port`.
fn start_legacy(dir: TempDir, port: u16, xml: &[u8]) -> Postern {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mounting a private /run needs root (CI runs as root)"
    );
    let conf = dir.path("smtp-proxy.xml");
    std::fs::write(&conf, xml).expect("write config");
    let log = std::fs::File::create(dir.path("postern.log")).expect("log file");
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o mode=0755 tmpfs /run && exec "$0" "$@""#)
        .arg(bin("postern"))
        .arg("-c")
        .arg(&conf)
        .arg("start")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("unshare (util-linux) starts postern");
    let p = Postern {
        dir,
        child: Some(child),
        addr: ([127, 0, 0, 1], port).into(),
    };
    p.wait_log(&format!("listening on 0.0.0.0:{port}"));
    p.wait_log(&format!("listening on [::]:{port}"));
    p.wait_log("ready: router and");
    p
}

#[test]
fn a_legacy_xml_configuration_routes_mail_and_reloads() {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let port = closed_port();
    let dir = TempDir::new("legacy-route");
    let first = [("Soci\u{e9}t\u{e9} One", one.port(), "one.test")];
    let mut p = start_legacy(dir, port, &legacy_file(port, &first));
    p.wait_log("ready to serve server 1/1 'Société One'");

    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "mail to one.test failed:\n{out}\n{}", p.log());
    let m = &one.wait_messages(1)[0];
    let ipaddr = m
        .position("IPADDR FROM 127.0.0.1")
        .expect("IPADDR FROM sent");
    let mail = m
        .position("MAIL FROM:<a@example.org>")
        .expect("MAIL FROM replayed");
    assert!(ipaddr < mail, "{:?}", m.commands);
    assert!(m.position("RCPT TO:<u@one.test>").is_some());
    // <debug>true</debug> is log level debug: the router's route lines show.
    p.wait_log("route one.test -> Société One");

    // SIGHUP re-reads the XML file.
    let second = [first[0], ("Two", two.port(), "two.test")];
    std::fs::write(p.dir.path("smtp-proxy.xml"), legacy_file(port, &second)).expect("rewrite");
    p.signal(Signal::SIGHUP);
    p.wait_log("configuration reloaded");
    p.wait_log("ready to serve server 2/2 'Two'");
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "v@two.test"]);
    assert!(ok, "mail to two.test failed:\n{out}");
    assert!(two.wait_messages(1)[0]
        .position("IPADDR FROM 127.0.0.1")
        .is_some());

    assert!(p.stop().success(), "{}", p.log());
}

/// The seed's own example (conf/smtp-proxy.xml), its ports pointed at
/// recording backends: domain routing for both customers, Customer One's
/// SMTP AUTH credentials, and the root user/password as RELOAD credentials.
#[test]
fn the_seeds_example_routes_by_domain_and_auth_and_takes_reload() {
    let one = RecordingBackend::start();
    let two = RecordingBackend::start();
    let port = closed_port();
    let xml = std::fs::read(shipped_example()).expect("read conf/smtp-proxy.xml");
    let xml = String::from_utf8(xml).expect("the shipped example is ASCII");
    let xml = xml
        .replace("<port>25</port>", &format!("<port>{port}</port>"))
        .replace("<port>1025</port>", &format!("<port>{}</port>", one.port()))
        .replace("<port>2025</port>", &format!("<port>{}</port>", two.port()));
    let p = start_legacy(TempDir::new("legacy-seed"), port, xml.as_bytes());
    p.wait_log("ready to serve server 2/2 'Customer Two'");

    let (out, ok) = swaks(
        p.addr,
        &["--from", "a@example.org", "--to", "u@MyDomain.org"],
    );
    assert!(ok, "{out}");
    let (out, ok) = swaks(
        p.addr,
        &["--from", "a@example.org", "--to", "v@yourdomain.net"],
    );
    assert!(ok, "{out}");
    let (out, ok) = swaks(
        p.addr,
        &[
            "--from",
            "a@example.org",
            "--to",
            "far@elsewhere.test",
            "--auth",
            "LOGIN",
            "--auth-user",
            "spamwars",
            "--auth-password",
            "secret",
        ],
    );
    assert!(ok, "{out}");
    let (out, ok) = swaks(
        p.addr,
        &["--from", "a@example.org", "--to", "far@elsewhere.test"],
    );
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
    let got_one = one.wait_messages(2);
    assert!(got_one[0].position("RCPT TO:<u@MyDomain.org>").is_some());
    assert!(
        got_one[1].position("AUTH PLAIN").is_some()
            && got_one[1]
                .position("RCPT TO:<far@elsewhere.test>")
                .is_some()
    );
    assert!(two.wait_messages(1)[0]
        .position("RCPT TO:<v@yourdomain.net>")
        .is_some());
    p.wait_log("to Customer One using auth");

    let mut raw = Raw::connect(p.addr);
    raw.cmd("EHLO admin.example");
    let r = raw.cmd("RELOAD admin*secret");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    p.wait_log("configuration reloaded");
}
