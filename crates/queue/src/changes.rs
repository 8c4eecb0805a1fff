//! Listening for a person's change signals (the console's live stream, issue 8).
//!
//! Publishers call [`Queue::publish_changes`]; this is the other end. A subscribed
//! connection can do nothing else, so it cannot come from the shared pool: each
//! subscription opens its own connection, which closes when the returned stream is
//! dropped. Signals carry no data (the change log is in Postgres), so one lost while
//! Redis restarts costs latency, never a change.

use crate::redis_queue::{Queue, QueueError};
use futures::{Stream, StreamExt};
use std::time::Duration;

/// How long connecting and subscribing may take before the caller falls back to
/// polling Postgres.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens subscriptions to people's change channels.
#[derive(Clone)]
pub struct ChangeSubscriber {
    client: redis::Client,
    queue: Queue,
}

impl ChangeSubscriber {
    /// Parses the URL only; connections are opened per subscription. `queue` names
    /// the channels, so both ends agree on them.
    pub fn new(redis_url: &str, queue: Queue) -> Result<ChangeSubscriber, QueueError> {
        Ok(ChangeSubscriber {
            client: redis::Client::open(redis_url)?,
            queue,
        })
    }

    /// A stream yielding `()` for each signal on `user_id`'s channel; it ends when the
    /// connection breaks. The subscription is confirmed by Redis before this returns,
    /// so a change committed afterwards is signalled.
    pub async fn subscribe(
        &self,
        user_id: &str,
    ) -> Result<impl Stream<Item = ()> + Send + Unpin + 'static, QueueError> {
        let channel = self.queue.changes_channel(user_id);
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, QueueError>(pubsub)
        })
        .await
        .map_err(|_| QueueError::Unavailable("subscribing timed out".into()))??;
        Ok(subscribed.into_on_message().map(|_| ()))
    }
}
