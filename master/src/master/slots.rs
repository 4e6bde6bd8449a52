//! The worker table: one slot per worker position, the process in it
//! started, reaped and started again.
//!
//! A slot keeps its place in the table while its processes come and go; a
//! `generation` counted at each start tells a dead process's late messages
//! from its successor's. A worker that exits is started again at once if it
//! ran at least [`STARTUP_GRACE`], else after a throttle delay that doubles
//! from [`THROTTLE_MIN`] to [`THROTTLE_MAX`] (Postfix's
//! `service_throttle_time`), logged as `throttling, restart in …`. Slots
//! retired by a `postern restart` are reused by the next one.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::MasterRequest;
use postern_shared::runtime::worker::WorkerConfig;
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{Kind, Master, Msg};
use crate::spawn;

/// A worker that exits sooner than this after its start is throttled.
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// First throttle delay; doubles at each quick death.
pub(super) const THROTTLE_MIN: Duration = Duration::from_secs(1);
/// Longest throttle delay (Postfix's `service_throttle_time`).
pub(super) const THROTTLE_MAX: Duration = Duration::from_secs(60);

/// The delay before restarting a worker that died, after `last`: none if
/// it ran [`STARTUP_GRACE`], else 1 s doubling at each quick death up to
/// 60 s.
fn next_throttle(last: Duration, quick: bool) -> Duration {
    if quick {
        (last * 2).clamp(THROTTLE_MIN, THROTTLE_MAX)
    } else {
        Duration::ZERO
    }
}

/// What a slot is doing. Each state has one word ([`SlotState::word`]),
/// the same in `postern status`, in the `worker=` answers the router's
/// metrics ask for, and in the logs.
///
/// A process runs in the first four states and in no other:
/// `Slot::pid` is `Some` exactly then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    /// Its process runs and has not said `event=ready` yet.
    Starting,
    /// Its process said `event=ready`: it serves.
    Ready,
    /// Replaced by `postern restart smtpd|router`: its process finishes its
    /// sessions and exits; the slot is then retired, not restarted.
    Draining,
    /// Stopped by `postern restart updater`: the next process starts as soon
    /// as this one has exited, unthrottled.
    Replacing,
    /// No process; the next one starts at this instant (at once after a
    /// worker that ran a while, later when throttled).
    Restarting(Instant),
    /// No process and none to come: not started yet, or the master stops.
    Stopped,
    /// No process and none to come: replaced by `postern restart`; the slot
    /// may be reused by the next one.
    Retired,
}

impl SlotState {
    /// The state's one word.
    pub(super) fn word(self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Ready => "ready",
            SlotState::Draining => "draining",
            SlotState::Replacing => "replacing",
            SlotState::Restarting(_) => "restarting",
            SlotState::Stopped => "stopped",
            SlotState::Retired => "retired",
        }
    }
}

/// One worker position: the process in it comes and goes, the slot stays.
pub(super) struct Slot {
    /// The program it runs.
    pub(super) kind: Kind,
    /// Its process, while one runs (see [`SlotState`]).
    pub(super) pid: Option<Pid>,
    /// Incremented at each spawn, so that messages from a dead process are ignored.
    pub(super) generation: u64,
    /// When its process started (its uptime).
    pub(super) started: Instant,
    /// Processes started after the first.
    pub(super) restarts: u32,
    /// The last throttle delay: zero, or 1 s doubling to 60 s.
    pub(super) throttle: Duration,
    /// What it is doing.
    pub(super) state: SlotState,
    /// The master's end of its channel; dropped, it tells the worker to stop.
    pub(super) to_worker: Option<OwnedWriteHalf>,
    /// How its last process ended (`exit status N`, `killed by signal N`).
    pub(super) last_exit: Option<String>,
    /// The worker's last `event=load` (smtpd: sessions, failing backends).
    pub(super) load: Option<Attrs>,
}

impl Slot {
    pub(super) fn new(kind: Kind) -> Slot {
        Slot {
            kind,
            pid: None,
            generation: 0,
            started: Instant::now(),
            restarts: 0,
            throttle: Duration::ZERO,
            state: SlotState::Stopped,
            to_worker: None,
            last_exit: None,
            load: None,
        }
    }

    /// Counts as a serving position (not retired or being retired).
    pub(super) fn active(&self) -> bool {
        !matches!(self.state, SlotState::Draining | SlotState::Retired)
    }

    /// When the next process is due, if one is.
    pub(super) fn restart_at(&self) -> Option<Instant> {
        match self.state {
            SlotState::Restarting(at) => Some(at),
            _ => None,
        }
    }
}

impl Master {
    /// Starts the process of slot `i` and sends it the configuration.
    pub(super) async fn start(&mut self, i: usize) {
        let kind = self.slots[i].kind;
        let program = self.daemon_dir.join(kind.program());
        let (ours, theirs) = match socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(p) => p,
            Err(e) => {
                error!("cannot create a channel for {}: {e}", kind.program());
                self.schedule_restart(i, "no channel");
                return;
            }
        };
        let mut fds = vec![(
            theirs.as_fd(),
            postern_shared::runtime::worker::MASTER_FD_NAME,
        )];
        match kind {
            Kind::Router => fds.push((self.router_sock.as_fd(), "router")),
            Kind::Smtpd => fds.extend(self.tcp.iter().map(|fd| (fd.as_fd(), "smtp"))),
            Kind::Updater => fds.push((self.updater_sock.as_fd(), "updater")),
            Kind::Web => fds.extend(self.web_socks.iter().map(|fd| (fd.as_fd(), "web"))),
        }
        if let (Kind::Web, Some(m)) = (kind, &self.metrics_sock) {
            fds.push((m.as_fd(), "metrics"));
        }
        if kind == Kind::Router {
            fds.extend(self.policy_socks.iter().map(|fd| (fd.as_fd(), "policy")));
        }
        // The level, and where the master logs (file, journald): see logging::worker_env.
        let env = postern_shared::runtime::logging::worker_env(&self.config.log.level);
        let pid = match spawn::spawn(&program, &[], &fds, &env) {
            Ok(pid) => pid,
            Err(e) => {
                error!("cannot start {}: {e}", program.display());
                self.schedule_restart(i, "fork failed");
                return;
            }
        };
        drop(fds);
        drop(theirs);
        let body = self.worker_config(kind).into_bytes();
        let slot = &mut self.slots[i];
        slot.pid = Some(pid);
        slot.generation += 1;
        slot.started = Instant::now();
        slot.state = SlotState::Starting;
        info!("started {} pid {pid}", kind.program());

        let stream = std::os::unix::net::UnixStream::from(ours);
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|_| UnixStream::from_std(stream))
        {
            Ok(s) => s,
            Err(e) => {
                error!("channel to {} pid {pid}: {e}", kind.program());
                return;
            }
        };
        let (r, mut w) = stream.into_split();
        let msg = MasterRequest::Config {
            id: "0".into(),
            body,
        }
        .encode();
        if let Err(e) = proto::write(&mut w, &msg).await {
            // The worker died at once; SIGCHLD will tell.
            warn!(
                "cannot send the configuration to {} pid {pid}: {e}",
                kind.program()
            );
        }
        slot.to_worker = Some(w);
        tokio::spawn(worker_reader(
            BufReader::new(r),
            i,
            slot.generation,
            self.tx.clone(),
        ));
    }

    /// The body of a `request=config` message.
    /// Each worker gets only what it uses: smtpd asks the router for every
    /// route, so it gets no server table (which may hold 100,000 domains),
    /// only whether some server has credentials (to offer AUTH or not);
    /// only smtpd gets the TLS key.
    pub(super) fn worker_config(&self, kind: Kind) -> String {
        let auth_servers = WorkerConfig::has_auth_servers(&self.config);
        let mut config = (*self.config).clone();
        // Only the router looks aliases up; the console lists their domains.
        if !matches!(kind, Kind::Router | Kind::Web) {
            config.aliases.clear();
        }
        let tls = match kind {
            Kind::Smtpd => {
                config.servers.clear();
                self.tls.clone()
            }
            // The console's HTTPS.
            Kind::Web if config.web.tls => self.tls.clone(),
            Kind::Router | Kind::Updater | Kind::Web => None,
        };
        WorkerConfig {
            config,
            tls,
            auth_servers,
        }
        .to_toml()
    }

    /// Slot `i` has no process any more (`why`): retired if it was
    /// draining, restarted at once if it was being replaced or had run
    /// [`STARTUP_GRACE`], throttled otherwise; nothing while stopping.
    pub(super) fn schedule_restart(&mut self, i: usize, why: &str) {
        let slot = &mut self.slots[i];
        slot.pid = None;
        slot.to_worker = None;
        slot.load = None;
        if self.stopping.is_some() {
            slot.state = SlotState::Stopped;
            return;
        }
        match slot.state {
            SlotState::Draining => {
                slot.state = SlotState::Retired;
                return;
            }
            SlotState::Replacing => {
                slot.restarts += 1;
                slot.throttle = Duration::ZERO;
                slot.state = SlotState::Restarting(Instant::now());
                return;
            }
            _ => {}
        }
        let quick = slot.started.elapsed() < STARTUP_GRACE;
        slot.throttle = next_throttle(slot.throttle, quick);
        slot.restarts += 1;
        slot.state = SlotState::Restarting(Instant::now() + slot.throttle);
        if quick {
            warn!(
                "{} {why} within {:?} of its start: throttling, restart in {:?}",
                slot.kind.program(),
                STARTUP_GRACE,
                slot.throttle
            );
        }
    }

    /// Starts the processes whose restart is due.
    pub(super) async fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].restart_at().is_some_and(|t| t <= now))
            .collect();
        for i in due {
            self.slots[i].state = SlotState::Stopped;
            if self.stopping.is_none() {
                self.start(i).await;
            }
        }
    }

    /// Reaps every exited child.
    pub(super) async fn reap(&mut self) {
        loop {
            let status = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(s) => s,
            };
            let (pid, how) = match status {
                WaitStatus::Exited(pid, code) => (pid, format!("exit status {code}")),
                WaitStatus::Signaled(pid, sig, _) => {
                    (pid, format!("killed by signal {}", sig as i32))
                }
                _ => continue,
            };
            if let Some(cmd) = self.commands.remove(&pid) {
                self.command_exited(cmd, &how).await;
                continue;
            }
            let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) else {
                continue;
            };
            let program = self.slots[i].kind.program();
            let clean = how == "exit status 0";
            let expected = self.stopping.is_some()
                || matches!(
                    self.slots[i].state,
                    SlotState::Draining | SlotState::Replacing
                );
            if expected && clean {
                info!("{program} pid {pid} stopped");
            } else {
                warn!("{program} pid {pid} {how}");
            }
            self.slots[i].last_exit = Some(how.clone());
            if let Some(r) = &mut self.reload {
                if r.waiting.remove(&i) {
                    r.failures
                        .push(format!("{program} pid {pid} exited during the reload"));
                }
            }
            self.schedule_restart(i, &how);
            self.finish_reload(false);
        }
    }

    /// A free slot for a new process of `kind` (a retired one is reused).
    pub(super) fn new_slot(&mut self, kind: Kind) -> usize {
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.state == SlotState::Retired)
        {
            let generation = self.slots[i].generation;
            self.slots[i] = Slot::new(kind);
            // Keep counting: messages from the slot's earlier processes stay stale.
            self.slots[i].generation = generation;
            return i;
        }
        self.slots.push(Slot::new(kind));
        self.slots.len() - 1
    }
}

/// Reads a worker's messages and forwards them to the main loop.
pub(super) async fn worker_reader(
    mut r: BufReader<tokio::net::unix::OwnedReadHalf>,
    slot: usize,
    generation: u64,
    tx: mpsc::Sender<Msg>,
) {
    while let Ok(Some(attrs)) = proto::read(&mut r).await {
        if tx
            .send(Msg::Worker {
                slot,
                generation,
                attrs,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_doubles_from_1_s_to_60_s_and_resets_after_a_good_run() {
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..9 {
            delay = next_throttle(delay, true);
            seen.push(delay.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(next_throttle(delay, false), Duration::ZERO);
        assert_eq!(next_throttle(Duration::ZERO, true), THROTTLE_MIN);
    }
}
