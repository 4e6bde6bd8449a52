//! `postern`: the admin command and the master process.
//!
//! `postern start` runs the master in the foreground ([`master`]); the other
//! commands are the administrator's: `check` validates a file, `config`
//! prints the effective configuration, and `stop`, `reload`, `status` talk to a
//! running master over `run_dir/master.sock` ([`client`]). Errors are one line
//! on stderr and a non-zero exit status.

mod client;
mod master;
mod sockets;
mod spawn;

use std::path::PathBuf;
use std::process::ExitCode;

use postern_shared::config::{Config, DEFAULT_PATH};

const USAGE: &str = "\
usage: postern [-c FILE] COMMAND

commands:
  start     run the master in the foreground (what systemd runs)
  stop      stop a running master gracefully
  reload    re-read the configuration (same as SIGHUP)
  status    show the workers: pids, uptimes, restarts, last exit
  check     validate the configuration; print every problem
  config    print the effective configuration, passwords masked

options:
  -c FILE   configuration file (default: $POSTERN_CONFIG, then /etc/postern/postern.toml)
  -h, --help
";

fn help_for(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "start" => "usage: postern [-c FILE] start\n\nRuns the master in the foreground: validates the configuration, binds the\nlisteners, starts the router and the smtpd workers and supervises them.\nSIGHUP reloads, SIGTERM stops gracefully.\n",
        "stop" => "usage: postern [-c FILE] stop\n\nAsks the running master to stop gracefully and waits until it has exited.\n",
        "reload" => "usage: postern [-c FILE] reload\n\nAsks the running master to re-read its configuration file. An invalid file\nchanges nothing; the reason is printed and the exit status is 1.\n",
        "status" => "usage: postern [-c FILE] status\n\nShows the master and each worker: pid, uptime, restarts, last exit.\n",
        "check" => "usage: postern [-c FILE] check\n\nValidates the configuration file. Exit 0 when valid; otherwise every\nproblem is printed, one per line, and the exit status is 1.\n",
        "config" => "usage: postern [-c FILE] config\n\nPrints the effective configuration (defaults filled in), passwords masked.\n",
        _ => return None,
    })
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-c" | "--config" => match args.next() {
                Some(p) => config_path = Some(p.into()),
                None => return fail("-c needs a file name"),
            },
            _ => rest.push(a),
        }
    }
    let path = config_path
        .or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let Some(cmd) = rest.first().cloned() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "-h" || cmd == "--help" || cmd == "help" {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if rest.iter().skip(1).any(|a| a == "-h" || a == "--help") {
        return match help_for(&cmd) {
            Some(h) => {
                print!("{h}");
                ExitCode::SUCCESS
            }
            None => fail(&format!("unknown command {cmd:?}; see postern --help")),
        };
    }
    if rest.len() > 1 {
        return fail(&format!("{cmd}: unexpected argument {:?}", rest[1]));
    }
    match cmd.as_str() {
        "check" => match Config::load(&path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "config" => match Config::load(&path) {
            Ok(c) => {
                print!("{}", masked(c).to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "start" => start(path),
        "stop" | "reload" | "status" => match Config::load(&path) {
            Ok(c) => client::run(&cmd, &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        other => fail(&format!("unknown command {other:?}; see postern --help")),
    }
}

fn start(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    postern_shared::logging::init("postern", Some(&config.log.level));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(master::run(path, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, which is also where the log goes (and, under
            // systemd, the journal).
            eprintln!("postern: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn masked(mut c: Config) -> Config {
    const MASK: &str = "********";
    if c.proxy.admin_password.is_some() {
        c.proxy.admin_password = Some(MASK.into());
    }
    for s in &mut c.servers {
        if s.password.is_some() {
            s.password = Some(MASK.into());
        }
    }
    c
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("postern: {msg}");
    ExitCode::from(2)
}
