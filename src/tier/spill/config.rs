//! `[postgres.spill]` (the background scanner) and the spill options of a
//! `[[tier]]` rule (`min_size`, `idle_ms`, `hold_ms`).
//!
//! ```toml
//! [postgres.spill]               # every field optional; defaults shown
//! scan_interval_ms = 1000        # a scan pass starts this long after the last ended
//! keys_per_sec = 1000            # most keys the scanner examines per second
//! scan_count = 100               # SCAN's COUNT per call
//!
//! [[tier]]
//! pattern = "blob:*"
//! policy = "spill"
//! min_size = 65536               # MEMORY USAGE at least this → spill (and/or idle_ms)
//! idle_ms = 3600000              # OBJECT IDLETIME at least this → spill
//! hold_ms = 60000                # never spill a key touched within this (hysteresis)
//! ```
//!
//! Two thresholds keep keys from bouncing between the tiers: a key is
//! spilled when it is large or cold, and restored on its next touch; it is
//! spilled again only once it has not been touched for `hold_ms`, however
//! large it is. `hold_ms` defaults to 60 s (or `idle_ms` when shorter)
//! and may not exceed `idle_ms`.

use serde::Deserialize;

use crate::tier::config::TierRuleConfig;

/// `[postgres.spill]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SpillConfig {
    /// Pause between two scan passes (a pass walks every primary once).
    #[serde(default = "default_scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// Most keys examined per second (OBJECT IDLETIME and MEMORY USAGE
    /// each): the scanner's load on Redis is bounded by this.
    #[serde(default = "default_keys_per_sec")]
    pub keys_per_sec: u64,
    /// SCAN's COUNT per call.
    #[serde(default = "default_scan_count")]
    pub scan_count: u64,
}

fn default_scan_interval_ms() -> u64 {
    1_000
}
fn default_keys_per_sec() -> u64 {
    1_000
}
fn default_scan_count() -> u64 {
    100
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            scan_interval_ms: default_scan_interval_ms(),
            keys_per_sec: default_keys_per_sec(),
            scan_count: default_scan_count(),
        }
    }
}

/// `hold_ms` of a `min_size`-only rule, unless given.
pub const DEFAULT_HOLD_MS: u64 = 60_000;

impl SpillConfig {
    /// Refuses values the scanner cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.scan_interval_ms == 0 || self.keys_per_sec == 0 || self.scan_count == 0 {
            return Err(
                "postgres.spill: scan_interval_ms, keys_per_sec and scan_count must be at least 1"
                    .into(),
            );
        }
        if self.scan_count > 100_000 {
            return Err("postgres.spill.scan_count must be at most 100000".into());
        }
        Ok(())
    }
}

/// Checks a `policy = "spill"` rule; `name` names it in messages.
pub fn validate_rule(name: &str, rule: &TierRuleConfig) -> Result<(), String> {
    if rule.write.is_some() {
        return Err(format!("{name}: write is a mirror option, not spill's"));
    }
    if rule.min_size.is_none() && rule.idle_ms.is_none() {
        return Err(format!(
            "{name}: policy = \"spill\" needs min_size and/or idle_ms"
        ));
    }
    if rule.min_size == Some(0) {
        return Err(format!(
            "{name}: min_size must be at least 1 (bytes, as MEMORY USAGE counts them)"
        ));
    }
    if rule.idle_ms == Some(0) {
        return Err(format!("{name}: idle_ms must be at least 1"));
    }
    if let (Some(hold), Some(idle)) = (rule.hold_ms, rule.idle_ms) {
        if hold > idle {
            return Err(format!(
                "{name}: hold_ms ({hold}) must not exceed idle_ms ({idle}): a key idle for idle_ms is cold"
            ));
        }
    }
    Ok(())
}

/// The rule's hold (hysteresis), its default applied: 60 s, or `idle_ms`
/// when shorter (a key idle for `idle_ms` is cold whatever its size).
pub fn hold_ms(rule: &TierRuleConfig) -> u64 {
    rule.hold_ms.unwrap_or_else(|| {
        rule.idle_ms
            .map_or(DEFAULT_HOLD_MS, |i| i.min(DEFAULT_HOLD_MS))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_defaults_to_a_minute_or_idle_ms() {
        let rule = |text: &str| -> TierRuleConfig {
            toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
        };
        let base = "pattern = \"a\"\npolicy = \"spill\"\n";
        assert_eq!(hold_ms(&rule(&format!("{base}min_size = 1"))), 60_000);
        assert_eq!(hold_ms(&rule(&format!("{base}idle_ms = 5000"))), 5_000);
        assert_eq!(
            hold_ms(&rule(&format!("{base}idle_ms = 3600000\nmin_size = 1"))),
            60_000
        );
        assert_eq!(
            hold_ms(&rule(&format!("{base}min_size = 1\nhold_ms = 7"))),
            7
        );
    }
}
