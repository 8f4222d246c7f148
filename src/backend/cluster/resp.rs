//! Reading parts of a complete reply frame as byte slices, without decoding
//! it into values. `protocol::reply` finds frame boundaries; these helpers
//! add what the cluster code needs on top: RESP3 maps, integers sent as
//! either `:` or bulk strings, nulls of both protocols.

use crate::protocol::reply::{frame_len, integer_payload, string_payload};

/// The elements of an aggregate frame: an array (`*`), set (`~`) or push
/// (`>`), or a map (`%`) flattened into key, value, key, value… as RESP2
/// sends maps. `None` for any other frame, a null array, or a malformed one.
pub(crate) fn elements(frame: &[u8]) -> Option<Vec<&[u8]>> {
    let kind = *frame.first()?;
    if !matches!(kind, b'*' | b'~' | b'>' | b'%') {
        return None;
    }
    let (count, mut pos) = header(frame)?;
    let count = usize::try_from(count).ok()?;
    let count = if kind == b'%' {
        count.checked_mul(2)?
    } else {
        count
    };
    // Each element takes at least 3 bytes: a hostile count cannot make us
    // reserve more than the frame could hold.
    let mut out = Vec::with_capacity(count.min(frame.len() / 3));
    for _ in 0..count {
        let len = frame_len(frame.get(pos..)?).ok()??;
        out.push(frame.get(pos..pos + len)?);
        pos += len;
    }
    Some(out)
}

/// The count of an aggregate header and where its first element starts.
pub(crate) fn header(frame: &[u8]) -> Option<(i64, usize)> {
    let cr = memchr::memchr(b'\r', frame)?;
    if frame.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    let n = parse_i64(frame.get(1..cr)?)?;
    Some((n, cr + 2))
}

/// The payload of a simple, bulk or verbatim string frame.
pub(crate) fn text(frame: &[u8]) -> Option<&[u8]> {
    string_payload(frame)
}

/// An integer sent as `:n`, or as a string of digits (SCAN's cursor is a
/// bulk string).
pub(crate) fn int(frame: &[u8]) -> Option<i64> {
    integer_payload(frame).or_else(|| parse_i64(text(frame)?))
}

/// An unsigned integer sent as `:n` or as a string of digits.
pub(crate) fn uint(frame: &[u8]) -> Option<u64> {
    match frame.first()? {
        b':' => u64::try_from(integer_payload(frame)?).ok(),
        _ => parse_u64(text(frame)?),
    }
}

/// True for a null: `$-1`, `*-1` (RESP2) or `_` (RESP3).
pub(crate) fn is_null(frame: &[u8]) -> bool {
    frame.starts_with(b"_\r\n") || frame.starts_with(b"$-1\r\n") || frame.starts_with(b"*-1\r\n")
}

/// A decimal `i64`, optionally negative, nothing else.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    let magnitude = parse_u64(digits)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// A decimal `u64`: digits only, at least one.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut value: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn maps_flatten_like_resp2() {
        let f = b"%2\r\n$1\r\na\r\n:1\r\n+b\r\n_\r\n";
        let el = elements(f).unwrap();
        assert_eq!(el.len(), 4);
        assert_eq!(text(el[0]), Some(&b"a"[..]));
        assert_eq!(int(el[1]), Some(1));
        assert!(is_null(el[3]));
    }

    #[test]
    fn integers_either_way() {
        assert_eq!(int(b":-5\r\n"), Some(-5));
        assert_eq!(int(b"$2\r\n17\r\n"), Some(17));
        assert_eq!(uint(b"$20\r\n18446744073709551615\r\n"), Some(u64::MAX));
        assert_eq!(uint(b":-1\r\n"), None);
        assert_eq!(int(b"$2\r\n1x\r\n"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    }

    #[test]
    fn malformed_aggregates() {
        assert!(elements(b"*2\r\n:1\r\n").is_none());
        assert!(elements(b"*-1\r\n").is_none());
        assert!(elements(b"+OK\r\n").is_none());
        assert_eq!(elements(b"*0\r\n").unwrap().len(), 0);
        assert!(elements(b"*99999999999\r\n").is_none());
    }
}
