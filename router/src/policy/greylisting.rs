//! The engine's greylisting (SPEC §8, seed 001): the decision for one
//! recipient, the store it is kept in (embedded, [`super::greylist`], or
//! Redis, [`super::greylist_redis`]) and its opening, the hourly purge, the
//! manual whitelist and the administrator's views of the lists.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_shared::ipc::policy::{Kind as RefusalKind, Query, Refusal, Verdict};
use postern_shared::net::IpNet;

use super::{greylist, greylist_redis, Engine, Settings};

impl Engine {
    /// The greylist store when greylisting is on and it is open. The
    /// embedded store is opened here, trying at most once a second: a
    /// router that replaces another (`postern restart router`) finds the
    /// file locked until the old one has stopped. A Redis store is opened
    /// by [`Engine::purge_loop`] (it takes a connection). Until it opens,
    /// the store is failing: `on_store_error`.
    pub(super) fn open_greylist(
        &self,
        g: &postern_shared::config::Greylist,
    ) -> Option<Arc<greylist::Store>> {
        if !g.enabled {
            return None;
        }
        if let Some(store) = self
            .greylist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|s| s.is(&g.store))
        {
            return Some(store);
        }
        if g.store != "embedded" {
            return None;
        }
        {
            let mut at = self.opened_at.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *at = Some(Instant::now());
        }
        let path = self.state_dir.join("greylist.redb");
        let opened = greylist::Embedded::open(&path).map(greylist::Store::Embedded);
        self.opened(opened)
    }

    /// Puts a newly opened store in use (or records why it did not open).
    pub(super) fn opened(
        &self,
        opened: Result<greylist::Store, String>,
    ) -> Option<Arc<greylist::Store>> {
        match opened {
            Ok(store) => {
                tracing::info!("greylisting: store {}", store.describe());
                let store = Arc::new(store);
                *self.greylist.write().unwrap_or_else(|p| p.into_inner()) = Some(store.clone());
                // The whitelist's copy is read at the next attempt.
                self.whitelist_loaded
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                self.breaker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_error = None;
                Some(store)
            }
            Err(e) => {
                tracing::warn!("greylisting: {e}");
                let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
                b.last_error = Some(e);
                None
            }
        }
    }

    /// Opens the configured store if it is not the one open (at start for
    /// Redis, after a reload that changed `store`, after a failed open).
    pub(super) async fn ensure_store(&self) {
        let g = self.settings().greylist.clone();
        if !g.enabled || self.open_greylist(&g).is_some() {
            return;
        }
        let old = self
            .greylist
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            old.stop().await;
        }
        if g.store.starts_with("redis://") {
            let opened = greylist_redis::RedisStore::open(&g.store)
                .await
                .map(greylist::Store::Redis);
            self.opened(opened);
        } else {
            self.open_greylist(&g);
        }
    }

    /// Syncs and closes the greylist store (at the router's stop).
    pub async fn stop(&self) {
        let store = self
            .greylist
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(store) = store {
            store.stop().await;
        }
    }

    /// The greylisting step: `None` to go on (passed, whitelisted, not
    /// applicable, or a failing store with `on_store_error = "accept"`).
    pub(super) async fn greylisting(&self, s: &Settings, q: &Query) -> Option<Verdict> {
        let g = &s.greylist;
        if !g.enabled || !self.blocklisted(s, q) {
            return None;
        }
        let failed = |why: &str| {
            if g.on_store_error == "defer" {
                Some(Verdict::Refuse(Refusal {
                    code: 451,
                    enhanced: "4.3.0",
                    text: "Greylist temporarily unavailable, please try again later".into(),
                    kind: RefusalKind::Greylisted,
                    rule: format!("greylist store: {why}"),
                }))
            } else {
                None
            }
        };
        if !self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed(Instant::now())
        {
            return failed("left alone after repeated failures");
        }
        let Some(store) = self.open_greylist(g) else {
            return failed("not open");
        };
        if !self
            .whitelist_loaded
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            match tokio::time::timeout(greylist::STORE_TIMEOUT, store.whitelist(None)).await {
                Ok(Ok((_, all))) => {
                    *self.whitelist.write().unwrap_or_else(|p| p.into_inner()) = all
                }
                _ => self
                    .whitelist_loaded
                    .store(false, std::sync::atomic::Ordering::SeqCst),
            }
        }
        if let Some(entry) = self.whitelisted(q) {
            tracing::debug!(sid = %q.sid, "greylisting: skipped ({entry})");
            return None;
        }
        let triplet = postern_shared::greylist::Triplet::new(
            q.client,
            &q.sender,
            &q.recipient,
            g.ipv4_prefix,
            g.ipv6_prefix,
        );
        let now = self.clock.now_millis().max(0) as u64;
        let result = tokio::time::timeout(
            greylist::STORE_TIMEOUT,
            store.attempt(&triplet, now, g.timings(), q.dry),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", greylist::STORE_TIMEOUT)));
        let warning = self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(
                result.as_ref().map(|_| ()).map_err(String::as_str),
                Instant::now(),
            );
        if let Some(w) = warning {
            tracing::warn!("greylisting: the store {}: {w}", store.describe());
        }
        let step = match result {
            Ok(step) => step,
            Err(e) => {
                tracing::warn!(sid = %q.sid, "greylisting: the store failed: {e}");
                return failed(&e);
            }
        };
        use postern_shared::greylist::{hms, Step};
        match step {
            Step::Greylist { left, .. } | Step::TooEarly { left, .. } => {
                Some(Verdict::Refuse(Refusal {
                    code: 451,
                    enhanced: "4.7.1",
                    text: format!("Greylisting in action, please come back in {}", hms(left)),
                    kind: RefusalKind::Greylisted,
                    rule: format!(
                        "greylist {} {} {}",
                        triplet.network, triplet.sender, triplet.recipient
                    ),
                }))
            }
            Step::Pass(_) => {
                if !q.dry {
                    tracing::info!(
                        sid = %q.sid,
                        client_ip = %q.client,
                        sender = %q.sender,
                        recipient = %q.recipient,
                        "greylisting: {} {} {} passed: auto-whitelisted",
                        triplet.network,
                        triplet.sender,
                        triplet.recipient
                    );
                    let counter = postern_shared::stats::Counter::GreylistPassed;
                    self.stats.count_one(counter);
                }
                None
            }
            Step::Renew(_) => None,
        }
    }

    /// The manual whitelist entry that covers this attempt, if any: `ip
    /// <network>` holding the client, `from <address or domain>` for the
    /// sender, `to <address or domain>` for the recipient.
    pub(super) fn whitelisted(&self, q: &Query) -> Option<String> {
        let list = self.whitelist.read().unwrap_or_else(|p| p.into_inner());
        let matches = |pattern: &str, address: &str| {
            let a = address.to_lowercase();
            match pattern.contains('@') {
                true => a == pattern,
                false => a
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.trim_end_matches('.') == pattern),
            }
        };
        list.iter()
            .find(|(key, _)| match key.split_once(' ') {
                Some(("ip", net)) => net.parse::<IpNet>().is_ok_and(|n| n.contains(q.client)),
                Some(("from", p)) => matches(p, &q.sender),
                Some(("to", p)) => matches(p, &q.recipient),
                _ => false,
            })
            .map(|(key, _)| key.clone())
    }

    /// `postern greylist whitelist`: `change` is `(kind, pattern,
    /// Some(comment))` to add, `None` comment to remove. Answers whether it
    /// changed and the whole list.
    pub async fn greylist_whitelist(
        &self,
        change: Option<(&str, &str, Option<String>)>,
    ) -> Result<(bool, Vec<(String, String)>), String> {
        let store = self
            .open_greylist(&self.settings().greylist)
            .ok_or("greylisting is off, or its store is not open")?;
        let change = match change {
            Some((kind, pattern, comment)) => Some((whitelist_key(kind, pattern)?, comment)),
            None => None,
        };
        let (changed, all) = store.whitelist(change).await?;
        *self.whitelist.write().unwrap_or_else(|p| p.into_inner()) = all.clone();
        Ok((changed, all))
    }

    /// Adds the records and whitelist entries of an export.
    pub async fn greylist_import(
        &self,
        entries: Vec<greylist::Listed>,
        whitelist: Vec<(String, String)>,
    ) -> Result<u64, String> {
        let g = self.settings().greylist.clone();
        let store = self
            .open_greylist(&g)
            .ok_or("greylisting is off, or its store is not open")?;
        let n = store.import(entries, whitelist, g.timings()).await?;
        // The whitelist's copy is read again at the next attempt.
        self.whitelist_loaded
            .store(false, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }

    /// Every greylist entry (the search and list views).
    pub async fn greylist_entries(&self) -> Result<Vec<greylist::Listed>, String> {
        let store = self
            .open_greylist(&self.settings().greylist)
            .ok_or("greylisting is off, or its store is not open")?;
        store.entries().await
    }

    /// Purges expired greylist records every hour and at each reload (and
    /// logs and records both lists' sizes for the day's statistics);
    /// meanwhile, a store that could not be opened (another router still
    /// held it) is tried again every second.
    pub async fn purge_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        let mut generation = self.settings().generation;
        loop {
            self.ensure_store().await;
            // Hourly, and at each reload (its timings may have changed).
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.settings().generation == generation {
                        continue;
                    }
                }
            }
            let s = self.settings();
            generation = s.generation;
            let store = self
                .greylist
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (Some(store), true) = (store, s.greylist.enabled) else {
                continue;
            };
            let now = self.clock.now_millis().max(0) as u64;
            match store.purge(now, s.greylist.timings()).await {
                Ok((dropped, pending, passed)) => {
                    tracing::info!(
                        "greylisting: purged {dropped} expired entries; {pending} pending, {passed} auto-whitelisted"
                    );
                    // Seed 001 §7.3: both lists' sizes per day.
                    self.stats.set_sizes(pending, passed);
                }
                Err(e) => tracing::warn!("greylisting: purge failed: {e}"),
            }
        }
    }

    /// The greylist store's standing for the status: `None` when
    /// greylisting is off, else `("ok" | "degraded", why)`.
    pub fn greylist_state(&self) -> Option<(&'static str, String)> {
        if !self.settings().greylist.enabled {
            return None;
        }
        let b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        Some(match b.degraded() {
            Some(why) => ("degraded", why.to_string()),
            None => ("ok", String::new()),
        })
    }
}

/// A manual whitelist key, `ip 192.0.2.0/24`, `from a@b.test`, `to b.test`,
/// from a kind and a pattern; `Err` says what is wrong.
pub fn whitelist_key(kind: &str, pattern: &str) -> Result<String, String> {
    let p = pattern.trim().to_lowercase();
    match kind {
        "ip" => p
            .parse::<IpNet>()
            .map(|n| format!("ip {}", n.normalized()))
            .map_err(|_| {
                format!("{pattern:?} is not an address or a network such as 192.0.2.0/24")
            }),
        "from" | "to" => {
            let ok = match p.rsplit_once('@') {
                Some((l, d)) => {
                    !l.is_empty() && postern_shared::config::is_hostname(d.trim_end_matches('.'))
                }
                None => postern_shared::config::is_hostname(&p),
            };
            if ok && !p.contains(char::is_whitespace) {
                Ok(format!("{kind} {}", p.trim_end_matches('.')))
            } else {
                Err(format!("{pattern:?} is not an address or a domain"))
            }
        }
        other => Err(format!("{other:?} is not ip, from or to")),
    }
}
