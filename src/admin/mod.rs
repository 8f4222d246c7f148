//! `PROXY …` commands: strata's own administration, answered by strata and
//! never forwarded. The command table does not know `PROXY` (it is not a
//! Redis command), so the session intercepts it by name before routing.
//!
//! * [`rewrap`]: `PROXY REWRAP <pattern> [COUNT n] [RESUME cursor]` moves
//!   stored values to the transform rules' current keys.
//! * [`tier`]: `PROXY TIER STATS | FLUSH | WARM | SPILL | VERIFY` (Postgres tiers).
//! * [`checkpoint`]: `PROXY CHECKPOINT CREATE | LIST | RESTORE | DROP`.
//! * [`nodes`]: the primaries' dedicated connections those two use.
//!
//! The session parses the command and hands it to [`run`] in a task of its
//! own: a long admin command never holds the client's later commands back
//! from being read, and its reply keeps its place in the order.

pub mod checkpoint;
pub mod nodes;
pub mod rewrap;
pub mod tier;

use bytes::Bytes;

use crate::backend::cluster::ClusterRouter;
use crate::backend::router::Router;
use crate::protocol::{Protocol, ReplyBuf};
use crate::tier::Tiers;
use crate::transform::Transforms;

/// The usage line shown for a bad `PROXY` command.
pub const USAGE: &str = "PROXY HELP";

/// `PROXY HELP`'s lines.
pub const HELP: &[&str] = &[
    "PROXY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "REWRAP <pattern> [COUNT n] [RESUME cursor]",
    "    Re-seal stored values under the transform rules' current keys, one bounded step.",
    "TIER STATS",
    "    Rows, bytes, backlog, lag, read-through hits and misses, per [[tier]] rule.",
    "TIER FLUSH <pattern>",
    "    Delete the matching rows from Postgres (Redis is not touched).",
    "TIER WARM <pattern>",
    "    Load the matching live rows into Redis with their TTL (never over a key Redis holds).",
    "TIER SPILL <pattern>",
    "    Move the matching keys of spill rules to Postgres now, leaving stubs; returns how many.",
    "TIER VERIFY <pattern> [LIMIT n]",
    "    List keys whose tiers disagree (type, value, TTL, missing in Postgres).",
    "CHECKPOINT CREATE <pattern>",
    "    Copy the matching keys (DUMP and TTL) into Postgres; returns the checkpoint's id.",
    "CHECKPOINT LIST",
    "    The checkpoints.",
    "CHECKPOINT RESTORE <id>",
    "    Write a checkpoint's keys back (RESTORE ... REPLACE with their remaining TTL).",
    "CHECKPOINT DROP <id>",
    "    Delete a checkpoint.",
    "HELP",
    "    Print this help.",
];

/// True when `args` is a `PROXY …` command (any case).
pub fn is_proxy(args: &[Bytes]) -> bool {
    args.first()
        .is_some_and(|a| a.eq_ignore_ascii_case(b"proxy"))
}

/// A parsed `PROXY` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyCommand {
    /// `PROXY REWRAP …`.
    Rewrap(rewrap::RewrapArgs),
    /// `PROXY TIER …`.
    Tier(tier::TierCommand),
    /// `PROXY CHECKPOINT …`.
    Checkpoint(checkpoint::CheckpointCommand),
    /// `PROXY HELP`.
    Help,
}

/// Parses `PROXY <subcommand> …`; the error is the reply text.
pub fn parse(args: &[Bytes]) -> Result<ProxyCommand, String> {
    let Some(sub) = args.get(1) else {
        return Err(format!(
            "ERR wrong number of arguments for 'proxy' command. Try {USAGE}"
        ));
    };
    let rest = args.get(2..).unwrap_or_default();
    if sub.eq_ignore_ascii_case(b"rewrap") {
        return rewrap::parse(rest).map(ProxyCommand::Rewrap);
    }
    if sub.eq_ignore_ascii_case(b"tier") {
        return tier::parse(rest).map(ProxyCommand::Tier);
    }
    if sub.eq_ignore_ascii_case(b"checkpoint") {
        return checkpoint::parse(rest).map(ProxyCommand::Checkpoint);
    }
    if sub.eq_ignore_ascii_case(b"help") && rest.is_empty() {
        return Ok(ProxyCommand::Help);
    }
    Err(format!(
        "ERR unknown PROXY subcommand '{}'. Try {USAGE}",
        crate::transform::envelope::show(sub)
    ))
}

/// What a `PROXY` command may use.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// Standalone/Sentinel routing.
    pub router: &'a Router,
    /// Cluster mode's router.
    pub cluster: Option<&'a ClusterRouter>,
    /// Value transforms (REWRAP).
    pub transforms: &'a Transforms,
    /// The tiers, when `[[tier]]` rules exist.
    pub tiers: Option<&'a Tiers>,
}

/// The error for a tier command without tiers configured.
pub const NO_TIERS: &str =
    "ERR PROXY TIER/CHECKPOINT: no [postgres] and [[tier]] rules are configured";

/// Runs a parsed `PROXY` command; the reply frame (errors included).
pub async fn run(ctx: Context<'_>, cmd: ProxyCommand, proto: Protocol) -> Bytes {
    let error = crate::protocol::reply::error;
    match cmd {
        ProxyCommand::Help => {
            let mut r = ReplyBuf::new(proto);
            r.array(HELP.len());
            for line in HELP {
                r.simple(line);
            }
            r.freeze()
        }
        ProxyCommand::Rewrap(args) => {
            if ctx.transforms.is_empty() {
                return error("ERR PROXY REWRAP: no [[transform]] rules are configured");
            }
            let result = match ctx.cluster {
                Some(cluster) => rewrap::step_cluster(cluster, ctx.transforms, &args).await,
                None => rewrap::step(ctx.router, ctx.transforms, &args).await,
            };
            match result {
                Ok(progress) => progress.to_reply(proto),
                Err(text) => error(&text),
            }
        }
        ProxyCommand::Tier(cmd) => match ctx.tiers {
            None => error(NO_TIERS),
            Some(tiers) => {
                let mut nodes = nodes::Nodes::new(ctx.router, ctx.cluster);
                tier::run(tiers, &mut nodes, cmd, proto).await
            }
        },
        ProxyCommand::Checkpoint(cmd) => match ctx.tiers {
            None => error(NO_TIERS),
            Some(tiers) => {
                let mut nodes = nodes::Nodes::new(ctx.router, ctx.cluster);
                checkpoint::run(tiers, &mut nodes, cmd, proto).await
            }
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn parses_rewrap_and_refuses_the_rest() {
        assert!(is_proxy(&args(&["Proxy", "x"])));
        assert!(!is_proxy(&args(&["GET", "x"])));
        assert!(!is_proxy(&[]));
        match parse(&args(&["proxy", "rewrap", "s:*", "COUNT", "10"])).unwrap() {
            ProxyCommand::Rewrap(r) => {
                assert_eq!(r.pattern, "s:*");
                assert_eq!(r.count, 10);
                assert_eq!(r.cursor, "0");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&args(&["proxy", "tier", "stats"])).unwrap(),
            ProxyCommand::Tier(tier::TierCommand::Stats)
        );
        assert_eq!(
            parse(&args(&["proxy", "TIER", "verify", "d:*", "LIMIT", "5"])).unwrap(),
            ProxyCommand::Tier(tier::TierCommand::Verify {
                pattern: Bytes::from_static(b"d:*"),
                limit: 5
            })
        );
        assert_eq!(
            parse(&args(&["proxy", "checkpoint", "restore", "7"])).unwrap(),
            ProxyCommand::Checkpoint(checkpoint::CheckpointCommand::Restore(7))
        );
        assert_eq!(
            parse(&args(&["proxy", "tier", "spill", "blob:*"])).unwrap(),
            ProxyCommand::Tier(tier::TierCommand::Spill(Bytes::from_static(b"blob:*")))
        );
        assert!(parse(&args(&["proxy", "tier", "spill"])).is_err());
        assert!(parse(&args(&["proxy", "tier", "flush"])).is_err());
        assert!(parse(&args(&["proxy", "tier", "nope"])).is_err());
        assert!(parse(&args(&["proxy", "checkpoint", "drop", "x"])).is_err());
        assert!(parse(&args(&["proxy", "tier", "verify", "d:*", "LIMIT", "0"])).is_err());
        assert_eq!(
            parse(&args(&["proxy", "help"])).unwrap(),
            ProxyCommand::Help
        );
        let e = parse(&args(&["proxy"])).unwrap_err();
        assert!(e.contains("wrong number of arguments"), "{e}");
        let e = parse(&args(&["proxy", "nope"])).unwrap_err();
        assert!(e.contains("unknown PROXY subcommand 'nope'"), "{e}");
    }
}
