//! The router's statistics: counts per local day, in memory and in
//! `process.state_dir/stats` (format and counters: [`postern_shared::stats`]).
//!
//! - `request=count sid= <counter>=<n>…` (smtpd, once per session, when it
//!   ends): the known counters are added to today's local date; unknown
//!   attributes are ignored. Answer `status=ok`.
//! - `request=stats` (`postern stats`): `status=ok` with the file's text as
//!   the body, including counts not yet written.
//!
//! The file is loaded at start (days older than
//! [`postern_shared::stats::KEEP_DAYS`] pruned) and rewritten durably every
//! [`SAVE_EVERY`] when something changed, and at stop. A router killed with
//! SIGKILL loses at most the counts of the last [`SAVE_EVERY`]. A file that
//! cannot be read is set aside as `stats.unreadable` (never overwritten) and
//! counting starts again from zero; the log says so.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::Outcome;
use postern_shared::runtime::time::Clock;
use postern_shared::stats::{Counter, Counts, Stats, FILE};

/// How often changed counts are written to disk.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// The counts and where they are kept.
pub struct Recorder {
    dir: PathBuf,
    live: Mutex<Live>,
    /// Held while the file is written: the periodic write and the one at
    /// stop share a temporary file name.
    writing: Mutex<()>,
    /// The last write failed (logged once, until a write succeeds).
    failing: AtomicBool,
    /// Which local day it is (a test sets its own).
    clock: Clock,
}

struct Live {
    stats: Stats,
    /// Changed since the last write.
    dirty: bool,
}

impl Recorder {
    /// Loads `state_dir/stats`; counts go to the local days of `clock`.
    pub fn load(state_dir: PathBuf, clock: Clock) -> Recorder {
        let stats = match Stats::load(&state_dir) {
            Ok(mut s) => {
                let pruned = s.prune(clock.today());
                if pruned > 0 {
                    tracing::info!("statistics: {pruned} day(s) older than the retention pruned");
                }
                s
            }
            Err(e) => {
                let aside = state_dir.join(format!("{FILE}.unreadable"));
                let moved = std::fs::rename(state_dir.join(FILE), &aside);
                tracing::error!(
                    "statistics file unusable ({e}): {}; counting starts from zero",
                    match moved {
                        Ok(()) => format!("set aside as {}", aside.display()),
                        Err(e) => format!("cannot set it aside: {e}"),
                    }
                );
                Stats::default()
            }
        };
        Recorder {
            dir: state_dir,
            live: Mutex::new(Live {
                stats,
                dirty: false,
            }),
            writing: Mutex::new(()),
            failing: AtomicBool::new(false),
            clock,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `request=count`: adds the request's counters to today.
    pub fn count(&self, id: &str, counts: &Counts) -> Attrs {
        if !counts.is_empty() {
            let mut live = self.live();
            live.stats.add(self.clock.today(), counts);
            live.dirty = true;
        }
        Outcome::Ok.reply(Some(id))
    }

    /// Adds one to a counter today (the router's own events: policy
    /// refusals of the policy server, greylisting passes).
    /// Records today's greylist list sizes (levels: each replaces the last).
    pub fn set_sizes(&self, pending: u64, passed: u64) {
        let today = self.clock.today();
        let mut live = self.live();
        let day = live.stats.days.entry(today).or_default();
        day.set_named(postern_shared::stats::PENDING_SIZE, pending);
        day.set_named(postern_shared::stats::PASSED_SIZE, passed);
        live.dirty = true;
    }

    pub fn count_one(&self, counter: Counter) {
        let mut counts = Counts::default();
        counts.add(counter, 1);
        self.count("", &counts);
    }

    /// `request=stats`: every day kept, as the file's text.
    pub fn report(&self, id: &str) -> Attrs {
        let text = self.live().stats.encode();
        Outcome::Ok.reply(Some(id)).with_body(text.into_bytes())
    }

    /// The sum over every day kept (the metrics' totals).
    pub fn total(&self) -> Counts {
        self.live().stats.total()
    }

    /// Writes the file if something changed since the last write. Blocks on
    /// the disk: call it from a blocking thread, or at stop.
    pub fn save(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let snapshot = {
            let mut live = self.live();
            if !live.dirty {
                return;
            }
            live.stats.prune(self.clock.today());
            live.dirty = false;
            live.stats.clone()
        };
        match snapshot.save(&self.dir) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("statistics written again to {}", self.dir.display());
                }
            }
            Err(e) => {
                self.live().dirty = true;
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "cannot write the statistics to {}: {e}; kept in memory, retrying",
                        self.dir.join(FILE).display()
                    );
                }
            }
        }
    }
}

/// Writes changed counts every [`SAVE_EVERY`], off the runtime's thread.
pub async fn save_loop(recorder: Arc<Recorder>) {
    let mut tick = tokio::time::interval(SAVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = recorder.clone();
        let _ = tokio::task::spawn_blocking(move || r.save()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_shared::ipc;

    /// A `request=count` as the router's connection decodes and answers it.
    fn count(rec: &Recorder, req: &Attrs) -> Attrs {
        let Ok(ipc::RouterRequest::Count { counts, .. }) = ipc::RouterRequest::decode(req) else {
            panic!("a count request");
        };
        rec.count(req.get("id").unwrap_or(""), &counts)
    }

    fn sum(rec: &Recorder) -> Counts {
        rec.live().stats.total()
    }

    #[test]
    fn counts_reports_and_persists() {
        let dir = std::env::temp_dir().join(format!("postern-router-stats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let rec = Recorder::load(dir.clone(), Clock::system());
        let req = ipc::request(ipc::RouterVerb::Count)
            .with("id", 4)
            .with("sid", "S1")
            .with("connections", 1)
            .with("forwarded.ip-addr", 1)
            .with("bytes", 300)
            .with("nonsense", 5)
            .with("messages", "many");
        let reply = count(&rec, &req);
        assert_eq!(reply.get("id"), Some("4"));
        assert!(Outcome::is_ok(&reply));
        count(&rec, &req);
        let total = sum(&rec);
        assert_eq!(total.get(Counter::Connections), 2);
        assert_eq!(total.get(Counter::Bytes), 600);
        assert_eq!(total.get(Counter::Messages), 0);
        assert_eq!(
            total.iter().count(),
            3,
            "unknown names and bad numbers ignored"
        );
        let body = rec.report("").body.expect("body");
        let text = String::from_utf8(body).expect("utf-8");
        assert_eq!(Stats::decode(&text).expect("decodes").total(), total);

        assert!(!dir.join(FILE).exists(), "written by save, not by count");
        rec.save();
        assert_eq!(sum(&Recorder::load(dir.clone(), Clock::system())), total);

        std::fs::write(dir.join(FILE), "not statistics\n").expect("write");
        let fresh = Recorder::load(dir.clone(), Clock::system());
        assert!(sum(&fresh).is_empty());
        assert!(
            dir.join("stats.unreadable").exists(),
            "kept for the operator"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn counts_go_to_the_clock_s_local_day_and_old_days_are_pruned() {
        use postern_shared::runtime::time::{from_local, ManualClock};
        use postern_shared::stats::{Day, KEEP_DAYS};
        let dir = std::env::temp_dir().join(format!("postern-router-days-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        // 23:59 local time on 2026-01-05.
        let first = Day::new(2026, 1, 5).expect("a date");
        let at = from_local(first, 23, 59, 0).expect("a local time");
        let hand = ManualClock::new(at * 1000);
        let rec = Recorder::load(dir.clone(), hand.clock());
        let one = ipc::request(ipc::RouterVerb::Count).with("connections", 1);
        count(&rec, &one);
        hand.advance(Duration::from_secs(120));
        count(&rec, &one);
        count(&rec, &one);
        let days: Vec<(Day, u64)> = rec
            .live()
            .stats
            .days
            .iter()
            .map(|(d, c)| (*d, c.get(Counter::Connections)))
            .collect();
        assert_eq!(days, [(first, 1), (first.plus(1), 2)]);
        // A year and more later, the save prunes the first days away.
        hand.advance(Duration::from_secs(86_400 * KEEP_DAYS as u64));
        count(&rec, &one);
        rec.save();
        let kept: Vec<Day> = rec.live().stats.days.keys().copied().collect();
        assert_eq!(kept, [first.plus(1), first.plus(KEEP_DAYS + 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
