//! The change hub: one Redis pub/sub connection per api process, shared by all of its
//! live streams (issue 15).
//!
//! [`ChangeHub::start`] spawns one task that holds one pub/sub connection and
//! `PSUBSCRIBE`s to `{prefix}changes:*`, the channels [`crate::Changes::announce`]
//! publishes on. A stream [`ChangeHub::watch`]es its person: an in-memory entry, no
//! Redis command. Each announcement wakes that person's watches in this process
//! through a `tokio::sync::watch` channel, which coalesces a burst into one wake-up.
//!
//! * **One pattern, not one channel per person.** Every api process hears every
//!   person's announcements (a few dozen bytes each, dropped after one map lookup when
//!   nobody here watches that person), and Redis matches each publish against one
//!   pattern per api process. In exchange, opening or closing a stream sends nothing to
//!   Redis and needs no bookkeeping of who is subscribed, and a reconnect has one
//!   subscription to restore.
//! * **Outages.** Whenever the subscription is established or lost, every watch is
//!   woken: after a reconnect each stream reads once what it may have missed meanwhile,
//!   and after a loss it learns ([`ChangeHub::is_live`]) that it must poll until the
//!   hub is back. A ping every [`PING_EVERY`] notices a connection that died without
//!   closing.
//! * **Life.** The task ends when the last handle on the hub is dropped.

use crate::connection::Redis;
use crate::error::QueueError;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How often the hub checks its idle connection is still alive.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// How long connecting, subscribing or a ping may take before the connection is given up.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait before connecting again after a failure.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The process's one subscription to change announcements; cheap to clone.
#[derive(Clone)]
pub struct ChangeHub {
    inner: Arc<Inner>,
}

struct Inner {
    /// The people watched in this process, each with the channel waking their streams.
    people: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Whether the subscription is established (announcements are being heard).
    live: AtomicBool,
    /// The prefix of the announcement channels, `{prefix}changes:`.
    channel_prefix: String,
    /// Dropped with the last handle, which stops the task.
    _stop: oneshot::Sender<()>,
}

impl ChangeHub {
    /// Starts the hub's task on the current Tokio runtime; it connects at once and
    /// reconnects by itself.
    pub fn start(redis: Redis) -> ChangeHub {
        let (stop, stopped) = oneshot::channel();
        let inner = Arc::new(Inner {
            people: Mutex::new(HashMap::new()),
            live: AtomicBool::new(false),
            channel_prefix: redis.keys().changes(""),
            _stop: stop,
        });
        tokio::spawn(run(redis, Arc::downgrade(&inner), stopped));
        ChangeHub { inner }
    }

    /// Watches `user_id`: the returned handle is woken by each announcement of a change
    /// to their notifications heard after this call (and when the hub connects or
    /// disconnects). Sends nothing to Redis.
    pub fn watch(&self, user_id: &str) -> PersonWatch {
        let mut people = lock(&self.inner.people);
        let rx = people
            .entry(user_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        PersonWatch {
            hub: self.inner.clone(),
            user_id: user_id.to_string(),
            rx: Some(rx),
        }
    }

    /// Whether announcements are being heard; while not, watchers must poll.
    pub fn is_live(&self) -> bool {
        self.inner.live.load(Ordering::Acquire)
    }

    /// How many people are watched in this process (for tests and diagnostics).
    pub fn watched_people(&self) -> usize {
        lock(&self.inner.people).len()
    }
}

/// One stream's interest in one person; unregisters itself when dropped.
pub struct PersonWatch {
    hub: Arc<Inner>,
    user_id: String,
    /// Always Some until dropped (taken in `drop` to count the receivers left).
    rx: Option<watch::Receiver<u64>>,
}

impl PersonWatch {
    /// Waits until the person's notifications may have changed since the last call (or
    /// since the watch began). Several announcements in between wake it once.
    pub async fn changed(&mut self) {
        // The sender lives in the hub's map as long as this receiver does, so the
        // error (no sender) cannot happen; waiting forever is right if it did.
        let woken = match self.rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !woken {
            std::future::pending::<()>().await;
        }
    }

    /// Whether announcements are being heard; while not, the watcher must poll.
    pub fn is_live(&self) -> bool {
        self.hub.live.load(Ordering::Acquire)
    }
}

impl Drop for PersonWatch {
    fn drop(&mut self) {
        let mut people = lock(&self.hub.people);
        // Drop the receiver under the lock, so that a watch opened meanwhile is counted.
        drop(self.rx.take());
        if people
            .get(&self.user_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            people.remove(&self.user_id);
        }
    }
}

/// The map stays consistent whatever a panicking holder did (each change to it is one
/// call), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The hub's task: subscribe, relay, and on any failure wake everyone and start over.
async fn run(redis: Redis, hub: Weak<Inner>, mut stopped: oneshot::Receiver<()>) {
    loop {
        let served = tokio::select! {
            served = serve(&redis, &hub) => served,
            _ = &mut stopped => return,
        };
        let Some(inner) = hub.upgrade() else { return };
        if inner.live.swap(false, Ordering::AcqRel) {
            tracing::warn!("change announcements lost; live streams poll until resubscribed");
        }
        wake_all(&inner);
        drop(inner);
        if let Err(e) = served {
            tracing::debug!(error = %e, "change hub cannot subscribe");
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            _ = &mut stopped => return,
        }
    }
}

/// One connection's life: subscribe, mark the hub live, relay until it fails.
async fn serve(redis: &Redis, hub: &Weak<Inner>) -> Result<(), QueueError> {
    let (mut sink, mut messages) = tokio::time::timeout(REDIS_TIMEOUT, async {
        let mut pubsub = redis.pubsub().await?;
        pubsub.psubscribe(pattern(redis.keys().prefix())).await?;
        Ok::<_, QueueError>(pubsub.split())
    })
    .await
    .map_err(|_| QueueError::Unavailable("subscribing timed out".into()))??;
    {
        let Some(inner) = hub.upgrade() else {
            return Ok(());
        };
        inner.live.store(true, Ordering::Release);
        tracing::info!("change hub subscribed");
        // Whatever was announced while not subscribed is read now.
        wake_all(&inner);
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            msg = messages.next() => {
                let Some(msg) = msg else {
                    return Err(QueueError::Unavailable("the pub/sub connection closed".into()));
                };
                let Some(inner) = hub.upgrade() else { return Ok(()) };
                wake(&inner, msg.get_channel_name());
            }
            _ = ping.tick() => {
                tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| QueueError::Unavailable("ping timed out".into()))??;
            }
        }
    }
}

/// Wakes the watches of the person an announcement on `channel` is about.
fn wake(inner: &Inner, channel: &str) {
    let Some(user_id) = channel.strip_prefix(&inner.channel_prefix) else {
        return;
    };
    if let Some(tx) = lock(&inner.people).get(user_id) {
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn wake_all(inner: &Inner) {
    for tx in lock(&inner.people).values() {
        tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The pattern matching every announcement channel under `prefix`, whose glob
/// characters are escaped so that they match only themselves.
fn pattern(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 10);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push_str("changes:*");
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Changes;

    const WAIT: Duration = Duration::from_secs(5);

    async fn live_hub(redis: &Redis) -> ChangeHub {
        let hub = ChangeHub::start(redis.clone());
        let deadline = tokio::time::Instant::now() + WAIT;
        while !hub.is_live() {
            assert!(tokio::time::Instant::now() < deadline, "the hub subscribes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hub
    }

    /// Needs the Redis of `make test`.
    #[tokio::test]
    async fn an_announcement_wakes_that_persons_watches_only() {
        let redis = crate::testing::TestRedis::connect();
        let hub = live_hub(&redis).await;
        let mut ann = hub.watch("ann");
        let mut ann_too = hub.watch("ann");
        let mut bob = hub.watch("bob");

        Changes::new(redis.clone()).announce(&["ann"]);

        for w in [&mut ann, &mut ann_too] {
            let got = tokio::time::timeout(WAIT, w.changed()).await;
            assert!(got.is_ok(), "ann's watches are woken");
        }
        let quiet = tokio::time::timeout(Duration::from_millis(300), bob.changed()).await;
        assert!(quiet.is_err(), "bob's is not");
    }

    #[tokio::test]
    async fn many_watches_share_one_subscription_and_leave_no_entry_behind() {
        let redis = crate::testing::TestRedis::connect();
        let hub = live_hub(&redis).await;
        let watches: Vec<PersonWatch> =
            (0..10).map(|i| hub.watch(&format!("p{}", i % 3))).collect();
        assert_eq!(hub.watched_people(), 3);

        // PUBLISH answers how many connections received the message.
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(redis.keys().changes("p0"))
            .arg("1")
            .query_async(&mut redis.conn().await.expect("redis answers"))
            .await
            .expect("publish");
        assert_eq!(receivers, 1);

        drop(watches);
        assert_eq!(hub.watched_people(), 0);
    }

    #[tokio::test]
    async fn a_prefix_with_glob_characters_hears_only_its_own_channels() {
        let redis = crate::testing::TestRedis::connect();
        // A hub whose prefix, taken as a glob, would match the test's own channels.
        let globby = Redis::connect(
            &crate::testing::redis_url(),
            "herald_test_*",
            crate::Partitions::default(),
        )
        .expect("lazy connect");
        let _other = live_hub(&globby).await;
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(redis.keys().changes("ann"))
            .arg("1")
            .query_async(&mut redis.conn().await.expect("redis answers"))
            .await
            .expect("publish");
        assert_eq!(
            receivers, 0,
            "the literal prefix herald_test_* is not the test's"
        );
    }

    /// A TCP proxy to the test Redis whose connections the test can cut.
    struct Proxy {
        url: String,
        links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    }

    impl Proxy {
        async fn start() -> Proxy {
            let client = redis::Client::open(crate::testing::redis_url()).expect("url");
            let redis::ConnectionAddr::Tcp(host, port) = client.get_connection_info().addr() else {
                panic!("the test Redis is reached over plain TCP");
            };
            let target = format!("{host}:{port}");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("port");
            let url = format!("redis://{}", listener.local_addr().expect("bound"));
            let links = Arc::new(Mutex::new(Vec::new()));
            let held = links.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    let link = tokio::spawn(async move {
                        if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                    lock(&held).push(link);
                }
            });
            Proxy { url, links }
        }

        /// Closes every connection made so far, as a Redis restart would.
        fn cut(&self) {
            for link in lock(&self.links).drain(..) {
                link.abort();
            }
        }
    }

    #[tokio::test]
    async fn a_lost_connection_wakes_every_watch_and_the_hub_subscribes_again() {
        let proxy = Proxy::start().await;
        let prefix = crate::testing::prefix();
        let through_proxy = Redis::connect(&proxy.url, &prefix, crate::Partitions::default())
            .expect("lazy connect");
        let hub = live_hub(&through_proxy).await;
        let mut watch = hub.watch("ann");

        proxy.cut();

        // Woken when the subscription is lost (to poll) and when it is back (to read
        // what was missed), and then live again.
        let woken = tokio::time::timeout(WAIT, watch.changed()).await;
        assert!(woken.is_ok(), "woken by the loss");
        let deadline = tokio::time::Instant::now() + RECONNECT_AFTER + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let woken = tokio::time::timeout(left, watch.changed()).await;
            assert!(woken.is_ok(), "woken once subscribed again");
            if watch.is_live() {
                break;
            }
        }
        let direct = Redis::connect(
            &crate::testing::redis_url(),
            &prefix,
            crate::Partitions::default(),
        )
        .expect("url");
        crate::Changes::new(direct).announce(&["ann"]);
        let woken = tokio::time::timeout(WAIT, watch.changed()).await;
        assert!(woken.is_ok(), "announcements are heard again");
    }

    #[test]
    fn the_pattern_escapes_the_prefix() {
        assert_eq!(pattern("herald:"), "herald:changes:*");
        assert_eq!(pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:changes:*");
    }
}
