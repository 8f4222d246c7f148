//! Finding a command's spec from its name, on every request, without allocating.
//!
//! Clients send names in any case (`get`, `GET`, `Get`). The name is
//! lower-cased into a stack buffer and binary-searched in the sorted table:
//! 240 top-level commands take at most 8 comparisons of short strings, and no
//! allocation happens on the request path.

use bytes::Bytes;

use super::{CommandSpec, COMMANDS};

/// Longer than any Redis command or subcommand name (the longest,
/// `count-failure-reports`, is 21 bytes), so a name that does not fit is unknown.
const MAX_NAME: usize = 32;

/// The spec of the top-level command `name` (ASCII case-insensitive), or
/// `None` for an unknown command. Subcommands are not looked up here; see
/// [`lookup`].
pub fn lookup_name(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; MAX_NAME];
    let lower = lower_into(name, &mut buf)?;
    find(COMMANDS, lower, 0)
}

/// The spec for a whole request: `args[0]` names the command; when it is a
/// container (CLIENT, CONFIG, …) and `args[1]` names one of its subcommands,
/// the subcommand's spec (`client|setname`) is returned, otherwise the
/// container's own (so the caller can still answer an arity or
/// unknown-subcommand error as Redis would).
pub fn lookup(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let spec = lookup_name(args.first()?)?;
    if spec.subcommands.is_empty() {
        return Some(spec);
    }
    let Some(sub) = args.get(1) else {
        return Some(spec);
    };
    let mut buf = [0u8; MAX_NAME];
    let found = lower_into(sub, &mut buf)
        // Subcommand names are `container|sub`: skip the prefix when comparing.
        .and_then(|lower| find(spec.subcommands, lower, spec.name.len() + 1));
    Some(found.unwrap_or(spec))
}

/// `name` lower-cased into `buf`, or `None` when it is longer than any command name.
fn lower_into<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// Binary search of `table` (sorted by name) for the entry whose name, from
/// byte `skip` on, equals `lower`.
fn find(table: &'static [CommandSpec], lower: &[u8], skip: usize) -> Option<&'static CommandSpec> {
    table
        .binary_search_by(|spec| {
            let name = spec.name.as_bytes();
            name.get(skip..).unwrap_or(name).cmp(lower)
        })
        .ok()
        .map(|i| &table[i])
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
    fn tables_are_sorted_for_binary_search() {
        for pair in COMMANDS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} >= {}", pair[0].name, pair[1].name);
        }
        for cmd in COMMANDS {
            assert_eq!(cmd.name, cmd.name.to_ascii_lowercase());
            let prefix = format!("{}|", cmd.name);
            for sub in cmd.subcommands {
                assert!(sub.name.starts_with(&prefix), "{}", sub.name);
                assert!(sub.subcommands.is_empty());
            }
            for pair in cmd.subcommands.windows(2) {
                assert!(pair[0].name < pair[1].name);
            }
        }
    }

    #[test]
    fn finds_every_command_in_any_case() {
        for cmd in COMMANDS {
            assert_eq!(lookup_name(cmd.name.as_bytes()).unwrap().name, cmd.name);
            let upper = cmd.name.to_ascii_uppercase();
            assert_eq!(lookup_name(upper.as_bytes()).unwrap().name, cmd.name);
            for sub in cmd.subcommands {
                let (container, name) = sub.name.split_once('|').unwrap();
                let found = lookup(&args(&[&container.to_uppercase(), &name.to_uppercase()]));
                assert_eq!(found.unwrap().name, sub.name);
            }
        }
    }

    #[test]
    fn mixed_case() {
        assert_eq!(lookup_name(b"gEt").unwrap().name, "get");
        assert_eq!(lookup_name(b"GEORADIUSBYMEMBER_RO").unwrap().name, "georadiusbymember_ro");
    }

    #[test]
    fn unknown_names() {
        assert!(lookup_name(b"").is_none());
        assert!(lookup_name(b"nosuchcommand").is_none());
        assert!(lookup_name(b"ge").is_none());
        assert!(lookup_name(b"gett").is_none());
        assert!(lookup_name(&[b'a'; 200]).is_none());
        assert!(lookup_name(b"get\0").is_none());
        assert!(lookup_name("gét".as_bytes()).is_none());
        // A subcommand name is not a top-level command.
        assert!(lookup_name(b"client|setname").is_none());
        assert!(lookup(&[]).is_none());
    }

    #[test]
    fn subcommands() {
        assert_eq!(lookup(&args(&["CLIENT", "SETNAME", "x"])).unwrap().name, "client|setname");
        assert_eq!(lookup(&args(&["client", "No-Evict", "on"])).unwrap().name, "client|no-evict");
        assert_eq!(lookup(&args(&["CONFIG", "get", "*"])).unwrap().name, "config|get");
        assert_eq!(lookup(&args(&["xinfo", "STREAM", "s"])).unwrap().name, "xinfo|stream");
        // No or unknown subcommand: the container itself.
        assert_eq!(lookup(&args(&["CLIENT"])).unwrap().name, "client");
        assert_eq!(lookup(&args(&["CLIENT", "bogus"])).unwrap().name, "client");
        assert_eq!(lookup(&args(&["CLIENT", &"x".repeat(100)])).unwrap().name, "client");
        // A plain command ignores args[1].
        assert_eq!(lookup(&args(&["GET", "setname"])).unwrap().name, "get");
    }
}
