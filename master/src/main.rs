//! `postern`: the admin command and the master process.
//!
//! `postern start` runs the master in the foreground ([`master`]); the other
//! commands are the administrator's: `check` validates a file, `config`
//! prints the effective configuration, `convert` turns a legacy XML file into
//! TOML, `log` searches the log ([`logsearch`]), `stats` prints the weekly
//! statistics ([`stats`]), and `stop`, `reload`, `status`, `restart` talk to
//! a running master over `run_dir/master.sock` ([`client`]), `access` edits
//! the access lists ([`access`]), `queue` and `restarts` ask the updater.
//! The command line itself (every command, option and help text, the
//! completions and the generated manual page) is [`cli`]; this file only
//! dispatches. Errors are one line on stderr and a non-zero exit status: 2
//! for a usage mistake, 1 for a command that failed.

mod access;
mod alias;
mod cli;
mod client;
mod greylist;
mod logsearch;
mod master;
mod preflight;
mod sockets;
mod spawn;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_shared::config::{Config, ConfigError, DEFAULT_PATH};

use cli::{Command, LogCommand, QueueCommand, RestartsCommand};
use client::UpdaterAsk;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let path = cli
        .config
        .or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| DEFAULT_PATH.into());
    match cli.command {
        Command::Start => start(path),
        Command::Check => match examine(&path) {
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
        Command::Config => with_config(&path, |c| {
            print!("{}", masked(c.clone()).to_toml());
            print!("{}", alias::served_domains(&c));
            ExitCode::SUCCESS
        }),
        Command::Stop => control("stop", &path),
        Command::Reload => control("reload", &path),
        Command::Status => control("status", &path),
        Command::Restart { worker } => with_config(&path, |c| client::restart(&worker, &c)),
        Command::Log { command } => with_config(&path, |c| match &command {
            LogCommand::Search { pattern, since } => {
                logsearch::run(logsearch::Query::Search(pattern), since.as_deref(), &c)
            }
            LogCommand::Session { id, since } => {
                logsearch::run(logsearch::Query::Session(id), since.as_deref(), &c)
            }
            LogCommand::Refused { address, since } => logsearch::run(
                logsearch::Query::Refused(address.as_deref()),
                since.as_deref(),
                &c,
            ),
        }),
        Command::Convert { file } => convert(&file),
        Command::Queue { command } => {
            let ask = match command {
                None | Some(QueueCommand::List) => UpdaterAsk::Queue,
                Some(QueueCommand::Flush) => UpdaterAsk::Flush,
                Some(QueueCommand::Delete { id }) => UpdaterAsk::Delete(id),
            };
            with_config(&path, |c| client::updater(ask, &c))
        }
        Command::Restarts { command } => {
            let ask = match command {
                None | Some(RestartsCommand::List) => UpdaterAsk::Restarts,
                Some(RestartsCommand::Cancel { id }) => UpdaterAsk::Cancel(id),
            };
            with_config(&path, |c| client::updater(ask, &c))
        }
        Command::Stats { weeks, json } => with_config(&path, |c| stats::run(weeks, json, &c)),
        Command::Access { command } => with_config(&path, |c| access::run(command, &c)),
        Command::Greylist { command } => with_config(&path, |c| greylist::run(command, &c)),
        Command::Alias { command } => with_config(&path, |c| alias::run(command, &c, &path)),
        Command::Completions { shell } => cli::completions(shell),
        Command::Man { command } => cli::man(&command),
    }
}

/// Runs a command that needs the configuration: a file that does not load
/// is its problems on stderr and exit status 1.
fn with_config(path: &Path, run: impl FnOnce(Config) -> ExitCode) -> ExitCode {
    match Config::load(path) {
        Ok(c) => run(c),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `stop`, `reload`, `status`: these must reach a running master even when
/// its file no longer loads (issue 18 item 13): then the file says where it
/// is as far as it can still be read, and a warning says the file is broken.
fn control(cmd: &str, path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            let code = client::run(cmd, &c);
            if cmd == "reload" && code == ExitCode::SUCCESS {
                for w in c.warnings() {
                    eprintln!("warning: {w}");
                }
            }
            code
        }
        Err(e) => {
            let (c, from) = client::salvage(path);
            eprintln!(
                "warning: {}: does not load, the running master keeps its configuration ({}); its run_dir {} is {from}",
                path.display(),
                e.one_line(),
                c.process.run_dir.display(),
            );
            client::run(cmd, &c)
        }
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
    let mut log = postern_shared::runtime::logging::Settings::of(&config.log);
    log.group = match log_group(&config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = postern_shared::runtime::logging::init_with("postern", &log) {
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
            postern_shared::config::legacy::parse(&bytes).map_err(|e| {
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
