//! Postfix's SMTPD access policy delegation (its SMTPD_POLICY_README), which
//! the router's policy server speaks: the reading of a request, without the
//! I/O, so that it can be fuzzed (`fuzz/fuzz_targets/policy_request.rs`).
//!
//! A request is `name=value` lines up to an empty line, starting with
//! `request=smtpd_access_policy`, each line ending in LF (or CRLF).
//! Malformed (the connection is closed, without an answer): a line without
//! `=`, a NUL byte, a CR inside a line, a line that is not UTF-8, more than
//! [`MAX_ATTRIBUTES`] attributes, an empty request. The
//! caller bounds lines to [`MAX_LINE`] bytes.

use crate::ipc::policy::Query;

/// The attribute that names a Postfix policy request.
pub const REQUEST: &str = super::REQUEST;
/// The only request of the policy delegation protocol.
pub const POLICY: &str = "smtpd_access_policy";
/// Longest attribute line accepted (Postfix's longest, certificate
/// subjects, stay well below).
pub const MAX_LINE: usize = 4096;
/// Most attributes in one request (Postfix 3.12 sends about 40).
pub const MAX_ATTRIBUTES: usize = 200;

/// One request's attributes, in order.
pub type Attributes = Vec<(String, String)>;

/// Reads requests line by line.
#[derive(Debug, Default)]
pub struct RequestReader {
    attrs: Attributes,
}

impl RequestReader {
    /// A reader between requests.
    pub fn new() -> RequestReader {
        RequestReader::default()
    }

    /// True between requests: an end of the connection here is clean.
    pub fn between_requests(&self) -> bool {
        self.attrs.is_empty()
    }

    /// Takes one line, its LF removed (a CR before it is dropped here):
    /// `Ok(Some(attributes))` when it ends a request, `Ok(None)` when more
    /// is needed, `Err(why)` when the request is malformed.
    pub fn line(&mut self, line: &[u8]) -> Result<Option<Attributes>, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.attrs.is_empty() {
                return Err("an empty request".into());
            }
            return Ok(Some(std::mem::take(&mut self.attrs)));
        }
        if line.contains(&0) {
            return Err("a NUL byte".into());
        }
        // Postfix sends printable values; a CR would reach the log and the
        // greylist store (and cannot cross postern's IPC).
        if line.contains(&b'\r') {
            return Err("a CR inside a line".into());
        }
        let text = std::str::from_utf8(line).map_err(|_| "a line that is not UTF-8".to_string())?;
        let Some((name, value)) = text.split_once('=') else {
            return Err(format!("a line without '=': {:?}", truncate(text)));
        };
        if self.attrs.len() == MAX_ATTRIBUTES {
            return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
        }
        self.attrs.push((name.to_string(), value.to_string()));
        Ok(None)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The query a request asks, or `None` when nothing is to be judged (not
/// the RCPT state, or no recipient). `Err`: a malformed request (not a
/// policy request, no valid `client_address`). The session is Postfix's
/// queue id, else its instance; `client_name` `unknown` is no name.
pub fn query_of(attrs: &[(String, String)]) -> Result<Option<Query>, String> {
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get(REQUEST) != Some(POLICY) {
        return Err(format!(
            "request={:?}, not smtpd_access_policy",
            truncate(get(REQUEST).unwrap_or(""))
        ));
    }
    let client = get("client_address")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| "no valid client_address".to_string())?;
    let recipient = get("recipient").unwrap_or("");
    if !get("protocol_state")
        .unwrap_or("")
        .eq_ignore_ascii_case("RCPT")
        || recipient.is_empty()
    {
        return Ok(None);
    }
    let sid = match (get("queue_id").filter(|q| !q.is_empty()), get("instance")) {
        (Some(q), _) => format!("postfix-{q}"),
        (None, Some(i)) => format!("postfix-{i}"),
        (None, None) => "postfix".into(),
    };
    Ok(Some(Query {
        sid,
        client,
        client_name: get("client_name")
            .filter(|n| !n.is_empty() && *n != "unknown")
            .map(str::to_string),
        helo: get("helo_name").map(str::to_string),
        sender: get("sender").unwrap_or("").to_string(),
        recipient: recipient.to_string(),
        improper_pipelining: false,
        dry: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz target: a CR inside a value reached the query
    /// (the log, the greylist store) and could not cross the IPC.
    #[test]
    fn a_cr_inside_a_line_is_malformed_but_crlf_ends_lines() {
        let mut r = RequestReader::new();
        assert_eq!(r.line(b"request=smtpd_access_policy\r"), Ok(None));
        assert_eq!(
            r.line(b"recipient=postmaster@one.te\rsqt"),
            Err("a CR inside a line".to_string())
        );
        let mut r = RequestReader::new();
        for l in [
            &b"request=smtpd_access_policy\r"[..],
            b"protocol_state=RCPT",
            b"client_address=192.0.2.9\r",
            b"recipient=u@one.test",
        ] {
            assert_eq!(r.line(l), Ok(None));
        }
        let attrs = r.line(b"\r").expect("read").expect("a request");
        assert!(r.between_requests());
        let q = query_of(&attrs)
            .expect("well formed")
            .expect("a RCPT question");
        assert_eq!(
            (q.recipient.as_str(), q.sid.as_str()),
            ("u@one.test", "postfix")
        );
    }
}
