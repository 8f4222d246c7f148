//! `PROXY …` commands: strata's own administration, answered by strata and
//! never forwarded. The command table does not know `PROXY` (it is not a
//! Redis command), so the session intercepts it by name before routing.
//!
//! * [`rewrap`]: `PROXY REWRAP <pattern> [COUNT n] [RESUME cursor]` moves
//!   stored values to the transform rules' current keys.
//! * [`tier`]: `PROXY TIER STATS | FLUSH | WARM | SPILL | VERIFY | KEYS` (Postgres tiers).
//! * [`checkpoint`]: `PROXY CHECKPOINT CREATE | LIST | RESTORE | DROP`.
//! * [`nodes`]: the primaries' dedicated connections those two use.
//! * [`info`]: `PROXY INFO [section]`, /metrics in INFO's format.
//! * [`backends`]: `PROXY BACKENDS` and `PROXY TOPOLOGY`.
//! * [`clients`]: `PROXY CLIENTS`.
//! * [`slowlog`]: `PROXY SLOWLOG GET [n] | LEN | RESET`, and its recording.
//! * [`slow_watch`]: the slow log for dedicated connections and for
//!   commands strata answers itself.
//! * [`latency`]: `PROXY LATENCY`.
//! * [`drain`]: `PROXY DRAIN` / `PROXY UNDRAIN`.
//!
//! The session parses the command and hands it to [`run`] in a task of its
//! own: a long admin command never holds the client's later commands back
//! from being read, and its reply keeps its place in the order.

pub mod backends;
pub mod checkpoint;
pub mod clients;
pub mod config;
pub mod drain;
pub mod info;
pub mod latency;
pub mod nodes;
pub mod rewrap;
pub mod slow_watch;
pub mod slowlog;
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
    "TIER KEYS <pattern> [LIMIT n]",
    "    The keys Postgres holds matching the pattern (also those not resident in Redis).",
    "CHECKPOINT CREATE <pattern>",
    "    Copy the matching keys (DUMP and TTL) into Postgres; returns the checkpoint's id.",
    "CHECKPOINT LIST",
    "    The checkpoints.",
    "CHECKPOINT RESTORE <id>",
    "    Write a checkpoint's keys back (RESTORE ... REPLACE with their remaining TTL).",
    "CHECKPOINT DROP <id>",
    "    Delete a checkpoint.",
    "INFO [<section> ...]",
    "    What /metrics knows, in INFO format: server, clients, backends, commands, latency,",
    "    transforms, tiers (sections of features not configured are omitted); all by default.",
    "BACKENDS",
    "    Per node: address, role, state, breaker, connections up/total, in-flight batches,",
    "    health-PING latency p50/p99 in microseconds.",
    "TOPOLOGY",
    "    The slot map (cluster), or the primary and replicas (sentinel, standalone).",
    "CLIENTS",
    "    CLIENT LIST's lines plus dedicated=<node>#<id>|no, inflight=<commands>, obuf=<bytes>.",
    "SLOWLOG GET [<count>]",
    "    The slowest commands, newest first (Redis SLOWLOG's entries, then strata and backend us).",
    "SLOWLOG LEN",
    "    Entries in the slow log.",
    "SLOWLOG RESET",
    "    Empty the slow log.",
    "LATENCY",
    "    p50/p99/p99.9 per command, as INFO latencystats prints them.",
    "DRAIN",
    "    Stop accepting clients and fail /health/ready; connected clients are served on.",
    "UNDRAIN",
    "    Accept clients again and let /health/ready pass.",
    "RELOAD",
    "    Read the config file again and apply what can change live; names what needs a restart.",
    "CONFIG GET <pattern>",
    "    The running config's keys matching the glob (dotted: server.maxclients), defaults included.",
    "CONFIG SET <key> <value> [<key> <value> ...]",
    "    Change keys of the running config, all or none (as a reload of the file so changed).",
    "CONFIG REWRITE",
    "    Write the running config back to its file, atomically, keeping comments and order.",
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
    /// `PROXY INFO [section …]`.
    Info(Vec<&'static str>),
    /// `PROXY BACKENDS`.
    Backends,
    /// `PROXY TOPOLOGY`.
    Topology,
    /// `PROXY CLIENTS`.
    Clients,
    /// `PROXY SLOWLOG GET [n]` (`None`: Redis's default).
    SlowlogGet(Option<i64>),
    /// `PROXY SLOWLOG LEN`.
    SlowlogLen,
    /// `PROXY SLOWLOG RESET`.
    SlowlogReset,
    /// `PROXY LATENCY`.
    Latency,
    /// `PROXY DRAIN` (`true`) or `PROXY UNDRAIN`.
    Drain(bool),
    /// `PROXY RELOAD`, `PROXY CONFIG GET | SET | REWRITE`.
    Config(config::ConfigCommand),
    /// `PROXY HELP`.
    Help,
}

/// The subcommands without arguments.
fn bare(sub: &[u8]) -> Option<ProxyCommand> {
    let words: [(&[u8], ProxyCommand); 7] = [
        (b"help", ProxyCommand::Help),
        (b"backends", ProxyCommand::Backends),
        (b"topology", ProxyCommand::Topology),
        (b"clients", ProxyCommand::Clients),
        (b"latency", ProxyCommand::Latency),
        (b"drain", ProxyCommand::Drain(true)),
        (b"undrain", ProxyCommand::Drain(false)),
    ];
    words
        .into_iter()
        .find(|(w, _)| sub.eq_ignore_ascii_case(w))
        .map(|(_, c)| c)
}

/// `PROXY SLOWLOG …`, with Redis's SLOWLOG errors.
fn parse_slowlog(rest: &[Bytes]) -> Result<ProxyCommand, String> {
    let sub = rest.first().map(|s| s.to_ascii_lowercase());
    match (sub.as_deref(), rest.len()) {
        (Some(b"get"), 1) => Ok(ProxyCommand::SlowlogGet(None)),
        // Redis's texts: a count that is not an integer, then one below -1.
        (Some(b"get"), 2) => match crate::protocol::request::parse_int(&rest[1]) {
            Some(n) if n >= -1 => Ok(ProxyCommand::SlowlogGet(Some(n))),
            Some(_) => Err("ERR count should be greater than or equal to -1".to_string()),
            None => Err("ERR value is not an integer or out of range".to_string()),
        },
        (Some(b"len"), 1) => Ok(ProxyCommand::SlowlogLen),
        (Some(b"reset"), 1) => Ok(ProxyCommand::SlowlogReset),
        _ => Err(format!(
            "ERR unknown subcommand or wrong number of arguments for 'slowlog'. Try {USAGE}"
        )),
    }
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
    if sub.eq_ignore_ascii_case(b"info") {
        return Ok(ProxyCommand::Info(info::wanted(rest)));
    }
    if sub.eq_ignore_ascii_case(b"slowlog") {
        return parse_slowlog(rest);
    }
    if sub.eq_ignore_ascii_case(b"config") {
        return config::parse(rest).map(ProxyCommand::Config);
    }
    if sub.eq_ignore_ascii_case(b"reload") && rest.is_empty() {
        return Ok(ProxyCommand::Config(config::ConfigCommand::Reload));
    }
    if let Some(cmd) = bare(sub) {
        if !rest.is_empty() {
            return Err(format!(
                "ERR wrong number of arguments for 'proxy|{}' command",
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            ));
        }
        return Ok(cmd);
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
    /// Everything the server shares (clients, metrics, slow log, drain):
    /// the operations commands read it.
    pub server: &'a crate::server::Shared,
}

/// The error for a tier command without tiers configured.
pub const NO_TIERS: &str =
    "ERR PROXY TIER/CHECKPOINT: no [postgres] and [[tier]] rules are configured";

/// Runs a parsed `PROXY` command; the reply frame (errors included).
pub async fn run(ctx: Context<'_>, cmd: ProxyCommand, proto: Protocol) -> Bytes {
    let error = crate::protocol::reply::error;
    let shared = ctx.server;
    match cmd {
        ProxyCommand::Info(sections) => info::info(shared, &sections, proto),
        ProxyCommand::Backends => backends::backends(shared, proto),
        ProxyCommand::Topology => backends::topology(shared, proto),
        ProxyCommand::Clients => clients::list(shared, proto),
        ProxyCommand::SlowlogGet(n) => shared.slowlog.get(n, proto),
        ProxyCommand::SlowlogLen => {
            let mut r = ReplyBuf::new(proto);
            r.integer(shared.slowlog.len() as i64);
            r.freeze()
        }
        ProxyCommand::SlowlogReset => {
            shared.slowlog.reset();
            Bytes::from_static(b"+OK\r\n")
        }
        ProxyCommand::Latency => {
            let mut r = ReplyBuf::new(proto);
            r.verbatim(format!("# Latencystats\r\n{}", latency::lines(&shared.metrics)).as_bytes());
            r.freeze()
        }
        ProxyCommand::Drain(on) => {
            if shared.drain.set(on) {
                tracing::warn!(
                    draining = on,
                    clients = shared.clients.len(),
                    "{}",
                    if on {
                        "PROXY DRAIN: not accepting clients, readiness fails"
                    } else {
                        "PROXY UNDRAIN: accepting clients"
                    }
                );
            }
            Bytes::from_static(b"+OK\r\n")
        }
        ProxyCommand::Config(cmd) => config::run(&ctx.server.reloader, cmd, proto).await,
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
        assert_eq!(
            parse(&args(&["proxy", "SLOWLOG", "get", "5"])).unwrap(),
            ProxyCommand::SlowlogGet(Some(5))
        );
        assert!(parse(&args(&["proxy", "slowlog", "get", "-2"])).is_err());
        let e = parse(&args(&["proxy", "slowlog", "get", "x"])).unwrap_err();
        assert_eq!(e, "ERR value is not an integer or out of range");
        assert!(parse(&args(&["proxy", "slowlog"])).is_err());
        assert_eq!(
            parse(&args(&["proxy", "info", "Clients", "nope"])).unwrap(),
            ProxyCommand::Info(vec!["clients"])
        );
        assert_eq!(
            parse(&args(&["proxy", "undrain"])).unwrap(),
            ProxyCommand::Drain(false)
        );
        assert!(parse(&args(&["proxy", "drain", "now"])).is_err());
        let e = parse(&args(&["proxy"])).unwrap_err();
        assert!(e.contains("wrong number of arguments"), "{e}");
        let e = parse(&args(&["proxy", "nope"])).unwrap_err();
        assert!(e.contains("unknown PROXY subcommand 'nope'"), "{e}");
    }
}
