//! A multiplexed connection: one per process to a server that answers many
//! callers' requests on it, matching replies to requests by `id` (smtpd's
//! connection to the router, [`crate::ipc::route::RouterClient`]).
//!
//! A caller's request is queued for a writer task, which writes everything
//! queued at that moment in one `write(2)`; a reader task hands each reply to
//! its caller by `id`. Under load, the requests of many sessions thus travel
//! together, and the server answers them together (the router flushes its
//! replies when no complete request is left to read): one wake-up of each
//! process for many requests, instead of two per request. Notices
//! (`reply=no`) are not answered: they wait at most [`NOTICE_DELAY`] to
//! travel with the next request. A connection that breaks fails every
//! request waiting on it; the next request opens a new one (after the
//! server's greeting). A request whose caller gave up before it was written
//! is not written at all.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::ipc::proto::{self, Attrs, ProtoError};
use crate::ipc::quiet::{QuietRead, QuietStream, QuietWrite};

/// Why a request on a multiplexed connection got no reply.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The socket could not be reached or broke.
    #[error("{0}")]
    Unavailable(#[from] ProtoError),
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server's greeting is not the expected protocol's.
    #[error("unexpected greeting")]
    WrongServer,
}

/// A client of one server socket, shared by every caller of a process:
/// connected on first use, reconnected when the connection broke.
pub struct Mux {
    path: PathBuf,
    /// The `protocol=` the server greets with.
    protocol: &'static str,
    /// The server's name, for log lines.
    name: &'static str,
    /// The current connection; held while a new one is being opened, so that
    /// callers arriving meanwhile wait for it instead of opening their own.
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Mux {
    /// A client of the socket at `path`, whose server greets with `protocol`.
    pub fn new(path: PathBuf, protocol: &'static str, name: &'static str) -> Self {
        Mux {
            path,
            protocol,
            name,
            conn: tokio::sync::Mutex::new(None),
            next_id: 0.into(),
        }
    }

    /// One request and its reply (its `id` is set here). A connection found
    /// broken before the request is sent is replaced; one that breaks after
    /// it was sent is replaced and the request sent again only with
    /// `resend` (the server may have acted on it: a `connect` sent twice
    /// would be counted twice).
    pub async fn call(
        &self,
        mut req: Attrs,
        within: Duration,
        resend: bool,
    ) -> Result<Attrs, MuxError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        req.push("id", id);
        // Encoded again only for a second attempt (rare): no copy kept.
        let mut first = Some(req.encode()?);
        let fut = async {
            let mut sent = 0;
            for _ in 0..3 {
                let mux = self.conn().await?;
                let bytes = match first.take() {
                    Some(bytes) => bytes,
                    None => req.encode()?,
                };
                let Some(reply) = mux.send(id, bytes) else {
                    continue;
                };
                let _waiter = Waiter { mux: &mux, id };
                if let Ok(reply) = reply.await {
                    return Ok(reply);
                }
                sent += 1;
                if !resend || sent == 2 {
                    break;
                }
            }
            Err(ProtoError::Truncated.into())
        };
        tokio::time::timeout(within, fut)
            .await
            .map_err(|_| MuxError::Timeout(within))?
    }

    /// Queues `req` with `reply=no` on the current connection.
    pub async fn notify(&self, mut req: Attrs, within: Duration) -> Result<(), MuxError> {
        req.push("reply", "no");
        let bytes = req.encode()?;
        let queued = async {
            for _ in 0..2 {
                if self.conn().await?.notice(bytes.clone()) {
                    return Ok(());
                }
            }
            Err(MuxError::Unavailable(ProtoError::Truncated))
        };
        tokio::time::timeout(within, queued)
            .await
            .map_err(|_| MuxError::Timeout(within))?
    }

    /// Writes the notices still waiting, at once (a stopping process).
    pub async fn flush(&self, within: Duration) {
        let mux = match self.conn.try_lock() {
            Ok(conn) => conn.clone(),
            Err(_) => None,
        };
        let Some(mux) = mux else { return };
        let (done, written) = oneshot::channel();
        if mux.queue.send(Outgoing::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(within, written).await;
        }
    }

    /// The current connection, or a new one if there is none or it broke.
    async fn conn(&self) -> Result<Arc<Conn>, MuxError> {
        let mut conn = self.conn.lock().await;
        if let Some(mux) = conn.as_ref().filter(|m| !m.is_broken()) {
            return Ok(mux.clone());
        }
        *conn = None;
        // Registered for reading only: the router reading a request does not
        // wake this process (quiet.rs).
        let stream = QuietStream::connect(&self.path)
            .await
            .map_err(ProtoError::Io)?;
        let (r, w) = stream.into_split();
        let mut r = BufReader::new(r);
        let hello = proto::read(&mut r).await?.ok_or(ProtoError::Truncated)?;
        if hello.get("protocol") != Some(self.protocol) {
            return Err(MuxError::WrongServer);
        }
        let (queue, rx) = mpsc::unbounded_channel();
        let mux = Arc::new(Conn {
            queue,
            waiting: Mutex::new(Some(HashMap::new())),
        });
        tokio::spawn(write_loop(w, rx, Arc::downgrade(&mux)));
        tokio::spawn(read_loop(r, mux.clone(), self.name));
        *conn = Some(mux.clone());
        Ok(mux)
    }
}

/// One multiplexed connection.
struct Conn {
    /// Encoded requests, for the writer task.
    queue: mpsc::UnboundedSender<Outgoing>,
    /// Callers waiting for a reply, by request id; `None` once the
    /// connection broke.
    waiting: Mutex<Option<HashMap<u64, oneshot::Sender<Attrs>>>>,
}

impl Conn {
    /// Queues a request; `None` if the connection is broken.
    fn send(&self, id: u64, bytes: Vec<u8>) -> Option<oneshot::Receiver<Attrs>> {
        let mut waiting = self.waiting.lock().ok()?;
        let map = waiting.as_mut()?;
        let (tx, rx) = oneshot::channel();
        map.insert(id, tx);
        if self.queue.send(Outgoing::Request(id, bytes)).is_err() {
            map.remove(&id);
            return None;
        }
        Some(rx)
    }

    /// Queues a notice (no reply); `false` if the connection is broken.
    fn notice(&self, bytes: Vec<u8>) -> bool {
        !self.is_broken() && self.queue.send(Outgoing::Notice(bytes)).is_ok()
    }

    /// Whether a caller still waits for request `id`.
    fn is_waiting(&self, id: u64) -> bool {
        self.waiting
            .lock()
            .map(|w| w.as_ref().is_some_and(|m| m.contains_key(&id)))
            .unwrap_or(false)
    }

    /// Forgets a caller that gave up (timed out).
    fn forget(&self, id: u64) {
        if let Ok(mut waiting) = self.waiting.lock() {
            if let Some(map) = waiting.as_mut() {
                map.remove(&id);
            }
        }
    }

    /// Marks the connection broken and fails every caller waiting on it.
    fn fail(&self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            *waiting = None;
        }
    }

    fn is_broken(&self) -> bool {
        self.waiting.lock().map(|w| w.is_none()).unwrap_or(true)
    }

    /// Hands a reply to its caller; `false` if the reply has no valid id.
    fn deliver(&self, reply: Attrs) -> bool {
        let Some(id) = reply.get("id").and_then(|i| i.parse::<u64>().ok()) else {
            return false;
        };
        let caller = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.as_mut().and_then(|m| m.remove(&id)));
        if let Some(caller) = caller {
            // The caller may have timed out meanwhile: nothing to do then.
            let _ = caller.send(reply);
        }
        true
    }
}

/// Removes a caller's entry when it stops waiting, reply or not.
struct Waiter<'a> {
    mux: &'a Conn,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.mux.forget(self.id);
    }
}

/// Largest batch of requests written at once.
const BATCH_MAX: usize = 64 * 1024;

/// How long a notice may wait for a request to travel with.
pub const NOTICE_DELAY: Duration = Duration::from_millis(50);

/// What the writer task sends.
#[derive(Debug)]
enum Outgoing {
    /// A request whose caller waits (its id): written at once, unless the
    /// caller gave up meanwhile (a `connect` written late would be counted
    /// by the router and never uncounted).
    Request(u64, Vec<u8>),
    /// A notice (`reply=no`): nobody waits for it, so it waits (at most
    /// [`NOTICE_DELAY`]) to travel with the next request.
    Notice(Vec<u8>),
    /// Write what waits now, then say so (the process is stopping).
    Flush(oneshot::Sender<()>),
    /// The reader is gone: close the connection.
    Close,
}

/// Writes queued requests, as many as are queued, in one write; notices go
/// with the next request, or after [`NOTICE_DELAY`] when none comes. Under
/// load a session's goodbye thus costs the router no wake-up of its own.
async fn write_loop(
    mut w: QuietWrite,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
    mux: Weak<Conn>,
) {
    let mut batch = Vec::with_capacity(4096);
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                due = None;
                if write_batch(&mut w, &mut batch, &mux).await {
                    continue;
                }
                return;
            }
        };
        let mut flushed = Vec::new();
        let waits = |id: u64| mux.upgrade().is_some_and(|m| m.is_waiting(id));
        let mut urgent = match next {
            Some(Outgoing::Request(id, bytes)) => {
                if waits(id) {
                    batch.extend_from_slice(&bytes);
                }
                true
            }
            Some(Outgoing::Close) => {
                let _ = w.shutdown().await;
                return;
            }
            Some(Outgoing::Notice(bytes)) => {
                batch.extend_from_slice(&bytes);
                false
            }
            Some(Outgoing::Flush(done)) => {
                flushed.push(done);
                true
            }
            None => {
                // Every sender is gone: what is left is sent, best effort.
                let _ = write_batch(&mut w, &mut batch, &mux).await;
                return;
            }
        };
        while batch.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(Outgoing::Request(id, bytes)) => {
                    if waits(id) {
                        batch.extend_from_slice(&bytes);
                    }
                    urgent = true;
                }
                Ok(Outgoing::Close) => {
                    let _ = w.shutdown().await;
                    return;
                }
                Ok(Outgoing::Notice(bytes)) => batch.extend_from_slice(&bytes),
                Ok(Outgoing::Flush(done)) => {
                    flushed.push(done);
                    urgent = true;
                }
                Err(_) => break,
            }
        }
        if urgent || batch.len() >= BATCH_MAX {
            due = None;
            let ok = write_batch(&mut w, &mut batch, &mux).await;
            for done in flushed {
                let _ = done.send(());
            }
            if !ok {
                return;
            }
        } else if due.is_none() {
            due = Some(tokio::time::Instant::now() + NOTICE_DELAY);
        }
    }
}

/// Writes and empties `batch`; `false` when the connection broke.
async fn write_batch(w: &mut QuietWrite, batch: &mut Vec<u8>, mux: &Weak<Conn>) -> bool {
    if batch.is_empty() {
        return true;
    }
    // Log lines first (see proto::write).
    crate::runtime::logging::flush();
    let ok = w.write_all(batch).await.is_ok();
    batch.clear();
    if !ok {
        if let Some(mux) = mux.upgrade() {
            mux.fail();
        }
    }
    ok
}

/// Reads replies and hands each to its caller, until the connection ends.
async fn read_loop(mut r: BufReader<QuietRead>, mux: Arc<Conn>, name: &'static str) {
    loop {
        match proto::read(&mut r).await {
            Ok(Some(reply)) => {
                if !mux.deliver(reply) {
                    tracing::warn!("{name} answered without a request id: dropping the connection");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("{name} connection: {e}");
                break;
            }
        }
    }
    mux.fail();
    // The writer holds the socket open: it closes it.
    let _ = mux.queue.send(Outgoing::Close);
}
