//! The queues' backlog as the metrics sample it: per stream its length (jobs not yet
//! acknowledged, since handled jobs are deleted) and how many of those a worker holds
//! (the group's pending list), and the delayed set's size, summed over the
//! partitions. One script per partition, whatever exists: a missing stream or group counts zero rather than failing.

use crate::connection::Redis;
use crate::error::QueueError;
use crate::job::{Lane, QueueName};
use crate::keys::GROUP;
use redis::Script;

/// KEYS: the streams, then the delayed set; ARGV[1]: the group. Returns, per stream,
/// its length and its group's pending count, then the delayed set's size.
const SAMPLE: &str = r#"
local out = {}
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local len, pending = 0, 0
  if redis.call('EXISTS', key) == 1 then
    len = redis.call('XLEN', key)
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local name, n
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1] elseif g[j] == 'pending' then n = g[j + 1] end
      end
      if name == ARGV[1] and n then pending = n end
    end
  end
  table.insert(out, len)
  table.insert(out, pending)
end
table.insert(out, redis.call('ZCARD', KEYS[#KEYS]))
return out
"#;

/// One stream's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBacklog {
    pub queue: QueueName,
    /// Entries in the stream: waiting or being handled.
    pub length: u64,
    /// Entries read by a worker and not yet acknowledged.
    pub pending: u64,
}

/// Every stream's backlog and the delayed set's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    pub streams: Vec<StreamBacklog>,
    pub delayed: u64,
}

/// Reads the backlog; cheap to clone.
#[derive(Clone)]
pub struct Backlogs {
    redis: Redis,
}

impl Backlogs {
    pub fn new(redis: Redis) -> Backlogs {
        Backlogs { redis }
    }

    /// Sums every partition's figures per queue (one script per partition, run
    /// concurrently: a partition's keys share a slot, different partitions do not).
    pub async fn sample(&self) -> Result<Backlog, QueueError> {
        let c = self.redis.conn().await?;
        let keys = self.redis.keys();
        let per_partition =
            futures::future::try_join_all(self.redis.partitions().all().into_iter().map(|p| {
                let mut c = c.clone();
                let mut names: Vec<String> = QueueName::ALL
                    .iter()
                    .map(|q| keys.stream(Lane::new(p, *q)))
                    .collect();
                names.push(keys.delayed(p));
                async move {
                    let script = Script::new(SAMPLE);
                    let mut invocation = script.prepare_invoke();
                    for name in names {
                        invocation.key(name);
                    }
                    invocation.arg(GROUP).invoke_async::<Vec<u64>>(&mut c).await
                }
            }))
            .await?;
        let mut streams: Vec<StreamBacklog> = QueueName::ALL
            .iter()
            .map(|q| StreamBacklog {
                queue: *q,
                length: 0,
                pending: 0,
            })
            .collect();
        let mut delayed = 0;
        for figures in per_partition {
            for (s, f) in streams.iter_mut().zip(figures.chunks_exact(2)) {
                s.length += f[0];
                s.pending += f[1];
            }
            delayed += figures.last().copied().unwrap_or(0);
        }
        Ok(Backlog { streams, delayed })
    }
}
