//! The deny list: commands strata refuses whoever asks, on by default
//! (`[auth.deny]`). They wipe data, stop or reconfigure the server, or
//! take it over (replication, modules, debugging): an application behind
//! a sidecar has no business sending them, and one compromised client
//! could otherwise destroy what every other client shares. A user with
//! `admin = true` is let through (users mode).

use super::acl::ids;
use super::config::DenyConfig;

/// The default list. A container name covers all its subcommands.
pub const DEFAULT: &[&str] = &[
    "flushall",
    "flushdb",
    "config|set",
    "config|rewrite",
    "config|resetstat",
    "debug",
    "shutdown",
    "module",
    "monitor",
    "replicaof",
    "slaveof",
    "sync",
    "psync",
    "migrate",
    "save",
    "bgsave",
    "bgrewriteaof",
    "failover",
    "script|kill",
    "function|kill",
    "function|flush",
    "function|restore",
    "function|delete",
    "script|flush",
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|forget",
    "cluster|meet",
    "cluster|replicate",
    "cluster|reset",
    "cluster|saveconfig",
    "cluster|set-config-epoch",
    "cluster|setslot",
    "cluster|flushslots",
    "cluster|bumpepoch",
];

/// The list, as one entry per ACL id: the rule that names it.
#[derive(Debug, Clone, Default)]
pub struct DenyList {
    rules: Vec<Option<&'static str>>,
    empty: bool,
}

impl DenyList {
    /// From `[auth.deny]` (names checked by `AuthConfig::validate`).
    pub fn from_config(c: &DenyConfig) -> DenyList {
        let mut rules = vec![None; ids::count()];
        if !c.enabled {
            return DenyList { rules, empty: true };
        }
        let names: Vec<String> = match &c.commands {
            Some(list) => list.iter().map(|s| s.to_ascii_lowercase()).collect(),
            None => DEFAULT.iter().map(|s| (*s).to_string()).collect(),
        };
        let allow: Vec<u16> = c
            .allow
            .iter()
            .filter_map(|s| ids::by_name(&s.to_ascii_lowercase()))
            .collect();
        let mut empty = true;
        for name in names {
            let Some(id) = ids::by_name(&name) else {
                continue;
            };
            // The rule text lives as long as strata: leak the few names once.
            let rule: &'static str = ids::name(id);
            for target in std::iter::once(id).chain(ids::children(id).iter().copied()) {
                let allowed = allow.contains(&target)
                    || ids::parent(target).is_some_and(|p| allow.contains(&p));
                if !allowed {
                    rules[usize::from(target)] = Some(rule);
                    empty = false;
                }
            }
        }
        DenyList { rules, empty }
    }

    /// True when nothing is denied (the check is skipped).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The rule that refuses `id`, if any.
    #[inline]
    pub fn rule(&self, id: u16) -> Option<&'static str> {
        self.rules.get(usize::from(id)).copied().flatten()
    }
}

/// The reply to a denied command: names the command and the rule.
pub fn refusal(command: &str, rule: &str) -> String {
    format!("ERR command '{command}' is refused by strata's deny list (rule '{rule}')")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn containers_cover_their_subcommands_and_allow_takes_out() {
        let d = DenyList::from_config(&DenyConfig {
            enabled: true,
            commands: Some(vec!["module".into(), "config|set".into()]),
            allow: vec!["module|list".into()],
        });
        assert_eq!(d.rule(ids::by_name("module|load").unwrap()), Some("module"));
        assert_eq!(d.rule(ids::by_name("module|list").unwrap()), None);
        assert_eq!(d.rule(ids::by_name("config|get").unwrap()), None);
        let off = DenyList::from_config(&DenyConfig {
            enabled: false,
            ..DenyConfig::default()
        });
        assert!(off.is_empty());
        for name in DEFAULT {
            assert!(ids::by_name(name).is_some(), "{name}");
        }
    }
}
