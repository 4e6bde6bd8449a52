//! In-process dialogue tests: a session runs on one end of a
//! `tokio::io::duplex`, the test speaks SMTP on the other, line by line,
//! and checks each reply (a transcript: client line → expected reply).
//!
//! Around the session: a router stub on a temporary Unix socket that
//! answers each `request=` with a rule of the test's (or never, to make it
//! time out), and backend stubs on loopback TCP that record what they
//! receive. Without a router socket every router request fails at once,
//! which lets the timeout tests run on paused tokio time (no real I/O is
//! waited for). Every test runs in well under a second.
//!
//! - [`stages`]: a transcript per stage (greeting, HELO/EHLO, MAIL, RCPT
//!   phases, DATA), pipelining, the 452 split, smuggling;
//! - [`failures`]: every failure → its reply (`reply.rs`), timeouts
//!   included.

mod failures;
mod stages;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_shared::config::{ClientIdentity, Config};
use postern_shared::ipc::proto::{self, Attrs};
use postern_shared::ipc::route::{Cause, Route, RouterClient, PROTOCOL};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use super::{AdminRequest, Ctx};
use crate::backend::pool::Prepared;
use crate::backend::Health;

/// The configuration of every dialogue; `extra` lines go into `[proxy]`.
fn config(extra: &str) -> Arc<Config> {
    let text = format!(
        "[proxy]\n\
         hostname = \"mx.test\"\n\
         banner = \"ESMTP postern\"\n\
         admin_user = \"admin\"\n\
         admin_password = \"secret\"\n\
         admin_networks = [\"127.0.0.0/8\"]\n\
         update_address = \"update@mx.test\"\n\
         prepared_connections = 0\n\
         reuse_connections = false\n\
         {extra}\n"
    );
    Arc::new(Config::parse(&text).expect("the test configuration parses"))
}

/// A scratch path for a socket, unique in this test process.
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "postern-smtpd-{tag}-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// What a session runs with; built by [`Setup::start`].
struct Setup {
    /// `[proxy]` lines added to the configuration.
    proxy: String,
    /// The router's socket (nothing listens there unless a stub does).
    router: PathBuf,
    /// How long a router request may take.
    router_timeout: Duration,
    /// The process is stopping.
    stopping: bool,
    /// What the master answers to RELOAD / SHUTDOWN (`None`: no master).
    master: Option<Result<(), String>>,
}

impl Setup {
    /// A session whose router socket does not exist: every router request
    /// fails at once.
    fn without_router() -> Setup {
        Setup {
            proxy: String::new(),
            router: scratch("no-router"),
            router_timeout: Duration::from_secs(10),
            stopping: false,
            master: None,
        }
    }

    /// A session with this router stub.
    fn with(router: &RouterStub) -> Setup {
        Setup {
            router: router.path.clone(),
            ..Setup::without_router()
        }
    }

    /// Starts the session; returns the client's side and the greeting.
    async fn start(self) -> (Dialogue, String) {
        let (admin, mut admin_rx) = mpsc::channel::<AdminRequest>(1);
        if let Some(answer) = self.master {
            tokio::spawn(async move {
                while let Some(req) = admin_rx.recv().await {
                    let _ = req.reply.send(answer.clone());
                }
            });
        }
        let shutdown = Arc::new(super::Stopping::default());
        if self.stopping {
            shutdown.set();
        }
        let ctx = Ctx {
            config: config(&self.proxy),
            tls: None,
            auth_servers: true,
            router: Arc::new(RouterClient::new(self.router, self.router_timeout)),
            health: Arc::new(Health::default()),
            prepared: Prepared::new(0, false),
            admin,
            updater: scratch("no-updater").into(),
            shutdown,
        };
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let local: SocketAddr = "127.0.0.1:25".parse().expect("address");
        let session = tokio::spawn(async move {
            super::run(
                super::ClientConn::Other(Box::new(theirs)),
                peer,
                local,
                super::Sid::new("TESTSID"),
                Arc::new(ctx),
                (),
            )
            .await;
        });
        let (r, w) = tokio::io::split(ours);
        let mut d = Dialogue {
            r: BufReader::new(r),
            w,
            session,
        };
        let greeting = d.reply().await;
        (d, greeting)
    }
}

/// The client's side of a session.
struct Dialogue {
    r: BufReader<ReadHalf<DuplexStream>>,
    w: WriteHalf<DuplexStream>,
    session: tokio::task::JoinHandle<()>,
}

impl Dialogue {
    /// Sends bytes as they are.
    async fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.expect("the session reads");
    }

    /// Reads one reply, multi-line replies whole; its lines without CRLF,
    /// joined by `\n`. Empty when the session closed the connection.
    async fn reply(&mut self) -> String {
        let mut lines: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).await.expect("read a reply");
            if n == 0 {
                return lines.join("\n");
            }
            assert!(
                line.ends_with("\r\n"),
                "a reply line ends with CRLF: {line:?}"
            );
            let line = line.trim_end_matches("\r\n").to_string();
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return lines.join("\n");
            }
        }
    }

    /// Sends one command line (CRLF added) and reads its reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Plays a transcript: each client line, then a reply that starts with
    /// the expected text (its last line, for a multi-line reply).
    async fn play(&mut self, steps: &[(&str, &str)]) {
        for (line, expected) in steps {
            let got = self.cmd(line).await;
            let last = got.lines().last().unwrap_or_default();
            assert!(
                last.starts_with(expected),
                "{line:?}: expected {expected:?}, got {got:?}"
            );
        }
    }

    /// The session closed the connection and ended.
    async fn ends(mut self) {
        let rest = self.reply().await;
        assert_eq!(rest, "", "nothing after the last reply");
        self.session.await.expect("the session ends cleanly");
    }
}

/// A router stub: answers each request with `rule(request)`, or never
/// (`None`); notices (`reply=no`) are recorded only.
struct RouterStub {
    path: PathBuf,
    /// Every request received, in order.
    seen: Arc<Mutex<Vec<Attrs>>>,
}

type Rule = dyn Fn(&Attrs) -> Option<Attrs> + Send + Sync;

impl RouterStub {
    async fn start(rule: impl Fn(&Attrs) -> Option<Attrs> + Send + Sync + 'static) -> RouterStub {
        let path = scratch("router");
        let listener = UnixListener::bind(&path).expect("bind the router stub");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (rule, seen) = (rule.clone(), seen2.clone());
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut r = BufReader::new(r);
                    let hello = Attrs::new().with("protocol", PROTOCOL).with("version", 1);
                    if proto::write(&mut w, &hello).await.is_err() {
                        return;
                    }
                    while let Ok(Some(req)) = proto::read(&mut r).await {
                        seen.lock().expect("not poisoned").push(req.clone());
                        if req.get("reply") == Some("no") {
                            continue;
                        }
                        if let Some(answer) = rule(&req) {
                            if proto::write(&mut w, &answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RouterStub { path, seen }
    }

    /// The `request=` verbs received, in order.
    fn verbs(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("not poisoned");
        seen.iter()
            .filter_map(|a| a.get("request").map(str::to_string))
            .collect()
    }
}

impl Drop for RouterStub {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `status=<status>` for `req`, with more attributes.
fn answer(req: &Attrs, status: &str) -> Attrs {
    Attrs::new()
        .with("id", req.get("id").unwrap_or_default())
        .with("status", status)
}

/// A domain route to a backend on loopback `port`, server number `server`.
fn route_to(req: &Attrs, server: u32, port: u16, timeout: Duration) -> Attrs {
    Route {
        server,
        name: format!("backend{server}").into(),
        host: "127.0.0.1".into(),
        port,
        timeout,
        identity: ClientIdentity::Ipaddr,
        cause: Cause::Domain,
    }
    .to_attrs(req.get("id").unwrap_or_default())
}

/// The usual router: connections counted, no relay client, `one.test` on
/// server 1 at `ports[0]` and `two.test` on server 2 at `ports[1]`,
/// policy `dunno`, no lock-out, no credentials.
fn usual(req: &Attrs, ports: &[u16]) -> Option<Attrs> {
    Some(match req.get("request")? {
        "route" => {
            let server = match req.get("domain")? {
                "one.test" => 1,
                "two.test" => 2,
                _ => return Some(answer(req, "notfound")),
            };
            let port = *ports.get(server as usize - 1)?;
            route_to(req, server, port, Duration::from_secs(5))
        }
        "policy" => answer(req, "ok").with("action", "dunno"),
        "brake" => answer(req, "ok").with("failures", 0),
        _ => answer(req, "notfound"),
    })
}

/// How a backend stub behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// An ordinary server with PIPELINING.
    Normal,
    /// As `Normal`, without PIPELINING.
    NoPipelining,
    /// Greets with 554.
    RefuseGreeting,
    /// Accepts the connection and never says a word.
    Silent,
    /// Closes the connection when the second RCPT comes.
    DropAtSecondRcpt,
}

/// A backend stub on loopback: its port and what it received.
struct BackendStub {
    port: u16,
    got: Arc<Mutex<Vec<u8>>>,
}

impl BackendStub {
    async fn start(mode: Mode) -> BackendStub {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a backend");
        let port = listener.local_addr().expect("its address").port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let got2 = got.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(backend(s, mode, got2.clone()));
            }
        });
        BackendStub { port, got }
    }

    /// Everything it received so far, as text.
    fn received(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().expect("not poisoned")).into_owned()
    }
}

/// One backend connection, played as `mode` says.
async fn backend(s: tokio::net::TcpStream, mode: Mode, got: Arc<Mutex<Vec<u8>>>) {
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let greeting: &[u8] = match mode {
        Mode::Silent => {
            let mut line = Vec::new();
            let _ = r.read_until(b'\n', &mut line).await;
            return;
        }
        Mode::RefuseGreeting => b"554 5.3.2 backend.test not now\r\n",
        _ => b"220 backend.test ESMTP\r\n",
    };
    if w.write_all(greeting).await.is_err() {
        return;
    }
    let mut rcpts = 0;
    loop {
        let Some(line) = recorded_line(&mut r, &got).await else {
            return;
        };
        let verb = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let refusal;
        let reply: &[u8] = if verb.starts_with("EHLO") {
            if mode == Mode::NoPipelining {
                b"250-backend.test\r\n250 8BITMIME\r\n"
            } else {
                b"250-backend.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
            }
        } else if verb.starts_with("RCPT") {
            rcpts += 1;
            if mode == Mode::DropAtSecondRcpt && rcpts == 2 {
                return;
            }
            if verb.contains("<FULL@") {
                let address = String::from_utf8_lossy(&line);
                let address = address.trim_end().trim_start_matches("RCPT TO:");
                refusal = format!("452 4.2.2 {address}: mailbox full\r\n");
                refusal.as_bytes()
            } else if verb.contains("<REFUSED@") {
                let address = String::from_utf8_lossy(&line);
                let address = address.trim_end().trim_start_matches("RCPT TO:");
                refusal = format!("550 5.1.1 {address}: no such user\r\n");
                refusal.as_bytes()
            } else {
                b"250 2.1.5 Ok\r\n"
            }
        } else if verb.starts_with("DATA") {
            if w.write_all(b"354 go ahead\r\n").await.is_err() {
                return;
            }
            loop {
                match recorded_line(&mut r, &got).await {
                    Some(line) if line == b".\r\n" => break,
                    Some(_) => {}
                    None => return,
                }
            }
            b"250 2.0.0 Ok: queued as B1\r\n"
        } else if verb.starts_with("QUIT") {
            let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
            return;
        } else if verb.starts_with("MAIL") || verb.starts_with("RSET") || verb.starts_with("IPADDR")
        {
            b"250 2.0.0 Ok\r\n"
        } else {
            b"500 5.5.2 what?\r\n"
        };
        if w.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Reads one line from the backend's client and records it; `None` at
/// the end of the connection.
async fn recorded_line(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    got: &Mutex<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match r.read_until(b'\n', &mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            got.lock().expect("not poisoned").extend_from_slice(&line);
            Some(line)
        }
    }
}

/// A session started with `setup`, greeted, in a transaction from `s@x.test`.
async fn in_transaction(setup: Setup) -> Dialogue {
    let (mut d, _) = setup.start().await;
    d.play(&[
        ("EHLO client.test", "250 "),
        ("MAIL FROM:<s@x.test>", "250 2.1.0"),
    ])
    .await;
    d
}

/// A loopback port where nothing listens.
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("its address").port()
}

/// Whether a path exists (the router socket of a test without one must not).
fn absent(p: &Path) -> bool {
    !p.exists()
}

#[test]
fn a_session_id_reads_back_as_made_and_keeps_at_most_16_bytes() {
    assert_eq!(&*super::Sid::new("4E0877938360"), "4E0877938360");
    assert_eq!(&*super::Sid::new(""), "");
    assert_eq!(&*super::Sid::new("0123456789ABCDEFGH"), "0123456789ABCDEF");
    // Never cut inside a character.
    assert_eq!(&*super::Sid::new("0123456789ABCDEé"), "0123456789ABCDE");
}
