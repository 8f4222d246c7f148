//! A user and Redis's rule operations on it (acl.c `ACLSetUser`,
//! `ACLSetSelector`), with Redis's error texts.

use sha2::{Digest, Sha256};

use super::ids;
use super::table::{ACL_SPECS, CATEGORIES};
use crate::transform::glob::Glob;

/// Read permission on a key pattern (`%R~`).
pub const READ: u8 = 1;
/// Write permission on a key pattern (`%W~`).
pub const WRITE: u8 = 2;

/// One key pattern and what it allows.
#[derive(Debug, Clone)]
pub struct KeyPattern {
    /// The pattern as written.
    pub text: Vec<u8>,
    /// Compiled.
    pub glob: Glob,
    /// [`READ`] and/or [`WRITE`].
    pub perm: u8,
    /// The first byte every matching key starts with, when the pattern
    /// starts with a literal: most patterns turn a key away on it without
    /// running the glob.
    pub first: Option<u8>,
}

/// The literal first byte of a glob pattern, if it has one.
pub fn literal_first(pattern: &[u8]) -> Option<u8> {
    pattern
        .first()
        .copied()
        .filter(|b| !matches!(b, b'*' | b'?' | b'[' | b'\\'))
}

impl KeyPattern {
    /// True when `key` matches (Redis's `stringmatchlen`).
    #[inline]
    pub fn matches(&self, key: &[u8]) -> bool {
        match self.first {
            Some(b) if key.first() != Some(&b) => false,
            _ => self.glob.matches(key),
        }
    }
}

/// One channel pattern.
#[derive(Debug, Clone)]
pub struct ChannelPattern {
    /// The pattern as written (PSUBSCRIBE's patterns are compared to it literally).
    pub text: Vec<u8>,
    /// Compiled (PUBLISH and SUBSCRIBE channels are matched against it).
    pub glob: Glob,
}

/// A user: Redis's `user` with its root selector (strata has no other).
#[derive(Debug, Clone)]
pub struct AclUser {
    /// User name.
    pub name: String,
    /// `on`: may log in.
    pub enabled: bool,
    /// `nopass`: any password logs in.
    pub nopass: bool,
    /// `sanitize-payload` (`Some(true)`), `skip-sanitize-payload`
    /// (`Some(false)`), or neither yet (a user made by ACL SETUSER): kept
    /// for `ACL LIST`, strata itself does not RESTORE.
    pub sanitize: Option<bool>,
    /// Lower-case hex SHA-256 of each accepted password, in order added.
    pub passwords: Vec<String>,
    /// `+@all`/`allcommands` since the last narrowing (Redis's ALLCOMMANDS flag).
    pub allcommands: bool,
    /// `+@all` was the base (Redis's "future commands" bit): `ACL LIST` starts with `+@all`.
    pub future: bool,
    /// One bit per ACL id.
    pub allowed: Vec<u64>,
    /// First arguments allowed for a command whose bit is clear (`+select|0`).
    pub firstargs: Vec<(u16, Vec<String>)>,
    /// `allkeys`/`~*`.
    pub allkeys: bool,
    /// Key patterns, in order added.
    pub patterns: Vec<KeyPattern>,
    /// `allchannels`/`&*`.
    pub allchannels: bool,
    /// Channel patterns, in order added.
    pub channels: Vec<ChannelPattern>,
}

/// Why a rule was refused: Redis's `ACLSetUserStringError` texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    /// ENOENT.
    Unknown,
    /// EINVAL.
    Syntax,
    /// EEXIST.
    AfterAllKeys,
    /// EISDIR.
    AfterAllChannels,
    /// ENODEV.
    NoSuchPassword,
    /// EBADMSG.
    BadHash,
    /// ECHILD.
    FirstArgOfSubcommand,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuleError::Unknown => "Unknown command or category name in ACL",
            RuleError::Syntax => "Syntax error",
            RuleError::AfterAllKeys => {
                "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid \
                 and does not have any effect. Try 'resetkeys' to start with an empty list of \
                 patterns"
            }
            RuleError::AfterAllChannels => {
                "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid \
                 and does not have any effect. Try 'resetchannels' to start with an empty list \
                 of channels"
            }
            RuleError::NoSuchPassword => {
                "The password you are trying to remove from the user does not exist"
            }
            RuleError::BadHash => {
                "The password hash must be exactly 64 characters and contain only lowercase \
                 hexadecimal characters"
            }
            RuleError::FirstArgOfSubcommand => {
                "Allowing first-arg of a subcommand is not supported"
            }
        })
    }
}

/// The lower-case hex SHA-256 of a password, as Redis stores it.
pub fn hash_password(password: &[u8]) -> String {
    hex::encode(Sha256::digest(password))
}

/// True for a valid stored hash (64 lower-case hex digits).
pub fn valid_hash(hash: &[u8]) -> bool {
    hash.len() == 64
        && hash
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn has_spaces(s: &[u8]) -> bool {
    s.iter().any(|&b| b.is_ascii_whitespace() || b == 0)
}

/// The id of a category name (`read`), as a bit in `AclSpec::categories`.
pub fn category_bit(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1u32 << i)
}

impl AclUser {
    /// A new user as Redis creates one: off, no password, no commands,
    /// no keys, no channels (`acl-pubsub-default resetchannels`).
    pub fn new(name: &str) -> AclUser {
        AclUser {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            allcommands: false,
            future: false,
            allowed: vec![0; ids::count().div_ceil(64)],
            firstargs: Vec::new(),
            allkeys: false,
            patterns: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
        }
    }

    /// A user built from rules, applied in order.
    pub fn with_rules<'a, I: IntoIterator<Item = &'a [u8]>>(
        name: &str,
        rules: I,
    ) -> Result<AclUser, (Vec<u8>, RuleError)> {
        let mut u = AclUser::new(name);
        for op in rules {
            u.apply(op).map_err(|e| (op.to_vec(), e))?;
        }
        Ok(u)
    }

    /// True when the command bit of `id` is set.
    #[inline]
    pub fn bit(&self, id: u16) -> bool {
        let i = usize::from(id);
        self.allowed
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    fn set_bit(&mut self, id: u16, on: bool) {
        let i = usize::from(id);
        if let Some(w) = self.allowed.get_mut(i / 64) {
            if on {
                *w |= 1u64 << (i % 64);
            } else {
                *w &= !(1u64 << (i % 64));
                self.allcommands = false;
            }
        }
    }

    /// Redis's `ACLChangeSelectorPerm`: the command and its subcommands.
    fn change_perm(&mut self, id: u16, on: bool) {
        self.set_bit(id, on);
        self.firstargs.retain(|(c, _)| *c != id);
        for &sub in ids::children(id) {
            self.set_bit(sub, on);
        }
    }

    /// `+@cat` / `-@cat`.
    pub(super) fn set_category(&mut self, bit: u32, on: bool) {
        for (i, spec) in ACL_SPECS.iter().enumerate() {
            if spec.categories & bit != 0 {
                if let Ok(id) = u16::try_from(i) {
                    self.change_perm(id, on);
                }
            }
        }
    }

    fn set_all(&mut self, on: bool) {
        let fill = if on { u64::MAX } else { 0 };
        self.allowed.iter_mut().for_each(|w| *w = fill);
        self.allcommands = on;
        self.future = on;
        self.firstargs.clear();
    }

    /// Applies one rule (Redis `ACLSetUser`). Case-insensitive keywords.
    pub fn apply(&mut self, op: &[u8]) -> Result<(), RuleError> {
        if op.is_empty() {
            return Ok(());
        }
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("skip-sanitize-payload") {
            self.sanitize = Some(false);
        } else if is("sanitize-payload") {
            self.sanitize = Some(true);
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if op[0] == b'>' || op[0] == b'#' {
            let hash = if op[0] == b'>' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(RuleError::BadHash);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.nopass = false;
        } else if op[0] == b'<' || op[0] == b'!' {
            let hash = if op[0] == b'<' {
                hash_password(&op[1..])
            } else {
                if !valid_hash(&op[1..]) {
                    return Err(RuleError::BadHash);
                }
                String::from_utf8_lossy(&op[1..]).into_owned()
            };
            let before = self.passwords.len();
            self.passwords.retain(|p| *p != hash);
            if self.passwords.len() == before {
                return Err(RuleError::NoSuchPassword);
            }
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            // Selectors: not supported by strata.
            return Err(RuleError::Syntax);
        } else if is("clearselectors") {
        } else if is("reset") {
            self.nopass = false;
            self.passwords.clear();
            self.allkeys = false;
            self.patterns.clear();
            self.allchannels = false;
            self.channels.clear();
            self.enabled = false;
            self.sanitize = Some(true);
            self.set_all(false);
        } else {
            self.apply_selector(op)?;
        }
        Ok(())
    }

    /// Redis `ACLSetSelector`.
    fn apply_selector(&mut self, op: &[u8]) -> Result<(), RuleError> {
        let is = |w: &str| op.eq_ignore_ascii_case(w.as_bytes());
        if is("allkeys") || is("~*") {
            self.allkeys = true;
            self.patterns.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.patterns.clear();
        } else if is("allchannels") || is("&*") {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.set_all(true);
        } else if is("nocommands") || is("-@all") {
            self.set_all(false);
        } else if op[0] == b'~' || op[0] == b'%' {
            if self.allkeys {
                return Err(RuleError::AfterAllKeys);
            }
            let mut perm = 0;
            let mut offset = 1;
            if op[0] == b'%' {
                // `%~p` (no permission) and `%R` (no `~`) are refused, as
                // Redis 7.2 refuses them; 7.0 accepts the first and then
                // cannot describe the user (serverPanic in ACL LIST).
                let tilde = op.iter().position(|&b| b == b'~');
                if tilde.is_none_or(|t| t < 2) {
                    return Err(RuleError::Syntax);
                }
                while offset < op.len() {
                    let c = op[offset];
                    if c.eq_ignore_ascii_case(&b'r') && perm & READ == 0 {
                        perm |= READ;
                    } else if c.eq_ignore_ascii_case(&b'w') && perm & WRITE == 0 {
                        perm |= WRITE;
                    } else if c == b'~' {
                        offset += 1;
                        break;
                    } else {
                        return Err(RuleError::Syntax);
                    }
                    offset += 1;
                }
            } else {
                perm = READ | WRITE;
            }
            let text = op.get(offset..).unwrap_or_default();
            if has_spaces(text) {
                return Err(RuleError::Syntax);
            }
            match self.patterns.iter_mut().find(|p| p.text == text) {
                Some(p) => p.perm |= perm,
                None => self.patterns.push(KeyPattern {
                    text: text.to_vec(),
                    glob: Glob::new(text),
                    perm,
                    first: literal_first(text),
                }),
            }
            self.allkeys = false;
        } else if op[0] == b'&' {
            if self.allchannels {
                return Err(RuleError::AfterAllChannels);
            }
            let text = &op[1..];
            if has_spaces(text) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c.text == text) {
                self.channels.push(ChannelPattern {
                    text: text.to_vec(),
                    glob: Glob::new(text),
                });
            }
            self.allchannels = false;
        } else if op.len() >= 2 && (op[0] == b'+' || op[0] == b'-') && op[1] == b'@' {
            let bit = category_bit(&op[2..]).ok_or(RuleError::Unknown)?;
            self.set_category(bit, op[0] == b'+');
        } else if op[0] == b'+' {
            let name = String::from_utf8_lossy(&op[1..]).to_ascii_lowercase();
            match name.rfind('|') {
                None => {
                    let id = ids::by_name(&name).ok_or(RuleError::Unknown)?;
                    self.change_perm(id, true);
                }
                Some(bar) => {
                    let (container, sub) = (&name[..bar], &name[bar + 1..]);
                    let id = ids::by_name(container).ok_or(RuleError::Unknown)?;
                    if ids::parent(id).is_some() {
                        return Err(RuleError::FirstArgOfSubcommand);
                    }
                    if sub.is_empty() {
                        return Err(RuleError::Syntax);
                    }
                    if !ids::children(id).is_empty() {
                        let sid = ids::by_name(&name).ok_or(RuleError::Unknown)?;
                        self.change_perm(sid, true);
                    } else {
                        // Redis's first-arg mechanism (`+select|0`).
                        let sub = sub.to_string();
                        match self.firstargs.iter_mut().find(|(c, _)| *c == id) {
                            Some((_, list)) => {
                                if !list.iter().any(|s| s.eq_ignore_ascii_case(&sub)) {
                                    list.push(sub);
                                }
                            }
                            None => self.firstargs.push((id, vec![sub])),
                        }
                    }
                }
            }
        } else if op[0] == b'-' {
            let name = String::from_utf8_lossy(&op[1..]).to_ascii_lowercase();
            let id = ids::by_name(&name).ok_or(RuleError::Unknown)?;
            self.change_perm(id, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// Redis `ACLCheckUserCredentials`: `on`, and `nopass` or a password whose
    /// hash is one of the user's (compared in constant time).
    pub fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hashed = hash_password(password);
        let mut ok = false;
        for p in &self.passwords {
            ok |= constant_time_eq(p.as_bytes(), hashed.as_bytes());
        }
        ok
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits a rules string on ASCII whitespace (`ACL SETUSER`'s arguments
/// written on one line, as in an ACL file or `ACL LIST`).
pub fn split(rules: &str) -> impl Iterator<Item = &[u8]> {
    rules.split_ascii_whitespace().map(str::as_bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn user(rules: &str) -> AclUser {
        AclUser::with_rules("u", split(rules)).unwrap()
    }

    #[test]
    fn categories_and_commands_set_bits_as_redis_does() {
        let u = user("on nopass +@read -get +config|get");
        assert!(u.bit(ids::by_name("mget").unwrap()));
        assert!(!u.bit(ids::by_name("get").unwrap()));
        assert!(u.bit(ids::by_name("config|get").unwrap()));
        assert!(!u.bit(ids::by_name("config|set").unwrap()));
        let u = user("+@all -config");
        assert!(!u.allcommands && u.future);
        assert!(!u.bit(ids::by_name("config|set").unwrap()));
    }

    #[test]
    fn errors_are_redis_texts() {
        let e = AclUser::with_rules("u", split("~* ~a")).unwrap_err();
        assert_eq!(e.1, RuleError::AfterAllKeys);
        assert_eq!(
            AclUser::with_rules("u", split("+nosuch")).unwrap_err().1,
            RuleError::Unknown
        );
        assert_eq!(
            AclUser::with_rules("u", split("+config|get|x"))
                .unwrap_err()
                .1,
            RuleError::FirstArgOfSubcommand
        );
        assert_eq!(
            AclUser::with_rules("u", split("#abc")).unwrap_err().1,
            RuleError::BadHash
        );
        assert_eq!(
            AclUser::with_rules("u", split("%X~a")).unwrap_err().1,
            RuleError::Syntax
        );
    }

    #[test]
    fn passwords_are_checked_by_hash() {
        let u = user("on >secret >other");
        assert!(u.accepts(b"secret") && u.accepts(b"other") && !u.accepts(b"x"));
        let u = user("off >secret");
        assert!(!u.accepts(b"secret"));
        assert_eq!(
            hash_password(b"foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
    }
}
