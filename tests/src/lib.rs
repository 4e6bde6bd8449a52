//! Helpers for postern's integration tests.
//!
//! The tests run the real binaries (built by `cargo build --workspace` into the
//! same target directory as the test executables) on loopback, drive them with
//! real clients (`swaks`, Python's `smtplib`, raw sockets for byte-exact
//! cases) and check what reached [`RecordingBackend`]s, which keep the exact
//! bytes they received. Nothing sleeps to wait for a condition: every wait
//! polls for the event (a log line, a pid, a message) under a deadline.

pub mod dns;
pub mod netns;
pub mod postfix;
pub mod redis;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait in a test may last before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The directory holding the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    for b in ["postern", "postern-smtpd", "postern-router"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace` before the tests (tests/run does)",
            dir.join(b).display()
        );
    }
    dir
}

/// Path of one of postern's binaries.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "postern-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// A path inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it returns `Some`, or panics after [`DEADLINE`] with `what`.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` every 20 ms until it is true (returns true) or `limit` has
/// passed (returns false): for a condition the test reports itself.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port with nothing listening on it (bound on every address, then
/// released), for a listener or a backend a test starts later, or one that
/// stays down. It is taken below the kernel's ephemeral range (32768 and
/// up, `net.ipv4.ip_local_port_range`), so that no outgoing connection of a test running meanwhile can take
/// it as its source port before the test binds it; each test process starts
/// its search at a different place.
pub fn closed_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Above the benchmarks' ports (bench/: 24500 and up), below 32768.
    const FIRST: u16 = 25_000;
    const SPAN: u16 = 7_000;
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let port = FIRST + (start + NEXT.fetch_add(7, Ordering::Relaxed) % SPAN) % SPAN;
        // One at a time: each listener is closed before the next bind.
        let free = ["127.0.0.1", "0.0.0.0", "::"]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok());
        if free {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// One message as a backend received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Every command line of the session up to and including DATA, CRLF stripped.
    pub commands: Vec<String>,
    /// The DATA bytes exactly as received, the final `.CRLF` excluded.
    pub data: Vec<u8>,
    /// When the backend accepted the connection that carried it.
    pub connected_at: Option<Instant>,
}

impl Received {
    /// Position of the first command starting with `prefix` (case-insensitive).
    pub fn position(&self, prefix: &str) -> Option<usize> {
        self.commands.iter().position(|c| {
            c.to_ascii_uppercase()
                .starts_with(&prefix.to_ascii_uppercase())
        })
    }
}

/// The reply of [`BackendOpts::multiline_refusal`], exactly.
pub const MULTILINE_REFUSAL: &[u8] = b"550-5.1.1 This mailbox has moved:\r\n550-5.1.1 write to someone@new.example\r\n550 5.1.1 Recipient address rejected\r\n";

/// How a [`RecordingBackend`] behaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendOpts {
    /// Expect a PROXY protocol header (v1 or v2) before greeting, as a server
    /// behind HAProxy does; it is recorded in [`RecordingBackend::headers`].
    pub proxy_header: bool,
    /// Advertise `XCLIENT NAME ADDR PORT PROTO HELO LOGIN` and answer XCLIENT with 220.
    pub xclient: bool,
    /// Like a server's idle timeout: a connection silent for this long gets
    /// `421 4.4.2` and is closed.
    pub idle_close: Option<Duration>,
    /// Refuse this recipient (`RCPT TO:<…>`, exact) with `550 5.1.1`.
    pub refuse_rcpt: Option<&'static str>,
    /// Refuse this recipient for now (`450 4.2.1`).
    pub defer_rcpt: Option<&'static str>,
    /// Refuse this recipient with a reply of three lines (`550-…`).
    pub multiline_refusal: Option<&'static str>,
    /// Drop the connection, without a reply, at `RCPT TO:<this>`.
    pub drop_at_rcpt: Option<&'static str>,
    /// After 354, stop reading (for a minute), as a stuck server would.
    pub stall_in_data: bool,
    /// Accept the connection's first IPADDR FROM (250) and refuse any
    /// later one (503), as a server that takes the address once would.
    pub ipaddr_once: bool,
    /// A connection whose first command after EHLO comes this long after
    /// EHLO is closed without a reply: like a server whose idle timer fired
    /// just as the client spoke.
    pub close_late_command: Option<Duration>,
}

#[derive(Default)]
struct Recorded {
    messages: Vec<Received>,
    connections: usize,
    /// PROXY headers received, one per connection.
    headers: Vec<Vec<u8>>,
    /// Every byte of every session, in arrival order per session.
    transcripts: Vec<Vec<u8>>,
    /// Connections that said QUIT without a MAIL command.
    quits_without_mail: usize,
    quits: usize,
    /// Connections closed by `idle_close`.
    idle_closed: usize,
}

/// A backend SMTP server that records exactly what it receives.
///
/// It answers like a plain MTA: 220 greeting, EHLO with `SIZE` and
/// `8BITMIME`, 500 to `IPADDR` (as any non-SpamWars server would: the proxy
/// must ignore it), 250 to MAIL/RCPT/RSET/NOOP (550 to the recipient of
/// `BackendOpts::refuse_rcpt`), 354 to DATA (554 5.5.1 without an accepted
/// recipient), `250 2.0.0 Ok: queued as N` after the body.
pub struct RecordingBackend {
    /// Its address.
    pub addr: SocketAddr,
    state: Arc<(Mutex<Recorded>, Condvar)>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl RecordingBackend {
    /// Starts a backend on 127.0.0.1 with a port of the system's choosing.
    pub fn start() -> RecordingBackend {
        Self::start_with(BackendOpts::default())
    }

    /// A backend on a given port (one that was down until now).
    pub fn start_on(port: u16) -> RecordingBackend {
        Self::listen(
            TcpListener::bind(("127.0.0.1", port)).expect("bind backend"),
            BackendOpts::default(),
        )
    }

    /// As [`RecordingBackend::start`], with options.
    pub fn start_with(opts: BackendOpts) -> RecordingBackend {
        Self::listen(
            TcpListener::bind("127.0.0.1:0").expect("bind backend"),
            opts,
        )
    }

    fn listen(listener: TcpListener, opts: BackendOpts) -> RecordingBackend {
        let addr = listener.local_addr().expect("backend addr");
        let state: Arc<(Mutex<Recorded>, Condvar)> = Arc::default();
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, stop) = (state.clone(), stopped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // The listener closes with this thread: the port refuses.
                    return;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || backend_session(conn, st, opts));
            }
        });
        RecordingBackend {
            addr,
            state,
            stopped,
        }
    }

    /// Stops listening (a server going down): new connections are
    /// refused; the sessions under way go on. [`RecordingBackend::start_on`]
    /// its port brings it back.
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        wait_for("the backend's port to close", || {
            TcpStream::connect(self.addr).is_err().then_some(())
        });
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The messages received so far.
    pub fn messages(&self) -> Vec<Received> {
        self.state.0.lock().expect("lock").messages.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.0.lock().expect("lock").connections
    }

    /// Connections that ended with QUIT.
    pub fn quits(&self) -> usize {
        self.state.0.lock().expect("lock").quits
    }

    /// Connections that ended with QUIT and never started a transaction.
    pub fn quits_without_mail(&self) -> usize {
        self.state.0.lock().expect("lock").quits_without_mail
    }

    /// Connections closed for being idle (`BackendOpts::idle_close`).
    pub fn idle_closed(&self) -> usize {
        self.state.0.lock().expect("lock").idle_closed
    }

    /// The PROXY headers received, one per connection.
    pub fn headers(&self) -> Vec<Vec<u8>> {
        self.state.0.lock().expect("lock").headers.clone()
    }

    /// All bytes received, every session concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.state.0.lock().expect("lock").transcripts.concat()
    }

    /// Waits until at least `n` messages have arrived; returns them.
    pub fn wait_messages(&self, n: usize) -> Vec<Received> {
        let (lock, cv) = &*self.state;
        let mut g = lock.lock().expect("lock");
        let start = Instant::now();
        while g.messages.len() < n {
            let left = DEADLINE.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "backend {} got {} of {n} messages",
                self.addr,
                g.messages.len()
            );
            g = cv.wait_timeout(g, left).expect("lock").0;
        }
        g.messages.clone()
    }
}

fn backend_session(conn: TcpStream, st: Arc<(Mutex<Recorded>, Condvar)>, opts: BackendOpts) {
    let idx = {
        let mut g = st.0.lock().expect("lock");
        g.connections += 1;
        g.transcripts.push(Vec::new());
        g.transcripts.len() - 1
    };
    let record =
        |bytes: &[u8]| st.0.lock().expect("lock").transcripts[idx].extend_from_slice(bytes);
    let connected_at = Instant::now();
    let _ = conn.set_read_timeout(opts.idle_close);
    let mut w = conn.try_clone().expect("clone");
    let mut r = BufReader::new(conn);
    if opts.proxy_header {
        match read_proxy_header(&mut r) {
            Some(h) => st.0.lock().expect("lock").headers.push(h),
            None => return,
        }
    }
    let _ = w.write_all(b"220 backend.test ESMTP recording\r\n");
    let fresh = || Received {
        connected_at: Some(connected_at),
        ..Received::default()
    };
    let mut current = fresh();
    let mut mail = false;
    let mut rcpts = 0;
    let mut after_ehlo: Option<Instant> = None;
    let mut ipaddrs = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Err(e)
                if line.is_empty()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                let _ = w.write_all(b"421 4.4.2 backend.test Error: timeout exceeded\r\n");
                st.0.lock().expect("lock").idle_closed += 1;
                return;
            }
            Err(_) => return,
            Ok(_) => {}
        }
        if let (Some(at), Some(late)) = (after_ehlo.take(), opts.close_late_command) {
            if at.elapsed() > late {
                return;
            }
        }
        record(&line);
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let verb = text.split(' ').next().unwrap_or("").to_ascii_uppercase();
        if verb == "EHLO" || verb == "HELO" {
            // RFC 5321 §4.1.4: a later EHLO resets the transaction as RSET
            // does; the record of one that had begun starts afresh.
            rcpts = 0;
            if current.position("MAIL").is_some() {
                current = fresh();
            }
        }
        current.commands.push(text.clone());
        if verb == "EHLO" && current.commands.len() == 1 {
            after_ehlo = Some(Instant::now());
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if opts.xclient => {
                b"250-backend.test\r\n250-SIZE 104857600\r\n250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n250 8BITMIME\r\n"
            }
            "EHLO" => {
                b"250-backend.test\r\n250-SIZE 104857600\r\n250-8BITMIME\r\n250 PIPELINING\r\n"
            }
            "XCLIENT" if opts.xclient => b"220 backend.test ESMTP after XCLIENT\r\n",
            "AUTH" => b"235 2.7.0 Authentication successful\r\n",
            "HELO" => b"250 backend.test\r\n",
            "IPADDR" if opts.ipaddr_once => {
                ipaddrs += 1;
                if ipaddrs == 1 {
                    b"250 2.0.0 Ok\r\n"
                } else {
                    b"503 5.5.1 Error: IPADDR FROM already given\r\n"
                }
            }
            "IPADDR" => b"500 5.5.2 Error: command not recognized\r\n",
            "MAIL" => {
                mail = true;
                b"250 2.1.0 Ok\r\n"
            }
            "RCPT" if opts.drop_at_rcpt.is_some_and(|r| text == format!("RCPT TO:<{r}>")) => {
                return;
            }
            "RCPT"
                if opts
                    .multiline_refusal
                    .is_some_and(|r| text == format!("RCPT TO:<{r}>")) =>
            {
                MULTILINE_REFUSAL
            }
            "RCPT" if opts.defer_rcpt.is_some_and(|r| text == format!("RCPT TO:<{r}>")) => {
                b"450 4.2.1 Mailbox busy, try again later\r\n"
            }
            "RCPT" if opts.refuse_rcpt.is_some_and(|r| text == format!("RCPT TO:<{r}>")) => {
                b"550 5.1.1 Recipient address rejected: User unknown\r\n"
            }
            "RCPT" => {
                rcpts += 1;
                b"250 2.1.5 Ok\r\n"
            }
            "RSET" => {
                current = fresh();
                rcpts = 0;
                b"250 2.0.0 Ok\r\n"
            }
            "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                let _ = w.write_all(b"221 2.0.0 Bye\r\n");
                let mut g = st.0.lock().expect("lock");
                g.quits += 1;
                if !mail {
                    g.quits_without_mail += 1;
                }
                return;
            }
            "DATA" if rcpts == 0 => b"554 5.5.1 Error: no valid recipients\r\n",
            "DATA" if opts.stall_in_data => {
                let _ = w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            "DATA" => {
                rcpts = 0;
                let _ = w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                let mut data = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return, // aborted: the message is not kept
                        Ok(_) => {}
                    }
                    record(&line);
                    if line == b".\r\n" {
                        break;
                    }
                    data.extend_from_slice(&line);
                }
                current.data = data;
                let n = {
                    let (lock, cv) = &*st;
                    let mut g = lock.lock().expect("lock");
                    g.messages.push(std::mem::replace(&mut current, fresh()));
                    cv.notify_all();
                    g.messages.len()
                };
                let _ = w.write_all(format!("250 2.0.0 Ok: queued as {n}\r\n").as_bytes());
                continue;
            }
            _ => b"502 5.5.2 Error: command not recognized\r\n",
        };
        let _ = w.write_all(reply);
    }
}

/// Reads a PROXY v1 line or v2 header; `None` on anything else.
fn read_proxy_header(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let first = r.fill_buf().ok()?.first().copied()?;
    if first == b'P' {
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).ok()?;
        return Some(line);
    }
    let mut head = [0u8; 16];
    r.read_exact(&mut head).ok()?;
    if &head[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
        return None;
    }
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut rest = vec![0u8; len];
    r.read_exact(&mut rest).ok()?;
    let mut all = head.to_vec();
    all.extend_from_slice(&rest);
    Some(all)
}

/// A running postern master, started with a configuration file in a scratch directory.
pub struct Postern {
    /// The scratch directory: config, run_dir, logs.
    pub dir: TempDir,
    /// The master process.
    pub child: Option<Child>,
    /// The address smtpd listens on.
    pub addr: SocketAddr,
}

/// The `[proxy]`/`[process]` part of a test configuration; `servers` is appended.
pub fn config_text(dir: &TempDir, servers: &str) -> String {
    format!(
        r#"[proxy]
listen = ["127.0.0.1:0"]
hostname = "mx.postern.test"
command_timeout = "30s"

[process]
run_dir = "{run}"
state_dir = "{run}/state"
spool_dir = "{run}/spool"
stop_timeout = "5s"

{servers}"#,
        run = dir.path("run").display()
    )
}

/// A `[[server]]` block.
pub fn server_block(name: &str, port: u16, domains: &[&str]) -> String {
    let domains: Vec<String> = domains.iter().map(|d| format!("{d:?}")).collect();
    format!(
        "[[server]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = \"5s\"\ndomains = [{}]\n\n",
        domains.join(", ")
    )
}

impl Postern {
    /// Writes `config` to `dir/postern.toml` and starts the master; waits until it serves.
    pub fn start(dir: TempDir, config: &str) -> Postern {
        Self::start_with(dir, config, &[])
    }

    /// As [`Postern::start`], with extra environment variables.
    pub fn start_with(dir: TempDir, config: &str, env: &[(&str, String)]) -> Postern {
        Self::start_via(dir, config, env, &[])
    }

    /// As [`Postern::start_with`], the master started by the program and
    /// arguments `via` (e.g. `setpriv` and its options), which run postern.
    pub fn start_via(
        dir: TempDir,
        config: &str,
        env: &[(&str, String)],
        via: &[String],
    ) -> Postern {
        let conf = dir.path("postern.toml");
        fs::write(&conf, config).expect("write config");
        let log = fs::File::create(dir.path("postern.log")).expect("log file");
        let mut cmd = match via.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("postern"));
                c
            }
            None => Command::new(bin("postern")),
        };
        cmd.arg("-c")
            .arg(&conf)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        // Under a systemd service these would send the log to the journal
        // (log.journald = "auto"), where the helpers do not look.
        cmd.env_remove("JOURNAL_STREAM").env_remove("INVOCATION_ID");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start postern");
        let mut p = Postern {
            dir,
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("addr"),
        };
        let line = p.wait_log("listening on ");
        p.addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|a| a.trim().parse().ok())
            .expect("listening address in the log");
        p.wait_log("ready: router and");
        p
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path("postern.toml")
    }

    /// Everything the processes logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("postern.log")).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_count(needle, 1)
    }

    /// Waits until `needle` appears in at least `n` log lines; returns the n-th.
    pub fn wait_log_count(&self, needle: &str, n: usize) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(l) = log.lines().filter(|l| l.contains(needle)).nth(n - 1) {
                return l.to_string();
            }
            if start.elapsed() > DEADLINE {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                panic!("timed out after {DEADLINE:?} waiting for log line {needle:?} (x{n}); the log ends:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends a signal to the master.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal master");
    }

    /// Runs `postern -c <config> ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("postern"))
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run postern CLI")
    }

    /// The live workers from `postern status`: (program, pid, restarts).
    pub fn workers(&self) -> Vec<(String, i32, u32)> {
        let out = self.cli(&["status"]);
        assert!(
            out.status.success(),
            "postern status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("postern-"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // A worker being restarted has no pid: it is not listed.
                if f.get(1).is_some_and(|w| w.parse::<i32>().is_err()) {
                    return None;
                }
                let parsed = (|| {
                    Some((
                        f[0].to_string(),
                        f.get(1)?.parse().ok()?,
                        f.get(3)?.parse().ok()?,
                    ))
                })();
                Some(parsed.unwrap_or_else(|| {
                    panic!(
                        "a worker line postern status does not read as NAME PID … RESTARTS: {l:?}"
                    )
                }))
            })
            .collect()
    }

    /// The pids of live workers of `program`.
    pub fn pids_of(&self, program: &str) -> Vec<i32> {
        self.workers()
            .into_iter()
            .filter(|w| w.0 == program)
            .map(|w| w.1)
            .collect()
    }

    /// Sends SIGTERM and waits for the master to exit; returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().expect("running");
        wait_for("the master to exit", || child.try_wait().expect("wait"))
    }
}

impl Drop for Postern {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when the test ends, pass or fail.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        wait_for("the process to exit", || self.0.try_wait().expect("wait"))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// True while a process with this pid exists (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Runs swaks against postern; returns its combined output and exit status.
pub fn swaks(addr: SocketAddr, args: &[&str]) -> (String, bool) {
    let out = Command::new("swaks")
        .arg("--server")
        .arg(addr.ip().to_string())
        .arg("--port")
        .arg(addr.port().to_string())
        .arg("--timeout")
        .arg("20")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("swaks is installed (tests/run installs it)");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

/// The reply codes swaks printed for the server's answers (lines starting `<-` or `<**`).
pub fn swaks_codes(output: &str) -> Vec<u16> {
    output
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix("<**").or_else(|| l.strip_prefix("<-"))?;
            rest.trim_start().get(..3)?.parse().ok()
        })
        .collect()
}

/// Runs a Python script with the given arguments; returns stdout, panicking on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    python_at("python3", script, args)
}

/// As [`python`], with Debian's own Python (`/usr/bin/python3`), for the
/// modules tests/run installs from Debian (selenium, prometheus_client): a
/// python3 earlier in PATH (pyenv's, say) would not have them.
pub fn debian_python(script: &str, args: &[&str]) -> String {
    python_at("/usr/bin/python3", script, args)
}

fn python_at(program: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One message, `Subject: two`, from `sender` to `recipients` in one
/// transaction, sent by Python's smtplib from the loopback address `from`;
/// returns its line `refused: {…}` (smtplib's refused recipients).
pub fn smtplib_sendmail(from: &str, to: SocketAddr, sender: &str, recipients: &[&str]) -> String {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), source_address=(sys.argv[3], 0), timeout=20)
refused = s.sendmail(sys.argv[4], sys.argv[5:], "Subject: two\r\n\r\nhi\r\n")
print("refused:", refused)
s.quit()
"#;
    let (ip, port) = (to.ip().to_string(), to.port().to_string());
    let mut args = vec![ip.as_str(), port.as_str(), from, sender];
    args.extend_from_slice(recipients);
    python(script, &args)
}

/// A TCP connection from a chosen loopback source address (distinct client IPs).
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let ip: std::net::Ipv4Addr = from.parse().expect("IPv4 source address");
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let sock = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    bind(
        sock.as_raw_fd(),
        &SockaddrIn::from(std::net::SocketAddrV4::new(ip, 0)),
    )
    .expect("bind source");
    connect(sock.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    TcpStream::from(sock)
}

/// A raw SMTP client for byte-exact dialogues.
pub struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    /// Connects from `from` (a loopback address such as 127.0.0.2) to `to`; reads the greeting.
    pub fn connect_from(from: &str, to: SocketAddr) -> Raw {
        Self::wrap(connect_from(from, to))
    }

    /// Connects from `from` and returns the server's verdict on the
    /// connection without checking it: the 220 greeting of an accepted
    /// one, or the 421 of a refused one — which postern sends at once
    /// after its greeting (it greets while the router counts). After a 220,
    /// a NOOP tells them apart: an accepted session answers it, a refused
    /// one has already said 421 and closed. Then closes.
    pub fn connect_raw_from(from: &str, to: SocketAddr) -> String {
        let mut stream = connect_from(from, to);
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let mut r = BufReader::new(stream.try_clone().expect("clone"));
        let mut greeting = String::new();
        let _ = r.read_line(&mut greeting);
        if !greeting.starts_with("220") {
            return greeting;
        }
        // The write may fail on a connection already closed: the 421 is read anyway.
        let _ = stream.write_all(b"NOOP\r\n");
        let mut next = String::new();
        let _ = r.read_line(&mut next);
        if next.starts_with("421") {
            next
        } else {
            greeting
        }
    }

    /// Connects from 127.0.0.1.
    pub fn connect(to: SocketAddr) -> Raw {
        Self::wrap(TcpStream::connect(to).expect("connect"))
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        // A server that stops reading fails the test instead of hanging it.
        stream.set_write_timeout(Some(DEADLINE)).expect("timeout");
        let mut raw = Raw {
            r: BufReader::new(stream.try_clone().expect("clone")),
            w: stream,
        };
        let greeting = raw.reply();
        assert!(greeting.starts_with("220 "), "greeting: {greeting}");
        raw
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("send");
    }

    /// Reads one whole reply (all its lines), returned with CRLFs.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("read reply");
            assert!(n > 0, "connection closed; got so far: {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends one command (CRLF added) and returns the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server has closed the connection (reads EOF).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.r.read(&mut buf), Ok(0))
    }
}
