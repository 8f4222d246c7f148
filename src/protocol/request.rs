//! Client request parsing, with Redis's own limits and error texts.
//!
//! `Ok(None)` ("incomplete") is a normal outcome: the caller reads more and
//! calls again. A [`ParseError`] is fatal for the connection, as in Redis:
//! the error is sent and the connection closed.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::INLINE_MAX;

/// One client command: the raw RESP multibulk frame (forwarded unchanged to
/// the backend) and its arguments.
///
/// The arguments are split out of the frame only when something asks for
/// them all ([`Request::args`]). Most commands are forwarded after looking
/// at their name and perhaps a key ([`ArgList::arg`], read straight from
/// the frame), so they never pay for a `Vec` and a reference count per
/// argument.
#[derive(Debug, Clone)]
pub struct Request {
    /// The command as a RESP array of bulk strings. For inline commands it
    /// is re-encoded, since backends are always spoken to in RESP.
    pub frame: Bytes,
    /// Number of arguments, the command name included. Never 0.
    argc: u32,
    /// Where the first argument's `$` header starts in `frame` (after
    /// `*N\r\n`), so reading an argument skips no line twice.
    first_arg: u16,
    /// The command name's length, when the parser read it (its payload
    /// then follows the canonical `$<len>\r\n` at `first_arg`), else
    /// [`NAME_UNSEEN`]: the lookup reads the name without a walk.
    name_len: u16,
    /// Where the second argument's payload lies in `frame` (start, length),
    /// when the parser saw it: the key of most keyed commands, read in
    /// cluster mode for every command's slot without a walk.
    second: Option<(u32, u32)>,
    /// The arguments as slices of `frame`, once asked for.
    args: OnceLock<Vec<Bytes>>,
}

impl Request {
    /// Builds a request from arguments, encoding the RESP frame.
    pub fn from_args(args: Vec<Bytes>) -> Request {
        Request::with_frame(encode_command(&args), args)
    }

    /// A request from arguments and their frame as already encoded (by
    /// the caller's own encoder: the frame must be a multibulk of `args`).
    pub fn with_frame(frame: Bytes, args: Vec<Bytes>) -> Request {
        Request {
            // A multibulk header is at most "*2147483647\r\n".
            first_arg: BulkWalk::new(&frame).pos.min(usize::from(u16::MAX)) as u16,
            frame,
            argc: u32::try_from(args.len()).unwrap_or(u32::MAX),
            name_len: NAME_UNSEEN,
            second: None,
            args: OnceLock::from(args),
        }
    }

    /// A request whose `frame` the parser has checked: a multibulk of
    /// `argc` bulk strings.
    /// `argc` is at most `i32::MAX` (the parser's limit) and `first_arg`
    /// a few bytes in.
    fn parsed(found: Found, frame: Bytes) -> Request {
        Request {
            frame,
            argc: found.argc as u32,
            first_arg: found.first_arg as u16,
            name_len: found.name_len,
            second: found.second,
            args: OnceLock::new(),
        }
    }

    /// Number of arguments, the command name included.
    pub fn argc(&self) -> usize {
        self.argc as usize
    }

    /// Every argument, `args()[0]` being the command name (never empty).
    pub fn args(&self) -> &[Bytes] {
        self.args.get_or_init(|| {
            let mut out = Vec::with_capacity(self.argc());
            let mut walk = self.walk();
            while let Some(range) = walk.next_range() {
                out.push(self.frame.slice(range));
            }
            out
        })
    }

    /// Argument `i` as [`ArgList::arg`] reads it, inlined for the second
    /// argument when the parser saw where it lies (the key of most keyed
    /// commands): the hot path's checks (the tier rules') read it in a few
    /// instructions instead of a call.
    #[inline(always)]
    pub fn key_arg(&self, i: usize) -> Option<&[u8]> {
        if i == 1 {
            if let Some((at, len)) = self.second {
                return self
                    .frame
                    .get(at as usize..(at as usize).saturating_add(len as usize));
            }
        }
        self.arg_in_frame(i)
    }

    /// Argument `i` without splitting the frame, for looking at a few
    /// arguments of a short command. A long command is split once instead,
    /// so reading all its arguments stays linear.
    fn arg_in_frame(&self, i: usize) -> Option<&[u8]> {
        if i >= self.argc() {
            return None;
        }
        if let Some(args) = self.args.get() {
            return args.get(i).map(|a| &a[..]);
        }
        if i == 1 {
            if let Some((at, len)) = self.second {
                return self.frame.get(at as usize..(at as usize + len as usize));
            }
        }
        if let Some(name) = self.name_range() {
            if i == 0 {
                return self.frame.get(name);
            }
            if self.argc() <= WALK_MAX_ARGS {
                // Walk from the argument after the name.
                let mut walk = BulkWalk {
                    frame: &self.frame,
                    pos: name.end + 2,
                };
                for _ in 1..i {
                    walk.next_range()?;
                }
                return self.frame.get(walk.next_range()?);
            }
        }
        if self.argc() > WALK_MAX_ARGS {
            return self.args().get(i).map(|a| &a[..]);
        }
        let mut walk = self.walk();
        for _ in 0..i {
            walk.next_range()?;
        }
        let range = walk.next_range()?;
        self.frame.get(range)
    }

    /// Where the command name lies in the frame, when the parser saw it.
    fn name_range(&self) -> Option<std::ops::Range<usize>> {
        if self.name_len == NAME_UNSEEN {
            return None;
        }
        let len = usize::from(self.name_len);
        // The parser accepts only canonical lengths (no sign, no leading
        // zero), so the header is `$`, these digits, `\r\n`.
        let digits = match len {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            1000..=9999 => 4,
            _ => 5,
        };
        let start = self.first_arg as usize + 1 + digits + 2;
        Some(start..start + len)
    }

    fn walk(&self) -> BulkWalk<'_> {
        BulkWalk {
            frame: &self.frame,
            pos: self.first_arg as usize,
        }
    }
}

/// [`Request::name_len`] when the name's place is not known (a request
/// built from arguments, or a name of 64 KiB or more).
const NAME_UNSEEN: u16 = u16::MAX;

/// Commands with more arguments than this are split into `Bytes` when one
/// of their arguments is asked for, rather than walked from the start each
/// time.
const WALK_MAX_ARGS: usize = 8;

/// Walks the bulk strings of a frame the parser accepted (or that
/// [`encode_command`] wrote). It reads exactly as the parser does: a header
/// line ends at its first `\r`, and the two bytes after a payload are
/// skipped unread.
struct BulkWalk<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl<'a> BulkWalk<'a> {
    fn new(frame: &'a [u8]) -> BulkWalk<'a> {
        let pos = frame
            .iter()
            .position(|&b| b == b'\r')
            .map_or(frame.len(), |cr| cr + 2);
        BulkWalk { frame, pos }
    }

    /// The byte range of the next argument's payload.
    fn next_range(&mut self) -> Option<std::ops::Range<usize>> {
        let frame = self.frame;
        if frame.get(self.pos) != Some(&b'$') {
            return None;
        }
        // One pass over the header: digits up to the `\r`.
        let mut at = self.pos + 1;
        let mut len = 0usize;
        loop {
            let byte = *frame.get(at)?;
            if byte == b'\r' {
                break;
            }
            len = len
                .checked_mul(10)?
                .checked_add(usize::from(byte.wrapping_sub(b'0')))?;
            at += 1;
        }
        let start = at + 2;
        let end = start.checked_add(len)?;
        if end > frame.len() {
            return None;
        }
        self.pos = end + 2;
        Some(start..end)
    }
}

/// Read access to a command's arguments, whether already split into
/// `Bytes` or still inside a [`Request`]'s frame. The command table's
/// lookup and key finding take this, so the data path can use them
/// without splitting a request.
pub trait ArgList {
    /// Number of arguments, the command name included.
    fn argc(&self) -> usize;
    /// Argument `i` (0 is the command name).
    fn arg(&self, i: usize) -> Option<&[u8]>;
    /// Every argument as `Bytes`.
    fn all(&self) -> &[Bytes];
}

impl ArgList for Request {
    fn argc(&self) -> usize {
        self.argc as usize
    }
    fn arg(&self, i: usize) -> Option<&[u8]> {
        self.arg_in_frame(i)
    }
    fn all(&self) -> &[Bytes] {
        self.args()
    }
}

impl ArgList for [Bytes] {
    fn argc(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> Option<&[u8]> {
        self.get(i).map(|a| &a[..])
    }
    fn all(&self) -> &[Bytes] {
        self
    }
}

/// Owned argument lists (a `Vec`, an array literal) read as the slice they
/// hold.
macro_rules! arg_list_as_slice {
    ($($ty:ty $(, const $n:ident)?);*) => {$(
        impl<$(const $n: usize)?> ArgList for $ty {
            fn argc(&self) -> usize {
                self[..].argc()
            }
            fn arg(&self, i: usize) -> Option<&[u8]> {
                self[..].arg(i)
            }
            fn all(&self) -> &[Bytes] {
                &self[..]
            }
        }
    )*};
}

arg_list_as_slice!(Vec<Bytes>; [Bytes; N], const N);

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
    /// More than 10 arguments from a client that has not logged in.
    #[error("ERR Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk over 16 KiB from a client that has not logged in.
    #[error("ERR Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// Redis's caps on a client that has not logged in (networking.c
/// `processMultibulkBuffer`): more arguments or a longer bulk closes it.
pub const UNAUTHENTICATED_MAX_ARGS: i64 = 10;
/// See [`UNAUTHENTICATED_MAX_ARGS`].
pub const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

/// The largest multibulk count Redis accepts from an authenticated client (`INT_MAX`).
const MAX_MULTIBULK: i64 = i32::MAX as i64;

/// Parses client requests out of a read buffer.
#[derive(Debug, Clone)]
pub struct RequestParser {
    max_bulk_len: usize,
    /// The longest bulk accepted: `max_bulk_len`, or less before AUTH.
    bulk_limit: usize,
    /// The largest argument count accepted.
    count_limit: i64,
}

impl RequestParser {
    /// A parser that refuses bulks longer than `max_bulk_len` (proto-max-bulk-len).
    pub fn new(max_bulk_len: usize) -> RequestParser {
        RequestParser {
            max_bulk_len,
            bulk_limit: max_bulk_len,
            count_limit: MAX_MULTIBULK,
        }
    }

    /// The parser for a client that has not logged in: Redis's caps of 10
    /// arguments and 16 KiB bulks, found from the headers before the
    /// bulk is read, so an unknown client cannot make strata buffer more.
    pub fn unauthenticated(&self) -> RequestParser {
        RequestParser {
            max_bulk_len: self.max_bulk_len,
            bulk_limit: self.max_bulk_len.min(UNAUTHENTICATED_MAX_BULK),
            count_limit: UNAUTHENTICATED_MAX_ARGS,
        }
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

    /// What is at the front of `buf`, without consuming anything: a whole
    /// multibulk request, found in place so the caller can take many out of
    /// its buffer in one piece ([`Found::request`]); or an inline request,
    /// which only [`parse`](RequestParser::parse) takes (it is re-encoded).
    pub fn find(&self, buf: &[u8]) -> Result<Scan, ParseError> {
        match buf.first() {
            None => Ok(Scan::Incomplete),
            Some(b'*') => self.multibulk_extent(buf),
            Some(_) => Ok(Scan::Inline),
        }
    }

    fn parse_multibulk(&self, buf: &mut BytesMut) -> Result<Parsed, ParseError> {
        Ok(match self.multibulk_extent(buf)? {
            Scan::Request(found) => {
                Parsed::Request(found.request(buf.split_to(found.len).freeze()))
            }
            Scan::Empty(len) => {
                let _ = buf.split_to(len);
                Parsed::Empty
            }
            Scan::Incomplete | Scan::Inline => Parsed::Incomplete,
        })
    }

    /// The extent of the multibulk request at the front of `buf`.
    fn multibulk_extent(&self, buf: &[u8]) -> Result<Scan, ParseError> {
        let (count, header_end) = match quick_header(buf, 0) {
            Some((count, cr)) => (count as i64, cr),
            None => {
                let Some(header_end) = find_crlf(buf, 0) else {
                    if buf.len() > INLINE_MAX {
                        return Err(ParseError::TooBigMultibulkCount);
                    }
                    return Ok(Scan::Incomplete);
                };
                let count =
                    parse_int(&buf[1..header_end]).ok_or(ParseError::InvalidMultibulkLength)?;
                (count, header_end)
            }
        };
        if count > self.count_limit {
            return Err(if count > MAX_MULTIBULK {
                ParseError::InvalidMultibulkLength
            } else {
                ParseError::UnauthenticatedMultibulkLength
            });
        }
        if count <= 0 {
            return Ok(Scan::Empty(header_end + 2));
        }
        let count = count as usize;
        // The arguments stay in the frame; only their extent is read.
        let mut pos = header_end + 2;
        let mut name_len = NAME_UNSEEN;
        let mut second = None;
        for i in 0..count {
            let fast = match buf.get(pos) {
                None => return Ok(Scan::Incomplete),
                Some(b'$') => quick_header(buf, pos),
                Some(_) => None,
            };
            let (len, line_end) = match fast {
                Some(header) => header,
                None => match self.bulk_header(buf, pos)? {
                    Some(header) => header,
                    None => return Ok(Scan::Incomplete),
                },
            };
            if len > self.bulk_limit {
                return Err(if len > self.max_bulk_len {
                    ParseError::InvalidBulkLength
                } else {
                    ParseError::UnauthenticatedBulkLength
                });
            }
            let end = line_end + 2 + len;
            if buf.len() < end + 2 {
                return Ok(Scan::Incomplete);
            }
            if i == 0 {
                name_len = u16::try_from(len).unwrap_or(NAME_UNSEEN);
            } else if i == 1 {
                second = u32::try_from(line_end + 2)
                    .ok()
                    .zip(u32::try_from(len).ok());
            }
            // Redis does not check the two bytes after the payload; it skips them.
            pos = end + 2;
        }
        Ok(Scan::Request(Found {
            len: pos,
            argc: count,
            first_arg: header_end + 2,
            name_len,
            second,
        }))
    }
}

/// What [`RequestParser::find`] sees at the front of a buffer.
#[derive(Debug)]
pub enum Scan {
    /// A whole multibulk request.
    Request(Found),
    /// An empty multibulk (`*0`, `*-1`) of this many bytes: Redis skips it.
    Empty(usize),
    /// Not a multibulk: an inline request, for [`RequestParser::parse`].
    Inline,
    /// More bytes are needed.
    Incomplete,
}

/// A whole multibulk request found at the front of a buffer, not yet
/// taken out of it.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    len: usize,
    argc: usize,
    first_arg: usize,
    name_len: u16,
    second: Option<(u32, u32)>,
}

impl Found {
    /// Its length in bytes.
    pub fn byte_len(&self) -> usize {
        self.len
    }

    /// The request, given its bytes: the [`byte_len`](Found::byte_len) bytes it was
    /// found at, taken out of the caller's buffer.
    pub fn request(self, frame: Bytes) -> Request {
        debug_assert_eq!(frame.len(), self.len);
        Request::parsed(self, frame)
    }
}

impl RequestParser {
    /// A bulk header at `pos` the general way, with Redis's errors:
    /// `(length, index of its \r)`, or `None` when the line is not whole.
    fn bulk_header(&self, buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, ParseError> {
        let Some(line_end) = find_crlf(buf, pos) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(ParseError::TooBigBulkCount);
            }
            return Ok(None);
        };
        if buf[pos] != b'$' {
            return Err(ParseError::ExpectedDollar(buf[pos] as char));
        }
        let len = parse_int(&buf[pos + 1..line_end]).ok_or(ParseError::InvalidBulkLength)?;
        match usize::try_from(len) {
            Ok(len) => Ok(Some((len, line_end))),
            Err(_) => Err(ParseError::InvalidBulkLength),
        }
    }
}

/// Digits a header takes on the fast path: any length up to this fits in
/// a `usize` without overflow checks.
const QUICK_DIGITS: usize = 18;

/// The common header, `*N\r\n` or `$N\r\n` with `N` a positive decimal
/// of at most [`QUICK_DIGITS`] digits and no leading zero, read in one
/// pass: `(N, index of the \r)`. The type byte at `pos` is not checked.
/// `None` for anything else (a zero, a sign, a long or malformed line,
/// too few bytes): the general path then decides, and for a header this
/// returns `Some` for, the general path gives the same answer.
#[inline]
fn quick_header(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let first = buf.get(pos + 1)?.wrapping_sub(b'1');
    if first > 8 {
        return None;
    }
    let mut value = u64::from(first) + 1;
    let mut at = pos + 2;
    loop {
        let byte = *buf.get(at)?;
        if byte == b'\r' {
            break;
        }
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 || at - pos > QUICK_DIGITS {
            return None;
        }
        value = value * 10 + u64::from(digit);
        at += 1;
    }
    // As with `find_crlf`: the byte after the `\r` must have arrived.
    if at + 1 >= buf.len() {
        return None;
    }
    Some((usize::try_from(value).ok()?, at))
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
    if digits.first() == Some(&b'0') {
        return None;
    }
    super::decimal(digits, negative)
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
            out.push(req.args().iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    /// Arguments read from the frame (short commands, before and after
    /// splitting; long ones) are the ones the frame holds, payloads with
    /// CR LF and the unchecked two bytes after a payload included.
    #[test]
    fn arguments_read_from_the_frame() {
        let parser = RequestParser::new(crate::protocol::DEFAULT_MAX_BULK_LEN);
        let long: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
        let mut commands: Vec<Vec<Vec<u8>>> = vec![
            vec![b"GET".to_vec(), b"k".to_vec()],
            vec![b"SET".to_vec(), b"a\r\nb".to_vec(), Vec::new()],
            vec![b"ECHO".to_vec(), vec![b'x'; 300]],
            // Names whose length takes 1, 2, 4, 5 digits, an empty one,
            // and one too long for the parser to note its place.
            vec![b"X".to_vec(), b"k".to_vec()],
            vec![b"CLIENTTWELV".to_vec(), b"k".to_vec(), b"v".to_vec()],
            vec![vec![b'n'; 1000], b"k".to_vec()],
            vec![vec![b'n'; 10_000], b"k".to_vec()],
            vec![Vec::new(), b"k".to_vec()],
            vec![vec![b'n'; 70_000], b"k".to_vec()],
        ];
        commands.push(
            std::iter::once(b"MGET".to_vec())
                .chain(long.iter().map(|k| k.as_bytes().to_vec()))
                .collect(),
        );
        for args in &commands {
            let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            let mut wire = BytesMut::from(&encode_command(&args)[..]);
            let req = parser.parse(&mut wire).unwrap().unwrap();
            assert_eq!(req.argc(), args.len());
            for (i, arg) in args.iter().enumerate() {
                assert_eq!(req.arg(i), Some(&arg[..]), "walked, arg {i}");
            }
            assert_eq!(req.arg(args.len()), None);
            assert_eq!(req.args(), &args[..]);
            for (i, arg) in args.iter().enumerate() {
                assert_eq!(req.arg(i), Some(&arg[..]), "split, arg {i}");
            }
        }
        // Redis skips the two bytes after a payload without looking at them.
        let mut wire = BytesMut::from(&b"*2\r\n$3\r\nGETxx$1\r\nkZZ"[..]);
        let req = parser.parse(&mut wire).unwrap().unwrap();
        assert_eq!(req.arg(1), Some(&b"k"[..]));
        assert_eq!(req.args()[0], Bytes::from_static(b"GET"));
        // Inline commands are re-encoded with their arguments kept.
        let mut wire = BytesMut::from(&b"set  k 'v w'\r\n"[..]);
        let req = parser.parse(&mut wire).unwrap().unwrap();
        assert_eq!(req.arg(2), Some(&b"v w"[..]));
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

    /// The header the general path reads: `find_crlf`, then a strict
    /// integer between the type byte and the `\r`.
    fn general_header(buf: &[u8]) -> Option<(i64, usize)> {
        let cr = find_crlf(buf, 0)?;
        Some((parse_int(&buf[1..cr])?, cr))
    }

    fn quick_agrees(buf: &[u8]) {
        if let Some((value, cr)) = quick_header(buf, 0) {
            assert_eq!(
                general_header(buf),
                Some((value as i64, cr)),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn quick_header_takes_only_what_the_general_path_reads_alike() {
        let taken = [
            &b"$3\r\n"[..],
            b"*1\r\n",
            b"$128\r\nxx",
            b"$999999999999999999\r\n",
        ];
        for buf in taken {
            assert!(quick_header(buf, 0).is_some(), "{buf:?}");
            quick_agrees(buf);
        }
        // Left to the general path: zero, signs, leading zeros, 19 digits,
        // no `\n` yet, NUL, spaces, an empty length.
        let left = [
            &b"$0\r\n"[..],
            b"$-1\r\n",
            b"$+1\r\n",
            b"$01\r\n",
            b"$1000000000000000000\r\n",
            b"$12\r",
            b"$1\x002\r\n",
            b"$1 \r\n",
            b"$\r\n",
            b"$12",
        ];
        for buf in left {
            assert_eq!(quick_header(buf, 0), None, "{buf:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn quick_header_agrees_with_the_general_path(
            body in proptest::collection::vec(proptest::sample::select(b"0123456789\r\n-+ \x00a".to_vec()), 0..24)
        ) {
            let mut buf = b"$".to_vec();
            buf.extend_from_slice(&body);
            quick_agrees(&buf);
        }
    }
}
