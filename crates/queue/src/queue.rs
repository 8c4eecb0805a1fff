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
    /// How many times the group handed this entry to a consumer, this time included:
    /// 1 when read, more when reclaimed (the stream's delivery count).
    pub deliveries: u64,
}

impl Received {
    /// The job's "queued" counter name, to hand back with the acknowledgement.
    pub fn marker(&self) -> Option<String> {
        self.job.as_ref().map(Job::marker)
    }
}

/// How long a job's "queued" counter outlives its last enqueue. Only a safety net: the
/// counter goes when the last copy is acknowledged; should one ever be left behind,
/// the sweep trusts it for this long at most.
pub const QUEUED_TTL: Duration = Duration::from_secs(3600);

/// Moves due members of the delayed set onto their streams. Members are
/// `{queue}|{job json}`; doing it in one script makes the move atomic, so a job is
/// never in both places or in neither. Each job moved counts in its "queued" counter
/// (ARGV[4] prefix, ARGV[5] ttl ms), named from the JSON as `Job::marker` names it.
const PROMOTE_DUE: &str = r#"
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(items) do
  local sep = string.find(member, '|', 1, true)
  if sep then
    local body = string.sub(member, sep + 1)
    redis.call('XADD', ARGV[3] .. string.sub(member, 1, sep - 1), '*', 'job', body)
    local ok, job = pcall(cjson.decode, body)
    if ok and type(job) == 'table' and type(job.kind) == 'string' then
      local id = job.event_id or job.notification_id or job.bundle_id
      if type(id) == 'string' then
        local key = ARGV[4] .. job.kind .. ':' .. id
        redis.call('INCR', key)
        redis.call('PEXPIRE', key, ARGV[5])
      end
    end
  end
  redis.call('ZREM', KEYS[1], member)
end
return #items
"#;

/// Enqueues each job whose "queued" counter is not positive (no copy on any stream)
/// and counts it; answers 1 per job enqueued, 0 per job skipped. ARGV: the counters'
/// prefix, the streams' prefix, the counters' ttl (ms), then (queue, marker, json)
/// triples.
const ENQUEUE_ABSENT: &str = r#"
local out = {}
for i = 4, #ARGV, 3 do
  local key = ARGV[1] .. ARGV[i + 1]
  if (tonumber(redis.call('GET', key)) or 0) > 0 then
    out[#out + 1] = 0
  else
    redis.call('XADD', ARGV[2] .. ARGV[i], '*', 'job', ARGV[i + 2])
    redis.call('INCR', key)
    redis.call('PEXPIRE', key, ARGV[3])
    out[#out + 1] = 1
  end
end
return out
"#;

/// Acknowledges and deletes entries of the stream KEYS[1] (group ARGV[1]); each one
/// acknowledged for the first time takes one off its job's "queued" counter (prefix
/// ARGV[2]), deleted at zero. ARGV from 3: (entry id, marker or '') pairs. A second
/// acknowledgement of one entry (two workers ran it) counts nothing.
const ACK: &str = r#"
local done = 0
for i = 3, #ARGV, 2 do
  local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  redis.call('XDEL', KEYS[1], ARGV[i])
  if n == 1 and ARGV[i + 1] ~= '' then
    local key = ARGV[2] .. ARGV[i + 1]
    if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
  end
  done = done + n
end
return done
"#;

/// Resets the idle time of entry ARGV[3] of stream KEYS[1] (group ARGV[1]) if the
/// consumer ARGV[2] still holds it, without counting a delivery (JUSTID); 1 if it did.
/// A job another worker has taken over meanwhile is left to it.
const KEEP_CLAIM: &str = r#"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
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

    /// Appends jobs to their streams in one pipelined round trip. Each job also counts
    /// in its "queued" counter (`{prefix}queued:{marker}`), which its acknowledgement
    /// takes back: while it is positive a copy is on a stream, read or not, and the
    /// recovery sweep adds none ([`Queue::enqueue_absent`]).
    pub async fn enqueue(&self, jobs: &[(QueueName, Job)]) -> Result<(), QueueError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ttl = QUEUED_TTL.as_millis() as u64;
        let mut pipe = redis::pipe();
        for (q, job) in jobs {
            let queued = self.keys().queued(&job.marker());
            pipe.cmd("XADD")
                .arg(self.keys().stream(*q))
                .arg("*")
                .arg("job")
                .arg(job.to_json())
                .ignore()
                .cmd("INCR")
                .arg(&queued)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&queued)
                .arg(ttl)
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

    /// Enqueues those of `jobs` with no copy on a stream (read or not), in one atomic
    /// step; returns, in order, whether each was enqueued. The recovery sweep's way
    /// in: it never adds a second copy of work already queued.
    pub async fn enqueue_absent(&self, jobs: &[(QueueName, Job)]) -> Result<Vec<bool>, QueueError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let script = Script::new(ENQUEUE_ABSENT);
        let mut invocation = script.prepare_invoke();
        invocation
            .arg(self.keys().queued_prefix())
            .arg(self.keys().stream_prefix())
            .arg(QUEUED_TTL.as_millis() as u64);
        for (q, job) in jobs {
            invocation
                .arg(q.as_str())
                .arg(job.marker())
                .arg(job.to_json());
        }
        let mut c = self.redis.conn();
        let added: Vec<i64> = invocation.invoke_async(&mut c).await?;
        Ok(added.into_iter().map(|a| a == 1).collect())
    }

    /// Moves up to `limit` jobs due at or before `now_ms` onto their streams.
    pub async fn promote_due(&self, now_ms: i64, limit: usize) -> Result<usize, QueueError> {
        let mut c = self.redis.conn();
        let moved: usize = Script::new(PROMOTE_DUE)
            .key(self.keys().delayed())
            .arg(now_ms)
            .arg(limit)
            .arg(self.keys().stream_prefix())
            .arg(self.keys().queued_prefix())
            .arg(QUEUED_TTL.as_millis() as u64)
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
            out.extend(key.ids.into_iter().map(|entry| decode(queue, entry, 1)));
        }
        Ok(out)
    }

    fn queue_of(&self, stream: &str) -> Option<QueueName> {
        QueueName::ALL
            .into_iter()
            .find(|q| self.keys().stream(*q) == stream)
    }

    /// Takes over up to `count` jobs per stream that another consumer read but has not
    /// acknowledged for `min_idle` (it probably died), each with its delivery count.
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
            let claimed = match reply {
                Ok(reply) => reply.claimed,
                Err(e) if e.code() == Some("NOGROUP") => continue,
                Err(e) => return Err(e.into()),
            };
            let counts = self.delivery_counts(q, &claimed).await?;
            out.extend(
                claimed
                    .into_iter()
                    .zip(counts)
                    .map(|(entry, n)| decode(q, entry, n)),
            );
        }
        Ok(out)
    }

    /// The delivery count of each entry (XPENDING per id, pipelined); 1 for an entry
    /// no longer pending.
    async fn delivery_counts(
        &self,
        queue: QueueName,
        entries: &[StreamId],
    ) -> Result<Vec<u64>, QueueError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let stream = self.keys().stream(queue);
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1);
        }
        let mut c = self.redis.conn();
        let replies: Vec<Vec<(String, String, u64, u64)>> = pipe.query_async(&mut c).await?;
        Ok(replies
            .into_iter()
            .map(|r| r.first().map_or(1, |(_, _, _, n)| *n))
            .collect())
    }

    /// Resets the idle time of an entry `consumer` is still running, so that no other
    /// worker takes it over (`XCLAIM … JUSTID`, which counts no delivery). Returns false
    /// when `consumer` no longer holds it (acknowledged, or taken over already).
    pub async fn keep_claim(
        &self,
        queue: QueueName,
        consumer: &str,
        entry_id: &str,
    ) -> Result<bool, QueueError> {
        let mut c = self.redis.conn();
        let kept: i64 = Script::new(KEEP_CLAIM)
            .key(self.keys().stream(queue))
            .arg(GROUP)
            .arg(consumer)
            .arg(entry_id)
            .invoke_async(&mut c)
            .await?;
        Ok(kept == 1)
    }

    /// Acknowledges and deletes handled entries of one stream: (entry id, the job's
    /// marker) pairs, the marker `None` for an undecodable entry. Each entry
    /// acknowledged the first time takes one off its job's "queued" counter.
    pub async fn ack(
        &self,
        queue: QueueName,
        entries: &[(String, Option<String>)],
    ) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let script = Script::new(ACK);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys().stream(queue))
            .arg(GROUP)
            .arg(self.keys().queued_prefix());
        for (id, marker) in entries {
            invocation.arg(id).arg(marker.as_deref().unwrap_or(""));
        }
        let mut c = self.redis.conn();
        invocation.invoke_async::<i64>(&mut c).await?;
        Ok(())
    }

    /// Remembers why an entry's run failed, for its dead letter should it come to that.
    pub async fn record_failure(
        &self,
        queue: QueueName,
        entry_id: &str,
        error: &str,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let mut c = self.redis.conn();
        redis::cmd("SET")
            .arg(self.keys().failure(queue, entry_id))
            .arg(error)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// The error [`Queue::record_failure`] kept for an entry, if it still has one.
    pub async fn last_failure(
        &self,
        queue: QueueName,
        entry_id: &str,
    ) -> Result<Option<String>, QueueError> {
        let mut c = self.redis.conn();
        Ok(redis::cmd("GET")
            .arg(self.keys().failure(queue, entry_id))
            .query_async(&mut c)
            .await?)
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

fn decode(queue: QueueName, entry: StreamId, deliveries: u64) -> Received {
    let job = match entry.map.get("job") {
        Some(Value::BulkString(bytes)) => serde_json::from_slice(bytes).ok(),
        Some(Value::SimpleString(s)) => serde_json::from_str(s).ok(),
        _ => None,
    };
    Received {
        queue,
        entry_id: entry.id,
        job,
        deliveries,
    }
}
