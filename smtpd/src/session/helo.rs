//! HELO and EHLO: the client names itself and the session (re)starts.
//!
//! Either ends a transaction in progress (the backend gets RSET). EHLO's
//! reply lists what postern offers: PIPELINING, SIZE (`max_message_size`),
//! 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS while TLS is configured and not
//! active, AUTH where someone could authenticate ([`Session::auth_offered`]).
//! Neither waits for the router's connection count (see `admission.rs`).

use postern_shared::smtp::Reply;

use super::Session;

impl Session {
    /// HELO: plain SMTP from now on.
    pub(super) async fn helo(&mut self, name: String) {
        self.reset_tx().await;
        self.helo = Some(name);
        self.esmtp = false;
        let host = self.hostname().to_string();
        self.reply(Reply::plain(250, &host));
    }

    /// EHLO: ESMTP, and the extensions offered.
    pub(super) async fn ehlo(&mut self, name: String) {
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
}
