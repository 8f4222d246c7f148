//! A user back as rules, as Redis writes it (acl.c `ACLDescribeUser`,
//! `ACLDescribeSelectorCommandRules`): for `ACL LIST`, `ACL GETUSER` and
//! `ACL SAVE`. The command rules are found the way Redis finds them (the
//! best-fitting categories first, then single commands), so they read
//! the same; the single commands may come in another order than Redis's
//! (Redis walks a hash table).

use super::ids;
use super::rules::{AclUser, READ, WRITE};
use super::table::{ACL_SPECS, CATEGORIES};

/// Key patterns as `ACL LIST` writes them (`~a %R~b`), or `~*`.
pub fn keys(u: &AclUser) -> Vec<String> {
    // A `*` pattern with every permission (`%RW~*`) allows every key as
    // `allkeys` does, and `~*` is how it is written back. Redis 7.0 writes
    // the other patterns after it too (`~* ~a`), a text its own parser
    // then refuses ("Adding a pattern after the * pattern …"); they add no
    // key, so only `~*` is written (found by the round-trip proptest).
    if u.allkeys
        || u.patterns
            .iter()
            .any(|p| p.text == b"*" && p.perm == READ | WRITE)
    {
        return vec!["~*".to_string()];
    }
    u.patterns
        .iter()
        .map(|p| {
            let prefix = match p.perm {
                x if x == READ | WRITE => "~",
                READ => "%R~",
                WRITE => "%W~",
                _ => "~",
            };
            format!("{prefix}{}", String::from_utf8_lossy(&p.text))
        })
        .collect()
}

/// Channel patterns (`&a &b`), or `&*`.
pub fn channels(u: &AclUser) -> Vec<String> {
    if u.allchannels {
        return vec!["&*".to_string()];
    }
    u.channels
        .iter()
        .map(|c| format!("&{}", String::from_utf8_lossy(&c.text)))
        .collect()
}

/// The flags `ACL GETUSER` lists.
pub fn flags(u: &AclUser) -> Vec<&'static str> {
    let mut f = vec![if u.enabled { "on" } else { "off" }];
    if u.nopass {
        f.push("nopass");
    }
    match u.sanitize {
        Some(false) => f.push("skip-sanitize-payload"),
        Some(true) => f.push("sanitize-payload"),
        None => {}
    }
    f
}

/// The whole user as one line of rules, without `user <name>` (ACL LIST).
pub fn user(u: &AclUser) -> String {
    with_passwords(u, true)
}

/// The rules without the password hashes (ACL SAVE writes those apart).
pub fn without_passwords(u: &AclUser) -> String {
    with_passwords(u, false)
}

fn with_passwords(u: &AclUser, passwords: bool) -> String {
    let mut parts: Vec<String> = flags(u).into_iter().map(String::from).collect();
    if passwords {
        parts.extend(u.passwords.iter().map(|p| format!("#{p}")));
    }
    parts.extend(keys(u));
    if !u.allchannels {
        parts.push("resetchannels".to_string());
    }
    parts.extend(channels(u));
    parts.push(commands(u));
    parts.join(" ")
}

fn count(bits: &AclUser, cat: u32) -> (usize, usize) {
    let (mut on, mut off) = (0, 0);
    for (i, spec) in ACL_SPECS.iter().enumerate() {
        if spec.categories & cat != 0 {
            if u16::try_from(i).is_ok_and(|id| bits.bit(id)) {
                on += 1;
            } else {
                off += 1;
            }
        }
    }
    (on, off)
}

/// The command rules (`+@all -config`, `-@all +@read +set`).
pub fn commands(u: &AclUser) -> String {
    let mut rules = Vec::new();
    let additive = !u.future;
    let base = if additive { "-@all" } else { "+@all" };
    rules.push(base.to_string());
    let mut fake = AclUser::new("");
    let _ = fake.apply(base.as_bytes());
    let mut temp = AclUser::new("");
    temp.allowed.clone_from(&u.allowed);
    let mut applied = vec![false; CATEGORIES.len()];
    loop {
        let mut best = None;
        let (mut mindiff, mut maxsame) = (usize::MAX, 0);
        for (j, _) in CATEGORIES.iter().enumerate() {
            if applied[j] {
                continue;
            }
            let (on, off) = count(&temp, 1 << j);
            let (diff, same) = if additive { (off, on) } else { (on, off) };
            if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                best = Some(j);
                mindiff = diff;
                maxsame = same;
            }
        }
        let Some(j) = best else { break };
        fake.set_category(1 << j, additive);
        temp.set_category(1 << j, !additive);
        rules.push(format!(
            "{}@{}",
            if additive { '+' } else { '-' },
            CATEGORIES[j]
        ));
        applied[j] = true;
    }
    // Single commands: each container, then its subcommands, as Redis recurses.
    for (i, spec) in ACL_SPECS.iter().enumerate() {
        let Ok(id) = u16::try_from(i) else { continue };
        if ids::parent(id).is_some() {
            continue;
        }
        let _ = spec;
        single(u, &mut fake, id, &mut rules);
        for &sub in ids::children(id) {
            single(u, &mut fake, sub, &mut rules);
        }
        if !u.bit(id) {
            if let Some((_, args)) = u.firstargs.iter().find(|(c, _)| *c == id) {
                for a in args {
                    rules.push(format!("+{}|{a}", ids::name(id)));
                }
            }
        }
    }
    rules.join(" ")
}

fn single(u: &AclUser, fake: &mut AclUser, id: u16, rules: &mut Vec<String>) {
    let want = u.bit(id);
    if want != fake.bit(id) {
        rules.push(format!("{}{}", if want { '+' } else { '-' }, ids::name(id)));
        let op = format!("{}{}", if want { '+' } else { '-' }, ids::name(id));
        let _ = fake.apply(op.as_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::rules::split;
    use super::*;

    fn described(rules: &str) -> String {
        user(&AclUser::with_rules("u", split(rules)).unwrap())
    }

    #[test]
    fn reads_as_redis_writes_it() {
        assert_eq!(described(""), "off resetchannels -@all");
        assert_eq!(described("on nopass ~* &* +@all"), "on nopass ~* &* +@all");
        assert_eq!(
            described("on >foo ~app:* %R~c:* &ch* -@all +@read"),
            "on #2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae \
             ~app:* %R~c:* resetchannels &ch* -@all +@read"
        );
        assert_eq!(
            described("+@all -config"),
            "off resetchannels +@all -config"
        );
    }
}
