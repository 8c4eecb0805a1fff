-- A person's webhook answering 410 Gone is disabled until they set a webhook_url again.
ALTER TABLE users ADD COLUMN webhook_disabled_at timestamptz;
