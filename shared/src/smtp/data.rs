//! The DATA body scanner, without I/O.
//!
//! The body is streamed to the backend as it arrives, byte for byte (dot
//! stuffing included: the backend unstuffs exactly as the client stuffed).
//! The scanner decides two things as the bytes pass:
//!
//! - where the body ends: only at a line `.` that follows a CRLF and is
//!   itself ended by CRLF (`CRLF.CRLF`); `LF.LF`, `CR.CR`, `LF.CRLF`,
//!   `CRLF.LF`, `.CR CRLF` and the like never end it;
//! - whether it is acceptable: a bare CR or a bare LF anywhere makes it
//!   [`Fault::BareLineEnd`], so that no byte sequence can end a message for
//!   the backend that did not end it for postern (SMTP smuggling); a NUL
//!   byte makes it [`Fault::Nul`] (never stripped: a backend that drops NUL
//!   bytes would read `CRLF NUL . CRLF` as the end). Once a
//!   fault is found, the session stops forwarding, drains the rest of the body
//!   up to the real end, aborts the backend transaction and refuses the message.

/// Why a body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A CR not followed by LF, or an LF not preceded by CR.
    BareLineEnd,
    /// A NUL byte (RFC 5321 §2.3.8 text has none, 8BITMIME neither).
    Nul,
    /// More bytes than the size limit.
    TooBig,
}

/// Incremental end-of-data detector and validator.
#[derive(Debug)]
pub struct Scanner {
    line_start: bool,
    cr: bool,
    /// 0: nothing; 1: a `.` opened the line; 2: `.` then CR.
    dot: u8,
    /// Body bytes seen so far, end marker excluded.
    pub size: u64,
    limit: u64,
    /// The first fault found, if any.
    pub fault: Option<Fault>,
}

impl Scanner {
    /// A scanner for a body of at most `limit` bytes.
    pub fn new(limit: u64) -> Scanner {
        Scanner {
            line_start: true,
            cr: false,
            dot: 0,
            size: 0,
            limit,
            fault: None,
        }
    }

    fn fault(&mut self, f: Fault) {
        self.fault.get_or_insert(f);
    }

    /// Scans the next chunk. Returns `Some(n)` when the end-of-data line ends
    /// at `chunk[..n]` (the bytes after it belong to the next command).
    pub fn scan(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut i = 0;
        // The bulk check is tried once per chunk: a chunk it refuses is
        // scanned line by line, never checked again from every line.
        let mut bulk_tried = false;
        while i < chunk.len() {
            // Fast path: inside a line, nothing pending, only CR, LF and NUL
            // matter: jump to the next one (most of a body is plain text).
            if !self.cr && !self.line_start && self.dot == 0 {
                if !bulk_tried {
                    bulk_tried = true;
                    let n = ordinary_lines(&chunk[i..]);
                    if n > 0 {
                        // Ordinary lines up to the chunk's last LF: the state
                        // is that of a line start, as after any CRLF.
                        i += n;
                        self.size += n as u64;
                        // As byte by byte: the LF that completes a CRLF is
                        // counted, and judged with the byte after it.
                        if self.size - 1 > self.limit {
                            self.fault(Fault::TooBig);
                        }
                        self.line_start = true;
                        continue;
                    }
                }
                loop {
                    let rest = &chunk[i..];
                    let skip = memchr::memchr3(b'\r', b'\n', 0, rest).unwrap_or(rest.len());
                    self.size += skip as u64;
                    i += skip;
                    if self.size > self.limit {
                        self.fault(Fault::TooBig);
                    }
                    if i == chunk.len() {
                        return None;
                    }
                    // The usual line end: CRLF, then a line that starts with
                    // neither a dot nor a line end. Those three bytes leave the
                    // state as it is (inside a line, nothing pending): skip
                    // them and search on, instead of taking them one by one.
                    if chunk[i] == b'\r'
                        && i + 2 < chunk.len()
                        && chunk[i + 1] == b'\n'
                        && !matches!(chunk[i + 2], b'.' | b'\r' | b'\n' | 0)
                    {
                        i += 3;
                        self.size += 3;
                        if self.size > self.limit {
                            self.fault(Fault::TooBig);
                        }
                        continue;
                    }
                    break;
                }
            }
            let b = chunk[i];
            i += 1;
            if self.cr {
                self.cr = false;
                if b == b'\n' {
                    if self.dot == 2 {
                        // ".\r\n": the three marker bytes are not body.
                        self.size = self.size.saturating_sub(2);
                        return Some(i);
                    }
                    self.size += 1;
                    self.line_start = true;
                    self.dot = 0;
                    continue;
                }
                self.fault(Fault::BareLineEnd);
                self.dot = 0;
            }
            self.size += 1;
            match b {
                b'\r' => {
                    self.cr = true;
                    self.dot = if self.dot == 1 { 2 } else { 0 };
                }
                b'\n' => {
                    self.fault(Fault::BareLineEnd);
                    self.dot = 0;
                }
                0 => {
                    self.fault(Fault::Nul);
                    self.dot = 0;
                }
                b'.' if self.line_start => self.dot = 1,
                _ => self.dot = 0,
            }
            self.line_start = false;
            if self.size > self.limit {
                self.fault(Fault::TooBig);
            }
        }
        None
    }
}

/// The length of `text` up to and including its last LF when, read from
/// inside a line with nothing pending, it is nothing but ordinary lines —
/// no NUL, every CR followed by LF, every LF preceded by CR, no line that
/// starts with a dot — so that the byte-by-byte scan would only count it
/// and end at a line start; 0 otherwise (or when there is no LF). One pass
/// without branches (the compiler vectorises it), instead of a search per
/// line: a body's lines are short.
fn ordinary_lines(text: &[u8]) -> usize {
    let Some(last) = memchr::memrchr(b'\n', text) else {
        return 0;
    };
    let lines = &text[..=last];
    // From inside a line, a first LF would be a bare one.
    if lines.len() < 2 || lines[0] == b'\n' {
        return 0;
    }
    if odd_bytes(lines) == 0 {
        lines.len()
    } else {
        0
    }
}

/// Not 0 when some byte of `lines` is a NUL, a CR not followed by LF, an LF
/// not preceded by CR (from the second byte on), or an LF followed by a dot.
/// With AVX2 when the CPU has it (32 bytes a step instead of SSE2's 16: a
/// 100 KB body's check takes half the instructions); the same code either
/// way.
fn odd_bytes(lines: &[u8]) -> u8 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, checked just above; that is all
        // `odd_bytes_avx2` needs beyond what any x86-64 has.
        return unsafe { odd_bytes_avx2(lines) };
    }
    odd_bytes_portable(lines)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn odd_bytes_avx2(lines: &[u8]) -> u8 {
    odd_bytes_portable(lines)
}

/// [`odd_bytes`] in plain code that the compiler vectorises (no branch in
/// the loop).
#[inline(always)]
fn odd_bytes_portable(lines: &[u8]) -> u8 {
    let mut odd = 0u8;
    for (&a, &b) in lines.iter().zip(lines.get(1..).unwrap_or_default()) {
        odd |= u8::from((a == b'\r') != (b == b'\n'))
            | u8::from(a == 0)
            | u8::from((a == b'\n') & (b == b'.'));
    }
    odd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scans `input` in one piece and byte by byte; both must agree.
    fn scan(input: &[u8]) -> (Option<usize>, Option<Fault>) {
        let mut whole = Scanner::new(1 << 20);
        let a = whole.scan(input);
        let mut bytes = Scanner::new(1 << 20);
        let mut b = None;
        for (i, byte) in input.iter().enumerate() {
            if let Some(n) = bytes.scan(std::slice::from_ref(byte)) {
                b = Some(i + n);
                break;
            }
        }
        assert_eq!(a, b, "chunking changed the end for {input:?}");
        assert_eq!(whole.fault, bytes.fault);
        (a, whole.fault)
    }

    #[test]
    fn proper_end() {
        let body = b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<a@b>\r\n";
        assert_eq!(scan(body), (Some(24), None));
        assert_eq!(scan(b".\r\n"), (Some(3), None), "empty body");
        let mut s = Scanner::new(100);
        s.scan(b"ab\r\n.\r\n");
        assert_eq!(s.size, 4, "the marker is not counted");
    }

    #[test]
    fn dot_stuffing_is_not_the_end() {
        let body = b"a\r\n..\r\nmore\r\n.\r\n";
        assert_eq!(scan(body), (Some(body.len()), None));
    }

    /// The smuggling inputs of research §1.5 (S1-S8, S12): none ends the body
    /// before the real CRLF.CRLF, and each one is refused.
    #[test]
    fn smuggling_sequences_never_end_the_body() {
        let tail = b"MAIL FROM:<s@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nsmuggled\r\n";
        for (name, middle) in [
            ("S1 LF.LF", &b"body\n.\n"[..]),
            ("S2 LF.CRLF", b"body\n.\r\n"),
            ("S3 CRLF.LF", b"body\r\n.\n"),
            ("S4 CR.CRLF", b"body\r.\r\n"),
            ("S5 CR.CR", b"body\r.\r"),
            ("S6 CRLF.CR CRLF", b"body\r\n.\r\r\n"),
            ("S12 bare LF in a header", b"Subject: a\nb\r\n"),
        ] {
            let mut input = middle.to_vec();
            input.extend_from_slice(tail);
            let end_at = input.len() + 5;
            input.extend_from_slice(b"\r\n.\r\n");
            let (end, fault) = scan(&input);
            assert_eq!(end, Some(end_at), "{name}: ended early");
            assert_eq!(fault, Some(Fault::BareLineEnd), "{name}: not refused");
        }
    }

    /// The scanner's `CRLF NUL . CRLF`: not the end (a backend that drops
    /// NUL would end the message there), and refused.
    #[test]
    fn nul_is_neither_an_end_nor_accepted() {
        let body = b"body\r\n\x00.\r\nnext\r\n.\r\n";
        assert_eq!(scan(body), (Some(body.len()), Some(Fault::Nul)));
        assert_eq!(scan(b"a\x00b\r\n.\r\n"), (Some(8), Some(Fault::Nul)));
        assert_eq!(
            scan(b"long line without end\x00\r\n.\r\n"),
            (Some(27), Some(Fault::Nul)),
            "found by the fast path too"
        );
    }

    /// A repeatable stream of pseudo-random numbers (xorshift64).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// The byte-at-a-time definition the fast path must agree with.
    fn reference(input: &[u8], limit: u64) -> (Option<usize>, Option<Fault>, u64) {
        let (mut line_start, mut cr, mut dot, mut size, mut fault) = (true, false, 0u8, 0u64, None);
        for (i, &b) in input.iter().enumerate() {
            if cr {
                cr = false;
                if b == b'\n' {
                    if dot == 2 {
                        return (Some(i + 1), fault, size - 2);
                    }
                    size += 1;
                    line_start = true;
                    dot = 0;
                    continue;
                }
                fault.get_or_insert(Fault::BareLineEnd);
                dot = 0;
            }
            size += 1;
            match b {
                b'\r' => {
                    cr = true;
                    dot = if dot == 1 { 2 } else { 0 };
                }
                b'\n' => {
                    fault.get_or_insert(Fault::BareLineEnd);
                    dot = 0;
                }
                0 => {
                    fault.get_or_insert(Fault::Nul);
                    dot = 0;
                }
                b'.' if line_start => dot = 1,
                _ => dot = 0,
            }
            line_start = false;
            if size > limit {
                fault.get_or_insert(Fault::TooBig);
            }
        }
        (None, fault, size)
    }

    #[test]
    fn fast_path_agrees_with_the_definition() {
        let alphabet = b"ab.\r\n\0";
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for round in 0..20_000 {
            let len = (next() % 40) as usize;
            let input: Vec<u8> = (0..len).map(|_| alphabet[(next() % 6) as usize]).collect();
            let cut = if len == 0 { 0 } else { (next() as usize) % len };
            let limit = next() % 30;
            let (want_end, want_fault, want_size) = reference(&input, limit);
            let mut s = Scanner::new(limit);
            let got_end = s
                .scan(&input[..cut])
                .or_else(|| s.scan(&input[cut..]).map(|n| n + cut));
            assert_eq!(got_end, want_end, "round {round}: {input:?} cut at {cut}");
            assert_eq!(s.fault, want_fault, "round {round}: {input:?}");
            if want_end.is_some() || got_end.is_none() {
                assert_eq!(s.size, want_size, "round {round}: {input:?}");
            }
        }
    }

    /// Longer bodies, mostly ordinary lines (the bulk check's case), cut
    /// anywhere into up to four chunks: the same decisions as the definition.
    #[test]
    fn ordinary_lines_agree_with_the_definition() {
        let lines: [&[u8]; 9] = [
            b"Subject: hello",
            b"plain text of a line",
            b"",
            b"..stuffed",
            b".",
            b"bare\rcr",
            b"bare\nlf",
            b"nul\0",
            b"x",
        ];
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(next() % 30) {
                // Mostly the ordinary lines, now and then a special one.
                let k = if next().is_multiple_of(8) {
                    next() % 9
                } else {
                    next() % 3
                };
                input.extend_from_slice(lines[k as usize]);
                input.extend_from_slice(if next().is_multiple_of(50) {
                    b"\n"
                } else {
                    b"\r\n"
                });
            }
            if next().is_multiple_of(2) {
                input.extend_from_slice(b".\r\nQUIT\r\n");
            }
            let limit = if next().is_multiple_of(4) {
                next() % 200
            } else {
                1 << 20
            };
            let (want_end, want_fault, want_size) = reference(&input, limit);
            let mut cuts: Vec<usize> = (0..(next() % 4))
                .map(|_| (next() as usize) % (input.len() + 1))
                .collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut s = Scanner::new(limit);
            let mut got_end = None;
            for w in cuts.windows(2) {
                if let Some(n) = s.scan(&input[w[0]..w[1]]) {
                    got_end = Some(w[0] + n);
                    break;
                }
            }
            let shown = String::from_utf8_lossy(&input);
            assert_eq!(
                got_end, want_end,
                "round {round}: {shown:?} cut at {cuts:?}"
            );
            assert_eq!(
                s.fault, want_fault,
                "round {round}: {shown:?} cut at {cuts:?}"
            );
            if want_end.is_some() || got_end.is_none() {
                assert_eq!(s.size, want_size, "round {round}: {shown:?}");
            }
        }
    }

    /// The AVX2 and the portable checks agree (on this machine's CPU, when it
    /// has AVX2; the portable one alone otherwise).
    #[test]
    fn both_checks_agree() {
        let alphabet = b"ab.\r\n\0";
        let mut next = xorshift(0x51_7CC1_B727_220A);
        for _ in 0..5_000 {
            let len = (next() % 200) as usize;
            // Mostly ordinary text: the odd byte, when there is one, may
            // fall anywhere in a long stretch, past every vector width.
            let input: Vec<u8> = (0..len)
                .map(|i| match next() % 64 {
                    0 => alphabet[(next() % 6) as usize],
                    _ if i % 10 == 8 => b'\r',
                    _ if i % 10 == 9 => b'\n',
                    _ => b'x',
                })
                .collect();
            assert_eq!(
                odd_bytes(&input) != 0,
                odd_bytes_portable(&input) != 0,
                "{input:?}"
            );
        }
    }

    #[test]
    fn size_limit() {
        let mut s = Scanner::new(10);
        assert_eq!(s.scan(b"0123456789\r\n"), None);
        assert_eq!(s.fault, Some(Fault::TooBig));
        assert_eq!(s.scan(b".\r\n"), Some(3));
    }
}
