//! CLIENT TRACKING (ON|OFF) [REDIRECT id] [BCAST] [PREFIX p]… [OPTIN]
//! [OPTOUT] [NOLOOP], on its way to the backend.
//!
//! The options are read by the same loop as Redis's (networking.c
//! `clientCommand`), so every error that loop gives comes with Redis's text
//! and in its order; what Redis checks after it (PREFIX without BCAST,
//! switching modes, overlapping prefixes) depends on the connection's
//! state and is left to Redis. The REDIRECT id is strata's: it must name a
//! connected strata client, and Redis gets the listener's id instead.

use std::sync::Arc;

use bytes::Bytes;

use super::{listener, Action, Hook, Link};
use crate::protocol::reply;
use crate::protocol::request::{encode_command, parse_int};
use crate::server::clients::ClientInfo;
use crate::server::Shared;

/// A CLIENT TRACKING command ready to forward.
#[derive(Debug)]
pub struct Prepared {
    /// The request to send instead of the client's (REDIRECT rewritten).
    pub frame: Option<Bytes>,
    /// What the writer does with Redis's reply.
    pub hook: Hook,
}

/// The options as Redis's loop reads them: the REDIRECT id's position and
/// value, or Redis's error.
pub(super) fn parse(
    args: &[Bytes],
    exists: impl Fn(u64) -> bool,
) -> Result<Option<(usize, u64)>, String> {
    let mut redirect: Option<(usize, u64)> = None;
    let mut redir: i64 = 0;
    let mut j = 3;
    while j < args.len() {
        let more = args.len() - 1 - j > 0;
        let opt = &args[j];
        let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
        if is(b"redirect") && more {
            j += 1;
            if redir != 0 {
                return Err("ERR A client can only redirect to a single other client".into());
            }
            redir = parse_int(&args[j])
                .ok_or_else(|| "ERR value is not an integer or out of range".to_string())?;
            // Redis looks the id up as unsigned: 0 and negatives name no one.
            match u64::try_from(redir) {
                Ok(id) if id != 0 && exists(id) => redirect = Some((j, id)),
                _ => return Err("ERR The client ID you want redirect to does not exist".into()),
            }
        } else if is(b"bcast") || is(b"optin") || is(b"optout") || is(b"noloop") {
        } else if is(b"prefix") && more {
            j += 1;
        } else {
            return Err("ERR syntax error".into());
        }
        j += 1;
    }
    Ok(redirect)
}

/// Reads CLIENT TRACKING's arguments and, for `ON REDIRECT <id>`, opens the
/// listener that will serve the target. `Err` is the reply to give instead
/// (Redis's error, or a backend error opening the listener).
pub async fn prepare(
    shared: &Shared,
    info: &ClientInfo,
    args: &[Bytes],
) -> Result<Prepared, Bytes> {
    let redirect =
        parse(args, |id| shared.clients.get(id).is_some()).map_err(|text| reply::error(&text))?;
    let on = args[2].eq_ignore_ascii_case(b"on");
    let Some((at, target_id)) = redirect else {
        return Ok(Prepared {
            frame: None,
            hook: switch(None),
        });
    };
    let mut rewritten: Vec<Bytes> = args.to_vec();
    if !on {
        // OFF (or a mode Redis refuses after its loop): the id was checked
        // as Redis checks it; the backend needs no id of ours.
        rewritten.drain(at - 1..=at);
        return Ok(Prepared {
            frame: Some(encode_command(&rewritten)),
            hook: switch(None),
        });
    }
    let Some(target) = shared.clients.get(target_id) else {
        return Err(reply::error(
            "ERR The client ID you want redirect to does not exist",
        ));
    };
    // The listener goes where this client's tracking connection is.
    let node = info
        .dedicated_on()
        .map(|(node, _)| node)
        .unwrap_or_else(|| shared.backend.primary());
    let (backend_id, task) = listener::open(&node, target).await?;
    rewritten[at] = Bytes::from(backend_id.to_string());
    let link = Link {
        target: target_id,
        backend_id,
        task,
    };
    Ok(Prepared {
        frame: Some(encode_command(&rewritten)),
        hook: switch(Some(Arc::new(link))),
    })
}

fn switch(link: Option<Arc<Link>>) -> Hook {
    Hook {
        action: Action::Switch(link),
        silent: false,
    }
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

    fn run(s: &str) -> Result<Option<(usize, u64)>, String> {
        parse(&a(s), |id| id == 7 || id == 8)
    }

    #[test]
    fn options_are_read_as_redis_reads_them() {
        assert_eq!(run("CLIENT TRACKING on"), Ok(None));
        assert_eq!(
            run("CLIENT TRACKING on BCAST PREFIX a PREFIX b NOLOOP"),
            Ok(None)
        );
        assert_eq!(run("CLIENT TRACKING on REDIRECT 7 OPTIN"), Ok(Some((4, 7))));
        assert_eq!(run("CLIENT TRACKING off REDIRECT 8"), Ok(Some((4, 8))));
        // The id is checked where Redis checks it, in order.
        let missing = Err("ERR The client ID you want redirect to does not exist".to_string());
        assert_eq!(run("CLIENT TRACKING on REDIRECT 9"), missing);
        assert_eq!(run("CLIENT TRACKING on REDIRECT 0"), missing);
        assert_eq!(run("CLIENT TRACKING on REDIRECT -7"), missing);
        assert_eq!(run("CLIENT TRACKING on REDIRECT 9 FOO"), missing);
        assert_eq!(
            run("CLIENT TRACKING on FOO REDIRECT 9"),
            Err("ERR syntax error".into())
        );
        assert_eq!(
            run("CLIENT TRACKING on REDIRECT x"),
            Err("ERR value is not an integer or out of range".into())
        );
        assert_eq!(
            run("CLIENT TRACKING on REDIRECT 7 REDIRECT 8"),
            Err("ERR A client can only redirect to a single other client".into())
        );
        // A trailing REDIRECT or PREFIX without a value is a syntax error.
        assert_eq!(
            run("CLIENT TRACKING on REDIRECT"),
            Err("ERR syntax error".into())
        );
        assert_eq!(
            run("CLIENT TRACKING on PREFIX"),
            Err("ERR syntax error".into())
        );
    }
}
