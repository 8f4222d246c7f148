//! `[[tier]]` rules compiled for the data path: a key's rule is the first
//! whose glob matches it (the same matcher as `[[transform]]` rules).

use crate::transform::glob::Glob;

use super::config::{Policy, TierRuleConfig, WriteMode};

/// What a rule does with its keys (only what this build implements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `policy = "mirror"`, `write = "through"`.
    MirrorThrough,
    /// `policy = "mirror"`, `write = "behind"` (`tier/behind/`).
    MirrorBehind,
    /// `policy = "spill"` (`tier/spill/`).
    Spill,
}

/// A spill rule's thresholds (`tier/spill/config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpillThresholds {
    /// Spill keys whose MEMORY USAGE is at least this.
    pub min_size: Option<u64>,
    /// Spill keys idle at least this long.
    pub idle_ms: Option<u64>,
    /// Never spill a key touched within this long (hysteresis).
    pub hold_ms: u64,
}

/// One compiled rule.
#[derive(Debug)]
pub struct TierRule {
    glob: Glob,
    /// The literal bytes every match starts with (`durable:` for
    /// `durable:*`): most keys on the data path match no rule, and a
    /// prefix comparison turns them away before the glob runs.
    prefix: Vec<u8>,
    pattern: String,
    mode: Mode,
    /// The thresholds of a spill rule (default for the others).
    spill: SpillThresholds,
    /// Read-through lookups of this rule's keys that found a row
    /// (`PROXY TIER STATS`).
    pub hits: std::sync::atomic::AtomicU64,
    /// … and that found none.
    pub misses: std::sync::atomic::AtomicU64,
}

impl TierRule {
    /// The rule's pattern, as configured (for messages).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// What the rule does.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A spill rule's thresholds.
    pub fn spill(&self) -> SpillThresholds {
        self.spill
    }

    /// True when `key` matches the rule's pattern.
    pub fn matches(&self, key: &[u8]) -> bool {
        self.glob.matches(key)
    }
}

/// Every rule, in order.
#[derive(Debug, Default)]
pub struct TierRules {
    rules: Vec<TierRule>,
    /// For each first byte of a key, the rules (indexes, in order) that
    /// could match it: those whose literal prefix starts with that byte,
    /// and those with no literal prefix. Most keys on the data path match
    /// no rule; with many rules, this turns them away in one lookup
    /// instead of a prefix comparison per rule (20 rules cost plain
    /// commands +60% instructions that way).
    by_first: Vec<Vec<usize>>,
    /// The rules with no literal prefix (what an empty key may match).
    open: Vec<usize>,
    /// A bit per first byte: set when some rule may match a key starting
    /// with it (every bit, when a rule has no literal prefix). The data
    /// path's first check ([`TierRules::may_match`]): a few instructions
    /// turn away a key no rule can match, whatever the number of rules.
    first: [u64; 4],
}

impl TierRules {
    /// Compiles validated rules (`config::validate` refused the rest).
    pub fn new(configs: &[TierRuleConfig]) -> Result<TierRules, String> {
        let mut rules = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let mode = match (c.policy, c.write) {
                (Policy::Mirror, Some(WriteMode::Through)) => Mode::MirrorThrough,
                (Policy::Mirror, Some(WriteMode::Behind)) => Mode::MirrorBehind,
                (Policy::Spill, None) => Mode::Spill,
                _ => {
                    return Err(format!(
                        "tier[{i}] (pattern '{}'): this policy is not available in this build",
                        c.pattern
                    ))
                }
            };
            rules.push(TierRule {
                glob: Glob::new(c.pattern.as_bytes()),
                prefix: super::walk::literal_prefix(c.pattern.as_bytes()).to_vec(),
                pattern: c.pattern.clone(),
                mode,
                spill: SpillThresholds {
                    min_size: c.min_size,
                    idle_ms: c.idle_ms,
                    hold_ms: super::spill::config::hold_ms(c),
                },
                hits: Default::default(),
                misses: Default::default(),
            });
        }
        let open: Vec<usize> = (0..rules.len())
            .filter(|&i| rules[i].prefix.is_empty())
            .collect();
        let by_first: Vec<Vec<usize>> = (0..=255u8)
            .map(|b| {
                (0..rules.len())
                    .filter(|&i| rules[i].prefix.first().is_none_or(|f| *f == b))
                    .collect()
            })
            .collect();
        let mut first = [0u64; 4];
        for (b, candidates) in by_first.iter().enumerate() {
            if !candidates.is_empty() {
                first[b >> 6] |= 1 << (b & 63);
            }
        }
        Ok(TierRules {
            rules,
            by_first,
            open,
            first,
        })
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some rule is write-behind.
    pub fn any_behind(&self) -> bool {
        self.rules.iter().any(|r| r.mode == Mode::MirrorBehind)
    }

    /// True when some rule is spill.
    pub fn any_spill(&self) -> bool {
        self.rules.iter().any(|r| r.mode == Mode::Spill)
    }

    /// Every rule, in order.
    pub fn all(&self) -> &[TierRule] {
        &self.rules
    }

    /// False when no rule can match `key` (its first byte starts no
    /// rule's literal prefix): the bitmap alone, no rule looked at.
    #[inline]
    pub fn may_match(&self, key: &[u8]) -> bool {
        match key.first() {
            Some(&b) => self.first[usize::from(b >> 6)] & (1 << (b & 63)) != 0,
            None => !self.open.is_empty(),
        }
    }

    /// The bitmap [`TierRules::may_match`] reads, and whether an empty key
    /// may match.
    fn gate_bits(&self) -> ([u64; 4], bool) {
        (self.first, !self.open.is_empty())
    }

    /// The first rule matching `key`.
    #[inline]
    pub fn find(&self, key: &[u8]) -> Option<&TierRule> {
        let candidates = match key.first() {
            Some(b) => self.by_first.get(usize::from(*b))?,
            None => &self.open,
        };
        candidates
            .iter()
            .map(|&i| &self.rules[i])
            .find(|r| key.starts_with(&r.prefix) && r.glob.matches(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str) -> TierRuleConfig {
        TierRuleConfig {
            pattern: pattern.into(),
            policy: Policy::Mirror,
            write: Some(WriteMode::Through),
            min_size: None,
            idle_ms: None,
            hold_ms: None,
        }
    }

    #[test]
    fn first_match_wins() {
        let rules = TierRules::new(&[rule("durable:*"), rule("*")]).expect("rules");
        assert_eq!(
            rules.find(b"durable:x").map(|r| r.pattern()),
            Some("durable:*")
        );
        assert_eq!(rules.find(b"other").map(|r| r.pattern()), Some("*"));
        let rules = TierRules::new(&[rule("durable:*")]).expect("rules");
        assert!(rules.find(b"cache:x").is_none());
        assert!(rules.find(b"").is_none());
        assert!(rules.find(b"d").is_none());
    }

    #[test]
    fn the_first_byte_index_keeps_rule_order() {
        let rules = TierRules::new(&[
            rule("a:*"),
            rule("*:x"),
            rule("ab*"),
            rule("[ab]*"),
            rule("b?"),
        ])
        .expect("rules");
        let found = |k: &[u8]| rules.find(k).map(|r| r.pattern());
        assert_eq!(found(b"a:x"), Some("a:*"));
        assert_eq!(found(b"ab:x"), Some("*:x"));
        assert_eq!(found(b"abc"), Some("ab*"));
        assert_eq!(found(b"a"), Some("[ab]*"));
        assert_eq!(found(b"bc"), Some("[ab]*"));
        assert_eq!(found(b"c:x"), Some("*:x"));
        assert_eq!(found(b"c"), None);
        assert_eq!(found(b""), None);
        // A rule with no literal prefix: every key may match (a filter, not a verdict).
        assert!(rules.may_match(b"c") && rules.may_match(b""));
        let prefixed = TierRules::new(&[rule("a:*"), rule("b?")]).expect("rules");
        assert!(prefixed.may_match(b"a:x") && prefixed.may_match(b"bx"));
        assert!(!prefixed.may_match(b"key:1") && !prefixed.may_match(b""));
        assert!(prefixed.may_match(b"a") && prefixed.find(b"a").is_none());
        let any = TierRules::new(&[rule("*:x")]).expect("rules");
        assert!(any.may_match(b"key:1") && any.may_match(b"\xff"));
        let any = TierRules::new(&[rule("*")]).expect("rules");
        assert_eq!(any.find(b"").map(|r| r.pattern()), Some("*"));
    }
}

/// [`TierRules::may_match`]'s bitmap in atomics, outside the swappable
/// rules (`Tiers::reload_rules`): the data path's first check reads it with
/// plain loads, without taking a reference to the rules.
#[derive(Debug, Default)]
pub struct Gate {
    first: [std::sync::atomic::AtomicU64; 4],
    empty: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// Exactly `rules`' bitmap.
    pub fn set(&self, rules: &TierRules) {
        let (bits, empty) = rules.gate_bits();
        for (w, b) in self.first.iter().zip(bits) {
            w.store(b, std::sync::atomic::Ordering::Release);
        }
        self.empty
            .store(empty, std::sync::atomic::Ordering::Release);
    }

    /// Adds `rules`' bits (before a swap: both rule sets pass meanwhile).
    pub fn widen(&self, rules: &TierRules) {
        let (bits, empty) = rules.gate_bits();
        for (w, b) in self.first.iter().zip(bits) {
            w.fetch_or(b, std::sync::atomic::Ordering::AcqRel);
        }
        self.empty
            .fetch_or(empty, std::sync::atomic::Ordering::AcqRel);
    }

    /// As [`TierRules::may_match`].
    #[inline(always)]
    pub fn may_match(&self, key: &[u8]) -> bool {
        match key.first() {
            Some(&b) => {
                self.first[usize::from(b >> 6)].load(std::sync::atomic::Ordering::Relaxed)
                    & (1 << (b & 63))
                    != 0
            }
            None => self.empty.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}
