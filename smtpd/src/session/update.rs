//! Update mails (SPEC §7): mail to `proxy.update_address` is postern's own.
//!
//! The recipient is recognised by its parsed address, whatever its spelling
//! (`<"update"@host>`, `<update@HOST.>`). It is accepted only from `admin_networks` or from a client
//! authenticated as the admin user (`550 5.7.1` otherwise), and only alone in
//! its transaction (`452 4.5.3` for a recipient on either side of it, which
//! the sender retries separately). The body goes through the same scanner as
//! any message, is kept in memory (at most `max_message_size`), and is handed
//! to the updater, which writes it durably before answering; only then does
//! the client get `250 2.0.0 Ok: queued as <ID>`. An updater that cannot take
//! it gives `451 4.3.0`: the sender keeps the mail and retries.

use tracing::{info, warn};

use super::reply::Failure;
use super::{End, Session};
use postern_shared::config::in_networks;
use postern_shared::ipc::{oneshot, UpdaterReply, UpdaterRequest};
use postern_shared::smtp::{Mailbox, Path, Reply};

impl Session {
    /// Whether `to` is `proxy.update_address`, however it is spelled: the
    /// parsed addresses are compared ([`Mailbox::same_address`]: local part
    /// unquoted, domain lower-cased without its trailing dot), never the
    /// text, so that `<"update"@host>` or `<update@host.>` cannot pass for
    /// an ordinary recipient and be forwarded.
    pub(super) fn is_update_address(&self, to: &Path) -> bool {
        let update = self.ctx.config.proxy.update_address.as_deref();
        match (update.and_then(Mailbox::split), to) {
            (Some(update), Path::Mailbox(m)) => m.same_address(&update),
            _ => false,
        }
    }

    pub(super) fn update_rcpt(&mut self, to: &Path) {
        let ip = self.ip();
        let allowed = self.admin_login || in_networks(ip, &self.ctx.config.proxy.admin_networks);
        if !allowed {
            warn!(
                "update mail refused: {ip} is neither in admin_networks nor authenticated as admin"
            );
            let text = format!("<{to}>: update mails are not accepted from this client");
            return self.syntax_error(Reply::new(550, "5.7.1", &text));
        }
        let Some(tx) = self.tx.as_mut() else { return };
        if tx.accepted > 0 || tx.route.is_some() {
            return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        tx.update = true;
        tx.accepted = 1;
        self.reply(Reply::new(250, "2.1.5", "Ok"));
    }

    pub(super) async fn data_update(&mut self) -> Result<(), End> {
        self.progress_deadline = None;
        self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;
        let mut body = Vec::new();
        let (scanner, _) = self.receive_body(Some(&mut body)).await?;
        let from = self.end_tx();
        if let Some(fault) = scanner.fault {
            self.refuse_body(fault, &from);
            return Ok(());
        }
        // The spool keeps the message, not its end: the updater writes the
        // terminator when it delivers a copy.
        let kept = body.len().saturating_sub(3);
        if body[kept..] == *b".\r\n" {
            body.truncate(kept);
        }
        let recipient = self
            .ctx
            .config
            .proxy
            .update_address
            .clone()
            .unwrap_or_default();
        let req = UpdaterRequest::Queue {
            sid: self.sid.to_string(),
            sender: from.clone(),
            recipient,
            body,
        }
        .encode();
        let answer = oneshot::UPDATER.call(&self.ctx.updater, req).await;
        match answer.as_ref().map(UpdaterReply::decode) {
            Ok(Some(UpdaterReply::Queued { queue_id: id })) => {
                info!("update mail from <{from}> queued as {id}");
                self.junk = 0;
                self.reply(Reply::new(250, "2.0.0", &format!("Ok: queued as {id}")));
            }
            other => {
                let why = match other {
                    Ok(Some(
                        UpdaterReply::NotFound(why)
                        | UpdaterReply::Reject(why)
                        | UpdaterReply::TempFail(why),
                    )) => why,
                    Ok(_) => "refused".to_string(),
                    Err(e) => e.to_string(),
                };
                warn!("update mail from <{from}> not queued: {why}");
                self.fail(Failure::Updater);
            }
        }
        Ok(())
    }
}
