//! What `postern start` checks on the machine before it binds anything:
//! the worker programs, the TLS files, the workers' user, the directories
//! it creates, the log file and, with `journald = "yes"`, the journal. `postern check` runs the same checks, so
//! that it says "valid" only for a file `start` takes, and both list every
//! problem at once, each named by its key like `Config::validate`'s.
//!
//! Not checked here: whether the listen addresses can be bound (only
//! binding tells, and `start` says which one failed).

use std::path::{Path, PathBuf};

use nix::unistd::AccessFlags;
use postern_shared::config::{Config, Problem};

/// The programs the master always starts.
pub const WORKERS: [&str; 3] = ["postern-router", "postern-updater", "postern-smtpd"];
/// … and the console's, when `[web] listen` or `[metrics] listen` is set.
pub const WEB: &str = "postern-web";

/// Every problem `start` would meet on this machine with `config`.
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |key: &str, message: String| {
        out.push(Problem {
            key: key.into(),
            message,
        })
    };

    match daemon_dir(config) {
        Ok(dir) => {
            let whence = match &config.process.daemon_dir {
                Some(d) => format!("process.daemon_dir is {}", d.display()),
                None => format!(
                    "process.daemon_dir is not set: they are looked for next to postern, in {}",
                    dir.display()
                ),
            };
            let web =
                (config.web.enabled() || config.metrics.listen_addr().is_some()).then_some(WEB);
            for name in WORKERS.into_iter().chain(web) {
                let path = dir.join(name);
                if let Some(why) = not_a_program(&path) {
                    bad(
                        "process.daemon_dir",
                        format!("worker program {} {why} ({whence})", path.display()),
                    );
                }
            }
        }
        Err(why) => bad("process.daemon_dir", why),
    }

    if let Some(t) = &config.tls {
        for (key, path, marker, what) in [
            (
                "tls.cert",
                &t.cert,
                "-----BEGIN CERTIFICATE-----",
                "PEM certificate",
            ),
            ("tls.key", &t.key, "PRIVATE KEY-----", "PEM private key"),
        ] {
            match std::fs::read_to_string(path) {
                Ok(text) if text.contains(marker) => {}
                Ok(_) => bad(key, format!("{} holds no {what}", path.display())),
                Err(e) => bad(key, format!("cannot read {}: {e}", path.display())),
            }
        }
    }

    if let Some(name) = config.process.user.as_deref().filter(|n| !n.is_empty()) {
        match nix::unistd::User::from_name(name) {
            Ok(Some(_)) => {}
            Ok(None) => bad("process.user", format!("user {name:?} does not exist")),
            Err(e) => bad("process.user", format!("cannot look up user {name:?}: {e}")),
        }
    }

    // Root with its capabilities limited (a systemd unit): say now what
    // the workers would die of at their start.
    if config
        .process
        .user
        .as_deref()
        .is_some_and(|n| !n.is_empty())
        && nix::unistd::geteuid().is_root()
    {
        use postern_shared::runtime::worker::{
            in_bounding_set, CHROOT_CAPABILITY, DROP_CAPABILITIES,
        };
        let missing: Vec<&str> = DROP_CAPABILITIES
            .iter()
            .filter(|(cap, _)| !in_bounding_set(*cap))
            .map(|(_, name)| *name)
            .collect();
        if !missing.is_empty() {
            bad(
                "process.user",
                format!(
                    "starting the workers as this user needs {}, which this process can never have (not in its capability bounding set)",
                    missing.join(", ")
                ),
            );
        }
        if !config.process.chroot.is_empty() && !in_bounding_set(CHROOT_CAPABILITY.0) {
            bad(
                "process.chroot",
                format!(
                    "chrooting smtpd needs {}, which this process can never have (not in its capability bounding set; under systemd, install the unit's chroot drop-in: docs/operations.md)",
                    CHROOT_CAPABILITY.1
                ),
            );
        }
    }

    let p = &config.process;
    for (key, dir) in [
        ("process.run_dir", &p.run_dir),
        ("process.state_dir", &p.state_dir),
        ("process.spool_dir", &p.spool_dir),
    ] {
        if let Some(why) = cannot_create(dir) {
            bad(key, why);
        }
    }
    let journal = Path::new(postern_shared::runtime::logging::JOURNAL_SOCKET);
    if config.log.journald == "yes" && !journal.exists() {
        bad(
            "log.journald",
            format!(
                "cannot write to the journal ({}): no such socket (\"auto\" logs to stderr then)",
                journal.display()
            ),
        );
    }
    if !config.log.file.is_empty() {
        let file = Path::new(&config.log.file);
        match file.parent().and_then(|d| cannot_create(d).map(|w| (d, w))) {
            Some((_, why)) => bad("log.file", why),
            None if file.exists() => {
                if !file.is_file() {
                    bad("log.file", format!("{} is not a file", file.display()));
                } else if let Err(e) = nix::unistd::access(file, AccessFlags::W_OK) {
                    bad(
                        "log.file",
                        format!("{} cannot be written: {}", file.display(), e.desc()),
                    );
                }
            }
            None => {}
        }
    }
    out
}

/// Where the worker programs are: `process.daemon_dir`, else the directory
/// of the running `postern`.
pub fn daemon_dir(config: &Config) -> Result<PathBuf, String> {
    if let Some(d) = &config.process.daemon_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot locate the postern executable: {e}"))?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no directory", exe.display()))
}

/// Why `path` cannot be started as a program, or `None`.
fn not_a_program(path: &Path) -> Option<&'static str> {
    match path.metadata() {
        Err(_) => Some("is missing"),
        Ok(m) if !m.is_file() => Some("is not a file"),
        Ok(_) => nix::unistd::access(path, AccessFlags::X_OK)
            .err()
            .map(|_| "is not executable"),
    }
}

/// Why directory `dir` can be neither used nor created, or `None`: it must
/// be a directory, or its nearest existing parent one this user may write.
fn cannot_create(dir: &Path) -> Option<String> {
    let mut at = dir;
    loop {
        match at.metadata() {
            Ok(m) if m.is_dir() => {
                if at == dir {
                    return None;
                }
                let writable = nix::unistd::access(at, AccessFlags::W_OK | AccessFlags::X_OK);
                return writable.err().map(|e| {
                    format!(
                        "{} cannot be created: {} is not writable ({})",
                        dir.display(),
                        at.display(),
                        e.desc()
                    )
                });
            }
            Ok(_) => {
                return Some(if at == dir {
                    format!("{} is not a directory", dir.display())
                } else {
                    format!(
                        "{} cannot be created: {} is not a directory",
                        dir.display(),
                        at.display()
                    )
                })
            }
            Err(_) => match at.parent() {
                Some(up) => at = up,
                None => return None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_yes_needs_the_journal_socket() {
        let mut config = Config::default();
        config.log.journald = "yes".into();
        let said = problems(&config).iter().any(|p| p.key == "log.journald");
        let socket = Path::new(postern_shared::runtime::logging::JOURNAL_SOCKET).exists();
        assert_eq!(said, !socket);
        config.log.journald = "auto".into();
        assert!(!problems(&config).iter().any(|p| p.key == "log.journald"));
    }

    #[test]
    fn directories_are_usable_or_creatable_under_a_directory() {
        let tmp = std::env::temp_dir().join(format!("postern-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("dir");
        let file = tmp.join("a-file");
        std::fs::write(&file, "x").expect("file");
        assert_eq!(cannot_create(&tmp), None);
        assert_eq!(cannot_create(&tmp.join("new/deeper")), None);
        assert_eq!(
            cannot_create(&file),
            Some(format!("{} is not a directory", file.display()))
        );
        assert_eq!(
            cannot_create(&file.join("sub")),
            Some(format!(
                "{} cannot be created: {} is not a directory",
                file.join("sub").display(),
                file.display()
            ))
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
