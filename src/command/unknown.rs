//! Redis's reply text for a command it does not know, built as
//! `processCommand` builds it: the name cut at 128 bytes, then the first
//! arguments, each quoted, until 128 bytes of them are written, and line
//! breaks turned into spaces (`rejectCommandFormat`), so the error stays one
//! RESP line whatever the client sent.

use bytes::Bytes;

/// Most bytes of the name, and of the arguments together, in the text.
const SHOWN: usize = 128;

/// `ERR unknown command '<name>', with args beginning with: '<arg>' …`
pub fn unknown_command_error(args: &[Bytes]) -> String {
    let name = args
        .first()
        .map(|n| &n[..n.len().min(SHOWN)])
        .unwrap_or(b"");
    let mut shown: Vec<u8> = Vec::new();
    for a in args.iter().skip(1) {
        if shown.len() >= SHOWN {
            break;
        }
        let room = SHOWN - shown.len();
        shown.push(b'\'');
        shown.extend_from_slice(&a[..a.len().min(room)]);
        shown.extend_from_slice(b"' ");
    }
    let text = format!(
        "ERR unknown command '{}', with args beginning with: {}",
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(&shown)
    );
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn as_redis_writes_it() {
        assert_eq!(
            unknown_command_error(&args(&["FOO", "a", "b"])),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            unknown_command_error(&args(&["FOO"])),
            "ERR unknown command 'FOO', with args beginning with: "
        );
    }

    #[test]
    fn long_arguments_are_cut_and_line_breaks_become_spaces() {
        let long = "x".repeat(200);
        let text = unknown_command_error(&args(&["F\r\nOO", &long, "next"]));
        assert!(!text.contains('\r') && !text.contains('\n'));
        assert!(text.contains(&format!("'{}' ", "x".repeat(128))));
        assert!(!text.contains("next"), "{text}");
    }
}
