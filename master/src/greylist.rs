//! `postern greylist search|list|whitelist` (SPEC §8, seed 001 §10): the
//! greylisting views and the manual whitelist, through the running router,
//! which owns the store (its file is locked while postern runs).

use std::process::ExitCode;

use postern_shared::config::Config;
use postern_shared::proto::Attrs;

use crate::cli::{GreylistCommand, WhitelistCommand};
use crate::master::{running_pid, PID_FILE, ROUTER_SOCKET};

/// Runs `postern greylist …`.
pub fn run(command: GreylistCommand, config: &Config) -> ExitCode {
    let mut done = None;
    let req = match &command {
        GreylistCommand::Export => Attrs::new().with("request", "greylist-export"),
        GreylistCommand::Import { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                    Ok(_) => s,
                    Err(e) => {
                        eprintln!("postern: greylist: cannot read standard input: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                match std::fs::read_to_string(file) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("postern: greylist: cannot read {}: {e}", file.display());
                        return ExitCode::FAILURE;
                    }
                }
            };
            Attrs::new()
                .with("request", "greylist-import")
                .with_body(text.into_bytes())
        }
        GreylistCommand::Search { pattern } => Attrs::new()
            .with("request", "greylist-search")
            .with("pattern", pattern),
        GreylistCommand::List {
            pending,
            passed,
            by,
        } => {
            let mut req = Attrs::new().with("request", "greylist-list");
            if *pending {
                req = req.with("which", "pending");
            } else if *passed {
                req = req.with("which", "passed");
            }
            if let Some(by) = by {
                req = req.with("by", by);
            }
            req
        }
        GreylistCommand::Whitelist { command } => match command {
            None | Some(WhitelistCommand::List) => Attrs::new()
                .with("request", "greylist-whitelist")
                .with("op", "list"),
            Some(WhitelistCommand::Add {
                kind,
                pattern,
                comment,
            }) => {
                done = Some(format!("added {kind} {pattern}"));
                let mut req = Attrs::new()
                    .with("request", "greylist-whitelist")
                    .with("op", "add")
                    .with("kind", kind)
                    .with("pattern", pattern);
                if let Some(c) = comment {
                    req = req.with("comment", c);
                }
                if let Ok(by) = std::env::var("SUDO_USER") {
                    req = req.with("by", by);
                }
                req
            }
            Some(WhitelistCommand::Remove { kind, pattern }) => {
                done = Some(format!("removed {kind} {pattern}"));
                Attrs::new()
                    .with("request", "greylist-whitelist")
                    .with("op", "remove")
                    .with("kind", kind)
                    .with("pattern", pattern)
            }
        },
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
    if let Some(done) = done {
        println!("postern: greylist: whitelist {done}");
        return ExitCode::SUCCESS;
    }
    let body = String::from_utf8_lossy(reply.body.as_deref().unwrap_or_default()).into_owned();
    print!("{body}");
    match command {
        GreylistCommand::Search { .. } if reply.get("count") == Some("0") => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}
