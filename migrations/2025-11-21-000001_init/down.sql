DROP TABLE delivery_attempts;
DROP TABLE notifications;
DROP TABLE events;
DROP TABLE subscriptions;
DROP TABLE topic_members;
DROP TABLE topics;
DROP TABLE users;
