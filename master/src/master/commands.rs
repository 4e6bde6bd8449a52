//! Backend restart commands, run for the updater (`request=restart
//! server=` on its channel).
//!
//! The master is the only process that runs commands: the argv is the
//! server's `restart_command` in the master's own configuration, never
//! taken from the request. The answer goes back when the command has been
//! reaped; one still running after `update.restart_timeout` is killed with
//! its process group.

use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use postern_shared::ipc::proto::Attrs;
use postern_shared::ipc::Outcome;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::Master;
use crate::spawn;

/// A backend restart command the master runs for the updater.
pub(super) struct RunningCommand {
    /// The server it restarts (its display name).
    pub(super) server: String,
    /// When it is killed: its start plus `update.restart_timeout`.
    pub(super) deadline: Instant,
    /// Killed at its deadline: the answer says it timed out.
    pub(super) timed_out: bool,
    /// The updater's request, answered when the command has been reaped.
    pub(super) reply: oneshot::Sender<Attrs>,
}

impl Master {
    /// Runs `server`'s `restart_command` (argv from the master's own
    /// configuration, never from the request), as the updater asks. The
    /// answer goes back when the command exits: `status=ok` for exit status 0.
    pub(super) fn run_restart_command(&mut self, server: &str, reply: oneshot::Sender<Attrs>) {
        let fail = |why: String| Outcome::tempfail(why).reply(None);
        let Some(cfg) = self
            .config
            .servers
            .iter()
            .find(|s| s.display_name() == server)
        else {
            let _ = reply.send(fail(format!("no server named {server:?}")));
            return;
        };
        let Some(argv) = cfg.restart_command.clone().filter(|a| !a.is_empty()) else {
            let _ = reply.send(fail(format!("{server} has no restart_command")));
            return;
        };
        let Some(program) = find_program(&argv[0]) else {
            warn!("restart of {server}: {} not found", argv[0]);
            let _ = reply.send(fail(format!("{}: command not found", argv[0])));
            return;
        };
        let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        match spawn::spawn(&program, &args, &[], &[]) {
            Ok(pid) => {
                info!("restart of {server}: running {argv:?} (pid {pid})");
                self.commands.insert(
                    pid,
                    RunningCommand {
                        server: server.to_string(),
                        deadline: Instant::now() + self.config.update.restart_timeout.0,
                        timed_out: false,
                        reply,
                    },
                );
            }
            Err(e) => {
                error!("restart of {server}: cannot run {argv:?}: {e}");
                let _ = reply.send(fail(format!("cannot run: {e}")));
            }
        }
    }

    /// Answers the updater once a command was reaped (`how` it ended).
    pub(super) async fn command_exited(&mut self, cmd: RunningCommand, how: &str) {
        let server = &cmd.server;
        let answer = if cmd.timed_out {
            warn!(
                "restart of {server}: killed after {} ({how})",
                self.config.update.restart_timeout
            );
            Outcome::tempfail(format!(
                "timed out after {}",
                self.config.update.restart_timeout
            ))
            .reply(None)
        } else if how == "exit status 0" {
            info!("restart of {server}: {how}");
            Outcome::Ok.reply(None).with("result", how)
        } else {
            warn!("restart of {server}: {how}");
            Outcome::tempfail(how).reply(None)
        };
        let _ = cmd.reply.send(answer);
    }

    /// SIGKILL to each command (and its process group) past its deadline.
    pub(super) fn kill_late_commands(&mut self) {
        let now = Instant::now();
        for (pid, c) in self.commands.iter_mut() {
            if !c.timed_out && c.deadline <= now {
                c.timed_out = true;
                // The command leads a session of its own: end the whole group.
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                let _ = kill(*pid, Signal::SIGKILL);
            }
        }
    }
}

/// `name` itself when it holds a `/`, else the first match in `$PATH`.
pub(super) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
