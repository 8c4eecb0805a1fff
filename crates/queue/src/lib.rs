//! Herald's Redis adapter: the job queue between the api and the workers, and the
//! small shared helpers the processes coordinate through.
//!
//! # Modules
//!
//! | module            | type                        | what it keeps in Redis                                  |
//! |-------------------|-----------------------------|---------------------------------------------------------|
//! | `connection`      | [`Redis`]                   | nothing: the one handle every type below is built from  |
//! | `cluster_connection` | —                        | nothing: a cluster's shared connection, replaced when it stops answering |
//! | `queue`           | [`Queue`]                   | job streams, the delayed set, acknowledgements, the "queued" counters, failed runs' errors |
//! | `job`             | [`Job`], [`QueueName`]      | the jobs' JSON, in the stream entries                    |
//! | `locks`           | [`Locks`]                   | short `SET NX PX` locks with a holder token              |
//! | `backlog`         | [`Backlogs`]                | nothing: samples the streams and delayed set for metrics |
//! | `circuit`         | [`Circuits`]                | failure streaks per destination host                     |
//! | `counters`        | [`Counters`]                | expiring hit counters (the api's rate limit)             |
//! | `friend_activity` | [`FriendCounts`]            | tours per friend, person and day (the bundling ranker)   |
//! | `recent_writes`   | [`RecentWrites`]            | each person's last write position (read-your-writes)     |
//! | `heartbeats`      | [`Heartbeats`]              | the live workers and what they serve                     |
//! | `changes`         | [`Changes`]                 | pub/sub wake-ups of the live streams: one `announce`     |
//! | `change_hub`      | [`ChangeHub`]               | nothing: one pub/sub connection hearing them per process |
//! | `keys`            | [`Keys`]                    | the name of every key above, under one prefix            |
//! | `error`           | [`QueueError`]              | —                                                        |
//! | `testing`         | [`testing::TestRedis`]      | tests' keys, under a prefix of their own, deleted after   |
//!
//! A process connects once (`Redis::connect`) and builds the parts it uses with
//! `new(redis.clone())`; all of them share the handle's connections and are cheap to
//! clone. The parts do not call each other, except that a circuit's probe is claimed
//! with a lock.
//!
//! # Design
//!
//! * **Partitions.** Work is split into `HERALD_PARTITIONS` partitions by a hash of
//!   the person (or of the topic, for an event addressed to one): see
//!   `herald_core::partitions`. Every key of partition 7 carries the hash tag `{p7}`
//!   (`{prefix}{p7}:queue:default`), so in a Redis Cluster each partition's streams,
//!   delayed set and counters share a slot (scripts and pipelines over them work) while
//!   the partitions spread over the nodes. A job's [`Lane`] is its partition and queue.
//! * **Streams.** Each partition has two queues (`critical`, `default`), each a Redis
//!   Stream `{prefix}{pN}:queue:{name}` read through one consumer group, `workers`, so
//!   any number of worker processes share the work and each job goes to one of them. A
//!   job is acknowledged *and deleted* once handled, so a stream's length is its backlog.
//! * **Order.** A person's jobs of one priority are handed out in the order they were
//!   enqueued (one stream per partition and priority). Handlers run concurrently, so
//!   two of them may still finish out of order: the order is that of reading, not of
//!   completion.
//! * **Priority.** A worker reads the partitions it serves with one [`Reader`] (one
//!   per partition on a Redis Cluster): it first takes what waits on their `critical`
//!   streams without blocking, and only when those are empty blocks on all of them
//!   (critical listed first).
//! * **At-least-once.** A job read but not acknowledged stays in the group's pending
//!   list. If its worker dies, another one takes it over with `XAUTOCLAIM` once it has
//!   been idle longer than the visibility timeout, which must exceed the longest
//!   delivery timeout (plus margin) so that a slow but live delivery is not duplicated.
//! * **Delayed jobs.** Retries and rule delays wait in their partition's sorted set
//!   `{prefix}{pN}:delayed`, scored by due time in epoch milliseconds; a scheduler loop moves
//!   due members onto their stream atomically (one Lua script), never a sleeping task.
//!   The due time is also in Postgres, so an emptied Redis loses nothing.
//! * **Self-healing.** Redis here keeps nothing on disk. Reading from a partition whose
//!   group vanished (`NOGROUP`) recreates that partition's groups and carries on.
//! * **Layout.** `{prefix}partitions` records the number of partitions; a process
//!   configured with another number refuses to start (`Queue::claim_layout`).
//! * **Cluster.** `REDIS_URL=redis+cluster://host:port,...` names a Redis Cluster (see
//!   `connection`); every script and pipeline stays within one slot.
//! * **Connections.** Every command that answers at once shares one multiplexed
//!   connection; blocking reads take pooled connections of their own, and an api
//!   process's one pub/sub subscription (its `ChangeHub`) opens one (see `connection`).
//! * **Locks.** Short `SET NX PX` locks with a random token keep two workers from
//!   delivering the same notification at once (see `locks`).
//! * **Circuits.** Per destination host, shared failure streaks; the policy lives in
//!   `herald_core::circuit` (see `circuit`).
//! * **Queued counters.** Every enqueue (api, worker, scheduler script) counts the job
//!   in `{prefix}{pN}:queued:{kind}:{id}` and its first acknowledgement takes it back, so a
//!   positive counter means a copy is on a stream, read or not. The recovery sweep
//!   enqueues only where there is none, in one script: it never adds a second copy of
//!   queued work, however long it waits or fails.
//! * **Delivery counts.** A reclaimed job carries the stream's delivery count
//!   (`XPENDING`), by which the worker dead-letters a job that keeps failing; a failed
//!   run's error is kept a while (`{prefix}{pN}:failure:…`) to say why. A running job
//!   resets its idle time (`XCLAIM … JUSTID`, only while its consumer still holds it)
//!   so that a slow but live job is not taken over.
//! * **Counters.** `INCR` with an expiry set on the first hit, in one script; the
//!   api's rate limit per key (see `counters`).
//! * **Friend counters.** Per person and local day, the tours each friend told them
//!   (`{prefix}friends:…`, see `friend_activity`), which the bundling ranker reads.
//! * **Heartbeats.** Each worker renews `{prefix}worker:{id}`; the operations view
//!   lists the live ones (see `heartbeats`).
//! * **Change announcements.** `PUBLISH {prefix}changes:{user_id}` tells the console's
//!   live streams (in any api process) that a person's notifications changed; what
//!   changed is read from Postgres. The api and the workers both announce with
//!   [`Changes::announce`], which never waits and never fails (see `changes`). Each
//!   api process hears them all with one `PSUBSCRIBE {prefix}changes:*` and wakes its
//!   own streams of that person in memory (see `change_hub`).
//!
//! Nothing here is the record: Postgres is. Losing Redis's data costs latency (the
//! sweep re-enqueues, the streams re-check), never a notification.

mod backlog;
mod change_hub;
mod changes;
mod circuit;
mod cluster_connection;
mod connection;
mod counters;
mod error;
mod friend_activity;
mod heartbeats;
mod job;
mod keys;
mod locks;
mod queue;
mod rate;
mod recent_writes;
pub mod testing;

pub use backlog::{Backlog, Backlogs, StreamBacklog};
pub use change_hub::{ChangeHub, PersonWatch};
pub use changes::Changes;
pub use circuit::Circuits;
pub use connection::{cluster_seeds, Redis, CLUSTER_SCHEME};
pub use counters::Counters;
pub use error::QueueError;
pub use friend_activity::{FriendCounts, FRIEND_COUNTS_TTL};
pub use heartbeats::Heartbeats;
pub use job::{Job, Lane, Partition, Partitions, QueueName};
pub use keys::Keys;
pub use locks::Locks;
pub use queue::{Handled, LaneAcks, Queue, QueueDepths, Reader, Received, QUEUED_TTL};
pub use rate::RateLimits;
pub use recent_writes::RecentWrites;
