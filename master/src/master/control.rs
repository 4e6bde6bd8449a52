//! The control socket (`run_dir/master.sock`, root only): the admin CLI's
//! `status`, `reload`, `stop` and `restart`, one request per connection;
//! and the status text, with the worker states the router's metrics ask for
//! (`request=workers`).

use std::collections::HashMap;
use std::time::Duration;

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::Outcome;
use postern_shared::ipc::{self, ControlRequest};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use super::{human, Master, Msg, SlotState};

impl Master {
    /// Answers one request of the admin CLI (`postern status`, `reload`,
    /// `stop`, `restart WORKER`); a reload or restart answers when it is done.
    pub(super) async fn control(&mut self, req: Attrs, reply: oneshot::Sender<Attrs>) {
        match ControlRequest::decode(&req) {
            Ok(ControlRequest::Status) => {
                let _ = reply.send(self.status());
            }
            Ok(ControlRequest::Reload) => self.begin_reload(Some(reply)).await,
            Ok(ControlRequest::Restart { worker }) => {
                self.restart_worker(&worker, reply).await;
            }
            Ok(ControlRequest::Stop) => {
                let _ = reply.send(Outcome::Ok.reply(None));
                self.begin_stop("postern stop");
            }
            Err(unknown) => {
                let _ = reply.send(Outcome::tempfail(unknown).reply(None));
            }
        }
    }

    /// The text of `postern status`: the master, then a line per worker
    /// slot with its state's word in brackets unless it serves (retired
    /// slots are left out), then the load report.
    pub(super) fn status(&self) -> Attrs {
        let mut text = format!(
            "master pid {} up {} config {}\n",
            std::process::id(),
            human(self.started.elapsed()),
            self.config_path.display()
        );
        if self.stopping.is_some() {
            text.push_str("state: stopping\n");
        }
        text.push_str(&format!(
            "{:<16} {:>8} {:>10} {:>9}  {}\n",
            "WORKER", "PID", "UPTIME", "RESTARTS", "LAST EXIT"
        ));
        for s in self.slots.iter().filter(|s| s.state != SlotState::Retired) {
            let (pid, up) = match s.pid {
                Some(p) => (p.to_string(), human(s.started.elapsed())),
                None => ("-".into(), "-".into()),
            };
            let state = match s.state {
                SlotState::Ready => String::new(),
                other => format!(" ({})", other.word()),
            };
            text.push_str(&format!(
                "{:<16} {pid:>8} {up:>10} {:>9}  {}{state}\n",
                s.kind.program(),
                s.restarts,
                s.last_exit.as_deref().unwrap_or("-")
            ));
        }
        text.push_str(&self.load_report());
        Outcome::Ok.reply(None).with_body(text.into_bytes())
    }

    /// Each server's health (in `config.servers` order), the worst view of
    /// any smtpd: `reachable`, or `failing since … ago (N failures in a
    /// row)`, skipped for how long.
    pub(super) fn backend_states(&self) -> Vec<String> {
        let loads = self
            .slots
            .iter()
            .filter(|s| s.pid.is_some())
            .filter_map(|s| s.load.as_ref());
        // name → (failures, since, skipped seconds).
        let mut failing: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for line in loads.flat_map(|a| a.get_all("failing")) {
            let f: Vec<&str> = line.split('|').collect();
            if let [name, count, since, left] = f.as_slice() {
                let n = |v: &str| v.parse::<u64>().unwrap_or(0);
                let e = failing.entry(name.to_string()).or_insert((0, u64::MAX, 0));
                e.0 = e.0.max(n(count));
                e.1 = e.1.min(n(since));
                e.2 = e.2.max(n(left));
            }
        }
        self.config
            .servers
            .iter()
            .map(|s| match failing.get(&s.display_name()) {
                None => "reachable".to_string(),
                Some((count, since, left)) => {
                    let ago = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs().saturating_sub(*since))
                        .unwrap_or(0);
                    let mut st = format!(
                        "failing since {} ago ({count} failures in a row)",
                        human(Duration::from_secs(ago))
                    );
                    if *left > 0 {
                        st.push_str(&format!(", skipped for {left}s more"));
                    }
                    st
                }
            })
            .collect()
    }

    /// Sessions in progress and each server's health, from the smtpd reports.
    pub(super) fn load_report(&self) -> String {
        let loads: Vec<&Attrs> = self
            .slots
            .iter()
            .filter(|s| s.pid.is_some())
            .filter_map(|s| s.load.as_ref())
            .collect();
        let sessions: u64 = loads
            .iter()
            .filter_map(|a| a.get("sessions")?.parse::<u64>().ok())
            .sum();
        let mut text = format!("sessions in progress: {sessions}\n");
        text.push_str("BACKEND              ADDRESS                STATE\n");
        for (s, state) in self.config.servers.iter().zip(self.backend_states()) {
            text.push_str(&format!(
                "{:<20} {:<22} {state}\n",
                s.display_name(),
                format!("{}:{}", s.host, s.port)
            ));
        }
        let aliases = crate::alias::domain_lines(&self.config);
        if !aliases.is_empty() {
            text.push_str(
                "ALIAS DOMAIN                 ALIASES                  OTHER ADDRESSES\n",
            );
            for l in aliases {
                text.push_str(&l);
                text.push('\n');
            }
        }
        // The router's view of the DNS blocklists (SPEC §8).
        let zones: Vec<&str> = loads.iter().flat_map(|a| a.get_all("zone")).collect();
        if !zones.is_empty() {
            text.push_str("BLOCKLIST ZONE                 STATE\n");
            for z in zones {
                let mut f = z.splitn(3, '|');
                let (name, state, why) = (
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                );
                let state = match state {
                    "ok" => "in use".to_string(),
                    "degraded" => format!("in use, degraded: {why}"),
                    _ => format!("not in use: {why}"),
                };
                text.push_str(&format!("{name:<30} {state}\n"));
            }
        }
        // The greylist store's standing, when greylisting is on.
        if let Some(g) = loads.iter().find_map(|a| a.get("greylist")) {
            let (state, why) = g.split_once('|').unwrap_or((g, ""));
            let state = match state {
                "ok" => "in use".to_string(),
                _ => format!("degraded: {why} (on_store_error applies)"),
            };
            text.push_str(&format!("greylist store: {state}\n"));
        }
        text
    }

    /// The answer to a worker's `request=workers` (the router's metrics): one
    /// `worker=<program> <slot> <pid|-> <state> <restarts> <uptime seconds>`
    /// per slot; state is the slot's word ([`SlotState::word`]).
    pub(super) fn worker_states(&self) -> Attrs {
        let mut a = Outcome::Ok.reply(None);
        for (i, s) in self.slots.iter().enumerate() {
            let state = s.state.word();
            let (pid, up) = match s.pid {
                Some(p) => (p.to_string(), s.started.elapsed().as_secs()),
                None => ("-".into(), 0),
            };
            a.push(
                "worker",
                format!("{} {i} {pid} {state} {} {up}", s.kind.program(), s.restarts),
            );
        }
        a
    }
}

/// Serves the admin CLI: one request per connection.
pub(super) async fn control_loop(listener: UnixListener, tx: mpsc::Sender<Msg>) {
    ipc::oneshot::serve(listener, "control", tx, |req, reply| Msg::Control {
        req,
        reply,
    })
    .await
}
