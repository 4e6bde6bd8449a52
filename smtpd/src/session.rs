//! One client SMTP session, from the greeting to QUIT (SPEC §4).
//!
//! The session stays SMTP-aware from start to end: every command is parsed
//! here, every recipient is routed through the router and checked against the
//! transaction's server, and only then forwarded. The backend connection is
//! opened at the first routed recipient (the route depends on it); its
//! replies to MAIL, RCPT and DATA are relayed verbatim. The body is streamed
//! through [`crate::data::Scanner`].
//!
//! When the process stops, a session waiting between transactions gets
//! `421 4.3.2`; one in the middle of a transaction may finish it first.
//!
//! Replies are queued in `out` and written when the client has nothing more
//! in flight (its input buffer is empty), so a pipelined group gets its
//! replies in one segment, in order.
//!
//! A client that pipelines without end and never reads is bounded: replies
//! held back stop at [`MAX_HELD_REPLIES`], a write waits at most
//! `command_timeout`, more than [`MAX_JUNK_COMMANDS`] RSET/NOOP/VRFY/HELP end
//! the session, and so does a transaction that begins no message body
//! within `command_timeout` of its first MAIL (`Session::progress_deadline`).
//!
//! Error mapping lives in one place, [`Session::temp_failure`]: router or
//! backend trouble is always 4xx.
//!
//! Statistics: a session tallies its events (connection, forwarded by cause,
//! relaying denied, refusals by kind, messages and bytes accepted) in
//! `counts` and sends them to the router once, after the client is gone
//! ([`RouterClient::count`]): counting never delays a client, and a router
//! that does not answer only loses that session's counts.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use postern_shared::bufread::Reader;
use postern_shared::config::Config;
use postern_shared::net::unmap;
use postern_shared::route::{Admission, Lookup, Route, RouterClient, RouterError};
use postern_shared::smtp::{parse_command, Command, Param, Path, Reply};
use postern_shared::stats::{Counter, Counts, Rejection};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::data::{Fault, Scanner};
use postern_shared::backend::{Backend, BackendError, BackendReply, ClientInfo, Health};

/// Longest command line accepted, CRLF included (Postfix's `line_length_limit`).
const MAX_COMMAND_LINE: usize = 2048;
/// Errors in one session before it is closed (Postfix's `smtpd_hard_error_limit`).
const MAX_ERRORS: u32 = 20;
/// RSET, NOOP, VRFY and HELP commands since the session's last accepted
/// message (Postfix's `smtpd_junk_command_limit`); one more gets `421 4.7.0`
/// and the session ends.
const MAX_JUNK_COMMANDS: u32 = 100;
/// How long to wait for the backend's reply to the end of a message
/// (Postfix's `smtp_data_done_timeout`): content filters may take long.
const DATA_DONE_TIMEOUT: Duration = Duration::from_secs(600);

mod admin;
mod auth;
mod brake;
mod policy;
mod tls;
mod update;

/// The client connection: plain TCP, or TLS after STARTTLS.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientStream for T {}

/// A boxed client connection.
pub type BoxStream = Box<dyn ClientStream>;

/// An SMTP admin command passed to the master through the process's main loop.
pub struct AdminRequest {
    /// `reload` or `stop`.
    pub request: &'static str,
    /// The session asking, for the master's log line.
    pub sid: String,
    /// The master's answer: `Ok`, or why not.
    pub reply: oneshot::Sender<Result<(), String>>,
}

/// The client's read buffer between messages: idle sessions are most of a
/// busy server's sessions, and commands are short.
pub(crate) const COMMAND_BUFFER: usize = 4 * 1024;
/// The read buffer once a message body is coming (see [`Session::grow_reader`]);
/// below glibc's 64 KB, whose frees make malloc consolidate its free lists.
const DATA_BUFFER: usize = 32 * 1024;

/// Replies held back while pipelined commands are read (bytes).
const MAX_HELD_REPLIES: usize = 16 * 1024;

/// How long connection accounting may take before the session goes on uncounted.
const ACCOUNTING_TIMEOUT: Duration = Duration::from_secs(2);

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
    pub prepared: Arc<crate::prepared::Prepared>,
    /// Where RELOAD and SHUTDOWN go.
    pub admin: mpsc::Sender<AdminRequest>,
    /// The updater's socket (update mails).
    pub updater: std::path::PathBuf,
    /// Becomes true when the process stops: idle sessions get 421.
    pub shutdown: watch::Receiver<bool>,
}

/// The router's answer to the connection count. A task of its own, not a
/// future the session polls: the request may wait for the router
/// connection's lock (while it is reopened), and a waiter that is not polled
/// — its session blocked writing to a client that does not read — would
/// hold that lock for every session of the process.
type Pending = tokio::task::JoinHandle<Result<Admission, RouterError>>;

/// Why a session ends early.
enum End {
    /// The client went away or the socket failed.
    Gone,
    /// We close it (after a 421, a QUIT, a protocol violation).
    Closed,
}

/// The current mail transaction.
struct Tx {
    from: Path,
    params: Vec<Param>,
    /// Recipients the backend accepted, for the log.
    recipients: Vec<String>,
    /// The transaction's server, set by its first routed recipient.
    route: Option<Route>,
    /// The backend accepted our MAIL for this transaction.
    backend_mail: bool,
    /// Recipients the backend accepted.
    accepted: u32,
    /// RCPT commands seen.
    rcpts: u32,
    /// An update mail (to `proxy.update_address`): handled by the updater.
    update: bool,
    /// The backend's reply to a DATA sent ahead with the last RCPT (the
    /// client had pipelined its DATA behind it), for [`Session::data`].
    data_ahead: Option<BackendReply>,
    /// The backend connection was lost after it accepted recipients: the
    /// client was told 250 for them, so the message must not go on
    /// without them. RCPT and DATA get 451 until the transaction ends.
    lost: bool,
}

struct Session {
    ctx: Ctx,
    sid: String,
    peer: SocketAddr,
    local: SocketAddr,
    client: Reader<BoxStream>,
    out: Vec<u8>,
    helo: Option<String>,
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
    refill_due: Option<Route>,
    /// The backend connection came from the prepared ones and has not
    /// answered anything of this session's yet.
    adopted: bool,
    /// The client's address was looked up in the relay lists.
    client_checked: bool,
    /// The session's route when the client is a relay client (`ip-addr`, `auth`).
    relay: Option<Route>,
    /// Credentials of a successful AUTH, replayed to an auth-routed backend.
    login: Option<(String, String)>,
    /// Failed RELOAD/SHUTDOWN attempts in a row.
    admin_failures: u32,
    /// Failed authentications (AUTH, RELOAD, SHUTDOWN) in this session, for
    /// the brake's delay when the router cannot count them.
    auth_failures: u32,
    /// The client authenticated as the admin user (may send update mails).
    admin_login: bool,
    tx: Option<Tx>,
    backend: Option<Backend>,
    /// A backend was reached at least once (for the seed's "forwarded" line).
    forwarded_to: Option<u32>,
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
pub async fn run(stream: BoxStream, peer: SocketAddr, local: SocketAddr, sid: String, ctx: Ctx) {
    let mut s = Session {
        ctx,
        sid,
        peer,
        local,
        client: Reader::with_capacity(COMMAND_BUFFER, stream),
        out: Vec::with_capacity(512),
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
    };
    let ip = s.ip();
    info!("accepted connection from {ip}");
    s.counts.add(Counter::Connections, 1);
    if s.greet_and_admit().await {
        let _ = s.serve().await;
    }
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
    let (counts, router, sid) = (
        std::mem::take(&mut s.counts),
        s.ctx.router.clone(),
        s.sid.clone(),
    );
    let (prepared, hostname) = (s.ctx.prepared.clone(), s.hostname().to_string());
    drop(s);
    // The client is gone: counting never delays it, and a failure only loses
    // these counts. The goodbye carries them; it also uncounts the session
    // (the router ignores it for a session it never counted), except for one
    // the router refused.
    let sent = match counted {
        true => {
            router
                .disconnect(
                    &sid,
                    ip,
                    postern_shared::logging::pid(),
                    &counts,
                    ACCOUNTING_TIMEOUT,
                )
                .await
        }
        false => router.count(&sid, &counts, ACCOUNTING_TIMEOUT).await,
    };
    if let Err(e) = sent {
        debug!("statistics of the session lost: {e}");
    }
    info!("disconnect from {ip}");
    // The backend connection serves a later session, or is closed with QUIT.
    if let Some(b) = backend {
        prepared.give_back(b, hostname).await;
    }
}

impl Session {
    fn ip(&self) -> IpAddr {
        unmap(self.peer.ip())
    }

    fn reply(&mut self, r: Reply) {
        if r.code >= 400 {
            debug!(reply = %r.summary(), "reply {}", r.summary());
        }
        r.write_to(&mut self.out);
    }

    fn relay(&mut self, r: &BackendReply) {
        self.out.extend_from_slice(&r.raw);
    }

    /// Writes the queued replies. A client that reads none of them for
    /// `command_timeout` is gone (as Postfix's smtpd_timeout covers writes):
    /// its session does not hang on a full socket.
    async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            let timeout = self.ctx.config.proxy.command_timeout.0;
            let w = self.client.get_mut();
            let write = async {
                w.write_all(&self.out).await?;
                w.flush().await
            };
            let written = tokio::time::timeout(timeout, write).await;
            // Written or given up: nothing is tried twice.
            self.out.clear();
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Gone),
                Err(_) => {
                    info!(
                        "timeout after {timeout:?} writing to {}: it reads no reply",
                        self.ip()
                    );
                    return Err(End::Gone);
                }
            }
        }
        Ok(())
    }

    /// Writes queued replies unless more pipelined commands are already
    /// buffered — or the replies reach [`MAX_HELD_REPLIES`] bytes: a client
    /// pipelining without end does not make them grow without end.
    async fn flush_if_idle(&mut self) -> Result<(), End> {
        if self.client.buffer().is_empty() || self.out.len() >= MAX_HELD_REPLIES {
            self.flush().await
        } else {
            Ok(())
        }
    }

    fn hostname(&self) -> &str {
        &self.ctx.config.proxy.hostname
    }

    async fn serve(&mut self) -> Result<(), End> {
        loop {
            if let Some(line) = self.read_command().await? {
                self.command(&line).await?;
            }
            if self.errors >= MAX_ERRORS {
                warn!("too many errors from {}", self.ip());
                self.counts.add(Counter::Rejected(Rejection::Syntax), 1);
                let text = format!("{} Error: too many errors", self.hostname());
                self.reply(Reply::new(421, "4.7.0", &text));
                return Err(End::Closed);
            }
            self.flush_if_idle().await?;
        }
    }

    /// Reads one command line. `Ok(None)`: a bad line was answered; read the next.
    async fn read_command(&mut self) -> Result<Option<String>, End> {
        let too_long = Reply::new(500, "5.5.2", "Error: command line too long");
        self.read_line(MAX_COMMAND_LINE, too_long).await
    }

    /// Reads one CRLF-terminated line of at most `limit` bytes. `Ok(None)`: a
    /// bad line (too long: `too_long`; bare CR or LF; not UTF-8) was answered.
    async fn read_line(&mut self, limit: usize, too_long: Reply) -> Result<Option<String>, End> {
        // A stopping process lets a transaction in progress finish; a session
        // between transactions is told to come back later.
        let stoppable = self.tx.is_none();
        if stoppable && *self.ctx.shutdown.borrow() && self.client.buffer().is_empty() {
            return Err(self.shutting_down());
        }
        let timeout = self.ctx.config.proxy.command_timeout.0;
        let now = tokio::time::Instant::now();
        // Checked before reading: a client that keeps sending never makes
        // a read wait, let alone time out.
        if self.progress_deadline.is_some_and(|d| d <= now) {
            return Err(self.no_progress());
        }
        let deadline = match self.progress_deadline {
            Some(d) => d.min(now + timeout),
            None => now + timeout,
        };
        let mut shutdown = self.ctx.shutdown.clone();
        let mut buf = Vec::with_capacity(128);
        /// What ended a wait for (the rest of) the line.
        enum Got {
            Read(std::io::Result<usize>),
            TimedOut,
            Stop,
            Count(Result<Result<Admission, RouterError>, tokio::task::JoinError>),
        }
        loop {
            // The connection count, while it is awaited, comes first: a
            // refused client is told as soon as it is known, even in the
            // middle of a line (see greet_and_admit).
            let got = {
                let admission = &mut self.admission;
                let room = limit.saturating_sub(buf.len()) as u64;
                let mut limited = (&mut self.client).take(room);
                let read = limited.read_until(b'\n', &mut buf);
                tokio::select! {
                    biased;
                    v = async {
                        match admission.as_mut() {
                            Some(pending) => pending.await,
                            None => std::future::pending().await,
                        }
                    }, if admission.is_some() => Got::Count(v),
                    r = tokio::time::timeout_at(deadline, read) => match r {
                        Ok(r) => Got::Read(r),
                        Err(_) => Got::TimedOut,
                    },
                    _ = shutdown.wait_for(|s| *s), if stoppable => Got::Stop,
                }
            };
            match got {
                Got::Count(v) => {
                    self.admission = None;
                    self.admit(v)?;
                }
                Got::Read(Ok(_)) => break,
                Got::Read(Err(_)) => return Err(End::Gone),
                Got::TimedOut if self.progress_deadline.is_some_and(|d| d <= deadline) => {
                    return Err(self.no_progress())
                }
                Got::TimedOut => return Err(self.timed_out(timeout, "a command")),
                Got::Stop => return Err(self.shutting_down()),
            }
        }
        if buf.is_empty() {
            return Err(End::Gone);
        }
        if buf.last() != Some(&b'\n') {
            // Longer than the limit: discard up to the end of the line,
            // within the command's time as the line itself.
            self.errors += 1;
            match tokio::time::timeout_at(deadline, self.discard_line()).await {
                Ok(discarded) => discarded?,
                Err(_) => return Err(self.timed_out(timeout, "the end of a line")),
            }
            self.reply(too_long);
            return Ok(None);
        }
        buf.pop();
        if buf.pop() != Some(b'\r') || buf.contains(&b'\r') {
            self.errors += 1;
            self.reply(Reply::new(
                500,
                "5.5.2",
                "Error: bare <CR> or <LF> received; commands end with <CR><LF>",
            ));
            return Ok(None);
        }
        match String::from_utf8(buf) {
            Ok(s) => Ok(Some(s)),
            Err(_) => {
                self.errors += 1;
                self.reply(Reply::new(
                    500,
                    "5.5.2",
                    "Error: command is not valid UTF-8",
                ));
                Ok(None)
            }
        }
    }

    async fn discard_line(&mut self) -> Result<(), End> {
        loop {
            let buf = self.client.fill_buf().await.map_err(|_| End::Gone)?;
            if buf.is_empty() {
                return Err(End::Gone);
            }
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                self.client.consume(i + 1);
                return Ok(());
            }
            let n = buf.len();
            self.client.consume(n);
        }
    }

    /// The client sent nothing of `what` within `timeout`: 421, the end.
    fn timed_out(&mut self, timeout: Duration, what: &str) -> End {
        info!(
            "timeout after {timeout:?} waiting for {what} from {}",
            self.ip()
        );
        let text = format!("{} Error: timeout exceeded", self.hostname());
        self.reply(Reply::new(421, "4.4.2", &text));
        End::Closed
    }

    fn shutting_down(&mut self) -> End {
        let text = format!(
            "{} Service shutting down, closing transmission channel",
            self.hostname()
        );
        self.reply(Reply::new(421, "4.3.2", &text));
        End::Closed
    }

    fn syntax_error(&mut self, r: Reply) {
        self.errors += 1;
        self.reply(r);
    }

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
            Command::Helo(name) => {
                self.reset_tx().await;
                self.helo = Some(name);
                self.esmtp = false;
                let host = self.hostname().to_string();
                self.reply(Reply::plain(250, &host));
            }
            Command::Starttls => return self.starttls().await,
            Command::Auth(mech, initial) => return self.auth(&mech, initial).await,
            Command::Reload(creds) => return self.admin("reload", creds).await,
            Command::Shutdown(creds) => return self.admin("stop", creds).await,
            Command::Ehlo(name) => {
                self.reset_tx().await;
                self.helo = Some(name);
                self.esmtp = true;
                let max = self.ctx.config.proxy.max_message_size.0;
                let mut lines = vec![
                    self.hostname().to_string(),
                    "PIPELINING".into(),
                    format!("SIZE {max}"),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                ];
                if self.ctx.tls.is_some() && !self.tls {
                    lines.push("STARTTLS".into());
                }
                if self.auth_offered() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                self.reply(Reply {
                    code: 250,
                    enhanced: None,
                    lines,
                });
            }
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

    fn mail(&mut self, from: Path, params: Vec<Param>) {
        if self.helo.is_none() {
            return self.syntax_error(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return self.syntax_error(Reply::new(503, "5.5.1", "Error: nested MAIL command"));
        }
        let max = self.ctx.config.proxy.max_message_size.0;
        for p in &params {
            match (p.name.as_str(), p.value.as_deref()) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(n) if n > max => {
                        return self.reply(Reply::new(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed limit",
                        ))
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return self.syntax_error(Reply::new(501, "5.5.4", "Bad SIZE parameter"))
                    }
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                // RFC 4954 §5: the submitter's identity, `<>` when unknown.
                // Accepted where AUTH is offered (and after one), never
                // passed on: the backend behaves as if it were `<>`.
                ("AUTH", Some(v)) if self.login.is_some() || self.auth_offered() => {
                    if !auth_param_ok(v) {
                        return self.syntax_error(Reply::new(
                            501,
                            "5.5.4",
                            "Bad AUTH parameter syntax",
                        ));
                    }
                }
                _ => {
                    return self.syntax_error(Reply::new(
                        555,
                        "5.5.4",
                        &format!("Unsupported option: {}", p.name),
                    ))
                }
            }
        }
        self.tx = Some(Tx {
            from,
            params,
            recipients: Vec::new(),
            route: None,
            backend_mail: false,
            accepted: 0,
            rcpts: 0,
            update: false,
            data_ahead: None,
            lost: false,
        });
        let timeout = self.ctx.config.proxy.command_timeout.0;
        self.progress_deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + timeout);
        self.reply(Reply::new(250, "2.1.0", "Ok"));
    }

    /// Counts a junk command (RSET, NOOP, VRFY, HELP); over
    /// [`MAX_JUNK_COMMANDS`] since the last accepted message, `421 4.7.0`
    /// and the end of the session, as Postfix's `smtpd_junk_command_limit`
    /// (which counts errors from there): a client that repeats them — or
    /// pipelines MAIL, RCPT, RSET without end — is not held for ever.
    fn junk_command(&mut self) -> Result<(), End> {
        self.junk += 1;
        if self.junk <= MAX_JUNK_COMMANDS {
            return Ok(());
        }
        warn!("too many junk commands from {}", self.ip());
        self.counts.add(Counter::Rejected(Rejection::Syntax), 1);
        let text = format!("{} Error: too many junk commands", self.hostname());
        self.reply(Reply::new(421, "4.7.0", &text));
        Err(End::Closed)
    }

    /// The transaction made no progress by its deadline (see
    /// `Session::progress_deadline`): 421, the end.
    fn no_progress(&mut self) -> End {
        let timeout = self.ctx.config.proxy.command_timeout.0;
        info!(
            "no message from {} within {timeout:?} of its first MAIL: closing",
            self.ip()
        );
        let text = format!(
            "{} Error: timeout exceeded, no message completed",
            self.hostname()
        );
        self.reply(Reply::new(421, "4.4.2", &text));
        End::Closed
    }

    async fn rcpt(&mut self, to: Path, params: Vec<Param>) {
        let max_rcpts = self.ctx.config.proxy.max_recipients;
        let is_update = self.is_update_address(&to);
        let Some(tx) = self.tx.as_mut() else {
            return self.syntax_error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
        };
        if tx.rcpts >= max_rcpts {
            return self.reply(Reply::new(452, "4.5.3", "Error: too many recipients"));
        }
        tx.rcpts += 1;
        if tx.lost {
            return self.reply(lost_transaction());
        }
        if let Some(p) = params.first() {
            let text = format!("Unsupported option: {}", p.name);
            return self.syntax_error(Reply::new(555, "5.5.4", &text));
        }
        if is_update {
            return self.update_rcpt(&to);
        }
        if tx.update {
            // An update mail travels alone (SPEC §7): this one waits for the next transaction.
            return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        let tx_route = tx.route.clone();
        if let Err(e) = self.check_client().await {
            warn!("cannot look up the relay lists for {}: {e}", self.ip());
            let text = format!("<{to}>: Temporary lookup failure");
            return self.reply(Reply::new(451, "4.3.0", &text));
        }
        let route = match &to {
            // A relay client's recipients all go to its server, whatever the domain.
            _ if self.relay.is_some() => self.relay.clone().expect("checked just above"),
            Path::Mailbox(m) => {
                let Some(domain) = m.routing_domain() else {
                    return self.relay_denied(&to);
                };
                match self
                    .ctx
                    .router
                    .route_domain(&self.sid, self.ip(), &domain)
                    .await
                {
                    Ok(Lookup::Found(r)) => r,
                    Ok(Lookup::NotFound) => return self.relay_denied(&to),
                    Err(e) => {
                        warn!("cannot route <{to}>: {e}");
                        let text = format!("<{to}>: Temporary lookup failure");
                        return self.reply(Reply::new(451, "4.3.0", &text));
                    }
                }
            }
            Path::Postmaster => match tx_route.clone() {
                Some(r) => r,
                None => {
                    let text = "<Postmaster>: Recipient address rejected: give a domain (postmaster@domain)";
                    return self.reply(Reply::new(550, "5.1.1", text));
                }
            },
            Path::Null => return self.relay_denied(&to),
        };
        if let Some(current) = &tx_route {
            if !same_server(current, &route) {
                // RFC 5321 §4.5.3.1.10: the sender retries this one in a later transaction.
                debug!(
                    "<{to}> belongs to {}, transaction goes to {}",
                    route.name, current.name
                );
                return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            }
        }
        // Policy (SPEC §8) for mail from the internet only: relay clients
        // chose their server themselves.
        if self.relay.is_none() {
            if let Some(refusal) = self.policy_check(&to).await {
                return self.reply(refusal);
            }
        }
        if let Err(e) = self.ensure_backend(&route, false).await {
            return self.temp_failure(&route, e);
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.route = Some(route.clone());
        }
        // A prepared connection that went stale after it was taken fails
        // at its first exchange: the group goes once more, on a connection
        // of the session's own (nothing of it was accepted on the old one).
        let mut retried = false;
        let (need_mail, data_ahead, replies) = loop {
            // MAIL is replayed to the backend once, at the first recipient it
            // will see; with PIPELINING, MAIL and RCPT travel in one group.
            let need_mail = !self.tx.as_ref().is_some_and(|t| t.backend_mail);
            let rcpt_line = format!("RCPT TO:<{to}>");
            let mail_line = self.mail_line();
            let mut lines: Vec<&str> = if need_mail {
                vec![&mail_line, &rcpt_line]
            } else {
                vec![&rcpt_line]
            };
            // The client pipelined DATA right behind this RCPT (and nothing
            // after it): it travels in the same group, as Postfix's smtp
            // client sends it, saving the backend a round trip. Its reply
            // waits in the transaction for the client's DATA, which comes next.
            let data_ahead = self.backend.as_ref().is_some_and(|b| b.caps.pipelining)
                && self.client.buffer().eq_ignore_ascii_case(b"DATA\r\n");
            if data_ahead {
                lines.push("DATA");
            }
            let replies = match self.backend.as_mut() {
                Some(b) => b.pipeline(&lines).await,
                None => Err(BackendError::Protocol("no backend connection")),
            };
            match replies {
                Err(BackendError::Io(_) | BackendError::Protocol(_))
                    if self.adopted && !retried =>
                {
                    debug!(
                        "prepared connection to {} went stale: connecting anew",
                        route.name
                    );
                    retried = true;
                    self.backend = None;
                    if let Err(e) = self.ensure_backend(&route, true).await {
                        return self.temp_failure(&route, e);
                    }
                }
                replies => break (need_mail, data_ahead, replies),
            }
        };
        self.adopted = false;
        let mut replies = match replies {
            Ok(r) => r.into_iter(),
            Err(e) => return self.temp_failure(&route, e),
        };
        if need_mail {
            let Some(r) = replies.next() else {
                return self.temp_failure(&route, BackendError::Protocol("no reply to MAIL"));
            };
            if !r.is_ok() {
                info!(
                    sender = %self.tx.as_ref().map(|t| t.from.to_string()).unwrap_or_default(),
                    server = %route.name,
                    reply = %r.summary(),
                    "backend {} refused MAIL: {}",
                    route.name,
                    r.summary()
                );
                // A pipelined RCPT's reply (a 503, surely) is dropped with it.
                return self.relay(&r);
            }
            if let Some(tx) = self.tx.as_mut() {
                tx.backend_mail = true;
            }
        }
        match replies.next() {
            Some(r) => {
                if r.is_ok() {
                    if let Some(tx) = self.tx.as_mut() {
                        tx.accepted += 1;
                        tx.recipients.push(to.to_string());
                    }
                }
                self.relay(&r);
            }
            None => self.temp_failure(&route, BackendError::Protocol("no reply to RCPT")),
        }
        if data_ahead {
            match (replies.next(), self.tx.as_mut()) {
                (Some(r), Some(tx)) => tx.data_ahead = Some(r),
                _ => self.temp_failure(&route, BackendError::Protocol("no reply to DATA")),
            }
        }
        // The task starts once this session waits for its client again.
        if let Some(route) = self.refill_due.take() {
            let hostname = self.hostname().to_string();
            self.ctx.prepared.refill(&route, &hostname);
        }
    }

    /// A DATA sent ahead that the client's DATA will not use: if the backend
    /// took it (354), it now reads everything as the message, so the
    /// connection is dropped (the backend discards an unfinished message).
    /// Only a defence: the client's next command is that DATA.
    fn abandon_data_ahead(&mut self) {
        let Some(ahead) = self.tx.as_mut().and_then(|t| t.data_ahead.take()) else {
            return;
        };
        if ahead.code == 354 {
            self.lose_backend();
        }
    }

    /// Drops the backend connection; whatever it accepted of the current
    /// transaction is gone with it (see `Tx::lost`).
    fn lose_backend(&mut self) {
        self.backend = None;
        if let Some(tx) = self.tx.as_mut() {
            tx.lost |= tx.accepted > 0;
            tx.backend_mail = false;
            tx.accepted = 0;
            tx.recipients.clear();
        }
    }

    fn relay_denied(&mut self, to: &Path) {
        warn!(
            sender = %self.tx.as_ref().map(|t| t.from.to_string()).unwrap_or_default(),
            recipient = %to,
            reply = "554 5.7.1",
            "no server found for rcpt {to}"
        );
        self.counts.add(Counter::RelayDenied, 1);
        let text = format!("<{to}>: Relaying denied");
        self.reply(Reply::new(554, "5.7.1", &text));
    }

    /// The one place where backend trouble becomes a reply: always 4xx, and the
    /// backend connection (whose state is now unknown) is dropped.
    fn temp_failure(&mut self, route: &Route, e: BackendError) {
        warn!(
            server = %route.name,
            reply = "451 4.4.1",
            "backend {} ({}:{}): {e}",
            route.name,
            route.host,
            route.port
        );
        self.lose_backend();
        self.reply(Reply::new(
            451,
            "4.4.1",
            "Service unavailable: the mail server is not reachable, try again later",
        ));
    }

    /// The MAIL command replayed to the backend, with the parameters it supports.
    fn mail_line(&self) -> String {
        let Some(tx) = &self.tx else {
            return "MAIL FROM:<>".into();
        };
        let caps = self
            .backend
            .as_ref()
            .map(|b| b.caps.clone())
            .unwrap_or_default();
        let mut line = format!("MAIL FROM:<{}>", tx.from);
        for p in &tx.params {
            let keep = match p.name.as_str() {
                "SIZE" => caps.size,
                "BODY" => caps.eightbit,
                _ => false,
            };
            if keep {
                line.push(' ');
                line.push_str(&p.name);
                if let Some(v) = &p.value {
                    line.push('=');
                    line.push_str(v);
                }
            }
        }
        line
    }

    async fn backend_command(&mut self, line: &str) -> Result<BackendReply, BackendError> {
        match self.backend.as_mut() {
            Some(b) => b.command(line).await,
            None => Err(BackendError::Protocol("no backend connection")),
        }
    }

    /// Makes sure the backend of `route` is connected, replacing another one.
    async fn ensure_backend(&mut self, route: &Route, fresh: bool) -> Result<(), BackendError> {
        if let Some(b) = &self.backend {
            if same_server(&b.route, route) {
                return Ok(());
            }
        }
        let hostname = self.hostname().to_string();
        if let Some(old) = self.backend.take() {
            tokio::spawn(self.ctx.prepared.clone().give_back(old, hostname.clone()));
        }
        let login = match route.cause {
            postern_shared::route::Cause::Auth => {
                self.login.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
            }
            _ => None,
        };
        let client = ClientInfo {
            peer: self.peer,
            local: self.local,
            helo: self.helo.as_deref(),
            esmtp: self.esmtp,
            login,
        };
        let health = Some(&*self.ctx.health);
        let prepared = if fresh {
            None
        } else {
            self.ctx.prepared.take(route)
        };
        self.adopted = prepared.is_some();
        let b = match prepared {
            Some(mut b) => match b.adopt(route, &hostname, &client).await {
                Ok(()) => b,
                // It went stale between the check and now: a connection of
                // its own, as if there had been none.
                Err(e @ (BackendError::Io(_) | BackendError::Protocol(_))) => {
                    debug!("prepared connection to {} failed: {e}", route.name);
                    self.adopted = false;
                    Backend::connect(route, &hostname, &client, health).await?
                }
                Err(e) => return Err(e),
            },
            None => Backend::connect(route, &hostname, &client, health).await?,
        };
        // This server receives mail: have a connection ready for the next
        // session — once this RCPT is answered (see rcpt), so that preparing
        // it does not compete with this session's own exchange.
        self.refill_due = Some(route.clone());
        if self.forwarded_to != Some(route.server) {
            info!(
                server = %route.name,
                cause = route.cause.as_str(),
                "smtp connection forwarded from {} to {} using {}",
                self.ip(),
                route.name,
                route.cause.as_str()
            );
            self.forwarded_to = Some(route.server);
            self.counts.add(Counter::Forwarded(route.cause), 1);
        }
        self.backend = Some(b);
        Ok(())
    }

    /// Ends the transaction; the backend (if any) is reset for the next one.
    async fn reset_tx(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        if tx.backend_mail {
            let reset = match self.backend.as_mut() {
                Some(b) => b.command("RSET").await.map(|r| r.is_ok()),
                None => return,
            };
            if !matches!(reset, Ok(true)) {
                self.backend = None;
            }
        }
    }

    async fn data(&mut self) -> Result<(), End> {
        let ahead = self.tx.as_mut().and_then(|t| t.data_ahead.take());
        let Some(tx) = &self.tx else {
            self.syntax_error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
            return Ok(());
        };
        if tx.lost {
            // The whole message again later, with every recipient.
            self.tx = None;
            self.reply(lost_transaction());
            return Ok(());
        }
        if tx.accepted == 0 || !(tx.backend_mail || tx.update) {
            if let Some(tx) = self.tx.as_mut() {
                tx.data_ahead = ahead;
            }
            self.abandon_data_ahead();
            let Some(tx) = &self.tx else {
                return Ok(());
            };
            let r = if tx.rcpts == 0 {
                Reply::new(503, "5.5.1", "Error: need RCPT command")
            } else {
                Reply::new(554, "5.5.1", "Error: no valid recipients")
            };
            self.syntax_error(r);
            return Ok(());
        }
        if !self.client.buffer().is_empty() {
            // RFC 2920: DATA ends a pipelined group; bytes already behind it mean a
            // client that does not wait for 354 (or a smuggling attempt).
            if ahead.as_ref().is_some_and(|r| r.code == 354) {
                self.backend = None;
            }
            warn!("pipelining after DATA from {}", self.ip());
            self.counts.add(Counter::Rejected(Rejection::Syntax), 1);
            self.reply(Reply::new(
                554,
                "5.5.0",
                "Error: SMTP protocol synchronization",
            ));
            return Err(End::Closed);
        }
        if tx.update {
            return self.data_update().await;
        }
        let route = tx
            .route
            .clone()
            .expect("a transaction with accepted recipients has a route");
        let recipients = tx.recipients.join(",");
        let reply = match ahead {
            Some(r) => Ok(r),
            None => self.backend_command("DATA").await,
        };
        match reply {
            Ok(r) if r.code == 354 => {
                // The body begins: progress (data_timeout governs it now).
                self.progress_deadline = None;
                self.relay(&r)
            }
            Ok(r) => {
                self.relay(&r);
                self.reset_tx().await;
                return Ok(());
            }
            Err(e) => {
                self.temp_failure(&route, e);
                self.tx = None;
                return Ok(());
            }
        }
        self.flush().await?;
        let (scanner, backend_err) = self.receive_body(None).await?;
        let from = self
            .tx
            .take()
            .map(|t| t.from.to_string())
            .unwrap_or_default();
        if let Some(fault) = scanner.fault {
            // Never send the end marker: dropping the connection makes the backend
            // discard the partial message.
            self.backend = None;
            self.refuse_body(fault, &from);
            return Ok(());
        }
        if let Some(e) = backend_err {
            self.temp_failure(&route, e);
            return Ok(());
        }
        let done = match self.backend.as_mut() {
            Some(b) => match b.flush().await {
                Ok(()) => {
                    b.read_reply_within(DATA_DONE_TIMEOUT.max(route.timeout))
                        .await
                }
                Err(e) => Err(e),
            },
            None => Err(BackendError::Protocol("no backend connection")),
        };
        match done {
            Ok(r) => {
                info!(
                    sender = %from,
                    recipient = %recipients,
                    server = %route.name,
                    reply = %r.summary(),
                    "message from <{from}> ({} bytes) forwarded to {}: {}",
                    scanner.size,
                    route.name,
                    r.summary()
                );
                if r.is_ok() {
                    self.counts.add(Counter::Messages, 1);
                    self.counts.add(Counter::Bytes, scanner.size);
                    // As Postfix forgives a client that delivered a message.
                    self.junk = 0;
                }
                self.relay(&r);
            }
            Err(e) => self.temp_failure(&route, e),
        }
        Ok(())
    }

    /// Gives the client a large read buffer for the body (grown in place,
    /// nothing buffered is lost; memory is only touched as bytes come).
    fn grow_reader(&mut self) {
        self.client.reserve(DATA_BUFFER);
    }

    /// Reads the body up to CRLF.CRLF through the scanner. With `into`, the
    /// bytes are kept there; otherwise they stream to the backend (an error
    /// writing to it is returned, the body is still read to its end).
    async fn receive_body(
        &mut self,
        mut into: Option<&mut Vec<u8>>,
    ) -> Result<(Scanner, Option<BackendError>), End> {
        let limit = self.ctx.config.proxy.max_message_size.0;
        let timeout = self.ctx.config.proxy.data_timeout.0;
        self.grow_reader();
        let mut scanner = Scanner::new(limit);
        let mut backend_err: Option<BackendError> = None;
        let mut held_cr = false;
        loop {
            let chunk = match tokio::time::timeout(timeout, self.client.fill_buf()).await {
                Ok(Ok(c)) if !c.is_empty() => c,
                Ok(_) => {
                    info!(
                        "client {} went away during DATA; message not accepted",
                        self.ip()
                    );
                    self.backend = None;
                    self.tx = None;
                    return Err(End::Gone);
                }
                Err(_) => {
                    info!("timeout after {timeout:?} during DATA from {}", self.ip());
                    self.backend = None;
                    self.tx = None;
                    let text = format!("{} Error: timeout exceeded", self.hostname());
                    self.reply(Reply::new(421, "4.4.2", &text));
                    return Err(End::Closed);
                }
            };
            let end = scanner.scan(chunk);
            let n = end.unwrap_or(chunk.len());
            // A CR that ends a chunk is held back until the next byte shows it is
            // part of a CRLF: the backend never sees a bare CR, even in a message
            // that is then aborted.
            let hold = end.is_none() && chunk[n - 1] == b'\r';
            if scanner.fault.is_none() && backend_err.is_none() {
                let piece = &chunk[..n - usize::from(hold)];
                if let Some(buf) = into.as_deref_mut() {
                    if held_cr {
                        buf.push(b'\r');
                    }
                    buf.extend_from_slice(piece);
                } else if let Some(b) = self.backend.as_mut() {
                    let mut result = Ok(());
                    if held_cr {
                        result = b.write_body(b"\r").await;
                    }
                    if result.is_ok() {
                        result = b.write_body(piece).await;
                    }
                    if let Err(e) = result {
                        backend_err = Some(e);
                    }
                }
            }
            held_cr = hold;
            self.client.consume(n);
            if end.is_some() {
                return Ok((scanner, backend_err));
            }
        }
    }

    /// The reply to a body the scanner refused.
    fn refuse_body(&mut self, fault: Fault, from: &str) {
        self.errors += 1;
        let r = match fault {
            Fault::BareLineEnd => {
                warn!(sender = %from, "refused message from <{from}>: bare CR or LF in the body");
                self.counts.add(Counter::Rejected(Rejection::Smuggling), 1);
                Reply::new(
                    550,
                    "5.5.2",
                    "Error: bare <CR> or <LF> in message; lines must end with <CR><LF>",
                )
            }
            Fault::Nul => {
                warn!(sender = %from, "refused message from <{from}>: NUL character in the body");
                self.counts.add(Counter::Rejected(Rejection::Smuggling), 1);
                Reply::new(
                    550,
                    "5.5.2",
                    "Error: NUL character in message; messages must not contain NUL",
                )
            }
            Fault::TooBig => {
                let limit = self.ctx.config.proxy.max_message_size.0;
                warn!(sender = %from, "refused message from <{from}>: larger than {limit} bytes");
                Reply::new(552, "5.3.4", "Message size exceeds fixed limit")
            }
        };
        self.reply(r);
    }
}

impl Session {
    /// Greets the client while the router counts the connection (limits
    /// across every smtpd process). The greeting does not wait for the
    /// count, and neither do HELO and EHLO: the answer arrives meanwhile, so
    /// no session waits for the router's round trip. Any other command
    /// waits for it ([`Session::settle_admission`]), and a client that says
    /// nothing (or half a line) gets the answer as soon as it comes
    /// ([`Session::read_line`]): over a limit, `421 4.7.0` and the connection
    /// is closed. `false`: the
    /// client is gone already.
    async fn greet_and_admit(&mut self) -> bool {
        let router = self.ctx.router.clone();
        let (sid, ip) = (self.sid.clone(), self.ip());
        self.admission = Some(tokio::spawn(async move {
            router
                .connect(&sid, ip, postern_shared::logging::pid(), ACCOUNTING_TIMEOUT)
                .await
        }));
        let greeting = format!("{} {}", self.hostname(), self.ctx.config.proxy.banner);
        self.reply(Reply::plain(220, &greeting));
        self.flush().await.is_ok()
    }

    /// Waits for the router's count if it has not come yet, and applies it.
    async fn settle_admission(&mut self) -> Result<(), End> {
        match self.admission.take() {
            Some(pending) => self.admit(pending.await),
            None => Ok(()),
        }
    }

    /// Applies the router's count: the client's `ip-addr` route, or over a
    /// limit a 421 and the end. No answer in time: the session goes on
    /// uncounted (accounting never refuses service).
    fn admit(
        &mut self,
        verdict: Result<Result<Admission, RouterError>, tokio::task::JoinError>,
    ) -> Result<(), End> {
        let verdict = match verdict {
            Ok(v) => v,
            Err(e) => {
                debug!("connection not counted: the request failed: {e}");
                return Ok(());
            }
        };
        match verdict {
            Ok(Admission::Allowed(route)) => {
                self.relay = route;
                self.client_checked = true;
                Ok(())
            }
            Ok(Admission::Refused(why)) => {
                self.refused = true;
                warn!("refused connection from {}: {why}", self.ip());
                self.counts.add(Counter::Rejected(Rejection::Limit), 1);
                let text = format!("{} Error: {why}", self.hostname());
                self.reply(Reply::new(421, "4.7.0", &text));
                Err(End::Closed)
            }
            Err(e) => {
                debug!("connection not counted: {e}");
                Ok(())
            }
        }
    }

    /// Looks the client's address up in the relay lists, once per session
    /// (the `ip-addr` route, which comes before `auth` and `domain`).
    async fn check_client(&mut self) -> Result<(), postern_shared::route::RouterError> {
        if self.client_checked {
            return Ok(());
        }
        if let Lookup::Found(r) = self.ctx.router.route_client(&self.sid, self.ip()).await? {
            self.relay = Some(r);
        }
        self.client_checked = true;
        Ok(())
    }
}

/// The reply to RCPT and DATA in a transaction whose backend connection was
/// lost after it accepted recipients.
fn lost_transaction() -> Reply {
    Reply::new(
        451,
        "4.4.1",
        "Error: the mail server connection was lost during this transaction, send it again later",
    )
}

/// The value of MAIL's `AUTH=` (RFC 4954 §5): `<>` or an xtext
/// (RFC 3461 §4: `!`..`~` but `+` and `=`, which only `+XX` may write).
fn auth_param_ok(v: &str) -> bool {
    if v == "<>" {
        return true;
    }
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                let hex = |at: usize| {
                    b.get(at)
                        .is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                };
                if !(hex(i + 1) && hex(i + 2)) {
                    return false;
                }
                i += 3;
            }
            b'=' => return false,
            b'!'..=b'~' => i += 1,
            _ => return false,
        }
    }
    !v.is_empty()
}

fn same_server(a: &Route, b: &Route) -> bool {
    a.server == b.server && a.host == b.host && a.port == b.port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_parameter_values() {
        for ok in ["<>", "alice@example.org", "e+3Dmc2@example.com", "x"] {
            assert!(auth_param_ok(ok), "{ok}");
        }
        for bad in ["", "a=b", "a+3", "a+zz", "a b", "caf\u{e9}"] {
            assert!(!auth_param_ok(bad), "{bad}");
        }
    }
}
