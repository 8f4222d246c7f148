//! The arguments of the write commands the mirror runs itself, read as
//! Redis reads them (t_string.c `parseExtendedStringArgumentsOrReply` and
//! `getExpireMillisecondsOrReply`, expire.c `expireGenericCommand`), with
//! Redis's own error texts: strata answers these commands, so a bad
//! argument must get the reply Redis would give.

use bytes::Bytes;

use crate::protocol::request::parse_int;

pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

fn expire_error(command: &str) -> String {
    format!("ERR invalid expire time in '{command}' command")
}

/// When a written key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No TTL (a plain SET clears any TTL).
    None,
    /// At this absolute Unix time, in milliseconds.
    At(i64),
    /// Keep the key's current TTL (SET … KEEPTTL).
    Keep,
}

/// SET's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetArgs {
    pub key: Bytes,
    pub value: Bytes,
    pub nx: bool,
    pub xx: bool,
    pub get: bool,
    pub expiry: Expiry,
}

impl SetArgs {
    /// Whether the outcome depends on the key's current state.
    pub fn reads_state(&self) -> bool {
        self.nx || self.xx || self.get || self.expiry == Expiry::Keep
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Millis,
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`,
/// `now_ms` being the time relative expiries count from.
pub fn parse_set(args: &[Bytes], now_ms: i64) -> Result<SetArgs, String> {
    let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
    // (unit, relative, argument) of the last EX/PX/EXAT/PXAT.
    let mut expire: Option<(Unit, bool, &Bytes)> = None;
    let mut which = 0u8; // 1 EX, 2 PX, 3 EXAT, 4 PXAT
    let mut j = 3;
    while j < args.len() {
        let opt = args[j].to_ascii_lowercase();
        let next = args.get(j + 1);
        match opt.as_slice() {
            b"nx" if !xx => nx = true,
            b"xx" if !nx => xx = true,
            b"get" => get = true,
            b"keepttl" if which == 0 => keepttl = true,
            b"ex" | b"px" | b"exat" | b"pxat" => {
                let this = match opt.as_slice() {
                    b"ex" => 1,
                    b"px" => 2,
                    b"exat" => 3,
                    _ => 4,
                };
                // Redis accepts the same option twice, not two different ones.
                if keepttl || (which != 0 && which != this) {
                    return Err(SYNTAX.into());
                }
                let Some(next) = next else {
                    return Err(SYNTAX.into());
                };
                which = this;
                expire = Some(match this {
                    1 => (Unit::Seconds, true, next),
                    2 => (Unit::Millis, true, next),
                    3 => (Unit::Seconds, false, next),
                    _ => (Unit::Millis, false, next),
                });
                j += 1;
            }
            _ => return Err(SYNTAX.into()),
        }
        j += 1;
    }
    let expiry = match expire {
        Some((unit, relative, arg)) => Expiry::At(expire_ms(arg, unit, relative, now_ms, "set")?),
        None if keepttl => Expiry::Keep,
        None => Expiry::None,
    };
    Ok(SetArgs {
        key: args[1].clone(),
        value: args[2].clone(),
        nx,
        xx,
        get,
        expiry,
    })
}

/// `SETEX key seconds value` / `PSETEX key ms value`.
pub fn parse_setex(args: &[Bytes], millis: bool, now_ms: i64) -> Result<SetArgs, String> {
    let (unit, name) = if millis {
        (Unit::Millis, "psetex")
    } else {
        (Unit::Seconds, "setex")
    };
    let at = expire_ms(&args[2], unit, true, now_ms, name)?;
    Ok(SetArgs {
        key: args[1].clone(),
        value: args[3].clone(),
        nx: false,
        xx: false,
        get: false,
        expiry: Expiry::At(at),
    })
}

/// SET's and SETEX's expire argument (getExpireMillisecondsOrReply): a
/// positive integer; the absolute time in milliseconds.
fn expire_ms(
    arg: &[u8],
    unit: Unit,
    relative: bool,
    now_ms: i64,
    cmd: &str,
) -> Result<i64, String> {
    let n = parse_int(arg).ok_or_else(|| NOT_INTEGER.to_string())?;
    if n <= 0 || (unit == Unit::Seconds && n > i64::MAX / 1000) {
        return Err(expire_error(cmd));
    }
    let mut ms = if unit == Unit::Seconds { n * 1000 } else { n };
    if relative {
        ms = ms.checked_add(now_ms).ok_or_else(|| expire_error(cmd))?;
    }
    if ms <= 0 {
        return Err(expire_error(cmd));
    }
    Ok(ms)
}

/// EXPIRE's conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
}

impl ExpireFlags {
    /// Whether a key whose expiry is `current` (ms, `None`: no TTL) takes
    /// the new expiry `when` (expire.c's checks, in its order).
    pub fn allow(self, current: Option<i64>, when: i64) -> bool {
        if self.nx && current.is_some() {
            return false;
        }
        if self.xx && current.is_none() {
            return false;
        }
        if self.gt && current.is_none_or(|c| when <= c) {
            return false;
        }
        if self.lt && current.is_some_and(|c| when >= c) {
            return false;
        }
        true
    }
}

/// `EXPIRE|PEXPIRE|EXPIREAT|PEXPIREAT key time [NX|XX|GT|LT]`: the
/// absolute expiry in ms (possibly in the past: the key is then deleted)
/// and the conditions.
pub fn parse_expire(
    args: &[Bytes],
    command: &str,
    now_ms: i64,
) -> Result<(Bytes, i64, ExpireFlags), String> {
    let mut f = ExpireFlags::default();
    for opt in &args[3..] {
        match opt.to_ascii_lowercase().as_slice() {
            b"nx" => f.nx = true,
            b"xx" => f.xx = true,
            b"gt" => f.gt = true,
            b"lt" => f.lt = true,
            _ => {
                return Err(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(opt)
                ))
            }
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err("ERR NX and XX, GT or LT options at the same time are not compatible".into());
    }
    if f.gt && f.lt {
        return Err("ERR GT and LT options at the same time are not compatible".into());
    }
    let mut when = parse_int(&args[2]).ok_or_else(|| NOT_INTEGER.to_string())?;
    let seconds = matches!(command, "expire" | "expireat");
    let base = if matches!(command, "expire" | "pexpire") {
        now_ms
    } else {
        0
    };
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(expire_error(command));
        }
        when *= 1000;
    }
    if when > i64::MAX - base {
        return Err(expire_error(command));
    }
    Ok((args[1].clone(), when + base, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|p| Bytes::from(p.to_string())).collect()
    }

    #[test]
    fn set_options_as_redis_reads_them() {
        let now = 1_000_000;
        let s = parse_set(&a("SET k v EX 10"), now).expect("ok");
        assert_eq!(s.expiry, Expiry::At(now + 10_000));
        let s = parse_set(&a("SET k v pxat 5 nx get"), now).expect("ok");
        assert!(s.nx && s.get && s.expiry == Expiry::At(5));
        assert_eq!(
            parse_set(&a("SET k v KEEPTTL"), now).expect("ok").expiry,
            Expiry::Keep
        );
        assert_eq!(
            parse_set(&a("SET k v EX 1 EX 2"), now).expect("ok").expiry,
            Expiry::At(now + 2000)
        );
        for bad in [
            "SET k v NX XX",
            "SET k v EX 1 PX 2",
            "SET k v KEEPTTL EX 1",
            "SET k v EX",
            "SET k v FOO",
        ] {
            assert_eq!(parse_set(&a(bad), now), Err(SYNTAX.into()), "{bad}");
        }
        assert_eq!(parse_set(&a("SET k v EX x"), now), Err(NOT_INTEGER.into()));
        assert_eq!(
            parse_set(&a("SET k v EX 0"), now),
            Err("ERR invalid expire time in 'set' command".into())
        );
        assert_eq!(
            parse_setex(&a("SETEX k -1 v"), false, now),
            Err("ERR invalid expire time in 'setex' command".into())
        );
    }

    #[test]
    fn expire_options_as_redis_reads_them() {
        let (_, when, f) = parse_expire(&a("EXPIRE k 10 gt"), "expire", 5).expect("ok");
        assert_eq!(when, 10_005);
        assert!(f.gt);
        assert_eq!(
            parse_expire(&a("EXPIRE k 10 nx xx"), "expire", 0).map(|_| ()),
            Err("ERR NX and XX, GT or LT options at the same time are not compatible".into())
        );
        assert_eq!(
            parse_expire(&a("EXPIRE k 10 foo"), "expire", 0).map(|_| ()),
            Err("ERR Unsupported option foo".into())
        );
        let gt = ExpireFlags {
            gt: true,
            ..Default::default()
        };
        assert!(!gt.allow(None, 5));
        assert!(gt.allow(Some(4), 5));
        let lt = ExpireFlags {
            lt: true,
            ..Default::default()
        };
        assert!(lt.allow(None, 5));
        assert!(!lt.allow(Some(4), 5));
    }
}
