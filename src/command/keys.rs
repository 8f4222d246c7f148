//! Which arguments of a command are keys, from the command's key specs.
//!
//! strata routes by key (cluster slot, split by slot) without knowing any
//! command by name: it follows the Redis 7 key specs in the command table the
//! way Redis's own `getKeysUsingKeySpecs` does. Differences from Redis, all
//! deliberate:
//!
//! * A spec Redis marks `unknown` (SORT's `BY`/`GET`/`STORE`) cannot be
//!   followed from the arguments; it is skipped and the result is flagged
//!   incomplete ([`KeyIndexes::is_complete`]) instead of failing the whole
//!   search. Redis falls back to a hand-written parser there.
//! * Specs Redis marks `not_key` (the shard channels of SPUBLISH, SSUBSCRIBE,
//!   SUNSUBSCRIBE) are included: they hash to slots like keys and strata
//!   routes by them.
//! * A `numkeys` of 0 (EVAL with no keys) gives no keys for that spec and
//!   leaves the other specs alone.
//! * MIGRATE's `KEYS` form reports argument 3 (the empty key placeholder) as
//!   well, as its key specs say; Redis's fallback parser drops it.
//!
//! A spec that does not fit the arguments (non-numeric, negative or too large
//! `numkeys`, a range past the end) means Redis would reject the command, so
//! the result is empty, as in Redis: no key, nothing to route by, and the
//! backend answers with the error.

use crate::protocol::ArgList;

use super::{BeginSearch, CommandSpec, FindKeys};

/// How many key indexes fit without a heap allocation. Almost every command
/// has at most a few keys; MSET/MGET/DEL with many keys spill to a `Vec`.
const INLINE: usize = 4;

/// The argument indexes (0 is the command name) that hold keys, in the order
/// the key specs find them.
///
/// Up to four indexes are stored inline, so the common case does not touch
/// the allocator on the request path.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyIndexes {
    inline: [usize; INLINE],
    /// Number of valid entries in `inline`; unused once `heap` is in use.
    inline_len: usize,
    /// All indexes once there are more than `INLINE`; empty (and unallocated) before.
    heap: Vec<usize>,
    complete: bool,
}

impl KeyIndexes {
    /// No keys, complete.
    pub const fn new() -> KeyIndexes {
        KeyIndexes {
            inline: [0; INLINE],
            inline_len: 0,
            heap: Vec::new(),
            complete: true,
        }
    }

    fn push(&mut self, index: usize) {
        if !self.heap.is_empty() {
            self.heap.push(index);
        } else if self.inline_len < INLINE {
            self.inline[self.inline_len] = index;
            self.inline_len += 1;
        } else {
            let mut heap = Vec::with_capacity(INLINE * 4);
            heap.extend_from_slice(&self.inline);
            heap.push(index);
            self.heap = heap;
        }
    }

    fn clear(&mut self) {
        self.inline_len = 0;
        self.heap.clear();
    }

    /// The indexes as a slice.
    pub fn as_slice(&self) -> &[usize] {
        if self.heap.is_empty() {
            &self.inline[..self.inline_len]
        } else {
            &self.heap
        }
    }

    /// Iterates over the indexes.
    pub fn iter(&self) -> std::iter::Copied<std::slice::Iter<'_, usize>> {
        self.as_slice().iter().copied()
    }

    /// Number of key indexes.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// True when the command has no key in these arguments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first key index, which decides the slot of a single-slot command.
    pub fn first(&self) -> Option<usize> {
        self.as_slice().first().copied()
    }

    /// The `n`th key index.
    pub fn get(&self, n: usize) -> Option<usize> {
        self.as_slice().get(n).copied()
    }

    /// False when some key spec could not be followed from the arguments
    /// (Redis marks it `unknown`, as for SORT ... STORE): there may be keys
    /// that are not listed. Routing by the listed keys is still right for a
    /// single-slot command (Redis Cluster itself rejects a cross-slot one),
    /// but a command with incomplete keys must not be split by slot.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// True when the indexes live on the heap (more than four keys).
    pub fn spilled(&self) -> bool {
        !self.heap.is_empty()
    }
}

impl Default for KeyIndexes {
    fn default() -> Self {
        KeyIndexes::new()
    }
}

impl std::fmt::Debug for KeyIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndexes")
            .field("indexes", &self.as_slice())
            .field("complete", &self.complete)
            .finish()
    }
}

impl<'a> IntoIterator for &'a KeyIndexes {
    type Item = usize;
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, usize>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The argument indexes of `args` (with `args[0]` the command name, and for a
/// subcommand `args[1]` its name) that hold keys according to `spec`'s key
/// specs. Never panics, whatever `args` holds.
pub fn key_indexes<A: ArgList + ?Sized>(spec: &CommandSpec, args: &A) -> KeyIndexes {
    let mut out = KeyIndexes::new();
    // Redis works in `int`; i64 leaves no room for overflow with any argc.
    let argc = args.argc() as i64;
    for key_spec in spec.key_specs {
        let first = match key_spec.begin {
            BeginSearch::Index(index) => to_i64(index),
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => match find_keyword(args, keyword, start_from) {
                Some(after) => after,
                // No keyword, no keys from this spec (e.g. GEORADIUS without STORE).
                None => continue,
            },
            BeginSearch::Unknown => {
                out.complete = false;
                continue;
            }
        };
        let (first, last, step) = match key_spec.find {
            FindKeys::Range {
                last_key,
                step,
                limit,
            } => {
                let last_key = i64::from(last_key);
                let last = if last_key >= 0 {
                    first.saturating_add(last_key)
                } else if limit <= 1 {
                    argc + last_key
                } else {
                    // Redis: keys take 1/limit of what follows `first`
                    // (XREAD ... STREAMS k1 k2 id1 id2 has limit 2).
                    first.saturating_add(
                        (argc.saturating_sub(first) / to_i64(limit)).saturating_add(last_key),
                    )
                };
                (first, last, step)
            }
            FindKeys::KeyNum {
                keynum_index,
                first_key,
                step,
            } => {
                let Some(numkeys) = usize::try_from(first.saturating_add(to_i64(keynum_index)))
                    .ok()
                    .and_then(|i| args.arg(i))
                    .and_then(parse_numkeys)
                else {
                    out.clear();
                    return out;
                };
                if numkeys == 0 {
                    // EVAL script 0: legal, and no keys here.
                    continue;
                }
                let first = first.saturating_add(to_i64(first_key));
                (first, first.saturating_add(numkeys - 1), step)
            }
            FindKeys::Unknown => {
                out.complete = false;
                continue;
            }
        };
        // Out of bounds means Redis would answer with a syntax or arity error.
        if first < 1 || first >= argc || last >= argc || last < first || step == 0 {
            out.clear();
            return out;
        }
        let mut i = first;
        while i <= last {
            // `first..=last` is within `1..argc`, so the cast is lossless.
            out.push(i as usize);
            i = i.saturating_add(to_i64(step));
        }
    }
    out
}

/// `n` as `i64`, saturating: table values are small, but a hand-made spec
/// with a huge value must still not wrap into a negative index.
fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Redis's keyword search: from `start_from` (negative counts from the end)
/// towards the far end, the index just after the first argument equal to
/// `keyword` (ASCII case-insensitive), or `None`.
///
/// Like Redis, the search never looks at argument 0, and stops before its end
/// index (the last argument going forward, argument 0 going backward): a
/// keyword there would have no key after it anyway.
fn find_keyword<A: ArgList + ?Sized>(args: &A, keyword: &str, start_from: i32) -> Option<i64> {
    let argc = args.argc() as i64;
    let start_from = i64::from(start_from);
    let (start, end) = if start_from > 0 {
        (start_from, argc - 1)
    } else {
        (argc + start_from, 0)
    };
    let forward = start <= end;
    let mut i = start;
    while i != end {
        if i >= argc || i < 1 {
            return None;
        }
        // `1 <= i < argc`, so the cast is lossless and the index in bounds.
        if args
            .arg(i as usize)
            .is_some_and(|a| a.eq_ignore_ascii_case(keyword.as_bytes()))
        {
            return Some(i + 1);
        }
        i += if forward { 1 } else { -1 };
    }
    None
}

/// A `numkeys` argument as Redis reads it (`string2ll`, then `< 0` refused):
/// digits with no leading zero (a lone `0` is fine), no `+`, no spaces,
/// within `i64`; anything negative is `None`.
fn parse_numkeys(arg: &[u8]) -> Option<i64> {
    let (negative, digits) = match arg {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, arg),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    if negative {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::command::lookup;
    use bytes::Bytes;
    use proptest::strategy::Strategy;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|s| match s {
                "''" => Bytes::new(),
                _ => Bytes::copy_from_slice(s.as_bytes()),
            })
            .collect()
    }

    fn keys(line: &str) -> Vec<usize> {
        let args = args(line);
        let spec = lookup(&args).unwrap();
        key_indexes(spec, &args).iter().collect()
    }

    fn key_names(line: &str) -> Vec<String> {
        let args = args(line);
        let spec = lookup(&args).unwrap();
        key_indexes(spec, &args)
            .iter()
            .map(|i| String::from_utf8_lossy(&args[i]).into_owned())
            .collect()
    }

    #[test]
    fn single_key() {
        assert_eq!(keys("GET k"), vec![1]);
        assert_eq!(keys("SET k v EX 10"), vec![1]);
        assert_eq!(keys("PING"), Vec::<usize>::new());
    }

    #[test]
    fn mset_mget() {
        assert_eq!(keys("MSET a 1 b 2 c 3"), vec![1, 3, 5]);
        assert_eq!(keys("MGET a b c d e f"), vec![1, 2, 3, 4, 5, 6]);
        // Odd MSET: last key has no value; Redis's range still says 1,3,5.
        assert_eq!(keys("MSET a 1 b 2 c"), vec![1, 3, 5]);
    }

    #[test]
    fn inline_then_spill() {
        let a = args("MGET a b c d");
        let k = key_indexes(lookup(&a).unwrap(), &a);
        assert!(!k.spilled());
        assert_eq!(k.len(), 4);
        let a = args("MGET a b c d e");
        let k = key_indexes(lookup(&a).unwrap(), &a);
        assert!(k.spilled());
        assert_eq!(k.as_slice(), &[1, 2, 3, 4, 5]);
        assert_eq!(k.first(), Some(1));
        assert_eq!(k.get(4), Some(5));
        assert_eq!((&k).into_iter().sum::<usize>(), 15);
    }

    #[test]
    fn eval_numkeys() {
        assert_eq!(key_names("EVAL s 3 a b c x y"), vec!["a", "b", "c"]);
        assert_eq!(keys("EVAL s 0"), Vec::<usize>::new());
        assert_eq!(keys("EVAL s 0 x y"), Vec::<usize>::new());
        assert_eq!(key_names("FCALL f 2 a b x"), vec!["a", "b"]);
        assert_eq!(key_names("EVALSHA_RO sha 1 a"), vec!["a"]);
    }

    #[test]
    fn malformed_numkeys() {
        for line in [
            "EVAL s 4 a b",
            "EVAL s -1 a",
            "EVAL s x a",
            "EVAL s 01 a",
            "EVAL s +1 a",
            "EVAL s 1.0 a",
            "EVAL s 99999999999999999999999 a",
            "EVAL s 9223372036854775807 a",
            "EVAL s",
            "ZUNIONSTORE dst 3 a b",
            "ZUNIONSTORE dst x a b",
            "LMPOP 5 a LEFT",
        ] {
            assert!(keys(line).is_empty(), "{line}");
        }
    }

    #[test]
    fn xread_streams() {
        assert_eq!(key_names("XREAD STREAMS a b 0 0"), vec!["a", "b"]);
        assert_eq!(
            key_names("XREAD COUNT 10 BLOCK 0 streams a b c 0 0 0"),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            key_names("XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 > >"),
            vec!["s1", "s2"]
        );
        // No STREAMS keyword: no keys, nothing panics.
        assert!(keys("XREAD COUNT 1").is_empty());
        // Odd count: Redis's limit arithmetic rounds down.
        assert_eq!(key_names("XREAD STREAMS a b 0"), vec!["a"]);
    }

    #[test]
    fn zunionstore() {
        assert_eq!(
            key_names("ZUNIONSTORE dst 2 a b WEIGHTS 1 2"),
            vec!["dst", "a", "b"]
        );
        assert_eq!(key_names("ZINTER 2 a b WITHSCORES"), vec!["a", "b"]);
        assert_eq!(key_names("ZDIFFSTORE d 1 a"), vec!["d", "a"]);
    }

    #[test]
    fn sort_is_incomplete() {
        let a = args("SORT k BY w_* GET o_* STORE dst");
        let k = key_indexes(lookup(&a).unwrap(), &a);
        assert_eq!(k.as_slice(), &[1]);
        assert!(!k.is_complete());
        let a = args("GET k");
        assert!(key_indexes(lookup(&a).unwrap(), &a).is_complete());
    }

    #[test]
    fn migrate() {
        assert_eq!(key_names("MIGRATE h 6379 k 0 5000"), vec!["k"]);
        assert_eq!(key_names("MIGRATE h 6379 k 0 5000 COPY REPLACE"), vec!["k"]);
        // The KEYS form: the key specs report the empty placeholder too.
        assert_eq!(
            keys("MIGRATE h 6379 '' 0 5000 COPY KEYS a b c"),
            vec![3, 8, 9, 10]
        );
    }

    #[test]
    fn lmpop_blmpop() {
        assert_eq!(key_names("LMPOP 2 a b LEFT COUNT 2"), vec!["a", "b"]);
        assert_eq!(key_names("BLMPOP 0 2 a b RIGHT"), vec!["a", "b"]);
        assert_eq!(key_names("BZMPOP 1.5 1 z MIN"), vec!["z"]);
    }

    #[test]
    fn georadius_store() {
        assert_eq!(key_names("GEORADIUS g 15 37 200 km"), vec!["g"]);
        assert_eq!(
            key_names("GEORADIUS g 15 37 200 km ASC STORE dst"),
            vec!["g", "dst"]
        );
        assert_eq!(
            key_names("GEORADIUS g 15 37 200 km STORE d1 STOREDIST d2"),
            vec!["g", "d1", "d2"]
        );
        assert_eq!(
            key_names("GEORADIUSBYMEMBER g m 200 km STOREDIST d"),
            vec!["g", "d"]
        );
    }

    #[test]
    fn subcommands_and_shard_channels() {
        assert_eq!(key_names("OBJECT ENCODING k"), vec!["k"]);
        assert_eq!(key_names("XINFO STREAM s FULL"), vec!["s"]);
        assert_eq!(key_names("MEMORY USAGE k"), vec!["k"]);
        assert_eq!(key_names("SPUBLISH ch msg"), vec!["ch"]);
        assert_eq!(key_names("SSUBSCRIBE a b"), vec!["a", "b"]);
    }

    #[test]
    fn arity_errors_give_no_keys() {
        assert!(keys("GET").is_empty());
        assert!(keys("MSET").is_empty());
        assert!(keys("LMPOP").is_empty());
        assert!(keys("XREADGROUP").is_empty());
    }

    #[test]
    fn string2ll() {
        assert_eq!(parse_numkeys(b"0"), Some(0));
        assert_eq!(parse_numkeys(b"12"), Some(12));
        assert_eq!(parse_numkeys(b"-0"), None);
        assert_eq!(parse_numkeys(b"-3"), None);
        assert_eq!(parse_numkeys(b"007"), None);
        assert_eq!(parse_numkeys(b""), None);
        assert_eq!(parse_numkeys(b"-"), None);
        assert_eq!(parse_numkeys(b" 1"), None);
        assert_eq!(parse_numkeys(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_numkeys(b"9223372036854775808"), None);
    }

    proptest::proptest! {
        /// Arbitrary argument lists (biased towards numbers and keywords the
        /// specs look for) against every command: no panic, indexes in bounds
        /// and strictly past the command name.
        #[test]
        fn arbitrary_args_never_panic(
            cmd in 0..crate::command::COMMANDS.len(),
            words in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<Vec<u8>>(),
                    "-?[0-9]{1,20}".prop_map(String::into_bytes),
                    proptest::sample::select(vec!["STREAMS", "keys", "Store", "STOREDIST", "0", "1", "2"])
                        .prop_map(|w| w.as_bytes().to_vec()),
                ],
                0..16,
            ),
        ) {
            let cmd = &crate::command::COMMANDS[cmd];
            let args: Vec<Bytes> = words.into_iter().map(Bytes::from).collect();
            for spec in std::iter::once(cmd).chain(cmd.subcommands) {
                let k = key_indexes(spec, &args);
                proptest::prop_assert!(k.iter().all(|i| i >= 1 && i < args.len()));
                proptest::prop_assert_eq!(k.len(), k.iter().count());
            }
        }
    }

    #[test]
    fn hostile_specs_never_panic() {
        use crate::command::{KeySpec, Merge, Route};
        let begins = [
            BeginSearch::Index(0),
            BeginSearch::Index(usize::MAX),
            BeginSearch::Keyword {
                keyword: "K",
                start_from: i32::MIN,
            },
            BeginSearch::Keyword {
                keyword: "K",
                start_from: i32::MAX,
            },
            BeginSearch::Keyword {
                keyword: "K",
                start_from: 0,
            },
        ];
        let finds = [
            FindKeys::Range {
                last_key: i32::MIN,
                step: usize::MAX,
                limit: usize::MAX,
            },
            FindKeys::Range {
                last_key: i32::MAX,
                step: 0,
                limit: 0,
            },
            FindKeys::Range {
                last_key: -1,
                step: usize::MAX,
                limit: 2,
            },
            FindKeys::KeyNum {
                keynum_index: usize::MAX,
                first_key: usize::MAX,
                step: usize::MAX,
            },
            FindKeys::KeyNum {
                keynum_index: 0,
                first_key: usize::MAX,
                step: 1,
            },
        ];
        let args = args("X K 3 K 1 K 9223372036854775807");
        for begin in begins {
            for find in finds {
                let spec = CommandSpec {
                    name: "x",
                    arity: -1,
                    flags: crate::command::Flags::default(),
                    first_key: 0,
                    last_key: 0,
                    step: 0,
                    key_specs: &[],
                    route: Route::Any,
                    merge: Merge::One,
                    subcommands: &[],
                };
                let key_specs: &'static [KeySpec] = Box::leak(Box::new([KeySpec { begin, find }]));
                let spec = CommandSpec { key_specs, ..spec };
                for n in 0..=args.len() {
                    let k = key_indexes(&spec, &args[..n]);
                    assert!(k.iter().all(|i| i >= 1 && i < n), "{begin:?} {find:?}");
                }
            }
        }
    }

    #[test]
    fn never_panics_on_any_spec() {
        // Every command and subcommand against a spread of argument shapes.
        let shapes: Vec<Vec<Bytes>> = (0..12)
            .flat_map(|n| {
                ["k", "0", "-1", "STREAMS", "KEYS", "STORE", "99", "", "2"]
                    .iter()
                    .map(move |w| (0..n).map(|_| Bytes::from_static(w.as_bytes())).collect())
            })
            .collect();
        for cmd in crate::command::COMMANDS {
            for spec in std::iter::once(cmd).chain(cmd.subcommands) {
                for a in &shapes {
                    let k = key_indexes(spec, a);
                    assert!(k.iter().all(|i| i >= 1 && i < a.len()), "{}", spec.name);
                }
            }
        }
    }
}
