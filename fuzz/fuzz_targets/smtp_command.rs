//! Any command line: the parser answers something (never panics), and what
//! it makes of a path is consistent: a mailbox names a routing domain only
//! when nothing in its local part could route elsewhere, and the key that
//! aliases and duplicate recipients go by is its unquoted local part and
//! its routing domain, whatever the case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::alias::address_key;
use postern_shared::smtp::{parse_command, parse_path, Command, Path};

fn check(p: &Path) {
    if let Path::Mailbox(m) = p {
        let text = m.to_string();
        if let Some(d) = m.routing_domain() {
            assert!(!m.local.contains(['%', '!', '@', '\\']), "{text}");
            assert!(!d.is_empty() && !d.starts_with('['), "{text}");
            assert_eq!(d, d.to_ascii_lowercase());
            let key = format!("{}@{d}", m.unquoted_local().to_lowercase());
            assert_eq!(address_key(&text), key, "{text}");
            assert_eq!(address_key(&text.to_ascii_uppercase()), key, "{text}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match parse_command(line) {
        Command::Mail(p, _) | Command::Rcpt(p, _) => check(&p),
        _ => {}
    }
    for rcpt in [false, true] {
        if let Ok(p) = parse_path(line, rcpt) {
            check(&p);
        }
    }
});
