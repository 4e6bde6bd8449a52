//! The verbs of postern's IPC sockets, typed, in one place.
//!
//! Every socket between postern's processes speaks the attribute-list codec
//! of [`crate::ipc::proto`]; a request names what it asks with `request=<verb>`,
//! and a worker's events with `event=<name>`. This module is the only place
//! that spells those attribute names and verbs: one enum per socket and
//! direction, encoded by [`request`] (and [`event`]) and decoded strictly by
//! [`verb`] (and [`event_of`]) — a missing `request=` or a verb the socket
//! does not know is a [`DecodeError`], which the receiver answers as it
//! always did (`status=tempfail reason=unknown request …`) or logs.
//!
//! | socket | enum |
//! |---|---|
//! | `router.sock` (smtpd, the CLI → the router) | [`RouterVerb`] |
//! | `updater.sock` (smtpd, the CLI → the updater) | [`UpdaterVerb`] |
//! | master channel, master → worker | [`MasterVerb`] |
//! | master channel, worker → master | [`WorkerVerb`], and [`Event`] |
//! | `master.sock` (the CLI → the master) | [`ControlVerb`] |
//!
//! Every socket has a typed request, decoded strictly from an attribute list and encoded into one here:
//! [`RouterRequest`], [`UpdaterRequest`], [`MasterRequest`], [`WorkerRequest`],
//! [`ControlRequest`]. A request without an attribute its verb needs is a
//! [`DecodeError::Without`]. The `id` that matches a reply to its request
//! is the transport's, not the request's: it is added by whoever sends.
//!
//! [`oneshot`] holds the client and the server of the sockets that take one
//! request per connection; [`mux`] the multiplexed connection, one per
//! process, on which smtpd's sessions share the router.
//!
//! `ARCHITECTURE.md`'s IPC table names exactly these verbs; a test below
//! keeps the two together. Postfix's `request=smtpd_access_policy` on the
//! policy server socket is Postfix's protocol, not one of ours: the router's
//! policy server checks it itself.

use std::fmt;

mod channel;
mod control;
pub mod mux;
pub mod oneshot;
pub mod policy;
pub mod postfix;
pub mod proto;
pub mod quiet;
mod reply;
pub mod route;
mod router;
mod updater;

pub use channel::{MasterRequest, WorkerRequest};
pub use control::ControlRequest;
pub use reply::Outcome;
pub use router::RouterRequest;
pub use updater::{UpdaterReply, UpdaterRequest};

use crate::ipc::proto::Attrs;

/// Name of the admin CLI socket (the master's) in `run_dir`.
pub const CONTROL_SOCKET: &str = "master.sock";
/// Name of the router socket in `run_dir`.
pub const ROUTER_SOCKET: &str = "router.sock";
/// Name of the updater socket in `run_dir`.
pub const UPDATER_SOCKET: &str = "updater.sock";

/// The attribute that carries a request's verb.
const REQUEST: &str = "request";

/// The attribute that carries a worker's event.
const EVENT: &str = "event";

/// Why a message is not a request (or event) of its socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no `request=` (or `event=`).
    #[error("unknown request (none)")]
    Missing,
    /// The verb is not one the socket knows.
    #[error("unknown request {0}")]
    Unknown(String),
    /// A request lacks an attribute (or a body) its verb needs.
    #[error("{0} request without {1}")]
    Without(&'static str, &'static str),
    /// A request lacks what its verb needs, in the receiver's words.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A socket's verbs: their wire spelling and back.
pub trait Verb: Copy + Sized + 'static {
    /// Every verb, in the order ARCHITECTURE.md lists them.
    const ALL: &'static [Self];
    /// The wire spelling.
    fn as_str(self) -> &'static str;
    /// Parses the wire spelling; `None` for a verb the socket does not know.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }
}

/// Declares a socket's verb enum and its [`Verb`] impl.
macro_rules! verbs {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $var:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $var,)*
        }

        impl Verb for $name {
            const ALL: &'static [Self] = &[$($name::$var,)*];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $wire,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

verbs! {
    /// The requests of `router.sock`: smtpd's lookups and notices, and the
    /// CLI's statistics, access-list and greylist requests.
    RouterVerb {
        /// A domain's route (`domain=`).
        Route = "route",
        /// A relay client's route, by its address (`client=`).
        Client = "client",
        /// An authenticated user's route (`user=`, `password=`).
        Auth = "auth",
        /// A new connection, counted per address (`client=`, `pid=`).
        Connect = "connect",
        /// A connection's goodbye with its statistics (a notice).
        Disconnect = "disconnect",
        /// The statistics of an uncounted session (a notice).
        Count = "count",
        /// The statistics file's text (`postern stats`).
        Stats = "stats",
        /// Failed authentications per address (`failed=0|1`).
        Brake = "brake",
        /// A recipient's policy verdict.
        Policy = "policy",
        /// The access lists' file text (`postern access list`).
        AccessList = "access-list",
        /// Adds an access-list entry.
        AccessAdd = "access-add",
        /// Removes an access-list entry.
        AccessRemove = "access-remove",
        /// Greylist triplets matching a pattern.
        GreylistSearch = "greylist-search",
        /// Every greylist triplet.
        GreylistList = "greylist-list",
        /// The greylist whitelist: list, add, remove (`op=`).
        GreylistWhitelist = "greylist-whitelist",
        /// Both greylist lists and the whitelist as text (`postern greylist export`).
        GreylistExport = "greylist-export",
        /// An export's records added to the store (the text is the body).
        GreylistImport = "greylist-import",
        /// A domain's MX records and their addresses, through the policy's
        /// resolver (the console's MX check).
        Mx = "mx",
        /// What the router tells a metrics scrape ([`crate::metrics::RouterMetrics`]).
        Metrics = "metrics",
    }
}

verbs! {
    /// The requests of `updater.sock`, one per connection.
    UpdaterVerb {
        /// An update mail to queue (smtpd; the mail is the body).
        Queue = "queue",
        /// The queue's text (`postern queue`).
        List = "list",
        /// Every deferred copy tried now (`postern queue flush`).
        Flush = "flush",
        /// Deletes a queued update (`id=`).
        Delete = "delete",
        /// The restart schedule's text (`postern restarts`).
        Restarts = "restarts",
        /// Cancels a scheduled restart (`id=`).
        Cancel = "cancel",
    }
}

verbs! {
    /// The master's requests to a worker on its channel.
    MasterVerb {
        /// The validated configuration, as TOML in the body.
        Config = "config",
        /// Stop now (sessions between transactions get 421).
        Stop = "stop",
        /// Stop accepting, finish every session, exit (`postern restart`).
        Drain = "drain",
    }
}

verbs! {
    /// A worker's requests to the master on its channel.
    WorkerVerb {
        /// Reload the configuration (SMTP RELOAD).
        Reload = "reload",
        /// Stop postern (SMTP SHUTDOWN).
        Stop = "stop",
        /// Run a server's restart command (the updater, `server=`).
        Restart = "restart",
        /// The worker states (the router, for its metrics).
        Workers = "workers",
        /// The text of `postern status` (the console's dashboard).
        Status = "status",
        /// `postern log search` or `postern log session` (the console's logs page).
        Log = "log",
        /// Each server's health (the console's routing page).
        Backends = "backends",
    }
}

verbs! {
    /// A worker's events on its channel (`event=`), never answered.
    Event {
        /// The worker serves.
        Ready = "ready",
        /// The worker's load report, for `postern status`.
        Load = "load",
    }
}

verbs! {
    /// The requests of `master.sock`, one per connection.
    ControlVerb {
        /// The status text (`postern status`).
        Status = "status",
        /// Reload the configuration (`postern reload`).
        Reload = "reload",
        /// Stop postern (`postern stop`).
        Stop = "stop",
        /// Replace a worker's processes (`postern restart WORKER`).
        Restart = "restart",
    }
}

/// A request: `request=<verb>`, the other attributes to be added.
pub fn request(verb: impl Verb) -> Attrs {
    Attrs::new().with_str(REQUEST, verb.as_str())
}

/// An event: `event=<name>`, the other attributes to be added.
pub fn event(event: Event) -> Attrs {
    Attrs::new().with_str(EVENT, event.as_str())
}

/// Whether a message is a request at all (a channel carries requests,
/// replies and events).
pub fn is_request(msg: &Attrs) -> bool {
    msg.get(REQUEST).is_some()
}

/// A required attribute of a `verb` request.
fn required<'a>(
    msg: &'a Attrs,
    verb: impl Verb,
    name: &'static str,
) -> Result<&'a str, DecodeError> {
    msg.get(name)
        .ok_or(DecodeError::Without(verb.as_str(), name))
}

/// A request's verb, strictly: missing or unknown is an error.
pub fn verb<V: Verb>(msg: &Attrs) -> Result<V, DecodeError> {
    let word = msg.get(REQUEST).ok_or(DecodeError::Missing)?;
    V::parse(word).ok_or_else(|| DecodeError::Unknown(word.to_string()))
}

/// An event's name, strictly: missing or unknown is an error.
pub fn event_of(msg: &Attrs) -> Result<Event, DecodeError> {
    let word = msg.get(EVENT).ok_or(DecodeError::Missing)?;
    Event::parse(word).ok_or_else(|| DecodeError::Unknown(word.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_round_trip_and_unknown_ones_are_errors() {
        for v in RouterVerb::ALL {
            assert_eq!(verb::<RouterVerb>(&request(*v)), Ok(*v));
        }
        for v in UpdaterVerb::ALL {
            assert_eq!(verb::<UpdaterVerb>(&request(*v)), Ok(*v));
        }
        assert_eq!(
            verb::<UpdaterVerb>(&request(RouterVerb::Route)),
            Err(DecodeError::Unknown("route".into()))
        );
        let none = verb::<ControlVerb>(&Attrs::new()).expect_err("no verb");
        assert_eq!(none.to_string(), "unknown request (none)");
        assert_eq!(event_of(&event(Event::Load)), Ok(Event::Load));
        assert!(event_of(&request(MasterVerb::Stop)).is_err());
    }

    /// The `request=`/`event=` words of ARCHITECTURE.md's IPC table, for
    /// the rows of postern's own sockets (not Postfix's policy protocol).
    fn documented(prefix: &str) -> std::collections::BTreeSet<String> {
        let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"));
        let section = text
            .split("\n## IPC\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("ARCHITECTURE.md has an IPC section");
        let mut words = std::collections::BTreeSet::new();
        for row in section.lines().filter(|l| {
            [
                "| master channel",
                "| `router.sock`",
                "| `updater.sock`",
                "| `master.sock`",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        }) {
            for piece in row.split(prefix).skip(1) {
                // `request=list\|flush\|delete id=`: the verbs up to a space or a backtick.
                let end = piece.find([' ', '`', ';', ',', ')']).unwrap_or(piece.len());
                for w in piece[..end].split("\\|") {
                    words.insert(w.to_string());
                }
            }
        }
        words
    }

    fn all<V: Verb>() -> impl Iterator<Item = String> {
        V::ALL.iter().map(|v| v.as_str().to_string())
    }

    #[test]
    fn architecture_names_every_verb_and_nothing_else() {
        let ours: std::collections::BTreeSet<String> = all::<RouterVerb>()
            .chain(all::<UpdaterVerb>())
            .chain(all::<MasterVerb>())
            .chain(all::<WorkerVerb>())
            .chain(all::<ControlVerb>())
            .collect();
        assert_eq!(documented("request="), ours);
        let events: std::collections::BTreeSet<String> = all::<Event>().collect();
        assert_eq!(documented("event="), events);
    }
}
