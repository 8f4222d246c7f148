//! `PROXY SLOWLOG` for what is not answered through a multiplexed batch
//! (issue 18): MULTI/EXEC, blocking commands and scripts on a dedicated
//! connection, and commands strata answers itself (PING, CLIENT …, AUTH,
//! PROXY …, COMMAND), measured from arrival to reply. Durations are only
//! checked against lower bounds the backend was told to spend (a sleep, a
//! blocking timeout): they hold however loaded the machine is.
#![allow(clippy::unwrap_used)]

mod support;

use redis::Value;
use support::clients::{Env, RawConn};
use support::RedisServer;

async fn env_with(slower_than_us: i64) -> Env {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut config = support::strata::test_config(&redis.addr());
    config.server.slowlog_log_slower_than_us = slower_than_us;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    Env { redis, running }
}

#[derive(Debug)]
struct Entry {
    duration: i64,
    args: Vec<String>,
    backend: i64,
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

async fn slowlog(env: &Env) -> Vec<Entry> {
    let mut con = env.con().await;
    let v: Value = redis::cmd("PROXY")
        .arg("SLOWLOG")
        .arg("GET")
        .arg("-1")
        .query_async(&mut con)
        .await
        .unwrap();
    let Value::Array(list) = v else {
        panic!("{v:?}")
    };
    list.into_iter()
        .map(|e| {
            let Value::Array(f) = e else { panic!("{e:?}") };
            let int = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("{other:?}"),
            };
            let Value::Array(args) = &f[3] else {
                panic!("{f:?}")
            };
            Entry {
                duration: int(&f[2]),
                args: args.iter().map(text).collect(),
                backend: int(&f[7]),
            }
        })
        .collect()
}

fn find<'a>(entries: &'a [Entry], args: &[&str]) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.args == args)
        .unwrap_or_else(|| panic!("no entry {args:?} in {entries:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_connections_are_in_the_slow_log() {
    let env = env_with(10_000).await;
    let mut raw: RawConn = env.raw().await;
    // A transaction whose EXEC runs a 50 ms sleep.
    raw.expect("MULTI", b"+OK\r\n").await;
    raw.expect("DEBUG SLEEP 0.05", b"+QUEUED\r\n").await;
    raw.expect("EXEC", b"*1\r\n+OK\r\n").await;
    // A blocking command that times out after 100 ms.
    raw.expect("BLPOP nothing:here 0.1", b"*-1\r\n").await;
    // A script that keeps Redis busy for 50 ms (on a connection of its own).
    let script = "local s=redis.call('TIME') local t=s[1]*1e6+s[2] \
                  repeat local n=redis.call('TIME') until n[1]*1e6+n[2]-t>=5e4 return 1";
    assert!(script.len() <= 128, "shown whole in the slow log");
    assert_eq!(
        raw.call(&[b"EVAL", script.as_bytes(), b"0"]).await,
        b":1\r\n"
    );
    raw.expect("PING", b"+PONG\r\n").await;

    let entries = slowlog(&env).await;
    let exec = find(&entries, &["EXEC"]);
    assert!(
        exec.duration >= 50_000 && exec.backend >= 50_000,
        "{exec:?}"
    );
    let blpop = find(&entries, &["BLPOP", "nothing:here", "0.1"]);
    assert!(
        blpop.duration >= 100_000 && blpop.backend >= 100_000,
        "{blpop:?}"
    );
    let eval = find(&entries, &["EVAL", script, "0"]);
    assert!(
        eval.duration >= 50_000 && eval.backend >= 50_000,
        "{eval:?}"
    );
    // Fast commands stay out.
    assert!(
        !entries
            .iter()
            .any(|e| e.args == ["MULTI"] || e.args == ["PING"]),
        "{entries:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_strata_answers_are_in_the_slow_log_with_secrets_redacted() {
    // Every command is slow enough at a threshold of 0.
    let env = env_with(0).await;
    let mut raw = env.raw().await;
    raw.expect("PING", b"+PONG\r\n").await;
    raw.expect("CLIENT SETNAME watcher", b"+OK\r\n").await;
    raw.expect("ECHO hello", b"$5\r\nhello\r\n").await;
    let refused = raw.cmd("AUTH someone s3cret-pw").await;
    assert!(
        refused.starts_with(b"-WRONGPASS"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    raw.cmd("PROXY LATENCY").await;
    raw.cmd("COMMAND COUNT").await;

    let entries = slowlog(&env).await;
    for args in [
        &["PING"][..],
        &["CLIENT", "SETNAME", "watcher"],
        &["ECHO", "hello"],
        &["AUTH", "(redacted)", "(redacted)"],
        &["PROXY", "LATENCY"],
        &["COMMAND", "COUNT"],
    ] {
        find(&entries, args);
    }
    // strata answered these: no backend time, except COMMAND's round trip.
    assert_eq!(find(&entries, &["PING"]).backend, 0);
    let all = format!("{entries:?}");
    assert!(!all.contains("s3cret-pw"), "{all}");
}
