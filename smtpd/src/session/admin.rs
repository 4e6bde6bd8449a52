//! The seed's admin commands (SPEC §6): `RELOAD user password` and
//! `SHUTDOWN user password` (`user*password` is accepted too).
//!
//! Checked here, in order: the commands exist only when `admin_user` and
//! `admin_password` are set (502 otherwise); the client's address must be in
//! `admin_networks` for RELOAD, loopback for SHUTDOWN (550); the credentials
//! must match (535); before they are checked, the brake (`brake.rs`) may
//! say the address is locked out (454), and a failure's reply is delayed
//! and counted by the router's anvil with AUTH's. Every failure is logged
//! and counted; after
//! [`MAX_ADMIN_FAILURES`] in a row the session is closed. Only then does the
//! request go to the master, through the process's main loop, and its answer
//! becomes the reply: `250 2.0.0` or `451 4.3.5 <why>` for RELOAD, `221 2.0.0`
//! and a graceful stop of the whole suite for SHUTDOWN.

use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::reply::Failure;
use super::{AdminRequest, End, Session};
use postern_shared::config::in_networks;
use postern_shared::ipc::WorkerVerb;
use postern_shared::smtp::{secret_eq, Reply};

/// Failed admin commands in a row before the session is closed.
pub const MAX_ADMIN_FAILURES: u32 = 3;

/// How long to wait for the master (a reload waits for every worker).
const MASTER_TIMEOUT: Duration = Duration::from_secs(30);

impl Session {
    pub(super) async fn admin(
        &mut self,
        request: WorkerVerb,
        creds: Option<(String, String)>,
    ) -> Result<(), End> {
        let verb = if request == WorkerVerb::Reload {
            "RELOAD"
        } else {
            "SHUTDOWN"
        };
        let p = &self.ctx.config.proxy;
        let (Some(user), Some(password)) = (p.admin_user.clone(), p.admin_password.clone()) else {
            self.syntax_error(Reply::new(502, "5.5.1", "Error: command not implemented"));
            return Ok(());
        };
        let ip = self.ip();
        let allowed = if request == WorkerVerb::Reload {
            in_networks(ip, &p.admin_networks)
        } else {
            ip.is_loopback()
        };
        let failure = if !allowed {
            warn!("{verb} refused: {ip} is not allowed to send it");
            Some(Reply::new(
                550,
                "5.7.1",
                &format!("Error: {verb} is not allowed from {ip}"),
            ))
        } else if !self.brake_check().await {
            // Locked out (454, queued): the credentials are not looked at.
            self.admin_failures += 1;
            return self.admin_failed();
        } else {
            let good = creds
                .as_ref()
                .is_some_and(|(u, pw)| secret_eq(u, &user) & secret_eq(pw, &password));
            if !good {
                warn!("{verb} refused: bad credentials from {ip}");
                self.brake_failure().await;
            }
            (!good).then(|| Reply::new(535, "5.7.8", "Error: authentication failed"))
        };
        if let Some(r) = failure {
            self.admin_failures += 1;
            self.syntax_error(r);
            return self.admin_failed();
        }
        self.admin_failures = 0;
        info!("{verb} accepted from {ip}");
        let (tx, rx) = oneshot::channel();
        let sent = self
            .ctx
            .admin
            .send(AdminRequest {
                request,
                sid: self.sid.to_string(),
                reply: tx,
            })
            .await
            .is_ok();
        let answer = if sent {
            match tokio::time::timeout(MASTER_TIMEOUT, rx).await {
                Ok(Ok(a)) => a,
                _ => Err("the master did not answer".to_string()),
            }
        } else {
            Err("no master".to_string())
        };
        match (request, answer) {
            (WorkerVerb::Reload, Ok(())) => {
                self.reply(Reply::new(250, "2.0.0", "Configuration reloaded"))
            }
            (WorkerVerb::Stop, Ok(())) => {
                self.reply(Reply::new(221, "2.0.0", "Shutting down"));
                return Err(End::Closed);
            }
            (_, Err(why)) => self.fail(Failure::Master(why)),
            _ => unreachable!("request is reload or stop"),
        }
        Ok(())
    }

    /// After a failed admin command: the session ends at
    /// [`MAX_ADMIN_FAILURES`] in a row.
    fn admin_failed(&mut self) -> Result<(), End> {
        if self.admin_failures >= MAX_ADMIN_FAILURES {
            let text = format!("{} Error: too many failed admin commands", self.hostname());
            self.reply(Reply::new(421, "4.7.0", &text));
            return Err(End::Closed);
        }
        Ok(())
    }
}
