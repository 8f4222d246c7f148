//! Finding a command's spec from its name, on every request, without allocating.
//!
//! Clients send names in any case (`get`, `GET`, `Get`). The name is
//! lower-cased into a 24-byte stack buffer and packed into three big-endian
//! `u64`s ([`NameKey`]); the generated table keeps the same packing of every
//! name in a sorted array beside [`COMMANDS`]. A top-level name is found
//! through a small open-addressing index over that array (hash the three
//! words, compare a key or two); subcommands, a handful per container, are
//! binary-searched. Comparing integers in one contiguous array beats
//! `memcmp` on strings scattered across 240 large `CommandSpec`s, and the
//! index runs fewer instructions than a binary search over all 240
//! (`make bench-instructions`, docs/PERFORMANCE.md).

use std::sync::OnceLock;

use crate::protocol::ArgList;

use super::table::{COMMAND_KEYS, SUBCOMMAND_KEYS};
use super::{CommandSpec, COMMANDS};

/// Bytes of name a [`NameKey`] holds. The longest Redis name is 21 bytes
/// (`count-failure-reports`, a CLUSTER subcommand; `georadiusbymember_ro`
/// among top-level commands), so anything longer is unknown.
const MAX_NAME: usize = 23;

/// A lower-case command name of at most [`MAX_NAME`] bytes, packed for fast
/// comparison: the name's bytes zero-padded to 23, then its length, read as
/// three big-endian `u64`s. Comparing keys orders names like comparing the
/// names (no name contains a NUL byte), and the length byte keeps `get` and
/// `get\0` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct NameKey([u64; 3]);

impl NameKey {
    /// The key of a table name, at compile time. The name must already be
    /// lower case; a name too long to pack fails the build.
    pub(super) const fn new(name: &str) -> NameKey {
        let bytes = name.as_bytes();
        assert!(bytes.len() <= MAX_NAME, "command name too long to pack");
        let mut buf = [0u8; MAX_NAME + 1];
        let mut i = 0;
        while i < bytes.len() {
            buf[i] = bytes[i];
            i += 1;
        }
        buf[MAX_NAME] = bytes.len() as u8;
        NameKey::from_buf(buf)
    }

    /// The key of a name as a client sent it (any case), or `None` when it is
    /// too long to be a command name.
    #[inline]
    fn from_request(name: &[u8]) -> Option<NameKey> {
        if name.len() > MAX_NAME {
            return None;
        }
        let mut buf = [0u8; MAX_NAME + 1];
        buf.get_mut(..name.len())?.copy_from_slice(name);
        // Lower-casing the whole fixed-size buffer (padding included) lets the
        // compiler do it in a few vector instructions.
        for b in &mut buf {
            *b = b.to_ascii_lowercase();
        }
        // `name.len() <= MAX_NAME` (checked above) fits in a byte.
        buf[MAX_NAME] = name.len() as u8;
        Some(NameKey::from_buf(buf))
    }

    /// Its slot in the command index: the three words mixed by a
    /// multiplication, the top bits taken.
    #[inline]
    fn slot(&self) -> usize {
        let [a, b, c] = self.0;
        let mixed = (a ^ b.rotate_left(21) ^ c.rotate_left(42)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> (64 - INDEX_SLOTS.trailing_zeros())) as usize
    }

    const fn from_buf(b: [u8; MAX_NAME + 1]) -> NameKey {
        NameKey([
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            u64::from_be_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        ])
    }
}

/// The spec of the top-level command `name` (ASCII case-insensitive), or
/// `None` for an unknown command. Subcommands are not looked up here; see
/// [`lookup`].
pub fn lookup_name(name: &[u8]) -> Option<&'static CommandSpec> {
    find_top(name).and_then(|i| COMMANDS.get(i))
}

/// The spec for a whole request: `args[0]` names the command; when it is a
/// container (CLIENT, CONFIG, …) and `args[1]` names one of its subcommands,
/// the subcommand's spec (`client|setname`) is returned, otherwise the
/// container's own (so the caller can still answer an arity or
/// unknown-subcommand error as Redis would).
pub fn lookup<A: ArgList + ?Sized>(args: &A) -> Option<&'static CommandSpec> {
    let i = find_top(args.arg(0)?)?;
    let spec = COMMANDS.get(i)?;
    if spec.subcommands.is_empty() {
        return Some(spec);
    }
    let sub = args
        .arg(1)
        .and_then(NameKey::from_request)
        .and_then(|key| SUBCOMMAND_KEYS.get(i)?.binary_search(&key).ok())
        .and_then(|j| spec.subcommands.get(j));
    Some(sub.unwrap_or(spec))
}

/// The last command found, for a client's next request: pipelines mostly
/// repeat one command (a batch of GETs, of SETs), and comparing the name's
/// bytes with the last one runs a tenth of the instructions of a lookup.
/// Only commands without subcommands are remembered (their spec depends on
/// the name alone); names compare byte for byte, so `get` after `GET` is a
/// miss that looks the name up as usual.
#[derive(Debug, Default)]
pub struct LookupCache {
    name: [u8; MAX_NAME],
    len: usize,
    spec: Option<&'static CommandSpec>,
}

impl LookupCache {
    /// [`lookup`], answered from the last request when it named the same
    /// command.
    #[inline]
    pub fn lookup<A: ArgList + ?Sized>(&mut self, args: &A) -> Option<&'static CommandSpec> {
        let name = args.arg(0)?;
        if let Some(spec) = self.spec {
            // A byte loop: names are a few bytes, and a slice comparison
            // is a call to memcmp (callgrind: ~18 instructions per command).
            let cached = self.name.get(..self.len).unwrap_or_default();
            if cached.len() == name.len() && cached.iter().zip(name).all(|(a, b)| a == b) {
                return Some(spec);
            }
        }
        let spec = lookup(args)?;
        // A subcommand's spec (`client|id`) has no subcommands either, but
        // its container's name alone does not find it.
        if spec.subcommands.is_empty() && !spec.name.contains('|') {
            if let Some(slot) = self.name.get_mut(..name.len()) {
                slot.copy_from_slice(name);
                self.len = name.len();
                self.spec = Some(spec);
            }
        }
        Some(spec)
    }
}

/// The index in [`COMMANDS`] of the top-level command `name`.
#[inline]
fn find_top(name: &[u8]) -> Option<usize> {
    let key = NameKey::from_request(name)?;
    let index = TOP_INDEX.get_or_init(build_top_index);
    let mut slot = key.slot();
    loop {
        let i = usize::from(*index.get(slot)?);
        if i == usize::from(EMPTY_SLOT) {
            return None;
        }
        if COMMAND_KEYS.get(i) == Some(&key) {
            return Some(i);
        }
        slot = (slot + 1) & (INDEX_SLOTS - 1);
    }
}

/// Slots of the top-level command index: a power of two, about twice the
/// number of commands, so most names are found at the first probe. A
/// lookup runs on every request; hashing the packed name and comparing
/// one or two keys executes about a third of the instructions of a
/// binary search over all of them (`make bench-instructions`).
const INDEX_SLOTS: usize = 512;
/// A slot of the index that holds no command.
const EMPTY_SLOT: u16 = u16::MAX;

/// An open-addressing table (linear probing) from [`NameKey::slot`] to the
/// command's index in [`COMMAND_KEYS`], built on first use.
static TOP_INDEX: OnceLock<[u16; INDEX_SLOTS]> = OnceLock::new();

fn build_top_index() -> [u16; INDEX_SLOTS] {
    let mut index = [EMPTY_SLOT; INDEX_SLOTS];
    for (i, key) in COMMAND_KEYS.iter().enumerate() {
        let mut slot = key.slot();
        while index[slot] != EMPTY_SLOT {
            slot = (slot + 1) & (INDEX_SLOTS - 1);
        }
        // Fewer commands than slots (checked in the tests), so every index fits.
        index[slot] = i as u16;
    }
    index
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn the_cache_answers_as_lookup_does() {
        let mut cache = LookupCache::default();
        let requests = [
            vec!["GET", "k"],
            vec!["GET", "k2"],
            vec!["get", "k"],
            vec!["SET", "k", "v"],
            vec!["CLIENT", "SETNAME", "x"],
            vec!["CLIENT", "ID"],
            vec!["CLIENT", "NOSUCH"],
            vec!["NOSUCH"],
            vec!["GET"],
            vec!["getex", "k"],
            vec!["GETEX", "k"],
            vec!["get"],
            vec!["SET", "k", "v"],
            vec!["zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"],
            vec!["SET", "k", "v"],
        ];
        for words in requests {
            let a = args(&words);
            assert_eq!(
                cache.lookup(&a).map(|s| s.name),
                lookup(&a).map(|s| s.name),
                "{words:?}"
            );
        }
        let empty: Vec<Bytes> = Vec::new();
        assert!(cache.lookup(&empty).is_none());
    }

    #[test]
    fn the_index_finds_every_command_in_a_few_probes() {
        assert!(COMMAND_KEYS.len() < INDEX_SLOTS / 2);
        for (i, cmd) in COMMANDS.iter().enumerate() {
            assert_eq!(find_top(cmd.name.as_bytes()), Some(i), "{}", cmd.name);
            assert_eq!(find_top(cmd.name.to_uppercase().as_bytes()), Some(i));
        }
        let index = TOP_INDEX.get_or_init(build_top_index);
        let mut longest = 0;
        for key in COMMAND_KEYS.iter() {
            let mut slot = key.slot();
            let mut probes = 1;
            while COMMAND_KEYS[usize::from(index[slot])] != *key {
                slot = (slot + 1) & (INDEX_SLOTS - 1);
                probes += 1;
            }
            longest = longest.max(probes);
        }
        assert!(longest <= 8, "a name needs {longest} probes");
        for unknown in [
            "",
            "gett",
            "ge",
            "foo",
            "getex2",
            "clientx",
            "zzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(find_top(unknown.as_bytes()), None, "{unknown}");
        }
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        for pair in COMMANDS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
        }
        for cmd in COMMANDS {
            assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
            let prefix = format!("{}|", cmd.name);
            for sub in cmd.subcommands {
                assert!(sub.name.starts_with(&prefix), "{}", sub.name);
                assert!(sub.subcommands.is_empty());
            }
            for pair in cmd.subcommands.windows(2) {
                assert!(pair[0].name < pair[1].name);
            }
        }
    }

    #[test]
    fn packed_keys_match_the_table() {
        assert_eq!(COMMAND_KEYS.len(), COMMANDS.len());
        assert_eq!(SUBCOMMAND_KEYS.len(), COMMANDS.len());
        for (i, cmd) in COMMANDS.iter().enumerate() {
            assert_eq!(COMMAND_KEYS[i], NameKey::new(cmd.name), "{}", cmd.name);
            assert_eq!(
                SUBCOMMAND_KEYS[i].len(),
                cmd.subcommands.len(),
                "{}",
                cmd.name
            );
            for (key, sub) in SUBCOMMAND_KEYS[i].iter().zip(cmd.subcommands) {
                let (_, name) = sub.name.split_once('|').unwrap();
                assert_eq!(*key, NameKey::new(name));
            }
            assert!(SUBCOMMAND_KEYS[i].windows(2).all(|w| w[0] < w[1]));
        }
        assert!(COMMAND_KEYS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn key_order_is_name_order() {
        let names = [
            "", "a", "ab", "abc", "abd", "b", "get", "getdel", "getex", "z_z", "zz",
        ];
        for pair in names.windows(2) {
            assert!(NameKey::new(pair[0]) < NameKey::new(pair[1]), "{pair:?}");
        }
        assert_eq!(NameKey::from_request(b"GeT"), Some(NameKey::new("get")));
        assert_ne!(NameKey::from_request(b"get\0"), Some(NameKey::new("get")));
        assert!(NameKey::from_request(&[b'x'; 24]).is_none());
        assert!(NameKey::from_request(&[b'x'; 23]).is_some());
    }

    #[test]
    fn finds_every_command_in_any_case() {
        for cmd in COMMANDS {
            assert_eq!(lookup_name(cmd.name.as_bytes()).unwrap().name, cmd.name);
            let upper = cmd.name.to_ascii_uppercase();
            assert_eq!(lookup_name(upper.as_bytes()).unwrap().name, cmd.name);
            for sub in cmd.subcommands {
                let (container, name) = sub.name.split_once('|').unwrap();
                let found = lookup(&args(&[&container.to_uppercase(), &name.to_uppercase()]));
                assert_eq!(found.unwrap().name, sub.name);
            }
        }
    }

    #[test]
    fn mixed_case() {
        assert_eq!(lookup_name(b"gEt").unwrap().name, "get");
        assert_eq!(
            lookup_name(b"GEORADIUSBYMEMBER_RO").unwrap().name,
            "georadiusbymember_ro"
        );
    }

    #[test]
    fn unknown_names() {
        assert!(lookup_name(b"").is_none());
        assert!(lookup_name(b"nosuchcommand").is_none());
        assert!(lookup_name(b"ge").is_none());
        assert!(lookup_name(b"gett").is_none());
        assert!(lookup_name(&[b'a'; 200]).is_none());
        assert!(lookup_name(b"get\0").is_none());
        assert!(lookup_name("gét".as_bytes()).is_none());
        // A subcommand name is not a top-level command.
        assert!(lookup_name(b"client|setname").is_none());
        assert!(lookup(&[]).is_none());
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            lookup(&args(&["CLIENT", "SETNAME", "x"])).unwrap().name,
            "client|setname"
        );
        assert_eq!(
            lookup(&args(&["client", "No-Evict", "on"])).unwrap().name,
            "client|no-evict"
        );
        assert_eq!(
            lookup(&args(&["CONFIG", "get", "*"])).unwrap().name,
            "config|get"
        );
        assert_eq!(
            lookup(&args(&["xinfo", "STREAM", "s"])).unwrap().name,
            "xinfo|stream"
        );
        // No or unknown subcommand: the container itself.
        assert_eq!(lookup(&args(&["CLIENT"])).unwrap().name, "client");
        assert_eq!(lookup(&args(&["CLIENT", "bogus"])).unwrap().name, "client");
        assert_eq!(
            lookup(&args(&["CLIENT", &"x".repeat(100)])).unwrap().name,
            "client"
        );
        // A plain command ignores args[1].
        assert_eq!(lookup(&args(&["GET", "setname"])).unwrap().name, "get");
    }
}
