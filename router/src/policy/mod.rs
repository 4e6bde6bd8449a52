//! Policy for mail from the internet (SPEC §8): the router decides, smtpd
//! asks once per recipient of a domain-routed session
//! ([`postern_shared::ipc::policy`]) and turns the verdict into its reply.
//!
//! Order of evaluation, first decision wins. Relay control has already
//! happened in smtpd: a recipient that no server takes never gets here, so
//! no entry can open the relay.
//! 1. accept list (connect, from, to): `accept`, the rest is skipped;
//! 2. reject list (connect, from, to): `554 5.7.1 … Access denied`;
//! 3. the restrictions of `policy.restrictions`, in their order;
//! 4. the client's address in each `policy.dnsbl` zone, then the sender's
//!    domain in each `policy.rhsbl` zone, in their order: `554 5.7.1
//!    Service unavailable; … blocked using <zone>` (clients in
//!    `skip_networks` and the `exempt_recipients` of served domains are
//!    never looked up);
//! 5. greylisting (`[greylist]`, in `greylisting.rs`), for mail that
//!    reaches it: mail refused for another reason makes no entry;
//! 6. `dunno`.
//!
//! Client lookups (its verified name, its blocklist listings) start when
//! smtpd counts the connection ([`Engine::prefetch`]) and run in parallel;
//! the first RCPT awaits them. A lookup that fails or times out never
//! lists anyone, and a recipient never waits for blocklists longer than
//! twice `dns_timeout`.
//!
//! Every decision other than `dunno` is logged at info with the session id,
//! the client, the sender, the recipient, what decided and the reply.

pub mod access;
pub mod dns;
pub mod greylist;
pub mod greylist_redis;
mod greylisting;
pub mod server;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use postern_shared::access::Client;
use postern_shared::config::{Config, Restriction};
use postern_shared::dnsbl::{self, Kind, Outcome, Zone};
use postern_shared::ipc::policy::{access_verdict, Kind as RefusalKind, Query, Refusal, Verdict};
use postern_shared::net::{unmap, IpNet};
use postern_shared::stats::Rejection;
use tokio::sync::OnceCell;

use dns::{Answer, Dns};

/// How long a client's prefetched facts serve later sessions.
const FACTS_KEPT: Duration = Duration::from_secs(60);

/// What the configuration says, ready to use; replaced whole at a reload.
struct Settings {
    restrictions: Vec<Restriction>,
    dnsbl: Vec<Zone>,
    rhsbl: Vec<Zone>,
    exempt: Vec<String>,
    skip: Vec<IpNet>,
    dns: Option<Dns>,
    dns_timeout: Duration,
    /// The servers the resolver was made for (empty: the system's).
    dns_servers: Vec<std::net::SocketAddr>,
    /// `[greylist]`.
    greylist: postern_shared::config::Greylist,
    /// Changes at every reload, so that facts looked up with the old zones
    /// are not used with the new ones.
    generation: u64,
}

/// What is known of a client before its first RCPT.
#[derive(Debug, Default)]
struct Facts {
    /// Its forward-confirmed reverse name.
    verified_name: Option<String>,
    /// Per `dnsbl` zone (in order), what its lookup said.
    listings: Vec<Outcome>,
}

/// The policy's state: access lists, settings, zone health, prefetched facts.
pub struct Engine {
    /// The access lists.
    pub access: access::Lists,
    settings: RwLock<Arc<Settings>>,
    health: Mutex<HashMap<String, dnsbl::Health>>,
    facts: Mutex<HashMap<IpAddr, Prefetched>>,
    /// The greylist store, opened once greylisting is enabled.
    greylist: RwLock<Option<Arc<greylist::Store>>>,
    /// Its breaker.
    breaker: greylist::SharedBreaker,
    /// For `greylist_passed`, which only the router sees.
    stats: Arc<crate::stats::Recorder>,
    /// Greylisting's time (a test's clock can be moved).
    clock: postern_shared::runtime::time::Clock,
    /// Where the store lives.
    state_dir: std::path::PathBuf,
    /// The last attempt to open the store (at most one a second).
    opened_at: Mutex<Option<Instant>>,
    /// The manual greylist whitelist, as the store holds it (key → comment).
    whitelist: RwLock<Vec<(String, String)>>,
    /// Whether that copy was read from the store now open.
    whitelist_loaded: std::sync::atomic::AtomicBool,
}

/// A client's facts, when they were asked for and with which settings.
type Prefetched = (Instant, u64, Arc<OnceCell<Facts>>);

impl Engine {
    /// The engine for `config`.
    pub fn new(
        config: &Config,
        stats: Arc<crate::stats::Recorder>,
        clock: postern_shared::runtime::time::Clock,
    ) -> Engine {
        let e = Engine {
            access: access::Lists::load(config.access_file()),
            settings: RwLock::new(Arc::new(settings(config, 1, None))),
            health: Mutex::new(HashMap::new()),
            facts: Mutex::new(HashMap::new()),
            greylist: RwLock::new(None),
            breaker: Mutex::new(greylist::Breaker::default()),
            stats,
            clock,
            state_dir: config.process.state_dir.clone(),
            opened_at: Mutex::new(None),
            whitelist: RwLock::new(Vec::new()),
            whitelist_loaded: std::sync::atomic::AtomicBool::new(false),
        };
        e.open_greylist(&config.greylist);
        e
    }

    /// A reload: new settings, the access file read again.
    pub fn reload(&self, config: &Config) {
        self.access.reload(config.access_file());
        self.open_greylist(&config.greylist);
        let old = self.settings();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(settings(config, old.generation + 1, Some(&old)));
        self.facts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The policy's resolver, when it could be made.
    pub fn dns(&self) -> Option<Dns> {
        self.settings().dns.clone()
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any check is configured: access entries, restrictions,
    /// blocklists or greylisting. Without one, smtpd skips the policy's
    /// round trip for the session's recipients.
    pub fn active(&self) -> bool {
        let s = self.settings();
        !s.restrictions.is_empty()
            || !s.dnsbl.is_empty()
            || !s.rhsbl.is_empty()
            || s.greylist.enabled
            || !self.access.index().is_empty()
    }

    /// Starts the lookups about a client that its RCPTs will need, as soon
    /// as its connection is counted (relay clients excepted: they skip policy).
    pub fn prefetch(self: &Arc<Self>, ip: IpAddr) {
        let s = self.settings();
        let wants_name = self.access.index().has_host_patterns();
        if s.dns.is_none() || (!wants_name && (s.dnsbl.is_empty() || self.skipped(&s, ip))) {
            return;
        }
        let cell = self.facts_cell(&s, ip);
        if cell.initialized() {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            cell.get_or_init(|| engine.look_up(s, ip)).await;
        });
    }

    /// The facts' cell for `ip`, made if needed; old ones are dropped.
    fn facts_cell(&self, s: &Settings, ip: IpAddr) -> Arc<OnceCell<Facts>> {
        let ip = unmap(ip);
        let now = Instant::now();
        let mut map = self.facts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 1024 {
            map.retain(|_, (at, _, _)| now.duration_since(*at) < FACTS_KEPT);
        }
        match map.get(&ip) {
            Some((at, generation, cell))
                if *generation == s.generation && now.duration_since(*at) < FACTS_KEPT =>
            {
                cell.clone()
            }
            _ => {
                let cell = Arc::new(OnceCell::new());
                map.insert(ip, (now, s.generation, cell.clone()));
                cell
            }
        }
    }

    fn skipped(&self, s: &Settings, ip: IpAddr) -> bool {
        s.skip.iter().any(|n| n.contains(ip))
    }

    /// The client's verified name (when host patterns need it) and its
    /// listings in every client zone in use, all at once.
    async fn look_up(&self, s: Arc<Settings>, ip: IpAddr) -> Facts {
        let Some(dns) = &s.dns else {
            return Facts::default();
        };
        let name = async {
            if self.access.index().has_host_patterns() {
                dns.verified_name(ip).await
            } else {
                None
            }
        };
        let queries: Vec<(&Zone, String)> = if self.skipped(&s, ip) {
            Vec::new()
        } else {
            s.dnsbl.iter().map(|z| (z, z.client_query(ip))).collect()
        };
        let listings = futures_join_all(queries.iter().map(|(z, q)| self.ask_zone(dns, z, q)));
        let (verified_name, listings) = tokio::join!(name, listings);
        Facts {
            verified_name,
            listings,
        }
    }

    /// One blocklist query, unless the zone is out of use; its outcome is
    /// recorded in the zone's health.
    async fn ask_zone(&self, dns: &Dns, zone: &Zone, query: &str) -> Outcome {
        let in_use = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(zone.name.clone())
            .or_default()
            .in_use(Instant::now());
        if !in_use {
            return Outcome::NotListed;
        }
        let outcome = match dns.a(query).await {
            Answer::Found(answers) => zone.classify(&answers),
            Answer::NotFound => Outcome::NotListed,
            Answer::Timeout => Outcome::Timeout,
            Answer::Failed(_) => Outcome::Failed,
        };
        let warning = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(zone.name.clone())
            .or_default()
            .record(outcome, Instant::now());
        if let Some(w) = warning {
            tracing::warn!("blocklist {}: {w}", zone.reply_name);
        }
        outcome
    }

    /// Decides for one recipient.
    pub async fn decide(&self, q: &Query) -> Verdict {
        let s = self.settings();
        let deadline = tokio::time::Instant::now() + 2 * s.dns_timeout;
        let ip = unmap(q.client);
        let index = self.access.index();
        let needs_facts = s.dns.is_some()
            && ((index.has_host_patterns() && q.client_name.is_none())
                || (!s.dnsbl.is_empty() && !self.skipped(&s, ip)));
        let facts_cell = needs_facts.then(|| self.facts_cell(&s, ip));
        let facts = async {
            match &facts_cell {
                Some(cell) => tokio::time::timeout_at(
                    deadline,
                    cell.get_or_init(|| self.look_up(s.clone(), ip)),
                )
                .await
                .ok(),
                None => None,
            }
        };
        // The sender's domain is looked up meanwhile, within the same budget.
        let rhsbl_queries = self.rhsbl_queries(&s, q);
        let rhsbl = async {
            let Some(dns) = &s.dns else { return Vec::new() };
            tokio::time::timeout_at(
                deadline,
                futures_join_all(
                    rhsbl_queries
                        .iter()
                        .map(|(z, name)| self.ask_zone(dns, z, name)),
                ),
            )
            .await
            .unwrap_or_default()
        };
        let (facts, rhsbl) = tokio::join!(facts, rhsbl);
        tracing::debug!(
            sid = %q.sid,
            "policy for {ip}: dns {}, facts {facts:?}, rhsbl {rhsbl:?}",
            if s.dns.is_some() { "ready" } else { "none" }
        );
        // A copy only to add the client's verified name: most questions
        // are judged as they came.
        let verified = facts.and_then(|f| f.verified_name.as_ref());
        let query: std::borrow::Cow<'_, Query> = match verified {
            Some(name) if q.client_name.is_none() => std::borrow::Cow::Owned(Query {
                client_name: Some(name.clone()),
                ..q.clone()
            }),
            _ => std::borrow::Cow::Borrowed(q),
        };
        let (verdict, by) = match access_verdict(&index, &query) {
            Verdict::Dunno => match self.restrictions(&s, &query).await {
                Some(v) => (v, "a restriction"),
                None => match self
                    .blocklists(&s, &query, facts, &rhsbl_queries, rhsbl, deadline)
                    .await
                {
                    Some(v) => (v, "a blocklist"),
                    // Greylisting last: mail refused for another reason
                    // makes no entry.
                    None => match self.greylisting(&s, &query).await {
                        Some(v) => (v, "greylisting"),
                        None => (Verdict::Dunno, ""),
                    },
                },
            },
            v => (v, "the access lists"),
        };
        if !q.dry {
            log(q, &Client::new(q.client), &verdict, by);
        }
        verdict
    }

    async fn restrictions(&self, s: &Settings, q: &Query) -> Option<Verdict> {
        let refuse = |code: u16, enhanced: &'static str, text: String, rule: &str| {
            Some(Verdict::Refuse(Refusal {
                code,
                enhanced,
                text,
                kind: RefusalKind::Rejected(Rejection::Restriction),
                rule: rule.to_string(),
            }))
        };
        let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_string());
        for &r in &s.restrictions {
            let rule = r.as_str();
            match r {
                // (Without a HELO — `postern access test` without --helo —
                // there is nothing to judge; smtpd always has one.)
                Restriction::RejectInvalidHeloHostname if q.helo.is_some() => {
                    let helo = q.helo.as_deref().unwrap_or("");
                    if !valid_helo(helo) {
                        return refuse(
                            501,
                            "5.5.2",
                            format!("<{helo}>: Helo command rejected: Invalid name"),
                            rule,
                        );
                    }
                }
                Restriction::RejectNonFqdnSender
                    if !q.sender.is_empty() && !fqdn_address(&q.sender) =>
                {
                    return refuse(
                        504,
                        "5.5.2",
                        format!(
                            "<{}>: Sender address rejected: need fully-qualified address",
                            q.sender
                        ),
                        rule,
                    );
                }
                // `<Postmaster>` without a domain must be accepted (RFC 5321 §4.1.1.3).
                Restriction::RejectNonFqdnRecipient
                    if !fqdn_address(&q.recipient)
                        && !q.recipient.eq_ignore_ascii_case("postmaster") =>
                {
                    return refuse(
                        504,
                        "5.5.2",
                        format!(
                            "<{}>: Recipient address rejected: need fully-qualified address",
                            q.recipient
                        ),
                        rule,
                    );
                }
                Restriction::RejectUnknownSenderDomain
                | Restriction::RejectUnknownRecipientDomain => {
                    let sender = r == Restriction::RejectUnknownSenderDomain;
                    let address = if sender { &q.sender } else { &q.recipient };
                    let Some(domain) = domain_of(address).filter(|d| !d.starts_with('[')) else {
                        continue;
                    };
                    // No resolver is a lookup that failed: 450, as for any DNS failure.
                    let found = match &s.dns {
                        Some(dns) => {
                            tokio::time::timeout(2 * s.dns_timeout, dns.domain_exists(&domain))
                                .await
                                .unwrap_or(Answer::Timeout)
                        }
                        None => Answer::Failed("no resolver".into()),
                    };
                    if !matches!(found, Answer::Found(_)) {
                        // Not found, or not known: 450 either way (Postfix's
                        // unknown_address_reject_code), never a 5xx.
                        let (enhanced, who) = if sender {
                            ("4.1.8", "Sender")
                        } else {
                            ("4.1.2", "Recipient")
                        };
                        return refuse(
                            450,
                            enhanced,
                            format!("<{address}>: {who} address rejected: Domain not found"),
                            rule,
                        );
                    }
                }
                Restriction::RejectUnauthPipelining if q.improper_pipelining => {
                    return refuse(
                        503,
                        "5.5.0",
                        "Error: improper use of SMTP command pipelining".into(),
                        rule,
                    );
                }
                _ => {}
            }
        }
        None
    }

    /// Whether blocklists apply to this recipient at all: not for clients
    /// in `skip_networks`, nor for the `exempt_recipients` of served domains.
    fn blocklisted(&self, s: &Settings, q: &Query) -> bool {
        let local = q
            .recipient
            .rsplit_once('@')
            .map_or(q.recipient.as_str(), |(l, _)| l);
        let local = local.trim_matches('"');
        !s.exempt.iter().any(|e| e.eq_ignore_ascii_case(local)) && !self.skipped(s, unmap(q.client))
    }

    /// The sender-domain queries of every `rhsbl` zone, when they apply.
    fn rhsbl_queries<'s>(&self, s: &'s Settings, q: &Query) -> Vec<(&'s Zone, String)> {
        let Some((_, domain)) = q.sender.rsplit_once('@') else {
            return Vec::new();
        };
        if !self.blocklisted(s, q) {
            return Vec::new();
        }
        s.rhsbl
            .iter()
            .filter_map(|z| Some((z, z.domain_query(domain)?)))
            .collect()
    }

    async fn blocklists(
        &self,
        s: &Settings,
        q: &Query,
        facts: Option<&Facts>,
        rhsbl_queries: &[(&Zone, String)],
        rhsbl: Vec<Outcome>,
        deadline: tokio::time::Instant,
    ) -> Option<Verdict> {
        let dns = s.dns.as_ref()?;
        if !self.blocklisted(s, q) {
            return None;
        }
        let ip = unmap(q.client);
        let refuse = |zone: &Zone, text: String, listed: Ipv4Addr| {
            Some(Verdict::Refuse(Refusal {
                code: 554,
                enhanced: "5.7.1",
                text,
                kind: RefusalKind::Rejected(Rejection::Dnsbl),
                rule: format!("{} ({listed})", zone.reply_name),
            }))
        };
        if let Some(f) = facts {
            for (zone, outcome) in s.dnsbl.iter().zip(&f.listings) {
                if let Outcome::Listed(listed) = outcome {
                    // The zone's reason, if it comes within the budget left.
                    let reason = tokio::time::timeout_at(deadline, dns.txt(&zone.client_query(ip)))
                        .await
                        .ok()
                        .flatten()
                        .map_or(String::new(), |t| {
                            format!("; {}", t.replace(['\r', '\n', '\0'], " "))
                        });
                    let text = format!(
                        "Service unavailable; Client host [{ip}] blocked using {}{reason}",
                        zone.reply_name
                    );
                    return refuse(zone, text, *listed);
                }
            }
        }
        for ((zone, _), outcome) in rhsbl_queries.iter().zip(rhsbl) {
            if let Outcome::Listed(listed) = outcome {
                let text = format!(
                    "Service unavailable; Sender address [{}] blocked using {}",
                    q.sender, zone.reply_name
                );
                return refuse(zone, text, listed);
            }
        }
        None
    }

    /// The RFC 5782 self-test of every zone: at start, then every 30
    /// minutes; an inconclusive test (the resolver did not answer) is tried
    /// again after a minute.
    pub async fn self_test_loop(self: Arc<Self>) {
        loop {
            let s = self.settings();
            let mut inconclusive = false;
            if let Some(dns) = &s.dns {
                for zone in s.dnsbl.iter().chain(&s.rhsbl) {
                    let (listed, not_listed) = match zone.kind {
                        Kind::Client => (
                            zone.client_query(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
                            zone.client_query(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))),
                        ),
                        Kind::SenderDomain => (
                            format!("test.{}.", zone.name),
                            format!("invalid.{}.", zone.name),
                        ),
                    };
                    let outcome = |a: Answer<Ipv4Addr>| match a {
                        Answer::Found(v) => zone.classify(&v),
                        Answer::NotFound => Outcome::NotListed,
                        Answer::Timeout => Outcome::Timeout,
                        Answer::Failed(_) => Outcome::Failed,
                    };
                    let (a, b) = tokio::join!(dns.a(&listed), dns.a(&not_listed));
                    match dnsbl::self_test(outcome(a), outcome(b)) {
                        None => inconclusive = true,
                        Some(result) => {
                            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
                            let h = health.entry(zone.name.clone()).or_default();
                            let was = h.disabled().cloned();
                            match &result {
                                Err(why) if was.is_none() => tracing::error!(
                                    "blocklist {}: {why}: not used until a self-test passes",
                                    zone.reply_name
                                ),
                                Ok(()) if matches!(was, Some(dnsbl::Disabled::SelfTest(_))) => {
                                    tracing::info!(
                                        "blocklist {}: self-test passed: in use again",
                                        zone.reply_name
                                    )
                                }
                                _ => {}
                            }
                            h.self_tested(result);
                        }
                    }
                }
            }
            let wait = if inconclusive {
                Duration::from_secs(60)
            } else {
                dnsbl::SELF_TEST_EVERY
            };
            // A reload brings new zones: test them at once.
            let generation = s.generation;
            let start = tokio::time::Instant::now();
            while start.elapsed() < wait && self.settings().generation == generation {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Each zone's standing for `postern status` and the metrics:
    /// `(reply name, "ok" | "degraded" | "disabled", why)`.
    pub fn zones(&self) -> Vec<(String, &'static str, String)> {
        let s = self.settings();
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        s.dnsbl
            .iter()
            .chain(&s.rhsbl)
            .map(|z| {
                let h = health.entry(z.name.clone()).or_default();
                if !h.in_use(now) {
                    let why = match h.disabled() {
                        Some(dnsbl::Disabled::SelfTest(w)) => w.clone(),
                        Some(dnsbl::Disabled::Timeouts(_)) => "timed out too often".into(),
                        None => String::new(),
                    };
                    (z.reply_name.clone(), "disabled", why)
                } else if let Some(why) = h.degraded(now) {
                    (z.reply_name.clone(), "degraded", why.to_string())
                } else {
                    (z.reply_name.clone(), "ok", String::new())
                }
            })
            .collect()
    }
}

/// Runs every future at once and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in set.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The settings of `config`; the resolver is made anew only when its
/// servers or timeout changed (it keeps its cache otherwise).
fn settings(config: &Config, generation: u64, old: Option<&Settings>) -> Settings {
    let p = &config.policy;
    // The resolver is made even when no check needs it yet: an access
    // entry for a host name, added at any time, needs the client's
    // verified name. Only a configuration that needs DNS hears about it.
    let needs_dns = p.needs_dns();
    let servers = p.resolver_addrs();
    let same = old.filter(|o| {
        o.dns.is_some() && o.dns_servers == servers && o.dns_timeout == p.dns_timeout.0
    });
    let dns = match same {
        // The same servers: the same resolver, its cache kept.
        Some(o) => o.dns.clone(),
        None => match Dns::new(&servers, p.dns_timeout.0) {
            Ok((dns, asked)) => {
                let public = Dns::public(&asked);
                if needs_dns && !public.is_empty() {
                    tracing::warn!(
                    "policy: the resolver {public:?} is a public one: DNS blocklists refuse its queries (Spamhaus answers 127.255.255.254); set policy.resolvers to a local resolver"
                );
                }
                if needs_dns && old.is_none() {
                    tracing::info!(
                        "policy: DNS through {asked:?}, {:?} per query",
                        p.dns_timeout.0
                    );
                }
                Some(dns)
            }
            Err(e) if needs_dns => {
                tracing::error!("policy: no DNS, so no blocklist and no domain check: {e}");
                None
            }
            Err(e) => {
                tracing::debug!("policy: no DNS: {e}");
                None
            }
        },
    };
    Settings {
        restrictions: p.restrictions.clone(),
        dnsbl: p.dnsbl.iter().map(|z| z.0.clone()).collect(),
        rhsbl: p.rhsbl.iter().map(|z| z.0.clone()).collect(),
        exempt: p.exempt_recipients.clone(),
        skip: p.skip_networks.iter().map(|n| **n).collect(),
        dns,
        dns_timeout: p.dns_timeout.0,
        dns_servers: servers,
        greylist: config.greylist.clone(),
        generation,
    }
}

/// A HELO argument that is a host name or an address literal.
fn valid_helo(h: &str) -> bool {
    if let Some(lit) = h.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        return match lit.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => lit.parse::<Ipv4Addr>().is_ok(),
        };
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    postern_shared::config::is_hostname(h)
}

/// An address whose domain has a dot, or is an address literal (Postfix's
/// "fully-qualified domain form").
fn fqdn_address(a: &str) -> bool {
    match a.rsplit_once('@') {
        Some((_, d)) => d.starts_with('[') || d.trim_end_matches('.').contains('.'),
        None => false,
    }
}

fn log(q: &Query, client: &Client, v: &Verdict, by: &str) {
    let sid = q.sid.as_str();
    // The field as smtpd writes it (no brackets); the message has them.
    let sender = q.sender.as_str();
    match v {
        Verdict::Dunno => {}
        Verdict::Accept { rule } => tracing::info!(
            sid,
            client_ip = %client.ip,
            sender,
            recipient = %q.recipient,
            "mail from <{sender}> to <{}> accepted by {by} ({rule})",
            q.recipient
        ),
        // The seed's wording: "Mail from … refused via <zone>".
        Verdict::Refuse(r) => tracing::info!(
            sid,
            client_ip = %client.ip,
            sender,
            recipient = %q.recipient,
            reply = %format!("{} {} {}", r.code, r.enhanced, r.text),
            "mail from <{sender}> to <{}> refused via {} ({by})",
            q.recipient,
            r.rule
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names_and_fqdn_addresses() {
        for ok in [
            "mail.example.org",
            "localhost",
            "[192.0.2.1]",
            "[IPv6:2001:db8::1]",
            "mx1.example.org.",
        ] {
            assert!(valid_helo(ok), "{ok}");
        }
        for bad in [
            "",
            "bad_host",
            "[300.1.1.1]",
            "a..b",
            "-x.example",
            "[IPv6:zz]",
        ] {
            assert!(!valid_helo(bad), "{bad}");
        }
        assert!(fqdn_address("a@example.org"));
        assert!(fqdn_address("a@[192.0.2.1]"));
        assert!(!fqdn_address("a@localhost"));
        assert!(!fqdn_address("a"));
    }

    #[test]
    fn every_future_is_awaited_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let out = rt.block_on(futures_join_all((0..3u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(30 - 10 * i)).await;
            i
        })));
        assert_eq!(out, [0, 1, 2]);
    }
}
