ALTER TABLE notifications DROP COLUMN held_at;
DROP TABLE webhook_secrets;
