//! The policy step between command lookup and routing (design.md's data
//! path: auth, deny, transforms, tier, coordination). One call from the
//! session for every command; each step a command needs runs here, in
//! order. Today: authentication (see `auth`), strata's ACL and the deny
//! list (`auth::Guard`), and, after value transforms, the Postgres tier
//! step ([`tier`], see `tier/`).
//!
//! For a client that may run commands and has nothing checked (no strata
//! users, the deny list off), this costs one branch.

use bytes::Bytes;

use crate::auth::guard::Verdict;
use crate::auth::ClientAuth;
use crate::command::CommandSpec;
use crate::protocol::{ArgList, Request};

/// What the policy says about one command.
#[derive(Debug)]
pub enum Step {
    /// Route it.
    Proceed,
    /// Do not run it: answer this instead.
    Answer(Bytes),
    /// An ACL command in users mode: strata answers it from its own users.
    Acl,
}

/// Runs the policy steps for one command.
#[inline]
pub fn check(auth: &mut ClientAuth, req: &Request, spec: Option<&'static CommandSpec>) -> Step {
    if auth.is_plain() {
        return Step::Proceed;
    }
    if !auth.is_authenticated() {
        return match crate::auth::gate(spec, req.args()) {
            Some(answer) => Step::Answer(answer),
            None => Step::Proceed,
        };
    }
    // The deny list alone (the default): most commands are let through
    // by its filter without the full check.
    if let (Some(spec), Some(guard)) = (spec, auth.guard()) {
        if guard.surely_passes(spec) {
            return Step::Proceed;
        }
    }
    match auth.guard_mut().map(|g| g.check(spec, req)) {
        Some(Verdict::Refuse(answer)) => Step::Answer(answer),
        Some(Verdict::Acl) => Step::Acl,
        Some(Verdict::Pass) | None => Step::Proceed,
    }
}

/// The coordination step: one of strata's own coordination commands
/// (`coord/registry.rs`: names Redis's table does not know, so a known
/// command costs nothing here beyond the COMMAND check), or a COMMAND
/// introspection call whose reply strata completes with them. Only called
/// when coordination is on.
#[inline]
pub fn coord(req: &Request, spec: Option<&'static CommandSpec>) -> Option<crate::coord::Plan> {
    match spec {
        None => crate::coord::registry::lookup(req.arg(0)?).map(crate::coord::Plan::Run),
        Some(spec) => crate::coord::command_info::plan(spec, req).map(crate::coord::Plan::Command),
    }
}

/// The tier step's question on the session's fast path (`try_plain`):
/// does the command need nothing from the tiers? Inlined, so that a key
/// no rule can match costs the rules' first-byte bitmap alone — no call,
/// no [`crate::tier::Plan`] built and dropped (20 rules cost plain
/// commands +9.4% instructions per request that way; docs/PERFORMANCE.md).
#[inline(always)]
pub fn tier_passes(tiers: &crate::tier::Tiers, req: &Request, spec: &'static CommandSpec) -> bool {
    tiers.surely_proceeds(req, spec)
        || matches!(
            tiers.plan(req, Some(spec), crate::tier::plan::Context::default()),
            crate::tier::Plan::Proceed
        )
}

/// The tier step: what a command on a key that a `[[tier]]` rule names
/// needs (nothing, a re-warm, to be run by the tier, or a refusal). Runs
/// after value transforms, so Postgres stores what Redis stores. Only
/// called when rules exist.
#[inline]
pub fn tier(
    tiers: &crate::tier::Tiers,
    req: &Request,
    spec: Option<&'static CommandSpec>,
    cx: crate::tier::plan::Context,
) -> crate::tier::Plan {
    if spec.is_some_and(|s| tiers.surely_proceeds(req, s)) {
        return crate::tier::Plan::Proceed;
    }
    tiers.plan(req, spec, cx)
}
