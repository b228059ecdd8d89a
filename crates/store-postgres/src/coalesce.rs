//! Group commit for PostgreSQL: concurrent callers' work merged into one
//! statement.
//!
//! On a small machine the cost of a write is mostly per statement (parse,
//! bind, plan, a transaction, a WAL flush, a network round trip), not per
//! row. So writers queue their jobs here, and a few workers each take every
//! job waiting (up to a weight, counted in rows), run them as one statement
//! and hand each caller its own result. Under light load a job runs alone at
//! once; under heavy load the groups grow by themselves. Several workers keep
//! a statement in flight while the next group gathers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use sqlx::Row;
use sqlx::postgres::PgRow;
use strongroom_store::{StoreError, StoreResult};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::engine::{PgDatabase, db_error};

/// One caller's job, waiting for a worker.
struct Queued<J, R> {
    job: J,
    weight: usize,
    reply: oneshot::Sender<StoreResult<R>>,
}

/// The queue a worker takes its next group from, and a job that did not fit
/// in the last group.
struct Intake<J, R> {
    queue: mpsc::UnboundedReceiver<Queued<J, R>>,
    carried: Option<Queued<J, R>>,
}

/// A queue of jobs of type `J`, each answered with an `R`, run in groups.
pub struct Coalescer<J, R> {
    queue: mpsc::UnboundedSender<Queued<J, R>>,
}

impl<J, R> std::fmt::Debug for Coalescer<J, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl<J: Send + 'static, R: Send + 'static> Coalescer<J, R> {
    /// Starts `workers` workers that run groups of at most `max_weight`
    /// (a single heavier job runs alone) with `run`, which must return one
    /// result per job, in order. Must be called inside a Tokio runtime; the
    /// workers stop when the coalescer is dropped.
    pub fn spawn<F, Fut>(workers: usize, max_weight: usize, run: F) -> Self
    where
        F: Fn(Vec<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<StoreResult<R>>> + Send + 'static,
    {
        let (queue, rx) = mpsc::unbounded_channel();
        let intake = Arc::new(Mutex::new(Intake {
            queue: rx,
            carried: None,
        }));
        let run = Arc::new(run);
        for _ in 0..workers.max(1) {
            tokio::spawn(work(intake.clone(), run.clone(), max_weight));
        }
        Self { queue }
    }

    /// Queues `job` (worth `weight` rows) and waits for its result.
    pub async fn submit(&self, job: J, weight: usize) -> StoreResult<R> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { job, weight, reply })
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn work<J, R, F, Fut>(intake: Arc<Mutex<Intake<J, R>>>, run: Arc<F>, max_weight: usize)
where
    F: Fn(Vec<J>) -> Fut,
    Fut: Future<Output = Vec<StoreResult<R>>>,
{
    loop {
        let group = {
            let mut intake = intake.lock().await;
            let first = match intake.carried.take() {
                Some(q) => q,
                None => match intake.queue.recv().await {
                    Some(q) => q,
                    None => return,
                },
            };
            let mut weight = first.weight;
            let mut group = vec![first];
            while weight < max_weight {
                match intake.queue.try_recv() {
                    Ok(q) if weight + q.weight > max_weight => {
                        intake.carried = Some(q);
                        break;
                    }
                    Ok(q) => {
                        weight += q.weight;
                        group.push(q);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let (jobs, replies): (Vec<J>, Vec<_>) = group.into_iter().map(|q| (q.job, q.reply)).unzip();
        let (n, started) = (jobs.len(), std::time::Instant::now());
        let results = run(jobs).await;
        tracing::trace!(
            jobs = n,
            micros = started.elapsed().as_micros() as u64,
            kind = std::any::type_name::<J>(),
            "group ran"
        );
        // A short answer leaves the rest's senders dropped: they get Closed.
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Runs `jobs` as one with `together`; if that fails and there was more than
/// one job, runs each alone with `alone`, so one bad job fails only itself.
pub async fn together_or_alone<J, R, T, TF, A, AF>(
    jobs: Vec<J>,
    together: T,
    alone: A,
) -> Vec<StoreResult<R>>
where
    J: Clone,
    T: FnOnce(Vec<J>) -> TF,
    TF: Future<Output = StoreResult<Vec<R>>>,
    A: Fn(J) -> AF,
    AF: Future<Output = StoreResult<R>>,
{
    if jobs.len() == 1 {
        let mut jobs = jobs;
        return match jobs.pop() {
            Some(job) => vec![alone(job).await],
            None => Vec::new(),
        };
    }
    match together(jobs.clone()).await {
        Ok(results) if results.len() == jobs.len() => results.into_iter().map(Ok).collect(),
        _ => {
            let mut results = Vec::with_capacity(jobs.len());
            for job in jobs {
                results.push(alone(job).await);
            }
            results
        }
    }
}

/// Reads many rows by token in one statement (`sql` binds the tokens as
/// `$1`, its first column is the token) and answers each asker: `None` for a
/// token not found, the decoded row otherwise. A row that cannot be decoded
/// fails only those who asked for it; two askers of one token each get a
/// copy.
pub async fn read_by_token<T: Clone>(
    db: &PgDatabase,
    sql_text: &str,
    tokens: &[String],
    op: &'static str,
    decode: impl Fn(&PgRow) -> StoreResult<T>,
) -> Vec<StoreResult<Option<T>>> {
    let rows = match sqlx::query(crate::sql(sql_text))
        .bind(tokens)
        .fetch_all(db.pool())
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            let e = db_error(op)(e);
            return tokens.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let found: HashMap<String, StoreResult<T>> = rows
        .iter()
        .filter_map(|r| Some((r.try_get(0).ok()?, decode(r))))
        .collect();
    tokens
        .iter()
        .map(|t| found.get(t).cloned().transpose())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_answer_and_groups_respect_the_weight() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let c = Arc::new(Coalescer::spawn(2, 10, move |jobs: Vec<usize>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(jobs.iter().sum::<usize>());
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                jobs.into_iter()
                    .map(|j| {
                        if j == 7 {
                            Err(StoreError::Conflict("seven"))
                        } else {
                            Ok(j * 100)
                        }
                    })
                    .collect()
            }
        }));
        let mut tasks = Vec::new();
        for i in 0..200usize {
            let c = c.clone();
            let w = i % 9;
            tasks.push(tokio::spawn(async move { (w, c.submit(w, w).await) }));
        }
        for t in tasks {
            let (w, r) = t.await.unwrap();
            match r {
                Ok(v) => assert_eq!(v, w * 100),
                Err(e) => {
                    assert_eq!(w, 7);
                    assert!(matches!(e, StoreError::Conflict("seven")));
                }
            }
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|&s| s <= 10), "{sizes:?}");
        assert!(sizes.len() < 200, "nothing was grouped: {}", sizes.len());
    }

    #[tokio::test]
    async fn a_failed_group_is_retried_job_by_job() {
        let results = together_or_alone(
            vec![1, 2, 3],
            |_jobs| async { Err::<Vec<i32>, _>(StoreError::Conflict("group")) },
            |j| async move {
                if j == 2 {
                    Err(StoreError::Conflict("two"))
                } else {
                    Ok(j * 10)
                }
            },
        )
        .await;
        assert!(matches!(results[0], Ok(10)));
        assert!(matches!(results[1], Err(StoreError::Conflict("two"))));
        assert!(matches!(results[2], Ok(30)));
    }
}
