-- A person's quiet hours (contract §4): {"start": "22:00", "end": "07:00",
-- "hold_critical": false, "channels": [...]?}, in their time zone; NULL: none.
ALTER TABLE users ADD COLUMN quiet_hours jsonb;
