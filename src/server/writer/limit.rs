//! Client output-buffer limits, as Redis's `client-output-buffer-limit`.
//!
//! A client that does not read its replies makes the server hold them.
//! Redis bounds what it holds per client class, with a hard limit (close
//! at once) and a soft limit (close when over it for so many seconds
//! without a break), and closes the client rather than grow its memory.
//! strata does the same for what *it* holds for a client: the bytes its
//! writer has not been able to hand to the client's socket.
//!
//! - A subscriber (`pubsub` class) keeps receiving messages from Redis
//!   while it does not read, so strata keeps reading them from the backend
//!   and buffering them up to the limit, as Redis does: the messages are
//!   then not left in Redis's own buffer for strata's connection, where the
//!   slow client would be invisible (and Redis would close strata's
//!   connection instead, at its own pubsub limit).
//! - Any other client (`normal` class) is bounded anyway: strata stops
//!   reading from a client whose replies it cannot write, once
//!   `max_inflight_per_client` requests wait. The normal limit (off by
//!   default, as in Redis) applies to the bytes of replies buffered for it.
//!
//! Config: `server.client_output_buffer_limit = ["normal 0 0 0", "pubsub
//! 32mb 8mb 60"]`, Redis's defaults and syntax (`<class> <hard> <soft>
//! <soft seconds>`, units b/k/kb/m/mb/g/gb, 0 = no limit).

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};

/// The limit of one client class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassLimit {
    /// Bytes past which the client is closed at once (0: none).
    pub hard: usize,
    /// Bytes past which the client is closed once over them for `soft_secs`.
    pub soft: usize,
    /// How long the soft limit may be exceeded without a break.
    pub soft_secs: u64,
}

impl ClassLimit {
    /// True when neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.hard == 0 && self.soft == 0
    }
}

/// The limits for every client class strata has (Redis's `replica` class
/// has no meaning here: a replica does not sync through strata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Clients that are not subscribed.
    pub normal: ClassLimit,
    /// Clients subscribed to a channel, pattern or shard channel.
    pub pubsub: ClassLimit,
}

impl Default for OutputLimits {
    /// Redis's defaults: `normal 0 0 0`, `pubsub 32mb 8mb 60`.
    fn default() -> Self {
        OutputLimits {
            normal: ClassLimit::default(),
            pubsub: ClassLimit {
                hard: 32 << 20,
                soft: 8 << 20,
                soft_secs: 60,
            },
        }
    }
}

/// Why a limit line was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitError(String);

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl OutputLimits {
    /// Applies lines such as `pubsub 32mb 8mb 60` over the defaults.
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Result<OutputLimits, LimitError> {
        let mut limits = OutputLimits::default();
        for line in lines {
            let line = line.as_ref();
            let words: Vec<&str> = line.split_whitespace().collect();
            let [class, hard, soft, secs] = words[..] else {
                return Err(LimitError(format!(
                    "'{line}': expected '<class> <hard> <soft> <soft seconds>'"
                )));
            };
            let limit = ClassLimit {
                hard: memory(hard).ok_or_else(|| bad(line, hard))?,
                soft: memory(soft).ok_or_else(|| bad(line, soft))?,
                soft_secs: secs.parse().map_err(|_| bad(line, secs))?,
            };
            match class.to_ascii_lowercase().as_str() {
                "normal" => limits.normal = limit,
                "pubsub" => limits.pubsub = limit,
                other => {
                    return Err(LimitError(format!(
                        "'{line}': unknown class '{other}' (normal or pubsub)"
                    )))
                }
            }
        }
        Ok(limits)
    }
}

fn bad(line: &str, word: &str) -> LimitError {
    LimitError(format!("'{line}': invalid amount '{word}'"))
}

/// Redis's memory amounts (`memtoll`): a number with an optional unit,
/// `k` = 1000, `kb` = 1024, and so on, case-insensitive.
fn memory(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &lower[digits.len()..] {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

impl<'de> Deserialize<'de> for OutputLimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        OutputLimits::parse(&lines).map_err(serde::de::Error::custom)
    }
}

/// Watches one client's pending output against its class's limit, as
/// Redis's `checkClientOutputBufferLimits` does.
#[derive(Debug, Default)]
pub struct LimitWatch {
    /// When the soft limit was first found exceeded without a break since.
    over_soft_since: Option<Instant>,
}

impl LimitWatch {
    /// True when `pending` bytes break `limit`: past the hard limit, or past
    /// the soft one for `soft_secs` (counted from the first check that
    /// found it past, as Redis counts).
    pub fn exceeded(&mut self, limit: &ClassLimit, pending: usize, now: Instant) -> bool {
        if limit.hard > 0 && pending >= limit.hard {
            return true;
        }
        if limit.soft > 0 && pending >= limit.soft {
            match self.over_soft_since {
                None => {
                    self.over_soft_since = Some(now);
                    false
                }
                Some(since) => now.duration_since(since) >= Duration::from_secs(limit.soft_secs),
            }
        } else {
            self.over_soft_since = None;
            false
        }
    }

    /// When the soft limit, if exceeded now, will have been for long
    /// enough: the writer must look again then even if nothing happens.
    pub fn soft_deadline(&self, limit: &ClassLimit) -> Option<Instant> {
        self.over_soft_since
            .map(|since| since + Duration::from_secs(limit.soft_secs))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_redis_defaults() {
        let d = OutputLimits::default();
        assert!(d.normal.is_unlimited());
        assert_eq!(
            d.pubsub,
            ClassLimit {
                hard: 33_554_432,
                soft: 8_388_608,
                soft_secs: 60
            }
        );
    }

    #[test]
    fn lines_parse_with_redis_units() {
        let l = OutputLimits::parse(&["pubsub 1mb 256k 5", "NORMAL 10gb 1KB 0"]).unwrap();
        assert_eq!(
            l.pubsub,
            ClassLimit {
                hard: 1 << 20,
                soft: 256_000,
                soft_secs: 5
            }
        );
        assert_eq!(
            l.normal,
            ClassLimit {
                hard: 10 << 30,
                soft: 1024,
                soft_secs: 0
            }
        );
        assert!(OutputLimits::parse(&["replica 1 1 1"])
            .unwrap_err()
            .to_string()
            .contains("unknown class"));
        assert!(OutputLimits::parse(&["pubsub 1xb 1 1"]).is_err());
        assert!(OutputLimits::parse(&["pubsub 1 1"]).is_err());
        assert!(OutputLimits::parse(&["pubsub -1 1 1"]).is_err());
        assert!(OutputLimits::parse(&["pubsub 99999999999999999999gb 1 1"]).is_err());
    }

    #[test]
    fn hard_closes_at_once_and_soft_after_its_seconds() {
        let limit = ClassLimit {
            hard: 100,
            soft: 10,
            soft_secs: 2,
        };
        let t0 = Instant::now();
        let mut w = LimitWatch::default();
        assert!(!w.exceeded(&limit, 9, t0));
        assert!(w.exceeded(&limit, 100, t0));

        let mut w = LimitWatch::default();
        assert!(
            !w.exceeded(&limit, 10, t0),
            "first time over soft: the clock starts"
        );
        assert!(!w.exceeded(&limit, 50, t0 + Duration::from_secs(1)));
        assert_eq!(w.soft_deadline(&limit), Some(t0 + Duration::from_secs(2)));
        assert!(w.exceeded(&limit, 50, t0 + Duration::from_secs(2)));

        // A break under the soft limit starts the clock again.
        let mut w = LimitWatch::default();
        assert!(!w.exceeded(&limit, 50, t0));
        assert!(!w.exceeded(&limit, 5, t0 + Duration::from_secs(1)));
        assert!(!w.exceeded(&limit, 50, t0 + Duration::from_secs(2)));
        assert!(!w.exceeded(&limit, 50, t0 + Duration::from_secs(3)));
        assert!(w.exceeded(&limit, 50, t0 + Duration::from_secs(4)));
    }

    #[test]
    fn no_limit_never_closes() {
        let mut w = LimitWatch::default();
        let t0 = Instant::now();
        assert!(!w.exceeded(&ClassLimit::default(), usize::MAX, t0));
    }
}
