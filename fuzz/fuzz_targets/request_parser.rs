//! Feeds arbitrary bytes to strata's request parser, in chunks whose size
//! comes from the first input byte (as reads from a socket would split
//! them), and to the reply framer. Nothing may panic, hang or allocate
//! without bound; the parser never consumes more than it was given, and
//! every request it returns is exactly the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata::protocol::reply::frame_len;
use strata::protocol::{RequestParser, DEFAULT_MAX_BULK_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    // Low 6 bits: chunk size 1..=64. Top bit: a small bulk limit (1 MiB,
    // the least Redis allows) instead of the default 512 MiB.
    let chunk = usize::from(control & 0x3f) + 1;
    let max_bulk = if control & 0x80 != 0 {
        1024 * 1024
    } else {
        DEFAULT_MAX_BULK_LEN
    };
    parse_in_chunks(input, chunk, max_bulk);
    frame_replies(input);
});

fn parse_in_chunks(input: &[u8], chunk: usize, max_bulk: usize) {
    let parser = RequestParser::new(max_bulk);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        let _ = parser.size_hint(&buf);
        loop {
            let before = buf.clone();
            match parser.parse(&mut buf) {
                Ok(Some(req)) => {
                    let used = before.len() - buf.len();
                    assert!(used > 0, "a request consumed nothing");
                    assert!(!req.args().is_empty(), "a request without a command name");
                    for arg in req.args() {
                        assert!(arg.len() <= max_bulk, "an argument over the bulk limit");
                    }
                    // What is left is exactly the tail of what was there.
                    assert_eq!(&before[used..], &buf[..]);
                    if req.frame.len() <= used && before[..used].ends_with(&req.frame) {
                        // A multibulk request: forwarded as the very bytes sent
                        // (after any empty commands skipped before it).
                    } else {
                        // An inline request: re-encoded from its arguments.
                        assert_eq!(
                            &req.frame[..],
                            &encode(req.args())[..],
                            "frame is neither the bytes sent nor their encoding"
                        );
                    }
                }
                Ok(None) => {
                    // Empty commands (`*0`, blank lines) may be skipped; nothing else.
                    let used = before.len() - buf.len();
                    assert_eq!(&before[used..], &buf[..]);
                    break;
                }
                // A protocol error closes the connection: stop feeding.
                Err(_) => return,
            }
        }
        assert!(buf.len() <= fed, "more bytes buffered than fed");
    }
}

/// RESP multibulk encoding, written independently of strata's.
fn encode(args: &[bytes::Bytes]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn frame_replies(input: &[u8]) {
    let mut rest = input;
    while let Ok(Some(n)) = frame_len(rest) {
        assert!(
            n > 0 && n <= rest.len(),
            "frame_len {n} for {} bytes",
            rest.len()
        );
        rest = &rest[n..];
    }
}
