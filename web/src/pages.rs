//! The console's HTML, written with maud: every value is escaped by
//! construction, there is no script at all, and one stylesheet
//! (`/style.css`, below) does the layout, so the pages work on a host
//! without internet and under a `Content-Security-Policy` that allows
//! nothing else.

use maud::{html, Markup, DOCTYPE};

/// The stylesheet: one file, no external font or image.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}\
header{background:#234;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.1em;align-items:center}\
header a{color:#fff;text-decoration:none;white-space:nowrap}header a.here{text-decoration:underline}\
header form{margin-left:auto}main{padding:1em 1.5em;max-width:72em}\
pre{background:#fff;border:1px solid #ccc;padding:.8em;overflow-x:auto}\
.error{color:#a00}.ok{color:#060}label{display:block;margin:.5em 0}\
input,button,select{font-size:1em;padding:.3em .5em}\
table{border-collapse:collapse;background:#fff;margin:.5em 0 1em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eef}table.numbers td+td{text-align:right}figure{margin:1em 0;max-width:60em}tr.expired td{background:#fee}td form{display:inline}\
form.row{display:flex;flex-wrap:wrap;gap:.5em 1em;align-items:end}form.row label{margin:0}\
.field-error{color:#a00;display:block;font-size:.9em}";

/// The menu, in seed 001's order.
const MENU: &[(&str, &str)] = &[
    ("/dashboard", "Dashboard"),
    ("/stats", "Statistics"),
    ("/access", "Access lists"),
    ("/routing", "Routing"),
    ("/mx", "MX check"),
    ("/greylist", "Greylisting"),
    ("/logs", "Logs"),
    ("/refused", "Refused mail"),
    ("/queue", "Update queue"),
    ("/apply", "Apply"),
];

/// A page after login: the menu, the user and a log-out button, `body`.
pub fn page(title: &str, here: &str, user: &str, csrf: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "postern — " (title) }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header {
                    strong { "postern" }
                    @for (href, name) in MENU {
                        a href=(href) class=[(*href == here).then_some("here")] { (name) }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(csrf);
                        (user) " "
                        button type="submit" { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The login form, with an error when the last attempt failed.
pub fn login(error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "postern — log in" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                header { strong { "postern" } }
                main {
                    h1 { "Log in" }
                    @if let Some(e) = error { p.error { (e) } }
                    form method="post" action="/" {
                        label { "User " input type="text" name="user" autocomplete="username" required; }
                        label { "Password " input type="password" name="password" autocomplete="current-password" required; }
                        button type="submit" { "Log in" }
                    }
                }
            }
        }
    }
}

/// The dashboard: `postern status` as the master says it.
pub fn dashboard(status: &Result<String, String>) -> Markup {
    html! {
        @match status {
            Ok(text) => pre { (text) },
            Err(e) => p.error { "The master did not tell: " (e) },
        }
    }
}

/// The update queue and the restart schedule, as `postern queue` and
/// `postern restarts` print them, with their actions; `done` says how the
/// last action went.
pub fn queue(
    csrf: &str,
    queue: &Result<String, String>,
    restarts: &Result<String, String>,
    done: Option<&Result<String, String>>,
) -> Markup {
    html! {
        @match done {
            Some(Ok(m)) => p.ok { (m) },
            Some(Err(e)) => p.error { (e) },
            None => {},
        }
        h2 { "Update mails" }
        @match queue {
            Ok(t) => pre { (t) },
            Err(e) => p.error { (e) },
        }
        form method="post" action="/queue/flush" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Try every deferred copy now" }
        }
        form method="post" action="/queue/delete" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Update mail id " input type="text" name="id" required; }
            button type="submit" { "Delete" }
        }
        h2 { "Scheduled restarts" }
        @match restarts {
            Ok(t) => pre { (t) },
            Err(e) => p.error { (e) },
        }
        form method="post" action="/restarts/cancel" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Restart id " input type="text" name="id" required; }
            button type="submit" { "Cancel" }
        }
    }
}

/// Apply: reload the configuration file, and the last result.
pub fn apply(csrf: &str, result: Option<&Result<(), String>>) -> Markup {
    html! {
        @match result {
            Some(Ok(())) => p.ok { "Configuration reloaded." },
            Some(Err(e)) => p.error { "Not reloaded: " (e) " The running configuration stays." },
            None => {},
        }
        p { "Reads the configuration file again and applies it, as " code { "postern reload" } " does: an invalid file changes nothing." }
        form method="post" action="/apply" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Reload the configuration" }
        }
    }
}

/// Statistics (seed 001 §7): the weekly synthesis with the spam rate,
/// refusals by kind, greylisting per day, and their charts.
pub fn stats(report: &Result<postern_shared::stats::Report, String>, weeks: i64) -> Markup {
    use crate::charts::{stacked_bars, Series};
    use postern_shared::stats::{Counter, Rejection, CAUSES, PASSED_SIZE, PENDING_SIZE};
    let r = match report {
        Ok(r) => r,
        Err(e) => return html! { p.error { "The router did not tell: " (e) } },
    };
    let labels: Vec<String> = r.weeks.iter().map(|w| w.label.clone()).collect();
    let per_week = |f: &dyn Fn(&postern_shared::stats::Counts) -> f64| -> Vec<f64> {
        r.weeks.iter().map(|w| f(&w.counts)).collect()
    };
    let rows: Vec<&postern_shared::stats::Row> = r.weeks.iter().chain([&r.total]).collect();
    let percent =
        |rate: Option<f64>| rate.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0));
    let colours = ["#b33", "#e80", "#c6c", "#888", "#36c", "#393", "#960"];
    let mut refusals = vec![Series {
        name: "relay denied",
        colour: colours[0],
        values: per_week(&|c| c.get(Counter::RelayDenied) as f64),
    }];
    for (k, colour) in Rejection::ALL.iter().zip(&colours[1..]) {
        refusals.push(Series {
            name: k.as_str(),
            colour,
            values: per_week(&|c| c.get(Counter::Rejected(*k)) as f64),
        });
    }
    let grey_days: Vec<&postern_shared::stats::Row> = r
        .days
        .iter()
        .filter(|d| {
            let c = &d.counts;
            c.get(Counter::Greylisted) + c.get(Counter::GreylistPassed) > 0
                || c.get_named(PENDING_SIZE) + c.get_named(PASSED_SIZE) > 0
        })
        .collect();
    html! {
        form.row method="get" action="/stats" {
            label { "Weeks " input type="number" name="weeks" min="1" max=(postern_shared::stats::KEEP_DAYS / 7) value=(weeks); }
            button type="submit" { "Show" }
        }
        p { "ISO weeks of the local calendar, today " (r.today) "; the last one is the current week." }
        (stacked_bars("Messages forwarded per week", &labels, &[Series {
            name: "messages", colour: "#36c", values: per_week(&|c| c.get(Counter::Messages) as f64),
        }], ""))
        (stacked_bars("Refusals per week, by kind", &labels, &refusals, ""))
        (stacked_bars("Spam rate per week", &labels, &[Series {
            name: "refused / (refused + messages)", colour: "#b33",
            values: per_week(&|c| c.spam_rate().unwrap_or(0.0) * 100.0),
        }], "%"))
        h2 { "Weekly synthesis" }
        table.numbers {
            tr {
                th { "Week" } th { "From" } th { "Connections" }
                @for k in CAUSES { th { "Forwarded: " (k.as_str()) } }
                th { "Relaying denied" } th { "Rejected" } th { "Greylisted" } th { "Greylist passed" }
                th { "Messages" } th { "Bytes" } th { "Spam rate" }
            }
            @for row in &rows {
                @let c = &row.counts;
                tr {
                    td { (row.label) }
                    td { @if row.label != "total" { (row.from) } }
                    td { (c.get(Counter::Connections)) }
                    @for k in CAUSES { td { (c.get(Counter::Forwarded(k))) } }
                    td { (c.get(Counter::RelayDenied)) }
                    td { (c.rejected()) }
                    td { (c.get(Counter::Greylisted)) }
                    td { (c.get(Counter::GreylistPassed)) }
                    td { (c.get(Counter::Messages)) }
                    td { (c.get(Counter::Bytes)) }
                    td { (percent(c.spam_rate())) }
                }
            }
        }
        p { "Spam rate = refused / (refused + messages); refused = relaying denied + rejected. Bytes: of the messages a backend accepted." }
        h2 { "Refusals by kind" }
        table.numbers {
            tr { th { "Week" } th { "Relaying denied" } @for k in Rejection::ALL { th { (k.as_str()) } } }
            @for row in &rows {
                tr {
                    td { (row.label) }
                    td { (row.counts.get(Counter::RelayDenied)) }
                    @for k in Rejection::ALL { td { (row.counts.get(Counter::Rejected(k))) } }
                }
            }
        }
        h2 { "Greylisting per day" }
        @if grey_days.is_empty() {
            p { "No greylisting in these weeks." }
        } @else {
            (stacked_bars("Greylisting per day", &grey_days.iter().map(|d| d.label.clone()).collect::<Vec<_>>(), &[
                Series { name: "greylisted", colour: "#e80", values: grey_days.iter().map(|d| d.counts.get(Counter::Greylisted) as f64).collect() },
                Series { name: "passed", colour: "#393", values: grey_days.iter().map(|d| d.counts.get(Counter::GreylistPassed) as f64).collect() },
            ], ""))
            table.numbers {
                tr { th { "Day" } th { "Greylisted" } th { "Passed" } th { "Pending list" } th { "Whitelist" } }
                @for d in &grey_days {
                    tr {
                        td { (d.label) }
                        td { (d.counts.get(Counter::Greylisted)) }
                        td { (d.counts.get(Counter::GreylistPassed)) }
                        td { (d.counts.get_named(PENDING_SIZE)) }
                        td { (d.counts.get_named(PASSED_SIZE)) }
                    }
                }
            }
            p { "Pending list, whitelist: the lists' sizes at the day's last hourly purge." }
        }
    }
}

/// One server of the routing table, as the page shows it.
pub struct ServerRow {
    /// Its name.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Its domains.
    pub domains: Vec<String>,
    /// Its relay networks.
    pub relay: Vec<String>,
    /// Whether clients may authenticate with its credentials.
    pub auth: bool,
    /// How the client's identity reaches it.
    pub identity: String,
    /// Whether update mails may restart it.
    pub restart: bool,
    /// Its health, as `postern status` says it.
    pub health: String,
}

/// Routing (seed 001 §4, §5): the servers with their domains, relay
/// networks and health, then every served domain and where it goes.
pub fn routing(servers: &[ServerRow], served: &[(String, String)]) -> Markup {
    html! {
        h2 { "Servers (" (servers.len()) ")" }
        table {
            tr { th { "Server" } th { "Address" } th { "Domains" } th { "Relay networks" } th { "AUTH" } th { "Client identity" } th { "Restart command" } th { "Health" } }
            @for s in servers {
                tr {
                    td { (s.name) }
                    td { code { (s.address) } }
                    td { (s.domains.join(", ")) }
                    td { (s.relay.join(", ")) }
                    td { @if s.auth { "yes" } @else { "no" } }
                    td { (s.identity) }
                    td { @if s.restart { "yes" } @else { "no" } }
                    td class=[(s.health != "reachable").then_some("error")] { (s.health) }
                }
            }
        }
        h2 { "Served domains (" (served.len()) ")" }
        table {
            tr { th { "Domain" } th { "Goes to" } }
            @for (d, to) in served { tr { td { (d) } td { (to) } } }
        }
    }
}

/// The MX check of one served domain.
pub struct MxRow {
    /// The domain.
    pub domain: String,
    /// Whether its mail comes here: `Some(true)` when an MX (or, without
    /// MX, the domain itself) is this host.
    pub here: Option<bool>,
    /// Each MX: preference, host, addresses, whether it is this host.
    pub records: Vec<(String, bool)>,
    /// Why there is no answer, or a remark.
    pub note: String,
}

/// MX check (seed 001 §6): does each served domain's MX point at this host?
pub fn mx(rows: &[MxRow], this_host: &[String]) -> Markup {
    html! {
        p { "This host: " (this_host.join(", ")) ". Looked up through the policy's resolver (" code { "policy.resolvers" } ")." }
        table {
            tr { th { "Domain" } th { "Mail comes here" } th { "MX records (preference, host, addresses)" } }
            @for r in rows {
                tr {
                    td { (r.domain) }
                    @match r.here {
                        Some(true) => td.ok { "yes" },
                        Some(false) => td.error { "no" },
                        None => td.error { "unknown" },
                    }
                    td {
                        @for (text, here) in &r.records {
                            @if *here { strong { (text) " (this host)" } } @else { (text) }
                            br;
                        }
                        @if !r.note.is_empty() { em { (r.note) } }
                    }
                }
            }
        }
    }
}

/// The add/edit form of an access-list entry, as typed, with what was
/// wrong next to its field.
#[derive(Debug, Default, Clone)]
pub struct EntryForm {
    /// `accept` or `reject`.
    pub action: String,
    /// `connect`, `from` or `to`.
    pub method: String,
    /// The pattern.
    pub pattern: String,
    /// The comment.
    pub comment: String,
    /// `YYYY-MM-DD` or empty.
    pub keep_until: String,
    /// The entry being edited (action, method, pattern), if any.
    pub editing: Option<(String, String, String)>,
    /// A field (`pattern`, `keep_until`, or empty for the whole form) and
    /// what is wrong with it.
    pub error: Option<(&'static str, String)>,
}

impl EntryForm {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }
}

/// A policy test: the client, HELO, sender and recipient as typed, and the
/// router's verdict.
#[derive(Debug, Default)]
pub struct PolicyTest {
    /// The client's address.
    pub client: String,
    /// Its HELO name.
    pub helo: String,
    /// The envelope sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// The verdict as words, or why there is none.
    pub verdict: Option<Result<String, String>>,
}

/// The access lists (seed 001 §8): both lists, entries past their
/// keep-until marked, edit and delete on each row, the add/edit form and
/// the "test an address" form. `done` says how the last change went.
pub fn access(
    csrf: &str,
    entries: &Result<Vec<postern_shared::access::Entry>, String>,
    today: &str,
    form: &EntryForm,
    test: &PolicyTest,
    done: Option<&Result<String, String>>,
) -> Markup {
    use postern_shared::access::Action;
    let select = |name: &str, options: &[&str], chosen: &str| {
        html! {
            select name=(name) {
                @for o in options {
                    option value=(o) selected[*o == chosen] { (o) }
                }
            }
        }
    };
    html! {
        @match done {
            Some(Ok(m)) => p.ok { (m) },
            Some(Err(e)) => p.error { (e) },
            None => {},
        }
        @match entries {
            Err(e) => p.error { "The router did not tell: " (e) },
            Ok(entries) => {
                @for (action, title) in [(Action::Accept, "Accept list"), (Action::Reject, "Reject list")] {
                    @let rows: Vec<_> = entries.iter().filter(|e| e.action == action).collect();
                    h2 { (title) " (" (rows.len()) ")" }
                    @if rows.is_empty() {
                        p { "No entry." }
                    } @else {
                        table {
                            tr { th { "Method" } th { "Pattern" } th { "Comment" } th { "Keep until" } th { "Added" } th { "By" } th {} }
                            @for e in rows {
                                @let expired = e.expired(today);
                                tr class=[expired.then_some("expired")] {
                                    td { (e.method.as_str()) }
                                    td { code { (e.pattern) } }
                                    td { (e.comment) }
                                    td {
                                        (e.keep_until.as_deref().unwrap_or(""))
                                        @if expired { " (past: review it)" }
                                    }
                                    td { (e.added.as_deref().unwrap_or("")) }
                                    td { (e.added_by.as_deref().unwrap_or("")) }
                                    td {
                                        form method="get" action="/access" {
                                            input type="hidden" name="edit_action" value=(e.action.as_str());
                                            input type="hidden" name="edit_method" value=(e.method.as_str());
                                            input type="hidden" name="edit_pattern" value=(e.pattern);
                                            button type="submit" { "Edit" }
                                        }
                                        " "
                                        form method="post" action="/access/delete" {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="action" value=(e.action.as_str());
                                            input type="hidden" name="method" value=(e.method.as_str());
                                            input type="hidden" name="pattern" value=(e.pattern);
                                            button type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { @if form.editing.is_some() { "Edit the entry" } @else { "Add an entry" } }
        @if let Some(e) = form.error_for("") { p.error { (e) } }
        form.row method="post" action="/access/save" {
            input type="hidden" name="csrf" value=(csrf);
            @if let Some((a, m, p)) = &form.editing {
                input type="hidden" name="old_action" value=(a);
                input type="hidden" name="old_method" value=(m);
                input type="hidden" name="old_pattern" value=(p);
            }
            label { "List " (select("action", &["reject", "accept"], &form.action)) }
            label { "Method " (select("method", &["connect", "from", "to"], &form.method)) }
            label {
                "Pattern " input type="text" name="pattern" value=(form.pattern) required;
                @if let Some(e) = form.error_for("pattern") { span.field-error { (e) } }
            }
            label { "Comment " input type="text" name="comment" value=(form.comment); }
            label {
                "Keep until " input type="date" name="keep_until" value=(form.keep_until);
                @if let Some(e) = form.error_for("keep_until") { span.field-error { (e) } }
            }
            button type="submit" { @if form.editing.is_some() { "Save" } @else { "Add" } }
        }
        p { "Patterns: an address, a domain (its subdomains too), " code { "user@" } ", an IP address or a network (CIDR) for " code { "connect" } ", a host name for the client's verified name." }
        h2 { "Test an address" }
        form.row method="get" action="/access" {
            label { "Client IP " input type="text" name="client" value=(test.client) required; }
            label { "HELO " input type="text" name="helo" value=(test.helo); }
            label { "Sender " input type="text" name="from" value=(test.from); }
            label { "Recipient " input type="text" name="to" value=(test.to) required; }
            button type="submit" { "Test" }
        }
        @match &test.verdict {
            Some(Ok(v)) => pre.verdict { (v) },
            Some(Err(e)) => p.error { (e) },
            None => {},
        }
    }
}

/// One greylisting view: its title and the store's lines, or why not.
pub struct GreylistView<'a> {
    /// What it shows.
    pub title: &'a str,
    /// One line per triplet (`LIST NETWORK SENDER RECIPIENT FIRST LAST COUNT`).
    pub lines: Result<Vec<String>, String>,
}

/// Greylisting (seed 001 §10): the search, one of the three sorted views,
/// and the manual whitelist with add and remove.
pub fn greylist(
    csrf: &str,
    query: &str,
    view: &str,
    shown: &GreylistView<'_>,
    whitelist: &Result<Vec<String>, String>,
    done: Option<&Result<String, String>>,
) -> Markup {
    let views = [
        ("pending", "Pending, by IP"),
        ("sender", "Passed, by sender"),
        ("recipient", "Passed, by recipient"),
    ];
    html! {
        @match done {
            Some(Ok(m)) => p.ok { (m) },
            Some(Err(e)) => p.error { (e) },
            None => {},
        }
        form.row method="get" action="/greylist" {
            label { "Search (sender, recipient, domain or IP) " input type="text" name="q" value=(query); }
            button type="submit" { "Search" }
        }
        p {
            "Views: "
            @for (i, (v, name)) in views.iter().enumerate() {
                @if i > 0 { " · " }
                @if *v == view { strong { (name) } } @else { a href={ "/greylist?view=" (v) } { (name) } }
            }
        }
        h2 { (shown.title) }
        @match &shown.lines {
            Err(e) => p.error { (e) },
            Ok(lines) if lines.is_empty() => p { "None." },
            Ok(lines) => table {
                tr { th { "List" } th { "Network" } th { "Sender" } th { "Recipient" } th { "First seen" } th { "Last seen" } th { "Count" } }
                @for l in lines {
                    @let cells: Vec<&str> = l.split(' ').collect();
                    @if cells.len() == 7 {
                        tr { @for c in &cells { td { (c) } } }
                    } @else {
                        tr { td colspan="7" { (l) } }
                    }
                }
            },
        }
        h2 { "Manual whitelist" }
        @match whitelist {
            Err(e) => p.error { (e) },
            Ok(lines) if lines.is_empty() => p { "No entry." },
            Ok(lines) => table {
                tr { th { "Entry" } th {} }
                @for l in lines {
                    @let mut words = l.splitn(3, ' ');
                    @let (kind, pattern) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    tr {
                        td { code { (l) } }
                        td {
                            form method="post" action="/greylist/whitelist" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="op" value="remove";
                                input type="hidden" name="kind" value=(kind);
                                input type="hidden" name="pattern" value=(pattern);
                                button type="submit" { "Remove" }
                            }
                        }
                    }
                }
            },
        }
        form.row method="post" action="/greylist/whitelist" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="op" value="add";
            label {
                "Kind "
                select name="kind" {
                    option value="ip" { "ip (address or network)" }
                    option value="from" { "from (sender address or domain)" }
                    option value="to" { "to (recipient address or domain)" }
                }
            }
            label { "Entry " input type="text" name="pattern" required; }
            button type="submit" { "Add to the whitelist" }
        }
    }
}

/// Logs (seed 001 §11): the search form, and the sessions found, each id
/// a link to its trail. `found` is `(where it looked, lines)`.
pub fn logs(
    query: &str,
    since: &str,
    found: Option<&Result<(String, Vec<String>), String>>,
) -> Markup {
    html! {
        form.row method="get" action="/logs" {
            label { "Sender, recipient or client IP " input type="text" name="q" value=(query) required; }
            label { "Since " input type="text" name="since" value=(since) placeholder="2d, 12h, 2026-12-01"; }
            button type="submit" { "Search" }
        }
        p { "Without " em { "since" } ", today's log only (or the whole journal)." }
        @match found {
            None => {},
            Some(Err(e)) => p.error { (e) },
            Some(Ok((looked, lines))) => {
                p { (looked) ": " (lines.len()) " session(s)." }
                @if !lines.is_empty() {
                    table {
                        tr { th { "Session" } th { "First line" } th { "Client, sender, recipients, server, last reply" } }
                        @for l in lines {
                            @let mut words = l.splitn(3, ' ');
                            @let (sid, time, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""), words.next().unwrap_or(""));
                            tr {
                                td { a href={ "/logs/session?sid=" (query_value(sid)) "&since=" (query_value(since)) } { code { (sid) } } }
                                td { (time) }
                                td { (rest) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `s` as a URL query value (percent-encoded but for unreserved characters).
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One refusal of the refused-mail report.
pub struct Refusal {
    /// When (the log's time stamp).
    pub time: String,
    /// The client's address.
    pub client: String,
    /// The envelope sender.
    pub sender: String,
    /// The recipient refused.
    pub recipient: String,
    /// The reply: the code and why.
    pub reply: String,
    /// The session, for its trail.
    pub sid: String,
}

/// The refused-mail report (seed 004's spam-senders script): who was
/// refused, for which recipient, why, over a period; newest first.
pub fn refused(
    address: &str,
    since: &str,
    found: Option<&Result<(String, Vec<Refusal>), String>>,
) -> Markup {
    html! {
        form.row method="get" action="/refused" {
            label { "Recipient (empty: all) " input type="text" name="to" value=(address); }
            label { "Since " input type="text" name="since" value=(since) placeholder="2d, 12h, 2026-12-01"; }
            button type="submit" { "Show" }
        }
        p { "Without " em { "since" } ", today's log only (or the whole journal). 4xx replies are temporary: the sender's server retries." }
        @match found {
            None => {},
            Some(Err(e)) => p.error { (e) },
            Some(Ok((looked, rows))) => {
                p { (looked) ": " (rows.len()) " refused recipient(s)." }
                @if !rows.is_empty() {
                    table {
                        tr { th { "When" } th { "Client" } th { "Sender" } th { "Recipient" } th { "Why" } th { "Session" } }
                        @for r in rows.iter().rev() {
                            tr {
                                td { (r.time) }
                                td { (r.client) }
                                td { (r.sender) }
                                td { (r.recipient) }
                                td { (r.reply) }
                                td { a href={ "/logs/session?sid=" (query_value(&r.sid)) "&since=" (query_value(since)) } { code { (r.sid) } } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One session's trail, every process's lines, newest first.
pub fn session(sid: &str, lines: &Result<Vec<String>, String>) -> Markup {
    html! {
        p { a href="/logs" { "Back to the search" } }
        @match lines {
            Err(e) => p.error { (e) },
            Ok(lines) if lines.is_empty() => p { "No line has session id " code { (sid) } "." },
            Ok(lines) => {
                p { (lines.len()) " lines, newest first." }
                pre.trail { @for l in lines.iter().rev() { (l) "\n" } }
            }
        }
    }
}

/// A page for an error (`404`, `403`…), without the menu.
pub fn error(status: u16, text: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "postern — " (status) } link rel="stylesheet" href="/style.css"; }
            body { main { h1 { (status) } p { (text) } p { a href="/" { "postern" } } } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("2026-11-23 14:00&x=é"),
            "2026-11-23%2014%3A00%26x%3D%C3%A9"
        );
    }

    #[test]
    fn values_are_escaped() {
        let p = dashboard(&Ok("<script>alert(1)</script> & \"x\"".into())).into_string();
        assert!(
            p.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"),
            "{p}"
        );
        let p = page("t", "/dashboard", "<b>", "\"><x", html! {}).into_string();
        assert!(!p.contains("<b>") && !p.contains("\"><x"), "{p}");
        assert!(!p.contains("<script"), "no script at all");
    }
}
