//! `postern stats [--weeks N] [--json]`: the weekly synthesis (seed 001 §7).
//!
//! The counts come from the running router (`request=stats` on
//! `run_dir/router.sock`: every session that has ended is in), or, when
//! postern is not running, from `process.state_dir/stats`, which the router
//! writes every few seconds and at stop. Weeks are ISO weeks (Monday to
//! Sunday) of the local calendar; the last one is the current week.

use std::fmt::Write as _;
use std::process::ExitCode;

use postern_shared::config::Config;
use postern_shared::ipc;
use postern_shared::ipc::Outcome;
use postern_shared::stats::{
    Counter, Day, Rejection, Report, Row, Stats, CAUSES, FILE, KEEP_DAYS, PASSED_SIZE, PENDING_SIZE,
};

use crate::master::{running_pid, PID_FILE, ROUTER_SOCKET};

/// Weeks shown by default.
pub const DEFAULT_WEEKS: i64 = 4;
/// Most weeks that can be asked for: the days kept.
pub const MAX_WEEKS: i64 = KEEP_DAYS / 7;

/// Where the counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Router,
    File,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Router => "router",
            Source::File => "file",
        }
    }
}

/// Runs `postern stats [--weeks N] [--json]`: `weeks` from 1 to
/// [`MAX_WEEKS`], as the command line checked.
pub fn run(weeks: i64, json: bool, config: &Config) -> ExitCode {
    let (stats, source) = match fetch(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("postern: stats: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = Report::new(&stats, Day::today(), weeks);
    if json {
        print!("{}", report.json(source));
    } else {
        print!("{}", report.text(source));
    }
    ExitCode::SUCCESS
}

/// The counts: from the router when postern runs, else from the file.
fn fetch(config: &Config) -> Result<(Stats, Source), String> {
    let running = running_pid(&config.process.run_dir.join(PID_FILE)).is_some();
    if running {
        let sock = config.process.run_dir.join(ROUTER_SOCKET);
        match ask_router(&sock) {
            Ok(s) => return Ok((s, Source::Router)),
            Err(e) => eprintln!(
                "postern: stats: the router at {} did not answer ({e}); reading {} instead, which may lag a few seconds",
                sock.display(),
                config.process.state_dir.join(FILE).display()
            ),
        }
    }
    Stats::load(&config.process.state_dir)
        .map(|s| (s, Source::File))
        .map_err(|e| e.to_string())
}

fn ask_router(sock: &std::path::Path) -> Result<Stats, String> {
    let reply = ipc::oneshot::ROUTER
        .call_blocking(sock, ipc::RouterRequest::Stats.encode())
        .map_err(|e| e.to_string())?;
    if !Outcome::is_ok(&reply) {
        return Err(Outcome::reason_in(&reply).unwrap_or("refused").to_string());
    }
    let body = reply.body.unwrap_or_default();
    let text = String::from_utf8(body).map_err(|_| "answer is not UTF-8".to_string())?;
    Stats::decode(&text).map_err(|e| e.to_string())
}

/// The synthesis as `postern stats` prints it.
trait Print {
    fn text(&self, source: Source) -> String;
    fn json(&self, source: Source) -> String;
}

impl Print for Report {
    fn text(&self, source: Source) -> String {
        let mut out = format!(
            "postern statistics: the last {} ISO weeks, local time, today {} (from the {})\n\n",
            self.weeks.len(),
            self.today,
            match source {
                Source::Router => "running router",
                Source::File => "statistics file: postern is not running",
            }
        );
        let rows: Vec<&Row> = self.weeks.iter().chain([&self.total]).collect();
        let mut headers = vec!["WEEK", "FROM", "CONNECTIONS"];
        headers.extend(["DOMAIN", "IP-ADDR", "AUTH"]);
        headers.extend(["DENIED", "REJECTED", "GREYLISTED", "PASSED"]);
        headers.extend(["MESSAGES", "BYTES", "SPAM RATE"]);
        let cells = rows
            .iter()
            .map(|r| {
                let c = &r.counts;
                let mut v = vec![
                    r.label.clone(),
                    if r.label == "total" {
                        String::new()
                    } else {
                        r.from.to_string()
                    },
                    c.get(Counter::Connections).to_string(),
                ];
                v.extend(
                    CAUSES
                        .iter()
                        .map(|k| c.get(Counter::Forwarded(*k)).to_string()),
                );
                v.extend([
                    c.get(Counter::RelayDenied).to_string(),
                    c.rejected().to_string(),
                    c.get(Counter::Greylisted).to_string(),
                    c.get(Counter::GreylistPassed).to_string(),
                    c.get(Counter::Messages).to_string(),
                    c.get(Counter::Bytes).to_string(),
                    percent(c.spam_rate()),
                ]);
                v
            })
            .collect::<Vec<_>>();
        out.push_str(&table(&headers, &cells, 2));

        out.push_str("\nRefusals by kind\n");
        let mut headers = vec!["WEEK", "RELAY DENIED"];
        headers.extend([
            "LIMIT",
            "SYNTAX",
            "SMUGGLING",
            "ACCESS",
            "DNSBL",
            "RESTRICTION",
        ]);
        let cells = rows
            .iter()
            .map(|r| {
                let mut v = vec![
                    r.label.clone(),
                    r.counts.get(Counter::RelayDenied).to_string(),
                ];
                v.extend(
                    Rejection::ALL
                        .iter()
                        .map(|k| r.counts.get(Counter::Rejected(*k)).to_string()),
                );
                v
            })
            .collect::<Vec<_>>();
        out.push_str(&table(&headers, &cells, 1));
        out.push_str(
            "\nDOMAIN, IP-ADDR, AUTH: mails forwarded by route cause; DENIED: relaying denied;\n\
             PASSED: greylist passed; BYTES: of the messages a backend accepted.\n\
             spam rate = refused / (refused + messages); refused = relaying denied + rejected.\n",
        );
        // Seed 001 §7.3: greylisting per day, with both lists' sizes.
        let grey: Vec<Vec<String>> = self
            .days
            .iter()
            .filter(|d| {
                let c = &d.counts;
                c.get(Counter::Greylisted) + c.get(Counter::GreylistPassed) > 0
                    || c.get_named(PENDING_SIZE) + c.get_named(PASSED_SIZE) > 0
            })
            .map(|d| {
                let c = &d.counts;
                vec![
                    d.label.clone(),
                    c.get(Counter::Greylisted).to_string(),
                    c.get(Counter::GreylistPassed).to_string(),
                    c.get_named(PENDING_SIZE).to_string(),
                    c.get_named(PASSED_SIZE).to_string(),
                ]
            })
            .collect();
        if !grey.is_empty() {
            out.push_str("\nGreylisting per day\n");
            out.push_str(&table(
                &["DAY", "GREYLISTED", "PASSED", "PENDING LIST", "WHITELIST"],
                &grey,
                1,
            ));
            out.push_str(
                "PENDING LIST, WHITELIST: the lists' sizes at the day's last hourly purge.\n",
            );
        }
        out
    }

    fn json(&self, source: Source) -> String {
        let mut out = String::from("{\n");
        let _ = writeln!(out, "  \"source\": \"{}\",", source.as_str());
        let _ = writeln!(out, "  \"today\": \"{}\",", self.today);
        let list = |rows: &[Row], key: &str| {
            rows.iter()
                .map(|r| format!("    {}", row_json(r, key)))
                .collect::<Vec<_>>()
                .join(",\n")
        };
        let _ = writeln!(out, "  \"weeks\": [\n{}\n  ],", list(&self.weeks, "week"));
        let _ = writeln!(out, "  \"total\": {},", row_json(&self.total, "range"));
        if self.days.is_empty() {
            out.push_str("  \"days\": []\n");
        } else {
            let _ = writeln!(out, "  \"days\": [\n{}\n  ]", list(&self.days, "date"));
        }
        out.push_str("}\n");
        out
    }
}

/// One row as a JSON object; `key` names its label (`week`, `date`, `range`).
fn row_json(r: &Row, key: &str) -> String {
    let c = &r.counts;
    let mut s = String::from("{");
    if key != "range" {
        let _ = write!(s, "\"{key}\": \"{}\", ", r.label);
    }
    if key != "date" {
        let _ = write!(s, "\"from\": \"{}\", \"to\": \"{}\", ", r.from, r.to);
    }
    let _ = write!(s, "\"connections\": {}, ", c.get(Counter::Connections));
    let fwd: Vec<String> = CAUSES
        .iter()
        .map(|k| format!("\"{}\": {}", k.as_str(), c.get(Counter::Forwarded(*k))))
        .collect();
    let _ = write!(s, "\"forwarded\": {{{}}}, ", fwd.join(", "));
    let _ = write!(s, "\"relay_denied\": {}, ", c.get(Counter::RelayDenied));
    let rej: Vec<String> = Rejection::ALL
        .iter()
        .map(|k| format!("\"{}\": {}", k.as_str(), c.get(Counter::Rejected(*k))))
        .collect();
    let _ = write!(s, "\"rejected\": {{{}}}, ", rej.join(", "));
    for (name, counter) in [
        ("greylisted", Counter::Greylisted),
        ("greylist_passed", Counter::GreylistPassed),
        ("messages", Counter::Messages),
        ("bytes", Counter::Bytes),
    ] {
        let _ = write!(s, "\"{name}\": {}, ", c.get(counter));
    }
    if key == "date" && c.get_named(PENDING_SIZE) + c.get_named(PASSED_SIZE) > 0 {
        let _ = write!(
            s,
            "\"greylist_pending_size\": {}, \"greylist_passed_size\": {}, ",
            c.get_named(PENDING_SIZE),
            c.get_named(PASSED_SIZE)
        );
    }
    let rate = c
        .spam_rate()
        .map_or_else(|| "null".to_string(), |r| format!("{r}"));
    let _ = write!(s, "\"refused\": {}, \"spam_rate\": {rate}}}", c.refused());
    s
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// A plain-text table: the first `left` columns left-aligned, the others right-aligned.
fn table(headers: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let w = widths[i];
            if i < left {
                let _ = write!(s, "{c:<w$}");
            } else {
                let _ = write!(s, "{c:>w$}");
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    for r in rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_shared::ipc::route::Cause;
    use postern_shared::stats::Counts;

    fn d(s: &str) -> Day {
        Day::parse(s).expect("date")
    }

    fn sample() -> Stats {
        let mut s = Stats::default();
        let mut a = Counts::default();
        a.add(Counter::Connections, 6);
        a.add(Counter::Forwarded(Cause::Domain), 3);
        a.add(Counter::RelayDenied, 1);
        a.add(Counter::Messages, 3);
        a.add(Counter::Bytes, 300);
        // Sunday of 2026-W01, Monday and Wednesday of 2026-W02.
        s.add(d("2026-01-04"), &a);
        s.add(d("2026-01-05"), &a);
        let mut b = Counts::default();
        b.add(Counter::Connections, 2);
        b.add(Counter::Rejected(Rejection::Limit), 1);
        s.add(d("2026-01-07"), &b);
        // Too old for two weeks.
        s.add(d("2025-12-20"), &a);
        s
    }

    #[test]
    fn weeks_end_with_the_current_one() {
        let r = Report::new(&sample(), d("2026-01-08"), 2);
        let labels: Vec<&str> = r.weeks.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, ["2026-W01", "2026-W02"]);
        assert_eq!(
            (r.weeks[0].from, r.weeks[0].to),
            (d("2025-12-29"), d("2026-01-04"))
        );
        assert_eq!(r.weeks[0].counts.get(Counter::Connections), 6);
        assert_eq!(r.weeks[1].counts.get(Counter::Connections), 8);
        assert_eq!(r.total.counts.get(Counter::Connections), 14);
        assert_eq!(r.days.len(), 3, "the days inside the weeks only");
        // W02: 1 relay denied + 1 limit refused, 3 messages.
        assert_eq!(r.weeks[1].counts.spam_rate(), Some(0.4));
    }

    #[test]
    fn text_and_json() {
        let r = Report::new(&sample(), d("2026-01-08"), 2);
        let text = r.text(Source::Router);
        let w02 = text
            .lines()
            .find(|l| l.starts_with("2026-W02  2026-01-05"))
            .expect("a W02 row");
        let cells: Vec<&str> = w02.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "2026-W02",
                "2026-01-05",
                "8",
                "3",
                "0",
                "0",
                "1",
                "1",
                "0",
                "0",
                "3",
                "300",
                "40.0%"
            ]
        );
        assert!(text.contains("spam rate = refused / (refused + messages)"));
        assert!(text
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["2026-W02", "1", "1", "0", "0", "0", "0", "0"]));
        let json = r.json(Source::File);
        assert!(json.contains("\"source\": \"file\""), "{json}");
        assert!(json.contains(
            "{\"week\": \"2026-W02\", \"from\": \"2026-01-05\", \"to\": \"2026-01-11\", \"connections\": 8, \
             \"forwarded\": {\"domain\": 3, \"ip-addr\": 0, \"auth\": 0}, \"relay_denied\": 1, \
             \"rejected\": {\"limit\": 1, \"syntax\": 0, \"smuggling\": 0, \"access\": 0, \"dnsbl\": 0, \"restriction\": 0}, \
             \"greylisted\": 0, \"greylist_passed\": 0, \"messages\": 3, \"bytes\": 300, \"refused\": 2, \"spam_rate\": 0.4}"
        ), "{json}");
        assert!(
            json.contains("{\"date\": \"2026-01-07\", \"connections\": 2,"),
            "{json}"
        );
        let empty = Report::new(&Stats::default(), d("2026-01-08"), 1).json(Source::File);
        assert!(empty.contains("\"spam_rate\": null"), "{empty}");
        assert!(empty.contains("\"days\": []"), "{empty}");
    }
}
