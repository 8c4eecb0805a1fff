//! The queues' backlog as the metrics sample it: per stream its length (jobs not yet
//! acknowledged, since handled jobs are deleted) and how many of those a worker holds
//! (the group's pending list), and the delayed set's size. One script, one round
//! trip, whatever exists: a missing stream or group counts zero rather than failing.

use crate::connection::Redis;
use crate::error::QueueError;
use crate::job::QueueName;
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

    pub async fn sample(&self) -> Result<Backlog, QueueError> {
        let mut c = self.redis.conn();
        let script = Script::new(SAMPLE);
        let mut invocation = script.prepare_invoke();
        for q in QueueName::ALL {
            invocation.key(self.redis.keys().stream(q));
        }
        invocation.key(self.redis.keys().delayed());
        let figures: Vec<u64> = invocation.arg(GROUP).invoke_async(&mut c).await?;
        let streams = QueueName::ALL
            .iter()
            .zip(figures.chunks_exact(2))
            .map(|(q, f)| StreamBacklog {
                queue: *q,
                length: f[0],
                pending: f[1],
            })
            .collect();
        Ok(Backlog {
            streams,
            delayed: figures.last().copied().unwrap_or(0),
        })
    }
}
