//! INFO across the cluster: one text for a client that thinks it talks to
//! one Redis.
//!
//! INFO is asked of every primary (replicas hold copies of the same keys
//! and would count them twice). The sections and their order are the first
//! primary's; each field is merged by [`rule`], written down here for every
//! field of Redis 7.0's INFO:
//!
//! * **sum** — counters and sizes that add up across servers, so monitoring
//!   that reads INFO through strata sees the whole cluster: clients
//!   (`connected_clients`, `blocked_clients`, …), memory sizes
//!   (`used_memory`, `used_memory_rss`, `used_memory_peak`, allocator and
//!   `mem_*` sizes), persistence counters (`rdb_changes_since_last_save`,
//!   `rdb_saves`, `aof_rewrites`, …), every counter of `# Stats`
//!   (`total_commands_processed`, `total_error_replies`, `expired_keys`,
//!   `evicted_keys`, `keyspace_hits`/`misses`, ops/s and kbps, net bytes,
//!   …) and `# CPU` seconds. A sum keeps the first value's decimals;
//! * **max** — what is true if it is true anywhere, or a worst case: a
//!   save or rewrite in progress, `loading`, fork and copy-on-write sizes
//!   and durations, the largest client buffers, and the script and
//!   function counts (every primary holds the same scripts: a sum would
//!   count each one once per primary);
//! * **min** — `rdb_last_save_time`: the oldest save, since which changes
//!   may be lost somewhere;
//! * **worst** — `rdb_last_bgsave_status`, `aof_last_bgrewrite_status`,
//!   `aof_last_write_status`: `err` if any primary says so;
//! * **recomputed** from the merged sizes — the `_human` forms and the
//!   ratios (`mem_fragmentation_ratio`, `used_memory_peak_perc`, …);
//! * **first** — what describes one server or its configuration: all of
//!   `# Server`, `# Replication`, `# Modules` and `# Cluster`,
//!   `maxclients`, `maxmemory`, `mem_allocator`, `total_system_memory`, …
//!   (CONFIG SET reaches every node, so settings agree).
//!
//! Sections of one line per name — `# Commandstats`, `# Errorstats`,
//! `# Latencystats` — are merged by name over every primary (an error
//! seen on one node only still shows): `calls`, `usec`, `rejected_calls`,
//! `failed_calls` and `count` summed, `usec_per_call` recomputed, latency
//! percentiles the maximum (percentiles do not add up; the largest is an
//! upper bound). `# Keyspace` is summed per database (keys and expires
//! added, `avg_ttl` weighted by expires), so `INFO keyspace` counts the
//! whole cluster's keys as DBSIZE does. A full INFO ends with a
//! `# Cluster nodes` section: what each primary reported of itself, one line
//! per primary.

use std::collections::{BTreeMap, HashMap};

use crate::protocol::reply::{is_error, string_payload};

/// How one INFO field is merged over the primaries (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The first primary's value.
    First,
    /// The sum, with the first value's decimals.
    Sum,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
    /// Any value other than `ok`, else `ok`.
    Worst,
    /// `bytesToHuman` of the sum of this field.
    Human(&'static str),
    /// Recomputed from summed fields.
    Ratio(Ratio),
}

/// Ratios INFO derives from sizes, recomputed from the sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ratio {
    /// `used_memory / used_memory_peak`, as a percentage.
    PeakPerc,
    /// `used_memory_dataset / (used_memory - used_memory_startup)`, as a percentage.
    DatasetPerc,
    /// `numerator / denominator`, two decimals.
    Of(&'static str, &'static str),
}

const SUM: &[&str] = &[
    // Clients
    "connected_clients",
    "cluster_connections",
    "blocked_clients",
    "tracking_clients",
    "clients_in_timeout_table",
    // Memory
    "used_memory",
    "used_memory_rss",
    "used_memory_peak",
    "used_memory_overhead",
    "used_memory_startup",
    "used_memory_dataset",
    "allocator_allocated",
    "allocator_active",
    "allocator_resident",
    "used_memory_lua",
    "used_memory_vm_eval",
    "used_memory_scripts_eval",
    "used_memory_vm_functions",
    "used_memory_vm_total",
    "used_memory_functions",
    "used_memory_scripts",
    "allocator_frag_bytes",
    "allocator_rss_bytes",
    "rss_overhead_bytes",
    "mem_fragmentation_bytes",
    "mem_not_counted_for_evict",
    "mem_replication_backlog",
    "mem_total_replication_buffers",
    "mem_clients_slaves",
    "mem_clients_normal",
    "mem_cluster_links",
    "mem_aof_buffer",
    "lazyfree_pending_objects",
    "lazyfreed_objects",
    // Persistence
    "current_save_keys_processed",
    "current_save_keys_total",
    "rdb_changes_since_last_save",
    "rdb_saves",
    "rdb_last_load_keys_expired",
    "rdb_last_load_keys_loaded",
    "aof_rewrites",
    // Stats
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "total_net_repl_input_bytes",
    "total_net_repl_output_bytes",
    "instantaneous_input_kbps",
    "instantaneous_output_kbps",
    "instantaneous_input_repl_kbps",
    "instantaneous_output_repl_kbps",
    "rejected_connections",
    "sync_full",
    "sync_partial_ok",
    "sync_partial_err",
    "expired_keys",
    "expired_time_cap_reached_count",
    "expire_cycle_cpu_milliseconds",
    "evicted_keys",
    "evicted_clients",
    "total_eviction_exceeded_time",
    "keyspace_hits",
    "keyspace_misses",
    "pubsub_channels",
    "pubsub_patterns",
    "pubsubshard_channels",
    "total_forks",
    "migrate_cached_sockets",
    "slave_expires_tracked_keys",
    "active_defrag_hits",
    "active_defrag_misses",
    "active_defrag_key_hits",
    "active_defrag_key_misses",
    "total_active_defrag_time",
    "tracking_total_keys",
    "tracking_total_items",
    "tracking_total_prefixes",
    "unexpected_error_replies",
    "total_error_replies",
    "dump_payload_sanitizations",
    "total_reads_processed",
    "total_writes_processed",
    "io_threaded_reads_processed",
    "io_threaded_writes_processed",
    "reply_buffer_shrinks",
    "reply_buffer_expands",
    // CPU
    "used_cpu_sys",
    "used_cpu_user",
    "used_cpu_sys_children",
    "used_cpu_user_children",
    "used_cpu_sys_main_thread",
    "used_cpu_user_main_thread",
];

const MAX: &[&str] = &[
    "client_recent_max_input_buffer",
    "client_recent_max_output_buffer",
    "number_of_cached_scripts",
    "number_of_functions",
    "number_of_libraries",
    "active_defrag_running",
    "loading",
    "async_loading",
    "current_cow_peak",
    "current_cow_size",
    "current_cow_size_age",
    "current_fork_perc",
    "rdb_bgsave_in_progress",
    "rdb_last_bgsave_time_sec",
    "rdb_current_bgsave_time_sec",
    "rdb_last_cow_size",
    "aof_rewrite_in_progress",
    "aof_rewrite_scheduled",
    "aof_last_rewrite_time_sec",
    "aof_current_rewrite_time_sec",
    "aof_rewrites_consecutive_failures",
    "aof_last_cow_size",
    "module_fork_in_progress",
    "module_fork_last_cow_size",
    "expired_stale_perc",
    "current_eviction_exceeded_time",
    "latest_fork_usec",
    "current_active_defrag_time",
];

const WORST: &[&str] = &[
    "rdb_last_bgsave_status",
    "aof_last_bgrewrite_status",
    "aof_last_write_status",
];

/// `_human` fields recomputed from a summed byte count.
const HUMAN: &[(&str, &str)] = &[
    ("used_memory_human", "used_memory"),
    ("used_memory_rss_human", "used_memory_rss"),
    ("used_memory_peak_human", "used_memory_peak"),
    ("used_memory_lua_human", "used_memory_lua"),
    ("used_memory_vm_total_human", "used_memory_vm_total"),
    ("used_memory_scripts_human", "used_memory_scripts"),
];

const RATIOS: &[(&str, Ratio)] = &[
    ("used_memory_peak_perc", Ratio::PeakPerc),
    ("used_memory_dataset_perc", Ratio::DatasetPerc),
    (
        "mem_fragmentation_ratio",
        Ratio::Of("used_memory_rss", "used_memory"),
    ),
    (
        "allocator_frag_ratio",
        Ratio::Of("allocator_active", "allocator_allocated"),
    ),
    (
        "allocator_rss_ratio",
        Ratio::Of("allocator_resident", "allocator_active"),
    ),
    (
        "rss_overhead_ratio",
        Ratio::Of("used_memory_rss", "allocator_resident"),
    ),
];

/// The merge rule of an INFO field (`First` for any field not listed).
fn rule(field: &str) -> Rule {
    if SUM.contains(&field) {
        Rule::Sum
    } else if MAX.contains(&field) {
        Rule::Max
    } else if field == "rdb_last_save_time" {
        Rule::Min
    } else if WORST.contains(&field) {
        Rule::Worst
    } else if let Some((_, bytes)) = HUMAN.iter().find(|(h, _)| *h == field) {
        Rule::Human(bytes)
    } else if let Some((_, ratio)) = RATIOS.iter().find(|(r, _)| *r == field) {
        Rule::Ratio(*ratio)
    } else {
        Rule::First
    }
}

/// Sections with one line per command or error name: merged by name.
fn by_name(section: &str) -> bool {
    ["commandstats", "errorstats", "latencystats"]
        .iter()
        .any(|s| section.eq_ignore_ascii_case(s))
}

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
    let fields = Fields::of(&texts);
    for (name, body) in sections(first) {
        out.push_str("# ");
        out.push_str(name);
        out.push_str("\r\n");
        if name.eq_ignore_ascii_case("keyspace") {
            push_keyspace(&mut out, &texts);
        } else if by_name(name) {
            push_by_name(&mut out, name, &texts);
        } else {
            for line in body.split("\r\n").filter(|l| !l.is_empty()) {
                match line.split_once(':') {
                    Some((key, _)) => match fields.merged(key) {
                        Some(v) => {
                            out.push_str(key);
                            out.push(':');
                            out.push_str(&v);
                        }
                        None => out.push_str(line),
                    },
                    None => out.push_str(line),
                }
                out.push_str("\r\n");
            }
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

/// Every `field:value` of every primary, values in primary order.
struct Fields<'a>(HashMap<&'a str, Vec<&'a str>>);

impl<'a> Fields<'a> {
    fn of(texts: &'a [(&str, String)]) -> Fields<'a> {
        let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
        for (_, text) in texts {
            for line in text.split("\r\n") {
                if line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once(':') {
                    map.entry(k).or_default().push(v);
                }
            }
        }
        Fields(map)
    }

    /// Sum of a numeric field (`None` when absent or not a number).
    fn sum(&self, field: &str) -> Option<f64> {
        let values = self.0.get(field)?;
        let mut sum = 0.0;
        for v in values {
            sum += v.trim().parse::<f64>().ok()?;
        }
        Some(sum)
    }

    /// The cluster-wide value of `field`, formatted as Redis does, or
    /// `None` to keep the first primary's line as it is.
    fn merged(&self, field: &str) -> Option<String> {
        let values = self.0.get(field)?;
        match rule(field) {
            Rule::First => None,
            Rule::Sum => sum_text(values),
            Rule::Max | Rule::Min => {
                let mut best: Option<(&str, f64)> = None;
                for v in values {
                    let n = v.trim().parse::<f64>().ok()?;
                    let better = match (best, rule(field)) {
                        (None, _) => true,
                        (Some((_, b)), Rule::Max) => n > b,
                        (Some((_, b)), _) => n < b,
                    };
                    if better {
                        best = Some((v, n));
                    }
                }
                best.map(|(v, _)| v.to_string())
            }
            Rule::Worst => values
                .iter()
                .find(|v| v.trim() != "ok")
                .or(values.first())
                .map(|v| v.to_string()),
            Rule::Human(bytes) => self.sum(bytes).map(bytes_to_human),
            Rule::Ratio(ratio) => {
                let (num, den, percent) = match ratio {
                    Ratio::PeakPerc => (
                        self.sum("used_memory")?,
                        self.sum("used_memory_peak")?,
                        true,
                    ),
                    Ratio::DatasetPerc => (
                        self.sum("used_memory_dataset")?,
                        self.sum("used_memory")? - self.sum("used_memory_startup")?,
                        true,
                    ),
                    Ratio::Of(num, den) => (self.sum(num)?, self.sum(den)?, false),
                };
                if den <= 0.0 {
                    return None;
                }
                Some(if percent {
                    format!("{:.2}%", num * 100.0 / den)
                } else {
                    format!("{:.2}", num / den)
                })
            }
        }
    }
}

/// The sum of `values`: an integer when every value is one, else with the
/// first value's number of decimals (`0.52` kbps, `1.234567` CPU seconds).
fn sum_text(values: &[&str]) -> Option<String> {
    let ints: Option<Vec<i64>> = values.iter().map(|v| v.trim().parse().ok()).collect();
    if let Some(ints) = ints {
        let sum = ints.iter().fold(0i64, |a, b| a.saturating_add(*b));
        return Some(sum.to_string());
    }
    let mut sum = 0.0;
    for v in values {
        sum += v.trim().parse::<f64>().ok()?;
    }
    let decimals = values
        .first()
        .and_then(|v| v.trim().split_once('.'))
        .map_or(0, |(_, d)| d.len());
    Some(format!("{sum:.decimals$}"))
}

/// A `by_name` section: every name any primary lists, in order of first
/// appearance (errors in byte order, as Redis lists them), its `k=v`
/// fields merged.
fn push_by_name(out: &mut String, section: &str, texts: &[(&str, String)]) {
    let mut order: Vec<&str> = Vec::new();
    let mut lines: HashMap<&str, Vec<&str>> = HashMap::new();
    for (_, text) in texts {
        let Some((_, body)) = sections(text)
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(section))
        else {
            continue;
        };
        for line in body.split("\r\n") {
            let Some((name, fields)) = line.split_once(':') else {
                continue;
            };
            let entry = lines.entry(name).or_insert_with(|| {
                order.push(name);
                Vec::new()
            });
            entry.push(fields);
        }
    }
    if section.eq_ignore_ascii_case("errorstats") {
        // Redis keeps error counts in a radix tree: listed in byte order.
        order.sort_unstable();
    }
    for name in order {
        out.push_str(name);
        out.push(':');
        out.push_str(&merge_subfields(&lines[name]));
        out.push_str("\r\n");
    }
}

/// `calls=3,usec=30,usec_per_call=10.00,…` of several primaries as one:
/// percentiles (`p50=…`) the maximum, `usec_per_call` recomputed, the
/// rest summed. The first line's field order is kept.
fn merge_subfields(lines: &[&str]) -> String {
    let parsed: Vec<Vec<(&str, &str)>> = lines
        .iter()
        .map(|l| l.split(',').filter_map(|f| f.split_once('=')).collect())
        .collect();
    let values = |key: &str| -> Vec<&str> {
        parsed
            .iter()
            .filter_map(|fields| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v))
            .collect()
    };
    let total = |key: &str| -> f64 {
        values(key)
            .iter()
            .filter_map(|v| v.parse::<f64>().ok())
            .sum()
    };
    let mut out = String::new();
    for (i, (key, first)) in parsed.first().into_iter().flatten().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        let merged = if *key == "usec_per_call" {
            let calls = total("calls");
            Some(format!(
                "{:.2}",
                if calls > 0.0 {
                    total("usec") / calls
                } else {
                    0.0
                }
            ))
        } else if key.starts_with('p') && key[1..].starts_with(|c: char| c.is_ascii_digit()) {
            let decimals = first.split_once('.').map_or(0, |(_, d)| d.len());
            values(key)
                .iter()
                .filter_map(|v| v.parse::<f64>().ok())
                .reduce(f64::max)
                .map(|m| format!("{m:.decimals$}"))
        } else {
            sum_text(&values(key))
        };
        out.push_str(merged.as_deref().unwrap_or(first));
    }
    out
}

/// `# Keyspace`, summed per database.
fn push_keyspace(out: &mut String, texts: &[(&str, String)]) {
    for (db, (keys, expires, ttl_weighted)) in keyspace(texts) {
        let avg_ttl = if expires > 0 {
            ttl_weighted / u128::from(expires)
        } else {
            0
        };
        out.push_str(&format!(
            "{db}:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"
        ));
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
            "used_memory_peak:17\r\n",
            "total_commands_processed:350\r\n",
            "instantaneous_input_kbps:1.75\r\n",
            "keyspace_hits:8\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from {text}");
        }
    }

    #[test]
    fn errorstats_and_commandstats_are_merged_by_name_over_every_primary() {
        let a = bulk("# Stats\r\ntotal_error_replies:3\r\nrdb_changes_since_last_save:x\r\n\r\n# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=1\r\n\r\n# Errorstats\r\nerrorstat_ERR:count=1\r\nerrorstat_WRONGTYPE:count=2\r\n\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=1.003,p99=9.001\r\n");
        let b = bulk("# Stats\r\ntotal_error_replies:4\r\nrdb_changes_since_last_save:7\r\n\r\n# Commandstats\r\ncmdstat_get:calls=3,usec=50,usec_per_call=16.67,rejected_calls=1,failed_calls=0\r\ncmdstat_set:calls=1,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n\r\n# Errorstats\r\nerrorstat_NOSCRIPT:count=1\r\nerrorstat_ERR:count=3\r\n\r\n# Latencystats\r\nlatency_percentiles_usec_get:p50=2.007,p99=3.001\r\n");
        let text = merge(&[("n1:1", &a), ("n2:2", &b)]).unwrap();
        for line in [
            "total_error_replies:7\r\n",
            // Not a number on one primary: the first's line is kept.
            "rdb_changes_since_last_save:x\r\n",
            "cmdstat_get:calls=5,usec=60,usec_per_call=12.00,rejected_calls=1,failed_calls=1\r\n",
            "cmdstat_set:calls=1,usec=4,usec_per_call=4.00,rejected_calls=0,failed_calls=0\r\n",
            "# Errorstats\r\nerrorstat_ERR:count=4\r\nerrorstat_NOSCRIPT:count=1\r\nerrorstat_WRONGTYPE:count=2\r\n",
            "latency_percentiles_usec_get:p50=2.007,p99=9.001\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from {text}");
        }
    }

    #[test]
    fn every_rule() {
        let a = bulk("# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:2\r\nrdb_last_save_time:100\r\nrdb_last_bgsave_status:ok\r\n\r\n# Memory\r\nused_memory:100\r\nused_memory_rss:300\r\nused_memory_peak:200\r\nused_memory_peak_human:200B\r\nused_memory_peak_perc:50.00%\r\nmem_fragmentation_ratio:3.00\r\nnumber_of_cached_scripts:2\r\nmaxmemory:0\r\n\r\n# CPU\r\nused_cpu_sys:0.500000\r\n");
        let b = bulk("# Persistence\r\nloading:1\r\nrdb_changes_since_last_save:5\r\nrdb_last_save_time:90\r\nrdb_last_bgsave_status:err\r\n\r\n# Memory\r\nused_memory:100\r\nused_memory_rss:100\r\nused_memory_peak:400\r\nused_memory_peak_human:400B\r\nused_memory_peak_perc:25.00%\r\nmem_fragmentation_ratio:1.00\r\nnumber_of_cached_scripts:2\r\nmaxmemory:7\r\n\r\n# CPU\r\nused_cpu_sys:0.250001\r\n");
        let text = merge(&[("n1:1", &a), ("n2:2", &b)]).unwrap();
        for line in [
            "loading:1\r\n",
            "rdb_changes_since_last_save:7\r\n",
            "rdb_last_save_time:90\r\n",
            "rdb_last_bgsave_status:err\r\n",
            "used_memory:200\r\n",
            "used_memory_peak:600\r\n",
            "used_memory_peak_human:600B\r\n",
            "used_memory_peak_perc:33.33%\r\n",
            "mem_fragmentation_ratio:2.00\r\n",
            "number_of_cached_scripts:2\r\n",
            "maxmemory:0\r\n",
            "used_cpu_sys:0.750001\r\n",
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
