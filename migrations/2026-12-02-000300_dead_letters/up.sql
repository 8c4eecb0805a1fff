-- Dead letters (issue 15): a job delivered more than HERALD_MAX_DELIVERIES times
-- without being acknowledged is taken off its stream and recorded here with the reason,
-- so that one poison job cannot be retried forever. Its event ends `failed_routing`
-- (a route job) or its notification `failed` (a delivery job).
CREATE TABLE dead_letters (
    id               bigserial PRIMARY KEY,
    -- the job's kind: route, deliver or flush_bundle
    kind             text NOT NULL,
    -- the stream and entry id the job had there
    stream           text NOT NULL,
    entry_id         text NOT NULL,
    -- the job as it was queued (JSON)
    job              jsonb NOT NULL,
    event_id         uuid,
    notification_id  uuid,
    reason           text NOT NULL,
    -- how many times a worker was handed the job
    deliveries       integer NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check
    CHECK (status IN ('received', 'routed', 'failed_routing'));
