//! strata's own commands in COMMAND, COMMAND INFO, COMMAND COUNT, COMMAND
//! LIST and COMMAND DOCS (issue 18: PROXY in COMMAND DOCS), through
//! redis-cli, raw RESP2/RESP3 and redis-rs, compared with the backend's
//! own replies: the backend's entries byte for byte, strata's in the
//! shapes Redis gives its own container commands (CONFIG).
#![allow(clippy::unwrap_used)]

mod support;

use redis::Value;
use support::clients::{redis_cli, Env};

/// A value's shape: its RESP type, recursively for aggregates' first
/// levels (lengths left out: only the form is compared).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "int",
        Value::BulkString(_) => "bulk",
        Value::SimpleString(_) | Value::Okay => "simple",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Map(_) => "map",
        _ => "other",
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

async fn query(con: &mut redis::aio::MultiplexedConnection, words: &[&str]) -> Value {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c.query_async(con).await.unwrap()
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (s(k), v)).collect(),
        Value::Array(a) => a.chunks(2).map(|kv| (s(&kv[0]), &kv[1])).collect(),
        other => panic!("not a map: {other:?}"),
    }
}

/// How many commands strata adds to the backend's: PROXY (`command/own/`)
/// and the coordination commands (`coord/registry.rs`).
fn added() -> i64 {
    i64::try_from(strata::command::own::REGISTRY.len() + strata::coord::registry::count()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_is_listed_beside_the_backends_commands() {
    let env = Env::start().await;
    let mut raw = env.raw().await;
    let mut backend = env.raw_backend().await;

    // COUNT: the backend's commands and PROXY.
    let n = |f: Vec<u8>| -> i64 {
        String::from_utf8(f[1..f.len() - 2].to_vec())
            .unwrap()
            .parse()
            .unwrap()
    };
    let theirs = n(backend.cmd("COMMAND COUNT").await);
    assert_eq!(n(raw.cmd("COMMAND COUNT").await), theirs + added());

    // INFO with names: the backend's entries byte for byte, PROXY's in
    // place of the backend's null, a name nobody knows still null.
    let want = backend.cmd("COMMAND INFO get nosuch").await;
    assert_eq!(raw.cmd("COMMAND INFO get nosuch").await, want);
    let got = raw.cmd("COMMAND INFO get proxy nosuch proxy|slowlog").await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("*4\r\n*10\r\n$3\r\nget\r\n"), "{text}");
    assert!(text.contains("*10\r\n$5\r\nproxy\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@slow\r\n*0\r\n*0\r\n*14\r\n"), "{text}");
    assert!(
        text.contains("$-1\r\n*10\r\n$13\r\nproxy|slowlog\r\n:-3\r\n"),
        "{text}"
    );

    // COMMAND LIST and its filters.
    let list = raw.cmd("COMMAND LIST FILTERBY PATTERN proxy|c*").await;
    assert_eq!(
        String::from_utf8_lossy(&list),
        "*3\r\n$13\r\nproxy|clients\r\n$16\r\nproxy|checkpoint\r\n$12\r\nproxy|config\r\n".replace(
            "$13\r\nproxy|clients\r\n$16\r\nproxy|checkpoint\r\n",
            "$16\r\nproxy|checkpoint\r\n$13\r\nproxy|clients\r\n"
        )
    );
    let by_cat =
        String::from_utf8_lossy(&raw.cmd("COMMAND LIST FILTERBY ACLCAT admin").await).into_owned();
    assert!(
        by_cat.contains("$10\r\nproxy|info\r\n") && by_cat.contains("$10\r\nconfig|set\r\n"),
        "{by_cat}"
    );
    let none = raw.cmd("COMMAND LIST FILTERBY MODULE proxy").await;
    assert_eq!(
        none,
        backend.cmd("COMMAND LIST FILTERBY MODULE proxy").await
    );
    assert!(!by_cat.contains("$5\r\nproxy\r\n"), "{by_cat}");
    // The backend's errors are its own.
    assert_eq!(
        raw.cmd("COMMAND LIST FILTERBY x y").await,
        backend.cmd("COMMAND LIST FILTERBY x y").await
    );

    // DOCS in RESP3 (HELLO 3), in the asked order.
    raw.cmd("HELLO 3").await;
    let docs = String::from_utf8_lossy(&raw.cmd("COMMAND DOCS proxy|info GET").await).into_owned();
    assert!(
        docs.starts_with("%2\r\n$10\r\nproxy|info\r\n%4\r\n$7\r\nsummary\r\n"),
        "{docs}"
    );
    assert!(docs.contains("$3\r\nget\r\n%"), "{docs}");

    // redis-cli, as an operator sees it.
    let out = redis_cli(env.port(), &["COMMAND", "DOCS", "PROXY"], None).await;
    assert!(out.success, "{}", out.stderr);
    for word in [
        "summary",
        "proxy|slowlog",
        "proxy|config",
        "parameter-value",
        "REWRITE",
    ] {
        assert!(out.stdout.contains(word), "{word} in {}", out.stdout);
    }
    // On a dedicated connection (SELECT 1) too.
    let mut own = env.raw().await;
    own.cmd("SELECT 1").await;
    assert_eq!(n(own.cmd("COMMAND COUNT").await), theirs + added());
}

/// strata's entries have the shapes of Redis's own container command
/// (CONFIG) in COMMAND and COMMAND DOCS, in RESP2 and RESP3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_entries_are_shaped_as_redis_shapes_config() {
    let env = Env::start().await;
    for resp3 in [false, true] {
        let mut con = if resp3 {
            env.con3().await
        } else {
            env.con().await
        };
        let mut direct = if resp3 {
            support::clients::connect_rs(&format!("{}?protocol=resp3", env.redis.url())).await
        } else {
            env.backend_con().await
        };
        let all = query(&mut con, &["COMMAND"]).await;
        let theirs = query(&mut direct, &["COMMAND"]).await;
        assert_eq!(
            items(&all).len() as i64,
            items(&theirs).len() as i64 + added()
        );
        let by_name = |v: &Value, name: &str| -> Value {
            items(v)
                .iter()
                .find(|e| s(&items(e)[0]) == name)
                .unwrap()
                .clone()
        };
        let proxy = by_name(&all, "proxy");
        let config = by_name(&theirs, "config");
        let shape = |e: &Value| items(e).iter().map(kind).collect::<Vec<_>>();
        assert_eq!(shape(&proxy), shape(&config), "resp3={resp3}");
        let sub = |e: &Value, i: usize| items(&items(e)[9])[i].clone();
        assert_eq!(shape(&sub(&proxy, 0)), shape(&sub(&config, 0)));
        let subs: Vec<String> = items(&items(&proxy)[9])
            .iter()
            .map(|e| s(&items(e)[0]))
            .collect();
        for help_word in [
            "proxy|info",
            "proxy|slowlog",
            "proxy|config",
            "proxy|reload",
            "proxy|help",
        ] {
            assert!(
                subs.iter().any(|n| n == help_word),
                "{help_word} in {subs:?}"
            );
        }

        let docs = query(&mut con, &["COMMAND", "DOCS", "proxy", "config"]).await;
        let docs = pairs(&docs);
        assert_eq!(
            docs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["proxy", "config"]
        );
        let fields = |v: &Value| {
            pairs(v)
                .into_iter()
                .map(|(k, v)| (k, kind(v)))
                .collect::<Vec<_>>()
        };
        let mine = fields(docs[0].1);
        let redis_config: Vec<_> = fields(docs[1].1)
            .into_iter()
            .filter(|(k, _)| k != "complexity")
            .collect();
        assert_eq!(mine, redis_config, "resp3={resp3}");
        // A subcommand's arguments as Redis lists CONFIG GET's.
        let proxy_subs = pairs(docs[0].1)
            .into_iter()
            .find(|(k, _)| k == "subcommands")
            .unwrap()
            .1;
        let slowlog = pairs(proxy_subs)
            .into_iter()
            .find(|(k, _)| k == "proxy|slowlog")
            .unwrap()
            .1;
        let args = pairs(slowlog)
            .into_iter()
            .find(|(k, _)| k == "arguments")
            .unwrap()
            .1;
        let first = pairs(&items(args)[0]);
        assert_eq!(first[0].0, "name");
        assert_eq!(s(first[1].1), "oneof");
    }
}
