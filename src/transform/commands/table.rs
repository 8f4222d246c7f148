//! The table of value-carrying commands: each command strata treats
//! specially on transformed keys, with the [`Shape`] that says where its keys
//! and values are, and the allocation-free lookup by name.

/// Where the keys, values and reply values of one command are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
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
pub(super) struct Entry {
    /// Lower-case name.
    pub(super) name: &'static str,
    pub(super) shape: Shape,
}

const fn e(name: &'static str, shape: Shape) -> Entry {
    Entry { name, shape }
}

const REFUSE_KEY1: Shape = Shape::Refuse { first: 1, last: 1 };

/// Every command strata treats specially on transformed keys, sorted by name
/// (a test checks the order; lookup is a binary search).
pub(super) static TABLE: &[Entry] = &[
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
pub(super) const MAX_NAME: usize = 16;

/// The table row for a command name in any case, without allocating.
pub(super) fn lookup(name: &[u8]) -> Option<&'static Entry> {
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
