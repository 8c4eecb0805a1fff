ALTER TABLE users DROP COLUMN quiet_hours;
