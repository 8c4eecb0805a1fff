//! Row locks on `notifications` are taken in one order: by id.
//!
//! The worker's attempts batch, the api's receipt batches and the other statements
//! that change several notification rows at once run concurrently over overlapping
//! rows (a provider's `delivered` receipt can arrive before the worker has recorded
//! the attempt that handed it the message). An `UPDATE … FROM unnest(…)` locks rows
//! in whatever order its join produces them, so two such statements could each hold
//! a row the other waits for, and Postgres aborts one of them (a deadlock).
//!
//! Each such statement therefore starts with a CTE
//! `locked AS MATERIALIZED (SELECT … FROM notifications WHERE … ORDER BY id FOR UPDATE)`
//! and its UPDATE carries [`LOCKED_FIRST`]: a condition that reads all of `locked`
//! but depends on no row, so the planner makes it a one-time filter (an InitPlan
//! run before the UPDATE's scan produces its first row). Every lock is thus taken in
//! id order before the UPDATE changes anything; the UPDATE then only takes locks the
//! statement already holds. Two such statements over the same rows queue behind each
//! other instead of deadlocking. (`tests/receipts_and_attempts.rs` checks the plans
//! and races the statements.)

/// The UPDATE's condition that runs the `locked` CTE to its end first (always true).
pub const LOCKED_FIRST: &str = "(SELECT count(*) FROM locked) >= 0";
