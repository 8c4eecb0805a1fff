//! The Redis of the queue crate's own tests: `HERALD_TEST_REDIS_URL` (default the
//! local one that `make test` starts) under a key prefix of the test's own. Tests
//! need it: one that cannot reach Redis fails rather than passing without checking.

use crate::connection::Redis;

/// A handle on the test Redis under a fresh `herald_test_…:` prefix.
pub fn connect(pool_size: usize) -> Redis {
    let url =
        std::env::var("HERALD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("herald_test_{}:", uuid::Uuid::new_v4().simple());
    Redis::connect(&url, &prefix, pool_size).expect("the test Redis URL is valid")
}
