//! VSET/VGET/CAS through strata against a real redis-server: versions,
//! the CONFLICT error, CAS, the value as a plain key, the errors, two
//! writers racing from one version (exactly one wins), and versions
//! surviving a strata restart (the real binary, stopped with SIGKILL).

mod support;

use support::clients::{show, Env, RawConn};
use support::coord_util::int_cmd;

#[tokio::test]
async fn versions_conflicts_cas_and_errors() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("VGET cfg", b"*2\r\n$-1\r\n:0\r\n").await;
    c.expect("VSET cfg a VERSION 0", b":1\r\n").await;
    c.expect("vset cfg b", b":2\r\n").await;
    c.expect(
        "VSET cfg c VERSION 1",
        b"-CONFLICT current version is 2\r\n",
    )
    .await;
    c.expect("VSET cfg c VERSION 2", b":3\r\n").await;
    c.expect("VGET cfg", b"*2\r\n$1\r\nc\r\n:3\r\n").await;
    // The value is the key itself.
    c.expect("GET cfg", b"$1\r\nc\r\n").await;
    c.expect("CAS cfg x y", b"$-1\r\n").await;
    c.expect("CAS cfg c d", b":4\r\n").await;
    c.expect("VGET cfg", b"*2\r\n$1\r\nd\r\n:4\r\n").await;
    c.expect("HSET h f v", b":1\r\n").await;
    let wrong = show(&c.cmd("CAS h a b").await);
    assert!(wrong.starts_with("-WRONGTYPE"), "{wrong}");
    for (line, reply) in [
        (
            "VSET k",
            "-ERR wrong number of arguments for 'vset' command\r\n",
        ),
        (
            "VGET",
            "-ERR wrong number of arguments for 'vget' command\r\n",
        ),
        (
            "CAS k a",
            "-ERR wrong number of arguments for 'cas' command\r\n",
        ),
        ("VSET k v VERSION", "-ERR syntax error\r\n"),
        ("VSET k v VERSOIN 1", "-ERR syntax error\r\n"),
        (
            "VSET k v VERSION x",
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            "VSET k v VERSION -1",
            "-ERR version must not be negative\r\n",
        ),
    ] {
        c.expect(line, reply.as_bytes()).await;
    }
    let mut b = env.raw_backend().await;
    b.expect("GET strata:ver:{cfg}:", b"$1\r\n4\r\n").await;
}

/// Two writers read version N and both write with VERSION N: exactly one
/// wins, the other gets CONFLICT.
#[tokio::test]
async fn of_two_writers_from_one_version_exactly_one_wins() {
    let env = Env::start().await;
    let mut a = env.raw().await;
    let mut b = env.raw().await;
    for round in 0..20 {
        let v = int_cmd(&mut a, &format!("VSET race r{round}")).await;
        a.send(&support::clients::encode_line(&format!(
            "VSET race a{round} VERSION {v}"
        )))
        .await;
        b.send(&support::clients::encode_line(&format!(
            "VSET race b{round} VERSION {v}"
        )))
        .await;
        let (ra, rb) = (a.read_frame().await, b.read_frame().await);
        let wins = [&ra, &rb]
            .iter()
            .filter(|r| r.first() == Some(&b':'))
            .count();
        assert_eq!(wins, 1, "{} / {}", show(&ra), show(&rb));
        assert!(
            [&ra, &rb].iter().any(
                |r| r.starts_with(format!("-CONFLICT current version is {}", v + 1).as_bytes())
            ),
            "{} / {}",
            show(&ra),
            show(&rb)
        );
    }
}

/// Versions live in Redis: a new strata process sees them after the old
/// one was killed.
#[tokio::test]
async fn versions_survive_a_strata_restart() {
    let redis = support::RedisServer::start();
    let mut first = support::strata::StrataProcess::spawn(&redis.addr(), &[]);
    let mut c = RawConn::connect(&format!("127.0.0.1:{}", first.port)).await;
    for _ in 0..5 {
        c.cmd("VSET kept v").await;
    }
    let _ = first.child.kill();
    let _ = first.child.wait();
    let second = support::strata::StrataProcess::spawn(&redis.addr(), &[]);
    let mut c = RawConn::connect(&format!("127.0.0.1:{}", second.port)).await;
    c.expect("VGET kept", b"*2\r\n$1\r\nv\r\n:5\r\n").await;
    c.expect("VSET kept w VERSION 5", b":6\r\n").await;
    drop(second);
}
