//! The router's lookup protocol, typed: what smtpd asks and what the router answers.
//!
//! ```text
//! smtpd → router                     router → smtpd
//! request=route                      id=7
//! id=7                               status=ok
//! sid=4F2A9C01                       cause=domain
//! client=203.0.113.9                 server=1
//! domain=one.test                    name=Customer One
//!                                    host=localhost
//!                                    port=1025
//!                                    timeout_ms=10000
//!                                    identity=ipaddr
//! ```
//!
//! The other lookups are `request=client client=<ip>` (the `ip-addr` route)
//! and `request=auth user=… password=…` (the `auth` route), with the same
//! replies. `request=count sid= <counter>=<n>…` adds a session's counts to
//! the statistics ([`crate::stats`]); `request=stats` answers `status=ok`
//! with the statistics file's text as its body. Three outcomes, as in Postfix's lookup tables: found (`ok`), not found
//! (`notfound`), could not look it up (`tempfail`, or no answer at all). smtpd
//! maps the third to a 4xx reply, never 5xx.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::BufStream;
use tokio::net::UnixStream;

use crate::config::ClientIdentity;
use crate::proto::{self, Attrs, ProtoError, Status};

/// Name announced by the router in its first message.
pub const PROTOCOL: &str = "postern-router";

/// Why a server was chosen (the seed's log wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The recipient's domain.
    Domain,
    /// The client's address is in the server's relay list.
    IpAddr,
    /// The client authenticated with the server's credentials.
    Auth,
}

impl Cause {
    /// The seed's spelling: `domain`, `ip-addr`, `auth`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Domain => "domain",
            Cause::IpAddr => "ip-addr",
            Cause::Auth => "auth",
        }
    }

    fn parse(s: &str) -> Option<Cause> {
        Some(match s {
            "domain" => Cause::Domain,
            "ip-addr" => Cause::IpAddr,
            "auth" => Cause::Auth,
            _ => return None,
        })
    }
}

/// Where a session (or transaction) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index of the server in the configuration, from 1; stable within one table.
    pub server: u32,
    /// The server's display name.
    pub name: String,
    /// Backend host.
    pub host: String,
    /// Backend port.
    pub port: u16,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// How to forward the client's identity.
    pub identity: ClientIdentity,
    /// Why this server.
    pub cause: Cause,
}

impl Route {
    /// The reply attributes for this route.
    pub fn to_attrs(&self, id: &str) -> Attrs {
        Attrs::new()
            .with("id", id)
            .with("status", Status::Ok.as_str())
            .with("cause", self.cause.as_str())
            .with("server", self.server)
            .with("name", &self.name)
            .with("host", &self.host)
            .with("port", self.port)
            .with("timeout_ms", self.timeout.as_millis())
            .with("identity", self.identity.as_str())
    }

    fn from_attrs(a: &Attrs) -> Option<Route> {
        Some(Route {
            server: a.get("server")?.parse().ok()?,
            name: a.get("name")?.to_string(),
            host: a.get("host")?.to_string(),
            port: a.get("port")?.parse().ok()?,
            timeout: Duration::from_millis(a.get("timeout_ms")?.parse().ok()?),
            identity: ClientIdentity::parse(a.get("identity")?)?,
            cause: Cause::parse(a.get("cause")?)?,
        })
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Found.
    Found(Route),
    /// No server for this.
    NotFound,
}

/// The answer to a connection count request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted; with the client's `ip-addr` route when it is a relay client.
    Allowed(Option<Route>),
    /// Over a limit: why.
    Refused(String),
}

/// Why a lookup could not be made: always temporary for the client.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router socket could not be reached or broke.
    #[error("router unavailable: {0}")]
    Unavailable(#[from] ProtoError),
    /// The router did not answer in time.
    #[error("router did not answer within {0:?}")]
    Timeout(Duration),
    /// The router said it could not look it up.
    #[error("router temporary failure: {0}")]
    TempFail(String),
    /// The router answered something this version does not understand.
    #[error("router answered an unexpected message")]
    BadReply,
}

/// A client of the router socket, with a small pool of idle connections.
///
/// A connection is taken from the pool for one request and put back after a
/// complete answer; a broken one is dropped. A request that fails on a pooled
/// connection (the router restarted since) is retried once on a fresh one.
pub struct RouterClient {
    path: PathBuf,
    timeout: Duration,
    idle: Mutex<Vec<BufStream<UnixStream>>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Idle connections kept per process: enough for every session of a busy
/// smtpd to find one (a new connection costs a connect and a greeting).
const POOL_MAX: usize = 256;

impl RouterClient {
    /// A client of the router socket at `path`; each request waits at most `timeout`.
    pub fn new(path: PathBuf, timeout: Duration) -> Self {
        RouterClient {
            path,
            timeout,
            idle: Mutex::new(Vec::new()),
            next_id: 0.into(),
        }
    }

    /// Asks which server receives mail for `domain`, for a client at `client`.
    pub async fn route_domain(
        &self,
        sid: &str,
        client: IpAddr,
        domain: &str,
    ) -> Result<Lookup, RouterError> {
        let req = Attrs::new()
            .with("request", "route")
            .with("sid", sid)
            .with("client", client)
            .with("domain", domain);
        self.lookup(req).await
    }

    /// Asks whether `client` is a relay client of some server (`ip-addr` route).
    pub async fn route_client(&self, sid: &str, client: IpAddr) -> Result<Lookup, RouterError> {
        let req = Attrs::new()
            .with("request", "client")
            .with("sid", sid)
            .with("client", client);
        self.lookup(req).await
    }

    /// Asks which server has these SMTP AUTH credentials (`auth` route).
    pub async fn authenticate(
        &self,
        sid: &str,
        user: &str,
        password: &str,
    ) -> Result<Lookup, RouterError> {
        let req = Attrs::new()
            .with("request", "auth")
            .with("sid", sid)
            .with("user", user)
            .with("password", password);
        self.lookup(req).await
    }

    /// Asks to count a new connection from `client` (served by process `pid`).
    /// Allowed: the client's `ip-addr` route, if any. Refused: why (a limit).
    pub async fn connect(
        &self,
        sid: &str,
        client: IpAddr,
        pid: u32,
        within: Duration,
    ) -> Result<Admission, RouterError> {
        let req = Attrs::new()
            .with("request", "connect")
            .with("sid", sid)
            .with("client", client)
            .with("pid", pid);
        let reply = self.call_within(req, within).await?;
        match reply.get("status").and_then(Status::parse) {
            Some(Status::Ok) => Route::from_attrs(&reply)
                .map(|r| Admission::Allowed(Some(r)))
                .ok_or(RouterError::BadReply),
            Some(Status::NotFound) => Ok(Admission::Allowed(None)),
            Some(Status::Reject) => Ok(Admission::Refused(
                reply
                    .get("reason")
                    .unwrap_or("too many connections")
                    .to_string(),
            )),
            Some(Status::TempFail) => Err(RouterError::TempFail(
                reply.get("reason").unwrap_or("unknown").to_string(),
            )),
            None => Err(RouterError::BadReply),
        }
    }

    /// Says that a connection counted by [`RouterClient::connect`] has ended,
    /// with the session's counts (one round trip for both).
    pub async fn disconnect(
        &self,
        sid: &str,
        client: IpAddr,
        pid: u32,
        counts: &crate::stats::Counts,
        within: Duration,
    ) -> Result<(), RouterError> {
        let mut req = Attrs::new()
            .with("request", "disconnect")
            .with("sid", sid)
            .with("client", client)
            .with("pid", pid);
        for (name, n) in counts.iter() {
            req.push(name, n);
        }
        self.call_within(req, within).await.map(|_| ())
    }

    /// Sends a session's counts (`request=count sid= <counter>=<n>…`, one
    /// attribute per non-zero counter, see [`crate::stats`]). smtpd calls it
    /// once, when the session has ended, so it never delays a client; a
    /// failure only loses these counts.
    pub async fn count(
        &self,
        sid: &str,
        counts: &crate::stats::Counts,
        within: Duration,
    ) -> Result<(), RouterError> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut req = Attrs::new().with("request", "count").with("sid", sid);
        for (name, n) in counts.iter() {
            req.push(name, n);
        }
        let reply = self.call_within(req, within).await?;
        match reply.get("status").and_then(Status::parse) {
            Some(Status::Ok) => Ok(()),
            Some(Status::TempFail) => Err(RouterError::TempFail(
                reply.get("reason").unwrap_or("unknown").to_string(),
            )),
            _ => Err(RouterError::BadReply),
        }
    }

    async fn lookup(&self, req: Attrs) -> Result<Lookup, RouterError> {
        let reply = self.call(req).await?;
        match reply.get("status").and_then(Status::parse) {
            Some(Status::Ok) => Route::from_attrs(&reply)
                .map(Lookup::Found)
                .ok_or(RouterError::BadReply),
            Some(Status::NotFound) => Ok(Lookup::NotFound),
            Some(Status::TempFail) => Err(RouterError::TempFail(
                reply.get("reason").unwrap_or("unknown").to_string(),
            )),
            _ => Err(RouterError::BadReply),
        }
    }

    async fn call(&self, req: Attrs) -> Result<Attrs, RouterError> {
        self.call_within(req, self.timeout).await
    }

    async fn call_within(&self, mut req: Attrs, within: Duration) -> Result<Attrs, RouterError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string();
        req.push("id", &id);
        let pooled = self.idle.lock().map(|mut p| p.pop()).unwrap_or(None);
        let fut = async {
            if let Some(conn) = pooled {
                if let Ok(r) = self.exchange(conn, &req, &id).await {
                    return Ok(r);
                }
            }
            let conn = self.open().await?;
            self.exchange(conn, &req, &id).await
        };
        tokio::time::timeout(within, fut)
            .await
            .map_err(|_| RouterError::Timeout(within))?
    }

    async fn open(&self) -> Result<BufStream<UnixStream>, RouterError> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(ProtoError::Io)?;
        let mut conn = BufStream::new(stream);
        let hello = proto::read(&mut conn).await?.ok_or(ProtoError::Truncated)?;
        if hello.get("protocol") != Some(PROTOCOL) {
            return Err(RouterError::BadReply);
        }
        Ok(conn)
    }

    async fn exchange(
        &self,
        mut conn: BufStream<UnixStream>,
        req: &Attrs,
        id: &str,
    ) -> Result<Attrs, RouterError> {
        proto::write(&mut conn, req).await?;
        let reply = proto::read(&mut conn).await?.ok_or(ProtoError::Truncated)?;
        if reply.get("id") != Some(id) {
            return Err(RouterError::BadReply);
        }
        if let Ok(mut pool) = self.idle.lock() {
            if pool.len() < POOL_MAX {
                pool.push(conn);
            }
        }
        Ok(reply)
    }
}
