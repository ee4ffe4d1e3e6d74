//! Real-time bounds for tests that wait on real processes.
//!
//! Every wait in the process-based tests is bounded. A [`Deadline`] bounds a
//! whole test, and `deadline.step(max)` bounds one step by whichever comes
//! first. The sans-IO core takes its time from the caller (clippy forbids
//! `Instant::now` there); these helpers are the test harness's one clock.

use std::time::{Duration, Instant};

/// The current time (the harness's only reading of the real clock).
#[allow(clippy::disallowed_methods)] // test harness: real processes, real time
pub fn now() -> Instant {
    Instant::now()
}

/// A point in real time that a test must finish by.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    end: Instant,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        let start = now();
        Deadline { start, end: start + budget }
    }

    /// Time left (zero once passed).
    pub fn left(&self) -> Duration {
        self.end.saturating_duration_since(now())
    }

    /// A bound for one step: at most `max`, and never past the deadline.
    pub fn step(&self, max: Duration) -> Duration {
        max.min(self.left())
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        now() >= self.end
    }

    /// Time since the deadline was created.
    pub fn elapsed(&self) -> Duration {
        now().saturating_duration_since(self.start)
    }
}
