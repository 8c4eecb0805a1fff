DROP INDEX IF EXISTS notifications_inbox_unread;
DROP INDEX IF EXISTS notifications_inbox_visible;
