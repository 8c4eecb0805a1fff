//! Running a statement again when Postgres aborted it for a conflict with another
//! transaction: a deadlock (SQLSTATE 40P01) or a serialization failure (40001).
//!
//! Statements on `notifications` lock their rows in one order ([`crate::locking`]), so
//! deadlocks between them should not happen; a conflict with something else (a
//! trigger's counter, a person being deleted) still can. Such an abort says nothing
//! about the request, and the same statement usually succeeds a moment later, so the
//! caller runs it again after a short jittered pause instead of failing the request.

use crate::pool::StoreError;
use backoff::backoff::Backoff;
use backoff::ExponentialBackoffBuilder;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use std::future::Future;
use std::time::Duration;

/// Tries at most, the first included.
pub const MAX_TRIES: u32 = 4;

impl StoreError {
    /// Whether Postgres aborted the statement for a deadlock or a serialization
    /// failure: running it again may succeed.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                _,
            )) => true,
            // diesel names no kind for 40P01; Postgres's message for it is fixed.
            StoreError::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                info.message().starts_with("deadlock detected")
            }
            _ => false,
        }
    }
}

/// The pauses between tries: 20 ms doubling, each ±50%, at most 250 ms.
fn pauses() -> impl Backoff {
    ExponentialBackoffBuilder::new()
        .with_initial_interval(Duration::from_millis(20))
        .with_multiplier(2.0)
        .with_randomization_factor(0.5)
        .with_max_interval(Duration::from_millis(250))
        .with_max_elapsed_time(None)
        .build()
}

/// Runs `op` until it succeeds, fails for another reason than a conflict, or has been
/// tried [`MAX_TRIES`] times; returns its last outcome.
pub async fn retry_on_conflict<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut pauses = pauses();
    let mut tries = 1;
    loop {
        match op().await {
            Err(e) if e.is_conflict() && tries < MAX_TRIES => {
                let pause = pauses.next_backoff().unwrap_or(Duration::from_millis(250));
                tracing::warn!(what, error = %e, tries, ?pause, "conflict with another transaction; trying again");
                tokio::time::sleep(pause).await;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn database_error(kind: DatabaseErrorKind, message: &str) -> StoreError {
        StoreError::Query(DieselError::DatabaseError(
            kind,
            Box::new(message.to_string()),
        ))
    }

    fn deadlock() -> StoreError {
        database_error(
            DatabaseErrorKind::Unknown,
            "deadlock detected: Process 1 waits for ShareLock on transaction 2",
        )
    }

    #[test]
    fn deadlocks_and_serialization_failures_are_conflicts_and_nothing_else_is() {
        for (error, conflict) in [
            (deadlock(), true),
            (
                database_error(
                    DatabaseErrorKind::SerializationFailure,
                    "could not serialize",
                ),
                true,
            ),
            (
                database_error(DatabaseErrorKind::UniqueViolation, "deadlock detected"),
                false,
            ),
            (
                database_error(DatabaseErrorKind::Unknown, "syntax error"),
                false,
            ),
            (StoreError::Unavailable("deadlock detected".into()), false),
            (StoreError::NotFound, false),
        ] {
            assert_eq!(error.is_conflict(), conflict, "{error}");
        }
    }

    /// Runs `retry_on_conflict` over an operation failing with `fail()` for its first
    /// `failures` tries; returns the outcome and the tries made.
    async fn run(failures: u32, fail: fn() -> StoreError) -> (Result<u32, String>, u32) {
        let tries = AtomicU32::new(0);
        let outcome = retry_on_conflict("test", || async {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= failures {
                Err(fail())
            } else {
                Ok(n)
            }
        })
        .await;
        (
            outcome.map_err(|e| e.to_string()),
            tries.load(Ordering::SeqCst),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_is_tried_again_until_it_succeeds() {
        assert_eq!(run(0, deadlock).await, (Ok(1), 1));
        assert_eq!(
            run(MAX_TRIES - 1, deadlock).await,
            (Ok(MAX_TRIES), MAX_TRIES)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_conflict_that_persists_fails_after_the_last_try() {
        let (outcome, tries) = run(u32::MAX, deadlock).await;
        assert!(outcome.is_err_and(|e| e.contains("deadlock")));
        assert_eq!(tries, MAX_TRIES);
    }

    #[tokio::test(start_paused = true)]
    async fn another_error_is_not_tried_again() {
        let (outcome, tries) = run(u32::MAX, || StoreError::NotFound).await;
        assert_eq!((outcome, tries), (Err("not found".into()), 1));
    }
}
