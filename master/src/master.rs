//! The master process: binds, spawns, reaps, throttles, reloads, stops.
//!
//! Start-up, in order: refuse to start over a running master (pid file),
//! create `run_dir`, bind the TCP listeners and the Unix sockets
//! (`router.sock` for the router, `master.sock` for the admin CLI), write the
//! pid file, start the router then `smtpd_processes` smtpd workers, each with
//! its sockets inherited and its configuration sent over its channel. When
//! every worker has said `event=ready`, tell systemd `READY=1`.
//!
//! Then one loop ([`run`]) handles, one at a time, each in its own file, as
//! Postfix splits its master into `master_*.c`:
//! - SIGCHLD: reap; a worker that exits is started again, at once if it had
//!   run a while, after a growing delay (1 s doubling to 60 s) if it died
//!   within [`STARTUP_GRACE`](slots::STARTUP_GRACE) of its start; the log
//!   says so ([`slots`]: the worker table, spawn, reap, throttle);
//! - SIGHUP or `request=reload`: load and validate the file; if invalid,
//!   nothing changes and the error is logged and returned; if valid, send it
//!   to every worker and wait (up to
//!   [`RELOAD_ACK_TIMEOUT`](reload::RELOAD_ACK_TIMEOUT)) until each has
//!   acknowledged, between `RELOADING=1` and `READY=1` ([`reload`]);
//! - SIGTERM, SIGINT or `request=stop`: stop (`STOPPING=1`): SIGTERM to the
//!   smtpd workers, which stop accepting and drain their sessions for
//!   `process.stop_timeout`; once they are gone, SIGTERM to the router (which
//!   draining sessions still need); whatever remains after the grace period
//!   plus [`KILL_MARGIN`](stop::KILL_MARGIN) gets SIGKILL. Every child is
//!   reaped before the master removes its sockets and pid file and exits
//!   ([`stop`]);
//! - `request=restart worker=` (`postern restart`): new processes, then the
//!   old ones drain ([`swap`]);
//! - `request=restart server=` from the updater: a backend's
//!   `restart_command`, run, reaped and timed ([`commands`]);
//! - `request=status`: the workers with pids, uptimes, restarts, last exit
//!   and state ([`control`]: the control socket and the status text);
//! - `request=workers` from a worker (postern-web, for its metrics
//!   endpoint): each slot's program, pid, state, restarts and uptime, as
//!   attributes. `[metrics] listen` is bound here like the SMTP listeners
//!   and handed to postern-web as the descriptor named `metrics`.
//!
//! This file keeps the start-up, the loop and the dispatch of what the
//! workers' channels and the control socket bring ([`Msg`]).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use postern_shared::config::{Config, PolicyListen};
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::Outcome;
use postern_shared::ipc::{self, WorkerRequest};
use postern_shared::runtime::worker::TlsPem;
use sd_notify::NotifyState;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use tracing::{info, warn};

use crate::sockets;

mod commands;
mod control;
mod reload;
mod slots;
mod stop;
mod swap;

use commands::RunningCommand;
use control::control_loop;
use reload::PendingReload;
use slots::{Slot, SlotState};
use stop::KILL_MARGIN;
use swap::PendingSwap;

pub use postern_shared::ipc::{CONTROL_SOCKET, ROUTER_SOCKET, UPDATER_SOCKET};
/// Name of the pid file in `run_dir`.
pub const PID_FILE: &str = "postern.pid";

/// The kinds of worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Router,
    Smtpd,
    Updater,
    /// The admin console, when `[web] listen` is set.
    Web,
}

impl Kind {
    /// The worker's program, which is also its name in logs and status.
    fn program(self) -> &'static str {
        match self {
            Kind::Router => "postern-router",
            Kind::Smtpd => "postern-smtpd",
            Kind::Updater => "postern-updater",
            Kind::Web => "postern-web",
        }
    }
}

/// What the worker readers and the control socket tell the main loop.
enum Msg {
    /// A message on a worker's channel, from the process of `generation`.
    Worker {
        slot: usize,
        generation: u64,
        attrs: Attrs,
    },
    /// A draining worker's channel, handed back to its slot.
    Hold {
        slot: usize,
        generation: u64,
        channel: OwnedWriteHalf,
    },
    /// An answer to a worker's request, to write on its channel.
    ToWorker {
        slot: usize,
        generation: u64,
        attrs: Attrs,
    },
    /// A request on the control socket, and where its answer goes.
    Control {
        req: Attrs,
        reply: oneshot::Sender<Attrs>,
    },
}

/// The master's state, owned by its event loop: one of each concern's
/// pieces (the slots, a pending reload, swap or stop, the commands).
struct Master {
    /// The file it was started with, read again at each reload.
    config_path: PathBuf,
    /// The configuration in force.
    config: Arc<Config>,
    /// The TLS files of `config`, read by the master (workers cannot).
    tls: Option<TlsPem>,
    /// Where the worker programs are.
    daemon_dir: PathBuf,
    /// The worker table ([`slots`]).
    slots: Vec<Slot>,
    /// The SMTP listeners, handed to every smtpd as `smtp`.
    tcp: Vec<OwnedFd>,
    /// `run_dir/router.sock`, handed to the router as `router`.
    router_sock: OwnedFd,
    /// `run_dir/updater.sock`, handed to the updater as `updater`.
    updater_sock: OwnedFd,
    /// `[metrics] listen`, handed to postern-web as `metrics`.
    metrics_sock: Option<OwnedFd>,
    /// `[web] listen`, handed to postern-web as `web`.
    web_socks: Vec<OwnedFd>,
    /// `[policy_server] listen`, handed to the router as `policy`.
    policy_socks: Vec<OwnedFd>,
    /// Restart commands running, by pid.
    commands: HashMap<Pid, RunningCommand>,
    /// To the event loop, for the channel readers and the control socket.
    tx: mpsc::Sender<Msg>,
    /// `READY=1` was sent at start-up.
    ready_sent: bool,
    /// The reload in progress, if any ([`reload`]).
    reload: Option<PendingReload>,
    /// The `postern restart` in progress, if any ([`swap`]).
    swap: Option<PendingSwap>,
    /// Reloads so far, for their ids.
    reload_seq: u64,
    /// When the stop began ([`stop`]).
    stopping: Option<Instant>,
    /// When the master started (its uptime in `postern status`).
    started: Instant,
}

/// Runs the master in the foreground until it is stopped.
pub async fn run(config_path: PathBuf, config: Config) -> anyhow::Result<()> {
    let run_dir = config.process.run_dir.clone();
    let pid_path = run_dir.join(PID_FILE);
    if let Some(pid) = running_pid(&pid_path) {
        anyhow::bail!(
            "postern is already running (pid {pid}, {})",
            pid_path.display()
        );
    }
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;

    warn_plaintext_auth(&config);
    log_warnings(&config);
    raise_open_files_limit();
    let owner = worker_user(&config)?;
    let tls = TlsPem::read(&config)?;
    let mut tcp = Vec::new();
    for addr in config.listen_addrs() {
        let (fd, bound) = sockets::bind_tcp(addr)?;
        tcp.push(fd);
        info!("listening on {bound}");
    }
    let metrics_sock = match config.metrics.listen_addr() {
        Some(addr) => {
            let (fd, bound) = sockets::bind_tcp(addr)?;
            info!("metrics endpoint on http://{bound}/metrics");
            Some(fd)
        }
        None => None,
    };
    let mut web_socks = Vec::new();
    for addr in config.web.addrs() {
        let (fd, bound) = sockets::bind_tcp(addr)?;
        let scheme = if config.web.tls { "https" } else { "http" };
        info!("admin console on {scheme}://{bound}/");
        web_socks.push(fd);
    }
    let mut policy_socks = Vec::new();
    for l in config.policy_server.addrs() {
        match l {
            PolicyListen::Tcp(addr) => {
                let (fd, bound) = sockets::bind_tcp(addr)?;
                info!("policy server on {bound}");
                policy_socks.push(fd);
            }
            PolicyListen::Unix(path) => {
                // Postfix's smtpd, another user, connects to it: anyone may
                // ask (the answers are verdicts, nothing changes).
                let fd = sockets::bind_unix(&path, owner.as_ref())?;
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o666),
                )
                .with_context(|| format!("chmod {}", path.display()))?;
                info!("policy server on unix:{}", path.display());
                policy_socks.push(fd);
            }
        }
    }
    let router_sock = sockets::bind_unix(&run_dir.join(ROUTER_SOCKET), owner.as_ref())?;
    let updater_sock = sockets::bind_unix(&run_dir.join(UPDATER_SOCKET), owner.as_ref())?;
    for dir in [&config.process.spool_dir, &config.process.state_dir] {
        private_dir(dir, owner.as_ref())?;
    }
    let control = sockets::bind_unix(&run_dir.join(CONTROL_SOCKET), None)?;
    std::fs::write(&pid_path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_path.display()))?;

    let daemon_dir = crate::preflight::daemon_dir(&config).map_err(anyhow::Error::msg)?;
    let (tx, mut rx) = mpsc::channel(64);
    let control = std::os::unix::net::UnixListener::from(control);
    control.set_nonblocking(true)?;
    tokio::spawn(control_loop(UnixListener::from_std(control)?, tx.clone()));

    let mut m = Master {
        config_path,
        config: Arc::new(config),
        tls,
        daemon_dir,
        slots: Vec::new(),
        tcp,
        router_sock,
        updater_sock,
        metrics_sock,
        web_socks,
        policy_socks,
        commands: HashMap::new(),
        tx,
        ready_sent: false,
        reload: None,
        swap: None,
        reload_seq: 0,
        stopping: None,
        started: Instant::now(),
    };
    m.slots.push(Slot::new(Kind::Router));
    m.slots.push(Slot::new(Kind::Updater));
    // The console and the metrics endpoint: postern-web serves both.
    if !m.web_socks.is_empty() || m.metrics_sock.is_some() {
        m.slots.push(Slot::new(Kind::Web));
    }
    for _ in 0..m.config.process.smtpd_processes {
        m.slots.push(Slot::new(Kind::Smtpd));
    }
    // Handlers first: a worker that dies at once must not go unreaped.
    let mut sigchld = signal(SignalKind::child())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    for i in 0..m.slots.len() {
        m.start(i).await;
    }
    notify(&[NotifyState::Status("starting workers")]);
    // Signals of the same kind coalesce; a slow periodic reap is the safety net.
    let mut reap_tick = tokio::time::interval(Duration::from_secs(5));
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));

    loop {
        let far = Instant::now() + Duration::from_secs(3600);
        let next_restart = m
            .slots
            .iter()
            .filter_map(|s| s.restart_at())
            .min()
            .unwrap_or(far);
        let reload_deadline = m.reload.as_ref().map_or(far, |r| r.deadline);
        let kill_deadline = m
            .stopping
            .map_or(far, |t| t + m.config.process.stop_timeout.0 + KILL_MARGIN);
        let swap_deadline = m.swap.as_ref().map_or(far, |s| s.deadline);
        let command_deadline = m
            .commands
            .values()
            .filter(|c| !c.timed_out)
            .map(|c| c.deadline)
            .min()
            .unwrap_or(far);
        tokio::select! {
            _ = sigchld.recv() => m.reap().await,
            _ = reap_tick.tick() => m.reap().await,
            _ = sigterm.recv() => m.begin_stop("SIGTERM"),
            _ = sigint.recv() => m.begin_stop("SIGINT"),
            _ = sighup.recv() => m.begin_reload(None).await,
            Some(msg) = rx.recv() => m.message(msg).await,
            _ = tokio::time::sleep_until(next_restart.into()) => m.restart_due().await,
            _ = tokio::time::sleep_until(reload_deadline.into()) => m.finish_reload(true),
            _ = tokio::time::sleep_until(kill_deadline.into()) => m.kill_remaining(),
            _ = tokio::time::sleep_until(command_deadline.into()) => m.kill_late_commands(),
            _ = tokio::time::sleep_until(swap_deadline.into()) => m.advance_swap(true),
            _ = watchdog_tick.tick(), if watchdog.is_some() => notify(&[NotifyState::Watchdog]),
        }
        if m.stopping.is_some() {
            m.advance_stop();
            if m.slots.iter().all(|s| s.pid.is_none()) {
                break;
            }
        }
    }
    for f in [PID_FILE, CONTROL_SOCKET, ROUTER_SOCKET, UPDATER_SOCKET] {
        let _ = std::fs::remove_file(run_dir.join(f));
    }
    for l in m.config.policy_server.addrs() {
        if let PolicyListen::Unix(path) = l {
            let _ = std::fs::remove_file(path);
        }
    }
    info!("stopped");
    Ok(())
}

impl Master {
    /// Handles what a channel reader or the control socket brought.
    async fn message(&mut self, msg: Msg) {
        match msg {
            Msg::Worker {
                slot,
                generation,
                attrs,
            } => {
                if self.slots.get(slot).map(|s| s.generation) != Some(generation) {
                    return;
                }
                if ipc::is_request(&attrs) {
                    let request = WorkerRequest::decode(&attrs);
                    // An SMTP RELOAD/SHUTDOWN: the session's id on the master's lines.
                    let sid = request.as_ref().ok().and_then(|r| r.sid()).unwrap_or("-");
                    let span = tracing::info_span!("worker_request", sid);
                    self.worker_request(
                        slot,
                        generation,
                        request.clone(),
                        attrs.get("id").unwrap_or("").to_string(),
                    )
                    .instrument(span)
                    .await;
                } else if ipc::event_of(&attrs) == Ok(ipc::Event::Load) {
                    self.slots[slot].load = Some(attrs);
                } else if ipc::event_of(&attrs) == Ok(ipc::Event::Ready) {
                    if self.slots[slot].state == SlotState::Starting {
                        self.slots[slot].state = SlotState::Ready;
                    }
                    self.check_ready();
                    self.advance_swap(false);
                } else if let Some(id) = attrs.get("id") {
                    if let Some(r) = &mut self.reload {
                        if r.id == id && r.waiting.remove(&slot) {
                            if !Outcome::is_ok(&attrs) {
                                r.failures.push(format!(
                                    "{}: {}",
                                    self.slots[slot].kind.program(),
                                    Outcome::reason_in(&attrs).unwrap_or("failed")
                                ));
                            }
                            self.finish_reload(false);
                        }
                    }
                }
            }
            Msg::Hold {
                slot,
                generation,
                channel,
            } => {
                if self.slots.get(slot).map(|s| s.generation) == Some(generation)
                    && self.slots[slot].pid.is_some()
                {
                    self.slots[slot].to_worker = Some(channel);
                }
            }
            Msg::ToWorker {
                slot,
                generation,
                attrs,
            } => {
                if self.slots.get(slot).map(|s| s.generation) == Some(generation) {
                    if let Some(w) = &mut self.slots[slot].to_worker {
                        let _ = proto::write(w, &attrs).await;
                    }
                }
            }
            Msg::Control { req, reply } => self.control(req, reply).await,
        }
    }

    /// A worker asks on behalf of an SMTP admin command (`RELOAD`, `SHUTDOWN`);
    /// smtpd has checked the credentials and the client's address.
    async fn worker_request(
        &mut self,
        slot: usize,
        generation: u64,
        request: Result<WorkerRequest, ipc::DecodeError>,
        id: String,
    ) {
        let program = self.slots[slot].kind.program();
        let (tx, rx) = oneshot::channel::<Attrs>();
        let back = self.tx.clone();
        let reply_id = id.clone();
        tokio::spawn(async move {
            if let Ok(mut answer) = rx.await {
                answer.push("id", &reply_id);
                let _ = back
                    .send(Msg::ToWorker {
                        slot,
                        generation,
                        attrs: answer,
                    })
                    .await;
            }
        });
        match request {
            Ok(WorkerRequest::Reload { sid }) => {
                if self.slots[slot].kind == Kind::Web {
                    info!("reload requested by {program} ({sid})");
                } else {
                    info!("reload requested by {program} (SMTP RELOAD)");
                }
                self.begin_reload(Some(tx)).await;
            }
            Ok(WorkerRequest::Restart { server }) if self.slots[slot].kind == Kind::Updater => {
                self.run_restart_command(&server, tx);
            }
            Ok(WorkerRequest::Workers) => {
                let _ = tx.send(self.worker_states());
            }
            Ok(WorkerRequest::Status) => {
                let _ = tx.send(self.status());
            }
            Ok(WorkerRequest::Backends) => {
                let mut reply = Outcome::Ok.reply(None);
                for state in self.backend_states() {
                    reply.push("backend", &state);
                }
                let _ = tx.send(reply);
            }
            Ok(WorkerRequest::Log {
                what,
                pattern,
                since,
            }) if self.slots[slot].kind == Kind::Web => {
                // Reading logs takes time: off the master's loop.
                let config = self.config.clone();
                tokio::task::spawn_blocking(move || {
                    use crate::logsearch::{answer, Query};
                    let query = match what.as_str() {
                        "session" => Query::Session(&pattern),
                        "refused" => {
                            Query::Refused(Some(pattern.as_str()).filter(|p| !p.is_empty()))
                        }
                        _ => Query::Search(&pattern),
                    };
                    let since = Some(since.as_str()).filter(|s| !s.is_empty());
                    let reply = match answer(&query, since, &config) {
                        Ok(found) => {
                            let mut body = found.lines.join("\n");
                            body.push('\n');
                            let reply = Outcome::Ok.reply(None).with("count", found.lines.len());
                            match found.looked {
                                Some(l) => reply.with("looked", l),
                                None => reply,
                            }
                            .with_body(body.into_bytes())
                        }
                        Err(e) => Outcome::reject(e).reply(None),
                    };
                    let _ = tx.send(reply);
                });
            }
            Ok(WorkerRequest::Stop { .. }) => {
                // Answer before the stop closes the worker's channel.
                drop(tx);
                if let Some(w) = &mut self.slots[slot].to_worker {
                    let answer = Outcome::Ok.reply(Some(&id));
                    let _ = proto::write(w, &answer).await;
                }
                self.begin_stop("SMTP SHUTDOWN");
            }
            Ok(other @ (WorkerRequest::Restart { .. } | WorkerRequest::Log { .. })) => {
                let _ = tx.send(
                    Outcome::tempfail(format!("unknown request {}", other.verb())).reply(None),
                );
            }
            Err(unknown) => {
                let _ = tx.send(Outcome::tempfail(unknown).reply(None));
            }
        }
    }

    /// `READY=1` once, when every serving slot is ready after the start.
    fn check_ready(&mut self) {
        if self.ready_sent || self.stopping.is_some() {
            return;
        }
        if self
            .slots
            .iter()
            .filter(|s| s.active())
            .all(|s| s.state == SlotState::Ready)
        {
            self.ready_sent = true;
            let n = self
                .slots
                .iter()
                .filter(|s| s.kind == Kind::Smtpd && s.active())
                .count();
            info!("ready: router and {n} smtpd process(es) serving");
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&format!("serving with {n} smtpd processes")),
            ]);
        }
    }
}

/// Every session is a descriptor (two while relayed): raise the soft limit on
/// open files to the hard one, for the master and the workers it starts.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!("open files limit raised from {soft} to {hard}"),
            Err(e) => warn!("cannot raise the open files limit from {soft}: {e}"),
        },
        Ok((soft, _)) if soft < 4096 => {
            warn!("open files limit is {soft}: too low for many sessions")
        }
        _ => {}
    }
}

/// SPEC §3: without `[tls]`, AUTH is offered in plaintext unless
/// `auth_requires_tls` says otherwise; say so when some server uses AUTH.
fn warn_plaintext_auth(config: &Config) {
    let auth_used = config.servers.iter().any(|s| s.user.is_some());
    if auth_used && config.tls.is_none() && config.proxy.auth_requires_tls != Some(true) {
        warn!("SMTP AUTH is offered without TLS: passwords cross the network in clear (set [tls])");
    }
}

/// Logs [`Config::warnings`] (wide relay lists and admin networks), one
/// line each, at start and at every reload.
fn log_warnings(config: &Config) {
    for w in config.warnings() {
        warn!("{w}");
    }
}

/// The warning of a master started as root without `process.user`.
pub const ROOT_WORKERS: &str =
    "process.user: not set: the workers run as root (set it to an unprivileged user such as \"postern\")";

/// The workers' user, when privileges are to be dropped.
fn worker_user(config: &Config) -> anyhow::Result<Option<nix::unistd::User>> {
    let Some(name) = &config.process.user else {
        if nix::unistd::geteuid().is_root() {
            warn!("{ROOT_WORKERS}");
        }
        return Ok(None);
    };
    if !nix::unistd::geteuid().is_root() {
        warn!("process.user = {name:?} ignored: the master is not running as root");
        return Ok(None);
    }
    let u = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name}"))?
        .with_context(|| format!("process.user {name:?} does not exist"))?;
    Ok(Some(u))
}

/// Makes `dir` a directory only the workers' user (and group) can read:
/// the spool, the state. One that is already so (made by the package's
/// tmpfiles.d, `postern:postern 0750`) is left alone: the master of the
/// systemd unit has neither CAP_CHOWN nor CAP_FOWNER to touch it.
fn private_dir(dir: &Path, owner: Option<&nix::unistd::User>) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if meta.mode() & 0o007 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    if let Some(u) = owner {
        if meta.uid() != u.uid.as_raw() || meta.gid() != u.gid.as_raw() {
            nix::unistd::chown(dir, Some(u.uid), Some(u.gid)).with_context(|| {
                format!(
                    "chown {} to {} (make it theirs beforehand, as the package's tmpfiles.d does)",
                    dir.display(),
                    u.name
                )
            })?;
        }
    }
    Ok(())
}

/// The pid in `path` if that process is alive. A process this user may not
/// signal (`EPERM`: a root master seen by another user) is alive too,
/// unless `/proc` shows it is another program (a stale pid file whose pid
/// was reused).
pub fn running_pid(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    let alive = match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::EPERM) => std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map_or(true, |comm| comm.trim() == "postern"),
        Err(_) => false,
    };
    alive.then_some(pid)
}

/// Tells systemd (when it listens); a failure is only logged.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!("sd_notify: {e}");
    }
}

/// A duration for `postern status`: `42s`, `3m05s`, `2h10m`, `4d03h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}
