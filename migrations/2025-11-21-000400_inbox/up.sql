-- The inbox (SPEC 4): a person's visible notifications newest first, and their
-- unread count. Partial indexes hold only rows that can show in an inbox.
CREATE INDEX notifications_inbox_visible
    ON notifications (user_id, id DESC)
    WHERE NOT private AND status NOT IN ('suppressed', 'bundled');
CREATE INDEX notifications_inbox_unread
    ON notifications (user_id)
    WHERE read_at IS NULL AND NOT private AND status NOT IN ('suppressed', 'bundled');
