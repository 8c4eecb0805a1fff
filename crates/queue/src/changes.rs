//! Change announcements: the wake-up signals of the console's live streams (issue 8).
//!
//! Whoever changes a person's notifications (the api or a worker, in any process)
//! calls [`Changes::announce`], which publishes on `{prefix}changes:{user_id}`; each
//! api process hears every channel through its one [`crate::ChangeHub`], which wakes
//! that person's live streams, and they read what changed from Postgres.
//!
//! A signal carries no data (the change log is in Postgres), so one lost while Redis
//! restarts costs latency (the streams' slow re-check catches up), never a change.
//! That is why `announce` sends in the background and only logs a failure: a slow or
//! absent Redis must never delay an api answer or a job, and no caller has anything
//! better to do with the error.

use crate::connection::Redis;
use crate::error::QueueError;

/// Both ends of the change signals; cheap to clone.
#[derive(Clone)]
pub struct Changes {
    redis: Redis,
}

impl Changes {
    pub fn new(redis: Redis) -> Changes {
        Changes { redis }
    }

    /// The pub/sub channel announcing changes to `user_id`'s notifications.
    pub fn channel(&self, user_id: &str) -> String {
        self.redis.keys().changes(user_id)
    }

    /// Tells the live streams of these people (in every api process) that their
    /// notifications changed (created, sent, failed, read). Returns at once: the
    /// signals go out in the background, and a failure is only logged (see the
    /// module docs). Outside a Tokio runtime there is nothing to send them with, and
    /// nothing is sent.
    pub fn announce(&self, user_ids: &[&str]) {
        if user_ids.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("could not announce changes: no runtime");
            return;
        };
        let channels: Vec<String> = user_ids.iter().map(|u| self.channel(u)).collect();
        let redis = self.redis.clone();
        runtime.spawn(async move {
            if let Err(e) = publish(&redis, &channels).await {
                tracing::debug!(error = %e, "could not announce changes");
            }
        });
    }
}

/// Publishes one signal on each channel. The commands go out together on the
/// multiplexed connection; not as one pipeline, which a cluster refuses when its
/// commands' channels hash to different slots.
async fn publish(redis: &Redis, channels: &[String]) -> Result<(), QueueError> {
    let c = redis.conn().await?;
    futures::future::try_join_all(channels.iter().map(|channel| {
        let mut c = c.clone();
        async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg("1")
                .query_async::<()>(&mut c)
                .await
        }
    }))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn an_announcement_is_published_on_that_persons_channel() {
        let handle = crate::testing::TestRedis::connect();
        let changes = Changes::new(handle.clone());
        let mut pubsub = handle.pubsub().await.expect("redis answers");
        pubsub
            .subscribe(changes.channel("ann"))
            .await
            .expect("subscribed");
        let mut messages = pubsub.into_on_message();

        changes.announce(&["bob", "ann"]);

        let wait = std::time::Duration::from_secs(5);
        let got = tokio::time::timeout(wait, futures::StreamExt::next(&mut messages)).await;
        let channel = got.ok().flatten().map(|m| m.get_channel_name().to_string());
        assert_eq!(channel, Some(format!("{}changes:ann", handle.prefix())));
    }

    #[test]
    fn announcing_outside_a_runtime_sends_nothing_and_does_not_panic() {
        // Connecting needs a runtime; announcing from a thread without one must not.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let handle = rt
            .block_on(async {
                Redis::connect(
                    "redis://127.0.0.1:1",
                    "herald_test_none:",
                    crate::Partitions::default(),
                )
            })
            .expect("connecting is lazy");
        Changes::new(handle).announce(&["ann"]);
    }
}
