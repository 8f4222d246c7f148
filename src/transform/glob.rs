//! Redis glob patterns, compiled once and matched without recursion.
//!
//! Rules select keys with the same patterns operators already use with
//! `SCAN … MATCH` and `KEYS`, so the semantics are those of Redis's
//! `stringmatchlen` (util.c), byte for byte:
//!
//! * `*` any run of bytes (including none), `?` exactly one byte;
//! * `[abc]`, `[^abc]`, `[a-z]` (reversed ranges such as `[z-a]` are swapped),
//!   `\x` inside a class is a literal `x`;
//! * `\x` outside a class is a literal `x`; a trailing `\` is a literal `\`;
//! * an unclosed class (`[abc`) ends at the end of the pattern, exactly as in
//!   Redis, which reads its NUL terminator there.
//!
//! Three deliberate differences, none visible with ordinary patterns:
//!
//! * The empty key matches a pattern made only of stars. `stringmatchlen`
//!   says no, but KEYS and SCAN special-case `*` to match every key, and a
//!   rule for `*` is meant the same way.
//! * Class ranges compare bytes unsigned. Redis compares C `char`s, which are
//!   signed on x86, so a range spanning 0x7f/0x80 behaves differently there.
//! * There is no nesting limit. Redis recurses once per `*` and gives up past
//!   1000 levels; here every token but `*` consumes exactly one byte, so the
//!   classic "remember the last star" backtracking is exact and runs in
//!   O(pattern × key) time with no recursion at all. A hostile pattern in a
//!   config file cannot blow the stack or run for exponential time.
//!
//! Patterns are compiled into tokens (a class becomes a 256-bit set), and the
//! common shapes — an exact key, `prefix*`, `*suffix`, `*` — are recognised so
//! that matching them is a single slice comparison on the request path.

/// A compiled Redis glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard at all: the key must equal these bytes.
    Exact(Vec<u8>),
    /// Literal bytes then one `*`.
    Prefix(Vec<u8>),
    /// One `*` then literal bytes.
    Suffix(Vec<u8>),
    /// Only `*`: every key.
    Everything,
    /// Anything else.
    Tokens(Vec<Token>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*` (runs of stars are collapsed into one: they mean the same).
    Star,
    /// `?`
    AnyByte,
    /// A literal byte (escaped or not).
    Byte(u8),
    /// `[…]`, as the set of bytes it accepts (negation already applied).
    Class(ByteSet),
}

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1u64 << (b & 63);
    }

    fn insert_range(&mut self, start: u8, end: u8) {
        for b in start..=end {
            self.insert(b);
        }
    }

    fn invert(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1u64 << (b & 63)) != 0
    }
}

impl Token {
    #[inline]
    fn matches(&self, b: u8) -> bool {
        match *self {
            Token::Star | Token::AnyByte => true,
            Token::Byte(c) => c == b,
            Token::Class(set) => set.contains(b),
        }
    }
}

impl Glob {
    /// Compiles `pattern`. Every byte string is a valid Redis pattern, so
    /// this cannot fail.
    pub fn new(pattern: &[u8]) -> Glob {
        let tokens = tokenize(pattern);
        Glob {
            kind: classify(tokens),
        }
    }

    /// True when `key` matches the pattern, as `SCAN … MATCH` would decide.
    #[inline]
    pub fn matches(&self, key: &[u8]) -> bool {
        match &self.kind {
            Kind::Exact(lit) => key == lit.as_slice(),
            Kind::Prefix(lit) => key.starts_with(lit),
            Kind::Suffix(lit) => key.ends_with(lit),
            Kind::Everything => true,
            Kind::Tokens(tokens) => match_tokens(tokens, key),
        }
    }
}

/// Parses a pattern the way `stringmatchlen` walks it. Each token but `*`
/// consumes exactly one byte of the key, and where a token ends never depends
/// on the key, so parsing once up front is equivalent to Redis's interleaved
/// parse-and-match.
fn tokenize(p: &[u8]) -> Vec<Token> {
    // Redis reads the NUL terminator past the end of the pattern in a few
    // places; `at` reproduces that.
    let at = |i: usize| p.get(i).copied().unwrap_or(0);
    let mut tokens = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => {
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            b'?' => {
                tokens.push(Token::AnyByte);
                i += 1;
            }
            b'[' => {
                i += 1;
                let negate = at(i) == b'^';
                if negate {
                    i += 1;
                }
                let mut set = ByteSet::default();
                loop {
                    let remaining = p.len().saturating_sub(i);
                    if at(i) == b'\\' && remaining >= 2 {
                        i += 1;
                        set.insert(at(i));
                    } else if at(i) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Unclosed class: Redis steps back onto the last
                        // pattern byte so that its `pattern++` ends the match loop.
                        i -= 1;
                        break;
                    } else if remaining >= 3 && at(i + 1) == b'-' {
                        let (a, b) = (at(i), at(i + 2));
                        let (start, end) = if a <= b { (a, b) } else { (b, a) };
                        set.insert_range(start, end);
                        i += 2;
                    } else {
                        set.insert(at(i));
                    }
                    i += 1;
                }
                if negate {
                    set.invert();
                }
                tokens.push(Token::Class(set));
                i += 1;
            }
            b'\\' => {
                if p.len() - i >= 2 {
                    i += 1;
                }
                tokens.push(Token::Byte(p[i]));
                i += 1;
            }
            c => {
                tokens.push(Token::Byte(c));
                i += 1;
            }
        }
    }
    tokens
}

fn classify(tokens: Vec<Token>) -> Kind {
    let literal = |ts: &[Token]| -> Option<Vec<u8>> {
        ts.iter()
            .map(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect()
    };
    match tokens.as_slice() {
        [Token::Star] => Kind::Everything,
        [rest @ .., Token::Star] if literal(rest).is_some() => {
            Kind::Prefix(literal(rest).unwrap_or_default())
        }
        [Token::Star, rest @ ..] if literal(rest).is_some() => {
            Kind::Suffix(literal(rest).unwrap_or_default())
        }
        ts => match literal(ts) {
            Some(lit) => Kind::Exact(lit),
            None => Kind::Tokens(tokens),
        },
    }
}

/// Wildcard matching with a single backtrack point: on a mismatch, the most
/// recent `*` absorbs one more byte and matching resumes after it. Earlier
/// stars never need revisiting, because a later star can absorb anything an
/// earlier one could have.
fn match_tokens(tokens: &[Token], key: &[u8]) -> bool {
    let (mut t, mut k) = (0, 0);
    // (token index of the last star, key index it is currently matched up to)
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(t) {
            if *token == Token::Star {
                star = Some((t, k));
                t += 1;
                continue;
            }
            if let Some(&b) = key.get(k) {
                if token.matches(b) {
                    t += 1;
                    k += 1;
                    continue;
                }
            }
        } else if k == key.len() {
            return true;
        }
        match star {
            Some((st, sk)) if sk < key.len() => {
                star = Some((st, sk + 1));
                t = st + 1;
                k = sk + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A literal port of Redis 7's recursive `stringmatchlen_impl` (without
    /// `nocase`, and with the NUL terminator made explicit), as the oracle.
    fn redis_match(pattern: &[u8], string: &[u8]) -> bool {
        fn imp(p: &[u8], mut pi: usize, s: &[u8], mut si: usize, skip: &mut bool) -> bool {
            let at = |i: usize| p.get(i).copied().unwrap_or(0);
            let plen = |pi: usize| p.len().saturating_sub(pi);
            while plen(pi) > 0 && si < s.len() {
                match at(pi) {
                    b'*' => {
                        while plen(pi) > 0 && at(pi + 1) == b'*' {
                            pi += 1;
                        }
                        if plen(pi) == 1 {
                            return true;
                        }
                        while si < s.len() {
                            if imp(p, pi + 1, s, si, skip) {
                                return true;
                            }
                            if *skip {
                                return false;
                            }
                            si += 1;
                        }
                        *skip = true;
                        return false;
                    }
                    b'?' => si += 1,
                    b'[' => {
                        pi += 1;
                        let not = at(pi) == b'^';
                        if not {
                            pi += 1;
                        }
                        let mut matched = false;
                        loop {
                            if at(pi) == b'\\' && plen(pi) >= 2 {
                                pi += 1;
                                if at(pi) == s[si] {
                                    matched = true;
                                }
                            } else if at(pi) == b']' {
                                break;
                            } else if plen(pi) == 0 {
                                pi -= 1;
                                break;
                            } else if plen(pi) >= 3 && at(pi + 1) == b'-' {
                                let (mut a, mut b) = (at(pi), at(pi + 2));
                                if a > b {
                                    std::mem::swap(&mut a, &mut b);
                                }
                                pi += 2;
                                if s[si] >= a && s[si] <= b {
                                    matched = true;
                                }
                            } else if at(pi) == s[si] {
                                matched = true;
                            }
                            pi += 1;
                        }
                        if not {
                            matched = !matched;
                        }
                        if !matched {
                            return false;
                        }
                        si += 1;
                    }
                    c => {
                        let c = if c == b'\\' && plen(pi) >= 2 {
                            pi += 1;
                            at(pi)
                        } else {
                            c
                        };
                        if c != s[si] {
                            return false;
                        }
                        si += 1;
                    }
                }
                pi += 1;
                if si == s.len() {
                    while at(pi) == b'*' && pi < p.len() {
                        pi += 1;
                    }
                    break;
                }
            }
            plen(pi) == 0 && si == s.len()
        }
        // `stringmatchlen` itself never matches an empty string against
        // `*`, but KEYS and SCAN special-case the pattern `*` to match every
        // key, the empty one included; rules follow KEYS/SCAN.
        if string.is_empty() {
            return pattern.iter().all(|&b| b == b'*');
        }
        imp(pattern, 0, string, 0, &mut false)
    }

    fn m(p: &str, s: &str) -> bool {
        let got = Glob::new(p.as_bytes()).matches(s.as_bytes());
        assert_eq!(
            got,
            redis_match(p.as_bytes(), s.as_bytes()),
            "oracle disagrees on {p:?} {s:?}"
        );
        got
    }

    #[test]
    fn basics() {
        assert!(m("session:*", "session:1"));
        assert!(m("session:*", "session:"));
        assert!(!m("session:*", "sessio"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("*.json", "a.json"));
        assert!(!m("*.json", "a.jsonx"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("exact", "exact"));
        assert!(!m("exact", "exact!"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hallo"), "reversed ranges are swapped");
        assert!(!m("h[a-b]llo", "hcllo"));
        assert!(m("[\\]]", "]"));
        assert!(m("[a\\-z]", "-"));
        assert!(!m("[a\\-z]", "b"));
        // Unclosed class runs to the end of the pattern.
        assert!(m("x[abc", "xb"));
        assert!(!m("x[", "xa"));
        assert!(m("x[^", "xa"));
        // `[a-]` is a range from 'a' to ']' (swapped), as in Redis.
        assert!(m("[a-]", "^"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a\\?", "a?"));
        assert!(m("a\\", "a\\"));
        assert!(m("\\[x]", "[x]"));
    }

    #[test]
    fn fast_paths_are_chosen() {
        assert!(matches!(Glob::new(b"s:*").kind, Kind::Prefix(_)));
        assert!(matches!(Glob::new(b"*:s").kind, Kind::Suffix(_)));
        assert!(matches!(Glob::new(b"k").kind, Kind::Exact(_)));
        assert!(matches!(Glob::new(b"**").kind, Kind::Everything));
        assert!(matches!(Glob::new(b"a\\*").kind, Kind::Exact(_)));
        assert!(matches!(Glob::new(b"a?*").kind, Kind::Tokens(_)));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        // Exponential for naive recursion; linear-ish here.
        let p = "a*".repeat(2000) + "b";
        let s = "a".repeat(5000);
        let g = Glob::new(p.as_bytes());
        let t = std::time::Instant::now();
        assert!(!g.matches(s.as_bytes()));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn agrees_with_redis(
            p in proptest::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..10),
            s in proptest::collection::vec(prop::sample::select(b"ab]^-\\*".to_vec()), 0..10),
        ) {
            prop_assert_eq!(Glob::new(&p).matches(&s), redis_match(&p, &s));
        }

        #[test]
        fn agrees_with_redis_on_any_bytes(
            p in proptest::collection::vec(any::<u8>(), 0..8),
            s in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            prop_assert_eq!(Glob::new(&p).matches(&s), redis_match(&p, &s));
        }
    }
}
