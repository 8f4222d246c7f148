//! The command table: what strata knows about every Redis command, as data.
//!
//! Routing, splitting and the session's state machine read this table; they do
//! not special-case command names. The table itself lives in [`table`] (generated
//! from a live Redis 7.0 `COMMAND INFO` and checked against one by
//! `tests/command_table.rs`); this module holds its types and the lookup.

mod keys;
mod lookup;
pub mod own;
pub mod slot;
mod table;
mod unknown;

pub use keys::{key_indexes, KeyIndexes};
pub use lookup::{lookup, lookup_name, LookupCache};
pub use table::COMMANDS;
pub use unknown::unknown_command_error;

/// Command flags, a small bitset. Only the flags strata acts on are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Reads data (`readonly` in Redis).
    pub const READ: Flags = Flags(1 << 0);
    /// Writes data (`write` in Redis).
    pub const WRITE: Flags = Flags(1 << 1);
    /// Administrative (`admin` in Redis).
    pub const ADMIN: Flags = Flags(1 << 2);
    /// May block the connection (`blocking` in Redis).
    pub const BLOCKING: Flags = Flags(1 << 3);
    /// Pub/sub (`pubsub` in Redis).
    pub const PUBSUB: Flags = Flags(1 << 4);
    /// Changes or reads server-side state of the *connection* (strata's own
    /// flag): such a command cannot run on a shared, multiplexed connection.
    pub const CONNECTION_STATE: Flags = Flags(1 << 5);
    /// Redis `fast` flag.
    pub const FAST: Flags = Flags(1 << 6);
    /// Redis `noscript` flag.
    pub const NOSCRIPT: Flags = Flags(1 << 7);
    /// Redis `loading` flag (allowed while the dataset loads).
    pub const LOADING: Flags = Flags(1 << 8);
    /// Redis `stale` flag (allowed on a replica with a stale dataset).
    pub const STALE: Flags = Flags(1 << 9);
    /// Redis `denyoom` flag.
    pub const DENYOOM: Flags = Flags(1 << 10);
    /// Redis `movablekeys` flag: key positions need the key specs, not first/last/step.
    pub const MOVABLE_KEYS: Flags = Flags(1 << 11);
    /// Redis `no_auth` flag (allowed before AUTH).
    pub const NO_AUTH: Flags = Flags(1 << 12);
    /// Redis `no_multi` flag (refused inside MULTI).
    pub const NO_MULTI: Flags = Flags(1 << 13);
    /// Runs a Lua script or a function (strata's own flag, derived from
    /// Redis's `@scripting` category on commands that take keys: EVAL,
    /// EVALSHA, FCALL and their `_RO` forms). Such a command can keep
    /// Redis busy for as long as it runs, so it never goes on a shared
    /// connection (see `server/session/scripts.rs`).
    pub const RUNS_SCRIPT: Flags = Flags(1 << 14);

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two flag sets (usable in `const` tables).
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [(Flags, &str); 15] = [
            (Flags::READ, "read"),
            (Flags::WRITE, "write"),
            (Flags::ADMIN, "admin"),
            (Flags::BLOCKING, "blocking"),
            (Flags::PUBSUB, "pubsub"),
            (Flags::CONNECTION_STATE, "connection-state"),
            (Flags::FAST, "fast"),
            (Flags::NOSCRIPT, "noscript"),
            (Flags::LOADING, "loading"),
            (Flags::STALE, "stale"),
            (Flags::DENYOOM, "denyoom"),
            (Flags::MOVABLE_KEYS, "movablekeys"),
            (Flags::NO_AUTH, "no_auth"),
            (Flags::NO_MULTI, "no_multi"),
            (Flags::RUNS_SCRIPT, "runs-script"),
        ];
        let mut list = f.debug_set();
        for (flag, name) in NAMES {
            if self.contains(flag) {
                list.entry(&name);
            }
        }
        list.finish()
    }
}

/// Where a key search begins (Redis 7 key-spec `begin_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    /// At a fixed argument index (0 is the command name).
    Index(usize),
    /// After the first (or, with a negative `start_from`, last) occurrence of a
    /// keyword, searching from `start_from`.
    Keyword {
        /// Keyword, upper case.
        keyword: &'static str,
        /// Where to start looking; negative counts from the end.
        start_from: i32,
    },
    /// Keys cannot be found from the arguments alone.
    Unknown,
}

/// How keys are found once the search began (Redis 7 key-spec `find_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// The first/last/step form: keys from the begin index to `last_key`
    /// (relative to it; -1 means the last argument, -2 the one before…),
    /// every `step` arguments. `limit` > 1 means "stop at 1/limit of the
    /// remaining arguments" as Redis defines it.
    Range {
        /// Last key, relative to the begin index (negative from the end).
        last_key: i32,
        /// Distance between keys.
        step: usize,
        /// Redis `limit`; 0 or 1 means no limit.
        limit: usize,
    },
    /// The numkeys form: the argument at `keynum_index` (relative to the
    /// begin index) holds the key count, the first key is at `first_key`
    /// (relative to the begin index), every `step` arguments.
    KeyNum {
        /// Where the count is, relative to the begin index.
        keynum_index: usize,
        /// Where the first key is, relative to the begin index.
        first_key: usize,
        /// Distance between keys.
        step: usize,
    },
    /// Keys cannot be found from the arguments alone.
    Unknown,
}

/// One Redis 7 key specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Where the search begins.
    pub begin: BeginSearch,
    /// How keys are found from there.
    pub find: FindKeys,
}

/// How a command is routed to backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// strata answers it itself (PING, ECHO, HELLO, CLIENT SETNAME, …).
    Local,
    /// To the node that owns the (first) key; all keys must share a slot in cluster mode.
    Key,
    /// Keyless and stateless: any node will do.
    Any,
    /// Split per slot by key, sent to each owner, replies merged (MGET, DEL, …).
    SplitBySlot,
    /// Sent to every primary, replies merged.
    AllPrimaries,
    /// Sent to every node (primaries and replicas), replies merged
    /// (CONFIG SET: a replica promoted later behaves as its primary did).
    AllNodes,
    /// Keyless pub/sub (PUBLISH, PUBSUB CHANNELS/NUMSUB/NUMPAT): in cluster
    /// mode, to strata's one pub/sub node, where every SUBSCRIBE and
    /// PSUBSCRIBE of its clients lives too, so counts are those of one
    /// Redis. Like `Any` elsewhere.
    PubSub,
    /// Needs a dedicated backend connection (MULTI, WATCH, blocking, pub/sub, …).
    Dedicated,
    /// Refused by strata (would corrupt a shared connection, or cannot be proxied).
    Unsupported,
}

/// How the replies of a command sent to several nodes are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// There is only one reply; pass it through.
    One,
    /// Integers summed (DEL, EXISTS, DBSIZE, …).
    Sum,
    /// Arrays concatenated (KEYS, …).
    Concat,
    /// Every reply must be +OK; the first error wins.
    AllOk,
    /// Values put back in the order of the request's keys (MGET).
    KeyOrder,
    /// Any one reply (RANDOMKEY, PING).
    First,
    /// The SCAN cursor protocol.
    Scan,
    /// Arrays of 0/1 combined element-wise with AND: 1 only where every
    /// node answered 1 (SCRIPT EXISTS: a script is usable through strata
    /// only if every primary has it).
    AllTrue,
    /// `[name, count, name, count, …]` (or a RESP3 map) from every node,
    /// counts added name by name (PUBSUB SHARDNUMSUB: each node counts
    /// the subscribers of the shard channels it serves).
    SumPairs,
    /// Success if any node succeeded, else the most telling error: OK when
    /// any primary killed a script, `NOTBUSY` only when none was busy
    /// (SCRIPT KILL, FUNCTION KILL; Redis's `one_succeeded` policy).
    OneSucceeded,
}

/// Everything strata knows about one command (or one subcommand).
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name; a subcommand is written `container|sub` as in `COMMAND INFO`.
    pub name: &'static str,
    /// Redis arity: positive is exact, negative is a minimum (`-N` = at least N).
    pub arity: i32,
    /// Flags strata acts on.
    pub flags: Flags,
    /// Legacy first key index (0 = no keys).
    pub first_key: i32,
    /// Legacy last key index (-1 = last argument).
    pub last_key: i32,
    /// Legacy key step.
    pub step: i32,
    /// Redis 7 key specs, in Redis's order.
    pub key_specs: &'static [KeySpec],
    /// How to route.
    pub route: Route,
    /// How to merge replies from several nodes.
    pub merge: Merge,
    /// Subcommands, for container commands (CLIENT, CONFIG, …); empty otherwise.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// True when `argc` (including the command name) satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// True when the command has every flag in `flags`.
    pub fn has(&self, flags: Flags) -> bool {
        self.flags.contains(flags)
    }
}
