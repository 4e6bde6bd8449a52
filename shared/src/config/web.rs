//! `[web]` (SPEC §11): where the admin console listens, and who may reach it.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use super::Parsed;
use crate::net::IpNet;

/// `[web]`: the admin console, served by `postern-web`. Absent, or `listen`
/// empty: no console, no worker.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Web {
    /// `"127.0.0.1:8025"`…: bound by the master like `proxy.listen`.
    /// Changing it needs a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listen: Vec<String>,
    /// HTTPS with the `[tls]` certificate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Client networks allowed besides loopback and `proxy.admin_networks`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Parsed<IpNet>>,
}

impl Web {
    pub(super) fn is_unset(&self) -> bool {
        self.listen.is_empty() && !self.tls && self.allow.is_empty()
    }

    /// The listen addresses that parse (every one does in a validated file).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.listen.iter().filter_map(|l| l.parse().ok()).collect()
    }

    /// Whether the console runs.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }
}
