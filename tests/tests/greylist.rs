//! Greylisting (SPEC §8) with the embedded store, end to end: real clients
//! from distinct loopback addresses, a recording backend that must see no
//! greylisted recipient, a one-second `delay` (no test waits two minutes).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use postern_tests::postfix::PostfixBackend;
use postern_tests::redis::RedisServer;
use postern_tests::*;

fn greylisting(tag: &str, extra: &str) -> (Postern, RecordingBackend) {
    let one = RecordingBackend::start();
    let dir = TempDir::new(tag);
    let conf = config_text(&dir, &server_block("One", one.port(), &["one.test"]))
        + "\n[policy]\nskip_networks = []\n\n[greylist]\nenabled = true\ndelay = \"1s\"\n"
        + extra;
    (Postern::start(dir, &conf), one)
}

fn send(p: &Postern, client: &str, from: &str, to: &str) -> String {
    swaks(
        p.addr,
        &["--local-interface", client, "--from", from, "--to", to],
    )
    .0
}

/// The delay under test: waited for, not a synchronisation.
fn wait_out_the_delay() {
    std::thread::sleep(Duration::from_millis(1_100));
}

#[test]
fn a_new_triplet_is_deferred_until_its_retry_after_the_delay_then_whitelisted() {
    flow("gl-flow", "");
}

/// The same flow against the shared store: a real redis-server.
#[test]
fn the_redis_store_follows_the_same_rules() {
    let redis = RedisServer::start();
    flow("gl-flow-redis", &format!("store = {:?}\n", redis.url()));
}

fn flow(tag: &str, store: &str) {
    let (p, one) = greylisting(tag, store);
    if !store.is_empty() {
        p.wait_log("greylisting: store redis://");
    }
    let first = send(&p, "127.0.0.5", "news+123@sender.example", "u@one.test");
    assert!(
        first.contains("<** 451 4.7.1 Greylisting in action, please come back in 00:00:01"),
        "{first}"
    );
    // An early retry does not move the first attempt.
    let early = send(&p, "127.0.0.5", "news+456@sender.example", "u@one.test");
    assert!(
        early.contains("<** 451 4.7.1 Greylisting in action"),
        "{early}"
    );
    assert!(
        one.messages().is_empty(),
        "nothing greylisted reaches the backend"
    );
    assert!(!String::from_utf8_lossy(&one.all_bytes()).contains("u@one.test"));

    wait_out_the_delay();
    // The retry: another address of the same /24, the sender's +extension changed.
    let retry = send(&p, "127.0.0.6", "news+789@sender.example", "u@one.test");
    assert!(retry.contains("<-  250 2.0.0 Ok: queued as"), "{retry}");
    // Auto-whitelisted: the next mail passes at once.
    let next = send(&p, "127.0.0.7", "news@sender.example", "u@one.test");
    assert!(next.contains("<-  250 2.0.0 Ok: queued as"), "{next}");
    assert_eq!(one.wait_messages(2).len(), 2);
    p.wait_log("greylisting: 127.0.0.0/24 news@sender.example u@one.test passed: auto-whitelisted");

    // postmaster@ is never greylisted.
    let pm = send(
        &p,
        "127.0.0.9",
        "someone@else.example",
        "postmaster@one.test",
    );
    assert!(pm.contains("<-  250 2.0.0 Ok: queued as"), "{pm}");

    // Per recipient: one transaction gets 250 and 451.
    let out = smtplib_sendmail(
        "127.0.0.5",
        p.addr,
        "news@sender.example",
        &["u@one.test", "v@one.test"],
    );
    assert!(
        out.contains("refused: {'v@one.test': (451, b'4.7.1 Greylisting in action, please come back in 00:00:01')}"),
        "{out}"
    );
    wait_for(
        "greylisted = 3 and greylist_passed = 1 in postern stats",
        || {
            let out = p.cli(&["stats", "--json"]);
            let json = String::from_utf8_lossy(&out.stdout).into_owned();
            (json.contains("\"greylisted\": 3") && json.contains("\"greylist_passed\": 1"))
                .then_some(())
        },
    );
    // Seed 001 §7.3: greylisting per day, with both lists' sizes (taken at
    // each purge: hourly, and at a reload).
    let reload = p.cli(&["reload"]);
    assert!(
        reload.status.success(),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    wait_for("both lists' sizes in postern stats", || {
        let out = p.cli(&["stats"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = text
            .lines()
            .skip_while(|l| *l != "Greylisting per day")
            .nth(2)?
            .to_string();
        let cells: Vec<&str> = row.split_whitespace().collect();
        // DAY GREYLISTED PASSED PENDING LIST WHITELIST
        (cells.get(1..) == Some(&["3", "1", "1", "1"][..])).then_some(())
    });
    // The store's standing in postern status.
    wait_for("the greylist store in postern status", || {
        let out = p.cli(&["status"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == "greylist store: in use")
            .then_some(())
    });
}

#[test]
fn the_lists_survive_a_router_restart_and_the_policy_server_defers() {
    let port = closed_port();
    let (p, one) = greylisting(
        "gl-restart",
        &format!("\n[policy_server]\nlisten = [\"127.0.0.1:{port}\"]\n"),
    );
    send(&p, "127.0.0.5", "a@sender.example", "u@one.test");
    wait_out_the_delay();
    let ok = send(&p, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(ok.contains("<-  250 2.0.0 Ok: queued as"), "{ok}");
    // A new router takes over the store once the old one has let it go.
    let out = p.cli(&["restart", "router"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.wait_log_count("greylisting: store", 2);
    let again = send(&p, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(again.contains("<-  250 2.0.0 Ok: queued as"), "{again}");
    // The greylisted first attempt never reached it: the two accepted did.
    assert_eq!(one.messages().len(), 2);

    // Postfix's policy protocol: DEFER_IF_PERMIT for a new triplet, DUNNO
    // once it passed.
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut ask = |sender: &str| {
        write!(
            s,
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nsender={sender}\nrecipient=u@one.test\n\n"
        )
        .expect("write");
        let mut action = String::new();
        r.read_line(&mut action).expect("read");
        let mut empty = String::new();
        r.read_line(&mut empty).expect("read");
        action
    };
    assert_eq!(
        ask("b@sender.example"),
        "action=DEFER_IF_PERMIT 4.7.1 Greylisting in action, please come back in 00:00:01\n",
        "{}",
        p.log()
    );
    wait_out_the_delay();
    assert_eq!(ask("b@sender.example"), "action=DUNNO\n");
}

/// A real Postfix as the sending MTA: its first attempt is greylisted and
/// stays in its queue; `postqueue -f` after the delay delivers it, once.
#[test]
fn a_real_postfix_keeps_a_greylisted_message_and_delivers_it_on_its_retry() {
    let (p, one) = greylisting("gl-postfix", "");
    let pf = PostfixBackend::start_sender(p.addr, "one.test");
    let (out, ok) = swaks(
        pf.xclient_addr(),
        &[
            "--local-interface",
            "127.0.0.5",
            "--from",
            "a@sender.example",
            "--to",
            "u@one.test",
        ],
    );
    assert!(ok, "{out}\n{}", pf.log());
    let deferred = pf.wait_log("status=deferred");
    assert!(
        deferred.contains("451 4.7.1 Greylisting in action"),
        "{deferred}"
    );
    assert!(one.messages().is_empty());
    wait_out_the_delay();
    pf.flush();
    let sent = pf.wait_log("status=sent");
    assert!(sent.contains("to=<u@one.test>"), "{sent}");
    let got = one.wait_messages(1);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].position("RCPT TO:<u@one.test>").is_some(),
        "{:?}",
        got[0].commands
    );
}

fn greylist_cli(p: &Postern, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["greylist"];
    all.extend_from_slice(args);
    let out = p.cli(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Seed 001 §10: search by sender, recipient or IP across both lists, the
/// sorted views, and the manual whitelist with its default comment.
#[test]
fn the_greylist_command_searches_lists_and_whitelists() {
    let (p, one) = greylisting("gl-cli", "");
    send(&p, "127.0.0.5", "a@sender.example", "u@one.test");
    send(&p, "127.0.0.5", "b@other.example", "v@one.test");
    wait_out_the_delay();
    let ok = send(&p, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(ok.contains("<-  250 2.0.0 Ok: queued as"), "{ok}");

    let (code, out, _) = greylist_cli(&p, &["search", "sender.example"]);
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(
        rows[0].starts_with("passed 127.0.0.0/24 a@sender.example u@one.test "),
        "{out}"
    );
    assert!(rows[0].ends_with(" 1"), "{out}");
    let (_, out, _) = greylist_cli(&p, &["search", "127.0.0.9"]);
    assert_eq!(
        out.lines().count(),
        2,
        "an address of the /24 finds both: {out}"
    );
    let (code, out, _) = greylist_cli(&p, &["search", "nobody.example"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));

    let (_, out, _) = greylist_cli(&p, &["list", "--pending"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("pending 127.0.0.0/24 b@other.example v@one.test "),
        "{out}"
    );
    let (_, out, _) = greylist_cli(&p, &["list", "--by", "recipient"]);
    let recipients: Vec<&str> = out
        .lines()
        .map(|l| l.split(' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(recipients, ["u@one.test", "v@one.test"], "{out}");

    // A whitelisted sender domain is never greylisted.
    let (code, out, err) = greylist_cli(&p, &["whitelist", "add", "from", "fresh.example"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "postern: greylist: whitelist added from fresh.example"
    );
    let (_, out, _) = greylist_cli(&p, &["whitelist"]);
    assert!(out.starts_with("from fresh.example # added 20"), "{out}");
    assert!(out.trim_end().ends_with(" by root"), "{out}");
    let fresh = send(&p, "127.0.0.8", "x@fresh.example", "w@one.test");
    assert!(fresh.contains("<-  250 2.0.0 Ok: queued as"), "{fresh}");
    let (code, _, _) = greylist_cli(
        &p,
        &[
            "whitelist",
            "add",
            "ip",
            "192.0.2.0/24",
            "--comment",
            "partner",
        ],
    );
    assert_eq!(code, Some(0));
    let (code, _, err) = greylist_cli(&p, &["whitelist", "add", "ip", "not-an-ip"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is not an address or a network"), "{err}");
    let (code, _, _) = greylist_cli(&p, &["whitelist", "remove", "from", "fresh.example"]);
    assert_eq!(code, Some(0));
    let again = send(&p, "127.0.0.8", "y@fresh.example", "w@one.test");
    assert!(again.contains("<** 451 4.7.1"), "{again}");
    assert_eq!(one.wait_messages(2).len(), 2);
}

/// Two postern hosts on one Redis share the lists: a triplet that passed on
/// one is not greylisted on the other. Redis killed: greylisting steps aside
/// (on_store_error = "accept"), the status says so, and it resumes once
/// Redis is back.
#[test]
fn two_posterns_on_one_redis_share_the_lists_and_an_outage_accepts() {
    let mut redis = RedisServer::start();
    let store = format!("store = {:?}\n", redis.url());
    let (a, one_a) = greylisting("gl-redis-a", &store);
    let (b, one_b) = greylisting("gl-redis-b", &store);
    a.wait_log("greylisting: store redis://");
    b.wait_log("greylisting: store redis://");
    let first = send(&a, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(first.contains("<** 451 4.7.1"), "{first}");
    wait_out_the_delay();
    // The retry lands on the other host: it knows the first attempt.
    let retry = send(&b, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(retry.contains("<-  250 2.0.0 Ok: queued as"), "{retry}");
    let again = send(&a, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(again.contains("<-  250 2.0.0 Ok: queued as"), "{again}");
    assert_eq!(
        (one_a.wait_messages(1).len(), one_b.wait_messages(1).len()),
        (1, 1)
    );

    redis.kill();
    let during = send(&a, "127.0.0.6", "new@sender.example", "v@one.test");
    assert!(
        during.contains("<-  250 2.0.0 Ok: queued as"),
        "accepted while the store is down: {during}"
    );
    wait_for("the degraded store in postern status", || {
        let out = a.cli(&["status"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("greylist store: degraded"))
            .then_some(())
    });
    redis.restart();
    wait_for("greylisting to resume", || {
        let out = send(
            &a,
            "127.0.0.7",
            &format!("x{}@sender.example", std::process::id()),
            "w@one.test",
        );
        out.contains("<** 451 4.7.1").then_some(())
    });
}

/// An export of the embedded store, imported into a Redis one: a triplet
/// that passed on the first host passes on the second at once.
#[test]
fn an_export_moves_the_lists_to_another_store() {
    let redis = RedisServer::start();
    let (a, _one_a) = greylisting("gl-export", "");
    send(&a, "127.0.0.5", "a@sender.example", "u@one.test");
    wait_out_the_delay();
    let ok = send(&a, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(ok.contains("<-  250 2.0.0 Ok: queued as"), "{ok}");
    let (code, _, err) = greylist_cli(
        &a,
        &[
            "whitelist",
            "add",
            "ip",
            "192.0.2.0/24",
            "--comment",
            "partner",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, export, err) = greylist_cli(&a, &["export"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        export.starts_with("# postern greylist export 1\n"),
        "{export}"
    );
    assert!(
        export.contains("passed\t127.0.0.0/24\ta@sender.example\tu@one.test\t"),
        "{export}"
    );
    assert!(
        export.contains("whitelist\tip 192.0.2.0/24\tpartner"),
        "{export}"
    );

    let (b, one_b) = greylisting("gl-import", &format!("store = {:?}\n", redis.url()));
    b.wait_log("greylisting: store redis://");
    let file = b.dir.path("greylist.txt");
    std::fs::write(&file, &export).expect("write");
    let (code, out, err) = greylist_cli(&b, &["import", file.to_str().expect("utf8")]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "imported 2 entries");
    let moved = send(&b, "127.0.0.5", "a@sender.example", "u@one.test");
    assert!(moved.contains("<-  250 2.0.0 Ok: queued as"), "{moved}");
    one_b.wait_messages(1);
    let (_, wl, _) = greylist_cli(&b, &["whitelist"]);
    assert_eq!(wl.trim(), "ip 192.0.2.0/24 # partner");
    let (code, _, err) = greylist_cli(&b, &["import", "/nonexistent"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read /nonexistent"), "{err}");
}

/// Two hosts, one Redis (the MX pair the shared store is for): postern A
/// here, postern B in a network namespace of its own, a machine apart as
/// far as the network goes, both greylisting on one redis-server. The
/// client (10.x.y.1, the veth's near side) is the same network to both. A
/// triplet that passed on A passes on B at once; one first seen on B is
/// let through by A once the delay has passed since B saw it.
#[test]
fn two_hosts_in_network_namespaces_share_one_redis() {
    use postern_tests::netns::RemoteHost;
    let host = RemoteHost::new("gl-two-hosts");
    let near = host.near4.to_string();
    let redis = RedisServer::start_also_on(Some(&near));
    let greylist = |dir: &TempDir, servers: &str, listen: &str, store: &str| {
        config_text(dir, servers).replace("127.0.0.1:0", listen)
            + &format!(
                "\n[policy]\nskip_networks = []\n\n[greylist]\nenabled = true\ndelay = \"1s\"\nstore = \"{store}\"\n"
            )
    };
    // A: this host, listening on the veth.
    let one = RecordingBackend::start();
    let dir_a = TempDir::new("gl-host-a");
    let conf_a = greylist(
        &dir_a,
        &server_block("One", one.port(), &["one.test"]),
        &format!("{near}:0"),
        &redis.url(),
    );
    let a = Postern::start(dir_a, &conf_a);
    // B: in the namespace, with a backend of its own there (smtp-sink).
    let far = host.addr4.to_string();
    let sink = ChildGuard(
        std::process::Command::new("ip")
            .args(["netns", "exec", &host.name, "smtp-sink", "-u", "nobody"])
            .arg(format!("{far}:2526"))
            .arg("100")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("smtp-sink (Debian's postfix)"),
    );
    let dir_b = TempDir::new("gl-host-b");
    let conf_b = greylist(
        &dir_b,
        &server_block("One", 2526, &["one.test"]).replace("127.0.0.1", &far),
        &format!("{far}:2525"),
        &format!("redis://{near}:{}/0", redis.port),
    );
    let via: Vec<String> = ["ip", "netns", "exec", &host.name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let b = Postern::start_via(dir_b, &conf_b, &[], &via);
    assert_eq!(b.addr.to_string(), format!("{far}:2525"));
    let send = |p: &Postern, from: &str| {
        swaks(
            p.addr,
            &[
                "--local-interface",
                &near,
                "--from",
                from,
                "--to",
                "u@one.test",
            ],
        )
        .0
    };
    // Passed on A, then B lets it through at once.
    assert!(send(&a, "a@sender.example").contains("<** 451 4.7.1"));
    wait_out_the_delay();
    assert!(send(&a, "a@sender.example").contains("<-  250 2.0.0"));
    let on_b = send(&b, "a@sender.example");
    assert!(on_b.contains("<-  250 2.0.0"), "{on_b}");
    // First seen on B: A knows when, and lets the retry through.
    assert!(send(&b, "c@other.example").contains("<** 451 4.7.1"));
    wait_out_the_delay();
    let on_a = send(&a, "c@other.example");
    assert!(on_a.contains("<-  250 2.0.0"), "{on_a}");
    one.wait_messages(2);
    let (_, listing, _) = greylist_cli(&b, &["search", "other.example"]);
    assert!(
        listing.starts_with(&format!(
            "passed {}.0/24 c@other.example u@one.test ",
            &near[..near.rfind('.').expect("dot")]
        )),
        "{listing}"
    );
    drop(sink);
}
