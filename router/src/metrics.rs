//! The Prometheus endpoint: `GET /metrics` on the socket named `metrics`,
//! which the master binds from `[metrics] listen` (loopback only).
//!
//! HTTP is written by hand, the least that Prometheus and curl need: one
//! request per connection (`Connection: close`), a request head of at most
//! [`MAX_REQUEST`] bytes, [`IO_TIMEOUT`] for the whole exchange, at most
//! [`MAX_CLIENTS`] at a time (the others wait in the listen backlog).
//! `GET` or `HEAD /metrics` → 200 in the text exposition format 0.0.4; any
//! other path → 404; another method → 405; a malformed head → 400.
//!
//! What is exposed ([`render`]):
//! - `postern_up 1`;
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
//! - the worker states, as the master sees them: the router asks it over its
//!   channel (`request=workers`) at each scrape; `postern_worker_up`,
//!   `postern_worker_restarts_total`, `postern_worker_uptime_seconds` per
//!   worker slot, and `postern_master_answered` (0 when the master did not
//!   answer within [`ASK_TIMEOUT`]: the worker series are then left out).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::Outcome;
use postern_shared::stats::{Counter, Counts, Rejection, CAUSES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::Shared;

/// Largest request head accepted.
pub const MAX_REQUEST: usize = 8192;
/// Longest a whole exchange may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at the same time.
pub const MAX_CLIENTS: usize = 8;
/// How long a scrape waits for the master's worker states.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// Where a scrape asks for the master's worker states: the router's main
/// loop, which owns the master channel, answers on the oneshot.
pub type Ask = mpsc::Sender<oneshot::Sender<Attrs>>;

/// Serves the endpoint until the process ends.
pub async fn serve(listener: TcpListener, state: Shared, ask: Ask) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let (state, ask) = (state.clone(), ask.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(IO_TIMEOUT, async {
                        if exchange(&mut stream, &state, &ask).await.is_ok() {
                            linger(&mut stream).await;
                        }
                    })
                    .await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("accept on the metrics socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Closes our side, then reads and drops what the client still sends (a
/// body we did not want, the rest of a head too large) until it closes: a
/// close with unread input would reset the connection, and the client could
/// lose the response.
async fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left = 16 * MAX_REQUEST;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Reads one request, writes one response.
async fn exchange(stream: &mut TcpStream, state: &Shared, ask: &Ask) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            return respond(stream, "1.1", 431, "text/plain", b"request too large\n").await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or("")
        .trim_end_matches('\r');
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return respond(stream, "1.1", 400, "text/plain", b"bad request\n").await;
    };
    let Some(version) = version
        .strip_prefix("HTTP/")
        .filter(|v| v.starts_with("1."))
    else {
        return respond(stream, "1.1", 400, "text/plain", b"bad request\n").await;
    };
    let version = if version == "1.0" { "1.0" } else { "1.1" };
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let workers = worker_states(ask).await;
            let (total, open) = (state.stats.total(), open_connections(state));
            let greylist = state.policy.greylist_state().map(|(s, _)| s == "ok");
            let body = render(
                &total,
                open,
                &state.policy.zones(),
                greylist,
                workers.as_ref(),
            );
            if method == "HEAD" {
                // The same headers, no body.
                return respond_head(stream, version, 200, CONTENT_TYPE, body.len()).await;
            }
            respond(stream, version, 200, CONTENT_TYPE, body.as_bytes()).await
        }
        ("GET" | "HEAD", _) => {
            respond(
                stream,
                version,
                404,
                "text/plain",
                b"not found: try /metrics\n",
            )
            .await
        }
        _ => respond(stream, version, 405, "text/plain", b"method not allowed\n").await,
    }
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

async fn respond_head(
    stream: &mut TcpStream,
    version: &str,
    code: u16,
    content_type: &str,
    len: usize,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/{version} {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n",
        reason(code)
    );
    if code == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await
}

async fn respond(
    stream: &mut TcpStream,
    version: &str,
    code: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    respond_head(stream, version, code, content_type, body.len()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}

fn open_connections(state: &Shared) -> u32 {
    state.anvil.lock().map(|a| a.open()).unwrap_or(0)
}

async fn worker_states(ask: &Ask) -> Option<Attrs> {
    let (tx, rx) = oneshot::channel();
    ask.send(tx).await.ok()?;
    let reply = tokio::time::timeout(ASK_TIMEOUT, rx).await.ok()?.ok()?;
    Outcome::is_ok(&reply).then_some(reply)
}

/// The exposition text. `workers`: the master's answer to `request=workers`,
/// one `worker=<program> <slot> <pid|-> <state> <restarts> <uptime seconds>`
/// attribute per worker slot.
pub fn render(
    total: &Counts,
    open: u32,
    zones: &[(String, &str, String)],
    greylist: Option<bool>,
    workers: Option<&Attrs>,
) -> String {
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |c: Counter| vec![(String::new(), total.get(c))];
    family(
        "postern_up",
        "gauge",
        "1 while the router serves.",
        &[(String::new(), 1)],
    );
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
                    total.get(Counter::Forwarded(*c)),
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
            .map(|r| {
                (
                    format!("{{kind=\"{}\"}}", r.as_str()),
                    total.get(Counter::Rejected(*r)),
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
        &[(String::new(), u64::from(open))],
    );
    // Zone names are host names (checked at load): no label escaping needed.
    let zone = |z: &str| format!("{{zone=\"{z}\"}}");
    family(
        "postern_dnsbl_zone_up",
        "gauge",
        "1 while a DNS blocklist zone is in use, 0 while its self-test fails or it timed out too often.",
        &zones
            .iter()
            .map(|(z, state, _)| (zone(z), u64::from(*state != "disabled")))
            .collect::<Vec<_>>(),
    );
    family(
        "postern_dnsbl_zone_degraded",
        "gauge",
        "1 while a zone in use gave error answers, timeouts or failures in the last 10 minutes (never counted as listings).",
        &zones
            .iter()
            .map(|(z, state, _)| (zone(z), u64::from(*state == "degraded")))
            .collect::<Vec<_>>(),
    );
    family(
        "postern_greylist_store_up",
        "gauge",
        "1 while the greylist store answers, 0 while it fails (on_store_error applies); absent with greylisting off.",
        &greylist
            .map(|up| vec![(String::new(), u64::from(up))])
            .unwrap_or_default(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_text() {
        let mut total = Counts::default();
        total.add(Counter::Connections, 9);
        total.add(
            Counter::Forwarded(postern_shared::ipc::route::Cause::Auth),
            1,
        );
        total.add(Counter::Rejected(Rejection::Limit), 2);
        total.add(Counter::Bytes, 1234);
        let text = render(&total, 3, &[], None, None);
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
        let workers = Outcome::Ok
            .reply(None)
            .with("worker", "postern-router 0 41 ready 0 120")
            .with("worker", "postern-smtpd 2 - restarting 3 0")
            .with("worker", "bad\"label 3 1 ready 0 1");
        let text = render(
            &total,
            0,
            &[("bl.example.net".into(), "degraded", "error answer".into())],
            Some(false),
            Some(&workers),
        );
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
    }
}
