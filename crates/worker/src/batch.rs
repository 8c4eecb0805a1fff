//! Group commit for the worker's own statements.
//!
//! Jobs run concurrently, each in its own task, and each used to load and write its
//! own rows: a statement (and often a commit) per job, most of Postgres's time spent
//! on round trips, planning and commits rather than on the rows. A [`Batcher`] sits
//! between the jobs and one kind of statement. A job hands over its item and awaits
//! its own answer; the batcher's task gathers whatever items are waiting into one
//! call of its batch function (one statement for all of them), then answers each.
//!
//! Nothing waits on a timer: a lone item goes at once, and items pile up only while
//! the previous batches are still running, so batches grow exactly as fast as the
//! database falls behind. The api's ingestor (`crates/api/src/ingest.rs`) does the
//! same for incoming events.
//!
//! A batch that fails for a reason other than the database being unavailable is run
//! again item by item, so one item the database refuses (a row deleted meanwhile, say)
//! fails only its own job.

use herald_store::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Items waiting for the batcher at most; further callers wait to hand over.
const QUEUE_DEPTH: usize = 8192;

/// Why a batch failed, in a form every caller of it can receive.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BatchError {
    /// The database (or the batcher itself) is unavailable: retry later.
    pub unavailable: bool,
    pub message: String,
}

impl From<&StoreError> for BatchError {
    fn from(e: &StoreError) -> Self {
        BatchError {
            unavailable: e.is_unavailable(),
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::from(&e)
    }
}

type BoxFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, BatchError>> + Send>>;
/// Runs one batch: one output per input, in order.
type RunBatch<I, O> = dyn Fn(Arc<Vec<I>>) -> BoxFuture<O> + Send + Sync;
type Reply<O> = oneshot::Sender<Result<O, BatchError>>;

/// A handle jobs call; cheap to clone. Its task ends when every handle is gone.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + Sync + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher's task: batches of at most `max_items`, at most `in_flight`
    /// of them running at once.
    pub fn start<F, Fut>(max_items: usize, in_flight: usize, run: F) -> Self
    where
        F: Fn(Arc<Vec<I>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, BatchError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let run: Arc<RunBatch<I, O>> = Arc::new(move |items| Box::pin(run(items)));
        tokio::spawn(gather(rx, run, max_items.max(1), in_flight.max(1)));
        Batcher { tx }
    }

    /// Hands `item` over and waits for its result.
    pub async fn call(&self, item: I) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || BatchError {
            unavailable: true,
            message: "the batcher has stopped".into(),
        };
        self.tx.send((item, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The gathering loop: takes whatever is waiting (up to `max_items`) and runs it as
/// soon as a slot is free, taking newcomers while it waits for one.
async fn gather<I: Send + Sync + 'static, O: Send + 'static>(
    mut rx: mpsc::Receiver<(I, Reply<O>)>,
    run: Arc<RunBatch<I, O>>,
    max_items: usize,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let permit = loop {
            while batch.len() < max_items {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if batch.len() >= max_items {
                break slots.clone().acquire_owned().await;
            }
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => break permit,
                next = rx.recv() => match next {
                    Some(item) => batch.push(item),
                    None => break slots.clone().acquire_owned().await,
                },
            }
        };
        let Ok(permit) = permit else { return }; // the semaphore is never closed
        let run = run.clone();
        tokio::spawn(async move {
            answer(run.as_ref(), batch).await;
            drop(permit);
        });
    }
}

/// Runs one batch and answers its callers; on a failure that is not the database
/// being away, runs each item alone so the others still succeed.
async fn answer<I, O>(run: &RunBatch<I, O>, batch: Vec<(I, Reply<O>)>) {
    let (items, replies): (Vec<I>, Vec<Reply<O>>) = batch.into_iter().unzip();
    let many = items.len() > 1;
    let items = Arc::new(items);
    match run(items.clone()).await {
        Ok(outputs) if outputs.len() == replies.len() => {
            for (reply, out) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(out));
            }
        }
        Ok(outputs) => {
            let failure = BatchError {
                unavailable: false,
                message: format!(
                    "a batch of {} gave {} results",
                    replies.len(),
                    outputs.len()
                ),
            };
            for reply in replies {
                let _ = reply.send(Err(failure.clone()));
            }
        }
        Err(e) if many && !e.unavailable => {
            tracing::warn!(error = %e, items = replies.len(),
                "a batched statement failed; running its items one by one");
            // The batch function's future is done, so this is the only reference.
            let items = Arc::try_unwrap(items).unwrap_or_else(|_| Vec::new());
            if items.len() != replies.len() {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            for (item, reply) in items.into_iter().zip(replies) {
                let result = run(Arc::new(vec![item]))
                    .await
                    .and_then(|mut out| out.pop().ok_or_else(|| e.clone()));
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let doubler = Batcher::start(64, 1, move |items: Arc<Vec<u32>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(items.iter().map(|x| x * 2).collect())
            }
        });
        let answers = futures::future::join_all((0..100u32).map(|i| {
            let d = doubler.clone();
            async move { d.call(i).await }
        }))
        .await;
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.ok(), Some(i as u32 * 2));
        }
        // 100 items, at most 64 a batch and one batch at a time: a handful of batches,
        // never one per item.
        let n = calls.load(Ordering::SeqCst);
        assert!((2..=10).contains(&n), "{n} batches");
    }

    #[tokio::test]
    async fn a_refused_item_fails_alone() {
        let picky = Batcher::start(64, 1, |items: Arc<Vec<u32>>| async move {
            if items.contains(&13) {
                return Err(BatchError {
                    unavailable: false,
                    message: "13 refused".into(),
                });
            }
            Ok(items.to_vec())
        });
        let answers = futures::future::join_all([1u32, 13, 2].map(|i| {
            let p = picky.clone();
            async move { p.call(i).await }
        }))
        .await;
        assert_eq!(answers[0].as_ref().ok(), Some(&1));
        assert!(answers[1].is_err());
        assert_eq!(answers[2].as_ref().ok(), Some(&2));
    }

    #[tokio::test]
    async fn an_unavailable_database_fails_the_whole_batch_without_retries() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let down = Batcher::start(64, 1, move |_: Arc<Vec<u32>>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Err::<Vec<u32>, _>(BatchError {
                    unavailable: true,
                    message: "down".into(),
                })
            }
        });
        let answers = futures::future::join_all((0..10u32).map(|i| {
            let d = down.clone();
            async move { d.call(i).await }
        }))
        .await;
        assert!(answers
            .iter()
            .all(|a| a.as_ref().is_err_and(|e| e.unavailable)));
        assert!(calls.load(Ordering::SeqCst) < 10);
    }
}
