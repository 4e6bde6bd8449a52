//! Connection accounting across every smtpd process (Postfix's anvil).
//!
//! smtpd asks `request=connect client=<ip> pid=<its pid>` before greeting a
//! client and says `request=disconnect` when the session ends. The router
//! counts connections in total and per client address and refuses a new one
//! (`status=reject`) above `proxy.max_connections` or
//! `proxy.max_connections_per_ip`; smtpd then answers `421 4.7.0`.
//!
//! Each connection is known by its session id (`sid`), under the pid of the
//! smtpd that serves it: a `connect` repeated for the same session counts
//! once, and a `disconnect` removes exactly that session, or nothing when
//! it was never counted (refused; a `connect` that smtpd gave up waiting
//! for; a router that restarted since). So smtpd says goodbye for every
//! session it was not told was refused, and no count outlives its session.
//! Those of a process that died without saying goodbye are dropped by
//! [`Anvil::sweep`], which runs every [`SWEEP_EVERY`]. A router that
//! restarts starts from zero: until the sessions open at that moment end,
//! they are not counted (an undercount, never a refusal of a legitimate
//! client).
//!
//! Overload (Postfix's stress mode): once the connections open reach
//! [`STRESS_ON_PERCENT`] of `max_connections`, the connections admitted
//! from then on are told so (`stress=yes` in the answer): smtpd gives those
//! sessions shorter patience (a command timeout of at most
//! `STRESS_COMMAND_TIMEOUT`, one error, one junk command), so that idle and
//! misbehaving clients make room for mail before the limit refuses anyone.
//! It ends when they fall below [`STRESS_OFF_PERCENT`] (not at the same
//! mark, so that it does not flap); [`Stress::update`] says when it
//! changes, and the router logs both.
//!
//! The anvil also brakes password guessing ([`AuthBrake`]): smtpd reports
//! each failed authentication — AUTH, and the credentials of RELOAD and
//! SHUTDOWN — with `request=brake failed=1`, and asks `request=brake
//! failed=0` before it checks any credentials. Failures are counted per
//! client address, whichever smtpd process saw them: after
//! [`AUTH_FAILURE_LIMIT`] within [`AUTH_FAILURE_WINDOW`], the address is
//! locked out for [`AUTH_LOCKOUT`] (smtpd answers `454 4.7.0` without
//! looking at the credentials), and the router logs one warning line.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often the counts of dead smtpd processes are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Open connections, in percent of `max_connections`, from which new
/// sessions run in stress mode.
pub const STRESS_ON_PERCENT: u32 = 80;
/// … and below which stress mode ends.
pub const STRESS_OFF_PERCENT: u32 = 60;

/// Whether new sessions run in stress mode (see the module's description).
#[derive(Debug, Default)]
pub struct Stress {
    on: bool,
}

impl Stress {
    /// Takes the count: `open` connections of at most `max`. Returns the
    /// new state when it changes.
    pub fn update(&mut self, open: u32, max: u32) -> Option<bool> {
        let (open, max) = (u64::from(open), u64::from(max));
        let now = if self.on {
            open * 100 >= max * u64::from(STRESS_OFF_PERCENT)
        } else {
            open * 100 >= max * u64::from(STRESS_ON_PERCENT)
        };
        (now != self.on).then(|| {
            self.on = now;
            now
        })
    }

    /// In stress mode.
    pub fn on(&self) -> bool {
        self.on
    }
}

/// The counts.
#[derive(Debug, Default)]
pub struct Anvil {
    /// Overload: on from 80 % of max_connections.
    pub stress: Stress,
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    /// The sessions counted, by smtpd pid, and their client address.
    per_pid: HashMap<u32, HashMap<String, IpAddr>>,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    Total(u32),
    /// `max_connections_per_ip` reached for this address.
    PerIp(u32),
}

impl Anvil {
    /// Counts session `sid`'s connection unless it would exceed a limit (or
    /// is counted already).
    pub fn connect(
        &mut self,
        pid: u32,
        sid: &str,
        ip: IpAddr,
        max_total: u32,
        max_per_ip: u32,
    ) -> Result<(), Refusal> {
        if self.per_pid.get(&pid).is_some_and(|m| m.contains_key(sid)) {
            return Ok(());
        }
        let here = self.per_ip.get(&ip).copied().unwrap_or(0);
        if self.total >= max_total {
            return Err(Refusal::Total(self.total));
        }
        if here >= max_per_ip {
            return Err(Refusal::PerIp(here));
        }
        self.total += 1;
        *self.per_ip.entry(ip).or_default() += 1;
        self.per_pid
            .entry(pid)
            .or_default()
            .insert(sid.to_string(), ip);
        Ok(())
    }

    /// Connections counted now.
    pub fn open(&self) -> u32 {
        self.total
    }

    /// Forgets session `sid`'s connection (one never counted is ignored).
    pub fn disconnect(&mut self, pid: u32, sid: &str) {
        let Some(mine) = self.per_pid.get_mut(&pid) else {
            return;
        };
        let Some(ip) = mine.remove(sid) else { return };
        if mine.is_empty() {
            self.per_pid.remove(&pid);
        }
        self.forget(ip, 1);
    }

    fn forget(&mut self, ip: IpAddr, n: u32) {
        self.total = self.total.saturating_sub(n);
        if let Some(c) = self.per_ip.get_mut(&ip) {
            *c = c.saturating_sub(n);
            if *c == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Drops the counts of processes for which `alive` is false; returns how many connections.
    pub fn sweep(&mut self, alive: impl Fn(u32) -> bool) -> u32 {
        let dead: Vec<u32> = self
            .per_pid
            .keys()
            .copied()
            .filter(|p| !alive(*p))
            .collect();
        let mut dropped = 0;
        for pid in dead {
            if let Some(sessions) = self.per_pid.remove(&pid) {
                for ip in sessions.into_values() {
                    self.forget(ip, 1);
                    dropped += 1;
                }
            }
        }
        dropped
    }
}

/// Failed authentications from one address that lock it out (fail2ban's
/// numbers: a handful of typing mistakes pass, a guesser does not).
pub const AUTH_FAILURE_LIMIT: usize = 5;
/// The window in which [`AUTH_FAILURE_LIMIT`] failures lock an address out.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// How long an address stays locked out.
pub const AUTH_LOCKOUT: Duration = Duration::from_secs(600);
/// Addresses tracked at most; beyond, the one quiet for longest is forgotten.
const AUTH_TRACKED_MAX: usize = 100_000;

/// Failed authentications per client address, across every smtpd process.
#[derive(Debug, Default)]
pub struct AuthBrake {
    per_ip: HashMap<IpAddr, Failures>,
}

/// One address's record.
#[derive(Debug, Default)]
struct Failures {
    /// When its failures within the window happened, oldest first.
    recent: VecDeque<Instant>,
    /// Locked out until then.
    locked_until: Option<Instant>,
}

impl Failures {
    /// The lock-out still in force at `now`, if any.
    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= AUTH_FAILURE_WINDOW)
        {
            self.recent.pop_front();
        }
        if self.locked(now).is_none() {
            self.locked_until = None;
        }
    }

    fn last(&self) -> Option<Instant> {
        self.recent.back().copied().max(self.locked_until)
    }
}

/// What the brake says about an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Braking {
    /// Failures counted within the window (the one just reported included).
    pub failures: u32,
    /// Locked out for this long still.
    pub locked: Option<Duration>,
    /// This failure is the one that locked it out.
    pub newly_locked: bool,
}

impl AuthBrake {
    /// The state of `ip` at `now`, nothing recorded.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Braking {
        let Some(f) = self.per_ip.get_mut(&ip) else {
            return Braking {
                failures: 0,
                locked: None,
                newly_locked: false,
            };
        };
        f.forget_old(now);
        Braking {
            failures: f.recent.len() as u32,
            locked: f.locked(now),
            newly_locked: false,
        }
    }

    /// Records a failed authentication from `ip` at `now`. The
    /// [`AUTH_FAILURE_LIMIT`]-th within the window locks the address out
    /// for [`AUTH_LOCKOUT`] and starts its count afresh for afterwards; a
    /// failure reported while it is locked out (checked just before the
    /// lock came) changes nothing.
    pub fn fail(&mut self, ip: IpAddr, now: Instant) -> Braking {
        if !self.per_ip.contains_key(&ip) && self.per_ip.len() >= AUTH_TRACKED_MAX {
            self.sweep(now);
            if self.per_ip.len() >= AUTH_TRACKED_MAX {
                let quietest = self
                    .per_ip
                    .iter()
                    .min_by_key(|(_, f)| f.last())
                    .map(|(ip, _)| *ip);
                if let Some(q) = quietest {
                    self.per_ip.remove(&q);
                }
            }
        }
        let f = self.per_ip.entry(ip).or_default();
        f.forget_old(now);
        if let Some(left) = f.locked(now) {
            return Braking {
                failures: f.recent.len() as u32,
                locked: Some(left),
                newly_locked: false,
            };
        }
        f.recent.push_back(now);
        let failures = f.recent.len() as u32;
        if f.recent.len() < AUTH_FAILURE_LIMIT {
            return Braking {
                failures,
                locked: None,
                newly_locked: false,
            };
        }
        f.recent.clear();
        f.locked_until = Some(now + AUTH_LOCKOUT);
        Braking {
            failures,
            locked: Some(AUTH_LOCKOUT),
            newly_locked: true,
        }
    }

    /// Forgets addresses with no failure in the window and no lock-out.
    pub fn sweep(&mut self, now: Instant) {
        self.per_ip.retain(|_, f| {
            f.forget_old(now);
            !f.recent.is_empty() || f.locked_until.is_some()
        });
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.per_ip.len()
    }
}

/// True while `/proc/<pid>` exists (visible whatever the process's user).
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stress_mode_starts_at_80_percent_and_ends_below_60() {
        let mut s = Stress::default();
        let steps: Vec<(u32, Option<bool>, bool)> = [7, 8, 9, 7, 6, 5, 8, 0]
            .into_iter()
            .map(|open| (open, s.update(open, 10), s.on()))
            .collect();
        assert_eq!(
            steps,
            [
                (7, None, false),
                (8, Some(true), true),
                (9, None, true),
                (7, None, true),
                (6, None, true),
                (5, Some(false), false),
                (8, Some(true), true),
                (0, Some(false), false),
            ]
        );
        // A limit of one connection: its only connection is the stress.
        let mut s = Stress::default();
        assert_eq!(s.update(1, 1), Some(true));
    }

    #[test]
    fn limits_and_sweep() {
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let mut anvil = Anvil::default();
        assert_eq!(anvil.connect(10, "s1", a, 3, 2), Ok(()));
        assert_eq!(anvil.connect(11, "s2", a, 3, 2), Ok(()));
        assert_eq!(anvil.connect(11, "s3", a, 3, 2), Err(Refusal::PerIp(2)));
        assert_eq!(anvil.connect(11, "s4", b, 3, 2), Ok(()));
        assert_eq!(anvil.connect(11, "s5", b, 3, 2), Err(Refusal::Total(3)));
        anvil.disconnect(10, "s1");
        assert_eq!(anvil.connect(12, "s6", a, 3, 2), Ok(()));
        // Process 11 dies holding one connection from a and one from b.
        assert_eq!(anvil.sweep(|pid| pid != 11), 2);
        assert_eq!(anvil.connect(13, "s7", b, 3, 2), Ok(()));
        assert_eq!(anvil.connect(13, "s8", a, 3, 2), Ok(()));
        assert_eq!(anvil.connect(13, "s9", a, 3, 2), Err(Refusal::Total(3)));
        // Goodbyes of sessions never counted (refused, or before a router
        // restart) change nothing.
        anvil.disconnect(99, "s1");
        anvil.disconnect(13, "s9");
        assert_eq!(anvil.open(), 3);
        assert_eq!(anvil.connect(14, "s10", a, 3, 2), Err(Refusal::Total(3)));
    }

    #[test]
    fn five_failures_in_the_window_lock_an_address_out_for_a_while() {
        let a: IpAddr = "127.0.0.5".parse().expect("ip");
        let b: IpAddr = "127.0.0.6".parse().expect("ip");
        let t0 = Instant::now();
        let mut brake = AuthBrake::default();
        for n in 1..AUTH_FAILURE_LIMIT as u32 {
            let v = brake.fail(a, t0 + Duration::from_secs(u64::from(n)));
            assert_eq!((v.failures, v.locked, v.newly_locked), (n, None, false));
        }
        assert_eq!(brake.check(b, t0).failures, 0, "another address");
        let fifth = t0 + Duration::from_secs(5);
        let v = brake.fail(a, fifth);
        assert_eq!(v.failures, 5);
        assert_eq!(v.locked, Some(AUTH_LOCKOUT));
        assert!(v.newly_locked);
        // Locked: a check says so, a late failure changes nothing.
        let later = fifth + Duration::from_secs(60);
        assert_eq!(
            brake.check(a, later).locked,
            Some(AUTH_LOCKOUT - Duration::from_secs(60))
        );
        let v = brake.fail(a, later);
        assert!(v.locked.is_some() && !v.newly_locked);
        // After the lock-out, a fresh count.
        let after = fifth + AUTH_LOCKOUT;
        let v = brake.check(a, after);
        assert_eq!((v.failures, v.locked), (0, None));
        assert_eq!(brake.fail(a, after).failures, 1);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let a: IpAddr = "127.0.0.5".parse().expect("ip");
        let t0 = Instant::now();
        let mut brake = AuthBrake::default();
        for n in 0..4 {
            brake.fail(a, t0 + Duration::from_secs(n));
        }
        let late = t0 + AUTH_FAILURE_WINDOW + Duration::from_secs(2);
        let v = brake.fail(a, late);
        assert_eq!(
            (v.failures, v.locked),
            (2, None),
            "two of the first four expired"
        );
        brake.sweep(late + AUTH_FAILURE_WINDOW);
        assert_eq!(brake.tracked(), 0);
    }

    #[test]
    fn a_session_is_counted_once_and_forgotten_once() {
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let mut anvil = Anvil::default();
        assert_eq!(anvil.connect(10, "s1", a, 10, 2), Ok(()));
        // The same connect again (smtpd gave up waiting and the router got it
        // twice): still one connection.
        assert_eq!(anvil.connect(10, "s1", a, 10, 2), Ok(()));
        assert_eq!(anvil.open(), 1);
        anvil.disconnect(10, "s1");
        anvil.disconnect(10, "s1");
        assert_eq!(anvil.open(), 0);
        assert_eq!(anvil.connect(10, "s2", a, 10, 2), Ok(()));
        assert_eq!(anvil.connect(10, "s3", a, 10, 2), Ok(()));
    }
}
