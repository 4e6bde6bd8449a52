//! One log line as text, both ways: how a field value is written
//! ([`write_value`]) and how a written line is read back ([`parse_line`]), so
//! that `postern log` reads exactly what the processes write.
//!
//! A line is
//!
//! ```text
//! <time> <process>[<pid>]: <LEVEL> [<span fields>: ]…[<event fields> ]<message>
//! 2026-11-23T15:55:03.120Z postern-smtpd[4242]: INFO sid=67A1C3F20B1E client_ip=127.0.0.1: server="Customer One" cause=domain smtp connection forwarded from 127.0.0.1 to Customer One using domain
//! ```
//!
//! Fields are `key=value`; a value is written bare unless it is empty, holds
//! whitespace, a quote, a backslash, `=` or a control character, or ends with
//! `:`, in which case it is quoted with Rust string escapes (`"Customer One"`).
//! The fields of each enclosing span end with `:`. The message is whatever
//! follows the last leading `key=value` token.

/// A parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The time as written (`2026-11-23T15:55:03.120Z`).
    pub time: String,
    /// Milliseconds since the epoch, from `time`.
    pub millis: i64,
    /// The process name (`postern-smtpd`).
    pub process: String,
    /// The process id.
    pub pid: u32,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// Span fields then event fields, in line order.
    pub fields: Vec<(String, String)>,
    /// The message text.
    pub message: String,
}

impl Record {
    /// The first value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The line again, as [`parse_line`] reads it.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "{} {}[{}]: {} ",
            self.time, self.process, self.pid, self.level
        );
        for (k, v) in &self.fields {
            s.push_str(k);
            s.push('=');
            write_value(&mut s, v);
            s.push(' ');
        }
        s.push_str(&self.message);
        s
    }
}

/// True when `v` must be quoted to be read back as one value.
pub fn needs_quotes(v: &str) -> bool {
    v.is_empty()
        || v.ends_with(':')
        || v.starts_with('"')
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '='))
}

/// Appends `v` to `out`, quoted when [`needs_quotes`] says so.
pub fn write_value(out: &mut String, v: &str) {
    if needs_quotes(v) {
        use std::fmt::Write as _;
        let _ = write!(out, "{v:?}");
    } else {
        out.push_str(v);
    }
}

/// Reads a line written by postern's text formatter; `None` for anything else.
pub fn parse_line(line: &str) -> Option<Record> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (time, rest) = line.split_once(' ')?;
    let millis = parse_time(time)?;
    let (tag, rest) = rest.split_once(": ")?;
    let (process, pid) = tag.strip_suffix(']')?.split_once('[')?;
    let pid = pid.parse().ok()?;
    let (level, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") {
        return None;
    }
    let mut fields = Vec::new();
    while let Some((key, value, after)) = field(rest) {
        fields.push((key.to_string(), value));
        rest = after;
    }
    Some(Record {
        time: time.to_string(),
        millis,
        process: process.to_string(),
        pid,
        level: level.to_string(),
        fields,
        message: rest.to_string(),
    })
}

/// One leading `key=value` token of `s` (the value quoted as
/// [`write_value`] quotes it), with what follows it.
pub fn field(s: &str) -> Option<(&str, String, &str)> {
    let eq = s.find('=')?;
    let key = &s[..eq];
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        return None;
    }
    let rest = &s[eq + 1..];
    let (value, after) = if let Some(quoted) = rest.strip_prefix('"') {
        let (value, used) = unquote(quoted)?;
        let after = &quoted[used..];
        (value, after.strip_prefix(':').unwrap_or(after))
    } else {
        let end = rest.find(' ').unwrap_or(rest.len());
        let token = &rest[..end];
        (
            token.strip_suffix(':').unwrap_or(token).to_string(),
            &rest[end..],
        )
    };
    // A field ends at a space or at the end of the line.
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((key, value, after.strip_prefix(' ').unwrap_or(after)))
}

/// Reads a Rust-escaped string up to its closing quote; returns it and the
/// number of bytes used, the closing quote included.
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '0' => out.push('\0'),
                'u' => {
                    let (open, _) = chars.next()?;
                    if &s[open..open + 1] != "{" {
                        return None;
                    }
                    let close = s[open..].find('}')? + open;
                    let code = u32::from_str_radix(&s[open + 1..close], 16).ok()?;
                    out.push(char::from_u32(code)?);
                    while chars.next().is_some_and(|(j, _)| j < close) {}
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// `2026-11-23T15:55:03.120Z` → milliseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'.' {
        return None;
    }
    if b[23] != b'Z' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let days = crate::runtime::time::days_from_civil(y, m as u32, d as u32);
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2026-11-23T15:55:03.120Z postern-smtpd[4242]: INFO sid=67A1C3F20B1E client_ip=127.0.0.1: server=\"Customer One\" cause=domain smtp connection forwarded from 127.0.0.1 to Customer One using domain";

    #[test]
    fn a_session_line() {
        let r = parse_line(LINE).expect("parses");
        assert_eq!(r.process, "postern-smtpd");
        assert_eq!(r.pid, 4242);
        assert_eq!(r.level, "INFO");
        assert_eq!(r.get("sid"), Some("67A1C3F20B1E"));
        assert_eq!(r.get("client_ip"), Some("127.0.0.1"));
        assert_eq!(r.get("server"), Some("Customer One"));
        assert_eq!(r.get("cause"), Some("domain"));
        assert_eq!(
            r.message,
            "smtp connection forwarded from 127.0.0.1 to Customer One using domain"
        );
        assert_eq!(r.millis, 1_795_449_303_120);
        assert_eq!(r.to_line(), LINE.replace("127.0.0.1: ", "127.0.0.1 "));
    }

    #[test]
    fn lines_without_fields_and_odd_values() {
        let r = parse_line("2026-11-23T15:55:03.120Z postern[1]: WARN listening on 127.0.0.1:25")
            .expect("parses");
        assert!(r.fields.is_empty());
        assert_eq!(r.message, "listening on 127.0.0.1:25");

        // An IPv6 span value ending with ':' is quoted; "::1" is not.
        let r =
            parse_line("2026-11-23T15:55:03.120Z postern-smtpd[7]: INFO sid=A client_ip=::1: x")
                .expect("parses");
        assert_eq!(r.get("client_ip"), Some("::1"));
        let r = parse_line(
            "2026-11-23T15:55:03.120Z postern-smtpd[7]: INFO sid=A client_ip=\"fe80::\": x",
        )
        .expect("parses");
        assert_eq!(r.get("client_ip"), Some("fe80::"));

        for v in [
            "",
            "a b",
            "say \"hi\"",
            "back\\slash",
            "x=y",
            "tab\there",
            "é\u{1}",
            "ends:",
        ] {
            let mut s = String::from("2026-11-23T15:55:03.120Z p[1]: INFO k=");
            write_value(&mut s, v);
            s.push_str(" the message");
            let r = parse_line(&s).expect("parses");
            assert_eq!(r.get("k"), Some(v), "{s}");
            assert_eq!(r.message, "the message", "{s}");
        }
    }

    #[test]
    fn not_ours() {
        assert_eq!(parse_line("hello world"), None);
        assert_eq!(parse_line("2026-11-23 15:55:03 postern[1]: INFO x"), None);
        assert_eq!(
            parse_line("2026-11-23T15:55:03.120Z postern[1]: NOTICE x"),
            None
        );
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            parse_time("2009-01-08T15:52:33.007Z"),
            Some(1_231_429_953_007)
        );
        assert_eq!(parse_time("2009-13-08T15:52:33.007Z"), None);
        assert_eq!(parse_time("2009-01-08T15:52:33Z"), None);
    }
}
