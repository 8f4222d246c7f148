//! strata's users (`auth.mode = "users"`): built from `[[auth.users]]`,
//! changed at runtime by ACL SETUSER/DELUSER, and the ACL log.
//!
//! Each user is an `ArcSwap` that logged-in clients hold: a change made
//! by ACL SETUSER applies to them at their next command, as in Redis,
//! and reading it costs the client one atomic load per command.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::acl::{rules, AclUser};
use super::config::{AuthConfig, UserConfig};

/// One user as clients hold it: its rules (swapped on change) and
/// strata's admin flag.
#[derive(Debug)]
pub struct UserCell {
    /// The current rules; `None` once the user was deleted.
    pub acl: Arc<ArcSwap<Option<AclUser>>>,
    /// Exempt from the deny list.
    pub admin: std::sync::atomic::AtomicBool,
    /// `max_connections` (0: no limit); a reload changes it.
    pub max_connections: AtomicUsize,
    /// Clients logged in as this user now (each holds a [`Connected`]).
    pub connected: AtomicUsize,
}

/// Redis's maxclients text, for one strata user's `max_connections`.
pub const MAX_CONNECTIONS: &str = "ERR max number of clients reached for this user";

/// One client logged in as a user: counted in the user's `connected`
/// while it lives (the client's session holds it), released when the
/// client logs in as someone else, RESETs, or disconnects.
#[derive(Debug)]
pub struct Connected(Arc<UserCell>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UserCell {
    /// A cell for `acl`, counting no client yet.
    pub fn new(acl: Option<AclUser>, admin: bool, max_connections: usize) -> UserCell {
        UserCell {
            acl: Arc::new(ArcSwap::from_pointee(acl)),
            admin: admin.into(),
            max_connections: max_connections.into(),
            connected: AtomicUsize::new(0),
        }
    }

    /// Counts one more client logged in as this user; `None` when that
    /// would pass its `max_connections`.
    pub fn connect(self: &Arc<Self>) -> Option<Arc<Connected>> {
        let max = self.max_connections.load(Ordering::Relaxed);
        let taken = self
            .connected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            });
        taken.ok().map(|_| Arc::new(Connected(self.clone())))
    }
}

/// One ACL LOG entry (Redis's `ACLLogEntry`).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// Times seen (similar entries within 60 s are grouped).
    pub count: u64,
    /// `command`, `key`, `channel` or `auth`.
    pub reason: &'static str,
    /// `toplevel` or `multi`.
    pub context: &'static str,
    /// The command, key, channel, or `AUTH` that was refused.
    pub object: String,
    /// The user.
    pub username: String,
    /// When last seen.
    pub at: Instant,
    /// The client's CLIENT LIST line.
    pub client_info: String,
}

/// Every user, and the ACL log.
#[derive(Debug)]
pub struct Users {
    users: RwLock<BTreeMap<String, Arc<UserCell>>>,
    /// Admin flags, for ACL SAVE.
    log: Mutex<VecDeque<LogEntry>>,
    log_max: usize,
    /// The config file ACL SAVE writes back to.
    pub config_path: Mutex<Option<std::path::PathBuf>>,
    /// What the config's users last read as (rules, hashes, the passwords
    /// read from files and variables, flags): a reload that reads the same
    /// leaves the users as they are, changes made by ACL SETUSER included.
    loaded: Mutex<String>,
}

/// The config's users, built (passwords read from their files and
/// variables): what a reload or ACL LOAD puts in force.
#[derive(Debug)]
pub struct Loaded {
    users: Vec<(UserConfig, AclUser)>,
    fingerprint: String,
}

impl Loaded {
    /// Builds every user of `c`; the first that fails (an unreadable
    /// password file, an unset variable, a bad rule) fails the whole.
    pub fn read(c: &AuthConfig) -> Result<Loaded, String> {
        let mut users = Vec::with_capacity(c.users.len());
        for u in &c.users {
            let acl = build_user(u).map_err(|e| format!("user '{}': {e}", u.name))?;
            users.push((u.clone(), acl));
        }
        let fingerprint = users
            .iter()
            .map(|(u, acl)| format!("{acl:?} admin={} max={}\n", u.admin, u.max_connections))
            .collect();
        Ok(Loaded { users, fingerprint })
    }
}

/// A user from its config entry: rules, then its hashes and plain
/// passwords (from the environment or a file).
pub fn build_user(c: &UserConfig) -> Result<AclUser, String> {
    let mut u = AclUser::with_rules(&c.name, rules::split(&c.rules)).map_err(|(op, e)| {
        format!(
            "Error in ACL SETUSER modifier '{}': {e}",
            String::from_utf8_lossy(&op)
        )
    })?;
    for h in &c.password_sha256 {
        let op = format!("#{h}");
        u.apply(op.as_bytes()).map_err(|e| e.to_string())?;
    }
    if let Some(var) = &c.password_env {
        let pw = std::env::var(var).map_err(|_| format!("password_env {var} is not set"))?;
        u.apply(format!(">{pw}").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    if let Some(path) = &c.password_file {
        let pw = std::fs::read_to_string(path)
            .map_err(|e| format!("password_file {}: {e}", path.display()))?;
        u.apply(format!(">{}", pw.trim_end_matches(['\r', '\n'])).as_bytes())
            .map_err(|e| e.to_string())?;
    }
    Ok(u)
}

impl Users {
    /// From `[auth]` (validated).
    pub fn from_config(c: &AuthConfig) -> Users {
        let mut map = BTreeMap::new();
        for u in &c.users {
            if let Ok(acl) = build_user(u) {
                map.insert(
                    u.name.clone(),
                    Arc::new(UserCell::new(Some(acl), u.admin, u.max_connections)),
                );
            }
        }
        Users {
            users: RwLock::new(map),
            log: Mutex::new(VecDeque::new()),
            log_max: c.acllog_max_len.unwrap_or(128),
            config_path: Mutex::new(c.file.clone()),
            loaded: Mutex::new(Loaded::read(c).map(|l| l.fingerprint).unwrap_or_default()),
        }
    }

    /// True when `loaded` differs from what the config's users last read as.
    pub fn changed(&self, loaded: &Loaded) -> bool {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) != loaded.fingerprint
    }

    /// Puts the config's users in force (a reload whose users changed,
    /// or ACL LOAD), as Redis's ACL LOAD replaces its users: each user's
    /// rules, passwords, admin flag and `max_connections` are the
    /// config's; users it adds exist from now on; users it no longer has
    /// are deleted (as ACL DELUSER; the names are returned, for their
    /// clients to be disconnected). Clients logged in as a user that
    /// stays keep their session and follow its new rules at their next
    /// command; a changed password takes effect at the next AUTH.
    pub fn replace(&self, loaded: Loaded) -> Vec<String> {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let keep: std::collections::BTreeSet<&str> =
            loaded.users.iter().map(|(u, _)| u.name.as_str()).collect();
        let removed: Vec<String> = users
            .keys()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        for name in &removed {
            if let Some(cell) = users.remove(name) {
                cell.acl.store(Arc::new(None));
            }
        }
        for (u, acl) in loaded.users {
            match users.get(&u.name) {
                Some(cell) => {
                    cell.acl.store(Arc::new(Some(acl)));
                    cell.admin.store(u.admin, Ordering::Relaxed);
                    cell.max_connections
                        .store(u.max_connections, Ordering::Relaxed);
                }
                None => {
                    users.insert(
                        u.name.clone(),
                        Arc::new(UserCell::new(Some(acl), u.admin, u.max_connections)),
                    );
                }
            }
        }
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = loaded.fingerprint;
        removed
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<UserCell>> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.get(name).cloned()
    }

    /// Names, sorted (ACL USERS).
    pub fn names(&self) -> Vec<String> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.keys().cloned().collect()
    }

    /// Every user and its rules, sorted by name (ACL LIST, ACL SAVE).
    pub fn all(&self) -> Vec<(String, AclUser, bool)> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter_map(|(n, c)| {
                let acl = c.acl.load();
                (**acl).clone().map(|a| {
                    (
                        n.clone(),
                        a,
                        c.admin.load(std::sync::atomic::Ordering::Relaxed),
                    )
                })
            })
            .collect()
    }

    /// ACL SETUSER: all rules or none (Redis applies them to a copy).
    pub fn set_user(&self, name: &str, ops: &[bytes::Bytes]) -> Result<(), String> {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let cell = users.get(name).cloned();
        let mut acl = cell
            .as_ref()
            .and_then(|c| (**c.acl.load()).clone())
            .unwrap_or_else(|| AclUser::new(name));
        for op in ops {
            acl.apply(op).map_err(|e| {
                format!(
                    "Error in ACL SETUSER modifier '{}': {e}",
                    String::from_utf8_lossy(op)
                )
            })?;
        }
        match cell {
            Some(c) => c.acl.store(Arc::new(Some(acl))),
            None => {
                users.insert(
                    name.to_string(),
                    Arc::new(UserCell::new(Some(acl), false, 0)),
                );
            }
        }
        Ok(())
    }

    /// ACL DELUSER: how many existed. Clients logged in as them can run
    /// nothing more (Redis disconnects them; the session does too).
    pub fn delete(&self, names: &[&str]) -> usize {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for name in names {
            if let Some(cell) = users.remove(*name) {
                cell.acl.store(Arc::new(None));
                n += 1;
            }
        }
        n
    }

    /// ACL LOAD: the users of the config file strata started from, read
    /// again (password files and variables included) and put in force, all
    /// or none. As Redis 7.0's ACL LOAD frees every user object but
    /// `default`'s, the clients logged in as any other user are to be
    /// disconnected: their names are returned. `Err`: the reply's text.
    pub fn load_file(&self) -> Result<Vec<String>, String> {
        let path = self
            .config_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(
                "This Redis instance is not configured to use an ACL file. You may want to \
                 specify users via the ACL SETUSER command and then issue a CONFIG REWRITE \
                 (assuming you have a Redis configuration file set) in order to store users \
                 in the Redis configuration.",
            )?;
        let warn = |e: String| {
            format!(
                "{e}. WARNING: ACL errors detected, no change to the previously active ACL rules was performed"
            )
        };
        let config = crate::config::Config::load(&path).map_err(|e| warn(e.to_string()))?;
        let loaded = Loaded::read(&config.auth).map_err(warn)?;
        let before = self.names();
        self.replace(loaded);
        Ok(before.into_iter().filter(|n| n != "default").collect())
    }

    /// Adds an ACL LOG entry, grouping it with a similar one of the last
    /// 60 s among the 10 newest (acl.c `addACLLogEntry`).
    pub fn log(&self, mut entry: LogEntry) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let similar = log.iter().take(10).position(|e| {
            e.reason == entry.reason
                && e.context == entry.context
                && e.object == entry.object
                && e.username == entry.username
                && entry.at.saturating_duration_since(e.at).as_millis() <= 60_000
        });
        if let Some(i) = similar {
            if let Some(mut old) = log.remove(i) {
                old.count += 1;
                old.at = entry.at;
                old.client_info = std::mem::take(&mut entry.client_info);
                log.push_front(old);
            }
            return;
        }
        log.push_front(entry);
        log.truncate(self.log_max);
    }

    /// The newest `count` entries.
    pub fn log_entries(&self, count: usize) -> Vec<LogEntry> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter().take(count).cloned().collect()
    }

    /// ACL LOG RESET.
    pub fn log_reset(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// ACL SAVE: the users back into the config file's `[[auth.users]]`,
    /// everything else in the file kept as it was (toml_edit), written to
    /// a temporary file next to it and renamed over it, so a crash leaves
    /// the old file or the new one, never half of one. Plain passwords
    /// never reach the file: hashes do (`password_sha256`), and an entry's
    /// `password_env`/`password_file` stay as they were.
    pub fn save(&self) -> Result<(), String> {
        use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table};
        let path = self
            .config_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or("strata was not started from a config file")?;
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut doc: DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| e.to_string())?;
        let auth = doc
            .entry("auth")
            .or_insert(Item::Table(Table::new()))
            .as_table_mut()
            .ok_or("[auth] is not a table")?;
        let old: Vec<Table> = auth
            .get("users")
            .and_then(Item::as_array_of_tables)
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = ArrayOfTables::new();
        for (name, user, admin) in self.all() {
            let mut t = Table::new();
            t["name"] = value(name.as_str());
            if !user.passwords.is_empty() {
                let mut hashes = Array::new();
                for p in &user.passwords {
                    hashes.push(p.as_str());
                }
                t["password_sha256"] = value(hashes);
            }
            let before = old
                .iter()
                .find(|o| o.get("name").and_then(Item::as_str) == Some(name.as_str()));
            for key in ["password_env", "password_file"] {
                if let Some(item) = before.and_then(|o| o.get(key)) {
                    t[key] = item.clone();
                }
            }
            t["rules"] = value(super::acl::describe::without_passwords(&user));
            if admin {
                t["admin"] = value(true);
            }
            if let Some(max) = self
                .get(&name)
                .map(|c| c.max_connections.load(Ordering::Relaxed))
                .filter(|&m| m > 0)
            {
                t["max_connections"] = value(max as i64);
            }
            out.push(t);
        }
        auth.insert("users", Item::ArrayOfTables(out));
        let dir = path.parent().unwrap_or_else(|| std::path::Path::new("."));
        let tmp = dir.join(format!(
            ".{}.acl-save.{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("strata.toml"),
            std::process::id()
        ));
        std::fs::write(&tmp, doc.to_string()).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_user_from_config_accepts_its_password() {
        let c = UserConfig {
            name: "writer".into(),
            password_sha256: vec![rules::hash_password(b"wpw")],
            rules: "on ~* resetchannels +@all -@dangerous -config|set".into(),
            ..UserConfig::default()
        };
        let u = build_user(&c).unwrap();
        assert!(u.accepts(b"wpw"));
    }
}
