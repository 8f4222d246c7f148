//! The ACL id of a command table entry: its index in [`ACL_SPECS`], which
//! is the bit a user's command bitmap keeps for it (Redis gives every
//! command and subcommand an id the same way).
//!
//! The session looks a command up once, into a `&'static CommandSpec`; the
//! id is found from that pointer in a small open-addressed table built
//! once, so a check costs a multiply and a load or two rather than a
//! string hash of the name.

use std::sync::OnceLock;

use super::table::ACL_SPECS;
use crate::command::{CommandSpec, COMMANDS};

/// Number of ACL ids (commands and subcommands).
pub fn count() -> usize {
    ACL_SPECS.len()
}

/// Slots in the pointer table: a power of two at least twice the entries.
const SLOTS: usize = 1024;
const EMPTY: u16 = u16::MAX;

struct Ids {
    /// (spec address, id), open addressing with linear probing.
    slots: Vec<(usize, u16)>,
    /// For each id, the ids of its subcommands.
    children: Vec<Vec<u16>>,
    /// For each id, its container's id (subcommands only).
    parent: Vec<Option<u16>>,
}

fn ids() -> &'static Ids {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(build)
}

#[inline]
fn slot_of(addr: usize) -> usize {
    ((addr >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) & (SLOTS - 1)
}

/// A bit for `spec` among `SLOTS` (its home slot in the pointer table):
/// what a filter over specs keys on, with no table lookup.
#[inline]
pub fn bit(spec: &'static CommandSpec) -> usize {
    slot_of(spec as *const CommandSpec as usize)
}

/// The home-slot bit of every spec whose id `wanted` picks.
pub fn bits(wanted: impl Fn(u16) -> bool) -> Vec<usize> {
    ids()
        .slots
        .iter()
        .filter(|(_, id)| *id != EMPTY && wanted(*id))
        .map(|(addr, _)| slot_of(*addr))
        .collect()
}

fn build() -> Ids {
    let mut ids = Ids {
        slots: vec![(0, EMPTY); SLOTS],
        children: vec![Vec::new(); ACL_SPECS.len()],
        parent: vec![None; ACL_SPECS.len()],
    };
    let mut insert = |spec: &'static CommandSpec| -> Option<u16> {
        let id = by_name(spec.name)?;
        let addr = spec as *const CommandSpec as usize;
        let mut s = slot_of(addr);
        while ids.slots[s].1 != EMPTY {
            s = (s + 1) & (SLOTS - 1);
        }
        ids.slots[s] = (addr, id);
        Some(id)
    };
    let mut links = Vec::new();
    for cmd in COMMANDS {
        let parent = insert(cmd);
        for sub in cmd.subcommands {
            if let (Some(p), Some(c)) = (parent, insert(sub)) {
                links.push((p, c));
            }
        }
    }
    for (p, c) in links {
        ids.children[usize::from(p)].push(c);
        ids.parent[usize::from(c)] = Some(p);
    }
    ids
}

/// The id of the command named `name` (lower case, `container|sub`).
pub fn by_name(name: &str) -> Option<u16> {
    ACL_SPECS
        .binary_search_by(|s| s.name.as_bytes().cmp(name.as_bytes()))
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

/// The id of a command table entry (`None` for one Redis 7.0 lacks).
#[inline]
pub fn of(spec: &'static CommandSpec) -> Option<u16> {
    let table = ids();
    let addr = spec as *const CommandSpec as usize;
    let mut s = slot_of(addr);
    loop {
        let (a, id) = table.slots[s];
        if id == EMPTY {
            return None;
        }
        if a == addr {
            return Some(id);
        }
        s = (s + 1) & (SLOTS - 1);
    }
}

/// The subcommands of `id`.
pub fn children(id: u16) -> &'static [u16] {
    ids()
        .children
        .get(usize::from(id))
        .map_or(&[], Vec::as_slice)
}

/// The container of `id`, for a subcommand.
pub fn parent(id: u16) -> Option<u16> {
    ids().parent.get(usize::from(id)).copied().flatten()
}

/// The full name of `id` (`config|set`).
pub fn name(id: u16) -> &'static str {
    ACL_SPECS.get(usize::from(id)).map_or("", |s| s.name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_table_entry_has_its_id() {
        for cmd in COMMANDS {
            assert_eq!(name(of(cmd).unwrap()), cmd.name);
            for sub in cmd.subcommands {
                let id = of(sub).unwrap();
                assert_eq!(name(id), sub.name);
                assert_eq!(parent(id), of(cmd));
            }
        }
        let config = by_name("config").unwrap();
        assert!(children(config).contains(&by_name("config|set").unwrap()));
    }
}
