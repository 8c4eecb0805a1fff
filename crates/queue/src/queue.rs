//! The job queue: the streams, the delayed set and acknowledgements (see the crate
//! docs for the design). Everything else kept in Redis lives in the helpers beside it.

use crate::connection::{Conn, Redis};
use crate::error::QueueError;
use crate::job::{Job, Lane, Partition, Partitions, QueueName};
use crate::keys::{Keys, GROUP};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Script, Value};
use std::time::Duration;

/// A job read from a stream, to be acknowledged when handled.
#[derive(Debug, Clone)]
pub struct Received {
    pub lane: Lane,
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
/// and counts it; answers 1 per job enqueued, 0 per job skipped. KEYS[1]: the
/// partition's delayed set, only to route the script to the partition's node. ARGV: the
/// partition's counters' prefix, its streams' prefix, the counters' ttl (ms), then
/// (queue, marker, json) triples.
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

/// Acknowledges and deletes entries of the streams KEYS (group ARGV[1]); each one
/// acknowledged for the first time takes one off its job's "queued" counter, deleted
/// at zero. From ARGV[2], per stream in KEYS order: the counters' prefix, the number of
/// entries n, then n (entry id, marker or '') pairs. A second acknowledgement of one
/// entry (two workers ran it) counts nothing.
const ACK: &str = r#"
local group = ARGV[1]
local a = 2
local done = 0
for k = 1, #KEYS do
  local prefix = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, n do
    local id, marker = ARGV[a], ARGV[a + 1]
    a = a + 2
    local acked = redis.call('XACK', KEYS[k], group, id)
    redis.call('XDEL', KEYS[k], id)
    if acked == 1 and marker ~= '' then
      local key = prefix .. marker
      if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
    end
    done = done + acked
  end
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

    /// How work is split, and so which lane each job takes.
    pub fn partitions(&self) -> Partitions {
        self.redis.partitions()
    }

    /// Whether Redis answers (the api's health check; in a cluster, every master).
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        Ok(())
    }

    /// Records how many partitions this deployment uses, or checks that it is the
    /// number already recorded: processes disagreeing on it would put a person's jobs
    /// on streams no worker reads. Changing it on a running system is refused (see the
    /// README for the procedure: drain, then delete `{prefix}partitions`).
    pub async fn claim_layout(&self) -> Result<(), QueueError> {
        let ours = self.partitions().count();
        let mut c = self.redis.conn().await?;
        let key = self.keys().partition_count();
        let (_, recorded): ((), Option<u16>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(ours)
            .arg("NX")
            .cmd("GET")
            .arg(&key)
            .query_async(&mut c)
            .await?;
        match recorded {
            Some(theirs) if theirs != ours => Err(QueueError::Layout(format!(
                "this Redis holds Herald's work in {theirs} partitions (key {key}), but \
                 HERALD_PARTITIONS is {ours}: start every process with \
                 HERALD_PARTITIONS={theirs}, or change the number as the README's \
                 \"Partitions\" section says (drain the queues, then delete {key})"
            ))),
            _ => Ok(()),
        }
    }

    /// Creates every partition's streams and the consumer group where missing.
    pub async fn ensure_groups(&self) -> Result<(), QueueError> {
        let all = self.partitions().all();
        futures::future::try_join_all(all.into_iter().map(|p| self.ensure_partition_groups(p)))
            .await?;
        Ok(())
    }

    /// Creates one partition's streams and the consumer group where missing. The group
    /// starts at `0` so that entries added while it did not exist (after a Redis
    /// restart) are still delivered.
    pub async fn ensure_partition_groups(&self, partition: Partition) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        for q in QueueName::ALL {
            let res: Result<String, RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.keys().stream(Lane::new(partition, q)))
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

    /// Appends jobs to their streams: one pipelined round trip (on a cluster one per
    /// partition, those in parallel: a cluster takes no pipeline across slots). Each job
    /// also counts in its "queued" counter (`{prefix}{pN}:queued:{marker}`), which its
    /// acknowledgement takes back: while it is positive a copy is on a stream, read or
    /// not, and the recovery sweep adds none ([`Queue::enqueue_absent`]).
    pub async fn enqueue(&self, jobs: &[(Lane, Job)]) -> Result<(), QueueError> {
        let ttl = QUEUED_TTL.as_millis() as u64;
        let pipes = self
            .slot_groups(jobs, |(lane, _)| lane.partition)
            .into_iter()
            .map(|jobs| {
                let mut pipe = redis::pipe();
                for (lane, job) in jobs {
                    let queued = self.keys().queued(lane.partition, &job.marker());
                    pipe.cmd("XADD")
                        .arg(self.keys().stream(*lane))
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
                pipe
            });
        self.run_pipelines(pipes).await
    }

    /// Puts jobs in their partitions' delayed sets, due at epoch milliseconds.
    /// Scheduling the same job again only moves its due time.
    pub async fn schedule(&self, jobs: &[(Lane, Job, i64)]) -> Result<(), QueueError> {
        let pipes = self
            .slot_groups(jobs, |(lane, _, _)| lane.partition)
            .into_iter()
            .map(|jobs| {
                let mut pipe = redis::pipe();
                for (lane, job, due_ms) in jobs {
                    pipe.cmd("ZADD")
                        .arg(self.keys().delayed(lane.partition))
                        .arg(*due_ms)
                        .arg(format!("{}|{}", lane.queue.as_str(), job.to_json()))
                        .ignore();
                }
                pipe
            });
        self.run_pipelines(pipes).await
    }

    /// Items grouped for commands that name their keys together (a pipeline, a script,
    /// a read): one group on one Redis; on a cluster one per partition, whose keys
    /// share a slot.
    fn slot_groups<'a, T>(
        &self,
        items: &'a [T],
        partition: impl Fn(&T) -> Partition,
    ) -> Vec<Vec<&'a T>> {
        if self.redis.is_cluster() {
            by_partition(items, partition)
                .into_iter()
                .map(|(_, group)| group)
                .collect()
        } else if items.is_empty() {
            Vec::new()
        } else {
            vec![items.iter().collect()]
        }
    }

    async fn run_pipelines(
        &self,
        pipes: impl Iterator<Item = redis::Pipeline>,
    ) -> Result<(), QueueError> {
        let c = self.redis.conn().await?;
        futures::future::try_join_all(pipes.map(|pipe| {
            let mut c = c.clone();
            async move { pipe.query_async::<()>(&mut c).await }
        }))
        .await?;
        Ok(())
    }

    /// Enqueues those of `jobs` with no copy on a stream (read or not), in one atomic
    /// step per partition; returns, in order, whether each was enqueued. The recovery
    /// sweep's way in: it never adds a second copy of work already queued.
    pub async fn enqueue_absent(&self, jobs: &[(Lane, Job)]) -> Result<Vec<bool>, QueueError> {
        let groups = by_partition_indexed(jobs, |(lane, _)| lane.partition);
        let c = self.redis.conn().await?;
        let answers = futures::future::try_join_all(groups.iter().map(|(partition, jobs)| {
            let mut c = c.clone();
            let route_key = self.keys().delayed(*partition);
            let mut args = vec![
                self.keys().queued_prefix(*partition),
                self.keys().stream_prefix(*partition),
                QUEUED_TTL.as_millis().to_string(),
            ];
            for (_, (lane, job)) in jobs {
                args.extend([lane.queue.as_str().to_string(), job.marker(), job.to_json()]);
            }
            async move {
                let script = Script::new(ENQUEUE_ABSENT);
                // The key only routes the script to the partition's node; the script
                // names the partition's other keys from the prefixes, all in its slot.
                script
                    .key(route_key)
                    .arg(args)
                    .invoke_async::<Vec<i64>>(&mut c)
                    .await
            }
        }))
        .await?;
        let mut out = vec![false; jobs.len()];
        for ((_, group), added) in groups.iter().zip(answers) {
            for ((i, _), a) in group.iter().zip(added) {
                out[*i] = a == 1;
            }
        }
        Ok(out)
    }

    /// Moves up to `limit` jobs of `partition` due at or before `now_ms` onto their
    /// streams.
    pub async fn promote_due(
        &self,
        partition: Partition,
        now_ms: i64,
        limit: usize,
    ) -> Result<usize, QueueError> {
        let mut c = self.redis.conn().await?;
        let moved: usize = Script::new(PROMOTE_DUE)
            .key(self.keys().delayed(partition))
            .arg(now_ms)
            .arg(limit)
            .arg(self.keys().stream_prefix(partition))
            .arg(self.keys().queued_prefix(partition))
            .arg(QUEUED_TTL.as_millis() as u64)
            .invoke_async(&mut c)
            .await?;
        Ok(moved)
    }

    /// A reader of one partition's streams, with a connection of its own for blocking.
    pub fn reader(&self, partition: Partition) -> Reader {
        Reader::new(self.clone(), vec![partition])
    }

    /// The readers a worker serving `served` runs: on one Redis a single reader over
    /// every served partition's streams (one `XREADGROUP` for all: sixteen readers took
    /// a job or two per read, 39,030 reads for 40,000 jobs in `make bench`'s drain); on
    /// a Redis Cluster one per partition, since a command cannot name keys of several
    /// slots.
    pub fn readers(&self, served: &[Partition]) -> Vec<Reader> {
        self.slot_groups(served, |p| *p)
            .into_iter()
            .map(|group| Reader::new(self.clone(), group.into_iter().copied().collect()))
            .collect()
    }

    /// Takes over up to `count` jobs per stream of `partition` that another consumer
    /// read but has not acknowledged for `min_idle` (it probably died), each with its
    /// delivery count.
    pub async fn reclaim(
        &self,
        consumer: &str,
        partition: Partition,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Received>, QueueError> {
        let mut out = Vec::new();
        let mut c = self.redis.conn().await?;
        for q in QueueName::ALL {
            let lane = Lane::new(partition, q);
            let reply: Result<StreamAutoClaimReply, RedisError> = redis::cmd("XAUTOCLAIM")
                .arg(self.keys().stream(lane))
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
            let counts = self.delivery_counts(lane, &claimed).await?;
            out.extend(
                claimed
                    .into_iter()
                    .zip(counts)
                    .map(|(entry, n)| decode(lane, entry, n)),
            );
        }
        Ok(out)
    }

    /// The delivery count of each entry (XPENDING per id, pipelined); 1 for an entry
    /// no longer pending.
    async fn delivery_counts(
        &self,
        lane: Lane,
        entries: &[StreamId],
    ) -> Result<Vec<u64>, QueueError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let stream = self.keys().stream(lane);
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("XPENDING")
                .arg(&stream)
                .arg(GROUP)
                .arg(&e.id)
                .arg(&e.id)
                .arg(1);
        }
        let mut c = self.redis.conn().await?;
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
        lane: Lane,
        consumer: &str,
        entry_id: &str,
    ) -> Result<bool, QueueError> {
        let mut c = self.redis.conn().await?;
        let kept: i64 = Script::new(KEEP_CLAIM)
            .key(self.keys().stream(lane))
            .arg(GROUP)
            .arg(consumer)
            .arg(entry_id)
            .invoke_async(&mut c)
            .await?;
        Ok(kept == 1)
    }

    /// Acknowledges and deletes one lane's entries (see [`Queue::ack_lanes`]).
    pub async fn ack(&self, lane: Lane, entries: &[Handled]) -> Result<(), QueueError> {
        self.ack_lanes(&[(lane, entries)]).await
    }

    /// Acknowledges and deletes handled entries, each (entry id, its job's marker; `None`
    /// for an undecodable entry). Each entry acknowledged the first time takes one off
    /// its job's "queued" counter. One script for all lanes on one Redis; on a cluster
    /// one per partition (a script cannot span slots), those concurrently.
    pub async fn ack_lanes(&self, lanes: &[LaneAcks<'_>]) -> Result<(), QueueError> {
        let lanes: Vec<LaneAcks<'_>> = lanes
            .iter()
            .filter(|(_, entries)| !entries.is_empty())
            .copied()
            .collect();
        let invocations: Vec<_> = self
            .slot_groups(&lanes, |(lane, _)| lane.partition)
            .into_iter()
            .map(|group| self.ack_invocation(&group))
            .collect();
        let c = self.redis.conn().await?;
        // Every script runs even when another's fails: each acknowledged job is one
        // less to run again.
        let results = futures::future::join_all(invocations.iter().map(|invocation| {
            let mut c = c.clone();
            async move { invocation.invoke_async::<i64>(&mut c).await }
        }))
        .await;
        results.into_iter().try_for_each(|r| r.map(drop))?;
        Ok(())
    }

    fn ack_invocation(&self, lanes: &[&LaneAcks<'_>]) -> redis::ScriptInvocation<'static> {
        // Hashed once: a `Script` is its text and SHA-1.
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(ACK));
        let mut invocation = SCRIPT.prepare_invoke();
        invocation.arg(GROUP);
        for (lane, entries) in lanes {
            invocation
                .key(self.keys().stream(*lane))
                .arg(self.keys().queued_prefix(lane.partition))
                .arg(entries.len());
            for (id, marker) in entries.iter() {
                invocation.arg(id).arg(marker.as_deref().unwrap_or(""));
            }
        }
        invocation
    }

    /// Remembers why an entry's run failed, for its dead letter should it come to that.
    pub async fn record_failure(
        &self,
        lane: Lane,
        entry_id: &str,
        error: &str,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        redis::cmd("SET")
            .arg(self.keys().failure(lane, entry_id))
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
        lane: Lane,
        entry_id: &str,
    ) -> Result<Option<String>, QueueError> {
        let mut c = self.redis.conn().await?;
        Ok(redis::cmd("GET")
            .arg(self.keys().failure(lane, entry_id))
            .query_async(&mut c)
            .await?)
    }

    /// When the oldest job that no worker has read yet was enqueued (epoch ms), over
    /// every partition's streams; None when all have been read. Work queued behind a
    /// backlog is late, not lost: the recovery sweep measures "overdue" from this
    /// instant.
    pub async fn oldest_unread_ms(&self) -> Result<Option<i64>, QueueError> {
        let c = self.redis.conn().await?;
        let per_partition =
            futures::future::try_join_all(self.partitions().all().into_iter().map(|p| {
                let mut c = c.clone();
                let streams: Vec<String> = QueueName::ALL
                    .iter()
                    .map(|q| self.keys().stream(Lane::new(p, *q)))
                    .collect();
                async move {
                    Script::new(OLDEST_UNREAD)
                        .key(streams)
                        .arg(GROUP)
                        .invoke_async::<i64>(&mut c)
                        .await
                }
            }))
            .await?;
        Ok(per_partition.into_iter().filter(|ms| *ms >= 0).min())
    }

    /// Jobs waiting on each queue, and in the delayed sets, summed over the partitions.
    pub async fn depths(&self) -> Result<QueueDepths, QueueError> {
        let c = self.redis.conn().await?;
        let per_partition =
            futures::future::try_join_all(self.partitions().all().into_iter().map(|p| {
                let mut c = c.clone();
                let mut pipe = redis::pipe();
                pipe.cmd("XLEN")
                    .arg(self.keys().stream(Lane::new(p, QueueName::Critical)))
                    .cmd("XLEN")
                    .arg(self.keys().stream(Lane::new(p, QueueName::Default)))
                    .cmd("ZCARD")
                    .arg(self.keys().delayed(p));
                async move { pipe.query_async::<(u64, u64, u64)>(&mut c).await }
            }))
            .await?;
        Ok(per_partition.into_iter().fold(
            QueueDepths::default(),
            |d, (critical, default, delayed)| QueueDepths {
                critical: d.critical + critical,
                default: d.default + default,
                delayed: d.delayed + delayed,
            },
        ))
    }

    /// Deletes every key under the prefix: the jobs and every helper's keys alike
    /// (tests clean up with it). In a cluster, KEYS asks every master.
    pub async fn purge(&self) -> Result<(), QueueError> {
        let mut c = self.redis.conn().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.keys().prefix()))
            .query_async(&mut c)
            .await?;
        // One key per DEL: a cluster refuses a DEL naming keys of several slots.
        futures::future::try_join_all(keys.iter().map(|key| {
            let mut c = c.clone();
            async move { redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await }
        }))
        .await?;
        Ok(())
    }
}

/// A handled entry to acknowledge: its id and its job's marker (`None` for an
/// undecodable entry).
pub type Handled = (String, Option<String>);

/// One lane's handled entries.
pub type LaneAcks<'a> = (Lane, &'a [Handled]);

/// Reads the streams of one or more partitions, on a connection of its own (a blocking
/// read would stall the shared one). A worker runs one per Redis, or one per partition
/// on a cluster ([`Queue::readers`]).
pub struct Reader {
    queue: Queue,
    partitions: Vec<Partition>,
    /// Each stream's key and lane: the keys a read names, and where an entry came from.
    lanes: Vec<(String, Lane)>,
    conn: Option<Conn>,
}

impl Reader {
    fn new(queue: Queue, partitions: Vec<Partition>) -> Reader {
        let lanes = partitions
            .iter()
            .flat_map(|p| QueueName::ALL.into_iter().map(|q| Lane::new(*p, q)))
            .map(|lane| (queue.keys().stream(lane), lane))
            .collect();
        Reader {
            queue,
            partitions,
            lanes,
            conn: None,
        }
    }

    /// The partitions this reader reads.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Reads up to `count` new jobs for `consumer` from `queues` (in priority order):
    /// the first queue without waiting, then all of them, blocking up to `block`.
    /// Over several partitions, each stream gives up to `count` divided by their
    /// number, and at least one: a read may return one job per stream more than
    /// `count`.
    pub async fn read(
        &mut self,
        consumer: &str,
        queues: &[QueueName],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Received>, QueueError> {
        let per_stream = (count / self.partitions.len().max(1)).max(1);
        if queues.len() > 1 {
            let first = self
                .read_streams(consumer, per_stream, None, &queues[..1])
                .await?;
            if !first.is_empty() {
                return Ok(first);
            }
        }
        self.read_streams(consumer, per_stream, Some(block), queues)
            .await
    }

    async fn read_streams(
        &mut self,
        consumer: &str,
        per_stream: usize,
        block: Option<Duration>,
        queues: &[QueueName],
    ) -> Result<Vec<Received>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(per_stream);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS");
        // Every partition's stream of the first queue, then of the next: the reply
        // keeps this order, and the worker starts the jobs in it.
        let mut streams = 0;
        for q in queues {
            for (key, _) in self.lanes.iter().filter(|(_, lane)| lane.queue == *q) {
                cmd.arg(key);
                streams += 1;
            }
        }
        for _ in 0..streams {
            cmd.arg(">");
        }
        let reply: Result<Option<StreamReadReply>, RedisError> = match block {
            Some(_) => {
                let mut conn = match self.conn.take() {
                    Some(conn) => conn,
                    None => self.queue.redis.blocking_conn().await?,
                };
                let reply = cmd.query_async(&mut conn).await;
                // A connection that failed is dropped; the next read opens another.
                if reply.is_ok() || reply.as_ref().is_err_and(|e| e.code().is_some()) {
                    self.conn = Some(conn);
                }
                reply
            }
            None => cmd.query_async(&mut self.queue.redis.conn().await?).await,
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost these partitions' streams (a restart, a failover to a
                // replica that had not received them): recreate them; the next read works.
                tracing::warn!(partitions = ?self.partitions, "consumer group missing, recreating the partitions' queues");
                for p in &self.partitions {
                    self.queue.ensure_partition_groups(*p).await?;
                }
                self.queue.claim_layout().await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(lane) = self.lane_of(&key.key) else {
                continue;
            };
            out.extend(key.ids.into_iter().map(|entry| decode(lane, entry, 1)));
        }
        Ok(out)
    }

    fn lane_of(&self, stream: &str) -> Option<Lane> {
        self.lanes
            .iter()
            .find(|(key, _)| key == stream)
            .map(|(_, lane)| *lane)
    }
}

/// Jobs grouped by partition, in order of first appearance, each group in order.
fn by_partition<T>(items: &[T], partition: impl Fn(&T) -> Partition) -> Vec<(Partition, Vec<&T>)> {
    by_partition_indexed(items, partition)
        .into_iter()
        .map(|(p, group)| (p, group.into_iter().map(|(_, item)| item).collect()))
        .collect()
}

/// As [`by_partition`], each item with its index in `items`.
fn by_partition_indexed<T>(
    items: &[T],
    partition: impl Fn(&T) -> Partition,
) -> Vec<(Partition, Vec<(usize, &T)>)> {
    let mut groups: Vec<(Partition, Vec<(usize, &T)>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = partition(item);
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, group)) => group.push((i, item)),
            None => groups.push((p, vec![(i, item)])),
        }
    }
    groups
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepths {
    pub critical: u64,
    pub default: u64,
    pub delayed: u64,
}

fn decode(lane: Lane, entry: StreamId, deliveries: u64) -> Received {
    let job = match entry.map.get("job") {
        Some(Value::BulkString(bytes)) => serde_json::from_slice(bytes).ok(),
        Some(Value::SimpleString(s)) => serde_json::from_str(s).ok(),
        _ => None,
    };
    Received {
        lane,
        entry_id: entry.id,
        job,
        deliveries,
    }
}
