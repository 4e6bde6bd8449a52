//! STARTTLS (RFC 3207) on the client side.
//!
//! In order: refuse when TLS is not configured (502), already active (554) or
//! a transaction is open (503); answer `220 2.0.0 Ready to start TLS` and flush
//! it; then drop the buffered reader and everything in it — commands
//! pipelined behind STARTTLS in plaintext must never be run as if they came
//! through TLS (CVE-2011-0411) — and hand the bare connection to rustls.
//! After the handshake the session forgets everything the client said
//! before: HELO/EHLO, and an AUTH identity (RFC 3207 §4.2).

use postern_shared::runtime::bufread::Reader;
use tracing::{info, warn};

use super::{ClientConn, End, Session};
use postern_shared::ipc::route::Cause;
use postern_shared::smtp::Reply;

impl Session {
    pub(super) async fn starttls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self.ctx.tls.clone() else {
            self.syntax_error(Reply::new(502, "5.5.1", "Error: command not implemented"));
            return Ok(());
        };
        if self.tls {
            self.syntax_error(Reply::new(554, "5.5.1", "Error: TLS already active"));
            return Ok(());
        }
        if self.tx.is_some() {
            self.syntax_error(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ));
            return Ok(());
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        let pending = self.client.buffer().len();
        if pending > 0 {
            warn!(
                "discarding {pending} bytes pipelined after STARTTLS by {} (plaintext injection)",
                self.ip()
            );
        }
        let placeholder = ClientConn::Other(Box::new(tokio::io::duplex(1).0));
        let plain =
            std::mem::replace(&mut self.client, Reader::with_capacity(0, placeholder)).into_inner();
        let timeout = self.command_timeout();
        match tokio::time::timeout(timeout, acceptor.accept(plain)).await {
            Ok(Ok(stream)) => {
                self.client = Reader::with_capacity(0, ClientConn::Other(Box::new(stream)));
                self.tls = true;
                self.helo = None;
                self.esmtp = false;
                if self.relay.as_ref().is_some_and(|r| r.cause == Cause::Auth) {
                    self.relay = None;
                }
                self.login = None;
                self.backend = None;
                info!("TLS established with {}", self.ip());
                Ok(())
            }
            Ok(Err(e)) => {
                info!("TLS handshake with {} failed: {e}", self.ip());
                Err(End::Gone)
            }
            Err(_) => {
                info!("TLS handshake with {} timed out", self.ip());
                Err(End::Gone)
            }
        }
    }
}
