//! The durable update queue on disk (`process.spool_dir`).
//!
//! One update mail is two files, each written durably — a temporary file
//! beside it, fsync, rename into place, fsync of the directory
//! ([`postern_shared::runtime::durable::write`]) — so that a crash at any moment
//! leaves either the old or the new version, never a torn one:
//!
//! - `<ID>.msg`: the envelope and the body exactly as received (CRLF line
//!   ends, dot-stuffed), as an attribute list with the body after `size=`;
//!   written once, before smtpd tells the client `250 … queued as <ID>`;
//! - `<ID>.state`: one entry per server (by its name): `pending`,
//!   `deferred` (with the reason and the next try), `delivered` or `failed`;
//!   rewritten after every change.
//!
//! A `.msg` without `.state` (a crash between the two writes) gets a fresh
//! state with every current server pending; a `.state` without `.msg` is
//! removed. The files use the IPC codec of `postern_shared::ipc::proto`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::Context;
use postern_shared::ipc::proto::Attrs;

/// One update mail.
#[derive(Debug, Clone)]
pub struct Message {
    /// Queue id.
    pub id: String,
    /// Envelope sender, without brackets (empty for `<>`).
    pub sender: String,
    /// Envelope recipient: the update address.
    pub recipient: String,
    /// When it was queued (Unix seconds).
    pub received: u64,
    /// The smtpd session that received it.
    pub sid: String,
    /// The DATA bytes as received, the final `.CRLF` excluded.
    pub body: Vec<u8>,
}

/// Where one server's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not tried yet.
    Pending,
    /// Tried; failed temporarily; tried again at `next_try`.
    Deferred,
    /// The backend accepted it.
    Delivered,
    /// Refused for good (5xx), too old, or the server is gone.
    Failed,
}

impl Status {
    /// The spelling in files and listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Deferred => "deferred",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "deferred" => Status::Deferred,
            "delivered" => Status::Delivered,
            "failed" => Status::Failed,
            _ => return None,
        })
    }

    /// Still to be delivered.
    pub fn open(self) -> bool {
        matches!(self, Status::Pending | Status::Deferred)
    }
}

/// One server's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// The server's name (its display name in the configuration).
    pub server: String,
    /// Where it stands.
    pub status: Status,
    /// Tries so far.
    pub attempts: u32,
    /// Next try (Unix seconds), for deferred copies.
    pub next_try: u64,
    /// The last reply or error.
    pub reason: String,
}

impl Copy {
    /// A copy not tried yet.
    pub fn pending(server: &str) -> Copy {
        Copy {
            server: server.to_string(),
            status: Status::Pending,
            attempts: 0,
            next_try: 0,
            reason: String::new(),
        }
    }
}

/// The spool directory.
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens (creating) the spool directory.
    pub fn open(dir: &Path) -> anyhow::Result<Spool> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    /// Stores a new message and its initial state durably.
    pub fn store(&self, m: &Message, copies: &[Copy]) -> anyhow::Result<()> {
        let msg = Attrs::new()
            .with("id", &m.id)
            .with("sender", &m.sender)
            .with("recipient", &m.recipient)
            .with("received", m.received)
            .with("sid", &m.sid)
            .with_body(m.body.clone());
        self.write(&format!("{}.msg", m.id), &msg.encode()?)?;
        self.save_state(&m.id, copies)
    }

    /// Rewrites a message's state durably.
    pub fn save_state(&self, id: &str, copies: &[Copy]) -> anyhow::Result<()> {
        let mut a = Attrs::new().with("id", id);
        for (i, c) in copies.iter().enumerate() {
            a.push(&format!("copy.{i}.server"), &c.server);
            a.push(&format!("copy.{i}.status"), c.status.as_str());
            a.push(&format!("copy.{i}.attempts"), c.attempts);
            a.push(&format!("copy.{i}.next_try"), c.next_try);
            a.push(
                &format!("copy.{i}.reason"),
                c.reason.replace(['\r', '\n', '\0'], " "),
            );
        }
        self.write(&format!("{id}.state"), &a.encode()?)
    }

    /// Removes a message and its state.
    pub fn delete(&self, id: &str) -> anyhow::Result<()> {
        for ext in ["state", "msg"] {
            match fs::remove_file(self.dir.join(format!("{id}.{ext}"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("removing {id}.{ext}")),
            }
        }
        sync_dir(&self.dir)
    }

    /// Every queued message with its state; `servers` fills a missing state.
    pub fn load_all(&self, servers: &[String]) -> anyhow::Result<Vec<(Message, Vec<Copy>)>> {
        let mut out = Vec::new();
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .collect();
        names.sort();
        for name in &names {
            if let Some(id) = name.strip_suffix(".state") {
                if !names.iter().any(|n| n == &format!("{id}.msg")) {
                    tracing::warn!("removing the state of {id}: its message is gone");
                    let _ = fs::remove_file(self.dir.join(name));
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".msg") else {
                continue;
            };
            let m = match self.read_message(id) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!("unreadable queue file {name}: {e:#}; left in place");
                    continue;
                }
            };
            let copies = match self.read_state(id) {
                Ok(Some(mut c)) => {
                    // One copy per server name: a state written when two
                    // servers could share a name (an earlier postern)
                    // listed that name twice, and the second copy was
                    // delivered again and again to the first server.
                    let mut seen = std::collections::HashSet::new();
                    c.retain(|copy| seen.insert(copy.server.clone()));
                    c
                }
                Ok(None) => {
                    let c: Vec<Copy> = servers.iter().map(|s| Copy::pending(s)).collect();
                    self.save_state(id, &c)?;
                    c
                }
                Err(e) => {
                    tracing::error!("unreadable state of {id}: {e:#}; left in place");
                    continue;
                }
            };
            out.push((m, copies));
        }
        Ok(out)
    }

    fn read_message(&self, id: &str) -> anyhow::Result<Message> {
        let a = read_attrs(&self.dir.join(format!("{id}.msg")))?.context("empty file")?;
        let get = |k: &str| {
            a.get(k)
                .map(str::to_string)
                .with_context(|| format!("no {k}"))
        };
        Ok(Message {
            id: get("id")?,
            sender: get("sender")?,
            recipient: get("recipient")?,
            received: get("received")?.parse().context("received")?,
            sid: get("sid").unwrap_or_default(),
            body: a.body.clone().context("no body")?,
        })
    }

    fn read_state(&self, id: &str) -> anyhow::Result<Option<Vec<Copy>>> {
        let path = self.dir.join(format!("{id}.state"));
        if !path.exists() {
            return Ok(None);
        }
        let a = read_attrs(&path)?.context("empty file")?;
        let mut copies = Vec::new();
        for i in 0.. {
            let k = |f: &str| format!("copy.{i}.{f}");
            let Some(server) = a.get(&k("server")) else {
                break;
            };
            copies.push(Copy {
                server: server.to_string(),
                status: a
                    .get(&k("status"))
                    .and_then(Status::parse)
                    .context("status")?,
                attempts: a
                    .get(&k("attempts"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                next_try: a
                    .get(&k("next_try"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                reason: a.get(&k("reason")).unwrap_or_default().to_string(),
            });
        }
        Ok(Some(copies))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        write_durably(&self.dir, name, bytes)
    }
}

/// Writes `dir/name` so that a crash leaves the old or the new content
/// ([`postern_shared::runtime::durable::write`]).
pub fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    postern_shared::runtime::durable::write(&path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?
        .sync_all()
        .with_context(|| format!("fsync {}", dir.display()))
}

fn read_attrs(path: &Path) -> anyhow::Result<Option<Attrs>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    postern_shared::ipc::proto::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_and_recover() {
        let dir = std::env::temp_dir().join(format!("postern-spool-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).expect("open");
        let m = Message {
            id: "ABC".into(),
            sender: "admin@example.net".into(),
            recipient: "update@mx.test".into(),
            received: 1_700_000_000,
            sid: "S1".into(),
            body: b"Subject: x\r\n\r\nrestart spamwars now\r\n..dot\r\n".to_vec(),
        };
        let mut copies = vec![Copy::pending("one"), Copy::pending("two")];
        spool.store(&m, &copies).expect("store");
        copies[0].status = Status::Delivered;
        copies[1] = Copy {
            server: "two".into(),
            status: Status::Deferred,
            attempts: 1,
            next_try: 1_700_000_060,
            reason: "451 4.3.0 later\r\nsecond line".into(),
        };
        spool.save_state("ABC", &copies).expect("save");
        let all = spool.load_all(&[]).expect("load");
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.body, m.body);
        assert_eq!(all[0].1[0].status, Status::Delivered);
        assert_eq!(all[0].1[1].reason, "451 4.3.0 later  second line");
        // A crash between the two writes: the message without its state.
        fs::remove_file(dir.join("ABC.state")).expect("rm");
        let all = spool
            .load_all(&["one".into(), "three".into()])
            .expect("load");
        assert_eq!(all[0].1, vec![Copy::pending("one"), Copy::pending("three")]);
        spool.delete("ABC").expect("delete");
        assert!(spool.load_all(&[]).expect("load").is_empty());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_naming_a_server_twice_loads_one_copy() {
        let dir = std::env::temp_dir().join(format!("postern-spool-dup-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).expect("open");
        let m = Message {
            id: "DUP".into(),
            sender: "admin@example.net".into(),
            recipient: "update@mx.test".into(),
            received: 1_700_000_000,
            sid: "S1".into(),
            body: b"Subject: x\r\n\r\nhi\r\n".to_vec(),
        };
        // As an earlier postern wrote it for two servers both named "A".
        let mut delivered = Copy::pending("A");
        delivered.status = Status::Delivered;
        let copies = [delivered, Copy::pending("A"), Copy::pending("B")];
        spool.store(&m, &copies).expect("store");
        let all = spool.load_all(&[]).expect("load");
        let loaded: Vec<(&str, Status)> = all[0]
            .1
            .iter()
            .map(|c| (c.server.as_str(), c.status))
            .collect();
        assert_eq!(loaded, [("A", Status::Delivered), ("B", Status::Pending)]);
        let _ = fs::remove_dir_all(&dir);
    }
}
