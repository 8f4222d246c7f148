//! Postgres tiers, write-through: what the client is told when the tiers
//! could disagree, value transforms (Postgres stores the sealed envelope),
//! and the commands refused rather than half-mirrored. Real PostgreSQL and
//! redis-server, started by the harness.

mod support;

use std::io::Write as _;
use std::time::Duration;

use support::clients::show;
use support::tier_env::TierEnv;

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// A commit whose outcome strata cannot know (the statement outlived
/// `statement_timeout_ms` behind a row lock) is reported as such, never as
/// success, and the key leaves Redis so the next read comes from Postgres,
/// whatever Postgres ended up with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_commit_outcome_is_reported_and_the_key_invalidated() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:amb v1", b"+OK\r\n").await;

    // Another session holds the row: strata's upsert waits past its timeout.
    let mut tx = env.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM strata_entries WHERE key = $1 FOR UPDATE")
        .bind(&b"durable:amb"[..])
        .execute(&mut *tx)
        .await
        .expect("lock row");
    let r = c.cmd("SET durable:amb v2").await;
    assert!(
        show(&r).starts_with("-ERR tier unavailable: commit outcome unknown"),
        "{}",
        show(&r)
    );
    let mut direct = env.raw_redis().await;
    direct.expect("EXISTS durable:amb", b":0\r\n").await;
    tx.rollback().await.expect("rollback");

    // Whatever committed is what strata serves: Postgres decides.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let row = loop {
        let row = env.row("durable:amb").await.expect("row").1;
        // The abandoned statement may still be finishing.
        if row == b"v2" || std::time::Instant::now() > deadline {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let got = c.cmd("GET durable:amb").await;
    assert_eq!(show(&got), show(&bulk(&String::from_utf8_lossy(&row))));
    // A retry is safe: a newer version.
    c.expect("SET durable:amb v3", b"+OK\r\n").await;
    assert_eq!(env.row("durable:amb").await.expect("row").1, b"v3");
}

/// With a value transform on the same keys, Postgres holds exactly what
/// Redis holds: the sealed envelope, never the plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_the_sealed_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("k1");
    let mut f = std::fs::File::create(&key_path).expect("key file");
    // base64 of 32 bytes 0x11.
    f.write_all(b"ERERERERERERERERERERERERERERERERERERERERERE=\n")
        .expect("write key");
    let extra = format!(
        "[[transform]]\npattern = \"durable:*\"\ncompress = \"lz4\"\nmin_size = 16\nencrypt = true\n\
         [transform_keys]\nactive_key = \"k1\"\n[transform_keys.keys]\nk1 = {{ file = \"{}\" }}\n",
        key_path.display()
    );
    let env = TierEnv::start_custom(100, &extra).await;
    let mut c = env.raw().await;
    let secret = "a secret value that is long enough to compress, compress, compress";
    c.expect(
        &format!("SET durable:sealed {}", secret.replace(' ', "_")),
        b"+OK\r\n",
    )
    .await;
    let plain = secret.replace(' ', "_");
    let stored = env.row("durable:sealed").await.expect("row").1;
    assert_eq!(&stored[..4], &support::transform_env::MAGIC, "an envelope");
    assert!(
        !stored.windows(6).any(|w| w == b"secret"),
        "plaintext reached Postgres"
    );
    let mut direct = env.raw_redis().await;
    let in_redis = direct.cmd("GET durable:sealed").await;
    let expected = {
        let mut b = format!("${}\r\n", stored.len()).into_bytes();
        b.extend_from_slice(&stored);
        b.extend_from_slice(b"\r\n");
        b
    };
    assert_eq!(
        show(&in_redis),
        show(&expected),
        "Redis and Postgres hold the same bytes"
    );

    // Re-warmed from Postgres, opened for the client as before.
    direct.expect("FLUSHALL", b"+OK\r\n").await;
    c.expect("GET durable:sealed", &bulk(&plain)).await;
    // SET … GET's old value is opened too.
    c.expect("SET durable:sealed next GET", &bulk(&plain)).await;
    c.expect("GET durable:sealed", &bulk("next")).await;
}

/// Inside MULTI the tier cannot commit first: writes to mirrored keys are
/// refused (and EXEC aborts, as after any queueing error); other keys and
/// reads are untouched. RESP3 clients get RESP3 replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_refuses_mirrored_writes_and_resp3_gets_resp3() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("MULTI", b"+OK\r\n").await;
    c.expect("SET cache:m 1", b"+QUEUED\r\n").await;
    let r = c.cmd("SET durable:m 1").await;
    assert!(
        show(&r).starts_with("-ERR tier: 'set' on a mirrored key is not supported inside MULTI"),
        "{}",
        show(&r)
    );
    let r = c.cmd("EXEC").await;
    assert!(show(&r).starts_with("-EXECABORT"), "{}", show(&r));
    let mut direct = env.raw_redis().await;
    direct.expect("EXISTS cache:m durable:m", b":0\r\n").await;
    assert!(env.row("durable:m").await.is_none());

    // A script naming a mirrored key could write it behind the tier's back.
    let r = c.cmd("EVAL return_1 1 durable:s").await;
    assert!(
        show(&r).starts_with("-ERR tier: 'eval' is not supported on mirrored keys"),
        "{}",
        show(&r)
    );
    // A script run (its own connection) ends at the next command, which
    // the tier then runs as usual, in order.
    let pipeline = [
        support::clients::encode(&[b"EVAL", b"return 7", b"0"]),
        support::clients::encode(&[b"SET", b"durable:after", b"1"]),
        support::clients::encode(&[b"GET", b"durable:after"]),
    ]
    .concat();
    c.pipeline(&pipeline, &[b":7\r\n", b"+OK\r\n", b"$1\r\n1\r\n"])
        .await;
    assert!(env.row("durable:after").await.is_some());

    let mut r3 = env.raw().await;
    let hello = r3.cmd("HELLO 3").await;
    assert!(hello.starts_with(b"%"), "{}", show(&hello));
    r3.expect("SET durable:n v NX", b"+OK\r\n").await;
    r3.expect("SET durable:n w NX", b"_\r\n").await;
    r3.expect("SET durable:n w NX GET", &bulk("v")).await;
    r3.expect("DEL durable:n durable:n", b":1\r\n").await;
    r3.expect("GETDEL durable:n", b"_\r\n").await;
}

/// Redis refusing a change Postgres committed (here: out of memory with
/// noeviction) leaves the key out of Redis, so the next read comes from
/// Postgres, and the client is told what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_redis_refuses_is_invalidated_and_served_from_postgres() {
    let env = TierEnv::start().await;
    let mut c = env.raw().await;
    c.expect("SET durable:oom before", b"+OK\r\n").await;
    let mut direct = env.raw_redis().await;
    direct
        .expect("CONFIG SET maxmemory-policy noeviction", b"+OK\r\n")
        .await;
    direct.expect("CONFIG SET maxmemory 1", b"+OK\r\n").await;
    let r = c.cmd("SET durable:oom after").await;
    assert!(
        show(&r).starts_with("-ERR tier: committed in Postgres but Redis did not apply it (OOM"),
        "{}",
        show(&r)
    );
    assert!(show(&r).contains("the key was invalidated"), "{}", show(&r));
    assert_eq!(env.row("durable:oom").await.expect("row").1, b"after");
    direct.expect("EXISTS durable:oom", b":0\r\n").await;
    // While Redis cannot take it back, a read says so rather than nil.
    let r = c.cmd("GET durable:oom").await;
    assert!(
        show(&r)
            .starts_with("-ERR tier: the key is in Postgres but Redis refused to re-warm it (OOM"),
        "{}",
        show(&r)
    );
    direct.expect("CONFIG SET maxmemory 0", b"+OK\r\n").await;
    c.expect("GET durable:oom", &bulk("after")).await;
}

/// `strata migrate` applies the schema and exits 0; without `[postgres]`
/// it exits 2. A `[[tier]]` rule that cannot work stops strata at startup
/// with the rule named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_subcommand_and_invalid_rules() {
    let pg = tokio::task::spawn_blocking(support::postgres::Postgres::start)
        .await
        .expect("postgres");
    let dir = tempfile::tempdir().expect("tempdir");
    let with_pg = dir.path().join("pg.toml");
    std::fs::write(&with_pg, format!("[postgres]\nurl = \"{}\"\n", pg.url())).expect("write");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .output()
            .expect("run strata");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, text) = run(&["--config".as_ref(), with_pg.as_os_str(), "migrate".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .expect("pool");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
         ('strata_entries', 'strata_hash_fields', 'strata_tombstones', 'strata_dead_letters')",
    )
    .fetch_one(&pool)
    .await
    .expect("tables");
    assert_eq!(tables, 4);
    // Twice is fine: each migration applies once.
    let (code, text) = run(&["--config".as_ref(), with_pg.as_os_str(), "migrate".as_ref()]);
    assert_eq!(code, Some(0), "{text}");

    let without = dir.path().join("none.toml");
    std::fs::write(&without, "[server]\nmaxclients = 10\n").expect("write");
    let (code, text) = run(&["--config".as_ref(), without.as_os_str(), "migrate".as_ref()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("no [postgres] section"), "{text}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[postgres]\nurl = \"{}\"\n[[tier]]\npattern = \"durable:*\"\npolicy = \"mirror\"\n",
            pg.url()
        ),
    )
    .expect("write");
    let (code, text) = run(&["--config".as_ref(), bad.as_os_str()]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("tier[0] (pattern 'durable:*'): policy = \"mirror\" needs write"),
        "{text}"
    );
}
