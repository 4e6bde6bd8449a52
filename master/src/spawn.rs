//! Starting a worker: fork, place the inherited descriptors at 3…, exec.
//!
//! The socket-activation convention wants `LISTEN_PID` to be the child's own
//! pid, known only after `fork()`. Everything is therefore prepared before the
//! fork (paths, argv, the environment, including a `LISTEN_PID=` entry with
//! room for the digits), and the child does only async-signal-safe work:
//! write its pid into that entry, `dup2` the descriptors into place, start a
//! session of its own (`setsid`), reset the signal mask, `execve`. If exec
//! fails the child writes one line to stderr and exits 127, which the master
//! sees as a start-up failure.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;
use nix::unistd::Pid;

/// Environment variables the master never passes to its workers.
const SCRUBBED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// Room for the digits of a pid in `LISTEN_PID=`.
const PID_DIGITS: usize = 20;

/// Starts `program` with `fds` as descriptors 3, 4, … named `names`, and
/// `extra_env` added to the master's environment.
pub fn spawn(
    program: &Path,
    args: &[&str],
    fds: &[(BorrowedFd<'_>, &str)],
    extra_env: &[(&str, String)],
) -> std::io::Result<Pid> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let path =
        CString::new(program.as_os_str().as_bytes()).map_err(|_| invalid("NUL in program path"))?;
    let mut argv_c = vec![path.clone()];
    for a in args {
        argv_c.push(CString::new(*a).map_err(|_| invalid("NUL in argument"))?);
    }

    let mut env_c: Vec<CString> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let scrub = SCRUBBED.iter().any(|s| k == *s) || extra_env.iter().any(|(e, _)| k == *e);
        if scrub {
            continue;
        }
        let mut kv: OsString = k;
        kv.push("=");
        kv.push(v);
        if let Ok(c) = CString::new(kv.as_bytes()) {
            env_c.push(c);
        }
    }
    for (k, v) in extra_env {
        env_c.push(CString::new(format!("{k}={v}")).map_err(|_| invalid("NUL in environment"))?);
    }
    env_c.push(CString::new(format!("LISTEN_FDS={}", fds.len())).expect("digits only"));
    let names: Vec<&str> = fds.iter().map(|(_, n)| *n).collect();
    env_c.push(
        CString::new(format!("LISTEN_FDNAMES={}", names.join(":")))
            .map_err(|_| invalid("NUL in fd name"))?,
    );
    // Filled in by the child; the buffer is the child's own copy after fork.
    let mut pid_entry: Vec<u8> = b"LISTEN_PID=".to_vec();
    let pid_at = pid_entry.len();
    pid_entry.extend_from_slice(&[0u8; PID_DIGITS + 1]);

    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(pid_entry.as_ptr().cast());
    envp.push(std::ptr::null());
    let sources: Vec<RawFd> = fds.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let first_free = 3 + sources.len() as RawFd;

    fork_exec(
        &argv,
        &envp,
        pid_entry.as_mut_ptr().wrapping_add(pid_at),
        &sources,
        first_free,
    )
}

#[allow(unsafe_code)]
fn fork_exec(
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    pid_digits: *mut u8,
    sources: &[RawFd],
    first_free: RawFd,
) -> std::io::Result<Pid> {
    // SAFETY: after fork the child calls only async-signal-safe functions
    // (getpid, fcntl, dup2, setsid, sigprocmask, execve, write, _exit) and touches only
    // memory prepared before the fork; it never returns into Rust code that
    // could allocate or take a lock.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => unsafe {
            child(argv, envp, pid_digits, sources, first_free);
        },
        pid => Ok(Pid::from_raw(pid)),
    }
}

/// The child side of [`fork_exec`]. Never returns.
#[allow(unsafe_code)]
unsafe fn child(
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    pid_digits: *mut u8,
    sources: &[RawFd],
    first_free: RawFd,
) -> ! {
    // SAFETY (whole function): see fork_exec; every pointer was prepared by the
    // parent before fork and is valid in the child's copy of the address space.
    unsafe {
        // LISTEN_PID: digits of getpid(), written without allocating.
        let mut pid = libc::getpid() as u64;
        let mut tmp = [0u8; PID_DIGITS];
        let mut n = 0;
        loop {
            tmp[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        for i in 0..n {
            *pid_digits.add(i) = tmp[n - 1 - i];
        }
        *pid_digits.add(n) = 0;

        // Move every source above the target range first, so that no dup2 below
        // overwrites a source that is still to be placed.
        let mut high = [0 as RawFd; 64];
        for (i, &fd) in sources.iter().enumerate().take(64) {
            high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first_free);
            if high[i] < 0 {
                fail(b"postern: cannot duplicate an inherited descriptor\n");
            }
        }
        for (i, &fd) in high.iter().enumerate().take(sources.len().min(64)) {
            // dup2 clears close-on-exec on the new descriptor.
            if libc::dup2(fd, 3 + i as RawFd) < 0 {
                fail(b"postern: cannot place an inherited descriptor\n");
            }
        }
        // A session of its own: a Ctrl-C or a `kill` aimed at the master's process
        // group reaches only the master, which then stops its workers in order.
        libc::setsid();
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execve(argv[0], argv.as_ptr(), envp.as_ptr());
        fail(b"postern: cannot execute the worker program\n");
    }
}

#[allow(unsafe_code)]
fn fail(msg: &[u8]) -> ! {
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is a valid slice.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}
