//! The back side of a session: one SMTP client connection to a backend server.
//!
//! [`Backend::connect`] does, in order, each step within the route's timeout:
//! 1. TCP connect (TCP_NODELAY);
//! 2. `proxy-v1` / `proxy-v2`: the HAProxy PROXY header, before anything else;
//! 3. read the 220 greeting;
//! 4. `EHLO <proxy hostname>` (`HELO` if EHLO is refused), noting the
//!    backend's capabilities;
//! 5. `ipaddr`: `IPADDR FROM <ip>`, whose reply is read and ignored (the
//!    seed's rule: other servers answer 500); `xclient`: Postfix's `XCLIENT`
//!    with only the attributes the backend advertised, values in xtext,
//!    expecting 220, then `EHLO` again (a backend that does not advertise
//!    XCLIENT gets nothing, and a warning is logged);
//! 6. for an auth-routed session, the client's AUTH replayed (`AUTH PLAIN`),
//!    expecting 235.
//!
//! [`Backend::prepare`] does steps 1, 3 and 4 ahead of any session (not for
//! the PROXY identities) and [`Backend::adopt`] steps 5 and 6 once a session
//! takes the connection (smtpd's prepared connections). A connection whose
//! session is over may serve a later one ([`Backend::reusable`],
//! [`Backend::recycle`]: step 4 again, then the next session's 5).
//!
//! After that the session sends commands one at a time with
//! [`Backend::command`] and relays each [`BackendReply`] verbatim.
//!
//! Every failure is a [`BackendError`]; the session turns all of them into
//! `451 4.4.1`, never a 5xx, so that the sender retries and nothing is lost.
//! [`Health`] remembers backends that keep failing: after
//! [`FAILURES_BEFORE_SKIP`] failed connections in a row a backend is skipped
//! for [`SKIP_FOR`] (the client gets its 4xx at once instead of waiting out
//! the timeout each time). Only steps 1 to 4 count: a backend that greeted
//! and answered EHLO is up, and a failure at step 5 or 6 comes from what
//! this client sent (its HELO name, its login), not from the server.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ClientIdentity;
use crate::net::unmap;
use crate::route::Route;
use crate::smtp::xtext;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufWriter};

use crate::bufread::Reader;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Longest reply line accepted from a backend.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 200;

/// What is written to a backend goes out in pieces of up to this size (a
/// body streams through it). Below glibc's 64 KB, whose frees make malloc
/// consolidate its free lists.
const WRITE_BUFFER: usize = 32 * 1024;

/// What went wrong with a backend: every kind is temporary for the client.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Could not connect, or the connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer within the server's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The backend sent something that is not an SMTP reply.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The backend refused the session (greeting, EHLO, XCLIENT or AUTH).
    #[error("refused the session: {0}")]
    Refused(String),
    /// Skipped: it failed repeatedly a moment ago.
    #[error("skipped after repeated failures, for {0:?} more")]
    Skipped(Duration),
}

/// Failed connections in a row after which a backend is skipped.
pub const FAILURES_BEFORE_SKIP: u32 = 3;
/// How long a failing backend is skipped.
pub const SKIP_FOR: Duration = Duration::from_secs(30);

/// Failures in a row, and until when the backend is skipped.
#[derive(Debug, Default, Clone)]
struct Failing {
    count: u32,
    skip_until: Option<Instant>,
    /// The server's name, for reports.
    name: String,
    /// When the first failure of this run happened (Unix seconds).
    since: u64,
}

/// Per-process memory of failing backends, keyed by host and port.
#[derive(Default)]
pub struct Health {
    failing: Mutex<HashMap<(String, u16), Failing>>,
}

impl Health {
    /// How much longer `route`'s backend is skipped, if it is.
    fn skipped(&self, route: &Route) -> Option<Duration> {
        let map = self.failing.lock().ok()?;
        let f = map.get(&(route.host.clone(), route.port))?;
        f.skip_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
    }

    fn record(&self, route: &Route, ok: bool) {
        let Ok(mut map) = self.failing.lock() else {
            return;
        };
        let key = (route.host.clone(), route.port);
        if ok {
            if map
                .remove(&key)
                .is_some_and(|f| f.count >= FAILURES_BEFORE_SKIP)
            {
                tracing::info!("backend {} is reachable again", route.name);
            }
            return;
        }
        let entry = map.entry(key).or_insert_with(|| Failing {
            name: route.name.clone(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            ..Failing::default()
        });
        entry.count += 1;
        if entry.count >= FAILURES_BEFORE_SKIP {
            entry.skip_until = Some(Instant::now() + SKIP_FOR);
            tracing::warn!(
                "backend {} failed {} times in a row: skipping it for {SKIP_FOR:?}",
                route.name,
                entry.count
            );
        }
    }
}

impl Health {
    /// Failing backends as attribute values, `name|failures|since|skipped-seconds`,
    /// sorted; what smtpd reports to the master for `postern status`.
    pub fn report(&self) -> Vec<String> {
        let Ok(map) = self.failing.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out: Vec<String> = map
            .values()
            .map(|f| {
                let left = f
                    .skip_until
                    .and_then(|u| u.checked_duration_since(now))
                    .map_or(0, |d| d.as_secs());
                format!(
                    "{}|{}|{}|{left}",
                    f.name.replace('|', "/"),
                    f.count,
                    f.since
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// What a backend may learn about the client (SPEC §5).
pub struct ClientInfo<'a> {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The address and port the client connected to.
    pub local: SocketAddr,
    /// The client's HELO/EHLO argument.
    pub helo: Option<&'a str>,
    /// The client said EHLO.
    pub esmtp: bool,
    /// AUTH credentials to replay (auth-routed sessions).
    pub login: Option<(&'a str, &'a str)>,
}

/// One reply from a backend: its code and its exact lines, CRLF-terminated.
#[derive(Debug, Clone)]
pub struct BackendReply {
    /// The three-digit code.
    pub code: u16,
    /// The reply as it arrived (bare LF line ends normalized to CRLF).
    pub raw: Vec<u8>,
}

impl BackendReply {
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// First line without the code, for logs.
    pub fn summary(&self) -> String {
        let first = self.raw.split(|&b| b == b'\n').next().unwrap_or_default();
        String::from_utf8_lossy(first).trim_end().to_string()
    }

    fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.raw
            .split(|&b| b == b'\n')
            .filter(|l| l.len() >= 4)
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
    }
}

/// What the backend advertised in its EHLO reply.
#[derive(Debug, Clone, Default)]
pub struct Caps {
    /// `SIZE`.
    pub size: bool,
    /// `8BITMIME`.
    pub eightbit: bool,
    /// `PIPELINING` (RFC 2920): commands may be sent in groups.
    pub pipelining: bool,
    /// The attributes after `XCLIENT`, upper-cased; `None` when not advertised.
    pub xclient: Option<Vec<String>>,
}

/// A connected backend session, ready for MAIL.
pub struct Backend {
    /// The route this connection serves.
    pub route: Route,
    /// What the backend supports.
    pub caps: Caps,
    r: Reader<OwnedReadHalf>,
    /// Buffered writer to the backend; DATA streams through it.
    w: BufWriter<OwnedWriteHalf>,
    /// Replies owed for commands sent but not waited for (`IPADDR FROM` to a
    /// pipelining backend): read and dropped before the next reply.
    skip: u32,
    /// When the connection was opened.
    born: Instant,
    /// Client sessions it served (see [`Backend::recycle`]).
    sessions: u32,
    /// The backend said 354: it reads a message body until its final reply
    /// is read.
    in_body: bool,
    /// The backend said 421: it is closing the connection.
    closing: bool,
    /// An AUTH was replayed on it: it belongs to that client.
    authenticated: bool,
    /// The identity forwarded on it so far (`None`: none yet).
    identity: Option<ClientIdentity>,
    /// The reply line being read, kept between replies.
    line: Vec<u8>,
    /// Error replies (4xx, 5xx) since the last message the backend accepted:
    /// servers hold them against the connection (Postfix slows down after
    /// 10, closes at 20), so a connection with more than
    /// [`MAX_ERRORS_TO_REUSE`] serves no other client.
    errors: u32,
    /// Whether the backend accepted an IPADDR FROM on this connection
    /// (`Some(false)`: it refused every one so far).
    ipaddr_accepted: Option<bool>,
}

/// Error replies since the last accepted message above which a connection
/// is not reused ([`Backend::reusable`]): an IPADDR FROM refused by a server
/// that does not know it, and a refused recipient or two.
pub const MAX_ERRORS_TO_REUSE: u32 = 3;

/// Client sessions one backend connection serves at most, one after the
/// other ([`Backend::recycle`]).
pub const MAX_SESSIONS_PER_CONNECTION: u32 = 100;
/// Age after which a backend connection serves no new session (Postfix's
/// `smtp_connection_reuse_time_limit`).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

impl Backend {
    /// Connects and prepares the backend session (see the module description).
    pub async fn connect(
        route: &Route,
        hostname: &str,
        client: &ClientInfo<'_>,
        health: Option<&Health>,
    ) -> Result<Backend, BackendError> {
        if let Some(left) = health.and_then(|h| h.skipped(route)) {
            return Err(BackendError::Skipped(left));
        }
        // Health says whether the backend answers: connected, greeted and
        // EHLO'd. What fails after that (the client's identity, its AUTH)
        // depends on this client's input, and one client must not get the
        // server skipped for everybody.
        let greeted = Self::greet(route, hostname, Some(client)).await;
        if let Some(h) = health {
            h.record(route, greeted.is_ok());
        }
        let mut b = greeted?;
        b.identify(hostname, client).await?;
        Ok(b)
    }

    /// A connection greeted and EHLO'd ahead of its session, for a route
    /// whose client identity is forwarded after EHLO (`ipaddr`, `xclient`,
    /// `none`: not the PROXY header, which comes first). Its session then
    /// calls [`Backend::adopt`]. Failures are not recorded in `Health`: no
    /// client waits for this connection.
    pub async fn prepare(route: &Route, hostname: &str) -> Result<Backend, BackendError> {
        if !Self::can_prepare(route) {
            return Err(BackendError::Protocol("this identity cannot be prepared"));
        }
        Self::greet(route, hostname, None).await
    }

    /// Whether [`Backend::prepare`] applies to `route`.
    pub fn can_prepare(route: &Route) -> bool {
        matches!(
            route.identity,
            ClientIdentity::Ipaddr | ClientIdentity::Xclient | ClientIdentity::None
        )
    }

    /// Makes a prepared connection `client`'s: forwards its identity (and
    /// replays its AUTH) as [`Backend::connect`] would after EHLO. `route`
    /// replaces the one it was prepared for (same server; names and timeouts
    /// may have been reloaded since).
    ///
    /// Nothing is recorded in `Health`: with PIPELINING, `IPADDR FROM` only
    /// travels with the next group, so the connection may prove stale only
    /// then; the session then connects anew, and that connection counts.
    pub async fn adopt(
        &mut self,
        route: &Route,
        hostname: &str,
        client: &ClientInfo<'_>,
    ) -> Result<(), BackendError> {
        self.route = route.clone();
        self.identify(hostname, client).await
    }

    /// Whether this connection may serve another client session once its
    /// session is over: its identity is one said again per session
    /// (`ipaddr`, `none`: not XCLIENT, whose repetition servers treat
    /// differently, nor PROXY headers), no AUTH was replayed on it, every
    /// reply has been read and nothing is left unsent, the backend is not
    /// reading a body nor closing, it answered at most
    /// [`MAX_ERRORS_TO_REUSE`] errors since its last accepted message (one
    /// client's errors are not held against the next), and it is within
    /// [`MAX_SESSIONS_PER_CONNECTION`] and [`MAX_CONNECTION_AGE`].
    pub fn reusable(&self) -> bool {
        matches!(
            self.route.identity,
            ClientIdentity::Ipaddr | ClientIdentity::None
        ) && !self.authenticated
            && self.errors <= MAX_ERRORS_TO_REUSE
            && !self.in_body
            && !self.closing
            && self.skip == 0
            && self.w.buffer().is_empty()
            && self.r.buffer().is_empty()
            && self.sessions < MAX_SESSIONS_PER_CONNECTION
            && self.born.elapsed() < MAX_CONNECTION_AGE
    }

    /// Readies a connection whose session is over for the next one, as if
    /// it had just been prepared: `EHLO` again, which resets the backend's
    /// session state as RSET does (RFC 5321 §4.1.4). Only for a
    /// [`Backend::reusable`] one. The next session forwards its own client's
    /// identity ([`Backend::adopt`]) before anything of its own.
    pub async fn recycle(&mut self, hostname: &str) -> Result<(), BackendError> {
        if !self.reusable() {
            return Err(BackendError::Protocol("connection not reusable"));
        }
        self.hello(hostname).await
    }

    /// Whether a connection from the pool may serve a session of `route`:
    /// one that forwarded an identity already forwards the same kind, and a
    /// reused one is still within its count and age limits.
    pub fn fits(&self, route: &Route) -> bool {
        self.identity.is_none_or(|i| i == route.identity)
            && self.sessions < MAX_SESSIONS_PER_CONNECTION
            && self.born.elapsed() < MAX_CONNECTION_AGE
    }

    /// Whether it served a session already (it came back to the pool).
    pub fn reused(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether a connection that waited unused is still fit: the backend has
    /// not closed it nor said anything (a timeout's 421) meanwhile. Checked
    /// without waiting.
    pub fn still_fresh(&mut self) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        matches!(
            tokio::io::AsyncBufRead::poll_fill_buf(std::pin::Pin::new(&mut self.r), &mut cx),
            std::task::Poll::Pending
        )
    }

    /// Connects, sends the PROXY header if the route wants one (only with a
    /// client), reads the greeting and says EHLO.
    async fn greet(
        route: &Route,
        hostname: &str,
        client: Option<&ClientInfo<'_>>,
    ) -> Result<Backend, BackendError> {
        let t = route.timeout;
        let stream = tokio::time::timeout(t, TcpStream::connect((route.host.as_str(), route.port)))
            .await
            .map_err(|_| BackendError::Timeout(t))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut b = Backend {
            route: route.clone(),
            caps: Caps::default(),
            skip: 0,
            born: Instant::now(),
            sessions: 0,
            in_body: false,
            closing: false,
            authenticated: false,
            identity: None,
            line: Vec::with_capacity(128),
            errors: 0,
            ipaddr_accepted: None,
            r: Reader::with_capacity(8192, r),
            w: BufWriter::with_capacity(WRITE_BUFFER, w),
        };
        match (route.identity, client) {
            (ClientIdentity::ProxyV1, Some(client)) => {
                b.w.write_all(proxy_v1(client.peer, client.local).as_bytes())
                    .await?;
                b.w.flush().await?;
            }
            (ClientIdentity::ProxyV2, Some(client)) => {
                b.w.write_all(&proxy_v2(client.peer, client.local)).await?;
                b.w.flush().await?;
            }
            _ => {}
        }
        let greeting = b.read_reply().await?;
        if greeting.code != 220 {
            return Err(BackendError::Refused(greeting.summary()));
        }
        b.hello(hostname).await?;
        Ok(b)
    }

    /// Forwards the client's identity after EHLO, then replays its AUTH.
    async fn identify(
        &mut self,
        hostname: &str,
        client: &ClientInfo<'_>,
    ) -> Result<(), BackendError> {
        let b = self;
        let route = b.route.clone();
        b.identity = Some(route.identity);
        b.sessions += 1;
        match route.identity {
            ClientIdentity::Ipaddr => {
                // The seed's command; any reply (even 500 from a server that does not
                // know it) is read and ignored — with PIPELINING, without waiting
                // for it: it travels with the next command.
                let line = format!("IPADDR FROM {}", unmap(client.peer.ip()));
                if b.caps.pipelining {
                    b.w.write_all(line.as_bytes()).await?;
                    b.w.write_all(b"\r\n").await?;
                    b.skip += 1;
                } else {
                    let r = b.command(&line).await?;
                    b.check_ipaddr_reply(r.code)?;
                }
            }
            ClientIdentity::Xclient => match b.caps.xclient.clone() {
                Some(attrs) => {
                    let line = xclient_command(&attrs, client);
                    let r = b.command(&line).await?;
                    if r.code != 220 {
                        return Err(BackendError::Refused(r.summary()));
                    }
                    // XCLIENT resets the session to the greeting stage.
                    b.hello(hostname).await?;
                }
                None => tracing::warn!(
                    "backend {} does not offer XCLIENT: the client's identity is not forwarded",
                    route.name
                ),
            },
            ClientIdentity::None | ClientIdentity::ProxyV1 | ClientIdentity::ProxyV2 => {}
        }
        if let Some((user, password)) = client.login {
            b.authenticated = true;
            let token = crate::base64::encode(format!("\0{user}\0{password}").as_bytes());
            let r = b.command(&format!("AUTH PLAIN {token}")).await?;
            if r.code != 235 {
                return Err(BackendError::Refused(format!(
                    "AUTH replay: {}",
                    r.summary()
                )));
            }
        }
        Ok(())
    }

    /// EHLO (or HELO when EHLO is refused); records the capabilities.
    async fn hello(&mut self, hostname: &str) -> Result<(), BackendError> {
        self.caps = Caps::default();
        let ehlo = self.command(&format!("EHLO {hostname}")).await?;
        if ehlo.is_ok() {
            for line in ehlo.lines().skip(1) {
                let mut words = line[4..].split(|&b| b == b' ');
                let keyword = words.next().unwrap_or_default();
                let is = |k: &[u8]| keyword.eq_ignore_ascii_case(k);
                if is(b"SIZE") {
                    self.caps.size = true;
                } else if is(b"8BITMIME") {
                    self.caps.eightbit = true;
                } else if is(b"PIPELINING") {
                    self.caps.pipelining = true;
                } else if is(b"XCLIENT") {
                    let attrs = words.map(|w| String::from_utf8_lossy(w).to_ascii_uppercase());
                    self.caps.xclient = Some(attrs.collect());
                }
            }
            return Ok(());
        }
        let helo = self.command(&format!("HELO {hostname}")).await?;
        if helo.is_ok() {
            Ok(())
        } else {
            Err(BackendError::Refused(helo.summary()))
        }
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<BackendReply, BackendError> {
        self.send(&[line]).await?;
        self.read_reply().await
    }

    /// Writes `lines` (CRLF added to each) and flushes them, within the
    /// route's timeout: a backend that stops reading does not hold the
    /// session for ever.
    async fn send(&mut self, lines: &[&str]) -> Result<(), BackendError> {
        let t = self.route.timeout;
        let w = &mut self.w;
        let write = async {
            for line in lines {
                w.write_all(line.as_bytes()).await?;
                w.write_all(b"\r\n").await?;
            }
            w.flush().await
        };
        tokio::time::timeout(t, write)
            .await
            .map_err(|_| BackendError::Timeout(t))??;
        Ok(())
    }

    /// Writes part of a message body (buffered; see [`Backend::flush`]),
    /// each piece of up to [`WRITE_BUFFER`] bytes within the route's
    /// timeout: a large body to a slow backend that keeps reading is not cut
    /// short, one that stops reading is.
    pub async fn write_body(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let t = self.route.timeout;
        for piece in bytes.chunks(WRITE_BUFFER) {
            tokio::time::timeout(t, self.w.write_all(piece))
                .await
                .map_err(|_| BackendError::Timeout(t))??;
        }
        Ok(())
    }

    /// Sends what is buffered within the route's timeout.
    pub async fn flush(&mut self) -> Result<(), BackendError> {
        let t = self.route.timeout;
        tokio::time::timeout(t, self.w.flush())
            .await
            .map_err(|_| BackendError::Timeout(t))??;
        Ok(())
    }

    /// Reads one (possibly multi-line) reply within the route's timeout.
    pub async fn read_reply(&mut self) -> Result<BackendReply, BackendError> {
        self.read_reply_within(self.route.timeout).await
    }

    /// Reads one reply within `t`.
    pub async fn read_reply_within(&mut self, t: Duration) -> Result<BackendReply, BackendError> {
        tokio::time::timeout(t, self.read_reply_inner())
            .await
            .map_err(|_| BackendError::Timeout(t))?
    }

    /// Sends `lines` in one group when the backend allows PIPELINING (one
    /// after the other otherwise, stopping at the first refusal) and returns
    /// their replies, in order.
    pub async fn pipeline(&mut self, lines: &[&str]) -> Result<Vec<BackendReply>, BackendError> {
        if !self.caps.pipelining {
            let mut out = Vec::new();
            for line in lines {
                let r = self.command(line).await?;
                let stop = !r.is_ok();
                out.push(r);
                if stop {
                    break;
                }
            }
            return Ok(out);
        }
        self.send(lines).await?;
        let mut out = Vec::with_capacity(lines.len());
        for _ in lines {
            out.push(self.read_reply().await?);
        }
        Ok(out)
    }

    async fn read_reply_inner(&mut self) -> Result<BackendReply, BackendError> {
        while self.skip > 0 {
            self.skip -= 1;
            let r = self.read_one_reply().await?;
            self.check_ipaddr_reply(r.code)?;
        }
        self.read_one_reply().await
    }

    /// The reply to IPADDR FROM is ignored (SPEC §5: other servers answer
    /// 500), except on a reused connection whose first IPADDR FROM the
    /// backend accepted: refusing a later one would leave the previous
    /// client's address in force, so the exchange fails (and the session
    /// connects anew).
    fn check_ipaddr_reply(&mut self, code: u16) -> Result<(), BackendError> {
        let ok = (200..300).contains(&code);
        if !ok && self.ipaddr_accepted == Some(true) {
            return Err(BackendError::Protocol(
                "refused IPADDR FROM on a reused connection",
            ));
        }
        // Once one is accepted, a later refusal is never ignored.
        if ok || self.ipaddr_accepted.is_none() {
            self.ipaddr_accepted = Some(ok);
        }
        Ok(())
    }

    async fn read_one_reply(&mut self) -> Result<BackendReply, BackendError> {
        let mut raw = Vec::with_capacity(64);
        let mut line = std::mem::take(&mut self.line);
        let reply = self.read_reply_lines(&mut raw, &mut line).await;
        self.line = line;
        let code = reply?;
        if code >= 400 {
            self.errors += 1;
        } else if self.in_body {
            // A message accepted: servers forgive the errors before it.
            self.errors = 0;
        }
        // The reply after a 354 is the body's final one.
        self.in_body = code == 354;
        self.closing |= code == 421;
        Ok(BackendReply { code, raw })
    }

    /// Reads the lines of one reply into `raw` (`line`: scratch); its code.
    async fn read_reply_lines(
        &mut self,
        raw: &mut Vec<u8>,
        line: &mut Vec<u8>,
    ) -> Result<u16, BackendError> {
        let mut code = None;
        for _ in 0..MAX_REPLY_LINES {
            line.clear();
            let n = (&mut self.r)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', line)
                .await?;
            if n == 0 {
                return Err(BackendError::Protocol("connection closed"));
            }
            if line.last() != Some(&b'\n') {
                return Err(BackendError::Protocol("reply line too long"));
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) || line.contains(&b'\r')
            {
                return Err(BackendError::Protocol("malformed reply"));
            }
            let this: u16 = std::str::from_utf8(&line[..3])
                .ok()
                .and_then(|c| c.parse().ok())
                .ok_or(BackendError::Protocol("malformed reply"))?;
            if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
                return Err(BackendError::Protocol("inconsistent reply code"));
            }
            code = Some(this);
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
            match line.get(3) {
                None | Some(b' ') => return Ok(this),
                Some(b'-') => continue,
                Some(_) => return Err(BackendError::Protocol("malformed reply")),
            }
        }
        Err(BackendError::Protocol("reply has too many lines"))
    }

    /// Ends the session politely, without waiting long for the answer.
    pub async fn quit(mut self) {
        if self.in_body {
            // QUIT would be a line of the message: closing is the goodbye
            // (the backend discards the unfinished message).
            return;
        }
        // At most 2 s for the whole goodbye, writing included: a backend
        // that stopped reading does not keep the session waiting.
        let bye = async {
            self.w.write_all(b"QUIT\r\n").await?;
            self.w.flush().await?;
            self.read_reply_inner().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), bye).await;
        // Closing sends the FIN: no shutdown(2) first (dropping the write
        // half would make one), the backend has said goodbye.
        self.w.into_inner().forget();
    }
}

/// Longest XCLIENT command line sent, CRLF excluded: RFC 5321's 512-octet
/// command line (§4.5.3.1.4). Postfix accepts up to its `line_length_limit`
/// (2048) and drops the connection beyond it; a client's own HELO must never
/// bring a line there.
pub const MAX_XCLIENT_LINE: usize = 510;

/// Longest HELO name forwarded: a domain has at most 255 octets (RFC 1035),
/// so a longer argument is no name, and the backend learns `[UNAVAILABLE]`.
const MAX_HELO_NAME: usize = 255;

/// `XCLIENT` with the advertised attributes only, HELO and PROTO first, ADDR
/// last. A value that would take the line past [`MAX_XCLIENT_LINE`] is sent
/// as `[UNAVAILABLE]` (the value Postfix defines for "not known"), so the
/// line always fits whatever the client said.
fn xclient_command(advertised: &[String], c: &ClientInfo<'_>) -> String {
    const UNAVAILABLE: &str = "[UNAVAILABLE]";
    let ip = unmap(c.peer.ip());
    let addr = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPV6:{v6}"),
    };
    let helo = c.helo.map(|h| {
        if h.len() > MAX_HELO_NAME {
            UNAVAILABLE.to_string()
        } else {
            xtext(h)
        }
    });
    let candidates = [
        ("HELO", helo),
        (
            "PROTO",
            Some(if c.esmtp { "ESMTP" } else { "SMTP" }.to_string()),
        ),
        ("LOGIN", c.login.map(|(u, _)| xtext(u))),
        ("NAME", Some(UNAVAILABLE.to_string())),
        ("PORT", Some(c.peer.port().to_string())),
        ("ADDR", Some(addr)),
    ];
    let sent: Vec<(&str, String)> = candidates
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .filter(|(name, _)| advertised.iter().any(|a| a == name))
        .collect();
    // Room for every attribute at its shortest ("NAME=[UNAVAILABLE]"; ADDR,
    // PORT and PROTO are short already), then the longer values in order
    // while they fit.
    let shortest = |name: &str, v: &str| 2 + name.len() + v.len().min(UNAVAILABLE.len());
    let mut room = MAX_XCLIENT_LINE
        .saturating_sub("XCLIENT".len() + sent.iter().map(|(n, v)| shortest(n, v)).sum::<usize>());
    let mut line = String::from("XCLIENT");
    for (name, value) in sent {
        let extra = value.len().saturating_sub(UNAVAILABLE.len());
        let value = if extra <= room {
            room -= extra;
            value
        } else {
            UNAVAILABLE.to_string()
        };
        line.push(' ');
        line.push_str(name);
        line.push('=');
        line.push_str(&value);
    }
    line
}

/// Both endpoints in one address family (IPv4 when both can be).
fn same_family(peer: SocketAddr, local: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (p, l) = (unmap(peer.ip()), unmap(local.ip()));
    let to_v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    let (p, l) = if p.is_ipv4() == l.is_ipv4() {
        (p, l)
    } else {
        (to_v6(p), to_v6(l))
    };
    (
        SocketAddr::new(p, peer.port()),
        SocketAddr::new(l, local.port()),
    )
}

/// The PROXY protocol v1 line.
pub fn proxy_v1(peer: SocketAddr, local: SocketAddr) -> String {
    let (p, l) = same_family(peer, local);
    let fam = if p.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {fam} {} {} {} {}\r\n",
        p.ip(),
        l.ip(),
        p.port(),
        l.port()
    )
}

/// The PROXY protocol v2 header (command PROXY, TCP over IPv4 or IPv6, no TLVs).
pub fn proxy_v2(peer: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let (p, l) = same_family(peer, local);
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x21);
    match (p.ip(), l.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&b.octets());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
            out.extend_from_slice(&b.octets());
        }
        _ => unreachable!("same_family returns one family"),
    }
    out.extend_from_slice(&p.port().to_be_bytes());
    out.extend_from_slice(&l.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn proxy_headers() {
        assert_eq!(
            proxy_v1(sa("203.0.113.5:40000"), sa("192.0.2.10:25")),
            "PROXY TCP4 203.0.113.5 192.0.2.10 40000 25\r\n"
        );
        assert_eq!(
            proxy_v1(
                sa("[::ffff:203.0.113.5]:40000"),
                sa("[::ffff:192.0.2.10]:25")
            ),
            "PROXY TCP4 203.0.113.5 192.0.2.10 40000 25\r\n"
        );
        assert_eq!(
            proxy_v1(sa("[2001:db8::5]:1"), sa("[::1]:25")),
            "PROXY TCP6 2001:db8::5 ::1 1 25\r\n"
        );
        // The worked example of research §4.5.
        let v2 = proxy_v2(sa("203.0.113.5:40000"), sa("192.0.2.10:25"));
        let expected: Vec<u8> = vec![
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11,
            0x00, 0x0C, 0xCB, 0x00, 0x71, 0x05, 0xC0, 0x00, 0x02, 0x0A, 0x9C, 0x40, 0x00, 0x19,
        ];
        assert_eq!(v2, expected);
        assert_eq!(
            proxy_v2(sa("[2001:db8::5]:1"), sa("127.0.0.1:25")).len(),
            52
        );
    }

    #[test]
    fn xclient_sends_only_advertised_attributes() {
        let c = ClientInfo {
            peer: sa("127.0.0.3:5555"),
            local: sa("127.0.0.1:25"),
            helo: Some("client host"),
            esmtp: true,
            login: None,
        };
        let adv: Vec<String> = ["NAME", "ADDR", "HELO"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            xclient_command(&adv, &c),
            "XCLIENT HELO=client+20host NAME=[UNAVAILABLE] ADDR=127.0.0.3"
        );
        let all: Vec<String> = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v6 = ClientInfo {
            peer: sa("[2001:db8::5]:7"),
            login: Some(("joe", "pw")),
            ..c
        };
        assert_eq!(
            xclient_command(&all, &v6),
            "XCLIENT HELO=client+20host PROTO=ESMTP LOGIN=joe NAME=[UNAVAILABLE] PORT=7 ADDR=IPV6:2001:db8::5"
        );
    }

    #[test]
    fn an_xclient_line_fits_whatever_the_client_said() {
        let all: Vec<String> = ["NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let long = "a".repeat(2000);
        let c = ClientInfo {
            peer: sa("127.0.0.3:5555"),
            local: sa("127.0.0.1:25"),
            helo: Some(&long),
            esmtp: true,
            login: None,
        };
        // Longer than a domain can be: no name at all.
        assert_eq!(
            xclient_command(&all, &c),
            "XCLIENT HELO=[UNAVAILABLE] PROTO=ESMTP NAME=[UNAVAILABLE] PORT=5555 ADDR=127.0.0.3"
        );
        // 255 octets that xtext triples: the name does not fit, the rest does.
        let specials = "+".repeat(255);
        let login = "l".repeat(300);
        let c = ClientInfo {
            helo: Some(&specials),
            login: Some((&login, "pw")),
            ..c
        };
        let line = xclient_command(&all, &c);
        assert!(line.len() <= MAX_XCLIENT_LINE, "{} octets", line.len());
        assert!(
            line.starts_with("XCLIENT HELO=[UNAVAILABLE] PROTO=ESMTP LOGIN=lll"),
            "{line}"
        );
        assert!(line.ends_with(" ADDR=127.0.0.3"), "{line}");
        // A name that fits is sent as it is.
        let name = format!("{}.example", "h".repeat(240));
        let c = ClientInfo {
            helo: Some(&name),
            login: None,
            ..c
        };
        assert!(xclient_command(&all, &c).starts_with(&format!("XCLIENT HELO={name} ")));
    }
}
