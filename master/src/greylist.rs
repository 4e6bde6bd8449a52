//! `postern greylist search|list|whitelist` (SPEC §8, seed 001 §10): the
//! greylisting views and the manual whitelist, through the running router,
//! which owns the store (its file is locked while postern runs).

use std::process::ExitCode;

use postern_shared::config::Config;
use postern_shared::ipc::Outcome;
use postern_shared::ipc::{self, RouterRequest};

use crate::cli::{GreylistCommand, WhitelistCommand};
use crate::master::{running_pid, PID_FILE, ROUTER_SOCKET};

/// Runs `postern greylist …`.
pub fn run(command: GreylistCommand, config: &Config) -> ExitCode {
    let mut done = None;
    let req = match &command {
        GreylistCommand::Export => RouterRequest::GreylistExport,
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
            RouterRequest::GreylistImport {
                text: text.into_bytes(),
            }
        }
        GreylistCommand::Search { pattern } => RouterRequest::GreylistSearch {
            pattern: pattern.to_string(),
        },
        GreylistCommand::List {
            pending,
            passed,
            by,
        } => {
            let which = if *pending {
                Some("pending".to_string())
            } else if *passed {
                Some("passed".to_string())
            } else {
                None
            };
            RouterRequest::GreylistList {
                which,
                by: by.as_ref().map(|b| b.to_string()),
            }
        }
        GreylistCommand::Whitelist { command } => match command {
            None | Some(WhitelistCommand::List) => RouterRequest::GreylistWhitelist {
                op: "list".into(),
                kind: String::new(),
                pattern: String::new(),
                comment: None,
                by: None,
            },
            Some(WhitelistCommand::Add {
                kind,
                pattern,
                comment,
            }) => {
                done = Some(format!("added {kind} {pattern}"));
                RouterRequest::GreylistWhitelist {
                    op: "add".into(),
                    kind: kind.to_string(),
                    pattern: pattern.to_string(),
                    comment: comment.as_ref().map(|c| c.to_string()),
                    by: std::env::var("SUDO_USER").ok(),
                }
            }
            Some(WhitelistCommand::Remove { kind, pattern }) => {
                done = Some(format!("removed {kind} {pattern}"));
                RouterRequest::GreylistWhitelist {
                    op: "remove".into(),
                    kind: kind.to_string(),
                    pattern: pattern.to_string(),
                    comment: None,
                    by: None,
                }
            }
        },
    };
    if running_pid(&config.process.run_dir.join(PID_FILE)).is_none() {
        eprintln!("postern: greylist: postern is not running (the router owns the greylist store)");
        return ExitCode::FAILURE;
    }
    let sock = config.process.run_dir.join(ROUTER_SOCKET);
    let reply = match ipc::oneshot::ROUTER
        .call_blocking(&sock, req.encode())
        .map_err(|e| e.to_string())
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "postern: greylist: the router at {} did not answer: {e}",
                sock.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if !Outcome::is_ok(&reply) {
        eprintln!(
            "postern: greylist: {}",
            Outcome::reason_in(&reply).unwrap_or("refused")
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
