//! The configuration: one TOML file (SPEC §3), parsed with serde into [`Config`].
//!
//! Loading has two steps, in this order:
//! 1. [`Config::parse`] turns text into a `Config`; syntax errors and unknown keys
//!    fail here, with the line and column of the offending key.
//! 2. [`Config::validate`] checks the values as a whole and returns *every*
//!    problem, each named by its key (`server[2].port: …`), so that an
//!    administrator fixes a file in one pass.
//!
//! [`Config::load`] does both. The master is the only process that reads the
//! file: it sends the validated configuration to its workers as TOML text
//! ([`Config::to_toml`]), so a worker never sees a half-edited file.
//!
//! Durations are written `"10s"`, `"2m"`, `"48h"`, `"32d"` ([`Duration`]); sizes
//! `"50MB"`, where K, M and G are powers of 1024 as in nginx and Postfix's
//! documentation ([`Size`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::net::{IpNet, IpPattern};

mod alias;
mod explain;
pub mod legacy;
mod parsed;
mod policy;
mod validate;
mod web;

use validate::{block_lines, with_block_lines};

pub use alias::Alias;
pub use parsed::{ClientZone, DomainZone, FromText, MetricsAddr, Parsed, Resolver};
pub use policy::{Greylist, Policy, PolicyListen, PolicyServer, Restriction};
pub use web::Web;

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/postern/postern.toml";

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The SMTP front side: listeners, identity, limits, admin credentials.
    #[serde(default)]
    pub proxy: Proxy,
    /// STARTTLS on the client side; absent means no STARTTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Processes, users and directories.
    #[serde(default)]
    pub process: Process,
    /// Where and how much to log.
    #[serde(default)]
    pub log: Log,
    /// The backend servers, in the order routing considers them.
    #[serde(default, rename = "server", skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// The update queue and scheduled backend restarts (SPEC §7).
    #[serde(default)]
    pub update: Update,
    /// Virtual aliases (SPEC §12): `[[alias]]`, checked as a whole by
    /// [`crate::alias::Aliases`].
    #[serde(default, rename = "alias", skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Alias>,
    /// Anti-spam policy for mail from the internet (SPEC §8): access lists,
    /// restrictions, DNS blocklists.
    #[serde(default, skip_serializing_if = "Policy::is_empty")]
    pub policy: Policy,
    /// Greylisting (SPEC §8).
    #[serde(default, skip_serializing_if = "Greylist::is_default")]
    pub greylist: Greylist,
    /// The Postfix policy delegation server (SPEC §8).
    #[serde(default, skip_serializing_if = "PolicyServer::is_unset")]
    pub policy_server: PolicyServer,
    /// The Prometheus metrics endpoint (an addition to SPEC §3).
    #[serde(default, skip_serializing_if = "Metrics::is_unset")]
    pub metrics: Metrics,
    /// The admin console (SPEC §11).
    #[serde(default, skip_serializing_if = "Web::is_unset")]
    pub web: Web,
}

/// `[metrics]`: an HTTP endpoint answering `GET /metrics` in the Prometheus
/// text format, served by the router on a socket the master binds.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Loopback `address:port` to listen on; absent: no endpoint. It has no
    /// authentication, hence loopback only. Changing it needs a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<Parsed<MetricsAddr>>,
}

impl Metrics {
    fn is_unset(&self) -> bool {
        self.listen.is_none()
    }

    /// The address to listen on, if set.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.as_ref().map(|l| l.0)
    }
}

/// Largest `proxy.prepared_connections`: each is an idle connection to a
/// backend, per smtpd process and per server.
pub const MAX_PREPARED: u32 = 32;

/// `[proxy]`: the SMTP front side.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// Addresses to listen on. Changing them needs a restart.
    pub listen: Vec<String>,
    /// Name in the greeting and in EHLO to backends; default: the system's host name.
    pub hostname: String,
    /// Text after the host name in the 220 greeting.
    pub banner: String,
    /// User name for the RELOAD and SHUTDOWN SMTP commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_user: Option<String>,
    /// Password for the RELOAD and SHUTDOWN SMTP commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<String>,
    /// Networks from which RELOAD and update mails are accepted.
    pub admin_networks: Vec<Parsed<IpNet>>,
    /// Address whose mail postern broadcasts to every backend (SPEC §7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_address: Option<String>,
    /// Largest message accepted, advertised in EHLO `SIZE`.
    pub max_message_size: Size,
    /// Recipients per transaction.
    pub max_recipients: u32,
    /// Client connections in total, over all smtpd processes.
    pub max_connections: u32,
    /// Client connections from one IP address.
    pub max_connections_per_ip: u32,
    /// How long to wait for a client command.
    pub command_timeout: Duration,
    /// How long to wait for the next piece of a message body.
    pub data_timeout: Duration,
    /// Offer AUTH only inside TLS; default: true when `[tls]` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_requires_tls: Option<bool>,
    /// Backend connections each smtpd keeps greeted and ready per server
    /// while sessions for it keep coming (0: none); see `smtpd/src/prepared.rs`.
    pub prepared_connections: u32,
    /// A backend connection whose session ended cleanly serves a later
    /// session (`ipaddr` and `none` servers); see `smtpd/src/prepared.rs`.
    pub reuse_connections: bool,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy {
            listen: vec!["0.0.0.0:25".into(), "[::]:25".into()],
            hostname: String::new(),
            banner: "ESMTP postern".into(),
            admin_user: None,
            admin_password: None,
            admin_networks: vec![Parsed::known("127.0.0.0/8"), Parsed::known("::1/128")],
            update_address: None,
            max_message_size: Size(50 * 1024 * 1024),
            max_recipients: 1000,
            max_connections: 2000,
            max_connections_per_ip: 50,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            auth_requires_tls: None,
            prepared_connections: 2,
            reuse_connections: true,
        }
    }
}

/// `[update]`: how the updater delivers update mails and runs restarts.
/// An addition to SPEC §3; the defaults follow Postfix's queue manager.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Update {
    /// First retry after a temporary failure; doubles at each try.
    pub retry_min: Duration,
    /// Longest delay between two tries.
    pub retry_max: Duration,
    /// A copy still not delivered after this long is failed
    /// (Postfix's `maximal_queue_lifetime`).
    pub max_age: Duration,
    /// "restart now" waits until a server's last restart is this old (the seed's 5 minutes).
    pub restart_interval: Duration,
    /// Longest a `restart_command` may run before it is killed.
    pub restart_timeout: Duration,
}

impl Default for Update {
    fn default() -> Self {
        Update {
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_age: Duration::from_secs(5 * 86_400),
            restart_interval: Duration::from_secs(300),
            restart_timeout: Duration::from_secs(120),
        }
    }
}

/// `[tls]`: certificate and key for STARTTLS.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[process]`: the master's workers and their directories.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Process {
    /// Unprivileged user of the workers; absent: workers keep the master's user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Number of smtpd processes sharing the listeners.
    pub smtpd_processes: u32,
    /// Directory smtpd chroots into; empty: no chroot. Must contain `run_dir`.
    pub chroot: String,
    /// Sockets and the pid file.
    pub run_dir: PathBuf,
    /// Greylist store, statistics, scheduled restarts.
    pub state_dir: PathBuf,
    /// The update queue.
    pub spool_dir: PathBuf,
    /// Where the worker binaries are; absent: next to the `postern` executable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_dir: Option<PathBuf>,
    /// How long a graceful stop waits for running sessions before ending them.
    pub stop_timeout: Duration,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            user: None,
            smtpd_processes: 2,
            chroot: String::new(),
            run_dir: "/run/postern".into(),
            state_dir: "/var/lib/postern".into(),
            spool_dir: "/var/spool/postern".into(),
            daemon_dir: None,
            stop_timeout: Duration::from_secs(30),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// `auto` (journald when running under systemd), `yes` or `no`.
    pub journald: String,
    /// Optional log file, rotated daily.
    pub file: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            journald: "auto".into(),
            file: String::new(),
        }
    }
}

/// How a backend learns the client's identity (SPEC §5).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIdentity {
    /// `IPADDR FROM <ip>`, the seed's command.
    #[default]
    Ipaddr,
    /// Postfix's XCLIENT.
    Xclient,
    /// HAProxy PROXY protocol, text form.
    ProxyV1,
    /// HAProxy PROXY protocol, binary form.
    ProxyV2,
    /// Nothing.
    None,
}

impl ClientIdentity {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIdentity::Ipaddr => "ipaddr",
            ClientIdentity::Xclient => "xclient",
            ClientIdentity::ProxyV1 => "proxy-v1",
            ClientIdentity::ProxyV2 => "proxy-v2",
            ClientIdentity::None => "none",
        }
    }

    /// Parses the configuration spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            ClientIdentity::Ipaddr,
            ClientIdentity::Xclient,
            ClientIdentity::ProxyV1,
            ClientIdentity::ProxyV2,
            ClientIdentity::None,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// `[[server]]`: one backend mail server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Name used in logs; default: `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host name or address of the backend.
    pub host: String,
    /// SMTP port of the backend.
    pub port: u16,
    /// Connect and reply timeout.
    #[serde(default = "default_server_timeout")]
    pub timeout: Duration,
    /// Relay clients: addresses, `*` octets, CIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relay: Vec<Parsed<IpPattern>>,
    /// SMTP AUTH user of this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SMTP AUTH password of this backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Domains this backend receives mail for; `.example.com` also matches subdomains.
    pub domains: Vec<String>,
    /// How the client's identity reaches the backend.
    #[serde(default)]
    pub client_identity: ClientIdentity,
    /// Command that restarts the backend (argv, no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_command: Option<Vec<String>>,
}

fn default_server_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Server {
    /// The name for logs: `name`, or `host:port` when unnamed.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

/// A duration written `"90s"`, `"5m"`, `"48h"`, `"32d"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    /// Parses `"10s"`-style text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid duration {text:?}: expected a number and a unit, like \"10s\"")
        })?;
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => {
                return Err(format!(
                    "invalid duration {text:?}: the unit must be ms, s, m, h, d or w"
                ))
            }
        };
        n.checked_mul(ms)
            .map(|v| Duration(std::time::Duration::from_millis(v)))
            .ok_or_else(|| format!("duration {text:?} is too large"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms.is_multiple_of(size) {
                return write!(f, "{}{unit}", ms / size);
            }
        }
        write!(f, "{ms}ms")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written `"50MB"`, `"512KB"`, `"1GB"` (powers of 1024) or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    /// Parses `"50MB"`-style text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| {
            format!("invalid size {text:?}: expected a number and a unit, like \"50MB\"")
        })?;
        let mult = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" => 1024,
            "M" | "MB" => 1024 * 1024,
            "G" | "GB" => 1024 * 1024 * 1024,
            _ => {
                return Err(format!(
                    "invalid size {text:?}: the unit must be B, KB, MB or GB"
                ))
            }
        };
        n.checked_mul(mult)
            .map(Size)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] {
            if self.0 != 0 && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// One problem found while loading or validating, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `server[2].port`; empty for the file as a whole.
    pub key: String,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Why a configuration could not be loaded: every problem, ready to print one per line.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file, for messages.
    pub path: String,
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {p}", self.path)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// All problems on one line, for SMTP replies and single log lines.
    pub fn one_line(&self) -> String {
        self.problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match Config::examine(path) {
            (Some(config), problems) if problems.is_empty() => Ok(config),
            (_, problems) => Err(ConfigError {
                path: path.display().to_string(),
                problems,
            }),
        }
    }

    /// Reads, parses and validates a configuration file, gathering every
    /// problem (type errors included, see `config/explain.rs`), with the
    /// configuration as far as it could be read — without its bad keys, for
    /// further checks (`postern check`) — or `None`.
    pub fn examine(path: &Path) -> (Option<Config>, Vec<Problem>) {
        if !path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"))
        {
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    let message = format!("cannot read: {e}");
                    return (
                        None,
                        vec![Problem {
                            key: String::new(),
                            message,
                        }],
                    );
                }
            };
            let parsed = explain::parse(&text);
            let mut problems = parsed.problems;
            let Some(mut config) = parsed.config else {
                return (None, problems);
            };
            config.fill_defaults();
            // A bad key was reported as it was written; validate() sees the
            // placeholder put in its place and is not asked twice.
            let lines = block_lines(&text, "server");
            let alias_lines = block_lines(&text, "alias");
            for mut p in config.validate() {
                let reported =
                    |q: &Problem| q.key == p.key || q.key.starts_with(&format!("{}[", p.key));
                if !problems.iter().any(reported) {
                    if lines.len() == config.servers.len() {
                        with_block_lines(&mut p, "server", &lines);
                    }
                    if alias_lines.len() == config.aliases.len() {
                        with_block_lines(&mut p, "alias", &alias_lines);
                    }
                    problems.push(p);
                }
            }
            problems.extend(config.access_problems());
            return (Some(config), problems);
        }
        // The legacy format (seed 000 §IV); its bytes decide their encoding.
        let parsed = std::fs::read(path)
            .map_err(|e| Problem {
                key: String::new(),
                message: format!("cannot read: {e}"),
            })
            .and_then(|bytes| crate::config::legacy::parse(&bytes).map_err(Problem::from));
        match parsed {
            Ok(mut config) => {
                config.fill_defaults();
                let mut problems = config.validate();
                problems.extend(config.access_problems());
                (Some(config), problems)
            }
            Err(p) => (None, vec![p]),
        }
    }

    /// Parses TOML text; a syntax error or unknown key is reported with its line and column.
    pub fn parse(text: &str) -> Result<Config, Problem> {
        toml::from_str::<Config>(text).map_err(|e| {
            let place = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!("line {line}, column {col}")
                })
                .unwrap_or_default();
            Problem {
                key: place,
                message: e.message().trim().replace('\n', " "),
            }
        })
    }

    /// Fills values whose default depends on the machine (the host name).
    pub fn fill_defaults(&mut self) {
        if self.proxy.hostname.is_empty() {
            self.proxy.hostname = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
        }
    }

    /// The configuration as TOML text, as the master sends it to its workers.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serializes: every field is a plain value")
    }

    /// The access lists' file: `policy.access_file`, or `state_dir/access.toml`.
    pub fn access_file(&self) -> PathBuf {
        self.policy
            .access_file
            .clone()
            .unwrap_or_else(|| self.process.state_dir.join("access.toml"))
    }

    /// The access file's problems, each with its line (an absent file is
    /// empty lists, no problem; one this user may not read is left to the
    /// master).
    fn access_problems(&self) -> Vec<Problem> {
        let path = self.access_file();
        // A user who may not read the state directory (`postern status`
        // run by an operator) cannot judge the file: the master, which
        // checks it at start and at every reload, can.
        if std::fs::File::open(&path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return Vec::new();
        }
        match crate::access::AccessFile::load(&path) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|message| Problem {
                        key: "policy.access_file".into(),
                        message,
                    })
                    .collect()
            }
        }
    }

    /// The listen addresses, parsed (validate() has checked them).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.proxy
            .listen
            .iter()
            .filter_map(|l| l.parse().ok())
            .collect()
    }
}

/// Lower-cases a domain and removes one trailing dot.
pub fn normalize_domain(d: &str) -> String {
    let d = d.trim();
    d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()
}

/// True for a syntactically valid DNS host name (letters, digits, hyphens, dots).
pub fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        // Bytes, not a `char` pattern: every policy question checks names.
        && h.as_bytes().split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
        })
}

/// True when `ip` is inside one of the `networks`.
pub fn in_networks(ip: IpAddr, networks: &[Parsed<IpNet>]) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_relay_lists_and_admin_networks_are_warnings() {
        let c = Config::parse(
            r#"
[proxy]
hostname = "mx.example.net"
admin_networks = ["127.0.0.0/8", "::/0"]
[[server]]
name = "One"
host = "h"
port = 25
domains = ["a.test"]
relay = ["10.0.0.0/8", "0.0.0.0/0", "*.*.*.*", "192.0.2.1"]
"#,
        )
        .expect("parses");
        assert_eq!(c.validate(), vec![], "warnings do not refuse");
        let lines: Vec<String> = c.warnings().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "proxy.admin_networks[1]: \"::/0\" covers every IPv6 address: every client in it may send RELOAD and update mails",
                "server[1].relay[1]: \"0.0.0.0/0\" covers every IPv4 address: every client in it may relay mail to any domain through One (an open relay)",
                "server[1].relay[2]: \"*.*.*.*\" covers every IPv4 address: every client in it may relay mail to any domain through One (an open relay)",
            ]
        );
    }

    const FULL: &str = r#"
[proxy]
listen = ["127.0.0.1:2525"]
hostname = "mx.example.net"
max_message_size = "10MB"
command_timeout = "2m"

[process]
run_dir = "/tmp/postern-run"

[[server]]
name = "Customer One"
host = "localhost"
port = 1025
timeout = "10s"
domains = ["mydomain.com", "mydomain.org"]

[[server]]
host = "localhost"
port = 2025
domains = [".yourdomain.net"]
"#;

    #[test]
    fn parses_and_validates_a_full_file() {
        let c = Config::parse(FULL).expect("parses");
        assert_eq!(c.proxy.max_message_size, Size(10 << 20));
        assert_eq!(c.proxy.command_timeout, Duration::from_secs(120));
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[1].timeout, Duration::from_secs(20));
        assert_eq!(c.servers[1].display_name(), "localhost:2025");
        assert_eq!(c.validate(), vec![]);
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::parse(FULL).expect("parses");
        c.fill_defaults();
        let again = Config::parse(&c.to_toml()).expect("re-parses");
        assert_eq!(c, again);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let err = Config::parse("[proxy]\nlisten = []\nlisen = 3\n").expect_err("unknown key");
        assert_eq!(err.key, "line 3, column 1");
        assert!(
            err.message.contains("unknown field `lisen`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn validate_reports_every_problem_by_key() {
        let c = Config::parse(
            r#"
[proxy]
listen = ["nowhere"]
[process]
smtpd_processes = 0
[[server]]
host = ""
port = 0
domains = ["a.test", "bad domain"]
[[server]]
host = "h"
port = 1
domains = ["A.test."]
"#,
        )
        .expect("parses");
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        for k in [
            "proxy.listen[0]",
            "process.smtpd_processes",
            "server[1].host",
            "server[1].port",
            "server[1].domains[1]",
            "server[2].domains[0]",
        ] {
            assert!(keys.contains(&k.to_string()), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn two_servers_never_share_a_name() {
        let dir = std::env::temp_dir().join(format!("postern-dup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("postern.toml");
        let text = r#"[proxy]
listen = ["127.0.0.1:2525"]

[[server]]
name = "Customer One"
host = "127.0.0.1"
port = 1025
domains = ["one.test"]

[[server]]
name = "customer one"
host = "127.0.0.1"
port = 1026
domains = ["two.test"]

[[server]]
host = "127.0.0.1"
port = 1027
domains = ["three.test"]

  [[ server ]]   # the same backend again, unnamed
host = "127.0.0.1"
port = 1027
domains = ["four.test"]
"#;
        std::fs::write(&path, text).expect("write");
        let err = Config::load(&path).expect_err("duplicate names");
        std::fs::remove_dir_all(&dir).expect("clean");
        let lines: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "server[2].name: \"customer one\" is also the name of server[1], at line 4: give each server a name of its own (line 10)",
                "server[4].name: \"127.0.0.1:1027\" (host:port, as it has no name) is also the name of server[3], at line 16: give each server a name of its own (line 21)",
            ]
        );
    }

    #[test]
    fn a_file_without_servers_is_refused() {
        let c = Config::parse("[proxy]\nlisten = [\"127.0.0.1:25\"]\n").expect("parses");
        let problems = c.validate();
        assert!(
            problems.iter().any(|p| p.to_string()
                == "server: at least one [[server]] is needed: without one every recipient gets 554 5.7.1 Relaying denied"),
            "{problems:?}"
        );
    }

    #[test]
    fn metrics_listen_must_be_loopback() {
        // As `postern check` finds them: what does not parse as the file is
        // read, what is not loopback in validate().
        let problems = |listen: &str| {
            let parsed = explain::parse(&format!("[metrics]\nlisten = {listen:?}\n"));
            let config = parsed.config.expect("parses once the bad key is out");
            parsed
                .problems
                .into_iter()
                .chain(config.validate())
                .filter(|p| p.key == "metrics.listen")
                .count()
        };
        assert_eq!(problems("127.0.0.1:9125"), 0);
        assert_eq!(problems("[::1]:9125"), 0);
        assert_eq!(problems("127.0.0.2:0"), 0);
        assert_eq!(problems("0.0.0.0:9125"), 1);
        assert_eq!(problems("192.0.2.1:9125"), 1);
        assert_eq!(problems("localhost:9125"), 1);
        let c = Config::parse("[metrics]\nlisten = \"127.0.0.1:9125\"\n").expect("parses");
        assert_eq!(c.metrics.listen_addr(), "127.0.0.1:9125".parse().ok());
        assert!(
            Config::parse("[metrics]\nport = 1\n").is_err(),
            "unknown key"
        );
        assert!(
            !Config::default().to_toml().contains("[metrics]"),
            "unset: not printed"
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(Duration::parse("250ms").map(|d| d.0.as_millis()), Ok(250));
        assert_eq!(
            Duration::parse("32d").map(|d| d.to_string()),
            Ok("32d".into())
        );
        assert!(Duration::parse("10").is_err());
        assert!(Duration::parse("10 parsecs").is_err());
        assert_eq!(Size::parse("50MB"), Ok(Size(52_428_800)));
        assert_eq!(Size(52_428_800).to_string(), "50MB");
        assert!(Size::parse("5 furlongs").is_err());
    }
}
