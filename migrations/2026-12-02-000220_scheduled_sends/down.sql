ALTER TABLE notifications DROP COLUMN hold_reason;
ALTER TABLE events DROP COLUMN deliver_at;
