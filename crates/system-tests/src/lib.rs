//! Herald's whole-system tests live in `tests/api`: they start `herald-api` on a free
//! port and in-process workers, each test with its own database and Redis key prefix.
