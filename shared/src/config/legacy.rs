//! The legacy XML configuration (`smtp-proxy.xml`, seed 000 §IV and §VIII.2),
//! read into the same [`Config`] as the TOML file (SPEC §3).
//!
//! [`parse`] takes the file's bytes and returns a `Config` *before*
//! [`Config::fill_defaults`] and [`Config::validate`]: [`Config::load`] runs
//! those two exactly as for TOML, and `postern convert` prints the result as
//! TOML without them (it converts, it does not validate).
//!
//! # The two forms
//!
//! 1. A whole file, root `<spamwars-servers>`, holding the proxy's parameters
//!    and any number of `<servers>` (or `<server>`) blocks, one per backend:
//!
//!    ```xml
//!    <?xml version="1.0" encoding="ISO-8859-1" standalone="yes" ?>
//!    <spamwars-servers>
//!      <port>25</port>
//!      <debug>false</debug>
//!      <user>admin</user>
//!      <password>secret</password>
//!      <servers>
//!        <name>Customer One</name>
//!        <host>localhost</host>
//!        <port>1025</port>
//!        <timeout>10000</timeout>
//!        <relay>193.56.147.87</relay>
//!        <domain>mydomain.com,mydomain.org</domain>
//!      </servers>
//!    </spamwars-servers>
//!    ```
//!
//! 2. A bare `<servers>` (or `<server>`) fragment, the embedded mode of seed
//!    §VIII.2: one backend, no root, every proxy parameter at its default.
//!
//! # Mapping
//!
//! | XML | TOML |
//! |---|---|
//! | root `<port>N</port>` (25 when absent) | `proxy.listen = ["0.0.0.0:N", "[::]:N"]` |
//! | `<debug>true</debug>` | `log.level = "debug"` (`false` or absent: `"info"`) |
//! | root `<user>`, `<password>` | `proxy.admin_user`, `proxy.admin_password` |
//! | `<update-email-address>` | `proxy.update_address` |
//! | each `<servers>` / `<server>` | one `[[server]]`, in file order, with `client_identity = "ipaddr"` |
//! | `<name>`, `<host>`, `<port>` | `name`, `host`, `port` |
//! | `<timeout>` in milliseconds (20000 when absent) | `timeout` (`10000` → `"10s"`) |
//! | `<relay>a, b</relay>` | `relay = ["a", "b"]` |
//! | `<domain>a,b</domain>` | `domains = ["a", "b"]` |
//! | server `<user>`, `<password>` | `user`, `password` |
//!
//! Every other key keeps its TOML default; in particular `proxy.hostname`
//! stays empty (the machine's host name once `fill_defaults` runs) and the
//! directories are `/run/postern`, `/var/lib/postern` and
//! `/var/spool/postern`: the legacy format cannot name them.
//!
//! # Reading rules
//!
//! - Encoding: a UTF-8 byte order mark means UTF-8. Otherwise the XML
//!   declaration's `encoding` decides: `ISO-8859-1` (or `latin1`) is decoded
//!   byte by byte, each byte being its code point; `UTF-8` or no declaration
//!   means UTF-8, and bytes that are not UTF-8 are an error (never a guess) that
//!   says to declare ISO-8859-1. Other encodings are refused.
//! - Values are trimmed; an empty value is an absent one. `relay` and `domain`
//!   are comma-separated lists: items are trimmed, empty items dropped, and a
//!   repeated `<relay>` or `<domain>` adds to the list. Any other element given
//!   twice in one block is an error, as is an attribute anywhere.
//! - Numbers and booleans are checked here (`port` 1–65535, `timeout` a number
//!   of milliseconds, `debug` true or false), since a `Config` cannot hold a
//!   wrong one. Missing required values (a server's `host`, `port`, `domain`)
//!   are left empty for [`Config::validate`], which reports them by key
//!   (`server[2].host: is required`) together with every other problem.
//! - Comments, processing instructions, CDATA and the five predefined
//!   entities plus character references (`&amp;`, `&#233;`) are understood.
//!
//! # Errors
//!
//! The first problem stops the reading: a [`LegacyError`], its line and column
//! (counted in characters, from 1) and an [`ErrorKind`]. Unknown elements are
//! named with their parent and the elements expected there, like TOML's unknown
//! keys; malformed XML is one line. A `LegacyError` converts into a
//! configuration [`Problem`] keyed `line L, column C`, as TOML syntax errors are.

use std::collections::HashMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::config::{ClientIdentity, Config, Duration, Parsed, Problem, Server};

/// Listening port when the root has no `<port>` (seed §IV.1).
pub const DEFAULT_PORT: u16 = 25;

/// A backend's `<timeout>` when absent, in milliseconds (seed §IV.2).
pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;

/// Elements of the root `<spamwars-servers>`.
const ROOT_ELEMENTS: &str = "port, debug, user, password, update-email-address, servers, server";

/// Elements of a `<servers>` block.
const SERVER_ELEMENTS: &str = "name, host, port, timeout, relay, user, password, domain";

/// Why a legacy file could not be read: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct LegacyError {
    /// Line of the problem, from 1.
    pub line: usize,
    /// Column of the problem in characters, from 1.
    pub column: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a legacy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The declaration names an encoding other than ISO-8859-1 or UTF-8.
    #[error("encoding {0:?} is not supported: write the file in ISO-8859-1 or UTF-8")]
    UnsupportedEncoding(String),
    /// Bytes that are not UTF-8 in a file not declared ISO-8859-1.
    #[error("not valid UTF-8; a Latin-1 file must start with <?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>")]
    NotUtf8,
    /// The XML itself is malformed (the parser's message).
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// An element opened and never closed.
    #[error("malformed XML: <{0}> is never closed")]
    Unclosed(String),
    /// An entity other than the five predefined ones.
    #[error("malformed XML: unknown entity &{0};")]
    UnknownEntity(String),
    /// Text or a second element after the root element.
    #[error("malformed XML: {0} outside the root element")]
    OutsideRoot(String),
    /// No element at all.
    #[error("no element: expected <spamwars-servers>, or <servers> alone")]
    Empty,
    /// A root other than `<spamwars-servers>`, `<servers>` or `<server>`.
    #[error("unknown root element <{0}>: expected <spamwars-servers>, or <servers> alone")]
    UnknownRoot(String),
    /// An element the legacy format does not have.
    #[error("unknown element <{name}> in <{parent}>, expected one of: {expected}")]
    UnknownElement {
        /// The element.
        name: String,
        /// Its parent.
        parent: String,
        /// The elements allowed there.
        expected: &'static str,
    },
    /// An attribute: the legacy format has none.
    #[error("unexpected attribute {attribute:?} on <{element}>: the legacy format has none")]
    Attribute {
        /// The element carrying it.
        element: String,
        /// The attribute's name.
        attribute: String,
    },
    /// Text inside an element that holds elements.
    #[error("unexpected text in <{0}>: it holds elements only")]
    Text(String),
    /// An element inside an element that holds a value.
    #[error("<{element}> holds a value, not the element <{child}>")]
    NotAValue {
        /// The value's element.
        element: String,
        /// The element found inside it.
        child: String,
    },
    /// An element given twice where it holds one value.
    #[error("<{element}> is given twice (first on line {first_line})")]
    Duplicate {
        /// The element.
        element: String,
        /// Line of its first occurrence.
        first_line: usize,
    },
    /// A value of the wrong form.
    #[error("<{element}>: {value:?} is not {expected}")]
    BadValue {
        /// The element.
        element: String,
        /// Its (trimmed) text.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl From<LegacyError> for Problem {
    fn from(e: LegacyError) -> Problem {
        Problem {
            key: format!("line {}, column {}", e.line, e.column),
            message: e.kind.to_string(),
        }
    }
}

/// Reads a legacy XML file's bytes into a [`Config`] (defaults not filled, not validated).
pub fn parse(bytes: &[u8]) -> Result<Config, LegacyError> {
    let text = decode(bytes)?;
    let lines = Lines::new(&text);
    let root = read_tree(&text, &lines)?;
    let mut config = Config::default();
    match root.name.as_str() {
        "spamwars-servers" => read_root(&root, &mut config)?,
        "servers" | "server" => {
            config.proxy.listen = listen(DEFAULT_PORT);
            config.servers.push(read_server(&root)?);
        }
        other => return Err(root.at.error(ErrorKind::UnknownRoot(other.into()))),
    }
    Ok(config)
}

/// The root `<spamwars-servers>`: the proxy's parameters and the backends.
fn read_root(root: &Element, config: &mut Config) -> Result<(), LegacyError> {
    root.no_text()?;
    let mut seen = Seen::default();
    let mut port = DEFAULT_PORT;
    for child in &root.children {
        match child.name.as_str() {
            "servers" | "server" => config.servers.push(read_server(child)?),
            "port" => {
                if let Some(v) = seen.value(child)? {
                    port = parse_port(child, v)?;
                }
            }
            "debug" => {
                if parse_bool(child, seen.value(child)?)? {
                    config.log.level = "debug".into();
                }
            }
            "user" => config.proxy.admin_user = seen.value(child)?,
            "password" => config.proxy.admin_password = seen.value(child)?,
            "update-email-address" => config.proxy.update_address = seen.value(child)?,
            _ => return Err(child.unknown(&root.name, ROOT_ELEMENTS)),
        }
    }
    config.proxy.listen = listen(port);
    Ok(())
}

/// One `<servers>` block.
fn read_server(block: &Element) -> Result<Server, LegacyError> {
    block.no_text()?;
    let mut s = Server {
        name: None,
        host: String::new(),
        port: 0,
        timeout: Duration(std::time::Duration::from_millis(DEFAULT_TIMEOUT_MS)),
        relay: Vec::new(),
        user: None,
        password: None,
        domains: Vec::new(),
        client_identity: ClientIdentity::Ipaddr,
        restart_command: None,
    };
    let mut seen = Seen::default();
    for child in &block.children {
        match child.name.as_str() {
            "name" => s.name = seen.value(child)?,
            "host" => s.host = seen.value(child)?.unwrap_or_default(),
            "port" => {
                if let Some(v) = seen.value(child)? {
                    s.port = parse_port(child, v)?;
                }
            }
            "timeout" => {
                if let Some(v) = seen.value(child)? {
                    let ms: u64 = v.parse().map_err(|_| {
                        child.at.error(ErrorKind::BadValue {
                            element: child.name.clone(),
                            value: v.clone(),
                            expected: "a number of milliseconds",
                        })
                    })?;
                    s.timeout = Duration(std::time::Duration::from_millis(ms));
                }
            }
            // Lists: a repeated element adds to the list.
            "relay" => {
                for r in list(child.value()?) {
                    let pattern = Parsed::new(&r).map_err(|_| {
                        child.at.error(ErrorKind::BadValue {
                            element: child.name.clone(),
                            value: r.clone(),
                            expected: "an address, a pattern such as \"172.16.*.*\" or a network",
                        })
                    })?;
                    s.relay.push(pattern);
                }
            }
            "domain" => s.domains.extend(list(child.value()?)),
            "user" => s.user = seen.value(child)?,
            "password" => s.password = seen.value(child)?,
            _ => return Err(child.unknown(&block.name, SERVER_ELEMENTS)),
        }
    }
    Ok(s)
}

/// The listen addresses the root `<port>` stands for: that port on every address.
fn listen(port: u16) -> Vec<String> {
    vec![format!("0.0.0.0:{port}"), format!("[::]:{port}")]
}

/// A comma-separated list: items trimmed, empty ones dropped.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(String::from)
        .collect()
}

fn parse_port(el: &Element, v: String) -> Result<u16, LegacyError> {
    match v.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(el.at.error(ErrorKind::BadValue {
            element: el.name.clone(),
            value: v,
            expected: "a port number between 1 and 65535",
        })),
    }
}

fn parse_bool(el: &Element, v: Option<String>) -> Result<bool, LegacyError> {
    match v {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(el.at.error(ErrorKind::BadValue {
            element: el.name.clone(),
            value: v,
            expected: "true or false",
        })),
    }
}

/// The elements of one block already given, to refuse a second one.
#[derive(Default)]
struct Seen(HashMap<String, usize>);

impl Seen {
    /// The value of `el`, an element that may appear once in its block.
    fn value(&mut self, el: &Element) -> Result<Option<String>, LegacyError> {
        if let Some(&first_line) = self.0.get(&el.name) {
            return Err(el.at.error(ErrorKind::Duplicate {
                element: el.name.clone(),
                first_line,
            }));
        }
        self.0.insert(el.name.clone(), el.at.line);
        el.value()
    }
}

/// Decodes the file to text (see "Reading rules" above).
fn decode(bytes: &[u8]) -> Result<String, LegacyError> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    let Some(encoding) = declared_encoding(bytes) else {
        return utf8(bytes);
    };
    match encoding.to_ascii_lowercase().as_str() {
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" => {
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        }
        "utf-8" | "utf8" | "us-ascii" | "ascii" => utf8(bytes),
        _ => Err(Pos { line: 1, column: 1 }.error(ErrorKind::UnsupportedEncoding(encoding))),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, LegacyError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            // The prefix up to the error is valid: locate the bad byte in it.
            let good = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let line = good.matches('\n').count() + 1;
            let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(Pos { line, column }.error(ErrorKind::NotUtf8))
        }
    }
}

/// The `encoding` of an XML declaration at the start of the file, if any.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    let rest = bytes[start..].strip_prefix(b"<?xml")?;
    let end = rest.windows(2).position(|w| w == b"?>")?;
    // The declaration is ASCII in every encoding postern reads.
    let decl = String::from_utf8_lossy(&rest[..end]);
    let after = &decl[decl.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &after[1..];
    Some(value[..value.find(quote)?].to_string())
}

/// A place in the decoded text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn error(self, kind: ErrorKind) -> LegacyError {
        LegacyError {
            line: self.line,
            column: self.column,
            kind,
        }
    }
}

/// Byte offsets of line starts, to turn the parser's offsets into lines and columns.
struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    fn pos(&self, offset: u64) -> Pos {
        let offset = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line.saturating_sub(1)];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Pos { line, column }
    }
}

/// One element of the file, with its text and children.
#[derive(Debug)]
struct Element {
    name: String,
    /// Where its start tag begins.
    at: Pos,
    /// Its text content, comments removed, entities resolved.
    text: String,
    /// Where its first non-blank text begins.
    text_at: Option<Pos>,
    children: Vec<Element>,
}

impl Element {
    /// The trimmed text of an element that holds a value; empty means absent.
    fn value(&self) -> Result<Option<String>, LegacyError> {
        if let Some(child) = self.children.first() {
            return Err(child.at.error(ErrorKind::NotAValue {
                element: self.name.clone(),
                child: child.name.clone(),
            }));
        }
        let v = self.text.trim();
        Ok((!v.is_empty()).then(|| v.to_string()))
    }

    /// Refuses text in an element that holds elements.
    fn no_text(&self) -> Result<(), LegacyError> {
        match self.text_at {
            Some(at) => Err(at.error(ErrorKind::Text(self.name.clone()))),
            None => Ok(()),
        }
    }

    fn unknown(&self, parent: &str, expected: &'static str) -> LegacyError {
        self.at.error(ErrorKind::UnknownElement {
            name: self.name.clone(),
            parent: parent.into(),
            expected,
        })
    }
}

/// Reads the document into its root element; every XML-level error stops here.
fn read_tree(text: &str, lines: &Lines) -> Result<Element, LegacyError> {
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let offset = reader.buffer_position();
        let at = lines.pos(offset);
        let event = reader.read_event().map_err(|e| {
            let message = e.to_string().replace(['\r', '\n'], " ");
            lines
                .pos(reader.error_position())
                .error(ErrorKind::Syntax(message))
        })?;
        let piece = match event {
            Event::Start(e) | Event::Empty(e) if open.is_empty() && root.is_some() => {
                let what = format!("a second element <{}>", e.name().as_ref());
                return Err(at.error(ErrorKind::OutsideRoot(what)));
            }
            Event::Start(e) => {
                open.push(element(&e, at)?);
                continue;
            }
            Event::Empty(e) => {
                let el = element(&e, at)?;
                attach(&mut open, &mut root, el);
                continue;
            }
            Event::End(_) => {
                // The reader has checked that the end tag matches the open one.
                if let Some(el) = open.pop() {
                    attach(&mut open, &mut root, el);
                }
                continue;
            }
            Event::Text(t) => t.xml10_content().into_owned(),
            Event::CData(c) => c.xml10_content().into_owned(),
            Event::GeneralRef(r) => match r.resolve_char_ref() {
                Ok(Some(c)) => c.to_string(),
                Ok(None) => match quick_xml::escape::resolve_predefined_entity(&r) {
                    Some(s) => s.to_string(),
                    None => return Err(at.error(ErrorKind::UnknownEntity(r.to_string()))),
                },
                Err(e) => return Err(at.error(ErrorKind::Syntax(e.to_string()))),
            },
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => continue,
            Event::Eof => {
                if let Some(el) = open.last() {
                    return Err(el.at.error(ErrorKind::Unclosed(el.name.clone())));
                }
                return root.ok_or_else(|| lines.pos(0).error(ErrorKind::Empty));
            }
        };
        let blank = piece.trim().is_empty();
        match open.last_mut() {
            Some(el) => {
                if el.text_at.is_none() && !blank {
                    // Count the blanks in the source, where line ends are not yet normalized.
                    let raw = text.get(offset as usize..).unwrap_or_default();
                    let lead = raw.len() - raw.trim_start().len();
                    el.text_at = Some(lines.pos(offset + lead as u64));
                }
                el.text.push_str(&piece);
            }
            None if blank => {}
            None => return Err(at.error(ErrorKind::OutsideRoot("text".into()))),
        }
    }
}

/// A new element from its start tag; attributes are refused.
fn element(e: &BytesStart, at: Pos) -> Result<Element, LegacyError> {
    let name = e.name().as_ref().to_string();
    if let Some(attr) = e.attributes().next() {
        let kind = match attr {
            Ok(a) => ErrorKind::Attribute {
                element: name,
                attribute: a.key.as_ref().to_string(),
            },
            Err(err) => ErrorKind::Syntax(err.to_string()),
        };
        return Err(at.error(kind));
    }
    Ok(Element {
        name,
        at,
        text: String::new(),
        text_at: None,
        children: Vec::new(),
    })
}

/// Adds a finished element to its parent, or makes it the root.
fn attach(open: &mut [Element], root: &mut Option<Element>, el: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of seed 000 §IV, as printed there.
    const SEED: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" standalone="yes" ?>
<spamwars-servers>
  <port>25</port>
  <debug>false</debug>
  <user>admin</user>
  <password>secret</password>
  <servers>
    <name>Customer One</name>
    <host>localhost</host>
    <port>1025</port>
    <timeout>10000</timeout>
    <relay>193.56.147.87</relay>
    <user>spamwars</user>
    <password>secret</password>
    <domain>mydomain.com,mydomain.org</domain>
  </servers>
  <servers>
    <name>Customer Two</name>
    <host>localhost</host>
    <port>2025</port>
    <timeout>10000</timeout>
    <domain>yourdomain.net</domain>
  </servers>
</spamwars-servers>
"#;

    /// What [`SEED`] means, written as TOML (keys at their defaults left out).
    const SEED_TOML: &str = r#"
[proxy]
listen = ["0.0.0.0:25", "[::]:25"]
admin_user = "admin"
admin_password = "secret"

[[server]]
name = "Customer One"
host = "localhost"
port = 1025
timeout = "10s"
relay = ["193.56.147.87"]
user = "spamwars"
password = "secret"
domains = ["mydomain.com", "mydomain.org"]
client_identity = "ipaddr"

[[server]]
name = "Customer Two"
host = "localhost"
port = 2025
timeout = "10s"
domains = ["yourdomain.net"]
client_identity = "ipaddr"
"#;

    /// The embedded-mode file of seed 000 §VIII.2.
    const FRAGMENT: &str = "<servers>
  <name>My SpamWars</name>
  <host>localhost</host>
  <port>1025</port>
  <domain>yourdomain.net</domain>
</servers>
";

    fn ok(xml: &str) -> Config {
        parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\nin:\n{xml}"))
    }

    fn err(xml: &[u8]) -> LegacyError {
        parse(xml).expect_err("must be refused")
    }

    /// A root holding one server whose body is `inner`.
    fn one_server(inner: &str) -> String {
        format!("<spamwars-servers>\n<servers>\n<host>h</host>\n<port>1</port>\n{inner}</servers>\n</spamwars-servers>\n")
    }

    #[test]
    fn the_seed_example_is_the_configuration_it_describes() {
        let c = ok(SEED);
        assert_eq!(c, Config::parse(SEED_TOML).expect("golden TOML parses"));
        assert_eq!(c.proxy.listen, ["0.0.0.0:25", "[::]:25"]);
        assert_eq!(c.proxy.admin_user.as_deref(), Some("admin"));
        assert_eq!(c.proxy.admin_password.as_deref(), Some("secret"));
        assert_eq!(c.proxy.update_address, None);
        assert_eq!(c.proxy.hostname, "", "left for fill_defaults");
        assert_eq!(c.log.level, "info");
        assert_eq!(c.servers.len(), 2);
        let one = &c.servers[0];
        assert_eq!(one.name.as_deref(), Some("Customer One"));
        assert_eq!((one.host.as_str(), one.port), ("localhost", 1025));
        assert_eq!(one.timeout, Duration::from_secs(10));
        assert_eq!(one.relay, ["193.56.147.87"]);
        assert_eq!(one.user.as_deref(), Some("spamwars"));
        assert_eq!(one.password.as_deref(), Some("secret"));
        assert_eq!(one.domains, ["mydomain.com", "mydomain.org"]);
        assert_eq!(one.client_identity, ClientIdentity::Ipaddr);
        let two = &c.servers[1];
        assert_eq!(two.display_name(), "Customer Two");
        assert_eq!(two.domains, ["yourdomain.net"]);
        assert!(two.relay.is_empty() && two.user.is_none());
    }

    #[test]
    fn the_shipped_example_is_the_seed_example() {
        let shipped = include_bytes!("../../../conf/smtp-proxy.xml");
        assert_eq!(parse(shipped), Ok(ok(SEED)));
        assert!(
            shipped.starts_with(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\""),
            "declared ISO-8859-1 as in the seed"
        );
    }

    #[test]
    fn converted_toml_reads_back_as_the_same_configuration() {
        for xml in [SEED, FRAGMENT] {
            let c = ok(xml);
            assert_eq!(Config::parse(&c.to_toml()), Ok(c));
        }
    }

    #[test]
    fn a_bare_servers_fragment_is_one_server_with_every_default() {
        let c = ok(FRAGMENT);
        let expected = Config::parse(
            r#"[[server]]
name = "My SpamWars"
host = "localhost"
port = 1025
domains = ["yourdomain.net"]
"#,
        )
        .expect("parses");
        assert_eq!(c, expected);
        assert_eq!(c.proxy.listen, ["0.0.0.0:25", "[::]:25"]);
        assert_eq!(c.proxy.admin_user, None);
        assert_eq!(c.servers[0].timeout, Duration::from_secs(20));
        let mut filled = c.clone();
        filled.fill_defaults();
        assert_eq!(filled.validate(), vec![], "the embedded example is valid");
        // <server> is accepted alone as well, as inside the root.
        assert_eq!(ok(&FRAGMENT.replace("servers>", "server>")), c);
    }

    #[test]
    fn latin1_bytes_are_decoded_when_declared() {
        let mut xml =
            b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<servers><name>Soci".to_vec();
        xml.push(0xE9);
        xml.extend_from_slice(b"t\xE9 G\xE9n\xE9rale</name><host>h</host><port>1</port><domain>a.test</domain></servers>");
        let c = parse(&xml).expect("Latin-1 parses");
        assert_eq!(c.servers[0].name.as_deref(), Some("Société Générale"));

        // The same text in UTF-8, declared or not, and with a byte order mark.
        let utf8 = "<servers><name>Société Générale</name><host>h</host><port>1</port><domain>a.test</domain></servers>";
        let declared = format!("<?xml version='1.0' encoding='UTF-8'?>{utf8}");
        let bom = format!("\u{feff}{utf8}");
        for text in [utf8, declared.as_str(), bom.as_str()] {
            assert_eq!(ok(text), c, "{text}");
        }
        // `latin1` is another name of the same encoding.
        let alias = [&b"<?xml version='1.0' encoding='latin1'?>"[..], &xml[43..]].concat();
        assert_eq!(parse(&alias), Ok(c));
    }

    #[test]
    fn undeclared_latin1_is_an_error_not_a_guess() {
        let e = err(b"<servers>\n  <name>Soci\xE9t\xE9</name>\n</servers>\n");
        assert_eq!(
            (e.line, e.column, e.kind.clone()),
            (2, 13, ErrorKind::NotUtf8)
        );
        assert!(e.to_string().contains("ISO-8859-1"), "{e}");
        let e = err(b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><servers/>");
        assert_eq!(e.kind, ErrorKind::UnsupportedEncoding("UTF-16".into()));
    }

    #[test]
    fn unknown_elements_are_named_with_their_line() {
        let e = err(b"<servers>\n  <host>h</host>\n  <colour>blue</colour>\n</servers>\n");
        assert_eq!((e.line, e.column), (3, 3));
        assert_eq!(
            e.kind,
            ErrorKind::UnknownElement {
                name: "colour".into(),
                parent: "servers".into(),
                expected: SERVER_ELEMENTS,
            }
        );
        assert_eq!(
            e.to_string(),
            "line 3, column 3: unknown element <colour> in <servers>, expected one of: \
             name, host, port, timeout, relay, user, password, domain"
        );
        let e = err(SEED
            .replace("<debug>", "<verbose>")
            .replace("</debug>", "</verbose>")
            .as_bytes());
        assert_eq!(e.line, 4);
        assert!(
            e.to_string()
                .contains("unknown element <verbose> in <spamwars-servers>"),
            "{e}"
        );
        let e = err(b"<proxy><port>25</port></proxy>");
        assert_eq!(e.kind, ErrorKind::UnknownRoot("proxy".into()));
        // `domains` is the TOML key, not an XML element.
        let e = err(one_server("<domains>a.test</domains>\n").as_bytes());
        assert_eq!(e.line, 5);
    }

    #[test]
    fn malformed_xml_is_one_line_with_its_place() {
        let e = err(b"<spamwars-servers>\n  <port>25</prot>\n</spamwars-servers>\n");
        assert_eq!(e.line, 2, "{e}");
        assert!(matches!(e.kind, ErrorKind::Syntax(_)), "{e:?}");
        let p = Problem::from(e);
        assert_eq!(p.key, "line 2, column 11");
        assert!(p.message.starts_with("malformed XML: "), "{}", p.message);
        assert!(!p.message.contains('\n'), "{}", p.message);

        let e = err(b"<spamwars-servers>\n  <servers>\n    <port>1</port>\n");
        assert_eq!((e.line, e.kind), (2, ErrorKind::Unclosed("servers".into())));
        let e = err(b"<servers><host>h</host></servers>\n<servers/>\n");
        assert_eq!(e.line, 2);
        assert!(matches!(e.kind, ErrorKind::OutsideRoot(_)), "{e:?}");
        let e = err(b"<servers/>\ntrailing words\n");
        assert_eq!(e.kind, ErrorKind::OutsideRoot("text".into()));
        let e = err(b"<servers><host>a &nbsp; b</host></servers>");
        assert_eq!(e.kind, ErrorKind::UnknownEntity("nbsp".into()));
        let e = err(b"<servers><host>h</host>");
        assert!(matches!(e.kind, ErrorKind::Unclosed(_)), "{e:?}");
        let e = err(b"<servers><host>h</host");
        assert!(matches!(e.kind, ErrorKind::Syntax(_)), "{e:?}");
        assert_eq!(err(b"  \n").kind, ErrorKind::Empty);
        assert_eq!(
            err(b"<?xml version=\"1.0\"?>\n<!-- nothing -->\n").kind,
            ErrorKind::Empty
        );
    }

    #[test]
    fn structure_errors() {
        let e = err(b"<servers id=\"1\"><host>h</host></servers>");
        assert_eq!(
            e.kind,
            ErrorKind::Attribute {
                element: "servers".into(),
                attribute: "id".into()
            }
        );
        let e = err(b"<servers>\n  stray\n  <host>h</host>\n</servers>");
        assert_eq!(
            (e.line, e.column, e.kind),
            (2, 3, ErrorKind::Text("servers".into()))
        );
        let e = err(b"<servers><host><name>x</name></host></servers>");
        assert_eq!(
            e.kind,
            ErrorKind::NotAValue {
                element: "host".into(),
                child: "name".into()
            }
        );
        let e = err(one_server("<name>a</name>\n<name>b</name>\n").as_bytes());
        assert_eq!(
            (e.line, e.kind),
            (
                6,
                ErrorKind::Duplicate {
                    element: "name".into(),
                    first_line: 5
                }
            )
        );
        let e = err(b"<spamwars-servers><port>25</port><port>26</port></spamwars-servers>");
        assert!(matches!(e.kind, ErrorKind::Duplicate { .. }), "{e:?}");
    }

    #[test]
    fn timeout_is_in_milliseconds_with_a_default_of_20000() {
        let timeout = |inner: &str| ok(&one_server(inner)).servers[0].timeout;
        assert_eq!(timeout(""), Duration::from_secs(20));
        assert_eq!(timeout("<timeout>10000</timeout>"), Duration::from_secs(10));
        assert_eq!(timeout("<timeout> 1500 </timeout>").0.as_millis(), 1500);
        assert_eq!(timeout("<timeout/>"), Duration::from_secs(20));
        let c = ok(&one_server("<timeout>1500</timeout>"));
        assert!(
            c.to_toml().contains("timeout = \"1500ms\""),
            "{}",
            c.to_toml()
        );
        let e = err(one_server("<timeout>10s</timeout>").as_bytes());
        assert_eq!(
            e.kind,
            ErrorKind::BadValue {
                element: "timeout".into(),
                value: "10s".into(),
                expected: "a number of milliseconds"
            }
        );
    }

    #[test]
    fn the_root_port_listens_on_every_address_and_defaults_to_25() {
        let listen = |xml: &str| ok(xml).proxy.listen;
        assert_eq!(
            listen("<spamwars-servers/>"),
            ["0.0.0.0:25", "[::]:25"],
            "default port"
        );
        assert_eq!(
            listen("<spamwars-servers><port> 2525 </port></spamwars-servers>"),
            ["0.0.0.0:2525", "[::]:2525"]
        );
        for bad in ["0", "65536", "smtp", "-1"] {
            let xml = format!("<spamwars-servers><port>{bad}</port></spamwars-servers>");
            assert!(
                matches!(err(xml.as_bytes()).kind, ErrorKind::BadValue { .. }),
                "{bad}"
            );
        }
        let e = err(one_server("")
            .replace("<port>1</port>", "<port>99999</port>")
            .as_bytes());
        assert_eq!(e.line, 4);
    }

    #[test]
    fn root_parameters_map_to_their_keys() {
        let c = ok("<spamwars-servers>
  <debug> TRUE </debug>
  <update-email-address> update@mx.example.net </update-email-address>
</spamwars-servers>");
        assert_eq!(c.log.level, "debug");
        assert_eq!(
            c.proxy.update_address.as_deref(),
            Some("update@mx.example.net")
        );
        assert!(c.servers.is_empty());
        assert_eq!(
            ok("<spamwars-servers><debug>false</debug></spamwars-servers>")
                .log
                .level,
            "info"
        );
        let e = err(b"<spamwars-servers><debug>yes</debug></spamwars-servers>");
        assert!(
            e.to_string().contains("\"yes\" is not true or false"),
            "{e}"
        );
    }

    #[test]
    fn values_are_trimmed_and_lists_split_on_commas() {
        let c = ok(&one_server(
            "<name>\n   Customer One\n</name>
<relay> 10.0.0.1 ,, 172.16.*.* ,</relay>
<relay>10.1.0.0/16</relay>
<domain> a.test , b.test </domain>
<domain>c.test</domain>
<user></user>
",
        ));
        let s = &c.servers[0];
        assert_eq!(s.name.as_deref(), Some("Customer One"));
        assert_eq!(s.relay, ["10.0.0.1", "172.16.*.*", "10.1.0.0/16"]);
        assert_eq!(s.domains, ["a.test", "b.test", "c.test"]);
        assert_eq!(s.user, None, "an empty value is an absent one");
    }

    #[test]
    fn a_relay_that_is_no_address_is_refused_with_its_line() {
        let e = err(one_server("<relay>10.0.0.1, 10.*.*</relay>\n").as_bytes());
        assert_eq!(
            e.kind.to_string(),
            "<relay>: \"10.*.*\" is not an address, a pattern such as \"172.16.*.*\" or a network"
        );
    }

    #[test]
    fn entities_cdata_and_comments_are_understood() {
        let c = ok(&one_server(
            "<password>a&amp;b&lt;&#233;&#x41;</password>\n<user><![CDATA[x<y]]></user>\n<name>Cust<!-- old name -->omer</name>\n",
        ));
        let s = &c.servers[0];
        assert_eq!(s.password.as_deref(), Some("a&b<éA"));
        assert_eq!(s.user.as_deref(), Some("x<y"));
        assert_eq!(s.name.as_deref(), Some("Customer"));
    }

    #[test]
    fn missing_required_values_are_left_to_validate() {
        let mut c = ok("<servers><name>n</name></servers>");
        c.fill_defaults();
        let keys: Vec<String> = c.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["server[1].host", "server[1].port", "server[1].domains"]
        );
    }
}
