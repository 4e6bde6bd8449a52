//! Restart directives and the persisted restart schedule (SPEC §7, seed §IX).
//!
//! Directives are found anywhere in an update mail's body, case-insensitive,
//! with any run of white space between the words:
//! - `restart spamwars now`: each server is restarted once its copy is
//!   delivered — unless postern (re)started it less than
//!   `update.restart_interval` ago (the seed's 5 minutes), then at that start
//!   plus the interval;
//! - `restart spamwars at yyyyMMddHHmm`: at that local time. A malformed or
//!   impossible date is logged and ignored.
//!
//! The schedule lives in `state_dir/restarts` (written durably, like the
//! spool). Each restart is keyed by its origin (message, directive, server),
//! so that a copy delivered twice (a crash between the backend's 250 and the
//! state write) schedules it once. A restart is marked `running` before the
//! master is asked to run it and `done`/`failed` after: one found `running`
//! at start-up ran or not during a crash and is marked `unknown`, never run
//! again — each restart runs at most once, and exactly once when nothing
//! crashes in that instant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use postern_shared::ipc::proto::Attrs;
use postern_shared::runtime::time::{self, Day};

use crate::spool::write_durably;

/// A directive found in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `restart spamwars now`.
    Now,
    /// `restart spamwars at …`, as Unix seconds.
    At(u64),
}

/// The directives of a body, and the malformed `at` dates found.
pub fn directives(body: &[u8]) -> (Vec<Directive>, Vec<String>) {
    let text: String = String::from_utf8_lossy(body).to_ascii_lowercase();
    let words: Vec<&str> = text.split_whitespace().collect();
    let word = |i: usize| {
        words
            .get(i)
            .map(|w| w.trim_end_matches(['.', ',', ';', '!']))
    };
    let mut found = Vec::new();
    let mut bad = Vec::new();
    for i in 0..words.len() {
        if word(i) != Some("restart") || word(i + 1) != Some("spamwars") {
            continue;
        }
        let directive = match word(i + 2) {
            Some("now") => Directive::Now,
            Some("at") => {
                let stamp = word(i + 3).unwrap_or_default();
                match local_time(stamp) {
                    Some(t) => Directive::At(t),
                    None => {
                        bad.push(stamp.to_string());
                        continue;
                    }
                }
            }
            _ => continue,
        };
        if !found.contains(&directive) {
            found.push(directive);
        }
    }
    (found, bad)
}

/// `yyyyMMddHHmm` in local time → Unix seconds; `None` for anything else
/// (an impossible date such as 30 February included).
pub fn local_time(stamp: &str) -> Option<u64> {
    if stamp.len() != 12 || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| stamp[r].parse::<u32>().ok();
    let (y, mo, d, h, mi) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?, n(10..12)?);
    let day = Day::new(i32::try_from(y).ok()?, mo, d)?;
    u64::try_from(time::from_local(day, h, mi, 0)?).ok()
}

/// Where a restart stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for its time.
    Scheduled,
    /// The master was asked to run it.
    Running,
    /// The command exited 0.
    Done,
    /// The command failed, timed out, or could not run.
    Failed,
    /// Cancelled by `postern restarts cancel`.
    Cancelled,
    /// It was running when the updater stopped: outcome unknown, not run again.
    Unknown,
}

impl State {
    /// The spelling in the file and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Scheduled => "scheduled",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
            State::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "scheduled" => State::Scheduled,
            "running" => State::Running,
            "done" => State::Done,
            "failed" => State::Failed,
            "cancelled" => State::Cancelled,
            "unknown" => State::Unknown,
            _ => return None,
        })
    }
}

/// One scheduled restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Short id for the CLI.
    pub id: String,
    /// The server's name.
    pub server: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Where it stands.
    pub state: State,
    /// `<message id> now|at` — also the key that keeps it unique per server.
    pub origin: String,
    /// The outcome: exit status or why it failed.
    pub result: String,
}

/// The schedule and the last restart of each server.
pub struct Schedule {
    dir: PathBuf,
    /// Every restart, oldest first.
    pub restarts: Vec<Restart>,
    /// When postern last ran each server's restart command (Unix seconds).
    pub last: HashMap<String, u64>,
}

const FILE: &str = "restarts";

impl Schedule {
    /// Loads `state_dir/restarts`; running entries become `unknown`.
    pub fn load(state_dir: &Path) -> anyhow::Result<Schedule> {
        std::fs::create_dir_all(state_dir)?;
        let mut s = Schedule {
            dir: state_dir.to_path_buf(),
            restarts: Vec::new(),
            last: HashMap::new(),
        };
        let path = state_dir.join(FILE);
        if path.exists() {
            let bytes = std::fs::read(&path)?;
            let a = postern_shared::ipc::proto::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                .unwrap_or_default();
            for i in 0.. {
                let k = |f: &str| format!("restart.{i}.{f}");
                let Some(id) = a.get(&k("id")) else { break };
                s.restarts.push(Restart {
                    id: id.to_string(),
                    server: a.get(&k("server")).unwrap_or_default().to_string(),
                    at: a.get(&k("at")).and_then(|v| v.parse().ok()).unwrap_or(0),
                    state: a
                        .get(&k("state"))
                        .and_then(State::parse)
                        .unwrap_or(State::Unknown),
                    origin: a.get(&k("origin")).unwrap_or_default().to_string(),
                    result: a.get(&k("result")).unwrap_or_default().to_string(),
                });
            }
            for v in a.get_all("last") {
                if let Some((t, server)) = v.split_once(' ') {
                    if let Ok(t) = t.parse() {
                        s.last.insert(server.to_string(), t);
                    }
                }
            }
        }
        let mut changed = false;
        for r in &mut s.restarts {
            if r.state == State::Running {
                tracing::warn!(
                    "restart {} of {} was running when the updater stopped: outcome unknown, not run again",
                    r.id,
                    r.server
                );
                r.state = State::Unknown;
                changed = true;
            }
        }
        if changed {
            s.save()?;
        }
        Ok(s)
    }

    /// Writes the schedule durably.
    pub fn save(&self) -> anyhow::Result<()> {
        let mut a = Attrs::new();
        for (i, r) in self.restarts.iter().enumerate() {
            a.push(&format!("restart.{i}.id"), &r.id);
            a.push(&format!("restart.{i}.server"), &r.server);
            a.push(&format!("restart.{i}.at"), r.at);
            a.push(&format!("restart.{i}.state"), r.state.as_str());
            a.push(&format!("restart.{i}.origin"), &r.origin);
            a.push(
                &format!("restart.{i}.result"),
                r.result.replace(['\r', '\n', '\0'], " "),
            );
        }
        for (server, t) in &self.last {
            a.push("last", format!("{t} {server}"));
        }
        write_durably(&self.dir, FILE, &a.encode()?)
    }

    /// Adds a restart unless one with the same origin and server exists.
    /// Returns the new restart, if added.
    pub fn add(&mut self, server: &str, at: u64, origin: &str) -> Option<Restart> {
        if self
            .restarts
            .iter()
            .any(|r| r.server == server && r.origin == origin)
        {
            return None;
        }
        let r = Restart {
            id: postern_shared::runtime::logging::new_id(),
            server: server.to_string(),
            at,
            state: State::Scheduled,
            origin: origin.to_string(),
            result: String::new(),
        };
        self.restarts.push(r.clone());
        Some(r)
    }

    /// When "restart now" may run for `server`: now, or its last restart plus `interval`.
    pub fn now_for(&self, server: &str, now: u64, interval: u64) -> u64 {
        match self.last.get(server) {
            Some(&t) if t + interval > now => t + interval,
            _ => now,
        }
    }

    /// Scheduled restarts whose time has come.
    pub fn due(&self, now: u64) -> Vec<String> {
        self.restarts
            .iter()
            .filter(|r| r.state == State::Scheduled && r.at <= now)
            .map(|r| r.id.clone())
            .collect()
    }

    /// The earliest scheduled time.
    pub fn next(&self) -> Option<u64> {
        self.restarts
            .iter()
            .filter(|r| r.state == State::Scheduled)
            .map(|r| r.at)
            .min()
    }

    /// The restart with this id.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Restart> {
        self.restarts.iter_mut().find(|r| r.id == id)
    }

    /// Forgets finished restarts older than `keep` seconds.
    pub fn prune(&mut self, now: u64, keep: u64) {
        self.restarts
            .retain(|r| matches!(r.state, State::Scheduled | State::Running) || r.at + keep > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_directives() {
        let body = b"Subject: update\r\n\r\nPlease RESTART  SpamWars\r\nnow, thanks.\r\nrestart spamwars at 203001021530\r\nrestart spamwars at 20300230\r\nrestart spamwars at 203002301200\r\n";
        let (found, bad) = directives(body);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0], Directive::Now);
        let Directive::At(t) = found[1] else {
            panic!("{found:?}")
        };
        assert_eq!(Some(t), local_time("203001021530"));
        assert_eq!(
            bad,
            vec!["20300230".to_string(), "203002301200".to_string()]
        );
        assert_eq!(directives(b"restart spamwars now").0, vec![Directive::Now]);
        assert!(directives(b"do not restart the spamwars server")
            .0
            .is_empty());
    }

    #[test]
    fn local_times() {
        let a = local_time("203001021530").expect("valid");
        let b = local_time("203001021531").expect("valid");
        assert_eq!(b - a, 60);
        for bad in [
            "203013011200",
            "203001321200",
            "203001012400",
            "203001011260",
            "2030010112",
            "20300101120a",
        ] {
            assert_eq!(local_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn schedule_is_idempotent_and_persists() {
        let dir = std::env::temp_dir().join(format!("postern-sched-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = Schedule::load(&dir).expect("load");
        assert!(s.add("one", 100, "M1 now").is_some());
        assert!(
            s.add("one", 100, "M1 now").is_none(),
            "same origin, same server"
        );
        assert!(s.add("two", 100, "M1 now").is_some());
        s.last.insert("one".into(), 1000);
        assert_eq!(s.now_for("one", 1100, 300), 1300);
        assert_eq!(s.now_for("one", 1400, 300), 1400);
        assert_eq!(s.now_for("two", 1100, 300), 1100);
        let id = s.restarts[0].id.clone();
        s.get_mut(&id).expect("exists").state = State::Running;
        s.save().expect("save");
        let again = Schedule::load(&dir).expect("reload");
        assert_eq!(
            again.restarts[0].state,
            State::Unknown,
            "running at a crash: never run twice"
        );
        assert_eq!(again.restarts[1].state, State::Scheduled);
        assert_eq!(again.last.get("one"), Some(&1000));
        assert_eq!(again.due(100), vec![again.restarts[1].id.clone()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
