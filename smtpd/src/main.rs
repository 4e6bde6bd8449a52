//! postern-smtpd: the SMTP front side. Several processes share the TCP
//! listeners the master bound; each runs one session task per client.
//!
//! Layout: [`session`] is the client dialogue (parsing, routing, relaying),
//! [`backend`] the connection to a backend server, [`data`] the DATA body
//! scanner. This file is the skeleton glue: accept loops, reload, and the
//! graceful stop (stop accepting, let running sessions finish for
//! `process.stop_timeout`, answer idle ones `421 4.3.2`).

mod backend;
mod data;
mod session;

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use postern_shared::config::Config;
use postern_shared::logging::new_id;
use postern_shared::route::RouterClient;
use postern_shared::worker::{Event, Options, Worker};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

/// How long a router lookup may take before the session answers 4xx.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Process-wide state shared by the accept loops and sessions.
struct Shared {
    config: RwLock<Arc<Config>>,
    router: Arc<RouterClient>,
    shutdown: watch::Receiver<bool>,
    active: AtomicUsize,
    idle: Notify,
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postern-smtpd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let mut worker = Worker::start("postern-smtpd", Options { chroot: true }).await?;
    let listeners = worker.take_listeners("smtp");
    if listeners.is_empty() {
        anyhow::bail!("no inherited socket named \"smtp\"");
    }
    let (stop_tx, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        config: RwLock::new(worker.config.clone()),
        router: Arc::new(RouterClient::new(
            worker.socket_path("router.sock"),
            ROUTER_TIMEOUT,
        )),
        shutdown,
        active: AtomicUsize::new(0),
        idle: Notify::new(),
    });
    for fd in listeners {
        tokio::spawn(accept_loop(listener(fd)?, shared.clone()));
    }
    worker.ready().await;
    while let Event::Reload { id, config } = worker.next_event().await {
        // New sessions take the new configuration; running ones keep theirs.
        *shared.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        worker.config = config;
        worker.ack(&id, Ok(())).await;
    }
    let _ = stop_tx.send(true);
    let grace = worker.config.process.stop_timeout.0;
    let n = shared.active.load(Ordering::SeqCst);
    if n > 0 {
        tracing::info!("stopping: waiting up to {grace:?} for {n} session(s)");
    }
    let drained = tokio::time::timeout(grace, async {
        while shared.active.load(Ordering::SeqCst) > 0 {
            let notified = shared.idle.notified();
            if shared.active.load(Ordering::SeqCst) == 0 {
                break;
            }
            notified.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "stopping with {} session(s) still open after {grace:?}",
            shared.active.load(Ordering::SeqCst)
        );
    }
    tracing::info!("stopped");
    Ok(())
}

fn listener(fd: OwnedFd) -> anyhow::Result<TcpListener> {
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    Ok(TcpListener::from_std(std)?)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = session::Ctx {
            config: shared
                .config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            router: shared.router.clone(),
            shutdown: shared.shutdown.clone(),
        };
        let sid = new_id();
        let span = tracing::info_span!("session", sid = %sid, client = %postern_shared::net::unmap(peer.ip()));
        shared.active.fetch_add(1, Ordering::SeqCst);
        let shared2 = shared.clone();
        tokio::spawn(
            async move {
                let (r, w) = stream.into_split();
                session::run(r, w, peer, sid, ctx).await;
                if shared2.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                    shared2.idle.notify_waiters();
                }
            }
            .instrument(span),
        );
    }
}
