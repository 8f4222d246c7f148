//! Where a coordination object's state lives in Redis.
//!
//! Every key of one object is in one hash slot, the slot of the object's
//! *name* as a client computes it for a key (the commands declare the name
//! as their key, position 1, so cluster-aware clients hash it):
//!
//! * a name without a hash tag is wrapped in one:
//!   `strata:<kind>:{<name>}:<part>` (slot of `<name>`);
//! * a name with its own hash tag (`{user42}:job`) is used as it is:
//!   `strata:<kind>:<name>:<part>` (the prefix has no brace, so the name's
//!   tag is the key's tag: slot of `user42`), which lets an application
//!   keep a lock in the slot of the data it protects.
//!
//! A name without a tag that contains `}` cannot be wrapped (the `}` would
//! end the tag early) and is refused.
//!
//! Wake-up channels (plain pub/sub, see `wake.rs`) are named like the keys;
//! in cluster mode a PUBLISH reaches every node whatever its name.

use bytes::{BufMut, Bytes, BytesMut};

/// The names of one object's keys.
#[derive(Debug, Clone)]
pub struct ObjectKeys {
    base: Bytes,
}

impl ObjectKeys {
    /// The keys of object `name` of `kind` (`lock`, `sem`, …).
    pub fn new(kind: &str, name: &[u8]) -> Result<ObjectKeys, String> {
        let mut base = BytesMut::with_capacity(kind.len() + name.len() + 12);
        base.put_slice(b"strata:");
        base.put_slice(kind.as_bytes());
        base.put_u8(b':');
        if name.is_empty() {
            return Err(format!("ERR {kind} name must not be empty"));
        }
        if has_tag(name) {
            base.put_slice(name);
        } else if name.contains(&b'}') {
            return Err(format!(
                "ERR {kind} name '{}' has a '}}' outside a hash tag: strata cannot keep its keys in one slot",
                String::from_utf8_lossy(name)
            ));
        } else {
            base.put_u8(b'{');
            base.put_slice(name);
            base.put_u8(b'}');
        }
        Ok(ObjectKeys {
            base: base.freeze(),
        })
    }

    /// `<base>:<part>`: one key (or channel) of the object.
    pub fn part(&self, part: &str) -> Bytes {
        let mut key = BytesMut::with_capacity(self.base.len() + part.len() + 1);
        key.put_slice(&self.base);
        key.put_u8(b':');
        key.put_slice(part.as_bytes());
        key.freeze()
    }
}

/// True when Redis would hash `key` by a tag: a `{` followed, later, by a
/// `}` with at least one byte between them (cluster.c `keyHashSlot`).
fn has_tag(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'{') {
        Some(open) => key[open + 1..]
            .iter()
            .position(|&b| b == b'}')
            .is_some_and(|close| close > 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::slot::hash_slot;

    #[test]
    fn every_key_is_in_the_names_slot() {
        for name in [
            &b"orders"[..],
            b"{user42}:job",
            b"a{b}c",
            b"a{b",
            b"{",
            b"lock with spaces",
        ] {
            let Ok(keys) = ObjectKeys::new("lock", name) else {
                panic!("{:?} refused", String::from_utf8_lossy(name));
            };
            for part in ["", "seq", "wake"] {
                assert_eq!(
                    hash_slot(&keys.part(part)),
                    hash_slot(name),
                    "{:?} {part}",
                    String::from_utf8_lossy(name)
                );
            }
        }
    }

    #[test]
    fn a_stray_closing_brace_is_refused() {
        for name in [&b"a}b"[..], b"a{}b", b"}", b"x{}", b""] {
            let err = ObjectKeys::new("lock", name).expect_err("an error");
            assert!(err.starts_with("ERR lock name"), "{err}");
        }
    }
}
