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

mod explain;
mod parsed;

pub use parsed::{ClientZone, DomainZone, FromText, MetricsAddr, Parsed, Resolver};

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

/// `[policy_server]`: the router answers Postfix's SMTPD access policy
/// delegation protocol on these sockets (SPEC §8), so that an existing
/// Postfix uses postern's policy with `check_policy_service`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyServer {
    /// `"127.0.0.1:10023"` or `"unix:/run/postern/policy.sock"`. Changing it
    /// needs a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<Parsed<PolicyListen>>,
}

/// Where the policy server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyListen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl PolicyServer {
    fn is_unset(&self) -> bool {
        self.listen.is_empty()
    }

    /// The listen addresses.
    pub fn addrs(&self) -> Vec<PolicyListen> {
        self.listen.iter().map(|l| l.value().clone()).collect()
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

/// `[policy]`: the anti-spam policy for mail from the internet (SPEC §8):
/// access lists, Postfix-style restrictions and DNS blocklists, answered at
/// RCPT for domain-routed sessions. (Greylisting, `[greylist]`, and the
/// policy server, `[policy_server]`, are not implemented yet: those tables
/// are refused as unknown rather than ignored.)
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The access lists (`[[accept]]`/`[[reject]]` entries); default
    /// `process.state_dir/access.toml`. The router writes it: it must be
    /// writable by `process.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_file: Option<PathBuf>,
    /// Postfix restrictions, applied in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<Restriction>,
    /// Client-address blocklists, `zone[=filter[=reply-name]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnsbl: Vec<Parsed<ClientZone>>,
    /// Sender-domain blocklists, same syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rhsbl: Vec<Parsed<DomainZone>>,
    /// DNS servers (`"127.0.0.1:53"`, or an address for port 53); empty:
    /// the nameservers of `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<Parsed<Resolver>>,
    /// Per query; a recipient never waits for blocklists longer than twice this.
    #[serde(default = "default_dns_timeout")]
    pub dns_timeout: Duration,
    /// Local parts of served domains never blocklisted (RFC 2142's).
    #[serde(default = "default_exempt_recipients")]
    pub exempt_recipients: Vec<String>,
    /// Clients never looked up in blocklists (access lists still apply);
    /// `[]` looks up every client.
    #[serde(default = "default_skip_networks")]
    pub skip_networks: Vec<Parsed<IpNet>>,
}

/// A restriction `policy.restrictions` may name (Postfix's, by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Restriction {
    /// `reject_invalid_helo_hostname`: a HELO that is neither a host name
    /// nor an address literal.
    RejectInvalidHeloHostname,
    /// `reject_non_fqdn_sender`: a sender address without a dotted domain.
    RejectNonFqdnSender,
    /// `reject_non_fqdn_recipient`: a recipient address without a dotted
    /// domain (`<Postmaster>` excepted).
    RejectNonFqdnRecipient,
    /// `reject_unknown_sender_domain`: a sender domain DNS does not know.
    RejectUnknownSenderDomain,
    /// `reject_unknown_recipient_domain`: a recipient domain DNS does not know.
    RejectUnknownRecipientDomain,
    /// `reject_unauth_pipelining`: commands sent ahead where SMTP forbids it.
    RejectUnauthPipelining,
}

impl Restriction {
    /// Postfix's name, as in the file and in the logs' `rule=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restriction::RejectInvalidHeloHostname => "reject_invalid_helo_hostname",
            Restriction::RejectNonFqdnSender => "reject_non_fqdn_sender",
            Restriction::RejectNonFqdnRecipient => "reject_non_fqdn_recipient",
            Restriction::RejectUnknownSenderDomain => "reject_unknown_sender_domain",
            Restriction::RejectUnknownRecipientDomain => "reject_unknown_recipient_domain",
            Restriction::RejectUnauthPipelining => "reject_unauth_pipelining",
        }
    }

    /// Whether it asks DNS.
    pub fn needs_dns(self) -> bool {
        matches!(
            self,
            Restriction::RejectUnknownSenderDomain | Restriction::RejectUnknownRecipientDomain
        )
    }
}

fn default_dns_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_exempt_recipients() -> Vec<String> {
    vec!["postmaster".into(), "abuse".into()]
}

fn default_skip_networks() -> Vec<Parsed<IpNet>> {
    vec![Parsed::known("127.0.0.0/8"), Parsed::known("::1/128")]
}

/// `[greylist]`: greylisting of mail from the internet (SPEC §8), the
/// policy's last step.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Greylist {
    /// Off by default.
    pub enabled: bool,
    /// The least time between a first attempt and a retry that passes.
    pub delay: Duration,
    /// How long after the first attempt a retry may come.
    pub retry_window: Duration,
    /// How long a passed triplet stays whitelisted after its last mail.
    pub auto_whitelist: Duration,
    /// The client "network" of an IPv4 triplet, in bits.
    pub ipv4_prefix: u8,
    /// Likewise for IPv6.
    pub ipv6_prefix: u8,
    /// `"embedded"` (a file in `state_dir`, owned by the router), or
    /// `"redis://host:port/db"` (shared by every postern host using it).
    pub store: String,
    /// `"accept"` or `"defer"` (451 4.3.0) when the store fails.
    pub on_store_error: String,
}

impl Default for Greylist {
    fn default() -> Self {
        Greylist {
            enabled: false,
            delay: Duration::from_secs(120),
            retry_window: Duration::from_secs(2 * 86_400),
            auto_whitelist: Duration::from_secs(32 * 86_400),
            ipv4_prefix: 24,
            ipv6_prefix: 64,
            store: "embedded".into(),
            on_store_error: "accept".into(),
        }
    }
}

impl Greylist {
    fn is_default(&self) -> bool {
        *self == Greylist::default()
    }

    /// The timings in milliseconds.
    pub fn timings(&self) -> crate::greylist::Timings {
        let ms = |d: Duration| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX);
        crate::greylist::Timings {
            delay: ms(self.delay),
            retry_window: ms(self.retry_window),
            auto_whitelist: ms(self.auto_whitelist),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            access_file: None,
            restrictions: Vec::new(),
            dnsbl: Vec::new(),
            rhsbl: Vec::new(),
            resolvers: Vec::new(),
            dns_timeout: default_dns_timeout(),
            exempt_recipients: default_exempt_recipients(),
            skip_networks: default_skip_networks(),
        }
    }
}

impl Policy {
    fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Whether any check needs DNS (blocklists, unknown domains).
    pub fn needs_dns(&self) -> bool {
        !self.dnsbl.is_empty()
            || !self.rhsbl.is_empty()
            || self.restrictions.iter().any(|r| r.needs_dns())
    }

    /// The resolvers as socket addresses.
    pub fn resolver_addrs(&self) -> Vec<SocketAddr> {
        self.resolvers.iter().map(|r| r.0).collect()
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
            let lines = server_lines(&text);
            for mut p in config.validate() {
                let reported =
                    |q: &Problem| q.key == p.key || q.key.starts_with(&format!("{}[", p.key));
                if !problems.iter().any(reported) {
                    if lines.len() == config.servers.len() {
                        with_server_lines(&mut p, &lines);
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
            .and_then(|bytes| crate::legacy::parse(&bytes).map_err(Problem::from));
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

    /// Checks every value; returns every problem found (empty: valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push(Problem { key, message });
        let p = &self.proxy;

        // Without a server every recipient gets a permanent 554: such a file
        // is a mistake, unless postern only answers an existing Postfix's
        // policy questions (`[policy_server]`).
        if self.servers.is_empty() && self.policy_server.listen.is_empty() {
            bad(
                "server".into(),
                "at least one [[server]] is needed: without one every recipient gets 554 5.7.1 Relaying denied".into(),
            );
        }

        if p.listen.is_empty() {
            bad(
                "proxy.listen".into(),
                "at least one address is needed".into(),
            );
        }
        for (i, l) in p.listen.iter().enumerate() {
            if l.parse::<SocketAddr>().is_err() {
                bad(
                    format!("proxy.listen[{i}]"),
                    format!("{l:?} is not an address:port such as \"0.0.0.0:25\" or \"[::]:25\""),
                );
            }
        }
        if !is_hostname(&p.hostname) {
            bad(
                "proxy.hostname".into(),
                format!("{:?} is not a valid host name", p.hostname),
            );
        }
        if p.banner.contains(['\r', '\n']) {
            bad("proxy.banner".into(), "must be one line".into());
        }
        if p.admin_user.is_some() != p.admin_password.is_some() {
            bad(
                "proxy.admin_user".into(),
                "admin_user and admin_password go together".into(),
            );
        }
        if let Some(a) = &p.update_address {
            let ok = a.rsplit_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && !l.contains(['@', '<', '>', ' ']) && is_hostname(d)
            });
            if !ok {
                bad(
                    "proxy.update_address".into(),
                    format!("{a:?} is not an address such as \"update@mx.example.net\""),
                );
            }
        }
        let u = &self.update;
        for (key, d) in [
            ("update.retry_min", u.retry_min),
            ("update.retry_max", u.retry_max),
            ("update.max_age", u.max_age),
            ("update.restart_timeout", u.restart_timeout),
        ] {
            if d.0 < std::time::Duration::from_secs(1) {
                bad(key.into(), "must be at least 1s".into());
            }
        }
        if u.retry_max < u.retry_min {
            bad(
                "update.retry_max".into(),
                "must not be shorter than retry_min".into(),
            );
        }
        if p.max_message_size.0 < 1024 {
            bad(
                "proxy.max_message_size".into(),
                "must be at least 1KB".into(),
            );
        }
        for (key, v) in [
            ("proxy.max_recipients", p.max_recipients),
            ("proxy.max_connections", p.max_connections),
            ("proxy.max_connections_per_ip", p.max_connections_per_ip),
        ] {
            if v == 0 {
                bad(key.into(), "must be at least 1".into());
            }
        }
        if p.prepared_connections > MAX_PREPARED {
            bad(
                "proxy.prepared_connections".into(),
                format!("must be at most {MAX_PREPARED}"),
            );
        }
        for (key, d) in [
            ("proxy.command_timeout", p.command_timeout),
            ("proxy.data_timeout", p.data_timeout),
        ] {
            if d.0 < std::time::Duration::from_secs(1) {
                bad(key.into(), "must be at least 1s".into());
            }
        }
        if let Some(t) = &self.tls {
            for (key, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if !path.is_absolute() {
                    bad(
                        key.into(),
                        format!("{} is not an absolute path", path.display()),
                    );
                }
            }
        }

        for (i, l) in self.policy_server.listen.iter().enumerate() {
            match l.value() {
                PolicyListen::Unix(path) if !path.starts_with(&self.process.run_dir) => bad(
                    format!("policy_server.listen[{i}]"),
                    format!(
                        "{:?}: a Unix socket lives in process.run_dir ({}), which the master owns",
                        l.text(),
                        self.process.run_dir.display()
                    ),
                ),
                _ => {}
            }
        }
        let g = &self.greylist;
        if g.delay.0 < std::time::Duration::from_secs(1) {
            bad("greylist.delay".into(), "must be at least 1s".into());
        }
        if g.retry_window < g.delay {
            bad(
                "greylist.retry_window".into(),
                "must not be shorter than delay".into(),
            );
        }
        if g.auto_whitelist.0 < std::time::Duration::from_secs(60) {
            bad(
                "greylist.auto_whitelist".into(),
                "must be at least 1m".into(),
            );
        }
        if g.ipv4_prefix == 0 || g.ipv4_prefix > 32 {
            bad(
                "greylist.ipv4_prefix".into(),
                "must be between 1 and 32".into(),
            );
        }
        if g.ipv6_prefix == 0 || g.ipv6_prefix > 128 {
            bad(
                "greylist.ipv6_prefix".into(),
                "must be between 1 and 128".into(),
            );
        }
        match g.store.as_str() {
            "embedded" => {}
            s if s.strip_prefix("redis://").is_some_and(|rest| {
                let host = rest.split(['/', '?']).next().unwrap_or("");
                !host.is_empty() && !host.contains(char::is_whitespace)
            }) => {}
            s => bad(
                "greylist.store".into(),
                format!("{s:?} is not \"embedded\" nor a URL such as \"redis://127.0.0.1:6379/0\""),
            ),
        }
        if !matches!(g.on_store_error.as_str(), "accept" | "defer") {
            bad(
                "greylist.on_store_error".into(),
                format!("{:?} is not accept or defer", g.on_store_error),
            );
        }
        let po = &self.policy;
        if let Some(f) = &po.access_file {
            if !f.is_absolute() {
                bad(
                    "policy.access_file".into(),
                    format!("{} is not an absolute path", f.display()),
                );
            }
        }
        for (i, r) in po.restrictions.iter().enumerate() {
            if po.restrictions[..i].contains(r) {
                bad(
                    format!("policy.restrictions[{i}]"),
                    format!("{:?} is listed twice", r.as_str()),
                );
            }
        }
        if po.dns_timeout.0 < std::time::Duration::from_millis(100)
            || po.dns_timeout.0 > std::time::Duration::from_secs(30)
        {
            bad(
                "policy.dns_timeout".into(),
                "must be between 100ms and 30s".into(),
            );
        }
        for (i, l) in po.exempt_recipients.iter().enumerate() {
            if l.is_empty() || l.contains(['@', ' ', '<', '>']) {
                bad(
                    format!("policy.exempt_recipients[{i}]"),
                    format!("{l:?} is not a local part such as \"postmaster\""),
                );
            }
        }

        let pr = &self.process;
        if pr.smtpd_processes == 0 || pr.smtpd_processes > 64 {
            bad(
                "process.smtpd_processes".into(),
                "must be between 1 and 64".into(),
            );
        }
        if let Some(u) = &pr.user {
            if u.is_empty() {
                bad(
                    "process.user".into(),
                    "must not be empty (leave it out instead)".into(),
                );
            }
        }
        for (key, dir) in [
            ("process.run_dir", &pr.run_dir),
            ("process.state_dir", &pr.state_dir),
            ("process.spool_dir", &pr.spool_dir),
        ] {
            if !dir.is_absolute() {
                bad(
                    key.into(),
                    format!("{} is not an absolute path", dir.display()),
                );
            }
        }
        if let Some(d) = &pr.daemon_dir {
            if !d.is_absolute() {
                bad(
                    "process.daemon_dir".into(),
                    format!("{} is not an absolute path", d.display()),
                );
            }
        }
        if !pr.chroot.is_empty() {
            let root = Path::new(&pr.chroot);
            if !root.is_absolute() {
                bad(
                    "process.chroot".into(),
                    format!("{} is not an absolute path", pr.chroot),
                );
            } else if !pr.run_dir.starts_with(root) {
                bad(
                    "process.chroot".into(),
                    format!(
                        "run_dir {} must lie inside the chroot {} so that smtpd can reach the router",
                        pr.run_dir.display(),
                        pr.chroot
                    ),
                );
            }
        }

        let l = &self.log;
        if !["error", "warn", "info", "debug", "trace"].contains(&l.level.as_str()) {
            bad(
                "log.level".into(),
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    l.level
                ),
            );
        }
        match l.journald.as_str() {
            "auto" | "yes" | "no" => {}
            other => bad(
                "log.journald".into(),
                format!("{other:?} is not one of auto, yes, no"),
            ),
        }
        if !l.file.is_empty() && !Path::new(&l.file).is_absolute() {
            bad(
                "log.file".into(),
                format!("{:?} is not an absolute path", l.file),
            );
        }

        if let Some(l) = &self.metrics.listen {
            if !l.0.ip().is_loopback() {
                bad(
                    "metrics.listen".into(),
                    format!("{:?} is not a loopback address: the endpoint has no authentication (use 127.0.0.1 or [::1])", l.text()),
                );
            }
        }

        let mut owner: std::collections::HashMap<String, usize> = Default::default();
        let mut users: std::collections::HashMap<String, usize> = Default::default();
        let mut names: std::collections::HashMap<String, usize> = Default::default();
        for (i, s) in self.servers.iter().enumerate() {
            let k = |f: &str| format!("server[{}].{f}", i + 1);
            // Every per-server record (update copies, restarts, health,
            // logs) is keyed by this name: two servers must never share it.
            let name = s.display_name();
            if let Some(prev) = names.insert(name.to_lowercase(), i) {
                let unnamed = if s.name.is_none() {
                    " (host:port, as it has no name)"
                } else {
                    ""
                };
                bad(
                    k("name"),
                    format!(
                        "{name:?}{unnamed} is also the name of server[{}]: give each server a name of its own",
                        prev + 1
                    ),
                );
            }
            if s.host.trim().is_empty() {
                bad(k("host"), "is required".into());
            }
            if s.port == 0 {
                bad(k("port"), "must be between 1 and 65535".into());
            }
            if s.timeout.0 < std::time::Duration::from_millis(100) {
                bad(k("timeout"), "must be at least 100ms".into());
            }
            if s.user.is_some() != s.password.is_some() {
                bad(k("user"), "user and password go together".into());
            }
            if let Some(u) = &s.user {
                if u.is_empty() || u.contains(['\r', '\n', '\0']) {
                    bad(k("user"), "must be a non-empty name on one line".into());
                } else if let Some(prev) = users.insert(u.clone(), i) {
                    bad(
                        k("user"),
                        format!(
                            "{u:?} is also the user of server[{}]: AUTH could not tell them apart",
                            prev + 1
                        ),
                    );
                }
            }
            if s.domains.is_empty() {
                bad(k("domains"), "at least one domain is required".into());
            }
            for (j, d) in s.domains.iter().enumerate() {
                let norm = normalize_domain(d);
                let bare = norm.strip_prefix('.').unwrap_or(&norm);
                if !is_hostname(bare) {
                    bad(
                        format!("{}[{j}]", k("domains")),
                        format!("{d:?} is not a domain name"),
                    );
                    continue;
                }
                if let Some(prev) = owner.insert(norm.clone(), i) {
                    if prev != i {
                        bad(
                            format!("{}[{j}]", k("domains")),
                            format!("{d:?} is also a domain of server[{}]", prev + 1),
                        );
                    }
                }
            }
            if let Some(cmd) = &s.restart_command {
                if cmd.is_empty() || cmd[0].is_empty() {
                    bad(k("restart_command"), "needs at least the program".into());
                }
            }
        }
        out
    }
}

/// The line (from 1) of each `[[server]]` header of a TOML text, in order.
fn server_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let bare: String = l
                .chars()
                .take_while(|&c| c != '#')
                .filter(|c| !c.is_whitespace())
                .collect();
            bare == "[[server]]"
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// Gives a problem about a server the line of its block, at the end as
/// the type errors have it (`server[2].port: … (line 14)`), and another
/// server it names its line too (`… of server[1], at line 4`), so that a
/// problem between two servers shows both places.
fn with_server_lines(p: &mut Problem, lines: &[usize]) {
    let block = |text: &str| -> Option<(usize, usize)> {
        let rest = text.strip_prefix("server[")?;
        let n_len = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: usize = rest[..n_len].parse().ok()?;
        rest[n_len..].starts_with(']').then_some(())?;
        Some((n, "server[".len() + n_len + 1))
    };
    let mut message = String::with_capacity(p.message.len() + 16);
    let mut rest = p.message.as_str();
    while let Some(at) = rest.find("server[") {
        let (before, from) = rest.split_at(at);
        message.push_str(before);
        match block(from).and_then(|(n, len)| Some((lines.get(n.checked_sub(1)?)?, len))) {
            Some((line, len)) => {
                message.push_str(&from[..len]);
                message.push_str(&format!(", at line {line}"));
                rest = &from[len..];
            }
            None => {
                message.push_str("server[");
                rest = &from["server[".len()..];
            }
        }
    }
    message.push_str(rest);
    if let Some(line) = block(&p.key).and_then(|(n, _)| lines.get(n.checked_sub(1)?)) {
        message.push_str(&format!(" (line {line})"));
    }
    p.message = message;
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
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// True when `ip` is inside one of the `networks`.
pub fn in_networks(ip: IpAddr, networks: &[Parsed<IpNet>]) -> bool {
    networks.iter().any(|n| n.contains(ip))
}

impl Config {
    /// What is valid but probably a mistake, each named by its key; printed
    /// by `check` as `warning: KEY: text` (SPEC §8) and logged at start and
    /// at each reload. Warnings never refuse a file.
    ///
    /// Today: relay lists and `admin_networks` that are *wide* (more than a
    /// /8 of IPv4 or a /16 of IPv6, see [`IpNet::wide`]): every client in
    /// them may relay to any domain, or send RELOAD and update mails.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, n) in self.proxy.admin_networks.iter().enumerate() {
            if let Some(why) = n.wide() {
                out.push(Problem {
                    key: format!("proxy.admin_networks[{i}]"),
                    message: format!(
                        "{:?} {why}: every client in it may send RELOAD and update mails",
                        n.text()
                    ),
                });
            }
        }
        for (i, s) in self.servers.iter().enumerate() {
            for (j, r) in s.relay.iter().enumerate() {
                if let Some(why) = r.wide() {
                    out.push(Problem {
                        key: format!("server[{}].relay[{j}]", i + 1),
                        message: format!(
                            "{:?} {why}: every client in it may relay mail to any domain through {} (an open relay)",
                            r.text(),
                            s.display_name()
                        ),
                    });
                }
            }
        }
        for (i, l) in self.policy_server.listen.iter().enumerate() {
            if let PolicyListen::Tcp(a) = l.value() {
                if !a.ip().is_loopback() {
                    out.push(Problem {
                        key: format!("policy_server.listen[{i}]"),
                        message: format!(
                            "{:?} is not a loopback address: whoever reaches it may ask the policy (firewall it to your Postfix hosts)",
                            l.text()
                        ),
                    });
                }
            }
        }
        out
    }
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
