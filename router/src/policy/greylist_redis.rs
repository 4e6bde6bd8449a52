//! The shared greylist store (SPEC §8): Redis, so that several postern
//! hosts in front of one domain share one greylist (a sender retrying on
//! another MX is not greylisted again).
//!
//! Each attempt is one Lua script run in Redis, atomic across hosts: it
//! reads Redis's own `TIME` (hosts whose clocks disagree still agree on the
//! triplet's times), applies the rules of [`postern_shared::greylist::step`]
//! (the same rules, written again in Lua: the tests run the same flow
//! against both stores) and writes the record back with an expiry, so
//! Redis drops what is past its window or its auto-whitelist by itself.
//! Keys (prefix `postern:gl:`): `p:<triplet>` and `a:<triplet>` hold
//! `first last count` (pending, auto-whitelisted); the sorted sets
//! `pending` and `passed` index the triplets by expiry, for the views and
//! the purge, so nothing ever SCANs the keyspace; the hash `whitelist`
//! holds the manual whitelist. The connection reconnects by itself; every
//! operation is bounded by the caller (300 ms).

use std::time::Duration;

use postern_shared::greylist::{Passed, Pending, Step, Timings, Triplet};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;

use super::greylist::{Listed, WhitelistAnswer};

const PREFIX: &str = "postern:gl:";

/// One attempt, atomic: KEYS pending, passed, pending index, passed index;
/// ARGV member, delay, window, auto_whitelist (ms), dry (1 or 0).
const ATTEMPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member, delay, window, awl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local dry = ARGV[5] == '1'
local function parse(v)
  local a, b, c = string.match(v, '^(%d+) (%d+) (%d+)$')
  return tonumber(a), tonumber(b), tonumber(c)
end
local function fmt(a, b, c) return string.format('%d %d %d', a, b, c) end
local p = redis.call('GET', KEYS[2])
if p then
  local first, last, count = parse(p)
  if first and now < last + awl then
    local nl = math.max(now, last)
    -- A renewal within a minute of the last one is not written.
    if not dry and now >= last + 60000 then
      redis.call('SET', KEYS[2], fmt(first, nl, count + 1), 'PX', awl)
      redis.call('ZADD', KEYS[4], nl + awl, member)
    end
    return {'renew', 0, first, nl, count + 1}
  end
end
local g = redis.call('GET', KEYS[1])
if g then
  local first, last, count = parse(g)
  if first and first <= now and now <= first + window then
    local due = first + delay
    if now >= due then
      if not dry then
        redis.call('DEL', KEYS[1])
        redis.call('ZREM', KEYS[3], member)
        redis.call('SET', KEYS[2], fmt(now, now, 1), 'PX', awl)
        redis.call('ZADD', KEYS[4], now + awl, member)
      end
      return {'pass', 0, now, now, 1}
    end
    if not dry then
      redis.call('SET', KEYS[1], fmt(first, now, count + 1), 'PX', first + window - now + 60000)
    end
    return {'early', due - now, first, now, count + 1}
  end
end
if not dry then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[4], member)
  redis.call('SET', KEYS[1], fmt(now, now, 1), 'PX', window + 60000)
  redis.call('ZADD', KEYS[3], now + window, member)
end
return {'grey', delay, now, now, 1}
"#;

/// The Redis store.
pub struct RedisStore {
    conn: ConnectionManager,
    script: redis::Script,
    /// `redis://host:port/db`, for logs.
    pub url: String,
}

fn err(e: redis::RedisError) -> String {
    e.to_string()
}

/// Redis's own clock, in milliseconds: the one every postern sharing the
/// store agrees on.
async fn now_ms(conn: &mut ConnectionManager) -> Result<u64, String> {
    let (s, us): (u64, u64) = redis::cmd("TIME").query_async(conn).await.map_err(err)?;
    Ok(s * 1000 + us / 1000)
}

impl RedisStore {
    /// Connects (within a second) to `url`.
    pub async fn open(url: &str) -> Result<RedisStore, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(super::greylist::STORE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            Duration::from_secs(2),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| format!("{url}: no connection within 2s"))?
        .map_err(|e| format!("{url}: {e}"))?;
        Ok(RedisStore {
            conn,
            script: redis::Script::new(ATTEMPT),
            url: url.to_string(),
        })
    }

    /// One attempt of `t`; the time is Redis's.
    pub async fn attempt(&self, t: &Triplet, timings: Timings, dry: bool) -> Result<Step, String> {
        let member = t.key();
        let mut conn = self.conn.clone();
        let (kind, left, first, last, count): (String, u64, u64, u64, u64) = self
            .script
            .key(format!("{PREFIX}p:{member}"))
            .key(format!("{PREFIX}a:{member}"))
            .key(format!("{PREFIX}pending"))
            .key(format!("{PREFIX}passed"))
            .arg(&member)
            .arg(timings.delay)
            .arg(timings.retry_window)
            .arg(timings.auto_whitelist)
            .arg(u8::from(dry))
            .invoke_async(&mut conn)
            .await
            .map_err(err)?;
        let pending = Pending { first, last, count };
        let passed = Passed { first, last, count };
        Ok(match kind.as_str() {
            "grey" => Step::Greylist {
                record: pending,
                left,
            },
            "early" => Step::TooEarly {
                record: pending,
                left,
            },
            "pass" => Step::Pass(passed),
            "renew" => Step::Renew(passed),
            other => return Err(format!("unexpected answer {other:?} from the store")),
        })
    }

    /// Drops the index entries of records Redis expired; answers
    /// (dropped, pending, passed).
    pub async fn purge(&self) -> Result<(u64, u64, u64), String> {
        let mut conn = self.conn.clone();
        let now = now_ms(&mut conn).await?;
        let mut dropped = 0u64;
        for idx in ["pending", "passed"] {
            let n: u64 = conn
                .zrembyscore(format!("{PREFIX}{idx}"), "-inf", now)
                .await
                .map_err(err)?;
            dropped += n;
        }
        let pending: u64 = conn.zcard(format!("{PREFIX}pending")).await.map_err(err)?;
        let passed: u64 = conn.zcard(format!("{PREFIX}passed")).await.map_err(err)?;
        Ok((dropped, pending, passed))
    }

    /// Every entry of both lists, through the indexes.
    pub async fn entries(&self) -> Result<Vec<Listed>, String> {
        let mut conn = self.conn.clone();
        let mut out = Vec::new();
        for (idx, prefix, passed) in [("pending", "p:", false), ("passed", "a:", true)] {
            let members: Vec<String> = conn
                .zrange(format!("{PREFIX}{idx}"), 0, -1)
                .await
                .map_err(err)?;
            for chunk in members.chunks(500) {
                let keys: Vec<String> = chunk
                    .iter()
                    .map(|m| format!("{PREFIX}{prefix}{m}"))
                    .collect();
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
                for (m, v) in chunk.iter().zip(values) {
                    let (Some(triplet), Some(v)) = (Triplet::from_key(m), v) else {
                        continue;
                    };
                    let n: Vec<u64> = v.split(' ').filter_map(|x| x.parse().ok()).collect();
                    if let [first, last, count] = n[..] {
                        out.push(Listed {
                            passed,
                            triplet,
                            first,
                            last,
                            count,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Adds an export's records (with the expiry they have left; those
    /// already past it are skipped) and whitelist entries.
    pub async fn import(
        &self,
        entries: Vec<Listed>,
        whitelist: Vec<(String, String)>,
        t: Timings,
    ) -> Result<u64, String> {
        let mut conn = self.conn.clone();
        let now = now_ms(&mut conn).await?;
        let mut n = 0u64;
        // A thousand records a round trip: an export of a million entries
        // imports in seconds, not in a million round trips.
        for chunk in entries.chunks(1000) {
            let mut pipe = redis::pipe();
            for e in chunk {
                let until = if e.passed {
                    e.last.saturating_add(t.auto_whitelist)
                } else {
                    e.first.saturating_add(t.retry_window)
                };
                if until <= now {
                    continue;
                }
                let member = e.triplet.key();
                let (prefix, idx) = if e.passed {
                    ("a:", "passed")
                } else {
                    ("p:", "pending")
                };
                let value = format!("{} {} {}", e.first, e.last, e.count);
                pipe.cmd("SET")
                    .arg(format!("{PREFIX}{prefix}{member}"))
                    .arg(value)
                    .arg("PX")
                    .arg(until - now + 60_000)
                    .ignore()
                    .cmd("ZADD")
                    .arg(format!("{PREFIX}{idx}"))
                    .arg(until)
                    .arg(&member)
                    .ignore();
                n += 1;
            }
            pipe.query_async::<()>(&mut conn).await.map_err(err)?;
        }
        for (k, c) in &whitelist {
            let _: () = conn
                .hset(format!("{PREFIX}whitelist"), k, c)
                .await
                .map_err(err)?;
            n += 1;
        }
        Ok(n)
    }

    /// The manual whitelist: add, remove, or only read it.
    pub async fn whitelist(
        &self,
        change: Option<(String, Option<String>)>,
    ) -> Result<WhitelistAnswer, String> {
        let mut conn = self.conn.clone();
        let key = format!("{PREFIX}whitelist");
        let changed = match change {
            Some((k, Some(comment))) => {
                let n: u64 = redis::cmd("HSETNX")
                    .arg(&key)
                    .arg(&k)
                    .arg(&comment)
                    .query_async(&mut conn)
                    .await
                    .map_err(err)?;
                n == 1
            }
            Some((k, None)) => {
                let n: u64 = conn.hdel(&key, &k).await.map_err(err)?;
                n == 1
            }
            None => false,
        };
        let mut all: Vec<(String, String)> = conn.hgetall(&key).await.map_err(err)?;
        all.sort();
        Ok((changed, all))
    }
}
