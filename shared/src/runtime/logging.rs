//! Logging set-up shared by every process (`[log]`, SPEC §9).
//!
//! Outputs:
//! - **text**, one line per event, to stderr and/or the log file
//!   (`log.file`, rotated daily: [`file`]), prefixed like syslog with the
//!   process name and pid, then the level, then the fields of the task (a
//!   session's `sid=` and `client_ip=`: [`TaskFields`]) and of the enclosing
//!   spans, each group ended by `:`, then the event's own fields, then the
//!   message (format and parser: [`record`]):
//!
//!   ```text
//!   2026-11-23T15:55:03.120Z postern-smtpd[4242]: INFO sid=67A1C3F20B1E client_ip=127.0.0.1: accepted connection from 127.0.0.1
//!   2026-11-23T15:55:03.410Z postern-router[4240]: INFO sid=67A1C3F20B1E cause=domain server="Customer One" route example.test -> Customer One
//!   ```
//! - **journald** (`log.journald`), in its native protocol ([`journal`]):
//!   every field as a journal field of its upper-cased name (`SID`,
//!   `CLIENT_IP`, `SENDER`, `RECIPIENT`, `SERVER`, `CAUSE`, `REPLY`), the
//!   message as `MESSAGE`, the process name as `SYSLOG_IDENTIFIER`. `auto`
//!   uses it when started by systemd (`JOURNAL_STREAM` or `INVOCATION_ID`
//!   set) and the journal socket exists, `yes` always (an error without the
//!   socket), `no` never. When journald is used, stderr gets nothing:
//!   systemd would store each line twice.
//!
//! The master calls [`init_with`] with its configuration, then passes what it
//! decided to its workers in the environment ([`worker_env`]):
//! `POSTERN_LOG_LEVEL`, `POSTERN_LOG_FILE` (empty: none) and
//! `POSTERN_LOG_JOURNALD` (`yes` or `no`, already decided), which [`init`]
//! reads. Workers open the file and the journal socket before they chroot
//! and drop privileges. Passwords and AUTH data are never logged, at any level.

pub mod file;
mod journal;
mod layer;
pub mod record;

pub use layer::{with_fields, TaskFields, WithFields};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The log lines' time stamp (RFC 3339, UTC, milliseconds), from [`crate::runtime::time`].
pub use crate::runtime::time::Timestamp;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use file::LogFile;

/// Environment variable carrying the log level to workers.
pub const LEVEL_ENV: &str = "POSTERN_LOG_LEVEL";
/// Environment variable carrying `log.file` to workers (empty: none).
pub const FILE_ENV: &str = "POSTERN_LOG_FILE";
/// Environment variable carrying the master's journald decision (`yes`/`no`).
pub const JOURNALD_ENV: &str = "POSTERN_LOG_JOURNALD";
/// Where journald receives native-protocol datagrams (fixed by systemd).
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// `log.journald`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journald {
    /// When started by systemd and the journal socket exists.
    Auto,
    /// Always; an error when the socket is missing.
    Yes,
    /// Never.
    No,
}

impl Journald {
    /// `auto`, `yes` or `no`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Journald> {
        match s {
            "auto" => Some(Journald::Auto),
            "yes" => Some(Journald::Yes),
            "no" => Some(Journald::No),
            _ => None,
        }
    }

    /// Whether to log to journald here and now.
    pub fn decide(self) -> bool {
        match self {
            Journald::Yes => true,
            Journald::No => false,
            Journald::Auto => {
                let systemd = std::env::var_os("JOURNAL_STREAM").is_some()
                    || std::env::var_os("INVOCATION_ID").is_some();
                systemd && Path::new(JOURNAL_SOCKET).exists()
            }
        }
    }
}

/// What to log where, for [`init_with`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// `log.level` (an `EnvFilter` directive; invalid means `info`).
    pub level: String,
    /// `log.file`, if any.
    pub file: Option<PathBuf>,
    /// `log.journald`.
    pub journald: Journald,
    /// The group a newly created log file is given (mode 0660): the workers'
    /// group, when the master runs as root and drops them to `process.user`.
    pub group: Option<nix::unistd::Gid>,
}

impl Settings {
    /// The settings of a `[log]` section.
    pub fn of(log: &crate::config::Log) -> Settings {
        Settings {
            level: log.level.clone(),
            file: (!log.file.is_empty()).then(|| PathBuf::from(&log.file)),
            journald: Journald::parse(&log.journald).unwrap_or(Journald::Auto),
            group: None,
        }
    }
}

/// Why logging could not be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `log.journald = "yes"` without a journal to write to.
    #[error("log.journald: cannot write to the journal (/run/systemd/journal/socket): {0}")]
    Journald(std::io::Error),
    /// The log file could not be opened.
    #[error("log.file: cannot open {path}: {source}")]
    File {
        /// `log.file`.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What this process decided, for [`worker_env`].
struct Decided {
    file: Option<PathBuf>,
    journald: bool,
    /// Where text lines go, if anywhere (for [`batch`]).
    out: Option<Output>,
}

static DECIDED: OnceLock<Decided> = OnceLock::new();

/// Installs the global subscriber of a worker named `name`: level `level` (or
/// `POSTERN_LOG_LEVEL`), file and journald from the master's environment
/// ([`worker_env`]). Never fails: what cannot be set up falls back to stderr,
/// with an error line saying why.
pub fn init(name: &'static str, level: Option<&str>) {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = Settings {
        level: level
            .map(str::to_string)
            .or_else(|| env(LEVEL_ENV))
            .unwrap_or_else(|| "info".into()),
        file: env(FILE_ENV).map(PathBuf::from),
        journald: env(JOURNALD_ENV)
            .and_then(|j| Journald::parse(&j))
            .unwrap_or(Journald::Auto),
        group: None,
    };
    if let Err(e) = init_with(name, &settings) {
        let fallback = Settings {
            file: None,
            journald: Journald::No,
            ..settings
        };
        let _ = init_with(name, &fallback);
        tracing::error!("{e}; logging to stderr only");
    }
}

/// Installs the global subscriber of process `name` as `settings` say.
/// A second call in the same process changes nothing and returns `Ok`.
pub fn init_with(name: &'static str, settings: &Settings) -> Result<(), LogError> {
    // Load the time zone now: after a chroot /etc/localtime may be out of
    // reach, and the process keeps the zone it loaded first.
    let _ = crate::runtime::time::zone();
    let journald = settings.journald.decide();
    let journal = if journald {
        Some(journal::Journal::open().map_err(LogError::Journald)?)
    } else {
        None
    };
    let file = match &settings.file {
        Some(path) => {
            let f = LogFile::open(path, settings.group).map_err(|source| LogError::File {
                path: path.display().to_string(),
                source,
            })?;
            let f = Arc::new(f);
            f.spawn_midnight_thread();
            Some(f)
        }
        None => None,
    };
    let out = Output {
        stderr: !journald,
        file,
    };
    let has_text = out.stderr || out.file.is_some();
    let text_out = has_text.then(|| out.clone());
    let lines = layer::Lines {
        name,
        pid: std::process::id(),
        text: text_out.clone(),
        journal,
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init()
        .is_ok();
    if installed {
        let _ = DECIDED.set(Decided {
            file: settings.file.clone(),
            journald,
            out: text_out,
        });
    }
    Ok(())
}

/// The environment the master gives its workers so that they log like it:
/// level `level`, and the file and journald decision of [`init_with`].
pub fn worker_env(level: &str) -> Vec<(&'static str, String)> {
    let (file, journald) = DECIDED.get().map_or((None, false), |d| {
        (d.file.as_ref().map(|p| p.display().to_string()), d.journald)
    });
    vec![
        (LEVEL_ENV, level.to_string()),
        (FILE_ENV, file.unwrap_or_default()),
        (
            JOURNALD_ENV,
            if journald { "yes" } else { "no" }.to_string(),
        ),
    ]
}

/// Where text lines go: stderr, the file, or both.
#[derive(Clone)]
struct Output {
    stderr: bool,
    file: Option<Arc<LogFile>>,
}

impl Output {
    /// Writes whole lines: to stderr in pieces of at most [`PIPE_ATOMIC`]
    /// bytes cut at line ends (a pipe shared with other processes keeps such
    /// writes whole), to the file in one append.
    fn emit(&self, lines: &[u8]) {
        use std::io::Write as _;
        if self.stderr {
            let mut err = std::io::stderr().lock();
            let mut rest = lines;
            while !rest.is_empty() {
                let cut = if rest.len() <= PIPE_ATOMIC {
                    rest.len()
                } else {
                    rest[..PIPE_ATOMIC]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(rest.len(), |i| i + 1)
                };
                let _ = err.write_all(&rest[..cut]);
                rest = &rest[cut..];
            }
        }
        if let Some(f) = &self.file {
            if let Err(e) = f.append(lines) {
                // Say it once; a full disk would otherwise say it at every line.
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    let _ = writeln!(
                        std::io::stderr(),
                        "cannot write to the log file {}: {e}",
                        f.path().display()
                    );
                }
            }
        }
    }
}

/// Largest write to stderr: `PIPE_BUF`, below which a write to a pipe is
/// never interleaved with another process's.
const PIPE_ATOMIC: usize = 4096;

/// Lines held back in a worker that batches ([`batch`]), and where they go.
struct Batch {
    lines: std::sync::Mutex<Vec<u8>>,
    out: OnceLock<Output>,
}

static BATCH: Batch = Batch {
    lines: std::sync::Mutex::new(Vec::new()),
    out: OnceLock::new(),
};

/// Lines held back beyond this size are written at once.
const BATCH_MAX: usize = 16 * 1024;

/// From now on, hold text lines back until [`flush`] (or until 16 KB have
/// gathered) instead of writing each at once: a busy worker then writes its
/// log in one system call per turn of its event loop rather than one per
/// line. The worker skeleton calls this and flushes whenever its runtime is
/// about to wait, at exit and on panic, so lines are late by at most one
/// turn of the loop, and lost only if the process is killed in the middle
/// of one. They are also written before any message to another postern
/// process ([`crate::ipc::proto::write`], the router connections), so that the
/// shared log keeps cause before effect across processes. The journal gets
/// every record at once as before.
pub fn batch() {
    if let Some(out) = DECIDED.get().and_then(|d| d.out.clone()) {
        let _ = BATCH.out.set(out);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    }
}

/// Writes the lines held back by [`batch`].
pub fn flush() {
    let Some(out) = BATCH.out.get() else {
        return;
    };
    let lines = {
        let Ok(mut held) = BATCH.lines.lock() else {
            return;
        };
        if held.is_empty() {
            return;
        }
        std::mem::take(&mut *held)
    };
    out.emit(&lines);
    // Give the buffer back, to save an allocation at the next turn.
    if let Ok(mut held) = BATCH.lines.lock() {
        if held.is_empty() {
            let mut lines = lines;
            lines.clear();
            *held = lines;
        }
    }
}

/// Writes one text line: held back when the process batches ([`batch`]),
/// at once otherwise.
fn emit_text(out: &Output, line: &[u8]) {
    if BATCH.out.get().is_some() {
        let full = match BATCH.lines.lock() {
            Ok(mut held) => {
                held.extend_from_slice(line);
                held.len() >= BATCH_MAX
            }
            Err(_) => {
                out.emit(line);
                false
            }
        };
        if full {
            flush();
        }
    } else {
        out.emit(line);
    }
}

/// This process's id, asked of the kernel once (`getpid(2)` is a system
/// call every time, and smtpd gives it with every session's accounting).
pub fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A short id, unique across processes in practice: 8 hex digits of
/// milliseconds and 4 of pid and counter. Used for sessions and queue files.
pub fn new_id() -> String {
    use std::sync::atomic::AtomicU32;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u32;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = (pid().wrapping_mul(0x9E37) ^ n.wrapping_mul(0x1F1F)) as u16;
    format!("{ms:08X}{mix:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines a text layer of "postern-smtpd" (pid 42) writes while `f`
    /// runs, from the log file it writes them to.
    fn logged(tag: &str, f: impl FnOnce()) -> Vec<String> {
        let path = std::env::temp_dir().join(format!("postern-{tag}-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let file = Arc::new(LogFile::open(&path, None).expect("log file"));
        let lines = layer::Lines {
            name: "postern-smtpd",
            pid: 42,
            text: Some(Output {
                stderr: false,
                file: Some(file),
            }),
            journal: None,
        };
        let subscriber = tracing_subscriber::registry().with(lines);
        tracing::subscriber::with_default(subscriber, f);
        let text = std::fs::read_to_string(&path).expect("read the log");
        let _ = std::fs::remove_file(&path);
        text.lines().map(str::to_string).collect()
    }

    /// What follows `postern-smtpd[42]: ` in a line.
    fn tail(line: &str) -> &str {
        line.split_once(" postern-smtpd[42]: ").expect("prefix").1
    }

    #[test]
    fn span_fields_then_event_fields_then_the_message() {
        let lines = logged("spans", || {
            let span = tracing::info_span!("session", sid = "ABC", client_ip = %"::1");
            let _g = span.enter();
            let server = "Customer One";
            tracing::info!(sender = "a@b", server, reply = %"250 2.0.0 Ok", "message from <a@b> forwarded to {server}");
            tracing::warn!("no fields");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            tail(&lines[0]),
            "INFO sid=ABC client_ip=::1: sender=a@b server=\"Customer One\" reply=\"250 2.0.0 Ok\" message from <a@b> forwarded to Customer One"
        );
        let r = record::parse_line(&lines[0]).expect("parses back");
        assert_eq!(r.get("client_ip"), Some("::1"));
        assert_eq!(r.get("server"), Some("Customer One"));
        assert_eq!(r.get("reply"), Some("250 2.0.0 Ok"));
        assert_eq!(r.message, "message from <a@b> forwarded to Customer One");
        assert_eq!(tail(&lines[1]), "WARN sid=ABC client_ip=::1: no fields");
    }

    #[test]
    fn a_tasks_fields_are_on_every_line_it_logs_and_on_no_other() {
        let lines = logged("task", || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            struct Session;
            impl TaskFields for Session {
                fn each(&self, field: &mut dyn FnMut(&'static str, &dyn std::fmt::Display)) {
                    field("sid", &"T1");
                    field("client_ip", &std::net::Ipv6Addr::UNSPECIFIED);
                }
            }
            rt.block_on(with_fields(Session, async {
                tracing::info!(sender = "a@b", "before a wait");
                // Polled again after the wait: the fields are set again.
                tokio::task::yield_now().await;
                let span = tracing::info_span!("inner", step = 2);
                let _g = span.enter();
                tracing::info!("after it, in a span");
            }));
            tracing::info!("outside");
        });
        assert_eq!(
            lines.iter().map(|l| tail(l)).collect::<Vec<_>>(),
            [
                "INFO sid=T1 client_ip=\"::\": sender=a@b before a wait",
                "INFO sid=T1 client_ip=\"::\": step=2: after it, in a span",
                "INFO outside",
            ]
        );
        let r = record::parse_line(&lines[0]).expect("parses back");
        assert_eq!(r.get("client_ip"), Some("::"));
        assert_eq!(r.get("sid"), Some("T1"));
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 12);
    }
}
