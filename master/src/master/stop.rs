//! Stopping (SIGTERM, SIGINT, `postern stop`, SMTP SHUTDOWN).
//!
//! In order: SIGTERM to every smtpd, which stops accepting and lets its
//! sessions finish for up to `process.stop_timeout`; once no smtpd is left,
//! SIGTERM to the router and the updater (draining sessions still needed
//! them); whatever is still alive [`KILL_MARGIN`] after the grace period
//! gets SIGKILL. The event loop ends when every slot is empty.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use sd_notify::NotifyState;
use tracing::{info, warn};

use super::{notify, Kind, Master, SlotState};

/// Extra time after `stop_timeout` before SIGKILL.
pub(super) const KILL_MARGIN: Duration = Duration::from_secs(5);

impl Master {
    /// Starts a graceful stop (`why`: the signal or the command): no
    /// restart any more, SIGTERM to the smtpd workers first.
    pub(super) fn begin_stop(&mut self, why: &str) {
        if self.stopping.is_some() {
            return;
        }
        info!(
            "stopping ({why}): draining sessions for up to {:?}",
            self.config.process.stop_timeout.0
        );
        notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.stopping = Some(Instant::now());
        for s in &mut self.slots {
            if let SlotState::Restarting(_) = s.state {
                s.state = SlotState::Stopped;
            }
        }
        self.signal_kind(Kind::Smtpd, Signal::SIGTERM);
    }

    /// Once no smtpd remains, the router may go.
    pub(super) fn advance_stop(&mut self) {
        let smtpd_left = self
            .slots
            .iter()
            .any(|s| s.kind == Kind::Smtpd && s.pid.is_some());
        if !smtpd_left {
            self.signal_kind(Kind::Router, Signal::SIGTERM);
            self.signal_kind(Kind::Updater, Signal::SIGTERM);
            self.signal_kind(Kind::Web, Signal::SIGTERM);
        }
    }

    /// Sends `sig` to every process of `kind` and closes their channels.
    pub(super) fn signal_kind(&mut self, kind: Kind, sig: Signal) {
        for s in self.slots.iter_mut().filter(|s| s.kind == kind) {
            if let Some(pid) = s.pid {
                let _ = kill(pid, sig);
                // The channel's end tells the worker too, should the signal be missed.
                s.to_worker = None;
            }
        }
    }

    /// At the stop's deadline: SIGKILL to whatever still runs.
    pub(super) fn kill_remaining(&mut self) {
        for s in &self.slots {
            if let Some(pid) = s.pid {
                warn!(
                    "{} pid {pid} did not stop in time: killing it",
                    s.kind.program()
                );
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}
