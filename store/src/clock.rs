//! The one clock Archer reads outside workflows.
//!
//! The API, the relay and the activities read the current instant from a [`Clock`] they are
//! given, never from the system directly, so a test can fix time ([`ManualClock`]) and see it
//! in every row, response and intent. Each [`crate::TenantTx`] and [`crate::SystemTx`] reads the
//! clock once when it begins: that instant is the transaction's `archer_now()`, which column
//! defaults and queries use instead of PostgreSQL's `now()`. Workflows read
//! `ctx.workflow_time()` instead (their time is Temporal's, replayed).

use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

/// Where the current instant comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> OffsetDateTime;

    /// The current instant as a [`jiff::Timestamp`] (the SLA engine's type).
    fn timestamp(&self) -> jiff::Timestamp {
        to_timestamp(self.now())
    }
}

/// The same instant as a [`jiff::Timestamp`]; the ends of jiff's range (years -9999 and 9999)
/// for the few instants `time` can hold and jiff cannot.
pub fn to_timestamp(t: OffsetDateTime) -> jiff::Timestamp {
    let nanos = t.unix_timestamp_nanos();
    jiff::Timestamp::from_nanosecond(nanos).unwrap_or(if nanos < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
}

/// The operating system's clock: what runs in production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until told otherwise, for tests. Clones share one instant, so a
/// test keeps a clone and sets or advances the time the app it started reads.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        ManualClock { now: Arc::new(Mutex::new(at)) }
    }

    /// Moves the clock to `at` (backwards too: a test may need that).
    pub fn set(&self, at: OffsetDateTime) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    /// Moves the clock on by `by` and returns the new instant.
    pub fn advance(&self, by: time::Duration) -> OffsetDateTime {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
        *now
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        // a test that panicked while holding the lock left a valid instant behind
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_move_with_it() {
        let clock = ManualClock::new(datetime!(2026-03-01 09:30:00 UTC));
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        assert_eq!(shared.now(), datetime!(2026-03-01 09:30:00 UTC));
        assert_eq!(shared.now(), shared.now(), "a manual clock does not tick on its own");

        assert_eq!(clock.advance(time::Duration::minutes(90)), datetime!(2026-03-01 11:00:00 UTC));
        assert_eq!(shared.now(), datetime!(2026-03-01 11:00:00 UTC));

        clock.set(datetime!(2025-12-31 23:59:59.5 UTC));
        assert_eq!(shared.now(), datetime!(2025-12-31 23:59:59.5 UTC));
        assert_eq!(shared.timestamp(), "2025-12-31T23:59:59.5Z".parse::<jiff::Timestamp>().unwrap());
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let before = OffsetDateTime::now_utc();
        let read = SystemClock.now();
        assert!(before <= read && read <= OffsetDateTime::now_utc());
    }

    #[test]
    fn instants_beyond_jiffs_range_saturate() {
        // jiff ends a day before `time` does (its zone offsets stay inside years -9999..=9999)
        assert_eq!(to_timestamp(datetime!(9999-12-31 23:00:00 UTC)), jiff::Timestamp::MAX);
        assert_eq!(to_timestamp(OffsetDateTime::UNIX_EPOCH), jiff::Timestamp::UNIX_EPOCH);
    }
}
