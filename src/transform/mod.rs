//! Value transforms: lz4 compression and AES-256-GCM encryption of values,
//! chosen per key pattern, invisible to clients.
//!
//! The client keeps reading and writing its plaintext; Redis, its replicas,
//! RDB/AOF files and backups only ever hold the stored form. This module is
//! the pure part of that feature — no I/O besides reading key files at load —
//! so everything here is unit- and property-tested without a server.
//!
//! # Layout
//!
//! * [`config`]: `[[transform]]` rules and `[transform_keys]`, with `validate()`.
//! * [`keyring`]: loaded keys by id (several at once, for rotation).
//! * [`glob`]: Redis glob semantics, compiled, without recursion.
//! * [`rules`]: compiled rules; the first match wins.
//! * [`envelope`]: the stored format, `seal` and `open`.
//! * [`commands`]: which arguments of which commands are values (a table),
//!   request rewriting and refusals, and the [`ReplyPlan`] for the reply.
//! * `replies`: opening values inside reply frames, per plan.
//! * [`stats`]: counters for the metrics registry.
//!
//! # Wiring (for the session)
//!
//! ```text
//! let t: Arc<Transforms> = …;                 // built once, swapped on reload
//! if !t.is_empty() {                          // no rules: pay nothing
//!     match t.prepare(&args) {
//!         Err(text) => reply with error(text), do not forward,
//!         Ok(p) => {
//!             forward Rewrite::Args(a) as encode_request(&a) instead of the
//!             client's bytes; keep p.plan with the pending request;
//!         }
//!     }
//! }
//! on the reply: if let Some(plan) = plan { frame = t.apply_reply(&plan, frame) }
//! MULTI: keep the plans of queued commands; on EXEC use apply_exec_reply.
//! ```
//!
//! Plans for multi-key replies (MGET) expect the reply in request order, so
//! they apply after a split-by-slot reply has been merged back.

pub mod commands;
pub mod config;
pub mod envelope;
pub mod glob;
pub mod keyring;
mod live;
mod replies;
pub mod rules;
pub mod stats;

#[cfg(test)]
mod proptests;

use std::sync::Arc;

use bytes::Bytes;

pub use commands::{encode_request, Prepared, ReplyPlan, Rewrite};
pub use config::{Compression, KeySource, KeysConfig, RuleConfig, TransformConfig};
pub use envelope::{open, seal, Location, Opened, TransformError};
pub use keyring::Keyring;
pub use live::LiveTransforms;
pub use rules::{Rule, Rules};
pub use stats::{FailureKind, StatsSnapshot, TransformStats};

use envelope::{open_with, Form};

/// Rules, keys and counters together: what a session needs to transform
/// requests and replies. Immutable once built; share it in an `Arc` and
/// replace the whole thing on reload.
#[derive(Debug)]
pub struct Transforms {
    rules: Rules,
    keyring: Keyring,
    stats: Arc<TransformStats>,
    max_value_len: usize,
}

impl Default for Transforms {
    fn default() -> Self {
        Transforms::disabled()
    }
}

impl Transforms {
    /// No rules: every request and reply passes through.
    pub fn disabled() -> Transforms {
        Transforms {
            rules: Rules::empty(),
            keyring: Keyring::empty(),
            stats: Arc::default(),
            max_value_len: crate::protocol::DEFAULT_MAX_BULK_LEN,
        }
    }

    /// Validates `config`, loads its keys and compiles its rules.
    /// `max_value_len` (proto-max-bulk-len) caps decompressed sizes;
    /// `stats` is shared so counters survive a reload.
    pub fn from_config(
        config: &TransformConfig,
        max_value_len: usize,
        stats: Arc<TransformStats>,
    ) -> Result<Transforms, String> {
        config.validate()?;
        let keyring = Keyring::load(&config.keys)?;
        let rules = Rules::compile(config, &keyring)?;
        Ok(Transforms::new(rules, keyring, max_value_len, stats))
    }

    /// From parts already built (tests, tools).
    pub fn new(
        rules: Rules,
        keyring: Keyring,
        max_value_len: usize,
        stats: Arc<TransformStats>,
    ) -> Transforms {
        Transforms {
            rules,
            keyring,
            stats,
            max_value_len,
        }
    }

    /// True when no rule is configured: skip transforms entirely.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The compiled rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The loaded keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TransformStats> {
        &self.stats
    }

    /// The decompressed-size cap.
    pub fn max_value_len(&self) -> usize {
        self.max_value_len
    }

    /// For `PROXY REWRAP`: the value to write back at `loc` so that it is
    /// stored as its rule now says — encrypted under the rule's current key
    /// (the active key unless the rule pins `key_id`), bound to its current
    /// list, plain values migrated — or `None` when it already is (or no rule
    /// matches). Errors are those of reading it (a value that cannot be
    /// opened is left alone and reported).
    ///
    /// The caller must write it back only if the stored value is unchanged
    /// (e.g. a compare-and-set script), since a client may write meanwhile.
    pub fn rewrap_value(
        &self,
        loc: Location<'_>,
        stored: &Bytes,
    ) -> Result<Option<Bytes>, TransformError> {
        let Some(rule) = self.rules.rule_for(loc.key()) else {
            return Ok(None);
        };
        let same_rule = |origin: &[u8]| self.rules.same_rule(origin, loc.key());
        let unsealed = open_with(stored, loc, &self.keyring, self.max_value_len, &same_rule)?;
        if let (
            Some(want),
            Form::Encrypted {
                key,
                rebound: false,
            },
        ) = (rule.write_key(), unsealed.form)
        {
            if key == want {
                return Ok(None);
            }
        }
        let new = seal(&unsealed.value, loc, rule, &self.keyring)?;
        if !rule.encrypts() && new == *stored {
            // Deterministic without encryption: nothing would change.
            return Ok(None);
        }
        self.stats
            .sealed(unsealed.value.len(), new.len(), rule.encrypts());
        Ok(Some(new))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// The rules the module's tests share:
    /// * `session:public:*` — exemption (decode only);
    /// * `session:*` — lz4 (min 64) + encryption with the active key k2;
    /// * `cache:*` — lz4 only, min 16;
    /// * `script:*` — encryption, scripts allowed;
    /// * `strict:*` — encryption with k1, plain values refused.
    pub(crate) fn transforms() -> Transforms {
        let cfg = TransformConfig::parse(
            r#"
            [[transform]]
            pattern = "session:public:*"
            [[transform]]
            pattern = "session:*"
            compress = "lz4"
            encrypt = true
            [[transform]]
            pattern = "cache:*"
            compress = "lz4"
            min_size = 16
            [[transform]]
            pattern = "script:*"
            encrypt = true
            allow_scripts = true
            [[transform]]
            pattern = "strict:*"
            encrypt = true
            key_id = "k1"
            accept_plain = false
            [transform_keys]
            active_key = "k2"
            [transform_keys.keys]
            k1 = { env = "STRATA_TEST_UNUSED_K1" }
            k2 = { env = "STRATA_TEST_UNUSED_K2" }
            "#,
        )
        .unwrap();
        let keyring =
            Keyring::from_keys([("k1", [1u8; 32]), ("k2", [2u8; 32])], Some("k2")).unwrap();
        let rules = Rules::compile(&cfg, &keyring).unwrap();
        Transforms::new(rules, keyring, 1 << 20, Arc::default())
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn from_config_loads_keys_from_the_environment() {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        std::env::set_var("STRATA_TEST_TRANSFORMS_K", key);
        let cfg = TransformConfig::parse(
            "[[transform]]\npattern = \"s:*\"\nencrypt = true\n\
             [transform_keys]\nactive_key = \"k\"\n\
             [transform_keys.keys]\nk = { env = \"STRATA_TEST_TRANSFORMS_K\" }\n",
        )
        .unwrap();
        let t = Transforms::from_config(&cfg, 1 << 20, Arc::default()).unwrap();
        assert!(!t.is_empty());
        assert_eq!(t.keyring().active_id(), Some("k"));
        let p = t.prepare(&[b("SET"), b("s:1"), b("v")]).unwrap();
        assert!(matches!(p.rewrite, Rewrite::Args(_)));

        let bad = TransformConfig::parse(
            "[[transform]]\npattern = \"s:*\"\nencrypt = true\nkey_id = \"zz\"\n",
        )
        .unwrap();
        let e = Transforms::from_config(&bad, 1 << 20, Arc::default()).unwrap_err();
        assert!(
            e.contains("transform[0] (pattern 's:*'): key_id 'zz' is not loaded"),
            "{e}"
        );
        assert!(Transforms::disabled().is_empty());
    }

    #[test]
    fn rewrap_moves_values_to_the_active_key() {
        let t = transforms();
        let k1_only = Rules::compile(
            &TransformConfig::parse(
                "[[transform]]\npattern = \"session:*\"\nencrypt = true\nkey_id = \"k1\"\n\
                 [transform_keys.keys]\nk1 = { env = \"U\" }\n",
            )
            .unwrap(),
            &t.keyring,
        )
        .unwrap();
        let old = Transforms::new(k1_only, t.keyring.clone(), 1 << 20, Arc::default());
        let loc = Location::Key(b"session:1");
        let rule = old.rules.rule_for(b"session:1").unwrap();
        let under_k1 = seal(&b("value"), loc, rule, &old.keyring).unwrap();
        assert_eq!(envelope::key_id_of(&under_k1), Some(&b"k1"[..]));

        let rewrapped = t.rewrap_value(loc, &under_k1).unwrap().unwrap();
        assert_eq!(envelope::key_id_of(&rewrapped), Some(&b"k2"[..]));
        assert_eq!(
            open(&rewrapped, loc, &t.keyring, 1 << 20).unwrap().value(),
            "value"
        );
        assert_eq!(
            t.rewrap_value(loc, &rewrapped).unwrap(),
            None,
            "already under k2"
        );

        // Plain values are migrated too.
        let migrated = t.rewrap_value(loc, &b("legacy")).unwrap().unwrap();
        assert_eq!(
            open(&migrated, loc, &t.keyring, 1 << 20).unwrap().value(),
            "legacy"
        );
        // Keys without a rule, and compress-only values already compressed, stay.
        assert_eq!(
            t.rewrap_value(Location::Key(b"other"), &under_k1).unwrap(),
            None
        );
        let c = Location::Key(b"cache:1");
        let compressed = seal(
            &b(&"z".repeat(100)),
            c,
            t.rules.rule_for(b"cache:1").unwrap(),
            &t.keyring,
        )
        .unwrap();
        assert_eq!(t.rewrap_value(c, &compressed).unwrap(), None);
        // A list element moved to another list is re-bound to it.
        let q1 = Location::ListElement(b"session:q1");
        let el = seal(
            &b("e"),
            q1,
            t.rules.rule_for(b"session:q1").unwrap(),
            &t.keyring,
        )
        .unwrap();
        let q2 = Location::ListElement(b"session:q2");
        let rebound = t.rewrap_value(q2, &el).unwrap().unwrap();
        assert_eq!(
            open(&rebound, q2, &t.keyring, 1 << 20).unwrap().value(),
            "e"
        );
        // Tampered: reported, not rewritten.
        let mut bad = rewrapped.to_vec();
        bad[20] ^= 1;
        assert!(t.rewrap_value(loc, &Bytes::from(bad)).is_err());
    }
}
