//! A private, real Postfix as a backend: proves that what postern forwards
//! about the client (XCLIENT, PROXY v2) is what a real MTA understands.
//!
//! [`PostfixBackend::start`] builds a whole Postfix instance inside a
//! [`TempDir`]: its own `config_directory` (`conf/main.cf`, `conf/master.cf`),
//! `queue_directory` (`queue/`), `data_directory` (`data/`) and log file
//! (`maillog`, written by the `postlog` service). Nothing else on the machine is
//! used: no `/etc/postfix/main.cf` (the package is installed unconfigured), no
//! syslog, no system queue. Several instances run side by side, each with its
//! own master, ports and lock files.
//!
//! The instance listens on two loopback ports only:
//! - [`PostfixBackend::xclient_addr`]: a plain smtpd that accepts XCLIENT from
//!   127.0.0.0/8 (`smtpd_authorized_xclient_hosts`);
//! - [`PostfixBackend::proxy_addr`]: an smtpd that requires a PROXY header
//!   (`smtpd_upstream_proxy_protocol = haproxy`, v1 or v2).
//!
//! It accepts mail for [`PostfixBackend::DOMAIN`] only and delivers nowhere:
//! every transport is `discard:`. What the tests look at is the log, where
//! smtpd writes `<queue id>: client=<name>[<address>]` for each accepted
//! message, with the address it believes the client has. Reverse lookups are
//! off (`smtpd_peername_lookup = no`), so names are `unknown` and no test
//! depends on DNS.
//!
//! Start-up order matters: the queue directory must exist before
//! `postfix start`, which then creates its subdirectories and the data
//! directory with the right owners (`postfix`, `postdrop`); the master is
//! ready (sockets bound) when `postfix start` returns, because it waits for
//! the master's initialisation (`master -w`). Postfix must run as root; the
//! package (`postfix`, Debian) is installed by `tests/run`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{alive, closed_port, wait_for, TempDir};

/// The `postfix` command.
const POSTFIX: &str = "/usr/sbin/postfix";
/// The master daemon, checked so that a missing package fails with a clear message.
const MASTER: &str = "/usr/lib/postfix/sbin/master";
/// Start attempts: a port picked by [`closed_port`] may be taken by another
/// test before the master binds it; the next attempt picks new ports.
const START_ATTEMPTS: usize = 5;

/// A running Postfix instance of its own, stopped when dropped.
pub struct PostfixBackend {
    /// Port of the smtpd that accepts XCLIENT from 127.0.0.0/8.
    pub xclient_port: u16,
    /// Port of the smtpd that expects a PROXY (v1 or v2) header first.
    pub proxy_port: u16,
    /// The master's pid, from `queue/pid/master.pid`; `None` once stopped.
    master_pid: Option<i32>,
    /// Everything of the instance: configuration, queue, data, log. Declared
    /// last so that it is removed only after `drop` has stopped the master.
    dir: TempDir,
}

impl PostfixBackend {
    /// The domain the instance accepts mail for (and discards).
    pub const DOMAIN: &'static str = "relay.test";
    /// The instance's `myhostname`, seen in its greeting and EHLO reply.
    pub const HOSTNAME: &'static str = "mx.postfix.test";

    /// Starts an instance on two free loopback ports; returns once both listen.
    pub fn start() -> PostfixBackend {
        Self::start_with("")
    }

    /// An instance that relays every message it accepts to `relay`
    /// (postern), like a customer's Postfix sending through the front door:
    /// an `smtp` client service, `relayhost` set, nothing discarded. Its
    /// smtpd still accepts mail for [`PostfixBackend::DOMAIN`] from
    /// 127.0.0.0/8 (`mynetworks`), and the `domain` given is relayed too.
    pub fn start_sender(relay: SocketAddr, domain: &str) -> PostfixBackend {
        Self::start_with(&format!(
            "relayhost = [{}]:{}\nmynetworks = 127.0.0.0/8\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\nrelay_domains = {}, {domain}\ntransport_maps =\ndefault_transport = smtp\nrelay_transport = smtp\nsmtp_helo_name = mx.postfix.test\n# Retry on demand only (postqueue -f), not on its own schedule.\nqueue_run_delay = 1h\nminimal_backoff_time = 1h\n",
            relay.ip(),
            relay.port(),
            PostfixBackend::DOMAIN
        ))
    }

    /// Asks the instance to retry every deferred message now (`postqueue -f`).
    pub fn flush(&self) {
        let out = Command::new("/usr/sbin/postqueue")
            .arg("-c")
            .arg(self.dir.path("conf"))
            .arg("-f")
            .stdin(Stdio::null())
            .output()
            .expect("postqueue");
        assert!(
            out.status.success(),
            "postqueue -f: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// As [`PostfixBackend::start`], with `main_cf` lines added to the
    /// instance's `main.cf` (restrictions, say), each replacing the base's
    /// line of the same key.
    pub fn start_with(main_cf: &str) -> PostfixBackend {
        assert!(
            Path::new(POSTFIX).exists() && Path::new(MASTER).exists(),
            "Postfix is not installed: run `bash tests/run` (it installs Debian's postfix)"
        );
        assert!(
            nix::unistd::geteuid().is_root(),
            "a private Postfix instance needs root (its daemons switch to the postfix user)"
        );
        let dir = TempDir::new("pf");
        // The daemons run as `postfix` and read main.cf, and postlogd opens the
        // log file, from inside this directory: whatever the umask, they must
        // be able to enter it.
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        fs::create_dir(dir.path("conf")).expect("create config directory");
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let (xclient_port, proxy_port) = two_ports();
            write_config(&dir, xclient_port, proxy_port, main_cf);
            // A failed attempt may leave a half-made queue; start from nothing.
            let _ = fs::remove_dir_all(dir.path("queue"));
            let _ = fs::remove_dir_all(dir.path("data"));
            let _ = fs::remove_file(dir.path("maillog"));
            // Postfix creates the queue's subdirectories, not the queue itself.
            fs::create_dir(dir.path("queue")).expect("create queue directory");
            let out = postfix_command(&dir, "start")
                .output()
                .expect("run postfix start");
            if out.status.success() {
                let pid_file = dir.path("queue/pid/master.pid");
                let Some(pid) = fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                else {
                    // Running, but without the pid we could not kill it later.
                    let _ = postfix_command(&dir, "stop").status();
                    panic!("no pid in {}", pid_file.display());
                };
                return PostfixBackend {
                    xclient_port,
                    proxy_port,
                    master_pid: Some(pid),
                    dir,
                };
            }
            let log = fs::read_to_string(dir.path("maillog")).unwrap_or_default();
            let report = format!(
                "postfix start ({}):\n{}{}\nmaillog:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Only a lost race for a port is worth another attempt.
            if !report.contains("Address already in use") {
                panic!("{report}");
            }
            failures.push(report);
        }
        panic!(
            "Postfix did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    /// Address of the XCLIENT-enabled smtpd.
    pub fn xclient_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.xclient_port))
    }

    /// Address of the PROXY-protocol smtpd.
    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.proxy_port))
    }

    /// Everything the instance logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path("maillog")).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`; returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(&format!("Postfix log line {needle:?}"), || {
            self.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// The client of every message smtpd accepted so far, as
    /// `(queue id, name[address])`, from its `<queue id>: client=…` lines.
    pub fn clients(&self) -> Vec<(String, String)> {
        self.log().lines().filter_map(client_of_line).collect()
    }

    /// Waits until smtpd accepted a message from client address `ip` and
    /// Postfix finished with it (discarded: `status=sent`); returns the
    /// message's `client=` line.
    pub fn wait_delivered_from(&self, ip: &str) -> String {
        let bracketed = format!("[{ip}]");
        let (queue_id, line) = wait_for(&format!("a message from {ip} in the Postfix log"), || {
            self.log().lines().find_map(|l| {
                let (id, client) = client_of_line(l)?;
                client.ends_with(&bracketed).then(|| (id, l.to_string()))
            })
        });
        self.wait_log(&format!("{queue_id}: removed"));
        let log = self.log();
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("{queue_id}: to=<")) && l.contains("status=sent")),
            "message {queue_id} was not delivered (discarded):\n{log}"
        );
        line
    }

    /// Stops the instance: `postfix stop`, then SIGKILL to the master's
    /// process group if it is still there. Idempotent.
    fn stop(&mut self) {
        let Some(pid) = self.master_pid.take() else {
            return;
        };
        // `postfix stop` sends SIGTERM and waits up to 5 s for the master.
        let _ = postfix_command(&self.dir, "stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if self.is_our_master(pid) {
            // The master leads its own session and process group: the group
            // holds exactly this instance's daemons.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let start = Instant::now();
            while alive(pid) && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// True while `pid` is this instance's master: alive, and working in this
    /// instance's queue directory (the master chdirs there), so a recycled
    /// pid is never killed.
    fn is_our_master(&self, pid: i32) -> bool {
        alive(pid)
            && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| {
                fs::canonicalize(self.dir.path("queue")).is_ok_and(|queue| cwd == queue)
            })
    }
}

impl Drop for PostfixBackend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `(queue id, name[address])` from an smtpd line `… <queue id>: client=<name>[<address>]…`.
fn client_of_line(line: &str) -> Option<(String, String)> {
    if !line.contains(" postfix/smtpd[") {
        return None;
    }
    let (before, after) = line.split_once(": client=")?;
    let queue_id = before.rsplit(' ').next()?.to_string();
    let client = after.split([',', ' ']).next()?.to_string();
    Some((queue_id, client))
}

/// Two distinct free ports on 127.0.0.1.
fn two_ports() -> (u16, u16) {
    let a = closed_port();
    loop {
        let b = closed_port();
        if b != a {
            return (a, b);
        }
    }
}

/// `postfix -c <dir>/conf <verb>`, output captured.
fn postfix_command(dir: &TempDir, verb: &str) -> Command {
    let mut cmd = Command::new(POSTFIX);
    cmd.arg("-c")
        .arg(dir.path("conf"))
        .arg(verb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Writes `conf/main.cf` and `conf/master.cf` for the two smtpd ports.
fn write_config(dir: &TempDir, xclient_port: u16, proxy_port: u16, extra: &str) {
    let root = dir.0.display();
    let main_cf = format!(
        "# A private test instance: everything lives under {root}.
compatibility_level = 3.6
config_directory = {root}/conf
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
# Log to a file of the instance through the postlog service (master.cf).
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = {hostname}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
biff = no
# No DNS: clients are named `unknown`.
smtpd_peername_lookup = no
# Accept {domain} only, and deliver nothing anywhere: every transport discards.
relay_domains = {domain}
smtpd_relay_restrictions = reject_unauth_destination
transport_maps = inline:{{{domain}=discard:}}
default_transport = discard:
relay_transport = discard:
local_transport = discard:
",
        hostname = PostfixBackend::HOSTNAME,
        domain = PostfixBackend::DOMAIN,
    );
    // Only the services this instance needs; nothing chrooted (the queue is
    // not laid out for a chroot); no lmtp/local clients; the smtp client
    // serves only a sender instance (start_sender), whose relayhost is a
    // loopback address: every other transport discards.
    let master_cf = format!(
        "# service type  private unpriv chroot wakeup maxproc command
127.0.0.1:{xclient_port} inet n - n - - smtpd
  -o smtpd_authorized_xclient_hosts=127.0.0.0/8
127.0.0.1:{proxy_port} inet n - n - - smtpd
  -o smtpd_upstream_proxy_protocol=haproxy
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
smtp      unix  -       -       n       -       -       smtp
"
    );
    // The extra lines replace the base's keys rather than repeat them:
    // Postfix warns of every overridden key in every daemon, postlogd
    // included, which then waits on its own socket.
    let keys: Vec<&str> = extra
        .lines()
        .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim()))
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .collect();
    let main_cf: String = main_cf
        .lines()
        .filter(|l| {
            !keys
                .iter()
                .any(|k| l.split_once(" =").is_some_and(|(lk, _)| lk.trim() == *k))
        })
        .map(|l| format!("{l}\n"))
        .chain(std::iter::once(extra.to_string()))
        .collect();
    fs::write(dir.path("conf/main.cf"), main_cf).expect("write main.cf");
    fs::write(dir.path("conf/master.cf"), master_cf).expect("write master.cf");
}
