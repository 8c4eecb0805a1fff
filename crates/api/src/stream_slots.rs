//! The limit on open live streams per API key (`HERALD_MAX_STREAMS_PER_KEY`, issue 15).
//!
//! Each stream holds a [`Slot`] while it is open; a key holding all of its slots gets
//! 429 for the next one. The count lives in this process's memory: it is exact and
//! free (no Redis round trip per stream, nothing left behind by a process that dies),
//! and a stream is bound to the process that serves it anyway. So the limit is per
//! api process: behind a load balancer spreading streams over N processes, a key may
//! hold up to N times the limit in all.

use crate::caller::CallerKey;
use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The default of `HERALD_MAX_STREAMS_PER_KEY`.
pub const DEFAULT_MAX_PER_KEY: usize = 100;

/// Open streams per key. Without keys configured (development) every stream counts
/// against one shared bucket.
#[derive(Clone)]
pub struct StreamSlots {
    /// 0: no limit.
    max_per_key: usize,
    open: Arc<Mutex<HashMap<Option<CallerKey>, usize>>>,
}

impl StreamSlots {
    pub fn new(max_per_key: usize) -> StreamSlots {
        StreamSlots {
            max_per_key,
            open: Arc::default(),
        }
    }

    /// A slot for one more stream of `key`, or 429 naming the limit.
    pub fn take(&self, key: Option<CallerKey>) -> Result<Slot, ApiError> {
        let mut open = lock(&self.open);
        let count = open.entry(key).or_insert(0);
        if self.max_per_key > 0 && *count >= self.max_per_key {
            return Err(ApiError::TooManyStreams {
                max: self.max_per_key,
            });
        }
        *count += 1;
        Ok(Slot {
            open: self.open.clone(),
            key,
        })
    }

    /// The streams open in this process, all keys together.
    pub fn open_streams(&self) -> usize {
        lock(&self.open).values().sum()
    }
}

/// One open stream's place; given back when dropped.
pub struct Slot {
    open: Arc<Mutex<HashMap<Option<CallerKey>, usize>>>,
    key: Option<CallerKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Each change to the map is one statement, so a poisoned lock holds a consistent map.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_slots_and_a_closed_stream_gives_its_back() {
        let slots = StreamSlots::new(2);
        let (a, b) = (Some(CallerKey([1; 32])), Some(CallerKey([2; 32])));
        let first = slots.take(a).ok();
        let _second = slots.take(a).ok();
        match slots.take(a) {
            Err(ApiError::TooManyStreams { max: 2 }) => {}
            other => panic!("a third stream of a: {:?}", other.err()),
        }
        assert!(slots.take(b).is_ok(), "b has its own slots");
        assert!(slots.take(None).is_ok(), "and so has the keyless bucket");
        drop(first);
        let again = slots.take(a);
        assert!(again.is_ok(), "a slot given back is taken again");
        assert_eq!(slots.open_streams(), 2, "the dropped slots were given back");
    }

    #[test]
    fn zero_means_no_limit() {
        let slots = StreamSlots::new(0);
        let held: Vec<Slot> = (0..1000).filter_map(|_| slots.take(None).ok()).collect();
        assert_eq!(held.len(), 1000);
    }
}
