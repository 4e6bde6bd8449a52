//! The worker skeleton: what every worker (smtpd, router, updater) does the same way.
//!
//! In order, [`Worker::start`]:
//! 1. installs logging;
//! 2. takes the inherited descriptors (`LISTEN_FDS`, `LISTEN_FDNAMES`,
//!    `LISTEN_PID`, fds 3…), marks them close-on-exec and clears the variables;
//! 3. gets its configuration: from the master over the descriptor named
//!    `master` (a `request=config` message whose body is a [`WorkerConfig`]
//!    in TOML: the validated configuration plus the TLS certificate and key,
//!    which only the master can read), or, for a worker started by hand,
//!    from `-c FILE`;
//! 4. drops privileges: when root and `process.user` is set, optionally
//!    chroots (smtpd), empties its capability bounding set, then sets
//!    groups, gid and uid, and checks that root cannot be regained; every
//!    worker then sets `PR_SET_NO_NEW_PRIVS` (it runs no program, and no
//!    program it ran could gain a privilege).
//!
//! The worker then serves, calls [`Worker::ready`] once it accepts work, and
//! loops on [`Worker::next_event`]: a new configuration (to apply and
//! acknowledge with [`Worker::ack`]) or a stop (SIGTERM, SIGINT, `request=stop`,
//! or the master gone: a worker never outlives its master).
//!
//! Channel protocol (attribute lists, see [`crate::ipc::proto`]):
//! ```text
//! master → worker: request=config id=N size=LEN <toml>     worker → master: id=N status=ok|tempfail [reason=…]
//! master → worker: request=stop | request=drain             worker → master: event=ready | event=load …
//! worker → master: request=reload|stop id=wN               master → worker: id=wN status=ok|tempfail [reason=…]
//! ```
//!
//! The last line is how the SMTP `RELOAD` and `SHUTDOWN` commands reach the
//! master: [`Worker::request`] sends, the answer comes back as
//! [`Event::Reply`].

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::ipc::proto::{self, Attrs};
use crate::ipc::{self, MasterRequest};

/// Name of the inherited descriptor that talks to the master.
pub const MASTER_FD_NAME: &str = "master";

/// What the worker is asked to do next.
#[derive(Debug)]
pub enum Event {
    /// Apply this configuration, then [`Worker::ack`] with `id`.
    Reload {
        /// Echo in the acknowledgement.
        id: String,
        /// The new, validated configuration.
        config: Arc<Config>,
        /// The TLS certificate and key named by the new configuration.
        tls: Option<Arc<TlsPem>>,
        /// Some server of the new configuration has SMTP AUTH credentials.
        auth_servers: bool,
    },
    /// The master's answer to a [`Worker::request`].
    Reply(Attrs),
    /// Stop gracefully: stop accepting, drain, exit.
    Stop,
    /// Replaced by a new process (`postern restart`): stop accepting, let every
    /// session finish as usual, exit. A later [`Event::Stop`] escalates.
    Drain,
}

/// A running worker's link to its master and its inherited sockets.
pub struct Worker {
    /// The process name, `postern-smtpd` and so on.
    pub name: &'static str,
    /// The configuration currently applied.
    pub config: Arc<Config>,
    /// The TLS certificate and key of that configuration, if `[tls]` is set.
    pub tls: Option<Arc<TlsPem>>,
    /// Some server has SMTP AUTH credentials ([`WorkerConfig::auth_servers`]).
    pub auth_servers: bool,
    next_request: u64,
    listeners: Vec<(String, OwnedFd)>,
    to_master: Option<OwnedWriteHalf>,
    events: mpsc::Receiver<Event>,
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    chrooted: bool,
}

/// Start-up options of a worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Chroot into `process.chroot` (smtpd) when privileges are dropped.
    pub chroot: bool,
}

impl Worker {
    /// Runs steps 1-4 of the module description. Must be called inside a tokio runtime.
    pub async fn start(name: &'static str, opts: Options) -> anyhow::Result<Worker> {
        crate::runtime::logging::init(name, None);
        crate::runtime::logging::batch();
        let mut listeners = take_inherited_fds()?;
        let master = listeners
            .iter()
            .position(|(n, _)| n == MASTER_FD_NAME)
            .map(|i| listeners.remove(i).1);
        let (tx, events) = mpsc::channel(4);
        let (
            WorkerConfig {
                config,
                tls,
                auth_servers,
            },
            to_master,
        ) = match master {
            Some(fd) => {
                let std = std::os::unix::net::UnixStream::from(fd);
                std.set_nonblocking(true)?;
                let (read, write) = UnixStream::from_std(std)?.into_split();
                let mut read = BufReader::new(read);
                let first = proto::read(&mut read)
                    .await
                    .context("reading the configuration from the master")?
                    .context("the master closed the channel before sending the configuration")?;
                let config = match MasterRequest::decode(first) {
                    Ok(MasterRequest::Config { body, .. }) => config_of(&body),
                    Ok(_) => Err(anyhow::anyhow!("expected request=config")),
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                }
                .context("the master's first message")?;
                tokio::spawn(read_master(read, tx));
                (config, Some(write))
            }
            None => {
                let path = config_arg().context(
                    "no master channel inherited: start workers through `postern start`, or pass -c FILE",
                )?;
                let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
                let tls = TlsPem::read(&config)?;
                // Without a master, nobody sends events: keep the sender alive so that
                // `next_event` waits for signals only.
                std::mem::forget(tx);
                let auth_servers = WorkerConfig::has_auth_servers(&config);
                (
                    WorkerConfig {
                        config,
                        tls,
                        auth_servers,
                    },
                    None,
                )
            }
        };
        let chrooted = drop_privileges(&config, opts)?;
        // A worker runs no program: none it could run would gain anything
        // (setuid bits, file capabilities) either.
        nix::sys::prctl::set_no_new_privs().context("PR_SET_NO_NEW_PRIVS")?;
        Ok(Worker {
            chrooted,
            name,
            config: Arc::new(config),
            tls: tls.map(Arc::new),
            auth_servers,
            next_request: 0,
            listeners,
            to_master,
            events,
            sigterm: signal(SignalKind::terminate())?,
            sigint: signal(SignalKind::interrupt())?,
        })
    }

    /// Takes every inherited descriptor named `name`.
    pub fn take_listeners(&mut self, name: &str) -> Vec<OwnedFd> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(|(n, _)| n == name);
        self.listeners = rest;
        mine.into_iter().map(|(_, fd)| fd).collect()
    }

    /// The path of a `run_dir` socket as this worker sees it (inside its chroot, if any).
    pub fn socket_path(&self, file: &str) -> PathBuf {
        let full = self.config.process.run_dir.join(file);
        if self.chrooted {
            if let Ok(rel) = full.strip_prefix(&self.config.process.chroot) {
                return Path::new("/").join(rel);
            }
        }
        full
    }

    /// Tells the master that this worker serves.
    pub async fn ready(&mut self) {
        self.send(ipc::event(ipc::Event::Ready)).await;
    }

    /// Acknowledges a [`Event::Reload`].
    pub async fn ack(&mut self, id: &str, result: Result<(), String>) {
        let outcome = match result {
            Ok(()) => ipc::Outcome::Ok,
            Err(why) => ipc::Outcome::tempfail(why.replace(['\r', '\n', '\0'], " ")),
        };
        self.send(outcome.reply(Some(id))).await;
    }

    /// Sends a request to the master (`request=reload`, `request=stop`); the
    /// answer arrives as [`Event::Reply`] with the returned id. Without a
    /// master, answers at once with `status=tempfail`.
    pub async fn request(&mut self, mut a: Attrs) -> String {
        self.next_request += 1;
        let id = format!("w{}", self.next_request);
        a.push("id", &id);
        self.send(a).await;
        id
    }

    /// Sends an unsolicited `event=…` message to the master (e.g. `event=load`).
    pub async fn event(&mut self, a: Attrs) {
        self.send(a).await;
    }

    /// True when a master is listening (the worker was not started by hand).
    pub fn has_master(&self) -> bool {
        self.to_master.is_some()
    }

    async fn send(&mut self, a: Attrs) {
        if let Some(w) = &mut self.to_master {
            if let Err(e) = proto::write(w, &a).await {
                tracing::warn!("cannot write to the master: {e}");
            }
        }
    }

    /// Waits for the next event. Cancel-safe.
    pub async fn next_event(&mut self) -> Event {
        tokio::select! {
            e = self.events.recv() => e.unwrap_or(Event::Stop),
            _ = self.sigterm.recv() => Event::Stop,
            _ = self.sigint.recv() => Event::Stop,
        }
    }
}

/// A worker's `main`: runs `service` on a single-threaded runtime (each worker
/// is one small process; the master runs several smtpd for the cores) and
/// turns its outcome into the exit status the master logs.
pub fn main<F>(name: &str, service: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    // Log lines are written in one batch whenever the loop is about to
    // wait (crate::runtime::logging::batch, enabled once logging is set up).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(crate::runtime::logging::flush)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(service);
    crate::runtime::logging::flush();
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            crate::runtime::logging::flush();
            // Before logging is set up (or when it fails), stderr still tells.
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads the master channel until it closes; a closed channel means stop.
async fn read_master(mut r: BufReader<tokio::net::unix::OwnedReadHalf>, tx: mpsc::Sender<Event>) {
    loop {
        let ev = match proto::read(&mut r).await {
            Ok(Some(msg)) if !ipc::is_request(&msg) && ipc::Outcome::of(&msg).is_some() => {
                Event::Reply(msg)
            }
            Ok(Some(msg)) => match MasterRequest::decode(msg) {
                Ok(MasterRequest::Config { id, body }) => match config_of(&body) {
                    Ok(c) => Event::Reload {
                        id,
                        config: Arc::new(c.config),
                        tls: c.tls.map(Arc::new),
                        auth_servers: c.auth_servers,
                    },
                    Err(e) => {
                        tracing::error!("the master sent an unusable configuration: {e:#}");
                        continue;
                    }
                },
                Ok(MasterRequest::Stop) => Event::Stop,
                Ok(MasterRequest::Drain) => Event::Drain,
                Err(other) => {
                    tracing::warn!("ignoring master request: {other}");
                    continue;
                }
            },
            Ok(None) => {
                tracing::info!("master channel closed: stopping");
                Event::Stop
            }
            Err(e) => {
                tracing::error!("master channel broken: {e}; stopping");
                Event::Stop
            }
        };
        let stop = matches!(ev, Event::Stop);
        if tx.send(ev).await.is_err() || stop {
            return;
        }
    }
}

/// The configuration of a `request=config`'s body.
fn config_of(body: &[u8]) -> anyhow::Result<WorkerConfig> {
    let text = std::str::from_utf8(body).context("configuration is not UTF-8")?;
    let mut c: WorkerConfig = toml::from_str(text).context("configuration from the master")?;
    c.config.fill_defaults();
    Ok(c)
}

/// What the master sends a worker: the configuration and the TLS files.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The validated configuration.
    pub config: Config,
    /// The certificate and key named by `[tls]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsPem>,
    /// Some `[[server]]` has SMTP AUTH credentials. smtpd gets no server
    /// table (see the master's `worker_config`), yet must know whether to
    /// offer AUTH at all.
    #[serde(default)]
    pub auth_servers: bool,
}

impl WorkerConfig {
    /// Whether some server of `config` has SMTP AUTH credentials.
    pub fn has_auth_servers(config: &Config) -> bool {
        config
            .servers
            .iter()
            .any(|s| s.user.is_some() && s.password.is_some())
    }

    /// The TOML body of a `request=config` message.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a WorkerConfig always serializes: plain values only")
    }
}

/// A PEM certificate chain and private key, as read by the master.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPem {
    /// `tls.cert`, PEM.
    pub cert: String,
    /// `tls.key`, PEM.
    pub key: String,
}

impl TlsPem {
    /// Reads the files of `[tls]`, if set; an error names the file.
    pub fn read(config: &Config) -> anyhow::Result<Option<TlsPem>> {
        let Some(t) = &config.tls else {
            return Ok(None);
        };
        let read = |p: &Path, key: &str| {
            std::fs::read_to_string(p)
                .with_context(|| format!("tls.{key}: cannot read {}", p.display()))
        };
        let pem = TlsPem {
            cert: read(&t.cert, "cert")?,
            key: read(&t.key, "key")?,
        };
        if !pem.cert.contains("-----BEGIN CERTIFICATE-----") {
            bail!("tls.cert: {} holds no PEM certificate", t.cert.display());
        }
        if !pem.key.contains("PRIVATE KEY-----") {
            bail!("tls.key: {} holds no PEM private key", t.key.display());
        }
        Ok(Some(pem))
    }
}

/// `-c FILE` or `--config FILE` from the command line, else `POSTERN_CONFIG`.
fn config_arg() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-c" || a == "--config" {
            return args.next().map(PathBuf::from);
        }
    }
    std::env::var_os("POSTERN_CONFIG").map(PathBuf::from)
}

/// Takes the descriptors passed with the socket-activation convention.
fn take_inherited_fds() -> anyhow::Result<Vec<(String, OwnedFd)>> {
    let Ok(count) = std::env::var("LISTEN_FDS") else {
        return Ok(Vec::new());
    };
    if let Ok(pid) = std::env::var("LISTEN_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            // Meant for another process (our parent): not ours to take.
            return Ok(Vec::new());
        }
    }
    let count: RawFd = count.parse().context("LISTEN_FDS is not a number")?;
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .unwrap_or_default()
        .split(':')
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for i in 0..count {
        let raw = 3 + i;
        nix::fcntl::fcntl(
            unsafe_borrow(raw),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .with_context(|| format!("inherited descriptor {raw} is not open"))?;
        let name = names
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        out.push((name, own(raw)));
    }
    for v in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"] {
        std::env::remove_var(v);
    }
    Ok(out)
}

#[allow(unsafe_code)]
fn unsafe_borrow(raw: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: `raw` is one of the descriptors the parent passed (3..3+LISTEN_FDS);
    // nothing else in this process has opened or closed it yet, and the borrow is
    // used only for an fcntl before ownership is taken.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }
}

#[allow(unsafe_code)]
fn own(raw: RawFd) -> OwnedFd {
    // SAFETY: as above; the descriptor is open (fcntl succeeded) and is owned by
    // exactly one OwnedFd from here on.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// When root and `process.user` is set: chroot (if asked), setgroups, setgid, setuid.
/// Returns whether the process is now chrooted.
fn drop_privileges(config: &Config, opts: Options) -> anyhow::Result<bool> {
    use nix::unistd::{chdir, chroot, geteuid, setgid, setgroups, setuid, User};
    let Some(user) = &config.process.user else {
        return Ok(false);
    };
    if !geteuid().is_root() {
        return Ok(false);
    }
    let u = User::from_name(user)
        .with_context(|| format!("looking up user {user}"))?
        .with_context(|| format!("process.user {user:?} does not exist"))?;
    let chrooted = opts.chroot && !config.process.chroot.is_empty();
    if chrooted {
        let root = Path::new(&config.process.chroot);
        chroot(root).with_context(|| format!("chroot to {}", root.display()))?;
        chdir("/").context("chdir / after chroot")?;
    }
    // Nothing this process or a program it might run could ever hold a
    // capability again: the bounding set goes before the user changes
    // (dropping needs CAP_SETPCAP, which root has until then).
    let dropped = drop_bounding_set().with_context(|| {
        format!(
            "emptying the capability bounding set (needs CAP_SETPCAP{})",
            if std::env::var_os("INVOCATION_ID").is_some() {
                ": add it to the unit's CapabilityBoundingSet="
            } else {
                ""
            }
        )
    })?;
    setgroups(&[u.gid]).context("setgroups")?;
    setgid(u.gid).context("setgid")?;
    setuid(u.uid).context("setuid")?;
    if setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        bail!("privileges could be regained after dropping them");
    }
    tracing::debug!(
        "running as {user} (uid {}, gid {}), {dropped} capabilities out of the bounding set",
        u.uid,
        u.gid
    );
    Ok(chrooted)
}

/// Capabilities (numbers of linux/capability.h) the master needs in its
/// bounding set to start its workers as `process.user`: change user and
/// group, and empty the workers' own bounding set.
pub const DROP_CAPABILITIES: [(u32, &str); 3] =
    [(7, "CAP_SETUID"), (6, "CAP_SETGID"), (8, "CAP_SETPCAP")];
/// … and to chroot smtpd (`process.chroot`).
pub const CHROOT_CAPABILITY: (u32, &str) = (18, "CAP_SYS_CHROOT");

/// Whether capability `cap` is in this process's bounding set
/// (`PR_CAPBSET_READ`): a process started without it (a systemd unit's
/// `CapabilityBoundingSet=`) can never use it, even as root.
#[allow(unsafe_code)]
pub fn in_bounding_set(cap: u32) -> bool {
    // SAFETY: prctl with PR_CAPBSET_READ takes two integers and touches
    // no memory of ours.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1 }
}

/// Removes every capability from the bounding set (`PR_CAPBSET_DROP`, up
/// to the kernel's last one); returns how many it removed.
#[allow(unsafe_code)]
fn drop_bounding_set() -> std::io::Result<u32> {
    let mut n = 0;
    for cap in 0..64 {
        // SAFETY: prctl with PR_CAPBSET_DROP takes two integers and
        // touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r == 0 {
            n += 1;
            continue;
        }
        let e = std::io::Error::last_os_error();
        // EINVAL: past the kernel's last capability.
        if e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(n);
        }
        return Err(e);
    }
    Ok(n)
}
