//! The job queue: the streams, the delayed set and acknowledgements (see the crate
//! docs for the design). Everything else kept in Redis lives in the helpers beside it.

use crate::connection::Redis;
use crate::error::QueueError;
use crate::job::{Job, QueueName};
use crate::keys::{Keys, GROUP};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Script, Value};
use std::time::Duration;

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

/// The job queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    redis: Redis,
}

impl Queue {
    pub fn new(redis: Redis) -> Queue {
        Queue { redis }
    }

    pub fn keys(&self) -> &Keys {
        self.redis.keys()
    }

    /// Whether Redis answers (the api's health check).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.redis.conn();
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        Ok(())
    }

    /// Creates both streams and the consumer group where missing. The group starts at
    /// `0` so that entries added while it did not exist (after a Redis restart) are
    /// still delivered.
    pub async fn ensure_groups(&self) -> Result<(), QueueError> {
        let mut c = self.redis.conn();
        for q in QueueName::ALL {
            let res: Result<String, RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys().stream(q))
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
                .arg(self.keys().stream(*q))
                .arg("*")
                .arg("job")
                .arg(job.to_json())
                .ignore();
        }
        let mut c = self.redis.conn();
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
                .arg(self.keys().delayed())
                .arg(*due_ms)
                .arg(format!("{}|{}", q.as_str(), job.to_json()))
                .ignore();
        }
        let mut c = self.redis.conn();
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// Moves up to `limit` jobs due at or before `now_ms` onto their streams.
    pub async fn promote_due(&self, now_ms: i64, limit: usize) -> Result<usize, QueueError> {
        let mut c = self.redis.conn();
        let moved: usize = Script::new(PROMOTE_DUE)
            .key(self.keys().delayed())
            .arg(now_ms)
            .arg(limit)
            .arg(self.keys().stream_prefix())
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
            cmd.arg(self.keys().stream(*q));
        }
        for _ in queues {
            cmd.arg(">");
        }
        let reply: Result<Option<StreamReadReply>, RedisError> = match block {
            Some(_) => {
                cmd.query_async(&mut self.redis.blocking_conn().await?)
                    .await
            }
            None => cmd.query_async(&mut self.redis.conn()).await,
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
            .find(|q| self.keys().stream(*q) == stream)
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
        let mut c = self.redis.conn();
        for q in QueueName::ALL {
            let reply: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys().stream(q))
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
        let stream = self.keys().stream(queue);
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(entry_ids)
            .ignore();
        pipe.cmd("XDEL").arg(&stream).arg(entry_ids).ignore();
        let mut c = self.redis.conn();
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    /// When the oldest job that no worker has read yet was enqueued (epoch ms), over
    /// every stream; None when all have been read. Work queued behind a backlog is
    /// late, not lost: the recovery sweep measures "overdue" from this instant.
    pub async fn oldest_unread_ms(&self) -> Result<Option<i64>, QueueError> {
        let mut c = self.redis.conn();
        let script = Script::new(OLDEST_UNREAD);
        let mut invocation = script.prepare_invoke();
        for q in QueueName::ALL {
            invocation.key(self.keys().stream(q));
        }
        let ms: i64 = invocation.arg(GROUP).invoke_async(&mut c).await?;
        Ok((ms >= 0).then_some(ms))
    }

    /// Jobs waiting on each stream, and in the delayed set.
    pub async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let mut c = self.redis.conn();
        let (critical, default, delayed): (u64, u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(self.keys().stream(QueueName::Critical))
            .cmd("XLEN")
            .arg(self.keys().stream(QueueName::Default))
            .cmd("ZCARD")
            .arg(self.keys().delayed())
            .query_async(&mut c)
            .await?;
        Ok(QueueDepths {
            critical,
            default,
            delayed,
        })
    }

    /// Deletes every key under the prefix: the jobs and every helper's keys alike
    /// (tests clean up with it).
    pub async fn purge(&self) -> Result<(), QueueError> {
        let mut c = self.redis.conn();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.keys().prefix()))
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
