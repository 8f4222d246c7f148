//! The Postgres side of the tiers: the schema's migrations and the
//! statements every tier policy shares.
//!
//! Every change carries a `version` that only grows, and a row changes only
//! when the change's version is newer than the row's: a retried or
//! redelivered change is harmless (idempotent), and an older change applied
//! late is a no-op. A delete leaves a *tombstone* (its key and version, in
//! `strata_tombstones`) for a while, so that a put older than the delete,
//! arriving after it (a write-behind redelivery), cannot bring the key back.
//!
//! Versions come from the caller (write-behind assigns them when it
//! captures the change) or, when the caller passes `None`, from the
//! `strata_version` sequence inside the same statement (write-through,
//! which commits before anything else sees the change).
//!
//! Batches are one statement each: arrays bound once and expanded with
//! `UNNEST`, so a batch of a thousand keys costs one round trip.
//!
//! Errors say whether the statement may have committed: a failure to get a
//! connection means it was never sent; a database error means Postgres
//! refused it (nothing applied); a connection lost or a timeout while it
//! ran means nobody knows ([`StoreError::Ambiguous`]).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::ha::{Hosts, ReadFrom};

/// The schema, embedded in the binary (no files needed at run time).
/// Applied at startup and by `strata migrate`; sqlx records what ran in
/// `_sqlx_migrations`, so each applies once.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "tier schema",
        include_str!("../../migrations/0001_tier_schema.sql"),
    ),
    (
        2,
        "checkpoints",
        include_str!("../../migrations/0002_checkpoints.sql"),
    ),
    (
        3,
        "audit log",
        include_str!("../../migrations/0003_audit.sql"),
    ),
];

/// The embedded migrations, as sqlx's migrator takes them (the same
/// bookkeeping as `sqlx::migrate!`, without the proc-macro crate).
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_compat::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// `futures_core::future::BoxFuture`, spelled out so as not to depend on
/// futures-core for one type.
mod futures_core_compat {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// What went wrong talking to Postgres, and what it means for a write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Nothing was sent (no connection could be had): nothing applied.
    #[error("{0}")]
    Unavailable(String),
    /// Postgres refused the statement: nothing applied.
    #[error("{0}")]
    Rejected(String),
    /// The statement may or may not have committed.
    #[error("{0}")]
    Ambiguous(String),
}

impl StoreError {
    /// True when the change may have committed.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, StoreError::Ambiguous(_))
    }
}

/// A row to write: the key's type and value as Redis stores them.
#[derive(Debug, Clone)]
pub struct Put {
    /// The Redis key.
    pub key: Bytes,
    /// Redis's type name (`string`, `hash`, …).
    pub kind: &'static str,
    /// The value (strings) or a DUMP payload.
    pub value: Bytes,
    /// Absolute expiry, Unix milliseconds; `None`: no TTL.
    pub expires_at_ms: Option<i64>,
    /// The change's version; `None`: the next of the `strata_version`
    /// sequence, taken in the statement.
    pub version: Option<i64>,
}

/// A row read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The Redis key.
    pub key: Bytes,
    /// Redis's type name.
    pub kind: String,
    /// The value or DUMP payload.
    pub value: Bytes,
    /// Absolute expiry, Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    /// The row's version.
    pub version: i64,
}

/// Pool and timeouts for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `postgres://…`
    pub url: String,
    /// Most connections in the pool.
    pub pool_size: u32,
    /// How long getting a connection may take before the write fails as
    /// unavailable.
    pub connect_timeout: Duration,
    /// How long one statement may take (past it, the outcome of a write is
    /// unknown).
    pub statement_timeout: Duration,
}

/// A pooled connection idle this long is pinged before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// The tier's Postgres: the hosts (a pool each, `tier::ha`) and the
/// statements. Writes go to the primary the probe found; reads that may
/// be stale within the configured bound ([`Store::fetch`],
/// [`Store::read_pool`]) may go to a replica.
#[derive(Debug, Clone)]
pub struct Store {
    hosts: std::sync::Arc<Hosts>,
    statement_timeout: Duration,
}

/// Replicas and where reads go, for [`Store::connect_with_replicas`].
#[derive(Debug, Clone, Default)]
pub struct ReplicaOptions {
    /// Replica URLs (failover candidates too).
    pub urls: Vec<String>,
    /// Where tier reads go.
    pub read_from: ReadFrom,
    /// Most staleness a read from a replica may have.
    pub max_lag_ms: u64,
    /// How often the hosts are probed.
    pub probe_interval: Duration,
}

pub(crate) const UPSERT: &str = "\
WITH u AS (
    SELECT k, t, v, e, COALESCE(ver, nextval('strata_version')) AS ver
    FROM UNNEST($1::bytea[], $2::text[], $3::bytea[], $4::int8[], $5::int8[]) AS x(k, t, v, e, ver)
)
INSERT INTO strata_entries AS s (key, type, value, expires_at, version, updated_at)
SELECT k, t, v, timestamptz 'epoch' + e * interval '1 millisecond', ver, now()
FROM u
WHERE NOT EXISTS (SELECT 1 FROM strata_tombstones ts WHERE ts.key = u.k AND ts.version >= u.ver)
ON CONFLICT (key) DO UPDATE SET
    type = excluded.type, value = excluded.value, expires_at = excluded.expires_at,
    version = excluded.version, updated_at = excluded.updated_at
WHERE s.version < excluded.version
RETURNING key, version";

/// The one versioned delete (write-through, admin, and write-behind's
/// batches, `behind/apply.rs`): the row goes only under an older version,
/// and the tombstone is left only when no row of the delete's version or
/// newer exists. A delete that lost to a newer change is a no-op in every
/// table: it must not leave a tombstone either, or replaying changes
/// (batches cut differently, so coalesced differently) would add
/// tombstones the first pass did not. Every CTE sees the statement's
/// snapshot, so the rows the NOT EXISTS finds are the ones `d` keeps.
pub(crate) const DELETE: &str = "\
WITH u AS (
    SELECT k, COALESCE(ver, nextval('strata_version')) AS ver
    FROM UNNEST($1::bytea[], $2::int8[]) AS x(k, ver)
), d AS (
    DELETE FROM strata_entries s USING u
    WHERE s.key = u.k AND s.version < u.ver
    RETURNING s.key, (s.expires_at IS NULL OR s.expires_at > now()) AS live
), t AS (
    INSERT INTO strata_tombstones AS ts (key, version, deleted_at)
    SELECT k, ver, now() FROM u
    WHERE NOT EXISTS (SELECT 1 FROM strata_entries s WHERE s.key = u.k AND s.version >= u.ver)
    ON CONFLICT (key) DO UPDATE SET version = excluded.version, deleted_at = excluded.deleted_at
    WHERE ts.version < excluded.version
)
SELECT key FROM d WHERE live";

const SET_EXPIRY: &str = "\
UPDATE strata_entries
SET expires_at = timestamptz 'epoch' + $2::int8 * interval '1 millisecond',
    version = COALESCE($3::int8, nextval('strata_version')), updated_at = now()
WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())
  AND version < COALESCE($3::int8, 9223372036854775807)
RETURNING version";

const FETCH: &str = "\
SELECT key, type, value, (extract(epoch FROM expires_at) * 1000)::int8 AS e, version
FROM strata_entries
WHERE key = ANY($1::bytea[]) AND (expires_at IS NULL OR expires_at > now())";

const SWEEP: &str = "\
WITH x AS (
    SELECT key FROM strata_entries WHERE expires_at <= now()
    ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
DELETE FROM strata_entries s USING x WHERE s.key = x.key";

const SWEEP_TOMBSTONES: &str = "\
WITH x AS (
    SELECT key FROM strata_tombstones WHERE deleted_at < now() - $1::int8 * interval '1 millisecond'
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM strata_tombstones s USING x WHERE s.key = x.key";

impl Store {
    /// A pool that connects on first use: strata starts (and serves the
    /// keys no rule names) while Postgres is down. One host, no probe.
    pub fn connect(options: &StoreOptions) -> Result<Store, String> {
        Store::connect_with_replicas(options, &ReplicaOptions::default())
    }

    /// [`Store::connect`] with replicas: a pool per host and, when there
    /// are replicas, the background probe that finds the primary and
    /// measures the replicas' lag (`tier::ha`). Must run inside a Tokio
    /// runtime when `replicas.urls` is not empty.
    pub fn connect_with_replicas(
        options: &StoreOptions,
        replicas: &ReplicaOptions,
    ) -> Result<Store, String> {
        let mut pools = Vec::with_capacity(1 + replicas.urls.len());
        for url in std::iter::once(&options.url).chain(&replicas.urls) {
            pools.push((super::ha::host_name(url), pool(url, options)?));
        }
        let hosts = std::sync::Arc::new(Hosts::new(pools, replicas.read_from, replicas.max_lag_ms));
        if !replicas.urls.is_empty() {
            super::ha::probe::start(
                std::sync::Arc::downgrade(&hosts),
                replicas.probe_interval,
                options.connect_timeout + options.statement_timeout,
            );
        }
        Ok(Store {
            hosts,
            statement_timeout: options.statement_timeout,
        })
    }

    /// The hosts (roles, lags, the primary).
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Applies the schema's migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), String> {
        let migrator = Migrator::new(Embedded)
            .await
            .map_err(|e| format!("migrations: {e}"))?;
        migrator
            .run(self.pool())
            .await
            .map_err(|e| format!("migrations: {e}"))
    }

    /// The primary's pool (writes, and reads that must see every commit).
    pub fn pool(&self) -> &PgPool {
        self.hosts.primary()
    }

    /// The pool for a read that may be stale within `max_replica_lag_ms`:
    /// a replica when `read_from` allows one and one is within the bound,
    /// else the primary.
    pub fn read_pool(&self) -> &PgPool {
        match self.hosts.reader() {
            Some(h) => &h.pool,
            None => self.hosts.primary(),
        }
    }

    /// Runs an admin statement (`admin/`, `walk`) within
    /// `statement_timeout`: a Postgres that stops answering fails the
    /// command instead of holding it forever.
    pub async fn timed<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.statement_timeout, statement).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Ambiguous(format!(
                "no answer from postgres within {:?}",
                self.statement_timeout
            ))),
        }
    }

    /// Writes rows, each only over an older version (and not over a newer
    /// tombstone). Returns the keys written and their versions; a key left
    /// out was already newer in Postgres. Keys must be distinct
    /// ([`coalesce_puts`]).
    pub async fn put(&self, puts: &[Put]) -> Result<Vec<(Bytes, i64)>, StoreError> {
        if puts.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&[u8]> = puts.iter().map(|p| p.key.as_ref()).collect();
        let kinds: Vec<&str> = puts.iter().map(|p| p.kind).collect();
        let values: Vec<&[u8]> = puts.iter().map(|p| p.value.as_ref()).collect();
        let expiries: Vec<Option<i64>> = puts.iter().map(|p| p.expires_at_ms).collect();
        let versions: Vec<Option<i64>> = puts.iter().map(|p| p.version).collect();
        let query = sqlx::query(UPSERT)
            .bind(keys)
            .bind(kinds)
            .bind(values)
            .bind(expiries)
            .bind(versions);
        let rows = self.write(query).await?;
        rows.iter()
            .map(|r| {
                let key: Vec<u8> = r.try_get(0).map_err(decode)?;
                let version: i64 = r.try_get(1).map_err(decode)?;
                Ok((Bytes::from(key), version))
            })
            .collect()
    }

    /// Deletes keys (each only over an older version) and leaves their
    /// tombstones. Returns the keys that had a live (unexpired) row.
    pub async fn delete(&self, keys: &[(Bytes, Option<i64>)]) -> Result<Vec<Bytes>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&[u8]> = keys.iter().map(|(k, _)| k.as_ref()).collect();
        let versions: Vec<Option<i64>> = keys.iter().map(|(_, v)| *v).collect();
        let rows = self
            .write(sqlx::query(DELETE).bind(names).bind(versions))
            .await?;
        rows.iter()
            .map(|r| r.try_get::<Vec<u8>, _>(0).map(Bytes::from).map_err(decode))
            .collect()
    }

    /// One transaction: `put` (if any), then the versioned, tombstoned
    /// delete of `delete` (if any), each with the next `strata_version`
    /// (RENAME: the destination written and the source deleted together).
    pub async fn put_and_delete(
        &self,
        put: Option<&Put>,
        delete: Option<&Bytes>,
    ) -> Result<(), StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let statements = async {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            if let Some(p) = put {
                sqlx::query(UPSERT)
                    .bind(vec![p.key.as_ref()])
                    .bind(vec![p.kind])
                    .bind(vec![p.value.as_ref()])
                    .bind(vec![p.expires_at_ms])
                    .bind(vec![p.version])
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(k) = delete {
                sqlx::query(DELETE)
                    .bind(vec![k.as_ref()])
                    .bind(vec![None::<i64>])
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        };
        let result = match tokio::time::timeout(self.statement_timeout, statements).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(StoreError::Ambiguous(format!(
                "no answer from postgres within {:?}",
                self.statement_timeout
            ))),
        };
        if let Err(e) = &result {
            if e.is_ambiguous() {
                conn.close_on_drop();
            }
            if !matches!(e, StoreError::Rejected(m) if !m.contains("read-only")) {
                self.hosts.suspect();
            }
        }
        result
    }

    /// Sets (or, with `None`, clears) a live row's expiry. Returns the new
    /// version, or `None` when there was no live row (or a newer one).
    pub async fn set_expiry(
        &self,
        key: &[u8],
        expires_at_ms: Option<i64>,
        version: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let query = sqlx::query(SET_EXPIRY)
            .bind(key)
            .bind(expires_at_ms)
            .bind(version);
        let rows = self.write(query).await?;
        match rows.first() {
            Some(r) => Ok(Some(r.try_get(0).map_err(decode)?)),
            None => Ok(None),
        }
    }

    /// The live rows of these keys (a row past its expiry is never
    /// returned, swept or not).
    pub async fn fetch(&self, keys: &[Bytes]) -> Result<Vec<Entry>, StoreError> {
        let names: Vec<&[u8]> = keys.iter().map(|k| k.as_ref()).collect();
        let rows = match self.hosts.reader() {
            Some(replica) => {
                match self
                    .read_on(&replica.pool, sqlx::query(FETCH).bind(&names))
                    .await
                {
                    Ok(rows) => rows,
                    // The replica failed (down, or a query cancelled by a
                    // recovery conflict): the primary answers instead.
                    Err(_) => {
                        self.hosts.suspect();
                        self.read(sqlx::query(FETCH).bind(&names)).await?
                    }
                }
            }
            None => self.read(sqlx::query(FETCH).bind(&names)).await?,
        };
        rows.iter()
            .map(|r| {
                Ok(Entry {
                    key: Bytes::from(r.try_get::<Vec<u8>, _>(0).map_err(decode)?),
                    kind: r.try_get(1).map_err(decode)?,
                    value: Bytes::from(r.try_get::<Vec<u8>, _>(2).map_err(decode)?),
                    expires_at_ms: r.try_get(3).map_err(decode)?,
                    version: r.try_get(4).map_err(decode)?,
                })
            })
            .collect()
    }

    /// Deletes up to `batch` expired rows; returns how many.
    pub async fn sweep_expired(&self, batch: i64) -> Result<u64, StoreError> {
        self.execute(sqlx::query(SWEEP).bind(batch)).await
    }

    /// Deletes up to `batch` tombstones older than `retention`.
    pub async fn sweep_tombstones(
        &self,
        retention: Duration,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self.execute(sqlx::query(SWEEP_TOMBSTONES).bind(ms).bind(batch))
            .await
    }

    /// Runs a statement that changes rows, returning its rows; errors say
    /// whether it may have committed.
    async fn write<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let result = self.run_on(self.pool(), query).await;
        if let Err(e) = &result {
            if !matches!(e, StoreError::Rejected(m) if !m.contains("read-only")) {
                // Unreachable, or a standby refusing the write: maybe a
                // failover; the probe looks now rather than at its next turn.
                self.hosts.suspect();
            }
        }
        result
    }

    /// Runs a statement on one host's pool, returning its rows.
    async fn run_on<'q>(
        &self,
        pool: &PgPool,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let mut conn = pool
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(self.statement_timeout, query.fetch_all(&mut *conn)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => {
                // The statement may still run: this connection is in an
                // unknown state, so it does not go back to the pool.
                conn.close_on_drop();
                Err(StoreError::Ambiguous(format!(
                    "no answer from postgres within {:?}",
                    self.statement_timeout
                )))
            }
        }
    }

    /// A read: any failure means nothing was read.
    async fn read<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        self.write(query).await.map_err(|e| match e {
            StoreError::Ambiguous(m) => StoreError::Unavailable(m),
            other => other,
        })
    }

    /// A read on one host: any failure means nothing was read.
    async fn read_on<'q>(
        &self,
        pool: &PgPool,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        self.run_on(pool, query).await.map_err(|e| match e {
            StoreError::Ambiguous(m) => StoreError::Unavailable(m),
            other => other,
        })
    }

    async fn execute<'q>(
        &self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, StoreError> {
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        match tokio::time::timeout(self.statement_timeout, query.execute(&mut *conn)).await {
            Ok(Ok(done)) => Ok(done.rows_affected()),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => {
                conn.close_on_drop();
                Err(StoreError::Ambiguous("sweep timed out".into()))
            }
        }
    }
}

/// One host's lazy pool.
fn pool(url: &str, options: &StoreOptions) -> Result<PgPool, String> {
    let connect: PgConnectOptions = url.parse().map_err(|e| format!("postgres url: {e}"))?;
    Ok(PgPoolOptions::new()
        .max_connections(options.pool_size)
        .acquire_timeout(options.connect_timeout)
        // sqlx pings every connection it hands out by default: a second
        // round trip per write. Only a connection idle for a while is
        // pinged (one unused across a Postgres restart is then replaced
        // before a write is sent on it); a busy one is used at once.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_PING_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        // NOTICEs ("… already exists, skipping" from the migrations at
        // every start) are not for strata's log.
        .connect_lazy_with(
            connect
                .application_name("strata")
                .options([("client_min_messages", "warning")]),
        ))
}

/// A statement's failure: Postgres's own refusal applied nothing; anything
/// else happened with the statement possibly sent.
fn classify(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => StoreError::Rejected(db.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Ambiguous(other.to_string()),
    }
}

fn decode(e: sqlx::Error) -> StoreError {
    StoreError::Rejected(format!("unexpected row: {e}"))
}

/// Keeps the newest change per key (the last one given, when versions
/// are left to the sequence): one statement may not touch a row twice.
pub fn coalesce_puts(puts: Vec<Put>) -> Vec<Put> {
    let mut at: std::collections::HashMap<Bytes, usize> =
        std::collections::HashMap::with_capacity(puts.len());
    let mut out: Vec<Put> = Vec::with_capacity(puts.len());
    for p in puts {
        match at.get(&p.key) {
            Some(&i) if out[i].version <= p.version || p.version.is_none() => out[i] = p,
            Some(_) => {}
            None => {
                at.insert(p.key.clone(), out.len());
                out.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &'static str, value: &'static str, version: Option<i64>) -> Put {
        Put {
            key: Bytes::from_static(key.as_bytes()),
            kind: "string",
            value: Bytes::from_static(value.as_bytes()),
            expires_at_ms: None,
            version,
        }
    }

    #[test]
    fn coalescing_keeps_the_newest_per_key_in_first_seen_order() {
        let out = coalesce_puts(vec![
            put("a", "1", None),
            put("b", "1", None),
            put("a", "2", None),
        ]);
        let got: Vec<(&[u8], &[u8])> = out.iter().map(|p| (&p.key[..], &p.value[..])).collect();
        assert_eq!(got, vec![(&b"a"[..], &b"2"[..]), (&b"b"[..], &b"1"[..])]);
        let out = coalesce_puts(vec![put("a", "new", Some(5)), put("a", "old", Some(3))]);
        assert_eq!(&out[0].value[..], b"new");
    }
}
