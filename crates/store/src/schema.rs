//! Diesel's view of the tables in `migrations/`. Kept by hand, in step with the SQL.

diesel::table! {
    users (user_id) {
        user_id -> Text,
        email -> Nullable<Text>,
        phone -> Nullable<Text>,
        timezone -> Text,
        traits -> Jsonb,
        level -> Text,
        channels -> Jsonb,
        webhook_url -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        webhook_disabled_at -> Nullable<Timestamptz>,
        quiet_hours -> Nullable<Jsonb>,
    }
}

diesel::table! {
    topics (topic) {
        topic -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    topic_members (topic, user_id) {
        topic -> Text,
        user_id -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    subscriptions (user_id, event_type) {
        user_id -> Text,
        event_type -> Text,
        enabled -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    events (id) {
        id -> Uuid,
        event_type -> Text,
        user_id -> Nullable<Text>,
        topic -> Nullable<Text>,
        event_timestamp -> Timestamptz,
        received_at -> Timestamptz,
        properties -> Jsonb,
        user_traits -> Jsonb,
        status -> Text,
        routed_at -> Nullable<Timestamptz>,
        idempotency_key -> Nullable<Text>,
        deliver_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Client keys (`event_id`, `alert_uuid`) of events within the retention: `events`
    /// is partitioned by time, so its own rows cannot hold a key unique.
    event_keys (key) {
        key -> Text,
        event_id -> Uuid,
        received_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        event_id -> Uuid,
        user_id -> Nullable<Text>,
        notification_type -> Text,
        channel -> Text,
        status -> Text,
        suppression_reason -> Nullable<Text>,
        severity -> Text,
        private -> Bool,
        subject -> Nullable<Text>,
        text -> Text,
        created_at -> Timestamptz,
        due_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        delivered_at -> Nullable<Timestamptz>,
        opened_at -> Nullable<Timestamptz>,
        read_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        bundle_id -> Nullable<Uuid>,
        held_at -> Nullable<Timestamptz>,
        hold_reason -> Nullable<Text>,
    }
}

diesel::table! {
    /// The signing secret of each person's webhook, and the one it replaced.
    webhook_secrets (user_id) {
        user_id -> Text,
        secret -> Text,
        previous_secret -> Nullable<Text>,
        rotated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    delivery_attempts (id) {
        id -> Int8,
        notification_id -> Uuid,
        attempt -> Int4,
        started_at -> Timestamptz,
        duration_ms -> Int4,
        http_status -> Nullable<Int4>,
        error -> Nullable<Text>,
        outcome -> Text,
    }
}

diesel::table! {
    bundles (id) {
        id -> Uuid,
        user_id -> Text,
        notification_type -> Text,
        status -> Text,
        first_at -> Timestamptz,
        last_at -> Timestamptz,
        tours -> Int4,
        first_friend -> Text,
        ready_at -> Timestamptz,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        notification_id -> Nullable<Uuid>,
        bundle_key -> Text,
    }
}

diesel::table! {
    /// Each person's change counter (the `person_changes` migration's triggers keep it).
    person_change_seqs (user_id) {
        user_id -> Text,
        seq -> Int8,
    }
}

diesel::table! {
    /// Every change to a person's notifications, numbered per person (written by
    /// triggers on `notifications`, read by the console's stream).
    person_changes (user_id, seq) {
        user_id -> Text,
        seq -> Int8,
        notification_id -> Uuid,
        kind -> Text,
        status -> Text,
        read_at -> Nullable<Timestamptz>,
        at -> Timestamptz,
    }
}

diesel::table! {
    /// Jobs taken off their stream after too many deliveries, with the reason.
    dead_letters (id) {
        id -> Int8,
        kind -> Text,
        stream -> Text,
        entry_id -> Text,
        job -> Jsonb,
        event_id -> Nullable<Uuid>,
        notification_id -> Nullable<Uuid>,
        reason -> Text,
        deliveries -> Int4,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(topic_members -> topics (topic));
diesel::joinable!(topic_members -> users (user_id));
diesel::joinable!(subscriptions -> users (user_id));
diesel::joinable!(notifications -> events (event_id));
diesel::joinable!(notifications -> users (user_id));
diesel::joinable!(delivery_attempts -> notifications (notification_id));
diesel::joinable!(webhook_secrets -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    bundles,
    users,
    topics,
    topic_members,
    subscriptions,
    events,
    event_keys,
    notifications,
    delivery_attempts,
    person_change_seqs,
    person_changes,
    webhook_secrets,
    dead_letters,
);
