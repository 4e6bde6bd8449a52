//! postern-shared: what postern's processes have in common.
//!
//! - [`access`]: the access lists' entries, patterns and file;
//! - [`alias`]: virtual aliases, their expansion and their checks at load;
//! - [`config`]: the TOML configuration, its validation and defaults;
//! - [`domains`]: which server receives mail for a domain;
//! - [`dnsbl`]: DNS blocklist zones, filters, answers and zone health (sans-IO);
//! - [`durable`]: files replaced whole or not at all;
//! - [`greylist`]: greylisting triplets, sender normalisation and the timer rules (sans-IO);
//! - [`bufread`]: a buffered reader that does not zero its buffer and grows in place;
//! - [`net`]: address patterns (CIDR networks, the seed's `172.16.*.*`);
//! - [`policy`]: the router's policy protocol (a verdict per recipient) and
//!   the access-list management requests, typed;
//! - [`ipc`]: every IPC socket's verbs and requests, typed, encoded and decoded
//!   in one place; the multiplexed connection and the one-shot client and server;
//! - [`proto`]: the attribute-list codec of every IPC socket;
//! - [`route`]: the router's lookup protocol, typed, and its client;
//! - [`stats`]: the statistics counters and file (its days and weeks are
//!   [`time`]'s);
//! - [`smtp`]: sans-IO SMTP parsers (commands, paths) and replies, and
//!   [`smtp::client`], a plain SMTP client connection (smtpd's backend
//!   connections are built on it, the updater delivers with it);
//! - [`time`]: the calendar, local time through the system's time zone, the
//!   log's time stamps, and a clock tests can set;
//! - [`worker`]: the skeleton every worker runs on (inherited sockets,
//!   configuration from the master, privilege drop, events);
//! - [`logging`]: one log format for every process, and short ids.
//!
//! Errors are `thiserror` enums per module; only start-up code uses `anyhow`.

pub mod access;
pub mod alias;
pub mod config;
pub mod dnsbl;
pub mod domains;
pub mod greylist;
pub mod ipc;
pub mod net;
pub mod policy;
pub mod proto;
pub mod route;
pub mod runtime;
pub mod smtp;
pub mod stats;
