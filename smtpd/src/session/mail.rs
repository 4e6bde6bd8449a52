//! MAIL: the transaction begins, checked by postern alone.
//!
//! MAIL needs HELO/EHLO first and no transaction open (503). Its
//! parameters: `SIZE=` (over `max_message_size`: 552 5.3.4), `BODY=7BIT` or
//! `8BITMIME`, and `AUTH=` where AUTH is offered (RFC 4954 §5, checked and
//! never passed on); anything else 555 5.5.4. The backend sees nothing yet:
//! it gets MAIL replayed with the transaction's first recipient
//! (`relay.rs`, `Session::mail_line`), once the recipient's route is
//! known. The first MAIL since the last message body starts the
//! transaction's progress deadline (`Session::progress_deadline`).

use postern_shared::ipc::route::Route;
use postern_shared::smtp::{Param, Path, Reply};

use super::Session;
use crate::backend::ServerReply;

/// The current mail transaction.
pub(super) struct Tx {
    /// The envelope sender.
    pub(super) from: Path,
    /// MAIL's parameters, replayed to the backend where it supports them.
    pub(super) params: Vec<Param>,
    /// Recipients the backend accepted, for the log: as the client gave
    /// them (an alias's addresses are in the log line of its RCPT).
    pub(super) recipients: Vec<String>,
    /// Every address the backend accepted in this transaction (by
    /// `postern_shared::alias::address_key`) with its reply: an address that a recipient given twice, or an
    /// alias, leads to again is not sent again (SPEC §12); a refused one is.
    pub(super) sent: std::collections::HashMap<String, ServerReply>,
    /// The transaction's server, set by its first routed recipient.
    pub(super) route: Option<Route>,
    /// The backend accepted our MAIL for this transaction.
    pub(super) backend_mail: bool,
    /// Recipients the backend accepted.
    pub(super) accepted: u32,
    /// RCPT commands seen.
    pub(super) rcpts: u32,
    /// An update mail (to `proxy.update_address`): handled by the updater.
    pub(super) update: bool,
    /// The backend's reply to a DATA sent ahead with the last RCPT (the
    /// client had pipelined its DATA behind it), for `Session::data`.
    pub(super) data_ahead: Option<ServerReply>,
    /// The backend connection was lost after it accepted recipients: the
    /// client was told 250 for them, so the message must not go on
    /// without them. RCPT and DATA get 451 until the transaction ends.
    pub(super) lost: bool,
}

impl Session {
    /// MAIL FROM: checks the command and opens the transaction.
    pub(super) fn mail(&mut self, from: Path, params: Vec<Param>) {
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
        self.tx = Some(Box::new(Tx {
            from,
            params,
            recipients: Vec::new(),
            sent: Default::default(),
            route: None,
            backend_mail: false,
            accepted: 0,
            rcpts: 0,
            update: false,
            data_ahead: None,
            lost: false,
        }));
        let timeout = self.command_timeout();
        self.progress_deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + timeout);
        self.reply(Reply::new(250, "2.1.0", "Ok"));
    }

    /// The transaction's sender as the log writes it (empty without one).
    pub(super) fn sender(&self) -> String {
        // Sized for an address, written without the formatting machinery.
        let mut sender = String::with_capacity(64);
        if let Some(t) = &self.tx {
            t.from.push_to(&mut sender);
        }
        sender
    }

    /// Ends the transaction once its body was read (the backend's own
    /// transaction ends with the body); its sender, for the log.
    pub(super) fn end_tx(&mut self) -> String {
        let from = self.sender();
        self.tx = None;
        from
    }

    /// Ends the transaction; the backend (if any) is reset for the next one.
    pub(super) async fn reset_tx(&mut self) {
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
