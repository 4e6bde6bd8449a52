//! The Debian package (README "Install"), as an administrator meets it:
//! built with cargo-deb, installed with `dpkg -i`, checked, then purged.
//!
//! The package is made from the binaries `tests/run` has already built (the
//! debug build: `cargo deb --profile dev --no-build`), so the test costs no
//! second build of the workspace; a release package (`cargo deb -p
//! postern`) is made from the same `[package.metadata.deb]` of
//! `master/Cargo.toml` and differs only in how the binaries were compiled.
//!
//! It installs into this machine's own system (CI is a throw-away machine,
//! and the tests run as root): `/usr/sbin/postern`, the unit, the `postern`
//! user. It purges the package at the end, pass or fail; the user stays, as
//! Debian leaves system users in place. A postern package that was
//! installed before the test is never touched: the test fails and says so.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use postern_tests::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// stdout and stderr together, for assertions and failure messages.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// dpkg's status of the postern package ("" when dpkg does not know it).
fn package_status() -> String {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "postern"]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The installed package: purged when the test ends, pass or fail.
struct Installed;

impl Installed {
    fn purge(&self) -> Output {
        run(Command::new("dpkg")
            .args(["--purge", "postern"])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !package_status().is_empty() && !package_status().ends_with("not-installed") {
            let _ = self.purge();
        }
    }
}

/// Builds the package from the debug build into `dir`; returns its path.
fn build_package(dir: &TempDir) -> PathBuf {
    let deb = dir.path("postern.deb");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(Command::new(cargo)
        .current_dir(repo())
        .args([
            "deb",
            "-p",
            "postern",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
        ])
        // A release package's symbols go to a -dbgsym package; the debug
        // build's are simply stripped.
        .args(["--strip", "--no-dbgsym"])
        .arg("--output")
        .arg(&deb));
    assert!(
        out.status.success(),
        "cargo deb failed (tests/run installs cargo-deb):\n{}",
        said(&out)
    );
    deb
}

#[test]
fn the_package_installs_checks_its_configuration_verifies_its_unit_and_purges() {
    let before = package_status();
    assert!(
        before.is_empty() || before.ends_with("not-installed"),
        "a postern package is already on this machine ({before}); this test installs \
         and purges its own and leaves that one alone: remove it first (dpkg --purge postern)"
    );
    let dir = TempDir::new("package");
    let deb = build_package(&dir);

    let installed = Installed;
    let out = run(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(out.status.success(), "dpkg -i:\n{}", said(&out));

    // What the package put where.
    let files = String::from_utf8_lossy(&run(Command::new("dpkg").args(["-L", "postern"])).stdout)
        .into_owned();
    for path in [
        "/usr/sbin/postern",
        "/usr/sbin/postern-smtpd",
        "/usr/sbin/postern-router",
        "/usr/sbin/postern-updater",
        "/usr/lib/systemd/system/postern.service",
        "/usr/lib/sysusers.d/postern.conf",
        "/usr/lib/tmpfiles.d/postern.conf",
        "/etc/postern/postern.toml",
        "/usr/share/man/man8/postern.8.gz",
        "/usr/share/doc/postern/README.md",
        "/usr/share/doc/postern/examples/postern.toml",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} not in:\n{files}");
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "postern"]));
    assert!(
        said(&conffiles).contains("/etc/postern/postern.toml"),
        "the configuration must be a conffile: {}",
        said(&conffiles)
    );

    // The installed binary says which version it is.
    let out = run(Command::new("/usr/sbin/postern").arg("--version"));
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(
        said(&out).trim(),
        format!("postern {}", env!("CARGO_PKG_VERSION"))
    );

    // postinst made the workers' user and their directories.
    let user = nix::unistd::User::from_name("postern")
        .expect("user lookup")
        .expect("postinst creates the postern user (systemd-sysusers)");
    for d in ["/var/lib/postern", "/var/spool/postern"] {
        let m = std::fs::metadata(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        assert!(m.is_dir());
        assert_eq!(
            (m.uid(), m.gid()),
            (user.uid.as_raw(), user.gid.as_raw()),
            "{d}"
        );
    }

    // The unit's own check of the packaged configuration passes, as it would
    // before every start (ExecStartPre=), and so does the default path.
    let unit = "/usr/lib/systemd/system/postern.service";
    let unit_text = std::fs::read_to_string(unit).expect("unit");
    let pre: Vec<&str> = unit_text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre="))
        .expect("ExecStartPre= in the unit")
        .split_whitespace()
        .collect();
    let out = run(Command::new(pre[0]).args(&pre[1..]));
    assert!(out.status.success(), "{}: {}", pre.join(" "), said(&out));
    let out = run(Command::new("/usr/sbin/postern")
        .arg("check")
        .env_remove("POSTERN_CONFIG"));
    assert!(out.status.success(), "postern check: {}", said(&out));
    assert!(
        said(&out).contains("/etc/postern/postern.toml: configuration is valid"),
        "{}",
        said(&out)
    );

    // The installed unit verifies without a word (verify exits 0 on warnings).
    let out = run(Command::new("systemd-analyze").args(["verify", unit]));
    assert!(
        out.status.success() && said(&out).is_empty(),
        "systemd-analyze verify {unit}:\n{}",
        said(&out)
    );
    // Installed, not enabled: postern takes port 25, the administrator
    // enables it once the configuration names the servers.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/postern.service").exists());

    // The installed master finds its workers next to it, in /usr/sbin, and
    // drops them to the postern user.
    serve_one_session_with_the_installed_binaries();

    // Purge takes everything back, the configuration and the state too.
    let out = installed.purge();
    assert!(out.status.success(), "dpkg --purge:\n{}", said(&out));
    for gone in [
        "/usr/sbin/postern",
        "/usr/sbin/postern-smtpd",
        "/etc/postern/postern.toml",
        "/usr/lib/systemd/system/postern.service",
        "/var/lib/postern",
        "/var/spool/postern",
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after purge"
        );
    }
}

/// Starts `/usr/sbin/postern` on loopback with a scratch configuration and
/// sends one message through it.
fn serve_one_session_with_the_installed_binaries() {
    let backend = RecordingBackend::start();
    let dir = TempDir::new("package-start");
    let conf = config_text(&dir, &server_block("One", backend.port(), &["one.test"]))
        .replace("[process]\n", "[process]\nuser = \"postern\"\n");
    let path = dir.path("postern.toml");
    std::fs::write(&path, conf).expect("write config");
    let log = dir.path("postern.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut master = ChildGuard(
        Command::new("/usr/sbin/postern")
            .arg("-c")
            .arg(&path)
            .arg("start")
            .env_remove("JOURNAL_STREAM")
            .env_remove("INVOCATION_ID")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start the installed postern"),
    );
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let addr: std::net::SocketAddr = wait_for("postern to listen", || {
        text()
            .lines()
            .find_map(|l| {
                l.rsplit_once("listening on ")
                    .map(|(_, a)| a.trim().to_string())
            })
            .and_then(|a| a.parse().ok())
    });
    wait_for("the workers to be ready", || {
        text().contains("ready: router and").then_some(())
    });
    let (out, ok) = swaks(addr, &["--from", "a@elsewhere.test", "--to", "b@one.test"]);
    assert!(ok, "{out}");
    assert_eq!(backend.wait_messages(1).len(), 1);

    // Every worker is the installed binary, running as postern.
    let user = nix::unistd::User::from_name("postern")
        .expect("lookup")
        .expect("postern user");
    let mut workers = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid != master.0.id() {
            continue;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let uid = std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .unwrap_or(0);
        assert!(
            exe.to_string_lossy().starts_with("/usr/sbin/postern-"),
            "worker {pid} runs {}",
            exe.display()
        );
        assert_eq!(uid, user.uid.as_raw(), "worker {pid} ({})", exe.display());
        workers += 1;
    }
    // The router, the updater and two smtpd.
    assert_eq!(workers, 4, "{}", text());
    assert!(master.stop().success(), "{}", text());
}
