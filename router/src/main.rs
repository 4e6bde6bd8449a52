//! postern-router: owns the routing table and answers lookups on the `router` socket.
//!
//! Layout: [`table`] builds the immutable domain table from a configuration;
//! this file serves it. Every smtpd connection gets a `protocol=postern-router`
//! greeting, then any number of lookups — `request=route` (by recipient
//! domain), `request=client` (by client address), `request=auth` (by SMTP
//! AUTH credentials); see [`postern_shared::ipc::route`] for the wire format —
//! each answered `ok`, `notfound` or `tempfail`. A reload from the master builds a new table and
//! swaps it in atomically; lookups in flight finish on the old one.
//! A peer that sends garbage loses its connection, never the process.
//!
//! The router also counts connections and failed authentications per
//! client address across every smtpd process ([`anvil`]: `request=connect`,
//! `request=disconnect`, `request=brake`).
//!
//! The router also keeps the statistics ([`stats`]: `request=count` from
//! smtpd at the end of each session, `request=stats` for `postern stats`,
//! persisted in `process.state_dir/stats`) and, when the master passes it a
//! socket named `metrics` (`[metrics] listen`), serves them to Prometheus
//! ([`metrics`]), with the worker states it asks the master for.

mod anvil;
mod manage;
mod policy;
mod stats;
mod table;

use std::future::Future;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};

use postern_shared::config::normalize_domain;
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::quiet::{QuietStream, QuietWrite};
use postern_shared::ipc::route::PROTOCOL;
use postern_shared::ipc::{self, Outcome, RouterRequest};
use postern_shared::runtime::time::Clock;
use postern_shared::runtime::worker::{Event, Options, Worker};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use anvil::{Anvil, AuthBrake, Refusal};
use table::{Recipient, Table};

/// What every router connection shares.
pub struct State {
    /// The current table, swapped whole on reload.
    table: RwLock<Arc<Table>>,
    /// The limits in force: (max_connections, max_connections_per_ip).
    limits: RwLock<(u32, u32)>,
    /// Connection counts.
    anvil: Mutex<Anvil>,
    /// Failed authentications per client address.
    brake: Mutex<AuthBrake>,
    /// The statistics.
    stats: Arc<stats::Recorder>,
    /// The policy for mail from the internet (SPEC §8).
    policy: Arc<policy::Engine>,
    /// What time it is: the statistics' days, when access entries were added.
    clock: Clock,
}

/// What every task of the router shares.
pub type Shared = Arc<State>;

fn main() -> ExitCode {
    postern_shared::runtime::worker::main("postern-router", run())
}

async fn run() -> anyhow::Result<()> {
    let mut worker = Worker::start("postern-router", Options::default()).await?;
    let clock = Clock::system();
    let stats = Arc::new(stats::Recorder::load(
        worker.config.process.state_dir.clone(),
        clock.clone(),
    ));
    let table: Shared = Arc::new(State {
        table: RwLock::new(Arc::new(load(&worker.config))),
        limits: RwLock::new(limits(&worker.config)),
        anvil: Mutex::new(Anvil::default()),
        brake: Mutex::new(AuthBrake::default()),
        policy: Arc::new(policy::Engine::new(
            &worker.config,
            stats.clone(),
            clock.clone(),
        )),
        stats,
        clock,
    });
    tokio::spawn(sweep_loop(table.clone()));
    tokio::spawn(table.policy.clone().self_test_loop());
    tokio::spawn(table.policy.clone().purge_loop());
    tokio::spawn(stats::save_loop(table.stats.clone()));
    let listeners = worker.take_listeners("router");
    if listeners.is_empty() {
        anyhow::bail!("no inherited socket named \"router\"");
    }
    for fd in listeners {
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        tokio::spawn(accept_loop(UnixListener::from_std(std)?, table.clone()));
    }
    for fd in worker.take_listeners("policy") {
        let unix = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
        )
        .is_ok_and(|a| {
            nix::sys::socket::SockaddrLike::family(&a)
                == Some(nix::sys::socket::AddressFamily::Unix)
        });
        if unix {
            let std = std::os::unix::net::UnixListener::from(fd);
            std.set_nonblocking(true)?;
            tokio::spawn(policy::server::serve_unix(
                UnixListener::from_std(std)?,
                table.clone(),
            ));
        } else {
            let std = std::net::TcpListener::from(fd);
            std.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(std)?;
            tokio::spawn(policy::server::serve_tcp(listener, table.clone()));
        }
    }
    worker.ready().await;
    // What `postern status` shows of the policy: each blocklist zone's
    // standing, sent to the master when it changes (checked every second).
    let mut load_tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let mut last_load = Attrs::new();
    loop {
        let event = tokio::select! {
            e = worker.next_event() => e,
            _ = load_tick.tick() => {
                let mut load = ipc::event(ipc::Event::Load);
                for (zone, state, why) in table.policy.zones() {
                    load.push("zone", format!("{zone}|{state}|{}", why.replace('|', "/")));
                }
                if let Some((state, why)) = table.policy.greylist_state() {
                    load.push("greylist", format!("{state}|{}", why.replace('|', "/")));
                }
                if load != last_load && worker.has_master() {
                    worker.event(load.clone()).await;
                    last_load = load;
                }
                continue;
            }
        };
        match event {
            Event::Reply(_) => {}
            Event::Reload { id, config, .. } => {
                let new = Arc::new(load(&config));
                *table.table.write().unwrap_or_else(|p| p.into_inner()) = new;
                *table.limits.write().unwrap_or_else(|p| p.into_inner()) = limits(&config);
                table.policy.reload(&config);
                worker.config = config;
                worker.ack(&id, Ok(())).await;
            }
            Event::Stop | Event::Drain => {
                tracing::info!("stopping");
                // The greylist store synced and its file unlocked first: a
                // router replacing this one opens it next.
                table.policy.stop().await;
                let recorder = table.stats.clone();
                let _ = tokio::task::spawn_blocking(move || recorder.save()).await;
                return Ok(());
            }
        }
    }
}

fn load(config: &postern_shared::config::Config) -> Table {
    let t = Table::new(config);
    let total = t.len();
    for (i, name) in t.names().enumerate() {
        tracing::info!("ready to serve server {}/{total} '{name}'", i + 1);
    }
    if !t.aliases.is_empty() {
        tracing::info!(
            "{} aliases in {} domains",
            t.aliases.len(),
            t.aliases.domains()
        );
    }
    t
}

async fn accept_loop(listener: UnixListener, table: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, table.clone()));
            }
            Err(e) => {
                tracing::warn!("accept on router socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one smtpd connection. smtpd multiplexes its sessions' requests on
/// one connection and may write many at once. Requests answered from memory
/// (routes, counts, the access lists) are answered in turn, and their
/// replies gathered and handed to the writer when no complete request is
/// left in the read buffer, so a burst of requests costs one read and one
/// write. A policy question is decided at once when nothing has to be
/// waited for; one that waits (DNS, the greylist store) is answered by a
/// task of its own, so that one slow lookup never holds another session's
/// route.
/// The writer sends whatever is ready in one write; replies carry the
/// request's `id`, so their order does not matter.
async fn serve(stream: UnixStream, table: Shared) {
    // Who is at the other end: access-list changes record it.
    let peer_uid = stream.peer_cred().ok().map(|c| c.uid());
    // Registered for reading only: smtpd reading a reply does not wake the
    // router (quiet.rs).
    let (r, w) = match QuietStream::new(stream) {
        Ok(s) => s.into_split(),
        Err(e) => {
            tracing::warn!("dropping router client: {e}");
            return;
        }
    };
    let mut r = BufReader::new(r);
    let hello = Attrs::new().with("protocol", PROTOCOL).with("version", 1);
    let mut out = match hello.encode() {
        Ok(bytes) => bytes,
        Err(_) => return,
    };
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(write_replies(w, rx));
    loop {
        if !out.is_empty()
            && !complete_request(r.buffer())
            && tx.send(std::mem::take(&mut out)).is_err()
        {
            return;
        }
        let req = match proto::read(&mut r).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("dropping router client: {e}");
                return;
            }
        };
        let id = req.get("id").unwrap_or("").to_string();
        let reply = match RouterRequest::decode(&req) {
            Ok(RouterRequest::Connect { sid, client, pid }) => {
                account(&table, &id, &sid, client, pid, false)
            }
            // A session's goodbye also carries its statistics.
            Ok(RouterRequest::Disconnect {
                sid,
                client,
                pid,
                counts,
            }) => {
                table.stats.count(&id, &counts);
                account(&table, &id, &sid, client, pid, true)
            }
            Ok(RouterRequest::Count { counts, .. }) => table.stats.count(&id, &counts),
            Ok(RouterRequest::Brake {
                sid,
                client,
                failed,
            }) => brake(&table, &id, &sid, client, failed),
            Ok(RouterRequest::Stats) => table.stats.report(&id),
            // Decided here when nothing has to be waited for (the access
            // lists, a blocklist answer already known: the usual case),
            // its reply going with this batch's; otherwise by a task of
            // its own, which sends the reply when it has it.
            Ok(RouterRequest::Policy(q)) => {
                let table = table.clone();
                let mut decision = Box::pin(async move {
                    verdict_bytes(table.policy.decide(&q).await.to_attrs(&id), &id)
                });
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match decision.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(bytes) => out.extend_from_slice(&bytes),
                    std::task::Poll::Pending => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            let _ = tx.send(decision.await);
                        });
                    }
                }
                continue;
            }
            Ok(
                request @ (RouterRequest::AccessList
                | RouterRequest::AccessAdd { .. }
                | RouterRequest::AccessRemove { .. }),
            ) => manage::access(&table.policy.access, &id, request, peer_uid, &table.clock),
            // The store answers on its own thread: a task, like a policy question.
            Ok(
                request @ (RouterRequest::GreylistSearch { .. }
                | RouterRequest::GreylistList { .. }
                | RouterRequest::GreylistWhitelist { .. }
                | RouterRequest::GreylistExport
                | RouterRequest::GreylistImport { .. }),
            ) => {
                let (table, tx) = (table.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = manage::greylist(&table.policy, &id, request, peer_uid).await;
                    if let Ok(bytes) = reply.encode() {
                        let _ = tx.send(bytes);
                    }
                });
                continue;
            }
            Ok(RouterRequest::Metrics) => postern_shared::metrics::RouterMetrics {
                total: table.stats.total(),
                open: table.anvil.lock().map(|a| a.open()).unwrap_or(0),
                zones: table
                    .policy
                    .zones()
                    .into_iter()
                    .map(|(z, state, why)| (z, state.to_string(), why))
                    .collect(),
                greylist: table.policy.greylist_state().map(|(s, _)| s == "ok"),
            }
            .to_attrs(Outcome::Ok.reply(Some(&id))),
            Ok(RouterRequest::Mx { domain }) => {
                let (table, tx) = (table.clone(), tx.clone());
                tokio::spawn(async move {
                    let reply = manage::mx(&table.policy, &id, &domain).await;
                    if let Ok(bytes) = reply.encode() {
                        let _ = tx.send(bytes);
                    }
                });
                continue;
            }
            Ok(
                request @ (RouterRequest::Route { .. }
                | RouterRequest::Client { .. }
                | RouterRequest::Auth { .. }),
            ) => {
                let current = table
                    .table
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                answer(&current, &id, &request)
            }
            Err(bad) => Outcome::tempfail(bad).reply(Some(&id)),
        };
        // A notice (smtpd's goodbyes): done, and nobody waits for an answer.
        if req.get("reply") == Some("no") {
            continue;
        }
        match reply.encode() {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => {
                tracing::warn!("cannot encode a reply: {e}");
                return;
            }
        }
    }
}

/// A verdict's reply as bytes; one that cannot be carried (a value with a
/// line break or NUL, from a blocklist's text) is answered `tempfail`, so
/// that smtpd answers 451 at once rather than after its timeout, and the
/// connection, which other sessions' questions share, stays up.
fn verdict_bytes(verdict: Attrs, id: &str) -> Vec<u8> {
    verdict.encode().unwrap_or_else(|e| {
        tracing::warn!("cannot send a policy verdict: {e}");
        Outcome::tempfail("the verdict cannot be sent")
            .reply(Some(id))
            .encode()
            .unwrap_or_default()
    })
}

/// Writes one connection's replies: everything ready goes in one write.
/// Ends when the connection breaks, or when the reader and every task
/// answering for it are done.
async fn write_replies(mut w: QuietWrite, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(mut bytes) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            bytes.extend_from_slice(&more);
        }
        // Log lines first: the route line comes before smtpd's lines about
        // the route (see proto::write).
        postern_shared::runtime::logging::flush();
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Whether `buffered` holds a whole request (requests have no body), so that
/// reading the next one will not wait.
fn complete_request(buffered: &[u8]) -> bool {
    buffered.first() == Some(&b'\n') || buffered.windows(2).any(|w| w == b"\n\n")
}

fn limits(config: &postern_shared::config::Config) -> (u32, u32) {
    (
        config.proxy.max_connections,
        config.proxy.max_connections_per_ip,
    )
}

async fn sweep_loop(state: Shared) {
    let mut tick = tokio::time::interval(anvil::SWEEP_EVERY);
    loop {
        tick.tick().await;
        let dropped = state
            .anvil
            .lock()
            .map(|mut a| a.sweep(anvil::pid_alive))
            .unwrap_or(0);
        if dropped > 0 {
            tracing::info!("dropped {dropped} connection(s) of smtpd processes that died");
        }
        if let Ok(mut brake) = state.brake.lock() {
            brake.sweep(std::time::Instant::now());
        }
    }
}

/// `request=connect` / `request=disconnect`: connection accounting. A connect
/// that is allowed is also answered with the client's `ip-addr` route, if any,
/// which saves smtpd a lookup.
fn account(
    state: &State,
    id: &str,
    sid: &str,
    ip: std::net::IpAddr,
    pid: u32,
    leaving: bool,
) -> Attrs {
    let Ok(mut anvil) = state.anvil.lock() else {
        return Outcome::tempfail("").reply(Some(id));
    };
    let (total, per_ip) = *state.limits.read().unwrap_or_else(|p| p.into_inner());
    if leaving {
        anvil.disconnect(pid, sid);
        stress_check(&mut anvil, total);
        return Outcome::Ok.reply(Some(id));
    }
    match anvil.connect(pid, sid, ip, total, per_ip) {
        Ok(()) => {
            stress_check(&mut anvil, total);
            let stress = anvil.stress.on();
            drop(anvil);
            let with_stress = |a: Attrs| if stress { a.with("stress", "yes") } else { a };
            let table = state
                .table
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            with_stress(match table.by_client(ip) {
                Some(route) => route.to_attrs(id),
                None => {
                    // Mail from the internet: its policy lookups start now.
                    state.policy.prefetch(ip);
                    let a = Outcome::NotFound.reply(Some(id));
                    // No policy at all: the session's recipients need not ask.
                    if state.policy.active() {
                        a
                    } else {
                        a.with("policy", "off")
                    }
                }
            })
        }
        Err(r) => {
            let reason = match r {
                Refusal::Total(n) => format!("too many connections ({n})"),
                Refusal::PerIp(n) => format!("too many connections from {ip} ({n})"),
            };
            tracing::warn!(sid, "refusing a connection from {ip}: {reason}");
            Outcome::reject(reason).reply(Some(id))
        }
    }
}

/// Takes the anvil's count for stress mode and logs a change (see
/// `anvil.rs`).
fn stress_check(anvil: &mut Anvil, max: u32) {
    let open = anvil.open();
    match anvil.stress.update(open, max) {
        Some(true) => tracing::warn!(
            "overload: {open} of {max} connections open: stress mode for new sessions \
             (command timeout at most {}s, one error, one junk command)",
            postern_shared::ipc::route::STRESS_COMMAND_TIMEOUT.as_secs()
        ),
        Some(false) => tracing::info!("load back to {open} of {max} connections: stress mode off"),
        None => {}
    }
}

/// `request=brake client= failed=0|1`: where the address stands with its
/// failed authentications, after recording one with `failed=1`. Answered
/// `status=ok failures=N`, or `status=reject failures=N retry_after=SECONDS`
/// while it is locked out. The failure that locks it out is logged, once,
/// whichever smtpd process reported it.
fn brake(state: &State, id: &str, sid: &str, ip: std::net::IpAddr, failed: bool) -> Attrs {
    let Ok(mut brake) = state.brake.lock() else {
        return Outcome::tempfail("").reply(Some(id));
    };
    let now = std::time::Instant::now();
    let v = if failed {
        brake.fail(ip, now)
    } else {
        brake.check(ip, now)
    };
    drop(brake);
    if v.newly_locked {
        tracing::warn!(
            sid,
            "client {ip} locked out of authentication for {}s after {} failures within {}s",
            anvil::AUTH_LOCKOUT.as_secs(),
            v.failures,
            anvil::AUTH_FAILURE_WINDOW.as_secs()
        );
    }
    match v.locked {
        Some(left) => {
            // Rounded up: never 0 while it holds.
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            Outcome::reject("")
                .reply(Some(id))
                .with("failures", v.failures)
                .with("retry_after", secs)
        }
        None => Outcome::Ok.reply(Some(id)).with("failures", v.failures),
    }
}

/// The answer for a recipient in an alias domain (SPEC §12): the route
/// with `alias=yes` (the answer depends on the local part) and one `to=`
/// per address an alias made of it; `status=notfound alias=yes` for an
/// address no alias takes in a domain no server lists.
fn alias_answer(
    id: &str,
    sid: &str,
    local: &Option<String>,
    domain: &str,
    found: Recipient,
) -> Attrs {
    let address = format!("{}@{domain}", local.as_deref().unwrap_or_default());
    match found {
        Recipient::Aliased(route, targets) => {
            let mut reply = route.to_attrs(id).with("alias", "yes");
            if targets.is_empty() {
                tracing::info!(sid, cause = route.cause.as_str(), server = %route.name,
                    "route {address} (no alias) -> {}", route.name);
            } else {
                tracing::info!(sid, cause = route.cause.as_str(), server = %route.name,
                    "route {address} (alias: {}) -> {}", targets.join(", "), route.name);
            }
            for t in targets {
                reply.push("to", t);
            }
            reply
        }
        Recipient::Unknown => {
            tracing::info!(sid, "route {address}: no alias in an alias domain");
            Outcome::NotFound.reply(Some(id)).with("alias", "yes")
        }
        Recipient::Broken(why) => {
            tracing::error!(sid, "cannot route {address}: {why}");
            Outcome::tempfail(why).reply(Some(id))
        }
        // Answered by the caller.
        Recipient::Plain(_) => Outcome::tempfail("").reply(Some(id)),
    }
}

/// Answers one request against one table.
fn answer(table: &Table, id: &str, request: &RouterRequest) -> Attrs {
    let (sid, what, found) = match request {
        RouterRequest::Route {
            sid, local, domain, ..
        } => {
            let domain = normalize_domain(domain);
            // Without a local part (an older smtpd), no alias applies.
            let found = match local {
                Some(l) => table.by_recipient(l, &domain),
                None => Recipient::Plain(table.by_domain(&domain)),
            };
            match found {
                Recipient::Plain(found) => (sid, domain, found),
                other => return alias_answer(id, sid, local, &domain, other),
            }
        }
        RouterRequest::Client { sid, client } => {
            (sid, format!("client {client}"), table.by_client(*client))
        }
        RouterRequest::Auth {
            sid,
            user,
            password,
        } => {
            // Never log the password, nor the user name of a failed attempt
            // (it is often a mistyped password).
            (
                sid,
                "auth".to_string(),
                table.by_credentials(user, password),
            )
        }
        other => {
            return Outcome::tempfail(format!("{} is not a lookup", other.verb())).reply(Some(id))
        }
    };
    match found {
        Some(route) => {
            // Info, with the session's id: `postern log session` shows it.
            tracing::info!(
                sid,
                cause = route.cause.as_str(),
                server = %route.name,
                "route {what} -> {}",
                route.name
            );
            route.to_attrs(id)
        }
        None => Outcome::NotFound.reply(Some(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_that_cannot_be_carried_is_a_tempfail_for_its_question() {
        let ok = Attrs::new().with("id", 7).with("action", "dunno");
        assert_eq!(
            verdict_bytes(ok.clone(), "7"),
            ok.encode().expect("encodes")
        );
        let bad = Attrs::new().with("id", 7).with("text", "a\nb");
        let back = proto::decode(&verdict_bytes(bad, "7"))
            .expect("decodes")
            .expect("a message");
        assert_eq!(back.get("id"), Some("7"));
        assert_eq!(back.get("status"), Some("tempfail"));
    }
}
