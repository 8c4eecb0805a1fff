//! The queue over Redis Streams; see the crate docs for the design.

use crate::job::{Job, QueueName};
use crate::keys::{Keys, GROUP};
use deadpool_redis::{Manager, Pool, Runtime};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, RedisError, Script, Value};
use std::time::Duration;

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

/// A job read from a stream, to be acknowledged when handled.
#[derive(Debug, Clone)]
pub struct Received {
    pub queue: QueueName,
    pub entry_id: String,
    /// `None` when the entry could not be decoded; it should be acknowledged and dropped.
    pub job: Option<Job>,
}

/// Moves due members of the delayed set onto their streams. Members are
/// `{queue}|{job json}`; doing it in one script makes the move atomic, so a job is
/// never in both places or in neither.
const PROMOTE_DUE: &str = r#"
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(items) do
  local sep = string.find(member, '|', 1, true)
  if sep then
    redis.call('XADD', ARGV[3] .. string.sub(member, 1, sep - 1), '*', 'job', string.sub(member, sep + 1))
  end
  redis.call('ZREM', KEYS[1], member)
end
return #items
"#;

/// The enqueue time (epoch ms, from the entry id) of the oldest entry of KEYS that the
/// consumer group ARGV[1] has not read yet; -1 when it has read everything.
const OLDEST_UNREAD: &str = r#"
local oldest = -1
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local name, last
      for i = 1, #g, 2 do
        if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
      end
      if name == ARGV[1] and last then
        local first = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
        if #first > 0 then
          local ms = tonumber(string.match(first[1][1], '^(%d+)'))
          if ms and (oldest < 0 or ms < oldest) then oldest = ms end
        end
      end
    end
  end
end
return oldest
"#;

/// Counts a hit on KEYS[1], which expires ARGV[1] ms after the first hit; returns the
/// count. One script, so the expiry is never missed between the two commands.
const COUNT_HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

/// Deletes a lock only if it still holds our token.
const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

#[derive(Clone)]
pub struct Queue {
    /// One multiplexed connection shared by every non-blocking command: concurrent
    /// callers' commands are pipelined on it, and taking it costs nothing. (A pool
    /// checkout costs an UNWATCH + PING round trip, as much as the command itself.)
    /// It reconnects by itself after Redis restarts.
    shared: ConnectionManager,
    /// Connections for blocking reads, which would stall the shared connection.
    pool: Pool,
    keys: Keys,
}

impl Queue {
    /// Connects lazily: a Redis that is down turns into errors on use, not here.
    /// `pool_size` bounds open connections; blocking reads hold one each.
    pub fn connect(redis_url: &str, prefix: &str, pool_size: usize) -> Result<Queue, QueueError> {
        // Blocking reads wait up to a second; the default 500 ms response timeout
        // would cut them off.
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let manager = Manager::new_with_config(redis_url, config)?;
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        // One reconnect try per failed command: while Redis is down, callers get an
        // error quickly (and retry on their own schedule) instead of queueing behind
        // a long reconnect loop.
        let shared_config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let client = redis::Client::open(redis_url)?;
        let shared = ConnectionManager::new_lazy_with_config(client, shared_config)?;
        Ok(Queue {
            shared,
            pool,
            keys: Keys::new(prefix),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The shared connection, for any command that does not block.
    pub(crate) async fn conn(&self) -> Result<ConnectionManager, QueueError> {
        Ok(self.shared.clone())
    }

    /// A connection of its own, for a blocking read.
    async fn blocking_conn(&self) -> Result<deadpool_redis::Connection, QueueError> {
        Ok(self.pool.get().await?)
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        Ok(())
    }

    /// Creates both streams and the consumer group where missing. The group starts at
    /// `0` so that entries added while it did not exist (after a Redis restart) are
    /// still delivered.
    pub async fn ensure_groups(&self) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        for q in QueueName::ALL {
            let res: Result<String, RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys.stream(q))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut c)
                .await;
            match res {
                Ok(_) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Appends jobs to their streams in one pipelined round trip.
    pub async fn enqueue(&self, jobs: &[(QueueName, Job)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (q, job) in jobs {
            pipe.cmd("XADD")
                .arg(self.keys.stream(*q))
                .arg("*")
                .arg("job")
                .arg(job.to_json())
                .ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// Puts jobs in the delayed set, due at epoch milliseconds. Scheduling the same
    /// job again only moves its due time.
    pub async fn schedule(&self, jobs: &[(QueueName, Job, i64)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (q, job, due_ms) in jobs {
            pipe.cmd("ZADD")
                .arg(self.keys.delayed())
                .arg(*due_ms)
                .arg(format!("{}|{}", q.as_str(), job.to_json()))
                .ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// Moves up to `limit` jobs due at or before `now_ms` onto their streams.
    pub async fn promote_due(&self, now_ms: i64, limit: usize) -> Result<usize, QueueError> {
        let mut c = self.conn().await?;
        let moved: usize = Script::new(PROMOTE_DUE)
            .key(self.keys.delayed())
            .arg(now_ms)
            .arg(limit)
            .arg(self.keys.stream_prefix())
            .invoke_async(&mut c)
            .await?;
        Ok(moved)
    }

    /// Reads up to `count` new jobs for `consumer` from `queues` (in priority order):
    /// the first queue without waiting, then all of them, blocking up to `block`.
    pub async fn read(
        &self,
        consumer: &str,
        queues: &[QueueName],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        if queues.len() > 1 {
            let first = self
                .read_streams(consumer, count, None, &queues[..1])
                .await?;
            if !first.is_empty() {
                return Ok(first);
            }
        }
        self.read_streams(consumer, count, Some(block), queues)
            .await
    }

    async fn read_streams(
        &self,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
        queues: &[QueueName],
    ) -> Result<Vec<Received>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        for q in queues {
            cmd.arg(self.keys.stream(*q));
        }
        for _ in queues {
            cmd.arg(">");
        }
        let reply: Result<Option<StreamReadReply>, RedisError> = match block {
            Some(_) => cmd.query_async(&mut self.blocking_conn().await?).await,
            None => cmd.query_async(&mut self.conn().await?).await,
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost our streams (a restart): recreate them; the next read works.
                tracing::warn!("consumer group missing, recreating the queues");
                self.ensure_groups().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(queue) = self.queue_of(&key.key) else {
                continue;
            };
            out.extend(key.ids.into_iter().map(|entry| decode(queue, entry)));
        }
        Ok(out)
    }

    fn queue_of(&self, stream: &str) -> Option<QueueName> {
        QueueName::ALL
            .into_iter()
            .find(|q| self.keys.stream(*q) == stream)
    }

    /// Takes over up to `count` jobs per stream that another consumer read but has not
    /// acknowledged for `min_idle` (it probably died).
    pub async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Received>, QueueError> {
        let mut out = Vec::new();
        let mut c = self.conn().await?;
        for q in QueueName::ALL {
            let reply: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys.stream(q))
                .arg(GROUP)
                .arg(consumer)
                .arg(min_idle.as_millis() as u64)
                .arg("0-0")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut c)
                .await;
            match reply {
                Ok(reply) => out.extend(reply.claimed.into_iter().map(|e| decode(q, e))),
                Err(e) if e.code() == Some("NOGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Acknowledges and deletes handled entries of one stream.
    pub async fn ack(&self, queue: QueueName, entry_ids: &[String]) -> Result<(), QueueError> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let stream = self.keys.stream(queue);
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(entry_ids)
            .ignore();
        pipe.cmd("XDEL").arg(&stream).arg(entry_ids).ignore();
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// When the oldest job that no worker has read yet was enqueued (epoch ms), over
    /// every stream; None when all have been read. Work queued behind a backlog is
    /// late, not lost: the recovery sweep measures "overdue" from this instant.
    pub async fn oldest_unread_ms(&self) -> Result<Option<i64>, QueueError> {
        let mut c = self.conn().await?;
        let script = Script::new(OLDEST_UNREAD);
        let mut invocation = script.prepare_invoke();
        for q in QueueName::ALL {
            invocation.key(self.keys.stream(q));
        }
        let ms: i64 = invocation.arg(GROUP).invoke_async(&mut c).await?;
        Ok((ms >= 0).then_some(ms))
    }

    /// Marks each of `names` for `ttl` unless it is marked already; returns, in order,
    /// whether each mark is new. The recovery sweep marks what it re-enqueues, so that
    /// a lost job is enqueued again once, not on every pass while its copy waits in a
    /// backlog. Marks vanish with Redis's data, exactly like the jobs they stand for.
    pub async fn mark_new(&self, names: &[String], ttl: Duration) -> Result<Vec<bool>, QueueError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in names {
            pipe.cmd("SET")
                .arg(format!("{}mark:{name}", self.keys.prefix()))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64);
        }
        let mut c = self.conn().await?;
        let set: Vec<Option<String>> = pipe.query_async(&mut c).await?;
        Ok(set.into_iter().map(|s| s.is_some()).collect())
    }

    /// Removes marks set by [`Queue::mark_new`] (when the enqueue they announced failed).
    pub async fn unmark(&self, names: &[String]) -> Result<(), QueueError> {
        if names.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = names
            .iter()
            .map(|name| format!("{}mark:{name}", self.keys.prefix()))
            .collect();
        let mut c = self.conn().await?;
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Counts one hit on the counter `name` (under this queue's prefix), which lives
    /// `ttl` from its first hit; returns the count so far. The api's rate limit per
    /// key counts its windows with it.
    pub async fn count_hit(&self, name: &str, ttl: Duration) -> Result<u64, QueueError> {
        let mut c = self.conn().await?;
        let n: u64 = Script::new(COUNT_HIT)
            .key(format!("{}{name}", self.keys.prefix()))
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(n)
    }

    /// Jobs waiting on each stream, and in the delayed set.
    pub async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let mut c = self.conn().await?;
        let (critical, default, delayed): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(self.keys.stream(QueueName::Critical))
            .cmd("XLEN")
            .arg(self.keys.stream(QueueName::Default))
            .cmd("ZCARD")
            .arg(self.keys.delayed())
            .query_async(&mut c)
            .await?;
        Ok(QueueDepths {
            critical,
            default,
            delayed,
        })
    }

    /// Takes a lock for `ttl` if free; `token` identifies the holder.
    pub async fn try_lock(
        &self,
        name: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, QueueError> {
        let mut c = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.lock(name))
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    pub async fn unlock(&self, name: &str, token: &str) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        Script::new(UNLOCK)
            .key(self.keys.lock(name))
            .arg(token)
            .invoke_async::<i64>(&mut c)
            .await?;
        Ok(())
    }

    /// Records that a worker is alive, with what it serves, for `ttl`.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        info: &str,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        redis::cmd("SET")
            .arg(self.keys.heartbeat(worker_id))
            .arg(info)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// The live workers' heartbeat payloads.
    pub async fn live_workers(&self) -> Result<Vec<String>, QueueError> {
        let mut c = self.conn().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(self.keys.heartbeat_pattern())
            .query_async(&mut c)
            .await?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
        Ok(values.into_iter().flatten().collect())
    }

    /// Deletes every key under this queue's prefix (tests clean up with it).
    pub async fn purge(&self) -> Result<(), QueueError> {
        let mut c = self.conn().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.keys.prefix()))
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut c)
                .await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepths {
    pub critical: u64,
    pub default: u64,
    pub delayed: u64,
}

fn decode(queue: QueueName, entry: StreamId) -> Received {
    let job = match entry.map.get("job") {
        Some(Value::BulkString(bytes)) => serde_json::from_slice(bytes).ok(),
        Some(Value::SimpleString(s)) => serde_json::from_str(s).ok(),
        _ => None,
    };
    Received {
        queue,
        entry_id: entry.id,
        job,
    }
}

impl Queue {
    /// The pub/sub channel announcing changes to a person's notifications.
    pub fn changes_channel(&self, user_id: &str) -> String {
        format!("{}changes:{user_id}", self.keys.prefix())
    }

    /// Announces that these people's notifications changed (created, sent, failed,
    /// read). Only a signal: subscribers read what changed from Postgres, so a lost
    /// message costs latency, never data.
    pub async fn publish_changes(&self, user_ids: &[&str]) -> Result<(), QueueError> {
        if user_ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for user_id in user_ids {
            pipe.cmd("PUBLISH")
                .arg(self.changes_channel(user_id))
                .arg("1")
                .ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }
}
