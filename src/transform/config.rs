//! Configuration of value transforms: `[[transform]]` rules and `[transform_keys]`.
//!
//! ```toml
//! [[transform]]
//! pattern = "session:*"      # Redis glob over key names; the first matching rule wins
//! compress = "lz4"           # optional
//! min_size = 64              # values shorter than this are not compressed
//! encrypt = true             # AES-256-GCM
//! key_id = "k2"              # optional: defaults to [transform_keys] active_key
//! allow_scripts = false      # EVAL/FCALL naming a matching key are refused unless true
//! accept_plain = true        # values written before the rule existed are returned as stored
//!
//! [transform_keys]
//! active_key = "k2"          # new writes of rules without key_id use this key
//! [transform_keys.keys]
//! k1 = { env = "STRATA_KEY_K1" }            # base64 of 32 bytes in an environment variable
//! k2 = { file = "/run/secrets/strata-k2" }  # … or in a file
//! ```
//!
//! Key material never appears in the config file: the file only says where to
//! find it, so the config can be committed, templated and logged freely.
//!
//! A rule with neither `compress` nor `encrypt` writes values unchanged but
//! still decodes enveloped values on reads. Put one before a broader rule to
//! exempt a sub-pattern, or switch a rule to it (keeping its key loaded) and
//! run `PROXY REWRAP` to retire a transform without losing data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The longest key id, in bytes. Ids are stored in every encrypted value, so
/// they are kept short.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Everything transforms need from the configuration file.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// `[[transform]]` rules, in order: the first matching rule wins.
    #[serde(rename = "transform")]
    pub rules: Vec<RuleConfig>,
    /// `[transform_keys]`: where encryption keys come from.
    #[serde(rename = "transform_keys")]
    pub keys: KeysConfig,
}

/// One `[[transform]]` rule.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Redis glob over key names (`session:*`, `user:[0-9]*`).
    pub pattern: String,
    /// Compression algorithm, if any.
    #[serde(default)]
    pub compress: Option<Compression>,
    /// The smallest value worth compressing: below it, lz4's header costs
    /// more than it saves.
    #[serde(default = "default_min_size")]
    pub min_size: usize,
    /// Encrypt values with AES-256-GCM.
    #[serde(default)]
    pub encrypt: bool,
    /// The key new values of this rule are encrypted with; defaults to
    /// `[transform_keys] active_key`. Reads accept every loaded key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Allow EVAL/EVALSHA/FCALL (and their _RO forms) that declare a matching
    /// key. Scripts see the stored (transformed) bytes, so this is only for
    /// scripts that merely move values around.
    #[serde(default)]
    pub allow_scripts: bool,
    /// Return values without an envelope (written before the rule existed)
    /// as stored, counting them. Set it to false once `PROXY REWRAP` has
    /// migrated every key, so that a plaintext value planted in Redis is
    /// refused instead of trusted.
    #[serde(default = "default_true")]
    pub accept_plain: bool,
}

/// Supported compression algorithms.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// lz4 block format (lz4_flex).
    Lz4,
}

/// `[transform_keys]`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// The key id new values are encrypted with, for rules without `key_id`.
    pub active_key: Option<String>,
    /// Key id → where its material is. Every listed key is loaded, so values
    /// written under an older key stay readable during a rotation.
    pub keys: BTreeMap<String, KeySource>,
}

/// Where one key's material is: base64 of exactly 32 bytes, in an
/// environment variable or in a file (surrounding whitespace ignored).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    /// Name of an environment variable.
    #[serde(default)]
    pub env: Option<String>,
    /// Path of a file.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

fn default_min_size() -> usize {
    64
}

fn default_true() -> bool {
    true
}

/// True when `id` can be a key id: 1 to [`MAX_KEY_ID_LEN`] bytes of
/// `[A-Za-z0-9._-]`, so it is safe to print and cheap to store.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RuleConfig {
    /// True when the rule changes what is written (compresses or encrypts).
    pub fn transforms(&self) -> bool {
        self.compress.is_some() || self.encrypt
    }

    /// The key id new values of this rule are encrypted with, if it encrypts.
    pub fn write_key_id<'a>(&'a self, keys: &'a KeysConfig) -> Option<&'a str> {
        if !self.encrypt {
            return None;
        }
        self.key_id.as_deref().or(keys.active_key.as_deref())
    }
}

impl TransformConfig {
    /// Parses a TOML document holding `[[transform]]` and `[transform_keys]`
    /// (the same tables as in the main config file).
    pub fn parse(text: &str) -> Result<TransformConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks what can be checked without reading key material. Messages name
    /// the rule by index and pattern, e.g.
    /// `transform[1] (pattern 'session:*'): key_id 'k2' is not loaded …`.
    pub fn validate(&self) -> Result<(), String> {
        self.keys.validate()?;
        for (i, rule) in self.rules.iter().enumerate() {
            let fail = |msg: String| -> Result<(), String> {
                Err(format!(
                    "transform[{i}] (pattern '{}'): {msg}",
                    rule.pattern
                ))
            };
            if rule.pattern.is_empty() {
                return fail("pattern must not be empty".into());
            }
            if let Some(j) = self.rules[..i]
                .iter()
                .position(|r| r.pattern == rule.pattern)
            {
                return fail(format!(
                    "unreachable: transform[{j}] has the same pattern and matches first"
                ));
            }
            if rule.key_id.is_some() && !rule.encrypt {
                return fail("key_id is set but encrypt is false".into());
            }
            if rule.encrypt {
                match rule.write_key_id(&self.keys) {
                    None => {
                        return fail(
                            "encrypt = true needs key_id, or active_key in [transform_keys]".into(),
                        )
                    }
                    Some(id) if !self.keys.keys.contains_key(id) => {
                        return fail(format!(
                            "key_id '{id}' is not loaded (declare it under [transform_keys.keys])"
                        ))
                    }
                    Some(_) => {}
                }
            }
            if rule.allow_scripts && !rule.transforms() {
                return fail("allow_scripts needs compress or encrypt".into());
            }
        }
        Ok(())
    }
}

impl KeysConfig {
    /// Checks ids and sources (not the material itself: see `Keyring::load`).
    pub fn validate(&self) -> Result<(), String> {
        for (id, source) in &self.keys {
            if !valid_key_id(id) {
                return Err(format!(
                    "transform_keys.keys.{id}: a key id is 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 . _ -"
                ));
            }
            match (&source.env, &source.file) {
                (Some(var), None) if !var.is_empty() => {}
                (None, Some(path)) if !path.as_os_str().is_empty() => {}
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "transform_keys.keys.{id}: set either env or file, not both"
                    ))
                }
                _ => {
                    return Err(format!(
                        "transform_keys.keys.{id}: needs env = \"VAR\" or file = \"/path\" holding base64 of 32 bytes"
                    ))
                }
            }
        }
        if let Some(active) = &self.active_key {
            if !self.keys.contains_key(active) {
                return Err(format!(
                    "transform_keys.active_key: '{active}' is not loaded (declare it under [transform_keys.keys])"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_is_empty_and_valid() {
        let c = TransformConfig::default();
        assert!(c.rules.is_empty());
        c.validate().unwrap();
        assert_eq!(TransformConfig::parse("").unwrap(), c);
    }

    #[test]
    fn full_example_parses() {
        let c = TransformConfig::parse(
            r#"
            [[transform]]
            pattern = "session:*"
            compress = "lz4"
            encrypt = true

            [[transform]]
            pattern = "cache:*"
            compress = "lz4"
            min_size = 128

            [[transform]]
            pattern = "vault:*"
            encrypt = true
            key_id = "k1"
            allow_scripts = true
            accept_plain = false

            [transform_keys]
            active_key = "k2"
            [transform_keys.keys]
            k1 = { env = "STRATA_KEY_K1" }
            k2 = { file = "/run/secrets/k2" }
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[0].min_size, 64);
        assert!(c.rules[0].accept_plain);
        assert_eq!(c.rules[0].write_key_id(&c.keys), Some("k2"));
        assert_eq!(c.rules[1].min_size, 128);
        assert_eq!(c.rules[1].write_key_id(&c.keys), None);
        assert_eq!(c.rules[2].write_key_id(&c.keys), Some("k1"));
        assert!(!c.rules[2].accept_plain);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = TransformConfig::parse("[[transform]]\npattern = \"a\"\ncompres = \"lz4\"\n")
            .unwrap_err();
        assert!(e.contains("compres"), "{e}");
        let e = TransformConfig::parse("[[transform]]\npattern = \"a\"\ncompress = \"zstd\"\n")
            .unwrap_err();
        assert!(e.contains("zstd"), "{e}");
        let e =
            TransformConfig::parse("[transform_keys.keys]\nk1 = { env = \"A\", key = \"x\" }\n")
                .unwrap_err();
        assert!(e.contains("key"), "{e}");
    }

    fn err(text: &str) -> String {
        TransformConfig::parse(text)
            .unwrap()
            .validate()
            .unwrap_err()
    }

    #[test]
    fn validation_names_the_rule() {
        let e = err("[[transform]]\npattern = \"a:*\"\ncompress = \"lz4\"\n\
             [[transform]]\npattern = \"session:*\"\nencrypt = true\nkey_id = \"k2\"\n\
             [transform_keys.keys]\nk1 = { env = \"K1\" }\n");
        assert_eq!(
            e,
            "transform[1] (pattern 'session:*'): key_id 'k2' is not loaded (declare it under [transform_keys.keys])"
        );
        let e = err("[[transform]]\npattern = \"s:*\"\nencrypt = true\n");
        assert!(
            e.starts_with("transform[0] (pattern 's:*'): encrypt = true needs key_id"),
            "{e}"
        );
        let e = err("[[transform]]\npattern = \"s:*\"\nkey_id = \"k\"\n");
        assert!(e.contains("key_id is set but encrypt is false"), "{e}");
        let e = err("[[transform]]\npattern = \"\"\ncompress = \"lz4\"\n");
        assert!(e.contains("pattern must not be empty"), "{e}");
        let e = err("[[transform]]\npattern = \"s:*\"\ncompress = \"lz4\"\n\
             [[transform]]\npattern = \"s:*\"\nencrypt = true\n");
        assert!(
            e.contains("transform[1]") && e.contains("unreachable"),
            "{e}"
        );
        let e = err("[[transform]]\npattern = \"s:*\"\nallow_scripts = true\n");
        assert!(e.contains("allow_scripts"), "{e}");
    }

    #[test]
    fn key_validation() {
        let e = err("[transform_keys]\nactive_key = \"k9\"\n");
        assert!(e.contains("'k9' is not loaded"), "{e}");
        let e = err("[transform_keys.keys]\nk1 = {}\n");
        assert!(e.contains("needs env"), "{e}");
        let e = err("[transform_keys.keys]\nk1 = { env = \"A\", file = \"/b\" }\n");
        assert!(e.contains("not both"), "{e}");
        let e = err("[transform_keys.keys]\n\"bad id\" = { env = \"A\" }\n");
        assert!(e.contains("key id"), "{e}");
        assert!(valid_key_id("k1.2024-01_a"));
        assert!(!valid_key_id(""));
        assert!(!valid_key_id(&"k".repeat(33)));
    }
}
