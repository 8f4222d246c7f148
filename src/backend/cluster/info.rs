//! INFO across the cluster: one text for a client that thinks it talks to
//! one Redis.
//!
//! Sections come from the first primary, except that:
//! * counters and sizes that add up across servers ([`SUMMED`]: commands
//!   processed, ops/s, hits and misses, network bytes, connected clients,
//!   used memory, …) are the sum over every primary, so monitoring that
//!   reads INFO through strata sees the whole cluster's load, not one
//!   node's; the `_human` forms of the summed sizes are recomputed;
//! * `# Keyspace` is summed over every primary (keys and expires added,
//!   `avg_ttl` weighted by expires), so `INFO keyspace` counts the whole
//!   cluster's keys as DBSIZE does;
//! * a `# Cluster nodes` section lists what each primary reported of itself
//!   in one line.
//!
//! What describes one server (version, uptime, config, role, peaks) stays
//! the first primary's.

use std::collections::{BTreeMap, HashMap};

/// INFO fields whose cluster-wide value is the sum of the primaries'.
const SUMMED: &[&str] = &[
    "connected_clients",
    "blocked_clients",
    "tracking_clients",
    "used_memory",
    "used_memory_rss",
    "used_memory_dataset",
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "instantaneous_input_kbps",
    "instantaneous_output_kbps",
    "rejected_connections",
    "expired_keys",
    "evicted_keys",
    "keyspace_hits",
    "keyspace_misses",
    "pubsub_channels",
    "pubsub_patterns",
    "total_error_replies",
    "total_reads_processed",
    "total_writes_processed",
];

/// `_human` fields recomputed from a summed byte count.
const HUMAN: &[(&str, &str)] = &[
    ("used_memory_human", "used_memory"),
    ("used_memory_rss_human", "used_memory_rss"),
];

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
    let sums = Sums::of(&texts);
    for (name, body) in sections(first) {
        if name.eq_ignore_ascii_case("keyspace") {
            keyspace_asked = true;
            continue;
        }
        out.push_str("# ");
        out.push_str(name);
        out.push_str("\r\n");
        for line in body.split("\r\n") {
            match line.split_once(':').and_then(|(k, _)| sums.value(k)) {
                Some(v) => {
                    let key = &line[..line.find(':').unwrap_or(line.len())];
                    out.push_str(key);
                    out.push(':');
                    out.push_str(&v);
                }
                None => out.push_str(line),
            }
            out.push_str("\r\n");
        }
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

/// The summed fields over every primary's INFO.
struct Sums(HashMap<&'static str, f64>);

impl Sums {
    fn of(texts: &[(&str, String)]) -> Sums {
        let mut sums = HashMap::new();
        for (_, text) in texts {
            for line in text.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                if let (Some(field), Ok(n)) =
                    (SUMMED.iter().find(|f| **f == k), v.trim().parse::<f64>())
                {
                    *sums.entry(*field).or_insert(0.0) += n;
                }
            }
        }
        Sums(sums)
    }

    /// The cluster-wide value of `field`, formatted as Redis does, or
    /// `None` when the field is not summed.
    fn value(&self, field: &str) -> Option<String> {
        if let Some((_, bytes)) = HUMAN.iter().find(|(h, _)| *h == field) {
            return self.0.get(bytes).map(|b| bytes_to_human(*b));
        }
        let sum = self.0.get(field)?;
        Some(if field.ends_with("_kbps") {
            format!("{sum:.2}")
        } else {
            format!("{}", *sum as u64)
        })
    }
}

/// Redis's `bytesToHuman`: `1023B`, `1.50K`, `2.00M`, …
fn bytes_to_human(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024.0 {
        return format!("{}B", bytes as u64);
    }
    let mut value = bytes / 1024.0;
    for unit in UNITS {
        if value < 1024.0 {
            return format!("{value:.2}{unit}");
        }
        value /= 1024.0;
    }
    format!("{:.2}E", value * 1024.0)
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
    fn counters_and_sizes_are_summed_the_rest_is_the_first_primarys() {
        let a = bulk("# Server\r\nuptime_in_seconds:50\r\n\r\n# Clients\r\nconnected_clients:3\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nused_memory_peak:9\r\n\r\n# Stats\r\ntotal_commands_processed:100\r\ninstantaneous_input_kbps:1.25\r\nkeyspace_hits:7\r\n");
        let b = bulk("# Server\r\nuptime_in_seconds:70\r\n\r\n# Clients\r\nconnected_clients:4\r\n\r\n# Memory\r\nused_memory:2097152\r\nused_memory_human:2.00M\r\nused_memory_peak:8\r\n\r\n# Stats\r\ntotal_commands_processed:250\r\ninstantaneous_input_kbps:0.5\r\nkeyspace_hits:1\r\n");
        let text = merge(&[("n1:1", &a), ("n2:2", &b)]).unwrap();
        for line in [
            "uptime_in_seconds:50\r\n",
            "connected_clients:7\r\n",
            "used_memory:3145728\r\n",
            "used_memory_human:3.00M\r\n",
            "used_memory_peak:9\r\n",
            "total_commands_processed:350\r\n",
            "instantaneous_input_kbps:1.75\r\n",
            "keyspace_hits:8\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from {text}");
        }
    }

    #[test]
    fn human_sizes_read_as_redis_writes_them() {
        assert_eq!(bytes_to_human(1023.0), "1023B");
        assert_eq!(bytes_to_human(1536.0), "1.50K");
        assert_eq!(bytes_to_human(2_202_009.6), "2.10M");
        assert_eq!(bytes_to_human(3.0 * 1024.0 * 1024.0 * 1024.0), "3.00G");
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
