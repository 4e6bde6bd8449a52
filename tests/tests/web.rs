//! The admin console (SPEC §11), at the HTTP level, driven by Python's
//! urllib with a cookie jar (a client nobody here wrote): no page without
//! login, failed logins delayed and logged, the session cookie's flags,
//! the security headers, CSRF tokens, escaping, the dashboard from the
//! master, a reload with its result, who may connect at all.

use std::net::{IpAddr, SocketAddr};

use postern_tests::netns::RemoteHost;
use postern_tests::*;

const ADMIN: &str = "admin_user = \"admin\"\nadmin_password = \"s3cret\"\n";

/// A browser's steps: one JSON object per step on argv (`method`, `path`,
/// `form` where `$CSRF` is the last page's CSRF field), one JSON line per
/// answer (`status`, `headers`, `body`, `seconds`). Redirects are not
/// followed: their `Location` is checked.
const BROWSER: &str = r#"
import http.cookiejar, json, re, sys, time, urllib.error, urllib.parse, urllib.request
base, src = sys.argv[1], sys.argv[2]
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
class Source(urllib.request.HTTPHandler):
    def http_open(self, req):
        import http.client
        return self.do_open(lambda host, **kw: http.client.HTTPConnection(host, source_address=(src, 0), **kw), req)
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(Source, urllib.request.HTTPCookieProcessor(jar), Stay)
csrf = ""
for step in sys.argv[3:]:
    s = json.loads(step)
    data = None
    if s.get("form") is not None:
        form = {k: (csrf if v == "$CSRF" else v) for k, v in s["form"].items()}
        data = urllib.parse.urlencode(form).encode()
    req = urllib.request.Request(base + s["path"], data=data, method=s["method"])
    t = time.time()
    try:
        r = opener.open(req, timeout=60)
        status, headers, body = r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, dict(e.headers), e.read().decode()
    m = re.search(r'name="csrf" value="([0-9a-f]*)"', body)
    if m:
        csrf = m.group(1)
    print(json.dumps({"status": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": body, "seconds": time.time() - t}))
"#;

/// One answer of [`BROWSER`].
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    seconds: f64,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }
}

/// Runs the steps (`(method, path, form as JSON or "")`) from `src`.
fn browse(run: impl Fn(&[&str]) -> String, steps: &[(&str, &str, &str)]) -> Vec<Answer> {
    let steps: Vec<String> = steps
        .iter()
        .map(|(m, p, f)| {
            let form = if f.is_empty() { "null" } else { f };
            format!("{{\"method\":\"{m}\",\"path\":\"{p}\",\"form\":{form}}}")
        })
        .collect();
    let args: Vec<&str> = steps.iter().map(String::as_str).collect();
    let out = run(&args);
    let script = r#"
import json, sys
for line in sys.stdin:
    a = json.loads(line)
    print(a["status"], "%.3f" % a["seconds"])
    for k, v in a["headers"].items():
        print("H", k, "\t", v, sep="")
    for l in a["body"].splitlines():
        print("B", l, sep="")
    print("END")
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), out.as_bytes()).expect("write");
    let text = String::from_utf8(child.wait_with_output().expect("python").stdout).expect("utf8");
    let mut answers = Vec::new();
    let mut cur: Option<Answer> = None;
    for line in text.lines() {
        if line == "END" {
            answers.extend(cur.take());
        } else if let Some(h) = line.strip_prefix('H') {
            let (k, v) = h.split_once('\t').expect("header");
            cur.as_mut()
                .expect("answer")
                .headers
                .push((k.into(), v.into()));
        } else if let Some(b) = line.strip_prefix('B') {
            let a = cur.as_mut().expect("answer");
            a.body.push_str(b);
            a.body.push('\n');
        } else {
            let (s, t) = line.split_once(' ').expect("status line");
            cur = Some(Answer {
                status: s.parse().expect("status"),
                headers: Vec::new(),
                body: String::new(),
                seconds: t.parse().expect("seconds"),
            });
        }
    }
    answers
}

/// Postern with the console on `web` (and `proxy` lines added), and its backend.
fn console(
    tag: &str,
    web: SocketAddr,
    proxy: &str,
    server_name: &str,
) -> (Postern, RecordingBackend) {
    let one = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block(server_name, one.port(), &["one.test"]))
        .replace("hostname = ", &format!("{ADMIN}{proxy}hostname = "))
        + &format!("\n[web]\nlisten = [\"{web}\"]\n");
    (Postern::start(dir, &conf), one)
}

fn local(base: String) -> impl Fn(&[&str]) -> String {
    move |steps: &[&str]| {
        let mut args = vec![base.as_str(), "127.0.0.1"];
        args.extend_from_slice(steps);
        python(BROWSER, &args)
    }
}

#[test]
fn no_page_without_login_and_every_change_with_its_session_token() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, _one) = console("web-login", web, "", "<script>alert(1)</script>");
    p.wait_log(&format!("admin console on http://{web}/"));
    let run = local(format!("http://{web}"));
    let wrong = r#"{"user":"admin","password":"guess"}"#;
    let right = r#"{"user":"admin","password":"s3cret"}"#;
    let a = browse(
        &run,
        &[
            ("GET", "/dashboard", ""),
            ("GET", "/", ""),
            ("POST", "/", wrong),
            ("POST", "/", wrong),
            ("POST", "/", right),
            ("GET", "/dashboard", ""),
            ("POST", "/apply", r#"{"csrf":"0000"}"#),
            ("POST", "/apply", r#"{}"#),
            ("POST", "/apply", r#"{"csrf":"$CSRF"}"#),
            ("POST", "/logout", r#"{"csrf":"$CSRF"}"#),
            ("GET", "/dashboard", ""),
            ("GET", "/nowhere", ""),
        ],
    );
    assert_eq!(a.len(), 12);
    // No page without a session: back to the login form.
    assert_eq!((a[0].status, a[0].header("location")), (303, "/"));
    assert_eq!(a[1].status, 200);
    assert!(a[1].body.contains("name=\"password\""), "{}", a[1].body);
    for h in &a {
        assert_eq!(
            h.header("content-security-policy"),
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(h.header("x-frame-options"), "DENY");
        assert_eq!(h.header("cache-control"), "no-store");
    }
    // Failed logins: the form again, later each time, in the log.
    assert_eq!(a[2].status, 401);
    assert!(a[2].body.contains("Wrong user or password."));
    assert!(
        a[2].seconds >= 0.9 && a[3].seconds >= 1.9,
        "{} {}",
        a[2].seconds,
        a[3].seconds
    );
    assert_eq!(
        p.log()
            .matches("failed console login from 127.0.0.1")
            .count(),
        2
    );
    // The right ones: a session cookie that scripts cannot read nor other sites send.
    assert_eq!((a[4].status, a[4].header("location")), (303, "/dashboard"));
    let cookie = a[4].header("set-cookie");
    for flag in ["postern_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    p.wait_log("console login by admin from 127.0.0.1");
    // The dashboard is postern status, the server's name escaped.
    assert_eq!(a[5].status, 200);
    for worker in [
        "postern-router",
        "postern-updater",
        "postern-smtpd",
        "postern-web",
    ] {
        assert!(a[5].body.contains(worker), "{worker}: {}", a[5].body);
    }
    assert!(
        a[5].body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        a[5].body
    );
    assert!(!a[5].body.contains("<script"), "{}", a[5].body);
    // A form without its session's token changes nothing; with it:
    // reloaded, and said — one reload in all.
    assert_eq!(a[6].status, 403);
    assert_eq!(a[7].status, 403);
    assert_eq!(a[8].status, 200);
    assert!(
        a[8].body.contains("Configuration reloaded."),
        "{}",
        a[8].body
    );
    p.wait_log("reload requested by postern-web (console:admin@127.0.0.1)");
    assert_eq!(
        p.log().matches("reload requested by postern-web").count(),
        1
    );
    assert_eq!(
        p.log()
            .matches("console form from 127.0.0.1 without its session's CSRF token: refused")
            .count(),
        2
    );
    // Logged out: the session is gone.
    assert_eq!((a[9].status, a[9].header("location")), (303, "/"));
    assert_eq!((a[10].status, a[10].header("location")), (303, "/"));
    assert_eq!(a[11].status, 404);
}

#[test]
fn a_reload_the_file_refuses_shows_why_and_changes_nothing() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, _one) = console("web-apply", web, "", "One");
    let conf = std::fs::read_to_string(p.config_path()).expect("config");
    std::fs::write(
        p.config_path(),
        conf.replace("port = ", "port = \"x\"\nportt = "),
    )
    .expect("write");
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/apply", ""),
            ("POST", "/apply", r#"{"csrf":"$CSRF"}"#),
        ],
    );
    assert_eq!(a[2].status, 200);
    assert!(a[2].body.contains("Not reloaded:"), "{}", a[2].body);
    assert!(a[2].body.contains("The running configuration stays."));
    // Mail still flows with the running configuration.
    let (out, ok) = swaks(p.addr, &["--from", "a@example.org", "--to", "u@one.test"]);
    assert!(ok, "{out}");
}

#[test]
fn only_loopback_admin_networks_and_web_allow_reach_the_console() {
    let host = RemoteHost::new("web-remote");
    let port = closed_port();
    let web = SocketAddr::new(IpAddr::V4(host.near4), port);
    let from = host.addr4.to_string();
    let (p, _one) = console("web-remote", web, "", "One");
    let remote = |steps: &[&str]| {
        let base = format!("http://{web}");
        let mut args = vec![base.as_str(), from.as_str()];
        args.extend_from_slice(steps);
        host.python(BROWSER, &args)
    };
    // Not allowed: the connection is closed without a word (no TLS, no
    // connection slot held).
    let said = host.python(
        r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10, source_address=(sys.argv[3], 0))
try:
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    print(len(s.recv(4096)))
except ConnectionResetError:
    print(0)
"#,
        &[&web.ip().to_string(), &web.port().to_string(), &from],
    );
    assert_eq!(said.trim(), "0", "an answer to a refused address");
    p.wait_log(&format!(
        "console connection from {from} refused: not in loopback, admin_networks or web.allow"
    ));
    // Allowed by [web] allow: the login form.
    let conf = std::fs::read_to_string(p.config_path()).expect("config");
    std::fs::write(
        p.config_path(),
        conf + &format!("allow = [\"{}/32\"]\n", host.addr4),
    )
    .expect("write");
    assert!(p.cli(&["reload"]).status.success());
    let a = browse(remote, &[("GET", "/", "")]);
    assert_eq!(a[0].status, 200);
    assert!(a[0].body.contains("Log in"));
}

#[test]
fn the_console_needs_credentials_and_is_a_worker_like_the_others() {
    let dir = TempDir::new("web-check");
    let port = closed_port();
    let conf = config_text(&dir, &server_block("One", 2525, &["one.test"]))
        + &format!("\n[web]\nlisten = [\"127.0.0.1:{port}\"]\ntls = true\n");
    let file = dir.path("postern.toml");
    std::fs::write(&file, &conf).expect("write");
    let out = std::process::Command::new(bin("postern"))
        .args(["-c", file.to_str().expect("utf8"), "check"])
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web.listen: the console needs proxy.admin_user and proxy.admin_password"),
        "{err}"
    );
    assert!(
        err.contains("web.tls: HTTPS for the console needs a certificate: set [tls] cert and key"),
        "{err}"
    );

    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, _one) = console("web-worker", web, "", "One");
    let before = p.pids_of("postern-web");
    assert_eq!(before.len(), 1, "{:?}", p.workers());
    let out = p.cli(&["restart", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("a new postern-web", || {
        let now = p.pids_of("postern-web");
        (now.len() == 1 && now != before).then_some(())
    });
    let run = local(format!("http://{web}"));
    wait_for("the new console to answer", || {
        let a = browse(&run, &[("GET", "/", "")]);
        (a.first().map(|a| a.status) == Some(200)).then_some(())
    });
}

#[test]
fn the_update_queue_page_lists_flushes_and_deletes_as_postern_queue_does() {
    let one = RecordingBackend::start();
    let down = closed_port();
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let dir = TempDir::new("web-queue");
    let conf = config_text(
        &dir,
        &(server_block("One", one.port(), &["one.test"])
            + &server_block("Down", down, &["down.test"])),
    )
    .replace(
        "hostname = ",
        &format!("{ADMIN}update_address = \"update@mx.postern.test\"\nhostname = "),
    ) + &format!(
        "\n[web]\nlisten = [\"{web}\"]\n\n[update]\nretry_min = \"1h\"\nretry_max = \"2h\"\n"
    );
    let p = Postern::start(dir, &conf);
    let (out, ok) = swaks(
        p.addr,
        &[
            "--from",
            "admin@example.net",
            "--to",
            "update@mx.postern.test",
        ],
    );
    assert!(ok, "{out}");
    let id = out
        .lines()
        .find_map(|l| l.split("queued as ").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("no queue id in {out}"));
    // Both copies settled (either may come first): the queue then stays as
    // it is until the flush below.
    p.wait_log(&format!("update {id} to Down deferred"));
    p.wait_log(&format!("update {id} delivered to One"));
    let before = String::from_utf8_lossy(&p.cli(&["queue"]).stdout).into_owned();
    assert!(before.contains(&id), "{before}");
    let run = local(format!("http://{web}"));
    let login = r#"{"user":"admin","password":"s3cret"}"#;
    let delete = format!(r#"{{"csrf":"$CSRF","id":"{id}"}}"#);
    let a = browse(
        &run,
        &[
            ("POST", "/", login),
            ("GET", "/queue", ""),
            ("POST", "/queue/flush", r#"{"csrf":"$CSRF"}"#),
            ("POST", "/queue/delete", &delete),
            ("POST", "/queue/delete", &delete),
            ("POST", "/queue/delete", &format!(r#"{{"id":"{id}"}}"#)),
        ],
    );
    // The page is postern queue's text, line for line (HTML-escaped).
    assert_eq!(a[1].status, 200);
    let escaped = |l: &str| {
        l.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    for line in before.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            a[1].body.contains(&escaped(line.trim())),
            "{line:?} not in {}",
            a[1].body
        );
    }
    assert!(a[1].body.contains("deferred"), "{}", a[1].body);
    assert!(
        a[2].body.contains("1 deferred copies will be tried now."),
        "{}",
        a[2].body
    );
    assert!(
        a[3].body.contains(&format!("Update mail {id} deleted.")),
        "{}",
        a[3].body
    );
    assert!(
        a[3].body.contains("the update queue is empty"),
        "gone from the list: {}",
        a[3].body
    );
    assert!(a[4].body.contains("Not done:"), "{}", a[4].body);
    assert_eq!(a[5].status, 403, "no token, no change");
    assert!(String::from_utf8_lossy(&p.cli(&["queue"]).stdout).contains("empty"));
    p.wait_log(&format!(
        "queue \"delete {id}\" asked by admin from 127.0.0.1 (the console)"
    ));
}

/// Postern with the console, the policy on for loopback clients (with
/// greylisting, 1 s, when asked), and its backend.
fn policy_console(tag: &str, web: SocketAddr, greylist: bool) -> (Postern, RecordingBackend) {
    let one = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("hostname = ", &format!("{ADMIN}hostname = "))
        + &format!("\n[web]\nlisten = [\"{web}\"]\n\n[policy]\nskip_networks = []\n")
        + if greylist {
            "\n[greylist]\nenabled = true\ndelay = \"1s\"\n"
        } else {
            ""
        };
    (Postern::start(dir, &conf), one)
}

/// The row of an HTML table holding `needle` (from after `<tr` to `</tr>`).
fn row_with<'a>(body: &'a str, needle: &str) -> Option<&'a str> {
    body.split("<tr")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(r))
        .find(|r| r.contains(needle))
}

#[test]
fn the_access_lists_page_adds_edits_tests_and_deletes_as_postern_access_does() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, one) = policy_console("web-access", web, false);
    let run = local(format!("http://{web}"));
    let login = r#"{"user":"admin","password":"s3cret"}"#;
    let add = r#"{"csrf":"$CSRF","action":"reject","method":"from","pattern":"spam@bad.test","comment":"<script>alert(1)</script> & co","keep_until":"2020-01-31"}"#;
    let a = browse(
        &run,
        &[
            ("POST", "/", login),
            ("GET", "/access", ""),
            ("POST", "/access/save", add),
            (
                "POST",
                "/access/save",
                r#"{"csrf":"$CSRF","action":"reject","method":"connect","pattern":"10.0.0.0/99","comment":"kept"}"#,
            ),
            (
                "POST",
                "/access/save",
                r#"{"csrf":"$CSRF","action":"reject","method":"from","pattern":"x@y.test","keep_until":"31/01/2027"}"#,
            ),
            ("POST", "/access/save", add),
            (
                "GET",
                "/access?client=127.0.0.5&helo=&from=spam%40bad.test&to=u%40one.test",
                "",
            ),
            (
                "POST",
                "/access/save",
                r#"{"action":"reject","method":"from","pattern":"sneaky@bad.test"}"#,
            ),
        ],
    );
    assert_eq!(a[1].status, 200);
    assert!(a[1].body.contains("No entry."), "{}", a[1].body);
    // Added: the row, escaped, marked past its keep-until, by the login.
    assert_eq!(a[2].status, 200, "{}", a[2].body);
    assert!(a[2].body.contains("Added: reject from spam@bad.test."));
    let row = row_with(&a[2].body, "spam@bad.test").expect("the new row");
    assert!(row.starts_with(" class=\"expired\""), "{row}");
    assert!(
        row.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
        "{row}"
    );
    assert!(!a[2].body.contains("<script>"));
    assert!(row.contains("<td>admin (console)</td>"), "{row}");
    assert!(row.contains("2020-01-31 (past: review it)"), "{row}");
    // A bad pattern: the form again, the error next to the field, what was
    // typed kept.
    assert_eq!(a[3].status, 400);
    let pattern_label = a[3]
        .body
        .split("<label>")
        .find(|l| l.starts_with("Pattern "))
        .expect("the pattern field");
    assert!(
        pattern_label.contains("value=\"10.0.0.0/99\""),
        "{pattern_label}"
    );
    assert!(
        pattern_label.contains("<span class=\"field-error\">"),
        "{pattern_label}"
    );
    assert!(a[3].body.contains("value=\"kept\""));
    let date_label = a[4]
        .body
        .split("<label>")
        .find(|l| l.starts_with("Keep until "))
        .expect("the keep-until field");
    assert_eq!(a[4].status, 400);
    assert!(
        date_label.contains("is not a date such as 2027-01-31"),
        "{date_label}"
    );
    // A duplicate: the router's reason, at the top of the form.
    assert_eq!(a[5].status, 400);
    assert!(a[5].body.contains("<p class=\"error\">"), "{}", a[5].body);
    // The test form: the router's verdict for that sender.
    assert!(
        a[6].body.contains("reject\nreply: 554 5.7.1"),
        "{}",
        a[6].body
    );
    // A change without the session's token: refused, nothing added.
    assert_eq!(a[7].status, 403);

    // SMTP and the CLI agree with the page.
    let (out, ok) = swaks(p.addr, &["--from", "spam@bad.test", "--to", "u@one.test"]);
    assert!(
        !ok && out.contains("<** 554 5.7.1 <spam@bad.test>: Sender address rejected"),
        "{out}"
    );
    let list = String::from_utf8_lossy(&p.cli(&["access", "list"]).stdout).into_owned();
    let rows: Vec<&str> = list.lines().filter(|l| l.starts_with("reject")).collect();
    assert_eq!(rows.len(), 1, "{list}");
    assert!(rows[0].contains("admin (console)"), "{list}");
    assert!(!list.contains("sneaky"), "{list}");
    p.wait_log(
        "access lists: reject from spam@bad.test added by admin from 127.0.0.1 (the console)",
    );

    // Edit (the comment and the date), then delete.
    let edit = r#"{"csrf":"$CSRF","old_action":"reject","old_method":"from","old_pattern":"spam@bad.test","action":"reject","method":"from","pattern":"spam@bad.test","comment":"edited","keep_until":""}"#;
    let b = browse(
        &run,
        &[
            ("POST", "/", login),
            (
                "GET",
                "/access?edit_action=reject&edit_method=from&edit_pattern=spam%40bad.test",
                "",
            ),
            ("POST", "/access/save", edit),
            (
                "POST",
                "/access/delete",
                r#"{"csrf":"$CSRF","action":"reject","method":"from","pattern":"spam@bad.test"}"#,
            ),
        ],
    );
    assert!(b[1].body.contains("Edit the entry"), "{}", b[1].body);
    assert!(b[1]
        .body
        .contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt; &amp; co\""));
    assert!(
        b[2].body.contains("Saved: reject from spam@bad.test."),
        "{}",
        b[2].body
    );
    let row = row_with(&b[2].body, "spam@bad.test").expect("the edited row");
    assert!(
        row.contains("<td>edited</td>") && !row.contains("expired"),
        "{row}"
    );
    assert_eq!(
        b[2].body.matches("<code>spam@bad.test</code>").count(),
        1,
        "one entry, not two"
    );
    assert!(b[3].body.contains("Removed: reject from spam@bad.test."));
    assert!(row_with(&b[3].body, "spam@bad.test").is_none());
    let (out, ok) = swaks(p.addr, &["--from", "spam@bad.test", "--to", "u@one.test"]);
    assert!(ok, "{out}");
    assert_eq!(one.wait_messages(1).len(), 1);
}

#[test]
fn the_greylisting_page_searches_shows_the_views_and_edits_the_whitelist() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, _one) = policy_console("web-greylist", web, true);
    let send = |client: &str, from: &str, to: &str| {
        swaks(
            p.addr,
            &["--local-interface", client, "--from", from, "--to", to],
        )
        .0
    };
    assert!(send("127.0.0.5", "a@sender.example", "u@one.test").contains("<** 451 4.7.1"));
    assert!(send("127.0.0.6", "b@<i>.example", "v@one.test").contains("<** "));
    assert!(send("127.0.0.7", "c@other.example", "w@one.test").contains("<** 451 4.7.1"));
    std::thread::sleep(std::time::Duration::from_millis(1_100)); // the delay under test
    assert!(send("127.0.0.5", "a@sender.example", "u@one.test").contains("250 2.0.0"));
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/greylist", ""),
            ("GET", "/greylist?q=sender.example", ""),
            ("GET", "/greylist?view=sender", ""),
            ("GET", "/greylist?q=%3Cscript%3E", ""),
            (
                "POST",
                "/greylist/whitelist",
                r#"{"csrf":"$CSRF","op":"add","kind":"from","pattern":"fresh.example"}"#,
            ),
            (
                "POST",
                "/greylist/whitelist",
                r#"{"csrf":"$CSRF","op":"add","kind":"ip","pattern":"not-an-ip"}"#,
            ),
            (
                "POST",
                "/greylist/whitelist",
                r#"{"csrf":"$CSRF","op":"remove","kind":"from","pattern":"fresh.example"}"#,
            ),
        ],
    );
    // Pending by IP: the one still waiting, not the one that passed.
    assert_eq!(a[1].status, 200);
    let pending = row_with(&a[1].body, "c@other.example").expect("the pending triplet");
    assert!(
        pending.contains("<td>pending</td><td>127.0.0.0/24</td>"),
        "{pending}"
    );
    assert!(row_with(&a[1].body, "a@sender.example").is_none());
    // The search finds the passed one; the passed view by sender too.
    let found = row_with(&a[2].body, "a@sender.example").expect("the search result");
    assert!(
        found.contains("<td>passed</td>") && found.contains("<td>u@one.test</td>"),
        "{found}"
    );
    assert!(row_with(&a[2].body, "c@other.example").is_none());
    assert!(
        row_with(&a[3].body, "a@sender.example").is_some(),
        "{}",
        a[3].body
    );
    // The search words come back escaped.
    assert!(
        a[4].body.contains("value=\"&lt;script&gt;\""),
        "{}",
        a[4].body
    );
    assert!(!a[4].body.contains("<script>"));
    // The whitelist: added (with who), refused with the reason, removed.
    assert!(
        a[5].body.contains("Whitelisted: from fresh.example."),
        "{}",
        a[5].body
    );
    let entry = row_with(&a[5].body, "from fresh.example").expect("the whitelist row");
    assert!(entry.contains("by admin (console)"), "{entry}");
    assert!(
        a[6].body.contains("is not an address or a network"),
        "{}",
        a[6].body
    );
    assert!(a[7]
        .body
        .contains("Removed from the whitelist: from fresh.example."));
    assert!(row_with(&a[7].body, "from fresh.example").is_none());
    let cli =
        String::from_utf8_lossy(&p.cli(&["greylist", "whitelist", "list"]).stdout).into_owned();
    assert!(!cli.contains("fresh.example"), "{cli}");
}

#[test]
fn the_logs_page_finds_sessions_and_shows_a_trail_newest_first() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let one = RecordingBackend::start();
    let dir = TempDir::new("web-logs");
    let conf = config_text(
        &dir,
        &server_block("One", one.port(), &["one.test", "two.test"]),
    )
    .replace("hostname = ", &format!("{ADMIN}hostname = "))
        + &format!(
            "\n[web]\nlisten = [\"{web}\"]\n\n[log]\nfile = \"{}\"\n",
            dir.path("postern-file.log").display()
        );
    let p = Postern::start(dir, &conf);
    for (client, to) in [("127.0.0.5", "u@one.test"), ("127.0.0.6", "v@two.test")] {
        let (out, ok) = swaks(
            p.addr,
            &[
                "--local-interface",
                client,
                "--from",
                "a@example.org",
                "--to",
                to,
            ],
        );
        assert!(ok, "{out}");
    }
    let cli = String::from_utf8_lossy(&p.cli(&["log", "search", "v@two.test"]).stdout).into_owned();
    let sid = cli.split(' ').next().expect("a session").to_string();
    assert_eq!(cli.lines().count(), 1, "{cli}");
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/logs?q=v%40two.test&since=", ""),
            ("GET", &format!("/logs/session?sid={sid}&since="), ""),
            ("GET", "/logs?q=%3Cb%3E&since=yesterday-ish", ""),
            ("GET", "/logs/session?sid=000000000000", ""),
        ],
    );
    // The search: one row, its id a link to the trail, as the CLI says.
    assert_eq!(a[1].status, 200);
    let row = row_with(&a[1].body, &sid).expect("the session's row");
    assert!(
        row.contains(&format!(
            "<a href=\"/logs/session?sid={sid}&amp;since=\"><code>{sid}</code></a>"
        )),
        "{row}"
    );
    assert!(
        row.contains("client=127.0.0.6") && row.contains("recipient=v@two.test"),
        "{row}"
    );
    assert!(row_with(&a[1].body, "u@one.test").is_none());
    assert!(a[1].body.contains("1 session(s)."), "{}", a[1].body);
    // The trail: every process's lines, newest first.
    let trail: Vec<&str> = a[2]
        .body
        .split("<pre class=\"trail\">")
        .nth(1)
        .and_then(|t| t.split("</pre>").next())
        .expect("the trail")
        .lines()
        .filter(|l| !l.is_empty())
        .collect();
    assert!(trail.len() >= 4, "{trail:?}");
    assert!(
        trail.iter().all(|l| l.contains(&format!("sid={sid}"))),
        "{trail:?}"
    );
    assert!(trail[0].contains("disconnect from 127.0.0.6"), "{trail:?}");
    assert!(
        trail[trail.len() - 1].contains("accepted connection from 127.0.0.6"),
        "{trail:?}"
    );
    // two.test is new to smtpd's route cache: the router's line is there.
    assert!(
        trail
            .iter()
            .any(|l| l.contains("postern-router[") && l.contains("route two.test -&gt; One")),
        "{trail:?}"
    );
    // A period that does not parse: the reason, not a 500; words escaped.
    assert_eq!(a[3].status, 200);
    assert!(a[3].body.contains("<p class=\"error\">"), "{}", a[3].body);
    assert!(a[3].body.contains("value=\"&lt;b&gt;\""));
    assert!(a[4]
        .body
        .contains("No line has session id <code>000000000000</code>."));
}

#[test]
fn the_statistics_page_agrees_with_postern_stats_and_draws_its_charts() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, one) = policy_console("web-stats", web, true);
    let send = |client: &str, to: &str| {
        swaks(
            p.addr,
            &[
                "--local-interface",
                client,
                "--from",
                "a@example.org",
                "--to",
                to,
            ],
        )
        .0
    };
    assert!(send("127.0.0.5", "u@one.test").contains("<** 451 4.7.1"));
    assert!(send("127.0.0.5", "x@elsewhere.test").contains("<** 554 5.7.1"));
    std::thread::sleep(std::time::Duration::from_millis(1_100)); // the greylisting delay
    assert!(send("127.0.0.5", "u@one.test").contains("<-  250 2.0.0"));
    one.wait_messages(1);
    // The sessions' counts reach the router when they end.
    let json = wait_for("three sessions counted", || {
        let out = String::from_utf8_lossy(&p.cli(&["stats", "--json"]).stdout).into_owned();
        out.contains("\"connections\": 3,").then_some(out)
    });
    let total = json
        .lines()
        .find(|l| l.contains("\"total\""))
        .expect("the total")
        .to_string();
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/stats", ""),
            ("GET", "/stats?weeks=2", ""),
            ("GET", "/stats?weeks=%3Cx%3E", ""),
        ],
    );
    assert_eq!(a[1].status, 200);
    let body = &a[1].body;
    // The total row: 3 connections, 1 forwarded by domain, 1 relaying
    // denied, 1 greylisted, 1 passed, 1 message, spam rate 50 %.
    let row = row_with(body, "<td>total</td>").expect("the total row");
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap_or(""))
        .collect();
    assert_eq!(&cells[..3], ["total", "", "3"], "{row}");
    assert_eq!(&cells[3..10], ["1", "0", "0", "1", "0", "1", "1"], "{row}");
    assert_eq!(cells[10], "1");
    assert_eq!(cells[12], "50.0%");
    assert!(
        total.contains("\"messages\": 1,") && total.contains("\"spam_rate\": 0.5"),
        "{total}"
    );
    // Eight weeks by default, two when asked; the charts are inline SVG.
    assert_eq!(
        body.matches("<td>total</td>").count(),
        2,
        "two tables with a total"
    );
    assert_eq!(
        body.matches("<svg ").count(),
        4,
        "messages, refusals, spam rate, greylisting"
    );
    assert!(body.contains("<title>Spam rate per week</title>"));
    assert!(body.contains("— relay denied: 1</title>"), "{body}");
    let weeks = |b: &str| b.matches("-W").count();
    assert!(weeks(&a[2].body) < weeks(body));
    // A bad number: the default, not an error.
    assert_eq!(a[3].status, 200);
}

#[test]
fn the_routing_and_mx_pages_show_the_table_and_where_each_domains_mail_goes() {
    use postern_tests::dns::{DnsServer, Zones};
    let dns = DnsServer::start(
        Zones::default()
            .local("one.test")
            .local("two.test")
            .local("three.test")
            .local("four.test")
            .local("elsewhere.example")
            // one.test: its MX is this host by name.
            .mx("one.test", "mx.postern.test")
            // two.test: an MX elsewhere.
            .mx("two.test", "mx.elsewhere.example")
            .a("mx.elsewhere.example", "192.0.2.77")
            // three.test: no MX, its own address is this host's.
            .a("three.test", "127.0.0.1"),
    );
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (one, two) = (RecordingBackend::start(), RecordingBackend::start());
    let dir = TempDir::new("web-routing");
    let conf = config_text(
        &dir,
        &(server_block("One", one.port(), &["one.test", "two.test"])
            .replace("domains = ", "relay = [\"192.0.2.0/24\"]\ndomains = ")
            + &server_block("Two", two.port(), &["three.test", "four.test"])),
    )
    .replace("hostname = ", &format!("{ADMIN}hostname = "))
        + &format!(
            "\n[web]\nlisten = [\"{web}\"]\n\n[policy]\nresolvers = [\"{}\"]\ndns_timeout = \"1s\"\n\n[[alias]]\naddress = \"list@lists.test\"\nto = [\"u@one.test\"]\n",
            dns.addr
        );
    let p = Postern::start(dir, &conf);
    two.stop();
    // Two is down: three failures in a row, as postern status says.
    for _ in 0..3 {
        let (out, _) = swaks(p.addr, &["--to", "x@three.test"]);
        assert!(out.contains("<** 451 4.4.1"), "{out}");
    }
    // smtpd reports its backends' health to the master every few seconds.
    wait_for("Two failing in postern status", || {
        String::from_utf8_lossy(&p.cli(&["status"]).stdout)
            .lines()
            .any(|l| l.starts_with("Two ") && l.contains("failing since"))
            .then_some(())
    });
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/routing", ""),
            ("GET", "/mx", ""),
        ],
    );
    assert_eq!(a[1].status, 200);
    let one_row = row_with(&a[1].body, "<td>One</td>").expect("server One");
    assert!(one_row.contains("<td>one.test, two.test</td>"), "{one_row}");
    assert!(one_row.contains("<td>192.0.2.0/24</td>"), "{one_row}");
    assert!(one_row.contains("<td>reachable</td>"), "{one_row}");
    let two_row = row_with(&a[1].body, "<td>Two</td>").expect("server Two");
    assert!(two_row.contains("failing since"), "{two_row}");
    for (domain, to) in [
        ("one.test", "One"),
        ("two.test", "One"),
        ("three.test", "Two"),
        ("four.test", "Two"),
        ("lists.test", "its aliases (1)"),
    ] {
        assert!(
            row_with(&a[1].body, &format!("<td>{domain}</td><td>{to}</td>")).is_some(),
            "{domain} → {to}:\n{}",
            a[1].body
        );
    }
    // The MX check, through the policy's resolver.
    assert_eq!(a[2].status, 200);
    let row = |d: &str| {
        row_with(&a[2].body, &format!("<td>{d}</td>"))
            .unwrap_or_else(|| panic!("{d}: {}", a[2].body))
    };
    assert!(
        row("one.test").contains("<td class=\"ok\">yes</td>"),
        "{}",
        row("one.test")
    );
    assert!(
        row("one.test").contains("<strong>10 mx.postern.test"),
        "{}",
        row("one.test")
    );
    assert!(
        row("two.test").contains("<td class=\"error\">no</td>"),
        "{}",
        row("two.test")
    );
    assert!(
        row("two.test").contains("10 mx.elsewhere.example 192.0.2.77"),
        "{}",
        row("two.test")
    );
    assert!(
        row("three.test").contains("<td class=\"ok\">yes</td>"),
        "{}",
        row("three.test")
    );
    assert!(row("three.test").contains("no MX: mail goes to the domain's own addresses, 127.0.0.1"));
    assert!(
        row("four.test").contains("no MX and no address"),
        "{}",
        row("four.test")
    );
    assert!(
        row("lists.test").contains("<td class=\"error\">"),
        "{}",
        row("lists.test")
    );
}

#[test]
fn the_refused_mail_report_lists_who_was_refused_for_whom_and_why() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let one = RecordingBackend::start();
    let dir = TempDir::new("web-refused");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("hostname = ", &format!("{ADMIN}hostname = "))
        + &format!(
            "\n[web]\nlisten = [\"{web}\"]\n\n[policy]\nskip_networks = []\n\n[log]\nfile = \"{}\"\n",
            dir.path("postern-file.log").display()
        );
    let p = Postern::start(dir, &conf);
    let added = p.cli(&["access", "add", "reject", "from", "spam@bad.test"]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let send = |client: &str, from: &str, to: &str| {
        swaks(
            p.addr,
            &["--local-interface", client, "--from", from, "--to", to],
        )
        .0
    };
    assert!(send("127.0.0.5", "spam@bad.test", "u@one.test").contains("<** 554 5.7.1"));
    assert!(send("127.0.0.6", "a@example.org", "x@elsewhere.test").contains("<** 554 5.7.1"));
    assert!(send("127.0.0.7", "a@example.org", "v@one.test").contains("<-  250 2.0.0"));
    one.wait_messages(1);

    // The CLI: one line per refused recipient, oldest first.
    let all = wait_for("both refusals in the log", || {
        let o = p.cli(&["log", "refused"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (out.lines().count() == 2).then_some(out)
    });
    let lines: Vec<&str> = all.lines().collect();
    assert!(
        lines[0].contains(" client=127.0.0.5 sender=spam@bad.test recipient=u@one.test reply=\"554 5.7.1 <spam@bad.test>: Sender address rejected"),
        "{all}"
    );
    assert!(
        lines[1].contains(" client=127.0.0.6 sender=a@example.org recipient=x@elsewhere.test reply=\"554 5.7.1 <x@elsewhere.test>: Relaying denied"),
        "{all}"
    );
    let o = p.cli(&["log", "refused", "U@ONE.TEST"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    let o = p.cli(&["log", "refused", "v@one.test"]);
    assert_eq!(o.status.code(), Some(1), "nothing refused for v@one.test");

    // The console: the same, newest first, each with its session's trail.
    let run = local(format!("http://{web}"));
    let a = browse(
        &run,
        &[
            ("POST", "/", r#"{"user":"admin","password":"s3cret"}"#),
            ("GET", "/refused", ""),
            ("GET", "/refused?to=u%40one.test&since=1d", ""),
        ],
    );
    assert_eq!(a[1].status, 200);
    assert!(
        a[1].body.contains("2 refused recipient(s)."),
        "{}",
        a[1].body
    );
    let first = a[1]
        .body
        .find("x@elsewhere.test")
        .expect("the relay attempt");
    let second = a[1]
        .body
        .find("spam@bad.test</td>")
        .expect("the rejected sender");
    assert!(first < second, "newest first");
    let row = row_with(&a[1].body, "spam@bad.test</td>").expect("its row");
    assert!(row.contains("<td>127.0.0.5</td>"), "{row}");
    assert!(
        row.contains("Sender address rejected: Access denied"),
        "{row}"
    );
    assert!(row.contains("<a href=\"/logs/session?sid="), "{row}");
    assert!(
        a[2].body.contains("1 refused recipient(s)."),
        "{}",
        a[2].body
    );
    assert!(row_with(&a[2].body, "x@elsewhere.test").is_none());
}

#[test]
fn over_https_the_console_uses_the_tls_certificate_and_a_secure_cookie() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let one = RecordingBackend::start();
    let dir = TempDir::new("web-https");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (tests/run installs it)");
    assert!(out.status.success(), "{out:?}");
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        .replace("hostname = ", &format!("{ADMIN}hostname = "))
        + &format!(
            "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n[web]\nlisten = [\"{web}\"]\ntls = true\n",
            cert.display(),
            key.display()
        );
    let p = Postern::start(dir, &conf);
    p.wait_log(&format!("admin console on https://{web}/"));
    // Python's urllib verifying the certificate against it.
    let script = r#"
import http.cookiejar, ssl, sys, urllib.error, urllib.parse, urllib.request
base, cafile = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
jar = http.cookiejar.CookieJar()
o = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor(jar), Stay)
form = urllib.parse.urlencode({"user": "admin", "password": "s3cret"}).encode()
try:
    o.open(base + "/", data=form, timeout=20)
except urllib.error.HTTPError as e:
    print("login", e.code, e.headers.get("Set-Cookie"))
    print("hsts", e.headers.get("Strict-Transport-Security"))
r = o.open(base + "/dashboard", timeout=20)
print("dashboard", r.status, "postern-router" in r.read().decode())
try:
    urllib.request.urlopen(base.replace("https", "http") + "/", timeout=5)
    print("plain http: answered")
except Exception as e:
    print("plain http: refused")
"#;
    let out = python(
        script,
        &[&format!("https://{web}"), cert.to_str().expect("utf8")],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("login 303 postern_session="), "{out}");
    assert!(
        lines[0].ends_with("; HttpOnly; SameSite=Strict; Path=/; Secure"),
        "{out}"
    );
    assert_eq!(lines[1], "hsts max-age=31536000");
    assert_eq!(lines[2], "dashboard 200 True");
    assert_eq!(lines[3], "plain http: refused");
}

/// Guesses sent in parallel gain nothing: while a failed login's delay runs,
/// another attempt from that address gets `429` without its password being
/// looked at; once the delay has passed, the right password logs in.
#[test]
fn parallel_guesses_wait_out_the_failed_logins_delay() {
    let web = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), closed_port());
    let (p, _one) = console("web-guesses", web, "", "One");
    let script = r#"
import sys, threading, time, urllib.error, urllib.parse, urllib.request
base = sys.argv[1]
def attempt(password, out):
    data = urllib.parse.urlencode({"user": "admin", "password": password}).encode()
    t = time.time()
    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    try:
        r = urllib.request.build_opener(Stay).open(base + "/", data=data, timeout=20)
        out.append((r.status, time.time() - t, ""))
    except urllib.error.HTTPError as e:
        out.append((e.code, time.time() - t, e.headers.get("Retry-After") or ""))
first, second = [], []
a = threading.Thread(target=attempt, args=("guess1", first))
a.start()
time.sleep(0.3)
attempt("guess2", second)
a.join()
print("first", first[0][0], "%.1f" % first[0][1])
print("second", second[0][0], "%.1f" % second[0][1], second[0][2])
time.sleep(1.2)
third = []
attempt("s3cret", third)
print("third", third[0][0])
"#;
    let out = python(script, &[&format!("http://{web}")]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let second: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(second[1], "429", "{out}");
    assert!(
        second[2].parse::<f64>().expect("seconds") < 0.5,
        "answered at once: {out}"
    );
    assert_eq!(second[3], "1", "Retry-After: {out}");
    assert!(lines[0].starts_with("first 401 "), "{out}");
    assert_eq!(lines[2], "third 303", "{out}");
    p.wait_log("console login from 127.0.0.1 refused: too soon after a failed one");
}
