-- Scheduled sends (contract §5.3): an event may ask for its notifications to go at
-- an instant (`deliver_at`); a notification whose due time quiet hours, a send window
-- or deliver_at moved says why (`hold_reason`, shown in the audit trail).
ALTER TABLE events ADD COLUMN deliver_at timestamptz;
ALTER TABLE notifications ADD COLUMN hold_reason text;
