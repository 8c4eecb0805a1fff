-- Dead-lettered events go back to `received`, so the recovery sweep routes them again.
UPDATE events SET status = 'received' WHERE status = 'failed_routing';
ALTER TABLE events DROP CONSTRAINT events_status_check;
ALTER TABLE events ADD CONSTRAINT events_status_check CHECK (status IN ('received', 'routed'));
DROP TABLE dead_letters;
