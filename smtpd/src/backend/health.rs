//! Backends that keep failing, remembered per smtpd process.
//!
//! After [`FAILURES_BEFORE_SKIP`] failed connections in a row a backend is
//! skipped for [`SKIP_FOR`]: the client gets its 4xx at once instead of
//! waiting out the timeout each time. Only the steps up to EHLO count (see
//! [`super::Backend::connect`]): a backend that greeted and answered EHLO is
//! up, and a failure after that comes from what this client sent (its HELO
//! name, its login), not from the server. What is failing goes to the
//! master in smtpd's `event=load` ([`Health::report`]), for `postern status`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_shared::ipc::route::Route;

/// Failed connections in a row after which a backend is skipped.
pub const FAILURES_BEFORE_SKIP: u32 = 3;
/// How long a failing backend is skipped.
pub const SKIP_FOR: Duration = Duration::from_secs(30);

/// Failures in a row, and until when the backend is skipped.
#[derive(Debug, Default, Clone)]
struct Failing {
    count: u32,
    skip_until: Option<Instant>,
    /// The server's name, for reports.
    name: String,
    /// When the first failure of this run happened (Unix seconds).
    since: u64,
}

/// Per-process memory of failing backends, keyed by host and port.
#[derive(Default)]
pub struct Health {
    failing: Mutex<HashMap<(Arc<str>, u16), Failing>>,
}

impl Health {
    /// How much longer `route`'s backend is skipped, if it is.
    pub(super) fn skipped(&self, route: &Route) -> Option<Duration> {
        let map = self.failing.lock().ok()?;
        let f = map.get(&(route.host.clone(), route.port))?;
        f.skip_until
            .and_then(|u| u.checked_duration_since(Instant::now()))
    }

    /// Records whether a connection to `route`'s backend got as far as EHLO.
    pub(super) fn record(&self, route: &Route, ok: bool) {
        let Ok(mut map) = self.failing.lock() else {
            return;
        };
        let key = (route.host.clone(), route.port);
        if ok {
            if map
                .remove(&key)
                .is_some_and(|f| f.count >= FAILURES_BEFORE_SKIP)
            {
                tracing::info!("backend {} is reachable again", route.name);
            }
            return;
        }
        let entry = map.entry(key).or_insert_with(|| Failing {
            name: route.name.to_string(),
            since: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            ..Failing::default()
        });
        entry.count += 1;
        if entry.count >= FAILURES_BEFORE_SKIP {
            entry.skip_until = Some(Instant::now() + SKIP_FOR);
            tracing::warn!(
                "backend {} failed {} times in a row: skipping it for {SKIP_FOR:?}",
                route.name,
                entry.count
            );
        }
    }

    /// Failing backends as attribute values, `name|failures|since|skipped-seconds`,
    /// sorted; what smtpd reports to the master for `postern status`.
    pub fn report(&self) -> Vec<String> {
        let Ok(map) = self.failing.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        let mut out: Vec<String> = map
            .values()
            .map(|f| {
                let left = f
                    .skip_until
                    .and_then(|u| u.checked_duration_since(now))
                    .map_or(0, |d| d.as_secs());
                format!(
                    "{}|{}|{}|{left}",
                    f.name.replace('|', "/"),
                    f.count,
                    f.since
                )
            })
            .collect();
        out.sort();
        out
    }
}
