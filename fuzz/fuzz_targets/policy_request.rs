//! Any bytes from a Postfix policy client: the policy server's reader
//! takes them line by line as the server does (lines over `MAX_LINE` end
//! the connection) and never panics; a request it reads holds at most
//! `MAX_ATTRIBUTES` attributes, none with a NUL, CR or LF (they reach the
//! log and the greylist store), and written back as `name=value` lines
//! reads the same; the query it asks (RCPT state) can cross postern's IPC
//! unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::ipc::policy::Query;
use postern_shared::ipc::postfix::{self, RequestReader, MAX_ATTRIBUTES, MAX_LINE};
use postern_shared::ipc::proto;

fn reread(attrs: &postfix::Attributes) -> postfix::Attributes {
    let mut reader = RequestReader::new();
    for (name, value) in attrs {
        let line = format!("{name}={value}");
        let step = reader
            .line(line.as_bytes())
            .expect("a line it read reads again");
        assert!(step.is_none(), "a request ended early");
    }
    reader
        .line(b"")
        .expect("the end reads again")
        .expect("a whole request")
}

fuzz_target!(|data: &[u8]| {
    let mut reader = RequestReader::new();
    let mut rest = data;
    while let Some(at) = rest.iter().position(|&b| b == b'\n') {
        let (line, next) = (&rest[..at], &rest[at + 1..]);
        rest = next;
        if line.len() > MAX_LINE {
            return;
        }
        let attrs = match reader.line(line) {
            Ok(Some(attrs)) => attrs,
            Ok(None) => continue,
            Err(_) => return,
        };
        assert!(!attrs.is_empty() && attrs.len() <= MAX_ATTRIBUTES);
        for (name, value) in &attrs {
            assert!(!name.contains('='));
            assert!(!format!("{name}{value}").contains(['\0', '\r', '\n']));
        }
        assert_eq!(reread(&attrs), attrs, "the request does not read back");
        if let Ok(Some(q)) = postfix::query_of(&attrs) {
            assert!(!q.recipient.is_empty());
            let bytes = q.to_attrs().encode().expect("a query encodes");
            let msg = proto::decode(&bytes)
                .expect("what was encoded decodes")
                .expect("a whole message");
            let again = Query::from_attrs(&msg).expect("the router reads the query");
            assert_eq!(again, q, "the query changed on its way to the router");
        }
    }
});
