//! Connection-level behaviour through strata, as real clients see it: HELLO
//! and RESP3, the commands strata answers itself (PING, QUIT, RESET, CLIENT
//! …, SELECT), INFO, and the metrics and health endpoints.
//!
//! Exact replies are compared byte for byte, against a reference
//! redis-server where Redis defines them.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use redis::cmd;
use support::clients::{metric, metrics_text, show, Env, RawConn};
use support::RedisServer;

/// Sends each line to strata and to the reference; the replies must be identical.
async fn same(s: &mut RawConn, r: &mut RawConn, line: &str) -> Vec<u8> {
    let got = s.cmd(line).await;
    let want = r.cmd(line).await;
    assert_eq!(show(&got), show(&want), "strata vs redis on {line:?}");
    got
}

/// `:N\r\n` -> N
fn int_reply(frame: &[u8]) -> i64 {
    let text = std::str::from_utf8(frame).unwrap();
    assert!(
        text.starts_with(':') && text.ends_with("\r\n"),
        "not an integer reply: {text:?}"
    );
    text[1..text.len() - 2].parse().unwrap()
}

/// The payload of a bulk (`$`) or verbatim (`=`, without `txt:`) string reply.
fn string_reply(frame: &[u8]) -> String {
    let text = String::from_utf8(frame.to_vec()).unwrap();
    let (head, rest) = text.split_once("\r\n").unwrap();
    let len: usize = head[1..].parse().unwrap();
    let body = &rest[..len];
    match &head[..1] {
        "$" => body.to_string(),
        "=" => body.strip_prefix("txt:").expect("verbatim txt").to_string(),
        _ => panic!("not a string reply: {text:?}"),
    }
}

/// The backend's redis_version.
async fn backend_version(env: &Env) -> String {
    let info: String = cmd("INFO")
        .arg("server")
        .query_async(&mut env.backend_con().await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap()
        .trim()
        .to_string()
}

fn hello_map(proto: i64, id: i64, version: &str) -> Vec<u8> {
    let head = if proto == 3 { "%7" } else { "*14" };
    format!(
        "{head}\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n${}\r\n{version}\r\n$5\r\nproto\r\n:{proto}\r\n\
         $2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
        version.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_replies_and_protocol_switch() {
    let env = Env::start().await;
    let version = backend_version(&env).await;
    let mut c = env.raw().await;
    let id = int_reply(&c.cmd("CLIENT ID").await);
    assert!(id > 0);
    // HELLO without arguments: the map, in RESP2 (a flat array), proto 2.
    c.expect("HELLO", &hello_map(2, id, &version)).await;
    c.expect("GET nope", b"$-1\r\n").await;
    // HELLO 3: a RESP3 map, proto 3, id = CLIENT ID.
    c.expect("HELLO 3", &hello_map(3, id, &version)).await;
    c.expect("GET nope", b"_\r\n").await;
    c.expect("CLIENT ID", format!(":{id}\r\n").as_bytes()).await;
    // Back to RESP2.
    c.expect("HELLO 2", &hello_map(2, id, &version)).await;
    c.expect("GET nope", b"$-1\r\n").await;

    // HELLO 3 SETNAME, then CLIENT GETNAME and CLIENT INFO.
    let mut n = env.raw().await;
    let nid = int_reply(&n.cmd("CLIENT ID").await);
    n.expect("HELLO 3 SETNAME x", &hello_map(3, nid, &version))
        .await;
    n.expect("CLIENT GETNAME", b"$1\r\nx\r\n").await;
    let info = string_reply(&n.cmd("CLIENT INFO").await);
    assert!(
        info.contains(&format!("id={nid} "))
            && info.contains(" name=x ")
            && info.contains(" resp=3"),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_errors_and_auth_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    assert_eq!(
        same(&mut s, &mut r, "HELLO 4").await,
        b"-NOPROTO unsupported protocol version\r\n"
    );
    same(&mut s, &mut r, "HELLO 1").await;
    same(&mut s, &mut r, "HELLO abc").await;
    same(&mut s, &mut r, "HELLO 3 FOO").await;
    same(&mut s, &mut r, "HELLO 3 SETNAME").await;
    same(&mut s, &mut r, "HELLO 3 SETNAME a\x01b").await;
    assert_eq!(
        same(&mut s, &mut r, "HELLO 3 AUTH bob pw").await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    // A failed HELLO switches nothing: still RESP2.
    same(&mut s, &mut r, "GET nope").await;
    same(&mut s, &mut r, "AUTH pw").await;
    same(&mut s, &mut r, "AUTH default pw").await;
    same(&mut s, &mut r, "AUTH bob pw").await;
    // HELLO 3 AUTH with the default user works (no password configured).
    let ok = s.cmd("HELLO 3 AUTH default pw").await;
    assert!(
        show(&ok).starts_with("%7\\r\\n$6\\r\\nserver\\r\\n$5\\r\\nredis"),
        "{}",
        show(&ok)
    );
    assert!(
        show(&ok).contains("$5\\r\\nproto\\r\\n:3\\r\\n"),
        "{}",
        show(&ok)
    );
    r.cmd("HELLO 3 AUTH default pw").await;
    same(&mut s, &mut r, "GET nope").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_replies_match_redis() {
    let env = Env::start_with(&["--enable-debug-command", "yes"]).await;
    let reference = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    s.cmd("HELLO 3").await;
    r.cmd("HELLO 3").await;
    same(&mut s, &mut r, "HSET h f v g w").await;
    assert_eq!(
        same(&mut s, &mut r, "HGETALL h").await,
        b"%2\r\n$1\r\nf\r\n$1\r\nv\r\n$1\r\ng\r\n$1\r\nw\r\n"
    );
    same(&mut s, &mut r, "ZADD z 1.5 m 2 n").await;
    assert_eq!(same(&mut s, &mut r, "ZSCORE z m").await, b",1.5\r\n");
    assert_eq!(same(&mut s, &mut r, "ZSCORE z nope").await, b"_\r\n");
    same(&mut s, &mut r, "ZRANGE z 0 -1 WITHSCORES").await;
    same(&mut s, &mut r, "ZPOPMIN z").await;
    assert_eq!(same(&mut s, &mut r, "GET nope").await, b"_\r\n");
    same(&mut s, &mut r, "SADD st a").await;
    assert_eq!(
        same(&mut s, &mut r, "SMEMBERS st").await,
        b"~1\r\n$1\r\na\r\n"
    );
    same(&mut s, &mut r, "MSET a 1 b 2").await;
    assert_eq!(
        same(&mut s, &mut r, "MGET a nope b").await,
        b"*3\r\n$1\r\n1\r\n_\r\n$1\r\n2\r\n"
    );
    same(&mut s, &mut r, "HMGET h f nope").await;
    same(&mut s, &mut r, "LPOP nolist 2").await;
    same(&mut s, &mut r, "XREAD STREAMS nostream 0").await;
    same(&mut s, &mut r, "CONFIG GET maxmemory-policy").await;
    same(&mut s, &mut r, "EXISTS a b nope").await;
    same(&mut s, &mut r, "INCRBYFLOAT fl 1.5").await;
    same(&mut s, &mut r, "EVAL return{1,'x',{2}} 0").await;
    same(&mut s, &mut r, "DEBUG PROTOCOL bignum").await;
    same(&mut s, &mut r, "DEBUG PROTOCOL true").await;
    same(&mut s, &mut r, "DEBUG PROTOCOL verbatim").await;
    same(&mut s, &mut r, "DEBUG PROTOCOL attrib").await;
    same(&mut s, &mut r, "MULTI").await;
    same(&mut s, &mut r, "HGETALL h").await;
    same(&mut s, &mut r, "ZSCORE z n").await;
    same(&mut s, &mut r, "EXEC").await;
    // redis-rs in RESP3 mode through strata.
    let mut con = env.con3().await;
    let m: std::collections::HashMap<String, String> =
        cmd("HGETALL").arg("h").query_async(&mut con).await.unwrap();
    assert_eq!(m.get("f").map(String::as_str), Some("v"));
    let score: Option<f64> = cmd("ZSCORE")
        .arg("z")
        .arg("n")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(score, Some(2.0));
    let v: redis::Value = cmd("ZSCORE")
        .arg("z")
        .arg("n")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, redis::Value::Double(2.0));
}

// Regression guard; before the fix strata answered +OK to READONLY and
// READWRITE in front of a standalone Redis, which refuses them
// (server/session/local_commands.rs `local`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_readwrite_refused_without_cluster_as_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    for line in [
        "READONLY",
        "READWRITE",
        "ASKING",
        "READONLY x",
        "READWRITE x",
    ] {
        same(&mut s, &mut r, line).await;
    }
    assert_eq!(
        same(&mut s, &mut r, "READONLY").await,
        b"-ERR This instance has cluster support disabled\r\n"
    );
    // The same on a dedicated connection (inside MULTI they are queued).
    same(&mut s, &mut r, "SELECT 3").await;
    same(&mut s, &mut r, "READWRITE").await;
    same(&mut s, &mut r, "MULTI").await;
    same(&mut s, &mut r, "READONLY").await;
    same(&mut s, &mut r, "EXEC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_echo_quit_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    assert_eq!(same(&mut s, &mut r, "PING").await, b"+PONG\r\n");
    assert_eq!(same(&mut s, &mut r, "PING hello").await, b"$5\r\nhello\r\n");
    assert_eq!(same(&mut s, &mut r, "ECHO hi").await, b"$2\r\nhi\r\n");
    same(&mut s, &mut r, "PING a b").await;
    same(&mut s, &mut r, "ECHO").await;
    same(&mut s, &mut r, "ECHO a b").await;
    same(&mut s, &mut r, "FOOBAR x").await;
    s.cmd("HELLO 3").await;
    r.cmd("HELLO 3").await;
    same(&mut s, &mut r, "PING").await;
    same(&mut s, &mut r, "PING x").await;
    // QUIT: +OK, then the server closes the connection.
    assert_eq!(same(&mut s, &mut r, "QUIT").await, b"+OK\r\n");
    s.expect_closed().await;
    r.expect_closed().await;
    // Commands pipelined after QUIT are not executed.
    let mut q = env.raw().await;
    q.send(b"SET afterquit 1\r\nQUIT\r\nSET afterquit 2\r\n")
        .await;
    assert_eq!(q.read_frame().await, b"+OK\r\n");
    assert_eq!(q.read_frame().await, b"+OK\r\n");
    q.expect_closed().await;
    let v: String = cmd("GET")
        .arg("afterquit")
        .query_async(&mut env.backend_con().await)
        .await
        .unwrap();
    assert_eq!(v, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_clears_name_protocol_and_db() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.cmd("HELLO 3 SETNAME resetme").await;
    c.expect("CLIENT GETNAME", b"$7\r\nresetme\r\n").await;
    c.expect("RESET", b"+RESET\r\n").await;
    c.expect("CLIENT GETNAME", b"$-1\r\n").await;
    c.expect("GET nope", b"$-1\r\n").await;
    let info = string_reply(&c.cmd("CLIENT INFO").await);
    assert!(
        info.contains(" resp=2") && info.contains(" name= ") && info.contains(" db=0 "),
        "{info}"
    );

    // RESET from a dedicated state (SELECT 2, in RESP3) ends it too.
    c.cmd("HELLO 3").await;
    c.expect("SELECT 2", b"+OK\r\n").await;
    c.expect("SET indb2 x", b"+OK\r\n").await;
    c.expect("GET indb2", b"$1\r\nx\r\n").await;
    c.expect("RESET", b"+RESET\r\n").await;
    c.expect("GET indb2", b"$-1\r\n").await;
    let info = string_reply(&c.cmd("CLIENT INFO").await);
    assert!(
        info.contains(" resp=2") && info.contains(" db=0 "),
        "{info}"
    );
    // And RESET inside MULTI discards the transaction.
    c.expect("MULTI", b"+OK\r\n").await;
    c.expect("SET inmulti x", b"+QUEUED\r\n").await;
    c.expect("RESET", b"+RESET\r\n").await;
    c.expect("EXISTS inmulti", b":0\r\n").await;
    c.expect("EXEC", b"-ERR EXEC without MULTI\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_id_setname_getname_info_list() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut a = env.raw().await;
    let mut b = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    let a_id = int_reply(&a.cmd("CLIENT ID").await);
    let b_id = int_reply(&b.cmd("CLIENT ID").await);
    assert_ne!(a_id, b_id);
    assert_eq!(same(&mut a, &mut r, "CLIENT GETNAME").await, b"$-1\r\n");
    assert_eq!(
        same(&mut a, &mut r, "CLIENT SETNAME alpha").await,
        b"+OK\r\n"
    );
    assert_eq!(
        same(&mut a, &mut r, "CLIENT GETNAME").await,
        b"$5\r\nalpha\r\n"
    );
    same(&mut a, &mut r, "CLIENT SETNAME a\x01b").await;
    same(&mut a, &mut r, "CLIENT SETNAME").await;
    same(&mut a, &mut r, "CLIENT GETNAME").await;
    b.cmd("HELLO 3 SETNAME beta").await;
    b.cmd("SELECT 3").await;

    let info = string_reply(&a.cmd("CLIENT INFO").await);
    assert!(
        info.starts_with(&format!("id={a_id} ")) && info.ends_with('\n'),
        "{info:?}"
    );
    assert!(
        info.contains(" name=alpha ") && info.contains(" resp=2"),
        "{info}"
    );

    let list = string_reply(&a.cmd("CLIENT LIST").await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let la = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={a_id} ")))
        .expect("a listed");
    let lb = lines
        .iter()
        .find(|l| l.starts_with(&format!("id={b_id} ")))
        .expect("b listed");
    assert!(
        la.contains(" name=alpha ") && la.contains(" resp=2") && la.contains(" db=0 "),
        "{la}"
    );
    assert!(
        lb.contains(" name=beta ") && lb.contains(" resp=3") && lb.contains(" db=3 "),
        "{lb}"
    );
    // Redis shows the command being run: CLIENT LIST itself.
    assert!(la.contains(" cmd=client|list "), "{la}");
    let only_b = string_reply(&a.cmd(&format!("CLIENT LIST ID {b_id}")).await);
    assert_eq!(only_b.lines().count(), 1, "{only_b}");
    assert!(only_b.starts_with(&format!("id={b_id} ")), "{only_b}");
    // CLIENT INFO for b is sent from its dedicated connection (db 3): still strata's answer.
    let binfo = string_reply(&b.cmd("CLIENT INFO").await);
    assert!(
        binfo.starts_with(&format!("id={b_id} ")) && binfo.contains(" name=beta "),
        "{binfo}"
    );
    // Clearing the name.
    a.send(&support::clients::encode(&[b"CLIENT", b"SETNAME", b""]))
        .await;
    assert_eq!(a.read_frame().await, b"+OK\r\n");
    a.expect("CLIENT GETNAME", b"$-1\r\n").await;
    drop(b);
    // b's session ends: the list shrinks to one.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = string_reply(&a.cmd("CLIENT LIST").await);
        if list.lines().count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "b still listed: {list}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_isolates_databases() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    let mut direct = env.raw_backend().await;
    assert_eq!(
        same(&mut s, &mut r, "SELECT abc").await,
        b"-ERR value is not an integer or out of range\r\n"
    );
    same(&mut s, &mut r, "SELECT 16").await;
    same(&mut s, &mut r, "SELECT -1").await;
    same(&mut s, &mut r, "SELECT").await;
    s.expect("SET k db0", b"+OK\r\n").await;
    s.expect("SELECT 1", b"+OK\r\n").await;
    s.expect("GET k", b"$-1\r\n").await;
    s.expect("SET k db1", b"+OK\r\n").await;
    s.expect("GET k", b"$3\r\ndb1\r\n").await;
    s.expect("DBSIZE", b":1\r\n").await;
    // Check on the backend directly.
    direct.expect("GET k", b"$3\r\ndb0\r\n").await;
    direct.expect("SELECT 1", b"+OK\r\n").await;
    direct.expect("GET k", b"$3\r\ndb1\r\n").await;
    // Another client of strata is still in db 0.
    let mut other = env.raw().await;
    other.expect("GET k", b"$3\r\ndb0\r\n").await;
    // SELECT 0 goes back.
    s.expect("SELECT 0", b"+OK\r\n").await;
    s.expect("GET k", b"$3\r\ndb0\r\n").await;
    s.expect("SELECT 0", b"+OK\r\n").await;
    s.expect("SET k2 x", b"+OK\r\n").await;
    direct.expect("SELECT 0", b"+OK\r\n").await;
    direct.expect("GET k2", b"$1\r\nx\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: redis-rs pipelines SELECT 5 + CLIENT SETINFO ×2 at connect;
// the replies on the dedicated connection arrive in one read and strata closes the client
// ('unexpected reply from backend', server/writer.rs dedicated_loop), so the connect fails with
// 'broken pipe'
async fn redis_rs_with_database_in_url() {
    let env = Env::start().await;
    let mut direct = env.raw_backend().await;
    let mut db5 = support::clients::connect_rs(&format!("redis://{}/5", env.addr())).await;
    let _: () = cmd("SET")
        .arg("k")
        .arg("db5")
        .query_async(&mut db5)
        .await
        .unwrap();
    let v: String = cmd("GET").arg("k").query_async(&mut db5).await.unwrap();
    assert_eq!(v, "db5");
    direct.expect("SELECT 5", b"+OK\r\n").await;
    direct.expect("GET k", b"$3\r\ndb5\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_off_on_skip_match_redis() {
    let env = Env::start().await;
    let reference = RedisServer::start();
    let script: &[&str] = &[
        "CLIENT REPLY OFF",
        "SET a 1",
        "GET a",
        "PING",
        "CLIENT REPLY ON",
        "GET a",
        "CLIENT REPLY SKIP",
        "SET b 2",
        "GET b",
        "CLIENT REPLY SKIP",
        "PING",
        "ECHO seen",
    ];
    let bytes: Vec<u8> = script
        .iter()
        .flat_map(|l| support::clients::encode_line(l))
        .collect();
    let mut s = env.raw().await;
    let mut r = RawConn::connect(&reference.addr()).await;
    s.send(&bytes).await;
    r.send(&bytes).await;
    let expected: [&[u8]; 4] = [
        b"+OK\r\n",
        b"$1\r\n1\r\n",
        b"$1\r\n2\r\n",
        b"$4\r\nseen\r\n",
    ];
    for want in expected {
        assert_eq!(show(&r.read_frame().await), show(want), "reference");
        assert_eq!(show(&s.read_frame().await), show(want), "strata");
    }
    s.expect_silence(Duration::from_millis(200)).await;
    // The silenced writes did happen.
    s.expect("MGET a b", b"*2\r\n$1\r\n1\r\n$1\r\n2\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_count_and_info_pass_through() {
    let env = Env::start().await;
    let mut s = env.raw().await;
    let mut d = env.raw_backend().await;
    // The backend's commands and strata's own PROXY (tests/command_docs.rs).
    let count = s.cmd("COMMAND COUNT").await;
    assert_eq!(
        int_reply(&count),
        int_reply(&d.cmd("COMMAND COUNT").await) + 1
    );
    assert!(int_reply(&count) > 200);
    let info = s.cmd("COMMAND INFO GET").await;
    assert_eq!(show(&info), show(&d.cmd("COMMAND INFO GET").await));
    assert!(
        show(&info).starts_with("*1\\r\\n*10\\r\\n$3\\r\\nget\\r\\n:2\\r\\n"),
        "{}",
        show(&info)
    );
    assert_eq!(
        show(&s.cmd("COMMAND GETKEYS SET k v").await),
        show(&d.cmd("COMMAND GETKEYS SET k v").await)
    );
}

/// The `# Proxy` section of an INFO text.
fn proxy_section(info: &str) -> &str {
    let start = info.find("# Proxy").expect("INFO has # Proxy");
    let rest = &info[start..];
    match rest[2..].find("\n# ") {
        Some(end) => &rest[..end + 2],
        None => rest,
    }
}

fn field<'a>(section: &'a str, name: &str) -> &'a str {
    section
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {section}"))
        .trim_end()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_has_backend_and_proxy_sections() {
    let env = Env::start().await;
    let version = backend_version(&env).await;
    let mut con = env.con().await;
    let mut second = env.raw().await;
    // A round trip, so strata has surely registered this client.
    second.expect("PING", b"+PONG\r\n").await;
    let info: String = cmd("INFO").query_async(&mut con).await.unwrap();
    assert!(info.contains("# Server\r\n"), "{info}");
    assert!(
        info.contains(&format!("redis_version:{version}\r\n")),
        "{info}"
    );
    assert!(info.contains("# Keyspace"), "{info}");
    let proxy = proxy_section(&info);
    assert_eq!(field(proxy, "proxy_version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(proxy, "connected_clients"), "2", "{proxy}");
    assert_eq!(field(proxy, "backend_state"), "up");
    assert_eq!(field(proxy, "backend_address"), env.redis.addr());
    for arg in ["all", "everything", "default"] {
        let i: String = cmd("INFO").arg(arg).query_async(&mut con).await.unwrap();
        assert!(
            i.contains("# Server") && i.contains("# Proxy"),
            "INFO {arg}"
        );
    }
    // INFO proxy: only the proxy section.
    let p: String = cmd("INFO")
        .arg("proxy")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(p.starts_with("# Proxy\r\n"), "{p}");
    assert!(
        !p.contains("# Server") && !p.contains("redis_version"),
        "{p}"
    );
    assert_eq!(field(&p, "backend_state"), "up");
    // INFO server: the backend's section only.
    let sv: String = cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(sv.contains("# Server") && !sv.contains("# Proxy"), "{sv}");
    // RESP3: INFO is a verbatim string.
    let mut raw = env.raw().await;
    raw.cmd("HELLO 3").await;
    let v = raw.cmd("INFO").await;
    assert!(v.starts_with(b"="), "{}", show(&v));
    let text = string_reply(&v);
    assert!(
        text.contains("# Server") && text.contains("# Proxy"),
        "{text}"
    );
    let v = raw.cmd("INFO proxy").await;
    assert!(string_reply(&v).starts_with("# Proxy"), "{}", show(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_commands_and_connections() {
    let env = Env::start().await;
    let backend = env.redis.addr();
    let mut c = env.raw().await;
    let mut sent = 0usize;
    for i in 0..7 {
        let set = support::clients::encode_line(&format!("SET m{i} {i}"));
        let get = support::clients::encode_line(&format!("GET m{i}"));
        c.send(&set).await;
        c.send(&get).await;
        sent += set.len() + get.len();
        assert_eq!(c.read_frame().await, b"+OK\r\n");
        assert_eq!(c.read_frame().await, format!("$1\r\n{i}\r\n").as_bytes());
    }
    let text = metrics_text(env.http()).await;
    assert_eq!(
        metric(&text, r#"strata_commands_total{command="get"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"strata_commands_total{command="set"}"#),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"strata_command_duration_seconds_count{command="get"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"strata_command_duration_seconds_bucket{le="+Inf",command="get"}"#
        ),
        Some(7.0),
        "{text}"
    );
    let sum = metric(
        &text,
        r#"strata_command_duration_seconds_sum{command="get"}"#,
    )
    .expect("sum");
    assert!(sum > 0.0 && sum < 70.0, "{sum}");
    assert_eq!(
        metric(&text, "strata_client_connections"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "strata_client_connections_accepted_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                r#"strata_backend_connections{{backend="{backend}",kind="multiplexed",state="up"}}"#
            )
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "strata_client_bytes_received_total"),
        Some(sent as f64),
        "{text}"
    );
    let out = metric(&text, "strata_client_bytes_sent_total").expect("bytes sent");
    assert_eq!(out, (7 * 5 + 7 * 7) as f64, "{text}");
    // The client leaves: the gauge goes back to 0.
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics_text(env.http()).await;
        if metric(&text, "strata_client_connections") == Some(0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "client gauge stuck: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_status(env: &Env, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = support::strata::http_get(env.http(), path).await.unwrap();
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} stayed {status} ({body}), wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_backend() {
    let mut env = Env::start().await;
    let (status, _) = support::strata::http_get(env.http(), "/health/live")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = support::strata::http_get(env.http(), "/health/ready")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    env.redis.kill();
    wait_status(&env, "/health/ready", 503).await;
    let (status, body) = support::strata::http_get(env.http(), "/health/ready")
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(body.contains(&env.redis.addr()), "{body}");
    let (status, _) = support::strata::http_get(env.http(), "/health/live")
        .await
        .unwrap();
    assert_eq!(status, 200, "liveness does not depend on the backend");
    // INFO proxy says so too, and commands fail with an error instead of hanging.
    let mut c = env.raw().await;
    let p = string_reply(&c.cmd("INFO proxy").await);
    assert_eq!(field(&p, "backend_state"), "down", "{p}");
    let reply = c.cmd("GET k").await;
    assert!(reply.starts_with(b"-"), "{}", show(&reply));
    env.redis.restart();
    wait_status(&env, "/health/ready", 200).await;
    // Traffic flows again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd("SET k back").await;
        if r == b"+OK\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strata did not reconnect: {}",
            show(&r)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.expect("GET k", b"$4\r\nback\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: HELLO sent while the client holds a dedicated connection
// (SELECT ≠ 0, MULTI, subscribed, …) is forwarded to the backend: the reply carries the backend's
// client id instead of strata's CLIENT ID, and HELLO … SETNAME is not recorded (CLIENT GETNAME
// stays nil) — server/session.rs handle_dedicated
async fn hello_on_a_dedicated_connection_keeps_strata_identity() {
    let env = Env::start().await;
    let version = backend_version(&env).await;
    let mut c = env.raw().await;
    let id = int_reply(&c.cmd("CLIENT ID").await);
    c.expect("SELECT 1", b"+OK\r\n").await;
    c.expect("HELLO 3 SETNAME foo", &hello_map(3, id, &version))
        .await;
    c.expect("CLIENT GETNAME", b"$3\r\nfoo\r\n").await;
    c.expect("GET nope", b"_\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: SELECT queued inside MULTI runs on the backend at EXEC, but
// strata's connection state ignores it (conn_state.rs apply returns early in MULTI): after EXEC
// the connection is returned to the pool and later commands go to db 0 instead of db 1
async fn select_inside_multi_applies_after_exec() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    let mut direct = env.raw_backend().await;
    c.expect("MULTI", b"+OK\r\n").await;
    c.expect("SELECT 1", b"+QUEUED\r\n").await;
    c.expect("EXEC", b"*1\r\n+OK\r\n").await;
    c.expect("SET msel v", b"+OK\r\n").await;
    direct.expect("GET msel", b"$-1\r\n").await;
    direct.expect("SELECT 1", b"+OK\r\n").await;
    direct.expect("GET msel", b"$1\r\nv\r\n").await;
    let info = string_reply(&c.cmd("CLIENT INFO").await);
    assert!(info.contains(" db=1 "), "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: INFO on a dedicated connection (after SELECT 1, inside a
// WATCH, …) is passed straight to the backend: no # Proxy section, and INFO proxy returns an
// empty string — server/session.rs handle_dedicated skips the INFO handling of handle()
async fn info_on_a_dedicated_connection_has_proxy_section() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    c.expect("SELECT 1", b"+OK\r\n").await;
    let p = string_reply(&c.cmd("INFO proxy").await);
    assert!(p.starts_with("# Proxy\r\n"), "{p:?}");
    let all = string_reply(&c.cmd("INFO").await);
    assert!(all.contains("# Server") && all.contains("# Proxy"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Regression guard; before 007b4ac: commands strata answers itself (PING, ECHO, CLIENT
// ID/SETNAME/…, SELECT 0, multiplexed HELLO) are never counted: their strata_commands_total
// series is created at 0 and stays 0 (server/session.rs local() records no Timing)
async fn metrics_count_local_commands() {
    let env = Env::start().await;
    let mut c = env.raw().await;
    for _ in 0..3 {
        c.expect("PING", b"+PONG\r\n").await;
    }
    c.expect("ECHO x", b"$1\r\nx\r\n").await;
    c.expect("CLIENT SETNAME n", b"+OK\r\n").await;
    let text = metrics_text(env.http()).await;
    assert_eq!(
        metric(&text, r#"strata_commands_total{command="ping"}"#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"strata_commands_total{command="echo"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"strata_commands_total{command="client|setname"}"#),
        Some(1.0),
        "{text}"
    );
}
