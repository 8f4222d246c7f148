//! Tests of the stored format: round trips, escapes, bindings to the
//! location, damaged and forged headers, and decompression bombs.

use bytes::Bytes;

use super::header::{FIXED_HEADER, F_COMPRESSED, F_ENCRYPTED};
use super::*;
use crate::transform::keyring::Keyring;
use crate::transform::stats::FailureKind;

pub(crate) fn ring() -> Keyring {
    Keyring::from_keys([("k1", [1u8; 32]), ("k2", [2u8; 32])], Some("k2")).unwrap()
}

const MAX: usize = 1 << 20;

fn json(n: usize) -> Bytes {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user{i}\",\"active\":true,\"roles\":[\"reader\",\"writer\"]}},"
        ));
        i += 1;
    }
    s.truncate(n);
    Bytes::from(s)
}

fn sealed(v: &Bytes, loc: Location<'_>, min: Option<usize>, key: Option<usize>) -> Bytes {
    seal_with(v, loc, min, key, &ring()).unwrap()
}

#[test]
fn compress_only_round_trip_and_passthrough() {
    let r = ring();
    let v = json(1000);
    let s = sealed(&v, Location::Key(b"k"), Some(64), None);
    assert!(
        s.starts_with(&MAGIC) && s.len() < v.len() / 2,
        "{} -> {}",
        v.len(),
        s.len()
    );
    assert_eq!(s[5], F_COMPRESSED);
    let o = open(&s, Location::Key(b"k"), &r, MAX).unwrap();
    assert_eq!(
        o,
        Opened::Decoded {
            value: v.clone(),
            authenticated: false
        }
    );
    // Compress-only values are not bound to a key.
    assert_eq!(
        open(&s, Location::Key(b"other"), &r, MAX).unwrap().value(),
        &v
    );

    // Short: below min_size, returned as the same bytes.
    let short = Bytes::from_static(b"hello");
    let s = sealed(&short, Location::Key(b"k"), Some(64), None);
    assert_eq!(s.as_ptr(), short.as_ptr(), "no copy");
    assert_eq!(
        open(&s, Location::Key(b"k"), &r, MAX).unwrap(),
        Opened::Plain(short)
    );

    // Incompressible: stored as is.
    let noise: Bytes = (0..200u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let s = sealed(&noise, Location::Key(b"k"), Some(0), None);
    assert_eq!(s, noise);
}

#[test]
fn values_that_look_like_envelopes_are_escaped() {
    let r = ring();
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&[1, F_COMPRESSED, 0, 0, 0, 9, 0x90]);
    let v = Bytes::from(v);
    for min in [None, Some(0), Some(1000)] {
        let s = sealed(&v, Location::Key(b"k"), min, None);
        assert_ne!(s, v);
        assert_eq!(
            open(&s, Location::Key(b"k"), &r, MAX).unwrap().into_value(),
            v
        );
    }
}

#[test]
fn encrypted_round_trips() {
    let r = ring();
    for v in [
        Bytes::new(),
        Bytes::from_static(b"x"),
        json(100),
        json(20_000),
    ] {
        for min in [None, Some(64)] {
            for loc in [
                Location::Key(b"session:1"),
                Location::HashField {
                    key: b"h",
                    field: b"f",
                },
                Location::ListElement(b"list"),
            ] {
                let s = sealed(&v, loc, min, Some(1));
                assert!(s.starts_with(&MAGIC));
                assert_eq!(key_id_of(&s), Some(&b"k2"[..]));
                if v.len() > 20 {
                    let runs: std::collections::HashSet<&[u8]> = v.windows(20).collect();
                    assert!(
                        !s.windows(20).any(|w| runs.contains(w)),
                        "no plaintext run in the stored value"
                    );
                }
                let o = open(&s, loc, &r, MAX).unwrap();
                assert_eq!(
                    o,
                    Opened::Decoded {
                        value: v.clone(),
                        authenticated: true
                    }
                );
            }
        }
    }
}

#[test]
fn compression_and_encryption_together() {
    let v = json(16 * 1024);
    let s = sealed(&v, Location::Key(b"k"), Some(64), Some(0));
    assert_eq!(s[5], F_ENCRYPTED | F_COMPRESSED);
    assert!(s.len() < v.len() / 2);
    assert_eq!(
        open(&s, Location::Key(b"k"), &ring(), MAX)
            .unwrap()
            .into_value(),
        v
    );
}

#[test]
fn nonces_differ() {
    let v = Bytes::from_static(b"same");
    let a = sealed(&v, Location::Key(b"k"), None, Some(0));
    let b = sealed(&v, Location::Key(b"k"), None, Some(0));
    assert_ne!(a, b);
}

#[test]
fn copies_to_another_place_fail() {
    let r = ring();
    let v = Bytes::from_static(b"secret");
    let s = sealed(&v, Location::Key(b"a"), None, Some(0));
    let e = open(&s, Location::Key(b"b"), &r, MAX).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ERR cannot decrypt value of key 'b' (authentication failed)"
    );
    assert_eq!(e.kind(), FailureKind::AuthFailed);
    assert!(open(
        &s,
        Location::HashField {
            key: b"a",
            field: b""
        },
        &r,
        MAX
    )
    .is_err());
    assert!(open(&s, Location::ListElement(b"a"), &r, MAX).is_err());

    let h = sealed(
        &v,
        Location::HashField {
            key: b"h",
            field: b"f1",
        },
        None,
        Some(0),
    );
    let e = open(
        &h,
        Location::HashField {
            key: b"h",
            field: b"f2",
        },
        &r,
        MAX,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "ERR cannot decrypt value of key 'h' field 'f2' (authentication failed)"
    );
    // The length prefix keeps key/field boundaries apart.
    let h = sealed(
        &v,
        Location::HashField {
            key: b"a\0",
            field: b"b",
        },
        None,
        Some(0),
    );
    assert!(open(
        &h,
        Location::HashField {
            key: b"a",
            field: b"\0b"
        },
        &r,
        MAX
    )
    .is_err());
    assert!(open(&h, Location::Key(b"a\0"), &r, MAX).is_err());

    let l = sealed(&v, Location::ListElement(b"q1"), None, Some(0));
    let e = open(&l, Location::ListElement(b"q2"), &r, MAX).unwrap_err();
    assert_eq!(e.kind(), FailureKind::WrongOrigin);
    assert!(e.to_string().contains("written to key 'q1'"), "{e}");
    let moved = open_with(&l, Location::ListElement(b"q2"), &r, MAX, &|o| o == b"q1").unwrap();
    assert_eq!(moved.value, v);
    assert_eq!(
        moved.form,
        Form::Encrypted {
            key: 0,
            rebound: true
        }
    );
    assert!(open(&l, Location::Key(b"q1"), &r, MAX).is_err());
}

#[test]
fn unknown_key_and_bad_headers() {
    let v = Bytes::from_static(b"secret");
    let s = sealed(&v, Location::Key(b"k"), None, Some(0));
    let only_k2 = Keyring::from_keys([("k2", [2u8; 32])], None).unwrap();
    let e = open(&s, Location::Key(b"k"), &only_k2, MAX).unwrap_err();
    assert_eq!(
        e.to_string(),
        "ERR cannot decrypt value of key 'k' (unknown key id 'k1')"
    );

    let mut bad = s.to_vec();
    bad[4] = 9;
    let e = open(&Bytes::from(bad), Location::Key(b"k"), &ring(), MAX).unwrap_err();
    assert_eq!(e.kind(), FailureKind::BadVersion);
    assert!(e.to_string().contains("version 9"));

    let mut bad = s.to_vec();
    bad[5] |= 0x80;
    bad[6] = !bad[5];
    let e = open(&Bytes::from(bad), Location::Key(b"k"), &ring(), MAX).unwrap_err();
    assert_eq!(e.kind(), FailureKind::Malformed);

    for n in 0..s.len() {
        if n < MAGIC.len() {
            continue; // not an envelope any more: plain
        }
        let e = open(&s.slice(..n), Location::Key(b"k"), &ring(), MAX).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                FailureKind::Truncated | FailureKind::AuthFailed | FailureKind::UnknownKeyId
            ),
            "{n}: {e}"
        );
    }
}

#[test]
fn decompression_bomb_is_refused_before_allocating() {
    let r = ring();
    let zeros = Bytes::from(vec![0u8; 4 << 20]);
    let s = sealed(&zeros, Location::Key(b"k"), Some(0), None);
    assert!(s.len() < 20_000, "{}", s.len());
    // Within lz4's ratio bound: opens when the cap allows it.
    assert_eq!(
        open(&s, Location::Key(b"k"), &r, 8 << 20)
            .unwrap()
            .into_value(),
        zeros
    );
    let e = open(&s, Location::Key(b"k"), &r, 1 << 20).unwrap_err();
    assert_eq!(e.kind(), FailureKind::TooLarge);
    assert!(
        e.to_string().contains("exceeds the limit of 1048576 bytes"),
        "{e}"
    );
    // A forged size far beyond what the block can produce.
    let mut forged = MAGIC.to_vec();
    forged.extend_from_slice(&[VERSION, F_COMPRESSED, !F_COMPRESSED]);
    forged.extend_from_slice(&(500_000_000u32).to_be_bytes());
    forged.extend_from_slice(&[0x1f, 0, 1, 0, 0]);
    let e = open(&Bytes::from(forged), Location::Key(b"k"), &r, usize::MAX).unwrap_err();
    assert_eq!(e.kind(), FailureKind::Malformed);
    // A size that lies by a little: decompression fails, no garbage.
    let mut lie = s.to_vec();
    lie[FIXED_HEADER + 3] ^= 1;
    let e = open(&Bytes::from(lie), Location::Key(b"k"), &r, 8 << 20).unwrap_err();
    assert_eq!(e.kind(), FailureKind::Decompress);
}

#[test]
fn show_escapes() {
    assert_eq!(show(b"session:1"), "session:1");
    assert_eq!(show(b"a'b\\c\r\n\xff"), "a\\x27b\\x5cc\\x0d\\x0a\\xff");
    assert_eq!(show(&[b'a'; 200]).len(), 131);
}

/// The AEAD is standard AES-256-GCM whatever the crate version: test case
/// 16 of McGrew & Viega's GCM specification (256-bit key, 96-bit nonce,
/// additional data), sealed and opened the way `seal`/`open` call the
/// crate. Values stored by an older strata stay readable after an
/// `aes-gcm` upgrade only if this holds.
#[test]
fn aes_256_gcm_known_answer() {
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let key = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
    let plaintext = hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
         1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let nonce = Nonce::try_from(&hex("cafebabefacedbaddecaf888")[..]).unwrap();
    let ciphertext = hex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
         8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    );
    let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");

    let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
    let mut buf = plaintext.clone();
    let sealed_tag = cipher
        .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
        .unwrap();
    assert_eq!(buf, ciphertext);
    assert_eq!(sealed_tag.as_slice(), &tag[..]);
    let tag = Tag::try_from(&tag[..]).unwrap();
    cipher
        .decrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into(), &tag)
        .unwrap();
    assert_eq!(buf, plaintext);
}
