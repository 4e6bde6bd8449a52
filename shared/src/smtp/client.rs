//! A plain SMTP client connection to one server: connect, greeting, EHLO,
//! commands, a message body, QUIT.
//!
//! [`Client::greet`] does, in order, each step within the target's
//! timeout: TCP connect (TCP_NODELAY); a preamble if the caller has one
//! (smtpd's PROXY header, which must come before anything else); read the
//! 220 greeting; `EHLO <hostname>` (`HELO` if EHLO is refused), noting the
//! server's capabilities ([`Caps`]). Then the caller sends commands with
//! [`Client::command`] (or writes and reads them separately, for
//! pipelining) and a body with [`Client::write_body`] and
//! [`Client::flush`]. Every write and every reply is bounded by the
//! target's timeout: a server that stops reading or answering does not hold
//! its caller for ever.
//!
//! Users: the updater delivers update mails with it; smtpd's backend
//! connections (`smtpd/src/backend/`) wrap it with what only smtpd needs
//! (the client's identity, health, the connection pool).
//!
//! Every failure is a [`ClientError`]; both users treat every kind as
//! temporary (smtpd answers `451 4.4.1`, the updater retries). The
//! connection keeps what any client can know about its server's state
//! ([`Client::in_body`], [`Client::closing`], [`Client::errors`]) for its
//! user to decide whether the connection is still good.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::runtime::bufread::Reader;

/// Longest reply line accepted from a server.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 200;

/// What is written to a server goes out in pieces of up to this size (a
/// body streams through it). Below glibc's 64 KB, whose frees make malloc
/// consolidate its free lists.
const WRITE_BUFFER: usize = 32 * 1024;

/// How long QUIT may take, writing included.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What went wrong with a server: every kind is temporary for its user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect, or the connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer within the server's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server sent something that is not an SMTP reply.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The server refused the session (greeting, EHLO, XCLIENT or AUTH).
    #[error("refused the session: {0}")]
    Refused(String),
    /// Not tried: it failed repeatedly a moment ago (smtpd's backend
    /// health).
    #[error("skipped after repeated failures, for {0:?} more")]
    Skipped(Duration),
}

/// Where a client connects: a server, by name for the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's display name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connect, write and reply timeout.
    pub timeout: Duration,
}

/// One reply from a server: its code and its exact lines, CRLF-terminated.
#[derive(Debug, Clone)]
pub struct ServerReply {
    /// The three-digit code.
    pub code: u16,
    /// The reply as it arrived (bare LF line ends normalized to CRLF).
    pub raw: Vec<u8>,
}

impl ServerReply {
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

/// What the server advertised in its EHLO reply.
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

/// The `AUTH PLAIN` command line (RFC 4616, with an initial response) for
/// these credentials; for a caller that sends it itself.
pub fn auth_plain_command(user: &str, password: &str) -> String {
    let token = STANDARD.encode(format!("\0{user}\0{password}").as_bytes());
    format!("AUTH PLAIN {token}")
}

/// Whether the reply to [`auth_plain_command`] accepts the credentials (235).
pub fn auth_plain_outcome(r: &ServerReply) -> Result<(), ClientError> {
    if r.code != 235 {
        return Err(ClientError::Refused(format!(
            "AUTH replay: {}",
            r.summary()
        )));
    }
    Ok(())
}

/// A connected, greeted SMTP client session.
pub struct Client {
    /// Where it is connected; its timeout bounds every exchange (a user
    /// may replace it, for a reloaded timeout).
    pub target: Target,
    /// What the server supports (from the last EHLO).
    pub caps: Caps,
    r: Reader<OwnedReadHalf>,
    /// Buffered writer to the server; a body streams through it.
    w: BufWriter<OwnedWriteHalf>,
    /// The reply line being read, kept between replies.
    line: Vec<u8>,
    /// The server said 354: it reads a message body until its final reply
    /// is read.
    in_body: bool,
    /// The server said 421: it is closing the connection.
    closing: bool,
    /// Error replies (4xx, 5xx) since the last message the server accepted.
    errors: u32,
}

impl Client {
    /// Connects to `target`, writes `preamble` (if any) before anything
    /// else, reads the greeting and says EHLO as `hostname`.
    pub async fn greet(
        target: &Target,
        hostname: &str,
        preamble: &[u8],
    ) -> Result<Client, ClientError> {
        let t = target.timeout;
        let stream =
            tokio::time::timeout(t, TcpStream::connect((target.host.as_str(), target.port)))
                .await
                .map_err(|_| ClientError::Timeout(t))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut c = Client {
            target: target.clone(),
            caps: Caps::default(),
            line: Vec::with_capacity(128),
            in_body: false,
            closing: false,
            errors: 0,
            r: Reader::with_capacity(8192, r),
            w: BufWriter::with_capacity(WRITE_BUFFER, w),
        };
        if !preamble.is_empty() {
            c.w.write_all(preamble).await?;
            c.w.flush().await?;
        }
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused(greeting.summary()));
        }
        c.hello(hostname).await?;
        Ok(c)
    }

    /// EHLO (or HELO when EHLO is refused); records the capabilities. A
    /// later EHLO also resets the server's session as RSET does (RFC 5321
    /// §4.1.4).
    pub async fn hello(&mut self, hostname: &str) -> Result<(), ClientError> {
        self.caps = Caps::default();
        let ehlo = self.command(&["EHLO ", hostname].concat()).await?;
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
        let helo = self.command(&["HELO ", hostname].concat()).await?;
        if helo.is_ok() {
            Ok(())
        } else {
            Err(ClientError::Refused(helo.summary()))
        }
    }

    /// `AUTH PLAIN` with these credentials, expecting 235.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        let r = self.command(&auth_plain_command(user, password)).await?;
        auth_plain_outcome(&r)
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<ServerReply, ClientError> {
        self.send(&[line]).await?;
        self.read_reply().await
    }

    /// Writes `lines` (CRLF added to each) and flushes them, within the
    /// target's timeout.
    pub async fn send(&mut self, lines: &[&str]) -> Result<(), ClientError> {
        let t = self.target.timeout;
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
            .map_err(|_| ClientError::Timeout(t))??;
        Ok(())
    }

    /// Buffers a command line (CRLF added) without sending it: it travels
    /// with the next write that is flushed.
    pub async fn send_later(&mut self, line: &str) -> Result<(), ClientError> {
        self.w.write_all(line.as_bytes()).await?;
        self.w.write_all(b"\r\n").await?;
        Ok(())
    }

    /// Writes part of a message body (buffered; see [`Client::flush`]),
    /// each piece of up to [`WRITE_BUFFER`] bytes within the target's
    /// timeout: a large body to a slow server that keeps reading is not cut
    /// short, one that stops reading is.
    pub async fn write_body(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let t = self.target.timeout;
        for piece in bytes.chunks(WRITE_BUFFER) {
            tokio::time::timeout(t, self.w.write_all(piece))
                .await
                .map_err(|_| ClientError::Timeout(t))??;
        }
        Ok(())
    }

    /// Sends what is buffered within the target's timeout.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        let t = self.target.timeout;
        tokio::time::timeout(t, self.w.flush())
            .await
            .map_err(|_| ClientError::Timeout(t))??;
        Ok(())
    }

    /// Reads one (possibly multi-line) reply within the target's timeout.
    pub async fn read_reply(&mut self) -> Result<ServerReply, ClientError> {
        self.read_reply_within(self.target.timeout).await
    }

    /// Reads one reply within `t`.
    pub async fn read_reply_within(&mut self, t: Duration) -> Result<ServerReply, ClientError> {
        tokio::time::timeout(t, self.read_any_reply())
            .await
            .map_err(|_| ClientError::Timeout(t))?
    }

    /// Reads one reply, however long it takes: for a caller that bounds
    /// several reads with one timeout.
    pub async fn read_any_reply(&mut self) -> Result<ServerReply, ClientError> {
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
        Ok(ServerReply { code, raw })
    }

    /// Reads the lines of one reply into `raw` (`line`: scratch); its code.
    async fn read_reply_lines(
        &mut self,
        raw: &mut Vec<u8>,
        line: &mut Vec<u8>,
    ) -> Result<u16, ClientError> {
        let mut code = None;
        for _ in 0..MAX_REPLY_LINES {
            line.clear();
            let n = (&mut self.r)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', line)
                .await?;
            if n == 0 {
                return Err(ClientError::Protocol("connection closed"));
            }
            if line.last() != Some(&b'\n') {
                return Err(ClientError::Protocol("reply line too long"));
            }
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) || line.contains(&b'\r')
            {
                return Err(ClientError::Protocol("malformed reply"));
            }
            let this: u16 = std::str::from_utf8(&line[..3])
                .ok()
                .and_then(|c| c.parse().ok())
                .ok_or(ClientError::Protocol("malformed reply"))?;
            if !(200..600).contains(&this) || code.is_some_and(|c| c != this) {
                return Err(ClientError::Protocol("inconsistent reply code"));
            }
            code = Some(this);
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
            match line.get(3) {
                None | Some(b' ') => return Ok(this),
                Some(b'-') => continue,
                Some(_) => return Err(ClientError::Protocol("malformed reply")),
            }
        }
        Err(ClientError::Protocol("reply has too many lines"))
    }

    /// The server said 354 and its final reply to the body has not been
    /// read: it reads everything as the message.
    pub fn in_body(&self) -> bool {
        self.in_body
    }

    /// The server said 421: it is closing the connection.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Error replies (4xx, 5xx) since the last message the server accepted:
    /// servers hold them against the connection (Postfix slows down after
    /// 10, closes at 20).
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Nothing is left unsent, and nothing the server sent is left unread.
    pub fn is_idle(&self) -> bool {
        self.w.buffer().is_empty() && self.r.buffer().is_empty()
    }

    /// Whether a connection that waited unused is still fit: the server has
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

    /// Ends the session politely, without waiting long for the answer.
    pub async fn quit(self) {
        self.quit_after(0).await
    }

    /// [`Client::quit`], after reading the replies still `owed` for
    /// commands sent without waiting ([`Client::send_later`]).
    pub async fn quit_after(mut self, owed: u32) {
        if self.in_body {
            // QUIT would be a line of the message: closing is the goodbye
            // (the server discards the unfinished message).
            return;
        }
        // At most QUIT_TIMEOUT for the whole goodbye, writing included: a
        // server that stopped reading does not keep its caller waiting.
        let bye = async {
            self.w.write_all(b"QUIT\r\n").await?;
            self.w.flush().await?;
            for _ in 0..owed {
                self.read_any_reply().await?;
            }
            self.read_any_reply().await
        };
        let _ = tokio::time::timeout(QUIT_TIMEOUT, bye).await;
        // Closing sends the FIN: no shutdown(2) first (dropping the write
        // half would make one), the server has said goodbye.
        self.w.into_inner().forget();
    }
}
