//! `mirror` with `write = "through"`: a write to a mirrored key is
//! committed in Postgres, then applied in Redis, and only then answered.
//!
//! The order never loses an acknowledged write: once the client has its
//! reply, the change is committed in Postgres (durable) and in Redis
//! (visible). If Postgres fails, Redis was not touched and the client gets
//! `-ERR tier unavailable: …`. If Postgres may have committed (the
//! connection dropped mid-statement, the statement timed out), the key is
//! removed from Redis so that the next read comes from Postgres, whatever
//! it holds, and the client is told the outcome is unknown; retrying is
//! safe (the retry is a newer version). If Redis does not take a change
//! Postgres committed, the key is likewise removed from Redis and the
//! client is told.
//!
//! One strata applies the changes to a key one at a time (`locks.rs`), so
//! Postgres's order (versions from the `strata_version` sequence) and
//! Redis's order agree. What a change depends on (NX/XX, GET, KEEPTTL,
//! EXPIRE's conditions) is read from Redis under that lock, after a
//! re-warm: a key only Postgres holds counts as existing. Relative TTLs
//! become one absolute time (strata's clock) given to both tiers (PXAT,
//! PEXPIREAT), so they expire together.

use bytes::Bytes;

use crate::protocol::reply::{self, ReplyBuf};

use super::args::{Expiry, SetArgs};
use super::plan::Write;
use super::redis::{arg, bulk, error_text, int, is_nil, num, RedisLink};
use super::store::{coalesce_puts, Put, StoreError};
use super::{TierStats, Tiers};

impl Tiers {
    /// Runs a mirrored write; the reply is the client's (its protocol).
    pub async fn write(&self, link: &RedisLink<'_>, write: Write) -> Bytes {
        let write = match write {
            Write::Spill(touch) => return self.touch(link, touch).await,
            w => w,
        };
        // Spill keys named with mirrored ones (MSET, DEL) are made
        // resident first, so the command sees their values.
        if let Some(spilled) = self.spilled_among(&write) {
            if let Err(text) = self.unspill(link, &spilled).await {
                return reply::error(&text);
            }
        }
        if let Some(behind) = self.behind_for(&write) {
            return behind.write(link, write).await;
        }
        if let Err(e) = self.ensure_schema().await {
            TierStats::bump(&self.stats.write_failures);
            return reply::error(&super::readthrough::unavailable(&e));
        }
        let result = match write {
            Write::Set(s) => self.set(link, s).await,
            Write::MSet { pairs, mirrored } => self.mset(link, pairs, mirrored).await,
            Write::Del {
                keys,
                mirrored,
                unlink,
            } => self.del(link, keys, mirrored, unlink).await,
            Write::GetDel(key) => self.getdel(link, key).await,
            Write::Expire {
                key,
                when_ms,
                flags,
            } => self.expire(link, key, when_ms, flags).await,
            Write::Persist(key) => self.persist(link, key).await,
            Write::Rename(r) => self.rename(link, r).await,
            // Only planned with write-behind rules (`behind_for`).
            Write::Flush(_) => Err(reply::error("ERR tier: flush without write-behind")),
            Write::Spill(touch) => Ok(self.touch(link, touch).await),
        };
        match result {
            Ok(reply) => {
                TierStats::bump(&self.stats.writes);
                reply
            }
            Err(reply) => reply,
        }
    }

    /// The spill keys of a mirrored MSET or DEL, if any.
    fn spilled_among(&self, write: &Write) -> Option<Vec<Bytes>> {
        self.spill.as_ref()?;
        let keys: Vec<Bytes> = match write {
            Write::MSet { pairs, mirrored } => pairs
                .iter()
                .zip(mirrored)
                .filter(|(_, m)| !**m)
                .map(|((k, _), _)| k.clone())
                .collect(),
            Write::Del { keys, mirrored, .. } => keys
                .iter()
                .zip(mirrored)
                .filter(|(_, m)| !**m)
                .map(|(k, _)| k.clone())
                .collect(),
            _ => return None,
        };
        let spilled: Vec<Bytes> = keys
            .into_iter()
            .filter(|k| {
                self.rules
                    .load()
                    .find(k)
                    .is_some_and(|r| r.mode() == super::rules::Mode::Spill)
            })
            .collect();
        (!spilled.is_empty()).then_some(spilled)
    }

    async fn set(&self, link: &RedisLink<'_>, s: SetArgs) -> Result<Bytes, Bytes> {
        let _lock = self.locks.lock(&s.key).await;
        let mut old = None;
        let mut expiry = match s.expiry {
            Expiry::At(at) => Some(at),
            Expiry::None | Expiry::Keep => None,
        };
        if s.reads_state() {
            self.warm_locked(link, std::slice::from_ref(&s.key))
                .await
                .map_err(|e| reply::error(&e))?;
            let mut commands = vec![
                (s.key.clone(), vec![arg("EXISTS"), s.key.clone()]),
                (s.key.clone(), vec![arg("PEXPIRETIME"), s.key.clone()]),
            ];
            if s.get {
                commands.push((s.key.clone(), vec![arg("GET"), s.key.clone()]));
            }
            let r = link.call(&commands).await.map_err(backend_down)?;
            if s.get {
                // WRONGTYPE: Redis refuses the whole SET.
                if error_text(&r[2]).is_some() {
                    return Err(r[2].clone());
                }
                old = Some(r[2].clone());
            }
            let exists = int(&r[0]) == Some(1);
            if (s.nx && exists) || (s.xx && !exists) {
                return Ok(old.unwrap_or_else(|| null(link)));
            }
            if s.expiry == Expiry::Keep {
                expiry = int(&r[1]).filter(|&t| t > 0);
            }
        }
        let put = Put {
            key: s.key.clone(),
            kind: "string",
            value: s.value.clone(),
            expires_at_ms: expiry,
            version: None,
        };
        self.commit(
            link,
            std::slice::from_ref(&s.key),
            self.committer.put(vec![put]).await,
        )
        .await?;
        let mut command = vec![arg("SET"), s.key.clone(), s.value];
        if let Some(at) = expiry {
            command.extend([arg("PXAT"), num(at)]);
        }
        self.apply(link, vec![(s.key.clone(), command)], &[s.key])
            .await?;
        Ok(old.unwrap_or_else(reply::ok))
    }

    async fn mset(
        &self,
        link: &RedisLink<'_>,
        pairs: Vec<(Bytes, Bytes)>,
        mirrored: Vec<bool>,
    ) -> Result<Bytes, Bytes> {
        let keys: Vec<Bytes> = pairs
            .iter()
            .zip(&mirrored)
            .filter(|(_, m)| **m)
            .map(|((k, _), _)| k.clone())
            .collect();
        let _locks = self.locks.lock_all(&keys).await;
        let puts = pairs
            .iter()
            .zip(&mirrored)
            .filter(|(_, m)| **m)
            .map(|((k, v), _)| Put {
                key: k.clone(),
                kind: "string",
                value: v.clone(),
                expires_at_ms: None,
                version: None,
            })
            .collect();
        let puts = coalesce_puts(puts);
        self.commit(link, &keys, self.committer.put(puts).await)
            .await?;
        let commands = if link.cluster.is_none() {
            // One MSET: atomic in Redis, as the client's would have been.
            let mut c = Vec::with_capacity(1 + pairs.len() * 2);
            c.push(arg("MSET"));
            for (k, v) in &pairs {
                c.extend([k.clone(), v.clone()]);
            }
            vec![(pairs[0].0.clone(), c)]
        } else {
            pairs
                .into_iter()
                .map(|(k, v)| (k.clone(), vec![arg("SET"), k, v]))
                .collect()
        };
        self.apply(link, commands, &keys).await?;
        Ok(reply::ok())
    }

    async fn del(
        &self,
        link: &RedisLink<'_>,
        keys: Vec<Bytes>,
        mirrored: Vec<bool>,
        unlink: bool,
    ) -> Result<Bytes, Bytes> {
        let mut distinct: Vec<(Bytes, bool)> = keys.into_iter().zip(mirrored).collect();
        distinct.sort();
        distinct.dedup();
        let durable: Vec<Bytes> = distinct
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| k.clone())
            .collect();
        let _locks = self.locks.lock_all(&durable).await;
        let gone: Vec<(Bytes, Option<i64>)> = durable.iter().map(|k| (k.clone(), None)).collect();
        let in_postgres = self
            .commit(link, &durable, self.store.delete(&gone).await)
            .await?;
        let name = if unlink { "UNLINK" } else { "DEL" };
        let commands: Vec<(Bytes, Vec<Bytes>)> = distinct
            .iter()
            .map(|(k, _)| (k.clone(), vec![arg(name), k.clone()]))
            .collect();
        let replies = self.apply(link, commands, &durable).await?;
        // A key counts once if either tier held it (an evicted mirrored
        // key still existed).
        let count = distinct
            .iter()
            .zip(&replies)
            .filter(|((k, _), r)| int(r) == Some(1) || in_postgres.contains(k))
            .count();
        Ok(integer(link, count as i64))
    }

    async fn getdel(&self, link: &RedisLink<'_>, key: Bytes) -> Result<Bytes, Bytes> {
        let _lock = self.locks.lock(&key).await;
        self.warm_locked(link, std::slice::from_ref(&key))
            .await
            .map_err(|e| reply::error(&e))?;
        let old = link
            .call_one(&key, vec![arg("GET"), key.clone()])
            .await
            .map_err(backend_down)?;
        if error_text(&old).is_some() || is_nil(&old) {
            return Ok(old);
        }
        let keys = [key.clone()];
        self.commit(link, &keys, self.store.delete(&[(key.clone(), None)]).await)
            .await?;
        self.apply(link, vec![(key.clone(), vec![arg("DEL"), key])], &keys)
            .await?;
        Ok(old)
    }

    async fn expire(
        &self,
        link: &RedisLink<'_>,
        key: Bytes,
        when_ms: i64,
        flags: super::args::ExpireFlags,
    ) -> Result<Bytes, Bytes> {
        let _lock = self.locks.lock(&key).await;
        let Some(current) = self.current_expiry(link, &key).await? else {
            return Ok(integer(link, 0));
        };
        if !flags.allow(current, when_ms) {
            return Ok(integer(link, 0));
        }
        let keys = [key.clone()];
        if when_ms <= super::now_ms() {
            // Already expired: Redis deletes the key (and answers 1).
            self.commit(link, &keys, self.store.delete(&[(key.clone(), None)]).await)
                .await?;
            self.apply(link, vec![(key.clone(), vec![arg("DEL"), key])], &keys)
                .await?;
            return Ok(integer(link, 1));
        }
        self.set_expiry(link, &key, Some(when_ms)).await?;
        let command = vec![arg("PEXPIREAT"), key.clone(), num(when_ms)];
        self.apply(link, vec![(key, command)], &keys).await?;
        Ok(integer(link, 1))
    }

    async fn persist(&self, link: &RedisLink<'_>, key: Bytes) -> Result<Bytes, Bytes> {
        let _lock = self.locks.lock(&key).await;
        match self.current_expiry(link, &key).await? {
            Some(Some(_)) => {}
            // No key, or no TTL: nothing to do.
            _ => return Ok(integer(link, 0)),
        }
        self.set_expiry(link, &key, None).await?;
        let keys = [key.clone()];
        let command = vec![arg("PERSIST"), key.clone()];
        self.apply(link, vec![(key, command)], &keys).await?;
        Ok(integer(link, 1))
    }

    /// After a re-warm: `None` if the key does not exist, else its
    /// absolute expiry (`Some(None)`: no TTL).
    async fn current_expiry(
        &self,
        link: &RedisLink<'_>,
        key: &Bytes,
    ) -> Result<Option<Option<i64>>, Bytes> {
        self.warm_locked(link, std::slice::from_ref(key))
            .await
            .map_err(|e| reply::error(&e))?;
        let r = link
            .call_one(key, vec![arg("PEXPIRETIME"), key.clone()])
            .await
            .map_err(backend_down)?;
        Ok(match int(&r) {
            Some(-2) | None => None,
            Some(-1) => Some(None),
            Some(at) => Some(Some(at)),
        })
    }

    /// Sets a mirrored key's expiry in Postgres. A key Redis holds but
    /// Postgres does not (written before the rule existed) is captured
    /// whole from Redis.
    async fn set_expiry(
        &self,
        link: &RedisLink<'_>,
        key: &Bytes,
        expires_at_ms: Option<i64>,
    ) -> Result<(), Bytes> {
        let keys = [key.clone()];
        let updated = self
            .commit(
                link,
                &keys,
                self.store.set_expiry(key, expires_at_ms, None).await,
            )
            .await?;
        if updated.is_some() {
            return Ok(());
        }
        let put = self.capture(link, key, expires_at_ms).await?;
        self.commit(link, &keys, self.committer.put(vec![put]).await)
            .await
            .map(|_| ())
    }

    /// The key as Redis holds it, as a row: strings by value, other types
    /// as a DUMP payload.
    async fn capture(
        &self,
        link: &RedisLink<'_>,
        key: &Bytes,
        expires_at_ms: Option<i64>,
    ) -> Result<Put, Bytes> {
        let kind = link
            .call_one(key, vec![arg("TYPE"), key.clone()])
            .await
            .map_err(backend_down)?;
        let kind: &'static str =
            match crate::tier::redis_type(crate::protocol::reply::string_payload(&kind)) {
                Some(kind) => kind,
                None => return Err(reply::error("ERR tier: cannot capture this key's type")),
            };
        let read = if kind == "string" { "GET" } else { "DUMP" };
        let value = link
            .call_one(key, vec![arg(read), key.clone()])
            .await
            .map_err(backend_down)?;
        let value = bulk(&value).ok_or_else(|| reply::error("ERR tier: key vanished"))?;
        Ok(Put {
            key: key.clone(),
            kind,
            value,
            expires_at_ms,
            version: None,
        })
    }

    /// Turns a Postgres outcome into the client's error, invalidating the
    /// keys in Redis when the commit may have happened.
    pub(super) async fn commit<T>(
        &self,
        link: &RedisLink<'_>,
        keys: &[Bytes],
        outcome: Result<T, StoreError>,
    ) -> Result<T, Bytes> {
        match outcome {
            Ok(v) => {
                self.postgres_answered(true);
                Ok(v)
            }
            Err(e) if e.is_ambiguous() => {
                self.postgres_answered(false);
                TierStats::bump(&self.stats.write_ambiguous);
                let invalidated = self.invalidate(link, keys).await;
                Err(reply::error(&format!(
                    "ERR tier unavailable: commit outcome unknown ({e}); {} retrying is safe",
                    if invalidated {
                        "the key was invalidated in Redis so reads come from Postgres;"
                    } else {
                        "the key could not be invalidated in Redis;"
                    }
                )))
            }
            Err(e) => {
                if matches!(e, StoreError::Unavailable(_)) {
                    self.postgres_answered(false);
                }
                TierStats::bump(&self.stats.write_failures);
                Err(reply::error(&format!("ERR tier unavailable: {e}")))
            }
        }
    }

    /// Applies committed changes in Redis. A change Redis does not take
    /// leaves the keys invalidated (the next read comes from Postgres).
    pub(super) async fn apply(
        &self,
        link: &RedisLink<'_>,
        commands: Vec<(Bytes, Vec<Bytes>)>,
        keys: &[Bytes],
    ) -> Result<Vec<Bytes>, Bytes> {
        let why = match link.call(&commands).await {
            Ok(replies) => match replies.iter().find_map(|r| error_text(r)) {
                None => return Ok(replies),
                Some(text) => text,
            },
            Err(e) => e,
        };
        TierStats::bump(&self.stats.redis_apply_failures);
        let invalidated = self.invalidate(link, keys).await;
        Err(reply::error(&format!(
            "ERR tier: committed in Postgres but Redis did not apply it ({why}); {}",
            if invalidated {
                "the key was invalidated in Redis so reads come from Postgres"
            } else {
                "the key could not be invalidated in Redis"
            }
        )))
    }

    /// Removes keys from Redis; true when Redis confirmed.
    async fn invalidate(&self, link: &RedisLink<'_>, keys: &[Bytes]) -> bool {
        let commands: Vec<(Bytes, Vec<Bytes>)> = keys
            .iter()
            .map(|k| (k.clone(), vec![arg("DEL"), k.clone()]))
            .collect();
        match link.call(&commands).await {
            Ok(replies) => replies.iter().all(|r| error_text(r).is_none()),
            Err(_) => false,
        }
    }
}

pub(super) fn backend_down(e: String) -> Bytes {
    reply::error(&format!("ERR backend unavailable: {e}"))
}

fn null(link: &RedisLink<'_>) -> Bytes {
    let mut r = ReplyBuf::new(link.proto);
    r.null();
    r.freeze()
}

pub(super) fn integer(link: &RedisLink<'_>, n: i64) -> Bytes {
    let mut r = ReplyBuf::new(link.proto);
    r.integer(n);
    r.freeze()
}
