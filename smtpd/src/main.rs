//! postern-smtpd: the SMTP front side. Several processes share the TCP
//! listeners the master bound; each runs one session task per client.
//!
//! Layout: [`session`] is the client dialogue, a file per stage (parsing,
//! routing, relaying), [`data`] the DATA body scanner, [`backend`] the
//! backend connections (identity forwarding, health, the pool of prepared
//! and reused connections). This file is the skeleton glue: accept loops, reload, and the
//! graceful stop (stop accepting, let running sessions finish for
//! `process.stop_timeout`, answer idle ones `421 4.3.2`).

mod alloc;
mod backend;

mod session;

use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use postern_shared::ipc;
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::route::RouterClient;
use postern_shared::ipc::Outcome;
use postern_shared::net;
use postern_shared::runtime::logging::{new_id, with_fields};
use postern_shared::runtime::worker::{Event, Options, Worker};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};

use backend::pool::Prepared;
use backend::Health;
use session::AdminRequest;

/// How long a router lookup may take before the session answers 4xx.
const ROUTER_TIMEOUT: Duration = Duration::from_secs(10);

/// Process-wide state shared by the accept loops and sessions.
struct Shared {
    /// False once the process stops or drains: the accept loops end.
    accepting: watch::Receiver<bool>,
    active: AtomicUsize,
    idle: Notify,
    /// What new sessions get: the configuration and TLS acceptor in force,
    /// and the process-wide parts. One `Arc` shared by every session from
    /// one reload to the next (8 bytes in each session rather than the 80
    /// of a copy of its own); a reload puts in a new one.
    ctx: RwLock<Arc<session::Ctx>>,
}

/// Tasks and sockets' registrations from slabs (see `alloc.rs`).
#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator::new();

fn main() -> ExitCode {
    postern_shared::runtime::worker::main("postern-smtpd", run())
}

async fn run() -> anyhow::Result<()> {
    let mut worker = Worker::start("postern-smtpd", Options { chroot: true }).await?;
    let listeners = worker.take_listeners("smtp");
    if listeners.is_empty() {
        anyhow::bail!("no inherited socket named \"smtp\"");
    }
    let shutdown = Arc::new(session::Stopping::default());
    let (accept_tx, accepting) = watch::channel(true);
    let (admin, mut admin_rx) = mpsc::channel::<AdminRequest>(8);
    let tls = postern_shared::runtime::tls::acceptor(worker.tls.as_deref())?;
    let ctx = session::Ctx {
        config: worker.config.clone(),
        tls,
        auth_servers: worker.auth_servers,
        router: Arc::new(RouterClient::new(
            worker.socket_path("router.sock"),
            ROUTER_TIMEOUT,
        )),
        health: Arc::new(Health::default()),
        prepared: Prepared::new(
            worker.config.proxy.prepared_connections,
            worker.config.proxy.reuse_connections,
        ),
        admin,
        updater: worker.socket_path("updater.sock").into(),
        shutdown,
    };
    // The process-wide parts, for this loop (the sessions have them in `ctx`).
    let (health, prepared, router, shutdown) = (
        ctx.health.clone(),
        ctx.prepared.clone(),
        ctx.router.clone(),
        ctx.shutdown.clone(),
    );
    let shared = Arc::new(Shared {
        accepting,
        active: AtomicUsize::new(0),
        idle: Notify::new(),
        ctx: RwLock::new(Arc::new(ctx)),
    });
    for fd in listeners {
        tokio::spawn(accept_loop(listener(fd)?, shared.clone()));
    }
    tokio::spawn(prepared.clone().sweep_loop());
    worker.ready().await;
    // Admin commands waiting for the master's answer, by request id.
    let mut pending: Vec<(String, AdminRequest)> = Vec::new();
    // What `postern status` shows: sessions in progress and failing backends,
    // sent to the master when it changes (checked every second).
    let mut load_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_load = Attrs::new();
    let stopping = loop {
        tokio::select! {
            _ = load_tick.tick() => {
                let mut load = ipc::event(ipc::Event::Load)
                    .with("sessions", shared.active.load(Ordering::SeqCst));
                for line in health.report() {
                    load.push("failing", line);
                }
                if load != last_load {
                    worker.event(load.clone()).await;
                    last_load = load;
                }
            }
            event = worker.next_event() => match event {
                Event::Reload { id, config, tls, auth_servers } => {
                    // New sessions take the new configuration; running ones keep theirs.
                    let result = postern_shared::runtime::tls::acceptor(tls.as_deref())
                        .map_err(|e| format!("{e:#}"));
                    if let Ok(acceptor) = &result {
                        {
                            let mut ctx = shared.ctx.write().unwrap_or_else(|p| p.into_inner());
                            *ctx = Arc::new(session::Ctx {
                                config: config.clone(),
                                tls: acceptor.clone(),
                                auth_servers,
                                ..session::Ctx::clone(&ctx)
                            });
                        }
                        prepared.resize(
                            config.proxy.prepared_connections,
                            config.proxy.reuse_connections,
                        );
                        router.forget_routes();
                        worker.config = config;
                        worker.tls = tls;
                    }
                    worker.ack(&id, result.map(|_| ())).await;
                }
                Event::Reply(answer) => {
                    let id = answer.get("id").unwrap_or_default();
                    if let Some(i) = pending.iter().position(|(p, _)| p == id) {
                        let (_, req) = pending.swap_remove(i);
                        let _ = req.reply.send(if Outcome::is_ok(&answer) {
                            Ok(())
                        } else {
                            Err(Outcome::reason_in(&answer).unwrap_or("refused").to_string())
                        });
                    }
                }
                Event::Drain => break false,
                Event::Stop => {
                    // A SHUTDOWN whose answer raced with the stop itself succeeded.
                    for (_, req) in pending.drain(..) {
                        let answer = if req.request == ipc::WorkerVerb::Stop { Ok(()) } else { Err("stopping".into()) };
                        let _ = req.reply.send(answer);
                    }
                    break true;
                }
            },
            Some(req) = admin_rx.recv() => {
                if worker.has_master() {
                    let id = worker.request(worker_request(&req).encode()).await;
                    pending.push((id, req));
                } else {
                    let _ = req.reply.send(Err("no master: this smtpd was started by hand".into()));
                }
            }
        }
    };
    // Stop accepting; a stop (not a drain) also tells idle sessions to go.
    let _ = accept_tx.send(false);
    prepared.stop();
    if stopping {
        shutdown.set();
    }
    let grace = worker.config.process.stop_timeout.0;
    let n = shared.active.load(Ordering::SeqCst);
    if n > 0 {
        let how = if stopping { "stopping" } else { "replaced" };
        tracing::info!("{how}: waiting up to {grace:?} for {n} session(s)");
    }
    let deadline = tokio::time::Instant::now() + grace;
    while shared.active.load(Ordering::SeqCst) > 0 {
        let notified = shared.idle.notified();
        if shared.active.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    "stopping with {} session(s) still open after {grace:?}",
                    shared.active.load(Ordering::SeqCst)
                );
                break;
            }
            // A drain becomes a stop when the master (or a signal) says so.
            event = worker.next_event(), if !shutdown.is_set() => {
                if matches!(event, Event::Stop) {
                    shutdown.set();
                }
            }
        }
    }
    prepared.close_all().await;
    // The last sessions' goodbyes (and their statistics) go now.
    router.flush(Duration::from_secs(2)).await;
    tracing::info!("stopped");
    Ok(())
}

/// An inherited SMTP listener, with TCP_NODELAY set on it: Linux gives
/// accepted connections the listener's TCP_NODELAY, which saves a system
/// call per session (replies go out at once, never held back by Nagle's
/// algorithm waiting for an ACK).
fn listener(fd: OwnedFd) -> anyhow::Result<TcpListener> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    Ok(TcpListener::from_std(std)?)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut accepting = shared.accepting.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = accepting.wait_for(|a| !*a) => return,
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
        let ctx = shared.ctx.read().unwrap_or_else(|p| p.into_inner()).clone();
        let sid = session::Sid::new(&new_id());
        // Every line of the session carries these (journald: SID, CLIENT_IP).
        let fields = session::LogFields {
            sid,
            ip: net::unmap(peer.ip()),
        };
        shared.active.fetch_add(1, Ordering::SeqCst);
        let active = Active(shared.clone());
        let local = stream.local_addr().unwrap_or(peer);
        // The session's own future, not one wrapped around it: a wrapper
        // would keep what it was made from in every session's task.
        let conn = session::ClientConn::Tcp(stream);
        let session = session::run(conn, peer, local, sid, ctx, active);
        tokio::spawn(with_fields(fields, session));
    }
}

/// A running session, counted in `Shared::active` until it is dropped (at
/// the end of its task, or with it).
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What an SMTP admin command asks the master.
fn worker_request(req: &AdminRequest) -> ipc::WorkerRequest {
    let sid = req.sid.clone();
    match req.request {
        ipc::WorkerVerb::Reload => ipc::WorkerRequest::Reload { sid },
        _ => ipc::WorkerRequest::Stop { sid },
    }
}
