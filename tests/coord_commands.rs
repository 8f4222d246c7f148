//! Every coordination primitive's commands in COMMAND, COMMAND INFO,
//! COMMAND DOCS and COMMAND GETKEYS, with the name (the key) at position
//! 1, so cluster-aware clients route them.

mod support;

use support::clients::{show, Env};
use support::coord_util::int;

const OURS: &[(&str, i64)] = &[
    ("sem.acquire", -4),
    ("sem.release", 3),
    ("sem.available", 2),
    ("latch.init", 3),
    ("latch.countdown", 2),
    ("latch.wait", 3),
    ("latch.count", 2),
    ("barrier.wait", 4),
    ("barrier.reset", 2),
    ("leader.campaign", -4),
    ("leader.renew", 5),
    ("leader.resign", 4),
    ("leader.get", 2),
    ("leader.watch", -2),
    ("vset", -3),
    ("vget", 2),
    ("cas", 4),
];

#[tokio::test]
async fn every_primitive_is_in_command_with_its_key_position() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let mut b = env.raw_backend().await;
    let theirs = int(&b.cmd("COMMAND COUNT").await);
    let count = int(&c.cmd("COMMAND COUNT").await);
    assert!(count >= theirs + OURS.len() as i64, "{count} vs {theirs}");
    for proto in ["2", "3"] {
        let mut c = env.raw().await;
        c.cmd(&format!("HELLO {proto}")).await;
        for (name, arity) in OURS {
            let info = show(&c.cmd(&format!("COMMAND INFO {name}")).await);
            let head = format!(
                "*1\\r\\n*10\\r\\n${}\\r\\n{name}\\r\\n:{arity}\\r\\n",
                name.len()
            );
            assert!(info.starts_with(&head), "{info}");
            assert!(info.contains(":1\\r\\n:1\\r\\n:1\\r\\n"), "{name}: {info}");
            let docs = show(&c.cmd(&format!("COMMAND DOCS {name}")).await);
            assert!(docs.contains("$7\\r\\nsummary\\r\\n"), "{name}: {docs}");
        }
    }
    c.expect("COMMAND GETKEYS vset k v", b"*1\r\n$1\r\nk\r\n")
        .await;
    c.expect(
        "COMMAND GETKEYS sem.acquire pool 2 100 WAIT 5",
        b"*1\r\n$4\r\npool\r\n",
    )
    .await;
    let list = c.cmd("COMMAND LIST").await;
    for (name, _) in OURS {
        let entry = format!("${}\r\n{name}\r\n", name.len());
        assert!(
            list.windows(entry.len()).any(|w| w == entry.as_bytes()),
            "{name}"
        );
    }
}
