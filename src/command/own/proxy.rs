//! `PROXY`, strata's administration command (`admin/`), described for
//! COMMAND INFO and COMMAND DOCS. Keep it in step with `admin::HELP`
//! (a unit test checks that every HELP entry is registered here).

use super::{Arg, ArgKind, OwnCommand};

/// Flags every PROXY subcommand has: administrative, not for scripts
/// (strata never sees a script's calls), allowed while Redis loads or is stale.
const FLAGS: &[&str] = &["admin", "noscript", "loading", "stale"];
/// ACL categories, as Redis gives its own administration commands.
const CATEGORIES: &[&str] = &["@admin", "@slow", "@dangerous"];

/// A subcommand without arguments.
const fn bare(name: &'static str, summary: &'static str) -> OwnCommand {
    OwnCommand {
        name,
        arity: 2,
        flags: FLAGS,
        categories: CATEGORIES,
        summary,
        ..OwnCommand::BASE
    }
}

/// A subcommand with arguments (at least one).
const fn with_args(
    name: &'static str,
    arity: i64,
    summary: &'static str,
    arguments: &'static [Arg],
) -> OwnCommand {
    OwnCommand {
        name,
        arity,
        flags: FLAGS,
        categories: CATEGORIES,
        summary,
        arguments,
        ..OwnCommand::BASE
    }
}

const fn token(word: &'static str) -> Arg {
    Arg {
        name: word,
        kind: ArgKind::PureToken,
        token: Some(word),
        ..Arg::BASE
    }
}

const fn plain(name: &'static str, kind: ArgKind) -> Arg {
    Arg {
        name,
        kind,
        ..Arg::BASE
    }
}

/// `word <name>` as one block (TIER FLUSH <pattern>, …).
const fn word_then(word: &'static str, name: &'static str, args: &'static [Arg]) -> Arg {
    Arg {
        name,
        kind: ArgKind::Block,
        token: Some(word),
        arguments: args,
        ..Arg::BASE
    }
}

const PATTERN: Arg = plain("pattern", ArgKind::Pattern);
const PATTERN_ONLY: &[Arg] = &[PATTERN];
const ID_ONLY: &[Arg] = &[plain("id", ArgKind::Integer)];

/// `PROXY` and its subcommands, in `PROXY HELP`'s order.
pub static PROXY: OwnCommand = OwnCommand {
    name: "proxy",
    arity: -2,
    // As Redis lists its own containers (CONFIG, CLIENT): no flags, @slow.
    categories: &["@slow"],
    summary: "A container for strata's administration commands",
    subcommands: &[
        with_args(
            "proxy|rewrap",
            -3,
            "Re-seals stored values under the transform rules' current keys, one bounded step",
            &[
                PATTERN,
                Arg {
                    name: "count",
                    kind: ArgKind::Integer,
                    token: Some("COUNT"),
                    optional: true,
                    ..Arg::BASE
                },
                Arg {
                    name: "cursor",
                    kind: ArgKind::String,
                    token: Some("RESUME"),
                    optional: true,
                    ..Arg::BASE
                },
            ],
        ),
        with_args(
            "proxy|tier",
            -3,
            "Inspects and manages the Postgres tiers",
            &[Arg {
                name: "operation",
                kind: ArgKind::OneOf,
                arguments: &[
                    token("STATS"),
                    word_then("FLUSH", "flush", PATTERN_ONLY),
                    word_then("WARM", "warm", PATTERN_ONLY),
                    word_then("SPILL", "spill", PATTERN_ONLY),
                    word_then(
                        "VERIFY",
                        "verify",
                        &[
                            PATTERN,
                            Arg {
                                name: "limit",
                                kind: ArgKind::Integer,
                                token: Some("LIMIT"),
                                optional: true,
                                ..Arg::BASE
                            },
                        ],
                    ),
                ],
                ..Arg::BASE
            }],
        ),
        with_args(
            "proxy|checkpoint",
            -3,
            "Creates, lists, restores and drops checkpoints of keys in Postgres",
            &[Arg {
                name: "operation",
                kind: ArgKind::OneOf,
                arguments: &[
                    word_then("CREATE", "create", PATTERN_ONLY),
                    token("LIST"),
                    word_then("RESTORE", "restore", ID_ONLY),
                    word_then("DROP", "drop", ID_ONLY),
                ],
                ..Arg::BASE
            }],
        ),
        with_args(
            "proxy|info",
            -2,
            "Returns what /metrics knows, in INFO's format",
            &[Arg {
                name: "section",
                kind: ArgKind::String,
                optional: true,
                multiple: true,
                ..Arg::BASE
            }],
        ),
        bare(
            "proxy|backends",
            "Returns each backend node's role, state, breaker, connections and latency",
        ),
        bare(
            "proxy|topology",
            "Returns the slot map, or the primary and replicas strata routes to",
        ),
        bare(
            "proxy|clients",
            "Lists the connected clients, as CLIENT LIST with strata's fields",
        ),
        with_args(
            "proxy|slowlog",
            -3,
            "Gets or resets strata's slow log",
            &[Arg {
                name: "operation",
                kind: ArgKind::OneOf,
                arguments: &[
                    Arg {
                        name: "get",
                        kind: ArgKind::Block,
                        token: Some("GET"),
                        arguments: &[Arg {
                            name: "count",
                            kind: ArgKind::Integer,
                            optional: true,
                            ..Arg::BASE
                        }],
                        ..Arg::BASE
                    },
                    token("LEN"),
                    token("RESET"),
                ],
                ..Arg::BASE
            }],
        ),
        bare(
            "proxy|latency",
            "Returns latency percentiles per command, as INFO latencystats",
        ),
        bare(
            "proxy|drain",
            "Stops accepting clients and fails readiness; connected clients are served on",
        ),
        bare(
            "proxy|undrain",
            "Accepts clients again and lets readiness pass",
        ),
        bare(
            "proxy|reload",
            "Reads the config file again and applies what can change live",
        ),
        with_args(
            "proxy|config",
            -3,
            "Gets, sets or rewrites strata's running configuration",
            &[Arg {
                name: "operation",
                kind: ArgKind::OneOf,
                arguments: &[
                    word_then("GET", "get", PATTERN_ONLY),
                    Arg {
                        name: "set",
                        kind: ArgKind::Block,
                        token: Some("SET"),
                        arguments: &[Arg {
                            name: "parameter-value",
                            kind: ArgKind::Block,
                            multiple: true,
                            arguments: &[
                                plain("parameter", ArgKind::String),
                                plain("value", ArgKind::String),
                            ],
                            ..Arg::BASE
                        }],
                        ..Arg::BASE
                    },
                    token("REWRITE"),
                ],
                ..Arg::BASE
            }],
        ),
        bare(
            "proxy|help",
            "Returns helpful text about the PROXY subcommands",
        ),
    ],
    ..OwnCommand::BASE
};
