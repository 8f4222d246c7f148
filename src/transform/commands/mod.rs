//! Which commands carry values, and how requests are rewritten for rules.
//!
//! The knowledge is a table (`TABLE`): each command that touches values of
//! strings, hashes or lists maps to a `Shape` saying where its keys and
//! values are and what its reply holds. Commands not in the table never carry
//! a value that a rule transforms (DEL, EXPIRE, TYPE, set and sorted-set
//! commands, …) and pass through untouched, without even looking at rules.
//!
//! Sets and sorted sets hold members, not values: members are compared,
//! hashed and sorted by Redis, so they are never transformed. Streams are not
//! transformed either.
//!
//! Outcomes for a command on a key under a rule:
//! * values in the request are sealed ([`Rewrite::Args`]);
//! * a [`ReplyPlan`] says how to open the values in the reply;
//! * or the command is refused, when its meaning would silently break on
//!   stored bytes that are not the client's bytes (APPEND, INCR, GETRANGE,
//!   bit operations, …). The error names the command, the key and the rule.

use bytes::Bytes;

use super::envelope::{seal, show, Location};
use super::rules::Rule;
use super::Transforms;

/// What to send to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// The request as the client sent it.
    Unchanged,
    /// These arguments instead (values sealed, or the command replaced:
    /// STRLEN becomes GET, HVALS becomes HGETALL).
    Args(Vec<Bytes>),
}

/// How to turn the backend's reply into the client's reply. Keys and fields
/// are kept from the request (cheap `Bytes` clones) because values are bound
/// to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyPlan {
    /// A bulk string value of `key` (GET, GETDEL, GETEX, GETSET, SET … GET).
    Value {
        /// The key.
        key: Bytes,
    },
    /// An array of values, one per key, in request order (MGET). Keys no
    /// rule matches pass through.
    Values {
        /// The keys, in request order.
        keys: Vec<Bytes>,
    },
    /// The request was rewritten to GET; answer the length of the value.
    StrlenOf {
        /// The key.
        key: Bytes,
    },
    /// HGET.
    HashField {
        /// The hash.
        key: Bytes,
        /// The field.
        field: Bytes,
    },
    /// HMGET: an array of values, one per field.
    HashFields {
        /// The hash.
        key: Bytes,
        /// The fields, in request order.
        fields: Vec<Bytes>,
    },
    /// HGETALL: field/value pairs (a flat array in RESP2, a map in RESP3).
    HashPairs {
        /// The hash.
        key: Bytes,
    },
    /// HVALS, sent as HGETALL because values are bound to their fields;
    /// answer the values only.
    HashValues {
        /// The hash.
        key: Bytes,
    },
    /// HRANDFIELD … WITHVALUES: flat pairs in RESP2, an array of pairs in RESP3.
    HrandfieldWithValues {
        /// The hash.
        key: Bytes,
    },
    /// HSCAN: `[cursor, [field, value, …]]`.
    HashScan {
        /// The hash.
        key: Bytes,
    },
    /// List elements of `key`: one bulk (LPOP, LINDEX, LMOVE) or an array
    /// (LRANGE, LPOP with a count, SORT).
    ListElements {
        /// The list the elements come from.
        key: Bytes,
    },
    /// BLPOP/BRPOP: `[key, element]`; the key is in the reply.
    KeyValuePair,
    /// LMPOP/BLMPOP: `[key, [elements]]`; the key is in the reply.
    MpopReply,
}

/// The outcome of looking at a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// What to send.
    pub rewrite: Rewrite,
    /// How to decode the reply, if it holds transformed values.
    pub plan: Option<ReplyPlan>,
}

impl Prepared {
    /// Nothing to do: the request and its reply pass through.
    pub const PASS: Prepared = Prepared {
        rewrite: Rewrite::Unchanged,
        plan: None,
    };
}

/// Where the keys, values and reply values of one command are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// SET key value [options…]: the reply is the old value with GET.
    Set,
    /// key at 1, value at `value`; `returns_old`: the reply is the old value.
    StringWrite { value: usize, returns_old: bool },
    /// key at 1; the reply is its value.
    StringRead,
    /// STRLEN key, emulated with GET.
    Strlen,
    /// key value [key value …] from 1.
    MultiStringWrite,
    /// key [key …] from 1; the reply is one value per key.
    MultiStringRead,
    /// key at 1, field value pairs from 2.
    HashWrite,
    /// HGET key field.
    HashGet,
    /// HMGET key field [field …].
    HashMGet,
    /// HGETALL key.
    HashGetAll,
    /// HVALS key.
    HashVals,
    /// `HRANDFIELD key [count [WITHVALUES]]`.
    HashRandField,
    /// `HSCAN key cursor [MATCH p] [COUNT n] [NOVALUES]`.
    HashScan,
    /// key at 1, elements from 2 (LPUSH, RPUSH, LPUSHX, RPUSHX).
    ListPush,
    /// LSET key index element.
    ListSet,
    /// Commands that compare an element argument with stored elements
    /// (LINSERT pivot, LPOS, LREM): the argument at `compare` and, for
    /// LINSERT, the new element at `write`. Random nonces make an encrypted
    /// element impossible to match, so they are refused under encryption;
    /// compression is deterministic, so the argument is sealed to match.
    ListCompare {
        compare: usize,
        write: Option<usize>,
    },
    /// key at 1; the reply is elements of it (LPOP, RPOP, LRANGE, LINDEX).
    ListRead,
    /// source at 1, destination at 2 (LMOVE, BLMOVE, RPOPLPUSH, BRPOPLPUSH).
    ListMove,
    /// BLPOP/BRPOP key [key …] timeout.
    BlockingPop,
    /// LMPOP numkeys key… / BLMPOP timeout numkeys key…: numkeys at `numkeys`.
    Mpop { numkeys: usize },
    /// Refused on a transformed key; the keys are at 1 (`first`) onwards,
    /// up to `last` (inclusive, negative from the end).
    Refuse { first: usize, last: isize },
    /// SORT/SORT_RO key …: refused with BY, GET or STORE.
    Sort,
    /// EVAL script numkeys key…: refused unless the rule allows scripts.
    Script,
    /// RENAME/RENAMENX/COPY source destination.
    RenameLike,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Lower-case name.
    name: &'static str,
    shape: Shape,
}

const fn e(name: &'static str, shape: Shape) -> Entry {
    Entry { name, shape }
}

const REFUSE_KEY1: Shape = Shape::Refuse { first: 1, last: 1 };

/// Every command strata treats specially on transformed keys, sorted by name
/// (a test checks the order; lookup is a binary search).
static TABLE: &[Entry] = &[
    e("append", REFUSE_KEY1),
    e("bitcount", REFUSE_KEY1),
    e("bitfield", REFUSE_KEY1),
    e("bitfield_ro", REFUSE_KEY1),
    e("bitop", Shape::Refuse { first: 2, last: -1 }),
    e("bitpos", REFUSE_KEY1),
    e("blmove", Shape::ListMove),
    e("blmpop", Shape::Mpop { numkeys: 2 }),
    e("blpop", Shape::BlockingPop),
    e("brpop", Shape::BlockingPop),
    e("brpoplpush", Shape::ListMove),
    e("copy", Shape::RenameLike),
    e("decr", REFUSE_KEY1),
    e("decrby", REFUSE_KEY1),
    e("eval", Shape::Script),
    e("eval_ro", Shape::Script),
    e("evalsha", Shape::Script),
    e("evalsha_ro", Shape::Script),
    e("fcall", Shape::Script),
    e("fcall_ro", Shape::Script),
    e("get", Shape::StringRead),
    e("getbit", REFUSE_KEY1),
    e("getdel", Shape::StringRead),
    e("getex", Shape::StringRead),
    e("getrange", REFUSE_KEY1),
    e(
        "getset",
        Shape::StringWrite {
            value: 2,
            returns_old: true,
        },
    ),
    e("hget", Shape::HashGet),
    e("hgetall", Shape::HashGetAll),
    e("hincrby", REFUSE_KEY1),
    e("hincrbyfloat", REFUSE_KEY1),
    e("hmget", Shape::HashMGet),
    e("hmset", Shape::HashWrite),
    e("hrandfield", Shape::HashRandField),
    e("hscan", Shape::HashScan),
    e("hset", Shape::HashWrite),
    e("hsetnx", Shape::HashWrite),
    e("hstrlen", REFUSE_KEY1),
    e("hvals", Shape::HashVals),
    e("incr", REFUSE_KEY1),
    e("incrby", REFUSE_KEY1),
    e("incrbyfloat", REFUSE_KEY1),
    e("lcs", Shape::Refuse { first: 1, last: 2 }),
    e("lindex", Shape::ListRead),
    e(
        "linsert",
        Shape::ListCompare {
            compare: 3,
            write: Some(4),
        },
    ),
    e("lmove", Shape::ListMove),
    e("lmpop", Shape::Mpop { numkeys: 1 }),
    e("lpop", Shape::ListRead),
    e(
        "lpos",
        Shape::ListCompare {
            compare: 2,
            write: None,
        },
    ),
    e("lpush", Shape::ListPush),
    e("lpushx", Shape::ListPush),
    e("lrange", Shape::ListRead),
    e(
        "lrem",
        Shape::ListCompare {
            compare: 3,
            write: None,
        },
    ),
    e("lset", Shape::ListSet),
    e("mget", Shape::MultiStringRead),
    e("mset", Shape::MultiStringWrite),
    e("msetnx", Shape::MultiStringWrite),
    e(
        "psetex",
        Shape::StringWrite {
            value: 3,
            returns_old: false,
        },
    ),
    e("rename", Shape::RenameLike),
    e("renamenx", Shape::RenameLike),
    e("rpop", Shape::ListRead),
    e("rpoplpush", Shape::ListMove),
    e("rpush", Shape::ListPush),
    e("rpushx", Shape::ListPush),
    e("set", Shape::Set),
    e("setbit", REFUSE_KEY1),
    e(
        "setex",
        Shape::StringWrite {
            value: 3,
            returns_old: false,
        },
    ),
    e(
        "setnx",
        Shape::StringWrite {
            value: 2,
            returns_old: false,
        },
    ),
    e("setrange", REFUSE_KEY1),
    e("sort", Shape::Sort),
    e("sort_ro", Shape::Sort),
    e("strlen", Shape::Strlen),
    e("substr", REFUSE_KEY1),
];

/// The longest name in [`TABLE`] fits in this many bytes.
const MAX_NAME: usize = 16;

/// The table row for a command name in any case, without allocating.
fn lookup(name: &[u8]) -> Option<&'static Entry> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let lower = &*lower;
    TABLE
        .binary_search_by(|e| e.name.as_bytes().cmp(lower))
        .ok()
        .and_then(|i| TABLE.get(i))
}

/// The arguments, copied lazily: nothing is allocated until a value changes.
struct Args<'a> {
    original: &'a [Bytes],
    changed: Option<Vec<Bytes>>,
    /// False when only the reply plan is wanted.
    seal: bool,
}

impl<'a> Args<'a> {
    fn new(original: &'a [Bytes], seal: bool) -> Args<'a> {
        Args {
            original,
            changed: None,
            seal,
        }
    }

    fn set(&mut self, i: usize, value: Bytes) {
        // `seal` hands back the very same bytes when it changes nothing;
        // compare pointers, not contents, to notice that for free.
        let same = |o: &Bytes| o.as_ptr() == value.as_ptr() && o.len() == value.len();
        if self.changed.is_none() && self.original.get(i).is_some_and(same) {
            return;
        }
        let args = self.changed.get_or_insert_with(|| self.original.to_vec());
        if let Some(slot) = args.get_mut(i) {
            *slot = value;
        }
    }

    fn finish(self) -> Rewrite {
        match self.changed {
            Some(v) => Rewrite::Args(v),
            None => Rewrite::Unchanged,
        }
    }
}

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A small non-negative integer argument (numkeys), bounded by what the
/// arguments can hold so a huge value cannot make anyone loop or allocate.
fn small_count(arg: Option<&Bytes>, bound: usize) -> Option<usize> {
    let n: usize = std::str::from_utf8(arg?).ok()?.parse().ok()?;
    (n <= bound).then_some(n)
}

impl Transforms {
    /// Looks at one request (`args[0]` is the command name, as the client
    /// sent it): the arguments to send and how to decode the reply, or the
    /// error to answer instead (`ERR STRLEN not supported on transformed key
    /// 'session:1' (rule 'session:*')`).
    ///
    /// With no rules, or a command that carries no value, this returns
    /// [`Prepared::PASS`] without allocating.
    pub fn prepare(&self, args: &[Bytes]) -> Result<Prepared, String> {
        if self.rules.is_empty() {
            return Ok(Prepared::PASS);
        }
        let Some(entry) = args.first().and_then(|name| lookup(name)) else {
            return Ok(Prepared::PASS);
        };
        let result = self.prepare_shape(entry, args, true);
        if result.is_err() {
            self.stats.refused();
        }
        result
    }

    /// [`Transforms::prepare`], the request half only.
    pub fn rewrite_request(&self, args: &[Bytes]) -> Result<Rewrite, String> {
        self.prepare(args).map(|p| p.rewrite)
    }

    /// [`Transforms::prepare`], the reply half only, from the client's
    /// original arguments; nothing is sealed. `None` also for a refused
    /// command. Prefer `prepare`, which answers both halves in one pass.
    pub fn reply_plan(&self, args: &[Bytes]) -> Option<ReplyPlan> {
        if self.rules.is_empty() {
            return None;
        }
        let entry = args.first().and_then(|name| lookup(name))?;
        self.prepare_shape(entry, args, false).ok()?.plan
    }

    fn refuse(&self, entry: &Entry, key: &[u8], rule: &Rule) -> String {
        format!(
            "ERR {} not supported on transformed key '{}' (rule '{}')",
            entry.name.to_ascii_uppercase(),
            show(key),
            rule.pattern()
        )
    }

    fn seal_arg(
        &self,
        out: &mut Args<'_>,
        i: usize,
        loc: Location<'_>,
        rule: &Rule,
    ) -> Result<(), String> {
        let Some(value) = out.original.get(i).filter(|_| out.seal) else {
            return Ok(());
        };
        match seal(value, loc, rule, &self.keyring) {
            Ok(sealed) => {
                self.stats
                    .sealed(value.len(), sealed.len(), rule.encrypts());
                out.set(i, sealed);
                Ok(())
            }
            Err(e) => {
                self.stats.failed(e.kind());
                Err(e.to_string())
            }
        }
    }

    /// The work of `prepare`; with `seal` false, values are left alone (for
    /// [`Transforms::reply_plan`]).
    fn prepare_shape(&self, entry: &Entry, args: &[Bytes], seal: bool) -> Result<Prepared, String> {
        let rules = &self.rules;
        let key = args.get(1);
        let rule = key.and_then(|k| rules.rule_for(k));
        let mut out = Args::new(args, seal);
        let mut plan = None;
        match entry.shape {
            Shape::Set | Shape::StringWrite { .. } | Shape::StringRead | Shape::Strlen => {
                let (Some(key), Some(rule)) = (key, rule) else {
                    return Ok(Prepared::PASS);
                };
                match entry.shape {
                    Shape::Set => {
                        self.seal_arg(&mut out, 2, Location::Key(key), rule)?;
                        if args.iter().skip(3).any(|a| eq(a, "GET")) {
                            plan = Some(ReplyPlan::Value { key: key.clone() });
                        }
                    }
                    Shape::StringWrite { value, returns_old } => {
                        self.seal_arg(&mut out, value, Location::Key(key), rule)?;
                        if returns_old {
                            plan = Some(ReplyPlan::Value { key: key.clone() });
                        }
                    }
                    Shape::StringRead => plan = Some(ReplyPlan::Value { key: key.clone() }),
                    _ => {
                        // STRLEN of a stored envelope is not the client's
                        // length: read the value and measure it instead.
                        if args.len() == 2 {
                            out.changed = Some(vec![Bytes::from_static(b"GET"), key.clone()]);
                            plan = Some(ReplyPlan::StrlenOf { key: key.clone() });
                        }
                    }
                }
            }
            Shape::MultiStringWrite => {
                let mut i = 1;
                while i + 1 < args.len() {
                    if let Some(rule) = rules.rule_for(&args[i]) {
                        self.seal_arg(&mut out, i + 1, Location::Key(&args[i]), rule)?;
                    }
                    i += 2;
                }
            }
            Shape::MultiStringRead => {
                let keys = args.get(1..).unwrap_or_default();
                if keys.iter().any(|k| rules.rule_for(k).is_some()) {
                    plan = Some(ReplyPlan::Values {
                        keys: keys.to_vec(),
                    });
                }
            }
            Shape::HashWrite => {
                let (Some(key), Some(rule)) = (key, rule) else {
                    return Ok(Prepared::PASS);
                };
                let mut i = 2;
                while i + 1 < args.len() {
                    let loc = Location::HashField {
                        key,
                        field: &args[i],
                    };
                    self.seal_arg(&mut out, i + 1, loc, rule)?;
                    i += 2;
                }
            }
            Shape::HashGet
            | Shape::HashMGet
            | Shape::HashGetAll
            | Shape::HashVals
            | Shape::HashRandField
            | Shape::HashScan => {
                let (Some(key), Some(_)) = (key, rule) else {
                    return Ok(Prepared::PASS);
                };
                let key = key.clone();
                plan = match entry.shape {
                    Shape::HashGet => args.get(2).map(|field| ReplyPlan::HashField {
                        key,
                        field: field.clone(),
                    }),
                    Shape::HashMGet => Some(ReplyPlan::HashFields {
                        key,
                        fields: args.get(2..).unwrap_or_default().to_vec(),
                    }),
                    Shape::HashGetAll => Some(ReplyPlan::HashPairs { key }),
                    Shape::HashVals => {
                        // Values are bound to their fields, which HVALS
                        // does not return: ask for both, answer values.
                        if args.len() != 2 {
                            return Ok(Prepared::PASS);
                        }
                        out.changed = Some(vec![Bytes::from_static(b"HGETALL"), key.clone()]);
                        Some(ReplyPlan::HashValues { key })
                    }
                    Shape::HashRandField => (args.len() == 4 && eq(&args[3], "WITHVALUES"))
                        .then_some(ReplyPlan::HrandfieldWithValues { key }),
                    _ => (!hscan_novalues(args)).then_some(ReplyPlan::HashScan { key }),
                };
            }
            Shape::ListPush | Shape::ListSet => {
                let (Some(key), Some(rule)) = (key, rule) else {
                    return Ok(Prepared::PASS);
                };
                let first = if entry.shape == Shape::ListSet { 3 } else { 2 };
                for i in first..args.len() {
                    self.seal_arg(&mut out, i, Location::ListElement(key), rule)?;
                }
            }
            Shape::ListCompare { compare, write } => {
                let (Some(key), Some(rule)) = (key, rule) else {
                    return Ok(Prepared::PASS);
                };
                if rule.encrypts() {
                    return Err(self.refuse(entry, key, rule));
                }
                for i in std::iter::once(compare).chain(write) {
                    self.seal_arg(&mut out, i, Location::ListElement(key), rule)?;
                }
            }
            Shape::ListRead => {
                if let (Some(key), Some(_)) = (key, rule) {
                    plan = Some(ReplyPlan::ListElements { key: key.clone() });
                }
            }
            Shape::ListMove => {
                let (Some(src), Some(dst)) = (key, args.get(2)) else {
                    return Ok(Prepared::PASS);
                };
                let dst_rule = rules.rule_for(dst);
                if rule.map(Rule::index) != dst_rule.map(Rule::index) {
                    // An element moved to a key of another rule (or of no
                    // rule) could not be opened there, or would be
                    // returned as stored bytes.
                    let (k, r) = match (rule, dst_rule) {
                        (Some(r), _) => (src, r),
                        (None, Some(r)) => (dst, r),
                        (None, None) => return Ok(Prepared::PASS),
                    };
                    return Err(self.refuse(entry, k, r));
                }
                if rule.is_some() {
                    plan = Some(ReplyPlan::ListElements { key: src.clone() });
                }
            }
            Shape::BlockingPop => {
                let keys = args
                    .get(1..args.len().saturating_sub(1))
                    .unwrap_or_default();
                if keys.iter().any(|k| rules.rule_for(k).is_some()) {
                    plan = Some(ReplyPlan::KeyValuePair);
                }
            }
            Shape::Mpop { numkeys } => {
                let first = numkeys + 1;
                let n = small_count(args.get(numkeys), args.len().saturating_sub(first));
                let keys = n
                    .and_then(|n| args.get(first..first + n))
                    .unwrap_or_default();
                if keys.iter().any(|k| rules.rule_for(k).is_some()) {
                    plan = Some(ReplyPlan::MpopReply);
                }
            }
            Shape::Refuse { first, last } => {
                let end = if last < 0 {
                    args.len().saturating_sub(last.unsigned_abs() - 1)
                } else {
                    (last.unsigned_abs() + 1).min(args.len())
                };
                for k in args.get(first..end).unwrap_or_default() {
                    if let Some(rule) = rules.transforming_rule_for(k) {
                        return Err(self.refuse(entry, k, rule));
                    }
                }
            }
            Shape::Sort => {
                let Some(key) = key else {
                    return Ok(Prepared::PASS);
                };
                let Some(rule) = rule else {
                    return Ok(Prepared::PASS);
                };
                if rule.transforms() && !sort_keeps_values_opaque(args) {
                    return Err(self.refuse(entry, key, rule));
                }
                plan = Some(ReplyPlan::ListElements { key: key.clone() });
            }
            Shape::Script => {
                let n = small_count(args.get(2), args.len().saturating_sub(3));
                let keys = n.and_then(|n| args.get(3..3 + n)).unwrap_or_default();
                for k in keys {
                    if let Some(rule) = rules.transforming_rule_for(k) {
                        if !rule.allow_scripts() {
                            return Err(self.refuse(entry, k, rule));
                        }
                    }
                }
            }
            Shape::RenameLike => {
                let (Some(src), Some(dst)) = (key, args.get(2)) else {
                    return Ok(Prepared::PASS);
                };
                if let Some(r) = rule.filter(|r| r.transforms()) {
                    // Encrypted values are bound to their key name; any
                    // transformed value needs the same rule at its new name.
                    let same_rule = rules.rule_for(dst).map(Rule::index) == Some(r.index());
                    if (r.encrypts() && src != dst) || !same_rule {
                        return Err(self.refuse(entry, src, r));
                    }
                }
            }
        }
        Ok(Prepared {
            rewrite: out.finish(),
            plan,
        })
    }
}

/// True when HSCAN was given NOVALUES (outside a MATCH/COUNT argument).
fn hscan_novalues(args: &[Bytes]) -> bool {
    let mut i = 3;
    while let Some(a) = args.get(i) {
        if eq(a, "MATCH") || eq(a, "COUNT") {
            i += 2;
        } else {
            if eq(a, "NOVALUES") {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// True when SORT never looks inside the stored elements: only `BY nosort`
/// (no GET, no STORE). Sorting compares stored bytes, which are ciphertext
/// or compressed data: numerically it fails, with ALPHA the order is
/// meaningless, so anything else is refused rather than silently wrong.
/// GET looks up other keys' values; STORE copies envelopes bound to this key.
fn sort_keeps_values_opaque(args: &[Bytes]) -> bool {
    let mut nosort = false;
    let mut i = 2;
    while let Some(a) = args.get(i) {
        if eq(a, "GET") || eq(a, "STORE") {
            return false;
        }
        if eq(a, "BY") {
            match args.get(i + 1) {
                Some(pattern) if eq(pattern, "nosort") => nosort = true,
                _ => return false,
            }
            i += 2;
            continue;
        }
        i += if eq(a, "LIMIT") { 3 } else { 1 };
    }
    nosort
}

/// Encodes a request as a RESP multibulk, for sending rewritten arguments.
pub fn encode_request(args: &[Bytes]) -> Bytes {
    let len: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(len);
    let mut num = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(num.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(num.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::transform::envelope::{open, Opened, MAGIC};
    use crate::transform::tests::transforms;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn prep(t: &Transforms, words: &[&str]) -> Result<Prepared, String> {
        t.prepare(&args(words))
    }

    #[test]
    fn table_is_sorted_and_lower_case() {
        for w in TABLE.windows(2) {
            assert!(w[0].name < w[1].name, "{} >= {}", w[0].name, w[1].name);
        }
        for e in TABLE {
            assert_eq!(e.name, e.name.to_ascii_lowercase());
            assert!(e.name.len() <= MAX_NAME);
            assert!(lookup(e.name.to_ascii_uppercase().as_bytes()).is_some());
        }
        assert!(lookup(b"del").is_none());
        assert!(lookup(b"").is_none());
        assert!(lookup(&[b'a'; 40]).is_none());
    }

    #[test]
    fn no_rules_passes_everything() {
        let t = Transforms::disabled();
        assert_eq!(
            prep(&t, &["SET", "session:1", "v"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["APPEND", "session:1", "v"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(t.reply_plan(&args(&["GET", "x"])), None);
    }

    #[test]
    fn unmatched_keys_and_other_commands_pass() {
        let t = transforms();
        assert_eq!(prep(&t, &["SET", "plain", "v"]).unwrap(), Prepared::PASS);
        assert_eq!(prep(&t, &["GET", "plain"]).unwrap(), Prepared::PASS);
        assert_eq!(prep(&t, &["DEL", "session:1"]).unwrap(), Prepared::PASS);
        assert_eq!(
            prep(&t, &["SADD", "session:1", "m"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(prep(&t, &["APPEND", "plain", "v"]).unwrap(), Prepared::PASS);
        assert_eq!(prep(&t, &["MGET", "a", "b"]).unwrap(), Prepared::PASS);
        assert_eq!(prep(&t, &[]).unwrap(), Prepared::PASS);
        assert_eq!(prep(&t, &["SET"]).unwrap(), Prepared::PASS);
    }

    fn rewritten(p: &Prepared) -> &[Bytes] {
        match &p.rewrite {
            Rewrite::Args(a) => a,
            Rewrite::Unchanged => panic!("expected a rewrite"),
        }
    }

    #[test]
    fn set_seals_and_get_plans() {
        let t = transforms();
        let p = prep(&t, &["set", "session:1", "hello", "EX", "10"]).unwrap();
        let a = rewritten(&p);
        assert_eq!(a.len(), 5);
        assert_eq!(&a[0][..], b"set");
        assert!(a[2].starts_with(&MAGIC));
        assert_eq!(&a[3][..], b"EX");
        let o = open(&a[2], Location::Key(b"session:1"), &t.keyring, 1 << 20).unwrap();
        assert_eq!(
            o,
            Opened::Decoded {
                value: Bytes::from_static(b"hello"),
                authenticated: true
            }
        );
        assert_eq!(p.plan, None);
        let p = prep(&t, &["SET", "session:1", "v", "get"]).unwrap();
        assert_eq!(
            p.plan,
            Some(ReplyPlan::Value {
                key: Bytes::from_static(b"session:1")
            })
        );
        for cmd in ["GET", "getdel", "GETEX"] {
            let p = prep(&t, &[cmd, "session:1"]).unwrap();
            assert_eq!(p.rewrite, Rewrite::Unchanged);
            assert!(matches!(p.plan, Some(ReplyPlan::Value { .. })));
        }
        let p = prep(&t, &["SETEX", "session:1", "10", "v"]).unwrap();
        assert!(rewritten(&p)[3].starts_with(&MAGIC));
        assert_eq!(&rewritten(&p)[2][..], b"10");
        let p = prep(&t, &["GETSET", "session:1", "v"]).unwrap();
        assert!(rewritten(&p)[2].starts_with(&MAGIC));
        assert!(p.plan.is_some());
    }

    #[test]
    fn halves_agree_with_prepare() {
        let t = transforms();
        let a = args(&["SET", "session:1", "v", "GET"]);
        let before = t.stats.snapshot().sealed_values;
        assert_eq!(
            t.reply_plan(&a),
            prep(&t, &["SET", "session:1", "v", "GET"]).unwrap().plan
        );
        assert!(matches!(t.rewrite_request(&a).unwrap(), Rewrite::Args(_)));
        assert_eq!(
            t.stats.snapshot().sealed_values,
            before + 2,
            "reply_plan seals nothing"
        );
        assert_eq!(t.reply_plan(&args(&["APPEND", "session:1", "x"])), None);
        assert_eq!(
            t.reply_plan(&args(&["STRLEN", "session:1"])),
            Some(ReplyPlan::StrlenOf {
                key: Bytes::from_static(b"session:1")
            })
        );
    }

    #[test]
    fn compress_only_short_values_are_not_copied() {
        let t = transforms();
        // cache:* compresses values of 16 bytes or more.
        let p = prep(&t, &["SET", "cache:1", "short"]).unwrap();
        assert_eq!(p.rewrite, Rewrite::Unchanged);
        let long = "abcd".repeat(100);
        let p = prep(&t, &["SET", "cache:1", &long]).unwrap();
        assert!(rewritten(&p)[2].len() < 100);
    }

    #[test]
    fn mset_seals_only_matching_keys() {
        let t = transforms();
        let p = prep(&t, &["MSET", "a", "1", "session:1", "2", "b", "3"]).unwrap();
        let a = rewritten(&p);
        assert_eq!(&a[2][..], b"1");
        assert!(a[4].starts_with(&MAGIC));
        assert_eq!(&a[6][..], b"3");
        let p = prep(&t, &["MGET", "a", "session:1"]).unwrap();
        assert_eq!(
            p.plan,
            Some(ReplyPlan::Values {
                keys: args(&["a", "session:1"])
            })
        );
    }

    #[test]
    fn strlen_and_hvals_are_rewritten() {
        let t = transforms();
        let p = prep(&t, &["strlen", "session:1"]).unwrap();
        assert_eq!(rewritten(&p), args(&["GET", "session:1"]).as_slice());
        assert_eq!(
            p.plan,
            Some(ReplyPlan::StrlenOf {
                key: Bytes::from_static(b"session:1")
            })
        );
        let p = prep(&t, &["HVALS", "session:h"]).unwrap();
        assert_eq!(rewritten(&p), args(&["HGETALL", "session:h"]).as_slice());
        assert_eq!(
            p.plan,
            Some(ReplyPlan::HashValues {
                key: Bytes::from_static(b"session:h")
            })
        );
        assert_eq!(prep(&t, &["STRLEN", "plain"]).unwrap(), Prepared::PASS);
    }

    #[test]
    fn hashes() {
        let t = transforms();
        let p = prep(&t, &["HSET", "session:h", "f1", "v1", "f2", "v2"]).unwrap();
        let a = rewritten(&p);
        assert_eq!(&a[2][..], b"f1");
        let loc = Location::HashField {
            key: b"session:h",
            field: b"f1",
        };
        assert_eq!(open(&a[3], loc, &t.keyring, 1 << 20).unwrap().value(), "v1");
        let loc = Location::HashField {
            key: b"session:h",
            field: b"f2",
        };
        assert_eq!(open(&a[5], loc, &t.keyring, 1 << 20).unwrap().value(), "v2");
        let p = prep(&t, &["HSETNX", "session:h", "f", "v"]).unwrap();
        assert!(rewritten(&p)[3].starts_with(&MAGIC));
        assert!(matches!(
            prep(&t, &["HGET", "session:h", "f"]).unwrap().plan,
            Some(ReplyPlan::HashField { .. })
        ));
        assert!(
            matches!(prep(&t, &["HMGET", "session:h", "f", "g"]).unwrap().plan, Some(ReplyPlan::HashFields { ref fields, .. }) if fields.len() == 2)
        );
        assert!(matches!(
            prep(&t, &["HGETALL", "session:h"]).unwrap().plan,
            Some(ReplyPlan::HashPairs { .. })
        ));
        assert!(prep(&t, &["HRANDFIELD", "session:h", "2"])
            .unwrap()
            .plan
            .is_none());
        assert!(prep(&t, &["HRANDFIELD", "session:h", "2", "withvalues"])
            .unwrap()
            .plan
            .is_some());
        assert!(prep(&t, &["HSCAN", "session:h", "0"])
            .unwrap()
            .plan
            .is_some());
        assert!(prep(&t, &["HSCAN", "session:h", "0", "MATCH", "novalues"])
            .unwrap()
            .plan
            .is_some());
        assert!(prep(&t, &["HSCAN", "session:h", "0", "NOVALUES"])
            .unwrap()
            .plan
            .is_none());
    }

    #[test]
    fn lists() {
        let t = transforms();
        let p = prep(&t, &["RPUSH", "session:l", "a", "b"]).unwrap();
        let a = rewritten(&p);
        assert!(a[2].starts_with(&MAGIC) && a[3].starts_with(&MAGIC));
        let p = prep(&t, &["LSET", "session:l", "0", "x"]).unwrap();
        assert_eq!(&rewritten(&p)[2][..], b"0");
        assert!(rewritten(&p)[3].starts_with(&MAGIC));
        for cmd in [
            &["LPOP", "session:l"][..],
            &["LRANGE", "session:l", "0", "-1"],
            &["LINDEX", "session:l", "0"],
        ] {
            assert!(matches!(
                prep(&t, cmd).unwrap().plan,
                Some(ReplyPlan::ListElements { .. })
            ));
        }
        let p = prep(&t, &["LMOVE", "session:a", "session:b", "LEFT", "RIGHT"]).unwrap();
        assert_eq!(
            p.plan,
            Some(ReplyPlan::ListElements {
                key: Bytes::from_static(b"session:a")
            })
        );
        let e = prep(&t, &["LMOVE", "session:a", "plain", "LEFT", "RIGHT"]).unwrap_err();
        assert_eq!(
            e,
            "ERR LMOVE not supported on transformed key 'session:a' (rule 'session:*')"
        );
        let e = prep(&t, &["RPOPLPUSH", "plain", "session:a"]).unwrap_err();
        assert!(e.contains("'session:a'"), "{e}");
        assert_eq!(
            prep(&t, &["RPOPLPUSH", "p1", "p2"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["BLPOP", "x", "session:l", "0"]).unwrap().plan,
            Some(ReplyPlan::KeyValuePair)
        );
        assert_eq!(prep(&t, &["BLPOP", "x", "0"]).unwrap().plan, None);
        assert_eq!(
            prep(&t, &["LMPOP", "2", "x", "session:l", "LEFT"])
                .unwrap()
                .plan,
            Some(ReplyPlan::MpopReply)
        );
        assert_eq!(
            prep(&t, &["BLMPOP", "0", "1", "session:l", "LEFT"])
                .unwrap()
                .plan,
            Some(ReplyPlan::MpopReply)
        );
        assert_eq!(prep(&t, &["LMPOP", "1", "x", "LEFT"]).unwrap().plan, None);
        assert_eq!(
            prep(&t, &["LMPOP", "99999999999", "session:l"])
                .unwrap()
                .plan,
            None
        );
    }

    #[test]
    fn comparisons_refused_under_encryption_sealed_under_compression() {
        let t = transforms();
        let e = prep(&t, &["LINSERT", "session:l", "BEFORE", "a", "b"]).unwrap_err();
        assert_eq!(
            e,
            "ERR LINSERT not supported on transformed key 'session:l' (rule 'session:*')"
        );
        assert!(prep(&t, &["LPOS", "session:l", "a"]).is_err());
        assert!(prep(&t, &["LREM", "session:l", "0", "a"]).is_err());
        let long = "x".repeat(100);
        let p = prep(&t, &["LREM", "cache:l", "0", &long]).unwrap();
        let stored = prep(&t, &["RPUSH", "cache:l", &long]).unwrap();
        assert_eq!(
            rewritten(&p)[3],
            rewritten(&stored)[2],
            "deterministic, so it matches"
        );
    }

    #[test]
    fn refusals_name_command_key_and_rule() {
        let t = transforms();
        for (cmd, key_at) in [
            (&["APPEND", "session:1", "x"][..], 1),
            (&["incr", "session:1"], 1),
            (&["GETRANGE", "session:1", "0", "1"], 1),
            (&["SETRANGE", "session:1", "0", "x"], 1),
            (&["BITCOUNT", "session:1"], 1),
            (&["BITOP", "AND", "dest", "a", "session:1"], 4),
            (&["LCS", "a", "session:1"], 2),
            (&["HINCRBY", "session:h", "f", "1"], 1),
            (&["HSTRLEN", "session:h", "f"], 1),
            (&["SUBSTR", "session:1", "0", "1"], 1),
            (&["SORT", "session:l", "BY", "w_*"], 1),
            (&["SORT_RO", "session:l", "GET", "#"], 1),
            (&["SORT", "session:l", "LIMIT", "0", "1", "STORE", "d"], 1),
            (&["EVAL", "return 1", "2", "a", "session:1"], 4),
            (&["FCALL", "f", "1", "session:1"], 3),
            (&["RENAME", "session:1", "other"], 1),
            (&["COPY", "cache:1", "plain"], 1),
        ] {
            let e = prep(&t, cmd).unwrap_err();
            let rule = if cmd[key_at].starts_with("cache") {
                "cache:*"
            } else {
                "session:*"
            };
            assert_eq!(
                e,
                format!(
                    "ERR {} not supported on transformed key '{}' (rule '{rule}')",
                    cmd[0].to_ascii_uppercase(),
                    cmd[key_at]
                )
            );
        }
        assert!(t.stats.snapshot().refused_commands >= 17);
        // Sorting compares stored (sealed) bytes: refused, even with ALPHA.
        assert!(prep(&t, &["SORT", "session:l", "LIMIT", "0", "10", "ALPHA"]).is_err());
        assert!(prep(&t, &["SORT_RO", "session:l"]).is_err());
        // Allowed forms.
        assert!(prep(
            &t,
            &["SORT", "session:l", "BY", "nosort", "LIMIT", "0", "10"]
        )
        .unwrap()
        .plan
        .is_some());
        assert_eq!(
            prep(&t, &["EVAL", "return 1", "1", "script:1"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["EVAL", "return 1", "0", "session:1"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["RENAME", "cache:1", "cache:2"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["COPY", "session:1", "session:1", "DB", "1"]).unwrap(),
            Prepared::PASS
        );
        assert_eq!(
            prep(&t, &["RENAME", "plain", "session:1"]).unwrap(),
            Prepared::PASS
        );
        // An exemption rule refuses nothing.
        assert_eq!(
            prep(&t, &["APPEND", "session:public:1", "x"]).unwrap(),
            Prepared::PASS
        );
    }

    #[test]
    fn encode() {
        assert_eq!(
            &encode_request(&args(&["GET", "k"]))[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
