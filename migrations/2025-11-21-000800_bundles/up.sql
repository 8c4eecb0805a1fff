-- Bundling (SPEC 8): one pending bundle per (person, notification type) collects
-- `bundled` notification rows until the ranker says it is ready; it is then sent as
-- one notification (its oldest item, re-worded) and its items take that notification's
-- final status and sent_at.
CREATE TABLE bundles (
    id                 uuid PRIMARY KEY,
    user_id            text NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    notification_type  text NOT NULL,
    status             text NOT NULL CHECK (status IN ('pending', 'sent')),
    first_at           timestamptz NOT NULL,
    last_at            timestamptz NOT NULL,
    tours              integer NOT NULL,
    first_friend       text NOT NULL,
    -- when the ranker expects it ready if nothing else arrives (the delayed job's time)
    ready_at           timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    -- when it was sent: the cap counts bundles per local day of this instant
    sent_at            timestamptz,
    -- the notification that carries the bundle (its oldest item)
    notification_id    uuid
);
CREATE UNIQUE INDEX bundles_one_pending ON bundles (user_id, notification_type) WHERE status = 'pending';
CREATE INDEX bundles_sent_by_person ON bundles (user_id, notification_type, sent_at) WHERE status = 'sent';
CREATE INDEX bundles_ready ON bundles (ready_at) WHERE status = 'pending';
CREATE INDEX notifications_by_bundle ON notifications (bundle_id) WHERE bundle_id IS NOT NULL;
ALTER TABLE notifications ADD CONSTRAINT notifications_bundle_fk
    FOREIGN KEY (bundle_id) REFERENCES bundles (id) ON DELETE SET NULL;
