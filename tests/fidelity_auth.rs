//! AUTH through strata, while strata has no users of its own: the
//! backend's ACL decides, and what a client sees is what it would see on
//! Redis. Each exchange is replayed against a plain redis-server set up
//! the same way (the same ACL users, the same requirepass) and through
//! strata, and the replies must be the same bytes.
//!
//! Regression guard; before the fix strata answered AUTH itself as a Redis
//! without requirepass (server/local.rs `auth`): ACL users got WRONGPASS,
//! commands ran as strata's own user, a backend with requirepass was open
//! to clients that never logged in, CLIENT KILL USER knew only `default`,
//! and a pooled dedicated connection came back from RESET logged out.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::clients::{show, RawConn};
use support::RedisServer;

/// The backend password strata is given (`backend.password_env`).
const PW_ENV: &str = "STRATA_TEST_FIDELITY_AUTH_PW";

/// ACL users on both servers: alice may do everything; `limited` only
/// `allowed:*` keys, no SET and no CLIENT.
const USERS: &[&str] = &[
    "ACL SETUSER alice on >alicepw ~* &* +@all",
    "ACL SETUSER limited on >limitedpw ~allowed:* +@all -set -client",
];

/// A redis-server with the test's ACL users, and with `requirepass`.
async fn server(requirepass: Option<&str>) -> RedisServer {
    let server = RedisServer::start();
    let mut c = RawConn::connect(&server.addr()).await;
    for line in USERS {
        c.expect(line, b"+OK\r\n").await;
    }
    if let Some(pw) = requirepass {
        c.expect(&format!("CONFIG SET requirepass {pw}"), b"+OK\r\n")
            .await;
    }
    server
}

/// strata in front of `backend`, given `password` as backend.password_env.
async fn strata(backend: &RedisServer, password: Option<&str>) -> strata::app::Running {
    let mut config = support::strata::test_config(&backend.addr());
    if let Some(pw) = password {
        std::env::set_var(PW_ENV, pw);
        config.backend.password_env = Some(PW_ENV.to_string());
    }
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    running
}

/// A client of strata and one of the reference, side by side.
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

    /// Sends `line` to both; the replies must be the same bytes.
    async fn same(&mut self, line: &str) -> Vec<u8> {
        let got = self.s.cmd(line).await;
        let want = self.r.cmd(line).await;
        assert_eq!(show(&got), show(&want), "strata vs redis on {line:?}");
        got
    }

    /// Sends `line` to both; the replies must start alike (HELLO's map
    /// holds each server's own client id).
    async fn alike(&mut self, line: &str, prefix: &str) {
        let got = show(&self.s.cmd(line).await);
        let want = show(&self.r.cmd(line).await);
        assert!(got.starts_with(prefix), "strata on {line:?}: {got}");
        assert!(want.starts_with(prefix), "redis on {line:?}: {want}");
    }

    /// The `user=` field of CLIENT INFO, on both.
    async fn same_user_field(&mut self) -> String {
        let s = field(&self.s.cmd("CLIENT INFO").await, "user");
        let r = field(&self.r.cmd("CLIENT INFO").await, "user");
        assert_eq!(s, r, "CLIENT INFO user=");
        s
    }
}

/// A field of a CLIENT INFO line.
fn field(info: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(info);
    text.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {name}= in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_acl_users_noperm_whoami_reset_match_redis() {
    let reference = server(None).await;
    let backend = server(None).await;
    let strata = strata(&backend, None).await;
    let mut p = Pair::new(&strata, &reference).await;

    // No requirepass: the one-argument form is refused, in Redis's words.
    p.same("AUTH somepw").await;
    p.same("AUTH").await;
    p.same("AUTH a b c").await;
    p.same("AUTH alice wrong").await;
    p.same("AUTH nosuchuser pw").await;
    assert_eq!(p.same("ACL WHOAMI").await, b"$7\r\ndefault\r\n");
    assert_eq!(p.same_user_field().await, "default");

    // An ACL user: OK, and the client is that user from then on.
    assert_eq!(p.same("AUTH alice alicepw").await, b"+OK\r\n");
    assert_eq!(p.same("ACL WHOAMI").await, b"$5\r\nalice\r\n");
    assert_eq!(p.same_user_field().await, "alice");
    p.same("SET forbidden:k v").await;

    // A restricted user gets Redis's NOPERM replies.
    p.same("AUTH limited limitedpw").await;
    assert_eq!(p.same("ACL WHOAMI").await, b"$7\r\nlimited\r\n");
    let noperm = p.same("GET forbidden:k").await;
    assert!(show(&noperm).starts_with("-NOPERM"), "{}", show(&noperm));
    p.same("SET allowed:k v").await;
    p.same("GET allowed:k").await;
    p.same("ACL WHOAMI").await;
    // On a dedicated connection too (MULTI), as that user.
    p.same("MULTI").await;
    p.same("GET forbidden:k").await;
    p.same("ACL WHOAMI").await;
    p.same("EXEC").await;
    // Channels are refused too (Redis 7.0: users start with resetchannels).
    p.same("SUBSCRIBE ch").await;
    p.same("RESET").await;
    p.same("AUTH limited limitedpw").await;
    // A failed AUTH leaves the client who it was.
    p.same("AUTH alice wrong").await;
    p.same("ACL WHOAMI").await;

    // RESET: back to the default user.
    p.same("RESET").await;
    assert_eq!(p.same("ACL WHOAMI").await, b"$7\r\ndefault\r\n");
    p.same("GET forbidden:k").await;
    assert_eq!(p.same_user_field().await, "default");

    // HELLO … AUTH: a failure switches neither protocol nor name.
    p.same("HELLO 3 AUTH alice wrong").await;
    p.same("HELLO 3 AUTH nosuchuser pw SETNAME n1").await;
    p.same("GET nope").await; // still RESP2: $-1
    p.same("CLIENT GETNAME").await;
    p.same("ACL WHOAMI").await;
    p.alike(
        "HELLO 3 AUTH alice alicepw SETNAME n2",
        "%7\\r\\n$6\\r\\nserver",
    )
    .await;
    p.same("GET nope").await; // RESP3 now: _
    p.same("CLIENT GETNAME").await;
    assert_eq!(p.same("ACL WHOAMI").await, b"$5\r\nalice\r\n");
    p.alike("HELLO 2 AUTH limited limitedpw", "*14\\r\\n$6\\r\\nserver")
        .await;
    p.same("ACL WHOAMI").await;
    p.same("SET allowed:x 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_noauth_until_auth_as_redis() {
    let reference = server(Some("secret")).await;
    let backend = server(Some("secret")).await;
    let strata = strata(&backend, Some("secret")).await;
    let mut p = Pair::new(&strata, &reference).await;

    // Before AUTH: NOAUTH for everything but the NO_AUTH commands, after
    // Redis's own unknown-command and arity checks.
    assert_eq!(
        p.same("GET k").await,
        b"-NOAUTH Authentication required.\r\n"
    );
    p.same("PING").await;
    p.same("SET k v").await;
    p.same("ACL WHOAMI").await;
    p.same("CLIENT ID").await;
    p.same("SELECT 1").await;
    p.same("MULTI").await;
    p.same("SUBSCRIBE ch").await;
    p.same("NOSUCHCOMMAND a b").await;
    p.same("GET").await;
    p.same("HELLO 3").await;
    p.same("HELLO 3 AUTH default wrong").await;
    p.same("AUTH wrong").await;
    p.same("AUTH alice wrong").await;
    p.same("GET k").await;

    // AUTH with the password: then served.
    assert_eq!(p.same("AUTH secret").await, b"+OK\r\n");
    p.same("GET k").await;
    p.same("ACL WHOAMI").await;
    p.same("SET k v").await;
    p.same("MULTI").await;
    p.same("INCR n").await;
    p.same("EXEC").await;
    // Again: the pooled connection came back from RESET logged in.
    p.same("MULTI").await;
    p.same("INCR n").await;
    p.same("EXEC").await;

    // RESET logs out again.
    p.same("RESET").await;
    p.same("GET k").await;
    // HELLO with AUTH logs in and switches at once.
    p.alike("HELLO 3 AUTH default secret", "%7\\r\\n$6\\r\\nserver")
        .await;
    p.same("GET k").await;
    p.same("RESET").await;
    // An ACL user works under requirepass too.
    p.same("AUTH alice alicepw").await;
    p.same("ACL WHOAMI").await;
    p.same("GET k").await;
    // QUIT is allowed unauthenticated, as in Redis.
    p.same("RESET").await;
    p.same("QUIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_user_as_redis() {
    let reference = server(None).await;
    let backend = server(None).await;
    let strata = strata(&backend, None).await;
    let mut admin = Pair::new(&strata, &reference).await;
    let mut alices = Vec::new();
    for _ in 0..2 {
        let mut a = Pair::new(&strata, &reference).await;
        a.same("AUTH alice alicepw").await;
        alices.push(a);
    }
    let mut other = Pair::new(&strata, &reference).await;
    other.same("AUTH limited limitedpw").await;

    admin.same("CLIENT KILL USER nosuchuser").await;
    assert_eq!(admin.same("CLIENT KILL USER alice").await, b":2\r\n");
    for mut a in alices {
        a.s.expect_closed().await;
        a.r.expect_closed().await;
    }
    // Only that user's clients went; the limited user cannot kill.
    other.same("ACL WHOAMI").await;
    other.same("CLIENT KILL USER default").await;
    admin.same("CLIENT KILL USER alice").await;
    admin.same("ACL WHOAMI").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_requirepass_through_strata_keeps_others_served() {
    let backend = server(Some("secret")).await;
    let reference = server(Some("secret")).await;
    let strata = strata(&backend, Some("secret")).await;
    let mut a = Pair::new(&strata, &reference).await;
    let mut b = Pair::new(&strata, &reference).await;
    a.same("AUTH secret").await;
    b.same("AUTH secret").await;
    b.same("SET k v").await;

    // One client changes the backend's password.
    assert_eq!(a.same("CONFIG SET requirepass newpw").await, b"+OK\r\n");

    // Clients already logged in are still served, on strata's existing
    // connections, as they would be on Redis.
    b.same("GET k").await;
    b.same("SET k w").await;
    a.same("GET k").await;
    // What differs, as README says: a dedicated connection strata must
    // open now logs in with backend.password_env, which is stale.
    let multi = show(&b.s.cmd("MULTI").await);
    assert!(multi.starts_with("-ERR backend unavailable"), "{multi}");
    b.same("GET k").await;
    // A new client must log in with the new password, as on Redis.
    let mut c = Pair::new(&strata, &reference).await;
    c.same("GET k").await;
    c.same("AUTH secret").await;
    c.same("AUTH newpw").await;
    c.same("GET k").await;
    // A client logged in with the new password has connections logged in
    // with it: the dedicated connection strata opens for it works.
    c.same("MULTI").await;
    c.same("GET k").await;
    c.same("EXEC").await;
    c.same("SELECT 9").await;
    c.same("SET k9 v").await;
    c.same("GET k9").await;
    // strata's health check (on its own connection) still passes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let http = strata.http_addr.unwrap();
    loop {
        let (status, _) = support::strata::http_get(http, "/health/ready")
            .await
            .unwrap();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "strata not ready after CONFIG SET"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-node Redis Cluster owning every slot, with the test's ACL users:
/// the reference for strata in cluster mode.
async fn single_node_cluster() -> RedisServer {
    let server = RedisServer::start_with(&["--cluster-enabled", "yes"]);
    let mut c = RawConn::connect(&server.addr()).await;
    c.expect("CLUSTER ADDSLOTSRANGE 0 16383", b"+OK\r\n").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&c.cmd("CLUSTER INFO").await).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "one-node cluster never ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in USERS {
        c.expect(line, b"+OK\r\n").await;
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_acl_users_as_redis() {
    let reference = single_node_cluster().await;
    let cluster = support::cluster::shared().await;
    for node in cluster.addrs() {
        for line in USERS {
            let args: Vec<&str> = line.split_whitespace().collect();
            cluster.must(&node, &args);
        }
    }
    let strata = support::cluster_strata::start(&cluster).await;
    let mut p = Pair::new(&strata, &reference).await;

    p.same("AUTH alice wrong").await;
    p.same("HELLO 3 AUTH alice wrong").await;
    assert_eq!(p.same("AUTH alice alicepw").await, b"+OK\r\n");
    assert_eq!(p.same("ACL WHOAMI").await, b"$5\r\nalice\r\n");
    assert_eq!(p.same_user_field().await, "alice");
    // Keys in every slot range: each node runs them as alice.
    for i in 0..6 {
        p.same(&format!("SET forbidden:{i} v")).await;
    }
    p.same("AUTH limited limitedpw").await;
    for i in 0..6 {
        let noperm = p.same(&format!("GET forbidden:{i}")).await;
        assert!(show(&noperm).starts_with("-NOPERM"), "{}", show(&noperm));
        p.same(&format!("SET allowed:{i} v")).await;
        p.same(&format!("GET allowed:{i}")).await;
    }
    p.same("ACL WHOAMI").await;
    p.same("RESET").await;
    assert_eq!(p.same("ACL WHOAMI").await, b"$7\r\ndefault\r\n");
    p.same("GET forbidden:1").await;

    let mut alice = Pair::new(&strata, &reference).await;
    alice.same("AUTH alice alicepw").await;
    p.same("CLIENT KILL USER nosuchuser").await;
    assert_eq!(p.same("CLIENT KILL USER alice").await, b":1\r\n");
    alice.s.expect_closed().await;
    alice.r.expect_closed().await;
    for node in cluster.addrs() {
        cluster.must(&node, &["ACL", "DELUSER", "alice", "limited"]);
    }
}

/// strata's own handshake on a restricted user's connections (learning the
/// backend id of a dedicated connection) must not be refused by that
/// user's ACL and logged in ACL LOG, which the application reads: the log
/// holds the client's own denials only, as on Redis (redis-py's
/// `test_acl_log` counts them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_log_holds_only_the_clients_own_denials() {
    let reference = server(None).await;
    let backend = server(None).await;
    let strata = strata(&backend, None).await;
    let mut admin = Pair::new(&strata, &reference).await;
    admin.same("ACL LOG RESET").await;
    let mut p = Pair::new(&strata, &reference).await;
    p.same("AUTH limited limitedpw").await;
    // A dedicated connection logged in as `limited` (no CLIENT allowed).
    p.same("SELECT 9").await;
    p.same("GET allowed:1").await;
    p.same("GET denied:1").await;
    p.same("MULTI").await;
    p.same("GET allowed:1").await;
    p.same("EXEC").await;
    // Only the one denial of the client's own.
    let count = |log: &[u8]| {
        String::from_utf8_lossy(log)
            .lines()
            .next()
            .map(str::to_string)
    };
    let s = admin.s.cmd("ACL LOG").await;
    let r = admin.r.cmd("ACL LOG").await;
    assert_eq!(
        count(&s),
        count(&r),
        "ACL LOG: strata {} vs redis {}",
        show(&s),
        show(&r)
    );
    assert_eq!(count(&r).as_deref(), Some("*1"));
}
