//! The one error of the Redis adapter. Callers branch on whether Redis could be
//! reached at all (`Unavailable`: retry later, or fall back to Postgres) or answered
//! with an error (`Redis`); the other two are mistakes of configuration, reported at
//! start.

use redis::RedisError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// A Redis URL Herald cannot use.
    #[error("REDIS_URL: {0}")]
    Config(String),
    /// The partitions configured disagree with those this Redis's work is kept in.
    #[error("{0}")]
    Layout(String),
}
