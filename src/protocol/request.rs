//! Client request parsing, with Redis's own limits and error texts.
//!
//! `Ok(None)` ("incomplete") is a normal outcome: the caller reads more and
//! calls again. A [`ParseError`] is fatal for the connection, as in Redis:
//! the error is sent and the connection closed.

use bytes::{Bytes, BytesMut};

use super::INLINE_MAX;

/// One client command: the raw RESP multibulk frame (forwarded unchanged to
/// the backend) and its arguments (slices of that same frame).
#[derive(Debug, Clone)]
pub struct Request {
    /// The command as a RESP array of bulk strings. For inline commands it
    /// is re-encoded, since backends are always spoken to in RESP.
    pub frame: Bytes,
    /// Arguments; `args[0]` is the command name. Never empty.
    pub args: Vec<Bytes>,
}

impl Request {
    /// Builds a request from arguments, encoding the RESP frame.
    pub fn from_args(args: Vec<Bytes>) -> Request {
        let frame = encode_command(&args);
        Request { frame, args }
    }
}

/// Encodes arguments as a RESP array of bulk strings.
pub fn encode_command(args: &[Bytes]) -> Bytes {
    let len: usize = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = BytesMut::with_capacity(len);
    out.extend_from_slice(b"*");
    out.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.extend_from_slice(b"$");
        out.extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// A fatal protocol error. `Display` is the exact text Redis replies with
/// (without the leading `-`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `*` count that is not a number or is too large.
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// `$` length that is not a number, negative, or over proto-max-bulk-len.
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A bulk header that does not start with `$`.
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    /// A `*` header line longer than 64 KiB.
    #[error("ERR Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$` header line longer than 64 KiB.
    #[error("ERR Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline command longer than 64 KiB.
    #[error("ERR Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command with an unterminated quote.
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Argument ranges kept on the stack while a command is parsed.
const INLINE_ARGS: usize = 8;

/// The largest multibulk count Redis accepts from an authenticated client (`INT_MAX`).
const MAX_MULTIBULK: i64 = i32::MAX as i64;

/// Parses client requests out of a read buffer.
#[derive(Debug, Clone)]
pub struct RequestParser {
    max_bulk_len: usize,
}

impl RequestParser {
    /// A parser that refuses bulks longer than `max_bulk_len` (proto-max-bulk-len).
    pub fn new(max_bulk_len: usize) -> RequestParser {
        RequestParser { max_bulk_len }
    }

    /// Parses one request from the front of `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty commands (`*0`,
    /// `*-1`, blank inline lines) are consumed silently, as Redis does.
    pub fn parse(&self, buf: &mut BytesMut) -> Result<Option<Request>, ParseError> {
        loop {
            if buf.is_empty() {
                return Ok(None);
            }
            let parsed = if buf[0] == b'*' {
                self.parse_multibulk(buf)?
            } else {
                parse_inline(buf)?
            };
            match parsed {
                Parsed::Incomplete => return Ok(None),
                Parsed::Empty => continue,
                Parsed::Request(req) => return Ok(Some(req)),
            }
        }
    }

    /// A hint for how many bytes the request at the front of `buf` needs in
    /// total, so the caller can reserve once for a large bulk.
    pub fn size_hint(&self, buf: &[u8]) -> Option<usize> {
        // Only the common case matters: "*N\r\n$LEN\r\n" with a big LEN.
        let first = find_crlf(buf, 0)?;
        let second = find_crlf(buf, first + 2)?;
        if buf.get(first + 2) != Some(&b'$') {
            return None;
        }
        let len = parse_int(&buf[first + 3..second])?;
        usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.max_bulk_len)
            .map(|l| second + 2 + l + 2)
    }

    fn parse_multibulk(&self, buf: &mut BytesMut) -> Result<Parsed, ParseError> {
        let Some(header_end) = find_crlf(buf, 0) else {
            if buf.len() > INLINE_MAX {
                return Err(ParseError::TooBigMultibulkCount);
            }
            return Ok(Parsed::Incomplete);
        };
        let count = parse_int(&buf[1..header_end]).ok_or(ParseError::InvalidMultibulkLength)?;
        if count > MAX_MULTIBULK {
            return Err(ParseError::InvalidMultibulkLength);
        }
        if count <= 0 {
            let _ = buf.split_to(header_end + 2);
            return Ok(Parsed::Empty);
        }
        let count = count as usize;
        // Find the extent and the argument ranges without consuming
        // anything until the whole command is present. Ranges of short
        // commands stay on the stack.
        let mut pos = header_end + 2;
        let mut inline_ranges = [(0usize, 0usize); INLINE_ARGS];
        let mut spilled: Vec<(usize, usize)> = Vec::new();
        #[allow(clippy::needless_range_loop)] // `slot` also decides stack vs heap
        for slot in 0..count {
            if pos >= buf.len() {
                return Ok(Parsed::Incomplete);
            }
            let Some(line_end) = find_crlf(buf, pos) else {
                if buf.len() - pos > INLINE_MAX {
                    return Err(ParseError::TooBigBulkCount);
                }
                return Ok(Parsed::Incomplete);
            };
            if buf[pos] != b'$' {
                return Err(ParseError::ExpectedDollar(buf[pos] as char));
            }
            let len = parse_int(&buf[pos + 1..line_end]).ok_or(ParseError::InvalidBulkLength)?;
            if len < 0 || len as u64 > self.max_bulk_len as u64 {
                return Err(ParseError::InvalidBulkLength);
            }
            let start = line_end + 2;
            let end = start + len as usize;
            if buf.len() < end + 2 {
                return Ok(Parsed::Incomplete);
            }
            if count <= INLINE_ARGS {
                inline_ranges[slot] = (start, end);
            } else {
                spilled.push((start, end));
            }
            // Redis does not check the two bytes after the payload; it skips them.
            pos = end + 2;
        }
        let frame = buf.split_to(pos).freeze();
        let args: Vec<Bytes> = if spilled.is_empty() {
            inline_ranges[..count]
                .iter()
                .map(|&(s, e)| frame.slice(s..e))
                .collect()
        } else {
            spilled
                .into_iter()
                .map(|(s, e)| frame.slice(s..e))
                .collect()
        };
        Ok(Parsed::Request(Request { frame, args }))
    }
}

enum Parsed {
    Incomplete,
    Empty,
    Request(Request),
}

fn parse_inline(buf: &mut BytesMut) -> Result<Parsed, ParseError> {
    // Redis looks for the newline with strchr(), which stops at a NUL byte:
    // a line with a NUL before its newline never completes.
    let Some(newline) = find_before_nul(b'\n', buf) else {
        if buf.len() > INLINE_MAX {
            return Err(ParseError::TooBigInline);
        }
        return Ok(Parsed::Incomplete);
    };
    let mut line_end = newline;
    if line_end > 0 && buf[line_end - 1] == b'\r' {
        line_end -= 1;
    }
    let args = split_args(&buf[..line_end]).ok_or(ParseError::UnbalancedQuotes)?;
    let _ = buf.split_to(newline + 1);
    if args.is_empty() {
        return Ok(Parsed::Empty);
    }
    let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
    Ok(Parsed::Request(Request::from_args(args)))
}

/// Redis's `sdssplitargs`: splits an inline command line, honouring
/// double quotes (with `\n \r \t \b \a \\ \" \xHH` escapes) and single
/// quotes (with `\'`). `None` means unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Redis splits a C string: a NUL byte ends the line.
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let mut args = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return Some(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    current.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    current.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    in_double = false;
                    i += 1;
                    break;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return None;
                    }
                    in_single = false;
                    i += 1;
                    break;
                } else {
                    current.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    c => current.push(c),
                }
            }
            i += 1;
        }
        let _ = (in_double, in_single);
        args.push(current);
    }
}

fn is_space(c: u8) -> bool {
    // C isspace(): space, \t, \n, \v, \f, \r
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// Position of `needle`, unless a NUL byte comes first (C's strchr).
fn find_before_nul(needle: u8, haystack: &[u8]) -> Option<usize> {
    let at = memchr::memchr2(needle, 0, haystack)?;
    (haystack[at] == needle).then_some(at)
}

/// Bytes of a header line scanned byte by byte before switching to memchr.
const SHORT_LINE: usize = 24;

/// Position of the next `\r\n` at or after `from`. Like Redis, a header
/// line ends at the first `\r` (found with strchr, so not past a NUL); the
/// `\n` must follow it.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    // Header lines are a few bytes ("$3", "*16"): a plain loop over the
    // first ones finds their end sooner than memchr's vector setup. Longer
    // lines (only in malformed input) go on with memchr.
    let head = rest.len().min(SHORT_LINE);
    let cr = match rest[..head].iter().position(|&b| b == b'\r' || b == 0) {
        Some(at) if rest[at] == b'\r' => from + at,
        Some(_) => return None,
        None => from + head + find_before_nul(b'\r', &rest[head..])?,
    };
    if cr + 1 < buf.len() {
        Some(cr)
    } else {
        None
    }
}

/// Redis's `string2ll`: a strict decimal integer (optional `-`, no `+`,
/// no leading zeros, no spaces, fits in i64).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ParseError> {
        let parser = RequestParser::new(crate::protocol::DEFAULT_MAX_BULK_LEN);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(req) = parser.parse(&mut buf)? {
            out.push(req.args.iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    #[test]
    fn multibulk_and_pipeline() {
        let got = parse_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
        assert_eq!(
            got,
            vec![vec![b"PING".to_vec()], vec![b"GET".to_vec(), b"k".to_vec()]]
        );
    }

    #[test]
    fn incomplete_consumes_nothing() {
        let parser = RequestParser::new(100);
        let input = &b"*2\r\n$3\r\nGET\r\n$1\r\n"[..];
        let mut buf = BytesMut::from(input);
        assert!(parser.parse(&mut buf).unwrap().is_none());
        assert_eq!(&buf[..], input);
    }

    #[test]
    fn redis_error_texts() {
        let cases: [(&[u8], &str); 6] = [
            (b"*abc\r\n", "ERR Protocol error: invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"*1\r\nfoo\r\n",
                "ERR Protocol error: expected '$', got 'f'",
            ),
            (b"*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"),
            (
                b"SET \"a b\r\n",
                "ERR Protocol error: unbalanced quotes in request",
            ),
            (
                b"*3000000000\r\n",
                "ERR Protocol error: invalid multibulk length",
            ),
        ];
        for (input, text) in cases {
            let err = parse_all(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                text,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bulk_limit() {
        let parser = RequestParser::new(10);
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        assert_eq!(
            parser.parse(&mut buf).unwrap_err(),
            ParseError::InvalidBulkLength
        );
    }

    #[test]
    fn inline_limits() {
        let long = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(parse_all(&long).unwrap_err(), ParseError::TooBigInline);
        let mut header = b"*".to_vec();
        header.extend(std::iter::repeat_n(b'1', INLINE_MAX + 1));
        assert_eq!(
            parse_all(&header).unwrap_err(),
            ParseError::TooBigMultibulkCount
        );
    }

    #[test]
    fn inline_quotes_and_escapes() {
        let got = parse_all(b"set \"a\\x41\\n\" 'it\\'s'\r\n\r\n  \nping\n").unwrap();
        assert_eq!(
            got[0],
            vec![b"set".to_vec(), b"aA\n".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(got[1], vec![b"ping".to_vec()]);
        assert!(split_args(b"\"a\"b").is_none());
        assert_eq!(split_args(b"PING\0junk").unwrap(), vec![b"PING".to_vec()]);
        assert!(split_args(b"\"ab\0cd\"").is_none());
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        assert_eq!(
            parse_all(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n")
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_int(b"12"), Some(12));
        assert_eq!(parse_int(b"-3"), Some(-3));
        assert_eq!(parse_int(b"012"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
        assert_eq!(parse_int(b"-0"), None);
    }
}
