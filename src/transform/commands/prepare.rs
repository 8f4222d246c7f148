//! [`Transforms::prepare`] and its halves: each table shape turned into
//! sealed arguments, a reply plan, or a refusal that names the command, the
//! key and the rule.

use bytes::Bytes;

use super::args::{eq, hscan_novalues, small_count, sort_keeps_values_opaque, Args};
use super::outcome::{Prepared, ReplyPlan, Rewrite};
use super::table::{lookup, Entry, Shape};
use crate::transform::envelope::{seal, show, Location};
use crate::transform::rules::Rule;
use crate::transform::Transforms;

impl Transforms {
    /// True when rules exist and the command `name` (as the client sent
    /// it) is one transforms look at; only then does a request need
    /// [`Transforms::prepare`] and its arguments split out of the frame.
    pub fn concerns(&self, name: &[u8]) -> bool {
        !self.rules.is_empty() && lookup(name).is_some()
    }

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
