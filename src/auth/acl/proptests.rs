//! Property tests of ACL rule parsing: any rule text never panics, and a
//! user written back as rules (`ACL LIST`) and parsed again allows the
//! same commands and is then described the same way.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::describe;
use super::rules::{split, AclUser};

/// Rule-shaped tokens, valid and not.
fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("on".to_string()),
        Just("off".to_string()),
        Just("nopass".to_string()),
        Just("resetpass".to_string()),
        Just("reset".to_string()),
        Just("allkeys".to_string()),
        Just("resetkeys".to_string()),
        Just("allchannels".to_string()),
        Just("resetchannels".to_string()),
        Just("allcommands".to_string()),
        Just("nocommands".to_string()),
        Just("sanitize-payload".to_string()),
        Just("skip-sanitize-payload".to_string()),
        prop::sample::select(vec![
            "read",
            "write",
            "admin",
            "dangerous",
            "keyspace",
            "pubsub",
            "all",
            "nosuch"
        ])
        .prop_flat_map(|c| prop_oneof![Just(format!("+@{c}")), Just(format!("-@{c}"))]),
        prop::sample::select(vec![
            "get",
            "set",
            "config",
            "config|get",
            "config|set",
            "client|kill",
            "select|0",
            "debug|sleep",
            "acl|whoami",
            "nosuch",
            "get|x",
            "config|"
        ])
        .prop_flat_map(|c| prop_oneof![Just(format!("+{c}")), Just(format!("-{c}"))]),
        "[a-z:*?\\[\\]^\\\\]{0,6}".prop_map(|p| format!("~{p}")),
        ("[RWrwx]{0,3}", "[a-z:*]{0,4}").prop_map(|(f, p)| format!("%{f}~{p}")),
        "[a-z.*]{0,5}".prop_map(|p| format!("&{p}")),
        "[a-z]{0,8}".prop_map(|p| format!(">{p}")),
        "[0-9a-f]{0,64}".prop_map(|p| format!("#{p}")),
        "[a-z]{0,8}".prop_map(|p| format!("<{p}")),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics(ops in prop::collection::vec(rule(), 0..24)) {
        let mut u = AclUser::new("u");
        for op in &ops {
            let _ = u.apply(op.as_bytes());
        }
        let _ = describe::user(&u);
    }

    #[test]
    fn written_back_and_parsed_again_is_the_same_user(
        ops in prop::collection::vec(rule(), 0..24)
    ) {
        let mut u = AclUser::new("u");
        for op in &ops {
            let _ = u.apply(op.as_bytes());
        }
        let text = describe::user(&u);
        let again = AclUser::with_rules("u", split(&text));
        prop_assert!(again.is_ok(), "{text:?} does not parse: {again:?}");
        let again = again.unwrap();
        prop_assert_eq!(&again.allowed, &u.allowed, "{}", text);
        // A `*` pattern with every permission reads back as `~*` (allkeys),
        // as in Redis: the same keys, so from then on the text is stable.
        let text2 = describe::user(&again);
        let third = AclUser::with_rules("u", split(&text2)).unwrap();
        prop_assert_eq!(describe::user(&third), text2);
    }
}

/// The case the round trip found: a `%RW~*` pattern followed by another.
#[test]
fn an_all_keys_pattern_then_another_is_written_back_readably() {
    let mut u = AclUser::new("u");
    for op in ["%RW~*", "~"] {
        u.apply(op.as_bytes()).unwrap();
    }
    let text = describe::user(&u);
    let again = AclUser::with_rules("u", split(&text)).unwrap();
    assert_eq!(again.allowed, u.allowed, "{text}");
}
