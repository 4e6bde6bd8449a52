//! Reloading (SIGHUP, `postern reload`, SMTP RELOAD).
//!
//! Load and validate the file (and read its TLS files); a file that does not
//! load changes nothing, and the reason goes back to whoever asked. A valid
//! one replaces the master's configuration, goes to every worker as
//! `request=config id=reload-N`, and the reload is done when each has
//! acknowledged, or at [`RELOAD_ACK_TIMEOUT`], between `RELOADING=1` and
//! `READY=1`. Keys a reload cannot change are named in a warning.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_shared::config::Config;
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::MasterRequest;
use postern_shared::ipc::Outcome;
use postern_shared::runtime::worker::TlsPem;
use sd_notify::NotifyState;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{log_warnings, notify, warn_plaintext_auth, Kind, Master};

/// How long a reload waits for the workers' acknowledgements.
pub(super) const RELOAD_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A reload waiting for acknowledgements.
pub(super) struct PendingReload {
    /// The `id` of its `request=config` messages (`reload-N`).
    pub(super) id: String,
    /// The slots that have not acknowledged yet.
    pub(super) waiting: HashSet<usize>,
    /// When the slots still waiting count as failures.
    pub(super) deadline: Instant,
    /// What went wrong, worker by worker, for the answer and the log.
    pub(super) failures: Vec<String>,
    /// Whoever asked (`postern reload`, SMTP RELOAD); none for SIGHUP.
    pub(super) reply: Option<oneshot::Sender<Attrs>>,
}

impl Master {
    pub(super) async fn begin_reload(&mut self, reply: Option<oneshot::Sender<Attrs>>) {
        // Every refusal answers the requester (if any) the same way.
        let refuse = |reply: Option<oneshot::Sender<Attrs>>, why: String| {
            if let Some(r) = reply {
                let _ = r.send(Outcome::tempfail(why).reply(None));
            }
        };
        if self.stopping.is_some() {
            return refuse(reply, "stopping".into());
        }
        if self.reload.is_some() {
            return refuse(reply, "a reload is already in progress".into());
        }
        info!("reloading {}", self.config_path.display());
        let loaded = Config::load(&self.config_path)
            .map_err(|e| e.one_line())
            .and_then(|c| {
                TlsPem::read(&c)
                    .map(|t| (c, t))
                    .map_err(|e| format!("{e:#}"))
            });
        let (new, tls) = match loaded {
            Ok(pair) => pair,
            Err(why) => {
                error!("reload refused, keeping the running configuration: {why}");
                return refuse(reply, why);
            }
        };
        warn_plaintext_auth(&new);
        log_warnings(&new);
        for key in restart_only_changes(&self.config, &new) {
            warn!("{key} changed: this takes effect only after a restart of postern");
        }
        notify(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
        self.reload_seq += 1;
        let id = format!("reload-{}", self.reload_seq);
        self.config = Arc::new(new);
        self.tls = tls;
        let bodies: HashMap<&'static str, Attrs> =
            [Kind::Smtpd, Kind::Router, Kind::Updater, Kind::Web]
                .into_iter()
                .map(|k| {
                    let msg = MasterRequest::Config {
                        id: id.clone(),
                        body: self.worker_config(k).into_bytes(),
                    }
                    .encode();
                    (k.program(), msg)
                })
                .collect();
        let mut waiting = HashSet::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let msg = &bodies[slot.kind.program()];
            if let Some(w) = &mut slot.to_worker {
                match proto::write(w, msg).await {
                    Ok(()) => {
                        waiting.insert(i);
                    }
                    Err(e) => warn!(
                        "cannot send the configuration to {}: {e}",
                        slot.kind.program()
                    ),
                }
            }
        }
        self.reload = Some(PendingReload {
            id,
            waiting,
            deadline: Instant::now() + RELOAD_ACK_TIMEOUT,
            failures: Vec::new(),
            reply,
        });
        self.finish_reload(false);
    }

    /// Completes the pending reload once every worker answered (or at the deadline).
    pub(super) fn finish_reload(&mut self, deadline: bool) {
        let Some(r) = &self.reload else { return };
        if !r.waiting.is_empty() && !deadline {
            return;
        }
        let Some(mut r) = self.reload.take() else {
            return;
        };
        for i in r.waiting.drain() {
            r.failures.push(format!(
                "{} did not acknowledge",
                self.slots[i].kind.program()
            ));
        }
        let answer = if r.failures.is_empty() {
            info!("configuration reloaded");
            Outcome::Ok.reply(None)
        } else {
            let why = r.failures.join("; ");
            warn!("configuration reloaded with problems: {why}");
            Outcome::tempfail(why).reply(None)
        };
        notify(&[
            NotifyState::Ready,
            NotifyState::Status("configuration reloaded"),
        ]);
        if let Some(reply) = r.reply {
            let _ = reply.send(answer);
        }
    }
}

/// Keys that a reload cannot change.
pub(super) fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.proxy.listen != new.proxy.listen {
        out.push("proxy.listen");
    }
    let (a, b) = (&old.process, &new.process);
    if a.user != b.user {
        out.push("process.user");
    }
    if a.smtpd_processes != b.smtpd_processes {
        out.push("process.smtpd_processes");
    }
    if a.chroot != b.chroot {
        out.push("process.chroot");
    }
    if a.run_dir != b.run_dir {
        out.push("process.run_dir");
    }
    if a.daemon_dir != b.daemon_dir {
        out.push("process.daemon_dir");
    }
    if old.log.level != new.log.level {
        out.push("log.level");
    }
    if old.log.file != new.log.file {
        out.push("log.file");
    }
    if old.log.journald != new.log.journald {
        out.push("log.journald");
    }
    if old.metrics != new.metrics {
        out.push("metrics.listen");
    }
    if old.policy_server != new.policy_server {
        out.push("policy_server.listen");
    }
    out
}
