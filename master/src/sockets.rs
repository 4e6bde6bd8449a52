//! The sockets the master binds once and hands to its workers.
//!
//! TCP listeners get `SO_REUSEADDR` (a restart does not wait for TIME_WAIT)
//! and, for IPv6, `IPV6_V6ONLY`, so that `0.0.0.0:25` and `[::]:25` can be
//! bound side by side. Unix sockets live in `process.run_dir`; a stale file
//! from a crashed master is removed first, and the router socket is handed to
//! the workers' user so that an unprivileged smtpd can connect to it.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::Context;
use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

/// Listen backlog: connections wait here while a worker restarts.
const BACKLOG: i32 = 1024;

/// Binds a TCP listener; returns it with the address actually bound (port 0 picks one).
pub fn bind_tcp(addr: SocketAddr) -> anyhow::Result<(OwnedFd, SocketAddr)> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .with_context(|| format!("socket for {addr}"))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).context("SO_REUSEADDR")?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).context("IPV6_V6ONLY")?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))
        .with_context(|| format!("listen on {addr}"))?;
    let bound = nix::sys::socket::getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|s| {
            s.as_sockaddr_in()
                .map(|a| SocketAddr::from((a.ip(), a.port())))
                .or_else(|| {
                    s.as_sockaddr_in6()
                        .map(|a| SocketAddr::from((a.ip(), a.port())))
                })
        })
        .unwrap_or(addr);
    Ok((fd, bound))
}

/// Binds a Unix stream socket at `path`: mode 0600, or, for the workers
/// of `owner`, 0660 with its group. Only the group changes: the file's
/// creator may give it a group it is in (the systemd unit runs the master
/// with `Group=postern`) without CAP_CHOWN.
pub fn bind_unix(path: &Path, owner: Option<&nix::unistd::User>) -> anyhow::Result<OwnedFd> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    let mode = if owner.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(u) = owner {
        nix::unistd::chown(path, None, Some(u.gid)).with_context(|| {
            format!(
                "giving {} to the group of {} (the master needs CAP_CHOWN, or to run with that group)",
                path.display(),
                u.name
            )
        })?;
    }
    Ok(OwnedFd::from(l))
}
