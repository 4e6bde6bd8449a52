//! The routing page's served domains and the MX check: each served
//! domain's MX through the router's resolver, and whether it is this host.

use std::net::IpAddr;

use postern_shared::ipc::proto::Attrs;
use std::sync::Arc;

use postern_shared::ipc::RouterRequest;
use postern_shared::net::unmap;
use tokio::sync::Semaphore;

use crate::pages;
use crate::Shared;

/// Every domain postern serves and where its mail goes: the servers'
/// domains, then the alias domains.
pub(crate) fn served_domains(config: &postern_shared::config::Config) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = config
        .servers
        .iter()
        .flat_map(|sv| {
            sv.domains
                .iter()
                .map(move |d| (d.clone(), sv.display_name()))
        })
        .collect();
    let (aliases, _) = postern_shared::alias::Aliases::build(&config.aliases);
    let index = postern_shared::domains::DomainIndex::new(&config.servers);
    for d in aliases.summaries(&index) {
        if d.listed_by.is_none() {
            out.push((d.domain, format!("its aliases ({})", d.aliases)));
        }
    }
    out.sort();
    out
}

/// This host's addresses: the specific ones postern listens on, and every
/// interface's when it listens on all of them.
pub(crate) fn this_host(config: &postern_shared::config::Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut any = false;
    for l in &config.proxy.listen {
        match l.parse::<std::net::SocketAddr>() {
            Ok(a) if a.ip().is_unspecified() => any = true,
            Ok(a) => out.push(unmap(a.ip())),
            Err(_) => any = true,
        }
    }
    if any {
        if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
            for i in ifs {
                let ip = i.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                });
                out.extend(ip);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Most domains the MX check looks up.
pub(crate) const MX_DOMAINS: usize = 500;
/// Lookups of the MX check in flight at once.
pub(crate) const MX_AT_ONCE: usize = 16;

/// The MX check of every served domain (the first [`MX_DOMAINS`]), the
/// lookups in parallel through the router's resolver.
pub(crate) async fn mx_rows(
    shared: &Shared,
    config: &postern_shared::config::Config,
    here: &[IpAddr],
) -> Vec<pages::MxRow> {
    let domains: Vec<String> = served_domains(config)
        .into_iter()
        .map(|(d, _)| d)
        .take(MX_DOMAINS)
        .collect();
    let mut set = tokio::task::JoinSet::new();
    let at_once = Arc::new(Semaphore::new(MX_AT_ONCE));
    for (i, d) in domains.iter().enumerate() {
        let (router, domain, at_once) = (shared.router.clone(), d.clone(), at_once.clone());
        set.spawn(async move {
            let _slot = at_once.acquire_owned().await;
            let r = crate::ask_router_at(&router, RouterRequest::Mx { domain }.encode()).await;
            (i, r)
        });
    }
    let mut answers: Vec<Option<Result<Attrs, String>>> = domains.iter().map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        if let Ok((i, r)) = done {
            answers[i] = Some(r);
        }
    }
    let hostname = config
        .proxy
        .hostname
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let is_here = |host: &str, ips: &str| {
        host.eq_ignore_ascii_case(&hostname)
            || ips
                .split(',')
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .any(|a| here.contains(&unmap(a)))
    };
    domains
        .into_iter()
        .zip(answers)
        .map(|(domain, answer)| {
            let mut row = pages::MxRow {
                domain,
                here: None,
                records: Vec::new(),
                note: String::new(),
            };
            match answer {
                Some(Ok(a)) => {
                    for mx in a.get_all("mx") {
                        let mut f = mx.splitn(3, ' ');
                        let (pref, host, ips) = (
                            f.next().unwrap_or(""),
                            f.next().unwrap_or(""),
                            f.next().unwrap_or(""),
                        );
                        let shown = if ips.is_empty() {
                            format!("{pref} {host} (no address)")
                        } else {
                            format!("{pref} {host} {}", ips.replace(',', ", "))
                        };
                        row.records.push((shown, is_here(host, ips)));
                    }
                    if let Some(ips) = a.get("implicit") {
                        row.note = format!(
                            "no MX: mail goes to the domain's own addresses, {}",
                            ips.replace(',', ", ")
                        );
                        row.here = Some(is_here("", ips));
                    } else {
                        row.here = Some(row.records.iter().any(|(_, h)| *h));
                    }
                }
                Some(Err(e)) if e == "no such entry" => {
                    row.here = Some(false);
                    row.note = "no MX and no address: mail cannot reach it".into();
                }
                Some(Err(e)) => row.note = e,
                None => row.note = "no answer".into(),
            }
            row
        })
        .collect()
}
