ALTER TABLE notifications DROP CONSTRAINT notifications_bundle_fk;
DROP INDEX notifications_by_bundle;
DROP TABLE bundles;
