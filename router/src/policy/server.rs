//! The Postfix SMTPD access policy delegation server (SPEC §8), so that an
//! existing Postfix applies postern's access lists, restrictions and
//! blocklists with `check_policy_service inet:127.0.0.1:10023` (or
//! `unix:…`) in its `smtpd_recipient_restrictions`.
//!
//! The protocol (Postfix's SMTPD_POLICY_README): `name=value` lines up to an
//! empty line, starting with `request=smtpd_access_policy`; one
//! `action=…` line and an empty line back; several requests per
//! connection. Unknown attributes are ignored. The verdict is the one an
//! SMTP client of postern would get for the same recipient:
//! - nothing against it: `action=DUNNO`;
//! - an accept entry: `action=OK` (place `check_policy_service` after
//!   `reject_unauth_destination`: OK ends Postfix's restriction list);
//! - a refusal for good: `action=REJECT <enhanced code> <text>`, which
//!   Postfix answers with its `access_map_reject_code` and this text;
//! - a temporary one: `action=DEFER_IF_PERMIT <enhanced code> <text>`, so
//!   that a later REJECT of Postfix's own still wins.
//!
//! Only the `RCPT` state is judged (the verdicts are per recipient); any
//! other state gets `DUNNO`. The client's verified name is Postfix's
//! `client_name` (`unknown` when it has none).
//!
//! A malformed request (no `=`, a NUL byte, a line over [`MAX_LINE`] bytes,
//! more than [`postfix::MAX_ATTRIBUTES`] attributes, another `request=`, no
//! `client_address`) gets no answer: a warning is logged and the connection
//! closed, as the protocol asks. A connection idle for [`IDLE`], or a
//! request not finished within it, is closed too: memory and time per
//! client stay bounded.

use std::sync::Arc;
use std::time::Duration;

use postern_shared::ipc::policy::{Query, Verdict};
use postern_shared::ipc::postfix;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::Shared;

use postfix::MAX_LINE;
/// How long a connection may stay silent, or take over one request.
pub const IDLE: Duration = Duration::from_secs(300);

/// Why a request was not read.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// The peer closed the connection, or went silent for too long.
    Gone,
    /// Not the protocol: why.
    Malformed(String),
}

/// Reads one request: `Ok(None)` at a clean end of the connection.
async fn read_request<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<Option<postfix::Attributes>, Bad> {
    let mut reader = postfix::RequestReader::new();
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        // At most one byte past the limit is read: enough to know.
        let mut limited = (&mut *r).take(MAX_LINE as u64 + 1);
        let n = limited
            .read_until(b'\n', &mut line)
            .await
            .map_err(|_| Bad::Gone)?;
        if n == 0 {
            return if reader.between_requests() {
                Ok(None)
            } else {
                Err(Bad::Gone)
            };
        }
        if line.last() != Some(&b'\n') {
            return Err(if line.len() > MAX_LINE {
                Bad::Malformed(format!("a line longer than {MAX_LINE} bytes"))
            } else {
                Bad::Gone
            });
        }
        line.pop();
        if let Some(attrs) = reader.line(&line).map_err(Bad::Malformed)? {
            return Ok(Some(attrs));
        }
    }
}

/// [`postfix::query_of`], its refusal a malformed request.
fn query_of(attrs: &[(String, String)]) -> Result<Option<Query>, Bad> {
    postfix::query_of(attrs).map_err(Bad::Malformed)
}

/// The action line for a verdict.
fn action(v: &Verdict) -> String {
    match v {
        Verdict::Dunno => "action=DUNNO".into(),
        Verdict::Accept { .. } => "action=OK".into(),
        Verdict::Refuse(r) if r.code >= 500 => format!("action=REJECT {} {}", r.enhanced, r.text),
        Verdict::Refuse(r) => format!("action=DEFER_IF_PERMIT {} {}", r.enhanced, r.text),
    }
}

/// Accepts policy clients on an inherited listener (TCP or Unix).
pub async fn serve_tcp(listener: tokio::net::TcpListener, state: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, state.clone()));
            }
            Err(e) => {
                tracing::warn!("accept on the policy server: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// As [`serve_tcp`], on a Unix socket.
pub async fn serve_unix(listener: tokio::net::UnixListener, state: Shared) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, state.clone()));
            }
            Err(e) => {
                tracing::warn!("accept on the policy server: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One policy client: requests answered in turn until it closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(stream: S, state: Shared) {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    loop {
        let attrs = match tokio::time::timeout(IDLE, read_request(&mut r)).await {
            Ok(Ok(Some(a))) => a,
            Ok(Ok(None)) | Ok(Err(Bad::Gone)) | Err(_) => return,
            Ok(Err(Bad::Malformed(why))) => {
                tracing::warn!("policy server: malformed request ({why}): connection closed");
                return;
            }
        };
        let verdict = match query_of(&attrs) {
            Ok(Some(q)) => {
                let v = state.policy.decide(&q).await;
                count(&state, &v);
                v
            }
            Ok(None) => Verdict::Dunno,
            Err(Bad::Malformed(why)) => {
                tracing::warn!("policy server: malformed request ({why}): connection closed");
                return;
            }
            Err(Bad::Gone) => return,
        };
        let reply = format!("{}\n\n", action(&verdict).replace(['\r', '\n', '\0'], " "));
        postern_shared::runtime::logging::flush();
        if w.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A refusal counts in the statistics as it would for postern's own clients.
fn count(state: &Arc<crate::State>, v: &Verdict) {
    if let Verdict::Refuse(r) = v {
        let counter = r.kind.counter();
        state.stats.count_one(counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Vec<(String, String)>>, Bad> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_request(&mut BufReader::new(bytes)))
    }

    const REQUEST: &[u8] = b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.9\nclient_name=unknown\nhelo_name=mx.example.org\nsender=a@example.org\nrecipient=u@one.test\ninstance=7b.5f3a.1\nfuture_attribute=ignored\n\n";

    #[test]
    fn a_request_is_read_and_asked() {
        let attrs = read(REQUEST).expect("read").expect("a request");
        let q = query_of(&attrs)
            .expect("well formed")
            .expect("a RCPT question");
        assert_eq!(q.client.to_string(), "192.0.2.9");
        assert_eq!(q.client_name, None, "unknown is no name");
        assert_eq!(
            (q.sender.as_str(), q.recipient.as_str()),
            ("a@example.org", "u@one.test")
        );
        assert_eq!(q.sid, "postfix-7b.5f3a.1");
        let data =
            String::from_utf8_lossy(REQUEST).replace("protocol_state=RCPT", "protocol_state=DATA");
        let attrs = read(data.as_bytes()).expect("read").expect("a request");
        assert_eq!(query_of(&attrs), Ok(None), "only RCPT is judged");
        assert_eq!(read(b""), Ok(None), "a clean end");
    }

    #[test]
    fn malformed_requests_are_refused_with_a_reason() {
        let long = format!(
            "request=smtpd_access_policy\nsender={}\n\n",
            "a".repeat(MAX_LINE)
        );
        let many = format!("request=smtpd_access_policy\n{}\n", "x=1\n".repeat(10_000));
        for (input, says) in [
            (b"garbage\n\n".to_vec(), "without '='"),
            (
                b"request=smtpd_access_policy\nsender=a\0b\n\n".to_vec(),
                "NUL",
            ),
            (long.into_bytes(), "longer than"),
            (many.into_bytes(), "more than"),
            (b"\n".to_vec(), "empty request"),
            (
                b"request=smtpd_access_policy\nsender=\xff\n\n".to_vec(),
                "UTF-8",
            ),
        ] {
            match read(&input) {
                Err(Bad::Malformed(why)) => assert!(why.contains(says), "{why}"),
                other => panic!("{says}: {other:?}"),
            }
        }
        // A request that never finishes is a peer gone, not an answer.
        assert_eq!(
            read(b"request=smtpd_access_policy\nsender=a"),
            Err(Bad::Gone)
        );
        let attrs = read(b"request=other\nclient_address=192.0.2.1\n\n")
            .expect("read")
            .expect("one");
        assert!(matches!(query_of(&attrs), Err(Bad::Malformed(_))));
        let attrs =
            read(b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=u@x.test\n\n")
                .expect("read")
                .expect("one");
        assert!(
            matches!(query_of(&attrs), Err(Bad::Malformed(_))),
            "no client_address"
        );
    }

    #[test]
    fn verdicts_become_postfix_actions() {
        use postern_shared::ipc::policy::Refusal;
        use postern_shared::stats::Rejection;
        let refusal = |code, enhanced| {
            Verdict::Refuse(Refusal {
                code,
                enhanced,
                text: "<a@b.test>: no".into(),
                kind: postern_shared::ipc::policy::Kind::Rejected(Rejection::Access),
                rule: String::new(),
            })
        };
        assert_eq!(action(&Verdict::Dunno), "action=DUNNO");
        assert_eq!(
            action(&Verdict::Accept {
                rule: String::new()
            }),
            "action=OK"
        );
        assert_eq!(
            action(&refusal(554, "5.7.1")),
            "action=REJECT 5.7.1 <a@b.test>: no"
        );
        assert_eq!(
            action(&refusal(450, "4.1.8")),
            "action=DEFER_IF_PERMIT 4.1.8 <a@b.test>: no"
        );
    }
}
