//! Replies: framing what backends send, and encoding what strata answers.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a client (or a backend connection) speaks, chosen by HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// 2 or 3, as HELLO and CLIENT INFO show it.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A malformed reply from a backend: the connection cannot be trusted any more.
#[derive(Debug, thiserror::Error)]
#[error("malformed reply from backend: {0}")]
pub struct BadReply(String);

/// The length of the first complete reply frame in `buf`, or `None` when
/// more bytes are needed.
///
/// Handles every RESP2 and RESP3 type Redis sends, including RESP2's null
/// bulk (`$-1`) and null array (`*-1`) anywhere in an aggregate, and RESP3
/// attributes (`|`, kept with the frame they annotate). It walks the frame
/// without allocating: a count of elements still expected replaces
/// recursion, so nesting depth cannot exhaust the stack.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, BadReply> {
    // Most replies are one simple line or one bulk string: measured
    // without the walk's bookkeeping (the same checks, in the same order).
    match buf.first() {
        Some(b'+' | b'-' | b':') => return Ok(find_crlf(buf).map(|cr| cr + 2)),
        Some(b'$') => {
            let Some(cr) = find_crlf(buf) else {
                return Ok(None);
            };
            let len = parse_len(&buf[1..cr]).ok_or_else(|| BadReply("bad bulk length".into()))?;
            if len < 0 {
                if len != -1 {
                    return Err(BadReply("negative bulk length".into()));
                }
                return Ok(Some(cr + 2));
            }
            let end = (cr + 2).saturating_add(len as usize).saturating_add(2);
            return Ok((buf.len() >= end).then_some(end));
        }
        _ => {}
    }
    let mut pos = 0usize;
    let mut remaining: u64 = 1;
    while remaining > 0 {
        if pos >= buf.len() {
            return Ok(None);
        }
        let Some(cr) = find_crlf(&buf[pos..]).map(|c| c + pos) else {
            return Ok(None);
        };
        if cr == pos {
            return Err(BadReply("empty line where a type byte was expected".into()));
        }
        remaining -= 1;
        let kind = buf[pos];
        let header = &buf[pos + 1..cr];
        pos = cr + 2;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                let len = parse_len(header).ok_or_else(|| BadReply("bad bulk length".into()))?;
                if len < 0 {
                    if kind != b'$' || len != -1 {
                        return Err(BadReply("negative bulk length".into()));
                    }
                    continue;
                }
                let end = pos.saturating_add(len as usize).saturating_add(2);
                if buf.len() < end {
                    return Ok(None);
                }
                pos = end;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = parse_len(header).ok_or_else(|| BadReply("bad aggregate length".into()))?;
                if n < 0 {
                    if kind != b'*' || n != -1 {
                        return Err(BadReply("negative aggregate length".into()));
                    }
                    continue;
                }
                let n = n as u64;
                remaining = remaining.saturating_add(match kind {
                    b'%' => n * 2,
                    b'|' => n * 2 + 1, // the attribute's pairs, then the frame it annotates
                    _ => n,
                });
            }
            other => return Err(BadReply(format!("unknown type byte 0x{other:02x}"))),
        }
    }
    Ok(Some(pos))
}

/// True when a complete frame is a RESP3 push (`>`): out-of-band data that
/// answers no request.
pub fn is_push(frame: &[u8]) -> bool {
    frame.first() == Some(&b'>')
}

/// True when a complete frame is an error reply (`-` or `!`).
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-') | Some(b'!'))
}

/// The elements of an aggregate reply frame (array, set or push) as byte
/// ranges of `frame`, each a complete sub-frame. `None` for other frames.
pub fn aggregate_elements(frame: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    if !matches!(frame.first(), Some(b'*') | Some(b'>') | Some(b'~')) {
        return None;
    }
    let cr = find_crlf(frame)?;
    let count = parse_len(&frame[1..cr])?;
    let mut pos = cr + 2;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count.max(0) {
        let len = frame_len(&frame[pos..]).ok()??;
        out.push(pos..pos + len);
        pos += len;
    }
    Some(out)
}

/// The payload of a simple or bulk string frame.
pub fn string_payload(frame: &[u8]) -> Option<&[u8]> {
    let cr = find_crlf(frame)?;
    match frame.first()? {
        b'+' => Some(&frame[1..cr]),
        b'$' => {
            let len = parse_len(&frame[1..cr])?;
            let start = cr + 2;
            (len >= 0).then(|| &frame[start..start + len as usize])
        }
        b'=' => {
            // Verbatim string: "txt:" prefix.
            let len = parse_len(&frame[1..cr])?;
            let start = cr + 2;
            frame.get(start + 4..start + len as usize)
        }
        _ => None,
    }
}

/// The integer of a `:` frame.
pub fn integer_payload(frame: &[u8]) -> Option<i64> {
    if frame.first() != Some(&b':') {
        return None;
    }
    let cr = find_crlf(frame)?;
    parse_len(&frame[1..cr])
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let cr = buf.iter().position(|&b| b == b'\r')?;
    (cr + 1 < buf.len()).then_some(cr)
}

/// A length or integer header, as `str::parse::<i64>` reads it (an
/// optional sign, then digits), without the UTF-8 check and the generic
/// parser: this runs for every reply frame.
fn parse_len(s: &[u8]) -> Option<i64> {
    if s.len() > 20 {
        return None;
    }
    match s.first()? {
        b'-' => super::decimal(&s[1..], true),
        b'+' => super::decimal(&s[1..], false),
        _ => super::decimal(s, false),
    }
}

/// A buffer of encoded replies, in the client's protocol.
#[derive(Debug, Default)]
pub struct ReplyBuf {
    buf: BytesMut,
    proto: Protocol,
}

impl ReplyBuf {
    /// An empty buffer encoding for `proto`.
    pub fn new(proto: Protocol) -> ReplyBuf {
        ReplyBuf {
            buf: BytesMut::with_capacity(64),
            proto,
        }
    }

    /// The encoded bytes.
    pub fn freeze(self) -> Bytes {
        self.buf.freeze()
    }

    /// `+s`
    pub fn simple(&mut self, s: &str) -> &mut Self {
        self.line(b'+', s.as_bytes())
    }

    /// `-ERR …` (the text must include its code, e.g. "ERR …").
    pub fn error(&mut self, text: &str) -> &mut Self {
        // An error line must not contain CR/LF; Redis replaces them with spaces.
        let clean: String = text
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        self.line(b'-', clean.as_bytes())
    }

    /// `:n`
    pub fn integer(&mut self, n: i64) -> &mut Self {
        self.line(b':', itoa::Buffer::new().format(n).as_bytes())
    }

    /// `$len\r\n…`
    pub fn bulk(&mut self, data: &[u8]) -> &mut Self {
        self.line(b'$', itoa::Buffer::new().format(data.len()).as_bytes());
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
        self
    }

    /// A verbatim text string in RESP3 (`=`), a bulk string in RESP2, as
    /// Redis sends INFO and CLIENT INFO.
    pub fn verbatim(&mut self, text: &[u8]) -> &mut Self {
        match self.proto {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.line(b'=', itoa::Buffer::new().format(text.len() + 4).as_bytes());
                self.buf.put_slice(b"txt:");
                self.buf.put_slice(text);
                self.buf.put_slice(b"\r\n");
                self
            }
        }
    }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) -> &mut Self {
        match self.proto {
            Protocol::Resp2 => self.raw(b"$-1\r\n"),
            Protocol::Resp3 => self.raw(b"_\r\n"),
        }
    }

    /// An array header for `n` elements.
    pub fn array(&mut self, n: usize) -> &mut Self {
        self.line(b'*', itoa::Buffer::new().format(n).as_bytes())
    }

    /// A set header for `n` elements: `~n` in RESP3, `*n` in RESP2.
    pub fn set(&mut self, n: usize) -> &mut Self {
        match self.proto {
            Protocol::Resp2 => self.array(n),
            Protocol::Resp3 => self.line(b'~', itoa::Buffer::new().format(n).as_bytes()),
        }
    }

    /// A map header for `n` pairs: `%n` in RESP3, `*2n` in RESP2.
    pub fn map(&mut self, n: usize) -> &mut Self {
        match self.proto {
            Protocol::Resp2 => self.array(n * 2),
            Protocol::Resp3 => self.line(b'%', itoa::Buffer::new().format(n).as_bytes()),
        }
    }

    /// Already-encoded bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.put_slice(bytes);
        self
    }

    fn line(&mut self, kind: u8, body: &[u8]) -> &mut Self {
        self.buf.reserve(body.len() + 3);
        self.buf.put_u8(kind);
        self.buf.put_slice(body);
        self.buf.put_slice(b"\r\n");
        self
    }
}

/// Shorthand: one error reply.
pub fn error(text: &str) -> Bytes {
    let mut r = ReplyBuf::new(Protocol::Resp2);
    r.error(text);
    r.freeze()
}

/// Shorthand: `+OK`.
pub fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The hand-written header parser reads exactly what `str::parse` does.
    #[test]
    fn parse_len_matches_str_parse() {
        let cases: &[&[u8]] = &[
            b"0",
            b"7",
            b"-1",
            b"+5",
            b"007",
            b"-0",
            b"",
            b"-",
            b"+",
            b"12a",
            b" 1",
            b"1 ",
            b"9223372036854775807",
            b"9223372036854775808",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"+0000000000000000001",
            b"123456789012345678901",
        ];
        for case in cases {
            let expected = std::str::from_utf8(case)
                .ok()
                .and_then(|t| t.parse::<i64>().ok());
            let expected = if case.len() > 20 { None } else { expected };
            assert_eq!(
                parse_len(case),
                expected,
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn frames() {
        assert_eq!(frame_len(b"+OK\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"+OK\r").unwrap(), None);
        assert_eq!(frame_len(b"$3\r\nabc\r\n+").unwrap(), Some(9));
        assert_eq!(frame_len(b"$3\r\nab").unwrap(), None);
        assert_eq!(frame_len(b"$-1\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"*2\r\n$1\r\na\r\n:1\r\n").unwrap(), Some(15));
        assert_eq!(frame_len(b"*2\r\n$1\r\na\r\n").unwrap(), None);
        assert_eq!(frame_len(b"%1\r\n+a\r\n_\r\n").unwrap(), Some(11));
        assert_eq!(frame_len(b">2\r\n+a\r\n#t\r\n").unwrap(), Some(12));
        assert!(frame_len(b"?what\r\n").is_err());
        assert_eq!(frame_len(b"*-1\r\n").unwrap(), Some(5));
        assert_eq!(frame_len(b"*2\r\n$-1\r\n$1\r\nx\r\n").unwrap(), Some(16));
        assert_eq!(frame_len(b"|1\r\n+k\r\n+v\r\n:1\r\n").unwrap(), Some(16));
        assert_eq!(frame_len(b"*3\r\n*-1\r\n*0\r\n_\r\n").unwrap(), Some(16));
        assert!(frame_len(b"$-2\r\n").is_err());
    }

    #[test]
    fn elements() {
        let f = b"*2\r\n$7\r\nmessage\r\n*1\r\n:5\r\n";
        let el = aggregate_elements(f).unwrap();
        assert_eq!(string_payload(&f[el[0].clone()]), Some(&b"message"[..]));
        assert_eq!(el.len(), 2);
    }

    #[test]
    fn encode_by_protocol() {
        let mut r2 = ReplyBuf::new(Protocol::Resp2);
        r2.map(1).bulk(b"a").null();
        assert_eq!(&r2.freeze()[..], b"*2\r\n$1\r\na\r\n$-1\r\n");
        let mut r3 = ReplyBuf::new(Protocol::Resp3);
        r3.map(1).bulk(b"a").null().verbatim(b"x");
        assert_eq!(&r3.freeze()[..], b"%1\r\n$1\r\na\r\n_\r\n=5\r\ntxt:x\r\n");
    }
}
