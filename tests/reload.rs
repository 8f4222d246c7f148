//! Hot reload (`app/reload.rs`): a reload under pipelined load changing
//! timeouts, a transform rule and the backend address (to a replica just
//! promoted) drops no connection and fails no command; a broken file
//! leaves everything as it was; what needs a restart is named; SIGHUP
//! reloads the real binary; CONFIG SET and REWRITE keep the file's
//! comments.
#![allow(clippy::unwrap_used)]
mod support;

use std::io::Write as _;
use std::time::{Duration, Instant};

use strata::app::reload::Origin;
use support::clients::RawConn;
use support::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config_text(backend: &str, timeout_ms: u64, compress_z: bool, comment: &str) -> String {
    let mut text = format!(
        "# {comment}\n[server]\nlisten = \"127.0.0.1:0\"\nclient_idle_timeout_secs = 0 # never\n\
         [backend]\naddress = \"{backend}\"\nrequest_timeout_ms = {timeout_ms}\nconnect_timeout_ms = 500\n\
         health_interval_ms = 100\n[telemetry]\nlisten = \"127.0.0.1:0\"\n[auth.deny]\nenabled = false\n"
    );
    if compress_z {
        text.push_str("[[transform]]\npattern = \"z:*\"\ncompress = \"lz4\"\nmin_size = 16\n");
    }
    text
}

fn write(path: &std::path::Path, text: &str) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn start(path: &std::path::Path) -> strata::app::Running {
    let config = strata::config::Config::load(path).unwrap();
    let origin = Origin {
        path: Some(path.to_path_buf()),
        ..Default::default()
    };
    let running = strata::app::start_from(config, origin).await.unwrap();
    support::strata::wait_ready(&running).await;
    running
}

/// What the pipelining client saw.
#[derive(Debug, Default)]
struct Seen {
    commands: u64,
    errors: Vec<String>,
    dropped: bool,
}

/// Pipelines batches of 100 SET/GET on one connection until `stop`;
/// counts error replies and whether the connection was lost.
async fn pipeline(addr: String, stop: tokio::sync::watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = Vec::new();
    let mut round = 0u64;
    while !*stop.borrow() {
        let mut batch = Vec::new();
        for i in 0..50 {
            let key = format!("z:{}", (round * 50 + i) % 1000);
            let value = format!("value-{round}-{i}-{}", "x".repeat(40));
            batch.extend(support::clients::encode(&[
                b"SET",
                key.as_bytes(),
                value.as_bytes(),
            ]));
            batch.extend(support::clients::encode(&[b"GET", key.as_bytes()]));
        }
        if conn.write_all(&batch).await.is_err() {
            seen.dropped = true;
            return seen;
        }
        let mut frames = 0;
        while frames < 100 {
            while let Some(len) = support::clients::frame_len(&buf) {
                let frame: Vec<u8> = buf.drain(..len).collect();
                if frame.first() == Some(&b'-') {
                    seen.errors
                        .push(String::from_utf8_lossy(&frame).into_owned());
                }
                frames += 1;
                if frames == 100 {
                    break;
                }
            }
            if frames == 100 {
                break;
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => {
                    seen.dropped = true;
                    return seen;
                }
            }
        }
        seen.commands += 100;
        round += 1;
    }
    seen
}

/// `DEBUG SLEEP 0.01` every 20 ms or so until `stop`.
async fn slow_commands(addr: String, stop: tokio::sync::watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    let mut conn = RawConn::connect(&addr).await;
    while !*stop.borrow() {
        let reply = conn.cmd("DEBUG SLEEP 0.01").await;
        if reply != b"+OK\r\n" {
            seen.errors
                .push(String::from_utf8_lossy(&reply).into_owned());
        }
        seen.commands += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_drop_nothing_and_follow_a_promoted_replica() {
    let primary = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let replica = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let mut r = RawConn::connect(&replica.addr()).await;
    let (host, port) = primary
        .addr()
        .split_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    r.expect(&format!("REPLICAOF {host} {port}"), b"+OK\r\n")
        .await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(
        &path,
        &config_text(&primary.addr(), 1990, false, "reload test"),
    );
    let running = start(&path).await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(pipeline(running.addr.to_string(), stop_rx.clone()));
    // A second client keeps a slow command in flight, so that reloads
    // land while a reply is owed by the old backend.
    let slow = tokio::spawn(slow_commands(running.addr.to_string(), stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut backend = primary.addr();
    for i in 0..20u64 {
        if i == 10 {
            // The replica is promoted; the reload points strata at it.
            let mut r = RawConn::connect(&replica.addr()).await;
            r.expect("REPLICAOF NO ONE", b"+OK\r\n").await;
            backend = replica.addr();
        }
        let text = config_text(&backend, 2000 + i * 10, i % 2 == 1, &format!("reload {i}"));
        write(&path, &text);
        let report = running.reloader.reload_file("test").await.unwrap();
        assert!(report.restart_needed.is_empty(), "{report:?}");
        assert!(
            report
                .applied
                .iter()
                .any(|k| k == "backend.request_timeout_ms"),
            "{report:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    let seen = load.await.unwrap();
    let slow = slow.await.unwrap();
    eprintln!(
        "slow client: {} DEBUG SLEEPs, {} errors",
        slow.commands,
        slow.errors.len()
    );
    assert!(
        !slow.dropped && slow.errors.is_empty(),
        "slow client dropped: {}, errors: {:?}",
        slow.dropped,
        &slow.errors[..slow.errors.len().min(2)]
    );
    eprintln!(
        "20 reloads in {elapsed:?}; the client ran {} commands ({:.0}/s), {} errors, dropped: {}",
        seen.commands,
        seen.commands as f64 / elapsed.as_secs_f64(),
        seen.errors.len(),
        seen.dropped
    );
    assert!(!seen.dropped, "the client's connection was dropped");
    assert!(
        seen.errors.is_empty(),
        "errors: {:?}",
        &seen.errors[..seen.errors.len().min(5)]
    );
    assert!(
        seen.commands > 1000,
        "too little load to mean anything: {}",
        seen.commands
    );
    assert!(
        slow.commands > 20,
        "too few slow commands: {}",
        slow.commands
    );
    // Writes now reach the promoted replica.
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect("SET after-switch 1", b"+OK\r\n").await;
    let mut direct = RawConn::connect(&replica.addr()).await;
    direct.expect("GET after-switch", b"$1\r\n1\r\n").await;
    // And the transform rule in force (the last reload, 19, has it) compresses.
    let value = "y".repeat(200);
    c.expect(&format!("SET z:check {value}"), b"+OK\r\n").await;
    let stored = direct.cmd("STRLEN z:check").await;
    assert_ne!(
        stored, b":200\r\n",
        "z:* values are not compressed after the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_leaves_everything_as_it_was_and_restart_keys_are_named() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(
        &path,
        &config_text(&redis.addr(), 2000, true, "broken test"),
    );
    let running = start(&path).await;

    // Not TOML; then TOML that does not validate: both refused.
    write(&path, "[server\nlisten = ");
    let err = running.reloader.reload_file("test").await.unwrap_err();
    assert!(err.contains("strata.toml"), "{err}");
    write(
        &path,
        &config_text(&redis.addr(), 2000, true, "bad").replace("min_size = 16", "min_size = -1"),
    );
    assert!(running.reloader.reload_file("test").await.is_err());
    write(
        &path,
        &config_text("127.0.0.1:1", 2000, true, "unreachable backend"),
    );
    let err = running.reloader.reload_file("test").await.unwrap_err();
    assert!(err.contains("did not answer"), "{err}");
    // Everything as before: the same backend, the rule still in force.
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    c.expect(&format!("SET z:k {}", "q".repeat(100)), b"+OK\r\n")
        .await;
    let mut direct = RawConn::connect(&redis.addr()).await;
    assert_ne!(direct.cmd("STRLEN z:k").await, b":100\r\n");

    // The listener's address needs a restart, and the reload says so.
    let moved = config_text(&redis.addr(), 2000, true, "moved")
        .replace("127.0.0.1:0\"\nclient", "127.0.0.1:1\"\nclient");
    write(&path, &moved);
    let report = running.reloader.reload_file("test").await.unwrap();
    assert_eq!(report.restart_needed, vec!["server.listen".to_string()]);
    let metrics = support::clients::metrics_text(running.http_addr.unwrap()).await;
    assert_eq!(
        support::clients::metric(&metrics, "strata_config_reload_failures_total"),
        Some(3.0)
    );
    assert_eq!(
        support::clients::metric(&metrics, "strata_config_reloads_total"),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_applies_and_rewrite_keeps_comments() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(
        &path,
        &config_text(&redis.addr(), 2000, false, "keep this comment"),
    );
    let running = start(&path).await;

    running
        .reloader
        .set(&[("server.max_clients_per_address".into(), "1".into())])
        .await
        .unwrap();
    // In force for new clients: a second one from 127.0.0.1 is refused.
    let mut a = RawConn::connect(&running.addr.to_string()).await;
    a.expect("PING", b"+PONG\r\n").await;
    let mut b = RawConn::connect(&running.addr.to_string()).await;
    b.expect(
        "PING",
        b"-ERR max number of clients reached for this address\r\n",
    )
    .await;
    // A bad value is refused whole.
    assert!(running
        .reloader
        .set(&[
            ("server.maxclients".into(), "0".into()),
            ("server.max_clients_per_address".into(), "5".into())
        ])
        .await
        .is_err());
    let got = running.reloader.get(b"server.max_clients*").await;
    assert_eq!(
        got,
        vec![(
            "server.max_clients_per_address".to_string(),
            "1".to_string()
        )]
    );

    running.reloader.rewrite().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("# keep this comment"), "{text}");
    assert!(
        text.contains("client_idle_timeout_secs = 0 # never"),
        "{text}"
    );
    assert!(text.contains("max_clients_per_address = 1"), "{text}");
    let reread = strata::config::Config::load(&path).unwrap();
    assert_eq!(reread.server.max_clients_per_address, 1);
}

#[test]
fn sighup_reloads_the_binary() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(&path, "[server]\nmax_clients_per_address = 0\n");
    let strata =
        support::strata::StrataProcess::spawn(&redis.addr(), &["--config", path.to_str().unwrap()]);
    write(&path, "[server]\nmax_clients_per_address = 1\n");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &strata.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    support::wait_until_ok(
        "the reload logged",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let logs = strata.logs.lock().unwrap().clone();
            if logs.contains("config reloaded") {
                Ok(())
            } else {
                Err(logs)
            }
        },
    );
    let addr = format!("127.0.0.1:{}", strata.port);
    let _held = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reply = support::redis_server::raw_exchange(&addr, b"PING\r\n", Duration::from_millis(300));
    assert_eq!(
        reply,
        b"-ERR max number of clients reached for this address\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_reload_and_config_through_redis_cli() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(&path, &config_text(&redis.addr(), 2000, false, "cli test"));
    let running = start(&path).await;
    let port = running.addr.port();
    let cli = |args: &'static [&'static str]| support::clients::redis_cli(port, args, None);

    let out = cli(&[
        "PROXY",
        "CONFIG",
        "SET",
        "server.max_clients_per_address",
        "3",
    ])
    .await;
    assert_eq!(out.stdout.trim(), "OK", "{out:?}");
    let out = cli(&["PROXY", "CONFIG", "GET", "server.max_clients*"]).await;
    assert_eq!(
        out.stdout.trim(),
        "server.max_clients_per_address\n3",
        "{out:?}"
    );
    let out = cli(&["PROXY", "CONFIG", "REWRITE"]).await;
    assert_eq!(out.stdout.trim(), "OK", "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("max_clients_per_address = 3") && text.contains("# cli test"),
        "{text}"
    );
    let out = cli(&["PROXY", "RELOAD"]).await;
    assert_eq!(out.stdout.trim(), "no change", "{out:?}");
    write(&path, &config_text(&redis.addr(), 2500, false, "cli test"));
    let out = cli(&["PROXY", "RELOAD"]).await;
    // The new file also drops what CONFIG SET had added.
    assert_eq!(
        out.stdout.trim(),
        "applied server.max_clients_per_address\napplied backend.request_timeout_ms",
        "{out:?}"
    );
    let out = cli(&["PROXY", "CONFIG", "SET", "server.listen", "127.0.0.1:1"]).await;
    assert!(
        out.stdout.contains("need a restart") && out.stdout.contains("server.listen"),
        "{out:?}"
    );
    let out = cli(&["PROXY", "CONFIG", "SET", "server.maxclients", "0"]).await;
    assert!(out.stdout.contains("ERR CONFIG SET failed"), "{out:?}");
    let out = cli(&["PROXY", "HELP"]).await;
    for sub in ["RELOAD", "CONFIG GET", "CONFIG SET", "CONFIG REWRITE"] {
        assert!(out.stdout.contains(sub), "{sub} missing from PROXY HELP");
    }
}

/// `[auth]` in users mode: a reload (PROXY RELOAD, SIGHUP) reads the
/// users again, password files included; a new password takes effect at
/// the next AUTH while logged-in clients keep their session (and follow
/// the new rules); a user the file drops is disconnected, as by ACL
/// DELUSER; an unreadable password file refuses the reload; runtime ACL
/// SETUSER changes survive a reload whose users read the same; the CIDR
/// lists change for new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_password_files_are_read_again_on_reload() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    let pw = dir.path().join("app.pw");
    write(&pw, "old-pw\n");
    let ops_hash = strata::auth::acl::rules::hash_password(b"opspw");
    let text = |app_rules: &str, with_app: bool, limits: &str| {
        let mut t = config_text(&redis.addr(), 2000, false, "users");
        t.push_str(&format!("[auth]\nmode = \"users\"\n{limits}"));
        t.push_str(&format!(
            "[[auth.users]]\nname = \"ops\"\npassword_sha256 = [\"{ops_hash}\"]\nrules = \"on ~* &* +@all\"\nadmin = true\n"
        ));
        if with_app {
            t.push_str(&format!(
                "[[auth.users]]\nname = \"app\"\npassword_file = \"{}\"\nrules = \"{app_rules}\"\n",
                pw.display()
            ));
        }
        t
    };
    write(&path, &text("on ~* +@all", true, ""));
    let running = start(&path).await;
    let addr = running.addr.to_string();
    let mut ops = RawConn::connect(&addr).await;
    ops.expect("AUTH ops opspw", b"+OK\r\n").await;
    let mut a = RawConn::connect(&addr).await;
    a.expect("AUTH app old-pw", b"+OK\r\n").await;
    a.expect("SET k v", b"+OK\r\n").await;

    // The password file changes, the config does not: PROXY RELOAD.
    write(&pw, "new-pw\n");
    let reply = String::from_utf8(ops.cmd("PROXY RELOAD").await).unwrap();
    assert!(reply.contains("applied auth.users"), "{reply}");
    let mut b = RawConn::connect(&addr).await;
    b.expect(
        "AUTH app old-pw",
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    b.expect("AUTH app new-pw", b"+OK\r\n").await;
    // The session logged in with the old password stays.
    a.expect("GET k", b"$1\r\nv\r\n").await;

    // New rules: logged-in clients follow them at their next command.
    write(&path, &text("on ~* -@all +get +auth", true, ""));
    let report = running.reloader.reload_file("test").await.unwrap();
    assert_eq!(report.applied, vec!["auth.users".to_string()], "{report:?}");
    a.expect(
        "SET k w",
        b"-NOPERM this user has no permissions to run the 'set' command\r\n",
    )
    .await;
    a.expect("GET k", b"$1\r\nv\r\n").await;

    // A runtime change survives a reload whose users read the same.
    ops.expect("ACL SETUSER extra on >xpw +@all ~*", b"+OK\r\n")
        .await;
    let mut t = text("on ~* -@all +get +auth", true, "");
    t = t.replace(
        "client_idle_timeout_secs = 0",
        "client_idle_timeout_secs = 0\nmaxclients = 500",
    );
    write(&path, &t);
    let report = running.reloader.reload_file("test").await.unwrap();
    assert_eq!(
        report.applied,
        vec!["server.maxclients".to_string()],
        "{report:?}"
    );
    RawConn::connect(&addr)
        .await
        .expect("AUTH extra xpw", b"+OK\r\n")
        .await;

    // An unreadable password file: refused, nothing changes.
    std::fs::remove_file(&pw).unwrap();
    let err = running.reloader.reload_file("test").await.unwrap_err();
    assert!(err.contains("app.pw"), "{err}");
    RawConn::connect(&addr)
        .await
        .expect("AUTH app new-pw", b"+OK\r\n")
        .await;
    write(&pw, "new-pw\n");

    // The file drops `app`: its clients are disconnected, as by DELUSER.
    write(&path, &text("on ~* +@all", false, ""));
    running.reloader.reload_file("test").await.unwrap();
    a.expect_closed().await;
    RawConn::connect(&addr)
        .await
        .expect(
            "AUTH app new-pw",
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
        )
        .await;

    // [auth.limits]: the CIDR lists apply to the next connections.
    write(
        &path,
        &text(
            "on ~* +@all",
            false,
            "[auth.limits]\ndeny_cidrs = [\"127.0.0.0/8\"]\n",
        ),
    );
    running.reloader.reload_file("test").await.unwrap();
    RawConn::connect(&addr).await.expect_closed().await;
    ops.expect("PING", b"+PONG\r\n").await;
}

/// `PROXY CONFIG GET` lists every key of the running config, defaults
/// included (as Redis's CONFIG GET * lists every parameter), with the
/// values in force: a key the file leaves out shows its default, one the
/// file or CONFIG SET set shows that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_shows_defaults_beside_the_file_keys() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    write(&path, &config_text(&redis.addr(), 2000, false, "defaults"));
    let running = start(&path).await;
    let get = async |pattern: &str| running.reloader.get(pattern.as_bytes()).await;
    // Not in the file: defaults.
    assert_eq!(
        get("server.slowlog_max_len").await,
        vec![("server.slowlog_max_len".to_string(), "128".to_string())]
    );
    assert_eq!(
        get("server.client_output_buffer_limit").await,
        vec![(
            "server.client_output_buffer_limit".to_string(),
            "[\"normal 0 0 0\", \"pubsub 33554432 8388608 60\"]".to_string()
        )]
    );
    // In the file: its value.
    assert_eq!(
        get("backend.request_timeout_ms").await,
        vec![("backend.request_timeout_ms".to_string(), "2000".to_string())]
    );
    let all = get("*").await;
    for key in [
        "server.maxclients",
        "backend.breaker.open_ms",
        "auth.deny.enabled",
        "tls.min_version",
        "telemetry.log_level",
    ] {
        assert!(all.iter().any(|(k, _)| k == key), "{key} in {all:?}");
    }
    // CONFIG SET of a default key: its new value.
    running
        .reloader
        .set(&[("server.slowlog_max_len".to_string(), "7".to_string())])
        .await
        .unwrap();
    assert_eq!(get("server.slowlog_max_len").await[0].1, "7");
    // Through redis-cli's protocol: pairs, every one.
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let reply = String::from_utf8(c.cmd("PROXY CONFIG GET *").await).unwrap();
    assert!(
        reply.starts_with(&format!("*{}\r\n", all.len() * 2)),
        "{reply}"
    );
    assert!(
        reply.contains("$25\r\nserver.proto_max_bulk_len\r\n"),
        "{reply}"
    );
}

/// `[[tier]]` rules reload live: a new pattern is mirrored by the next
/// command on the same connection, the old one no longer; a change the
/// running tiers cannot take (the first write-behind rule: its drain
/// starts at startup) is named as needing a restart and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_rules_reload_on_a_live_connection() {
    let redis = RedisServer::start();
    let pg = support::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    let with_rule = |pattern: &str, write_mode: &str| {
        format!(
            "{}[postgres]\nurl = \"{}\"\n[[tier]]\npattern = \"{pattern}\"\npolicy = \"mirror\"\nwrite = \"{write_mode}\"\n",
            config_text(&redis.addr(), 2000, false, "tiers"),
            pg.url()
        )
    };
    write(&path, &with_rule("durable:*", "through"));
    let running = start(&path).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .unwrap();
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.cmd("SET durable:a 1").await != b"+OK\r\n" {
        // The schema is applied in the background at startup.
        assert!(Instant::now() < deadline, "strata never mirrored durable:a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.expect("SET saved:a 1", b"+OK\r\n").await;
    let row = |k: &'static str| support::tier_env::entry_row(&pool, k);
    assert!(row("durable:a").await.is_some());
    assert!(row("saved:a").await.is_none());

    write(&path, &with_rule("saved:*", "through"));
    let report = running.reloader.reload_file("test").await.unwrap();
    assert!(report.restart_needed.is_empty(), "{report:?}");
    assert!(
        report.applied.iter().any(|k| k.starts_with("tier")),
        "{report:?}"
    );
    c.expect("SET saved:b 2", b"+OK\r\n").await;
    c.expect("SET durable:b 2", b"+OK\r\n").await;
    assert!(row("saved:b").await.is_some(), "the new rule mirrors");
    assert!(row("durable:b").await.is_none(), "the old rule no longer");

    write(&path, &with_rule("saved:*", "behind"));
    let report = running.reloader.reload_file("test").await.unwrap();
    assert!(
        report.restart_needed.iter().any(|k| k.starts_with("tier")),
        "{report:?}"
    );
    c.expect("SET saved:c 3", b"+OK\r\n").await;
    assert!(
        row("saved:c").await.is_some(),
        "write-through still in force"
    );
}
