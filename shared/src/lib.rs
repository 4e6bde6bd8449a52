//! postern-shared: what postern's processes have in common, by layer.
//!
//! - [`ipc`]: the sockets between postern's processes — the attribute-list
//!   codec ([`ipc::proto`]), every socket's verbs, typed requests and the
//!   head of their replies ([`ipc::Outcome`]), the router's lookups and
//!   their client ([`ipc::route`]), the policy protocol ([`ipc::policy`]),
//!   the multiplexed connection and the one-shot client and server;
//! - [`smtp`]: sans-IO SMTP parsers (commands, paths) and replies, and
//!   [`smtp::client`], a plain SMTP client connection (smtpd's backend
//!   connections are built on it, the updater delivers with it);
//! - [`config`]: the TOML configuration, typed values, its validation as a
//!   whole, its defaults, and the legacy XML reader;
//! - [`runtime`]: what every process runs on — the worker skeleton, the
//!   log, the calendar and a clock tests can set, files replaced whole or
//!   not at all, the buffered reader;
//! - the mail policy, sans-IO: [`access`] (the access lists' entries,
//!   patterns and file), [`dnsbl`] (blocklist zones, filters, answers and
//!   zone health), [`greylist`] (triplets, sender normalisation, the timer
//!   rules), [`alias`] (virtual aliases, their expansion and their checks),
//!   [`domains`] (which server receives mail for a domain), [`net`]
//!   (address patterns: CIDR networks, the seed's `172.16.*.*`), [`stats`]
//!   (the statistics counters and file).
//!
//! Errors are `thiserror` enums per module; only start-up code uses `anyhow`.

pub mod access;
pub mod alias;
pub mod config;
pub mod dnsbl;
pub mod domains;
pub mod greylist;
pub mod ipc;
pub mod metrics;
pub mod net;
pub mod runtime;
pub mod smtp;
pub mod stats;
