DROP FUNCTION herald_event_received_at(uuid);
