//! `postern greylist search|list|whitelist` (SPEC §8, seed 001 §10): the
//! greylisting views and the manual whitelist, through the running router,
//! which owns the store (its file is locked while postern runs).

use std::process::ExitCode;

use postern_shared::config::Config;
use postern_shared::proto::Attrs;

use crate::master::{running_pid, PID_FILE, ROUTER_SOCKET};

/// `postern greylist --help`.
pub const HELP: &str = "\
usage: postern [-c FILE] greylist search PATTERN
       postern [-c FILE] greylist list [--pending|--passed] [--by sender|recipient|ip]
       postern [-c FILE] greylist whitelist [list]
       postern [-c FILE] greylist whitelist add (ip|from|to) PATTERN [--comment TEXT]
       postern [-c FILE] greylist whitelist remove (ip|from|to) PATTERN

search: every entry of both lists whose sender or recipient contains PATTERN
(an address or a domain), or whose network holds it (an IP or a network):
one line per entry (list, network, sender, recipient, first seen, last seen,
count); exit status 0 with matches, 1 with none.
list: the pending list (--pending: greylisted, waiting for a retry) and the
auto-whitelist (--passed), sorted by network (the default), sender or
recipient.
whitelist: clients (ip: an address or a network), senders or recipients
(from, to: an address or a domain) never greylisted; the comment defaults to
the date, the time and who added it. In force at once.
";

/// Runs `postern greylist ARGS`.
pub fn run(args: &[String], config: &Config) -> ExitCode {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let req = match words.as_slice() {
        ["search", pattern] => Attrs::new()
            .with("request", "greylist-search")
            .with("pattern", *pattern),
        ["list", rest @ ..] => {
            let mut req = Attrs::new().with("request", "greylist-list");
            let mut rest = rest.iter();
            while let Some(w) = rest.next() {
                match *w {
                    "--pending" => req = req.with("which", "pending"),
                    "--passed" => req = req.with("which", "passed"),
                    "--by" => match rest.next().copied() {
                        Some(by @ ("sender" | "recipient" | "ip")) => req = req.with("by", by),
                        _ => return usage("--by takes sender, recipient or ip"),
                    },
                    other => return usage(&format!("unexpected argument {other:?}")),
                }
            }
            req
        }
        ["whitelist"] | ["whitelist", "list"] => Attrs::new()
            .with("request", "greylist-whitelist")
            .with("op", "list"),
        ["whitelist", op @ ("add" | "remove"), kind, pattern, rest @ ..] => {
            let mut req = Attrs::new()
                .with("request", "greylist-whitelist")
                .with("op", *op)
                .with("kind", *kind)
                .with("pattern", *pattern);
            match (rest, *op) {
                ([], _) => {}
                (["--comment", text], "add") => req = req.with("comment", *text),
                _ => return usage("whitelist add takes --comment TEXT; remove takes nothing more"),
            }
            if let Ok(by) = std::env::var("SUDO_USER") {
                req = req.with("by", by);
            }
            req
        }
        [] => return usage("needs search, list or whitelist"),
        [other, ..] => return usage(&format!("unknown greylist command {other:?}")),
    };
    if running_pid(&config.process.run_dir.join(PID_FILE)).is_none() {
        eprintln!("postern: greylist: postern is not running (the router owns the greylist store)");
        return ExitCode::FAILURE;
    }
    let sock = config.process.run_dir.join(ROUTER_SOCKET);
    let reply = match crate::oneshot::router(&sock, req) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "postern: greylist: the router at {} did not answer: {e}",
                sock.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if reply.get("status") != Some("ok") {
        eprintln!(
            "postern: greylist: {}",
            reply.get("reason").unwrap_or("refused")
        );
        return ExitCode::FAILURE;
    }
    if let ["whitelist", op @ ("add" | "remove"), kind, pattern, ..] = words.as_slice() {
        let done = if *op == "add" { "added" } else { "removed" };
        println!("postern: greylist: whitelist {done} {kind} {pattern}");
        return ExitCode::SUCCESS;
    }
    let body = String::from_utf8_lossy(reply.body.as_deref().unwrap_or_default()).into_owned();
    print!("{body}");
    match words.first() {
        Some(&"search") if reply.get("count") == Some("0") => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("postern: greylist: {msg}; see postern greylist --help");
    ExitCode::from(2)
}
