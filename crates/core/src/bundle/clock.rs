//! Bundling's clock: Unix seconds and UTC calendar days. The state machine's days are
//! these (online, the worker feeds local wall-clock seconds, so they fall on local
//! midnights); kept apart so the ranker and the state machine share them without
//! importing each other.

/// Seconds since the Unix epoch, UTC. Integer seconds: the data has whole seconds and
/// integer arithmetic keeps replays bit-for-bit reproducible.
pub type UnixSecs = i64;

/// Seconds in a calendar day (UTC has no leap seconds in Unix time).
pub const DAY: i64 = 86_400;

/// The calendar day (days since the epoch, UTC) an instant falls in.
pub fn day_of(t: UnixSecs) -> i64 {
    t.div_euclid(DAY)
}

/// 00:00:00 of the day after the one `t` falls in: the first instant the cap resets.
pub fn next_day_start(t: UnixSecs) -> UnixSecs {
    (day_of(t) + 1) * DAY
}
