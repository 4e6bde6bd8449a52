//! Per-worker restart (`postern restart smtpd|router|updater`, SPEC §2):
//! one kind of worker replaced without refusing a connection.
//!
//! smtpd and router: new processes start on the same inherited sockets;
//! once every one has said `event=ready`, the old ones get `request=drain`
//! and finish their sessions before they exit (their slots are then
//! retired). If the new ones are not ready within [`RELOAD_ACK_TIMEOUT`],
//! they go and the old ones stay. updater: two must never share the spool,
//! so the running one gets SIGTERM and its successor starts as soon as it
//! has exited, unthrottled.

use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::MasterRequest;
use postern_shared::ipc::Outcome;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::reload::RELOAD_ACK_TIMEOUT;
use super::{Kind, Master, Msg, SlotState};

/// A `postern restart smtpd|router` in progress: new processes first, the old
/// ones are told to drain once every new one serves.
pub(super) struct PendingSwap {
    /// The slots of the new processes.
    pub(super) new: Vec<usize>,
    /// The slots of the processes they replace.
    pub(super) old: Vec<usize>,
    /// When the swap is abandoned if a new process is not ready.
    pub(super) deadline: Instant,
    /// The `postern restart` waiting for the outcome.
    pub(super) reply: oneshot::Sender<Attrs>,
}

impl Master {
    /// `postern restart WORKER` (SPEC §2): replace one kind of worker without
    /// refusing a connection. smtpd and router: start new processes on the same
    /// sockets, and once every one of them serves, tell the old ones to drain
    /// and exit. updater: stop it (two must never share the spool) and start the
    /// next one at once; its clients wait in the socket's backlog meanwhile.
    pub(super) async fn restart_worker(&mut self, worker: &str, reply: oneshot::Sender<Attrs>) {
        let fail = |why: &str| Outcome::tempfail(why).reply(None);
        let kind = match worker {
            "smtpd" => Kind::Smtpd,
            "router" => Kind::Router,
            "updater" => Kind::Updater,
            "web" if self.slots.iter().any(|s| s.kind == Kind::Web) => Kind::Web,
            other => {
                let _ = reply.send(fail(&format!(
                    "no worker kind {other:?}: smtpd, router, updater or web (when [web] or [metrics] listen is set)"
                )));
                return;
            }
        };
        if self.stopping.is_some() || self.swap.is_some() {
            let _ = reply.send(fail("busy: stopping or another restart in progress"));
            return;
        }
        let old: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].kind == kind && self.slots[i].active())
            .collect();
        info!("restarting {} ({} process(es))", kind.program(), old.len());
        // The updater must never run twice (the spool); the console holds
        // sessions in memory only: both are replaced by stop-then-start.
        if matches!(kind, Kind::Updater | Kind::Web) {
            for &i in &old {
                if let Some(pid) = self.slots[i].pid {
                    self.slots[i].state = SlotState::Replacing;
                    let _ = kill(pid, Signal::SIGTERM);
                }
                self.slots[i].to_worker = None;
            }
            let _ = reply.send(Outcome::Ok.reply(None).with("count", old.len()));
            return;
        }
        let mut new = Vec::new();
        for _ in &old {
            let i = self.new_slot(kind);
            self.start(i).await;
            new.push(i);
        }
        self.swap = Some(PendingSwap {
            new,
            old,
            deadline: Instant::now() + RELOAD_ACK_TIMEOUT,
            reply,
        });
        self.advance_swap(false);
    }

    /// Completes a restart once every new process serves; at the deadline,
    /// gives up: the new processes go, the old ones keep serving.
    pub(super) fn advance_swap(&mut self, deadline: bool) {
        let Some(sw) = &self.swap else { return };
        let all_ready = sw
            .new
            .iter()
            .all(|&i| self.slots[i].state == SlotState::Ready);
        if !all_ready && !deadline {
            return;
        }
        let Some(sw) = self.swap.take() else { return };
        let (go, stay) = if all_ready {
            (&sw.old, &sw.new)
        } else {
            (&sw.new, &sw.old)
        };
        for &i in go {
            let s = &mut self.slots[i];
            s.state = if s.pid.is_some() {
                SlotState::Draining
            } else {
                SlotState::Retired
            };
        }
        let go = go.clone();
        let ready = all_ready;
        let drain = MasterRequest::Drain.encode();
        let tx = self.tx.clone();
        for i in go {
            // Old processes that served are told to drain over their channel (their
            // sessions all finish); new ones that never served simply stop.
            match (ready, self.slots[i].to_worker.take(), self.slots[i].pid) {
                (true, Some(mut w), Some(_)) => {
                    let generation = self.slots[i].generation;
                    let tx = tx.clone();
                    let drain = drain.clone();
                    tokio::spawn(async move {
                        if proto::write(&mut w, &drain).await.is_err() {
                            return;
                        }
                        // Keep the channel open (its end would mean "stop") until
                        // the process has exited.
                        let _ = tx
                            .send(Msg::Hold {
                                slot: i,
                                generation,
                                channel: w,
                            })
                            .await;
                    });
                }
                (_, _, Some(pid)) => {
                    let _ = kill(pid, Signal::SIGTERM);
                }
                _ => {}
            }
        }
        let answer = if all_ready {
            info!(
                "restart done: {} new process(es) serving, the old ones drain",
                stay.len()
            );
            Outcome::Ok.reply(None).with("count", stay.len())
        } else {
            warn!("restart abandoned: the new processes did not become ready; the old ones keep serving");
            Outcome::tempfail("the new processes did not become ready in time").reply(None)
        };
        let _ = sw.reply.send(answer);
    }
}
