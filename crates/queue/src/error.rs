//! The one error of the Redis adapter. Callers branch on whether Redis could be
//! reached at all (`Unavailable`: retry later, or fall back to Postgres) or answered
//! with an error (`Redis`).

use redis::RedisError;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}
