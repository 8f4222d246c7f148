//! Property tests of the envelope and of reply decoding: round trips for any
//! bytes, and no corruption of an encrypted value ever yields a value.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::prelude::*;

use super::envelope::{open, seal_with, Location, Opened, MAGIC};
use super::keyring::Keyring;
use super::stats::FailureKind;
use super::tests::transforms;
use super::ReplyPlan;
use crate::protocol::reply::{frame_len, Protocol, ReplyBuf};

const MAX: usize = 1 << 20;

fn ring() -> Keyring {
    Keyring::from_keys([("k1", [1u8; 32]), ("rotated-2", [2u8; 32])], Some("k1")).unwrap()
}

#[derive(Debug, Clone)]
enum Kind {
    Key,
    Hash(Vec<u8>),
    List,
}

fn loc<'a>(kind: &'a Kind, key: &'a [u8]) -> Location<'a> {
    match kind {
        Kind::Key => Location::Key(key),
        Kind::Hash(field) => Location::HashField { key, field },
        Kind::List => Location::ListElement(key),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Key),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Kind::Hash),
        Just(Kind::List),
    ]
}

/// Values: arbitrary bytes, or compressible text, or values starting with
/// the magic (which must be escaped).
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        ("[a-c ]{0,40}", 1usize..40).prop_map(|(s, n)| s.repeat(n).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|tail| {
            let mut v = MAGIC.to_vec();
            v.extend(tail);
            v
        }),
        // Like a damaged envelope header: three magic bytes, version, flags.
        (
            0usize..4,
            any::<u8>(),
            0u8..8,
            proptest::collection::vec(any::<u8>(), 0..10)
        )
            .prop_map(|(i, b, flags, tail)| {
                let mut v = MAGIC.to_vec();
                v[i] = if b == MAGIC[i] { b ^ 1 } else { b };
                v.extend_from_slice(&[1, flags, !flags]);
                v.extend(tail);
                v
            }),
    ]
}

fn settings() -> impl Strategy<Value = (Option<usize>, Option<usize>)> {
    (
        prop_oneof![Just(None), Just(Some(0)), Just(Some(64))],
        prop_oneof![Just(None), Just(Some(0)), Just(Some(1))],
    )
}

proptest! {
    // Failures are printed with their minimal input; no regression file is
    // written outside this folder.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn round_trip(
        v in value(),
        key in proptest::collection::vec(any::<u8>(), 0..40),
        kind in kind(),
        (compress, encrypt) in settings(),
    ) {
        let r = ring();
        let v = Bytes::from(v);
        let l = loc(&kind, &key);
        let s = seal_with(&v, l, compress, encrypt, &r).unwrap();
        let o = open(&s, l, &r, MAX).unwrap();
        prop_assert_eq!(o.value(), &v);
        if encrypt.is_some() {
            let authenticated = matches!(o, Opened::Decoded { authenticated: true, .. });
            prop_assert!(authenticated);
            prop_assert!(s.starts_with(&MAGIC));
        }
    }

    #[test]
    fn any_corruption_of_an_encrypted_value_is_detected(
        v in value(),
        key in proptest::collection::vec(any::<u8>(), 0..40),
        kind in kind(),
        compress in prop_oneof![Just(None), Just(Some(0))],
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
        byte in any::<u8>(),
        whole_byte in any::<bool>(),
    ) {
        let r = ring();
        let v = Bytes::from(v);
        let l = loc(&kind, &key);
        let s = seal_with(&v, l, compress, Some(0), &r).unwrap();
        let mut bad = s.to_vec();
        let i = pos.index(bad.len());
        if whole_byte {
            prop_assume!(bad[i] != byte);
            bad[i] = byte;
        } else {
            bad[i] ^= 1 << bit;
        }
        let res = open(&Bytes::from(bad), l, &r, MAX);
        prop_assert!(res.is_err(), "corruption at {} not detected: {:?}", i, res);
    }

    #[test]
    fn truncation_and_extension_are_detected(
        v in value(),
        key in proptest::collection::vec(any::<u8>(), 0..20),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..20),
    ) {
        let r = ring();
        let v = Bytes::from(v);
        let s = seal_with(&v, Location::Key(&key), Some(0), Some(1), &r).unwrap();
        let n = cut.index(s.len());
        if n >= MAGIC.len() {
            prop_assert!(open(&s.slice(..n), Location::Key(&key), &r, MAX).is_err());
        }
        let mut longer = s.to_vec();
        longer.extend(extra);
        prop_assert!(open(&Bytes::from(longer), Location::Key(&key), &r, MAX).is_err());
    }

    #[test]
    fn sealed_for_one_key_fails_for_another(
        v in value(),
        a in proptest::collection::vec(any::<u8>(), 0..20),
        b in proptest::collection::vec(any::<u8>(), 0..20),
        kind in kind(),
        compress in prop_oneof![Just(None), Just(Some(0))],
    ) {
        prop_assume!(a != b);
        let r = ring();
        let v = Bytes::from(v);
        let s = seal_with(&v, loc(&kind, &a), compress, Some(1), &r).unwrap();
        let res = open(&s, loc(&kind, &b), &r, MAX);
        prop_assert!(res.is_err(), "opened under another key: {:?}", res);
    }

    #[test]
    fn compression_and_encryption_together(
        text in "[a-z{}\":, ]{1,60}",
        reps in 2usize..200,
        key in "[a-z:]{1,20}",
    ) {
        let r = ring();
        let v = Bytes::from(text.repeat(reps));
        let l = Location::Key(key.as_bytes());
        let s = seal_with(&v, l, Some(0), Some(0), &r).unwrap();
        if v.len() > 400 {
            prop_assert!(s.len() < v.len(), "{} -> {}", v.len(), s.len());
        }
        prop_assert_eq!(open(&s, l, &r, MAX).unwrap().into_value(), v);
    }

    #[test]
    fn decompression_bombs_are_refused(
        declared in (MAX as u32 + 1)..=u32::MAX,
        block in proptest::collection::vec(any::<u8>(), 0..64),
        encrypt in any::<bool>(),
    ) {
        // A forged header declaring more than the cap; then real sealed
        // values, with or without encryption, opened under a cap below their
        // size. (A multi-megabyte bomb is in the envelope unit tests.)
        let r = ring();
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&[1, 0x01, !0x01]);
        forged.extend_from_slice(&declared.to_be_bytes());
        forged.extend(block);
        let e = open(&Bytes::from(forged), Location::Key(b"k"), &r, MAX).unwrap_err();
        prop_assert_eq!(e.kind(), FailureKind::TooLarge);

        let v = Bytes::from(vec![b'a'; 4096]);
        let s = seal_with(&v, Location::Key(b"k"), Some(0), encrypt.then_some(0), &r).unwrap();
        let cap = (declared as usize) % 4096;
        let e = open(&s, Location::Key(b"k"), &r, cap).unwrap_err();
        prop_assert_eq!(e.kind(), FailureKind::TooLarge);
    }

    #[test]
    fn open_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        max in 0usize..100_000,
        kind in kind(),
    ) {
        let r = ring();
        let mut v = MAGIC.to_vec();
        v.extend(tail);
        let v = Bytes::from(v);
        // Only an unencrypted envelope can open from random bytes; its size
        // must respect the cap.
        if let Ok(o) = open(&v, loc(&kind, b"k"), &r, max) {
            prop_assert!(o.value().len() <= max.max(v.len()));
        }
    }

    #[test]
    fn replies_never_panic_and_stay_well_framed(
        items in proptest::collection::vec(item(), 0..6),
        map in any::<bool>(),
        nested in any::<bool>(),
        plan in 0usize..12,
    ) {
        let t = transforms();
        let mut r = ReplyBuf::new(Protocol::Resp3);
        if map {
            r.map(items.len() / 2);
            for it in items.iter().take(items.len() / 2 * 2) {
                put_item(&mut r, it, &t);
            }
        } else {
            r.array(items.len() + usize::from(nested));
            for it in &items {
                put_item(&mut r, it, &t);
            }
            if nested {
                r.array(items.len());
                for it in &items {
                    put_item(&mut r, it, &t);
                }
            }
        }
        let frame = r.freeze();
        let key = Bytes::from_static(b"session:x");
        let field = Bytes::from_static(b"f");
        let plan = match plan {
            0 => ReplyPlan::Value { key },
            1 => ReplyPlan::Values { keys: vec![key.clone(), Bytes::from_static(b"a"), key] },
            2 => ReplyPlan::StrlenOf { key },
            3 => ReplyPlan::HashField { key, field },
            4 => ReplyPlan::HashFields { key, fields: vec![field] },
            5 => ReplyPlan::HashPairs { key },
            6 => ReplyPlan::HashValues { key },
            7 => ReplyPlan::HrandfieldWithValues { key },
            8 => ReplyPlan::HashScan { key },
            9 => ReplyPlan::ListElements { key },
            10 => ReplyPlan::KeyValuePair,
            _ => ReplyPlan::MpopReply,
        };
        let out = t.apply_reply(&plan, frame);
        prop_assert_eq!(frame_len(&out).unwrap(), Some(out.len()));
    }
}

#[derive(Debug, Clone)]
enum Item {
    Sealed(Vec<u8>),
    Raw(Vec<u8>),
    Null,
    Int(i64),
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(Item::Sealed),
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(Item::Raw),
        Just(Item::Null),
        any::<i64>().prop_map(Item::Int),
    ]
}

fn put_item(r: &mut ReplyBuf, item: &Item, t: &super::Transforms) {
    match item {
        Item::Sealed(v) => {
            let s = seal_with(
                &Bytes::from(v.clone()),
                Location::Key(b"session:x"),
                None,
                Some(1),
                t.keyring(),
            )
            .unwrap();
            r.bulk(&s);
        }
        Item::Raw(v) => {
            r.bulk(v);
        }
        Item::Null => {
            r.null();
        }
        Item::Int(n) => {
            r.integer(*n);
        }
    }
}
