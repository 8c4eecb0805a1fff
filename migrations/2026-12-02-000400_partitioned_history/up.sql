-- Time-partitioned history (issue 15). `events`, `notifications`, `delivery_attempts`
-- and `person_changes` become RANGE-partitioned on their time column, so retention
-- drops whole partitions (no DELETE over billions of rows) and queries bounded in
-- time read only the partitions they need.
--
--   events             received_at
--   notifications      created_at (= its event's received_at, see below)
--   delivery_attempts  started_at
--   person_changes     at
--
-- Partitions are daily here; the worker's maintenance (crates/store/src/partitions.rs)
-- creates them ahead in HERALD_PARTITION_INTERVAL steps and drops them past
-- HERALD_RETENTION, both through the functions below. Each table has a DEFAULT
-- partition that catches rows outside every created range (a worker that was down for
-- days, live notifications kept past retention), so an insert never fails for want of a
-- partition.
--
-- What partitioning changes:
-- * A unique index must contain the partition key. Primary keys become (id, time);
--   lookups by id still use them (id leads), probing each partition's index.
-- * `events.idempotency_key` can no longer be globally unique: the keys move to
--   `event_keys` (key primary key), which the ingest insert fills in the same statement
--   and retention prunes. A key seen within the retention window is a duplicate
--   whichever partition holds its event.
-- * `notifications_once` (one row per event, recipient, type and channel) gains
--   `created_at`. For that to keep re-routing idempotent, a notification's created_at
--   is its event's received_at (the insert looks it up), the same on every re-run;
--   existing rows take it here too. It also puts an event and its notifications in
--   partitions of the same range, so retention drops them together.
-- * Foreign keys that point at a partitioned table's id cannot hold (the referenced
--   columns must be unique on their own): notifications.event_id -> events and
--   delivery_attempts.notification_id -> notifications are dropped. A trigger keeps the
--   one cascade that mattered (deleting a person's notifications deletes their
--   attempts). Foreign keys from the partitioned tables to plain tables (users,
--   bundles) stay.

-- Bounds of each range partition of `parent` (its DEFAULT partition left out).
-- Postgres keeps the bounds only as expression text; DateStyle and TimeZone are pinned
-- so the text reads back as the same instants.
CREATE FUNCTION herald_partitions(parent regclass)
RETURNS TABLE (name text, from_at timestamptz, to_at timestamptz)
LANGUAGE sql STABLE SET datestyle = 'ISO, YMD' SET timezone = 'UTC' AS $$
    SELECT c.relname::text, m[1]::timestamptz, m[2]::timestamptz
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid,
    LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                         'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS m
    WHERE i.inhparent = parent AND m IS NOT NULL
    ORDER BY 2
$$;

-- Creates partitions of `parent` so that [from_at, to_at) is covered, in `step`s aligned
-- on the Unix epoch (daily partitions run midnight to midnight UTC), and returns their
-- names. Time some partition already covers is skipped, so the call is idempotent and a
-- changed step only shapes partitions not made yet. Rows the DEFAULT partition holds in
-- a new range are moved into it (a worker was down while that time came): the
-- partition is built apart, filled and attached, which never fails on such rows.
-- Concurrent callers queue on a transaction-scoped advisory lock.
CREATE FUNCTION herald_ensure_partitions(parent regclass, from_at timestamptz,
                                         to_at timestamptz, step interval)
RETURNS SETOF text LANGUAGE plpgsql SET datestyle = 'ISO, YMD' SET timezone = 'UTC' AS $$
DECLARE
    secs double precision := extract(epoch FROM step);
    t timestamptz;
    stop timestamptz;
    covered_to timestamptz;
    next_from timestamptz;
    schema_name text;
    table_name text;
    key_column text;
    part text;
    default_part text;
BEGIN
    IF secs IS NULL OR secs < 60 THEN
        RAISE EXCEPTION 'partition step % is too short (at least a minute)', step;
    END IF;
    -- "herald-pt" in ASCII: the same key as crates/store/src/partitions.rs.
    PERFORM pg_advisory_xact_lock(x'6865726c647074'::bigint);
    SELECT n.nspname, c.relname INTO schema_name, table_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;
    SELECT a.attname INTO key_column
    FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent;
    SELECT c.relname INTO default_part
    FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partdefid
    WHERE p.partrelid = parent;
    t := to_timestamp(floor(extract(epoch FROM from_at) / secs) * secs);
    WHILE t < to_at LOOP
        SELECT p.to_at INTO covered_to FROM herald_partitions(parent) p
        WHERE p.from_at <= t AND t < p.to_at;
        IF covered_to IS NOT NULL THEN
            t := covered_to;
            CONTINUE;
        END IF;
        stop := to_timestamp((floor(extract(epoch FROM t) / secs) + 1) * secs);
        SELECT min(p.from_at) INTO next_from FROM herald_partitions(parent) p
        WHERE p.from_at > t;
        IF next_from IS NOT NULL AND next_from < stop THEN
            stop := next_from;
        END IF;
        part := format('%s_p%s', table_name, to_char(t, 'YYYYMMDD"_"HH24MI'));
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       schema_name, part, schema_name, table_name);
        IF default_part IS NOT NULL THEN
            EXECUTE format('WITH moved AS (DELETE FROM %I.%I WHERE %I >= %L AND %I < %L RETURNING *)
                            INSERT INTO %I.%I SELECT * FROM moved',
                           schema_name, default_part, key_column, t, key_column, stop,
                           schema_name, part);
        END IF;
        EXECUTE format('ALTER TABLE %I.%I ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       schema_name, table_name, schema_name, part, t, stop);
        RETURN NEXT part;
        t := stop;
    END LOOP;
END
$$;

-- Client keys (`event_id`, `alert_uuid`), one row each, kept as long as the retention.
CREATE TABLE event_keys (
    key          text PRIMARY KEY,
    event_id     uuid NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
-- retention prunes keys by age
CREATE INDEX event_keys_received_at ON event_keys (received_at);
INSERT INTO event_keys (key, event_id, received_at)
SELECT idempotency_key, id, received_at FROM events WHERE idempotency_key IS NOT NULL;

-- The old tables go aside; their foreign keys to each other cannot be kept (above).
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_event_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT IF EXISTS delivery_attempts_notification_id_fkey;
-- The change-log triggers are recreated on the new table after the copy (the copy must
-- not log every notification again as "created").
DROP TRIGGER notifications_person_changes_insert ON notifications;
DROP TRIGGER notifications_person_changes_update ON notifications;
ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE notifications RENAME TO notifications_unpartitioned;
ALTER TABLE delivery_attempts RENAME TO delivery_attempts_unpartitioned;
ALTER TABLE person_changes RENAME TO person_changes_unpartitioned;

-- Same columns, defaults, NOT NULLs and CHECKs (whatever earlier migrations left there,
-- e.g. a status added to a CHECK), partitioned.
CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (received_at);
CREATE TABLE notifications (LIKE notifications_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (created_at);
CREATE TABLE delivery_attempts (LIKE delivery_attempts_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (started_at);
CREATE TABLE person_changes (LIKE person_changes_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (at);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE notifications_default PARTITION OF notifications DEFAULT;
CREATE TABLE delivery_attempts_default PARTITION OF delivery_attempts DEFAULT;
CREATE TABLE person_changes_default PARTITION OF person_changes DEFAULT;

-- Daily partitions from the oldest row (at most a year back; older rows land in the
-- default partition) to three days ahead.
SELECT herald_ensure_partitions('events',
    greatest(coalesce((SELECT min(received_at) FROM events_unpartitioned), now()), now() - interval '366 days'),
    now() + interval '3 days', interval '1 day');
SELECT herald_ensure_partitions('notifications',
    greatest(coalesce((SELECT min(e.received_at) FROM events_unpartitioned e), now()), now() - interval '366 days'),
    now() + interval '3 days', interval '1 day');
SELECT herald_ensure_partitions('delivery_attempts',
    greatest(coalesce((SELECT min(started_at) FROM delivery_attempts_unpartitioned), now()), now() - interval '366 days'),
    now() + interval '3 days', interval '1 day');
SELECT herald_ensure_partitions('person_changes',
    greatest(coalesce((SELECT min(at) FROM person_changes_unpartitioned), now()), now() - interval '366 days'),
    now() + interval '3 days', interval '1 day');

-- Every row moves. A notification takes its event's received_at as created_at (its
-- own when the event is missing), so the once index and the partition ranges line up.
INSERT INTO events SELECT * FROM events_unpartitioned;
DO $$
DECLARE
    columns text;
BEGIN
    SELECT string_agg(CASE WHEN attname = 'created_at'
                           THEN 'coalesce(e.received_at, n.created_at)'
                           ELSE format('n.%I', attname) END, ', ' ORDER BY attnum)
    INTO columns
    FROM pg_attribute
    WHERE attrelid = 'notifications_unpartitioned'::regclass AND attnum > 0 AND NOT attisdropped;
    EXECUTE format('INSERT INTO notifications SELECT %s FROM notifications_unpartitioned n
                    LEFT JOIN events_unpartitioned e ON e.id = n.event_id', columns);
END
$$;
INSERT INTO delivery_attempts SELECT * FROM delivery_attempts_unpartitioned;
INSERT INTO person_changes SELECT * FROM person_changes_unpartitioned;

-- The attempts' id sequence belongs to the old column; hand it over before the drop.
ALTER SEQUENCE delivery_attempts_id_seq OWNED BY NONE;

-- Non-unique indexes are rebuilt as they were (by their definitions, so indexes other
-- migrations added come along), once the old tables and their index names are gone.
CREATE TEMP TABLE herald_old_indexes ON COMMIT DROP AS
SELECT tablename::text AS old_table, indexdef
FROM pg_indexes
WHERE schemaname = current_schema()
  AND tablename IN ('events_unpartitioned', 'notifications_unpartitioned',
                    'delivery_attempts_unpartitioned', 'person_changes_unpartitioned')
  AND indexname NOT IN ('events_pkey', 'events_idempotency_key_key', 'notifications_pkey',
                        'notifications_once', 'delivery_attempts_pkey', 'person_changes_pkey');

DROP TABLE events_unpartitioned, notifications_unpartitioned,
           delivery_attempts_unpartitioned, person_changes_unpartitioned;

ALTER SEQUENCE delivery_attempts_id_seq OWNED BY delivery_attempts.id;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT old_table, indexdef FROM herald_old_indexes LOOP
        EXECUTE replace(r.indexdef,
                        format(' ON %I.%I ', current_schema(), r.old_table),
                        format(' ON %I.%I ', current_schema(),
                               replace(r.old_table, '_unpartitioned', '')));
    END LOOP;
END
$$;

ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id, received_at);
ALTER TABLE notifications ADD CONSTRAINT notifications_pkey PRIMARY KEY (id, created_at);
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_pkey PRIMARY KEY (id, started_at);
ALTER TABLE person_changes ADD CONSTRAINT person_changes_pkey PRIMARY KEY (user_id, seq, at);
-- Re-processing an event is idempotent: one row per (event, recipient, type, channel);
-- created_at is the event's received_at, the same on every run.
CREATE UNIQUE INDEX notifications_once
    ON notifications (event_id, (COALESCE(user_id, '')), notification_type, channel, created_at);

ALTER TABLE notifications ADD CONSTRAINT notifications_user_id_fkey
    FOREIGN KEY (user_id) REFERENCES users (user_id) ON DELETE CASCADE;
ALTER TABLE notifications ADD CONSTRAINT notifications_bundle_fk
    FOREIGN KEY (bundle_id) REFERENCES bundles (id) ON DELETE SET NULL;

CREATE TRIGGER notifications_person_changes_insert
    AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_insert();
CREATE TRIGGER notifications_person_changes_update
    AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_update();

-- The cascade the dropped foreign key gave: a deleted notification (a deleted person's)
-- takes its attempts with it.
CREATE FUNCTION notifications_forget_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM delivery_attempts a USING gone g WHERE a.notification_id = g.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER notifications_forget_attempts
    AFTER DELETE ON notifications
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION notifications_forget_attempts();
