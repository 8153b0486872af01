//! A circuit breaker per upstream: after `failures` calls in a row that show the upstream is
//! down (unreachable, timed out, HTTP 5xx), it opens, and calls fail at once for `open_for`;
//! then one call probes: its success closes the breaker, its failure opens it again. A
//! failing AF thus gets fast, honest errors instead of a pile of waiting requests, and the
//! gateway notices within `open_for` that it is back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is under way; another may go if it has not reported by `until`.
    HalfOpen {
        until: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    open_for: Duration,
    /// How long a probe may take before another is let through (a probe whose caller went
    /// away never reports).
    probe_timeout: Duration,
}

/// The breaker is open: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open(pub Duration);

impl Breaker {
    pub fn new(failures: u32, open_for: Duration, probe_timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures: failures.max(1),
            open_for,
            probe_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few words: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a call go out now?
    pub fn admit(&self) -> Result<(), Open> {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } | State::HalfOpen { until } => {
                let now = Instant::now();
                if now >= until {
                    *s = State::HalfOpen {
                        until: now + self.probe_timeout,
                    };
                    Ok(())
                } else if matches!(*s, State::Open { .. }) {
                    Err(Open(until - now))
                } else {
                    // Others wait for the probe's outcome.
                    Err(Open(self.open_for))
                }
            }
        }
    }

    /// The call showed the upstream up (any answer that is not a server failure).
    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// The call showed the upstream down.
    pub fn failure(&self) {
        let mut s = self.lock();
        *s = match *s {
            State::Closed { failures } if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            _ => State::Open {
                until: Instant::now() + self.open_for,
            },
        };
    }

    /// Whether calls are being refused now (for readiness and `Ping`).
    pub fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_probes_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(50), Duration::from_millis(200));
        for _ in 0..2 {
            b.admit().unwrap();
            b.failure();
        }
        assert!(!b.is_open());
        // A success in between starts the count again.
        b.success();
        for _ in 0..3 {
            b.admit().unwrap();
            b.failure();
        }
        assert!(b.is_open());
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(60));
        // One probe goes; the others wait for it.
        b.admit().unwrap();
        assert!(b.admit().is_err());
        b.failure();
        assert!(b.admit().is_err(), "the failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        b.admit().unwrap();
        b.success();
        b.admit().unwrap();
        assert!(!b.is_open());
        // A probe that never reports does not keep the breaker shut for good.
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(60));
        b.admit().unwrap();
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(210));
        b.admit().unwrap();
    }
}
