//! A circuit breaker per supplier.
//!
//! * **Closed**: calls go through; consecutive failures that say something
//!   about the supplier's health (timeouts, 5xx, 429, ambiguous outcomes —
//!   not business rejections) are counted.
//! * **Open** after `failures` of them in a row: no call is made for
//!   `cool_down`; callers get [`crate::SupplierError::CircuitOpen`] at once,
//!   and the opening is reported (an event for operators).
//! * **Half-open** after the cool-down: one trial call goes through. Success
//!   closes the circuit; failure opens it for another cool-down.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Calls go through.
    Closed,
    /// No call until the cool-down ends.
    Open,
    /// One trial call is allowed (or in flight).
    HalfOpen,
}

/// A change worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The supplier failed repeatedly: calls stop.
    Opened,
    /// A trial call succeeded: calls resume.
    Closed,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    open_until: Option<Instant>,
    /// When the half-open trial was let through, while it has no result.
    trial_since: Option<Instant>,
}

/// The circuit of one supplier.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// Opens after `failures` in a row (at least 1), for `cool_down`.
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        Self {
            failures: failures.max(1),
            cool_down,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                open_until: None,
                trial_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The state now (an open circuit past its cool-down reads half-open).
    pub fn state(&self) -> State {
        let inner = self.lock();
        match (inner.state, inner.open_until) {
            (State::Open, Some(until)) if Instant::now() >= until => State::HalfOpen,
            (state, _) => state,
        }
    }

    /// Asks to make a call: `Ok` if it may go, or how long until it may.
    pub fn admit(&self) -> Result<(), Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::Closed => Ok(()),
            State::Open => match inner.open_until {
                Some(until) if now < until => Err(until - now),
                _ => {
                    inner.state = State::HalfOpen;
                    inner.trial_since = Some(now);
                    Ok(())
                }
            },
            // A trial that never reported (cancelled, dropped) does not
            // hold the circuit forever: after a cool-down, another goes.
            State::HalfOpen => match inner.trial_since {
                Some(since) if now < since + self.cool_down => Err(since + self.cool_down - now),
                _ => {
                    inner.trial_since = Some(now);
                    Ok(())
                }
            },
        }
    }

    /// Records a call that reached the supplier and was answered (even with
    /// a business rejection).
    pub fn succeeded(&self) -> Option<Transition> {
        let mut inner = self.lock();
        let was = inner.state;
        inner.state = State::Closed;
        inner.consecutive = 0;
        inner.open_until = None;
        inner.trial_since = None;
        (was != State::Closed).then_some(Transition::Closed)
    }

    /// Records a failure that says the supplier is unwell.
    pub fn failed(&self) -> Option<Transition> {
        let mut inner = self.lock();
        inner.trial_since = None;
        inner.consecutive = inner.consecutive.saturating_add(1);
        let trip = inner.state == State::HalfOpen || inner.consecutive >= self.failures;
        if trip && inner.state != State::Open {
            inner.state = State::Open;
            inner.open_until = Some(Instant::now() + self.cool_down);
            return Some(Transition::Opened);
        }
        if trip {
            inner.open_until = Some(Instant::now() + self.cool_down);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_and_closes_after_a_good_trial() {
        let b = Breaker::new(3, Duration::from_secs(30));
        assert!(b.admit().is_ok());
        assert_eq!(b.failed(), None);
        assert_eq!(b.failed(), None);
        assert_eq!(b.succeeded(), None, "a success resets the count");
        assert_eq!(b.failed(), None);
        assert_eq!(b.failed(), None);
        assert_eq!(b.failed(), Some(Transition::Opened));
        assert_eq!(b.state(), State::Open);
        let wait = b.admit().unwrap_err();
        assert_eq!(wait, Duration::from_secs(30));

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.state(), State::HalfOpen);
        assert!(b.admit().is_ok(), "one trial");
        assert!(b.admit().is_err(), "only one");
        assert_eq!(b.succeeded(), Some(Transition::Closed));
        assert_eq!(b.state(), State::Closed);
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trial_that_never_reports_does_not_hold_it_open_for_ever() {
        let b = Breaker::new(1, Duration::from_secs(10));
        b.failed();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.admit().is_ok(), "the trial (then cancelled, no result)");
        assert!(b.admit().is_err());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.admit().is_ok(), "another trial after a cool-down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_it_again() {
        let b = Breaker::new(1, Duration::from_secs(10));
        assert_eq!(b.failed(), Some(Transition::Opened));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.admit().is_ok());
        assert_eq!(b.failed(), Some(Transition::Opened));
        assert!(b.admit().is_err());
    }
}
