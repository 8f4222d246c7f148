//! `policy = "spill"`: large or cold keys move to Postgres and leave a
//! small *stub* in Redis; the first touch through strata puts them back.
//!
//! # The stub
//!
//! A spilled key stays a key in Redis, so SCAN, KEYS, DBSIZE, EXISTS, TTL,
//! PTTL, EXPIRETIME and RANDOMKEY stay exact and Redis still expires it on
//! time: its value becomes a short string, [`MAGIC`] then the version of
//! its `strata_entries` row and its real type (`\0strata-spill\0<v>:hash`),
//! with its TTL kept. The row holds the value as the mirror's rows do (a
//! string's bytes; other types' DUMP payload), the type and `expires_at`.
//!
//! # Moving a key out ([`evict`])
//!
//! Under the key's lock (this strata) and a Postgres advisory lock (every
//! strata): one script reads the type, DUMP payload and PEXPIRETIME at one
//! instant (skipping stubs and keys touched within the rule's `hold_ms`);
//! the row is upserted with a new version; a second script replaces the
//! key by its stub only if its value and expiry are still those read.
//! A write racing the spill therefore wins and the spill is given up (its
//! row deleted): a write is never lost.
//!
//! # Moving it back ([`touch`])
//!
//! Commands on a spill rule's keys are run by the tier under the keys'
//! locks (one key at a time per strata, as the mirror's writes): a script
//! says whether a key is a stub; a stub is restored (the row fetched, then
//! `SET … KEEPTTL` or `RESTORE … REPLACE ABSTTL` with the stub's expiry, by a script that
//! checks the stub is still there) and its row deleted; then the client's
//! command runs on its own connection and its reply is the client's. Fifty
//! clients touching one spilled key wait on its lock; the first restores,
//! the others find it resident: one fetch. TYPE of a stub is answered from
//! the stub; DEL, UNLINK and overwriting SET/SETEX/PSETEX/MSET replace a
//! stub and delete its row without a fetch;
//! EXISTS, TTL, PTTL, EXPIRETIME, PEXPIRETIME and TOUCH are answered by the
//! stub itself (no extra round trip).
//!
//! # Finding keys to move ([`scanner`])
//!
//! A background task SCANs every primary for each spill rule's pattern,
//! throttled to `keys_per_sec`, asks OBJECT IDLETIME and MEMORY USAGE, and
//! spills the keys past `min_size` or `idle_ms` (never one touched within
//! `hold_ms`: the hysteresis). `PROXY TIER SPILL <pattern>` spills now.

pub mod config;
pub mod evict;
pub mod scanner;
pub mod stats;
pub mod touch;

use bytes::Bytes;

pub use config::SpillConfig;
pub use stats::SpillStats;
pub use touch::{Touch, TouchKind};

use super::behind::script::Script;

/// What every stub starts with: a NUL, so no text value is mistaken for one.
pub const MAGIC: &[u8] = b"\0strata-spill\0";

/// Spill's shared state: one per strata.
#[derive(Debug)]
pub struct Spill {
    config: SpillConfig,
    check: Script,
    read: Script,
    stub: Script,
    restore: Script,
    stats: SpillStats,
}

impl Spill {
    /// From validated config.
    pub fn new(config: &SpillConfig) -> Spill {
        Spill {
            config: config.clone(),
            check: Script::new(include_str!("../../../lua/tier_spill_check.lua")),
            read: Script::new(include_str!("../../../lua/tier_spill_read.lua")),
            stub: Script::new(include_str!("../../../lua/tier_spill_stub.lua")),
            restore: Script::new(include_str!("../../../lua/tier_spill_restore.lua")),
            stats: SpillStats::default(),
        }
    }

    /// `[postgres.spill]`.
    pub fn config(&self) -> &SpillConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &SpillStats {
        &self.stats
    }
}

/// A stub's contents, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stub {
    /// The whole stub, as Redis holds it.
    pub raw: Bytes,
    /// The version of the key's row.
    pub version: i64,
    /// The real type (`hash`, …).
    pub kind: &'static str,
}

/// The stub for a row of `version` holding a key of type `kind`.
pub fn stub(version: i64, kind: &str) -> Bytes {
    let mut s = Vec::with_capacity(MAGIC.len() + 28);
    s.extend_from_slice(MAGIC);
    s.extend_from_slice(format!("{version}:{kind}").as_bytes());
    Bytes::from(s)
}

/// Reads a stub; `None` when `raw` is not one strata wrote.
pub fn parse_stub(raw: &Bytes) -> Option<Stub> {
    let rest = raw.strip_prefix(MAGIC)?;
    let text = std::str::from_utf8(rest).ok()?;
    let (version, kind) = text.split_once(':')?;
    Some(Stub {
        raw: raw.clone(),
        version: version.parse().ok()?,
        kind: super::redis_type(Some(kind.as_bytes()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_round_trip_and_text_is_not_a_stub() {
        let s = stub(42, "hash");
        assert_eq!(
            parse_stub(&s),
            Some(Stub {
                raw: s.clone(),
                version: 42,
                kind: "hash"
            })
        );
        assert_eq!(
            parse_stub(&Bytes::from_static(b"strata-spill 1:hash")),
            None
        );
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(b"x:hash");
        assert_eq!(parse_stub(&Bytes::from(bad)), None);
        assert_eq!(parse_stub(&stub(1, "module")), None);
    }
}
