//! The log file (`log.file`), appended to by every process and rotated daily,
//! like the seed's `proxy.log` (log4j's `DatePattern='.'yyyy-MM-dd`): the first
//! line after local midnight renames `FILE` to `FILE.YYYY-MM-DD` and starts a
//! new `FILE`.
//!
//! Several processes write the same file, each through its own descriptor
//! opened with `O_APPEND`, each `write(2)` made of whole lines (one line, or
//! a worker's batch: [`super::batch`]), so lines never interleave.
//! Rotation is safe when they race, without a lock:
//!
//! - **The file's date** is the local date of its first line's timestamp (plus
//!   a minute, see [`STAMP_SLACK_MS`]), not its modification time: a line stamped
//!   just before midnight but written just after would otherwise make
//!   yesterday's file look like today's. A file that does not start with one
//!   of our lines falls back to its modification time.
//! - **Rename only an older file, never over another**: a process whose
//!   file's date is older than today renames it with `renameat2(…,
//!   RENAME_NOREPLACE)` to `FILE.DATE` (or `FILE.DATE.1` … `.9` when that name
//!   is taken by an older file). When the name exists because another process
//!   has just rotated the same file, `FILE` no longer names the file being
//!   rotated and the process stops: every process tries the same names in the
//!   same order for the same file, so none can rename the new `FILE` away.
//! - **Reopen when the inode changed**: at each check, a process whose
//!   descriptor is not the file `FILE` names (another process rotated it, or
//!   an administrator moved it) opens `FILE` again, creating it if needed.
//!
//! A process checks at its first line after local midnight, and a small
//! thread checks at midnight itself, so a quiet process still rotates on time.
//! A process that may not rename in the directory (an unprivileged worker
//! when the directory belongs to root, as with systemd's `LogsDirectory=`)
//! leaves the rotation to the master and checks again every second until the
//! file has been replaced; its lines meanwhile still go to the old file.
//!
//! Everything is done relative to a descriptor of the file's directory,
//! opened at start: a chrooted smtpd keeps rotating after `chroot(2)`.
//! A new file is created mode 0640, or 0660 owned by the group given to
//! [`LogFile::open`] (the workers' group, when the master runs as root and
//! drops its workers), so that both the master and the workers can open it
//! again after a rotation.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode};
use nix::unistd::Gid;

use crate::runtime::time::{local_date, local_day, next_local_midnight, now_millis};

/// How long after its timestamp a line may reach the file. The file's date is
/// that of its first line's timestamp plus this much: a line stamped at
/// 23:59:59.999 that is the first in the new file after a rotation does not
/// date that file from yesterday (which would rotate it again).
const STAMP_SLACK_MS: i64 = 60_000;
/// How soon a process that could not rotate checks again.
const RETRY_MS: i64 = 1000;
/// Suffixes tried after `FILE.DATE`: `.1` to `.9`.
const MAX_SUFFIX: u32 = 9;

/// A log file shared by several processes. See the module documentation.
pub struct LogFile {
    path: PathBuf,
    dir: OwnedFd,
    name: OsString,
    group: Option<Gid>,
    state: Mutex<State>,
}

struct State {
    file: File,
    /// When to check for a rotation next, in milliseconds since the epoch.
    next_check: i64,
}

impl LogFile {
    /// Opens (or creates) `path` for appending. `group`: the group a new file
    /// is given (mode 0660), when this process may set it.
    pub fn open(path: &Path, group: Option<Gid>) -> io::Result<LogFile> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = nix::fcntl::open(
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let file = open_current(&dir, &name, group)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            dir,
            name,
            group,
            state: Mutex::new(State {
                file,
                next_check: 0,
            }),
        })
    }

    /// The file's path as configured.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends whole lines (one `write(2)`), rotating first when it is due.
    pub fn append(&self, line: &[u8]) -> io::Result<()> {
        self.append_at(line, now_millis())
    }

    /// As [`LogFile::append`], at time `now` (milliseconds since the epoch).
    pub fn append_at(&self, line: &[u8], now: i64) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now >= st.next_check {
            self.check(&mut st, now);
        }
        st.file.write_all(line)
    }

    /// Rotates (or follows another process's rotation) if it is due at `now`.
    pub fn tick_at(&self, now: i64) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now >= st.next_check {
            self.check(&mut st, now);
        }
    }

    /// Starts the thread that checks at each local midnight.
    pub fn spawn_midnight_thread(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("log-rotate".into())
            .spawn(move || loop {
                let now = now_millis();
                // Wake a little after midnight, and at least hourly, should the
                // clock be changed meanwhile.
                let wait = (next_local_midnight(now) + 500 - now).clamp(1000, 3_600_000);
                std::thread::sleep(Duration::from_millis(wait as u64));
                match me.upgrade() {
                    Some(f) => f.tick_at(now_millis()),
                    None => return,
                }
            });
    }

    fn check(&self, st: &mut State, now: i64) {
        let today = local_day(now);
        // Follow: the name may designate another file by now.
        if !self.names(&st.file) {
            match self.open_current() {
                Ok(f) => st.file = f,
                Err(_) => {
                    st.next_check = now + RETRY_MS;
                    return;
                }
            }
        }
        // Rotate: our file, which the name designates, is from an earlier day.
        if let Some(day) = self.file_day(&st.file) {
            if day < today {
                match self.rotate(&st.file, day) {
                    Ok(()) => {
                        if let Ok(f) = self.open_current() {
                            st.file = f;
                        }
                    }
                    Err(_) => {
                        // Not ours to rename: the master will; follow it soon.
                        st.next_check = now + RETRY_MS;
                        return;
                    }
                }
            }
        }
        st.next_check = next_local_midnight(now);
    }

    /// True when the file's name designates `file` (same device and inode).
    fn names(&self, file: &File) -> bool {
        let (Ok(at_name), Ok(ours)) = (
            fstatat(
                &self.dir,
                self.name.as_os_str(),
                nix::fcntl::AtFlags::empty(),
            ),
            nix::sys::stat::fstat(file.as_fd()),
        ) else {
            return false;
        };
        at_name.st_dev == ours.st_dev && at_name.st_ino == ours.st_ino
    }

    /// The local day (days since 1970-01-01) of a file's contents; `None` when empty.
    fn file_day(&self, file: &File) -> Option<i64> {
        let meta = file.metadata().ok()?;
        if meta.len() == 0 {
            return None;
        }
        let mut head = [0u8; 24];
        let stamped = file
            .read_exact_at(&mut head, 0)
            .ok()
            .and_then(|_| std::str::from_utf8(&head).ok())
            .and_then(super::record::parse_time);
        let millis = match stamped {
            Some(t) => t + STAMP_SLACK_MS,
            None => meta.mtime() * 1000,
        };
        Some(local_day(millis))
    }

    /// Renames the file (which the name designated a moment ago) to its dated
    /// name. `Ok` also when another process has rotated it meanwhile.
    fn rotate(&self, file: &File, day: i64) -> io::Result<()> {
        let date = local_date(day);
        for n in 0..=MAX_SUFFIX {
            let mut target = self.name.clone();
            target.push(format!(".{date}"));
            if n > 0 {
                target.push(format!(".{n}"));
            }
            match rename_noreplace(&self.dir, &self.name, &target) {
                Ok(()) => return Ok(()),
                Err(Errno::ENOENT) => return Ok(()),
                Err(Errno::EEXIST) if !self.names(file) => return Ok(()),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "every dated name is taken",
        ))
    }

    /// Opens the file the name designates now, creating it if needed.
    fn open_current(&self) -> io::Result<File> {
        open_current(&self.dir, &self.name, self.group)
    }
}

/// Opens `name` in `dir` for appending (and reading its first line),
/// creating it if needed: mode 0640, or 0660 with group `group`.
fn open_current(dir: &OwnedFd, name: &OsStr, group: Option<Gid>) -> io::Result<File> {
    let flags = OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CLOEXEC;
    loop {
        match openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let mode = Mode::from_bits_truncate(if group.is_some() { 0o660 } else { 0o640 });
        match openat(dir, name, flags | OFlag::O_CREAT | OFlag::O_EXCL, mode) {
            Ok(fd) => {
                if let Some(g) = group {
                    // Both allowed to the file's creator (with CAP_CHOWN for a
                    // group it is not in: the master, as root); fchmod because
                    // the umask may have taken the group's write bit.
                    let _ = nix::unistd::fchown(fd.as_fd(), None, Some(g));
                    let _ = nix::sys::stat::fchmod(fd.as_fd(), mode);
                }
                return Ok(File::from(fd));
            }
            // Another process created it between our two calls: open that one.
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `renameat2(RENAME_NOREPLACE)`; where the system lacks it, a check then a
/// plain rename (racy, but only on such systems).
fn rename_noreplace(dir: &OwnedFd, from: &OsStr, to: &OsStr) -> Result<(), Errno> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{renameat2, RenameFlags};
        match renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE) {
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) => {}
            other => return other,
        }
    }
    match fstatat(dir, to, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Err(Errno::EEXIST),
        Err(Errno::ENOENT) => nix::fcntl::renameat(dir, from, dir, to),
        Err(e) => Err(e),
    }
}

/// The rotated siblings of `path` (`FILE.YYYY-MM-DD[.N]`), oldest first.
pub fn rotated_siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'.');
    let mut found: Vec<((String, u32), PathBuf)> = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(rest) = n.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            continue;
        };
        let (date, suffix) = rest.split_once('.').unwrap_or((rest, "0"));
        let valid_date = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let Ok(suffix) = suffix.parse::<u32>() else {
            continue;
        };
        if valid_date {
            found.push(((date.to_string(), suffix), dir.join(&n)));
        }
    }
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logging::Timestamp;
    use std::time::UNIX_EPOCH;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-logfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn line(at: i64, text: &str) -> String {
        let t = UNIX_EPOCH + Duration::from_millis(at as u64);
        format!("{} postern[1]: INFO {text}\n", Timestamp(t))
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    /// Local noon of day `day`, in milliseconds.
    fn noon(day: i64) -> i64 {
        let guess = day * 86_400_000 + 12 * 3_600_000;
        // Shift by the local offset so that the local day is `day`.
        guess - (local_day(guess) - day) * 86_400_000
    }

    #[test]
    fn rotates_at_the_first_line_of_a_new_day() {
        let d = tmp("one");
        let path = d.join("proxy.log");
        let f = LogFile::open(&path, None).expect("open");
        let day = local_day(now_millis()) - 3;
        f.append_at(line(noon(day), "first").as_bytes(), noon(day))
            .expect("write");
        f.append_at(
            line(noon(day) + 1000, "second").as_bytes(),
            noon(day) + 1000,
        )
        .expect("write");
        assert_eq!(rotated_siblings(&path).len(), 0);
        let next = noon(day + 1);
        f.append_at(line(next, "third").as_bytes(), next)
            .expect("write");
        let rotated = d.join(format!("proxy.log.{}", local_date(day)));
        assert!(read(&rotated).contains("first") && read(&rotated).contains("second"));
        assert!(!read(&rotated).contains("third"));
        assert!(read(&path).contains("third") && !read(&path).contains("first"));
        assert_eq!(rotated_siblings(&path), vec![rotated]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn racing_processes_rotate_once_and_lose_nothing() {
        let d = tmp("race");
        let path = d.join("proxy.log");
        let day = local_day(now_millis()) - 2;
        // Three "processes", each with its own descriptor and state.
        let procs: Vec<LogFile> = (0..3)
            .map(|_| LogFile::open(&path, None).expect("open"))
            .collect();
        for (i, p) in procs.iter().enumerate() {
            let t = noon(day) + i as i64;
            p.append_at(line(t, &format!("old {i}")).as_bytes(), t)
                .expect("write");
        }
        let next = noon(day + 1);
        std::thread::scope(|s| {
            for (i, p) in procs.iter().enumerate() {
                s.spawn(move || {
                    for n in 0..50 {
                        let t = next + n;
                        p.append_at(line(t, &format!("new {i} {n}")).as_bytes(), t)
                            .expect("write");
                    }
                });
            }
        });
        let rotated = rotated_siblings(&path);
        assert_eq!(rotated.len(), 1, "{rotated:?}");
        let old = read(&rotated[0]);
        let new = read(&path);
        for i in 0..3 {
            assert!(old.contains(&format!("old {i}\n")), "{old}");
            for n in 0..50 {
                assert!(
                    new.contains(&format!("new {i} {n}\n")),
                    "missing new {i} {n}"
                );
            }
        }
        assert!(!old.contains("new "), "{old}");
        assert_eq!(new.lines().count(), 150);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_line_stamped_before_midnight_does_not_date_the_new_file() {
        let d = tmp("slack");
        let path = d.join("proxy.log");
        let day = local_day(now_millis()) - 2;
        let f = LogFile::open(&path, None).expect("open");
        f.append_at(line(noon(day), "yesterday").as_bytes(), noon(day))
            .expect("write");
        let midnight = next_local_midnight(noon(day));
        // Stamped 1 ms before midnight, written 1 ms after: rotates, then
        // lands first in the new file.
        f.append_at(line(midnight - 1, "late").as_bytes(), midnight + 1)
            .expect("write");
        f.append_at(line(midnight + 5, "today").as_bytes(), midnight + 5)
            .expect("write");
        // Another process checks a little later: nothing more to rotate.
        let g = LogFile::open(&path, None).expect("open");
        g.append_at(line(midnight + 10, "other").as_bytes(), midnight + 10)
            .expect("write");
        assert_eq!(rotated_siblings(&path).len(), 1);
        assert!(read(&path).starts_with(&line(midnight - 1, "late")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_taken_name_gets_a_suffix_and_a_moved_file_is_followed() {
        let d = tmp("suffix");
        let path = d.join("proxy.log");
        let day = local_day(now_millis()) - 2;
        std::fs::write(d.join(format!("proxy.log.{}", local_date(day))), "older\n").expect("w");
        let f = LogFile::open(&path, None).expect("open");
        f.append_at(line(noon(day), "a").as_bytes(), noon(day))
            .expect("write");
        f.append_at(line(noon(day + 1), "b").as_bytes(), noon(day + 1))
            .expect("write");
        let with_suffix = d.join(format!("proxy.log.{}.1", local_date(day)));
        assert!(read(&with_suffix).contains(" a\n"));
        // An administrator moves the file away: the next check opens a new one.
        std::fs::rename(&path, d.join("moved")).expect("move");
        f.append_at(line(noon(day + 2), "c").as_bytes(), noon(day + 2))
            .expect("write");
        assert!(read(&path).contains(" c\n"));
        assert!(!read(&d.join("moved")).contains(" c\n"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
