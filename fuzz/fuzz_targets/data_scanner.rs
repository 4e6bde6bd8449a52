//! The DATA scanner's promises (SMTP smuggling): a body ends only at
//! CRLF "." CRLF, wherever the chunks are cut; a body it lets pass holds
//! no bare CR, bare LF or NUL; and cutting the same bytes into other
//! chunks changes nothing it decides.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_shared::smtp::data::{Fault, Scanner};

/// Scans `body` cut at the offsets `cuts` says; the end (offset just past
/// the end marker), the fault and the size.
fn scan(body: &[u8], cuts: &[u8]) -> (Option<usize>, Option<Fault>, u64) {
    let mut s = Scanner::new(1 << 20);
    let mut at = 0;
    let mut cut = cuts.iter().cycle();
    while at < body.len() {
        let step = if cuts.is_empty() {
            body.len()
        } else {
            usize::from(*cut.next().unwrap_or(&255)).max(1)
        };
        let end = (at + step).min(body.len());
        if let Some(n) = s.scan(&body[at..end]) {
            return (Some(at + n), s.fault, s.size);
        }
        at = end;
    }
    (None, s.fault, s.size)
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the cuts, the rest is the body.
    let (cuts, body) = data.split_at(data.len().min(8));
    let whole = scan(body, &[]);
    let cut = scan(body, cuts);
    assert_eq!(whole, cut, "the chunks changed a decision");
    if let (Some(end), fault, size) = whole {
        // The end marker: "." CRLF at the start of a line.
        assert!(
            end >= 3 && &body[end - 3..end] == b".\r\n",
            "ended without .CRLF"
        );
        let line_start = end == 3 || &body[end - 5..end - 3] == b"\r\n";
        assert!(line_start, "ended on a dot that does not start a line");
        // What went before is the body, its last CRLF included: its size.
        let before = &body[..end - 3];
        assert_eq!(size, before.len() as u64, "size");
        if fault.is_none() {
            let forwarded = before;
            assert!(!forwarded.contains(&0), "a NUL passed");
            for (i, &b) in forwarded.iter().enumerate() {
                if b == b'\r' {
                    assert_eq!(forwarded.get(i + 1), Some(&b'\n'), "a bare CR passed");
                }
                if b == b'\n' {
                    assert!(i > 0 && forwarded[i - 1] == b'\r', "a bare LF passed");
                }
            }
        }
    }
});
