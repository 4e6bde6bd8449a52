//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms.
//!
//! postern terminates AUTH itself: the router says which server owns the
//! credentials (the `auth` route); the session then becomes a relay client of
//! that server, and the backend gets the same credentials replayed when it
//! is connected. A client whose address already made it a relay client
//! (`ip-addr`, which comes first) keeps that route. Credentials never appear
//! in a log line; a failure logs the client's address only.
//!
//! Every check of credentials goes through the brake (`brake.rs`): an
//! address locked out gets `454 4.7.0`, each failure's `535` is delayed.
//!
//! AUTH is offered only when someone could authenticate: a server has
//! credentials, or there is an admin user. When `[tls]` is set, the admin
//! user authenticates only inside TLS, whatever `auth_requires_tls` says
//! (SPEC §7); outside it, the admin's credentials fail like wrong ones.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tracing::{info, warn};

use super::reply::Failure;
use super::{End, Session};
use postern_shared::ipc::route::Lookup;
use postern_shared::smtp::Reply;

/// Longest AUTH line (RFC 4954 §4: 12288 octets are sufficient).
const MAX_AUTH_LINE: usize = 12288;

impl Session {
    /// AUTH is advertised and accepted: under TLS, or anywhere when
    /// `auth_requires_tls` is false (its default without `[tls]`) — and
    /// only when someone could authenticate ([`Session::auth_possible`]).
    pub(super) fn auth_offered(&self) -> bool {
        let p = &self.ctx.config.proxy;
        let requires = p.auth_requires_tls.unwrap_or(self.ctx.config.tls.is_some());
        (self.tls || !requires) && self.auth_possible(self.tls)
    }

    /// Whether some credentials could succeed in a session with (`tls`) or
    /// without TLS: a server's, or the admin user's — which, when `[tls]`
    /// is set, count only inside TLS whatever `auth_requires_tls` says
    /// (SPEC §7: they let a client queue update mails).
    fn auth_possible(&self, tls: bool) -> bool {
        let c = &self.ctx.config;
        self.ctx.auth_servers || (self.admin_configured() && (c.tls.is_none() || tls))
    }

    fn admin_configured(&self) -> bool {
        let p = &self.ctx.config.proxy;
        p.admin_user.is_some() && p.admin_password.is_some()
    }

    pub(super) async fn auth(&mut self, mech: &str, initial: Option<String>) -> Result<(), End> {
        let refuse = if self.helo.is_none() {
            Some(Reply::new(503, "5.5.1", "Error: send HELO/EHLO first"))
        } else if self.login.is_some() {
            Some(Reply::new(503, "5.5.1", "Error: already authenticated"))
        } else if self.tx.is_some() {
            Some(Reply::new(
                503,
                "5.5.1",
                "Error: MAIL transaction in progress",
            ))
        } else if !self.auth_offered() {
            // STARTTLS first, when AUTH would be offered inside TLS.
            Some(
                if self.ctx.tls.is_some() && !self.tls && self.auth_possible(true) {
                    Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
                } else {
                    Reply::new(503, "5.5.1", "Error: authentication not enabled")
                },
            )
        } else {
            None
        };
        if let Some(r) = refuse {
            self.syntax_error(r);
            return Ok(());
        }
        // An address locked out gets 454 before it says anything secret.
        if !self.brake_check().await {
            return Ok(());
        }
        let creds = match mech {
            "PLAIN" => self.sasl_plain(initial).await?,
            "LOGIN" => self.sasl_login(initial).await?,
            _ => Err(Reply::new(504, "5.5.4", "Unrecognized authentication type")),
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(r) => {
                // 535: credentials that do not match (an authzid not the
                // user's); the rest (501, 504) checked none.
                if r.code == 535 {
                    warn!("authentication failed from {}", self.ip());
                    self.brake_failure().await;
                }
                self.syntax_error(r);
                return Ok(());
            }
        };
        if let Err(e) = self.check_client().await {
            warn!("cannot look up the relay lists for {}: {e}", self.ip());
            self.fail(Failure::Credentials);
            return Ok(());
        }
        let p = &self.ctx.config.proxy;
        if let (Some(admin), Some(secret)) = (&p.admin_user, &p.admin_password) {
            let admin_ok = postern_shared::smtp::secret_eq(&user, admin)
                & postern_shared::smtp::secret_eq(&password, secret);
            if admin_ok && self.ctx.config.tls.is_some() && !self.tls {
                // Not even checked against the servers' credentials: these
                // are the admin's, and they travelled in clear.
                warn!(
                    "authentication as the admin user refused from {}: only inside TLS",
                    self.ip()
                );
                self.brake_failure().await;
                self.syntax_error(Reply::new(535, "5.7.8", "Error: authentication failed"));
                return Ok(());
            }
            if admin_ok {
                // The admin may send update mails; that makes it no relay client.
                info!("authenticated as the admin user");
                self.admin_login = true;
                self.login = Some(Box::new((user, password)));
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                return Ok(());
            }
        }
        let carried = |s: &str| !s.is_empty() && !s.contains(['\r', '\n', '\0']);
        let found = if carried(&user) && carried(&password) {
            self.ctx
                .router
                .authenticate(&self.sid, &user, &password)
                .await
        } else {
            Ok(Lookup::NotFound)
        };
        match found {
            Ok(Lookup::Found(route)) => {
                info!("authenticated: routed to {}", route.name);
                self.login = Some(Box::new((user, password)));
                if self.relay.is_none() {
                    self.relay = Some(Box::new(route));
                }
                // The backend must see the new identity: reconnect at the next RCPT.
                self.backend = None;
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Ok(Lookup::NotFound) => {
                warn!("authentication failed from {}", self.ip());
                self.brake_failure().await;
                self.syntax_error(Reply::new(535, "5.7.8", "Error: authentication failed"));
            }
            Err(e) => {
                warn!("cannot check credentials: {e}");
                self.fail(Failure::Credentials);
            }
        }
        Ok(())
    }

    /// PLAIN: `[authzid] NUL authcid NUL passwd`, base64, as an initial
    /// response or after an empty challenge.
    async fn sasl_plain(
        &mut self,
        initial: Option<String>,
    ) -> Result<Result<(String, String), Reply>, End> {
        let response = match initial {
            Some(i) if i == "=" => String::new(),
            Some(i) => i,
            None => match self.sasl_line("").await? {
                Ok(l) => l,
                Err(r) => return Ok(Err(r)),
            },
        };
        let Ok(decoded) = STANDARD.decode(&response) else {
            return Ok(Err(Reply::new(501, "5.5.2", "Error: invalid base64 data")));
        };
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        let [authzid, authcid, password] = parts.as_slice() else {
            return Ok(Err(Reply::new(
                501,
                "5.5.2",
                "Error: malformed PLAIN response",
            )));
        };
        if !authzid.is_empty() && authzid != authcid {
            return Ok(Err(Reply::new(
                535,
                "5.7.8",
                "Error: authentication failed",
            )));
        }
        match (std::str::from_utf8(authcid), std::str::from_utf8(password)) {
            (Ok(u), Ok(p)) => Ok(Ok((u.to_string(), p.to_string()))),
            _ => Ok(Err(Reply::new(
                501,
                "5.5.2",
                "Error: credentials are not UTF-8",
            ))),
        }
    }

    /// LOGIN: user name (possibly as the initial response), then password,
    /// each after its base64 prompt.
    async fn sasl_login(
        &mut self,
        initial: Option<String>,
    ) -> Result<Result<(String, String), Reply>, End> {
        let user64 = match initial {
            Some(i) => i,
            None => match self.sasl_line("VXNlcm5hbWU6").await? {
                Ok(l) => l,
                Err(r) => return Ok(Err(r)),
            },
        };
        let pass64 = match self.sasl_line("UGFzc3dvcmQ6").await? {
            Ok(l) => l,
            Err(r) => return Ok(Err(r)),
        };
        let decode = |t: &str| {
            STANDARD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        };
        match (decode(&user64), decode(&pass64)) {
            (Some(u), Some(p)) => Ok(Ok((u, p))),
            _ => Ok(Err(Reply::new(501, "5.5.2", "Error: invalid base64 data"))),
        }
    }

    /// Sends `334 <challenge>` and reads the client's answer; `*` cancels.
    async fn sasl_line(&mut self, challenge: &str) -> Result<Result<String, Reply>, End> {
        self.reply(Reply::plain(334, challenge));
        self.flush().await?;
        let too_long = || Reply::new(500, "5.5.6", "Error: authentication line too long");
        match self.read_line(MAX_AUTH_LINE, too_long).await? {
            Some(l) if l == "*" => Ok(Err(Reply::new(501, "5.7.0", "Authentication aborted"))),
            Some(l) => Ok(Ok(l)),
            // The bad line was answered already; the exchange is over.
            None => Ok(Err(Reply::new(
                501,
                "5.5.2",
                "Error: authentication exchange failed",
            ))),
        }
    }
}
