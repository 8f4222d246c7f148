//! redis-cli through strata: one-shot commands, --raw, scripts on stdin,
//! RESP3 (-3), and --pipe mass insertion.
#![allow(clippy::unwrap_used)]

mod support;

use redis::cmd;
use support::clients::{redis_cli, CliOutput, Env};

fn ok(out: &CliOutput) -> &str {
    assert!(out.success, "redis-cli failed: {out:?}");
    &out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands() {
    let env = Env::start().await;
    let p = env.port();
    assert_eq!(ok(&redis_cli(p, &["PING"], None).await), "PONG\n");
    assert_eq!(
        ok(&redis_cli(p, &["SET", "cli:k", "hello world"], None).await),
        "OK\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["GET", "cli:k"], None).await),
        "hello world\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "GET", "cli:k"], None).await),
        "\"hello world\"\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "GET", "nope"], None).await),
        "(nil)\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "INCR", "cli:n"], None).await),
        "(integer) 1\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "INCR", "cli:k"], None).await),
        "(error) ERR value is not an integer or out of range\n"
    );
    // --raw prints the bytes as they are.
    assert_eq!(
        ok(&redis_cli(p, &["SET", "cli:nl", "a\nb\tc"], None).await),
        "OK\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--raw", "GET", "cli:nl"], None).await),
        "a\nb\tc\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "GET", "cli:nl"], None).await),
        "\"a\\nb\\tc\"\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["RPUSH", "cli:l", "x", "y"], None).await),
        "2\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--raw", "LRANGE", "cli:l", "0", "-1"], None).await),
        "x\ny\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["--no-raw", "LRANGE", "cli:l", "0", "-1"], None).await),
        "1) \"x\"\n2) \"y\"\n"
    );
    // -x: the last argument from stdin.
    assert_eq!(
        ok(&redis_cli(p, &["-x", "SET", "cli:x"], Some(b"from stdin".to_vec())).await),
        "OK\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["GET", "cli:x"], None).await),
        "from stdin\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_stdin_share_one_session() {
    let env = Env::start().await;
    let p = env.port();
    let script = b"SET cli:q \"quoted value\"\nGET cli:q\nCLIENT SETNAME cli-session\nCLIENT GETNAME\nSELECT 2\nSET indb2 yes\nGET indb2\nSELECT 0\nGET indb2\n";
    let out = redis_cli(p, &[], Some(script.to_vec())).await;
    assert_eq!(
        ok(&out),
        "OK\nquoted value\nOK\ncli-session\nOK\nOK\nyes\nOK\n\n"
    );
    let mut direct = env.backend_con().await;
    let v: String = cmd("GET")
        .arg("cli:q")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(v, "quoted value");
    let v: Option<String> = cmd("GET")
        .arg("indb2")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(v, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_shows_proxy_section() {
    let env = Env::start().await;
    let out = redis_cli(env.port(), &["INFO"], None).await;
    let text = ok(&out);
    assert!(text.contains("# Server"), "{text}");
    assert!(text.contains("redis_version:"), "{text}");
    assert!(text.contains("# Proxy"), "{text}");
    assert!(text.contains("backend_state:up"), "{text}");
    let out = redis_cli(env.port(), &["INFO", "proxy"], None).await;
    let text = ok(&out);
    assert!(text.starts_with("# Proxy"), "{text}");
    assert!(!text.contains("# Server"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_map_output() {
    let env = Env::start().await;
    let p = env.port();
    assert_eq!(
        ok(&redis_cli(p, &["HSET", "cli:h", "f1", "v1", "f2", "v2"], None).await),
        "2\n"
    );
    let hello = redis_cli(p, &["-3", "--no-raw", "HELLO", "3"], None).await;
    let text = ok(&hello);
    assert!(text.starts_with("1# \"server\" => \"redis\"\n"), "{text}");
    assert!(text.contains("3# \"proto\" => (integer) 3\n"), "{text}");
    assert!(text.contains("7# \"modules\" => (empty array)\n"), "{text}");
    assert_eq!(
        ok(&redis_cli(p, &["-3", "--no-raw", "HGETALL", "cli:h"], None).await),
        "1# \"f1\" => \"v1\"\n2# \"f2\" => \"v2\"\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["ZADD", "cli:z", "1.5", "m"], None).await),
        "1\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["-3", "--no-raw", "ZSCORE", "cli:z", "m"], None).await),
        "(double) 1.5\n"
    );
    assert_eq!(
        ok(&redis_cli(p, &["-3", "--no-raw", "GET", "nope"], None).await),
        "(nil)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_mass_insertion() {
    let env = Env::start().await;
    let mut input = Vec::new();
    for i in 0..10_000 {
        let key = format!("mass:{i}");
        let val = format!("value-{i}");
        input.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{val}\r\n",
                key.len(),
                val.len()
            )
            .as_bytes(),
        );
    }
    let out = redis_cli(env.port(), &["--pipe"], Some(input)).await;
    let text = ok(&out);
    assert!(
        text.contains("errors: 0, replies: 10000"),
        "{text}\n{}",
        out.stderr
    );
    let mut direct = env.backend_con().await;
    let n: i64 = cmd("DBSIZE").query_async(&mut direct).await.unwrap();
    assert_eq!(n, 10_000);
    let v: String = cmd("GET")
        .arg("mass:9999")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(v, "value-9999");
}
