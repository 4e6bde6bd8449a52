//! `postern log search PATTERN` and `postern log session ID` (SPEC §9, seed
//! 001 §11): find sessions by address, show one session's whole path.
//!
//! Every line about a session carries its id (`sid`), in every process, so a
//! session is the set of lines with one `sid`. Where the lines come from:
//! - the **journal** when `log.journald = "yes"`, or `"auto"` without a
//!   `log.file`: `journalctl -o export` with field matches (`SID=…`, and
//!   `SYSLOG_IDENTIFIER=` of postern's processes), read in the journal's own
//!   export format (the native protocol's framing: `KEY=value` lines, or
//!   `KEY`, a little-endian 64-bit length and the raw value), which needs no
//!   JSON parser and is exact for any byte;
//! - otherwise the **log file**, read with the text format's own parser
//!   ([`postern_shared::runtime::logging::record`]). `--since` also reads the rotated
//!   files (`FILE.YYYY-MM-DD`) that may hold lines from that time on;
//!   `log session` looks back through them, newest first, until it finds the
//!   session.
//!
//! `search` matches PATTERN, case-insensitively, as a substring of a session's
//! client address, sender or recipients, and prints one line per session,
//! oldest first: id, time of its first line, client, sender, recipients,
//! server, last reply. `session` prints the session's lines in log order.
//! `search` says on stderr where it looked (`searched FILE and N rotated
//! files`, or `searched the journal`). Nothing found: a line on stderr and
//! exit status 1.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use postern_shared::config::Config;
use postern_shared::runtime::logging::file::rotated_siblings;
use postern_shared::runtime::logging::record::{parse_line, write_value, Record};
use postern_shared::runtime::time::{
    days_from_civil, local_date, local_day, now_millis, utc_offset, Timestamp,
};

/// The fields shown for a journal entry, journal name → text name.
const JOURNAL_FIELDS: [(&str, &str); 7] = [
    ("SID", "sid"),
    ("CLIENT_IP", "client_ip"),
    ("SENDER", "sender"),
    ("RECIPIENT", "recipient"),
    ("SERVER", "server"),
    ("CAUSE", "cause"),
    ("REPLY", "reply"),
];

/// The processes whose journal entries are read.
const IDENTIFIERS: [&str; 5] = [
    "postern",
    "postern-smtpd",
    "postern-router",
    "postern-updater",
    "postern-web",
];

/// One line of the log, as read, with the text to print for it.
struct Line {
    record: Record,
    text: String,
}

enum Source {
    File(PathBuf),
    Journal,
}

/// What `postern log` looks for.
pub enum Query<'a> {
    /// `log search PATTERN`: sessions by address.
    Search(&'a str),
    /// `log session ID`: one session's lines.
    Session(&'a str),
    /// `log refused [ADDRESS]`: every recipient refused (to that address).
    Refused(Option<&'a str>),
}

/// Runs `postern log search|session … [--since WHEN]`.
pub fn run(query: Query<'_>, since: Option<&str>, config: &Config) -> ExitCode {
    match answer(&query, since, config) {
        Ok(found) => {
            if let Some(looked) = &found.looked {
                eprintln!("postern: {looked}");
            }
            for l in &found.lines {
                println!("{l}");
            }
            if found.lines.is_empty() {
                match query {
                    Query::Search(p) => eprintln!("postern: no session matches {p:?}"),
                    Query::Session(id) => eprintln!("postern: no line has sid {id}"),
                    Query::Refused(Some(a)) => eprintln!("postern: nothing refused for {a}"),
                    Query::Refused(None) => eprintln!("postern: nothing refused"),
                }
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("postern: {e}");
            ExitCode::from(2)
        }
    }
}

/// What a search found.
pub struct Found {
    /// One line per session (`search`), or the session's lines (`session`).
    pub lines: Vec<String>,
    /// Where a search looked (`searched FILE and N rotated files`).
    pub looked: Option<String>,
}

/// The lines `postern log search|session` prints, or a mistake (exit
/// status 2): a `--since` that does not parse, nowhere to search. The
/// console asks the master for the same (`request=log`).
pub fn answer(query: &Query<'_>, since: Option<&str>, config: &Config) -> Result<Found, String> {
    let since = since.map(|v| parse_since(v, now_millis())).transpose()?;
    let source = source(config)?;
    match *query {
        Query::Search(pattern) => search(&source, pattern, since),
        Query::Refused(address) => refused(&source, address, since),
        Query::Session(id) => session(&source, id, since).map(|lines| Found {
            lines,
            looked: None,
        }),
    }
}

/// Where postern logs, as its configuration says.
fn source(config: &Config) -> Result<Source, String> {
    let l = &config.log;
    match (l.journald.as_str(), l.file.is_empty()) {
        ("yes", _) | ("auto", true) => Ok(Source::Journal),
        (_, false) => Ok(Source::File(PathBuf::from(&l.file))),
        (_, true) => {
            Err("nothing to search: log.file is not set and log.journald is \"no\"".into())
        }
    }
}

/// The lines of the period: the rotated files back to `since` and the
/// current one (or the journal), and where they came from.
fn period(source: &Source, since: Option<i64>) -> Result<(Vec<Line>, String), String> {
    Ok(match source {
        Source::File(path) => {
            let mut files = Vec::new();
            if let Some(t) = since {
                files.extend(rotated_since(path, t));
            }
            let rotated = files.len();
            files.push(path.clone());
            let mut all = Vec::new();
            for f in files {
                all.extend(read_file(&f)?);
            }
            (all, searched_files(path, rotated))
        }
        Source::Journal => (journal(&[], since)?, "searched the journal".to_string()),
    })
}

fn search(source: &Source, pattern: &str, since: Option<i64>) -> Result<Found, String> {
    // Where the lines came from, said on stderr: a search that finds nothing
    // in the wrong place must not look like a session that never happened.
    let (lines, looked) = period(source, since)?;
    let sessions = summarize(
        lines
            .iter()
            .map(|l| &l.record)
            .filter(|r| since.is_none_or(|t| r.millis >= t)),
    );
    let needle = pattern.to_lowercase();
    Ok(Found {
        lines: sessions
            .iter()
            .filter(|s| s.matches(&needle))
            .map(Summary::line)
            .collect(),
        looked: Some(looked),
    })
}

/// Seed 004's spam-senders report: each recipient smtpd refused (a 4xx or
/// 5xx reply: relaying denied, the policy's refusals, greylisting, and
/// what the server itself refused), oldest first, as `TIME
/// client=… sender=… recipient=… reply="…"`; with `address`, only the
/// refusals for that recipient (case-insensitive).
fn refused(source: &Source, address: Option<&str>, since: Option<i64>) -> Result<Found, String> {
    let (lines, looked) = period(source, since)?;
    let wanted = address.map(|a| a.trim_matches(['<', '>']).to_lowercase());
    let lines = lines
        .iter()
        .map(|l| &l.record)
        .filter(|r| since.is_none_or(|t| r.millis >= t))
        .filter(|r| r.process == "postern-smtpd")
        .filter_map(|r| {
            let recipient = r.get("recipient")?;
            let reply = r.get("reply")?;
            if !reply.starts_with(['4', '5']) {
                return None;
            }
            if wanted
                .as_ref()
                .is_some_and(|w| recipient.to_lowercase() != *w)
            {
                return None;
            }
            let mut s = r.time.clone();
            for (k, v) in [
                ("client", r.get("client_ip").unwrap_or("-")),
                (
                    "sender",
                    r.get("sender").filter(|v| !v.is_empty()).unwrap_or("<>"),
                ),
                ("recipient", recipient),
                ("reply", reply),
                ("sid", r.get("sid").unwrap_or("-")),
            ] {
                s.push(' ');
                s.push_str(k);
                s.push('=');
                write_value(&mut s, v);
            }
            Some(s)
        })
        .collect();
    Ok(Found {
        lines,
        looked: Some(looked),
    })
}

fn session(source: &Source, id: &str, since: Option<i64>) -> Result<Vec<String>, String> {
    let of_session = |l: &Line| l.record.get("sid") == Some(id);
    let lines: Vec<Line> = match source {
        Source::File(path) => {
            // Newest first: the current file, then the rotated ones. A session
            // that straddles midnight has lines in two files.
            let mut files = vec![path.clone()];
            let older = match since {
                Some(t) => rotated_since(path, t),
                None => rotated_siblings(path),
            };
            files.extend(older.into_iter().rev());
            let mut found: Vec<Vec<Line>> = Vec::new();
            for f in files {
                let lines: Vec<Line> = read_file(&f)?.into_iter().filter(of_session).collect();
                let hit = !lines.is_empty();
                if !hit && !found.is_empty() {
                    break;
                }
                if hit {
                    found.push(lines);
                }
            }
            found.into_iter().rev().flatten().collect()
        }
        Source::Journal => journal(&[format!("SID={id}")], since)?,
    };
    Ok(lines
        .into_iter()
        .filter(|l| since.is_none_or(|t| l.record.millis >= t))
        .map(|l| l.text)
        .collect())
}

/// `searched FILE`, with how many of its rotated siblings were read too.
fn searched_files(path: &Path, rotated: usize) -> String {
    match rotated {
        0 => format!("searched {}", path.display()),
        1 => format!("searched {} and 1 rotated file", path.display()),
        n => format!("searched {} and {n} rotated files", path.display()),
    }
}

/// The rotated files that may hold lines from `since` on: those dated that
/// day or later, and the last one before (it runs until its rotation).
fn rotated_since(path: &Path, since: i64) -> Vec<PathBuf> {
    let day = local_date(local_day(since));
    let all = rotated_siblings(path);
    let first = all
        .iter()
        .position(|p| date_of(p).is_some_and(|d| d.as_str() >= day.as_str()))
        .unwrap_or(all.len());
    all[first.saturating_sub(1)..].to_vec()
}

/// `YYYY-MM-DD` of a rotated file's name.
fn date_of(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    // FILE.YYYY-MM-DD or FILE.YYYY-MM-DD.N: the part that looks like a date.
    name.rsplit('.')
        .find(|part| part.len() == 10 && part.as_bytes()[4] == b'-')
        .map(str::to_string)
}

fn read_file(path: &Path) -> Result<Vec<Line>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| {
            parse_line(l).map(|record| Line {
                record,
                text: l.to_string(),
            })
        })
        .collect())
}

/// Entries of postern's processes from the journal, with extra `matches`.
fn journal(matches: &[String], since: Option<i64>) -> Result<Vec<Line>, String> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["-o", "export", "--no-pager", "-q"]);
    if let Some(t) = since {
        cmd.arg(format!("--since=@{}", t.div_euclid(1000)));
    }
    cmd.args(matches);
    cmd.args(IDENTIFIERS.iter().map(|i| format!("SYSLOG_IDENTIFIER={i}")));
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run journalctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "journalctl failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(parse_export(&out.stdout)
        .into_iter()
        .filter_map(|e| entry_line(&e))
        .collect())
}

/// One journal entry: its fields in order.
type Entry = Vec<(String, Vec<u8>)>;

/// Reads journalctl's export format.
fn parse_export(mut b: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut current: Entry = Vec::new();
    while !b.is_empty() {
        let Some(nl) = b.iter().position(|&c| c == b'\n') else {
            break;
        };
        let line = &b[..nl];
        b = &b[nl + 1..];
        if line.is_empty() {
            if !current.is_empty() {
                entries.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            let name = String::from_utf8_lossy(&line[..eq]).into_owned();
            current.push((name, line[eq + 1..].to_vec()));
        } else {
            // Binary-safe field: NAME\n, 64-bit little-endian length, data, \n.
            let Some(len) = b.get(..8) else { break };
            let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
            let Some(value) = b.get(8..8 + len) else {
                break;
            };
            current.push((String::from_utf8_lossy(line).into_owned(), value.to_vec()));
            b = b.get(8 + len + 1..).unwrap_or_default();
        }
    }
    if !current.is_empty() {
        entries.push(current);
    }
    entries
}

/// A journal entry as a log line in the text format.
fn entry_line(e: &Entry) -> Option<Line> {
    let get = |k: &str| {
        e.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    // The sender's clock when it says, else the time journald received it.
    let micros: i64 = get("_SOURCE_REALTIME_TIMESTAMP")
        .or_else(|| get("__REALTIME_TIMESTAMP"))?
        .parse()
        .ok()?;
    let millis = micros / 1000;
    let time = Timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_micros(micros as u64))
        .to_string();
    let level = match get("PRIORITY").as_deref() {
        Some("0" | "1" | "2" | "3") => "ERROR",
        Some("4") => "WARN",
        Some("6") => "DEBUG",
        Some("7") => "TRACE",
        _ => "INFO",
    };
    let fields = JOURNAL_FIELDS
        .iter()
        .filter_map(|(j, t)| get(j).map(|v| (t.to_string(), v)))
        .collect();
    let record = Record {
        time,
        millis,
        process: get("SYSLOG_IDENTIFIER").unwrap_or_else(|| "?".into()),
        pid: get("_PID")
            .or_else(|| get("SYSLOG_PID"))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        level: level.into(),
        fields,
        message: get("MESSAGE").unwrap_or_default(),
    };
    let text = record.to_line();
    Some(Line { record, text })
}

/// What `search` shows of a session.
#[derive(Default)]
struct Summary {
    sid: String,
    time: String,
    millis: i64,
    client: Option<String>,
    senders: Vec<String>,
    recipients: Vec<String>,
    servers: Vec<String>,
    reply: Option<String>,
}

impl Summary {
    fn matches(&self, needle: &str) -> bool {
        let hit = |s: &String| s.to_lowercase().contains(needle);
        self.client.iter().any(hit)
            || self.senders.iter().any(hit)
            || self.recipients.iter().any(hit)
    }

    fn line(&self) -> String {
        let mut s = format!("{} {}", self.sid, self.time);
        let mut put = |k: &str, v: &str| {
            s.push(' ');
            s.push_str(k);
            s.push('=');
            write_value(&mut s, if v.is_empty() { "-" } else { v });
        };
        put("client", self.client.as_deref().unwrap_or(""));
        put("sender", &self.senders.join(","));
        put("recipient", &self.recipients.join(","));
        put("server", &self.servers.join(","));
        put("reply", self.reply.as_deref().unwrap_or(""));
        s
    }
}

/// Groups lines by session, in order of each session's first line.
fn summarize<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<Summary> {
    let mut out: Vec<Summary> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for r in records {
        let Some(sid) = r.get("sid").filter(|s| !s.is_empty() && *s != "-") else {
            continue;
        };
        let i = *index.entry(sid.to_string()).or_insert_with(|| {
            out.push(Summary {
                sid: sid.to_string(),
                time: r.time.clone(),
                millis: r.millis,
                ..Summary::default()
            });
            out.len() - 1
        });
        let s = &mut out[i];
        let add = |list: &mut Vec<String>, v: &str| {
            if !v.is_empty() && !list.iter().any(|x| x == v) {
                list.push(v.to_string());
            }
        };
        for (k, v) in &r.fields {
            match k.as_str() {
                "client_ip" if s.client.is_none() => s.client = Some(v.clone()),
                "sender" => add(&mut s.senders, v),
                // An alias's addresses (SPEC §12) are the session's recipients too.
                "recipient" | "expanded" => v.split(',').for_each(|x| add(&mut s.recipients, x)),
                "server" => add(&mut s.servers, v),
                "reply" => s.reply = Some(v.clone()),
                _ => {}
            }
        }
    }
    out.sort_by_key(|s| s.millis);
    out
}

/// `--since`: a duration back from `now` (`30m`, `2h`, `7d`) or a local date
/// and time (`2026-11-23`, `2026-11-23 14:00`, `2026-11-23T14:00:05`).
/// Returns milliseconds since the epoch.
fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(d) = postern_shared::config::Duration::parse(s) {
        // A duration past the epoch means "everything".
        let back = i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(back).max(0));
    }
    let bad = || {
        format!("--since {s:?}: give a duration (30m, 2h, 7d) or a date (2026-11-23 [14:00[:05]])")
    };
    let (date, time) = match s.split_once([' ', 'T']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (Some(Some(y)), Some(Some(m)), Some(Some(day)), None) =
        (d.next(), d.next(), d.next(), d.next())
    else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut secs_of_day = 0;
    if let Some(t) = time {
        let parts: Vec<Option<i64>> = t.split(':').map(|p| p.parse().ok()).collect();
        let (h, mi, se) = match parts.as_slice() {
            [Some(h), Some(mi)] => (*h, *mi, 0),
            [Some(h), Some(mi), Some(se)] => (*h, *mi, *se),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || se > 59 {
            return Err(bad());
        }
        secs_of_day = h * 3600 + mi * 60 + se;
    }
    let local = days_from_civil(y, m as u32, day as u32) * 86_400 + secs_of_day;
    // Local → UTC: the offset at the guess, then at the result (summer time).
    let guess = local - utc_offset(local);
    Ok((local - utc_offset(guess)) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Record {
        parse_line(line).expect("a log line")
    }

    #[test]
    fn sessions_are_summarized_and_matched() {
        let lines = [
            "2026-11-23T10:00:00.000Z postern-smtpd[10]: INFO sid=S1 client_ip=127.0.0.2: accepted connection from 127.0.0.2",
            "2026-11-23T10:00:00.100Z postern-router[9]: INFO sid=S1 cause=domain server=One route one.test -> One",
            "2026-11-23T10:00:00.050Z postern-smtpd[11]: INFO sid=S2 client_ip=127.0.0.3: accepted connection from 127.0.0.3",
            "2026-11-23T10:00:00.200Z postern-smtpd[10]: INFO sid=S1 client_ip=127.0.0.2: sender=a@example.org recipient=u@one.test,v@one.test server=One reply=\"250 2.0.0 Ok: queued as 1\" message from <a@example.org> (10 bytes) forwarded to One: 250 2.0.0 Ok: queued as 1",
            "2026-11-23T10:00:00.300Z postern-smtpd[11]: WARN sid=S2 client_ip=127.0.0.3: recipient=x@else.test reply=\"554 5.7.1\" no server found for rcpt x@else.test",
            "2026-11-23T10:00:00.400Z postern[1]: INFO configuration reloaded",
        ];
        let records: Vec<Record> = lines.iter().map(|l| rec(l)).collect();
        let s = summarize(records.iter());
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].line(),
            "S1 2026-11-23T10:00:00.000Z client=127.0.0.2 sender=a@example.org recipient=u@one.test,v@one.test server=One reply=\"250 2.0.0 Ok: queued as 1\""
        );
        assert_eq!(
            s[1].line(),
            "S2 2026-11-23T10:00:00.050Z client=127.0.0.3 sender=- recipient=x@else.test server=- reply=\"554 5.7.1\""
        );
        assert!(s[0].matches("v@one"));
        assert!(s[0].matches("example.org"));
        assert!(!s[0].matches("else.test"));
        assert!(s[1].matches("127.0.0.3"));
        assert!(!s[1].matches("127.0.0.2"));
    }

    #[test]
    fn export_format_entries() {
        let mut b = b"__REALTIME_TIMESTAMP=1795449303120000\nPRIORITY=5\nSYSLOG_IDENTIFIER=postern-smtpd\n_PID=42\nSID=S1\nCLIENT_IP=127.0.0.2\nMESSAGE\n".to_vec();
        let msg = b"two\nlines";
        b.extend_from_slice(&(msg.len() as u64).to_le_bytes());
        b.extend_from_slice(msg);
        b.extend_from_slice(b"\nSERVER=Customer One\n\n__REALTIME_TIMESTAMP=1795449303121000\nPRIORITY=4\nSYSLOG_IDENTIFIER=postern\nMESSAGE=x\n\n");
        let entries = parse_export(&b);
        assert_eq!(entries.len(), 2);
        let l = entry_line(&entries[0]).expect("line");
        assert_eq!(
            l.text,
            "2026-11-23T15:55:03.120Z postern-smtpd[42]: INFO sid=S1 client_ip=127.0.0.2 server=\"Customer One\" two\nlines"
        );
        assert_eq!(l.record.millis, 1_795_449_303_120);
        let l = entry_line(&entries[1]).expect("line");
        assert_eq!(l.record.level, "WARN");
    }

    #[test]
    fn since() {
        let now = 1_795_449_303_120;
        assert_eq!(parse_since("2h", now), Ok(now - 7_200_000));
        let day = parse_since("2026-11-23", now).expect("date");
        assert_eq!(local_day(day), days_from_civil(2026, 11, 23));
        assert_eq!(local_day(day - 1), days_from_civil(2026, 11, 22));
        let t = parse_since("2026-11-23 14:30", now).expect("date and time");
        assert_eq!(t - day, (14 * 3600 + 30 * 60) * 1000);
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("2026-13-01", now).is_err());
    }

    #[test]
    fn dates_of_rotated_files() {
        assert_eq!(
            date_of(Path::new("/var/log/postern/proxy.log.2026-11-23")).as_deref(),
            Some("2026-11-23")
        );
        assert_eq!(
            date_of(Path::new("/l/proxy.log.2026-11-23.1")).as_deref(),
            Some("2026-11-23")
        );
    }
}
