//! Value transforms with strata in cluster mode, values from before:
//! plain values written on the nodes before a rule existed (returned as
//! stored, next to sealed ones, across slots), and key rotation with
//! `PROXY REWRAP`, whose cursor walks every primary (see
//! `src/admin/rewrap.rs`, `step_cluster`). The standalone equivalents are
//! in `tests/transforms_rotation.rs`; the other cluster-mode transform tests
//! in `tests/cluster_transforms.rs`.
//!
//! One cluster for the binary (`cluster::shared()`, held per test); every
//! test starts its own strata with the rules below and key files in a temp
//! dir (`support::transform_env`), and restarts it (in process) with other
//! keys loaded.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use redis::Value;
use support::cluster;
use support::cluster_strata::{
    blocking, con as node, on_node, reset, rs, rs_err, stored, Placement,
};
use support::transform_env::{
    assert_plain_counted, assert_sealed, key_id, pairs, rewrap_all, secret, stored_values,
    TransformEnv, Walk, RULE_E, RULE_S, RULE_STRICT,
};

/// `s:*` compressed and encrypted, `e:*` encrypted only, `strict:*`
/// encrypted with plain values refused.
const RULES: [&str; 3] = [RULE_S, RULE_E, RULE_STRICT];

/// Bits of a cluster cursor below the primary's index (src/backend/cluster/scan.rs).
const NODE_CURSOR_BITS: u32 = 40;
/// Mask of the primary's index once shifted down.
const NODE_MASK: u64 = (1 << 10) - 1;

fn parse_cursor(c: &str) -> u64 {
    c.parse().unwrap_or_else(|_| panic!("REWRAP cursor {c:?}"))
}

/// The primary (index in slot order) each step of `walk` worked on.
fn walk_nodes(walk: &Walk) -> Vec<usize> {
    walk.positions
        .iter()
        .map(|c| ((parse_cursor(c) >> NODE_CURSOR_BITS) & NODE_MASK) as usize)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_values_written_before_the_rule_are_returned_on_every_node() {
    let c = cluster::shared().await;
    blocking(|| reset(&c));
    let place = Placement::of(&c);
    let legacy = |what: &str, i: usize| format!("legacy-{what}-{i}");
    // Written straight on their owners, before strata and its rules exist.
    let olds = place.key_per_primary("s:m:old:");
    let hashes = place.key_per_primary("s:m:h:");
    let lists = place.key_per_primary("s:m:l:");
    let stricts = place.key_per_primary("strict:");
    for i in 0..olds.len() {
        let (o, k) = &olds[i];
        let _: () = on_node(o, &[b"SET", k.as_bytes(), legacy("string", i).as_bytes()]).await;
        let (o, h) = &hashes[i];
        let _: i64 = on_node(
            o,
            &[b"HSET", h.as_bytes(), b"old", legacy("field", i).as_bytes()],
        )
        .await;
        let (o, l) = &lists[i];
        let _: i64 = on_node(
            o,
            &[b"RPUSH", l.as_bytes(), legacy("element", i).as_bytes()],
        )
        .await;
        let (o, k) = &stricts[i];
        let _: () = on_node(o, &[b"SET", k.as_bytes(), b"planted"]).await;
    }
    let env = TransformEnv::cluster(&c, &RULES, "k1", &["k1"]).await;
    for (mut con, p) in env.both().await {
        let resp3 = p == "p3";
        // Strings: the old value as stored, a new one sealed beside it.
        let mut news = Vec::new();
        for (i, (owner, old)) in olds.iter().enumerate() {
            let v: String = rs(&mut con, &["GET", old]).await;
            assert_eq!(v, legacy("string", i), "{old} on {owner}");
            let new = place.key_on(owner, &format!("s:m:new:{p}:"));
            let _: () = rs(&mut con, &["SET", &new, &secret(i)]).await;
            assert_sealed(&stored(&place, &new).await, &secret(i), &new);
            assert_eq!(
                stored(&place, old).await,
                legacy("string", i).as_bytes(),
                "reading does not rewrite {old}"
            );
            news.push(new);
        }
        // MGET split over the three slots: plain and sealed interleaved,
        // each plain value next to a sealed one of another node, one miss.
        let n = olds.len();
        let mut keys = Vec::new();
        let mut want = Vec::new();
        for i in 0..n {
            keys.push(olds[i].1.clone());
            want.push(Some(legacy("string", i)));
            keys.push(news[(i + 1) % n].clone());
            want.push(Some(secret((i + 1) % n)));
        }
        keys.insert(3, "s:m:missing".to_string());
        want.insert(3, None);
        let mut words = vec!["MGET"];
        words.extend(keys.iter().map(String::as_str));
        let got: Vec<Option<String>> = rs(&mut con, &words).await;
        assert_eq!(got, want, "{words:?}");
        // Hashes: an old field and a new one in the same hash.
        let field = format!("new{p}");
        for (i, (owner, h)) in hashes.iter().enumerate() {
            let _: i64 = rs(&mut con, &["HSET", h, &field, &secret(i)]).await;
            let all: Value = rs(&mut con, &["HGETALL", h]).await;
            let got = pairs(&all, resp3);
            assert_eq!(got["old"], legacy("field", i), "{h}");
            assert_eq!(got[&field], secret(i), "{h}");
            let v: Vec<Option<String>> = rs(&mut con, &["HMGET", h, &field, "old"]).await;
            assert_eq!(v, [Some(secret(i)), Some(legacy("field", i))]);
            let raw: HashMap<String, Vec<u8>> = on_node(owner, &[b"HGETALL", h.as_bytes()]).await;
            assert_eq!(raw["old"], legacy("field", i).as_bytes());
            assert_sealed(&raw[&field], &secret(i), &format!("{h} {field} on {owner}"));
        }
        // Lists: an old element before a new one.
        for (i, (owner, l)) in lists.iter().enumerate() {
            let _: i64 = rs(&mut con, &["RPUSH", l, &secret(i)]).await;
            let v: Vec<String> = rs(&mut con, &["LRANGE", l, "0", "-1"]).await;
            assert_eq!(v, [legacy("element", i), secret(i)], "{l}");
            let raw: Vec<Vec<u8>> = on_node(owner, &[b"LRANGE", l.as_bytes(), b"0", b"-1"]).await;
            assert_eq!(raw[0], legacy("element", i).as_bytes());
            assert_sealed(&raw[1], &secret(i), &format!("{l} on {owner}"));
            let v: String = rs(&mut con, &["RPOP", l]).await;
            assert_eq!(v, secret(i));
        }
        // A rule with accept_plain = false refuses them, on every node.
        for (owner, k) in &stricts {
            let e = rs_err(&mut con, &["GET", k]).await;
            assert!(
                e.contains(&format!(
                    "value of key '{k}' is not encrypted (rule 'strict:*' refuses plain values)"
                )),
                "{k} on {owner}: {e}"
            );
        }
    }
    // Per protocol, 3 plain values each by GET, MGET, HGETALL, HMGET, LRANGE.
    assert_plain_counted(&env.metrics().await, 30.0, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_with_resumable_rewrap_walks_every_primary() {
    let c = cluster::shared().await;
    blocking(|| reset(&c));
    let place = Placement::of(&c);
    let primaries = place.primaries();
    let n = primaries.len();
    assert!(n >= 3, "{primaries:?}");
    let mut env = TransformEnv::cluster(&c, &RULES, "k1", &["k1", "k2"]).await;
    // Per primary: 12 strings, a hash, a list, and a plain value written
    // before the rule (straight on the node); all under `s:r:*`.
    let mut strings: Vec<(String, String)> = Vec::new(); // (key, plaintext)
    let mut hashes = Vec::new();
    let mut lists = Vec::new();
    let mut legacies = Vec::new();
    {
        let mut con = env.con().await;
        for (p, owner) in primaries.iter().enumerate() {
            for (j, k) in place.keys_on(owner, "s:r:", 12).into_iter().enumerate() {
                let v = secret(p * 100 + j);
                let _: () = rs(&mut con, &["SET", &k, &v]).await;
                strings.push((k, v));
            }
            let h = place.key_on(owner, "s:r:h:");
            let _: i64 = rs(&mut con, &["HSET", &h, "a", &secret(1), "b", &secret(2)]).await;
            hashes.push(h);
            let l = place.key_on(owner, "s:r:l:");
            let _: i64 = rs(&mut con, &["RPUSH", &l, &secret(1), &secret(2), &secret(3)]).await;
            lists.push(l);
            let legacy = place.key_on(owner, "s:r:legacy:");
            let _: () = on_node(
                owner,
                &[
                    b"SET",
                    legacy.as_bytes(),
                    format!("legacy-plain-{p}").as_bytes(),
                ],
            )
            .await;
            legacies.push(legacy);
        }
        let _: i64 = rs(&mut con, &["SADD", "s:r:set", "member"]).await;
        let _: i64 = rs(&mut con, &["EXPIRE", &strings[3].0, "1000"]).await;
    }
    // Outside the pattern: never rewrapped.
    let outside_e = place.key_on(&primaries[0], "e:r:");
    let outside_s = place.key_on(&primaries[n - 1], "s:outside:");
    {
        let mut con = env.con().await;
        let _: () = rs(&mut con, &["SET", &outside_e, &secret(1)]).await;
        let _: () = rs(&mut con, &["SET", &outside_s, &secret(1)]).await;
    }
    let mut total = 0;
    for owner in &primaries {
        let values = stored_values(&mut node(owner).await, "s:r:*").await;
        // 12 strings, 2 hash fields, 3 list elements, 1 plain value.
        assert!(values.len() >= 18, "{owner}: {:?}", values.keys());
        for (k, v) in &values {
            if k.starts_with("s:r:legacy:") {
                assert!(v.starts_with(b"legacy-plain-"), "{k} on {owner}");
            } else {
                assert_eq!(key_id(v).as_deref(), Some("k1"), "{k} on {owner}");
            }
        }
        total += values.len();
    }

    // Rotate: k2 becomes the write key, k1 stays loaded for reads.
    env.restart("k2", &["k1", "k2"]).await;
    {
        let mut con = env.con().await;
        for (k, v) in strings.iter().step_by(12) {
            let got: String = rs(&mut con, &["GET", k]).await;
            assert_eq!(&got, v, "{k} read with k1 while k2 is active");
        }
    }
    let new = place.key_on(&primaries[1], "s:r:new:");
    {
        let mut con = env.con().await;
        let _: () = rs(&mut con, &["SET", &new, &secret(500)]).await;
    }
    assert_eq!(key_id(&stored(&place, &new).await).as_deref(), Some("k2"));
    // A tampered value on the second primary: reported, left alone.
    let (tampered, _) = strings[12 + 5].clone();
    assert_eq!(place.owner(&tampered), primaries[1]);
    let mut bad = stored(&place, &tampered).await;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let _: () = on_node(&primaries[1], &[b"SET", tampered.as_bytes(), &bad]).await;

    // The walk: COUNT 5, the first step without RESUME, then RESUME with
    // each returned cursor on a fresh connection, until the cursor is 0.
    // strata is restarted midway: the cursor is the cluster's, not the
    // process's.
    let mut walk = Walk::default();
    {
        let mut con = env.con().await;
        let (next, s, r, k): (String, i64, i64, i64) =
            rs(&mut con, &["PROXY", "REWRAP", "s:r:*", "COUNT", "5"]).await;
        assert!(s >= 5, "scanned {s}");
        let mut cursor = walk.add("0", (next, s, r, k));
        assert_ne!(cursor, "0", "one step of 5 cannot cover {total} values");
        while cursor != "0" {
            if walk.positions.len() == 3 {
                env.restart("k2", &["k1", "k2"]).await;
            }
            cursor = walk.step(&env, "s:r:*", 5, &cursor).await;
            assert!(walk.positions.len() < 1000, "REWRAP does not finish");
        }
    }
    // Primary after primary, in slot order, each in several steps (each
    // holds at least 15 keys).
    let nodes = walk_nodes(&walk);
    assert!(nodes.windows(2).all(|w| w[0] <= w[1]), "{nodes:?}");
    for (i, owner) in primaries.iter().enumerate() {
        let steps = nodes.iter().filter(|&&x| x == i).count();
        assert!(
            steps >= 2,
            "primary {i} ({owner}): {steps} steps: {nodes:?}"
        );
    }
    assert_eq!(nodes.iter().max(), Some(&(n - 1)), "{nodes:?}");
    // Every key of the pattern: 12 strings, hash, list and plain value per
    // primary, s:r:new and s:r:set.
    let keys = n * 15 + 2;
    assert!(walk.scanned >= keys as i64, "{walk:?}");
    // All but the tampered string and s:r:new (already k2); s:r:set holds
    // members, not values.
    assert_eq!(walk.rewrapped, (n * 15 - 1) as i64, "{walk:?}");
    assert!(walk.skipped >= 1, "the tampered key is skipped: {walk:?}");

    // On every owner, straight from the node: every value now under k2.
    for owner in &primaries {
        let values = stored_values(&mut node(owner).await, "s:r:*").await;
        assert!(values.len() >= 18, "{owner}: {:?}", values.keys());
        for (k, v) in &values {
            let key = k.split('/').next().unwrap();
            assert_eq!(place.owner(key), owner, "{key}");
            if key == tampered {
                assert_eq!(v, &bad, "a value that cannot be opened is never rewritten");
            } else {
                assert_eq!(key_id(v).as_deref(), Some("k2"), "{k} on {owner}");
            }
        }
    }
    let members: Vec<String> = rs(&mut env.con().await, &["SMEMBERS", "s:r:set"]).await;
    assert_eq!(members, ["member"], "sets are untouched");
    let ttl: i64 = on_node(
        place.owner(&strings[3].0),
        &[b"TTL", strings[3].0.as_bytes()],
    )
    .await;
    assert!(ttl > 900, "REWRAP keeps the TTL: {ttl}");
    for k in [&outside_e, &outside_s] {
        assert_eq!(
            key_id(&stored(&place, k).await).as_deref(),
            Some("k1"),
            "{k}"
        );
    }
    // A second walk finds nothing left to do but the tampered key.
    let again = rewrap_all(&env, "s:r:*", 100, "0").await;
    assert_eq!(again.rewrapped, 0, "{again:?}");
    assert!(again.skipped >= 1, "{again:?}");
    assert!(walk_nodes(&again).contains(&(n - 1)), "{again:?}");
    // Reads through strata (k1 and k2 loaded) return the plaintext.
    let mut con = env.con().await;
    let readable: Vec<&(String, String)> = strings.iter().filter(|(k, _)| *k != tampered).collect();
    let mut words = vec!["MGET"];
    words.extend(readable.iter().map(|(k, _)| k.as_str()));
    let got: Vec<String> = rs(&mut con, &words).await;
    let want: Vec<String> = readable.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(got, want);
    // Bad cursors and arguments.
    let c1 = parse_cursor(&walk.positions[1]);
    let alien = (c1 & !(NODE_MASK << NODE_CURSOR_BITS)) | (NODE_MASK << NODE_CURSOR_BITS);
    let e = rs_err(
        &mut con,
        &["PROXY", "REWRAP", "s:r:*", "RESUME", &alien.to_string()],
    )
    .await;
    assert!(e.contains("restart the scan with cursor 0"), "{e}");
    let e = rs_err(&mut con, &["PROXY", "REWRAP", "s:r:*", "RESUME", "x1"]).await;
    assert!(e.contains("RESUME takes the cursor"), "{e}");
    let e = rs_err(&mut con, &["PROXY", "REWRAP", "s:r:*", "COUNT", "0"]).await;
    assert!(e.contains("COUNT"), "{e}");
    drop(con);

    // Retire k1: a strata with only k2 reads everything that was rewrapped.
    env.restart("k2", &["k2"]).await;
    let mut con = env.con().await;
    let got: Vec<String> = rs(&mut con, &words).await;
    assert_eq!(got, want, "MGET with k2 alone");
    for (k, v) in &readable {
        let got: String = rs(&mut con, &["GET", k]).await;
        assert_eq!(&got, v, "{k}");
    }
    for h in &hashes {
        let all: HashMap<String, String> = rs(&mut con, &["HGETALL", h]).await;
        assert_eq!(all.len(), 2, "{h}");
        assert_eq!(all["a"], secret(1), "{h}");
        assert_eq!(all["b"], secret(2), "{h}");
    }
    for l in &lists {
        let v: Vec<String> = rs(&mut con, &["LRANGE", l, "0", "-1"]).await;
        assert_eq!(v, [secret(1), secret(2), secret(3)], "{l}");
    }
    for (p, legacy) in legacies.iter().enumerate() {
        let v: String = rs(&mut con, &["GET", legacy]).await;
        assert_eq!(v, format!("legacy-plain-{p}"));
        assert_eq!(key_id(&stored(&place, legacy).await).as_deref(), Some("k2"));
    }
    let v: String = rs(&mut con, &["GET", &new]).await;
    assert_eq!(v, secret(500));
    // What was not rewrapped names the missing key.
    for k in [&outside_e, &outside_s, &tampered] {
        let e = rs_err(&mut con, &["GET", k]).await;
        assert!(
            e.contains(&format!(
                "cannot decrypt value of key '{k}' (unknown key id 'k1')"
            )),
            "{e}"
        );
    }
}
