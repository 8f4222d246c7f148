//! May a user run a command: Redis's `ACLSelectorCheckCmd` (acl.c) over
//! strata's command table. The command bit (or an allowed first
//! argument), then every key the key specs find against the key patterns
//! with the read/write permission the spec needs, then the channels of
//! PUBLISH/SPUBLISH and the SUBSCRIBE family.

use super::ids;
use super::rules::{AclUser, READ, WRITE};
use super::table::ACL_SPECS;
use crate::command::{key_indexes, BeginSearch, CommandSpec, FindKeys, Flags, KeySpec};
use crate::protocol::ArgList;

/// Why a command was refused (Redis's `ACL_DENIED_*`), with the index of
/// the argument at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The command (or subcommand) is not allowed.
    Command,
    /// The key at this argument index is not allowed.
    Key(usize),
    /// The channel at this argument index is not allowed.
    Channel(usize),
}

impl Denied {
    /// Redis 7.0.15's reply (processCommand), with the `-`.
    pub fn reply_text(self, fullname: &str) -> String {
        match self {
            Denied::Command => {
                format!("NOPERM this user has no permissions to run the '{fullname}' command")
            }
            Denied::Key(_) => {
                "NOPERM this user has no permissions to access one of the keys used as arguments"
                    .to_string()
            }
            Denied::Channel(_) => "NOPERM this user has no permissions to access one of the \
                                   channels used as arguments"
                .to_string(),
        }
    }

    /// ACL LOG's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Command => "command",
            Denied::Key(_) => "key",
            Denied::Channel(_) => "channel",
        }
    }
}

/// How a command names channels (db.c `getChannelsFromCommand`).
enum Channels {
    None,
    /// Argument 1 (PUBLISH, SPUBLISH).
    Publish,
    /// Arguments 1.. (SUBSCRIBE, SSUBSCRIBE).
    Subscribe,
    /// Arguments 1.., compared literally with the user's patterns (PSUBSCRIBE).
    Pattern,
}

fn channels_of(name: &str) -> Channels {
    match name {
        "publish" | "spublish" => Channels::Publish,
        "subscribe" | "ssubscribe" => Channels::Subscribe,
        "psubscribe" => Channels::Pattern,
        _ => Channels::None,
    }
}

/// The permission a key needs when its spec says it depends on the
/// arguments (db.c `setGetKeys`, `bitfieldGetKeys`): SET needs read only
/// with GET; BITFIELD needs write unless it only GETs.
fn variable_perm<A: ArgList + ?Sized>(name: &str, args: &A) -> u8 {
    let argc = args.argc();
    let arg = |i: usize| args.arg(i).unwrap_or_default();
    match name {
        "set" => {
            if (3..argc).any(|i| arg(i).eq_ignore_ascii_case(b"get")) {
                READ | WRITE
            } else {
                WRITE
            }
        }
        "bitfield" => {
            let mut i = 2;
            while i < argc {
                let rem = argc - i - 1;
                let a = arg(i);
                if a.eq_ignore_ascii_case(b"get") && rem >= 2 {
                    i += 3;
                } else if a.eq_ignore_ascii_case(b"overflow") && rem >= 1 {
                    i += 2;
                } else {
                    return READ | WRITE;
                }
            }
            READ
        }
        _ => READ | WRITE,
    }
}

/// Checks `args` (the whole command, name first) against `user`.
pub fn check<A: ArgList + ?Sized>(
    user: &AclUser,
    id: u16,
    spec: &CommandSpec,
    args: &A,
) -> Result<(), Denied> {
    let acl = ACL_SPECS.get(usize::from(id));
    if !user.allcommands && !acl.is_some_and(|a| a.no_auth) && !user.bit(id) {
        let idx = if ids::parent(id).is_some() { 2 } else { 1 };
        let allowed = user
            .firstargs
            .iter()
            .find(|(c, _)| *c == id)
            .zip(args.arg(idx))
            .is_some_and(|((_, list), arg)| {
                list.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(arg))
            });
        if args.argc() < 2 || !allowed {
            return Err(Denied::Command);
        }
    }
    if !user.allkeys {
        if let Some(acl) = acl {
            for (i, key_spec) in spec.key_specs.iter().enumerate() {
                let perm = acl.key_perms.get(i).copied().unwrap_or(0);
                if perm & 4 != 0 {
                    continue; // not a key (shard channels)
                }
                // One key spec at a time: each needs its own permission.
                let one;
                let searched = if spec.key_specs.len() == 1 {
                    spec
                } else {
                    one = CommandSpec {
                        key_specs: std::slice::from_ref(key_spec),
                        ..*spec
                    };
                    &one
                };
                let need = if perm & 8 != 0 {
                    variable_perm(spec.name, args)
                } else {
                    perm & (READ | WRITE)
                };
                // The common shape (GET, SET, HGET, …): one key at a fixed
                // index, without the general key-spec walk.
                if let [KeySpec {
                    begin: BeginSearch::Index(i),
                    find: FindKeys::Range { last_key: 0, .. },
                }] = spec.key_specs
                {
                    if let Some(key) = args.arg(*i).filter(|_| *i >= 1) {
                        if !user
                            .patterns
                            .iter()
                            .any(|p| p.perm & need == need && p.matches(key))
                        {
                            return Err(Denied::Key(*i));
                        }
                    }
                    continue;
                }
                for idx in &key_indexes(searched, args) {
                    let key = args.arg(idx).unwrap_or_default();
                    let ok = user
                        .patterns
                        .iter()
                        .any(|p| p.perm & need == need && p.matches(key));
                    if !ok {
                        return Err(Denied::Key(idx));
                    }
                }
            }
        }
    }
    // Only pub/sub commands name channels (one flag test for the rest).
    if !user.allchannels && spec.has(Flags::PUBSUB) {
        let kind = channels_of(spec.name);
        let last = match kind {
            Channels::None => 0,
            Channels::Publish => 2.min(args.argc()),
            Channels::Subscribe | Channels::Pattern => args.argc(),
        };
        for idx in 1..last {
            let channel = args.arg(idx).unwrap_or_default();
            let ok = user.channels.iter().any(|c| match kind {
                Channels::Pattern => c.text == channel,
                _ => c.glob.matches(channel),
            });
            if !ok {
                return Err(Denied::Channel(idx));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::Bytes;

    use super::super::rules::split;
    use super::*;

    fn run(rules: &str, line: &str) -> Result<(), Denied> {
        let u = AclUser::with_rules("u", split(rules)).unwrap();
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        let spec = crate::command::lookup(args.as_slice()).unwrap();
        check(&u, ids::of(spec).unwrap(), spec, args.as_slice())
    }

    #[test]
    fn keys_need_the_permission_their_spec_names() {
        let r = "on +@all %R~r:* %W~w:* ~rw:*";
        assert_eq!(run(r, "GET r:1"), Ok(()));
        assert_eq!(run(r, "SET r:1 v"), Err(Denied::Key(1)));
        assert_eq!(run(r, "SET w:1 v"), Ok(()));
        assert_eq!(run(r, "SET w:1 v GET"), Err(Denied::Key(1)));
        assert_eq!(run(r, "BITFIELD r:1 GET u8 0"), Ok(()));
        assert_eq!(run(r, "BITFIELD r:1 SET u8 0 1"), Err(Denied::Key(1)));
        assert_eq!(run(r, "GET w:1"), Err(Denied::Key(1)));
        assert_eq!(run(r, "COPY r:1 w:1"), Ok(()));
        assert_eq!(run(r, "EVAL x 2 rw:1 o"), Err(Denied::Key(4)));
        assert_eq!(
            run("on +@all -config|set ~*", "CONFIG SET a b"),
            Err(Denied::Command)
        );
        assert_eq!(run("on -@all +select|0", "SELECT 0"), Ok(()));
        assert_eq!(run("on -@all +select|0", "SELECT 1"), Err(Denied::Command));
    }

    #[test]
    fn channels_are_matched_or_compared_literally() {
        let r = "on +@all ~* resetchannels &news.*";
        assert_eq!(run(r, "PUBLISH news.a x"), Ok(()));
        assert_eq!(run(r, "PUBLISH other x"), Err(Denied::Channel(1)));
        assert_eq!(run(r, "SUBSCRIBE news.a other"), Err(Denied::Channel(2)));
        assert_eq!(run(r, "PSUBSCRIBE news.*"), Ok(()));
        assert_eq!(run(r, "PSUBSCRIBE news.a*"), Err(Denied::Channel(1)));
    }
}
