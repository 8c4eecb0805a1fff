-- The console's live stream (issue 8): every change to a person's notifications gets
-- the next number of that person's own sequence, so a client that reconnects with
-- `Last-Event-ID: n` is sent exactly what happened after n.
--
-- Triggers keep the log, so no code path (api, worker, receipts, a psql session) can
-- forget it. Why a counter row and not a Postgres SEQUENCE: sequence values are handed
-- out in call order but become visible in commit order, so a reader could see 11, move
-- on, and miss 10 committing later. The counter row is locked until its transaction
-- commits, so the next change of the same person waits: per person, numbers become
-- visible in order and without gaps (a rollback takes its numbers back with it).
--
-- Write cost: one statement-level trigger per INSERT or UPDATE statement on
-- notifications, whatever its row count (a 500-row fan-out chunk costs one counter
-- upsert and one multi-row insert, not 500 trigger calls). Counters are taken in
-- user_id order, so two statements touching the same people in different row orders
-- (two receipt batches, say) cannot deadlock on them. Private rows (operators' alerts
-- about a person) and rows without a person are not streamed and cost nothing more.

-- One narrow row per person, apart from `users`: the hot counter updates do not rewrite
-- (or lock against) the person's profile, and stay HOT with room left on each page.
CREATE TABLE person_change_seqs (
    user_id  text PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    seq      bigint NOT NULL
) WITH (fillfactor = 70);

-- No foreign key here: its check would cost an index probe and a row lock per change
-- (measured: about a third of the trigger's cost). Deleting the person deletes the
-- counter (cascade), whose trigger below deletes the log.
CREATE TABLE person_changes (
    user_id          text NOT NULL,
    seq              bigint NOT NULL,
    notification_id  uuid NOT NULL,
    -- created | status | read | delivered | opened
    kind             text NOT NULL,
    -- the notification's status and read mark as this change left them
    status           text NOT NULL,
    read_at          timestamptz,
    at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);
-- Rows arrive in time order, so a BRIN index serves the retention prune by `at` for
-- almost no write cost (a B-tree here would be one more index write per change).
CREATE INDEX person_changes_at ON person_changes USING brin (at);

CREATE FUNCTION person_changes_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM person_changes c USING gone g WHERE c.user_id = g.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER person_change_seqs_forget
    AFTER DELETE ON person_change_seqs
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_forget();

CREATE FUNCTION person_changes_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.user_id, n.id AS notification_id, 'created' AS kind, n.status, n.read_at
        FROM new_rows n
        WHERE n.user_id IS NOT NULL AND NOT n.private
    ), counts AS (
        SELECT user_id, count(*) AS n FROM changed GROUP BY user_id
    ), bumped AS (
        INSERT INTO person_change_seqs AS s (user_id, seq)
        SELECT user_id, n FROM counts ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + EXCLUDED.seq
        RETURNING s.user_id, s.seq
    )
    INSERT INTO person_changes (user_id, seq, notification_id, kind, status, read_at)
    SELECT c.user_id,
           b.seq - count(*) OVER (PARTITION BY c.user_id)
                 + row_number() OVER (PARTITION BY c.user_id ORDER BY c.notification_id),
           c.notification_id, c.kind, c.status, c.read_at
    FROM changed c JOIN bumped b ON b.user_id = c.user_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION person_changes_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS MATERIALIZED (
        SELECT n.user_id, n.id AS notification_id,
               CASE WHEN n.status IS DISTINCT FROM o.status THEN 'status'
                    WHEN n.read_at IS DISTINCT FROM o.read_at THEN 'read'
                    WHEN n.opened_at IS DISTINCT FROM o.opened_at THEN 'opened'
                    ELSE 'delivered' END AS kind,
               n.status, n.read_at
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.user_id IS NOT NULL AND NOT n.private
          AND (n.status, n.read_at, n.delivered_at, n.opened_at)
              IS DISTINCT FROM (o.status, o.read_at, o.delivered_at, o.opened_at)
    ), counts AS (
        SELECT user_id, count(*) AS n FROM changed GROUP BY user_id
    ), bumped AS (
        INSERT INTO person_change_seqs AS s (user_id, seq)
        SELECT user_id, n FROM counts ORDER BY user_id
        ON CONFLICT (user_id) DO UPDATE SET seq = s.seq + EXCLUDED.seq
        RETURNING s.user_id, s.seq
    )
    INSERT INTO person_changes (user_id, seq, notification_id, kind, status, read_at)
    SELECT c.user_id,
           b.seq - count(*) OVER (PARTITION BY c.user_id)
                 + row_number() OVER (PARTITION BY c.user_id ORDER BY c.notification_id),
           c.notification_id, c.kind, c.status, c.read_at
    FROM changed c JOIN bumped b ON b.user_id = c.user_id;
    RETURN NULL;
END
$$;

-- Statement-level with transition tables (which Postgres allows only without a column
-- list, so every UPDATE fires it; the join above keeps only watched columns' changes:
-- a retry's `attempts`/`due_at` bump records nothing).
CREATE TRIGGER notifications_person_changes_insert
    AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_insert();
CREATE TRIGGER notifications_person_changes_update
    AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION person_changes_on_update();
