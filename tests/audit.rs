//! The audit log (`[audit]`): each audited event is a JSON line with its
//! fields, and no password, value or key (without `include_keys`) ever
//! appears in the log; with `audit.postgres = true` the same events are
//! rows of `strata_audit`; a Sentinel failover is recorded.
#![allow(clippy::unwrap_used)]
mod support;

use std::time::{Duration, Instant};

use support::clients::RawConn;
use support::RedisServer;

const PW_ENV: &str = "STRATA_TEST_AUDIT_PW";
const PASSWORD: &str = "backend-Pa55-secret";
const VALUE: &str = "value-that-must-never-be-logged";
const KEY: &str = "key-that-must-not-be-logged";

/// The log's lines as JSON, once at least `n` are there.
fn lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        if parsed.len() >= n || Instant::now() > deadline {
            return parsed;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn find<'a>(
    lines: &'a [serde_json::Value],
    event: &str,
    field: &str,
    value: &str,
) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["event"] == event && l[field] == value)
        .unwrap_or_else(|| panic!("no {event} line with {field}={value} in {lines:#?}"))
}

async fn audited_strata(
    backend: &RedisServer,
    extra: &str,
    postgres: Option<&str>,
) -> (strata::app::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut config = support::strata::test_config(&backend.addr());
    std::env::set_var(PW_ENV, PASSWORD);
    config.backend.password_env = Some(PW_ENV.to_string());
    let mut toml = format!(
        "[audit]\nenabled = true\noutput = \"{}\"\n{extra}\n",
        log.display()
    );
    if let Some(url) = postgres {
        toml.push_str(&format!("postgres = true\n[postgres]\nurl = \"{url}\"\n"));
    }
    let parsed: strata::config::Config = toml::from_str(&toml).unwrap();
    config.audit = parsed.audit;
    config.postgres = parsed.postgres;
    let running = support::strata::start_with(config).await;
    support::strata::wait_ready(&running).await;
    (running, dir)
}

async fn backend() -> RedisServer {
    let server = RedisServer::start();
    let mut c = RawConn::connect(&server.addr()).await;
    c.expect(&format!("CONFIG SET requirepass {PASSWORD}"), b"+OK\r\n")
        .await;
    server
}

/// Logins, refusals and admin commands, then the whole log searched for
/// the password, the value and the key.
async fn audited_session(running: &strata::app::Running) {
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let refused = c.cmd(&format!("GET {KEY}")).await;
    assert!(
        refused.starts_with(b"-NOAUTH"),
        "{}",
        support::clients::show(&refused)
    );
    let wrong = c.cmd("AUTH not-the-password").await;
    assert!(wrong.starts_with(b"-WRONGPASS"));
    c.expect(&format!("AUTH {PASSWORD}"), b"+OK\r\n").await;
    c.expect(&format!("SET {KEY} {VALUE}"), b"+OK\r\n").await;
    let config = c.cmd("CONFIG GET maxclients").await;
    assert!(config.starts_with(b"*2"));
    let help = c.cmd("PROXY HELP").await;
    assert!(help.starts_with(b"*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audited_event_is_a_json_line_and_no_secret_is_logged() {
    let redis = backend().await;
    let (running, dir) = audited_strata(&redis, "", None).await;
    audited_session(&running).await;
    let log = dir.path().join("audit.jsonl");
    let all = lines(&log, 5);

    let refused = find(&all, "refused", "reason", "NOAUTH");
    assert_eq!(refused["command"], "get");
    assert!(
        refused.get("key").is_none(),
        "key logged without include_keys"
    );
    let failed = find(&all, "login", "outcome", "failed");
    assert_eq!(failed["reason"], "WRONGPASS");
    assert_eq!(failed["user"], "default");
    let ok = find(&all, "login", "outcome", "ok");
    assert_eq!(ok["user"], "default");
    assert!(ok["client_id"].as_u64().is_some());
    assert!(ok["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    find(&all, "admin", "command", "config|get");
    find(&all, "admin", "command", "proxy help");
    for line in &all {
        let ts = line["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }
    // Nothing secret anywhere in the file.
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [PASSWORD, "not-the-password", VALUE, KEY] {
        assert!(
            !text.contains(secret),
            "{secret} is in the audit log:\n{text}"
        );
    }
    // The file is private to strata's user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let metrics = support::clients::metrics_text(running.http_addr.unwrap()).await;
    assert!(
        support::clients::metric(&metrics, "strata_audit_written_total").unwrap() >= 5.0,
        "{metrics}"
    );
    assert_eq!(
        support::clients::metric(&metrics, "strata_audit_dropped_total"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_recorded_only_when_configured() {
    let redis = backend().await;
    let (running, dir) = audited_strata(&redis, "include_keys = true", None).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let refused = c.cmd(&format!("GET {KEY}")).await;
    assert!(refused.starts_with(b"-NOAUTH"));
    let all = lines(&dir.path().join("audit.jsonl"), 1);
    assert_eq!(find(&all, "refused", "reason", "NOAUTH")["key"], KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_rows_of_strata_audit_with_postgres() {
    let pg = support::postgres::Postgres::start();
    let redis = backend().await;
    let (running, dir) = audited_strata(&redis, "", Some(&pg.url())).await;
    audited_session(&running).await;
    let file_lines = lines(&dir.path().join("audit.jsonl"), 5).len();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows: Vec<(String, Option<i64>, serde_json::Value)> = loop {
        let rows: Vec<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT event, client_id, detail::text FROM strata_audit ORDER BY id")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(e, c, d)| (e, c, serde_json::from_str(&d).unwrap()))
            .collect();
        if rows.len() >= file_lines || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), file_lines, "{rows:#?}");
    let login = rows
        .iter()
        .find(|(event, _, detail)| event == "login" && detail["outcome"] == "ok")
        .expect("a login row");
    assert_eq!(login.2["user"], "default");
    assert!(login.1.is_some());
    let text = format!("{rows:?}");
    for secret in [PASSWORD, VALUE, KEY] {
        assert!(!text.contains(secret));
    }
}

/// A config reload moves the audit log to another file and turns
/// `include_keys` on, while it runs: the events after it go to the new
/// file, with keys; the old file keeps what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_output_and_changes_include_keys() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (log1, log2) = (dir.path().join("one.jsonl"), dir.path().join("two.jsonl"));
    let path = dir.path().join("strata.toml");
    let text = |log: &std::path::Path, keys: bool| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[backend]\naddress = \"{}\"\n[telemetry]\nlisten = \"127.0.0.1:0\"\n\
             [audit]\nenabled = true\noutput = \"{}\"\ninclude_keys = {keys}\n",
            redis.addr(),
            log.display()
        )
    };
    std::fs::write(&path, text(&log1, false)).unwrap();
    let origin = strata::app::reload::Origin {
        path: Some(path.clone()),
        ..Default::default()
    };
    let running = strata::app::start_from(strata::config::Config::load(&path).unwrap(), origin)
        .await
        .unwrap();
    support::strata::wait_ready(&running).await;
    let mut c = RawConn::connect(&running.addr.to_string()).await;
    let refused = c.cmd(&format!("MIGRATE 127.0.0.1 1 {KEY} 0 100")).await;
    assert!(
        refused.starts_with(b"-ERR command 'migrate' is refused"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
    let before = lines(&log1, 1);
    let line = find(&before, "refused", "command", "migrate");
    assert!(line.get("key").is_none(), "{line}");

    std::fs::write(&path, text(&log2, true)).unwrap();
    let report = running.reloader.reload_file("test").await.unwrap();
    assert_eq!(
        report.applied,
        vec!["audit.output".to_string(), "audit.include_keys".to_string()],
        "{report:?}"
    );
    c.cmd(&format!("MIGRATE 127.0.0.1 1 {KEY} 0 100")).await;
    let after = lines(&log2, 2);
    assert_eq!(find(&after, "refused", "command", "migrate")["key"], KEY);
    find(&after, "config_reload", "outcome", "ok");
    // The old file has no event from after the reload.
    let old = lines(&log1, 1);
    assert_eq!(
        old.iter().filter(|l| l["event"] == "refused").count(),
        1,
        "{old:#?}"
    );
}
