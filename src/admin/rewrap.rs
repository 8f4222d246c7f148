//! `PROXY REWRAP <pattern> [COUNT n] [RESUME cursor]`: re-encrypt stored
//! values under the transform rules' current key (after a key rotation),
//! and migrate values written before a rule existed.
//!
//! Each call is one bounded step: it SCANs (MATCH pattern) from `cursor`
//! until it has seen about COUNT keys or the scan ends, rewrites what needs
//! it, and answers `[next cursor, keys scanned, keys rewrapped, keys
//! skipped]`. The caller calls again with `RESUME <next cursor>` until the
//! cursor is `0`; the pace of those calls is the throttle, and a step never
//! holds the backend for more than a few pipelined round trips. Progress
//! survives anything: stop at any point and resume later from the last
//! cursor (SCAN's guarantee: every key present for the whole scan is seen).
//!
//! A step runs on a dedicated connection borrowed from the pool, so the
//! shared (multiplexed) connections never wait behind it. Per key it reads
//! the type (strings, hashes and lists hold transformed values; other types
//! are left alone), reads the stored values, asks [`Transforms::rewrap_value`]
//! what to write, and writes back with a compare-and-set script
//! (`lua/rewrap_*.lua`): a value a client changed in between is left as is
//! and the key is counted as skipped, for a later pass. Keys whose values
//! cannot be opened (tampered, unknown key id) are skipped too — never
//! rewritten — and counted in the transform failure metrics.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use crate::backend::cluster::{scan, ClusterRouter};
use crate::backend::handshake::read_frame;
use crate::backend::node::Node;
use crate::backend::router::Router;
use crate::protocol::reply::{aggregate_elements, integer_payload, is_error, string_payload};
use crate::protocol::request::encode_command;
use crate::protocol::{Protocol, ReplyBuf};
use crate::transform::{Location, Transforms};

/// Compare-and-set of a string value.
const STRING_SCRIPT: &str = include_str!("../../lua/rewrap_string.lua");
/// Compare-and-set of hash field values.
const HASH_SCRIPT: &str = include_str!("../../lua/rewrap_hash.lua");
/// Compare-and-set of list elements.
const LIST_SCRIPT: &str = include_str!("../../lua/rewrap_list.lua");

/// Keys per step when COUNT is not given.
pub const DEFAULT_COUNT: usize = 100;
/// The largest COUNT accepted: a step stays short.
pub const MAX_COUNT: usize = 10_000;
/// A step stops scanning after this long even if it has seen fewer than
/// COUNT keys (a pattern that matches few keys of a large keyspace).
const SCAN_BUDGET: Duration = Duration::from_millis(50);
/// Keys whose values are read and written in one pipelined round trip.
const CHUNK: usize = 64;

/// The arguments of one `PROXY REWRAP` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapArgs {
    /// The SCAN MATCH pattern.
    pub pattern: Bytes,
    /// About how many keys to look at in this step.
    pub count: usize,
    /// Where to start: `0`, or the cursor a previous step returned.
    pub cursor: Bytes,
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The cursor to resume from; `0` when the scan is complete.
    pub cursor: Bytes,
    /// Keys the scan returned in this step.
    pub scanned: u64,
    /// Keys with at least one value written back, and none skipped.
    pub rewrapped: u64,
    /// Keys left for a later pass: a value could not be opened, or changed
    /// between the read and the write.
    pub skipped: u64,
}

impl Progress {
    /// The reply: `[cursor, scanned, rewrapped, skipped]`.
    pub fn to_reply(&self, proto: Protocol) -> Bytes {
        let mut r = ReplyBuf::new(proto);
        r.array(4)
            .bulk(&self.cursor)
            .integer(saturating_i64(self.scanned))
            .integer(saturating_i64(self.rewrapped))
            .integer(saturating_i64(self.skipped));
        r.freeze()
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parses the arguments after `PROXY REWRAP`.
pub fn parse(args: &[Bytes]) -> Result<RewrapArgs, String> {
    let usage = || format!("ERR syntax error. Try {}", super::USAGE);
    let Some(pattern) = args.first() else {
        return Err(usage());
    };
    if pattern.is_empty() {
        return Err("ERR PROXY REWRAP: the pattern must not be empty".into());
    }
    let mut out = RewrapArgs {
        pattern: pattern.clone(),
        count: DEFAULT_COUNT,
        cursor: Bytes::from_static(b"0"),
    };
    let mut i = 1;
    while let Some(word) = args.get(i) {
        let Some(value) = args.get(i + 1) else {
            return Err(usage());
        };
        if word.eq_ignore_ascii_case(b"count") {
            out.count = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| (1..=MAX_COUNT).contains(n))
                .ok_or_else(|| {
                    format!("ERR PROXY REWRAP: COUNT must be an integer from 1 to {MAX_COUNT}")
                })?;
        } else if word.eq_ignore_ascii_case(b"resume") {
            if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
                return Err(
                    "ERR PROXY REWRAP: RESUME takes the cursor a previous call returned".into(),
                );
            }
            out.cursor = value.clone();
        } else {
            return Err(usage());
        }
        i += 2;
    }
    Ok(out)
}

/// A backend exchange failed: the step is abandoned (nothing half-written
/// matters, every write is a compare-and-set) and the connection dropped.
#[derive(Debug)]
struct StepError(String);

impl From<std::io::Error> for StepError {
    fn from(e: std::io::Error) -> StepError {
        StepError(e.to_string())
    }
}

/// Runs one step on a dedicated connection to the primary. The error is the
/// reply text.
pub async fn step(
    router: &Router,
    transforms: &Transforms,
    args: &RewrapArgs,
) -> Result<Progress, String> {
    step_on(&router.primary(), transforms, args).await
}

/// Cluster mode: one step on one primary. The cursor is SCAN's cluster
/// cursor (`backend::cluster::scan`): it names the primary and that
/// primary's own cursor, so the walk goes primary after primary and a
/// step resumes where the last one stopped. Each key is rewritten on the
/// primary that stores it, so the compare-and-set script stays in one slot.
pub async fn step_cluster(
    cluster: &ClusterRouter,
    transforms: &Transforms,
    args: &RewrapArgs,
) -> Result<Progress, String> {
    let view = cluster.view();
    let Some(pos) = scan::decode(&view.map, &args.cursor).map_err(|e| e.to_string())? else {
        return Ok(Progress {
            cursor: Bytes::from_static(b"0"),
            ..Progress::default()
        });
    };
    let Some(node) = view.primary_of_shard(pos.node) else {
        return Err(scan::ScanError::TopologyChanged.to_string());
    };
    let mut on_node = args.clone();
    on_node.cursor = Bytes::from(pos.cursor.to_string());
    let mut progress = step_on(node, transforms, &on_node).await?;
    let node_cursor: u64 = std::str::from_utf8(&progress.cursor)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "ERR PROXY REWRAP: unexpected SCAN cursor".to_string())?;
    let next = if node_cursor != 0 {
        Some(scan::Position {
            node: pos.node,
            cursor: node_cursor,
        })
    } else if pos.node + 1 < view.map.shards().len() {
        Some(scan::Position {
            node: pos.node + 1,
            cursor: 0,
        })
    } else {
        None
    };
    progress.cursor = match next {
        Some(next) => Bytes::from(
            scan::encode(&view.map, next)
                .map_err(|e| e.to_string())?
                .to_string(),
        ),
        None => Bytes::from_static(b"0"),
    };
    Ok(progress)
}

/// One step on `node`.
async fn step_on(
    node: &Node,
    transforms: &Transforms,
    args: &RewrapArgs,
) -> Result<Progress, String> {
    if transforms.is_empty() {
        return Err("ERR PROXY REWRAP: no [[transform]] rules are configured".into());
    }
    let mut conn = node
        .dedicated(Protocol::Resp2, None)
        .await
        .map_err(|e| e.to_string())?;
    let addr = node.addr().to_string();
    let timeout = node.request_timeout();
    let result = match conn.stream.take() {
        Some(mut stream) => {
            let mut link = Link {
                stream: &mut stream,
                buf: &mut conn.buf,
                timeout,
            };
            let r = run(&mut link, transforms, args).await;
            conn.stream = Some(stream);
            r
        }
        None => Err(StepError("connection broken".into())),
    };
    match result {
        Ok(progress) => {
            node.release(conn);
            Ok(progress)
        }
        Err(StepError(why)) => {
            // State unknown (a reply may be half read): close it.
            conn.stream = None;
            drop(conn);
            Err(format!("ERR PROXY REWRAP: backend {addr}: {why}"))
        }
    }
}

/// A raw RESP2 connection: pipelined requests, replies in order.
struct Link<'a> {
    stream: &'a mut crate::tls::Stream,
    buf: &'a mut BytesMut,
    timeout: Duration,
}

impl Link<'_> {
    /// Sends every command in one write and reads one reply per command.
    /// Error replies are returned as frames; the caller decides.
    async fn pipeline(&mut self, commands: &[Vec<Bytes>]) -> Result<Vec<Bytes>, StepError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = BytesMut::new();
        for c in commands {
            out.extend_from_slice(&encode_command(c));
        }
        let exchange = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await?;
            let mut replies = Vec::with_capacity(commands.len());
            while replies.len() < commands.len() {
                replies.push(read_frame(self.stream, self.buf).await?);
            }
            Ok::<_, std::io::Error>(replies)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| StepError("no reply within the request timeout".into()))?
            .map_err(StepError::from)
    }
}

/// The stored value (a bulk string) of a reply frame, as a slice of it.
fn bulk(frame: &Bytes) -> Option<Bytes> {
    if frame.first() != Some(&b'$') {
        return None;
    }
    string_payload(frame).map(|p| frame.slice_ref(p))
}

/// The bulk strings of an array reply (nulls and other frames skipped).
fn bulks(frame: &Bytes) -> Option<Vec<Bytes>> {
    let elems = aggregate_elements(frame)?;
    Some(
        elems
            .into_iter()
            .filter_map(|r| bulk(&frame.slice(r)))
            .collect(),
    )
}

fn arg(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

async fn run(
    link: &mut Link<'_>,
    transforms: &Transforms,
    args: &RewrapArgs,
) -> Result<Progress, StepError> {
    let started = Instant::now();
    let mut cursor = args.cursor.clone();
    let mut keys: Vec<Bytes> = Vec::new();
    loop {
        let count = Bytes::from((args.count - keys.len().min(args.count - 1)).to_string());
        let scan = vec![
            arg("SCAN"),
            cursor.clone(),
            arg("MATCH"),
            args.pattern.clone(),
            arg("COUNT"),
            count,
        ];
        let reply = link.pipeline(&[scan]).await?;
        let frame = reply.into_iter().next().unwrap_or_default();
        if is_error(&frame) {
            return Err(StepError(error_text(&frame)));
        }
        let elems = aggregate_elements(&frame)
            .filter(|e| e.len() == 2)
            .ok_or_else(|| StepError("unexpected SCAN reply".into()))?;
        let next = bulk(&frame.slice(elems[0].clone()))
            .ok_or_else(|| StepError("unexpected SCAN cursor".into()))?;
        keys.extend(bulks(&frame.slice(elems[1].clone())).unwrap_or_default());
        cursor = next;
        if &cursor[..] == b"0" || keys.len() >= args.count || started.elapsed() >= SCAN_BUDGET {
            break;
        }
    }
    let mut progress = Progress {
        cursor,
        scanned: keys.len() as u64,
        ..Progress::default()
    };
    for chunk in keys.chunks(CHUNK) {
        rewrap_chunk(link, transforms, chunk, &mut progress).await?;
    }
    Ok(progress)
}

/// What to do with one key after reading it.
enum Plan {
    /// Nothing to write.
    Unchanged,
    /// A value could not be opened: leave the key alone.
    Skip,
    /// Run this compare-and-set script; it reports how many values it wrote,
    /// which must be `expect`.
    Write { command: Vec<Bytes>, expect: i64 },
}

async fn rewrap_chunk(
    link: &mut Link<'_>,
    transforms: &Transforms,
    keys: &[Bytes],
    progress: &mut Progress,
) -> Result<(), StepError> {
    // Only keys some rule covers can hold transformed values.
    let keys: Vec<&Bytes> = keys
        .iter()
        .filter(|k| transforms.rules().rule_for(k).is_some())
        .collect();
    let types: Vec<Vec<Bytes>> = keys
        .iter()
        .map(|k| vec![arg("TYPE"), (*k).clone()])
        .collect();
    let types = link.pipeline(&types).await?;
    let mut reads = Vec::new();
    let mut read_keys = Vec::new();
    for (key, ty) in keys.iter().zip(&types) {
        let read = match string_payload(ty) {
            Some(b"string") => vec![arg("GET"), (*key).clone()],
            Some(b"hash") => vec![arg("HGETALL"), (*key).clone()],
            Some(b"list") => vec![arg("LRANGE"), (*key).clone(), arg("0"), arg("-1")],
            // Sets, sorted sets, streams: members, not values. Gone: nothing to do.
            _ => continue,
        };
        read_keys.push((
            (*key).clone(),
            string_payload(ty).unwrap_or_default().to_vec(),
        ));
        reads.push(read);
    }
    let values = link.pipeline(&reads).await?;
    let mut writes = Vec::new();
    let mut expects = Vec::new();
    for ((key, ty), frame) in read_keys.iter().zip(&values) {
        let plan = if is_error(frame) {
            // WRONGTYPE: the key changed type in between.
            Plan::Skip
        } else {
            match ty.as_slice() {
                b"string" => plan_string(transforms, key, frame),
                b"hash" => plan_hash(transforms, key, frame),
                _ => plan_list(transforms, key, frame),
            }
        };
        match plan {
            Plan::Unchanged => {}
            Plan::Skip => progress.skipped += 1,
            Plan::Write { command, expect } => {
                writes.push(command);
                expects.push(expect);
            }
        }
    }
    let results = link.pipeline(&writes).await?;
    for (reply, expect) in results.iter().zip(expects) {
        if integer_payload(reply) == Some(expect) {
            progress.rewrapped += 1;
        } else {
            progress.skipped += 1;
        }
    }
    Ok(())
}

fn plan_string(transforms: &Transforms, key: &Bytes, frame: &Bytes) -> Plan {
    let Some(stored) = bulk(frame) else {
        return Plan::Unchanged; // deleted in between
    };
    match transforms.rewrap_value(Location::Key(key), &stored) {
        Ok(None) => Plan::Unchanged,
        Ok(Some(new)) => Plan::Write {
            command: vec![
                arg("EVAL"),
                arg(STRING_SCRIPT),
                arg("1"),
                key.clone(),
                stored,
                new,
            ],
            expect: 1,
        },
        Err(e) => failed(transforms, &e),
    }
}

fn plan_hash(transforms: &Transforms, key: &Bytes, frame: &Bytes) -> Plan {
    let Some(flat) = bulks(frame) else {
        return Plan::Skip;
    };
    let mut command = vec![arg("EVAL"), arg(HASH_SCRIPT), arg("1"), key.clone()];
    let mut expect = 0;
    for pair in flat.chunks_exact(2) {
        let (field, stored) = (&pair[0], &pair[1]);
        let loc = Location::HashField { key, field };
        match transforms.rewrap_value(loc, stored) {
            Ok(None) => {}
            Ok(Some(new)) => {
                command.extend([field.clone(), stored.clone(), new]);
                expect += 1;
            }
            Err(e) => return failed(transforms, &e),
        }
    }
    if expect == 0 {
        Plan::Unchanged
    } else {
        Plan::Write { command, expect }
    }
}

fn plan_list(transforms: &Transforms, key: &Bytes, frame: &Bytes) -> Plan {
    let Some(elements) = bulks(frame) else {
        return Plan::Skip;
    };
    let mut command = vec![arg("EVAL"), arg(LIST_SCRIPT), arg("1"), key.clone()];
    let mut expect = 0;
    for (index, stored) in elements.iter().enumerate() {
        match transforms.rewrap_value(Location::ListElement(key), stored) {
            Ok(None) => {}
            Ok(Some(new)) => {
                command.extend([Bytes::from(index.to_string()), stored.clone(), new]);
                expect += 1;
            }
            Err(e) => return failed(transforms, &e),
        }
    }
    if expect == 0 {
        Plan::Unchanged
    } else {
        Plan::Write { command, expect }
    }
}

/// A value that cannot be opened: counted, logged (key named, no value
/// bytes), and its key left alone.
fn failed(transforms: &Transforms, e: &crate::transform::TransformError) -> Plan {
    transforms.stats().failed(e.kind());
    tracing::warn!(error = %e, "PROXY REWRAP: skipping a value that cannot be opened");
    Plan::Skip
}

fn error_text(frame: &[u8]) -> String {
    String::from_utf8_lossy(frame.get(1..).unwrap_or_default())
        .trim_end()
        .to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn parses_count_and_resume() {
        let a = parse(&[b("s:*"), b("count"), b("5"), b("RESUME"), b("1234")]).unwrap();
        assert_eq!(a.pattern, "s:*");
        assert_eq!(a.count, 5);
        assert_eq!(a.cursor, "1234");
        assert_eq!(parse(&[b("s:*")]).unwrap().count, DEFAULT_COUNT);
        for bad in [
            vec![],
            vec![b("")],
            vec![b("s:*"), b("COUNT")],
            vec![b("s:*"), b("COUNT"), b("0")],
            vec![b("s:*"), b("COUNT"), b("100001")],
            vec![b("s:*"), b("RESUME"), b("-1")],
            vec![b("s:*"), b("RESUME"), b("")],
            vec![b("s:*"), b("LIMIT"), b("1")],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn progress_reply() {
        let p = Progress {
            cursor: b("17"),
            scanned: 3,
            rewrapped: 2,
            skipped: 1,
        };
        assert_eq!(
            &p.to_reply(Protocol::Resp2)[..],
            b"*4\r\n$2\r\n17\r\n:3\r\n:2\r\n:1\r\n"
        );
    }

    #[test]
    fn reply_helpers() {
        let f = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n$2\r\nbc\r\n");
        assert_eq!(bulks(&f).unwrap(), vec![b("a"), b("bc")]);
        assert_eq!(bulk(&Bytes::from_static(b"$-1\r\n")), None);
        assert_eq!(bulk(&Bytes::from_static(b"+OK\r\n")), None);
        assert_eq!(error_text(b"-ERR x\r\n"), "ERR x");
    }
}
