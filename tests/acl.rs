//! strata's own users (`auth.mode = "users"`), compared with Redis's ACL:
//! the same users are written into a redis-server with ACL SETUSER and
//! into strata's config, the same commands are replayed against both,
//! and the replies must be the same bytes. Also the deny list, the limits
//! before AUTH, failed-AUTH hold-back, the CIDR lists and ACL SAVE.
#![allow(clippy::unwrap_used)]

mod support;

use support::clients::{show, RawConn};
use support::RedisServer;

use strata::auth::acl::rules::hash_password;
use strata::auth::config::UserConfig;
use strata::auth::AuthMode;

/// (name, password, rules) on both sides.
const USERS: &[(&str, &str, &str)] = &[
    ("default", "defpw", "on ~* &* +@all"),
    (
        "reader",
        "rpw",
        "on ~app:* %R~ro:* %W~wo:* resetchannels &news.* -@all +@read +@connection \
         +set +publish +subscribe +psubscribe +eval +multi +exec +config|get +select|0 -mget",
    ),
    (
        "writer",
        "wpw",
        "on ~* resetchannels +@all -@dangerous -config|set",
    ),
    ("admin", "apw", "on ~* &* +@all"),
    ("off", "opw", "off ~* +@all"),
];

fn user_config(name: &str, pw: &str, rules: &str) -> UserConfig {
    UserConfig {
        name: name.to_string(),
        password_sha256: vec![hash_password(pw.as_bytes())],
        rules: rules.to_string(),
        ..UserConfig::default()
    }
}

/// A reference redis-server with the same users.
async fn reference() -> RedisServer {
    let server = RedisServer::start();
    let mut c = RawConn::connect(&server.addr()).await;
    for (name, pw, rules) in USERS.iter().rev() {
        let line = format!("ACL SETUSER {name} reset >{pw} {rules}");
        c.expect(&line, b"+OK\r\n").await;
    }
    server
}

/// strata in users mode with [`USERS`], in front of `backend`.
async fn strata_users(
    backend: &RedisServer,
    change: impl FnOnce(&mut strata::config::Config),
) -> strata::app::Running {
    let mut config = support::strata::test_config(&backend.addr());
    config.auth.mode = AuthMode::Users;
    config.auth.users = USERS.iter().map(|(n, p, r)| user_config(n, p, r)).collect();
    change(&mut config);
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    running
}

/// The words of a reply, sorted, without RESP lengths and sanitize-payload.
fn words(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let mut w: Vec<String> = text
        .split_whitespace()
        .filter(|w| !w.starts_with(['$', '*']) && !w.contains("sanitize-payload"))
        .map(str::to_string)
        .collect();
    w.sort();
    w
}

struct Pair {
    s: RawConn,
    r: RawConn,
}

impl Pair {
    async fn new(strata: &strata::app::Running, reference: &RedisServer) -> Pair {
        Pair {
            s: RawConn::connect(&strata.addr.to_string()).await,
            r: RawConn::connect(&reference.addr()).await,
        }
    }

    async fn same(&mut self, line: &str) -> String {
        let got = show(&self.s.cmd(line).await);
        let want = show(&self.r.cmd(line).await);
        assert_eq!(got, want, "strata vs redis on {line:?}");
        got
    }

    async fn same_words(&mut self, line: &str) {
        let got = words(&self.s.cmd(line).await);
        let want = words(&self.r.cmd(line).await);
        assert_eq!(got, want, "strata vs redis on {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_form_allows_and_refuses_as_redis_does() {
    let reference = reference().await;
    let backend = RedisServer::start();
    let strata = strata_users(&backend, |c| c.auth.deny.enabled = false).await;
    let mut p = Pair::new(&strata, &reference).await;

    // Not logged in: NOAUTH, and the AUTH failures.
    assert!(p.same("GET app:1").await.starts_with("-NOAUTH"));
    p.same("PING").await;
    assert!(p.same("AUTH reader wrong").await.starts_with("-WRONGPASS"));
    p.same("AUTH nosuch pw").await;
    p.same("AUTH off opw").await;
    p.same("AUTH a b c").await;
    p.same("HELLO 3 AUTH reader wrong").await;

    assert_eq!(p.same("AUTH reader rpw").await, "+OK\\r\\n");
    p.same("ACL WHOAMI").await;
    for line in [
        "SET app:1 v",
        "GET app:1",
        "GET ro:1",
        "SET ro:1 v",
        "SET wo:1 v",
        "GET wo:1",
        "SET wo:1 v GET",
        "GET other",
        "SET other v",
        "DEL app:1",
        "MGET app:1",
        "STRLEN app:1",
        "CONFIG GET maxmemory",
        "CONFIG SET maxmemory 0",
        "SELECT 0",
        "SELECT 1",
        "PUBLISH news.x m",
        "PUBLISH other m",
        "SUBSCRIBE other",
        "PSUBSCRIBE news.a*",
        "EVAL return 1 1 app:1",
        "EVAL return 1 1 other",
        "FLUSHALL",
        "ACL LIST",
        "GET",
        "NOSUCHCMD x",
    ] {
        p.same(line).await;
    }
    // Inside MULTI: refused at queue time, and EXEC aborts.
    p.same("MULTI").await;
    p.same("GET app:1").await;
    p.same("SET other v").await;
    p.same("EXEC").await;

    // Categories taken away, subcommands, keys everywhere.
    assert_eq!(p.same("AUTH writer wpw").await, "+OK\\r\\n");
    for line in [
        "SET k v",
        "GET k",
        "KEYS *",
        "FLUSHDB",
        "CONFIG SET maxmemory 0",
        "CONFIG GET maxmemory",
        "PUBLISH ch m",
        "ACL WHOAMI",
    ] {
        p.same(line).await;
    }

    // ACL commands answered from strata's users, as Redis answers them.
    assert_eq!(p.same("AUTH admin apw").await, "+OK\\r\\n");
    for line in [
        "ACL USERS",
        "ACL DRYRUN reader GET other",
        "ACL DRYRUN reader GET app:1",
        "ACL DRYRUN reader SET ro:1 v",
        "ACL DRYRUN reader DEL x",
        "ACL DRYRUN reader PUBLISH other m",
        "ACL DRYRUN nosuch GET x",
        "ACL CAT",
        "ACL GETUSER nosuch",
        "ACL CAT nosuch",
        "ACL SETUSER temp on >tpw ~t:* +get",
        "ACL SETUSER temp +nosuchcommand",
        "ACL SETUSER temp ~* ~x",
        "ACL SETUSER temp %Q~x",
        "ACL DELUSER default",
        "ACL GETUSER temp",
        "AUTH temp tpw",
        "GET t:1",
        "GET x",
        "SET t:1 v",
        "ACL WHOAMI",
    ] {
        p.same(line).await;
    }
    // Users described back: the same rules (Redis lists single commands
    // in its hash table's order, so the words are compared as sets; the
    // reference's users were made with `reset`, which adds sanitize-payload).
    p.same("AUTH admin apw").await;
    for line in ["ACL GETUSER reader", "ACL GETUSER writer", "ACL LIST"] {
        p.same_words(line).await;
    }
    // A change applies at once to a client logged in as that user.
    let mut q = Pair::new(&strata, &reference).await;
    q.same("AUTH temp tpw").await;
    q.same("GET t:1").await;
    p.same("ACL SETUSER temp -get").await;
    assert!(q.same("GET t:1").await.starts_with("-NOPERM"));
    p.same("ACL DELUSER temp nosuch").await;
    p.same("ACL USERS").await;
    p.same("AUTH temp tpw").await;

    // ACL LOG: the same entries (count, reason, context, object, user),
    // newest first.
    let s_log = log_entries(&p.s.cmd("ACL LOG 100").await);
    let r_log = log_entries(&p.r.cmd("ACL LOG 100").await);
    assert!(s_log.len() > 5, "{s_log:?}");
    assert_eq!(s_log, r_log);
    p.same("ACL LOG RESET").await;
    p.same("ACL LOG").await;
}

/// ACL LOG's entries as (count, reason, context, object, username).
fn log_entries(reply: &[u8]) -> Vec<[String; 5]> {
    let text = String::from_utf8_lossy(reply).into_owned();
    let lines: Vec<&str> = text.split("\r\n").collect();
    let at = |i: usize| lines.get(i).copied().unwrap_or("").to_string();
    (0..lines.len())
        .filter(|&i| lines[i] == "count")
        .map(|i| [at(i + 1), at(i + 5), at(i + 9), at(i + 13), at(i + 17)])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_refuses_and_names_the_rule_unless_admin() {
    let backend = RedisServer::start();
    // Passthrough mode, default config: the deny list is on.
    let mut config = support::strata::test_config(&backend.addr());
    config.auth.deny = strata::auth::config::DenyConfig::default();
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect("SET k v", b"+OK\r\n").await;
    c.expect(
        "FLUSHALL",
        b"-ERR command 'flushall' is refused by strata's deny list (rule 'flushall')\r\n",
    )
    .await;
    c.expect(
        "CONFIG SET maxmemory 0",
        b"-ERR command 'config|set' is refused by strata's deny list (rule 'config|set')\r\n",
    )
    .await;
    c.expect(
        "MODULE LIST",
        b"-ERR command 'module|list' is refused by strata's deny list (rule 'module')\r\n",
    )
    .await;
    assert!(show(&c.cmd("CONFIG GET maxmemory").await).starts_with("*2"));
    c.expect("GET k", b"$1\r\nv\r\n").await;

    // Users mode: an admin user passes, others are refused.
    let mut admin = user_config("ops", "opspw", "on ~* &* +@all");
    admin.admin = true;
    let strata = strata_users(&backend, |c| {
        c.auth.deny = strata::auth::config::DenyConfig::default();
        c.auth.users.push(admin);
    })
    .await;
    let mut c = RawConn::connect(&strata.addr.to_string()).await;
    c.expect("AUTH admin apw", b"+OK\r\n").await;
    assert!(show(&c.cmd("FLUSHDB").await).contains("deny list"));
    // PROXY … is for admin users only.
    c.expect(
        "PROXY SLOWLOG LEN",
        b"-NOPERM this user has no permissions to run the 'proxy' command\r\n",
    )
    .await;
    c.expect("AUTH ops opspw", b"+OK\r\n").await;
    c.expect("FLUSHDB", b"+OK\r\n").await;
    c.expect("PROXY SLOWLOG LEN", b":0\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_limits_are_redis_s() {
    // Redis with a password, straight; strata in users mode.
    let reference = reference().await;
    let backend = RedisServer::start();
    let strata = strata_users(&backend, |_| {}).await;
    let many: String = format!("*11\r\n$3\r\nGET\r\n{}", "$1\r\nx\r\n".repeat(10));
    let big = format!("*2\r\n$4\r\nAUTH\r\n$16385\r\n{}\r\n", "x".repeat(16385));
    for bytes in [many.as_bytes(), big.as_bytes()] {
        let mut s = RawConn::connect(&strata.addr.to_string()).await;
        let mut r = RawConn::connect(&reference.addr()).await;
        s.send(bytes).await;
        r.send(bytes).await;
        let got = show(&s.read_frame().await);
        let want = show(&r.read_frame().await);
        assert_eq!(got, want);
        assert!(got.contains("unauthenticated"), "{got}");
        s.expect_closed().await;
        r.expect_closed().await;
    }
    // Logged in, the caps are gone.
    let mut s = RawConn::connect(&strata.addr.to_string()).await;
    s.expect("AUTH admin apw", b"+OK\r\n").await;
    s.send(many.replace("GET", "DEL").as_bytes()).await;
    assert_eq!(show(&s.read_frame().await), ":0\\r\\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_auth_is_held_back_per_address() {
    let backend = RedisServer::start();
    let strata = strata_users(&backend, |c| {
        c.auth.limits.auth_failures_allowed = 2;
        c.auth.limits.auth_penalty_ms = 600_000;
    })
    .await;
    let mut c = RawConn::connect(&strata.addr.to_string()).await;
    for _ in 0..3 {
        assert!(show(&c.cmd("AUTH reader nope").await).starts_with("-WRONGPASS"));
    }
    // Held back now, even with the right password, from any connection
    // of this address.
    let mut d = RawConn::connect(&strata.addr.to_string()).await;
    c.expect(
        "AUTH reader rpw",
        b"-ERR too many failed AUTH attempts from this address; try again later\r\n",
    )
    .await;
    d.expect(
        "AUTH reader rpw",
        b"-ERR too many failed AUTH attempts from this address; try again later\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidr_lists_close_connections_from_outside() {
    let backend = RedisServer::start();
    for (allow, deny, admitted) in [
        (vec![], vec!["127.0.0.0/8"], false),
        (vec!["10.0.0.0/8"], vec![], false),
        (vec!["127.0.0.0/8"], vec![], true),
    ] {
        let mut config = support::strata::test_config(&backend.addr());
        config.auth.limits.allow_cidrs = allow.iter().map(|s| s.parse().unwrap()).collect();
        config.auth.limits.deny_cidrs = deny.iter().map(|s| s.parse().unwrap()).collect();
        let running = support::strata::start_with(config).await;
        let mut c = RawConn::connect(&running.addr.to_string()).await;
        if admitted {
            c.expect("PING", b"+PONG\r\n").await;
        } else {
            c.send(b"PING\r\n").await;
            c.expect_closed().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_save_writes_users_back_keeping_the_rest() {
    let backend = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    let text = format!(
        "# kept comment\n[server]\nlisten = \"127.0.0.1:0\"\n\n[backend]\naddress = \"{}\"\n\n\
         [telemetry]\nlisten = \"127.0.0.1:0\"\n\n[auth]\nmode = \"users\"\n\n\
         [[auth.users]]\nname = \"admin\"\npassword_sha256 = [\"{}\"]\nrules = \"on ~* &* +@all\"\n",
        backend.addr(),
        hash_password(b"apw")
    );
    std::fs::write(&path, &text).unwrap();
    let config = strata::config::Config::load(&path).unwrap();
    let running = support::strata::start_with(config).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect("AUTH admin apw", b"+OK\r\n").await;
    c.expect("ACL SETUSER app on >apppw ~app:* +@read", b"+OK\r\n")
        .await;
    c.expect("ACL SAVE", b"+OK\r\n").await;
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.starts_with("# kept comment\n[server]"), "{saved}");
    assert!(!saved.contains("apppw"), "plain password in {saved}");
    let again = strata::config::Config::load(&path).unwrap();
    let app = again.auth.users.iter().find(|u| u.name == "app").unwrap();
    assert_eq!(app.password_sha256, vec![hash_password(b"apppw")]);
    assert_eq!(app.rules, "on ~app:* resetchannels -@all +@read");
}

/// `max_connections` per strata user: the next AUTH as that user is
/// refused with Redis's maxclients words (not counted as a failed AUTH),
/// other users are not affected, and a place is released when a client
/// logs in as someone else, RESETs or disconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_connection_limits_refuse_then_release() {
    const FULL: &[u8] = b"-ERR max number of clients reached for this user\r\n";
    let backend = RedisServer::start();
    let strata = strata_users(&backend, |c| {
        c.auth.limits.auth_failures_allowed = 2;
        c.auth.limits.auth_penalty_ms = 600_000;
        for u in &mut c.auth.users {
            if u.name == "writer" {
                u.max_connections = 2;
            }
        }
    })
    .await;
    let addr = strata.addr.to_string();
    let mut a = RawConn::connect(&addr).await;
    let mut b = RawConn::connect(&addr).await;
    let mut c = RawConn::connect(&addr).await;
    a.expect("AUTH writer wpw", b"+OK\r\n").await;
    b.expect("AUTH writer wpw", b"+OK\r\n").await;
    // Full: refused, however often (not a failed AUTH to hold back).
    for _ in 0..4 {
        c.expect("AUTH writer wpw", FULL).await;
    }
    c.expect("HELLO 3 AUTH writer wpw", FULL).await;
    // c is not logged in; another user is not limited.
    c.expect("GET k", b"-NOAUTH Authentication required.\r\n")
        .await;
    c.expect("AUTH reader rpw", b"+OK\r\n").await;
    // AUTH again as the same user keeps its place.
    a.expect("AUTH writer wpw", b"+OK\r\n").await;
    // a logs in as another user: its place is free.
    a.expect("AUTH reader rpw", b"+OK\r\n").await;
    c.expect("AUTH writer wpw", b"+OK\r\n").await;
    a.expect("AUTH writer wpw", FULL).await;
    // RESET gives it back.
    b.expect("RESET", b"+RESET\r\n").await;
    a.expect("AUTH writer wpw", b"+OK\r\n").await;
    // A client that disconnects gives it back (once strata sees it go).
    drop(c);
    let mut d = RawConn::connect(&addr).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reply = d.cmd("AUTH writer wpw").await;
        if reply == b"+OK\r\n" {
            break;
        }
        assert_eq!(show(&reply), show(FULL));
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never released"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    b.expect("AUTH writer wpw", FULL).await;
}

/// ACL GENPASS as Redis answers it: 256 bits (64 hex characters) by
/// default, `bits` rounded up to hex characters, the same errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_genpass_answers_as_redis() {
    let redis = reference().await;
    let backend = RedisServer::start();
    let strata = strata_users(&backend, |_| {}).await;
    let mut theirs = RawConn::connect(&redis.addr()).await;
    let mut ours = RawConn::connect(&strata.addr.to_string()).await;
    theirs.expect("AUTH admin apw", b"+OK\r\n").await;
    ours.expect("AUTH admin apw", b"+OK\r\n").await;
    let hex = |reply: &[u8]| -> String {
        let text = String::from_utf8(reply.to_vec()).unwrap();
        let (len, body) = text.trim_end().split_once("\r\n").unwrap();
        assert_eq!(len, format!("${}", body.len()), "{text}");
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{text}"
        );
        body.to_string()
    };
    for (line, chars) in [
        ("ACL GENPASS", 64),
        ("ACL GENPASS 1", 1),
        ("ACL GENPASS 5", 2),
        ("ACL GENPASS 130", 33),
        ("ACL GENPASS 4096", 1024),
    ] {
        assert_eq!(hex(&theirs.cmd(line).await).len(), chars, "redis: {line}");
        assert_eq!(hex(&ours.cmd(line).await).len(), chars, "strata: {line}");
    }
    assert_ne!(
        hex(&ours.cmd("ACL GENPASS").await),
        hex(&ours.cmd("ACL GENPASS").await)
    );
    for line in [
        "ACL GENPASS 0",
        "ACL GENPASS -5",
        "ACL GENPASS 4097",
        "ACL GENPASS x",
        "ACL GENPASS 1 2",
    ] {
        let want = theirs.cmd(line).await;
        assert!(want.starts_with(b"-"), "{}", show(&want));
        assert_eq!(show(&ours.cmd(line).await), show(&want), "{line}");
    }
}

/// ACL LOAD as Redis 7.0 does it: the users file read again (strata's
/// config file, password files included), all or none; the clients of
/// every user but `default` disconnected (Redis frees those users), the
/// caller once answered. Without a file, Redis's words. Compared with a
/// redis-server started with an `aclfile`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_load_reads_the_users_again_as_redis() {
    let dir = tempfile::tempdir().unwrap();
    // Redis, with an aclfile.
    let aclfile = dir.path().join("users.acl");
    std::fs::write(&aclfile, "user default on nopass ~* &* +@all\nuser app on >apw ~* &* +@all\nuser ops on >opspw ~* &* +@all\n").unwrap();
    let redis = RedisServer::start_with(&["--aclfile", aclfile.to_str().unwrap()]);
    // strata, from a config file with the same users.
    let backend = RedisServer::start();
    let path = dir.path().join("strata.toml");
    let users = |app_pw: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[backend]\naddress = \"{}\"\n[telemetry]\nlisten = \"\"\n\
             [auth]\nmode = \"users\"\n\
             [[auth.users]]\nname = \"default\"\nrules = \"on nopass ~* &* +@all\"\n\
             [[auth.users]]\nname = \"app\"\npassword_sha256 = [\"{}\"]\nrules = \"on ~* &* +@all\"\n\
             [[auth.users]]\nname = \"ops\"\npassword_sha256 = [\"{}\"]\nrules = \"on ~* &* +@all\"\n",
            backend.addr(),
            hash_password(app_pw.as_bytes()),
            hash_password(b"opspw"),
        )
    };
    std::fs::write(&path, users("apw")).unwrap();
    let strata = support::strata::start_with(strata::config::Config::load(&path).unwrap()).await;

    for (addr, is_redis) in [(redis.addr(), true), (strata.addr.to_string(), false)] {
        let mut app = RawConn::connect(&addr).await;
        let mut ops = RawConn::connect(&addr).await;
        let mut anon = RawConn::connect(&addr).await;
        app.expect("AUTH app apw", b"+OK\r\n").await;
        ops.expect("AUTH ops opspw", b"+OK\r\n").await;
        anon.expect("PING", b"+PONG\r\n").await;
        // The file now says app's password is apw2.
        if is_redis {
            std::fs::write(&aclfile, "user default on nopass ~* &* +@all\nuser app on >apw2 ~* &* +@all\nuser ops on >opspw ~* &* +@all\n").unwrap();
        } else {
            std::fs::write(&path, users("apw2")).unwrap();
        }
        // The caller is answered, then it and app's client are closed;
        // the default user's client stays.
        ops.expect("ACL LOAD", b"+OK\r\n").await;
        ops.expect_closed().await;
        app.expect_closed().await;
        anon.expect("PING", b"+PONG\r\n").await;
        let mut next = RawConn::connect(&addr).await;
        next.expect(
            "AUTH app apw",
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        )
        .await;
        next.expect("AUTH app apw2", b"+OK\r\n").await;
    }

    // A file with an error: refused with Redis's warning, nothing changed.
    std::fs::write(
        &path,
        users("apw3").replace(
            "+@all\"\n[[auth.users]]\nname = \"ops\"",
            "+@nosuchcategory\"\n[[auth.users]]\nname = \"ops\"",
        ),
    )
    .unwrap();
    let mut c = RawConn::connect(&strata.addr.to_string()).await;
    let err = String::from_utf8(c.cmd("ACL LOAD").await).unwrap();
    assert!(err.starts_with("-ERR ") && err.ends_with("WARNING: ACL errors detected, no change to the previously active ACL rules was performed\r\n"), "{err}");
    c.expect("AUTH app apw2", b"+OK\r\n").await;

    // Without a file: Redis's words.
    let plain_redis = RedisServer::start();
    let no_file = strata_users(&backend, |_| {}).await;
    let mut theirs = RawConn::connect(&plain_redis.addr()).await;
    let mut ours = RawConn::connect(&no_file.addr.to_string()).await;
    ours.expect("AUTH admin apw", b"+OK\r\n").await;
    assert_eq!(
        show(&ours.cmd("ACL LOAD").await),
        show(&theirs.cmd("ACL LOAD").await)
    );
}
