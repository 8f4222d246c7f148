//! Reading and rewriting request arguments: the lazily copied argument list
//! and the small parsers for counts and options (HSCAN NOVALUES, SORT's
//! BY/GET/STORE) that decide a command's outcome.

use bytes::Bytes;

use super::outcome::Rewrite;

/// The arguments, copied lazily: nothing is allocated until a value changes.
pub(super) struct Args<'a> {
    pub(super) original: &'a [Bytes],
    pub(super) changed: Option<Vec<Bytes>>,
    /// False when only the reply plan is wanted.
    pub(super) seal: bool,
}

impl<'a> Args<'a> {
    pub(super) fn new(original: &'a [Bytes], seal: bool) -> Args<'a> {
        Args {
            original,
            changed: None,
            seal,
        }
    }

    pub(super) fn set(&mut self, i: usize, value: Bytes) {
        // `seal` hands back the very same bytes when it changes nothing;
        // compare pointers, not contents, to notice that for free.
        let same = |o: &Bytes| o.as_ptr() == value.as_ptr() && o.len() == value.len();
        if self.changed.is_none() && self.original.get(i).is_some_and(same) {
            return;
        }
        let args = self.changed.get_or_insert_with(|| self.original.to_vec());
        if let Some(slot) = args.get_mut(i) {
            *slot = value;
        }
    }

    pub(super) fn finish(self) -> Rewrite {
        match self.changed {
            Some(v) => Rewrite::Args(v),
            None => Rewrite::Unchanged,
        }
    }
}

pub(super) fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// A small non-negative integer argument (numkeys), bounded by what the
/// arguments can hold so a huge value cannot make anyone loop or allocate.
pub(super) fn small_count(arg: Option<&Bytes>, bound: usize) -> Option<usize> {
    let n: usize = std::str::from_utf8(arg?).ok()?.parse().ok()?;
    (n <= bound).then_some(n)
}

/// True when HSCAN was given NOVALUES (outside a MATCH/COUNT argument).
pub(super) fn hscan_novalues(args: &[Bytes]) -> bool {
    let mut i = 3;
    while let Some(a) = args.get(i) {
        if eq(a, "MATCH") || eq(a, "COUNT") {
            i += 2;
        } else {
            if eq(a, "NOVALUES") {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// True when SORT never looks inside the stored elements: only `BY nosort`
/// (no GET, no STORE). Sorting compares stored bytes, which are ciphertext
/// or compressed data: numerically it fails, with ALPHA the order is
/// meaningless, so anything else is refused rather than silently wrong.
/// GET looks up other keys' values; STORE copies envelopes bound to this key.
pub(super) fn sort_keeps_values_opaque(args: &[Bytes]) -> bool {
    let mut nosort = false;
    let mut i = 2;
    while let Some(a) = args.get(i) {
        if eq(a, "GET") || eq(a, "STORE") {
            return false;
        }
        if eq(a, "BY") {
            match args.get(i + 1) {
                Some(pattern) if eq(pattern, "nosort") => nosort = true,
                _ => return false,
            }
            i += 2;
            continue;
        }
        i += if eq(a, "LIMIT") { 3 } else { 1 };
    }
    nosort
}
