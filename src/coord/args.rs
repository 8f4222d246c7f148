//! Reading the commands' arguments with Redis's own error texts, so a
//! client sees what it would see from a Redis command taking the same kind
//! of argument.

/// `ERR value is not an integer or out of range` (`getLongLongFromObject`).
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
/// `ERR syntax error`.
pub const SYNTAX: &str = "ERR syntax error";

/// A signed 64-bit integer, as Redis's `string2ll` reads it: optional
/// minus, digits, no leading zeros, no spaces or plus sign.
pub fn int(arg: &[u8]) -> Result<i64, String> {
    let text = std::str::from_utf8(arg).map_err(|_| NOT_AN_INTEGER.to_string())?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || text == "-0"
    {
        return Err(NOT_AN_INTEGER.into());
    }
    text.parse::<i64>().map_err(|_| NOT_AN_INTEGER.to_string())
}

/// A ttl in ms: a positive integer no larger than `max`. Redis's text for
/// SET … PX with a bad time names the command the same way.
pub fn ttl(arg: &[u8], command: &str, max: i64) -> Result<i64, String> {
    let ms = int(arg)?;
    if ms <= 0 || ms > max {
        return Err(format!("ERR invalid expire time in '{command}' command"));
    }
    Ok(ms)
}

/// A blocking timeout in ms: 0 (no limit, as BLPOP's 0) or positive.
pub fn timeout(arg: &[u8]) -> Result<i64, String> {
    let ms = int(arg).map_err(|_| "ERR timeout is not an integer or out of range".to_string())?;
    if ms < 0 {
        return Err("ERR timeout is negative".into());
    }
    Ok(ms)
}

/// A fencing token or other id strata issued: a positive integer.
pub fn token(arg: &[u8]) -> Result<i64, String> {
    let t = int(arg)?;
    if t <= 0 {
        return Err("ERR value is out of range, must be positive".into());
    }
    Ok(t)
}

/// Redis's arity error for `name` (lower case, as Redis prints it).
pub fn wrong_arity(name: &str) -> String {
    format!("ERR wrong number of arguments for '{name}' command")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_redis_reads_them() {
        assert_eq!(int(b"42"), Ok(42));
        assert_eq!(int(b"-7"), Ok(-7));
        assert_eq!(int(b"0"), Ok(0));
        for bad in [
            &b""[..],
            b"+1",
            b" 1",
            b"01",
            b"1.5",
            b"-0",
            b"x",
            b"99999999999999999999",
        ] {
            assert_eq!(int(bad), Err(NOT_AN_INTEGER.to_string()), "{bad:?}");
        }
    }

    #[test]
    fn ttls_timeouts_and_tokens() {
        assert_eq!(ttl(b"100", "lock.acquire", 1000), Ok(100));
        for bad in [&b"0"[..], b"-5", b"1001"] {
            assert_eq!(
                ttl(bad, "lock.acquire", 1000),
                Err("ERR invalid expire time in 'lock.acquire' command".into())
            );
        }
        assert_eq!(timeout(b"0"), Ok(0));
        assert_eq!(timeout(b"-1"), Err("ERR timeout is negative".into()));
        assert!(timeout(b"x")
            .expect_err("an error")
            .contains("not an integer"));
        assert_eq!(token(b"3"), Ok(3));
        assert!(token(b"0")
            .expect_err("an error")
            .contains("must be positive"));
    }
}
