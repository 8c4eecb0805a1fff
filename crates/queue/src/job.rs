//! The jobs that travel on the queues, serialized as JSON in the stream entry's `job`
//! field.

pub use herald_core::partitions::{Partition, Partitions};
pub use herald_core::queues::QueueName;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a job travels: one partition's stream of one priority. Every job of one person
/// takes the same partition (`Partitions::of_person`), so a person's jobs of one
/// priority are handed out in the order they were enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lane {
    pub partition: Partition,
    pub queue: QueueName,
}

impl Lane {
    pub fn new(partition: Partition, queue: QueueName) -> Lane {
        Lane { partition, queue }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Turn an event into notification rows. Fan-out to large sets continues in
    /// further `Route` jobs naming the rule and the last recipient handled.
    Route {
        event_id: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// Try to deliver one notification.
    Deliver { notification_id: Uuid },
    /// A pending bundle's ready instant came: send it if it still is ready.
    FlushBundle { bundle_id: Uuid },
}

impl Job {
    pub fn route(event_id: Uuid) -> Job {
        Job::Route {
            event_id,
            rule: None,
            after: None,
        }
    }

    /// The serde tag: `route`, `deliver` or `flush_bundle`.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Route { .. } => "route",
            Job::Deliver { .. } => "deliver",
            Job::FlushBundle { .. } => "flush_bundle",
        }
    }

    /// What the job is about: `{kind}:{id}`, the same for every copy and every fan-out
    /// page of one event. Names the job's "queued" counter (see `Queue::enqueue`); the
    /// scheduler's Lua script builds the same name from the job's JSON.
    pub fn marker(&self) -> String {
        let id = match self {
            Job::Route { event_id, .. } => event_id,
            Job::Deliver { notification_id } => notification_id,
            Job::FlushBundle { bundle_id } => bundle_id,
        };
        format!("{}:{id}", self.kind())
    }

    pub fn to_json(&self) -> String {
        // A Job is plain data (ids and strings); serializing it cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_json() {
        let jobs = [
            Job::route(Uuid::now_v7()),
            Job::Route {
                event_id: Uuid::nil(),
                rule: Some("R".into()),
                after: Some("u_9".into()),
            },
            Job::Deliver {
                notification_id: Uuid::now_v7(),
            },
        ];
        for job in jobs {
            let back: Job = serde_json::from_str(&job.to_json()).unwrap();
            assert_eq!(back, job);
        }
        assert_eq!(
            Job::route(Uuid::nil()).to_json(),
            r#"{"kind":"route","event_id":"00000000-0000-0000-0000-000000000000"}"#
        );
    }

    /// The Lua side names markers from the JSON's `kind` and id fields.
    #[test]
    fn a_marker_is_the_json_kind_and_id() {
        let id = Uuid::now_v7();
        let continuation = Job::Route {
            event_id: id,
            rule: Some("R".into()),
            after: Some("u".into()),
        };
        assert_eq!(continuation.marker(), Job::route(id).marker());
        for job in [
            Job::route(id),
            Job::Deliver {
                notification_id: id,
            },
            Job::FlushBundle { bundle_id: id },
        ] {
            let json: serde_json::Value = serde_json::from_str(&job.to_json()).unwrap();
            assert_eq!(
                job.marker(),
                format!("{}:{id}", json["kind"].as_str().unwrap())
            );
        }
    }
}
