//! Commands on a spill rule's keys: a stub is restored on first touch
//! (once, however many clients touch it at once), then the command runs as
//! on a resident key. See the module docs of `spill`.

use bytes::Bytes;

use crate::protocol::reply;
use crate::tier::readthrough::unavailable;
use crate::tier::redis::{bulk, error_text, int, RedisLink};
use crate::tier::Tiers;

use super::evict::DELETE_VERSION;
use super::{parse_stub, Stub, MAGIC};

/// What the tier does with a command on spill keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TouchKind {
    /// Restore the stubs among the keys, then run the command.
    Run,
    /// TYPE: a stub answers its real type.
    Type,
    /// A command that deletes or overwrites its keys whole (DEL, UNLINK,
    /// SET without NX/XX/GET/KEEPTTL, SETEX, PSETEX, MSET): stubs are never
    /// fetched; once the command ran, their rows are deleted.
    Replace,
}

/// A command on spill keys, run by the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// What to do.
    pub kind: TouchKind,
    /// The command's keys that spill rules name.
    pub keys: Vec<Bytes>,
    /// The key that routes the command (its first key; in cluster mode all
    /// its keys share that slot).
    pub route: Bytes,
    /// The command, as the client sent it (after value transforms).
    pub args: Vec<Bytes>,
}

impl Tiers {
    /// Runs a command on spill keys under their locks; the reply is the
    /// client's (its protocol, errors included).
    pub async fn touch(&self, link: &RedisLink<'_>, t: Touch) -> Bytes {
        let _guards = self.locks.lock_all(&t.keys).await;
        let mut deleted: Vec<(Bytes, i64)> = Vec::new();
        match t.kind {
            TouchKind::Run => {
                if let Err(text) = self.restore_locked(link, &t.keys).await {
                    return reply::error(&text);
                }
            }
            TouchKind::Type => match self.stubs(link, &t.keys).await {
                Ok(stubs) => {
                    if let Some((_, s)) = stubs.first() {
                        return Bytes::from(format!("+{}\r\n", s.kind));
                    }
                }
                Err(text) => return reply::error(&text),
            },
            TouchKind::Replace => match self.stubs(link, &t.keys).await {
                Ok(stubs) => deleted = stubs.into_iter().map(|(k, s)| (k, s.version)).collect(),
                Err(text) => return reply::error(&text),
            },
        }
        let reply = match link.call_one(&t.route, t.args).await {
            Ok(r) => r,
            Err(e) => return reply::error(&format!("ERR backend unavailable: {e}")),
        };
        if !deleted.is_empty() && error_text(&reply).is_none() {
            // The stubs are gone from Redis; their rows go too (best
            // effort: a row left behind has no stub and is never served).
            for (key, version) in deleted {
                self.delete_row(&key, version).await;
            }
        }
        reply
    }

    /// Makes the stubs among `keys` resident again before a command that
    /// the tier does not run itself (MULTI, scripts, blocking commands,
    /// multi-slot commands): read-through's `warm` calls it.
    pub async fn unspill(&self, link: &RedisLink<'_>, keys: &[Bytes]) -> Result<(), String> {
        let _guards = self.locks.lock_all(keys).await;
        self.restore_locked(link, keys).await
    }

    /// The stubs among `keys` (distinct), with their contents.
    async fn stubs(
        &self,
        link: &RedisLink<'_>,
        keys: &[Bytes],
    ) -> Result<Vec<(Bytes, Stub)>, String> {
        let Some(spill) = self.spill.as_deref() else {
            return Ok(Vec::new());
        };
        let mut distinct = keys.to_vec();
        distinct.sort();
        distinct.dedup();
        let mut out = Vec::new();
        for key in distinct {
            let frame = spill
                .check
                .run(
                    link,
                    &key,
                    std::slice::from_ref(&key),
                    &[Bytes::from_static(MAGIC)],
                )
                .await
                .map_err(|e| format!("ERR backend unavailable: {e}"))?;
            if let Some(text) = error_text(&frame) {
                return Err(text);
            }
            if let Some(s) = bulk(&frame).as_ref().and_then(parse_stub) {
                out.push((key, s));
            }
        }
        Ok(out)
    }

    /// Restores the stubs among `keys`; the caller holds their locks.
    async fn restore_locked(&self, link: &RedisLink<'_>, keys: &[Bytes]) -> Result<(), String> {
        let stubs = self.stubs(link, keys).await?;
        if stubs.is_empty() {
            return Ok(());
        }
        let Some(spill) = self.spill.as_deref() else {
            return Ok(());
        };
        self.ensure_schema().await.map_err(|e| unavailable(&e))?;
        let names: Vec<Bytes> = stubs.iter().map(|(k, _)| k.clone()).collect();
        spill.stats.restores.inc_by(names.len() as u64);
        let rows = match self.store.fetch(&names).await {
            Ok(rows) => {
                self.postgres_answered(true);
                rows
            }
            Err(e) => {
                self.postgres_answered(false);
                return Err(unavailable(&e));
            }
        };
        for (key, s) in &stubs {
            let Some(row) = rows.iter().find(|r| r.key == key && r.version == s.version) else {
                return Err(format!(
                    "ERR tier: the spilled value of '{}' (version {}) is missing from Postgres (DEL the key to drop its stub)",
                    String::from_utf8_lossy(key),
                    s.version
                ));
            };
            let r = spill
                .restore
                .run(
                    link,
                    key,
                    std::slice::from_ref(key),
                    &[
                        s.raw.clone(),
                        row.value.clone(),
                        Bytes::from(row.kind.clone()),
                    ],
                )
                .await
                .map_err(|e| format!("ERR backend unavailable: {e}"))?;
            if let Some(text) = error_text(&r) {
                return Err(format!(
                    "ERR tier: the key is in Postgres but Redis refused to restore it ({text})"
                ));
            }
            if int(&r) == Some(1) {
                self.delete_row(key, s.version).await;
            }
        }
        Ok(())
    }

    /// Deletes exactly `key`'s row of `version` (best effort).
    async fn delete_row(&self, key: &Bytes, version: i64) {
        let done = self
            .store
            .timed(
                sqlx::query(DELETE_VERSION)
                    .bind(key.as_ref())
                    .bind(version)
                    .execute(self.store.pool()),
            )
            .await;
        if let Err(e) = done {
            tracing::debug!(key = %String::from_utf8_lossy(key), error = %e, "tier: spill row left behind");
        }
    }
}
