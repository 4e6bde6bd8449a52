//! The pool: backend connections prepared ahead of their sessions, and
//! those of finished sessions kept for later ones (the reuse policy).
//!
//! Without them, a session's first RCPT waits for the route, then for a new
//! backend connection: TCP handshake, greeting, EHLO — three round trips
//! before the client's MAIL and RCPT can be replayed. So each smtpd keeps up
//! to `proxy.prepared_connections` connections per server connected, greeted
//! and EHLO'd ([`Backend::prepare`]); a session takes one, forwards its
//! client's identity on it ([`Backend::adopt`]: IPADDR FROM or XCLIENT, then
//! AUTH) and goes on as with a connection of its own.
//!
//! Reuse (`proxy.reuse_connections`): when a session is over, its
//! connection comes back ([`Prepared::give_back`]). One that may serve
//! another session ([`Backend::reusable`]: an `ipaddr` or `none` server, no
//! AUTH replayed, every reply read, no body in progress, within its count
//! and age limits) says EHLO again ([`Backend::recycle`]: a later EHLO
//! resets the backend's session as RSET does, and its 250 proves the backend
//! is reading commands) and waits with the prepared ones, up to
//! [`KEEP_RETURNED`] more per server; any other says QUIT. The next session
//! forwards its own client's identity on it, so per message the backend sees
//! what a new connection would show: EHLO, IPADDR FROM, MAIL, RCPT, DATA.
//!
//! When: a connection is prepared only after a session has used that server
//! (taken a prepared connection or connected itself), so only servers that
//! receive mail get them, and only while mail keeps coming: one unused for
//! [`KEEP`] (2 s, Postfix's `smtp_connection_cache_time_limit`) is closed
//! with QUIT. A quiet postern holds no backend connection; a burst leaves at
//! most `prepared_connections` per server and smtpd, for 2 s.
//!
//! Not for `proxy-v1`/`proxy-v2` servers: their PROXY header must be the
//! first bytes, before the greeting. A prepared connection that the backend
//! closed or spoke on while it waited (a restart, an idle timeout's 421) is
//! dropped when taken ([`Backend::still_fresh`]); one that fails while it is
//! being adopted, or at its first exchange (with PIPELINING, IPADDR FROM
//! only travels with the MAIL/RCPT group), is replaced by a new connection
//! and the group sent again, so a session does not fail because of a stale
//! prepared connection. Neither preparing nor adopting counts for or against
//! the server's health: the session's own connection does.
//!
//! Once the process stops or drains ([`Prepared::close_all`]), nothing is
//! prepared any more, and a connection that was being prepared is closed
//! with QUIT when it is ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_shared::config::ClientIdentity;
use postern_shared::ipc::route::Route;

use super::{Backend, ClientError};

/// Error replies since the last accepted message above which a connection
/// is not reused ([`Backend::reusable`]): an IPADDR FROM refused by a server
/// that does not know it, and a refused recipient or two.
pub const MAX_ERRORS_TO_REUSE: u32 = 3;

/// Client sessions one backend connection serves at most, one after the
/// other ([`Backend::recycle`]).
pub const MAX_SESSIONS_PER_CONNECTION: u32 = 100;
/// Age after which a backend connection serves no new session (Postfix's
/// `smtp_connection_reuse_time_limit`).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// How long a prepared connection may wait for a session.
pub const KEEP: Duration = Duration::from_secs(2);

/// Connections whose session is over kept per server (besides
/// `prepared_connections`). Under a steady load as many sessions start as
/// end, so the pool holds about what the last moments' sessions used (never
/// more than were in use at once), for at most [`KEEP`]; the bound only
/// matters after a burst. At 100 sessions (bench/profile, 1,000 messages),
/// a bound of 16 left 0.3 new backend connections per message, 64 left
/// 0.15, most of them for the load's first sessions.
pub const KEEP_RETURNED: usize = 64;

/// The reuse policy.
impl Backend {
    /// Whether this connection may serve another client session once its
    /// session is over: its identity is one said again per session
    /// (`ipaddr`, `none`: not XCLIENT, whose repetition servers treat
    /// differently, nor PROXY headers), no AUTH was replayed on it, every
    /// reply has been read and nothing is left unsent, the backend is not
    /// reading a body nor closing, it answered at most
    /// [`MAX_ERRORS_TO_REUSE`] errors since its last accepted message (one
    /// client's errors are not held against the next), and it is within
    /// [`MAX_SESSIONS_PER_CONNECTION`] and [`MAX_CONNECTION_AGE`].
    pub fn reusable(&self) -> bool {
        matches!(
            self.route.identity,
            ClientIdentity::Ipaddr | ClientIdentity::None
        ) && !self.authenticated
            && self.conn.errors() <= MAX_ERRORS_TO_REUSE
            && !self.conn.in_body()
            && !self.conn.closing()
            && self.skip == 0
            && self.conn.is_idle()
            && self.sessions < MAX_SESSIONS_PER_CONNECTION
            && self.born.elapsed() < MAX_CONNECTION_AGE
    }

    /// Readies a connection whose session is over for the next one, as if
    /// it had just been prepared: `EHLO` again, which resets the backend's
    /// session state as RSET does (RFC 5321 §4.1.4). Only for a
    /// [`Backend::reusable`] one. The next session forwards its own client's
    /// identity ([`Backend::adopt`]) before anything of its own.
    pub async fn recycle(&mut self, hostname: &str) -> Result<(), ClientError> {
        if !self.reusable() {
            return Err(ClientError::Protocol("connection not reusable"));
        }
        self.conn.hello(hostname).await
    }

    /// Whether a connection from the pool may serve a session of `route`:
    /// one that forwarded an identity already forwards the same kind, and a
    /// reused one is still within its count and age limits.
    pub fn fits(&self, route: &Route) -> bool {
        self.identity.is_none_or(|i| i == route.identity)
            && self.sessions < MAX_SESSIONS_PER_CONNECTION
            && self.born.elapsed() < MAX_CONNECTION_AGE
    }

    /// Whether it served a session already (it came back to the pool).
    pub fn reused(&self) -> bool {
        self.identity.is_some()
    }

    /// Whether a connection that waited unused is still fit (see
    /// `Client::still_fresh`).
    pub fn still_fresh(&mut self) -> bool {
        self.conn.still_fresh()
    }
}

/// The prepared connections of one smtpd process.
#[derive(Default)]
pub struct Prepared {
    /// `proxy.prepared_connections` in force (reloads change it).
    size: AtomicU32,
    /// `proxy.reuse_connections` in force.
    reuse: AtomicBool,
    /// Set by [`Prepared::stop`]: the process no longer accepts sessions.
    closed: AtomicBool,
    servers: Mutex<HashMap<(Arc<str>, u16), Server>>,
}

/// One server's connections.
#[derive(Default)]
struct Server {
    /// Ready connections and when each became ready, oldest first.
    ready: Vec<(Instant, Backend)>,
    /// Connections being prepared.
    opening: u32,
    /// Connections of finished sessions saying EHLO again.
    returning: u32,
}

impl Prepared {
    /// A pool keeping `size` connections per server, taking back those of
    /// finished sessions with `reuse`.
    pub fn new(size: u32, reuse: bool) -> Arc<Prepared> {
        let p = Prepared::default();
        p.resize(size, reuse);
        Arc::new(p)
    }

    /// Applies a reloaded `proxy.prepared_connections` and
    /// `proxy.reuse_connections`.
    pub fn resize(&self, size: u32, reuse: bool) {
        self.size.store(size, Ordering::Relaxed);
        self.reuse.store(reuse, Ordering::Relaxed);
    }

    /// A ready connection to `route`'s server, if there is a fresh one. Stale
    /// ones met on the way are dropped.
    pub fn take(&self, route: &Route) -> Option<Backend> {
        if !Backend::can_prepare(route) {
            return None;
        }
        let mut servers = self.servers.lock().ok()?;
        let server = servers.get_mut(&(route.host.clone(), route.port))?;
        // Newest first; one that forwarded another kind of identity (the
        // server's was reloaded) or reached its limits, or a reused one once
        // reuse is off (a reload, a stop), is left to expire.
        let reuse = self.reuse.load(Ordering::Relaxed) && !self.closed.load(Ordering::Relaxed);
        while let Some(i) = server
            .ready
            .iter()
            .rposition(|(_, b)| b.fits(route) && (reuse || !b.reused()))
        {
            let (since, mut b) = server.ready.remove(i);
            if since.elapsed() < KEEP && b.still_fresh() {
                return Some(b);
            }
        }
        None
    }

    /// Takes back the connection of a session that is over: one that may
    /// serve another session ([`Backend::reusable`]) says EHLO again and
    /// waits among the ready ones (up to [`KEEP_RETURNED`] more than
    /// `prepared_connections`); any other is closed with QUIT.
    pub async fn give_back(self: Arc<Self>, mut b: Backend, hostname: String) {
        let wanted =
            |me: &Self| me.reuse.load(Ordering::Relaxed) && !me.closed.load(Ordering::Relaxed);
        if !wanted(&self) || !b.reusable() {
            return b.quit().await;
        }
        let key = (b.route.host.clone(), b.route.port);
        let cap = self.size.load(Ordering::Relaxed) as usize + KEEP_RETURNED;
        // Counted while it says EHLO, so that no connection is prepared in
        // its place meanwhile; none says EHLO if the pool is full already.
        let room = match self.servers.lock() {
            Ok(mut servers) => {
                let server = servers.entry(key.clone()).or_default();
                let room = server.ready.len() + (server.returning as usize) < cap;
                if room {
                    server.returning += 1;
                }
                room
            }
            Err(_) => false,
        };
        if !room {
            return b.quit().await;
        }
        let recycled = b.recycle(&hostname).await;
        if let Ok(mut servers) = self.servers.lock() {
            let server = servers.entry(key.clone()).or_default();
            server.returning = server.returning.saturating_sub(1);
        }
        if let Err(e) = recycled {
            // Its state is unknown: dropped without a word.
            tracing::debug!("reusing a connection to {}: {e}", b.route.name);
            return;
        }
        let extra = {
            let Ok(mut servers) = self.servers.lock() else {
                return;
            };
            let server = servers.entry(key).or_default();
            if wanted(&self) && server.ready.len() < cap {
                tracing::debug!("connection to {} kept for another session", b.route.name);
                server.ready.push((Instant::now(), b));
                None
            } else {
                Some(b)
            }
        };
        if let Some(b) = extra {
            b.quit().await;
        }
    }

    /// Prepares connections to `route`'s server in the background, up to
    /// the pool's size (ready and being prepared). Called when a session
    /// has just used that server.
    pub fn refill(self: &Arc<Self>, route: &Route, hostname: &str) {
        let size = self.size.load(Ordering::Relaxed);
        if size == 0 || !Backend::can_prepare(route) || self.closed.load(Ordering::Relaxed) {
            return;
        }
        let key = (route.host.clone(), route.port);
        let missing = {
            let Ok(mut servers) = self.servers.lock() else {
                return;
            };
            let server = servers.entry(key.clone()).or_default();
            let have = server.ready.len() as u32 + server.opening + server.returning;
            let missing = size.saturating_sub(have);
            server.opening += missing;
            missing
        };
        for _ in 0..missing {
            let me = self.clone();
            let (route, hostname, key) = (route.clone(), hostname.to_string(), key.clone());
            tokio::spawn(async move {
                let prepared = Backend::prepare(&route, &hostname).await;
                let extra = {
                    let Ok(mut servers) = me.servers.lock() else {
                        return;
                    };
                    let server = servers.entry(key).or_default();
                    server.opening = server.opening.saturating_sub(1);
                    let room = !me.closed.load(Ordering::Relaxed)
                        && (server.ready.len() as u32) < me.size.load(Ordering::Relaxed);
                    match prepared {
                        Ok(b) if room => {
                            server.ready.push((Instant::now(), b));
                            None
                        }
                        Ok(b) => Some(b),
                        Err(e) => {
                            tracing::debug!("preparing a connection to {}: {e}", route.name);
                            None
                        }
                    }
                };
                if let Some(b) = extra {
                    b.quit().await;
                }
            });
        }
    }

    /// Removes the connections that waited longer than [`KEEP`] (all of
    /// them with `all`), for the caller to close.
    pub fn expired(&self, all: bool) -> Vec<Backend> {
        let Ok(mut servers) = self.servers.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for server in servers.values_mut() {
            let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut server.ready)
                .into_iter()
                .partition(|(since, _)| all || since.elapsed() >= KEEP);
            server.ready = keep;
            out.extend(old.into_iter().map(|(_, b)| b));
        }
        servers.retain(|_, s| !s.ready.is_empty() || s.opening > 0 || s.returning > 0);
        out
    }

    /// Closes, with QUIT, the connections that waited too long; every
    /// second, for as long as the process runs.
    pub async fn sweep_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for b in self.expired(false) {
                tokio::spawn(b.quit());
            }
        }
    }

    /// Prepares and takes back no more connections (the process stops
    /// accepting: its last sessions end with QUIT to their backends).
    pub fn stop(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Closes every ready connection with QUIT and prepares no more (the
    /// process is stopping).
    pub async fn close_all(&self) {
        self.stop();
        let quits: Vec<_> = self
            .expired(true)
            .into_iter()
            .map(|b| tokio::spawn(b.quit()))
            .collect();
        for q in quits {
            let _ = q.await;
        }
    }
}
