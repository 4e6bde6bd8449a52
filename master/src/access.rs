//! `postern access list|add|remove|test` (SPEC §8): the access lists.
//!
//! While postern runs, every command goes to the router, which owns the
//! file: a change is written and in force when the command returns, and the
//! verdict of `test` is the one a client would get. When postern is not
//! running, `list` and `test` read the file and `add`/`remove` write it
//! (atomically, owned like its directory so that the router can write it
//! later); the router reads it at its start.

use std::path::Path;
use std::process::ExitCode;

use postern_shared::access::{is_date, AccessFile, AccessIndex, Action, Entry, Method, Pattern};
use postern_shared::config::Config;
use postern_shared::ipc::policy::{access_verdict, Query, Verdict as PolicyVerdict};
use postern_shared::ipc::Outcome;
use postern_shared::ipc::{self, RouterRequest};
use postern_shared::stats::Day;

use crate::cli::{self, AccessCommand};
use crate::master::{running_pid, PID_FILE, ROUTER_SOCKET};

/// Runs `postern access COMMAND` (`list` when none is given).
pub fn run(command: Option<AccessCommand>, config: &Config) -> ExitCode {
    let result = match command {
        None => list(None, None, false, config),
        Some(AccessCommand::List {
            action,
            method,
            expired,
        }) => list(action.as_deref(), method.as_deref(), expired, config),
        Some(AccessCommand::Add {
            entry,
            comment,
            keep_until,
        }) => change(
            true,
            &entry,
            comment.as_deref().unwrap_or_default(),
            keep_until.as_deref(),
            config,
        ),
        Some(AccessCommand::Remove { entry }) => change(false, &entry, "", None, config),
        Some(AccessCommand::Test {
            client,
            helo,
            from,
            to,
        }) => test(
            &client,
            helo.as_deref(),
            from.as_deref().unwrap_or_default(),
            &to,
            config,
        ),
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("postern: access: {msg}; see postern access --help");
            ExitCode::from(2)
        }
    }
}

/// A command line that does not parse: exit status 2.
struct Usage(String);

/// The router socket when postern runs, else `None`.
fn router(config: &Config) -> Option<std::path::PathBuf> {
    running_pid(&config.process.run_dir.join(PID_FILE))
        .map(|_| config.process.run_dir.join(ROUTER_SOCKET))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("postern: access: {msg}");
    ExitCode::FAILURE
}

fn list(
    action: Option<&str>,
    method: Option<&str>,
    expired: bool,
    config: &Config,
) -> Result<ExitCode, Usage> {
    let method = method
        .map(|m| m.parse::<Method>().map_err(Usage))
        .transpose()?;
    let action = action
        .map(|a| a.parse::<Action>().map_err(Usage))
        .transpose()?;
    let file = match router(config) {
        Some(sock) => {
            let reply = match ipc::oneshot::ROUTER
                .call_blocking(&sock, RouterRequest::AccessList.encode())
                .map_err(|e| e.to_string())
            {
                Ok(r) if Outcome::is_ok(&r) => r,
                Ok(r) => return Ok(fail(Outcome::reason_in(&r).unwrap_or("the router refused"))),
                Err(e) => {
                    return Ok(fail(format!(
                        "the router at {} did not answer: {e}",
                        sock.display()
                    )))
                }
            };
            let text =
                String::from_utf8_lossy(reply.body.as_deref().unwrap_or_default()).into_owned();
            match AccessFile::parse(&text) {
                Ok(f) => f,
                Err(e) => return Ok(fail(e)),
            }
        }
        None => match AccessFile::load(&config.access_file()) {
            Ok(f) => f,
            Err(e) => return Ok(fail(e)),
        },
    };
    let today = Day::today().to_string();
    let shown: Vec<&Entry> = file
        .entries
        .iter()
        .filter(|e| action.is_none_or(|a| e.action == a))
        .filter(|e| method.is_none_or(|m| e.method == m))
        .filter(|e| !expired || e.expired(&today))
        .collect();
    print!("{}", table(&shown, &today));
    Ok(ExitCode::SUCCESS)
}

/// One line per entry under a header; a keep-until date that has passed is
/// marked with `*` and explained below the table.
fn table(entries: &[&Entry], today: &str) -> String {
    if entries.is_empty() {
        return "no access entries\n".to_string();
    }
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let keep = match &e.keep_until {
                Some(k) if e.expired(today) => format!("{k}*"),
                Some(k) => k.clone(),
                None => "-".into(),
            };
            [
                e.action.as_str().to_string(),
                e.method.as_str().to_string(),
                e.pattern.to_string(),
                keep,
                e.added.clone().unwrap_or_else(|| "-".into()),
                e.added_by.clone().unwrap_or_else(|| "-".into()),
                e.comment.clone(),
            ]
        })
        .collect();
    let header = [
        "ACTION",
        "METHOD",
        "PATTERN",
        "KEEP_UNTIL",
        "ADDED",
        "ADDED_BY",
        "COMMENT",
    ];
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(header.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(width).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if entries.iter().any(|e| e.expired(today)) {
        out.push_str("* keep_until has passed: review the entry (nothing is removed by itself)\n");
    }
    out
}

/// `add` (with its comment and keep-until date) or `remove` of an entry.
fn change(
    add: bool,
    entry: &cli::Entry,
    comment: &str,
    keep_until: Option<&str>,
    config: &Config,
) -> Result<ExitCode, Usage> {
    let action: Action = entry.action.parse().map_err(Usage)?;
    let method: Method = entry.method.parse().map_err(Usage)?;
    let parsed = match Pattern::parse(method, &entry.pattern) {
        Ok(p) => p,
        Err(e) => return Ok(fail(format!("{} {} {e}", action.as_str(), method.as_str()))),
    };
    if let Some(k) = keep_until.filter(|k| !is_date(k)) {
        return Ok(fail(format!(
            "--keep-until {k:?} is not a date such as 2027-01-31"
        )));
    }
    if comment.contains(['\r', '\n']) {
        return Ok(fail("--comment must be one line"));
    }
    let what = format!("{} {} {parsed}", action.as_str(), method.as_str());
    let by = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty());
    if let Some(sock) = router(config) {
        let (action, method, pattern) = (
            action.as_str().to_string(),
            method.as_str().to_string(),
            parsed.to_string(),
        );
        let req = if add {
            RouterRequest::AccessAdd {
                action,
                method,
                pattern,
                comment: Some(comment.to_string()),
                keep_until: keep_until.map(|k| k.to_string()),
                by: by.clone(),
            }
        } else {
            RouterRequest::AccessRemove {
                action,
                method,
                pattern,
            }
        }
        .encode();
        return Ok(
            match ipc::oneshot::ROUTER
                .call_blocking(&sock, req)
                .map_err(|e| e.to_string())
            {
                Ok(r) if Outcome::is_ok(&r) => {
                    println!(
                        "postern: access: {} {what}",
                        if add { "added" } else { "removed" }
                    );
                    ExitCode::SUCCESS
                }
                Ok(r) if Outcome::is_not_found(&r) => fail(format!("{what} is not listed")),
                Ok(r) => fail(Outcome::reason_in(&r).unwrap_or("the router refused")),
                Err(e) => fail(format!(
                    "the router at {} did not answer: {e}",
                    sock.display()
                )),
            },
        );
    }
    // Not running: the file itself.
    let path = config.access_file();
    let mut file = match AccessFile::load(&path) {
        Ok(f) => f,
        Err(e) => return Ok(fail(e)),
    };
    if add {
        let user = by.or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        });
        let entry = Entry {
            action,
            method,
            pattern: parsed,
            comment: comment.to_string(),
            keep_until: keep_until.map(str::to_string),
            added: Some(
                postern_shared::runtime::logging::Timestamp(std::time::SystemTime::now())
                    .to_string(),
            ),
            added_by: user,
        };
        if let Err(e) = file.add(entry) {
            return Ok(fail(e));
        }
    } else if !file.remove(action, method, &parsed) {
        return Ok(fail(format!("{what} is not listed")));
    }
    if let Err(e) = save_like_its_directory(&file, &path) {
        return Ok(fail(format!("cannot write {}: {e}", path.display())));
    }
    println!(
        "postern: access: {} {what} (postern is not running: {} is read at its start)",
        if add { "added" } else { "removed" },
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the file, then gives it to its directory's owner: written by
/// root while postern is stopped, it must stay writable by the router.
fn save_like_its_directory(file: &AccessFile, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    file.save(path)?;
    if let Some(dir) = path.parent() {
        let meta = std::fs::metadata(dir)?;
        if nix::unistd::getuid().is_root() {
            nix::unistd::chown(path, Some(meta.uid().into()), Some(meta.gid().into()))
                .map_err(std::io::Error::from)?;
        }
    }
    Ok(())
}

/// The verdict for one recipient: `--client`, `--helo`, `--from`, `--to`.
fn test(
    client: &str,
    helo: Option<&str>,
    from: &str,
    to: &str,
    config: &Config,
) -> Result<ExitCode, Usage> {
    let Ok(ip) = client.parse::<std::net::IpAddr>() else {
        return Err(Usage(format!("--client {client:?} is not an IP address")));
    };
    let bare = |a: &str| a.trim_start_matches('<').trim_end_matches('>').to_string();
    let (from, to) = (bare(from), bare(to));
    let q = Query {
        sid: "test".into(),
        client: ip,
        client_name: None,
        helo: helo.map(str::to_string),
        sender: from,
        recipient: to,
        improper_pipelining: false,
        dry: true,
    };
    match router(config) {
        Some(sock) => Ok(
            match ipc::oneshot::ROUTER
                .call_blocking(&sock, q.to_attrs())
                .map_err(|e| e.to_string())
            {
                Ok(r) if Outcome::is_ok(&r) => match PolicyVerdict::from_attrs(&r) {
                    Some(v) => {
                        print!("{}", v.describe());
                        ExitCode::SUCCESS
                    }
                    None => fail("the router's answer is not a verdict"),
                },
                Ok(r) => fail(Outcome::reason_in(&r).unwrap_or("the router could not decide")),
                Err(e) => fail(format!(
                    "the router at {} did not answer: {e}",
                    sock.display()
                )),
            },
        ),
        None => {
            let file = match AccessFile::load(&config.access_file()) {
                Ok(f) => f,
                Err(e) => return Ok(fail(e)),
            };
            print!(
                "{}",
                access_verdict(&AccessIndex::new(&file), &q).describe()
            );
            println!(
                "(postern is not running: the verdict of {})",
                config.access_file().display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
