//! postern-updater: the update queue (SPEC §7, seed §IX).
//!
//! Layout: [`spool`] keeps update mails durably on disk, [`schedule`] finds
//! restart directives and keeps the restart schedule; this file is the
//! service: the `updater` socket, delivery to every backend, retries and
//! expiry, and restarts run by the master.
//!
//! Requests on the `updater` socket (one per connection, attribute lists):
//! - `request=queue sid= sender= recipient= size=N` + body, from smtpd: the
//!   mail is written durably before the answer `status=ok queue_id=<ID>`;
//!   smtpd only then tells the client `250 2.0.0 Ok: queued as <ID>`;
//! - `request=list`, `request=flush`, `request=delete id=`, from `postern
//!   queue`; `request=restarts`, `request=cancel id=`, from `postern restarts`.
//!
//! Delivery: every copy is tried (its server's credentials, the same envelope
//! sender, the update address as recipient). 2xx: delivered; 4xx or a
//! connection failure: deferred, retried after `update.retry_min`, doubling up
//! to `update.retry_max`; 5xx: failed. A copy still open after
//! `update.max_age` is failed and the log says so. A message whose copies are
//! all delivered or failed leaves the spool (the log keeps the outcome).
//! Copies that were in flight when the updater died are tried again at its
//! next start: a duplicate happens only when the crash fell between the
//! backend's 250 and the state write.
//!
//! Restarts: a due restart is marked running (durably), then the master is
//! asked (`request=restart server=<name>` on the worker channel) to run that
//! server's `restart_command` from its own configuration; the answer marks it
//! done or failed.
//!
//! Time: every decision by the time (next tries, expiry, when a restart is
//! due) reads the updater's [`Clock`], which a test sets and moves.

mod schedule;
mod spool;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use postern_shared::config::{Config, Server};
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::{self, UpdaterReply, UpdaterRequest, WorkerRequest};
use postern_shared::runtime::time::{local_minute, Clock};
use postern_shared::runtime::worker::{Event, Options, Worker};
use postern_shared::smtp::client::{Client, ClientError, ServerReply, Target};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use schedule::{Directive, Schedule, State};
use spool::{Copy, Message, Spool, Status};

/// How long a backend may take to answer the end of the message.
const DATA_DONE_TIMEOUT: Duration = Duration::from_secs(600);
/// Finished restarts are listed for this long.
const KEEP_RESTARTS: u64 = 30 * 86_400;

fn main() -> ExitCode {
    postern_shared::runtime::worker::main("postern-updater", run())
}

/// A request from the socket, with where its answer goes.
type Request = (Attrs, oneshot::Sender<Attrs>);

/// The outcome of one delivery attempt.
enum Outcome {
    Delivered(String),
    Deferred(String),
    Failed(String),
}

/// One queued message in memory.
struct Queued {
    msg: Arc<Message>,
    copies: Vec<Copy>,
    restart_now: bool,
}

struct Updater {
    config: Arc<Config>,
    spool: Spool,
    queue: BTreeMap<String, Queued>,
    schedule: Schedule,
    /// (message id, server) being delivered right now.
    inflight: HashSet<(String, String)>,
    /// Worker request id → restart id, for restarts the master is running.
    running: HashMap<String, String>,
    results: mpsc::Sender<(String, String, Outcome)>,
    /// What time it is, for every decision by the time: retries, expiry,
    /// restarts (a test sets its own).
    clock: Clock,
}

async fn run() -> anyhow::Result<()> {
    let mut worker = Worker::start("postern-updater", Options::default()).await?;
    let listeners = worker.take_listeners("updater");
    if listeners.is_empty() {
        anyhow::bail!("no inherited socket named \"updater\"");
    }
    let (req_tx, mut req_rx) = mpsc::channel::<Request>(16);
    for fd in listeners {
        let std = std::os::unix::net::UnixListener::from(fd);
        std.set_nonblocking(true)?;
        tokio::spawn(ipc::oneshot::serve(
            UnixListener::from_std(std)?,
            "updater",
            req_tx.clone(),
            |req, reply| (req, reply),
        ));
    }
    let config = worker.config.clone();
    let spool = Spool::open(&config.process.spool_dir)?;
    let servers: Vec<String> = config.servers.iter().map(Server::display_name).collect();
    let mut queue = BTreeMap::new();
    for (msg, copies) in spool.load_all(&servers)? {
        let restart_now = schedule::directives(&msg.body).0.contains(&Directive::Now);
        info!(sid = %msg.sid, "update {} in the queue: {} open copies", msg.id, copies.iter().filter(|c| c.status.open()).count());
        queue.insert(
            msg.id.clone(),
            Queued {
                msg: Arc::new(msg),
                copies,
                restart_now,
            },
        );
    }
    let (results, mut results_rx) = mpsc::channel(64);
    let mut u = Updater {
        schedule: Schedule::load(&config.process.state_dir)?,
        config,
        spool,
        queue,
        inflight: HashSet::new(),
        running: HashMap::new(),
        results,
        clock: Clock::system(),
    };
    worker.ready().await;
    loop {
        u.kick(&mut worker).await;
        let wait = u.next_wake();
        tokio::select! {
            event = worker.next_event() => match event {
                Event::Reload { id, config, .. } => {
                    u.config = config.clone();
                    worker.config = config;
                    worker.ack(&id, Ok(())).await;
                }
                Event::Reply(answer) => u.restart_finished(&answer),
                Event::Stop | Event::Drain => {
                    info!("stopping");
                    return Ok(());
                }
            },
            Some((req, reply)) = req_rx.recv() => {
                let answer = u.request(req);
                let _ = reply.send(answer);
            }
            Some((id, server, outcome)) = results_rx.recv() => u.delivered(&id, &server, outcome),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Updater {
    fn server(&self, name: &str) -> Option<&Server> {
        self.config
            .servers
            .iter()
            .find(|s| s.display_name() == name)
    }

    /// How long until something is due (at most a minute).
    fn next_wake(&self) -> Duration {
        let now = self.clock.now_secs();
        let copies = self
            .queue
            .values()
            .flat_map(|q| q.copies.iter())
            .filter(|c| c.status == Status::Deferred)
            .map(|c| c.next_try);
        let next = copies.chain(self.schedule.next()).min().unwrap_or(now + 60);
        Duration::from_secs(next.saturating_sub(now).clamp(0, 60)).max(Duration::from_millis(200))
    }

    /// Fails the open copies older than `update.max_age` (unless in flight).
    fn expire(&mut self) {
        let now = self.clock.now_secs();
        let max_age = self.config.update.max_age.0.as_secs();
        let mut expired = Vec::new();
        for (id, q) in &mut self.queue {
            for c in &mut q.copies {
                if c.status.open()
                    && now.saturating_sub(q.msg.received) > max_age
                    && !self.inflight.contains(&(id.clone(), c.server.clone()))
                {
                    warn!(sid = %q.msg.sid, "update {id}: copy for {} expired after {}s: failed ({})", c.server, max_age, c.reason);
                    c.status = Status::Failed;
                    c.reason = format!(
                        "expired after {}; last: {}",
                        self.config.update.max_age, c.reason
                    );
                    expired.push(id.clone());
                }
            }
        }
        for id in expired {
            self.save_and_maybe_finish(&id);
        }
    }

    /// Starts due deliveries, expires old copies, runs due restarts.
    async fn kick(&mut self, worker: &mut Worker) {
        self.expire();
        let now = self.clock.now_secs();
        let mut start = Vec::new();
        for (id, q) in &self.queue {
            for c in &q.copies {
                let due = c.status == Status::Pending
                    || (c.status == Status::Deferred && c.next_try <= now);
                let key = (id.clone(), c.server.clone());
                if due && !self.inflight.contains(&key) {
                    start.push((key, q.msg.clone()));
                }
            }
        }
        for ((id, server), msg) in start {
            let Some(cfg) = self.server(&server).cloned() else {
                self.delivered(
                    &id,
                    &server,
                    Outcome::Failed("server no longer configured".into()),
                );
                continue;
            };
            self.inflight.insert((id.clone(), server.clone()));
            let hostname = self.config.proxy.hostname.clone();
            let results = self.results.clone();
            tokio::spawn(async move {
                let outcome = deliver(&cfg, &hostname, &msg).await;
                let _ = results.send((id, server, outcome)).await;
            });
        }
        for rid in self.schedule.due(now) {
            self.run_restart(worker, &rid).await;
        }
    }

    /// Records a delivery attempt's outcome.
    fn delivered(&mut self, id: &str, server: &str, outcome: Outcome) {
        self.inflight.remove(&(id.to_string(), server.to_string()));
        let (retry_min, retry_max) = (
            self.config.update.retry_min.0.as_secs(),
            self.config.update.retry_max.0.as_secs(),
        );
        let interval = self.config.update.restart_interval.0.as_secs();
        let has_command = self
            .server(server)
            .is_some_and(|s| s.restart_command.is_some());
        let Some(q) = self.queue.get_mut(id) else {
            return;
        };
        let Some(c) = q.copies.iter_mut().find(|c| c.server == server) else {
            return;
        };
        c.attempts += 1;
        let sid = q.msg.sid.clone();
        match outcome {
            Outcome::Delivered(reply) => {
                info!(sid = %sid, "update {id} delivered to {server}: {reply}");
                c.status = Status::Delivered;
                c.reason = reply;
                if q.restart_now {
                    if has_command {
                        let at = self
                            .schedule
                            .now_for(server, self.clock.now_secs(), interval);
                        if let Some(r) = self.schedule.add(server, at, &format!("{id} now")) {
                            info!(sid = %sid, "restart {} of {server} scheduled for {}", r.id, local(at));
                            if let Err(e) = self.schedule.save() {
                                error!("cannot save the restart schedule: {e:#}");
                            }
                        }
                    } else {
                        warn!(sid = %sid, "update {id}: {server} has no restart_command; \"restart spamwars now\" not executed");
                    }
                }
            }
            Outcome::Deferred(why) => {
                let shift = c.attempts.saturating_sub(1).min(30);
                let delay = retry_min.saturating_mul(1 << shift).min(retry_max);
                c.status = Status::Deferred;
                c.next_try = self.clock.now_secs() + delay;
                info!(sid = %sid, "update {id} to {server} deferred: {why}; next try in {delay}s");
                c.reason = why;
            }
            Outcome::Failed(why) => {
                warn!(sid = %sid, "update {id} to {server} failed: {why}");
                c.status = Status::Failed;
                c.reason = why;
            }
        }
        self.save_and_maybe_finish(id);
    }

    fn save_and_maybe_finish(&mut self, id: &str) {
        let Some(q) = self.queue.get(id) else { return };
        if q.copies.iter().any(|c| c.status.open()) {
            if let Err(e) = self.spool.save_state(id, &q.copies) {
                error!("cannot save the state of update {id}: {e:#}");
            }
            return;
        }
        let delivered = q
            .copies
            .iter()
            .filter(|c| c.status == Status::Delivered)
            .count();
        info!(sid = %q.msg.sid, "update {id} done: delivered to {delivered}/{} servers", q.copies.len());
        if let Err(e) = self.spool.delete(id) {
            error!("cannot remove update {id} from the spool: {e:#}");
        }
        self.queue.remove(id);
    }

    async fn run_restart(&mut self, worker: &mut Worker, rid: &str) {
        let Some(r) = self.schedule.get_mut(rid) else {
            return;
        };
        let server = r.server.clone();
        r.state = State::Running;
        if let Err(e) = self.schedule.save() {
            error!("cannot save the restart schedule: {e:#}; restart {rid} not run");
            if let Some(r) = self.schedule.get_mut(rid) {
                r.state = State::Scheduled;
            }
            return;
        }
        if !worker.has_master() {
            self.finish_restart(rid, false, "no master to run the command".into());
            return;
        }
        info!("restart {rid}: asking the master to restart {server}");
        let req = worker
            .request(
                WorkerRequest::Restart {
                    server: server.clone(),
                }
                .encode(),
            )
            .await;
        self.running.insert(req, rid.to_string());
    }

    fn restart_finished(&mut self, answer: &Attrs) {
        let Some(rid) = answer.get("id").and_then(|id| self.running.remove(id)) else {
            return;
        };
        let ok = ipc::Outcome::is_ok(answer);
        let result = ipc::Outcome::reason_in(answer)
            .or(answer.get("result"))
            .unwrap_or(if ok { "exit status 0" } else { "failed" })
            .to_string();
        self.finish_restart(&rid, ok, result);
    }

    fn finish_restart(&mut self, rid: &str, ok: bool, result: String) {
        let t = self.clock.now_secs();
        let Some(r) = self.schedule.get_mut(rid) else {
            return;
        };
        r.state = if ok { State::Done } else { State::Failed };
        r.result = result.clone();
        let server = r.server.clone();
        if ok {
            info!("restart {rid} of {server} done: {result}");
        } else {
            warn!("restart {rid} of {server} failed: {result}");
        }
        self.schedule.last.insert(server, t);
        self.schedule.prune(t, KEEP_RESTARTS);
        if let Err(e) = self.schedule.save() {
            error!("cannot save the restart schedule: {e:#}");
        }
    }

    /// Answers one socket request.
    fn request(&mut self, req: Attrs) -> Attrs {
        self.answer(req).encode()
    }

    /// The answer to one socket request.
    fn answer(&mut self, req: Attrs) -> UpdaterReply {
        let fail = |why: &str| UpdaterReply::TempFail(why.to_string());
        let req = match UpdaterRequest::decode(req) {
            Ok(req) => req,
            Err(bad) => return fail(&bad.to_string()),
        };
        match req {
            UpdaterRequest::Queue {
                sid,
                sender,
                recipient,
                body,
            } => match self.enqueue(sid, sender, recipient, body) {
                Ok(queue_id) => UpdaterReply::Queued { queue_id },
                Err(e) => {
                    error!("cannot queue an update: {e:#}");
                    fail(&format!("{e:#}"))
                }
            },
            UpdaterRequest::List => UpdaterReply::Text(self.list().into_bytes()),
            UpdaterRequest::Flush => {
                let mut n = 0;
                for q in self.queue.values_mut() {
                    for c in &mut q.copies {
                        if c.status == Status::Deferred {
                            c.next_try = 0;
                            n += 1;
                        }
                    }
                }
                info!("queue flush: {n} deferred copies to try now");
                UpdaterReply::Flushed { count: n }
            }
            UpdaterRequest::Delete { id } => {
                if self.queue.remove(&id).is_none() {
                    return UpdaterReply::NotFound(format!("no update {id} in the queue"));
                }
                info!("update {id} deleted from the queue");
                match self.spool.delete(&id) {
                    Ok(()) => UpdaterReply::Done,
                    Err(e) => fail(&format!("{e:#}")),
                }
            }
            UpdaterRequest::Restarts => UpdaterReply::Text(self.list_restarts().into_bytes()),
            UpdaterRequest::Cancel { id } => match self.schedule.get_mut(&id) {
                Some(r) if r.state == State::Scheduled => {
                    r.state = State::Cancelled;
                    info!("restart {id} of {} cancelled", r.server);
                    match self.schedule.save() {
                        Ok(()) => UpdaterReply::Done,
                        Err(e) => fail(&format!("{e:#}")),
                    }
                }
                Some(r) => UpdaterReply::Reject(format!(
                    "restart {id} is {}, not scheduled",
                    r.state.as_str()
                )),
                None => UpdaterReply::NotFound(format!("no restart {id}")),
            },
        }
    }

    /// Stores a new update mail durably and schedules its "at" restarts.
    fn enqueue(
        &mut self,
        sid: String,
        sender: String,
        recipient: String,
        body: Vec<u8>,
    ) -> anyhow::Result<String> {
        let msg = Message {
            id: postern_shared::runtime::logging::new_id(),
            sender,
            recipient,
            received: self.clock.now_secs(),
            sid,
            body,
        };
        let copies: Vec<Copy> = self
            .config
            .servers
            .iter()
            .map(|s| Copy::pending(&s.display_name()))
            .collect();
        let (directives, malformed) = schedule::directives(&msg.body);
        self.spool.store(&msg, &copies)?;
        let sid = msg.sid.clone();
        info!(sid = %sid, "update {} queued from <{}>: {} bytes, {} servers", msg.id, msg.sender, msg.body.len(), copies.len());
        for m in malformed {
            warn!(sid = %sid, "update {}: \"restart spamwars at {m}\" is not a valid yyyyMMddHHmm date: ignored", msg.id);
        }
        for d in &directives {
            let Directive::At(at) = *d else { continue };
            for s in &self.config.servers {
                let name = s.display_name();
                if s.restart_command.is_none() {
                    warn!(sid = %sid, "update {}: {name} has no restart_command; \"restart spamwars at\" not executed", msg.id);
                    continue;
                }
                if let Some(r) = self.schedule.add(&name, at, &format!("{} at {at}", msg.id)) {
                    info!(sid = %sid, "restart {} of {name} scheduled for {}", r.id, local(at));
                }
            }
        }
        self.schedule.save()?;
        let id = msg.id.clone();
        let restart_now = directives.contains(&Directive::Now);
        self.queue.insert(
            id.clone(),
            Queued {
                msg: Arc::new(msg),
                copies,
                restart_now,
            },
        );
        Ok(id)
    }

    fn list(&self) -> String {
        if self.queue.is_empty() {
            return "the update queue is empty\n".into();
        }
        let mut out = String::new();
        for (id, q) in &self.queue {
            out.push_str(&format!(
                "{id}  {}  {} bytes  from <{}>  to <{}>\n",
                local(q.msg.received),
                q.msg.body.len(),
                q.msg.sender,
                q.msg.recipient
            ));
            for c in &q.copies {
                let next = if c.status == Status::Deferred {
                    format!("  next try {}", local(c.next_try))
                } else {
                    String::new()
                };
                out.push_str(&format!(
                    "    {:<20} {:<9} tries {}{next}  {}\n",
                    c.server,
                    c.status.as_str(),
                    c.attempts,
                    c.reason
                ));
            }
        }
        out
    }

    fn list_restarts(&self) -> String {
        if self.schedule.restarts.is_empty() {
            return "no restart scheduled\n".into();
        }
        let mut out = format!(
            "{:<13} {:<20} {:<17} {:<10} {:<24} {}\n",
            "ID", "SERVER", "AT", "STATE", "ORIGIN", "RESULT"
        );
        for r in &self.schedule.restarts {
            out.push_str(&format!(
                "{:<13} {:<20} {:<17} {:<10} {:<24} {}\n",
                r.id,
                r.server,
                local(r.at),
                r.state.as_str(),
                r.origin,
                r.result
            ));
        }
        out
    }
}

/// Local time as `yyyy-mm-dd hh:mm`, the form of the directives.
fn local(t: u64) -> String {
    local_minute(i64::try_from(t).unwrap_or(i64::MAX))
}

/// Delivers one copy: the server's credentials, the same envelope.
async fn deliver(server: &Server, hostname: &str, msg: &Message) -> Outcome {
    let target = Target {
        name: server.display_name(),
        host: server.host.clone(),
        port: server.port,
        timeout: server.timeout.0,
    };
    let temp = |e: ClientError| Outcome::Deferred(e.to_string());
    let mut b = match Client::greet(&target, hostname, &[]).await {
        Ok(b) => b,
        Err(e) => return temp(e),
    };
    if let Some((user, password)) = server.user.as_deref().zip(server.password.as_deref()) {
        if let Err(e) = b.auth_plain(user, password).await {
            return temp(e);
        }
    }
    let decide = |r: &ServerReply| {
        if r.code >= 500 {
            Some(Outcome::Failed(r.summary()))
        } else if r.code >= 400 {
            Some(Outcome::Deferred(r.summary()))
        } else {
            None
        }
    };
    for line in [
        format!("MAIL FROM:<{}>", msg.sender),
        format!("RCPT TO:<{}>", msg.recipient),
    ] {
        match b.command(&line).await {
            Ok(r) => {
                if let Some(o) = decide(&r) {
                    return o;
                }
            }
            Err(e) => return temp(e),
        }
    }
    match b.command("DATA").await {
        Ok(r) if r.code == 354 => {}
        Ok(r) => return decide(&r).unwrap_or(Outcome::Deferred(r.summary())),
        Err(e) => return temp(e),
    }
    let sent = async {
        b.write_body(&msg.body).await?;
        b.write_body(terminator(&msg.body)).await?;
        b.flush().await
    };
    if let Err(e) = sent.await {
        return Outcome::Deferred(e.to_string());
    }
    let outcome = match b
        .read_reply_within(DATA_DONE_TIMEOUT.max(target.timeout))
        .await
    {
        Ok(r) => decide(&r).unwrap_or(Outcome::Delivered(r.summary())),
        Err(e) => temp(e),
    };
    b.quit().await;
    outcome
}

/// What must follow a stored body so that it ends with exactly one
/// `CRLF.CRLF`. smtpd stores the message without its terminator, but
/// spools written before that kept it: a dot-stuffed body can end with
/// `CRLF.CRLF` only if that is the terminator, so it is never sent twice
/// (a second one would reach the backend as a stray `.` command).
fn terminator(body: &[u8]) -> &'static [u8] {
    if body == b".\r\n" || body.ends_with(b"\r\n.\r\n") {
        b""
    } else if body.is_empty() || body.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_shared::runtime::time::ManualClock;

    /// An updater on a temporary spool and state directory, on `clock`.
    fn updater(tag: &str, clock: Clock) -> (Updater, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("postern-updater-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[process]\nspool_dir = \"{d}/spool\"\nstate_dir = \"{d}/state\"\n\n\
             [[server]]\nname = \"One\"\nhost = \"127.0.0.1\"\nport = 25\ndomains = [\"one.test\"]\n\
             restart_command = [\"/bin/true\"]\n",
            d = dir.display()
        );
        let config = Arc::new(Config::parse(&text).expect("a configuration"));
        let (results, _) = mpsc::channel(1);
        let u = Updater {
            spool: Spool::open(&config.process.spool_dir).expect("spool"),
            schedule: Schedule::load(&config.process.state_dir).expect("schedule"),
            config,
            queue: BTreeMap::new(),
            inflight: HashSet::new(),
            running: HashMap::new(),
            results,
            clock,
        };
        (u, dir)
    }

    fn queue(u: &mut Updater, body: &str) -> String {
        u.enqueue(
            String::new(),
            "admin@example.net".into(),
            "update@mx.test".into(),
            body.as_bytes().to_vec(),
        )
        .expect("queued")
    }

    #[test]
    fn retries_restarts_and_expiry_follow_the_clock() {
        let start = 1_796_483_282_000;
        let hand = ManualClock::new(start);
        let (mut u, dir) = updater("clock", hand.clock());
        let now = (start / 1000) as u64;
        let id = queue(&mut u, "Subject: x\r\n\r\nrestart spamwars now\r\n");
        assert_eq!(u.queue[&id].msg.received, now);
        // A deferral: the next try retry_min (60 s) later, then doubling.
        u.delivered(&id, "One", Outcome::Deferred("451 later".into()));
        assert_eq!(u.queue[&id].copies[0].next_try, now + 60);
        assert_eq!(u.next_wake(), Duration::from_secs(60));
        hand.advance(Duration::from_secs(59));
        assert_eq!(u.next_wake(), Duration::from_secs(1));
        hand.advance(Duration::from_secs(1));
        assert_eq!(u.next_wake(), Duration::from_millis(200), "due now");
        u.delivered(&id, "One", Outcome::Deferred("451 later".into()));
        assert_eq!(u.queue[&id].copies[0].next_try, now + 60 + 120);
        // Delivered: "restart now" waits for restart_interval after the last restart.
        u.schedule.last.insert("One".into(), now);
        u.delivered(&id, "One", Outcome::Delivered("250 ok".into()));
        let r = &u.schedule.restarts[0];
        assert_eq!(r.at, now + 300, "the last restart plus restart_interval");
        assert!(u.schedule.due(u.clock.now_secs()).is_empty());
        hand.advance(Duration::from_secs(240));
        assert_eq!(u.schedule.due(u.clock.now_secs()), vec![r.id.clone()]);
        assert!(u.queue.is_empty(), "every copy final: out of the queue");
        // Expiry: an open copy older than max_age (5 days) fails.
        let id = queue(&mut u, "Subject: y\r\n\r\nhi\r\n");
        hand.advance(Duration::from_secs(5 * 86_400));
        u.expire();
        assert!(u.queue.contains_key(&id), "not older than max_age yet");
        hand.advance(Duration::from_secs(1));
        u.expire();
        assert!(!u.queue.contains_key(&id), "failed, out of the queue");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_copy_ends_with_exactly_one_terminator() {
        // As smtpd stores it now: the message without its end.
        assert_eq!(terminator(b"Subject: x\r\n\r\nhi\r\n"), b".\r\n");
        assert_eq!(terminator(b""), b".\r\n");
        assert_eq!(terminator(b"no line end"), b"\r\n.\r\n");
        // As older spools kept it: the end already there.
        assert_eq!(terminator(b"Subject: x\r\n\r\nhi\r\n.\r\n"), b"");
        assert_eq!(terminator(b".\r\n"), b"");
        // A dot-stuffed line of one dot is content, not an end.
        assert_eq!(terminator(b"a\r\n..\r\n"), b".\r\n");
    }
}
