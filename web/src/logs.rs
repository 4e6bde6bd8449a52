//! The logs and refused-mail pages' data: `postern log`'s answers, asked
//! of the master, and the report's lines read back.

use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::WorkerRequest;

use crate::pages;
use crate::server::ok_or_reason;
use crate::Shared;

/// `postern log search|session`, asked of the master (it reads the log
/// file or the journal): its answer and the lines.
pub(crate) async fn ask_log(
    shared: &Shared,
    what: &str,
    pattern: &str,
    since: &str,
) -> Result<(Attrs, Vec<String>), String> {
    let a = shared
        .ask_master(WorkerRequest::Log {
            what: what.into(),
            pattern: pattern.into(),
            since: since.into(),
        })
        .await
        .and_then(ok_or_reason)?;
    let mut lines: Vec<String> = String::from_utf8_lossy(a.body.as_deref().unwrap_or_default())
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    // A page of at most MAX_ROWS lines: the newest (they come oldest first).
    let mut a = a;
    if lines.len() > MAX_ROWS {
        let skipped = lines.len() - MAX_ROWS;
        lines.drain(..skipped);
        let looked = a.get("looked").unwrap_or("searched").to_string();
        a.push(
            "looked",
            format!("{looked} (the newest {MAX_ROWS} shown, {skipped} older ones not: narrow the search)"),
        );
    }
    Ok((a, lines))
}

/// Most lines a logs or refused-mail page shows.
pub(crate) const MAX_ROWS: usize = 1000;

/// A line of `postern log refused`: `TIME key=value…`.
pub(crate) fn refusal(line: &str) -> Option<pages::Refusal> {
    let (time, mut rest) = line.split_once(' ')?;
    let mut r = pages::Refusal {
        time: time.to_string(),
        client: String::new(),
        sender: String::new(),
        recipient: String::new(),
        reply: String::new(),
        sid: String::new(),
    };
    while let Some((key, value, after)) = postern_shared::runtime::logging::record::field(rest) {
        match key {
            "client" => r.client = value,
            "sender" => r.sender = value,
            "recipient" => r.recipient = value,
            "reply" => r.reply = value,
            "sid" => r.sid = value,
            _ => {}
        }
        rest = after;
    }
    Some(r)
}
