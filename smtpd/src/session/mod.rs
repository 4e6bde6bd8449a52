//! One client SMTP session, from the greeting to QUIT (SPEC §4), a file
//! per stage. Read them in a session's order:
//!
//! | file | stage |
//! |---|---|
//! | `admission.rs` | greeting, the router's connection count, relay client or not |
//! | `io.rs` | command lines in, replies out (pipelining, limits, timeouts) |
//! | this file | the session's state, the command loop and dispatch, teardown |
//! | `helo.rs`, `tls.rs`, `auth.rs` (+ `brake.rs`) | HELO/EHLO, STARTTLS, AUTH |
//! | `mail.rs` | MAIL and the transaction (`Tx`) |
//! | `rcpt.rs` (+ `policy.rs`) | RCPT: check → route → policy → forward |
//! | `relay.rs` | the backend connection: connect, replay MAIL, forward RCPT |
//! | `data.rs` | DATA: the body through the scanner (`postern_shared::smtp::data`) |
//! | `update.rs`, `admin.rs` | update mails (the updater), RELOAD/SHUTDOWN (the master) |
//! | `reply.rs` | every failure → its 4xx reply ([`reply::reply_for`]) |
//! | `tests/` | dialogues over `tokio::io::duplex`: a transcript per stage, every failure's reply |
//!
//! The session stays SMTP-aware from start to end: every command is parsed
//! here, every recipient is routed through the router and checked against the
//! transaction's server, and only then forwarded. The backend connection is
//! opened at the first routed recipient (the route depends on it); its
//! replies to MAIL, RCPT and DATA are relayed verbatim.
//!
//! When the process stops, a session waiting between transactions gets
//! `421 4.3.2`; one in the middle of a transaction may finish it first.
//!
//! A client that pipelines without end and never reads is bounded (see
//! `io.rs`); more than [`MAX_JUNK_COMMANDS`] RSET/NOOP/VRFY/HELP end
//! the session, and so does a transaction that begins no message body
//! within `command_timeout` of its first MAIL (`Session::progress_deadline`).
//!
//! A session admitted while postern is near `max_connections` runs in
//! stress mode (the router says so with its connection count, see
//! `router/src/anvil.rs`): a command timeout of at most 10 s, one error,
//! one junk command.
//!
//! Errors: router, updater, master or backend trouble is a
//! [`reply::Failure`], and [`reply::reply_for`] is the one place where a
//! failure becomes a reply: always 4xx.
//!
//! Statistics: a session tallies its events (connection, forwarded by cause,
//! relaying denied, refusals by kind, messages and bytes accepted) in
//! `counts` and sends them to the router once, after the client is gone
//! ([`RouterClient::count`]): counting never delays a client, and a router
//! that does not answer only loses that session's counts.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use postern_shared::config::Config;
use postern_shared::ipc::route::{Admission, Route, RouterClient};
use postern_shared::ipc::WorkerVerb;
use postern_shared::net::{unmap, DisplayIp};
use postern_shared::runtime::bufread::Reader;
use postern_shared::smtp::{parse_command, Command, Reply};
use postern_shared::stats::{Counter, Counts, Rejection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::backend::{Backend, Health};

/// Errors in one session before it is closed (Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;
/// RSET, NOOP, VRFY and HELP commands since the session's last accepted
/// message (Postfix's `smtpd_junk_command_limit`); one more gets `421 4.7.0`
/// and the session ends.
const MAX_JUNK_COMMANDS: u32 = 100;

mod admin;
mod admission;
mod auth;
mod brake;
mod data;
mod helo;
mod io;
mod mail;
mod policy;
mod rcpt;
mod relay;
mod reply;
mod tls;
mod update;

#[cfg(test)]
mod tests;

use admission::{Pending, ACCOUNTING_TIMEOUT};
use mail::Tx;

/// A client connection other than plain TCP: TLS after STARTTLS, a test's pipe.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// The client connection: plain TCP held as it is (no allocation for the
/// usual session), anything else boxed.
pub enum ClientConn {
    Tcp(tokio::net::TcpStream),
    Other(Box<dyn ClientStream>),
}

impl ClientConn {
    /// The stream, whichever it is (the enum spares an allocation per
    /// session; the call through `dyn` costs nothing next to the system call).
    fn stream(self: std::pin::Pin<&mut Self>) -> std::pin::Pin<&mut dyn ClientStream> {
        match self.get_mut() {
            ClientConn::Tcp(s) => std::pin::Pin::new(s),
            ClientConn::Other(s) => std::pin::Pin::new(&mut **s),
        }
    }
}

impl AsyncRead for ClientConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.stream().poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientConn::Tcp(s) => s.is_write_vectored(),
            ClientConn::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

/// An SMTP admin command passed to the master through the process's main loop.
pub struct AdminRequest {
    /// [`WorkerVerb::Reload`] or [`WorkerVerb::Stop`].
    pub request: WorkerVerb,
    /// The session asking, for the master's log line.
    pub sid: String,
    /// The master's answer: `Ok`, or why not.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// What a session needs from its process.
#[derive(Clone)]
pub struct Ctx {
    /// The configuration in force when the session started.
    pub config: Arc<Config>,
    /// STARTTLS, when `[tls]` is set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Some server has SMTP AUTH credentials (the session's configuration
    /// holds no server table): AUTH may be worth offering.
    pub auth_servers: bool,
    /// The router client shared by the process.
    pub router: Arc<RouterClient>,
    /// Backends that keep failing, shared by the process.
    pub health: Arc<Health>,
    /// Backend connections prepared ahead of their sessions.
    pub prepared: Arc<crate::backend::pool::Prepared>,
    /// Where RELOAD and SHUTDOWN go.
    pub admin: mpsc::Sender<AdminRequest>,
    /// The updater's socket (update mails).
    pub updater: Arc<std::path::Path>,
    /// Set when the process stops: idle sessions get 421.
    pub shutdown: Arc<Stopping>,
}

/// The process is stopping: a session between transactions is told `421
/// 4.3.2` — at once if it waits for a command. A flag and a `Notify`
/// rather than a `watch` channel: an idle session's wait for it is in its
/// task, and a `Notified` is the smallest such wait.
#[derive(Default)]
pub struct Stopping {
    set: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Stopping {
    /// Says so to every session, waiting or not.
    pub fn set(&self) {
        self.set.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A wait that ends when the process stops; made before [`is_set`] is
    /// checked, it misses no `set` in between (`Notify::notify_waiters`
    /// wakes every `Notified` made before it).
    ///
    /// [`is_set`]: Stopping::is_set
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// A session id ([`new_id`]'s 12 characters; at most 16 bytes are kept),
/// inline: a `String` would be one more allocation for every session.
///
/// [`new_id`]: postern_shared::runtime::logging::new_id
#[derive(Clone, Copy)]
pub struct Sid {
    len: u8,
    bytes: [u8; 16],
}

impl Sid {
    pub fn new(id: &str) -> Sid {
        let mut len = id.len().min(16);
        while !id.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; 16];
        bytes[..len].copy_from_slice(&id.as_bytes()[..len]);
        Sid {
            len: len as u8,
            bytes,
        }
    }
}

impl std::ops::Deref for Sid {
    type Target = str;

    fn deref(&self) -> &str {
        // Cut at a character boundary in `new`: always valid.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

/// What every line a session logs carries: `sid=… client_ip=…:` (in the
/// journal `SID` and `CLIENT_IP`), formatted when a line is written — an
/// idle session holds the two values, no text.
pub struct LogFields {
    pub sid: Sid,
    pub ip: IpAddr,
}

impl postern_shared::runtime::logging::TaskFields for LogFields {
    fn each(&self, field: &mut dyn FnMut(&'static str, &dyn std::fmt::Display)) {
        field("sid", &&*self.sid);
        field("client_ip", &DisplayIp(self.ip));
    }
}

/// Why a session ends early.
enum End {
    /// The client went away or the socket failed.
    Gone,
    /// We close it (after a 421, a QUIT, a protocol violation).
    Closed,
}

/// One session's state, from accept to teardown.
struct Session {
    /// What the session needs from its process (shared by the sessions
    /// started since the last reload).
    ctx: Arc<Ctx>,
    /// The session id, in every log line and router request.
    sid: Sid,
    /// The client's address and port.
    peer: SocketAddr,
    /// The address and port the client connected to.
    local: SocketAddr,
    /// The client connection, buffered (see `io.rs`).
    client: Reader<ClientConn>,
    /// Replies queued for the client (see `io.rs`).
    out: Vec<u8>,
    /// The client's HELO/EHLO argument.
    helo: Option<String>,
    /// The client said EHLO.
    esmtp: bool,
    /// The client sent a command ahead of a reply where pipelining is not
    /// allowed: before EHLO's reply, after HELO, or before any HELO/EHLO
    /// (for `reject_unauth_pipelining`, SPEC §8).
    improper_pipelining: bool,
    /// TLS is active (after STARTTLS).
    tls: bool,
    /// The client said QUIT and got its 221.
    quit: bool,
    /// The router's answer to the connection count, while it is awaited
    /// ([`Session::greet_and_admit`]).
    admission: Option<Pending>,
    /// The router refused this connection (over a limit): it was not
    /// counted. Any other session says goodbye with `request=disconnect`,
    /// which the router ignores for a session it did not count.
    refused: bool,
    /// A prepared connection to this server is to be replaced once the
    /// current RCPT is answered.
    refill_due: Option<Box<Route>>,
    /// The backend connection came from the prepared ones and has not
    /// answered anything of this session's yet.
    adopted: bool,
    /// The client's address was looked up in the relay lists.
    client_checked: bool,
    /// Whether recipients ask the policy: false when the router said at
    /// the connection count that no policy check is configured (an access
    /// entry added meanwhile applies from the next session on).
    policy_on: bool,
    /// Admitted in stress mode (the router is near max_connections): a
    /// command timeout of at most `STRESS_COMMAND_TIMEOUT`, one error, one
    /// junk command, as Postfix under stress.
    stress: bool,
    /// The session's route when the client is a relay client (`ip-addr`, `auth`).
    relay: Option<Box<Route>>,
    /// Credentials of a successful AUTH, replayed to an auth-routed backend.
    login: Option<Box<(String, String)>>,
    /// Failed RELOAD/SHUTDOWN attempts in a row.
    admin_failures: u32,
    /// Failed authentications (AUTH, RELOAD, SHUTDOWN) in this session, for
    /// the brake's delay when the router cannot count them.
    auth_failures: u32,
    /// The client authenticated as the admin user (may send update mails).
    admin_login: bool,
    /// The current mail transaction.
    tx: Option<Box<Tx>>,
    /// The backend connection (see `relay.rs`).
    backend: Option<Box<Backend>>,
    /// A backend was reached at least once (for the seed's "forwarded" line).
    forwarded_to: Option<u32>,
    /// Errors so far (see [`MAX_ERRORS`]).
    errors: u32,
    /// Junk commands (RSET, NOOP, VRFY, HELP) since the last accepted message.
    junk: u32,
    /// A transaction began (MAIL) and no message body has begun since: by
    /// then one must have, or the session ends (`421 4.4.2`). Abandoning a
    /// transaction (RSET, EHLO) does not move it, so a client that opens
    /// transactions without end — holding a backend connection — is let go.
    progress_deadline: Option<tokio::time::Instant>,
    /// What this session counts for the statistics, sent to the router when it ends.
    counts: Counts,
}

/// Runs a session on an accepted connection until it ends.
///
/// Not an `async fn`: the `Session` is made here, on the heap, and the
/// future holds only its box — an `async fn` would keep its arguments too,
/// and the session inline, in the task of every idle session (tokio aligns
/// a task to 128 bytes: the task with the session in it took 2 KB).
pub fn run(
    stream: ClientConn,
    peer: SocketAddr,
    local: SocketAddr,
    sid: Sid,
    ctx: Arc<Ctx>,
    active: impl Send + 'static,
) -> impl std::future::Future<Output = ()> + Send {
    let s = Box::new(Session {
        ctx,
        sid,
        peer,
        local,
        client: Reader::with_capacity(0, stream),
        out: Vec::new(),
        helo: None,
        improper_pipelining: false,
        esmtp: false,
        tls: false,
        quit: false,
        admission: None,
        refused: false,
        refill_due: None,
        adopted: false,
        client_checked: false,
        policy_on: true,
        stress: false,
        relay: None,
        login: None,
        admin_failures: 0,
        auth_failures: 0,
        admin_login: false,
        tx: None,
        backend: None,
        forwarded_to: None,
        errors: 0,
        junk: 0,
        progress_deadline: None,
        counts: Counts::default(),
    });
    lifetime(s, active)
}

/// The session from its greeting to the backend connection given back;
/// `active` is dropped at the very end.
///
/// What this future holds across its waits is in every session's task, idle
/// or not: the session's box, `active`, and the largest of its stages — the
/// command loop's wait for a line. The end of the session is boxed.
///
/// Not an `async fn` (nor `serve` and `read_line` below it): an `async
/// fn` keeps each argument twice, as it came and as its local copy.
#[allow(clippy::manual_async_fn)] // no argument kept twice (above)
fn lifetime(mut s: Box<Session>, active: impl Send) -> impl Future<Output = ()> + Send {
    async move {
        info!("accepted connection from {}", DisplayIp(s.ip()));
        s.counts.add(Counter::Connections, 1);
        if s.greet_and_admit().await {
            let _ = s.serve().await;
        }
        Box::pin(end(s)).await;
        drop(active);
    }
}

/// The session's end: the connection count settled, the last replies
/// written, the client's connection closed, the statistics sent, the
/// backend connection given back.
async fn end(mut s: Box<Session>) {
    let ip = s.ip();
    // Uncounting needs the count's answer (a client may leave, or say QUIT,
    // before it): no reply any more, the session is over.
    if let Some(pending) = s.admission.take() {
        if let Ok(Ok(Admission::Refused(why))) = pending.await {
            warn!("refused connection from {ip}: {why}");
            s.counts.add(Counter::Rejected(Rejection::Limit), 1);
            s.refused = true;
        }
    }
    let counted = !s.refused;
    let _ = s.flush().await;
    // Close the client's connection first: the backend's goodbye may take a while.
    s.abandon_data_ahead();
    let backend = s.backend.take();
    // After the 221 of a QUIT, closing sends the FIN. Otherwise (a 421, a
    // timeout) the client may have sent more that we will not read, and
    // closing then would send a reset that can overtake our last reply:
    // shutdown(2) sends the FIN first. TLS always says goodbye (close_notify).
    if s.tls || !s.quit {
        // Bounded: TLS's close_notify waits for what is still unsent, which
        // a client that reads nothing never takes.
        let shutdown = s.client.get_mut().shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(2), shutdown).await;
    }
    // Boxed: it waits for the goodbye in every session's task otherwise.
    let (counts, router, sid) = (
        Box::new(std::mem::take(&mut s.counts)),
        s.ctx.router.clone(),
        s.sid,
    );
    let (prepared, hostname) = (s.ctx.prepared.clone(), s.hostname().to_string());
    drop(s);
    // The client is gone: counting never delays it, and a failure only loses
    // these counts. The goodbye carries them; it also uncounts the session
    // (the router ignores it for a session it never counted), except for one
    // the router refused.
    // The goodbye's futures are boxed (as the commands' are): a session's
    // task holds, while it waits for its client, only what that wait needs.
    let sent = match counted {
        true => {
            Box::pin(router.disconnect(
                &sid,
                ip,
                postern_shared::runtime::logging::pid(),
                &counts,
                ACCOUNTING_TIMEOUT,
            ))
            .await
        }
        false => Box::pin(router.count(&sid, &counts, ACCOUNTING_TIMEOUT)).await,
    };
    if let Err(e) = sent {
        debug!("statistics of the session lost: {e}");
    }
    info!("disconnect from {}", DisplayIp(ip));
    // The backend connection serves a later session, or is closed with QUIT.
    if let Some(b) = backend {
        Box::pin(prepared.give_back(*b, hostname)).await;
    }
}

impl Session {
    /// The client's address (IPv4 unmapped).
    fn ip(&self) -> IpAddr {
        unmap(self.peer.ip())
    }

    /// `proxy.hostname`: how postern names itself.
    fn hostname(&self) -> &str {
        &self.ctx.config.proxy.hostname
    }

    /// The command loop: read, dispatch, answer, until the session ends.
    #[allow(clippy::manual_async_fn)] // see `lifetime`: no argument kept twice
    fn serve(&mut self) -> impl Future<Output = Result<(), End>> + Send + '_ {
        async move {
            loop {
                if let Some(line) = self.read_command().await? {
                    // Boxed: its future (the largest of every command's: DATA,
                    // STARTTLS, the backend's replies…) lives only while the
                    // command runs, not in every idle session's task.
                    Box::pin(self.command(&line)).await?;
                }
                if self.errors >= self.max_errors() {
                    warn!("too many errors from {}", self.ip());
                    self.counts.add(Counter::Rejected(Rejection::Syntax), 1);
                    let text = format!("{} Error: too many errors", self.hostname());
                    self.reply(Reply::new(421, "4.7.0", &text));
                    return Err(End::Closed);
                }
                self.flush_if_idle().await?;
            }
        }
    }

    /// Dispatches one command line to its stage.
    async fn command(&mut self, line: &str) -> Result<(), End> {
        let command = parse_command(line);
        // More is already here: the client did not wait for this reply.
        // Allowed only inside an EHLO session, and not behind EHLO itself
        // (the client has not seen PIPELINING yet) nor behind HELO.
        if !self.client.buffer().is_empty()
            && (!self.esmtp || matches!(command, Command::Helo(_) | Command::Ehlo(_)))
            && !self.improper_pipelining
        {
            debug!("{} pipelines where it may not", self.ip());
            self.improper_pipelining = true;
        }
        if !matches!(command, Command::Helo(_) | Command::Ehlo(_) | Command::Quit) {
            self.settle_admission().await?;
        }
        if !matches!(command, Command::Data) {
            self.abandon_data_ahead();
        }
        match command {
            Command::Helo(name) => self.helo(name).await,
            Command::Starttls => return self.starttls().await,
            Command::Auth(mech, initial) => return self.auth(&mech, initial).await,
            Command::Reload(creds) => return self.admin(WorkerVerb::Reload, creds).await,
            Command::Shutdown(creds) => return self.admin(WorkerVerb::Stop, creds).await,
            Command::Ehlo(name) => self.ehlo(name).await,
            Command::Mail(from, params) => self.mail(from, params),
            Command::Rcpt(to, params) => self.rcpt(to, params).await,
            Command::Data => return self.data().await,
            Command::Rset => {
                self.junk_command()?;
                self.reset_tx().await;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
            }
            Command::Noop => {
                self.junk_command()?;
                self.reply(Reply::new(250, "2.0.0", "Ok"))
            }
            Command::Vrfy => {
                self.junk_command()?;
                self.reply(Reply::new(
                    252,
                    "2.0.0",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ))
            }
            Command::Expn => {
                self.syntax_error(Reply::new(502, "5.5.1", "Error: EXPN not supported"))
            }
            Command::Help => {
                self.junk_command()?;
                self.reply(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
                ))
            }
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.quit = true;
                return Err(End::Closed);
            }
            Command::Invalid(r) => self.syntax_error(r),
            Command::Unknown(verb) => {
                debug!("unknown command {verb:?}");
                self.syntax_error(Reply::new(502, "5.5.2", "Error: command not recognized"));
            }
        }
        Ok(())
    }

    /// Errors a session may make before it is closed: 1 in stress mode.
    fn max_errors(&self) -> u32 {
        if self.stress {
            1
        } else {
            MAX_ERRORS
        }
    }

    /// How long the client may take for a command line (or to read a
    /// reply): `command_timeout`, at most `STRESS_COMMAND_TIMEOUT` in
    /// stress mode.
    pub(super) fn command_timeout(&self) -> Duration {
        let t = self.ctx.config.proxy.command_timeout.0;
        if self.stress {
            t.min(postern_shared::ipc::route::STRESS_COMMAND_TIMEOUT)
        } else {
            t
        }
    }

    /// Counts a junk command (RSET, NOOP, VRFY, HELP); over
    /// [`MAX_JUNK_COMMANDS`] since the last accepted message, `421 4.7.0`
    /// and the end of the session, as Postfix's `smtpd_junk_command_limit`
    /// (which counts errors from there): a client that repeats them — or
    /// pipelines MAIL, RCPT, RSET without end — is not held for ever.
    fn junk_command(&mut self) -> Result<(), End> {
        self.junk += 1;
        let limit = if self.stress { 1 } else { MAX_JUNK_COMMANDS };
        if self.junk <= limit {
            return Ok(());
        }
        warn!("too many junk commands from {}", self.ip());
        self.counts.add(Counter::Rejected(Rejection::Syntax), 1);
        let text = format!("{} Error: too many junk commands", self.hostname());
        self.reply(Reply::new(421, "4.7.0", &text));
        Err(End::Closed)
    }
}
