//! Every problem of a TOML file at once, in an administrator's words.
//!
//! serde stops at the first value it cannot take, and says so in its own
//! terms (`invalid value: integer 70000, expected u16`). [`parse`] goes on:
//! it finds the key the error points at (by its span, in the parsed
//! document), says what that key must be (`server[1].port: must be between
//! 1 and 65535, not 70000 (line 12)`), then takes the key out of a copy of
//! the text — or, for a key that has no default, puts a placeholder value
//! in its place, which `validate()` would refuse under the same key — and
//! parses again. The copy keeps every line where it was, so later problems
//! keep their line numbers. At most [`MAX_ROUNDS`] problems are gathered
//! this way.
//!
//! It stops at a syntax error (nothing after it can be trusted), at a
//! missing key (nothing can be put in its place without moving lines), and
//! at anything it cannot place; what it found until then is reported.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::{Config, Problem};

/// Most problems gathered from one file before giving up.
const MAX_ROUNDS: usize = 64;

/// What a file gave: the configuration once every bad key was taken out
/// (`None` when parsing could not go on), and the problems found on the way.
pub struct Parsed {
    /// The configuration without its bad keys, for `validate()` and the
    /// start-up checks; `None` after a syntax error or a missing key.
    pub config: Option<Config>,
    /// Every problem found, in file order of discovery.
    pub problems: Vec<Problem>,
}

/// Parses `text`, gathering every type problem (see the module header),
/// listed in the order of their lines.
pub fn parse(text: &str) -> Parsed {
    let mut patched = text.to_string();
    // (line, problem): sorted by line at the end, as a reader goes through the file.
    let mut found: Vec<(usize, Problem)> = Vec::new();
    let mut config = None;
    let mut last: Option<(usize, String)> = None;
    for _ in 0..MAX_ROUNDS {
        let err = match toml::from_str::<Config>(&patched) {
            Ok(c) => {
                config = Some(c);
                break;
            }
            Err(e) => e,
        };
        let message = err.message().trim().replace('\n', " ");
        let Some(at) = err.span().map(|s| s.start.min(patched.len())) else {
            found.push((
                0,
                Problem {
                    key: String::new(),
                    message,
                },
            ));
            break;
        };
        // The patched copy has every line where the file has it.
        let line = line_of(&patched, at);
        if last.as_ref() == Some(&(at, message.clone())) {
            // The patch did not take the problem away: it is said once.
            break;
        }
        last = Some((at, message.clone()));
        let Ok(doc) = DeTable::parse(&patched) else {
            // A syntax error: as toml says it, with its place.
            found.push((
                line,
                Problem {
                    key: place(&patched, at),
                    message,
                },
            ));
            break;
        };
        if let Some(field) = between(&message, "missing field `", "`") {
            let key = match locate_table(doc.get_ref(), at, "") {
                Some(table) => format!("{table}.{field}"),
                None => field.to_string(),
            };
            let message = format!("is required (the table at line {line})");
            found.push((line, Problem { key, message }));
            break;
        }
        let Some(bad) = locate(doc.get_ref(), at, "", &message) else {
            found.push((
                line,
                Problem {
                    key: place(&patched, at),
                    message,
                },
            ));
            break;
        };
        let problem = if message.starts_with("unknown field") {
            // Kept in toml's words, with its place: they name the key.
            Problem {
                key: place(&patched, at),
                message,
            }
        } else {
            Problem {
                message: format!("{} (line {line})", human(&bad.path, &message)),
                key: bad.path.clone(),
            }
        };
        found.push((line, problem));
        // A key without a default keeps a placeholder value, which
        // validate() refuses under the same key; any other goes.
        let (range, with) = match placeholder(&bad.owner) {
            Some(p) => (bad.value, p),
            None => (bad.item, ""),
        };
        let newlines = patched[range.clone()].matches('\n').count();
        patched.replace_range(range, &format!("{with}{}", "\n".repeat(newlines)));
        if DeTable::parse(&patched).is_err() {
            // The patch broke the syntax (a dotted key, an inline table):
            // stop rather than report a problem the file does not have.
            break;
        }
    }
    found.sort_by_key(|(line, _)| *line);
    Parsed {
        config,
        problems: found.into_iter().map(|(_, p)| p).collect(),
    }
}

/// A key found at an error's position.
struct Found {
    /// The key as `validate()` names it: `server[1].port`, `proxy.listen[0]`.
    path: String,
    /// The key that owns the value (`proxy.listen` for `proxy.listen[0]`).
    owner: String,
    /// `key = value`, the whole item, to take out.
    item: Range<usize>,
    /// The value alone, to replace.
    value: Range<usize>,
}

/// The deepest key whose name or value holds position `at`. An error about
/// a list element that is placed on the whole list (a value parsed from a
/// string, `config/parsed.rs`) names the element whose text `message`
/// begins with, quoted.
fn locate(table: &DeTable<'_>, at: usize, prefix: &str, message: &str) -> Option<Found> {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        match v.get_ref() {
            DeValue::Table(t) => {
                if let Some(f) = locate(t, at, &path, message) {
                    return Some(f);
                }
            }
            DeValue::Array(a) => {
                for (i, el) in a.iter().enumerate() {
                    if let DeValue::Table(t) = el.get_ref() {
                        if let Some(f) = locate(t, at, &format!("{path}[{}]", i + 1), message) {
                            return Some(f);
                        }
                    }
                }
            }
            _ => {}
        }
        let (ks, vs) = (k.span(), v.span());
        if !(ks.contains(&at) || vs.contains(&at)) || matches!(v.get_ref(), DeValue::Table(_)) {
            continue;
        }
        let mut named = path.clone();
        if let DeValue::Array(a) = v.get_ref() {
            let quoted = |e: &toml::Spanned<DeValue<'_>>| {
                e.get_ref()
                    .as_str()
                    .is_some_and(|s| message.starts_with(&format!("{s:?}")))
            };
            let at_element = a.iter().position(|e| e.span().contains(&at));
            if let Some(i) = at_element.or_else(|| a.iter().position(quoted)) {
                if matches!(a[i].get_ref(), DeValue::Table(_)) {
                    continue;
                }
                named = format!("{path}[{i}]");
            }
        }
        return Some(Found {
            path: named,
            owner: path,
            item: ks.start.min(vs.start)..vs.end.max(ks.end),
            value: vs,
        });
    }
    None
}

/// The deepest table (`server[2]`, `proxy`) whose header holds position
/// `at` (where toml places a missing key), or `None` for the top level.
fn locate_table(table: &DeTable<'_>, at: usize, prefix: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        match v.get_ref() {
            DeValue::Table(t) if v.span().contains(&at) || k.span().contains(&at) => {
                return Some(locate_table(t, at, &path).unwrap_or(path));
            }
            DeValue::Array(a) => {
                for (i, el) in a.iter().enumerate() {
                    if let DeValue::Table(t) = el.get_ref() {
                        if el.span().contains(&at) {
                            let p = format!("{path}[{}]", i + 1);
                            return Some(locate_table(t, at, &p).unwrap_or(p));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    None
}

/// The value put in place of a bad one when its key has no default: one
/// that parses and that `validate()` refuses under the same key (which
/// [`Config::load`] then leaves out, the problem being reported already).
fn placeholder(owner: &str) -> Option<&'static str> {
    let field = owner.rsplit('.').next().unwrap_or(owner);
    let in_server = owner.starts_with("server[");
    match field {
        "host" if in_server => Some("\"\""),
        "port" if in_server => Some("0"),
        "domains" if in_server => Some("[]"),
        "address" if owner.starts_with("alias[") => Some("\"\""),
        "to" if owner.starts_with("alias[") => Some("[]"),
        "cert" | "key" if owner.starts_with("tls.") => Some("\"\""),
        _ => None,
    }
}

/// What the key must be, from serde's message about it.
fn human(path: &str, message: &str) -> String {
    let found = found_value(message);
    let not = |what: &str| match &found {
        Some(f) => format!("{what}, not {f}"),
        None => what.to_string(),
    };
    let field = path
        .rsplit('.')
        .next()
        .unwrap_or(path)
        .split('[')
        .next()
        .unwrap_or(path);
    if let Some(expected) = message
        .rsplit(", expected ")
        .next()
        .filter(|_| message.starts_with("invalid type:") || message.starts_with("invalid value:"))
    {
        return match expected {
            "u16" if field == "port" => not("must be between 1 and 65535"),
            "u8" => not("must be a whole number from 0 to 255"),
            "u16" => not("must be a whole number from 0 to 65535"),
            "u32" => not("must be a whole number from 0 to 4294967295"),
            "u64" => not("must be a whole number, 0 or more"),
            "a boolean" => not("must be true or false"),
            "a string" if is_duration(field) => {
                not("must be a duration in quotes, such as \"10s\"")
            }
            "a string" => not("must be a string in quotes"),
            "a sequence" => not("must be a list, such as [\"…\"]"),
            e if e.starts_with("struct ") || e == "a map" => not("must be a table"),
            other => not(&format!("must be {other}")),
        };
    }
    if let Some(variant) = between(message, "unknown variant `", "`") {
        let choices = message
            .split_once("expected one of ")
            .map(|(_, c)| c.replace('`', ""))
            .unwrap_or_default();
        return format!("{variant:?} is not one of {choices}");
    }
    if message.contains("did not match any variant of untagged enum") {
        return not("must be a size such as \"50MB\", or a number of bytes");
    }
    message.to_string()
}

/// True for the keys whose values are durations (`"10s"`).
fn is_duration(field: &str) -> bool {
    field.ends_with("timeout")
        || ["retry_min", "retry_max", "max_age", "restart_interval"].contains(&field)
}

/// The offending value in serde's `invalid type: string "x", expected …`
/// (`"x"`) or `invalid value: integer `70000`, expected …` (`70000`).
fn found_value(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let what = rest.rsplit_once(", expected ")?.0;
    if let Some(v) = between(what, "`", "`") {
        return Some(v.to_string());
    }
    if let Some(s) = what.strip_prefix("string ") {
        return Some(s.to_string());
    }
    Some(match what {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        other => other.to_string(),
    })
}

/// The text between `open` and the next `close` in `s`.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// 1-based line of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// `line L, column C` of byte `at`, as syntax errors are placed.
pub(super) fn place(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {col}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        parse(text).problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn type_errors_name_the_key_and_the_line_in_plain_words() {
        let text = "[proxy]\nmax_recipients = \"many\"\nreuse_connections = \"yes\"\nlisten = \"0.0.0.0:25\"\n\n[[server]]\nhost = \"h\"\nport = 70000\ndomains = [\"a.test\"]\n\n[[server]]\nhost = \"h\"\nport = \"25\"\ndomains = \"b.test\"\nclient_identity = \"smtp\"\n";
        assert_eq!(
            lines(text),
            [
                "proxy.max_recipients: must be a whole number from 0 to 4294967295, not \"many\" (line 2)",
                "proxy.reuse_connections: must be true or false, not \"yes\" (line 3)",
                "proxy.listen: must be a list, such as [\"…\"], not \"0.0.0.0:25\" (line 4)",
                "server[1].port: must be between 1 and 65535, not 70000 (line 8)",
                "server[2].port: must be between 1 and 65535, not \"25\" (line 13)",
                "server[2].domains: must be a list, such as [\"…\"], not \"b.test\" (line 14)",
                "server[2].client_identity: \"smtp\" is not one of ipaddr, xclient, proxy-v1, proxy-v2, none (line 15)",
            ]
        );
        let parsed = parse(text);
        let config = parsed.config.expect("parses once the bad keys are out");
        assert_eq!(config.servers.len(), 2);
        assert_eq!(
            config.servers[1].port, 0,
            "placeholder, refused by validate"
        );
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_all_listed() {
        assert_eq!(
            lines("[proxy]\ncolour = \"blue\"\ncommand_timeout = \"10\"\n[process]\nsmtpd = 2\n"),
            [
                "line 2, column 1: unknown field `colour`, expected one of `listen`, `hostname`, `banner`, `admin_user`, `admin_password`, `admin_networks`, `update_address`, `max_message_size`, `max_recipients`, `max_connections`, `max_connections_per_ip`, `command_timeout`, `data_timeout`, `auth_requires_tls`, `prepared_connections`, `reuse_connections`",
                "proxy.command_timeout: invalid duration \"10\": the unit must be ms, s, m, h, d or w (line 3)",
                "line 5, column 1: unknown field `smtpd`, expected one of `user`, `smtpd_processes`, `chroot`, `run_dir`, `state_dir`, `spool_dir`, `daemon_dir`, `stop_timeout`",
            ]
        );
    }

    #[test]
    fn a_duration_without_quotes_is_named_a_duration() {
        assert_eq!(
            lines("[proxy]\ncommand_timeout = 300\n[update]\nmax_age = 5\n"),
            [
                "proxy.command_timeout: must be a duration in quotes, such as \"10s\", not 300 (line 2)",
                "update.max_age: must be a duration in quotes, such as \"10s\", not 5 (line 4)",
            ]
        );
    }

    #[test]
    fn addresses_and_networks_are_parsed_with_the_file_and_named_by_element() {
        let text = "[proxy]\nadmin_networks = [\"127.0.0.0/8\", \"ten\"]\n\n[policy]\nresolvers = [\"dns\"]\nskip_networks = [\"::1/128\", \"x/8\"]\ndnsbl = [\"zen.spamhaus.org\", \"zen\"]\nrestrictions = [\"reject_non_fqdn_sender\", \"reject_unauth_pipelining\", \"reject_rbl_client\"]\n\n[policy_server]\nlisten = [\"unix:policy.sock\"]\n\n[metrics]\nlisten = \"localhost:9125\"\n\n[[server]]\nhost = \"h\"\nport = 25\ndomains = [\"a.test\"]\nrelay = [\"10.0.0.1\", \"10.*.*\"]\n";
        assert_eq!(
            lines(text),
            [
                "proxy.admin_networks[1]: \"ten\" is not an address or network such as \"127.0.0.0/8\" (line 2)",
                "policy.resolvers[0]: \"dns\" is not an address such as \"127.0.0.1\" or \"127.0.0.1:53\" (line 5)",
                "policy.skip_networks[1]: \"x/8\" is not an address or network such as \"127.0.0.0/8\" (line 6)",
                "policy.dnsbl[1]: \"zen\": \"zen\" is not a zone name such as zen.spamhaus.org (line 7)",
                "policy.restrictions[2]: \"reject_rbl_client\" is not one of reject_invalid_helo_hostname, reject_non_fqdn_sender, reject_non_fqdn_recipient, reject_unknown_sender_domain, reject_unknown_recipient_domain, reject_unauth_pipelining (line 8)",
                "policy_server.listen[0]: \"unix:policy.sock\" is not an address:port such as \"127.0.0.1:10023\" nor \"unix:/run/postern/policy.sock\" (line 11)",
                "metrics.listen: \"localhost:9125\" is not an address:port such as \"127.0.0.1:9125\" (line 14)",
                "server[1].relay[1]: \"10.*.*\" is not an address, a pattern such as \"172.16.*.*\" or a network (line 20)",
            ]
        );
        let config = parse(text)
            .config
            .expect("parses once the bad keys are out");
        assert!(config.servers[0].relay.is_empty());
    }

    #[test]
    fn an_alias_of_the_wrong_type_is_named_and_left_to_validation() {
        let text = "[[alias]]\naddress = \"a@one.test\"\nto = \"b@one.test\"\n\n[[alias]]\naddress = 7\nto = [\"c@one.test\"]\n";
        let got = lines(text);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0].starts_with("alias[1].to: must be a list") && got[0].ends_with("(line 3)"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("alias[2].address: must be a string")
                && got[1].ends_with("(line 6)"),
            "{got:?}"
        );
        let config = parse(text).config.expect("parses with placeholders");
        assert_eq!(config.aliases.len(), 2);
    }

    #[test]
    fn a_missing_key_or_a_syntax_error_ends_the_list() {
        assert_eq!(
            lines("[proxy]\nbanner = 3\n[[server]]\nport = 25\ndomains = [\"a.test\"]\n"),
            [
                "proxy.banner: must be a string in quotes, not 3 (line 2)",
                "server[1].host: is required (the table at line 3)",
            ]
        );
        let syntax = parse("[proxy]\nbanner = 3\nlisten = [\n");
        assert!(syntax.config.is_none());
        assert_eq!(syntax.problems.len(), 1, "{:?}", syntax.problems);
        assert!(syntax.problems[0].key.starts_with("line "));
    }
}
