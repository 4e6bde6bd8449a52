//! The README's example (`bash examples/run`): `examples/postern.toml` in
//! front of `examples/backend.py`, tried the way the README says, with
//! STARTTLS and AUTH, then `postern log search`.
//!
//! The example's own file is used, moved to a scratch directory and free
//! ports (the example's 2525 and 2626 may be taken by someone trying it);
//! the throw-away certificate is made with openssl, as examples/run makes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use postern_tests::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_example_shows_starttls_auth_and_log_search() {
    let dir = TempDir::new("example");
    let base = dir.path("example");
    std::fs::create_dir_all(base.join("tls")).expect("mkdir");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=mx.example.test"])
        .arg("-keyout")
        .arg(base.join("tls/key.pem"))
        .arg("-out")
        .arg(base.join("tls/cert.pem"))
        .stdin(Stdio::null())
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(out.status.success(), "{out:?}");

    // The example backend, with the example server's credentials.
    let port = closed_port();
    let printed = dir.path("backend.out");
    let mut backend = ChildGuard(
        Command::new("python3")
            .arg(repo("examples/backend.py"))
            .args([&port.to_string(), "example", "customer", "example"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&printed).expect("backend output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    let said = || std::fs::read_to_string(&printed).unwrap_or_default();
    wait_for("the example backend", || {
        said().contains("listening").then_some(())
    });

    let console = closed_port();
    let conf = std::fs::read_to_string(repo("examples/postern.toml"))
        .expect("examples/postern.toml")
        .replace("/tmp/postern-example", &base.display().to_string())
        .replace("127.0.0.1:2525", "127.0.0.1:0")
        .replace("127.0.0.1:8025", &format!("127.0.0.1:{console}"))
        .replace("port = 2626", &format!("port = {port}"));
    let p = Postern::start(dir, &conf);

    // A served domain: delivered.
    let (out, ok) = swaks(
        p.addr,
        &["--from", "you@elsewhere.test", "--to", "user@example.test"],
    );
    assert!(ok, "{out}");
    // The example's list alias: both addresses, one transaction.
    let (out, ok) = swaks(
        p.addr,
        &["--from", "you@elsewhere.test", "--to", "team@example.test"],
    );
    assert!(ok, "{out}");
    wait_for("the backend to print the list's two recipients", || {
        let s = said();
        (s.contains("RCPT TO:<ann@example.test>") && s.contains("RCPT TO:<bob@example.test>"))
            .then_some(())
    });
    // Anywhere else, without AUTH: refused.
    let (out, _) = swaks(
        p.addr,
        &[
            "--from",
            "you@elsewhere.test",
            "--to",
            "someone@elsewhere.test",
        ],
    );
    assert!(swaks_codes(&out).contains(&554), "{out}");
    assert!(out.contains("Relaying denied"), "{out}");
    // STARTTLS, then AUTH with the server's credentials: relayed, and the
    // backend accepted the replayed AUTH with 235.
    let (out, ok) = swaks(
        p.addr,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "customer",
            "--auth-password",
            "example",
            "--from",
            "you@elsewhere.test",
            "--to",
            "someone@elsewhere.test",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("250 STARTTLS"), "{out}");
    assert!(out.contains("<~  235 "), "{out}");
    wait_for("the backend to print the relayed message", || {
        let s = said();
        (s.contains("authenticated as customer") && s.contains("RCPT TO:<someone@elsewhere.test>"))
            .then_some(())
    });

    // The console answers with its log-in form, and takes the example's admin.
    let script = r#"
import sys, urllib.parse, urllib.request, urllib.error
base = sys.argv[1]
print(urllib.request.urlopen(base + "/", timeout=20).status)
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
form = urllib.parse.urlencode({"user": "admin", "password": "example"}).encode()
try:
    urllib.request.build_opener(Stay).open(base + "/", data=form, timeout=20)
except urllib.error.HTTPError as e:
    print(e.code, e.headers["Location"])
"#;
    let out = python(script, &[&format!("http://127.0.0.1:{console}")]);
    assert_eq!(out, "200\n303 /dashboard\n", "{out}");

    // The log file has every session; search finds them and says where it looked.
    let o = p.cli(&["log", "search", "elsewhere.test"]);
    let found = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{found}{err}");
    assert_eq!(found.lines().count(), 4, "{found}");
    assert_eq!(
        err.trim(),
        format!("postern: searched {}", base.join("postern.log").display())
    );
    backend.stop();
}
