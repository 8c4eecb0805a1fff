-- Back to plain tables, every row kept. Retention may have left notifications whose
-- event is gone and attempts whose notification is gone, so the restored foreign keys
-- are NOT VALID (checked for new rows only).
DROP TRIGGER notifications_forget_attempts ON notifications;
DROP FUNCTION notifications_forget_attempts();
DROP TRIGGER notifications_person_changes_insert ON notifications;
DROP TRIGGER notifications_person_changes_update ON notifications;

ALTER TABLE events RENAME TO events_partitioned;
ALTER TABLE notifications RENAME TO notifications_partitioned;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_partitioned;
ALTER TABLE person_changes RENAME TO person_changes_partitioned;

CREATE TABLE events (LIKE events_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TABLE notifications (LIKE notifications_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TABLE delivery_attempts (LIKE delivery_attempts_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TABLE person_changes (LIKE person_changes_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

INSERT INTO events SELECT * FROM events_partitioned;
INSERT INTO notifications SELECT * FROM notifications_partitioned;
INSERT INTO delivery_attempts SELECT * FROM delivery_attempts_partitioned;
INSERT INTO person_changes SELECT * FROM person_changes_partitioned;

-- A key belongs to the event event_keys names; other events that carried it (the key
-- was pruned and seen again) lose it, so the unique constraint holds again.
UPDATE events e SET idempotency_key = NULL
WHERE e.idempotency_key IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM event_keys k WHERE k.key = e.idempotency_key AND k.event_id = e.id);

ALTER SEQUENCE delivery_attempts_id_seq OWNED BY NONE;

CREATE TEMP TABLE herald_old_indexes ON COMMIT DROP AS
SELECT tablename::text AS old_table, indexdef
FROM pg_indexes
WHERE schemaname = current_schema()
  AND tablename IN ('events_partitioned', 'notifications_partitioned',
                    'delivery_attempts_partitioned', 'person_changes_partitioned')
  AND indexname NOT IN ('events_pkey', 'notifications_pkey', 'notifications_once',
                        'delivery_attempts_pkey', 'person_changes_pkey');

DROP TABLE events_partitioned, notifications_partitioned,
           delivery_attempts_partitioned, person_changes_partitioned CASCADE;

ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;

DO $$
DECLARE
    r record;
    plain text;
BEGIN
    FOR r IN SELECT old_table, indexdef FROM herald_old_indexes LOOP
        plain := replace(r.old_table, '_partitioned', '');
        EXECUTE replace(replace(r.indexdef,
                        format(' ON ONLY %I.%I ', current_schema(), r.old_table),
                        format(' ON %I.%I ', current_schema(), plain)),
                        format(' ON %I.%I ', current_schema(), r.old_table),
                        format(' ON %I.%I ', current_schema(), plain));
    END LOOP;
END
$$;

ALTER TABLE events ADD PRIMARY KEY (id);
ALTER TABLE events ADD CONSTRAINT events_idempotency_key_key UNIQUE (idempotency_key);
ALTER TABLE notifications ADD PRIMARY KEY (id);
ALTER TABLE delivery_attempts ADD PRIMARY KEY (id);
ALTER TABLE person_changes ADD PRIMARY KEY (user_id, seq);
CREATE UNIQUE INDEX notifications_once
    ON notifications (event_id, (COALESCE(user_id, '')), notification_type, channel);

ALTER TABLE notifications ADD CONSTRAINT notifications_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE NOT VALID;
ALTER TABLE notifications ADD CONSTRAINT notifications_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (user_id) ON DELETE CASCADE;
ALTER TABLE notifications ADD CONSTRAINT notifications_bundle_fk
    FOREIGN KEY (bundle_id) REFERENCES bundles (id) ON DELETE SET NULL;
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_notification_id_fkey
    FOREIGN KEY (notification_id) REFERENCES notifications (id) ON DELETE CASCADE NOT VALID;

CREATE TRIGGER notifications_person_changes_insert
    AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_insert();
CREATE TRIGGER notifications_person_changes_update
    AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_update();

DROP TABLE event_keys;
DROP FUNCTION herald_ensure_partitions(regclass, timestamptz, timestamptz, interval);
DROP FUNCTION herald_partitions(regclass);
