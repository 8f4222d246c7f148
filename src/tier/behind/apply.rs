//! A batch into Postgres: one transaction with the store's versioned
//! upsert and tombstoned delete (`tier/store.rs`), so a redelivered change
//! is a no-op and an older change never overwrites a newer one.
//!
//! The transaction first takes an advisory lock per key (in key-hash
//! order): two stratas draining changes of one key at once (the consumer
//! group does not order them across consumers) then apply them one after
//! the other, so a delete cannot slip between another transaction's
//! tombstone check and its insert.
//!
//! Failures are sorted by what they say about the change: SQLSTATE classes
//! 22 (data exception), 23 (integrity constraint) and 54 (program limit)
//! are the change's own fault (permanent: dead letter); everything else —
//! no connection, a timeout, a deadlock, a missing table while the schema
//! is being applied, a permission — is the environment's, and the batch
//! waits and is retried (never dead-lettered for it).

use std::time::Duration;

use sqlx::postgres::PgPool;

use super::entry::{Change, Op};
use crate::tier::store::{DELETE, UPSERT};

/// Why a batch did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Retry later: Postgres is unreachable, slow, or not ready.
    Transient(String),
    /// Postgres refuses this content: retrying cannot help.
    Permanent(String),
}

const LOCK: &str = "\
SELECT count(pg_advisory_xact_lock(21332, h)) FROM (
    SELECT DISTINCT ('x' || left(md5(k), 8))::bit(32)::int4 AS h
    FROM UNNEST($1::bytea[]) AS k ORDER BY 1
) x";

const DEAD_LETTER: &str = "\
INSERT INTO strata_dead_letters (key, type, value, expires_at, version, reason)
VALUES ($1, $2, $3, timestamptz 'epoch' + $4::int8 * interval '1 millisecond', $5, $6)";

/// Applies changes (distinct keys) in one transaction.
pub async fn apply(
    pool: &PgPool,
    timeout: Duration,
    changes: &[&Change],
) -> Result<(), ApplyError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut conn = match tokio::time::timeout(timeout, pool.acquire()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(ApplyError::Transient(e.to_string())),
        Err(_) => return Err(ApplyError::Transient("no postgres connection".into())),
    };
    match tokio::time::timeout(timeout, apply_tx(&mut conn, changes)).await {
        Ok(r) => r.map_err(classify),
        Err(_) => {
            // The statement may still be running (waiting for a lock): the
            // connection is closed rather than given back, or the pool
            // would hand out connections stuck behind it.
            conn.close_on_drop();
            Err(ApplyError::Transient(format!(
                "no answer from postgres within {timeout:?}"
            )))
        }
    }
}

async fn apply_tx(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    changes: &[&Change],
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut **conn).await?;
    let keys: Vec<&[u8]> = changes.iter().map(|c| c.key.as_ref()).collect();
    sqlx::query(LOCK).bind(&keys).execute(&mut *tx).await?;
    let (mut pk, mut pt, mut pv, mut pe, mut pn) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut dk, mut dn) = (vec![], vec![]);
    for c in changes {
        match &c.op {
            Op::Put {
                kind,
                value,
                expires_at_ms,
            } => {
                pk.push(c.key.as_ref());
                pt.push(*kind);
                pv.push(value.as_ref());
                pe.push(*expires_at_ms);
                pn.push(Some(c.version));
            }
            Op::Delete => {
                dk.push(c.key.as_ref());
                dn.push(Some(c.version));
            }
        }
    }
    if !pk.is_empty() {
        sqlx::query(UPSERT)
            .bind(pk)
            .bind(pt)
            .bind(pv)
            .bind(pe)
            .bind(pn)
            .execute(&mut *tx)
            .await?;
    }
    if !dk.is_empty() {
        sqlx::query(DELETE)
            .bind(dk)
            .bind(dn)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Records a change Postgres refused, with the reason.
pub async fn dead_letter(
    pool: &PgPool,
    timeout: Duration,
    key: &[u8],
    op: Option<&Op>,
    version: Option<i64>,
    reason: &str,
) -> Result<(), ApplyError> {
    let (kind, value, expires) = match op {
        Some(Op::Put {
            kind,
            value,
            expires_at_ms,
        }) => (Some(*kind), Some(value.as_ref()), *expires_at_ms),
        _ => (None, None, None),
    };
    let q = sqlx::query(DEAD_LETTER)
        .bind(key)
        .bind(kind)
        .bind(value)
        .bind(expires)
        .bind(version)
        .bind(reason);
    match tokio::time::timeout(timeout, q.execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        // The dead-letter row itself must land: any failure is retried.
        Ok(Err(e)) => Err(ApplyError::Transient(e.to_string())),
        Err(_) => Err(ApplyError::Transient("dead letter timed out".into())),
    }
}

fn classify(e: sqlx::Error) -> ApplyError {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().map(|c| c.to_string()).unwrap_or_default();
        if code.starts_with("22") || code.starts_with("23") || code.starts_with("54") {
            return ApplyError::Permanent(format!("{} (SQLSTATE {code})", db.message()));
        }
    }
    ApplyError::Transient(e.to_string())
}
