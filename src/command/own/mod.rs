//! strata's own commands, described as Redis describes its commands, so
//! that `COMMAND`, `COMMAND INFO`, `COMMAND COUNT`, `COMMAND LIST` and
//! `COMMAND DOCS` list them beside the backend's (issue 18: `PROXY` in
//! COMMAND DOCS).
//!
//! Why a registry: those replies come from the backend, which has never
//! heard of `PROXY` (or of any command strata adds later). Clients read
//! them to learn what a server offers (redis-cli's hints and completion,
//! cluster clients' key routing, `command_docs` in redis-py), so strata
//! answers them from the backend's reply with its own entries merged in
//! ([`merge`]), in Redis's shapes ([`reply`]).
//!
//! **Registering a command:** describe it in a file of its own under this
//! folder (see [`proxy`]) and add it to [`REGISTRY`]. Names are lower case;
//! a subcommand's name is `container|sub`, as Redis spells them.

pub mod merge;
pub mod proxy;
pub mod reply;

/// One of strata's own commands, with the fields `COMMAND INFO` and
/// `COMMAND DOCS` report (Redis 7.0's `redisCommand`).
#[derive(Debug)]
pub struct OwnCommand {
    /// Lower-case name; `container|sub` for a subcommand.
    pub name: &'static str,
    /// Redis arity: the argument count including the name, negative for "at least".
    pub arity: i64,
    /// Command flags as COMMAND INFO prints them (`admin`, `readonly`, `write`, `fast`, …).
    pub flags: &'static [&'static str],
    /// ACL categories with their `@` (`@admin`, `@slow`, …).
    pub categories: &'static [&'static str],
    /// Command tips (`nondeterministic_output`, `request_policy:…`).
    pub tips: &'static [&'static str],
    /// The legacy first key, last key and step COMMAND INFO prints (0 0 0 without keys).
    pub legacy_keys: (i64, i64, i64),
    /// Redis 7 key specs.
    pub key_specs: &'static [KeySpec],
    /// COMMAND DOCS' `summary`.
    pub summary: &'static str,
    /// COMMAND DOCS' `since`: the strata version that added it.
    pub since: &'static str,
    /// COMMAND DOCS' `group` (one of Redis's: `server`, `generic`, `string`, …).
    pub group: &'static str,
    /// COMMAND DOCS' `complexity`, when there is one to state.
    pub complexity: Option<&'static str>,
    /// The arguments after the name (after the subcommand for one).
    pub arguments: &'static [Arg],
    /// Subcommands, for a container such as `PROXY`.
    pub subcommands: &'static [OwnCommand],
}

impl OwnCommand {
    /// The defaults a description starts from (`..OwnCommand::BASE`).
    pub const BASE: OwnCommand = OwnCommand {
        name: "",
        arity: -1,
        flags: &[],
        categories: &[],
        tips: &[],
        legacy_keys: (0, 0, 0),
        key_specs: &[],
        summary: "",
        since: env!("CARGO_PKG_VERSION"),
        group: "server",
        complexity: None,
        arguments: &[],
        subcommands: &[],
    };
}

/// An argument, as COMMAND DOCS lists it (`redisCommandArg`).
#[derive(Debug)]
pub struct Arg {
    /// Its name in the docs.
    pub name: &'static str,
    /// Its type.
    pub kind: ArgKind,
    /// The key spec it is the key of (for `ArgKind::Key`).
    pub key_spec_index: Option<i64>,
    /// The literal word before it (`COUNT`), or the word itself for a pure token.
    pub token: Option<&'static str>,
    /// A short description.
    pub summary: Option<&'static str>,
    /// May be left out.
    pub optional: bool,
    /// May be repeated.
    pub multiple: bool,
    /// For `OneOf` and `Block`: the arguments it is made of.
    pub arguments: &'static [Arg],
}

impl Arg {
    /// The defaults a description starts from (`..Arg::BASE`).
    pub const BASE: Arg = Arg {
        name: "",
        kind: ArgKind::String,
        key_spec_index: None,
        token: None,
        summary: None,
        optional: false,
        multiple: false,
        arguments: &[],
    };
}

/// Redis's argument types (`ARG_TYPE_STR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `double`
    Double,
    /// `key`
    Key,
    /// `pattern`
    Pattern,
    /// `unix-time`
    UnixTime,
    /// `pure-token`
    PureToken,
    /// `oneof`
    OneOf,
    /// `block`
    Block,
}

impl ArgKind {
    /// The name COMMAND DOCS prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ArgKind::String => "string",
            ArgKind::Integer => "integer",
            ArgKind::Double => "double",
            ArgKind::Key => "key",
            ArgKind::Pattern => "pattern",
            ArgKind::UnixTime => "unix-time",
            ArgKind::PureToken => "pure-token",
            ArgKind::OneOf => "oneof",
            ArgKind::Block => "block",
        }
    }
}

/// A Redis 7 key spec, as COMMAND INFO prints it.
#[derive(Debug)]
pub struct KeySpec {
    /// Optional notes.
    pub notes: Option<&'static str>,
    /// Key flags (`RW`, `RO`, `access`, `update`, `insert`, `delete`, …).
    pub flags: &'static [&'static str],
    /// Where the search for keys begins.
    pub begin: Begin,
    /// How keys are found from there.
    pub find: Find,
}

/// `begin_search` of a key spec.
#[derive(Debug)]
pub enum Begin {
    /// At an argument index.
    Index(i64),
    /// After a keyword, searched from `startfrom`.
    Keyword {
        /// The keyword.
        keyword: &'static str,
        /// Where the search starts (negative: from the end).
        startfrom: i64,
    },
    /// Unknown (the command finds its keys itself).
    Unknown,
}

/// `find_keys` of a key spec.
#[derive(Debug)]
pub enum Find {
    /// A range of keys.
    Range {
        /// Last key, relative to the first (-1: the last argument).
        lastkey: i64,
        /// Step between keys.
        keystep: i64,
        /// Limit (0: none).
        limit: i64,
    },
    /// A count argument, then keys.
    KeyNum {
        /// Index of the count, relative to the begin.
        keynumidx: i64,
        /// Index of the first key, relative to the begin.
        firstkey: i64,
        /// Step between keys.
        keystep: i64,
    },
    /// Unknown.
    Unknown,
}

/// Every command strata answers itself that Redis does not have. Add new
/// ones here (top-level commands; their subcommands hang below them).
pub static REGISTRY: &[&OwnCommand] = &[&proxy::PROXY];

/// The registered command (or subcommand, `container|sub`) called `name`,
/// in any case, as Redis's `lookupCommandBySds` finds it.
pub fn find(name: &[u8]) -> Option<&'static OwnCommand> {
    let mut parts = name.split(|&b| b == b'|');
    let top = parts.next()?;
    let sub = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let cmd = REGISTRY
        .iter()
        .copied()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(top))?;
    match sub {
        None => Some(cmd),
        Some(sub) => cmd.subcommands.iter().find(|s| {
            s.name
                .split_once('|')
                .is_some_and(|(_, s)| s.as_bytes().eq_ignore_ascii_case(sub))
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_commands_and_subcommands_in_any_case() {
        assert_eq!(find(b"PROXY").unwrap().name, "proxy");
        assert_eq!(find(b"proxy|Info").unwrap().name, "proxy|info");
        assert!(find(b"proxy|nope").is_none());
        assert!(find(b"proxy|info|x").is_none());
        assert!(find(b"get").is_none());
    }

    #[test]
    fn every_subcommand_is_named_after_its_container() {
        for cmd in REGISTRY {
            assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
            for sub in cmd.subcommands {
                let (top, _) = sub.name.split_once('|').unwrap();
                assert_eq!(top, cmd.name, "{}", sub.name);
                assert_eq!(sub.name, sub.name.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn proxy_help_and_the_registry_name_the_same_subcommands() {
        // Every `PROXY HELP` entry's first word is a registered subcommand.
        for line in crate::admin::HELP.iter().skip(1) {
            if line.starts_with(' ') {
                continue;
            }
            let word = line.split(' ').next().unwrap().to_ascii_lowercase();
            assert!(
                find(format!("proxy|{word}").as_bytes()).is_some(),
                "PROXY {word} is in PROXY HELP but not in the command registry"
            );
        }
    }
}
