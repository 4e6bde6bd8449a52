//! The back side of a session: one SMTP client connection to a backend server.
//!
//! [`Backend::connect`] does, in order and within the route's timeout: TCP
//! connect (TCP_NODELAY), read the 220 greeting, `EHLO <proxy hostname>`
//! (`HELO` if EHLO is refused), then forward the client's identity as the
//! route says (`IPADDR FROM <ip>`, whose reply is read and ignored, as the
//! seed prescribes). After that the session sends commands one at a time
//! with [`Backend::command`] and relays each [`BackendReply`] verbatim.
//!
//! Every failure is a [`BackendError`]; the session turns all of them into
//! `451 4.4.1`, never a 5xx, so that the sender retries and nothing is lost.

use std::net::SocketAddr;
use std::time::Duration;

use postern_shared::config::ClientIdentity;
use postern_shared::net::unmap;
use postern_shared::route::Route;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Longest reply line accepted from a backend.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_REPLY_LINES: usize = 200;

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
    /// The backend refused the session (greeting or EHLO not 2xx).
    #[error("refused the session: {0}")]
    Refused(String),
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    /// `SIZE`.
    pub size: bool,
    /// `8BITMIME`.
    pub eightbit: bool,
}

/// A connected backend session, ready for MAIL.
pub struct Backend {
    /// The route this connection serves.
    pub route: Route,
    /// What the backend supports.
    pub caps: Caps,
    r: BufReader<OwnedReadHalf>,
    /// Buffered writer to the backend; DATA streams through it.
    pub w: BufWriter<OwnedWriteHalf>,
}

impl Backend {
    /// Connects and prepares the backend session (see the module description).
    pub async fn connect(
        route: &Route,
        hostname: &str,
        client: SocketAddr,
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
            r: BufReader::with_capacity(8192, r),
            w: BufWriter::with_capacity(64 * 1024, w),
        };
        let greeting = b.read_reply().await?;
        if greeting.code != 220 {
            return Err(BackendError::Refused(greeting.summary()));
        }
        let ehlo = b.command(&format!("EHLO {hostname}")).await?;
        if ehlo.is_ok() {
            for line in ehlo.lines().skip(1) {
                let kw = String::from_utf8_lossy(&line[4..]).to_ascii_uppercase();
                let kw = kw.split(' ').next().unwrap_or_default().to_string();
                match kw.as_str() {
                    "SIZE" => b.caps.size = true,
                    "8BITMIME" => b.caps.eightbit = true,
                    _ => {}
                }
            }
        } else {
            let helo = b.command(&format!("HELO {hostname}")).await?;
            if !helo.is_ok() {
                return Err(BackendError::Refused(helo.summary()));
            }
        }
        match route.identity {
            ClientIdentity::Ipaddr => {
                // The seed's command; any reply (even 500 from a server that does not
                // know it) is read and ignored.
                b.command(&format!("IPADDR FROM {}", unmap(client.ip())))
                    .await?;
            }
            ClientIdentity::None => {}
            // validate() refuses the other kinds until they are implemented.
            ClientIdentity::Xclient | ClientIdentity::ProxyV1 | ClientIdentity::ProxyV2 => {
                return Err(BackendError::Protocol(
                    "identity forwarding kind not supported",
                ))
            }
        }
        Ok(b)
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<BackendReply, BackendError> {
        self.w.write_all(line.as_bytes()).await?;
        self.w.write_all(b"\r\n").await?;
        self.w.flush().await?;
        self.read_reply().await
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

    async fn read_reply_inner(&mut self) -> Result<BackendReply, BackendError> {
        let mut raw = Vec::with_capacity(64);
        let mut line = Vec::with_capacity(128);
        let mut code = None;
        for _ in 0..MAX_REPLY_LINES {
            line.clear();
            let n = (&mut self.r)
                .take(MAX_REPLY_LINE as u64)
                .read_until(b'\n', &mut line)
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
            raw.extend_from_slice(&line);
            raw.extend_from_slice(b"\r\n");
            match line.get(3) {
                None | Some(b' ') => {
                    return Ok(BackendReply { code: this, raw });
                }
                Some(b'-') => continue,
                Some(_) => return Err(BackendError::Protocol("malformed reply")),
            }
        }
        Err(BackendError::Protocol("reply has too many lines"))
    }

    /// Ends the session politely, without waiting long for the answer.
    pub async fn quit(mut self) {
        if self.w.write_all(b"QUIT\r\n").await.is_ok() && self.w.flush().await.is_ok() {
            let _ = self.read_reply_within(Duration::from_secs(2)).await;
        }
    }
}
