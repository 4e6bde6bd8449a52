//! `postern`: the admin command and the master process.
//!
//! `postern start` runs the master in the foreground ([`master`]); the other
//! commands are the administrator's: `check` validates a file, `config`
//! prints the effective configuration, `convert` turns a legacy XML file into
//! TOML, `log` searches the log ([`logsearch`]), `stats` prints the weekly
//! statistics ([`stats`]), and `stop`, `reload`, `status`, `restart` talk to
//! a running master over `run_dir/master.sock` ([`client`]). Errors are one
//! line on stderr and a non-zero exit status.

mod access;
mod client;
mod greylist;
mod logsearch;
mod master;
mod oneshot;
mod preflight;
mod sockets;
mod spawn;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use postern_shared::config::{Config, ConfigError, DEFAULT_PATH};

const USAGE: &str = "\
usage: postern [-c FILE] COMMAND
       postern convert FILE.xml
       postern [-c FILE] log search PATTERN [--since WHEN] | log session ID [--since WHEN]

commands:
  start     run the master in the foreground (what systemd runs)
  stop      stop a running master gracefully
  reload    re-read the configuration (same as SIGHUP)
  status    show the workers: pids, uptimes, restarts, last exit
  restart WORKER   replace smtpd, router or updater without refusing a connection
  check     validate the configuration; print every problem
  config    print the effective configuration, passwords masked
  log       log search PATTERN: find sessions; log session ID: one session's lines
  convert   print a legacy smtp-proxy.xml file as TOML
  queue [list|flush|delete ID]    the update queue (mailq / postqueue -f / postsuper -d)
  restarts [list|cancel ID]       scheduled backend restarts
  stats [--weeks N] [--json]      weekly statistics with the spam rate
  access [list|add|remove|test]   accept and reject lists for mail from the internet
  greylist [search|list|whitelist]  greylisting's lists and its manual whitelist

options:
  -c FILE   configuration file (default: $POSTERN_CONFIG, then /etc/postern/postern.toml)
  -h, --help
  -V, --version
";

fn help_for(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "start" => "usage: postern [-c FILE] start\n\nRuns the master in the foreground: validates the configuration, binds the\nlisteners, starts the router and the smtpd workers and supervises them.\nSIGHUP reloads, SIGTERM stops gracefully.\n",
        "stop" => "usage: postern [-c FILE] stop\n\nAsks the running master to stop gracefully and waits until it has exited.\n",
        "reload" => "usage: postern [-c FILE] reload\n\nAsks the running master to re-read its configuration file. An invalid file\nchanges nothing; the reason is printed and the exit status is 1.\n",
        "status" => "usage: postern [-c FILE] status\n\nShows the master and each worker: pid, uptime, restarts, last exit.\nstatus, stop and reload work when the file no longer loads: a warning says\nso and the master is found through the file's run_dir as far as it can\nstill be read, else /run/postern.\n",
        "check" => "usage: postern [-c FILE] check\n\nValidates the configuration file and runs every check of `start` on this\nmachine (worker programs, [tls] files, process.user, directories, log file).\nExit 0 when valid; otherwise every problem is printed, one per line, with\nits key, and the exit status is 1. Warnings (`warning: KEY: text`, such as a\nrelay list wider than a /8) do not fail the check.\n",
        "config" => "usage: postern [-c FILE] config\n\nPrints the effective configuration (defaults filled in), passwords masked.\n",
        "log" => logsearch::HELP,
        "convert" => "usage: postern convert FILE.xml\n\nReads a legacy smtp-proxy.xml file (ISO-8859-1 or UTF-8) and prints the\nequivalent TOML configuration on stdout, every key written out except\nproxy.hostname (the machine's host name by default). It converts without\nvalidating: run `postern -c FILE check` on the result. Passwords are printed\nas they are. Needs no -c. A file that cannot be read or parsed is one line\non stderr and exit status 1.\n",
        "restart" => "usage: postern [-c FILE] restart smtpd|router|updater\n\nReplaces one kind of worker without refusing a connection. smtpd and router:\nnew processes start on the same sockets; once they serve, the old ones stop\naccepting and finish their sessions. updater: the running one stops and the\nnext starts at once; smtpd's requests wait in the socket's backlog meanwhile.\n",
        "queue" => "usage: postern [-c FILE] queue [list|flush|delete ID]\n\nlist (the default): every update mail in the queue with each server's copy:\npending, deferred (with the reason and the next try), delivered or failed.\nflush: try every deferred copy now. delete ID: remove an update mail.\n",
        "restarts" => "usage: postern [-c FILE] restarts [list|cancel ID]\n\nlist (the default): scheduled and recent backend restarts with their state\nand outcome. cancel ID: cancel a scheduled restart.\n",
        "stats" => stats::HELP,
        "access" => access::HELP,
        "greylist" => greylist::HELP,
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
    if cmd == "-V" || cmd == "--version" {
        // The workspace's version: the workers are built and shipped with it.
        println!("postern {}", env!("CARGO_PKG_VERSION"));
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
    if cmd == "log" {
        return match Config::load(&path) {
            Ok(c) => logsearch::run(&rest[1..], &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if cmd == "convert" {
        return match &rest[1..] {
            [file] => convert(file.as_ref()),
            [] => fail("convert needs the XML file to convert; see postern convert --help"),
            [_, extra, ..] => fail(&format!("convert: unexpected argument {extra:?}")),
        };
    }
    if rest.len() > 1
        && !matches!(
            cmd.as_str(),
            "queue" | "restarts" | "restart" | "stats" | "access" | "greylist"
        )
    {
        return fail(&format!("{cmd}: unexpected argument {:?}", rest[1]));
    }
    match cmd.as_str() {
        "check" => match examine(&path) {
            Ok(c) => {
                print_warnings(&c);
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
        "queue" | "restarts" => match Config::load(&path) {
            Ok(c) => client::updater(&cmd, &rest[1..], &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "restart" => match (Config::load(&path), rest.get(1)) {
            (Ok(c), Some(worker)) if rest.len() == 2 => client::restart(worker, &c),
            (Ok(_), _) => fail("restart needs one worker kind: smtpd, router or updater"),
            (Err(e), _) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "greylist" => match Config::load(&path) {
            Ok(c) => greylist::run(&rest[1..], &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "access" => match Config::load(&path) {
            Ok(c) => access::run(&rest[1..], &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        "stats" => match Config::load(&path) {
            Ok(c) => stats::run(&rest[1..], &c),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        // These must reach a running master even when its file no longer
        // loads (issue 18 item 13): then the file says where it is as far
        // as it can still be read, and a warning says the file is broken.
        "stop" | "reload" | "status" => match Config::load(&path) {
            Ok(c) => {
                let code = client::run(&cmd, &c);
                if cmd == "reload" && code == ExitCode::SUCCESS {
                    for w in c.warnings() {
                        eprintln!("warning: {w}");
                    }
                }
                code
            }
            Err(e) => {
                let (c, from) = client::salvage(&path);
                eprintln!(
                    "warning: {}: does not load, the running master keeps its configuration ({}); its run_dir {} is {from}",
                    path.display(),
                    e.one_line(),
                    c.process.run_dir.display(),
                );
                client::run(&cmd, &c)
            }
        },
        other => fail(&format!("unknown command {other:?}; see postern --help")),
    }
}

/// The file's problems and those `start` would meet on this machine
/// ([`preflight`]), all of them: what `check` prints and `start` refuses.
fn examine(path: &std::path::Path) -> Result<Config, ConfigError> {
    let (config, mut problems) = Config::examine(path);
    if let Some(c) = &config {
        // A key the file check refused (a placeholder may stand in its
        // place) is not reported twice.
        let refused: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        problems.extend(
            preflight::problems(c)
                .into_iter()
                .filter(|p| !refused.contains(&p.key)),
        );
    }
    match config {
        Some(c) if problems.is_empty() => Ok(c),
        _ => Err(ConfigError {
            path: path.display().to_string(),
            problems,
        }),
    }
}

fn start(path: PathBuf) -> ExitCode {
    // Everything `check` checks, before anything is bound or created.
    let config = match examine(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // The log file's directory is created like run_dir, spool_dir and
    // state_dir (the master's, as systemd's LogsDirectory would be).
    if let Some(dir) = log_dir(&config) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("postern: log.file: creating {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let mut log = postern_shared::logging::Settings::of(&config.log);
    log.group = match log_group(&config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = postern_shared::logging::init_with("postern", &log) {
        eprintln!("postern: {e}");
        return ExitCode::FAILURE;
    }
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

/// The directory of `log.file`, when one is set.
fn log_dir(config: &Config) -> Option<&std::path::Path> {
    if config.log.file.is_empty() {
        return None;
    }
    std::path::Path::new(&config.log.file).parent()
}

/// The group of a new log file: the workers' group when the master (root)
/// drops them to `process.user`, so that they can reopen it after a rotation.
fn log_group(config: &Config) -> Result<Option<nix::unistd::Gid>, String> {
    let Some(name) = &config.process.user else {
        return Ok(None);
    };
    if config.log.file.is_empty() || !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(Some(u.gid)),
        Ok(None) => Err(format!("process.user {name:?} does not exist")),
        Err(e) => Err(format!("looking up user {name}: {e}")),
    }
}

/// `postern convert FILE`: the legacy file as TOML, neither defaults filled nor validated.
fn convert(path: &std::path::Path) -> ExitCode {
    let name = path.display().to_string();
    let parsed = std::fs::read(path)
        .map_err(|e| format!("{name}: cannot read: {e}"))
        .and_then(|bytes| {
            postern_shared::legacy::parse(&bytes).map_err(|e| {
                ConfigError {
                    path: name.clone(),
                    problems: vec![e.into()],
                }
                .to_string()
            })
        });
    match parsed {
        Ok(config) => {
            print!("{}", converted_toml(&config, &name));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The TOML text of a converted file, headed by where it came from.
///
/// The legacy format has no host name, so `proxy.hostname` is empty, which
/// `fill_defaults` reads as "the machine's host name". Writing `hostname = ""`
/// would be noise, and writing this machine's name would be wrong on the
/// machine the file is meant for: the line is left out.
fn converted_toml(config: &Config, source: &str) -> String {
    let mut out = format!(
        "# Converted by `postern convert` from {source:?}.\n\
         # proxy.hostname is left out: it defaults to the machine's host name.\n\n"
    );
    for line in config.to_toml().lines() {
        if config.proxy.hostname.is_empty() && line == "hostname = \"\"" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if line == "[process]" && config.process.user.is_none() {
            out.push_str(PROCESS_USER_LINES);
        }
    }
    out
}

/// What `postern convert` writes under `[process]`: the legacy proxy had no
/// workers, and without `process.user` postern's would keep the master's
/// user, root.
const PROCESS_USER_LINES: &str = "\
# Unprivileged user of the workers (the master stays root to bind port 25).
# Without this key the workers run as root. The Debian package creates the
# user postern; elsewhere create it (useradd --system postern) or name another.
user = \"postern\"
";

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

/// `warning: KEY: text` on stderr for each of [`Config::warnings`] (SPEC §8),
/// and for a missing `process.user`, which start logs when run as root.
fn print_warnings(config: &Config) {
    let mut all = config.warnings();
    if config.process.user.is_none() {
        all.push(postern_shared::config::Problem {
            key: "process.user".into(),
            message: "not set: workers started by root run as root".into(),
        });
    }
    for w in all {
        eprintln!("warning: {w}");
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("postern: {msg}");
    ExitCode::from(2)
}
