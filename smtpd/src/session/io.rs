//! Line I/O with the client: command lines in, replies out.
//!
//! Replies are queued in `Session::out` and written when the client has
//! nothing more in flight (its input buffer is empty), so a pipelined group
//! gets its replies in one segment, in order ([`Session::flush_if_idle`]).
//! A client that pipelines without end and never reads is bounded: replies
//! held back stop at [`MAX_HELD_REPLIES`], and a write waits at most
//! `command_timeout` ([`Session::flush`]).
//!
//! A command line is read whole, CRLF-terminated, within `command_timeout`
//! and the transaction's progress deadline ([`Session::read_line`]); while
//! the router's connection count is awaited, its answer is applied as soon
//! as it comes, even in the middle of a line. A line that is too long, ends
//! with a bare CR or LF, or is not UTF-8 is answered with a 500 here and
//! counts as an error.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use postern_shared::ipc::route::{Admission, RouterError};
use postern_shared::smtp::Reply;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tracing::{debug, info};

use super::{End, Session};
use crate::backend::ServerReply;

/// Longest command line accepted, CRLF included (Postfix's `line_length_limit`).
const MAX_COMMAND_LINE: usize = 2048;

/// The client's read buffer between messages is the reader's (4 KB,
/// allocated when the client first sends: a session that only got its
/// greeting holds none; see `postern_shared::runtime::bufread`). The read
/// buffer once a message body is coming (see [`Session::grow_reader`]);
/// below glibc's 64 KB, whose frees make malloc consolidate its free lists.
const DATA_BUFFER: usize = 32 * 1024;

/// Replies held back while pipelined commands are read (bytes).
const MAX_HELD_REPLIES: usize = 16 * 1024;

impl Session {
    /// Queues one of postern's own replies.
    pub(super) fn reply(&mut self, r: Reply) {
        if r.code >= 400 {
            debug!(reply = %r.summary(), "reply {}", r.summary());
        }
        r.write_to(&mut self.out);
    }

    /// Queues a backend's reply, verbatim.
    pub(super) fn relay(&mut self, r: &ServerReply) {
        self.out.extend_from_slice(&r.raw);
    }

    /// Queues a reply to a command the client got wrong: it counts towards
    /// the session's error limit.
    pub(super) fn syntax_error(&mut self, r: Reply) {
        self.errors += 1;
        self.reply(r);
    }

    /// Writes the queued replies. A client that reads none of them for
    /// `command_timeout` is gone (as Postfix's smtpd_timeout covers writes):
    /// its session does not hang on a full socket.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        if !self.out.is_empty() {
            let timeout = self.command_timeout();
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
    pub(super) async fn flush_if_idle(&mut self) -> Result<(), End> {
        if self.client.buffer().is_empty() || self.out.len() >= MAX_HELD_REPLIES {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Reads one command line. `Ok(None)`: a bad line was answered; read the next.
    ///
    /// A plain function: an `async fn` here would be one more layer, with
    /// its own copy of `self`, in every idle session's task.
    pub(super) fn read_command(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<String>, End>> + Send + '_ {
        let too_long = || Reply::new(500, "5.5.2", "Error: command line too long");
        self.read_line(MAX_COMMAND_LINE, too_long)
    }

    /// Reads one CRLF-terminated line of at most `limit` bytes. `Ok(None)`: a
    /// bad line (too long: `too_long`'s reply, made only then: an idle
    /// session's wait holds no reply; bare CR or LF; not UTF-8) was answered.
    #[allow(clippy::manual_async_fn)] // see `lifetime`: no argument kept twice
    pub(super) fn read_line(
        &mut self,
        limit: usize,
        too_long: fn() -> Reply,
    ) -> impl Future<Output = Result<Option<String>, End>> + Send + '_ {
        async move {
            // A stopping process lets a transaction in progress finish; a session
            // between transactions is told to come back later.
            if self.tx.is_none() && self.ctx.shutdown.is_set() && self.client.buffer().is_empty() {
                return Err(self.shutting_down());
            }
            let deadline = self.read_deadline()?;
            // Empty until bytes come: an idle session holds no line buffer.
            let mut buf = Vec::new();
            loop {
                // What this wait holds lives in every idle session's task: one
                // hand-written poll (no `select!` nor `Take`/`ReadUntil` around
                // it).
                let got = {
                    let Session {
                        admission,
                        client,
                        ctx,
                        tx,
                        out,
                        ..
                    } = &mut *self;
                    // About to wait, every reply written: the reply buffer
                    // goes until the next reply (an idle session holds none).
                    if client.buffer().is_empty() && out.is_empty() && out.capacity() > 0 {
                        *out = Vec::new();
                    }
                    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline));
                    let mut stop = std::pin::pin!(ctx.shutdown.notified());
                    // Read (in the poll) after `stop` is made: no stop missed.
                    let stopping = tx.is_none().then_some(&*ctx.shutdown);
                    let buf = &mut buf;
                    std::future::poll_fn(move |cx| {
                        // The connection count, while it is awaited, comes first:
                        // a refused client is told as soon as it is known, even
                        // in the middle of a line (see greet_and_admit).
                        if let Some(pending) = admission.as_mut() {
                            if let Poll::Ready(v) = Pin::new(pending).poll(cx) {
                                return Poll::Ready(Got::Count(v));
                            }
                        }
                        if let Poll::Ready(r) = poll_line(client, buf, limit, cx) {
                            return Poll::Ready(Got::Read(r));
                        }
                        if timer.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Got::TimedOut);
                        }
                        if let Some(stopping) = stopping {
                            if stopping.is_set() || stop.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(Got::Stop);
                            }
                        }
                        Poll::Pending
                    })
                    .await
                };
                match got {
                    Got::Count(v) => {
                        self.admission = None;
                        self.admit(v)?;
                    }
                    Got::Read(Ok(())) => break,
                    Got::Read(Err(_)) => return Err(End::Gone),
                    Got::TimedOut if self.progress_deadline.is_some_and(|d| d <= deadline) => {
                        return Err(self.no_progress())
                    }
                    Got::TimedOut => {
                        return Err(self.timed_out(self.command_timeout(), "a command"))
                    }
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
                    Err(_) => {
                        return Err(self.timed_out(self.command_timeout(), "the end of a line"))
                    }
                }
                self.reply(too_long());
                return Ok(None);
            }
            buf.pop();
            if buf.pop() != Some(b'\r') || buf.contains(&b'\r') {
                self.syntax_error(Reply::new(
                    500,
                    "5.5.2",
                    "Error: bare <CR> or <LF> received; commands end with <CR><LF>",
                ));
                return Ok(None);
            }
            match String::from_utf8(buf) {
                Ok(s) => Ok(Some(s)),
                Err(_) => {
                    self.syntax_error(Reply::new(
                        500,
                        "5.5.2",
                        "Error: command is not valid UTF-8",
                    ));
                    Ok(None)
                }
            }
        }
    }

    /// When the line being read must have come: the command timeout from
    /// now, or the progress deadline if sooner — already past: the end.
    fn read_deadline(&mut self) -> Result<tokio::time::Instant, End> {
        let now = tokio::time::Instant::now();
        // Checked before reading: a client that keeps sending never makes
        // a read wait, let alone time out.
        if self.progress_deadline.is_some_and(|d| d <= now) {
            return Err(self.no_progress());
        }
        let by_command = now + self.command_timeout();
        Ok(match self.progress_deadline {
            Some(d) => d.min(by_command),
            None => by_command,
        })
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

    /// Gives the client a large read buffer for the body (grown in place,
    /// nothing buffered is lost; memory is only touched as bytes come).
    pub(super) fn grow_reader(&mut self) {
        self.client.reserve(DATA_BUFFER);
    }

    /// The client sent nothing of `what` within `timeout`: 421, the end.
    pub(super) fn timed_out(&mut self, timeout: Duration, what: &str) -> End {
        info!(
            "timeout after {timeout:?} waiting for {what} from {}",
            self.ip()
        );
        self.close(super::reply::Failure::ClientTimeout)
    }
}

/// What ended a wait for (the rest of) a line.
enum Got {
    Read(std::io::Result<()>),
    TimedOut,
    Stop,
    Count(Result<Result<Admission, RouterError>, tokio::task::JoinError>),
}

/// Moves buffered client bytes into `buf` up to and including the first
/// LF, or until `buf` holds `limit` bytes, or the end of the stream:
/// `Ready(Ok(()))` then (`buf` tells which), `Pending` while more may come.
fn poll_line<R: AsyncBufRead + Unpin>(
    client: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    loop {
        let room = limit.saturating_sub(buf.len());
        if room == 0 {
            return Poll::Ready(Ok(()));
        }
        let available = match Pin::new(&mut *client).poll_fill_buf(cx) {
            Poll::Ready(Ok(b)) => b,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if available.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let part = &available[..available.len().min(room)];
        match part.iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&part[..=i]);
                Pin::new(&mut *client).consume(i + 1);
                return Poll::Ready(Ok(()));
            }
            None => {
                let n = part.len();
                buf.extend_from_slice(part);
                Pin::new(&mut *client).consume(n);
            }
        }
    }
}
