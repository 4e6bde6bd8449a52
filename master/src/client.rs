//! The admin CLI's side of `run_dir/master.sock`: one request, one reply.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use postern_shared::config::Config;
use postern_shared::proto::{self, Attrs};

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
    let reply = match ask(&sock, "master", cmd, Attrs::new().with("request", cmd)) {
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

/// `postern restart WORKER`: the master replaces that kind of worker.
pub fn restart(worker: &str, config: &Config) -> ExitCode {
    let sock = config.process.run_dir.join(CONTROL_SOCKET);
    let req = Attrs::new()
        .with("request", "restart")
        .with("worker", worker);
    match ask(&sock, "master", &format!("restart {worker}"), req) {
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

/// `postern queue …` and `postern restarts …`: one request to the updater.
pub fn updater(cmd: &str, args: &[String], config: &Config) -> ExitCode {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let req = match (cmd, words.as_slice()) {
        ("queue", [] | ["list"]) => Attrs::new().with("request", "list"),
        ("queue", ["flush"]) => Attrs::new().with("request", "flush"),
        ("queue", ["delete", id]) => Attrs::new().with("request", "delete").with("id", id),
        ("restarts", [] | ["list"]) => Attrs::new().with("request", "restarts"),
        ("restarts", ["cancel", id]) => Attrs::new().with("request", "cancel").with("id", id),
        _ => {
            eprintln!("postern: {cmd}: unexpected arguments {words:?}; see postern {cmd} --help");
            return ExitCode::from(2);
        }
    };
    let sock = config.process.run_dir.join(UPDATER_SOCKET);
    let reply = match ask(&sock, "updater", cmd, req) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match (&reply.body, words.first()) {
        (Some(body), _) => print!("{}", String::from_utf8_lossy(body)),
        (None, Some(&"flush")) => println!(
            "postern: {} deferred copies will be tried now",
            reply.get("count").unwrap_or("0")
        ),
        (None, Some(&"delete")) => println!("postern: deleted"),
        (None, Some(&"cancel")) => println!("postern: cancelled"),
        _ => {}
    }
    ExitCode::SUCCESS
}

/// One request to `who` at `sock`; an error (no answer, or not `status=ok`)
/// is printed as one line and becomes the exit status.
fn ask(sock: &std::path::Path, who: &str, cmd: &str, req: Attrs) -> Result<Attrs, ExitCode> {
    let reply = request(sock, req).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
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
    if reply.get("status") != Some("ok") {
        eprintln!(
            "postern: {cmd} failed: {}",
            reply.get("reason").unwrap_or("no reason given")
        );
        return Err(ExitCode::FAILURE);
    }
    Ok(reply)
}

fn request(sock: &std::path::Path, req: Attrs) -> std::io::Result<Attrs> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(sock).await?;
        let mut conn = tokio::io::BufStream::new(stream);
        proto::write(&mut conn, &req)
            .await
            .map_err(std::io::Error::other)?;
        // A reload waits for every worker's acknowledgement; allow for that.
        match tokio::time::timeout(Duration::from_secs(30), proto::read(&mut conn)).await {
            Err(_) => Err(std::io::Error::other("no answer within 30s")),
            Ok(r) => r.map_err(std::io::Error::other)?.ok_or_else(|| {
                std::io::Error::other("the master closed the connection without answering")
            }),
        }
    })
}
