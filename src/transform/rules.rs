//! Compiled rules: which key gets which transform.
//!
//! Rules are tried in config order and the first match wins, so a narrow
//! pattern placed before a broad one overrides it. Everything a request needs
//! is resolved here once, at load time: the glob is compiled and the write key
//! id becomes an index into the [`Keyring`].

use super::config::{RuleConfig, TransformConfig};
use super::glob::Glob;
use super::keyring::Keyring;

/// One compiled `[[transform]]` rule.
#[derive(Debug, Clone)]
pub struct Rule {
    index: usize,
    pattern: String,
    glob: Glob,
    compress_min: Option<usize>,
    write_key: Option<usize>,
    allow_scripts: bool,
    accept_plain: bool,
}

impl Rule {
    /// Position of the rule in the config (`transform[i]`).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The pattern as configured, for messages.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True when the rule compresses values.
    pub fn compresses(&self) -> bool {
        self.compress_min.is_some()
    }

    /// With compression: the smallest value worth compressing.
    pub fn min_size(&self) -> Option<usize> {
        self.compress_min
    }

    /// True when the rule encrypts values.
    pub fn encrypts(&self) -> bool {
        self.write_key.is_some()
    }

    /// True when the rule changes what is written. A rule that does not still
    /// decodes enveloped values on reads (an exemption, or a transform being
    /// retired), but refuses no command.
    pub fn transforms(&self) -> bool {
        self.compresses() || self.encrypts()
    }

    /// True when scripts may name matching keys.
    pub fn allow_scripts(&self) -> bool {
        self.allow_scripts
    }

    /// True when values without an envelope are returned as stored.
    pub fn accept_plain(&self) -> bool {
        self.accept_plain
    }

    /// The keyring index new values are encrypted with.
    pub(crate) fn write_key(&self) -> Option<usize> {
        self.write_key
    }
}

/// All rules, in order.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// No rules: every key passes through untouched.
    pub fn empty() -> Rules {
        Rules::default()
    }

    /// Compiles validated rules against loaded keys.
    pub fn compile(config: &TransformConfig, keyring: &Keyring) -> Result<Rules, String> {
        config.validate()?;
        let mut rules = Vec::with_capacity(config.rules.len());
        for (index, rc) in config.rules.iter().enumerate() {
            rules.push(compile_rule(index, rc, config, keyring)?);
        }
        Ok(Rules { rules })
    }

    /// True when no rule is configured: the proxy skips transforms entirely.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Rule> {
        self.rules.iter()
    }

    /// The first rule whose pattern matches `key`. Does not allocate.
    #[inline]
    pub fn rule_for(&self, key: &[u8]) -> Option<&Rule> {
        self.rules.iter().find(|r| r.glob.matches(key))
    }

    /// The rule for `key` if it changes what is written: the rule that can
    /// make a command unsafe on that key.
    #[inline]
    pub fn transforming_rule_for(&self, key: &[u8]) -> Option<&Rule> {
        self.rule_for(key).filter(|r| r.transforms())
    }

    /// True when `a` and `b` are governed by the same rule (or both by none).
    /// List elements moved by LMOVE may live under any key of their rule.
    pub fn same_rule(&self, a: &[u8], b: &[u8]) -> bool {
        self.rule_for(a).map(Rule::index) == self.rule_for(b).map(Rule::index)
    }
}

fn compile_rule(
    index: usize,
    rc: &RuleConfig,
    config: &TransformConfig,
    keyring: &Keyring,
) -> Result<Rule, String> {
    let write_key = match rc.write_key_id(&config.keys) {
        Some(id) => Some(keyring.index_of(id.as_bytes()).ok_or_else(|| {
            format!(
                "transform[{index}] (pattern '{}'): key_id '{id}' is not loaded",
                rc.pattern
            )
        })?),
        None => None,
    };
    Ok(Rule {
        index,
        pattern: rc.pattern.clone(),
        glob: Glob::new(rc.pattern.as_bytes()),
        compress_min: rc.compress.map(|_| rc.min_size),
        write_key,
        allow_scripts: rc.allow_scripts,
        accept_plain: rc.accept_plain,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        let cfg = TransformConfig::parse(text).unwrap();
        let ring = Keyring::from_keys([("k1", [1u8; 32]), ("k2", [2u8; 32])], Some("k2")).unwrap();
        // The config names keys the test keyring holds; declare them too.
        let mut cfg = cfg;
        for id in ["k1", "k2"] {
            cfg.keys.keys.insert(
                id.into(),
                super::super::config::KeySource {
                    env: Some("UNUSED".into()),
                    file: None,
                },
            );
        }
        cfg.keys.active_key = Some("k2".into());
        Rules::compile(&cfg, &ring).unwrap()
    }

    #[test]
    fn first_match_wins() {
        let r = rules(
            "[[transform]]\npattern = \"session:public:*\"\n\
             [[transform]]\npattern = \"session:*\"\nencrypt = true\n\
             [[transform]]\npattern = \"*\"\ncompress = \"lz4\"\nmin_size = 10\n\
             [[transform]]\npattern = \"never\"\nencrypt = true\nkey_id = \"k1\"\n",
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r.rule_for(b"session:public:x").unwrap().index(), 0);
        assert!(r.transforming_rule_for(b"session:public:x").is_none());
        let s = r.rule_for(b"session:1").unwrap();
        assert_eq!((s.index(), s.pattern()), (1, "session:*"));
        assert!(s.encrypts() && !s.compresses());
        assert_eq!(s.write_key(), Some(1), "defaults to the active key k2");
        let c = r.rule_for(b"other").unwrap();
        assert_eq!(c.min_size(), Some(10));
        assert!(!c.encrypts());
        assert!(r.same_rule(b"session:1", b"session:2"));
        assert!(!r.same_rule(b"session:1", b"other"));
    }

    #[test]
    fn empty() {
        let r = Rules::empty();
        assert!(r.is_empty());
        assert!(r.rule_for(b"x").is_none());
        assert!(r.same_rule(b"a", b"b"));
    }
}
