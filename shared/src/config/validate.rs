//! The checks of a configuration as a whole: [`Config::validate`] (every
//! problem, each named by its key) and [`Config::warnings`] (what is valid
//! but probably a mistake), and the lines of `[[server]]` blocks that
//! problems about servers are given.

use super::*;

impl Config {
    /// Checks every value; returns every problem found (empty: valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: String, message: String| out.push(Problem { key, message });
        let p = &self.proxy;

        // Without a server every recipient gets a permanent 554: such a file
        // is a mistake, unless postern only answers an existing Postfix's
        // policy questions (`[policy_server]`).
        if self.servers.is_empty() && self.policy_server.listen.is_empty() {
            bad(
                "server".into(),
                "at least one [[server]] is needed: without one every recipient gets 554 5.7.1 Relaying denied".into(),
            );
        }

        if p.listen.is_empty() {
            bad(
                "proxy.listen".into(),
                "at least one address is needed".into(),
            );
        }
        for (i, l) in p.listen.iter().enumerate() {
            if l.parse::<SocketAddr>().is_err() {
                bad(
                    format!("proxy.listen[{i}]"),
                    format!("{l:?} is not an address:port such as \"0.0.0.0:25\" or \"[::]:25\""),
                );
            }
        }
        if !is_hostname(&p.hostname) {
            bad(
                "proxy.hostname".into(),
                format!("{:?} is not a valid host name", p.hostname),
            );
        }
        if p.banner.contains(['\r', '\n']) {
            bad("proxy.banner".into(), "must be one line".into());
        }
        if p.admin_user.is_some() != p.admin_password.is_some() {
            bad(
                "proxy.admin_user".into(),
                "admin_user and admin_password go together".into(),
            );
        }
        if let Some(a) = &p.update_address {
            let ok = a.rsplit_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && !l.contains(['@', '<', '>', ' ']) && is_hostname(d)
            });
            if !ok {
                bad(
                    "proxy.update_address".into(),
                    format!("{a:?} is not an address such as \"update@mx.example.net\""),
                );
            }
        }
        let u = &self.update;
        for (key, d) in [
            ("update.retry_min", u.retry_min),
            ("update.retry_max", u.retry_max),
            ("update.max_age", u.max_age),
            ("update.restart_timeout", u.restart_timeout),
        ] {
            if d.0 < std::time::Duration::from_secs(1) {
                bad(key.into(), "must be at least 1s".into());
            }
        }
        if u.retry_max < u.retry_min {
            bad(
                "update.retry_max".into(),
                "must not be shorter than retry_min".into(),
            );
        }
        if p.max_message_size.0 < 1024 {
            bad(
                "proxy.max_message_size".into(),
                "must be at least 1KB".into(),
            );
        }
        for (key, v) in [
            ("proxy.max_recipients", p.max_recipients),
            ("proxy.max_connections", p.max_connections),
            ("proxy.max_connections_per_ip", p.max_connections_per_ip),
        ] {
            if v == 0 {
                bad(key.into(), "must be at least 1".into());
            }
        }
        if p.prepared_connections > MAX_PREPARED {
            bad(
                "proxy.prepared_connections".into(),
                format!("must be at most {MAX_PREPARED}"),
            );
        }
        for (key, d) in [
            ("proxy.command_timeout", p.command_timeout),
            ("proxy.data_timeout", p.data_timeout),
        ] {
            if d.0 < std::time::Duration::from_secs(1) {
                bad(key.into(), "must be at least 1s".into());
            }
        }
        if let Some(t) = &self.tls {
            for (key, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if !path.is_absolute() {
                    bad(
                        key.into(),
                        format!("{} is not an absolute path", path.display()),
                    );
                }
            }
        }

        for (i, l) in self.policy_server.listen.iter().enumerate() {
            match l.value() {
                PolicyListen::Unix(path) if !path.starts_with(&self.process.run_dir) => bad(
                    format!("policy_server.listen[{i}]"),
                    format!(
                        "{:?}: a Unix socket lives in process.run_dir ({}), which the master owns",
                        l.text(),
                        self.process.run_dir.display()
                    ),
                ),
                _ => {}
            }
        }
        let g = &self.greylist;
        if g.delay.0 < std::time::Duration::from_secs(1) {
            bad("greylist.delay".into(), "must be at least 1s".into());
        }
        if g.retry_window < g.delay {
            bad(
                "greylist.retry_window".into(),
                "must not be shorter than delay".into(),
            );
        }
        if g.auto_whitelist.0 < std::time::Duration::from_secs(60) {
            bad(
                "greylist.auto_whitelist".into(),
                "must be at least 1m".into(),
            );
        }
        if g.ipv4_prefix == 0 || g.ipv4_prefix > 32 {
            bad(
                "greylist.ipv4_prefix".into(),
                "must be between 1 and 32".into(),
            );
        }
        if g.ipv6_prefix == 0 || g.ipv6_prefix > 128 {
            bad(
                "greylist.ipv6_prefix".into(),
                "must be between 1 and 128".into(),
            );
        }
        match g.store.as_str() {
            "embedded" => {}
            s if s.strip_prefix("redis://").is_some_and(|rest| {
                let host = rest.split(['/', '?']).next().unwrap_or("");
                !host.is_empty() && !host.contains(char::is_whitespace)
            }) => {}
            s => bad(
                "greylist.store".into(),
                format!("{s:?} is not \"embedded\" nor a URL such as \"redis://127.0.0.1:6379/0\""),
            ),
        }
        if !matches!(g.on_store_error.as_str(), "accept" | "defer") {
            bad(
                "greylist.on_store_error".into(),
                format!("{:?} is not accept or defer", g.on_store_error),
            );
        }
        let po = &self.policy;
        if let Some(f) = &po.access_file {
            if !f.is_absolute() {
                bad(
                    "policy.access_file".into(),
                    format!("{} is not an absolute path", f.display()),
                );
            }
        }
        for (i, r) in po.restrictions.iter().enumerate() {
            if po.restrictions[..i].contains(r) {
                bad(
                    format!("policy.restrictions[{i}]"),
                    format!("{:?} is listed twice", r.as_str()),
                );
            }
        }
        if po.dns_timeout.0 < std::time::Duration::from_millis(100)
            || po.dns_timeout.0 > std::time::Duration::from_secs(30)
        {
            bad(
                "policy.dns_timeout".into(),
                "must be between 100ms and 30s".into(),
            );
        }
        for (i, l) in po.exempt_recipients.iter().enumerate() {
            if l.is_empty() || l.contains(['@', ' ', '<', '>']) {
                bad(
                    format!("policy.exempt_recipients[{i}]"),
                    format!("{l:?} is not a local part such as \"postmaster\""),
                );
            }
        }

        let pr = &self.process;
        if pr.smtpd_processes == 0 || pr.smtpd_processes > 64 {
            bad(
                "process.smtpd_processes".into(),
                "must be between 1 and 64".into(),
            );
        }
        if let Some(u) = &pr.user {
            if u.is_empty() {
                bad(
                    "process.user".into(),
                    "must not be empty (leave it out instead)".into(),
                );
            }
        }
        for (key, dir) in [
            ("process.run_dir", &pr.run_dir),
            ("process.state_dir", &pr.state_dir),
            ("process.spool_dir", &pr.spool_dir),
        ] {
            if !dir.is_absolute() {
                bad(
                    key.into(),
                    format!("{} is not an absolute path", dir.display()),
                );
            }
        }
        if let Some(d) = &pr.daemon_dir {
            if !d.is_absolute() {
                bad(
                    "process.daemon_dir".into(),
                    format!("{} is not an absolute path", d.display()),
                );
            }
        }
        if !pr.chroot.is_empty() {
            let root = Path::new(&pr.chroot);
            if !root.is_absolute() {
                bad(
                    "process.chroot".into(),
                    format!("{} is not an absolute path", pr.chroot),
                );
            } else if !pr.run_dir.starts_with(root) {
                bad(
                    "process.chroot".into(),
                    format!(
                        "run_dir {} must lie inside the chroot {} so that smtpd can reach the router",
                        pr.run_dir.display(),
                        pr.chroot
                    ),
                );
            }
        }

        let l = &self.log;
        if !["error", "warn", "info", "debug", "trace"].contains(&l.level.as_str()) {
            bad(
                "log.level".into(),
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    l.level
                ),
            );
        }
        match l.journald.as_str() {
            "auto" | "yes" | "no" => {}
            other => bad(
                "log.journald".into(),
                format!("{other:?} is not one of auto, yes, no"),
            ),
        }
        if !l.file.is_empty() && !Path::new(&l.file).is_absolute() {
            bad(
                "log.file".into(),
                format!("{:?} is not an absolute path", l.file),
            );
        }

        if let Some(l) = &self.metrics.listen {
            if !l.0.ip().is_loopback() {
                bad(
                    "metrics.listen".into(),
                    format!("{:?} is not a loopback address: the endpoint has no authentication (use 127.0.0.1 or [::1])", l.text()),
                );
            }
        }

        let mut owner: std::collections::HashMap<String, usize> = Default::default();
        let mut users: std::collections::HashMap<String, usize> = Default::default();
        let mut names: std::collections::HashMap<String, usize> = Default::default();
        for (i, s) in self.servers.iter().enumerate() {
            let k = |f: &str| format!("server[{}].{f}", i + 1);
            // Every per-server record (update copies, restarts, health,
            // logs) is keyed by this name: two servers must never share it.
            let name = s.display_name();
            if let Some(prev) = names.insert(name.to_lowercase(), i) {
                let unnamed = if s.name.is_none() {
                    " (host:port, as it has no name)"
                } else {
                    ""
                };
                bad(
                    k("name"),
                    format!(
                        "{name:?}{unnamed} is also the name of server[{}]: give each server a name of its own",
                        prev + 1
                    ),
                );
            }
            if s.host.trim().is_empty() {
                bad(k("host"), "is required".into());
            }
            if s.port == 0 {
                bad(k("port"), "must be between 1 and 65535".into());
            }
            if s.timeout.0 < std::time::Duration::from_millis(100) {
                bad(k("timeout"), "must be at least 100ms".into());
            }
            if s.user.is_some() != s.password.is_some() {
                bad(k("user"), "user and password go together".into());
            }
            if let Some(u) = &s.user {
                if u.is_empty() || u.contains(['\r', '\n', '\0']) {
                    bad(k("user"), "must be a non-empty name on one line".into());
                } else if let Some(prev) = users.insert(u.clone(), i) {
                    bad(
                        k("user"),
                        format!(
                            "{u:?} is also the user of server[{}]: AUTH could not tell them apart",
                            prev + 1
                        ),
                    );
                }
            }
            if s.domains.is_empty() {
                bad(k("domains"), "at least one domain is required".into());
            }
            for (j, d) in s.domains.iter().enumerate() {
                let norm = normalize_domain(d);
                let bare = norm.strip_prefix('.').unwrap_or(&norm);
                if !is_hostname(bare) {
                    bad(
                        format!("{}[{j}]", k("domains")),
                        format!("{d:?} is not a domain name"),
                    );
                    continue;
                }
                if let Some(prev) = owner.insert(norm.clone(), i) {
                    if prev != i {
                        bad(
                            format!("{}[{j}]", k("domains")),
                            format!("{d:?} is also a domain of server[{}]", prev + 1),
                        );
                    }
                }
            }
            if let Some(cmd) = &s.restart_command {
                if cmd.is_empty() || cmd[0].is_empty() {
                    bad(k("restart_command"), "needs at least the program".into());
                }
            }
        }
        // The console (SPEC §11): where it listens, and someone who can log in.
        for (i, l) in self.web.listen.iter().enumerate() {
            if l.parse::<SocketAddr>().is_err() {
                bad(
                    format!("web.listen[{i}]"),
                    format!("{l:?} is not an address:port such as \"127.0.0.1:8025\""),
                );
            }
        }
        if self.web.enabled() && (p.admin_user.is_none() || p.admin_password.is_none()) {
            bad(
                "web.listen".into(),
                "the console needs proxy.admin_user and proxy.admin_password to log in with".into(),
            );
        }
        if self.web.tls && self.tls.is_none() {
            bad(
                "web.tls".into(),
                "HTTPS for the console needs a certificate: set [tls] cert and key".into(),
            );
        }
        // Aliases (SPEC §12): each alone, then the table as a whole once
        // every alias is right (a faulty one would make false loops).
        let (aliases, problems) = crate::alias::Aliases::build(&self.aliases);
        if problems.is_empty() {
            let index = crate::domains::DomainIndex::new(&self.servers);
            out.extend(aliases.check(&self.servers, &index, self.proxy.max_recipients));
        } else {
            out.extend(problems);
        }
        out
    }

    /// What is valid but probably a mistake, each named by its key; printed
    /// by `check` as `warning: KEY: text` (SPEC §8) and logged at start and
    /// at each reload. Warnings never refuse a file.
    ///
    /// Today: relay lists and `admin_networks` that are *wide* (more than a
    /// /8 of IPv4 or a /16 of IPv6, see [`IpNet::wide`]): every client in
    /// them may relay to any domain, or send RELOAD and update mails.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, n) in self.proxy.admin_networks.iter().enumerate() {
            if let Some(why) = n.wide() {
                out.push(Problem {
                    key: format!("proxy.admin_networks[{i}]"),
                    message: format!(
                        "{:?} {why}: every client in it may send RELOAD and update mails",
                        n.text()
                    ),
                });
            }
        }
        for (i, s) in self.servers.iter().enumerate() {
            for (j, r) in s.relay.iter().enumerate() {
                if let Some(why) = r.wide() {
                    out.push(Problem {
                        key: format!("server[{}].relay[{j}]", i + 1),
                        message: format!(
                            "{:?} {why}: every client in it may relay mail to any domain through {} (an open relay)",
                            r.text(),
                            s.display_name()
                        ),
                    });
                }
            }
        }
        for (i, l) in self.policy_server.listen.iter().enumerate() {
            if let PolicyListen::Tcp(a) = l.value() {
                if !a.ip().is_loopback() {
                    out.push(Problem {
                        key: format!("policy_server.listen[{i}]"),
                        message: format!(
                            "{:?} is not a loopback address: whoever reaches it may ask the policy (firewall it to your Postfix hosts)",
                            l.text()
                        ),
                    });
                }
            }
        }
        out
    }
}

/// The line (from 1) of each `[[TABLE]]` header of a TOML text, in order
/// (`table` is `server` or `alias`).
pub(super) fn block_lines(text: &str, table: &str) -> Vec<usize> {
    let header = format!("[[{table}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let bare: String = l
                .chars()
                .take_while(|&c| c != '#')
                .filter(|c| !c.is_whitespace())
                .collect();
            bare == header
        })
        .map(|(i, _)| i + 1)
        .collect()
}

/// Gives a problem about a block of `table` (`server`, `alias`) the line
/// of its block, at the end as the type errors have it (`server[2].port: …
/// (line 14)`), and another block it names its line too (`… of server[1],
/// at line 4`), so that a problem between two blocks shows both places.
pub(super) fn with_block_lines(p: &mut Problem, table: &str, lines: &[usize]) {
    let open = format!("{table}[");
    let block = |text: &str| -> Option<(usize, usize)> {
        let rest = text.strip_prefix(open.as_str())?;
        let n_len = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: usize = rest[..n_len].parse().ok()?;
        rest[n_len..].starts_with(']').then_some(())?;
        Some((n, open.len() + n_len + 1))
    };
    let mut message = String::with_capacity(p.message.len() + 16);
    let mut rest = p.message.as_str();
    while let Some(at) = rest.find(open.as_str()) {
        let (before, from) = rest.split_at(at);
        message.push_str(before);
        match block(from).and_then(|(n, len)| Some((lines.get(n.checked_sub(1)?)?, len))) {
            Some((line, len)) => {
                message.push_str(&from[..len]);
                message.push_str(&format!(", at line {line}"));
                rest = &from[len..];
            }
            None => {
                message.push_str(&open);
                rest = &from[open.len()..];
            }
        }
    }
    message.push_str(rest);
    if let Some(line) = block(&p.key).and_then(|(n, _)| lines.get(n.checked_sub(1)?)) {
        message.push_str(&format!(" (line {line})"));
    }
    p.message = message;
}
