//! The audit writer task: one JSON line per event, with its time, to the
//! output; and, when configured, rows of `strata_audit` in batches.

use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::{AuditOutput, Event};

/// Most events written (and inserted) at once.
const BATCH: usize = 256;

/// An opened audit output.
#[derive(Debug)]
pub(super) enum Output {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

impl Output {
    /// Opens the output now, so that a bad path fails at startup, with its
    /// reason, rather than at the first event.
    pub(super) fn open(output: &AuditOutput) -> Result<Output, String> {
        match output {
            AuditOutput::Stdout => Ok(Output::Stdout(tokio::io::stdout())),
            AuditOutput::File(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("audit.output {}: {e}", path.display()))?;
                Ok(Output::File(tokio::fs::File::from_std(file)))
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(out) => {
                out.write_all(bytes).await?;
                out.flush().await
            }
            Output::File(file) => {
                file.write_all(bytes).await?;
                file.flush().await
            }
        }
    }
}

/// A line: the event's fields after `ts`.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// RFC 3339 UTC with milliseconds.
fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Formats events as JSON lines.
fn lines(events: &[(String, Event)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 160);
    for (ts, event) in events {
        if serde_json::to_writer(
            &mut out,
            &Line {
                ts: ts.clone(),
                event,
            },
        )
        .is_ok()
        {
            out.push(b'\n');
        }
    }
    out
}

/// Runs until every [`super::Audit`] handle is gone.
pub(super) async fn run(
    mut rx: mpsc::Receiver<Event>,
    mut output: Output,
    next_output: std::sync::Arc<std::sync::Mutex<Option<Output>>>,
    store: Option<crate::tier::store::Store>,
    written: Counter,
) {
    // The table is made (migrations) before the first insert; until
    // Postgres answers, inserts fail and are logged, the lines still go out.
    let mut migrated = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let events: Vec<(String, Event)> = batch.drain(..).map(|e| (now(), e)).collect();
        // A config reload's new output (one lock per batch).
        if let Some(new) = next_output.lock().unwrap_or_else(|e| e.into_inner()).take() {
            output = new;
        }
        if let Err(e) = output.write(&lines(&events)).await {
            tracing::warn!(error = %e, "audit log: write failed");
        } else {
            written.inc_by(events.len() as u64);
        }
        if let Some(store) = &store {
            if !migrated {
                migrated = store.migrate().await.is_ok();
            }
            if let Err(e) = insert(store.pool(), &events).await {
                tracing::warn!(error = %e, events = events.len(), "audit log: insert into strata_audit failed");
            }
        }
    }
}

/// One multi-row insert for a batch.
async fn insert(pool: &sqlx::PgPool, events: &[(String, Event)]) -> Result<(), sqlx::Error> {
    let mut at = Vec::with_capacity(events.len());
    let mut kind = Vec::with_capacity(events.len());
    let mut client = Vec::with_capacity(events.len());
    let mut detail = Vec::with_capacity(events.len());
    for (ts, event) in events {
        at.push(ts.clone());
        kind.push(event.kind().to_string());
        client.push(event.client_id().map(|id| id as i64));
        detail.push(serde_json::to_string(event).unwrap_or_default());
    }
    sqlx::query(
        "INSERT INTO strata_audit (at, event, client_id, detail) \
         SELECT a::timestamptz, e, c, d::jsonb FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[]) AS t(a, e, c, d)",
    )
    .bind(at)
    .bind(kind)
    .bind(client)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::audit::Outcome;

    #[test]
    fn a_line_is_one_json_object_with_its_time_and_kind() {
        let events = vec![(
            "2026-12-03T15:00:00.000Z".to_string(),
            Event::Login {
                client_id: 7,
                addr: "127.0.0.1:5000".into(),
                user: "app".into(),
                outcome: Outcome::Failed,
                reason: Some("WRONGPASS".into()),
            },
        )];
        let text = String::from_utf8(lines(&events)).unwrap();
        assert_eq!(
            text,
            "{\"ts\":\"2026-12-03T15:00:00.000Z\",\"event\":\"login\",\"client_id\":7,\
             \"addr\":\"127.0.0.1:5000\",\"user\":\"app\",\"outcome\":\"failed\",\"reason\":\"WRONGPASS\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event"], "login");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let t = now();
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
    }
}
