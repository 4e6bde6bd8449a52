//! The back side of a session: one connection to a backend server, on the
//! shared SMTP client ([`Client`]), with what only smtpd needs.
//!
//! [`Backend::connect`] does, in order, each step within the route's timeout:
//! 1. TCP connect (TCP_NODELAY);
//! 2. `proxy-v1` / `proxy-v2`: the HAProxy PROXY header, before anything else;
//! 3. read the 220 greeting;
//! 4. `EHLO <proxy hostname>` (`HELO` if EHLO is refused), noting the
//!    backend's capabilities;
//! 5. the client's identity ([`identity`]): `IPADDR FROM` (with PIPELINING
//!    it travels with the next group, its reply read and ignored), or
//!    `XCLIENT` then EHLO again;
//! 6. for an auth-routed session, the client's AUTH replayed (`AUTH PLAIN`),
//!    expecting 235.
//!
//! [`Backend::prepare`] does steps 1, 3 and 4 ahead of any session (not for
//! the PROXY identities) and [`Backend::adopt`] steps 5 and 6 once a session
//! takes the connection ([`pool`]: prepared and reused connections).
//!
//! After that the session sends commands with [`Backend::command`] or in
//! groups with [`Backend::pipeline`], and relays each reply verbatim.
//!
//! Every failure is a [`ClientError`]; the session turns all of them into
//! `451 4.4.1`, never a 5xx, so that the sender retries and nothing is lost.
//! [`Health`] remembers backends that keep failing (steps 1 to 4 only).

pub mod health;
use postern_shared::smtp::identity;
pub mod pool;

use std::time::{Duration, Instant};

use postern_shared::config::ClientIdentity;
use postern_shared::ipc::route::Route;
use postern_shared::net::unmap;
use postern_shared::smtp::client::{self, Client, Target};
pub use postern_shared::smtp::client::{Caps, ClientError, ServerReply};

pub use health::Health;
pub use postern_shared::smtp::identity::ClientInfo;

/// A connected backend session, ready for MAIL.
pub struct Backend {
    /// The route this connection serves.
    pub route: Route,
    /// The SMTP connection.
    conn: Client,
    /// Replies owed for commands sent but not waited for (`IPADDR FROM` to a
    /// pipelining backend): read and dropped before the next reply.
    skip: u32,
    /// When the connection was opened.
    born: Instant,
    /// Client sessions it served (see [`pool`]).
    sessions: u32,
    /// An AUTH was replayed on it: it belongs to that client.
    authenticated: bool,
    /// The identity forwarded on it so far (`None`: none yet).
    identity: Option<ClientIdentity>,
    /// Whether the backend accepted an IPADDR FROM on this connection
    /// (`Some(false)`: it refused every one so far).
    ipaddr_accepted: Option<bool>,
}

/// Where the shared client connects for `route`.
fn target(route: &Route) -> Target {
    Target {
        name: route.name.to_string(),
        host: route.host.to_string(),
        port: route.port,
        timeout: route.timeout,
    }
}

impl Backend {
    /// Connects and prepares the backend session (see the module
    /// description); a backend that keeps failing is skipped.
    pub async fn connect(
        route: &Route,
        hostname: &str,
        client: &ClientInfo<'_>,
        health: &Health,
    ) -> Result<Backend, ClientError> {
        if let Some(left) = health.skipped(route) {
            return Err(ClientError::Skipped(left));
        }
        // Health says whether the backend answers: connected, greeted and
        // EHLO'd. What fails after that (the client's identity, its AUTH)
        // depends on this client's input, and one client must not get the
        // server skipped for everybody.
        let greeted = Self::greet(route, hostname, Some(client)).await;
        health.record(route, greeted.is_ok());
        let mut b = greeted?;
        b.identify(hostname, client).await?;
        Ok(b)
    }

    /// A connection greeted and EHLO'd ahead of its session, for a route
    /// whose client identity is forwarded after EHLO (`ipaddr`, `xclient`,
    /// `none`: not the PROXY header, which comes first). Its session then
    /// calls [`Backend::adopt`]. Failures are not recorded in `Health`: no
    /// client waits for this connection.
    pub async fn prepare(route: &Route, hostname: &str) -> Result<Backend, ClientError> {
        if !Self::can_prepare(route) {
            return Err(ClientError::Protocol("this identity cannot be prepared"));
        }
        Self::greet(route, hostname, None).await
    }

    /// Whether [`Backend::prepare`] applies to `route`.
    pub fn can_prepare(route: &Route) -> bool {
        matches!(
            route.identity,
            ClientIdentity::Ipaddr | ClientIdentity::Xclient | ClientIdentity::None
        )
    }

    /// Makes a prepared connection `client`'s: forwards its identity (and
    /// replays its AUTH) as [`Backend::connect`] would after EHLO. `route`
    /// replaces the one it was prepared for (same server; names and timeouts
    /// may have been reloaded since).
    ///
    /// Nothing is recorded in `Health`: with PIPELINING, `IPADDR FROM` only
    /// travels with the next group, so the connection may prove stale only
    /// then; the session then connects anew, and that connection counts.
    pub async fn adopt(
        &mut self,
        route: &Route,
        hostname: &str,
        client: &ClientInfo<'_>,
    ) -> Result<(), ClientError> {
        self.route = route.clone();
        self.conn.target = target(route);
        self.identify(hostname, client).await
    }

    /// What the backend supports.
    pub fn caps(&self) -> &Caps {
        &self.conn.caps
    }

    /// Connects, sends the PROXY header if the route wants one (only with a
    /// client), reads the greeting and says EHLO.
    async fn greet(
        route: &Route,
        hostname: &str,
        client: Option<&ClientInfo<'_>>,
    ) -> Result<Backend, ClientError> {
        let preamble = match (route.identity, client) {
            (ClientIdentity::ProxyV1, Some(c)) => identity::proxy_v1(c.peer, c.local).into_bytes(),
            (ClientIdentity::ProxyV2, Some(c)) => identity::proxy_v2(c.peer, c.local),
            _ => Vec::new(),
        };
        let conn = Client::greet(&target(route), hostname, &preamble).await?;
        Ok(Backend {
            route: route.clone(),
            conn,
            skip: 0,
            born: Instant::now(),
            sessions: 0,
            authenticated: false,
            identity: None,
            ipaddr_accepted: None,
        })
    }

    /// Forwards the client's identity after EHLO, then replays its AUTH.
    async fn identify(
        &mut self,
        hostname: &str,
        client: &ClientInfo<'_>,
    ) -> Result<(), ClientError> {
        let route = self.route.clone();
        self.identity = Some(route.identity);
        self.sessions += 1;
        match route.identity {
            ClientIdentity::Ipaddr => {
                // The seed's command; any reply (even 500 from a server that does not
                // know it) is read and ignored — with PIPELINING, without waiting
                // for it: it travels with the next command.
                let line = format!("IPADDR FROM {}", unmap(client.peer.ip()));
                if self.conn.caps.pipelining {
                    self.conn.send_later(&line).await?;
                    self.skip += 1;
                } else {
                    let r = self.command(&line).await?;
                    self.check_ipaddr_reply(r.code)?;
                }
            }
            ClientIdentity::Xclient => match &self.conn.caps.xclient {
                Some(attrs) => {
                    let line = identity::xclient_command(attrs, client);
                    let r = self.command(&line).await?;
                    if r.code != 220 {
                        return Err(ClientError::Refused(r.summary()));
                    }
                    // XCLIENT resets the session to the greeting stage.
                    self.conn.hello(hostname).await?;
                }
                None => tracing::warn!(
                    "backend {} does not offer XCLIENT: the client's identity is not forwarded",
                    route.name
                ),
            },
            ClientIdentity::None | ClientIdentity::ProxyV1 | ClientIdentity::ProxyV2 => {}
        }
        if let Some((user, password)) = client.login {
            self.authenticated = true;
            // Through this connection's own reads: an IPADDR FROM's reply
            // may still be owed.
            let r = self
                .command(&client::auth_plain_command(user, password))
                .await?;
            client::auth_plain_outcome(&r)?;
        }
        Ok(())
    }

    /// Sends one command line (CRLF added) and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<ServerReply, ClientError> {
        self.conn.send(&[line]).await?;
        self.read_reply().await
    }

    /// Sends `lines` in one group when the backend allows PIPELINING (one
    /// after the other otherwise, stopping at a refused MAIL: a refused
    /// RCPT does not keep the next recipients from their turn) and returns
    /// their replies, in order.
    pub async fn pipeline(&mut self, lines: &[&str]) -> Result<Vec<ServerReply>, ClientError> {
        if !self.conn.caps.pipelining {
            let mut out = Vec::new();
            for line in lines {
                let r = self.command(line).await?;
                let stop = !r.is_ok() && line.starts_with("MAIL ");
                out.push(r);
                if stop {
                    break;
                }
            }
            return Ok(out);
        }
        self.conn.send(lines).await?;
        let mut out = Vec::with_capacity(lines.len());
        for _ in lines {
            out.push(self.read_reply().await?);
        }
        Ok(out)
    }

    /// Writes part of a message body (see [`Client::write_body`]).
    pub async fn write_body(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.conn.write_body(bytes).await
    }

    /// Sends what is buffered within the route's timeout.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.conn.flush().await
    }

    /// Reads one (possibly multi-line) reply within the route's timeout.
    pub async fn read_reply(&mut self) -> Result<ServerReply, ClientError> {
        self.read_reply_within(self.route.timeout).await
    }

    /// Reads one reply within `t`, after the replies owed for commands sent
    /// without waiting (`IPADDR FROM`).
    pub async fn read_reply_within(&mut self, t: Duration) -> Result<ServerReply, ClientError> {
        let read = async {
            while self.skip > 0 {
                self.skip -= 1;
                let r = self.conn.read_any_reply().await?;
                self.check_ipaddr_reply(r.code)?;
            }
            self.conn.read_any_reply().await
        };
        tokio::time::timeout(t, read)
            .await
            .map_err(|_| ClientError::Timeout(t))?
    }

    /// The reply to IPADDR FROM is ignored (SPEC §5: other servers answer
    /// 500), except on a reused connection whose first IPADDR FROM the
    /// backend accepted: refusing a later one would leave the previous
    /// client's address in force, so the exchange fails (and the session
    /// connects anew).
    fn check_ipaddr_reply(&mut self, code: u16) -> Result<(), ClientError> {
        let ok = (200..300).contains(&code);
        if !ok && self.ipaddr_accepted == Some(true) {
            return Err(ClientError::Protocol(
                "refused IPADDR FROM on a reused connection",
            ));
        }
        // Once one is accepted, a later refusal is never ignored.
        if ok || self.ipaddr_accepted.is_none() {
            self.ipaddr_accepted = Some(ok);
        }
        Ok(())
    }

    /// Ends the session politely, without waiting long for the answer.
    pub async fn quit(self) {
        self.conn.quit_after(self.skip).await
    }
}
