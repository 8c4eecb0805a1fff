//! Acknowledgements, batched. Every handled job must be acknowledged (XACK + XDEL);
//! doing it one job at a time costs a Redis round trip per job. Handlers instead hand
//! their acknowledgement to [`Acker`], and one task flushes whatever has accumulated
//! with one script (`Queue::ack_lanes`; one per partition on a cluster). A crash
//! between handling and flushing only means the job is delivered again later, which
//! at-least-once delivery already allows.

use herald_queue::{Handled, Lane, LaneAcks, Queue};
use std::collections::HashMap;

/// One acknowledgement: the stream (lane), the entry id and the job's marker (which names
/// its "queued" counter; `None` for an undecodable entry).
type Ack = (Lane, String, Option<String>);
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The most acknowledgements one flush carries.
const BATCH: usize = 512;

pub struct Acker {
    tx: mpsc::UnboundedSender<Ack>,
    /// Taken once by [`Acker::run`].
    rx: Mutex<Option<mpsc::UnboundedReceiver<Ack>>>,
}

impl Default for Acker {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Acker {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl Acker {
    /// Queues an acknowledgement for the next flush.
    pub fn ack(&self, lane: Lane, entry_id: String, marker: Option<String>) {
        // The receiver only goes away after shutdown has drained everything; a send
        // after that has nothing to acknowledge into anyway.
        let _ = self.tx.send((lane, entry_id, marker));
    }

    /// Flushes acknowledgements as they come, until shutdown; then flushes the rest.
    pub async fn run(&self, queue: Queue, shutdown: CancellationToken) {
        let rx = self.rx.lock().map(|mut r| r.take()).unwrap_or(None);
        let Some(mut rx) = rx else { return };
        loop {
            let first = tokio::select! {
                item = rx.recv() => item,
                _ = shutdown.cancelled() => None,
            };
            let mut batch: Vec<Ack> = first.into_iter().collect();
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return; // shutdown and nothing left
            }
            flush(&queue, batch).await;
        }
    }
}

/// One acknowledgement script for the batch (one per partition on a cluster).
async fn flush(queue: &Queue, batch: Vec<Ack>) {
    let mut by_lane: HashMap<Lane, Vec<Handled>> = HashMap::new();
    for (lane, id, marker) in batch {
        by_lane.entry(lane).or_default().push((id, marker));
    }
    let lanes: Vec<LaneAcks<'_>> = by_lane
        .iter()
        .map(|(lane, entries)| (*lane, entries.as_slice()))
        .collect();
    if let Err(e) = queue.ack_lanes(&lanes).await {
        let count: usize = lanes.iter().map(|(_, e)| e.len()).sum();
        tracing::warn!(error = %e, count, "ack failed; those jobs may run again");
    }
}
