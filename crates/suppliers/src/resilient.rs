//! One supplier call made safely: the circuit asked first, the pace kept,
//! transient failures retried with back-off, everything else returned at
//! once.
//!
//! Only transient failures are retried here. A rejection is final. An
//! ambiguous outcome (the order may have been placed) is returned to the
//! connector, which looks the order up by its client reference before
//! anything is bought again: retrying blindly is how suppliers get paid
//! twice.

use std::future::Future;
use std::time::Duration;

use crate::SupplierError;
use crate::backoff::Backoff;
use crate::breaker::{Breaker, State, Transition};
use crate::pace::Pace;

/// Told of each circuit transition (to raise an event for operators).
pub type OnTransition = Box<dyn Fn(&str, Transition) + Send + Sync>;

/// A supplier's call discipline.
pub struct Resilient {
    name: String,
    backoff: Backoff,
    pace: Pace,
    breaker: Breaker,
    on_transition: OnTransition,
}

impl std::fmt::Debug for Resilient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resilient")
            .field("name", &self.name)
            .field("state", &self.breaker.state())
            .finish()
    }
}

/// Limits of one supplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Retries and their waits.
    pub backoff: Backoff,
    /// Time between request starts.
    pub interval: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Health failures in a row that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit stays open.
    pub breaker_cool_down: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            backoff: Backoff::default(),
            interval: Duration::from_secs(1),
            concurrency: 2,
            breaker_failures: 5,
            breaker_cool_down: Duration::from_secs(60),
        }
    }
}

impl Resilient {
    /// The discipline for supplier `name`.
    pub fn new(name: &str, limits: Limits, on_transition: OnTransition) -> Self {
        Self {
            name: name.to_owned(),
            backoff: limits.backoff,
            pace: Pace::new(limits.interval, limits.concurrency),
            breaker: Breaker::new(limits.breaker_failures, limits.breaker_cool_down),
            on_transition,
        }
    }

    /// The supplier's circuit now.
    pub fn state(&self) -> State {
        self.breaker.state()
    }

    fn report(&self, transition: Option<Transition>) {
        if let Some(t) = transition {
            (self.on_transition)(&self.name, t);
        }
    }

    /// Runs `op` (given the attempt number, from 0) under the discipline.
    pub async fn call<T, F, Fut>(&self, mut op: F) -> Result<T, SupplierError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, SupplierError>>,
    {
        let mut attempt = 0u32;
        loop {
            if let Err(retry_in) = self.breaker.admit() {
                return Err(SupplierError::CircuitOpen {
                    supplier: self.name.clone(),
                    retry_in,
                });
            }
            let slot = self.pace.slot().await;
            let outcome = op(attempt).await;
            drop(slot);
            let error = match outcome {
                Ok(value) => {
                    self.report(self.breaker.succeeded());
                    return Ok(value);
                }
                Err(e) => e,
            };
            if error.counts_against_supplier() {
                self.report(self.breaker.failed());
            } else {
                // It answered: a rejection is a healthy supplier.
                self.report(self.breaker.succeeded());
            }
            let SupplierError::Transient { retry_after, .. } = &error else {
                return Err(error);
            };
            attempt += 1;
            if attempt >= self.backoff.attempts {
                return Err(SupplierError::Exhausted {
                    supplier: self.name.clone(),
                    attempts: attempt,
                    last: error.to_string(),
                });
            }
            let Some(wait) = self.backoff.wait(attempt - 1, *retry_after) else {
                return Err(error);
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::time::Instant;

    use super::*;

    fn transient(retry_after: Option<Duration>) -> SupplierError {
        SupplierError::Transient {
            supplier: "tango".into(),
            why: "503".into(),
            retry_after,
        }
    }

    fn quiet(limits: Limits) -> (Resilient, Arc<std::sync::Mutex<Vec<Transition>>>) {
        let seen: Arc<std::sync::Mutex<Vec<Transition>>> = Arc::default();
        let log = seen.clone();
        let r = Resilient::new(
            "tango",
            limits,
            Box::new(move |_, t| log.lock().unwrap().push(t)),
        );
        (r, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_then_succeed() {
        let (r, _) = quiet(Limits::default());
        let calls = AtomicU32::new(0);
        let got = r
            .call(|attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        Err(transient(None))
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(got, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn rejections_and_ambiguous_outcomes_are_never_retried() {
        let (r, _) = quiet(Limits::default());
        for error in [
            SupplierError::Rejected {
                supplier: "runa".into(),
                code: "RE006".into(),
                why: "no stock".into(),
            },
            SupplierError::Ambiguous {
                supplier: "runa".into(),
                why: "timed out after sending".into(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let got: Result<(), _> = r
                .call(|_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let e = error.clone();
                    async move { Err(e) }
                })
                .await;
            assert_eq!(got, Err(error));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_waited_for() {
        let (r, _) = quiet(Limits {
            interval: Duration::ZERO,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let got = r
            .call(|attempt| async move {
                if attempt == 0 {
                    Err(transient(Some(Duration::from_secs(7))))
                } else {
                    Ok(())
                }
            })
            .await;
        assert_eq!(got, Ok(()));
        assert_eq!((Instant::now() - t0).as_secs(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn the_circuit_opens_stops_calls_and_closes_after_a_good_trial() {
        let (r, seen) = quiet(Limits {
            breaker_failures: 3,
            breaker_cool_down: Duration::from_secs(60),
            backoff: Backoff {
                attempts: 1,
                ..Backoff::default()
            },
            interval: Duration::ZERO,
            ..Limits::default()
        });
        for _ in 0..3 {
            let got: Result<(), _> = r.call(|_| async { Err(transient(None)) }).await;
            assert!(
                matches!(got, Err(SupplierError::Exhausted { .. })),
                "{got:?}"
            );
        }
        assert_eq!(r.state(), State::Open);
        assert_eq!(*seen.lock().unwrap(), [Transition::Opened]);
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = r
            .call(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await;
        assert!(
            matches!(got, Err(SupplierError::CircuitOpen { .. })),
            "{got:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not called while open");

        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(r.call(|_| async { Ok(()) }).await, Ok(()));
        assert_eq!(r.state(), State::Closed);
        assert_eq!(
            *seen.lock().unwrap(),
            [Transition::Opened, Transition::Closed]
        );
    }
}
