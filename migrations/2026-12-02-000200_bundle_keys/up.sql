-- Digests (contract §8): a rule's `bundle.key` (e.g. properties.post_id) splits a
-- person's items of one notification type into several bundles, one pending bundle
-- per (person, type, key). '' is the rule without a key: one bundle per person and
-- type, as before.
ALTER TABLE bundles ADD COLUMN bundle_key text NOT NULL DEFAULT '';
DROP INDEX bundles_one_pending;
CREATE UNIQUE INDEX bundles_one_pending ON bundles (user_id, notification_type, bundle_key)
    WHERE status = 'pending';
-- The sweep settles the items of sent bundles whose carrier reached a final state.
CREATE INDEX notifications_bundled_items ON notifications (bundle_id) WHERE status = 'bundled';
