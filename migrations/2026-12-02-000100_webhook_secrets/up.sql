-- A signing secret per person's webhook (issue 13): issued when a webhook_url is
-- first set and shown once; a rotation keeps the previous secret signing beside the
-- new one for an overlap (HERALD_WEBHOOK_SECRET_OVERLAP, 24 h by default).
CREATE TABLE webhook_secrets (
    user_id text PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    secret text NOT NULL,
    previous_secret text,
    rotated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- When a notification was first held by an open circuit: the longest hold counts
-- from here, not from the notification's creation.
ALTER TABLE notifications ADD COLUMN held_at timestamptz;
