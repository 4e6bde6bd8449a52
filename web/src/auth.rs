//! Logins, sessions and CSRF tokens (SPEC §11).
//!
//! - A login compares the user and password with `proxy.admin_user` and
//!   `admin_password` in constant time. A failure is answered after a delay
//!   that grows with the address's recent failures (1 s, then one more per
//!   failure, at most [`MAX_DELAY`]) and logged with the address.
//! - A session is a random 128-bit token in a cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/`), valid [`SESSION_IDLE`] after its last
//!   request, kept in this process's memory only (a restarted console asks
//!   to log in again).
//! - Each session has its CSRF token, a hidden field of every form; a POST
//!   without it, or with another, is refused.

use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use postern_shared::smtp::secret_eq;

/// A session ends this long after its last request.
pub const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// The longest a failed login waits for its answer.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures of an address are forgotten this long after the last one.
const FAILURES_KEPT: Duration = Duration::from_secs(900);
/// Sessions at most (the oldest goes when a new one would pass it).
const MAX_SESSIONS: usize = 256;

/// Who is logged in.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user name logged in with.
    pub user: String,
    /// The token every form of this session carries.
    pub csrf: String,
    last: Instant,
}

/// The console's sessions and its failed logins.
#[derive(Default)]
pub struct Auth {
    sessions: HashMap<String, Session>,
    failures: HashMap<IpAddr, (u32, Instant)>,
}

/// 16 random bytes from the kernel, as hex.
pub fn token() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom is readable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether the credentials are the admin's (both compared, in constant time).
pub fn credentials_ok(user: &str, password: &str, admin: (&str, &str)) -> bool {
    // `&`, not `&&`: the password is compared even when the user differs.
    secret_eq(user, admin.0) & secret_eq(password, admin.1)
}

impl Auth {
    /// The session of `token`, renewed; `None` when unknown or expired.
    pub fn session(&mut self, token: &str, now: Instant) -> Option<Session> {
        let s = self.sessions.get_mut(token)?;
        if now.duration_since(s.last) > SESSION_IDLE {
            self.sessions.remove(token);
            return None;
        }
        s.last = now;
        Some(s.clone())
    }

    /// Opens a session for `user`; returns its token.
    pub fn open(&mut self, user: &str, now: Instant) -> String {
        self.sessions
            .retain(|_, s| now.duration_since(s.last) <= SESSION_IDLE);
        if self.sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                self.sessions.remove(&oldest);
            }
        }
        let t = token();
        self.sessions.insert(
            t.clone(),
            Session {
                user: user.to_string(),
                csrf: token(),
                last: now,
            },
        );
        t
    }

    /// Ends the session of `token`.
    pub fn close(&mut self, token: &str) {
        self.sessions.remove(token);
    }

    /// Records a failed login from `ip`; returns how long its answer waits.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Duration {
        self.failures
            .retain(|_, (_, at)| now.duration_since(*at) <= FAILURES_KEPT);
        let e = self.failures.entry(ip).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
        Duration::from_secs(u64::from(e.0)).min(MAX_DELAY)
    }

    /// How long `ip` must still wait after its last failed login before it
    /// may try again (`None`: it may now). Attempts sent in parallel gain
    /// nothing: each waits out the delay of the failure before it.
    pub fn must_wait(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let (n, at) = self.failures.get(&ip)?;
        let delay = Duration::from_secs(u64::from(*n)).min(MAX_DELAY);
        (*at + delay)
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// A login from `ip` succeeded: its failures are forgiven.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_logins_wait_longer_each_time_up_to_five_seconds() {
        let mut a = Auth::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let now = Instant::now();
        assert_eq!(a.must_wait(ip, now), None);
        let delays: Vec<u64> = (0..7).map(|_| a.failed(ip, now).as_secs()).collect();
        assert_eq!(a.must_wait(ip, now), Some(Duration::from_secs(5)));
        assert_eq!(a.must_wait(ip, now + Duration::from_secs(5)), None);
        assert_eq!(delays, [1, 2, 3, 4, 5, 5, 5]);
        a.succeeded(ip);
        assert_eq!(a.failed(ip, now).as_secs(), 1);
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(a.failed(other, now).as_secs(), 1, "per address");
    }

    #[test]
    fn sessions_expire_when_idle_and_close() {
        let mut a = Auth::default();
        let t0 = Instant::now();
        let tok = a.open("admin", t0);
        assert_eq!(tok.len(), 32);
        let s = a.session(&tok, t0 + Duration::from_secs(60)).expect("open");
        assert_eq!(s.user, "admin");
        assert_ne!(s.csrf, tok);
        assert!(a
            .session(
                &tok,
                t0 + Duration::from_secs(60) + SESSION_IDLE + Duration::from_secs(1)
            )
            .is_none());
        let tok = a.open("admin", t0);
        a.close(&tok);
        assert!(a.session(&tok, t0).is_none());
        assert!(a.session("forged", t0).is_none());
    }

    #[test]
    fn credentials_are_both_checked() {
        let admin = ("admin", "s3cret");
        assert!(credentials_ok("admin", "s3cret", admin));
        assert!(!credentials_ok("admin", "S3cret", admin));
        assert!(!credentials_ok("Admin", "s3cret", admin));
        assert!(!credentials_ok("", "", admin));
    }
}
