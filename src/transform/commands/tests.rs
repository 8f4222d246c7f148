//! Tests of request rewriting: the table, sealing, reply plans, refusals
//! and the request encoder.

use bytes::Bytes;

use super::table::{lookup, MAX_NAME, TABLE};
use super::*;
use crate::transform::envelope::{open, Location, Opened, MAGIC};
use crate::transform::tests::transforms;
use crate::transform::Transforms;

fn args(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

fn prep(t: &Transforms, words: &[&str]) -> Result<Prepared, String> {
    t.prepare(&args(words))
}

#[test]
fn table_is_sorted_and_lower_case() {
    for w in TABLE.windows(2) {
        assert!(w[0].name < w[1].name, "{} >= {}", w[0].name, w[1].name);
    }
    for e in TABLE {
        assert_eq!(e.name, e.name.to_ascii_lowercase());
        assert!(e.name.len() <= MAX_NAME);
        assert!(lookup(e.name.to_ascii_uppercase().as_bytes()).is_some());
    }
    assert!(lookup(b"del").is_none());
    assert!(lookup(b"").is_none());
    assert!(lookup(&[b'a'; 40]).is_none());
}

#[test]
fn no_rules_passes_everything() {
    let t = Transforms::disabled();
    assert_eq!(
        prep(&t, &["SET", "session:1", "v"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["APPEND", "session:1", "v"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(t.reply_plan(&args(&["GET", "x"])), None);
}

#[test]
fn unmatched_keys_and_other_commands_pass() {
    let t = transforms();
    assert_eq!(prep(&t, &["SET", "plain", "v"]).unwrap(), Prepared::PASS);
    assert_eq!(prep(&t, &["GET", "plain"]).unwrap(), Prepared::PASS);
    assert_eq!(prep(&t, &["DEL", "session:1"]).unwrap(), Prepared::PASS);
    assert_eq!(
        prep(&t, &["SADD", "session:1", "m"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(prep(&t, &["APPEND", "plain", "v"]).unwrap(), Prepared::PASS);
    assert_eq!(prep(&t, &["MGET", "a", "b"]).unwrap(), Prepared::PASS);
    assert_eq!(prep(&t, &[]).unwrap(), Prepared::PASS);
    assert_eq!(prep(&t, &["SET"]).unwrap(), Prepared::PASS);
}

fn rewritten(p: &Prepared) -> &[Bytes] {
    match &p.rewrite {
        Rewrite::Args(a) => a,
        Rewrite::Unchanged => panic!("expected a rewrite"),
    }
}

#[test]
fn set_seals_and_get_plans() {
    let t = transforms();
    let p = prep(&t, &["set", "session:1", "hello", "EX", "10"]).unwrap();
    let a = rewritten(&p);
    assert_eq!(a.len(), 5);
    assert_eq!(&a[0][..], b"set");
    assert!(a[2].starts_with(&MAGIC));
    assert_eq!(&a[3][..], b"EX");
    let o = open(&a[2], Location::Key(b"session:1"), &t.keyring, 1 << 20).unwrap();
    assert_eq!(
        o,
        Opened::Decoded {
            value: Bytes::from_static(b"hello"),
            authenticated: true
        }
    );
    assert_eq!(p.plan, None);
    let p = prep(&t, &["SET", "session:1", "v", "get"]).unwrap();
    assert_eq!(
        p.plan,
        Some(ReplyPlan::Value {
            key: Bytes::from_static(b"session:1")
        })
    );
    for cmd in ["GET", "getdel", "GETEX"] {
        let p = prep(&t, &[cmd, "session:1"]).unwrap();
        assert_eq!(p.rewrite, Rewrite::Unchanged);
        assert!(matches!(p.plan, Some(ReplyPlan::Value { .. })));
    }
    let p = prep(&t, &["SETEX", "session:1", "10", "v"]).unwrap();
    assert!(rewritten(&p)[3].starts_with(&MAGIC));
    assert_eq!(&rewritten(&p)[2][..], b"10");
    let p = prep(&t, &["GETSET", "session:1", "v"]).unwrap();
    assert!(rewritten(&p)[2].starts_with(&MAGIC));
    assert!(p.plan.is_some());
}

#[test]
fn halves_agree_with_prepare() {
    let t = transforms();
    let a = args(&["SET", "session:1", "v", "GET"]);
    let before = t.stats.snapshot().sealed_values;
    assert_eq!(
        t.reply_plan(&a),
        prep(&t, &["SET", "session:1", "v", "GET"]).unwrap().plan
    );
    assert!(matches!(t.rewrite_request(&a).unwrap(), Rewrite::Args(_)));
    assert_eq!(
        t.stats.snapshot().sealed_values,
        before + 2,
        "reply_plan seals nothing"
    );
    assert_eq!(t.reply_plan(&args(&["APPEND", "session:1", "x"])), None);
    assert_eq!(
        t.reply_plan(&args(&["STRLEN", "session:1"])),
        Some(ReplyPlan::StrlenOf {
            key: Bytes::from_static(b"session:1")
        })
    );
}

#[test]
fn compress_only_short_values_are_not_copied() {
    let t = transforms();
    // cache:* compresses values of 16 bytes or more.
    let p = prep(&t, &["SET", "cache:1", "short"]).unwrap();
    assert_eq!(p.rewrite, Rewrite::Unchanged);
    let long = "abcd".repeat(100);
    let p = prep(&t, &["SET", "cache:1", &long]).unwrap();
    assert!(rewritten(&p)[2].len() < 100);
}

#[test]
fn mset_seals_only_matching_keys() {
    let t = transforms();
    let p = prep(&t, &["MSET", "a", "1", "session:1", "2", "b", "3"]).unwrap();
    let a = rewritten(&p);
    assert_eq!(&a[2][..], b"1");
    assert!(a[4].starts_with(&MAGIC));
    assert_eq!(&a[6][..], b"3");
    let p = prep(&t, &["MGET", "a", "session:1"]).unwrap();
    assert_eq!(
        p.plan,
        Some(ReplyPlan::Values {
            keys: args(&["a", "session:1"])
        })
    );
}

#[test]
fn strlen_and_hvals_are_rewritten() {
    let t = transforms();
    let p = prep(&t, &["strlen", "session:1"]).unwrap();
    assert_eq!(rewritten(&p), args(&["GET", "session:1"]).as_slice());
    assert_eq!(
        p.plan,
        Some(ReplyPlan::StrlenOf {
            key: Bytes::from_static(b"session:1")
        })
    );
    let p = prep(&t, &["HVALS", "session:h"]).unwrap();
    assert_eq!(rewritten(&p), args(&["HGETALL", "session:h"]).as_slice());
    assert_eq!(
        p.plan,
        Some(ReplyPlan::HashValues {
            key: Bytes::from_static(b"session:h")
        })
    );
    assert_eq!(prep(&t, &["STRLEN", "plain"]).unwrap(), Prepared::PASS);
}

#[test]
fn hashes() {
    let t = transforms();
    let p = prep(&t, &["HSET", "session:h", "f1", "v1", "f2", "v2"]).unwrap();
    let a = rewritten(&p);
    assert_eq!(&a[2][..], b"f1");
    let loc = Location::HashField {
        key: b"session:h",
        field: b"f1",
    };
    assert_eq!(open(&a[3], loc, &t.keyring, 1 << 20).unwrap().value(), "v1");
    let loc = Location::HashField {
        key: b"session:h",
        field: b"f2",
    };
    assert_eq!(open(&a[5], loc, &t.keyring, 1 << 20).unwrap().value(), "v2");
    let p = prep(&t, &["HSETNX", "session:h", "f", "v"]).unwrap();
    assert!(rewritten(&p)[3].starts_with(&MAGIC));
    assert!(matches!(
        prep(&t, &["HGET", "session:h", "f"]).unwrap().plan,
        Some(ReplyPlan::HashField { .. })
    ));
    assert!(
        matches!(prep(&t, &["HMGET", "session:h", "f", "g"]).unwrap().plan, Some(ReplyPlan::HashFields { ref fields, .. }) if fields.len() == 2)
    );
    assert!(matches!(
        prep(&t, &["HGETALL", "session:h"]).unwrap().plan,
        Some(ReplyPlan::HashPairs { .. })
    ));
    assert!(prep(&t, &["HRANDFIELD", "session:h", "2"])
        .unwrap()
        .plan
        .is_none());
    assert!(prep(&t, &["HRANDFIELD", "session:h", "2", "withvalues"])
        .unwrap()
        .plan
        .is_some());
    assert!(prep(&t, &["HSCAN", "session:h", "0"])
        .unwrap()
        .plan
        .is_some());
    assert!(prep(&t, &["HSCAN", "session:h", "0", "MATCH", "novalues"])
        .unwrap()
        .plan
        .is_some());
    assert!(prep(&t, &["HSCAN", "session:h", "0", "NOVALUES"])
        .unwrap()
        .plan
        .is_none());
}

#[test]
fn lists() {
    let t = transforms();
    let p = prep(&t, &["RPUSH", "session:l", "a", "b"]).unwrap();
    let a = rewritten(&p);
    assert!(a[2].starts_with(&MAGIC) && a[3].starts_with(&MAGIC));
    let p = prep(&t, &["LSET", "session:l", "0", "x"]).unwrap();
    assert_eq!(&rewritten(&p)[2][..], b"0");
    assert!(rewritten(&p)[3].starts_with(&MAGIC));
    for cmd in [
        &["LPOP", "session:l"][..],
        &["LRANGE", "session:l", "0", "-1"],
        &["LINDEX", "session:l", "0"],
    ] {
        assert!(matches!(
            prep(&t, cmd).unwrap().plan,
            Some(ReplyPlan::ListElements { .. })
        ));
    }
    let p = prep(&t, &["LMOVE", "session:a", "session:b", "LEFT", "RIGHT"]).unwrap();
    assert_eq!(
        p.plan,
        Some(ReplyPlan::ListElements {
            key: Bytes::from_static(b"session:a")
        })
    );
    let e = prep(&t, &["LMOVE", "session:a", "plain", "LEFT", "RIGHT"]).unwrap_err();
    assert_eq!(
        e,
        "ERR LMOVE not supported on transformed key 'session:a' (rule 'session:*')"
    );
    let e = prep(&t, &["RPOPLPUSH", "plain", "session:a"]).unwrap_err();
    assert!(e.contains("'session:a'"), "{e}");
    assert_eq!(
        prep(&t, &["RPOPLPUSH", "p1", "p2"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["BLPOP", "x", "session:l", "0"]).unwrap().plan,
        Some(ReplyPlan::KeyValuePair)
    );
    assert_eq!(prep(&t, &["BLPOP", "x", "0"]).unwrap().plan, None);
    assert_eq!(
        prep(&t, &["LMPOP", "2", "x", "session:l", "LEFT"])
            .unwrap()
            .plan,
        Some(ReplyPlan::MpopReply)
    );
    assert_eq!(
        prep(&t, &["BLMPOP", "0", "1", "session:l", "LEFT"])
            .unwrap()
            .plan,
        Some(ReplyPlan::MpopReply)
    );
    assert_eq!(prep(&t, &["LMPOP", "1", "x", "LEFT"]).unwrap().plan, None);
    assert_eq!(
        prep(&t, &["LMPOP", "99999999999", "session:l"])
            .unwrap()
            .plan,
        None
    );
}

#[test]
fn comparisons_refused_under_encryption_sealed_under_compression() {
    let t = transforms();
    let e = prep(&t, &["LINSERT", "session:l", "BEFORE", "a", "b"]).unwrap_err();
    assert_eq!(
        e,
        "ERR LINSERT not supported on transformed key 'session:l' (rule 'session:*')"
    );
    assert!(prep(&t, &["LPOS", "session:l", "a"]).is_err());
    assert!(prep(&t, &["LREM", "session:l", "0", "a"]).is_err());
    let long = "x".repeat(100);
    let p = prep(&t, &["LREM", "cache:l", "0", &long]).unwrap();
    let stored = prep(&t, &["RPUSH", "cache:l", &long]).unwrap();
    assert_eq!(
        rewritten(&p)[3],
        rewritten(&stored)[2],
        "deterministic, so it matches"
    );
}

#[test]
fn refusals_name_command_key_and_rule() {
    let t = transforms();
    for (cmd, key_at) in [
        (&["APPEND", "session:1", "x"][..], 1),
        (&["incr", "session:1"], 1),
        (&["GETRANGE", "session:1", "0", "1"], 1),
        (&["SETRANGE", "session:1", "0", "x"], 1),
        (&["BITCOUNT", "session:1"], 1),
        (&["BITOP", "AND", "dest", "a", "session:1"], 4),
        (&["LCS", "a", "session:1"], 2),
        (&["HINCRBY", "session:h", "f", "1"], 1),
        (&["HSTRLEN", "session:h", "f"], 1),
        (&["SUBSTR", "session:1", "0", "1"], 1),
        (&["SORT", "session:l", "BY", "w_*"], 1),
        (&["SORT_RO", "session:l", "GET", "#"], 1),
        (&["SORT", "session:l", "LIMIT", "0", "1", "STORE", "d"], 1),
        (&["EVAL", "return 1", "2", "a", "session:1"], 4),
        (&["FCALL", "f", "1", "session:1"], 3),
        (&["RENAME", "session:1", "other"], 1),
        (&["COPY", "cache:1", "plain"], 1),
    ] {
        let e = prep(&t, cmd).unwrap_err();
        let rule = if cmd[key_at].starts_with("cache") {
            "cache:*"
        } else {
            "session:*"
        };
        assert_eq!(
            e,
            format!(
                "ERR {} not supported on transformed key '{}' (rule '{rule}')",
                cmd[0].to_ascii_uppercase(),
                cmd[key_at]
            )
        );
    }
    assert!(t.stats.snapshot().refused_commands >= 17);
    // Sorting compares stored (sealed) bytes: refused, even with ALPHA.
    assert!(prep(&t, &["SORT", "session:l", "LIMIT", "0", "10", "ALPHA"]).is_err());
    assert!(prep(&t, &["SORT_RO", "session:l"]).is_err());
    // Allowed forms.
    assert!(prep(
        &t,
        &["SORT", "session:l", "BY", "nosort", "LIMIT", "0", "10"]
    )
    .unwrap()
    .plan
    .is_some());
    assert_eq!(
        prep(&t, &["EVAL", "return 1", "1", "script:1"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["EVAL", "return 1", "0", "session:1"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["RENAME", "cache:1", "cache:2"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["COPY", "session:1", "session:1", "DB", "1"]).unwrap(),
        Prepared::PASS
    );
    assert_eq!(
        prep(&t, &["RENAME", "plain", "session:1"]).unwrap(),
        Prepared::PASS
    );
    // An exemption rule refuses nothing.
    assert_eq!(
        prep(&t, &["APPEND", "session:public:1", "x"]).unwrap(),
        Prepared::PASS
    );
}

#[test]
fn encode() {
    assert_eq!(
        &encode_request(&args(&["GET", "k"]))[..],
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    );
}

#[test]
fn only_commands_transforms_look_at_need_their_arguments_split() {
    assert!(!Transforms::disabled().concerns(b"GET"));
    let t = transforms();
    for name in [
        "GET", "get", "SeT", "APPEND", "HGETALL", "EVAL", "LPUSH", "STRLEN",
    ] {
        assert!(t.concerns(name.as_bytes()), "{name}");
    }
    // What `concerns` lets pass is passed by `prepare` too, even on a
    // matching key.
    for name in ["PING", "DEL", "SADD", "EXPIRE", "TTL", "nosuchcommand"] {
        assert!(!t.concerns(name.as_bytes()), "{name}");
        assert_eq!(
            prep(&t, &[name, "session:1", "v"]).unwrap(),
            Prepared::PASS,
            "{name}"
        );
    }
}
