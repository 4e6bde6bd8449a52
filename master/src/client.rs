//! The admin CLI's side of `run_dir/master.sock`: one request, one reply.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use postern_shared::config::Config;
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::Outcome;
use postern_shared::ipc::{oneshot, ControlRequest, UpdaterReply, UpdaterRequest};

use crate::master::{running_pid, CONTROL_SOCKET, PID_FILE, UPDATER_SOCKET};

/// Sends `request=<cmd>` to the running master and prints its answer.
pub fn run(cmd: &str, config: &Config) -> ExitCode {
    let run_dir = &config.process.run_dir;
    let sock = run_dir.join(CONTROL_SOCKET);
    let pid_file = run_dir.join(PID_FILE);
    if let Err(e) = std::fs::File::open(&pid_file) {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            eprintln!(
                "postern: {cmd}: permission denied: cannot read {} (run it as root or as the master's user)",
                pid_file.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let master_pid = running_pid(&pid_file);
    if master_pid.is_none() {
        eprintln!(
            "postern: not running (no live pid in {})",
            pid_file.display()
        );
        return ExitCode::FAILURE;
    }
    let req = match cmd {
        "status" => ControlRequest::Status,
        "reload" => ControlRequest::Reload,
        "stop" => ControlRequest::Stop,
        _ => {
            eprintln!("postern: {cmd}: not a request of the master");
            return ExitCode::FAILURE;
        }
    };
    let reply = match ask(&sock, &oneshot::MASTER, cmd, req.encode()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match cmd {
        "status" => {
            if let Some(body) = &reply.body {
                print!("{}", String::from_utf8_lossy(body));
            }
        }
        "reload" => println!("postern: configuration reloaded"),
        "stop" => {
            // Wait for the master to finish draining and exit.
            let limit = config.process.stop_timeout.0 + Duration::from_secs(15);
            let start = Instant::now();
            while running_pid(&pid_file).is_some() {
                if start.elapsed() > limit {
                    eprintln!("postern: the master is still running after {limit:?}");
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            println!("postern: stopped");
        }
        _ => {}
    }
    ExitCode::SUCCESS
}

/// What the CLI knows of a configuration file that does not load, so that
/// `status`, `stop` and `reload` still reach the running master: the file's
/// `process.run_dir` (and `stop_timeout`) as far as the file can still be
/// read, else the defaults; and where the run_dir came from, for the warning.
///
/// In order: the file parses but does not validate (its values are used);
/// it is TOML with wrong types elsewhere (its `[process]` table is read
/// key by key); it is not even TOML (the `run_dir = "…"` line under a
/// `[process]` header); otherwise the default `/run/postern`.
pub fn salvage(path: &Path) -> (Config, &'static str) {
    let mut config = Config::default();
    let Ok(bytes) = std::fs::read(path) else {
        return (config, "the default (the file cannot be read)");
    };
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
    {
        // The legacy format has no run_dir.
        return (config, "the default");
    }
    let text = String::from_utf8_lossy(&bytes);
    if let Ok(c) = Config::parse(&text) {
        return (c, "from the file");
    }
    let mut found = None;
    if let Ok(table) = text.parse::<toml::Table>() {
        let process = table.get("process").and_then(|p| p.as_table());
        if let Some(p) = process {
            found = p.get("run_dir").and_then(|d| d.as_str()).map(PathBuf::from);
            if let Some(t) = p
                .get("stop_timeout")
                .and_then(|t| t.as_str())
                .and_then(|t| postern_shared::config::Duration::parse(t).ok())
            {
                config.process.stop_timeout = t;
            }
        }
    } else {
        found = run_dir_line(&text);
    }
    match found.filter(|d| d.is_absolute()) {
        Some(d) => {
            config.process.run_dir = d;
            (config, "from the file")
        }
        None => (config, "the default"),
    }
}

/// The value of a `run_dir = "…"` line under a `[process]` header, read
/// line by line from a file that is not valid TOML.
fn run_dir_line(text: &str) -> Option<PathBuf> {
    let mut in_process = false;
    for line in text.lines() {
        let l = line.trim();
        if let Some(header) = l.strip_prefix('[') {
            in_process = header
                .split(']')
                .next()
                .is_some_and(|h| h.trim() == "process");
            continue;
        }
        if !in_process {
            continue;
        }
        let Some(value) = l
            .strip_prefix("run_dir")
            .and_then(|r| r.trim_start().strip_prefix('='))
        else {
            continue;
        };
        let v = value.trim();
        let quoted = v
            .strip_prefix('"')
            .and_then(|q| q.split_once('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|q| q.split_once('\'')));
        if let Some((dir, _)) = quoted {
            return Some(PathBuf::from(dir));
        }
    }
    None
}

/// `postern restart WORKER`: the master replaces that kind of worker.
pub fn restart(worker: &str, config: &Config) -> ExitCode {
    let sock = config.process.run_dir.join(CONTROL_SOCKET);
    let req = ControlRequest::Restart {
        worker: worker.to_string(),
    }
    .encode();
    match ask(&sock, &oneshot::MASTER, &format!("restart {worker}"), req) {
        Ok(r) => {
            println!(
                "postern: {worker} restarted ({} process(es))",
                r.get("count").unwrap_or("?")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// What `postern queue …` and `postern restarts …` ask the updater.
pub enum UpdaterAsk {
    /// `queue [list]`.
    Queue,
    /// `queue flush`.
    Flush,
    /// `queue delete ID`.
    Delete(String),
    /// `restarts [list]`.
    Restarts,
    /// `restarts cancel ID`.
    Cancel(String),
}

/// `postern queue …` and `postern restarts …`: one request to the updater.
pub fn updater(ask_for: UpdaterAsk, config: &Config) -> ExitCode {
    let (cmd, req) = match &ask_for {
        UpdaterAsk::Queue => ("queue", UpdaterRequest::List),
        UpdaterAsk::Flush => ("queue", UpdaterRequest::Flush),
        UpdaterAsk::Delete(id) => ("queue", UpdaterRequest::Delete { id: id.clone() }),
        UpdaterAsk::Restarts => ("restarts", UpdaterRequest::Restarts),
        UpdaterAsk::Cancel(id) => ("restarts", UpdaterRequest::Cancel { id: id.clone() }),
    };
    let sock = config.process.run_dir.join(UPDATER_SOCKET);
    let reply = match ask(&sock, &oneshot::UPDATER, cmd, req.encode()) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match (UpdaterReply::decode(&reply), &ask_for) {
        (Some(UpdaterReply::Text(body)), _) => print!("{}", String::from_utf8_lossy(&body)),
        (Some(UpdaterReply::Flushed { count }), _) => {
            println!("postern: {count} deferred copies will be tried now")
        }
        (_, UpdaterAsk::Flush) => println!("postern: 0 deferred copies will be tried now"),
        (_, UpdaterAsk::Delete(_)) => println!("postern: deleted"),
        (_, UpdaterAsk::Cancel(_)) => println!("postern: cancelled"),
        _ => {}
    }
    ExitCode::SUCCESS
}

/// One request to `who` at `sock`; an error (no answer, or not `status=ok`)
/// is printed as one line and becomes the exit status.
/// One request to the master or the updater; its reply when `status=ok`,
/// else what went wrong is printed and the exit code returned.
fn ask(
    sock: &std::path::Path,
    server: &oneshot::Server,
    cmd: &str,
    req: Attrs,
) -> Result<Attrs, ExitCode> {
    let who = server.name;
    let reply = server.call_blocking(sock, req).map_err(|e| {
        if e.is_permission_denied() {
            // Not "not running": the socket is there, this user may not use it.
            eprintln!(
                "postern: {cmd}: permission denied: cannot talk to the {who} at {} (run it as root or as the master's user)",
                sock.display()
            );
        } else {
            eprintln!(
                "postern: cannot talk to the {who} at {}: {e}",
                sock.display()
            );
        }
        ExitCode::FAILURE
    })?;
    if !Outcome::is_ok(&reply) {
        eprintln!(
            "postern: {cmd} failed: {}",
            Outcome::reason_in(&reply).unwrap_or("no reason given")
        );
        return Err(ExitCode::FAILURE);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_file_still_names_its_run_dir() {
        let dir = std::env::temp_dir().join(format!("postern-salvage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("p.toml");
        let cases = [
            // Valid TOML, invalid values.
            (
                "[process]\nrun_dir = \"/x/one\"\nsmtpd_processes = 0\n",
                "/x/one",
            ),
            // A type error elsewhere.
            (
                "[proxy]\nmax_recipients = \"many\"\n[process]\nrun_dir = \"/x/two\"\n",
                "/x/two",
            ),
            // Not TOML at all.
            (
                "[proxy\nlisten = \n[process] # ours\n run_dir = '/x/three'\n",
                "/x/three",
            ),
            ("[proxy\nrun_dir = \"/x/not-process\"\n", "/run/postern"),
            ("[process]\nrun_dir = \"relative\"\nbad =\n", "/run/postern"),
        ];
        for (text, want) in cases {
            std::fs::write(&file, text).expect("write");
            let (c, _) = salvage(&file);
            assert_eq!(c.process.run_dir, PathBuf::from(want), "{text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
