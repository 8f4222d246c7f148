//! Moving one key out of Redis: DUMP into Postgres, then the stub (see
//! the module docs of `spill` for the protocol and why a racing write is
//! never lost).

use bytes::Bytes;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Row};

use crate::protocol::reply::aggregate_elements;
use crate::tier::readthrough::unavailable;
use crate::tier::redis::{bulk, error_text, int, num, RedisLink};
use crate::tier::store::{StoreError, UPSERT};
use crate::tier::Tiers;

use super::{stub, MAGIC};

/// One spill of a key at a time across every strata: a session advisory
/// lock (class 21333; write-behind's batches use 21332) held from the read
/// to the stub. A strata that dies meanwhile drops its connection, and
/// with it the lock.
const TRY_LOCK: &str =
    "SELECT pg_try_advisory_lock(21333, ('x' || left(md5($1::bytea), 8))::bit(32)::int4)";
const UNLOCK: &str =
    "SELECT pg_advisory_unlock(21333, ('x' || left(md5($1::bytea), 8))::bit(32)::int4)";
/// Deletes exactly the row a spill or a restore is about: a newer spill's
/// row (another version) is never touched.
pub(super) const DELETE_VERSION: &str =
    "DELETE FROM strata_entries WHERE key = $1 AND version = $2";

impl Tiers {
    /// Moves `key` to Postgres and leaves its stub. `hold_ms` 0 spills it
    /// whatever its idle time (`PROXY TIER SPILL`); otherwise a key touched
    /// within `hold_ms` stays. `Ok(true)`: the key is now a stub;
    /// `Ok(false)`: it stays resident (gone, a stub already, held, changed
    /// meanwhile, or being spilled by another strata).
    pub async fn spill_key(
        &self,
        link: &RedisLink<'_>,
        key: &Bytes,
        hold_ms: u64,
    ) -> Result<bool, String> {
        let Some(spill) = self.spill.as_deref() else {
            return Ok(false);
        };
        self.ensure_schema().await.map_err(|e| unavailable(&e))?;
        let _lock = self.locks.lock(key).await;
        // A cheap first look (no DUMP, no Postgres): most keys a scan
        // finds are held or stubs already.
        let probe = spill
            .read
            .run(
                link,
                key,
                std::slice::from_ref(key),
                &[
                    Bytes::from_static(MAGIC),
                    num(hold_ms.div_ceil(1000) as i64),
                    Bytes::from_static(b"probe"),
                ],
            )
            .await?;
        if let Some(text) = error_text(&probe) {
            return Err(text);
        }
        if int(&probe) != Some(1) {
            return Ok(false);
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(|e| unavailable(&StoreError::Unavailable(e.to_string())))?;
        let locked: bool = self
            .store
            .timed(
                sqlx::query_scalar(TRY_LOCK)
                    .bind(key.as_ref())
                    .fetch_one(&mut *conn),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        if !locked {
            return Ok(false);
        }
        let result = self.spill_locked(spill, link, key, &mut conn).await;
        let unlocked = self
            .store
            .timed(sqlx::query(UNLOCK).bind(key.as_ref()).execute(&mut *conn))
            .await;
        if unlocked.is_err() {
            // The lock may still be held: the connection goes, and the lock
            // with it.
            conn.close_on_drop();
        }
        result
    }

    async fn spill_locked(
        &self,
        spill: &super::Spill,
        link: &RedisLink<'_>,
        key: &Bytes,
        conn: &mut PoolConnection<Postgres>,
    ) -> Result<bool, String> {
        // Read again under the advisory lock (the probe touched the key,
        // so no hold here): what another strata spilled meanwhile is a
        // stub now, and is left alone.
        let frame = spill
            .read
            .run(
                link,
                key,
                std::slice::from_ref(key),
                &[
                    Bytes::from_static(MAGIC),
                    num(0),
                    Bytes::from_static(b"dump"),
                ],
            )
            .await?;
        if let Some(text) = error_text(&frame) {
            return Err(text);
        }
        let Some(parts) = aggregate_elements(&frame).filter(|p| p.len() == 3) else {
            return Ok(false); // nil: stays resident
        };
        let kind = bulk(&frame.slice(parts[0].clone()));
        let kind = crate::tier::redis_type(kind.as_deref())
            .ok_or_else(|| "ERR tier: spill: a module type cannot be spilled".to_string())?;
        // A string's bytes, or a DUMP payload: the row holds what the
        // mirror's rows hold for that type.
        let payload = bulk(&frame.slice(parts[1].clone())).ok_or("ERR tier: spill: no value")?;
        let at = int(&frame[parts[2].clone()]).ok_or("ERR tier: spill: no PEXPIRETIME")?;
        let expires = (at > 0).then_some(at);
        // The row first: a stub never points at nothing.
        let rows = self
            .store
            .timed(
                sqlx::query(UPSERT)
                    .bind(vec![key.as_ref()])
                    .bind(vec![kind])
                    .bind(vec![payload.as_ref()])
                    .bind(vec![expires])
                    .bind(vec![None::<i64>])
                    .fetch_all(&mut **conn),
            )
            .await
            .map_err(|e| unavailable(&e))?;
        let Some(version) = rows.first().and_then(|r| r.try_get::<i64, _>(1).ok()) else {
            return Ok(false);
        };
        let stubbed = spill
            .stub
            .run(
                link,
                key,
                std::slice::from_ref(key),
                &[
                    payload,
                    num(at),
                    stub(version, kind),
                    Bytes::from_static(kind.as_bytes()),
                ],
            )
            .await?;
        // An error or no reply: the stub may be in place, so the row stays.
        if let Some(text) = error_text(&stubbed) {
            return Err(text);
        }
        if int(&stubbed) == Some(1) {
            spill.stats.spilled.inc();
            return Ok(true);
        }
        // Changed since the read: the write wins, the copy goes.
        spill.stats.raced.inc();
        let _ = self
            .store
            .timed(
                sqlx::query(DELETE_VERSION)
                    .bind(key.as_ref())
                    .bind(version)
                    .execute(&mut **conn),
            )
            .await;
        Ok(false)
    }
}
