//! The IPC codec between postern's processes: Postfix-style attribute lists.
//!
//! A message is `name=value` lines ending with an empty line:
//!
//! ```text
//! request=route
//! id=7
//! sid=4F2A9C01
//! domain=one.test
//!
//! ```
//!
//! Values never hold CR, LF or NUL; a message is capped at [`MAX_MESSAGE`]
//! bytes. A binary body (a configuration, an update mail) follows a `size=N`
//! attribute as exactly N bytes after the empty line. A server announces
//! `protocol=` and `version=` in its first message. Requests carry `request=`,
//! an `id` echoed in the reply, and the session id `sid`; replies carry
//! `status=ok|notfound|reject|tempfail`. Unknown attributes are ignored.
//! Garbage from a peer is a [`ProtoError`]: the caller drops that connection,
//! never the process.

use std::future::Future;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest attribute message accepted, body excluded.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Largest body accepted after `size=`.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Errors of the attribute protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed in the middle of a message")]
    Truncated,
    /// The peer sent something that is not an attribute list.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A value to send holds CR, LF or NUL.
    #[error("attribute {0} holds a line break or NUL")]
    BadValue(String),
}

/// One attribute list.
///
/// Every name and value lives in one string, `items` marking where each
/// ends: a message costs two allocations, not two per attribute (smtpd and
/// the router exchange several per session).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// The names and values, one after the other.
    text: String,
    /// Per attribute: where its name ends and where its value ends in `text`
    /// (it starts where the previous value ended).
    items: Vec<(usize, usize)>,
    /// The body that followed a `size=` attribute, if any.
    pub body: Option<Vec<u8>>,
}

impl Attrs {
    /// An empty list.
    pub fn new() -> Self {
        Attrs::default()
    }

    /// Adds `name=value` (builder style).
    pub fn with(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.push(name, value);
        self
    }

    /// Adds `name=value`.
    pub fn push(&mut self, name: &str, value: impl std::fmt::Display) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        self.push_with(name, |text| {
            let _ = write!(text, "{value}");
        });
    }

    /// [`Attrs::push_str`], chained.
    pub fn with_str(mut self, name: &str, value: &str) -> Self {
        self.push_str(name, value);
        self
    }

    /// Adds `name=value` for a value that is text already: copied as it
    /// is, without the formatting machinery (every attribute read goes
    /// through here).
    pub fn push_str(&mut self, name: &str, value: &str) {
        self.push_with(name, |text| text.push_str(value));
    }

    /// Adds `name`, then the value `write` appends to the text.
    fn push_with(&mut self, name: &str, write: impl FnOnce(&mut String)) {
        // Room for the usual message at once (a policy question is some
        // 150 bytes in 8 attributes): no reallocation as it grows.
        if self.text.capacity() == 0 {
            self.text.reserve(256);
            self.items.reserve(8);
        }
        self.text.push_str(name);
        let name_end = self.text.len();
        write(&mut self.text);
        self.items.push((name_end, self.text.len()));
    }

    /// Attaches a body; `size=` is written on encoding.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Every attribute, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.items.iter().map(move |&(name_end, value_end)| {
            let pair = (&self.text[start..name_end], &self.text[name_end..value_end]);
            start = value_end;
            pair
        })
    }

    /// The wire form, or an error when a value cannot be carried.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let breaks = |s: &str| memchr::memchr3(b'\r', b'\n', 0, s.as_bytes()).is_some();
        // One search over every name and value for CR, LF or NUL; only when
        // there is one are the attributes searched one by one, to name the
        // first at fault.
        let any_break = breaks(&self.text);
        let mut out = Vec::with_capacity(self.text.len() + 2 * self.items.len() + 16);
        for (n, v) in self.iter() {
            if n.is_empty()
                || n == "size"
                || memchr::memchr(b'=', n.as_bytes()).is_some()
                || (any_break && (breaks(n) || breaks(v)))
            {
                return Err(ProtoError::BadValue(n.to_string()));
            }
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        if let Some(body) = &self.body {
            out.extend_from_slice(format!("size={}\n\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        } else {
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Reads one message. `Ok(None)` is a clean end of stream before any byte of a message.
///
/// A message that is already whole in the reader's buffer (the usual case:
/// a peer writes each message, or a batch of them, in one write) is parsed
/// there in one pass; anything else — a message split between reads, one
/// with a body, one with anything wrong in it — is read line by line by
/// [`read_lines`], which therefore says what is wrong.
pub async fn read<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Attrs>, ProtoError> {
    let buffered = r.fill_buf().await?;
    if buffered.is_empty() {
        return Ok(None);
    }
    if let Some((attrs, used)) = parse_buffered(buffered) {
        r.consume(used);
        return Ok(Some(attrs));
    }
    read_lines(r).await
}

/// A whole message without a body at the start of `buffered`, and how many
/// bytes it took; `None` when it is not all there, has a body or is not
/// well-formed (then [`read_lines`] reads it, or says what is wrong).
fn parse_buffered(buffered: &[u8]) -> Option<(Attrs, usize)> {
    let header_len = if buffered[0] == b'\n' {
        0
    } else {
        memchr::memmem::find(buffered, b"\n\n")? + 1
    };
    // The empty line included, as read_lines counts it.
    let used = header_len + 1;
    if used > MAX_MESSAGE {
        return None;
    }
    let header = &buffered[..header_len];
    if memchr::memchr2(b'\r', 0, header).is_some() {
        return None;
    }
    let text = std::str::from_utf8(header).ok()?;
    let mut attrs = Attrs {
        text: String::with_capacity(header_len),
        items: Vec::with_capacity(8),
        body: None,
    };
    // Every line ends with '\n', the last one included. Byte searches
    // (a `char` pattern costs several times more); '\n' and '=' are ASCII,
    // so the cuts fall on character boundaries.
    let mut rest = text;
    while let Some(end) = memchr::memchr(b'\n', rest.as_bytes()) {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let eq = memchr::memchr(b'=', line.as_bytes())?;
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        if name.is_empty() || name == "size" {
            return None;
        }
        attrs.push_str(name, value);
    }
    Some((attrs, used))
}

/// Reads one message line by line: the general path of [`read`], for a
/// message not yet whole in the buffer, with a body, or malformed.
pub async fn read_lines<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Attrs>, ProtoError> {
    let mut attrs = Attrs::new();
    let mut total = 0usize;
    let mut size: Option<usize> = None;
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        let n = (&mut *r)
            .take((MAX_MESSAGE - total + 1) as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return if total == 0 {
                Ok(None)
            } else {
                Err(ProtoError::Truncated)
            };
        }
        total += n;
        // `take` lets one byte past the cap through, to tell a message
        // that is too large from one that ends at the cap.
        if total > MAX_MESSAGE {
            return Err(ProtoError::Malformed("message too large"));
        }
        if line.last() != Some(&b'\n') {
            return Err(ProtoError::Truncated);
        }
        line.pop();
        if line.is_empty() {
            break;
        }
        let text = std::str::from_utf8(&line).map_err(|_| ProtoError::Malformed("not UTF-8"))?;
        let (name, value) = text
            .split_once('=')
            .ok_or(ProtoError::Malformed("line without ="))?;
        // What `encode` would refuse to write is refused when read: a name
        // or value with CR or NUL (found by fuzz/ipc_decode: a NUL in a
        // name passed).
        if name.is_empty()
            || memchr::memchr2(b'\r', 0, name.as_bytes()).is_some()
            || memchr::memchr2(b'\r', 0, value.as_bytes()).is_some()
        {
            return Err(ProtoError::Malformed("bad attribute"));
        }
        if name == "size" {
            let n: usize = value
                .parse()
                .map_err(|_| ProtoError::Malformed("bad size"))?;
            if n > MAX_BODY {
                return Err(ProtoError::Malformed("body too large"));
            }
            size = Some(n);
        } else {
            attrs.push_str(name, value);
        }
    }
    if let Some(n) = size {
        let mut body = vec![0u8; n];
        r.read_exact(&mut body).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ProtoError::Truncated
            } else {
                ProtoError::Io(e)
            }
        })?;
        attrs.body = Some(body);
    }
    Ok(Some(attrs))
}

/// Decodes one message from bytes in memory (a file read whole).
pub fn decode(bytes: &[u8]) -> Result<Option<Attrs>, ProtoError> {
    let mut r = bytes;
    // Reading from a slice never waits: the first poll completes.
    poll_once(read(&mut r)).unwrap_or(Err(ProtoError::Malformed("decoding did not complete")))
}

/// `fut`'s output if its first poll completes it (a read from memory).
fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let fut = std::pin::pin!(fut);
    match fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// Writes one message and flushes it. The log lines this process held back
/// ([`crate::runtime::logging::batch`]) are written first: what a process logged
/// before it spoke to another one comes before what that one logs about it.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, attrs: &Attrs) -> Result<(), ProtoError> {
    let bytes = attrs.encode()?;
    crate::runtime::logging::flush();
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// The `status=` of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Found / done.
    Ok,
    /// Looked up, and there is nothing.
    NotFound,
    /// Policy says no.
    Reject,
    /// Could not look it up; try again later.
    TempFail,
}

impl Status {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::NotFound => "notfound",
            Status::Reject => "reject",
            Status::TempFail => "tempfail",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "ok" => Status::Ok,
            "notfound" => Status::NotFound,
            "reject" => Status::Reject,
            "tempfail" => Status::TempFail,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_encode_refuses_decode_refuses() {
        for bad in [
            &b"s\0id=1\n\n"[..],
            b"sid=1\0\n\n",
            b"s\rid=1\n\n",
            b"=1\n\n",
            b"sid\n\n",
        ] {
            assert!(
                matches!(decode(bad), Err(ProtoError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let ok = decode(b"sid=a=b\n\n").expect("decodes").expect("a message");
        assert_eq!(ok.get("sid"), Some("a=b"));
        assert_eq!(
            decode(&ok.encode().expect("encodes")).expect("decodes"),
            Some(ok)
        );
    }

    #[tokio::test]
    async fn round_trip_with_body() {
        let msg = Attrs::new()
            .with("request", "config")
            .with("id", 3)
            .with_body(b"a\r\nb\n\n".to_vec());
        let bytes = msg.encode().expect("encodes");
        assert_eq!(bytes, b"request=config\nid=3\nsize=6\n\na\r\nb\n\n");
        let mut r = &bytes[..];
        let back = read(&mut r).await.expect("reads").expect("one message");
        assert_eq!(back, msg);
        assert!(read(&mut r).await.expect("clean eof").is_none());
    }

    #[tokio::test]
    async fn golden_garbage() {
        for (input, why) in [
            (&b"no equals sign\n\n"[..], "line without ="),
            (b"=x\n\n", "bad attribute"),
            (b"size=zz\n\n", "bad size"),
        ] {
            let mut r = input;
            match read(&mut r).await {
                Err(ProtoError::Malformed(m)) => assert_eq!(m, why),
                other => panic!("{input:?}: {other:?}"),
            }
        }
        let mut r = &b"a=b\n"[..];
        assert!(matches!(read(&mut r).await, Err(ProtoError::Truncated)));
        let big = vec![b'a'; MAX_MESSAGE + 10];
        let mut r = &big[..];
        assert!(matches!(read(&mut r).await, Err(ProtoError::Malformed(_))));
    }

    /// Reads `bytes` one byte per read: the line-by-line path only.
    fn read_byte_by_byte(bytes: &[u8]) -> Result<Option<Attrs>, ProtoError> {
        let mut r = tokio::io::BufReader::with_capacity(1, bytes);
        poll_once(read(&mut r)).expect("a slice never waits")
    }

    #[test]
    fn a_buffered_message_reads_as_line_by_line() {
        for input in [
            &b"request=route\nid=7\nsid=4F2A9C01\ndomain=one.test\n\nid=8\n\n"[..],
            b"\n",
            b"a=\n=b\n\n",
            b"a=b=c\nd=\xc3\xa9\n\n",
            b"a=\xff\n\n",
            b"a=b\rc\n\n",
            b"a\0=b\n\n",
            b"no equals\n\n",
            b"size=3\n\nabc",
            b"a=b\nsize=x\n\n",
            b"a=b\n",
            b"a=b\n\n\n",
        ] {
            let fast = decode(input);
            let slow = read_byte_by_byte(input);
            assert_eq!(
                format!("{fast:?}"),
                format!("{slow:?}"),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Two messages in one buffer: the first read takes only the first.
        let mut r = &b"a=1\n\nb=2\n\n"[..];
        let first = poll_once(read(&mut r))
            .expect("a slice never waits")
            .expect("reads")
            .expect("a message");
        assert_eq!(first.get("a"), Some("1"));
        assert_eq!(r, b"b=2\n\n");
        // At the cap and one byte over it, both ways.
        for len in [MAX_MESSAGE, MAX_MESSAGE + 1] {
            let mut big = b"a=".to_vec();
            big.resize(len - 2, b'x');
            big.extend_from_slice(b"\n\n");
            let fast = decode(&big);
            assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", read_byte_by_byte(&big)),
            );
            assert_eq!(fast.is_ok(), len == MAX_MESSAGE, "{len}");
        }
    }

    #[test]
    fn decodes_from_memory() {
        let bytes = Attrs::new()
            .with("a", "b")
            .with_body(b"xyz".to_vec())
            .encode()
            .expect("encode");
        let back = decode(&bytes).expect("decode").expect("message");
        assert_eq!(back.get("a"), Some("b"));
        assert_eq!(back.body.as_deref(), Some(&b"xyz"[..]));
        assert!(matches!(decode(b"a=b\n"), Err(ProtoError::Truncated)));
    }

    #[test]
    fn refuses_values_with_line_breaks() {
        for (msg, named) in [
            (
                Attrs::new().with("id", 1).with("domain", "a\nrequest=evil"),
                "domain",
            ),
            (Attrs::new().with("id", 1).with("x", "a\rb"), "x"),
            (Attrs::new().with("id", 1).with("n\0ul", "v"), "n\0ul"),
            (Attrs::new().with("id", 1).with("a=b", "v"), "a=b"),
            (Attrs::new().with("id", 1).with("size", 3), "size"),
            (Attrs::new().with("id", 1).with("", "v"), ""),
            (Attrs::new().with("", "v").with("x", "a\nb"), ""),
            (Attrs::new().with("x", "a\nb").with("", "v"), "x"),
        ] {
            match msg.encode() {
                Err(ProtoError::BadValue(n)) => assert_eq!(n, named),
                other => panic!("{msg:?}: {other:?}"),
            }
        }
    }
}
