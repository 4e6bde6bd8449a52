//! postern-web: the admin console (SPEC §11) and the Prometheus endpoint
//! ([`metrics`], `[metrics] listen`), a worker like the others —
//! forked and supervised by the master, its listeners (`[web] listen`)
//! bound by the master, unprivileged. It holds no state of its own but the
//! logged-in sessions: what it shows and changes goes through the same
//! channels as the CLI and SMTP RELOAD (today: the master's, for `postern
//! status` and reload), so the console, the CLI and SMTP always agree.
//!
//! Layout: [`server`] the HTTP side (hyper: one connection per task, who
//! may connect, the security headers, the routes and the simpler pages),
//! [`access`], [`greylist`], [`logs`] and [`mx`] the data of their pages,
//! [`auth`] logins,
//! sessions and CSRF tokens, [`pages`] the HTML (maud: every value escaped
//! by construction). This file is the worker: the master's channel, whose
//! requests the HTTP tasks ask through [`Shared::ask_master`].
//!
//! The pages: the dashboard, statistics, access lists, routing, MX check,
//! greylisting, logs, refused mail (the master's channel and the router's
//! socket, as the CLI), the update queue and the scheduled restarts (the
//! updater's socket) and apply (reload, with the result).

mod access;
mod auth;
mod charts;
mod greylist;
mod logs;
mod metrics;
mod mx;
mod pages;
mod server;

use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use postern_shared::config::Config;
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::WorkerRequest;
use postern_shared::runtime::worker::{Event, Options, Worker};
use tokio::sync::{mpsc, oneshot};

fn main() -> ExitCode {
    postern_shared::runtime::worker::main("postern-web", run())
}

/// How long a page waits for the master.
const MASTER_TIMEOUT: Duration = Duration::from_secs(35);

/// What the HTTP tasks share.
pub struct Shared {
    /// The updater's socket (`postern queue`'s).
    updater: std::path::PathBuf,
    /// The router's socket (`postern access`'s and `postern greylist`'s).
    router: std::path::PathBuf,
    /// The configuration in force.
    config: RwLock<Arc<Config>>,
    /// Logged-in sessions and failed logins.
    auth: Mutex<auth::Auth>,
    /// HTTPS (`[web] tls = true`): the `[tls]` certificate's acceptor,
    /// renewed at each reload.
    tls: RwLock<Option<tokio_rustls::TlsAcceptor>>,
    /// Requests for the master, sent on its channel by the main loop.
    master: mpsc::Sender<(WorkerRequest, oneshot::Sender<Attrs>)>,
}

impl Shared {
    /// The configuration in force now.
    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One request to the updater, as `postern queue` and `postern
    /// restarts` send it; its reply, or why there is none.
    async fn ask_updater(
        &self,
        req: postern_shared::ipc::UpdaterRequest,
    ) -> Result<postern_shared::ipc::UpdaterReply, String> {
        let reply = postern_shared::ipc::oneshot::UPDATER
            .call(&self.updater, req.encode())
            .await
            .map_err(|e| format!("the updater did not answer: {e}"))?;
        postern_shared::ipc::UpdaterReply::decode(&reply)
            .ok_or_else(|| "the updater answered something unexpected".to_string())
    }

    /// One request to the router, as `postern access` and `postern
    /// greylist` send it: its answer when `status=ok`, else its reason.
    async fn ask_router(&self, req: Attrs) -> Result<Attrs, String> {
        ask_router_at(&self.router, req).await
    }

    /// Asks the master on the worker's channel; its answer, or why not.
    async fn ask_master(&self, req: WorkerRequest) -> Result<Attrs, String> {
        let (tx, rx) = oneshot::channel();
        self.master
            .send((req, tx))
            .await
            .map_err(|_| "the worker is stopping".to_string())?;
        match tokio::time::timeout(MASTER_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err("the master did not answer".into()),
            Err(_) => Err(format!(
                "the master did not answer within {}s",
                MASTER_TIMEOUT.as_secs()
            )),
        }
    }
}

/// One request to the router at `path`: its answer when `status=ok`, else
/// its reason (`no such entry` for a bare `status=notfound`).
async fn ask_router_at(path: &std::path::Path, req: Attrs) -> Result<Attrs, String> {
    let reply = postern_shared::ipc::oneshot::ROUTER
        .call(path, req)
        .await
        .map_err(|e| format!("the router did not answer: {e}"))?;
    if postern_shared::ipc::Outcome::is_ok(&reply) {
        Ok(reply)
    } else {
        Err(postern_shared::ipc::Outcome::reason_in(&reply)
            .unwrap_or(if postern_shared::ipc::Outcome::is_not_found(&reply) {
                "no such entry"
            } else {
                "refused"
            })
            .to_string())
    }
}

async fn run() -> anyhow::Result<()> {
    let mut worker = Worker::start("postern-web", Options::default()).await?;
    let (tx, mut rx) = mpsc::channel(16);
    let tls = postern_shared::runtime::tls::acceptor(worker.tls.as_deref())?;
    let shared = Arc::new(Shared {
        tls: RwLock::new(tls),
        updater: worker.socket_path(postern_shared::ipc::UPDATER_SOCKET),
        router: worker.socket_path(postern_shared::ipc::ROUTER_SOCKET),
        config: RwLock::new(worker.config.clone()),
        auth: Mutex::new(auth::Auth::default()),
        master: tx,
    });
    for fd in worker.take_listeners("web") {
        tokio::spawn(server::accept_loop(server::listener(fd)?, shared.clone()));
    }
    for fd in worker.take_listeners("metrics") {
        tokio::spawn(metrics::accept_loop(server::listener(fd)?, shared.clone()));
    }
    worker.ready().await;
    // The master's answers, by request id.
    let mut pending: Vec<(String, oneshot::Sender<Attrs>)> = Vec::new();
    loop {
        tokio::select! {
            Some((req, reply)) = rx.recv() => {
                let id = worker.request(req.encode()).await;
                // Pages that stopped waiting (timed out, connection gone).
                pending.retain(|(_, r)| !r.is_closed());
                pending.push((id, reply));
            }
            event = worker.next_event() => match event {
                Event::Reload { id, config, tls, .. } => {
                    // A renewed certificate takes effect here, as for STARTTLS.
                    match postern_shared::runtime::tls::acceptor(tls.as_deref()) {
                        Ok(acceptor) => {
                            *shared.tls.write().unwrap_or_else(|p| p.into_inner()) = acceptor;
                            *shared.config.write().unwrap_or_else(|p| p.into_inner()) =
                                config.clone();
                            worker.config = config;
                            worker.ack(&id, Ok(())).await;
                        }
                        Err(e) => worker.ack(&id, Err(format!("{e:#}"))).await,
                    }
                }
                Event::Reply(answer) => {
                    let id = answer.get("id").unwrap_or_default().to_string();
                    if let Some(i) = pending.iter().position(|(p, _)| *p == id) {
                        let (_, reply) = pending.swap_remove(i);
                        let _ = reply.send(answer);
                    }
                }
                Event::Drain | Event::Stop => break,
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}
