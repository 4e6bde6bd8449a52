//! journald's native protocol, written directly: an entry is one datagram
//! to [`JOURNAL_SOCKET`] holding `NAME=value` lines (a value with a line
//! break in it is sent as `NAME`, a line break, its length as 64-bit
//! little-endian, the value and a line break). An entry too large for a
//! datagram goes in a sealed memory file whose descriptor is sent instead.
//! (systemd's "Native Journal Protocol".)
//!
//! Field names are the tracing fields' names upper-cased (`SID`,
//! `CLIENT_IP`, `SENDER`…), other characters than letters and digits as
//! `_`; the level is `PRIORITY` (ERROR 3, WARN 4, INFO 5, DEBUG 6, TRACE
//! 7), the process name `SYSLOG_IDENTIFIER`, the message `MESSAGE`, and
//! where it was logged `TARGET`, `CODE_FILE` and `CODE_LINE`.

use std::io::{self, IoSlice, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use tracing::Level;

use super::JOURNAL_SOCKET;

/// A socket to the journal.
pub(super) struct Journal {
    socket: UnixDatagram,
    /// The journal's socket ([`JOURNAL_SOCKET`]; another in tests).
    path: &'static Path,
}

impl Journal {
    /// A socket that reaches the journal now: an empty entry, which
    /// journald discards, is sent to find out.
    pub(super) fn open() -> io::Result<Journal> {
        Journal::at(Path::new(JOURNAL_SOCKET))
    }

    fn at(path: &'static Path) -> io::Result<Journal> {
        let journal = Journal {
            socket: UnixDatagram::unbound()?,
            path,
        };
        journal.send(&[])?;
        Ok(journal)
    }

    /// Sends one entry (as [`put`] builds it).
    pub(super) fn send(&self, entry: &[u8]) -> io::Result<()> {
        match self.socket.send_to(entry, self.path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => self.send_large(entry),
            Err(e) => Err(e),
        }
    }

    /// An entry larger than a datagram: in a sealed memory file.
    fn send_large(&self, entry: &[u8]) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg};
        use nix::sys::memfd::{memfd_create, MFdFlags};
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
        let fd = memfd_create(
            c"postern-journal",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(fd);
        file.write_all(entry)?;
        fcntl(&file, FcntlArg::F_ADD_SEALS(SEALS))?;
        let addr = UnixAddr::new(self.path)?;
        let fds = [file.as_raw_fd()];
        let no_data: [IoSlice<'_>; 0] = [];
        sendmsg(
            self.socket.as_raw_fd(),
            &no_data,
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            Some(&addr),
        )?;
        Ok(())
    }
}

/// The seals of an entry's memory file: exactly those systemd's own client
/// sets. journald before v254 wants exactly these (and refuses an unsealed
/// file from a user other than root); `SealFlag::all()` would add
/// `F_SEAL_FUTURE_WRITE`, which it does not count as sealed and kernels
/// before 5.1 refuse.
const SEALS: nix::fcntl::SealFlag = nix::fcntl::SealFlag::F_SEAL_SHRINK
    .union(nix::fcntl::SealFlag::F_SEAL_GROW)
    .union(nix::fcntl::SealFlag::F_SEAL_WRITE)
    .union(nix::fcntl::SealFlag::F_SEAL_SEAL);

/// journald's priority for a level.
pub(super) fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"3",
        Level::WARN => b"4",
        Level::INFO => b"5",
        Level::DEBUG => b"6",
        Level::TRACE => b"7",
    }
}

/// Appends field `name` (a tracing field name, upper-cased here) with
/// `value` to an entry.
pub(super) fn put(entry: &mut Vec<u8>, name: &str, value: &[u8]) {
    let start = entry.len();
    entry.extend(name.bytes().map(|b| match b {
        b'a'..=b'z' => b.to_ascii_uppercase(),
        b'A'..=b'Z' | b'0'..=b'9' => b,
        _ => b'_',
    }));
    // journald keeps names beginning with `_` for the fields it adds itself.
    while entry.get(start) == Some(&b'_') {
        entry.remove(start);
    }
    if value.contains(&b'\n') {
        entry.push(b'\n');
        entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        entry.push(b'=');
    }
    entry.extend_from_slice(value);
    entry.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_upper_cased_and_a_line_break_makes_a_length_encoded_value() {
        let mut e = Vec::new();
        put(&mut e, "client_ip", b"192.0.2.7");
        put(&mut e, "_x.y", b"two\nlines");
        let mut want = b"CLIENT_IP=192.0.2.7\nX_Y\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(e, want);
    }

    #[test]
    fn an_entry_larger_than_a_datagram_goes_in_a_sealed_memory_file() {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        use std::io::Read as _;
        let dir = std::env::temp_dir().join(format!("postern-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path: &'static Path = Box::leak(dir.join("socket").into_boxed_path());
        let journald = UnixDatagram::bind(path).expect("bind");
        let journal = Journal::at(path).expect("reaches the socket");
        // The empty entry that checked the socket.
        assert_eq!(journald.recv(&mut [0u8; 16]).expect("recv"), 0);
        // Larger than any socket's send buffer allows in one datagram.
        let mut entry = Vec::new();
        put(&mut entry, "MESSAGE", "x".repeat(4 << 20).as_bytes());
        journal.send(&entry).expect("sent");
        let mut cmsg = nix::cmsg_space!(std::os::fd::RawFd);
        let mut none: [std::io::IoSliceMut<'_>; 0] = [];
        let msg = recvmsg::<UnixAddr>(
            journald.as_raw_fd(),
            &mut none,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let fd = msg
            .cmsgs()
            .expect("control messages")
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a descriptor");
        #[allow(unsafe_code)]
        // SAFETY: received just now with SCM_RIGHTS: ours, open, owned once.
        let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // The same open file as the sender's, at its end: journald maps it
        // whole; this test reads it from the start.
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).expect("seek");
        let mut got = Vec::new();
        file.read_to_end(&mut got).expect("read the memory file");
        assert!(got == entry, "the memory file holds the entry");
        // Sealed as journald wants it: shrink, grow, write and seal, no more.
        let seals = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GET_SEALS).expect("seals");
        assert_eq!(
            seals,
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(priority(&Level::ERROR), b"3");
        assert_eq!(priority(&Level::WARN), b"4");
        assert_eq!(priority(&Level::INFO), b"5");
    }
}
