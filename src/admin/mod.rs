//! `PROXY …` commands: strata's own administration, answered by strata and
//! never forwarded. The command table does not know `PROXY` (it is not a
//! Redis command), so the session intercepts it by name before routing.
//!
//! * [`rewrap`]: `PROXY REWRAP <pattern> [COUNT n] [RESUME cursor]` moves
//!   stored values to the transform rules' current keys.

pub mod rewrap;

use bytes::Bytes;

/// The usage line shown for a bad `PROXY` command.
pub const USAGE: &str = "PROXY REWRAP <pattern> [COUNT n] [RESUME cursor]";

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
}

/// Parses `PROXY <subcommand> …`; the error is the reply text.
pub fn parse(args: &[Bytes]) -> Result<ProxyCommand, String> {
    let Some(sub) = args.get(1) else {
        return Err(format!(
            "ERR wrong number of arguments for 'proxy' command. Try {USAGE}"
        ));
    };
    if sub.eq_ignore_ascii_case(b"rewrap") {
        return rewrap::parse(args.get(2..).unwrap_or_default()).map(ProxyCommand::Rewrap);
    }
    Err(format!(
        "ERR unknown PROXY subcommand '{}'. Try {USAGE}",
        crate::transform::envelope::show(sub)
    ))
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
        }
        let e = parse(&args(&["proxy"])).unwrap_err();
        assert!(e.contains("wrong number of arguments"), "{e}");
        let e = parse(&args(&["proxy", "nope"])).unwrap_err();
        assert!(e.contains("unknown PROXY subcommand 'nope'"), "{e}");
    }
}
