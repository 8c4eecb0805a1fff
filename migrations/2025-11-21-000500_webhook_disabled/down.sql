ALTER TABLE users DROP COLUMN webhook_disabled_at;
