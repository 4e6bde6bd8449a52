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

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How often the counts of dead smtpd processes are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// The counts.
#[derive(Debug, Default)]
pub struct Anvil {
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

/// True while `/proc/<pid>` exists (visible whatever the process's user).
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

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
