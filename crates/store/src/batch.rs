//! Group commit: one statement (and one commit) serves many concurrent callers.
//!
//! Requests and jobs run concurrently, each in its own task. Were each to write its
//! own rows, Postgres would spend most of its time on round trips, planning and
//! commits rather than on the rows. A [`Batcher`] sits between the callers and one
//! kind of statement: a caller hands over its item and awaits its own answer; the
//! batcher's task gathers whatever items are waiting into one call of its batch
//! function (one statement for all of them), then answers each caller with its own
//! share. The api's ingestor and the worker's per-job statements both use it.
//!
//! # Design
//! - **No timer.** A lone item goes at once, so a quiet system adds no latency.
//!   Items pile up only while earlier batches are still running, so batches grow
//!   exactly as fast as the database falls behind: under load, the statements and
//!   commits per item fall.
//! - **Bounded in flight.** At most [`Options::in_flight`] batches run at once; while
//!   they do, newcomers gather into the next batch. More concurrency would only
//!   queue inside Postgres and shrink the batches.
//! - **Bounded size.** A batch weighs at most [`Options::max_weight`] (each item
//!   weighs one, or what [`Batcher::start_weighed`]'s function says, such as a
//!   request's row count). An item that would overflow the batch opens the next one
//!   instead, so order is kept; an item heavier than the limit on its own still goes,
//!   alone.
//! - **Bounded waiting.** At most [`Options::waiting`] items wait to be gathered;
//!   further callers wait to hand theirs over (back pressure, not unbounded memory).
//!
//! # Guarantees
//! - Each caller gets the answer at the same position as its item: the batch
//!   function returns one answer per item, in order (if it does not, every caller
//!   gets [`BatchError::Miscounted`] rather than someone else's answer).
//! - The answer comes only after the batch function finished, so whatever it
//!   commits is committed when the caller hears "done".
//! - One item's bad data never fails another's: a batch that fails for a reason
//!   other than the database being unavailable is run again item by item, and each
//!   caller gets the outcome of its item alone. (An unavailable database fails the
//!   whole batch at once: running each item against it would only take longer.)
//! - A caller whose batch's task died (a panic) hears [`BatchError::Lost`]: the
//!   outcome is unknown. Its slot is freed all the same.

use crate::pool::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// How a [`Batcher`] gathers and runs its batches.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the batcher in logs.
    pub name: &'static str,
    /// The weight of one batch at most.
    pub max_weight: usize,
    /// Batches running at once at most.
    pub in_flight: usize,
    /// Items waiting to be gathered at most; further callers wait to hand over.
    pub waiting: usize,
}

/// Why a caller got no answer, in a form every caller of a batch can receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Postgres does not answer: retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the batch, or this item when run alone.
    #[error("{0}")]
    Failed(String),
    /// The batch function broke its promise of one answer per item.
    #[error("a batch of {items} gave {answers} answers")]
    Miscounted { items: usize, answers: usize },
    /// The batcher's task has ended (the process is stopping); nothing was handed over.
    #[error("the batcher has stopped")]
    Stopped,
    /// The batch's task ended without answering (it panicked): the outcome is unknown.
    #[error("the batch stopped before answering")]
    Lost,
}

impl BatchError {
    /// Whether the cause is the database (or the batcher) being away, so running the
    /// items one by one would not help.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, BatchError::Unavailable(_) | BatchError::Stopped)
    }
}

impl From<&StoreError> for BatchError {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => BatchError::Unavailable(m.clone()),
            other => BatchError::Failed(other.to_string()),
        }
    }
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        BatchError::from(&e)
    }
}

type BoxFuture<O> = Pin<Box<dyn Future<Output = Result<Vec<O>, BatchError>> + Send>>;
/// Runs one batch: one answer per item, in order.
type RunBatch<I, O> = dyn Fn(Arc<Vec<I>>) -> BoxFuture<O> + Send + Sync;
type Reply<O> = oneshot::Sender<Result<O, BatchError>>;
type Weigh<I> = fn(&I) -> usize;

/// An item handed over, with where its answer goes.
struct Waiting<I, O> {
    item: I,
    reply: Reply<O>,
}

/// The handle callers use; cheap to clone. Its task ends when every handle is gone.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Waiting<I, O>>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
        }
    }
}

impl<I: Send + Sync + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batcher's task on the current runtime; each item weighs one.
    pub fn start<F, Fut>(options: Options, run: F) -> Self
    where
        F: Fn(Arc<Vec<I>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, BatchError>> + Send + 'static,
    {
        Self::start_weighed(options, |_| 1, run)
    }

    /// Starts the batcher's task on the current runtime; `weigh` says what each item
    /// counts against [`Options::max_weight`].
    pub fn start_weighed<F, Fut>(options: Options, weigh: Weigh<I>, run: F) -> Self
    where
        F: Fn(Arc<Vec<I>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, BatchError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(options.waiting.max(1));
        let run: Arc<RunBatch<I, O>> = Arc::new(move |items| Box::pin(run(items)));
        let gatherer = Gatherer {
            rx,
            carried: None,
            weigh,
            max_weight: options.max_weight.max(1),
        };
        tokio::spawn(gather(gatherer, run, options));
        Batcher { tx }
    }

    /// Hands `item` over and waits for its answer.
    pub async fn call(&self, item: I) -> Result<O, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Waiting { item, reply })
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Lost)?
    }
}

/// The batch being gathered.
struct Batch<I, O> {
    waiting: Vec<Waiting<I, O>>,
    weight: usize,
}

/// The receiving end: hands out batches in arrival order.
struct Gatherer<I, O> {
    rx: mpsc::Receiver<Waiting<I, O>>,
    /// An item that would have overflowed the previous batch: it opens the next.
    carried: Option<Waiting<I, O>>,
    weigh: Weigh<I>,
    max_weight: usize,
}

impl<I, O> Gatherer<I, O> {
    /// The item that opens the next batch; None once every handle is gone.
    async fn first(&mut self) -> Option<Waiting<I, O>> {
        match self.carried.take() {
            Some(w) => Some(w),
            None => self.rx.recv().await,
        }
    }

    /// Grows `batch` with whatever is waiting and with newcomers until a slot is
    /// free (or the batch is full, then waits for a slot); returns the slot.
    async fn fill(
        &mut self,
        batch: &mut Batch<I, O>,
        slots: &Arc<Semaphore>,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            self.take_waiting(batch);
            if self.is_full(batch) {
                return slots.clone().acquire_owned().await.ok();
            }
            tokio::select! {
                biased;
                permit = slots.clone().acquire_owned() => return permit.ok(),
                next = self.rx.recv() => match next {
                    Some(w) => self.add(batch, w),
                    None => return slots.clone().acquire_owned().await.ok(),
                },
            }
        }
    }

    /// Takes the items already waiting, without waiting for more.
    fn take_waiting(&mut self, batch: &mut Batch<I, O>) {
        while !self.is_full(batch) {
            match self.rx.try_recv() {
                Ok(w) => self.add(batch, w),
                Err(_) => return,
            }
        }
    }

    /// Adds `w` to the batch, or keeps it for the next one if it would overflow.
    fn add(&mut self, batch: &mut Batch<I, O>, w: Waiting<I, O>) {
        let weight = (self.weigh)(&w.item);
        if batch.weight + weight > self.max_weight {
            self.carried = Some(w);
        } else {
            batch.weight += weight;
            batch.waiting.push(w);
        }
    }

    fn is_full(&self, batch: &Batch<I, O>) -> bool {
        batch.weight >= self.max_weight || self.carried.is_some()
    }
}

/// The batcher's task: gathers batches and starts each as soon as a slot is free.
async fn gather<I: Send + Sync + 'static, O: Send + 'static>(
    mut gatherer: Gatherer<I, O>,
    run: Arc<RunBatch<I, O>>,
    options: Options,
) {
    let slots = Arc::new(Semaphore::new(options.in_flight.max(1)));
    while let Some(first) = gatherer.first().await {
        let weight = (gatherer.weigh)(&first.item);
        let mut batch = Batch {
            waiting: vec![first],
            weight,
        };
        // The semaphore is never closed, so there is always a permit in the end.
        let Some(permit) = gatherer.fill(&mut batch, &slots).await else {
            return;
        };
        let run = run.clone();
        tokio::spawn(async move {
            answer(options.name, run.as_ref(), batch.waiting).await;
            drop(permit);
        });
    }
}

/// Runs one batch and answers its callers; on a failure other than the database
/// being away, runs each item alone so the others still succeed.
async fn answer<I, O>(name: &str, run: &RunBatch<I, O>, batch: Vec<Waiting<I, O>>) {
    let (items, replies): (Vec<I>, Vec<Reply<O>>) =
        batch.into_iter().map(|w| (w.item, w.reply)).unzip();
    let many = items.len() > 1;
    let items = Arc::new(items);
    match run(items.clone()).await {
        Ok(answers) if answers.len() == replies.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Ok(answers) => {
            let miscounted = BatchError::Miscounted {
                items: replies.len(),
                answers: answers.len(),
            };
            fail_all(replies, &miscounted);
        }
        Err(e) if many && !e.is_unavailable() => {
            tracing::warn!(batcher = name, error = %e, items = replies.len(),
                "a batch failed; running its items one by one");
            match Arc::try_unwrap(items) {
                Ok(items) => run_alone(run, items, replies).await,
                // The batch function kept its items beyond its future: they cannot be
                // run again, so the batch's failure is everyone's.
                Err(_) => fail_all(replies, &e),
            }
        }
        Err(e) => fail_all(replies, &e),
    }
}

/// Runs each item as a batch of its own and answers its caller with that outcome.
async fn run_alone<I, O>(run: &RunBatch<I, O>, items: Vec<I>, replies: Vec<Reply<O>>) {
    for (item, reply) in items.into_iter().zip(replies) {
        let result = run(Arc::new(vec![item])).await.and_then(the_one);
        let _ = reply.send(result);
    }
}

/// The answer of a batch of one item.
fn the_one<O>(mut answers: Vec<O>) -> Result<O, BatchError> {
    match (answers.len(), answers.pop()) {
        (1, Some(answer)) => Ok(answer),
        (n, _) => Err(BatchError::Miscounted {
            items: 1,
            answers: n,
        }),
    }
}

fn fail_all<O>(replies: Vec<Reply<O>>, e: &BatchError) {
    for reply in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::task::JoinHandle;
    use tokio::time::{sleep, Instant};

    /// How long every test batch takes.
    const WRITE: Duration = Duration::from_millis(10);

    fn options(max_weight: usize, in_flight: usize) -> Options {
        Options {
            name: "test",
            max_weight,
            in_flight,
            waiting: 1024,
        }
    }

    /// The batches a batcher ran, in the order they started.
    type Log = Arc<Mutex<Vec<Vec<u32>>>>;

    fn record(log: &Log, items: &[u32]) {
        if let Ok(mut batches) = log.lock() {
            batches.push(items.to_vec());
        }
    }

    fn batches(log: &Log) -> Vec<Vec<u32>> {
        log.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// A batcher that doubles each item after [`WRITE`]; refuses a batch holding 13
    /// and reports the database away for a batch holding 99.
    fn doubler(options: Options, log: &Log) -> Batcher<u32, u32> {
        let log = log.clone();
        Batcher::start_weighed(
            options,
            |x| *x as usize,
            move |items: Arc<Vec<u32>>| {
                record(&log, &items);
                async move {
                    sleep(WRITE).await;
                    if items.contains(&13) {
                        return Err(BatchError::Failed("13 refused".into()));
                    }
                    if items.contains(&99) {
                        return Err(BatchError::Unavailable("down".into()));
                    }
                    Ok(items.iter().map(|x| x * 2).collect())
                }
            },
        )
    }

    fn spawn_call(b: &Batcher<u32, u32>, item: u32) -> JoinHandle<Result<u32, BatchError>> {
        let b = b.clone();
        tokio::spawn(async move { b.call(item).await })
    }

    /// Starts one call, lets its batch begin, then starts `rest` while it runs.
    async fn one_then(
        b: &Batcher<u32, u32>,
        first: u32,
        rest: &[u32],
    ) -> Vec<Result<u32, BatchError>> {
        let mut calls = vec![spawn_call(b, first)];
        sleep(Duration::from_millis(1)).await;
        calls.extend(rest.iter().map(|i| spawn_call(b, *i)));
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap_or(Err(BatchError::Lost)));
        }
        answers
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_item_is_written_at_once() {
        let log = Log::default();
        let b = doubler(options(100, 1), &log);
        let started = Instant::now();
        assert_eq!(b.call(4).await, Ok(8));
        assert_eq!(started.elapsed(), WRITE, "no wait beyond the write itself");
        assert_eq!(batches(&log), vec![vec![4]]);
    }

    #[tokio::test(start_paused = true)]
    async fn items_arriving_during_a_write_share_the_next_batch() {
        let log = Log::default();
        let b = doubler(options(10_000, 1), &log);
        let rest: Vec<u32> = (20..70).collect();
        let answers = one_then(&b, 7, &rest).await;
        assert_eq!(answers[0], Ok(14));
        for (i, a) in rest.iter().zip(&answers[1..]) {
            assert_eq!(*a, Ok(i * 2), "each caller gets its own answer");
        }
        assert_eq!(batches(&log), vec![vec![7], rest], "one batch for all 50");
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_that_would_overflow_a_batch_opens_the_next() {
        let log = Log::default();
        let b = doubler(options(10, 1), &log);
        let answers = one_then(&b, 1, &[4, 4, 4, 20, 1]).await;
        assert_eq!(answers, [2, 8, 8, 8, 40, 2].map(Ok).to_vec());
        assert_eq!(
            batches(&log),
            vec![vec![1], vec![4, 4], vec![4], vec![20], vec![1]],
            "in order, none over 10 but the lone heavy item"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_item_fails_alone() {
        let log = Log::default();
        let b = doubler(options(1000, 1), &log);
        let answers = one_then(&b, 1, &[2, 13, 3]).await;
        assert_eq!(answers[1], Ok(4));
        assert_eq!(answers[2], Err(BatchError::Failed("13 refused".into())));
        assert_eq!(answers[3], Ok(6));
        assert_eq!(
            batches(&log),
            vec![vec![1], vec![2, 13, 3], vec![2], vec![13], vec![3]]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_database_fails_the_whole_batch_without_retries() {
        let log = Log::default();
        let b = doubler(options(1000, 1), &log);
        let answers = one_then(&b, 1, &[2, 99, 3]).await;
        let down = Err(BatchError::Unavailable("down".into()));
        assert_eq!(answers[1..], [down.clone(), down.clone(), down]);
        assert_eq!(batches(&log), vec![vec![1], vec![2, 99, 3]]);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_in_flight_are_bounded() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let b = Batcher::start(options(1, 2), move |items: Arc<Vec<u32>>| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                m.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                sleep(WRITE).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(items.to_vec())
            }
        });
        let started = Instant::now();
        let calls: Vec<_> = (0..10).map(|i| spawn_call(&b, i)).collect();
        for (i, call) in (0..10).zip(calls) {
            assert_eq!(call.await.ok(), Some(Ok(i)));
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert_eq!(
            started.elapsed(),
            WRITE * 5,
            "ten batches of one, two at a time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_miscounted_batch_answers_no_one_wrongly() {
        let b = Batcher::start(options(1000, 1), |_: Arc<Vec<u32>>| async {
            Ok(vec![1u32, 2])
        });
        assert_eq!(
            b.call(5).await,
            Err(BatchError::Miscounted {
                items: 1,
                answers: 2
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_batch_loses_its_answers_but_frees_its_slot() {
        let b = Batcher::start(options(1000, 1), |items: Arc<Vec<u32>>| async move {
            if items.contains(&0) {
                panic!("the batch function broke");
            }
            Ok(items.to_vec())
        });
        assert_eq!(b.call(0).await, Err(BatchError::Lost));
        assert_eq!(b.call(1).await, Ok(1), "the only slot was given back");
    }
}
