DROP INDEX notifications_bundled_items;
DROP INDEX bundles_one_pending;
CREATE UNIQUE INDEX bundles_one_pending ON bundles (user_id, notification_type) WHERE status = 'pending';
ALTER TABLE bundles DROP COLUMN bundle_key;
