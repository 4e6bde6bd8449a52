//! Greylisting in the router (SPEC §8): the embedded store and the step of
//! the policy that asks it.
//!
//! The store is a redb file, `state_dir/greylist.redb`, owned by one thread
//! of the router: requests reach it over a channel and are answered on a
//! oneshot, so the async runtime never blocks on the file. Everything the
//! thread finds waiting goes in one write transaction; commits are not
//! synced one by one (a crash loses at most the last second of attempts:
//! such a sender is greylisted once more, nothing is lost), and a synced
//! commit follows every second there was a change, and at stop. Tables:
//! `meta` (the schema version), `pending` and `passed` (triplet key →
//! first, last, count as three big-endian u64).
//!
//! A store that fails or does not answer within [`STORE_TIMEOUT`] costs the
//! recipient what `on_store_error` says (accept, or 451 4.3.0); after
//! [`BREAKER_FAILURES`] failures in a row the store is not asked for
//! [`BREAKER_OPEN`], so an outage adds no wait per recipient. The log, the
//! status and the metrics say the store is degraded meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use postern_shared::greylist::{step, Passed, Pending, Record, Step, Timings, Triplet};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::oneshot;

/// The store answers each request within this, or it counts as failed.
pub const STORE_TIMEOUT: Duration = Duration::from_millis(300);
/// Failures in a row that open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker keeps the store out.
pub const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// A whitelisted triplet's renewal is written at most this often (ms).
pub const RENEW_EVERY: u64 = 60_000;
/// The schema this code reads and writes.
const SCHEMA: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("pending");
const PASSED: TableDefinition<&str, &[u8]> = TableDefinition::new("passed");
/// The manual whitelist: `ip 192.0.2.0/24`, `from a@b.test`, `to c@d.test` → comment.
const WHITELIST: TableDefinition<&str, &str> = TableDefinition::new("whitelist");

/// A request to the store's thread.
enum Request {
    /// One attempt: the step it takes (stored unless `dry`).
    Attempt {
        key: String,
        now: u64,
        timings: Timings,
        dry: bool,
        reply: oneshot::Sender<Result<Step, String>>,
    },
    /// Drops expired records; answers how many were dropped and the list sizes.
    Purge {
        now: u64,
        timings: Timings,
        reply: oneshot::Sender<Result<(u64, u64, u64), String>>,
    },
    /// Every entry of both lists (the search and list views).
    Entries(oneshot::Sender<Result<Vec<Listed>, String>>),
    /// The manual whitelist: add (with its comment) or remove an entry,
    /// then answer the whole list.
    Whitelist {
        change: Option<(String, Option<String>)>,
        reply: oneshot::Sender<Result<WhitelistAnswer, String>>,
    },
    /// Records and whitelist entries from an export, as they are.
    Import {
        entries: Vec<Listed>,
        whitelist: Vec<(String, String)>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Sync what is committed, then stop.
    Stop(oneshot::Sender<()>),
}

/// Whether the whitelist changed, and all of it (key → comment).
pub type WhitelistAnswer = (bool, Vec<(String, String)>);

/// One entry as the views show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// In the auto-whitelist (else pending).
    pub passed: bool,
    /// Its triplet.
    pub triplet: Triplet,
    /// First attempt (pending) or when it passed (Unix ms).
    pub first: u64,
    /// Latest attempt or accepted mail (Unix ms).
    pub last: u64,
    /// Attempts, or mails since it passed.
    pub count: u64,
}

/// The embedded store: a handle on its thread.
pub struct Embedded {
    tx: std::sync::mpsc::Sender<Request>,
    path: PathBuf,
}

fn encode(first: u64, last: u64, count: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[..8].copy_from_slice(&first.to_be_bytes());
    b[8..16].copy_from_slice(&last.to_be_bytes());
    b[16..].copy_from_slice(&count.to_be_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, u64, u64)> {
    let n = |r: std::ops::Range<usize>| Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?));
    Some((n(0..8)?, n(8..16)?, n(16..24)?))
}

impl Embedded {
    /// Opens (or creates) the store at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<Embedded, String> {
        let db =
            Database::create(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let version = (|| -> Result<u64, redb::Error> {
            let w = db.begin_write()?;
            let v = {
                let mut meta = w.open_table(META)?;
                let found = meta.get("schema")?.map(|g| g.value());
                if found.is_none() {
                    meta.insert("schema", SCHEMA)?;
                }
                w.open_table(PENDING)?;
                w.open_table(PASSED)?;
                w.open_table(WHITELIST)?;
                found.unwrap_or(SCHEMA)
            };
            w.commit()?;
            Ok(v)
        })()
        .map_err(|e| format!("cannot set up {}: {e}", path.display()))?;
        if version != SCHEMA {
            return Err(format!(
                "{}: schema {version}, this postern reads schema {SCHEMA}",
                path.display()
            ));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("greylist-store".into())
            .spawn(move || serve(db, rx))
            .map_err(|e| format!("cannot start the store's thread: {e}"))?;
        Ok(Embedded {
            tx,
            path: path.to_path_buf(),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One attempt of `t` at `now`.
    pub async fn attempt(
        &self,
        t: &Triplet,
        now: u64,
        timings: Timings,
        dry: bool,
    ) -> Result<Step, String> {
        self.call(|reply| Request::Attempt {
            key: t.key(),
            now,
            timings,
            dry,
            reply,
        })
        .await
    }

    /// Drops what expired; returns (dropped, pending, passed).
    pub async fn purge(&self, now: u64, timings: Timings) -> Result<(u64, u64, u64), String> {
        self.call(|reply| Request::Purge {
            now,
            timings,
            reply,
        })
        .await
    }

    /// Every entry of both lists.
    pub async fn entries(&self) -> Result<Vec<Listed>, String> {
        self.call(Request::Entries).await
    }

    /// Changes the manual whitelist (`(key, Some(comment))` adds, `(key,
    /// None)` removes) and answers whether it changed and the whole list.
    pub async fn whitelist(
        &self,
        change: Option<(String, Option<String>)>,
    ) -> Result<WhitelistAnswer, String> {
        self.call(|reply| Request::Whitelist { change, reply })
            .await
    }

    /// Adds the records and whitelist entries of an export.
    pub async fn import(
        &self,
        entries: Vec<Listed>,
        whitelist: Vec<(String, String)>,
    ) -> Result<u64, String> {
        self.call(|reply| Request::Import {
            entries,
            whitelist,
            reply,
        })
        .await
    }

    /// Sends the request `make` builds around a reply channel to the
    /// store's thread and waits for its answer.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Request,
    ) -> Result<T, String> {
        let gone = || "the store's thread is gone".to_string();
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Syncs and stops the thread (at the router's stop).
    pub async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Stop(reply)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

/// A reply to send once the batch's transaction is committed (or failed).
type Answer = Box<dyn FnOnce(Result<(), String>)>;

/// The store's thread: batches of requests, one transaction each.
fn serve(db: Database, rx: std::sync::mpsc::Receiver<Request>) {
    let mut dirty = false;
    loop {
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if dirty && sync(&db).is_ok() {
                    dirty = false;
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = sync(&db);
                return;
            }
        };
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 256 {
                break;
            }
        }
        let mut stop = None;
        let mut answers: Vec<Answer> = Vec::new();
        let result = (|| -> Result<(), redb::Error> {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::None)?;
            {
                let mut pending = w.open_table(PENDING)?;
                let mut passed = w.open_table(PASSED)?;
                for req in batch {
                    match req {
                        Request::Attempt {
                            key,
                            now,
                            timings,
                            dry,
                            reply,
                        } => {
                            let record =
                                match passed.get(key.as_str())?.and_then(|g| decode(g.value())) {
                                    Some((first, last, count)) => {
                                        Some(Record::Passed(Passed { first, last, count }))
                                    }
                                    None => pending
                                        .get(key.as_str())?
                                        .and_then(|g| decode(g.value()))
                                        .map(|(first, last, count)| {
                                            Record::Pending(Pending { first, last, count })
                                        }),
                                };
                            let s = step(record, now, &timings);
                            // A renewal within a minute of the last one is
                            // not written: the auto-whitelist loses at most a
                            // minute of its 32 days, and a busy correspondent
                            // costs no write per mail.
                            let fresh = matches!(
                                (record, s),
                                (Some(Record::Passed(old)), Step::Renew(_))
                                    if now < old.last.saturating_add(RENEW_EVERY)
                            );
                            if !dry && !fresh {
                                match s {
                                    Step::Greylist { record: p, .. }
                                    | Step::TooEarly { record: p, .. } => {
                                        passed.remove(key.as_str())?;
                                        pending.insert(
                                            key.as_str(),
                                            encode(p.first, p.last, p.count).as_slice(),
                                        )?;
                                    }
                                    Step::Pass(p) | Step::Renew(p) => {
                                        pending.remove(key.as_str())?;
                                        passed.insert(
                                            key.as_str(),
                                            encode(p.first, p.last, p.count).as_slice(),
                                        )?;
                                    }
                                }
                            }
                            answers.push(Box::new(move |r| {
                                let _ = reply.send(r.map(|()| s));
                            }));
                        }
                        Request::Purge {
                            now,
                            timings,
                            reply,
                        } => {
                            let mut dropped = 0u64;
                            for (table, is_pending) in [(&mut pending, true), (&mut passed, false)]
                            {
                                let old: Vec<String> = table
                                    .iter()?
                                    .filter_map(|e| e.ok())
                                    .filter_map(|(k, v)| {
                                        let (first, last, count) = decode(v.value())?;
                                        let r = if is_pending {
                                            Record::Pending(Pending { first, last, count })
                                        } else {
                                            Record::Passed(Passed { first, last, count })
                                        };
                                        postern_shared::greylist::expired(&r, now, &timings)
                                            .then(|| k.value().to_string())
                                    })
                                    .collect();
                                for k in &old {
                                    table.remove(k.as_str())?;
                                }
                                dropped += old.len() as u64;
                            }
                            let sizes = (dropped, pending.len()?, passed.len()?);
                            answers.push(Box::new(move |r| {
                                let _ = reply.send(r.map(|()| sizes));
                            }));
                        }
                        Request::Entries(reply) => {
                            let mut all = Vec::new();
                            for (table, passed_list) in [(&pending, false), (&passed, true)] {
                                for e in table.iter()? {
                                    let (k, v) = e?;
                                    if let (Some(triplet), Some((first, last, count))) =
                                        (Triplet::from_key(k.value()), decode(v.value()))
                                    {
                                        all.push(Listed {
                                            passed: passed_list,
                                            triplet,
                                            first,
                                            last,
                                            count,
                                        });
                                    }
                                }
                            }
                            answers.push(Box::new(move |r| {
                                let _ = reply.send(r.map(|()| all));
                            }));
                        }
                        Request::Whitelist { change, reply } => {
                            let mut list = w.open_table(WHITELIST)?;
                            let changed = match &change {
                                Some((key, Some(comment))) => {
                                    list.insert(key.as_str(), comment.as_str())?.is_none()
                                }
                                Some((key, None)) => list.remove(key.as_str())?.is_some(),
                                None => false,
                            };
                            let mut all = Vec::new();
                            for e in list.iter()? {
                                let (k, v) = e?;
                                all.push((k.value().to_string(), v.value().to_string()));
                            }
                            answers.push(Box::new(move |r| {
                                let _ = reply.send(r.map(|()| (changed, all)));
                            }));
                        }
                        Request::Import {
                            entries,
                            whitelist,
                            reply,
                        } => {
                            let n = entries.len() as u64 + whitelist.len() as u64;
                            for e in &entries {
                                let key = e.triplet.key();
                                let table = if e.passed { &mut passed } else { &mut pending };
                                table.insert(
                                    key.as_str(),
                                    encode(e.first, e.last, e.count).as_slice(),
                                )?;
                            }
                            let mut list = w.open_table(WHITELIST)?;
                            for (k, c) in &whitelist {
                                list.insert(k.as_str(), c.as_str())?;
                            }
                            answers.push(Box::new(move |r| {
                                let _ = reply.send(r.map(|()| n));
                            }));
                        }
                        Request::Stop(reply) => stop = Some(reply),
                    }
                }
            }
            w.commit()?;
            Ok(())
        })();
        let outcome = result.map_err(|e| e.to_string());
        if outcome.is_ok() {
            dirty = true;
        }
        for answer in answers {
            answer(outcome.clone());
        }
        if let Some(reply) = stop {
            let _ = sync(&db);
            // Closed (its lock released) before the caller hears of it.
            drop(db);
            let _ = reply.send(());
            return;
        }
    }
}

/// An empty synced commit: everything committed before is on disk.
fn sync(db: &Database) -> Result<(), redb::Error> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    w.commit()?;
    Ok(())
}

/// What an export holds: the records, and the whitelist (key, comment).
pub type Export = (Vec<Listed>, Vec<(String, String)>);

/// The first line of `postern greylist export`: the format and its version.
pub const EXPORT_HEADER: &str = "# postern greylist export 1";

/// One record as `postern greylist export` writes it: tab-separated list,
/// network, sender, recipient, first and last (Unix milliseconds), count.
pub fn export_line(e: &Listed) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        if e.passed { "passed" } else { "pending" },
        e.triplet.network,
        e.triplet.sender,
        e.triplet.recipient,
        e.first,
        e.last,
        e.count
    )
}

/// Reads an export (from any store, any redb version): the records and the
/// whitelist entries; a bad line is named by its number.
pub fn parse_export(text: &str) -> Result<Export, String> {
    let mut entries = Vec::new();
    let mut whitelist = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let bad = || format!("line {}: not a greylist export line: {line:?}", i + 1);
        match f.as_slice() {
            ["whitelist", key, comment] => whitelist.push((key.to_string(), comment.to_string())),
            [list @ ("pending" | "passed"), network, sender, recipient, first, last, count] => {
                let n = |v: &str| v.parse::<u64>().map_err(|_| bad());
                entries.push(Listed {
                    passed: *list == "passed",
                    triplet: Triplet {
                        network: network.to_string(),
                        sender: sender.to_string(),
                        recipient: recipient.to_string(),
                    },
                    first: n(first)?,
                    last: n(last)?,
                    count: n(count)?,
                });
            }
            _ => return Err(bad()),
        }
    }
    Ok((entries, whitelist))
}

/// The store greylisting asks: the embedded file or a shared Redis.
pub enum Store {
    /// `store = "embedded"`.
    Embedded(Embedded),
    /// `store = "redis://…"`.
    Redis(super::greylist_redis::RedisStore),
}

impl Store {
    /// Where it is, for logs.
    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(e) => e.path().display().to_string(),
            Store::Redis(r) => r.url.clone(),
        }
    }

    /// Whether it is the store `[greylist] store` names.
    pub fn is(&self, configured: &str) -> bool {
        match self {
            Store::Embedded(_) => configured == "embedded",
            Store::Redis(r) => r.url == configured,
        }
    }

    /// One attempt at `now` (the embedded store's clock; Redis uses its own).
    pub async fn attempt(
        &self,
        t: &Triplet,
        now: u64,
        timings: Timings,
        dry: bool,
    ) -> Result<Step, String> {
        match self {
            Store::Embedded(e) => e.attempt(t, now, timings, dry).await,
            Store::Redis(r) => r.attempt(t, timings, dry).await,
        }
    }

    /// Drops what expired; (dropped, pending, passed).
    pub async fn purge(&self, now: u64, timings: Timings) -> Result<(u64, u64, u64), String> {
        match self {
            Store::Embedded(e) => e.purge(now, timings).await,
            Store::Redis(r) => r.purge().await,
        }
    }

    /// Every entry of both lists.
    pub async fn entries(&self) -> Result<Vec<Listed>, String> {
        match self {
            Store::Embedded(e) => e.entries().await,
            Store::Redis(r) => r.entries().await,
        }
    }

    /// The manual whitelist.
    pub async fn whitelist(
        &self,
        change: Option<(String, Option<String>)>,
    ) -> Result<WhitelistAnswer, String> {
        match self {
            Store::Embedded(e) => e.whitelist(change).await,
            Store::Redis(r) => r.whitelist(change).await,
        }
    }

    /// Adds an export's records and whitelist entries (those past their
    /// time are dropped by the next purge, or by Redis at once).
    pub async fn import(
        &self,
        entries: Vec<Listed>,
        whitelist: Vec<(String, String)>,
        timings: Timings,
    ) -> Result<u64, String> {
        match self {
            Store::Embedded(e) => e.import(entries, whitelist).await,
            Store::Redis(r) => r.import(entries, whitelist, timings).await,
        }
    }

    /// Syncs and closes an embedded store; nothing for Redis.
    pub async fn stop(&self) {
        if let Store::Embedded(e) = self {
            e.stop().await;
        }
    }
}

/// Failures in a row and, once they are too many, until when the store is left alone.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// The last failure, for the status.
    pub last_error: Option<String>,
}

impl Breaker {
    /// Whether the store may be asked now.
    pub fn closed(&mut self, now: Instant) -> bool {
        match self.open_until {
            Some(t) if now < t => false,
            Some(_) => {
                self.open_until = None;
                self.failures = 0;
                true
            }
            None => true,
        }
    }

    /// Records an outcome; returns a warning to log when the breaker opens.
    pub fn record(&mut self, ok: Result<(), &str>, now: Instant) -> Option<String> {
        match ok {
            Ok(()) => {
                self.failures = 0;
                self.last_error = None;
                None
            }
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(e.to_string());
                (self.failures >= BREAKER_FAILURES && self.open_until.is_none()).then(|| {
                    self.open_until = Some(now + BREAKER_OPEN);
                    format!(
                        "{BREAKER_FAILURES} failures in a row ({e}): not asked for {}s",
                        BREAKER_OPEN.as_secs()
                    )
                })
            }
        }
    }

    /// Whether the store is degraded (failing or left alone).
    pub fn degraded(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

/// The breaker shared by the policy's tasks.
pub type SharedBreaker = Mutex<Breaker>;

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timings = Timings {
        delay: 1_000,
        retry_window: 10_000,
        auto_whitelist: 100_000,
    };

    #[test]
    fn the_embedded_store_keeps_triplets_across_a_reopen() {
        let dir = std::env::temp_dir().join(format!("postern-grey-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("greylist.redb");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let t = Triplet::new(
            "192.0.2.1".parse().expect("ip"),
            "a@b.test",
            "u@one.test",
            24,
            64,
        );
        rt.block_on(async {
            let s = Embedded::open(&path).expect("open");
            assert!(matches!(
                s.attempt(&t, 0, T, false).await,
                Ok(Step::Greylist { left: 1_000, .. })
            ));
            // A dry attempt changes nothing.
            assert!(matches!(
                s.attempt(&t, 2_000, T, true).await,
                Ok(Step::Pass(_))
            ));
            assert!(matches!(
                s.attempt(&t, 500, T, false).await,
                Ok(Step::TooEarly { left: 500, .. })
            ));
            s.stop().await;
        });
        rt.block_on(async {
            let s = Embedded::open(&path).expect("reopen");
            assert!(matches!(
                s.attempt(&t, 1_000, T, false).await,
                Ok(Step::Pass(_))
            ));
            assert!(matches!(
                s.attempt(&t, 5_000, T, false).await,
                Ok(Step::Renew(_))
            ));
            let other = Triplet::new(
                "198.51.100.1".parse().expect("ip"),
                "a@b.test",
                "u@one.test",
                24,
                64,
            );
            s.attempt(&other, 5_000, T, false).await.expect("attempt");
            // At 20 s the pending one is past its window; the passed one stays.
            assert_eq!(s.purge(20_000, T).await, Ok((1, 0, 1)));
            s.stop().await;
        });
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn five_failures_open_the_breaker_for_thirty_seconds() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        for i in 0..4 {
            assert!(b.record(Err("timeout"), t0).is_none(), "{i}");
        }
        assert!(b.record(Err("timeout"), t0).is_some());
        assert!(!b.closed(t0 + Duration::from_secs(29)));
        assert!(b.closed(t0 + BREAKER_OPEN));
        assert!(b.degraded().is_some());
        b.record(Ok(()), t0 + BREAKER_OPEN);
        assert!(b.degraded().is_none());
    }
}
