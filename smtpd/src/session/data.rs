//! DATA, the session's side: the body is streamed from the client to the
//! backend through the scanner (`postern_shared::smtp::data::Scanner`), which alone
//! decides where it ends and whether it is acceptable.
//!
//! In order: DATA needs recipients the backend accepted (503 / 554
//! otherwise), and nothing pipelined behind it (`554 5.5.0`, the session
//! ends: RFC 2920, DATA ends a group); a transaction whose backend was lost
//! gets `451 4.4.1`. The backend's 354 (or its reply to a DATA sent ahead
//! with the last RCPT) is relayed, then the body streams through; a bare
//! CR or LF or a NUL refuses it (`550 5.5.2`) and the backend transaction
//! is aborted by dropping the connection, never by the end marker; the
//! backend's final reply is relayed verbatim. No body data within
//! `data_timeout` gives `421 4.4.2` (`reply.rs`). An update mail's body goes
//! to the updater instead (`update.rs`).

use std::time::Duration;

use crate::backend::ClientError;
use postern_shared::smtp::Reply;
use postern_shared::stats::{Counter, Rejection};
use tokio::io::AsyncBufReadExt;
use tracing::{info, warn};

use super::reply::Failure;
use super::{End, Session};
use postern_shared::smtp::data::{Fault, Scanner};

/// How long to wait for the backend's reply to the end of a message
/// (Postfix's `smtp_data_done_timeout`): content filters may take long.
const DATA_DONE_TIMEOUT: Duration = Duration::from_secs(600);

impl Session {
    /// DATA: the message, from the client to the backend.
    pub(super) async fn data(&mut self) -> Result<(), End> {
        let ahead = self.tx.as_mut().and_then(|t| t.data_ahead.take());
        let Some(tx) = &self.tx else {
            self.syntax_error(Reply::new(503, "5.5.1", "Error: need MAIL command"));
            return Ok(());
        };
        if tx.lost {
            // The whole message again later, with every recipient.
            self.tx = None;
            self.fail(Failure::Lost);
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
                self.fail(Failure::Backend(route, e));
                self.tx = None;
                return Ok(());
            }
        }
        self.flush().await?;
        let (scanner, backend_err) = self.receive_body(None).await?;
        let from = self.end_tx();
        if let Some(fault) = scanner.fault {
            // Never send the end marker: dropping the connection makes the backend
            // discard the partial message.
            self.backend = None;
            self.refuse_body(fault, &from);
            return Ok(());
        }
        if let Some(e) = backend_err {
            self.fail(Failure::Backend(route, e));
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
            None => Err(ClientError::Protocol("no backend connection")),
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
            Err(e) => self.fail(Failure::Backend(route, e)),
        }
        Ok(())
    }

    /// A DATA sent ahead that the client's DATA will not use: if the backend
    /// took it (354), it now reads everything as the message, so the
    /// connection is dropped (the backend discards an unfinished message).
    /// Only a defence: the client's next command is that DATA.
    pub(super) fn abandon_data_ahead(&mut self) {
        let Some(ahead) = self.tx.as_mut().and_then(|t| t.data_ahead.take()) else {
            return;
        };
        if ahead.code == 354 {
            self.lose_backend();
        }
    }

    /// Reads the body up to CRLF.CRLF through the scanner. With `into`, the
    /// bytes are kept there; otherwise they stream to the backend (an error
    /// writing to it is returned, the body is still read to its end).
    pub(super) async fn receive_body(
        &mut self,
        mut into: Option<&mut Vec<u8>>,
    ) -> Result<(Scanner, Option<ClientError>), End> {
        let limit = self.ctx.config.proxy.max_message_size.0;
        let timeout = self.ctx.config.proxy.data_timeout.0;
        self.grow_reader();
        let mut scanner = Scanner::new(limit);
        let mut backend_err: Option<ClientError> = None;
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
                    return Err(self.close(Failure::ClientTimeout));
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
    pub(super) fn refuse_body(&mut self, fault: Fault, from: &str) {
        let smuggling = |what: &str, text: &str| (format!("{what} in the body"), text.to_string());
        let (why, text) = match fault {
            Fault::BareLineEnd => smuggling(
                "bare CR or LF",
                "Error: bare <CR> or <LF> in message; lines must end with <CR><LF>",
            ),
            Fault::Nul => smuggling(
                "NUL character",
                "Error: NUL character in message; messages must not contain NUL",
            ),
            Fault::TooBig => {
                let limit = self.ctx.config.proxy.max_message_size.0;
                warn!(sender = %from, "refused message from <{from}>: larger than {limit} bytes");
                return self.syntax_error(Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed limit",
                ));
            }
        };
        warn!(sender = %from, "refused message from <{from}>: {why}");
        self.counts.add(Counter::Rejected(Rejection::Smuggling), 1);
        self.syntax_error(Reply::new(550, "5.5.2", &text));
    }
}
