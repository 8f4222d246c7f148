//! Loaded encryption keys, by id.
//!
//! Several keys are loaded at once so that a rotation never makes data
//! unreadable: new writes use the active key (or a rule's own `key_id`),
//! reads accept any loaded key, and `PROXY REWRAP` moves old values to the
//! active key before the old one is removed from the config.
//!
//! Each key is kept only as an expanded AES-256-GCM cipher (key schedule and
//! GHASH key), which is what every seal and open needs; the aes-gcm `zeroize`
//! feature wipes it on drop. The raw bytes are wiped as soon as the cipher is
//! built. Nothing here ever prints key material: `Debug` shows ids only, and
//! load errors say what is wrong without echoing the input.

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;

use super::config::{valid_key_id, KeySource, KeysConfig};

/// AES-256 key length.
pub const KEY_LEN: usize = 32;

/// The loaded keys.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<LoadedKey>,
    active: Option<usize>,
}

#[derive(Clone)]
struct LoadedKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .field("active", &self.active_id())
            .finish()
    }
}

impl Keyring {
    /// No keys: enough for rules that only compress.
    pub fn empty() -> Keyring {
        Keyring::default()
    }

    /// Reads every key `config` declares, from its environment variable or
    /// file. Errors name the key id and the source, never the material.
    pub fn load(config: &KeysConfig) -> Result<Keyring, String> {
        config.validate()?;
        let mut keyring = Keyring::empty();
        for (id, source) in &config.keys {
            let mut material = read_material(id, source)?;
            let added = keyring.insert(id, &material);
            wipe(&mut material);
            added?;
        }
        if let Some(active) = &config.active_key {
            keyring.set_active(active)?;
        }
        Ok(keyring)
    }

    /// A keyring from raw keys, for tests and tools.
    pub fn from_keys<'a, I>(keys: I, active: Option<&str>) -> Result<Keyring, String>
    where
        I: IntoIterator<Item = (&'a str, [u8; KEY_LEN])>,
    {
        let mut keyring = Keyring::empty();
        for (id, mut material) in keys {
            let added = keyring.insert(id, &material);
            wipe(&mut material);
            added?;
        }
        if let Some(active) = active {
            keyring.set_active(active)?;
        }
        Ok(keyring)
    }

    fn insert(&mut self, id: &str, material: &[u8]) -> Result<(), String> {
        if !valid_key_id(id) {
            return Err(format!("transform key '{id}': not a valid key id"));
        }
        if self.index_of(id.as_bytes()).is_some() {
            return Err(format!("transform key '{id}': loaded twice"));
        }
        let cipher = Aes256Gcm::new_from_slice(material)
            .map_err(|_| format!("transform key '{id}': AES-256 needs exactly {KEY_LEN} bytes"))?;
        self.keys.push(LoadedKey {
            id: id.to_owned(),
            cipher,
        });
        Ok(())
    }

    fn set_active(&mut self, id: &str) -> Result<(), String> {
        let index = self
            .index_of(id.as_bytes())
            .ok_or_else(|| format!("transform_keys.active_key: '{id}' is not loaded"))?;
        self.active = Some(index);
        Ok(())
    }

    /// Number of loaded keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The loaded key ids, in load order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The active key id, if one is configured.
    pub fn active_id(&self) -> Option<&str> {
        self.active
            .and_then(|i| self.keys.get(i))
            .map(|k| k.id.as_str())
    }

    /// The index of key `id`. A linear scan: there are a handful of keys.
    pub(crate) fn index_of(&self, id: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.id.as_bytes() == id)
    }

    /// The id and cipher of key `index`.
    pub(crate) fn get(&self, index: usize) -> Option<(&str, &Aes256Gcm)> {
        self.keys.get(index).map(|k| (k.id.as_str(), &k.cipher))
    }
}

fn read_material(id: &str, source: &KeySource) -> Result<Vec<u8>, String> {
    let (text, from) = match (&source.env, &source.file) {
        (Some(var), _) => {
            let text = std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("transform key '{id}': environment variable {var} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("transform key '{id}': environment variable {var} is not base64")
                }
            })?;
            (text, format!("environment variable {var}"))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("transform key '{id}': cannot read {}: {e}", path.display())
            })?;
            (text, format!("file {}", path.display()))
        }
        (None, None) => {
            return Err(format!("transform key '{id}': needs env or file"));
        }
    };
    let mut text = text;
    // The decoder's own message can quote an offending character; do not
    // repeat any of the material.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| format!("transform key '{id}': {from} is not valid base64"));
    wipe_string(&mut text);
    let decoded = decoded?;
    if decoded.len() != KEY_LEN {
        let n = decoded.len();
        let mut decoded = decoded;
        wipe(&mut decoded);
        return Err(format!(
            "transform key '{id}': {from} decodes to {n} bytes; AES-256 needs exactly {KEY_LEN}"
        ));
    }
    Ok(decoded)
}

/// Overwrites key material before its memory is freed. `black_box` keeps the
/// writes from being optimised away as dead stores.
fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

fn wipe_string(s: &mut String) {
    let mut bytes = std::mem::take(s).into_bytes();
    wipe(&mut bytes);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn loads_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k2");
        std::fs::write(&path, format!("{}\n", b64(&[7u8; 32]))).unwrap();
        // A variable name only this test uses: tests run in parallel threads.
        std::env::set_var("STRATA_TEST_KEYRING_K1", b64(&[1u8; 32]));
        let mut keys = BTreeMap::new();
        keys.insert(
            "k1".to_string(),
            KeySource {
                env: Some("STRATA_TEST_KEYRING_K1".into()),
                file: None,
            },
        );
        keys.insert(
            "k2".to_string(),
            KeySource {
                env: None,
                file: Some(path),
            },
        );
        let ring = Keyring::load(&KeysConfig {
            active_key: Some("k2".into()),
            keys,
        })
        .unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.active_id(), Some("k2"));
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["k1", "k2"]);
        let dbg = format!("{ring:?}");
        assert!(dbg.contains("k1") && !dbg.contains("cipher"), "{dbg}");
    }

    fn load_one(source: KeySource) -> String {
        let mut keys = BTreeMap::new();
        keys.insert("kx".to_string(), source);
        Keyring::load(&KeysConfig {
            active_key: None,
            keys,
        })
        .unwrap_err()
    }

    #[test]
    fn errors_name_key_and_source_but_not_material() {
        let e = load_one(KeySource {
            env: Some("STRATA_TEST_KEYRING_UNSET".into()),
            file: None,
        });
        assert_eq!(
            e,
            "transform key 'kx': environment variable STRATA_TEST_KEYRING_UNSET is not set"
        );
        std::env::set_var("STRATA_TEST_KEYRING_SHORT", b64(&[9u8; 16]));
        let e = load_one(KeySource {
            env: Some("STRATA_TEST_KEYRING_SHORT".into()),
            file: None,
        });
        assert!(e.contains("decodes to 16 bytes"), "{e}");
        std::env::set_var("STRATA_TEST_KEYRING_JUNK", "secret-not-base64!");
        let e = load_one(KeySource {
            env: Some("STRATA_TEST_KEYRING_JUNK".into()),
            file: None,
        });
        assert!(
            e.contains("not valid base64") && !e.contains("secret"),
            "{e}"
        );
        let e = load_one(KeySource {
            env: None,
            file: Some("/nonexistent/strata/key".into()),
        });
        assert!(e.contains("cannot read /nonexistent/strata/key"), "{e}");
    }

    #[test]
    fn from_keys() {
        let ring = Keyring::from_keys([("a", [1u8; 32]), ("b", [2u8; 32])], Some("b")).unwrap();
        assert_eq!(ring.index_of(b"b"), Some(1));
        assert_eq!(ring.active_id(), Some("b"));
        assert!(Keyring::from_keys([("a", [1u8; 32]), ("a", [2u8; 32])], None).is_err());
        assert!(Keyring::from_keys([("a", [1u8; 32])], Some("z")).is_err());
        assert!(Keyring::from_keys([("bad id", [1u8; 32])], None).is_err());
    }
}
