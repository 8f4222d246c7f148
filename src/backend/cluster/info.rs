//! INFO across the cluster: one text for a client that thinks it talks to
//! one Redis.
//!
//! Sections describing one server (Server, Clients, Memory, …) come from
//! the first primary; `# Keyspace` is summed over every primary (keys and
//! expires added, `avg_ttl` weighted by expires), so `INFO keyspace` counts
//! the whole cluster's keys as DBSIZE does; and a `# Cluster` section lists
//! what each primary reported of itself in one line.

use std::collections::BTreeMap;

use crate::protocol::reply::{is_error, string_payload};

/// Merges the INFO replies of the primaries (`(address, reply frame)`, in
/// shard order). An error from any primary is returned as is (`Err`).
pub fn merge(replies: &[(&str, &[u8])]) -> Result<String, Vec<u8>> {
    let mut texts = Vec::with_capacity(replies.len());
    for (addr, frame) in replies {
        if is_error(frame) {
            return Err(frame.to_vec());
        }
        let text = string_payload(frame)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        texts.push((*addr, text.into_owned()));
    }
    let Some((_, first)) = texts.first() else {
        return Ok(String::new());
    };
    let mut out = String::with_capacity(first.len() + 256);
    let mut keyspace_asked = false;
    for (name, body) in sections(first) {
        if name.eq_ignore_ascii_case("keyspace") {
            keyspace_asked = true;
            continue;
        }
        out.push_str("# ");
        out.push_str(name);
        out.push_str("\r\n");
        out.push_str(body);
        out.push_str("\r\n");
    }
    if keyspace_asked {
        out.push_str("# Keyspace\r\n");
        for (db, (keys, expires, ttl_weighted)) in keyspace(&texts) {
            let avg_ttl = if expires > 0 {
                ttl_weighted / u128::from(expires)
            } else {
                0
            };
            out.push_str(&format!(
                "{db}:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"
            ));
        }
        out.push_str("\r\n");
    }
    // The per-primary lines, with the sections they quote (a full INFO).
    if texts.len() > 1 && first.contains("redis_version:") && first.contains("used_memory:") {
        out.push_str("# Cluster nodes (strata: one line per primary)\r\n");
        for (addr, text) in &texts {
            let field = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(':')))
                    .unwrap_or("?")
                    .trim()
                    .to_string()
            };
            out.push_str(&format!(
                "primary:{addr},version={},used_memory={},connected_clients={},role={}\r\n",
                field("redis_version"),
                field("used_memory"),
                field("connected_clients"),
                field("role"),
            ));
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    Ok(out)
}

/// `(section name, body)` in order; the body keeps its CRLFs.
fn sections(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("# ") {
        let after = &rest[start + 2..];
        let name_end = after.find("\r\n").unwrap_or(after.len());
        let name = after[..name_end].trim();
        let body_start = (name_end + 2).min(after.len());
        let body_all = &after[body_start..];
        let body_end = body_all.find("\r\n# ").map_or(body_all.len(), |i| i + 2);
        let body = body_all[..body_end].trim_end_matches("\r\n");
        out.push((name, body));
        rest = &body_all[body_end..];
    }
    out
}

/// Per db: (keys, expires, avg_ttl × expires) summed over `texts`.
fn keyspace(texts: &[(&str, String)]) -> BTreeMap<String, (u64, u64, u128)> {
    let mut dbs: BTreeMap<String, (u64, u64, u128)> = BTreeMap::new();
    for (_, text) in texts {
        for line in text.lines() {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            if !db.starts_with("db") || db[2..].parse::<u32>().is_err() {
                continue;
            }
            let num = |k: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let entry = dbs.entry(db.to_string()).or_default();
            entry.0 += num("keys");
            entry.1 += num("expires");
            entry.2 += u128::from(num("avg_ttl")) * u128::from(num("expires"));
        }
    }
    dbs
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Vec<u8> {
        format!("${}\r\n{}\r\n", text.len(), text).into_bytes()
    }

    #[test]
    fn keyspace_is_summed_and_server_sections_come_from_the_first() {
        let a = bulk("# Server\r\nredis_version:7.0.15\r\n\r\n# Memory\r\nused_memory:1\r\n\r\n# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=100\r\n");
        let b = bulk("# Server\r\nredis_version:7.0.15\r\n\r\n# Memory\r\nused_memory:2\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=2,avg_ttl=300\r\n");
        let text = merge(&[("n1:1", &a), ("n2:2", &b)]).unwrap();
        assert!(
            text.starts_with("# Server\r\nredis_version:7.0.15\r\n"),
            "{text}"
        );
        assert!(
            text.contains("# Keyspace\r\ndb0:keys=15,expires=4,avg_ttl=200\r\n"),
            "{text}"
        );
        assert!(text.contains("primary:n2:2,version=7.0.15"), "{text}");
        assert_eq!(text.matches("# Server").count(), 1);
    }

    #[test]
    fn a_section_without_keyspace_stays_without() {
        let a = bulk("# Memory\r\nused_memory:1\r\n");
        let text = merge(&[("n1:1", &a)]).unwrap();
        assert_eq!(text, "# Memory\r\nused_memory:1\r\n");
    }

    #[test]
    fn an_error_wins() {
        let a = bulk("# Memory\r\nused_memory:1\r\n");
        let e = b"-ERR boom\r\n".to_vec();
        assert_eq!(merge(&[("n1:1", &a), ("n2:2", &e)]), Err(e.clone()));
    }
}
