//! Value transforms (lz4, AES-256-GCM; see `tests/transforms.rs`) with
//! strata in cluster mode: the essential round trips on keys spread over
//! every primary, split/merged multi-key commands opening each value, the
//! stored form read straight from the owning node, refusals, tampering,
//! copied values, and compression with encryption on one rule. Plain
//! (pre-rule) values and key rotation with `PROXY REWRAP` are in
//! `tests/cluster_transforms_rotation.rs`.
//!
//! One cluster for the binary (`cluster::shared()`, held per test); every
//! test starts its own strata with the rules below and key files in a temp
//! dir (`support::transform_env`).
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, HashMap};

use redis::Value;
use support::clients::{show, RawConn};
use support::cluster::{self, Cluster};
use support::cluster_strata::{
    blocking, con as node, on_node, reset, rs, rs_err, stored, Placement,
};
use support::transform_env::{
    assert_compression, assert_sealed, contains, failures, flags, json_doc, pairs, secret,
    TransformEnv, MAGIC, RULE_C, RULE_E, RULE_S,
};

/// `s:*` compressed and encrypted, `c:*` compressed only, `e:*` encrypted only.
const RULES: [&str; 3] = [RULE_S, RULE_C, RULE_E];

/// Empty primaries, strata in cluster mode with [`RULES`] and key `k1`,
/// and where keys land.
async fn fresh(c: &Cluster) -> (TransformEnv, Placement) {
    blocking(|| reset(c));
    let env = TransformEnv::cluster(c, &RULES, "k1", &["k1"]).await;
    (env, Placement::of(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strings_round_trip_across_slots_and_are_sealed_on_their_owner() {
    let c = cluster::shared().await;
    let (env, place) = fresh(&c).await;
    let mut con = env.con().await;
    let keys = place.key_per_primary("s:str:");
    for (i, (_, k)) in keys.iter().enumerate() {
        let _: () = rs(&mut con, &["SET", k, &secret(i)]).await;
        let v: String = rs(&mut con, &["GET", k]).await;
        assert_eq!(v, secret(i));
        assert_sealed(&stored(&place, k).await, &secret(i), k);
        let old: String = rs(&mut con, &["GETSET", k, &secret(i + 10)]).await;
        assert_eq!(old, secret(i));
    }
    // MSET/MGET split over the primaries, every rule and none, with a miss.
    let plain = place.key_on(&keys[1].0, "plain:");
    let comp = place.key_on(&keys[2].0, "c:");
    let enc = place.key_on(&keys[0].0, "e:");
    let big = secret(7).repeat(4);
    let _: () = rs(
        &mut con,
        &[
            "MSET",
            &keys[0].1,
            &secret(1),
            &plain,
            &secret(2),
            &comp,
            &big,
            &enc,
            &secret(3),
            &keys[2].1,
            &secret(4),
        ],
    )
    .await;
    let got: Vec<Option<String>> = rs(
        &mut con,
        &[
            "MGET",
            &keys[2].1,
            &plain,
            "s:missing",
            &comp,
            &enc,
            &keys[0].1,
            &keys[1].1,
        ],
    )
    .await;
    let want = [
        Some(secret(4)),
        Some(secret(2)),
        None,
        Some(big.clone()),
        Some(secret(3)),
        Some(secret(1)),
        Some(secret(11)),
    ];
    assert_eq!(got, want);
    assert_sealed(&stored(&place, &keys[0].1).await, &secret(1), "MSET s:");
    assert_sealed(&stored(&place, &keys[2].1).await, &secret(4), "MSET s:");
    assert_sealed(&stored(&place, &enc).await, &secret(3), "MSET e:");
    assert_eq!(stored(&place, &plain).await, secret(2).as_bytes());
    let c_stored = stored(&place, &comp).await;
    assert!(
        c_stored.starts_with(&MAGIC) && c_stored[5] == 0x01,
        "compressed only"
    );
    assert!(c_stored.len() < big.len());
    // MSETNX on one slot seals too; across slots it is CROSSSLOT.
    let t = place.tag_on(&keys[1].0, "tx");
    let (n1, n2) = (format!("s:{t}1"), format!("s:{t}2"));
    let n: i64 = rs(&mut con, &["MSETNX", &n1, &secret(5), &n2, &secret(6)]).await;
    assert_eq!(n, 1);
    let v: Vec<String> = rs(&mut con, &["MGET", &n2, &n1]).await;
    assert_eq!(v, [secret(6), secret(5)]);
    assert_sealed(&stored(&place, &n1).await, &secret(5), "MSETNX");
    let e = rs_err(&mut con, &["MSETNX", &keys[0].1, "x", &keys[1].1, "y"]).await;
    assert!(
        e.contains("Keys in request don't hash to the same slot"),
        "{e}"
    );
    // A transaction pinned to one node opens its queued replies.
    let mut r = RawConn::connect(&env.addr()).await;
    r.expect("MULTI", b"+OK\r\n").await;
    r.expect(&format!("SET {n1} tx-secret-value-1"), b"+QUEUED\r\n")
        .await;
    r.expect(&format!("GET {n1}"), b"+QUEUED\r\n").await;
    r.expect(&format!("STRLEN {n1}"), b"+QUEUED\r\n").await;
    r.expect("EXEC", b"*3\r\n+OK\r\n$17\r\ntx-secret-value-1\r\n:17\r\n")
        .await;
    assert_sealed(&stored(&place, &n1).await, "tx-secret-value-1", "MULTI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hashes_and_lists_round_trip_across_slots() {
    let c = cluster::shared().await;
    let (env, place) = fresh(&c).await;
    for (mut con, p) in env.both().await {
        let resp3 = p == "p3";
        for (i, (owner, h)) in place
            .key_per_primary(&format!("s:h:{p}:"))
            .iter()
            .enumerate()
        {
            let n: i64 = rs(
                &mut con,
                &["HSET", h, "f1", &secret(i), "f2", &secret(i + 1)],
            )
            .await;
            assert_eq!(n, 2);
            let all: Value = rs(&mut con, &["HGETALL", h]).await;
            let got = pairs(&all, resp3);
            let want: BTreeMap<String, String> = [("f1", secret(i)), ("f2", secret(i + 1))]
                .into_iter()
                .map(|(f, v)| (f.to_string(), v))
                .collect();
            assert_eq!(got, want);
            let mut direct = node(owner).await;
            let raw: HashMap<String, Vec<u8>> = rs(&mut direct, &["HGETALL", h]).await;
            assert_eq!(raw.len(), 2);
            for (f, v) in &raw {
                assert_sealed(v, &want[f], &format!("{h} {f} on {owner}"));
            }
        }
        for (i, (owner, l)) in place
            .key_per_primary(&format!("s:l:{p}:"))
            .iter()
            .enumerate()
        {
            let n: i64 = rs(&mut con, &["RPUSH", l, &secret(i), &secret(i + 1)]).await;
            assert_eq!(n, 2);
            let n: i64 = rs(&mut con, &["LPUSH", l, &secret(i + 2)]).await;
            assert_eq!(n, 3);
            let v: Vec<String> = rs(&mut con, &["LRANGE", l, "0", "-1"]).await;
            assert_eq!(v, [secret(i + 2), secret(i), secret(i + 1)]);
            let mut direct = node(owner).await;
            let raw: Vec<Vec<u8>> = rs(&mut direct, &["LRANGE", l, "0", "-1"]).await;
            for (s, plain) in raw.iter().zip(&v) {
                assert_sealed(s, plain, &format!("{l} on {owner}"));
            }
            let v: String = rs(&mut con, &["LPOP", l]).await;
            assert_eq!(v, secret(i + 2));
            let v: Option<(String, String)> = rs(&mut con, &["BLPOP", l, "1"]).await;
            assert_eq!(v, Some((l.clone(), secret(i))));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_and_tampering_are_reported_on_every_node() {
    let c = cluster::shared().await;
    let (env, place) = fresh(&c).await;
    let mut con = env.con().await;
    let mut r = RawConn::connect(&env.addr()).await;
    let keys = place.key_per_primary("s:t:");
    for (i, (owner, k)) in keys.iter().enumerate() {
        let _: () = rs(&mut con, &["SET", k, &secret(i)]).await;
        // Refused, nothing sent to the node.
        for (line, name) in [
            (format!("APPEND {k} x"), "APPEND"),
            (format!("INCR {k}"), "INCR"),
            (format!("EVAL return(1) 1 {k}"), "EVAL"),
        ] {
            let want =
                format!("-ERR {name} not supported on transformed key '{k}' (rule 's:*')\r\n");
            r.expect(&line, want.as_bytes()).await;
        }
        let v: String = rs(&mut con, &["GET", k]).await;
        assert_eq!(v, secret(i), "untouched");
        // One flipped bit of the stored value, straight on its owner.
        let mut direct = node(owner).await;
        let mut bad = stored(&place, k).await;
        let at = bad.len() - 3;
        bad[at] ^= 0x04;
        let _: () = redis::cmd("SET")
            .arg(k)
            .arg(&bad)
            .query_async(&mut direct)
            .await
            .unwrap();
        let e = rs_err(&mut con, &["GET", k]).await;
        assert!(e.contains(&format!("'{k}'")), "{e}");
    }
    // MGET across slots with one bad value fails as a whole, naming it.
    let good = place.key_on(&keys[0].0, "s:good:");
    let _: () = rs(&mut con, &["SET", &good, &secret(9)]).await;
    let e = rs_err(&mut con, &["MGET", &good, &keys[1].1]).await;
    assert!(e.contains(&keys[1].1), "{e}");
    // A value copied to a key on another node is bound to its own key name.
    let _: () = rs(&mut con, &["SET", &good, &secret(9)]).await;
    let sealed = stored(&place, &good).await;
    let copy = place.key_on(&keys[2].0, "s:copy:");
    let mut direct = node(place.owner(&copy)).await;
    let _: () = redis::cmd("SET")
        .arg(&copy)
        .arg(&sealed)
        .query_async(&mut direct)
        .await
        .unwrap();
    let e = rs_err(&mut con, &["GET", &copy]).await;
    assert!(
        e.contains(&format!(
            "cannot decrypt value of key '{copy}' (authentication failed)"
        )),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compression_and_encryption_on_one_rule_on_every_node() {
    let c = cluster::shared().await;
    let (env, place) = fresh(&c).await;
    let mut con = env.con().await;
    let json = json_doc();
    let mut all = Vec::new();
    for owner in place.primaries() {
        let s = place.key_on(&owner, "s:big:");
        let cc = place.key_on(&owner, "c:big:");
        let e = place.key_on(&owner, "e:big:");
        for key in [&s, &cc, &e] {
            let _: () = rs(&mut con, &["SET", key, &json]).await;
            let got: String = rs(&mut con, &["GET", key]).await;
            assert_eq!(got, json, "{key}");
        }
        let (s_raw, c_raw, e_raw) = (
            stored(&place, &s).await,
            stored(&place, &cc).await,
            stored(&place, &e).await,
        );
        let on = |k: &str| format!("{k} on {owner}");
        assert_eq!(
            flags(&s_raw, &s),
            0x03,
            "compressed and encrypted: {}",
            on(&s)
        );
        assert_eq!(flags(&c_raw, &cc), 0x01, "compressed: {}", on(&cc));
        assert_eq!(flags(&e_raw, &e), 0x02, "encrypted: {}", on(&e));
        for (raw, k) in [(&s_raw, &s), (&e_raw, &e)] {
            assert_sealed(raw, &json, &on(k));
            assert!(!contains(raw, b"example.com"), "{}: {}", on(k), show(raw));
        }
        assert!(
            s_raw.len() < json.len() * 6 / 10,
            "{}: {} of {}",
            on(&s),
            s_raw.len(),
            json.len()
        );
        assert!(c_raw.len() < json.len() * 6 / 10, "{}", on(&cc));
        assert!(e_raw.len() > json.len(), "{}", on(&e));
        // Compression ran first: about as small as compression alone.
        assert!(
            s_raw.len() < c_raw.len() + 64,
            "{} vs {}",
            s_raw.len(),
            c_raw.len()
        );
        let n: i64 = rs(&mut con, &["STRLEN", &s]).await;
        assert_eq!(n, json.len() as i64);
        // A hash field and a list element under the same rule.
        let h = place.key_on(&owner, "s:bigh:");
        let _: i64 = rs(&mut con, &["HSET", &h, "doc", &json]).await;
        let v: String = rs(&mut con, &["HGET", &h, "doc"]).await;
        assert_eq!(v, json);
        let raw: Vec<u8> = on_node(&owner, &[b"HGET", h.as_bytes(), b"doc"]).await;
        assert_eq!(flags(&raw, &h), 0x03, "{}", on(&h));
        assert_sealed(&raw, &json, &on(&h));
        assert!(raw.len() < json.len() * 6 / 10, "{}", on(&h));
        let l = place.key_on(&owner, "s:bigl:");
        let _: i64 = rs(&mut con, &["RPUSH", &l, &json]).await;
        let v: String = rs(&mut con, &["LINDEX", &l, "0"]).await;
        assert_eq!(v, json);
        let raw: Vec<u8> = on_node(&owner, &[b"LINDEX", l.as_bytes(), b"0"]).await;
        assert_eq!(flags(&raw, &l) & 0x03, 0x03, "{}", on(&l));
        assert_sealed(&raw, &json, &on(&l));
        assert!(raw.len() < json.len() * 6 / 10, "{}", on(&l));
        all.extend([s, cc, e]);
    }
    // All nine in one MGET split over the nodes.
    let mut words = vec!["MGET"];
    words.extend(all.iter().map(String::as_str));
    let got: Vec<String> = rs(&mut con, &words).await;
    assert_eq!(got.len(), all.len());
    assert!(got.iter().all(|v| *v == json), "MGET {all:?}");
    // Below min_size, a compress-only rule stores the value as it is.
    let small = place.key_on(&place.primaries()[1], "c:small:");
    let _: () = rs(&mut con, &["SET", &small, "tiny"]).await;
    assert_eq!(stored(&place, &small).await, b"tiny");
    assert_compression(&env.metrics().await, 15.0 * json.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copied_values_are_rejected_on_any_node_naming_the_key() {
    let c = cluster::shared().await;
    let (env, place) = fresh(&c).await;
    let primaries = place.primaries();
    let n = primaries.len();
    let mut con = env.con().await;
    for (i, owner) in primaries.iter().enumerate() {
        let next = &primaries[(i + 1) % n];
        for prefix in ["s:cp:", "e:cp:"] {
            let k = place.key_on(owner, prefix);
            let _: () = rs(&mut con, &["SET", &k, &secret(i)]).await;
            let dump: Vec<u8> = on_node(owner, &[b"DUMP", k.as_bytes()]).await;
            // DUMP/RESTORE to another key of the same node, and to a key
            // of the next node.
            let same = place.key_on(owner, &format!("{prefix}same:"));
            let far = place.key_on(next, &format!("{prefix}far:"));
            for (to, copy) in [(owner, &same), (next, &far)] {
                let _: () = on_node(to, &[b"RESTORE", copy.as_bytes(), b"0", &dump]).await;
                assert_eq!(
                    stored(&place, copy).await,
                    stored(&place, &k).await,
                    "{copy}: the same bytes"
                );
                let e = rs_err(&mut con, &["GET", copy]).await;
                assert!(
                    e.contains(&format!(
                        "cannot decrypt value of key '{copy}' (authentication failed)"
                    )),
                    "{copy} on {to}: {e}"
                );
            }
            // MGET over the slots fails as a whole, naming the copy.
            let e = rs_err(&mut con, &["MGET", &k, &far, &same]).await;
            assert!(e.contains(&far) || e.contains(&same), "{e}");
            // Restored under its own name, it reads again: bound to the key
            // name, not to the node.
            let _: () = on_node(owner, &[b"RESTORE", k.as_bytes(), b"0", &dump, b"REPLACE"]).await;
            let v: String = rs(&mut con, &["GET", &k]).await;
            assert_eq!(v, secret(i));
        }
        // A hash copied whole to a hash of the next node: every field is
        // bound to its key.
        let h = place.key_on(owner, "s:cp:h:");
        let _: i64 = rs(&mut con, &["HSET", &h, "f1", &secret(1), "f2", &secret(2)]).await;
        let dump: Vec<u8> = on_node(owner, &[b"DUMP", h.as_bytes()]).await;
        let far_h = place.key_on(next, "s:cp:farh:");
        let _: () = on_node(next, &[b"RESTORE", far_h.as_bytes(), b"0", &dump]).await;
        let e = rs_err(&mut con, &["HGET", &far_h, "f1"]).await;
        assert!(
            e.contains(&format!(
                "cannot decrypt value of key '{far_h}' field 'f1' (authentication failed)"
            )),
            "{e}"
        );
        let e = rs_err(&mut con, &["HGETALL", &far_h]).await;
        assert!(e.contains(&format!("'{far_h}'")), "{e}");
        // A hash value swapped between fields, on its node.
        let f1: Vec<u8> = on_node(owner, &[b"HGET", h.as_bytes(), b"f1"]).await;
        let _: i64 = on_node(owner, &[b"HSET", h.as_bytes(), b"f2", &f1]).await;
        let e = rs_err(&mut con, &["HGET", &h, "f2"]).await;
        assert!(e.contains(&format!("key '{h}' field 'f2'")), "{e}");
        let v: String = rs(&mut con, &["HGET", &h, "f1"]).await;
        assert_eq!(v, secret(1));
        // A list element copied into a string of the next node.
        let l = place.key_on(owner, "s:cp:l:");
        let _: i64 = rs(&mut con, &["RPUSH", &l, &secret(3)]).await;
        let el: Vec<u8> = on_node(owner, &[b"LINDEX", l.as_bytes(), b"0"]).await;
        let as_string = place.key_on(next, "s:cp:froml:");
        let _: () = on_node(next, &[b"SET", as_string.as_bytes(), &el]).await;
        let e = rs_err(&mut con, &["GET", &as_string]).await;
        assert!(e.contains(&format!("'{as_string}'")), "{e}");
        // The whole list restored on the next node: under the same rule it
        // is accepted (elements may move between lists of one rule, as
        // LMOVE does); under another rule it is refused, naming both keys.
        let dump: Vec<u8> = on_node(owner, &[b"DUMP", l.as_bytes()]).await;
        let same_rule = place.key_on(next, "s:cp:farl:");
        let _: () = on_node(next, &[b"RESTORE", same_rule.as_bytes(), b"0", &dump]).await;
        let v: Vec<String> = rs(&mut con, &["LRANGE", &same_rule, "0", "-1"]).await;
        assert_eq!(v, [secret(3)]);
        let other_rule = place.key_on(next, "e:cp:farl:");
        let _: () = on_node(next, &[b"RESTORE", other_rule.as_bytes(), b"0", &dump]).await;
        let e = rs_err(&mut con, &["LRANGE", &other_rule, "0", "-1"]).await;
        assert!(
            e.contains(&format!(
                "cannot decrypt value of key '{other_rule}' (it was written to key '{l}', which is under another rule)"
            )),
            "{e}"
        );
    }
    let m = env.metrics().await;
    let auth = failures(&m, "auth_failed");
    assert!(auth >= (n * 8) as f64, "auth_failed {auth}");
}
