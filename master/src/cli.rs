//! The command line of `postern`, declared once with clap's derive: the
//! parser, every `--help`, `--version`, the shell completions (`postern
//! completions SHELL`) and the generated manual page (`postern man`) all
//! come from these types.
//!
//! Help keeps the house format: `usage: postern [-c FILE] COMMAND …` first
//! (each command's usage line is written out, as the seed's help had it),
//! then a one-line summary, the options, and the command's longer text.
//! Usage mistakes are one line on stderr, `postern: CMD: what; see postern
//! CMD --help`, and exit status 2 ([`usage_error`]); help and version go
//! to stdout with exit status 0.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::stats::{DEFAULT_WEEKS, MAX_WEEKS};

/// Every command's help: the usage line(s), the summary, the options, then
/// the longer text (`after_help`), the same for `-h` and `--help`.
const TEMPLATE: &str = "usage: {usage}\n\n{about-with-newline}\n{all-args}{after-help}";

/// `postern [-c FILE] COMMAND`. `--version` prints `postern X.Y.Z`, the
/// workspace's version: the workers are built and shipped with it.
#[derive(Debug, Parser)]
#[command(
    name = "postern",
    version,
    about = "SMTP front door: routes each session to the right backend mail server",
    override_usage = "postern [-c FILE] COMMAND\n       \
                      postern convert FILE.xml\n       \
                      postern [-c FILE] log search PATTERN [--since WHEN] | log session ID [--since WHEN]",
    after_help = "The configuration file is -c FILE, else $POSTERN_CONFIG, else\n\
                  /etc/postern/postern.toml. `postern COMMAND --help` describes each command.",
    subcommand_value_name = "COMMAND"
)]
pub struct Cli {
    /// Configuration file (default: $POSTERN_CONFIG, then /etc/postern/postern.toml)
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the master in the foreground (what systemd runs)
    #[command(
        override_usage = "postern [-c FILE] start",
        after_help = "Runs the master in the foreground: validates the configuration, binds the\n\
                      listeners, starts the router and the smtpd workers and supervises them.\n\
                      SIGHUP reloads, SIGTERM stops gracefully."
    )]
    Start,
    /// Stop a running master gracefully
    #[command(
        override_usage = "postern [-c FILE] stop",
        after_help = "Asks the running master to stop gracefully and waits until it has exited."
    )]
    Stop,
    /// Re-read the configuration (same as SIGHUP)
    #[command(
        override_usage = "postern [-c FILE] reload",
        after_help = "Asks the running master to re-read its configuration file. An invalid file\n\
                      changes nothing; the reason is printed and the exit status is 1."
    )]
    Reload,
    /// Show the workers: pids, uptimes, restarts, last exit
    #[command(
        override_usage = "postern [-c FILE] status",
        after_help = "Shows the master and each worker: pid, uptime, restarts, last exit.\n\
                      status, stop and reload work when the file no longer loads: a warning says\n\
                      so and the master is found through the file's run_dir as far as it can\n\
                      still be read, else /run/postern."
    )]
    Status,
    /// Replace smtpd, router, updater or web without refusing a connection
    #[command(
        override_usage = "postern [-c FILE] restart smtpd|router|updater|web",
        after_help = "Replaces one kind of worker without refusing a connection. smtpd and router:\n\
                      new processes start on the same sockets; once they serve, the old ones stop\n\
                      accepting and finish their sessions. updater (and web, the console): the\n\
                      running one stops and the next starts at once; requests wait in the socket's\n\
                      backlog meanwhile (console logins are lost)."
    )]
    Restart {
        /// The kind of worker; another word is the master's to refuse
        #[arg(value_name = "WORKER", value_parser = Words(&["smtpd", "router", "updater", "web"]))]
        worker: String,
    },
    /// Validate the configuration; print every problem
    #[command(
        override_usage = "postern [-c FILE] check",
        after_help = "Validates the configuration file and runs every check of `start` on this\n\
                      machine (worker programs, [tls] files, process.user, directories, log file).\n\
                      Exit 0 when valid; otherwise every problem is printed, one per line, with\n\
                      its key, and the exit status is 1. Warnings (`warning: KEY: text`, such as a\n\
                      relay list wider than a /8) do not fail the check."
    )]
    Check,
    /// Print the effective configuration, passwords masked
    #[command(
        override_usage = "postern [-c FILE] config",
        after_help = "Prints the effective configuration (defaults filled in), passwords masked."
    )]
    Config,
    /// Find sessions in the log, or print one session's lines
    #[command(
        override_usage = "postern [-c FILE] log search PATTERN [--since WHEN]\n       \
                          postern [-c FILE] log session ID [--since WHEN]",
        after_help = LOG_HELP
    )]
    Log {
        /// search or session.
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Print a legacy smtp-proxy.xml file as TOML
    #[command(
        override_usage = "postern convert FILE.xml",
        after_help = "Reads a legacy smtp-proxy.xml file (ISO-8859-1 or UTF-8) and prints the\n\
                      equivalent TOML configuration on stdout, every key written out except\n\
                      proxy.hostname (the machine's host name by default). It converts without\n\
                      validating: run `postern -c FILE check` on the result. Passwords are printed\n\
                      as they are. Needs no -c. A file that cannot be read or parsed is one line\n\
                      on stderr and exit status 1."
    )]
    Convert {
        /// The legacy XML file
        #[arg(value_name = "FILE.xml")]
        file: PathBuf,
    },
    /// The update queue (mailq / postqueue -f / postsuper -d)
    #[command(
        override_usage = "postern [-c FILE] queue [list|flush|delete ID]",
        after_help = "list (the default): every update mail in the queue with each server's copy:\n\
                      pending, deferred (with the reason and the next try), delivered or failed.\n\
                      flush: try every deferred copy now. delete ID: remove an update mail."
    )]
    Queue {
        /// list (the default), flush or delete ID.
        #[command(subcommand)]
        command: Option<QueueCommand>,
    },
    /// Scheduled backend restarts
    #[command(
        override_usage = "postern [-c FILE] restarts [list|cancel ID]",
        after_help = "list (the default): scheduled and recent backend restarts with their state\n\
                      and outcome. cancel ID: cancel a scheduled restart."
    )]
    Restarts {
        /// list (the default) or cancel ID.
        #[command(subcommand)]
        command: Option<RestartsCommand>,
    },
    /// Weekly statistics with the spam rate
    #[command(
        override_usage = "postern [-c FILE] stats [--weeks N] [--json]",
        after_help = STATS_HELP
    )]
    Stats {
        /// ISO weeks to show, the current one last
        #[arg(long, value_name = "N", default_value_t = DEFAULT_WEEKS,
              value_parser = clap::value_parser!(i64).range(1..=MAX_WEEKS))]
        weeks: i64,
        /// Print JSON instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Accept and reject lists for mail from the internet
    #[command(
        override_usage = "postern [-c FILE] access list [accept|reject] [--method connect|from|to] [--expired]\n       \
                          postern [-c FILE] access add (accept|reject) (connect|from|to) PATTERN\n                                    \
                          [--comment TEXT] [--keep-until YYYY-MM-DD]\n       \
                          postern [-c FILE] access remove (accept|reject) (connect|from|to) PATTERN\n       \
                          postern [-c FILE] access test --client IP [--helo NAME] [--from ADDR] --to ADDR",
        after_help = ACCESS_HELP
    )]
    Access {
        /// list (the default), add, remove or test.
        #[command(subcommand)]
        command: Option<AccessCommand>,
    },
    /// Greylisting's lists and its manual whitelist
    #[command(
        override_usage = "postern [-c FILE] greylist search PATTERN\n       \
                          postern [-c FILE] greylist list [--pending|--passed] [--by sender|recipient|ip]\n       \
                          postern [-c FILE] greylist whitelist [list]\n       \
                          postern [-c FILE] greylist whitelist add (ip|from|to) PATTERN [--comment TEXT]\n       \
                          postern [-c FILE] greylist whitelist remove (ip|from|to) PATTERN\n       \
                          postern [-c FILE] greylist export > FILE\n       \
                          postern [-c FILE] greylist import FILE|-",
        after_help = GREYLIST_HELP
    )]
    Greylist {
        /// search, list or whitelist.
        #[command(subcommand)]
        command: GreylistCommand,
    },
    /// Virtual aliases: what an address stands for, and its server
    #[command(
        override_usage = "postern [-c FILE] alias test ADDRESS",
        after_help = ALIAS_HELP
    )]
    Alias {
        /// test.
        #[command(subcommand)]
        command: AliasCommand,
    },
    /// Print shell completions for bash, zsh or fish
    #[command(
        override_usage = "postern completions bash|zsh|fish|elvish|powershell",
        after_help = "Prints the completion script of postern's commands and options for SHELL on\n\
                      stdout, for instance: postern completions bash > /etc/bash_completion.d/postern"
    )]
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page generated from these definitions (roff)
    #[command(
        override_usage = "postern man [COMMAND…]",
        after_help = "Prints postern(8), or postern-COMMAND(8) (postern-access-add(8): man access add), as roff on stdout, generated from\n\
                      the same definitions as --help: man -l <(postern man). The installed manual\n\
                      page, postern(8), is the hand-written docs/postern.8, which also says which\n\
                      files postern uses, its signals and its exit statuses."
    )]
    Man {
        /// One command's page instead of the whole
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// `postern alias test`.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// The addresses ADDRESS stands for and the server that receives them
    #[command(override_usage = "postern [-c FILE] alias test ADDRESS")]
    Test {
        /// A recipient address, user@example.com
        #[arg(value_name = "ADDRESS")]
        address: String,
    },
}

/// `postern log search|session`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// The sessions whose client address, sender or a recipient contains PATTERN
    #[command(override_usage = "postern [-c FILE] log search PATTERN [--since WHEN]")]
    Search {
        /// Matched case-insensitively
        #[arg(value_name = "PATTERN")]
        pattern: String,
        /// A duration back from now (30m, 2h, 7d) or a local date and time
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Every line of session ID, from every process, in order
    #[command(override_usage = "postern [-c FILE] log session ID [--since WHEN]")]
    Session {
        /// The session id (sid)
        #[arg(value_name = "ID")]
        id: String,
        /// A duration back from now (30m, 2h, 7d) or a local date and time
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Every refused recipient (to ADDRESS only, if given): when, the client, the sender, why
    #[command(override_usage = "postern [-c FILE] log refused [ADDRESS] [--since WHEN]")]
    Refused {
        /// Only the refusals for this recipient
        #[arg(value_name = "ADDRESS")]
        address: Option<String>,
        /// A duration back from now (30m, 2h, 7d) or a local date and time
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
}

/// `postern queue list|flush|delete ID`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every update mail with each server's copy
    #[command(override_usage = "postern [-c FILE] queue list")]
    List,
    /// Try every deferred copy now
    #[command(override_usage = "postern [-c FILE] queue flush")]
    Flush,
    /// Remove an update mail
    #[command(override_usage = "postern [-c FILE] queue delete ID")]
    Delete {
        /// The queue id
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `postern restarts list|cancel ID`.
#[derive(Debug, Subcommand)]
pub enum RestartsCommand {
    /// Scheduled and recent backend restarts
    #[command(override_usage = "postern [-c FILE] restarts list")]
    List,
    /// Cancel a scheduled restart
    #[command(override_usage = "postern [-c FILE] restarts cancel ID")]
    Cancel {
        /// The restart's id
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// `postern access list|add|remove|test`. Actions and methods are checked
/// by [`crate::access`] (any case), which says what is wrong.
#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Every entry with its comment, keep-until date, when and by whom it was added
    #[command(
        override_usage = "postern [-c FILE] access list [accept|reject] [--method connect|from|to] [--expired]"
    )]
    List {
        /// Only this list
        #[arg(value_name = "ACTION", value_parser = Words(ACTIONS))]
        action: Option<String>,
        /// Only entries of this method
        #[arg(long, value_name = "METHOD", value_parser = Words(METHODS))]
        method: Option<String>,
        /// Only entries whose keep-until date has passed
        #[arg(long)]
        expired: bool,
    },
    /// Add an entry, in force at once
    #[command(
        override_usage = "postern [-c FILE] access add (accept|reject) (connect|from|to) PATTERN\n                                    \
                          [--comment TEXT] [--keep-until YYYY-MM-DD]"
    )]
    Add {
        /// The entry.
        #[command(flatten)]
        entry: Entry,
        /// Why the entry is there (one line)
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        /// When to review it (nothing is removed by itself)
        #[arg(long, value_name = "YYYY-MM-DD")]
        keep_until: Option<String>,
    },
    /// Remove an entry, at once
    #[command(
        override_usage = "postern [-c FILE] access remove (accept|reject) (connect|from|to) PATTERN"
    )]
    Remove {
        /// The entry.
        #[command(flatten)]
        entry: Entry,
    },
    /// The verdict for one recipient and the entry that decides; nothing stored or counted
    #[command(
        override_usage = "postern [-c FILE] access test --client IP [--helo NAME] [--from ADDR] --to ADDR"
    )]
    Test {
        /// The client's address
        #[arg(long, value_name = "IP")]
        client: String,
        /// The client's HELO name
        #[arg(long, value_name = "NAME")]
        helo: Option<String>,
        /// The sender (default <>)
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// The recipient
        #[arg(long, value_name = "ADDR")]
        to: String,
    },
}

/// `postern greylist search|list|whitelist`.
#[derive(Debug, Subcommand)]
pub enum GreylistCommand {
    /// Entries of both lists whose sender or recipient contains PATTERN, or whose network holds it
    #[command(override_usage = "postern [-c FILE] greylist search PATTERN")]
    Search {
        /// An address, a domain, an IP or a network
        #[arg(value_name = "PATTERN")]
        pattern: String,
    },
    /// The pending list and the auto-whitelist, sorted
    #[command(
        override_usage = "postern [-c FILE] greylist list [--pending|--passed] [--by sender|recipient|ip]"
    )]
    List {
        /// Only the pending list (greylisted, waiting for a retry)
        #[arg(long, conflicts_with = "passed")]
        pending: bool,
        /// Only the auto-whitelist
        #[arg(long)]
        passed: bool,
        /// Sort by sender, recipient or ip (the default)
        #[arg(long, value_name = "FIELD", value_parser = Words(&["sender", "recipient", "ip"]))]
        by: Option<String>,
    },
    /// Both lists and the whitelist as text (to move them to another store or redb version)
    #[command(override_usage = "postern [-c FILE] greylist export > FILE")]
    Export,
    /// Adds what an export holds to the store in use
    #[command(override_usage = "postern [-c FILE] greylist import FILE|-")]
    Import {
        /// The export (`-`: standard input)
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The manual whitelist: clients, senders and recipients never greylisted
    #[command(override_usage = "postern [-c FILE] greylist whitelist [list|add|remove] ...")]
    Whitelist {
        /// list (the default), add or remove.
        #[command(subcommand)]
        command: Option<WhitelistCommand>,
    },
}

/// `postern greylist whitelist list|add|remove`.
#[derive(Debug, Subcommand)]
pub enum WhitelistCommand {
    /// Every entry with its comment
    List,
    /// Add an entry, in force at once
    #[command(
        override_usage = "postern [-c FILE] greylist whitelist add (ip|from|to) PATTERN [--comment TEXT]"
    )]
    Add {
        /// ip, from or to
        #[arg(value_name = "KIND", value_parser = Words(&["ip", "from", "to"]))]
        kind: String,
        /// An address or network (ip); an address or domain (from, to)
        #[arg(value_name = "PATTERN")]
        pattern: String,
        /// Why (default: the date, the time and who added it)
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
    },
    /// Remove an entry, at once
    #[command(override_usage = "postern [-c FILE] greylist whitelist remove (ip|from|to) PATTERN")]
    Remove {
        /// ip, from or to
        #[arg(value_name = "KIND", value_parser = Words(&["ip", "from", "to"]))]
        kind: String,
        /// The entry's pattern
        #[arg(value_name = "PATTERN")]
        pattern: String,
    },
}

/// `postern greylist --help`'s text.
const GREYLIST_HELP: &str = "\
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
export, import: both lists and the whitelist as tab-separated text, to move
them to another store (embedded to Redis) or across a redb file format
change. Every command asks the running router, which owns the store.";

/// An access entry as `add` and `remove` name it: `ACTION METHOD PATTERN`.
#[derive(Debug, Args)]
pub struct Entry {
    /// accept or reject
    #[arg(value_name = "ACTION", value_parser = Words(ACTIONS))]
    pub action: String,
    /// connect, from or to
    #[arg(value_name = "METHOD", value_parser = Words(METHODS))]
    pub method: String,
    /// An address, network, host or domain (see postern access --help)
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
}

/// The access lists' actions, offered to the completions.
const ACTIONS: &[&str] = &["accept", "reject"];
/// The access lists' methods, offered to the completions.
const METHODS: &[&str] = &["connect", "from", "to"];

/// `postern log --help`'s text.
const LOG_HELP: &str = "\
search   prints the sessions whose client address, sender or a recipient
         contains PATTERN (case-insensitive), one line each: id, time,
         client, sender, recipients, server, last reply; and on stderr
         where it looked (the log file and its rotated files, or the journal).
session  prints every line of session ID, from every process, in order.

WHEN is a duration back from now (30m, 2h, 7d) or a local date and time
(2026-11-23, \"2026-11-23 14:00\"). Without --since, search reads the current
log file only (or the whole journal); session also looks through the rotated
files, newest first, until it finds the session.

The lines come from the journal (journalctl) when log.journald is \"yes\",
or \"auto\" without log.file; otherwise from log.file.";

/// `postern stats --help`'s text.
const STATS_HELP: &str = "\
The weekly synthesis of the statistics: for each of the last N ISO weeks
(Monday to Sunday, local time; default 4, at most 57), the current one last:
connections, mails forwarded by cause (domain, ip-addr, auth), relaying
denied, rejected, greylisted, greylist passed, messages and bytes accepted by
a backend, and the spam rate; then the refusals by kind.

  connections      client connections accepted (those refused included)
  forwarded        backend connections opened for a client, by route cause
  relaying denied  recipients refused with 554 5.7.1 Relaying denied
  rejected         limit: over a connection limit (421); syntax: closed for
                   protocol errors (too many errors, content pipelined after
                   DATA); smuggling: a message with a bare CR or LF, or
                   a NUL (550 5.5.2); access, dnsbl, restriction: the anti-spam policy
                   (not yet: 0)
  greylisted, greylist passed   greylisting (not yet: 0)
  messages, bytes  messages a backend accepted (2xx after DATA), body bytes

  spam rate = refused / (refused + messages), where
  refused   = relaying denied + rejected (every kind).
  Each refused recipient or connection counts as one refused mail;
  greylisted deliveries are left out (one that comes back is a message).

While postern runs, the counts come from the router and include every
session that has ended; when it is stopped, from process.state_dir/stats.

--json prints every week, their total and each day that has counts, as
JSON, with the same names (spam_rate is a fraction, null without mail).";

/// `postern access --help`'s text.
const ALIAS_HELP: &str = "\
The [[alias]] tables of the configuration file, as the next start or reload
applies them: user@domain is looked up, then @domain; targets are expanded
again, up to 10 levels. test prints what the backend would receive for
ADDRESS and which server, or why it would be refused. Exit status 0 when a
server receives it, 1 when it would be refused or the file does not load.";

const ACCESS_HELP: &str = "\
Access lists for mail from the internet: an accept entry skips the other
checks (never relay control), a reject entry refuses with 554 5.7.1.
connect: the client: 192.0.2.7, 123.45 (an octet prefix), 192.0.2.0/24,
  2001:db8::/32, host.example.com or .example.com (the client's
  forward-confirmed reverse name only).
from, to: user@example.com, user@, example.com, .example.com; <> (from only).

list (the default): every entry with its comment, keep-until date, when and
by whom it was added; --expired: only entries whose keep-until date has
passed (nothing is removed by itself). add, remove: in force at once in the
running postern, and kept in policy.access_file. test: the verdict for one
recipient and the entry that decides; nothing is stored or counted.";

/// A value taken as it is, whose usual words are offered to `--help` and
/// the completions: the command that uses it judges it and says what is
/// wrong in its own words (an unknown worker kind is the master's to
/// refuse, an access action may be in any case).
#[derive(Debug, Clone, Copy)]
struct Words(&'static [&'static str]);

impl TypedValueParser for Words {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.0.iter().map(|w| PossibleValue::new(*w))))
    }
}

/// The whole command line as clap sees it, with the house's help format on
/// every command: what parses the arguments, and what the completions and
/// the manual page are generated from.
pub fn command() -> clap::Command {
    fn house(cmd: clap::Command) -> clap::Command {
        cmd.help_template(TEMPLATE).mut_subcommands(house)
    }
    house(Cli::command())
}

/// Parses the arguments; `Err` is the exit status when there is nothing to
/// run: help or version printed, or a usage mistake reported.
pub fn parse(args: Vec<OsString>) -> Result<Cli, ExitCode> {
    let matches = command()
        .try_get_matches_from(&args)
        .map_err(|e| usage_error(e, &args))?;
    Cli::from_arg_matches(&matches).map_err(|e| usage_error(e, &args))
}

/// Prints help or the version (exit status 0), or a usage mistake as one
/// line, `postern: CMD: what; see postern CMD --help` (exit status 2).
fn usage_error(e: clap::Error, args: &[OsString]) -> ExitCode {
    let path = command_path(args);
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Bare `postern`: the help, on stderr, as a usage mistake.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand if path.is_empty() => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        _ => {}
    }
    let what = match (e.kind(), e.get(ContextKind::InvalidSubcommand)) {
        (ErrorKind::InvalidSubcommand, Some(ContextValue::String(s))) => {
            format!("unknown command {s:?}")
        }
        (ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand, _) => {
            format!("needs a command: {}", subcommand_names(&path).join(", "))
        }
        (ErrorKind::MissingRequiredArgument, _) => match e.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(missing)) => format!("needs {}", missing.join(" and ")),
            _ => "needs more arguments".to_string(),
        },
        _ => {
            // clap's own words, first line only: the rest is tips and usage.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("").trim();
            first.strip_prefix("error: ").unwrap_or(first).to_string()
        }
    };
    let cmd = path.join(" ");
    if cmd.is_empty() {
        eprintln!("postern: {what}; see postern --help");
    } else {
        eprintln!("postern: {cmd}: {what}; see postern {cmd} --help");
    }
    ExitCode::from(2)
}

/// The commands named on a command line (`["access", "add"]`), as far as
/// they are commands: for the `see postern CMD --help` of a usage mistake.
fn command_path(args: &[OsString]) -> Vec<String> {
    let mut cmd = command();
    let mut path = Vec::new();
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(w) = words.next() {
        if w == "-c" || w == "--config" {
            words.next();
            continue;
        }
        if w.starts_with('-') {
            continue;
        }
        let Some(sub) = cmd.find_subcommand(w.as_ref()).cloned() else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path
}

/// The commands under `path` (`log` → search, session), for a command
/// line that names none.
fn subcommand_names(path: &[String]) -> Vec<String> {
    let mut cmd = command();
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub.clone(),
            None => return Vec::new(),
        }
    }
    cmd.get_subcommands()
        .map(|s| s.get_name().to_string())
        .filter(|n| n != "help")
        .collect()
}

/// `postern man [COMMAND…]`: postern(8), or one command's page
/// (`access add`: postern-access-add(8)), as roff.
pub fn man(path: &[String]) -> ExitCode {
    let mut cmd = command();
    // Built, so that each command's page is named postern-COMMAND.
    cmd.build();
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub.clone(),
            None => {
                eprintln!("postern: man: unknown command {name:?}; see postern --help");
                return ExitCode::from(2);
            }
        }
    }
    let page = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    let page = page
        .section("8")
        .manual("postern")
        .source(format!("postern {}", env!("CARGO_PKG_VERSION")));
    if let Err(e) = page.render(&mut out) {
        eprintln!("postern: man: {e}");
        return ExitCode::FAILURE;
    }
    use std::io::Write as _;
    match std::io::stdout().write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: man: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `postern completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(shell, &mut command(), "postern", &mut std::io::stdout());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        command().debug_assert();
    }

    /// The installed manual page is hand-written (README, Choices): every
    /// command and long option defined here must be in it.
    #[test]
    fn the_manual_page_names_every_command_and_option() {
        let page = include_str!("../../docs/postern.8").replace("\\-", "-");
        let mut missing = Vec::new();
        fn walk(cmd: &clap::Command, page: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" && !page.contains(sub.get_name()) {
                    missing.push(sub.get_name().to_string());
                }
                walk(sub, page, missing);
            }
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    if !matches!(long, "help" | "version") && !page.contains(&format!("--{long}")) {
                        missing.push(format!("--{long}"));
                    }
                }
            }
        }
        walk(&command(), &page, &mut missing);
        assert!(missing.is_empty(), "not in docs/postern.8: {missing:?}");
    }

    #[test]
    fn usage_mistakes_name_their_command() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            command_path(&args(&["postern", "-c", "x", "access", "add", "reject"])),
            ["access", "add"]
        );
        assert_eq!(
            command_path(&args(&["postern", "stats", "--weeks", "0"])),
            ["stats"]
        );
        assert!(command_path(&args(&["postern", "frobnicate"])).is_empty());
    }

    #[test]
    fn a_worker_kind_is_not_judged_here() {
        let cli = parse(vec![
            "postern".into(),
            "restart".into(),
            "everything".into(),
        ])
        .expect("parses");
        assert!(matches!(cli.command, Command::Restart { worker } if worker == "everything"));
    }
}
