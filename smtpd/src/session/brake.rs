//! The brake on password guessing (SPEC §6, §7; issue 18): every check of
//! credentials — AUTH, and RELOAD / SHUTDOWN — goes through it.
//!
//! Before credentials are checked, the router's anvil is asked whether the
//! client's address is locked out ([`Session::brake_check`]): then the
//! answer is `454 4.7.0` and the credentials are not even looked at, right
//! ones included. Each failure is reported to the anvil, which counts them
//! per address across every smtpd process and locks an address out after
//! 5 failures within 10 minutes, for 10 minutes (the router logs the
//! lock-out). Each failure's reply also waits [`failure_delay`] of the
//! address's failures so far: 0.1 s, 0.2 s, 0.4 s… at most 5 s.
//!
//! A router that cannot answer the check gives `454 4.7.0` (no brake, no
//! credentials check: AUTH needs the router anyway). One that cannot
//! record a failure still lets the delay grow with the session's own
//! failures.

use std::time::Duration;

use tracing::{debug, info};

use super::reply::Failure;
use super::Session;
use postern_shared::smtp::Reply;

/// The delay after an address's first failed authentication; each further
/// failure (within the anvil's window) doubles it.
pub const FAILURE_DELAY_BASE: Duration = Duration::from_millis(100);
/// The longest delay after a failed authentication.
pub const FAILURE_DELAY_MAX: Duration = Duration::from_secs(5);

/// How long the reply to the `failures`-th failure (from one address, within
/// the window) waits: [`FAILURE_DELAY_BASE`], doubling, at most
/// [`FAILURE_DELAY_MAX`].
pub fn failure_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FAILURE_DELAY_BASE
        .saturating_mul(1 << doublings)
        .min(FAILURE_DELAY_MAX)
}

impl Session {
    /// Whether credentials may be checked now. `false`: the address is
    /// locked out (or the router cannot say), and the reply is queued.
    pub(super) async fn brake_check(&mut self) -> bool {
        let ip = self.ip();
        match self.ctx.router.brake(&self.sid, ip, false).await {
            Ok(b) => match b.locked {
                None => true,
                Some(left) => {
                    info!("authentication refused from {ip}: locked out for {left:?} more");
                    let text = format!(
                        "Error: too many failed authentications from {ip}, try again later"
                    );
                    self.syntax_error(Reply::new(454, "4.7.0", &text));
                    false
                }
            },
            Err(e) => {
                tracing::warn!("cannot check the authentication brake for {ip}: {e}");
                self.fail(Failure::Credentials);
                false
            }
        }
    }

    /// Records a failed authentication with the router's anvil and waits
    /// the delay it calls for, before the failure's reply.
    pub(super) async fn brake_failure(&mut self) {
        self.auth_failures += 1;
        let ip = self.ip();
        let failures = match self.ctx.router.brake(&self.sid, ip, true).await {
            Ok(b) => b.failures.max(self.auth_failures),
            Err(e) => {
                debug!("failed authentication from {ip} not counted by the router: {e}");
                self.auth_failures
            }
        };
        tokio::time::sleep(failure_delay(failures)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_its_cap() {
        let ms = |n| failure_delay(n).as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5)],
            [100, 100, 200, 400, 800, 1600]
        );
        assert_eq!(failure_delay(7), FAILURE_DELAY_MAX);
        assert_eq!(failure_delay(u32::MAX), FAILURE_DELAY_MAX);
    }
}
