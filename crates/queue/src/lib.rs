//! Herald's Redis adapter: the work queues between the api and the workers.
//!
//! # Design
//!
//! * **Streams.** Each queue (`critical`, `default`) is a Redis Stream
//!   `{prefix}queue:{name}` read through one consumer group, `workers`, so any number
//!   of worker processes share the work and each job goes to one of them. A job is
//!   acknowledged *and deleted* once handled, so a stream's length is its backlog.
//! * **Priority.** A worker first takes what waits on `critical` without blocking,
//!   and only when that is empty blocks on both streams (critical listed first).
//! * **At-least-once.** A job read but not acknowledged stays in the group's pending
//!   list. If its worker dies, another one takes it over with `XAUTOCLAIM` once it has
//!   been idle longer than the visibility timeout, which must exceed the longest
//!   delivery timeout (plus margin) so that a slow but live delivery is not duplicated.
//! * **Delayed jobs.** Retries and rule delays wait in the sorted set
//!   `{prefix}delayed`, scored by due time in epoch milliseconds; a scheduler loop moves
//!   due members onto their stream atomically (one Lua script), never a sleeping task.
//!   The due time is also in Postgres, so an emptied Redis loses nothing.
//! * **Self-healing.** Redis here keeps nothing on disk. Reading from a stream whose
//!   group vanished (`NOGROUP`) recreates the groups and carries on.
//! * **Circuits.** Per destination host, shared failure streaks (see `circuit`).
//! * **Change signals.** `PUBLISH {prefix}changes:{user_id}` tells the console's live
//!   streams (in any api process) that a person's notifications changed; what changed
//!   is read from Postgres (see `changes`).
//! * **Friend counters.** Per person and local day, the tours each friend told them
//!   (`{prefix}friends:…`, see `friend_activity`), which the bundling ranker reads.
//! * **Locks.** Short `SET NX PX` locks with a random token keep two workers from
//!   delivering the same notification at once.

mod changes;
mod circuit;
mod friend_activity;
mod job;
mod keys;
mod redis_queue;

pub use changes::ChangeSubscriber;
pub use friend_activity::FRIEND_COUNTS_TTL;
pub use job::{Job, QueueName};
pub use keys::Keys;
pub use redis_queue::{Queue, QueueDepths, QueueError, Received};
