//! The policy's tables (SPEC §8): `[policy]` (access lists, restrictions,
//! DNS blocklists and their resolver), `[greylist]` and `[policy_server]`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ClientZone, DomainZone, Duration, Parsed, Resolver};
use crate::net::IpNet;

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
    pub(super) fn is_unset(&self) -> bool {
        self.listen.is_empty()
    }

    /// The listen addresses.
    pub fn addrs(&self) -> Vec<PolicyListen> {
        self.listen.iter().map(|l| l.value().clone()).collect()
    }
}

/// `[policy]`: the anti-spam policy for mail from the internet (SPEC §8):
/// access lists, Postfix-style restrictions and DNS blocklists, answered at
/// RCPT for domain-routed sessions. Greylisting has its own table,
/// `[greylist]` ([`Greylist`]), and so has the policy server,
/// `[policy_server]` ([`PolicyServer`]).
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
    pub(super) fn is_default(&self) -> bool {
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
    pub(super) fn is_empty(&self) -> bool {
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
