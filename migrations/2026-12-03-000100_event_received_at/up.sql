-- An event's `received_at` looked for in every partition of `events`: the fallback of
-- the notification insert's lookup, which first reads only the partitions within an
-- hour of the event id's time. Written inline, that fallback subquery named every
-- partition, and Postgres planned all of them on every insert (29 ms against 3.6 ms
-- on a month of daily partitions) although it almost never runs. A PL/pgSQL body is
-- planned only when it is called, and its plan is kept for the session.
CREATE FUNCTION herald_event_received_at(event uuid) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN (SELECT e.received_at FROM events e WHERE e.id = event LIMIT 1);
END
$$;
