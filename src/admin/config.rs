//! `PROXY RELOAD` and `PROXY CONFIG GET | SET | REWRITE`: the config at
//! run time, through the reloader (`app/reload.rs`).

use bytes::Bytes;

use crate::app::reload::{Reloader, Report};
use crate::protocol::reply::error;
use crate::protocol::{Protocol, ReplyBuf};

/// A parsed `PROXY CONFIG …` or `PROXY RELOAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCommand {
    /// `PROXY RELOAD`.
    Reload,
    /// `PROXY CONFIG GET <glob>`.
    Get(Bytes),
    /// `PROXY CONFIG SET <key> <value> [<key> <value> …]`.
    Set(Vec<(String, String)>),
    /// `PROXY CONFIG REWRITE`.
    Rewrite,
}

/// Parses what follows `PROXY CONFIG`, with Redis's CONFIG errors.
pub fn parse(rest: &[Bytes]) -> Result<ConfigCommand, String> {
    let sub = rest.first().map(|s| s.to_ascii_lowercase());
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    match (sub.as_deref(), rest.len()) {
        (Some(b"get"), 2) => Ok(ConfigCommand::Get(rest[1].clone())),
        (Some(b"set"), n) if n >= 3 && n % 2 == 1 => Ok(ConfigCommand::Set(
            rest[1..]
                .chunks(2)
                .map(|kv| (text(&kv[0]), text(&kv[1])))
                .collect(),
        )),
        (Some(b"rewrite"), 1) => Ok(ConfigCommand::Rewrite),
        _ => Err(
            "ERR unknown subcommand or wrong number of arguments for 'config'. Try PROXY HELP."
                .into(),
        ),
    }
}

/// Runs it.
pub async fn run(reloader: &Reloader, cmd: ConfigCommand, proto: Protocol) -> Bytes {
    match cmd {
        ConfigCommand::Reload => report(reloader.reload_file("proxy reload").await, proto),
        ConfigCommand::Set(pairs) => match reloader.set(&pairs).await {
            // Redis's CONFIG SET answers +OK; what needs a restart is
            // refused, as Redis refuses an immutable parameter.
            Ok(r) if r.restart_needed.is_empty() => Bytes::from_static(b"+OK\r\n"),
            Ok(r) => error(&format!(
                "ERR applied, but these need a restart to take effect: {}",
                r.restart_needed.join(", ")
            )),
            Err(e) => error(&format!("ERR CONFIG SET failed: {e}")),
        },
        ConfigCommand::Get(pattern) => {
            let pairs = reloader.get(&pattern).await;
            let mut r = ReplyBuf::new(proto);
            r.map(pairs.len());
            for (k, v) in pairs {
                r.bulk(k.as_bytes()).bulk(v.as_bytes());
            }
            r.freeze()
        }
        ConfigCommand::Rewrite => match reloader.rewrite().await {
            Ok(()) => Bytes::from_static(b"+OK\r\n"),
            Err(e) => error(&format!("ERR Rewriting config file: {e}")),
        },
    }
}

/// A reload's outcome: one line per change.
fn report(result: Result<Report, String>, proto: Protocol) -> Bytes {
    match result {
        Ok(report) => {
            let lines = report.lines();
            let mut r = ReplyBuf::new(proto);
            r.array(lines.len());
            for line in lines {
                r.simple(&line);
            }
            r.freeze()
        }
        Err(e) => error(&format!(
            "ERR reload refused, the running config is unchanged: {e}"
        )),
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
    fn parses_config_subcommands() {
        assert_eq!(
            parse(&args(&["GET", "server.*"])).unwrap(),
            ConfigCommand::Get(Bytes::from_static(b"server.*"))
        );
        assert_eq!(
            parse(&args(&["set", "a.b", "1", "c.d", "x"])).unwrap(),
            ConfigCommand::Set(vec![("a.b".into(), "1".into()), ("c.d".into(), "x".into())])
        );
        assert_eq!(parse(&args(&["rewrite"])).unwrap(), ConfigCommand::Rewrite);
        assert!(parse(&args(&["set", "a"])).is_err());
        assert!(parse(&args(&["get"])).is_err());
        assert!(parse(&args(&["nope"])).is_err());
    }
}
