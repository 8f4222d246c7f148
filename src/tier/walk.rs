//! Walking the live rows of `strata_entries` whose key matches a Redis glob,
//! a batch at a time, for the admin commands (`PROXY TIER …`).
//!
//! Keyset pagination (`key > last ORDER BY key LIMIT n`) on the primary
//! key: each batch is one indexed range read, memory stays at one batch
//! whatever the table's size, and rows written meanwhile are seen or not
//! but never twice. The glob's literal prefix (the bytes before its first
//! `*`, `?`, `[` or `\`) bounds the range, since `bytea` orders bytewise;
//! the rest of the glob is matched here with the data path's own matcher,
//! so the commands agree with SCAN MATCH and with the `[[tier]]` rules.
//!
//! A walk reads a replica when `read_from` allows it (STATS, VERIFY, WARM:
//! staleness within the bound is acceptable there); FLUSH walks the
//! primary ([`Walk::on_primary`]).

use bytes::Bytes;
use sqlx::Row;

use super::store::{Store, StoreError};
use crate::transform::glob::Glob;

/// Rows fetched per batch.
pub const BATCH: i64 = 500;

/// One live row; `value` only when asked for.
#[derive(Debug, Clone)]
pub struct WalkRow {
    /// The Redis key.
    pub key: Bytes,
    /// Redis's type name.
    pub kind: String,
    /// The value or DUMP payload (`None` when the walk skips values).
    pub value: Option<Bytes>,
    /// The value's length in bytes.
    pub len: i64,
    /// Absolute expiry, Unix ms.
    pub expires_at_ms: Option<i64>,
}

const WALK: &str = "\
SELECT key, type, CASE WHEN $4 THEN value END, octet_length(value),
       (extract(epoch FROM expires_at) * 1000)::int8
FROM strata_entries
WHERE ($1::bytea IS NULL OR key > $1) AND key >= $2
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY key LIMIT $3";

/// The literal bytes a glob's matches all start with.
pub fn literal_prefix(pattern: &[u8]) -> &[u8] {
    let end = pattern
        .iter()
        .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
        .unwrap_or(pattern.len());
    &pattern[..end]
}

/// A walk over the rows matching one glob.
pub struct Walk {
    glob: Glob,
    prefix: Vec<u8>,
    last: Option<Vec<u8>>,
    values: bool,
    done: bool,
    /// Read on the primary even when replicas may be read (a walk whose
    /// rows are then changed: FLUSH).
    primary: bool,
}

impl Walk {
    /// Starts before the first row; `values`: fetch the values too.
    pub fn new(pattern: &[u8], values: bool) -> Walk {
        Walk {
            glob: Glob::new(pattern),
            prefix: literal_prefix(pattern).to_vec(),
            last: None,
            values,
            done: false,
            primary: false,
        }
    }

    /// Reads on the primary only (never a possibly stale replica).
    pub fn on_primary(mut self) -> Walk {
        self.primary = true;
        self
    }

    /// The next batch's matching rows; `None` once the range is exhausted.
    /// A batch may be empty (no row in it matched) while more follow.
    pub async fn next(&mut self, store: &Store) -> Result<Option<Vec<WalkRow>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let rows = store
            .timed(
                sqlx::query(WALK)
                    .bind(self.last.as_deref())
                    .bind(&self.prefix[..])
                    .bind(BATCH)
                    .bind(self.values)
                    .fetch_all(if self.primary {
                        store.pool()
                    } else {
                        store.read_pool()
                    }),
            )
            .await?;
        if (rows.len() as i64) < BATCH {
            self.done = true;
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: Vec<u8> = r.try_get(0).map_err(decode)?;
            if !key.starts_with(&self.prefix) {
                // Past the prefix's range: nothing further can match.
                self.done = true;
                break;
            }
            if self.glob.matches(&key) {
                out.push(WalkRow {
                    key: Bytes::copy_from_slice(&key),
                    kind: r.try_get(1).map_err(decode)?,
                    value: r
                        .try_get::<Option<Vec<u8>>, _>(2)
                        .map_err(decode)?
                        .map(Bytes::from),
                    len: r.try_get::<Option<i32>, _>(3).map_err(decode)?.unwrap_or(0) as i64,
                    expires_at_ms: r.try_get(4).map_err(decode)?,
                });
            }
            self.last = Some(key);
        }
        if out.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

fn decode(e: sqlx::Error) -> StoreError {
    StoreError::Rejected(format!("unexpected row: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_stops_at_the_first_special_byte() {
        assert_eq!(literal_prefix(b"durable:*"), b"durable:");
        assert_eq!(literal_prefix(b"a?b"), b"a");
        assert_eq!(literal_prefix(b"[ab]c"), b"");
        assert_eq!(literal_prefix(b"x\\*y"), b"x");
        assert_eq!(literal_prefix(b"plain"), b"plain");
    }
}
