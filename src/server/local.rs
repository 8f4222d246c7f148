//! Commands strata answers itself, for its own clients: PING, ECHO, HELLO,
//! CLIENT SETNAME/GETNAME/ID/INFO/LIST, … Error texts are Redis's. (AUTH
//! is the backend's to answer: `auth/`, `session/login.rs`.)

use bytes::Bytes;

use super::clients::{ClientInfo, ClientRegistry, KillFilter};
use crate::protocol::reply::ReplyBuf;
use crate::protocol::Protocol;

/// Redis's reply to a wrong arity.
pub fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

/// PING [message]
pub fn ping(proto: Protocol, args: &[Bytes]) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    match args.get(1) {
        Some(msg) => r.bulk(msg),
        None => r.simple("PONG"),
    };
    r.freeze()
}

/// ECHO message
pub fn echo(proto: Protocol, args: &[Bytes]) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    r.bulk(&args[1]);
    r.freeze()
}

/// Validates a client name as Redis does (`clientSetName`).
pub fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// Redis's text for a bad client name.
pub const BAD_NAME: &str =
    "ERR Client names cannot contain spaces, newlines or special characters.";

/// Redis's reply to READONLY, READWRITE and ASKING when cluster mode is off.
pub const NO_CLUSTER: &str = "ERR This instance has cluster support disabled";

/// What HELLO asks for, once validated.
#[derive(Debug)]
pub struct Hello {
    /// The protocol to switch to, when given.
    pub proto: Option<Protocol>,
    /// AUTH username password, when given.
    pub auth: Option<(Bytes, Bytes)>,
    /// SETNAME name, when given.
    pub setname: Option<Bytes>,
}

/// Parses `HELLO [protover [AUTH user pass] [SETNAME name]]`, with Redis's errors.
pub fn parse_hello(args: &[Bytes]) -> Result<Hello, String> {
    let mut hello = Hello {
        proto: None,
        auth: None,
        setname: None,
    };
    let Some(ver) = args.get(1) else {
        return Ok(hello);
    };
    let ver = crate::protocol::request::parse_int(ver)
        .ok_or_else(|| "ERR Protocol version is not an integer or out of range".to_string())?;
    hello.proto = match ver {
        2 => Some(Protocol::Resp2),
        3 => Some(Protocol::Resp3),
        _ => return Err("NOPROTO unsupported protocol version".to_string()),
    };
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            hello.auth = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            let name = &args[i + 1];
            if !valid_name(name) {
                return Err(BAD_NAME.to_string());
            }
            hello.setname = Some(name.clone());
            i += 2;
        } else {
            return Err(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    Ok(hello)
}

/// The HELLO reply map, as Redis sends it.
pub fn hello_reply(proto: Protocol, id: u64, version: &str) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    r.map(7);
    r.bulk(b"server").bulk(b"redis");
    r.bulk(b"version").bulk(version.as_bytes());
    r.bulk(b"proto").integer(proto.version());
    r.bulk(b"id").integer(id as i64);
    r.bulk(b"mode").bulk(b"standalone");
    r.bulk(b"role").bulk(b"master");
    r.bulk(b"modules").array(0);
    r.freeze()
}

/// CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id …]
pub fn client_list(proto: Protocol, args: &[Bytes], registry: &ClientRegistry) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    let mut ids: Option<Vec<u64>> = None;
    let mut type_filter: Option<Vec<u8>> = None;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"ID") && i + 1 < args.len() {
            let mut list = Vec::new();
            for a in &args[i + 1..] {
                match crate::protocol::request::parse_int(a) {
                    Some(n) if n > 0 => list.push(n as u64),
                    _ => {
                        r.error("ERR Invalid client ID");
                        return r.freeze();
                    }
                }
            }
            ids = Some(list);
            break;
        } else if args[i].eq_ignore_ascii_case(b"TYPE") && i + 1 < args.len() {
            let t = args[i + 1].to_ascii_lowercase();
            if !matches!(
                t.as_slice(),
                b"normal" | b"master" | b"replica" | b"slave" | b"pubsub"
            ) {
                r.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(&args[i + 1])
                ));
                return r.freeze();
            }
            type_filter = Some(t);
            i += 2;
        } else {
            r.error("ERR syntax error");
            return r.freeze();
        }
    }
    let epoch = registry.epoch();
    let mut text = String::new();
    for c in registry.snapshot() {
        if let Some(ids) = &ids {
            if !ids.contains(&c.id) {
                continue;
            }
        }
        if let Some(t) = &type_filter {
            let pubsub = c.is_pubsub();
            let keep = match t.as_slice() {
                b"pubsub" => pubsub,
                b"normal" => !pubsub,
                _ => false,
            };
            if !keep {
                continue;
            }
        }
        text.push_str(&c.line(epoch));
        text.push('\n');
    }
    r.verbatim(text.as_bytes());
    r.freeze()
}

/// CLIENT KILL's arguments, as Redis 7.0 reads them: the old form
/// `CLIENT KILL ip:port` (which may name the caller), or filters
/// `ID`, `TYPE`, `USER`, `ADDR`, `LADDR`, `SKIPME` in pairs. The second
/// value says which form it was (the old one answers `+OK`).
pub fn parse_client_kill(args: &[Bytes]) -> Result<(KillFilter, bool), String> {
    let syntax = || "ERR syntax error".to_string();
    if args.len() == 3 {
        let filter = KillFilter {
            addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
            ..KillFilter::default()
        };
        return Ok((filter, true));
    }
    if args.len() < 3 || args.len() % 2 != 0 {
        return Err(syntax());
    }
    let mut f = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    for pair in args[2..].chunks_exact(2) {
        let (option, value) = (pair[0].to_ascii_lowercase(), &pair[1]);
        let text = || String::from_utf8_lossy(value).into_owned();
        match option.as_slice() {
            b"id" => match crate::protocol::request::parse_int(value) {
                Some(id) if id > 0 => f.id = Some(id as u64),
                _ => return Err("ERR client-id should be greater than 0".to_string()),
            },
            b"type" => match value.to_ascii_lowercase().as_slice() {
                b"normal" => f.pubsub = Some(false),
                b"pubsub" => f.pubsub = Some(true),
                b"master" | b"replica" | b"slave" => f.nobody = true,
                _ => return Err(format!("ERR Unknown client type '{}'", text())),
            },
            // Whether the user exists is the backend's to say (see
            // `client_kill` in session/login.rs).
            b"user" => f.user = Some(value.clone()),
            b"addr" => f.addr = Some(text()),
            b"laddr" => f.laddr = Some(text()),
            b"skipme" => match value.to_ascii_lowercase().as_slice() {
                b"yes" => f.skip_me = true,
                b"no" => f.skip_me = false,
                _ => return Err(syntax()),
            },
            _ => return Err(syntax()),
        }
    }
    Ok((f, false))
}

/// CLIENT KILL's reply: the old form says `+OK` or that no client had
/// that address; the filter form counts the clients killed.
pub fn client_kill_reply(proto: Protocol, old_form: bool, killed: usize) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    match (old_form, killed) {
        (true, 0) => r.error("ERR No such client"),
        (true, _) => r.simple("OK"),
        (false, n) => r.integer(n as i64),
    };
    r.freeze()
}

/// CLIENT INFO
pub fn client_info(proto: Protocol, me: &ClientInfo, registry: &ClientRegistry) -> Bytes {
    let mut r = ReplyBuf::new(proto);
    let mut line = me.line(registry.epoch());
    line.push('\n');
    r.verbatim(line.as_bytes());
    r.freeze()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<Bytes> {
        s.split(' ')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn hello_errors_match_redis() {
        assert_eq!(
            parse_hello(&a("HELLO x")).unwrap_err(),
            "ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(
            parse_hello(&a("HELLO 4")).unwrap_err(),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            parse_hello(&a("HELLO 3 FOO")).unwrap_err(),
            "ERR Syntax error in HELLO option 'FOO'"
        );
        let h = parse_hello(&a("HELLO 3 AUTH default pw SETNAME me")).unwrap();
        assert_eq!(h.proto, Some(Protocol::Resp3));
        assert_eq!(h.setname.as_deref(), Some(&b"me"[..]));
        assert!(h.auth.is_some());
    }

    #[test]
    fn names() {
        assert!(valid_name(b"worker-1"));
        assert!(!valid_name(b"a b"));
        assert!(!valid_name(b"a\nb"));
    }
}
