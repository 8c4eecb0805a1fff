-- Herald's history. Postgres is the source of truth: Redis only carries work, and
-- every queue can be rebuilt from these tables (events still `received`,
-- notifications still `pending` with their `due_at`).

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    email        text,
    phone        text,
    timezone     text NOT NULL DEFAULT 'UTC',
    traits       jsonb NOT NULL DEFAULT '{}'::jsonb,
    level        text NOT NULL DEFAULT 'standard' CHECK (level IN ('standard', 'critical')),
    -- per-channel switches, e.g. {"sms": false}; a missing channel is enabled
    channels     jsonb NOT NULL DEFAULT '{}'::jsonb,
    webhook_url  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE topics (
    topic       text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE topic_members (
    topic       text NOT NULL REFERENCES topics (topic) ON DELETE CASCADE,
    user_id     text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, user_id)
);
CREATE INDEX topic_members_by_user ON topic_members (user_id);

CREATE TABLE subscriptions (
    user_id     text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    event_type  text NOT NULL,
    enabled     boolean NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_type)
);
CREATE INDEX subscriptions_enabled_by_type ON subscriptions (event_type, user_id) WHERE enabled;

-- One row per accepted event, whatever happens next. user_id has no foreign key:
-- deleting a person blanks it here rather than erasing the audit trail.
CREATE TABLE events (
    id               uuid PRIMARY KEY,
    event_type       text NOT NULL,
    user_id          text,
    topic            text,
    event_timestamp  timestamptz NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    properties       jsonb NOT NULL DEFAULT '{}'::jsonb,
    user_traits      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'routed')),
    routed_at        timestamptz,
    idempotency_key  text UNIQUE
);
-- the recovery sweep's outbox scan
CREATE INDEX events_unrouted ON events (received_at) WHERE status = 'received';
-- proximity conditions, debounce windows and the audit trail
CREATE INDEX events_by_user_type_time ON events (user_id, event_type, event_timestamp);

CREATE TABLE notifications (
    id                 uuid PRIMARY KEY,
    event_id           uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- the recipient; for internal notifications, the person they are about (or none)
    user_id            text REFERENCES users (user_id) ON DELETE CASCADE,
    notification_type  text NOT NULL,
    channel            text NOT NULL,
    status             text NOT NULL
        CHECK (status IN ('pending', 'bundled', 'sent', 'failed', 'suppressed')),
    suppression_reason text,
    severity           text NOT NULL CHECK (severity IN ('standard', 'critical')),
    -- private notifications (operators' alerts) never show in the person's inbox
    private            boolean NOT NULL DEFAULT false,
    subject            text,
    text               text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- when the next try is due: the rule's delay, then each retry's backoff
    due_at             timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    delivered_at       timestamptz,
    opened_at          timestamptz,
    read_at            timestamptz,
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    bundle_id          uuid
);
-- Re-processing an event is idempotent: one row per (event, recipient, type, channel).
-- COALESCE so that internal notifications without a subject are unique too.
CREATE UNIQUE INDEX notifications_once
    ON notifications (event_id, (COALESCE(user_id, '')), notification_type, channel);
CREATE INDEX notifications_inbox ON notifications (user_id, created_at DESC);
CREATE INDEX notifications_due ON notifications (due_at) WHERE status = 'pending';
CREATE INDEX notifications_by_status_time ON notifications (status, created_at);

CREATE TABLE delivery_attempts (
    id               bigserial PRIMARY KEY,
    notification_id  uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    http_status      integer,
    error            text,
    outcome          text NOT NULL CHECK (outcome IN ('success', 'retry', 'permanent_failure'))
);
CREATE INDEX delivery_attempts_by_notification ON delivery_attempts (notification_id, attempt);
