//! The router's lookup protocol, typed: what smtpd asks and what the router answers.
//!
//! ```text
//! smtpd → router                     router → smtpd
//! request=route                      id=7
//! id=7                               status=ok
//! sid=4F2A9C01                       cause=domain
//! client=203.0.113.9                 server=1
//! local=social                       name=Customer One
//! domain=hebergee.test               host=localhost
//!                                    port=1025
//!                                    timeout_ms=10000
//!                                    identity=ipaddr
//!                                    alias=yes
//!                                    to=pomme@one.test
//!                                    to=poire@one.test
//! ```
//!
//! `alias=yes` says the domain has aliases (SPEC §12): the answer holds for
//! this address only; `to=` are the addresses an alias made of it, none
//! when no alias takes it. `status=notfound alias=yes` is an alias
//! domain's unknown user ([`RcptRoute::Unknown`]).
//!
//! The other lookups are `request=client client=<ip>` (the `ip-addr` route)
//! and `request=auth user=… password=…` (the `auth` route), with the same
//! replies. `request=brake client=<ip> failed=0|1` asks (and with
//! `failed=1` first records) the address's failed authentications:
//! `status=ok failures=N`, or `status=reject failures=N retry_after=S`
//! while it is locked out ([`Brake`]). `request=count sid= <counter>=<n>…` adds a session's counts to
//! the statistics ([`crate::stats`]); it and `request=disconnect` are
//! notices, sent with `reply=no`, which the router does not answer; `request=stats` answers `status=ok`
//! with the statistics file's text as its body. Three outcomes, as in Postfix's lookup tables: found (`ok`), not found
//! (`notfound`), could not look it up (`tempfail`, or no answer at all). smtpd
//! maps the third to a 4xx reply, never 5xx.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::ClientIdentity;
use crate::ipc::mux::{Mux, MuxError};
use crate::ipc::proto::{Attrs, ProtoError};
use crate::ipc::{Outcome, RouterRequest};

pub use crate::ipc::mux::NOTICE_DELAY;

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
    /// The server's display name (shared: a route is cloned into every
    /// transaction, and a clone allocates nothing).
    pub name: Arc<str>,
    /// Backend host.
    pub host: Arc<str>,
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
        Outcome::Ok
            .reply(Some(id))
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
            name: a.get("name")?.into(),
            host: a.get("host")?.into(),
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

/// The command timeout of a session admitted in stress mode, at most
/// (Postfix's `smtpd_timeout` under stress): see `router/src/anvil.rs`.
pub const STRESS_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a connection count request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Counted.
    Allowed {
        /// The client's `ip-addr` route when it is a relay client.
        relay: Option<Route>,
        /// Some policy check is configured (`policy=off` in the answer
        /// when none is: the session's recipients need no verdict).
        policy: bool,
        /// The router is near `max_connections` (`stress=yes`): the
        /// session runs in stress mode.
        stress: bool,
    },
    /// Over a limit: why.
    Refused(String),
}

/// Where a client address stands with its failed authentications, as the
/// router's anvil counts them across every smtpd process
/// ([`RouterClient::brake`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Brake {
    /// Failed authentications from the address within the router's window
    /// (the one just reported included).
    pub failures: u32,
    /// Locked out for this long still: refuse without checking credentials.
    pub locked: Option<Duration>,
}

impl From<MuxError> for RouterError {
    fn from(e: MuxError) -> Self {
        match e {
            MuxError::Unavailable(e) => RouterError::Unavailable(e),
            MuxError::Timeout(d) => RouterError::Timeout(d),
            MuxError::WrongServer => RouterError::BadReply,
        }
    }
}

impl RouterError {
    /// The router's `status=tempfail` and its reason (`unknown` when it gave none).
    fn temp(why: String) -> RouterError {
        RouterError::TempFail(if why.is_empty() {
            "unknown".into()
        } else {
            why
        })
    }
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

/// A client of the router socket: one connection per process, shared by
/// every session, with requests and replies multiplexed on it.
///
/// A caller's request is queued for a writer task, which writes everything
/// queued at that moment in one `write(2)`; a reader task hands each reply to
/// its caller by `id`. Under load, the requests of many sessions thus travel
/// together, and the router answers them together (it flushes its replies
/// when no complete request is left to read): one wake-up of each process
/// for many lookups, instead of two per lookup. A connection that breaks
/// fails every request waiting on it. A lookup is then sent again once on a
/// new connection; a `connect` is not (the router may have counted it
/// already, and would count it twice): that session goes on uncounted, as
/// when the router does not answer in time. A request whose caller gave up
/// before it was written is not written at all.
pub struct RouterClient {
    /// The connection, shared by every session.
    mux: Mux,
    timeout: Duration,
    /// Recipient routes already asked (see [`RouterClient::route_recipient`]).
    routes: Mutex<RouteCache>,
}

/// Answers of `request=route`: by normalised domain, or, in an alias
/// domain, by address (`local@domain`, the local part unquoted and
/// lower-cased).
#[derive(Default)]
struct RouteCache {
    entries: HashMap<String, (std::time::Instant, Cached)>,
    /// Bumped by [`RouterClient::forget_routes`]: a lookup that was under way
    /// meanwhile is not kept.
    generation: u64,
}

/// One kept answer.
#[derive(Clone)]
enum Cached {
    /// The domain's answer, for every local part.
    Domain(RcptRoute),
    /// An alias domain: the answer depends on the local part, kept under
    /// the address.
    AliasDomain,
}

/// How long a domain's route is kept by smtpd.
pub const ROUTE_CACHE_TTL: Duration = Duration::from_secs(5);

/// Domains (and addresses of alias domains) kept at most; the cache starts
/// afresh when full.
const ROUTE_CACHE_MAX: usize = 4096;

/// The answer to a recipient's route lookup (`request=route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptRoute {
    /// Its server; with the addresses it stands for when an alias took
    /// it (SPEC §12), in the order of the table, each once.
    Found(Route, Option<Arc<[String]>>),
    /// No server receives mail for its domain: relaying denied.
    NotFound,
    /// Its domain is an alias domain that no server lists, and no alias
    /// takes the address: user unknown.
    Unknown,
}

impl RcptRoute {
    /// The router's reply to a route request: `status=ok` with the route
    /// and, for an alias, `alias=yes` and one `to=` per address;
    /// `status=notfound`, with `alias=yes` for an alias domain.
    fn from_attrs(reply: &Attrs) -> Result<(RcptRoute, bool), RouterError> {
        let alias_domain = reply.get("alias") == Some("yes");
        let found = match Outcome::of(reply) {
            Some(Outcome::Ok) => {
                let route = Route::from_attrs(reply).ok_or(RouterError::BadReply)?;
                let to: Vec<String> = reply.get_all("to").map(str::to_string).collect();
                RcptRoute::Found(route, (!to.is_empty()).then(|| to.into()))
            }
            Some(Outcome::NotFound) if alias_domain => RcptRoute::Unknown,
            Some(Outcome::NotFound) => RcptRoute::NotFound,
            Some(Outcome::TempFail(why)) => return Err(RouterError::temp(why)),
            _ => return Err(RouterError::BadReply),
        };
        Ok((found, alias_domain))
    }
}

impl RouterClient {
    /// A client of the router socket at `path`; each request waits at most `timeout`.
    pub fn new(path: PathBuf, timeout: Duration) -> Self {
        RouterClient {
            mux: Mux::new(path, PROTOCOL, "router"),
            timeout,
            routes: Mutex::default(),
        }
    }

    /// Asks which server receives mail for `local@domain` (the local part
    /// as the client wrote it), for a client at `client`, and what the
    /// aliases make of it.
    ///
    /// Answers (found or not found) are kept for [`ROUTE_CACHE_TTL`], so
    /// that a busy smtpd asks the router once per domain and 5 s rather
    /// than once per recipient — per address in an alias domain, whose
    /// answers depend on the local part (the router says which domains
    /// are); [`RouterClient::forget_routes`] empties the cache when a
    /// reload comes. A reload that reaches the router after smtpd may thus
    /// leave a route of the previous table in use for at most 5 s, as a
    /// session that started before a reload keeps its configuration. The
    /// route does not depend on the client; the policy's verdicts, which
    /// do, are never kept ([`RouterClient::policy`]).
    pub async fn route_recipient(
        &self,
        sid: &str,
        client: IpAddr,
        local: &str,
        domain: &str,
    ) -> Result<RcptRoute, RouterError> {
        let key = crate::config::normalize_domain(domain);
        // The key aliases go by: the same address, whatever its spelling.
        let address = || crate::alias::address_key(&format!("{local}@{key}"));
        let generation = match self.routes.lock() {
            Ok(cache) => {
                let fresh = |k: &str| {
                    cache
                        .entries
                        .get(k)
                        .filter(|(at, _)| at.elapsed() < ROUTE_CACHE_TTL)
                        .map(|(_, c)| c.clone())
                };
                let known = match fresh(&key) {
                    Some(Cached::AliasDomain) => fresh(&address()),
                    other => other,
                };
                if let Some(Cached::Domain(found)) = known {
                    tracing::debug!(sid, "route {local}@{key}: known");
                    return Ok(found);
                }
                Some(cache.generation)
            }
            Err(_) => None,
        };
        let req = RouterRequest::Route {
            sid: sid.to_string(),
            client: Some(client.to_string()),
            local: Some(local.to_string()),
            domain: domain.to_string(),
        }
        .encode();
        let (found, alias_domain) = RcptRoute::from_attrs(&self.call(req).await?)?;
        if let (Some(generation), Ok(mut cache)) = (generation, self.routes.lock()) {
            if cache.generation == generation {
                if cache.entries.len() + 2 > ROUTE_CACHE_MAX {
                    cache.entries.clear();
                }
                let now = std::time::Instant::now();
                if alias_domain {
                    let address = address();
                    cache.entries.insert(key, (now, Cached::AliasDomain));
                    cache
                        .entries
                        .insert(address, (now, Cached::Domain(found.clone())));
                } else {
                    cache
                        .entries
                        .insert(key, (now, Cached::Domain(found.clone())));
                }
            }
        }
        Ok(found)
    }

    /// Forgets every domain route kept (a reload changed the table).
    pub fn forget_routes(&self) {
        if let Ok(mut cache) = self.routes.lock() {
            cache.entries.clear();
            cache.generation += 1;
        }
    }

    /// Asks whether `client` is a relay client of some server (`ip-addr` route).
    pub async fn route_client(&self, sid: &str, client: IpAddr) -> Result<Lookup, RouterError> {
        let req = RouterRequest::Client {
            sid: sid.to_string(),
            client,
        }
        .encode();
        self.lookup(req).await
    }

    /// Asks which server has these SMTP AUTH credentials (`auth` route).
    pub async fn authenticate(
        &self,
        sid: &str,
        user: &str,
        password: &str,
    ) -> Result<Lookup, RouterError> {
        let req = RouterRequest::Auth {
            sid: sid.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
        .encode();
        self.lookup(req).await
    }

    /// Asks the policy's verdict for one recipient (SPEC §8). Never cached:
    /// the answer depends on the recipient, the sender and, with
    /// greylisting, on time.
    pub async fn policy(
        &self,
        query: crate::ipc::policy::QueryRef<'_>,
    ) -> Result<crate::ipc::policy::Verdict, RouterError> {
        let reply = self.call(query.to_attrs()).await?;
        match Outcome::of(&reply) {
            Some(Outcome::Ok) => {
                crate::ipc::policy::Verdict::from_attrs(&reply).ok_or(RouterError::BadReply)
            }
            Some(Outcome::TempFail(why)) => Err(RouterError::temp(why)),
            _ => Err(RouterError::BadReply),
        }
    }

    /// Asks where `client` stands with its failed authentications; with
    /// `failed`, records one first (`request=brake client= failed=0|1`).
    /// smtpd asks before it checks any credentials (AUTH, RELOAD, SHUTDOWN)
    /// and reports each failure; the answer's count sets the failure's
    /// delay, its lock-out the next attempts' `454 4.7.0`.
    pub async fn brake(
        &self,
        sid: &str,
        client: IpAddr,
        failed: bool,
    ) -> Result<Brake, RouterError> {
        let req = RouterRequest::Brake {
            sid: sid.to_string(),
            client,
            failed,
        }
        .encode();
        let reply = self.call(req).await?;
        let failures = reply
            .get("failures")
            .and_then(|n| n.parse().ok())
            .ok_or(RouterError::BadReply);
        match Outcome::of(&reply) {
            Some(Outcome::Ok) => Ok(Brake {
                failures: failures?,
                locked: None,
            }),
            Some(Outcome::Reject(_)) => Ok(Brake {
                failures: failures?,
                locked: Some(Duration::from_secs(
                    reply
                        .get("retry_after")
                        .and_then(|s| s.parse().ok())
                        .ok_or(RouterError::BadReply)?,
                )),
            }),
            Some(Outcome::TempFail(why)) => Err(RouterError::temp(why)),
            _ => Err(RouterError::BadReply),
        }
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
        let req = RouterRequest::Connect {
            sid: sid.to_string(),
            client,
            pid,
        }
        .encode();
        let reply = self.call_with(req, within, false).await?;
        let policy = reply.get("policy") != Some("off");
        let stress = reply.get("stress") == Some("yes");
        match Outcome::of(&reply) {
            Some(Outcome::Ok) => Route::from_attrs(&reply)
                .map(|r| Admission::Allowed {
                    relay: Some(r),
                    policy,
                    stress,
                })
                .ok_or(RouterError::BadReply),
            Some(Outcome::NotFound) => Ok(Admission::Allowed {
                relay: None,
                policy,
                stress,
            }),
            Some(Outcome::Reject(why)) if why.is_empty() => {
                Ok(Admission::Refused("too many connections".into()))
            }
            Some(Outcome::Reject(why)) => Ok(Admission::Refused(why)),
            Some(Outcome::TempFail(why)) => Err(RouterError::temp(why)),
            None => Err(RouterError::BadReply),
        }
    }

    /// Says that a connection counted by [`RouterClient::connect`] has ended,
    /// with the session's counts: a notice (`reply=no`), sent with the next
    /// request or within [`NOTICE_DELAY`]. A failure only loses these counts,
    /// and the router's count of the connection is dropped anyway when the
    /// router or this process restarts.
    pub async fn disconnect(
        &self,
        sid: &str,
        client: IpAddr,
        pid: u32,
        counts: &crate::stats::Counts,
        within: Duration,
    ) -> Result<(), RouterError> {
        let req = RouterRequest::Disconnect {
            sid: sid.to_string(),
            client,
            pid,
            counts: counts.clone(),
        };
        self.notify(req.encode(), within).await
    }

    /// Sends a session's counts (`request=count sid= <counter>=<n>…`, one
    /// attribute per non-zero counter, see [`crate::stats`]) as a notice, as
    /// [`RouterClient::disconnect`] does. smtpd calls it once, when the
    /// session has ended, so it never delays a client; a failure only loses
    /// these counts.
    pub async fn count(
        &self,
        sid: &str,
        counts: &crate::stats::Counts,
        within: Duration,
    ) -> Result<(), RouterError> {
        if counts.is_empty() {
            return Ok(());
        }
        let req = RouterRequest::Count {
            sid: sid.to_string(),
            counts: counts.clone(),
        };
        self.notify(req.encode(), within).await
    }

    /// Writes the notices still waiting, at once (a stopping smtpd, so
    /// that the statistics of its last sessions are not lost).
    pub async fn flush(&self, within: Duration) {
        self.mux.flush(within).await
    }

    /// Queues `req` as a notice (`reply=no`) on the current connection.
    async fn notify(&self, req: Attrs, within: Duration) -> Result<(), RouterError> {
        Ok(self.mux.notify(req, within).await?)
    }

    async fn lookup(&self, req: Attrs) -> Result<Lookup, RouterError> {
        let reply = self.call(req).await?;
        match Outcome::of(&reply) {
            Some(Outcome::Ok) => Route::from_attrs(&reply)
                .map(Lookup::Found)
                .ok_or(RouterError::BadReply),
            Some(Outcome::NotFound) => Ok(Lookup::NotFound),
            Some(Outcome::TempFail(why)) => Err(RouterError::temp(why)),
            _ => Err(RouterError::BadReply),
        }
    }

    async fn call(&self, req: Attrs) -> Result<Attrs, RouterError> {
        self.call_within(req, self.timeout).await
    }

    async fn call_within(&self, req: Attrs, within: Duration) -> Result<Attrs, RouterError> {
        self.call_with(req, within, true).await
    }

    /// One request and its reply; sent again on a new connection only
    /// with `resend` (see [`Mux::call`]).
    async fn call_with(
        &self,
        req: Attrs,
        within: Duration,
        resend: bool,
    ) -> Result<Attrs, RouterError> {
        Ok(self.mux.call(req, within, resend).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::proto;
    use std::sync::Arc;
    use tokio::io::{AsyncWriteExt, BufReader};
    use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::UnixListener;

    fn socket_path(tag: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("postern-route-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    /// Accepts one connection, greets, and returns it with a reader.
    async fn accept(l: &UnixListener) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        let (s, _) = l.accept().await.expect("accept");
        let (r, mut w) = s.into_split();
        let hello = Attrs::new().with("protocol", PROTOCOL).with("version", 1);
        w.write_all(&hello.encode().expect("encode"))
            .await
            .expect("greet");
        (BufReader::new(r), w)
    }

    fn found(req: &Attrs) -> Attrs {
        let domain = req.get("domain").expect("domain");
        Route {
            server: 1,
            name: domain.into(),
            host: "127.0.0.1".into(),
            port: 25,
            timeout: Duration::from_secs(1),
            identity: ClientIdentity::None,
            cause: Cause::Domain,
        }
        .to_attrs(req.get("id").expect("id"))
    }

    #[tokio::test]
    async fn replies_find_their_callers_in_any_order() {
        let path = socket_path("order");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = Arc::new(RouterClient::new(path.clone(), Duration::from_secs(5)));
        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&listener).await;
            let mut reqs = Vec::new();
            for _ in 0..3 {
                reqs.push(proto::read(&mut r).await.expect("read").expect("request"));
            }
            // Answer the last first.
            for req in reqs.iter().rev() {
                w.write_all(&found(req).encode().expect("encode"))
                    .await
                    .expect("reply");
            }
            listener
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        let ask = |d: &'static str| {
            let c = client.clone();
            async move { c.route_recipient("S", ip, "u", d).await }
        };
        let (a, b, c) = tokio::join!(ask("a.test"), ask("b.test"), ask("c.test"));
        for (got, want) in [(a, "a.test"), (b, "b.test"), (c, "c.test")] {
            match got.expect("answered") {
                RcptRoute::Found(r, None) => assert_eq!(&*r.name, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        drop(server.await);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_request_on_a_connection_that_breaks_is_asked_again_on_a_new_one() {
        let path = socket_path("retry");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_secs(5));
        let server = tokio::spawn(async move {
            // The first connection reads the request and dies unanswered
            // (a router restarting), the second one answers.
            let (mut r, w) = accept(&listener).await;
            proto::read(&mut r).await.expect("read").expect("request");
            drop((r, w));
            let (mut r, mut w) = accept(&listener).await;
            let req = proto::read(&mut r).await.expect("read").expect("request");
            w.write_all(&found(&req).encode().expect("encode"))
                .await
                .expect("reply");
            proto::read(&mut r).await.expect("read")
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        match client.route_recipient("S", ip, "u", "one.test").await {
            Ok(RcptRoute::Found(r, None)) => assert_eq!(&*r.name, "one.test"),
            other => panic!("{other:?}"),
        }
        // The new connection stays in use: the next request goes to it.
        let next = client.route_recipient("S", ip, "u", "two.test");
        let (asked, _) = tokio::join!(
            server,
            tokio::time::timeout(Duration::from_millis(500), next)
        );
        let asked = asked.expect("server").expect("second request");
        assert_eq!(asked.get("domain"), Some("two.test"));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_router_that_never_answers_is_a_timeout() {
        let path = socket_path("silent");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_millis(200));
        let server = tokio::spawn(async move {
            let (mut r, w) = accept(&listener).await;
            let req = proto::read(&mut r).await.expect("read");
            (req, w)
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        match client.route_client("S", ip).await {
            Err(RouterError::Timeout(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(server.await.expect("server").0.is_some());
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_domain_is_asked_once_until_a_reload() {
        let path = socket_path("cache");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_secs(5));
        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&listener).await;
            let mut asked = Vec::new();
            // Until nothing more comes for a while.
            while let Ok(Ok(Some(req))) =
                tokio::time::timeout(Duration::from_millis(300), proto::read(&mut r)).await
            {
                asked.push(req.get("domain").unwrap_or_default().to_string());
                let mut answer = found(&req);
                if req.get("domain") == Some("alias.test") {
                    answer.push("alias", "yes");
                    answer.push("to", "a@one.test");
                }
                w.write_all(&answer.encode().expect("encode"))
                    .await
                    .expect("reply");
            }
            asked
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        for d in ["One.test", "one.test.", "two.test", "one.test"] {
            assert!(matches!(
                client.route_recipient("S", ip, "u", d).await,
                Ok(RcptRoute::Found(..))
            ));
        }
        client.forget_routes();
        assert!(matches!(
            client.route_recipient("S", ip, "u", "one.test").await,
            Ok(RcptRoute::Found(..))
        ));
        // An alias domain's answers depend on the local part: kept by address.
        for local in ["list", "List", "other", "list"] {
            match client.route_recipient("S", ip, local, "alias.test").await {
                Ok(RcptRoute::Found(_, Some(to))) => assert_eq!(&to[..], ["a@one.test"]),
                other => panic!("{other:?}"),
            }
        }
        let asked = server.await.expect("server");
        assert_eq!(
            asked,
            [
                "One.test",
                "two.test",
                "one.test",
                "alias.test",
                "alias.test"
            ],
            "list@ once (whatever its case), other@ once"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn goodbyes_are_notices_that_travel_with_the_next_request() {
        let path = socket_path("notice");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_secs(5));
        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&listener).await;
            let first = proto::read(&mut r).await.expect("read").expect("notice");
            let second = proto::read(&mut r).await.expect("read").expect("request");
            w.write_all(&found(&second).encode().expect("encode"))
                .await
                .expect("reply");
            // Alone, a notice still goes, within NOTICE_DELAY.
            let third = proto::read(&mut r).await.expect("read").expect("notice");
            (first, second, third)
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        let mut counts = crate::stats::Counts::default();
        counts.add(crate::stats::Counter::Messages, 1);
        client
            .disconnect("S1", ip, 42, &counts, Duration::from_secs(1))
            .await
            .expect("queued");
        assert!(matches!(
            client.route_recipient("S2", ip, "u", "one.test").await,
            Ok(RcptRoute::Found(..))
        ));
        client
            .count("S3", &counts, Duration::from_secs(1))
            .await
            .expect("queued");
        let (first, second, third) = server.await.expect("server");
        assert_eq!(first.get("request"), Some("disconnect"));
        assert_eq!(first.get("reply"), Some("no"));
        assert_eq!(first.get("sid"), Some("S1"));
        assert_eq!(second.get("request"), Some("route"));
        assert_eq!(third.get("request"), Some("count"));
        assert_eq!(third.get("reply"), Some("no"));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn brake_answers_are_typed() {
        let path = socket_path("brake");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_secs(5));
        let server = tokio::spawn(async move {
            let (mut r, mut w) = accept(&listener).await;
            let mut asked = Vec::new();
            for answer in [
                &[("status", "ok"), ("failures", "2")][..],
                &[
                    ("status", "reject"),
                    ("failures", "5"),
                    ("retry_after", "600"),
                ],
                &[("status", "reject")],
            ] {
                let req = proto::read(&mut r).await.expect("read").expect("request");
                let mut reply = Attrs::new().with("id", req.get("id").expect("id"));
                for (n, v) in answer {
                    reply.push(n, v);
                }
                w.write_all(&reply.encode().expect("encode"))
                    .await
                    .expect("reply");
                asked.push(req);
            }
            asked
        });
        let ip: IpAddr = "127.0.0.5".parse().expect("ip");
        let open = client.brake("S1", ip, true).await.expect("answer");
        assert_eq!((open.failures, open.locked), (2, None));
        let locked = client.brake("S2", ip, false).await.expect("answer");
        assert_eq!(
            (locked.failures, locked.locked),
            (5, Some(Duration::from_secs(600)))
        );
        assert!(matches!(
            client.brake("S3", ip, false).await,
            Err(RouterError::BadReply)
        ));
        let asked = server.await.expect("server");
        assert_eq!(asked[0].get("request"), Some("brake"));
        assert_eq!(asked[0].get("client"), Some("127.0.0.5"));
        assert_eq!(asked[0].get("failed"), Some("1"));
        assert_eq!(asked[1].get("failed"), Some("0"));
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn a_connect_is_never_sent_twice() {
        let path = socket_path("connect-once");
        let listener = UnixListener::bind(&path).expect("bind");
        let client = RouterClient::new(path.clone(), Duration::from_secs(5));
        let server = tokio::spawn(async move {
            // The first connection reads the connect and dies unanswered.
            let (mut r, w) = accept(&listener).await;
            let first = proto::read(&mut r).await.expect("read").expect("request");
            drop((r, w));
            // On the second one, the first message is the next request, not
            // the same connect again.
            let (mut r, mut w) = accept(&listener).await;
            let next = proto::read(&mut r).await.expect("read").expect("request");
            let reply = Attrs::new()
                .with("id", next.get("id").expect("id"))
                .with("status", "notfound");
            w.write_all(&reply.encode().expect("encode"))
                .await
                .expect("reply");
            (first, next)
        });
        let ip: IpAddr = "127.0.0.2".parse().expect("ip");
        let counted = client.connect("S", ip, 42, Duration::from_secs(2)).await;
        assert!(counted.is_err(), "{counted:?}");
        let looked_up = client.route_client("S", ip).await;
        assert!(matches!(looked_up, Ok(Lookup::NotFound)), "{looked_up:?}");
        let (first, next) = server.await.expect("server");
        assert_eq!(first.get("request"), Some("connect"));
        assert_eq!(next.get("request"), Some("client"));
        let _ = std::fs::remove_file(&path);
    }
}
