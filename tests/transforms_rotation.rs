//! Value transforms through strata, against a real redis-server: values at
//! rest and the keys that open them. The stored form of a rule that
//! compresses and encrypts, tampered and copied values (alone and in the
//! middle of a pipeline), plain values written before the rule, key rotation
//! with a resumable `PROXY REWRAP`, and the config checks of rules and keys.
//! The command round trips and refusals are in `tests/transforms.rs`; plain
//! values and rotation in cluster mode in `tests/cluster_transforms_rotation.rs`.
//!
//! Keys come from files in a temp dir per test (`file = …` key sources), so
//! tests run in parallel without touching the process environment; the
//! environment, the rules, the command helpers and the envelope readers are
//! in `support::transform_env`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use redis::{cmd, Value};
use support::clients::{metric, show};
use support::transform_env::{
    assert_compression, assert_plain_counted, assert_sealed, err, failures, flags, json_doc,
    key_id, pairs, q, raw_get, rewrap_all, secret, start, stored_values, w, Walk,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_and_encryption_on_one_rule() {
    let env = start("k1", &["k1"]).await;
    let mut con = env.con().await;
    let mut b = env.backend().await;
    let json = json_doc();
    for key in ["s:big", "c:big", "e:big"] {
        let _: () = q(&mut con, &[b"SET", key.as_bytes(), json.as_bytes()]).await;
        let got: String = q(&mut con, &[b"GET", key.as_bytes()]).await;
        assert_eq!(got, json, "{key}");
    }
    let s = raw_get(&mut b, "s:big").await;
    let c = raw_get(&mut b, "c:big").await;
    let e = raw_get(&mut b, "e:big").await;
    assert_eq!(flags(&s, "s:big"), 0x03, "compressed and encrypted");
    assert_eq!(flags(&c, "c:big"), 0x01, "compressed");
    assert_eq!(flags(&e, "e:big"), 0x02, "encrypted");
    assert_sealed(&s, "user", "s:big");
    assert_sealed(&e, "user", "e:big");
    assert!(
        s.len() < json.len() * 6 / 10,
        "{} of {}",
        s.len(),
        json.len()
    );
    assert!(e.len() > json.len());
    // Compression ran first: the encrypted value is about as small as the compressed one.
    assert!(s.len() < c.len() + 64, "{} vs {}", s.len(), c.len());
    // Below min_size, a compress-only rule stores the value as it is.
    let _: () = w(&mut con, "SET c:small tiny").await;
    assert_eq!(raw_get(&mut b, "c:small").await, b"tiny");
    let n: i64 = w(&mut con, "STRLEN s:big").await;
    assert_eq!(n, json.len() as i64);
    assert_compression(&env.metrics().await, 3.0 * json.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_copied_values_are_rejected_naming_the_key() {
    let env = start("k1", &["k1", "k2"]).await;
    let mut con = env.con().await;
    let mut b = env.backend().await;
    for key in ["s:t", "e:t"] {
        let _: () = w(&mut con, &format!("SET {key} {}", secret(1))).await;
        let stored = raw_get(&mut b, key).await;
        // Every single bit flip of the stored value is detected.
        for i in (0..stored.len()).step_by(3) {
            let mut bad = stored.clone();
            bad[i] ^= 0x04;
            let _: () = q(&mut b, &[b"SET", key.as_bytes(), &bad]).await;
            let got: redis::RedisResult<Option<Vec<u8>>> =
                cmd("GET").arg(key).query_async(&mut con).await;
            match got {
                Err(e) => assert!(e.to_string().contains(&format!("'{key}'")), "{e}"),
                // Damage to the magic itself makes a plain value: returned as
                // stored, never as the old plaintext.
                Ok(v) => {
                    assert!(i < 4, "byte {i}: accepted {v:?}");
                    assert_eq!(v.as_deref(), Some(&bad[..]));
                }
            }
        }
        // Truncated.
        let _: () = q(
            &mut b,
            &[b"SET", key.as_bytes(), &stored[..stored.len() - 5]],
        )
        .await;
        let e = err(&mut con, &format!("GET {key}")).await;
        assert!(e.contains(&format!("'{key}'")), "{e}");
        // Copied to another key: bound to its key name, so rejected there.
        let copy = format!("{key}:copy");
        let _: () = q(&mut b, &[b"SET", copy.as_bytes(), &stored]).await;
        let e = err(&mut con, &format!("GET {copy}")).await;
        assert!(
            e.contains(&format!(
                "cannot decrypt value of key '{copy}' (authentication failed)"
            )),
            "{e}"
        );
        // MGET with one bad value fails as a whole; nothing is returned as garbage.
        let _: () = w(&mut con, &format!("SET {key}:ok {}", secret(2))).await;
        let e = err(&mut con, &format!("MGET {key}:ok {copy}")).await;
        assert!(e.contains(&copy), "{e}");
    }
    // Hash values are bound to their field: swapping two is detected.
    let _: i64 = w(
        &mut con,
        &format!("HSET s:h f1 {} f2 {}", secret(1), secret(2)),
    )
    .await;
    let f1: Vec<u8> = w(&mut b, "HGET s:h f1").await;
    let _: i64 = q(&mut b, &[b"HSET", b"s:h", b"f2", &f1]).await;
    let e = err(&mut con, "HGET s:h f2").await;
    assert!(e.contains("key 's:h' field 'f2'"), "{e}");
    let e = err(&mut con, "HGETALL s:h").await;
    assert!(e.contains("'s:h'"), "{e}");
    // A list element copied into a string is rejected.
    let _: i64 = w(&mut con, &format!("RPUSH s:l {}", secret(3))).await;
    let el: Vec<u8> = w(&mut b, "LINDEX s:l 0").await;
    let _: () = q(&mut b, &[b"SET", b"s:from-list", &el]).await;
    let e = err(&mut con, "GET s:from-list").await;
    assert!(e.contains("'s:from-list'"), "{e}");

    let m = env.metrics().await;
    let auth = failures(&m, "auth_failed");
    assert!(auth >= 4.0, "auth_failed {auth}");
    let trunc = failures(&m, "truncated") + failures(&m, "malformed");
    assert!(trunc + auth >= 6.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_mix_of_transformed_and_plain_commands_stays_in_order() {
    let env = start("k1", &["k1"]).await;
    let mut raw = env.raw().await;
    // A value that does not open, in the middle of the pipeline: its reply
    // is an error in its place, and its neighbours are unaffected.
    let mut con = env.con().await;
    let _: () = w(&mut con, &format!("SET s:p:bad {}", secret(1))).await;
    let mut b = env.backend().await;
    let mut bad = raw_get(&mut b, "s:p:bad").await;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let _: () = q(&mut b, &[b"SET", b"s:p:bad", &bad]).await;
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300 {
        if i == 150 {
            batch.extend(support::clients::encode(&[b"GET", b"s:p:bad"]));
            expected.extend_from_slice(
                b"-ERR cannot decrypt value of key 's:p:bad' (authentication failed)\r\n",
            );
        }
        let (key, value) = if i % 3 == 0 {
            (format!("plain:p:{i}"), format!("plain-{i}"))
        } else {
            (format!("s:p:{i}"), secret(i))
        };
        batch.extend(support::clients::encode(&[
            b"SET",
            key.as_bytes(),
            value.as_bytes(),
        ]));
        batch.extend(support::clients::encode(&[b"GET", key.as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        expected.extend(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
    }
    raw.send(&batch).await;
    let mut got = Vec::new();
    for _ in 0..601 {
        got.extend(raw.read_frame().await);
    }
    assert_eq!(show(&got), show(&expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_values_written_before_the_rule_are_returned_and_counted() {
    let env = start("k1", &["k1"]).await;
    let mut b = env.backend().await;
    let _: () = w(&mut b, "SET s:m:old legacy-string").await;
    let _: i64 = w(&mut b, "HSET s:m:h old legacy-field").await;
    let _: i64 = w(&mut b, "RPUSH s:m:l legacy-element").await;
    let _: () = w(&mut b, "SET strict:1 planted").await;
    for (mut con, p) in env.both().await {
        let resp3 = p == "p3";
        let v: String = w(&mut con, "GET s:m:old").await;
        assert_eq!(v, "legacy-string");
        let _: () = w(&mut con, &format!("SET s:m:new:{p} {}", secret(1))).await;
        let v: Vec<String> = w(&mut con, &format!("MGET s:m:old s:m:new:{p}")).await;
        assert_eq!(v, vec!["legacy-string".to_string(), secret(1)]);
        let _: i64 = w(&mut con, &format!("HSET s:m:h new{p} {}", secret(2))).await;
        let all: Value = w(&mut con, "HGETALL s:m:h").await;
        let got = pairs(&all, resp3);
        assert_eq!(got["old"], "legacy-field");
        assert_eq!(got[&format!("new{p}")], secret(2));
        let _: i64 = w(&mut con, &format!("RPUSH s:m:l {}", secret(3))).await;
        let l: Vec<String> = w(&mut con, "LRANGE s:m:l 0 1").await;
        assert_eq!(l, vec!["legacy-element".to_string(), secret(3)]);
        let _: String = w(&mut con, "RPOP s:m:l").await;
        // A rule with accept_plain = false refuses what it cannot prove strata wrote.
        let e = err(&mut con, "GET strict:1").await;
        assert!(
            e.contains("value of key 'strict:1' is not encrypted (rule 'strict:*'"),
            "{e}"
        );
    }
    assert_plain_counted(&env.metrics().await, 8.0, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_with_resumable_rewrap() {
    let mut env = start("k1", &["k1", "k2"]).await;
    let mut b = env.backend().await;
    {
        let mut con = env.con().await;
        for i in 0..40 {
            let _: () = w(&mut con, &format!("SET s:r:{i} {}", secret(i))).await;
        }
        let _: i64 = w(
            &mut con,
            &format!("HSET s:r:h a {} b {}", secret(1), secret(2)),
        )
        .await;
        let _: i64 = w(
            &mut con,
            &format!("RPUSH s:r:l {} {} {}", secret(1), secret(2), secret(3)),
        )
        .await;
        let _: () = w(&mut con, &format!("SET e:r:1 {}", secret(1))).await;
        let _: () = w(&mut con, &format!("SET s:outside {}", secret(1))).await;
        let _: i64 = w(&mut con, "SADD s:r:set member").await;
        let _: i64 = w(&mut con, "EXPIRE s:r:3 1000").await;
    }
    // Written before any rule: migrated too.
    let _: () = w(&mut b, "SET s:r:legacy legacy-plain").await;
    for (k, v) in stored_values(&mut b, "s:r:*").await {
        if k != "s:r:legacy" {
            assert_eq!(key_id(&v).as_deref(), Some("k1"), "{k}");
        }
    }

    // Rotate: k2 becomes the write key, k1 stays loaded for reads.
    env.restart("k2", &["k1", "k2"]).await;
    let mut con = env.con().await;
    let v: String = w(&mut con, "GET s:r:7").await;
    assert_eq!(v, secret(7));
    let _: () = w(&mut con, &format!("SET s:r:new {}", secret(100))).await;
    assert_eq!(
        key_id(&raw_get(&mut b, "s:r:new").await).as_deref(),
        Some("k2")
    );
    // A tampered value in the pattern is reported and left alone.
    let mut bad = raw_get(&mut b, "s:r:39").await;
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let _: () = q(&mut b, &[b"SET", b"s:r:39", &bad]).await;

    // One step, then resume from its cursor.
    let (first, s1, r1, k1): (String, i64, i64, i64) =
        w(&mut con, "PROXY REWRAP s:r:* COUNT 5").await;
    assert!(s1 >= 5, "scanned {s1}");
    assert!(r1 >= 1, "rewrapped {r1}");
    assert_ne!(first, "0", "one step of 5 cannot cover 45 keys");
    let Walk {
        positions,
        scanned,
        rewrapped,
        skipped,
    } = rewrap_all(&env, "s:r:*", 5, &first).await;
    let steps = positions.len();
    assert!(steps >= 2, "{steps} steps");
    assert!(scanned + s1 >= 45, "scanned {scanned} + {s1}");
    // 40 strings + hash + list + legacy (+ s:r:new already k2) - the bad one.
    assert!(rewrapped + r1 >= 42, "rewrapped {rewrapped} + {r1}");
    // The first step may be the one that meets the tampered key.
    assert!(skipped + k1 >= 1, "the tampered key is skipped");
    for (k, v) in stored_values(&mut b, "s:r:*").await {
        if k == "s:r:39" {
            assert_eq!(v, bad, "a value that cannot be opened is never rewritten");
        } else {
            assert_eq!(key_id(&v).as_deref(), Some("k2"), "{k}");
        }
    }
    let members: Vec<String> = w(&mut b, "SMEMBERS s:r:set").await;
    assert_eq!(members, vec!["member"], "sets are untouched");
    let ttl: i64 = w(&mut b, "TTL s:r:3").await;
    assert!(ttl > 900, "REWRAP keeps the TTL: {ttl}");
    // Nothing left to do on a second pass; outside the pattern, nothing changed.
    let again = rewrap_all(&env, "s:r:*", 100, "0").await.rewrapped;
    assert_eq!(again, 0);
    assert_eq!(
        key_id(&raw_get(&mut b, "e:r:1").await).as_deref(),
        Some("k1")
    );
    assert_eq!(
        key_id(&raw_get(&mut b, "s:outside").await).as_deref(),
        Some("k1")
    );
    let m = env.metrics().await;
    assert!(metric(&m, "strata_transform_plain_values_total").is_some());

    // Retire k1: everything rewrapped reads with k2 alone.
    env.restart("k2", &["k2"]).await;
    let mut con = env.con().await;
    for i in 0..39 {
        let v: String = w(&mut con, &format!("GET s:r:{i}")).await;
        assert_eq!(v, secret(i));
    }
    let h: BTreeMap<String, String> = w(&mut con, "HGETALL s:r:h").await;
    assert_eq!(h["a"], secret(1));
    let l: Vec<String> = w(&mut con, "LRANGE s:r:l 0 -1").await;
    assert_eq!(l, vec![secret(1), secret(2), secret(3)]);
    let v: String = w(&mut con, "GET s:r:legacy").await;
    assert_eq!(v, "legacy-plain");
    // What was not rewrapped names the missing key.
    let e = err(&mut con, "GET s:outside").await;
    assert!(
        e.contains("cannot decrypt value of key 's:outside' (unknown key id 'k1')"),
        "{e}"
    );
    // Bad arguments.
    let e = err(&mut con, "PROXY REWRAP s:* COUNT 0").await;
    assert!(e.contains("COUNT"), "{e}");
    let e = err(&mut con, "PROXY FLY").await;
    assert!(e.contains("unknown PROXY subcommand"), "{e}");
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/transforms.toml");
    let c = strata::config::Config::load(std::path::Path::new(path)).unwrap();
    assert_eq!(c.transform.len(), 4);
    assert_eq!(c.transform_keys.active_key.as_deref(), Some("k2"));
}

#[test]
fn check_config_names_a_bad_rule_and_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[transform]]\npattern = \"a:*\"\ncompress = \"lz4\"\n\
         [[transform]]\npattern = \"b:*\"\nencrypt = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("transform[1] (pattern 'b:*'): encrypt = true needs key_id"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        format!(
            "[[transform]]\npattern = \"b:*\"\nencrypt = true\n\
             [transform_keys]\nactive_key = \"k1\"\n[transform_keys.keys]\n\
             k1 = {{ file = \"{}\" }}\n",
            dir.path().join("nope").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--check-config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("k1"), "{stderr}");
}
