//! What a command needs from the tiers, decided from its name and keys.
//!
//! A command none of whose keys matches a rule is not the tiers' business
//! ([`Plan::Proceed`]). On a mirrored key:
//!
//! * a read (the table's READ flag, not WRITE) runs as usual once its keys
//!   are resident: [`Plan::Warm`] re-warms the ones Redis lacks;
//! * the writes the mirror implements are run by the tier ([`Plan::Write`]):
//!   SET (every option), SETEX, PSETEX, MSET, DEL, UNLINK, GETDEL, EXPIRE,
//!   PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST;
//! * any other write is refused ([`Plan::Answer`]) rather than let Redis
//!   and Postgres diverge silently;
//! * inside MULTI, on a database selected with SELECT, or in a script run,
//!   writes to mirrored keys are refused and reads run without re-warm.

use bytes::Bytes;

use crate::command::{key_indexes, CommandSpec, Flags, Route};
use crate::protocol::reply;
use crate::protocol::{ArgList, Request};

use super::args::{self, SetArgs};
use super::rules::Mode;
use super::Tiers;

/// A mirrored write, its arguments read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// SET, SETEX, PSETEX.
    Set(SetArgs),
    /// MSET: `(key, value)` in order; `mirrored[i]` for pair i.
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
        mirrored: Vec<bool>,
    },
    /// DEL or UNLINK (`unlink`), every key; `mirrored[i]` for key i.
    Del {
        keys: Vec<Bytes>,
        mirrored: Vec<bool>,
        unlink: bool,
    },
    /// GETDEL.
    GetDel(Bytes),
    /// EXPIRE and its forms: the absolute time (ms) and conditions.
    Expire {
        key: Bytes,
        when_ms: i64,
        flags: args::ExpireFlags,
    },
    /// PERSIST.
    Persist(Bytes),
    /// FLUSHALL or FLUSHDB with write-behind rules, as sent (keeps the
    /// outboxes: `tier/behind/flush.rs`).
    Flush(Vec<Bytes>),
    /// RENAME, RENAMENX, COPY within database 0 (`tier/rename.rs`).
    Rename(super::rename::Rename),
    /// A command on spill keys (`tier/spill/touch.rs`).
    Spill(super::spill::Touch),
}

/// What the tier does with a command.
#[derive(Debug)]
pub enum Plan {
    /// Not the tiers' business: route it.
    Proceed,
    /// Answer this instead (a refusal, or Redis's error for bad arguments).
    Answer(Bytes),
    /// Re-warm these keys from Postgres if Redis lacks them, then route it.
    Warm(Vec<Bytes>),
    /// The tier runs it and answers.
    Write(Write),
}

/// Where the client stands, for what the tier may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// On a dedicated connection (MULTI, WATCH, SELECT n, blocking, …) or
    /// in a script run: the tier's own commands cannot join it.
    pub dedicated: bool,
}

impl Tiers {
    /// Write-behind's state when `write`'s mirrored keys are write-behind
    /// ones (`plan` refused commands that mix both modes).
    pub(super) fn behind_for(&self, write: &Write) -> Option<&super::behind::Behind> {
        let behind = self.behind.as_deref()?;
        let rules = self.rules.load();
        let key = match write {
            Write::Set(s) => &s.key,
            Write::GetDel(k) | Write::Persist(k) | Write::Expire { key: k, .. } => k,
            Write::MSet { pairs, mirrored } => &pairs.iter().zip(mirrored).find(|(_, m)| **m)?.0 .0,
            Write::Del { keys, mirrored, .. } => keys.iter().zip(mirrored).find(|(_, m)| **m)?.0,
            Write::Rename(r) => {
                if r.src_mirrored {
                    &r.src
                } else {
                    &r.dst
                }
            }
            Write::Spill(_) => return None,
            Write::Flush(_) => return Some(behind),
        };
        (rules.find(key)?.mode() == Mode::MirrorBehind).then_some(behind)
    }

    /// True when a mirror rule (not a spill rule) names `key`.
    fn mirrored(&self, key: &[u8]) -> bool {
        self.rules
            .load()
            .find(key)
            .is_some_and(|r| r.mode() != Mode::Spill)
    }

    /// The plan for a command whose keys only spill rules name. EXISTS,
    /// TTL and the like are answered by the stub as by the key. Commands
    /// the tier can run on the client's connection (one node, not
    /// blocking, no script, not inside MULTI) are run by it under the keys'
    /// locks; the others restore the stubs first and are routed as usual.
    fn spill_plan(
        &self,
        args: &[Bytes],
        spec: &'static CommandSpec,
        indexes: &[usize],
        keys: Vec<Bytes>,
        cx: Context,
    ) -> Plan {
        use super::spill::{Touch, TouchKind};
        if matches!(
            spec.name,
            "exists" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "touch"
        ) || !spec.arity_ok(args.len())
            || keys.is_empty()
        {
            return Plan::Proceed;
        }
        let cluster = self.cluster.load(std::sync::atomic::Ordering::Relaxed);
        let one_slot = !cluster
            || indexes
                .iter()
                .filter_map(|&i| args.get(i))
                .map(|k| crate::command::slot::hash_slot(k))
                .collect::<Vec<_>>()
                .windows(2)
                .all(|w| w[0] == w[1]);
        let inline = !cx.dedicated
            && one_slot
            && matches!(spec.route, Route::Key | Route::SplitBySlot)
            && !spec.has(Flags::RUNS_SCRIPT)
            && !spec.has(Flags::BLOCKING);
        let Some(route) = indexes.first().and_then(|&i| args.get(i)).cloned() else {
            return Plan::Proceed;
        };
        if !inline {
            return Plan::Warm(keys);
        }
        let kind = match spec.name {
            "type" => TouchKind::Type,
            "del" | "unlink" | "setex" | "psetex" | "mset" => TouchKind::Replace,
            // SET replaces the key whole unless its outcome depends on it.
            "set"
                if !args.get(3..).unwrap_or_default().iter().any(|a| {
                    [&b"nx"[..], b"xx", b"get", b"keepttl"]
                        .iter()
                        .any(|w| a.eq_ignore_ascii_case(w))
                }) =>
            {
                TouchKind::Replace
            }
            _ => TouchKind::Run,
        };
        Plan::Write(Write::Spill(Touch {
            kind,
            keys,
            route,
            args: args.to_vec(),
        }))
    }

    /// True when the command surely needs nothing from the tiers: its one
    /// key (at a fixed position: GET, SET, INCR, …) starts with a byte no
    /// rule's literal prefix starts with. The data path asks this first,
    /// inlined, so that a key no rule names costs a few dozen instructions
    /// (no call, no [`Plan`] built and dropped); anything else goes to
    /// [`Tiers::plan`].
    #[inline(always)]
    pub fn surely_proceeds(&self, req: &Request, spec: &CommandSpec) -> bool {
        spec.first_key > 0
            && spec.last_key == spec.first_key
            && spec.key_specs.len() == 1
            && req
                .key_arg(spec.first_key as usize)
                .is_none_or(|k| !self.gate.may_match(k))
    }

    /// The plan for one command (after value transforms: the values here
    /// are what Redis stores, and so what Postgres stores).
    pub fn plan(&self, req: &Request, spec: Option<&'static CommandSpec>, cx: Context) -> Plan {
        let Some(spec) = spec else {
            return Plan::Proceed;
        };
        if spec.key_specs.is_empty() {
            if spec.name == "swapdb" {
                // Database 0's keys would be swapped away, their rows kept.
                super::TierStats::bump(&self.stats.refused);
                return Plan::Answer(reply::error(
                    "ERR tier: 'swapdb' is not supported with [[tier]] rules (it would swap \
                     database 0's mirrored or spilled keys out without Postgres knowing; see docs/TIERS.md)",
                ));
            }
            if self.behind.is_some() && matches!(spec.name, "flushall" | "flushdb") {
                // The outboxes live in the keyspace: the flush keeps them
                // (`behind/flush.rs`).
                if cx.dedicated {
                    super::TierStats::bump(&self.stats.refused);
                    return Plan::Answer(reply::error(&format!(
                        "ERR tier: '{}' is not supported inside MULTI, after SELECT or in a script \
                         with write-behind rules (it would flush the write-behind outbox; see docs/TIERS.md)",
                        spec.name
                    )));
                }
                if spec.arity_ok(req.argc()) {
                    return Plan::Write(Write::Flush(req.args().to_vec()));
                }
            }
            return Plan::Proceed;
        }
        // One load of the rules for the whole plan (a reload swaps them).
        let rules_guard = self.rules.load();
        let rules: &super::TierRules = &rules_guard;
        // Most commands name one key at a fixed position (GET, SET, …):
        // one look at it decides, without the key-spec walk.
        if spec.first_key > 0 && spec.last_key == spec.first_key && spec.key_specs.len() == 1 {
            let key = req.arg(spec.first_key as usize);
            if key.is_none_or(|k| rules.find(k).is_none()) {
                return Plan::Proceed;
            }
        }
        let indexes = key_indexes(spec, req);
        let mut rule = None;
        for i in &indexes {
            if let Some(r) = req.arg(i).and_then(|k| rules.find(k)) {
                rule = Some(r);
                break;
            }
        }
        let Some(mut rule) = rule else {
            return Plan::Proceed;
        };
        let args = req.args();
        // Spill keys: run by the spill step unless a mirror rule also
        // names a key of the command (then the mirror's plan runs, after
        // the spilled keys are restored: `Tiers::write`, `warm`).
        if self.spill.is_some() {
            let mut spilled = Vec::new();
            let mut mirror = None;
            for &i in indexes.as_slice() {
                let Some(k) = args.get(i) else { continue };
                match rules.find(k) {
                    Some(r) if r.mode() == Mode::Spill => spilled.push(k.clone()),
                    Some(r) => mirror = mirror.or(Some(r)),
                    None => {}
                }
            }
            match mirror {
                None => return self.spill_plan(args, spec, indexes.as_slice(), spilled, cx),
                Some(r) => rule = r,
            }
        }
        let is_write = spec.has(Flags::WRITE) || spec.has(Flags::RUNS_SCRIPT);
        if !is_write {
            // Write-behind: Redis holds the newest value; a re-warm from
            // Postgres could resurrect a change still in the outbox
            // (tier/behind/mod.rs).
            let warm_mode = |m: Mode| {
                m == Mode::Spill
                    || (m == Mode::MirrorThrough
                        && !cx.dedicated
                        && rule.mode() != Mode::MirrorBehind)
            };
            let keys: Vec<Bytes> = indexes
                .iter()
                .filter_map(|i| args.get(i))
                .filter(|k| rules.find(k).is_some_and(|r| warm_mode(r.mode())))
                .cloned()
                .collect();
            if keys.is_empty() {
                return Plan::Proceed;
            }
            return Plan::Warm(keys);
        }
        let refuse = |why: &str| {
            super::TierStats::bump(&self.stats.refused);
            Plan::Answer(reply::error(&format!(
                "ERR tier: {why} (a key matches tier rule '{}'; see docs/TIERS.md)",
                rule.pattern()
            )))
        };
        if cx.dedicated {
            return refuse(&format!(
                "'{}' on a mirrored key is not supported inside MULTI, after SELECT or in a script yet",
                spec.name
            ));
        }
        // Wrong arity: Redis refuses it without running it.
        if !spec.arity_ok(args.len()) {
            return Plan::Proceed;
        }
        let now = super::now_ms();
        let answer = |r: Result<Write, String>| match r {
            Ok(w) => Plan::Write(w),
            Err(text) => Plan::Answer(reply::error(&text)),
        };
        if self.behind.is_some()
            && !matches!(
                spec.name,
                "set"
                    | "setex"
                    | "psetex"
                    | "getdel"
                    | "expire"
                    | "pexpire"
                    | "expireat"
                    | "pexpireat"
                    | "persist"
            )
        {
            // One command's mirrored keys must share one write mode.
            let mut modes = indexes
                .iter()
                .filter_map(|i| args.get(i).and_then(|k| rules.find(k)))
                .map(|r| r.mode())
                .filter(|m| *m != Mode::Spill);
            let first = modes.next();
            if modes.any(|m| Some(m) != first) {
                return refuse(&format!(
                    "'{}' mixing write-through and write-behind keys is not supported",
                    spec.name
                ));
            }
        }
        match spec.name {
            "set" => answer(args::parse_set(args, now).map(Write::Set)),
            "setex" => answer(args::parse_setex(args, false, now).map(Write::Set)),
            "psetex" => answer(args::parse_setex(args, true, now).map(Write::Set)),
            "mset" => {
                if args.len() % 2 == 0 {
                    // Redis's own "wrong number of arguments" reply.
                    return Plan::Proceed;
                }
                let pairs: Vec<(Bytes, Bytes)> = args[1..]
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                let mirrored = pairs.iter().map(|(k, _)| self.mirrored(k)).collect();
                Plan::Write(Write::MSet { pairs, mirrored })
            }
            "del" | "unlink" => {
                let keys: Vec<Bytes> = args[1..].to_vec();
                let mirrored = keys.iter().map(|k| self.mirrored(k)).collect();
                Plan::Write(Write::Del {
                    keys,
                    mirrored,
                    unlink: spec.name == "unlink",
                })
            }
            "getdel" => Plan::Write(Write::GetDel(args[1].clone())),
            "expire" | "pexpire" | "expireat" | "pexpireat" => answer(
                args::parse_expire(args, spec.name, now).map(|(key, when_ms, flags)| {
                    Write::Expire {
                        key,
                        when_ms,
                        flags,
                    }
                }),
            ),
            "persist" => Plan::Write(Write::Persist(args[1].clone())),
            "rename" | "renamenx" | "copy" => self.rename_plan(args, spec.name),
            "move" => refuse(
                "'move' on a mirrored key is not supported (strata mirrors database 0 and cannot \
                 move a key out of it and delete its row as one change; use COPY … DB n, then DEL)",
            ),
            name => refuse(&format!("'{name}' is not supported on mirrored keys yet")),
        }
    }
}
