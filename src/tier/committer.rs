//! Group commit for write-through puts: concurrent writers' rows go to
//! Postgres together, one UNNEST statement (one commit, one WAL flush) for
//! all of them, instead of one statement per client.
//!
//! `pool_size` workers share one queue. A worker takes what is queued (up
//! to [`MAX_ROWS`] rows), runs one statement and gives each writer its own
//! outcome; while it waits for Postgres, the next worker takes the next
//! group. A writer alone waits for no one: the queue is drained at once,
//! never on a timer. Keys in one group are distinct: a writer holds its
//! keys' locks (`locks.rs`) until it is answered, and coalesces its own
//! rows. A statement that fails fails every writer of its group with the
//! same error (nothing of the group applied, or for all of them unknown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::store::{Put, Store, StoreError};

/// Most rows in one statement (a writer's own rows are never split).
pub const MAX_ROWS: usize = 1_000;
/// Most value bytes in one statement (likewise).
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

type Outcome = Result<Vec<(Bytes, i64)>, StoreError>;

struct Job {
    puts: Vec<Put>,
    reply: oneshot::Sender<Outcome>,
}

/// The queue writers put their rows in.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    statements: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("rows", &self.puts.len())
            .finish()
    }
}

impl Committer {
    /// Starts `workers` workers on `store`; they stop when the last
    /// `Committer` is dropped.
    pub fn start(store: Store, workers: usize) -> Committer {
        // Bounded: a writer past it waits (each holds a client's command).
        let (tx, rx) = mpsc::channel(4 * MAX_ROWS);
        let rx = Arc::new(Mutex::new(rx));
        let statements = Arc::new(AtomicU64::new(0));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(store.clone(), rx.clone(), statements.clone()));
        }
        Committer { tx, statements }
    }

    /// Writers queued, not yet taken by a worker.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Statements run since start (each one group).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Writes rows (distinct keys) as [`Store::put`] does, in a group with
    /// whatever other writers queued meanwhile.
    pub async fn put(&self, puts: Vec<Put>) -> Outcome {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Job { puts, reply }).await.is_err() {
            return Err(StoreError::Unavailable("tier committer stopped".into()));
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Ambiguous("tier committer stopped".into())))
    }
}

async fn work(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>, statements: Arc<AtomicU64>) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let size = |job: &Job| job.puts.iter().map(|p| p.value.len()).sum::<usize>();
            let (mut rows, mut bytes) = (first.puts.len(), size(&first));
            jobs.push(first);
            while rows < MAX_ROWS && bytes < MAX_BYTES {
                match rx.try_recv() {
                    Ok(job) => {
                        rows += job.puts.len();
                        bytes += size(&job);
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        let all: Vec<Put> = jobs.iter().flat_map(|j| j.puts.iter().cloned()).collect();
        let outcome = store.put(&all).await;
        statements.fetch_add(1, Ordering::Relaxed);
        let applied: HashMap<Bytes, i64> = match &outcome {
            Ok(rows) => rows.iter().cloned().collect(),
            Err(_) => HashMap::new(),
        };
        for job in jobs {
            let mine = match &outcome {
                Ok(_) => Ok(job
                    .puts
                    .iter()
                    .filter_map(|p| applied.get(&p.key).map(|v| (p.key.clone(), *v)))
                    .collect()),
                Err(e) => Err(e.clone()),
            };
            let _ = job.reply.send(mine);
        }
    }
}
