//! The Prometheus exposition (`GET /metrics` on `[metrics] listen`, served
//! by postern-web): what the router knows ([`RouterMetrics`], its answer to
//! `request=metrics`) and the worker states the master gives
//! (`request=workers`), as text format 0.0.4.
//!
//! What is exposed ([`render`]):
//! - `postern_up`: 1 when the router answered the scrape;
//! - the statistics counters, summed over every day kept
//!   (`postern_connections_total`, `postern_forwarded_total{cause=…}`,
//!   `postern_relay_denied_total`, `postern_rejected_total{kind=…}`,
//!   `postern_greylisted_total`, `postern_greylist_passed_total`,
//!   `postern_messages_total`, `postern_bytes_total`); they survive restarts
//!   and only go down when a day leaves the retention (a counter reset for
//!   Prometheus);
//! - `postern_connections_open`: client connections open now (the router's
//!   connection accounting);
//! - `postern_greylist_store_up` (with greylisting on: 0 while the store
//!   fails);
//! - per DNS blocklist zone, `postern_dnsbl_zone_up` (0 while out of use)
//!   and `postern_dnsbl_zone_degraded` (error answers, timeouts or failures
//!   in the last 10 minutes);
//! - the worker states, as the master sees them: `postern_worker_up`,
//!   `postern_worker_restarts_total`, `postern_worker_uptime_seconds` per
//!   worker slot, and `postern_master_answered` (0 when the master did not
//!   answer: the worker series are then left out).

use std::fmt::Write as _;

use crate::ipc::proto::Attrs;
use crate::stats::{Counter, Counts, Rejection, CAUSES};

/// What the router tells a scrape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterMetrics {
    /// The statistics counters, summed over every day kept.
    pub total: Counts,
    /// Client connections open now.
    pub open: u32,
    /// Each DNS blocklist zone: name, `ok`, `degraded` or `disabled`, why.
    pub zones: Vec<(String, String, String)>,
    /// The greylist store answers (`None`: greylisting off).
    pub greylist: Option<bool>,
}

impl RouterMetrics {
    /// Adds the snapshot to a reply.
    pub fn to_attrs(&self, mut reply: Attrs) -> Attrs {
        for (name, n) in self.total.iter() {
            reply.push(name, n);
        }
        reply.push("open", self.open);
        for (z, state, why) in &self.zones {
            reply.push("zone", format!("{z}|{state}|{why}"));
        }
        if let Some(up) = self.greylist {
            reply.push("greylist", if up { "up" } else { "down" });
        }
        reply
    }

    /// The snapshot in a reply.
    pub fn from_attrs(reply: &Attrs) -> RouterMetrics {
        let mut total = Counts::default();
        for (name, value) in reply.iter() {
            if let (Some(c), Ok(n)) = (Counter::parse(name), value.parse::<u64>()) {
                total.add(c, n);
            }
        }
        RouterMetrics {
            total,
            open: reply.get("open").and_then(|o| o.parse().ok()).unwrap_or(0),
            zones: reply
                .get_all("zone")
                .map(|z| {
                    let mut f = z.splitn(3, '|');
                    let mut next = || f.next().unwrap_or("").to_string();
                    (next(), next(), next())
                })
                .collect(),
            greylist: reply.get("greylist").map(|g| g == "up"),
        }
    }
}

/// The exposition text. `router`: the router's snapshot (`None` when it
/// did not answer: `postern_up 0` and no counter); `workers`: the master's
/// answer to `request=workers`, one `worker=<program> <slot> <pid|-> <state>
/// <restarts> <uptime seconds>` attribute per worker slot.
pub fn render(router: Option<&RouterMetrics>, workers: Option<&Attrs>) -> String {
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    family(
        "postern_up",
        "gauge",
        "1 while the router serves (answers the scrape).",
        &[(String::new(), u64::from(router.is_some()))],
    );
    if let Some(r) = router {
        router_families(&mut family, r);
    }
    family(
        "postern_master_answered",
        "gauge",
        "1 when the master gave the worker states for this scrape.",
        &[(String::new(), u64::from(workers.is_some()))],
    );
    let Some(workers) = workers else {
        return out;
    };
    let mut up = Vec::new();
    let mut restarts = Vec::new();
    let mut uptime = Vec::new();
    for w in workers.get_all("worker") {
        let f: Vec<&str> = w.split(' ').collect();
        let [program, slot, _pid, state, n, secs] = f[..] else {
            continue;
        };
        let ok =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok(program) || !ok(slot) {
            continue;
        }
        let labels = format!("{{worker=\"{program}\",slot=\"{slot}\"}}");
        up.push((labels.clone(), u64::from(state == "ready")));
        restarts.push((labels.clone(), n.parse().unwrap_or(0)));
        uptime.push((labels, secs.parse().unwrap_or(0)));
    }
    family(
        "postern_worker_up",
        "gauge",
        "1 when the worker slot's process runs and said it is ready.",
        &up,
    );
    family(
        "postern_worker_restarts_total",
        "counter",
        "Times the master started the worker slot again.",
        &restarts,
    );
    family(
        "postern_worker_uptime_seconds",
        "gauge",
        "Seconds since the worker slot's process started (0 when none runs).",
        &uptime,
    );
    out
}

/// The router's families: the counters, open connections, blocklist zones,
/// the greylist store.
fn router_families(family: &mut impl FnMut(&str, &str, &str, &[(String, u64)]), r: &RouterMetrics) {
    let one = |c: Counter| vec![(String::new(), r.total.get(c))];
    family(
        "postern_connections_total",
        "counter",
        "Client connections accepted, refused ones included.",
        &one(Counter::Connections),
    );
    family(
        "postern_forwarded_total",
        "counter",
        "Backend connections opened for clients, by route cause.",
        &CAUSES
            .iter()
            .map(|c| {
                (
                    format!("{{cause=\"{}\"}}", c.as_str()),
                    r.total.get(Counter::Forwarded(*c)),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "postern_relay_denied_total",
        "counter",
        "Recipients refused with 554 5.7.1 Relaying denied.",
        &one(Counter::RelayDenied),
    );
    family(
        "postern_rejected_total",
        "counter",
        "Connections, sessions, messages or recipients refused, by kind.",
        &Rejection::ALL
            .iter()
            .map(|k| {
                (
                    format!("{{kind=\"{}\"}}", k.as_str()),
                    r.total.get(Counter::Rejected(*k)),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "postern_greylisted_total",
        "counter",
        "Deliveries greylisted (0 until greylisting exists).",
        &one(Counter::Greylisted),
    );
    family(
        "postern_greylist_passed_total",
        "counter",
        "Deliveries that passed greylisting (0 until greylisting exists).",
        &one(Counter::GreylistPassed),
    );
    family(
        "postern_messages_total",
        "counter",
        "Messages a backend accepted.",
        &one(Counter::Messages),
    );
    family(
        "postern_bytes_total",
        "counter",
        "Bytes of the messages a backend accepted.",
        &one(Counter::Bytes),
    );
    family(
        "postern_connections_open",
        "gauge",
        "Client connections open now.",
        &[(String::new(), u64::from(r.open))],
    );
    // Zone names are host names (checked at load): no label escaping needed.
    let zone = |z: &str| format!("{{zone=\"{z}\"}}");
    family(
        "postern_dnsbl_zone_up",
        "gauge",
        "1 while a DNS blocklist zone is in use, 0 while its self-test fails or it timed out too often.",
        &r.zones
            .iter()
            .map(|(z, state, _)| (zone(z), u64::from(state != "disabled")))
            .collect::<Vec<_>>(),
    );
    family(
        "postern_dnsbl_zone_degraded",
        "gauge",
        "1 while a zone in use gave error answers, timeouts or failures in the last 10 minutes (never counted as listings).",
        &r.zones
            .iter()
            .map(|(z, state, _)| (zone(z), u64::from(state == "degraded")))
            .collect::<Vec<_>>(),
    );
    family(
        "postern_greylist_store_up",
        "gauge",
        "1 while the greylist store answers, 0 while it fails (on_store_error applies); absent with greylisting off.",
        &r.greylist
            .map(|up| vec![(String::new(), u64::from(up))])
            .unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let mut total = Counts::default();
        total.add(Counter::Connections, 9);
        total.add(Counter::Forwarded(crate::ipc::route::Cause::Auth), 1);
        total.add(Counter::Rejected(Rejection::Limit), 2);
        total.add(Counter::Bytes, 1234);
        let r = RouterMetrics {
            total: total.clone(),
            open: 3,
            ..RouterMetrics::default()
        };
        assert_eq!(
            RouterMetrics::from_attrs(&r.to_attrs(Attrs::new())),
            r,
            "crosses the IPC unchanged"
        );
        let text = render(Some(&r), None);
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("postern_greylist_store_up")),
            "off: no sample"
        );
        for line in [
            "postern_up 1",
            "postern_connections_total 9",
            "postern_forwarded_total{cause=\"domain\"} 0",
            "postern_forwarded_total{cause=\"auth\"} 1",
            "postern_rejected_total{kind=\"limit\"} 2",
            "postern_rejected_total{kind=\"restriction\"} 0",
            "postern_bytes_total 1234",
            "postern_connections_open 3",
            "postern_master_answered 0",
            "# TYPE postern_messages_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("postern_worker_up"));
        let workers = crate::ipc::Outcome::Ok
            .reply(None)
            .with("worker", "postern-router 0 41 ready 0 120")
            .with("worker", "postern-smtpd 2 - restarting 3 0")
            .with("worker", "bad\"label 3 1 ready 0 1");
        let r = RouterMetrics {
            total,
            open: 0,
            zones: vec![(
                "bl.example.net".into(),
                "degraded".into(),
                "error answer".into(),
            )],
            greylist: Some(false),
        };
        assert_eq!(RouterMetrics::from_attrs(&r.to_attrs(Attrs::new())), r);
        let text = render(Some(&r), Some(&workers));
        assert!(
            text.contains("postern_dnsbl_zone_up{zone=\"bl.example.net\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("postern_dnsbl_zone_degraded{zone=\"bl.example.net\"} 1\n"),
            "{text}"
        );
        for line in [
            "postern_master_answered 1",
            "postern_worker_up{worker=\"postern-router\",slot=\"0\"} 1",
            "postern_worker_up{worker=\"postern-smtpd\",slot=\"2\"} 0",
            "postern_worker_restarts_total{worker=\"postern-smtpd\",slot=\"2\"} 3",
            "postern_worker_uptime_seconds{worker=\"postern-router\",slot=\"0\"} 120",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("bad"), "labels are checked");
        // The router silent: postern_up 0, no counter, the workers still.
        let text = render(None, Some(&workers));
        assert!(
            text.contains("\npostern_up 0\n") || text.starts_with("# HELP postern_up"),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "postern_up 0"), "{text}");
        assert!(!text.contains("postern_connections_total"), "{text}");
        assert!(text.contains("postern_worker_up{worker=\"postern-router\",slot=\"0\"} 1"));
    }
}
