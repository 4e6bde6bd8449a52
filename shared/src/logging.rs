//! Logging set-up shared by every process: `tracing` to stderr, one line per
//! event, prefixed like syslog with the process name and pid, then the fields
//! of the enclosing spans (a session's `sid=` and `client=`), then the message:
//!
//! ```text
//! 2026-11-23T15:55:03.120Z postern-smtpd[4242]: INFO sid=67A1C3F20B1E client=127.0.0.1: accepted connection from 127.0.0.1
//! ```
//!
//! The level comes from `POSTERN_LOG_LEVEL` (the master sets it from
//! `log.level` for its workers), default `info`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Environment variable carrying the log level to workers.
pub const LEVEL_ENV: &str = "POSTERN_LOG_LEVEL";

/// Installs the global subscriber for process `name` at `level` (or `POSTERN_LOG_LEVEL`).
pub fn init(name: &'static str, level: Option<&str>) {
    let level = level
        .map(str::to_string)
        .or_else(|| std::env::var(LEVEL_ENV).ok())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(Line {
            name,
            pid: std::process::id(),
        })
        .try_init();
}

struct Line {
    name: &'static str,
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            w,
            "{} {}[{}]: {} ",
            Timestamp(SystemTime::now()),
            self.name,
            self.pid,
            event.metadata().level()
        )?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(w, "{fields}: ")?;
                    }
                }
            }
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// RFC 3339 UTC time with milliseconds.
pub struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, day) = civil_from_days(days as i64);
        write!(
            f,
            "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            d.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 → (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A short id, unique across processes in practice: 8 hex digits of
/// milliseconds and 4 of pid and counter. Used for sessions and queue files.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u32;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mix = (std::process::id().wrapping_mul(0x9E37) ^ n.wrapping_mul(0x1F1F)) as u16;
    format!("{ms:08X}{mix:04X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_231_429_953_007);
        assert_eq!(Timestamp(t).to_string(), "2009-01-08T15:52:33.007Z");
        assert_eq!(
            Timestamp(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 12);
    }
}
